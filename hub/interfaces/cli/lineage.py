"""Lineage and exports: ``lineage`` and ``export`` (a trace to a file, or the whole graph)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from lineagehub.files import write_atomic
from lineagehub.graph import ConfigError, Direction, GraphStore, Node, Subgraph, ValidationError
from lineagehub.graph.model import parse_time
from lineagehub.interfaces.cli.common import (
    _print_json,
    _write_output,
    lineage_edge_kinds,
    progress_bar,
    render_tree,
    safe_text,
    subgraph_json,
    working,
)
from lineagehub.services.export import DEFAULT_COLLAPSE_ABOVE, export_lineage, format_for_path

if TYPE_CHECKING:
    from lineagehub.ingest.client import Client


def _trace(args: argparse.Namespace, client: Client) -> Subgraph:
    kinds = args.edge_kind or (None if not args.all_edges else [*lineage_edge_kinds(), "PART_OF"])
    as_of = parse_time(args.as_of, "--as-of") if args.as_of is not None else None
    up = args.upstream_depth if args.upstream_depth is not None else args.depth
    down = args.downstream_depth if args.downstream_depth is not None else args.depth
    return client.lineage(
        args.refs,
        args.direction,
        up,
        down,
        node_kinds=args.node_kind,
        edge_kinds=kinds,
        stop_at=args.stop_at,
        pass_through=args.pass_through,
        as_of=as_of,
        max_nodes=args.max_nodes,
    )


_IMAGES = ("svg", "png", "pdf")


def _format(args: argparse.Namespace, path: str) -> str:
    """The export format: --format (checked by the export), else the file's suffix. A file
    named for a picture format written in another (``--format svg -o x.png``) is refused: a
    viewer would not open it; ``--format prov -o x.json`` is fine (PROV is JSON)."""
    if args.format is not None:
        fmt = str(args.format)
        try:
            named = format_for_path(path) if path != "-" else None
        except ValidationError:
            named = None  # a suffix of no format: the user's own
        if named is not None and named != fmt and (named in _IMAGES or fmt in _IMAGES):
            raise ValidationError(
                f"-o {path!r:.200} names a {named} file, but --format is {fmt}: name the "
                f"file for its format (.{fmt}) or leave --format out",
                field="output",
            )
        return fmt
    if path == "-":
        raise ValidationError("give --format when writing to stdout", field="format")
    return format_for_path(path)


def _export_lineage(
    args: argparse.Namespace, sub: Subgraph, path: str, policies: Mapping[Any, Any]
) -> int:
    fmt = _format(args, path)
    focus = sub.roots
    if path == "-" and sys.stdout.isatty() and fmt in ("png", "pdf"):
        raise ValidationError(f"{fmt} is binary: write it to a file with -o", field="output")
    collapse = DEFAULT_COLLAPSE_ABOVE if args.collapse_above is None else args.collapse_above
    data = export_lineage(
        sub,
        fmt,
        focus=focus,
        cluster=args.cluster,
        collapse_above=None if collapse == 0 else collapse,
        title=args.title,
        policies=policies,
        context_nodes=args.context_nodes,
    )
    _write_output(path, data)
    summary = {
        "file": None if path == "-" else path,
        "format": fmt,
        "nodes": len(sub.nodes),
        "edges": len(sub.edges),
        "truncated": sub.truncated,
    }
    if path != "-":
        if args.json:
            _print_json(summary)
        elif not getattr(args, "quiet", False):
            cut = " (truncated: raise --depth or --max-nodes)" if sub.truncated else ""
            print(f"wrote {path} ({fmt}): {len(sub.nodes)} nodes, {len(sub.edges)} edges{cut}")
    return 0


def _trace_and_export(args: argparse.Namespace, client: Client, path: str) -> int:
    # A file that cannot be written, or a format not known, is said before the trace: on a
    # large graph the trace and the drawing take a while.
    _format(args, path)
    if path != "-" and not Path(path).parent.is_dir():
        folder = str(Path(path).parent)
        raise ValidationError(f"cannot write {path}: no folder {folder!r}", field="output")
    with working("tracing and drawing the lineage…", args.json or path == "-"):
        return _export_lineage(args, _trace(args, client), path, client.registry_policies)


def cmd_lineage(args: argparse.Namespace, client: Client) -> int:
    if args.output is not None or args.format is not None:
        return _trace_and_export(args, client, args.output or "-")
    sub = _trace(args, client)
    if args.json:
        _print_json(subgraph_json(sub))
    else:
        print("\n".join(safe_text(line) for line in render_tree(sub).split("\n")))
    return 0


def cmd_export(args: argparse.Namespace, client: Client) -> int:
    if args.all:
        if args.refs:
            raise ValidationError("export --all takes no references", field="refs")
        suffix = Path(args.output or "").suffix.lower()
        if getattr(args, "format", None) not in (None, "jsonl") or suffix not in (
            "",
            ".jsonl",
            ".json",
        ):
            # it writes JSON lines only: all.svg holding JSON lines was exit 0
            raise ValidationError(
                "export --all writes the whole store as JSON lines: -o FILE.jsonl, no other "
                "--format (a picture or data of part of it: give references instead of --all)",
                field="format",
            )
        if client.store is None:
            through = "--url" if getattr(args, "url", None) else "LINEAGEHUB_URL (set here)"
            raise ConfigError(
                f"export --all reads the store itself, and {through} points this command at a "
                "server: give --store (the embedded store)"
            )
        return _export_all(args, client.store)
    if not args.refs:
        raise ValidationError("give the references to export, or --all", field="refs")
    return _trace_and_export(args, client, args.output)


def _node_line(node: Node) -> dict[str, Any]:
    return {
        "type": "node",
        "id": node.id,
        "label": node.label,
        "props": node.props,
        "created_at": node.created_at.isoformat() if node.created_at else None,
        "updated_at": node.updated_at.isoformat() if node.updated_at else None,
    }


def _edge_line(e: Any) -> dict[str, Any]:
    return {
        "type": "edge",
        "id": e.id,
        "source": e.source,
        "target": e.target,
        "kind": e.kind,
        "props": e.props,
        "event_time": e.event_time.isoformat() if e.event_time else None,
        "ingested_at": e.ingested_at.isoformat() if e.ingested_at else None,
        "asserted_by": e.asserted_by,
    }


def _line(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(data, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


EXPORT_PAGE = 1000


def _export_all(args: argparse.Namespace, store: GraphStore) -> int:
    """Every node, then every edge, as JSON lines. Edges are read page by page of node ids as
    the edges leaving them: each edge has one source, so each appears exactly once."""
    path = args.output
    if path == "-":
        raise ValidationError("export --all writes a file: give -o FILE.jsonl", field="output")
    total = store.count_nodes()
    counts = {"nodes": 0, "edges": 0}

    def write(f: IO[bytes]) -> None:
        with (
            tempfile.TemporaryFile() as edges,
            progress_bar("exporting nodes", total, args.json or args.quiet) as advance,
        ):
            after = None
            while True:
                page = store.find_nodes(None, None, None, after, EXPORT_PAGE)
                for node in page.items:
                    f.write(_line(_node_line(node)))
                ids = [n.id for n in page.items]
                leaving = store.neighbors(ids, Direction.UPSTREAM)  # edges from these sources
                found = sorted(
                    (a.edge for adj in leaving.values() for a in adj), key=lambda e: e.id
                )
                for edge in found:
                    edges.write(_line(_edge_line(edge)))
                counts["nodes"] += len(ids)
                counts["edges"] += len(found)
                advance(len(ids))
                if page.next_cursor is None:
                    break
                after = page.next_cursor
            edges.seek(0)
            while chunk := edges.read(1 << 20):
                f.write(chunk)

    write_atomic(path, write, field="output")
    if args.json:
        _print_json({"file": path, "format": "jsonl", **counts})
    elif not args.quiet:
        print(f"wrote {path}: {counts['nodes']} nodes, {counts['edges']} edges")
    return 0


def _lineage_options(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--upstream-depth", type=int, metavar="N", help="with --both: levels up")
    p.add_argument("--downstream-depth", type=int, metavar="N", help="with --both: levels down")
    p.add_argument("--max-nodes", type=int, default=5000, help="node budget (default 5000)")
    p.add_argument(
        "--edge-kind", action="append", metavar="KIND", help="follow only these kinds (repeat)"
    )
    p.add_argument(
        "--node-kind", action="append", metavar="KIND", help="enter only these kinds (repeat)"
    )
    p.add_argument(
        "--stop-at", action="append", metavar="KIND", help="show but do not expand (repeat)"
    )
    p.add_argument(
        "--pass-through",
        action="append",
        metavar="KIND",
        help="walk through without counting a level (repeat; e.g. Run)",
    )
    p.add_argument("--as-of", metavar="TIME", help="the graph as the hub knew it then (ISO 8601)")
    p.add_argument("--all-edges", action="store_true", help="also follow grouping edges (PART_OF)")
    p.add_argument(
        "--format",
        metavar="FMT",
        help="dot, svg, png, pdf, mmd, graphml, json, prov or openlineage (default: from -o)",
    )
    p.add_argument(
        "--cluster",
        action="store_true",
        help="box the runs of each experiment (and what they made) in pictures",
    )
    p.add_argument(
        "--context-nodes",
        action="store_true",
        help="pictures: draw agents, environments and commits as nodes "
        "(default: folded into the runs' labels)",
    )
    p.add_argument(
        "--collapse-above",
        type=int,
        metavar="N",
        help="pictures: above N nodes, one node per experiment's runs (default 60; 0: never)",
    )
    p.add_argument("--title", metavar="TEXT", help="a caption for pictures")
