"""``lineagehub monitor status DEPLOYMENT``: a deployment's drift and performance, per feature,
with a sparkline per window."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lineagehub.graph.model import parse_time, to_iso
from lineagehub.interfaces.cli.common import (
    _jsonable,
    _num,
    _print_json,
    _table,
    _text,
    make_console,
)

if TYPE_CHECKING:
    from lineagehub.ingest.client import Client
    from lineagehub.services.monitoring import MonitoringSummary

SPARKS = "▁▂▃▄▅▆▇█"
_STATE_STYLE = {"drift": "red bold", "ok": "green", "insufficient_data": "yellow"}


def sparkline(values: Sequence[float | None], zero: bool = True) -> str:
    """One character per value, its height between 0 (or, ``zero=False``, the smallest value)
    and the largest; ``·`` for no value."""
    present = [v for v in values if v is not None]
    top = max(present, default=0.0)
    low = 0.0 if zero else min(present, default=0.0)
    out = []
    for v in values:
        if v is None:
            out.append("·")
        elif top > low:
            out.append(SPARKS[min(int((v - low) / (top - low) * (len(SPARKS) - 1)), 7)])
        else:
            out.append(SPARKS[0])
    return "".join(out)


def summary_json(s: MonitoringSummary) -> dict[str, Any]:
    return _jsonable(
        {
            "deployment": s.deployment_id,
            "from": to_iso(s.start) if s.start else None,
            "to": to_iso(s.end) if s.end else None,
            "sample_count": s.sample_count,
            "windows": [
                {
                    "id": w.id,
                    "start": to_iso(w.start),
                    "end": to_iso(w.end),
                    "instance": w.instance,
                    "model_version": w.model_version,
                    "sample_count": w.sample_count,
                    "metrics": w.metrics,
                }
                for w in s.windows
            ],
            "drift": s.drift,
            "performance": s.performance,
            "rejected": s.rejected,
        }
    )


def cmd_monitor_status(args: argparse.Namespace, client: Client) -> int:
    start = parse_time(args.from_, "--from") if args.from_ else None
    end = parse_time(args.to, "--to") if args.to else None
    summary = client.monitoring(args.deployment, start, end)
    if args.json:
        _print_json(summary_json(summary))
        return 0
    console = make_console()
    windows = summary.windows
    versions = sorted({w.model_version for w in windows if w.model_version})
    console.print(
        f"{summary.deployment_id}: {len(windows)} window{'s' if len(windows) != 1 else ''}, "
        f"{summary.sample_count} predictions"
        + (f", serving {', '.join(versions)}" if versions else "")
        + (f", reference {windows[-1].reference}" if windows and windows[-1].reference else "")
    )
    if windows:
        counts = [float(w.sample_count or 0) for w in windows]
        console.print(f"predictions per window  {sparkline(counts)}")
    table = _table(
        "drift", "feature", "state", "test", "p (adj.)", "PSI", "JS", "Wasserstein", "n",
        "PSI per window", ids=("feature",),
    )  # fmt: skip
    for name, d in sorted(summary.drift.items()):
        per_window = [((w.drift or {}).get(name) or {}).get("psi") for w in windows]
        table.add_row(
            _text(name),
            _text(d["state"], _STATE_STYLE.get(d["state"], "")),
            _text(d.get("test")),
            _text(_num(d.get("p_adjusted"))),
            _text(_num(d.get("psi"))),
            _text(_num(d.get("jensen_shannon"))),
            _text(_num(d.get("wasserstein"))),
            _text(d.get("count")),
            _text(sparkline(per_window)),
        )
    if summary.drift:
        console.print(table)
    else:
        console.print("drift: no feature sketched on a reference in these windows")
    perf = summary.performance
    if perf:
        t = _table(f"performance ({perf['task']}, {perf['count']} labelled)", "metric", "live",
                   "evaluation", "delta", "per window")  # fmt: skip
        for k in ("accuracy", "f1", "auc", "mae", "rmse"):
            if perf.get(k) is None:
                continue
            series = [((w.performance or {}).get(k)) for w in windows]
            t.add_row(
                _text(k),
                _text(_num(perf[k])),
                _text(_num(perf["baseline"].get(k))),
                _text(_num(perf["delta"].get(k))),
                _text(sparkline(series, zero=False)),
            )
        console.print(t)
    if summary.rejected:
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(summary.rejected.items()))
        console.print(f"rejected: {rejected}")
    return 0


def register(sub: Any, hub: argparse.ArgumentParser) -> None:
    """Add the ``monitor`` command group (``hub``: --store / --url and --json)."""
    p = sub.add_parser("monitor", help="a deployment's monitoring: drift and performance")
    monitor = p.add_subparsers(dest="monitor_command", required=True, metavar="ACTION")
    a = monitor.add_parser(
        "status", parents=[hub], help="drift per feature and performance, with sparklines"
    )
    a.add_argument("deployment", metavar="DEPLOYMENT", help="its id, name or name@environment")
    a.add_argument("--from", dest="from_", metavar="TIME", help="windows starting at or after")
    a.add_argument("--to", metavar="TIME", help="windows starting before")
    a.set_defaults(func=cmd_monitor_status, needs_client=True)
