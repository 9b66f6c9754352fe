"""The Keras 3 callback and the ``keras`` flavor, on Keras' PyTorch backend (conftest sets
``KERAS_BACKEND``): a tiny model with a
custom layer and a custom loss really trained on the CPU; params, epoch and batch metrics, the
data given, the model loaded back with its custom objects on both stores and transports; a hub
that cannot be reached only warns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from dl_support import TRANSPORTS, artifacts, open_hub, unreachable_client, used

from lineagehub import Client
from lineagehub.graph import ValidationError
from lineagehub.ingest.keras import LineageHubCallback
from lineagehub.ingest.sklearn import AutologWarning
from lineagehub.vocabulary import RunStatus


@keras.saving.register_keras_serializable(package="lineagehub_tests")
class Scale(keras.layers.Layer):
    """A user-defined layer: multiplies its input by a fixed factor."""

    def __init__(self, factor: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x: Any) -> Any:
        return x * self.factor

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="lineagehub_tests")
def smoothed_bce(y_true: Any, y_pred: Any) -> Any:
    """A user-defined loss: binary cross-entropy on smoothed labels."""
    return keras.losses.binary_crossentropy(y_true * 0.9 + 0.05, y_pred)


@pytest.fixture(params=TRANSPORTS)
def hub(request: pytest.FixtureRequest, store_backend: str, tmp_path: Path) -> Iterator[Client]:
    with open_hub(request.param, store_backend, tmp_path) as client:
        yield client


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("float32")


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), Scale(2.0), keras.layers.Dense(1, activation="sigmoid")], name="tiny"
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=smoothed_bce)
    return model


def test_a_fit_is_logged_and_the_model_loads_back_with_its_custom_objects(hub: Client) -> None:
    x, y = data()
    model = tiny_model()
    callback = LineageHubCallback(
        client=hub,
        project="keras",
        train_data=(x[:48], y[:48]),
        validation_data=(x[48:], y[48:]),
        log_every_n_steps=1,
    )
    model.fit(
        x[:48], y[:48], validation_data=(x[48:], y[48:]), epochs=3, batch_size=16, verbose=0,
        callbacks=[callback],
    )  # fmt: skip

    assert callback.run is not None
    run = hub.get_run(callback.run.id)
    assert run.status is RunStatus.FINISHED and run.project == "keras"
    assert run.params["epochs"] == 3 and run.params["steps"] == 3
    assert run.params["optimizer"] == "Adam"
    assert run.params["optimizer.learning_rate"] == pytest.approx(0.01)
    assert run.params["loss"] == "smoothed_bce"
    assert run.params["model.parameters"] == 5 and run.params["keras.backend"] == "torch"
    assert [p.step for p in hub.metric_history(run.id, "val_loss")] == [0, 1, 2]
    assert [p.step for p in hub.metric_history(run.id, "batch_loss")] == list(range(1, 10))

    made = artifacts(hub, run.id)
    assert "Scale" in hub.artifacts.get_bytes(made["model_summary.txt"].digest).decode()
    layers = made["model_layers.json"].data
    assert layers is not None
    assert layers["custom_objects"] == {
        "lineagehub_tests>Scale": "test_keras_adapter:Scale",
        "lineagehub_tests>smoothed_bce": "test_keras_adapter:smoothed_bce",
    }
    inputs = used(hub, run.id)
    assert len(inputs["train"]) == 1 and len(inputs["validation"]) == 1

    version = callback.model_version
    assert version is not None and version.flavor == "keras" and version.model == "tiny"
    captured = {(c["qualname"], c["kind"]) for c in version.metadata["custom_objects"]}
    assert captured == {("Scale", "class"), ("smoothed_bce", "function")}
    assert version.metadata["data"]["backend"] == "torch"

    loaded = hub.load_model("tiny@1")
    assert isinstance(loaded.layers[0], Scale) and loaded.layers[0].factor == 2.0
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_inside_an_active_run_the_callback_logs_into_it(tmp_path: Path) -> None:
    x, y = data()
    with open_hub("embedded", "sqlite", tmp_path) as hub:
        with hub.start_run("outer") as outer:
            callback = LineageHubCallback(client=hub, log_model=False)
            tiny_model().fit(x, y, epochs=2, verbose=0, callbacks=[callback])
            assert callback.run is outer
            assert hub.get_run(outer.id).status is RunStatus.RUNNING
        run = hub.get_run(outer.id)
        assert run.status is RunStatus.FINISHED and "loss" in run.metrics
        assert callback.model_version is None


def test_log_every_n_steps_must_be_a_positive_int() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValidationError, match="log_every_n_steps"):
            LineageHubCallback(log_every_n_steps=bad)  # type: ignore[arg-type]


def test_an_unreachable_hub_warns_and_training_goes_on(tmp_path: Path) -> None:
    x, y = data()
    model = tiny_model()
    before = [w.copy() for w in model.get_weights()]
    callback = LineageHubCallback(client=unreachable_client(tmp_path), train_data=(x, y))
    with pytest.warns(AutologWarning, match="unreachable"):
        history = model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    assert len(history.history["loss"]) == 2
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert callback.run is None and callback.model_version is None


class Diverges(keras.callbacks.Callback):
    """Raises at the end of the first epoch, as a training loop that hits a NaN loss might."""

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        raise FloatingPointError("loss diverged")


def test_a_training_that_raises_leaves_no_open_run_behind(tmp_path: Path) -> None:
    """Keras calls no hook when fit raises: the callback's run must not stay the active run
    (the next training, or a run started after it, logged into it) nor end FINISHED."""
    x, y = data()
    with open_hub("embedded", "sqlite", tmp_path) as hub:
        failed = LineageHubCallback(client=hub, model_name="trial1")
        with pytest.raises(FloatingPointError):
            tiny_model().fit(x, y, epochs=3, verbose=0, callbacks=[failed, Diverges()])
        second = LineageHubCallback(client=hub, model_name="trial2")
        tiny_model().fit(x, y, epochs=2, verbose=0, callbacks=[second])
        assert failed.run is not None and second.run is not None
        assert second.run.id != failed.run.id
        first = hub.get_run(failed.run.id)
        assert first.status is RunStatus.FAILED and "before its end" in (first.error or "")
        assert hub.get_run(second.run.id).status is RunStatus.FINISHED
        assert second.model_version is not None
        mv = second.model_version.node_id
        trained_by = hub.store.neighbors([mv], "UPSTREAM", ["GENERATED_BY"])[mv]
        assert [a.node.id for a in trained_by] == [second.run.id]
        # the same callback given to another fit after a failure: a run of its own too
        with pytest.raises(FloatingPointError):
            tiny_model().fit(x, y, epochs=3, verbose=0, callbacks=[failed, Diverges()])
        abandoned = failed.run
        tiny_model().fit(x, y, epochs=2, verbose=0, callbacks=[failed])
        assert failed.run.id != abandoned.id
        assert hub.get_run(abandoned.id).status is RunStatus.FAILED
        assert hub.get_run(failed.run.id).status is RunStatus.FINISHED
        # a run whose training raised and that nothing came after ends FAILED at close
        last = LineageHubCallback(client=hub, log_model=False)
        with pytest.raises(FloatingPointError):
            tiny_model().fit(x, y, epochs=3, verbose=0, callbacks=[last, Diverges()])
        left = last.run
    assert left is not None
    with open_hub("embedded", "sqlite", tmp_path) as again:
        assert again.get_run(left.id).status is RunStatus.FAILED


def test_one_callback_for_two_fits_gives_two_runs_and_resumed_steps_go_on(
    tmp_path: Path,
) -> None:
    x, y = data()
    with open_hub("embedded", "sqlite", tmp_path) as hub:
        callback = LineageHubCallback(client=hub, model_name="twice", log_every_n_steps=1)
        model = tiny_model()
        model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[callback])
        first, version = callback.run, callback.model_version
        model.fit(x, y, epochs=4, initial_epoch=2, batch_size=32, verbose=0, callbacks=[callback])
        assert callback.run is not None and first is not None and callback.run.id != first.id
        assert version is not None and callback.model_version is not None
        assert (version.version, callback.model_version.version) == (1, 2)
        steps = [p.step for p in hub.metric_history(callback.run.id, "batch_loss")]
        assert steps == [5, 6, 7, 8]  # epochs 2 and 3 of 2 batches each: after epochs 0-1
        assert [p.step for p in hub.metric_history(callback.run.id, "loss")] == [2, 3]


class OddNames(keras.callbacks.Callback):
    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if logs is not None:
            logs.update({"recall@5": 0.5, "précision": 0.25, "f1(macro)": 0.75})


def test_metric_names_the_hub_does_not_take_are_logged_under_a_key_it_does(
    tmp_path: Path,
) -> None:
    x, y = data()
    with open_hub("embedded", "sqlite", tmp_path) as hub:
        callback = LineageHubCallback(client=hub, log_model=False)
        with pytest.warns(AutologWarning, match=r"'recall@5' is logged as 'recall_at_5'"):
            tiny_model().fit(x, y, epochs=1, verbose=0, callbacks=[OddNames(), callback])
        assert callback.run is not None
        metrics = hub.get_run(callback.run.id).metrics
        assert {"recall_at_5": 0.5, "precision": 0.25, "f1_macro_": 0.75}.items() <= metrics.items()
