"""The serving side of monitoring: ``mon = lh.monitor("churn@prod")`` in a model server.

::

    mon = client.monitor("churn", window=3600)          # a deployment id, name or name@env
    mon.log_predictions(features_df, predictions, ids=request_ids, scores=proba[:, 1])
    mon.log_labels(request_ids, outcomes)                # ground truth, whenever it arrives
    mon.log_latency(0.012)

What is logged is aggregated here, in memory, into one sketch per window of ``window``
seconds (aligned to the epoch, so every process cuts the same windows): counts on the
reference's bins (the training data's column profile, fetched once), missing values, category
counts, latency buckets, and for labelled predictions a confusion matrix and score histograms
(classification) or error sums (regression). Raw rows are not kept or sent, unless asked:
``keep_rows=N`` keeps each window's first N rows (at most 1,000) with it. A background
thread reports each changed window every ``flush_interval`` seconds
(:meth:`~lineagehub.ingest.seam.Monitoring.report_window`), where the hub computes drift and
performance.

The serving code is never broken by it: ``log_*`` calls never raise (unless ``strict=True``)
and never wait for the hub. Bad input (wrong shapes, unknown features, NaN predictions, labels
for ids never predicted) is a counted rejection, by reason, in :attr:`Monitor.rejected` and in
the window; a flush that fails is counted in :attr:`Monitor.errors` and retried at the next.
Memory is bounded: at most ``max_windows`` windows are held (the oldest, once reported, go
first) and at most ``max_pending_labels`` prediction ids wait for their labels (the oldest are
forgotten first).

A window's id is a hash of the deployment, ``instance``, its start and length
(:func:`lineagehub.vocabulary.monitoring_window_id`), and each report carries the whole window,
so a retried or repeated report counts nothing twice. ``instance`` (default: host and process
id) names the serving process: give a stable one (a pod's name) and a restarted process adds to
the windows its predecessor reported instead of starting them again; two processes alive at
once need two instances.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import logging
import math
import os
import socket
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from lineagehub.graph import ConfigError, ValidationError
from lineagehub.services.monitoring import (
    LATENCY_EDGES,
    SCORE_BINS,
    SKETCH_VERSION,
    MonitoringReference,
    merge_sketches,
)
from lineagehub.vocabulary import monitoring_window_id

if TYPE_CHECKING:
    import numpy as np

    from lineagehub.ingest.seam import Monitoring

log = logging.getLogger("lineagehub.monitor")

#: Distinct values a categorical feature without reference values (or a prediction) keeps
#: before the rest count as "other".
MAX_LEARNED_VALUES = 50
#: Numbers beyond this magnitude count as missing: their squares, summed, would not be finite.
MAX_MAGNITUDE = 1e150
#: Raw rows a window may keep at most (``keep_rows``).
MAX_KEPT_ROWS = 1000
#: Batches of at most this many rows are counted value by value in Python (numpy and pandas
#: cost more per call than they save below it).
SMALL_BATCH = 16
#: Names of features not in the reference remembered (for :attr:`Monitor.unknown_features`).
MAX_UNKNOWN_NAMES = 100


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy is part of the extra
        raise ConfigError("monitoring needs numpy: pip install 'lineagehub[monitoring]'") from None
    return numpy


def _category_keys(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Category keys (text, as the reference writes them) and the missing mask."""
    np = _numpy()
    kind = values.dtype.kind
    if kind == "b":
        return values.astype(np.int8).astype(str), np.zeros(len(values), bool)
    if kind in "iu":
        return values.astype(str), np.zeros(len(values), bool)
    if kind == "f":
        missing = ~np.isfinite(values)
        keys = np.empty(len(values), dtype=object)
        whole = ~missing & (values == np.round(values))
        keys[whole] = values[whole].astype(np.int64).astype(str)
        rest = ~missing & ~whole
        keys[rest] = values[rest].astype(str)
        keys[missing] = ""
        return keys.astype(str), missing
    out, missing = [], []
    for v in values.tolist():
        gone = v is None or (isinstance(v, float) and not math.isfinite(v))
        missing.append(gone)
        if gone:
            out.append("")
        elif isinstance(v, bool) or (isinstance(v, float) and v.is_integer()):
            out.append(str(int(v)))
        else:
            out.append(str(v))
    return np.asarray(out, dtype=str), np.asarray(missing, dtype=bool)


