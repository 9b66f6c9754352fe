"""What the deep-learning adapters share (:mod:`~lineagehub.ingest.torch`,
:mod:`~lineagehub.ingest.lightning`, :mod:`~lineagehub.ingest.keras`,
:mod:`~lineagehub.ingest.transformers`): the run an adapter logs into, the guard that keeps
training going when logging fails, hyper-parameters and metrics as the hub takes them, and the
data a framework hands over as what ``run.log_dataset`` fingerprints.

The guard: an adapter's run (:class:`AdapterRun`) makes every write through :meth:`AdapterRun.do`,
which turns an exception into an :class:`~lineagehub.ingest.sklearn.AutologWarning` (the
warning of every adapter; or a debug log with ``silent=True``)
and returns ``None``. Once the hub has been unreachable (``BackendUnavailable``) the run stops
writing for the rest of training, so a dead hub costs one timed-out request, not one per step.
Training code never sees a logging failure.

Data: tensors and arrays, ``TensorDataset``\\ s, ``DataLoader``\\ s (their ``dataset``), pandas
frames, Hugging Face ``datasets.Dataset``\\ s and lists of records are fingerprinted by content
(nothing is copied; the digest is computed in memory) up to :data:`MAX_DATA_ROWS` rows; other
datasets (a user ``Dataset`` whose items are computed on access) are not read, because reading
them would run the user's loading code a second time: they are named in a ``data.<role>`` tag
instead, and can be logged with ``run.log_dataset`` or ``log_dataset_ref``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from lineagehub.graph import BackendUnavailable, ValidationError
from lineagehub.ingest.client import LEFT_BY_TRAINING, ActiveRun, Client, adapter_active_run
from lineagehub.ingest.client import client as default_client
from lineagehub.ingest.sklearn import AutologWarning
from lineagehub.vocabulary import RunStatus, check_key, check_scalar, loggable_key

logger = logging.getLogger(__name__)

#: Datasets with more rows than this are not fingerprinted by the adapters (hashing them would
#: cost training time); they are named in a tag and can be logged by reference.
MAX_DATA_ROWS = 1_000_000
MAX_PARAM_CHARS = 1000
#: A sparse tensor larger than this (dense) is named, not fingerprinted
MAX_DENSE_CELLS = 20_000_000
_INT64 = (-(2**63), 2**63 - 1)

T = TypeVar("T")


class AdapterRun:
    """The run one adapter instance logs into: the active run of the thread when training
    starts inside one (``with lh.start_run(): trainer.fit(...)``), else a run it starts and
    ends itself. Every write goes through :meth:`do`."""

    def __init__(
        self,
        adapter: str,
        *,
        client: Client | None = None,
        run_name: str | None = None,
        project: str | None = None,
        experiment: str | None = None,
        tags: Mapping[str, str] | None = None,
        silent: bool = False,
    ) -> None:
        self.adapter = adapter
        self.client = client
        self.run_name = run_name
        self.project = project
        self.experiment = experiment
        self.tags = dict(tags or {})
        self.silent = silent
        self.run: ActiveRun | None = None
        self.owned = False
        self.unreachable = False
        self._lock = threading.Lock()
        self._logged_data: set[tuple[str, str]] = set()

    def begin(self, default_name: str) -> ActiveRun | None:
        """A training begins: its run (see :meth:`start`). A run this adapter started for an
        earlier training that never reached its end (it raised) is ended FAILED first, and
        the new training gets a run of its own, as it does after a training that ended."""
        with self._lock:
            run = self.run
            if run is not None and self.owned and not run._ended and not self.unreachable:
                status, error = LEFT_BY_TRAINING
                self._guarded(f"could not end run {run.id}", lambda: run.end(status, error))
            self._forget()
        return self.start(default_name)

    def start(self, default_name: str) -> ActiveRun | None:
        """The run to log into (started on first use); ``None`` when the hub cannot be used."""
        with self._lock:
            if self.run is not None and self.run._ended:
                self._forget()  # a later training (or test) with this adapter: its own run
            if self.run is not None or self.unreachable:
                return self.run
            current = adapter_active_run(self)
            if current is not None and (self.client is None or current.client is self.client):
                self.run = current
                return current

            def begin() -> ActiveRun:
                hub = self.client or default_client()
                return hub.start_run(
                    self.run_name or default_name,
                    project=self.project,
                    experiment=self.experiment,
                    tags={"adapter": self.adapter, **self.tags},
                )

            self.run = self._guarded("could not start a run", begin)
            self.owned = self.run is not None
            if self.run is not None:
                # ended FAILED should its training raise (no hook of the framework's is
                # called then): at exit, or when another adapter's training begins
                self.run.left_open, self.run.owner = LEFT_BY_TRAINING, self
            return self.run

    def _forget(self) -> None:
        self.run, self.owned, self.unreachable = None, False, False
        self._logged_data.clear()

    def do(self, what: str, write: Callable[[ActiveRun], T]) -> T | None:
        """``write(run)``, or ``None`` (with a warning) if it fails or there is no run."""
        run = self.run
        if run is None or self.unreachable:
            return None
        return self._guarded(what, lambda: write(run))

    def end(self, status: RunStatus = RunStatus.FINISHED, error: str | None = None) -> None:
        """End the run if this adapter started it (else flush what it logged)."""
        run = self.run
        if run is None or self.unreachable:
            return
        if self.owned:
            self._guarded(f"could not end run {run.id}", lambda: run.end(status, error))
        else:
            self._guarded(f"could not write to run {run.id}", run.flush)

    def log_data(
        self, data: Any, *, role: str, name: str | None = None, namespace: str | None = None
    ) -> None:
        """Record ``data`` (see the module's docstring) as a DatasetVersion the run USED with
        ``role``, once per role and name."""
        key = (role, name or "")
        if data is None or key in self._logged_data or self.run is None:
            return
        self._logged_data.add(key)
        try:
            content = as_data(data)
        except Exception as e:  # data the conversions do not know: named, not fingerprinted
            logger.debug("could not read the %s data to fingerprint it", role, exc_info=e)
            content = None
        if content is None:
            described = describe_data(data)
            self.do(
                f"could not tag the {role} data",
                lambda run: run.set_tags({f"data.{role}": described}),
            )
            return
        self.do(
            f"could not log the {role} data",
            lambda run: run.log_dataset(
                content, name=name or role, namespace=namespace or self.adapter, role=role
            ),
        )

    def _guarded(self, what: str, call: Callable[[], T]) -> T | None:
        try:
            return call()
        except Exception as e:
            if isinstance(e, BackendUnavailable):
                self.unreachable = True
                what += " (the hub is unreachable: nothing more is logged for this training)"
            warn(f"{self.adapter}: {what}", e, silent=self.silent)
            return None


def warn(what: str, error: BaseException, *, silent: bool = False) -> None:
    message = f"lineagehub: {what}: {type(error).__name__}: {error}"
    if silent:
        logger.debug(message, exc_info=error)
    else:
        warnings.warn(message, AutologWarning, stacklevel=4)


# --- params and metrics -------------------------------------------------------------------------


def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (``optimizer.lr``), values as JSON scalars (anything
    else as its text, cut at 1000 characters); keys the hub does not take are left out."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_params(value, f"{name}."))
            continue
        if not _valid_key(name):
            continue
        out[name] = param_value(value)
    return out


def param_value(value: Any) -> Any:
    """A value as a JSON scalar: scalars as they are, 0-d tensors and numpy scalars unwrapped,
    classes and functions as their name, anything else as its text."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
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
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        text = getattr(value, "__qualname__", None) or repr(value)
    elif isinstance(value, str):
        text = value
    else:
        text = repr(value) if isinstance(value, (list, tuple, set)) else str(value)
    try:
        check_scalar(text, "params")
    except ValidationError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 1] + "…"


