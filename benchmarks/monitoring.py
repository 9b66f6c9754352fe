#!/usr/bin/env python
"""Monitoring: how fast the serving side aggregates, how fast the hub computes drift, and how
its statistics compare with Evidently's on the same data (when ``evidently`` is installed).

1. Ingest: ``Monitor.log_predictions`` on an embedded hub (the aggregation in the serving
   process; reports are not part of it), 30 features (25 numeric, 5 categorical), in batches
   of 1, 100 and 10,000 rows; rows per second. Goal: >= 200,000 rows/s aggregated.
2. Drift: 100 features x 24 windows (hourly windows of a day, 2,000 predictions each):
   every window's drift (what the hub computes when a window is reported: 2,400 feature
   tests) and the day's drift (the 24 sketches merged, 100 tests: what ``monitor status``
   and ``Deployment.monitoring`` compute). Goal: <= 100 ms.
3. Side by side with Evidently (``pip install evidently``): the same reference and one
   shifted window as raw data, Evidently's PSI, K-S, Jensen-Shannon and Wasserstein (normed)
   per numeric feature and chi-square per categorical one, against ours from the sketches;
   time of each, and agreement (the drift verdicts, the correlation of the values).

    python benchmarks/monitoring.py            # all three; --json for machine-readable output
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lineagehub.ingest.client import Client
from lineagehub.ingest.datasets import fingerprint
from lineagehub.services.monitoring import (
    drift_report,
    merge_sketches,
    reference_features,
)

NUMERIC, CATEGORICAL = 25, 5
PLANS = np.array(["basic", "pro", "team", "enterprise"])


def frame(rows: int, numeric: int, categorical: int, shift: float, seed: int) -> pd.DataFrame:
    """Synthetic features: numeric ones normal with different scales; categorical ones of
    four values; ``shift`` moves a third of the numeric ones by that many standard deviations
    and tilts the categories."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for i in range(numeric):
        scale = 1 + i % 5
        moved = shift if i % 3 == 0 else 0.0
        data[f"num_{i:03d}"] = rng.normal(i + moved * scale, scale, rows)
    p = np.array([0.4, 0.3, 0.2, 0.1])
    tilted = np.array([0.25, 0.25, 0.25, 0.25]) if shift else p
    for i in range(categorical):
        data[f"cat_{i:03d}"] = rng.choice(PLANS, rows, p=tilted if i % 2 == 0 else p)
    return pd.DataFrame(data)


def deployed(folder: Path, reference: pd.DataFrame) -> Client:
    client = Client(f"sqlite:///{folder / 'hub.db'}", artifacts=f"file://{folder / 'artifacts'}")
    with client.start_run("train", project="bench", capture=False) as run:
        run.log_dataset(reference, name="reference", namespace="bench")
        run.log_model({"w": 1}, name="model")
    client.deploy("model/1", "prod")
    return client


def ingest(folder: Path, seconds: float) -> dict[str, Any]:
    reference = frame(20_000, NUMERIC, CATEGORICAL, 0, 0)
    client = deployed(folder, reference)
    out: dict[str, Any] = {}
    try:
        for batch_size in (1, 100, 10_000):
            mon = client.monitor("model", flush_interval=None, instance=f"bench-{batch_size}")
            batch = frame(batch_size, NUMERIC, CATEGORICAL, 0, 1)
            preds = np.ones(batch_size, dtype=int)
            rows, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                mon.log_predictions(batch, preds)
                rows += batch_size
            elapsed = time.perf_counter() - start
            flush_start = time.perf_counter()
            mon.flush()
            out[str(batch_size)] = {
                "rows_per_s": rows / elapsed,
                "us_per_call": elapsed / (rows / batch_size) * 1e6,
                "flush_ms": (time.perf_counter() - flush_start) * 1000,
            }
            assert not mon.rejected, mon.rejected
            mon._stop.set()
    finally:
        client.close()
    return out


