"""GraphiQL in a real browser, offline: headless Chromium (Debian's ``/usr/bin/chromium``,
driven by the npm package ``playwright-core`` from ``tests/browser``; no browser download)
loads the hub's page with every request to anything but the hub blocked, and runs a query.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``), ``node`` and ``npm``; skips naming
what is missing. ``npm ci`` runs here if ``tests/browser/node_modules`` is absent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import pytest
from http_server import example_hub

HERE = Path(__file__).parent / "browser"
CHROMIUM = Path("/usr/bin/chromium")


def _missing(reason: str) -> NoReturn:
    """Skip naming what is missing; under CI, which installs it (.ci/run), fail instead."""
    if os.environ.get("CI"):
        pytest.fail(f"CI installs what this test needs, yet: {reason}")
    pytest.skip(reason)


def _node() -> str:
    if not CHROMIUM.exists():
        _missing(
            f"the GraphiQL browser test needs chromium at {CHROMIUM} (apt-get install chromium)"
        )
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _missing("the GraphiQL browser test needs node and npm on PATH")
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        done = subprocess.run(
            [npm, "ci", "--prefix", str(HERE), "--no-audit", "--no-fund", "--loglevel=error"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            _missing(f"`npm ci --prefix tests/browser` failed:\n{done.stdout}\n{done.stderr}")
    assert node is not None
    return node


@pytest.mark.slow
def test_graphiql_renders_and_runs_a_query_offline(tmp_path: Path) -> None:
    node = _node()
    with example_hub(tmp_path) as http:
        url = f"{http.base_url}".rstrip("/") + "/graphql"
        done = subprocess.run(
            [node, str(HERE / "graphiql.mjs"), url, str(CHROMIUM)],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            env={"PATH": "/usr/bin:/bin", "SCREENSHOT": str(tmp_path / "graphiql.png")},
        )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert "error" not in report, (report.get("error"), report)
    assert report["blocked"] == [], "the page asked for something outside the hub"
    assert report["pageErrors"] == [] and report["consoleErrors"] == [], report
    assert report["rendered"]
    # the page, its assets (all from /graphiql/), then the schema and the query as POSTs
    assert {"/graphiql/graphiql.min.js", "/graphiql/react.production.min.js"} <= set(
        report["served"]
    )
    result = json.loads(report["result"])
    names = [e["node"]["name"] for e in result["data"]["runs"]["edges"]]
    assert names, result
    assert (tmp_path / "graphiql.png").stat().st_size > 10_000  # a screenshot of a real page
