"""MLflow histories imported: a store built with MLflow's own client (runs, metric histories,
dataset inputs, artifacts, a registry with versions, aliases and stages), imported from a
``sqlite:///`` file, from an ``mlruns`` folder and from a real ``mlflow server``, into each
backend; every value checked; the import one audit entry; importing again changes nothing;
the CLI command."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mlflow", reason="needs MLflow's client: pip install 'lineagehub[mlflow]'")

from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import GraphStore, open_store
from lineagehub.interfaces.cli import main
from lineagehub.services.mlflow_import import AUDIT_ACTION, MlflowImporter
from tests.conftest import fresh_store_uri


def build_mlflow_store(uri: str, folder: Path) -> dict[str, Any]:
    """Three runs (one a child, one failed) with params, tags, 20-step metric histories (a
    NaN among them), a dataset input and artifacts; a registry with two versions, an alias
    and a stage. Returns what was logged, for the checks."""
    import pandas as pd
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    # artifacts under the test's folder (MLflow's default is ./mlruns in the working directory)
    exp = client.create_experiment(
        "churn", artifact_location=(folder / "mlflow-artifacts").as_uri(), tags={"team": "growth"}
    )
    logged: dict[str, Any] = {"runs": {}}
    model_dir = folder / "model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text("flavors: {}\n")
    (model_dir / "weights.bin").write_bytes(b"\x00\x01weights")
    parent_id = None
    for i, status in enumerate(["FINISHED", "FINISHED", "FAILED"]):
        tags = {"mlflow.runName": f"fit-{i}", "owner": "ann"}
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        if i == 0:
            tags.update(
                {
                    "mlflow.source.git.commit": "0123456789abcdef0123456789abcdef01234567",
                    "mlflow.source.git.repoURL": "https://github.com/acme/churn.git",
                }
            )
        run = client.create_run(exp, start_time=1_700_000_000_000 + i * 1000, tags=tags)
        rid = run.info.run_id
        parent_id = parent_id or rid
        params = {"lr": str(0.1 * (i + 1)), "max_depth": str(i + 3)}
        for k, v in params.items():
            client.log_param(rid, k, v)
        history = []
        for step in range(20):
            value = math.nan if (i == 2 and step == 19) else 1.0 / (step + 1 + i)
            client.log_metric(rid, "loss", value, timestamp=1_700_000_000_000 + step, step=step)
            history.append((step, value))
        client.log_metric(rid, "auc", 0.80 + i / 100, step=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import mlflow.data

            ds = mlflow.data.from_pandas(
                pd.DataFrame({"age": [31, 45], "plan": ["a", "b"]}),
                name="customers",
                source="s3://lake/customers.csv",
            )
        from mlflow.entities import DatasetInput, InputTag

        client.log_inputs(
            rid,
            datasets=[
                DatasetInput(ds._to_mlflow_entity(), [InputTag("mlflow.data.context", "training")])
            ],
        )
        client.log_text(rid, f"notes of run {i}", "notes/readme.txt")
        client.log_artifacts(rid, str(model_dir), "model")
        client.set_terminated(rid, status=status, end_time=1_700_000_100_000 + i * 1000)
        logged["runs"][rid] = {"params": params, "history": history, "status": status, "i": i}
    rids = list(logged["runs"])
    # an MLflow 3 logged model of the first run, with its own artifacts
    lm = client.create_logged_model(
        experiment_id=exp, name="clf", source_run_id=rids[0], params={"alpha": "0.1"}
    )
    client.log_model_artifacts(lm.model_id, str(model_dir))
    client.finalize_logged_model(lm.model_id, "READY")
    logged["logged_model"] = lm.model_id
    client.create_registered_model("churn-model", description="the churn model")
    for rid in rids[:2]:
        client.create_model_version("churn-model", f"runs:/{rid}/model", run_id=rid)
    client.set_registered_model_alias("churn-model", "champion", "2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client.transition_model_version_stage("churn-model", "1", "Production")
    logged["rids"] = rids
    return logged


@pytest.fixture
def hub(store_backend: str, tmp_path: Path) -> Iterator[tuple[GraphStore, Any]]:
    store = open_store(fresh_store_uri(store_backend, tmp_path))
    artifacts = open_artifact_store((tmp_path / "hub-artifacts").as_uri())
    try:
        yield store, artifacts
    finally:
        store.close()


@contextlib.contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """``mlflow server`` over a SQLite file, in a subprocess on 127.0.0.1: its URL."""
    import shutil
    import socket
    import subprocess
    import sys
    import time

    import httpx

    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent))
    if mlflow is None:
        pytest.skip("needs the mlflow command (mlflow-skinny)")
    with socket.socket() as sock:  # a port the OS says is free now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [mlflow, "server", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
            "--default-artifact-root", (folder / "server-artifacts").as_uri(),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                error = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                pytest.fail(f"mlflow server did not start: {error}")
            time.sleep(0.05)  # polling the server's health, not standing in for a wait
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.parametrize("kind", ["sqlite", "mlruns", "server"])
def test_every_value_of_an_mlflow_store_arrives(
    hub: tuple[GraphStore, Any],
    tmp_path: Path,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    store, artifacts = hub
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 writes one only so
    server = contextlib.ExitStack()
    request.addfinalizer(server.close)
    if kind == "sqlite":
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        source = uri
    elif kind == "mlruns":
        uri = (tmp_path / "mlruns").as_uri()
        source = str(tmp_path / "mlruns")
    else:  # an MLflow tracking server, through its REST API
        uri = source = server.enter_context(mlflow_server(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logged = build_mlflow_store(uri, tmp_path)
    importer = MlflowImporter(store, artifacts, actor="migrator")
    summary = importer.run(source)
    assert summary.unmapped == [], summary.unmapped
    # MLflow makes a "Default" experiment besides ours
    assert (summary.runs, summary.versions, summary.aliases, summary.experiments) == (3, 2, 1, 2)
    assert summary.metric_points == 3 * 21

    for rid, facts in logged["runs"].items():
        node = store.get_node(f"run:mlflow-{rid}")
        props = node.props
        assert props["name"] == f"fit-{facts['i']}"
        assert props["status"] == facts["status"]
        assert props["params"] == facts["params"]
        assert props["project"] == "mlflow" and props["experiment"] == "churn"
        assert props["tags"]["owner"] == "ann"
        assert props["started_at"].startswith("2023-11-14T22:13:2")
        series = store.read_series(node.id, "loss")
        got = [(p.step, p.value) for p in series]
        want = facts["history"]
        assert [s for s, _ in got] == [s for s, _ in want]
        for (_, a), (_, b) in zip(got, want):
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)
        assert [p.value for p in store.read_series(node.id, "auc")] == [
            pytest.approx(0.80 + facts["i"] / 100)
        ]
        used = store.neighbors([node.id], "UPSTREAM", ["USED"])[node.id]
        assert [(a.edge.props["role"], a.node.props["name"]) for a in used] == [
            ("train", "customers")
        ]
        assert [c["name"] for c in used[0].node.props["columns"]] == ["age", "plan"]
        made = store.neighbors([node.id], "DOWNSTREAM", ["GENERATED_BY"])[node.id]
        names = {a.edge.props.get("name") for a in made}
        assert {"notes/readme.txt", "model/MLmodel", "model/weights.bin"} <= names
    first, second, third = logged["rids"]
    assert store.get_node(f"run:mlflow-{second}").props["parent"] == f"run:mlflow-{first}"
    code = store.neighbors([f"run:mlflow-{first}"], "UPSTREAM", ["RAN_CODE"])
    assert code[f"run:mlflow-{first}"][0].node.props["sha"].startswith("0123456789ab")
    notes = [
        a.node
        for a in store.neighbors([f"run:mlflow-{third}"], "DOWNSTREAM", ["GENERATED_BY"])[
            f"run:mlflow-{third}"
        ]
        if a.edge.props.get("name") == "notes/readme.txt"
    ]
    assert artifacts.get_bytes(notes[0].props["digest"]) == b"notes of run 2"

    # the logged model: an Artifact of kind model, generated by its run, its files as a tar
    assert summary.logged_models == 1
    [clf] = [
        a
        for a in store.neighbors([f"run:mlflow-{first}"], "DOWNSTREAM", ["GENERATED_BY"])[
            f"run:mlflow-{first}"
        ]
        if a.edge.props.get("name") == "model:clf"
    ]
    assert clf.node.props["kind"] == "model"
    assert clf.node.props["data"]["mlflow_model_id"] == logged["logged_model"]
    assert clf.node.props["data"]["params"] == {"alpha": "0.1"}

    # the registry: versions with MLflow's numbers, the alias, the stage, the lineage
    v1, v2 = store.get_node("mv:churn-model/1"), store.get_node("mv:churn-model/2")
    assert v1.props["stage"] == "Production" and v2.props["stage"] == "None"
    assert v2.props["aliases"] == ["champion"] and v1.props["aliases"] == []
    assert store.get_node("model:churn-model").props["description"] == "the churn model"
    gen = store.neighbors([v1.id], "UPSTREAM", ["GENERATED_BY"])[v1.id]
    assert [a.node.id for a in gen] == [f"run:mlflow-{first}"]
    # the model's files, copied content-addressed (a folder as a tar)
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(artifacts.get_bytes(v1.props["artifact_digest"]))) as t:
        assert sorted(t.getnames()) == ["MLmodel", "weights.bin"]

    # the registry's history knows the imported alias and stage
    from datetime import datetime, timezone

    from lineagehub.services.registry import RegistryService

    registry = RegistryService(store)
    now = datetime.now(timezone.utc)
    assert registry.holder_at("churn-model", "champion", now) == 2
    assert registry.holder_at("churn-model", "Production", now) == 1
    changes = [(h.change, h.actor) for h in registry.history("churn-model")]
    assert sorted(changes) == [("alias", "migrator"), ("stage", "migrator")]

    # one transaction, attributable: the import's entry, then the registry's own (the alias
    # and the stage it set), all by the importer
    entries = [e for e in store.iter_audit() if e.actor == "migrator"]
    assert entries[0].action == AUDIT_ACTION
    assert entries[0].target == f"mlflow:{summary.source}"
    assert sorted(e.action for e in entries[1:]) == ["alias.set", "stage.promotion"]
    assert store.verify_audit().ok

    # importing again changes nothing; the finished runs are not even read again
    counts = {label: store.count_nodes(label) for label in ("Run", "ModelVersion", "Artifact")}
    again = importer.run(source)
    assert again.runs == 0 and again.runs_unchanged == 3
    assert {label: store.count_nodes(label) for label in counts} == counts
    assert len(registry.history("churn-model")) == 2  # nothing set again
    assert len(store.read_series(f"run:mlflow-{first}", "loss")) == 20

    # a run logged since: only it is read (incremental)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    new = client.create_run(client.get_experiment_by_name("churn").experiment_id)
    client.log_metric(new.info.run_id, "loss", 0.5, step=0)
    client.set_terminated(new.info.run_id)
    later = importer.run(source)
    assert (later.runs, later.runs_unchanged, later.metric_points) == (1, 3, 1)
    assert store.get_node(f"run:mlflow-{new.info.run_id}").props["metrics"] == {"loss": 0.5}


def test_what_cannot_be_mapped_is_reported_and_the_rest_imported(
    hub: tuple[GraphStore, Any], tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    store, artifacts = hub
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("odd", artifact_location=(tmp_path / "art").as_uri())
    run = client.create_run(exp)
    client.log_param(run.info.run_id, "ok", "1")
    client.log_param(run.info.run_id, "has:colon", "2")
    client.set_terminated(run.info.run_id)
    summary = MlflowImporter(store, artifacts).run(uri, copy_artifacts=False)
    assert summary.runs == 1
    assert summary.unmapped == [
        {
            "what": "param",
            "ref": f"{run.info.run_id}/has:colon",
            "reason": "not a key the hub takes",
        }
    ]
    assert store.get_node(f"run:mlflow-{run.info.run_id}").props["params"] == {"ok": "1"}


def test_a_run_with_skewed_clocks_and_64_bit_steps_costs_nothing_else(
    hub: tuple[GraphStore, Any], tmp_path: Path
) -> None:
    """A run MLflow recorded as ending before it started (clocks that disagreed), with a
    registered version and metric steps beyond 32 bits (a time in ms as the step): imported,
    its end at its start and those points reported; the other runs too. Before, the run was
    skipped and the edge of its version to it failed the whole import."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    store, artifacts = hub
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("skew", artifact_location=(tmp_path / "art").as_uri())
    good = client.create_run(exp, run_name="good").info.run_id
    client.log_metric(good, "auc", 0.9)
    client.set_terminated(good)
    skew = client.create_run(exp, run_name="skew", start_time=2_000_000_000_000).info.run_id
    client.log_batch(
        skew,
        metrics=[
            Metric("loss", 0.5, 2_000_000_000_000, 1),
            Metric("loss", 0.4, 2_000_000_000_000, 2**31 + 5),
        ],
    )
    client.set_terminated(skew, "FINISHED", end_time=1_999_999_999_000)
    client.create_registered_model("m")
    client.create_model_version("m", f"runs:/{skew}/model", run_id=skew)

    summary = MlflowImporter(store, artifacts).run(uri, copy_artifacts=False)
    assert summary.runs == 2
    assert {(u["what"], u["ref"]) for u in summary.unmapped} >= {
        ("end_time", skew),
        ("metric", f"{skew}/loss"),
    }
    run = store.get_node(f"run:mlflow-{skew}")
    assert run.props["ended_at"] == run.props["started_at"]
    assert [p.step for p in store.read_series(f"run:mlflow-{skew}", "loss")] == [1]
    assert store.get_node(f"run:mlflow-{good}") is not None
    versions = store.find_nodes("ModelVersion", {"model": "m"}).items
    assert len(versions) == 1
    made = store.neighbors([versions[0].id], "UPSTREAM", ["GENERATED_BY"])[versions[0].id]
    assert [a.node.id for a in made] == [f"run:mlflow-{skew}"]


