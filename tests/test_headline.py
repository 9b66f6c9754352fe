"""The headline metric: one documented rule (lineagehub.services.headline) for pictures, CLI tables and
the GraphQL ``headlineMetric`` field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lineagehub import Settings
from lineagehub.graph import Direction
from lineagehub.ingest.client import Client
from lineagehub.interfaces.cli import main
from lineagehub.schema import schema
from lineagehub.services.export import export_lineage
from lineagehub.services.headline import headline_metric, policy_metrics
from lineagehub.services.registry import Policy

# What scikit-learn's autolog and evaluate() log for a binary classifier: v3 is the best on
# held-out ROC AUC but not on accuracy.
FOREST = {
    "training_accuracy": 1.0, "training_roc_auc": 1.0, "training_f1": 1.0,
    "test_accuracy": 0.9568, "test_roc_auc": 0.9968, "test_f1": 0.9567,
}  # fmt: skip


def test_held_out_names_are_ranked_before_training_ones() -> None:
    assert headline_metric({"metrics": FOREST}) == ("test_roc_auc", 0.9968)
    lightgbm = {"train_binary_logloss": 0.21, "valid_0_auc": 0.88, "valid_0_binary_logloss": 0.3}
    assert headline_metric({"metrics": lightgbm}) == ("valid_0_auc", 0.88)
    assert headline_metric({"metrics": {"train_binary_logloss": 0.21, "iterations": 9}}) == (
        "train_binary_logloss",
        0.21,
    )
    assert headline_metric({"metrics": {"auc": 0.8, "loss": 0.2}}) == ("auc", 0.8)
    assert headline_metric({"metrics": {"eval/accuracy": 0.7, "step": 3}}) == ("eval/accuracy", 0.7)
    assert headline_metric({"metrics": {"val_loss": 0.3, "loss": 0.2}}) == ("val_loss", 0.3)
    assert headline_metric({"metrics": {"zeta": 1, "alpha": 2}}) == ("alpha", 2.0)
    assert headline_metric({"metrics": {}}) is None
    assert headline_metric({}) is None


def test_named_metrics_come_first_in_the_documented_order() -> None:
    props = {
        "metrics": FOREST,
        "tags": {"primary_metric": "test_f1", "run_primary_metric": "test_accuracy"},
    }
    assert headline_metric(props, ["training_f1"])[0] == "test_f1"  # type: ignore[index]
    props["tags"] = {"run_primary_metric": "test_accuracy"}
    assert headline_metric(props, ["training_f1"])[0] == "training_f1"  # type: ignore[index]
    assert headline_metric(props)[0] == "test_accuracy"  # type: ignore[index]
    # a named metric the node does not have is skipped
    assert headline_metric(props, ["nope"])[0] == "test_accuracy"  # type: ignore[index]
    policies = {
        "*": Policy(thresholds=[("test_f1", ">=", 0.5)]),
        ("churn", "Production"): Policy(thresholds=[("test_roc_auc", ">=", 0.9)]),
    }
    assert policy_metrics(policies, "churn") == ["test_roc_auc", "test_f1"]
    assert policy_metrics(policies, "other") == ["test_f1"]
    assert policy_metrics({}, "churn") == []


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    for name in ("LINEAGEHUB_URL", "LINEAGEHUB_STORE", "LINEAGEHUB_POLICIES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LINEAGEHUB_DATA_DIR", str(tmp_path / "data"))
    client = Client(
        f"sqlite:///{tmp_path / 'hub.db'}",
        settings=Settings(user="ann", artifacts=str(tmp_path / "artifacts")),
    )
    for i, (auc, acc) in enumerate([(0.99, 0.96), (0.997, 0.95)], start=1):
        with client.start_run(f"rf-{i}", project="p", capture=False) as run:
            run.log_metrics({**FOREST, "test_roc_auc": auc, "test_accuracy": acc})
            run.set_tags({"primary_metric": "test_roc_auc"})  # what evaluate() marks
            run.log_model({"w": i}, name="forest")
    with client.start_run("gbm", project="p", capture=False) as run:
        run.log_metrics({"test_accuracy": 0.9, "test_f1": 0.8})
        run.log_model({"w": 0}, name="forest", primary_metric="test_f1")
    yield client
    client.close()


def test_a_version_records_the_registration_s_and_the_adapter_s_choice(hub: Client) -> None:
    v1 = hub.get_model_version("forest/1")
    assert v1.tags == {"run_primary_metric": "test_roc_auc"}
    v3 = hub.get_model_version("forest/3")
    assert v3.tags == {"primary_metric": "test_f1"}


def test_pictures_cli_and_graphql_agree(
    hub: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sub = hub.lineage(["forest/2", "forest/3"], Direction.UPSTREAM, upstream_depth=2)
    dot = export_lineage(sub, "dot").decode()
    assert "test_roc_auc 0.997" in dot and "test_f1 0.8" in dot
    assert "test_accuracy 0.95" not in dot

    store = hub.settings.store
    assert main(["models", "show", "forest", "--store", store]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if "version" in line)
    # the headline metrics are the first metric columns, the most common first
    columns = header.split()
    assert columns[columns.index("flavor") + 1 : columns.index("flavor") + 3] == [
        "test_roc_auc",
        "test_f1",
    ]


@pytest.mark.anyio
async def test_the_graphql_field_follows_the_rule_and_the_server_s_policies(hub: Client) -> None:
    from lineagehub.schema import Context, Services
    from lineagehub.services.lineage import LineageService
    from lineagehub.services.registry import RegistryService

    assert hub.store is not None
    query = """{ modelVersions(first: 5, orderBy: ["version"]) { edges { node {
        id headlineMetric { key value } trainedBy { headlineMetric { key value } } } } } }"""

    async def ask(policies: dict[object, Policy]) -> list[dict[str, object]]:
        services = Services(
            store=hub.store,  # type: ignore[arg-type]
            tracking=None,
            lineage=LineageService(hub.store),  # type: ignore[arg-type]
            artifacts=None,
            registry=RegistryService(hub.store, policies=policies),  # type: ignore[arg-type]
        )
        result = await schema.execute(query, context_value=Context(services))
        assert result.errors is None, result.errors
        return [e["node"] for e in result.data["modelVersions"]["edges"]]  # type: ignore[index]

    nodes = await ask({})
    assert [n["headlineMetric"]["key"] for n in nodes] == [  # type: ignore[index]
        "test_roc_auc",
        "test_roc_auc",
        "test_f1",
    ]
    assert nodes[1]["headlineMetric"]["value"] == 0.997  # type: ignore[index]
    assert nodes[0]["trainedBy"]["headlineMetric"]["key"] == "test_roc_auc"  # type: ignore[index]
    # a policy's metric wins over the adapter's, not over the registration's
    nodes = await ask({"forest": Policy(thresholds=[("test_accuracy", ">=", 0.5)])})
    assert [n["headlineMetric"]["key"] for n in nodes] == [  # type: ignore[index]
        "test_accuracy",
        "test_accuracy",
        "test_f1",
    ]
