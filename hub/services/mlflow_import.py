"""MLflow histories imported: experiments, runs, metric histories, datasets, models, registry.

Read through MLflow's own client (the ``mlflow`` extra: ``mlflow-skinny``, imported lazily),
from any tracking URI it takes: a ``sqlite:///`` file, a ``./mlruns`` folder (``file://``),
or an MLflow server (``http(s)://``). What arrives, as graph facts:

=============================  ===============================================================
MLflow                         LineageHub
=============================  ===============================================================
experiment                     ``Experiment`` of that name in ``Project`` *project* (an option,
                               ``mlflow`` by default), its tags and description
run                            ``Run`` ``run:mlflow-<run id>``: name, status (SCHEDULED ->
                               RUNNING), start and end times, params (MLflow's strings, as
                               they are), tags, the user (``ASSOCIATED_WITH`` an ``Agent``),
                               entry point, ``CHILD_OF`` its parent run, ``RAN_CODE`` the git
                               commit MLflow recorded
metric                         the full history of every key (step, value, time; NaN and
                               infinities too) in the store's series; the last value on the run
dataset input                  ``USED`` (role from ``mlflow.data.context``: training ->
                               ``train``, validation, test, else ``input``) a ``DatasetVersion``
                               (namespace: the source type, name, MLflow's digest; the schema's
                               columns; source and profile as facets)
logged model (MLflow 3)        an ``Artifact`` of kind ``model`` ``GENERATED_BY`` its run
registered model, version      ``Model``, ``ModelVersion`` with MLflow's version numbers, stage,
                               aliases, tags, description, ``GENERATED_BY`` its run
artifacts                      copied into the artifact store (content-addressed; a directory
                               as a deterministic tar) or, with ``copy_artifacts=False``,
                               referenced (a small JSON document naming the MLflow URI)
=============================  ===============================================================

The import is one transaction, all of it or nothing, under the importing actor: one audit
entry (``mlflow.import``, target ``mlflow:<the tracking URI without credentials>``) for what
it wrote, then the registry's own entries for the aliases and stages it set through
:class:`~lineagehub.services.registry.RegistryService` (so the registry's history and
``holderAt`` know them; only differences are set, so importing again records nothing). Ids are deterministic, so importing again changes nothing; runs that
had already finished when imported, with the same end time, are skipped (``incremental``):
only what is new or still running is read again. What cannot be mapped (a key our
vocabulary refuses, a version number taken by another model version) is listed in the
summary, never silently dropped.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import math
import os
import tarfile
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lineagehub.graph import (
    DELETE,
    ConfigError,
    Edge,
    GraphStore,
    Node,
    SeriesPoint,
    ValidationError,
)
from lineagehub.graph.model import MAX_TIME, MIN_TIME, edge_id, to_iso
from lineagehub.services.access import record_projects
from lineagehub.services.tracking import default_actor
from lineagehub.vocabulary import (
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
    Model,
    ModelVersion,
    Project,
    Run,
    RunKind,
    RunStatus,
    Stage,
    UsedRole,
)

if TYPE_CHECKING:
    from lineagehub.artifacts import ArtifactStore

#: The audit action of one import.
AUDIT_ACTION = "mlflow.import"
#: The project imported experiments belong to unless told otherwise.
DEFAULT_PROJECT = "mlflow"
#: MLflow pages at most this many items a call.
PAGE = 1000
#: The media type of a referenced (not copied) artifact: a JSON document naming it.
REFERENCE_MEDIA_TYPE = "application/vnd.lineagehub.reference+json"

_STATUS = {
    "RUNNING": RunStatus.RUNNING,
    "SCHEDULED": RunStatus.RUNNING,
    "FINISHED": RunStatus.FINISHED,
    "FAILED": RunStatus.FAILED,
    "KILLED": RunStatus.KILLED,
}
_ROLES = {
    "training": UsedRole.TRAIN,
    "train": UsedRole.TRAIN,
    "validation": UsedRole.VALIDATION,
    "eval": UsedRole.VALIDATION,
    "evaluation": UsedRole.VALIDATION,
    "test": UsedRole.TEST,
    "testing": UsedRole.TEST,
}

#: ``progress(what, done, total)``: called as the import goes (the CLI draws a bar).
Progress = Callable[[str, int, int], None]


@dataclass
class ImportSummary:
    """What an import brought in, and what it could not map."""

    source: str = ""
    experiments: int = 0
    runs: int = 0
    runs_unchanged: int = 0
    params: int = 0
    metric_points: int = 0
    datasets: int = 0
    logged_models: int = 0
    models: int = 0
    versions: int = 0
    aliases: int = 0
    aliases_removed: int = 0
    artifacts_copied: int = 0
    artifacts_referenced: int = 0
    unmapped: list[dict[str, str]] = field(default_factory=list)

    def skip(self, what: str, ref: str, reason: str) -> None:
        self.unmapped.append({"what": what, "ref": ref, "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "experiments": self.experiments,
            "runs": self.runs,
            "runsUnchanged": self.runs_unchanged,
            "params": self.params,
            "metricPoints": self.metric_points,
            "datasets": self.datasets,
            "loggedModels": self.logged_models,
            "models": self.models,
            "versions": self.versions,
            "aliases": self.aliases,
            "aliasesRemoved": self.aliases_removed,
            "artifactsCopied": self.artifacts_copied,
            "artifactsReferenced": self.artifacts_referenced,
            "unmapped": self.unmapped,
        }


def _mlflow() -> Any:
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError(
            "importing from MLflow needs MLflow's client: pip install 'lineagehub[mlflow]'"
        ) from None
    return MlflowClient


def tracking_uri(source: str) -> str:
    """MLflow's tracking URI for ``source``: ``sqlite:///``, ``http(s)://``, ``file://`` and
    ``databricks`` as they are; a folder path (``./mlruns``) as its ``file://`` URI."""
    if not isinstance(source, str) or not source.strip():
        raise ValidationError("from: give an MLflow tracking URI or an mlruns folder", "from")
    source = source.strip()
    if source.startswith("file:"):
        _check_mlruns(Path(urllib.parse.unquote(urllib.parse.urlsplit(source).path)), source)
        return source
    if source.startswith("sqlite:"):
        _check_mlflow_db(source)
        return source
    if "://" in source or source.startswith("databricks"):
        return source
    path = Path(source).expanduser()
    if not path.is_dir():
        raise ValidationError(
            f"from: {source!r} is neither a tracking URI (sqlite:///..., http://...) nor a "
            "folder (an mlruns folder)",
            "from",
        )
    _check_mlruns(path, source)
    return path.resolve().as_uri()


