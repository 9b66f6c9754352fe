"""The tracking service: runs, params, metrics, datasets, artifacts and models as lineage.

This is the hub's side of experiment tracking, over a :class:`~lineagehub.graph.GraphStore`
and an :class:`~lineagehub.artifacts.ArtifactStore`. The SDK (:mod:`lineagehub.ingest.client`)
calls it in embedded mode; the GraphQL API calls it for remote clients. Every method checks
its input (errors name the field) and writes in one transaction: a call either happens whole
or not at all.

What a run records, as graph facts (edges point from the later thing to what it came from):

- ``Run -PART_OF-> Experiment -PART_OF-> Project``; ``Run -CHILD_OF-> Run`` for sweeps
- ``Run -RAN_CODE-> CodeCommit``, ``Run -RAN_IN-> Environment``,
  ``Run -ASSOCIATED_WITH(launcher)-> Agent``
- ``Run -USED(role)-> DatasetVersion -VERSION_OF-> Dataset``; outputs
  ``DatasetVersion -GENERATED_BY-> Run`` and ``DERIVED_FROM`` the run's input data (kept on
  write, so data-to-data questions skip the runs in between)
- ``Artifact -GENERATED_BY-> Run`` (the name it was logged under on the edge)
- ``ModelVersion -GENERATED_BY-> Run``, ``ModelVersion -VERSION_OF-> Model``

Params are immutable once logged (logging the same value again is fine); metrics go to the
store's series (NaN and infinities kept), with the last value per key on the run for search;
a finished run takes no more writes. A run whose heartbeat is older than ``stale_after`` is
reported, and recorded, as KILLED.

Every state change also appends one entry to the store's audit log
(:mod:`lineagehub.graph.audit`) in the same transaction, naming the service's ``actor``:
``run.start``, ``run.log``, ``run.end``, ``run.killed``, ``dataset.log``, ``artifact.log``,
``model_version.create`` (:meth:`~TrackingService.log_model` and
:meth:`~TrackingService.register_model_version`) and ``model_version.use``. A write that fails leaves no entry.
"""

from __future__ import annotations

import copy
import functools
import getpass
import math
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote, urlsplit

from lineagehub.artifacts import absent_artifact
from lineagehub.graph import (
    ConflictError,
    Direction,
    Edge,
    GraphStore,
    Node,
    NotFoundError,
    SeriesPoint,
    ValidationError,
)
from lineagehub.graph.model import to_iso, validate_id
from lineagehub.services.access import record_projects
from lineagehub.services.headline import PRIMARY_METRIC_TAG, RUN_PRIMARY_METRIC_TAG
from lineagehub.services.webhooks import AfterCommit, EventSink, WebhookEvent
from lineagehub.vocabulary import (
    REGISTRY_RUN_KINDS,
    Agent,
    AgentKind,
    Artifact,
    ArtifactKind,
    AssociationRole,
    Dataset,
    DatasetVersion,
    EdgeKind,
    Experiment,
    Model,
    ModelVersion,
    NodeKind,
    NodeModel,
    Project,
    Run,
    RunKind,
    RunStatus,
    UsedRole,
    check_key,
    check_scalar,
    check_text,
    from_node,
    link,
    make_edge,
    member,
    numpy_scalar,
    same_param,
)

if TYPE_CHECKING:
    from lineagehub.artifacts import ArtifactInfo, ArtifactStore
    from lineagehub.vocabulary import CodeState, DatasetFingerprint, EnvironmentState

DEFAULT_STALE_AFTER = timedelta(minutes=5)
# A run's start may be given (an importer's record, a batch's ``started_at``); one ahead of
# the hub's clock by more than this is refused: its end (the hub's now) would come before it.
# Within it (a client's clock a little fast), an end is never recorded before the start.
START_AHEAD = timedelta(minutes=5)
UNKNOWN_ACTOR = "unknown"
MAX_BATCH_POINTS = 1_000_000
#: The longest source text of a model's custom object (one class or function) kept
MAX_CUSTOM_SOURCE = 256 * 1024


class Metric(NamedTuple):
    """One metric value at a step. ``value`` may be NaN or infinite."""

    key: str
    value: float
    step: int
    timestamp: datetime


