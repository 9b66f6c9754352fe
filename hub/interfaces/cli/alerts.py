"""``lineagehub alerts list|ack``: monitoring alerts, and acknowledging one."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from lineagehub.graph.model import to_iso
from lineagehub.interfaces.cli.common import (
    _jsonable,
    _print_json,
    _table,
    _text,
    _when,
    make_console,
)

if TYPE_CHECKING:
    from lineagehub.ingest.client import Client
    from lineagehub.vocabulary import Alert

_STATE_STYLE = {
    "firing": "red bold",
    "pending": "yellow",
    "acknowledged": "cyan",
    "resolved": "dim",
}


def alert_json(a: Alert) -> dict[str, Any]:
    return {
        "id": a.id,
        "rule": a.rule,
        "state": a.state.value,
        "severity": a.severity.value,
        "deployment": a.deployment,
        "model_version": a.model_version,
        "fired_at": to_iso(a.fired_at),
        "resolved_at": to_iso(a.resolved_at) if a.resolved_at else None,
        "acknowledged_by": a.acknowledged_by,
        "silenced_until": to_iso(a.silenced_until) if a.silenced_until else None,
        "source": a.source,
        "values": a.values,
        "labels": a.labels,
        "message": a.message,
    }


def cmd_alerts_list(args: argparse.Namespace, client: Client) -> int:
    alerts = client.alerts(args.deployment, args.state, args.limit)
    if args.json:
        _print_json(_jsonable({"alerts": [alert_json(a) for a in alerts]}))
        return 0
    table = _table(
        None, "alert", "rule", "state", "severity", "deployment", "version", "fired", "resolved",
        ids=("alert", "deployment"),
    )  # fmt: skip
    for a in alerts:
        table.add_row(
            _text(a.id),
            _text(a.rule),
            _text(a.state.value, _STATE_STYLE.get(a.state.value, "")),
            _text(a.severity.value),
            _text(a.deployment),
            _text(a.model_version),
            _text(_when(a.fired_at)),
            _text(_when(a.resolved_at)),
        )
    console = make_console()
    console.print(table)
    console.print(f"{len(alerts)} alert{'s' if len(alerts) != 1 else ''}")
    return 0


def cmd_alerts_ack(args: argparse.Namespace, client: Client) -> int:
    alert = client.acknowledge_alert(args.alert, args.comment)
    if args.json:
        _print_json(_jsonable(alert_json(alert)))
    else:
        print(f"{alert.id} acknowledged by {alert.acknowledged_by} ({alert.rule})")
    return 0


def register(sub: Any, hub: argparse.ArgumentParser) -> None:
    """Add the ``alerts`` command group (``hub``: --store / --url and --json)."""
    p = sub.add_parser("alerts", help="monitoring alerts: list, acknowledge")
    alerts = p.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    a = alerts.add_parser("list", parents=[hub], help="alerts, newest first")
    a.add_argument("--deployment", metavar="DEPLOYMENT", help="only this deployment's alerts")
    a.add_argument(
        "--state", help="pending, firing, acknowledged, resolved, or open (all but resolved)"
    )
    a.add_argument("--limit", type=int, default=100, metavar="N", help="at most N (100)")
    a.set_defaults(func=cmd_alerts_list, needs_client=True)
    a = alerts.add_parser("ack", parents=[hub], help="acknowledge a firing alert")
    a.add_argument("alert", metavar="ALERT_ID")
    a.add_argument("--comment", metavar="TEXT", help="why, or who is on it (audited)")
    a.set_defaults(func=cmd_alerts_ack, needs_client=True)
