"""Webhooks wired to the hub's events, over real HTTP: a hub sends signed events to a real
receiver once each change commits, and lists the delivery attempts in GraphQL."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from http_server import SERVE, HubServer, serving
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lineagehub.artifacts import open_artifact_store
from lineagehub.config import Settings
from lineagehub.graph import GraphStore, open_store
from lineagehub.interfaces.server import create_app
from lineagehub.samples.example import build_example
from lineagehub.services.registry import Policy
from lineagehub.services.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    GraphRecorder,
    Outbox,
    WebhookConfig,
    WebhookDispatcher,
    verify_signature,
)

SECRET = "w3bh00k-s3cret"
POLICIES = {("churn", "Production"): Policy(approvals=1)}


@dataclass
class Received:
    event: str
    body: dict[str, Any]
    signed: bool


class Receiver:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[Received] = []

        async def hook(request: Request) -> Response:
            raw = await request.body()
            signed = verify_signature(SECRET, raw, request.headers.get(SIGNATURE_HEADER))
            with self.lock:
                self.received.append(
                    Received(request.headers["X-LineageHub-Event"], json.loads(raw), signed)
                )
            return Response(status_code=204)

        self.app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    def events(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.events()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.events()


@dataclass
class Hub:
    store: GraphStore
    app: Any
    http: httpx.Client
    receiver: Receiver
    hook_url: str


@pytest.fixture
def hub(backend_uri: str, tmp_path: Path) -> Iterator[Hub]:
    store = open_store(backend_uri)
    build_example(store)
    artifacts = open_artifact_store((tmp_path / "artifacts").as_uri())
    receiver = Receiver()
    with HubServer(receiver.app) as rx:
        hook_url = f"{rx.url}/hook"
        settings = Settings(
            user="alice",
            data_dir=tmp_path,
            webhooks=[{"url": hook_url, "secret": SECRET, "events": "*", "max_attempts": 2}],
        )
        app = create_app(settings, store=store, artifacts=artifacts, registry_policies=POLICIES)
        with HubServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            yield Hub(store, app, http, receiver, hook_url)
    store.close()


def data(http: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    response = http.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]
    return result


def errors(http: httpx.Client, query: str, **variables: Any) -> list[dict[str, Any]]:
    body = http.post("/graphql", json={"query": query, "variables": variables}).json()
    found: list[dict[str, Any]] = body.get("errors") or []
    return found


SET_ALIAS = """mutation($ref: String!) {
  setAlias(ref: $ref, alias: "champion", reason: "best auc") { id }
}"""


def test_registry_changes_send_signed_events_and_deliveries_are_listed(hub: Hub) -> None:
    # a model version, through the upload + logModel path
    digest = hub.http.put(
        "/artifacts", content=b"model bytes", headers={"content-type": "application/octet-stream"}
    ).json()["digest"]
    run_id = data(hub.http, 'mutation { startRun(input: {name: "train"}) { id } }')["startRun"][
        "id"
    ]
    created = data(
        hub.http,
        """mutation($run: ID!, $digest: String!) {
          logModel(runId: $run, digest: $digest, name: "churn", description: "v-next") { id }
        }""",
        run=run_id,
        digest=digest,
    )["logModel"]["id"]
    got = hub.receiver.wait_for(1)
    assert [r.event for r in got] == ["model_version.created"]
    first = got[0].body
    assert first["event"] == "model_version.created"
    assert first["data"]["version_id"] == created and first["data"]["model"] == "churn"
    assert first["data"]["actor"] == "alice" and first["data"]["run_id"] == run_id

    data(hub.http, SET_ALIAS, ref="churn/2")
    pending = data(
        hub.http,
        """mutation { requestPromotion(ref: "churn/2", to: "Production", reason: "ready") {
          ... on PromotionPending { requestId } } }""",
    )["requestPromotion"]
    done = data(
        hub.http,
        """mutation($id: ID!) { approvePromotion(requestId: $id, comment: "lgtm") {
          __typename } }""",
        id=pending["requestId"],
    )["approvePromotion"]
    assert done["__typename"] == "ModelPromoted"

    got = hub.receiver.wait_for(5)
    assert [r.event for r in got] == [
        "model_version.created",
        "alias.moved",
        "promotion.requested",
        "promotion.approved",
        "promotion.done",
    ]
    assert all(r.signed for r in got)
    by_event = {r.event: r.body for r in got}
    moved = by_event["alias.moved"]["data"]
    assert moved["model"] == "churn" and moved["alias"] == "champion"
    assert moved["version"] == 2 and moved["actor"] == "alice" and moved["reason"] == "best auc"
    requested = by_event["promotion.requested"]["data"]
    assert requested["request_id"] == pending["requestId"]
    assert requested["to_stage"] == "Production" and requested["reason"] == "ready"
    assert by_event["promotion.approved"]["data"]["reason"] == "lgtm"
    assert by_event["promotion.done"]["data"]["version_id"] == "mv:churn/2"

    # a refused change sends nothing
    assert errors(hub.http, SET_ALIAS, ref="nosuch/9")
    time.sleep(0.3)
    assert len(hub.receiver.events()) == 5

    # every attempt is recorded, newest first
    assert hub.app.state.webhooks.flush(10)
    query = """query($url: String, $eventId: String) {
      webhookDeliveries(url: $url, eventId: $eventId) {
        deliveryId eventId event url attempt at statusCode error outcome
      }
    }"""
    deliveries = data(hub.http, query, url=hub.hook_url)["webhookDeliveries"]
    assert [d["event"] for d in deliveries] == [r.event for r in reversed(got)]
    assert {d["outcome"] for d in deliveries} == {"delivered"}
    assert {d["statusCode"] for d in deliveries} == {204}
    assert all(d["attempt"] == 1 and d["url"] == hub.hook_url for d in deliveries)
    one = data(hub.http, query, eventId=first["id"])["webhookDeliveries"]
    assert [d["event"] for d in one] == ["model_version.created"]
    assert data(hub.http, query, url="http://elsewhere.example/")["webhookDeliveries"] == []


def test_a_rejected_promotion_sends_its_event(hub: Hub) -> None:
    pending = data(
        hub.http,
        """mutation { requestPromotion(ref: "churn/2", to: "Production", reason: "r") {
          ... on PromotionPending { requestId } } }""",
    )["requestPromotion"]
    data(
        hub.http,
        """mutation($id: ID!) { rejectPromotion(requestId: $id, reason: "not yet") {
          requestId } }""",
        id=pending["requestId"],
    )
    got = hub.receiver.wait_for(2)
    assert [r.event for r in got] == ["promotion.requested", "promotion.rejected"]
    rejected = got[1].body["data"]
    assert rejected["reason"] == "not yet" and rejected["actor"] == "alice"
    assert rejected["request_id"] == pending["requestId"]


def test_a_failed_transaction_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from lineagehub.services.registry import RegistryService

    store = open_store("sqlite://")
    build_example(store)
    sent: list[tuple[str, dict[str, Any]]] = []
    registry = RegistryService(store, on_event=lambda e, p: sent.append((e, p)))
    audit = store.append_audit

    def failing(*args: Any, **kwargs: Any) -> Any:
        audit(*args, **kwargs)
        raise RuntimeError("the commit fails")

    monkeypatch.setattr(store, "append_audit", failing)
    with pytest.raises(RuntimeError):
        registry.set_alias("churn/2", "champion", "alice")
    assert sent == []
    monkeypatch.setattr(store, "append_audit", audit)
    assert registry.resolve("churn/2").aliases == []  # rolled back
    registry.set_alias("churn/2", "champion", "alice")
    assert [e for e, _ in sent] == ["alias.moved"]
    store.close()


def test_webhook_secrets_stay_out_of_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    config = [{"url": "https://user:pw@ci.example/hook?token=t0k", "secret": SECRET}]
    settings = Settings(webhooks=config)
    for text in (repr(settings), str(settings), repr(settings.webhook_configs())):
        assert SECRET not in text and "t0k" not in text and "pw@" not in text
    monkeypatch.setenv("LINEAGEHUB_WEBHOOKS", json.dumps(config))
    monkeypatch.setenv("LINEAGEHUB_WEBHOOK_QUEUE_SIZE", "7")
    from_env = Settings()
    assert SECRET not in repr(from_env)
    assert from_env.webhook_queue_size == 7
    (parsed,) = from_env.webhook_configs()
    assert parsed.secret == SECRET.encode() and parsed.events == "*"


BATCH = """mutation($ops: [WriteOperation!]!) {
  writeBatch(operations: $ops) { node { id } }
}"""


def test_a_batch_sends_its_events_once_it_has_committed_and_a_failed_one_none(hub: Hub) -> None:
    digest = hub.http.put(
        "/artifacts", content=b"model bytes", headers={"content-type": "application/octet-stream"}
    ).json()["digest"]

    def ops(alias: str) -> list[dict[str, Any]]:
        return [
            {"call": "startRun", "args": {"input": {"name": "train"}}},
            {"call": "logModel", "args": {"runId": "$0", "digest": digest, "name": "churn"}},
            {"call": "setAlias", "args": {"ref": "$1", "alias": alias}},
            {"call": "endRun", "args": {"runId": "$0"}},
        ]

    refused = errors(hub.http, BATCH, ops=ops("not an alias!"))
    assert refused and refused[0]["extensions"]["code"] == "VALIDATION"
    written = data(hub.http, BATCH, ops=ops("champion"))["writeBatch"]
    version = written[1]["node"]["id"]
    # one queue, in order: had the failed batch sent anything, it would come first
    got = hub.receiver.wait_for(2)
    assert [(r.event, r.body["data"]["version_id"]) for r in got] == [
        ("model_version.created", version),
        ("alias.moved", version),
    ]
    assert hub.app.state.webhooks.flush(10)
    assert len(hub.receiver.events()) == 2


@pytest.mark.skipif(sys.platform == "win32", reason="needs kill -9 (POSIX signals)")
def test_an_event_committed_before_a_crash_is_delivered_by_the_next_start(
    backend_uri: str, tmp_path: Path
) -> None:
    """A hub killed (kill -9) while its receiver holds the first attempt of an event: the
    next start sends that delivery again, under its own id; a start after that sends
    nothing (it was delivered)."""
    store = open_store(backend_uri)
    build_example(store)
    gate = threading.Event()
    seen: list[tuple[str, dict[str, Any]]] = []
    first_held, second = threading.Event(), threading.Event()

    async def hook(request: Request) -> Response:
        seen.append((request.headers[DELIVERY_HEADER], json.loads(await request.body())))
        if len(seen) == 2:
            second.set()
        if len(seen) == 1:  # the first attempt is held until the hub is gone
            first_held.set()
            await anyio.to_thread.run_sync(gate.wait, 60)
        return Response(status_code=204)

    receiver = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    artifacts = (tmp_path / "artifacts").as_uri()
    with HubServer(receiver) as rx:
        hooks = [{"url": f"{rx.url}/hook", "secret": SECRET, "events": "*"}]
        settings = {"user": "alice", "webhooks": hooks}
        server, port = serving(SERVE, backend_uri, artifacts, settings)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                data(http, SET_ALIAS, ref="churn/2")
            assert first_held.wait(60), "the hub never sent the event"
            server.send_signal(signal.SIGKILL)
            server.wait(60)
        finally:
            if server.poll() is None:
                server.kill()
        delivery, body = seen[0]
        assert body["event"] == "alias.moved"
        # the next start: the same delivery again, now answered
        again, _ = serving(SERVE, backend_uri, artifacts, settings)
        try:
            assert second.wait(60), "the next start did not send it again"
        finally:
            again.terminate()
            again.wait(60)
        gate.set()
        assert len(seen) == 2 and seen[1] == (delivery, body)
        reopened = open_store(backend_uri)
        records = [n.props for n in reopened.iter_nodes("WebhookDelivery")]
        assert [(r["delivery_id"], r["attempt"], r["outcome"]) for r in records] == [
            (delivery, 1, "delivered")
        ]
        # and a start after that finds nothing left to send
        config = Settings(data_dir=tmp_path, **settings)
        app = create_app(config, store=reopened, artifacts=open_artifact_store(artifacts))
        with HubServer(app):
            assert app.state.webhooks.flush(0)
        assert len(seen) == 2
        reopened.close()
    store.close()


def test_a_stopping_server_closes_the_requests_store_before_deliveries_drain(
    tmp_path: Path,
) -> None:
    """A write the server stopped at shutdown is answered 503 "nothing of it was kept": its
        store closing interrupts it. With webhooks, the store closed only after the deliveries
        drained (up to an endpoint's timeout and more), and a write waiting for the database then
        committed meanwhile: kept, though its caller was told to send it again. The requests'
        store closes first now (the attempts are recorded through a handle of their own, and what
    does not go out is sent again by the next start)."""
    import socket

    from lineagehub.graph import BackendError

    hang = socket.socket()  # accepts, never answers: a delivery stays in flight
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)
    hook = {"url": f"http://127.0.0.1:{hang.getsockname()[1]}/h", "secret": SECRET, "timeout": 5}
    settings = Settings(
        user="alice", data_dir=tmp_path, store=f"sqlite:///{tmp_path / 'hub.db'}", webhooks=[hook]
    )
    app = create_app(settings, artifacts=open_artifact_store((tmp_path / "a").as_uri()))
    store, dispatcher = app.state.services.store, app.state.webhooks
    server = HubServer(app).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            digest = http.put(
                "/artifacts", content=b"w", headers={"content-type": "application/octet-stream"}
            ).json()["digest"]
            register = (
                'mutation($d: String!) { registerModelVersion(name: "m", digest: $d) { id } }'
            )
            data(http, register, d=digest)  # its event's delivery hangs
        stopping = threading.Thread(target=server.stop)
        stopping.start()
        deadline = time.monotonic() + 60  # bounds a failure only
        while time.monotonic() < deadline:
            try:
                store.get_nodes(["x"])
            except BackendError:
                break  # closed
        else:
            pytest.fail("the store was never closed")
        assert not dispatcher.flush(0)  # closed while the delivery was still in flight
        stopping.join(60)
    finally:
        hang.close()
        server.stop()


def test_deliveries_a_stop_abandoned_are_sent_by_the_next_start_counting_on(
    tmp_path: Path,
) -> None:
    """A stop gives up on deliveries still retrying (an ``abandoned`` record each): the next
    start sends them again under their own delivery id, their attempts numbered on from the
    ones recorded, and a delivered one is not sent again."""
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    answers = {"status": 503}
    seen: list[tuple[str, str]] = []
    arrived = threading.Event()

    async def hook(request: Request) -> Response:
        seen.append((request.headers[DELIVERY_HEADER], json.loads(await request.body())["event"]))
        arrived.set()
        return Response(status_code=answers["status"])

    receiver = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with HubServer(receiver) as rx:
        config = WebhookConfig(f"{rx.url}/hook", SECRET, backoff_base=60, backoff_max=60)

        def hub() -> tuple[WebhookDispatcher, Outbox]:
            dispatcher = WebhookDispatcher([config], recorder=GraphRecorder(store))
            return dispatcher, Outbox(store, dispatcher)

        dispatcher, outbox = hub()
        outbox("alias.moved", {"alias": "a"})  # refused (503): retried in a minute
        outbox("model_version.created", {"version": 1})
        assert arrived.wait(30)
        dispatcher.close(timeout=0)  # both abandoned: one after its first attempt
        first = {d for d, _ in seen}
        assert len(first) in (1, 2)  # the second may not have been tried before the stop
        answers["status"] = 204
        dispatcher, outbox = hub()
        assert outbox.redeliver() == 2
        assert dispatcher.flush(30)
        dispatcher.close()
        tried = [n.props for n in store.iter_nodes("WebhookDelivery")]
        for delivery in {d for d, _ in seen}:
            mine = sorted(
                (r["attempt"], r["outcome"], r["abandoned"])
                for r in tried
                if r["delivery_id"] == delivery
            )
            assert mine[-1][1] == "delivered" and mine[-1][0] == len(
                [d for d, _ in seen if d == delivery]
            )
        assert first <= {d for d, _ in seen} and len({d for d, _ in seen}) == 2
        # delivered: a later start sends nothing
        dispatcher, outbox = hub()
        assert outbox.redeliver() == 0
        dispatcher.close()
    store.close()


def test_a_stage_rollback_sends_one_event_naming_every_move(hub: Hub) -> None:
    # A rollback of a stage changes stages as a promotion does: one stage.rolled_back event
    # with each move (it sent none, so a receiver kept the rolled-back version in Staging).
    # One that is refused (nothing to roll back) sends nothing.
    promote = """mutation($ref: String!) { promoteModelVersion(ref: $ref, to: "Staging",
      reason: "try") { __typename } }"""
    data(hub.http, promote, ref="churn/1")
    data(hub.http, promote, ref="churn/2")
    rollback = """mutation { rollback(model: "churn", stageOrAlias: "Staging", reason: "v2 bad")
      { runIds holders { id } } }"""
    done = data(hub.http, rollback)["rollback"]
    assert [h["id"] for h in done["holders"]] == ["mv:churn/1"]
    got = hub.receiver.wait_for(3)
    assert [r.event for r in got] == ["promotion.done", "promotion.done", "stage.rolled_back"]
    event = got[-1].body["data"]
    assert event["model"] == "churn" and event["stage"] == "Staging"
    assert event["actor"] == "alice" and event["reason"] == "v2 bad"
    assert event["run_ids"] == done["runIds"]
    assert event["moves"] == [
        {
            "version_id": "mv:churn/2",
            "version": 2,
            "from_stage": "Staging",
            "to_stage": "None",
            "run_id": done["runIds"][0],
        }
    ]
    assert event["undone"] == got[1].body["data"]["run_id"]

    assert errors(hub.http, rollback.replace("Staging", "Archived"))  # no history: refused
    data(hub.http, SET_ALIAS, ref="churn/1")  # the next change's event comes next
    got = hub.receiver.wait_for(4)
    assert [r.event for r in got[3:]] == ["alias.moved"]


def test_a_retired_deployment_sends_its_event(hub: Hub) -> None:
    # Recording a deployment sent deployment.recorded; retiring it (by retireDeployment, or
    # by a stage change told to retire what it would strand) sent nothing.
    data(
        hub.http,
        """mutation { promoteModelVersion(ref: "churn/1", to: "Staging", reason: "try") {
          __typename } }""",
    )
    record = """mutation($name: String!) { recordDeployment(ref: "churn/1", environment: "qa",
      name: $name, requireStage: "Staging") { id } }"""
    first = data(hub.http, record, name="a")["recordDeployment"]["id"]
    second = data(hub.http, record, name="b")["recordDeployment"]["id"]
    data(
        hub.http,
        """mutation($id: ID!) { retireDeployment(id: $id, reason: "done") { status } }""",
        id=first,
    )
    done = data(
        hub.http,
        """mutation { promoteModelVersion(ref: "churn/1", to: "Archived", reason: "old",
          onDeployments: "retire") { ... on ModelPromoted { deployments { id } } } }""",
    )["promoteModelVersion"]
    assert done["deployments"] == [{"id": second}]
    got = hub.receiver.wait_for(6)
    assert [r.event for r in got] == [
        "promotion.done",
        "deployment.recorded",
        "deployment.recorded",
        "deployment.retired",
        "deployment.retired",
        "promotion.done",
    ]
    retired = [r.body["data"] for r in got[3:5]]
    assert [(d["deployment_id"], d["name"], d["environment"]) for d in retired] == [
        (first, "a", "qa"),
        (second, "b", "qa"),
    ]
    assert [d["ended"] for d in retired] == [["mv:churn/1"], ["mv:churn/1"]]
    assert retired[0]["actor"] == "alice" and retired[0]["reason"] == "done"
    assert retired[1]["reason"].startswith("retired by the promotion of mv:churn/1")
