"""Webhooks against a real HTTP receiver on 127.0.0.1 (Starlette served by uvicorn)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from http_server import HubServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from lineagehub.graph import open_store
from lineagehub.graph.errors import ConfigError
from lineagehub.services.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    DeliveryAttempt,
    DeliveryOutcome,
    DeliveryRecorder,
    GraphRecorder,
    InMemoryRecorder,
    WebhookConfig,
    WebhookDispatcher,
    WebhookEvent,
    redact_url,
    sign,
    verify_signature,
)

SECRET = "whsec-super-secret-value"
FAST: dict[str, Any] = {"backoff_base": 0.01, "backoff_max": 0.05, "timeout": 2.0}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """Records every request; answers with the next scripted behaviour, then 200. A path in
    ``by_path`` always gets its behaviour; "block" answers 200 ("block:503": 503) once
    ``release`` is set, "drip"
    answers 200 and then a byte at a time until it is, "big" 200 and 1 MiB of body, and the
    rest once it is."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    script: list[str] = field(default_factory=list)  # "500" | "429" | "400" | "hang"
    by_path: dict[str, str] = field(default_factory=dict)  # + "block" | "drip" | "big"
    hang_s: float = 1.0
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, *behaviours: str) -> None:
        with self.lock:
            self.script.extend(behaviours)

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(r.body) for r in self.requests]

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Blocked answers wait until the block ends (set ``release`` to end them sooner)."""
        try:
            yield
        finally:
            self.release.set()

    async def released(self) -> None:
        while not self.release.is_set():
            await asyncio.sleep(0.01)

    async def drip(self) -> AsyncIterator[bytes]:
        # far more often than any read timeout: only a deadline on the whole answer ends it
        while not self.release.is_set():
            yield b"."
            await asyncio.sleep(0.05)

    async def big(self) -> AsyncIterator[bytes]:
        for _ in range(16):
            yield b"x" * 65536
        await self.released()
        yield b"x" * 65536

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            with self.lock:
                self.requests.append(
                    Received(request.url.path, dict(request.headers), body, time.monotonic())
                )
                behaviour = self.by_path.get(request.url.path) or (
                    self.script.pop(0) if self.script else "200"
                )
            if behaviour == "hang":
                await asyncio.sleep(self.hang_s)
                return JSONResponse({"late": True})
            if behaviour.startswith("block"):  # "block" or "block:<status>"
                await self.released()
                return Response(status_code=int(behaviour.partition(":")[2] or 200))
            if behaviour == "drip":
                return StreamingResponse(self.drip())
            if behaviour == "big":
                return StreamingResponse(self.big())
            if behaviour == "429":
                return Response(status_code=429, headers={"Retry-After": "0"})
            return Response(status_code=int(behaviour))

        return Starlette(routes=[Route("/{path:path}", hook, methods=["POST"])])


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[HubServer, Receiver]]:
    receiver = Receiver()
    with HubServer(receiver.app()) as srv:
        receiver.url = srv.url
        yield srv, receiver


@pytest.fixture
def receiver(server: tuple[HubServer, Receiver]) -> Receiver:
    _, recv = server
    with recv.lock:
        recv.requests.clear()
        recv.script.clear()
        recv.by_path.clear()
        recv.hang_s = 1.0
        recv.release = threading.Event()
    return recv


class WaitingRecorder(InMemoryRecorder):
    """Attempts in memory, and a way to wait for them (handed on to ``also`` if given)."""

    def __init__(self, also: DeliveryRecorder | None = None) -> None:
        super().__init__()
        self.also = also
        self.recorded = threading.Condition()

    def record(self, attempt: DeliveryAttempt) -> None:
        if self.also is not None:
            self.also.record(attempt)
        super().record(attempt)
        with self.recorded:
            self.recorded.notify_all()

    def wait_for(self, done: Callable[[], object], timeout: float = 30.0) -> bool:
        """Whether ``done()`` came true before ``timeout`` (a guard, not a pace)."""
        with self.recorded:
            return bool(self.recorded.wait_for(done, timeout))


@pytest.fixture
def recorder() -> WaitingRecorder:
    return WaitingRecorder()


def eventually(done: Callable[[], object], timeout: float = 30.0) -> bool:
    """Whether ``done()`` came true before ``timeout`` (a guard, not a pace)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


