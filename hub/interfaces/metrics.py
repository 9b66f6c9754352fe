"""Prometheus interop: ``GET /metrics`` and ``POST /api/v1/alerts``.

``GET /metrics`` answers in Prometheus' text exposition format (prometheus_client, the
``monitoring`` extra): per active deployment, the drift and performance of its latest
monitoring window, and its open alerts; and the hub's own request counts and durations::

    lineagehub_monitoring_drift_psi{deployment="...",name="churn-prod",feature="age"} 0.31
    lineagehub_monitoring_drift_p_adjusted{...,feature="age"} 1.2e-09
    lineagehub_monitoring_drift_detected{...,feature="age"} 1
    lineagehub_monitoring_performance{...,metric="accuracy"} 0.87
    lineagehub_monitoring_window_samples{...} 5400
    lineagehub_monitoring_window_end_timestamp_seconds{...} 1.7724e+09
    lineagehub_alerts_open{...,severity="critical"} 1
    lineagehub_http_requests_total{method="POST",route="/graphql",status="200"} 42
    lineagehub_http_request_duration_seconds_bucket{method="POST",route="/graphql",le="0.05"} 40

It needs the viewer role somewhere (as every listing does); deployments in projects the caller
may not view are left out.

``POST /api/v1/alerts`` takes an Alertmanager webhook body (configure the hub as a webhook
receiver, with the token as a bearer credential): each alert whose ``deployment`` label names a
deployment (id, name or name@environment) becomes an ``Alert`` node ABOUT it and the version it
served (see :meth:`lineagehub.services.alerts.AlertService.receive_alertmanager`). It needs the
editor role in each deployment's project; a body with any bad alert is refused whole.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lineagehub.graph import ConfigError, HubError, ValidationError
from lineagehub.services.access import Principal

if TYPE_CHECKING:
    from lineagehub.schema.context import Services

#: Routes as labels (bounded: anything else is "other").
ROUTES = ("/graphql", "/artifacts", "/export", "/health", "/metrics", "/api/v1/alerts")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_BODY = 4 * 1024 * 1024


def _prometheus() -> Any:
    try:
        return importlib.import_module("prometheus_client")
    except ImportError:
        raise ConfigError(
            "GET /metrics needs prometheus_client: pip install 'lineagehub[monitoring]'"
        ) from None


def _route(path: str) -> str:
    for route in ROUTES:
        if path == route or path.startswith(route + "/"):
            return route
    return "other"


class HubMetrics:
    """The hub's Prometheus registry: request metrics (recorded by :class:`RequestMetrics`)
    and a collector that reads the monitoring windows when scraped."""

    def __init__(self, services: Services) -> None:
        self.services = services
        # who scrapes: each scrape renders in a worker thread of its own, where the collector
        # reads it back (a shared attribute would let two scrapes at once see each other's)
        self._scraper = threading.local()
        pc = _prometheus()
        self.registry = pc.CollectorRegistry(auto_describe=True)
        self.requests = pc.Counter(
            "lineagehub_http_requests",
            "HTTP requests the hub answered, by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = pc.Histogram(
            "lineagehub_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route.",
            ["method", "route"],
            registry=self.registry,
        )
        # What a scrape shows: this registry, or with `serve --workers N` (prometheus_client's
        # multiprocess mode, which the environment switches on) every worker's counts summed,
        # so a scrape answered by any worker sees them all.
        self.scraped = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            self.scraped = pc.CollectorRegistry(auto_describe=True)
            multiprocess.MultiProcessCollector(self.scraped)
        self.scraped.register(_MonitoringCollector(self))

    def render(self, principal: Principal | None) -> bytes:
        """The exposition text (synchronous: reads the store)."""
        self._scraper.principal = principal
        try:
            out: bytes = _prometheus().generate_latest(self.scraped)
        finally:
            self._scraper.principal = None
        return out

    @property
    def principal(self) -> Principal | None:
        """The caller of the scrape this thread renders."""
        return getattr(self._scraper, "principal", None)


class _MonitoringCollector:
    def __init__(self, metrics: HubMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []  # collected fresh on every scrape (no fixed series)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from lineagehub.schema.authz import viewable

        services = self.metrics.services
        monitor = services.monitor
        deployments = monitor.active_deployments()
        ok = viewable(services, self.metrics.principal, (d.to_node() for d in deployments))
        if ok is not None:
            deployments = [d for d in deployments if d.id in ok]
        labels = ["deployment", "name"]
        psi = GaugeMetricFamily(
            "lineagehub_monitoring_drift_psi",
            "PSI of a feature in the deployment's latest window.",
            labels=[*labels, "feature"],
        )
        p_adj = GaugeMetricFamily(
            "lineagehub_monitoring_drift_p_adjusted",
            "Benjamini-Hochberg adjusted p-value of a feature's drift test, latest window.",
            labels=[*labels, "feature"],
        )
        drifted = GaugeMetricFamily(
            "lineagehub_monitoring_drift_detected",
            "1 when the feature drifted in the latest window, else 0.",
            labels=[*labels, "feature"],
        )
        perf = GaugeMetricFamily(
            "lineagehub_monitoring_performance",
            "Live performance in the latest window with labels (accuracy, f1, auc, mae, rmse).",
            labels=[*labels, "metric"],
        )
        samples = GaugeMetricFamily(
            "lineagehub_monitoring_window_samples",
            "Predictions in the deployment's latest window.",
            labels=labels,
        )
        end = GaugeMetricFamily(
            "lineagehub_monitoring_window_end_timestamp_seconds",
            "End of the deployment's latest window (Unix seconds).",
            labels=labels,
        )
        open_alerts = GaugeMetricFamily(
            "lineagehub_alerts_open",
            "Open (pending, firing, acknowledged) alerts about the deployment, by severity.",
            labels=[*labels, "severity"],
        )
        alerts = monitor._alert_service()
        for dep in deployments:
            base = [dep.id, dep.name or ""]
            windows = monitor.store.find_nodes(
                "MonitoringWindow", {"deployment": dep.id}, ["-start"], limit=1
            ).items
            if windows:
                from lineagehub.vocabulary import MonitoringWindow

                w = MonitoringWindow.from_node(windows[0])
                samples.add_metric(base, float(w.sample_count or 0))
                end.add_metric(base, w.end.timestamp())
                for feature, d in sorted((w.drift or {}).items()):
                    if d.get("psi") is not None:
                        psi.add_metric([*base, feature], float(d["psi"]))
                    if d.get("p_adjusted") is not None:
                        p_adj.add_metric([*base, feature], float(d["p_adjusted"]))
                    if d.get("state") in ("drift", "ok"):
                        drifted.add_metric([*base, feature], 1.0 if d["state"] == "drift" else 0.0)
                for k in ("accuracy", "f1", "auc", "mae", "rmse"):
                    value = (w.performance or {}).get(k)
                    if value is not None:
                        perf.add_metric([*base, k], float(value))
            counts: dict[str, int] = {}
            for a in alerts.find(dep.id, "open", limit=1000):
                counts[a.severity.value] = counts.get(a.severity.value, 0) + 1
            for severity, n in sorted(counts.items()):
                open_alerts.add_metric([*base, severity], float(n))
        yield from (psi, p_adj, drifted, perf, samples, end, open_alerts)


class RequestMetrics:
    """ASGI middleware counting requests and timing them (per route, bounded labels)."""

    def __init__(self, app: ASGIApp, *, metrics: HubMetrics | None) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.metrics is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def seen(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message.get("status", 500))
            await send(message)

        try:
            await self.app(scope, receive, seen)
        finally:
            method = str(scope.get("method", ""))[:10]
            route = _route(str(scope.get("path", "")))
            self.metrics.requests.labels(method, route, str(status[0])).inc()
            self.metrics.duration.labels(method, route).observe(time.perf_counter() - started)


def _error(e: HubError) -> JSONResponse:
    status = {
        "NOT_FOUND": 404,
        "VALIDATION": 400,
        "FORBIDDEN": 403,
        "CONFIG": 501,
        "CONFLICT": 409,
    }.get(e.code, 503 if e.retryable else 500)
    return _refused(status, e.message, e.code, retryable=e.retryable)


def _refused(status: int, message: str, code: str, **extensions: Any) -> JSONResponse:
    """A refusal shaped as on every route: ``{"errors": [{message, extensions: {code}}]}``."""
    body = {"errors": [{"message": message, "extensions": {"code": code, **extensions}}]}
    return JSONResponse(body, status_code=status)


def routes(
    services: Services,
    metrics: HubMetrics | None,
    run: Callable[[Request, Callable[[], Any]], Awaitable[Any]] | None = None,
) -> list[Any]:
    """The two routes, for the app's route table. ``run(request, work)`` runs their work in a
    worker thread (the server's: within the caller's share of them)."""
    from starlette.routing import Route

    async def in_thread(request: Request, work: Callable[[], Any]) -> Any:
        if run is not None:
            return await run(request, work)
        return await anyio.to_thread.run_sync(work)

    from lineagehub.schema.authz import check
    from lineagehub.services.access import open_principal

    def caller(request: Request) -> Principal:
        found = getattr(request.state, "principal", None)
        return found if found is not None else open_principal(services.registry_actor)

    async def scrape(request: Request) -> Response:
        who = caller(request)
        try:
            if metrics is None:
                _prometheus()  # the ConfigError naming the extra
                raise ConfigError("metrics are off")  # pragma: no cover
            render = metrics.render
            await in_thread(request, lambda: check(services, who, "Query.deployments", {}))
            body = await in_thread(request, lambda: render(who))
        except HubError as e:
            return _error(e)
        return Response(body, media_type=CONTENT_TYPE)

    async def receive(request: Request) -> Response:
        who = caller(request)
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            # also what keeps a web page's cross-origin "simple" POST (text/plain) out
            message = f"send alerts as application/json, not {media_type or 'nothing'}"
            return _refused(415, message, "UNSUPPORTED_MEDIA_TYPE")
        try:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY:
                    raise ValidationError("the body is over 4 MiB", field="body")
                chunks.append(chunk)
            raw = b"".join(chunks)
            try:
                payload = json.loads(raw)
            except ValueError as e:
                raise ValidationError(f"the body is not JSON: {e}", field="body") from None
            except RecursionError:  # [[[[... a hundred thousand deep
                raise ValidationError("the body is JSON nested too deep", field="body") from None

            def work() -> list[str]:
                service = services.monitor._alert_service()
                alerts = payload.get("alerts") if isinstance(payload, dict) else None
                for a in alerts if isinstance(alerts, list) else []:
                    dep = ((a or {}).get("labels") or {}).get("deployment")
                    if isinstance(dep, str):
                        args = {"input": {"deployment": dep}}
                        check(services, who, "Mutation.reportMonitoringWindow", args)
                try:
                    return [x.id for x in service.receive_alertmanager(payload, who.name)]
                except RecursionError:  # a value nested deeper than any alert's
                    raise ValidationError(
                        "an alert holds a value nested too deep", field="alerts"
                    ) from None

            ids = await in_thread(request, work)
        except HubError as e:
            return _error(e)
        return JSONResponse({"status": "success", "alerts": ids})

    return [
        Route("/metrics", scrape, methods=["GET"]),
        Route("/api/v1/alerts", receive, methods=["POST"]),
    ]


def hub_metrics(services: Services) -> HubMetrics | None:
    """The app's metrics, or ``None`` without prometheus_client (``/metrics`` then says
    which extra to install)."""
    try:
        return HubMetrics(services)
    except ConfigError:
        return None
