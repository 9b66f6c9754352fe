"""Outgoing webhooks: registry events POSTed as signed JSON to configured URLs.

::

    dispatcher = WebhookDispatcher(
        [WebhookConfig(url="https://ci.example/hooks", secret="s3cret", events={"alias.moved"})],
        recorder=InMemoryRecorder(),
    )
    event_id = dispatcher.dispatch(WebhookEvent.ALIAS_MOVED, {"alias": "prod", "version": 3})
    ...
    dispatcher.close()

Body (UTF-8 JSON)::

    {"id": "<event uuid>", "event": "alias.moved", "created_at": "<ISO 8601 UTC>", "data": {...}}

Headers: ``Content-Type: application/json``, ``X-LineageHub-Event`` (the event name),
``X-LineageHub-Delivery`` (one id per event and endpoint, the same on every retry: receivers
deduplicate on it) and ``X-LineageHub-Signature: t=<unix seconds>,v1=<hex>``, where ``v1`` is
HMAC-SHA256 with the endpoint's secret over ``f"{t}."`` followed by the raw body. Receivers
check it with :func:`verify_signature`, which also rejects timestamps older than a tolerance
(replays). The timestamp is fresh on every attempt.

Each endpoint has its own queue and background thread, so a slow or broken receiver delays
and fills only its own: :meth:`WebhookDispatcher.dispatch` only enqueues (it never blocks,
never raises for a slow or broken receiver) and returns the event id. A 2xx answer is
success; only the first :data:`ANSWER_READ_LIMIT` bytes of its body are read. An endpoint's
``timeout`` bounds each whole attempt (connecting, sending, the answer and that much of its
body): an answer still arriving then is a timeout. Connection errors, timeouts, 429 and 5xx
are retried up to ``max_attempts`` with exponential back-off and full jitter (a
``Retry-After`` in seconds or as an HTTP date is honoured, capped at ``backoff_max``); other
answers fail at once. Every attempt is handed to a :class:`DeliveryRecorder` as a
:class:`DeliveryAttempt` (outcome ``delivered``, ``retrying`` or ``failed``). URLs in attempts
and logs carry no user info and no query values; secrets never appear in reprs, logs or
attempts.

A hub hands its services an :class:`Outbox`: each event is kept in the graph store with the
change that raised it, and a hub's start sends again what a crash or a shutdown left
undelivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Protocol, cast, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from lineagehub.graph import GraphStore, Node
from lineagehub.graph.errors import ConfigError
from lineagehub.graph.model import to_iso
from lineagehub.graph.store import nested_transaction

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-LineageHub-Signature"
EVENT_HEADER = "X-LineageHub-Event"
DELIVERY_HEADER = "X-LineageHub-Delivery"
DEFAULT_TOLERANCE_S = 300
DEFAULT_QUEUE_SIZE = 1000
#: How much of an answer's body is read: only its status counts, so the rest is left unread
#: (the connection is closed) and a receiver answering gigabytes costs nothing.
ANSWER_READ_LIMIT = 64 * 1024


class WebhookEvent(str, enum.Enum):
    """The registry events a webhook can subscribe to."""

    MODEL_VERSION_CREATED = "model_version.created"
    PROMOTION_REQUESTED = "promotion.requested"
    PROMOTION_APPROVED = "promotion.approved"
    PROMOTION_REJECTED = "promotion.rejected"
    PROMOTION_DONE = "promotion.done"
    #: A promotion or approval refused by policy (nothing changed; the audit log has it).
    PROMOTION_REFUSED = "promotion.refused"
    ALIAS_MOVED = "alias.moved"
    #: A stage rolled back: every version it moved (an alias's rollback is ``alias.moved``).
    STAGE_ROLLED_BACK = "stage.rolled_back"
    DEPLOYMENT_RECORDED = "deployment.recorded"
    #: A deployment retired: by retireDeployment, or by a stage change (on_deployments).
    DEPLOYMENT_RETIRED = "deployment.retired"
    #: A monitoring alert fired or resolved: the body is Alertmanager's webhook body
    #: (version 4) with a ``lineage`` block, and this envelope's id, event and created_at.
    ALERT_FIRING = "alert.firing"
    ALERT_RESOLVED = "alert.resolved"

    def __str__(self) -> str:
        return self.value


_ALERT_EVENTS = (WebhookEvent.ALERT_FIRING, WebhookEvent.ALERT_RESOLVED)


class DeliveryOutcome(str, enum.Enum):
    DELIVERED = "delivered"
    RETRYING = "retrying"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


def _event(value: WebhookEvent | str) -> WebhookEvent:
    try:
        return WebhookEvent(value)
    except ValueError:
        names = ", ".join(e.value for e in WebhookEvent)
        raise ConfigError(f"unknown webhook event {value!r} (known: {names})") from None


class _RedactedRequestLog(logging.Filter):
    """httpx logs every request's full URL at INFO ("HTTP Request: POST http://user:pw@..."):
    a webhook's URL may carry credentials or a token in its query, so the URL is shown as
    :func:`redact_url` shows it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(
                redact_url(str(a)) if isinstance(a, httpx.URL) else a for a in record.args
            )
        return True


