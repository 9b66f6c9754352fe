"""The compliance report as files people read, through the command line on both stores: HTML
opened in headless Chromium (Debian's ``/usr/bin/chromium`` through npm ``playwright-core``,
every request but the page itself blocked), PDF laid out by WeasyPrint and looked at page by
page (poppler's ``pdftoppm`` to PNG, ``pdftotext``); the JSON checked offline by ``report
verify``; ``models card``, ``inventory`` and ``audit prove`` with ``--json``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import fresh_store_uri
from test_dossier import CARD, KEY, train
from test_graphiql_browser import CHROMIUM, HERE, _missing, _node

from lineagehub import Settings
from lineagehub.ingest.client import Client
from lineagehub.interfaces.cli import main
from lineagehub.services.report_render import SECTIONS


@pytest.fixture
def hub(store_backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store with a trained, carded, promoted and deployed version ``onco/1``; the CLI
    configured to sign with the audit key."""
    uri = fresh_store_uri(store_backend, tmp_path)
    monkeypatch.setenv("LINEAGEHUB_AUDIT_KEY", KEY)
    monkeypatch.setenv("LINEAGEHUB_USER", "ann")
    monkeypatch.setenv("LINEAGEHUB_ARTIFACTS", str(tmp_path / "artifacts"))
    settings = Settings(user="ann", artifacts=str(tmp_path / "artifacts"), audit_key=KEY)
    with Client(uri, settings=settings) as client:
        train(client, 1.0)
        client.promote("onco/1", "Production", "the first")
        client.deploy("onco/1", "production")
    return uri


def _cli(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    done = main([*argv, "--json"])
    out = capsys.readouterr()
    assert done == code, (argv, out.out, out.err)
    return json.loads(out.out) if out.out.strip() else None


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        _missing(f"needs poppler-utils' {name} (apt-get install poppler-utils)")
    assert found is not None
    return found


@pytest.mark.slow
def test_report_files_cards_inventory_and_proofs_on_the_command_line(
    hub: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("weasyprint", reason="PDF reports need the report extra (weasyprint)")
    card_file = tmp_path / "card.json"
    card_file.write_text(json.dumps({k: v for k, v in CARD.items() if k != "owners"}))
    card = _cli(
        capsys, "models", "card", "set", "onco/1", "--store", hub, "--file", str(card_file),
        "--owner", "ann", "--reason", "first card",
    )  # fmt: skip
    assert card["revision"] == 1 and card["card"]["owners"] == ["ann"]
    assert card["updated_by"] == "ann"
    shown = _cli(capsys, "models", "card", "show", "onco/1", "--store", hub)
    assert shown["card"]["risk_tier"] == "high"
    _cli(capsys, "models", "card", "set", "onco/1", "--store", hub, "--risk-tier", "x", code=2)

    inventory = _cli(capsys, "inventory", "--store", hub)
    assert [m["version_id"] for m in inventory["models"]] == ["mv:onco/1"]
    assert main(["inventory", "--store", hub, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("model,version,version_id,") and lines[1].startswith("onco,1,")
    # an owner whose name a spreadsheet would run as a formula is written as text
    _cli(capsys, "models", "card", "set", "onco/1", "--store", hub, "--owner", "=HYPERLINK(1)")
    assert main(["inventory", "--store", hub, "--format", "csv"]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert "'=HYPERLINK(1)" in row and ",=HYPERLINK" not in row

    files = {fmt: tmp_path / f"report.{fmt}" for fmt in ("json", "html", "pdf")}
    for fmt, path in files.items():
        done = _cli(capsys, "report", "onco/1", "--store", hub, "-o", str(path))
        assert (done["format"], done["version_id"]) == (fmt, "mv:onco/1")
        assert path.stat().st_size > 0

    # the JSON's proofs, offline; then a tampered copy
    verified = _cli(capsys, "report", "verify", str(files["json"]))
    assert verified["ok"] and verified["checked"] >= 3
    report = json.loads(files["json"].read_text())
    report["audit"]["proofs"][0]["entry"]["action"] = "nothing.happened"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(report))
    failed = _cli(capsys, "report", "verify", str(forged), code=7)
    assert any("was altered" in p for p in failed["problems"])

    # audit prove: the entry the report cites last
    seq = report["audit"]["entries"][-1]["seq"]
    proof = _cli(capsys, "audit", "prove", str(seq), "--store", hub)
    assert proof["entry"]["seq"] == seq and proof["head"]["mac"]

    # the PDF: pages as pictures, and the sections' text
    pages = tmp_path / "pages"
    pages.mkdir()
    subprocess.run(
        [_tool("pdftoppm"), "-png", "-r", "40", str(files["pdf"]), str(pages / "page")],
        check=True,
        timeout=120,
    )
    pngs = sorted(pages.glob("page-*.png"))
    assert len(pngs) >= 2
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000 for p in pngs)
    text = subprocess.run(
        [_tool("pdftotext"), str(files["pdf"]), "-"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    for _, heading in SECTIONS:
        assert heading in text, heading
    assert "Compliance report: onco version 1" in text and "Research triage" in text

    # the HTML in a browser, offline
    html = files["html"].read_text()
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    node = _node()
    done = subprocess.run(
        [node, str(HERE / "report.mjs"), files["html"].as_uri(), str(CHROMIUM)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "SCREENSHOT": str(tmp_path / "report.png")},
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert "error" not in seen, seen
    assert seen["blocked"] == [] and seen["requests"] == [files["html"].as_uri()]
    assert seen["pageErrors"] == [] and seen["consoleErrors"] == []
    assert seen["sections"] == [key for key, _ in SECTIONS]
    assert seen["headings"] == [heading for _, heading in SECTIONS]
    assert seen["checklistRows"] == len(report["checklist"])
    assert seen["auditRows"] == len(report["audit"]["entries"])
    if shutil.which("dot"):
        assert seen["svg"] == 1 and seen["svgWidth"] > 100
