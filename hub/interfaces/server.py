"""The ASGI application: GraphQL (with GraphiQL) at ``/graphql``, artifact bytes at
``/artifacts``, and a health check at ``/health``. Served by uvicorn (``lineagehub serve``).

This is the one module that joins the hub and the GraphQL schema.

Routes:

- ``POST /graphql`` (and ``GET`` for queries): the API; a browser gets GraphiQL, whose
  scripts and styles are the package's own files under ``GET /graphiql/...`` (no CDN;
  ``Settings.graphiql`` false: both answer 404).
- ``PUT /artifacts``: upload bytes (streamed to disk, then content-addressed); answers
  ``{"digest", "size", "created"}``.
- ``GET /artifacts/{digest}``: download, streamed; ``HEAD`` says whether it exists.
- ``GET /health``: ``{"status": "ok", ...}`` once the store answers, else 503.
- ``GET /``: the lineage explorer, a single-page app built from ``web/`` into the package
  (``static/explorer/``, its files under ``GET /explorer/...``); it holds no data and calls
  ``/graphql`` with the token the user signs in with (``Settings.explorer`` false: 404).
- ``GET /export/lineage/{ref}.{ext}``: the lineage around ``ref`` as a picture or a file
  (:mod:`lineagehub.services.export`); the query string takes the lineage query's options.
- ``POST /api/v1/lineage``: OpenLineage events in (:mod:`lineagehub.interfaces.lineage_api`).

With ``Settings.auth`` set, every route but ``/health`` and the pages' own files (GraphiQL's,
the explorer's: no data in them) takes ``Authorization: Bearer``
(an API token or an OIDC JWT) and acts as its principal; 401 without one
(:mod:`lineagehub.interfaces.auth`).

GraphQL request bodies are bounded (``Settings.max_request_bytes``, 1 MiB); larger ones get
413. Each GraphQL request is decoded, parsed and validated in a worker thread within
``Settings.request_time_budget`` (:mod:`lineagehub.schema.limits`), so ``/health`` keeps
answering while a hostile one is measured; a small one (16 KiB) whose query text passed the
checks before is decoded on the event loop and reuses that parsed, validated document. Every refusal, on every route, is shaped as GraphQL
errors are: ``{"errors": [{"message", "extensions": {"code", ...}}]}``. Requests whose ``Host``
is not one of ``Settings.allowed_hosts`` are refused; uploads must be
``application/octet-stream``.

Browser safety: a GraphQL POST must be ``application/json`` (415 otherwise) and a mutation
over GET is refused (405), so no form, text post or link changes anything (CSRF); CORS is off
unless ``Settings.cors_origins`` names origins (a refused preflight gets 400 ``CORS_REFUSED``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import gc
import getpass
import json
import logging
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import orjson
from graphql import GraphQLError, OperationDefinitionNode, OperationType, get_operation_ast
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.asgi import HTTPException as StrawberryHTTPException
from strawberry.http import GraphQLRequestData

from lineagehub import __version__
from lineagehub.artifacts import (
    LEFTOVER_AGE_S,
    ArtifactStore,
    FileArtifactStore,
    absent_artifact,
    open_artifact_store,
    passed_on,
    validate_digest,
)
from lineagehub.config import Settings
from lineagehub.graph import (
    BackendError,
    BackendUnavailable,
    GraphStore,
    HubError,
    NotFoundError,
    ValidationError,
    redact,
)
from lineagehub.graph.model import fast_load, parse_time
from lineagehub.interfaces.auth import ANONYMOUS, Authenticator, AuthMiddleware, SecurityAudit
from lineagehub.interfaces.lineage_api import lineage_routes
from lineagehub.interfaces.metrics import RequestMetrics, hub_metrics
from lineagehub.interfaces.metrics import routes as metrics_routes
from lineagehub.schema.authz import (
    check,
    check_download,
    check_upload,
    may_download,
    upload_receipt,
    withhold_subgraph,
)
from lineagehub.schema.errors import HubErrors
from lineagehub.schema.limits import PREPARED, check_query, checked_document, over_budget
from lineagehub.services.access import Principal, open_principal, record_missing_projects
from lineagehub.services.export import DEFAULT_COLLAPSE_ABOVE, FORMATS, SUFFIXES, export_lineage
from lineagehub.services.lineage import LineageService
from lineagehub.services.monitoring import MonitoringService
from lineagehub.services.openlineage_in import OpenLineageService
from lineagehub.services.registry import Policy, RegistryService, load_policies
from lineagehub.services.tracking import UNKNOWN_ACTOR, TrackingService
from lineagehub.services.webhooks import GraphRecorder, Outbox, WebhookDispatcher
from lineagehub.vocabulary import EdgeKind, NodeKind

log = logging.getLogger("lineagehub.server")
T = TypeVar("T")

CHUNK = 1024 * 1024
HEALTH_TIMEOUT = 5.0
_PROBE_DIGEST = "sha256:" + "0" * 64  # asked for by /health: any answer proves the store up
#: The content types ``PUT /artifacts`` accepts.
UPLOAD_TYPES = frozenset(
    {"application/octet-stream", "application/zip", "application/gzip", "application/x-tar"}
)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_STATUS = {
    "NOT_FOUND": 404,
    "VALIDATION": 400,
    "CONFLICT": 409,
    "FORBIDDEN": 403,
    "INTEGRITY": 500,
    "CONFIG": 500,
    "BACKEND": 502,
    "BACKEND_UNAVAILABLE": 503,
}


def _os_user() -> str:
    try:
        return getpass.getuser() or UNKNOWN_ACTOR
    except Exception:  # no login name (some containers)
        return UNKNOWN_ACTOR


def _coded(message: str, code: str, **extensions: Any) -> dict[str, Any]:
    """One error as GraphQL shapes them: a message and ``extensions.code``."""
    return {"message": message, "extensions": {"code": code, **extensions}}


def _refusal(status: int, message: str, code: str, **extensions: Any) -> JSONResponse:
    return JSONResponse({"errors": [_coded(message, code, **extensions)]}, status_code=status)


def _unavailable(e: HubError) -> JSONResponse:
    """/health's 503: the status, and the error shaped as every other."""
    return JSONResponse({"status": "unavailable", "errors": [_hub_error(e)]}, status_code=503)