def check_metric(key: Any, value: Any, step: Any = 0) -> float:
    """A metric value: a real number (numpy scalars too; NaN and infinities are kept)."""
    field = f"metrics.{key}"
    check_key(key, field)
    value = numpy_scalar(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(
            f"{field}: a metric is a number, got {type(value).__name__}", field=field
        )
    if isinstance(step, bool) or not isinstance(step, int) or not -(2**31) <= step < 2**31:
        # 32 bits: GraphQL's Int, so that a step valid embedded is valid remotely too
        raise ValidationError(
            f"{field}: step must be an integer between -2**31 and 2**31-1", field=f"{field}.step"
        )
    try:
        return float(value)
    except OverflowError:  # an int beyond a float's range (10**400)
        raise ValidationError(
            f"{field}: {str(value)[:20]}... is too large for a float metric", field=field
        ) from None


def metric_step(step: Any) -> Any:
    """A step as given, a numpy integer as the int it holds (``np.arange`` loops); checked by
    :func:`check_metric`."""
    return numpy_scalar(step)


def mentions_status(value: Any) -> bool:
    """Whether a filter (or an ordering) refers to the ``status`` property anywhere."""
    if isinstance(value, Mapping):
        return any(k == "status" or mentions_status(v) for k, v in value.items())
    if isinstance(value, str):
        return value.lstrip("+-") == "status"
    if isinstance(value, (list, tuple)):
        return any(mentions_status(v) for v in value)
    return False


def _metric_value(m: Metric) -> float:
    value, step = m.value, m.step
    if type(value) is float and type(step) is int and -(2**31) <= step < 2**31:  # common case
        return value
    return check_metric(m.key, value, step)


@dataclass(frozen=True, slots=True)
class RunStart:
    """What is known about a run when it starts, beyond the :class:`Run` itself."""

    code: CodeState | None = None
    environment: EnvironmentState | None = None
    #: Instead of ``environment``: the id of an Environment the hub already has (a remote
    #: client sends the package list once per connection, then names it).
    environment_id: str | None = None


class TrackingService:
    """Experiment tracking over a graph store and an artifact store."""

    def __init__(
        self,
        store: GraphStore,
        artifacts: ArtifactStore,
        *,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        actor: str | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        self.store = store
        #: ``on_event(event, payload)`` once a change has committed (webhooks):
        #: ``model_version.created`` from :meth:`log_model`.
        self._events = AfterCommit(store, on_event)
        self.artifacts = artifacts
        self.stale_after = stale_after
        #: Who the audit log records as making this service's changes.
        self.actor = actor or default_actor()
        # Nodes that never change once written (projects, agents, commits, environments):
        # written once per service, not once per run.
        self._written: set[str] = set()

    def acting_as(self, actor: str) -> TrackingService:
        """This service recording its changes (audit entries, a run's launcher) under
        ``actor``: a shallow copy sharing the stores and caches (the server makes one per
        request, for the authenticated caller)."""
        if actor == self.actor:
            return self
        clone = copy.copy(self)
        clone.actor = actor
        return clone

    # --- runs -------------------------------------------------------------------------------

    def start_run(self, run: Run, start: RunStart | None = None) -> Run:
        """Record a new run with its grouping, parent, code, environment and launcher."""
        start = start or RunStart()
        if run.status is not RunStatus.RUNNING:
            raise ValidationError("a run starts RUNNING", field="status")
        if run.kind.value in REGISTRY_RUN_KINDS:
            raise ValidationError(
                f"runs of kind {run.kind.value!r} are the registry's own records: "
                + (
                    "promote, request_promotion and set_alias write them"
                    if run.kind is RunKind.PROMOTE
                    else "deploy writes them"
                ),
                field="kind",
            )
        now = datetime.now(timezone.utc)
        if run.started_at > now + START_AHEAD:
            raise ValidationError(
                f"started_at {to_iso(run.started_at)} is ahead of the hub's clock"
                f" ({to_iso(now)}) by more than {START_AHEAD.seconds // 60} minutes: a run cannot"
                " start in the future (a local time sent as UTC?)",
                field="started_at",
            )
        run = run.model_copy(update={"heartbeat_at": now})
        fixed: list[NodeModel] = []  # nodes that never change once written
        edges: list[Edge] = []
        if run.project or run.experiment:
            project = Project(name=run.project or "default")
            experiment = Experiment(project=project.name, name=run.experiment or "default")
            fixed += [project, experiment]
            edges += [
                make_edge(EdgeKind.PART_OF, run, experiment),
                make_edge(EdgeKind.PART_OF, experiment, project),
            ]
        if run.user:
            agent = Agent(name=run.user, kind=AgentKind.USER)
            fixed.append(agent)
            edges.append(
                make_edge(EdgeKind.ASSOCIATED_WITH, run, agent, role=AssociationRole.LAUNCHER)
            )
        if start.code is not None:
            commit = start.code.commit
            # The commit's id carries the diff's digest: a known commit has its diff stored.
            if start.code.diff is not None and commit.node_id not in self._written:
                self.artifacts.put_bytes(start.code.diff)
            fixed.append(commit)
            edges.append(make_edge(EdgeKind.RAN_CODE, run, commit))
        if start.environment is not None:
            env = start.environment.environment
            # Remote clients upload the package list themselves and send no bytes here.
            if env.node_id not in self._written and start.environment.packages_text:
                self.artifacts.put_bytes(start.environment.packages_text)
            fixed.append(env)
            edges.append(make_edge(EdgeKind.RAN_IN, run, env))
        env_ref = start.environment_id
        if env_ref is not None:
            if start.environment is not None:
                raise ValidationError(
                    "give the environment or its id, not both", field="environment_id"
                )
            env_ref = validate_id(env_ref, "environment_id")
            edges.append(link(EdgeKind.RAN_IN, run.id, NodeKind.RUN, env_ref, NodeKind.ENVIRONMENT))
        new_fixed = [m.to_node() for m in fixed if m.node_id not in self._written]
        with self.store.transaction():
            if env_ref is not None and env_ref not in self._written:
                found = self.store.get_nodes([env_ref])[0]
                if found is None or found.label != NodeKind.ENVIRONMENT.value:
                    raise NotFoundError(f"no environment {env_ref!r}", ids=[env_ref])
            if run.parent is not None:
                parent = self._get(run.parent, NodeKind.RUN, "parent")
                edges.append(Edge(run.id, parent.id, EdgeKind.CHILD_OF.value))
            if self.store.get_nodes([run.id])[0] is not None:
                raise ConflictError(f"run {run.id!r} already exists")
            self.store.upsert_nodes([*new_fixed, run.to_node()])
            self.store.upsert_edges(edges)
            self._audit(
                "run.start",
                run.id,
                {
                    "name": run.name,
                    "kind": _plain(run.kind),
                    "project": run.project,
                    "experiment": run.experiment,
                    "parent": run.parent,
                },
            )
        written = [n.id for n in new_fixed] + ([env_ref] if env_ref is not None else [])
        self.store.after_commit(lambda: self._written.update(written))  # not if rolled back
        return run

    def log_batch(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Sequence[Metric] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Log params, metric points and tags in one transaction, and refresh the heartbeat.

        Params are immutable: a key logged before with another value is a
        :class:`ConflictError` (nothing of the batch is written). Metric points replace the
        point at the same step of the same key."""
        batch = _Batch.check(run_id, params, metrics, tags)
        with self.store.transaction():
            batch.apply(self.store, self._running(run_id), {})
            self._audit("run.log", run_id, batch.summary())

    def end_run(
        self,
        run_id: str,
        status: RunStatus | str = RunStatus.FINISHED,
        error: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Sequence[Metric] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> Run:
        """Finish a run: FINISHED, FAILED (with the error) or KILLED, after a last batch of
        params, metrics and tags, in one transaction. A run ends once."""
        status = member(RunStatus, status, "status")
        if status is RunStatus.RUNNING:
            raise ValidationError("a run cannot end RUNNING", field="status")
        patch: dict[str, Any] = {
            "status": status.value,
            "ended_at": to_iso(datetime.now(timezone.utc)),
        }
        if error is not None:
            patch["error"] = check_text(error[:10_000], "error")
        batch = _Batch.check(run_id, params, metrics, tags)
        with self.store.transaction():
            node = self._running(run_id)
            patch["ended_at"] = _not_before_start(patch["ended_at"], node)
            batch.apply(self.store, node, patch)
            self._audit(
                "run.end",
                run_id,
                {"status": status.value, "error": patch.get("error"), **batch.summary()},
            )
            node = self.store.get_node(run_id)
        return _run(node)

    def get_run(self, run_id: str) -> Run:
        """The run, with a stale RUNNING run recorded as KILLED first."""
        return _run(self.run_node(run_id))

    def run_node(self, run_id: str) -> Node:
        """:meth:`get_run`'s node, as stored (what the GraphQL ``run`` field serves)."""
        node = self._get(run_id, NodeKind.RUN, "run_id")
        if self._is_stale(node):
            self._kill_stale([node])
            node = self.store.get_node(run_id)
        return node

    def mark_stale_runs(self) -> list[str]:
        """Record every RUNNING run whose heartbeat is older than ``stale_after`` as KILLED;
        returns their ids."""
        cutoff = to_iso(datetime.now(timezone.utc) - self.stale_after)
        stale = list(
            self.store.iter_nodes(
                NodeKind.RUN.value, {"status": "RUNNING", "heartbeat_at": {"$lt": cutoff}}
            )
        )
        self._kill_stale(stale)
        return [n.id for n in stale]

    def search_runs(
        self,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Run], str | None]:
        """Runs matching a filter (see :mod:`lineagehub.graph.filters`; e.g.
        ``{"metrics.auc": {"$gte": 0.9}, "project": "churn"}``), ordered, one page.

        Stale RUNNING runs are shown as KILLED; a filter or an order on ``status`` sees them
        so too (they are recorded as KILLED before the query)."""
        if mentions_status(where) or mentions_status(order_by):
            self.mark_stale_runs()
        page = self.store.find_nodes(NodeKind.RUN.value, where, order_by, after, limit)
        return [_run(n) for n in self.refresh_stale(page.items)], page.next_cursor

    def refresh_stale(self, nodes: Sequence[Node]) -> list[Node]:
        """The same run nodes, with any stale RUNNING one recorded (and returned) as KILLED."""
        stale = [n for n in nodes if self._is_stale(n)]
        if not stale:
            return list(nodes)
        self._kill_stale(stale)
        fresh = {n.id: n for n in self.store.get_nodes([n.id for n in stale]) if n}
        return [fresh.get(n.id, n) for n in nodes]

    def metric_history(
        self, run_id: str, key: str, max_points: int | None = None
    ) -> list[SeriesPoint]:
        """One metric's points, by step (downsampled to ``max_points``, spikes kept)."""
        self._get(run_id, NodeKind.RUN, "run_id")
        return self.store.read_series(run_id, key, max_points)

    # --- data, artifacts, models ---------------------------------------------------------------

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
    ) -> DatasetVersion:
        """Record a dataset version the run used (with a role) or, with ``output=True``,
        generated. Its identity is (namespace, name, content digest): logging the same
        content again is idempotent. Files default to OpenLineage's naming
        (``file://<host>``, the absolute path); in-memory data needs a ``name``."""
        namespace, name = dataset_name(fingerprint, name, namespace)
        version = DatasetVersion(
            namespace=namespace,
            name=name,
            description=description,
            **fingerprint.version_fields(),
        )
        dataset = Dataset(namespace=namespace, name=name)
        sources = [str(s) for s in derived_from]
        given = list(sources)
        with self.store.transaction():
            run = self._running(run_id)
            for i, source in enumerate(sources):
                self._get(source, NodeKind.DATASET_VERSION, f"derived_from[{i}]")
            existing = self.store.get_nodes([version.node_id])[0]
            if existing is None:
                if output and run.props.get("project") is not None:  # its first run's project
                    version = version.model_copy(update={"project": run.props["project"]})
                self.store.upsert_nodes([dataset.to_node(), version.to_node()])
            else:
                if existing.props.get("profile") is None:
                    # What is known stays known: a reference (no schema, no profile) or an
                    # unprofiled logging adds what it has and erases nothing.
                    node = version.to_node()
                    props = {k: v for k, v in node.props.items() if v is not None}
                    self.store.upsert_nodes([Node(node.id, node.label, props)])
                    existing = self.store.get_nodes([version.node_id])[0] or existing
                version = DatasetVersion.from_node(existing)
            edges = [make_edge(EdgeKind.VERSION_OF, version, dataset)]
            if output:
                inputs = self._run_data(run.id, Direction.UPSTREAM, EdgeKind.USED)
                edges.append(make_edge(EdgeKind.GENERATED_BY, version, run))
                sources += [i for i in inputs if i != version.node_id]
                edges += [
                    Edge(version.node_id, s, EdgeKind.DERIVED_FROM.value)
                    for s in dict.fromkeys(sources)
                ]
            else:
                outputs = self._run_data(run.id, Direction.DOWNSTREAM, EdgeKind.GENERATED_BY)
                edges.append(make_edge(EdgeKind.USED, run, version, role=role))
                edges += [
                    Edge(o, version.node_id, EdgeKind.DERIVED_FROM.value)
                    for o in outputs
                    if o != version.node_id
                ]
                edges += [
                    Edge(version.node_id, s, EdgeKind.DERIVED_FROM.value)
                    for s in dict.fromkeys(sources)
                ]
            self.store.upsert_edges(edges)
            if output and existing is not None and version.project is None:
                record_projects(self.store, [version.to_node()])  # first generated now?
            self._audit(
                "dataset.log",
                run.id,
                {
                    "version": version.node_id,
                    "namespace": namespace,
                    "name": name,
                    "role": None if output else _plain(role),
                    "output": output,
                    "derived_from": list(dict.fromkeys(given)),
                },
            )
        return version

    def log_input_model(
        self, run_id: str, ref: str, *, role: UsedRole | str = UsedRole.BASE_MODEL
    ) -> ModelVersion:
        """Record that the run USED a registered model version (fine-tuning from it,
        evaluating or distilling it): ``ref`` is any model version reference (``churn@3``,
        ``churn@champion``, ``mv:churn/3``). One edge per version and role: logging the same
        again is idempotent."""
        from lineagehub.services.lineage import LineageService

        used_role = member(UsedRole, role, "role")
        if not isinstance(ref, str) or not ref:
            raise ValidationError("ref must be a model version reference", field="ref")
        with self.store.transaction():
            run = self._running(run_id)
            key = ref if ":" in ref else f"model:{ref}"  # as the registry reads references
            node = LineageService(self.store).resolve_node(key)
            if node.label != NodeKind.MODEL_VERSION.value:
                raise NotFoundError(f"ref: {ref!r} does not name a model version", ids=[ref])
            version = ModelVersion.from_node(node)
            self.store.upsert_edges([make_edge(EdgeKind.USED, run, version, role=used_role)])
            self._audit(
                "model_version.use",
                run.id,
                {
                    "version": version.node_id,
                    "model": version.model,
                    "number": version.version,
                    "role": _plain(used_role),
                },
            )
        return version

    def log_artifact(
        self,
        run_id: str,
        info: ArtifactInfo,
        *,
        name: str,
        kind: ArtifactKind | str = ArtifactKind.OTHER,
        media_type: str = "application/octet-stream",
        data: Mapping[str, Any] | None = None,
    ) -> Artifact:
        """Record that the run generated an artifact already in the artifact store."""
        if not self.artifacts.exists(info.digest):
            raise absent_artifact(info.digest)
        artifact = Artifact(
            digest=info.digest,
            size=info.size,
            media_type=media_type,
            kind=member(ArtifactKind, kind, "kind"),
            data=dict(data) if data is not None else None,
        )
        with self.store.transaction():
            run = self._running(run_id)
            self.store.upsert_nodes([artifact.to_node()])
            self.store.upsert_edges([make_edge(EdgeKind.GENERATED_BY, artifact, run, name=name)])
            self._audit(
                "artifact.log",
                run.id,
                {
                    "artifact": artifact.node_id,
                    "digest": info.digest,
                    "size": info.size,
                    "name": name,
                    "kind": _plain(artifact.kind),
                    "media_type": media_type,
                },
            )
        return artifact

    def artifacts_of(self, run_id: str) -> list[tuple[str, Artifact]]:
        """The artifacts a run generated, with the names they were logged under."""
        self._get(run_id, NodeKind.RUN, "run_id")
        found = self.store.neighbors([run_id], Direction.DOWNSTREAM, ["GENERATED_BY"], ["Artifact"])
        result = []
        for adj in found[run_id]:
            artifact = from_node(adj.node)
            assert isinstance(artifact, Artifact)
            result.append((str(adj.edge.props.get("name", "")), artifact))
        return sorted(result, key=lambda x: x[0])

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
    ) -> ModelVersion:
        """Register the next version of model ``name``, generated by the run, with the run's
        current metrics as its snapshot. Version numbers never repeat, also when several
        processes register at once (the allocation happens under the model's write lock).

        ``primary_metric`` names the version's headline metric (kept as its
        ``primary_metric`` tag); the run's own ``primary_metric`` tag, which adapters set,
        is kept as ``run_primary_metric`` (see :mod:`lineagehub.services.headline`).

        ``metadata``: how to load it back (:mod:`lineagehub.ingest.flavors`); each of
        ``custom_objects`` (``name``, ``module``, ``qualname``, ``kind``, ``source``) becomes
        an ``Artifact`` of kind ``source-code`` holding the source (stored, and as data) that
        the version is ``DERIVED_FROM``."""
        return self._register(
            info,
            name=name,
            run_id=run_id,
            finished_ok=False,
            flavor=flavor,
            signature=signature,
            description=description,
            primary_metric=primary_metric,
            metadata=metadata,
            custom_objects=custom_objects,
        )

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
    ) -> ModelVersion:
        """Register the next version of model ``name`` from an artifact already in the
        artifact store (as MLflow's ``create_model_version(source=...)``): ``GENERATED_BY``
        the run ``run_id`` when given (a finished run too: its output registered later, with
        its metrics as the snapshot), else by no run. Numbering, audit entry
        (``model_version.create``) and webhook as :meth:`log_model`."""
        return self._register(
            info,
            name=name,
            run_id=run_id,
            finished_ok=True,
            flavor=flavor,
            signature=signature,
            description=description,
            primary_metric=primary_metric,
            metadata=metadata,
            custom_objects=custom_objects,
        )

    def _custom_objects(self, objects: Sequence[Mapping[str, Any]]) -> list[Artifact]:
        """The source artifacts of a model's custom objects, stored (checked first)."""
        if isinstance(objects, (str, bytes, Mapping)) or not isinstance(objects, Sequence):
            raise ValidationError("custom_objects must be a list", field="custom_objects")
        checked = []
        for i, obj in enumerate(objects):
            field = f"custom_objects[{i}]"
            if not isinstance(obj, Mapping):
                raise ValidationError(f"{field} must be an object", field=field)
            entry: dict[str, Any] = {}
            for key in ("name", "module", "qualname", "kind", "source"):
                value = obj.get(key)
                if not isinstance(value, str) or not value:
                    raise ValidationError(f"{field}.{key} must be a non-empty string", field=field)
                entry[key] = value
            if entry["kind"] not in ("class", "function"):
                raise ValidationError(f"{field}.kind must be class or function", field=field)
            if len(entry["source"]) > MAX_CUSTOM_SOURCE:
                raise ValidationError(
                    f"{field}.source is longer than {MAX_CUSTOM_SOURCE} characters", field=field
                )
            checked.append(entry)
        found = []
        for entry in checked:
            info = self.artifacts.put_bytes(entry["source"].encode())
            found.append(
                Artifact(
                    digest=info.digest,
                    size=info.size,
                    media_type="text/x-python",
                    kind=ArtifactKind.SOURCE_CODE,
                    data=entry,
                )
            )
        return found

    def _register(
        self,
        info: ArtifactInfo,
        *,
        name: str,
        run_id: str | None,
        finished_ok: bool,
        flavor: str | None,
        signature: Mapping[str, Any] | None,
        description: str | None,
        primary_metric: str | None,
        metadata: Mapping[str, Any] | None = None,
        custom_objects: Sequence[Mapping[str, Any]] | None = None,
    ) -> ModelVersion:
        if primary_metric is not None:
            check_key(primary_metric, "primary_metric")
        sources = self._custom_objects(custom_objects or ())
        if not self.artifacts.exists(info.digest):
            raise absent_artifact(info.digest)
        model = Model(name=name)
        name = model.name  # as validated (surrounding whitespace gone): the one name stored
        artifact = Artifact(digest=info.digest, size=info.size, kind=ArtifactKind.MODEL)
        with self._events.transaction():
            run: Run | None = None
            if run_id is not None or not finished_ok:
                run_node = (
                    self._user_run(str(run_id)) if finished_ok else self._running(str(run_id))
                )
                run = _run(run_node)
            project = run.project if run is not None else None
            existing, stored = self.store.get_nodes([model.node_id, artifact.node_id])
            # Writing the model node first takes its write lock (SQLite: the transaction's;
            # Neo4j: the node's) before the latest version is read.
            self.store.upsert_nodes([Node(model.node_id, NodeKind.MODEL.value, {"name": name})])
            if existing is None:
                self.store.upsert_nodes([model.to_node()])
            latest = self.store.find_nodes(
                NodeKind.MODEL_VERSION.value, {"model": name}, order_by="-version", limit=1
            ).items
            number = int(latest[0].props["version"]) + 1 if latest else 1
            if number == 1 and project is not None:  # a model is in its first version's project
                self.store.upsert_nodes(
                    [Node(model.node_id, model.node_kind.value, {"project": project})]
                )
            tags = {}
            if primary_metric is not None:
                tags[PRIMARY_METRIC_TAG] = primary_metric
            if run is not None and run.tags.get(PRIMARY_METRIC_TAG):
                tags[RUN_PRIMARY_METRIC_TAG] = run.tags[PRIMARY_METRIC_TAG]
            metrics = run.metrics if run is not None else {}
            version = ModelVersion(
                model=name,
                version=number,
                artifact_digest=info.digest,
                flavor=flavor,
                signature=dict(signature) if signature is not None else None,
                metadata=dict(metadata) if metadata is not None else None,
                metrics={k: v for k, v in metrics.items() if v is not None},
                description=description,
                tags=tags,
                project=project,
            )
            # an artifact already logged (a folder: its media type says it unpacks) keeps what
            # it was recorded as; registering it as a version adds the version, not a new kind
            fresh = [artifact.to_node()] if stored is None else []
            self.store.upsert_nodes([*fresh, version.to_node(), *(a.to_node() for a in sources)])
            edges = [make_edge(EdgeKind.VERSION_OF, version, model)]
            edges += [make_edge(EdgeKind.DERIVED_FROM, version, a) for a in sources]
            if run is not None:
                edges = [
                    make_edge(EdgeKind.GENERATED_BY, version, run),
                    *edges,
                    make_edge(EdgeKind.GENERATED_BY, artifact, run, name=f"model:{name}"),
                ]
            self.store.upsert_edges(edges)
            run_ref = run.id if run is not None else None
            self._audit(
                "model_version.create",
                version.node_id,
                {
                    "model": name,
                    "version": number,
                    "run": run_ref,
                    "artifact_digest": info.digest,
                    "flavor": flavor,
                },
            )
            self._events.emit(
                WebhookEvent.MODEL_VERSION_CREATED,
                {
                    "version_id": version.node_id,
                    "model": name,
                    "version": number,
                    "run_id": run_ref,
                    "artifact_digest": info.digest,
                    "flavor": flavor,
                    "actor": self.actor,
                    "reason": description,
                },
            )
        return version

    # --- helpers ------------------------------------------------------------------------------

    def _audit(self, action: str, target: str, payload: Mapping[str, Any]) -> None:
        """One audit entry, inside the caller's write transaction; the actor is an Agent node
        of the graph too (written once per service)."""
        agent_id = _agent_id(self.actor)
        if agent_id not in self._written:
            agent = Agent(name=self.actor[:256], kind=AgentKind.USER)
            self.store.upsert_nodes([agent.to_node()])
            self.store.after_commit(lambda: self._written.add(agent_id))
        self.store.append_audit(self.actor, action, target, payload)

    def _get(self, node_id: str, kind: NodeKind, field: str) -> Node:
        node = self.store.get_nodes([node_id])[0]
        if node is None:
            raise NotFoundError(f"{field}: no {kind.value} with id {node_id!r}", ids=[node_id])
        if node.label != kind.value:
            raise ValidationError(
                f"{field}: {node_id!r} is a {node.label}, not a {kind.value}", field=field
            )
        return node

    def _user_run(self, run_id: str) -> Node:
        """The run ``run_id``, unless it is one of the registry's own records (a promotion, a
        request, a deployment: :data:`REGISTRY_RUN_KINDS`), which only the registry writes."""
        node = self._get(run_id, NodeKind.RUN, "run_id")
        kind = node.props.get("kind")
        if kind in REGISTRY_RUN_KINDS:
            raise ConflictError(
                f"run {run_id!r} is one of the registry's own records (kind {kind!r}); "
                "only the registry writes it"
            )
        return node

    def _running(self, run_id: str) -> Node:
        node = self._user_run(run_id)
        status = node.props.get("status")
        if status != RunStatus.RUNNING.value:
            raise ConflictError(
                f"run {run_id!r} is {status}; writes to a finished run are rejected"
            )
        return node

    def _is_stale(self, node: Node) -> bool:
        if node.props.get("status") != RunStatus.RUNNING.value:
            return False
        beat = node.props.get("heartbeat_at")
        cutoff = to_iso(datetime.now(timezone.utc) - self.stale_after)
        return isinstance(beat, str) and beat < cutoff

    def _kill_stale(self, nodes: Sequence[Node]) -> None:
        if not nodes:
            return
        patch = {
            "status": RunStatus.KILLED.value,
            "error": f"no heartbeat for {self.stale_after}: the process died",
        }
        with self.store.transaction():
            current = self.store.get_nodes([n.id for n in nodes])
            still = [n for n in current if n is not None and self._is_stale(n)]
            self.store.upsert_nodes(
                [
                    Node(
                        n.id,
                        n.label,
                        {**patch, "ended_at": _not_before_start(n.props.get("heartbeat_at"), n)},
                    )
                    for n in still
                ]
            )
            for n in still:
                self._audit(
                    "run.killed",
                    n.id,
                    {
                        "status": patch["status"],
                        "error": patch["error"],
                        "heartbeat_at": n.props.get("heartbeat_at"),
                    },
                )

    def _run_data(self, run_id: str, direction: Direction, kind: EdgeKind) -> list[str]:
        """The dataset versions a run used (UPSTREAM, USED) or generated (DOWNSTREAM,
        GENERATED_BY) so far: one direction, one query."""
        found = self.store.neighbors([run_id], direction, [kind.value], ["DatasetVersion"])
        return [a.node.id for a in found[run_id]]


