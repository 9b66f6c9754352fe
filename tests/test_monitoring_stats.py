"""Every drift and performance statistic of :mod:`lineagehub.services.monitoring`, checked
against an independent computation on the same data.

The monitoring service only sees counts on bins. Each test draws raw data that sits on the
bins' representative values, so the raw-data computation (scipy's tests on the samples, plain
Python formulas, scikit-learn's metrics) must give the same number as the binned one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics

from lineagehub.graph import ValidationError
from lineagehub.services.monitoring import (
    auc_from_histograms,
    benjamini_hochberg,
    bin_centers,
    check_sketch,
    chi_square,
    classification_metrics,
    drift_report,
    feature_drift,
    jensen_shannon,
    ks_binned,
    merge_sketches,
    performance_report,
    psi,
    reference_features,
    wasserstein_normed,
)

EDGES = [float(x) for x in np.linspace(0, 10, 11)]  # 10 inner bins, plus one below and above
CENTERS = bin_centers(EDGES)


def samples(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` values on the bins' representative values, and their counts per bin."""
    probs = np.exp(-0.5 * ((np.asarray(CENTERS) - 5 - shift) / 2.5) ** 2)
    idx = rng.choice(len(CENTERS), size=n, p=probs / probs.sum())
    return np.asarray(CENTERS)[idx], np.bincount(idx, minlength=len(CENTERS))


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    ref, ref_counts = samples(rng, 3000, 0.0)
    cur, cur_counts = samples(rng, 800, 1.2)
    return ref, ref_counts, cur, cur_counts


def test_psi_is_the_textbook_sum(pair: tuple[np.ndarray, ...]) -> None:
    _, r, _, c = pair
    expected = 0.0
    for ri, ci in zip(r.tolist(), c.tolist()):
        p = ri / sum(r) or 1e-4
        q = ci / sum(c) or 1e-4
        expected += (q - p) * math.log(q / p)
    assert psi(r, c) == pytest.approx(expected, rel=1e-12)
    assert psi(r, r) == 0.0


def test_ks_equals_scipy_ks_2samp_on_the_raw_values(pair: tuple[np.ndarray, ...]) -> None:
    ref, r, cur, c = pair
    d, p = ks_binned(r, c)
    raw = stats.ks_2samp(ref, cur, method="asymp")
    assert d == pytest.approx(raw.statistic, abs=1e-12)
    assert p == pytest.approx(raw.pvalue, rel=1e-9)


def test_ks_p_values_of_large_samples_stay_within_a_few_percent_of_scipy() -> None:
    rng = np.random.default_rng(8)
    ref, r = samples(rng, 60_000, 0.0)
    cur, c = samples(rng, 5_000, 0.05)
    d, p = ks_binned(r, c)  # effective n ~ 4,600: Kolmogorov's limit distribution
    raw = stats.ks_2samp(ref, cur, method="asymp")
    assert d == pytest.approx(raw.statistic, abs=1e-12)
    assert p == pytest.approx(raw.pvalue, rel=3e-2)


def test_chi_square_equals_the_hand_computed_statistic() -> None:
    r, c = [400, 300, 200, 100, 0], [90, 120, 60, 30, 0]
    stat, p = chi_square(r, c)
    table = [r[:4], c[:4]]  # the column empty in both is dropped
    total = sum(map(sum, table))
    expected = 0.0
    for i in range(2):
        for j in range(4):
            e = sum(table[i]) * (table[0][j] + table[1][j]) / total
            expected += (table[i][j] - e) ** 2 / e
    assert stat == pytest.approx(expected, rel=1e-12)
    assert p == pytest.approx(stats.chi2.sf(expected, 3), rel=1e-9)


def test_jensen_shannon_is_the_base_2_distance() -> None:
    r, c = [5, 3, 2, 0], [1, 1, 4, 4]
    p = [x / sum(r) for x in r]
    q = [x / sum(c) for x in c]
    m = [(a + b) / 2 for a, b in zip(p, q)]

    def kl(a: list[float], b: list[float]) -> float:
        return sum(x * math.log2(x / y) for x, y in zip(a, b) if x > 0)

    assert jensen_shannon(r, c) == pytest.approx(math.sqrt((kl(p, m) + kl(q, m)) / 2), rel=1e-12)
    assert jensen_shannon(r, r) == pytest.approx(0.0, abs=1e-7)
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)