def metric_values(values: Mapping[str, Any]) -> dict[str, float]:
    """The real-number entries (ints, floats, 0-d tensors and arrays) under keys the hub takes."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if hasattr(value, "item") and getattr(value, "numel", lambda: 1)() == 1:
            try:
                value = value.item()
            except Exception:
                continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = loggable_key(str(key))
        if name is None:
            warnings.warn(
                f"lineagehub: metric {str(key)[:80]!r} is not logged: no key the hub takes "
                "can be made of its name",
                AutologWarning,
                stacklevel=3,
            )
            continue
        if name != key:
            warnings.warn(
                f"lineagehub: metric {str(key)[:80]!r} is logged as {name!r} (keys: letters, "
                "digits, '_', '-', '.', '/' and inner spaces)",
                AutologWarning,
                stacklevel=3,
            )
        out[name] = float(value)
    return out


def _valid_key(key: str) -> bool:
    try:
        check_key(key, "params")
    except ValidationError:
        logger.debug("skipped a key the hub does not accept: %r", key)
        return False
    return True


# --- data ---------------------------------------------------------------------------------------


def as_data(data: Any) -> Any | None:
    """What ``run.log_dataset`` can fingerprint for ``data``, or ``None`` when it cannot be
    had without running user code (or exceeds :data:`MAX_DATA_ROWS`)."""
    if data is None:
        return None
    if _is_loader(data):
        return as_data(data.dataset)
    module = type(data).__module__
    if module.startswith("torch") and hasattr(data, "detach"):  # a tensor
        return _rows_ok(_numpy(data))
    if type(data).__name__ == "TensorDataset" and module.startswith("torch"):
        return _table(tuple(_numpy(t) for t in data.tensors))
    if module.startswith(("numpy", "pandas")):
        return _rows_ok(data)
    if module.startswith("datasets.") and hasattr(data, "to_pandas"):  # Hugging Face datasets
        if len(data) > MAX_DATA_ROWS:
            return None
        return data.to_pandas()
    if isinstance(data, tuple) and data and all(_array_like(x) for x in data):
        return _table(tuple(_numpy(x) for x in data))
    if (
        isinstance(data, list)
        and 0 < len(data) <= MAX_DATA_ROWS
        and all(isinstance(r, Mapping) for r in data)
    ):
        return [{k: _plain(v) for k, v in r.items()} for r in data]
    return None


def describe_data(data: Any) -> str:
    """A short description of data that is not fingerprinted: its class and length."""
    target = data.dataset if _is_loader(data) else data
    cls = type(target)
    try:
        size = f", {len(target)} items"
    except Exception:
        size = ""
    return f"{cls.__module__}.{cls.__qualname__}{size} (not fingerprinted)"


def _is_loader(data: Any) -> bool:
    """A torch ``DataLoader``, a subclass, or accelerate's wrapper of one (what ``Trainer``
    hands its callbacks)."""
    return hasattr(data, "dataset") and any(
        (c.__name__ == "DataLoader" and c.__module__.startswith("torch"))
        or c.__module__.startswith("accelerate.")
        for c in type(data).__mro__
    )


def _array_like(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _numpy(x: Any) -> Any:
    """An array or a tensor as a numpy array: a sparse tensor made dense, a dtype numpy has
    not (bfloat16, float8) widened to float32."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if getattr(x, "layout", None) is not None and "sparse" in str(x.layout):
            if x.numel() > MAX_DENSE_CELLS:
                raise ValueError(f"a sparse tensor of {x.numel()} cells is not made dense")
            x = x.to_dense()
        try:
            return x.numpy()
        except TypeError:  # a dtype numpy has not
            return x.float().numpy()
    import numpy as np

    return np.asarray(x)


