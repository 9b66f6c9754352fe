"""The GraphQL schema: a thin layer over the hub's services.

``build_schema()`` returns the strawberry schema with its limits: tokens, depth, cost
(fields with fragments expanded, each fragment measured once) and aliases are bounded
(:mod:`lineagehub.schema.limits`), every error carries a code
(:mod:`lineagehub.schema.errors`), and page sizes are capped by the services (``max_page``).
"""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from lineagehub.graph import HubError
from lineagehub.schema.audit import AuditQuery
from lineagehub.schema.authz import Authorization
from lineagehub.schema.batch import BatchMutation
from lineagehub.schema.compare import CompareQuery
from lineagehub.schema.context import Context, Services
from lineagehub.schema.dossier import DossierMutation, DossierQuery
from lineagehub.schema.errors import HubErrors
from lineagehub.schema.inputs import install as install_input_plans
from lineagehub.schema.interop import InteropQuery
from lineagehub.schema.limits import (
    MAX_ALIASES,
    MAX_COST,
    MAX_DEPTH,
    MAX_QUERY_LENGTH,
    MAX_TOKENS,
    Limits,
)
from lineagehub.schema.monitoring import (
    AlertMutation,
    AlertQuery,
    MonitoringMutation,
    MonitoringQuery,
)
from lineagehub.schema.mutation import Mutation as BaseMutation
from lineagehub.schema.query import Query as BaseQuery
from lineagehub.schema.registry import RegistryMutation, RegistryQuery
from lineagehub.schema.scalars import SCALARS
from lineagehub.schema.types import ALL_TYPES
from lineagehub.schema.webhooks import WebhookQuery

Query = merge_types(
    "Query",
    (
        BaseQuery,
        CompareQuery,
        AuditQuery,
        RegistryQuery,
        WebhookQuery,
        InteropQuery,
        MonitoringQuery,
        AlertQuery,
        DossierQuery,
    ),
)
Mutation = merge_types(
    "Mutation",
    (
        BaseMutation,
        RegistryMutation,
        BatchMutation,
        MonitoringMutation,
        AlertMutation,
        DossierMutation,
    ),
)


class _Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        # Expected failures (a HubError: not found, invalid input...) and the client's own
        # query mistakes are answers, not server faults: only the rest is logged.
        unexpected = [e for e in errors if _root_cause(e) is not None]
        if unexpected:
            super().process_errors(unexpected, execution_context)


def _root_cause(error: GraphQLError) -> BaseException | None:
    """The exception behind ``error`` unless it is a HubError or a client's mistake."""
    original: BaseException | None = error.original_error
    while isinstance(original, GraphQLError):  # a bad variable wraps the scalar's error
        original = original.original_error
    return None if isinstance(original, HubError) else original


def build_schema() -> strawberry.Schema:
    built = _Schema(
        query=Query,
        mutation=Mutation,
        types=ALL_TYPES,
        config=StrawberryConfig(scalar_map=SCALARS),
        extensions=[Limits, HubErrors, Authorization],
    )
    install_input_plans(built)  # input classes built from planned fields (schema/inputs.py)
    return built


schema = build_schema()

__all__ = [
    "MAX_ALIASES",
    "MAX_COST",
    "MAX_DEPTH",
    "MAX_QUERY_LENGTH",
    "MAX_TOKENS",
    "Context",
    "Services",
    "build_schema",
    "schema",
]
