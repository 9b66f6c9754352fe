"""The SDK's remote mode: a hub server as the SDK's backend (:class:`RemoteBackend`).

``Client("http://hub:8000")`` (or ``LINEAGEHUB_URL``) uses it instead of opening the stores
itself. It answers as the in-process backend does (:mod:`lineagehub.ingest.seam`): the same
calls, the services' own types back, the same errors, so code written against one mode runs
unchanged against the other (``tests/test_sdk_contract.py`` runs one script on both).

Nothing here re-states a query by hand where it can be derived: each call names a root field
of the committed schema (``schema/schema.graphql``, shipped in the package) and the Python
type it answers with; the operation's variables take the field's argument types, its
selection and the decoding of the answer follow the Python type (see :func:`_selection`).
Metric values travel as the ``MetricValue`` scalar, so NaN and infinities survive the trip.
The connection, its retries and the artifact routes are :mod:`lineagehub.ingest.http`'s.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import enum
import functools
import importlib.util
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import graphql
import httpx

from lineagehub.artifacts import ArtifactInfo, digest_bytes
from lineagehub.graph import Direction, Edge, Node, SeriesPoint, Subgraph, TraversedNode
from lineagehub.graph.errors import (
    BackendError,
    ConfigError,
    ConflictError,
    HubError,
    NotFoundError,
    ValidationError,
)
from lineagehub.graph.model import TruncationReason, metric_from_wire, metric_to_wire, to_iso
from lineagehub.graph.store import MAX_PAGE
from lineagehub.ingest.http import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    HubConnection,
    RemoteArtifactStore,
    check_url,
    hub_error,
    is_url,
)
from lineagehub.ingest.seam import Backend, BatchTarget, PromoteResult, node_ref
from lineagehub.services.cards import InventoryRow, ModelCard
from lineagehub.services.lineage import LineageDiff, RunComparison
from lineagehub.services.monitoring import MonitoringReference, MonitoringSummary
from lineagehub.services.registry import (
    HistoryEntry,
    ModelPromoted,
    PendingPromotion,
    Policy,
    PromotionPending,
    PromotionRefused,
    PromotionRejected,
)
from lineagehub.services.tracking import (
    MAX_BATCH_POINTS,
    Metric,
    RunStart,
    check_metric,
    dataset_name,
)
from lineagehub.vocabulary import (
    Alert,
    AlertState,
    Artifact,
    ArtifactKind,
    DatasetVersion,
    Deployment,
    EdgeKind,
    ModelVersion,
    MonitoringWindow,
    NodeKind,
    NodeModel,
    Run,
    RunStatus,
    UsedRole,
    from_node,
    member,
)

if TYPE_CHECKING:
    from lineagehub.vocabulary import DatasetFingerprint

M = TypeVar("M", bound=NodeModel)

#: GraphQL's Int is 32 bits: "every point" is asked for as this many.
_ALL_POINTS = 2**31 - 1
#: The server's page size limit (``Services.max_page``); longer pages are fetched in parts.
_SERVER_PAGE = 500

_LABELS = {**{k.name: k.value for k in NodeKind}, **{k.value: k.value for k in NodeKind}}


# --------------------------------------------------------------------------- answers


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None


def _full_node(data: Mapping[str, Any]) -> Node:
    kind = str(data.get("kind"))
    return Node(
        id=str(data["id"]),
        label=_LABELS.get(kind, kind),
        props=dict(data.get("properties") or {}),
        created_at=_parse_time(data.get("createdAt")),
        updated_at=_parse_time(data.get("updatedAt")),
    )


def _model(cls: type[M], data: Any) -> M:
    if not isinstance(data, Mapping):
        raise BackendError(f"the hub answered without the {cls.__name__}")
    try:
        model = from_node(_full_node(data))
    except ValidationError as e:  # the hub's own data: not the caller's mistake
        raise BackendError(f"the hub answered a malformed {cls.__name__}: {e}") from None
    if not isinstance(model, cls):
        raise BackendError(f"the hub answered a {type(model).__name__}, not a {cls.__name__}")
    return model


# --------------------------------------------------------------------------- the wire
#
# Each call names a root field of the committed schema (``schema.graphql``, shipped in the
# package) and the Python type it answers with. The operation is derived from both: its
# variables are declared with the field's argument types, its selection from the answer's
# type (a vocabulary model: the node's id, kind and properties; a dataclass: its fields,
# camel-cased, where :data:`_WIRE_NAMES` does not name them otherwise; a union: a fragment
# per member), and the answer is decoded into that type by the same walk.

_PROMOTION = (
    ModelPromoted,
    PromotionPending,
    PromotionRefused,
    PromotionRejected,
    PendingPromotion,
)
#: Dataclass fields whose GraphQL name is not their camel-cased name; "a.b" selects ``a { b }``
#: (over each item of a list).
_WIRE_NAMES: dict[tuple[type, str], str] = {
    **{(cls, "version_id"): "version.id" for cls in _PROMOTION},
    **{(cls, "to_stage"): "stage" for cls in _PROMOTION},
    (ModelPromoted, "archived"): "archived.id",
    (ModelPromoted, "deployments"): "deployments.id",
    (PromotionPending, "needed"): "approvalsNeeded",
    (PendingPromotion, "needed"): "approvalsNeeded",
}
#: GraphQL type names that differ from the dataclass's.
_TYPENAMES: dict[type, str] = {PromotionRefused: "PolicyViolation"}
_NODE_FIELDS = "{ id kind properties createdAt updatedAt }"


def _wire_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return to_iso(value, "time")
    return dict(value) if isinstance(value, Mapping) else value


def _camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(p.title() for p in rest)


@functools.cache
def _schema() -> graphql.GraphQLSchema:
    spec = importlib.util.find_spec("lineagehub.schema")
    if spec is None or spec.origin is None:  # pragma: no cover - part of the package
        raise ConfigError("the package's GraphQL schema is missing")
    return graphql.build_schema(Path(spec.origin).with_name("schema.graphql").read_text())


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _members(tp: Any) -> tuple[Any, ...]:
    """The types of a union without ``None`` (the type itself if it is not a union)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return tuple(a for a in typing.get_args(tp) if a is not type(None))
    return (tp,)


