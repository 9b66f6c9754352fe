#!/usr/bin/env python
"""Adapter overhead: training time with and without each framework adapter, and with MLflow's
autolog for the same framework, side by side.

Every workload trains the same small model on the same seeded data, sized so that training
runs at about 100 steps (boosting rounds, epochs...) per second on one thread, in these
variants, each timed from the call that trains to its return:

``plain``         the framework alone;
``callback``      LineageHub's per-step logging only: the adapter logs every step's metrics
                  into a run opened before the clock starts and ended after it stops (no
                  model, data or importances): what training pays per step;
``autolog``       LineageHub's ``autolog()`` as a user has it: a run started and ended, the
                  params, per-step metrics, the training data fingerprinted, the model saved
                  and registered, importances (the run's start captures git and environment);
``mlflow``        MLflow's ``autolog()`` for that framework (mlflow-skinny, a SQLite tracking
                  store and a local artifact folder), where MLflow has one.

Overhead = variant / plain - 1, on the CPU time of the process (``time.process_time``: every
thread's, so background writers count) of the fastest of ``--repeat`` trainings of each variant
(interleaved, after one warm-up training of each): on a shared machine wall time swings by
±15 % between identical trainings, CPU time by a few percent. Wall-time ratios are printed too. The goal: ``callback`` within 2 % at about
100 steps/s; ``autolog`` adds fixed per-training costs (a run, a dataset digest, a model), so
its overhead shrinks as training gets longer.

The workloads are a registry (:data:`WORKLOADS`): a framework adds its row with
:func:`workload` — a function taking the variant name, a LineageHub client and an MLflow
tracking URI, and returning a callable that trains once (``None`` when a variant does not
apply, e.g. no MLflow autolog for it). Rows whose framework is not installed are skipped.

    python benchmarks/adapters.py                   # every installed framework
    python benchmarks/adapters.py --only xgboost --repeat 5 --json

Needs the ``xgboost``, ``lightgbm``, ``sklearn``, ``torch``, ``lightning``, ``keras``,
``transformers`` and ``bench`` extras (Keras on PyTorch's backend). Not part of the test run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is first imported

SEED = 20261202
STEPS = 300  # at ~100 steps/s: ~3 s per training
VARIANTS = ("plain", "callback", "autolog", "mlflow")

Trainer = Callable[[], Any]
#: (variant, lineagehub client, mlflow tracking uri) -> a callable that trains once, or None
Builder = Callable[[str, Any, str], Trainer | None]


@dataclass(frozen=True)
class Workload:
    name: str
    needs: tuple[str, ...]  # modules that must import for the row to run
    build: Builder
    steps: int = STEPS


WORKLOADS: dict[str, Workload] = {}


def workload(name: str, needs: tuple[str, ...], steps: int = STEPS) -> Callable[[Builder], Builder]:
    """Register a workload row (see the module docstring)."""

    def register(build: Builder) -> Builder:
        WORKLOADS[name] = Workload(name, needs, build, steps)
        return build

    return register


def _data(rows: int, cols: int) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(SEED)
    X = rng.random((rows, cols))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(0, 0.2, rows) > 0.75).astype(int)
    return X, y


class _PerStep:
    """The ``callback`` variant: a run is opened before the clock starts (``prepare``) and
    ended after it stops (``cleanup``, which writes the buffered points), so what is timed is
    the training with the adapter's per-step logging in it."""

    def __init__(self, client: Any, train: Callable[[Any], Any]) -> None:
        self.client, self.train, self.run = client, train, None

    def prepare(self) -> None:
        self.run = self.client.start_run("bench-callback", capture=False)

    def __call__(self) -> Any:
        return self.train(self.run)

    def cleanup(self) -> None:
        if self.run is not None:
            self.run.end()


@contextlib.contextmanager
def _open_run(client: Any) -> Iterator[Any]:
    """The deep-learning rows' ``callback`` variant: a run open (and active) around the
    training, opened and ended inside the clock."""
    with client.start_run("bench-callback", capture=False) as run:
        yield run


# --- XGBoost ------------------------------------------------------------------------------------


