"""LightGBM: a training callback, ``autolog()``, and the ``lightgbm`` model flavor.

::

    import lightgbm as lgb
    from lineagehub.ingest import lightgbm as lh_lgb

    lh_lgb.autolog(experiment="churn")             # every lgb.train / LGBMClassifier.fit
    booster = lgb.train(params, train_set, 100, valid_sets=[valid_set])

    # or explicitly, with LightGBM's public callback API:
    callback = lh_lgb.LineageCallback(params=params)
    booster = lgb.train(params, train_set, 100, valid_sets=[valid_set], callbacks=[callback])
    callback.finish(booster)      # the model, importances and best iteration (autolog does it)

What one training records: the params (``params`` given to ``lgb.train``, and
``num_boost_round``), every evaluation metric per iteration (``<data>-<metric>``, e.g.
``valid_0-l2``, at step = iteration), ``best_iteration`` and ``best_score`` (early stopping),
the feature importances (gain) as data, the training data (``train``) and the validation
sets (``validation``) as ``DatasetVersion`` s, and the booster as the next ``ModelVersion``
(flavor ``lightgbm``: LightGBM's text model; a scikit-learn API model is pickled beside it),
with a custom objective or metric function captured as a custom object.

How it hooks in: LightGBM's callbacks are callables taking a ``CallbackEnv``, called after
each iteration; none is called when training ends (early stopping ends it from inside another
callback), so the final records are made by :meth:`LineageCallback.finish`, which
:func:`autolog` calls after ``lightgbm.train`` returns (it replaces ``lightgbm.train`` as
``lightgbm``, ``lightgbm.engine`` and ``lightgbm.sklearn`` name it, until :func:`disable`).
Without early stopping the callback finishes by itself at the last iteration. Logging never
breaks training (:mod:`lineagehub.ingest.adapters`).
"""

from __future__ import annotations

import functools
import inspect
import pickle
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
    import lightgbm as lgb
except ImportError as e:  # pragma: no cover - the extra names what to install
    raise ImportError(
        "lineagehub.ingest.lightgbm needs LightGBM: pip install 'lineagehub[lightgbm]'"
    ) from e


# --- the flavor -----------------------------------------------------------------------------


class LightGBMFlavor(Flavor):
    """A ``Booster`` as LightGBM's text model (``model.txt``); a scikit-learn API model
    (``LGBMClassifier``...) pickled (``model.pkl``, as LightGBM documents for it) with its
    booster's text model beside it."""

    name = "lightgbm"
    packages = ("lightgbm", "numpy", "scipy", "scikit-learn")

    def detect(self, model: Any) -> bool:
        return has_module_root(model, "lightgbm")

    def save(self, model: Any, directory: Path, **options: Any) -> dict[str, Any]:
        if isinstance(model, lgb.Booster):
            model.save_model(str(directory / "model.txt"))
            return {"file": "model.txt", "kind": "booster"}
        if isinstance(model, lgb.LGBMModel):
            (directory / "model.pkl").write_bytes(
                pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
            )
            booster = getattr(model, "_Booster", None)
            if booster is not None:
                booster.save_model(str(directory / "model.txt"))
            cls = type(model)
            return {
                "file": "model.pkl",
                "kind": "sklearn",
                "class": f"{cls.__module__}:{cls.__qualname__}",
            }
        raise ValidationError(
            f"model: the lightgbm flavor saves a Booster or an LGBMModel, not a "
            f"{type(model).__name__}",
            field="model",
        )

    def load(self, directory: Path, metadata: Mapping[str, Any]) -> Any:
        if metadata.get("kind") == "sklearn":
            with (directory / "model.pkl").open("rb") as f:
                return pickle.load(f)
        return lgb.Booster(model_file=str(directory / str(metadata.get("file", "model.txt"))))

    def custom_objects(self, model: Any) -> list[Any]:
        if isinstance(model, lgb.LGBMModel):
            return [v for v in model.get_params().values() if callable(v)]
        return []


FLAVOR = LightGBMFlavor()


