"""A later run that regenerates byte-identical data does not rewrite earlier history.

The scenario of a new user: ``prepare`` writes a cleaned file from a clean checkout, a model is
trained on it; later, from a dirty working tree, ``prepare`` runs again and writes the same
bytes (the same content-addressed dataset version), and a second model is trained. The first
model's past must not hold the later run or its dirty commit, and comparing the two versions
must show that their code differs. Real git, real files, a real SQLite store.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lineagehub import Settings
from lineagehub.ingest.client import Client
from lineagehub.interfaces.cli import main


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, check=True, timeout=30)
    return proc.stdout.decode()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "test@example.com")
    for name in ("LINEAGEHUB_URL", "LINEAGEHUB_STORE", "LINEAGEHUB_POLICIES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LINEAGEHUB_DATA_DIR", str(tmp_path / "data"))
    repo = tmp_path / "pipeline"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "prepare.py").write_text("print('prepare')\n")
    (repo / "raw.csv").write_text("a,b\n1,2\n3,4\n3,4\n")
    (repo / ".gitignore").write_text("clean.csv\n")  # an output, not code
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "pipeline")
    monkeypatch.chdir(repo)
    # the code a run records is the entry point's repository: here, the pipeline's script
    monkeypatch.setattr(
        sys.modules["__main__"], "__file__", str(repo / "prepare.py"), raising=False
    )
    return repo


def pipeline(client: Client, repo: Path) -> tuple[str, str, str, str]:
    """prepare (raw -> clean.csv), then train on clean.csv: (prepare run, train run, dataset
    version, model version)."""
    with client.start_run("prepare", project="churn", kind="transform") as prep:
        prep.log_dataset(repo / "raw.csv", role="input")
        (repo / "clean.csv").write_text("a,b\n1,2\n3,4\n")  # the same bytes every time
        data = prep.log_output_dataset(repo / "clean.csv")
    with client.start_run("train", project="churn") as train:
        train.log_dataset(repo / "clean.csv", role="train")
        train.log_params({"max_depth": 3})
        train.log_metrics({"auc": 0.8})
        version = train.log_model({"w": 1}, name="churn")
    return prep.id, train.id, data.node_id, version.node_id


@pytest.fixture
def history(repo: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    settings = Settings(user="ann", artifacts=str(tmp_path / "artifacts"))
    # One client per phase: a client caches what git said for a few seconds.
    clean = Client(store, settings=settings)
    prep1, train1, data1, mv1 = pipeline(clean, repo)
    clean.close()
    (repo / "prepare.py").write_text("print('prepare, edited')\n")  # now the tree is dirty
    dirty = Client(store, settings=settings)
    prep2, train2, data2, mv2 = pipeline(dirty, repo)
    assert data1 == data2  # content-addressed: one dataset version, generated twice
    yield {
        "store": store, "client": dirty, "prep1": prep1, "train1": train1, "prep2": prep2,
        "train2": train2, "data": data1, "mv1": mv1, "mv2": mv2,
    }  # type: ignore[misc]  # fmt: skip
    dirty.close()


def test_an_earlier_model_s_past_holds_no_later_run(history: dict[str, str]) -> None:
    client: Client = history["client"]  # type: ignore[assignment]
    sub = client.lineage([history["mv1"]], "UPSTREAM", upstream_depth=10)
    runs = {i for i, t in sub.nodes.items() if t.node.label == "Run"}
    assert runs == {history["train1"], history["prep1"]}
    commits = [t.node for t in sub.nodes.values() if t.node.label == "CodeCommit"]
    assert [c.props.get("dirty") for c in commits] == [False]
    # the later model came from both generations of its data: each happened before its use
    later = client.lineage([history["mv2"]], "UPSTREAM", upstream_depth=10)
    assert {history["prep1"], history["prep2"], history["train2"]} <= set(later.nodes)
    assert history["train1"] not in later.nodes
    # downstream of the dirty prepare run: the later model only
    down = client.lineage([history["prep2"]], "DOWNSTREAM", downstream_depth=10)
    assert history["mv2"] in down.nodes and history["mv1"] not in down.nodes


def test_compare_reports_each_version_s_own_code(
    history: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    client: Client = history["client"]  # type: ignore[assignment]
    d = client.compare_model_versions("churn/1", "churn/2")
    added = d["commits"]["added"]
    assert len(added) == 1 and d["commits"]["removed"] == []
    assert client.store is not None
    (node,) = client.store.get_nodes(added)
    assert node is not None and node.props["dirty"] is True
    assert main(["compare", "churn/1", "churn/2", "--store", history["store"]]) == 0
    out = capsys.readouterr().out
    assert "same data, code and environment" not in out
    assert added[0] in out
    # the training runs' own commits, side by side
    assert "training code" in out and out.count(added[0]) == 2
    assert main(["compare", "churn/1", "churn/2", "--store", history["store"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["commits"]["added"] == added