def test_what_mlflow_deleted_stays_out_and_is_reported(
    hub: tuple[GraphStore, Any], tmp_path: Path
) -> None:
    """A run and an experiment in MLflow's trash are not imported as live ones: each is
    reported (a version registered from the deleted run comes without its run)."""
    from mlflow import MlflowClient

    store, artifacts = hub
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    kept = client.create_experiment("kept", artifact_location=(tmp_path / "a").as_uri())
    gone = client.create_experiment("gone", artifact_location=(tmp_path / "b").as_uri())
    live = client.create_run(kept).info.run_id
    trashed = client.create_run(kept).info.run_id
    in_gone = client.create_run(gone).info.run_id
    for run in (live, trashed, in_gone):
        client.set_terminated(run)
    client.create_registered_model("m")
    client.create_model_version("m", f"runs:/{trashed}/model", run_id=trashed)
    client.delete_run(trashed)
    client.delete_experiment(gone)

    summary = MlflowImporter(store, artifacts).run(uri, copy_artifacts=False)
    assert summary.runs == 1 and summary.experiments == 2  # kept, and MLflow's Default
    reported = {(u["what"], u["ref"], u["reason"]) for u in summary.unmapped}
    assert ("run", trashed, "deleted in MLflow") in reported
    assert ("experiment", gone, "deleted in MLflow") in reported
    assert [n.id for n in store.find_nodes("Run").items] == [f"run:mlflow-{live}"]
    (version,) = store.find_nodes("ModelVersion", {"model": "m"}).items
    assert store.neighbors([version.id], "UPSTREAM", ["GENERATED_BY"])[version.id] == []


