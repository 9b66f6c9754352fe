"""Model monitoring: windows of what a deployment served, drift against its training data,
performance against its evaluation, all linked into the lineage graph.

A serving process (:class:`lineagehub.ingest.monitor.Monitor`) aggregates what it serves into
*sketches*, one per window of time, and reports each window here
(:meth:`MonitoringService.report_window`). The hub keeps it as a ``MonitoringWindow`` node that
``OBSERVED`` the deployment, with the statistics computed from the sketch against the
*reference*: the column profile of the training ``DatasetVersion`` of the version the
deployment serves (:mod:`lineagehub.ingest.datasets` stores it), or an explicit dataset version.

The sketch (JSON, ``feature_stats`` of a window) is small and mergeable: windows of several
processes, or several windows, add up to the sketch of their union (:func:`merge_sketches`)::

    {"version": 1,
     "features": {"age": {"kind": "numeric", "edges": [21 floats], "counts": [22 ints],
                          "missing": 0, "count": 940, "sum": ..., "sumsq": ..., "min": ..., "max": ...},
                  "plan": {"kind": "categorical", "values": ["basic", "pro"], "counts": [3 ints],
                           "missing": 2, "count": 940}},
     "prediction": {... a feature ...},
     "latency": {"count": n, "sum": seconds, "edges": [...], "counts": [...]},
     "labels": {"task": "classification", "count": n, "confusion": {"<pred>|<label>": n},
                "scores": {"positive": [100 ints], "negative": [100 ints]}}
               | {"task": "regression", "count": n, "abs_err": s, "sq_err": s},
     "rejected": {"<reason>": n},
     "rows": [{"<feature>": value, ..., "prediction": value, "id": "..."}]}   # only if asked

Numeric counts are on the reference histogram's bins (``edges`` e0..ek, as the profile has
them) plus one open bin below e0 and one above ek: ``counts[0]`` is below, ``counts[i]`` is
``[e(i-1), e(i))`` (the last inner bin includes ek), ``counts[k+1]`` above. Categorical
counts are on the reference's top values plus one "other" bin.

Statistics per feature (and for the prediction, when the reference has its column), each
from scipy where scipy has it (``lineagehub[monitoring]``):

- PSI: ``sum((c - r) * ln(c / r))`` over the bins' proportions, empty bins taken as
  :data:`PSI_EPSILON` (as Evidently and NannyML do);
- Kolmogorov-Smirnov (numeric): the largest distance of the two binned CDFs, with the
  asymptotic two-sample p-value of ``scipy.stats.ks_2samp(method="asymp")``;
- chi-square (categorical): ``scipy.stats.chi2_contingency`` of the 2 x k table;
- Jensen-Shannon distance (base 2, in [0, 1]): ``scipy.spatial.distance.jensenshannon``;
- normed Wasserstein (numeric): ``scipy.stats.wasserstein_distance`` on the bins'
  representative values, divided by the reference's standard deviation;
- a feature with fewer than ``min_count`` values (in the window or in the reference) is
  ``insufficient_data``, not a verdict;
- the p-values of all features are adjusted together (Benjamini-Hochberg,
  ``scipy.stats.false_discovery_control``); a feature has drifted when its adjusted p-value
  is below ``alpha``.

Performance with labels: accuracy, F1 (binary on the positive class ``1``, else macro) and
ROC AUC (from score histograms on 100 bins) for classification, MAE and RMSE for regression;
each compared with the served version's evaluation metric of the same name
(``test_accuracy``, ``accuracy``...).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from lineagehub.graph import (
    ConfigError,
    Direction,
    GraphStore,
    NotFoundError,
    ValidationError,
)
from lineagehub.graph.model import to_iso
from lineagehub.services.lineage import LineageService
from lineagehub.vocabulary import (
    Alert,
    Deployment,
    DeploymentStatus,
    EdgeKind,
    ModelVersion,
    MonitoringWindow,
    NodeKind,
    check_key,
    check_scalar,
    make_edge,
    monitoring_window_id,
)

if TYPE_CHECKING:
    from lineagehub.services.alerts import AlertService

SKETCH_VERSION = 1
PSI_EPSILON = 1e-4
DEFAULT_ALPHA = 0.05
DEFAULT_MIN_COUNT = 100
#: Effective sample size up to which K-S p-values use the finite-n distribution.
KS_EXACT_MAX_N = 1000
#: Score bins over [0, 1] for ROC AUC.
SCORE_BINS = 100
#: Latency histogram edges in seconds (Prometheus' default buckets).
LATENCY_EDGES = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MAX_FEATURES = 2_000
#: Raw rows a window's sketch may carry (only when the serving side asks to keep them).
MAX_ROWS = 1_000
MAX_BINS = 1_000
MAX_CLASSES = 100
MAX_CONFUSION = MAX_CLASSES * MAX_CLASSES
MAX_WINDOW = timedelta(days=31)
#: The evaluation metric names compared with each live performance metric, first found wins.
BASELINE_NAMES: dict[str, tuple[str, ...]] = {
    "accuracy": ("accuracy",),
    "f1": ("f1", "f1_score", "f1_macro"),
    "auc": ("roc_auc", "auc"),
    "mae": ("mae", "mean_absolute_error"),
    "rmse": ("rmse", "root_mean_squared_error"),
}
_PREFIXES = ("test_", "eval_", "val_", "validation_", "")


def _scipy() -> tuple[Any, Any]:
    """scipy.stats and scipy.spatial.distance, or a ConfigError naming the extra."""
    try:
        stats = importlib.import_module("scipy.stats")
        distance = importlib.import_module("scipy.spatial.distance")
    except ImportError:
        raise ConfigError(
            "drift statistics need scipy: pip install 'lineagehub[monitoring]'"
        ) from None
    return stats, distance


def _np() -> Any:
    try:
        return importlib.import_module("numpy")
    except ImportError:
        raise ConfigError("monitoring needs numpy: pip install 'lineagehub[monitoring]'") from None


# --- statistics on binned counts -----------------------------------------------------------


def _rows(counts: Any) -> Any:
    """Counts as a float matrix, one feature per row."""
    np = _np()
    a = np.asarray(counts, dtype=float)
    return a.reshape(1, -1) if a.ndim == 1 else a


def _shares(counts: Any) -> Any:
    np = _np()
    total = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def psi_many(reference: Any, current: Any, eps: float = PSI_EPSILON) -> Any:
    """PSI of each row pair (features x bins), empty bins taken as ``eps``."""
    np = _np()
    r, c = _shares(_rows(reference)), _shares(_rows(current))
    r, c = np.where(r == 0, eps, r), np.where(c == 0, eps, c)
    return np.sum((c - r) * np.log(c / r), axis=1)


def jensen_shannon_many(reference: Any, current: Any) -> Any:
    """Jensen-Shannon distance (base 2) of each row pair."""
    np = _np()
    p, q = _shares(_rows(reference)), _shares(_rows(current))
    m = (p + q) / 2

    def kl(a: Any) -> Any:
        safe = np.where(a > 0, a, 1.0) / np.where(m > 0, m, 1.0)
        return np.sum(np.where(a > 0, a * np.log2(safe), 0.0), axis=1)

    return np.sqrt(np.maximum((kl(p) + kl(q)) / 2, 0.0))


def ks_many(reference: Any, current: Any) -> tuple[Any, Any]:
    """Two-sample Kolmogorov-Smirnov of each row pair: the largest distance between the
    binned CDFs (exact for data on the bins), and the asymptotic p-value
    ``scipy.stats.ks_2samp(method="asymp")`` gives (``scipy.stats.kstwo`` at the effective
    sample size ``n1 n2 / (n1 + n2)``); above :data:`KS_EXACT_MAX_N` Kolmogorov's limit
    distribution (``scipy.stats.kstwobign``), which differs from it by a relative O(1/sqrt(n))
    (a few percent of the p-value at n = 1,000, about 1 % at 10,000) and costs microseconds
    instead of milliseconds."""
    np = _np()
    stats, _ = _scipy()
    r, c = _rows(reference), _rows(current)
    n1, n2 = r.sum(axis=1), c.sum(axis=1)
    d = np.max(np.abs(np.cumsum(_shares(r), axis=1) - np.cumsum(_shares(c), axis=1)), axis=1)
    en = n1 * n2 / (n1 + n2)
    p = np.empty_like(d)
    small = en <= KS_EXACT_MAX_N
    if small.any():
        p[small] = stats.kstwo.sf(d[small], np.round(en[small]))
    if (~small).any():  # Kolmogorov's limit: the exact distribution costs ms per test there
        p[~small] = stats.kstwobign.sf(d[~small] * np.sqrt(en[~small]))
    return d, np.clip(p, 0, 1)


def wasserstein_many(centers: Any, reference: Any, current: Any, std: Any) -> Any:
    """Wasserstein-1 distance of each row pair (mass at the bins' representative values:
    the area between the two CDFs), divided by the reference's standard deviation."""
    np = _np()
    x = _rows(centers)
    gap = np.abs(
        np.cumsum(_shares(_rows(reference)), axis=1) - np.cumsum(_shares(_rows(current)), axis=1)
    )
    w = np.sum(gap[:, :-1] * np.diff(x, axis=1), axis=1)
    sd = np.asarray(std, dtype=float).reshape(-1)
    return np.where(sd > 0, w / np.where(sd > 0, sd, 1.0), w)


