"""The ``lineagehub`` command.

Commands that read or write the hub work on an embedded store (``--store URI``, default the
configured one) or on a hub server (``--url URL``, default ``LINEAGEHUB_URL``) through the SDK's
:class:`~lineagehub.ingest.client.Client`, so both answer the same. Human output is rich tables
(no colour when not a terminal or with ``NO_COLOR``; never cut ids short when piped);
``--json`` prints machine-readable JSON on stdout instead.

Exit codes scripts can rely on: 0 success, 1 unexpected error, 2 bad usage or invalid input,
3 not found, 4 configuration error, 5 store or server unavailable or failing, 6 conflict,
7 tampering found (``audit verify``, ``audit verify-export``: the audit log or an export of
it fails verification), 8 refused by a promotion policy (``promote``, ``approve``).
Errors are one line on stderr (``--json``: a JSON object with ``code`` and ``message``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from lineagehub import __version__, open_store
from lineagehub.files import write_atomic
from lineagehub.graph import (
    ConfigError,
    Direction,
    GraphStore,
    HubError,
    Node,
    NotFoundError,
    Subgraph,
    ValidationError,
    redact,
)
from lineagehub.graph.model import parse_time
from lineagehub.services.export import DEFAULT_COLLAPSE_ABOVE, export_lineage, format_for_path

if TYPE_CHECKING:
    from rich.console import Console

    from lineagehub.ingest.client import Client
    from lineagehub.vocabulary import ModelVersion, Run

EXIT_CODES = {
    "VALIDATION": 2,
    "NOT_FOUND": 3,
    "CONFIG": 4,
    "BACKEND": 5,
    "BACKEND_UNAVAILABLE": 5,
    "CONFLICT": 6,
    "INTEGRITY": 7,
    "POLICY": 8,
}
EXIT_TAMPERED = 7
EXIT_REFUSED = 8


def lineage_edge_kinds() -> list[str]:
    """Every edge kind but the grouping ones: what a lineage trace follows by default."""
    from lineagehub.vocabulary import LINEAGE_EDGE_KINDS

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
        print("\n".join(safe_text(line) for line in text.split("\n")))


# Characters that must never reach a terminal as they are: C0 and C1 controls (ESC starts
# escape sequences that recolour, retitle or rewrite the screen; CR overwrites a line; BEL
# rings) and the bidirectional overrides (U+202E shows "evil\u202etxt.exe" as "evilexe.txt").
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe_text(text: str) -> str:
    """``text`` fit for a terminal: every control and bidirectional override character is
    shown as its escape (``\\x1b``, ``\\u202e``), so stored values cannot act on the
    terminal or disguise themselves."""
    return _UNSAFE.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


def cmd_doctor(args: argparse.Namespace, store: GraphStore) -> int:
    from lineagehub.vocabulary import NodeKind

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


def cmd_example(args: argparse.Namespace, store: GraphStore) -> int:
    from lineagehub.samples.example import build_example

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

    from lineagehub.config import Settings

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
        "lineagehub.interfaces.server:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        timeout_graceful_shutdown=10,
    )
    return 0


def _audit_key() -> bytes | None:
    from lineagehub.config import Settings

    key = Settings().audit_key
    if key is not None and not key.get_secret_value().strip():
        raise ConfigError(
            "LINEAGEHUB_AUDIT_KEY is set but empty: set a key to sign and verify exports, "
            "or unset it for unsigned ones"
        )
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


@contextmanager
def progress_bar(what: str, total: int | None, quiet: bool) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr (only on a terminal, and not when ``quiet``); yields
    ``advance(n=1, description=None)``, which also replaces the bar's text when given one."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    quiet = quiet or not sys.stderr.isatty()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=make_console(stderr=True),
        disable=quiet,
        transient=True,
    ) as progress:
        task = progress.add_task(what, total=total)

        def advance(n: int = 1, description: str | None = None) -> None:
            if description is None:
                progress.advance(task, n)
            else:
                progress.update(task, advance=n, description=description)

        yield advance


def cmd_audit_export(args: argparse.Namespace, store: GraphStore) -> int:
    from lineagehub.services.audit import export_jsonl

    head = store.audit_head()
    with progress_bar("exporting the audit log", head.seq if head else 0, args.json) as advance:
        result = export_jsonl(store, args.output, _audit_key(), advance)
    data = {"file": args.output, **result.to_dict()}
    signed = "signed" if result.signed else "unsigned (set LINEAGEHUB_AUDIT_KEY to sign)"
    _emit(
        args,
        data,
        f"exported {result.count} audit entries to {args.output} (head seq {result.seq}, {signed})",
    )
    return 0


def cmd_audit_verify_export(args: argparse.Namespace) -> int:
    from lineagehub.services.audit import verify_export

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


# --- output ---------------------------------------------------------------------------------

#: Width of the console when output is not a terminal: wide enough that no table is squeezed,
#: so ids are never wrapped or cut when piped (nothing here expands to the full width).
PIPE_WIDTH = 10_000


def make_console(stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr): colour only on a terminal and without NO_COLOR;
    when piped, no wrapping and no ellipses."""
    from rich.console import Console

    file = sys.stderr if stderr else sys.stdout
    tty = file.isatty()
    return Console(
        file=file,
        width=None if tty else PIPE_WIDTH,
        no_color=bool(os.environ.get("NO_COLOR")) or None,
        highlight=False,
        soft_wrap=not tty,
        emoji=False,
    )


