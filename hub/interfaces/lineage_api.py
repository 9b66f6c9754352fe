"""``POST /api/v1/lineage``: OpenLineage events in, as the stock clients send them.

The path, body and authentication are what ``openlineage-python``'s HTTP transport (and the
Java client Spark and Flink use, and Airflow's provider) sends: one event as JSON
(``Content-Type: application/json``, gzip ``Content-Encoding`` accepted), an API key as
``Authorization: Bearer``. A JSON array of events is taken too (one transaction).

Answers ``201`` with what was written (``{"events", "runs", "jobs", "datasets", "versions",
"columnEdges", "raw"}``); ``400`` naming the field of an event that breaks the spec's schema
(code ``VALIDATION``, nothing written); ``403`` without the editor role in the job's
namespace (its project); ``413`` over ``Settings.max_request_bytes``; ``415`` for another
content type. The mapping is :mod:`lineagehub.services.openlineage_in`.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lineagehub.graph import HubError
from lineagehub.graph.errors import PermissionDenied
from lineagehub.services.access import Principal, Role
from lineagehub.services.openlineage_in import OpenLineageService, decode_events

PATH = "/api/v1/lineage"


def _refusal(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": code}}]}, status_code=status
    )


async def _body(request: Request, limit: int) -> bytes | Response:
    """The request body, decompressed, at most ``limit`` bytes either way."""
    chunks: list[bytes] = []
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                return _refusal(413, f"request body over {limit} bytes", "PAYLOAD_TOO_LARGE")
            chunks.append(chunk)
    except ClientDisconnect:
        return Response(status_code=400)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        return _refusal(
            415, f"content-encoding {encoding!r:.40}: send gzip or none", "UNSUPPORTED_MEDIA_TYPE"
        )
    # bounded decompression: a small bomb must not become gigabytes in memory
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as e:
        return _refusal(400, f"the gzip body is corrupt: {e}", "BAD_REQUEST")
    if len(data) > limit or inflater.unconsumed_tail:
        return _refusal(413, f"request body over {limit} bytes uncompressed", "PAYLOAD_TOO_LARGE")
    return data


def lineage_routes(
    service: OpenLineageService,
    *,
    principal: Callable[[Request], Principal],
    error: Callable[[HubError], Response],
    max_bytes: int,
    on_denied: Callable[[Principal | None, str, str], None] | None = None,
    run: Callable[[Request, Callable[[], Any]], Awaitable[Any]] | None = None,
) -> list[Route]:
    """The OpenLineage route over ``service``; ``principal`` gives a request's caller (as the
    authentication left it), ``error`` shapes a hub error as every other route does, ``run``
    runs the work in a worker thread (the server: within the caller's share of them)."""

    async def in_thread(request: Request, work: Callable[[], Any]) -> Any:
        return await anyio.to_thread.run_sync(work)

    run_work = run or in_thread

    async def post(request: Request) -> Response:
        caller = principal(request)
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return _refusal(
                415,
                f"send OpenLineage events as application/json, not {media_type or 'nothing'}",
                "UNSUPPORTED_MEDIA_TYPE",
            )
        body = await _body(request, max_bytes)
        if isinstance(body, Response):
            return body

        def work() -> dict[str, Any]:
            events = decode_events(body)
            service.check(events)
            for project in sorted(service.projects(events), key=lambda p: p or ""):
                where = f" in project {project!r}" if project else " globally"
                if not caller.can(Role.EDITOR, project):
                    message = (
                        f"{caller.name!r} may not send OpenLineage events{where}: it needs the "
                        "editor role"
                    )
                    if on_denied is not None:
                        on_denied(caller, PATH, message)
                    raise PermissionDenied(message)
            return service.acting_as(caller.name).ingest(events).to_dict()

        try:
            result = await run_work(request, work)
        except HubError as e:  # VALIDATION: 400 naming the field; FORBIDDEN: 403
            return error(e)
        return JSONResponse(result, status_code=201)

    return [Route(PATH, post, methods=["POST"])]


__all__ = ["PATH", "lineage_routes"]
