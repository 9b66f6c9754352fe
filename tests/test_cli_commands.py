"""The people's commands (runs, models, lineage, export, compare, promote) against a real
SQLite hub filled through the SDK, embedded (``--store``) and through a real server
(``--url``): human tables, ``--json``, exit codes, files."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from http_server import HubServer

from lineagehub import Settings, open_store
from lineagehub.artifacts import open_artifact_store
from lineagehub.ingest.client import Client
from lineagehub.interfaces.cli import main

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's `dot`")


def _frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"x": list(range(rows)), "y": [i % 2 for i in range(rows)]})


class Hub:
    """A SQLite hub (a file and its artifacts) with two trained churn versions, a failed run,
    churn/1 in Staging and churn@champion on churn/2; a server over it on demand."""

    def __init__(self, folder: Path, stack: contextlib.ExitStack) -> None:
        self.folder = folder
        self.store = f"sqlite:///{folder / 'hub.db'}"
        self._stack = stack
        self._url: str | None = None
        self.ids: dict[str, str] = {}

    def client(self) -> Client:
        c = Client(self.store, settings=Settings(user="ann", artifacts=str(self.folder / "art")))
        self._stack.callback(c.close)
        return c

    def fill(self) -> Hub:
        c = self.client()
        for key, experiment, params, auc, rows in (
            ("a", "baseline", {"max_depth": 3, "lr": 0.1}, 0.81, 20),
            ("b", "tuned", {"max_depth": 5, "lr": 0.1, "seed": 1}, 0.86, 30),
        ):
            with c.start_run(f"train-{key}", project="churn", experiment=experiment,
                             capture=False) as run:  # fmt: skip
                run.log_params(params)
                run.log_metrics({"auc": auc, "loss": round(1 - auc, 2)})
                dv = run.log_dataset(_frame(rows), name="customers", namespace="wh", role="train")
                mv = run.log_model({"w": auc}, name="churn")
            self.ids[key] = run.id
            self.ids[f"dv_{key}"] = dv.node_id
            self.ids[f"mv_{key}"] = mv.node_id
        failed = c.start_run("broken", project="churn", experiment="baseline", capture=False)
        failed.end("FAILED", "boom")
        self.ids["failed"] = failed.id
        c.promote("churn/1", "Staging", "first look")
        c.set_alias("churn/2", "champion", "better auc")
        return self

    def url(self, policies: Any = None) -> str:
        if self._url is None:
            from lineagehub.interfaces.server import create_app

            store = open_store(self.store)
            self._stack.callback(store.close)
            app = create_app(
                Settings(user="srv"),
                store=store,
                artifacts=open_artifact_store(str(self.folder / "art")),
                registry_policies=policies,
            )
            self._url = self._stack.enter_context(HubServer(app)).url
        return self._url


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("LINEAGEHUB_URL", "LINEAGEHUB_POLICIES", "LINEAGEHUB_STORE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LINEAGEHUB_USER", "cli-user")
    monkeypatch.setenv("LINEAGEHUB_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with contextlib.ExitStack() as stack:
        yield Hub(tmp_path_factory.mktemp("hub"), stack).fill()


@pytest.fixture(params=["store", "url"])
def target(request: pytest.FixtureRequest, hub: Hub) -> list[str]:
    """``--store URI`` or ``--url URL`` over the same hub."""
    if request.param == "store":
        return ["--store", hub.store]
    return ["--url", hub.url()]


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def ok_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = cli(capsys, *argv, "--json")
    assert code == 0, err
    assert err == ""
    return json.loads(out)


# --- runs -------------------------------------------------------------------------------------


def test_runs_list(capsys: pytest.CaptureFixture[str], hub: Hub, target: list[str]) -> None:
    data = ok_json(capsys, "runs", "list", *target, "--kind", "train")
    assert [r["id"] for r in data["runs"]] == [hub.ids["failed"], hub.ids["b"], hub.ids["a"]]
    assert data["runs"][1]["metrics"] == {"auc": 0.86, "loss": 0.14}
    assert data["next_cursor"] is None
    code, out, err = cli(capsys, "runs", "list", *target, "--project", "churn")
    assert code == 0 and err == ""
    assert "\x1b[" not in out  # no colour when not a terminal
    for key in ("a", "b", "failed"):  # whole ids, never wrapped or cut, one per line
        assert any(line.startswith(hub.ids[key]) for line in out.splitlines()), out
    assert "train-b" in out and "tuned" in out and "FINISHED" in out and "0.86" in out
    assert "3 runs" in out
    # filters
    got = ok_json(capsys, "runs", "list", *target, "--experiment", "baseline")
    assert {r["id"] for r in got["runs"]} == {hub.ids["a"], hub.ids["failed"]}
    got = ok_json(capsys, "runs", "list", *target, "--status", "failed")
    assert [r["id"] for r in got["runs"]] == [hub.ids["failed"]]
    got = ok_json(capsys, "runs", "list", *target, "--where", '{"metrics.auc": {"$gte": 0.85}}')
    assert [r["id"] for r in got["runs"]] == [hub.ids["b"]]
    got = ok_json(capsys, "runs", "list", *target, "--order-by", "metrics.auc", "--limit", "1")
    assert [r["id"] for r in got["runs"]] == [hub.ids["a"]] and got["next_cursor"]
    # a descending key as people type it (argparse alone reads it as an option)
    got = ok_json(capsys, "runs", "list", *target, "--order-by", "-metrics.auc", "--limit", "1")
    assert [r["id"] for r in got["runs"]] == [hub.ids["b"]]


def test_runs_list_hides_the_registry_s_runs(
    capsys: pytest.CaptureFixture[str], hub: Hub, target: list[str]
) -> None:
    every = ok_json(capsys, "runs", "list", *target)["runs"]
    assert {r["kind"] for r in every} == {"train"}
    promotions = ok_json(capsys, "runs", "list", *target, "--kind", "promote")["runs"]
    assert len(promotions) == 2 and {r["kind"] for r in promotions} == {"promote"}
    everything = ok_json(capsys, "runs", "list", *target, "--kind", "all")["runs"]
    assert len(everything) == len(every) + 2
    asked = ok_json(capsys, "runs", "list", *target, "--where", '{"kind": "promote"}')["runs"]
    assert len(asked) == 2


@pytest.mark.parametrize(
    ("argv", "code", "name"),
    [
        (["runs", "list", "--where", "{not json"], 2, "VALIDATION"),
        (["runs", "list", "--where", "[1]"], 2, "VALIDATION"),
        (["runs", "list", "--status", "SLEEPING"], 2, "VALIDATION"),
        (["runs", "list", "--kind", "pipeline"], 2, "VALIDATION"),
        (["runs", "show", "run:0190aaaa-0000-7000-8000-000000000000"], 3, "NOT_FOUND"),
        (["models", "show", "ghost"], 3, "NOT_FOUND"),
        (["models", "show", "churn/9"], 3, "NOT_FOUND"),
        (["lineage", "run:ghost"], 3, "NOT_FOUND"),
        (["compare", "churn/1", "run:x"], 2, "VALIDATION"),
        (["promote", "churn/1", "--stage", "Staging"], 6, "CONFLICT"),  # already there
        (["approve", "run:0190aaaa-0000-7000-8000-000000000000"], 3, "NOT_FOUND"),
    ],
)
def test_errors(
    capsys: pytest.CaptureFixture[str], hub: Hub, argv: list[str], code: int, name: str
) -> None:
    got, out, err = cli(capsys, *argv, "--store", hub.store)
    assert (got, out) == (code, "")
    assert err.startswith(f"lineagehub: error [{name}]: ") and err.count("\n") == 1
    got, out, err = cli(capsys, *argv, "--store", hub.store, "--json")
    assert (got, out) == (code, "") and json.loads(err)["error"]["code"] == name


def test_runs_show(capsys: pytest.CaptureFixture[str], hub: Hub, target: list[str]) -> None:
    data = ok_json(capsys, "runs", "show", hub.ids["b"], *target)
    assert data["run"]["params"] == {"max_depth": 5, "lr": 0.1, "seed": 1}
    assert data["run"]["status"] == "FINISHED" and data["run"]["experiment"] == "tuned"
    assert data["inputs"] == [
        {"id": hub.ids["dv_b"], "label": "DatasetVersion", "name": "customers", "role": "train"}
    ]
    assert hub.ids["mv_b"] in [o["id"] for o in data["outputs"]]  # with the model's artifact
    code, out, _ = cli(capsys, "runs", "show", hub.ids["b"], *target)
    assert code == 0
    for text in (hub.ids["b"], "max_depth", "seed", "auc", hub.ids["dv_b"], "mv:churn/2", "train"):
        assert text in out
    _, out, _ = cli(capsys, "runs", "show", hub.ids["failed"], "--store", hub.store)
    assert "FAILED" in out and "boom" in out


# --- models -----------------------------------------------------------------------------------


def test_models_list(capsys: pytest.CaptureFixture[str], hub: Hub) -> None:
    data = ok_json(capsys, "models", "list", "--store", hub.store)
    (churn,) = data["models"]
    assert churn["name"] == "churn" and churn["latest"] == 2 and churn["versions"] == 2
    assert churn["stages"] == {"Staging": [1]} and churn["aliases"] == {"champion": 2}
    code, out, _ = cli(capsys, "models", "list", "--store", hub.store)
    assert code == 0 and "churn" in out and "champion→v2" in out and "Staging: v1" in out


def test_models_show(capsys: pytest.CaptureFixture[str], hub: Hub, target: list[str]) -> None:
    data = ok_json(capsys, "models", "show", "churn", *target)
    assert data["model"]["aliases"] == {"champion": 2}
    assert [(v["id"], v["stage"], v["aliases"]) for v in data["versions"]] == [
        ("mv:churn/2", "None", ["champion"]),
        ("mv:churn/1", "Staging", []),
    ]
    code, out, _ = cli(capsys, "models", "show", "model:churn", *target)
    assert code == 0 and "mv:churn/1" in out and "mv:churn/2" in out and "champion" in out
    data = ok_json(capsys, "models", "show", "churn@champion", *target)
    assert data["version"]["id"] == "mv:churn/2" and data["version"]["metrics"]["auc"] == 0.86
    assert [(h["change"], h["alias"], h["reason"]) for h in data["history"]] == [
        ("alias", "champion", "better auc")
    ]
    code, out, _ = cli(capsys, "models", "show", "churn/1", *target)
    assert code == 0 and "Staging" in out and "first look" in out and "ann" in out


# --- lineage and exports ----------------------------------------------------------------------


def test_lineage_tree_and_json(
    capsys: pytest.CaptureFixture[str], hub: Hub, target: list[str]
) -> None:
    code, out, _ = cli(capsys, "lineage", "churn@champion", *target, "--depth", "2")
    assert code == 0
    assert out.startswith("ModelVersion mv:churn/2")
    assert f"GENERATED_BY → Run {hub.ids['b']}" in out
    assert f"USED(train) → DatasetVersion {hub.ids['dv_b']}" in out
    data = ok_json(capsys, "lineage", hub.ids["dv_a"], "--downstream", *target)
    nodes = {n["id"]: n for n in data["nodes"]}
    assert nodes["mv:churn/1"]["distance"] == 2 and nodes["mv:churn/1"]["direction"] == "DOWNSTREAM"
    assert nodes[hub.ids["a"]]["reachedFrom"] == hub.ids["dv_a"]


@needs_dot
def test_lineage_pictures_and_files(
    capsys: pytest.CaptureFixture[str], hub: Hub, target: list[str], tmp_path: Path
) -> None:
    svg = tmp_path / "churn.svg"
    code, out, _ = cli(capsys, "lineage", "churn/2", *target, "-o", str(svg), "--cluster")
    assert code == 0 and f"wrote {svg} (svg)" in out
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg") and "churn" in svg.read_text()
    assert not list(tmp_path.glob(".*.part"))  # the temporary file was renamed
    data = ok_json(capsys, "lineage", "churn/2", *target, "-o", str(tmp_path / "g.graphml"))
    assert data["format"] == "graphml" and data["nodes"] >= 4
    ET.parse(tmp_path / "g.graphml")
    code, out, _ = cli(capsys, "lineage", "churn/2", *target, "--format", "mmd")
    assert code == 0 and out.startswith(("flowchart", "graph")) and "churn" in out
    code, out, _ = cli(capsys, "lineage", "churn/2", *target, "-o", "-", "--format", "json")
    assert code == 0 and json.loads(out)


def test_a_mistyped_store_is_an_error_not_a_new_empty_hub(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Reading (or changing) what a hub holds from a ``--store`` file that is not there
    makes no store and says so (exit 4), instead of answering from a new empty one."""
    typo = tmp_path / "nowhere" / "hub.db"
    for argv in (
        ["lineage", "run:x"],
        ["export", "--all", "-o", str(tmp_path / "all.jsonl")],
        ["runs", "list"],
        ["promote", "m/1", "--alias", "champion"],
        # the store commands too: an auditor was told "audit log intact: 0 entries"
        ["audit", "verify"],
        ["audit", "head", "-o", str(tmp_path / "head.json")],
        ["doctor"],
        ["user", "list"],
        ["token", "list"],
    ):
        code, _, err = cli(capsys, *argv, "--store", f"sqlite:///{typo}")
        assert code == 4 and "there is no store at" in err, (argv, err)
    assert not typo.parent.exists() and not (tmp_path / "all.jsonl").exists()
    # an empty --store (an unset variable) is not "the default store"
    for argv in (["runs", "list"], ["audit", "verify"], ["example"]):
        code, _, err = cli(capsys, *argv, "--store", "")
        assert code == 4 and "--store is empty" in err, (argv, err)