# --- the callback -------------------------------------------------------------------------------


class LineageCallback:
    """Logs one LightGBM training (see the module docstring) into ``run`` (default: the
    active run, else a run it starts on ``client`` and ends in :meth:`finish`).

    ``params``: the training params to log (default: those LightGBM passes the callback);
    ``train_set`` / ``valid_sets``: data to record, as ``(data, label, name)`` or a
    ``lightgbm.Dataset`` whose raw data is still there; ``model_name``: the registered
    model (default ``lightgbm``; ``log_model=False`` registers none); ``custom_objects``:
    functions the model needs; ``log_importances``: the gain importances as data;
    ``log_every``: log metrics every n-th iteration;
    ``finish_at_end``: :meth:`finish` at the last iteration (off: call it yourself)."""

    #: after LightGBM's own callbacks that record (log_evaluation 10, record_evaluation 20),
    #: before early stopping (30), which ends training by raising
    order = 25

    def __init__(
        self,
        run: ActiveRun | None = None,
        *,
        client: Client | None = None,
        params: Mapping[str, Any] | None = None,
        datasets: Sequence[tuple[Any, Any, str]] = (),
        model_name: str = "lightgbm",
        log_model: bool = True,
        log_datasets: bool = True,
        log_importances: bool = True,
        custom_objects: Sequence[Any] = (),
        log_every: int = 1,
        experiment: str | None = None,
        project: str | None = None,
        silent: bool = False,
        finish_at_end: bool = True,
    ) -> None:
        if not isinstance(log_every, int) or isinstance(log_every, bool) or log_every < 1:
            raise ValidationError("log_every must be a positive integer", field="log_every")
        self.finish_at_end = finish_at_end
        self.guard = GuardedRun(
            run,
            client=client,
            name="lightgbm",
            experiment=experiment,
            project=project,
            silent=silent,
            framework="LightGBM",
        )
        self.params = None if params is None else dict(params)
        self.datasets = list(datasets)
        self.model_name = model_name
        self.log_model = log_model
        self.log_datasets = log_datasets
        self.log_importances = log_importances
        self.custom_objects = [c for c in custom_objects if c is not None]
        self.log_every = log_every
        self.started = False
        self.finished = False
        self.version: Any = None

    def start(self, params: Mapping[str, Any] | None = None) -> None:
        """Open the run and log the params and data (on the first iteration at the latest)."""
        if self.started:
            return
        self.started = True
        run = self.guard.open()
        if run is None:
            return
        logged = self.params if self.params is not None else dict(params or {})
        self.guard.log("log the params", lambda r: log_params(r, logged))
        self.guard.log(
            "log the tags",
            lambda r: r.set_tags({"framework": "lightgbm", "lightgbm_version": lgb.__version__}),
        )
        if self.log_datasets:
            for data, label, name in self.datasets:
                frame = table(data, label)
                if frame is None:
                    continue
                role = "train" if name == "train" else "validation"
                self.guard.log(f"log the {name} data", log_data(frame, name, role, "lightgbm"))

    def __call__(self, env: Any) -> None:
        if not self.started:
            self.start(env.params)
        run = self.guard.run
        if run is None or self.guard.broken:
            return
        step = env.iteration
        if (step - env.begin_iteration) % self.log_every == 0:
            values = {}
            for item in env.evaluation_result_list or ():
                key = metric_key(f"{item[0]}-{item[1]}")
                if key is not None:
                    values[key] = float(item[2])
            if values:
                self.guard.call("log metrics", lambda: run.log_metrics(values, step=step))
        if step == env.end_iteration - 1 and self.finish_at_end:
            self.finish(env.model)

    def finish(self, booster: Any, error: BaseException | None = None) -> None:
        """Log the best iteration, feature importances and model of ``booster``, and end the
        run if this callback started it (FAILED with ``error``). Called once; later calls
        do nothing."""
        if self.finished:
            return
        self.finished = True
        try:
            if error is None and booster is not None:
                self._final(booster)
        finally:
            self.guard.end(error)

    def _final(self, booster: Any) -> None:
        if self.guard.run is None or self.guard.broken:
            return
        best: dict[str, float] = {}
        if getattr(booster, "best_iteration", 0) > 0:
            best["best_iteration"] = float(booster.best_iteration)
            for data, metrics in (getattr(booster, "best_score", None) or {}).items():
                for metric, value in metrics.items():
                    key = metric_key(f"best_{data}-{metric}")
                    if key is not None:
                        best[key] = float(value)
        if best:
            self.guard.log("log the best iteration", lambda r: r.log_metrics(best))
        try:
            names = list(booster.feature_name()) if self.log_importances else []
            gains = [float(v) for v in booster.feature_importance(importance_type="gain")]
        except Exception:
            names, gains = [], []
        if names and len(names) == len(gains):
            self.guard.log(
                "log the feature importances", lambda r: r.log_feature_importances(names, gains)
            )
        if self.log_model:
            self.version = self.guard.log(
                "log the model",
                lambda r: r.log_model(
                    booster,
                    name=self.model_name,
                    flavor="lightgbm",
                    custom_objects=self.custom_objects,
                ),
            )


