"""A hub for the model and adapter suites, on each backend, used embedded or through a real
server over the same stores (``Hub.client("embedded" | "remote")``)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from conftest import fresh_store_uri
from http_server import HubServer

from lineagehub import Settings, open_store
from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import GraphStore
from lineagehub.ingest.client import Client


class Hub:
    """Stores for one test; ``client(mode)`` embedded or a client of a server over them."""

    def __init__(self, folder: Path, stack: contextlib.ExitStack, backend: str = "sqlite") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.uri = fresh_store_uri(backend, folder)
        self.folder = folder
        self.artifacts = folder / "artifacts"
        self._stack = stack
        self.server: HubServer | None = None

    def embedded(self) -> Client:
        c = Client(self.uri, settings=Settings(user="ann", artifacts=str(self.artifacts)))
        self._stack.callback(c.close)
        return c

    def serve(self) -> HubServer:
        if self.server is None:
            from lineagehub.interfaces.server import create_app

            store: GraphStore = open_store(self.uri)
            self._stack.callback(store.close)
            app = create_app(
                Settings(user="ann"),
                store=store,
                artifacts=open_artifact_store(str(self.artifacts)),
            )
            self.server = self._stack.enter_context(HubServer(app))
        return self.server

    def remote(self) -> Client:
        c = Client(self.serve().url, settings=Settings(user="ann"))
        self._stack.callback(c.close)
        return c

    def client(self, mode: str) -> Client:
        return self.embedded() if mode == "embedded" else self.remote()

    def stored_file(self, digest: str) -> Path:
        """Where the file artifact store keeps ``digest``'s bytes."""
        hexdigest = digest.removeprefix("sha256:")
        found = [p for p in self.artifacts.rglob(f"*{hexdigest}*") if p.is_file()]
        assert len(found) == 1, found
        return found[0]
