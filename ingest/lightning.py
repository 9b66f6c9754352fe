"""PyTorch Lightning: a ``Logger`` that records a ``Trainer``'s training as a run.

::

    import lightning.pytorch as pl
    from lineagehub.ingest.lightning import LineageHubLogger

    logger = LineageHubLogger(project="digits", model_name="digits")
    trainer = pl.Trainer(max_epochs=3, logger=logger)
    trainer.fit(model, train_loader, val_loader)
    logger.model_version   # the best checkpoint, registered as digits@N (flavor "lightning")

What it records, through Lightning's public ``Logger`` interface (``lightning.pytorch.loggers``):

- the hyper-parameters (``save_hyperparameters()``, ``log_hyperparams``), nested ones dotted;
- every metric Lightning logs, at its step (per step and per epoch as ``self.log`` says);
- the module: class, parameter counts and layers (``log_graph``, which the trainer calls when
  training starts), without its weights;
- each checkpoint ``ModelCheckpoint`` saves, as a ``checkpoint`` artifact (once per content);
- the training and validation data the trainer holds (``DataLoader``\\ s of tensors, arrays,
  frames; see :mod:`lineagehub.ingest.tensors`), as ``DatasetVersion``\\ s USED by the run;
- when training ends successfully, the best checkpoint (else the last) as the next version of
  ``model_name`` (default: the module's class name), flavor ``lightning``: the checkpoint and
  the module's class, loaded back with ``load_from_checkpoint``.

The run: the active run when training starts inside one (``with lh.start_run(): ...``; it is
not ended by the logger: use that for ``fit`` then ``test`` in one run), else a run the logger
starts and ends when the trainer finalizes (``FAILED`` if training failed). Logging never
breaks training: a failure is an :class:`~lineagehub.ingest.sklearn.AutologWarning` and
training goes on; once the hub is unreachable nothing more is attempted.
"""

from __future__ import annotations

import shutil
import sys
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lineagehub.ingest.client import ActiveRun, Client
from lineagehub.ingest.flavors import Flavor
from lineagehub.ingest.tensors import AdapterRun, class_path, flat_params, metric_values, run_status
from lineagehub.ingest.torch import import_class, module_summary
from lineagehub.vocabulary import ArtifactKind, ModelVersion, RunStatus

try:
    import lightning
    from lightning.pytorch import LightningModule
    from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
    from lightning.pytorch.utilities import rank_zero_only
except ImportError as e:  # an ImportError still: flavors name the extra to install
    raise ImportError(
        f"the Lightning adapter needs lightning: pip install 'lineagehub[lightning]' ({e})"
    ) from e

FLAVOR_NAME = "lightning"
CHECKPOINT_FILE = "model.ckpt"


