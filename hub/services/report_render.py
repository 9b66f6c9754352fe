"""The compliance report (:mod:`lineagehub.services.dossier`) as a page people read: HTML
and PDF.

The HTML is one self-contained file: CSS inline, the lineage picture inline as SVG, no
script, no font, image or style sheet fetched from anywhere, so it renders offline and the
same years later. The PDF is that HTML laid out by WeasyPrint (the optional extra
``report``), which fetches nothing either (every URL it is asked for is refused).
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lineagehub.files import write_atomic
from lineagehub.graph import ConfigError
from lineagehub.services.cards import CARD_FIELDS

_CSS = """
@page { size: A4; margin: 16mm 14mm; }
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; font-size: 10pt;
       color: #1d232b; margin: 0 auto; max-width: 60em; line-height: 1.4; }
h1 { font-size: 18pt; margin: 0 0 .2em; }
h2 { font-size: 13pt; border-bottom: 2px solid #3b5b80; margin-top: 1.4em;
     padding-bottom: .1em; page-break-after: avoid; }
h3 { font-size: 11pt; margin: 1em 0 .3em; }
table { border-collapse: collapse; width: 100%; margin: .3em 0 .8em; table-layout: fixed; }
th, td { border: 1px solid #c9d1da; padding: 2px 5px; text-align: left; vertical-align: top;
         font-size: 8.5pt; overflow-wrap: anywhere; word-break: break-all; }