@workload("xgboost", ("xgboost",))
def _xgboost(variant: str, client: Any, mlflow_uri: str) -> Trainer | None:
    import xgboost as xgb

    from lineagehub.ingest import xgboost as lh_xgb

    X, y = _data(6000, 20)
    dtrain = xgb.DMatrix(X[:5000], label=y[:5000])
    dvalid = xgb.DMatrix(X[5000:], label=y[5000:])
    params = {"objective": "binary:logistic", "max_depth": 6, "nthread": 1, "eta": 0.05}
    evals = [(dtrain, "train"), (dvalid, "valid")]

    def train(callbacks: list[Any] | None = None) -> Any:
        return xgb.train(params, dtrain, STEPS, evals=evals, verbose_eval=False,
                         callbacks=callbacks)  # fmt: skip

    if variant == "plain":
        return train
    if variant == "callback":
        return _PerStep(
            client,
            lambda run: train(
                [
                    lh_xgb.LineageCallback(
                        run, log_model=False, log_datasets=False, log_importances=False
                    )
                ]
            ),
        )
    if variant == "autolog":

        def with_autolog() -> Any:
            lh_xgb.autolog(client=client, model_name="bench-xgb")
            try:
                return train()
            finally:
                lh_xgb.disable()

        return with_autolog
    return _mlflow("xgboost", mlflow_uri, train)


# --- LightGBM -----------------------------------------------------------------------------------


@workload("lightgbm", ("lightgbm",))
def _lightgbm(variant: str, client: Any, mlflow_uri: str) -> Trainer | None:
    import lightgbm as lgb

    from lineagehub.ingest import lightgbm as lh_lgb

    X, y = _data(32000, 20)
    params = {"objective": "binary", "num_leaves": 63, "num_threads": 1, "verbose": -1}

    def train(callbacks: list[Any] | None = None) -> Any:
        # Datasets are built per training: LightGBM frees their raw data once built
        train_set = lgb.Dataset(X[:26000], label=y[:26000])
        valid = lgb.Dataset(X[26000:], label=y[26000:], reference=train_set)
        return lgb.train(params, train_set, STEPS, valid_sets=[valid], valid_names=["valid"],
                         callbacks=callbacks)  # fmt: skip

    if variant == "plain":
        return train
    if variant == "callback":
        return _PerStep(
            client,
            lambda run: train(
                [
                    lh_lgb.LineageCallback(
                        run, log_model=False, log_datasets=False, log_importances=False
                    )
                ]
            ),
        )
    if variant == "autolog":

        def with_autolog() -> Any:
            lh_lgb.autolog(client=client, model_name="bench-lgb")
            try:
                return train()
            finally:
                lh_lgb.disable()

        return with_autolog
    return _mlflow("lightgbm", mlflow_uri, train)


# --- scikit-learn -------------------------------------------------------------------------------


@workload("sklearn", ("sklearn",))
def _sklearn(variant: str, client: Any, mlflow_uri: str) -> Trainer | None:
    from sklearn.ensemble import GradientBoostingClassifier

    from lineagehub.ingest import sklearn as lh_sklearn

    X, y = _data(1300, 20)

    def train() -> Any:
        model = GradientBoostingClassifier(n_estimators=STEPS, max_depth=3, random_state=0)
        return model.fit(X, y)

    if variant == "plain":
        return train
    if variant == "callback":
        return None  # scikit-learn has no per-step hook: a fit is one call
    if variant == "autolog":

        def with_autolog() -> Any:
            lh_sklearn.autolog(client=client, registered_model_name="bench-sklearn")
            try:
                return train()
            finally:
                lh_sklearn.disable()

        return with_autolog
    return _mlflow("sklearn", mlflow_uri, train)


# --- PyTorch, Lightning, Keras, transformers -----------------------------------------------------
# One torch thread everywhere, as for the boosters: tiny models are slower on more threads of a
# shared machine, and the ratio is what is measured.


def _torch_data(rows: int = 4096) -> tuple[Any, Any]:
    import torch

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(SEED)
    X = torch.randn(rows, 32, generator=generator)
    return X, (X[:, 0] + 0.5 * X[:, 1] > 0).long()


def _mlp() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(32, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 2),
    )  # fmt: skip