def _is_node(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, (Node, NodeModel))


@functools.cache
def _selection(tp: Any) -> str:
    """The GraphQL selection that answers as ``tp``."""
    members = _members(tp)
    if len(members) > 1:
        if not all(dataclasses.is_dataclass(m) for m in members):
            return ""  # a union of scalars
        parts = " ".join(f"... on {_TYPENAMES.get(m, m.__name__)} {_selection(m)}" for m in members)
        return f"{{ __typename {parts} }}"
    tp = members[0]
    if typing.get_origin(tp) in (list, tuple):
        return _selection(typing.get_args(tp)[0])
    if _is_node(tp):
        return _NODE_FIELDS
    if not (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
        return ""
    selected = []
    for f in dataclasses.fields(tp):
        *outer, leaf = _WIRE_NAMES.get((tp, f.name), _camel(f.name)).split(".")
        text = f"{leaf} {_selection(_hints(tp)[f.name])}".strip()
        for name in reversed(outer):
            text = f"{name} {{ {text} }}"
        selected.append(text)
    return "{ " + " ".join(selected) + " }"


def _decode(tp: Any, data: Any) -> Any:
    """``data`` (the JSON of a GraphQL answer) as ``tp``."""
    if data is None:
        return None
    members = _members(tp)
    if len(members) > 1:
        if not all(dataclasses.is_dataclass(m) for m in members):
            return data
        names = {_TYPENAMES.get(m, m.__name__): m for m in members}
        if data.get("__typename") not in names:
            raise BackendError(f"the hub answered an unknown {data.get('__typename')!r}")
        return _decode(names[data["__typename"]], data)
    tp = members[0]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list or (origin is tuple and args[-1:] == (...,)):
        return origin(_decode(args[0], x) for x in data)
    if origin is tuple:
        return tuple(_decode(a, x) for a, x in zip(args, data))
    if tp is Node:
        return _full_node(data)
    if isinstance(tp, type) and issubclass(tp, NodeModel):
        return _model(tp, data)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        values = {}
        for f in dataclasses.fields(tp):
            value = data
            for name in _WIRE_NAMES.get((tp, f.name), _camel(f.name)).split("."):
                value = [v[name] for v in value] if isinstance(value, list) else value[name]
            values[f.name] = _decode(_hints(tp)[f.name], value)
        return tp(**values)
    if tp is datetime:
        return _parse_time(data)
    if tp is float:
        return metric_from_wire(data)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp[data] if data in tp.__members__ else tp(data)
    return data


_PAGE = f"{{ edges {{ node {_NODE_FIELDS} }} pageInfo {{ hasNextPage endCursor }} }}"


class _Wire:
    """GraphQL calls on a hub connection, derived from the schema and the answer's type."""

    def __init__(self, connection: HubConnection) -> None:
        self.connection = connection

    def raw(
        self,
        field: str,
        selection: str,
        *,
        idempotent: bool,
        reconcile: Callable[[HubError], dict[str, Any] | None] | None = None,
        **args: Any,
    ) -> Any:
        """Call root field ``field`` with the arguments that are not ``None``, named as in
        Python (``run_id``: ``runId``); its answer as JSON."""
        variables = {_camel(k): _wire_value(v) for k, v in args.items() if v is not None}
        query = _operation(field, selection, tuple(sorted(variables)))
        return self.connection.graphql(
            query, variables, idempotent=idempotent, reconcile=reconcile
        )[field]

    def call(self, field: str, returns: Any, **args: Any) -> Any:
        """Call root field ``field``; its answer decoded as ``returns``."""
        answer = self.raw(field, _selection(returns), **args)
        try:
            return _decode(returns, answer)
        except (KeyError, TypeError, ValueError) as e:  # not what the schema promises
            raise BackendError(f"the hub's answer to {field} is malformed: {e!r:.200}") from None

    def page(
        self,
        field: str,
        model: type[M],
        where: Mapping[str, Any] | None,
        order_by: Sequence[str] | str | None,
        after: str | None,
        limit: int,
        **extra: Any,
    ) -> tuple[list[M], str | None]:
        """One page of a listing (``runs``, ``models`` ...), fetched in parts of the server's
        page size; ``extra``: the listing's own arguments (``alerts``' ``state``)."""
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        if where is not None and not isinstance(where, Mapping):
            raise ValidationError("where must be a mapping", field="where")
        order = [order_by] if isinstance(order_by, str) else order_by
        found: list[M] = []
        cursor = after
        while True:
            page = self.raw(
                field,
                _PAGE,
                idempotent=True,
                where=dict(where) if where is not None else None,
                orderBy=list(order) if order is not None else None,
                first=min(limit - len(found), _SERVER_PAGE),
                after=cursor,
                **extra,
            )
            found += [_model(model, e["node"]) for e in page["edges"]]
            info = page["pageInfo"]
            cursor = info["endCursor"] if info["hasNextPage"] else None
            if cursor is None or len(found) >= limit:
                return found, cursor


@functools.cache
def _operation(field: str, selection: str, variables: tuple[str, ...]) -> str:
    schema = _schema()
    mutation = schema.mutation_type
    root = mutation if mutation is not None and field in mutation.fields else schema.query_type
    assert root is not None
    definition = root.fields[field]
    # a variable is the field's argument, or one of a field of its answer (metricSeries' key)
    inner = graphql.get_named_type(definition.type)
    args = dict(definition.args)
    for f in getattr(inner, "fields", {}).values():
        args = {**f.args, **args}
    declared = ", ".join(f"${v}: {args[v].type}" for v in variables)
    passed = ", ".join(f"{v}: ${v}" for v in variables if v in definition.args)
    name = field[0].upper() + field[1:]
    call = f"{field}({passed})" if passed else field
    head = f"{name}({declared})" if variables else name
    return f"{'mutation' if root is mutation else 'query'} {head} {{ {call} {selection} }}"


# --------------------------------------------------------------------------- tracking


def _metrics(metrics: Sequence[Metric] | None) -> list[dict[str, Any]]:
    """Metric points as ``MetricInput`` values, checked as the service checks them."""
    if metrics is not None and len(metrics) > MAX_BATCH_POINTS:
        raise ValidationError(
            f"a batch holds at most {MAX_BATCH_POINTS} metric points", field="metrics"
        )
    out, keys = [], set()  # a run has a handful of keys and thousands of points
    for m in metrics or ():
        value = m.value
        if type(value) is not float or type(m.step) is not int or m.key not in keys:
            value = check_metric(m.key, value, m.step)
            keys.add(m.key)
        timestamp = to_iso(m.timestamp, f"metrics.{m.key}.timestamp")
        out.append(
            {"key": m.key, "value": metric_to_wire(value), "step": m.step, "timestamp": timestamp}
        )
    return out


#: The metric points one GraphQL request carries at most, as JSON: half the server's default
#: request limit (``LINEAGEHUB_MAX_REQUEST_BYTES``, 1 MiB), leaving room for params and tags.
REQUEST_POINTS_BYTES = 512 * 1024


def _point_chunks(points: list[dict[str, Any]]) -> list[list[dict[str, Any]] | None]:
    """``points`` in consecutive chunks of at most :data:`REQUEST_POINTS_BYTES` as JSON (one
    ``None`` chunk for none)."""
    chunks: list[list[dict[str, Any]] | None] = []
    current: list[dict[str, Any]] = []
    size = 0
    for point in points:
        n = 6 * len(point["key"]) + 110  # key (escaped at most 6x), value, step, time, commas
        if current and size + n > REQUEST_POINTS_BYTES:
            chunks.append(current)
            current, size = [], 0
        current.append(point)
        size += n
    return [*chunks, current or None]


#: Run fields sent to ``startRun`` (``StartRunInput``) under other names.
_RUN_INPUT = {"kind": "runKind", "entry_point": "entryPoint"}
_RUN_FIELDS = (
    "id",
    "name",
    "kind",
    "project",
    "experiment",
    "tags",
    "params",
    "parent",
    "user",
    "host",
    "entry_point",
    "description",
)


class RemoteTracking:
    """The tracking service's calls (:class:`~lineagehub.ingest.seam.Tracking`) served by a
    hub server; ``artifacts`` is its :class:`RemoteArtifactStore`, on the same connection."""

    def __init__(
        self,
        url: str | HubConnection,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not isinstance(url, HubConnection):
            url = HubConnection(
                url, timeout=timeout, retries=retries, backoff=backoff, transport=transport
            )
        self.connection, self.url = url, url.url
        self.wire = _Wire(url)
        self.artifacts = RemoteArtifactStore(url)
        # Content this process already uploaded (package lists, code diffs): a sweep starts
        # thousands of runs from one checkout and one environment.
        self._uploaded: set[str] = set()
        # Environments the hub holds (written by a run this process started there): later runs
        # name them by id instead of sending the package list (hundreds of entries) each time.
        self._environments: set[str] = set()

    def close(self) -> None:
        self.connection.close()

    def __repr__(self) -> str:
        return f"RemoteTracking({self.url!r})"

    def _upload_once(self, content: bytes) -> None:
        digest = digest_bytes(content)
        if digest not in self._uploaded:
            self.artifacts.put_bytes(content)
            self._uploaded.add(digest)

    def _reconcile(self, field: str, run_id: str, prop: str, value: Any) -> Callable[..., Any]:
        """For a retry whose first attempt did arrive: a conflict is no error when the run is
        already as asked (started with this name, ended with this status)."""

        def reconcile(error: HubError) -> dict[str, Any] | None:
            if isinstance(error, ConflictError):
                found = self.wire.raw("nodes", _NODE_FIELDS, idempotent=True, ids=[run_id])[0]
                if found is not None and found["properties"].get(prop) == value:
                    return {field: found}
            return None

        return reconcile

    def start_run(self, run: Run, start: RunStart | None = None) -> Run:
        start = start or RunStart()
        if run.status is not RunStatus.RUNNING:
            raise ValidationError("a run starts RUNNING", field="status")
        fields = {_RUN_INPUT.get(k, k): _wire_value(getattr(run, k)) for k in _RUN_FIELDS}
        if "started_at" in run.model_fields_set:  # given (a batch's): else the hub's clock
            fields["startedAt"] = _wire_value(run.started_at)
        if start.code is not None:
            if start.code.diff is not None:
                self._upload_once(start.code.diff)
            fields["code"] = start.code.commit.model_dump(mode="json", exclude_none=True)
        env = start.environment.environment if start.environment is not None else None
        if start.environment is not None and start.environment.packages_text:
            self._upload_once(start.environment.packages_text)
        if env is not None and env.node_id in self._environments:
            fields["environmentId"] = env.node_id  # the hub has it: not the package list again
        elif env is not None:
            fields["environment"] = env.model_dump(mode="json", exclude_none=True)
        if start.environment_id is not None:  # named by the caller
            if env is not None:
                raise ValidationError(
                    "give the environment or its id, not both", field="environment_id"
                )
            fields["environmentId"] = start.environment_id

        def call() -> Any:
            return self.wire.call(
                "startRun",
                Run,
                idempotent=True,
                input={k: v for k, v in fields.items() if v is not None},
                reconcile=self._reconcile("startRun", run.id, "name", run.name),
            )

        started: Run
        try:
            started = call()
        except NotFoundError as e:
            if env is None or "environmentId" not in fields or env.node_id not in e.ids:
                raise
            # Not there any more (another store behind the same URL): sent whole once again.
            self._environments.discard(env.node_id)
            del fields["environmentId"]
            fields["environment"] = env.model_dump(mode="json", exclude_none=True)
            started = call()
        if env is not None:
            self._environments.add(env.node_id)
        return started

    def _batch(self, run_id: str, metrics: Sequence[Metric] | None) -> list[dict[str, Any]] | None:
        """Sends all but the last request's worth of points; returns the last."""
        *first, last = _point_chunks(_metrics(metrics))
        for chunk in first:
            self.wire.raw("logBatch", "{ runId }", idempotent=True, run_id=run_id, metrics=chunk)
        return last

    def log_batch(
        self, run_id: str, *, metrics: Sequence[Metric] | None = None, **values: Any
    ) -> None:
        """In one transaction when the points fit one request (:data:`REQUEST_POINTS_BYTES`),
        else the points in several, the params and tags with the last. Idempotent: the same
        params again are accepted, points replace the same step's."""
        last = self._batch(run_id, metrics)
        self.wire.raw(
            "logBatch", "{ runId }", idempotent=True, run_id=run_id, metrics=last, **values
        )

    def end_run(
        self,
        run_id: str,
        status: RunStatus | str = RunStatus.FINISHED,
        error: str | None = None,
        *,
        metrics: Sequence[Metric] | None = None,
        **values: Any,
    ) -> Run:
        status = _wire_value(status)
        return self.wire.call(
            "endRun",
            Run,
            idempotent=True,
            run_id=run_id,
            status=status,
            error=error,
            metrics=self._batch(run_id, metrics),
            **values,
            reconcile=self._reconcile("endRun", run_id, "status", status),
        )

    def get_run(self, run_id: str) -> Run:
        return self.wire.call("run", Run, idempotent=True, id=run_id)

    def mark_stale_runs(self) -> list[str]:
        return self.wire.call("markStaleRuns", list[str], idempotent=True)

    def search_runs(
        self,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Run], str | None]:
        return self.wire.page("runs", Run, where, order_by, after, limit)

    def metric_history(
        self, run_id: str, key: str, max_points: int | None = None
    ) -> list[SeriesPoint]:
        if max_points is not None and (
            not isinstance(max_points, int) or isinstance(max_points, bool) or max_points < 2
        ):
            raise ValidationError("max_points must be at least 2", field="max_points")
        series = self.wire.raw(
            "run",
            "{ metricSeries(key: $key, maxPoints: $maxPoints) { step value timestamp } }",
            idempotent=True,
            id=run_id,
            key=key,
            max_points=min(max_points or _ALL_POINTS, _ALL_POINTS),
        )["metricSeries"]
        return [
            SeriesPoint(
                run_id, key, p["step"], metric_from_wire(p["value"]), _parse_time(p["timestamp"])
            )
            for p in series
        ]

    def log_dataset(
        self,
        run_id: str,
        fingerprint: DatasetFingerprint,
        *,
        name: str | None = None,
        namespace: str | None = None,
        role: UsedRole | str = UsedRole.TRAIN,
        derived_from: Iterable[str] = (),
        **options: Any,
    ) -> DatasetVersion:
        """Files are named here, on the client (``file://<this host>``, the path): the file is
        where the client runs, not where the server does. Idempotent: the same content is the
        same version, edges are upserted."""
        namespace, name = dataset_name(fingerprint, name, namespace)
        dataset = {
            "fingerprint": dataclasses.asdict(fingerprint),
            "name": name,
            "namespace": namespace,
            "role": _wire_value(role),
            "derivedFrom": [str(s) for s in derived_from],
        }
        dataset.update({_camel(k): v for k, v in options.items()})
        return self.wire.call(
            "logDataset", DatasetVersion, idempotent=True, run_id=run_id, input=dataset
        )

    def log_input_model(
        self, run_id: str, ref: str, *, role: UsedRole | str = UsedRole.BASE_MODEL
    ) -> ModelVersion:
        """Idempotent: the one USED edge is upserted."""
        return self.wire.call(
            "logInputModel",
            ModelVersion,
            idempotent=True,
            run_id=run_id,
            ref=ref,
            role=_wire_value(role),
        )

    def log_artifact(
        self,
        run_id: str,
        info: ArtifactInfo,
        *,
        name: str,
        kind: ArtifactKind | str = ArtifactKind.OTHER,
        **options: Any,
    ) -> Artifact:
        return self.wire.call(
            "logArtifact",
            Artifact,
            idempotent=True,
            run_id=run_id,
            digest=info.digest,
            name=name,
            artifact_kind=member(ArtifactKind, kind, "kind"),
            **_receipt(info),
            **options,
        )

    def artifacts_of(self, run_id: str) -> list[tuple[str, Artifact]]:
        found = self.wire.raw(
            "run",
            f"{{ evaluations {{ node {_NODE_FIELDS} edge {{ properties }} }} }}",
            idempotent=True,
            id=run_id,
        )["evaluations"]
        named = [
            (str(x["edge"]["properties"].get("name", "")), _model(Artifact, x["node"]))
            for x in found
        ]
        return sorted(named, key=lambda x: x[0])

    def log_model(
        self, run_id: str, info: ArtifactInfo, *, name: str, **options: Any
    ) -> ModelVersion:
        """Not retried once sent: a repeat would register another version."""
        return self.wire.call(
            "logModel",
            ModelVersion,
            idempotent=False,
            run_id=run_id,
            digest=info.digest,
            name=name,
            **_receipt(info),
            **options,
        )

    def register_model_version(
        self, name: str, info: ArtifactInfo, *, run_id: str | None = None, **options: Any
    ) -> ModelVersion:
        """Not retried once sent: a repeat would register another version."""
        return self.wire.call(
            "registerModelVersion",
            ModelVersion,
            idempotent=False,
            name=name,
            digest=info.digest,
            run_id=run_id,
            **_receipt(info),
            **options,
        )


def _receipt(info: ArtifactInfo) -> dict[str, str]:
    """The upload's receipt, when this client uploaded the bytes (see ``PUT /artifacts``)."""
    return {"receipt": info.receipt} if info.receipt else {}


# --------------------------------------------------------------------------- registry


class RemoteRegistry:
    """The model registry of a hub server (:class:`~lineagehub.ingest.seam.Registry`). Every
    change is recorded as done by the server's registry actor: the server decides who acts."""

    def __init__(self, wire: _Wire) -> None:
        self.wire = wire

    def _change(self, field: str, returns: Any, **args: Any) -> Any:
        return self.wire.call(field, returns, idempotent=False, **args)

    def set_model_card(
        self, ref: str, card: Mapping[str, Any], reason: str | None = None
    ) -> ModelCard:
        answer = self.wire.raw(
            "setModelCard", "{ data }", idempotent=False, ref=ref, card=card, reason=reason
        )
        return ModelCard.from_dict(answer["data"])

    def model_card(self, ref: str, as_of: datetime | None = None) -> ModelCard:
        answer = self.wire.raw("modelCard", "{ data }", idempotent=True, ref=ref, as_of=as_of)
        return ModelCard.from_dict(answer["data"])

    def request_promotion(
        self, ref: str, to: str, reason: str, *, on_deployments: str = "refuse"
    ) -> PromoteResult:
        return self._change(
            "requestPromotion",
            PromoteResult,
            ref=ref,
            to=to,
            reason=reason,
            on_deployments=on_deployments,
        )

    def approve(self, request_id: str, comment: str | None = None) -> PromoteResult:
        return self._change(
            "approvePromotion", PromoteResult, request_id=request_id, comment=comment
        )

    def reject(self, request_id: str, reason: str) -> PromotionRejected:
        return self._change(
            "rejectPromotion", PromotionRejected, request_id=request_id, reason=reason
        )

    def promote(self, ref: str, to: str, reason: str, **options: Any) -> PromoteResult:
        return self._change(
            "promoteModelVersion", PromoteResult, ref=ref, to=to, reason=reason, **options
        )

    def set_alias(self, ref: str, alias: str, reason: str | None = None) -> ModelVersion:
        return self._change("setAlias", ModelVersion, ref=ref, alias=alias, reason=reason)

    def remove_alias(self, model: str, alias: str, reason: str | None = None) -> None:
        self._change("removeAlias", bool, model=model, alias=alias, reason=reason)

    def deploy(self, ref: str, environment: str, **options: Any) -> Deployment:
        return self._change(
            "recordDeployment", Deployment, ref=ref, environment=environment, **options
        )

    def retire_deployment(self, deployment_id: str, reason: str | None = None) -> Deployment:
        return self._change("retireDeployment", Deployment, id=deployment_id, reason=reason)

    def rollback(
        self, model: str, stage_or_alias: str, reason: str, *, on_deployments: str = "refuse"
    ) -> list[str]:
        return self.wire.raw(
            "rollback",
            "{ runIds }",
            idempotent=False,
            model=model,
            stage_or_alias=stage_or_alias,
            reason=reason,
            on_deployments=on_deployments,
        )["runIds"]

    def pending_promotions(
        self, model: str | None = None, stage: str | None = None
    ) -> list[PendingPromotion]:
        return self.wire.call(
            "pendingPromotions",
            list[PendingPromotion],
            idempotent=True,
            model=model,
            stage=stage,
        )

    def history(
        self, model: str, alias: str | None = None, stage: str | None = None
    ) -> list[HistoryEntry]:
        changes = self.wire.raw(
            "modelHistory",
            "{ change version { properties } alias fromStage toStage "
            "fromVersion toVersion actor reason at runId approvals }",
            idempotent=True,
            model=model,
            alias=alias,
            stage=stage,
        )
        return [
            HistoryEntry(
                version=c["version"]["properties"]["version"],
                from_=c["fromVersion"] if c["alias"] is not None else c["fromStage"],
                to=c["toVersion"] if c["alias"] is not None else c["toStage"],
                actor=c["actor"],
                reason=c["reason"],
                at=_decode(datetime, c["at"]),
                run_id=c["runId"],
                change=c["change"],
                alias=c["alias"],
                approvals=tuple(c["approvals"]),
            )
            for c in changes
        ]

    def holder_at(self, model: str, alias_or_stage: str, time: datetime) -> ModelVersion | None:
        if not isinstance(time, datetime):
            raise ValidationError("time must be a datetime", field="time")
        return self.wire.call(
            "holderAt",
            ModelVersion | None,
            idempotent=True,
            model=model,
            alias_or_stage=alias_or_stage,
            time=time,
        )


# --------------------------------------------------------------------------- queries


def _kind_names(kinds: Sequence[Any] | None, enum_type: Any, field: str) -> list[str] | None:
    """GraphQL enum names for kinds given as enum members, values or names; an unknown one is
    a :class:`ValidationError` here, as the embedded service raises."""
    if kinds is None:
        return None
    if isinstance(kinds, str) or not isinstance(kinds, Sequence):
        raise ValidationError(f"{field} must be a list of kinds", field=field)
    names = []
    for kind in kinds:
        value = getattr(kind, "value", kind)
        found = next((k for k in enum_type if value in (k.value, k.name)), None)
        if found is None:
            known = ", ".join(k.value for k in enum_type)
            raise ValidationError(f"{field}: unknown kind {value!r:.60} (known: {known})", field)
        names.append(found.name)
    return names


_LINEAGE = (
    f"{{ nodes {{ node {_NODE_FIELDS} distance reachedFrom direction }} "
    "edges { id source target kind eventTime ingestedAt assertedBy properties } "
    "truncated truncationReason }"
)
_LISTINGS = {
    NodeKind.RUN: "runs",
    NodeKind.DATASET: "datasets",
    NodeKind.DATASET_VERSION: "datasetVersions",
    NodeKind.MODEL: "models",
    NodeKind.MODEL_VERSION: "modelVersions",
    NodeKind.DEPLOYMENT: "deployments",
}


_INVENTORY = (
    "{ model version versionId stage deployments owners riskTier validationStatus "
    "nextReviewDate reviewOverdue openAlerts }"
)


class RemoteQueries:
    """Look-ups, listings, lineage and comparisons on a hub server
    (:class:`~lineagehub.ingest.seam.Queries`)."""

    def __init__(self, wire: _Wire) -> None:
        self.wire = wire

    def compliance_report(self, ref: str, as_of: datetime | None = None) -> dict[str, Any]:
        report: dict[str, Any] = self.wire.raw(
            "complianceReport", "", idempotent=True, ref=ref, as_of=as_of
        )
        return report

    def model_inventory(self) -> list[InventoryRow]:
        rows = self.wire.raw("modelInventory", _INVENTORY, idempotent=True)
        return [
            InventoryRow(**{f: r[_camel(f)] for f in InventoryRow.__dataclass_fields__})
            for r in rows
        ]

    def find(
        self,
        model: type[M],
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[M], str | None]:
        listing = _LISTINGS.get(model.node_kind)
        if listing is None:
            kinds = ", ".join(sorted(k.value for k in _LISTINGS))
            raise ValidationError(
                f"a hub server lists {kinds}; not {model.node_kind.value}", field="model"
            )
        return self.wire.page(listing, model, where, order_by, after, limit)

    def model_version(self, ref: str) -> ModelVersion:
        if not isinstance(ref, str) or not ref:
            raise ValidationError("ref must be a non-empty string", field="ref")
        found = self.wire.raw("node", _NODE_FIELDS, idempotent=True, ref=ref)
        if found is None:
            raise NotFoundError(f"no model version {ref!r}", ids=[ref])
        if found["kind"] != NodeKind.MODEL_VERSION.name:
            raise ValidationError(f"{ref!r} is not a model version", field="ref")
        return _model(ModelVersion, found)

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
    ) -> Subgraph:
        if isinstance(roots, str) or not isinstance(roots, Sequence) or not roots:
            raise ValidationError("roots: give at least one reference", field="roots")
        query = {
            "roots": [str(r) for r in roots],
            "direction": (_kind_names([direction], Direction, "direction") or ["UPSTREAM"])[0],
            "upstreamDepth": upstream_depth,
            "downstreamDepth": downstream_depth,
            "nodeKinds": _kind_names(node_kinds, NodeKind, "node_kinds"),
            "edgeKinds": _kind_names(edge_kinds, EdgeKind, "edge_kinds"),
            "stopAt": _kind_names(stop_at, NodeKind, "stop_at"),
            "passThrough": _kind_names(pass_through, NodeKind, "pass_through"),
            "asOf": to_iso(as_of, "as_of") if as_of is not None else None,
            "maxNodes": max_nodes,
        }
        data = self.wire.raw("lineage", _LINEAGE, idempotent=True, input=query)
        nodes = [
            TraversedNode(
                _full_node(n["node"]),
                n["distance"],
                n["reachedFrom"],
                _decode(Direction | None, n["direction"]),
            )
            for n in data["nodes"]
        ]
        edges = [
            Edge(
                e["source"],
                e["target"],
                EdgeKind[e["kind"]].value,
                e["properties"] or {},
                _parse_time(e["eventTime"]),
                e["assertedBy"],
                e["id"],
                _parse_time(e["ingestedAt"]),
            )
            for e in data["edges"]
        ]
        reason = _decode(TruncationReason | None, data["truncationReason"])
        return Subgraph({n.node.id: n for n in nodes}, edges, data["truncated"], reason)

    def compare_runs(self, run_ids: Sequence[str]) -> RunComparison:
        if isinstance(run_ids, str) or not isinstance(run_ids, Sequence):
            raise ValidationError("run_ids must be a list of run ids", field="run_ids")
        return self.wire.call("compareRuns", RunComparison, idempotent=True, ids=list(run_ids))

    def compare_model_versions(self, a: str, b: str) -> LineageDiff:
        return self.wire.call("compareModelVersions", LineageDiff, idempotent=True, a=a, b=b)


