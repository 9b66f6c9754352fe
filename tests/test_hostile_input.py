"""Hostile values: times and numbers are checked where they enter (SDK, CLI, API), so a bad
one is a ValidationError naming the field and never poisons what comes after it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from http_server import example_hub
from pydantic import ValidationError as PydanticValidationError
from test_sdk import Hub

from lineagehub.graph import ConflictError, Edge, Node, ValidationError, open_store
from lineagehub.graph.model import (
    check_time,
    encode_props,
    parse_time,
    to_iso,
    validate_edge_kind,
    validate_label,
    validate_path,
)
from lineagehub.services.tracking import START_AHEAD
from lineagehub.vocabulary import Run, RunStatus, check_key

# 9999-12-31 23:00 at UTC-14 is 10000-01-01 13:00 UTC: past what datetime holds
TOO_LATE = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14)))
TOO_EARLY = "0001-01-01T00:30:00+01:00"  # 0000-12-31 23:30 UTC


@pytest.fixture(params=["embedded", "remote"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    with contextlib.ExitStack() as stack:
        yield Hub(request.param, tmp_path / "hub", stack)


def test_check_time_names_the_field_and_normalises_to_utc() -> None:
    local = datetime(2026, 3, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert check_time(local, "at") == datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
    assert check_time(local, "at").tzinfo is timezone.utc
    for bad in (TOO_LATE, datetime.fromisoformat(TOO_EARLY), datetime(2026, 1, 1), "2026"):
        with pytest.raises(ValidationError) as e:
            check_time(bad, "at")
        assert e.value.field == "at"
    with pytest.raises(ValidationError) as e:
        to_iso(TOO_LATE, "timestamp")
    assert e.value.field == "timestamp"
    with pytest.raises(ValidationError) as e:
        parse_time(TOO_EARLY, "asOf")
    assert e.value.field == "asOf"
    assert parse_time("2026-03-01T12:00:00+02:00", "t").tzinfo is timezone.utc


def test_a_bad_timestamp_is_refused_when_logged_and_the_run_goes_on(hub: Hub) -> None:
    client = hub.client()
    run = client.start_run("poisoned?")
    run.log_metrics({"x": 1.0}, step=0)
    with pytest.raises(ValidationError) as e:
        run.log_metrics({"x": 2.0}, step=1, timestamp=TOO_LATE)
    assert e.value.field == "timestamp"
    with pytest.raises(ValidationError) as e:
        run.log_metrics({"x": 10**400}, step=1)
    assert e.value.field == "metrics.x"
    with pytest.raises(ValidationError):
        run.log_metric("x", 3.0, step=1, timestamp=datetime(2026, 1, 1))  # naive
    run.log_metrics({"x": 3.0}, step=2)
    run.log_metrics({"y": 1.0}, step=np.int64(4))  # a numpy loop's step is an integer too
    with client.batch() as batch:
        batch.log(run.id, metrics={"z": 2.0}, step=np.int32(5))
    run.flush()
    ended = run.end()
    assert ended.status is RunStatus.FINISHED
    got = client.get_run(run.id)
    assert got.status is RunStatus.FINISHED
    assert [(p.step, p.value) for p in client.metric_history(run.id, "x")] == [(0, 1.0), (2, 3.0)]
    assert [p.step for p in client.metric_history(run.id, "y")] == [4]
    assert [p.step for p in client.metric_history(run.id, "z")] == [5]
    client.close()


def test_a_lone_surrogate_is_refused_when_logged_and_the_run_goes_on(hub: Hub) -> None:
    """Text with a lone surrogate (a file name decoded with surrogateescape) is not Unicode
    text and no store can write it: refused at the call that gives it, naming the field,
    and the run keeps everything else (before, it stayed in the buffer and every flush,
    and the run's end, failed)."""
    client = hub.client()
    run = client.start_run("surrogates", capture=False)
    run.log_params({"lr": 0.1})
    run.log_metrics({"loss": 0.5}, step=0)
    for call, field in (
        (lambda: run.log_params({"note": "caf\udce9"}), "params.note"),
        (lambda: run.set_tags({"path": "/data/\ud800"}), "tags.path"),
    ):
        with pytest.raises(ValidationError) as e:
            call()
        assert e.value.field == field
    with pytest.raises(ValidationError):
        client.start_run("caf\udce9", capture=False)
    ended = run.end()
    assert ended.status is RunStatus.FINISHED
    got = client.get_run(run.id)
    assert got.params == {"lr": 0.1} and got.metrics == {"loss": 0.5}
    client.close()


def test_a_param_is_immutable_in_its_type_too(hub: Hub) -> None:
    """``True``, ``1`` and ``1.0`` are equal in Python and different params: logging one over
    another is a conflict (in the run, and at the hub for a writer without the run's
    buffer), and the value first logged stays, with its type."""
    client = hub.client()
    run = client.start_run("typed", capture=False)
    run.log_params({"shuffle": True, "n": 1.0, "k": 2})
    run.flush()
    for again in ({"shuffle": 1}, {"n": 1}, {"k": 2.0}, {"k": True}):
        with pytest.raises(ConflictError):
            run.log_params(again)
        with pytest.raises(ConflictError):
            client.backend.tracking.log_batch(run.id, params=again)
    run.log_params({"shuffle": True, "n": 1.0, "k": 2})  # the same values: fine
    run.end()
    params = client.get_run(run.id).params
    assert params == {"shuffle": True, "n": 1.0, "k": 2}
    assert [type(params[k]) for k in ("shuffle", "n", "k")] == [bool, float, int]
    client.close()


def test_empty_kind_filters_mean_the_same_in_both_modes(hub: Hub) -> None:
    """``edge_kinds=[]`` walks no edge kind (the roots alone), as ``node_kinds=[]`` keeps
    none but the roots: embedded and through a server alike (the server read an empty edge
    filter as no filter)."""
    client = hub.client()
    with client.start_run("r", project="p", capture=False) as run:
        run.log_dataset_ref("s3://lake/a.parquet", "sha256:" + "a" * 64)
    assert len(client.lineage([run.id]).nodes) > 1
    for empty in ({"edge_kinds": []}, {"node_kinds": []}):
        assert list(client.lineage([run.id], **empty).nodes) == [run.id]
    client.close()


def test_times_out_of_range_are_validation_errors_in_both_modes(hub: Hub) -> None:
    client = hub.client()
    with client.start_run("r") as run:
        pass
    for call in (
        lambda: client.holder_at("m", "production", TOO_LATE),
        lambda: client.lineage([run.id], as_of=TOO_LATE),
    ):
        with pytest.raises(ValidationError):
            call()
    client.close()


def test_a_run_given_its_start_keeps_it_and_one_in_the_future_is_refused(hub: Hub) -> None:
    """A batch (an importer) may say when a run started, in both modes; a start ahead of the
    hub's clock is refused before anything is written (its end, the hub's now, would come
    before it, and the stored run could not be read back); a client clock a little fast is
    taken, and the run's end is never recorded before its start."""
    client = hub.client()
    then = datetime(2020, 1, 1, 12, tzinfo=timezone.utc)
    with client.batch() as batch:
        imported = batch.start_run("imported", project="p", started_at=then)
        batch.end_run(imported)
    got = client.get_run(imported.result().id)
    assert got.started_at == then and got.ended_at is not None and got.ended_at > then
    ahead = datetime.now(timezone.utc) + START_AHEAD + timedelta(minutes=1)
    with (
        pytest.raises(ValidationError, match="ahead of the hub's clock") as e,
        client.batch() as batch,
    ):
        batch.start_run("future", project="p", started_at=ahead)
    assert (e.value.field or "").endswith("started_at")  # through a server: of operations[0]
    assert [r.name for r in client.search_runs({"project": "p"})[0]] == ["imported"]
    soon = datetime.now(timezone.utc) + START_AHEAD / 2  # a clock a little fast
    with client.batch() as batch:
        fast = batch.start_run("fast clock", project="p", started_at=soon)
        batch.end_run(fast)
    got = client.get_run(fast.result().id)
    assert got.started_at == soon and got.ended_at == soon
    client.close()


def test_a_run_stored_with_a_start_ahead_is_still_readable_once_stale(tmp_path: Path) -> None:
    """A run written with a start in the future (before the hub checked it), whose heartbeat
    stopped: recorded KILLED when it is read, with its end at its start, never before it
    (which would make the run, and every search that finds it, unreadable)."""
    from lineagehub.ingest.client import Client

    uri = f"sqlite:///{tmp_path / 'hub.db'}"
    client = Client(uri)
    run = client.tracking.start_run(Run(name="from the future", project="p"))
    future, long_ago = "2999-01-01T00:00:00.000000Z", "2001-01-01T00:00:00.000000Z"
    with open_store(uri) as store:
        store.upsert_nodes([Node(run.id, "Run", {"started_at": future, "heartbeat_at": long_ago})])
    got = client.get_run(run.id)
    assert got.status is RunStatus.KILLED
    assert got.ended_at == got.started_at == datetime(2999, 1, 1, tzinfo=timezone.utc)
    assert [r.id for r in client.search_runs({"project": "p"})[0]] == [run.id]
    client.close()


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with example_hub(tmp_path_factory.mktemp("times"), timeout=30) as client:
        yield client


QUERIES = {
    "asOf": 'query($t: DateTime) { lineage(input: {roots: ["run:example-train-1"], asOf: $t}) '
    "{ truncated } }",
    "holderAt": 'query($t: DateTime!) { holderAt(model: "churn", aliasOrStage: "production", '
    "time: $t) { id } }",
    "auditTrail": "query($t: DateTime) { auditTrail(from: $t) { nextAfter } }",
}


@pytest.mark.parametrize("name", sorted(QUERIES))
@pytest.mark.parametrize("time", [TOO_EARLY, TOO_LATE.isoformat(), "10000-01-01T00:00:00Z"])
def test_api_times_are_checked_at_the_edge(http: httpx.Client, name: str, time: str) -> None:
    response = http.post("/graphql", json={"query": QUERIES[name], "variables": {"t": time}})
    assert response.status_code == 200
    errors: list[dict[str, Any]] = response.json()["errors"]
    assert errors[0]["extensions"]["code"] == "VALIDATION", errors
    assert errors[0]["extensions"]["field"] == "t"  # the variable holding the time
    assert "Traceback" not in response.text


def test_api_times_in_the_query_text_are_checked_too(http: httpx.Client) -> None:
    query = '{ holderAt(model: "churn", aliasOrStage: "production", time: "%s") { id } }'
    response = http.post("/graphql", json={"query": query % TOO_EARLY})
    assert response.json()["errors"][0]["extensions"]["code"] == "VALIDATION"
    fine = http.post("/graphql", json={"query": query % "2026-03-01T00:00:00"})
    assert "errors" not in fine.json()  # without a timezone: UTC


def test_export_route_times_are_checked(http: httpx.Client) -> None:
    response = http.get("/export/lineage/run:example-train-1.json", params={"asOf": TOO_EARLY})
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "VALIDATION", "retryable": False, "field": "asOf"}