def _hub_error(e: HubError) -> dict[str, Any]:
    extensions = e.to_dict()
    message = str(extensions.pop("message", e.message))
    return {"message": message, "extensions": extensions}


def _error(e: HubError) -> JSONResponse:
    """A hub error as an HTTP answer, shaped as GraphQL errors are (the SDK reads both)."""
    return JSONResponse({"errors": [_hub_error(e)]}, status_code=_STATUS.get(e.code, 500))


# How deep a request's JSON may nest, variables included (graphql-core coerces variables
# recursively; ~1,000 levels would exhaust its stack).
_JSON_DEPTH = 64
#: Request bodies up to this size are decoded on the event loop (tens of microseconds); when
#: their query passed the checks before, the request needs no worker thread at all.
_INLINE_BODY = 16 * 1024


class _Refused(Exception):
    """A /graphql request refused before execution: the answer is ready."""

    def __init__(
        self, status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(errors[0]["message"] if errors else "refused")
        self.status = status
        self.errors = errors
        self.headers = headers


def _json_depth_ok(value: Any, limit: int) -> bool:
    # iterative: a deep document must not exhaust the stack here either
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def _formatted(error: GraphQLError) -> dict[str, Any]:
    return dict(error.formatted)


def _bad_request(message: str) -> _Refused:
    return _Refused(400, [_coded(message, "BAD_REQUEST")])


def _decode_request(body: bytes | None, params: Mapping[str, str] | None) -> dict[str, Any]:
    """A GraphQL request (``query``, ``variables``, ``operationName``, ``extensions``) from a
    JSON body or GET parameters, with every part's type checked."""
    if body is not None:
        try:
            fast, data = fast_load(body)  # orjson, where it reads as the standard decoder
            if not fast:
                data = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise _bad_request("the request body is not UTF-8") from None
        except RecursionError:
            raise _bad_request(f"the request body nests deeper than {_JSON_DEPTH} levels") from None
        except ValueError as e:
            raise _bad_request(f"the request body is not JSON: {e}") from None
        if isinstance(data, list):
            raise _bad_request("batched requests are not supported: send one operation")
        if not isinstance(data, dict):
            raise _bad_request(
                'the request body must be a JSON object: {"query": ..., "variables": ...}'
            )
    else:
        data = dict(params or {})
        for key in ("variables", "extensions"):
            if isinstance(data.get(key), str):
                try:
                    data[key] = json.loads(data[key])
                except (ValueError, RecursionError):
                    raise _bad_request(f"{key} is not JSON") from None
    # a document nests no deeper than it has brackets: most need no walk
    if (body is None or body.count(b"[") + body.count(b"{") > _JSON_DEPTH) and not _json_depth_ok(
        data, _JSON_DEPTH
    ):
        raise _bad_request(f"the request nests deeper than {_JSON_DEPTH} levels")
    query = data.get("query")
    if not isinstance(query, str) or not query.strip():
        raise _bad_request("no GraphQL query in the request: give query as a string")
    for key in ("variables", "extensions"):
        if not isinstance(data.get(key), (dict, type(None))):
            raise _bad_request(f"{key} must be a JSON object or null")
    if not isinstance(data.get("operationName"), (str, type(None))):
        raise _bad_request("operationName must be a string or null")
    return data


def _prepare(
    schema: Any, body: bytes | None, params: Mapping[str, str] | None, budget: float
) -> tuple[dict[str, Any], Any]:
    """Decode, parse and validate a request (in a worker thread): (request data, document);
    :class:`_Refused` with the errors otherwise."""
    return _checked(schema, _decode_request(body, params), params, budget)


def _checked(
    schema: Any, data: dict[str, Any], params: Mapping[str, str] | None, budget: float
) -> tuple[dict[str, Any], Any]:
    """:func:`_prepare` after the decoding."""
    document, errors = check_query(schema._schema, data["query"], budget)
    if errors:
        # coded as the schema codes errors during execution (a literal's HubError keeps its own)
        raise _Refused(200, [_formatted(HubErrors.shape(e)) for e in errors])
    _method_allowed(document, data, params)
    return data, document


def _method_allowed(document: Any, data: dict[str, Any], params: Mapping[str, str] | None) -> None:
    """Refuse a mutation sent as GET (405)."""
    if params is not None and document is not None:
        operation = get_operation_ast(document, data.get("operationName"))
        if operation is not None and operation.operation != OperationType.QUERY:
            # a link or an <img> must never change anything (nor a GET-only CSRF)
            kind = operation.operation.value
            raise _Refused(
                405,
                [_coded(f"send a {kind} as a POST with application/json", "METHOD_NOT_ALLOWED")],
                headers={"allow": "POST"},
            )


def caller_key(principal: Principal | None, request: Any) -> str:
    """Whose share of the worker threads a request takes (``Settings.caller_threads``): the
    name a credential proved; on an open hub every local caller is the hub's user, so the
    client's address."""
    if principal is not None and principal.via != "open":
        return f"{principal.via}:{principal.name}"
    client = getattr(request, "client", None)
    return f"address:{client.host if client else ''}"


class _GraphQL(GraphQL):
    """strawberry's ASGI view, with the request decoded, parsed and validated off the event
    loop and within a time budget (a small request whose query passed before: on it, in
    microseconds), and every refusal a GraphQL error with a code."""

    def __init__(
        self,
        services: Any,
        budget: float,
        authenticating: bool = False,
        caller_threads: int = 0,
        **kwargs: Any,
    ) -> None:
        from lineagehub.schema import schema
        from lineagehub.schema.context import CallerThreads

        super().__init__(schema, **kwargs)
        self.authenticating = authenticating
        self.graphql_schema = schema._schema
        self.services = services
        self.budget = budget
        self.threads = CallerThreads(caller_threads) if caller_threads else None

    async def get_context(self, request: Any, response: Any) -> Any:
        from lineagehub.schema import Context

        # the principal the authentication put on the request, if any (else: open)
        principal = getattr(getattr(request, "state", None), "principal", None)
        if principal is None and self.authenticating:
            # only the GraphiQL page passes authentication without a caller: anything that
            # reaches a resolver without one may do nothing (never the open hub's rights)
            principal = Principal(ANONYMOUS, {}, via="token")
        length = request.headers.get("content-length", "")  # none for a chunked body: long
        short = length.isdigit() and int(length) <= _INLINE_BODY
        threads = None
        if self.threads is not None:
            threads = self.threads.of(caller_key(principal, request))
        return Context(
            self.services,
            request=request,
            response=response,
            principal=principal,
            short_request=short,
            threads=threads,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # pragma: no cover - the route is HTTP only
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        response: Response
        try:
            response = await self.run(request)
        except _Refused as e:
            response = JSONResponse({"errors": e.errors}, status_code=e.status, headers=e.headers)
        except StrawberryHTTPException as e:
            code = _HTTP_CODES.get(e.status_code, "BAD_REQUEST")
            response = _refusal(e.status_code, e.reason, code)
        await response(scope, receive, send)

    def encode_json(self, data: object) -> bytes:
        """The response body: orjson (a large lineage answer is several times faster to write);
        what it refuses (an integer beyond 64 bits) by the standard encoder, as before."""
        try:
            return orjson.dumps(data)
        except TypeError:
            return json.dumps(data, separators=(",", ":")).encode("utf-8")

    @property
    def graphql_ide_html(self) -> str:
        return graphiql_page()

    async def render_graphql_ide(self, request: Any) -> Response:
        return HTMLResponse(self.graphql_ide_html, headers=GRAPHIQL_HEADERS)

    async def parse_http_body(self, request: Any) -> GraphQLRequestData:
        if request.method == "GET":
            body, params = None, dict(request.query_params)
        else:
            content_type = (request.content_type or "").split(";")[0].strip().lower()
            if content_type != "application/json":
                # also what keeps browsers' cross-origin "simple" requests out
                raise _Refused(
                    415,
                    [
                        _coded(
                            "send the GraphQL request as application/json", "UNSUPPORTED_MEDIA_TYPE"
                        )
                    ],
                )
            body, params = await request.get_body(), None
        start = time.monotonic()
        if body is None or len(body) <= _INLINE_BODY:
            # A small body decodes in microseconds; a query that passed before is known
            # (schema/limits.py): then no worker thread is needed (~0.1 ms a hop, and a wait
            # for a free thread under load). Anything else is checked in one, as below.
            data = _decode_request(body, params)
            document = checked_document(self.graphql_schema, data["query"])
            if document is not None:
                _method_allowed(document, data, params)
                if time.monotonic() - start > self.budget:
                    raise _Refused(200, [_formatted(over_budget(self.budget))])
                return self._request_data(data, document)
            work = functools.partial(_checked, self.schema, data, params, self.budget)
        else:
            work = functools.partial(_prepare, self.schema, body, params, self.budget)
        with anyio.move_on_after(self.budget * 1.5):  # the check stops itself at the budget
            data, document = await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
            return self._request_data(data, document)
        raise _Refused(200, [_formatted(over_budget(self.budget))])

    @staticmethod
    def _request_data(data: dict[str, Any], document: Any) -> GraphQLRequestData:
        if data.get("operationName") is None and document is not None:
            operations = sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)
            if operations > 1:  # the spec: which one is the client's to say
                raise _Refused(
                    400,
                    [
                        _coded(
                            f"the query holds {operations} operations: name the one to run"
                            " (operationName)",
                            "BAD_REQUEST",
                        )
                    ],
                )
        PREPARED.set((data["query"], document))
        return GraphQLRequestData(
            query=data["query"],
            variables=data.get("variables"),
            operation_name=data.get("operationName"),
            extensions=data.get("extensions"),
            protocol="http",
        )


class _BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, also when chunked (no length)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "errors": [
                    {
                        "message": f"request body over {self.limit} bytes",
                        "extensions": {"code": "PAYLOAD_TOO_LARGE"},
                    }
                ]
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


#: Artifacts up to this size are verified whole before a download is answered
VERIFY_FIRST_BYTES = 64 * 1024 * 1024


def _read_through(artifacts: ArtifactStore, digest: str) -> None:
    """Read ``digest``'s bytes to the end (the store's reader checks the digest there)."""
    with artifacts.open(digest) as reader:
        while reader.read(CHUNK):
            pass


def _sweep_upload_spools() -> None:
    """Remove upload spools a server killed mid-upload left in the temporary folder, once
    they are a day old (one in flight, another worker's, is younger)."""
    import shutil

    now = time.time()
    for left in Path(tempfile.gettempdir()).glob("lineagehub-upload-*"):
        with contextlib.suppress(OSError):
            if now - left.stat().st_mtime > LEFTOVER_AGE_S:
                shutil.rmtree(left, ignore_errors=True)


class _Stalled(Exception):
    pass


class _Unanswered:
    """A request that ends before its answer has started gets the hub's JSON error, never
    uvicorn's plain-text 500 nor an open connection for ever:

    - its body stopped coming: each part must come within ``body_timeout`` seconds of the
      one before, else 408 ``REQUEST_TIMEOUT`` (half a body and then nothing held a
      connection, a task and a spool file; a few thousand took the server down). Once the
      body is complete nothing is timed (a download's wait for the client to leave);
    - the server stopped it (uvicorn cancels what still runs once its graceful shutdown time
      is up): 503 ``BACKEND_UNAVAILABLE``, retryable (a write stopped so was rolled back)."""

    def __init__(self, app: ASGIApp, body_timeout: float) -> None:
        self.app = app
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        complete = False
        started = False

        async def timed() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                with anyio.fail_after(self.body_timeout):
                    message = await receive()
            except TimeoutError:
                raise _Stalled from None
            complete = message["type"] != "http.request" or not message.get("more_body")
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, timed, tracked)
        except (_Stalled, asyncio.CancelledError) as e:
            if started:
                raise
            if isinstance(e, _Stalled):
                response = _refusal(
                    408,
                    f"the request body stalled: no part of it came for {self.body_timeout:g} s",
                    "REQUEST_TIMEOUT",
                )
            else:
                response = _refusal(
                    503,
                    "the hub is shutting down: this request was stopped before it finished, "
                    "and nothing of a write it made was kept; send it again",
                    "BACKEND_UNAVAILABLE",
                    retryable=True,
                )
            await response(scope, receive, send)