@dataclass(slots=True)
class _Batch:
    """A checked batch of params, metric points and tags for one run."""

    run_id: str
    params: dict[str, Any]
    tags: dict[str, str]
    points: list[SeriesPoint]
    last: dict[str, float | None]
    counts: dict[str, int]
    steps: dict[str, int]  # the step of each value in ``last``: the batch's highest

    @classmethod
    def check(
        cls,
        run_id: str,
        params: Mapping[str, Any] | None,
        metrics: Sequence[Metric] | None,
        tags: Mapping[str, Any] | None,
    ) -> _Batch:
        checked_params = {
            k: check_scalar(v, f"params.{check_key(k, 'params')}")
            for k, v in (params or {}).items()
        }
        checked_tags = {
            k: check_text(v, f"tags.{check_key(k, 'tags')}") for k, v in (tags or {}).items()
        }
        metrics = metrics or ()
        if len(metrics) > MAX_BATCH_POINTS:
            raise ValidationError(
                f"a batch holds at most {MAX_BATCH_POINTS} metric points", field="metrics"
            )
        steps: dict[str, int] = {}
        last: dict[str, float | None] = {}
        counts: dict[str, int] = {}
        points = []
        keys: set[str] = set()  # a run has a handful of keys and thousands of points
        for m in metrics:
            if m.key not in keys:
                check_key(m.key, f"metrics.{m.key}")
                keys.add(m.key)
            value = _metric_value(m)
            points.append(SeriesPoint(run_id, m.key, m.step, value, m.timestamp))
            counts[m.key] = counts.get(m.key, 0) + 1
            if m.key not in steps or m.step >= steps[m.key]:
                steps[m.key] = m.step
                last[m.key] = value if math.isfinite(value) else None
        return cls(run_id, checked_params, checked_tags, points, last, counts, steps)

    def summary(self) -> dict[str, Any]:
        """What the audit log records of the batch: the params and tags themselves, and per
        metric key its point count and last value (not every point)."""
        return {
            "counts": {
                "params": len(self.params),
                "metrics": len(self.points),
                "tags": len(self.tags),
            },
            "params": self.params,
            "tags": self.tags,
            "metrics": {k: {"points": n, "last": self.last[k]} for k, n in self.counts.items()},
        }

    def apply(self, store: GraphStore, node: Node, patch: dict[str, Any]) -> None:
        """Write the batch (and ``patch``) onto the run ``node``, inside a transaction."""
        logged = node.props.get("params", {})
        for key, value in self.params.items():
            if key in logged and not same_param(logged[key], value):
                raise ConflictError(
                    f"param {key!r} of run {self.run_id!r} is {logged[key]!r}; params are "
                    f"immutable, cannot log {value!r}"
                )
        patch = {"heartbeat_at": to_iso(datetime.now(timezone.utc)), **patch}
        if self.params:
            patch["params"] = self.params
        if self.tags:
            patch["tags"] = self.tags
        if self.last:
            # the latest value of a key is the one at its highest step: a batch whose points
            # all lie below a step stored before (steps logged out of order, flushed apart)
            # leaves it (read only for keys the run holds a value of: not on a first log)
            held = [k for k in self.last if k in (node.props.get("metrics") or {})]
            stored = store.last_steps(self.run_id, held) if held else {}
            newer = {
                k: v for k, v in self.last.items() if k not in stored or self.steps[k] >= stored[k]
            }
            if newer:
                patch["metrics"] = newer
        store.upsert_nodes([Node(self.run_id, NodeKind.RUN.value, patch)])
        if self.points:
            store.append_series(self.points)