def test_wasserstein_is_the_cdf_area_over_the_reference_std(pair: tuple[np.ndarray, ...]) -> None:
    ref, r, cur, c = pair
    std = float(np.std(ref, ddof=1))
    # the area between the two empirical CDFs of the raw values, by hand
    xs = np.sort(np.unique(np.concatenate([ref, cur])))
    fr = np.searchsorted(np.sort(ref), xs[:-1], side="right") / len(ref)
    fc = np.searchsorted(np.sort(cur), xs[:-1], side="right") / len(cur)
    area = float(np.sum(np.abs(fr - fc) * np.diff(xs)))
    assert wasserstein_normed(CENTERS, r, c, std) == pytest.approx(area / std, rel=1e-9)


def test_benjamini_hochberg_equals_the_step_up_procedure() -> None:
    ps = [0.01, 0.04, 0.03, 0.005, 0.5, 0.2]
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    adjusted = [0.0] * m
    running = 1.0
    for rank in range(m, 0, -1):  # from the largest p-value down
        i = order[rank - 1]
        running = min(running, ps[i] * m / rank)
        adjusted[i] = running
    assert benjamini_hochberg(ps) == pytest.approx(adjusted, rel=1e-12)
    assert benjamini_hochberg([]) == []


def test_insufficient_data_below_the_minimum_count() -> None:
    ref = {"kind": "numeric", "edges": EDGES, "counts": [0, *[100] * 10, 0], "std": 3.0}
    few = {"kind": "numeric", "edges": EDGES, "counts": [0, *[5] * 10, 0], "missing": 0}
    assert feature_drift(ref, few, min_count=100)["state"] == "insufficient_data"
    assert feature_drift(ref, few, min_count=10)["state"] == "measured"
    assert feature_drift(None, few, min_count=10)["state"] == "no_reference"


def test_drift_report_adjusts_across_features_and_flags_the_shifted_one() -> None:
    rng = np.random.default_rng(2)
    _, r = samples(rng, 5000, 0)
    ref = {"a": {"kind": "numeric", "edges": EDGES, "counts": r.tolist(), "std": 2.5}}
    ref["b"] = dict(ref["a"])
    same, shifted = samples(rng, 2000, 0)[1], samples(rng, 2000, 2)[1]
    sketch = {
        "features": {
            "a": {"kind": "numeric", "edges": EDGES, "counts": same.tolist(), "missing": 0},
            "b": {"kind": "numeric", "edges": EDGES, "counts": shifted.tolist(), "missing": 0},
        }
    }
    report = drift_report(ref, sketch)
    assert report["a"]["state"] == "ok" and report["b"]["state"] == "drift"
    raw = [report["a"]["p_value"], report["b"]["p_value"]]
    assert [report["a"]["p_adjusted"], report["b"]["p_adjusted"]] == pytest.approx(
        list(stats.false_discovery_control(raw))
    )


def test_the_reference_comes_from_the_dataset_profile() -> None:
    import pandas as pd

    from lineagehub.ingest.datasets import fingerprint

    frame = pd.DataFrame({"x": np.arange(100.0), "plan": ["a"] * 70 + ["b"] * 29 + [None]})
    features = reference_features(fingerprint(frame).profile)
    assert features["x"]["kind"] == "numeric"
    assert len(features["x"]["counts"]) == len(features["x"]["edges"]) + 1
    assert sum(features["x"]["counts"]) == 100
    assert features["plan"] == {"kind": "categorical", "values": ["a", "b"], "counts": [70, 29, 0]}


def test_classification_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    pred = np.where(rng.random(500) < 0.8, y, 1 - y)
    confusion: dict[str, int] = {}
    for p, t in zip(pred, y):
        confusion[f"{p}|{t}"] = confusion.get(f"{p}|{t}", 0) + 1
    got = classification_metrics(confusion)
    assert got["accuracy"] == pytest.approx(metrics.accuracy_score(y, pred))
    assert got["f1"] == pytest.approx(metrics.f1_score(y, pred))
    multi_y, multi_p = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    multi: dict[str, int] = {}
    for p, t in zip(multi_p, multi_y):
        multi[f"{p}|{t}"] = multi.get(f"{p}|{t}", 0) + 1
    assert classification_metrics(multi)["f1"] == pytest.approx(
        metrics.f1_score(multi_y, multi_p, average="macro")
    )