def _rows_ok(data: Any) -> Any | None:
    try:
        rows = len(data)
    except TypeError:
        return data
    return data if rows <= MAX_DATA_ROWS else None


def _table(arrays: tuple[Any, ...]) -> Any | None:
    """Several arrays with one row per sample (inputs, targets) as one table: columns ``x0``...
    for the first array's features, then ``target`` (or ``target_0``...; further arrays
    ``a2_0``...). Arrays of more than two dimensions are flattened per row."""
    import numpy as np
    import pandas as pd

    if not arrays or len({len(a) for a in arrays}) != 1 or len(arrays[0]) > MAX_DATA_ROWS:
        return None
    if not len(arrays[0]):
        return None  # no rows: nothing to fingerprint (the data is named in a tag)
    if len(arrays) == 1:
        return arrays[0]
    columns: dict[str, Any] = {}
    for i, array in enumerate(arrays):
        a = np.asarray(array)
        stem = "x" if i == 0 else "target" if i == 1 else f"a{i}"
        if a.ndim == 1 and i > 0:
            columns[stem] = a
            continue
        flat = a.reshape(len(a), -1)
        for j in range(flat.shape[1]):
            columns[f"{stem}{j}" if i == 0 else f"{stem}_{j}"] = flat[:, j]
    return pd.DataFrame(columns)


def _plain(value: Any) -> Any:
    if hasattr(value, "detach"):
        value = _numpy(value)
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return value.tolist()
    return value


def parameter_counts(module: Any) -> tuple[int, int]:
    """(all parameters, trainable parameters) of a torch module."""
    total = trainable = 0
    for p in module.parameters():
        n = int(p.numel())
        total += n
        if p.requires_grad:
            trainable += n
    return total, trainable


def class_path(obj: Any) -> str:
    """``module:QualName`` of an object's class (how the flavors import it back)."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def run_status(outcome: str | None) -> RunStatus:
    """A framework's end-of-training word (``success``, ``failed``, ``interrupted``...) as a
    run status."""
    word = (outcome or "success").lower()
    if word in ("failed", "failure", "error"):
        return RunStatus.FAILED
    if word in ("interrupted", "killed", "aborted"):
        return RunStatus.KILLED
    return RunStatus.FINISHED


__all__ = [
    "MAX_DATA_ROWS",
    "AdapterRun",
    "as_data",
    "class_path",
    "describe_data",
    "flat_params",
    "metric_values",
    "param_value",
    "parameter_counts",
    "run_status",
]
