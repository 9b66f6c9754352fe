"""``lineagehub models card``, ``report``, ``report verify``, ``inventory``, ``audit prove``:
model cards, compliance reports and their proofs, the inventory of production models."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lineagehub.graph import GraphStore, ValidationError
from lineagehub.graph.model import parse_time
from lineagehub.interfaces.cli.common import (
    _emit,
    _jsonable,
    _print_json,
    _table,
    _text,
    make_console,
    output_path,
)

if TYPE_CHECKING:
    from lineagehub.ingest.client import Client
    from lineagehub.services.cards import ModelCard

REPORT_FORMATS = ("html", "pdf", "json")


def _as_of(args: argparse.Namespace) -> Any:
    return parse_time(args.as_of, "as_of") if getattr(args, "as_of", None) else None


# --- models card set|show ---------------------------------------------------------------------


def _card_args(args: argparse.Namespace) -> dict[str, Any]:
    card: dict[str, Any] = {}
    if args.file:
        try:
            loaded = json.loads(Path(args.file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValidationError(
                f"--file {args.file!r}: not a JSON file ({e})", field="file"
            ) from None
        if not isinstance(loaded, dict):
            raise ValidationError("--file must hold a JSON object of card fields", field="file")
        card.update(loaded)
    pairs = {
        "intended_use": args.intended_use,
        "out_of_scope_uses": args.out_of_scope,
        "limitations": args.limitation,
        "ethical_considerations": args.ethical,
        "owners": args.owner,
        "risk_tier": args.risk_tier,
        "validation_status": args.validation_status,
        "next_review_date": args.next_review,
    }
    card.update({k: v for k, v in pairs.items() if v is not None})
    if not card:
        raise ValidationError("give at least one card field (or --file)", field="card")
    return card


def _show_card(args: argparse.Namespace, card: ModelCard) -> int:
    if args.json:
        _print_json(card.to_dict())
        return 0
    table = _table(f"model card of {card.version_id}", "field", "value")
    for k, v in card.to_dict()["card"].items():
        shown = "; ".join(v) if isinstance(v, list) else v
        table.add_row(_text(k.replace("_", " ")), _text(shown))
    console = make_console()
    console.print(table)
    if card.revision:
        console.print(f"revision {card.revision} by {card.updated_by} at {card.updated_at}")
    else:
        console.print("no card recorded")
    return 0


def cmd_card_set(args: argparse.Namespace, client: Client) -> int:
    return _show_card(args, client.set_model_card(args.ref, _card_args(args), args.reason))


def cmd_card_show(args: argparse.Namespace, client: Client) -> int:
    return _show_card(args, client.model_card(args.ref, _as_of(args)))


def register_cards(models: Any, hub: argparse.ArgumentParser) -> None:
    """``models card set|show`` under the ``models`` group."""
    p = models.add_parser("card", help="a model version's card: set or show")
    cards = p.add_subparsers(dest="card_command", required=True, metavar="ACTION")
    c = cards.add_parser(
        "set", parents=[hub], help="set card fields (the others stay) as a new audited revision"
    )
    c.add_argument("ref", metavar="VERSION", help="the model version: churn/3, churn@champion")
    c.add_argument("--intended-use", metavar="TEXT", help="what the model is for")
    c.add_argument(
        "--out-of-scope", action="append", metavar="TEXT", help="a use it is not for (repeat)"
    )
    c.add_argument("--limitation", action="append", metavar="TEXT", help="a limitation (repeat)")
    c.add_argument(
        "--ethical", action="append", metavar="TEXT", help="an ethical consideration (repeat)"
    )
    c.add_argument("--owner", action="append", metavar="NAME", help="an owner (repeat)")
    c.add_argument("--risk-tier", help="minimal, limited, high or unacceptable")
    c.add_argument(
        "--validation-status",
        help="not-validated, in-validation, validated, validated-with-findings or rejected",
    )
    c.add_argument("--next-review", metavar="DATE", help="the next review date, YYYY-MM-DD")
    c.add_argument("--file", metavar="JSON_FILE", help="card fields from a JSON object")
    c.add_argument("--reason", help="why (kept with the revision)")
    c.set_defaults(func=cmd_card_set, needs_client=True)
    c = cards.add_parser("show", parents=[hub], help="a version's card, now or at a past date")
    c.add_argument("ref", metavar="VERSION", help="the model version: churn/3, churn@champion")
    c.add_argument("--as-of", metavar="TIME", help="the card as it was then (ISO 8601)")
    c.set_defaults(func=cmd_card_show, needs_client=True)


# --- report, report verify --------------------------------------------------------------------


def _format(args: argparse.Namespace) -> str:
    named = Path(args.output).suffix.lstrip(".").lower() if args.output != "-" else ""
    fmt = args.format or named
    if args.format and named in REPORT_FORMATS and named != args.format:
        # report.pdf holding HTML opens in no viewer
        raise ValidationError(
            f"-o {args.output!r:.200} names a {named} file, but --format is {args.format}: "
            f"name the file .{args.format} or leave --format out",
            field="output",
        )
    if fmt not in REPORT_FORMATS:
        raise ValidationError(
            f"report format {fmt or args.output!r}: give -o report.html, .pdf or .json "
            "(or --format)",
            field="format",
        )
    return fmt


def cmd_report(args: argparse.Namespace, client: Client | None = None) -> int:
    if args.ref == "verify":
        if not args.file:
            raise ValidationError("report verify needs the report's JSON file", field="file")
        return cmd_report_verify(args)
    if args.file:
        raise ValidationError(f"unexpected argument {args.file!r}", field="file")
    if not args.output:
        raise ValidationError("give -o report.html, report.pdf or report.json", field="output")
    from lineagehub.files import writable, write_atomic
    from lineagehub.interfaces.cli.common import hub_client
    from lineagehub.services.dossier import report_json
    from lineagehub.services.report_render import render_html, render_pdf

    fmt = _format(args)
    if args.output != "-":
        writable(args.output, field="output")  # before seconds of work, not after
    with hub_client(args) as c:
        report = c.compliance_report(args.ref, _as_of(args))
    with output_path(args.output) as target:
        if fmt == "pdf":
            render_pdf(report, target)
        else:
            body = report_json(report) if fmt == "json" else render_html(report)
            write_atomic(target, lambda f: f.write(body.encode("utf-8")), field="output")
    missing = sum(1 for c in report["checklist"] if not c["complete"])
    data = {
        "file": args.output,
        "format": fmt,
        "version_id": report["identity"]["version_id"],
        "as_of": report["as_of"],
        "audit_entries": len(report["audit"]["entries"]),
        "checklist_gaps": missing,
    }
    _emit(
        args,
        data,
        f"{report['identity']['version_id']}: {fmt.upper()} report written to {args.output} "
        f"({data['audit_entries']} audit entries proven, {missing} checklist rows with gaps)",
    )
    return 0


def _cell(value: Any) -> Any:
    """A CSV cell a spreadsheet reads as text: one that starts like a formula (an owner named
    '=HYPERLINK(...)') gets a leading apostrophe, as OWASP advises for CSV injection."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def verify_report(
    report: Any,
    key: bytes | None = None,
    public_key: Any | None = None,
    trusted: list[Any] | None = None,
) -> dict[str, Any]:
    """Check a report offline: its seal (nothing in it changed since it was made; with
    ``key`` / ``public_key``, made by the hub holding them); every cited audit entry has a
    proof, each proof leads to the report's tree head, the head is signed and, with
    ``trusted`` heads, is one of them; and the card shown is the last revision the log
    recorded. ``{"ok", "checked", "problems", "notes"}``."""
    found = _verify_audit_section(report, key, public_key, trusted)
    if found["checked"] == 0 and found["problems"] == ["not a compliance report"]:
        return found
    problems, notes = _check_seal(report, key, public_key)
    return {
        **found,
        "ok": found["ok"] and not problems,
        "problems": [*problems, *found["problems"]],
        "notes": [*notes, *found["notes"]],
    }


