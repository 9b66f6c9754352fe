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