class _Hosts:
    """Answer only requests whose ``Host`` is one of the configured names (DNS rebinding
    would otherwise let any web page reach the API through a browser)."""

    def __init__(self, app: ASGIApp, names: list[str]) -> None:
        self.app = app
        self.any = "*" in names
        self.names = {n.lower() for n in names if not n.startswith("*.")}
        self.suffixes = tuple(n[1:].lower() for n in names if n.startswith("*."))

    def allowed(self, host: str) -> bool:
        if self.any:
            return True
        host = host.strip().lower()
        if host.startswith("["):  # [::1]:8000
            name = host[1 : host.find("]")] if "]" in host else host
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name in self.names or (bool(self.suffixes) and name.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            hosts = [v for k, v in scope.get("headers") or [] if k == b"host"]
            host = hosts[0].decode("latin-1") if hosts else ""
            # every Host must be allowed: servers and proxies differ on which of two they read
            if not all(self.allowed(h.decode("latin-1")) for h in hosts or [b""]):
                response = _refusal(
                    400,
                    f"host {host[:100]!r} is not one this hub answers to "
                    "(LINEAGEHUB_ALLOWED_HOSTS)",
                    "HOST_NOT_ALLOWED",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


#: GraphiQL's page and the browser builds it loads (React, ReactDOM, GraphiQL), vendored
#: from npm with their licences (``scripts/refresh_graphiql.sh`` refreshes them).
GRAPHIQL_DIR = Path(__file__).parent / "static" / "graphiql"
#: The page runs only its own files: no inline script, nothing from another origin.
GRAPHIQL_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@functools.cache
def graphiql_page() -> str:
    """The GraphiQL page (its assets are under ``/graphiql/``, relative to ``/graphql``)."""
    return (GRAPHIQL_DIR / "index.html").read_text(encoding="utf-8")


#: The files under ``/graphiql/`` (nothing else of the folder is served).
GRAPHIQL_ASSETS = {
    "react.production.min.js": "text/javascript",
    "react-dom.production.min.js": "text/javascript",
    "graphiql.min.js": "text/javascript",
    "graphiql.min.css": "text/css",
    "app.js": "text/javascript",
    "page.css": "text/css",
}


async def _graphiql_asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in GRAPHIQL_ASSETS:
        raise HTTPException(404, "Not Found")
    return FileResponse(
        GRAPHIQL_DIR / name,
        media_type=GRAPHIQL_ASSETS[name],
        headers={**GRAPHIQL_HEADERS, "cache-control": "public, max-age=3600"},
    )


#: Exports hold text from the graph and are served from the API's own origin: a browser opening
#: one (an SVG is a document that could hold script) runs nothing, loads nothing, is framed by
#: nobody and never guesses another type. Keyed by "is it a PDF": Chrome's PDF viewer does not
#: open in a CSP sandbox.
EXPORT_HEADERS = {
    False: {
        "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:; frame-ancestors 'none'; sandbox",
        "x-content-type-options": "nosniff",
    },
    True: {
        "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
        "x-content-type-options": "nosniff",
    },
}

#: The lineage explorer's build (``npm run build`` in ``web/`` writes it; see web/README.md).
EXPLORER_DIR = Path(__file__).parent / "static" / "explorer"
#: The files under ``/explorer/`` (nothing else of the folder is served).
EXPLORER_ASSETS = {
    "explorer.js": "text/javascript",
    "explorer.css": "text/css",
    "LICENSES.txt": "text/plain",
}
#: As GraphiQL's, with pictures from ``data:`` and ``blob:`` URLs (the graph's PNG export).
EXPLORER_HEADERS = {
    **GRAPHIQL_HEADERS,
    "content-security-policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}


async def _explorer_page(request: Request) -> Response:
    """The explorer's page (no data in it: the app asks ``/graphql`` once loaded)."""
    return FileResponse(
        EXPLORER_DIR / "index.html",
        media_type="text/html",
        headers={**EXPLORER_HEADERS, "cache-control": "no-cache"},
    )


async def _explorer_asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in EXPLORER_ASSETS:
        raise HTTPException(404, "Not Found")
    return FileResponse(
        EXPLORER_DIR / name,
        media_type=EXPLORER_ASSETS[name],
        headers={**EXPLORER_HEADERS, "cache-control": "no-cache"},
    )


class _CORS(CORSMiddleware):
    """Starlette's CORS, with a refused preflight coded as every other refusal."""

    def preflight_response(self, request_headers: Any) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 200:
            reason = bytes(response.body).decode("utf-8", "replace")
            refusal = _refusal(response.status_code, reason, "CORS_REFUSED")
            refusal.headers.update(
                {k: v for k, v in response.headers.items() if k.startswith("vary")}
            )
            return refusal
        return response


def monitoring_service(
    store: GraphStore, settings: Settings, on_event: Any = None
) -> MonitoringService:
    """Monitoring with the alert rules of ``settings.alert_rules``, notifying ``on_event``."""
    from lineagehub.services.alerts import AlertService, load_alert_rules

    rules = load_alert_rules(settings.alert_rules) if settings.alert_rules else []
    service = MonitoringService(store)
    AlertService(service, rules, on_event=on_event)
    return service


def _writes_on_loop(store: GraphStore, artifacts: ArtifactStore, settings: Settings) -> bool:
    """Whether short writes may be made on the event loop (``Services.writes_on_loop``):
    only where nothing a write does besides the store's own work can wait on the network or
    another program: artifacts in a local folder (a registration checks its artifact there)
    and tree heads copied nowhere or to a file (a head due with a write is copied at its
    commit). The store itself says whether it can begin without waiting."""
    hook = getattr(getattr(store, "audit_policy", None), "on_checkpoint", None)
    heads_local = hook is None or (settings.audit_heads or "").startswith("file://")
    return isinstance(artifacts, FileArtifactStore) and heads_local


def create_app(
    settings: Settings | None = None,
    *,
    store: GraphStore | None = None,
    artifacts: ArtifactStore | None = None,
    max_body_bytes: int | None = None,
    registry_policies: Mapping[Any, Policy] | None = None,
) -> Starlette:
    """The hub as an ASGI app, over the configured stores (or the ones given).

    ``registry_policies``: the model registry's promotion policies (see
    :class:`~lineagehub.services.registry.RegistryService`); when not given, those of the file
    ``settings.policies`` names (:func:`~lineagehub.services.registry.load_policies`), if any. Changes are recorded as done by the
    authenticated caller (``settings.auth``, :mod:`lineagehub.interfaces.auth`); on a hub
    that does not authenticate, by ``settings.user``, else the OS user.

    ``max_body_bytes`` overrides ``settings.max_request_bytes``.

    A store passed in stays open when the app shuts down; one opened here is closed."""
    from datetime import timedelta

    from lineagehub import open_store
    from lineagehub.schema import Services

    settings = settings or Settings()
    if registry_policies is None and settings.policies is not None:
        registry_policies = load_policies(settings.policies)  # ConfigError before opening
    owned = store is None
    store = store if store is not None else open_store(settings=settings)
    artifacts = artifacts or open_artifact_store(
        settings.artifact_uri, **settings.artifact_options()
    )
    webhook_configs = settings.webhook_configs()
    dispatcher: WebhookDispatcher | None = None
    recorder_store: GraphStore | None = None
    if webhook_configs:
        if owned and not getattr(store, "memory", False):
            # attempts recorded through a handle of their own: at shutdown the requests'
            # store closes first, so a write the server stopped is rolled back, not committed
            # while the deliveries drain (its caller was told nothing of it was kept)
            recorder_store = open_store(settings=settings)
        dispatcher = WebhookDispatcher(
            webhook_configs,
            recorder=GraphRecorder(recorder_store or store),
            max_pending=settings.webhook_queue_size,
        )
    # events kept with the changes that raise them, queued once those commit
    outbox = Outbox(store, dispatcher) if dispatcher is not None else None
    on_event = outbox
    services = Services(
        store=store,
        tracking=TrackingService(
            store,
            artifacts,
            stale_after=timedelta(seconds=settings.stale_after),
            actor=settings.user,  # per request: Context.tracker acts as the caller
            on_event=on_event,
        ),
        lineage=LineageService(store),
        artifacts=artifacts,
        registry=RegistryService(store, policies=registry_policies, on_event=on_event),
        monitoring=monitoring_service(store, settings, on_event),
        registry_actor=settings.user or _os_user(),  # the actor of an open hub
        audit_key=(
            settings.audit_key.get_secret_value().encode("utf-8")
            if settings.audit_key is not None and settings.audit_key.get_secret_value().strip()
            else None
        ),
        writes_on_loop=_writes_on_loop(store, artifacts, settings),
    )

    health_threads: list[anyio.CapacityLimiter] = []

    async def health(request: Request) -> Response:
        # Both stores must answer: a hub whose artifact store is down cannot take uploads.
        # Threads of its own: requests filling the shared pool (forty long queries) must not
        # make the health check wait for them (a load balancer would take the hub out).
        if not health_threads:
            health_threads.append(anyio.CapacityLimiter(4))
        threads = health_threads[0]
        probing = "the store"
        try:
            with anyio.fail_after(HEALTH_TIMEOUT):
                await anyio.to_thread.run_sync(
                    lambda: store.find_nodes(limit=1), abandon_on_cancel=True, limiter=threads
                )
                probing = "the artifact store"
                await anyio.to_thread.run_sync(
                    artifacts.exists, _PROBE_DIGEST, abandon_on_cancel=True, limiter=threads
                )
        except HubError as e:
            return _unavailable(e)
        except TimeoutError:
            return _unavailable(
                BackendUnavailable(f"{probing} did not answer within {HEALTH_TIMEOUT} s")
            )
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "store": redact(store.uri),
                "artifacts": redact(artifacts.uri),
            }
        )

    def principal(request: Request) -> Principal:
        # the principal the authentication put on the request (else: an open hub's)
        found = getattr(request.state, "principal", None)
        return found if found is not None else open_principal(services.registry_actor)

    async def upload(request: Request) -> Response:
        try:
            check_upload(principal(request))
        except HubError as e:
            return _error(e)
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in UPLOAD_TYPES:
            # A browser sends text/plain, forms and multipart across origins without asking
            # first: none of them is accepted here.
            return _refusal(
                415,
                f"upload artifact bytes as one of {', '.join(sorted(UPLOAD_TYPES))}, "
                f"not {media_type or 'no content type'}",
                "UNSUPPORTED_MEDIA_TYPE",
            )
        with tempfile.TemporaryDirectory(prefix="lineagehub-upload-") as tmp:
            path = Path(tmp) / "body"
            try:
                async with await anyio.open_file(path, "wb") as f:
                    async for chunk in request.stream():
                        await f.write(chunk)
            except ClientDisconnect:  # the client went away mid-upload: nothing is stored
                return Response(status_code=400)
            except OSError as e:  # the spool's disk (the system's temporary folder) full
                full = e.errno in (errno.ENOSPC, errno.EDQUOT)
                return _error(
                    BackendError(
                        f"the server's temporary folder is full ({e.strerror}): nothing was "
                        "stored; free space there (or set TMPDIR) and send it again"
                        if full
                        else f"the upload could not be spooled: {e.strerror or e}"
                    )
                )
            try:
                info = await in_share(request, functools.partial(artifacts.put_file, path))
            except HubError as e:
                return _error(e)
        caller = principal(request)

        def answer() -> tuple[str, bool]:
            # bytes the hub had already are "created" for a caller who may not read them
            # there: that another project holds this very file is not the caller's to learn
            new = info.created or not may_download(services, caller, info.digest)
            return upload_receipt(services, caller, info.digest), new

        receipt, created = await anyio.to_thread.run_sync(answer)
        return JSONResponse(
            {"digest": info.digest, "size": info.size, "created": created, "receipt": receipt}
        )

    async def download(request: Request) -> Response:
        try:
            digest = request.path_params["digest"]
            validate_digest(digest)
            caller = principal(request)
            await in_share(request, lambda: check_download(services, caller, digest))
            size = await in_share(request, lambda: artifacts.size(digest))
        except NotFoundError:
            # in the words bytes of another project are answered with (check_download)
            return _error(absent_artifact(digest))
        except HubError as e:
            return _error(e)
        headers = {"content-length": str(size), "x-content-digest": digest}
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers)

        # Checked before answering: an artifact up to VERIFY_FIRST_BYTES is read through once
        # (its digest checked, nothing held) and then sent; a larger one's first chunk is read.
        # A corrupt one then gets a proper 500 INTEGRITY, not a body cut off midway (which a
        # client takes for a network failure worth retrying).
        try:
            if size <= VERIFY_FIRST_BYTES:
                await in_share(request, lambda: _read_through(artifacts, digest))
            reader = await in_share(request, lambda: artifacts.open(digest))
            # a larger one is checked as it streams: damaged, it is sent whole all the same
            # and the client's own check fails (cut off, it would look like the network)
            damage = passed_on(reader)
            first = await in_share(request, lambda: reader.read(CHUNK))
        except HubError as e:
            return _error(e)

        async def body() -> AsyncIterator[bytes]:
            try:
                chunk = first
                while chunk:
                    yield chunk
                    chunk = await in_share(request, lambda: reader.read(CHUNK))
                found = damage()
                if found is not None:
                    log.error("sent a damaged artifact (the client's check fails): %s", found)
            finally:
                await anyio.to_thread.run_sync(reader.close)

        return StreamingResponse(body(), media_type="application/octet-stream", headers=headers)

    async def export(request: Request) -> Response:
        try:
            ref, fmt = _export_target(request.path_params["target"])
            options, render = _export_options(request.query_params.multi_items())
        except HubError as e:
            return _error(e)

        caller = principal(request)

        def work() -> tuple[bytes, bool, int]:
            as_of = options.get("as_of")
            check(services, caller, "Query.lineage", {"input": {"roots": [ref], "asOf": as_of}})
            sub = services.lineage.lineage([ref], **options)
            sub, withheld = withhold_subgraph(services, caller, sub)
            asked = render.pop("focus", None)
            focus = sub.roots
            if asked and as_of is not None:  # the versions the names had then, as the roots
                focus = services.lineage.resolve_at(asked, as_of, "focus")
            elif asked:
                focus = services.lineage.resolve_many(asked, "focus")
            policies = services.registry.policies if services.registry is not None else None
            data = export_lineage(sub, fmt, focus=focus, policies=policies, **render)
            return data, sub.truncated, withheld

        try:
            body, truncated, withheld = await in_share(request, work)
        except HubError as e:
            return _error(e)
        filename = "lineage-" + (re.sub(r"[^A-Za-z0-9._-]+", "_", ref).strip("_.")[:100] or "x")
        headers = {
            "content-disposition": f'inline; filename="{filename}.{_EXPORT_EXT[fmt]}"',
            "x-lineage-truncated": "true" if truncated else "false",
            "x-lineage-withheld": str(withheld),
            **EXPORT_HEADERS[fmt == "pdf"],
        }
        return Response(body, media_type=FORMATS[fmt], headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info("lineagehub %s serving %s", __version__, redact(store.uri))
        await anyio.to_thread.run_sync(_sweep_upload_spools)
        if outbox is not None:
            try:  # what a crash or the last shutdown left undelivered
                again = await anyio.to_thread.run_sync(outbox.redeliver)
            except HubError as e:
                log.warning("could not look for undelivered webhook events: %s", e)
            else:
                if again:
                    log.info("queued %d webhook deliveries left undelivered", again)
        try:
            recorded = await anyio.to_thread.run_sync(record_missing_projects, store)
        except HubError as e:  # listings check each row still; the next start records them
            log.warning("could not record the projects of older records: %s", e)
        else:
            if recorded:
                log.info("recorded the projects of %d older records", recorded)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(security.close)
            if owned and (dispatcher is None or recorder_store is not None):
                store.close()  # a request still running (stopped: answered 503) is interrupted
            if dispatcher is not None:
                # waits (bounded) for queued deliveries, so they are recorded before the
                # store they are recorded in closes
                await anyio.to_thread.run_sync(dispatcher.close)
            if recorder_store is not None:
                recorder_store.close()
            elif owned and dispatcher is not None:
                store.close()

    view = _GraphQL(
        services,
        settings.request_time_budget,
        authenticating=bool(settings.auth_methods()),
        caller_threads=settings.caller_threads,
        graphql_ide="graphiql" if settings.graphiql else None,
    )
    graphql = _BodyLimit(view, max_body_bytes or settings.max_request_bytes)

    async def in_share(request: Request, work: Callable[[], T]) -> T:
        """``work`` in a worker thread, within the caller's share of them (as GraphQL's)."""
        if view.threads is None:
            return await anyio.to_thread.run_sync(work)
        async with view.threads.of(caller_key(principal(request), request)):
            return await anyio.to_thread.run_sync(work)

    routes = [
        Route("/graphql", graphql, methods=["GET", "POST"]),  # first: most requests come here
        Route("/health", health, methods=["GET"]),
        Route("/artifacts", upload, methods=["PUT", "POST"]),
        Route("/artifacts/{digest}", download, methods=["GET", "HEAD"]),
        Route("/export/lineage/{target:path}", export, methods=["GET"]),
    ]
    routes += lineage_routes(  # POST /api/v1/lineage: OpenLineage events in
        OpenLineageService(store, artifacts, actor=services.registry_actor),
        principal=principal,
        error=_error,
        run=in_share,
        max_bytes=max_body_bytes or settings.max_request_bytes,
        on_denied=lambda *args: services.on_denied(*args) if services.on_denied else None,
    )
    metrics = hub_metrics(services)  # GET /metrics, POST /api/v1/alerts: interfaces/metrics.py
    routes += metrics_routes(services, metrics, run=in_share)
    if settings.graphiql:  # the page's scripts and styles, from the package (no CDN)
        routes.append(Route("/graphiql/{name}", _graphiql_asset, methods=["GET", "HEAD"]))
    if settings.explorer:  # the lineage explorer's page and files, from the package
        routes.append(Route("/", _explorer_page, methods=["GET", "HEAD"]))
        routes.append(Route("/explorer/{name}", _explorer_asset, methods=["GET", "HEAD"]))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
    )
    app.state.services = services
    app.state.webhooks = dispatcher
    app.state.caller_threads = view.threads  # worker threads per caller (tests look)
    # authentication (LINEAGEHUB_AUTH), rate limits, refusals in the audit log: interfaces/auth.py
    security = SecurityAudit(store)
    services.on_denied = security.denied
    app.state.security_audit = security
    authenticator = Authenticator(settings, store) if settings.auth_methods() else None
    app.add_middleware(
        AuthMiddleware, authenticator=authenticator, audit=security, rate_limit=settings.rate_limit
    )
    app.add_middleware(RequestMetrics, metrics=metrics)
    origins = settings.cors_origin_list()
    if origins:  # off unless configured: browsers then refuse every cross-origin call
        app.add_middleware(
            _CORS,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "HEAD"],
            allow_headers=["authorization", "content-type"],
            expose_headers=["x-content-digest", "x-lineage-truncated", "x-lineage-withheld"],
            max_age=600,
        )
    app.add_middleware(_Hosts, names=settings.allowed_host_names())
    app.add_middleware(_Unanswered, body_timeout=settings.body_timeout)
    return app


