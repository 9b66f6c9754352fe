"""The tracking SDK end to end, in both modes: embedded (a real SQLite file and a real artifact
folder) and remote (the same, behind a real uvicorn server the SDK talks to over HTTP).

Checks look at the hub's database directly (``hub.store``): the data must be the same whichever
way it was written."""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import fresh_store_uri
from http_server import HubServer

import lineagehub as lh
from lineagehub import Settings, open_store
from lineagehub.artifacts import ArtifactInfo, ArtifactStore, digest_bytes, open_artifact_store
from lineagehub.graph import (
    BackendUnavailable,
    ConfigError,
    ConflictError,
    GraphStore,
    HubError,
    IntegrityError,
    NotFoundError,
    PermissionDenied,
    ValidationError,
)
from lineagehub.ingest.capture import capture_environment
from lineagehub.ingest.client import Client
from lineagehub.ingest.remote import HubConnection, RemoteArtifactStore, RemoteTracking
from lineagehub.services.tracking import Metric, RunStart
from lineagehub.vocabulary import DatasetVersion, Run, RunStatus

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ann",
    "GIT_AUTHOR_EMAIL": "ann@example.com",
    "GIT_COMMITTER_NAME": "Ann",
    "GIT_COMMITTER_EMAIL": "ann@example.com",
}


class Hub:
    """A hub for one test: a store (a SQLite file or the test Neo4j) and an artifact folder
    and, in remote mode, a server over them. ``target`` is what a client connects to (the
    store URI or the server URL); ``store`` and ``artifacts`` open the hub's own data, for
    checks."""

    def __init__(
        self, mode: str, folder: Path, stack: contextlib.ExitStack, backend: str = "sqlite"
    ) -> None:
        self.mode = mode
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.uri = fresh_store_uri(backend, folder)
        self._stack = stack
        self.store: GraphStore = self._open_store()
        self.artifacts: ArtifactStore = open_artifact_store(str(folder / "artifacts"))
        self._servers: dict[float | None, str] = {}
        self.target = self.uri if mode == "embedded" else self._server(None)

    def _open_store(self) -> GraphStore:
        store = open_store(self.uri)
        self._stack.callback(store.close)
        return store

    def _server(self, stale_after: float | None) -> str:
        """A server over the hub's data (one per ``stale_after``: a server setting)."""
        if stale_after not in self._servers:
            from lineagehub.interfaces.server import create_app

            settings = Settings() if stale_after is None else Settings(stale_after=stale_after)
            app = create_app(settings, store=self._open_store(), artifacts=self.artifacts)
            server = self._stack.enter_context(HubServer(app))
            self._servers[stale_after] = server.url
        return self._servers[stale_after]

    def client(self, *, stale_after: float | None = None, **settings: object) -> Client:
        """A client of this hub; ``stale_after`` applies where runs are judged: in the
        client embedded, in the server remote."""
        if stale_after is not None:
            settings["stale_after"] = stale_after
        config = Settings(**{"user": "ann", **settings})  # type: ignore[arg-type]
        if self.mode == "embedded":
            return Client(self.uri, settings=config)
        return Client(self._server(stale_after), settings=config)


