"""Hugging Face ``transformers``: a ``TrainerCallback`` that records a ``Trainer``'s training as
a run, and the ``transformers`` flavor: the model and its tokenizer as one directory
(``save_pretrained``), loaded back with ``from_pretrained``.

::

    from lineagehub.ingest.transformers import LineageHubCallback

    callback = LineageHubCallback(project="reviews", model_name="sentiment",
                                  base_model="bert-tiny@champion")
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=test,
                      processing_class=tokenizer, callbacks=[callback])
    trainer.train()
    model, tokenizer = lh.load_model(callback.model_version)

What it records, through the public ``transformers.TrainerCallback`` hooks:

- the training arguments (``TrainingArguments.to_dict()``: learning rate, epochs, batch sizes,
  seed...) and the model's configuration (``config.*``: model type, sizes, labels), the
  parameter counts;
- every metric the trainer logs (``loss``, ``learning_rate``, ``grad_norm``, ``eval_*``), at
  the trainer's global step;
- the training and evaluation data it hands the callbacks (its ``DataLoader``\\ s: Hugging Face
  ``datasets``, lists of records, tensors; see :mod:`lineagehub.ingest.tensors`) as
  ``DatasetVersion``\\ s USED with roles ``train`` and ``validation``;
- the base model: with ``base_model`` naming a version in the hub (``bert-tiny@champion``), the
  run USED it (role ``base-model``), so lineage runs from the fine-tuned model to it; a model
  loaded from the Hugging Face Hub is named in the params ``base_model`` (its identifier) and
  ``base_model_revision`` (the commit it was loaded at);
- when training ends, the model and tokenizer as the next version of ``model_name`` (default:
  the model's class name), flavor ``transformers``.

The run: the active run when training starts inside one (``with lh.start_run(): ...``; use that
to keep ``trainer.evaluate()`` after training in the same run), else a run the callback starts
when training begins and ends when it ends. Logging never breaks training (an
:class:`~lineagehub.ingest.sklearn.AutologWarning`); only the main process logs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from lineagehub.ingest.client import ActiveRun, Client
from lineagehub.ingest.flavors import Flavor
from lineagehub.ingest.tensors import (
    AdapterRun,
    class_path,
    flat_params,
    metric_values,
    parameter_counts,
)
from lineagehub.ingest.torch import import_class
from lineagehub.vocabulary import ModelVersion, UsedRole

try:
    import transformers
    from transformers import TrainerCallback
except ImportError as e:  # an ImportError still: flavors name the extra to install
    raise ImportError(
        f"the transformers adapter needs transformers: pip install 'lineagehub[transformers]' ({e})"
    ) from e

FLAVOR_NAME = "transformers"
#: Training arguments that say where things go on this machine, not how the model was trained.
SKIPPED_ARGS = frozenset(
    {
        "output_dir",
        "logging_dir",
        "hub_token",
        "push_to_hub_token",
        "hub_model_id",
        "push_to_hub_model_id",
        "push_to_hub_organization",
        "run_name",
    }
)


class Pretrained(NamedTuple):
    """A loaded ``transformers`` version: the model and its tokenizer (``None`` if none was
    saved); unpacks as ``model, tokenizer = lh.load_model(ref)``."""

    model: Any
    tokenizer: Any


class LineageHubCallback(TrainerCallback):
    """A ``TrainerCallback`` logging training into LineageHub (see the module's docstring).

    - ``client``, ``run_name``, ``project``, ``experiment``, ``tags``: the run it starts.
    - ``model_name``: the registered model the trained model becomes a version of;
      ``log_model=False``: register none.
    - ``base_model``: a model version reference in the hub the training starts from.
    - ``log_datasets``: record the training and evaluation data.
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
        base_model: str | None = None,
        log_datasets: bool = True,
        silent: bool = False,
    ) -> None:
        self._hub = AdapterRun(
            "transformers",
            client=client,
            run_name=run_name,
            project=project,
            experiment=experiment,
            tags=tags,
            silent=silent,
        )
        self._model_name = model_name
        self._log_model = log_model
        self._base_model = base_model
        self._log_datasets = log_datasets
        self.model_version: ModelVersion | None = None

    @property
    def run(self) -> ActiveRun | None:
        """The run logged into (``None`` before training or when the hub was unreachable)."""
        return self._hub.run

    def on_train_begin(
        self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        name = type(model).__name__ if model is not None else "transformers"
        if self._hub.begin(name) is None:
            return
        params = training_params(args, model)
        self._hub.do("could not log the params", lambda run: run.log_params(params))
        if self._base_model:
            ref = self._base_model
            self._hub.do(
                f"could not record the base model {ref!r}",
                lambda run: run.log_input_model(ref, role=UsedRole.BASE_MODEL),
            )
        if self._log_datasets:
            self._hub.log_data(kwargs.get("train_dataloader"), role="train")
            self._hub.log_data(kwargs.get("eval_dataloader"), role="validation")

    def on_log(
        self,
        args: Any,
        state: Any,
        control: Any,
        logs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs or self._ended():
            return
        values = metric_values(logs)
        step = int(state.global_step)
        if values:
            self._hub.do("could not log metrics", lambda run: run.log_metrics(values, step=step))

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero and self._log_datasets and not self._ended():
            self._hub.log_data(kwargs.get("eval_dataloader"), role="validation")

    def on_train_end(
        self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero or self._hub.run is None or self._ended():
            return
        if self._log_model and model is not None:
            name = self._model_name or type(model).__name__
            tokenizer = kwargs.get("processing_class") or kwargs.get("tokenizer")
            self.model_version = self._hub.do(
                f"could not register model {name!r}",
                lambda run: run.log_model(
                    model, name=name, flavor=FLAVOR_NAME, flavor_options={"tokenizer": tokenizer}
                ),
            )
        self._hub.end()

    def _ended(self) -> bool:
        run = self._hub.run
        return run is not None and run._ended


def training_params(args: Any, model: Any) -> dict[str, Any]:
    """The params the callback logs: the training arguments (less where things are written),
    the model's configuration (``config.*``), its parameter counts and, for a model loaded from
    the Hugging Face Hub, its identifier and revision."""
    values = {k: v for k, v in args.to_dict().items() if k not in SKIPPED_ARGS}
    out = flat_params({k: v for k, v in values.items() if not isinstance(v, (list, dict))})
    if model is None:
        return out
    config = getattr(model, "config", None)
    if config is not None:
        settings = {
            k: v
            for k, v in config.to_diff_dict().items()
            if not k.startswith("_") and not isinstance(v, (list, dict))
        }
        out.update(flat_params(settings, "config."))
    total, trainable = parameter_counts(model)
    out["model.class"] = type(model).__name__
    out["model.parameters"] = total
    out["model.trainable_parameters"] = trainable
    source = str(getattr(config, "_name_or_path", "") or "")
    if source and not os.path.isabs(source) and not Path(source).exists():
        out["base_model"] = source
        revision = getattr(config, "_commit_hash", None)
        if revision:
            out["base_model_revision"] = str(revision)
    return out


class TransformersFlavor(Flavor):
    """``transformers``: the directory ``save_pretrained`` writes for the model (safetensors
    weights, ``config.json``) and its tokenizer (``flavor_options={"tokenizer": ...}``);
    loaded with the recorded classes' ``from_pretrained`` as :class:`Pretrained`."""

    name = FLAVOR_NAME
    packages = ("transformers", "tokenizers", "torch")

    def detect(self, model: Any) -> bool:
        return isinstance(model, transformers.PreTrainedModel)

    def save(self, model: Any, directory: Path, **options: Any) -> dict[str, Any]:
        model.save_pretrained(directory)
        tokenizer = options.get("tokenizer")
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        config = getattr(model, "config", None)
        return {
            "class": class_path(model),
            "tokenizer_class": class_path(tokenizer) if tokenizer is not None else None,
            "model_type": getattr(config, "model_type", None),
        }

    def load(self, directory: Path, metadata: Mapping[str, Any]) -> Pretrained:
        model = import_class(str(metadata["class"])).from_pretrained(directory)
        model.eval()
        tokenizer = None
        if metadata.get("tokenizer_class"):
            tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
        return Pretrained(model, tokenizer)

    def custom_objects(self, model: Any) -> list[Any]:
        return [type(model)]


FLAVOR = TransformersFlavor()

__all__ = [
    "FLAVOR",
    "LineageHubCallback",
    "Pretrained",
    "TransformersFlavor",
    "training_params",
]
