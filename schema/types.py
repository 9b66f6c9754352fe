"""GraphQL types for every node kind, with their relationships as fields.

Each object wraps one graph :class:`~lineagehub.graph.Node`: scalar facts are fields read from
its properties; relationships (``run.inputs``, ``modelVersion.trainedBy``,
``deployment.serves``...) resolve through the request's dataloaders.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar, cast, get_args

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from lineagehub.graph import Adjacent, Direction, Edge, IntegrityError, Node
from lineagehub.graph.model import from_iso
from lineagehub.schema.context import Context
from lineagehub.schema.scalars import MetricValue
from lineagehub.vocabulary import EdgeKind, NodeKind

if TYPE_CHECKING:
    from lineagehub.schema.monitoring import AlertLineage, MonitoringSummary

I = Info[Context, None]  # noqa: E741


# The vocabulary's own enums, registered as GraphQL enums (one definition of the kinds).
strawberry.enum(NodeKind, name="NodeKind")
strawberry.enum(EdgeKind, name="EdgeKind")
LineageDirection = strawberry.enum(Direction, name="Direction")


def _json(value: Any) -> JSON:
    return cast(JSON, value)


def prop(
    key: str,
    typ: Any,
    *,
    name: str | None = None,
    description: str | None = None,
    default: Any = None,
) -> Any:
    """A field that reads one property of the node (``default`` when it is absent). A
    non-null field without a default whose property is missing (a node written around the
    vocabulary, e.g. straight into the graph store) is an INTEGRITY error naming the node and
    the property, not an unexplained INTERNAL one."""
    required = default is None and type(None) not in get_args(typ)

    def resolver(root: NodeInterface) -> Any:
        value = root.raw.props.get(key)
        if value is None:
            if required:
                raise IntegrityError(
                    f"{root.raw.label} {root.raw.id!r} has no {key!r} property, which the "
                    "vocabulary requires (was it written around the hub?)"
                )
            return default
        return value

    resolver.__annotations__ = {"root": NodeInterface, "return": typ}
    return strawberry.field(resolver=resolver, name=name, description=description)


def _time(value: Any) -> datetime | None:
    return from_iso(value) if isinstance(value, str) else None


@strawberry.interface(name="Node", description="A node of the lineage graph.")
class NodeInterface:
    # Plain attributes, not resolvers: a lineage answer carries thousands of nodes, and
    # attribute fields skip strawberry's per-field resolver machinery.
    raw: strawberry.Private[Node]
    id: strawberry.ID
    kind: NodeKind | None
    created_at: datetime | None
    updated_at: datetime | None
    properties: JSON = strawberry.field(description="Every property, as stored.")
    tags: JSON

    def _p(self, key: str) -> Any:
        return self.raw.props.get(key)


@strawberry.type(description="An edge with its provenance.")
class LineageEdge:
    raw: strawberry.Private[Edge]
    id: strawberry.ID
    source: strawberry.ID
    target: strawberry.ID
    kind: EdgeKind
    event_time: datetime | None = strawberry.field(description="When it happened.")
    ingested_at: datetime | None = strawberry.field(description="When the hub learned it.")
    asserted_by: str | None = strawberry.field(description="Who asserted it.")
    role: str | None
    properties: JSON


def edge_of(e: Edge) -> LineageEdge:
    role = e.props.get("role")
    return LineageEdge(
        raw=e,
        id=strawberry.ID(e.id),
        source=strawberry.ID(e.source),
        target=strawberry.ID(e.target),
        kind=EdgeKind(e.kind),
        event_time=e.event_time,
        ingested_at=e.ingested_at,
        asserted_by=e.asserted_by,
        role=str(role) if role is not None else None,
        properties=_json(e.props),
    )


@strawberry.type
class Link:
    """A neighbour: the node at the other end of an edge, and the edge."""

    node: NodeInterface
    edge: LineageEdge


_KINDS = {k.value: k for k in NodeKind}


def wrap(node: Node) -> NodeInterface:
    """The GraphQL object for a graph node, by its label."""
    cls = TYPES.get(node.label, GenericNode)
    return cls(
        raw=node,
        id=strawberry.ID(node.id),
        kind=_KINDS.get(node.label),
        created_at=node.created_at,
        updated_at=node.updated_at,
        properties=_json(node.props),
        tags=_json(node.props.get("tags", {})),
    )


async def _links(
    info: I,
    node_id: str,
    direction: Direction,
    kinds: list[str],
    labels: list[str] | None = None,
) -> list[Adjacent]:
    return await info.context.neighbours(node_id, direction, kinds, labels)


T = TypeVar("T", bound=NodeInterface)


def wrap_as(node: Node, cls: type[T]) -> T:
    """:func:`wrap`, checked to be a ``cls`` (a resolver's declared type)."""
    obj = wrap(node)
    if not isinstance(obj, cls):
        raise TypeError(f"{node.id} is a {node.label}, not a {cls.__name__}")
    return obj


async def _one(
    info: I,
    node_id: str,
    direction: Direction,
    kind: str,
    cls: type[T],
    labels: list[str] | None = None,
) -> T | None:
    """The first neighbour over ``kind`` edges that is a ``cls`` (``None`` if there is none)."""
    found = await _many(info, node_id, direction, kind, cls, labels)
    return found[0] if found else None


async def _many(
    info: I,
    node_id: str,
    direction: Direction,
    kind: str,
    cls: type[T],
    labels: list[str] | None = None,
) -> list[T]:
    """The neighbours over ``kind`` edges that are ``cls`` objects. The vocabulary's edge rules
    fix the label at the other end; a node of another label (written around the services)
    is left out rather than served under the wrong type."""
    found = (wrap(a.node) for a in await _links(info, node_id, direction, [kind], labels))
    return [obj for obj in found if isinstance(obj, cls)]


def _link(a: Adjacent) -> Link:
    return Link(node=wrap(a.node), edge=edge_of(a.edge))


UP, DOWN = Direction.UPSTREAM, Direction.DOWNSTREAM


@strawberry.type
class GenericNode(NodeInterface):
    """A node of a label this API has no dedicated type for."""


@strawberry.type
class MetricSummary:
    key: str
    last: MetricValue
    last_step: int
    min: MetricValue
    max: MetricValue
    count: int


@strawberry.type(
    description="The one metric that stands for a run or a model version, chosen by the rule "
    "of lineagehub.services.headline: the registration's choice, a metric the promotion policy names, "
    "the adapter's primary evaluation metric, else common names (test_/val_ first)."
)
class HeadlineMetric:
    key: str
    value: float


def _headline(info: I, props: dict[str, Any], model: str | None) -> HeadlineMetric | None:
    from lineagehub.services.headline import headline_metric, policy_metrics

    registry = getattr(info.context.services, "registry", None)
    policies = getattr(registry, "policies", None) or {}
    found = headline_metric(props, policy_metrics(policies, model))
    return HeadlineMetric(key=found[0], value=found[1]) if found is not None else None


@strawberry.type
class MetricPoint:
    step: int
    value: MetricValue
    timestamp: datetime | None


@strawberry.type
class Project(NodeInterface):
    name = prop("name", str)
    owner = prop("owner", str | None)
    description = prop("description", str | None)

    @strawberry.field
    async def experiments(self, info: I) -> list[Experiment]:
        return await _many(info, self.raw.id, DOWN, "PART_OF", Experiment, ["Experiment"])


@strawberry.type
class Experiment(NodeInterface):
    name = prop("name", str)
    owner = prop("owner", str | None)

    @strawberry.field
    async def project(self, info: I) -> Project | None:
        return await _one(info, self.raw.id, UP, "PART_OF", Project, ["Project"])

    @strawberry.field
    async def runs(self, info: I) -> list[Run]:
        return await _many(info, self.raw.id, DOWN, "PART_OF", Run, ["Run"])


@strawberry.type
class Run(NodeInterface):
    name = prop("name", str)
    run_kind = prop("kind", str, name="runKind")
    status = prop("status", str)

    @strawberry.field
    def started_at(self) -> datetime | None:
        return _time(self._p("started_at"))

    @strawberry.field
    def ended_at(self) -> datetime | None:
        return _time(self._p("ended_at"))

    params = prop("params", JSON, description="Typed values, not strings.", default={})

    @strawberry.field(description="The last value per metric key (null for NaN or infinite).")
    def last_metrics(self) -> JSON:
        return _json(self._p("metrics") or {})

    @strawberry.field(description="The run's headline metric (see HeadlineMetric).")
    def headline_metric(self, info: I) -> HeadlineMetric | None:
        return _headline(info, self.raw.props, None)

    user = prop("user", str | None)
    host = prop("host", str | None)
    entry_point = prop("entry_point", str | None)
    error = prop("error", str | None)
    project_name = prop("project", str | None)
    experiment_name = prop("experiment", str | None)

    @strawberry.field(description="Last, min, max and count per metric key.")
    async def metrics(self, info: I) -> list[MetricSummary]:
        summaries = await info.context.summaries.load(self.raw.id)
        return [
            MetricSummary(
                key=s.key,
                last=MetricValue(s.last),
                last_step=s.last_step,
                min=MetricValue(s.min),
                max=MetricValue(s.max),
                count=s.count,
            )
            for s in sorted(summaries.values(), key=lambda s: s.key)
        ]

    @strawberry.field(
        description="One metric's points by step, downsampled to maxPoints (null: every point)."
    )
    async def metric_series(
        self, info: I, key: str, max_points: int | None = 500
    ) -> list[MetricPoint]:
        points = await info.context.call(
            info.context.store.read_series, self.raw.id, key, max_points
        )
        return [
            MetricPoint(step=p.step, value=MetricValue(p.value), timestamp=p.timestamp)
            for p in points
        ]

    @strawberry.field(description="Data, models and artifacts the run used, with their role.")
    async def inputs(self, info: I) -> list[Link]:
        return [_link(a) for a in await _links(info, self.raw.id, UP, ["USED"])]

    @strawberry.field(description="What the run generated.")
    async def outputs(self, info: I) -> list[Link]:
        return [_link(a) for a in await _links(info, self.raw.id, DOWN, ["GENERATED_BY"])]

    @strawberry.field
    async def code(self, info: I) -> CodeCommit | None:
        return await _one(info, self.raw.id, UP, "RAN_CODE", CodeCommit)

    @strawberry.field
    async def environment(self, info: I) -> Environment | None:
        return await _one(info, self.raw.id, UP, "RAN_IN", Environment)

    @strawberry.field
    async def parent(self, info: I) -> Run | None:
        return await _one(info, self.raw.id, UP, "CHILD_OF", Run)

    @strawberry.field
    async def children(self, info: I) -> list[Run]:
        return await _many(info, self.raw.id, DOWN, "CHILD_OF", Run)

    @strawberry.field
    async def experiment(self, info: I) -> Experiment | None:
        return await _one(info, self.raw.id, UP, "PART_OF", Experiment, ["Experiment"])

    @strawberry.field(description="Agents associated with the run (launcher, approvers...).")
    async def agents(self, info: I) -> list[Link]:
        return [_link(a) for a in await _links(info, self.raw.id, UP, ["ASSOCIATED_WITH"])]

    @strawberry.field(description="Artifacts the run generated; evaluations carry their data.")
    async def evaluations(self, info: I) -> list[Link]:
        found = await _links(info, self.raw.id, DOWN, ["GENERATED_BY"], ["Artifact"])
        return [_link(a) for a in found]


@strawberry.type
class Dataset(NodeInterface):
    namespace = prop("namespace", str)
    name = prop("name", str)

    @strawberry.field
    async def versions(self, info: I) -> list[DatasetVersion]:
        found = await _many(info, self.raw.id, DOWN, "VERSION_OF", DatasetVersion)
        return sorted(found, key=lambda n: n.raw.created_at or 0, reverse=True)


@strawberry.type
class DatasetVersion(NodeInterface):
    namespace = prop("namespace", str)
    name = prop("name", str)
    digest = prop("digest", str)
    uri = prop("uri", str | None)
    columns = prop(
        "columns",
        JSON | None,
        name="schema",
        description="Columns and their types (null when not recorded: data logged by reference).",
    )
    row_count = prop("row_count", int | None)
    profile = prop(
        "profile",
        JSON | None,
        description="Column profile: the drift reference (null when not computed).",
    )

    @strawberry.field
    async def dataset(self, info: I) -> Dataset | None:
        return await _one(info, self.raw.id, UP, "VERSION_OF", Dataset)

    @strawberry.field
    async def generated_by(self, info: I) -> Run | None:
        return await _one(info, self.raw.id, UP, "GENERATED_BY", Run)

    @strawberry.field
    async def used_by(self, info: I) -> list[Link]:
        return [_link(a) for a in await _links(info, self.raw.id, DOWN, ["USED"])]

    @strawberry.field
    async def derived_from(self, info: I) -> list[DatasetVersion]:
        return await _many(
            info, self.raw.id, UP, "DERIVED_FROM", DatasetVersion, ["DatasetVersion"]
        )

    @strawberry.field
    async def derivatives(self, info: I) -> list[DatasetVersion]:
        return await _many(
            info, self.raw.id, DOWN, "DERIVED_FROM", DatasetVersion, ["DatasetVersion"]
        )


@strawberry.type
class CodeCommit(NodeInterface):
    repo = prop("repo", str)
    sha = prop("sha", str)
    branch = prop("branch", str | None)
    dirty = prop("dirty", bool, default=False)
    diff_digest = prop("diff_digest", str | None)

    @strawberry.field
    async def runs(self, info: I) -> list[Run]:
        return await _many(info, self.raw.id, DOWN, "RAN_CODE", Run)


@strawberry.type
class Environment(NodeInterface):
    python = prop("python", str)
    platform = prop("platform", str)
    packages_digest = prop("packages_digest", str)
    packages = prop("packages", JSON | None, description="Installed packages (null: not captured).")


@strawberry.type
class Artifact(NodeInterface):
    digest = prop("digest", str)

    @strawberry.field
    def size(self) -> float:
        return float(self._p("size") or 0)

    media_type = prop("media_type", str)
    artifact_kind = prop("kind", str, name="artifactKind")

    @strawberry.field(
        description="Evaluation results as data (confusion matrix, curves...); null for other "
        "artifacts."
    )
    def data(self) -> JSON | None:
        return cast("JSON | None", self._p("data"))

    @strawberry.field(description="Where to download it: GET this path on the server.")
    def download_path(self) -> str:
        return f"/artifacts/{self._p('digest')}"

    @strawberry.field
    async def generated_by(self, info: I) -> list[Link]:
        return [_link(a) for a in await _links(info, self.raw.id, UP, ["GENERATED_BY"])]


@strawberry.type
class Model(NodeInterface):
    name = prop("name", str)
    owner = prop("owner", str | None)
    description = prop("description", str | None)

    @strawberry.field(description="Newest first.")
    async def versions(self, info: I) -> list[ModelVersion]:
        found = await _many(info, self.raw.id, DOWN, "VERSION_OF", ModelVersion)
        ordered = sorted(found, key=lambda n: n.raw.props.get("version", 0), reverse=True)
        return ordered


@strawberry.type
class ModelVersion(NodeInterface):
    model_name = prop("model", str)

    @strawberry.field
    def version(self) -> int:
        return int(self._p("version"))

    artifact_digest = prop("artifact_digest", str)
    flavor = prop("flavor", str | None)
    signature = prop("signature", JSON | None, description="Inputs and outputs (null: none given).")
    metadata = prop(
        "metadata",
        JSON | None,
        description="How to load it back: the flavor's metadata (data), layout, training "
        "environment (python, platform, framework package versions) and custom objects; null "
        "for a version stored as a file or a directory.",
    )

    @strawberry.field(
        description="The source of the user-defined classes and functions the model needs "
        "(the source-code artifacts it is DERIVED_FROM), by module and name."
    )
    async def custom_objects(self, info: I) -> list[CustomObject]:
        found = await _many(
            info, self.raw.id, UP, "DERIVED_FROM", Artifact, [NodeKind.ARTIFACT.value]
        )
        objects = [_custom_object(a.raw.props) for a in found]
        return sorted((o for o in objects if o is not None), key=lambda o: (o.module, o.qualname))

    metrics = prop(
        "metrics",
        JSON,
        description="The metrics of the producing run when it was registered.",
        default={},
    )

    @strawberry.field(description="The version's headline metric (see HeadlineMetric).")
    def headline_metric(self, info: I) -> HeadlineMetric | None:
        return _headline(info, self.raw.props, self._p("model"))

    stage = prop("stage", str | None)

    @strawberry.field
    def aliases(self) -> list[str]:
        return list(self._p("aliases") or [])

    @strawberry.field
    async def model(self, info: I) -> Model | None:
        return await _one(info, self.raw.id, UP, "VERSION_OF", Model)

    @strawberry.field
    async def trained_by(self, info: I) -> Run | None:
        return await _one(info, self.raw.id, UP, "GENERATED_BY", Run)

    @strawberry.field
    async def deployments(self, info: I) -> list[Link]:
        return [_link(a) for a in await _links(info, self.raw.id, DOWN, ["SERVES"])]

    @strawberry.field
    async def used_by(self, info: I) -> list[Link]:
        return [_link(a) for a in await _links(info, self.raw.id, DOWN, ["USED"])]


@strawberry.type(description="A user-defined class or function a model needs, with its source.")
class CustomObject:
    name: str
    module: str
    qualname: str
    kind: str = strawberry.field(description="class or function")
    digest: str = strawberry.field(description="sha256 of the source (UTF-8): its artifact")
    source: str | None = strawberry.field(
        description="The source text (absent when too long to keep as data: download it)"
    )


def _custom_object(props: Mapping[str, Any]) -> CustomObject | None:
    data = props.get("data")
    if props.get("kind") != "source-code" or not isinstance(data, Mapping):
        return None
    return CustomObject(
        name=str(data.get("name", "")),
        module=str(data.get("module", "")),
        qualname=str(data.get("qualname", "")),
        kind=str(data.get("kind", "")),
        digest=str(props.get("digest", "")),
        source=data.get("source") if isinstance(data.get("source"), str) else None,
    )


@strawberry.type
class Deployment(NodeInterface):
    name = prop("name", str | None)
    environment = prop("environment", str)
    endpoint = prop("endpoint", str | None)
    status = prop("status", str)
    require_stage = prop(
        "require_stage",
        str | None,
        description="The stage its version must be in (recordDeployment's requireStage): "
        "stage changes that would break it are refused, or retire or re-point it.",
    )

    @strawberry.field(description="The versions it serves, with valid_from / valid_to.")
    async def serves(self, info: I) -> list[Link]:
        return [_link(a) for a in await _links(info, self.raw.id, UP, ["SERVES"])]

    @strawberry.field
    async def windows(self, info: I) -> list[MonitoringWindow]:
        return await _many(info, self.raw.id, DOWN, "OBSERVED", MonitoringWindow)

    @strawberry.field
    async def alerts(self, info: I) -> list[Alert]:
        return await _many(info, self.raw.id, DOWN, "ABOUT", Alert)

    @strawberry.field(
        description="Its monitoring windows that start in [from, to), with drift and "
        "performance of their merged sketches."
    )
    async def monitoring(
        self,
        info: I,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
    ) -> Annotated[MonitoringSummary, strawberry.lazy("lineagehub.schema.monitoring")]:
        from lineagehub.schema.monitoring import monitoring_summary

        return await monitoring_summary(info, self.raw.id, from_, to)


@strawberry.type
class MonitoringWindow(NodeInterface):
    @strawberry.field
    def start(self) -> datetime | None:
        return _time(self._p("start"))

    @strawberry.field
    def end(self) -> datetime | None:
        return _time(self._p("end"))

    metrics = prop("metrics", JSON, default={})
    feature_stats = prop("feature_stats", JSON, default={})
    sample_count = prop("sample_count", int | None)
    instance = prop("instance", str | None, description="The serving process that observed it.")
    model_version_id = prop(
        "model_version", str | None, name="modelVersionId", description="The version served."
    )
    reference = prop(
        "reference", str | None, description="The drift reference (a dataset version)."
    )
    drift = prop("drift", JSON | None, description="Per feature: the drift of this window.")
    performance = prop("performance", JSON | None, description="Live performance, with labels.")

    @strawberry.field
    async def deployment(self, info: I) -> Deployment | None:
        return await _one(info, self.raw.id, UP, "OBSERVED", Deployment)


@strawberry.type
class Alert(NodeInterface):
    rule = prop("rule", str)
    severity = prop("severity", str)
    state = prop("state", str)
    values = prop("values", JSON, default={})
    message = prop("message", str | None)

    fingerprint = prop(
        "fingerprint", str | None, description="Firings of one rule on one deployment share it."
    )
    source = prop("source", str | None, description="rule (a hub rule) or alertmanager.")
    labels = prop("labels", JSON, default={})
    annotations = prop("annotations", JSON, default={})
    deployment_id = prop("deployment", str | None, name="deploymentId")
    acknowledged_by = prop("acknowledged_by", str | None)

    @strawberry.field
    def fired_at(self) -> datetime | None:
        return _time(self._p("fired_at"))

    @strawberry.field
    def resolved_at(self) -> datetime | None:
        return _time(self._p("resolved_at"))

    @strawberry.field
    def silenced_until(self) -> datetime | None:
        return _time(self._p("silenced_until"))

    @strawberry.field
    async def about(self, info: I) -> list[NodeInterface]:
        return await _many(info, self.raw.id, UP, "ABOUT", NodeInterface)

    @strawberry.field(
        description="This alert -> the deployment, the version it served, the run that trained "
        "it, its training data and code commit, in one query."
    )
    async def lineage(
        self, info: I
    ) -> Annotated[AlertLineage, strawberry.lazy("lineagehub.schema.monitoring")]:
        from lineagehub.schema.monitoring import alert_lineage

        return await alert_lineage(info, self.raw.id)


@strawberry.type
class Agent(NodeInterface):
    name = prop("name", str)
    agent_kind = prop("kind", str, name="agentKind")


TYPES: dict[str, type[NodeInterface]] = {
    "Project": Project,
    "Experiment": Experiment,
    "Run": Run,
    "Dataset": Dataset,
    "DatasetVersion": DatasetVersion,
    "CodeCommit": CodeCommit,
    "Environment": Environment,
    "Artifact": Artifact,
    "Model": Model,
    "ModelVersion": ModelVersion,
    "Deployment": Deployment,
    "MonitoringWindow": MonitoringWindow,
    "Alert": Alert,
    "Agent": Agent,
}
ALL_TYPES: list[type] = [*TYPES.values(), GenericNode]

N = TypeVar("N")


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class ConnectionEdge(Generic[N]):
    cursor: str | None
    node: N


@strawberry.type
class Connection(Generic[N]):
    """A relay-style page. Cursors are keyset cursors: stable while nodes are added."""

    edges: list[ConnectionEdge[N]]
    page_info: PageInfo
    withheld: int = strawberry.field(
        default=0,
        description="How many nodes of this page were left out: the caller may not view them.",
    )

    @strawberry.field
    def nodes(self) -> list[N]:
        return [e.node for e in self.edges]