@pytest.fixture(params=["embedded", "remote"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def hub(mode: str, store_backend: str, tmp_path: Path) -> Iterator[Hub]:
    with contextlib.ExitStack() as stack:
        yield Hub(mode, tmp_path / "hub", stack, store_backend)


@pytest.fixture
def remote_hub(tmp_path: Path) -> Iterator[Hub]:
    with contextlib.ExitStack() as stack:
        yield Hub("remote", tmp_path / "hub", stack)


@pytest.fixture
def client(hub: Hub) -> Iterator[Client]:
    c = hub.client()
    yield c
    c.close()


def test_a_run_end_to_end(client: Client, hub: Hub) -> None:
    with client.start_run(
        "gbm", project="churn", experiment="baseline", tags={"team": "growth"}
    ) as run:
        assert lh.active_run() is run
        run.log_params({"max_depth": 5, "learning_rate": 0.1, "max_leaf_nodes": None})
        for step in range(3):
            run.log_metrics({"loss": 1.0 / (step + 1), "auc": 0.8 + step / 100}, step=step)
        run.set_tag("stage", "exploration")
    assert lh.active_run() is None
    got = client.get_run(run.id)
    assert got.status is RunStatus.FINISHED and got.ended_at is not None
    assert got.params == {"max_depth": 5, "learning_rate": 0.1, "max_leaf_nodes": None}
    assert got.metrics == {"loss": pytest.approx(1 / 3), "auc": pytest.approx(0.82)}
    assert got.tags == {"team": "growth", "stage": "exploration"}
    assert (got.project, got.experiment, got.user) == ("churn", "baseline", "ann")
    assert [p.value for p in client.metric_history(run.id, "loss")] == pytest.approx(
        [1.0, 0.5, 1 / 3]
    )
    # the run's context is lineage
    up = hub.store.traverse([run.id], "UPSTREAM", 2)
    labels = {t.node.label for t in up.nodes.values()}
    assert {"Experiment", "Project", "Agent", "Environment"} <= labels
    env = next(t.node for t in up.nodes.values() if t.node.label == "Environment")
    assert env.props["python"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}")
    # the packages list is an artifact under the environment's digest
    assert client.artifacts.exists(env.props["packages_digest"])


def test_the_git_commit_is_captured(
    client: Client, hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=env)
    (repo / "train.py").write_text("print('v1')\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "v1"], check=True, env=env)
    (repo / "train.py").write_text("print('v2, not committed')\n")
    monkeypatch.chdir(repo)
    # The code is found from the entry point script (here pytest's, in another repository).
    monkeypatch.setattr(sys.modules["__main__"], "__file__", str(repo / "train.py"), raising=False)
    client._code_cache = None
    with client.start_run("dirty") as run:
        pass
    commits = hub.store.neighbors([run.id], "UPSTREAM", ["RAN_CODE"])[run.id]
    assert len(commits) == 1
    commit = commits[0].node.props
    assert commit["branch"] == "main" and commit["dirty"] is True
    diff = client.artifacts.get_bytes(commit["diff_digest"])
    assert b"not committed" in diff


def test_nested_runs_and_explicit_parents(client: Client, hub: Hub) -> None:
    with client.start_run("sweep") as parent:
        with client.start_run("trial-1") as child:
            assert lh.active_run() is child
        assert lh.active_run() is parent
        other = client.start_run("trial-2", parent=parent.id)
        other.end()
    assert client.get_run(child.id).parent == parent.id
    assert client.get_run(other.id).parent == parent.id
    children = hub.store.neighbors([parent.id], "DOWNSTREAM", ["CHILD_OF"])[parent.id]
    assert sorted(a.node.id for a in children) == sorted([child.id, other.id])
    with pytest.raises(NotFoundError):
        client.start_run("orphan", parent="run:no-such-run")


def test_a_run_on_another_hub_is_not_a_parent(client: Client, hub: Hub, tmp_path: Path) -> None:
    """A run started inside an active run of another hub (another store, another server)
    is not its child: this hub does not have that run. It is the child of the innermost
    active run of its own hub, started by any client of it."""
    elsewhere = Client(f"sqlite:///{tmp_path / 'other.db'}", artifacts=(tmp_path / "a").as_uri())
    with elsewhere.start_run("outer elsewhere", capture=False) as outer:
        with client.start_run("here", capture=False) as here:
            assert lh.active_run() is here
        second = hub.client()
        with (
            client.start_run("outer here", capture=False) as mine,
            elsewhere.start_run("inner elsewhere", capture=False) as back,
            second.start_run("inner here", capture=False) as inner,
        ):
            assert lh.active_run() is inner
    assert client.get_run(here.id).parent is None
    assert elsewhere.get_run(back.id).parent == outer.id  # its hub's innermost
    assert client.get_run(inner.id).parent == mine.id
    assert elsewhere.get_run(outer.id).status is RunStatus.FINISHED
    second.close()
    elsewhere.close()


def test_a_failing_block_ends_failed_and_ctrl_c_killed(client: Client) -> None:
    with pytest.raises(ZeroDivisionError), client.start_run("boom") as run:
        run.log_metric("loss", 0.5)
        _ = 1 / 0
    got = client.get_run(run.id)
    assert got.status is RunStatus.FAILED and "ZeroDivisionError" in (got.error or "")
    assert got.metrics == {"loss": 0.5}  # what was logged before the failure is kept
    with pytest.raises(KeyboardInterrupt), client.start_run("interrupted") as run2:
        raise KeyboardInterrupt
    assert client.get_run(run2.id).status is RunStatus.KILLED


def test_writes_to_a_finished_run_are_rejected(client: Client) -> None:
    with client.start_run("done") as run:
        run.log_param("a", 1)
    with pytest.raises(ConflictError, match="finished run"):
        run.log_metric("late", 1.0)
    with pytest.raises(ConflictError, match="finished run"):
        run.log_params({"b": 2})
    # also through the service, as another process would
    with pytest.raises(ConflictError, match="FINISHED"):
        client.tracking.log_batch(run.id, params={"b": 2})
    assert client.get_run(run.id).params == {"a": 1}


def test_params_are_immutable(client: Client) -> None:
    with client.start_run("p") as run:
        run.log_params({"lr": 0.1})
        run.log_params({"lr": 0.1})  # the same value again is fine
        with pytest.raises(ConflictError, match="lr"):
            run.log_params({"batch": 32, "lr": 0.2})
        run.flush()
        # another writer: the whole batch is refused, nothing of it is written
        with pytest.raises(ConflictError):
            client.tracking.log_batch(run.id, params={"epochs": 3, "lr": 0.5})
    assert client.get_run(run.id).params == {"lr": 0.1}


def test_params_past_a_runs_room_are_refused_when_logged_and_the_run_still_ends(
    client: Client,
) -> None:
    """A run's properties are at most 1 MB as JSON: params that would not fit are refused by
    the call that logs them (not by a later flush, which would refuse every buffered value
    and the run's end with them)."""
    from lineagehub.ingest.run import MAX_PARAMS_SIZE

    chunk = {f"k{i:05d}": "v" * 200 for i in range(1000)}  # ~213 kB of JSON
    with client.start_run("big config") as run:
        run.log_params(chunk)
        run.log_params({k.replace("k", "m"): v for k, v in chunk.items()})
        with pytest.raises(ValidationError, match="none of them was logged") as refused:
            run.log_params({k.replace("k", "n"): v for k, v in chunk.items()})
        assert refused.value.field == "params" and f"{MAX_PARAMS_SIZE:,}" in refused.value.message
        run.log_params({"lr": 0.1})  # what still fits is taken
    stored = client.get_run(run.id)
    assert stored.status.value == "FINISHED"
    assert len(stored.params) == 2001 and stored.params["lr"] == 0.1
    assert not any(k.startswith("n") for k in stored.params)


def test_tags_past_a_runs_room_are_refused_when_set_and_one_set_again_counts_once(
    client: Client,
) -> None:
    from lineagehub.ingest.run import MAX_TAGS_SIZE

    note = "n" * 9_000
    with client.start_run("notes") as run:
        for i in range(20):  # ~180 kB: within the room
            run.set_tags({f"t{i}": note})
        for _ in range(5):
            run.set_tags({"t0": note})  # the same tag again takes no more room
        more = {f"u{i}": note for i in range(8)}  # 180,190 + 72,072 characters: too many
        with pytest.raises(ValidationError, match="none of them was set") as refused:
            run.set_tags(more)
        assert refused.value.field == "tags" and f"{MAX_TAGS_SIZE:,}" in refused.value.message
        run.set_tags({"t1": "short now"})  # editing a tag frees its room: now they fit
        run.set_tags(more)
    stored = client.get_run(run.id)
    assert stored.status.value == "FINISHED"
    assert stored.tags["t1"] == "short now" and stored.tags["t19"] == note
    assert all(stored.tags[k] == note for k in more)


def test_metric_keys_past_a_runs_room_are_refused_when_logged_and_a_full_run_still_ends(
    client: Client,
) -> None:
    """Params, tags and the metrics' latest values share a run's 1 MB (950,000 characters of
    it; params and tags have caps of their own), so a run filled to the room still ends with
    all of it in one write. Before, new metric keys took any room: with params and tags near
    theirs, the buffered keys made the run's end too large, and it was refused (the run
    stayed RUNNING, its values unsaved)."""
    from lineagehub.ingest.run import MAX_RUN_DATA_SIZE

    with client.start_run("per-layer statistics") as run:
        run.log_params({f"p{i:04d}": "v" * 4_900 for i in range(99)})  # ~495 kB: nearly full
        run.set_tags({f"t{i:03d}": "n" * 4_900 for i in range(49)})  # ~245 kB
        key = "layer_{:04d}/attention/gradient_norm_mean_{:04d}"  # 47 characters
        first = {key.format(i, 0): float(i) for i in range(2_000)}  # 2,000 x 75 = 150 kB
        run.log_metrics(first, step=0)
        more = {key.format(i, 1): 0.5 for i in range(4_000)}  # 300 kB more: past the room
        with pytest.raises(ValidationError, match="none of them was logged") as refused:
            run.log_metrics(more)
        assert refused.value.field == "metrics"
        assert f"{MAX_RUN_DATA_SIZE:,}" in refused.value.message
        run.log_metrics({k: v + 1 for k, v in first.items()}, step=1)  # known keys: no room
        run.log_metrics({"loss": 0.25})  # a new key that still fits
    stored = client.get_run(run.id)
    assert stored.status.value == "FINISHED"
    assert len(stored.params) == 99 and len(stored.tags) == 49
    assert len(stored.metrics) == 2_001 and stored.metrics[key.format(7, 0)] == 8.0
    assert not any(k in stored.metrics for k in more)
    assert [p.value for p in client.metric_history(run.id, key.format(7, 0))] == [7.0, 8.0]
    with client.start_run("metrics only") as other:  # no params or tags: the keys fit
        other.log_metrics(first, step=0)
        other.log_metrics(more)
    assert len(client.get_run(other.id).metrics) == 6_000


def test_a_value_another_writer_made_impossible_is_dropped_and_named_not_kept_forever(
    client: Client,
) -> None:
    """A param another writer logged first with another value is refused at flush. Only it
    is dropped (and named in the error): the batch's other params, tags and points are
    logged, and later flushes work. Before, the whole buffer was kept and refused at every
    flush, heartbeat and end: the run's later metrics were never stored and it ended KILLED
    by staleness."""
    with client.start_run("shared") as run:
        run.log_params({"lr": 0.1, "epochs": 3})
        run.set_tags({"team": "a"})
        run.log_metrics({"loss": 0.5}, step=0)
        client.tracking.log_batch(run.id, params={"lr": 0.2})  # another writer, first
        with pytest.raises(ConflictError, match=r"params\.lr") as refused:
            run.flush()
        assert "every other buffered value was logged" in refused.value.message
        run.log_metrics({"loss": 0.4}, step=1)
        run.flush()
    stored = client.get_run(run.id)
    assert stored.status is RunStatus.FINISHED
    assert stored.params == {"lr": 0.2, "epochs": 3} and stored.tags["team"] == "a"
    assert [p.value for p in client.metric_history(run.id, "loss")] == [0.5, 0.4]

    # the same at the run's end: the run ends as asked with the rest, then it is raised
    with (
        pytest.raises(ConflictError, match=r"params\.lr"),
        client.start_run("ends anyway") as run,
    ):
        run.log_params({"lr": 0.1, "epochs": 3})
        run.log_metrics({"loss": 0.5})
        client.tracking.log_batch(run.id, params={"lr": 0.2})
    stored = client.get_run(run.id)
    assert stored.status is RunStatus.FINISHED and stored.params == {"lr": 0.2, "epochs": 3}
    assert stored.metrics == {"loss": 0.5}


def test_a_value_refused_at_a_heartbeat_is_raised_by_the_runs_end(hub: Hub) -> None:
    """The heartbeat's flush has no caller to tell: the run's end raises what it dropped."""
    with hub.client(heartbeat_interval=0.05) as c:
        run = c.start_run("beating")
        run.log_params({"lr": 0.1})
        c.tracking.log_batch(run.id, params={"lr": 0.2})  # another writer, first
        run.log_metrics({"loss": 0.5})
        deadline = time.monotonic() + 10
        while not hub.store.series_summary([run.id])[run.id] and time.monotonic() < deadline:
            time.sleep(0.02)  # until a heartbeat has flushed (what it could)
        assert hub.store.series_summary([run.id])[run.id]["loss"].count == 1
        with pytest.raises(ConflictError, match=r"params\.lr"):
            run.end()
        assert c.get_run(run.id).status is RunStatus.FINISHED


def test_a_run_ended_elsewhere_ends_here_at_the_next_flush(client: Client) -> None:
    with client.start_run("stopped from outside") as run:
        run.log_metrics({"loss": 0.5})
        client.tracking.end_run(run.id, RunStatus.KILLED, "stopped by an operator")
        with pytest.raises(ConflictError, match="ended elsewhere \\(KILLED\\)"):
            run.flush()
        with pytest.raises(ConflictError, match="has ended"):
            run.log_metrics({"loss": 0.4})  # at the call, not at some later flush
    assert client.get_run(run.id).status is RunStatus.KILLED
    assert run.info.status is RunStatus.KILLED
    # nothing buffered: the end says so, and the ActiveRun is over (no retry at exit)
    idle = client.start_run("idle")
    client.tracking.end_run(idle.id, RunStatus.KILLED, "stopped by an operator")
    with pytest.raises(ConflictError, match="ended elsewhere \\(KILLED\\)"):
        idle.end()
    assert idle.info.status is RunStatus.KILLED and idle.end().status is RunStatus.KILLED
    assert idle.id not in client._live


def test_nan_and_infinities_are_kept(client: Client) -> None:
    with client.start_run("diverged") as run:
        run.log_metrics({"loss": 0.5}, step=0)
        run.log_metrics({"loss": math.inf}, step=1)
        run.log_metrics({"loss": math.nan}, step=2)
    values = [p.value for p in client.metric_history(run.id, "loss")]
    assert values[:2] == [0.5, math.inf] and math.isnan(values[2])
    assert client.get_run(run.id).metrics == {"loss": None}  # JSON has no NaN; the series does


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda r: r.log_metric("acc", [0.1, 0.2]), "metrics.acc"),
        (lambda r: r.log_metric("acc", "high"), "metrics.acc"),
        (lambda r: r.log_metric("acc", True), "metrics.acc"),
        (lambda r: r.log_metric("acc", 0.5, step=1.5), "metrics.acc.step"),
        # numpy arrays of several values were a raw ValueError from .item()
        (lambda r: r.log_metric("acc", np.array([0.1, 0.2])), "metrics.acc"),
        (lambda r: r.log_metric("acc", 0.5, step=np.array([1, 2])), "metrics.acc.step"),
        (lambda r: r.log_params({"arr": np.array([1, 2])}), "params.arr"),
        (lambda r: r.log_metric("bad key!", 0.5), "metrics.bad key!"),
        (lambda r: r.log_params({"model": object()}), "params.model"),
        (lambda r: r.log_params({"lr": math.nan}), "params.lr"),
        (lambda r: r.log_params({"blob": "x" * 20_000}), "params.blob"),
        (lambda r: r.log_params({"nested": {"a": 1}}), "params.nested"),
        (lambda r: r.set_tags({"team": 3}), "tags.team"),
        (lambda r: r.log_dataset([[1, 2]], name="x"), "data"),
        (lambda r: r.log_confusion_matrix([[1, 2], [3]]), "matrix"),
        (lambda r: r.log_dict({"when": object()}, "x.json"), "data"),
        (lambda r: r.log_figure("not a figure", "f.png"), "figure"),
        (lambda r: r.log_dict({"a": 1}, "stats.json", kind="feature-stats"), "kind"),
        (lambda r: r.log_evaluation({"a": 1}, "stats", kind="feature-stats"), "kind"),
        (lambda r: r.log_dataset([{"a": 1}], name="x", role="holdout"), "role"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(
    client: Client, hub: Hub, call: object, field: str
) -> None:
    with client.start_run("bad") as run:
        run.log_param("ok", 1)
        with pytest.raises(ValidationError) as info:
            call(run)  # type: ignore[operator]
        assert info.value.field == field
    got = client.get_run(run.id)
    assert got.params == {"ok": 1} and got.metrics == {} and got.status is RunStatus.FINISHED
    assert hub.store.count_nodes("Artifact") == 0


def test_closed_vocabularies_list_the_allowed_values(
    client: Client, hub: Hub, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError) as info:
        client.start_run("p", kind="pipeline")
    assert info.value.field == "kind"
    assert "'pipeline'" in str(info.value) and "'train', 'evaluate', 'transform'" in str(info.value)
    assert hub.store.count_nodes("Run") == 0
    stats = tmp_path / "stats.json"
    stats.write_text("{}")
    with client.start_run("a") as run, pytest.raises(ValidationError) as info:
        run.log_artifact(stats, kind="feature-stats")
    assert info.value.field == "kind" and "'feature-importances'" in str(info.value)
    assert hub.store.count_nodes("Artifact") == 0
    with client.start_run("b") as run, pytest.raises(ValidationError) as info:
        run.end("DONE")
    assert info.value.field == "status" and "'FINISHED'" in str(info.value)


def test_missing_files_and_unknown_runs(client: Client, tmp_path: Path) -> None:
    with client.start_run("files") as run:
        with pytest.raises(NotFoundError, match=r"nope\.txt"):
            run.log_artifact(tmp_path / "nope.txt")
        with pytest.raises(NotFoundError, match=r"nope\.csv"):
            run.log_dataset(tmp_path / "nope.csv")
        with pytest.raises(NotFoundError, match="no-model"):
            run.log_model(tmp_path / "no-model", name="m")
    with pytest.raises(NotFoundError):
        client.get_run("run:does-not-exist")
    with pytest.raises(NotFoundError):
        client.tracking.log_batch("run:does-not-exist", params={"a": 1})


def test_in_memory_data_needs_a_name(client: Client) -> None:
    np = pytest.importorskip("numpy", reason="numpy (the [data] extra) is not installed")
    with client.start_run("x") as run, pytest.raises(ValidationError) as info:
        run.log_dataset(np.arange(10))
    assert info.value.field == "name"


def test_datasets_are_versioned_by_content(client: Client, hub: Hub, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas", reason="pandas (the [data] extra) is not installed")
    raw = pd.DataFrame({"tenure": [1, 5, 7, 12], "plan": ["a", "b", "a", "c"]})
    with client.start_run("prep", kind="transform") as prep:
        v_raw = prep.log_dataset(raw, name="customers_raw", namespace="warehouse", role="input")
        again = prep.log_dataset(raw.copy(), name="customers_raw", namespace="warehouse")
        clean = raw[raw.tenure > 1]
        v_clean = prep.log_output_dataset(clean, name="customers_clean", namespace="warehouse")
    assert again.node_id == v_raw.node_id  # same content, same version
    assert v_raw.row_count == 4 and v_clean.row_count == 3
    assert [c.name for c in v_raw.columns or []] == ["tenure", "plan"]
    assert v_raw.profile is not None and "tenure" in json.dumps(v_raw.profile)
    with client.start_run("train") as train:
        train.log_dataset(clean, name="customers_clean", namespace="warehouse", role="train")
    # data-to-data lineage skips the runs
    sub = hub.store.traverse([v_clean.node_id], "UPSTREAM", 1, edge_kinds=["DERIVED_FROM"])
    assert set(sub.nodes) == {v_clean.node_id, v_raw.node_id}
    # who used the clean data, who made it
    used_by = hub.store.neighbors([v_clean.node_id], "DOWNSTREAM", ["USED"])[v_clean.node_id]
    assert [a.node.id for a in used_by] == [train.id]
    assert used_by[0].edge.props["role"] == "train"
    made_by = hub.store.neighbors([v_clean.node_id], "UPSTREAM", ["GENERATED_BY"])
    assert [a.node.id for a in made_by[v_clean.node_id]] == [prep.id]


def test_datasets_by_reference(client: Client, hub: Hub, tmp_path: Path) -> None:
    """A URI and a digest, no data read: the version logging the data gives when the digest
    matches; data logged later adds its schema and profile to it."""
    from lineagehub.ingest.datasets import fingerprint

    path = tmp_path / "customers.csv"
    path.write_text("tenure,plan\n1,a\n5,b\n")
    later = tmp_path / "later.csv"
    later.write_text("x\n1\n2\n3\n")
    records = [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}]
    with client.start_run("prep") as prep:
        by_data = prep.log_dataset(path)
        by_data_lean = prep.log_dataset(records, name="toy", namespace="lab", profile=False)
    digest_later = fingerprint(later).digest
    with client.start_run("train") as train:
        ref = train.log_dataset_ref(path.as_uri(), by_data.digest, role="validation")
        lean_ref = train.log_dataset_ref("mem://toy", fingerprint(records).digest,
                                         name="toy", namespace="lab")  # fmt: skip
        first = train.log_dataset_ref(later.as_uri(), digest_later, schema={"x": "int64"})
        lake = train.log_dataset_ref(
            "s3://lake/events/2026.parquet",
            "sha256:" + "ab" * 32,
            schema=[{"name": "ts", "dtype": "datetime64[ns]"}],
            row_count=10,
            size_bytes=2048,
        )
        made = train.log_dataset_ref(
            "s3://lake/out.parquet", "sha256:" + "cd" * 32, output=True, derived_from=[lake]
        )
        for bad, field in (
            (dict(uri="s3://x/y", digest="sha256:ABC"), "digest"),
            (dict(uri="", digest="sha256:" + "0" * 64), "uri"),
            (dict(uri="s3://x/y", digest="sha256:" + "0" * 64, row_count=-1), "row_count"),
            (dict(uri="s3://x/y", digest="sha256:" + "0" * 64, schema="x int"), "schema"),
        ):
            with pytest.raises(ValidationError) as e:
                train.log_dataset_ref(**bad)  # type: ignore[arg-type]
            assert e.value.field == field
        with pytest.raises(ValidationError) as unnamed:
            train.log_dataset_ref("mem://x", "sha256:" + "0" * 64)  # no host: no naming
        assert unnamed.value.field == "name"
    with client.start_run("profile") as again:
        profiled = again.log_dataset(later)
    assert ref.node_id == by_data.node_id and ref.profile == by_data.profile is not None
    assert lean_ref.node_id == by_data_lean.node_id
    assert [c.name for c in lean_ref.columns or []] == ["x", "y"]  # kept, not erased
    assert profiled.node_id == first.node_id and first.profile is None
    assert profiled.profile is not None and profiled.row_count == 3
    assert (lake.namespace, lake.name, lake.row_count) == ("s3://lake", "events/2026.parquet", 10)
    assert [(c.name, c.dtype) for c in lake.columns or []] == [("ts", "datetime64[ns]")]
    used = hub.store.neighbors([train.id], "UPSTREAM", ["USED"])[train.id]
    roles = {a.node.id: a.edge.props["role"] for a in used}
    assert roles[by_data.node_id] == "validation" and roles[lake.node_id] == "train"
    sources = hub.store.neighbors([made.node_id], "UPSTREAM", ["DERIVED_FROM", "GENERATED_BY"])
    assert {a.node.id for a in sources[made.node_id]} >= {lake.node_id, train.id}


def test_file_and_directory_datasets(client: Client, hub: Hub, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("x,y\n1,2\n3,4\n")
    (data / "b.csv").write_text("x,y\n5,6\n")
    with client.start_run("files") as run:
        f = run.log_dataset(data / "a.csv")
        d = run.log_dataset(data, role="validation", derived_from=[f])
    assert f.name == str(data / "a.csv") and f.namespace.startswith("file://")
    # the id reads as the file's URI, and that is a reference too
    assert f.node_id == f"dsv:{f.namespace}{data / 'a.csv'}@{f.digest}"
    assert f.dataset_id == f"dataset:{f.namespace}{data / 'a.csv'}"
    assert "%2F" not in f.node_id
    assert client.lineage([f"dataset:{f.namespace}{data / 'a.csv'}@latest"]).roots == [f.node_id]
    assert f.row_count == 2
    assert d.node_id != f.node_id
    derived = hub.store.neighbors([d.node_id], "UPSTREAM", ["DERIVED_FROM"])[d.node_id]
    assert [a.node.id for a in derived] == [f.node_id]


def test_artifacts_and_evaluations_are_data(client: Client, hub: Hub, tmp_path: Path) -> None:
    report = tmp_path / "report.md"
    report.write_text("# Findings\n")
    with client.start_run("eval", kind="evaluate") as run:
        a = run.log_artifact(report, kind="report")
        run.log_dict({"threshold": 0.5}, "config.json")
        run.log_text("hello", "notes.txt")
        run.log_confusion_matrix([[50, 2], [3, 45]], labels=["stay", "churn"])
        run.log_classification_report({"churn": {"precision": 0.96, "recall": 0.94}})
        run.log_roc_curve([0.0, 0.1, 1.0], [0.0, 0.8, 1.0], [math.inf, 0.5, 0.0], auc=0.91)
        run.log_pr_curve([1.0, 0.9], [0.0, 1.0], average_precision=0.88)
        run.log_feature_importances(["tenure", "plan"], [0.7, 0.3])
        run.log_feature_importances(["tenure", "plan"], [[0.1, -0.2], [0.3, 0.0]], shap=True)
        run.log_evaluation({"residuals": {"mean": 0.01, "max_abs": math.inf}}, "residuals.json")
        with pytest.raises(ValidationError) as bad:
            run.log_evaluation({"x": 1}, "x.json", kind="horoscope")
        assert bad.value.field == "kind"
    assert client.artifacts.get_bytes(a.digest) == b"# Findings\n"
    assert a.media_type == "text/markdown" and a.size == 11
    names = [name for name, _ in run.evaluations()]
    assert names == sorted(
        [
            "report.md", "config.json", "notes.txt", "confusion_matrix.json",
            "classification_report.json", "roc_curve.json", "pr_curve.json",
            "feature_importances.json", "shap_values.json", "residuals.json",
        ]
    )  # fmt: skip
    # evaluations can be queried as data, not only downloaded
    cm = hub.store.find_nodes("Artifact", {"kind": "confusion-matrix"}).items
    assert cm[0].props["data"] == {"labels": ["stay", "churn"], "matrix": [[50, 2], [3, 45]]}
    roc = hub.store.find_nodes("Artifact", {"data.auc": {"$gte": 0.9}}).items
    assert roc[0].props["data"]["thresholds"][0] is None  # inf is not JSON
    shap = hub.store.find_nodes("Artifact", {"kind": "shap-values"}).items[0]
    assert shap.props["data"]["mean_abs"] == pytest.approx([0.2, 0.1])
    report_data = hub.store.find_nodes("Artifact", {"data.residuals.mean": 0.01}).items
    assert report_data[0].props["data"]["residuals"]["max_abs"] is None


def test_figures(client: Client) -> None:
    matplotlib = pytest.importorskip("matplotlib", reason="matplotlib (the [plots] extra)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    with client.start_run("plot") as run:
        art = run.log_figure(fig, "loss.png")
    plt.close(fig)
    assert art.media_type == "image/png"
    assert client.artifacts.get_bytes(art.digest).startswith(b"\x89PNG")


class TinyModel:
    def __init__(self, w: float) -> None:
        self.w = w

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TinyModel) and other.w == self.w


def test_models_get_increasing_versions(client: Client, hub: Hub, tmp_path: Path) -> None:
    with client.start_run("train-1") as r1:
        r1.log_metrics({"auc": 0.81})
        v1 = r1.log_model(TinyModel(1.0), name="churn")
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"\x00\x01")
    (folder / "sub" / "config.json").write_text("{}")
    with client.start_run("train-2") as r2:
        r2.log_metrics({"auc": 0.86})
        v2 = r2.log_model(folder, name="churn", flavor="custom")
        v2_again = r2.log_model(folder, name="churn", flavor="custom")
    assert (v1.version, v2.version, v2_again.version) == (1, 2, 3)
    assert v1.node_id == "mv:churn/1" and v1.flavor == "pickle"
    assert v1.metrics == {"auc": 0.81} and v2.metrics == {"auc": 0.86}
    assert v2.artifact_digest == v2_again.artifact_digest  # deterministic tar, stored once
    model = pickle.loads(client.artifacts.get_bytes(v1.artifact_digest))
    assert model == TinyModel(1.0)
    trained_by = hub.store.neighbors(["mv:churn/2"], "UPSTREAM", ["GENERATED_BY"])
    assert [a.node.id for a in trained_by["mv:churn/2"]] == [r2.id]
    with client.start_run("x") as r3, pytest.raises(ValidationError):
        r3.log_model(lambda x: x, name="churn")


def test_a_run_records_the_model_versions_it_used(client: Client, hub: Hub) -> None:
    """Fine-tuning from a registered version: lineage (causal by default) sees the version
    upstream of the run and of what the run registered; the use is audited."""
    with client.start_run("pretrain") as r1:
        base = r1.log_model(TinyModel(1.0), name="base")
    with client.start_run("finetune") as r2:
        used = r2.log_input_model("base@1")
        assert r2.log_input_model(base, role="test") == used  # a second role, a second edge
        r2.log_input_model("base@latest")  # the same version and role: the same edge
        tuned = r2.log_model(TinyModel(2.0), name="tuned")
        with pytest.raises(NotFoundError):
            r2.log_input_model("base@7")
        with pytest.raises(ValidationError) as bad:
            r2.log_input_model("base@1", role="teacher")
        assert bad.value.field == "role"
    assert used.node_id == "mv:base/1" and used.artifact_digest == base.artifact_digest
    with pytest.raises(ConflictError):
        r2.log_input_model("base@1")  # the run has ended
    edges = hub.store.neighbors([r2.id], "UPSTREAM", ["USED"], ["ModelVersion"])[r2.id]
    roles = sorted((a.node.id, a.edge.props["role"]) for a in edges)
    assert roles == [("mv:base/1", "base-model"), ("mv:base/1", "test")]
    upstream = client.lineage([tuned.node_id], "UPSTREAM", 3)
    assert {"mv:base/1", r1.id, r2.id} <= set(upstream.nodes)
    downstream = client.lineage(["model:base@1"], "DOWNSTREAM", downstream_depth=2)
    assert {r2.id, tuned.node_id} <= set(downstream.nodes)
    uses = [e.target for e in hub.store.read_audit(0, 1000) if e.action == "model_version.use"]
    assert uses == [r2.id] * 3


def test_versions_registered_from_stored_artifacts(
    client: Client, hub: Hub, tmp_path: Path
) -> None:
    """A finished run's output, or content already in the artifact store, registered later:
    numbered after log_model's versions, generated by that run or by none, audited."""
    weights = tmp_path / "model.onnx"
    weights.write_bytes(b"onnx weights")
    with client.start_run("train") as run:
        run.log_metrics({"auc": 0.9})
        first = run.log_model(TinyModel(1.0), name="churn")
        run.log_artifact(weights)
    from_run = client.register_model_version(
        "churn", run_id=run.id, artifact="model.onnx", flavor="onnx", primary_metric="auc"
    )
    stored = client.artifacts.put_bytes(b"imported from elsewhere")
    alone = client.register_model_version("imported", digest=stored.digest, description="hf")
    assert (first.version, from_run.version, alone.version) == (1, 2, 1)
    assert from_run.metrics == {"auc": 0.9} and from_run.flavor == "onnx"
    assert from_run.artifact_digest == client.artifacts.put_file(weights).digest
    assert alone.metrics == {} and alone.description == "hf"
    made_by = hub.store.neighbors(["mv:churn/2", "mv:imported/1"], "UPSTREAM", ["GENERATED_BY"])
    assert [a.node.id for a in made_by["mv:churn/2"]] == [run.id]
    assert made_by["mv:imported/1"] == []
    assert client.get_model_version("imported@latest").node_id == alone.node_id
    created = [
        e.target for e in hub.store.read_audit(0, 1000) if e.action == "model_version.create"
    ]
    assert created == ["mv:churn/1", "mv:churn/2", "mv:imported/1"]
    # a logged folder registered as a version stays a folder: it downloads unpacked
    folder = tmp_path / "stats"
    (folder / "per-class").mkdir(parents=True)
    (folder / "per-class" / "a.csv").write_text("x\n1\n")
    with client.start_run("profile") as profile:
        logged = profile.log_artifact(folder)
    client.register_model_version("stats-model", run_id=profile.id, artifact="stats")
    unpacked = client.download(logged.digest, tmp_path / "again")
    assert unpacked.is_dir() and (unpacked / "per-class" / "a.csv").read_text() == "x\n1\n"
    missing = "sha256:" + "0" * 64
    for call, error in (
        (lambda: client.register_model_version("x", digest=missing), NotFoundError),
        (lambda: client.register_model_version("x", run_id=run.id, artifact="nope"), NotFoundError),
        (
            lambda: client.register_model_version("x", digest=stored.digest, run_id="run:0"),
            NotFoundError,
        ),
        (lambda: client.register_model_version("x"), ValidationError),
        (lambda: client.register_model_version("x", digest="sha256:zz"), ValidationError),
    ):
        with pytest.raises(error):
            call()
    assert hub.store.get_nodes(["model:x"]) == [None]


def test_metrics_are_buffered_and_flushed(client: Client, hub: Hub) -> None:
    run = client.start_run("buffered")
    for step in range(100):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    # nothing has reached the store yet: a training loop pays no database round trip
    assert hub.store.read_series(run.id, "loss") == []
    run.flush()
    assert len(hub.store.read_series(run.id, "loss")) == 100
    run.log_metrics({f"m{i}": float(i) for i in range(10_001)})  # over the buffer limit
    assert hub.store.series_summary([run.id])[run.id]["m10000"].count == 1
    run.end()


def test_a_runs_latest_metric_is_the_one_at_its_highest_step_however_flushed(
    client: Client,
) -> None:
    """Step 10, then step 5: a run's latest value was step 10's when both were sent in one
    flush and step 5's when a flush fell between them (comparisons, from the series, said
    step 10's either way, and a search for runs said step 5's)."""
    apart, together = client.start_run("apart"), client.start_run("together")
    apart.log_metric("loss", 10.0, step=10)
    apart.flush()
    apart.log_metric("loss", 5.0, step=5)
    apart.flush()
    together.log_metric("loss", 10.0, step=10)
    together.log_metric("loss", 5.0, step=5)
    together.flush()
    for run in (apart, together):
        assert client.get_run(run.id).metrics["loss"] == 10.0, run.name
        run.log_metric("loss", 11.0, step=10)  # the same step again: the newer value
        run.flush()
        assert client.get_run(run.id).metrics["loss"] == 11.0, run.name
        run.end()
    found, _ = client.search_runs({"metrics.loss": {"$gte": 11.0}})
    assert sorted(r.name for r in found) == ["apart", "together"]


def test_the_heartbeat_flushes_and_search_finds_runs(hub: Hub) -> None:
    with hub.client(heartbeat_interval=0.05) as c:
        runs = []
        for i in range(5):
            r = c.start_run(f"r{i}", project="p")
            r.log_metrics({"auc": 0.7 + i / 20})
            runs.append(r)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if all(hub.store.series_summary([r.id])[r.id] for r in runs):
                break
            time.sleep(0.02)
        assert all(hub.store.series_summary([r.id])[r.id] for r in runs)
        for r in runs:
            r.end()
        found, cursor = c.search_runs({"metrics.auc": {"$gte": 0.79}}, order_by="-metrics.auc")
        assert [r.name for r in found] == ["r4", "r3", "r2"] and cursor is None


SCRIPT = """
import os, sys, lineagehub as lh
client = lh.connect(sys.argv[1])
run = lh.start_run(sys.argv[2])
lh.log_params({"mode": sys.argv[2]})
for step in range(50):
    lh.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
print(run.id, flush=True)
if sys.argv[2] == "crash":
    raise RuntimeError("diverged")
if sys.argv[2] == "killed":
    run.flush()
    os.kill(os.getpid(), 9)
"""


def _script(hub: Hub, mode: str) -> tuple[str, int]:
    env = {**os.environ, "LINEAGEHUB_USER": "ann", "LINEAGEHUB_HEARTBEAT_INTERVAL": "60"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), hub.target, mode],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if done.returncode not in (0, 1, -9) or (mode == "killed") != (done.returncode == -9):
        print(done.stderr, file=sys.stderr)  # what went wrong in the script, with the failure
    return done.stdout.strip(), done.returncode


def test_runs_left_open_end_at_exit(hub: Hub) -> None:
    ok_id, code = _script(hub, "exit")
    assert code == 0
    crash_id, code = _script(hub, "crash")
    assert code == 1
    with hub.client() as c:
        ok = c.get_run(ok_id)
        assert ok.status is RunStatus.FINISHED and ok.params == {"mode": "exit"}
        assert len(c.metric_history(ok_id, "loss")) == 50  # nothing buffered was lost
        crashed = c.get_run(crash_id)
        assert crashed.status is RunStatus.FAILED and "diverged" in (crashed.error or "")
        assert len(c.metric_history(crash_id, "loss")) == 50


ENDINGS = """
import sys, lineagehub as lh
lh.connect(sys.argv[1])
case = sys.argv[2]
if case == "sys.exit(0) in a block":
    with lh.start_run(case, capture=False) as run:
        print(run.id, flush=True)
        sys.exit(0)
run = lh.start_run(case, capture=False)
run.log_metrics({"loss": 0.5})
print(run.id, flush=True)
if case == "sys.exit(2), left open":
    sys.exit(2)
if case == "Ctrl-C, left open":
    raise KeyboardInterrupt
"""


def test_a_script_ends_its_runs_as_it_ends(hub: Hub) -> None:
    """``sys.exit(0)`` is a clean end, in a block or not; ``sys.exit(2)`` a failure; Ctrl-C
    KILLED, in a block or not."""
    expected = {
        "sys.exit(0) in a block": (0, RunStatus.FINISHED, None),
        "sys.exit(2), left open": (2, RunStatus.FAILED, "SystemExit: 2"),
        "Ctrl-C, left open": (-2, RunStatus.KILLED, "KeyboardInterrupt"),
    }
    env = {**os.environ, "LINEAGEHUB_HEARTBEAT_INTERVAL": "60"}
    ended = {}
    for case in expected:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(ENDINGS), hub.target, case],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        ended[case] = done.returncode, done.stdout.strip()
    with hub.client() as c:
        got = {case: (code, *_status(c.get_run(run_id))) for case, (code, run_id) in ended.items()}
    assert got == expected


def _status(run: Run) -> tuple[RunStatus, str | None]:
    return run.status, run.error


def test_a_client_block_ended_by_an_error_ends_its_open_runs_so(hub: Hub) -> None:
    """Runs left open in a ``with Client(...)`` block end as the block did: FAILED with the
    error that ended it, KILLED by Ctrl-C."""
    with pytest.raises(RuntimeError), hub.client() as c:
        failed = c.start_run("open at an error", capture=False)
        failed.log_metrics({"loss": 0.5})
        raise RuntimeError("diverged")
    with pytest.raises(KeyboardInterrupt), hub.client() as c:
        killed = c.start_run("open at Ctrl-C", capture=False)
        raise KeyboardInterrupt
    with hub.client() as c:
        assert _status(c.get_run(failed.id)) == (RunStatus.FAILED, "RuntimeError: diverged")
        assert c.get_run(failed.id).metrics == {"loss": 0.5}
        assert _status(c.get_run(killed.id)) == (RunStatus.KILLED, "KeyboardInterrupt")


def test_closing_a_client_ends_every_run_even_if_one_cannot_end(hub: Hub) -> None:
    """A run that cannot be ended (here: ended elsewhere, its last points refused) does not
    keep the others open: close ends them all, then raises that run's error."""
    c = hub.client()
    gone = c.start_run("ended elsewhere", capture=False)
    kept = c.start_run("kept", capture=False)
    gone.log_metrics({"loss": 1.0})
    kept.log_metrics({"loss": 0.5})
    kept.log_metrics({"loss": 0.25})
    with hub.client() as other:
        other.tracking.end_run(gone.id, "KILLED", "by an operator")
    with pytest.raises(ConflictError, match="ended elsewhere"):
        c.close()
    assert lh.active_run() is None
    with hub.client() as other:
        assert other.get_run(kept.id).status is RunStatus.FINISHED
        assert [p.value for p in other.metric_history(kept.id, "loss")] == [0.5, 0.25]


def test_a_run_ended_by_another_thread_is_no_longer_active_in_its_own(client: Client) -> None:
    """Ended by a watchdog thread, or found ended elsewhere by another thread's flush (the
    heartbeat's): it is no longer the thread's active run nor the parent of its next run,
    and the module-level calls name it."""
    watched = client.start_run("watched", capture=False)
    watchdog = threading.Thread(target=watched.end, args=("KILLED", "watchdog"))
    watchdog.start()
    watchdog.join()
    assert lh.active_run() is None
    with pytest.raises(ConflictError, match="has ended"):
        lh.log_metrics({"loss": 1.0})
    with client.start_run("next", capture=False) as after:
        assert lh.active_run() is after
    assert client.get_run(after.id).parent is None
    with pytest.raises(ValidationError, match="no active run"):
        lh.log_metrics({"loss": 1.0})

    outer = client.start_run("outer", capture=False)
    inner = client.start_run("inner", capture=False)
    inner.log_metrics({"loss": 1.0})
    client.tracking.end_run(inner.id, "KILLED", "stale")  # as an operator would, elsewhere

    def heartbeat() -> None:
        with contextlib.suppress(ConflictError):
            inner.flush(heartbeat=True)

    beat = threading.Thread(target=heartbeat)
    beat.start()
    beat.join()
    assert lh.active_run() is outer
    with client.start_run("sibling", capture=False) as sibling:
        pass
    assert client.get_run(sibling.id).parent == outer.id
    outer.end()


FORKED = """
import json, os, signal, sys, threading
import lineagehub as lh
from lineagehub.graph import ConflictError, ValidationError

client = lh.connect(sys.argv[1])
held = lh.start_run("held", capture=False)
parent = lh.start_run("parent", capture=False)
tracking, inside, release, here = client.tracking, threading.Event(), threading.Event(), os.getpid()


class Held:  # the heartbeat stopped in the middle of a flush of run "held", holding its lock
    def __getattr__(self, name):
        return getattr(tracking, name)

    def log_batch(self, *args, **kwargs):
        if os.getpid() == here and threading.current_thread().name == "lineagehub-heartbeat":
            inside.set()
            release.wait()
        return tracking.log_batch(*args, **kwargs)


client.tracking = Held()
assert inside.wait(30), "no heartbeat"
parent.log_metrics({"loss": 0.5}, step=0)  # buffered: the parent's to write, once
pid = os.fork()
if pid == 0:
    signal.alarm(10)  # stuck on a lock a thread of the parent held: killed, and reported
    seen = {"active": repr(lh.active_run())}
    for name, call in [
        ("module", lambda: lh.log_metrics({"loss": 1.0})),
        ("held", lambda: held.log_metrics({"loss": 1.0})),
        ("parent", lambda: parent.log_metrics({"loss": 1.0})),
        ("end", parent.end),
    ]:
        try:
            call()
            seen[name] = "accepted"
        except (ConflictError, ValidationError) as e:
            seen[name] = f"{type(e).__name__}: {e}"
    own = lh.start_run("own", capture=False)
    own.log_metrics({"x": 1.0})
    seen["own"] = own.id
    print(json.dumps(seen), flush=True)
    sys.exit(0)  # a normal exit (atexit runs): the child's own run ends, the parent's do not
_, status = os.waitpid(pid, 0)
after = tracking.get_run(parent.id).status.value
release.set()
held.end()
parent.end()
print(json.dumps({"status": status, "after": after, "parent": parent.id}), flush=True)
"""


def test_a_forked_child_starts_with_none_of_its_parents_runs(hub: Hub) -> None:
    """A child forked while the heartbeat held a run's lock mid-flush: it does not wait on
    that lock; it has no active run; the runs it inherited refuse its writes and its end;
    a run it starts is its own (no parent) and ends when it exits, and its exit leaves the
    parent's runs and their buffers alone."""
    env = {**os.environ, "LINEAGEHUB_HEARTBEAT_INTERVAL": "0.01"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORKED), hub.target],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and len(lines) == 2, done.stderr
    child, parent = lines
    assert parent["status"] == 0  # the child exited (not killed, stuck on a lock)
    assert child["active"] == "None"
    assert child["module"].startswith("ValidationError: no active run in this process, forked")
    for name in ("held", "parent", "end"):
        assert child[name].startswith("ConflictError: "), name
        assert "forked" in child[name] and "lh.start_run" in child[name]
    assert parent["after"] == "RUNNING"  # the child's exit did not end it
    with hub.client() as c:
        points = c.metric_history(parent["parent"], "loss")
        assert [(p.step, p.value) for p in points] == [(0, 0.5)]  # once, by the parent
        own = c.get_run(child["own"])
        assert own.status is RunStatus.FINISHED and own.parent is None
        assert own.metrics == {"x": 1.0}


