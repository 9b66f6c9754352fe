"""The lineage explorer in a real browser: headless Chromium (Debian's ``/usr/bin/chromium``,
driven by npm ``playwright-core`` from ``tests/browser``) against a real ``lineagehub serve``
(a subprocess on a free port, tokens required) of the demo's hub, on SQLite and on Neo4j,
with every request to anything but the hub blocked (offline).

The walk (``tests/browser/explorer.mjs``): sign in with a token, search (keyboard only too),
open the champion model version, walk its lineage (deeper, expand a node, highlight a path,
export a PNG), filter, sort and compare two runs (metric charts over steps, params diff), try
to approve a pending promotion as a viewer (refused) then as an approver (promoted), switch to
the dark theme; labels and secrets are checked on the way. Screenshots go to
``$EXPLORER_SHOTS/<backend>/`` (default: the test's temporary folder); docs/explorer/ holds
the best.

Needs ``/usr/bin/chromium``, ``node`` and ``npm``; skips naming what is missing (under CI,
which installs them, fails instead)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import fresh_store_uri
from test_graphiql_browser import CHROMIUM, HERE, _node

pytest.importorskip("sklearn", reason="the demo trains scikit-learn models (the sklearn extra)")

#: Two extra runs with metric series over 30 steps, so the comparison has curves to draw.
SWEEP = ("sweep-lr-0.1", "sweep-lr-0.01")


def _cli(env: dict[str, str], *argv: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "lineagehub", *argv, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, (argv, done.stdout, done.stderr)
    return json.loads(done.stdout)


def _sweep(env: dict[str, str]) -> None:
    """Two training runs logging loss and accuracy at every step (as a training loop does)."""
    script = f"""
