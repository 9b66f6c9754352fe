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

A forked process (``os.fork``, a ``multiprocessing`` "fork" worker) starts with no active run:
the runs it inherited are its parent's, which writes and ends them. Logging to one of them
there raises :class:`ConflictError` (the module-level calls a :class:`ValidationError`, no
active run); a run the child starts is its own, ended like any other.

Two modes, one behaviour: embedded (a store URI, no server: the client opens the graph store
and the artifact store itself) and remote (``Client("http://hub:8000")``, ``lh.connect(url)``
or ``LINEAGEHUB_URL``: the client talks to a hub server over HTTP, see
:mod:`lineagehub.ingest.remote`). Both are one :class:`~lineagehub.ingest.seam.Backend` to
the client: the same calls, the same models back, the same errors.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import math
import os
import sys
import tarfile
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from lineagehub.artifacts import ArtifactStore, open_artifact_store, validate_digest
from lineagehub.config import Settings
from lineagehub.graph import (
    ConfigError,
    Direction,
    GraphStore,
    HubError,
    NotFoundError,
    SeriesPoint,
    Subgraph,
    ValidationError,
)
from lineagehub.ingest.batch import Batch
from lineagehub.ingest.capture import CodeState, capture_code, capture_context, capture_environment
from lineagehub.ingest.flavors import extract_archive, load_from
from lineagehub.ingest.run import DIRECTORY_MEDIA_TYPE, ActiveRun, status_for
from lineagehub.ingest.seam import Backend, LocalBackend, PromoteResult
from lineagehub.services.cards import InventoryRow, ModelCard
from lineagehub.services.registry import (
    HistoryEntry,
    PendingPromotion,
    Policy,
    PromotionRejected,
)
from lineagehub.services.tracking import RunStart, default_actor
from lineagehub.vocabulary import (
    Alert,
    ArtifactKind,
    Deployment,
    DeploymentStatus,
    Model,
    ModelVersion,
    NodeKind,
    Run,
    RunKind,
    RunStatus,
    member,
)

