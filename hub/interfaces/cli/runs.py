"""Runs: ``runs list``, ``runs show`` and ``compare`` (runs, or two model versions)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from lineagehub.graph import Node, ValidationError
from lineagehub.interfaces.cli.common import (
    _STATUS_STYLE,
    _and,
    _duration,
    _jsonable,
    _num,
    _print_json,
    _table,
    _text,
    _value,
    _when,
    display_name,
    make_console,
    parse_where,
)

if TYPE_CHECKING:
    from lineagehub.ingest.client import Client
    from lineagehub.vocabulary import Run


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
