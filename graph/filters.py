"""Property filters, orderings and cursors, parsed once into a small tree that each backend
renders into its own query language (SQL for SQLite, Cypher for Neo4j).

A filter is a mapping in the style of MongoDB queries::

    {"status": "FINISHED",                         # equality
     "metrics.auc": {"$gte": 0.9},                 # comparison on a nested property
     "kind": {"$in": ["train", "evaluate"]},
     "$or": [{"tags.team": "growth"}, {"owner": {"$exists": False}}]}

Operators: ``$eq $ne $lt $lte $gt $gte $in $nin $exists``; combinators ``$and $or $not``,
nested at most :data:`MAX_NESTING` levels (database parsers run out of stack beyond).
Keys are dotted property paths (``params.lr``) or the system fields ``id``, ``_label``,
``_created_at`` and ``_updated_at``. A missing property compares as null: it matches
``{"x": None}`` and ``{"x": {"$exists": False}}``, and no other comparison.

An ordering is a list of paths, ``-`` in front for descending: ``["-metrics.auc",
"_created_at"]``. Nulls sort last in both directions, and ``id`` is always the final tie-break,
so cursors are stable (keyset pagination, not offsets).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from lineagehub.graph.errors import ValidationError
from lineagehub.graph.model import validate_path

OPS = ("$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$in", "$nin", "$exists", "$contains")
#: The longest text ``$contains`` looks for.
MAX_CONTAINS = 200
MAX_IN = 10_000
MAX_CLAUSES = 1_000
#: How deep $and, $or and $not may nest.
MAX_NESTING = 16


@dataclass(frozen=True, slots=True)
class Cmp:
    """``path op value`` with op one of eq, ne, lt, lte, gt, gte, in, nin, contains (a
    lower-cased text, found in a text property whatever its case)."""

    path: tuple[str, ...]
    op: str
    value: Any
    #: A keyset cursor's "after this value" (gt or lt): in a backend whose ordering of
    #: values of different types is not its comparison's (Cypher: a text and a number do not
    #: compare), the rows of the types sorted after it are after it too.
    keyset: bool = False


@dataclass(frozen=True, slots=True)
class IsNull:
    path: tuple[str, ...]
    negate: bool = False


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Expr


Expr: TypeAlias = Cmp | IsNull | And | Or | Not
TRUE = And(())
FALSE = Or(())


def _scalar(value: Any, field: str) -> Any:
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:  # what SQLite and Neo4j store as an integer
            return value
        raise ValidationError(
            f"{field}: {str(value)[:24]}... is beyond a 64-bit integer", field=field
        )
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise ValidationError(f"{field}: cannot compare with {value!r}", field=field)
    raise ValidationError(
        f"{field}: expected a string, number or boolean, got {type(value).__name__}",
        field=field,
    )


class _Parser:
    def __init__(self) -> None:
        self.clauses = 0

    def parse(self, where: Any, field: str = "where", depth: int = 0) -> Expr:
        if not isinstance(where, Mapping):
            raise ValidationError(f"{field}: a filter must be a mapping", field=field)
        if depth > MAX_NESTING:
            # SQLite's parser (and Cypher's planner) run out of stack long before Python does
            raise ValidationError(
                f"{field}: $and, $or and $not nested more than {MAX_NESTING} levels deep",
                field=field,
            )
        items: list[Expr] = []
        for key, value in where.items():
            self.clauses += 1
            if self.clauses > MAX_CLAUSES:
                raise ValidationError(f"{field}: more than {MAX_CLAUSES} clauses", field=field)
            if key in ("$and", "$or"):
                if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
                    raise ValidationError(f"{field}.{key}: expected a list of filters", field=field)
                parts = tuple(
                    self.parse(v, f"{field}.{key}[{i}]", depth + 1) for i, v in enumerate(value)
                )
                items.append(And(parts) if key == "$and" else Or(parts))
            elif key == "$not":
                items.append(Not(self.parse(value, f"{field}.$not", depth + 1)))
            elif isinstance(key, str) and key.startswith("$"):
                raise ValidationError(
                    f"{field}: unknown combinator {key!r} (use $and, $or, $not)", field=field
                )
            else:
                items.append(self._condition(key, value, f"{field}.{key}"))
        return items[0] if len(items) == 1 else And(tuple(items))

    def _condition(self, key: str, value: Any, field: str) -> Expr:
        path = validate_path(key, field)
        if not isinstance(value, Mapping):
            return self._op(path, "$eq", value, field)
        if not value:
            raise ValidationError(f"{field}: empty operator mapping", field=field)
        parts = tuple(self._op(path, op, v, f"{field}.{op}") for op, v in value.items())
        return parts[0] if len(parts) == 1 else And(parts)

    def _op(self, path: tuple[str, ...], op: str, value: Any, field: str) -> Expr:
        if op not in OPS:
            raise ValidationError(f"{field}: unknown operator {op!r}; known: {OPS}", field=field)
        if op == "$exists":
            if not isinstance(value, bool):
                raise ValidationError(f"{field}: $exists takes true or false", field=field)
            return IsNull(path, negate=value)
        if op in ("$in", "$nin"):
            if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
                raise ValidationError(f"{field}: {op} takes a list", field=field)
            if len(value) > MAX_IN:
                raise ValidationError(f"{field}: more than {MAX_IN} values", field=field)
            values = tuple(_scalar(v, field) for v in value)
            return Cmp(path, op[1:], values)
        if op == "$contains":
            # a substring of a text property, case-insensitive (every letter, both backends): search boxes
            if not isinstance(value, str) or not value or len(value) > MAX_CONTAINS:
                raise ValidationError(
                    f"{field}: $contains takes a text of 1 to {MAX_CONTAINS} characters",
                    field=field,
                )
            return Cmp(path, "contains", value.lower())
        if value is None and op in ("$eq", "$ne"):
            return IsNull(path, negate=(op == "$ne"))
        return Cmp(path, op[1:], _scalar(value, field))


def parse_where(where: Mapping[str, Any] | None) -> Expr:
    """Validate a filter mapping and return its tree (``TRUE`` for no filter)."""
    if where is None:
        return TRUE
    return _Parser().parse(where)


@dataclass(frozen=True, slots=True)
class SortKey:
    path: tuple[str, ...]
    descending: bool = False


def parse_order(order_by: Sequence[str] | str | None) -> tuple[SortKey, ...]:
    """Parse ``["-metrics.auc", "_created_at"]``; ``id`` is appended as the tie-break."""
    if order_by is None:
        order_by = []
    if isinstance(order_by, str):
        order_by = [order_by]
    keys: list[SortKey] = []
    for i, raw in enumerate(order_by):
        if not isinstance(raw, str) or not raw:
            raise ValidationError(f"order_by[{i}]: expected a property path", field="order_by")
        descending = raw.startswith("-")
        keys.append(SortKey(validate_path(raw.lstrip("-+"), "order_by"), descending))
    if len(keys) > 8:
        raise ValidationError("order_by: at most 8 keys", field="order_by")
    if not any(k.path == ("id",) for k in keys):
        keys.append(SortKey(("id",)))
    return tuple(keys)


def encode_cursor(values: Sequence[Any]) -> str:
    raw = json.dumps(list(values), separators=(",", ":"), allow_nan=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: Sequence[SortKey]) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError, AttributeError, TypeError):
        raise ValidationError("after: not a cursor this store issued", field="after") from None
    if not isinstance(values, list) or len(values) != len(order):
        raise ValidationError(
            "after: the cursor belongs to another ordering; restart without it", field="after"
        )
    return values


def keyset_after(order: Sequence[SortKey], values: Sequence[Any]) -> Expr:
    """The rows strictly after ``values`` in ``order`` (nulls last), as a filter tree."""
    disjuncts: list[Expr] = []
    for i, key in enumerate(order):
        value = values[i]
        prefix: list[Expr] = [
            IsNull(k.path) if v is None else Cmp(k.path, "eq", v)
            for k, v in zip(order[:i], values[:i])
        ]
        if value is None:
            continue  # nothing sorts after a null except other rows with equal earlier keys
        op = "lt" if key.descending else "gt"
        after = Or((Cmp(key.path, op, value, keyset=True), IsNull(key.path)))
        disjuncts.append(And((*prefix, after)) if prefix else after)
    return Or(tuple(disjuncts))


def sort_values(order: Sequence[SortKey], get: Any) -> list[Any]:
    """The values of a row for each sort key; ``get(path)`` reads one from the row."""
    return [get(k.path) for k in order]


def node_value(node: Any, path: tuple[str, ...]) -> Any:
    """Read a filter path from a :class:`~lineagehub.graph.model.Node` (system fields too)."""
    from lineagehub.graph.model import to_iso

    head = path[0]
    if head == "id":
        return node.id
    if head == "_label":
        return node.label
    if head in ("_created_at", "_updated_at"):
        dt = node.created_at if head == "_created_at" else node.updated_at
        return to_iso(dt) if dt is not None else None
    value: Any = node.props
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if isinstance(value, (Mapping, list)):
        # Lists and objects compare as their JSON text, as SQLite's json_extract gives them.
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return value
