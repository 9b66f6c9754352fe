"""The model registry in the API: aliases, stages, governed promotions and their history.

Thin mappings of :class:`lineagehub.services.registry.RegistryService`. Expected outcomes of a
promotion are results (``union PromoteResult = ModelPromoted | PromotionPending |
PolicyViolation``); a reference that names nothing, a request that is no longer pending and
other failures stay coded errors (``NOT_FOUND``, ``CONFLICT``, ``VALIDATION``).

Every mutation is recorded as done by the services' ``registry_actor`` (``LINEAGEHUB_USER``,
else the server's OS user). The server does not authenticate requests yet, so that actor is
the server's identity, not the caller's: approvals and separation of duties are only as
meaningful as the deployment that sets it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from lineagehub.graph import ConfigError
from lineagehub.schema.authz import viewable
from lineagehub.schema.mutation import written
from lineagehub.schema.types import Deployment as DeploymentType
from lineagehub.schema.types import I, wrap, wrap_as
from lineagehub.schema.types import ModelVersion as ModelVersionType
from lineagehub.vocabulary import model_version_id


def _registry(info: I) -> Any:
    registry = info.context.services.registry
    if registry is None:
        raise ConfigError("this server has no model registry")
    return registry


def _actor(info: I) -> str:
    return info.context.actor


async def _node(info: I, node_id: str) -> Any:
    ctx = info.context
    return wrap(await ctx.call(ctx.store.get_node, node_id))


async def _version(info: I, node_id: str) -> ModelVersionType:
    ctx = info.context
    return wrap_as(await ctx.call(ctx.store.get_node, node_id), ModelVersionType)


@strawberry.type(description="One rule a promotion or approval broke.")
class BrokenRule:
    rule: str = strawberry.field(
        description='e.g. "metric.auc", "approvals", "separation_of_duties.requester".'
    )
    message: str
    expected: JSON | None
    actual: JSON | None


@strawberry.type(description="A refused promotion or approval: every rule it broke.")
class PolicyViolation:
    version: ModelVersionType
    stage: str = strawberry.field(description="The stage the version was to enter.")
    rules: list[BrokenRule]


@strawberry.type(description="A version moved to a stage.")
class ModelPromoted:
    version: ModelVersionType
    from_stage: str
    stage: str
    archived: list[ModelVersionType] = strawberry.field(
        description="The versions this promotion moved out of Production to Archived."
    )
    run_id: strawberry.ID = strawberry.field(description="The promote run recording it.")
    approvals: list[str]
    deployments: list[DeploymentType] = strawberry.field(
        description="The deployments it retired or re-pointed (onDeployments)."
    )


@strawberry.type(description="A promotion request waiting for approvals.")
class PromotionPending:
    request_id: strawberry.ID
    version: ModelVersionType
    stage: str
    approvals: list[str] = strawberry.field(description="Who approved so far.")
    approvals_needed: int


@strawberry.type(description="A promotion request still waiting for approvals.")
class PendingPromotion:
    request_id: strawberry.ID
    version: ModelVersionType
    stage: str = strawberry.field(description="The stage the version is to enter.")
    requested_by: str
    reason: str | None
    approvals: list[str] = strawberry.field(description="Who approved so far.")
    approvals_needed: int = strawberry.field(
        description="Approvals its policy wants (the request's or today's, the larger)."
    )
    requested_at: datetime


@strawberry.type(description="A promotion request that was rejected.")
class PromotionRejected:
    request_id: strawberry.ID
    version: ModelVersionType
    stage: str
    by: str
    reason: str


@strawberry.type(description="What a rollback did: the runs recording it and the holders now.")
class RollbackResult:
    run_ids: list[strawberry.ID]
    holders: list[ModelVersionType] = strawberry.field(
        description="The versions holding the stage or alias after the rollback."
    )
    deployments: list[DeploymentType] = strawberry.field(
        description="The deployments it retired or re-pointed (onDeployments)."
    )


@strawberry.type(description="One change of a stage or alias.")
class RegistryChange:
    change: str = strawberry.field(description='Either "stage" or "alias".')
    version: ModelVersionType = strawberry.field(description="The version the change moved.")
    alias: str | None
    from_stage: str | None
    to_stage: str | None
    from_version: int | None = strawberry.field(description="An alias' previous holder.")
    to_version: int | None = strawberry.field(description="Its new holder (null: removed).")
    actor: str
    reason: str | None
    at: datetime
    run_id: strawberry.ID
    approvals: list[str]


PromoteResult = Annotated[
    ModelPromoted | PromotionPending | PolicyViolation, strawberry.union("PromoteResult")
]


def _decided(store: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A promotion's outcome (``fn(*args, **kwargs)``) with the nodes it names, read back in
    the same worker-thread call: (outcome, nodes by id)."""
    r = fn(*args, **kwargs)
    ids = [r.version_id, *getattr(r, "archived", ()), *getattr(r, "deployments", ())]
    return r, {i: store.get_node(i) for i in dict.fromkeys(ids)}