def test_the_cli_imports_with_a_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_mlflow_store(uri, tmp_path)
    monkeypatch.setenv("LINEAGEHUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LINEAGEHUB_USER", "migrator")
    store_uri = f"sqlite:///{tmp_path / 'hub.db'}"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["import", "mlflow", "--from", uri, "--store", store_uri, "--reference-artifacts", "--json"])  # fmt: skip
    assert code == 0
    summary = json.loads(out.getvalue())
    assert summary["runs"] == 3 and summary["versions"] == 2 and summary["unmapped"] == []
    assert summary["artifactsCopied"] == 0 and summary["artifactsReferenced"] > 0
    with open_store(store_uri) as store:
        assert (
            store.count_nodes("Run", {"kind": "train"}) == 3
        )  # besides: the registry's promote runs
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["import", "mlflow", "--from", uri, "--store", store_uri]) == 0
    assert "3 runs unchanged" in out.getvalue()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["import", "mlflow", "--from", str(tmp_path / "nowhere"), "--store", store_uri]) == 2  # fmt: skip
    assert "from" in err.getvalue()


def test_an_alias_deleted_in_mlflow_is_removed_by_the_next_import(
    hub: tuple[GraphStore, Any], tmp_path: Path
) -> None:
    """Importing again mirrors MLflow's aliases both ways: one MLflow deleted goes (audited,
    as the registry's own change); one set in the hub since is the hub's own and stays."""
    from mlflow import MlflowClient

    from lineagehub.services.registry import RegistryService

    store, artifacts = hub
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    run = client.create_run(exp).info.run_id
    client.set_terminated(run)
    client.create_registered_model("m")
    client.create_model_version("m", f"runs:/{run}/model", run_id=run)
    client.set_registered_model_alias("m", "champion", "1")
    client.set_registered_model_alias("m", "shadow", "1")
    importer = MlflowImporter(store, artifacts)
    assert importer.run(uri, copy_artifacts=False).aliases == 2
    RegistryService(store).set_alias("m/1", "mine", "ann", "the hub's own")
    client.delete_registered_model_alias("m", "champion")

    again = MlflowImporter(store, artifacts).run(uri, copy_artifacts=False)
    assert again.aliases_removed == 1 and again.to_dict()["aliasesRemoved"] == 1
    (version,) = store.find_nodes("ModelVersion", {"model": "m"}).items
    assert sorted(version.props["aliases"]) == ["mine", "shadow"]
    removed = RegistryService(store).history("m", alias="champion")[-1]
    assert (removed.to, removed.reason) == (None, f"removed in MLflow ({uri})")
    # and once more: nothing left to remove
    assert MlflowImporter(store, artifacts).run(uri, copy_artifacts=False).aliases_removed == 0