WORKERS = """
import json, multiprocessing, sys
import lineagehub as lh
from lineagehub.graph import ValidationError

lh.connect(sys.argv[1])
parent = lh.start_run("parent", capture=False)


def work(i):
    try:
        lh.log_metrics({"from_worker": float(i)})
        logged = "accepted"
    except ValidationError as e:
        logged = str(e)
    with lh.start_run(f"worker-{i}", capture=False) as run:
        run.log_metrics({"m": float(i)})
    return logged, run.id


with multiprocessing.get_context("fork").Pool(2) as pool:
    results = pool.map(work, range(2))
parent.end()
print(json.dumps({"parent": parent.id, "results": results}), flush=True)
"""


def test_multiprocessing_fork_workers_log_into_runs_of_their_own(hub: Hub) -> None:
    """The module-level calls of a worker do not reach the parent's run (they raise: no
    active run here), and the runs workers start are not its children."""
    env = {**os.environ, "LINEAGEHUB_HEARTBEAT_INTERVAL": "60"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(WORKERS), hub.target],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    for logged, _ in out["results"]:
        assert logged.startswith("no active run in this process, forked from process"), logged
    with hub.client() as c:
        assert c.metric_history(out["parent"], "from_worker") == []
        for _, run_id in out["results"]:
            run = c.get_run(run_id)
            assert run.status is RunStatus.FINISHED and run.parent is None


