"""scikit-learn autologging: every ``fit`` becomes a run, without changing the training code.

::

    import lineagehub as lh
    from lineagehub.ingest import sklearn as lh_sklearn

    lh_sklearn.autolog(experiment="iris")
    model = RandomForestClassifier(n_estimators=10).fit(X_train, y_train)  # one run
    lh_sklearn.evaluate(model, X_test, y_test)  # test_* metrics (inside the fitting run)
    lh_sklearn.disable()

How it hooks in: :func:`autolog` finds scikit-learn's estimator classes with the public
``sklearn.utils.discovery.all_estimators()`` (plus ``Pipeline``, ``GridSearchCV`` and
``RandomizedSearchCV``) and replaces, on the class of each one's method resolution order that
defines it, the ``fit`` function with a wrapper (``functools.wraps``; the originals are kept and
:func:`disable` puts them back). Fits of user classes that inherit a scikit-learn ``fit`` are
logged too; a user class that defines its own ``fit`` without calling ``super().fit`` is not.

Only the outermost ``fit`` is a run: the steps of a ``Pipeline``, the inner fits of
meta-estimators and the candidate clones of a search are part of it (a per-thread depth counter;
and while an autologged fit runs, fits in other threads of the process, such as joblib's
threading workers for ``n_jobs``, count as inner fits too). A fit inside an active run
(``lh.active_run()``) is logged into that run; otherwise a run named after the estimator class
is started before the fit and ended after it (FAILED with the error if the fit raises, and the
error is re-raised).

Logging never breaks training: a failure to log is reported as an :class:`AutologWarning`
(or at debug level with ``silent=True``) and ``fit`` returns what it returned.

What one fit records (the README's "scikit-learn: autolog" section has the full list):
params (``get_params(deep=True)``: ``clf__C``), tags (``estimator_name``, ``estimator_class``,
``sklearn_version``), the training data (X with y as target columns, one ``DatasetVersion``
USED with role ``train``), ``training_*`` metrics, the fitted estimator as a ``ModelVersion``
(pickled, flavor ``sklearn``), and evaluation results as data: a confusion matrix and a
classification report (classifiers), residual statistics (regressors), feature importances
(``feature_importances_`` or ``coef_``). A search (``GridSearchCV``, ``RandomizedSearchCV``)
adds ``best_*`` params, the ``best_cv_score`` metric, the best estimator as the model and one
child run per candidate (``CHILD_OF`` the search's run), the best one tagged ``best=true``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lineagehub.graph import ConfigError, ConflictError, ValidationError
from lineagehub.ingest.client import ActiveRun, Client, active_run
from lineagehub.ingest.client import client as default_client
from lineagehub.services.headline import PRIMARY_METRIC_TAG
from lineagehub.vocabulary import ArtifactKind, RunStatus, UsedRole

logger = logging.getLogger(__name__)

# Data preparation, not learning: fitted alone these are not runs (inside a Pipeline or a search
# they are part of its run). scikit-learn's metrics also fit label encoders internally.
UNLOGGED_MODULES = (
    "sklearn.preprocessing",
    "sklearn.impute",
    "sklearn.feature_extraction",
    "sklearn.feature_selection",
    "sklearn.compose",
)
MAX_PARAM_CHARS = 1000  # a repr longer than this (a param grid, a vocabulary) is cut
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


class AutologWarning(UserWarning):
    """Something could not be logged; the fit itself went on unaffected."""


@dataclass(frozen=True)
class _Config:
    client: Client | None
    log_models: bool
    log_datasets: bool
    max_tuning_runs: int | None
    registered_model_name: str | None
    experiment: str | None
    project: str | None
    dataset_name: str
    silent: bool


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.config: _Config | None = None
        self.originals: dict[type, Callable[..., Any]] = {}
        self.local = threading.local()
        self.outer_fits = 0  # autologged fits running in this process, all threads
        # The run that fitted each estimator, for evaluate(); weak: estimators are not kept alive.
        self.fitted_by: weakref.WeakKeyDictionary[Any, ActiveRun] = weakref.WeakKeyDictionary()


_state = _State()
_owners: list[type] | None = None  # classes whose own fit is wrapped (discovery takes ~1 s)


# --- the public API -----------------------------------------------------------------------------


def autolog(
    *,
    client: Client | None = None,
    log_models: bool = True,
    log_datasets: bool = True,
    max_tuning_runs: int | None = 50,
    registered_model_name: str | None = None,
    experiment: str | None = None,
    project: str | None = None,
    dataset_name: str = "train",
    silent: bool = False,
) -> None:
    """Log every scikit-learn ``fit`` (estimators, ``Pipeline``, ``GridSearchCV``,
    ``RandomizedSearchCV``) as a run, until :func:`disable`.

    - ``client``: where runs go (default: the module-level client, ``lh.connect(...)``).
    - ``log_models``: register the fitted estimator as the next ``ModelVersion`` of
      ``registered_model_name`` (default: the estimator's class name; for a search, its best
      estimator's).
    - ``log_datasets``: record the training data (X and y) as a ``DatasetVersion`` named
      ``dataset_name`` in namespace ``sklearn``, USED by the run with role ``train``.
    - ``max_tuning_runs``: at most this many child runs per search, the best ranked first
      (``None``: all candidates).
    - ``experiment``, ``project``: the grouping of the runs autolog starts.
    - ``silent``: report logging failures at debug level instead of as :class:`AutologWarning`.

    Calling it again replaces the options; the hooks are installed once.
    """
    if max_tuning_runs is not None and (
        isinstance(max_tuning_runs, bool) or not isinstance(max_tuning_runs, int)
    ):
        raise ValidationError("max_tuning_runs must be an int or None", field="max_tuning_runs")
    if max_tuning_runs is not None and max_tuning_runs < 0:
        raise ValidationError("max_tuning_runs must not be negative", field="max_tuning_runs")
    if not isinstance(dataset_name, str) or not dataset_name.strip():
        raise ValidationError("dataset_name must be a non-empty string", field="dataset_name")
    owners = _estimator_fit_owners()
    config = _Config(
        client=client,
        log_models=log_models,
        log_datasets=log_datasets,
        max_tuning_runs=max_tuning_runs,
        registered_model_name=registered_model_name,
        experiment=experiment,
        project=project,
        dataset_name=dataset_name,
        silent=silent,
    )
    with _state.lock:
        _state.config = config
        for owner in owners:
            if owner in _state.originals:
                continue
            original = owner.__dict__["fit"]
            _state.originals[owner] = original
            type.__setattr__(owner, "fit", _wrap(original))


def disable() -> None:
    """Stop autologging: every wrapped ``fit`` is the original function again."""
    with _state.lock:
        _state.config = None
        for owner, original in _state.originals.items():
            type.__setattr__(owner, "fit", original)
        _state.originals.clear()


def evaluate(
    model: Any,
    X: Any,
    y: Any,
    *,
    prefix: str = "test",
    run: ActiveRun | None = None,
    log_dataset: bool = True,
    dataset_name: str | None = None,
    slice_by: str | Sequence[Any] | None = None,
    slice_name: str | None = None,
) -> dict[str, float]:
    """Evaluate a fitted estimator on held-out data and log the results; returns the metrics.

    Metrics are those of training, named ``<prefix>_...`` (``test_accuracy``, ``test_f1``, ...,
    or ``test_mse``, ``test_r2``, ...), plus a confusion matrix and a classification report
    (classifiers) or residual statistics (regressors) as evaluation data, and ``(X, y)`` as a
    ``DatasetVersion`` (named ``dataset_name``, default ``prefix``; role ``test``, or
    ``validation`` when the prefix is ``val``/``valid``/``validation``).

    They go to ``run`` if given, else to the run that fitted ``model`` if it is still open,
    else to the active run. A finished run accepts no writes: when the fit ran as its own
    autologged run (already ended), call ``evaluate`` inside a run, e.g. fit and evaluate in
    one ``with lh.start_run(...)`` block, or pass ``run=``; otherwise it raises
    :class:`ValidationError` (``field="run"``).

    ``slice_by``: also compute the metrics on each value of a column of ``X`` (its name), or
    of a sequence of per-row values (named ``slice_name``, default ``slice``), kept with the
    run as per-slice results (:func:`lineagehub.ingest.evaluation.log_slices`).
    """
    _sklearn()
    if not isinstance(prefix, str) or not prefix:
        raise ValidationError("prefix must be a non-empty string", field="prefix")
    target = run
    if target is None:
        fitted = _fitted_run(model)
        target = fitted if fitted is not None and _is_open(fitted) else active_run()
    if target is None:
        raise ValidationError(
            f"evaluate: no open run for this {type(model).__name__}: the run that fitted it has "
            "ended (or it was not autologged) and no run is active. Fit and evaluate inside "
            "`with lh.start_run(...)`, or pass run=",
            field="run",
        )
    if not _is_open(target):
        raise ValidationError(
            f"evaluate: run {target.id!r} has ended; writes to a finished run are rejected. "
            "Evaluate inside `with lh.start_run(...)` or pass an open run=",
            field="run",
        )
    if log_dataset:
        role = (
            UsedRole.VALIDATION
            if prefix.lower() in ("val", "valid", "validation")
            else UsedRole.TEST
        )
        target.log_dataset(
            _data_with_target(X, y), name=dataset_name or prefix, namespace="sklearn", role=role
        )
    slices = None
    if slice_by is not None:
        from lineagehub.ingest.evaluation import slice_values

        slices = slice_values(X, slice_by)
        if y is None or len(slices) != len(y):
            raise ValidationError("slice_by needs y and one slice value per row", field="slice_by")
    with _quiet():
        metrics = _evaluate(target, model, X, y, prefix)
        if slices is not None:
            column = slice_by if isinstance(slice_by, str) else (slice_name or "slice")
            _log_slices(target, model, X, y, prefix, column, slices)
        finite = {k for k, v in metrics.items() if math.isfinite(v)}
        primary = next((f"{prefix}_{n}" for n in _PRIMARY if f"{prefix}_{n}" in finite), None)
        if primary is not None:
            # the held-out metric that stands for the run (lineagehub.services.headline)
            target.set_tags({PRIMARY_METRIC_TAG: primary})
        return metrics


# The evaluation metric marked as a run's primary one, first computed wins: ROC AUC for
# classifiers with probabilities, else accuracy; R² for regressors; else the model's score.
_PRIMARY = ("roc_auc", "accuracy", "r2", "score")


# --- the hook -----------------------------------------------------------------------------------


def _estimator_fit_owners() -> list[type]:
    """For every scikit-learn estimator class, the class of its MRO whose ``__dict__`` defines
    the ``fit`` it runs (``RandomForestClassifier`` runs ``BaseForest.fit``)."""
    global _owners
    if _owners is not None:
        return _owners
    _sklearn()
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.utils.discovery import all_estimators

    classes = [cls for _, cls in all_estimators() if not _unlogged(cls)]
    classes += [Pipeline, GridSearchCV, RandomizedSearchCV]
    found: dict[type, None] = {}
    for cls in classes:
        for klass in cls.__mro__:
            if "fit" in klass.__dict__:
                if inspect.isfunction(klass.__dict__["fit"]) and klass.__module__.startswith(
                    "sklearn."
                ):
                    found[klass] = None
                break
    _owners = list(found)
    return _owners


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        config = _state.config
        if config is None or _inner_fit() or _unlogged(type(self)):
            return original(self, *args, **kwargs)
        with _outermost():
            return _logged_fit(config, original, self, args, kwargs)

    return fit


def _unlogged(cls: type) -> bool:
    return cls.__module__.startswith(tuple(m + "." for m in UNLOGGED_MODULES))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No fit of this thread is a run here (evaluate's own metric computations)."""
    local = _state.local
    local.depth = getattr(local, "depth", 0) + 1
    try:
        yield
    finally:
        local.depth -= 1


def _inner_fit() -> bool:
    return getattr(_state.local, "depth", 0) > 0 or _state.outer_fits > 0


@contextlib.contextmanager
def _outermost() -> Iterator[None]:
    local = _state.local
    local.depth = getattr(local, "depth", 0) + 1
    with _state.lock:
        _state.outer_fits += 1
    try:
        yield
    finally:
        local.depth -= 1
        with _state.lock:
            _state.outer_fits -= 1


def _logged_fit(
    config: _Config,
    original: Callable[..., Any],
    estimator: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    X = args[0] if args else kwargs.get("X")
    y = args[1] if len(args) > 1 else kwargs.get("y", kwargs.get("Y"))
    run: ActiveRun | None = None
    owned = False
    try:
        run = active_run()
        if run is None:
            hub = config.client or default_client()
            run = hub.start_run(
                type(estimator).__name__, experiment=config.experiment, project=config.project
            )
            owned = True
        _log_before_fit(config, run, estimator, X, y)
    except Exception as e:
        _warn(config, f"autolog could not log the inputs of {type(estimator).__name__}.fit", e)
        if run is None:
            return original(estimator, *args, **kwargs)
    assert run is not None
    try:
        result = original(estimator, *args, **kwargs)
    except BaseException as e:
        if owned:
            interrupted = isinstance(e, KeyboardInterrupt)
            status = RunStatus.KILLED if interrupted else RunStatus.FAILED
            try:
                run.end(status, f"{type(e).__name__}: {e}")
            except Exception as end_error:
                _warn(config, f"autolog could not end run {run.id}", end_error)
        raise
    try:
        _log_after_fit(config, run, estimator, X, y)
    except Exception as e:
        _warn(config, f"autolog could not log {type(estimator).__name__}.fit", e)
    finally:
        with contextlib.suppress(TypeError):  # estimators are weak-referenceable; be safe
            _state.fitted_by[estimator] = run
        if owned:
            try:
                run.end(RunStatus.FINISHED)
            except Exception as e:
                _warn(config, f"autolog could not end run {run.id}", e)
    return result


def _warn(config: _Config, what: str, error: BaseException) -> None:
    message = f"lineagehub: {what}: {type(error).__name__}: {error}"
    if config.silent:
        logger.debug(message, exc_info=error)
    else:
        warnings.warn(message, AutologWarning, stacklevel=4)


# --- what a fit logs ----------------------------------------------------------------------------


def _log_before_fit(config: _Config, run: ActiveRun, estimator: Any, X: Any, y: Any) -> None:
    # Params, tags and data first, so a fit that fails still records what it was given.
    import sklearn

    cls = type(estimator)
    _log_params(run, {k: _param_value(v) for k, v in estimator.get_params(deep=True).items()})
    run.set_tags(
        {
            "estimator_name": cls.__name__,
            "estimator_class": f"{cls.__module__}.{cls.__qualname__}",
            "sklearn_version": sklearn.__version__,
        }
    )
    if config.log_datasets and X is not None:
        run.log_dataset(
            _data_with_target(X, y), name=config.dataset_name, namespace="sklearn", role="train"
        )


def _log_after_fit(config: _Config, run: ActiveRun, estimator: Any, X: Any, y: Any) -> None:
    results = getattr(estimator, "cv_results_", None)
    search = isinstance(results, Mapping) and "params" in results
    model = estimator
    if search:
        _log_search(config, run, estimator)
        model = getattr(estimator, "best_estimator_", None)
    if X is not None:
        _evaluate(run, estimator, X, y, "training")
    if model is not None:
        _log_feature_importances(run, model)
        if config.log_models:
            name = config.registered_model_name or type(model).__name__
            run.log_model(model, name=name, flavor="sklearn", signature=_signature(model))
        if model is not estimator:
            with contextlib.suppress(TypeError):
                _state.fitted_by[model] = run


def _log_params(run: ActiveRun, params: Mapping[str, Any]) -> None:
    params = {k: v for k, v in params.items() if _valid_key(k)}
    try:
        run.log_params(params)
    except ConflictError:
        # Several fits in one user run: keep each key's first value, log the rest.
        skipped = []
        for key, value in params.items():
            try:
                run.log_params({key: value})
            except ConflictError:
                skipped.append(key)
        logger.info("params already logged with other values, kept as they were: %s", skipped)


def _log_search(config: _Config, run: ActiveRun, search: Any) -> None:
    best_params = getattr(search, "best_params_", None)
    if best_params is not None:
        _log_params(run, {f"best_{k}": _param_value(v) for k, v in best_params.items()})
    best_score = getattr(search, "best_score_", None)
    if best_score is not None:
        run.log_metrics({"best_cv_score": float(best_score)})
    results: Mapping[str, Any] = search.cv_results_
    candidates = len(results["params"])
    rank_key = _rank_key(search, results)
    ranks = [int(r) for r in results[rank_key]] if rank_key else [1] * candidates
    order = sorted(range(candidates), key=lambda i: (ranks[i], i))
    best_index = getattr(search, "best_index_", None)
    best = int(best_index) if best_index is not None else order[0] if order else None
    if config.max_tuning_runs is not None:
        order = order[: config.max_tuning_runs]
    run.set_tags({"tuning_candidates": str(candidates), "tuning_runs_logged": str(len(order))})
    hub = run.client
    base = getattr(search, "estimator", None)
    base_name = type(base).__name__ if base is not None else "candidate"
    # the candidates in one batch: one transaction (one request to a hub server)
    with hub.batch() as batch:
        for i in order:
            child = batch.start_run(
                f"{base_name}-candidate-{i}",
                parent=run.id,
                project=run.info.project,
                experiment=run.info.experiment,
            )
            params = {k: _param_value(v) for k, v in results["params"][i].items()}
            batch.log(
                child,
                params={k: v for k, v in params.items() if _valid_key(k)},
                metrics={
                    key: float(values[i])
                    for key, values in results.items()
                    if key.startswith(("mean_", "std_", "rank_")) and _valid_key(key)
                },
                tags={
                    "best": "true" if i == best else "false",
                    "candidate_index": str(i),
                    "estimator_name": base_name,
                },
            )
            batch.end_run(child, RunStatus.FINISHED)


def _rank_key(search: Any, results: Mapping[str, Any]) -> str | None:
    refit = getattr(search, "refit", True)
    for key in (f"rank_test_{refit}" if isinstance(refit, str) else None, "rank_test_score"):
        if key is not None and key in results:
            return key
    return next((k for k in results if k.startswith("rank_test_")), None)


def _evaluate(run: ActiveRun, model: Any, X: Any, y: Any, prefix: str) -> dict[str, float]:
    """Compute the metrics of ``model`` on ``(X, y)`` and log them with the evaluation data;
    returns the metrics."""
    from sklearn.base import is_classifier, is_regressor

    predicted = None
    if y is not None and (is_classifier(model) or is_regressor(model)):
        try:
            predicted = model.predict(X)
        except Exception as e:
            logger.debug("no %s metrics from predictions: predict failed: %s", prefix, e)
    metrics = _metrics(model, X, y, predicted, prefix)
    if metrics:
        run.log_metrics(metrics)
    if predicted is not None:
        _log_evaluation_data(run, model, y, predicted, prefix)
    return metrics


def _log_slices(
    run: ActiveRun, model: Any, X: Any, y: Any, prefix: str, column: str, values: list[Any]
) -> None:
    """The evaluation metrics on each slice of the rows, kept with the run."""
    import numpy as np

    from lineagehub.ingest.evaluation import log_slices, slice_metrics

    y_all = np.asarray(y)

    def rows_of(data: Any, rows: list[int]) -> Any:
        return data.iloc[rows] if hasattr(data, "iloc") else np.asarray(data)[rows]

    def compute(rows: list[int]) -> dict[str, float]:
        Xs, ys = rows_of(X, rows), y_all[rows]
        try:
            predicted = model.predict(Xs)
        except Exception as e:
            logger.debug("no %s slice metrics: predict failed: %s", prefix, e)
            predicted = None
        found = _metrics(model, Xs, ys, predicted, prefix)
        return {k.removeprefix(f"{prefix}_"): v for k, v in found.items()}

    log_slices(run, column, slice_metrics(values, compute), prefix=prefix)


def _metrics(model: Any, X: Any, y: Any, predicted: Any, prefix: str) -> dict[str, float]:
    """``<prefix>_score`` (the estimator's own ``score``) and, with ``y``, the classification
    or regression metrics; one that cannot be computed (a single class, multi-output) is left
    out."""
    from sklearn import metrics as m
    from sklearn.base import is_classifier

    out: dict[str, float] = {}

    def add(name: str, compute: Callable[[], Any]) -> None:
        try:
            out[f"{prefix}_{name}"] = float(compute())
        except Exception as e:
            logger.debug("%s_%s not computed: %s", prefix, name, e)

    if hasattr(model, "score"):
        add("score", (lambda: model.score(X)) if y is None else (lambda: model.score(X, y)))
    if y is None or predicted is None:
        return out
    if is_classifier(model):
        add("accuracy", lambda: m.accuracy_score(y, predicted))
        for name, fn in (
            ("precision", m.precision_score),
            ("recall", m.recall_score),
            ("f1", m.f1_score),
        ):
            add(name, functools.partial(fn, y, predicted, average="weighted", zero_division=0))
        if hasattr(model, "predict_proba"):
            try:
                proba = model.predict_proba(X)
            except Exception as e:
                logger.debug("%s probabilistic metrics not computed: %s", prefix, e)
            else:
                classes = list(model.classes_)
                add("log_loss", lambda: m.log_loss(y, proba, labels=classes))
                if len(classes) == 2:
                    add("roc_auc", lambda: m.roc_auc_score(y, proba[:, 1]))
                else:
                    add(
                        "roc_auc",
                        lambda: m.roc_auc_score(y, proba, multi_class="ovr", labels=classes),
                    )
    else:
        add("mse", lambda: m.mean_squared_error(y, predicted))
        if f"{prefix}_mse" in out:
            out[f"{prefix}_rmse"] = math.sqrt(out[f"{prefix}_mse"])
        add("mae", lambda: m.mean_absolute_error(y, predicted))
        add("r2", lambda: m.r2_score(y, predicted))
    return out


def _log_evaluation_data(run: ActiveRun, model: Any, y: Any, predicted: Any, prefix: str) -> None:
    """A confusion matrix and a classification report (classifiers) or residual statistics
    (regressors) of the predictions, as evaluation data of the run."""
    import numpy as np
    from sklearn.base import is_classifier

    if is_classifier(model):
        from sklearn.metrics import classification_report, confusion_matrix

        labels = list(getattr(model, "classes_", np.unique(np.concatenate([y, predicted]))))
        matrix = confusion_matrix(y, predicted, labels=labels)
        run.log_confusion_matrix(matrix, labels=labels, name=f"{prefix}_confusion_matrix.json")
        report = classification_report(
            y,
            predicted,
            labels=labels,
            target_names=[str(c) for c in labels],
            output_dict=True,
            zero_division=0,
        )
        run.log_classification_report(report, name=f"{prefix}_classification_report.json")
    else:
        residuals = np.asarray(y, dtype=float).ravel() - np.asarray(predicted, dtype=float).ravel()
        _log_evaluation_dict(run, residual_stats(residuals), f"{prefix}_residuals.json")


def residual_stats(residuals: Any) -> dict[str, Any]:
    """Summary statistics of regression residuals (``y - predicted``): count, mean, std, min,
    max, max_abs and the 5/25/50/75/95 % quantiles (``{"0.05": ...}``)."""
    import numpy as np

    r = np.asarray(residuals, dtype=float).ravel()
    if r.size == 0:
        return {"count": 0}
    return {
        "count": int(r.size),
        "mean": float(r.mean()),
        "std": float(r.std()),
        "min": float(r.min()),
        "max": float(r.max()),
        "max_abs": float(np.abs(r).max()),
        "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, np.quantile(r, QUANTILES))},
    }


def _log_evaluation_dict(run: ActiveRun, data: dict[str, Any], name: str) -> None:
    run.log_evaluation(data, name, kind=ArtifactKind.REPORT)


def _log_feature_importances(run: ActiveRun, model: Any) -> None:
    import numpy as np

    final = _final_estimator(model)
    values = getattr(final, "feature_importances_", None)
    file = "feature_importances.json"
    if values is None:
        coef = getattr(final, "coef_", None)
        if coef is None:
            return
        file = "coefficients.json"
        coef = np.asarray(coef, dtype=float)
        # One output: the signed coefficients; several (classes): mean |coef| per feature.
        values = coef.ravel() if coef.ndim == 1 or coef.shape[0] == 1 else np.abs(coef).mean(0)
    values = np.asarray(values, dtype=float).ravel()
    names = _feature_names(model, final, len(values))
    run.log_feature_importances(names, values, name=file)


def _final_estimator(model: Any) -> Any:
    while True:
        inner = getattr(model, "best_estimator_", None)
        if inner is None and hasattr(model, "steps"):
            inner = model.steps[-1][1]
        if inner is None or inner is model:
            return model
        model = inner


def _feature_names(model: Any, final: Any, n: int) -> list[str]:
    candidates: list[Any] = [getattr(final, "feature_names_in_", None)]
    if hasattr(model, "steps") and len(model.steps) > 1:
        with contextlib.suppress(Exception):
            candidates.append(model[:-1].get_feature_names_out())
    candidates.append(getattr(model, "feature_names_in_", None))
    for names in candidates:
        if names is not None and len(names) == n:
            return [str(x) for x in names]
    return [f"x{i}" for i in range(n)]


def _signature(model: Any) -> dict[str, Any]:
    signature: dict[str, Any] = {}
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        signature["inputs"] = [str(x) for x in names]
    n = getattr(model, "n_features_in_", None)
    if n is not None:
        signature["n_features"] = int(n)
    classes = getattr(model, "classes_", None)
    if classes is not None and getattr(classes, "ndim", 1) == 1:
        signature["classes"] = [_param_value(c) for c in classes]
    return signature


# --- values ---------------------------------------------------------------------------------------


def _param_value(value: Any) -> Any:
    """A param as a JSON scalar: scalars as they are (numpy ones unwrapped), estimators as
    their class name, functions and classes as their name, anything else as a repr with the
    estimators in it shortened to their class names (``[('scaler', StandardScaler), ...]``)."""
    if (
        hasattr(value, "item")
        and type(value).__module__ == "numpy"
        and getattr(value, "ndim", 1) == 0
    ):
        value = value.item()
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return str(value)  # beyond what JSON numbers keep exactly: as its digits
    if value is None or isinstance(value, (bool, int, str)):
        return value if not isinstance(value, str) else _cut(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return _cut(_describe(value))


def _describe(value: Any) -> str:
    if hasattr(value, "get_params") and not isinstance(value, type):
        return type(value).__name__
    if isinstance(value, type) or inspect.isroutine(value):
        return str(getattr(value, "__qualname__", getattr(value, "__name__", repr(value))))
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_describe(v) if _nested(v) else repr(v) for v in value)
        return (
            f"[{inner}]"
            if isinstance(value, list)
            else f"({inner}{',' if len(value) == 1 else ''})"
        )
    if isinstance(value, dict):
        items = ", ".join(
            f"{k!r}: {_describe(v) if _nested(v) else repr(v)}" for k, v in value.items()
        )
        return "{" + items + "}"
    return repr(value)


def _nested(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple, dict, type))
        or inspect.isroutine(value)
        or (hasattr(value, "get_params") and not isinstance(value, type))
    )