th { background: #eef2f6; }
code, .mono { font-family: "DejaVu Sans Mono", monospace; font-size: 8.5pt; }
.meta { color: #53606d; }
.ok { color: #1e7b34; font-weight: bold; }
.missing { color: #b3261e; font-weight: bold; }
.picture svg { max-width: 100%; height: auto; }
.note { background: #fff7e0; border-left: 4px solid #e0a800; padding: .3em .6em; }
section { page-break-inside: auto; }
"""

#: Column profiles shown in the page (the JSON report holds all of them).
MAX_PROFILES = 10

SECTIONS = (
    ("identity", "Identity"),
    ("card", "Model card"),
    ("data", "Training data"),
    ("training", "Code and environment"),
    ("parameters", "Parameters"),
    ("evaluation", "Evaluation"),
    ("comparison", "Comparison with the replaced version"),
    ("governance", "Approvals and promotion history"),
    ("deployments", "Deployments"),
    ("monitoring", "Monitoring and alerts"),
    ("open_issues", "Open issues"),
    ("lineage", "Lineage"),
    ("checklist", "Completeness checklist"),
    ("audit", "Audit entries and proofs"),
)


def _e(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return html.escape("; ".join(value)) if value else "—"
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str))
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], raw: bool = False) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if raw else _e(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    if not body:
        return '<p class="meta">None recorded.</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv(pairs: Iterable[tuple[str, Any]]) -> str:
    return _table(("field", "value"), pairs)


_SVG_SCRIPT = re.compile(r"<script\b.*?</script>", re.S | re.I)
_SVG_HREF = re.compile(r'\s(?:xlink:)?href="(?!#)[^"]*"', re.I)


def _safe_svg(svg: str) -> str:
    """Graphviz's SVG without scripts or links out (node URLs would be links)."""
    return _SVG_HREF.sub("", _SVG_SCRIPT.sub("", svg))


def _section(key: str, report: Mapping[str, Any]) -> str:
    r = report
    if key == "identity":
        i = r["identity"]
        return _kv((k, i.get(k)) for k in i)
    if key == "card":
        c = r["card"]
        meta = (
            f'<p class="meta">Revision {c["revision"]} by {_e(c["updated_by"])} at '
            f"{_e(c['updated_at'])}</p>"
            if c["revision"]
            else '<p class="missing">No model card recorded.</p>'
        )
        return meta + _kv((k.replace("_", " "), c.get(k)) for k in CARD_FIELDS)
    if key == "data":
        rows = [
            (
                d["id"],
                d["role"],
                d.get("digest"),
                d.get("row_count"),
                ", ".join(f"{c.get('name')}:{c.get('type')}" for c in d.get("schema") or []),
                ", ".join(d.get("upstream_data") or []) or None,
            )
            for d in r["data"]["datasets"]
        ]
        out = _table(("dataset version", "role", "digest", "rows", "schema", "sources"), rows)
        profiled = [d for d in r["data"]["datasets"] if d.get("profile")]
        if len(profiled) > MAX_PROFILES:
            out += (
                f'<p class="meta">Profiles of the first {MAX_PROFILES} of {len(profiled)} '
                "dataset versions; the JSON report holds every one.</p>"
            )
        for d in profiled[:MAX_PROFILES]:
            if d.get("profile"):
                text = json.dumps(d["profile"], sort_keys=True, default=str)
                cut = f" … ({len(text)} characters in the JSON report)" if len(text) > 1500 else ""
                out += (
                    f"<h3>Profile of {_e(d['id'])}</h3>"
                    f'<p class="mono">{html.escape(text[:1500])}{cut}</p>'
                )
        return out
    if key == "training":
        t = r["training"]
        out = "<h3>Run</h3>" + (_kv((t["run"] or {}).items()) if t["run"] else "<p>—</p>")
        out += "<h3>Code</h3>" + _table(
            ("commit", "repo", "sha", "branch", "dirty", "diff digest"),
            [
                (c["id"], c["repo"], c["sha"], c["branch"], c["dirty"], c["diff_digest"])
                for c in t["code"]
            ],
        )
        out += "<h3>Environment</h3>" + _table(
            ("environment", "python", "platform", "packages digest", "packages"),
            [
                (
                    e["id"],
                    e["python"],
                    e["platform"],
                    e["packages_digest"],
                    len(e.get("packages") or {}),
                )
                for e in t["environment"]
            ],
        )
        return out
    if key == "parameters":
        return _kv(sorted(r["parameters"].items()))
    if key == "evaluation":
        ev = r["evaluation"]
        out = "<h3>Metrics</h3>" + _kv(sorted(ev["metrics"].items()))
        for s in ev["slices"]:
            slices = s.get("slices") or {}
            names = sorted({m for v in slices.values() for m in (v.get("metrics") or {})})
            out += f"<h3>By {_e(s['slice_column'])} ({_e(s.get('prefix'))})</h3>"
            out += _table(
                ("slice", "rows", *names),
                [
                    (k, v.get("rows"), *[(v.get("metrics") or {}).get(n) for n in names])
                    for k, v in sorted(slices.items())
                ],
            )
        if not ev["slices"]:
            out += '<p class="meta">No per-slice results were logged.</p>'
        return out
    if key == "comparison":
        c = r["comparison"]
        if not c.get("previous"):
            return f'<p class="meta">{_e(c.get("note"))}</p>'
        out = f"<p>Compared with <code>{_e(c['previous'])}</code>.</p>"
        out += _table(
            ("what", "added", "removed"),
            [(k, c[k]["added"], c[k]["removed"]) for k in ("datasets", "commits", "environments")],
        )
        out += "<h3>Parameters changed</h3>" + _table(
            ("param", "before", "after"),
            [(p["key"], p.get("before"), p.get("after")) for p in c["params_changed"]],
        )
        out += "<h3>Metrics</h3>" + _table(
            ("metric", "before", "after", "delta"),
            [(m["key"], m["before"], m["after"], m["delta"]) for m in c["metric_deltas"]],
        )
        return out
    if key == "governance":
        g = r["governance"]
        out = _table(
            ("at", "change", "from", "to", "alias", "actor", "approvals", "reason"),
            [
                (h["at"], h["change"], h["from"], h["to"], h["alias"], h["actor"],
                 ", ".join(h["approvals"]) or None, h["reason"])
                for h in g["history"]
            ],
        )  # fmt: skip
        if g.get("refusals"):
            out += "<h3>Refused promotions and approvals</h3>" + _table(
                ("audit seq", "at", "actor", "what"),
                [(x["seq"], x["time"], x["actor"], x["action"]) for x in g["refusals"]],
            )
        if g["pending"]:
            out += "<h3>Pending requests</h3>" + _table(
                ("request", "to", "by", "approvals", "needed", "reason"),
                [
                    (p["request_id"], p["to_stage"], p["requested_by"], p["approvals"],
                     p["needed"], p["reason"])
                    for p in g["pending"]
                ],
            )  # fmt: skip
        return out
    if key == "deployments":
        return _table(
            ("deployment", "environment", "endpoint", "serving from", "serving to", "live"),
            [
                (d["id"], d["environment"], d["endpoint"], d["serving_from"], d["serving_to"],
                 d["live"])
                for d in r["deployments"]
            ],
        )  # fmt: skip
    if key == "monitoring":
        m = r["monitoring"]
        out = "<h3>Windows</h3>" + _table(
            ("window", "start", "end", "samples", "drifted features", "metrics"),
            [
                (w["id"], w["start"], w["end"], w["sample_count"], w["drifted_features"],
                 w["metrics"])
                for w in m["windows"]
            ],
        )  # fmt: skip
        out += "<h3>Alerts</h3>" + _table(
            ("alert", "rule", "severity", "state", "fired", "resolved"),
            [
                (a["id"], a["rule"], a["severity"], a["state"], a["fired_at"], a["resolved_at"])
                for a in m["alerts"]
            ],
        )
        return out
    if key == "open_issues":
        return _table(
            ("kind", "issue", "id"), [(i["kind"], i["text"], i.get("id")) for i in r["open_issues"]]
        )
    if key == "lineage":
        lin = r["lineage"]
        meta = (
            f'<p class="meta">{lin["nodes"]} nodes, {lin["edges"]} edges, '
            f"{lin['runs_upstream']} runs upstream"
            + (f", truncated ({_e(lin['truncation_reason'])})" if lin["truncated"] else "")
            + "</p>"
        )
        if lin.get("svg"):
            note = f'<p class="meta">{_e(lin["note"])}.</p>' if lin.get("note") else ""
            return meta + note + f'<div class="picture">{_safe_svg(lin["svg"])}</div>'
        return meta + f'<p class="note">No picture: {_e(lin.get("note"))}</p>'
    if key == "checklist":
        return _table(
            ("section", "EU AI Act Annex IV", "SR 11-7", "Model Card", "status"),
            [
                (
                    _e(c["title"]),
                    _e(c["annex_iv"]),
                    _e(c["sr_11_7"]),
                    _e(c["model_card"] or "—"),
                    '<span class="ok">complete</span>'
                    if c["complete"]
                    else f'<span class="missing">missing: {_e(", ".join(c["missing"]))}</span>',
                )
                for c in r["checklist"]
            ],
            raw=True,
        )
    if key == "audit":
        a = r["audit"]
        head = a.get("head")
        out = (
            f"<p>Tree head: size {_e(head['tree_size'])}, root <code>{_e(head['root_hash'])}</code>, "
            f"{'HMAC-signed' if head.get('mac') else 'not HMAC-signed'}"
            f"{', Ed25519-signed' if head.get('signature') else ''}, at {_e(head['time'])}.</p>"
            if head
            else f'<p class="note">{_e(a.get("note") or "no tree head")}</p>'
        )
        paths = {p["entry"]["seq"]: len(p["path"]) for p in a.get("proofs") or []}
        out += _table(
            ("seq", "time", "actor", "action", "target", "payload digest", "proof"),
            [
                (e["seq"], e["time"], e["actor"], e["action"], e["target"], e["payload_digest"],
                 f"{paths[e['seq']]} hashes" if e["seq"] in paths else None)
                for e in a["entries"]
            ],
        )  # fmt: skip
        return out
    return ""


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    ident = report["identity"]
    title = f"Compliance report: {ident['model']} version {ident['version']}"
    when = (
        f"as of {_e(report['as_of'])} (generated {_e(report['generated_at'])})"
        if report.get("as_of")
        else f"generated {_e(report['generated_at'])}"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # nothing may be fetched: the page is complete as it is
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta"><code>{_e(ident["version_id"])}</code>, {when}</p>',
    ]
    missing = [c for c in report["checklist"] if not c["complete"]]
    parts.append(
        f'<p class="note">{len(missing)} of {len(report["checklist"])} checklist rows have gaps '
        "(see the completeness checklist).</p>"
        if missing
        else '<p class="ok">Every checklist row is complete.</p>'
    )
    notes = report.get("reconstruction", {}).get("not_reconstructed") or []
    if notes:
        parts.append(
            '<div class="note"><b>Not reconstructed at this date:</b><ul>'
            + "".join(f"<li>{_e(n)}</li>" for n in notes)
            + "</ul></div>"
        )
    for key, heading in SECTIONS:
        parts.append(
            f'<section id="{key}"><h2>{html.escape(heading)}</h2>{_section(key, report)}</section>'
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def _refuse(url: str, *args: Any, **kwargs: Any) -> Any:
    raise ValueError(f"the report fetches nothing ({url[:60]!r} refused)")


def render_pdf(report: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """The report's HTML laid out as PDF by WeasyPrint (``pip install
    'lineagehub[report]'``); :class:`ConfigError` when it is missing."""
    try:
        import weasyprint
    except (ImportError, OSError) as e:  # OSError: the Pango libraries are missing
        raise ConfigError(
            "PDF reports need WeasyPrint and its Pango libraries: pip install "
            f"'lineagehub[report]' (and e.g. apt-get install libpango-1.0-0 libpangoft2-1.0-0): {e}"
        ) from None
    doc = weasyprint.HTML(string=render_html(report), url_fetcher=_refuse)
    pdf = doc.write_pdf()  # the bytes, then the file whole (a kill never leaves half a PDF)
    write_atomic(path, lambda f: f.write(pdf), field="output")


__all__ = ["SECTIONS", "render_html", "render_pdf"]