def _check_mlruns(path: Path, source: str) -> None:
    """``path`` must be an MLflow folder store (experiments' ``meta.yaml`` in it): MLflow
    opening any other folder writes its own layout into it (``.trash``, ``models``)."""
    if not path.is_dir() or not any(path.glob("*/meta.yaml")):
        raise ValidationError(
            f"from: {source!r} is not an MLflow folder store (no experiment's meta.yaml in "
            "it); nothing was read or written",
            "from",
        )


def _check_mlflow_db(source: str) -> None:
    """``source`` must name an existing MLflow SQLite database, read here read-only: MLflow
    opening a missing file, or another database (a LineageHub store given as --from), makes
    its tables in it."""
    import sqlite3

    from lineagehub.graph.uri import sqlite_path

    try:
        path = sqlite_path(source)
    except ConfigError as e:
        raise ValidationError(f"from: {e}", "from") from None
    if path is None or not Path(path).is_file():
        raise ValidationError(f"from: there is no MLflow database at {source!r}", "from")
    try:
        with contextlib.closing(
            sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        ) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as e:
        raise ValidationError(f"from: {source!r} is not a readable database: {e}", "from") from None
    if not {"experiments", "runs", "alembic_version"} <= tables:
        raise ValidationError(
            f"from: {source!r} is not an MLflow database (no experiments and runs tables); "
            "--store names the hub, --from the MLflow store. Nothing was written to it",
            "from",
        )


def _redacted(uri: str) -> str:
    from lineagehub.graph import redact

    return str(redact(uri))


_STEPS = (-(2**31), 2**31 - 1)  # a metric step, as the hub keeps it


def _time(ms: Any) -> datetime | None:
    """MLflow's time (ms since the epoch); ``None`` when it has none, or one the hub cannot
    keep (MLflow takes any 64-bit count: nanoseconds logged as milliseconds are the year
    56 million, and one such point failed the whole import with a ValueError)."""
    if ms is None:
        return None
    try:
        when = datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    return when if MIN_TIME <= when <= MAX_TIME else None


def _run_times(info: Any) -> tuple[datetime, datetime | None, list[tuple[str, str]]]:
    """A run's start and end as the hub keeps them, and what was changed to get there (as
    ``(field, reason)``): an end before the start (clocks that disagreed) or one the hub
    cannot keep is recorded at the start; a start it cannot keep at the end, else now."""
    notes = []
    ended = _time(info.end_time)
    if ended is None and info.end_time is not None:
        notes.append(("end_time", f"{info.end_time} ms is no time the hub keeps"))
    started = _time(info.start_time)
    if started is None:
        if info.start_time is not None:
            notes.append(("start_time", f"{info.start_time} ms is no time the hub keeps: recorded at the run's end, else now"))  # fmt: skip
        started = ended or datetime.now(timezone.utc)
    if ended is None and info.end_time is not None:
        ended = started
        notes[0] = ("end_time", f"{notes[0][1]}: recorded at the run's start")
    elif ended is not None and ended < started:  # clocks that disagreed
        notes.append(("end_time", "before the run's start: recorded at its start"))
        ended = started
    return started, ended, notes


def _edge(kind: EdgeKind, source: str, target: str, discriminator: str = "", **props: Any) -> Edge:
    return Edge(
        source, target, kind.value, props, id=edge_id(kind.value, source, target, discriminator)
    )


