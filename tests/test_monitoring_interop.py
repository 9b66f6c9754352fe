"""Prometheus interop over real HTTP: ``GET /metrics`` (parsed with prometheus_client's own
parser) and ``POST /api/v1/alerts`` taking an Alertmanager webhook body, with authentication
and roles as for the rest of the API; on both stores."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import fresh_store_uri
from http_server import HubServer
from prometheus_client.parser import text_string_to_metric_families

from lineagehub import Client, Settings, open_store
from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import Direction
from lineagehub.interfaces.server import create_app
from lineagehub.services.access import Role
from lineagehub.services.identity import IdentityService

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def frame(n: int, shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"age": rng.normal(40 + shift, 10, n), "plan": rng.choice(["basic", "pro"], n)}
    )


@pytest.fixture
def served(store_backend: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    store = open_store(fresh_store_uri(store_backend, tmp_path))
    artifacts = open_artifact_store(f"file://{tmp_path / 'artifacts'}")
    with HubServer(create_app(Settings(user="ann"), store=store, artifacts=artifacts)) as server:
        client = Client(server.url, settings=Settings(user="ann"))
        with client.start_run("train", project="churn", capture=False) as run:
            run.log_dataset(frame(3000, 0, 0), name="customers", namespace="warehouse")
            run.log_metrics({"test_accuracy": 0.9})
            run.log_model({"w": 1}, name="churn")
        dep = client.deploy("churn/1", "prod", name="churn-prod")
        yield {"client": client, "url": server.url, "store": store, "deployment": dep.id}
        client.close()
    store.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_expose_drift_performance_alerts_and_requests(served: dict[str, Any]) -> None:
    client: Client = served["client"]
    mon = client.monitor("churn-prod", flush_interval=None)
    ids = [str(i) for i in range(500)]
    ts = np.full(500, T0.timestamp())
    mon.log_predictions(frame(500, 20, 1), np.ones(500), ids=ids, timestamps=ts)
    mon.log_labels(ids, np.r_[np.ones(400), np.zeros(100)])
    mon.close()
    url, dep = served["url"], served["deployment"]
    answer = httpx.get(f"{url}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(answer.text)
    base = (("deployment", dep), ("name", "churn-prod"))

    def key(name: str, **extra: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (name, tuple(sorted((*base, *extra.items()))))

    assert found[key("lineagehub_monitoring_drift_psi", feature="age")] > 1
    assert found[key("lineagehub_monitoring_drift_detected", feature="age")] == 1
    assert found[key("lineagehub_monitoring_drift_detected", feature="plan")] == 0
    assert found[key("lineagehub_monitoring_performance", metric="accuracy")] == pytest.approx(0.8)
    assert found[key("lineagehub_monitoring_window_samples")] == 500
    assert found[key("lineagehub_monitoring_window_end_timestamp_seconds")] == T0.timestamp() + 3600
    graphql = [
        v
        for (name, labels), v in found.items()
        if name == "lineagehub_http_requests_total" and ("route", "/graphql") in labels
    ]
    assert sum(graphql) >= 5  # the SDK's calls above


def test_alertmanager_alerts_land_in_the_graph_linked_to_the_deployment(
    served: dict[str, Any],
) -> None:
    url, dep, store = served["url"], served["deployment"], served["store"]
    body = {
        "version": "4",
        "status": "firing",
        "receiver": "lineagehub",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": "HighLatency",
                    "deployment": "churn-prod",
                    "severity": "critical",
                },
                "annotations": {"summary": "p99 over 2 s"},
                "startsAt": "2026-03-01T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": "abc123",
            }
        ],
    }
    first = httpx.post(f"{url}/api/v1/alerts", json=body)
    assert first.status_code == 200, first.text
    again = httpx.post(f"{url}/api/v1/alerts", json=body)  # Alertmanager repeats itself
    assert again.json()["alerts"] == first.json()["alerts"]
    client: Client = served["client"]
    (alert,) = client.alerts("churn-prod")
    assert alert.source == "alertmanager" and alert.rule == "HighLatency"
    assert alert.severity.value == "critical" and alert.message == "p99 over 2 s"
    about = store.neighbors([alert.id], Direction.UPSTREAM, ["ABOUT"])[alert.id]
    assert sorted(a.node.id for a in about) == sorted([dep, "mv:churn/1"])
    metrics = samples(httpx.get(f"{url}/metrics").text)
    key = (
        "lineagehub_alerts_open",
        tuple(sorted([("deployment", dep), ("name", "churn-prod"), ("severity", "critical")])),
    )
    assert metrics[key] == 1
    body["alerts"][0]["status"] = "resolved"
    body["alerts"][0]["endsAt"] = "2026-03-01T11:00:00Z"
    assert httpx.post(f"{url}/api/v1/alerts", json=body).status_code == 200
    (closed,) = client.alerts("churn-prod")
    assert closed.id == alert.id and closed.state.value == "resolved"
    bad = httpx.post(f"{url}/api/v1/alerts", json={"alerts": [{"labels": {"alertname": "x"}}]})
    assert bad.status_code == 400
    (error,) = bad.json()["errors"]  # shaped as on every route
    assert error["extensions"]["code"] == "VALIDATION" and "deployment" in error["message"]
    # JSON nested a hundred thousand deep, in the body or in an alert: 400, not a 500
    for deep in (
        "[" * 100_000 + "]" * 100_000,
        '{"alerts": [{"labels": {"deployment": ' + "[" * 50_000 + "]" * 50_000 + "}}]}",
    ):
        nested = httpx.post(f"{url}/api/v1/alerts", content=deep,
                            headers={"content-type": "application/json"})  # fmt: skip
        assert nested.status_code == 400, nested.text[:200]
        assert nested.json()["errors"][0]["extensions"]["code"] == "VALIDATION"
    unknown = {"alerts": [{"labels": {"alertname": "x", "deployment": "nope"}}]}
    assert httpx.post(f"{url}/api/v1/alerts", json=unknown).status_code == 404
    assert (
        httpx.post(
            f"{url}/api/v1/alerts", content=b"{nope", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    # a web page's cross-origin "simple" POST is text/plain: refused, nothing recorded
    before = len(client.alerts("churn-prod"))
    simple = httpx.post(
        f"{url}/api/v1/alerts", content=json.dumps(body), headers={"content-type": "text/plain"}
    )
    assert simple.status_code == 415 and len(client.alerts("churn-prod")) == before


def test_interop_is_authenticated_and_needs_roles(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    identity = IdentityService(store, actor="admin")
    identity.add_user("viewer", role=Role.VIEWER)
    viewer = identity.create_token("viewer", "scrapes").secret
    artifacts = open_artifact_store(f"file://{tmp_path / 'artifacts'}")
    app = create_app(Settings(auth="tokens"), store=store, artifacts=artifacts)
    with HubServer(app) as server:
        assert httpx.get(f"{server.url}/metrics").status_code == 401
        assert httpx.post(f"{server.url}/api/v1/alerts", json={"alerts": []}).status_code == 401
        auth = {"authorization": f"Bearer {viewer}"}
        assert httpx.get(f"{server.url}/metrics", headers=auth).status_code == 200
        body = {"alerts": [{"labels": {"alertname": "x", "deployment": "nope"}}]}
        refused = httpx.post(f"{server.url}/api/v1/alerts", json=body, headers=auth)
        assert refused.status_code == 403  # an editor's right, not a viewer's
    store.close()


def test_two_scrapes_at_once_each_see_only_their_own_projects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each scrape renders in a worker thread; the caller it renders for was one attribute
    of the shared registry, so two scrapes at once could each see the other's projects. Both
    scrapes are held (a barrier) after the caller is set and before the collector reads it."""
    import threading
    from datetime import timedelta

    from lineagehub.interfaces.metrics import HubMetrics
    from lineagehub.services.access import Principal

    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    artifacts = open_artifact_store(f"file://{tmp_path / 'artifacts'}")
    client = Client(store, artifacts=artifacts)
    start = datetime(2026, 3, 1, tzinfo=timezone.utc)
    sketch = {
        "features": {"plan": {"kind": "categorical", "values": ["a"], "counts": [5, 0], "count": 5}}
    }
    for project in ("alpha", "beta"):
        with client.start_run("fit", project=project, capture=False) as run:
            version = run.log_model({"w": [1]}, name=f"m-{project}")
        client.deploy(version.node_id, "production", name=f"{project}-prod")
        client.backend.monitoring.report_window(
            f"{project}-prod", start, start + timedelta(hours=1), sketch
        )
    app = create_app(Settings(), store=store, artifacts=artifacts)
    services = app.state.services
    metrics = HubMetrics(services)
    barrier = threading.Barrier(2)
    deployments = services.monitor.active_deployments

    def both_scraping() -> Any:
        barrier.wait(timeout=60)
        return deployments()

    monkeypatch.setattr(services.monitor, "active_deployments", both_scraping)
    callers = [
        Principal("a", {"alpha": Role.VIEWER}, via="token"),
        Principal("b", {"beta": Role.VIEWER}, via="token"),
    ]
    seen: dict[str, str] = {}
    threads = [
        threading.Thread(target=lambda p=p: seen.__setitem__(p.name, metrics.render(p).decode()))
        for p in callers
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert 'name="alpha-prod"' in seen["a"] and 'name="beta-prod"' not in seen["a"]
    assert 'name="beta-prod"' in seen["b"] and 'name="alpha-prod"' not in seen["b"]
    client.close()
    store.close()