def test_dash_is_stdout_for_every_output_option(
    capsys: pytest.CaptureFixture[str], hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-o -` wrote a file named "-" for audit export, audit head, audit prove and report
    (lineage and export took it for stdout); the summary goes to stderr beside it."""
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "audit", "export", "-o", "-", "--store", hub.store)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) > 1 and "checkpoint" in lines[-1], err
    assert "exported" in err
    code, out, _ = cli(capsys, "audit", "head", "-o", "-", "--store", hub.store)
    assert code == 0 and json.loads(out.splitlines()[-1])["tree_size"] == len(lines) - 1
    code, out, _ = cli(capsys, "audit", "prove", "1", "-o", "-", "--store", hub.store)
    assert code == 0 and json.loads(out)["leaf_index"] == 0
    code, out, err = cli(capsys, "report", "churn/2", "-o", "-", "--format", "json", "--store", hub.store)  # fmt: skip
    assert code == 0 and json.loads(out)["identity"]["version_id"] == "mv:churn/2", err
    assert not (tmp_path / "-").exists()


def test_a_report_to_a_folder_or_nowhere_is_refused_before_it_is_made(
    capsys: pytest.CaptureFixture[str], hub: Hub, tmp_path: Path
) -> None:
    """-o naming a folder, or a file in a folder that is not there: VALIDATION (exit 2) at
    once, for every format (a PDF was rendered for seconds, then a traceback, exit 1)."""
    folder = tmp_path / "r.pdf"
    folder.mkdir()
    (tmp_path / "r.json").mkdir()
    for out in (folder, tmp_path / "missing" / "r.pdf", tmp_path / "r.json"):
        code, _, err = cli(capsys, "report", "churn/2", "--store", hub.store, "-o", str(out))
        assert code == 2 and "Traceback" not in err, err
        assert "is a folder" in err or "there is no folder" in err


def test_a_report_named_for_another_format_is_refused(
    capsys: pytest.CaptureFixture[str], hub: Hub, tmp_path: Path
) -> None:
    """``--format html -o r.pdf`` wrote HTML into a .pdf (exit 0), a file no viewer opens."""
    for fmt, name in (("html", "r.pdf"), ("json", "r.html"), ("pdf", "r.json")):
        out = tmp_path / name
        code, _, err = cli(capsys, "report", "churn/2", "--store", hub.store, "--format", fmt, "-o", str(out))  # fmt: skip
        assert code == 2 and "[VALIDATION]" in err and f"names a {name[2:]} file" in err, err
        assert not out.exists()
    data = tmp_path / "r.data"  # a suffix of no report format: the format says
    code, _, err = cli(capsys, "report", "churn/2", "--store", hub.store, "--format", "json", "-o", str(data))  # fmt: skip
    assert code == 0 and json.loads(data.read_text())["identity"]["version_id"] == "mv:churn/2"


def test_an_output_path_that_is_a_link_a_pipe_or_a_folder(
    capsys: pytest.CaptureFixture[str], hub: Hub, tmp_path: Path
) -> None:
    """``-o`` through a symbolic link writes the file it names (the link stays); to a named
    pipe (or a device, ``/dev/stdout``) it writes into it, never replacing it with a file;
    a folder is a VALIDATION error (exit 2), not a traceback."""
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert ok_json(capsys, "lineage", "churn/2", "--store", hub.store, "-o", str(link))
    assert link.is_symlink() and json.loads(real.read_text())["elements"]["nodes"]

    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    code, _, err = cli(capsys, "lineage", "churn/2", "--store", hub.store, "-o", str(fifo),
                       "--format", "json")  # fmt: skip
    reader.join(timeout=60)  # bounds a failure only: the write ends the read
    assert code == 0, err
    assert stat.S_ISFIFO(fifo.stat().st_mode) and json.loads(got[0])["elements"]["nodes"]

    folder = tmp_path / "out.svg"
    folder.mkdir()
    code, _, err = cli(capsys, "lineage", "churn/2", "--store", hub.store, "-o", str(folder))
    assert code == 2 and "is a folder" in err and "Traceback" not in err
    (tmp_path / "all.jsonl").mkdir()
    code, _, err = cli(capsys, "export", "--all", "--store", hub.store, "-o", str(tmp_path / "all.jsonl"))  # fmt: skip
    assert code == 2 and "is a folder" in err


def test_dev_stdout_is_written_into_a_pipe_or_after_what_a_file_held(
    hub: Hub, tmp_path: Path
) -> None:
    """``-o /dev/stdout`` is the shell's descriptor: into a pipe it was "no such file"
    (0 bytes), and under ``>> file`` the file was replaced, losing what it held."""
    command = [sys.executable, "-m", "lineagehub", "lineage", "churn/2", "--store", hub.store,
               "--format", "mmd", "-o", "/dev/stdout"]  # fmt: skip
    piped = subprocess.run(command, capture_output=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.startswith(b"flowchart") or b"-->" in piped.stdout
    kept = tmp_path / "acc.txt"
    kept.write_bytes(b"earlier lines\n")
    with open(kept, "ab") as appended:
        done = subprocess.run(command, stdout=appended, stderr=subprocess.PIPE, timeout=120)
    assert done.returncode == 0, done.stderr
    assert kept.read_bytes() == b"earlier lines\n" + piped.stdout


@needs_dot
def test_lineage_takes_every_option_of_the_lineage_query(
    capsys: pytest.CaptureFixture[str], hub: Hub, target: list[str], tmp_path: Path
) -> None:
    def ids(*argv: str) -> set[str]:
        return {n["id"] for n in ok_json(capsys, "lineage", *argv, *target)["nodes"]}

    everything = ids("churn/2", "--depth", "2")
    assert hub.ids["dv_b"] in everything
    # only model versions and runs may be entered: no dataset version
    kinds = ids("churn/2", "--depth", "2", "--node-kind", "Run", "--node-kind", "ModelVersion")
    assert hub.ids["b"] in kinds and hub.ids["dv_b"] not in kinds
    # runs walked through without counting: one data-to-data hop reaches the data
    assert hub.ids["dv_b"] in ids("churn/2", "--depth", "1", "--pass-through", "Run")
    assert hub.ids["dv_b"] not in ids("churn/2", "--depth", "1")
    # stop at runs: the run is shown, what it used is not
    stopped = ids("churn/2", "--depth", "3", "--stop-at", "Run")
    assert hub.ids["b"] in stopped and hub.ids["dv_b"] not in stopped
    # separate depths with --both
    both = ids(hub.ids["b"], "--both", "--upstream-depth", "0", "--downstream-depth", "1")
    assert "mv:churn/2" in both and hub.ids["dv_b"] not in both
    # as the hub knew it: now, everything; before anything was written, not even the root
    assert ids("churn/2", "--depth", "2", "--as-of", "2100-01-01T00:00:00Z") == everything
    code, _, err = cli(capsys, "lineage", "churn/2", *target, "--as-of", "2000-01-01")
    assert code == 3 and "NOT_FOUND" in err
    code, _, err = cli(capsys, "lineage", "churn/2", *target, "--as-of", "yesterday")
    assert code == 2 and "--as-of" in err
    # picture options: a title, and collapsing turned off
    svg = tmp_path / "t.svg"
    cli(capsys, "lineage", "churn/2", *target, "-o", str(svg), "--title", "Churn v2 <audit>",
        "--collapse-above", "0")  # fmt: skip
    assert "Churn v2 &lt;audit&gt;" in svg.read_text()


@pytest.mark.parametrize(
    "argv",
    [
        ["-o", "picture.bogus"],
        ["-o", "picture.svg", "--format", "bogus"],
        ["-o", "-"],
        ["-o", "no/such/dir/x.json"],
        ["-o", "no/such/dir/x.svg"],  # said before drawing: no Graphviz needed to hear it
        # a file named for a picture format written in another: no viewer opens it
        ["-o", "picture.png", "--format", "svg"],
        ["-o", "picture.svg", "--format", "dot"],
        ["-o", "picture.json", "--format", "pdf"],
    ],
)
def test_lineage_bad_formats_and_paths(
    capsys: pytest.CaptureFixture[str],
    hub: Hub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "lineage", "churn/2", "--store", hub.store, *argv)
    assert code == 2 and out == "" and "[VALIDATION]" in err
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_export_refs(capsys: pytest.CaptureFixture[str], hub: Hub, tmp_path: Path) -> None:
    out_file = tmp_path / "prov.json"
    code, out, _ = cli(capsys, "export", "churn/1", "churn/2", "--store", hub.store,
                       "-o", str(out_file), "--format", "prov")  # fmt: skip
    assert code == 0 and "wrote" in out
    assert "mv:churn/1" in out_file.read_text() and json.loads(out_file.read_text())
    code, _, err = cli(capsys, "export", "--store", hub.store, "-o", str(out_file))
    assert code == 2 and "--all" in err


def test_export_all(capsys: pytest.CaptureFixture[str], hub: Hub, tmp_path: Path) -> None:
    # JSON lines only: all.svg holding JSON lines was exit 0
    for argv in (["-o", str(tmp_path / "all.svg")], ["-o", "x.jsonl", "--format", "svg"]):
        code, _, err = cli(capsys, "export", "--all", "--store", hub.store, *argv)
        assert code == 2 and "JSON lines" in err, (argv, err)
    assert not (tmp_path / "all.svg").exists()
    path = tmp_path / "all.jsonl"
    data = ok_json(capsys, "export", "--all", "--store", hub.store, "-o", str(path))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    nodes = [x for x in lines if x["type"] == "node"]
    edges = [x for x in lines if x["type"] == "edge"]
    assert lines[: len(nodes)] == nodes  # nodes first, then edges
    assert (data["nodes"], data["edges"]) == (len(nodes), len(edges))
    with open_store(hub.store) as store:
        assert len(nodes) == store.count_nodes()
        every = store.traverse([n["id"] for n in nodes], "BOTH", 1, max_nodes=100_000)
        assert {e.id for e in every.edges} == {e["id"] for e in edges}
    assert len({e["id"] for e in edges}) == len(edges)  # each edge once
    ids = {n["id"] for n in nodes}
    assert all(e["source"] in ids and e["target"] in ids for e in edges)
    gen = next(e for e in edges if e["source"] == "mv:churn/1" and e["kind"] == "GENERATED_BY")
    assert gen["target"] == hub.ids["a"] and gen["ingested_at"]
    code, _, err = cli(capsys, "export", "--all", "--url", hub.url(), "-o", str(path))
    assert code == 4 and "--store" in err and "--url" in err
    # the server named by the environment, not by a flag this command was given
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LINEAGEHUB_URL", hub.url())
        code, _, err = cli(capsys, "export", "--all", "-o", str(path))
    assert code == 4 and "LINEAGEHUB_URL" in err and "--store" in err


# --- compare ----------------------------------------------------------------------------------


def test_compare_runs(capsys: pytest.CaptureFixture[str], hub: Hub) -> None:
    a, b = hub.ids["a"], hub.ids["b"]
    data = ok_json(capsys, "compare", a, b, "--store", hub.store)
    assert data["kind"] == "runs" and data["runs"] == [a, b]
    params = {p["key"]: p for p in data["params"]}
    assert params["max_depth"]["values"] == [3, 5] and params["max_depth"]["differs"]
    assert params["lr"]["differs"] is False and params["seed"]["values"] == [None, 1]
    auc = next(m for m in data["metrics"] if m["key"] == "auc")
    assert auc["last"] == [0.81, 0.86]
    code, out, _ = cli(capsys, "compare", a, b, "--store", hub.store)
    assert code == 0 and a in out and b in out
    line = next(x for x in out.splitlines() if "max_depth" in x)
    assert "≠" in line and "3" in line and "5" in line
    assert "+0.05" in next(x for x in out.splitlines() if " auc " in f" {x} ")


def test_compare_model_versions(
    capsys: pytest.CaptureFixture[str], hub: Hub, target: list[str]
) -> None:
    data = ok_json(capsys, "compare", "churn/1", "churn@champion", *target)
    assert data["kind"] == "model_versions" and (data["a"], data["b"]) == (
        "mv:churn/1",
        "mv:churn/2",
    )
    assert data["params_changed"] == [["max_depth", 3, 5]]
    assert data["params_added"] == [["seed", 1]]
    assert data["datasets"] == {"added": [hub.ids["dv_b"]], "removed": [hub.ids["dv_a"]]}
    code, out, _ = cli(capsys, "compare", "churn/1", "churn/2", *target)
    assert code == 0 and "max_depth" in out and hub.ids["dv_b"] in out and "+0.05" in out


# --- the registry -----------------------------------------------------------------------------

POLICY = {
    "policy": [
        {"model": "churn", "stage": "Production", "approvals": 1},
        {"model": "churn", "stage": "Staging", "thresholds": [["auc", ">=", 0.99]]},
    ]
}


@pytest.fixture
def policy_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    path = tmp_path / "policies.json"
    path.write_text(json.dumps(POLICY))
    monkeypatch.setenv("LINEAGEHUB_POLICIES", str(path))
    with contextlib.ExitStack() as stack:
        hub = Hub(tmp_path / "p", stack)
        c = hub.client()
        for auc in (0.8, 0.9):
            with c.start_run("t", capture=False) as run:
                run.log_metrics({"auc": auc})
                run.log_model({"w": auc}, name="churn")
        c.close()
        yield hub


@pytest.mark.parametrize("mode", ["store", "url"])
def test_promote_pending_approve_refuse(
    capsys: pytest.CaptureFixture[str], policy_hub: Hub, mode: str
) -> None:
    from lineagehub.services.registry import load_policies

    if mode == "store":
        where = ["--store", policy_hub.store]
    else:
        where = ["--url", policy_hub.url(load_policies(os.environ["LINEAGEHUB_POLICIES"]))]
    data = ok_json(capsys, "promote", "churn/2", "--stage", "Production", "--reason", "go", *where)
    assert data["outcome"] == "pending" and data["needed"] == 1 and data["approvals"] == []
    request = data["request_id"]
    code, out, _ = cli(capsys, "promote", "churn/1", "--stage", "Production", *where)
    assert code == 0 and "pending" in out and "lineagehub approve" in out
    other = out.split("lineagehub approve ")[1].split()[0]
    data = ok_json(capsys, "approve", request, "--comment", "lgtm", *where)
    assert data["outcome"] == "promoted" and data["to_stage"] == "Production"
    assert data["version"] == "mv:churn/2"
    code, out, _ = cli(capsys, "reject", other, "--reason", "not this one", *where)
    assert code == 0 and "rejected" in out
    # refused by the policy: every broken rule, exit 8
    code, out, err = cli(capsys, "promote", "churn/1", "--stage", "Staging", *where)
    assert code == 8 and err == ""
    assert "refused" in out and "auc" in out and "0.99" in out
    code, out, _ = cli(capsys, "promote", "churn/1", "--stage", "Staging", *where, "--json")
    refused = json.loads(out)
    assert code == 8 and refused["outcome"] == "refused"
    assert [r["rule"] for r in refused["rules"]] and refused["rules"][0]["expected"] is not None
    data = ok_json(capsys, "promote", "churn/1", "--alias", "challenger", *where)
    assert data == {"outcome": "aliased", "version": "mv:churn/1", "alias": "challenger",
                    "aliases": ["challenger"]}  # fmt: skip
    shown = ok_json(capsys, "models", "show", "churn/2", *where)
    assert shown["version"]["stage"] == "Production"
    assert [h["to"] for h in shown["history"] if h["change"] == "stage"] == ["Production"]


# --- the process: exit codes, stdout and stderr -----------------------------------------------


def _lh(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    full.pop("LINEAGEHUB_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "lineagehub", *argv], capture_output=True, text=True, env=full
    )


def test_subprocess_streams_and_exit_codes(hub: Hub) -> None:
    done = _lh("runs", "list", "--store", hub.store, "--json")
    assert done.returncode == 0 and done.stderr == ""
    assert len(json.loads(done.stdout)["runs"]) == 3  # trained: registry changes are hidden
    done = _lh("models", "show", "churn", "--store", hub.store, env={"NO_COLOR": "1"})
    assert done.returncode == 0 and "mv:churn/2" in done.stdout and "\x1b[" not in done.stdout
    done = _lh("runs", "show", "run:0190aaaa-0000-7000-8000-000000000000", "--store", hub.store)
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr.startswith("lineagehub: error [NOT_FOUND]") and done.stderr.count("\n") == 1
    done = _lh("runs", "list", "--limit", "many", "--store", hub.store)
    assert done.returncode == 2 and done.stdout == "" and "usage:" in done.stderr
    done = _lh("runs", "list", "--store", hub.store, "--url", "http://127.0.0.1:9")
    assert done.returncode == 2  # --store and --url exclude each other


def test_unreachable_url_is_exit_5(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lineagehub.ingest.remote import HubConnection

    monkeypatch.setattr(HubConnection, "_sleep", lambda self, attempt: None)
    code, out, err = cli(capsys, "runs", "list", "--url", "http://127.0.0.1:9")
    assert code == 5 and out == "" and "[BACKEND_UNAVAILABLE]" in err
    code, _, err = cli(capsys, "runs", "list", "--url", "hub:8000")
    assert code == 4 and "--url" in err


def test_url_from_the_environment(
    capsys: pytest.CaptureFixture[str], hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINEAGEHUB_URL", hub.url())
    data = ok_json(capsys, "models", "list")
    assert [m["name"] for m in data["models"]] == ["churn"]


def test_deploy_and_retire(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Deployments from the command line, embedded and through a server."""
    with contextlib.ExitStack() as stack:
        hub = Hub(tmp_path / "hub", stack).fill()
        for target in (["--store", hub.store], ["--url", hub.url()]):
            env = "prod-" + target[0].strip("-")
            code, _, err = cli(capsys, "deploy", "churn/2", "--env", env, *target,
                               "--require-stage", "Production")  # fmt: skip
            assert code == 8 and "POLICY" in err  # churn/2 is not in Production
            d = ok_json(capsys, "deploy", "churn@champion", "--environment", env, *target,
                        "--endpoint", "https://m.acme/churn", "--reason", "rollout")  # fmt: skip
            assert (d["outcome"], d["name"], d["environment"]) == ("deployed", "churn", env)
            assert d["status"] == "active" and d["deployment"].startswith("deployment:")
            code, out, _ = cli(capsys, "retire", d["deployment"], *target)
            assert code == 0 and "retired" in out
            code, _, err = cli(capsys, "retire", d["deployment"], *target)
            assert code == 6 and "CONFLICT" in err
        with open_store(hub.store) as s:
            assert s.count_nodes("Deployment", {"status": "retired"}) == 2