class _Deferred:
    """A batched call's answer, known once the batch is written."""

    __slots__ = ("answer", "index", "returns", "written")

    def __init__(self, index: int, returns: Any) -> None:
        self.index, self.returns = index, returns
        self.answer: Any = None
        self.written = False


class _RecordingWire(_Wire):
    """A wire that records mutations for one ``writeBatch`` instead of sending them."""

    def __init__(self, connection: HubConnection) -> None:
        super().__init__(connection)
        self.operations: list[dict[str, Any]] = []
        self.deferred: list[_Deferred] = []

    def raw(self, field: str, selection: str, *, idempotent: bool, **args: Any) -> Any:
        return self._record(field, None, args)

    def call(self, field: str, returns: Any, **args: Any) -> Any:
        return self._record(field, returns, args)

    def _record(self, field: str, returns: Any, args: dict[str, Any]) -> _Deferred:
        args.pop("idempotent", None)
        args.pop("reconcile", None)
        variables = {_camel(k): _wire_value(v) for k, v in args.items() if v is not None}
        self.operations.append({"call": field, "args": variables})
        deferred = _Deferred(len(self.deferred), returns)
        self.deferred.append(deferred)
        return deferred

    def send(self) -> None:
        """Write the recorded calls in one request (one transaction on the hub)."""
        if not self.operations:
            return
        try:
            answers = self.connection.graphql(
                _WRITE_BATCH, {"operations": self.operations}, idempotent=False
            )["writeBatch"]
        except ValidationError as e:
            if e.field != "body":
                raise
            raise ValidationError(
                f"this batch of {len(self.operations)} operations is too large for one request "
                f"to the server ({e.message}); nothing of it was written: split it into smaller "
                "batches (each one all or nothing), or raise the server's "
                "LINEAGEHUB_MAX_REQUEST_BYTES",
                field="batch",
            ) from None
        if not isinstance(answers, list) or len(answers) != len(self.deferred):
            raise BackendError("the hub's answer to writeBatch does not match the batch")
        for deferred, answer in zip(self.deferred, answers):
            try:
                if deferred.returns is bool:
                    deferred.answer = True
                elif deferred.returns is PromoteResult:
                    deferred.answer = _decode(PromoteResult, answer["promotion"])
                elif deferred.returns is not None:
                    deferred.answer = _decode(deferred.returns, answer["node"])
            except (KeyError, TypeError, ValueError) as e:
                raise BackendError(
                    f"the hub's answer to writeBatch is malformed: {e!r:.200}"
                ) from None
            deferred.written = True


