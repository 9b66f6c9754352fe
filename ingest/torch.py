"""PyTorch: log a module (its state dict, an architecture summary, its parameter count), the
optimizer and scheduler settings and the data, and register a module as a model version of
flavor ``torch`` that loads back.

::

    import lineagehub as lh
    from lineagehub.ingest import torch as lh_torch

    with lh.start_run(project="digits") as run:
        lh_torch.log_module(net)                      # params, architecture, state dict
        lh_torch.log_optimizer(optimizer, scheduler)  # optimizer.*, scheduler.* params
        lh_torch.log_data(train_loader, role="train") # a DatasetVersion (TensorDataset...)
        for epoch in range(3):
            ...
            run.log_metrics({"loss": loss.item()}, step=epoch)
        lh_torch.log_model(net, name="digits", init_kwargs={"hidden": 32})

    net = lh.client().load_model("digits@1")          # a Net with the trained weights

The ``torch`` flavor (also what ``run.log_model(module, name=...)`` picks for any
``nn.Module``) stores ``state_dict.pt`` (``torch.save`` of the state dict: tensors only, loaded
back with ``weights_only=True``, so loading runs no pickled code) and records in the version's
metadata the class as ``module:QualName``, the keyword arguments to build it
(``flavor_options={"init_kwargs": {...}}``) and the parameter count; the source of the
user-defined classes the module is made of travels with it. ``client.load_model`` imports the
class by its module path, builds it and loads the weights. A class that cannot be imported
(defined in a notebook or a script run as ``__main__``) loads with
``load_module(client.download(ref, path), version.metadata["data"], model_class=Net)``.

Every helper logs into ``run`` (default: the active run). When the hub cannot be written to
(a server that is down), a helper warns (:class:`~lineagehub.ingest.sklearn.AutologWarning`)
and returns ``None``: training goes on. Mistakes in what is logged still raise.
"""

from __future__ import annotations

import importlib
import inspect
import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from lineagehub.graph import BackendError, ConfigError, ValidationError
from lineagehub.ingest.client import ActiveRun, active_run
from lineagehub.ingest.flavors import Flavor, has_module_root
from lineagehub.ingest.tensors import (
    as_data,
    class_path,
    describe_data,
    flat_params,
    parameter_counts,
    warn,
)
from lineagehub.vocabulary import ArtifactKind, DatasetVersion, ModelVersion

FLAVOR_NAME = "torch"
STATE_FILE = "state_dict.pt"

T = TypeVar("T")


def log_module(
    module: Any,
    *,
    name: str = "model",
    run: ActiveRun | None = None,
    state_dict: bool = True,
) -> dict[str, Any] | None:
    """Log a module: params ``<name>.class``, ``<name>.parameters`` and
    ``<name>.trainable_parameters``, its architecture (``<name>_architecture.txt``: the module's
    text, and ``<name>_layers.json``: one row per submodule with its class and own parameter
    count, kept as data) and, with ``state_dict``, its weights (``<name>_state_dict.pt``, a
    checkpoint artifact). Returns the summary logged (``None`` if the hub could not be
    written to)."""
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise ValidationError(
            f"module: expected a torch.nn.Module, got {type(module).__name__}", field="module"
        )
    target = _run(run)
    summary = module_summary(module)

    def write() -> dict[str, Any]:
        target.log_params(
            {
                f"{name}.class": summary["class"],
                f"{name}.parameters": summary["parameters"],
                f"{name}.trainable_parameters": summary["trainable_parameters"],
            }
        )
        target.log_text(str(module), f"{name}_architecture.txt")
        target.log_evaluation(summary, f"{name}_layers.json")
        if state_dict:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{name}_state_dict.pt"
                torch.save(module.state_dict(), path)
                target.log_artifact(path, kind=ArtifactKind.CHECKPOINT)
        return summary

    return _guard(f"could not log module {name!r}", write)


def module_summary(module: Any) -> dict[str, Any]:
    """The class, parameter counts and layers (name, class, own parameters) of a module."""
    total, trainable = parameter_counts(module)
    layers = []
    for layer_name, layer in module.named_modules():
        own = sum(int(p.numel()) for p in layer.parameters(recurse=False))
        layers.append(
            {"name": layer_name or "(root)", "class": type(layer).__name__, "parameters": own}
        )
    return {
        "class": class_path(module),
        "parameters": total,
        "trainable_parameters": trainable,
        "layers": layers,
    }


