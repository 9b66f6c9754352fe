"""The ``lineagehub`` command.

Exit codes scripts can rely on: 0 success, 1 unexpected error, 2 bad usage or invalid input,
3 not found, 4 configuration error, 5 store unavailable or failing, 6 conflict,
7 tampering found (``audit verify``, ``audit verify-export``: the audit log or an export of
it fails verification).
Errors are one line on stderr (``--json``: a JSON object with ``code`` and ``message``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from lineagehub.graph import Direction, GraphStore, HubError, Node, Subgraph, redact

from . import __version__, open_store

EXIT_CODES = {
    "VALIDATION": 2,
    "NOT_FOUND": 3,
    "CONFIG": 4,
    "BACKEND": 5,
    "BACKEND_UNAVAILABLE": 5,
    "CONFLICT": 6,
    "INTEGRITY": 7,
}
EXIT_TAMPERED = 7


def lineage_edge_kinds() -> list[str]:
    """Every edge kind but the grouping ones: what a lineage trace follows by default."""
    from .vocabulary import LINEAGE_EDGE_KINDS

    return sorted(k.value for k in LINEAGE_EDGE_KINDS)


def display_name(node: Node) -> str:
    """A short human label for a node: its name, with a version where it has one."""
    props = node.props
    name = props.get("name") or props.get("model") or props.get("sha") or props.get("rule")
    if "version" in props and isinstance(props["version"], int):
        name = f"{name or ''} v{props['version']}".strip()
    return str(name) if name else ""


def render_tree(sub: Subgraph) -> str:
    """The traversal as an indented tree: each node under the node it was reached from."""
    children: dict[str | None, list[str]] = {}
    for node_id, t in sub.nodes.items():
        children.setdefault(t.reached_from, []).append(node_id)
    edge_between: dict[tuple[str, str], Any] = {}
    for e in sub.edges:
        edge_between.setdefault((e.source, e.target), e)
        edge_between.setdefault((e.target, e.source), e)
    lines: list[str] = []

    def line(node_id: str, prefix: str, connector: str, parent: str | None) -> None:
        t = sub.nodes[node_id]
        via = ""
        if parent is not None:
            e = edge_between.get((parent, node_id))
            if e is not None:
                role = e.props.get("role")
                kind = f"{e.kind}({role})" if role else e.kind
                # upstream: parent -KIND-> child; downstream: child -KIND-> parent
                via = f"{kind} → " if e.source == parent else f"← {kind}: "
        name = display_name(t.node)
        lines.append(
            f"{prefix}{connector}{via}{t.node.label} {node_id}{f'  {name}' if name else ''}"
        )

    def walk(node_id: str, prefix: str) -> None:
        kids = children.get(node_id, [])
        for i, kid in enumerate(kids):
            last = i == len(kids) - 1
            line(kid, prefix, "└─ " if last else "├─ ", node_id)
            walk(kid, prefix + ("   " if last else "│  "))

    for root in children.get(None, []):
        line(root, "", "", None)
        walk(root, "")
    if sub.truncated:
        reason = sub.truncation_reason.value if sub.truncation_reason else "budget"
        lines.append(f"… truncated ({reason}): raise --depth or --max-nodes to see more")
    return "\n".join(lines)


def subgraph_json(sub: Subgraph) -> dict[str, Any]:
    return {
        "nodes": [
            {
                "id": node_id,
                "label": t.node.label,
                "props": t.node.props,
                "distance": t.distance,
                "reachedFrom": t.reached_from,
                "direction": t.direction.value if t.direction else None,
            }
            for node_id, t in sub.nodes.items()
        ],
        "edges": [
            {
                "id": e.id,
                "source": e.source,
                "target": e.target,
                "kind": e.kind,
                "props": e.props,
                "eventTime": e.event_time.isoformat() if e.event_time else None,
                "ingestedAt": e.ingested_at.isoformat() if e.ingested_at else None,
                "assertedBy": e.asserted_by,
            }
            for e in sub.edges
        ],
        "truncated": sub.truncated,
        "truncationReason": sub.truncation_reason.value if sub.truncation_reason else None,
    }


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        print(text)


def cmd_doctor(args: argparse.Namespace, store: GraphStore) -> int:
    from .vocabulary import NodeKind

    counts = {k.value: n for k in NodeKind if (n := store.count_nodes(k.value))}
    data: dict[str, Any] = {
        "version": __version__,
        "store": redact(store.uri),
        "backend": type(store).__name__,
        "schemaVersion": getattr(store, "schema_version", None),
        "nodes": counts,
        "totalNodes": store.count_nodes(),
    }
    text = "\n".join(
        [
            f"lineagehub {__version__}",
            f"store    {data['store']} ({data['backend']}, schema {data['schemaVersion']})",
            f"nodes    {data['totalNodes']}",
            *(f"  {k:<18} {v}" for k, v in counts.items()),
            "ok",
        ]
    )
    _emit(args, data, text)
    return 0


def cmd_lineage(args: argparse.Namespace, store: GraphStore) -> int:
    kinds = args.edge_kind or (None if args.all_edges else lineage_edge_kinds())
    sub = store.traverse(
        args.ids,
        args.direction,
        args.depth,
        edge_kinds=kinds,
        max_nodes=args.max_nodes,
    )
    _emit(args, subgraph_json(sub), render_tree(sub))
    return 0


def cmd_example(args: argparse.Namespace, store: GraphStore) -> int:
    from .example import build_example

    ids = build_example(store)
    kinds = lineage_edge_kinds()
    up = store.traverse([ids["deployment"]], Direction.UPSTREAM, 8, edge_kinds=kinds)
    down = store.traverse([ids["raw"]], Direction.DOWNSTREAM, 8, edge_kinds=kinds)
    data = {
        "store": redact(store.uri),
        "ids": ids,
        "upstream": subgraph_json(up),
        "downstream": subgraph_json(down),
    }
    text = "\n".join(
        [
            f"Example lineage written to {redact(store.uri)}",
            "",
            f"Where did the deployed model come from?  (lineagehub lineage {ids['deployment']})",
            render_tree(up),
            "",
            f"Which runs, models and deployments does the raw data affect?  "
            f"(lineagehub lineage --downstream {ids['raw']})",
            render_tree(down),
        ]
    )
    _emit(args, data, text)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the API server (uvicorn) until interrupted; SIGINT/SIGTERM shut it down gracefully."""
    import uvicorn

    from .config import Settings

    # Workers are separate processes: they read their settings from the environment.
    if args.store:
        os.environ["LINEAGEHUB_STORE"] = args.store
    if args.artifacts:
        os.environ["LINEAGEHUB_ARTIFACTS"] = args.artifacts
    settings = Settings()
    with open_store(settings=settings) as store:  # fail fast, with a clear error
        uri = redact(store.uri)
    print(
        f"lineagehub {__version__}: GraphQL and GraphiQL at http://{args.host}:{args.port}/graphql"
        f" (store {uri}, artifacts {redact(settings.artifact_uri)})",
        file=sys.stderr,
    )
    uvicorn.run(
        "lineagehub.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        timeout_graceful_shutdown=10,
    )
    return 0


