"""Monitoring end to end: a serving process's monitor, the windows it reports, drift and
performance read back, on both stores and in both SDK modes (a real uvicorn server)."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import fresh_store_uri
from http_server import HubServer

from lineagehub import Client, Settings, open_store
from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import Direction, NotFoundError, ValidationError
from lineagehub.interfaces.server import create_app
from lineagehub.services.monitoring import MonitoringService
from lineagehub.vocabulary import monitoring_window_id

T0 = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
HOUR = 3600


def training_frame(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "plan": rng.choice(["basic", "pro"], n, p=[0.7, 0.3]),
            "churned": rng.integers(0, 2, n),
        }
    )


def live_frame(n: int, shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(40 + shift, 10, n),
            "plan": rng.choice(["basic", "pro"], n, p=[0.7, 0.3]),
        }
    )


@contextlib.contextmanager
def hub(mode: str, store_backend: str, folder: Path) -> Iterator[tuple[Client, MonitoringService]]:
    """A client of a hub that has a trained, evaluated and deployed model (``churn`` in
    ``prod``), and the hub's monitoring service (to look at what was stored)."""
    folder.mkdir(parents=True, exist_ok=True)
    uri = fresh_store_uri(store_backend, folder)
    with contextlib.ExitStack() as stack:
        store = open_store(uri)
        stack.callback(store.close)
        artifacts = open_artifact_store(f"file://{folder / 'artifacts'}")
        if mode == "embedded":
            client = Client(store, artifacts=artifacts, settings=Settings(user="ann"))
        else:
            app = create_app(Settings(user="ann"), store=store, artifacts=artifacts)
            server = stack.enter_context(HubServer(app))
            client = Client(server.url, settings=Settings(user="ann"))
        stack.callback(client.close)
        with client.start_run("train", project="churn", capture=False) as run:
            run.log_dataset(training_frame(), name="customers", namespace="warehouse")
            run.log_metrics({"test_accuracy": 0.9, "test_f1": 0.85})
            run.log_model({"weights": [1, 2]}, name="churn")
        client.deploy("churn/1", "prod")
        yield client, MonitoringService(store)


