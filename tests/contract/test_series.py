"""Metric series: batched appends, faithful NaN / inf, downsampling, summaries."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from lineagehub.graph import GraphStore, Node, NotFoundError, SeriesPoint, ValidationError


@pytest.fixture
def run(store: GraphStore) -> GraphStore:
    store.upsert_nodes([Node("run", "Run"), Node("run2", "Run")])
    return store


def test_append_and_read_back_in_step_order(run: GraphStore) -> None:
    t = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    n = run.append_series(
        [SeriesPoint("run", "loss", s, 1.0 / (s + 1), t) for s in (3, 1, 2, 0)]
        + [SeriesPoint("run2", "loss", 0, 9.0)]
    )
    assert n == 5
    points = run.read_series("run", "loss")
    assert [p.step for p in points] == [0, 1, 2, 3]
    assert [p.value for p in points] == [1.0, 0.5, 1 / 3, 0.25]
    assert points[0].timestamp == t and points[0].node_id == "run" and points[0].key == "loss"
    assert [p.value for p in run.read_series("run2", "loss")] == [9.0]
    assert run.read_series("run", "other") == []


def test_nan_and_infinities_are_kept(run: GraphStore) -> None:
    run.append_series(
        [
            SeriesPoint("run", "loss", 0, 1.5),
            SeriesPoint("run", "loss", 1, math.inf),
            SeriesPoint("run", "loss", 2, -math.inf),
            SeriesPoint("run", "loss", 3, math.nan),
        ]
    )
    values = [p.value for p in run.read_series("run", "loss")]
    assert values[:3] == [1.5, math.inf, -math.inf] and math.isnan(values[3])
    summary = run.series_summary(["run"])["run"]["loss"]
    assert summary.count == 4 and math.isnan(summary.last) and summary.last_step == 3


def test_same_step_replaces(run: GraphStore) -> None:
    run.append_series([SeriesPoint("run", "acc", 0, 0.1)])
    run.append_series([SeriesPoint("run", "acc", 0, 0.2), SeriesPoint("run", "acc", 1, 0.3)])
    assert [(p.step, p.value) for p in run.read_series("run", "acc")] == [(0, 0.2), (1, 0.3)]


def test_downsampling_keeps_ends_and_extremes(run: GraphStore) -> None:
    values = [math.sin(i / 50) for i in range(10_000)]
    values[4321] = 100.0  # a spike must survive downsampling
    values[7777] = -100.0
    run.append_series([SeriesPoint("run", "loss", i, v) for i, v in enumerate(values)])
    full = run.read_series("run", "loss")
    assert len(full) == 10_000
    small = run.read_series("run", "loss", max_points=200)
    assert 100 <= len(small) <= 200
    steps = [p.step for p in small]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 9_999
    assert 4321 in steps and 7777 in steps
    assert run.read_series("run", "loss", max_points=20_000) == full


def test_last_steps_are_the_highest_stored_whatever_the_order(run: GraphStore) -> None:
    def pt(key: str, step: int, value: float) -> SeriesPoint:
        return SeriesPoint("run", key, step, value)

    run.append_series([pt("loss", 10, 1.0), pt("loss", 5, 2.0), pt("acc", -3, 0.5)])
    run.append_series([pt("loss", 7, 3.0), pt("acc", -1, float("nan"))])
    assert run.last_steps("run", ["loss", "acc", "never"]) == {"loss": 10, "acc": -1}
    assert run.last_steps("run", []) == {}


def test_summary_per_node_and_key(run: GraphStore) -> None:
    run.append_series(
        [SeriesPoint("run", "loss", s, v) for s, v in enumerate([3.0, 1.0, 2.0])]
        + [SeriesPoint("run", "acc", 0, 0.5), SeriesPoint("run2", "acc", 7, 0.7)]
    )
    summary = run.series_summary(["run", "run2", "nobody"])
    loss = summary["run"]["loss"]
    assert (loss.count, loss.last, loss.last_step, loss.min, loss.max) == (3, 2.0, 2, 1.0, 3.0)
    assert set(summary["run"]) == {"loss", "acc"}
    assert summary["run2"]["acc"].last_step == 7
    assert summary["nobody"] == {}
    only = run.series_summary(["run"], keys=["acc"])
    assert set(only["run"]) == {"acc"}


def test_unknown_node_is_not_found_and_nothing_written(run: GraphStore) -> None:
    with pytest.raises(NotFoundError) as info:
        run.append_series([SeriesPoint("run", "loss", 0, 1.0), SeriesPoint("ghost", "loss", 0, 1)])
    assert info.value.ids == ["ghost"]
    assert run.read_series("run", "loss") == []


@pytest.mark.parametrize(
    "point",
    [
        SeriesPoint("run", "loss", 0, "high"),  # type: ignore[arg-type]
        SeriesPoint("run", "loss", 0, [1.0]),  # type: ignore[arg-type]
        SeriesPoint("run", "loss", 0, True),
        SeriesPoint("run", "loss", 1.5, 1.0),  # type: ignore[arg-type]
        SeriesPoint("run", "", 0, 1.0),
        SeriesPoint("run", "k" * 300, 0, 1.0),
    ],
)
def test_bad_points_are_rejected(run: GraphStore, point: SeriesPoint) -> None:
    with pytest.raises(ValidationError):
        run.append_series([SeriesPoint("run", "ok", 0, 1.0), point])
    assert run.read_series("run", "ok") == []
