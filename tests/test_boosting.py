"""The XGBoost and LightGBM adapters: real (tiny) trainings on CPU, logged through the
callbacks and autolog() on both stores, embedded and through a real server; models load
back; an unreachable hub never stops training."""

from __future__ import annotations

import contextlib
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
from model_hub import Hub

from lineagehub import Settings
from lineagehub.ingest import lightgbm as lh_lgb
from lineagehub.ingest import xgboost as lh_xgb
from lineagehub.ingest.client import Client
from lineagehub.ingest.sklearn import AutologWarning
from lineagehub.vocabulary import RunStatus


@pytest.fixture
def hub(store_backend: str, tmp_path: Path) -> Iterator[Hub]:
    with contextlib.ExitStack() as stack:
        yield Hub(tmp_path / "hub", stack, store_backend)


@pytest.fixture(params=["embedded", "remote"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _no_autolog() -> Iterator[None]:
    yield
    lh_xgb.disable()
    lh_lgb.disable()


def _data(rows: int = 240) -> tuple[Any, Any]:
    rng = np.random.default_rng(3)
    X = rng.random((rows, 4))
    return X, (X[:, 0] + 0.3 * X[:, 1] > 0.6).astype(int)


def half_abs_error(predt: Any, dmat: Any) -> tuple[str, float]:
    """A user-defined XGBoost metric: captured with the model."""
    return "half_abs", float(np.mean(np.abs(predt - dmat.get_label())) / 2)


def lgb_half_abs(preds: Any, data: Any) -> tuple[str, float, bool]:
    """A user-defined LightGBM metric: captured with the model."""
    return "half_abs", float(np.mean(np.abs(preds - data.get_label())) / 2), False


def _only_run(client: Client, name: str) -> Any:
    runs, _ = client.search_runs({"name": name})
    assert len(runs) == 1, runs
    return runs[0]


def _datasets_used(client: Client, run_id: str) -> dict[str, str]:
    sub = client.lineage([run_id], upstream_depth=1, edge_kinds=["USED"])
    used = {}
    for edge in sub.edges:
        node = sub.nodes[edge.target].node
        if node.label == "DatasetVersion":
            used[node.props["name"]] = str(edge.props["role"])
    return used


# --- XGBoost ------------------------------------------------------------------------------------


def test_xgboost_autolog_records_a_training(hub: Hub, mode: str) -> None:
    client = hub.client(mode)
    X, y = _data()
    dtrain = xgb.DMatrix(X[:180], label=y[:180], feature_names=["a", "b", "c", "d"])
    dvalid = xgb.DMatrix(X[180:], label=y[180:], feature_names=["a", "b", "c", "d"])
    lh_xgb.autolog(client=client, model_name="churn-xgb", experiment="boost")
    params = {"objective": "binary:logistic", "max_depth": 2, "eta": 0.3}
    booster = xgb.train(
        params,
        dtrain,
        40,
        evals=[(dtrain, "train"), (dvalid, "valid")],
        early_stopping_rounds=4,
        custom_metric=half_abs_error,
        verbose_eval=False,
    )
    run = _only_run(client, "xgboost")
    assert run.status is RunStatus.FINISHED
    assert run.params["max_depth"] == 2 and run.params["num_boost_round"] == 40
    assert run.params["early_stopping_rounds"] == 4
    assert {"train-logloss", "valid-logloss", "valid-half_abs", "best_iteration"} <= set(
        run.metrics
    )
    assert run.metrics["best_iteration"] == float(booster.best_iteration)
    history = client.metric_history(run.id, "valid-logloss")
    assert [p.step for p in history] == list(range(booster.num_boosted_rounds()))
    assert _datasets_used(client, run.id) == {"train": "train", "valid": "validation"}
    evaluations = dict(client.tracking.artifacts_of(run.id))
    importances = evaluations["feature_importances.json"].data or {}
    assert importances["features"] == ["a", "b", "c", "d"]
    assert importances["importances"][0] > 0  # the feature the label depends on most

    version = client.get_model_version("churn-xgb@latest")
    assert version.flavor == "xgboost"
    meta = version.metadata or {}
    assert meta["environment"]["packages"]["xgboost"] == xgb.__version__
    assert [c["qualname"] for c in meta["custom_objects"]] == ["half_abs_error"]
    loaded = client.load_model("churn-xgb/1")
    assert isinstance(loaded, xgb.Booster)
    assert np.allclose(loaded.predict(dvalid), booster.predict(dvalid))


def test_xgboost_sklearn_api_and_the_callback_in_a_run(hub: Hub, mode: str) -> None:
    client = hub.client(mode)
    X, y = _data()
    lh_xgb.autolog(client=client, model_name="clf")
    clf = xgb.XGBClassifier(n_estimators=6, max_depth=2).fit(X, y, eval_set=[(X, y)], verbose=False)
    lh_xgb.disable()
    run = _only_run(client, "xgboost")
    assert "validation_0-logloss" in run.metrics and run.params["max_depth"] == 2
    assert client.load_model("clf/1").num_boosted_rounds() == 6

    # the callback alone, inside the user's run; an XGBClassifier logged by the user loads
    # back as an XGBClassifier
    dtrain = xgb.DMatrix(X, label=y)
    with client.start_run("manual", capture=False) as mine:
        callback = lh_xgb.LineageCallback(params={"max_depth": 3}, model_name="manual")
        xgb.train({"max_depth": 3}, dtrain, 5, evals=[(dtrain, "train")], callbacks=[callback],
                  verbose_eval=False)  # fmt: skip
        mine.log_model(clf, name="wrapper")
    assert callback.version is not None and callback.version.flavor == "xgboost"
    manual = client.get_run(mine.id)
    assert manual.status is RunStatus.FINISHED and manual.params == {"max_depth": 3}
    assert len(client.metric_history(mine.id, "train-rmse")) == 5
    wrapper = client.load_model("wrapper/1")
    assert isinstance(wrapper, xgb.XGBClassifier)
    assert (wrapper.predict(X) == clf.predict(X)).all()


def test_odd_metric_names_and_params_cost_only_themselves(hub: Hub) -> None:
    """``error@0.7`` (a built-in XGBoost metric) is not a key the hub takes: it stopped all
    logging of the training (no metrics, no model); a param beyond 64 bits lost every param."""
    client = hub.client("embedded")
    X, y = _data()
    dtrain = xgb.DMatrix(X, label=y)
    lh_xgb.autolog(client=client, model_name="odd")
    params = {"objective": "binary:logistic", "max_depth": 2, "seed_hash": np.iinfo(np.uint64).max}
    params["eval_metric"] = ["logloss", "error@0.7"]
    with pytest.warns(AutologWarning, match=r"'train-error@0.7' is logged as 'train-error_at_0.7'"):
        xgb.train(params, dtrain, 3, evals=[(dtrain, "train")], verbose_eval=False)
    run = _only_run(client, "xgboost")
    assert {"train-logloss", "train-error_at_0.7"} <= set(run.metrics)
    assert run.params["max_depth"] == 2
    assert run.params["seed_hash"] == str(np.iinfo(np.uint64).max)  # its digits, as text
    assert client.get_model_version("odd@latest").flavor == "xgboost"


class _Diverges(xgb.callback.TrainingCallback):
    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        raise FloatingPointError("diverged")


def test_an_explicit_callback_whose_training_raises_leaves_no_open_run(hub: Hub) -> None:
    """XGBoost calls no after_training when training raises: the callback's run must not
    stay the thread's active run (the next training logged into it) nor end FINISHED."""
    client = hub.client("embedded")
    X, y = _data()
    dtrain = xgb.DMatrix(X, label=y)
    failing = lh_xgb.LineageCallback(client=client, model_name="first")
    with pytest.raises(FloatingPointError):
        xgb.train({"max_depth": 2}, dtrain, 3, callbacks=[failing, _Diverges()])
    assert failing.guard.run is not None
    left = failing.guard.run.id
    after = lh_xgb.LineageCallback(client=client, model_name="second")
    xgb.train({"max_depth": 2}, dtrain, 3, evals=[(dtrain, "train")], callbacks=[after])
    assert after.guard.run is not None and after.guard.run.id != left
    first = client.get_run(left)
    assert first.status is RunStatus.FAILED and "before its end" in (first.error or "")
    assert client.get_run(after.guard.run.id).status is RunStatus.FINISHED


# --- LightGBM -----------------------------------------------------------------------------------


def test_lightgbm_autolog_records_a_training(hub: Hub, mode: str) -> None:
    client = hub.client(mode)
    X, y = _data()
    train_set = lgb.Dataset(X[:180], label=y[:180])
    valid_set = lgb.Dataset(X[180:], label=y[180:], reference=train_set)
    lh_lgb.autolog(client=client, model_name="churn-lgb")
    params = {"objective": "binary", "num_leaves": 4, "verbose": -1, "seed": 1}
    booster = lgb.train(
        params,
        train_set,
        40,
        valid_sets=[valid_set],
        valid_names=["valid"],
        feval=lgb_half_abs,
        callbacks=[lgb.early_stopping(3, verbose=False)],
    )
    run = _only_run(client, "lightgbm")
    assert run.status is RunStatus.FINISHED
    assert run.params["num_leaves"] == 4 and run.params["num_boost_round"] == 40
    assert {"valid-binary_logloss", "valid-half_abs", "best_iteration"} <= set(run.metrics)
    assert run.metrics["best_iteration"] == float(booster.best_iteration)
    assert _datasets_used(client, run.id) == {"train": "train", "valid": "validation"}
    importances = dict(client.tracking.artifacts_of(run.id))["feature_importances.json"]
    assert (importances.data or {})["features"] == booster.feature_name()

    version = client.get_model_version("churn-lgb@latest")
    meta = version.metadata or {}
    assert version.flavor == "lightgbm" and meta["data"]["kind"] == "booster"
    assert meta["environment"]["packages"]["lightgbm"] == lgb.__version__
    assert [c["qualname"] for c in meta["custom_objects"]] == ["lgb_half_abs"]
    loaded = client.load_model("churn-lgb/1")
    assert np.allclose(loaded.predict(X), booster.predict(X))


def test_lightgbm_sklearn_api_and_the_callback(hub: Hub, mode: str) -> None:
    client = hub.client(mode)
    X, y = _data()
    lh_lgb.autolog(client=client, model_name="lgb-clf")
    clf = lgb.LGBMClassifier(n_estimators=5, num_leaves=4, verbose=-1).fit(X, y)
    lh_lgb.disable()
    assert _only_run(client, "lightgbm").params["num_leaves"] == 4
    assert client.load_model("lgb-clf/1").num_trees() == 5
    with client.start_run("manual", capture=False) as run:
        run.log_model(clf, name="lgb-wrapper")
    wrapper = client.load_model("lgb-wrapper/1")
    assert isinstance(wrapper, lgb.LGBMClassifier)
    assert (wrapper.predict(X) == clf.predict(X)).all()

    # the callback alone finishes at the last iteration (no early stopping)
    callback = lh_lgb.LineageCallback(client=client, model_name="cb", experiment="cb")
    lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, label=y), 4,
              valid_sets=[lgb.Dataset(X, label=y)], callbacks=[callback])  # fmt: skip
    assert callback.version is not None
    cb_run = client.get_run(callback.guard.run.id)  # type: ignore[union-attr]
    assert cb_run.status is RunStatus.FINISHED and cb_run.params["objective"] == "binary"
    assert len(client.metric_history(cb_run.id, "valid_0-binary_logloss")) == 4