def _value_counts(values: np.ndarray) -> tuple[int, list[tuple[str, int]]]:
    """How many values are missing, and the count of each category key (as the reference
    writes them): numbers counted by numpy, other values hashed by pandas when it is there."""
    np = _numpy()
    kind = values.dtype.kind
    if kind in "biu":
        uniq, counts = np.unique(values, return_counts=True)
        return 0, [(str(int(u)), int(n)) for u, n in zip(uniq.tolist(), counts.tolist())]
    if kind == "f":
        finite = values[np.isfinite(values)]
        uniq, counts = np.unique(finite, return_counts=True)
        keys = [str(int(u)) if u.is_integer() else str(u) for u in uniq.tolist()]
        return len(values) - len(finite), list(zip(keys, counts.tolist()))
    try:
        import pandas as pd
    except ImportError:
        texts, gone = _category_keys(values)
        uniq, counts = np.unique(texts[~gone], return_counts=True)
        return int(gone.sum()), list(zip(uniq.tolist(), counts.tolist()))
    series = pd.Series(values, copy=False)
    found = series.value_counts(dropna=True)
    pairs: dict[str, int] = {}
    for value, n in zip(found.index.tolist(), found.tolist()):
        key = _key(value)
        pairs[key] = pairs.get(key, 0) + int(n)
    return len(values) - int(found.sum()), list(pairs.items())


def _json_value(v: Any) -> Any:
    if hasattr(v, "item") and not isinstance(v, str):
        v = v.item()  # a numpy scalar
    if v is None or isinstance(v, (bool, int, str)):
        return v if not isinstance(v, str) else v[:1000]
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    return str(v)[:1000]


def _key(v: Any) -> str:
    if isinstance(v, bool) or (isinstance(v, float) and v.is_integer()):
        return str(int(v))
    return str(v)


def _as_float(values: np.ndarray) -> np.ndarray | None:
    np = _numpy()
    if values.dtype.kind in "biuf":
        return values.astype(float)
    try:
        return np.asarray([np.nan if v is None else v for v in values.tolist()], dtype=float)
    except (TypeError, ValueError):
        return None


class _Numeric:
    """Counts on the reference's bins (or only moments without a reference)."""

    def __init__(self, edges: Sequence[float] | None) -> None:
        np = _numpy()
        self.edges = None if edges is None else np.asarray(edges, dtype=float)
        self.edges_list = None if edges is None else [float(e) for e in edges]
        self.counts = None if edges is None else np.zeros(len(edges) + 1, dtype=np.int64)
        self.missing = self.count = 0
        self.sum = self.sumsq = 0.0
        self.min = self.max = math.nan

    def add(self, values: np.ndarray) -> None:
        np = _numpy()
        # finite, and small enough that sums of squares stay finite: a value beyond
        # MAX_MAGNITUDE (1e200 in a float column) counts as missing, not as the window's end
        finite = np.isfinite(values) & (np.abs(values) <= MAX_MAGNITUDE)
        present = values[finite]
        self.count += len(values)
        self.missing += int(len(values) - len(present))
        if not len(present):
            return
        self.sum += float(present.sum())
        self.sumsq += float(np.dot(present, present))
        lo, hi = float(present.min()), float(present.max())
        self.min = lo if math.isnan(self.min) else min(self.min, lo)
        self.max = hi if math.isnan(self.max) else max(self.max, hi)
        if self.edges is not None and self.counts is not None:
            idx = np.searchsorted(self.edges, present, side="right")
            idx[present == self.edges[-1]] = len(self.edges) - 1  # the last bin is closed
            self.counts += np.bincount(idx, minlength=len(self.counts))

    def add_small(self, values: list[Any]) -> bool:
        """A few values, in Python (cheaper than numpy below a few dozen); ``False`` when
        one is not a number (nothing is counted then)."""
        floats = []
        for v in values:
            if v is None:
                floats.append(math.nan)
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                floats.append(float(v))
            elif hasattr(v, "item") and isinstance(v.item(), (int, float)):  # numpy scalar
                floats.append(float(v.item()))
            else:
                return False
        edges = self.edges_list
        last = len(edges) - 1 if edges is not None else 0
        self.count += len(floats)
        for v in floats:
            if not math.isfinite(v) or abs(v) > MAX_MAGNITUDE:
                self.missing += 1
                continue
            self.sum += v
            self.sumsq += v * v
            self.min = v if math.isnan(self.min) else min(self.min, v)
            self.max = v if math.isnan(self.max) else max(self.max, v)
            if edges is not None and self.counts is not None:
                i = bisect.bisect_right(edges, v)
                self.counts[last if v == edges[last] else i] += 1
        return True

    def sketch(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "numeric", "missing": self.missing, "count": self.count}
        if self.edges is not None and self.counts is not None:
            out["edges"] = self.edges.tolist()
            out["counts"] = self.counts.tolist()
        if not math.isnan(self.min):
            out.update(sum=self.sum, sumsq=self.sumsq, min=self.min, max=self.max)
        return out