def _dispatcher(
    recorder: InMemoryRecorder, *configs: WebhookConfig, **kwargs: Any
) -> WebhookDispatcher:
    return WebhookDispatcher(configs, recorder=recorder, **kwargs)


# --- signatures -----------------------------------------------------------------------------


def test_sign_and_verify_roundtrip() -> None:
    body = b'{"a":1}'
    now = int(time.time())
    header = sign(SECRET, body, now)
    assert header.startswith(f"t={now},v1=")
    assert verify_signature(SECRET, body, header)
    assert verify_signature(SECRET.encode(), body, header)
    assert not verify_signature("wrong", body, header)
    assert not verify_signature(SECRET, b'{"a":2}', header)
    assert not verify_signature(SECRET, body, sign(SECRET, body, now - 301))
    assert verify_signature(SECRET, body, sign(SECRET, body, now - 301), tolerance_s=600)
    assert not verify_signature(SECRET, body, None)
    assert not verify_signature(SECRET, body, "garbage")
    assert not verify_signature(SECRET, body, f"t=abc,v1={'0' * 64}")
    # a rotated secret: any of several v1 entries may match
    both = f"{sign('old', body, now)},v1={sign(SECRET, body, now).split('v1=')[1]}"
    assert verify_signature(SECRET, body, both)


def test_signature_is_over_timestamp_and_body() -> None:
    body = b"{}"
    header = sign(SECRET, body, 1000)
    # moving the timestamp invalidates the MAC even within tolerance
    forged = header.replace("t=1000", "t=1001")
    assert verify_signature(SECRET, body, header, now=1000)
    assert not verify_signature(SECRET, body, forged, now=1001)


# --- configuration --------------------------------------------------------------------------


def test_config_validation_and_repr() -> None:
    for bad in ("ftp://example.com/x", "file:///etc/passwd", "example.com/hook", "http://"):
        with pytest.raises(ConfigError):
            WebhookConfig(url=bad, secret=SECRET)
    with pytest.raises(ConfigError):
        WebhookConfig(url="https://h/x", secret="")
    with pytest.raises(ConfigError):
        WebhookConfig(url="https://h/x", secret=SECRET, events={"model.deleted"})
    with pytest.raises(ConfigError):
        WebhookConfig(url="https://h/x", secret=SECRET, max_attempts=0)
    config = WebhookConfig(
        url="https://user:pw@h.example/x?token=abc",
        secret=SECRET,
        events={"alias.moved", WebhookEvent.PROMOTION_DONE},
    )
    assert config.secret == SECRET.encode()
    assert config.events == {WebhookEvent.ALIAS_MOVED, WebhookEvent.PROMOTION_DONE}
    assert SECRET not in repr(config) and SECRET not in str(config)
    assert "pw" not in repr(config) and "abc" not in repr(config)
    assert config.safe_url == "https://h.example/x?token=%2A%2A%2A"
    assert "pw" not in config.safe_url and "abc" not in config.safe_url
    assert redact_url("http://[::1]:8080/p#frag") == "http://[::1]:8080/p"
    assert config.matches("alias.moved") and not config.matches(WebhookEvent.PROMOTION_APPROVED)
    assert WebhookConfig(url="http://h/x", secret=b"k").matches("promotion.rejected")