# --- an unreachable hub ---------------------------------------------------------------------


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_training_goes_on_when_the_hub_is_unreachable() -> None:
    client = Client(_closed_port(), settings=Settings(user="ann"))
    X, y = _data()
    try:
        lh_xgb.autolog(client=client)
        with pytest.warns(AutologWarning, match="training goes on"):
            booster = xgb.train({"max_depth": 2}, xgb.DMatrix(X, label=y), 5)
        assert booster.num_boosted_rounds() == 5
        lh_lgb.autolog(client=client)
        with pytest.warns(AutologWarning, match="training goes on"):
            model = lgb.train({"verbose": -1}, lgb.Dataset(X, label=y), 5)
        assert model.num_trees() == 5
    finally:
        client.close()


class _StopServer(xgb.callback.TrainingCallback):
    def __init__(self, hub: Hub, at: int) -> None:
        self.hub, self.at = hub, at

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        if epoch == self.at and self.hub.server is not None:
            self.hub.server.stop()
        return False


def test_training_goes_on_when_the_server_dies_mid_training(hub: Hub) -> None:
    client = hub.remote()
    X, y = _data()
    dtrain = xgb.DMatrix(X, label=y)
    callback = lh_xgb.LineageCallback(client=client, model_name="dies", log_datasets=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        booster = xgb.train({"max_depth": 2}, dtrain, 10, evals=[(dtrain, "train")],
                            callbacks=[callback, _StopServer(hub, 3)], verbose_eval=False)  # fmt: skip
    assert booster.num_boosted_rounds() == 10
    messages = [str(w.message) for w in caught if issubclass(w.category, AutologWarning)]
    assert messages and all("training goes on" in m for m in messages)
    assert callback.version is None  # the model could not be registered; training finished
    # the run it had started is still open on the (stopped) hub; the client gives it up
    client.backend.close()
    client._live.clear()