def _check_seal(
    report: dict[str, Any], key: bytes | None, public_key: Any | None
) -> tuple[list[str], list[str]]:
    import hmac

    from lineagehub.services.dossier import seal_mac, sealed_digest

    seal = report.get("seal")
    if seal is None:
        note = "the report has no seal (made by an older release): only its audit section "
        return [], [note + "and card were checked"]
    if not isinstance(seal, dict) or not isinstance(seal.get("digest"), str):
        return ["the report's seal is malformed"], []
    problems: list[str] = []
    digest = seal["digest"]
    if sealed_digest(report) != digest:
        problems.append(
            "the report was changed after it was made: its contents do not match its seal"
        )
    mac, signature = seal.get("mac"), seal.get("signature")
    if key is not None:
        if not isinstance(mac, str):
            problems.append("the report's seal has no MAC: it was not made with the audit key")
        elif not hmac.compare_digest(mac, seal_mac(digest, key)):
            problems.append("the report's seal was not made with this audit key")
    if public_key is not None:
        from cryptography.exceptions import InvalidSignature

        try:
            if not isinstance(signature, str):
                raise ValueError
            public_key.verify(bytes.fromhex(signature), digest.encode("ascii"))
        except (InvalidSignature, ValueError):
            problems.append("the report's seal is not signed with this public key")
    return problems, []


