"""Every GraphQL query and every ``lineagehub`` command line in the README runs as written.

The hub they run against is what a reader has after the five-minute tour: the demo's hub
(``lineagehub demo``, which this fixture runs) with the hand-written example graph
(``lineagehub example``) in the same store, so both the demo's ``tumor-classifier`` and the
example's ``churn`` references resolve. Ids a reader copies from their own output (the demo's
deployment, ``run:…`` promotion requests, ``deployment:...``) are replaced by the ids this hub
printed. ``lineagehub serve`` lines (they block) and ``lineagehub demo`` lines (the fixture is
that run) are the only ones not run here; the docker compose lines need Neo4j and MinIO.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_server import HubServer

pytest.importorskip("sklearn", reason="the demo needs scikit-learn (the sklearn extra)")

from lineagehub.interfaces.cli import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
# The deployment id the README's tour shows (a reader has their own).
README_DEPLOYMENT = "deployment:01a21da6-0ed9-713f-8cc4-ac70423b4dd4"
POLICIES = """
[[policy]]
model = "churn"
stage = "Production"
approvals = 1
"""


def graphql_operations(text: str) -> list[str]:
    """The operations of a ```graphql block, one string each (comments, strings and block
    strings are skipped when counting braces)."""
    ops: list[str] = []
    depth, start, i = 0, None, 0
    while i < len(text):
        if text.startswith('"""', i):
            i = text.index('"""', i + 3) + 3
            continue
        ch = text[i]
        if ch == "#":
            i = text.find("\n", i) if "\n" in text[i:] else len(text)
            continue
        if ch == '"':
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            continue
        if depth == 0 and start is None and not ch.isspace():
            start = i
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0 and start is not None:
                ops.append(text[start : i + 1])
                start = None
        i += 1
    return ops


def readme_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def cli_lines() -> list[str]:
    """Every ``lineagehub`` command of the README: ``$ `` lines of text and console blocks,
    and lines of sh blocks, split at ``&&``; without comments."""
    lines: list[str] = []
    for lang in ("text", "console"):
        for block in readme_blocks(lang):
            lines += [ln[2:] for ln in block.splitlines() if ln.startswith("$ ")]
    for block in readme_blocks("sh"):
        for ln in block.splitlines():
            for part in ln.split("&&"):
                words = shlex.split(part, comments=True)
                if words and words[0] == "lineagehub":
                    lines.append(shlex.join(words))
    return lines


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The demo's hub plus the example graph, made once; tests work on copies of it."""
    root = tmp_path_factory.mktemp("tour")
    mp = pytest.MonkeyPatch()
    mp.setenv("LINEAGEHUB_DATA_DIR", str(root / "data"))
    mp.setenv("LINEAGEHUB_USER", "ann")
    for name in (
        "LINEAGEHUB_STORE",
        "LINEAGEHUB_URL",
        "LINEAGEHUB_ARTIFACTS",
        "LINEAGEHUB_POLICIES",
    ):
        mp.delenv(name, raising=False)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["demo", "--json", "--out", str(root / "data" / "demo")]) == 0
        demo = json.loads(buf.getvalue())
        assert main(["example", "--store", demo["store"]]) == 0
    mp.undo()
    yield root / "data", demo["result"]


@pytest.fixture
def hub(tour: tuple[Path, dict[str, Any]], tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    data, result = tour
    shutil.copytree(data, tmp_path / "data")
    return tmp_path / "data", result


def test_the_readme_has_graphql_queries_and_command_lines() -> None:
    ops = [op for block in readme_blocks("graphql") for op in graphql_operations(block)]
    assert len(ops) >= 15
    assert any("filter: [" in op for op in ops) and any('"""{' in op for op in ops)
    assert len(cli_lines()) >= 20


def test_every_graphql_query_in_the_readme_runs(hub: tuple[Path, dict[str, Any]]) -> None:
    from lineagehub.artifacts import open_artifact_store
    from lineagehub.config import Settings
    from lineagehub.graph import open_store
    from lineagehub.interfaces.server import create_app
    from lineagehub.services.registry import Policy

    data, result = hub
    ops = [op for block in readme_blocks("graphql") for op in graphql_operations(block)]
    with open_store(f"sqlite:///{data / 'hub.db'}") as store:
        app = create_app(
            Settings(user="srv", data_dir=data),
            store=store,
            artifacts=open_artifact_store((data / "artifacts").as_uri()),
            registry_policies={("churn", "Production"): Policy(approvals=1)},
        )
        ids = {README_DEPLOYMENT: result["deployment"]}
        with HubServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
            for op in ops:
                for placeholder, real in ids.items():
                    op = op.replace(f'"{placeholder}"', json.dumps(real))
                body = http.post("/graphql", json={"query": op}).json()
                if "rollback(" in op and body.get("errors"):
                    # the examples run in order on one hub: a second rollback finds the
                    # first undone already, which the README says is a conflict
                    (error,) = body["errors"]
                    assert error["extensions"]["code"] == "CONFLICT", (op, error)
                    assert "nothing to roll back" in error["message"]
                    continue
                assert "errors" not in body, (op, body.get("errors"))
                # ids a reader would copy from these answers into the next examples
                found = body["data"] or {}
                if "requestPromotion" in found and "requestId" in found["requestPromotion"]:
                    ids["run:..."] = found["requestPromotion"]["requestId"]
                if "recordDeployment" in found:
                    ids["deployment:..."] = found["recordDeployment"]["id"]
                if "lineage(" in op and "truncated" in op:
                    assert body["data"]["lineage"]["nodes"], op
    assert {"run:...", "deployment:..."} <= set(ids)


def test_every_command_line_in_the_readme_runs(
    hub: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, _ = hub
    policies = tmp_path / "policies.toml"
    policies.write_text(POLICIES)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    # the MLflow store `lineagehub import mlflow --from sqlite:///mlflow.db` reads
    from mlflow import MlflowClient

    MlflowClient(tracking_uri="sqlite:///mlflow.db").create_experiment(
        "readme", artifact_location=(work / "mlruns").as_uri()
    )
    monkeypatch.setenv("LINEAGEHUB_DATA_DIR", str(data))
    monkeypatch.setenv("LINEAGEHUB_POLICIES", str(policies))
    for name in ("LINEAGEHUB_STORE", "LINEAGEHUB_URL", "LINEAGEHUB_ARTIFACTS", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    request = None
    ran = 0
    unrun = 0  # lines that render SVG, where Graphviz's dot is missing
    for line in cli_lines():
        words = shlex.split(line)
        env = {}
        while "=" in words[0]:
            key, _, value = words.pop(0).partition("=")
            env[key] = value
        assert words[0] == "lineagehub", line
        if words[1] in ("serve", "demo"):
            continue
        if shutil.which("dot") is None and any(w.endswith(".svg") for w in words):
            unrun += 1
            continue
        if request is not None:
            words = [request if w == "run:01a21da3-…" else w for w in words]
        monkeypatch.setenv("LINEAGEHUB_USER", env.get("LINEAGEHUB_USER", "ann"))
        code = main(words[1:])
        out, err = capsys.readouterr()
        assert code == 0, (line, err)
        ran += 1
        found = re.search(r"approve with: lineagehub approve (run:\S+)", out)
        if found:
            request = found[1]
    assert request is not None and ran >= 20
    assert (work / "hub.jsonl").exists()
    if unrun:
        pytest.skip(f"the rest ran; {unrun} line(s) rendering SVG need Graphviz's `dot`")
    assert (work / "champion.svg").exists()