@pytest.fixture(params=["embedded", "remote"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_windows_observe_the_deployment_with_drift_and_performance(
    mode: str, store_backend: str, tmp_path: Path
) -> None:
    with hub(mode, store_backend, tmp_path) as (client, store):
        mon = client.monitor("churn", flush_interval=None, instance="pod-a", window=HOUR)
        assert mon.reference.dataset_version is not None
        assert mon.reference.dataset_version.startswith("dsv:warehouse/customers@sha256:")
        # hour 1 like the training data, hour 2 shifted by two standard deviations
        for hour, shift in ((0, 0.0), (1, 20.0)):
            frame = live_frame(600, shift, seed=hour)
            ids = [f"{hour}-{i}" for i in range(600)]
            preds = np.arange(600) % 2
            ts = np.full(600, T0.timestamp() + hour * HOUR + 60)
            assert mon.log_predictions(frame, preds, ids=ids, timestamps=ts) == 600
            labels = preds.copy()
            labels[:60] = 1 - labels[:60]  # 90 % right
            assert mon.log_labels(ids, labels) == 600
        assert mon.flush() == 2
        assert mon.flush() == 0  # nothing changed since
        mon.close()

        dep = store.deployment("churn")
        found = store.windows(dep.id)
        assert [w.start for w in found] == [T0, T0 + timedelta(hours=1)]
        for w in found:
            assert w.id == monitoring_window_id(dep.id, "pod-a", w.start, HOUR)
            assert w.sample_count == 600 and w.model_version == "mv:churn/1"
            observed = store.store.neighbors([w.id], Direction.UPSTREAM, ["OBSERVED"])[w.id]
            assert [a.node.id for a in observed] == [dep.id]
        calm, shifted = found
        assert calm.drift is not None and shifted.drift is not None
        assert calm.drift["age"]["state"] == "ok" and shifted.drift["age"]["state"] == "drift"
        assert shifted.drift["plan"]["state"] == "ok"
        assert shifted.metrics["drift.age.psi"] > 1 > calm.metrics["drift.age.psi"]
        assert calm.performance is not None
        assert calm.performance["accuracy"] == pytest.approx(0.9)
        assert calm.performance["baseline"] == {"accuracy": 0.9, "f1": 0.85}
        summary = store.summary("churn", T0, T0 + timedelta(hours=2))
        assert summary.sample_count == 1200
        assert {k: v["state"] for k, v in summary.drift.items()}["age"] == "drift"


def test_a_restarted_process_adds_to_its_windows_and_nothing_counts_twice(
    mode: str, store_backend: str, tmp_path: Path
) -> None:
    with hub(mode, store_backend, tmp_path) as (client, service):
        ts = np.full(100, T0.timestamp() + 5)
        first = client.monitor("churn", flush_interval=None, instance="pod-a")
        first.log_predictions(live_frame(100, 0, 1), np.zeros(100), timestamps=ts)
        assert first.flush() == 1
        first.log_latency([0.01], timestamps=[T0.timestamp()])
        assert first.flush() == 1  # the whole window again: still 100 predictions
        first.close()
        second = client.monitor("churn", flush_interval=None, instance="pod-a")  # restarted
        second.log_predictions(live_frame(50, 0, 2), np.zeros(50), timestamps=ts[:50])
        assert second.flush() == 1
        other = client.monitor("churn", flush_interval=None, instance="pod-b")
        other.log_predictions(live_frame(30, 0, 3), np.zeros(30), timestamps=ts[:30])
        assert other.flush() == 1
        mine, theirs = (
            client.backend.monitoring.window(monitoring_window_id(first.deployment_id, i, T0, HOUR))
            for i in ("pod-a", "pod-b")
        )
        assert mine is not None and theirs is not None
        assert mine.sample_count == 150 and mine.feature_stats["latency"]["count"] == 1
        assert theirs.sample_count == 30
        window = monitoring_window_id(first.deployment_id, "pod-a", T0, HOUR)
        again = client.backend.monitoring.report_window(
            "churn", T0, T0 + timedelta(hours=1), mine.feature_stats, instance="pod-a"
        )
        assert again.id == window and again.sample_count == 150
        assert service.store.verify_audit().ok  # windows are observations, not audited records


def test_bad_input_is_a_counted_rejection_never_an_exception(
    store_backend: str, tmp_path: Path
) -> None:
    with hub("embedded", store_backend, tmp_path) as (client, service):
        with pytest.raises(NotFoundError):
            client.monitor("no-such-deployment", flush_interval=None)
        with pytest.raises(ValidationError, match="prediction_column"):
            client.monitor("churn", flush_interval=None, prediction_column="nope")
        mon = client.monitor("churn", flush_interval=None, prediction_column="churned")
        ts = np.full(3, T0.timestamp())
        frame = pd.DataFrame({"age": [30.0, np.nan, 50.0], "plan": ["pro", None, "gold"]})
        frame["colour"] = "red"  # not in the reference
        assert mon.log_predictions(frame, [1, 0, 1], ids=["a", "b", "c"], timestamps=ts) == 3
        assert mon.log_predictions(frame, [1, 0], timestamps=ts) == 0  # wrong shape
        assert mon.log_predictions("not data", [1]) == 0
        assert mon.log_predictions(frame, [[1, 2, 3]] * 3, timestamps=ts) == 0
        assert mon.log_predictions(frame, [1.0, np.nan, 0.0], timestamps=ts) == 3
        assert mon.log_labels(["a", "zzz"], [1, 0]) == 1
        assert mon.log_labels(["a"], [1]) == 0  # labelled already
        assert mon.log_labels(["b", "c"], [1]) == 0  # wrong shape
        assert mon.log_latency([-1.0, float("nan"), 0.2], timestamps=[T0.timestamp()] * 3) == 1
        assert mon.rejected == {
            "unknown_feature": 6,
            "invalid:shape": 1,
            "invalid:features": 1,
            "invalid:predictions": 1,
            "nan_prediction": 1,
            "unknown_id": 2,
            "invalid:labels": 1,
            "invalid_latency": 2,
        }
        assert mon.unknown_features == {"colour"}
        assert mon.flush() == 1
        (w,) = service.windows("churn")
        age = w.feature_stats["features"]["age"]
        assert age["missing"] == 2 and age["count"] == 6
        plan = w.feature_stats["features"]["plan"]
        assert plan["values"] == ["basic", "pro"] and plan["counts"] == [0, 2, 2]
        assert w.feature_stats["rejected"]["unknown_feature"] == 6
        strict = client.monitor("churn", flush_interval=None, strict=True)
        with pytest.raises(ValidationError, match="different lengths"):
            strict.log_predictions(frame, [1, 0], timestamps=ts)
        with pytest.raises(ValidationError, match="not in the reference"):
            strict.log_predictions(frame, [1, 0, 1], timestamps=ts)


def test_memory_is_bounded(tmp_path: Path) -> None:
    with hub("embedded", "sqlite", tmp_path) as (client, _):
        mon = client.monitor(
            "churn", flush_interval=None, max_windows=3, max_pending_labels=10, window=60
        )
        for minute in range(6):
            ids = [f"{minute}-{i}" for i in range(5)]
            ts = np.full(5, T0.timestamp() + 60 * minute)
            mon.log_predictions(live_frame(5, 0, minute), np.ones(5), ids=ids, timestamps=ts)
            if minute == 2:
                assert mon.flush() == 3  # reported windows are the first to go
        assert len(mon._windows) == 3
        assert len(mon._pending) == 10
        assert mon.rejected["label_forgotten"] == 20
        assert mon.dropped_windows == 0
        assert mon.log_labels(["0-0"], [1]) == 0  # forgotten: counted, not raised
        assert mon.rejected["unknown_id"] == 1


def test_background_reports_and_a_hub_that_goes_away_never_breaks_serving(
    tmp_path: Path,
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    artifacts = open_artifact_store(f"file://{tmp_path / 'artifacts'}")
    server = HubServer(create_app(Settings(user="ann"), store=store, artifacts=artifacts)).start()
    client = Client(server.url, settings=Settings(user="ann"))
    with client.start_run("train", project="churn", capture=False) as run:
        run.log_dataset(training_frame(), name="customers", namespace="warehouse")
        run.log_model({"w": 1}, name="churn")
    client.deploy("churn/1", "prod")
    mon = client.monitor("churn", flush_interval=0.05, instance="bg")
    mon.log_predictions(live_frame(10, 0, 0), np.ones(10))
    service = MonitoringService(store)
    deadline = time.monotonic() + 20
    while not service.windows("churn") and time.monotonic() < deadline:
        time.sleep(0.02)  # waiting for the background thread's report, not standing in for it
    assert service.windows("churn")[0].sample_count == 10
    server.stop()
    mon.log_predictions(live_frame(10, 0, 1), np.ones(10))  # the hub is gone: no exception
    assert mon.flush() == 0
    assert mon.errors >= 1 and isinstance(mon.last_error, Exception)
    mon._stop.set()  # close() would try once more; the windows stay counted in memory
    assert sum(w.features["age"].count for w in mon._windows.values()) == 20
    client.close()
    store.close()


def query(url: str, text: str, **variables: Any) -> dict[str, Any]:
    answer = httpx.post(f"{url}/graphql", json={"query": text, "variables": variables}).json()
    assert "errors" not in answer, answer
    return answer["data"]  # type: ignore[no-any-return]


def test_deployment_monitoring_in_graphql(store_backend: str, tmp_path: Path) -> None:
    with hub("remote", store_backend, tmp_path) as (client, _):
        mon = client.monitor("churn", flush_interval=None, instance="pod-a")
        for hour in range(3):
            ts = np.full(300, T0.timestamp() + hour * HOUR)
            ids = [f"{hour}-{i}" for i in range(300)]
            shift = 25.0 if hour == 2 else 0.0
            mon.log_predictions(live_frame(300, shift, hour), np.ones(300), ids=ids, timestamps=ts)
            mon.log_labels(ids, np.ones(300))
        mon.flush()
        assert client.url is not None
        text = """query($ref: String!, $from: DateTime, $to: DateTime) {
          node(ref: $ref) { ... on Deployment {
            monitoring(from: $from, to: $to) {
              sampleCount windows { start sampleCount instance modelVersionId metrics }
              drift { feature state test pValue pAdjusted psi wasserstein count referenceCount }
              performance { task count accuracy baseline delta }
          } } } }"""
        dep = mon.deployment_id
        whole = query(client.url, text, ref=dep)["node"]["monitoring"]
        assert whole["sampleCount"] == 900 and len(whole["windows"]) == 3
        drift = {d["feature"]: d for d in whole["drift"]}
        assert drift["age"]["state"] == "drift" and drift["age"]["test"] == "ks"
        assert drift["plan"]["test"] == "chi2"
        assert whole["performance"]["accuracy"] == 1.0
        calm = query(
            client.url,
            text,
            ref=dep,
            **{"from": T0.isoformat(), "to": (T0 + timedelta(hours=2)).isoformat()},
        )["node"]["monitoring"]
        assert calm["sampleCount"] == 600
        assert {d["feature"]: d["state"] for d in calm["drift"]}["age"] == "ok"
        bad = httpx.post(
            f"{client.url}/graphql",
            json={
                "query": "mutation($i: MonitoringWindowInput!) { reportMonitoringWindow(input: $i) { id } }",
                "variables": {
                    "i": {
                        "deployment": dep,
                        "start": T0.isoformat(),
                        "end": T0.isoformat(),
                        "sketch": {"features": {}},
                    }
                },
            },
        ).json()
        assert bad["errors"][0]["extensions"]["code"] == "VALIDATION"


def test_monitor_status_on_the_command_line(
    store_backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lineagehub.interfaces.cli import main
    from lineagehub.interfaces.cli.monitor import sparkline

    with hub("remote", store_backend, tmp_path) as (client, _):
        mon = client.monitor("churn", flush_interval=None)
        for hour, shift in enumerate((0.0, 0.0, 30.0)):
            ts = np.full(200, T0.timestamp() + hour * HOUR)
            mon.log_predictions(live_frame(200, shift, hour), np.ones(200), timestamps=ts)
        mon.flush()
        assert client.url is not None
        assert main(["monitor", "status", "churn@prod", "--url", client.url, "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["sample_count"] == 600 and len(data["windows"]) == 3
        assert data["drift"]["age"]["state"] == "drift"
        until = (T0 + timedelta(hours=2)).isoformat()
        assert main(["monitor", "status", "churn", "--url", client.url, "--to", until]) == 0
        text = capsys.readouterr().out
        assert "2 windows, 400 predictions, serving mv:churn/1" in text
        assert re.search(r"age\s+ok\s+ks", text)
        assert main(["monitor", "status", "nope", "--url", client.url]) == 3  # not found
    assert sparkline([0.0, 1.0, None, 0.5]) == "▁█·▄"
    assert sparkline([0.8, 0.9], zero=False) == "▁█"


def test_small_batches_count_exactly_as_large_ones(tmp_path: Path) -> None:
    """Requests of a row or two are counted value by value in Python, large batches with
    numpy and pandas: the sketches must be the same."""
    with hub("embedded", "sqlite", tmp_path) as (client, _):
        whole = client.monitor("churn", flush_interval=None, instance="whole")
        rows = client.monitor("churn", flush_interval=None, instance="rows")
        frame = live_frame(40, 5, 9)
        top = whole.reference.features["age"]["edges"][-1]
        frame.loc[0, "age"] = np.nan
        frame.loc[1, "age"] = top  # the closed end of the last bin
        frame.loc[2, "age"] = top + 100  # above every bin
        frame.loc[3, "plan"] = None
        frame.loc[4, "plan"] = "gold"  # not a reference value: "other"
        ts = np.full(40, T0.timestamp())
        whole.log_predictions(frame, np.arange(40) % 2, timestamps=ts)
        for i in range(40):
            rows.log_predictions(frame.iloc[[i]], [i % 2], timestamps=ts[:1])
        a = whole._sketch(whole._windows[int(T0.timestamp())])
        b = rows._sketch(rows._windows[int(T0.timestamp())])
        for name in ("age", "plan"):
            x, y = a["features"][name], b["features"][name]
            assert x["counts"] == y["counts"] and x["missing"] == y["missing"], name
            assert x["count"] == y["count"] == 40
        assert a["features"]["age"]["sum"] == pytest.approx(b["features"]["age"]["sum"])
        assert a["prediction"]["counts"] == b["prediction"]["counts"]
        whole._stop.set()
        rows._stop.set()


def test_raw_rows_are_kept_only_when_asked(mode: str, tmp_path: Path) -> None:
    with hub(mode, "sqlite", tmp_path) as (client, service):
        ts = np.full(20, T0.timestamp())
        frame = live_frame(20, 0, 3)
        frame.loc[0, "age"] = np.nan
        plain = client.monitor("churn", flush_interval=None, instance="plain")
        plain.log_predictions(frame, np.ones(20, dtype=int), timestamps=ts)
        plain.close()
        kept = client.monitor("churn", flush_interval=None, instance="kept", keep_rows=5)
        ids = [f"r{i}" for i in range(20)]
        kept.log_predictions(frame, np.ones(20, dtype=int), ids=ids, timestamps=ts)
        kept.log_predictions(frame.iloc[:2], [0, 0], ids=["x", "y"], timestamps=ts[:2])
        kept.close()
        by_instance = {w.instance: w for w in service.windows("churn")}
        assert "rows" not in by_instance["plain"].feature_stats
        rows = by_instance["kept"].feature_stats["rows"]
        assert [r["id"] for r in rows] == ["r0", "r1", "r2", "r3", "r4"]
        assert rows[0]["age"] is None and rows[1]["age"] == pytest.approx(frame["age"][1])
        assert rows[1]["plan"] == frame["plan"][1] and rows[1]["prediction"] == 1
        with pytest.raises(ValidationError, match="keep_rows"):
            client.monitor("churn", flush_interval=None, keep_rows=10_000)


def deployed_hub(folder: Path) -> Client:
    """An embedded hub with a version of model m deployed as m-prod (no reference data)."""
    client = Client(f"sqlite:///{folder / 'hub.db'}", artifacts=(folder / "a").as_uri())
    with client.start_run("fit", project="p", capture=False) as run:
        version = run.log_model({"w": [1]}, name="m")
    client.deploy(version.node_id, "production", name="m-prod")
    return client


def test_a_summary_merges_every_window_of_its_range_not_the_first_thousand(
    tmp_path: Path,
) -> None:
    """Windows are read a page at a time (1,000): a range of 1,003 hourly windows is merged
    whole, its newest windows too (the summary ended at the 1,000th oldest)."""
    client = deployed_hub(tmp_path)
    start, hour = datetime(2025, 1, 1, tzinfo=timezone.utc), timedelta(hours=1)
    sketch = {
        "features": {
            "plan": {"kind": "categorical", "values": ["a"], "counts": [10, 0], "count": 10}
        }
    }
    monitoring = client.backend.monitoring
    for i in range(1003):
        monitoring.report_window("m-prod", start + i * hour, start + (i + 1) * hour, sketch)
    summary = client.monitoring("m-prod")
    assert len(summary.windows) == 1003 and summary.sample_count == 10 * 1003
    assert summary.windows[-1].end == start + 1003 * hour
    client.close()


def test_values_a_sketch_cannot_hold_cost_the_window_nothing_else(tmp_path: Path) -> None:
    """1e200 in a numeric column (its square is no float), a NaN regression prediction with
    its label, a NaN score: counted as missing or rejected, and the window is reported with
    everything else (before, every flush failed and the window's rows were lost)."""
    client = Client(f"sqlite:///{tmp_path / 'hub.db'}", artifacts=(tmp_path / "a").as_uri())
    train = pd.DataFrame({"tenure": np.arange(100.0), "plan": ["a", "b"] * 50})
    with client.start_run("fit", project="p", capture=False) as run:
        run.log_dataset(train, name="customers", namespace="warehouse")
        version = run.log_model({"w": [1]}, name="m")
    for task in ("classification", "regression"):
        client.deploy(version.node_id, task, name=f"m-{task}")
        mon = client.monitor(f"m-{task}", flush_interval=None, instance=task)
        rows = pd.DataFrame({"tenure": np.r_[np.ones(19), 1e200], "plan": ["a"] * 20})
        ids = [f"{task}-{i}" for i in range(20)]
        if task == "classification":
            scores = np.r_[np.full(19, 0.7), np.nan]
            mon.log_predictions(rows, np.ones(20, int), ids=ids, scores=scores)
            assert mon.log_labels(ids, np.ones(20, int)) == 20
        else:
            mon.log_predictions(rows, np.r_[np.full(19, 0.5), np.nan], ids=ids)
            assert mon.log_labels(ids, np.ones(20)) == 19
        assert mon.flush() == 1 and mon.last_error is None, mon.last_error
        mon.close()
    for task in ("classification", "regression"):
        (window,) = client.monitoring(f"m-{task}").windows
        assert window.instance == task and window.sample_count == 20
    client.close()


def test_a_process_still_serving_after_a_redeploy_reports_on_its_own_reference(
    tmp_path: Path,
) -> None:
    """The version is redeployed with other training data (other bins) while an old serving
    process goes on: its windows keep the reference they were counted on, and the summary
    (which merges the windows of one reference) still answers (it failed for good: 'sketches
    on different bins cannot be merged'; the old window's drift said no_reference)."""
    client = Client(f"sqlite:///{tmp_path / 'hub.db'}", artifacts=(tmp_path / "a").as_uri())
    rng = np.random.default_rng(0)

    def fit(scale: float) -> None:
        data = pd.DataFrame({"tenure": rng.gamma(2, scale, 2000), "plan": ["pro"] * 2000})
        with client.start_run("fit", project="p", capture=False) as run:
            run.log_dataset(data, name="customers", namespace="warehouse")
            run.log_model({"w": [scale]}, name="m")
        client.deploy("m@latest", "production", name="m-prod")

    def batch() -> pd.DataFrame:
        return pd.DataFrame({"tenure": rng.gamma(2, 12, 300), "plan": ["pro"] * 300})

    hour = 3600
    t0 = (int(time.time()) // hour - 5) * hour
    clock = [t0 + 10]
    fit(12)
    old = client.monitor("m-prod", flush_interval=None, clock=lambda: clock[0], instance="a")
    old.log_predictions(batch(), np.ones(300, int))
    old.flush()
    fit(40)  # new training data, new bins; the old process keeps serving
    clock[0] += hour
    old.log_predictions(batch(), np.ones(300, int))
    old.flush()
    new = client.monitor(
        "m-prod", flush_interval=None, clock=lambda: t0 + 2 * hour + 10, instance="b"
    )
    new.log_predictions(batch(), np.ones(300, int))
    new.flush()
    summary = client.monitoring("m-prod")  # answers
    assert len(summary.windows) == 3
    refs = [w.reference for w in summary.windows]
    assert refs[0] == refs[1] != refs[2]  # each process on the reference it counted on
    assert summary.drift["tenure"]["state"] != "no_reference"
    assert all(w.drift["tenure"]["state"] != "no_reference" for w in summary.windows)
    old.close()
    new.close()
    client.close()


def test_processes_that_took_the_model_for_different_tasks_do_not_break_the_summary(
    tmp_path: Path,
) -> None:
    """One process reports labels of a classification, another of a regression (it read the
    probabilities as values): the summary answers, its performance from the latest task's
    windows (it failed for good: 'labels of a classification and a regression')."""
    client = deployed_hub(tmp_path)
    start, hour = datetime(2025, 1, 1, tzinfo=timezone.utc), timedelta(hours=1)
    features = {"plan": {"kind": "categorical", "values": ["a"], "counts": [10, 0], "count": 10}}
    classification = {"task": "classification", "count": 10, "confusion": {"1|1": 10}}
    regression = {"task": "regression", "count": 10, "abs_err": 3.0, "sq_err": 1.0}
    monitoring = client.backend.monitoring
    for i, labels in enumerate((regression, classification)):
        sketch = {"features": features, "labels": labels}
        monitoring.report_window(
            "m-prod", start + i * hour, start + (i + 1) * hour, sketch, instance=str(i)
        )
    summary = client.monitoring("m-prod")
    assert len(summary.windows) == 2 and summary.sample_count == 20
    assert summary.performance["accuracy"] == 1.0 and "mae" not in summary.performance
    client.close()
