"""OpenLineage events in: RunEvents, JobEvents and DatasetEvents mapped onto the lineage graph.

Airflow, Spark, dbt and Flink report lineage as OpenLineage events (spec 2-0-2). The hub takes
them at ``POST /api/v1/lineage`` (:mod:`lineagehub.interfaces.server`) or in process
(:meth:`OpenLineageService.ingest`), checks each against the spec's JSON Schema (required
fields, types, event types; ``runId`` a UUID, times with a timezone, every facet carrying
``_producer`` and ``_schemaURL``), and maps it onto the vocabulary:

=============================  ===============================================================
OpenLineage                    LineageHub
=============================  ===============================================================
job ``(namespace, name)``      ``Experiment`` *name* in ``Project`` *namespace* (its facets)
run ``runId``                  ``Run`` ``run:<runId>`` (kind ``transform``), ``PART_OF`` the job
eventType                      status: START/RUNNING -> RUNNING, COMPLETE -> FINISHED,
                               FAIL -> FAILED, ABORT -> KILLED (OTHER: no change)
parent facet                   ``CHILD_OF`` the parent run (a placeholder until its events come)
input dataset                  ``Run -USED(input)-> DatasetVersion``: the version its
                               ``version`` facet names, else the one this run already used,
                               else the dataset's newest version written, else its
                               ``external`` version
output dataset                 one ``DatasetVersion`` per run and output (per ``version``
                               facet if given) ``GENERATED_BY`` the run; ``schema`` -> columns,
                               ``outputStatistics.rowCount`` -> row count
columnLineage facet            ``DERIVED_FROM`` output version -> input version, with
                               ``columns`` {output column: [{field, transformations}]}
sourceCodeLocation facet       ``Run -RAN_CODE-> CodeCommit`` (when ``version`` is a sha)
sourceCode facet (alone)       ``Run -RAN_CODE-> CodeCommit`` whose sha is the code's sha256
errorMessage facet             the run's ``error``
every facet                    kept as data: ``Run.facets`` {"run", "job"},
                               ``Dataset.facets``, ``DatasetVersion.facets`` (known or not)
=============================  ===============================================================

Events merge in any order and replays are idempotent: ids are deterministic, a run's start is
the earliest event time seen, a terminal state is never undone by a later-arriving START or
RUNNING, and of two terminal states the later event's wins.

One call of :meth:`~OpenLineageService.ingest` is one transaction: every event of it is
written or none is (a bad event is a :class:`ValidationError` naming ``events[i].<field>``).
The events are kept as they came, as one JSON-lines artifact per call (content-addressed), and
the call is one audit entry (``openlineage.ingest``, its target that artifact), so
:meth:`~OpenLineageService.replay` can rebuild the lineage in a fresh store.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from lineagehub.artifacts import FileArtifactStore
from lineagehub.graph import (
    DELETE,
    Direction,
    Edge,
    GraphStore,
    Node,
    NotFoundError,
    ValidationError,
)
from lineagehub.graph.model import check_time, edge_id, lone_surrogate, to_iso
from lineagehub.services.access import record_projects
from lineagehub.services.tracking import START_AHEAD, default_actor
from lineagehub.vocabulary import (
    REGISTRY_RUN_KINDS,
    Agent,
    AgentKind,
    Artifact,
    ArtifactKind,
    CodeCommit,
    Column,
    Dataset,
    DatasetVersion,
    EdgeKind,
    Experiment,
    NodeKind,
    Project,
    Run,
    RunKind,
    RunStatus,
    UsedRole,
)

if TYPE_CHECKING:
    from lineagehub.artifacts import ArtifactStore

#: The audit action of one ingestion call (its target: the artifact holding the events).
AUDIT_ACTION = "openlineage.ingest"
#: The media type of the kept events: one JSON event per line.
EVENTS_MEDIA_TYPE = "application/x-ndjson"
#: Events in one call, at most (a larger burst is sent in several calls).
MAX_EVENTS = 10_000

_STATES = {
    "START": RunStatus.RUNNING,
    "RUNNING": RunStatus.RUNNING,
    "COMPLETE": RunStatus.FINISHED,
    "FAIL": RunStatus.FAILED,
    "ABORT": RunStatus.KILLED,
}
_TERMINAL = {RunStatus.FINISHED.value, RunStatus.FAILED.value, RunStatus.KILLED.value}
_GRAVITY = {RunStatus.FINISHED.value: 0, RunStatus.KILLED.value: 1, RunStatus.FAILED.value: 2}

# --- the spec's JSON Schema (OpenLineage 2-0-2: the event shapes and their required fields) ---

_URI = {"type": "string", "format": "uri"}
_FACET = {
    "type": "object",
    "properties": {"_producer": _URI, "_schemaURL": _URI, "_deleted": {"type": "boolean"}},
    "required": ["_producer", "_schemaURL"],
}
_FACETS = {"type": "object", "additionalProperties": _FACET}
_NAME = {"type": "string", "minLength": 1}
_JOB = {
    "type": "object",
    "properties": {"namespace": _NAME, "name": _NAME, "facets": _FACETS},
    "required": ["namespace", "name"],
}
_RUN = {
    "type": "object",
    "properties": {"runId": {"type": "string", "format": "uuid"}, "facets": _FACETS},
    "required": ["runId"],
}
_DATASET_PROPS = {"namespace": _NAME, "name": _NAME, "facets": _FACETS}
_INPUT = {
    "type": "object",
    "properties": {**_DATASET_PROPS, "inputFacets": _FACETS},
    "required": ["namespace", "name"],
}
_OUTPUT = {
    "type": "object",
    "properties": {**_DATASET_PROPS, "outputFacets": _FACETS},
    "required": ["namespace", "name"],
}
_BASE = {
    "eventTime": {"type": "string", "format": "date-time"},
    "producer": _URI,
    "schemaURL": _URI,
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "RunEvent": {
        "type": "object",
        "properties": {
            **_BASE,
            "eventType": {"enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]},
            "run": _RUN,
            "job": _JOB,
            "inputs": {"type": "array", "items": _INPUT},
            "outputs": {"type": "array", "items": _OUTPUT},
        },
        "required": ["eventTime", "producer", "schemaURL", "run", "job"],
    },
    "JobEvent": {
        "type": "object",
        "properties": {
            **_BASE,
            "job": _JOB,
            "inputs": {"type": "array", "items": _INPUT},
            "outputs": {"type": "array", "items": _OUTPUT},
        },
        "required": ["eventTime", "producer", "schemaURL", "job"],
    },
    "DatasetEvent": {
        "type": "object",
        "properties": {
            **_BASE,
            "dataset": {
                "type": "object",
                "properties": _DATASET_PROPS,
                "required": ["namespace", "name"],
            },
        },
        "required": ["eventTime", "producer", "schemaURL", "dataset"],
    },
}


def _parse_time(value: str) -> datetime | None:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _event_time(when: datetime) -> datetime:
    """A run event's time, in the range the hub keeps and not ahead of its clock by more
    than :data:`START_AHEAD` (a producer's clock a little fast): an event from the future
    would end a run after anything later could, or start it after its own end."""
    when = check_time(when, "eventTime")
    now = datetime.now(timezone.utc)
    if when > now + START_AHEAD:
        raise ValidationError(
            f"eventTime: {to_iso(when)} is ahead of the hub's clock ({to_iso(now)}) by more than"
            f" {START_AHEAD.seconds // 60} minutes",
            field="eventTime",
        )
    return when


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


_FORMATS: dict[str, Any] = {
    "uuid": _is_uuid,
    "date-time": lambda value: _parse_time(value) is not None,
    "uri": lambda value: bool(urlsplit(value).scheme),
}
_FORMAT_HINTS = {
    "uuid": "a UUID",
    "date-time": "an ISO 8601 time with a timezone (2026-03-01T12:00:00Z)",
    "uri": "a URI",
}
_VALIDATORS: dict[str, Any] = {}


def _validator(kind: str) -> Any:
    """The compiled validator of one event kind: fastjsonschema turns the schema into Python
    code once (about 15 us an event, where an interpreting validator takes 250 us: the
    difference between keeping up with a busy Spark cluster and not)."""
    found = _VALIDATORS.get(kind)
    if found is None:
        try:
            import fastjsonschema
        except ImportError:
            from lineagehub.graph import ConfigError

            raise ConfigError(
                "OpenLineage ingestion needs fastjsonschema: pip install 'lineagehub[openlineage]'"
            ) from None
        found = fastjsonschema.compile(SCHEMAS[kind], formats=_FORMATS)
        _VALIDATORS[kind] = found
    return found


def event_kind(event: Any, where: str = "") -> str:
    """``RunEvent``, ``JobEvent`` or ``DatasetEvent``, after checking the event against the
    spec's schema; otherwise a :class:`ValidationError` naming the field (``run.runId``)."""
    if not isinstance(event, Mapping):
        raise ValidationError(
            f"{where or 'event'}: an OpenLineage event is a JSON object, got "
            f"{type(event).__name__}",
            field=where or "event",
        )
    kind = "RunEvent" if "run" in event else "DatasetEvent" if "dataset" in event else "JobEvent"
    if kind == "JobEvent" and "job" not in event:
        name = f"{where}.run" if where else "run"
        raise ValidationError(
            f"{name}: an OpenLineage event needs run and job (a RunEvent), job (a JobEvent) "
            "or dataset (a DatasetEvent)",
            field=name,
        )
    import fastjsonschema

    try:
        _validator(kind)(event)
    except fastjsonschema.JsonSchemaValueException as error:
        name = where
        for part in list(error.path or [])[1:]:  # the first is fastjsonschema's "data"
            index = isinstance(part, int) or str(part).isdigit()
            name += f"[{part}]" if index else f".{part}" if name else str(part)
        message = str(error.message).split(" ", 1)[-1]  # "data.run must be object"
        if error.rule == "format":
            hint = _FORMAT_HINTS.get(str(error.rule_definition), str(error.rule_definition))
            message = f"{error.value!r:.80} is not {hint}"
        elif error.rule == "required" and isinstance(error.value, Mapping):
            missing = [f for f in error.rule_definition or () if f not in error.value]
            if missing:
                name = f"{name}.{missing[0]}" if name else missing[0]
                message = "is required"
        name = name or "event"
        raise ValidationError(
            f"{name}: {message} ({kind} of OpenLineage 2-0-2)", field=name
        ) from None
    return kind


_MAX_PARENTS = 256  # how far up a run's parents a new parent link looks for a cycle
_MAX_DEPTH = 24  # an event's nesting: facets are kept as properties nested 32 deep at most
_INT64 = (-(2**63), 2**63 - 1)


def check_json(event: Any, where: str = "") -> None:
    """What the graph keeps must be JSON: no NaN or infinities, integers within 64 bits,
    string keys, nested at most :data:`_MAX_DEPTH` levels (one pass over the event, so the
    facets need no second check when they are stored)."""
    name = where or "event"
    stack: list[tuple[Any, int]] = [(event, 0)]
    while stack:
        value, depth = stack.pop()
        if depth >= _MAX_DEPTH:
            raise ValidationError(f"{name}: nested deeper than {_MAX_DEPTH} levels", field=name)
        if isinstance(value, dict):
            for k in value:
                if type(k) is not str:
                    raise ValidationError(f"{name}: key {k!r:.40} is not a string", field=name)
                _check_text(k, name)
            items: Iterable[Any] = value.values()
        else:
            items = value
        for v in items:
            t = type(v)
            if t is str:
                _check_text(v, name)
                continue
            if t is bool or v is None:
                continue
            if t is dict or t is list:
                stack.append((v, depth + 1))
            elif t is float:
                if not math.isfinite(v):
                    raise ValidationError(f"{name}: {v} is not a JSON number", field=name)
            elif t is int:
                if not _INT64[0] <= v <= _INT64[1]:
                    raise ValidationError(
                        f"{name}: the integer {v} does not fit 64 bits", field=name
                    )
            elif isinstance(v, (dict, list, tuple)):  # built in process: subclasses too
                stack.append((v, depth + 1))
            else:
                raise ValidationError(f"{name}: {t.__name__} is not JSON", field=name)


def _check_text(text: str, name: str) -> None:
    """Text the hub can keep and read back: no NUL (a run's facets refuse it when read) and
    no lone surrogate (not Unicode text; no store writes it as UTF-8)."""
    if "\x00" in text:
        raise ValidationError(f"{name}: {text[:40]!r} holds a NUL character", field=name)
    if lone_surrogate(text):
        raise ValidationError(
            f"{name}: {text[:40]!r} holds a lone surrogate: it is not Unicode text", field=name
        )


def decode_events(body: bytes | str) -> list[dict[str, Any]]:
    """The events in a request body: one JSON event, or a JSON array of them."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise ValidationError("the body nests too deeply", field="body") from None
    except ValueError as e:
        raise ValidationError(f"body: not JSON: {e}", field="body") from None
    events = data if isinstance(data, list) else [data]
    if not events:
        raise ValidationError("body: an empty list of events", field="body")
    if len(events) > MAX_EVENTS:
        raise ValidationError(
            f"body: {len(events)} events in one request; send at most {MAX_EVENTS}", field="body"
        )
    return events


# --- results ----------------------------------------------------------------------------------


@dataclass
class IngestSummary:
    """What one ingestion call wrote."""

    events: int = 0
    runs: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    column_edges: int = 0
    raw: str | None = None  # the artifact id holding the events as they came

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "runs": self.runs,
            "jobs": self.jobs,
            "datasets": self.datasets,
            "versions": self.versions,
            "columnEdges": self.column_edges,
            "raw": self.raw,
        }


@dataclass(frozen=True)
class ColumnLink:
    """One column depending on another: ``column`` of ``version`` (``namespace``/``name``)
    comes from ``from_column`` of ``from_version`` (``distance`` hops from the asked column)."""

    version: str
    namespace: str
    name: str
    column: str
    from_version: str
    from_column: str
    distance: int
    transformations: list[Any]


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in ("openlineage", *parts):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return "sha256:" + h.hexdigest()


def _version_id(dataset: Dataset, digest: str) -> str:
    """The id :class:`DatasetVersion` gives the version ``digest`` of ``dataset`` (built here
    without the model: it is asked for several times an event)."""
    return f"dsv:{dataset.node_id.removeprefix('dataset:')}@{digest}"


def _source_commit(facet: Any, job: Experiment) -> CodeCommit | None:
    """A sourceCode facet without a location (a Spark job's or a dbt model's code as text):
    the code state is the text itself, so the "commit" is its sha256 in a repository named
    after the job (``file:///openlineage/<namespace>/<name>``): runs of the same code share
    it, and a change of code is a new one. The text stays in the job's facets."""
    if not isinstance(facet, Mapping) or not isinstance(facet.get("sourceCode"), str):
        return None
    sha = hashlib.sha256(facet["sourceCode"].encode("utf-8")).hexdigest()
    repo = f"file:///openlineage/{quote(job.project, safe='')}/{quote(job.name, safe='')}"
    try:
        return CodeCommit(repo=repo, sha=sha)
    except ValidationError:
        return None


def _registry_run(run: Node, field: str) -> ValidationError:
    return ValidationError(
        f"{field}: {run.id} is one of the registry's own records "
        f"(kind {run.props.get('kind')!r}); events cannot change it or add to it",
        field=field,
    )


def _own_run(run: Node, project: str, field: str, doing: str = "change it") -> None:
    """An event may change a run it names (or name it as its parent) only when the run is of
    the project the event names for it (a job's namespace) and not one of the registry's own
    records: the editor role an event needs is checked in that project alone, so a run of
    another project is not the event's to move, rewrite or link to."""
    if run.props.get("kind") in REGISTRY_RUN_KINDS:
        raise _registry_run(run, field)
    if run.props.get("project") != project:
        owner = run.props.get("project")
        raise ValidationError(
            f"{field}: {run.id} is a run of "
            + (f"project {owner!r}" if owner else "no project")
            + f"; an event naming job namespace {project!r} for it cannot {doing}",
            field=field,
        )


def _prefixed(e: ValidationError, where: str) -> ValidationError:
    name = f"{where}.{e.field}" if e.field else where
    message = e.message
    if e.field and message.startswith(f"{e.field}: "):  # 'namespace: ...': 'job.namespace: ...'
        return ValidationError(f"{where}.{message}", field=name)
    return ValidationError(f"{where}: {message}", field=name)


class _Batch:
    """The state of one ingestion call: nodes and edges to write, and what was read."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.edges: dict[str, Edge] = {}
        self.summary = IngestSummary()
        #: per run: the dataset version it used, by (namespace, name)
        self.used: dict[str, dict[tuple[str, str], str]] = {}
        #: nodes read from the store in this call (every write of the call is in ``nodes``)
        self.read: dict[str, Node | None] = {}


@functools.lru_cache(maxsize=4096)
def _dataset_model(namespace: str, name: str) -> Dataset:
    """A dataset's model (validated once per name: events name the same tables again and
    again)."""
    return Dataset(namespace=namespace, name=name)


@functools.lru_cache(maxsize=4096)
def _job_models(namespace: str, name: str) -> tuple[Project, Experiment]:
    try:
        project = Project(name=namespace)
    except ValidationError as e:  # the namespace is the project's name: say "namespace"
        raise ValidationError(
            e.message.replace("invalid Project: name", "namespace", 1), field="namespace"
        ) from None
    return project, Experiment(project=project.name, name=name)


def _edge(
    kind: EdgeKind,
    source: str,
    target: str,
    discriminator: str = "",
    *,
    event_time: datetime | None = None,
    asserted_by: str | None = None,
    **props: Any,
) -> Edge:
    """An edge of a fixed shape this module builds from ids it made itself (so the checks of
    :func:`~lineagehub.vocabulary.link` would only cost time); the same id ``link`` gives."""
    return Edge(
        source,
        target,
        kind.value,
        props,
        event_time,
        asserted_by,
        edge_id(kind.value, source, target, discriminator),
    )


class OpenLineageService:
    """Ingests OpenLineage events into a graph store (the raw events into an artifact store)."""

    def __init__(
        self, store: GraphStore, artifacts: ArtifactStore, *, actor: str | None = None
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.actor = actor or default_actor()
        #: Where the events are kept as they came. In a folder store, without a sync per
        #: file: the stock clients send one event a request, and a sync each (5-10 ms) would
        #: cap a hub at ~100 events/s. What a crash of the process can lose is nothing (the
        #: file is written before the graph commits); a power loss, the last moments, as
        #: SQLite's WAL at synchronous=NORMAL may lose the graph's last commits too.
        self.raw_store = artifacts
        if isinstance(artifacts, FileArtifactStore) and artifacts._fsync:
            self.raw_store = FileArtifactStore(artifacts.root, fsync=False)

    def acting_as(self, actor: str) -> OpenLineageService:
        """This service recording its changes under ``actor`` (the server: per request)."""
        if actor == self.actor:
            return self
        clone = copy.copy(self)
        clone.actor = actor
        return clone

    # --- checking -----------------------------------------------------------------------------

    @staticmethod
    def check(events: Sequence[Any]) -> list[str]:
        """Each event's kind, after checking every one against the spec's schema."""
        many = len(events) > 1
        kinds = []
        for i, event in enumerate(events):
            where = f"events[{i}]" if many else ""
            kinds.append(event_kind(event, where))
            check_json(event, where)
        return kinds

    @staticmethod
    def projects(events: Sequence[Mapping[str, Any]]) -> set[str | None]:
        """The projects the events write to (a job's namespace; ``None`` for a DatasetEvent,
        whose dataset belongs to no project): the editor role is needed in each."""
        found: set[str | None] = set()
        for e in events:
            job = e.get("job") if isinstance(e, Mapping) else None
            if isinstance(job, Mapping) and isinstance(job.get("namespace"), str):
                found.add(job["namespace"].strip())
                parent = ((e.get("run") or {}).get("facets") or {}).get("parent")
                if isinstance(parent, Mapping) and isinstance(parent.get("job"), Mapping):
                    pns = parent["job"].get("namespace")
                    if isinstance(pns, str):
                        found.add(pns.strip())
            else:
                found.add(None)
        return found

    # --- ingestion ----------------------------------------------------------------------------

    def ingest(self, events: Sequence[Any], *, keep_raw: bool = True) -> IngestSummary:
        """Check and write ``events`` in one transaction (all or nothing), keep them as they
        came (``keep_raw``) and record the call as one audit entry."""
        if isinstance(events, Mapping):
            events = [events]
        events = list(events)
        if not events:
            raise ValidationError("events: nothing to ingest", field="events")
        kinds = self.check(events)
        many = len(events) > 1
        raw: Artifact | None = None
        if keep_raw:
            lines = b"".join(
                json.dumps(e, sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n"
                for e in events
            )
            info = self.raw_store.put_bytes(lines)
            raw = Artifact(
                digest=info.digest,
                size=info.size,
                media_type=EVENTS_MEDIA_TYPE,
                kind=ArtifactKind.DATA,
                data={"openlineage_events": len(events)},
            )
        batch = _Batch()
        with self.store.transaction():
            self._prefetch(batch, events)
            for i, (event, kind) in enumerate(zip(events, kinds)):
                where = f"events[{i}]" if many else ""
                try:
                    if kind == "RunEvent":
                        self._run_event(batch, event)
                    elif kind == "JobEvent":
                        self._job_event(batch, event)
                    else:
                        self._dataset_event(batch, event)
                except ValidationError as e:
                    raise (_prefixed(e, where) if where else e) from None
            # later events of the call read what earlier ones wrote from the batch
            self._flush(batch)
            agent = Agent(name=self.actor[:256], kind=AgentKind.USER)
            self.store.upsert_nodes([agent.to_node(), *([raw.to_node()] if raw else [])])
            summary = batch.summary
            summary.events = len(events)
            summary.raw = raw.node_id if raw else None
            for name in ("runs", "jobs", "datasets", "versions"):
                setattr(summary, name, list(dict.fromkeys(getattr(summary, name))))
            self.store.append_audit(
                self.actor,
                AUDIT_ACTION,
                summary.raw or "openlineage",
                {
                    "events": len(events),
                    "runs": len(summary.runs),
                    "jobs": len(summary.jobs),
                    "datasets": len(summary.datasets),
                    "versions": len(summary.versions),
                },
            )
        return summary

    def raw_events(self) -> Iterator[dict[str, Any]]:
        """Every event ingested with ``keep_raw``, in the order they were ingested (from the
        audit log's ``openlineage.ingest`` entries and the artifacts they name)."""
        for entry in self.store.iter_audit():
            if entry.action != AUDIT_ACTION or not entry.target.startswith("artifact:"):
                continue
            data = self.artifacts.get_bytes(entry.target.removeprefix("artifact:"))
            for line in data.splitlines():
                if line.strip():
                    yield json.loads(line)

    def replay(self, into: OpenLineageService, batch_size: int = 1000) -> int:
        """Ingest every kept event again into ``into`` (a fresh store, say); returns how
        many. Idempotent: replaying twice gives the same graph."""
        count = 0
        chunk: list[dict[str, Any]] = []
        for event in self.raw_events():
            chunk.append(event)
            if len(chunk) >= batch_size:
                count += into.ingest(chunk).events
                chunk = []
        if chunk:
            count += into.ingest(chunk).events
        return count

    # --- mapping ------------------------------------------------------------------------------

    def _node(self, batch: _Batch, node_id: str) -> Node | None:
        if node_id in batch.nodes:
            return batch.nodes[node_id]
        if node_id not in batch.read:
            batch.read[node_id] = self.store.get_nodes([node_id])[0]
        return batch.read[node_id]

    def _prefetch(self, batch: _Batch, events: Sequence[Mapping[str, Any]]) -> None:
        """Read the runs, jobs and datasets the events name in one query, not one each."""
        ids: list[str] = []
        for e in events:
            try:
                if "run" in e:
                    ids.append("run:" + str(uuid.UUID(e["run"]["runId"])))
                job = e.get("job")
                if job:
                    ids.append(_job_models(job["namespace"], job["name"])[1].node_id)
                for item in [*(e.get("inputs") or ()), *(e.get("outputs") or ())]:
                    ids.append(_dataset_model(item["namespace"], item["name"]).node_id)
            except (ValidationError, KeyError, TypeError, ValueError):
                continue  # the mapping names the field
        wanted = [i for i in dict.fromkeys(ids) if i not in batch.read]
        for i, node in zip(wanted, self.store.get_nodes(wanted)):
            batch.read[i] = node

    def _put(self, batch: _Batch, node: Node) -> None:
        batch.nodes[node.id] = node

    def _link(self, batch: _Batch, edge: Edge) -> None:
        old = batch.edges.get(edge.id)
        if old is not None and old.props and edge.props:
            merged = {**old.props, **edge.props}
            if isinstance(old.props.get("columns"), dict) and "columns" in edge.props:
                merged["columns"] = {**old.props["columns"], **edge.props["columns"]}
            edge = Edge(
                edge.source,
                edge.target,
                edge.kind,
                merged,
                edge.event_time,
                edge.asserted_by,
                edge.id,
            )
        batch.edges[edge.id] = edge

    def _flush(self, batch: _Batch) -> None:
        written = list(batch.nodes.values())
        # the dataset versions these events' runs generated: their project is recorded
        generated = {
            e.source for e in batch.edges.values() if e.kind == EdgeKind.GENERATED_BY.value
        }
        if batch.nodes:
            self.store.upsert_nodes(written)
            batch.nodes.clear()
        if batch.edges:
            self.store.upsert_edges(list(batch.edges.values()))
            batch.edges.clear()
        record_projects(self.store, [n for n in written if n.id in generated])

    def _job(self, batch: _Batch, job: Mapping[str, Any], write_facets: bool) -> Experiment:
        try:
            project, experiment = _job_models(job["namespace"], job["name"])
            facets = dict(job.get("facets") or {}) if write_facets else None
        except ValidationError as e:
            raise _prefixed(e, "job") from None
        existing = self._node(batch, experiment.node_id)
        if existing is None or (
            facets
            and {**(existing.props.get("facets") or {}), **facets} != existing.props.get("facets")
        ):
            node = experiment.to_node()
            node.props.pop("facets", None)
            if facets:
                node.props["facets"] = facets
            self._put(batch, project.to_node())
            self._put(batch, node)
            self._link(batch, _edge(EdgeKind.PART_OF, experiment.node_id, project.node_id))
        batch.summary.jobs.append(experiment.node_id)
        return experiment

    def _run_event(self, batch: _Batch, event: Mapping[str, Any]) -> None:
        when = _parse_time(event["eventTime"])
        assert when is not None  # the schema checked it
        when = _event_time(when)
        run_data = event["run"]
        job = event["job"]
        run_id = "run:" + str(uuid.UUID(run_data["runId"]))
        run_facets = dict(run_data.get("facets") or {})
        job_facets = dict(job.get("facets") or {})
        experiment = self._job(batch, job, bool(job_facets))
        producer = str(event["producer"])[:256]
        state = _STATES.get(str(event.get("eventType") or "OTHER"))

        existing = self._node(batch, run_id)
        if existing is not None:
            _own_run(existing, experiment.project, "run.runId")
        props: dict[str, Any] = dict(existing.props) if existing is not None else {}
        # an error cleared by an earlier event of this request stays cleared
        cleared = props.get("error") is DELETE
        if cleared:
            del props["error"]
        stamp = to_iso(when)
        started = props.get("started_at")
        if not isinstance(started, str) or stamp < started:
            props["started_at"] = stamp
        status = props.get("status") or RunStatus.RUNNING.value
        if state is not None and state.value in _TERMINAL:
            ended = props.get("ended_at")
            later = not isinstance(ended, str) or stamp > ended
            # at the same eventTime the graver end wins, whichever arrived last (a producer's
            # retries and a transport's reordering must not decide how a run ended)
            graver = stamp == ended and _GRAVITY[state.value] >= _GRAVITY.get(status, -1)
            if status not in _TERMINAL or later or graver:
                props["status"] = state.value
                props["ended_at"] = stamp
                if state is not RunStatus.FAILED and props.pop("error", None) is not None:
                    cleared = True  # a FAIL's error, overtaken by a later end
        else:
            props.setdefault("status", status)
        error = run_facets.get("errorMessage")
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            props["error"] = error["message"][:10_000]
        facets = dict(props.get("facets") or {})
        facets["run"] = {**(facets.get("run") or {}), **run_facets}
        facets["job"] = {**(facets.get("job") or {}), **job_facets}
        props.update(
            name=props.get("name") or job["name"],
            kind=props.get("kind") or RunKind.TRANSFORM.value,
            project=experiment.project,
            # a run's job is the one it was first recorded under: an event naming another
            # job of the project for the same runId (a producer reusing ids) does not move it
            experiment=props.get("experiment") or experiment.name,
            facets=facets,
        )
        own_job = props["experiment"] == experiment.name
        used = batch.used.get(run_id)
        if used is None:
            used = batch.used[run_id] = self._used_by(run_id, existing is not None)
        inputs: dict[tuple[str, str], str] = {}
        for i, item in enumerate(event.get("inputs") or ()):
            try:
                dataset = self._dataset(batch, item)
            except ValidationError as e:
                raise _prefixed(e, f"inputs[{i}]") from None
            version = self._input_version(batch, dataset, item, used, run_id)
            inputs[(dataset.namespace, dataset.name)] = version
            used[(dataset.namespace, dataset.name)] = version
            self._link(
                batch,
                _edge(EdgeKind.USED, run_id, version, UsedRole.INPUT.value,
                      event_time=when, asserted_by=producer, role=UsedRole.INPUT.value),
            )  # fmt: skip
            if item.get("inputFacets"):
                facets["inputs"] = {
                    **(facets.get("inputs") or {}),
                    f"{dataset.namespace}/{dataset.name}": item["inputFacets"],
                }
        # and its parent the first one named (a second parent would be a second CHILD_OF)
        parent_id = props.get("parent") or self._parent(batch, run_facets.get("parent"), when)
        if parent_id == run_id:
            raise ValidationError(
                "run.facets.parent.run.runId: a run cannot be its own parent",
                field="run.facets.parent.run.runId",
            )
        if parent_id is not None and self._descends(batch, parent_id, run_id):
            raise ValidationError(
                f"run.facets.parent.run.runId: {parent_id} is a child of {run_id} (or further"
                " down): a run cannot be its own ancestor",
                field="run.facets.parent.run.runId",
            )
        if parent_id is not None:
            props["parent"] = parent_id
        try:
            run = Run(
                id=run_id,
                **{k: v for k, v in props.items() if k in Run.model_fields and k != "facets"},
            )
        except ValidationError as e:
            raise _prefixed(e, "run") from None
        node = run.to_node()
        node.props["facets"] = facets  # JSON checked with the whole event (check_json)
        if cleared and "error" not in node.props:
            node.props["error"] = DELETE
        self._put(batch, node)
        batch.summary.runs.append(run_id)
        if own_job:
            self._link(batch, _edge(EdgeKind.PART_OF, run_id, experiment.node_id))
        if parent_id is not None:
            self._link(batch, _edge(EdgeKind.CHILD_OF, run_id, parent_id))
        commit = self._commit(job_facets.get("sourceCodeLocation")) or _source_commit(
            job_facets.get("sourceCode"), experiment
        )
        if commit is not None:
            self._put(batch, commit.to_node())
            self._link(batch, _edge(EdgeKind.RAN_CODE, run_id, commit.node_id))

        for i, item in enumerate(event.get("outputs") or ()):
            try:
                self._output(batch, item, run_id, when, producer, inputs, used)
            except ValidationError as e:
                raise _prefixed(e, f"outputs[{i}]") from None

    def _descends(self, batch: _Batch, run_id: str, ancestor: str) -> bool:
        """Whether ``ancestor`` is up ``run_id``'s chain of parents (followed as far as
        :data:`_MAX_PARENTS`: a chain that long is not a cycle this event makes)."""
        seen = {run_id}
        for _ in range(_MAX_PARENTS):
            node = self._node(batch, run_id)
            parent = node.props.get("parent") if node is not None else None
            if not isinstance(parent, str) or parent in seen:
                return False
            if parent == ancestor:
                return True
            seen.add(parent)
            run_id = parent
        return False

    def _parent(self, batch: _Batch, facet: Any, when: datetime) -> str | None:
        """The parent run's id; a placeholder run is written for a parent not seen yet."""
        if not isinstance(facet, Mapping):
            return None
        run = facet.get("run")
        job = facet.get("job")
        if not isinstance(run, Mapping) or not isinstance(job, Mapping):
            raise ValidationError(
                "run.facets.parent: needs run.runId and job.namespace, job.name",
                field="run.facets.parent",
            )
        try:
            parent_id = "run:" + str(uuid.UUID(str(run.get("runId"))))
        except ValueError:
            raise ValidationError(
                "run.facets.parent.run.runId: not a UUID", field="run.facets.parent.run.runId"
            ) from None
        known = self._node(batch, parent_id)
        if known is not None:
            # the editor role was checked in the namespace the facet names: the parent must
            # be a run of that project for the link to be the event's to make
            try:
                project, _ = _job_models(job.get("namespace"), job.get("name"))
            except ValidationError as e:
                raise _prefixed(e, "run.facets.parent.job") from None
            _own_run(known, project.name, "run.facets.parent.run.runId", "link to it")
        else:
            try:
                experiment = self._job(batch, job, False)
            except ValidationError as e:
                raise _prefixed(e, "run.facets.parent") from None
            placeholder = Run(
                id=parent_id,
                name=experiment.name,
                kind=RunKind.TRANSFORM,
                started_at=when,
                project=experiment.project,
                experiment=experiment.name,
            )
            self._put(batch, placeholder.to_node())
            self._link(batch, _edge(EdgeKind.PART_OF, parent_id, experiment.node_id))
        return parent_id

    @staticmethod
    def _commit(facet: Any) -> CodeCommit | None:
        """A CodeCommit from a sourceCodeLocation facet naming a repository and a sha; None
        when it does not (the facet is kept as data either way)."""
        if not isinstance(facet, Mapping):
            return None
        repo = facet.get("repoUrl") or facet.get("url")
        sha = facet.get("version")
        if not isinstance(repo, str) or not isinstance(sha, str):
            return None
        try:
            branch = facet.get("branch") if isinstance(facet.get("branch"), str) else None
            return CodeCommit(repo=repo, sha=sha, branch=branch)
        except ValidationError:
            return None

    def _dataset(self, batch: _Batch, item: Mapping[str, Any]) -> Dataset:
        facets = dict(item.get("facets") or {})
        dataset = _dataset_model(item["namespace"], item["name"])
        existing = self._node(batch, dataset.node_id)
        props = dict(existing.props) if existing is not None else dataset.to_node().props
        if facets:
            props["facets"] = {**(props.get("facets") or {}), **facets}
        if existing is None or props != existing.props:  # unchanged: nothing to write
            self._put(batch, Node(dataset.node_id, NodeKind.DATASET.value, props))
        batch.summary.datasets.append(dataset.node_id)
        return dataset

    def _used_by(self, run_id: str, known: bool) -> dict[tuple[str, str], str]:
        """The dataset versions a run already used, by (namespace, name)."""
        if not known:
            return {}
        found: dict[tuple[str, str], str] = {}
        adjacent = self.store.neighbors([run_id], Direction.UPSTREAM, [EdgeKind.USED.value])
        for a in adjacent[run_id]:
            node = a.node
            if node is not None and node.label == NodeKind.DATASET_VERSION.value:
                found[(str(node.props.get("namespace")), str(node.props.get("name")))] = node.id
        return found

    def _version(
        self, batch: _Batch, dataset: Dataset, digest: str, facets: Mapping[str, Any] | None
    ) -> str:
        """The id of the version ``digest`` of ``dataset``, written if new."""
        version_id = _version_id(dataset, digest)
        if self._node(batch, version_id) is None:
            version = DatasetVersion(namespace=dataset.namespace, name=dataset.name, digest=digest)
            node = version.to_node()
            if facets:
                node.props["facets"] = dict(facets)
            self._put(batch, node)
            self._link(batch, _edge(EdgeKind.VERSION_OF, version.node_id, dataset.node_id))
            batch.summary.versions.append(version.node_id)
        return version_id

    def _input_version(
        self,
        batch: _Batch,
        dataset: Dataset,
        item: Mapping[str, Any],
        used: Mapping[tuple[str, str], str],
        run_id: str,
    ) -> str:
        key = (dataset.namespace, dataset.name)
        facets = item.get("facets") or {}
        named = (facets.get("version") or {}).get("datasetVersion")
        if isinstance(named, str) and named:
            return self._version(batch, dataset, _digest(*key, "version", named), None)
        if key in used:
            return used[key]
        node = self._node(batch, dataset.node_id)
        head = node.props.get("head_version") if node is not None else None
        if isinstance(head, str) and head != self._output_id(dataset, run_id, None):
            return head
        return self._version(batch, dataset, _digest(*key, "external"), None)

    @staticmethod
    def _output_id(dataset: Dataset, run_id: str, named: str | None) -> str:
        key = (dataset.namespace, dataset.name)
        digest = _digest(*key, "version", named) if named else _digest(*key, "run", run_id)
        return _version_id(dataset, digest)

    def _output(
        self,
        batch: _Batch,
        item: Mapping[str, Any],
        run_id: str,
        when: datetime,
        producer: str,
        inputs: Mapping[tuple[str, str], str],
        used: Mapping[tuple[str, str], str],
    ) -> None:
        dataset = self._dataset(batch, item)
        facets = dict(item.get("facets") or {})
        out_facets = dict(item.get("outputFacets") or {})
        named = (facets.get("version") or {}).get("datasetVersion")
        named = named if isinstance(named, str) and named else None
        version_id = self._output_id(dataset, run_id, named)
        existing = self._node(batch, version_id)
        digest = version_id.rsplit("@", 1)[1]
        props: dict[str, Any] = (
            dict(existing.props)
            if existing is not None
            else DatasetVersion(namespace=dataset.namespace, name=dataset.name, digest=digest)
            .to_node()
            .props
        )
        props["facets"] = {**(props.get("facets") or {}), **facets, **out_facets}
        schema = facets.get("schema")
        if isinstance(schema, Mapping) and isinstance(schema.get("fields"), list):
            props["columns"] = [
                Column(name=f["name"], dtype=str(f.get("type") or "unknown")).model_dump(
                    exclude_none=True
                )
                for f in schema["fields"]
                if isinstance(f, Mapping) and isinstance(f.get("name"), str)
            ]
        stats = out_facets.get("outputStatistics")
        count = stats.get("rowCount") if isinstance(stats, Mapping) else None
        if isinstance(count, int) and not isinstance(count, bool):  # true is no count
            props["row_count"] = count
        if isinstance(props.get("row_count"), int) and props["row_count"] < 0:
            raise ValidationError(
                "outputFacets.outputStatistics.rowCount: a count is not negative",
                field="outputFacets.outputStatistics.rowCount",
            )
        node = Node(version_id, NodeKind.DATASET_VERSION.value, props)
        self._put(batch, node)
        if existing is None:
            batch.summary.versions.append(version_id)
        self._link(batch, _edge(EdgeKind.VERSION_OF, version_id, dataset.node_id))
        self._link(
            batch,
            _edge(EdgeKind.GENERATED_BY, version_id, run_id, event_time=when,
                  asserted_by=producer),
        )  # fmt: skip
        # the dataset's head: the newest write by event time
        head = self._node(batch, dataset.node_id)
        assert head is not None  # written by _dataset
        head_props = dict(head.props)
        at = head_props.get("head_at")
        if not isinstance(at, str) or to_iso(when) >= at:
            head_props["head_version"] = version_id
            head_props["head_at"] = to_iso(when)
            self._put(batch, Node(head.id, head.label, head_props))
        lineage = facets.get("columnLineage")
        if isinstance(lineage, Mapping):
            self._column_lineage(batch, lineage, version_id, run_id, when, producer, inputs, used)

    def _column_lineage(
        self,
        batch: _Batch,
        facet: Mapping[str, Any],
        version_id: str,
        run_id: str,
        when: datetime,
        producer: str,
        inputs: Mapping[tuple[str, str], str],
        used: Mapping[tuple[str, str], str],
    ) -> None:
        """``DERIVED_FROM`` edges from the output version to each input version its columns
        come from, with {output column: [{field, transformations}]} on the edge."""
        by_source: dict[str, dict[str, list[dict[str, Any]]]] = {}
        fields = facet.get("fields")
        if not isinstance(fields, Mapping):
            raise ValidationError(
                "facets.columnLineage.fields: expected an object of output columns",
                field="facets.columnLineage.fields",
            )

        def source(ref: Mapping[str, Any], where: str) -> str:
            try:
                ds = _dataset_model(ref.get("namespace"), ref.get("name"))
            except ValidationError as e:
                raise _prefixed(e, where) from None
            key = (ds.namespace, ds.name)
            if key in inputs:
                return inputs[key]
            self._put(batch, self._node(batch, ds.node_id) or ds.to_node())
            return self._input_version(batch, ds, {}, used, run_id)

        for column, spec in fields.items():
            where = f"facets.columnLineage.fields.{column}"
            refs = spec.get("inputFields") if isinstance(spec, Mapping) else None
            if not isinstance(refs, list):
                raise ValidationError(
                    f"{where}.inputFields: expected a list", field=f"{where}.inputFields"
                )
            for j, ref in enumerate(refs):
                if not isinstance(ref, Mapping) or not isinstance(ref.get("field"), str):
                    raise ValidationError(
                        f"{where}.inputFields[{j}]: needs namespace, name and field",
                        field=f"{where}.inputFields[{j}]",
                    )
                target = source(ref, f"{where}.inputFields[{j}]")
                entry: dict[str, Any] = {"field": ref["field"]}
                transformations = ref.get("transformations")
                if isinstance(transformations, list):
                    entry["transformations"] = transformations
                for key in ("transformationDescription", "transformationType"):
                    if isinstance(spec.get(key), str):
                        entry[key] = spec[key]
                by_source.setdefault(target, {}).setdefault(str(column), []).append(entry)
        for target, columns in by_source.items():
            if target == version_id:
                continue
            self._link(  # columns: JSON already checked with the event (check_json)
                batch,
                _edge(EdgeKind.DERIVED_FROM, version_id, target, event_time=when,
                      asserted_by=producer, columns=columns),
            )  # fmt: skip
            batch.summary.column_edges += 1

    def _job_event(self, batch: _Batch, event: Mapping[str, Any]) -> None:
        self._job(batch, event["job"], bool(event["job"].get("facets") or {}))
        for side in ("inputs", "outputs"):
            for i, item in enumerate(event.get(side) or ()):
                try:
                    self._dataset(batch, item)
                except ValidationError as e:
                    raise _prefixed(e, f"{side}[{i}]") from None

    def _dataset_event(self, batch: _Batch, event: Mapping[str, Any]) -> None:
        try:
            self._dataset(batch, event["dataset"])
        except ValidationError as e:
            raise _prefixed(e, "dataset") from None

    def column_lineage(
        self,
        dataset: str,
        column: str,
        *,
        downstream: bool = True,
        depth: int = 3,
        max_links: int = 10_000,
    ) -> list[ColumnLink]:
        """:func:`column_lineage` over this service's store."""
        return column_lineage(
            self.store, dataset, column, downstream=downstream, depth=depth, max_links=max_links
        )


# --- column lineage ----------------------------------------------------------------------------


def column_lineage(
    store: GraphStore,
    dataset: str,
    column: str,
    *,
    downstream: bool = True,
    depth: int = 3,
    max_links: int = 10_000,
) -> list[ColumnLink]:
    """Which columns depend on ``column`` of ``dataset`` (``downstream``), or which it
    depends on (upstream), over column-level ``DERIVED_FROM`` edges, ``depth`` hops at
    most. ``dataset`` is a dataset version id, a dataset id (``dataset:<ns>/<name>``:
    every version of it) or a reference to a version (``dataset:<ns>/<name>@latest``)."""
    if not isinstance(column, str) or not column:
        raise ValidationError("column: give a column name", field="column")
    if not 1 <= depth <= 20:
        raise ValidationError("depth: between 1 and 20", field="depth")
    start = _versions_of(store, dataset)
    frontier = {(v, column) for v in start}
    seen = set(frontier)
    links: list[ColumnLink] = []
    direction = Direction.DOWNSTREAM if downstream else Direction.UPSTREAM
    for distance in range(1, depth + 1):
        if not frontier:
            break
        ids = list(dict.fromkeys(v for v, _ in frontier))
        adjacent = store.neighbors(ids, direction, [EdgeKind.DERIVED_FROM.value])
        nxt: set[tuple[str, str]] = set()
        for version, col in sorted(frontier):
            for a in adjacent.get(version, ()):
                columns = a.edge.props.get("columns") or {}
                if a.node is None or not isinstance(columns, Mapping):
                    continue
                for out_col, entries in columns.items():
                    for entry in entries if isinstance(entries, list) else ():
                        if not isinstance(entry, Mapping):
                            continue
                        if downstream and entry.get("field") == col:
                            hit = (a.edge.source, str(out_col))
                            origin = (version, col)
                        elif not downstream and out_col == col:
                            hit = (a.edge.target, str(entry.get("field")))
                            origin = (version, col)
                        else:
                            continue
                        node = a.node
                        links.append(
                            ColumnLink(
                                version=hit[0],
                                namespace=str(node.props.get("namespace")),
                                name=str(node.props.get("name")),
                                column=hit[1],
                                from_version=origin[0],
                                from_column=origin[1],
                                distance=distance,
                                transformations=list(entry.get("transformations") or []),
                            )
                        )
                        if hit not in seen:
                            seen.add(hit)
                            nxt.add(hit)
                        if len(links) >= max_links:
                            return links
        frontier = nxt
    return links


def _versions_of(store: GraphStore, ref: str) -> list[str]:
    if not isinstance(ref, str) or not ref:
        raise ValidationError("dataset: give a dataset or dataset version id", field="dataset")
    node = store.get_nodes([ref])[0]
    if node is None:  # a reference: dataset:<ns>/<name>@latest, @sha256:..., @<prefix>
        from lineagehub.services.lineage import LineageService

        node = store.get_nodes([LineageService(store).resolve(ref)])[0]
    if node is None:
        raise NotFoundError(f"dataset: nothing with id {ref!r}", ids=[ref])
    if node.label == NodeKind.DATASET_VERSION.value:
        return [node.id]
    if node.label != NodeKind.DATASET.value:
        raise ValidationError(
            f"dataset: {ref!r} is a {node.label}, not a Dataset or DatasetVersion",
            field="dataset",
        )
    adjacent = store.neighbors([node.id], Direction.DOWNSTREAM, ["VERSION_OF"])
    return [a.node.id for a in adjacent[node.id] if a.node is not None]


__all__ = [
    "AUDIT_ACTION",
    "MAX_EVENTS",
    "SCHEMAS",
    "ColumnLink",
    "IngestSummary",
    "OpenLineageService",
    "column_lineage",
    "decode_events",
    "event_kind",
]