def test_backoff_is_exponential_with_full_jitter() -> None:
    config = WebhookConfig(url="http://h/x", secret="k", backoff_base=0.5, backoff_max=30)
    for attempt, cap in ((1, 0.5), (2, 1.0), (3, 2.0), (10, 30.0)):
        delays = [config.backoff(attempt) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap / 2  # jitter spans the range


# --- delivery -------------------------------------------------------------------------------


def test_delivers_signed_payload_with_headers(
    receiver: Receiver, recorder: InMemoryRecorder
) -> None:
    url = f"{receiver.url}/hooks/a"
    with _dispatcher(recorder, WebhookConfig(url=url, secret=SECRET, **FAST)) as dispatcher:
        event_id = dispatcher.dispatch(
            WebhookEvent.MODEL_VERSION_CREATED, {"model": "churn", "version": 3}
        )
        assert dispatcher.flush(5)
    (request,) = receiver.requests
    assert request.path == "/hooks/a"
    assert request.headers["content-type"] == "application/json"
    assert request.headers[EVENT_HEADER.lower()] == "model_version.created"
    signature = request.headers[SIGNATURE_HEADER.lower()]
    assert verify_signature(SECRET, request.body, signature)
    assert not verify_signature("not-the-secret", request.body, signature)
    assert not verify_signature(SECRET, request.body.replace(b"churn", b"chum"), signature)
    stale = int(signature.split(",")[0][2:]) + 301
    assert not verify_signature(SECRET, request.body, signature, now=stale)
    body = json.loads(request.body)
    assert body["id"] == event_id
    assert body["event"] == "model_version.created"
    assert body["data"] == {"model": "churn", "version": 3}
    assert body["created_at"].endswith("+00:00")
    (attempt,) = recorder.attempts(event_id=event_id)
    assert attempt.outcome is DeliveryOutcome.DELIVERED
    assert attempt.status_code == 200 and attempt.error is None and attempt.attempt == 1
    assert attempt.url == url and attempt.duration_ms >= 0
    assert request.headers[DELIVERY_HEADER.lower()] == attempt.delivery_id
    assert attempt.to_dict()["outcome"] == "delivered"


def test_event_filtering(receiver: Receiver, recorder: InMemoryRecorder) -> None:
    promotions = WebhookConfig(
        url=f"{receiver.url}/promotions",
        secret=SECRET,
        events={"promotion.requested", "promotion.approved", "promotion.rejected"},
        **FAST,
    )
    aliases = WebhookConfig(url=f"{receiver.url}/aliases", secret="other", events="alias.moved")
    everything = WebhookConfig(url=f"{receiver.url}/all", secret="k3", events="*", **FAST)
    with _dispatcher(recorder, promotions, aliases, everything) as dispatcher:
        for event in WebhookEvent:
            dispatcher.dispatch(event, {"e": event.value})
        assert dispatcher.flush(5)
    seen: dict[str, set[str]] = {}
    for request in receiver.requests:
        seen.setdefault(request.path, set()).add(request.headers[EVENT_HEADER.lower()])
    assert seen["/promotions"] == {
        "promotion.requested",
        "promotion.approved",
        "promotion.rejected",
    }
    assert seen["/aliases"] == {"alias.moved"}
    assert seen["/all"] == {e.value for e in WebhookEvent}
    assert len(recorder.attempts(url=f"{receiver.url}/all")) == len(WebhookEvent)
    assert len(recorder.attempts()) == 3 + 1 + len(WebhookEvent)
    # each endpoint's requests are signed with its own secret
    for request in receiver.requests:
        key = {"/promotions": SECRET, "/aliases": "other", "/all": "k3"}[request.path]
        assert verify_signature(key, request.body, request.headers[SIGNATURE_HEADER.lower()])
    with WebhookDispatcher([everything], recorder=recorder) as other, pytest.raises(ConfigError):
        other.dispatch("nope", {})


def test_retries_with_backoff_until_success(receiver: Receiver, recorder: InMemoryRecorder) -> None:
    receiver.fail("500", "429", "503")
    config = WebhookConfig(url=f"{receiver.url}/r", secret=SECRET, max_attempts=5, **FAST)
    with _dispatcher(recorder, config) as dispatcher:
        event_id = dispatcher.dispatch("promotion.done", {"ok": True})
        assert dispatcher.flush(5)
    attempts = recorder.attempts(event_id=event_id)
    assert [a.outcome for a in attempts] == [DeliveryOutcome.RETRYING] * 3 + [
        DeliveryOutcome.DELIVERED
    ]
    assert [a.attempt for a in attempts] == [1, 2, 3, 4]
    assert [a.status_code for a in attempts] == [500, 429, 503, 200]
    assert attempts[0].error == "HTTP 500"
    assert len({a.delivery_id for a in attempts}) == 1
    # the same delivery id and body each time, a fresh valid signature each time
    assert len(receiver.requests) == 4
    assert len({r.headers[DELIVERY_HEADER.lower()] for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1
    for request in receiver.requests:
        assert verify_signature(SECRET, request.body, request.headers[SIGNATURE_HEADER.lower()])


def test_gives_up_after_max_attempts(receiver: Receiver, recorder: InMemoryRecorder) -> None:
    receiver.fail("500", "500", "500", "500")
    config = WebhookConfig(url=f"{receiver.url}/x", secret=SECRET, max_attempts=3, **FAST)
    with _dispatcher(recorder, config) as dispatcher:
        event_id = dispatcher.dispatch(WebhookEvent.PROMOTION_REJECTED, {})
        assert dispatcher.flush(5)
    attempts = recorder.attempts(event_id=event_id)
    assert [a.outcome.value for a in attempts] == ["retrying", "retrying", "failed"]
    assert len(receiver.requests) == 3


def test_no_retry_on_400(receiver: Receiver, recorder: InMemoryRecorder) -> None:
    receiver.fail("400")
    config = WebhookConfig(url=f"{receiver.url}/x", secret=SECRET, **FAST)
    with _dispatcher(recorder, config) as dispatcher:
        event_id = dispatcher.dispatch(WebhookEvent.PROMOTION_APPROVED, {})
        assert dispatcher.flush(5)
    (attempt,) = recorder.attempts(event_id=event_id)
    assert attempt.outcome is DeliveryOutcome.FAILED and attempt.status_code == 400
    assert len(receiver.requests) == 1


def test_connection_refused_is_retried_then_fails(recorder: InMemoryRecorder) -> None:
    # port 9 on 127.0.0.1: nothing listens (discard is not served in test environments)
    config = WebhookConfig(url="http://127.0.0.1:9/x", secret=SECRET, max_attempts=2, **FAST)
    with _dispatcher(recorder, config) as dispatcher:
        event_id = dispatcher.dispatch(WebhookEvent.ALIAS_MOVED, {})
        assert dispatcher.flush(5)
    attempts = recorder.attempts(event_id=event_id)
    assert [a.outcome.value for a in attempts] == ["retrying", "failed"]
    assert all(a.status_code is None and "refused" in (a.error or "").lower() for a in attempts)


def test_timeout_is_retried_and_dispatch_never_blocks(
    receiver: Receiver, recorder: InMemoryRecorder
) -> None:
    receiver.hang_s = 1.0
    receiver.fail("hang")
    config = WebhookConfig(
        url=f"{receiver.url}/slow",
        secret=SECRET,
        timeout=0.3,
        backoff_base=0.01,
        backoff_max=0.05,
    )
    with _dispatcher(recorder, config) as dispatcher:
        started = time.perf_counter()
        first = dispatcher.dispatch(WebhookEvent.ALIAS_MOVED, {"n": 1})
        time.sleep(0.05)  # the worker is now stuck on the hanging receiver
        others = [dispatcher.dispatch(WebhookEvent.ALIAS_MOVED, {"n": i}) for i in range(20)]
        assert time.perf_counter() - started < 0.25
        assert dispatcher.flush(10)
    attempts = recorder.attempts(event_id=first)
    assert [a.outcome.value for a in attempts] == ["retrying", "delivered"]
    assert attempts[0].status_code is None and "timeout" in (attempts[0].error or "")
    assert attempts[0].duration_ms >= 250
    for event_id in others:
        assert [a.outcome.value for a in recorder.attempts(event_id=event_id)] == ["delivered"]


def test_bounded_queue_drops_instead_of_blocking(
    receiver: Receiver, recorder: InMemoryRecorder
) -> None:
    receiver.hang_s = 0.5
    receiver.fail("hang")
    config = WebhookConfig(url=f"{receiver.url}/q", secret=SECRET, **FAST)
    with _dispatcher(recorder, config, max_pending=2) as dispatcher:
        ids = [dispatcher.dispatch(WebhookEvent.PROMOTION_DONE, {"i": i}) for i in range(4)]
        assert dispatcher.flush(5)
    outcomes = [[a.outcome.value for a in recorder.attempts(event_id=i)] for i in ids]
    assert outcomes[:2] == [["delivered"], ["delivered"]]
    assert outcomes[2:] == [["failed"], ["failed"]]
    assert "queue full" in (recorder.attempts(event_id=ids[2])[0].error or "")


def test_a_stuck_endpoint_neither_delays_nor_drops_another_endpoints_events(
    receiver: Receiver, recorder: WaitingRecorder
) -> None:
    receiver.by_path["/stuck"] = "block"
    stuck = WebhookConfig(url=f"{receiver.url}/stuck", secret=SECRET, timeout=120, max_attempts=1)
    healthy = WebhookConfig(url=f"{receiver.url}/ok", secret=SECRET, timeout=30)

    def delivered(url: str) -> list[DeliveryAttempt]:
        return [a for a in recorder.attempts(url=url) if a.outcome is DeliveryOutcome.DELIVERED]

    with _dispatcher(recorder, stuck, healthy, max_pending=2) as dispatcher, receiver.holding():
        ids = []
        for i in range(4):
            ids.append(dispatcher.dispatch(WebhookEvent.ALIAS_MOVED, {"i": i}))
            # /stuck holds its first event all along: /ok's arrive regardless
            assert recorder.wait_for(lambda: len(delivered(healthy.url)) == len(ids)), i
        assert not receiver.release.is_set()
        receiver.release.set()
        assert dispatcher.flush(30)
    for event_id in ids:
        (attempt,) = recorder.attempts(event_id=event_id, url=healthy.url)
        assert attempt.outcome is DeliveryOutcome.DELIVERED
    # /stuck's own bound (2: one in flight, one waiting) drops only its later events
    stuck_outcomes = [
        [(a.outcome.value, a.error) for a in recorder.attempts(event_id=i, url=stuck.url)]
        for i in ids
    ]
    assert stuck_outcomes == [
        [("delivered", None)],
        [("delivered", None)],
        [("failed", "dropped: queue full")],
        [("failed", "dropped: queue full")],
    ]


def test_the_timeout_bounds_the_whole_attempt(
    receiver: Receiver, recorder: WaitingRecorder
) -> None:
    # 200 at once, then a byte every 50 ms for ever: every read is quick, the answer never ends
    receiver.by_path["/drip"] = "drip"
    config = WebhookConfig(url=f"{receiver.url}/drip", secret=SECRET, timeout=1.0, max_attempts=1)
    with _dispatcher(recorder, config) as dispatcher, receiver.holding():
        event_id = dispatcher.dispatch(WebhookEvent.ALIAS_MOVED, {})
        assert dispatcher.flush(60)  # a guard: the attempt ends after its 1 s
        assert not receiver.release.is_set()  # while the answer still trickles
    (attempt,) = recorder.attempts(event_id=event_id)
    assert attempt.outcome is DeliveryOutcome.FAILED
    assert attempt.status_code == 200 and "timeout" in (attempt.error or "")


def test_only_the_start_of_a_large_answer_is_read(
    receiver: Receiver, recorder: WaitingRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    # 200 and 1 MiB of body, then nothing until released: only reading it all would wait
    receiver.by_path["/big"] = "big"
    config = WebhookConfig(url=f"{receiver.url}/big", secret=SECRET, timeout=60, max_attempts=1)
    with _dispatcher(recorder, config) as dispatcher, receiver.holding():
        event_id = dispatcher.dispatch(WebhookEvent.ALIAS_MOVED, {})
        assert recorder.wait_for(lambda: recorder.attempts(event_id=event_id))
        assert not receiver.release.is_set()
    (attempt,) = recorder.attempts(event_id=event_id)
    assert attempt.outcome is DeliveryOutcome.DELIVERED and attempt.status_code == 200
    assert "Task was destroyed" not in caplog.text  # the part-read answer's stream is closed


def test_secret_never_recorded_or_logged(
    receiver: Receiver, recorder: InMemoryRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="lineagehub.services.webhooks")
    receiver.fail("500", "500")
    url = f"http://hookuser:{SECRET}@127.0.0.1:{receiver.url.rsplit(':', 1)[1]}/s?key={SECRET}"
    config = WebhookConfig(url=url, secret=SECRET, max_attempts=2, **FAST)
    with _dispatcher(recorder, config) as dispatcher:
        assert SECRET not in repr(dispatcher)
        event_id = dispatcher.dispatch(WebhookEvent.PROMOTION_REQUESTED, {"x": 1})
        assert dispatcher.flush(5)
    attempts = recorder.attempts(event_id=event_id)
    assert [a.outcome.value for a in attempts] == ["retrying", "failed"]
    assert recorder.attempts(url=url) == attempts
    for attempt in attempts:
        assert SECRET not in repr(attempt)
        assert SECRET not in json.dumps(attempt.to_dict())
        assert "hookuser" not in attempt.url
    assert SECRET not in caplog.text
    assert "failed after 2 attempt(s)" in caplog.text
    # the receiver did get the credentials and the query (they are the endpoint's business)
    assert receiver.requests[0].headers["authorization"].startswith("Basic ")


def test_close_stops_worker_and_rejects_new_events(recorder: InMemoryRecorder) -> None:
    config = WebhookConfig(url="http://127.0.0.1:9/x", secret=SECRET, backoff_base=5.0)
    dispatcher = _dispatcher(recorder, config, rng=NoJitter())
    event_id = dispatcher.dispatch(WebhookEvent.ALIAS_MOVED, {})
    started = time.perf_counter()
    dispatcher.close(timeout=0.3)  # the retry is seconds away: give up on it
    assert time.perf_counter() - started < 3
    assert not any(lane.thread and lane.thread.is_alive() for lane in dispatcher._lanes)
    attempts = recorder.attempts(event_id=event_id)
    assert attempts[-1].outcome is DeliveryOutcome.FAILED
    assert "closed" in (attempts[-1].error or "")
    with pytest.raises(RuntimeError):
        dispatcher.dispatch(WebhookEvent.ALIAS_MOVED, {})
    dispatcher.close()  # idempotent


def test_abandoning_a_delivery_keeps_the_record_of_its_last_attempt() -> None:
    store = open_store("sqlite://")
    graph = GraphRecorder(store)
    recorder = WaitingRecorder(also=graph)
    config = WebhookConfig(url="http://127.0.0.1:9/x", secret=SECRET, backoff_base=60.0)
    dispatcher = _dispatcher(recorder, config, rng=NoJitter())
    event_id = dispatcher.dispatch(WebhookEvent.ALIAS_MOVED, {})
    assert recorder.wait_for(lambda: recorder.attempts(event_id=event_id))
    dispatcher.close(timeout=0)  # the retry is a minute away: given up on
    rows = graph.attempts(event_id=event_id)
    store.close()
    assert [(r["attempt"], r["outcome"], r["status_code"]) for r in rows] == [
        (1, "failed", None),
        (1, "retrying", None),
    ]
    abandoned, attempt = rows
    assert abandoned["error"] == "abandoned: dispatcher closed" and abandoned["abandoned"]
    assert attempt["error"].startswith("ConnectError") and attempt["duration_ms"] > 0
    assert attempt["at"] < abandoned["at"]


def test_a_delivery_in_flight_as_the_dispatcher_stops_gets_a_final_record(
    receiver: Receiver, recorder: WaitingRecorder
) -> None:
    receiver.by_path["/busy"] = "block:503"
    config = WebhookConfig(url=f"{receiver.url}/busy", secret=SECRET, **{**FAST, "timeout": 60})
    dispatcher = _dispatcher(recorder, config)
    with receiver.holding():
        event_id = dispatcher.dispatch(WebhookEvent.ALIAS_MOVED, {})
        assert eventually(lambda: receiver.requests)  # the attempt is in flight
        closing = threading.Thread(target=dispatcher.close, kwargs={"timeout": 0})
        closing.start()
        assert eventually(lambda: dispatcher._stop)  # the sender is told to stop
        receiver.release.set()  # then the attempt ends, in a 503 it would retry
        closing.join(30)
        assert not closing.is_alive()
    attempts = recorder.attempts(event_id=event_id)
    assert [(a.attempt, a.outcome.value, a.status_code, a.error) for a in attempts] == [
        (1, "retrying", 503, "HTTP 503"),
        (1, "failed", None, "abandoned: dispatcher closed"),
    ]
    assert len(receiver.requests) == 1