@contextlib.contextmanager
def _tracking_default(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking URI set to ``uri`` while an import reads it: MLflow 3
    resolves a ``runs:/<run>/<name>`` URI naming a logged model through a client of its
    default tracking URI, not the one it is given (so such a model version's files were not
    found, and MLflow made an empty ``mlflow.db`` in the working directory). Restored after,
    with the ``MLFLOW_TRACKING_URI`` variable MLflow sets for it. MLflow's own progress bar
    per artifact download is off meanwhile: thousands of them on stderr buried the summary
    and the import's own bar, under ``--quiet`` and ``--json`` too."""
    from mlflow.tracking._tracking_service import utils

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        with utils._use_tracking_uri(uri):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _paged(call: Callable[..., Any], **kwargs: Any) -> Iterable[Any]:
    token = None
    while True:
        page = call(max_results=PAGE, page_token=token, **kwargs)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


class MlflowImporter:
    """Imports an MLflow tracking store (and its model registry) into the hub."""

    def __init__(
        self, store: GraphStore, artifacts: ArtifactStore, *, actor: str | None = None
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.actor = actor or default_actor()
        self._tracking_uri: str | None = None
        self._registry_uri: str | None = None
        #: (version id, MLflow's stage, MLflow's aliases) to apply through the registry
        self._registry_state: list[tuple[str, Stage, list[str]]] = []
        #: each imported model's aliases in MLflow now (one it lost is removed here too)
        self._mlflow_aliases: dict[str, set[str]] = {}

    def acting_as(self, actor: str) -> MlflowImporter:
        clone = copy.copy(self)
        clone.actor = actor
        return clone

    def run(
        self,
        source: str,
        *,
        registry_uri: str | None = None,
        project: str = DEFAULT_PROJECT,
        copy_artifacts: bool = True,
        incremental: bool = True,
        progress: Progress | None = None,
        workers: int = 8,
    ) -> ImportSummary:
        """Import everything ``source`` holds (see the module's table); returns the summary.

        ``copy_artifacts`` copies run, logged-model and model-version artifacts into the
        artifact store; ``False`` references them. ``incremental`` skips runs imported before
        that had finished then (same status and end time). ``workers`` threads read runs'
        metric histories and artifact lists from MLflow at once."""
        client_cls = _mlflow()
        uri = tracking_uri(source)
        if uri.startswith("file:"):
            # MLflow 3 refuses its own folder store unless allowed: reading an old ./mlruns is
            # what an import is for (the variable only lifts that refusal)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        if registry_uri is not None:
            registry_uri = tracking_uri(registry_uri)  # checked as --from is
        Project(name=project)  # checked before anything is read
        with _tracking_default(uri):
            return self._import(
                client_cls(tracking_uri=uri, registry_uri=registry_uri or uri),
                uri,
                registry_uri or uri,
                project,
                copy_artifacts,
                incremental,
                progress,
                workers,
            )

    def _import(
        self,
        client: Any,
        uri: str,
        registry_uri: str,
        project: str,
        copy_artifacts: bool,
        incremental: bool,
        progress: Progress | None,
        workers: int,
    ) -> ImportSummary:
        self._registry_state = []
        self._mlflow_aliases = {}
        self._tracking_uri, self._registry_uri = uri, registry_uri
        summary = ImportSummary(source=_redacted(uri))
        tick = progress or (lambda what, done, total: None)

        # Read everything first (MLflow calls, artifact copies), then write in one transaction.
        from mlflow.entities import ViewType

        experiments = list(_paged(client.search_experiments, view_type=ViewType.ALL))
        nodes: dict[str, Node] = {}
        edges: dict[str, Edge] = {}
        points: list[SeriesPoint] = []
        project_node = Project(name=project)
        nodes[project_node.node_id] = project_node.to_node()
        runs = []
        deleted = "deleted"  # MLflow's lifecycle stage of what is in its trash
        for exp in experiments:
            if getattr(exp, "lifecycle_stage", None) == deleted:
                summary.skip("experiment", str(exp.experiment_id), "deleted in MLflow")
                continue
            try:
                experiment = Experiment(
                    project=project,
                    name=exp.name,
                    description=(exp.tags or {}).get("mlflow.note.content"),
                    tags={k: v for k, v in (exp.tags or {}).items() if _key_ok(k)},
                )
            except ValidationError as e:
                summary.skip("experiment", str(exp.experiment_id), e.message)
                continue
            nodes[experiment.node_id] = experiment.to_node()
            edges_add(edges, _edge(EdgeKind.PART_OF, experiment.node_id, project_node.node_id))
            summary.experiments += 1
            for r in self._experiment_runs(client, summary, uri, exp.experiment_id):
                if getattr(r.info, "lifecycle_stage", None) == deleted:
                    summary.skip("run", r.info.run_id, "deleted in MLflow")
                    continue
                runs.append((experiment, r))
        known = {
            n.id: n
            for n in self.store.get_nodes([f"run:mlflow-{r.info.run_id}" for _, r in runs])
            if n is not None
        }

        def read(item: tuple[Experiment, Any]) -> _Fetched | None:
            # what a run needs from MLflow besides itself: one call per metric key and per
            # artifact folder, made by several threads at once (a server's round trips
            # overlap; a database answers several readers)
            r = item[1]
            if incremental and _unchanged(known.get(f"run:mlflow-{r.info.run_id}"), r, item[0]):
                return None
            keys = [k for k in (r.data.metrics or {}) if _key_ok(k)]
            history = {k: client.get_metric_history(r.info.run_id, k) for k in keys}
            files, error = _list_files(client, r.info.run_id)
            return _Fetched(history, files, error)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for i, (item, fetched) in enumerate(zip(runs, pool.map(read, runs))):
                tick("runs", i, len(runs))
                experiment, r = item
                if fetched is None:
                    summary.runs_unchanged += 1
                    continue
                self._run(client, summary, experiment, r, fetched, nodes, edges, points, copy_artifacts)  # fmt: skip
        tick("runs", len(runs), len(runs))
        _break_cycles(summary, nodes, edges, known)
        # the runs the hub will hold (written now, or there already): a run skipped as
        # invalid is no end for a version's or a logged model's edge
        run_ids = {
            rid for _, r in runs if (rid := f"run:mlflow-{r.info.run_id}") in nodes or rid in known
        }
        for exp in experiments:
            self._logged_models(client, summary, exp, run_ids, nodes, edges, copy_artifacts)
        self._registry(client, summary, run_ids, nodes, edges, copy_artifacts, tick)

        with self.store.transaction():
            agent = Agent(name=self.actor[:256], kind=AgentKind.USER)
            nodes.setdefault(agent.node_id, agent.to_node())
            # a version's stage and aliases as the hub has them now, not as they were read
            # before: a promotion or an alias set meanwhile (another import's too) was undone
            # behind the registry's history, which then set MLflow's again
            versions = [n.id for n in nodes.values() if n.label == "ModelVersion"]
            for now in self.store.get_nodes(versions):
                if now is not None:
                    for prop in ("stage", "aliases"):
                        nodes[now.id].props[prop] = now.props.get(prop)
            # parents first: a run's CHILD_OF may name a run of another experiment
            self.store.upsert_nodes(list(nodes.values()))
            # an edge to what neither this import nor the hub holds (a parent run not in
            # the source; anything a skipped record would have been) is reported, not
            # written: one such edge would otherwise cost the whole import
            missing = [
                edge
                for edge in edges.values()
                if any(end not in nodes and end not in known for end in (edge.source, edge.target))
            ]
            if missing:
                ids = sorted({end for e in missing for end in (e.source, e.target)} - nodes.keys())
                present = {n.id for n in self.store.get_nodes(ids) if n is not None}
                for edge in missing:
                    absent = [
                        e for e in (edge.target, edge.source) if e not in nodes and e not in present
                    ]
                    if not absent:
                        continue
                    if edge.kind == EdgeKind.CHILD_OF.value:
                        reason = f"its parent {edge.target} is not in the source"
                        summary.skip("parent", edge.source, reason)
                        # nor does its property name it (it named a run the hub has not)
                        orphan = Node(edge.source, "Run", {"parent": DELETE})
                        self.store.upsert_nodes([orphan])
                    else:
                        reason = f"{absent[0]} was not imported"
                        summary.skip(edge.kind, f"{edge.source} -> {edge.target}", reason)
                    del edges[edge.id]
            self.store.upsert_edges(list(edges.values()))
            # a run the hub has in another experiment (renamed in MLflow since, or imported to
            # another project) is moved: it was PART_OF both, in two projects
            self.store.delete_edges(_moved(nodes, known))
            # versions and models as read from MLflow carry no project: theirs is recorded
            # (a version of a moved run, its new one)
            record_projects(self.store, nodes.values())
            if points:
                self.store.append_series(points)
            self.store.append_audit(
                self.actor,
                AUDIT_ACTION,
                f"mlflow:{summary.source}"[:512],
                {k: v for k, v in summary.to_dict().items() if k != "unmapped"}
                | {"unmapped": len(summary.unmapped)},
            )
            self._apply_registry_state(summary)
        return summary

    def _apply_registry_state(self, summary: ImportSummary) -> None:
        """MLflow's aliases and stages, set through the registry (inside the import's
        transaction): each is a promote run and an audit entry by the importer, as if it had
        been set here, so the registry's history and ``holderAt`` answer for imported models.
        Only differences are applied: importing again records nothing."""
        from lineagehub.services.registry import PromotionRefused, RegistryService

        registry = RegistryService(self.store)  # no policies: the import mirrors MLflow
        reason = f"imported from MLflow ({summary.source})"
        for version_id, stage, aliases in self._registry_state:
            node = self.store.get_node(version_id)
            for alias in aliases:
                if alias not in (node.props.get("aliases") or []):
                    registry.set_alias(version_id, alias, self.actor, reason)
            node = self.store.get_node(version_id)
            if (node.props.get("stage") or Stage.NONE.value) != stage.value:
                result = registry.promote(
                    version_id, stage, self.actor, reason, archive_previous=False
                )
                if isinstance(result, PromotionRefused):
                    rules = ", ".join(result.rule_ids)
                    summary.skip("stage", version_id, f"{stage.value} refused: {rules}")
        # an alias an earlier import set that MLflow no longer has: removed as it was set (one
        # set or moved here since, by someone, is the hub's own: kept)
        for model, kept in self._mlflow_aliases.items():
            held = {
                a
                for n in self.store.iter_nodes(
                    "ModelVersion", {"model": model, "aliases": {"$ne": "[]"}}
                )
                for a in n.props.get("aliases") or []
            }
            for alias in sorted(held - kept):
                history = registry.history(model, alias=alias)
                if history and (history[-1].reason or "").startswith("imported from MLflow"):
                    registry.remove_alias(
                        model, alias, self.actor, f"removed in MLflow ({summary.source})"
                    )
                    summary.aliases_removed += 1

    # --- runs -----------------------------------------------------------------------------

    def _run(
        self,
        client: Any,
        summary: ImportSummary,
        experiment: Experiment,
        r: Any,
        fetched: _Fetched,
        nodes: dict[str, Node],
        edges: dict[str, Edge],
        points: list[SeriesPoint],
        copy_artifacts: bool,
    ) -> None:
        info, data = r.info, r.data
        run_id = f"run:mlflow-{info.run_id}"
        status = _STATUS.get(str(info.status), RunStatus.KILLED)
        started, ended, notes = _run_times(info)
        for what, reason in notes:
            summary.skip(what, info.run_id, reason)
        tags = dict(data.tags or {})
        params: dict[str, Any] = {}
        for key, value in (data.params or {}).items():
            if _key_ok(key):
                params[key] = value
            else:
                summary.skip("param", f"{info.run_id}/{key}", "not a key the hub takes")
        keep_tags = {k: v for k, v in tags.items() if _key_ok(k)}
        for k in tags.keys() - keep_tags.keys():
            summary.skip("tag", f"{info.run_id}/{k}", "not a key the hub takes")
        last: dict[str, float | None] = {}
        for key, value in (data.metrics or {}).items():
            if _key_ok(key):
                last[key] = value if math.isfinite(value) else None
        parent = tags.get("mlflow.parentRunId")
        facts: dict[str, Any] = {
            "name": (info.run_name or tags.get("mlflow.runName") or info.run_id)[:256],
            "params": params,
            "tags": keep_tags,
            "user": info.user_id or tags.get("mlflow.user") or None,
            "entry_point": tags.get("mlflow.source.name") or None,
            "description": tags.get("mlflow.note.content") or None,
            "parent": f"run:mlflow-{parent}" if parent else None,
        }
        while True:
            try:
                run = Run(
                    id=run_id,
                    kind=RunKind.TRAIN,
                    status=status,
                    started_at=started,
                    ended_at=ended,
                    metrics=last,
                    project=experiment.project,
                    experiment=experiment.name,
                    **facts,
                )
                break
            except ValidationError as e:
                # one value the hub refuses (a control character in the user's name, a NUL
                # in a param, an entry point over 512 characters) costs that value, reported,
                # not the run with its metric histories
                if not _leave_out(summary, info.run_id, facts, e):
                    summary.skip("run", info.run_id, e.message)
                    return
        nodes[run_id] = run.to_node()
        summary.runs += 1
        summary.params += len(run.params)
        edges_add(edges, _edge(EdgeKind.PART_OF, run_id, experiment.node_id))
        if run.parent:
            edges_add(edges, _edge(EdgeKind.CHILD_OF, run_id, run.parent))
        if run.user:
            agent = Agent(name=run.user, kind=AgentKind.USER)
            nodes.setdefault(agent.node_id, agent.to_node())
            edges_add(
                edges,
                _edge(EdgeKind.ASSOCIATED_WITH, run_id, agent.node_id, "launcher", role="launcher"),
            )
        commit = _commit(tags)
        if commit is not None:
            nodes.setdefault(commit.node_id, commit.to_node())
            edges_add(edges, _edge(EdgeKind.RAN_CODE, run_id, commit.node_id))
        for key in last:
            beyond = untimed = 0
            for m in fetched.history.get(key, ()):
                if not _STEPS[0] <= int(m.step) <= _STEPS[1]:
                    beyond += 1  # MLflow's steps are 64-bit (a time in ms, say); ours 32
                    continue
                when = _time(m.timestamp)
                if when is None and m.timestamp is not None:
                    untimed += 1  # kept: the hub records it at the import's time
                points.append(SeriesPoint(run_id, key, int(m.step), float(m.value), when))
                summary.metric_points += 1
            if beyond:
                summary.skip(
                    "metric",
                    f"{info.run_id}/{key}",
                    f"{beyond} point(s) with a step beyond 32 bits",
                )
            if untimed:
                summary.skip(
                    "metric",
                    f"{info.run_id}/{key}",
                    f"{untimed} point(s) with a time the hub cannot keep: kept at the import's time",
                )
        for key in (data.metrics or {}).keys() - last.keys():
            summary.skip("metric", f"{info.run_id}/{key}", "not a key the hub takes")
        for item in getattr(r.inputs, "dataset_inputs", None) or ():
            self._dataset_input(summary, run_id, item, nodes, edges)
        if fetched.error is not None:
            summary.skip("artifacts", info.run_id, f"could not be listed: {fetched.error}"[:300])
        self._run_artifacts(summary, info, run_id, fetched.files, nodes, edges, copy_artifacts)

    def _dataset_input(
        self,
        summary: ImportSummary,
        run_id: str,
        item: Any,
        nodes: dict[str, Node],
        edges: dict[str, Edge],
    ) -> None:
        ds = item.dataset
        context = {t.key: t.value for t in item.tags or ()}.get("mlflow.data.context", "")
        role = _ROLES.get(str(context).lower(), UsedRole.INPUT)
        namespace = f"mlflow-{ds.source_type or 'dataset'}"
        digest = "sha256:" + hashlib.sha256(f"mlflow\0{ds.name}\0{ds.digest}".encode()).hexdigest()
        columns = _columns(ds.schema)
        facets = {
            "mlflow": {
                "digest": ds.digest,
                "source_type": ds.source_type,
                "source": _json(ds.source),
            }
        }
        profile = _json(ds.profile)
        if profile is not None:
            facets["mlflow"]["profile"] = profile
        try:
            dataset = Dataset(namespace=namespace, name=ds.name)
            version = DatasetVersion(
                namespace=namespace, name=ds.name, digest=digest, columns=columns, facets=facets
            )
        except ValidationError as e:
            summary.skip("dataset", f"{ds.name}@{ds.digest}", e.message)
            return
        if version.node_id not in nodes:
            summary.datasets += 1
        nodes.setdefault(dataset.node_id, dataset.to_node())
        nodes[version.node_id] = version.to_node()
        edges_add(edges, _edge(EdgeKind.VERSION_OF, version.node_id, dataset.node_id))
        edges_add(edges, _edge(EdgeKind.USED, run_id, version.node_id, role.value, role=role.value))

    # --- artifacts ------------------------------------------------------------------------

    def _put_tree(self, local: str) -> tuple[str, int, str]:
        """A file, or a folder as a deterministic tar, into the artifact store: (digest,
        size, media type)."""
        path = Path(local)
        if path.is_file():
            info = self.artifacts.put_file(path)
            return info.digest, info.size, "application/octet-stream"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                ti = tarfile.TarInfo(file.relative_to(path).as_posix())
                ti.size = file.stat().st_size
                ti.mtime = 0  # the same files, the same bytes, the same digest
                ti.mode = 0o644
                with file.open("rb") as f:
                    tar.addfile(ti, f)
        info = self.artifacts.put_bytes(buf.getvalue())
        return info.digest, info.size, "application/x-tar"

    def _reference(self, uri: str) -> tuple[str, int, str]:
        body = json.dumps({"mlflow_artifact_uri": uri}, sort_keys=True).encode()
        info = self.artifacts.put_bytes(body)
        return info.digest, info.size, REFERENCE_MEDIA_TYPE

    def _fetch(
        self, summary: ImportSummary, uri: str, copy_artifacts: bool
    ) -> tuple[str, int, str] | None:
        if not copy_artifacts:
            summary.artifacts_referenced += 1
            return self._reference(uri)
        import mlflow.artifacts

        try:
            with tempfile.TemporaryDirectory(prefix="lineagehub-mlflow-") as tmp:
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=uri,
                    dst_path=tmp,
                    tracking_uri=self._tracking_uri,
                    registry_uri=self._registry_uri,
                )
                found = self._put_tree(local)
        except Exception as e:  # MLflow raises many kinds: a missing file, a store down
            summary.skip("artifact", uri, f"could not be read: {type(e).__name__}: {e}"[:300])
            return None
        summary.artifacts_copied += 1
        return found

    def _run_artifacts(
        self,
        summary: ImportSummary,
        info: Any,
        run_id: str,
        files: list[Any],
        nodes: dict[str, Node],
        edges: dict[str, Edge],
        copy_artifacts: bool,
    ) -> None:
        for f in files:
            uri = f"{info.artifact_uri.rstrip('/')}/{f.path}"
            found = self._fetch(summary, uri, copy_artifacts)
            if found is None:
                continue
            digest, size, media = found
            artifact = Artifact(
                digest=digest,
                size=size,
                media_type=media,
                kind=ArtifactKind.OTHER,
                data={"mlflow_path": f.path},
            )
            nodes.setdefault(artifact.node_id, artifact.to_node())
            edges_add(
                edges, _edge(EdgeKind.GENERATED_BY, artifact.node_id, run_id, f.path, name=f.path)
            )

    @staticmethod
    def _experiment_runs(
        client: Any, summary: ImportSummary, uri: str, experiment_id: str
    ) -> list[Any]:
        """The runs of an experiment. In a folder store (``mlruns``), MLflow cannot list an
        experiment one of whose runs is damaged (its ``meta.yaml``): then each run folder is
        read on its own, and a run that cannot be is reported, not the whole experiment."""
        from mlflow.entities import ViewType

        try:
            return list(
                _paged(
                    client.search_runs, experiment_ids=[experiment_id], run_view_type=ViewType.ALL
                )
            )
        except Exception:
            if not uri.startswith("file:"):
                raise
            folder = Path(urllib.request.url2pathname(urllib.parse.urlsplit(uri).path))
            folder = folder / experiment_id
            if not folder.is_dir():
                raise
        runs = []
        for run_dir in sorted(p for p in folder.iterdir() if (p / "meta.yaml").is_file()):
            try:
                runs.append(client.get_run(run_dir.name))
            except Exception as e:  # MLflow's YAML, its own errors: this run only
                reason = " ".join(f"could not be read: {type(e).__name__}: {e}".split())
                summary.skip("run", run_dir.name, reason[:300])
        return runs

    # --- models ---------------------------------------------------------------------------

    def _logged_models(
        self,
        client: Any,
        summary: ImportSummary,
        exp: Any,
        run_ids: set[str],
        nodes: dict[str, Node],
        edges: dict[str, Edge],
        copy_artifacts: bool,
    ) -> None:
        search = getattr(client, "search_logged_models", None)
        if search is None:  # MLflow 2: no logged models apart from run artifacts
            return
        try:
            models = list(_paged(search, experiment_ids=[exp.experiment_id]))
        except Exception as e:  # a store that does not support them
            summary.skip("logged models", str(exp.experiment_id), f"{type(e).__name__}: {e}"[:300])
            return
        for lm in models:
            found = self._fetch(summary, lm.artifact_location, copy_artifacts)
            if found is None:
                continue
            digest, size, media = found
            data = {
                "mlflow_model_id": lm.model_id,
                "name": lm.name,
                "params": dict(lm.params or {}),
                "tags": dict(lm.tags or {}),
                "metrics": [
                    {"key": m.key, "value": _finite(m.value), "step": m.step}
                    for m in (lm.metrics or ())
                ],
            }
            artifact = Artifact(
                digest=digest, size=size, media_type=media, kind=ArtifactKind.MODEL, data=data
            )
            nodes[artifact.node_id] = artifact.to_node()
            summary.logged_models += 1
            run_id = f"run:mlflow-{lm.source_run_id}" if lm.source_run_id else None
            if run_id in run_ids:
                edges_add(edges, _edge(EdgeKind.GENERATED_BY, artifact.node_id, run_id, f"model:{lm.name}", name=f"model:{lm.name}"))  # fmt: skip

    def _registry(
        self,
        client: Any,
        summary: ImportSummary,
        run_ids: set[str],
        nodes: dict[str, Node],
        edges: dict[str, Edge],
        copy_artifacts: bool,
        tick: Progress,
    ) -> None:
        try:
            registered = list(_paged(client.search_registered_models))
            # every version in one listing, not one search per model: MLflow's filter has no
            # way to say a name holding both quotes, and takes a backslash as it is (a name
            # with a quote found no versions: they were left out, unreported)
            by_model: dict[str, list[Any]] = {}
            for mv in _paged(client.search_model_versions) if registered else ():
                by_model.setdefault(mv.name, []).append(mv)
        except Exception as e:
            if not _no_registry(e):
                # a registry that does not answer fails the import as a tracking store that
                # does not answer does (the CLI's exit 5), writing nothing: it was one line
                # of the summary, and the import said it had worked
                raise
            reason = f"{type(e).__name__}: {e}"[:300]
            summary.skip("registry", _redacted(self._registry_uri or ""), reason)
            return
        for i, rm in enumerate(registered):
            tick("registered models", i, len(registered))
            try:
                model = Model(name=rm.name, description=rm.description or None, tags={k: v for k, v in (rm.tags or {}).items() if _key_ok(k)})  # fmt: skip
            except ValidationError as e:
                summary.skip("registered model", rm.name, e.message)
                continue
            nodes[model.node_id] = model.to_node()
            summary.models += 1
            aliases: dict[int, list[str]] = {}
            for alias, number in (rm.aliases or {}).items():
                aliases.setdefault(int(number), []).append(alias)
            self._mlflow_aliases[model.name] = {a.lower() for a in rm.aliases or {}}
            versions = by_model.get(rm.name, [])
            existing = {
                n.id: n
                for n in self.store.get_nodes([f"mv:{rm.name}/{v.version}" for v in versions])
                if n is not None
            }
            for mv in versions:
                self._version(client, summary, model, mv, aliases, existing, run_ids, nodes, edges, copy_artifacts)  # fmt: skip
        tick("registered models", len(registered), len(registered))

    def _version(
        self,
        client: Any,
        summary: ImportSummary,
        model: Model,
        mv: Any,
        aliases: Mapping[int, list[str]],
        existing: Mapping[str, Node],
        run_ids: set[str],
        nodes: dict[str, Node],
        edges: dict[str, Edge],
        copy_artifacts: bool,
    ) -> None:
        number = int(mv.version)
        ref = f"{model.name}/{number}"
        try:
            uri = client.get_model_version_download_uri(model.name, str(mv.version))
        except Exception:
            uri = mv.source
        found = self._fetch(summary, uri, copy_artifacts)
        before = existing.get(f"mv:{ref}")
        artifact: Node | None = None
        if found is None and before is not None:
            # imported when its files could be read: those stay its artifacts
            digest = str(before.props.get("artifact_digest"))
        else:
            if found is None:
                # files MLflow lost (or never had): the version, its stage, aliases and run
                # still arrive, its artifact a reference naming the MLflow URI
                summary.skip(
                    "model version", ref, "its artifacts could not be read: it refers to them"
                )
                summary.artifacts_referenced += 1
                found = self._reference(uri)
            digest, size, media = found
            model_file = Artifact(
                digest=digest, size=size, media_type=media, kind=ArtifactKind.MODEL
            )
            artifact = model_file.to_node()
        if before is not None and before.props.get("artifact_digest") != digest:
            summary.skip(
                "model version",
                ref,
                f"the hub has version {number} of {model.name} with other artifacts "
                f"({before.props.get('artifact_digest')})",
            )
            return
        stage = mv.current_stage if mv.current_stage in {s.value for s in Stage} else "None"
        names = sorted(set(aliases.get(number, [])) | set(getattr(mv, "aliases", None) or []))
        good = [a for a in names if _alias_ok(a)]
        for a in set(names) - set(good):
            summary.skip(
                "alias", f"{model.name}@{a}", "not an alias the hub takes (a-z, 0-9, _, -)"
            )
        try:
            version = ModelVersion(
                model=model.name,
                version=number,
                artifact_digest=digest,
                # the stage and aliases the hub has now: MLflow's are applied through the
                # registry afterwards, so its history (modelHistory, holderAt) knows them
                stage=Stage((before.props.get("stage") or "None") if before else "None"),
                aliases=list(before.props.get("aliases") or []) if before else [],
                description=mv.description or None,
                tags={k: v for k, v in (mv.tags or {}).items() if _key_ok(k)},
            )
        except ValidationError as e:
            summary.skip("model version", ref, e.message)
            return
        artifact_id = f"artifact:{digest}"
        if artifact is not None:
            nodes.setdefault(artifact_id, artifact)
        nodes[version.node_id] = version.to_node()
        self._registry_state.append((version.node_id, Stage(stage), [a.lower() for a in good]))
        summary.versions += 1
        summary.aliases += len(good)
        edges_add(edges, _edge(EdgeKind.VERSION_OF, version.node_id, model.node_id))
        run_id = f"run:mlflow-{mv.run_id}" if mv.run_id else None
        if run_id in run_ids:
            assert run_id is not None
            edges_add(edges, _edge(EdgeKind.GENERATED_BY, version.node_id, run_id))
            edges_add(edges, _edge(EdgeKind.GENERATED_BY, artifact_id, run_id, f"model:{model.name}", name=f"model:{model.name}"))  # fmt: skip


@dataclass
class _Fetched:
    """What one run needs from MLflow besides the run itself."""

    history: dict[str, list[Any]]
    files: list[Any]
    error: str | None


def _unchanged(before: Node | None, r: Any, experiment: Experiment) -> bool:
    """Whether the hub has this run as it is: finished then, with the same end time, in the
    same experiment (one renamed in MLflow, or imported to another ``project``, moves it)."""
    if before is None:
        return False
    if (before.props.get("project"), before.props.get("experiment")) != (
        experiment.project,
        experiment.name,
    ):
        return False
    status = _STATUS.get(str(r.info.status), RunStatus.KILLED)
    ended = _run_times(r.info)[1]
    return before.props.get(
        "status"
    ) == status.value != RunStatus.RUNNING.value and before.props.get("ended_at") == (
        to_iso(ended) if ended else None
    )


def _list_files(client: Any, run_id: str) -> tuple[list[Any], str | None]:
    """Every artifact file of a run (folders walked); the error when they cannot be listed."""
    stack: list[str | None] = [None]
    files: list[Any] = []
    while stack:
        path = stack.pop()
        try:
            listed = client.list_artifacts(run_id, path)
        except Exception as e:  # MLflow raises many kinds: a store down, a missing folder
            return files, f"{type(e).__name__}: {e}"
        for f in listed:
            if f.is_dir:
                stack.append(f.path)
            else:
                files.append(f)
    return files, None


def _no_registry(error: Exception) -> bool:
    """Whether ``error`` says the source keeps no model registry (an import without one), not
    that the registry could not be read."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException

    if isinstance(error, UnsupportedModelRegistryStoreURIException):
        return True
    unsupported = {"ENDPOINT_NOT_FOUND", "FEATURE_DISABLED", "NOT_IMPLEMENTED"}
    return isinstance(error, MlflowException) and error.error_code in unsupported


def _moved(nodes: Mapping[str, Node], known: Mapping[str, Node]) -> list[str]:
    """The ``PART_OF`` edges of runs written now to the experiments they were in before."""
    stale = []
    for run_id, before in known.items():
        now = nodes.get(run_id)
        project, experiment = before.props.get("project"), before.props.get("experiment")
        if now is None or not isinstance(project, str) or not isinstance(experiment, str):
            continue
        if (project, experiment) == (now.props.get("project"), now.props.get("experiment")):
            continue
        try:
            old = Experiment(project=project, name=experiment).node_id
        except ValidationError:
            continue
        stale.append(_edge(EdgeKind.PART_OF, run_id, old).id)
    return stale


def _break_cycles(
    summary: ImportSummary,
    nodes: dict[str, Node],
    edges: dict[str, Edge],
    known: Mapping[str, Node],
) -> None:
    """Leave out, reported, each parent link that makes a run its own ancestor (MLflow's
    ``mlflow.parentRunId`` is a tag: a run can name itself, or two runs each other). Nowhere
    else can the hub get such a loop: the SDK's parent must exist first, and OpenLineage
    events making one are refused."""

    def parent_of(run_id: str) -> Any:
        node = nodes.get(run_id) or known.get(run_id)
        return node.props.get("parent") if node is not None else None

    for run_id in sorted(i for i, n in nodes.items() if n.label == "Run" and n.props.get("parent")):
        seen, up = {run_id}, parent_of(run_id)
        while up is not None and up not in seen:
            seen.add(up)
            up = parent_of(up)
        if up == run_id:
            parent = nodes[run_id].props.pop("parent")
            edges.pop(_edge(EdgeKind.CHILD_OF, run_id, parent).id, None)
            reason = f"its parent {parent} would make it its own ancestor: left out"
            summary.skip("parent", run_id.removeprefix("run:mlflow-"), reason)


def _leave_out(
    summary: ImportSummary, run_id: str, facts: dict[str, Any], e: ValidationError
) -> bool:
    """Leave the value ``e`` names out of a run's ``facts`` (a run's id for its name), reported;
    ``False`` when it names nothing that can be left out."""
    name = e.field or ""
    import re

    found = e.message.split(f"{name}: ", 1)[-1] if name else e.message
    reason = re.split(r"; (?=[\w.\-]+: )", found)[0]  # the next field's, after "; "
    group, _, key = name.partition(".")
    if group in ("params", "tags") and key in facts[group]:
        facts[group] = {k: v for k, v in facts[group].items() if k != key}
        summary.skip(group[:-1] if group == "params" else "tag", f"{run_id}/{key}", reason)
        return True
    if name in ("user", "entry_point", "description", "parent") and facts[name] is not None:
        facts[name] = None
    elif name == "name" and facts["name"] != run_id:
        facts["name"] = run_id
    else:
        return False
    summary.skip(name, run_id, f"{reason}: left out")
    return True


def edges_add(edges: dict[str, Edge], edge: Edge) -> None:
    edges[edge.id] = edge


def _key_ok(key: str) -> bool:
    from lineagehub.vocabulary import check_key

    try:
        check_key(key, "key")
    except ValidationError:
        return False
    return True


def _alias_ok(alias: str) -> bool:
    import re

    return re.fullmatch(r"[a-z][a-z0-9_\-]{0,63}", alias.lower()) is not None


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _json(text: Any) -> Any:
    if text is None:
        return None
    if isinstance(text, str):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _columns(schema: Any) -> list[Column] | None:
    """Columns from MLflow's dataset schema (``{"mlflow_colspec": [{"name", "type"}]}``)."""
    spec = _json(schema)
    if isinstance(spec, Mapping):
        spec = spec.get("mlflow_colspec") or spec.get("mlflow_tensorspec")
    if not isinstance(spec, list):
        return None
    columns = []
    for i, col in enumerate(spec):
        if isinstance(col, Mapping):
            name = str(col.get("name") or f"column_{i}")
            columns.append(Column(name=name, dtype=str(col.get("type") or "unknown")))
    return columns or None


def _commit(tags: Mapping[str, str]) -> CodeCommit | None:
    sha = tags.get("mlflow.source.git.commit")
    repo = tags.get("mlflow.source.git.repoURL") or tags.get("mlflow.gitRepoURL")
    if not sha or not repo:
        return None
    try:
        return CodeCommit(repo=repo, sha=sha, branch=tags.get("mlflow.source.git.branch") or None)
    except ValidationError:
        return None


__all__ = ["AUDIT_ACTION", "DEFAULT_PROJECT", "ImportSummary", "MlflowImporter", "tracking_uri"]