def _result(decided: tuple[Any, dict[str, Any]]) -> Any:
    from lineagehub.services import registry as reg

    r, nodes = decided

    def version(node_id: str) -> ModelVersionType:
        return wrap_as(nodes[node_id], ModelVersionType)

    if isinstance(r, reg.ModelPromoted):
        return ModelPromoted(
            version=version(r.version_id),
            from_stage=r.from_stage,
            stage=r.to_stage,
            archived=[version(a) for a in r.archived],
            run_id=strawberry.ID(r.run_id),
            approvals=list(r.approvals),
            deployments=[wrap_as(nodes[d], DeploymentType) for d in r.deployments],
        )
    if isinstance(r, reg.PromotionPending):
        return PromotionPending(
            request_id=strawberry.ID(r.request_id),
            version=version(r.version_id),
            stage=r.to_stage,
            approvals=list(r.approvals),
            approvals_needed=r.needed,
        )
    return PolicyViolation(
        version=version(r.version_id),
        stage=r.to_stage,
        rules=[
            BrokenRule(rule=b.rule, message=b.message, expected=b.expected, actual=b.actual)
            for b in r.rules
        ],
    )


def _current(store: Any, model: str, stage_or_alias: str) -> list[Any]:
    from lineagehub.vocabulary import NodeKind, Stage

    nodes = store.iter_nodes(NodeKind.MODEL_VERSION.value, {"model": model}, "version")
    if stage_or_alias in {s.value for s in Stage}:
        return [n for n in nodes if n.props.get("stage") == stage_or_alias]
    return [n for n in nodes if stage_or_alias in (n.props.get("aliases") or [])]


_ON_DEPLOYMENTS = (
    "what to do with live deployments whose requireStage the change would break: refuse "
    "(the default: the change is refused, naming them), retire, or repoint (at the version "
    "holding that stage after the change)"
)
OnDeployments = Annotated[str, strawberry.argument(description=_ON_DEPLOYMENTS)]


@strawberry.type
class RegistryMutation:
    @strawberry.mutation(
        description="Ask to move a version to a stage: refused, pending approvals, or done at "
        "once when its policy needs none."
    )
    async def request_promotion(
        self, info: I, ref: str, to: str, reason: str, on_deployments: OnDeployments = "refuse"
    ) -> PromoteResult:
        ctx = info.context
        r = await ctx.write(
            _decided,
            ctx.store,
            _registry(info).request_promotion,
            ref,
            to,
            _actor(info),
            reason,
            on_deployments=on_deployments,
        )
        return _result(r)

    @strawberry.mutation(description="Approve a pending request; the last approval promotes.")
    async def approve_promotion(
        self, info: I, request_id: strawberry.ID, comment: str | None = None
    ) -> PromoteResult:
        ctx = info.context
        r = await ctx.write(
            _decided, ctx.store, _registry(info).approve, str(request_id), _actor(info), comment
        )
        return _result(r)

    @strawberry.mutation(description="Reject a pending promotion request.")
    async def reject_promotion(
        self, info: I, request_id: strawberry.ID, reason: str
    ) -> PromotionRejected:
        ctx = info.context
        r = await ctx.call(_registry(info).reject, str(request_id), _actor(info), reason)
        return PromotionRejected(
            request_id=strawberry.ID(r.request_id),
            version=await _version(info, r.version_id),
            stage=r.to_stage,
            by=r.by,
            reason=r.reason,
        )

    @strawberry.mutation(
        description="Move a version to a stage at once (where its policy needs no approvals); "
        "promoting to Production archives the previous Production versions by default."
    )
    async def promote_model_version(
        self,
        info: I,
        ref: str,
        to: str,
        reason: str,
        archive_previous: bool = True,
        on_deployments: OnDeployments = "refuse",
    ) -> PromoteResult:
        ctx = info.context
        r = await ctx.write(
            _decided,
            ctx.store,
            _registry(info).promote,
            ref,
            to,
            _actor(info),
            reason,
            archive_previous=archive_previous,
            on_deployments=on_deployments,
        )
        return _result(r)

    @strawberry.mutation(description="Point an alias at a version (its previous holder loses it).")
    async def set_alias(
        self, info: I, ref: str, alias: str, reason: str | None = None
    ) -> ModelVersionType:
        ctx = info.context
        node = await ctx.write(
            written, ctx.store, _registry(info).set_alias, ref, alias, _actor(info), reason
        )
        return wrap_as(node, ModelVersionType)

    @strawberry.mutation(description="Remove an alias from a model.")
    async def remove_alias(
        self, info: I, model: str, alias: str, reason: str | None = None
    ) -> bool:
        ctx = info.context
        await ctx.call(_registry(info).remove_alias, model, alias, _actor(info), reason)
        return True

    @strawberry.mutation(
        description="Put back the previous holder of a stage (exact name, e.g. Production) or "
        "alias, undoing its last change. A stage rollback that would leave a live deployment "
        "serving a version outside the stage it requires is refused (POLICY, naming the "
        "deployments) unless onDeployments is retire or repoint."
    )
    async def rollback(
        self,
        info: I,
        model: str,
        stage_or_alias: str,
        reason: str,
        on_deployments: OnDeployments = "refuse",
    ) -> RollbackResult:
        ctx = info.context
        done = await ctx.call(
            _registry(info).roll_back,
            model,
            stage_or_alias,
            _actor(info),
            reason,
            on_deployments=on_deployments,
        )
        nodes = await ctx.call(_current, ctx.store, model, stage_or_alias)
        return RollbackResult(
            run_ids=[strawberry.ID(r) for r in done.run_ids],
            holders=[wrap_as(n, ModelVersionType) for n in nodes],
            deployments=[await _node(info, d) for d in done.deployments],
        )

    @strawberry.mutation(
        description="Record that a version is served in an environment. Deploying again under "
        "the same name and environment ends the current serving interval and starts a new "
        "one. requireStage refuses (POLICY) a version not in that stage."
    )
    async def record_deployment(
        self,
        info: I,
        ref: str,
        environment: str,
        name: str | None = None,
        endpoint: str | None = None,
        status: str = "active",
        require_stage: str | None = None,
        reason: str | None = None,
        tags: JSON | None = None,
    ) -> DeploymentType:
        ctx = info.context
        d = await ctx.call(
            _registry(info).deploy,
            ref,
            environment,
            _actor(info),
            name=name,
            endpoint=endpoint,
            status=status,
            require_stage=require_stage,
            reason=reason,
            tags=tags,
        )
        return await _node(info, d.id)

    @strawberry.mutation(description="Mark a deployment retired and end its serving interval.")
    async def retire_deployment(
        self, info: I, id: strawberry.ID, reason: str | None = None
    ) -> DeploymentType:
        ctx = info.context
        d = await ctx.call(_registry(info).retire_deployment, str(id), _actor(info), reason)
        return await _node(info, d.id)