def test_deeply_nested_filters_are_validation_errors(http: httpx.Client) -> None:
    store = open_store("sqlite://")
    nots: dict[str, Any] = {"name": "x"}
    for _ in range(30):
        nots = {"$not": nots}
    ors: dict[str, Any] = {"name": "x"}
    for _ in range(100):
        ors = {"$or": [ors]}
    huge = {"metrics.auc": {"$gt": 10**400}}  # was OverflowError from the SQLite driver
    for where in (nots, ors, huge):
        with pytest.raises(ValidationError):
            store.find_nodes("Run", where=where)
    store.close()
    query = "query($w: JSON) { runs(where: $w) { edges { cursor } } }"
    for where in (nots, huge):
        response = http.post("/graphql", json={"query": query, "variables": {"w": where}})
        assert response.json()["errors"][0]["extensions"]["code"] == "VALIDATION"


def test_names_refuse_controls_and_bidirectional_overrides() -> None:
    from lineagehub.ingest.client import Client

    client = Client("sqlite://")
    for name in ("evil\u202etxt.exe", "a\x1b[31mred", "bell\x07", "c1\x9b"):
        with pytest.raises(ValidationError) as e:
            client.start_run(name)
        assert e.value.field == "name"
    client.close()


def test_the_cli_never_prints_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lineagehub.ingest.client import Client
    from lineagehub.interfaces.cli import main
    from lineagehub.interfaces.cli.common import safe_text

    assert safe_text("a\x1b[31mb\rc\x07d\u202ee\n") == "a\\x1b[31mb\\rc\\x07d\\u202ee\\n"
    uri = f"sqlite:///{tmp_path / 'hub.db'}"
    client = Client(uri)
    hostile = "ok\x1b]0;pwned\x07\x1b[2J\rfake\u202e"
    with client.start_run("r", tags={"note": hostile}) as run:
        run.log_params({"p": hostile})
    client.close()
    for argv in (["runs", "show", run.id], ["runs", "list"], ["lineage", run.id]):
        assert main([*argv, "--store", uri]) == 0
        out = capsys.readouterr().out
        assert not any(c in out for c in "\x1b\x07\r\u202e"), (argv, out)
    main(["runs", "show", run.id, "--store", uri])
    assert "\\x1b]0;pwned\\x07" in capsys.readouterr().out


