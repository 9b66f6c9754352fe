"""The SDK's remote mode: the tracking service and the artifact store of a hub server, over HTTP.

``Client("http://hub:8000")`` (or ``LINEAGEHUB_URL``) uses these instead of opening the stores
itself. They answer exactly as :class:`~lineagehub.services.tracking.TrackingService` and
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
import enum
import functools
import hashlib
import importlib.util
import io
import json
import os
import random
import threading
import time
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast
from urllib.parse import urlsplit

import graphql
import httpx

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
from lineagehub.graph import Direction, Edge, Node, SeriesPoint, Subgraph, TraversedNode
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
from lineagehub.graph.model import TruncationReason, metric_from_wire, metric_to_wire, to_iso
from lineagehub.graph.store import MAX_PAGE
from lineagehub.ingest.seam import Backend, PromoteResult
from lineagehub.services.lineage import LineageDiff, RunComparison
from lineagehub.services.registry import (
    HistoryEntry,
    ModelPromoted,
    Policy,
    PromotionPending,
    PromotionRefused,
    PromotionRejected,
)
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
    EdgeKind,
    ModelVersion,
    NodeKind,
    NodeModel,
    Run,
    RunStatus,
    UsedRole,
    from_node,
    member,
)

if TYPE_CHECKING:
    from lineagehub.vocabulary import DatasetFingerprint

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

_LABELS = {**{k.name: k.value for k in NodeKind}, **{k.value: k.value for k in NodeKind}}


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
        digest, size = hash_file(p, self.chunk_size)
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


# --------------------------------------------------------------------------- answers


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None


def _full_node(data: Mapping[str, Any]) -> Node:
    kind = str(data.get("kind"))
    return Node(
        id=str(data["id"]),
        label=_LABELS.get(kind, kind),
        props=dict(data.get("properties") or {}),
        created_at=_parse_time(data.get("createdAt")),
        updated_at=_parse_time(data.get("updatedAt")),
    )


def _model(cls: type[M], data: Any) -> M:
    if not isinstance(data, Mapping):
        raise BackendError(f"the hub answered without the {cls.__name__}")
    model = from_node(_full_node(data))
    if not isinstance(model, cls):
        raise BackendError(f"the hub answered a {type(model).__name__}, not a {cls.__name__}")
    return model


def _json_default(value: Any) -> Any:
    # numpy values in data the server validates (evaluation data, signatures, profiles)
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON data")


# --------------------------------------------------------------------------- the wire
#
# Each call names a root field of the committed schema (``schema.graphql``, shipped in the
# package) and the Python type it answers with. The operation is derived from both: its
# variables are declared with the field's argument types, its selection from the answer's
# type (a vocabulary model: the node's id, kind and properties; a dataclass: its fields,
# camel-cased, where :data:`_WIRE_NAMES` does not name them otherwise; a union: a fragment
# per member), and the answer is decoded into that type by the same walk.

_PROMOTION = (ModelPromoted, PromotionPending, PromotionRefused, PromotionRejected)
#: Dataclass fields whose GraphQL name is not their camel-cased name; "a.b" selects ``a { b }``
#: (over each item of a list).
_WIRE_NAMES: dict[tuple[type, str], str] = {
    **{(cls, "version_id"): "version.id" for cls in _PROMOTION},
    **{(cls, "to_stage"): "stage" for cls in _PROMOTION},
    (ModelPromoted, "archived"): "archived.id",
    (PromotionPending, "needed"): "approvalsNeeded",
}
#: GraphQL type names that differ from the dataclass's.
_TYPENAMES: dict[type, str] = {PromotionRefused: "PolicyViolation"}
_NODE_FIELDS = "{ id kind properties createdAt updatedAt }"


def _wire_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return to_iso(value, "time")
    return dict(value) if isinstance(value, Mapping) else value


def _camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(p.title() for p in rest)


@functools.cache
def _schema() -> graphql.GraphQLSchema:
    spec = importlib.util.find_spec("lineagehub.schema")
    if spec is None or spec.origin is None:  # pragma: no cover - part of the package
        raise ConfigError("the package's GraphQL schema is missing")
    return graphql.build_schema(Path(spec.origin).with_name("schema.graphql").read_text())


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _members(tp: Any) -> tuple[Any, ...]:
    """The types of a union without ``None`` (the type itself if it is not a union)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return tuple(a for a in typing.get_args(tp) if a is not type(None))
    return (tp,)