@strawberry.type
class RegistryQuery:
    @strawberry.field(
        description="Promotion requests waiting for approvals, oldest first (of one model, to "
        "one stage)."
    )
    async def pending_promotions(
        self, info: I, model: str | None = None, stage: str | None = None
    ) -> list[PendingPromotion]:
        ctx = info.context
        found = await ctx.call(_registry(info).pending_promotions, model, stage)
        ids = list(dict.fromkeys(p.version_id for p in found))
        nodes = [n for n in await ctx.call(ctx.store.get_nodes, ids) if n is not None]
        # requests of projects the caller may not view are left out
        ok = await ctx.call(viewable, ctx.services, ctx.principal, nodes)
        by_id = {n.id: wrap_as(n, ModelVersionType) for n in nodes if ok is None or n.id in ok}
        found = [p for p in found if p.version_id in by_id]
        return [
            PendingPromotion(
                request_id=strawberry.ID(p.request_id),
                version=by_id[p.version_id],
                stage=p.to_stage,
                requested_by=p.requested_by,
                reason=p.reason,
                approvals=list(p.approvals),
                approvals_needed=p.needed,
                requested_at=p.requested_at,
            )
            for p in found
        ]

    @strawberry.field(
        description="Every stage and alias change of a model, oldest first (or of one alias or "
        "one stage)."
    )
    async def model_history(
        self, info: I, model: str, alias: str | None = None, stage: str | None = None
    ) -> list[RegistryChange]:
        ctx = info.context
        entries = await ctx.call(_registry(info).history, model, alias, stage)
        ids = [model_version_id(model, e.version) for e in entries]
        nodes = await ctx.call(ctx.store.get_nodes, list(dict.fromkeys(ids)))
        by_id = {n.id: wrap_as(n, ModelVersionType) for n in nodes if n is not None}
        return [
            RegistryChange(
                change=e.change,
                version=by_id[model_version_id(model, e.version)],
                alias=e.alias,
                from_stage=None if e.alias is not None else e.from_,
                to_stage=None if e.alias is not None else e.to,
                from_version=e.from_ if e.alias is not None else None,
                to_version=e.to if e.alias is not None else None,
                actor=e.actor,
                reason=e.reason,
                at=e.at,
                run_id=strawberry.ID(e.run_id),
                approvals=list(e.approvals),
            )
            for e in entries
        ]

    @strawberry.field(
        description="The version holding an alias or stage at a time (for a stage several "
        "may: the most recent entrant); null when none."
    )
    async def holder_at(
        self, info: I, model: str, alias_or_stage: str, time: datetime
    ) -> ModelVersionType | None:
        ctx = info.context
        version = await ctx.call(_registry(info).holder_at, model, alias_or_stage, time)
        if version is None:
            return None
        return await _version(info, model_version_id(model, version))
