"""A real hub server for tests: uvicorn in a background thread, on a free local port.

::

    with HubServer(create_app(store=store, artifacts=artifacts)) as server:
        client = Client(server.url)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn

STARTUP_TIMEOUT = 20.0


class HubServer:
    """Serve an ASGI app on 127.0.0.1 (a port the OS picks) until the ``with`` block ends."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> HubServer:
        # Port 0: the OS picks a free one, read back once listening. (A socket bound here and
        # handed to uvicorn would have proto 0, and asyncio then leaves TCP_NODELAY off:
        # every response would wait ~40 ms for a delayed ACK.)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="hub-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(timeout=5)
                raise RuntimeError("the test hub server did not start")
            time.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        self._server, self._thread = server, thread
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=10)
        if self._thread.is_alive():  # pragma: no cover - a stuck connection
            self._server.force_exit = True
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


#: A hub server in a process of its own: ``python -c SERVE STORE_URI ARTIFACTS_URI
#: [SETTINGS_JSON]`` prints the port it listens on (127.0.0.1, picked by the OS) once it does.
SERVE = textwrap.dedent(
    """
    import json, sys
    import uvicorn
    from lineagehub import Settings, open_store
    from lineagehub.artifacts import open_artifact_store
    from lineagehub.interfaces.server import create_app
    store = open_store(sys.argv[1])
    settings = Settings(**{"user": "ci", **json.loads(sys.argv[3] if len(sys.argv) > 3 else "{}")})
    app = create_app(settings, store=store, artifacts=open_artifact_store(sys.argv[2]))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    original = server.startup

    async def startup(sockets=None):
        await original(sockets)
        print(server.servers[0].sockets[0].getsockname()[1], flush=True)

    server.startup = startup
    server.run()
    """
)


def serving(
    script: str, store_uri: str, artifacts_uri: str, settings: dict[str, Any] | None = None
) -> tuple[subprocess.Popen[str], int]:
    """A hub server process running ``script`` (:data:`SERVE`, or a variant of it) over the
    stores, and the port it listens on."""
    argv = [sys.executable, "-c", script, store_uri, artifacts_uri, json.dumps(settings or {})]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    return server, int(server.stdout.readline())


@contextmanager
def example_hub(folder: Path, timeout: float = 60) -> Iterator[httpx.Client]:
    """The example graph (``build_example``) in a SQLite file under ``folder``, served, with
    an HTTP client of it."""
    from lineagehub.artifacts import open_artifact_store
    from lineagehub.graph import open_store
    from lineagehub.interfaces.server import create_app
    from lineagehub.samples.example import build_example

    store = open_store(f"sqlite:///{folder / 'hub.db'}")
    try:
        build_example(store)
        artifacts = open_artifact_store((folder / "artifacts").as_uri())
        with (
            HubServer(create_app(store=store, artifacts=artifacts)) as server,
            httpx.Client(base_url=server.url, timeout=timeout) as client,
        ):
            yield client
    finally:
        store.close()
