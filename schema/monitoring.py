"""Monitoring in GraphQL: serving processes report windows; people read drift and performance.

- ``reportMonitoringWindow(input)``: a window's sketch, as the SDK's monitor flushes it
  (idempotent: the window's id is deterministic);
- ``monitoringReference(deployment, dataset)``: the bins a serving process sketches on;
- ``deployment { monitoring(from:, to:) { windows drift performance } }``: the windows of a
  time range, with drift and performance of their merged sketches (:class:`MonitoringSummary`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast

import strawberry
from strawberry.scalars import JSON

from lineagehub.schema.query import (
    _CONDITIONS,
    _ORDER,
    _WHERE,
    FilterCondition,
    FilterOp,
    _page,
)
from lineagehub.schema.types import (
    Alert,
    CodeCommit,
    Connection,
    DatasetVersion,
    Deployment,
    I,
    ModelVersion,
    MonitoringWindow,
    Run,
    wrap_as,
)


@strawberry.type(description="What a deployment is monitored against.")
class MonitoringReference:
    deployment_id: strawberry.ID
    model_version: strawberry.ID | None
    dataset_version: strawberry.ID | None = strawberry.field(
        description="The dataset version whose column profile is the drift reference."
    )
    features: JSON = strawberry.field(
        description="Per column: kind, bins (numeric edges or categorical values) and counts."
    )
    metrics: JSON = strawberry.field(description="The served version's evaluation metrics.")


@strawberry.type(description="One feature's drift over a time range (or the prediction's).")
class FeatureDrift:
    feature: str
    state: str = strawberry.field(
        description="drift, ok, insufficient_data (fewer values than the minimum count, here "
        "or in the reference) or no_reference."
    )
    test: str | None = strawberry.field(description="ks (numeric) or chi2 (categorical).")
    statistic: float | None
    p_value: float | None
    p_adjusted: float | None = strawberry.field(
        description="Benjamini-Hochberg adjusted across the features of the range."
    )
    psi: float | None
    jensen_shannon: float | None
    wasserstein: float | None = strawberry.field(
        description="Wasserstein distance divided by the reference's standard deviation."
    )
    count: int
    reference_count: int | None
    missing: int


@strawberry.type(description="Live performance of labelled predictions, with the evaluation's.")
class Performance:
    task: str
    count: int
    accuracy: float | None = None
    f1: float | None = None
    auc: float | None = None
    mae: float | None = None
    rmse: float | None = None
    baseline: JSON = strawberry.field(
        description="The served version's evaluation metrics of the same names."
    )
    delta: JSON = strawberry.field(description="Live minus evaluation, per metric.")


@strawberry.type(description="A deployment's monitoring over a time range.")
class MonitoringSummary:
    start: datetime | None
    end: datetime | None
    windows: list[MonitoringWindow]
    drift: list[FeatureDrift]
    performance: Performance | None
    sample_count: int
    rejected: JSON = strawberry.field(
        description="Values the serving processes refused, by reason."
    )


def drift_rows(drift: dict[str, dict[str, Any]]) -> list[FeatureDrift]:
    return [
        FeatureDrift(
            feature=name,
            state=d["state"],
            test=d.get("test"),
            statistic=d.get("statistic"),
            p_value=d.get("p_value"),
            p_adjusted=d.get("p_adjusted"),
            psi=d.get("psi"),
            jensen_shannon=d.get("jensen_shannon"),
            wasserstein=d.get("wasserstein"),
            count=int(d.get("count", 0)),
            reference_count=d.get("reference_count"),
            missing=int(d.get("missing", 0)),
        )
        for name, d in sorted(drift.items())
    ]


def performance_of(perf: dict[str, Any] | None) -> Performance | None:
    if perf is None:
        return None
    return Performance(
        task=perf["task"],
        count=int(perf["count"]),
        accuracy=perf.get("accuracy"),
        f1=perf.get("f1"),
        auc=perf.get("auc"),
        mae=perf.get("mae"),
        rmse=perf.get("rmse"),
        baseline=perf.get("baseline", {}),
        delta=perf.get("delta", {}),
    )


async def monitoring_summary(
    info: I, deployment_id: str, start: datetime | None, end: datetime | None
) -> MonitoringSummary:
    """The resolver of ``Deployment.monitoring``."""
    ctx = info.context
    summary = await ctx.call(ctx.services.monitor.summary, deployment_id, start, end)
    windows = await ctx.call(ctx.store.get_nodes, [w.id for w in summary.windows])
    return MonitoringSummary(
        start=start,
        end=end,
        windows=[wrap_as(n, MonitoringWindow) for n in windows if n is not None],
        drift=drift_rows(summary.drift),
        performance=performance_of(summary.performance),
        sample_count=summary.sample_count,
        rejected=cast(JSON, summary.rejected),
    )


@strawberry.input(description="One window of a serving process, as its monitor flushes it.")
class MonitoringWindowInput:
    deployment: str = strawberry.field(description="A deployment id, name or name@environment.")
    start: datetime
    end: datetime
    sketch: JSON = strawberry.field(
        description="Counts on the reference's bins, latency and labels (see "
        "lineagehub.services.monitoring)."
    )
    instance: str = strawberry.field(
        default="default", description="The serving process: one window per instance and start."
    )
    reference: str | None = strawberry.field(
        default=None, description="A dataset version to compare with instead of the training data."
    )


@strawberry.type
class MonitoringQuery:
    @strawberry.field(description="The reference a serving process sketches a deployment on.")
    async def monitoring_reference(
        self, info: I, deployment: str, dataset: str | None = None
    ) -> MonitoringReference:
        ctx = info.context
        ref = await ctx.call(ctx.services.monitor.reference, deployment, dataset)
        return MonitoringReference(
            deployment_id=strawberry.ID(ref.deployment_id),
            model_version=None if ref.model_version is None else strawberry.ID(ref.model_version),
            dataset_version=(
                None if ref.dataset_version is None else strawberry.ID(ref.dataset_version)
            ),
            features=cast(JSON, ref.features),
            metrics=cast(JSON, ref.metrics),
        )


@strawberry.type
class MonitoringMutation:
    @strawberry.mutation(
        description="Record (or replace) a serving process's window of a deployment: its "
        "sketch, with drift and performance computed by the hub. Idempotent."
    )
    async def report_monitoring_window(
        self, info: I, input: MonitoringWindowInput
    ) -> MonitoringWindow:
        ctx = info.context
        window = await ctx.call(
            ctx.services.monitor.report_window,
            input.deployment,
            input.start,
            input.end,
            input.sketch,
            instance=input.instance,
            reference=input.reference,
        )
        return wrap_as(await ctx.call(ctx.store.get_node, window.id), MonitoringWindow)


# --- alerts ----------------------------------------------------------------------------------


@strawberry.type(
    description="Where an alert leads: what was served, trained on what, from which code."
)
class AlertLineage:
    deployment: Deployment | None
    model_version: ModelVersion | None
    training_runs: list[Run]
    training_data: list[DatasetVersion]
    code_commits: list[CodeCommit]


async def alert_lineage(info: I, alert_id: str) -> AlertLineage:
    """The resolver of ``Alert.lineage``: one service call, then the nodes in one batch."""
    ctx = info.context
    service = ctx.services.monitor._alert_service()
    alert = await ctx.call(service.get, alert_id)
    found = await ctx.call(service.lineage, alert)
    ids = [
        i
        for i in (
            found["deployment"],
            found["model_version"],
            *found["training_runs"],
            *found["training_data"],
            *found["code_commits"],
        )
        if i
    ]
    nodes = {n.id: n for n in await ctx.nodes.load_many(ids) if n is not None}

    def many(keys: list[str], cls: type[Any]) -> list[Any]:
        return [wrap_as(nodes[k], cls) for k in keys if k in nodes]

    dep, mv = found["deployment"], found["model_version"]
    return AlertLineage(
        deployment=wrap_as(nodes[dep], Deployment) if dep in nodes else None,
        model_version=wrap_as(nodes[mv], ModelVersion) if mv in nodes else None,
        training_runs=many(found["training_runs"], Run),
        training_data=many(found["training_data"], DatasetVersion),
        code_commits=many(found["code_commits"], CodeCommit),
    )


@strawberry.type(description="A monitoring alert rule.")
class AlertRuleInfo:
    name: str
    expr: str
    for_seconds: float
    keep_firing_for_seconds: float
    severity: str
    deployment: str | None
    labels: JSON
    annotations: JSON


def _rule_info(rule: Any) -> AlertRuleInfo:
    d = rule.to_dict()
    return AlertRuleInfo(
        name=d["name"],
        expr=d["expr"],
        for_seconds=d["for"],
        keep_firing_for_seconds=d["keep_firing_for"],
        severity=d["severity"],
        deployment=d["deployment"],
        labels=d["labels"],
        annotations=d["annotations"],
    )


@strawberry.input(description="An alert rule (as a [[rule]] table of the rules file).")
class AlertRuleInput:
    name: str
    expr: str = strawberry.field(description="e.g. 'drift.features_drifted >= 1 or accuracy < 0.8'")
    for_: str | None = strawberry.field(
        default=None, name="for", description="How long it must hold first: 30s, 5m, 2h."
    )
    keep_firing_for: str | None = None
    severity: str = "warning"
    deployment: str | None = None
    labels: JSON | None = None
    annotations: JSON | None = None


@strawberry.type
class AlertQuery:
    @strawberry.field(description="Monitoring alerts, newest first by default.")
    async def alerts(
        self,
        info: I,
        where: Annotated[JSON | None, _WHERE] = None,
        filter: Annotated[list[FilterCondition] | None, _CONDITIONS] = None,
        order_by: Annotated[list[str] | None, _ORDER] = None,
        first: int = 50,
        after: str | None = None,
        state: Annotated[
            str | None,
            strawberry.argument(
                description="pending, firing, acknowledged, resolved, or open (all but resolved)."
            ),
        ] = None,
    ) -> Connection[Alert]:
        from lineagehub.vocabulary import AlertState, member

        conditions = list(filter or [])
        if state == "open":
            from lineagehub.services.alerts import OPEN

            conditions.append(
                FilterCondition(path="state", op=FilterOp.IN, value=cast(JSON, list(OPEN)))
            )
        elif state is not None:
            value = member(AlertState, state, "state").value
            conditions.append(
                FilterCondition(path="state", op=FilterOp.EQ, value=cast(JSON, value))
            )
        return await _page(
            info, "Alert", where, order_by or ["-fired_at"], first, after, conditions
        )

    @strawberry.field(description="The alert rules the hub evaluates on monitoring windows.")
    async def alert_rules(self, info: I) -> list[AlertRuleInfo]:
        service = info.context.services.monitor._alert_service()
        return [_rule_info(r) for r in sorted(service.rules.values(), key=lambda r: r.name)]


@strawberry.type
class AlertMutation:
    @strawberry.mutation(
        description="Acknowledge a firing alert: someone is on it (it stays open)."
    )
    async def acknowledge_alert(
        self, info: I, id: strawberry.ID, comment: str | None = None
    ) -> Alert:
        ctx = info.context
        service = ctx.services.monitor._alert_service()
        alert = await ctx.call(service.acknowledge, str(id), ctx.actor, comment)
        return wrap_as(await ctx.call(ctx.store.get_node, alert.id), Alert)

    @strawberry.mutation(description="No notifications about an alert until a time.")
    async def silence_alert(self, info: I, id: strawberry.ID, until: datetime) -> Alert:
        ctx = info.context
        service = ctx.services.monitor._alert_service()
        alert = await ctx.call(service.silence, str(id), until, ctx.actor)
        return wrap_as(await ctx.call(ctx.store.get_node, alert.id), Alert)

    @strawberry.mutation(
        description="Add or replace an alert rule (until the server restarts: the rules file "
        "is read at start-up). Audited."
    )
    async def set_alert_rule(self, info: I, input: AlertRuleInput) -> AlertRuleInfo:
        from lineagehub.services.alerts import parse_rule

        ctx = info.context
        entry: dict[str, Any] = {
            "name": input.name,
            "expr": input.expr,
            "severity": input.severity,
            "deployment": input.deployment,
            "labels": input.labels or {},
            "annotations": input.annotations or {},
        }
        if input.for_ is not None:
            entry["for"] = input.for_
        if input.keep_firing_for is not None:
            entry["keep_firing_for"] = input.keep_firing_for
        rule = parse_rule(entry, "input")
        service = ctx.services.monitor._alert_service()
        return _rule_info(await ctx.call(service.set_rule, rule, ctx.actor))

    @strawberry.mutation(description="Remove an alert rule. Audited.")
    async def delete_alert_rule(self, info: I, name: str) -> bool:
        ctx = info.context
        service = ctx.services.monitor._alert_service()
        await ctx.call(service.delete_rule, name, ctx.actor)
        return True
