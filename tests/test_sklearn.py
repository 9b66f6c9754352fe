"""scikit-learn autologging end to end: real (tiny) training into a real embedded hub (a SQLite
file and an artifact folder), checked in the hub's graph and against what scikit-learn computes
itself."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import metrics
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

import lineagehub as lh
from lineagehub.graph import ValidationError
from lineagehub.ingest import client as sdk
from lineagehub.ingest import sklearn as lh_sklearn
from lineagehub.ingest.client import ActiveRun, Client
from lineagehub.vocabulary import Artifact, DatasetVersion, ModelVersion, Run, RunStatus


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Client]:
    """An embedded hub in a temporary folder, with autologging into it."""
    client = Client(f"sqlite:///{tmp_path / 'hub.db'}")
    lh_sklearn.autolog(client=client)
    try:
        yield client
    finally:
        lh_sklearn.disable()
        client.close()


def runs_of(hub: Client) -> list[Run]:
    runs, _ = hub.search_runs(order_by="started_at", limit=1000)
    return runs


def only_run(hub: Client) -> Run:
    (run,) = runs_of(hub)
    return run


def evaluations(hub: Client, run_id: str) -> dict[str, Artifact]:
    return dict(hub.tracking.artifacts_of(run_id))


def used_datasets(hub: Client, run_id: str) -> list[tuple[str, DatasetVersion]]:
    assert hub.store is not None
    found = hub.store.neighbors([run_id], "UPSTREAM", ["USED"], ["DatasetVersion"])[run_id]
    return [(str(a.edge.props["role"]), DatasetVersion.from_node(a.node)) for a in found]


def generated_models(hub: Client, run_id: str) -> list[ModelVersion]:
    assert hub.store is not None
    found = hub.store.neighbors([run_id], "DOWNSTREAM", ["GENERATED_BY"], ["ModelVersion"])
    return [ModelVersion.from_node(a.node) for a in found[run_id]]


def classification_metrics(model: Any, X: Any, y: Any, prefix: str) -> dict[str, float]:
    predicted, proba = model.predict(X), model.predict_proba(X)
    return {
        f"{prefix}_score": model.score(X, y),
        f"{prefix}_accuracy": metrics.accuracy_score(y, predicted),
        f"{prefix}_precision": metrics.precision_score(y, predicted, average="weighted"),
        f"{prefix}_recall": metrics.recall_score(y, predicted, average="weighted"),
        f"{prefix}_f1": metrics.f1_score(y, predicted, average="weighted"),
        f"{prefix}_log_loss": metrics.log_loss(y, proba, labels=model.classes_),
        f"{prefix}_roc_auc": (
            metrics.roc_auc_score(y, proba[:, 1])
            if len(model.classes_) == 2
            else metrics.roc_auc_score(y, proba, multi_class="ovr")
        ),
    }


def test_a_classifier_fit_is_one_run_with_everything_it_learned_from_and_made(hub: Client) -> None:
    X, y = load_iris(return_X_y=True, as_frame=True)
    # n_jobs=2: the trees are fitted in joblib worker threads; they are not runs of their own.
    model = RandomForestClassifier(n_estimators=5, max_depth=3, n_jobs=2, random_state=0)
    assert model.fit(X, y) is model

    run = only_run(hub)
    assert (run.name, run.status) == ("RandomForestClassifier", RunStatus.FINISHED)
    assert run.params["n_estimators"] == 5
    assert run.params["max_depth"] == 3
    assert run.params["class_weight"] is None
    assert run.tags["estimator_name"] == "RandomForestClassifier"
    assert run.tags["estimator_class"].endswith(".RandomForestClassifier")
    import sklearn

    assert run.tags["sklearn_version"] == sklearn.__version__
    expected = classification_metrics(model, X, y, "training")
    assert run.metrics == pytest.approx(expected)

    ((role, data),) = used_datasets(hub, run.id)
    assert (role, data.namespace, data.name, data.row_count) == ("train", "sklearn", "train", 150)
    assert data.columns is not None
    assert [c.name for c in data.columns] == [*X.columns, "target"]

    (version,) = generated_models(hub, run.id)
    assert (version.model, version.version, version.flavor) == (
        "RandomForestClassifier",
        1,
        "sklearn",
    )
    assert version.signature == {"inputs": list(X.columns), "n_features": 4, "classes": [0, 1, 2]}
    assert version.metrics["training_accuracy"] == pytest.approx(expected["training_accuracy"])
    loaded = pickle.loads(hub.artifacts.get_bytes(version.artifact_digest))
    assert (loaded.predict(X) == model.predict(X)).all()

    found = evaluations(hub, run.id)
    matrix = found["training_confusion_matrix.json"]
    assert matrix.kind.value == "confusion-matrix"
    assert matrix.data == {
        "labels": ["0", "1", "2"],
        "matrix": metrics.confusion_matrix(y, model.predict(X)).tolist(),
    }
    report = found["training_classification_report.json"].data
    assert report is not None
    assert report["accuracy"] == pytest.approx(expected["training_accuracy"])
    assert report["2"]["support"] == 50
    importances = found["feature_importances.json"]
    assert importances.kind.value == "feature-importances"
    assert importances.data == {
        "features": list(X.columns),
        "importances": pytest.approx(model.feature_importances_.tolist()),
    }


def test_a_regressor_logs_regression_metrics_residual_statistics_and_coefficients(
    hub: Client,
) -> None:
    X, y = load_diabetes(return_X_y=True)  # numpy arrays: no feature names
    model = Ridge(alpha=0.5).fit(X, y)

    run = only_run(hub)
    predicted = model.predict(X)
    mse = metrics.mean_squared_error(y, predicted)
    assert run.metrics == pytest.approx(
        {
            "training_score": model.score(X, y),
            "training_mse": mse,
            "training_rmse": mse**0.5,
            "training_mae": metrics.mean_absolute_error(y, predicted),
            "training_r2": metrics.r2_score(y, predicted),
        }
    )
    ((_, data),) = used_datasets(hub, run.id)
    assert data.columns is not None
    assert [c.name for c in data.columns] == [f"x{i}" for i in range(10)] + ["target"]

    found = evaluations(hub, run.id)
    residuals = y - predicted
    stats = found["training_residuals.json"].data
    assert stats is not None
    assert stats["count"] == len(y)
    assert stats["mean"] == pytest.approx(residuals.mean(), abs=1e-9)
    assert stats["std"] == pytest.approx(residuals.std())
    assert stats["max_abs"] == pytest.approx(np.abs(residuals).max())
    assert stats["quantiles"]["0.5"] == pytest.approx(np.median(residuals))
    coefficients = found["coefficients.json"].data
    assert coefficients == {
        "features": [f"x{i}" for i in range(10)],
        "importances": pytest.approx(model.coef_.tolist()),
    }
    assert "training_confusion_matrix.json" not in found


def test_a_pipeline_fit_is_exactly_one_run_with_the_steps_params_nested(hub: Client) -> None:
    X, y = load_wine(return_X_y=True, as_frame=True)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=500))
    pipeline.fit(X, y)

    run = only_run(hub)  # the scaler's and the classifier's own fits are not runs
    assert run.name == "Pipeline"
    assert run.params["logisticregression__C"] == 0.5
    assert run.params["standardscaler__with_mean"] is True
    assert run.params["logisticregression"] == "LogisticRegression"
    assert run.params["steps"] == (
        "[('standardscaler', StandardScaler), ('logisticregression', LogisticRegression)]"
    )
    assert run.metrics == pytest.approx(classification_metrics(pipeline, X, y, "training"))
    (version,) = generated_models(hub, run.id)
    assert version.model == "Pipeline"
    coefficients = evaluations(hub, run.id)["coefficients.json"].data
    assert coefficients is not None
    assert coefficients["features"] == list(X.columns)  # three classes: mean |coef| per feature
    expected = np.abs(pipeline[-1].coef_).mean(axis=0)
    assert coefficients["importances"] == pytest.approx(expected.tolist())


def test_a_grid_search_is_a_parent_run_with_one_child_run_per_candidate(hub: Client) -> None:
    X, y = load_iris(return_X_y=True, as_frame=True)
    grid = {"C": [0.05, 1.0, 20.0], "fit_intercept": [True, False]}
    search = GridSearchCV(LogisticRegression(max_iter=300), grid, cv=2, return_train_score=True)
    search.fit(X, y)
    results = search.cv_results_

    runs = runs_of(hub)
    (parent,) = [r for r in runs if r.parent is None]
    children = [r for r in runs if r.parent == parent.id]
    assert len(runs) == 1 + len(children)  # no run for the 12 inner fits nor the refit
    assert len(children) == len(results["params"]) == 6
    assert parent.name == "GridSearchCV"
    assert parent.params["cv"] == 2
    assert parent.params["estimator"] == "LogisticRegression"
    assert parent.params["estimator__max_iter"] == 300
    assert parent.params["param_grid"] == repr(grid)
    for key, value in search.best_params_.items():
        assert parent.params[f"best_{key}"] == value
    assert parent.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    assert parent.metrics["training_accuracy"] == pytest.approx(search.score(X, y))
    assert parent.tags["tuning_candidates"] == "6"

    (version,) = generated_models(hub, parent.id)
    assert version.model == "LogisticRegression"  # the best estimator, refitted
    loaded = pickle.loads(hub.artifacts.get_bytes(version.artifact_digest))
    assert loaded.get_params() == search.best_estimator_.get_params()

    assert hub.store is not None
    edges = hub.store.neighbors([parent.id], "DOWNSTREAM", ["CHILD_OF"], ["Run"])[parent.id]
    assert {a.node.id for a in edges} == {c.id for c in children}
    best = [c for c in children if c.tags["best"] == "true"]
    assert len(best) == 1
    assert best[0].params == search.best_params_
    assert best[0].metrics["rank_test_score"] == 1
    for child in children:
        i = results["params"].index(child.params)
        assert child.tags["candidate_index"] == str(i)
        assert child.metrics["mean_test_score"] == pytest.approx(results["mean_test_score"][i])
        assert child.metrics["std_test_score"] == pytest.approx(results["std_test_score"][i])
        assert child.metrics["mean_train_score"] == pytest.approx(results["mean_train_score"][i])
        assert child.experiment == parent.experiment


def test_a_randomized_search_logs_at_most_max_tuning_runs_children_best_first(
    hub: Client,
) -> None:
    lh_sklearn.autolog(client=hub, max_tuning_runs=2, registered_model_name="tree")
    X, y = load_breast_cancer(return_X_y=True)
    search = RandomizedSearchCV(
        DecisionTreeClassifier(random_state=0),
        {"max_depth": [1, 2, 3, 4, 5], "min_samples_leaf": [1, 5, 20]},
        n_iter=5,
        cv=2,
        random_state=0,
    ).fit(X, y)

    runs = runs_of(hub)
    (parent,) = [r for r in runs if r.parent is None]
    children = [r for r in runs if r.parent == parent.id]
    assert parent.name == "RandomizedSearchCV"
    assert (parent.tags["tuning_candidates"], parent.tags["tuning_runs_logged"]) == ("5", "2")
    ranks = sorted(search.cv_results_["rank_test_score"])[:2]
    assert sorted(c.metrics["rank_test_score"] for c in children) == ranks
    assert [c.params for c in children if c.tags["best"] == "true"] == [search.best_params_]
    assert [v.node_id for v in generated_models(hub, parent.id)] == ["mv:tree/1"]


def test_a_fit_inside_an_active_run_is_logged_into_that_run(hub: Client) -> None:
    X, y = load_iris(return_X_y=True)
    with hub.start_run("mine", experiment="exp") as run:
        model = LogisticRegression(max_iter=300).fit(X, y)
        assert run.info.status is RunStatus.RUNNING  # autolog does not end the user's run
        run.log_metrics({"extra": 1.0})

    (stored,) = runs_of(hub)
    assert (stored.id, stored.name, stored.status) == (run.id, "mine", RunStatus.FINISHED)
    assert stored.params["max_iter"] == 300
    assert stored.metrics["training_accuracy"] == pytest.approx(model.score(X, y))
    assert stored.metrics["extra"] == 1.0
    assert [v.model for v in generated_models(hub, run.id)] == ["LogisticRegression"]


def test_autolog_without_a_client_uses_the_module_level_one(tmp_path: Path) -> None:
    client = lh.connect(f"sqlite:///{tmp_path / 'hub.db'}")
    lh_sklearn.autolog(experiment="default-client")
    try:
        Ridge().fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.1])
        (run,) = runs_of(client)
        assert (run.name, run.experiment) == ("Ridge", "default-client")
    finally:
        lh_sklearn.disable()
        client.close()
        sdk._default = None


def test_a_failing_fit_ends_its_run_failed_and_raises(hub: Client) -> None:
    X = np.arange(8.0).reshape(4, 2)
    with pytest.raises(ValueError, match="class"):
        LogisticRegression().fit(X, [1, 1, 1, 1])  # one class only

    run = only_run(hub)
    assert run.status == RunStatus.FAILED
    assert run.error is not None and run.error.startswith("ValueError:")
    assert run.params["C"] == 1.0  # what it was given is still recorded
    assert generated_models(hub, run.id) == []
    assert lh.active_run() is None


def test_a_logging_failure_warns_and_the_fit_goes_on(
    hub: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = load_iris(return_X_y=True)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(ActiveRun, "log_model", broken)
    model = LogisticRegression(max_iter=300)
    with pytest.warns(lh_sklearn.AutologWarning, match="disk full"):
        assert model.fit(X, y) is model
    assert model.score(X, y) > 0.9
    run = only_run(hub)
    assert run.status == RunStatus.FINISHED  # ended even so
    assert "training_accuracy" in run.metrics

    assert hub.store is not None
    hub.store.close()  # the hub is gone: no run can start
    other = DecisionTreeClassifier(max_depth=2, random_state=0)
    with pytest.warns(lh_sklearn.AutologWarning, match="could not log"):
        assert other.fit(X, y) is other
    assert other.score(X, y) > 0.9


def test_silent_logs_failures_at_debug_level(
    hub: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lh_sklearn.autolog(client=hub, silent=True)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(ActiveRun, "log_model", broken)
    with warnings.catch_warnings(), caplog.at_level("DEBUG", logger=lh_sklearn.__name__):
        warnings.simplefilter("error")
        Ridge().fit([[0.0], [1.0]], [0.0, 1.0])
    assert "disk full" in caplog.text


def test_disable_restores_every_original_fit(hub: Client) -> None:
    lh_sklearn.disable()
    classes = [LogisticRegression, RandomForestClassifier, Pipeline, GridSearchCV, Ridge]
    originals = {cls: cls.fit for cls in classes}
    lh_sklearn.autolog(client=hub)
    for cls in classes:
        assert cls.fit is not originals[cls]
        assert cls.fit.__wrapped__ is originals[cls]  # type: ignore[attr-defined]
    lh_sklearn.disable()
    for cls in classes:
        assert cls.fit is originals[cls]
    Ridge().fit([[0.0], [1.0]], [0.0, 1.0])
    make_pipeline(StandardScaler(), Ridge()).fit([[0.0], [1.0]], [0.0, 1.0])
    assert runs_of(hub) == []


def test_evaluate_logs_held_out_metrics_and_evaluations_into_the_fitting_run(
    hub: Client,
) -> None:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    with hub.start_run("train-and-test") as run:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
        model.fit(X_train, y_train)
        result = lh_sklearn.evaluate(model, X_test, y_test)

    expected = classification_metrics(model, X_test, y_test, "test")
    assert result == pytest.approx(expected)
    stored = only_run(hub)
    assert {k: v for k, v in stored.metrics.items() if k.startswith("test_")} == pytest.approx(
        expected
    )
    assert "training_accuracy" in stored.metrics
    found = evaluations(hub, run.id)
    assert found["test_confusion_matrix.json"].data == {
        "labels": ["0", "1"],
        "matrix": metrics.confusion_matrix(y_test, model.predict(X_test)).tolist(),
    }
    assert found["test_classification_report.json"].data is not None
    roles = {(role, d.name, d.row_count) for role, d in used_datasets(hub, run.id)}
    assert roles == {("train", "train", len(y_train)), ("test", "test", len(y_test))}


def test_evaluate_after_the_fitting_run_ended_needs_an_open_run(hub: Client) -> None:
    X, y = load_diabetes(return_X_y=True)
    model = Ridge().fit(X[:300], y[:300])  # its own run, ended after the fit
    with pytest.raises(ValidationError, match=r"lh\.start_run") as info:
        lh_sklearn.evaluate(model, X[300:], y[300:])
    assert info.value.field == "run"

    with hub.start_run("evaluation", kind="evaluate") as run:
        result = lh_sklearn.evaluate(model, X[300:], y[300:], prefix="val", run=run)
    predicted = model.predict(X[300:])
    assert result["val_mse"] == pytest.approx(metrics.mean_squared_error(y[300:], predicted))
    assert result["val_r2"] == pytest.approx(metrics.r2_score(y[300:], predicted))
    assert hub.get_run(run.id).metrics == pytest.approx(result)
    stats = evaluations(hub, run.id)["val_residuals.json"].data
    assert stats is not None and stats["count"] == len(y) - 300
    assert [(r, d.name) for r, d in used_datasets(hub, run.id)] == [("validation", "val")]


def test_data_preparation_alone_and_metric_helpers_are_not_runs(hub: Client) -> None:
    X, y = load_iris(return_X_y=True)
    StandardScaler().fit(X)  # a transformer of sklearn.preprocessing fitted alone
    assert runs_of(hub) == []
    with hub.start_run("mine") as run:
        # log_loss fits a LabelBinarizer inside: nothing is logged into the user's run
        metrics.log_loss(y, np.full((len(y), 3), 1 / 3))
    (stored,) = runs_of(hub)
    assert (stored.id, stored.params, stored.tags) == (run.id, {}, {})