# --- autolog ------------------------------------------------------------------------------------

_PATCH = TrainPatch(("lightgbm", "lightgbm.engine", "lightgbm.sklearn"))


def autolog(
    *,
    client: Client | None = None,
    model_name: str = "lightgbm",
    log_models: bool = True,
    log_datasets: bool = True,
    log_every: int = 1,
    experiment: str | None = None,
    project: str | None = None,
    silent: bool = False,
) -> None:
    """Log every ``lightgbm.train`` (and so every scikit-learn API ``fit``) with a
    :class:`LineageCallback`, until :func:`disable`. Calling it again replaces the
    options."""
    _PATCH.enable(
        lambda: lgb.engine.train,
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
    """Stop autologging: ``lightgbm.train`` is the original function again."""
    _PATCH.disable()


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def train(*args: Any, **kwargs: Any) -> Any:
        options = _PATCH.options()
        if not options:
            return original(*args, **kwargs)
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return original(*args, **kwargs)
        bound.apply_defaults()
        given = dict(bound.arguments)
        callbacks = list(given.get("callbacks") or [])
        if any(isinstance(c, LineageCallback) for c in callbacks):
            return original(*args, **kwargs)
        params = dict(given.get("params") or {})
        objective = params.get("objective")
        logged = {k: v for k, v in params.items() if not callable(v)}
        logged["num_boost_round"] = given.get("num_boost_round")
        if callable(objective):
            logged["objective"] = getattr(objective, "__name__", "custom")
        feval = given.get("feval")
        fevals = list(feval) if isinstance(feval, (list, tuple)) else [feval]
        callback = LineageCallback(
            params=logged,
            datasets=_datasets(given),
            custom_objects=[objective if callable(objective) else None, *fevals],
            finish_at_end=False,  # finished below, also after early stopping
            **options,
        )
        given["callbacks"] = [*callbacks, callback]
        try:
            booster = original(**given)
        except BaseException as e:
            callback.finish(None, e)
            raise
        callback.finish(booster)
        return booster

    return train


def _datasets(given: Mapping[str, Any]) -> list[tuple[Any, Any, str]]:
    """The raw data of the training and validation ``lightgbm.Dataset`` s, read before
    training (LightGBM frees it once the Dataset is built)."""
    train_set = given.get("train_set")
    found: list[tuple[Any, Any, str]] = []
    if train_set is not None and getattr(train_set, "data", None) is not None:
        found.append((train_set.data, train_set.label, "train"))
    names = list(given.get("valid_names") or [])
    for i, valid in enumerate(given.get("valid_sets") or []):
        if valid is train_set or getattr(valid, "data", None) is None:
            continue
        name = names[i] if i < len(names) else f"valid_{i}"
        found.append((valid.data, valid.label, name))
    return found


__all__ = ["FLAVOR", "LightGBMFlavor", "LineageCallback", "autolog", "disable"]
