"""Keras 3 (any backend: JAX, PyTorch, TensorFlow): a callback that records ``model.fit`` as a
run, and the ``keras`` flavor (a ``.keras`` file) that loads back with its custom objects.

::

    from lineagehub.ingest.keras import LineageHubCallback

    callback = LineageHubCallback(project="digits", model_name="digits",
                                  train_data=(x, y), validation_data=(x_val, y_val))
    model.fit(x, y, validation_data=(x_val, y_val), epochs=3, callbacks=[callback])
    callback.model_version        # digits@N, flavor "keras"

What it records, through Keras' public ``keras.callbacks.Callback``:

- params: ``epochs`` and ``steps`` of the fit, the optimizer (``optimizer`` its class,
  ``optimizer.learning_rate``... its config), the loss, the parameter counts, the backend;
- the model's summary (``model_summary.txt``) and layers (``model_layers.json``, as data);
- the metrics of each epoch (``loss``, ``val_loss``, ...; step = epoch) and, with
  ``log_every_n_steps``, of every n-th batch (``batch_loss``...; step = global batch number);
- the data it is given (``train_data``, ``validation_data``: arrays, tuples of arrays, frames):
  a Keras callback does not see the data ``fit`` was called with, so it is passed here;
- at the end of training, the model as the next version of ``model_name`` (default: the model's
  name), flavor ``keras``: ``model.keras`` and the custom objects (layers, losses, metrics,
  activations defined outside Keras) as ``module:QualName`` paths, imported again on load.

The run: the active run when ``fit`` starts inside one, else one the callback starts and ends.
Logging never breaks training (an :class:`~lineagehub.ingest.sklearn.AutologWarning`).
A ``fit`` that raises never reaches ``on_train_end``: a run the callback started is then left
RUNNING and reported KILLED once its heartbeat is stale.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from lineagehub.graph import ValidationError
from lineagehub.ingest.client import ActiveRun, Client
from lineagehub.ingest.flavors import Flavor
from lineagehub.ingest.tensors import AdapterRun, class_path, flat_params, metric_values
from lineagehub.ingest.torch import import_object
from lineagehub.vocabulary import ModelVersion

try:
    import keras
except ImportError as e:  # an ImportError still: flavors name the extra to install
    raise ImportError(
        f"the Keras adapter needs keras: pip install 'lineagehub[keras]' ({e})"
    ) from e

FLAVOR_NAME = "keras"
MODEL_FILE = "model.keras"


class LineageHubCallback(keras.callbacks.Callback):
    """A Keras callback logging ``fit`` into LineageHub (see the module's docstring).

    - ``client``, ``run_name``, ``project``, ``experiment``, ``tags``: the run it starts.
    - ``model_name``: the registered model the trained model becomes a version of;
      ``log_model=False``: register none.
    - ``train_data``, ``validation_data``: the data to record as DatasetVersions.
    - ``log_every_n_steps``: also log batch metrics every n batches (default: epochs only).
    - ``silent``: logging failures at debug level instead of as warnings.
    """

    def __init__(
        self,
        *,
        client: Client | None = None,
        run_name: str | None = None,
        project: str | None = None,
        experiment: str | None = None,
        tags: Mapping[str, str] | None = None,
        model_name: str | None = None,
        log_model: bool = True,
        train_data: Any = None,
        validation_data: Any = None,
        log_every_n_steps: int | None = None,
        silent: bool = False,
    ) -> None:
        super().__init__()
        if log_every_n_steps is not None and (
            isinstance(log_every_n_steps, bool)
            or not isinstance(log_every_n_steps, int)
            or log_every_n_steps < 1
        ):
            raise ValidationError(
                "log_every_n_steps must be a positive int or None", field="log_every_n_steps"
            )
        self._hub = AdapterRun(
            "keras",
            client=client,
            run_name=run_name,
            project=project,
            experiment=experiment,
            tags=tags,
            silent=silent,
        )
        self._model_name = model_name
        self._log_model = log_model
        self._train_data = train_data
        self._validation_data = validation_data
        self._every = log_every_n_steps
        self._global_step = 0
        self._epoch = 0
        if log_every_n_steps is not None:
            self.on_train_batch_end = self._on_train_batch_end
        self.model_version: ModelVersion | None = None

    @property
    def run(self) -> Any:
        """The run logged into (``None`` before training or when the hub was unreachable)."""
        return self._hub.run

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._global_step = 0
        if self._hub.begin(self.model.name or "keras") is None:
            return
        params = {**fit_params(self.model, self.params)}
        summary = model_summary(self.model)
        self._hub.do("could not log the params", lambda run: run.log_params(params))
        layers = {k: v for k, v in summary.items() if k != "text"}

        def write(run: ActiveRun) -> None:
            run.log_text(summary["text"], "model_summary.txt")
            run.log_evaluation(layers, "model_layers.json")

        self._hub.do("could not log the model summary", write)
        self._hub.log_data(self._train_data, role="train")
        self._hub.log_data(self._validation_data, role="validation")

    def _on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        # Bound as on_train_batch_end only with log_every_n_steps: Keras skips the hook (and
        # turning every batch's logs into numbers) for a callback that does not define it
        # the step across epochs: a fit resumed with initial_epoch goes on from its epoch
        steps = (self.params or {}).get("steps")
        if isinstance(steps, int) and steps > 0:
            self._global_step = self._epoch * steps + batch + 1
        else:
            self._global_step += 1
        if self._every is None or self._global_step % self._every or not logs:
            return
        values = {f"batch_{k}": v for k, v in metric_values(logs).items()}
        step = self._global_step
        self._hub.do("could not log metrics", lambda run: run.log_metrics(values, step=step))

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        values = metric_values(logs or {})
        if values:
            self._hub.do("could not log metrics", lambda run: run.log_metrics(values, step=epoch))

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._hub.run is None:
            return
        if self._log_model:
            name = self._model_name or self.model.name or "keras"
            self.model_version = self._hub.do(
                f"could not register model {name!r}",
                lambda run: run.log_model(self.model, name=name, flavor=FLAVOR_NAME),
            )
        self._hub.end()


def fit_params(model: Any, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The params the callback logs for a fit: the fit's own (epochs, steps), the optimizer's
    config, the loss, the parameter counts and the backend."""
    out: dict[str, Any] = {}
    for key in ("epochs", "steps"):
        if params and params.get(key) is not None:
            out[key] = params[key]
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        out["optimizer"] = type(optimizer).__name__
        try:
            config = optimizer.get_config()
        except Exception:
            config = {}
        out.update(flat_params({k: v for k, v in config.items() if k != "name"}, "optimizer."))
    loss = getattr(model, "loss", None)
    if loss is not None:
        out["loss"] = loss if isinstance(loss, str) else _name(loss)
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    out["model.parameters"] = int(model.count_params())
    out["model.trainable_parameters"] = trainable
    out["keras.backend"] = keras.backend.backend()
    return flat_params(out)


def model_summary(model: Any) -> dict[str, Any]:
    """The model's printed summary (``text``), its layers and custom objects."""
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        model.summary(print_fn=lambda line, *a, **k: print(line))
    layers = [
        {"name": layer.name, "class": type(layer).__name__, "parameters": int(layer.count_params())}
        for layer in model.layers
        if layer.built
    ]
    return {
        "text": buffer.getvalue(),
        "class": class_path(model),
        "parameters": int(model.count_params()),
        "layers": layers,
        "custom_objects": custom_objects(model),
    }


def custom_objects(model: Any) -> dict[str, str]:
    """The objects a model uses that Keras does not define (layers, the loss, metrics,
    activations, the model class itself): ``{registered name: "module:QualName"}``."""
    found: dict[str, str] = {}

    def add(obj: Any) -> None:
        if obj is None or isinstance(obj, str):
            return
        plain = isinstance(obj, type) or (callable(obj) and not hasattr(obj, "get_config"))
        target = obj if plain else type(obj)
        module = getattr(target, "__module__", "") or ""
        if module.startswith(("keras", "builtins")) or not hasattr(target, "__qualname__"):
            return
        name = keras.saving.get_registered_name(target)
        found[name] = f"{module}:{target.__qualname__}"

    add(type(model))
    for layer in _all_layers(model):
        add(type(layer))
        add(getattr(layer, "activation", None))
    add(getattr(model, "loss", None))
    return dict(sorted(found.items()))


def _all_layers(model: Any) -> list[Any]:
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is not None:
        return [layer for layer in flatten(include_self=False, recursive=True)]
    return list(getattr(model, "layers", []))


class KerasFlavor(Flavor):
    """``keras``: the model as a ``.keras`` file, with the import paths of its custom objects
    (imported again when it is loaded) and the backend it was trained with."""

    name = FLAVOR_NAME
    packages = ("keras",)

    def detect(self, model: Any) -> bool:
        return isinstance(model, keras.Model)

    def save(self, model: Any, directory: Path, **options: Any) -> dict[str, Any]:
        model.save(directory / MODEL_FILE)
        return {
            "file": MODEL_FILE,
            "backend": keras.backend.backend(),
            "custom_objects": custom_objects(model),
        }

    def load(self, directory: Path, metadata: Mapping[str, Any]) -> Any:
        return load_model(directory, metadata)

    def custom_objects(self, model: Any) -> list[Any]:
        return [import_object(path) for path in custom_objects(model).values()]


def load_model(
    folder: str | Path,
    metadata: Mapping[str, Any],
    *,
    custom_objects: Mapping[str, Any] | None = None,
) -> Any:
    """The model of a ``keras`` flavor folder, its custom objects imported by the paths
    ``metadata`` records (``custom_objects`` adds or replaces some by registered name)."""
    objects: dict[str, Any] = {}
    for name, where in (metadata.get("custom_objects") or {}).items():
        if custom_objects is not None and name in custom_objects:
            continue
        objects[name] = import_object(where)
        objects[name.split(">")[-1]] = objects[name]  # the bare name too
    objects.update(custom_objects or {})
    path = Path(folder) / str(metadata.get("file") or MODEL_FILE)
    return keras.saving.load_model(path, custom_objects=objects)


def _name(obj: Any) -> str:
    return str(getattr(obj, "__name__", None) or getattr(obj, "name", None) or type(obj).__name__)


FLAVOR = KerasFlavor()

__all__ = [
    "FLAVOR",
    "KerasFlavor",
    "LineageHubCallback",
    "custom_objects",
    "fit_params",
    "load_model",
    "model_summary",
]
