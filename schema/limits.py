"""What a GraphQL request may cost: tokens, depth, fields, aliases and time.

A query of at most :data:`MAX_QUERY_LENGTH` characters is parsed with at most
:data:`MAX_TOKENS` tokens, then validated by graphql-core's
rules, after :func:`limit_errors` has measured every operation with its fragments expanded:

- depth: the longest chain of nested fields (at most :data:`MAX_DEPTH`);
- cost: the number of fields the query would resolve per parent object, fragments counted
  every time they are spread (at most :data:`MAX_COST`);
- aliases: the aliased fields, counted the same way (at most :data:`MAX_ALIASES`);
- walks: the root fields that walk the graph (:data:`WALKS`: traces, paths, diffs,
  reports) and the exports of lineage results (:data:`EXPORTS`, at any depth), counted the
  same way (at most :data:`MAX_WALKS`).

Each fragment is measured once and its measure reused at every spread, so a fragment that
spreads the next one twice, 30 levels deep, costs 30 steps to measure (and is refused: its
expanded cost is 2**30), not 2**30 steps. :func:`check_query` runs all of it against a
deadline; the server calls it in a worker thread (:mod:`lineagehub.interfaces.server`), so the event loop
keeps answering while a hostile query is measured.

A query that passed is remembered (:func:`checked_document`, at most :data:`CACHE_SIZE`
queries of at most :data:`CACHE_QUERY_LENGTH` characters, per schema): clients send the same
operation texts again and again (the SDK's are fixed strings), and parsing and validating even
``{ __typename }`` costs ~0.5 ms, ~1 ms for a small operation with variables. What is
remembered is the outcome of the same deterministic checks on the same text; a refused query
is checked anew each time.

Refusals are GraphQL errors with code ``QUERY_TOO_COMPLEX`` and ``extensions.limit``
(``length``, ``tokens``, ``depth``, ``cost``, ``aliases``, ``walks``, ``time``) and ``extensions.max``.
"""

from __future__ import annotations

import contextvars
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
    specified_rules,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

MAX_TOKENS = 5000
#: Characters of query text: what 5,000 tokens need, with room for long strings. Beyond it
#: graphql-core's lexer (a Python loop per character) would hold a worker ~2 ms per 10,000.
MAX_QUERY_LENGTH = 100_000
MAX_DEPTH = 12
MAX_COST = 20_000
MAX_ALIASES = 50
#: Root fields that walk the graph: a trace of up to 100,000 nodes, a path search, a diff or a
#: report each (seconds of work on a large graph, and an answer of megabytes). A query may
#: ask for a few at once (a page's trace and path); fifty aliased traces would hold the
#: server for as long as fifty requests, in one.
WALKS = frozenset(
    {
        "lineage",
        "impact",
        "path",
        "columnLineage",
        "compareModelVersions",
        "modelCard",
        "complianceReport",
        "verifyAuditLog",
    }
)
#: Fields, wherever they are, that are as much work as a walk: a lineage result's ``export``
#: lays a picture out with Graphviz (a second or more for a large one); fifty aliased exports
#: of one result held the server for fifty of them, in one request.
EXPORTS = frozenset({"export"})
MAX_WALKS = 4
#: Seconds that parsing and validating one request may take.
TIME_BUDGET = 2.0
# Nesting of selection sets (fields, inline fragments, spreads) beyond which measuring stops:
# far past MAX_DEPTH, and well inside Python's recursion limit.
_MAX_NESTING = 200

TOO_COMPLEX = "QUERY_TOO_COMPLEX"

#: Queries that passed, remembered per schema (least recently used dropped first) ...
CACHE_SIZE = 256
#: ... when at most this long: ~2,500 tokens, a few MB of syntax tree for all of them at worst.
CACHE_QUERY_LENGTH = 10_000


