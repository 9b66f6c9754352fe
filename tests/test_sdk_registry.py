"""The model registry through the SDK, in both modes: embedded (a client on a SQLite file) and
remote (a real server over the same data). Versions are registered through the SDK itself, so
their lineage (run, metrics) is real; results are the registry's own dataclasses either way."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import fresh_store_uri
from http_server import HubServer

from lineagehub import Settings, open_store
from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import GraphStore, NotFoundError
from lineagehub.graph.errors import ConflictError, PolicyViolation, ValidationError
from lineagehub.ingest.client import Client
from lineagehub.services.registry import (
    HistoryEntry,
    ModelPromoted,
    Policy,
    PromotionPending,
    PromotionRefused,
    PromotionRejected,
)
from lineagehub.vocabulary import ModelVersion, Stage

POLICIES = {("churn", "Production"): Policy(approvals=1, separation_of_duties=True)}


class RegistryHub:
    """A hub (SQLite or the test Neo4j) with the registry policies; ``client(user)`` acts as ``user``: embedded,
    a client with that user; remote, a client of a server whose registry actor is ``user``."""

    def __init__(
        self, mode: str, folder: Path, stack: contextlib.ExitStack, backend: str = "sqlite"
    ) -> None:
        self.mode = mode
        folder.mkdir(parents=True, exist_ok=True)
        self.uri = fresh_store_uri(backend, folder)
        self.folder = folder
        self._stack = stack
        self._servers: dict[str, str] = {}

    def _server(self, user: str) -> str:
        if user not in self._servers:
            from lineagehub.interfaces.server import create_app

            store: GraphStore = open_store(self.uri)
            self._stack.callback(store.close)
            app = create_app(
                Settings(user=user),
                store=store,
                artifacts=open_artifact_store(str(self.folder / "artifacts")),
                registry_policies=POLICIES,
            )
            self._servers[user] = self._stack.enter_context(HubServer(app)).url
        return self._servers[user]

    def client(self, user: str = "ann") -> Client:
        settings = Settings(user=user, artifacts=str(self.folder / "artifacts"))
        if self.mode == "embedded":
            c = Client(self.uri, settings=settings, registry_policies=POLICIES)
        else:
            c = Client(self._server(user), settings=Settings(user=user))
        self._stack.callback(c.close)
        return c


@pytest.fixture(params=["embedded", "remote"])
def hub(
    request: pytest.FixtureRequest, store_backend: str, tmp_path: Path
) -> Iterator[RegistryHub]:
    with contextlib.ExitStack() as stack:
        yield RegistryHub(request.param, tmp_path / "hub", stack, store_backend)


def _train(client: Client, auc: float) -> ModelVersion:
    with client.start_run("train", project="churn", capture=False) as run:
        run.log_metrics({"auc": auc})
        return run.log_model({"weights": [auc]}, name="churn")


def test_direct_promotion_and_governed_promotion(hub: RegistryHub) -> None:
    ann = hub.client("ann")
    v1 = _train(ann, 0.8)
    assert (v1.model, v1.version) == ("churn", 1)

    done = ann.promote("churn/1", "Staging", "looks good")
    assert isinstance(done, ModelPromoted)
    assert (done.version_id, done.from_stage, done.to_stage) == (v1.node_id, "None", "Staging")

    # Production needs one approval, not from the requester
    pending = ann.request_promotion("churn/1", "Production", "ship it")
    assert isinstance(pending, PromotionPending)
    assert (pending.version_id, pending.to_stage, pending.needed) == (v1.node_id, "Production", 1)
    assert pending.approvals == ()

    refused = ann.approve_promotion(pending.request_id, "mine")
    assert isinstance(refused, PromotionRefused)
    assert "separation_of_duties.requester" in refused.rule_ids
    assert refused.version_id == v1.node_id

    bob = hub.client("bob")
    promoted = bob.approve_promotion(pending.request_id, "fine by me")
    assert isinstance(promoted, ModelPromoted)
    assert (promoted.to_stage, promoted.approvals) == ("Production", ("bob",))
    assert promoted.run_id == pending.request_id

    # a second request, rejected
    _train(ann, 0.85)
    second = ann.request_promotion("churn/2", "Production", "better")
    assert isinstance(second, PromotionPending)
    rejected = bob.reject_promotion(second.request_id, "not yet")
    assert rejected == PromotionRejected(
        second.request_id, "mv:churn/2", "Production", "bob", "not yet"
    )

    history = ann.model_history("churn", stage="Production")
    assert [(e.version, e.from_, e.to) for e in history] == [(1, "Staging", "Production")]
    assert all(isinstance(e, HistoryEntry) for e in history)
    assert (history[0].actor, history[0].approvals) == ("ann", ("bob",))


def test_aliases_history_holder_at_and_rollback(hub: RegistryHub) -> None:
    c = hub.client("ann")
    _train(c, 0.8)
    _train(c, 0.9)
    v1 = c.set_alias("churn/1", "champion", "first")
    assert isinstance(v1, ModelVersion) and v1.aliases == ["champion"]
    between = datetime.now(timezone.utc)
    v2 = c.set_alias("churn/2", "champion", "better")
    assert v2.version == 2 and v2.aliases == ["champion"]

    history = c.model_history("churn", alias="champion")
    assert [(e.version, e.from_, e.to, e.change) for e in history] == [
        (1, None, 1, "alias"),
        (2, 1, 2, "alias"),
    ]
    assert [e.reason for e in history] == ["first", "better"]
    assert {e.actor for e in history} == {"ann"}

    then = c.holder_at("churn", "champion", between)
    assert isinstance(then, ModelVersion) and then.version == 1
    now = c.holder_at("churn", "champion", datetime.now(timezone.utc))
    assert now is not None and now.version == 2
    assert c.holder_at("churn", "Production", datetime.now(timezone.utc)) is None

    runs = c.rollback("churn", "champion", "regression")
    assert runs and all(isinstance(r, str) for r in runs)
    back = c.holder_at("churn", "champion", datetime.now(timezone.utc))
    assert back is not None and back.version == 1

    c.remove_alias("churn", "champion", "retired")
    assert c.holder_at("churn", "champion", datetime.now(timezone.utc)) is None
    assert len(c.model_history("churn")) == 4

    # a stage round trip: promote, then roll back
    assert isinstance(c.promote("churn/2", Stage.STAGING.value, "try"), ModelPromoted)
    c.rollback("churn", "Staging", "undo")
    assert c.holder_at("churn", "Staging", datetime.now(timezone.utc)) is None


def test_a_model_name_with_surrounding_whitespace_is_the_model_and_numbers_on(
    hub: RegistryHub,
) -> None:
    """``churn\\n`` (a name read from a file) is the model ``churn``: its next version, not a
    new version 1 written over the one in Production."""
    c = hub.client("ann")
    first = _train(c, 0.8)
    c.promote("churn/1", "Staging", "go")
    c.set_alias("churn/1", "champion", "first")
    weights = c.backend.artifacts.put_bytes(b"other weights").digest
    for i, name in enumerate(["churn\n", " churn", "churn\t "], start=2):
        got = c.register_model_version(name, digest=weights)
        assert (got.model, got.version, got.node_id) == ("churn", i, f"mv:churn/{i}")
    one = c.get_model_version("churn/1")
    assert one.artifact_digest == first.artifact_digest
    assert (one.stage, one.aliases) == (Stage.STAGING, ["champion"])
    assert [m.name for m in c.list_models({"name": "churn"})[0]] == ["churn"]


def test_an_alias_is_one_alias_whatever_its_case(hub: RegistryHub) -> None:
    """``Champion`` and ``champion `` are the alias ``champion``: setting it moves it (one
    holder), and every read, history, rollback and removal finds it by either spelling."""
    c = hub.client("ann")
    _train(c, 0.8)
    _train(c, 0.9)
    c.set_alias("churn/1", "champion", "first")
    moved = c.set_alias("churn/2", "Champion", "better")
    assert moved.aliases == ["champion"]
    held = {v.version: v.aliases for v in c.search_model_versions({"model": "churn"})[0]}
    assert held == {1: [], 2: ["champion"]}
    now = datetime.now(timezone.utc)
    for spelling in ("champion", "Champion", "CHAMPION"):
        assert c.get_model_version(f"churn@{spelling}").version == 2
        got = c.holder_at("churn", spelling, now)
        assert got is not None and got.version == 2
    history = c.model_history("churn", alias="Champion ")
    assert [(e.version, e.alias) for e in history] == [(1, "champion"), (2, "champion")]
    c.rollback("churn", "CHAMPION", "undo")
    held = {v.version: v.aliases for v in c.search_model_versions({"model": "churn"})[0]}
    assert held == {1: ["champion"], 2: []}
    c.remove_alias("churn", "Champion", "retired")
    assert c.holder_at("churn", "champion", datetime.now(timezone.utc)) is None
    with pytest.raises(ValidationError):
        c.set_alias("churn/1", "Latest", "reserved")


def test_unknown_references(hub: RegistryHub) -> None:
    c = hub.client("ann")
    _train(c, 0.8)
    with pytest.raises(NotFoundError):
        c.promote("churn/9", "Staging", "nope")
    with pytest.raises(NotFoundError):
        c.request_promotion("nothing/1", "Production", "nope")
    with pytest.raises(NotFoundError):
        c.set_alias("churn@missing", "champion")
    with pytest.raises(NotFoundError):
        c.model_history("nothing")
    with pytest.raises(NotFoundError):
        c.holder_at("nothing", "champion", datetime.now(timezone.utc))


def test_deployments_in_both_modes(hub: RegistryHub) -> None:
    ann = hub.client("ann")
    v1 = _train(ann, 0.8)
    v2 = _train(ann, 0.9)
    with pytest.raises(PolicyViolation) as refused:
        ann.deploy("churn/1", "production", require_stage="Production")
    assert refused.value.code == "POLICY"
    first = ann.deploy("churn/1", "production", endpoint="https://m.acme/churn", tags={"t": "1"})
    assert (first.name, first.environment) == ("churn", "production")
    assert first.endpoint == "https://m.acme/churn" and first.tags == {"t": "1"}
    second = ann.deploy(v2.node_id, "production", reason="v2 is better")
    assert second.id == first.id and second.endpoint == first.endpoint
    retired = ann.retire_deployment(first.id, "decommissioned")
    assert retired.status.value == "retired"
    with pytest.raises(NotFoundError):
        ann.deploy("churn/7", "production")
    sub = ann.lineage([first.id], "UPSTREAM", upstream_depth=1)
    assert {v1.node_id, v2.node_id} <= set(sub.nodes)


def test_listings_and_wrong_types_answer_alike_in_both_modes(hub: RegistryHub) -> None:
    """Deployments, datasets and their versions list through a server as embedded (a
    KeyError before); a value of the wrong type for a call (None for an alias) is a
    ValidationError naming it in both modes (through a server a bare HubError before)."""
    from lineagehub.vocabulary import Dataset, DatasetVersion, Deployment

    ann = hub.client("ann")
    v1 = _train(ann, 0.8)
    with ann.start_run("prep", project="churn", capture=False) as run:
        run.log_dataset_ref("s3://lake/a.parquet", "sha256:" + "a" * 64)
    deployed = ann.deploy(v1.node_id, "production")
    found = {
        model.__name__: [item.node_id for item in ann.backend.queries.find(model, {})[0]]
        for model in (Deployment, Dataset, DatasetVersion)
    }
    assert found["Deployment"] == [deployed.id]
    assert found["Dataset"] == ["dataset:s3:%2F%2Flake/a.parquet"]
    assert len(found["DatasetVersion"]) == 1
    for call, field in (
        (lambda: ann.set_alias(v1.node_id, None), "alias"),  # type: ignore[arg-type]
        (lambda: ann.promote(v1.node_id, None, "why"), None),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValidationError) as e:
            call()
        if field is not None:
            assert e.value.field == field


def test_the_registrys_own_runs_are_written_by_the_registry_only(hub: RegistryHub) -> None:
    """A promotion request, its approvals and every stage or alias change are runs the
    registry reads its history back from: tracking calls may not start one, nor change one
    (forging an approval, ending a request, registering from one), in either mode."""
    ann, bob = hub.client("ann"), hub.client("bob")
    v1 = _train(ann, 0.8)
    for kind in ("promote", "deploy"):
        with (
            pytest.raises(ValidationError, match="registry's own records") as bad,
            ann.start_run("forged", project="churn", kind=kind, capture=False),
        ):
            pass
        assert bad.value.field == "kind"
    assert ann.search_runs({"kind": {"$in": ["promote", "deploy"]}})[0] == []

    pending = ann.request_promotion("churn/1", "Production", "ship it")
    assert isinstance(pending, PromotionPending)
    attempts = [
        lambda: ann.tracking.log_batch(pending.request_id, params={"approvals": "carol"}),
        lambda: ann.tracking.log_batch(pending.request_id, tags={"needed": "0"}),
        lambda: ann.tracking.end_run(pending.request_id),
        lambda: ann.register_model_version(
            "churn", digest=v1.artifact_digest, run_id=pending.request_id
        ),
    ]
    for attempt in attempts:
        with pytest.raises(ConflictError, match="registry's own records"):
            attempt()
    assert [p.request_id for p in ann.pending_promotions()] == [pending.request_id]
    assert ann.pending_promotions()[0].approvals == ()

    promoted = bob.approve_promotion(pending.request_id, "fine by me")
    assert isinstance(promoted, ModelPromoted)
    assert promoted.approvals == ("bob",)  # bob's alone: no approval was forged
    with pytest.raises(ConflictError, match="registry's own records"):
        ann.tracking.log_batch(promoted.run_id, params={"to_stage": "Archived"})
    assert [(e.version, e.to) for e in ann.model_history("churn", stage="Production")] == [
        (1, "Production")
    ]


def test_a_lineage_as_of_a_time_resolves_aliases_and_latest_as_they_were_then(
    hub: RegistryHub,
) -> None:
    """``churn@champion`` (or ``@latest``, ``@production``) with ``as_of``: the version that
    held it then, not today's holder (which was "not registered yet" at that time)."""
    c = hub.client("ann")
    _train(c, 0.8)
    c.set_alias("churn/1", "champion", "first")
    c.promote("churn/1", Stage.STAGING.value, "try")
    between = datetime.now(timezone.utc)
    _train(c, 0.9)
    c.set_alias("churn/2", "champion", "better")
    c.promote("churn/2", Stage.STAGING.value, "try")

    def root(ref: str, as_of: datetime | None) -> set[str]:
        graph = c.lineage([ref], upstream_depth=0, as_of=as_of)
        return {k for k, n in graph.nodes.items() if n.distance == 0}

    for ref in ("churn@champion", "churn@latest", "churn@staging", "model:churn@Champion"):
        assert root(ref, between) == {"mv:churn/1"}, ref
        assert root(ref, None) == {"mv:churn/2"}, ref
    assert root("churn/2", None) == {"mv:churn/2"}
    with pytest.raises(NotFoundError, match="held 'production'"):
        c.lineage(["churn@production"], as_of=between)