if TYPE_CHECKING:
    from lineagehub.ingest.monitor import Monitor
    from lineagehub.services.monitoring import MonitoringSummary

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
            from lineagehub.ingest.http import HubConnection

            # the settings' token ("" for none: the environment is not read again)
            self.backend = RemoteBackend(HubConnection(url, token=settings.bearer_token() or ""))
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
                actor=self._user,
                stale_after=timedelta(seconds=settings.stale_after),
                policies=registry_policies,
                owns_store=owned,
                alert_rules=_alert_rules(settings),
            )
        self.tracking = self.backend.tracking
        self.artifacts = self.backend.artifacts
        _clients.add(self)

    @functools.cached_property
    def _user(self) -> str:
        """Who this client acts as: ``settings.user``, else the OS user (read once: building
        the settings again costs milliseconds)."""
        return self.settings.user or default_actor()

    @property
    def registry_policies(self) -> Mapping[Any, Policy]:
        """The promotion policies this client's registry applies (empty for a client of a
        hub server: the server applies its own)."""
        return dict(self.backend.policies)

    def __repr__(self) -> str:
        where = self.url if self.url is not None else getattr(self.store, "uri", None)
        return f"Client({where!r})"

    def _same_hub(self, other: Client) -> bool:
        """Whether ``other`` writes where this client does: the same server, or the same
        store (an in-memory one only if it is this very store)."""
        if other is self:
            return True
        if self.url is not None or other.url is not None:
            return (self.url or "").rstrip("/") == (other.url or "").rstrip("/")
        mine, theirs = self.store, other.store
        if mine is None or theirs is None or mine is theirs:
            return mine is theirs
        return mine.uri == theirs.uri and not getattr(mine, "memory", False)

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
        the child of the innermost one on the same hub, unless ``parent`` says otherwise (a
        run on another hub is no parent here: this hub does not have it)."""
        if parent is None:
            here = (r for r in reversed(_stack()) if not r._ended and self._same_hub(r.client))
            parent_id = next((r.id for r in here), None)
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
        _local.ended = None
        self._ensure_heartbeat()
        return active

    def batch(self) -> Batch:
        """Many writes in one transaction (and, remote, one request): runs, their params and
        data, model versions, aliases, stages, deployments. All or nothing; results once the
        block ends (:mod:`lineagehub.ingest.batch`)::

            with client.batch() as batch:
                run = batch.start_run("prepare", project="churn")
                batch.log_dataset_ref(run, "s3://lake/raw.parquet", digest)
                batch.end_run(run)
        """
        before = set(self._live)
        return Batch(self.backend, user=self._user, undone=lambda: self._forget_undone(before))

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
        connection to the server). Every live run is ended even when one cannot be (the hub
        refused, or was unreachable); then the first such error is raised."""
        self._close(None)

    def _close(self, exc: BaseException | None) -> None:
        self._stop.set()
        first: Exception | None = None
        try:
            for run in list(self._live.values()):
                try:
                    run.end(*_exit_status(run, exc))
                except Exception as e:
                    first = first or e
        finally:
            # A run that could not be ended (the hub refused or was unreachable) must not
            # stay the thread's active run after its client is gone.
            stack = _stack()
            stack[:] = [r for r in stack if r.client is not self]
            self.backend.close()
            _clients.discard(self)
        if first is not None:
            raise first

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Runs left open end as the block did: FAILED with its error, KILLED by Ctrl-C.
        self._close(exc)

    # --- model registry -----------------------------------------------------------------------

    def request_promotion(
        self, ref: str, to: str, reason: str, *, on_deployments: str = "refuse"
    ) -> PromoteResult:
        """Ask to move a model version (``churn/3``, ``churn@champion``) to a stage: refused
        (a :class:`~lineagehub.services.registry.PromotionRefused` listing every broken rule), pending
        approvals, or done at once when its policy wants none. A live deployment that requires
        the stage a version would leave (the archived Production versions) refuses it (rule
        ``deployment.stage``) unless ``on_deployments`` is ``"retire"`` or ``"repoint"`` (kept
        with a pending request; applied at its last approval)."""
        return self.backend.registry.request_promotion(
            ref, to, reason, on_deployments=on_deployments
        )

    def approve_promotion(self, request_id: str, comment: str | None = None) -> PromoteResult:
        """Approve a pending promotion request; the last approval needed promotes."""
        return self.backend.registry.approve(request_id, comment)

    def reject_promotion(self, request_id: str, reason: str) -> PromotionRejected:
        """Reject a pending promotion request."""
        return self.backend.registry.reject(request_id, reason)

    def promote(
        self,
        ref: str,
        to: str,
        reason: str,
        archive_previous: bool = True,
        *,
        on_deployments: str = "refuse",
    ) -> PromoteResult:
        """Move a model version to a stage at once (where its policy needs no approvals);
        promoting to Production archives the previous Production versions by default.
        ``on_deployments``: as for :meth:`request_promotion`."""
        return self.backend.registry.promote(
            ref, to, reason, archive_previous=archive_previous, on_deployments=on_deployments
        )

    def register_model_version(
        self,
        name: str,
        *,
        digest: str | None = None,
        run_id: str | None = None,
        artifact: str | None = None,
        flavor: str | None = None,
        signature: Mapping[str, Any] | None = None,
        description: str | None = None,
        primary_metric: str | None = None,
    ) -> ModelVersion:
        """Register the next version of model ``name`` from content already in the artifact
        store, as MLflow's ``create_model_version(source=...)``: ``digest`` names it, or
        ``artifact`` names one the run ``run_id`` logged (``"model.pkl"``). The version is
        ``GENERATED_BY`` that run (finished runs too; its metrics are the snapshot) or, with
        no ``run_id``, by no run. Numbers, audit entry and webhook as ``run.log_model``."""
        if (digest is None) == (artifact is None):
            raise ValidationError("give either digest or artifact", field="digest")
        if artifact is not None:
            if run_id is None:
                raise ValidationError(
                    "artifact names a run's artifact: give run_id", field="run_id"
                )
            logged = dict(self.backend.tracking.artifacts_of(run_id))
            if artifact not in logged:
                raise NotFoundError(
                    f"artifact: run {run_id!r} logged no artifact named {artifact!r}",
                    ids=[artifact],
                )
            digest = logged[artifact].digest
        assert digest is not None
        info = self.backend.artifact(digest)
        self.flush()  # the run's buffered metrics belong in the snapshot
        return self.backend.tracking.register_model_version(
            name,
            info,
            run_id=run_id,
            flavor=flavor,
            signature=signature,
            description=description,
            primary_metric=primary_metric,
        )

    # --- loading back ------------------------------------------------------------------------

    def load_model(self, ref: str | ModelVersion) -> Any:
        """The model object of a version (``"churn@champion"``, ``"churn/3"``,
        ``"mv:churn/3"``, a :class:`ModelVersion`), loaded by the flavor it was saved with
        (:mod:`lineagehub.ingest.flavors`). The stored bytes are checked against the
        version's digest while downloaded (:class:`~lineagehub.graph.errors.IntegrityError`
        when they do not match); an :class:`~lineagehub.ingest.flavors.
        EnvironmentMismatchWarning` says when a package it was saved with has another
        version here. Unpickling runs code: load only models of hubs you trust."""
        version = ref if isinstance(ref, ModelVersion) else self.get_model_version(ref)
        with tempfile.TemporaryDirectory(prefix="lineagehub-load-") as tmp:
            path = self.artifacts.download(version.artifact_digest, Path(tmp) / "artifact")
            return load_from(path, version.flavor, version.metadata, version.node_id)

    def download(self, ref: str | ModelVersion, path: str | os.PathLike[str]) -> Path:
        """Write an artifact to ``path``, verified against its digest: ``ref`` is a digest
        (``sha256:<hex>``), an artifact id (``artifact:sha256:<hex>``) or a model version
        reference (its stored model). A directory artifact (``run.log_artifact("stats/")``,
        a model saved as a folder) is unpacked as a directory at ``path`` (which must not
        exist, or be empty), safely: no member may lead outside it; anything else becomes
        the file ``path``. Returns ``path``."""
        digest, directory = self._download_target(ref)
        dest = Path(path)
        if not directory:
            return self.artifacts.download(digest, dest)
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise ValidationError(
                f"{str(dest)!r} exists and is not an empty folder: a directory artifact is "
                "unpacked into a new folder",
                field="path",
            )
        parent = dest.parent if dest.parent != Path("") else Path(".")
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".lineagehub-download-", dir=parent) as tmp:
            archive = self.artifacts.download(digest, Path(tmp) / "archive.tar")
            return extract_archive(archive, dest)

    def _download_target(self, ref: str | ModelVersion) -> tuple[str, bool]:
        if isinstance(ref, ModelVersion):
            version = ref
        elif isinstance(ref, str) and ref.startswith(("sha256:", "artifact:sha256:")):
            digest = ref.removeprefix("artifact:")
            validate_digest(digest)
            node_id = f"artifact:{digest}"
            try:  # the artifact node says how it was stored (content put only: a file)
                sub = self.backend.queries.lineage([node_id], "UPSTREAM", 0, 0, max_nodes=1)
                media = sub.nodes[node_id].node.props.get("media_type") if node_id in sub else None
            except NotFoundError:
                media = None
            return digest, media == DIRECTORY_MEDIA_TYPE
        elif isinstance(ref, str):
            version = self.get_model_version(ref)
        else:
            raise ValidationError("ref must be a digest or a model version reference", "ref")
        metadata = version.metadata or {}
        if "layout" in metadata:
            return version.artifact_digest, metadata["layout"] == "directory"
        # a version logged from a folder, before flavors: a tar of it
        with self.artifacts.open(version.artifact_digest) as reader:
            head = reader.read(512)
        return version.artifact_digest, _is_tar_header(head)

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

    def monitor(self, deployment: str, **options: Any) -> Monitor:
        """A :class:`~lineagehub.ingest.monitor.Monitor` of ``deployment`` (its id, name or
        ``name@environment``) for a serving process: ``log_predictions``, ``log_labels``,
        ``log_latency``, aggregated into windows and reported in the background. Options:
        ``dataset`` (the drift reference instead of the training data), ``window`` (seconds,
        default 3600), ``instance``, ``flush_interval`` (seconds; ``None``: only on
        ``flush()``), ``prediction_column``, ``task``, ``feature_names``, ``max_windows``,
        ``max_pending_labels``, ``keep_rows`` (raw rows kept per window; none by default),
        ``strict``. An unknown deployment raises
        :class:`~lineagehub.graph.errors.NotFoundError` here, once, at start-up."""
        from lineagehub.ingest.monitor import Monitor

        return Monitor(self.backend.monitoring, deployment, **options)

    def alerts(
        self, deployment: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[Alert]:
        """Alerts, newest first; ``state`` one of pending, firing, acknowledged, resolved or
        ``open`` (all but resolved)."""
        return self.backend.monitoring.list_alerts(deployment, state, limit)

    def acknowledge_alert(self, alert_id: str, comment: str | None = None) -> Alert:
        """Mark a firing alert acknowledged: someone is on it (it stays open)."""
        return self.backend.monitoring.acknowledge_alert(alert_id, comment)

    def silence_alert(self, alert_id: str, until: datetime) -> Alert:
        """No notifications about an alert until ``until``."""
        return self.backend.monitoring.silence_alert(alert_id, until)

    def monitoring(
        self, deployment: str, start: datetime | None = None, end: datetime | None = None
    ) -> MonitoringSummary:
        """A deployment's monitoring windows that start in ``[start, end)``, with the drift
        (per feature, Benjamini-Hochberg adjusted) and the performance of their merged
        sketches."""
        return self.backend.monitoring.summary(deployment, start, end)

    def rollback(
        self, model: str, stage_or_alias: str, reason: str, *, on_deployments: str = "refuse"
    ) -> list[str]:
        """Put back the previous holder of a stage (its exact name, e.g. ``Production``) or
        an alias, undoing its last change; returns the ids of the runs recording it. A stage
        rollback that would leave a live deployment serving a version outside the stage it
        requires raises :class:`~lineagehub.graph.errors.PolicyViolation` naming them
        (nothing written) unless ``on_deployments`` is ``"retire"`` or ``"repoint"`` (at the
        version holding that stage after the rollback)."""
        return self.backend.registry.rollback(
            model, stage_or_alias, reason, on_deployments=on_deployments
        )

    def pending_promotions(
        self, model: str | None = None, stage: str | None = None
    ) -> list[PendingPromotion]:
        """Promotion requests waiting for approvals, oldest first (of one model, to one
        stage): each with its request id, version, stage, requester, reason, approvals so
        far, approvals needed and time."""
        return self.backend.registry.pending_promotions(model, stage)

    def model_history(
        self, model: str, alias: str | None = None, stage: str | None = None
    ) -> list[HistoryEntry]:
        """Every stage and alias change of a model, oldest first (or of one alias or stage)."""
        return self.backend.registry.history(model, alias, stage)

    def holder_at(self, model: str, alias_or_stage: str, time: datetime) -> ModelVersion | None:
        """The model version holding an alias or stage at ``time`` (for a stage several may:
        the most recent entrant), or ``None``."""
        return self.backend.registry.holder_at(model, alias_or_stage, time)

    # --- model cards, compliance reports, the inventory ------------------------------------

    def set_model_card(
        self, ref: str, card: Mapping[str, Any], reason: str | None = None
    ) -> ModelCard:
        """Set fields of a model version's card: ``intended_use``, ``out_of_scope_uses``,
        ``limitations``, ``ethical_considerations``, ``owners``, ``risk_tier`` (minimal,
        limited, high, unacceptable), ``validation_status`` (not-validated, in-validation,
        validated, validated-with-findings, rejected), ``next_review_date`` (YYYY-MM-DD).
        Fields not given stay, ``None`` removes one; each call is a new revision, audited
        as done by this client's user. Returns the card after it."""
        return self.backend.registry.set_model_card(ref, card, reason)

    def model_card(self, ref: str, as_of: datetime | None = None) -> ModelCard:
        """A model version's card, now or as it was at ``as_of`` (``revision`` 0: none)."""
        return self.backend.registry.model_card(ref, as_of)

    def compliance_report(self, ref: str, as_of: datetime | None = None) -> dict[str, Any]:
        """The compliance report of a model version (:mod:`lineagehub.services.dossier`),
        now or reconstructed at ``as_of``, as JSON-ready data."""
        return self.backend.queries.compliance_report(ref, as_of)

    def model_inventory(self) -> list[InventoryRow]:
        """Every model version in production with its owners, risk tier, validation status,
        next review date and open alerts."""
        return self.backend.queries.model_inventory()

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
        :meth:`get_model_version`), as a JSON-ready dict: the versions' ids ``a`` and ``b``;
        ``params_changed`` as ``(key, a, b)`` and ``params_added`` / ``params_removed`` as
        ``(key, value)`` (the training runs' params); ``metric_deltas`` as ``(key, a, b,
        delta)`` (non-finite numbers as ``None``); ``datasets`` / ``commits`` /
        ``environments`` upstream of only one of them, as ``{"added": [ids], "removed":
        [ids]}``; ``truncated``. Rows are sorted by key, ids by id."""
        d = self.backend.queries.compare_model_versions(a, b)
        summary: dict[str, Any] = {"a": d.a.id, "b": d.b.id}
        for name in ("datasets", "commits", "environments"):
            part = getattr(d, name)
            summary[name] = {
                k: sorted(n.id for n in getattr(part, k)) for k in ("added", "removed")
            }
        summary["params_added"] = sorted((p.key, p.b) for p in d.params_added)
        summary["params_removed"] = sorted((p.key, p.a) for p in d.params_removed)
        summary["params_changed"] = sorted(
            ((p.key, p.a, p.b) for p in d.params_changed), key=lambda r: r[0]
        )
        summary["metric_deltas"] = sorted(
            ((m.key, _finite(m.a), _finite(m.b), _finite(m.delta)) for m in d.metric_deltas),
            key=lambda r: r[0],
        )
        summary["truncated"] = d.truncated
        return summary

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
            return [_finite(v) for v in values]

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
                    # A flush that failed for now keeps its buffer and is retried at the next
                    # beat; values the hub refused for good are dropped (see ActiveRun.flush).
                    with contextlib.suppress(HubError):
                        run.flush(heartbeat=True)
                del client

        self._heartbeat = threading.Thread(target=beat, name="lineagehub-heartbeat", daemon=True)
        self._heartbeat.start()

    def _forget_undone(self, before: set[str]) -> None:
        """After a batch that was not written: forget the runs started since ``before`` that
        the hub does not have. Embedded, a run started with a single call in the batch's block
        was written in its transaction, and is undone with it; a client still holding it
        live would fail every later flush, search and exit on it."""
        for run in [r for r in list(self._live.values()) if r.id not in before]:
            try:
                self.tracking.get_run(run.id)
            except NotFoundError:
                self._ended(run)
            except HubError:  # unreachable for now: kept, as any live run is
                pass

    def _ended(self, run: ActiveRun) -> None:
        with self._lock:
            self._live.pop(run.id, None)
        # Other threads' stacks drop it when next read (see active_run).
        stack = _stack()
        if run in stack:
            stack.remove(run)

    def _forked(self) -> None:
        """In a child process just forked: the live runs are the parent's (it flushes and
        ends them), so this client holds none; locks and the heartbeat are made anew (the
        heartbeat thread does not exist here, and may have held them at the fork)."""
        runs, self._live = list(self._live.values()), {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat = None
        for run in runs:
            run._forked()


# --- the module-level API -----------------------------------------------------------------------

_default: Client | None = None
_default_lock = threading.Lock()
_clients: weakref.WeakSet[Client] = weakref.WeakSet()
_local = threading.local()
_uncaught: list[BaseException] = []
#: The last ``sys.exit`` of the main thread (the interpreter tells atexit nothing of it)
_exiting: list[SystemExit] = []
#: In a forked child: the parent's id and the runs it had open at the fork
_forked_from: tuple[int, list[str]] | None = None


def _alert_rules(settings: Settings) -> list[Any]:
    """The alert rules ``LINEAGEHUB_ALERT_RULES`` names (embedded: evaluated in this process)."""
    if settings.alert_rules is None:
        return []
    from lineagehub.services.alerts import load_alert_rules

    return load_alert_rules(settings.alert_rules)


def _is_tar_header(head: bytes) -> bool:
    """Whether ``head`` (a file's first 512 bytes) is a tar header (checksum included)."""
    if len(head) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
    except tarfile.TarError:
        return False
    return True


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


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


def monitor(deployment: str, **options: Any) -> Monitor:
    """Monitor a deployment on the module-level client; see :meth:`Client.monitor`."""
    return client().monitor(deployment, **options)


def load_model(ref: str | ModelVersion) -> Any:
    """Load a model version's object on the module-level client; see
    :meth:`Client.load_model`."""
    return client().load_model(ref)


def download(ref: str | ModelVersion, path: str | os.PathLike[str]) -> Path:
    """Download an artifact on the module-level client; see :meth:`Client.download`."""
    return client().download(ref, path)


def active_run() -> ActiveRun | None:
    """The innermost run started (and not ended) in this thread, if any."""
    stack = _stack()
    while stack and stack[-1]._ended:
        # ended by another thread, or found ended elsewhere: no longer active, nor a parent;
        # logging through the module-level calls still names it (see _require_active)
        _local.ended = stack.pop()
    return stack[-1] if stack else None


def _require_active() -> ActiveRun:
    run = active_run()
    if run is not None:
        return run
    ended: ActiveRun | None = getattr(_local, "ended", None)
    if ended is not None:
        ended._check_open()  # raises: it has ended (another thread ended it, or the hub)
    if _forked_from is not None:
        pid, ids = _forked_from
        raise ValidationError(
            f"no active run in this process, forked from process {pid}: the runs open there "
            f"({', '.join(ids)}) are that process's; start one here with lh.start_run() "
            "(parent=<run id> makes it a child of one of them)",
            field="run",
        )
    raise ValidationError("no active run: start one with lh.start_run()", field="run")


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


def _exit_status(run: ActiveRun, exc: BaseException | None = None) -> tuple[RunStatus, str | None]:
    """How a run still open at exit (or when its client closes) ends: as ``exc`` (what ended
    the client's ``with`` block, or the script), else as an exception that escaped the
    script: FAILED with the error, KILLED by Ctrl-C (see :func:`status_for`); a run its
    adapter left open (its training raised) as the adapter asked; else FINISHED."""
    if exc is None and _uncaught:
        exc = _uncaught[0]
    status, error = status_for(exc)
    if status is RunStatus.FINISHED and run.left_open is not None:
        return run.left_open
    return status, error


#: How a framework adapter's own run ends when its training stops before the adapter's end
#: of training (Keras, transformers and XGBoost call no hook when training raises)
LEFT_BY_TRAINING = (
    RunStatus.FAILED,
    "training stopped before its end (an exception in the training loop?): the adapter "
    "that started the run could not end it",
)


def adapter_active_run(owner: object) -> ActiveRun | None:
    """The thread's active run for an adapter (``owner``) to log into. A run another adapter
    started and left open (its training raised) is ended first, as it asked
    (:attr:`ActiveRun.left_open`), so a later training never logs into a failed one."""
    while True:
        run = active_run()
        if run is None or run.left_open is None or run.owner is owner:
            return run
        status, error = run.left_open
        try:
            run.end(status, error)
        except HubError:
            pass
        finally:
            stack = _stack()
            if run in stack:  # not ended (the hub unreachable): no longer anyone's parent
                stack.remove(run)


def _excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    _uncaught.append(exc)
    _previous_hook(exc_type, exc, tb)


_previous_hook = sys.excepthook
sys.excepthook = _excepthook


def _exit(status: Any = None) -> NoReturn:
    # Only the main thread's: elsewhere sys.exit ends a thread, not the process.
    if threading.current_thread() is threading.main_thread():
        _exiting[:] = [SystemExit(status)]
    _previous_exit(status)


_previous_exit = sys.exit
sys.exit = _exit


@atexit.register
def _at_exit() -> None:
    # Runs still open at exit end as the script did (see _exit_status); nothing buffered is
    # lost. A forked child's clients hold only the runs it started (see _after_fork).
    # The last sys.exit is read here only: one a caller caught (a notebook, a CLI test
    # runner) must not end the runs a client closes later.
    exc = _uncaught[0] if _uncaught else _exiting[-1] if _exiting else None
    for c in list(_clients):
        for run in list(c._live.values()):
            try:
                run.end(*_exit_status(run, exc))
            except Exception as e:  # pragma: no cover - reported, the process is ending
                print(f"lineagehub: could not end run {run.id}: {e}", file=sys.stderr)


def _after_fork() -> None:
    """In a child process just forked: it starts with no active run and no live run (those
    are its parent's, which writes and ends them), and with fresh locks (a thread of the
    parent's may have held one at the fork: none of its threads exists here)."""
    global _local, _default_lock, _forked_from
    clients = list(_clients)
    inherited = [run_id for c in clients for run_id in c._live]
    _forked_from = (os.getppid(), inherited) if inherited else None
    _local = threading.local()
    _default_lock = threading.Lock()
    _uncaught.clear()
    _exiting.clear()
    for c in clients:
        c._forked()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_after_fork)


__all__ = [
    "LEFT_BY_TRAINING",
    "ActiveRun",
    "Client",
    "active_run",
    "adapter_active_run",
    "client",
    "connect",
    "download",
    "flush",
    "load_model",
    "log_metrics",
    "log_params",
    "set_tags",
    "start_run",
]
