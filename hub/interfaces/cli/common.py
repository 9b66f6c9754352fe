"""What the command groups share: exit codes, output (rich tables, JSON, safe text),
the hub a command works on (an embedded store or a server), progress and lineage trees."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from lineagehub.files import write_atomic
from lineagehub.graph import ConfigError, Node, Subgraph, ValidationError
from lineagehub.graph.uri import sqlite_path

if TYPE_CHECKING:
    from rich.console import Console

    from lineagehub.ingest.client import Client


EXIT_CODES = {
    "VALIDATION": 2,
    "NOT_FOUND": 3,
    "CONFIG": 4,
    "UNAUTHENTICATED": 4,  # no, or a bad, LINEAGEHUB_TOKEN: the client's configuration
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
    # with `-o -` the file is what stdout carries: the summary goes beside it, to stderr
    to = sys.stderr if getattr(args, "output", None) == "-" else sys.stdout
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str), file=to)
    else:
        print("\n".join(safe_text(line) for line in text.split("\n")), file=to)


@contextmanager
def output_path(path: str) -> Iterator[str]:
    """Where to write ``-o path``: the path, or for ``-`` a temporary file whose bytes go to
    stdout once written (every ``-o`` takes ``-`` for stdout)."""
    if path != "-":
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="lineagehub-out-") as folder:
        target = os.path.join(folder, "out")
        yield target
        with open(target, "rb") as written:
            _write_output("-", written.read())


# Characters that must never reach a terminal as they are: C0 and C1 controls (ESC starts
# escape sequences that recolour, retitle or rewrite the screen; CR overwrites a line; BEL
# rings) and the bidirectional overrides (U+202E shows "evil\u202etxt.exe" as "evilexe.txt").
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe_text(text: str) -> str:
    """``text`` fit for a terminal: every control and bidirectional override character is
    shown as its escape (``\\x1b``, ``\\u202e``), so stored values cannot act on the
    terminal or disguise themselves."""
    return _UNSAFE.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


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


#: Width of the console when output is not a terminal: wide enough that no table is squeezed,
#: so ids are never wrapped or cut when piped (nothing here expands to the full width).
PIPE_WIDTH = 10_000


def make_console(stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr): colour only on a terminal and without NO_COLOR;
    when piped, no wrapping and no ellipses."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # the reader left (`| head`): main() ends with 0, as on every other path (rich's
            # own answer is exit 1, a failure under `set -o pipefail`)
            self.quiet = True
            raise BrokenPipeError

    file = sys.stderr if stderr else sys.stdout
    if file is None:  # started with the descriptor closed (`>&-`)
        raise ConfigError(f"standard {'error' if stderr else 'output'} is closed: nowhere to write")
    tty = file.isatty()
    return _Console(
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
    if args.store is not None and not args.store.strip():
        existing_store(args.store)  # refused: an empty --store is no store
    if not remote and args.store is not None:
        existing_store(args.store)
    policies = None
    if not remote and settings.policies is not None:
        from lineagehub.services.registry import load_policies

        policies = load_policies(settings.policies)
    client = Client(url or args.store, settings=settings, registry_policies=policies)
    try:
        yield client
    finally:
        client.close()


def existing_store(uri: str) -> None:
    """A ``--store`` SQLite file must be there: these commands read (or change) what a hub
    holds, and a mistyped path would otherwise make a new, empty store and answer from it."""
    if not uri.strip():
        raise ConfigError("--store is empty (an unset variable?): name a store, or leave it out")
    if not uri.startswith("sqlite:"):
        return
    path = sqlite_path(uri)
    if path is not None and not os.path.exists(path):
        raise ConfigError(
            f"--store {uri}: there is no store at {path} (a store is made by writing to it:"
            " the SDK, lineagehub example, import or user add)"
        )


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


@contextmanager
def working(message: str, quiet: bool) -> Iterator[None]:
    """A spinner with ``message`` on stderr while slow work runs (only on a terminal, and not
    when ``quiet``)."""
    if quiet or not sys.stderr.isatty():
        yield
        return
    with make_console(stderr=True).status(message):
        yield