def log_optimizer(
    optimizer: Any, scheduler: Any | None = None, *, run: ActiveRun | None = None
) -> dict[str, Any] | None:
    """Log an optimizer's settings as params (``optimizer`` its class, ``optimizer.lr``...:
    its defaults, and ``optimizer.group1.lr``... for a parameter group that differs from
    them) and a learning-rate scheduler's (``scheduler`` its class, ``scheduler.step_size``...:
    its plain settings). Returns the params logged."""
    params = optimizer_params(optimizer, scheduler)
    target = _run(run)

    def write() -> dict[str, Any]:
        target.log_params(params)
        return params

    return _guard("could not log the optimizer", write)


#: What a scheduler holds that is not a setting: its place in training, which changes as it
#: steps (a param logged from it would depend on when it was logged)
_SCHEDULER_STATE = frozenset(
    ("optimizer", "last_epoch", "base_lrs", "verbose", "best", "num_bad_epochs",
     "cooldown_counter", "mode_worse", "T_cur", "T_i", "last_lr", "min_lrs")
)  # fmt: skip


def optimizer_params(optimizer: Any, scheduler: Any | None = None) -> dict[str, Any]:
    """The params :func:`log_optimizer` logs."""
    out: dict[str, Any] = {"optimizer": type(optimizer).__name__}
    defaults = dict(getattr(optimizer, "defaults", {}))
    out.update(flat_params(defaults, "optimizer."))
    for i, group in enumerate(getattr(optimizer, "param_groups", [])):
        differs = {k: v for k, v in group.items() if k != "params" and defaults.get(k) != v}
        if i > 0 and differs:
            out.update(flat_params(differs, f"optimizer.group{i}."))
    if scheduler is not None:
        out["scheduler"] = type(scheduler).__name__
        settings = {
            k: v
            for k, v in vars(scheduler).items()
            if not k.startswith("_")
            and k not in _SCHEDULER_STATE
            and (v is None or isinstance(v, (bool, int, float, str)))
        }
        out.update(flat_params(settings, "scheduler."))
    return out


def log_data(
    data: Any,
    *,
    role: str = "train",
    name: str | None = None,
    namespace: str = "torch",
    run: ActiveRun | None = None,
) -> DatasetVersion | None:
    """Record data (a ``DataLoader``, a ``TensorDataset``, tensors, arrays, frames) as a
    ``DatasetVersion`` the run USED with ``role``, fingerprinted by content
    (:func:`~lineagehub.ingest.tensors.as_data`). A dataset whose items are computed on access
    is not read: it raises, naming what to log instead."""
    content = as_data(data)
    if content is None:
        raise ValidationError(
            f"data: {describe_data(data)}: log its files with run.log_dataset(path) or by "
            "reference with run.log_dataset_ref(uri, digest)",
            field="data",
        )
    target = _run(run)
    return _guard(
        f"could not log the {role} data",
        lambda: target.log_dataset(content, name=name or role, namespace=namespace, role=role),
    )


def log_model(
    module: Any,
    *,
    name: str,
    run: ActiveRun | None = None,
    init_kwargs: Mapping[str, Any] | None = None,
    signature: Mapping[str, Any] | None = None,
    description: str | None = None,
    primary_metric: str | None = None,
    custom_objects: Sequence[Any] = (),
) -> ModelVersion | None:
    """Register the module as the next version of model ``name``, flavor ``torch``: its state
    dict and how to build it again (``init_kwargs``: the keyword arguments of its class, JSON
    values), with the source of the user-defined classes it is made of. The same as
    ``run.log_model(module, name=name, flavor_options={"init_kwargs": ...})``, except that a
    hub that cannot be written to gives a warning and ``None``."""
    target = _run(run)
    options = {"init_kwargs": dict(init_kwargs or {})}
    return _guard(
        f"could not log model {name!r}",
        lambda: target.log_model(
            module,
            name=name,
            flavor=FLAVOR_NAME,
            signature=signature,
            description=description,
            primary_metric=primary_metric,
            flavor_options=options,
            custom_objects=custom_objects,
        ),
    )


# --- the flavor -------------------------------------------------------------------------------