class _Passed:
    """The documents of queries that passed the checks, by query text, per schema."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_schema: weakref.WeakKeyDictionary[GraphQLSchema, OrderedDict[str, DocumentNode]]
        self.by_schema = weakref.WeakKeyDictionary()

    def get(self, schema: GraphQLSchema, query: str) -> DocumentNode | None:
        with self.lock:
            documents = self.by_schema.get(schema)
            document = documents.get(query) if documents is not None else None
            if document is not None:
                documents.move_to_end(query)  # type: ignore[union-attr]
            return document

    def put(self, schema: GraphQLSchema, query: str, document: DocumentNode) -> None:
        if len(query) > CACHE_QUERY_LENGTH:
            return
        with self.lock:
            documents = self.by_schema.setdefault(schema, OrderedDict())
            documents[query] = document
            documents.move_to_end(query)
            while len(documents) > CACHE_SIZE:
                documents.popitem(last=False)


_PASSED = _Passed()


def checked_document(schema: GraphQLSchema, query: str) -> DocumentNode | None:
    """The document of ``query`` if it passed :func:`check_query` against ``schema`` before
    (and is still remembered), else None. Microseconds: no thread needed."""
    return _PASSED.get(schema, query)


class OverBudget(Exception):
    """Parsing and validation ran past their deadline."""


def refusal(message: str, limit: str, maximum: float, **extra: Any) -> GraphQLError:
    """The GraphQL error for a request over one of the limits."""
    return GraphQLError(
        message, extensions={"code": TOO_COMPLEX, "limit": limit, "max": maximum, **extra}
    )


@dataclass(frozen=True, slots=True)
class Measure:
    depth: int = 0
    cost: int = 0
    aliases: int = 0
    walks: int = 0


class _TooNested(Exception):
    pass


def measure_operations(
    document: DocumentNode, deadline: float | None = None
) -> Iterator[tuple[OperationDefinitionNode, Measure]]:
    """Each operation of ``document`` with its :class:`Measure` (fragments expanded, each
    measured once). Unknown fragments and fragment cycles count as empty: other rules report
    them. :class:`OverBudget` past ``deadline`` (a ``time.monotonic()`` value)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    memo: dict[str, Measure] = {}
    visiting: set[str] = set()

    def selections(node: SelectionSetNode, nesting: int, root: bool = False) -> Measure:
        """The measure of a selection set; ``root``: the operation's own (where the graph
        walks of :data:`WALKS` are, and fragments spread there: a fragment on the root type
        can be spread nowhere else)."""
        if nesting > _MAX_NESTING:
            raise _TooNested
        if deadline is not None and time.monotonic() > deadline:
            raise OverBudget
        depth = cost = aliases = walks = 0
        for sel in node.selections:
            if isinstance(sel, FieldNode):
                inner = (
                    selections(sel.selection_set, nesting + 1) if sel.selection_set else Measure()
                )
                depth = max(depth, 1 + inner.depth)
                cost += 1 + inner.cost
                aliases += inner.aliases + (1 if sel.alias is not None else 0)
                walks += inner.walks + (root and sel.name.value in WALKS)
                walks += sel.name.value in EXPORTS
                continue
            if isinstance(sel, InlineFragmentNode):
                inner = selections(sel.selection_set, nesting + 1, root)
            elif isinstance(sel, FragmentSpreadNode):
                name = sel.name.value
                if name not in memo:
                    if name in visiting or name not in fragments:
                        continue
                    visiting.add(name)
                    memo[name] = selections(fragments[name].selection_set, nesting + 1, root)
                    visiting.discard(name)
                inner = memo[name]
            else:  # pragma: no cover - graphql-core has no other selection
                continue
            depth = max(depth, inner.depth)
            cost += inner.cost
            aliases += inner.aliases
            walks += inner.walks
        return Measure(depth, cost, aliases, walks)

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            try:
                found = selections(definition.selection_set, 0, root=True)
            except _TooNested:
                found = Measure(depth=_MAX_NESTING, cost=MAX_COST + 1)
            yield definition, found


