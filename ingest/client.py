"""The SDK that training code and notebooks call: ``import lineagehub as lh``.

::

    import lineagehub as lh

    with lh.start_run(project="churn", experiment="baseline", name="gbm") as run:
        run.log_params({"max_depth": 5, "learning_rate": 0.1})
        run.log_dataset(train_df, name="customers", namespace="warehouse", role="train")
        for epoch in range(100):
            run.log_metrics({"loss": loss, "auc": auc}, step=epoch)
        run.log_model(model, name="churn")

At run start the SDK records, without being asked, the git commit (with a digest of any
uncommitted diff, whose bytes go to the artifact store), the environment (python, platform and
installed packages), the user, the host and the entry point.

Params, metrics and tags are buffered in memory and written in batches: at run end, on
``flush()``, every ``heartbeat_interval`` seconds, when the buffer holds 10,000 points, and at
interpreter exit, so a training loop pays microseconds per call. Every value is checked when it
is logged, so a mistake raises at the line that made it.

Runs nest: a run started while another is active in the same thread becomes its child (or
pass ``parent=``). A ``with`` block that raises ends the run FAILED with the error; Ctrl-C ends
it KILLED; a process that dies without ending its runs leaves them RUNNING with a heartbeat
that goes stale, and they are reported KILLED after ``stale_after`` seconds.

Two modes, one behaviour: embedded (a store URI, no server: the client opens the graph store
and the artifact store itself) and remote (``Client("http://hub:8000")``, ``lh.connect(url)``
or ``LINEAGEHUB_URL``: the client talks to a hub server over HTTP, see
:mod:`lineagehub.ingest.remote`). Both are one :class:`~lineagehub.ingest.seam.Backend` to
the client: the same calls, the same models back, the same errors.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import math
import mimetypes
import os
import pickle
import sys
import tarfile
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from lineagehub.artifacts import ArtifactInfo, ArtifactStore, open_artifact_store
from lineagehub.config import Settings
from lineagehub.graph import (
    ConfigError,
    ConflictError,
    Direction,
    GraphStore,
    HubError,
    NotFoundError,
    SeriesPoint,
    Subgraph,
    ValidationError,
)
from lineagehub.graph.model import check_time
from lineagehub.ingest.capture import CodeState, capture_code, capture_context, capture_environment
from lineagehub.ingest.datasets import fingerprint
from lineagehub.ingest.seam import Backend, LocalBackend, PromoteResult
from lineagehub.services.registry import HistoryEntry, Policy, PromotionRejected
from lineagehub.services.tracking import Metric, RunStart, check_metric, default_actor
from lineagehub.vocabulary import (
    Artifact,
    ArtifactKind,
    DatasetVersion,
    Deployment,
    DeploymentStatus,
    Model,
    ModelVersion,
    NodeKind,
    Run,
    RunKind,
    RunStatus,
    UsedRole,
    check_key,
    check_scalar,
    check_text,
    member,
)

FLUSH_POINTS = 10_000
_I32 = 2**31
MAX_DATA_IN_GRAPH = 256 * 1024  # evaluation data above this stays in the artifact only
CODE_CACHE_SECONDS = 5.0


class Client:
    """A connection to a hub: embedded (a graph store and an artifact store) or remote (a hub
    server's URL), through one :class:`~lineagehub.ingest.seam.Backend`.

    ``Client()`` uses the settings (``LINEAGEHUB_URL``, else ``LINEAGEHUB_STORE``,
    ``LINEAGEHUB_ARTIFACTS``, ...); ``Client("sqlite:///runs/hub.db")`` a given store, with
    artifacts beside it; ``Client("http://hub:8000")`` a server (``store`` is then ``None``).
    Embedded, changes are recorded as made by ``settings.user`` (else the OS user) under the
    ``registry_policies`` given; remote, the server decides both.
    """

    backend: Backend
    store: GraphStore | None
    url: str | None

    def __init__(
        self,
        store: str | GraphStore | None = None,
        *,
        artifacts: str | ArtifactStore | None = None,
        settings: Settings | None = None,
        registry_policies: Mapping[Any, Policy] | None = None,
    ) -> None:
        settings = settings or Settings()
        url: str | None = None
        if isinstance(store, str) and store.lower().startswith(("http://", "https://")):
            url = store
        elif store is None and not isinstance(artifacts, ArtifactStore):
            url = getattr(settings, "url", None) or None
        if isinstance(store, str) and url is None:
            settings = settings.model_copy(update={"store": store})
        if isinstance(artifacts, str):
            settings = settings.model_copy(update={"artifacts": artifacts})
        self.settings = settings
        self.url = url
        self._live: dict[str, ActiveRun] = {}
        self._lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self._stop = threading.Event()
        self._code_cache: tuple[float, str, CodeState | None] | None = None
        if url is not None:
            from lineagehub.ingest.remote import RemoteBackend

            for name, given in (("artifacts", artifacts), ("registry_policies", registry_policies)):
                if given is not None:
                    raise ConfigError(
                        f"a client of a hub server uses the server's {name.replace('_', ' ')}; "
                        f"do not pass {name}="
                    )
            self.store = None
            self.backend = RemoteBackend(url)
        else:
            if isinstance(store, GraphStore):
                self.store, owned = store, False
            else:
                from lineagehub import open_store

                self.store, owned = open_store(settings=settings), True
            if not isinstance(artifacts, ArtifactStore):
                artifacts = open_artifact_store(
                    settings.artifact_uri, **settings.artifact_options()
                )
            self.backend = LocalBackend(
                self.store,
                artifacts,
                actor=settings.user or default_actor(),
                stale_after=timedelta(seconds=settings.stale_after),
                policies=registry_policies,
                owns_store=owned,
            )
        self.tracking = self.backend.tracking
        self.artifacts = self.backend.artifacts
        _clients.add(self)

    @property
    def registry_policies(self) -> Mapping[Any, Policy]:
        """The promotion policies this client's registry applies (empty for a client of a
        hub server: the server applies its own)."""
        return dict(self.backend.policies)

    def __repr__(self) -> str:
        where = self.url if self.url is not None else getattr(self.store, "uri", None)
        return f"Client({where!r})"

    # --- runs -------------------------------------------------------------------------------

    def start_run(
        self,
        name: str | None = None,
        *,
        project: str | None = None,
        experiment: str | None = None,
        kind: RunKind | str = RunKind.TRAIN,
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        parent: ActiveRun | str | None = None,
        description: str | None = None,
        capture: bool = True,
    ) -> ActiveRun:
        """Start a run; use it as a context manager (``with client.start_run(...) as run``)
        or end it with ``run.end()``. Inside another active run of this thread it becomes
        that run's child unless ``parent`` says otherwise."""
        if parent is None:
            current = active_run()
            parent_id = current.id if current is not None else None
        else:
            parent_id = parent.id if isinstance(parent, ActiveRun) else parent
        run_kind = member(RunKind, kind, "kind")
        code = self._code() if capture else None
        context = capture_context(code=code) if capture else None
        user = self.settings.user or (context.user if context else None)
        run = Run(
            name=name or _default_name(context),
            kind=run_kind,
            project=project,
            experiment=experiment,
            tags=dict(tags or {}),
            params=dict(params or {}),
            parent=parent_id,
            user=user,
            host=context.host if context else None,
            entry_point=context.entry_point if context else None,
            description=description,
        )
        start = RunStart()
        if capture:
            start = RunStart(code=code, environment=capture_environment())
        run = self.tracking.start_run(run, start)
        active = ActiveRun(self, run)
        if context is not None and context.notebook_snapshot:
            active._log_bytes(
                context.notebook_snapshot,
                name=Path(context.notebook_path or "notebook.ipynb").name,
                kind=ArtifactKind.NOTEBOOK,
                media_type="application/x-ipynb+json",
            )
        with self._lock:
            self._live[run.id] = active
        _stack().append(active)
        self._ensure_heartbeat()
        return active

    def get_run(self, run_id: str) -> Run:
        """The run as the hub has it (a stale RUNNING run is reported KILLED)."""
        self._flush_run(run_id)
        return self.tracking.get_run(run_id)

    def search_runs(
        self,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        *,
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Run], str | None]:
        """Runs matching a filter, ordered, one page: ``search_runs({"metrics.auc":
        {"$gte": 0.9}}, order_by="-metrics.auc")``. Returns the runs and the next cursor."""
        self.flush()
        return self.tracking.search_runs(where, order_by, after, limit)

    def metric_history(
        self, run_id: str, key: str, max_points: int | None = None
    ) -> list[SeriesPoint]:
        """One metric's points, by step (downsampled to ``max_points``, spikes kept)."""
        self._flush_run(run_id)
        return self.tracking.metric_history(run_id, key, max_points)

    def flush(self) -> None:
        """Write every live run's buffered params, metrics and tags now."""
        for run in list(self._live.values()):
            run.flush()

    def close(self) -> None:
        """Flush, end live runs FINISHED, stop the heartbeat, release the stores (or the
        connection to the server)."""
        self._stop.set()
        try:
            for run in list(self._live.values()):
                run.end(_exit_status())
        finally:
            # A run that could not be ended (the hub refused or was unreachable) must not
            # stay the thread's active run after its client is gone.
            stack = _stack()
            stack[:] = [r for r in stack if r.client is not self]
            self.backend.close()
            _clients.discard(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- model registry -----------------------------------------------------------------------

    def request_promotion(self, ref: str, to: str, reason: str) -> PromoteResult:
        """Ask to move a model version (``churn/3``, ``churn@champion``) to a stage: refused
        (a :class:`~lineagehub.services.registry.PromotionRefused` listing every broken rule), pending
        approvals, or done at once when its policy wants none."""
        return self.backend.registry.request_promotion(ref, to, reason)

    def approve_promotion(self, request_id: str, comment: str | None = None) -> PromoteResult:
        """Approve a pending promotion request; the last approval needed promotes."""
        return self.backend.registry.approve(request_id, comment)

    def reject_promotion(self, request_id: str, reason: str) -> PromotionRejected:
        """Reject a pending promotion request."""
        return self.backend.registry.reject(request_id, reason)

    def promote(
        self, ref: str, to: str, reason: str, archive_previous: bool = True
    ) -> PromoteResult:
        """Move a model version to a stage at once (where its policy needs no approvals);
        promoting to Production archives the previous Production versions by default."""
        return self.backend.registry.promote(ref, to, reason, archive_previous=archive_previous)

    def set_alias(self, ref: str, alias: str, reason: str | None = None) -> ModelVersion:
        """Point ``alias`` at a model version (its previous holder loses it); returns the
        version as it is now."""
        return self.backend.registry.set_alias(ref, alias, reason)

    def remove_alias(self, model: str, alias: str, reason: str | None = None) -> None:
        """Remove an alias from a model."""
        self.backend.registry.remove_alias(model, alias, reason)

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
    ) -> Deployment:
        """Record that a model version (``churn/3``, ``churn@champion``) is served in
        ``environment``. The deployment is identified by ``name`` (default: the model's name)
        and environment: deploying another version under them ends the current serving
        interval and starts a new one. ``require_stage="Production"`` refuses
        (:class:`~lineagehub.graph.errors.PolicyViolation`, nothing written) a version that
        is not in that stage."""
        return self.backend.registry.deploy(
            ref,
            environment,
            name=name,
            endpoint=endpoint,
            status=status,
            require_stage=require_stage,
            reason=reason,
            tags=tags,
        )

    def retire_deployment(self, deployment_id: str, reason: str | None = None) -> Deployment:
        """Mark a deployment retired and end its serving interval."""
        return self.backend.registry.retire_deployment(deployment_id, reason)

    def rollback(self, model: str, stage_or_alias: str, reason: str) -> list[str]:
        """Put back the previous holder of a stage (its exact name, e.g. ``Production``) or
        an alias, undoing its last change; returns the ids of the runs recording it."""
        return self.backend.registry.rollback(model, stage_or_alias, reason)

    def model_history(
        self, model: str, alias: str | None = None, stage: str | None = None
    ) -> list[HistoryEntry]:
        """Every stage and alias change of a model, oldest first (or of one alias or stage)."""
        return self.backend.registry.history(model, alias, stage)

    def holder_at(self, model: str, alias_or_stage: str, time: datetime) -> ModelVersion | None:
        """The model version holding an alias or stage at ``time`` (for a stage several may:
        the most recent entrant), or ``None``."""
        return self.backend.registry.holder_at(model, alias_or_stage, time)

    # --- models: listing, search, comparison ------------------------------------------------

    def list_models(
        self,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> tuple[list[Model], str | None]:
        """Registered models matching a filter, ordered, one page: ``list_models({"owner":
        "ann"}, order_by="name")``. Returns the models and the next cursor (``None`` at the
        end)."""
        return self.backend.queries.find(Model, where, order_by, after, limit)

    def search_model_versions(
        self,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> tuple[list[ModelVersion], str | None]:
        """Model versions matching a filter, ordered, one page: ``search_model_versions(
        {"model": "churn", "metrics.auc": {"$gte": 0.85}}, order_by="-version")``. Returns
        the versions and the next cursor (``None`` at the end)."""
        self.flush()
        return self.backend.queries.find(ModelVersion, where, order_by, after, limit)

    def get_model_version(self, ref: str) -> ModelVersion:
        """The model version a reference names: ``"model:churn/2"``, ``"model:churn@champion"``,
        ``"model:churn@latest"``, ``"mv:churn/2"``. :class:`NotFoundError` when there is none;
        :class:`ValidationError` (``field="ref"``) when it names something else."""
        return self.backend.queries.model_version(ref)

    def compare_model_versions(self, a: str, b: str) -> dict[str, Any]:
        """What changed from model version ``a`` to ``b`` (references as for
        :meth:`get_model_version`), as a JSON-ready dict (see :func:`diff_summary`): the
        training params changed / added / removed, the metric deltas, the dataset versions,
        commits and environments upstream of only one of them, and whether the walk was
        truncated."""
        d = self.backend.queries.compare_model_versions(a, b)
        sets = {name: getattr(d, name) for name in ("datasets", "commits", "environments")}
        return diff_summary(
            d.a.id,
            d.b.id,
            {
                name: ([n.id for n in s.added], [n.id for n in s.removed])
                for name, s in sets.items()
            },
            [(p.key, p.b) for p in d.params_added],
            [(p.key, p.a) for p in d.params_removed],
            [(p.key, p.a, p.b) for p in d.params_changed],
            [(m.key, m.a, m.b, m.delta) for m in d.metric_deltas],
            d.truncated,
        )

    # --- lineage and run comparison ----------------------------------------------------------

    def lineage(
        self,
        roots: Sequence[str],
        direction: Direction | str = "UPSTREAM",
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
        """The lineage graph around ``roots`` (ids or references: ``"model:churn@champion"``,
        ``"dataset:warehouse/customers@latest"``), as :meth:`lineagehub.services.lineage.LineageService.
        lineage` answers it: UPSTREAM (what they came from), DOWNSTREAM (what came from them)
        or BOTH, each with its depth; ``node_kinds`` limits the nodes entered, ``edge_kinds``
        the edges followed (default: every lineage edge, not the grouping ``PART_OF``);
        ``stop_at`` kinds are returned but not expanded, ``pass_through`` kinds do not count a
        hop; ``as_of`` the graph as the hub knew it then. Every node keeps its distance, the
        node it was reached from and the direction; every edge its provenance; ``truncated``
        says whether a budget cut the walk."""
        self.flush()
        return self.backend.queries.lineage(
            roots,
            direction,
            upstream_depth,
            downstream_depth,
            node_kinds=node_kinds,
            edge_kinds=edge_kinds,
            stop_at=stop_at,
            pass_through=pass_through,
            as_of=as_of,
            max_nodes=max_nodes,
        )

    def compare_runs(self, run_ids: Sequence[str]) -> dict[str, Any]:
        """Two to fifty runs side by side, as a JSON-ready dict: ``runs`` (their ids, in the
        order asked); ``params``: ``{"key", "values" (one per run, ``None`` where absent),
        "differs"}``; ``metrics``: ``{"key", "last", "min", "max" (one per run; ``None`` where
        absent or not finite), "differs"}``; ``inputs``: ``{"id", "label", "roles" (per run),
        "used_by_all"}``; ``inputs_only_in`` (per run); ``code`` / ``environments`` (per run,
        an id or ``None``) with ``code_differs`` / ``environment_differs``. Rows are sorted by
        key. Unknown runs: :class:`NotFoundError`."""
        self.flush()
        r = self.backend.queries.compare_runs(run_ids)

        def finite(values: tuple[float | None, ...]) -> list[float | None]:
            return [v if v is not None and math.isfinite(v) else None for v in values]

        return {
            "runs": [n.id for n in r.runs],
            "params": [
                {"key": p.key, "values": list(p.values), "differs": p.differs} for p in r.params
            ],
            "metrics": [
                {
                    "key": m.key,
                    "last": finite(m.last),
                    "min": finite(m.min),
                    "max": finite(m.max),
                    "differs": m.differs,
                }
                for m in r.metrics
            ],
            "inputs": [
                {
                    "id": i.node.id,
                    "label": i.node.label,
                    "roles": [list(x) for x in i.roles],
                    "used_by_all": i.used_by_all,
                }
                for i in r.inputs
            ],
            "inputs_only_in": [list(x) for x in r.inputs_only_in],
            "code": list(r.code),
            "code_differs": r.code_differs,
            "environments": list(r.environments),
            "environment_differs": r.environment_differs,
        }

    # --- internals ----------------------------------------------------------------------------

    def _flush_run(self, run_id: str) -> None:
        live = self._live.get(run_id)
        if live is not None:
            live.flush()

    def _code(self) -> CodeState | None:
        # A sweep starts thousands of runs from one checkout: ask git at most every few
        # seconds, not once per run.
        now = time.monotonic()
        cwd = os.getcwd()
        cached = self._code_cache
        if cached is not None and cached[1] == cwd and now - cached[0] < CODE_CACHE_SECONDS:
            return cached[2]
        code = capture_code()
        self._code_cache = (now, cwd, code)
        return code

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat is not None and self._heartbeat.is_alive():
            return
        ref = weakref.ref(self)
        interval = self.settings.heartbeat_interval
        stop = self._stop

        def beat() -> None:
            while not stop.wait(interval):
                client = ref()
                if client is None:
                    return
                for run in list(client._live.values()):
                    # A failed flush keeps its buffer and is retried at the next beat.
                    with contextlib.suppress(HubError):
                        run.flush(heartbeat=True)
                del client

        self._heartbeat = threading.Thread(target=beat, name="lineagehub-heartbeat", daemon=True)
        self._heartbeat.start()

    def _ended(self, run: ActiveRun) -> None:
        with self._lock:
            self._live.pop(run.id, None)
        stack = _stack()
        if run in stack:
            stack.remove(run)


class ActiveRun:
    """A run in progress. Logging calls check their input at once and buffer it."""

    def __init__(self, client: Client, run: Run) -> None:
        self.client = client
        self.info = run
        self.id = run.id
        self._lock = threading.Lock()
        self._params: dict[str, Any] = {}
        self._logged: dict[str, Any] = dict(run.params)
        self._tags: dict[str, str] = {}
        self._points: list[Metric] = []
        self._steps: dict[str, int] = {}
        self._ended = False

    def __repr__(self) -> str:
        return f"ActiveRun({self.id!r}, name={self.info.name!r})"

    # --- params, metrics, tags ------------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log hyper-parameters: JSON scalars (str, int, float, bool, None). A param is
        immutable: logging a key again with another value raises :class:`ConflictError`."""
        if not isinstance(params, Mapping):
            raise ValidationError("params must be a mapping", field="params")
        checked = {
            k: check_scalar(v, f"params.{check_key(k, 'params')}") for k, v in params.items()
        }
        with self._lock:
            self._check_open()
            for key, value in checked.items():
                if key in self._logged and self._logged[key] != value:
                    raise ConflictError(
                        f"param {key!r} is already {self._logged[key]!r}; params are immutable"
                    )
            self._logged.update(checked)
            self._params.update(checked)

    def log_metric(
        self, key: str, value: float, step: int | None = None, timestamp: datetime | None = None
    ) -> None:
        self.log_metrics({key: value}, step=step, timestamp=timestamp)

    def log_metrics(
        self,
        metrics: Mapping[str, float],
        step: int | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Log metric values at a step (default: one past the key's last step). NaN and
        infinities are kept as they are."""
        if not isinstance(metrics, Mapping):
            raise ValidationError("metrics must be a mapping", field="metrics")
        # Checked here, when logged: a bad value is refused now and never reaches the buffer,
        # where it would fail every later flush.
        ts = datetime.now(timezone.utc) if timestamp is None else check_time(timestamp, "timestamp")
        with self._lock:
            self._check_open()
            new = []
            steps = self._steps
            for key, value in metrics.items():
                at = steps.get(key, -1) + 1 if step is None else step
                if type(value) is float and key in steps and type(at) is int and -_I32 <= at < _I32:
                    new.append(Metric(key, value, at, ts))  # a known key and a plain float
                else:
                    new.append(Metric(key, check_metric(key, value, at), at, ts))
            for m in new:
                if m.step > steps.get(m.key, -1):
                    steps[m.key] = m.step
            self._points.extend(new)
            full = len(self._points) >= FLUSH_POINTS
        if full:
            self.flush()

    def set_tag(self, key: str, value: str) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set tags (strings; tags stay editable, unlike params)."""
        checked = {k: check_text(v, f"tags.{check_key(k, 'tags')}") for k, v in tags.items()}
        with self._lock:
            self._check_open()
            self._tags.update(checked)

    def flush(self, heartbeat: bool = False) -> None:
        """Write the buffered params, metrics and tags now (and refresh the heartbeat)."""
        with self._lock:
            if self._ended:
                return
            params, tags, points = self._take()
            if not (params or tags or points or heartbeat):
                return
            try:
                self.client.tracking.log_batch(self.id, params=params, metrics=points, tags=tags)
            except BaseException:
                self._put_back(params, tags, points)
                raise

    # --- data, artifacts, evaluations, models -----------------------------------------------

    def log_dataset(
        self,
        data: Any,
        *,
        name: str | None = None,
        namespace: str | None = None,
        role: UsedRole | str = UsedRole.TRAIN,
        derived_from: Iterable[DatasetVersion | str] = (),
        profile: bool = True,
    ) -> DatasetVersion:
        """Record data the run used: a file, a directory, a pandas DataFrame or a numpy
        array. Its content digest, schema, row count and column profile are computed here
        (nothing is copied); the same content is the same :class:`DatasetVersion`."""
        return self._dataset(data, name, namespace, role, False, derived_from, profile)

    def log_output_dataset(
        self,
        data: Any,
        *,
        name: str | None = None,
        namespace: str | None = None,
        derived_from: Iterable[DatasetVersion | str] = (),
        profile: bool = True,
    ) -> DatasetVersion:
        """Record data the run generated; it is DERIVED_FROM the run's input data (and
        ``derived_from``)."""
        return self._dataset(data, name, namespace, UsedRole.INPUT, True, derived_from, profile)

    def log_artifact(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        kind: ArtifactKind | str = ArtifactKind.OTHER,
        media_type: str | None = None,
    ) -> Artifact:
        """Store a file in the artifact store (streamed, content-addressed) as an artifact
        the run generated."""
        p = Path(path)
        artifact_kind = member(ArtifactKind, kind, "kind")  # before any bytes are stored
        if not p.is_file():
            raise NotFoundError(f"path: no file {str(p)!r}", ids=[str(p)])
        self._check_open()
        info = self.client.artifacts.put_file(p)
        guessed = mimetypes.guess_type(p.name)[0]
        return self.client.tracking.log_artifact(
            self.id,
            info,
            name=name or p.name,
            kind=artifact_kind,
            media_type=media_type or guessed or "application/octet-stream",
        )

    def log_dict(
        self,
        data: Mapping[str, Any] | Sequence[Any],
        name: str,
        *,
        kind: ArtifactKind | str = ArtifactKind.REPORT,
    ) -> Artifact:
        """Store JSON-serializable data as an artifact (``name`` like ``config.json``)."""
        try:
            raw = json.dumps(data, indent=2, sort_keys=True, allow_nan=False).encode()
        except (TypeError, ValueError) as e:
            raise ValidationError(f"data: not JSON-serializable: {e}", field="data") from None
        return self._log_bytes(raw, name=name, kind=kind, media_type="application/json")

    def log_text(
        self, text: str, name: str, *, kind: ArtifactKind | str = ArtifactKind.REPORT
    ) -> Artifact:
        """Store text as an artifact (``name`` like ``notes.md``)."""
        if not isinstance(text, str):
            raise ValidationError("text must be a string", field="text")
        media = mimetypes.guess_type(name)[0] or "text/plain"
        return self._log_bytes(text.encode(), name=name, kind=kind, media_type=media)

    def log_figure(self, figure: Any, name: str, *, format: str = "png") -> Artifact:
        """Store a matplotlib figure as an image artifact (``format``: png, svg or pdf)."""
        if not hasattr(figure, "savefig"):
            raise ValidationError(
                f"figure: expected a matplotlib Figure, got {type(figure).__name__}",
                field="figure",
            )
        media = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
        if format not in media:
            raise ValidationError(f"format must be one of {sorted(media)}", field="format")
        buf = io.BytesIO()
        figure.savefig(buf, format=format)
        return self._log_bytes(
            buf.getvalue(), name=name, kind=ArtifactKind.PLOT, media_type=media[format]
        )

    def log_confusion_matrix(
        self,
        matrix: Any,
        labels: Sequence[Any] | None = None,
        *,
        name: str = "confusion_matrix.json",
    ) -> Artifact:
        """A confusion matrix (rows: true class, columns: predicted class), kept as data."""
        rows = _matrix(matrix, "matrix")
        if any(len(r) != len(rows) for r in rows):
            raise ValidationError("matrix must be square", field="matrix")
        names = (
            [str(x) for x in labels] if labels is not None else [str(i) for i in range(len(rows))]
        )
        if len(names) != len(rows):
            raise ValidationError(
                f"labels: {len(names)} labels for a {len(rows)}x{len(rows)} matrix", field="labels"
            )
        return self._evaluation(
            ArtifactKind.CONFUSION_MATRIX, {"labels": names, "matrix": rows}, name
        )

    def log_classification_report(
        self, report: Mapping[str, Any], *, name: str = "classification_report.json"
    ) -> Artifact:
        """A classification report (e.g. scikit-learn's ``output_dict=True``), kept as data."""
        if not isinstance(report, Mapping):
            raise ValidationError("report must be a mapping", field="report")
        return self._evaluation(ArtifactKind.CLASSIFICATION_REPORT, _jsonable(report), name)

    def log_roc_curve(
        self,
        fpr: Sequence[float],
        tpr: Sequence[float],
        thresholds: Sequence[float] | None = None,
        *,
        auc: float | None = None,
        name: str = "roc_curve.json",
    ) -> Artifact:
        """A ROC curve (false and true positive rates by threshold), kept as data."""
        data = _curve({"fpr": fpr, "tpr": tpr, "thresholds": thresholds})
        if auc is not None:
            data["auc"] = _float(auc, "auc")
        return self._evaluation(ArtifactKind.ROC_CURVE, data, name)

    def log_pr_curve(
        self,
        precision: Sequence[float],
        recall: Sequence[float],
        thresholds: Sequence[float] | None = None,
        *,
        average_precision: float | None = None,
        name: str = "pr_curve.json",
    ) -> Artifact:
        """A precision-recall curve, kept as data."""
        data = _curve({"precision": precision, "recall": recall, "thresholds": thresholds})
        if average_precision is not None:
            data["average_precision"] = _float(average_precision, "average_precision")
        return self._evaluation(ArtifactKind.PR_CURVE, data, name)

    def log_evaluation(
        self, data: Mapping[str, Any], name: str, *, kind: ArtifactKind | str = ArtifactKind.REPORT
    ) -> Artifact:
        """Any other evaluation result (residual statistics, calibration, fairness metrics),
        a JSON object kept as data on its artifact node like the confusion matrix is, and as
        JSON in the artifact store."""
        if not isinstance(data, Mapping):
            raise ValidationError("data must be a JSON object (a mapping)", field="data")
        check_text(name, "name")
        artifact_kind = member(ArtifactKind, kind, "kind")
        return self._evaluation(artifact_kind, _jsonable(dict(data)), name)

    def log_feature_importances(
        self,
        features: Sequence[str],
        values: Any,
        *,
        shap: bool = False,
        name: str | None = None,
    ) -> Artifact:
        """Feature importances (one value per feature), or SHAP values (``shap=True``: one
        row per sample, one column per feature; the mean absolute value per feature is kept
        as a summary). Kept as data."""
        names = [str(f) for f in features]
        if shap:
            rows = _matrix(values, "values")
            if any(len(r) != len(names) for r in rows):
                raise ValidationError("values: one column per feature", field="values")
            mean_abs = [
                sum(abs(r[i]) for r in rows if r[i] is not None) / max(len(rows), 1)
                for i in range(len(names))
            ]
            data: dict[str, Any] = {"features": names, "mean_abs": mean_abs, "values": rows}
            kind = ArtifactKind.SHAP_VALUES
        else:
            flat = _floats(values, "values")
            if len(flat) != len(names):
                raise ValidationError(
                    f"values: {len(flat)} values for {len(names)} features", field="values"
                )
            data = {"features": names, "importances": flat}
            kind = ArtifactKind.FEATURE_IMPORTANCES
        default = "shap_values.json" if shap else "feature_importances.json"
        return self._evaluation(kind, data, name or default)

    def evaluations(self) -> list[tuple[str, Artifact]]:
        """The artifacts this run generated, with their names (evaluations carry ``data``)."""
        return self.client.tracking.artifacts_of(self.id)

    def log_model(
        self,
        model: Any,
        *,
        name: str,
        flavor: str | None = None,
        signature: Mapping[str, Any] | None = None,
        description: str | None = None,
        primary_metric: str | None = None,
    ) -> ModelVersion:
        """Register the next version of model ``name`` from a file, a directory (stored as
        one deterministic tar) or a Python object (pickled; ``flavor`` defaults to
        ``"pickle"``), generated by this run, with the run's metrics as its snapshot.
        ``primary_metric`` names its headline metric (:mod:`lineagehub.services.headline`)."""
        self._check_open()
        self.flush()
        if isinstance(model, (str, os.PathLike)):
            path = Path(model)
            if path.is_file():
                info = self.client.artifacts.put_file(path)
            elif path.is_dir():
                info = self._put_tar(path)
            else:
                raise NotFoundError(f"model: no file or directory {str(path)!r}", ids=[str(path)])
        else:
            try:
                raw = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as e:  # pickling runs arbitrary __reduce__ code
                raise ValidationError(
                    f"model: cannot pickle a {type(model).__name__}: {e}", field="model"
                ) from None
            info = self.client.artifacts.put_bytes(raw)
            flavor = flavor or "pickle"
        return self.client.tracking.log_model(
            self.id,
            info,
            name=name,
            flavor=flavor,
            signature=signature,
            description=description,
            primary_metric=primary_metric,
        )

    # --- lifecycle ------------------------------------------------------------------------------

    def end(self, status: RunStatus | str = RunStatus.FINISHED, error: str | None = None) -> Run:
        """End the run (flushing what is buffered in the same transaction)."""
        with self._lock:
            if self._ended:
                return self.info
            params, tags, points = self._take()
            try:
                self.info = self.client.tracking.end_run(
                    self.id, status, error, params=params, metrics=points, tags=tags
                )
            except BaseException:
                self._put_back(params, tags, points)
                raise
            self._ended = True
        self.client._ended(self)
        return self.info

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.end(RunStatus.FINISHED)
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end(RunStatus.KILLED, "KeyboardInterrupt")
        else:
            self.end(RunStatus.FAILED, f"{exc_type.__name__}: {exc}")

    # --- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._ended:
            raise ConflictError(
                f"run {self.id!r} has ended ({self.info.status.value}); writes to a finished "
                "run are rejected"
            )

    def _take(self) -> tuple[dict[str, Any], dict[str, str], list[Metric]]:
        taken = (self._params, self._tags, self._points)
        self._params, self._tags, self._points = {}, {}, []
        return taken

    def _put_back(self, params: dict[str, Any], tags: dict[str, str], points: list[Metric]) -> None:
        self._params = {**params, **self._params}
        self._tags = {**tags, **self._tags}
        self._points = points + self._points

    def _dataset(
        self,
        data: Any,
        name: str | None,
        namespace: str | None,
        role: UsedRole | str,
        output: bool,
        derived_from: Iterable[DatasetVersion | str],
        profile: bool,
    ) -> DatasetVersion:
        self._check_open()
        fp = fingerprint(data, profile=profile)
        sources = [d.node_id if isinstance(d, DatasetVersion) else str(d) for d in derived_from]
        return self.client.tracking.log_dataset(
            self.id,
            fp,
            name=name,
            namespace=namespace,
            role=role,
            output=output,
            derived_from=sources,
        )

    def _log_bytes(
        self,
        raw: bytes,
        *,
        name: str,
        kind: ArtifactKind | str,
        media_type: str,
        data: Mapping[str, Any] | None = None,
    ) -> Artifact:
        artifact_kind = member(ArtifactKind, kind, "kind")  # before any bytes are stored
        self._check_open()
        info = self.client.artifacts.put_bytes(raw)
        return self.client.tracking.log_artifact(
            self.id, info, name=name, kind=artifact_kind, media_type=media_type, data=data
        )

    def _evaluation(self, kind: ArtifactKind, data: dict[str, Any], name: str) -> Artifact:
        raw = json.dumps(data, sort_keys=True, allow_nan=False).encode()
        return self._log_bytes(
            raw,
            name=name,
            kind=kind,
            media_type="application/json",
            data=data if len(raw) <= MAX_DATA_IN_GRAPH else None,
        )

    def _put_tar(self, folder: Path) -> ArtifactInfo:
        # Deterministic: sorted members, no times or owners, so the same folder content
        # always gives the same digest (and is stored once).
        with tempfile.TemporaryFile() as tmp:
            with tarfile.open(fileobj=tmp, mode="w") as tar:
                for path in sorted(folder.rglob("*")):
                    rel = path.relative_to(folder).as_posix()
                    if not (path.is_symlink() or path.is_file() or path.is_dir()):
                        # a socket, FIFO or device: no content to version (tarfile skips
                        # sockets silently, and would block reading a FIFO)
                        raise ValidationError(
                            f"{folder / rel} is not a file, folder or link: only those can "
                            "be stored",
                            field="model",
                        )
                    info = tar.gettarinfo(str(path), arcname=rel)
                    info.mtime = 0
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    if path.is_file():
                        with path.open("rb") as f:
                            tar.addfile(info, f)
                    else:
                        tar.addfile(info)
            tmp.seek(0)
            return self.client.artifacts.put_stream(tmp)


# --- numbers to JSON ----------------------------------------------------------------------------


def _float(value: Any, field: str) -> float | None:
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(
            f"{field}: expected a number, got {type(value).__name__}", field=field
        )
    value = float(value)
    return value if math.isfinite(value) else None  # JSON has no NaN; curves start at inf


def _floats(values: Any, field: str) -> list[float | None]:
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValidationError(f"{field}: expected a sequence of numbers", field=field)
    return [_float(v, f"{field}[{i}]") for i, v in enumerate(values)]


def _matrix(values: Any, field: str) -> list[list[Any]]:
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValidationError(f"{field}: expected a 2-D array", field=field)
    return [_floats(row, f"{field}[{i}]") for i, row in enumerate(values)]


def _curve(columns: Mapping[str, Any]) -> dict[str, Any]:
    data = {k: _floats(v, k) for k, v in columns.items() if v is not None}
    lengths = {len(v) for k, v in data.items() if k != "thresholds"}
    if len(lengths) > 1:
        raise ValidationError("curve coordinates must have equal lengths", field="curve")
    return data


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "item"):
        return _jsonable(value.item())
    raise ValidationError(f"not JSON data: {type(value).__name__}", field="report")


# --- the module-level API -----------------------------------------------------------------------

_default: Client | None = None
_default_lock = threading.Lock()
_clients: weakref.WeakSet[Client] = weakref.WeakSet()
_local = threading.local()
_uncaught: list[BaseException] = []


def diff_summary(
    a: str,
    b: str,
    sets: Mapping[str, tuple[Iterable[str], Iterable[str]]],
    params_added: Iterable[tuple[str, Any]],
    params_removed: Iterable[tuple[str, Any]],
    params_changed: Iterable[tuple[str, Any, Any]],
    metric_deltas: Iterable[tuple[str, Any, Any, Any]],
    truncated: bool,
) -> dict[str, Any]:
    """The JSON-ready summary of a model version comparison that both modes answer: the
    versions' ids; ``params_changed`` as ``(key, a, b)``; ``params_added`` /
    ``params_removed`` as ``(key, value)``; ``metric_deltas`` as ``(key, a, b, delta)``
    (non-finite numbers as ``None``); ``datasets`` / ``commits`` / ``environments`` as
    ``{"added": [ids], "removed": [ids]}``; ``truncated``. Rows are sorted by key, ids by id."""

    def num(value: Any) -> float | None:
        if value is None or isinstance(value, str):  # "NaN", "Infinity": not finite
            return None
        value = float(value)
        return value if math.isfinite(value) else None

    summary: dict[str, Any] = {"a": a, "b": b}
    for name, (added, removed) in sets.items():
        summary[name] = {"added": sorted(added), "removed": sorted(removed)}
    summary["params_added"] = sorted((str(k), v) for k, v in params_added)
    summary["params_removed"] = sorted((str(k), v) for k, v in params_removed)
    summary["params_changed"] = sorted(
        ((str(k), va, vb) for k, va, vb in params_changed), key=lambda r: r[0]
    )
    summary["metric_deltas"] = sorted(
        ((str(k), num(va), num(vb), num(d)) for k, va, vb, d in metric_deltas),
        key=lambda r: r[0],
    )
    summary["truncated"] = bool(truncated)
    return summary


def _stack() -> list[ActiveRun]:
    stack: list[ActiveRun] | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def _default_name(context: Any) -> str:
    entry = getattr(context, "entry_point", None) if context is not None else None
    stem = Path(entry).stem if entry and not entry.startswith("<") else "run"
    return f"{stem}-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"


def connect(
    store: str | GraphStore | None = None,
    *,
    artifacts: str | ArtifactStore | None = None,
    settings: Settings | None = None,
) -> Client:
    """Point the module-level API (``lh.start_run`` ...) at a store or a hub server's URL
    (``lh.connect("http://hub:8000")``); returns the client."""
    global _default
    with _default_lock:
        old, _default = _default, Client(store, artifacts=artifacts, settings=settings)
    if old is not None:
        old.close()
    return _default


def client() -> Client:
    """The module-level client (made from the settings on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


def start_run(name: str | None = None, **kwargs: Any) -> ActiveRun:
    """Start a run on the module-level client; see :meth:`Client.start_run`."""
    return client().start_run(name, **kwargs)


def active_run() -> ActiveRun | None:
    """The innermost run started (and not ended) in this thread, if any."""
    stack = _stack()
    return stack[-1] if stack else None


def _require_active() -> ActiveRun:
    run = active_run()
    if run is None:
        raise ValidationError("no active run: start one with lh.start_run()", field="run")
    return run


def log_params(params: Mapping[str, Any]) -> None:
    _require_active().log_params(params)


def log_metrics(
    metrics: Mapping[str, float], step: int | None = None, timestamp: datetime | None = None
) -> None:
    _require_active().log_metrics(metrics, step=step, timestamp=timestamp)


def set_tags(tags: Mapping[str, str]) -> None:
    _require_active().set_tags(tags)


def flush() -> None:
    """Write every buffered value of every client now."""
    for c in list(_clients):
        c.flush()


def _exit_status() -> RunStatus:
    return RunStatus.FAILED if _uncaught else RunStatus.FINISHED


def _excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    _uncaught.append(exc)
    _previous_hook(exc_type, exc, tb)


_previous_hook = sys.excepthook
sys.excepthook = _excepthook


@atexit.register
def _at_exit() -> None:
    # Runs still open at exit end FINISHED, or FAILED when an exception escaped the script;
    # nothing buffered is lost.
    error = f"{type(_uncaught[0]).__name__}: {_uncaught[0]}" if _uncaught else None
    for c in list(_clients):
        for run in list(c._live.values()):
            try:
                run.end(_exit_status(), error)
            except HubError as e:  # pragma: no cover - reported, the process is ending
                print(f"lineagehub: could not end run {run.id}: {e}", file=sys.stderr)


__all__ = [
    "ActiveRun",
    "Client",
    "active_run",
    "client",
    "connect",
    "diff_summary",
    "flush",
    "log_metrics",
    "log_params",
    "set_tags",
    "start_run",
]