def _cut(text: str) -> str:
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 1] + "…"


def _valid_key(key: str) -> bool:
    from lineagehub.vocabulary import check_key

    try:
        check_key(key, "params")
    except ValidationError:
        logger.debug("skipped a key the hub does not accept: %r", key)
        return False
    return True


def _data_with_target(X: Any, y: Any) -> Any:
    """The data as one table: X's columns (a DataFrame's own, else ``x0``, ``x1``...) and y as
    ``target`` (a named Series keeps its name; 2-D y gives ``target_0``...). Without y, X
    itself (no copy). Sparse X is densified only for its fingerprint's sake: refused."""
    import numpy as np
    import pandas as pd

    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise ValidationError("sparse training data is not logged as a dataset", field="X")
    if y is None:
        return X
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))
    if not isinstance(X, pd.DataFrame):
        frame.columns = [f"x{i}" for i in range(frame.shape[1])]
    values = np.asarray(y)
    if values.ndim == 1:
        name = y.name if isinstance(y, pd.Series) and y.name is not None else "target"
        columns = {str(name): values}
    else:
        columns = {f"target_{j}": values[:, j] for j in range(values.shape[1])}
    taken = {str(c) for c in frame.columns}
    columns = {(k if k not in taken else f"{k}_target"): v for k, v in columns.items()}
    return frame.assign(**columns)


# --- helpers ------------------------------------------------------------------------------------


def _fitted_run(model: Any) -> ActiveRun | None:
    try:
        return _state.fitted_by.get(model)
    except TypeError:
        return None


def _is_open(run: ActiveRun) -> bool:
    return bool(run.info.status == RunStatus.RUNNING)


def _sklearn() -> Any:
    try:
        import sklearn
    except ImportError as e:
        raise ConfigError(
            "scikit-learn autologging needs scikit-learn: pip install 'lineagehub[sklearn]'"
        ) from e
    return sklearn


__all__ = ["AutologWarning", "autolog", "disable", "evaluate", "residual_stats"]