import math
from lineagehub.ingest.client import Client
with Client() as client:
    for name, lr in zip({SWEEP!r}, (0.1, 0.01)):
        with client.start_run(name, project="demo", experiment="sweep") as run:
            run.log_params({{"lr": lr, "epochs": 30, "optimizer": "adam"}})
            for step in range(30):
                run.log_metrics({{"loss": math.exp(-lr * 10 * step) + 0.05,
                                  "accuracy": 1 - 0.5 * math.exp(-lr * 8 * step)}}, step=step)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def served(store_backend: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The demo's hub on each backend, two swept runs, pending promotions, a viewer and an
    approver with tokens, served by ``lineagehub serve --port 0`` with tokens required."""
    folder = tmp_path / "hub"
    folder.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LINEAGEHUB_")},
        "LINEAGEHUB_DATA_DIR": str(folder),
        "LINEAGEHUB_STORE": fresh_store_uri(store_backend, folder),
        "LINEAGEHUB_ARTIFACTS": (folder / "artifacts").as_uri(),
        "LINEAGEHUB_USER": "trainer",
    }
    demo = _cli(env, "demo", "--out", str(folder / "demo"), "-q")
    env["LINEAGEHUB_POLICIES"] = str(folder / "demo" / "policies.toml")
    _sweep(env)
    asof = datetime.now(timezone.utc).isoformat()  # before the requests: a time with microseconds
    # versions 1 and 2 asked for Production: each waits for one approval by someone else
    for version in ("1", "2"):
        pending = _cli(env, "promote", f"tumor-classifier/{version}", "--stage", "Production",
                       "--reason", "a smaller forest", "--deployments", "repoint")  # fmt: skip
        assert pending["outcome"] == "pending", pending
    tokens = {}
    for user, role in (("reviewer", "approver"), ("visitor", "viewer")):
        _cli(env, "user", "add", user, "--role", role)
        tokens[user] = _cli(env, "token", "create", "--user", user)["secret"]
    server = subprocess.Popen(
        [sys.executable, "-m", "lineagehub", "serve", "--port", "0"],
        env={**env, "LINEAGEHUB_AUTH": "tokens"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        url, said = None, []
        for line in server.stdout:  # uvicorn names the port the OS chose
            said.append(line)
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                url = found.group(1)
                break
        assert url, "lineagehub serve did not start"
        # port 0: the banner names no port it cannot know (":0" is no address to open)
        assert any("the lineage explorer at http://127.0.0.1:PORT/" in line for line in said), said
        assert not any("127.0.0.1:0/" in line for line in said), said
        yield {"url": url, "tokens": tokens, "demo": demo, "folder": folder, "asof": asof}
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.mark.slow
def test_explorer_walk_in_a_real_browser(
    served: dict[str, Any], store_backend: str, tmp_path: Path
) -> None:
    node = _node()
    shots = Path(os.environ.get("EXPLORER_SHOTS") or tmp_path / "shots") / store_backend
    done = subprocess.run(
        [node, str(HERE / "explorer.mjs"), served["url"] + "/", str(CHROMIUM)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={
            "PATH": "/usr/bin:/bin",
            "SHOTS": str(shots),
            "TOKEN": served["tokens"]["reviewer"],
            "VIEWER_TOKEN": served["tokens"]["visitor"],
            "RUNS": ",".join(SWEEP),
            "DEPLOYMENT": served["demo"]["result"]["deployment"],
            "ASOF": served["asof"],
        },
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    steps = report["steps"]
    assert "error" not in report, (
        report.get("error"),
        report.get("errorPage"),
        report["consoleErrors"],
    )
    assert report["blocked"] == [], "the page asked for something outside the hub"
    assert report["pageErrors"] == [], report["pageErrors"]
    # the one console error allowed: the browser logging the 401 that asks for a token
    assert all("401" in e for e in report["consoleErrors"]), report["consoleErrors"]
    assert {"/", "/explorer/explorer.js", "/explorer/explorer.css"} <= set(report["served"])

    # search: the model's versions and the demo's runs by name; "/" then keys alone open a hit
    assert steps["signInShown"] and steps["slashFocusesSearch"] and steps["lineageAsksSignIn"]
    assert steps["signOutHidden"]
    # a reference's root is the version it names; a zoned time in a link; links to nothing
    assert steps["refRoots"] == ["mv:tumor-classifier/3"]
    assert steps["asOfZoned"].startswith("2100-01-01T00:00")  # the picker drops :00
    assert "No registered model" in steps["unknownModel"]
    assert "not a valid link" in steps["brokenLink"]
    assert any(h.startswith("tumor-classifier v") for h in steps["searchHits"]), steps
    assert "tumor-classifier" in steps["searchHits"]
    assert steps["keyboardOpened"].startswith("#/node/")
    # found by the hub ($contains) in a field the page does not show: the run's experiment
    assert any(h.startswith("prepare") for h in steps["searchByExperiment"]), steps
    # the node page of the champion (v3 is the demo's best): properties, up- and downstream
    assert steps["nodeTitle"].startswith("tumor-classifier v")
    assert steps["properties"] >= 5
    neighbours = " ".join(steps["neighbours"])
    assert "upstream" in neighbours and "GENERATED_BY" in neighbours
    assert "downstream" in neighbours and "SERVES" in neighbours

    # lineage: deeper and both ways finds more; expanding adds nodes; a path is highlighted
    assert 3 <= steps["lineageNodes"] < steps["lineageNodesDeep"]
    champion = "mv:tumor-classifier/3"
    assert steps["keyLeft"] and champion in steps["keyLeftNeighbours"]  # one hop upstream
    assert steps["keyRight"] == champion and steps["keyEnter"].startswith("#/node/run:")
    assert steps["oneRunCharts"] >= 5 and steps["oneRunParams"] >= 3  # rf-80-trees alone
    assert steps["kindsShown"] == ["DATASET_VERSION", "MODEL_VERSION", "RUN"]
    assert "NOT_FOUND" in steps["asOfBefore"]  # as of 2000 the hub knew no such version
    assert "tumor-classifier v3" in steps["deployment"]
    assert steps["monitoringCharts"] >= 1  # the demo's monitoring windows, drawn
    assert "No alerts." not in steps["deployment"] and "firing" in steps["deployment"]
    assert steps["alertEdges"] and set(steps["alertEdges"]) == {"ABOUT"}, steps["alertEdges"]
    assert steps["finishedSelect"] == "FINISHED" and steps["finishedStatuses"], steps
    assert set(steps["finishedStatuses"]) == {"FINISHED"}, steps["finishedStatuses"]
    before, after = steps["expanded"]
    assert after > before
    assert steps["pathElements"] == 5  # version -> run -> clean data: 3 nodes, 2 edges
    assert "tumor-classifier v3 is downstream of demo/breast_cancer_clean" in steps["pathInfo"]
    # as of before version 1's promotion request: expanding it adds nothing that came later
    # (the request run is there now), and the path is found in the graph drawn as of then
    then, expanded = steps["asOfExpanded"]
    assert then == expanded and set(then) < set(steps["nowIds"]), steps["asOfExpanded"]
    assert steps["asOfPath"][0] == 3, steps["asOfPath"]  # version -> run: 2 nodes, 1 edge
    assert "tumor-classifier v1 is downstream of rf-" in steps["asOfPath"][1], steps["asOfPath"]
    assert steps["exported"].endswith(".png")
    exported = (shots / "lineage-export.png").read_bytes()
    assert exported.startswith(b"\x89PNG") and len(exported) > 5_000

    # runs: filtered to the sweep, sorted by name; compared: a chart per metric, params diff
    assert steps["runsRows"] >= 6 and steps["runsFiltered"] == 2
    assert steps["runsSortedByName"] == sorted(SWEEP)
    assert steps["runsSortHash"] == "#/runs?sort=name&filter=sweep"  # a link to this view
    assert set(steps["charts"]) == {"loss", "accuracy"} and steps["chartCanvases"] >= 2
    diff = {row.split("0.")[0]: row for row in steps["paramsDiff"]}
    assert list(diff) == ["lr"] and "differs" in diff["lr"]  # epochs and optimizer are equal

    # the registry: a viewer is refused; the approver promotes version 1, rejects version 2
    assert "FORBIDDEN" in steps["viewerRefused"]
    assert steps["pendingBefore"] == 2 and steps["pendingBetween"] == 1
    assert "v1 is now Production" in steps["approved"]
    assert steps["rejectWithoutReason"] == "Give a reason to reject."
    assert steps["rejected"] == "Rejected the request for v2." and steps["pendingAfter"] == 0
    promoted = [r for r in steps["history"] if "v1" in r and "→ Production" in r]
    assert promoted and "reviewer" in promoted[0], steps["history"]  # its approver

    # quality: dark theme, every control named, no secret anywhere but this tab's session
    assert steps["theme"] == "dark"
    assert {view: bad for view, bad in report["unlabeled"].items() if bad} == {}
    assert not steps["secretInPage"] and not steps["secretInLocalStorage"]
    assert steps["secretInSession"] and steps["cookies"] == 0
    for name in ("signin", "search", "node", "lineage", "runs", "compare", "models"):
        assert (shots / f"{name}.png").stat().st_size > 10_000, name