class LineageHubLogger(Logger):
    """Lightning's ``Logger`` for LineageHub (see the module's docstring).

    - ``client``: the hub (default: the module-level client, ``lh.connect(...)``).
    - ``run_name``, ``project``, ``experiment``, ``tags``: the run the logger starts.
    - ``model_name``: the registered model the best checkpoint becomes a version of
      (default: the LightningModule's class name); ``log_model=False``: register none.
    - ``log_checkpoints``: store every checkpoint as an artifact.
    - ``log_datasets``: record the trainer's training and validation data.
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
        log_checkpoints: bool = True,
        log_datasets: bool = True,
        silent: bool = False,
    ) -> None:
        super().__init__()
        self._hub = AdapterRun(
            "lightning",
            client=client,
            run_name=run_name,
            project=project,
            experiment=experiment,
            tags=tags,
            silent=silent,
        )
        self._model_name = model_name
        self._log_model = log_model
        self._log_checkpoints = log_checkpoints
        self._log_datasets = log_datasets
        self._module: Any = None
        self._checkpoints: dict[str, tuple[int, int]] = {}
        self._checkpoint_callback: Any = None
        self.model_version: ModelVersion | None = None

    # --- Lightning's Logger interface -----------------------------------------------------

    @property
    def name(self) -> str:
        return "lineagehub"

    @property
    def version(self) -> str:
        run = self._hub.run
        return run.id if run is not None else ""

    @property
    @rank_zero_experiment
    def experiment(self) -> ActiveRun | None:
        """The run logged into (``None`` when the hub could not be reached)."""
        return self._start()

    @rank_zero_only
    def log_hyperparams(
        self, params: Mapping[str, Any] | Namespace, *args: Any, **kwargs: Any
    ) -> None:
        values = vars(params) if isinstance(params, Namespace) else dict(params)
        flat = flat_params(values)
        if self._start() is not None and flat:
            self._hub.do("could not log the hyper-parameters", lambda run: run.log_params(flat))

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        values = metric_values(metrics)
        if self._start() is None:
            return
        self._log_data()
        if values:
            self._hub.do(
                "could not log metrics",
                lambda run: run.log_metrics(values, step=step if step is not None else None),
            )

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        self._module = model
        if self._start() is None:
            return
        summary = module_summary(model)

        def write(run: ActiveRun) -> None:
            run.log_params(
                {
                    "model.class": summary["class"],
                    "model.parameters": summary["parameters"],
                    "model.trainable_parameters": summary["trainable_parameters"],
                }
            )
            run.log_evaluation(summary, "model_layers.json")

        self._hub.do("could not log the module", write)

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self._checkpoint_callback = checkpoint_callback
        if not self._log_checkpoints or self._start() is None:
            return
        for path in _checkpoint_paths(checkpoint_callback):
            try:
                stat = path.stat()
            except OSError:
                continue
            seen = (stat.st_mtime_ns, stat.st_size)
            if self._checkpoints.get(str(path)) == seen:
                continue
            self._checkpoints[str(path)] = seen
            self._store_checkpoint(path)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._hub.run is None:
            return
        self._log_data()
        outcome = run_status(status)
        if outcome is RunStatus.FINISHED and self._log_model and self.model_version is None:
            self._register_best()
        error = None if outcome is RunStatus.FINISHED else f"training {status}"
        # Lightning finalizes a failed training inside its ``except`` block: the exception
        # is the one being handled (Ctrl-C arrives as "failed" too)
        raised = sys.exc_info()[1]
        if outcome is not RunStatus.FINISHED and isinstance(raised, KeyboardInterrupt):
            outcome, error = RunStatus.KILLED, "KeyboardInterrupt"
        elif outcome is not RunStatus.FINISHED and raised is not None:
            error = f"{type(raised).__name__}: {raised}"
        self._hub.end(outcome, error)

    # --- internals --------------------------------------------------------------------------

    def _store_checkpoint(self, path: Path) -> None:
        self._hub.do(
            f"could not store checkpoint {path.name}",
            lambda run: run.log_artifact(path, kind=ArtifactKind.CHECKPOINT),
        )

    def _start(self) -> ActiveRun | None:
        return self._hub.start("lightning")

    def _log_data(self) -> None:
        trainer = getattr(self._module, "_trainer", None) if self._module is not None else None
        if not self._log_datasets or trainer is None:
            return
        train = getattr(trainer, "train_dataloader", None)
        if train is not None:
            self._hub.log_data(train, role="train")
        val = getattr(trainer, "val_dataloaders", None)
        if isinstance(val, (list, tuple)):
            for i, loader in enumerate(val):
                self._hub.log_data(loader, role="validation", name=f"validation_{i}")
        elif val is not None:
            self._hub.log_data(val, role="validation")

    def _register_best(self) -> None:
        callback = self._checkpoint_callback
        best = getattr(callback, "best_model_path", "") or getattr(callback, "last_model_path", "")
        module = self._module
        if module is None:
            return
        name = self._model_name or type(module).__name__
        score = getattr(callback, "best_model_score", None)
        monitor = getattr(callback, "monitor", None)
        options = {"checkpoint": best} if best and Path(best).is_file() else {}
        signature = {"monitor": monitor, "best_score": _number(score)} if monitor else None
        self.model_version = self._hub.do(
            f"could not register model {name!r}",
            lambda run: run.log_model(
                module, name=name, flavor=FLAVOR_NAME, signature=signature, flavor_options=options
            ),
        )


class LightningFlavor(Flavor):
    """``lightning``: a checkpoint (``model.ckpt``: the best one the trainer saved, or one
    written from the module: its state dict and hyper-parameters) and the LightningModule's
    class; loaded with the class's ``load_from_checkpoint``, on the CPU."""

    name = FLAVOR_NAME
    packages = ("lightning", "torch")

    def detect(self, model: Any) -> bool:
        return isinstance(model, LightningModule)

    def save(self, model: Any, directory: Path, **options: Any) -> dict[str, Any]:
        checkpoint = options.get("checkpoint")
        target = directory / CHECKPOINT_FILE
        if checkpoint:
            shutil.copyfile(checkpoint, target)
        else:
            import torch

            torch.save(
                {
                    "state_dict": model.state_dict(),
                    "hyper_parameters": dict(getattr(model, "hparams", {}) or {}),
                    "pytorch-lightning_version": lightning.__version__,
                },
                target,
            )
        return {
            "class": class_path(model),
            "file": CHECKPOINT_FILE,
            "from_checkpoint": Path(checkpoint).name if checkpoint else None,
        }

    def load(self, directory: Path, metadata: Mapping[str, Any]) -> Any:
        return load_checkpoint(directory, metadata)

    def custom_objects(self, model: Any) -> list[Any]:
        return [type(m) for m in model.modules()]


def load_checkpoint(
    folder: str | Path, metadata: Mapping[str, Any], *, model_class: type | None = None
) -> Any:
    """The LightningModule of a ``lightning`` flavor folder: ``load_from_checkpoint`` of the
    class ``metadata`` records (or ``model_class``), on the CPU, in evaluation mode."""
    cls: Any = model_class if model_class is not None else import_class(str(metadata["class"]))
    path = Path(folder) / str(metadata.get("file") or CHECKPOINT_FILE)
    module = cls.load_from_checkpoint(str(path), map_location="cpu", weights_only=False)
    module.eval()
    return module


def _checkpoint_paths(callback: Any) -> list[Path]:
    paths: list[str] = list(getattr(callback, "best_k_models", {}) or {})
    for attr in ("last_model_path", "best_model_path"):
        value = getattr(callback, attr, "")
        if value and value not in paths:
            paths.append(value)
    return [Path(p) for p in paths]


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError):
        return None


FLAVOR = LightningFlavor()

__all__ = ["FLAVOR", "LightningFlavor", "LineageHubLogger", "load_checkpoint"]
