"""Talking to a hub server over HTTP: one connection with timeouts, retries and the server's
errors as LineageHub's exceptions, and the hub's artifact store over its ``/artifacts`` routes.

- A server that cannot be reached, or answers 503, is a
  :class:`~lineagehub.graph.BackendUnavailable` (retryable). Calls that are safe to repeat are
  retried with exponential back-off first; the others only when the request provably never
  left (the connection could not be made), and a caller can reconcile a retry whose first
  attempt did arrive (see :meth:`HubConnection.graphql`).
- An error the server sends is the same exception the embedded services raise: a
  ``NOT_FOUND`` is a :class:`~lineagehub.graph.NotFoundError` with its ``ids``, a
  ``VALIDATION`` a :class:`~lineagehub.graph.ValidationError` naming the same field.
- Artifact bytes never travel inside GraphQL: they stream to ``PUT /artifacts`` (never read
  whole into memory) and back from ``GET /artifacts/{digest}``, verified against their digest
  while they are read (:class:`~lineagehub.graph.IntegrityError` on a mismatch). Content the
  server already has is not uploaded again (``HEAD`` first).

:mod:`lineagehub.ingest.remote` builds the SDK's remote backend on these.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import os
import random
import re
import socket
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO, cast
from urllib.parse import urlsplit

import httptools
import httpx
import orjson

from lineagehub import __version__
from lineagehub.artifacts import (
    CHUNK_SIZE,
    ArtifactInfo,
    ArtifactStore,
    _local_file,
    _LocalFileReader,
    _open_local,
    _VerifyingReader,
    digest_bytes,
    hash_file,
    validate_digest,
)
from lineagehub.graph.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    ConflictError,
    HubError,
    IntegrityError,
    NotFoundError,
    PermissionDenied,
    PolicyViolation,
    ValidationError,
)
from lineagehub.graph.model import fast_load, only_of
from lineagehub.graph.store import INHERITED
from lineagehub.services.registry import RuleBroken

#: Seconds to wait: for a connection, and for each read or write on it.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
#: Retries of a retryable call (after the first attempt), and the first back-off delay, which
#: doubles each time (with jitter) up to MAX_BACKOFF.
DEFAULT_RETRIES = 5
DEFAULT_BACKOFF = 0.2
MAX_BACKOFF = 5.0
#: ``put_bytes`` asks whether the hub has content above this size before uploading it.
HEAD_FIRST_BYTES = 256 * 1024


# --------------------------------------------------------------------------- errors


def _rule(rule: Any) -> Any:
    """A broken rule as the server raised it (a :class:`RuleBroken`), where it is one."""
    if isinstance(rule, Mapping) and {"rule", "message"} <= set(rule):
        return RuleBroken(
            str(rule["rule"]), str(rule["message"]), rule.get("expected"), rule.get("actual")
        )
    return rule


def hub_error(error: Mapping[str, Any], *, status: int | None = None) -> HubError:
    """The LineageHub exception for an error the server sent: a GraphQL error (``message``
    and ``extensions``) or an ``{"code", "message", ...}`` object of the artifact routes."""
    ext = error.get("extensions")
    info: Mapping[str, Any] = ext if isinstance(ext, Mapping) else error
    message = str(error.get("message") or f"the hub answered HTTP {status}")
    code = str(info.get("code") or _STATUS_CODES.get(status or 0, "INTERNAL"))
    if code == "NOT_FOUND":
        return NotFoundError(message, ids=[str(i) for i in info.get("ids") or ()])
    if code == "PAYLOAD_TOO_LARGE":
        return ValidationError(
            f"{message}: the server's limit (LINEAGEHUB_MAX_REQUEST_BYTES on the server); send "
            "less at once (a batch: split it into several)",
            field="body",
        )
    if code == "VALIDATION":
        field = info.get("field")
        return ValidationError(message, field=str(field) if field is not None else None)
    if code == "GRAPHQL_VALIDATION":
        # the request's own shape: a value of the wrong type for a variable (None for a
        # name, say), which the embedded client refuses as a ValidationError too
        variable = _VARIABLE.match(message)
        name = (variable[1] or variable[2]) if variable else None
        return ValidationError(message, field=_snake(name) if name else None)
    if code == "POLICY":
        return PolicyViolation(message, rules=[_rule(r) for r in info.get("rules") or ()])
    simple: dict[str, type[HubError]] = {
        "CONFLICT": ConflictError,
        "FORBIDDEN": PermissionDenied,
        "CONFIG": ConfigError,
        "INTEGRITY": IntegrityError,
        "BACKEND": BackendError,
        "BACKEND_UNAVAILABLE": BackendUnavailable,
    }
    if code in simple:
        return simple[code](message)
    err = HubError(message)
    err.code = code  # INTERNAL, GRAPHQL_VALIDATION...: kept for the caller to see
    return err


# graphql-core's words for the value at fault: a variable, or an argument left out
_VARIABLE = re.compile(r"Variable '\$(\w+)'|Argument '[\w.]+\((\w+):\)'")


def _snake(name: str) -> str:
    """A variable's name as the SDK's argument is called (``runId``: ``run_id``)."""
    return re.sub(r"(?<!^)([A-Z])", lambda m: "_" + m[1].lower(), name)


_STATUS_CODES = {
    400: "VALIDATION",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    429: "RATE_LIMITED",
    502: "BACKEND",
    503: "BACKEND_UNAVAILABLE",
}


def _response_error(response: httpx.Response) -> HubError:
    """The exception for an unsuccessful HTTP answer (the body is read)."""
    try:
        body = response.json()
    except (ValueError, httpx.ResponseNotRead):
        body = None
    if isinstance(body, Mapping):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
            return hub_error(errors[0], status=response.status_code)
        if isinstance(body.get("error"), Mapping):
            return hub_error(body["error"], status=response.status_code)
    text = response.text[:200] if response.is_stream_consumed else ""
    return hub_error(
        {"message": f"the hub answered HTTP {response.status_code} {text}".strip()},
        status=response.status_code,
    )


def _unreachable(url: str, e: Exception) -> BackendUnavailable:
    return BackendUnavailable(f"the hub at {url} cannot be reached: {type(e).__name__}: {e}")


# --------------------------------------------------------------------------- the connection


class HubConnection:
    """One HTTP connection pool to a hub server, with timeouts, retries and error translation.

    Thread-safe: ``httpx.Client`` is, and nothing here keeps per-call state."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        token: str | None = None,
    ) -> None:
        self.url = check_url(url)
        self.retries = retries
        self.backoff = backoff
        # The API token: given ("" for none), else LINEAGEHUB_TOKEN / LINEAGEHUB_TOKEN_FILE.
        # Kept only in the client's headers (httpx never shows header values in reprs or errors).
        if token is None:
            from lineagehub.config import Settings

            token = Settings().bearer_token()
        auth = {"authorization": f"Bearer {token}"} if token else {}
        # Small requests (every GraphQL call) skip httpx's client: its send adds nothing the
        # hub uses (authentication is a header, redirects are not followed, the hub sets no
        # cookies). To a plain-http hub they take the standard library's HTTP/1.1 on kept-alive
        # sockets (_PlainConnections: about half the client CPU of httpx's pool a call); to an
        # https hub, or through a transport the caller gives, httpx's pool. Not when the
        # environment names a proxy for the hub: then every request goes through the client,
        # which routes by those settings.
        proxied = transport is None and _proxied(self.url)
        parts = urlsplit(self.url)
        plain = (  # a path httpx would have to percent-encode keeps httpx
            transport is None
            and not proxied
            and parts.scheme == "http"
            and bool(_TARGET.fullmatch(parts.path.rstrip("/") + "/"))
        )
        self._direct: httpx.BaseTransport | None = None
        ours = transport is None  # a pool this connection made: remade in a forked child
        if not proxied:
            self._direct = transport = transport or httpx.HTTPTransport()
        client_headers = {"user-agent": f"lineagehub-sdk/{__version__}", **auth, **(headers or {})}

        def client(transport: httpx.BaseTransport | None) -> httpx.Client:
            return httpx.Client(
                base_url=self.url,
                timeout=timeout,
                headers=client_headers,
                transport=transport,
                follow_redirects=False,
            )

        try:
            self.http = client(transport)
        except UnicodeEncodeError:
            raise ConfigError("a header (or the token) holds a character outside ASCII") from None

        def remake() -> None:
            # the pooled connections are the parent's sockets (TLS sessions too): the child's
            # requests would mix with the parent's on the wire, and closing them here would
            # end the parent's sessions; the old client is kept, unused, never closed
            INHERITED.append(self.http)  # the graph stores' list of such leftovers
            self._direct = None if proxied else httpx.HTTPTransport()
            self.http = client(self._direct)

        self._remake: Callable[[], None] | None = remake if ours else None
        self._timeouts = {"timeout": self.http.timeout.as_dict()}
        self._plain = (
            _PlainConnections(self.url, self.http.headers, self.http.timeout) if plain else None
        )
        self._headers: dict[tuple[tuple[str, str], ...], httpx.Headers] = {}
        self._urls: dict[str, httpx.URL] = {}
        self._closed = threading.Event()
        _CONNECTIONS.add(self)

    def close(self) -> None:
        self._closed.set()
        if self._plain is not None:
            self._plain.close()
        self.http.close()

    def __repr__(self) -> str:
        return f"HubConnection({self.url!r})"

    # -- requests

    def request(
        self,
        method: str,
        path: str,
        *,
        content: Callable[[], bytes | Iterator[bytes]] | None = None,
        idempotent: bool,
        stream: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request, retrying as the call allows; any answer but 503 is returned (with
        ``stream=True`` unread: close it). ``content`` makes the body, once per attempt."""
        return self._send(
            method, path, content=content, idempotent=idempotent, stream=stream, headers=headers
        )[0]

    def _send(
        self,
        method: str,
        path: str,
        *,
        content: Callable[[], bytes | Iterator[bytes]] | None,
        idempotent: bool,
        stream: bool,
        headers: Mapping[str, str] | None,
    ) -> tuple[httpx.Response, bool]:
        """The answer, and whether an earlier attempt may have reached the server."""
        attempt = 0
        maybe_arrived = False
        while True:
            if self._closed.is_set():
                raise ConfigError(f"the connection to {self.url} is closed")
            body = content() if content is not None else None
            try:
                if not stream and self._plain is not None and isinstance(body, bytes | None):
                    response = self._plain.send(method, path, body, headers)
                elif not stream and self._direct is not None and isinstance(body, bytes | None):
                    response = self._direct_send(self._direct, method, path, body, headers)
                else:
                    request = self.http.build_request(method, path, content=body, headers=headers)
                    response = self.http.send(request, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
                # The request never left: retrying is safe for every call.
                error: HubError = _unreachable(self.url, e)
                retry = True
            except httpx.TransportError as e:
                error = _unreachable(self.url, e)
                retry = idempotent
                maybe_arrived = True
            else:
                if response.status_code != 503:
                    return response, maybe_arrived
                with contextlib.suppress(httpx.HTTPError):
                    response.read()
                response.close()
                error = _response_error(response)
                if not isinstance(error, BackendUnavailable):
                    error = BackendUnavailable(f"the hub at {self.url} is unavailable: {error}")
                retry = idempotent
            if not retry or attempt >= self.retries:
                raise error
            self._sleep(attempt)
            attempt += 1

    def _direct_send(
        self,
        transport: httpx.BaseTransport,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> httpx.Response:
        """One request through the pool, read whole (what ``Client.send`` would return)."""
        key = tuple(headers.items()) if headers else ()
        merged = self._headers.get(key)
        if merged is None:  # the client's headers with the call's (a handful of kinds)
            merged = self.http.headers.copy()
            merged.update(dict(key))
            if len(self._headers) < 16:
                self._headers[key] = merged
        url = self._urls.get(path)
        if url is None:  # parsed once per path (/graphql, HEAD /artifacts/<digest> ...)
            url = httpx.URL(self.url + path)
            if len(self._urls) < 64:
                self._urls[path] = url
        request = httpx.Request(
            method, url, content=body, headers=merged, extensions=self._timeouts
        )
        response = transport.handle_request(request)
        response.request = request
        try:
            response.read()
        finally:
            response.close()
        return response

    def _sleep(self, attempt: int) -> None:
        delay = min(MAX_BACKOFF, self.backoff * 2**attempt) * (0.5 + random.random() / 2)
        time.sleep(delay)

    def graphql(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        idempotent: bool,
        reconcile: Callable[[HubError], dict[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        """Run a GraphQL operation; its ``data``, or the first error as a LineageHub exception.

        A ``BACKEND_UNAVAILABLE`` error is retried like a 503 when the call is idempotent.
        ``reconcile`` is asked about an error that answered a retry whose first attempt may
        have arrived (and done its work): data it returns is the result instead."""
        body = _request_body({"query": query, "variables": dict(variables or {})})
        headers = {"content-type": "application/json", "accept": "application/json"}
        attempt = 0
        while True:
            response, maybe_arrived = self._send(
                "POST",
                "/graphql",
                content=lambda: body,
                idempotent=idempotent,
                stream=False,
                headers=headers,
            )
            payload, error = _graphql_answer(response)
            if error is None:
                return cast(dict[str, Any], payload["data"])
            if isinstance(error, BackendUnavailable) and idempotent and attempt < self.retries:
                self._sleep(attempt)
                attempt += 1
                continue
            if reconcile is not None and maybe_arrived:
                data = reconcile(error)
                if data is not None:
                    return data
            raise error


#: Idle kept-alive sockets a plain-http connection keeps for later requests (more are closed).
MAX_IDLE_SOCKETS = 16
#: Request head blocks (method, path and headers, encoded) a plain-http connection remembers.
MAX_HEADS = 64
_FIELD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")
_TARGET = re.compile(r"/[!-~]*")


class _PlainConnections:
    """Kept-alive HTTP/1.1 sockets to a plain-http hub, for requests whose body is in hand
    (every GraphQL call, an artifact's ``HEAD``).

    The request goes out in one write, with ``TCP_NODELAY``; httptools' parser reads the
    answer whole (the standard library's :class:`http.client.HTTPResponse` the answer to a
    ``HEAD``, which has no body whatever its length says), which is handed on as an
    :class:`httpx.Response` to the code that reads answers. A socket is used again only when
    its answer allowed it and nothing arrived on it while it was idle (a server closing it
    after its keep-alive time): such a socket is dropped and another opened. Failures are
    httpx's exceptions, so a request that never left (:class:`httpx.ConnectError`) is told
    from one that may have arrived (:class:`httpx.ReadError`, :class:`httpx.ReadTimeout`).
    Thread-safe: a socket serves one request at a time."""

    def __init__(self, url: str, headers: httpx.Headers, timeout: httpx.Timeout) -> None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        self._address = (host, parts.port or 80)
        self._prefix = parts.path.rstrip("/")
        named = f"[{host}]" if ":" in host else host
        fields = {"host": named if parts.port is None else f"{named}:{parts.port}"}
        # Answers are not asked to be compressed: small JSON on a near link.
        fields.update((k, v) for k, v in headers.items() if k != "accept-encoding")
        self._base = _fields(fields)
        self._connect, self._read, self._write = timeout.connect, timeout.read, timeout.write
        self._heads: dict[tuple[Any, ...], bytes] = {}
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        _POOLS.add(self)

    def _forked(self) -> None:
        """In a child process just forked: the idle sockets are the parent's connections
        (a request on one would mix with the parent's on the wire), and the lock may have been
        held by a thread that does not exist here. The child's copies are closed (the parent's
        stay open) and it opens its own."""
        self._lock = threading.Lock()
        idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()

    def send(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str] | None
    ) -> httpx.Response:
        """One request, its answer read whole."""
        key = (method, path, tuple(headers.items()) if headers else ())
        head = self._heads.get(key)
        if head is None:
            target = self._prefix + path
            if not _TARGET.fullmatch(target):
                raise ConfigError(f"not a request path: {target!r}")
            extra = _fields({k.lower(): v for k, v in (headers or {}).items()})
            head = f"{method} {target} HTTP/1.1\r\n".encode("ascii") + self._base + extra
            if len(self._heads) < MAX_HEADS:
                self._heads[key] = head
        if body is not None or method not in ("GET", "HEAD", "DELETE"):
            head += b"content-length: %d\r\n" % len(body or b"")
        sock = self._take()
        try:
            sock.settimeout(self._write)
            sock.sendall(head + b"\r\n" + (body or b""))
            sock.settimeout(self._read)
            if method == "HEAD":  # an answer without the body its length announces
                status, fields, content, keep = _head_answer(sock)
            else:
                status, fields, content, keep = _read_answer(sock)
        except TimeoutError as e:
            sock.close()
            raise httpx.ReadTimeout(f"timed out sending or awaiting the answer: {e}") from e
        except (OSError, http.client.HTTPException, httptools.HttpParserError) as e:
            sock.close()
            raise httpx.ReadError(f"{type(e).__name__}: {e}") from e
        except BaseException:  # interrupted mid-exchange: the socket's state is unknown
            sock.close()
            raise
        if keep:
            self._give_back(sock)
        else:
            sock.close()
        return httpx.Response(status, headers=fields, content=content)

    def _take(self) -> socket.socket:
        """An idle socket the server has not closed, or a new one."""
        with self._lock:
            while self._idle:
                sock = self._idle.pop()
                if not _dropped(sock):
                    return sock
                sock.close()
        try:
            sock = socket.create_connection(self._address, timeout=self._connect)
        except TimeoutError as e:
            raise httpx.ConnectTimeout(f"no connection within {self._connect} s") from e
        except OSError as e:
            raise httpx.ConnectError(f"{type(e).__name__}: {e}") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _give_back(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < MAX_IDLE_SOCKETS:
                self._idle.append(sock)
                return
        sock.close()


_POOLS: weakref.WeakSet[_PlainConnections] = weakref.WeakSet()
_CONNECTIONS: weakref.WeakSet[HubConnection] = weakref.WeakSet()


def _after_fork() -> None:
    for pool in list(_POOLS):
        pool._forked()
    for connection in list(_CONNECTIONS):
        if connection._remake is not None and not connection._closed.is_set():
            connection._remake()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_after_fork)


def _fields(fields: Mapping[str, str]) -> bytes:
    """Header lines, each checked: a name that is not a token, or a value with a line break
    or a character outside printable ASCII, is a :class:`ConfigError` (never sent)."""
    lines = []
    for name, value in fields.items():
        if not _FIELD_NAME.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            raise ConfigError(f"header {name!r} cannot be sent: a name or value out of range")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("ascii")


class _Answer:
    """What httptools' parser finds in an answer: its header fields and body. An interim
    answer (``100 Continue``) is passed over, as :mod:`http.client` does."""

    __slots__ = ("body", "complete", "fields", "headed", "keep", "parser")

    def __init__(self) -> None:
        self.fields: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.headed = False  # the final answer's header block has been read
        self.complete = False
        self.keep = False  # whether the connection may be used again (read at the end)
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.fields.clear()
        self.body.clear()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))

    def on_headers_complete(self) -> None:
        self.headed = self.parser.get_status_code() >= 200

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() >= 200:
            self.complete = True
            self.keep = self.parser.should_keep_alive()  # the parser forgets it afterwards


def _read_answer(sock: socket.socket) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
    """One answer read whole from ``sock`` by httptools (llhttp, the parser uvicorn uses):
    its status, header fields, body and whether the connection may be used again. A body
    whose end only the connection's close marks ends there."""
    answer = _Answer()
    parser = answer.parser
    while not answer.complete:
        data = sock.recv(65536)
        if not data:
            if answer.headed and not _has_length(answer.fields):  # the close ends the body
                return parser.get_status_code(), answer.fields, b"".join(answer.body), False
            raise http.client.RemoteDisconnected("the hub closed the connection mid-answer")
        parser.feed_data(data)
    return parser.get_status_code(), answer.fields, b"".join(answer.body), answer.keep


def _has_length(fields: list[tuple[bytes, bytes]]) -> bool:
    return any(n.lower() in (b"content-length", b"transfer-encoding") for n, _ in fields)


def _head_answer(sock: socket.socket) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
    """The answer to a ``HEAD``, by :mod:`http.client` (which knows it has no body)."""
    answer = http.client.HTTPResponse(sock, method="HEAD")
    answer.begin()
    content = answer.read()
    fields = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.getheaders()]
    return answer.status, fields, content, not answer.will_close


def _dropped(sock: socket.socket) -> bool:
    """Whether an idle kept-alive socket was closed by the server, or had bytes arrive on it
    (neither is a socket to send a request on)."""
    sock.settimeout(0.0)
    try:
        sock.recv(1, socket.MSG_PEEK)  # b"" (closed) or a byte: either way, not usable
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def _proxied(url: str) -> bool:
    """Whether the environment names a proxy for ``url`` (as httpx reads it: the standard
    ``*_PROXY`` variables, with ``NO_PROXY``)."""
    proxies = urllib.request.getproxies()
    if not any(k in proxies for k in ("http", "https", "all")):
        return False
    host = urlsplit(url).hostname or ""
    return not urllib.request.proxy_bypass(host)


def _graphql_answer(response: httpx.Response) -> tuple[Any, HubError | None]:
    """A GraphQL answer's JSON (decoded once), and the error it carries, if any (the first)."""
    fast, payload = fast_load(response.content)  # orjson, where it reads as json.loads
    if not fast:
        try:
            payload = response.json()
        except ValueError:
            return None, _response_error(response)
    if not isinstance(payload, Mapping):
        return None, _response_error(response)
    errors = payload.get("errors")
    if errors:
        first = errors[0] if isinstance(errors, list) and errors else {}
        error = hub_error(first if isinstance(first, Mapping) else {}, status=response.status_code)
        return payload, error
    if not isinstance(payload.get("data"), dict):
        return payload, _response_error(response)
    return payload, None


def check_url(url: str) -> str:
    """A hub server's base URL (``http(s)://host[:port][/path]``), without a trailing slash;
    anything else is a :class:`ConfigError`."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"a hub server URL is http(s)://host[:port], got {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"a hub server URL has no query or fragment, got {url!r}")
    return url.rstrip("/")


def is_url(target: object) -> bool:
    """Whether ``target`` names a hub server (an http or https URL) rather than a store."""
    return isinstance(target, str) and target.lower().startswith(("http://", "https://"))


# --------------------------------------------------------------------------- artifacts


class _StreamBody:
    """An upload body read from a caller's stream in chunks, hashed as it goes. One pass:
    it can be sent once (a retry after it started would send a partial body)."""

    def __init__(self, source: Any, chunk_size: int) -> None:
        self._source = source
        self._chunk_size = chunk_size
        self._hasher = hashlib.sha256()
        self.size = 0
        self.started = False

    def __iter__(self) -> Iterator[bytes]:
        if self.started:
            raise BackendUnavailable("the upload was interrupted and its stream cannot be replayed")
        self.started = True
        while True:
            chunk = self._source.read(self._chunk_size)
            if chunk is None:
                raise ValidationError(
                    "the stream is non-blocking and has no data ready; pass a blocking binary "
                    "stream",
                    field="stream",
                )
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise ValidationError(
                    f"expected a binary stream (open files with 'rb'), got "
                    f"{type(chunk).__name__} chunks",
                    field="stream",
                )
            if not chunk:
                return
            chunk = bytes(chunk)
            self._hasher.update(chunk)
            self.size += len(chunk)
            yield chunk

    @property
    def digest(self) -> str:
        return "sha256:" + self._hasher.hexdigest()


class _ResponseReader:
    """``read(size)`` over a streamed HTTP response body."""

    def __init__(self, response: httpx.Response, chunk_size: int) -> None:
        self._chunks = response.iter_bytes(chunk_size)
        self._buffer = b""
        self._done = False

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._buffer) < size):
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                self._done = True
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


class RemoteArtifactStore(ArtifactStore):
    """The artifact store of a hub server, over its ``/artifacts`` routes.

    Uploads stream (``put_file`` and ``put_stream`` never hold the content in memory) and are
    checked against the digest the client computed; downloads stream and are verified while
    read, like every :class:`ArtifactStore`. Deleting is not offered by the server."""

    scheme = "http"

    def __init__(
        self,
        url: str | HubConnection,
        *,
        chunk_size: int = CHUNK_SIZE,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        super().__init__(chunk_size=chunk_size)
        if isinstance(url, HubConnection):
            self.connection = url
            self._owns_connection = False
        else:
            self.connection = HubConnection(url, timeout=timeout, retries=retries)
            self._owns_connection = True

    @property
    def uri(self) -> str:
        return f"{self.connection.url}/artifacts"

    def uri_for(self, digest: str) -> str:
        validate_digest(digest)
        return f"{self.uri}/{digest}"

    def _path(self, digest: str) -> str:
        validate_digest(digest)
        return f"/artifacts/{digest}"

    def _head(self, digest: str, absent: tuple[int, ...] = (404,)) -> int | None:
        response = self.connection.request("HEAD", self._path(digest), idempotent=True)
        response.close()
        if response.status_code in absent:
            return None
        if response.status_code != 200:
            raise _response_error(response)
        try:
            return int(response.headers["content-length"])
        except (KeyError, ValueError):
            raise BackendError(f"the hub sent no size for artifact {digest}") from None

    def _missing(self, digest: str) -> NotFoundError:
        return NotFoundError(f"no artifact {digest} in {self.uri}", ids=[digest])

    def exists(self, digest: str) -> bool:
        return self._head(digest) is not None

    def size(self, digest: str) -> int:
        size = self._head(digest)
        if size is None:
            raise self._missing(digest)
        return size

    def open(self, digest: str) -> BinaryIO:
        response = self.connection.request("GET", self._path(digest), idempotent=True, stream=True)
        if response.status_code != 200:
            try:
                response.read()
            finally:
                response.close()
            error = _response_error(response)
            if response.status_code == 404:
                error = self._missing(digest)
            raise error
        length = response.headers.get("content-length")
        url = self.connection.url

        def translate(e: Exception) -> HubError | None:
            # Cut short: the network, or the server's own check of the stored bytes (which can
            # only abort a response already under way).
            if isinstance(e, httpx.TransportError):
                return BackendUnavailable(
                    f"the download of {digest} from {url} was cut short: {type(e).__name__}: {e}"
                )
            return None

        raw = _VerifyingReader(
            _ResponseReader(response, self.chunk_size),
            digest,
            expected_size=int(length) if length and length.isdigit() else None,
            uri=self.uri_for(digest),
            translate=translate,
            on_close=response.close,
        )
        return cast(BinaryIO, io.BufferedReader(raw, buffer_size=self.chunk_size))

    def delete(self, digest: str, *, missing_ok: bool = False) -> None:
        validate_digest(digest)
        raise PermissionDenied(
            "artifacts cannot be deleted through the hub server: content is shared by every "
            "run that logged the same bytes"
        )

    # -- uploads

    def _upload(
        self, content: Callable[[], bytes | Iterator[bytes]], *, idempotent: bool
    ) -> ArtifactInfo:
        response = self.connection.request(
            "PUT",
            "/artifacts",
            content=content,
            idempotent=idempotent,
            headers={"content-type": "application/octet-stream"},
        )
        if response.status_code != 200:
            raise _response_error(response)
        try:
            answer = response.json()
            digest, size, created = answer["digest"], int(answer["size"]), bool(answer["created"])
            receipt = answer.get("receipt")
        except (ValueError, KeyError, TypeError):
            raise BackendError(
                f"the hub's upload answer is malformed: {response.text[:200]}"
            ) from None
        return ArtifactInfo(
            digest=digest,
            size=size,
            uri=self.uri_for(digest),
            created=created,
            receipt=receipt if isinstance(receipt, str) else None,
        )

    def _have(self, digest: str) -> int | None:
        """The size of these bytes on the hub when the caller may read them there; ``None``
        when they are not there or belong to a project it may not view (uploaded anyway:
        the upload's receipt lets it log them)."""
        return self._head(digest, absent=(403, 404))

    @staticmethod
    def _check_arrived(info: ArtifactInfo, digest: str, size: int) -> ArtifactInfo:
        if info.digest != digest or info.size != size:
            raise IntegrityError(
                f"the upload arrived damaged: {size} bytes hashing to {digest} were sent, the "
                f"hub stored {info.size} bytes hashing to {info.digest}"
            )
        return info

    def put_bytes(self, data: bytes | bytearray | memoryview) -> ArtifactInfo:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValidationError(
                f"put_bytes takes bytes, got {type(data).__name__}; encode text first",
                field="data",
            )
        raw = bytes(data)
        digest = digest_bytes(raw)
        # Large content the hub already has (a model pickled again) is not sent again; for
        # small content the question costs as much as the upload.
        if len(raw) > HEAD_FIRST_BYTES and self._have(digest) == len(raw):
            return ArtifactInfo(
                digest=digest, size=len(raw), uri=self.uri_for(digest), created=False
            )
        info = self._upload(lambda: raw, idempotent=True)
        return self._check_arrived(info, digest, len(raw))

    def put_stream(self, stream: BinaryIO) -> ArtifactInfo:
        body = _StreamBody(stream, self.chunk_size)
        # Not idempotent: a stream is read once, so only a connection that was never made is
        # retried (the body had not started).
        info = self._upload(lambda: iter(body), idempotent=False)
        return self._check_arrived(info, body.digest, body.size)

    def put_file(self, path: str | os.PathLike[str]) -> ArtifactInfo:
        """Upload a local file, streamed; content the hub already has is not sent again."""
        p = _local_file(path)
        digest, size = hash_file(p, self.chunk_size)
        if self._have(digest) == size:
            return ArtifactInfo(digest=digest, size=size, uri=self.uri_for(digest), created=False)
        sent: list[_StreamBody] = []

        def chunks() -> Iterator[bytes]:
            with _open_local(p) as f:
                body = _StreamBody(_LocalFileReader(f, p), self.chunk_size)
                sent.append(body)
                yield from body

        info = self._upload(chunks, idempotent=True)
        body = sent[-1]
        return self._check_arrived(info, body.digest, body.size)

    def close(self) -> None:
        if self._owns_connection:
            self.connection.close()


#: What a request body may hold for orjson to write it (the standard encoder takes the rest).
_PLAIN_JSON: frozenset[type] = frozenset((str, int, float, bool, type(None)))


def _request_body(payload: dict[str, Any]) -> bytes:
    """A GraphQL request as JSON: by orjson (several times faster) when it holds JSON's own
    types only (finite floats; no NaN, which orjson would write as null), else, or where orjson
    refuses (an integer beyond 64 bits, a lone surrogate), by the standard encoder as before;
    what neither takes is a :class:`ValidationError`."""
    if only_of(payload, _PLAIN_JSON, 1000):
        try:
            return orjson.dumps(payload)
        except orjson.JSONEncodeError:
            pass
    try:
        return json.dumps(payload, default=_json_default).encode()
    except (TypeError, ValueError) as e:
        raise ValidationError(f"not JSON-serializable: {e}") from None


def _json_default(value: Any) -> Any:
    # numpy values in data the server validates (evaluation data, signatures, profiles)
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON data")


__all__ = [
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "HubConnection",
    "RemoteArtifactStore",
    "check_url",
    "hub_error",
    "is_url",
]
