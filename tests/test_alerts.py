"""Alert rules on monitoring windows: the pending -> firing -> resolved machine, one Alert node
per firing ABOUT the deployment and its version, de-duplication, acknowledge and silence,
Alertmanager-shaped webhook notifications with a lineage block (a real receiver), the
GraphQL and CLI faces; on both stores."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import fresh_store_uri
from http_server import HubServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lineagehub import Client, Settings, open_store
from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import ConfigError, Direction, NotFoundError, ValidationError
from lineagehub.interfaces.server import create_app
from lineagehub.services.alerts import evaluate, load_alert_rules, parse_expr
from lineagehub.vocabulary import AlertState

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
HOUR = 3600
RULES = """
[[rule]]
name = "age-drift"
expr = "drift.age.psi > 0.25"
for = "2h"
keep_firing_for = "1h"
severity = "critical"
deployment = "churn"
labels = { team = "ml" }
annotations = { summary = "Input drift on {deployment}" }

[[rule]]
name = "low-accuracy"
expr = "accuracy < 0.5 and labelled_count >= 10"
"""


class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps what it is sent."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[tuple[str, dict[str, Any]]] = []

        async def hook(request: Request) -> Response:
            body = json.loads(await request.body())
            with self.lock:
                self.received.append((request.headers["X-LineageHub-Event"], body))
            return Response(status_code=204)

        self.app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    def wait_for(self, count: int, timeout: float = 20.0) -> list[tuple[str, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)  # polling the receiver until the deliveries arrive
        with self.lock:
            return list(self.received)


def frame(n: int, shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"age": rng.normal(40 + shift, 10, n), "plan": rng.choice(["basic", "pro"], n)}
    )


@pytest.fixture
def served(store_backend: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A hub server with alert rules and a webhook to a real receiver; a deployed model."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    receiver = Receiver()
    store = open_store(fresh_store_uri(store_backend, tmp_path))
    artifacts = open_artifact_store(f"file://{tmp_path / 'artifacts'}")
    with HubServer(receiver.app) as sink:
        settings = Settings(
            user="ann",
            alert_rules=rules,
            webhooks=json.dumps(
                [
                    {
                        "url": f"{sink.url}/hook",
                        "secret": "s",
                        "events": ["alert.firing", "alert.resolved"],
                    }
                ]
            ),
        )
        app = create_app(settings, store=store, artifacts=artifacts)
        with HubServer(app) as server:
            client = Client(server.url, settings=Settings(user="ann"))
            with client.start_run("train", project="churn", capture=False) as run:
                run.log_dataset(frame(4000, 0, 0), name="customers", namespace="warehouse")
                run.log_metrics({"test_accuracy": 0.9})
                run.log_model({"w": 1}, name="churn")
            client.deploy("churn/1", "prod")
            yield {"client": client, "url": server.url, "store": store, "receiver": receiver}
            client.close()
    store.close()


def report_hours(client: Client, shifts: list[float], start_hour: int = 0) -> None:
    mon = client.monitor("churn", flush_interval=None, instance="pod")
    for hour, shift in enumerate(shifts, start=start_hour):
        ts = np.full(400, T0.timestamp() + hour * HOUR + 1)
        mon.log_predictions(frame(400, shift, hour + 1), np.ones(400), timestamps=ts)
        mon.flush()  # one report per hour, in order, as a server's background flush would
    mon.close()


def test_a_rule_goes_pending_firing_resolved_with_one_alert_node_and_notifications(
    served: dict[str, Any],
) -> None:
    client: Client = served["client"]
    # hours 0-1 calm, 2-5 drifted (pending from 2:00, firing at 4:00 when it has held for
    # 2 h), 6-8 calm again (resolved at 7:00, 1 h after it last held at the end of hour 5)
    report_hours(client, [0, 0, 25, 25, 25, 25, 0, 0, 0])
    alerts = client.alerts("churn")
    assert len(alerts) == 1  # one firing, de-duplicated by fingerprint over six windows
    (alert,) = alerts
    assert alert.rule == "age-drift" and alert.state is AlertState.RESOLVED
    assert alert.active_since == T0 + timedelta(hours=2)
    assert alert.fired_at == T0 + timedelta(hours=4)
    assert alert.last_true_at == T0 + timedelta(hours=6)
    assert alert.resolved_at == T0 + timedelta(hours=7)
    assert alert.severity.value == "critical" and alert.labels == {"team": "ml"}
    assert alert.annotations == {"summary": "Input drift on churn"}
    assert alert.values["drift.age.psi"] > 0.25
    store = served["store"]
    about = store.neighbors([alert.id], Direction.UPSTREAM, ["ABOUT"])[alert.id]
    assert sorted(a.node.label for a in about) == ["Deployment", "ModelVersion"]
    received = served["receiver"].wait_for(2)
    assert [e for e, _ in received] == ["alert.firing", "alert.resolved"]
    firing = received[0][1]
    # Alertmanager's webhook (version 4), as its receivers read it
    assert firing["version"] == "4" and firing["status"] == "firing"
    assert firing["groupLabels"] == {"alertname": "age-drift"}
    (entry,) = firing["alerts"]
    assert entry["labels"]["alertname"] == "age-drift"
    assert entry["labels"]["deployment"] == alert.deployment
    assert entry["startsAt"].startswith("2026-03-01T04:00:00")
    assert entry["endsAt"] == "0001-01-01T00:00:00Z"
    assert entry["fingerprint"] == alert.fingerprint
    # ... and the lineage block: which version, trained on what, by which run
    lineage = firing["lineage"]
    assert lineage["model_version"] == "mv:churn/1"
    assert lineage["training_data"][0].startswith("dsv:warehouse/customers@sha256:")
    assert len(lineage["training_runs"]) == 1
    assert received[1][1]["status"] == "resolved"
    assert received[1][1]["alerts"][0]["endsAt"].startswith("2026-03-01T07:00:00")
    # every change of the alert is in the audit log, and the log verifies
    actions = [e.action for e in store.iter_audit() if e.target == alert.id]
    assert actions[0] == "alert.open" and "alert.fire" in actions and actions[-1] == "alert.resolve"
    assert store.verify_audit().ok


def test_pending_that_recovers_leaves_no_alert_and_a_new_firing_is_a_new_node(
    served: dict[str, Any],
) -> None:
    client: Client = served["client"]
    report_hours(client, [25, 0])  # pending one hour, then recovered: never fired
    assert client.alerts("churn") == []
    assert served["store"].verify_audit().ok
    first_pod = client.monitor("churn", flush_interval=None, instance="pod-2")
    for hour in range(2, 6):
        ts = np.full(400, T0.timestamp() + hour * HOUR + 1)
        first_pod.log_predictions(frame(400, 25, hour), np.ones(400), timestamps=ts)
        first_pod.flush()
    first_pod.close()
    (open_alert,) = client.alerts("churn", state="open")
    assert open_alert.state is AlertState.FIRING


def test_acknowledge_and_silence_in_the_sdk_graphql_and_cli(
    served: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from lineagehub.interfaces.cli import main

    client: Client = served["client"]
    report_hours(client, [25, 25, 25])
    (alert,) = client.alerts(state="firing")
    url = served["url"]
    query = """query($s: String) { alerts(state: $s) { nodes { id state rule firedAt
        lineage { deployment { id } modelVersion { id } trainingData { id }
                  trainingRuns { id } codeCommits { id } } } } }"""
    answer = httpx.post(f"{url}/graphql", json={"query": query, "variables": {"s": "open"}})
    (node,) = answer.json()["data"]["alerts"]["nodes"]
    assert node["id"] == alert.id and node["state"] == "firing"
    assert node["lineage"]["modelVersion"]["id"] == "mv:churn/1"
    assert node["lineage"]["deployment"]["id"] == alert.deployment
    assert node["lineage"]["trainingData"][0]["id"].startswith("dsv:warehouse/customers")
    assert main(["alerts", "list", "--url", url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [a["id"] for a in listed["alerts"]] == [alert.id]
    assert main(["alerts", "ack", alert.id, "--url", url, "--comment", "looking"]) == 0
    assert "acknowledged" in capsys.readouterr().out
    assert client.alerts(state="acknowledged")[0].acknowledged_by == "ann"
    until = datetime.now(timezone.utc) + timedelta(hours=1)
    silenced = client.silence_alert(alert.id, until)
    assert silenced.silenced_until is not None
    assert main(["alerts", "list", "--url", url, "--state", "open"]) == 0
    assert alert.id in capsys.readouterr().out
    with pytest.raises(NotFoundError):
        client.acknowledge_alert("alert:nope")


def test_rules_file_and_expression_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text('[[rule]]\nname = "x"\nexpr = "psi >> 2"\n')
    with pytest.raises(ConfigError, match=r"rule #1: expr: 'psi >> 2' is not"):
        load_alert_rules(bad)
    bad.write_text('[[rule]]\nname = "x"\nexpr = "a > 1"\nfor = "soon"\n')
    with pytest.raises(ConfigError, match="for: 'soon' is not a duration"):
        load_alert_rules(bad)
    bad.write_text('[[rule]]\nname = "x"\nexpr = "a > 1"\ncolour = "red"\n')
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        load_alert_rules(bad)
    expr = parse_expr("drift.*.psi > 0.2 and sample_count >= 100 or accuracy < 0.5")
    assert evaluate(expr, {"drift.age.psi": 0.3, "drift.x.psi": 0.1, "sample_count": 100}) == {
        "drift.age.psi": 0.3,
        "sample_count": 100,
    }
    assert evaluate(expr, {"drift.age.psi": 0.3, "sample_count": 10}) is None
    assert evaluate(expr, {"accuracy": 0.4}) == {"accuracy": 0.4}


def test_alerts_in_embedded_mode_follow_the_same_rules(store_backend: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    store = open_store(fresh_store_uri(store_backend, tmp_path))
    artifacts = open_artifact_store(f"file://{tmp_path / 'artifacts'}")
    client = Client(store, artifacts=artifacts, settings=Settings(user="bob", alert_rules=rules))
    with client.start_run("train", project="churn", capture=False) as run:
        run.log_dataset(frame(4000, 0, 0), name="customers", namespace="warehouse")
        run.log_model({"w": 1}, name="churn")
    client.deploy("churn/1", "prod")
    report_hours(client, [25, 25, 25])
    (alert,) = client.alerts("churn", "firing")
    assert client.acknowledge_alert(alert.id, "on it").acknowledged_by == "bob"
    with pytest.raises(ValidationError, match="state"):
        client.alerts(state="nope")
    report_hours(client, [0, 0, 0], start_hour=3)  # calm again: resolved
    (resolved,) = client.alerts(state="resolved")
    with pytest.raises(ValidationError, match="only a firing alert"):
        client.acknowledge_alert(resolved.id)
    client.close()
    store.close()


def test_a_window_reported_again_after_its_alert_resolved_reopens_nothing(
    tmp_path: Path,
) -> None:
    """A window is re-reported (a retry, late labels) after a later window resolved the
    alert it raised: nothing reopens (a new alert fired, and 'alert.firing' went out again,
    on evidence older than the resolution)."""
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "busy"\nexpr = "sample_count >= 100"\n')
    client = Client(
        f"sqlite:///{tmp_path / 'hub.db'}",
        artifacts=(tmp_path / "a").as_uri(),
        settings=Settings(user="bob", alert_rules=rules),
    )
    with client.start_run("train", project="churn", capture=False) as run:
        run.log_model({"w": 1}, name="churn")
    client.deploy("churn/1", "prod")

    def sketch(n: int) -> dict[str, Any]:
        values = {"kind": "categorical", "values": ["a"], "counts": [n, 0], "count": n}
        return {"features": {"plan": values}}

    monitoring = client.backend.monitoring
    monitoring.report_window("churn", T0, T0 + timedelta(hours=1), sketch(500))
    (fired,) = client.alerts("churn", "firing")
    monitoring.report_window("churn", T0 + timedelta(hours=1), T0 + timedelta(hours=2), sketch(10))
    assert [a.state.value for a in client.alerts("churn")] == ["resolved"]
    monitoring.report_window("churn", T0, T0 + timedelta(hours=1), sketch(500))  # again
    assert [(a.id, a.state.value) for a in client.alerts("churn")] == [(fired.id, "resolved")]
    client.close()


def test_windows_reported_at_once_open_one_alert(store_backend: str, tmp_path: Path) -> None:
    """Replicas of a model server report their windows of one deployment at once (through a
    server: its threads, or its processes with --workers). Each looked for the open alert
    before the transaction that wrote it, found none, and opened its own: one rule fired two
    to eight times, with as many notifications (on Neo4j nearly every time)."""
    uri = fresh_store_uri(store_backend, tmp_path)
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "busy"\nexpr = "sample_count >= 100"\n')
    settings = Settings(user="bob", alert_rules=rules)
    artifacts = (tmp_path / "a").as_uri()
    clients = [Client(uri, artifacts=artifacts, settings=settings) for _ in range(8)]
    with clients[0].start_run("train", project="churn", capture=False) as run:
        run.log_model({"w": 1}, name="churn")
    sketch = {"features": {"plan": {"kind": "categorical", "values": ["a"], "counts": [500, 0],
                                    "count": 500}}}  # fmt: skip

    def report(client: Client, deployment: str, instance: str, start: threading.Barrier) -> None:
        start.wait()
        client.backend.monitoring.report_window(
            deployment, T0, T0 + timedelta(hours=1), sketch, instance=instance
        )

    for round_ in range(4):
        deployment = clients[0].deploy("churn/1", f"prod-{round_}").id
        start = threading.Barrier(len(clients))
        threads = [
            threading.Thread(target=report, args=(c, deployment, f"pod-{i}", start))
            for i, c in enumerate(clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [a.state.value for a in clients[0].alerts(deployment)] == ["firing"]
    for c in clients:
        c.close()


@pytest.mark.parametrize(
    "bad",
    [{"labels": 5}, {"labels": ["team"]}, {"annotations": {"summary": 3}}, {"labels": {"a": None}}],
)
def test_a_rule_s_labels_and_annotations_must_map_names_to_strings(bad: dict[str, Any]) -> None:
    from lineagehub.graph import ValidationError
    from lineagehub.services.alerts import parse_rule

    with pytest.raises(ValidationError) as refused:
        parse_rule({"name": "r", "expr": "sample_count > 1", **bad}, "input")
    assert refused.value.field == next(iter(bad))