def default_actor() -> str:
    """The actor a service records when none is given: ``LINEAGEHUB_USER``, else the OS
    user."""
    from lineagehub.config import Settings

    try:
        user = Settings().user
    except Exception:  # a broken environment elsewhere must not stop tracking
        user = None
    if user:
        return user
    try:
        return getpass.getuser() or UNKNOWN_ACTOR
    except Exception:  # no login name (some containers)
        return UNKNOWN_ACTOR


def _plain(value: Any) -> Any:
    """An enum's value, anything else as is (for audit payloads)."""
    return getattr(value, "value", value)


@functools.lru_cache(maxsize=256)
def _agent_id(actor: str) -> str:
    """The id of the Agent node that stands for ``actor`` in the graph (a validated model
    each time was a few per cent of a structure write)."""
    return Agent(name=actor[:256], kind=AgentKind.USER).node_id


def _run(node: Node) -> Run:
    run = from_node(node)
    assert isinstance(run, Run)
    return run


def _not_before_start(ended_at: Any, run: Node) -> Any:
    """``ended_at`` (stored text), or the run's start where that is later: a start a little
    ahead of the hub's clock (:data:`START_AHEAD`), or one stored before it was checked."""
    started = run.props.get("started_at")
    if isinstance(ended_at, str) and isinstance(started, str) and ended_at < started:
        return started
    return ended_at


def dataset_name(
    fp: DatasetFingerprint, name: str | None, namespace: str | None
) -> tuple[str, str]:
    if fp.uri and fp.uri.startswith("file://"):
        path = unquote(urlsplit(fp.uri).path)
        return namespace or f"file://{socket.gethostname()}", name or path
    if not name:
        raise ValidationError(
            f"name: in-memory data ({fp.source}) needs a dataset name", field="name"
        )
    return namespace or "memory", name


__all__ = ["Metric", "RunKind", "RunStart", "TrackingService", "check_metric"]