def _verify_audit_section(
    report: Any,
    key: bytes | None = None,
    public_key: Any | None = None,
    trusted: list[Any] | None = None,
) -> dict[str, Any]:
    from lineagehub.graph.audit import TreeHead
    from lineagehub.services.cards import CARD_FIELDS
    from lineagehub.services.dossier import FORMAT
    from lineagehub.services.proofs import check_all

    problems: list[str] = []
    notes: list[str] = []
    if not isinstance(report, dict) or report.get("format") != FORMAT:
        return {"ok": False, "checked": 0, "problems": ["not a compliance report"], "notes": []}
    audit = report.get("audit") or {}
    entries = audit.get("entries") or []
    proofs = audit.get("proofs") or []
    if not entries:
        notes.append("the report cites no audit entries")
        return {"ok": True, "checked": 0, "problems": [], "notes": notes}
    try:
        head = TreeHead.from_dict(audit.get("head"))
    except ValidationError:
        return {"ok": False, "checked": 0, "problems": ["the report's tree head is malformed"],
                "notes": []}  # fmt: skip
    if trusted is not None and not any(
        t.tree_size == head.tree_size and t.root_hash == head.root_hash for t in trusted
    ):
        problems.append(
            f"the report's tree head (size {head.tree_size}, root {head.root_hash}) is none of "
            "the trusted heads given"
        )
    if not isinstance(entries, list) or not isinstance(proofs, list):
        return {"ok": False, "checked": 0, "notes": [],
                "problems": ["the report's audit entries or proofs are not lists"]}  # fmt: skip
    if any(not isinstance(p, dict) or not isinstance(p.get("entry"), dict) for p in proofs):
        problems.append("a proof is malformed (not an object with its entry)")
        proofs = [p for p in proofs if isinstance(p, dict) and isinstance(p.get("entry"), dict)]
    found_identity, found_deployments = report.get("identity"), report.get("deployments")
    identity: dict[str, Any] = found_identity if isinstance(found_identity, dict) else {}
    deployments: list[Any] = found_deployments if isinstance(found_deployments, list) else []
    # what the report is about: the entries it cites are those of these records (an audit
    # section taken from another report names other targets)
    subjects = {
        identity.get("version_id"),
        f"model:{identity.get('model')}",
        *(d.get("id") for d in deployments if isinstance(d, dict)),
    }
    well_formed = []
    seen: set[int] = set()
    for e in entries:
        if not isinstance(e, dict) or type(e.get("seq")) is not int:
            problems.append("an audit entry is malformed (not an object with its seq)")
            continue
        if e["seq"] in seen:
            problems.append(f"audit entry {e['seq']} is cited twice")
            continue
        seen.add(e["seq"])
        if e.get("target") not in subjects:
            problems.append(
                f"audit entry {e['seq']} is about {e.get('target')!r}, not this version, its"
                " model or its deployments"
            )
        if "payload" in e and not isinstance(e["payload"], dict):
            problems.append(f"audit entry {e['seq']} shows a payload that is not an object")
        well_formed.append(e)
    entries = well_formed
    by_seq = {p["entry"].get("seq"): p for p in proofs}
    payloads = {e["seq"]: e["payload"] for e in entries if isinstance(e.get("payload"), dict)}
    for e in entries:
        proof = by_seq.get(e.get("seq"))
        if proof is None:
            problems.append(f"audit entry {e.get('seq')} is cited without a proof")
            continue
        shown = {k: e.get(k) for k in ("time", "actor", "action", "target", "payload_digest")}
        logged = {k: proof["entry"].get(k) for k in shown}
        if shown != logged:
            changed = sorted(k for k in shown if shown[k] != logged[k])
            problems.append(
                f"audit entry {e.get('seq')} as shown differs from its proven entry: "
                f"{', '.join(changed)}"
            )
    for seq, result in check_all(proofs, head, key=key, public_key=public_key, payloads=payloads):
        if not result.ok:
            problems.append(result.problem or f"entry {seq}: not proven")
        for n in result.notes:
            if n not in notes:
                notes.append(n)
    card = report.get("card") or {}
    if not isinstance(card, dict):
        problems.append("the model card is malformed (not an object)")
        card = {}
    card_entries = [
        e for e in entries if e.get("action") == "card.set" and isinstance(e.get("payload"), dict)
    ]
    shown_fields = {k: card.get(k) for k in CARD_FIELDS if card.get(k) is not None}
    if card_entries:
        last = max(card_entries, key=lambda e: e["seq"])["payload"]
        if last.get("revision") != card.get("revision") or last.get("fields") != shown_fields:
            problems.append("the model card shown is not the last revision the audit log recorded")
    elif shown_fields or card.get("revision"):
        problems.append("the model card shown has no revision the audit log recorded")
    return {"ok": not problems, "checked": len(proofs), "problems": problems, "notes": notes}