def psi(reference: Sequence[float], current: Sequence[float], eps: float = PSI_EPSILON) -> float:
    """Population stability index of two count vectors on the same bins."""
    return float(psi_many(reference, current, eps)[0])


def ks_binned(reference: Sequence[float], current: Sequence[float]) -> tuple[float, float]:
    """:func:`ks_many` of one feature."""
    d, p = ks_many(reference, current)
    return float(d[0]), float(p[0])


def chi_square(reference: Sequence[float], current: Sequence[float]) -> tuple[float, float]:
    """Chi-square test of homogeneity of the 2 x k table (bins empty in both dropped); the
    p-value from ``scipy.stats.chi2``."""
    np = _np()
    stats, _ = _scipy()
    table = np.asarray([reference, current], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    return stat, float(stats.chi2.sf(stat, table.shape[1] - 1))


def jensen_shannon(reference: Sequence[float], current: Sequence[float]) -> float:
    """Jensen-Shannon distance (base 2: 0 identical, 1 disjoint)."""
    return float(jensen_shannon_many(reference, current)[0])


def wasserstein_normed(
    centers: Sequence[float], reference: Sequence[float], current: Sequence[float], std: float
) -> float:
    """:func:`wasserstein_many` of one feature."""
    return float(wasserstein_many(centers, reference, current, [std])[0])


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in input order."""
    if not p_values:
        return []
    stats, _ = _scipy()
    return [float(x) for x in stats.false_discovery_control(list(p_values), method="bh")]


def bin_centers(edges: Sequence[float]) -> list[float]:
    """The representative value of each numeric bin: inner bins' midpoints; the open bins
    below and above one bin width beyond the outer edges."""
    e = [float(x) for x in edges]
    width = (e[-1] - e[0]) / max(len(e) - 1, 1) or 1.0
    inner = [(e[i] + e[i + 1]) / 2 for i in range(len(e) - 1)] or [e[0]]
    return [e[0] - width / 2, *inner, e[-1] + width / 2]


# --- the reference ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MonitoringReference:
    """What a deployment is compared against: the version it serves, the dataset version
    whose profile is the drift reference, its binned columns and the version's evaluation
    metrics."""

    deployment_id: str
    model_version: str | None
    dataset_version: str | None
    features: dict[str, Any]
    metrics: dict[str, Any]


def reference_features(profile: Mapping[str, Any] | None) -> dict[str, Any]:
    """The reference bins of each profiled column (numeric: histogram edges and counts with
    an empty open bin on each side; categorical: the top values and an "other" bin)."""
    out: dict[str, Any] = {}
    for col in (profile or {}).get("columns") or []:
        name, kind = col.get("name"), col.get("kind")
        if not isinstance(name, str):
            continue
        if kind in ("numeric", "timedelta") and col.get("histogram"):
            h = col["histogram"]
            out[name] = {
                "kind": "numeric",
                "edges": [float(x) for x in h["edges"]],
                "counts": [0, *(int(x) for x in h["counts"]), 0],
                "std": col.get("std"),
            }
        elif kind == "categorical" and col.get("top") is not None:
            top = col["top"]
            values = [_category(t["value"]) for t in top]
            counts = [int(t["count"]) for t in top]
            present = int(col.get("count", 0)) - int(col.get("null_count", 0))
            out[name] = {
                "kind": "categorical",
                "values": values,
                "counts": [*counts, max(present - sum(counts), 0)],
            }
    return out


def _category(value: Any) -> str:
    """A category's key: bools as 0/1 (numpy and pandas mix them with ints), else its text."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --- sketches --------------------------------------------------------------------------------


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"{where} must be a count (an integer >= 0)", field=where)
    return value