_HTTPX_LOG_FILTER = _RedactedRequestLog()


def _redact_httpx_log() -> None:
    logger = logging.getLogger("httpx")
    if _HTTPX_LOG_FILTER not in logger.filters:
        logger.addFilter(_HTTPX_LOG_FILTER)


def redact_url(url: str) -> str:
    """``url`` without user info, fragment or query values (query keys are kept)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
    except ValueError:
        return "<invalid url>"
    query = urlencode([(k, "***") for k, _ in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _secret_bytes(secret: bytes | str) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


@dataclass(frozen=True, repr=False)
class WebhookConfig:
    """One endpoint: where to POST, how to sign, which events, how hard to retry.

    ``events`` is a set of event names (or :class:`WebhookEvent`) or ``"*"`` for all.
    ``secret`` is kept as bytes; ``repr`` shows neither it nor the URL's credentials.
    ``timeout`` is in seconds, for the whole of one attempt.
    """

    url: str
    secret: bytes | str = field(repr=False)
    events: frozenset[WebhookEvent] | str = "*"
    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    timeout: float = 10.0

    def __post_init__(self) -> None:
        try:
            parts = urlsplit(self.url)
            port = parts.port  # raises on a malformed port
        except ValueError as e:
            raise ConfigError(f"invalid webhook URL {redact_url(self.url)!r}: {e}") from None
        del port
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"webhook URL must be http:// or https:// with a host, got {redact_url(self.url)!r}"
            )
        secret = _secret_bytes(self.secret)
        if not secret:
            raise ConfigError("webhook secret must not be empty")
        object.__setattr__(self, "secret", secret)
        if isinstance(self.events, str):
            if self.events != "*":
                object.__setattr__(self, "events", frozenset({_event(self.events)}))
        else:
            events = frozenset(_event(e) for e in self.events)
            if not events:
                raise ConfigError("webhook events must not be empty (use '*' for all)")
            object.__setattr__(self, "events", events)
        if self.max_attempts < 1:
            raise ConfigError("webhook max_attempts must be at least 1")
        if self.backoff_base < 0 or self.backoff_max < 0:
            raise ConfigError("webhook back-off must not be negative")
        if self.timeout <= 0:
            raise ConfigError("webhook timeout must be positive")

    def __repr__(self) -> str:
        events = "*" if self.events == "*" else sorted(str(e) for e in self.events)
        return (
            f"WebhookConfig(url={self.safe_url!r}, events={events!r}, "
            f"max_attempts={self.max_attempts}, backoff_base={self.backoff_base}, "
            f"backoff_max={self.backoff_max}, timeout={self.timeout})"
        )

    @property
    def safe_url(self) -> str:
        """The URL as logs and attempts show it (see :func:`redact_url`)."""
        return redact_url(self.url)

    def matches(self, event: WebhookEvent | str) -> bool:
        return self.events == "*" or WebhookEvent(event) in self.events

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential,
        capped at ``backoff_max``, with full jitter."""
        cap = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return (rng or random).uniform(0.0, cap)


# --- signatures -------------------------------------------------------------------------------


def _mac(secret: bytes | str, body: bytes, timestamp: int) -> str:
    message = f"{timestamp}.".encode() + body
    return hmac.new(_secret_bytes(secret), message, hashlib.sha256).hexdigest()


def sign(secret: bytes | str, body: bytes, timestamp: int) -> str:
    """The ``X-LineageHub-Signature`` value: ``t=<unix>,v1=<hex HMAC-SHA256>``."""
    return f"t={int(timestamp)},v1={_mac(secret, body, int(timestamp))}"