def cmd_report_verify(args: argparse.Namespace) -> int:
    from lineagehub.config import Settings
    from lineagehub.interfaces.cli.admin import _audit_key
    from lineagehub.services.audit import load_public_key, read_head_file

    try:
        report = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except OSError as e:
        raise ValidationError(f"cannot read {args.file!r}: {e.strerror}", field="file") from None
    except ValueError:
        raise ValidationError(f"{args.file!r} is not JSON", field="file") from None
    public = args.public_key or Settings().audit_signing_key
    trusted = [h for f in args.against or () for h in read_head_file(f)] or None
    result = verify_report(
        report, _audit_key(), load_public_key(public) if public else None, trusted
    )
    if args.json:
        _print_json(result)
    elif result["ok"]:
        print(f"ok: {result['checked']} audit entries proven against the report's tree head")
        for n in result["notes"]:
            print(f"note: {n}")
    else:
        print(f"FAILED: {len(result['problems'])} problem(s)")
        for p in result["problems"]:
            print(f"  {p}")
    return 0 if result["ok"] else 7


# --- inventory --------------------------------------------------------------------------------


def cmd_inventory(args: argparse.Namespace, client: Client) -> int:
    rows = [r.to_dict() for r in client.model_inventory()]
    fmt = "json" if args.json else args.format
    if fmt == "json":
        _print_json(_jsonable({"models": rows}))
        return 0
    if fmt == "csv":
        out = io.StringIO()
        fields = list(rows[0]) if rows else ["model", "version", "version_id"]
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow(
                {k: _cell(";".join(v) if isinstance(v, list) else v) for k, v in r.items()}
            )
        sys.stdout.write(out.getvalue())
        return 0
    table = _table(
        None, "version", "stage", "owners", "risk", "validation", "next review", "alerts",
        "deployments", ids=("version",),
    )  # fmt: skip
    for r in rows:
        table.add_row(
            _text(r["version_id"]),
            _text(r["stage"]),
            _text(", ".join(r["owners"])),
            _text(r["risk_tier"], "red bold" if r["risk_tier"] in ("high", "unacceptable") else ""),
            _text(r["validation_status"]),
            _text(r["next_review_date"], "red bold" if r["review_overdue"] else ""),
            _text(r["open_alerts"], "red bold" if r["open_alerts"] else ""),
            _text(", ".join(r["deployments"])),
        )
    console = make_console()
    console.print(table)
    console.print(f"{len(rows)} model version{'s' if len(rows) != 1 else ''} in production")
    return 0