class _Categorical:
    """Counts of the reference's values and an "other" bin (values learned, up to a bound,
    when there is no reference)."""

    def __init__(self, values: Sequence[str] | None) -> None:
        self.learn = values is None
        self.values: list[str] = list(values or [])
        self.index = {v: i for i, v in enumerate(self.values)}
        self.counts: list[int] = [0] * (len(self.values) + 1)
        self.missing = self.count = 0

    def add(self, values: np.ndarray) -> None:
        self.count += len(values)
        missing, pairs = _value_counts(values)
        self.missing += missing
        for key, n in pairs:
            self._count(key, n)

    def add_small(self, values: list[Any]) -> bool:
        """A few values, in Python."""
        self.count += len(values)
        for v in values:
            if hasattr(v, "item") and not isinstance(v, str):
                v = v.item()  # a numpy scalar
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                self.missing += 1
                continue
            self._count(_key(v), 1)
        return True

    def _count(self, key: str, n: int) -> None:
        i = self.index.get(key)
        if i is None and self.learn and len(self.values) < MAX_LEARNED_VALUES:
            i = self.index[key] = len(self.values)
            self.values.append(key)
            self.counts.insert(i, 0)
        self.counts[i if i is not None else -1] += n

    def sketch(self) -> dict[str, Any]:
        return {
            "kind": "categorical",
            "values": list(self.values),
            "counts": list(self.counts),
            "missing": self.missing,
            "count": self.count,
        }


class _Labels:
    def __init__(self, task: str) -> None:
        self.task = task
        self.count = 0
        self.confusion: dict[str, int] = {}
        self.positive = [0] * SCORE_BINS
        self.negative = [0] * SCORE_BINS
        self.scored = False
        self.abs_err = self.sq_err = 0.0

    def add(self, prediction: Any, label: Any, score: float | None) -> bool:
        """Count a labelled prediction; False (nothing counted) for a regression whose error
        is not a finite number (a NaN prediction, values beyond :data:`MAX_MAGNITUDE`)."""
        if self.task == "regression":
            err = float(prediction) - float(label)
            if not math.isfinite(err) or abs(err) > MAX_MAGNITUDE:
                return False
            self.count += 1
            self.abs_err += abs(err)
            self.sq_err += err * err
            return True
        self.count += 1
        key = f"{prediction}|{label}"
        if key in self.confusion or len(self.confusion) < 10_000:
            self.confusion[key] = self.confusion.get(key, 0) + 1
        if score is not None and math.isfinite(score):  # a NaN score is no score
            self.scored = True
            b = min(max(int(score * SCORE_BINS), 0), SCORE_BINS - 1)
            (self.positive if label == "1" else self.negative)[b] += 1
        return True

    def sketch(self) -> dict[str, Any]:
        if self.task == "regression":
            return {
                "task": "regression",
                "count": self.count,
                "abs_err": self.abs_err,
                "sq_err": self.sq_err,
            }
        out: dict[str, Any] = {
            "task": "classification",
            "count": self.count,
            "confusion": dict(self.confusion),
        }
        if self.scored:
            out["scores"] = {"positive": list(self.positive), "negative": list(self.negative)}
        return out


