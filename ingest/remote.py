"""The SDK's remote mode: the tracking service and the artifact store of a hub server, over HTTP.

``Client("http://hub:8000")`` (or ``LINEAGEHUB_URL``) uses these instead of opening the stores
itself. They answer exactly as :class:`~lineagehub.tracking.TrackingService` and
:class:`~lineagehub.artifacts.ArtifactStore` do in embedded mode: the same methods, the same
vocabulary models back, the same errors (a ``NOT_FOUND`` from the server is a
:class:`~lineagehub.graph.NotFoundError` here, with its ``ids``; a ``VALIDATION`` a
:class:`~lineagehub.graph.ValidationError` naming the same field), so code written against one
mode runs unchanged against the other.

- Tracking goes through the GraphQL API (``POST /graphql``); metric values travel as the
  ``MetricValue`` scalar, so NaN and infinities survive the trip.
- Artifact bytes never travel inside GraphQL: they stream to ``PUT /artifacts`` (never read
  whole into memory) and back from ``GET /artifacts/{digest}``, verified against their digest
  while they are read (:class:`~lineagehub.graph.IntegrityError` on a mismatch). A file whose
  content the server already has is not uploaded again (``HEAD`` first).
- A server that cannot be reached, or answers 503, is a
  :class:`~lineagehub.graph.BackendUnavailable` (retryable). Calls that are safe to repeat
  (reads, uploads, batches of params/metrics/tags, datasets, artifacts) are retried with
  exponential back-off first; the others only when the request provably never left (the
  connection could not be made), and ``start_run`` / ``end_run`` reconcile a retry whose first
  attempt did arrive.

One :class:`HubConnection` (one ``httpx.Client``, thread-safe) serves a
:class:`RemoteTracking` and its :class:`RemoteArtifactStore`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast
from urllib.parse import urlsplit

import httpx

from lineagehub import __version__
from lineagehub.artifacts import (
    CHUNK_SIZE,
    ArtifactInfo,
    ArtifactStore,
    _hash_file,
    _local_file,
    _LocalFileReader,
    _open_local,
    _VerifyingReader,
    digest_bytes,
    validate_digest,
)
from lineagehub.graph import Node, SeriesPoint
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
from lineagehub.graph.model import to_iso
from lineagehub.graph.store import MAX_PAGE
from lineagehub.services.tracking import (
    MAX_BATCH_POINTS,
    Metric,
    RunStart,
    check_metric,
    dataset_name,
)
from lineagehub.vocabulary import (
    Artifact,
    ArtifactKind,
    DatasetVersion,
    Deployment,
    Model,
    ModelVersion,
    NodeKind,
    NodeModel,
    Run,
    RunStatus,
    UsedRole,
    check_key,
    check_scalar,
    check_text,
    from_node,
    member,
)

if TYPE_CHECKING:
    from lineagehub.ingest.datasets import DatasetFingerprint

M = TypeVar("M", bound=NodeModel)

#: Seconds to wait: for a connection, and for each read or write on it.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
#: Retries of a retryable call (after the first attempt), and the first back-off delay, which
#: doubles each time (with jitter) up to MAX_BACKOFF.
DEFAULT_RETRIES = 5
DEFAULT_BACKOFF = 0.2
MAX_BACKOFF = 5.0
#: ``put_bytes`` asks whether the hub has content above this size before uploading it.
HEAD_FIRST_BYTES = 256 * 1024
#: GraphQL's Int is 32 bits: "every point" is asked for as this many.
_ALL_POINTS = 2**31 - 1
#: The server's page size limit (``Services.max_page``); longer pages are fetched in parts.
_SERVER_PAGE = 500

_NODE = "id kind properties"
_LABELS = {**{k.name: k.value for k in NodeKind}, **{k.value: k.value for k in NodeKind}}
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


# --------------------------------------------------------------------------- errors


def hub_error(error: Mapping[str, Any], *, status: int | None = None) -> HubError:
    """The LineageHub exception for an error the server sent: a GraphQL error (``message``
    and ``extensions``) or an ``{"code", "message", ...}`` object of the artifact routes."""
    ext = error.get("extensions")
    info: Mapping[str, Any] = ext if isinstance(ext, Mapping) else error
    message = str(error.get("message") or f"the hub answered HTTP {status}")
    code = str(info.get("code") or _STATUS_CODES.get(status or 0, "INTERNAL"))
    if code == "NOT_FOUND":
        return NotFoundError(message, ids=[str(i) for i in info.get("ids") or ()])
    if code in ("VALIDATION", "PAYLOAD_TOO_LARGE"):
        field = info.get("field")
        return ValidationError(message, field=str(field) if field is not None else None)
    if code == "POLICY":
        return PolicyViolation(message, rules=list(info.get("rules") or ()))
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


_STATUS_CODES = {
    400: "VALIDATION",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
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
    ) -> None:
        self.url = check_url(url)
        self.retries = retries
        self.backoff = backoff
        self.http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"user-agent": f"lineagehub-sdk/{__version__}", **(headers or {})},
            transport=transport,
            follow_redirects=False,
        )
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()
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
            request = self.http.build_request(
                method, path, content=content() if content is not None else None, headers=headers
            )
            try:
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
        try:
            body = json.dumps(
                {"query": query, "variables": dict(variables or {})}, default=_json_default
            ).encode()
        except (TypeError, ValueError) as e:
            raise ValidationError(f"not JSON-serializable: {e}") from None
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
            error = _graphql_error(response)
            if error is None:
                return cast(dict[str, Any], response.json()["data"])
            if isinstance(error, BackendUnavailable) and idempotent and attempt < self.retries:
                self._sleep(attempt)
                attempt += 1
                continue
            if reconcile is not None and maybe_arrived:
                data = reconcile(error)
                if data is not None:
                    return data
            raise error


def _graphql_error(response: httpx.Response) -> HubError | None:
    """The error a GraphQL answer carries, if any (the first one)."""
    try:
        payload = response.json()
    except ValueError:
        return _response_error(response)
    if not isinstance(payload, Mapping):
        return _response_error(response)
    errors = payload.get("errors")
    if errors:
        first = errors[0] if isinstance(errors, list) and errors else {}
        return hub_error(first if isinstance(first, Mapping) else {}, status=response.status_code)
    if not isinstance(payload.get("data"), dict):
        return _response_error(response)
    return None


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

    def _head(self, digest: str) -> int | None:
        response = self.connection.request("HEAD", self._path(digest), idempotent=True)
        response.close()
        if response.status_code == 404:
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
        except (ValueError, KeyError, TypeError):
            raise BackendError(
                f"the hub's upload answer is malformed: {response.text[:200]}"
            ) from None
        return ArtifactInfo(digest=digest, size=size, uri=self.uri_for(digest), created=created)

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
        if len(raw) > HEAD_FIRST_BYTES and self._head(digest) == len(raw):
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
        digest, size = _hash_file(p, self.chunk_size)
        if self._head(digest) == size:
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


# --------------------------------------------------------------------------- tracking

_START_RUN = f"""
mutation StartRun($input: StartRunInput!) {{ startRun(input: $input) {{ {_NODE} }} }}
"""
_LOG_BATCH = """
mutation LogBatch($runId: ID!, $params: JSON, $metrics: [MetricInput!], $tags: JSON) {
  logBatch(runId: $runId, params: $params, metrics: $metrics, tags: $tags) { runId }
}
"""
_END_RUN = f"""
mutation EndRun(
  $runId: ID!, $status: String!, $error: String, $params: JSON, $metrics: [MetricInput!],
  $tags: JSON
) {{
  endRun(
    runId: $runId, status: $status, error: $error, params: $params, metrics: $metrics,
    tags: $tags
  ) {{ {_NODE} }}
}}
"""
_NODES = f"""
query Nodes($ids: [ID!]!) {{ nodes(ids: $ids) {{ {_NODE} }} }}
"""
_RUNS = f"""
query Runs($where: JSON, $orderBy: [String!], $first: Int!, $after: String) {{
  runs(where: $where, orderBy: $orderBy, first: $first, after: $after) {{
    edges {{ node {{ {_NODE} }} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}
"""
_METRIC_SERIES = """
query MetricSeries($ids: [ID!]!, $key: String!, $maxPoints: Int!) {
  nodes(ids: $ids) {
    id kind
    ... on Run { metricSeries(key: $key, maxPoints: $maxPoints) { step value timestamp } }
  }
}
"""
_ARTIFACTS_OF = f"""
query ArtifactsOf($ids: [ID!]!) {{
  nodes(ids: $ids) {{
    id kind
    ... on Run {{ evaluations {{ node {{ {_NODE} }} edge {{ properties }} }} }}
  }}
}}
"""
_LOG_DATASET = f"""
mutation LogDataset($runId: ID!, $input: DatasetInput!) {{
  logDataset(runId: $runId, input: $input) {{ {_NODE} }}
}}
"""
_LOG_ARTIFACT = f"""
mutation LogArtifact(
  $runId: ID!, $digest: String!, $name: String!, $artifactKind: String!, $mediaType: String!,
  $data: JSON
) {{
  logArtifact(
    runId: $runId, digest: $digest, name: $name, artifactKind: $artifactKind,
    mediaType: $mediaType, data: $data
  ) {{ {_NODE} }}
}}
"""
_LOG_MODEL = f"""
mutation LogModel(
  $runId: ID!, $digest: String!, $name: String!, $flavor: String, $signature: JSON,
  $description: String, $primaryMetric: String
) {{
  logModel(
    runId: $runId, digest: $digest, name: $name, flavor: $flavor, signature: $signature,
    description: $description, primaryMetric: $primaryMetric
  ) {{ {_NODE} }}
}}
"""
_MARK_STALE = "mutation MarkStaleRuns { markStaleRuns }"


def _node(data: Mapping[str, Any]) -> Node:
    kind = str(data.get("kind"))
    props = data.get("properties")
    return Node(
        id=str(data["id"]),
        label=_LABELS.get(kind, kind),
        props=dict(props) if isinstance(props, Mapping) else {},
    )


def _model(cls: type[M], data: Any) -> M:
    if not isinstance(data, Mapping):
        raise BackendError(f"the hub answered without the {cls.__name__}")
    model = from_node(_node(data))
    if not isinstance(model, cls):
        raise BackendError(f"the hub answered a {type(model).__name__}, not a {cls.__name__}")
    return model


def _metric_value(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _parse_value(value: Any) -> float:
    if isinstance(value, str):
        return _SPECIAL[value]
    return float(value)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


#: The metric points one GraphQL request carries at most, as JSON: half the server's default
#: request limit (``LINEAGEHUB_MAX_REQUEST_BYTES``, 1 MiB), leaving room for params and tags.
REQUEST_POINTS_BYTES = 512 * 1024


def _point_chunks(points: list[dict[str, Any]] | None) -> list[list[dict[str, Any]] | None]:
    """``points`` in consecutive chunks of at most :data:`REQUEST_POINTS_BYTES` as JSON (one
    ``None`` chunk for none)."""
    if not points:
        return [None]
    chunks: list[list[dict[str, Any]] | None] = []
    current: list[dict[str, Any]] = []
    size = 0
    for point in points:
        # key (escaped at most 6x), value, step, timestamp and punctuation
        n = 6 * len(point["key"]) + 110
        if current and size + n > REQUEST_POINTS_BYTES:
            chunks.append(current)
            current, size = [], 0
        current.append(point)
        size += n
    chunks.append(current)
    return chunks


def _metrics(metrics: Sequence[Metric] | None) -> list[dict[str, Any]] | None:
    """Metric points as ``MetricInput`` values, checked as the service checks them."""
    if not metrics:
        return None
    if len(metrics) > MAX_BATCH_POINTS:
        raise ValidationError(
            f"a batch holds at most {MAX_BATCH_POINTS} metric points", field="metrics"
        )
    out = []
    keys: set[str] = set()  # a run has a handful of keys and thousands of points
    for m in metrics:
        value = m.value
        if type(value) is not float or type(m.step) is not int or m.key not in keys:
            value = check_metric(m.key, value, m.step)
            keys.add(m.key)
        out.append(
            {
                "key": m.key,
                "value": _metric_value(value),
                "step": m.step,
                "timestamp": to_iso(m.timestamp, f"metrics.{m.key}.timestamp"),
            }
        )
    return out


def _params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Params checked (and numpy scalars unwrapped) as the service checks them."""
    if not params:
        return None
    return {k: check_scalar(v, f"params.{check_key(k, 'params')}") for k, v in params.items()}


def _tags(tags: Mapping[str, Any] | None) -> dict[str, str] | None:
    if not tags:
        return None
    return {k: check_text(v, f"tags.{check_key(k, 'tags')}") for k, v in tags.items()}


def _json_default(value: Any) -> Any:
    # numpy values in data the server validates (evaluation data, signatures, profiles)
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _enum_value(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


class RemoteTracking:
    """:class:`~lineagehub.tracking.TrackingService`'s interface, served by a hub server.

    ``RemoteTracking("http://hub:8000")``; ``artifacts`` is its
    :class:`RemoteArtifactStore` (on the same connection)."""

    def __init__(
        self,
        url: str | HubConnection,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if isinstance(url, HubConnection):
            self.connection = url
        else:
            self.connection = HubConnection(
                url, timeout=timeout, retries=retries, backoff=backoff, transport=transport
            )
        self.url = self.connection.url
        self.artifacts = RemoteArtifactStore(self.connection)
        # Content this process already uploaded (package lists, code diffs): a sweep starts
        # thousands of runs from one checkout and one environment.
        self._uploaded: set[str] = set()
        self._uploaded_lock = threading.Lock()

    def close(self) -> None:
        self.connection.close()

    def __repr__(self) -> str:
        return f"RemoteTracking({self.url!r})"

    def _call(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        idempotent: bool,
        reconcile: Callable[[HubError], dict[str, Any] | None] | None = None,
    ) -> dict[str, Any]:
        return self.connection.graphql(query, variables, idempotent=idempotent, reconcile=reconcile)

    def _upload_once(self, digest: str | None, content: bytes) -> None:
        key = digest or digest_bytes(content)
        with self._uploaded_lock:
            if key in self._uploaded:
                return
        self.artifacts.put_bytes(content)
        with self._uploaded_lock:
            self._uploaded.add(key)

    # --- runs -------------------------------------------------------------------------------

    def start_run(self, run: Run, start: RunStart | None = None) -> Run:
        """Record a new run with its grouping, parent, code, environment and launcher."""
        start = start or RunStart()
        if run.status is not RunStatus.RUNNING:
            raise ValidationError("a run starts RUNNING", field="status")
        fields: dict[str, Any] = {
            "id": run.id,
            "name": run.name,
            "runKind": run.kind.value,
            "project": run.project,
            "experiment": run.experiment,
            "tags": dict(run.tags),
            "params": dict(run.params),
            "parent": run.parent,
            "user": run.user,
            "host": run.host,
            "entryPoint": run.entry_point,
            "description": run.description,
        }
        if start.code is not None:
            if start.code.diff is not None:
                self._upload_once(start.code.commit.diff_digest, start.code.diff)
            fields["code"] = start.code.commit.model_dump(mode="json", exclude_none=True)
        if start.environment is not None:
            env = start.environment.environment
            if start.environment.packages_text:
                self._upload_once(env.packages_digest, start.environment.packages_text)
            fields["environment"] = env.model_dump(mode="json", exclude_none=True)

        def reconcile(error: HubError) -> dict[str, Any] | None:
            # A retry whose first attempt did arrive finds the run already there.
            if isinstance(error, ConflictError):
                found = self._call(_NODES, {"ids": [run.id]}, idempotent=True)["nodes"][0]
                if found is not None and found.get("properties", {}).get("name") == run.name:
                    return {"startRun": found}
            return None

        variables = {"input": {k: v for k, v in fields.items() if v is not None}}
        data = self._call(_START_RUN, variables, idempotent=True, reconcile=reconcile)
        return _model(Run, data["startRun"])

    def log_batch(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Sequence[Metric] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Log params, metric points and tags, and refresh the heartbeat: in one transaction
        when the points fit one request (:data:`REQUEST_POINTS_BYTES`), else the points in
        several, the params and tags with the last."""
        *first, last = _point_chunks(_metrics(metrics))
        for chunk in first:
            self._call(_LOG_BATCH, {"runId": run_id, "metrics": chunk}, idempotent=True)
        variables = {
            "runId": run_id,
            "params": _params(params),
            "metrics": last,
            "tags": _tags(tags),
        }
        # Idempotent: the same params again are accepted, points replace the same step's.
        self._call(_LOG_BATCH, variables, idempotent=True)

    def end_run(
        self,
        run_id: str,
        status: RunStatus | str = RunStatus.FINISHED,
        error: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Sequence[Metric] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> Run:
        """Finish a run after a last batch, in one transaction. A run ends once."""
        status_text = str(_enum_value(status))

        def reconcile(e: HubError) -> dict[str, Any] | None:
            # A retry whose first attempt did arrive finds the run ended as asked.
            if isinstance(e, ConflictError):
                found = self._call(_NODES, {"ids": [run_id]}, idempotent=True)["nodes"][0]
                if found is not None and found.get("properties", {}).get("status") == status_text:
                    return {"endRun": found}
            return None

        *first, last = _point_chunks(_metrics(metrics))
        for chunk in first:  # points beyond one request go ahead of the end
            self._call(_LOG_BATCH, {"runId": run_id, "metrics": chunk}, idempotent=True)
        variables = {
            "runId": run_id,
            "status": status_text,
            "error": error,
            "params": _params(params),
            "metrics": last,
            "tags": _tags(tags),
        }
        data = self._call(_END_RUN, variables, idempotent=True, reconcile=reconcile)
        return _model(Run, data["endRun"])

    def _node_of(self, node_id: str, kind: NodeKind, field: str, query: str = _NODES,
                 **variables: Any) -> dict[str, Any]:  # fmt: skip
        if not isinstance(node_id, str):
            raise ValidationError(f"{field}: expected an id, got {type(node_id).__name__}", field)
        found = self._call(query, {"ids": [node_id], **variables}, idempotent=True)["nodes"][0]
        if found is None:
            raise NotFoundError(f"{field}: no {kind.value} with id {node_id!r}", ids=[node_id])
        label = _LABELS.get(str(found.get("kind")), str(found.get("kind")))
        if label != kind.value:
            raise ValidationError(
                f"{field}: {node_id!r} is a {label}, not a {kind.value}", field=field
            )
        return cast(dict[str, Any], found)

    def get_run(self, run_id: str) -> Run:
        """The run, with a stale RUNNING run recorded as KILLED first."""
        run = _model(Run, self._node_of(run_id, NodeKind.RUN, "run_id"))
        if run.status is RunStatus.RUNNING and run.id in self.mark_stale_runs():
            run = _model(Run, self._node_of(run_id, NodeKind.RUN, "run_id"))
        return run

    def mark_stale_runs(self) -> list[str]:
        """Record every RUNNING run whose heartbeat is older than the server's
        ``stale_after`` as KILLED; returns their ids."""
        data = self._call(_MARK_STALE, idempotent=True)
        return [str(i) for i in data["markStaleRuns"]]

    def search_runs(
        self,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Run], str | None]:
        """Runs matching a filter, ordered, one page (see
        :meth:`lineagehub.tracking.TrackingService.search_runs`)."""
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        order = [order_by] if isinstance(order_by, str) else order_by
        found: list[dict[str, Any]] = []
        cursor = after
        while True:
            first = min(limit - len(found), _SERVER_PAGE)
            variables = {
                "where": dict(where) if where is not None else None,
                "orderBy": list(order) if order is not None else None,
                "first": first,
                "after": cursor,
            }
            page = self._call(_RUNS, variables, idempotent=True)["runs"]
            found += [e["node"] for e in page["edges"]]
            more = bool(page["pageInfo"]["hasNextPage"])
            cursor = page["pageInfo"]["endCursor"] if more else None
            if not more or len(found) >= limit:
                break
        runs = [_model(Run, n) for n in found]
        if any(r.status is RunStatus.RUNNING for r in runs):
            stale = set(self.mark_stale_runs())
            ids = [r.id for r in runs if r.id in stale]
            if ids:
                fresh = self._call(_NODES, {"ids": ids}, idempotent=True)["nodes"]
                by_id = {r.id: r for r in (_model(Run, n) for n in fresh if n is not None)}
                runs = [by_id.get(r.id, r) for r in runs]
        return runs, cursor

    def metric_history(
        self, run_id: str, key: str, max_points: int | None = None
    ) -> list[SeriesPoint]:
        """One metric's points, by step (downsampled to ``max_points``, spikes kept)."""
        if max_points is not None and (
            not isinstance(max_points, int) or isinstance(max_points, bool) or max_points < 2
        ):
            raise ValidationError("max_points must be at least 2", field="max_points")
        found = self._node_of(
            run_id,
            NodeKind.RUN,
            "run_id",
            _METRIC_SERIES,
            key=key,
            maxPoints=min(max_points, _ALL_POINTS) if max_points is not None else _ALL_POINTS,
        )
        return [
            SeriesPoint(
                run_id, key, int(p["step"]), _parse_value(p["value"]), _parse_time(p["timestamp"])
            )
            for p in found.get("metricSeries") or []
        ]

    # --- data, artifacts, models ---------------------------------------------------------------

    def log_dataset(
        self,
        run_id: str,
        fingerprint: DatasetFingerprint,
        *,
        name: str | None = None,
        namespace: str | None = None,
        role: UsedRole | str = UsedRole.TRAIN,
        output: bool = False,
        derived_from: Iterable[str] = (),
        description: str | None = None,
    ) -> DatasetVersion:
        """Record a dataset version the run used (with a role) or, with ``output=True``,
        generated. Files are named here, on the client: ``file://<this host>``, the path."""
        # The client's host, not the server's: the file is where the client runs.
        namespace, name = dataset_name(fingerprint, name, namespace)
        variables = {
            "runId": run_id,
            "input": {
                "fingerprint": dataclasses.asdict(fingerprint),
                "name": name,
                "namespace": namespace,
                "role": str(_enum_value(role)),
                "output": bool(output),
                "derivedFrom": [str(s) for s in derived_from],
                "description": description,
            },
        }
        # Idempotent: the same content is the same version, edges are upserted.
        data = self._call(_LOG_DATASET, variables, idempotent=True)
        return _model(DatasetVersion, data["logDataset"])

    def log_artifact(
        self,
        run_id: str,
        info: ArtifactInfo,
        *,
        name: str,
        kind: ArtifactKind | str = ArtifactKind.OTHER,
        media_type: str = "application/octet-stream",
        data: Mapping[str, Any] | None = None,
    ) -> Artifact:
        """Record that the run generated an artifact already uploaded to the hub."""
        variables = {
            "runId": run_id,
            "digest": info.digest,
            "name": name,
            "artifactKind": member(ArtifactKind, kind, "kind").value,
            "mediaType": media_type,
            "data": dict(data) if data is not None else None,
        }
        result = self._call(_LOG_ARTIFACT, variables, idempotent=True)
        return _model(Artifact, result["logArtifact"])

    def artifacts_of(self, run_id: str) -> list[tuple[str, Artifact]]:
        """The artifacts a run generated, with the names they were logged under."""
        found = self._node_of(run_id, NodeKind.RUN, "run_id", _ARTIFACTS_OF)
        result = [
            (
                str((link["edge"]["properties"] or {}).get("name", "")),
                _model(Artifact, link["node"]),
            )
            for link in found.get("evaluations") or []
        ]
        return sorted(result, key=lambda x: x[0])

    def log_model(
        self,
        run_id: str,
        info: ArtifactInfo,
        *,
        name: str,
        flavor: str | None = None,
        signature: Mapping[str, Any] | None = None,
        description: str | None = None,
        primary_metric: str | None = None,
    ) -> ModelVersion:
        """Register the next version of model ``name`` (not retried once sent: a repeat
        would register another version)."""
        variables = {
            "runId": run_id,
            "digest": info.digest,
            "name": name,
            "flavor": flavor,
            "signature": dict(signature) if signature is not None else None,
            "description": description,
            "primaryMetric": primary_metric,
        }
        data = self._call(_LOG_MODEL, variables, idempotent=False)
        return _model(ModelVersion, data["logModel"])


# --------------------------------------------------------------------------- registry

_MV = f"{{ {_NODE} }}"
_PROMOTE_RESULT = f"""
__typename
... on ModelPromoted {{ version {_MV} fromStage stage archived {_MV} runId approvals }}
... on PromotionPending {{ requestId version {_MV} stage approvals approvalsNeeded }}
... on PolicyViolation {{ version {_MV} stage rules {{ rule message expected actual }} }}
"""
_REQUEST_PROMOTION = f"""
mutation RequestPromotion($ref: String!, $to: String!, $reason: String!) {{
  requestPromotion(ref: $ref, to: $to, reason: $reason) {{ {_PROMOTE_RESULT} }}
}}
"""
_APPROVE_PROMOTION = f"""
mutation ApprovePromotion($requestId: ID!, $comment: String) {{
  approvePromotion(requestId: $requestId, comment: $comment) {{ {_PROMOTE_RESULT} }}
}}
"""
_REJECT_PROMOTION = f"""
mutation RejectPromotion($requestId: ID!, $reason: String!) {{
  rejectPromotion(requestId: $requestId, reason: $reason) {{
    requestId version {_MV} stage by reason
  }}
}}
"""
_PROMOTE = f"""
mutation Promote($ref: String!, $to: String!, $reason: String!, $archivePrevious: Boolean!) {{
  promoteModelVersion(ref: $ref, to: $to, reason: $reason, archivePrevious: $archivePrevious) {{
    {_PROMOTE_RESULT}
  }}
}}
"""
_SET_ALIAS = f"""
mutation SetAlias($ref: String!, $alias: String!, $reason: String) {{
  setAlias(ref: $ref, alias: $alias, reason: $reason) {_MV}
}}
"""
_RECORD_DEPLOYMENT = f"""
mutation RecordDeployment($ref: String!, $environment: String!, $name: String,
                          $endpoint: String, $status: String!, $requireStage: String,
                          $reason: String, $tags: JSON) {{
  recordDeployment(ref: $ref, environment: $environment, name: $name, endpoint: $endpoint,
                   status: $status, requireStage: $requireStage, reason: $reason,
                   tags: $tags) {_MV}
}}
"""
_RETIRE_DEPLOYMENT = f"""
mutation RetireDeployment($id: ID!, $reason: String) {{
  retireDeployment(id: $id, reason: $reason) {_MV}
}}
"""
_REMOVE_ALIAS = """
mutation RemoveAlias($model: String!, $alias: String!, $reason: String) {
  removeAlias(model: $model, alias: $alias, reason: $reason)
}
"""
_ROLLBACK = """
mutation Rollback($model: String!, $stageOrAlias: String!, $reason: String!) {
  rollback(model: $model, stageOrAlias: $stageOrAlias, reason: $reason) { runIds }
}
"""
_MODEL_HISTORY = f"""
query ModelHistory($model: String!, $alias: String, $stage: String) {{
  modelHistory(model: $model, alias: $alias, stage: $stage) {{
    change version {_MV} alias fromStage toStage fromVersion toVersion actor reason at runId
    approvals
  }}
}}
"""
_HOLDER_AT = f"""
query HolderAt($model: String!, $aliasOrStage: String!, $time: DateTime!) {{
  holderAt(model: $model, aliasOrStage: $aliasOrStage, time: $time) {_MV}
}}
"""


def _promote_result(data: Any) -> Any:
    """A ``PromoteResult`` answer as the registry's own dataclass (by its ``__typename``)."""
    from lineagehub.services import registry as reg

    if not isinstance(data, Mapping):
        raise BackendError("the hub answered without a promotion result")
    kind = data.get("__typename")
    version = _model(ModelVersion, data.get("version"))
    if kind == "ModelPromoted":
        return reg.ModelPromoted(
            run_id=str(data["runId"]),
            version_id=version.node_id,
            from_stage=str(data["fromStage"]),
            to_stage=str(data["stage"]),
            archived=tuple(_model(ModelVersion, a).node_id for a in data.get("archived") or []),
            approvals=tuple(str(a) for a in data.get("approvals") or []),
        )
    if kind == "PromotionPending":
        return reg.PromotionPending(
            request_id=str(data["requestId"]),
            version_id=version.node_id,
            to_stage=str(data["stage"]),
            approvals=tuple(str(a) for a in data.get("approvals") or []),
            needed=int(data["approvalsNeeded"]),
        )
    if kind == "PolicyViolation":
        return reg.PolicyViolation(
            version_id=version.node_id,
            to_stage=str(data["stage"]),
            rules=tuple(
                reg.RuleBroken(
                    rule=str(r["rule"]),
                    message=str(r["message"]),
                    expected=r.get("expected"),
                    actual=r.get("actual"),
                )
                for r in data.get("rules") or []
            ),
        )
    raise BackendError(f"the hub answered an unknown promotion result {kind!r}")


class RemoteRegistry:
    """The model registry of a hub server (:class:`~lineagehub.registry.RegistryService`'s
    operations, answered with its dataclasses). Every change is recorded as done by the
    server's registry actor: the server decides who acts, not this client."""

    def __init__(self, connection: HubConnection) -> None:
        self.connection = connection

    def _call(self, query: str, variables: Mapping[str, Any], *, idempotent: bool) -> Any:
        return self.connection.graphql(query, variables, idempotent=idempotent)

    def request_promotion(self, ref: str, to: str, reason: str) -> Any:
        variables = {"ref": ref, "to": str(_enum_value(to)), "reason": reason}
        data = self._call(_REQUEST_PROMOTION, variables, idempotent=False)
        return _promote_result(data["requestPromotion"])

    def approve(self, request_id: str, comment: str | None = None) -> Any:
        variables = {"requestId": request_id, "comment": comment}
        data = self._call(_APPROVE_PROMOTION, variables, idempotent=False)
        return _promote_result(data["approvePromotion"])

    def reject(self, request_id: str, reason: str) -> Any:
        from lineagehub.services import registry as reg

        variables = {"requestId": request_id, "reason": reason}
        r = self._call(_REJECT_PROMOTION, variables, idempotent=False)["rejectPromotion"]
        return reg.PromotionRejected(
            request_id=str(r["requestId"]),
            version_id=_model(ModelVersion, r["version"]).node_id,
            to_stage=str(r["stage"]),
            by=str(r["by"]),
            reason=str(r["reason"]),
        )

    def promote(self, ref: str, to: str, reason: str, *, archive_previous: bool = True) -> Any:
        variables = {
            "ref": ref,
            "to": str(_enum_value(to)),
            "reason": reason,
            "archivePrevious": bool(archive_previous),
        }
        data = self._call(_PROMOTE, variables, idempotent=False)
        return _promote_result(data["promoteModelVersion"])

    def set_alias(self, ref: str, alias: str, reason: str | None = None) -> ModelVersion:
        variables = {"ref": ref, "alias": alias, "reason": reason}
        data = self._call(_SET_ALIAS, variables, idempotent=False)
        return _model(ModelVersion, data["setAlias"])

    def remove_alias(self, model: str, alias: str, reason: str | None = None) -> None:
        variables = {"model": model, "alias": alias, "reason": reason}
        self._call(_REMOVE_ALIAS, variables, idempotent=False)

    def deploy(
        self,
        ref: str,
        environment: str,
        *,
        name: str | None = None,
        endpoint: str | None = None,
        status: Any = "active",
        require_stage: str | None = None,
        reason: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Deployment:
        variables = {
            "ref": ref,
            "environment": environment,
            "name": name,
            "endpoint": endpoint,
            "status": str(_enum_value(status)),
            "requireStage": str(_enum_value(require_stage)) if require_stage else None,
            "reason": reason,
            "tags": _tags(tags),
        }
        data = self._call(_RECORD_DEPLOYMENT, variables, idempotent=False)
        return _model(Deployment, data["recordDeployment"])

    def retire_deployment(self, deployment_id: str, reason: str | None = None) -> Deployment:
        variables = {"id": deployment_id, "reason": reason}
        data = self._call(_RETIRE_DEPLOYMENT, variables, idempotent=False)
        return _model(Deployment, data["retireDeployment"])

    def rollback(self, model: str, stage_or_alias: str, reason: str) -> list[str]:
        variables = {"model": model, "stageOrAlias": str(_enum_value(stage_or_alias)),
                     "reason": reason}  # fmt: skip
        data = self._call(_ROLLBACK, variables, idempotent=False)
        return [str(i) for i in data["rollback"]["runIds"]]

    def history(self, model: str, alias: str | None = None, stage: str | None = None) -> Any:
        from lineagehub.services import registry as reg

        variables = {
            "model": model,
            "alias": alias,
            "stage": str(_enum_value(stage)) if stage is not None else None,
        }
        entries = []
        for e in self._call(_MODEL_HISTORY, variables, idempotent=True)["modelHistory"]:
            is_alias = e.get("alias") is not None
            at = _parse_time(e["at"])
            if at is None:
                raise BackendError("the hub answered a registry change without its time")
            entries.append(
                reg.HistoryEntry(
                    version=_model(ModelVersion, e["version"]).version,
                    from_=e["fromVersion"] if is_alias else e["fromStage"],
                    to=e["toVersion"] if is_alias else e["toStage"],
                    actor=str(e["actor"]),
                    reason=e.get("reason"),
                    at=at,
                    run_id=str(e["runId"]),
                    change=str(e["change"]),
                    alias=e.get("alias"),
                    approvals=tuple(str(a) for a in e.get("approvals") or []),
                )
            )
        return entries

    def holder_at(self, model: str, alias_or_stage: str, time: datetime) -> ModelVersion | None:
        if not isinstance(time, datetime):
            raise ValidationError("time must be a datetime", field="time")
        variables = {
            "model": model,
            "aliasOrStage": str(_enum_value(alias_or_stage)),
            "time": to_iso(time, "time"),
        }
        found = self._call(_HOLDER_AT, variables, idempotent=True)["holderAt"]
        return _model(ModelVersion, found) if found is not None else None


# --------------------------------------------------------------------------- models

_LISTINGS = {
    field: f"""
query List($where: JSON, $orderBy: [String!], $first: Int!, $after: String) {{
  {field}(where: $where, orderBy: $orderBy, first: $first, after: $after) {{
    edges {{ node {{ {_NODE} }} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}
"""
    for field in ("models", "modelVersions")
}
_NODE_BY_REF = f"""
query NodeByRef($ref: String!) {{ node(ref: $ref) {{ {_NODE} }} }}
"""
_SET_DIFF = "{ added { id } removed { id } }"
_COMPARE_MODEL_VERSIONS = f"""
query CompareModelVersions($a: String!, $b: String!) {{
  compareModelVersions(a: $a, b: $b) {{
    a {{ id }} b {{ id }}
    datasets {_SET_DIFF} commits {_SET_DIFF} environments {_SET_DIFF}
    paramsAdded {{ key a b }} paramsRemoved {{ key a b }} paramsChanged {{ key a b }}
    metricDeltas {{ key a b delta }}
    truncated
  }}
}}
"""


class RemoteModels:
    """Model listing, search, look-up and comparison on a hub server."""

    def __init__(self, connection: HubConnection) -> None:
        self.connection = connection

    def _call(self, query: str, variables: Mapping[str, Any]) -> Any:
        return self.connection.graphql(query, variables, idempotent=True)

    def _page(
        self,
        field: str,
        where: Mapping[str, Any] | None,
        order_by: Sequence[str] | str | None,
        after: str | None,
        limit: int,
    ) -> tuple[list[dict[str, Any]], str | None]:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        if where is not None and not isinstance(where, Mapping):
            raise ValidationError("where must be a mapping", field="where")
        order = [order_by] if isinstance(order_by, str) else order_by
        found: list[dict[str, Any]] = []
        cursor = after
        while True:
            variables = {
                "where": dict(where) if where is not None else None,
                "orderBy": list(order) if order is not None else None,
                "first": min(limit - len(found), _SERVER_PAGE),
                "after": cursor,
            }
            page = self._call(_LISTINGS[field], variables)[field]
            found += [e["node"] for e in page["edges"]]
            more = bool(page["pageInfo"]["hasNextPage"])
            cursor = page["pageInfo"]["endCursor"] if more else None
            if not more or len(found) >= limit:
                return found, cursor

    def list_models(
        self,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Model], str | None]:
        found, cursor = self._page("models", where, order_by, after, limit)
        return [_model(Model, n) for n in found], cursor

    def search_model_versions(
        self,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[ModelVersion], str | None]:
        found, cursor = self._page("modelVersions", where, order_by, after, limit)
        return [_model(ModelVersion, n) for n in found], cursor

    def get_model_version(self, ref: str) -> ModelVersion:
        if not isinstance(ref, str) or not ref:
            raise ValidationError("ref must be a non-empty string", field="ref")
        found = self._call(_NODE_BY_REF, {"ref": ref})["node"]
        if found is None:
            raise NotFoundError(f"no model version {ref!r}", ids=[ref])
        if found.get("kind") not in (NodeKind.MODEL_VERSION.name, NodeKind.MODEL_VERSION.value):
            raise ValidationError(f"{ref!r} is not a model version", field="ref")
        return _model(ModelVersion, found)

    def compare_model_versions(self, a: str, b: str) -> dict[str, Any]:
        from lineagehub.ingest.client import diff_summary

        d = self._call(_COMPARE_MODEL_VERSIONS, {"a": a, "b": b})["compareModelVersions"]

        def ids(name: str) -> tuple[list[str], list[str]]:
            part = d[name]
            return [n["id"] for n in part["added"]], [n["id"] for n in part["removed"]]

        return diff_summary(
            d["a"]["id"],
            d["b"]["id"],
            {name: ids(name) for name in ("datasets", "commits", "environments")},
            [(p["key"], p["b"]) for p in d["paramsAdded"]],
            [(p["key"], p["a"]) for p in d["paramsRemoved"]],
            [(p["key"], p["a"], p["b"]) for p in d["paramsChanged"]],
            [(m["key"], m["a"], m["b"], m["delta"]) for m in d["metricDeltas"]],
            d["truncated"],
        )


_LINEAGE = """
query Lineage($input: LineageInput!) {
  lineage(input: $input) {
    nodes {
      node { id kind createdAt updatedAt properties }
      distance reachedFrom direction
    }
    edges { id source target kind eventTime ingestedAt assertedBy properties }
    truncated truncationReason
  }
}
"""
_COMPARE_RUNS = """
query CompareRuns($ids: [String!]!) {
  compareRuns(ids: $ids) {
    runs { id }
    params { key values differs }
    metrics { key last min max differs }
    inputs { node { id kind } roles usedByAll }
    inputsOnlyIn code codeDiffers environments environmentDiffers
  }
}
"""


def _kind_names(kinds: Sequence[Any] | None, enum_type: Any, field: str) -> list[str] | None:
    """GraphQL enum names for node or edge kinds given as enum members, labels or names; an
    unknown one is a :class:`ValidationError` here, as the embedded service raises."""
    if kinds is None:
        return None
    if isinstance(kinds, str) or not isinstance(kinds, Sequence):
        raise ValidationError(f"{field} must be a list of kinds", field=field)
    names = []
    for kind in kinds:
        value = kind.value if isinstance(kind, enum_type) else kind
        member = next((k for k in enum_type if value in (k.value, k.name)), None)
        if member is None:
            known = ", ".join(k.value for k in enum_type)
            raise ValidationError(f"{field}: unknown kind {value!r:.60} (known: {known})", field)
        names.append(member.name)
    return names


def _full_node(data: Mapping[str, Any]) -> Node:
    node = _node(data)
    return dataclasses.replace(
        node,
        created_at=_parse_time(data.get("createdAt")),
        updated_at=_parse_time(data.get("updatedAt")),
    )


class RemoteLineage:
    """Lineage traces and run comparisons on a hub server, answered as the embedded
    :class:`~lineagehub.lineage.LineageService` answers them."""

    def __init__(self, connection: HubConnection) -> None:
        self.connection = connection

    def lineage(
        self,
        roots: Sequence[str],
        direction: Any = "UPSTREAM",
        upstream_depth: int = 3,
        downstream_depth: int = 3,
        *,
        node_kinds: Sequence[Any] | None = None,
        edge_kinds: Sequence[Any] | None = None,
        stop_at: Sequence[Any] | None = None,
        pass_through: Sequence[Any] | None = None,
        as_of: datetime | None = None,
        max_nodes: int = 5000,
    ) -> Any:
        from lineagehub.graph import Direction, Edge, Subgraph, TraversedNode, TruncationReason
        from lineagehub.vocabulary import EdgeKind

        if isinstance(roots, str) or not isinstance(roots, Sequence) or not roots:
            raise ValidationError("roots: give at least one reference", field="roots")
        try:
            way = Direction(_enum_value(direction))
        except ValueError:
            raise ValidationError(
                f"direction must be one of {[d.value for d in Direction]}, got {direction!r:.50}",
                field="direction",
            ) from None
        variables = {
            "input": {
                "roots": [str(r) for r in roots],
                "direction": way.value,
                "upstreamDepth": upstream_depth,
                "downstreamDepth": downstream_depth,
                "nodeKinds": _kind_names(node_kinds, NodeKind, "node_kinds"),
                "edgeKinds": _kind_names(edge_kinds, EdgeKind, "edge_kinds"),
                "stopAt": _kind_names(stop_at, NodeKind, "stop_at"),
                "passThrough": _kind_names(pass_through, NodeKind, "pass_through"),
                "asOf": to_iso(as_of, "as_of") if as_of is not None else None,
                "maxNodes": max_nodes,
            }
        }
        data = self.connection.graphql(_LINEAGE, variables, idempotent=True)["lineage"]
        edge_kinds_by_name = {k.name: k.value for k in EdgeKind}
        nodes: dict[str, TraversedNode] = {}
        for item in data["nodes"]:
            node = _full_node(item["node"])
            reached = item.get("reachedFrom")
            way_in = item.get("direction")
            nodes[node.id] = TraversedNode(
                node=node,
                distance=int(item["distance"]),
                reached_from=str(reached) if reached is not None else None,
                direction=Direction(way_in) if way_in is not None else None,
            )
        edges = [
            Edge(
                source=str(e["source"]),
                target=str(e["target"]),
                kind=edge_kinds_by_name.get(e["kind"], str(e["kind"])),
                props=dict(e.get("properties") or {}),
                event_time=_parse_time(e.get("eventTime")),
                asserted_by=e.get("assertedBy"),
                id=str(e["id"]),
                ingested_at=_parse_time(e.get("ingestedAt")),
            )
            for e in data["edges"]
        ]
        reason = data.get("truncationReason")
        return Subgraph(
            nodes=nodes,
            edges=edges,
            truncated=bool(data["truncated"]),
            truncation_reason=TruncationReason(reason) if reason is not None else None,
        )

    def compare_runs(self, run_ids: Sequence[str]) -> dict[str, Any]:
        if isinstance(run_ids, str) or not isinstance(run_ids, Sequence):
            raise ValidationError("run_ids must be a list of run ids", field="run_ids")
        r = self.connection.graphql(_COMPARE_RUNS, {"ids": list(run_ids)}, idempotent=True)[
            "compareRuns"
        ]
        return {
            "runs": [n["id"] for n in r["runs"]],
            "params": [
                {"key": p["key"], "values": list(p["values"]), "differs": p["differs"]}
                for p in r["params"]
            ],
            "metrics": [
                {k: m[k] for k in ("key", "last", "min", "max", "differs")} for m in r["metrics"]
            ],
            "inputs": [
                {
                    "id": i["node"]["id"],
                    "label": _LABELS.get(i["node"]["kind"], i["node"]["kind"]),
                    "roles": [list(x) for x in i["roles"]],
                    "used_by_all": i["usedByAll"],
                }
                for i in r["inputs"]
            ],
            "inputs_only_in": [list(x) for x in r["inputsOnlyIn"]],
            "code": list(r["code"]),
            "code_differs": r["codeDiffers"],
            "environments": list(r["environments"]),
            "environment_differs": r["environmentDiffers"],
        }


__all__ = [
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "HubConnection",
    "RemoteArtifactStore",
    "RemoteLineage",
    "RemoteModels",
    "RemoteRegistry",
    "RemoteTracking",
    "check_url",
    "hub_error",
    "is_url",
]