# --- audit prove ------------------------------------------------------------------------------


def cmd_audit_prove(args: argparse.Namespace, store: GraphStore) -> int:
    from lineagehub.files import write_atomic
    from lineagehub.services.proofs import consistency, prove

    if args.consistency_from is not None:
        data = consistency(store, args.consistency_from, args.seq)
        summary = (
            f"consistency of the tree head at size {args.consistency_from} with the one at "
            f"{data['second']['tree_size']}: {len(data['path'])} hashes"
        )
    else:
        if args.seq is None:
            raise ValidationError("give the entry's SEQ (or --consistency-from)", field="seq")
        data = prove(store, args.seq)
        summary = (
            f"entry {args.seq} is leaf {data['leaf_index']} of the tree head at size "
            f"{data['head']['tree_size']} (root {data['head']['root_hash']}): "
            f"{len(data['path'])} hashes"
        )
    body = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if args.output == "-":  # stdout: the proof, as without -o
        args.output = None
    if args.output:
        write_atomic(args.output, lambda f: f.write(body.encode("utf-8")), field="output")
    if args.json or not args.output:
        sys.stdout.write(body)
    else:
        print(f"{summary}; written to {args.output}")
    return 0


def register_audit_prove(audit: Any, common: argparse.ArgumentParser) -> None:
    a = audit.add_parser(
        "prove",
        parents=[common],
        help="a Merkle inclusion proof of one entry against the newest tree head (or a "
        "consistency proof between two heads)",
    )
    a.add_argument("seq", metavar="SEQ", type=int, nargs="?", help="the entry's sequence number")
    a.add_argument(
        "--consistency-from",
        type=int,
        metavar="SIZE",
        help="instead: prove the stored head at SIZE is a prefix of the head at SEQ (default "
        "the newest)",
    )
    a.add_argument("-o", "--output", metavar="FILE", help="write the proof as JSON to FILE")
    a.set_defaults(func=cmd_audit_prove)


def register(sub: Any, hub: argparse.ArgumentParser) -> None:
    """``report`` (and ``report verify``) and ``inventory``."""
    p = sub.add_parser(
        "report",
        parents=[hub],
        help="a model version's compliance report as HTML, PDF or JSON; `report verify "
        "FILE.json` checks its audit proofs offline",
    )
    p.add_argument(
        "ref", metavar="VERSION", help="the model version (churn/3), or `verify` to check a report"
    )
    p.add_argument("file", metavar="REPORT_JSON", nargs="?", help="with verify: the report")
    p.add_argument("-o", "--output", metavar="FILE", help="report.html, report.pdf or report.json")
    p.add_argument("--format", choices=REPORT_FORMATS, help="default: from the -o suffix")
    p.add_argument("--as-of", metavar="TIME", help="the report as the hub knew it then (ISO 8601)")
    p.add_argument(
        "--public-key", metavar="PEM_FILE",
        help="with verify: check the tree head's Ed25519 signature with this public key",
    )  # fmt: skip
    p.add_argument(
        "--against", action="append", metavar="HEAD_FILE",
        help="with verify: the report's tree head must be one of these (audit head -o)",
    )  # fmt: skip
    p.set_defaults(func=cmd_report, needs_store=False)

    p = sub.add_parser(
        "inventory",
        parents=[hub],
        help="every model version in production: owners, risk tier, validation, review, alerts",
    )
    p.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="default: table"
    )
    p.set_defaults(func=cmd_inventory, needs_client=True)


__all__ = ["register", "register_audit_prove", "register_cards", "verify_report"]