def test_a_source_that_is_not_an_mlflow_store_is_refused_untouched(tmp_path: Path) -> None:
    """--from a LineageHub store (an easy mix-up with --store), a mistyped path or any folder:
    MLflow made its tables or its layout in it, and the import said it worked (exit 0).
    Exit 2 naming --from; the source as it was. An MLflow server that does not answer: one
    line, exit 5, after a few retries (not minutes of them)."""
    store_uri = f"sqlite:///{tmp_path / 'hub.db'}"
    assert main(["example", "--store", store_uri, "--json"]) == 0
    hub_file = tmp_path / "hub.db"
    tables = _tables(hub_file)
    folder = tmp_path / "papers"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    sources = [
        store_uri,
        f"sqlite:///{tmp_path / 'typo' / 'mlfow.db'}",
        str(folder),
        folder.as_uri(),
    ]
    for source in sources:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["import", "mlflow", "--from", source, "--store", store_uri])
        assert code == 2 and "from" in err.getvalue() and "Traceback" not in err.getvalue(), source
    assert _tables(hub_file) == tables  # no MLflow table made in the hub's own store
    assert not (tmp_path / "typo").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["import", "mlflow", "--from", "http://127.0.0.1:1", "--store", store_uri])
    assert code == 5 and "could not be read" in err.getvalue(), err.getvalue()
    assert "Traceback" not in err.getvalue()


