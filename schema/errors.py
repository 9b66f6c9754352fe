"""Errors as clients see them: a message and a code, never a stack trace.

A :class:`~lineagehub.graph.HubError` raised by the hub becomes a GraphQL error whose
``extensions`` carry ``code`` (``NOT_FOUND``, ``VALIDATION``, ``CONFLICT``, ``FORBIDDEN``,
``CONFIG``, ``INTEGRITY``, ``BACKEND``, ``BACKEND_UNAVAILABLE``), ``retryable`` and, where
known, ``field`` or ``ids``. GraphQL's own validation errors (a malformed query, a wrong type)
keep their message with code ``GRAPHQL_VALIDATION``. Anything else is masked to
"Unexpected error." with code ``INTERNAL`` (and logged on the server).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from lineagehub.graph import HubError

log = logging.getLogger("lineagehub.api")

_VARIABLE = re.compile(r"Variable '\$(?P<name>\w+)'")


class HubErrors(SchemaExtension):
    """Give every error a code; mask the unexpected ones."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is None or not result.errors:
            return
        result.errors = [self.shape(e) for e in result.errors]
        _report_denials(self.execution_context.context, result.errors)

    @staticmethod
    def shape(error: GraphQLError) -> GraphQLError:
        """``error`` with a code (and masked, if unexpected)."""
        original = error.original_error
        outer = None
        # A bad variable: graphql-core wraps the scalar's error in its own, twice over.
        while isinstance(original, GraphQLError):
            outer = original
            original = original.original_error
        if isinstance(original, HubError):
            extensions: dict[str, Any] = original.to_dict()
            extensions.pop("message", None)
            variable = _VARIABLE.match(error.message) if outer is not None else None
            if variable is not None and "field" in extensions:
                # the scalar knows its type (DateTime), the client's name for it is the variable
                extensions["field"] = variable["name"]
            return GraphQLError(
                error.message if outer is not None else original.message,
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                extensions=extensions,
            )
        if original is None:
            # Parsing and validation: the client's query is at fault; its message is safe.
            return GraphQLError(
                error.message,
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                extensions={"code": "GRAPHQL_VALIDATION", **(error.extensions or {})},
            )
        log.error("unexpected error in %s", error.path, exc_info=original)
        return GraphQLError(
            "Unexpected error.",
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL"},
        )


def _report_denials(context: Any, errors: list[GraphQLError]) -> None:
    """Hand every FORBIDDEN error to the services' ``on_denied`` (the server audits them)."""
    services = getattr(context, "services", None)
    hook = getattr(services, "on_denied", None)
    if hook is None:
        return
    for error in errors:
        if (error.extensions or {}).get("code") == "FORBIDDEN":
            where = "graphql:" + (".".join(str(p) for p in error.path or ()) or "?")
            try:
                hook(getattr(context, "principal", None), where, error.message)
            except Exception:  # auditing a refusal must not turn it into another error
                log.exception("could not record a permission denial")