def test_auc_from_score_histograms_equals_roc_auc_on_binned_scores() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 1000)
    scores = np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1)
    bins = np.minimum((scores * 100).astype(int), 99)
    pos = np.bincount(bins[y == 1], minlength=100)
    neg = np.bincount(bins[y == 0], minlength=100)
    assert auc_from_histograms(pos.tolist(), neg.tolist()) == pytest.approx(
        metrics.roc_auc_score(y, bins), rel=1e-12
    )
    assert auc_from_histograms([0] * 100, neg.tolist()) is None


def test_regression_performance_equals_scikit_learn_and_compares_with_evaluation() -> None:
    rng = np.random.default_rng(5)
    y, pred = rng.normal(size=200), rng.normal(size=200)
    labels = {
        "task": "regression",
        "count": 200,
        "abs_err": float(np.abs(pred - y).sum()),
        "sq_err": float(((pred - y) ** 2).sum()),
    }
    got = performance_report(labels, {"test_mae": 0.5, "rmse": 2.0})
    assert got is not None
    assert got["mae"] == pytest.approx(metrics.mean_absolute_error(y, pred))
    assert got["rmse"] == pytest.approx(math.sqrt(metrics.mean_squared_error(y, pred)))
    assert got["baseline"] == {"mae": 0.5, "rmse": 2.0}
    assert got["delta"]["mae"] == pytest.approx(got["mae"] - 0.5)


def test_merged_sketches_add_up_and_categories_are_matched_by_name() -> None:
    a = {
        "features": {
            "x": {
                "kind": "numeric",
                "edges": [0, 1],
                "counts": [1, 2, 3],
                "missing": 1,
                "count": 7,
            },
            "c": {"kind": "categorical", "values": ["u", "v"], "counts": [1, 2, 3], "count": 6},
        },
        "rejected": {"unknown_id": 1},
    }
    b = {
        "features": {
            "x": {
                "kind": "numeric",
                "edges": [0, 1],
                "counts": [1, 1, 1],
                "missing": 0,
                "count": 3,
            },
            "c": {"kind": "categorical", "values": ["w", "u"], "counts": [5, 1, 0], "count": 6},
        },
        "rejected": {"unknown_id": 2},
    }
    merged = merge_sketches([a, b])
    assert merged["features"]["x"]["counts"] == [2, 3, 4]
    assert merged["features"]["x"]["missing"] == 1 and merged["features"]["x"]["count"] == 10
    assert merged["features"]["c"]["values"] == ["u", "v", "w"]
    assert merged["features"]["c"]["counts"] == [2, 2, 5, 3]
    assert merged["rejected"] == {"unknown_id": 3}


_FEATURE = {"kind": "numeric", "count": 2, "edges": [0.0, 1.0], "counts": [0, 2, 0]}
_LABELS = {"task": "classification", "count": 2, "confusion": {"1|1": 2}}


@pytest.mark.parametrize(
    ("sketch", "field"),
    [
        ({"features": {"x": {**_FEATURE, "edges": 5}}}, "sketch.features.x.edges"),
        ({"latency": {"count": 5, "sum": 1.0, "edges": [], "counts": [5]}}, "sketch.latency.edges"),
        ({"latency": {"count": 5, "sum": 1.0, "edges": 5, "counts": [5]}}, "sketch.latency.edges"),
        ({"latency": {"count": 2, "sum": 1.0, "edges": [0.1], "counts": [2]}}, "sketch.latency.counts"),
        ({"latency": {"count": 2, "sum": 1.0, "edges": [1.0, 0.1], "counts": [1, 1, 0]}}, "sketch.latency.edges"),
        ({"labels": {**_LABELS, "scores": [1, 2]}}, "sketch.labels.scores"),
        ({"labels": {**_LABELS, "scores": {"positive": [1, 2], "negative": [0] * 100}}}, "sketch.labels.scores"),
    ],
)  # fmt: skip
def test_a_sketch_whose_bins_do_not_add_up_is_refused_naming_the_field(
    sketch: dict, field: str
) -> None:
    """A sketch that would crash a report (an empty latency bucket list) or poison every
    later merge (bins of another length) is refused when reported, naming the field."""
    with pytest.raises(ValidationError) as e:
        check_sketch(sketch)
    assert e.value.field == field


def test_an_alert_rules_duration_beyond_a_year_is_a_validation_error() -> None:
    from datetime import timedelta

    from lineagehub.services.alerts import parse_duration

    assert parse_duration("52w", "for") == timedelta(weeks=52)
    for bad in ("99999999999999w", float("inf"), 10**30):
        with pytest.raises(ValidationError) as e:
            parse_duration(bad, "for")
        assert e.value.field == "for"