def _audit_key() -> bytes | None:
    from .config import Settings

    key = Settings().audit_key
    return key.get_secret_value().encode("utf-8") if key is not None else None


def _entry_text(e: Any) -> str:
    return (
        f"  seq {e.seq}  {e.time}  actor={e.actor}  action={e.action}  target={e.target}\n"
        f"  payload {e.payload_digest}\n  prev    {e.prev_hash}\n  hash    {e.hash}"
    )


def cmd_audit_verify(args: argparse.Namespace, store: GraphStore) -> int:
    from dataclasses import asdict

    result = store.verify_audit()
    head = store.audit_head()
    data: dict[str, Any] = {
        "ok": result.ok,
        "checked": result.checked,
        "head": asdict(head) if head is not None else None,
        "firstBadSeq": result.first_bad_seq,
        "kind": result.kind,
        "problem": result.problem,
        "entry": None,
    }
    if result.ok:
        where = f"head seq {head.seq} {head.hash}" if head is not None else "empty log"
        _emit(args, data, f"audit log intact: {result.checked} entries ({where})")
        return 0
    bad = result.first_bad_seq or 1
    found = store.read_audit(bad - 1, 1)
    entry = found[0] if found else None
    data["entry"] = asdict(entry) if entry is not None else None
    lines = [
        f"audit log TAMPERED at seq {result.first_bad_seq} ({result.kind}): {result.problem}",
        f"{result.checked} entries verified before it",
    ]
    if entry is not None:
        label = "first bad entry" if entry.seq == bad else "next entry after the gap"
        lines += [f"{label}:", _entry_text(entry)]
    _emit(args, data, "\n".join(lines))
    return EXIT_TAMPERED


