"""Mutations: everything the SDK does, so remote clients behave exactly like embedded ones.

Artifact bytes never travel inside GraphQL: clients upload them to ``PUT /artifacts`` (streamed,
content-addressed) and then name them here by digest.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from lineagehub.graph import ValidationError
from lineagehub.schema.scalars import MetricValue
from lineagehub.schema.types import Artifact, DatasetVersion, I, ModelVersion, Run, wrap_as


@strawberry.input
class MetricInput:
    key: str
    value: MetricValue
    step: int = 0
    timestamp: datetime | None = None


@strawberry.input
class StartRunInput:
    name: str
    id: str | None = strawberry.field(
        default=None, description="A client-made run id (run:<uuid7>); default: the server's."
    )
    run_kind: str = "train"
    project: str | None = None
    experiment: str | None = None
    tags: JSON | None = None
    params: JSON | None = None
    parent: strawberry.ID | None = None
    user: str | None = None
    host: str | None = None
    entry_point: str | None = None
    description: str | None = None
    started_at: datetime | None = strawberry.field(
        default=None,
        description="When the run started (default: now, on the server's clock); at most 5 "
        "minutes ahead of the server's clock.",
    )
    code: JSON | None = strawberry.field(
        default=None,
        description="The CodeCommit (repo, sha, branch, dirty, diff_digest); its diff bytes are "
        "uploaded to /artifacts first.",
    )
    environment: JSON | None = strawberry.field(
        default=None,
        description="The Environment (python, platform, packages_digest, packages); the package "
        "list bytes are uploaded to /artifacts first.",
    )
    environment_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Instead of environment: the id of an Environment the hub already has (one "
        "an earlier run's environment wrote), so the package list is not sent again; NOT_FOUND "
        "if the hub has no such environment.",
    )


@strawberry.input
class DatasetInput:
    fingerprint: JSON = strawberry.field(
        description="digest, uri, columns, row_count, profile and source, as computed by the "
        "client (lineagehub.ingest.datasets.fingerprint)."
    )
    name: str | None = None
    namespace: str | None = None
    role: str = "train"
    output: bool = False
    derived_from: list[strawberry.ID] | None = None
    description: str | None = None


@strawberry.type
class LogResult:
    run_id: strawberry.ID
    params: int
    metric_points: int
    tags: int


def _metrics(metrics: list[MetricInput] | None) -> list[Any]:
    from lineagehub.services.tracking import Metric

    now = datetime.now(timezone.utc)
    return [Metric(m.key, float(m.value), m.step, m.timestamp or now) for m in metrics or []]


_METADATA = (
    "How to load the version back: its flavor's metadata, layout, training environment "
    "(lineagehub.ingest.flavors)."
)
_CUSTOM_OBJECTS = (
    "User-defined classes and functions the model needs: {name, module, qualname, kind "
    "(class | function), source}; each becomes a source-code Artifact it is DERIVED_FROM."
)


def written(store: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` (a write of the services) and the node it wrote, read back, in
    one worker-thread call (a hand-off between the event loop and a thread costs a wake-up of
    each; a mutation made two or three)."""
    done = fn(*args, **kwargs)
    return store.get_node(done if isinstance(done, str) else done.node_id)