_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (unknown path, wrong method), shaped as every other error."""
    status = getattr(exc, "status_code", 400)
    detail = getattr(exc, "detail", None) or "bad request"
    return _refusal(status, str(detail), _HTTP_CODES.get(status, "BAD_REQUEST"))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return _refusal(500, "Unexpected error.", "INTERNAL")


# The extension after the last "." of an export URL -> format (a ref may hold dots itself):
# the one-dot file suffixes, and the format names themselves (svg, prov, openlineage, ...).
_EXPORT_FORMATS = {
    **{suffix[1:]: fmt for suffix, fmt in SUFFIXES.items() if suffix.count(".") == 1},
    **{fmt: fmt for fmt in FORMATS},
}
_EXPORT_EXT = {"openlineage": "jsonl", "prov": "prov.json"}
_EXPORT_EXT.update({fmt: fmt for fmt in FORMATS if fmt not in _EXPORT_EXT})
_LIST_OPTIONS = {
    "nodeKinds": ("node_kinds", NodeKind),
    "edgeKinds": ("edge_kinds", EdgeKind),
    "stopAt": ("stop_at", NodeKind),
    "passThrough": ("pass_through", NodeKind),
}
_INT_OPTIONS = {
    "depth": "depth",
    "upstreamDepth": "upstream_depth",
    "downstreamDepth": "downstream_depth",
    "maxNodes": "max_nodes",
}
_EXPORT_OPTIONS = sorted(
    {
        *_LIST_OPTIONS,
        *_INT_OPTIONS,
        "direction",
        "asOf",
        "cluster",
        "contextNodes",
        "collapseAbove",
        "focus",
    }
    | {"title"}
)


def _export_target(target: str) -> tuple[str, str]:
    """``<ref>.<ext>`` -> (ref, format): the extension is what follows the last dot."""
    ref, dot, ext = target.rpartition(".")
    fmt = _EXPORT_FORMATS.get(ext.lower()) if dot else None
    if fmt is None or not ref:
        raise ValidationError(
            f"give the export format as the extension: /export/lineage/<ref>.<ext> with ext "
            f"one of {', '.join(_EXPORT_FORMATS)}",
            field="format",
        )
    return ref, fmt


def _kind(enum: Any, value: str, name: str) -> str:
    """``Run``, ``RUN``, ``run``, ``dataset_version`` and ``DatasetVersion`` all name a kind."""
    wanted = value.strip().replace("_", "").lower()
    for member in enum:
        if wanted in (member.value.replace("_", "").lower(), member.name.replace("_", "").lower()):
            return str(member.value)
    known = ", ".join(m.value for m in enum)
    raise ValidationError(f"{name}: {value!r:.60} is not one of {known}", field=name)


def _export_options(items: list[tuple[str, str]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The query string of an export: (lineage options, export options), checked."""
    lineage: dict[str, Any] = {}
    render: dict[str, Any] = {"collapse_above": DEFAULT_COLLAPSE_ABOVE}
    lists: dict[str, list[str]] = {}
    for name, value in items:
        if name in _LIST_OPTIONS or name == "focus":
            lists.setdefault(name, []).extend(v.strip() for v in value.split(",") if v.strip())
        elif name in _INT_OPTIONS:
            try:
                lineage[_INT_OPTIONS[name]] = int(value)
            except ValueError:
                raise ValidationError(f"{name} must be an integer", field=name) from None
        elif name == "direction":
            lineage["direction"] = value.strip().upper()
        elif name == "asOf":
            lineage["as_of"] = parse_time(value, "asOf")
        elif name in ("cluster", "contextNodes"):
            flag = value.strip().lower()
            if flag not in ("", "1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValidationError(f"{name} must be true or false", field=name)
            render["cluster" if name == "cluster" else "context_nodes"] = flag in (
                "",
                "1",
                "true",
                "yes",
                "on",
            )
        elif name == "collapseAbove":
            text = value.strip().lower()
            if text in ("never", "none", "off"):
                render["collapse_above"] = None
            elif text.isascii() and text.isdigit():  # not '²', which int() refuses
                render["collapse_above"] = int(text)
            else:
                raise ValidationError(
                    "collapseAbove must be a number of nodes, or never", field="collapseAbove"
                )
        elif name == "title":
            render["title"] = value
        else:
            raise ValidationError(
                f"unknown option {name!r:.60}; the options are {', '.join(_EXPORT_OPTIONS)}",
                field=name,
            )
    for name, (key, enum) in _LIST_OPTIONS.items():
        if name in lists:
            lineage[key] = [_kind(enum, v, name) for v in lists[name]]
    if "focus" in lists:
        render["focus"] = lists["focus"]
    depth = lineage.pop("depth", None)
    if depth is not None:
        lineage.setdefault("upstream_depth", depth)
        lineage.setdefault("downstream_depth", depth)
    if lineage.get("direction", "UPSTREAM") not in ("UPSTREAM", "DOWNSTREAM", "BOTH"):
        raise ValidationError(
            "direction must be UPSTREAM, DOWNSTREAM or BOTH (any case)", field="direction"
        )
    return lineage, render


def app_from_env() -> Starlette:
    """The factory ``lineagehub serve`` gives uvicorn (settings from the environment).

    In a server process the event loop shares the interpreter with worker threads that may be
    busy validating a large request: handing the interpreter over every millisecond (not
    every 5) keeps ``/health`` and small requests answering quickly meanwhile."""
    sys.setswitchinterval(0.001)
    app = create_app()
    _stop_with_parent()
    # What the process holds now (modules, the schema, the app) lives as long as it does:
    # moved out of the collector's generations, a full collection no longer walks it.
    gc.collect()
    gc.freeze()
    return app


def _stop_with_parent() -> None:
    """In a worker of ``serve --workers N``: shut down (gracefully, as on SIGTERM) once the
    parent process is gone.

    uvicorn's parent restarts dead workers and stops them when it stops, but a parent killed
    outright (``kill -9``, the OOM killer) left its workers serving on the port it had bound,
    for ever: a restart then failed with "address already in use", and nothing restarted
    workers that died. A worker started by a multiprocessing parent watches that parent's
    sentinel, which becomes ready when the parent exits for any reason."""
    import multiprocessing
    import os
    import signal
    import threading
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None:  # one process serving (--workers 1): nothing to watch
        return

    def watch() -> None:
        wait([parent.sentinel])
        log.warning("the parent process %s is gone: shutting down", parent.pid)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="lineagehub-parent-watch", daemon=True).start()