def test_a_killed_process_leaves_a_run_that_turns_killed(hub: Hub) -> None:
    run_id, code = _script(hub, "killed")
    assert code == -9
    with hub.client() as c:
        assert c.get_run(run_id).status is RunStatus.RUNNING  # its heartbeat is still fresh
    time.sleep(0.3)
    with hub.client(stale_after=0.2) as c:
        got = c.get_run(run_id)
        assert got.status is RunStatus.KILLED and "heartbeat" in (got.error or "")
        assert len(c.metric_history(run_id, "loss")) == 50
        assert c.tracking.mark_stale_runs() == []  # already recorded


WORKER = """
import sys, lineagehub as lh
lh.connect(sys.argv[1])
for i in range(int(sys.argv[3])):
    with lh.start_run(f"w{sys.argv[2]}-{i}", project="sweep") as run:
        run.log_params({"worker": int(sys.argv[2]), "i": i})
        for step in range(20):
            run.log_metrics({"loss": step / 20}, step=step)
        run.log_model({"w": i}, name="shared-model")
"""


@pytest.mark.slow
def test_concurrent_processes_lose_nothing(hub: Hub) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WORKER), hub.target, str(w), "15"],
            env={**os.environ, "LINEAGEHUB_USER": "ann"},
        )
        for w in range(4)
    ]
    assert [p.wait(timeout=240) for p in procs] == [0] * 4
    runs = list(hub.store.iter_nodes("Run", {"project": "sweep"}))
    assert len(runs) == 60 and all(r.props["status"] == "FINISHED" for r in runs)
    assert all(hub.store.series_summary([r.id])[r.id]["loss"].count == 20 for r in runs)
    versions = sorted(
        n.props["version"] for n in hub.store.iter_nodes("ModelVersion", {"model": "shared-model"})
    )
    assert versions == list(range(1, 61))  # never the same number twice
    with hub.client() as c:
        found, _ = c.search_runs({"project": "sweep"}, limit=1000)
        assert len(found) == 60