_WRITE_BATCH = (
    "mutation WriteBatch($operations: [WriteOperation!]!) { writeBatch(operations: $operations) "
    f"{{ node {_NODE_FIELDS} promotion {_selection(PromoteResult)} }} }}"
)


class _RemoteBatch:
    """A batch for a hub server: the calls are recorded, then sent as one ``writeBatch``."""

    def __init__(self, tracking: RemoteTracking, wire: _RecordingWire) -> None:
        self.wire = wire
        self.tracking = copy.copy(tracking)
        self.tracking.wire = wire
        self.registry = RemoteRegistry(wire)

    def ref(self, answer: Any) -> str:
        if isinstance(answer, _Deferred):
            if answer.returns is Run:  # by its id, made here: a parent must be a run id
                args = self.wire.operations[answer.index]["args"]
                return str(args["runId"] if "runId" in args else args["input"]["id"])
            return f"${answer.index}"
        return node_ref(answer)

    def artifact(self, digest: str) -> ArtifactInfo:
        """The hub checks the content is there (and its size) when it writes the batch."""
        return _unchecked(digest)

    def value(self, answer: Any) -> Any:
        if isinstance(answer, _Deferred):
            if not answer.written:
                raise ValidationError("the batch is not written yet", field="batch")
            return answer.answer
        return answer


