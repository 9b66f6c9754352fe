"""The Lightning ``Logger``: a tiny LightningModule really trained on the CPU by a ``Trainer``;
hyper-parameters, step and epoch metrics, checkpoints, data and the best checkpoint as the model
version, loaded back through the SDK on both stores and transports; a hub that cannot be reached
only warns."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from dl_support import TRANSPORTS, artifacts, open_hub, unreachable_client, used
from torch.utils.data import DataLoader, TensorDataset

from lineagehub import Client
from lineagehub.ingest.lightning import LineageHubLogger
from lineagehub.ingest.sklearn import AutologWarning
from lineagehub.vocabulary import RunStatus

warnings.filterwarnings("ignore", ".*does not have many workers.*")


class TinyModule(pl.LightningModule):
    def __init__(self, hidden: int = 8, lr: float = 0.5, fail_at_epoch: int = -1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.current_epoch == self.hparams.fail_at_epoch:
            raise RuntimeError("diverged")
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


@pytest.fixture(params=TRANSPORTS)
def hub(request: pytest.FixtureRequest, store_backend: str, tmp_path: Path) -> Iterator[Client]:
    with open_hub(request.param, store_backend, tmp_path) as client:
        yield client


def loaders() -> tuple[DataLoader, DataLoader, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(64, 4, generator=generator)
    y = (X[:, 0] > 0).long()
    train = DataLoader(TensorDataset(X[:48], y[:48]), batch_size=16)
    val = DataLoader(TensorDataset(X[48:], y[48:]), batch_size=16)
    return train, val, X


def trainer(logger: Any, root: Path, epochs: int = 3) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        logger=logger,
        default_root_dir=root,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        callbacks=[pl.callbacks.ModelCheckpoint(monitor="val_loss", save_top_k=2)],
    )


def test_a_trainer_run_is_logged_and_the_best_checkpoint_loads_back(
    hub: Client, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    train, val, X = loaders()
    logger = LineageHubLogger(client=hub, project="lightning", model_name="tiny")
    module = TinyModule()
    fit = trainer(logger, tmp_path / "pl")
    fit.fit(module, train, val)

    run = hub.get_run(logger.version)
    assert run.status is RunStatus.FINISHED and run.project == "lightning"
    assert run.params["hidden"] == 8 and run.params["lr"] == 0.5
    assert run.params["model.class"] == "test_lightning_adapter:TinyModule"
    assert run.params["model.parameters"] == 4 * 8 + 8 + 8 * 2 + 2
    # per step (3 batches x 3 epochs) and per epoch, at Lightning's steps
    steps = hub.metric_history(run.id, "train_loss_step")
    assert [p.step for p in steps] == list(range(9))
    assert len(hub.metric_history(run.id, "train_loss_epoch")) == 3
    assert len(hub.metric_history(run.id, "val_loss")) == 3

    # every checkpoint ModelCheckpoint wrote is stored, as a checkpoint
    made = artifacts(hub, run.id)
    checkpoints = {n for n, a in made.items() if a.kind.value == "checkpoint"}
    assert checkpoints == {"epoch=0-step=3.ckpt", "epoch=1-step=6.ckpt", "epoch=2-step=9.ckpt"}

    # the data the trainer held
    inputs = used(hub, run.id)
    assert set(inputs) == {"train", "validation"}

    # the best checkpoint is the version; it loads back as the module, weights and all
    callback = fit.checkpoint_callback
    assert callback is not None
    version = logger.model_version
    assert version is not None and version.flavor == "lightning" and version.model == "tiny"
    assert version.metadata["data"]["from_checkpoint"] == Path(callback.best_model_path).name
    assert version.signature["monitor"] == "val_loss"
    assert version.signature["best_score"] == pytest.approx(float(callback.best_model_score))
    loaded = hub.load_model("tiny@1")
    assert type(loaded) is TinyModule and loaded.hparams.hidden == 8
    best = TinyModule.load_from_checkpoint(callback.best_model_path, map_location="cpu")
    best.eval()
    with torch.no_grad():
        assert torch.equal(loaded(X), best(X))


def test_inside_an_active_run_the_logger_logs_into_it_and_leaves_it_open(tmp_path: Path) -> None:
    train, val, _ = loaders()
    with open_hub("embedded", "sqlite", tmp_path) as hub:
        with hub.start_run("outer") as outer:
            logger = LineageHubLogger(client=hub, log_checkpoints=False)
            trainer(logger, tmp_path / "pl", epochs=1).fit(TinyModule(), train, val)
            assert logger.version == outer.id
            assert hub.get_run(outer.id).status is RunStatus.RUNNING
        assert hub.get_run(outer.id).status is RunStatus.FINISHED
        assert artifacts(hub, outer.id).keys() >= {"model_layers.json"}
        assert logger.model_version is not None


def test_training_that_fails_ends_the_run_failed(tmp_path: Path) -> None:
    train, val, _ = loaders()
    with open_hub("embedded", "sqlite", tmp_path) as hub:
        logger = LineageHubLogger(client=hub, model_name="never")
        with pytest.raises(RuntimeError, match="diverged"):
            trainer(logger, tmp_path / "pl").fit(TinyModule(fail_at_epoch=1), train, val)
        run = hub.get_run(logger.version)
        assert run.status is RunStatus.FAILED
        assert run.error == "RuntimeError: diverged"  # the training's own error, not a word
        assert logger.model_version is None


class Interrupted(pl.Callback):
    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        raise KeyboardInterrupt


def test_ctrl_c_ends_the_run_killed(tmp_path: Path) -> None:
    train, val, _ = loaders()
    with open_hub("embedded", "sqlite", tmp_path) as hub:
        logger = LineageHubLogger(client=hub, model_name="never")
        fit = trainer(logger, tmp_path / "pl")
        fit.callbacks.append(Interrupted())
        with pytest.raises(SystemExit):  # Lightning's graceful shutdown on Ctrl-C
            fit.fit(TinyModule(), train, val)
        run = hub.get_run(logger.version)
        assert (run.status, run.error) == (RunStatus.KILLED, "KeyboardInterrupt")


def test_data_numpy_cannot_hold_never_stops_training(tmp_path: Path) -> None:
    """bfloat16 features, and a validation loader with no rows: training goes on, the data is
    fingerprinted (widened to float32) or named in a tag."""
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(32, 4, generator=generator)
    y = (X[:, 0] > 0).long()
    train = DataLoader(TensorDataset(X.to(torch.bfloat16), y), batch_size=16)
    empty = DataLoader(TensorDataset(X[:0], y[:0]), batch_size=16)

    class Widening(TinyModule):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return super().training_step((batch[0].float(), batch[1]), batch_idx)

    with open_hub("embedded", "sqlite", tmp_path) as hub:
        logger = LineageHubLogger(client=hub, log_model=False)
        with warnings.catch_warnings():
            warnings.simplefilter("error", AutologWarning)
            trainer(logger, tmp_path / "pl", epochs=1).fit(Widening(), train, empty)
        run = hub.get_run(logger.version)
        assert run.status is RunStatus.FINISHED and "train_loss_step" in run.metrics
        assert "train" in used(hub, run.id)
        assert "not fingerprinted" in run.tags["data.validation"]


def test_an_unreachable_hub_warns_and_training_goes_on(tmp_path: Path) -> None:
    train, val, _ = loaders()
    logger = LineageHubLogger(client=unreachable_client(tmp_path))
    module = TinyModule()
    before = module.net[0].weight.detach().clone()
    with pytest.warns(AutologWarning, match="unreachable"):
        fit = trainer(logger, tmp_path / "pl", epochs=2)
        fit.fit(module, train, val)
    assert fit.current_epoch == 2 and not torch.equal(before, module.net[0].weight)
    assert logger.version == "" and logger.model_version is None