@workload("torch", ("torch",))
def _torch(variant: str, client: Any, mlflow_uri: str) -> Trainer | None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from lineagehub.ingest import torch as lh_torch

    X, y = _torch_data()
    loader = DataLoader(TensorDataset(X, y), batch_size=64)  # 64 batches an epoch

    def train(log: Callable[[int, float], None] | None = None) -> Any:
        net = _mlp()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
        step = 0
        while step < STEPS:
            for xb, yb in loader:
                loss = torch.nn.functional.cross_entropy(net(xb), yb)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if log is not None:
                    log(step, loss.item())
                step += 1
                if step == STEPS:
                    break
        return net, optimizer

    if variant == "plain":
        return lambda: train()
    if variant == "callback":

        def with_metrics() -> Any:
            with _open_run(client) as run:
                return train(lambda step, loss: run.log_metrics({"loss": loss}, step=step))

        return with_metrics
    if variant == "autolog":

        def with_helpers() -> Any:
            with client.start_run("bench-torch") as run:
                lh_torch.log_data(loader, run=run)
                net, optimizer = train(lambda s, loss: run.log_metrics({"loss": loss}, step=s))
                lh_torch.log_module(net, run=run, state_dict=False)
                lh_torch.log_optimizer(optimizer, run=run)
                lh_torch.log_model(net, name="bench-torch", run=run)
                return net

        return with_helpers
    return None  # MLflow's pytorch autolog covers Lightning only (the next row)


@workload("lightning", ("lightning",))
def _lightning(variant: str, client: Any, mlflow_uri: str) -> Trainer | None:
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from lineagehub.ingest.lightning import LineageHubLogger

    X, y = _torch_data()
    loader = DataLoader(TensorDataset(X, y), batch_size=64)
    root = tempfile.mkdtemp(prefix="bench-lightning-")

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _mlp()

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            xb, yb = batch
            loss = torch.nn.functional.cross_entropy(self.net(xb), yb)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    def train(logger: Any = False, checkpoints: bool = False) -> Any:
        trainer = pl.Trainer(
            max_steps=STEPS, logger=logger, enable_checkpointing=checkpoints,
            enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
            accelerator="cpu", default_root_dir=root,
        )  # fmt: skip
        module = Module()
        trainer.fit(module, loader)
        return module

    if variant == "plain":
        return lambda: train(checkpoints=True)
    if variant == "callback":

        def with_logger() -> Any:
            with _open_run(client):
                logger = LineageHubLogger(client=client, log_model=False, log_checkpoints=False,
                                          log_datasets=False)  # fmt: skip
                return train(logger, checkpoints=True)

        return with_logger
    if variant == "autolog":
        return lambda: train(LineageHubLogger(client=client, model_name="bench-lightning"), True)
    return _mlflow("pytorch", mlflow_uri, lambda: train(checkpoints=True))


@workload("keras", ("keras",))
def _keras(variant: str, client: Any, mlflow_uri: str) -> Trainer | None:
    import keras

    from lineagehub.ingest.keras import LineageHubCallback

    X, y = _data(STEPS * 32, 32)

    def train(callbacks: list[Any] | None = None) -> Any:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((32,)), keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"), keras.layers.Dense(1, activation="sigmoid"),
        ])  # fmt: skip
        model.compile(optimizer="sgd", loss="binary_crossentropy")
        model.fit(X, y, batch_size=32, epochs=1, verbose=0, callbacks=callbacks)  # STEPS batches
        return model

    if variant == "plain":
        return train
    if variant == "callback":

        def with_callback() -> Any:
            with _open_run(client):
                return train([LineageHubCallback(client=client, log_model=False,
                                                 log_every_n_steps=1)])  # fmt: skip

        return with_callback
    if variant == "autolog":
        return lambda: train(
            [LineageHubCallback(client=client, model_name="bench-keras", train_data=(X, y))]
        )
    return _mlflow("keras", mlflow_uri, train)


@workload("transformers", ("transformers",))
def _transformers(variant: str, client: Any, mlflow_uri: str) -> Trainer | None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from lineagehub.ingest.transformers import LineageHubCallback

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(SEED)
    ids = torch.randint(5, 64, (STEPS * 8, 16), generator=generator)
    rows = [{"input_ids": ids[i], "labels": int(ids[i, 0] > 32)} for i in range(len(ids))]
    out = tempfile.mkdtemp(prefix="bench-transformers-")

    def train(callbacks: list[Any] | None = None, report_to: list[str] | None = None) -> Any:
        torch.manual_seed(0)
        config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64,
                            max_position_embeddings=16)  # fmt: skip
        args = TrainingArguments(
            output_dir=out, max_steps=STEPS, per_device_train_batch_size=8, logging_steps=1,
            save_strategy="no", report_to=report_to or [], use_cpu=True, disable_tqdm=True,
        )  # fmt: skip
        trainer = Trainer(model=BertForSequenceClassification(config), args=args,
                          train_dataset=rows, callbacks=callbacks)  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # no line printed per step
        trainer.train()
        return trainer.model

    if variant == "plain":
        return train
    if variant == "callback":

        def with_callback() -> Any:
            with _open_run(client):
                return train([LineageHubCallback(client=client, log_model=False,
                                                 log_datasets=False)])  # fmt: skip

        return with_callback
    if variant == "autolog":
        return lambda: train([LineageHubCallback(client=client, model_name="bench-bert")])

    def with_mlflow() -> Any:  # the Trainer's own MLflow integration (report_to="mlflow")
        import mlflow

        mlflow.set_tracking_uri(mlflow_uri)
        return train(report_to=["mlflow"])

    return with_mlflow