# --------------------------------------------------------------------------- monitoring


_SUMMARY = (
    "query Summary($ref: String!, $from: DateTime, $to: DateTime) { node(ref: $ref) { "
    "... on Deployment { monitoring(from: $from, to: $to) { "
    f"windows {_NODE_FIELDS} sampleCount rejected "
    "drift { feature state test statistic pValue pAdjusted psi jensenShannon wasserstein "
    "count referenceCount missing } "
    "performance { task count accuracy f1 auc mae rmse baseline delta } } } } }"
)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


class RemoteMonitoring:
    """Monitoring windows reported to a hub server (:class:`~lineagehub.ingest.seam.
    Monitoring`)."""

    def __init__(self, wire: _Wire) -> None:
        self.wire = wire

    def reference(self, deployment: str, dataset: str | None = None) -> MonitoringReference:
        return self.wire.call(
            "monitoringReference",
            MonitoringReference,
            idempotent=True,
            deployment=deployment,
            dataset=dataset,
        )

    def report_window(
        self,
        deployment: str,
        start: datetime,
        end: datetime,
        sketch: Mapping[str, Any],
        *,
        instance: str = "default",
        reference: str | None = None,
    ) -> MonitoringWindow:
        """Idempotent (the window's id is deterministic): retried like a read."""
        if not isinstance(start, datetime) or not isinstance(end, datetime):
            raise ValidationError("start and end must be datetimes", field="start")
        if not isinstance(sketch, Mapping):
            raise ValidationError("sketch must be a JSON object", field="sketch")
        return self.wire.call(
            "reportMonitoringWindow",
            MonitoringWindow,
            idempotent=True,
            input={
                "deployment": deployment,
                "start": to_iso(start, "start"),
                "end": to_iso(end, "end"),
                "sketch": dict(sketch),
                "instance": instance,
                "reference": reference,
            },
        )

    def window(self, window_id: str) -> MonitoringWindow | None:
        if not isinstance(window_id, str) or not window_id.startswith("window:"):
            raise ValidationError("give a window id (window:...)", field="window_id")
        found = self.wire.raw("nodes", _NODE_FIELDS, idempotent=True, ids=[window_id])[0]
        return None if found is None else _model(MonitoringWindow, found)

    def list_alerts(
        self, deployment: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[Alert]:
        where = None
        if deployment is not None:
            where = {"deployment": self.reference(deployment).deployment_id}
        if state is not None and state != "open":
            member(AlertState, state, "state")
        found, _ = self.wire.page("alerts", Alert, where, "-fired_at", None, limit, state=state)
        return found

    def acknowledge_alert(self, alert_id: str, comment: str | None = None) -> Alert:
        return self.wire.call(
            "acknowledgeAlert", Alert, idempotent=True, id=alert_id, comment=comment
        )

    def silence_alert(self, alert_id: str, until: datetime) -> Alert:
        if not isinstance(until, datetime) or until.tzinfo is None:
            raise ValidationError("until must be a timezone-aware time", field="until")
        return self.wire.call("silenceAlert", Alert, idempotent=True, id=alert_id, until=until)

    def summary(
        self, deployment: str, start: datetime | None = None, end: datetime | None = None
    ) -> MonitoringSummary:
        """``Deployment.monitoring``: not a root field, so the operation is written here."""
        reference = self.reference(deployment)  # resolves names; NOT_FOUND as embedded
        data = self.wire.connection.graphql(
            _SUMMARY,
            {
                "ref": reference.deployment_id,
                "from": None if start is None else to_iso(start, "start"),
                "to": None if end is None else to_iso(end, "end"),
            },
            idempotent=True,
        )
        found = (data.get("node") or {}).get("monitoring")
        if not isinstance(found, Mapping):
            raise BackendError("the hub answered without the deployment's monitoring")
        drift = {}
        for row in found["drift"]:
            row = {_snake(k): v for k, v in row.items() if v is not None}
            drift[row.pop("feature")] = row
        perf = found["performance"]
        return MonitoringSummary(
            reference.deployment_id,
            start,
            end,
            [_model(MonitoringWindow, w) for w in found["windows"]],
            drift,
            None if perf is None else {_snake(k): v for k, v in perf.items() if v is not None},
            found["sampleCount"],
            dict(found["rejected"]),
        )


def _unchecked(digest: str) -> ArtifactInfo:
    """Content named for a registration: the hub checks it is there (and its size) when it
    registers, so the client does not ask first."""
    from lineagehub.artifacts import validate_digest

    validate_digest(digest)
    return ArtifactInfo(digest=digest, size=0, uri="", created=False)


class RemoteBackend:
    """A hub server as the SDK's :class:`~lineagehub.ingest.seam.Backend`: every call over
    one connection; the server applies its own policies."""

    policies: Mapping[Any, Policy] = {}

    def __init__(self, url: str | HubConnection, **options: Any) -> None:
        self.tracking = RemoteTracking(url, **options)
        self.artifacts = self.tracking.artifacts
        self.registry = RemoteRegistry(self.tracking.wire)
        self.queries = RemoteQueries(self.tracking.wire)
        self.monitoring = RemoteMonitoring(self.tracking.wire)

    @contextlib.contextmanager
    def batch(self) -> Iterator[_RemoteBatch]:
        wire = _RecordingWire(self.tracking.connection)
        yield _RemoteBatch(self.tracking, wire)
        wire.send()  # only when the block ended without an error

    def artifact(self, digest: str) -> ArtifactInfo:
        return _unchecked(digest)

    def close(self) -> None:
        self.tracking.close()


def _contract(backend: RemoteBackend) -> Backend:  # mypy checks the backend against the contract
    return backend


def _batch_contract(batch: _RemoteBatch) -> BatchTarget:
    return batch


__all__ = [
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "HubConnection",
    "RemoteArtifactStore",
    "RemoteBackend",
    "RemoteMonitoring",
    "RemoteQueries",
    "RemoteRegistry",
    "RemoteTracking",
    "check_url",
    "hub_error",
    "is_url",
]