class TorchFlavor(Flavor):
    """``torch``: a module's state dict (``state_dict.pt``) and its class; loaded by importing
    the class, building it with the recorded ``init_kwargs`` and loading the weights."""

    name = FLAVOR_NAME
    packages = ("torch",)

    def detect(self, model: Any) -> bool:
        return has_module_root(model, "torch") and hasattr(model, "state_dict")

    def save(self, model: Any, directory: Path, **options: Any) -> dict[str, Any]:
        return save_module(model, directory, init_kwargs=options.get("init_kwargs"))

    def load(self, directory: Path, metadata: Mapping[str, Any]) -> Any:
        return load_module(directory, metadata)

    def custom_objects(self, model: Any) -> list[Any]:
        return _module_classes(model)


def _module_classes(model: Any) -> list[Any]:
    classes: list[Any] = []
    for layer in model.modules():
        if type(layer) not in classes:
            classes.append(type(layer))
    return classes


def save_module(
    module: Any, folder: str | Path, *, init_kwargs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``module``'s state dict into ``folder`` (``state_dict.pt``); returns the
    metadata :func:`load_module` builds it again from."""
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise ValidationError(
            f"model: expected a torch.nn.Module, got {type(module).__name__}", field="model"
        )
    kwargs = dict(init_kwargs or {})
    try:
        json.dumps(kwargs, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValidationError(f"init_kwargs: not JSON values: {e}", field="init_kwargs") from None
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    torch.save(module.state_dict(), path / STATE_FILE)
    total, _ = parameter_counts(module)
    return {
        "class": class_path(module),
        "init_kwargs": kwargs,
        "file": STATE_FILE,
        "parameters": total,
    }


def load_module(
    folder: str | Path, metadata: Mapping[str, Any], *, model_class: type | None = None
) -> Any:
    """Build the module ``metadata`` describes (or ``model_class``) and load the weights of
    ``folder`` into it, in evaluation mode. With a folder from ``client.download(ref, path)``,
    ``metadata`` is the version's ``metadata["data"]``."""
    torch = _torch()
    path = Path(folder)
    recorded = str(metadata.get("class") or "")
    cls = model_class if model_class is not None else import_class(recorded)
    kwargs = metadata.get("init_kwargs") or {}
    try:
        module = cls(**kwargs)
    except TypeError as e:
        raise ValidationError(
            f"model: {recorded or cls} cannot be built from init_kwargs={kwargs}: {e}; log the "
            "model with init_kwargs=, or load it with model_class=",
            field="init_kwargs",
        ) from None
    state = torch.load(
        path / str(metadata.get("file") or STATE_FILE), map_location="cpu", weights_only=True
    )
    module.load_state_dict(state)
    module.eval()
    return module


def import_class(path: str) -> Any:
    """The class a ``module:QualName`` path names (imported)."""
    obj = import_object(path)
    if not inspect.isclass(obj):
        raise ValidationError(f"class: {path} is not a class", field="class")
    return obj


def import_object(path: str) -> Any:
    """The object (a class, a function) a ``module:QualName`` path names (imported)."""
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname:
        raise ValidationError(f"class: {path!r} is not 'module:QualName'", field="class")
    if "<locals>" in qualname:
        raise ValidationError(
            f"class: {path} was defined in a function and cannot be imported back: pass "
            "model_class=",
            field="class",
        )
    try:
        # __main__: the running script's or notebook's own (a class it defined); importing
        # "__main__" gives exactly that, and in another process fails as it should
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValidationError(
            f"class: cannot import {path}: {e}; pass model_class=", field="class"
        ) from None
    return obj


# --- helpers ------------------------------------------------------------------------------------


def _run(run: ActiveRun | None) -> ActiveRun:
    target = run if run is not None else active_run()
    if target is None:
        raise ValidationError("no active run: pass run= or log inside lh.start_run()", field="run")
    return target


def _guard(what: str, write: Callable[[], T]) -> T | None:
    try:
        return write()
    except (BackendError, OSError) as e:
        warn(f"torch: {what}", e)
        return None


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise ConfigError("the PyTorch helpers need torch: pip install 'lineagehub[torch]'") from e
    return torch


FLAVOR = TorchFlavor()

__all__ = [
    "FLAVOR",
    "TorchFlavor",
    "import_class",
    "import_object",
    "load_module",
    "log_data",
    "log_model",
    "log_module",
    "log_optimizer",
    "module_summary",
    "optimizer_params",
    "save_module",
]