def test_errors_are_the_same_in_both_modes(client: Client) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.get_run("run:does-not-exist")
    assert missing.value.ids == ["run:does-not-exist"]
    with pytest.raises(NotFoundError) as missing:
        client.tracking.log_batch("run:does-not-exist", tags={"a": "b"})
    assert missing.value.ids == ["run:does-not-exist"]
    with client.start_run("errors", project="default") as run:
        with pytest.raises(ValidationError) as bad:
            client.tracking.log_batch(run.id, params={"nested": {"a": 1}})
        assert bad.value.field == "params.nested"
        with pytest.raises(ValidationError) as bad:
            client.tracking.log_batch(run.id, tags={"team": 3})
        assert bad.value.field == "tags.team"
        with pytest.raises(ValidationError) as bad:
            client.tracking.end_run(run.id, "SOMEHOW")
        assert bad.value.field == "status"
        with pytest.raises(ValidationError) as bad:
            client.metric_history(run.id, "loss", max_points=1)
        assert bad.value.field == "max_points"
    with pytest.raises(ValidationError) as bad:
        client.search_runs(limit=0)
    assert bad.value.field == "limit"
    with pytest.raises(ValidationError) as bad:
        client.get_run("project:default")  # not a run
    assert bad.value.field == "run_id"
    with pytest.raises(ConflictError, match="finished run"):
        client.tracking.end_run(run.id)


