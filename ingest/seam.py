"""What the SDK needs from a hub, and the hub in this process.

The SDK (:class:`~lineagehub.ingest.client.Client`) holds one :class:`Backend` and never asks
which kind it is. Two implement it:

- :class:`LocalBackend`: the services themselves over a graph store and an artifact store
  opened in this process (embedded mode);
- :class:`~lineagehub.ingest.remote.RemoteBackend`: the same calls over a hub server's
  GraphQL API and artifact routes (remote mode).

Both answer with the services' own types (vocabulary models, the registry's and the lineage
service's dataclasses) and raise the same errors; mypy checks each against these Protocols,
and the SDK test suites run against both. The actor is bound in the backend: embedded, the
client's user; remote, the one the server records.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from lineagehub.graph import Direction, GraphStore, SeriesPoint, Subgraph, ValidationError
from lineagehub.services.alerts import AlertRule, AlertService
from lineagehub.services.cards import CardService, InventoryRow, ModelCard
from lineagehub.services.dossier import compliance_report
from lineagehub.services.lineage import LineageDiff, LineageService, RunComparison
from lineagehub.services.monitoring import (
    MonitoringReference,
    MonitoringService,
    MonitoringSummary,
)
from lineagehub.services.registry import (
    HistoryEntry,
    ModelPromoted,
    PendingPromotion,
    Policy,
    PromotionPending,
    PromotionRefused,
    PromotionRejected,
    RegistryService,
)
from lineagehub.services.tracking import Metric, RunStart, TrackingService
from lineagehub.vocabulary import (
    Alert,
    Artifact,
    ArtifactKind,
    DatasetVersion,
    Deployment,
    DeploymentStatus,
    ModelVersion,
    MonitoringWindow,
    NodeKind,
    NodeModel,
    Run,
    RunStatus,
    UsedRole,
    model_version_id,
)

if TYPE_CHECKING:
    from lineagehub.artifacts import ArtifactInfo, ArtifactStore
    from lineagehub.vocabulary import DatasetFingerprint

PromoteResult = ModelPromoted | PromotionPending | PromotionRefused
M = TypeVar("M", bound=NodeModel)


class Tracking(Protocol):
    """Runs, their params, metrics and tags, and what they used and generated
    (:class:`~lineagehub.services.tracking.TrackingService`)."""

    def start_run(self, run: Run, start: RunStart | None = None) -> Run: ...

    def log_batch(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Sequence[Metric] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None: ...

    def end_run(
        self,
        run_id: str,
        status: RunStatus | str = RunStatus.FINISHED,
        error: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Sequence[Metric] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> Run: ...

    def get_run(self, run_id: str) -> Run: ...

    def mark_stale_runs(self) -> list[str]: ...

    def search_runs(
        self,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Run], str | None]: ...

    def metric_history(
        self, run_id: str, key: str, max_points: int | None = None
    ) -> list[SeriesPoint]: ...

    def log_dataset(
        self,
        run_id: str,
        fingerprint: DatasetFingerprint,
        *,
        name: str | None = None,
        namespace: str | None = None,
        role: UsedRole | str = UsedRole.TRAIN,
        output: bool = False,
        derived_from: Iterable[str] = (),
        description: str | None = None,
    ) -> DatasetVersion: ...

    def log_input_model(
        self, run_id: str, ref: str, *, role: UsedRole | str = UsedRole.BASE_MODEL
    ) -> ModelVersion: ...

    def log_artifact(
        self,
        run_id: str,
        info: ArtifactInfo,
        *,
        name: str,
        kind: ArtifactKind | str = ArtifactKind.OTHER,
        media_type: str = "application/octet-stream",
        data: Mapping[str, Any] | None = None,
    ) -> Artifact: ...

    def artifacts_of(self, run_id: str) -> list[tuple[str, Artifact]]: ...

    def log_model(
        self,
        run_id: str,
        info: ArtifactInfo,
        *,
        name: str,
        flavor: str | None = None,
        signature: Mapping[str, Any] | None = None,
        description: str | None = None,
        primary_metric: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        custom_objects: Sequence[Mapping[str, Any]] | None = None,
    ) -> ModelVersion: ...

    def register_model_version(
        self,
        name: str,
        info: ArtifactInfo,
        *,
        run_id: str | None = None,
        flavor: str | None = None,
        signature: Mapping[str, Any] | None = None,
        description: str | None = None,
        primary_metric: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        custom_objects: Sequence[Mapping[str, Any]] | None = None,
    ) -> ModelVersion: ...


class Registry(Protocol):
    """Stages, aliases, governed promotions and deployments
    (:class:`~lineagehub.services.registry.RegistryService`, acting as the backend's actor)."""

    def request_promotion(
        self, ref: str, to: str, reason: str, *, on_deployments: str = "refuse"
    ) -> PromoteResult: ...

    def approve(self, request_id: str, comment: str | None = None) -> PromoteResult: ...

    def reject(self, request_id: str, reason: str) -> PromotionRejected: ...

    def promote(
        self,
        ref: str,
        to: str,
        reason: str,
        *,
        archive_previous: bool = True,
        on_deployments: str = "refuse",
    ) -> PromoteResult: ...

    def set_alias(self, ref: str, alias: str, reason: str | None = None) -> ModelVersion: ...

    def remove_alias(self, model: str, alias: str, reason: str | None = None) -> None: ...

    def deploy(
        self,
        ref: str,
        environment: str,
        *,
        name: str | None = None,
        endpoint: str | None = None,
        status: DeploymentStatus | str = DeploymentStatus.ACTIVE,
        require_stage: str | None = None,
        reason: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Deployment: ...

    def retire_deployment(self, deployment_id: str, reason: str | None = None) -> Deployment: ...

    def rollback(
        self, model: str, stage_or_alias: str, reason: str, *, on_deployments: str = "refuse"
    ) -> list[str]: ...

    def pending_promotions(
        self, model: str | None = None, stage: str | None = None
    ) -> list[PendingPromotion]: ...

    def history(
        self, model: str, alias: str | None = None, stage: str | None = None
    ) -> list[HistoryEntry]: ...

    def holder_at(self, model: str, alias_or_stage: str, time: datetime) -> ModelVersion | None: ...

    def set_model_card(
        self, ref: str, card: Mapping[str, Any], reason: str | None = None
    ) -> ModelCard: ...

    def model_card(self, ref: str, as_of: datetime | None = None) -> ModelCard: ...


class Queries(Protocol):
    """Look-ups, listings, lineage and comparisons (:class:`~lineagehub.services.lineage.
    LineageService` and the store's filtered listings)."""

    def find(
        self,
        model: type[M],
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[M], str | None]:
        """One page of the nodes of ``model``'s kind that match a filter, ordered."""

    def model_version(self, ref: str) -> ModelVersion: ...

    def lineage(
        self,
        roots: Sequence[str],
        direction: Direction | str = Direction.UPSTREAM,
        upstream_depth: int = 3,
        downstream_depth: int = 3,
        *,
        node_kinds: Sequence[NodeKind | str] | None = None,
        edge_kinds: Sequence[str] | None = None,
        stop_at: Sequence[NodeKind | str] | None = None,
        pass_through: Sequence[NodeKind | str] | None = None,
        as_of: datetime | None = None,
        max_nodes: int = 5000,
    ) -> Subgraph: ...

    def compare_runs(self, run_ids: Sequence[str]) -> RunComparison: ...

    def compare_model_versions(self, a: str, b: str) -> LineageDiff: ...

    def compliance_report(self, ref: str, as_of: datetime | None = None) -> dict[str, Any]: ...

    def model_inventory(self) -> list[InventoryRow]: ...


class BatchTarget(Protocol):
    """Where the writes of one batch go (:meth:`Backend.batch`). Its calls answer either the
    value itself (in process: written at once, inside the batch's transaction) or a stand-in
    known once the batch is written; :meth:`ref` names either in a later call of the batch,
    and :meth:`value` is what it stood for, once the batch is written."""

    @property
    def tracking(self) -> Tracking: ...
    @property
    def registry(self) -> Registry: ...

    def ref(self, answer: Any) -> str:
        """How a later call of the batch names the node ``answer`` stands for."""

    def value(self, answer: Any) -> Any:
        """What ``answer`` stood for (after the batch is written)."""

    def artifact(self, digest: str) -> ArtifactInfo:
        """Content already in the artifact store, to register as a model version."""


class Monitoring(Protocol):
    """What a serving process reports (:class:`~lineagehub.services.monitoring.
    MonitoringService`): the reference it sketches against, and its windows."""

    def reference(self, deployment: str, dataset: str | None = None) -> MonitoringReference: ...

    def report_window(
        self,
        deployment: str,
        start: datetime,
        end: datetime,
        sketch: Mapping[str, Any],
        *,
        instance: str = "default",
        reference: str | None = None,
    ) -> MonitoringWindow: ...

    def window(self, window_id: str) -> MonitoringWindow | None: ...

    def summary(
        self, deployment: str, start: datetime | None = None, end: datetime | None = None
    ) -> MonitoringSummary: ...

    def list_alerts(
        self, deployment: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[Alert]: ...

    def acknowledge_alert(self, alert_id: str, comment: str | None = None) -> Alert: ...

    def silence_alert(self, alert_id: str, until: datetime) -> Alert: ...


class Backend(Protocol):
    """A hub as the SDK sees it."""

    @property
    def tracking(self) -> Tracking: ...
    @property
    def registry(self) -> Registry: ...
    @property
    def queries(self) -> Queries: ...
    @property
    def monitoring(self) -> Monitoring: ...
    @property
    def artifacts(self) -> ArtifactStore: ...
    @property
    def policies(self) -> Mapping[Any, Policy]:
        """The promotion policies applied in this process (none: a server applies its own)."""

    def batch(self) -> AbstractContextManager[BatchTarget]:
        """Writes made through the target inside the block are written together, in one
        transaction, when the block ends without an error (else none of them)."""

    def artifact(self, digest: str) -> ArtifactInfo:
        """Content already in the artifact store, to register as a model version (a hub
        server checks it when it registers: no request of its own)."""

    def close(self) -> None: ...


# --- the hub in this process ----------------------------------------------------------------


class _ActingRegistry:
    """The registry service, every change made as one actor."""

    def __init__(self, service: RegistryService, actor: str) -> None:
        self.service, self.actor = service, actor

    def request_promotion(
        self, ref: str, to: str, reason: str, *, on_deployments: str = "refuse"
    ) -> PromoteResult:
        return self.service.request_promotion(
            ref, to, self.actor, reason, on_deployments=on_deployments
        )

    def approve(self, request_id: str, comment: str | None = None) -> PromoteResult:
        return self.service.approve(request_id, self.actor, comment)

    def reject(self, request_id: str, reason: str) -> PromotionRejected:
        return self.service.reject(request_id, self.actor, reason)

    def promote(
        self,
        ref: str,
        to: str,
        reason: str,
        *,
        archive_previous: bool = True,
        on_deployments: str = "refuse",
    ) -> PromoteResult:
        return self.service.promote(
            ref,
            to,
            self.actor,
            reason,
            archive_previous=archive_previous,
            on_deployments=on_deployments,
        )

    def set_alias(self, ref: str, alias: str, reason: str | None = None) -> ModelVersion:
        return self.service.resolve(self.service.set_alias(ref, alias, self.actor, reason))

    def remove_alias(self, model: str, alias: str, reason: str | None = None) -> None:
        self.service.remove_alias(model, alias, self.actor, reason)

    def deploy(self, ref: str, environment: str, **options: Any) -> Deployment:
        return self.service.deploy(ref, environment, self.actor, **options)

    def retire_deployment(self, deployment_id: str, reason: str | None = None) -> Deployment:
        return self.service.retire_deployment(deployment_id, self.actor, reason)

    def rollback(
        self, model: str, stage_or_alias: str, reason: str, *, on_deployments: str = "refuse"
    ) -> list[str]:
        return self.service.rollback(
            model, stage_or_alias, self.actor, reason, on_deployments=on_deployments
        )

    def pending_promotions(
        self, model: str | None = None, stage: str | None = None
    ) -> list[PendingPromotion]:
        return self.service.pending_promotions(model, stage)

    def history(
        self, model: str, alias: str | None = None, stage: str | None = None
    ) -> list[HistoryEntry]:
        return self.service.history(model, alias, stage)

    def holder_at(self, model: str, alias_or_stage: str, time: datetime) -> ModelVersion | None:
        version = self.service.holder_at(model, alias_or_stage, time)
        return None if version is None else self.service.resolve(model_version_id(model, version))

    def set_model_card(
        self, ref: str, card: Mapping[str, Any], reason: str | None = None
    ) -> ModelCard:
        return CardService(self.service.store).set_card(ref, card, self.actor, reason)

    def model_card(self, ref: str, as_of: datetime | None = None) -> ModelCard:
        return CardService(self.service.store).card(ref, as_of)


class _LocalQueries(LineageService):
    """The lineage service, with the listings the SDK offers."""

    def find(
        self,
        model: type[M],
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[M], str | None]:
        page = self.store.find_nodes(model.node_kind.value, where, order_by, after, limit)
        return [model.from_node(n) for n in page.items], page.next_cursor

    def model_version(self, ref: str) -> ModelVersion:
        if not isinstance(ref, str) or not ref:
            raise ValidationError("ref must be a non-empty string", field="ref")
        node = self.resolve_node(ref)
        if node.label != NodeKind.MODEL_VERSION.value:
            raise ValidationError(f"{ref!r} is not a model version", field="ref")
        return ModelVersion.from_node(node)

    def compliance_report(self, ref: str, as_of: datetime | None = None) -> dict[str, Any]:
        return compliance_report(self.store, ref, as_of, lineage=self)

    def model_inventory(self) -> list[InventoryRow]:
        return CardService(self.store).inventory()


class LocalBackend:
    """The services over stores opened in this process; changes are made as ``actor``."""

    def __init__(
        self,
        store: GraphStore,
        artifacts: ArtifactStore,
        *,
        actor: str,
        stale_after: timedelta,
        policies: Mapping[Any, Policy] | None = None,
        owns_store: bool = False,
        alert_rules: Sequence[AlertRule] = (),
    ) -> None:
        self.store, self.artifacts, self._owns_store = store, artifacts, owns_store
        self.tracking = TrackingService(store, artifacts, stale_after=stale_after, actor=actor)
        service = RegistryService(store, policies=policies)
        self.policies = service.policies
        self.registry = _ActingRegistry(service, actor)
        self.queries = _LocalQueries(store)
        self.monitoring = MonitoringService(store, actor=actor)
        AlertService(self.monitoring, alert_rules)  # evaluated on every window reported

    @contextlib.contextmanager
    def batch(self) -> Iterator[_LocalBatch]:
        with self.store.transaction():
            yield _LocalBatch(self.tracking, self.registry, self.artifacts)

    def artifact(self, digest: str) -> ArtifactInfo:
        return self.artifacts.stored(digest)

    def close(self) -> None:
        if self._owns_store:
            self.store.close()


class _LocalBatch:
    """A batch in process: each call is made at once, inside the batch's transaction."""

    def __init__(
        self, tracking: TrackingService, registry: _ActingRegistry, artifacts: ArtifactStore
    ) -> None:
        self.tracking, self.registry, self.artifacts = tracking, registry, artifacts

    def artifact(self, digest: str) -> ArtifactInfo:
        return self.artifacts.stored(digest)

    def ref(self, answer: Any) -> str:
        return node_ref(answer)

    def value(self, answer: Any) -> Any:
        return answer


def node_ref(value: Any) -> str:
    """The id of the node a service answer is (a run, a version...), or a string as it is."""
    if isinstance(value, str):
        return value
    if isinstance(value, NodeModel):
        return value.node_id
    version_id = getattr(value, "version_id", None)  # a promotion's outcome: its version
    if isinstance(version_id, str):
        return version_id
    raise ValidationError(f"{type(value).__name__} names no node", field="ref")


def _contract(backend: LocalBackend) -> Backend:  # mypy checks the backend against the contract
    return backend


def _batch_contract(batch: _LocalBatch) -> BatchTarget:
    return batch


__all__ = [
    "Backend",
    "BatchTarget",
    "LocalBackend",
    "Monitoring",
    "PromoteResult",
    "Queries",
    "Registry",
    "Tracking",
    "node_ref",
]
