"""Many structural writes at once: ``with client.batch() as batch:``.

A pipeline step, an importer or a framework adapter records runs, their data, model versions,
aliases and stages by the hundred. One call each costs a transaction (and, against a hub
server, a request) apiece; a batch writes them all in one transaction, and against a server
in one request (the ``writeBatch`` mutation), as ML Metadata's ``put_execution`` writes an
execution with its artifacts and events::

    with client.batch() as batch:
        run = batch.start_run("prepare", project="churn", params={"split": 0.2})
        raw = batch.log_dataset_ref(run, "s3://lake/raw.parquet", raw_digest)
        batch.log_dataset_ref(run, "s3://lake/clean.parquet", clean_digest, output=True)
        batch.end_run(run)
        version = batch.register_model_version("churn", digest=weights, run=run)
        batch.set_alias(version, "candidate")
    version.result()          # ModelVersion churn@4, once the block has ended

All or nothing: an error in the block, or one the hub raises for any write, leaves none of
them written, in both modes, even if the block caught it (the batch then ends raising it).
Each write is checked, audited and authorized as the single call is; webhooks go out once
the batch has committed. A write answers a :class:`Pending`: its :meth:`~Pending.result` is
there once the block has ended, and until then it can be passed to a later write of the batch
wherever that write names a run, a version or a dataset. A run's id is known at once
(``run.id``): the SDK makes it. Once its block has ended a batch takes no more writes, and a
batch inside another (in the same thread) is refused: it would be written or undone with
neither.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from lineagehub.graph import HubError, ValidationError
from lineagehub.ingest.datasets import reference_fingerprint, reference_name
from lineagehub.services.tracking import Metric, RunStart, check_metric, metric_step
from lineagehub.vocabulary import (
    DatasetVersion,
    Deployment,
    DeploymentStatus,
    ModelVersion,
    Run,
    RunKind,
    RunStatus,
    UsedRole,
    check_key,
    check_scalar,
    check_text,
    member,
)

if TYPE_CHECKING:
    from lineagehub.ingest.seam import Backend, BatchTarget, PromoteResult

T = TypeVar("T")

#: The batch open in this thread, if any: a batch inside it is refused.
_open = threading.local()


class Pending(Generic[T]):
    """What one write of a batch answers, once the batch is written."""

    __slots__ = ("_answer", "_batch")

    def __init__(self, batch: Batch, answer: Any) -> None:
        self._batch, self._answer = batch, answer

    def result(self) -> T:
        """The written run, version, dataset, deployment or promotion outcome."""
        if self._batch.failed:
            raise ValidationError("the batch failed: nothing of it was written", field="batch")
        if not self._batch.written:
            raise ValidationError(
                "the batch is not written yet: read results after its with block", field="batch"
            )
        return self._batch._target.value(self._answer)  # type: ignore[union-attr]

    def __repr__(self) -> str:
        batch = self._batch
        state = "failed" if batch.failed else "written" if batch.written else "pending"
        return f"<Pending {state}>"


class BatchRun:
    """A run started in a batch: its id is known at once."""

    __slots__ = ("id", "pending")

    def __init__(self, run_id: str, pending: Pending[Run]) -> None:
        self.id, self.pending = run_id, pending

    def result(self) -> Run:
        """The run as started."""
        return self.pending.result()

    def __repr__(self) -> str:
        return f"<BatchRun {self.id}>"


RunRef = BatchRun | Pending[Run] | Run | str
NodeRef = Pending[Any] | ModelVersion | DatasetVersion | str


class Batch:
    """Writes collected and written together (see the module docstring)."""

    def __init__(
        self,
        backend: Backend,
        *,
        user: str | None = None,
        undone: Callable[[], None] | None = None,
    ) -> None:
        self._backend = backend
        self._user = user
        self._undone = undone  # told when the batch was not written
        self._target: BatchTarget | None = None
        self._block: Any = None
        self._ended = False
        self._refused: BaseException | None = None  # the first write the hub refused
        self.written = False
        #: How many writes the batch holds.
        self.size = 0

    @property
    def failed(self) -> bool:
        """Whether the block has ended and the batch was not written (none of it)."""
        return self._ended and not self.written

    def __enter__(self) -> Batch:
        if self._block is not None:
            raise ValidationError("a batch is used once", field="batch")
        if getattr(_open, "batch", None) is not None:
            # Embedded it would join the open batch's transaction, through a server it would
            # be a request of its own: written or undone with neither, refused in both.
            raise ValidationError(
                "a batch inside a batch: write through the open one, or after its with block",
                field="batch",
            )
        self._block = self._backend.batch()
        self._target = self._block.__enter__()
        _open.batch = self
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        refusal = None
        if kind is None and self._refused is not None:
            # a write failed and its error was caught in the block: all or nothing still
            refusal = _not_written(self._refused)
            kind, error, traceback = type(refusal), refusal, None
        try:
            self._block.__exit__(kind, error, traceback)
            self.written = kind is None
        finally:
            self._ended = True
            if getattr(_open, "batch", None) is self:
                _open.batch = None
            if not self.written and self._undone is not None:
                self._undone()
        if refusal is not None:
            raise refusal from (self._refused if refusal is not self._refused else None)

    # --- what a batch writes ------------------------------------------------------------

    def _t(self) -> BatchTarget:
        if self._target is None or self._ended:
            raise ValidationError("write inside the batch's with block", field="batch")
        return self._target

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Around one write: one the hub refuses fails the whole batch, even if its error is
        caught in the block (embedded it is raised at once, through a server at the end)."""
        try:
            yield
        except BaseException as e:
            self._refused = self._refused or e
            raise
        self.size += 1

    def _ref(self, value: Any) -> str:
        assert self._target is not None
        if isinstance(value, BatchRun):
            return value.id
        if isinstance(value, Pending):
            if value._batch is not self:  # another batch's: what it wrote, once it has
                return self._target.ref(value.result())
            return self._target.ref(value._answer)
        return self._target.ref(value)

    def start_run(
        self,
        name: str,
        *,
        project: str | None = None,
        experiment: str | None = None,
        kind: RunKind | str = RunKind.TRAIN,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parent: RunRef | None = None,
        description: str | None = None,
        started_at: datetime | None = None,
    ) -> BatchRun:
        """Start a run (RUNNING until :meth:`end_run`). Nothing of the calling process is
        captured (code, environment): a batch records what is told."""
        target = self._t()
        fields: dict[str, Any] = {
            "name": name,
            "kind": member(RunKind, kind, "kind"),
            "project": project,
            "experiment": experiment,
            "params": dict(params or {}),
            "tags": dict(tags or {}),
            "parent": self._ref(parent) if parent is not None else None,
            "user": self._user,
            "description": description,
        }
        if started_at is not None:
            fields["started_at"] = started_at
        run = Run(**{k: v for k, v in fields.items() if v is not None})
        with self._writing():
            answer = target.tracking.start_run(run, RunStart())
        return BatchRun(run.id, Pending(self, answer))

    def log(
        self,
        run: RunRef,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        step: int = 0,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Params, metric values (at ``step``) and tags of a run, checked here as a run's
        ``log_params``/``log_metrics``/``set_tags`` check them: a bad value raises at this
        line, in both modes, and the batch can go on without it."""
        for name, value in (("params", params), ("metrics", metrics), ("tags", tags)):
            if value is not None and not isinstance(value, Mapping):
                raise ValidationError(f"{name} must be a mapping", field=name)
        checked = {k: check_scalar(v, f"params.{check_key(k, 'params')}")
                   for k, v in (params or {}).items()}  # fmt: skip
        labels = {k: check_text(v, f"tags.{check_key(k, 'tags')}") for k, v in (tags or {}).items()}
        now = datetime.now(timezone.utc)
        at = metric_step(step)
        points = [Metric(k, check_metric(k, v, at), at, now) for k, v in (metrics or {}).items()]
        target, run_id = self._t(), self._ref(run)
        with self._writing():
            target.tracking.log_batch(run_id, params=checked, metrics=points, tags=labels)

    def end_run(
        self, run: RunRef, status: RunStatus | str = RunStatus.FINISHED, error: str | None = None
    ) -> Pending[Run]:
        """End a run (FINISHED unless ``status`` says otherwise)."""
        target, run_id = self._t(), self._ref(run)
        with self._writing():
            return Pending(self, target.tracking.end_run(run_id, status, error))

    def log_dataset_ref(
        self,
        run: RunRef,
        uri: str,
        digest: str,
        *,
        name: str | None = None,
        namespace: str | None = None,
        schema: Mapping[str, str] | Sequence[Mapping[str, str]] | None = None,
        row_count: int | None = None,
        size_bytes: int | None = None,
        role: UsedRole | str = UsedRole.TRAIN,
        output: bool = False,
        derived_from: Iterable[NodeRef] | None = (),
    ) -> Pending[DatasetVersion]:
        """Data the run used (``role``) or, with ``output=True``, generated, by reference: as
        :meth:`~lineagehub.ingest.run.ActiveRun.log_dataset_ref` (no data read)."""
        target = self._t()
        fp = reference_fingerprint(
            uri, digest, schema=schema, row_count=row_count, size_bytes=size_bytes
        )
        namespace, name = reference_name(uri, name, namespace)
        run_id, sources = self._ref(run), [self._ref(d) for d in derived_from or ()]
        with self._writing():
            answer = target.tracking.log_dataset(
                run_id,
                fp,
                name=name,
                namespace=namespace,
                role=UsedRole.INPUT if output else role,
                output=output,
                derived_from=sources,
            )
        return Pending(self, answer)

    def log_input_model(
        self, run: RunRef, ref: NodeRef, *, role: UsedRole | str = UsedRole.BASE_MODEL
    ) -> Pending[ModelVersion]:
        """The run used a registered model version (a base model, one it evaluates)."""
        target, run_id, version = self._t(), self._ref(run), self._ref(ref)
        with self._writing():
            return Pending(self, target.tracking.log_input_model(run_id, version, role=role))

    def register_model_version(
        self,
        name: str,
        *,
        digest: str,
        run: RunRef | None = None,
        flavor: str | None = None,
        signature: Mapping[str, Any] | None = None,
        description: str | None = None,
        primary_metric: str | None = None,
    ) -> Pending[ModelVersion]:
        """The next version of model ``name`` from content already in the artifact store
        (``digest``), generated by ``run`` (one of the batch, or any other) or by none."""
        target = self._t()
        run_id = self._ref(run) if run is not None else None
        with self._writing():
            answer = target.tracking.register_model_version(
                name,
                target.artifact(digest),
                run_id=run_id,
                flavor=flavor,
                signature=signature,
                description=description,
                primary_metric=primary_metric,
            )
        return Pending(self, answer)

    def set_alias(
        self, ref: NodeRef, alias: str, reason: str | None = None
    ) -> Pending[ModelVersion]:
        """Point ``alias`` at a version (one of the batch, or ``churn@3``)."""
        target, version = self._t(), self._ref(ref)
        with self._writing():
            return Pending(self, target.registry.set_alias(version, alias, reason))

    def promote(
        self,
        ref: NodeRef,
        to: str,
        reason: str,
        *,
        archive_previous: bool = True,
        on_deployments: str = "refuse",
    ) -> Pending[PromoteResult]:
        """Move a version to a stage where its policy needs no approvals; a refusal is an
        answer (:class:`~lineagehub.services.registry.PromotionRefused`), as the single call's."""
        target, version = self._t(), self._ref(ref)
        with self._writing():
            answer = target.registry.promote(
                version, to, reason, archive_previous=archive_previous,
                on_deployments=on_deployments,
            )  # fmt: skip
        return Pending(self, answer)

    def deploy(
        self,
        ref: NodeRef,
        environment: str,
        *,
        name: str | None = None,
        endpoint: str | None = None,
        status: DeploymentStatus | str = DeploymentStatus.ACTIVE,
        require_stage: str | None = None,
        reason: str | None = None,
    ) -> Pending[Deployment]:
        """Record that a version is served in ``environment``."""
        target, version = self._t(), self._ref(ref)
        with self._writing():
            answer = target.registry.deploy(
                version, environment, name=name, endpoint=endpoint, status=status,
                require_stage=require_stage, reason=reason,
            )  # fmt: skip
        return Pending(self, answer)


def _not_written(refused: BaseException) -> BaseException:
    """The error a batch ends with when one of its writes failed in a block that went on:
    that write's (same class and code), saying the batch was not written."""
    if not isinstance(refused, HubError):
        return refused
    error = copy.copy(refused)
    error.message = (
        f"the batch was not written (none of it): one of its writes failed: {refused.message}"
    )
    error.args = (error.message,)
    return error


__all__ = ["Batch", "BatchRun", "Pending"]
