"""Monitoring in GraphQL: serving processes report windows; people read drift and performance.

- ``reportMonitoringWindow(input)``: a window's sketch, as the SDK's monitor flushes it
  (idempotent: the window's id is deterministic);
- ``monitoringReference(deployment, dataset)``: the bins a serving process sketches on;
- ``deployment { monitoring(from:, to:) { windows drift performance } }``: the windows of a
  time range, with drift and performance of their merged sketches (:class:`MonitoringSummary`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON

from lineagehub.schema.types import I, MonitoringWindow, wrap_as


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