def _tables(path: Path) -> set[str]:
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_a_logged_model_registered_from_its_run_arrives_and_nothing_is_written_beside(
    hub: tuple[GraphStore, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow 3's usual flow: ``log_model`` makes a logged model, ``register_model`` names it
    ``runs:/<run>/<name>``. MLflow resolves that through its default tracking URI, not the
    one the import gives it: the version was reported unreadable and left out (with its
    stage and aliases), and MLflow made an ``mlflow.db`` in the working directory."""
    from mlflow import MlflowClient

    store, artifacts = hub
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    run = client.create_run(exp).info.run_id
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text("flavors: {}\n")
    lm = client.create_logged_model(experiment_id=exp, name="clf", source_run_id=run)
    client.log_model_artifacts(lm.model_id, str(model_dir))
    client.finalize_logged_model(lm.model_id, "READY")
    client.set_terminated(run)
    client.create_registered_model("m")
    client.create_model_version("m", f"runs:/{run}/clf", run_id=run)
    client.set_registered_model_alias("m", "champion", "1")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    summary = MlflowImporter(store, artifacts).run(uri)
    assert summary.unmapped == [] and summary.versions == 1
    version = store.get_node("mv:m/1")
    assert version.props["aliases"] == ["champion"]
    import tarfile

    tar = io.BytesIO(artifacts.get_bytes(version.props["artifact_digest"]))
    with tarfile.open(fileobj=tar) as t:
        assert t.getnames() == ["MLmodel"]
    assert list(elsewhere.iterdir()) == []
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_versions_of_models_named_with_quotes_and_backslashes_arrive(
    hub: tuple[GraphStore, Any], tmp_path: Path
) -> None:
    """MLflow takes quotes and backslashes in a registered model's name. The import searched
    each model's versions with a filter quoting the name its own way, which MLflow's filter
    does not read: such a model arrived with no versions (its stage and aliases neither),
    and nothing was reported."""
    from mlflow import MlflowClient

    store, artifacts = hub
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    run = client.create_run(exp).info.run_id
    client.set_terminated(run)
    names = ["it's", 'say "hi"', "both ' and \"", "back\\slash", "plain"]
    for name in names:
        client.create_registered_model(name)
        client.create_model_version(name, f"runs:/{run}/model", run_id=run)
        client.create_model_version(name, f"runs:/{run}/model", run_id=run)
        client.set_registered_model_alias(name, "champion", "2")

    summary = MlflowImporter(store, artifacts).run(uri, copy_artifacts=False)
    assert summary.unmapped == []
    assert (summary.models, summary.versions, summary.aliases) == (5, 10, 5)
    for name in names:
        versions = store.find_nodes("ModelVersion", {"model": name}).items
        assert sorted(v.props["version"] for v in versions) == [1, 2], name
        assert store.get_node(f"mv:{name}/2").props["aliases"] == ["champion"]


def test_a_version_whose_files_cannot_be_read_arrives_with_its_stage_and_aliases(
    hub: tuple[GraphStore, Any], tmp_path: Path
) -> None:
    """A version whose files MLflow lost (or never had) was left out whole: its stage, its
    aliases, its run. It arrives now, its artifact a reference naming the MLflow URI, and is
    reported; one whose files went after an import keeps the files it was imported with."""
    import shutil

    from mlflow import MlflowClient

    from lineagehub.services.registry import RegistryService

    store, artifacts = hub
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    run = client.create_run(exp).info.run_id
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "MLmodel").write_text("flavors: {}\n")
    client.log_artifacts(run, str(tmp_path / "model"), "model")
    client.set_terminated(run)
    client.create_registered_model("m")
    missing = (tmp_path / "nowhere" / "model").as_uri()
    client.create_model_version("m", missing, run_id=run)  # v1: files never there
    client.create_model_version("m", f"runs:/{run}/model", run_id=run)  # v2: there, for now
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client.transition_model_version_stage("m", "1", "Production")
    client.set_registered_model_alias("m", "champion", "1")

    summary = MlflowImporter(store, artifacts).run(uri)
    assert summary.versions == 2 and summary.aliases == 1
    assert ("model version", "m/1") in {(u["what"], u["ref"]) for u in summary.unmapped}
    v1 = store.get_node("mv:m/1")
    assert (v1.props["stage"], v1.props["aliases"]) == ("Production", ["champion"])
    made = store.neighbors([v1.id], "UPSTREAM", ["GENERATED_BY"])[v1.id]
    assert [a.node.id for a in made] == [f"run:mlflow-{run}"]
    reference = json.loads(artifacts.get_bytes(v1.props["artifact_digest"]))
    assert reference == {"mlflow_artifact_uri": missing}
    v2_digest = store.get_node("mv:m/2").props["artifact_digest"]

    # v2's files gone from MLflow since, v2 promoted there: the version keeps its files and
    # takes the stage
    shutil.rmtree(tmp_path / "art")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client.transition_model_version_stage("m", "2", "Staging")
    again = MlflowImporter(store, artifacts).run(uri)
    assert again.versions == 2
    v2 = store.get_node("mv:m/2")
    assert (v2.props["artifact_digest"], v2.props["stage"]) == (v2_digest, "Staging")
    history = RegistryService(store).history("m")
    assert sorted((h.change, h.to) for h in history) == [
        ("alias", 1),
        ("stage", "Production"),
        ("stage", "Staging"),
    ]


def test_the_cli_shows_no_progress_bar_of_mlflow_s_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow draws a progress bar for every artifact it downloads: an import of a real
    store wrote thousands of them to stderr, under ``--quiet`` and ``--json`` too."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_mlflow_store(uri, tmp_path)
    monkeypatch.setenv("LINEAGEHUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    store_uri = f"sqlite:///{tmp_path / 'hub.db'}"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["import", "mlflow", "--from", uri, "--store", store_uri, "--json"])
    assert code == 0
    summary = json.loads(out.getvalue())
    assert summary["artifactsCopied"] > 5 and summary["unmapped"] == []
    assert "Downloading artifacts" not in err.getvalue()
    assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ


def test_a_registry_that_does_not_answer_fails_the_import_writing_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--registry-uri`` naming an MLflow server that does not answer: the import said it had
    worked (exit 0) with no registered model, the failure one line among what was not mapped.
    It is exit 5, as for a tracking server that does not answer, and nothing is written."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    client.set_terminated(client.create_run(exp).info.run_id)
    monkeypatch.setenv("LINEAGEHUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    store_uri = f"sqlite:///{tmp_path / 'hub.db'}"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["import", "mlflow", "--from", uri, "--registry-uri", "http://127.0.0.1:1", "--store", store_uri])  # fmt: skip
    assert code == 5 and "could not be read" in err.getvalue(), err.getvalue()
    with open_store(store_uri) as store:
        assert store.count_nodes("Run") == 0 and list(store.iter_audit()) == []


def test_times_no_calendar_holds_cost_nothing_else(
    hub: tuple[GraphStore, Any], tmp_path: Path
) -> None:
    """MLflow takes any non-negative 64-bit count of milliseconds: nanoseconds logged as
    milliseconds (``time.time_ns()``) are the year 56 million. One such metric point or run
    end failed the whole import with a ValueError traceback. Now the point is kept at the
    import's time and the end recorded at the start, each reported; the rest imported, and
    importing again reads none of it again."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    store, artifacts = hub
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("t", artifact_location=(tmp_path / "a").as_uri())
    good = client.create_run(exp).info.run_id
    client.log_metric(good, "auc", 0.9, timestamp=1_700_000_000_000)
    client.set_terminated(good)
    nanos = 1_764_900_000_000_000_000
    points = client.create_run(exp).info.run_id
    client.log_batch(
        points, metrics=[Metric("loss", 0.5, nanos, 0), Metric("loss", 0.4, 1_700_000_000_000, 1)]
    )
    client.set_terminated(points)
    ended = client.create_run(exp, start_time=1_700_000_000_000).info.run_id
    client.set_terminated(ended, end_time=nanos)

    summary = MlflowImporter(store, artifacts).run(uri, copy_artifacts=False)
    assert summary.runs == 3 and summary.metric_points == 3
    assert {(u["what"], u["ref"]) for u in summary.unmapped} == {
        ("metric", f"{points}/loss"),
        ("end_time", ended),
    }
    series = store.read_series(f"run:mlflow-{points}", "loss")
    assert [(p.step, p.value) for p in series] == [(0, 0.5), (1, 0.4)]
    run = store.get_node(f"run:mlflow-{ended}").props
    assert run["ended_at"] == run["started_at"] and run["status"] == "FINISHED"
    again = MlflowImporter(store, artifacts).run(uri, copy_artifacts=False)
    assert (again.runs, again.runs_unchanged, again.unmapped) == (0, 3, [])


def test_a_value_the_hub_refuses_costs_that_value_not_its_run(
    hub: tuple[GraphStore, Any], tmp_path: Path
) -> None:
    """Values MLflow's database holds but the hub refuses (written by an older MLflow or
    another writer): a user name with a newline, a NUL in a param, an entry point longer
    than 512 characters, a bell in a run's name. Each cost its whole run, metric histories
    and all; now each is left out and reported, and the run with everything else arrives."""
    import sqlite3

    from mlflow import MlflowClient

    store, artifacts = hub
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    runs = []
    for i in range(4):
        rid = client.create_run(exp, run_name=f"fit-{i}").info.run_id
        client.log_param(rid, "lr", "0.1")
        client.log_param(rid, "seed", "7")
        client.log_metric(rid, "loss", 0.5, step=0)
        client.set_terminated(rid)
        runs.append(rid)
    with contextlib.closing(sqlite3.connect(tmp_path / "mlflow.db")) as db:
        db.execute("UPDATE runs SET user_id = ? WHERE run_uuid = ?", ("ann\nbob", runs[0]))
        db.execute("UPDATE params SET value = ? WHERE run_uuid = ? AND key = 'seed'", ("a\x00b", runs[1]))  # fmt: skip
        db.execute(
            "INSERT INTO tags (key, value, run_uuid) VALUES ('mlflow.source.name', ?, ?)",
            ("s" * 600, runs[2]),
        )
        db.execute("UPDATE runs SET name = ? WHERE run_uuid = ?", ("fit\x07", runs[3]))
        db.commit()

    summary = MlflowImporter(store, artifacts).run(uri, copy_artifacts=False)
    assert summary.runs == 4 and summary.metric_points == 4
    assert {(u["what"], u["ref"]) for u in summary.unmapped} == {
        ("user", runs[0]),
        ("param", f"{runs[1]}/seed"),
        ("entry_point", runs[2]),
        ("name", runs[3]),
    }
    reasons = {u["what"]: u["reason"] for u in summary.unmapped}
    assert reasons["entry_point"] == "a name is 600 characters long; the limit is 512: left out"
    first, second, third, fourth = (store.get_node(f"run:mlflow-{r}").props for r in runs)
    assert first["params"] == {"lr": "0.1", "seed": "7"} and "user" not in first
    assert second["params"] == {"lr": "0.1"}
    assert "entry_point" not in third and third["tags"]["mlflow.source.name"] == "s" * 600
    assert fourth["name"] == runs[3]
    for rid in runs:
        assert [p.value for p in store.read_series(f"run:mlflow-{rid}", "loss")] == [0.5]


def test_a_registry_change_made_while_an_import_reads_is_kept(
    hub: tuple[GraphStore, Any], tmp_path: Path
) -> None:
    """An import reads MLflow first (minutes, for a big store) and writes after. A version's
    stage and aliases were written back as they were when read: an alias set in the hub
    meanwhile was gone from the version while its history said it held, and two imports at
    once recorded every stage and alias twice. The hub's state at the write is kept now."""
    from mlflow import MlflowClient

    from lineagehub.services.registry import RegistryService

    store, artifacts = hub
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    run = client.create_run(exp).info.run_id
    client.set_terminated(run)
    client.create_registered_model("m")
    client.create_model_version("m", f"runs:/{run}/model", run_id=run)
    client.set_registered_model_alias("m", "champion", "1")
    MlflowImporter(store, artifacts).run(uri, copy_artifacts=False)
    registry = RegistryService(store)

    def meanwhile(what: str, done: int, total: int) -> None:
        if what == "registered models" and done == total:  # read, not yet written
            registry.set_alias("m/1", "mine", "ann", "the hub's own")

    MlflowImporter(store, artifacts).run(uri, copy_artifacts=False, progress=meanwhile)
    assert sorted(store.get_node("mv:m/1").props["aliases"]) == ["champion", "mine"]
    assert [(h.change, h.alias) for h in registry.history("m")] == [
        ("alias", "champion"),
        ("alias", "mine"),
    ]
    assert store.verify_audit().ok


def test_a_parent_link_that_makes_a_loop_is_left_out(
    hub: tuple[GraphStore, Any], tmp_path: Path
) -> None:
    """``mlflow.parentRunId`` is a tag MLflow does not check: a run naming itself, or two
    runs naming each other. The import wrote those loops (``CHILD_OF`` a run's own self),
    which nothing else lets into the hub. Each loop is broken at one link, reported."""
    from mlflow import MlflowClient

    store, artifacts = hub
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    own, a, b, parent, child, orphan = (client.create_run(exp).info.run_id for _ in range(6))
    for run, its_parent in ((own, own), (a, b), (b, a), (child, parent), (orphan, "f" * 32)):
        client.set_tag(run, "mlflow.parentRunId", its_parent)
    for run in (own, a, b, parent, child, orphan):
        client.set_terminated(run)

    summary = MlflowImporter(store, artifacts).run(uri, copy_artifacts=False)
    assert summary.runs == 6
    left_out = {u["ref"] for u in summary.unmapped if u["what"] == "parent"}
    assert {own, f"run:mlflow-{orphan}"} <= left_out and len(left_out & {a, b}) == 1
    assert len(left_out) == 3
    # a parent not in the source: no link, and no property naming a run the hub has not
    assert "parent" not in store.get_node(f"run:mlflow-{orphan}").props

    def parents(run: str) -> list[str]:
        rid = f"run:mlflow-{run}"
        return [x.node.id for x in store.neighbors([rid], "UPSTREAM", ["CHILD_OF"])[rid]]

    assert parents(own) == [] and "parent" not in store.get_node(f"run:mlflow-{own}").props
    assert sorted(len(parents(r)) for r in (a, b)) == [0, 1]
    assert parents(child) == [f"run:mlflow-{parent}"]


def test_a_damaged_run_in_an_mlruns_folder_costs_that_run_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's ``meta.yaml`` damaged in an ``mlruns`` folder: MLflow's folder store cannot list
    the experiment's runs, and the CLI printed a YAML parser's traceback (then: refused the
    whole source). Each run folder is read on its own then: the damaged run is reported,
    naming its file, and the experiment's other runs arrive."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlruns = tmp_path / "mlruns"
    client = MlflowClient(tracking_uri=mlruns.as_uri())
    exp = client.create_experiment("e")
    damaged, good = (client.create_run(exp).info.run_id for _ in range(2))
    for run in (damaged, good):
        client.set_terminated(run)
    (mlruns / exp / damaged / "meta.yaml").write_text("{{{ not yaml")
    monkeypatch.setenv("LINEAGEHUB_DATA_DIR", str(tmp_path / "data"))
    store_uri = f"sqlite:///{tmp_path / 'hub.db'}"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        argv = ["import", "mlflow", "--from", str(mlruns), "--store", store_uri, "--json"]
        code = main(argv)
    assert code == 0 and "Traceback" not in err.getvalue(), err.getvalue()
    summary = json.loads(out.getvalue())
    [skipped] = [u for u in summary["unmapped"] if u["what"] == "run"]
    assert skipped["ref"] == damaged and "meta.yaml" in skipped["reason"]
    with open_store(store_uri) as store:
        assert [n.id for n in store.iter_nodes("Run")] == [f"run:mlflow-{good}"]


def test_a_run_whose_experiment_changed_moves_with_it(
    hub: tuple[GraphStore, Any], tmp_path: Path
) -> None:
    """An experiment renamed in MLflow, or the store imported again to another ``project``:
    finished runs were skipped as unchanged, left in the old experiment (the new one empty);
    read again with ``--full``, each was ``PART_OF`` both experiments, in two projects. Each
    run is read again and moved now, its old ``PART_OF`` gone."""
    from mlflow import MlflowClient

    store, artifacts = hub
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("old", artifact_location=(tmp_path / "a").as_uri())
    runs = [client.create_run(exp).info.run_id for _ in range(2)]
    for run in runs:
        client.set_terminated(run)
    client.create_registered_model("m")  # a version of the first run: in the run's project
    client.create_model_version("m", (tmp_path / "a" / "m").as_uri(), run_id=runs[0])

    def groups(run: str) -> list[str]:
        rid = f"run:mlflow-{run}"
        return [a.node.id for a in store.neighbors([rid], "UPSTREAM", ["PART_OF"])[rid]]

    MlflowImporter(store, artifacts).run(uri, project="alpha", copy_artifacts=False)
    assert store.get_node("mv:m/1").props["project"] == "alpha"
    client.rename_experiment(exp, "new")
    renamed = MlflowImporter(store, artifacts).run(uri, project="alpha", copy_artifacts=False)
    assert (renamed.runs, renamed.runs_unchanged) == (2, 0)
    assert all(groups(run) == ["experiment:alpha/new"] for run in runs)
    moved = MlflowImporter(store, artifacts).run(uri, project="beta", copy_artifacts=False)
    assert (moved.runs, moved.runs_unchanged) == (2, 0)
    for run in runs:
        assert groups(run) == ["experiment:beta/new"]
        props = store.get_node(f"run:mlflow-{run}").props
        assert (props["project"], props["experiment"]) == ("beta", "new")
    assert store.get_node("mv:m/1").props["project"] == "beta"  # listings find it in beta
    again = MlflowImporter(store, artifacts).run(uri, project="beta", copy_artifacts=False)
    assert (again.runs, again.runs_unchanged) == (0, 2)
    assert store.verify_audit().ok
