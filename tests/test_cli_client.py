"""The SDK calls the command line needs, in both modes: ``Client.lineage`` and
``Client.compare_runs`` answer the same embedded and through a real server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pandas as pd
import pytest
from http_server import HubServer

from lineagehub import Settings, open_store
from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import NotFoundError, Subgraph, ValidationError
from lineagehub.ingest.client import Client


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Client]]:
    folder = tmp_path_factory.mktemp("hub")
    uri = f"sqlite:///{folder / 'hub.db'}"
    with contextlib.ExitStack() as stack:
        embedded = Client(uri, settings=Settings(user="ann", artifacts=str(folder / "art")))
        stack.callback(embedded.close)
        for i, auc in enumerate((0.8, 0.9)):
            frame = pd.DataFrame({"x": list(range(10 + i))})
            with embedded.start_run(f"r{i}", experiment="e", capture=False) as run:
                run.log_params({"depth": 3 + i, "lr": 0.1})
                run.log_metrics({"auc": auc})
                run.log_metrics({"loss": float("nan")})
                run.log_dataset(frame, name="d", namespace="ns", role="train")
                run.log_model({"w": auc}, name="m")
        from lineagehub.interfaces.server import create_app

        store = open_store(uri)
        stack.callback(store.close)
        app = create_app(
            Settings(user="srv"), store=store, artifacts=open_artifact_store(str(folder / "art"))
        )
        server = stack.enter_context(HubServer(app))
        remote = Client(server.url, settings=Settings(user="ann"))
        stack.callback(remote.close)
        yield {"embedded": embedded, "remote": remote}


def _facts(sub: Subgraph) -> tuple[object, ...]:
    nodes = sorted(
        (i, t.node.label, t.node.props, t.node.created_at, t.distance, t.reached_from, t.direction)
        for i, t in sub.nodes.items()
    )
    edges = sorted(
        (e.id, e.source, e.target, e.kind, e.props, e.event_time, e.ingested_at, e.asserted_by)
        for e in sub.edges
    )
    return nodes, edges, sub.truncated, sub.truncation_reason


@pytest.mark.parametrize(
    ("roots", "kwargs"),
    [
        (["m/2"], {"upstream_depth": 1}),
        (["m@latest"], {}),
        (["m/1"], {"direction": "BOTH", "edge_kinds": ["GENERATED_BY", "USED"]}),
        (["dataset:ns/d@latest"], {"direction": "DOWNSTREAM", "node_kinds": ["Run"]}),
        (["m/1", "m/2"], {"max_nodes": 2}),
        (["m/2"], {"stop_at": ["Run"], "pass_through": ["DatasetVersion"]}),
    ],
)
def test_lineage_is_the_same_in_both_modes(
    clients: dict[str, Client], roots: list[str], kwargs: dict[str, object]
) -> None:
    embedded = clients["embedded"].lineage(roots, **kwargs)  # type: ignore[arg-type]
    remote = clients["remote"].lineage(roots, **kwargs)  # type: ignore[arg-type]
    assert len(embedded) > 0
    assert _facts(remote) == _facts(embedded)
    assert list(remote.nodes) == list(embedded.nodes)  # discovery order too


def test_lineage_truncation_and_errors(clients: dict[str, Client]) -> None:
    for client in clients.values():
        sub = client.lineage(["m/2"], upstream_depth=1)
        assert sub.truncated and sub.truncation_reason is not None
        with pytest.raises(NotFoundError):
            client.lineage(["run:0190aaaa-0000-7000-8000-000000000000"])
        with pytest.raises(ValidationError) as e:
            client.lineage(["m/2"], edge_kinds=["NOPE"])
        assert e.value.field == "edge_kinds"
        with pytest.raises(ValidationError):
            client.lineage(["m/2"], direction="SIDEWAYS")


def test_compare_runs_is_the_same_in_both_modes(clients: dict[str, Client]) -> None:
    runs, _ = clients["embedded"].search_runs({"kind": "train"}, "name")
    ids = [r.id for r in runs]
    embedded = clients["embedded"].compare_runs(ids)
    assert clients["remote"].compare_runs(ids) == embedded
    assert embedded["runs"] == ids
    depth = next(p for p in embedded["params"] if p["key"] == "depth")
    assert depth == {"key": "depth", "values": [3, 4], "differs": True}
    loss = next(m for m in embedded["metrics"] if m["key"] == "loss")
    assert loss["last"] == [None, None]  # NaN is not JSON
    assert len(embedded["inputs"]) == 2 and not embedded["inputs"][0]["used_by_all"]
    assert embedded["inputs"][0]["label"] == "DatasetVersion"
    for client in clients.values():
        with pytest.raises(NotFoundError):
            client.compare_runs([ids[0], "run:0190aaaa-0000-7000-8000-000000000000"])