def test_log_model_refuses_a_socket_in_the_folder(tmp_path: Path) -> None:
    import socket

    from lineagehub.ingest.client import Client

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"w")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder / "control.sock"))
        client = Client(f"sqlite:///{tmp_path / 'hub.db'}")
        with client.start_run("r") as run:
            with pytest.raises(ValidationError) as e:
                run.log_model(folder, name="m")
            assert e.value.field == "model" and "control.sock" in e.value.message
        client.close()


def test_an_empty_audit_key_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lineagehub.interfaces.cli import main
    from lineagehub.services.audit import export_jsonl

    uri = f"sqlite:///{tmp_path / 'hub.db'}"
    open_store(uri).close()
    monkeypatch.setenv("LINEAGEHUB_AUDIT_KEY", "")
    out = tmp_path / "audit.jsonl"
    assert main(["audit", "export", "-o", str(out), "--store", uri]) == 4
    assert "LINEAGEHUB_AUDIT_KEY" in capsys.readouterr().err and not out.exists()
    with open_store(uri) as store, pytest.raises(ValidationError):
        export_jsonl(store, out, b"")


def test_runs_list_by_status_sees_stale_runs_as_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from lineagehub.graph import Node
    from lineagehub.ingest.client import Client
    from lineagehub.interfaces.cli import main

    uri = f"sqlite:///{tmp_path / 'hub.db'}"
    client = Client(uri)
    run = client.tracking.start_run(Run(name="abandoned"))  # no live process behind it
    with open_store(uri) as store:  # its last heartbeat was long ago
        long_ago = "2001-01-01T00:00:00.000000Z"
        store.upsert_nodes(
            [Node(run.id, "Run", {"started_at": long_ago, "heartbeat_at": long_ago})]
        )
    assert main(["runs", "list", "--status", "RUNNING", "--store", uri, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == []
    for status in ("KILLED", "killed"):
        assert main(["runs", "list", "--status", status, "--store", uri, "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)["runs"]
        assert [(r["id"], r["status"]) for r in listed] == [(run.id, "KILLED")]
    assert main(["runs", "list", "--status", "RUNNING", "--store", uri, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == []
    client.close()


def test_a_model_named_like_a_version_can_be_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from lineagehub import Settings
    from lineagehub.ingest.client import Client
    from lineagehub.interfaces.cli import main

    uri = f"sqlite:///{tmp_path / 'hub.db'}"
    client = Client(uri, settings=Settings(artifacts=str(tmp_path / "art")))
    with client.start_run("r") as run:
        run.log_model({"w": 1}, name="amb/1")
    client.close()
    for ref in ("amb/1", "model:amb/1"):
        assert main(["models", "show", ref, "--store", uri, "--json"]) == 0, ref
        assert json.loads(capsys.readouterr().out)["model"]["name"] == "amb/1"
    assert main(["models", "show", "amb/1/1", "--store", uri, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"]["model"] == "amb/1"


def test_large_batches_fit_the_request_limit_in_remote_mode(hub: Hub) -> None:
    """10,000 points under 250-character keys are ~3 MB of JSON: the remote SDK sends them in
    requests under the server's 1 MiB limit; nothing is lost in either mode."""
    client = hub.client()
    keys = [f"{i}" + "k" * 249 for i in range(10)]
    run = client.start_run("wide")
    for step in range(500):
        run.log_metrics({k: float(step) for k in keys}, step=step)
    run.log_metrics({k: -1.0 for k in keys}, step=500)
    run.end()
    for key in keys:
        assert [p.step for p in client.metric_history(run.id, key)] == list(range(501))
    client.close()


@pytest.mark.parametrize(
    "refuse",
    [
        lambda: validate_label("Run\n"),
        lambda: validate_edge_kind("USED\n"),
        lambda: encode_props({"lr\n": 1}, "node 'x'"),
        lambda: validate_path("params.lr\n"),
        lambda: validate_path("status\n"),
        lambda: check_key("lr\n", "params"),
        lambda: Run(name="r", params={"lr\n": 1}),
        lambda: Run(name="r", tags={"team\n": "x"}),
    ],
    ids=["label", "edge kind", "property key", "path segment", "path", "key", "param", "tag"],
)
def test_a_name_with_a_trailing_newline_is_refused(refuse: Any) -> None:
    """A pattern's ``$`` also matches before a final newline: every name the graph puts into
    query text, and every key, is checked to the very end of the string."""
    with pytest.raises((ValidationError, PydanticValidationError)):
        refuse()


def test_trailing_newlines_are_refused_through_the_store_and_the_sdk(hub: Hub) -> None:
    store = open_store("sqlite://")
    with pytest.raises(ValidationError):
        store.upsert_nodes([Node("x", "Run\n")])
    store.upsert_nodes([Node("a", "Run"), Node("b", "Run")])
    with pytest.raises(ValidationError):
        store.upsert_edges([Edge("e", "USED\n", "a", "b")])
    with pytest.raises(ValidationError):
        store.find_nodes("Run", where={"lr\n": 1})
    assert store.count_edges() == 0
    client = hub.client()
    run = client.start_run("newlines")
    with pytest.raises(ValidationError):
        run.log_params({"lr\n": 0.1})
    run.log_params({"lr": 0.1})
    run.end()
    assert client.get_run(run.id).params == {"lr": 0.1}
    client.close()