def cmd_audit_export(args: argparse.Namespace, store: GraphStore) -> int:
    from .audit import export_jsonl

    result = export_jsonl(store, args.output, _audit_key())
    data = {"file": args.output, **result.to_dict()}
    signed = "signed" if result.signed else "unsigned (set LINEAGEHUB_AUDIT_KEY to sign)"
    _emit(
        args,
        data,
        f"exported {result.count} audit entries to {args.output} (head seq {result.seq}, {signed})",
    )
    return 0


def cmd_audit_verify_export(args: argparse.Namespace) -> int:
    from .audit import verify_export

    result = verify_export(args.file, _audit_key())
    data = {"file": args.file, **result.to_dict()}
    if result.ok:
        sig = (
            "signature verified"
            if result.signature_verified
            else "signature not checked (no LINEAGEHUB_AUDIT_KEY)"
        )
        _emit(args, data, f"export intact: {result.checked} entries, {sig}")
        return 0
    at = f" at seq {result.first_bad_seq}" if result.first_bad_seq is not None else ""
    _emit(args, data, f"export TAMPERED{at} ({result.kind}): {result.problem}")
    return EXIT_TAMPERED


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store", metavar="URI", help="graph store URI (default: LINEAGEHUB_STORE or embedded)"
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")

    parser = argparse.ArgumentParser(
        prog="lineagehub", description="LineageHub: model-management metadata as lineage."
    )
    parser.add_argument("--version", action="version", version=f"lineagehub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("doctor", parents=[common], help="check the store and show what it holds")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser(
        "example", parents=[common], help="write a small example lineage graph and trace it"
    )
    p.set_defaults(func=cmd_example)

    p = sub.add_parser("lineage", parents=[common], help="trace lineage from one or more nodes")
    p.add_argument("ids", nargs="+", metavar="ID", help="node ids to start from")
    direction = p.add_mutually_exclusive_group()
    direction.add_argument(
        "--upstream", dest="direction", action="store_const", const="UPSTREAM",
        help="what it came from (default)",
    )  # fmt: skip
    direction.add_argument(
        "--downstream", dest="direction", action="store_const", const="DOWNSTREAM",
        help="what depends on it",
    )  # fmt: skip
    direction.add_argument(
        "--both", dest="direction", action="store_const", const="BOTH", help="both ways"
    )
    p.set_defaults(direction="UPSTREAM")
    p.add_argument("--depth", type=int, default=3, help="levels to follow (default 3)")
    p.add_argument("--max-nodes", type=int, default=5000, help="node budget (default 5000)")
    p.add_argument(
        "--edge-kind", action="append", metavar="KIND", help="follow only these kinds (repeat)"
    )
    p.add_argument("--all-edges", action="store_true", help="also follow grouping edges (PART_OF)")
    p.set_defaults(func=cmd_lineage)

    p = sub.add_parser("audit", help="verify or export the tamper-evident audit log")
    audit = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    a = audit.add_parser(
        "verify", parents=[common], help="check the audit chain (exit 7 when tampered)"
    )
    a.set_defaults(func=cmd_audit_verify)
    a = audit.add_parser(
        "export", parents=[common], help="write the audit log as JSON lines, with a checkpoint"
    )
    a.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="file to write (replaced whole)"
    )
    a.set_defaults(func=cmd_audit_export)
    a = audit.add_parser(
        "verify-export",
        help="check an exported copy without the store (chain, checkpoint, signature)",
    )
    a.add_argument("file", metavar="FILE", help="the exported JSON lines file")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a.set_defaults(func=cmd_audit_verify_export, needs_store=False)

    p = sub.add_parser("serve", help="serve the GraphQL API (GraphiQL at /graphql)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--store", metavar="URI", help="graph store URI (default: configured)")
    p.add_argument("--artifacts", metavar="URI", help="artifact store URI (default: configured)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    p.set_defaults(func=cmd_serve, json=False, needs_store=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not getattr(args, "needs_store", True):
            return int(args.func(args))
        with open_store(args.store) as store:
            return int(args.func(args, store))
    except HubError as e:
        if args.json:
            print(json.dumps({"error": e.to_dict()}), file=sys.stderr)
        else:
            print(f"lineagehub: error [{e.code}]: {e.message}", file=sys.stderr)
        return EXIT_CODES.get(e.code, 1)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `lineagehub ... | head`: the reader left; that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