class _Window:
    def __init__(self, start: int) -> None:
        self.start = start
        self.features: dict[str, _Numeric | _Categorical] = {}
        self.prediction: _Numeric | _Categorical | None = None
        self.latency_count = 0
        self.latency_sum = 0.0
        self.latency = [0] * (len(LATENCY_EDGES) + 1)
        self.labels: _Labels | None = None
        self.rejected: dict[str, int] = {}
        self.dirty = False
        self.reported = False
        self.rows: list[dict[str, Any]] = []

    def sketch(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": SKETCH_VERSION,
            "features": {k: f.sketch() for k, f in self.features.items()},
            "rejected": dict(self.rejected),
        }
        if self.prediction is not None:
            out["prediction"] = self.prediction.sketch()
        if self.latency_count:
            out["latency"] = {
                "count": self.latency_count,
                "sum": self.latency_sum,
                "edges": list(LATENCY_EDGES),
                "counts": list(self.latency),
            }
        if self.rows:
            out["rows"] = list(self.rows)
        if self.labels is not None and self.labels.count:
            out["labels"] = self.labels.sketch()
        return out


class Monitor:
    """Aggregates what a deployment serves into windows and reports them in the background
    (see the module docstring). Made by :meth:`lineagehub.ingest.client.Client.monitor`."""

    def __init__(
        self,
        monitoring: Monitoring,
        deployment: str,
        *,
        dataset: str | None = None,
        window: float = 3600,
        instance: str | None = None,
        flush_interval: float | None = 30.0,
        prediction_column: str | None = None,
        task: str | None = None,
        feature_names: Sequence[str] | None = None,
        max_windows: int = 48,
        max_pending_labels: int = 100_000,
        keep_rows: int = 0,
        strict: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(window, bool) or not isinstance(window, (int, float)) or window < 1:
            raise ValidationError("window must be at least 1 second", field="window")
        if task not in (None, "classification", "regression"):
            raise ValidationError("task must be classification or regression", field="task")
        for name, value in (("max_windows", max_windows), ("max_pending", max_pending_labels)):
            if not isinstance(value, int) or value < 1:
                raise ValidationError(f"{name} must be a positive integer", field=name)
        self.monitoring = monitoring
        #: The reference (bins, version, training data): unknown deployments fail here.
        self.reference: MonitoringReference = monitoring.reference(deployment, dataset)
        self.deployment_id = self.reference.deployment_id
        self.dataset = dataset
        self.window_seconds = int(window)
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}"
        self.prediction_column = prediction_column
        if prediction_column is not None and prediction_column not in self.reference.features:
            raise ValidationError(
                f"prediction_column {prediction_column!r} is not a column of the reference "
                f"({', '.join(sorted(self.reference.features)) or 'none'})",
                field="prediction_column",
            )
        self.task = task
        self.feature_names = list(feature_names) if feature_names is not None else None
        self.max_windows, self.max_pending = max_windows, max_pending_labels
        if not isinstance(keep_rows, int) or not 0 <= keep_rows <= MAX_KEPT_ROWS:
            raise ValidationError(
                f"keep_rows must be between 0 and {MAX_KEPT_ROWS}", field="keep_rows"
            )
        #: Raw rows kept per window (the first ones), sent with it: none unless asked.
        self.keep_rows = keep_rows
        self.strict, self.clock = strict, clock
        #: Values refused, by reason, since the monitor started.
        self.rejected: dict[str, int] = {}
        #: Flushes that failed (the windows stay and are sent again at the next).
        self.errors = 0
        self.last_error: BaseException | None = None
        #: Names logged that the reference does not have.
        self.unknown_features: set[str] = set()
        self.dropped_windows = 0
        self._windows: dict[int, _Window] = {}
        self._pending: OrderedDict[str, tuple[int, Any, float | None]] = OrderedDict()
        self._bases: dict[int, dict[str, Any] | None] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if flush_interval is not None:
            if flush_interval <= 0:
                raise ValidationError("flush_interval must be positive", field="flush_interval")
            self._thread = threading.Thread(
                target=self._run, args=(float(flush_interval),), daemon=True, name="lh-monitor"
            )
            self._thread.start()
        _monitors.add(self)

    def __repr__(self) -> str:
        return f"Monitor({self.deployment_id!r}, instance={self.instance!r})"

    # --- logging ---------------------------------------------------------------------------

    def _reject(self, window: _Window | None, reason: str, n: int, error: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + n
        if window is not None:
            window.rejected[reason] = window.rejected.get(reason, 0) + n
            window.dirty = True
        if self.strict:
            raise ValidationError(error, field=reason.split(":")[0])
        log.debug("monitor %s: %s", self.deployment_id, error)

    def _starts(self, timestamps: Any, n: int) -> np.ndarray:
        np = _numpy()
        if timestamps is None:
            now = self.clock()
            return np.full(n, int(now // self.window_seconds) * self.window_seconds, np.int64)
        ts = np.asarray(timestamps)
        if ts.shape != (n,):
            raise ValidationError(
                f"timestamps has shape {ts.shape}, expected ({n},)", field="timestamps"
            )
        if ts.dtype.kind == "M":
            seconds = ts.astype("datetime64[ms]").astype(np.int64) / 1000.0
        elif ts.dtype.kind == "O":
            seconds = np.asarray([_epoch(t) for t in ts.tolist()], dtype=float)
        else:
            seconds = ts.astype(float)
        if not np.all(np.isfinite(seconds)):
            raise ValidationError("timestamps must be finite", field="timestamps")
        return (np.floor(seconds / self.window_seconds) * self.window_seconds).astype(np.int64)

    def _window(self, start: int) -> _Window:
        w = self._windows.get(start)
        if w is None:
            w = self._windows[start] = _Window(start)
            self._bound()
        return w

    def _bound(self) -> None:
        while len(self._windows) > self.max_windows:
            reported = [s for s, w in self._windows.items() if not w.dirty]
            oldest = min(reported or self._windows)
            if self._windows[oldest].dirty:
                self.dropped_windows += 1
            del self._windows[oldest]
            self._bases.pop(oldest, None)

    def _columns(self, features: Any, n: int | None) -> dict[str, Any]:
        """Features as named 1-D arrays (DataFrame, mapping of columns, 2-D array, records)."""
        np = _numpy()
        if hasattr(features, "columns") and hasattr(features, "iloc"):  # a DataFrame
            if len(features) <= SMALL_BATCH:  # a request or two: plain values, no arrays
                columns = features.to_numpy(dtype=object).T.tolist()  # one conversion
                return dict(zip(map(str, features.columns), columns))
            return {str(c): features[c].to_numpy() for c in features.columns}
        if isinstance(features, Mapping):
            return {str(k): np.asarray(v) for k, v in features.items()}
        if isinstance(features, np.ndarray) and features.ndim == 2:
            names = self.feature_names or list(self.reference.features)
            if features.shape[1] != len(names):
                raise ValidationError(
                    f"features has {features.shape[1]} columns, the monitor knows "
                    f"{len(names)} feature names: pass feature_names= or a DataFrame",
                    field="features",
                )
            return {name: features[:, i] for i, name in enumerate(names)}
        if isinstance(features, Sequence) and not isinstance(features, (str, bytes)):
            rows = list(features)
            if not all(isinstance(r, Mapping) for r in rows):
                raise ValidationError("records must be mappings", field="features")
            names = list(dict.fromkeys(k for r in rows for k in r))
            if len(rows) <= SMALL_BATCH:
                return {str(k): [r.get(k) for r in rows] for k in names}
            return {str(k): np.asarray([r.get(k) for r in rows], dtype=object) for k in names}
        raise ValidationError(
            f"features must be a DataFrame, a mapping of columns, a 2-D array or records, "
            f"not {type(features).__name__}",
            field="features",
        )

    def log_predictions(
        self,
        features: Any,
        predictions: Any = None,
        ids: Sequence[Any] | None = None,
        timestamps: Any = None,
        scores: Any = None,
    ) -> int:
        """Count a batch of served predictions (``features`` as a DataFrame, a mapping of
        columns, a 2-D array or records; ``predictions`` one per row; ``ids`` to join labels
        later; ``timestamps`` as datetimes, numpy datetimes or epoch seconds, default now;
        ``scores`` the positive class's probability, for AUC). Returns the rows accepted;
        never raises unless the monitor is ``strict``."""
        try:
            return self._log_predictions(features, predictions, ids, timestamps, scores)
        except ValidationError as e:
            with self._lock:
                self._reject(None, f"invalid:{e.field or 'input'}", 1, str(e))
            return 0
        except Exception as e:  # never into the serving code
            if self.strict:
                raise
            with self._lock:
                self.rejected["error"] = self.rejected.get("error", 0) + 1
                self.last_error = e
            log.warning("monitor %s: log_predictions failed: %r", self.deployment_id, e)
            return 0

    def _log_predictions(
        self, features: Any, predictions: Any, ids: Any, timestamps: Any, scores: Any
    ) -> int:
        np = _numpy()
        columns = self._columns(features, None) if features is not None else {}
        lengths = {len(v) for v in columns.values()}
        preds = None if predictions is None else np.asarray(predictions)
        if preds is not None:
            if preds.ndim == 2 and preds.shape[1] == 1:
                preds = preds[:, 0]
            if preds.ndim != 1:
                raise ValidationError(
                    f"predictions must be one per row, got shape {preds.shape}",
                    field="predictions",
                )
            lengths.add(len(preds))
        if len(lengths) != 1:
            raise ValidationError(
                f"features and predictions have different lengths {sorted(lengths)}",
                field="shape",
            )
        n = lengths.pop()
        if n == 0:
            return 0
        score_arr = None if scores is None else np.asarray(scores, dtype=float)
        if score_arr is not None and score_arr.shape != (n,):
            raise ValidationError(f"scores must have shape ({n},)", field="scores")
        id_list = None if ids is None else [str(i) for i in ids]
        if id_list is not None and len(id_list) != n:
            raise ValidationError(f"ids must have {n} entries", field="ids")
        starts = self._starts(timestamps, n)
        groups = [(int(s), starts == s) for s in np.unique(starts)]
        if self.task is None and preds is not None:
            self.task = _infer_task(preds)
        pred_keys = None
        if preds is not None and self.task == "classification":
            pred_keys, _ = _category_keys(preds)
        with self._lock:
            for start, mask in groups:
                whole = len(groups) == 1
                w = self._window(start)
                w.dirty = True
                for name, values in columns.items():
                    if whole:
                        part = values
                    elif isinstance(values, list):
                        part = [v for v, keep in zip(values, mask.tolist()) if keep]
                    else:
                        part = values[mask]
                    self._add_feature(w, name, part)
                if preds is not None:
                    self._add_prediction(w, preds if whole else preds[mask])
                if self.keep_rows and len(w.rows) < self.keep_rows:
                    self._keep(w, columns, preds, id_list, mask)
            if id_list is not None and preds is not None:
                self._remember(id_list, starts, preds, pred_keys, score_arr)
        return n

    def _keep(self, w: _Window, columns: dict[str, Any], preds: Any, ids: Any, mask: Any) -> None:
        """The window's first raw rows, as JSON (non-finite numbers as null), up to
        ``keep_rows``: what the sketches cannot answer later (which requests?)."""
        room = self.keep_rows - len(w.rows)
        picked = [i for i, keep in enumerate(mask.tolist()) if keep][:room]
        for i in picked:
            row: dict[str, Any] = {k: _json_value(v[i]) for k, v in columns.items()}
            if preds is not None:
                row["prediction"] = _json_value(preds[i])
            if ids is not None:
                row["id"] = ids[i]
            w.rows.append(row)

    def _add_feature(self, w: _Window, name: str, values: Any) -> None:
        acc = w.features.get(name)
        if acc is None:
            ref = self.reference.features.get(name)
            if ref is None and self.reference.features:
                if len(self.unknown_features) < MAX_UNKNOWN_NAMES:
                    self.unknown_features.add(name)
                self._reject(
                    w,
                    "unknown_feature",
                    len(values),
                    f"feature {name!r} is not in the reference "
                    f"({self.reference.dataset_version}): its values are not counted",
                )
                return
            acc = self._accumulator(ref, values)
            w.features[name] = acc
        self._add(w, name, acc, values)

    def _accumulator(self, ref: Mapping[str, Any] | None, values: Any) -> _Numeric | _Categorical:
        if ref is not None:
            if ref["kind"] == "numeric":
                return _Numeric(ref["edges"])
            return _Categorical(ref["values"])
        if isinstance(values, list):
            numeric = all(
                v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                for v in values
            )
            return _Numeric(None) if numeric else _Categorical(None)
        return _Numeric(None) if values.dtype.kind in "biuf" else _Categorical(None)

    def _add(self, w: _Window, name: str, acc: _Numeric | _Categorical, values: Any) -> None:
        if isinstance(values, list):  # a small batch: counted value by value
            if not acc.add_small(values):
                self._reject(
                    w, "not_numeric", len(values), f"feature {name!r} has non-numeric values"
                )
            return
        if isinstance(acc, _Numeric):
            floats = _as_float(values)
            if floats is None:
                self._reject(
                    w, "not_numeric", len(values), f"feature {name!r} has non-numeric values"
                )
                return
            acc.add(floats)
        else:
            acc.add(values)

    def _add_prediction(self, w: _Window, preds: Any) -> None:
        if w.prediction is None:
            ref = (
                self.reference.features.get(self.prediction_column)
                if self.prediction_column
                else None
            )
            if ref is None and self.task == "classification":
                w.prediction = _Categorical(None)
            else:
                w.prediction = self._accumulator(ref, preds)
        if isinstance(w.prediction, _Numeric):
            floats = _as_float(preds)
            if floats is None:
                self._reject(w, "not_numeric", len(preds), "predictions are not numeric")
                return
            bad = int((~_numpy().isfinite(floats)).sum())
            if bad:
                self._reject(w, "nan_prediction", bad, f"{bad} predictions are NaN or infinite")
            w.prediction.add(floats)
        else:
            w.prediction.add(preds)

    def _remember(self, ids: list[str], starts: Any, preds: Any, keys: Any, scores: Any) -> None:
        values = keys.tolist() if keys is not None else preds.astype(float).tolist()
        sc = scores.tolist() if scores is not None else [None] * len(ids)
        self._pending.update(zip(ids, zip(starts.tolist(), values, sc)))
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)
            self.rejected["label_forgotten"] = self.rejected.get("label_forgotten", 0) + 1

    def log_labels(self, ids: Sequence[Any], labels: Any) -> int:
        """The ground truth of earlier predictions, joined by id (each counted in the window
        of its prediction). Returns how many were matched; unknown ids, ids already
        labelled and ids forgotten are counted rejections (``unknown_id``)."""
        try:
            np = _numpy()
            id_list = [str(i) for i in ids]
            arr = np.asarray(labels)
            if arr.shape != (len(id_list),):
                raise ValidationError(
                    f"labels has shape {arr.shape}, expected ({len(id_list)},)", field="labels"
                )
            if self.task == "regression":
                keys: list[Any] = _as_float(arr).tolist()  # type: ignore[union-attr]
            else:
                keys = _category_keys(arr)[0].tolist()
            matched = 0
            with self._lock:
                for i, label in zip(id_list, keys):
                    found = self._pending.pop(i, None)
                    w = self._windows.get(found[0]) if found else None
                    if found is None or w is None:
                        reason = "unknown_id" if found is None else "window_closed"
                        self._reject(None, reason, 1, f"no open prediction with id {i!r}")
                        continue
                    if isinstance(label, float) and not math.isfinite(label):
                        self._reject(w, "nan_label", 1, f"the label of {i!r} is NaN")
                        continue
                    if w.labels is None:
                        w.labels = _Labels(self.task or "classification")
                    if not w.labels.add(found[1], label, found[2]):
                        self._reject(w, "nan_error", 1, f"the error of {i!r} is not finite")
                        continue
                    w.dirty = True
                    matched += 1
            return matched
        except Exception as e:
            if self.strict:
                raise
            with self._lock:
                self.rejected["invalid:labels"] = self.rejected.get("invalid:labels", 0) + 1
                self.last_error = e
            return 0

    def log_latency(self, seconds: Any, timestamps: Any = None) -> int:
        """Serving latencies in seconds (one value or an array)."""
        try:
            np = _numpy()
            values = np.atleast_1d(np.asarray(seconds, dtype=float))
            if values.ndim != 1:
                raise ValidationError("latency must be a number or a 1-D array", field="latency")
            ok = np.isfinite(values) & (values >= 0)
            starts = self._starts(timestamps, len(values))
            with self._lock:
                for s in np.unique(starts).tolist():
                    mask = (starts == s) & ok
                    w = self._window(int(s))
                    part = values[mask]
                    w.latency_count += len(part)
                    w.latency_sum += float(part.sum())
                    idx = np.searchsorted(np.asarray(LATENCY_EDGES), part, side="left")
                    for b, c in zip(*np.unique(idx, return_counts=True)):
                        w.latency[int(b)] += int(c)
                    w.dirty = True
                    bad = int(((starts == s) & ~ok).sum())
                    if bad:
                        self._reject(w, "invalid_latency", bad, "latency must be >= 0 and finite")
            return int(ok.sum())
        except Exception as e:
            if self.strict:
                raise
            with self._lock:
                self.rejected["invalid:latency"] = self.rejected.get("invalid:latency", 0) + 1
                self.last_error = e
            return 0

    # --- reporting -------------------------------------------------------------------------

    def flush(self) -> int:
        """Report every window changed since the last report now; returns how many were
        reported. Never raises: a failure is counted in :attr:`errors` (and kept in
        :attr:`last_error`), its windows are sent again at the next flush."""
        with self._flush_lock:
            with self._lock:
                changed = [
                    (s, self._sketch(w)) for s, w in sorted(self._windows.items()) if w.dirty
                ]
                for s, _ in changed:
                    self._windows[s].dirty = False
            sent = 0
            for start, sketch in changed:
                try:
                    self._report(start, sketch)
                    sent += 1
                except Exception as e:
                    self.errors += 1
                    self.last_error = e
                    log.warning("monitor %s: report failed: %r", self.deployment_id, e)
                    with self._lock:
                        if start in self._windows:
                            self._windows[start].dirty = True
            return sent

    def _sketch(self, w: _Window) -> dict[str, Any]:
        sketch = w.sketch()
        if self.prediction_column is not None and "prediction" in sketch:
            sketch["prediction"]["column"] = self.prediction_column
        return sketch

    def _report(self, start: int, sketch: dict[str, Any]) -> None:
        begin = datetime.fromtimestamp(start, tz=timezone.utc)
        end = datetime.fromtimestamp(start + self.window_seconds, tz=timezone.utc)
        if start not in self._bases:
            # What an earlier process of this instance reported for the window: added to, so
            # a restart neither starts the window again nor counts anything twice.
            wid = monitoring_window_id(
                self.deployment_id, self.instance, begin, self.window_seconds
            )
            found = self.monitoring.window(wid)
            self._bases[start] = found.feature_stats if found is not None else None
        base = self._bases[start]
        whole = merge_sketches([base, sketch]) if base else sketch
        self.monitoring.report_window(
            self.deployment_id,
            begin,
            end,
            whole,
            instance=self.instance,
            # the reference this process sketches on (its bins), not whatever the deployment
            # serves when the window arrives: a redeploy with other training data would
            # otherwise tag an old process's window with bins it was not counted on
            reference=self.dataset or self.reference.dataset_version,
        )

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.flush()
            except Exception as e:  # pragma: no cover - flush itself never raises
                self.last_error = e

    def close(self) -> None:
        """Stop the background thread and report what is left."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.flush()
        _monitors.discard(self)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _infer_task(preds: Any) -> str:
    """Classification unless the predictions are floats with fractions (regression)."""
    np = _numpy()
    if preds.dtype.kind == "f":
        finite = preds[np.isfinite(preds)]
        if len(finite) and not np.all(finite == np.round(finite)):
            return "regression"
    return "classification"


def _epoch(t: Any) -> float:
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValidationError("timestamps must be timezone-aware", field="timestamps")
        return t.timestamp()
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return float(t)
    raise ValidationError(
        f"a timestamp is a datetime or epoch seconds, not {type(t).__name__}", field="timestamps"
    )


_monitors: weakref.WeakSet[Monitor] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for m in list(_monitors):
        with contextlib.suppress(Exception):  # at exit nothing may raise
            m.close()


__all__ = ["Monitor"]
