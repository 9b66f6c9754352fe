"""Model listing, search, look-up and comparison through the SDK, in both modes: embedded (a
client on a SQLite file) and remote (a real server over the same data). Versions are
registered through the SDK itself (params, metrics, datasets, model), and both modes must
answer the same."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import fresh_store_uri
from http_server import HubServer

from lineagehub import Settings, open_store
from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import GraphStore, NotFoundError, ValidationError
from lineagehub.ingest.client import Client
from lineagehub.vocabulary import Model, ModelVersion


class Hub:
    """A hub (SQLite or the test Neo4j); ``client()`` is embedded or a client of a server over the same files."""

    def __init__(self, folder: Path, stack: contextlib.ExitStack, backend: str = "sqlite") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.uri = fresh_store_uri(backend, folder)
        self.folder = folder
        self._stack = stack
        self._url: str | None = None

    def embedded(self) -> Client:
        settings = Settings(user="ann", artifacts=str(self.folder / "artifacts"))
        c = Client(self.uri, settings=settings)
        self._stack.callback(c.close)
        return c

    def remote(self) -> Client:
        if self._url is None:
            from lineagehub.interfaces.server import create_app

            store: GraphStore = open_store(self.uri)
            self._stack.callback(store.close)
            app = create_app(
                Settings(user="ann"),
                store=store,
                artifacts=open_artifact_store(str(self.folder / "artifacts")),
            )
            self._url = self._stack.enter_context(HubServer(app)).url
        c = Client(self._url, settings=Settings(user="ann"))
        self._stack.callback(c.close)
        return c

    def client(self, mode: str) -> Client:
        return self.embedded() if mode == "embedded" else self.remote()


@pytest.fixture
def hub(store_backend: str, tmp_path: Path) -> Iterator[Hub]:
    with contextlib.ExitStack() as stack:
        yield Hub(tmp_path / "hub", stack, store_backend)


@pytest.fixture(params=["embedded", "remote"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _train(
    client: Client, name: str, params: dict[str, object], auc: float, rows: int
) -> ModelVersion:
    frame = pd.DataFrame({"x": list(range(rows)), "y": [i % 2 for i in range(rows)]})
    with client.start_run("train", project=name, capture=False) as run:
        run.log_params(params)
        run.log_metrics({"auc": auc, "loss": 1 - auc})
        run.log_dataset(frame, name=f"{name}_train", namespace="warehouse", role="input")
        return run.log_model({"weights": [auc, rows]}, name=name)


def _register(client: Client) -> list[ModelVersion]:
    return [
        _train(client, "churn", {"depth": 3, "lr": 0.1, "old": "x"}, 0.80, 4),
        _train(client, "churn", {"depth": 5, "lr": 0.1, "new": True}, 0.875, 6),
        _train(client, "churn", {"depth": 7, "lr": 0.1}, 0.90, 6),
        _train(client, "fraud", {"depth": 2}, 0.70, 3),
    ]


def test_list_search_and_get(hub: Hub, mode: str) -> None:
    client = hub.client(mode)
    versions = _register(client)
    assert [(v.model, v.version) for v in versions] == [
        ("churn", 1),
        ("churn", 2),
        ("churn", 3),
        ("fraud", 1),
    ]

    models, cursor = client.list_models(order_by="name")
    assert all(isinstance(m, Model) for m in models)
    assert [m.name for m in models] == ["churn", "fraud"]
    assert cursor is None
    only, _ = client.list_models(where={"name": "fraud"})
    assert [m.node_id for m in only] == ["model:fraud"]

    good, cursor = client.search_model_versions(
        {"model": "churn", "metrics.auc": {"$gte": 0.85}}, order_by="-version"
    )
    assert all(isinstance(v, ModelVersion) for v in good)
    assert [v.node_id for v in good] == ["mv:churn/3", "mv:churn/2"]
    assert good[0].metrics["auc"] == pytest.approx(0.90)
    assert cursor is None

    # paging: a cursor, then the rest
    first, cursor = client.search_model_versions({"model": "churn"}, order_by="version", limit=2)
    assert [v.version for v in first] == [1, 2]
    assert cursor is not None
    rest, end = client.search_model_versions(
        {"model": "churn"}, order_by="version", limit=2, after=cursor
    )
    assert ([v.version for v in rest], end) == ([3], None)

    client.set_alias("churn/2", "champion")
    assert client.get_model_version("model:churn/2").node_id == "mv:churn/2"
    champion = client.get_model_version("model:churn@champion")
    assert (champion.version, champion.aliases) == (2, ["champion"])
    assert client.get_model_version("model:churn@latest").version == 3
    assert client.get_model_version("mv:fraud/1") == versions[3]

    with pytest.raises(NotFoundError):
        client.get_model_version("model:churn/9")
    with pytest.raises(NotFoundError):
        client.get_model_version("model:nope@champion")
    with pytest.raises(ValidationError):
        client.get_model_version("model:churn")  # the model, not a version


def test_compare_model_versions(hub: Hub, mode: str) -> None:
    client = hub.client(mode)
    _register(client)
    diff = client.compare_model_versions("model:churn/1", "model:churn/2")
    assert (diff["a"], diff["b"]) == ("mv:churn/1", "mv:churn/2")
    assert diff["params_changed"] == [("depth", 3, 5)]
    assert diff["params_added"] == [("new", True)]
    assert diff["params_removed"] == [("old", "x")]
    keys = [(m[0], m[1], m[2]) for m in diff["metric_deltas"]]
    assert keys == [
        ("auc", pytest.approx(0.80), pytest.approx(0.875)),
        ("loss", pytest.approx(0.20), pytest.approx(0.125)),
    ]
    assert diff["metric_deltas"][0][3] == pytest.approx(0.075)
    # a different training frame: one dataset version in, one out
    assert len(diff["datasets"]["added"]) == 1
    assert len(diff["datasets"]["removed"]) == 1
    assert diff["datasets"]["added"][0].startswith("dsv:")
    assert diff["commits"] == {"added": [], "removed": []}
    assert diff["truncated"] is False
    json.dumps(diff)  # JSON-ready

    same = client.compare_model_versions("model:churn/2", "model:churn/3")
    assert same["datasets"] == {"added": [], "removed": []}  # the same frame content
    assert same["params_changed"] == [("depth", 5, 7)]

    with pytest.raises(NotFoundError):
        client.compare_model_versions("model:churn/1", "model:churn/9")


def test_both_modes_answer_the_same(hub: Hub) -> None:
    embedded = hub.embedded()
    _register(embedded)
    remote = hub.remote()
    for a, b in [("model:churn/1", "model:churn/2"), ("model:churn/3", "mv:fraud/1")]:
        assert embedded.compare_model_versions(a, b) == remote.compare_model_versions(a, b)
    where = {"metrics.auc": {"$gte": 0.75}}
    assert embedded.search_model_versions(where, order_by=["model", "-version"]) == (
        remote.search_model_versions(where, order_by=["model", "-version"])
    )
    assert embedded.list_models() == remote.list_models()
    assert embedded.get_model_version("model:churn@latest") == remote.get_model_version(
        "model:churn@latest"
    )
