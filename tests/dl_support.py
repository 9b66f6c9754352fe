"""What the deep-learning adapter tests share: a hub on each store and each transport, a hub
that cannot be reached, and questions about what a run recorded (asked through the client, so
they work the same embedded and remote)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from conftest import fresh_store_uri
from http_server import HubServer

from lineagehub import Client, Settings, open_store
from lineagehub.artifacts import open_artifact_store
from lineagehub.interfaces.server import create_app
from lineagehub.vocabulary import Artifact

TRANSPORTS = ["embedded", "server"]

# Tiny models train several times faster on one thread: on a busy 2-core machine torch's
# thread pool spends more time waiting for its threads than computing (5 s against 1 s for a
# few BERT steps).
torch.set_num_threads(1)


@contextmanager
def open_hub(transport: str, backend: str, tmp_path: Path) -> Iterator[Client]:
    """A client of an empty hub on ``backend`` ("sqlite" or "neo4j"): embedded, or of a real
    hub server on 127.0.0.1 serving that store."""
    store = open_store(fresh_store_uri(backend, tmp_path))
    artifacts = (tmp_path / "artifacts").as_uri()
    settings = Settings(user="alice", data_dir=tmp_path)
    try:
        if transport == "embedded":
            client = Client(store, artifacts=artifacts, settings=settings)
            yield client
            client.close()
        else:
            app = create_app(settings, store=store, artifacts=open_artifact_store(artifacts))
            with HubServer(app) as server:
                client = Client(server.url, settings=settings)
                yield client
                client.close()
    finally:
        store.close()


def unreachable_client(tmp_path: Path) -> Client:
    """A client of a hub server that is not there (a local port nobody listens on), with no
    retries: every call fails at once with BackendUnavailable."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    client = Client(url, settings=Settings(user="alice", data_dir=tmp_path))
    connection = client.backend.tracking.connection  # type: ignore[attr-defined]
    connection.retries = 0
    return client


def used(client: Client, run_id: str) -> dict[str, list[str]]:
    """What the run USED, by role: the node ids."""
    graph = client.lineage([run_id], upstream_depth=1, edge_kinds=["USED"])
    out: dict[str, list[str]] = {}
    for edge in graph.edges:
        if edge.source == run_id and edge.kind == "USED":
            out.setdefault(str(edge.props.get("role")), []).append(edge.target)
    return out


def artifacts(client: Client, run_id: str) -> dict[str, Artifact]:
    """The artifacts the run generated, by name."""
    return dict(client.tracking.artifacts_of(run_id))