def sketches(folder: Path, features: int, windows: int, rows: int) -> tuple[Any, list[Any]]:
    """The reference bins of ``features`` features and ``windows`` window sketches, made by
    the real monitor (its windows as it would report them)."""
    numeric, categorical = features - features // 5, features // 5
    reference = frame(20_000, numeric, categorical, 0, 0)
    ref = reference_features(fingerprint(reference).profile)
    client = deployed(folder, reference)
    try:
        mon = client.monitor("model", flush_interval=None, window=3600, max_windows=windows)
        t0 = 1_772_323_200  # 2026-03-01T00:00:00Z
        for w in range(windows):
            live = frame(rows, numeric, categorical, 0.5 if w >= windows // 2 else 0, w + 1)
            mon.log_predictions(
                live, np.ones(rows, dtype=int), timestamps=np.full(rows, t0 + 3600 * w)
            )
        found = [mon._sketch(mon._windows[s]) for s in sorted(mon._windows)]
        mon._stop.set()
    finally:
        client.close()
    return ref, found


def best_of(fn: Any, rounds: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def drift(folder: Path, rounds: int) -> dict[str, Any]:
    ref, found = sketches(folder, 100, 24, 2_000)
    per_window, reports = best_of(lambda: [drift_report(ref, s) for s in found], rounds)
    merged_time, merged = best_of(lambda: drift_report(ref, merge_sketches(found)), rounds)
    merge_only, _ = best_of(lambda: merge_sketches(found), rounds)
    drifted = [sum(d["state"] == "drift" for d in r.values()) for r in reports]
    return {
        "features": 100,
        "windows": 24,
        "every_window_ms": per_window * 1000,
        "per_feature_test_us": per_window / (100 * 24) * 1e6,
        "day_merged_ms": merged_time * 1000,
        "merge_only_ms": merge_only * 1000,
        "drifted_per_window": drifted,
        "drifted_in_the_day": sum(d["state"] == "drift" for d in merged.values()),
    }


def evidently_side_by_side(folder: Path, rounds: int) -> dict[str, Any]:
    """Evidently's statistics on the raw data against ours on the sketches."""
    os.environ.setdefault("DO_NOT_TRACK", "1")  # no usage telemetry from Evidently
    try:
        import evidently
        from evidently import DataDefinition, Dataset, Report
        from evidently.metrics import ValueDrift
    except ImportError as e:  # not installed, or not importable next to this pandas
        return {"skipped": f"evidently cannot be imported: {e}"}
    numeric, categorical = 20, 5
    reference = frame(20_000, numeric, categorical, 0, 0)
    current = frame(2_000, numeric, categorical, 0.3, 1)
    ref = reference_features(fingerprint(reference).profile)
    client = deployed(folder, reference)
    mon = client.monitor("model", flush_interval=None)
    mon.log_predictions(
        current, np.ones(len(current), dtype=int), timestamps=np.zeros(len(current))
    )
    (sketch,) = [mon._sketch(w) for w in mon._windows.values()]
    mon._stop.set()
    client.close()
    num_cols = [c for c in reference if c.startswith("num_")]
    cat_cols = [c for c in reference if c.startswith("cat_")]
    definition = DataDefinition(numerical_columns=num_cols, categorical_columns=cat_cols)
    ev_ref = Dataset.from_pandas(reference, data_definition=definition)
    ev_cur = Dataset.from_pandas(current, data_definition=definition)
    methods = {
        "psi": "psi",
        "ks": "ks",
        "jensen_shannon": "jensenshannon",
        "wasserstein": "wasserstein",
    }

    def run_evidently() -> dict[str, dict[str, float]]:
        metrics = [ValueDrift(column=c, method=m) for c in num_cols for m in methods.values()]
        metrics += [ValueDrift(column=c, method="chisquare") for c in cat_cols]
        result = Report(metrics).run(ev_cur, ev_ref).dict()
        values: dict[str, dict[str, float]] = {}
        for m in result["metrics"]:
            config = m.get("config") or {}
            col, method = config.get("column"), config.get("method")
            values.setdefault(col, {})[method] = float(m["value"])
        return values

    ev_time, ev = best_of(run_evidently, rounds)
    ours_time, ours = best_of(lambda: drift_report(ref, sketch), rounds)
    rows = []
    for col in num_cols:
        for ours_key, ev_key in methods.items():
            mine = ours[col].get("p_value" if ours_key == "ks" else ours_key)
            rows.append((col, ours_key, mine, ev.get(col, {}).get(ev_key)))
    for col in cat_cols:
        rows.append((col, "chi2", ours[col].get("p_value"), ev.get(col, {}).get("chisquare")))
    agreement: dict[str, Any] = {}
    for stat in ("psi", "ks", "jensen_shannon", "wasserstein", "chi2"):
        pairs = [(a, b) for _, s, a, b in rows if s == stat and a is not None and b is not None]
        if len(pairs) < 3:
            continue
        a, b = zip(*pairs)
        if stat in ("ks", "chi2"):  # p-values: do the verdicts (p < 0.05) agree?
            same = sum((x < 0.05) == (y < 0.05) for x, y in pairs)
            agreement[stat] = {"verdicts_agree": f"{same}/{len(pairs)}"}
        else:
            agreement[stat] = {
                "correlation": float(np.corrcoef(a, b)[0, 1]),
                "median_ratio_ours_to_evidently": statistics.median(x / y for x, y in pairs if y),
            }
    return {
        "evidently_version": evidently.__version__,
        "features": numeric + categorical,
        "rows": {"reference": len(reference), "current": len(current)},
        "evidently_ms": ev_time * 1000,
        "lineagehub_ms": ours_time * 1000,
        "agreement": agreement,
        "values": [
            {"feature": c, "statistic": s, "lineagehub": a, "evidently": b} for c, s, a, b in rows
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per ingest measurement")
    parser.add_argument("--rounds", type=int, default=5, help="best of N for the drift timings")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "a").mkdir()
        (root / "b").mkdir()
        (root / "c").mkdir()
        result = {
            "ingest": ingest(root / "a", args.seconds),
            "drift": drift(root / "b", args.rounds),
            "evidently": evidently_side_by_side(root / "c", max(1, args.rounds // 2)),
        }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print("ingest (30 features, in process):")
    for size, r in result["ingest"].items():
        print(
            f"  batches of {int(size):>6,}: {r['rows_per_s']:>12,.0f} rows/s  "
            f"{r['us_per_call']:>10,.1f} µs/call  flush {r['flush_ms']:.1f} ms"
        )
    d = result["drift"]
    print(
        f"drift, {d['features']} features x {d['windows']} windows: every window "
        f"{d['every_window_ms']:.1f} ms ({d['per_feature_test_us']:.1f} µs per feature test), "
        f"the day merged {d['day_merged_ms']:.1f} ms (merge {d['merge_only_ms']:.1f} ms); "
        f"drifted per window {d['drifted_per_window']}"
    )
    ev = result["evidently"]
    if "skipped" in ev:
        print(f"side by side skipped: {ev['skipped']}")
    else:
        print(
            f"evidently {ev['evidently_version']}: {ev['features']} features, "
            f"{ev['evidently_ms']:.1f} ms; lineagehub {ev['lineagehub_ms']:.1f} ms"
        )
        for stat, a in ev["agreement"].items():
            print(f"  {stat}: {a}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