def verify_signature(
    secret: bytes | str,
    body: bytes,
    header: str | None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` at a timestamp within
    ``tolerance_s`` of ``now`` (default: the clock). Comparison is constant-time; several
    ``v1=`` entries are allowed (any may match)."""
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = _mac(secret, body, timestamp)
    ok = False
    for candidate in candidates:
        ok |= hmac.compare_digest(expected.encode(), candidate.encode("utf-8", "replace"))
    return ok


# --- attempts and recorders -------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST of one event to one endpoint."""

    delivery_id: str
    event_id: str
    event: WebhookEvent
    url: str  # redacted: no user info, no query values
    attempt: int  # 1-based
    at: datetime  # when the attempt started (UTC)
    status_code: int | None
    error: str | None
    duration_ms: float
    outcome: DeliveryOutcome
    #: Not an attempt: the delivery given up on as the dispatcher closed, after ``attempt``
    #: attempts (a record of its own, beside theirs).
    abandoned: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "event_id": self.event_id,
            "event": self.event.value,
            "url": self.url,
            "attempt": self.attempt,
            "at": self.at.isoformat(),
            "status_code": self.status_code,
            "error": self.error,
            "duration_ms": self.duration_ms,
            "outcome": self.outcome.value,
            "abandoned": self.abandoned,
        }


@runtime_checkable
class DeliveryRecorder(Protocol):
    """Where attempts go (:class:`GraphRecorder`: the graph store). Called from the
    dispatcher's worker threads (one per endpoint) at once: it must be thread-safe."""

    def record(self, attempt: DeliveryAttempt) -> None: ...


class InMemoryRecorder:
    """A thread-safe list of attempts, in the order they were recorded."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts: list[DeliveryAttempt] = []

    def record(self, attempt: DeliveryAttempt) -> None:
        with self._lock:
            self._attempts.append(attempt)

    def attempts(
        self, event_id: str | None = None, url: str | None = None
    ) -> list[DeliveryAttempt]:
        """Recorded attempts, optionally for one event and/or one endpoint (``url`` is
        compared in its redacted form, so the configured URL works)."""
        wanted_url = redact_url(url) if url is not None else None
        with self._lock:
            return [
                a
                for a in self._attempts
                if (event_id is None or a.event_id == event_id)
                and (wanted_url is None or a.url == wanted_url)
            ]


# --- dispatcher -------------------------------------------------------------------------------


@dataclass
class _Delivery:
    delivery_id: str
    event_id: str
    event: WebhookEvent
    body: bytes
    config: WebhookConfig
    attempt: int = 0  # attempts made so far


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _retryable_status(status: int) -> bool:
    return status == 429 or 500 <= status <= 599


def endpoint_key(url: str) -> str:
    """What the outbox keeps of an endpoint: a digest of its whole URL (which may hold a
    token: Slack's, Teams')."""
    return "sha256:" + hashlib.sha256(url.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PreparedEvent:
    """An event's body and its deliveries (delivery id, :func:`endpoint_key`)."""

    event_id: str
    event: WebhookEvent
    body: bytes
    created_at: datetime
    deliveries: tuple[tuple[str, str], ...]

    def to_node(self) -> Node:
        return Node(
            f"webhook-event:{self.event_id}",
            OUTBOX_LABEL,
            {
                "event": self.event.value,
                "created_at": to_iso(self.created_at),
                "body": self.body.decode("utf-8"),
                "deliveries": [{"id": d, "endpoint": e} for d, e in self.deliveries],
            },
        )

    @classmethod
    def from_node(cls, node: Node) -> PreparedEvent:
        props = node.props
        return cls(
            node.id.removeprefix("webhook-event:"),
            WebhookEvent(props["event"]),
            str(props["body"]).encode("utf-8"),
            datetime.fromisoformat(str(props["created_at"])),
            tuple((str(d["id"]), str(d["endpoint"])) for d in props.get("deliveries") or ()),
        )


class _Lane:
    """One endpoint's queue and worker thread: a slow or broken endpoint holds up, and fills
    the queue of, only its own deliveries."""

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self.heap: list[tuple[float, int, _Delivery]] = []
        self.pending = 0  # queued + in flight
        self.in_flight: _Delivery | None = None
        self.thread: threading.Thread | None = None
        # The sender's attempts run on an event loop of its own, so a deadline can end one
        # wherever it is: httpx's timeouts are per read, and an answer sent a byte at a time
        # never trips them. Only the sender's thread runs it.
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(follow_redirects=False)


class WebhookDispatcher:
    """Delivers events to every matching :class:`WebhookConfig`, each endpoint from its own
    background thread.

    ``max_pending`` bounds the deliveries (events) waiting or being retried for one endpoint;
    when it is reached, that endpoint's new deliveries are dropped (logged, and recorded as a
    ``failed`` attempt 0) rather than blocking the caller. Other endpoints are not affected.
    """

    def __init__(
        self,
        configs: Iterable[WebhookConfig],
        *,
        recorder: DeliveryRecorder,
        max_pending: int = DEFAULT_QUEUE_SIZE,
        rng: random.Random | None = None,
    ) -> None:
        if max_pending < 1:
            raise ConfigError("webhook max_pending must be at least 1")
        self.configs: tuple[WebhookConfig, ...] = tuple(configs)
        self.recorder = recorder
        self.max_pending = max_pending
        _redact_httpx_log()
        self._rng = rng or random.Random()
        self._cond = threading.Condition()
        self._lanes = [_Lane(config) for config in self.configs]
        self._seq = itertools.count()
        self._closed = False
        self._stop = False
        for i, lane in enumerate(self._lanes):
            lane.thread = threading.Thread(
                target=self._run, args=(lane,), name=f"lineagehub-webhooks-{i}", daemon=True
            )
            lane.thread.start()

    def __repr__(self) -> str:
        return f"WebhookDispatcher(configs={list(self.configs)!r}, pending={self._pending()})"

    def _pending(self) -> int:
        return sum(lane.pending for lane in self._lanes)

    # -- public API

    def dispatch(self, event: WebhookEvent | str, payload: Mapping[str, Any]) -> str:
        """Queue ``event`` with ``payload`` (JSON-serialisable; other values become strings)
        for every matching endpoint; returns the event id at once."""
        prepared = self.prepare(event, payload)
        with self._cond:
            if self._closed:
                raise RuntimeError("the webhook dispatcher is closed")
        self.enqueue(prepared)
        return prepared.event_id

    def prepare(self, event: WebhookEvent | str, payload: Mapping[str, Any]) -> PreparedEvent:
        """The body of ``event`` and a delivery id for each matching endpoint, queued by
        :meth:`enqueue` (after they are kept: :class:`Outbox`)."""
        name = _event(event)
        event_id = str(uuid.uuid4())
        created_at = datetime.now(timezone.utc)
        envelope = {"id": event_id, "event": name.value, "created_at": created_at.isoformat()}
        # Alert events are Alertmanager-shaped, so its receivers take them as they are.
        content = (
            {**payload, **envelope}
            if name in _ALERT_EVENTS
            else {**envelope, "data": dict(payload)}
        )
        body = json.dumps(
            content,
            default=str,
            separators=(",", ":"),
        ).encode("utf-8")
        deliveries = tuple(
            (str(uuid.uuid4()), endpoint_key(c.url)) for c in self.configs if c.matches(name)
        )
        return PreparedEvent(event_id, name, body, created_at, deliveries)

    def enqueue(self, prepared: PreparedEvent, attempts: Mapping[str, int] | None = None) -> int:
        """Queue the deliveries of ``prepared`` whose endpoint is configured (``attempts``:
        how many each made before, for a delivery taken up again); the number queued. After
        :meth:`close`, nothing: an event kept in the outbox goes at the next start."""
        dropped: list[_Delivery] = []
        queued = 0
        with self._cond:
            if self._closed:
                log.warning("webhook dispatcher closed: %s not queued", prepared.event.value)
                return 0
            lanes: dict[str, list[_Lane]] = {}
            for lane in self._lanes:  # one URL configured twice: its lanes in order
                if lane.config.matches(prepared.event):
                    lanes.setdefault(endpoint_key(lane.config.url), []).append(lane)
            for delivery_id, endpoint in prepared.deliveries:
                if not lanes.get(endpoint):  # an endpoint configured no more
                    continue
                lane = lanes[endpoint].pop(0)
                delivery = _Delivery(
                    delivery_id,
                    prepared.event_id,
                    prepared.event,
                    prepared.body,
                    lane.config,
                    (attempts or {}).get(delivery_id, 0),
                )
                if lane.pending >= self.max_pending:
                    dropped.append(delivery)
                    continue
                lane.pending += 1
                queued += 1
                heapq.heappush(lane.heap, (time.monotonic(), next(self._seq), delivery))
            self._cond.notify_all()
        for delivery in dropped:
            log.warning(
                "webhook queue full: dropped %s for %s",
                delivery.event.value,
                delivery.config.safe_url,
            )
            self._record(delivery, datetime.now(timezone.utc), None, "dropped: queue full", 0.0)
        return queued

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued delivery (retries included) is finished; ``False`` if
        ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop accepting events, finish what is queued for up to ``timeout`` seconds, then
        stop the workers: an attempt in flight may take its endpoint's timeout to end.
        Deliveries not done then (waiting, or whose attempt in flight fails) get a ``failed``
        record of their own, ``abandoned: dispatcher closed``; a hub's :class:`Outbox` sends
        them again at its next start."""
        threads = [lane.thread for lane in self._lanes if lane.thread is not None]
        with self._cond:
            if self._closed and not any(t.is_alive() for t in threads):
                return
            self._closed = True
        self.flush(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        # An attempt ends by its endpoint's timeout; then it is recorded.
        grace = time.monotonic() + max((c.timeout for c in self.configs), default=0) + 5.0
        for thread in threads:
            thread.join(timeout=max(0.0, grace - time.monotonic()))
        abandoned: list[_Delivery] = []
        with self._cond:
            for lane in self._lanes:
                if lane.in_flight is not None:  # stuck past its timeout (its recorder?)
                    abandoned.append(lane.in_flight)
                    lane.in_flight = None
                    lane.pending -= 1
                abandoned += [d for _, _, d in lane.heap]
                lane.pending -= len(lane.heap)
                lane.heap.clear()
            self._cond.notify_all()
        for delivery in abandoned:
            self._abandon(delivery)

    def __enter__(self) -> WebhookDispatcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- workers

    def _run(self, lane: _Lane) -> None:
        try:
            self._serve(lane)
        finally:
            loop = lane.loop
            loop.run_until_complete(lane.client.aclose())
            # An answer left part-read leaves httpx's chain of stream generators for the loop
            # to close, one after another: they finish before the loop closes.
            while pending := asyncio.all_tasks(loop):
                loop.run_until_complete(asyncio.wait(pending))
            loop.close()

    def _serve(self, lane: _Lane) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stop:
                        return
                    now = time.monotonic()
                    if lane.heap and lane.heap[0][0] <= now:
                        _, _, delivery = heapq.heappop(lane.heap)
                        lane.in_flight = delivery
                        break
                    self._cond.wait(lane.heap[0][0] - now if lane.heap else None)
            retry_in: float | None = None
            try:
                retry_in = self._attempt(lane, delivery)
            except Exception:  # pragma: no cover - a bug; keep the worker alive
                log.exception("webhook delivery to %s crashed", delivery.config.safe_url)
            abandon = False
            with self._cond:
                if lane.in_flight is delivery:  # else close() gave up on it already
                    lane.in_flight = None
                    if retry_in is not None and not self._stop:
                        due = time.monotonic() + retry_in
                        heapq.heappush(lane.heap, (due, next(self._seq), delivery))
                    else:
                        lane.pending -= 1
                        abandon = retry_in is not None
                self._cond.notify_all()
            if abandon:  # the dispatcher stopped while the attempt was in flight
                self._abandon(delivery)

    def _attempt(self, lane: _Lane, delivery: _Delivery) -> float | None:
        """POST once, all of it within the endpoint's timeout; record the attempt; return
        seconds until the retry, or ``None``."""
        config = delivery.config
        delivery.attempt += 1
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "LineageHub-Webhooks",
            EVENT_HEADER: delivery.event.value,
            DELIVERY_HEADER: delivery.delivery_id,
            SIGNATURE_HEADER: sign(config.secret, delivery.body, int(time.time())),
        }
        started_at = datetime.now(timezone.utc)
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        retry_after: float | None = None
        answers: list[httpx.Response] = []
        try:
            post = self._post(lane.client, config, delivery.body, headers, answers)
            lane.loop.run_until_complete(asyncio.wait_for(post, config.timeout))
            status = answers[0].status_code
            if not 200 <= status <= 299:
                error = f"HTTP {status}"
                retry_after = _retry_after(answers[0].headers.get("Retry-After"))
            retryable = _retryable_status(status)
        except asyncio.TimeoutError:
            status = answers[0].status_code if answers else None
            error, retryable = f"timeout: no whole answer within {config.timeout:g} s", True
        except httpx.TimeoutException as e:
            error, retryable = f"timeout: {type(e).__name__}", True
        except httpx.TransportError as e:
            error, retryable = self._error_text(e, config), True
        except httpx.HTTPError as e:  # invalid URL and the like: retrying will not help
            error, retryable = self._error_text(e, config), False
        duration_ms = (time.perf_counter() - started) * 1000.0
        if error is None:
            self._record(delivery, started_at, status, None, duration_ms)
            return None
        if not retryable or delivery.attempt >= config.max_attempts:
            self._record(delivery, started_at, status, error, duration_ms)
            log.warning(
                "webhook %s to %s failed after %d attempt(s): %s",
                delivery.event.value,
                config.safe_url,
                delivery.attempt,
                error,
            )
            return None
        self._record(delivery, started_at, status, error, duration_ms, retrying=True)
        delay = config.backoff(delivery.attempt, self._rng)
        if retry_after is not None:
            delay = min(retry_after, config.backoff_max)
        return delay

    @staticmethod
    async def _post(
        client: httpx.AsyncClient,
        config: WebhookConfig,
        body: bytes,
        headers: dict[str, str],
        answers: list[httpx.Response],
    ) -> None:
        """POST ``body``; the answer (its status and headers) goes into ``answers`` as soon as
        it starts, then at most :data:`ANSWER_READ_LIMIT` bytes of its body are read."""
        async with client.stream(
            "POST", config.url, content=body, headers=headers, timeout=config.timeout
        ) as response:
            answers.append(response)
            read = 0
            chunks = cast(AsyncGenerator[bytes, None], response.aiter_raw())
            try:
                async for chunk in chunks:
                    read += len(chunk)
                    if read >= ANSWER_READ_LIMIT:
                        break
            finally:
                await chunks.aclose()

    @staticmethod
    def _error_text(exc: Exception, config: WebhookConfig) -> str:
        text = f"{type(exc).__name__}: {exc}"
        # anyio says "All connection attempts failed": the reason is the first cause
        root: BaseException = exc
        for _ in range(10):  # bounded: a chain built by hand may loop
            cause = root.__cause__ or root.__context__
            if cause is None:
                break
            root = cause
        if root is not exc and str(root) not in text:
            text += f" ({type(root).__name__}: {root})"
        if config.url in text:
            text = text.replace(config.url, config.safe_url)
        secret = config.secret
        if isinstance(secret, bytes):
            with contextlib.suppress(UnicodeDecodeError):
                decoded = secret.decode("utf-8")
                if decoded:
                    text = text.replace(decoded, "***")
        return text

    def _abandon(self, delivery: _Delivery) -> None:
        self._record(
            delivery,
            datetime.now(timezone.utc),
            None,
            "abandoned: dispatcher closed",
            0.0,
            abandoned=True,
        )

    def _record(
        self,
        delivery: _Delivery,
        at: datetime,
        status: int | None,
        error: str | None,
        duration_ms: float,
        *,
        retrying: bool = False,
        abandoned: bool = False,
    ) -> None:
        if error is None:
            outcome = DeliveryOutcome.DELIVERED
        elif retrying:
            outcome = DeliveryOutcome.RETRYING
        else:
            outcome = DeliveryOutcome.FAILED
        attempt = DeliveryAttempt(
            delivery_id=delivery.delivery_id,
            event_id=delivery.event_id,
            event=delivery.event,
            url=delivery.config.safe_url,
            attempt=delivery.attempt,
            at=at,
            status_code=status,
            error=error,
            duration_ms=round(duration_ms, 3),
            outcome=outcome,
            abandoned=abandoned,
        )
        try:
            self.recorder.record(attempt)
        except Exception:
            log.exception("recording a webhook attempt to %s failed", attempt.url)


# --- hub events and their recording -----------------------------------------------------------

#: What the hub's services call once a change has committed: ``on_event(event, payload)``.
EventSink = Callable[[str, dict[str, Any]], object]

#: The graph label of recorded delivery attempts (outside the lineage vocabulary).
DELIVERY_LABEL = "WebhookDelivery"


class _Pending(threading.local):
    depth: int = 0
    events: list[tuple[str, dict[str, Any]]]

    def __init__(self) -> None:
        self.events = []


class AfterCommit:
    """Events raised inside a service's (possibly nested) transactions, handed to ``sink``
    only once the outermost one has committed: a rolled-back change sends nothing. A sink
    that raises is logged, never propagated (the change has happened). A service call made
    inside a caller's own ``store.transaction()`` (a batch) sends when that transaction
    commits, and nothing if it rolls back (:meth:`GraphStore.after_commit`)."""

    def __init__(self, store: GraphStore, sink: EventSink | None) -> None:
        self.store = store
        self.sink = sink
        self._local = _Pending()

    def transaction(self) -> AbstractContextManager[None]:
        """A store transaction whose events are sent once the outermost one commits."""
        return nested_transaction(self._local, self._outermost)

    @contextmanager
    def _outermost(self) -> Iterator[None]:
        local = self._local
        local.events = []
        kept: list[PreparedEvent] = []
        try:
            with self.store.transaction():
                yield
                events, local.events = local.events, []
                if events and isinstance(self.sink, Outbox):  # kept with the change
                    kept = [self.sink.keep(event, payload) for event, payload in events]
        except BaseException:
            local.events = []
            raise
        # now, or when a caller's own transaction around the call commits
        if kept:
            outbox = self.sink
            assert isinstance(outbox, Outbox)
            self.store.after_commit(lambda: self._guarded("queueing", outbox.send, kept))
        elif events:
            self.store.after_commit(lambda: self._send_all(events))

    def _send_all(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        for event, payload in events:
            self._send(event, payload)

    @staticmethod
    def _guarded(what: str, fn: Callable[[Any], object], arg: Any) -> None:
        try:
            fn(arg)
        except Exception:
            log.exception("%s webhook events failed", what)

    def emit(self, event: WebhookEvent | str, payload: Mapping[str, Any]) -> None:
        """Send ``event`` after the current transaction commits (at once outside one)."""
        if self.sink is None:
            return
        name = _event(event).value
        if self._local.depth:
            self._local.events.append((name, dict(payload)))
        else:
            self._send(name, dict(payload))

    def _send(self, event: str, payload: dict[str, Any]) -> None:
        assert self.sink is not None
        try:
            self.sink(event, payload)
        except Exception:
            log.exception("handing the %s event to its sink failed", event)


#: The graph label of events kept for delivery (:class:`Outbox`), outside the vocabulary.
OUTBOX_LABEL = "WebhookOutbox"
#: How far back a hub's start looks for deliveries a crash or a shutdown left unfinished.
REDELIVER_WITHIN = timedelta(hours=24)


class Outbox:
    """The event sink of a hub with webhooks: each event is kept in the graph store (a
    ``WebhookOutbox`` node holding its body and its deliveries' ids) in the same transaction
    as the change that raised it, and queued once that commits. A process killed between the
    commit and the delivery, or stopped with deliveries waiting, loses none of them:
    :meth:`redeliver` (at a server's start) queues again every delivery of the last
    :data:`REDELIVER_WITHIN` that has no final record (``delivered``, or ``failed`` other
    than abandoned), under its own delivery id and attempt count. At least once: a receiver
    deduplicates on ``X-LineageHub-Delivery`` (several workers starting at once each take
    them up)."""

    def __init__(self, store: GraphStore, dispatcher: WebhookDispatcher) -> None:
        self.store = store
        self.dispatcher = dispatcher

    def __call__(self, event: str, payload: dict[str, Any]) -> str:
        """An event raised outside a transaction: kept, then queued."""
        with self.store.transaction():
            prepared = self.keep(event, payload)
        self.send([prepared])
        return prepared.event_id

    def keep(self, event: WebhookEvent | str, payload: Mapping[str, Any]) -> PreparedEvent:
        """Write the event (inside the caller's transaction) when some endpoint takes it."""
        prepared = self.dispatcher.prepare(event, payload)
        if prepared.deliveries:
            self.store.upsert_nodes([prepared.to_node()])
        return prepared

    def send(self, events: Iterable[PreparedEvent]) -> None:
        for prepared in events:
            self.dispatcher.enqueue(prepared)

    def redeliver(self, now: datetime | None = None) -> int:
        """Queue what the last :data:`REDELIVER_WITHIN` left undelivered; the number queued.
        Two passes over that window, one of the attempts recorded (to find the deliveries
        done, and the attempts each made), one of the events kept."""
        since = to_iso((now or datetime.now(timezone.utc)) - REDELIVER_WITHIN)
        recent = {"_created_at": {"$gte": since}}
        attempts: dict[str, int] = {}
        done: set[str] = set()
        for node in self.store.iter_nodes(DELIVERY_LABEL, recent, ["_created_at"]):
            props = node.props
            delivery = str(props.get("delivery_id"))
            attempt = props.get("attempt")
            if isinstance(attempt, int):
                attempts[delivery] = max(attempts.get(delivery, 0), attempt)
            final = props.get("outcome") == DeliveryOutcome.DELIVERED.value or (
                props.get("outcome") == DeliveryOutcome.FAILED.value and not props.get("abandoned")
            )
            if final:
                done.add(delivery)
        queued = 0
        for node in self.store.iter_nodes(OUTBOX_LABEL, recent, ["_created_at"]):
            prepared = PreparedEvent.from_node(node)
            left = tuple(d for d in prepared.deliveries if d[0] not in done)
            if left:
                again = PreparedEvent(
                    prepared.event_id, prepared.event, prepared.body, prepared.created_at, left
                )
                queued += self.dispatcher.enqueue(again, attempts)
        return queued


class GraphRecorder:
    """Records attempts as ``WebhookDelivery`` nodes in the graph store (id
    ``delivery:<delivery id>:<attempt>``, and ``delivery:<delivery id>:abandoned`` for a
    delivery given up on), so they outlive the process and the API lists them
    (:meth:`attempts`)."""

    def __init__(self, store: GraphStore) -> None:
        self.store = store

    def record(self, attempt: DeliveryAttempt) -> None:
        number = "abandoned" if attempt.abandoned else attempt.attempt
        node_id = f"delivery:{attempt.delivery_id}:{number}"
        props = {**attempt.to_dict(), "at": to_iso(attempt.at, "at")}  # sortable text
        self.store.upsert_nodes([Node(node_id, DELIVERY_LABEL, props)])

    def attempts(
        self, event_id: str | None = None, url: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Recorded attempts (as :meth:`DeliveryAttempt.to_dict`), newest first."""
        where: dict[str, Any] = {}
        if event_id is not None:
            where["event_id"] = event_id
        if url is not None:
            where["url"] = redact_url(url)
        page = self.store.find_nodes(
            DELIVERY_LABEL, where or None, ["-at", "-attempt", "-id"], limit=limit
        )
        return [dict(n.props) for n in page.items]


def parse_webhooks(value: str | Iterable[Mapping[str, Any]] | None) -> list[WebhookConfig]:
    """Endpoints from JSON (``[{"url", "secret", "events", "max_attempts", ...}]``) or from
    a list of mappings; ``ConfigError`` names what is wrong (never the secret)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            items = json.loads(value)
        except json.JSONDecodeError as e:
            raise ConfigError(f"webhooks must be a JSON list: {e.msg}") from None
    else:
        items = list(value)
    if not isinstance(items, list):
        raise ConfigError("webhooks must be a JSON list of objects")
    known = {
        "url",
        "secret",
        "events",
        "max_attempts",
        "backoff_base",
        "backoff_max",
        "timeout",
    }
    configs: list[WebhookConfig] = []
    for i, item in enumerate(items):
        if isinstance(item, WebhookConfig):
            configs.append(item)
            continue
        if not isinstance(item, Mapping):
            raise ConfigError(f"webhooks[{i}] must be an object")
        unknown = sorted(set(item) - known)
        if unknown:
            raise ConfigError(f"webhooks[{i}]: unknown keys {unknown}")
        if "url" not in item or "secret" not in item:
            raise ConfigError(f"webhooks[{i}] needs a url and a secret")
        kwargs = dict(item)
        events = kwargs.get("events", "*")
        if isinstance(events, list):
            kwargs["events"] = frozenset(events)
        try:
            configs.append(WebhookConfig(**kwargs))
        except TypeError:
            raise ConfigError(f"webhooks[{i}] has a value of the wrong type") from None
    return configs


__all__ = [
    "DELIVERY_HEADER",
    "DELIVERY_LABEL",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "AfterCommit",
    "DeliveryAttempt",
    "DeliveryOutcome",
    "DeliveryRecorder",
    "EventSink",
    "GraphRecorder",
    "InMemoryRecorder",
    "WebhookConfig",
    "WebhookDispatcher",
    "WebhookEvent",
    "parse_webhooks",
    "redact_url",
    "sign",
    "verify_signature",
]