def _mapping(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{field} must be a JSON object", field=field)
    return value


_RECEIPT = strawberry.argument(
    description="The receipt PUT /artifacts answered for these bytes: proof the caller holds "
    "them, for bytes a project it may not view holds too (two teams logging one public file)."
)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Start a run (RUNNING).")
    async def start_run(self, info: I, input: StartRunInput) -> Run:
        from lineagehub.services.tracking import RunStart
        from lineagehub.vocabulary import (
            CodeCommit,
            CodeState,
            Environment,
            EnvironmentState,
            validate,
        )
        from lineagehub.vocabulary import Run as RunModel

        ctx = info.context
        fields: dict[str, Any] = {
            "name": input.name,
            "kind": input.run_kind,
            "project": input.project,
            "experiment": input.experiment,
            "tags": _mapping(input.tags, "tags"),
            "params": _mapping(input.params, "params"),
            "parent": input.parent,
            # with authentication the launcher is the caller, whatever the request says
            "user": ctx.actor if ctx.authenticated else input.user,
            "host": input.host,
            "entry_point": input.entry_point,
            "description": input.description,
        }
        if input.id is not None:
            fields["id"] = input.id
        if input.started_at is not None:
            fields["started_at"] = input.started_at
        run = validate(RunModel, {k: v for k, v in fields.items() if v is not None})
        code = environment = None
        if input.code is not None:
            commit = validate(CodeCommit, _mapping(input.code, "code"))
            code = CodeState(commit=commit, diff=None, toplevel=None)  # type: ignore[arg-type]
        if input.environment is not None:
            env = validate(Environment, _mapping(input.environment, "environment"))
            environment = EnvironmentState(environment=env, packages_text=b"")
        env_id = None if input.environment_id is None else str(input.environment_id)
        start = RunStart(code=code, environment=environment, environment_id=env_id)
        node = await ctx.write(written, ctx.store, ctx.tracker.start_run, run, start)
        return wrap_as(node, Run)

    @strawberry.mutation(description="Log params, metric points and tags in one transaction.")
    async def log_batch(
        self,
        info: I,
        run_id: strawberry.ID,
        params: JSON | None = None,
        metrics: list[MetricInput] | None = None,
        tags: JSON | None = None,
    ) -> LogResult:
        ctx = info.context
        p, t, m = _mapping(params, "params"), _mapping(tags, "tags"), _metrics(metrics)
        await ctx.write(
            ctx.tracker.log_batch,
            str(run_id),
            params=p,
            metrics=m,
            tags=t,
            size=len(p) + len(m) + len(t),
        )
        return LogResult(run_id=run_id, params=len(p), metric_points=len(m), tags=len(t))

    @strawberry.mutation(description="End a run after a last batch, in one transaction.")
    async def end_run(
        self,
        info: I,
        run_id: strawberry.ID,
        status: str = "FINISHED",
        error: str | None = None,
        params: JSON | None = None,
        metrics: list[MetricInput] | None = None,
        tags: JSON | None = None,
    ) -> Run:
        ctx = info.context
        p, t, m = _mapping(params, "params"), _mapping(tags, "tags"), _metrics(metrics)
        node = await ctx.write(
            written,
            ctx.store,
            ctx.tracker.end_run,
            str(run_id),
            status,
            error,
            params=p,
            metrics=m,
            tags=t,
            size=len(p) + len(m) + len(t),
        )
        return wrap_as(node, Run)

    @strawberry.mutation(description="Record a dataset version the run used or generated.")
    async def log_dataset(
        self, info: I, run_id: strawberry.ID, input: DatasetInput
    ) -> DatasetVersion:
        from lineagehub.vocabulary import DatasetFingerprint

        ctx = info.context
        fp = _mapping(input.fingerprint, "fingerprint")
        try:
            fingerprint = DatasetFingerprint(
                digest=fp["digest"],
                source=str(fp.get("source", "remote")),
                uri=fp.get("uri"),
                size_bytes=fp.get("size_bytes"),
                file_count=fp.get("file_count"),
                row_count=fp.get("row_count"),
                columns=fp.get("columns"),
                profile=fp.get("profile"),
                format=fp.get("format"),
            )
        except (KeyError, TypeError) as e:
            raise ValidationError(f"fingerprint: {e}", field="fingerprint") from None
        node = await ctx.write(
            written,
            ctx.store,
            ctx.tracker.log_dataset,
            str(run_id),
            fingerprint,
            name=input.name,
            namespace=input.namespace,
            role=input.role,
            output=input.output,
            derived_from=[str(d) for d in input.derived_from or []],
            description=input.description,
        )
        return wrap_as(node, DatasetVersion)

    @strawberry.mutation(
        description="Record that the run used a registered model version (a base model, "
        "one it evaluates or distils)."
    )
    async def log_input_model(
        self, info: I, run_id: strawberry.ID, ref: str, role: str = "base-model"
    ) -> ModelVersion:
        ctx = info.context
        node = await ctx.write(
            written, ctx.store, ctx.tracker.log_input_model, str(run_id), ref, role=role
        )
        return wrap_as(node, ModelVersion)

    @strawberry.mutation(description="Record an uploaded artifact as generated by the run.")
    async def log_artifact(
        self,
        info: I,
        run_id: strawberry.ID,
        digest: str,
        name: str,
        artifact_kind: str = "other",
        media_type: str = "application/octet-stream",
        data: JSON | None = None,
        receipt: Annotated[str | None, _RECEIPT] = None,
    ) -> Artifact:
        ctx = info.context
        info_ = await ctx.call(ctx.services.stored, digest)
        artifact = await ctx.call(
            ctx.tracker.log_artifact,
            str(run_id),
            info_,
            name=name,
            kind=artifact_kind,
            media_type=media_type,
            data=_mapping(data, "data") if data is not None else None,
        )
        return wrap_as(await ctx.call(ctx.store.get_node, artifact.node_id), Artifact)

    @strawberry.mutation(description="Register the next version of a model from an upload.")
    async def log_model(
        self,
        info: I,
        run_id: strawberry.ID,
        digest: str,
        name: str,
        flavor: str | None = None,
        signature: JSON | None = None,
        description: str | None = None,
        primary_metric: Annotated[
            str | None,
            strawberry.argument(description="The version's headline metric (a metric's name)."),
        ] = None,
        metadata: Annotated[JSON | None, strawberry.argument(description=_METADATA)] = None,
        custom_objects: Annotated[
            list[JSON] | None, strawberry.argument(description=_CUSTOM_OBJECTS)
        ] = None,
        receipt: Annotated[str | None, _RECEIPT] = None,
    ) -> ModelVersion:
        ctx = info.context
        info_ = await ctx.call(ctx.services.stored, digest)
        version = await ctx.call(
            ctx.tracker.log_model,
            str(run_id),
            info_,
            name=name,
            flavor=flavor,
            signature=_mapping(signature, "signature") if signature is not None else None,
            description=description,
            primary_metric=primary_metric,
            metadata=_mapping(metadata, "metadata") if metadata is not None else None,
            custom_objects=custom_objects,
        )
        return wrap_as(await ctx.call(ctx.store.get_node, version.node_id), ModelVersion)

    @strawberry.mutation(
        description="Register the next version of a model from an artifact already stored, "
        "generated by a run (finished runs too) or by none."
    )
    async def register_model_version(
        self,
        info: I,
        name: str,
        digest: str,
        run_id: strawberry.ID | None = None,
        flavor: str | None = None,
        signature: JSON | None = None,
        description: str | None = None,
        primary_metric: str | None = None,
        metadata: Annotated[JSON | None, strawberry.argument(description=_METADATA)] = None,
        custom_objects: Annotated[
            list[JSON] | None, strawberry.argument(description=_CUSTOM_OBJECTS)
        ] = None,
        receipt: Annotated[str | None, _RECEIPT] = None,
    ) -> ModelVersion:
        ctx = info.context
        tracker, stored = ctx.tracker, ctx.services.stored

        def register(**options: Any) -> Any:
            return tracker.register_model_version(name, stored(digest), **options)

        node = await ctx.write(
            written,
            ctx.store,
            register,
            size=1 + len(custom_objects or ()),
            run_id=None if run_id is None else str(run_id),
            flavor=flavor,
            signature=_mapping(signature, "signature") if signature is not None else None,
            description=description,
            primary_metric=primary_metric,
            metadata=_mapping(metadata, "metadata") if metadata is not None else None,
            custom_objects=custom_objects,
        )
        return wrap_as(node, ModelVersion)

    @strawberry.mutation(description="Record RUNNING runs with a stale heartbeat as KILLED.")
    async def mark_stale_runs(self, info: I) -> list[strawberry.ID]:
        ctx = info.context
        ids = await ctx.call(ctx.tracker.mark_stale_runs)
        return [strawberry.ID(i) for i in ids]
