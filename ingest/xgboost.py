"""XGBoost: a training callback, ``autolog()``, and the ``xgboost`` model flavor.

::

    import xgboost as xgb
    from lineagehub.ingest import xgboost as lh_xgb

    lh_xgb.autolog(experiment="churn")             # every xgb.train / XGBClassifier.fit
    booster = xgb.train(params, dtrain, 100, evals=[(dvalid, "valid")])

    # or explicitly, with XGBoost's public callback API:
    booster = xgb.train(params, dtrain, 100, evals=[(dvalid, "valid")],
                        callbacks=[lh_xgb.LineageCallback(params=params)])

What one training records: the params (``params`` given to ``xgb.train``, ``num_boost_round``,
``early_stopping_rounds``), every evaluation metric per iteration (``<data>-<metric>``, e.g.
``valid-logloss``, at step = iteration), ``best_iteration`` and ``best_score`` (early
stopping), the feature importances (gain) as data, the training data (``train``) and every
other evaluation set (``validation``) as ``DatasetVersion`` s, and the booster as the next
``ModelVersion`` (flavor ``xgboost``; saved as XGBoost's JSON model, loaded back by
``client.load_model``), with a custom objective or metric function captured as a custom
object. It goes into the active run, or a run the adapter starts (named ``xgboost``) and
ends.

How it hooks in: :class:`LineageCallback` is an ``xgboost.callback.TrainingCallback``;
:func:`autolog` replaces ``xgboost.train`` (as ``xgboost``, ``xgboost.training`` and
``xgboost.sklearn`` name it: the scikit-learn API trains through it) with a wrapper that adds
the callback, until :func:`disable`. Logging never breaks training
(:mod:`lineagehub.ingest.adapters`): a failure, such as an unreachable hub, is one
:class:`~lineagehub.ingest.sklearn.AutologWarning` and training goes on.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lineagehub.graph import ValidationError
from lineagehub.ingest.adapters import (
    GuardedRun,
    TrainPatch,
    log_data,
    log_params,
    metric_key,
    table,
)
from lineagehub.ingest.client import ActiveRun, Client
from lineagehub.ingest.flavors import Flavor, has_module_root

try:
    import xgboost as xgb
except ImportError as e:  # pragma: no cover - the extra names what to install
    raise ImportError(
        "lineagehub.ingest.xgboost needs XGBoost: pip install 'lineagehub[xgboost]'"
    ) from e


# --- the flavor -----------------------------------------------------------------------------


class XGBoostFlavor(Flavor):
    """A ``Booster`` or a scikit-learn API model (``XGBClassifier``...), as XGBoost's own
    JSON model file (portable across XGBoost versions and platforms)."""

    name = "xgboost"
    packages = ("xgboost", "numpy", "scipy")

    def detect(self, model: Any) -> bool:
        return has_module_root(model, "xgboost")

    def save(self, model: Any, directory: Path, **options: Any) -> dict[str, Any]:
        if not isinstance(model, (xgb.Booster, xgb.XGBModel)):
            raise ValidationError(
                f"model: the xgboost flavor saves a Booster or an XGBModel, not a "
                f"{type(model).__name__}",
                field="model",
            )
        model.save_model(str(directory / "model.json"))
        cls = type(model)
        return {"file": "model.json", "class": f"{cls.__module__}:{cls.__qualname__}"}

    def load(self, directory: Path, metadata: Mapping[str, Any]) -> Any:
        module_name, _, qualname = str(metadata.get("class", "xgboost.core:Booster")).partition(":")
        cls: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        model = cls()
        model.load_model(str(directory / str(metadata.get("file", "model.json"))))
        return model

    def custom_objects(self, model: Any) -> list[Any]:
        if isinstance(model, xgb.XGBModel):
            params = model.get_params()
            return [v for k, v in params.items() if callable(v) and k != "callbacks"]
        return []


FLAVOR = XGBoostFlavor()


# --- the callback -------------------------------------------------------------------------------


class LineageCallback(xgb.callback.TrainingCallback):
    """Logs one XGBoost training (see the module docstring) into ``run`` (default: the
    active run, else a run it starts on ``client`` and ends after training).

    ``params``: the training params to log; ``model_name``: the registered model (default
    ``xgboost``; ``log_model=False`` registers none); ``dtrain`` / ``evals``: the data to
    record (as given to ``xgb.train``); ``custom_objects``: functions the model needs (a
    custom objective or metric); ``log_importances``: the gain importances as data;
    ``log_every``: log metrics every n-th iteration."""

    def __init__(
        self,
        run: ActiveRun | None = None,
        *,
        client: Client | None = None,
        params: Mapping[str, Any] | None = None,
        dtrain: Any = None,
        evals: Sequence[tuple[Any, str]] = (),
        model_name: str = "xgboost",
        log_model: bool = True,
        log_datasets: bool = True,
        log_importances: bool = True,
        custom_objects: Sequence[Any] = (),
        log_every: int = 1,
        experiment: str | None = None,
        project: str | None = None,
        silent: bool = False,
    ) -> None:
        if not isinstance(log_every, int) or isinstance(log_every, bool) or log_every < 1:
            raise ValidationError("log_every must be a positive integer", field="log_every")
        self.guard = GuardedRun(
            run,
            client=client,
            name="xgboost",
            experiment=experiment,
            project=project,
            silent=silent,
            framework="XGBoost",
        )
        self.params = dict(params or {})
        self.dtrain = dtrain
        self.evals = list(evals)
        self.model_name = model_name
        self.log_model = log_model
        self.log_datasets = log_datasets
        self.log_importances = log_importances
        self.custom_objects = [c for c in custom_objects if c is not None]
        self.log_every = log_every
        self.version: Any = None

    def before_training(self, model: Any) -> Any:
        run = self.guard.open()
        if run is None:
            return model
        self.guard.log("log the params", lambda r: log_params(r, self.params))
        self.guard.log(
            "log the tags",
            lambda r: r.set_tags({"framework": "xgboost", "xgboost_version": xgb.__version__}),
        )
        if self.log_datasets:
            seen = {}
            if self.dtrain is not None:
                seen[id(self.dtrain)] = "train"
            for data, name in self.evals:
                seen.setdefault(id(data), name)
            for data, name in [(self.dtrain, "train"), *self.evals]:
                if data is None or seen.get(id(data)) != name:
                    continue
                role = "train" if data is self.dtrain else "validation"
                frame = _dmatrix_table(data)
                if frame is not None:
                    self.guard.log(f"log the {name} data", log_data(frame, name, role, "xgboost"))
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        run = self.guard.run
        if run is None or self.guard.broken or epoch % self.log_every:
            return False
        values = {}
        for data, metrics in evals_log.items():
            for metric, history in metrics.items():
                last = history[-1]
                key = metric_key(f"{data}-{metric}")
                if key is not None:
                    values[key] = float(last[0] if isinstance(last, tuple) else last)
        if values:
            self.guard.call("log metrics", lambda: run.log_metrics(values, step=epoch))
        return False

    def after_training(self, model: Any) -> Any:
        try:
            self._finish(model)
        finally:
            self.guard.end()
        return model

    def _finish(self, model: Any) -> None:
        if self.guard.run is None or self.guard.broken:
            return
        best: dict[str, float] = {}
        attrs = model.attributes()
        if "best_iteration" in attrs:
            best["best_iteration"] = float(attrs["best_iteration"])
        if "best_score" in attrs:
            best["best_score"] = float(attrs["best_score"])
        if best:
            self.guard.log("log the best iteration", lambda r: r.log_metrics(best))
        try:
            scores = model.get_score(importance_type="gain") if self.log_importances else {}
        except Exception:  # a linear booster has no tree importances
            scores = {}
        if scores:
            names = list(model.feature_names or sorted(scores))
            importances = [float(scores.get(n, 0.0)) for n in names]
            self.guard.log(
                "log the feature importances",
                lambda r: r.log_feature_importances(names, importances),
            )
        if self.log_model:
            self.version = self.guard.log(
                "log the model",
                lambda r: r.log_model(
                    model,
                    name=self.model_name,
                    flavor="xgboost",
                    custom_objects=self.custom_objects,
                ),
            )


def _dmatrix_table(data: Any) -> Any:
    try:
        matrix = data.get_data()
        label = data.get_label()
    except Exception:
        return None
    return table(matrix, label if len(label) else None, data.feature_names)


# --- autolog ------------------------------------------------------------------------------------

_PATCH = TrainPatch(("xgboost", "xgboost.training", "xgboost.sklearn"))


def autolog(
    *,
    client: Client | None = None,
    model_name: str = "xgboost",
    log_models: bool = True,
    log_datasets: bool = True,
    log_every: int = 1,
    experiment: str | None = None,
    project: str | None = None,
    silent: bool = False,
) -> None:
    """Log every ``xgboost.train`` (and so every scikit-learn API ``fit``) with a
    :class:`LineageCallback`, until :func:`disable`. Calling it again replaces the
    options."""
    _PATCH.enable(
        lambda: xgb.training.train,
        _wrap,
        client=client,
        model_name=model_name,
        log_model=log_models,
        log_datasets=log_datasets,
        log_every=log_every,
        experiment=experiment,
        project=project,
        silent=silent,
    )


def disable() -> None:
    """Stop autologging: ``xgboost.train`` is the original function again."""
    _PATCH.disable()


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def train(params: Mapping[str, Any], dtrain: Any, *args: Any, **kwargs: Any) -> Any:
        options = _PATCH.options()
        if not options:
            return original(params, dtrain, *args, **kwargs)
        bound = _bind(original, params, dtrain, args, kwargs)
        logged = {**dict(params or {})}
        for key in ("num_boost_round", "early_stopping_rounds", "maximize"):
            if bound.get(key) is not None:
                logged[key] = bound[key]
        callbacks = list(bound.get("callbacks") or [])
        if any(isinstance(c, LineageCallback) for c in callbacks):
            return original(params, dtrain, *args, **kwargs)
        callback = LineageCallback(
            params=logged,
            dtrain=dtrain,
            evals=list(bound.get("evals") or []),
            custom_objects=[bound.get("obj"), bound.get("custom_metric"), bound.get("feval")],
            **options,
        )
        kwargs = {**kwargs, "callbacks": [*callbacks, callback]}  # keyword-only in xgb.train
        try:
            return original(params, dtrain, *args, **kwargs)
        except BaseException as e:
            callback.guard.end(e)
            raise

    return train


def _bind(
    fn: Callable[..., Any],
    params: Any,
    dtrain: Any,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> dict[str, Any]:
    import inspect

    try:
        bound = inspect.signature(fn).bind(params, dtrain, *args, **kwargs)
    except TypeError:
        return {}
    bound.apply_defaults()
    return dict(bound.arguments)


__all__ = ["FLAVOR", "LineageCallback", "XGBoostFlavor", "autolog", "disable"]