def _num(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(f"{where} must be a finite number", field=where)
    return float(value)


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError(f"{where} must be a list", field=where)
    return value


def _counts(value: Any, where: str, max_len: int = MAX_BINS + 2) -> list[int]:
    if not isinstance(value, list) or len(value) > max_len:
        raise ValidationError(f"{where} must be a list of at most {max_len} counts", field=where)
    return [_count(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _check_feature(f: Any, where: str) -> dict[str, Any]:
    if not isinstance(f, Mapping):
        raise ValidationError(f"{where} must be an object", field=where)
    kind = f.get("kind")
    out: dict[str, Any] = {
        "kind": kind,
        "missing": _count(f.get("missing", 0), f"{where}.missing"),
        "count": _count(f.get("count", 0), f"{where}.count"),
    }
    if kind == "numeric":
        if "edges" in f:
            edges = [_num(v, f"{where}.edges") for v in _list(f.get("edges"), f"{where}.edges")]
            if len(edges) < 2 or len(edges) > MAX_BINS or edges != sorted(edges):
                raise ValidationError(
                    f"{where}.edges must be 2 to {MAX_BINS} ascending numbers", field=where
                )
            counts = _counts(f.get("counts"), f"{where}.counts")
            if len(counts) != len(edges) + 1:
                raise ValidationError(
                    f"{where}.counts must have len(edges) + 1 entries", field=f"{where}.counts"
                )
            out["edges"], out["counts"] = edges, counts
        for key in ("sum", "sumsq", "min", "max"):
            if f.get(key) is not None:
                out[key] = _num(f[key], f"{where}.{key}")
    elif kind == "categorical":
        values = f.get("values") or []
        if not isinstance(values, list) or len(values) > MAX_BINS:
            raise ValidationError(f"{where}.values must be a list of texts", field=where)
        out["values"] = [str(v) for v in values]
        counts = _counts(f.get("counts"), f"{where}.counts")
        if len(counts) != len(values) + 1:
            raise ValidationError(
                f"{where}.counts must have len(values) + 1 entries (the last: other values)",
                field=f"{where}.counts",
            )
        out["counts"] = counts
    else:
        raise ValidationError(f"{where}.kind must be 'numeric' or 'categorical'", field=where)
    return out


def check_sketch(sketch: Any) -> dict[str, Any]:
    """A window's sketch, checked (every count a non-negative integer, every bin list of the
    right length, sizes bounded); a :class:`ValidationError` names the first bad field."""
    if not isinstance(sketch, Mapping):
        raise ValidationError("sketch must be a JSON object", field="sketch")
    if sketch.get("version", SKETCH_VERSION) != SKETCH_VERSION:
        raise ValidationError(f"sketch.version must be {SKETCH_VERSION}", field="sketch.version")
    features = sketch.get("features") or {}
    if not isinstance(features, Mapping) or len(features) > MAX_FEATURES:
        raise ValidationError(
            f"sketch.features must map at most {MAX_FEATURES} names", field="sketch.features"
        )
    out: dict[str, Any] = {
        "version": SKETCH_VERSION,
        "features": {
            str(k): _check_feature(v, f"sketch.features.{k}") for k, v in features.items()
        },
    }
    if sketch.get("prediction") is not None:
        out["prediction"] = _check_feature(sketch["prediction"], "sketch.prediction")
        column = sketch["prediction"].get("column")
        if column is not None:
            out["prediction"]["column"] = str(column)
    if sketch.get("latency") is not None:
        lat = sketch["latency"]
        if not isinstance(lat, Mapping):
            raise ValidationError("sketch.latency must be an object", field="sketch.latency")
        edges = [
            _num(v, "sketch.latency.edges") for v in _list(lat.get("edges"), "sketch.latency.edges")
        ]
        if not 1 <= len(edges) <= MAX_BINS or edges != sorted(edges):
            raise ValidationError(
                f"sketch.latency.edges must be 1 to {MAX_BINS} ascending numbers",
                field="sketch.latency.edges",
            )
        counts = _counts(lat.get("counts") or [], "sketch.latency.counts")
        if len(counts) != len(edges) + 1:
            raise ValidationError(
                "sketch.latency.counts must have len(edges) + 1 entries (the last: slower)",
                field="sketch.latency.counts",
            )
        out["latency"] = {
            "count": _count(lat.get("count", 0), "sketch.latency.count"),
            "sum": _num(lat.get("sum", 0.0), "sketch.latency.sum"),
            "edges": edges,
            "counts": counts,
        }
    if sketch.get("labels") is not None:
        out["labels"] = _check_labels(sketch["labels"])
    rows = sketch.get("rows")
    if rows is not None:
        if not isinstance(rows, list) or len(rows) > MAX_ROWS:
            raise ValidationError(
                f"sketch.rows must be a list of at most {MAX_ROWS} rows", field="sketch.rows"
            )
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping) or len(row) > MAX_FEATURES + 3:
                raise ValidationError(f"sketch.rows[{i}] must be an object", field="sketch.rows")
        out["rows"] = [
            {str(k): check_scalar(v, f"sketch.rows[{i}].{k}") for k, v in row.items()}
            for i, row in enumerate(rows)
        ]
    rejected = sketch.get("rejected") or {}
    if not isinstance(rejected, Mapping) or len(rejected) > 100:
        raise ValidationError("sketch.rejected must map reasons to counts", field="sketch.rejected")
    out["rejected"] = {str(k): _count(v, f"sketch.rejected.{k}") for k, v in rejected.items()}
    return out


def _check_labels(labels: Any) -> dict[str, Any]:
    where = "sketch.labels"
    if not isinstance(labels, Mapping):
        raise ValidationError(f"{where} must be an object", field=where)
    task = labels.get("task")
    out: dict[str, Any] = {"task": task, "count": _count(labels.get("count", 0), f"{where}.count")}
    if task == "classification":
        confusion = labels.get("confusion") or {}
        if not isinstance(confusion, Mapping) or len(confusion) > MAX_CONFUSION:
            raise ValidationError(f"{where}.confusion must map pred|label to counts", field=where)
        out["confusion"] = {
            str(k): _count(v, f"{where}.confusion.{k}") for k, v in confusion.items()
        }
        scores = labels.get("scores")
        if scores is not None:
            if not isinstance(scores, Mapping):
                raise ValidationError(
                    f"{where}.scores must map positive and negative to counts",
                    field=f"{where}.scores",
                )
            out["scores"] = {
                side: _counts(scores.get(side), f"{where}.scores.{side}", SCORE_BINS)
                for side in ("positive", "negative")
            }
            if any(len(c) != SCORE_BINS for c in out["scores"].values()):
                raise ValidationError(
                    f"{where}.scores: positive and negative must have {SCORE_BINS} counts each",
                    field=f"{where}.scores",
                )
    elif task == "regression":
        out["abs_err"] = _num(labels.get("abs_err", 0.0), f"{where}.abs_err")
        out["sq_err"] = _num(labels.get("sq_err", 0.0), f"{where}.sq_err")
    else:
        raise ValidationError(f"{where}.task must be classification or regression", field=where)
    return out


def _add(a: Sequence[int], b: Sequence[int]) -> list[int]:
    if len(a) != len(b):
        raise ValidationError("sketches on different bins cannot be merged", field="sketch")
    return [x + y for x, y in zip(a, b)]


def _merge_feature(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    out["missing"] = a.get("missing", 0) + b.get("missing", 0)
    out["count"] = a.get("count", 0) + b.get("count", 0)
    if a.get("kind") == "categorical" and b.get("kind") == "categorical":
        # values are matched by name: processes learn values in different orders
        values = list(a.get("values", []))
        counts = list(a.get("counts", [0]))
        for value, n in zip(b.get("values", []), b.get("counts", [])):
            if value not in values:
                values.append(value)
                counts.insert(len(values) - 1, 0)
            counts[values.index(value)] += n
        counts[-1] += (b.get("counts") or [0])[-1]
        out["values"], out["counts"] = values, counts
    elif "counts" in a and "counts" in b:
        if a.get("edges") != b.get("edges"):
            raise ValidationError("sketches on different bins cannot be merged", field="sketch")
        out["counts"] = _add(a["counts"], b["counts"])
    elif "counts" in b:
        out.update({k: b[k] for k in ("edges", "values", "counts") if k in b})
    for key in ("sum", "sumsq"):
        if key in a or key in b:
            out[key] = a.get(key, 0.0) + b.get(key, 0.0)
    if "min" in a or "min" in b:
        out["min"] = min(x for x in (a.get("min"), b.get("min")) if x is not None)
    if "max" in a or "max" in b:
        out["max"] = max(x for x in (a.get("max"), b.get("max")) if x is not None)
    return out


def merge_sketches(sketches: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The sketch of the union of the windows (or processes) the sketches describe."""
    out: dict[str, Any] = {"version": SKETCH_VERSION, "features": {}, "rejected": {}}
    for s in sketches:
        for name, f in (s.get("features") or {}).items():
            have = out["features"].get(name)
            out["features"][name] = _merge_feature(have, f) if have else dict(f)
        if s.get("prediction"):
            have = out.get("prediction")
            out["prediction"] = (
                _merge_feature(have, s["prediction"]) if have else dict(s["prediction"])
            )
        if s.get("latency"):
            lat, have = s["latency"], out.get("latency")
            if have is None:
                out["latency"] = {**lat, "counts": list(lat.get("counts", []))}
            else:
                have["count"] += lat["count"]
                have["sum"] += lat["sum"]
                have["counts"] = _add(have["counts"], lat["counts"])
        if s.get("labels"):
            out["labels"] = _merge_labels(out.get("labels"), s["labels"])
        for reason, n in (s.get("rejected") or {}).items():
            out["rejected"][reason] = out["rejected"].get(reason, 0) + n
        if s.get("rows"):
            kept = out.setdefault("rows", [])
            kept += list(s["rows"])[: MAX_ROWS - len(kept)]
    return out


def _merge_labels(a: dict[str, Any] | None, b: Mapping[str, Any]) -> dict[str, Any]:
    if a is None:
        copy = dict(b)
        if "confusion" in b:
            copy["confusion"] = dict(b["confusion"])
        if "scores" in b:
            copy["scores"] = {k: list(v) for k, v in b["scores"].items()}
        return copy
    if a["task"] != b["task"]:
        raise ValidationError("labels of a classification and a regression", field="labels")
    a["count"] += b["count"]
    if a["task"] == "regression":
        a["abs_err"] += b["abs_err"]
        a["sq_err"] += b["sq_err"]
        return a
    for k, n in (b.get("confusion") or {}).items():
        a["confusion"][k] = a["confusion"].get(k, 0) + n
    if "scores" in b:
        if "scores" not in a:
            a["scores"] = {k: list(v) for k, v in b["scores"].items()}
        else:
            a["scores"] = {k: _add(a["scores"][k], b["scores"][k]) for k in a["scores"]}
    return a


# --- drift -----------------------------------------------------------------------------------


def _prepare(
    reference: Mapping[str, Any] | None, current: Mapping[str, Any], min_count: int
) -> tuple[dict[str, Any], list[int] | None]:
    """The counts' facts, and the current counts on the reference's bins (``None`` when
    there is no verdict to compute: no reference, other bins, too few values)."""
    n = int(sum(current.get("counts") or [])) if "counts" in current else 0
    out: dict[str, Any] = {"count": n, "missing": current.get("missing", 0)}
    if reference is None or "counts" not in current:
        return {**out, "state": "no_reference"}, None
    ref = reference["counts"]
    out["reference_count"] = int(sum(ref))
    cur = list(current["counts"])
    if reference["kind"] == "categorical":
        cur = _align(reference["values"], current.get("values", []), cur)
    if len(cur) != len(ref) or (
        reference["kind"] == "numeric" and current.get("edges") != reference.get("edges")
    ):
        return {**out, "state": "no_reference"}, None  # sketched on other bins
    if n < min_count or out["reference_count"] < min_count:
        return {**out, "state": "insufficient_data"}, None
    return out, cur


def _measure(
    reference: Mapping[str, Any], todo: list[tuple[str, dict[str, Any], list[int]]]
) -> None:
    """Fill in the statistics of the features in ``todo`` (name, facts, counts), the
    numeric ones with as many bins computed together."""
    np = _np()
    stats, _ = _scipy()
    groups: dict[tuple[str, int], list[tuple[str, dict[str, Any], list[int]]]] = {}
    for item in todo:
        groups.setdefault((reference[item[0]]["kind"], len(item[2])), []).append(item)
    for (kind, _), items in groups.items():
        ref = np.asarray([reference[name]["counts"] for name, _, _ in items], dtype=float)
        cur = np.asarray([c for _, _, c in items], dtype=float)
        psis, jss = psi_many(ref, cur), jensen_shannon_many(ref, cur)
        if kind == "numeric":
            d, p = ks_many(ref, cur)
            centers = [bin_centers(reference[name]["edges"]) for name, _, _ in items]
            stds = [float(reference[name].get("std") or 0.0) for name, _, _ in items]
            ws = wasserstein_many(centers, ref, cur, stds)
            for i, (_, out, _) in enumerate(items):
                out.update(test="ks", statistic=float(d[i]), p_value=float(p[i]))
                out["wasserstein"] = float(ws[i])
        else:
            stat_df = []
            for r_row, c_row in zip(ref, cur):
                table = np.asarray([r_row, c_row])
                table = table[:, table.sum(axis=0) > 0]
                if table.shape[1] < 2:
                    stat_df.append((0.0, 0))
                    continue
                expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
                stat_df.append(
                    (float(np.sum((table - expected) ** 2 / expected)), table.shape[1] - 1)
                )
            st = np.asarray([x for x, _ in stat_df])
            dfs = np.asarray([k for _, k in stat_df])
            ps = np.where(dfs > 0, stats.chi2.sf(st, np.maximum(dfs, 1)), 1.0)
            for i, (_, out, _) in enumerate(items):
                out.update(test="chi2", statistic=float(st[i]), p_value=float(ps[i]))
        for i, (_, out, _) in enumerate(items):
            out["psi"], out["jensen_shannon"] = float(psis[i]), float(jss[i])
            out["state"] = "measured"


def feature_drift(
    reference: Mapping[str, Any] | None, current: Mapping[str, Any], min_count: int
) -> dict[str, Any]:
    """The drift statistics of one feature's window sketch against its reference bins."""
    out, cur = _prepare(reference, current, min_count)
    if cur is not None and reference is not None:
        _measure({"x": reference}, [("x", out, cur)])
    return out


def _align(values: Sequence[str], seen: Sequence[str], counts: Sequence[int]) -> list[int]:
    """Category counts on the reference's values (and its "other" bin)."""
    index = {v: i for i, v in enumerate(values)}
    out = [0] * (len(values) + 1)
    for value, n in zip(seen, counts):
        out[index.get(value, len(values))] += n
    out[-1] += counts[-1] if len(counts) > len(seen) else 0
    return out


def drift_report(
    reference: Mapping[str, Any],
    sketch: Mapping[str, Any],
    *,
    alpha: float = DEFAULT_ALPHA,
    min_count: int = DEFAULT_MIN_COUNT,
) -> dict[str, dict[str, Any]]:
    """Every feature's drift (and the prediction's, against the reference column the
    sketch's prediction names in ``column``, e.g. the training label), with
    Benjamini-Hochberg adjusted p-values and a ``drifted`` verdict (``state``: ``drift``,
    ``ok``, ``insufficient_data`` or ``no_reference``). Features with as many bins are
    computed together (one scipy call per test for all of them)."""
    result: dict[str, dict[str, Any]] = {}
    todo: list[tuple[str, dict[str, Any], list[int]]] = []
    refs: dict[str, Any] = {}
    items = list((sketch.get("features") or {}).items())
    if sketch.get("prediction") is not None:
        column = sketch["prediction"].get("column")
        items.append(("prediction", sketch["prediction"]))
        if column and column in reference:
            refs["prediction"] = reference[column]
    for name, current in items:
        ref = refs.get(name) if name == "prediction" else reference.get(name)
        out, cur = _prepare(ref, current, min_count)
        result[name] = out
        if cur is not None:
            refs[name] = ref
            todo.append((name, out, cur))
    if todo:
        _measure(refs, todo)
    measured = [k for k, v in result.items() if v["state"] == "measured"]
    adjusted = benjamini_hochberg([result[k]["p_value"] for k in measured])
    for k, p in zip(measured, adjusted):
        result[k]["p_adjusted"] = p
        result[k]["state"] = "drift" if p < alpha else "ok"
    return result


# --- performance -----------------------------------------------------------------------------


def _split(key: str) -> tuple[str, str]:
    pred, _, label = key.partition("|")
    return pred, label


def classification_metrics(confusion: Mapping[str, int], positive: str = "1") -> dict[str, Any]:
    """Accuracy and F1 from ``{"<pred>|<label>": n}``: F1 of the positive class when there
    are two classes and one of them is ``positive``, else macro F1 over the classes seen."""
    total = sum(confusion.values())
    if total == 0:
        return {}
    correct = sum(n for k, n in confusion.items() if _split(k)[0] == _split(k)[1])
    classes = sorted({c for k in confusion for c in _split(k)})

    def f1(c: str) -> float:
        tp = confusion.get(f"{c}|{c}", 0)
        fp = sum(n for k, n in confusion.items() if _split(k)[0] == c and _split(k)[1] != c)
        fn = sum(n for k, n in confusion.items() if _split(k)[1] == c and _split(k)[0] != c)
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0

    if len(classes) <= 2 and positive in classes:
        score = f1(positive)
    else:
        score = sum(f1(c) for c in classes) / len(classes)
    return {"accuracy": correct / total, "f1": score}


def auc_from_histograms(positive: Sequence[int], negative: Sequence[int]) -> float | None:
    """ROC AUC from score histograms of the positive and the negative examples: the chance a
    positive scores higher than a negative, ties (same bin) counting half."""
    p, n = sum(positive), sum(negative)
    if p == 0 or n == 0:
        return None
    below, area = 0, 0.0
    for pos, neg in zip(positive, negative):
        area += pos * (below + neg / 2)
        below += neg
    return area / (p * n)


def baseline_of(metrics: Mapping[str, Any], name: str) -> float | None:
    """The version's evaluation metric that ``name`` (accuracy, f1, auc, mae, rmse) is
    compared with: ``test_<n>``, ``eval_<n>``, ``val_<n>``, ``validation_<n>``, then ``<n>``."""
    for prefix in _PREFIXES:
        for alias in BASELINE_NAMES.get(name, (name,)):
            value = metrics.get(prefix + alias)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
    return None


def performance_report(
    labels: Mapping[str, Any] | None, baseline: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Live performance of labelled predictions, with the version's evaluation metrics and
    the difference (live minus evaluation)."""
    if not labels or not labels.get("count"):
        return None
    out: dict[str, Any] = {"task": labels["task"], "count": labels["count"]}
    if labels["task"] == "regression":
        n = labels["count"]
        out["mae"] = labels["abs_err"] / n
        out["rmse"] = math.sqrt(labels["sq_err"] / n)
    else:
        out.update(classification_metrics(labels.get("confusion") or {}))
        scores = labels.get("scores")
        if scores:
            auc = auc_from_histograms(scores["positive"], scores["negative"])
            if auc is not None:
                out["auc"] = auc
    base = {k: baseline_of(baseline, k) for k in ("accuracy", "f1", "auc", "mae", "rmse")}
    out["baseline"] = {k: v for k, v in base.items() if v is not None and k in out}
    out["delta"] = {k: out[k] - v for k, v in out["baseline"].items()}
    return out


def latency_report(latency: Mapping[str, Any] | None) -> dict[str, float]:
    """Mean and p50/p90/p99 (the upper edge of the bucket holding the quantile)."""
    if not latency or not latency.get("count"):
        return {}
    n = latency["count"]
    out = {"latency.mean": latency["sum"] / n}
    edges, counts = latency.get("edges") or [], latency.get("counts") or []
    for q in (0.5, 0.9, 0.99):
        seen, value = 0, edges[-1] if edges else 0.0
        for i, c in enumerate(counts):
            seen += c
            if seen >= q * n:
                value = edges[i] if i < len(edges) else edges[-1]
                break
        out[f"latency.p{round(q * 100)}"] = float(value)
    return out


# --- the service -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MonitoringSummary:
    """A deployment's monitoring over ``[start, end)``: its windows, drift of the merged
    sketches per feature, and performance."""

    deployment_id: str
    start: datetime | None
    end: datetime | None
    windows: list[MonitoringWindow]
    drift: dict[str, dict[str, Any]]
    performance: dict[str, Any] | None
    sample_count: int
    rejected: dict[str, int] = field(default_factory=dict)


def _metric_key(*parts: str) -> str | None:
    try:
        return check_key(".".join(parts), "metrics")
    except ValidationError:
        return None  # a feature whose name is no metric key: its drift is in `drift` only


def window_metrics(
    sample_count: int,
    drift: Mapping[str, Mapping[str, Any]],
    performance: Mapping[str, Any] | None,
    sketch: Mapping[str, Any],
) -> dict[str, float]:
    """The headline numbers of a window (what alert rules and ``/metrics`` read)."""
    out: dict[str, float] = {"sample_count": float(sample_count)}
    drifted = 0
    for name, d in drift.items():
        drifted += d["state"] == "drift"
        for stat in ("psi", "p_adjusted", "jensen_shannon", "wasserstein", "statistic"):
            key = _metric_key("drift", name, stat)
            if key is not None and d.get(stat) is not None:
                out[key] = float(d[stat])
    out["drift.features_drifted"] = float(drifted)
    for k in ("accuracy", "f1", "auc", "mae", "rmse"):
        if performance and performance.get(k) is not None:
            out[k] = float(performance[k])
    if performance:
        out["labelled_count"] = float(performance["count"])
    out.update(latency_report(sketch.get("latency")))
    out["rejected"] = float(sum((sketch.get("rejected") or {}).values()))
    return out


class MonitoringService:
    """Monitoring windows of deployments over a graph store (see the module docstring)."""

    def __init__(
        self,
        store: GraphStore,
        *,
        alpha: float = DEFAULT_ALPHA,
        min_count: int = DEFAULT_MIN_COUNT,
        actor: str = "system",
    ) -> None:
        self.store = store
        #: Who acknowledges and silences alerts through this service's own methods.
        self.actor = actor
        self.lineage = LineageService(store)
        self.alpha, self.min_count = alpha, min_count
        #: The alert rules evaluated on each window reported (set by the AlertService).
        self.alerts: AlertService | None = None

    # --- look-ups ---------------------------------------------------------------------------

    def deployment(self, ref: str) -> Deployment:
        """A deployment by id (``deployment:...``), by name, or by ``name@environment``."""
        if not isinstance(ref, str) or not ref.strip():
            raise ValidationError("deployment must be a non-empty string", field="deployment")
        if ref.startswith("deployment:"):
            node = self.store.get_nodes([ref])[0]
            if node is None or node.label != NodeKind.DEPLOYMENT.value:
                raise NotFoundError(f"no deployment {ref!r}", ids=[ref])
            return Deployment.from_node(node)
        where: dict[str, Any] = {"name": ref}
        found = self.store.find_nodes(NodeKind.DEPLOYMENT.value, where, limit=20).items
        if not found and "@" in ref:
            name, _, env = ref.rpartition("@")
            found = self.store.find_nodes(
                NodeKind.DEPLOYMENT.value, {"name": name, "environment": env}, limit=20
            ).items
        if not found:
            raise NotFoundError(f"no deployment {ref!r}", ids=[ref])
        if len(found) > 1:
            envs = ", ".join(sorted(str(n.props.get("environment")) for n in found))
            raise ValidationError(
                f"deployment {ref!r} names {len(found)} deployments (environments {envs}): "
                f"write {ref}@<environment> or the deployment's id",
                field="deployment",
            )
        return Deployment.from_node(found[0])

    def served_version(self, deployment_id: str, at: datetime | None = None) -> str | None:
        """The id of the version the deployment served at ``at`` (default: now)."""
        adjacent = self.store.neighbors(
            [deployment_id], Direction.UPSTREAM, [EdgeKind.SERVES.value]
        )[deployment_id]
        when = to_iso(at or datetime.now(timezone.utc))
        best: tuple[str, str] | None = None
        for a in adjacent:
            start = str(a.edge.props.get("valid_from", ""))
            end = a.edge.props.get("valid_to")
            serving = start <= when and (end is None or when < str(end))
            if serving and (best is None or start > best[0]):
                best = (start, a.node.id)
        if best is None and adjacent:
            # a time no interval covers (traffic replayed or back-filled from before the
            # deployment was recorded): the version it serves now, else its latest
            current = [a for a in adjacent if a.edge.props.get("valid_to") is None]
            best = max(
                (str(a.edge.props.get("valid_from", "")), a.node.id) for a in current or adjacent
            )
        return best[1] if best else None

    def training_data(self, version_id: str) -> list[str]:
        """The dataset versions the runs that generated the version used for training."""
        runs = self.store.neighbors([version_id], Direction.UPSTREAM, [EdgeKind.GENERATED_BY.value])
        run_ids = [a.node.id for a in runs[version_id] if a.node.label == NodeKind.RUN.value]
        if not run_ids:
            return []
        used = self.store.neighbors(run_ids, Direction.UPSTREAM, [EdgeKind.USED.value])
        return [
            a.node.id
            for rid in run_ids
            for a in used[rid]
            if a.node.label == NodeKind.DATASET_VERSION.value
            and a.edge.props.get("role") == "train"
        ]

    def reference(self, deployment: str, dataset: str | None = None) -> MonitoringReference:
        """What ``deployment`` is monitored against: ``dataset`` (a dataset version
        reference) if given, else the first training dataset version of the served version
        that has a profile. A deployment without one is monitored without drift."""
        dep = self.deployment(deployment)
        version_id = self.served_version(dep.id)
        metrics: dict[str, Any] = {}
        if version_id is not None:
            metrics = dict(ModelVersion.from_node(self.store.get_node(version_id)).metrics)
        candidates: list[str]
        if dataset is not None:
            dsv = self.lineage.resolve(dataset)
            node = self.store.get_node(dsv)
            if node.label == NodeKind.DATASET.value:  # a dataset: its latest version
                dsv = self.lineage.resolve(f"{dsv}@latest")
                node = self.store.get_node(dsv)
            if node.label != NodeKind.DATASET_VERSION.value:
                raise ValidationError(f"{dataset!r} is not a dataset version", field="dataset")
            candidates = [dsv]
        else:
            candidates = self.training_data(version_id) if version_id else []
        for dsv in candidates:
            node = self.store.get_node(dsv)
            profile = node.props.get("profile")
            if profile or dataset is not None:
                return MonitoringReference(
                    dep.id, version_id, dsv, reference_features(profile), metrics
                )
        return MonitoringReference(dep.id, version_id, None, {}, metrics)

    def window(self, window_id: str) -> MonitoringWindow | None:
        """A window by id, or ``None``."""
        if not isinstance(window_id, str) or not window_id.startswith("window:"):
            raise ValidationError("give a window id (window:...)", field="window_id")
        node = self.store.get_nodes([window_id])[0]
        return MonitoringWindow.from_node(node) if node is not None else None

    # --- reporting --------------------------------------------------------------------------

    def report_window(
        self,
        deployment: str,
        start: datetime,
        end: datetime,
        sketch: Mapping[str, Any],
        *,
        instance: str = "default",
        reference: str | None = None,
    ) -> MonitoringWindow:
        """Record (or replace: the id is :func:`monitoring_window_id`) the window
        ``[start, end)`` that ``instance`` observed of ``deployment``, with its drift and
        performance computed here. Idempotent: the same report again changes nothing."""
        if not isinstance(start, datetime) or not isinstance(end, datetime):
            raise ValidationError("start and end must be datetimes", field="start")
        if not end > start or end - start > MAX_WINDOW:
            raise ValidationError(
                f"end must be after start, by at most {MAX_WINDOW.days} days", field="end"
            )
        checked = check_sketch(sketch)
        dep = self.deployment(deployment)
        ref = self.reference(dep.id, reference)
        version_id = self.served_version(dep.id, start) or ref.model_version
        sample_count = max(
            [f["count"] for f in checked["features"].values()]
            + [checked.get("prediction", {}).get("count", 0)]
        )
        drift: dict[str, Any] = {}
        if ref.features and _has_scipy():
            drift = drift_report(
                ref.features,
                checked,
                alpha=self.alpha,
                min_count=self.min_count,
            )
        perf = performance_report(checked.get("labels"), ref.metrics)
        seconds = int((end - start).total_seconds())
        window = MonitoringWindow(
            id=monitoring_window_id(dep.id, instance, start, seconds),
            start=start,
            end=end,
            sample_count=sample_count,
            metrics=window_metrics(sample_count, drift, perf, checked),
            feature_stats=checked,
            deployment=dep.id,
            instance=instance,
            model_version=version_id,
            reference=ref.dataset_version,
            drift=drift or None,
            performance=perf,
        )
        with self.store.transaction():
            self.store.upsert_nodes([window.to_node()])
            self.store.upsert_edges([make_edge(EdgeKind.OBSERVED, window, dep, event_time=end)])
        # Alerts after the window is stored, in their own (audited) transactions: a window is
        # an observation, replaced by the next report, never a record of the audit log.
        if self.alerts is not None:
            self.alerts.evaluate(dep, window)
        return window

    # --- reading ----------------------------------------------------------------------------

    def windows(
        self,
        deployment: str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = 1000,
    ) -> list[MonitoringWindow]:
        """The deployment's windows that start in ``[start, end)``, oldest first (the first
        ``limit``; ``None``: all of them, read a page at a time)."""
        dep = self.deployment(deployment)
        where: dict[str, Any] = {"deployment": dep.id}
        bounds: dict[str, str] = {}
        if start is not None:
            bounds["$gte"] = to_iso(start, "from")
        if end is not None:
            bounds["$lt"] = to_iso(end, "to")
        if bounds:
            where["start"] = bounds
        order = ["start", "instance"]
        if limit is None:
            nodes = self.store.iter_nodes(
                NodeKind.MONITORING_WINDOW.value, where, order, page_size=1000
            )
            return [MonitoringWindow.from_node(n) for n in nodes]
        page = self.store.find_nodes(NodeKind.MONITORING_WINDOW.value, where, order, limit=limit)
        return [MonitoringWindow.from_node(n) for n in page.items]

    def summary(
        self, deployment: str, start: datetime | None = None, end: datetime | None = None
    ) -> MonitoringSummary:
        """Drift and performance of the merged windows of ``[start, end)``."""
        dep = self.deployment(deployment)
        windows = self.windows(dep.id, start, end, limit=None)  # every one the range holds
        # drift of the windows sketched on the latest reference (a new version may bring
        # other training data, and other bins)
        latest = windows[-1].reference if windows else None
        same = [w for w in windows if w.reference == latest]
        # labels of one task: processes that took the model for another (a classifier's
        # probabilities read as a regression) are left out of the performance, not fatal
        tasks = [_task(w.feature_stats) for w in same]
        task = next((t for t in reversed(tasks) if t is not None), None)
        merged = merge_sketches(
            w.feature_stats if t in (None, task) else _without_labels(w.feature_stats)
            for w, t in zip(same, tasks)
        )
        ref = self.reference(dep.id, latest)
        drift = (
            drift_report(ref.features, merged, alpha=self.alpha, min_count=self.min_count)
            if ref.features
            else {}
        )
        return MonitoringSummary(
            dep.id,
            start,
            end,
            windows,
            drift,
            performance_report(merged.get("labels"), ref.metrics),
            sum(w.sample_count or 0 for w in windows),
            merged.get("rejected", {}),
        )

    # --- alerts (through the AlertService, as this service's actor) ----------------------

    def _alert_service(self) -> AlertService:
        if self.alerts is None:
            from lineagehub.services.alerts import AlertService

            AlertService(self)  # sets self.alerts
        assert self.alerts is not None
        return self.alerts

    def list_alerts(
        self, deployment: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[Alert]:
        """Alerts, newest first (``state``: pending, firing, acknowledged, resolved or open)."""
        return self._alert_service().find(deployment, state, limit)

    def acknowledge_alert(self, alert_id: str, comment: str | None = None) -> Alert:
        """Mark a firing alert acknowledged (someone is on it)."""
        return self._alert_service().acknowledge(alert_id, self.actor, comment)

    def silence_alert(self, alert_id: str, until: datetime) -> Alert:
        """No notifications about the alert until ``until``."""
        return self._alert_service().silence(alert_id, until, self.actor)

    def active_deployments(self) -> list[Deployment]:
        """Deployments that are active (what ``/metrics`` reports on)."""
        page = self.store.find_nodes(
            NodeKind.DEPLOYMENT.value, {"status": DeploymentStatus.ACTIVE.value}, limit=1000
        )
        return [Deployment.from_node(n) for n in page.items]


def _task(sketch: Mapping[str, Any] | None) -> str | None:
    labels = (sketch or {}).get("labels")
    return labels.get("task") if isinstance(labels, Mapping) else None


def _without_labels(sketch: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sketch.items() if k != "labels"}


def _has_scipy() -> bool:
    try:
        _scipy()
    except ConfigError:
        return False
    return True


__all__ = [
    "MonitoringReference",
    "MonitoringService",
    "MonitoringSummary",
    "auc_from_histograms",
    "benjamini_hochberg",
    "bin_centers",
    "check_sketch",
    "chi_square",
    "classification_metrics",
    "drift_report",
    "feature_drift",
    "jensen_shannon",
    "ks_binned",
    "merge_sketches",
    "performance_report",
    "psi",
    "reference_features",
    "wasserstein_normed",
]