def _table(title: str | None, *columns: str, ids: Sequence[str] = ()) -> Any:
    """A table whose ``ids`` columns never wrap or shorten (an id is copied as a whole)."""
    from rich import box
    from rich.table import Table

    class SafeTable(Table):
        """Cells given as text are made :func:`safe_text` (and never read as markup)."""

        def add_row(self, *renderables: Any, **kwargs: Any) -> None:
            from rich.text import Text

            cells = [
                Text(safe_text(r))
                if isinstance(r, str)
                else Text(safe_text(r.plain), style=r.style)
                if isinstance(r, Text) and _UNSAFE.search(r.plain)
                else r
                for r in renderables
            ]
            super().add_row(*cells, **kwargs)

    table = SafeTable(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False
    )
    for col in columns:
        if col in ids:
            table.add_column(col, no_wrap=True, overflow="ignore", min_width=len(col))
        else:
            table.add_column(col, overflow="fold")
    return table


def _text(value: Any, style: str = "") -> Any:
    from rich.text import Text

    return Text("-" if value is None or value == "" else safe_text(str(value)), style=style)


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.6g}"


def _value(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _num(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _when(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    seconds = max((end - start).total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{sec:02d}s" if hours else f"{minutes}m{sec:02d}s"


_STATUS_STYLE = {"FINISHED": "green", "FAILED": "red", "KILLED": "red", "RUNNING": "cyan"}
_STAGE_STYLE = {"Production": "green bold", "Staging": "yellow", "Archived": "dim"}


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str, allow_nan=False))


def _jsonable(value: Any) -> Any:
    """Non-finite floats as None: --json output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# --- the hub: an embedded store or a server ------------------------------------------------


@contextmanager
def hub_client(args: argparse.Namespace) -> Iterator[Client]:
    """The SDK client for ``--url`` (a server), ``--store`` (an embedded store) or, with
    neither, the settings (``LINEAGEHUB_URL``, else ``LINEAGEHUB_STORE``). Embedded, the
    registry applies the promotion policies ``LINEAGEHUB_POLICIES`` names, as a server does."""
    from lineagehub.config import Settings
    from lineagehub.ingest.client import Client

    settings = Settings()
    url = getattr(args, "url", None)
    if url is not None and not url.lower().startswith(("http://", "https://")):
        raise ConfigError(f"--url must be an http:// or https:// URL, got {url!r}")
    remote = url is not None or (args.store is None and bool(settings.url))
    policies = None
    if not remote and settings.policies is not None:
        from lineagehub.services.registry import load_policies

        policies = load_policies(settings.policies)
    client = Client(url or args.store, settings=settings, registry_policies=policies)
    try:
        yield client
    finally:
        client.close()


def parse_where(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        where = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValidationError(f"--where is not valid JSON: {e}", field="where") from None
    if not isinstance(where, dict):
        raise ValidationError("--where must be a JSON object", field="where")
    return where


def _and(*filters: Mapping[str, Any] | None) -> dict[str, Any] | None:
    parts = [dict(f) for f in filters if f]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}


# --- runs -----------------------------------------------------------------------------------


def _run_json(run: Run) -> dict[str, Any]:
    data: dict[str, Any] = _jsonable(run.model_dump(mode="json"))
    return data


# The registry's own activities: every promotion, approval, alias move and deployment is a
# run, which would crowd out the training runs people look for; `--kind` (or a --where on
# kind) shows them.
_HIDDEN_RUN_KINDS = ("promote", "deploy")


def _metric_columns(
    items: Sequence[tuple[Mapping[str, Any], Mapping[str, Any], str | None]],
    limit: int,
    policies: Mapping[Any, Any],
) -> list[str]:
    """The metric columns of a table of runs or versions ``(metrics, tags, model)``: their
    headline metrics first (lineagehub.services.headline, the rule pictures and GraphQL use; the most
    common first), then the others by name; at most ``limit``."""
    from collections import Counter

    from lineagehub.services.headline import headline_metric, policy_metrics

    heads: Counter[str] = Counter()
    for metrics, tags, model in items:
        found = headline_metric({"metrics": metrics, "tags": tags}, policy_metrics(policies, model))
        if found is not None:
            heads[found[0]] += 1
    first = [k for k, _ in heads.most_common()]
    rest = sorted({k for metrics, _, _ in items for k in metrics} - set(first))
    return (first + rest)[:limit]


def _names_key(where: Any, key: str) -> bool:
    """Whether a filter says anything about ``key`` (at any nesting of $and/$or/$not)."""
    if isinstance(where, Mapping):
        return any(k == key or _names_key(v, key) for k, v in where.items())
    if isinstance(where, list):
        return any(_names_key(v, key) for v in where)
    return False


def cmd_runs_list(args: argparse.Namespace, client: Client) -> int:
    from lineagehub.vocabulary import RunKind, RunStatus, member

    simple: dict[str, Any] = {}
    if args.project:
        simple["project"] = args.project
    if args.experiment:
        simple["experiment"] = args.experiment
    if args.kind and args.kind.lower() != "all":
        simple["kind"] = member(RunKind, args.kind.lower(), "kind").value
    where = parse_where(args.where)
    if not args.kind and not _names_key(where, "kind"):
        simple["kind"] = {"$nin": list(_HIDDEN_RUN_KINDS)}
    if args.status:
        try:
            simple["status"] = RunStatus(args.status.upper()).value
        except ValueError:
            known = ", ".join(s.value for s in RunStatus)
            raise ValidationError(
                f"--status must be one of {known}, got {args.status!r}", field="status"
            ) from None
    where = _and(simple, where)
    order = args.order_by or ["-started_at"]
    runs, cursor = client.search_runs(where, order, limit=args.limit)
    if args.json:
        _print_json({"runs": [_run_json(r) for r in runs], "next_cursor": cursor})
        return 0
    keys = _metric_columns([(r.metrics, r.tags, None) for r in runs], args.metrics, {})
    table = _table(
        None, "id", "name", "kind", "experiment", "status", "started", "duration", *keys,
        ids=("id",),
    )  # fmt: skip
    now = datetime.now(timezone.utc)
    for r in runs:
        end = r.ended_at or (now if r.status.value == "RUNNING" else None)
        table.add_row(
            _text(r.id),
            _text(r.name),
            _text(r.kind.value),
            _text(r.experiment),
            _text(r.status.value, _STATUS_STYLE.get(r.status.value, "")),
            _text(_when(r.started_at)),
            _text(_duration(r.started_at, end)),
            *(_text(_num(r.metrics.get(k))) for k in keys),
        )
    console = make_console()
    if runs:
        console.print(table)
    more = " (more: raise --limit)" if cursor else ""
    console.print(f"{len(runs)} run{'s' if len(runs) != 1 else ''}{more}")
    return 0


def _run_links(client: Client, run_id: str) -> dict[str, Any]:
    """What a run used and generated, and its code and environment (one lineage hop)."""
    sub = client.lineage(
        [run_id],
        "BOTH",
        1,
        1,
        edge_kinds=["USED", "GENERATED_BY", "RAN_CODE", "RAN_IN"],
    )
    inputs, outputs = [], []
    code = environment = None
    for e in sorted(sub.edges, key=lambda e: (e.kind, e.id)):
        if e.kind == "USED" and e.source == run_id and e.target in sub.nodes:
            node = sub.nodes[e.target].node
            inputs.append(_link(node, e.props.get("role")))
        elif e.kind == "GENERATED_BY" and e.target == run_id and e.source in sub.nodes:
            outputs.append(_link(sub.nodes[e.source].node, None))
        elif e.kind == "RAN_CODE" and e.source == run_id:
            code = e.target
        elif e.kind == "RAN_IN" and e.source == run_id:
            environment = e.target
    return {"inputs": inputs, "outputs": outputs, "code": code, "environment": environment}


def _link(node: Node, role: Any) -> dict[str, Any]:
    return {"id": node.id, "label": node.label, "name": display_name(node) or None, "role": role}


def cmd_runs_show(args: argparse.Namespace, client: Client) -> int:
    run = client.get_run(args.run)
    links = _run_links(client, run.id)
    if args.json:
        _print_json({"run": _run_json(run), **links})
        return 0
    from rich.table import Table

    console = make_console()
    end = run.ended_at
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(no_wrap=True, overflow="ignore")
    rows: list[tuple[str, Any]] = [
        ("id", run.id),
        ("name", run.name),
        ("kind", run.kind.value),
        ("status", _text(run.status.value, _STATUS_STYLE.get(run.status.value, ""))),
        ("project", run.project),
        ("experiment", run.experiment),
        ("parent", run.parent),
        ("user", run.user),
        ("host", run.host),
        ("entry point", run.entry_point),
        ("started", _when(run.started_at)),
        ("ended", _when(end)),
        ("duration", _duration(run.started_at, end)),
        ("code", links["code"]),
        ("environment", links["environment"]),
        ("error", run.error),
        ("description", run.description),
    ]
    for key, value in rows:
        if value is not None:
            facts.add_row(key, value if not isinstance(value, str) else _text(value))
    console.print(facts)
    sections: list[tuple[str, Mapping[str, Any]]] = [
        ("params", run.params),
        ("metrics", run.metrics),
        ("tags", run.tags),
    ]
    for title, values in sections:
        if values:
            table = _table(title, "key", "value", ids=("key",))
            for k in sorted(values):
                table.add_row(_text(k), _text(_value(values[k])))
            console.print(table)
    for title in ("inputs", "outputs"):
        if links[title]:
            table = _table(title, "id", "kind", "name", "role", ids=("id",))
            for item in links[title]:
                table.add_row(
                    _text(item["id"]),
                    _text(item["label"]),
                    _text(item["name"]),
                    _text(item["role"]),
                )
            console.print(table)
    return 0


# --- models ---------------------------------------------------------------------------------

_ALL = 1000  # one page of the largest size: a model with more versions shows the newest


def _mv_json(mv: ModelVersion) -> dict[str, Any]:
    data: dict[str, Any] = _jsonable(mv.model_dump(mode="json"))
    data["id"] = mv.node_id
    return data


def _model_summary(client: Client, model: Any) -> dict[str, Any]:
    versions, _ = client.search_model_versions({"model": model.name}, "-version", limit=_ALL)
    stages: dict[str, list[int]] = {}
    aliases: dict[str, int] = {}
    for mv in versions:
        if mv.stage.value != "None":
            stages.setdefault(mv.stage.value, []).append(mv.version)
        for alias in mv.aliases:
            aliases[alias] = mv.version
    return {
        "id": model.node_id,
        "name": model.name,
        "owner": model.owner,
        "task": model.task,
        "description": model.description,
        "versions": len(versions),
        "latest": versions[0].version if versions else None,
        "stages": {k: sorted(v) for k, v in sorted(stages.items())},
        "aliases": dict(sorted(aliases.items())),
    }


def cmd_models_list(args: argparse.Namespace, client: Client) -> int:
    models, cursor = client.list_models(parse_where(args.where), "name", limit=args.limit)
    summaries = [_model_summary(client, m) for m in models]
    if args.json:
        _print_json({"models": summaries, "next_cursor": cursor})
        return 0
    table = _table(None, "model", "latest", "versions", "stages", "aliases", "task", ids=("model",))
    for m in summaries:
        stages = ", ".join(
            f"{s}: " + ",".join(f"v{v}" for v in vs) for s, vs in m["stages"].items()
        )
        aliases = ", ".join(f"{a}→v{v}" for a, v in m["aliases"].items())
        table.add_row(
            _text(m["name"]),
            _text(f"v{m['latest']}" if m["latest"] else None),
            _text(m["versions"]),
            _text(stages),
            _text(aliases),
            _text(m["task"]),
        )
    console = make_console()
    console.print(table)
    console.print(f"{len(summaries)} model{'s' if len(summaries) != 1 else ''}")
    return 0


def _is_version_ref(ref: str) -> bool:
    # model:NAME always names a model, even one whose name looks like a version ("amb/1")
    return not ref.startswith("model:") and (ref.startswith("mv:") or "@" in ref or "/" in ref)


def _history_json(e: Any) -> dict[str, Any]:
    return {
        "change": e.change,
        "version": e.version,
        "alias": e.alias,
        "from": e.from_,
        "to": e.to,
        "actor": e.actor,
        "reason": e.reason,
        "at": e.at.isoformat() if e.at else None,
        "run_id": e.run_id,
        "approvals": list(e.approvals),
    }


def cmd_models_show(args: argparse.Namespace, client: Client) -> int:
    ref: str = args.ref
    console = make_console()
    mv = None
    if _is_version_ref(ref):
        try:
            mv = client.get_model_version(ref)
        except NotFoundError:
            # "amb/1": version 1 of amb, else the model named amb/1
            if ref.startswith("mv:") or "@" in ref or not client.list_models({"name": ref})[0]:
                raise
    if mv is not None:
        history = [_history_json(e) for e in client.model_history(mv.model)]
        mine = [h for h in history if h["version"] == mv.version]
        if args.json:
            _print_json({"version": _mv_json(mv), "history": mine})
            return 0
        from rich.table import Table

        facts = Table.grid(padding=(0, 2))
        facts.add_column(style="bold", no_wrap=True)
        facts.add_column(no_wrap=True, overflow="ignore")
        for key, value in [
            ("id", mv.node_id),
            ("model", mv.model),
            ("version", mv.version),
            ("stage", _text(mv.stage.value, _STAGE_STYLE.get(mv.stage.value, ""))),
            ("aliases", ", ".join(mv.aliases) or None),
            ("flavor", mv.flavor),
            ("artifact", mv.artifact_digest),
            ("description", mv.description),
        ]:
            if value is not None:
                facts.add_row(key, _text(value) if not hasattr(value, "style") else value)
        console.print(facts)
        if mv.metrics:
            table = _table("metrics", "key", "value", ids=("key",))
            for k in sorted(mv.metrics):
                table.add_row(_text(k), _text(_num(mv.metrics[k])))
            console.print(table)
        table = _table("history", "at", "change", "from", "to", "actor", "reason")
        for h in mine:
            table.add_row(
                _text(h["at"][:19].replace("T", " ") if h["at"] else None),
                _text(h["change"] + (f" {h['alias']}" if h["alias"] else "")),
                _text(h["from"]),
                _text(h["to"]),
                _text(h["actor"]),
                _text(h["reason"]),
            )
        console.print(table if mine else "no stage or alias changes")
        return 0
    name = ref.removeprefix("model:")
    models, _ = client.list_models({"name": name}, limit=1)
    if not models:
        raise NotFoundError(f"no model {name!r}", ids=[ref])
    summary = _model_summary(client, models[0])
    versions, _ = client.search_model_versions({"model": name}, "-version", limit=_ALL)
    if args.json:
        _print_json({"model": summary, "versions": [_mv_json(v) for v in versions]})
        return 0
    keys = _metric_columns(
        [(v.metrics, v.tags, v.model) for v in versions], args.metrics, client.registry_policies
    )
    title = f"model {name}" + (f" ({summary['task']})" if summary["task"] else "")
    table = _table(title, "version", "id", "stage", "aliases", "flavor", *keys, ids=("id",))
    for v in versions:
        table.add_row(
            _text(v.version),
            _text(v.node_id),
            _text(v.stage.value, _STAGE_STYLE.get(v.stage.value, "")),
            _text(", ".join(v.aliases)),
            _text(v.flavor),
            *(_text(_num(v.metrics.get(k))) for k in keys),
        )
    console.print(table)
    return 0


# --- lineage and exports --------------------------------------------------------------------


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


def _format(args: argparse.Namespace, path: str) -> str:
    """The export format: --format (checked by the export), else the file's suffix."""
    if args.format is not None:
        return str(args.format)
    if path == "-":
        raise ValidationError("give --format when writing to stdout", field="format")
    return format_for_path(path)


def _write_output(path: str, data: str | bytes) -> None:
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if path == "-":
        sys.stdout.flush()
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is None:  # pragma: no cover - a text-only stdout
            sys.stdout.write(raw.decode("utf-8", errors="replace"))
        else:
            buffer.write(raw)
            buffer.flush()
        return
    write_atomic(path, lambda f: f.write(raw), field="output")


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


@contextmanager
def working(message: str, quiet: bool) -> Iterator[None]:
    """A spinner with ``message`` on stderr while slow work runs (only on a terminal, and not
    when ``quiet``)."""
    if quiet or not sys.stderr.isatty():
        yield
        return
    with make_console(stderr=True).status(message):
        yield


def _trace_and_export(args: argparse.Namespace, client: Client, path: str) -> int:
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
        if client.store is None:
            raise ConfigError(
                "export --all reads the store itself: give --store (the embedded store), not --url"
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


# --- compare --------------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace, client: Client) -> int:
    refs: list[str] = args.refs
    runs = [r.startswith("run:") for r in refs]
    if all(runs):
        return _compare_runs(args, client, refs)
    if any(runs):
        raise ValidationError("compare runs with runs, or two model versions", field="refs")
    if len(refs) != 2:
        raise ValidationError("compare exactly two model versions", field="refs")
    return _compare_versions(args, client, refs[0], refs[1])


def _marked_row(table: Any, differs: bool, key: str, cells: Iterable[str | None]) -> None:
    """A row whose first cell is ``≠`` (and the whole row highlighted) where values differ."""
    style = "bold yellow" if differs else ""
    table.add_row(
        _text("≠" if differs else " ", style),
        _text(key, style),
        *(_text(cell, style) for cell in cells),
    )


def _compare_runs(args: argparse.Namespace, client: Client, ids: list[str]) -> int:
    c = client.compare_runs(ids)
    if args.json:
        _print_json(_jsonable({"kind": "runs", **c}))
        return 0
    console = make_console()
    two = len(ids) == 2
    table = _table("params", "", "key", *c["runs"], ids=("key", *c["runs"]))
    for p in c["params"]:
        cells = [_value(v) if v is not None else None for v in p["values"]]
        _marked_row(table, p["differs"], p["key"], cells)
    console.print(table)
    cols = [*c["runs"], *(["Δ"] if two else [])]
    table = _table("metrics (last value)", "", "key", *cols, ids=("key", *c["runs"]))
    for m in c["metrics"]:
        cells = [_num(v) for v in m["last"]]
        if two:
            a, b = m["last"]
            cells.append(f"{b - a:+.6g}" if a is not None and b is not None else None)
        _marked_row(table, m["differs"], m["key"], cells)
    console.print(table)
    if c["inputs"]:
        table = _table("inputs (roles per run)", "", "id", *c["runs"], ids=("id",))
        for i in c["inputs"]:
            roles = [",".join(r) or None for r in i["roles"]]
            _marked_row(table, not i["used_by_all"], i["id"], roles)
        console.print(table)
    table = _table("code and environment", "", "what", *c["runs"], ids=("what",))
    for what, values, differs in (
        ("code", c["code"], c["code_differs"]),
        ("environment", c["environments"], c["environment_differs"]),
    ):
        _marked_row(table, differs, what, values)
    console.print(table)
    return 0


def _compare_versions(args: argparse.Namespace, client: Client, a: str, b: str) -> int:
    d = client.compare_model_versions(a, b)
    if args.json:
        _print_json(_jsonable({"kind": "model_versions", **d}))
        return 0
    console = make_console()
    console.print(f"{d['a']} → {d['b']}" + ("  (truncated walk)" if d["truncated"] else ""))
    table = _table("params", "", "key", d["a"], d["b"], ids=("key", d["a"], d["b"]))
    for key, va, vb in d["params_changed"]:
        table.add_row(_text("≠", "bold yellow"), _text(key), _text(_value(va)), _text(_value(vb)))
    for key, vb in d["params_added"]:
        table.add_row(_text("+", "green"), _text(key), _text(None), _text(_value(vb)))
    for key, va in d["params_removed"]:
        table.add_row(_text("-", "red"), _text(key), _text(_value(va)), _text(None))
    console.print(table if table.row_count else "params: no change")
    table = _table("metrics", "key", d["a"], d["b"], "Δ", ids=("key",))
    for key, va, vb, delta in d["metric_deltas"]:
        style = "green" if delta and delta > 0 else "red" if delta and delta < 0 else ""
        shown = f"{delta:+.6g}" if delta is not None else None
        table.add_row(_text(key), _text(_num(va)), _text(_num(vb)), _text(shown, style))
    console.print(table if table.row_count else "metrics: none")
    table = _table("upstream differences", "", "kind", "id", ids=("id",))
    for name in ("datasets", "commits", "environments"):
        for node_id in d[name]["added"]:
            table.add_row(_text("+", "green"), _text(name), _text(node_id))
        for node_id in d[name]["removed"]:
            table.add_row(_text("-", "red"), _text(name), _text(node_id))
    # The training runs' own code and environment, which the sets above may not show (both
    # commits can be upstream of both versions): never "same code" when they differ.
    for what, a_value, b_value in _trainers_context(client, d["a"], d["b"]):
        table.add_row(_text("≠", "bold yellow"), _text(f"training {what}"), _text(a_value))
        table.add_row(_text("", ""), _text(""), _text(b_value))
    console.print(table if table.row_count else "upstream: same data, code and environment")
    return 0


def _trainers_context(client: Client, a: str, b: str) -> list[tuple[str, str, str]]:
    """``(what, a's, b's)`` for the code and the environment of the runs that generated
    model versions ``a`` and ``b``, where they differ."""
    sub = client.lineage([a, b], "UPSTREAM", 1, edge_kinds=["GENERATED_BY"])
    trainers: list[str | None] = []
    for version in (a, b):
        made_by = sorted(
            e.target for e in sub.edges if e.source == version and e.kind == "GENERATED_BY"
        )
        trainers.append(made_by[0] if made_by else None)
    if None in trainers or trainers[0] == trainers[1]:
        return []
    both = client.compare_runs([t for t in trainers if t is not None])
    return [
        (what, str(values[0] or "-"), str(values[1] or "-"))
        for what, values, differs in (
            ("code", both["code"], both["code_differs"]),
            ("environment", both["environments"], both["environment_differs"]),
        )
        if differs
    ]


# --- the registry ---------------------------------------------------------------------------


def outcome_json(result: Any) -> dict[str, Any]:
    """A registry result as JSON: ``outcome`` is promoted, pending, refused or rejected."""
    from lineagehub.services.registry import (
        ModelPromoted,
        PolicyViolation,
        PromotionPending,
        PromotionRejected,
    )

    if isinstance(result, ModelPromoted):
        return {
            "outcome": "promoted",
            "version": result.version_id,
            "from_stage": result.from_stage,
            "to_stage": result.to_stage,
            "archived": list(result.archived),
            "approvals": list(result.approvals),
            "run_id": result.run_id,
        }
    if isinstance(result, PromotionPending):
        return {
            "outcome": "pending",
            "request_id": result.request_id,
            "version": result.version_id,
            "to_stage": result.to_stage,
            "approvals": list(result.approvals),
            "needed": result.needed,
        }
    if isinstance(result, PolicyViolation):
        return {
            "outcome": "refused",
            "version": result.version_id,
            "to_stage": result.to_stage,
            "rules": [
                {"rule": r.rule, "message": r.message, "expected": r.expected, "actual": r.actual}
                for r in result.rules
            ],
        }
    if isinstance(result, PromotionRejected):
        return {
            "outcome": "rejected",
            "request_id": result.request_id,
            "version": result.version_id,
            "to_stage": result.to_stage,
            "by": result.by,
            "reason": result.reason,
        }
    raise TypeError(f"not a registry result: {result!r}")  # pragma: no cover


def _show_outcome(args: argparse.Namespace, result: Any) -> int:
    data = outcome_json(result)
    code = EXIT_REFUSED if data["outcome"] == "refused" else 0
    if args.json:
        _print_json(_jsonable(data))
        return code
    console = make_console()
    outcome = data["outcome"]
    if outcome == "promoted":
        line = f"promoted {data['version']}: {data['from_stage']} → {data['to_stage']}"
        if data["approvals"]:
            line += f" (approved by {', '.join(data['approvals'])})"
        console.print(_text(line, "green"))
        for archived in data["archived"]:
            console.print(f"archived {archived}")
    elif outcome == "pending":
        got = len(data["approvals"])
        console.print(
            _text(
                f"pending: request {data['request_id']} to move {data['version']} to "
                f"{data['to_stage']} needs {data['needed'] - got} more approval(s) "
                f"({got}/{data['needed']})",
                "yellow",
            )
        )
        console.print(f"approve with: lineagehub approve {data['request_id']}")
    elif outcome == "rejected":
        console.print(f"rejected request {data['request_id']} ({data['version']} to "
                      f"{data['to_stage']}) by {data['by']}: {data['reason']}")  # fmt: skip
    else:
        console.print(
            _text(
                f"refused: {data['version']} may not go to {data['to_stage']}; rules broken:",
                "red bold",
            )
        )
        table = _table(None, "rule", "message", "expected", "actual", ids=("rule",))
        for r in data["rules"]:
            table.add_row(
                _text(r["rule"]),
                _text(r["message"]),
                _text(_value(r["expected"]) if r["expected"] is not None else None),
                _text(_value(r["actual"]) if r["actual"] is not None else None),
            )
        console.print(table)
    return code


def cmd_promote(args: argparse.Namespace, client: Client) -> int:
    if args.alias is not None:
        mv = client.set_alias(args.ref, args.alias, args.reason)
        data = {"outcome": "aliased", "version": mv.node_id, "alias": args.alias,
                "aliases": list(mv.aliases)}  # fmt: skip
        if args.json:
            _print_json(data)
        else:
            make_console().print(_text(f"{args.alias} → {mv.node_id}", "green"))
        return 0
    return _show_outcome(args, client.request_promotion(args.ref, args.stage, args.reason or ""))


def cmd_approve(args: argparse.Namespace, client: Client) -> int:
    return _show_outcome(args, client.approve_promotion(args.request_id, args.comment))


def cmd_reject(args: argparse.Namespace, client: Client) -> int:
    return _show_outcome(args, client.reject_promotion(args.request_id, args.reason))


def _show_deployment(args: argparse.Namespace, d: Any, verb: str) -> int:
    data = {
        "outcome": verb,
        "deployment": d.id,
        "name": d.name,
        "environment": d.environment,
        "endpoint": d.endpoint,
        "status": d.status.value,
    }
    if args.json:
        _print_json(data)
    else:
        where = f" at {d.endpoint}" if d.endpoint else ""
        make_console().print(
            _text(f"{verb} {d.id}: {d.name} in {d.environment}{where} ({d.status.value})", "green")
        )
    return 0


def cmd_deploy(args: argparse.Namespace, client: Client) -> int:
    d = client.deploy(
        args.ref,
        args.environment,
        name=args.name,
        endpoint=args.endpoint,
        require_stage=args.require_stage,
        reason=args.reason,
    )
    return _show_deployment(args, d, "deployed")


def cmd_retire(args: argparse.Namespace, client: Client) -> int:
    return _show_deployment(args, client.retire_deployment(args.deployment, args.reason), "retired")


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


# --- demo -----------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """Real training on scikit-learn's bundled data, a governed promotion, a deployment and a
    lineage picture, all through the SDK into the (embedded) hub."""
    from lineagehub.config import Settings
    from lineagehub.samples.demo import (
        STEPS,
        clients,
        queries,
        render_hint,
        run_demo,
        write_policies,
    )

    out = Path(args.out) if args.out else Settings().data_dir / "demo"
    silent = args.json or args.quiet
    policy_file = write_policies(out)
    with (
        clients(args.store, args.artifacts, policy_file) as (trainer, reviewer),
        progress_bar("demo", STEPS, silent) as advance,
    ):

        def step(message: str) -> None:
            advance(1, f"{message:<48}")
            if not silent and not sys.stderr.isatty():  # no bar: one line per step
                print(f"demo: {message}", file=sys.stderr)

        result = run_demo(trainer, reviewer, out, step=step)
        result.policies = str(policy_file)
        assert trainer.store is not None
        store_uri = redact(trainer.store.uri)
        artifacts = redact(trainer.settings.artifact_uri)
    asked = queries(result)
    hint = render_hint([result.picture, result.impact_picture])
    if hint is not None and (args.json or args.quiet):
        print(f"lineagehub: {hint}", file=sys.stderr)  # a left-over step, even when quiet
    if args.serve:  # the server applies the demo's policies too
        os.environ["LINEAGEHUB_POLICIES"] = str(policy_file)
    if args.json:
        _print_json(
            _jsonable(
                {
                    "store": store_uri,
                    "artifacts": artifacts,
                    "result": result.to_dict(),
                    "queries": [{"question": q, "query": t} for q, t in asked],
                }
            )
        )
        return _serve_after_demo(args)
    if args.quiet:
        return _serve_after_demo(args)
    console = make_console()
    from lineagehub.services.headline import headline_metric

    def headline(version: str) -> str:
        found = headline_metric({"metrics": result.metrics[version]})
        return f"{found[0]}={found[1]:.4f}" if found is not None else "no metrics"

    lines = [
        f"Demo lineage written to {store_uri}",
        f"  raw extract      {result.raw}",
        f"  cleaned data     {result.clean}",
        *(f"  trained          {v}  {headline(v)}" for v in result.versions),
        f"  in Production    {result.best} (approved by the reviewer; alias champion;"
        f" {headline(result.best)})",
        f"  deployment       {result.deployment}",
        f"  pictures         {result.picture}, {result.impact_picture}",
        *([f"                   {hint}"] if hint is not None else []),
        f"  policies         {result.policies}  (LINEAGEHUB_POLICIES=this file: the server"
        " and the CLI apply them)",
        "",
        "Next: `lineagehub serve` and open http://127.0.0.1:8000/graphql, then try:"
        if not args.serve
        else f"Serving on http://{args.host}:{args.port}/graphql (Ctrl-C stops); try:",
    ]
    console.print("\n".join(lines), markup=False)
    for question, query in asked:
        console.print(f"\n# {question}", markup=False, style="bold")
        console.print(query, markup=False)
    console.print(
        "\nOr from the shell: lineagehub runs list --experiment breast-cancer · "
        f"lineagehub models show tumor-classifier · lineagehub lineage {result.deployment} "
        "--depth 8 -o lineage.svg",
        markup=False,
    )
    return _serve_after_demo(args)


def _serve_after_demo(args: argparse.Namespace) -> int:
    if not args.serve:
        return 0
    sys.stdout.flush()
    serve = argparse.Namespace(
        host=args.host,
        port=args.port,
        store=args.store,
        artifacts=args.artifacts,
        workers=1,
        log_level="info",
    )
    return cmd_serve(serve)


def build_parser() -> argparse.ArgumentParser:
    json_opt = argparse.ArgumentParser(add_help=False)
    json_opt.add_argument("--json", action="store_true", help="machine-readable output")
    common = argparse.ArgumentParser(add_help=False, parents=[json_opt])
    common.add_argument(
        "--store", metavar="URI", help="graph store URI (default: LINEAGEHUB_STORE or embedded)"
    )
    # Commands that go through the SDK: an embedded store or a hub server.
    hub = argparse.ArgumentParser(add_help=False, parents=[json_opt])
    where = hub.add_mutually_exclusive_group()
    where.add_argument(
        "--store", metavar="URI", help="graph store URI (default: LINEAGEHUB_STORE or embedded)"
    )
    where.add_argument(
        "--url",
        metavar="URL",
        help="a hub server, http(s)://host:port (default: LINEAGEHUB_URL when --store is absent)",
    )

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

    p = sub.add_parser(
        "demo",
        help="train three scikit-learn models on bundled data, promote one through approval, "
        "deploy it, draw its lineage",
    )
    p.add_argument("--store", metavar="URI", help="graph store URI (default: configured)")
    p.add_argument("--artifacts", metavar="URI", help="artifact store URI (default: configured)")
    p.add_argument(
        "--out", metavar="DIR", help="where the raw CSV and lineage.svg go (default: DATA_DIR/demo)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary")
    p.add_argument(
        "--serve", action="store_true", help="then serve the API, with the demo's policies"
    )
    p.add_argument("--host", default="127.0.0.1", help="with --serve: address (127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="with --serve: port (default 8000)")
    p.set_defaults(func=cmd_demo, needs_store=False)

    p = sub.add_parser("runs", help="list runs or show one")
    runs = p.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    r = runs.add_parser("list", parents=[hub], help="runs, filtered and ordered, newest first")
    r.add_argument("--project", help="only runs of this project")
    r.add_argument("--experiment", help="only runs of this experiment")
    r.add_argument(
        "--kind",
        help="train, evaluate, transform, promote, deploy, monitor or all "
        "(default: all but promote and deploy)",
    )
    r.add_argument("--status", help="RUNNING, FINISHED, FAILED or KILLED")
    r.add_argument("--where", metavar="JSON", help='a filter: \'{"metrics.auc": {"$gte": 0.9}}\'')
    r.add_argument(
        "--order-by", action="append", metavar="KEY",
        help='property path, "-" for descending (repeat; default -started_at)',
    )  # fmt: skip
    r.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    r.add_argument("--metrics", type=int, default=4, help="metric columns shown (default 4)")
    r.set_defaults(func=cmd_runs_list, needs_client=True)
    r = runs.add_parser("show", parents=[hub], help="one run: params, metrics, inputs, outputs")
    r.add_argument("run", metavar="RUN", help="the run id")
    r.set_defaults(func=cmd_runs_show, needs_client=True)

    p = sub.add_parser("models", help="list registered models or show one")
    models = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    m = models.add_parser("list", parents=[hub], help="models with latest version, stages, aliases")
    m.add_argument("--where", metavar="JSON", help='a filter: \'{"owner": "ann"}\'')
    m.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    m.set_defaults(func=cmd_models_list, needs_client=True)
    m = models.add_parser(
        "show", parents=[hub], help="a model's versions, or one version with its history"
    )
    m.add_argument(
        "ref", metavar="MODEL_OR_VERSION",
        help="churn or model:churn (a model); churn/3, churn@champion, mv:churn/3 (a version)",
    )  # fmt: skip
    m.add_argument("--metrics", type=int, default=4, help="metric columns shown (default 4)")
    m.set_defaults(func=cmd_models_show, needs_client=True)

    p = sub.add_parser(
        "lineage", parents=[hub], help="trace lineage from one or more nodes (or export it)"
    )
    p.add_argument("refs", nargs="+", metavar="REF", help="node ids or references to start from")
    _lineage_options(p)
    p.add_argument(
        "-o", "--output", metavar="FILE",
        help="write the trace as a file (format from --format or the suffix; - for stdout)",
    )  # fmt: skip
    p.set_defaults(func=cmd_lineage, needs_client=True)

    p = sub.add_parser(
        "export", parents=[hub], help="write a lineage trace, or the whole store, to a file"
    )
    p.add_argument("refs", nargs="*", metavar="REF", help="node ids or references to trace")
    _lineage_options(p)
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="file to write (- for stdout)"
    )
    p.add_argument(
        "--all", action="store_true",
        help="every node and edge of the store as JSON lines (embedded store only)",
    )  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_export, needs_client=True)

    p = sub.add_parser("compare", parents=[hub], help="compare runs, or two model versions")
    p.add_argument(
        "refs", nargs="+", metavar="REF",
        help="two or more run ids, or two model versions (churn/2 churn/3)",
    )  # fmt: skip
    p.set_defaults(func=cmd_compare, needs_client=True)

    p = sub.add_parser(
        "promote", parents=[hub], help="request a stage for a model version, or move an alias"
    )
    p.add_argument("ref", metavar="REF", help="the model version: churn/3, churn@champion")
    to = p.add_mutually_exclusive_group(required=True)
    to.add_argument("--stage", help="Staging, Production, Archived or None (policies apply)")
    to.add_argument("--alias", metavar="NAME", help="point this alias at the version")
    p.add_argument("--reason", help="why (kept in the history and the audit log)")
    p.set_defaults(func=cmd_promote, needs_client=True)

    p = sub.add_parser("approve", parents=[hub], help="approve a pending promotion request")
    p.add_argument("request_id", metavar="REQUEST_ID")
    p.add_argument("--comment", help="a note kept with the approval")
    p.set_defaults(func=cmd_approve, needs_client=True)

    p = sub.add_parser("reject", parents=[hub], help="reject a pending promotion request")
    p.add_argument("request_id", metavar="REQUEST_ID")
    p.add_argument("--reason", required=True, help="why")
    p.set_defaults(func=cmd_reject, needs_client=True)

    p = sub.add_parser(
        "deploy", parents=[hub], help="record that a model version is served in an environment"
    )
    p.add_argument("ref", metavar="REF", help="the model version: churn/3, churn@champion")
    p.add_argument(
        "--environment", "--env", required=True, metavar="ENV", help="e.g. production, staging"
    )
    p.add_argument("--name", help="the deployment's name (default: the model's name)")
    p.add_argument("--endpoint", metavar="URL", help="where it answers")
    p.add_argument(
        "--require-stage",
        metavar="STAGE",
        help="refuse (exit 8) unless the version is in this stage, e.g. Production",
    )
    p.add_argument("--reason", help="why (kept in the audit log)")
    p.set_defaults(func=cmd_deploy, needs_client=True)

    p = sub.add_parser("retire", parents=[hub], help="mark a deployment retired")
    p.add_argument("deployment", metavar="DEPLOYMENT_ID", help="deployment:...")
    p.add_argument("--reason", help="why (kept in the audit log)")
    p.set_defaults(func=cmd_retire, needs_client=True)

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


def _report(args: argparse.Namespace, code: str, message: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"error": {"code": code, "message": message}}), file=sys.stderr)
    else:
        print(f"lineagehub: error [{code}]: {message}", file=sys.stderr)


# Options whose values may start with "-" (a descending ordering): argparse would take
# ``--order-by -metrics.auc`` for two options, so such a value is joined to its option.
_DASH_VALUE_OPTIONS = frozenset({"--order-by"})


def _join_dash_values(argv: Sequence[str]) -> list[str]:
    """``--order-by -metrics.auc`` as ``--order-by=-metrics.auc``, so the spelling people
    type works; short options (``-o``, ``-q``) and ``--long`` ones are left alone."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) else None
        if (
            token in _DASH_VALUE_OPTIONS
            and value is not None
            and value.startswith("-")
            and not value.startswith("--")
            and len(value) > 2
        ):
            out.append(f"{token}={value}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(_join_dash_values(argv))
    try:
        if getattr(args, "needs_client", False):
            with hub_client(args) as client:
                return int(args.func(args, client))
        if not getattr(args, "needs_store", True):
            return int(args.func(args))
        with open_store(args.store) as store:
            return int(args.func(args, store))
    except HubError as e:
        if args.json:
            print(json.dumps({"error": e.to_dict()}, default=str), file=sys.stderr)
        else:
            message = " ".join(str(e.message).split())  # one line, whatever the message holds
            print(f"lineagehub: error [{e.code}]: {message}", file=sys.stderr)
        return EXIT_CODES.get(e.code, 1)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `lineagehub ... | head`: the reader left; that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
