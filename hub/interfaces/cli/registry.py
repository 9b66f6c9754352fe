"""The registry's actions: ``promote``, ``approve``, ``reject``, ``approvals list``,
``rollback``, ``deploy`` and ``retire``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from lineagehub.interfaces.cli.common import (
    EXIT_REFUSED,
    _jsonable,
    _print_json,
    _table,
    _text,
    _value,
    make_console,
)

if TYPE_CHECKING:
    from lineagehub.ingest.client import Client


def outcome_json(result: Any) -> dict[str, Any]:
    """A registry result as JSON: ``outcome`` is promoted, pending, refused or rejected."""
    from lineagehub.services.registry import (
        ModelPromoted,
        PromotionPending,
        PromotionRefused,
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
            "deployments": list(result.deployments),
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
    if isinstance(result, PromotionRefused):
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
        for deployment in data["deployments"]:
            console.print(f"deployment {deployment} retired or re-pointed (--deployments)")
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
    result = client.request_promotion(
        args.ref, args.stage, args.reason or "", on_deployments=args.deployments
    )
    return _show_outcome(args, result)


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


def pending_json(p: Any) -> dict[str, Any]:
    """A pending promotion request as JSON."""
    return {
        "request_id": p.request_id,
        "version": p.version_id,
        "to_stage": p.to_stage,
        "requested_by": p.requested_by,
        "reason": p.reason,
        "approvals": list(p.approvals),
        "needed": p.needed,
        "requested_at": p.requested_at.isoformat(),
    }


def cmd_approvals_list(args: argparse.Namespace, client: Client) -> int:
    pending = [pending_json(p) for p in client.pending_promotions(args.model, args.stage)]
    if args.json:
        _print_json({"pending": pending})
        return 0
    table = _table(
        None, "request", "version", "to", "requested by", "approvals", "reason", "requested at",
        ids=("request", "version"),
    )  # fmt: skip
    for p in pending:
        got = f"{len(p['approvals'])}/{p['needed']}"
        if p["approvals"]:
            got += f" ({', '.join(p['approvals'])})"
        table.add_row(
            _text(p["request_id"]),
            _text(p["version"]),
            _text(p["to_stage"]),
            _text(p["requested_by"]),
            _text(got),
            _text(p["reason"]),
            _text(p["requested_at"]),
        )
    console = make_console()
    console.print(table)
    n = len(pending)
    console.print(f"{n} pending request{'s' if n != 1 else ''}")
    return 0


def cmd_rollback(args: argparse.Namespace, client: Client) -> int:
    runs = client.rollback(
        args.model, args.stage_or_alias, args.reason, on_deployments=args.deployments
    )
    data = {
        "outcome": "rolled back",
        "model": args.model,
        "stage_or_alias": args.stage_or_alias,
        "run_ids": list(runs),
    }
    if args.json:
        _print_json(data)
        return 0
    console = make_console()
    console.print(_text(f"rolled back {args.model} {args.stage_or_alias}", "green"))
    for run_id in runs:
        console.print(f"recorded as {run_id}")
    return 0
