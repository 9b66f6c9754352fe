"""What the framework adapters share: a run that never breaks training.

An adapter (``lineagehub.ingest.xgboost``, ``lineagehub.ingest.lightgbm``, ...) logs through a
:class:`GuardedRun`: the run given, the active one, or one it starts (and ends). Every call to
the hub goes through :meth:`GuardedRun.call`: the first failure (the hub unreachable, a
refused value) is reported once as an :class:`AutologWarning` (at debug level with
``silent=True``) and turns logging off for the rest of that training, which goes on. Metrics
are buffered by the run as always, so the per-iteration cost is a dictionary walk and a
buffer append.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import threading
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from lineagehub.graph import BackendUnavailable, ConflictError, ValidationError
from lineagehub.ingest.client import LEFT_BY_TRAINING, ActiveRun, Client, adapter_active_run
from lineagehub.ingest.client import client as default_client
from lineagehub.ingest.sklearn import AutologWarning
from lineagehub.vocabulary import RunStatus, check_key, loggable_key

logger = logging.getLogger(__name__)
T = TypeVar("T")
MAX_PARAM_CHARS = 1000
_INT64 = (-(2**63), 2**63 - 1)
#: Training data above this many cells (rows x columns) is not densified to be fingerprinted
MAX_DATASET_CELLS = 20_000_000


class GuardedRun:
    """The run an adapter logs into; no call raises (see the module docstring)."""

    def __init__(
        self,
        run: ActiveRun | None = None,
        *,
        client: Client | None = None,
        name: str = "train",
        experiment: str | None = None,
        project: str | None = None,
        silent: bool = False,
        framework: str = "training",
    ) -> None:
        self.run = run
        self.client = client
        self.name = name
        self.experiment = experiment
        self.project = project
        self.silent = silent
        self.framework = framework
        self.owned = False
        self.broken = False
        self._opened = run is not None

    def open(self) -> ActiveRun | None:
        """The run to log into, starting one if there is none (``None`` once broken)."""
        if self.broken:
            return None
        if self.run is None and not self._opened:
            self._opened = True
            current = adapter_active_run(self)
            if current is not None and (self.client is None or current.client is self.client):
                self.run = current
            else:
                hub = self.client or default_client()
                started = self.call(
                    "start a run",
                    lambda: hub.start_run(
                        self.name, experiment=self.experiment, project=self.project
                    ),
                )
                if started is not None:
                    self.run, self.owned = started, True
                    # ended FAILED should training raise past the callback's end
                    started.left_open, started.owner = LEFT_BY_TRAINING, self
        return self.run

    def call(self, what: str, fn: Callable[[], T]) -> T | None:
        """``fn()``, or ``None`` if logging is off or it fails (reported; a hub that cannot
        be reached turns logging off, a refused value costs only its own call)."""
        if self.broken:
            return None
        try:
            return fn()
        except Exception as e:
            if isinstance(e, BackendUnavailable):
                self.broken = True
                outcome = "logging stopped, training goes on"
            else:
                outcome = "skipped, logging goes on"
            message = (
                f"lineagehub: {self.framework} {outcome}: could not {what}: {type(e).__name__}: {e}"
            )
            if self.silent:
                logger.debug(message, exc_info=e)
            else:
                warnings.warn(message, AutologWarning, stacklevel=3)
            return None

    def log(self, what: str, fn: Callable[[ActiveRun], Any]) -> Any:
        """``fn(run)`` on the open run, guarded like :meth:`call`."""
        run = self.open()
        if run is None:
            return None
        return self.call(what, lambda: fn(run))

    def end(self, error: BaseException | None = None) -> None:
        """End the run if this adapter started it (FAILED with ``error``)."""
        if not self.owned or self.run is None:
            return
        run, self.owned = self.run, False
        if error is None:
            status, text = RunStatus.FINISHED, None
        elif isinstance(error, KeyboardInterrupt):
            status, text = RunStatus.KILLED, "KeyboardInterrupt"
        else:
            status, text = RunStatus.FAILED, f"{type(error).__name__}: {error}"
        was_broken, self.broken = self.broken, False
        self.call("end the run", lambda: run.end(status, text))
        if was_broken:
            self.broken = True


class TrainPatch:
    """What ``autolog()`` does to a framework: its ``train`` function, in each of ``modules``,
    replaced by one that adds the adapter's callback, until :meth:`disable`; the options of
    the latest ``autolog()`` call, which the wrapper reads at each training."""

    def __init__(self, modules: tuple[str, ...]) -> None:
        self.modules = modules
        self._lock = threading.Lock()
        self._original: Callable[..., Any] | None = None
        self._options: dict[str, Any] = {}

    def enable(
        self,
        original: Callable[[], Callable[..., Any]],
        wrap: Callable[[Callable[..., Any]], Callable[..., Any]],
        *,
        log_every: int,
        **options: Any,
    ) -> None:
        """Patch (once: ``original()`` is the function patched, ``wrap`` makes its stand-in)
        and set the options; calling it again replaces the options."""
        if not isinstance(log_every, int) or isinstance(log_every, bool) or log_every < 1:
            raise ValidationError("log_every must be a positive integer", field="log_every")
        with self._lock:
            self._options = {**options, "log_every": log_every}
            if self._original is None:
                self._original = original()
                wrapped = wrap(self._original)
                for name in self.modules:
                    vars(importlib.import_module(name))["train"] = wrapped

    def disable(self) -> None:
        """Put the original function back."""
        with self._lock:
            if self._original is not None:
                for name in self.modules:
                    vars(importlib.import_module(name))["train"] = self._original
            self._original = None
            self._options = {}

    def options(self) -> dict[str, Any]:
        """The options of the latest ``autolog()`` (empty when disabled)."""
        return dict(self._options)


def log_data(frame: Any, name: str, role: str, namespace: str) -> Callable[[ActiveRun], Any]:
    """A :meth:`GuardedRun.log` step recording ``frame`` as a dataset the run used."""

    def log(run: ActiveRun) -> Any:
        return run.log_dataset(frame, name=name, namespace=namespace, role=role)

    return log


def metric_key(name: str) -> str | None:
    """A framework's metric name as a key the hub takes (``valid-ndcg@3`` as
    ``valid-ndcg_at_3``, said once in a warning); ``None`` when none can be made."""
    key = loggable_key(name)
    if key != name:
        logged = f"is logged as {key!r}" if key else "is not logged (no key can be made of it)"
        warnings.warn(f"lineagehub: metric {name[:80]!r} {logged}", AutologWarning, stacklevel=3)
    return key


def log_params(run: ActiveRun, params: Mapping[str, Any], prefix: str = "") -> None:
    """Log ``params`` as JSON scalars (others as a short text); keys already logged with
    another value (several trainings in one run) keep their first value."""
    clean: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        try:
            check_key(name, "params")
        except Exception:
            continue
        clean[name] = param_value(value)
    try:
        run.log_params(clean)
    except ConflictError:
        for key, value in clean.items():
            with contextlib.suppress(ConflictError):
                run.log_params({key: value})


def param_value(value: Any) -> Any:
    """A param as a JSON scalar: numbers, strings, bools and ``None`` as they are (numpy
    scalars unwrapped, non-finite floats as text), functions by name, the rest as a repr."""
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        with contextlib.suppress(Exception):
            value = value.item()
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not _INT64[0] <= value <= _INT64[1]
    ):
        return str(value)  # beyond what JSON numbers keep exactly: as its digits
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value[:MAX_PARAM_CHARS]
    if callable(value):
        return str(getattr(value, "__qualname__", getattr(value, "__name__", repr(value))))
    return repr(value)[:MAX_PARAM_CHARS]


def table(data: Any, label: Any = None, feature_names: Any = None) -> Any:
    """Training data as one table to fingerprint: a DataFrame or array ``data`` with the
    ``label`` as a ``label`` column; a path as it is; ``None`` when it cannot be (or is too
    large to be) turned into one."""
    import os

    if isinstance(data, (str, os.PathLike)):
        return data
    try:
        import numpy as np
        import pandas as pd
    except ImportError:
        return None
    if isinstance(data, pd.DataFrame):
        frame = data
    else:
        if hasattr(data, "toarray"):  # scipy sparse
            rows, cols = data.shape
            if rows * cols > MAX_DATASET_CELLS:
                return None
            data = data.toarray()
        if not isinstance(data, np.ndarray) or data.ndim != 2:
            return None
        names = list(feature_names) if feature_names else None
        if names is None or len(names) != data.shape[1]:
            names = [f"f{i}" for i in range(data.shape[1])]
        frame = pd.DataFrame(data, columns=[str(n) for n in names])
    if label is not None:
        values = np.asarray(label)
        if values.ndim == 1 and len(values) == len(frame) and len(values):
            frame = frame.assign(label=values)
    return frame


__all__ = [
    "MAX_DATASET_CELLS",
    "AutologWarning",
    "GuardedRun",
    "TrainPatch",
    "log_data",
    "log_params",
    "metric_key",
    "param_value",
    "table",
]