def limit_errors(document: DocumentNode, deadline: float | None = None) -> list[GraphQLError]:
    """The limits ``document``'s operations break (depth, cost, aliases), one error each."""
    errors = []
    for operation, found in measure_operations(document, deadline):
        name = operation.name.value if operation.name else "the operation"
        for limit, value, maximum, what in (
            ("depth", found.depth, MAX_DEPTH, "fields deep"),
            ("cost", found.cost, MAX_COST, "fields with its fragments expanded"),
            ("aliases", found.aliases, MAX_ALIASES, "aliases with its fragments expanded"),
            (
                "walks",
                found.walks,
                MAX_WALKS,
                "graph walks (lineage, impact, path, reports, exports)",
            ),
        ):
            if value > maximum:
                verb = "is" if limit == "depth" else "resolves" if limit == "cost" else "has"
                errors.append(
                    GraphQLError(
                        f"{name} {verb} {value} {what}; the limit is {maximum}",
                        operation,
                        extensions={"code": TOO_COMPLEX, "limit": limit, "max": maximum},
                    )
                )
    return errors


def check_query(
    schema: GraphQLSchema, query: str, budget: float = TIME_BUDGET
) -> tuple[DocumentNode | None, list[GraphQLError]]:
    """Parse and validate ``query``: (the document, []) when it may run, else (None or the
    document, the errors). Bounded in tokens, and in time by ``budget`` seconds."""
    deadline = time.monotonic() + budget
    known = _PASSED.get(schema, query)
    if known is not None:
        if time.monotonic() > deadline:
            return known, [over_budget(budget)]
        return known, []
    if len(query) > MAX_QUERY_LENGTH:
        return None, [
            refusal(
                f"the query is {len(query)} characters long; the limit is {MAX_QUERY_LENGTH} "
                "(pass data as variables)",
                "length",
                MAX_QUERY_LENGTH,
            )
        ]
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError as e:
        if "tokens" in e.message and "Parsing aborted" in e.message:
            return None, [
                refusal(f"the query has more than {MAX_TOKENS} tokens", "tokens", MAX_TOKENS)
            ]
        if "nested too deeply" in e.message:
            return None, [refusal("the query is nested too deeply to parse", "depth", MAX_DEPTH)]
        return None, [e]
    except RecursionError:
        return None, [refusal("the query is nested too deeply to parse", "depth", MAX_DEPTH)]
    try:
        # The limits first: they take one pass over the document, where graphql-core's rules
        # take many; a query over them is refused without the rest.
        errors = limit_errors(document, deadline)
        if not errors:
            errors = list(validate_document(schema, document, tuple(specified_rules)))
    except OverBudget:
        return document, [over_budget(budget)]
    except RecursionError:
        return document, [refusal("the query is nested too deeply", "depth", MAX_DEPTH)]
    if time.monotonic() > deadline:
        return document, [over_budget(budget)]
    if not errors:
        _PASSED.put(schema, query, document)
    return document, errors


def over_budget(budget: float) -> GraphQLError:
    return refusal(
        f"parsing and validating the query took longer than {budget:g} s", "time", budget
    )


# The document the server already parsed and validated (in a worker thread) for the request
# being executed; the extension below hands it to strawberry instead of parsing again.
PREPARED: contextvars.ContextVar[tuple[str, DocumentNode] | None] = contextvars.ContextVar(
    "lineagehub_prepared", default=None
)


class Limits(SchemaExtension):
    """Parsing and validation with :func:`check_query`'s limits, once per request.

    Over HTTP the server has done both already, off the event loop (:data:`PREPARED`);
    in process (``schema.execute``) they run here."""

    def on_parse(self) -> Iterator[None]:
        ctx = self.execution_context
        prepared = PREPARED.get()
        if prepared is not None and ctx.graphql_document is None and prepared[0] == ctx.query:
            ctx.graphql_document = prepared[1]
            ctx.pre_execution_errors = []  # validated: strawberry skips its own pass
        elif ctx.graphql_document is None and ctx.query:
            document, errors = check_query(ctx.schema._schema, ctx.query)
            if document is None:
                # strawberry's parse raises the same syntax error, or the token limit
                # (its parse options carry ours); the error is reported as usual
                ctx.parse_options = {"max_tokens": MAX_TOKENS}
            else:
                ctx.graphql_document = document
                ctx.pre_execution_errors = errors
        yield