def test_search_runs_pages_through_everything(client: Client) -> None:
    for i in range(7):
        with client.start_run(f"r{i}", project="paged", capture=False) as run:
            run.log_metric("auc", i / 10)
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = client.search_runs(
            {"project": "paged"}, order_by=["-metrics.auc"], after=cursor, limit=3
        )
        seen += [r.name for r in page]
        if cursor is None:
            break
    assert seen == [f"r{i}" for i in reversed(range(7))]


# --- remote mode only ----------------------------------------------------------------------


def test_a_server_that_cannot_be_reached_is_backend_unavailable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    tracking = RemoteTracking(url, retries=2, backoff=0.001)
    with pytest.raises(BackendUnavailable) as down:
        tracking.get_run("run:x")
    assert down.value.retryable and url in str(down.value)
    with pytest.raises(BackendUnavailable):
        tracking.artifacts.put_bytes(b"x")
    tracking.close()


def test_retries_only_what_is_safe_to_repeat() -> None:
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content)["query"])
        if len(calls) <= 2:
            return httpx.Response(503, json={"status": "unavailable"})
        if len(calls) == 3:
            error = {"message": "db busy", "extensions": {"code": "BACKEND_UNAVAILABLE"}}
            return httpx.Response(200, json={"data": None, "errors": [error]})
        return httpx.Response(200, json={"data": {"markStaleRuns": ["run:a"]}})

    tracking = RemoteTracking(
        "http://hub.test", transport=httpx.MockTransport(answer), retries=5, backoff=0.001
    )
    assert tracking.mark_stale_runs() == ["run:a"] and len(calls) == 4
    calls.clear()
    info = ArtifactInfo(digest="sha256:" + "0" * 64, size=1, uri="x", created=False)
    with pytest.raises(BackendUnavailable):  # a second try would register a second version
        tracking.log_model("run:a", info, name="m")
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("code", "extensions", "error"),
    [
        ("NOT_FOUND", {"ids": ["run:x"]}, NotFoundError),
        ("VALIDATION", {"field": "params.x"}, ValidationError),
        ("CONFLICT", {}, ConflictError),
        ("INTEGRITY", {}, IntegrityError),
        ("CONFIG", {}, ConfigError),
        ("INTERNAL", {}, HubError),
    ],
)
def test_server_errors_become_the_same_exceptions(
    code: str, extensions: dict[str, object], error: type[Exception]
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        ext = {"code": code, "retryable": False, **extensions}
        return httpx.Response(
            200, json={"data": None, "errors": [{"message": "no", "extensions": ext}]}
        )

    tracking = RemoteTracking("http://hub.test", transport=httpx.MockTransport(answer))
    with pytest.raises(error) as raised:
        tracking.log_batch("run:x", tags={"a": "b"})
    assert type(raised.value) is error and getattr(raised.value, "code", None) == code
    if "ids" in extensions:
        assert raised.value.ids == extensions["ids"]  # type: ignore[attr-defined]
    if "field" in extensions:
        assert raised.value.field == extensions["field"]  # type: ignore[attr-defined]


class LoseAnswers(httpx.BaseTransport):
    """Forwards requests to the server but loses the first answer to the named operation,
    as a dropped connection would: the work is done, the client does not know it."""

    def __init__(self, operation: str) -> None:
        self.inner = httpx.HTTPTransport()
        self.operation = operation.encode()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if not self.lost and self.operation in request.content:
            response.read()
            response.close()
            self.lost += 1
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


@pytest.mark.parametrize("operation", ["StartRun", "EndRun", "LogBatch", "LogModel"])
def test_a_lost_answer_is_reconciled_or_reported(remote_hub: Hub, operation: str) -> None:
    transport = LoseAnswers(operation)
    tracking = RemoteTracking(remote_hub.target, transport=transport, backoff=0.001)
    run = tracking.start_run(Run(name="flaky"), RunStart())
    metric = Metric("loss", 0.5, 0, datetime.now(timezone.utc))
    tracking.log_batch(run.id, params={"a": 1}, metrics=[metric])
    info = tracking.artifacts.put_bytes(b"weights")
    if operation == "LogModel":  # not repeatable: reported, never registered twice
        with pytest.raises(BackendUnavailable):
            tracking.log_model(run.id, info, name="m")
        assert remote_hub.store.count_nodes("ModelVersion") == 1
    ended = tracking.end_run(run.id, RunStatus.FINISHED)
    assert transport.lost == 1
    assert ended.status is RunStatus.FINISHED and ended.params == {"a": 1}
    assert len(remote_hub.store.read_series(run.id, "loss")) == 1
    assert remote_hub.store.count_nodes("Run") == 1
    tracking.close()


def _environment_of(store: GraphStore, run_id: str) -> list[str]:
    found = store.neighbors([run_id], "UPSTREAM", edge_kinds=["RAN_IN"])[run_id]
    return [a.node.id for a in found]


def test_a_run_names_an_environment_the_hub_has(client: Client, hub: Hub) -> None:
    """RunStart(environment_id=...): the run is RAN_IN that environment, with nothing sent but
    its id; an unknown one is NOT_FOUND and a wrong kind of id or both forms are refused, with
    no run written."""
    tracking = client.backend.tracking
    env = capture_environment()
    first = tracking.start_run(Run(name="first"), RunStart(environment=env))
    second = tracking.start_run(
        Run(name="second"), RunStart(environment_id=env.environment.node_id)
    )
    assert _environment_of(hub.store, first.id) == [env.environment.node_id]
    assert _environment_of(hub.store, second.id) == [env.environment.node_id]
    runs = hub.store.count_nodes("Run")
    with pytest.raises(NotFoundError) as missing:
        tracking.start_run(Run(name="x"), RunStart(environment_id="env:" + "0" * 64))
    assert missing.value.ids == ["env:" + "0" * 64]
    with pytest.raises(ValidationError):
        tracking.start_run(Run(name="x"), RunStart(environment_id=first.id))
    with pytest.raises(ValidationError):
        tracking.start_run(
            Run(name="x"), RunStart(environment=env, environment_id=env.environment.node_id)
        )
    assert hub.store.count_nodes("Run") == runs


class Recording(httpx.BaseTransport):
    """The real transport, keeping each request's body."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.bodies: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(request.content)
        return self.inner.handle_request(request)


def test_a_remote_client_sends_its_package_list_once(remote_hub: Hub) -> None:
    """The first run started through a server carries the environment; later ones name it.
    A client that believes the hub has it when the hub does not (another store behind the
    URL) sends it whole again, and the run is recorded all the same."""
    env = capture_environment()
    assert env.environment.packages  # this interpreter's packages: hundreds of entries
    recording = Recording()
    tracking = RemoteTracking(remote_hub.target, transport=recording)
    runs = [tracking.start_run(Run(name=f"r{i}"), RunStart(environment=env)) for i in range(3)]
    starts = [b for b in recording.bodies if b"startRun" in b]
    assert len(starts) == 3
    assert [b'"packages"' in b for b in starts] == [True, False, False]
    assert all(_environment_of(remote_hub.store, r.id) == [env.environment.node_id] for r in runs)
    tracking.close()

    recording = Recording()
    stale = RemoteTracking(remote_hub.target, transport=recording)
    stale._environments.add("env:" + "1" * 64)  # as if sent to a store the hub no longer has
    other = env.environment.model_copy(update={"python": "0.0.1"})  # not on the hub
    assert other.node_id != env.environment.node_id
    stale._environments.add(other.node_id)
    run = stale.start_run(
        Run(name="again"), RunStart(environment=type(env)(environment=other, packages_text=b""))
    )
    starts = [b for b in recording.bodies if b"startRun" in b]
    assert [b'"packages"' in b for b in starts] == [False, True]
    assert _environment_of(remote_hub.store, run.id) == [other.node_id]
    stale.close()


def test_a_proxy_in_the_environment_carries_the_sdks_requests(
    remote_hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GraphQL calls skip httpx's client machinery for speed, but never its proxy routing: a
    proxy named in the environment (here one that is not listening) is where they go, and
    NO_PROXY sends them to the hub again."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # closed when the block ends: nothing listens there
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead}")
    proxied = HubConnection(remote_hub.target, retries=0, token="")
    with pytest.raises(BackendUnavailable):
        proxied.graphql("{ __typename }", idempotent=True)
    proxied.close()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = HubConnection(remote_hub.target, retries=0, token="")
    assert direct.graphql("{ __typename }", idempotent=True) == {"__typename": "Query"}
    direct.close()


def test_remote_artifacts_stream_and_are_verified(remote_hub: Hub, tmp_path: Path) -> None:
    store = RemoteArtifactStore(remote_hub.target, chunk_size=64 * 1024)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1_000_000))
    first = store.put_file(big)
    assert first.created and first.size == 1_000_000
    again = store.put_file(big)  # already there: not sent again
    assert not again.created and again.digest == first.digest
    assert remote_hub.artifacts.get_bytes(first.digest) == big.read_bytes()
    with big.open("rb") as f:
        streamed = store.put_stream(f)
    assert streamed.digest == first.digest and not streamed.created
    assert store.exists(first.digest) and store.size(first.digest) == 1_000_000
    out = store.download(first.digest, tmp_path / "out" / "big.bin")
    assert out.read_bytes() == big.read_bytes()
    missing = "sha256:" + "0" * 64
    assert not store.exists(missing)
    with pytest.raises(NotFoundError) as nf:
        store.get_bytes(missing)
    assert nf.value.ids == [missing]
    with pytest.raises(ValidationError) as bad:
        store.exists("md5:abc")
    assert bad.value.field == "digest"
    with pytest.raises(PermissionDenied):
        store.delete(first.digest)
    # bytes damaged on the server: the server's own check cuts the download short
    path = Path(remote_hub.artifacts.uri_for(first.digest).removeprefix("file://"))
    path.chmod(0o644)
    path.write_bytes(b"\0" * 1_000_000)
    with pytest.raises(HubError):
        store.download(first.digest, tmp_path / "bad.bin")
    assert not (tmp_path / "bad.bin").exists()
    store.close()


def test_the_client_verifies_what_travels(tmp_path: Path) -> None:
    sent = b"model weights"
    digest = digest_bytes(sent)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":  # stored under another digest: damaged on the way
            request.read()
            return httpx.Response(
                200, json={"digest": digest_bytes(b"x"), "size": len(sent), "created": True}
            )
        return httpx.Response(200, content=b"MODEL weights")  # damaged on the way back

    store = RemoteArtifactStore(
        HubConnection("http://hub.test", transport=httpx.MockTransport(answer))
    )
    with pytest.raises(IntegrityError):
        store.put_bytes(sent)
    with pytest.raises(IntegrityError):
        store.get_bytes(digest)
    with pytest.raises(IntegrityError):
        store.download(digest, tmp_path / "weights.bin")
    assert not (tmp_path / "weights.bin").exists()


def test_remote_client_configuration(remote_hub: Hub) -> None:
    for url in ("http://", "ftp://hub:21", "http://hub:8000/?x=1"):
        with pytest.raises(ConfigError):
            RemoteTracking(url)
    with pytest.raises(ConfigError):
        Client(remote_hub.target, artifacts="/tmp/elsewhere")
    with Client(remote_hub.target + "/") as c:
        assert c.store is None and c.url == remote_hub.target + "/"
        assert isinstance(c.tracking, RemoteTracking)
        assert isinstance(c.artifacts, RemoteArtifactStore)
        assert c.search_runs() == ([], None)


@pytest.mark.skipif(
    "url" not in Settings.model_fields, reason="the url setting (LINEAGEHUB_URL) is not there yet"
)
def test_the_url_setting_makes_a_remote_client(
    remote_hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINEAGEHUB_URL", remote_hub.target)
    with Client() as c:
        assert c.store is None and c.url == remote_hub.target
        with c.start_run("by-setting", capture=False) as run:
            run.log_metric("loss", 0.1)
    assert remote_hub.store.get_node(run.id).props["status"] == "FINISHED"


def test_module_level_api_without_an_active_run() -> None:
    with pytest.raises(ValidationError, match="no active run"):
        lh.log_metrics({"loss": 1.0})


def test_a_run_that_cannot_end_does_not_outlive_its_client(tmp_path: Path) -> None:
    """Closing a client whose hub is gone raises, and leaves no active run behind for the
    code that runs next in the thread."""
    client = Client(f"sqlite:///{tmp_path / 'hub.db'}", settings=Settings(user="ann"))
    run = client.start_run("orphan")
    run.log_metrics({"loss": 1.0})
    assert lh.active_run() is run
    assert client.store is not None
    client.store.close()  # the hub goes away under the client
    with pytest.raises(HubError):
        client.close()
    assert lh.active_run() is None


def test_outputs_and_inputs_are_joined_whichever_is_logged_first(client: Client, hub: Hub) -> None:
    """A run's outputs are DERIVED_FROM its inputs: an output logged after the inputs, and an
    input logged after an output, both make the edge (nothing else does)."""
    digest = [f"sha256:{i:064x}" for i in range(4)]
    with client.start_run("both orders") as run:
        early = run.log_dataset_ref("s3://lake/early-output", digest[0], output=True)
        first = run.log_dataset_ref("s3://lake/input-1", digest[1])
        late = run.log_dataset_ref("s3://lake/late-output", digest[2], output=True)
        second = run.log_dataset_ref("s3://lake/input-2", digest[3])

    def sources(version: DatasetVersion) -> set[str]:
        found = hub.store.neighbors([version.node_id], "UPSTREAM", ["DERIVED_FROM"])
        return {a.node.id for a in found[version.node_id]}

    both = {first.node_id, second.node_id}
    assert sources(early) == both and sources(late) == both
    assert sources(first) == sources(second) == set()