def _is_node(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, (Node, NodeModel))


def _selection(tp: Any) -> str:
    members = _members(tp)
    if len(members) > 1:
        if not all(dataclasses.is_dataclass(m) for m in members):
            return ""  # a union of scalars
        parts = " ".join(f"... on {_TYPENAMES.get(m, m.__name__)} {_selection(m)}" for m in members)
        return f"{{ __typename {parts} }}"
    tp = members[0]
    if typing.get_origin(tp) in (list, tuple):
        return _selection(typing.get_args(tp)[0])
    if _is_node(tp):
        return _NODE_FIELDS
    if not (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
        return ""
    selected = []
    for f in dataclasses.fields(tp):
        *outer, leaf = _WIRE_NAMES.get((tp, f.name), _camel(f.name)).split(".")
        text = f"{leaf} {_selection(_hints(tp)[f.name])}".strip()
        for name in reversed(outer):
            text = f"{name} {{ {text} }}"
        selected.append(text)
    return "{ " + " ".join(selected) + " }"


def _decode(tp: Any, data: Any) -> Any:
    """``data`` (the JSON of a GraphQL answer) as ``tp``."""
    if data is None:
        return None
    members = _members(tp)
    if len(members) > 1:
        if not all(dataclasses.is_dataclass(m) for m in members):
            return data
        names = {_TYPENAMES.get(m, m.__name__): m for m in members}
        if data.get("__typename") not in names:
            raise BackendError(f"the hub answered an unknown {data.get('__typename')!r}")
        return _decode(names[data["__typename"]], data)
    tp = members[0]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list or (origin is tuple and args[-1:] == (...,)):
        return origin(_decode(args[0], x) for x in data)
    if origin is tuple:
        return tuple(_decode(a, x) for a, x in zip(args, data))
    if tp is Node:
        return _full_node(data)
    if isinstance(tp, type) and issubclass(tp, NodeModel):
        return _model(tp, data)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        values = {}
        for f in dataclasses.fields(tp):
            value = data
            for name in _WIRE_NAMES.get((tp, f.name), _camel(f.name)).split("."):
                value = [v[name] for v in value] if isinstance(value, list) else value[name]
            values[f.name] = _decode(_hints(tp)[f.name], value)
        return tp(**values)
    if tp is datetime:
        return _parse_time(data)
    if tp is float:
        return metric_from_wire(data)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp[data] if data in tp.__members__ else tp(data)
    return data


_PAGE = f"{{ edges {{ node {_NODE_FIELDS} }} pageInfo {{ hasNextPage endCursor }} }}"


class _Wire:
    """GraphQL calls on a hub connection, derived from the schema and the answer's type."""

    def __init__(self, connection: HubConnection) -> None:
        self.connection = connection

    def raw(
        self,
        field: str,
        selection: str,
        *,
        idempotent: bool,
        reconcile: Callable[[HubError], dict[str, Any] | None] | None = None,
        **args: Any,
    ) -> Any:
        """Call root field ``field`` with the arguments that are not ``None``, named as in
        Python (``run_id``: ``runId``); its answer as JSON."""
        variables = {_camel(k): _wire_value(v) for k, v in args.items() if v is not None}
        query = _operation(field, selection, tuple(sorted(variables)))
        return self.connection.graphql(
            query, variables, idempotent=idempotent, reconcile=reconcile
        )[field]

    def call(self, field: str, returns: Any, **args: Any) -> Any:
        """Call root field ``field``; its answer decoded as ``returns``."""
        return _decode(returns, self.raw(field, _selection(returns), **args))

    def page(
        self,
        field: str,
        model: type[M],
        where: Mapping[str, Any] | None,
        order_by: Sequence[str] | str | None,
        after: str | None,
        limit: int,
    ) -> tuple[list[M], str | None]:
        """One page of a listing (``runs``, ``models`` ...), fetched in parts of the server's
        page size."""
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        if where is not None and not isinstance(where, Mapping):
            raise ValidationError("where must be a mapping", field="where")
        order = [order_by] if isinstance(order_by, str) else order_by
        found: list[M] = []
        cursor = after
        while True:
            page = self.raw(
                field,
                _PAGE,
                idempotent=True,
                where=dict(where) if where is not None else None,
                orderBy=list(order) if order is not None else None,
                first=min(limit - len(found), _SERVER_PAGE),
                after=cursor,
            )
            found += [_model(model, e["node"]) for e in page["edges"]]
            info = page["pageInfo"]
            cursor = info["endCursor"] if info["hasNextPage"] else None
            if cursor is None or len(found) >= limit:
                return found, cursor


@functools.cache
def _operation(field: str, selection: str, variables: tuple[str, ...]) -> str:
    schema = _schema()
    mutation = schema.mutation_type
    root = mutation if mutation is not None and field in mutation.fields else schema.query_type
    assert root is not None
    definition = root.fields[field]
    # a variable is the field's argument, or one of a field of its answer (metricSeries' key)
    inner = graphql.get_named_type(definition.type)
    args = dict(definition.args)
    for f in getattr(inner, "fields", {}).values():
        args = {**f.args, **args}
    declared = ", ".join(f"${v}: {args[v].type}" for v in variables)
    passed = ", ".join(f"{v}: ${v}" for v in variables if v in definition.args)
    name = field[0].upper() + field[1:]
    call = f"{field}({passed})" if passed else field
    head = f"{name}({declared})" if variables else name
    return f"{'mutation' if root is mutation else 'query'} {head} {{ {call} {selection} }}"


# --------------------------------------------------------------------------- tracking


def _metrics(metrics: Sequence[Metric] | None) -> list[dict[str, Any]]:
    """Metric points as ``MetricInput`` values, checked as the service checks them."""
    if metrics is not None and len(metrics) > MAX_BATCH_POINTS:
        raise ValidationError(
            f"a batch holds at most {MAX_BATCH_POINTS} metric points", field="metrics"
        )
    out, keys = [], set()  # a run has a handful of keys and thousands of points
    for m in metrics or ():
        value = m.value
        if type(value) is not float or type(m.step) is not int or m.key not in keys:
            value = check_metric(m.key, value, m.step)
            keys.add(m.key)
        timestamp = to_iso(m.timestamp, f"metrics.{m.key}.timestamp")
        out.append(
            {"key": m.key, "value": metric_to_wire(value), "step": m.step, "timestamp": timestamp}
        )
    return out


#: The metric points one GraphQL request carries at most, as JSON: half the server's default
#: request limit (``LINEAGEHUB_MAX_REQUEST_BYTES``, 1 MiB), leaving room for params and tags.
REQUEST_POINTS_BYTES = 512 * 1024


def _point_chunks(points: list[dict[str, Any]]) -> list[list[dict[str, Any]] | None]:
    """``points`` in consecutive chunks of at most :data:`REQUEST_POINTS_BYTES` as JSON (one
    ``None`` chunk for none)."""
    chunks: list[list[dict[str, Any]] | None] = []
    current: list[dict[str, Any]] = []
    size = 0
    for point in points:
        n = 6 * len(point["key"]) + 110  # key (escaped at most 6x), value, step, time, commas
        if current and size + n > REQUEST_POINTS_BYTES:
            chunks.append(current)
            current, size = [], 0
        current.append(point)
        size += n
    return [*chunks, current or None]


#: Run fields sent to ``startRun`` (``StartRunInput``) under other names.
_RUN_INPUT = {"kind": "runKind", "entry_point": "entryPoint"}
_RUN_FIELDS = (
    "id",
    "name",
    "kind",
    "project",
    "experiment",
    "tags",
    "params",
    "parent",
    "user",
    "host",
    "entry_point",
    "description",
)


class RemoteTracking:
    """The tracking service's calls (:class:`~lineagehub.ingest.seam.Tracking`) served by a
    hub server; ``artifacts`` is its :class:`RemoteArtifactStore`, on the same connection."""

    def __init__(
        self,
        url: str | HubConnection,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not isinstance(url, HubConnection):
            url = HubConnection(
                url, timeout=timeout, retries=retries, backoff=backoff, transport=transport
            )
        self.connection, self.url = url, url.url
        self.wire = _Wire(url)
        self.artifacts = RemoteArtifactStore(url)
        # Content this process already uploaded (package lists, code diffs): a sweep starts
        # thousands of runs from one checkout and one environment.
        self._uploaded: set[str] = set()

    def close(self) -> None:
        self.connection.close()

    def __repr__(self) -> str:
        return f"RemoteTracking({self.url!r})"

    def _upload_once(self, content: bytes) -> None:
        digest = digest_bytes(content)
        if digest not in self._uploaded:
            self.artifacts.put_bytes(content)
            self._uploaded.add(digest)

    def _reconcile(self, field: str, run_id: str, prop: str, value: Any) -> Callable[..., Any]:
        """For a retry whose first attempt did arrive: a conflict is no error when the run is
        already as asked (started with this name, ended with this status)."""

        def reconcile(error: HubError) -> dict[str, Any] | None:
            if isinstance(error, ConflictError):
                found = self.wire.raw("nodes", _NODE_FIELDS, idempotent=True, ids=[run_id])[0]
                if found is not None and found["properties"].get(prop) == value:
                    return {field: found}
            return None

        return reconcile

    def start_run(self, run: Run, start: RunStart | None = None) -> Run:
        start = start or RunStart()
        if run.status is not RunStatus.RUNNING:
            raise ValidationError("a run starts RUNNING", field="status")
        fields = {_RUN_INPUT.get(k, k): _wire_value(getattr(run, k)) for k in _RUN_FIELDS}
        if start.code is not None:
            if start.code.diff is not None:
                self._upload_once(start.code.diff)
            fields["code"] = start.code.commit.model_dump(mode="json", exclude_none=True)
        if start.environment is not None:
            if start.environment.packages_text:
                self._upload_once(start.environment.packages_text)
            env = start.environment.environment
            fields["environment"] = env.model_dump(mode="json", exclude_none=True)
        return self.wire.call(
            "startRun",
            Run,
            idempotent=True,
            input={k: v for k, v in fields.items() if v is not None},
            reconcile=self._reconcile("startRun", run.id, "name", run.name),
        )

    def _batch(self, run_id: str, metrics: Sequence[Metric] | None) -> list[dict[str, Any]] | None:
        """Sends all but the last request's worth of points; returns the last."""
        *first, last = _point_chunks(_metrics(metrics))
        for chunk in first:
            self.wire.raw("logBatch", "{ runId }", idempotent=True, run_id=run_id, metrics=chunk)
        return last

    def log_batch(
        self, run_id: str, *, metrics: Sequence[Metric] | None = None, **values: Any
    ) -> None:
        """In one transaction when the points fit one request (:data:`REQUEST_POINTS_BYTES`),
        else the points in several, the params and tags with the last. Idempotent: the same
        params again are accepted, points replace the same step's."""
        last = self._batch(run_id, metrics)
        self.wire.raw(
            "logBatch", "{ runId }", idempotent=True, run_id=run_id, metrics=last, **values
        )

    def end_run(
        self,
        run_id: str,
        status: RunStatus | str = RunStatus.FINISHED,
        error: str | None = None,
        *,
        metrics: Sequence[Metric] | None = None,
        **values: Any,
    ) -> Run:
        status = _wire_value(status)
        return self.wire.call(
            "endRun",
            Run,
            idempotent=True,
            run_id=run_id,
            status=status,
            error=error,
            metrics=self._batch(run_id, metrics),
            **values,
            reconcile=self._reconcile("endRun", run_id, "status", status),
        )

    def get_run(self, run_id: str) -> Run:
        return self.wire.call("run", Run, idempotent=True, id=run_id)

    def mark_stale_runs(self) -> list[str]:
        return self.wire.call("markStaleRuns", list[str], idempotent=True)

    def search_runs(
        self,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Run], str | None]:
        return self.wire.page("runs", Run, where, order_by, after, limit)

    def metric_history(
        self, run_id: str, key: str, max_points: int | None = None
    ) -> list[SeriesPoint]:
        if max_points is not None and (
            not isinstance(max_points, int) or isinstance(max_points, bool) or max_points < 2
        ):
            raise ValidationError("max_points must be at least 2", field="max_points")
        series = self.wire.raw(
            "run",
            "{ metricSeries(key: $key, maxPoints: $maxPoints) { step value timestamp } }",
            idempotent=True,
            id=run_id,
            key=key,
            max_points=min(max_points or _ALL_POINTS, _ALL_POINTS),
        )["metricSeries"]
        return [
            SeriesPoint(
                run_id, key, p["step"], metric_from_wire(p["value"]), _parse_time(p["timestamp"])
            )
            for p in series
        ]

    def log_dataset(
        self,
        run_id: str,
        fingerprint: DatasetFingerprint,
        *,
        name: str | None = None,
        namespace: str | None = None,
        role: UsedRole | str = UsedRole.TRAIN,
        derived_from: Iterable[str] = (),
        **options: Any,
    ) -> DatasetVersion:
        """Files are named here, on the client (``file://<this host>``, the path): the file is
        where the client runs, not where the server does. Idempotent: the same content is the
        same version, edges are upserted."""
        namespace, name = dataset_name(fingerprint, name, namespace)
        dataset = {
            "fingerprint": dataclasses.asdict(fingerprint),
            "name": name,
            "namespace": namespace,
            "role": _wire_value(role),
            "derivedFrom": [str(s) for s in derived_from],
        }
        dataset.update({_camel(k): v for k, v in options.items()})
        return self.wire.call(
            "logDataset", DatasetVersion, idempotent=True, run_id=run_id, input=dataset
        )

    def log_artifact(
        self,
        run_id: str,
        info: ArtifactInfo,
        *,
        name: str,
        kind: ArtifactKind | str = ArtifactKind.OTHER,
        **options: Any,
    ) -> Artifact:
        return self.wire.call(
            "logArtifact",
            Artifact,
            idempotent=True,
            run_id=run_id,
            digest=info.digest,
            name=name,
            artifact_kind=member(ArtifactKind, kind, "kind"),
            **options,
        )

    def artifacts_of(self, run_id: str) -> list[tuple[str, Artifact]]:
        found = self.wire.raw(
            "run",
            f"{{ evaluations {{ node {_NODE_FIELDS} edge {{ properties }} }} }}",
            idempotent=True,
            id=run_id,
        )["evaluations"]
        named = [
            (str(x["edge"]["properties"].get("name", "")), _model(Artifact, x["node"]))
            for x in found
        ]
        return sorted(named, key=lambda x: x[0])

    def log_model(
        self, run_id: str, info: ArtifactInfo, *, name: str, **options: Any
    ) -> ModelVersion:
        """Not retried once sent: a repeat would register another version."""
        return self.wire.call(
            "logModel",
            ModelVersion,
            idempotent=False,
            run_id=run_id,
            digest=info.digest,
            name=name,
            **options,
        )


# --------------------------------------------------------------------------- registry


class RemoteRegistry:
    """The model registry of a hub server (:class:`~lineagehub.ingest.seam.Registry`). Every
    change is recorded as done by the server's registry actor: the server decides who acts."""

    def __init__(self, wire: _Wire) -> None:
        self.wire = wire

    def _change(self, field: str, returns: Any, **args: Any) -> Any:
        return self.wire.call(field, returns, idempotent=False, **args)

    def request_promotion(self, ref: str, to: str, reason: str) -> PromoteResult:
        return self._change("requestPromotion", PromoteResult, ref=ref, to=to, reason=reason)

    def approve(self, request_id: str, comment: str | None = None) -> PromoteResult:
        return self._change(
            "approvePromotion", PromoteResult, request_id=request_id, comment=comment
        )

    def reject(self, request_id: str, reason: str) -> PromotionRejected:
        return self._change(
            "rejectPromotion", PromotionRejected, request_id=request_id, reason=reason
        )

    def promote(self, ref: str, to: str, reason: str, **options: Any) -> PromoteResult:
        return self._change(
            "promoteModelVersion", PromoteResult, ref=ref, to=to, reason=reason, **options
        )

    def set_alias(self, ref: str, alias: str, reason: str | None = None) -> ModelVersion:
        return self._change("setAlias", ModelVersion, ref=ref, alias=alias, reason=reason)

    def remove_alias(self, model: str, alias: str, reason: str | None = None) -> None:
        self._change("removeAlias", bool, model=model, alias=alias, reason=reason)

    def deploy(self, ref: str, environment: str, **options: Any) -> Deployment:
        return self._change(
            "recordDeployment", Deployment, ref=ref, environment=environment, **options
        )

    def retire_deployment(self, deployment_id: str, reason: str | None = None) -> Deployment:
        return self._change("retireDeployment", Deployment, id=deployment_id, reason=reason)

    def rollback(self, model: str, stage_or_alias: str, reason: str) -> list[str]:
        return self.wire.raw(
            "rollback",
            "{ runIds }",
            idempotent=False,
            model=model,
            stage_or_alias=stage_or_alias,
            reason=reason,
        )["runIds"]

    def history(
        self, model: str, alias: str | None = None, stage: str | None = None
    ) -> list[HistoryEntry]:
        changes = self.wire.raw(
            "modelHistory",
            "{ change version { properties } alias fromStage toStage "
            "fromVersion toVersion actor reason at runId approvals }",
            idempotent=True,
            model=model,
            alias=alias,
            stage=stage,
        )
        return [
            HistoryEntry(
                version=c["version"]["properties"]["version"],
                from_=c["fromVersion"] if c["alias"] is not None else c["fromStage"],
                to=c["toVersion"] if c["alias"] is not None else c["toStage"],
                actor=c["actor"],
                reason=c["reason"],
                at=_decode(datetime, c["at"]),
                run_id=c["runId"],
                change=c["change"],
                alias=c["alias"],
                approvals=tuple(c["approvals"]),
            )
            for c in changes
        ]

    def holder_at(self, model: str, alias_or_stage: str, time: datetime) -> ModelVersion | None:
        if not isinstance(time, datetime):
            raise ValidationError("time must be a datetime", field="time")
        return self.wire.call(
            "holderAt",
            ModelVersion | None,
            idempotent=True,
            model=model,
            alias_or_stage=alias_or_stage,
            time=time,
        )


# --------------------------------------------------------------------------- queries


def _kind_names(kinds: Sequence[Any] | None, enum_type: Any, field: str) -> list[str] | None:
    """GraphQL enum names for kinds given as enum members, values or names; an unknown one is
    a :class:`ValidationError` here, as the embedded service raises."""
    if kinds is None:
        return None
    if isinstance(kinds, str) or not isinstance(kinds, Sequence):
        raise ValidationError(f"{field} must be a list of kinds", field=field)
    names = []
    for kind in kinds:
        value = getattr(kind, "value", kind)
        found = next((k for k in enum_type if value in (k.value, k.name)), None)
        if found is None:
            known = ", ".join(k.value for k in enum_type)
            raise ValidationError(f"{field}: unknown kind {value!r:.60} (known: {known})", field)
        names.append(found.name)
    return names


_LINEAGE = (
    f"{{ nodes {{ node {_NODE_FIELDS} distance reachedFrom direction }} "
    "edges { id source target kind eventTime ingestedAt assertedBy properties } "
    "truncated truncationReason }"
)
_LISTINGS = {
    NodeKind.RUN: "runs",
    NodeKind.MODEL: "models",
    NodeKind.MODEL_VERSION: "modelVersions",
}


class RemoteQueries:
    """Look-ups, listings, lineage and comparisons on a hub server
    (:class:`~lineagehub.ingest.seam.Queries`)."""

    def __init__(self, wire: _Wire) -> None:
        self.wire = wire

    def find(
        self,
        model: type[M],
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] | str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[M], str | None]:
        return self.wire.page(_LISTINGS[model.node_kind], model, where, order_by, after, limit)

    def model_version(self, ref: str) -> ModelVersion:
        if not isinstance(ref, str) or not ref:
            raise ValidationError("ref must be a non-empty string", field="ref")
        found = self.wire.raw("node", _NODE_FIELDS, idempotent=True, ref=ref)
        if found is None:
            raise NotFoundError(f"no model version {ref!r}", ids=[ref])
        if found["kind"] != NodeKind.MODEL_VERSION.name:
            raise ValidationError(f"{ref!r} is not a model version", field="ref")
        return _model(ModelVersion, found)

    def lineage(
        self,
        roots: Sequence[str],
        direction: Direction | str = Direction.UPSTREAM,
        upstream_depth: int = 3,
        downstream_depth: int = 3,
        *,
        node_kinds: Sequence[NodeKind | str] | None = None,
        edge_kinds: Sequence[str] | None = None,
        stop_at: Sequence[NodeKind | str] | None = None,
        pass_through: Sequence[NodeKind | str] | None = None,
        as_of: datetime | None = None,
        max_nodes: int = 5000,
    ) -> Subgraph:
        if isinstance(roots, str) or not isinstance(roots, Sequence) or not roots:
            raise ValidationError("roots: give at least one reference", field="roots")
        query = {
            "roots": [str(r) for r in roots],
            "direction": (_kind_names([direction], Direction, "direction") or ["UPSTREAM"])[0],
            "upstreamDepth": upstream_depth,
            "downstreamDepth": downstream_depth,
            "nodeKinds": _kind_names(node_kinds, NodeKind, "node_kinds"),
            "edgeKinds": _kind_names(edge_kinds, EdgeKind, "edge_kinds"),
            "stopAt": _kind_names(stop_at, NodeKind, "stop_at"),
            "passThrough": _kind_names(pass_through, NodeKind, "pass_through"),
            "asOf": to_iso(as_of, "as_of") if as_of is not None else None,
            "maxNodes": max_nodes,
        }
        data = self.wire.raw("lineage", _LINEAGE, idempotent=True, input=query)
        nodes = [
            TraversedNode(
                _full_node(n["node"]),
                n["distance"],
                n["reachedFrom"],
                _decode(Direction | None, n["direction"]),
            )
            for n in data["nodes"]
        ]
        edges = [
            Edge(
                e["source"],
                e["target"],
                EdgeKind[e["kind"]].value,
                e["properties"] or {},
                _parse_time(e["eventTime"]),
                e["assertedBy"],
                e["id"],
                _parse_time(e["ingestedAt"]),
            )
            for e in data["edges"]
        ]
        reason = _decode(TruncationReason | None, data["truncationReason"])
        return Subgraph({n.node.id: n for n in nodes}, edges, data["truncated"], reason)

    def compare_runs(self, run_ids: Sequence[str]) -> RunComparison:
        if isinstance(run_ids, str) or not isinstance(run_ids, Sequence):
            raise ValidationError("run_ids must be a list of run ids", field="run_ids")
        return self.wire.call("compareRuns", RunComparison, idempotent=True, ids=list(run_ids))

    def compare_model_versions(self, a: str, b: str) -> LineageDiff:
        return self.wire.call("compareModelVersions", LineageDiff, idempotent=True, a=a, b=b)


class RemoteBackend:
    """A hub server as the SDK's :class:`~lineagehub.ingest.seam.Backend`: every call over
    one connection; the server applies its own policies."""

    policies: Mapping[Any, Policy] = {}

    def __init__(self, url: str | HubConnection, **options: Any) -> None:
        self.tracking = RemoteTracking(url, **options)
        self.artifacts = self.tracking.artifacts
        self.registry = RemoteRegistry(self.tracking.wire)
        self.queries = RemoteQueries(self.tracking.wire)

    def close(self) -> None:
        self.tracking.close()


def _contract(backend: RemoteBackend) -> Backend:  # mypy checks the backend against the contract
    return backend


__all__ = [
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "HubConnection",
    "RemoteArtifactStore",
    "RemoteBackend",
    "RemoteQueries",
    "RemoteRegistry",
    "RemoteTracking",
    "check_url",
    "hub_error",
    "is_url",
]