def _mlflow(flavor: str, uri: str, train: Callable[[], Any]) -> Trainer | None:
    try:
        import importlib

        import mlflow

        module = importlib.import_module(f"mlflow.{flavor}")
    except ImportError:
        return None

    def with_mlflow() -> Any:
        mlflow.set_tracking_uri(uri)
        module.autolog(silent=True)
        try:
            with mlflow.start_run():
                return train()
        finally:
            module.autolog(disable=True)

    return with_mlflow


# --- the runner ---------------------------------------------------------------------------------


def _available(w: Workload) -> bool:
    import importlib

    try:
        for name in w.needs:
            importlib.import_module(name)
    except ImportError:
        return False
    return True


def measure(w: Workload, repeat: int, folder: Path) -> dict[str, Any]:
    from lineagehub import Settings
    from lineagehub.ingest.client import Client

    client = Client(
        f"sqlite:///{folder / 'hub.db'}", settings=Settings(artifacts=str(folder / "art"))
    )
    mlflow_uri = f"sqlite:///{folder / 'mlflow.db'}"
    os.environ["MLFLOW_ARTIFACT_ROOT"] = str(folder / "mlartifacts")
    try:
        trainers = {v: w.build(v, client, mlflow_uri) for v in VARIANTS}
        ready = {v: t for v, t in trainers.items() if t is not None}
        wall: dict[str, list[float]] = {v: [] for v in ready}
        cpu: dict[str, list[float]] = {v: [] for v in ready}
        for trainer in ready.values():  # warm-up: imports, first-use caches, MLflow's schema
            getattr(trainer, "prepare", lambda: None)()
            trainer()
            getattr(trainer, "cleanup", lambda: None)()
        for _ in range(repeat):
            for v, trainer in ready.items():
                getattr(trainer, "prepare", lambda: None)()
                start, start_cpu = time.perf_counter(), time.process_time()
                trainer()
                cpu[v].append(time.process_time() - start_cpu)
                wall[v].append(time.perf_counter() - start)
                getattr(trainer, "cleanup", lambda: None)()
    finally:
        client.close()
    best_cpu = {v: min(t) for v, t in cpu.items()}
    best_wall = {v: min(t) for v, t in wall.items()}
    plain = best_cpu["plain"]
    return {
        "workload": w.name,
        "steps": w.steps,
        "steps_per_s": w.steps / best_wall["plain"],
        "cpu_seconds": best_cpu,
        "wall_seconds": best_wall,
        "median_wall_seconds": {v: statistics.median(t) for v, t in wall.items()},
        "overhead_pct": {v: 100 * (m / plain - 1) for v, m in best_cpu.items() if v != "plain"},
        "wall_overhead_pct": {
            v: 100 * (m / best_wall["plain"] - 1) for v, m in best_wall.items() if v != "plain"
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", help="a workload name (repeatable)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    rows = []
    for name, w in WORKLOADS.items():
        if args.only and name not in args.only:
            continue
        if not _available(w):
            print(f"{name}: skipped ({', '.join(w.needs)} not installed)", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
            rows.append(measure(w, args.repeat, Path(tmp)))
    if args.json:
        print(json.dumps({"python": platform.python_version(), "rows": rows}, indent=2))
        return 0
    print("overhead over the plain training, CPU time (wall time in brackets)")
    print(f"{'workload':<10} {'steps/s':>8} {'plain s':>8}  " + "  ".join(
        f"{v + ' %':>18}" for v in VARIANTS[1:]))  # fmt: skip
    for r in rows:
        cells = []
        for v in VARIANTS[1:]:
            pct, wall = r["overhead_pct"].get(v), r["wall_overhead_pct"].get(v)
            text = "—" if pct is None else f"{pct:+.1f} ({wall:+.1f})"
            cells.append(f"{text:>18}")
        print(f"{r['workload']:<10} {r['steps_per_s']:>8.0f} {r['cpu_seconds']['plain']:>8.2f}  "
              + "  ".join(cells))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
