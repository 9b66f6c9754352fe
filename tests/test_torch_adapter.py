"""The PyTorch helpers and the ``torch`` flavor: a tiny module really trained on the CPU, its
architecture, optimizer, data and weights logged, and the model loaded back through the SDK,
on both stores and both transports."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from dl_support import TRANSPORTS, artifacts, open_hub, unreachable_client, used
from http_server import HubServer
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lineagehub import Client, Settings, open_store
from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import BackendUnavailable, ValidationError
from lineagehub.ingest import torch as lh_torch
from lineagehub.ingest.sklearn import AutologWarning
from lineagehub.interfaces.server import create_app


class TinyNet(torch.nn.Module):
    def __init__(self, hidden: int = 4) -> None:
        super().__init__()
        self.encode = torch.nn.Linear(4, hidden)
        self.head = torch.nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.encode(x)))


@pytest.fixture(params=TRANSPORTS)
def hub(request: pytest.FixtureRequest, store_backend: str, tmp_path: Path) -> Iterator[Client]:
    with open_hub(request.param, store_backend, tmp_path) as client:
        yield client


def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(64, 4, generator=generator)
    return X, (X[:, 0] > 0).long()


def train(net: torch.nn.Module, loader: DataLoader, epochs: int = 3) -> tuple[object, list[float]]:
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    losses = []
    for _ in range(epochs):
        for xb, yb in loader:
            loss = torch.nn.functional.cross_entropy(net(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return (optimizer, scheduler), losses


def test_a_trained_module_is_logged_with_its_data_and_loads_back(hub: Client) -> None:
    torch.manual_seed(0)
    X, y = data()
    loader = DataLoader(TensorDataset(X, y), batch_size=16)
    net = TinyNet(hidden=8)
    with hub.start_run("tiny", project="torch") as run:
        (optimizer, scheduler), losses = train(net, loader)
        for epoch, loss in enumerate(losses):
            run.log_metrics({"loss": loss}, step=epoch)
        summary = lh_torch.log_module(net, run=run)
        logged = lh_torch.log_optimizer(optimizer, scheduler, run=run)
        dataset = lh_torch.log_data(loader, role="train", name="blobs", run=run)
        version = lh_torch.log_model(net, name="tiny", run=run, init_kwargs={"hidden": 8})

    assert summary is not None and summary["parameters"] == 4 * 8 + 8 + 8 * 2 + 2
    assert [layer["name"] for layer in summary["layers"]] == ["(root)", "encode", "head"]
    assert logged is not None
    assert logged["optimizer"] == "SGD" and logged["optimizer.lr"] == 0.5
    assert logged["scheduler"] == "StepLR" and logged["scheduler.step_size"] == 2
    stored = hub.get_run(run.id)
    assert stored.params["model.class"] == "test_torch_adapter:TinyNet"
    assert stored.params["model.parameters"] == summary["parameters"]
    assert stored.params["optimizer.lr"] == 0.5 and stored.params["scheduler.gamma"] == 0.5
    assert stored.metrics["loss"] == pytest.approx(losses[-1])

    # the data: one row per sample, the features and the target as columns
    assert dataset is not None and dataset.row_count == 64
    assert [c.name for c in dataset.columns] == ["x0", "x1", "x2", "x3", "target"]
    assert used(hub, run.id)["train"] == [dataset.node_id]

    # the architecture (text and layers as data) and the weights as a checkpoint
    made = artifacts(hub, run.id)
    assert (
        "Linear(in_features=4, out_features=8"
        in hub.artifacts.get_bytes(made["model_architecture.txt"].digest).decode()
    )
    assert made["model_layers.json"].data is not None
    assert made["model_state_dict.pt"].kind.value == "checkpoint"

    # the version: flavor torch, the class and how to build it, the source of the class
    assert version is not None and version.flavor == "torch"
    assert version.metadata["data"]["class"] == "test_torch_adapter:TinyNet"
    assert version.metadata["environment"]["packages"]["torch"] == torch.__version__.split("+")[0]
    (captured,) = version.metadata["custom_objects"]
    assert (captured["module"], captured["qualname"]) == ("test_torch_adapter", "TinyNet")

    loaded = hub.load_model("tiny@1")
    assert type(loaded) is TinyNet and not loaded.training
    net.eval()
    with torch.no_grad():
        assert torch.equal(loaded(X), net(X))


def test_a_class_that_cannot_be_imported_loads_with_model_class(tmp_path: Path) -> None:
    def make() -> torch.nn.Module:
        class Local(torch.nn.Module):  # defined in a function: no import path leads to it
            def __init__(self) -> None:
                super().__init__()
                self.layer = torch.nn.Linear(2, 1)

        return Local()

    with open_hub("embedded", "sqlite", tmp_path) as hub:
        net = make()
        with hub.start_run("local") as run:
            version = lh_torch.log_model(net, name="local", run=run)
        assert version is not None
        with pytest.raises(ValidationError, match="model_class"):
            hub.load_model("local@1")
        folder = hub.download("local@1", tmp_path / "local")
        loaded = lh_torch.load_module(folder, version.metadata["data"], model_class=type(net))
        assert torch.equal(loaded.layer.weight, net.layer.weight)


def test_a_module_needing_arguments_without_init_kwargs_is_a_clear_error(tmp_path: Path) -> None:
    class Needs(torch.nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(width, 1)

    with open_hub("embedded", "sqlite", tmp_path) as hub:
        with hub.start_run("needs") as run:
            version = lh_torch.log_model(Needs(3), name="needs", run=run)
        assert version is not None
        folder = hub.download("needs@1", tmp_path / "needs")
        with pytest.raises(ValidationError, match="init_kwargs"):
            lh_torch.load_module(folder, version.metadata["data"], model_class=Needs)


def test_data_computed_on_access_is_not_read_and_the_error_says_what_to_do(
    tmp_path: Path,
) -> None:
    class Squares(Dataset[int]):
        def __len__(self) -> int:
            return 10

        def __getitem__(self, i: int) -> int:
            raise AssertionError("the helper must not read the items")

    with pytest.raises(ValidationError, match="no active run"):
        lh_torch.log_module(TinyNet())
    with open_hub("embedded", "sqlite", tmp_path) as hub, hub.start_run("data") as run:
        with pytest.raises(ValidationError, match="log_dataset_ref"):
            lh_torch.log_data(DataLoader(Squares()), run=run)
        with pytest.raises(ValidationError, match=r"torch\.nn\.Module"):
            lh_torch.log_module("not a module", run=run)


def test_when_the_hub_goes_away_the_helpers_warn_and_training_goes_on(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    app = create_app(
        Settings(user="alice", data_dir=tmp_path),
        store=store,
        artifacts=open_artifact_store((tmp_path / "artifacts").as_uri()),
    )
    outcome: dict[str, object] = {}

    def training() -> None:
        # in a thread of its own: the run it leaves open (its hub is gone) is that thread's
        with HubServer(app) as server:
            client = Client(server.url, settings=Settings(user="alice", data_dir=tmp_path))
            run = client.start_run("doomed")
        client.backend.tracking.connection.retries = 0  # type: ignore[attr-defined]
        # the server is gone: every helper warns and returns None, training is not interrupted
        X, y = data()
        net = TinyNet()
        before = net.head.weight.detach().clone()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            outcome["module"] = lh_torch.log_module(net, run=run)
            (optimizer, _), _ = train(net, DataLoader(TensorDataset(X, y), batch_size=16), 1)
            # params are buffered in the run (written with the next write): nothing fails yet
            outcome["optimizer"] = lh_torch.log_optimizer(optimizer, run=run)
            outcome["model"] = lh_torch.log_model(net, name="doomed", run=run)
        outcome["trained"] = not torch.equal(before, net.head.weight)
        outcome["warnings"] = [w for w in caught if issubclass(w.category, AutologWarning)]

    thread = threading.Thread(target=training)
    thread.start()
    thread.join()
    assert outcome["module"] is None and outcome["model"] is None
    assert outcome["optimizer"] is not None and outcome["trained"] is True
    found = outcome["warnings"]
    assert isinstance(found, list) and len(found) == 2
    assert all("cannot be reached" in str(w.message) for w in found)

    # and a client that never reached a hub: starting a run is the user's call, and raises
    dead = unreachable_client(tmp_path)
    with pytest.raises(BackendUnavailable):
        dead.start_run("never")
    store.close()


def test_a_schedulers_state_is_not_a_hyper_parameter(tmp_path: Path) -> None:
    """What a scheduler holds about where training is (ReduceLROnPlateau's best loss and bad
    epochs, a warm-restart schedule's T_cur) changes as it steps: logged as a param, it
    depended on when, and a second log_optimizer call conflicted with the first."""
    net = TinyNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=2)
    restarts = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=10)
    with open_hub("embedded", "sqlite", tmp_path) as hub, hub.start_run("s") as run:
        first = lh_torch.log_optimizer(optimizer, plateau, run=run)
        for loss in (1.0, 0.5, 0.7):
            plateau.step(loss)
            restarts.step()
        again = lh_torch.log_optimizer(optimizer, plateau, run=run)  # no ConflictError
        cosine = lh_torch.optimizer_params(optimizer, restarts)
    assert first is not None and first == again
    assert first["scheduler.patience"] == 2 and "scheduler.mode" in first
    for state in ("scheduler.best", "scheduler.num_bad_epochs", "scheduler.cooldown_counter"):
        assert state not in first
    assert cosine["scheduler.T_0"] == 10 and "scheduler.T_cur" not in cosine


def test_data_numpy_cannot_hold_is_fingerprinted_widened(tmp_path: Path) -> None:
    X, y = data()
    with open_hub("embedded", "sqlite", tmp_path) as hub, hub.start_run("bf16") as run:
        dataset = lh_torch.log_data(
            TensorDataset(X.to(torch.bfloat16), y), role="train", name="half", run=run
        )
        sparse = lh_torch.log_data(X.to_sparse(), role="validation", name="sparse", run=run)
    assert dataset is not None and dataset.row_count == len(X)
    assert sparse is not None and sparse.row_count == len(X)
