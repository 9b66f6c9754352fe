"""The generic graph data the stores keep: nodes, edges, metric series, and traversal results.

The graph layer knows labels, ids and JSON properties, nothing of ML. Every identifier that a
backend may have to put into query text (labels, edge kinds, property keys and paths) is
checked here, against one strict pattern, before any backend sees it.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from lineagehub.graph.errors import ValidationError

# Labels are node kinds such as ``DatasetVersion``; edge kinds are relationship types such as
# ``GENERATED_BY``. Both end up in Cypher text (Neo4j cannot take them as parameters), so they
# are restricted to plain ASCII identifiers; nothing that could close a backtick or a string.
LABEL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}\Z")
EDGE_KIND_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}\Z")
# Top-level property keys. Names starting with "_" and the name "id" are the stores' own.
PROPERTY_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}\Z")
# Later segments of a property path (``params.learning_rate``, ``metrics.eval/loss``).
PATH_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-/]{0,127}\Z")
RESERVED_KEYS = frozenset({"id"})
# System fields that filters and orderings may name besides properties.
SYSTEM_FIELDS = frozenset({"id", "_label", "_created_at", "_updated_at"})

MAX_ID_LENGTH = 512
MAX_PROPS_BYTES = 1_000_000  # one node's or edge's properties, as JSON


def validate_label(label: str, field_name: str = "label") -> str:
    if not isinstance(label, str) or not LABEL_RE.match(label):
        raise ValidationError(
            f"invalid {field_name} {label!r}: expected a letter followed by up to 63 letters, "
            "digits or underscores",
            field=field_name,
        )
    return label


def validate_edge_kind(kind: str, field_name: str = "kind") -> str:
    if not isinstance(kind, str) or not EDGE_KIND_RE.match(kind):
        raise ValidationError(
            f"invalid edge kind {kind!r}: expected UPPER_SNAKE_CASE (A-Z, 0-9, _), "
            "up to 64 characters",
            field=field_name,
        )
    return kind


def validate_id(node_id: Any, field_name: str = "id") -> str:
    if not isinstance(node_id, str) or not node_id or len(node_id) > MAX_ID_LENGTH:
        raise ValidationError(
            f"invalid {field_name} {node_id!r}: expected a non-empty string of at most "
            f"{MAX_ID_LENGTH} characters",
            field=field_name,
        )
    if "\x00" in node_id:
        raise ValidationError(f"invalid {field_name}: NUL character", field=field_name)
    return node_id


def validate_path(path: str, field_name: str = "where") -> tuple[str, ...]:
    """Check a dotted property path (or a system field) and split it into segments."""
    if not isinstance(path, str):
        raise ValidationError(f"property path must be a string, not {path!r}", field=field_name)
    if path in SYSTEM_FIELDS:
        return (path,)
    parts = tuple(path.split("."))
    if (
        not PROPERTY_KEY_RE.match(parts[0])
        or parts[0] in RESERVED_KEYS
        or not all(PATH_SEGMENT_RE.match(p) for p in parts[1:])
    ):
        raise ValidationError(
            f"invalid property path {path!r}: segments are letters, digits, '_' or '-', "
            f"separated by '.'; system fields are {sorted(SYSTEM_FIELDS)}",
            field=field_name,
        )
    return parts


class _Delete:
    """The type of :data:`DELETE`."""

    _instance: _Delete | None = None

    def __new__(cls) -> _Delete:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DELETE"


DELETE = _Delete()
"""As a property value in an upsert: remove this key (at any depth). ``None`` is a value
like any other (``{"max_depth": None}`` is stored as null)."""

# How DELETE travels inside JSON text between the store and its backend: an object whose only
# key starts with NUL. Property keys containing NUL are refused, so no user data can look so.
_DELETE_KEY = "\x00lineagehub.delete"
_NUL_JSON = "\\u0000"
# A code point of a surrogate pair on its own: not Unicode text (no UTF-8 for it).
_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(text: str) -> str | None:
    """The first lone surrogate in ``text`` (text decoded with ``errors='surrogateescape'``,
    say), or ``None``: such text is not Unicode and no store can write it as UTF-8."""
    if text.isascii():
        return None
    found = _SURROGATE.search(text)
    return found[0] if found else None


def _json_default(value: Any) -> Any:
    if value is DELETE:
        return {_DELETE_KEY: True}
    raise TypeError(type(value).__name__)


# One encoder for every call: json.dumps with non-default options builds a new one each time.
_ENCODE = json.JSONEncoder(
    allow_nan=False, separators=(",", ":"), ensure_ascii=False, default=_json_default
).encode


# The fast encoder (orjson, in Rust) for property maps of JSON's own types only: it writes the
# document the standard encoder writes (numbers may be spelt differently: 1e-05 as 0.00001).
# Anything else takes the standard path, whose acceptance and errors stay the reference:
# orjson would also take a UUID or an Enum, and write NaN as null.
_PLAIN: frozenset[type] = frozenset((str, int, float, bool, type(None), _Delete))
_PLAIN_CONTAINERS = 1000  # beyond this many nested containers (or a cycle): the standard path


def _fast_default(value: Any) -> Any:
    if value is DELETE:
        return {_DELETE_KEY: True}
    raise TypeError(type(value).__name__)  # pragma: no cover - only_of(_PLAIN) admits nothing else


def only_of(value: dict[Any, Any] | list[Any], kinds: frozenset[type], budget: int) -> bool:
    """Whether a dict or list holds, at any depth, only values whose exact type is one of
    ``kinds`` (a float also finite), in dicts, lists and tuples (at most ``budget`` of them:
    beyond, or a cycle, False). What may take a fast JSON encoder, ahead of the standard."""
    stack: list[Any] = [value]
    while stack:
        container = stack.pop()
        for item in container.values() if type(container) is dict else container:
            kind = type(item)
            if kind in kinds:
                if kind is float and item - item != 0.0:  # NaN or an infinity
                    return False
                continue
            if kind is dict or kind is list or kind is tuple:
                budget -= 1
                if budget < 0:
                    return False
                stack.append(item)
                continue
            return False
    return True


def _encode(props: Mapping[str, Any]) -> str:
    """Compact JSON of a property map: the fast encoder when :func:`only_of` says it may (and
    it succeeds: integers beyond 64 bits, non-text keys and lone surrogates it refuses),
    else the standard one."""
    if type(props) is dict and only_of(props, _PLAIN, _PLAIN_CONTAINERS):
        try:
            return orjson.dumps(props, default=_fast_default).decode("utf-8")
        except orjson.JSONEncodeError:
            pass
    text = _ENCODE(props)
    if lone_surrogate(text):
        raise ValueError("a lone surrogate")  # no store writes it as UTF-8: name the field
    return text


# The fast decoder (orjson) reads an integer beyond 64 bits as a float; the standard one
# keeps it whole. So a document with a float that large in magnitude is read again the
# standard way (a float written so, 1e+20, reads the same both ways).
_BIG = float(2**63)


def _has_big_float(value: Any) -> bool:
    stack = [value]
    while stack:
        container = stack.pop()
        for item in container.values() if type(container) is dict else container:
            kind = type(item)
            if kind is float:
                if item >= _BIG or item <= -_BIG:
                    return True
            elif kind is dict or kind is list:
                stack.append(item)
    return False


def fast_load(text: str | bytes) -> tuple[bool, Any]:
    """``(True, value)`` where orjson reads ``text`` (or UTF-8 bytes) as the standard decoder
    does; ``(False, None)`` where only the standard decoder should answer: texts orjson
    refuses (NaN, lone surrogates, bytes not UTF-8) or may read differently (see :data:`_BIG`)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False, None
    kind = type(value)
    if kind is dict or kind is list:
        if _has_big_float(value):
            return False, None
    elif kind is float and (value >= _BIG or value <= -_BIG):
        return False, None
    return True, value


def load_json(text: str) -> Any:
    """Stored JSON text, read as the standard decoder reads it, in a third of the time where
    :func:`fast_load` may, else by the standard decoder, errors and all."""
    ok, value = fast_load(text)
    return value if ok else json.loads(text)


def _is_delete(value: Any) -> bool:
    return isinstance(value, dict) and _DELETE_KEY in value


def _check_json_value(value: Any, where: str, depth: int = 0) -> None:
    if depth > 32:
        raise ValidationError(f"{where}: nested deeper than 32 levels", field=where)
    if isinstance(value, str):
        if found := lone_surrogate(value):
            raise ValidationError(
                f"{where}: text holds a lone surrogate {found!r}: it is not Unicode text",
                field=where,
            )
        return
    if value is None or value is DELETE or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(
                f"{where}: {value!r} is not a JSON value (NaN and infinities are only "
                "allowed in metric series)",
                field=where,
            )
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            if v is DELETE:
                raise ValidationError(f"{where}[{i}]: DELETE only removes keys", field=where)
            _check_json_value(v, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str) or "\x00" in k or lone_surrogate(k):
                raise ValidationError(
                    f"{where}: key {k!r} is not a string without NUL characters or lone surrogates",
                    field=where,
                )
            _check_json_value(v, f"{where}.{k}", depth + 1)
        return
    raise ValidationError(
        f"{where}: value of type {type(value).__name__} is not JSON-serializable", field=where
    )


# Top-level keys that passed the check (exact str only: a subclass could compare equal to
# one and still be refused), so a batch checks each distinct key once.
_GOOD_KEYS: set[str] = set()
_GOOD_KEYS_SIZE = 4096


def encode_props(props: Mapping[str, Any], owner: str) -> str:
    """Validate a property map and return it as compact JSON (a patch: :data:`DELETE`
    markers included, for :func:`merge_patch` to apply).

    Top-level keys must be plain identifiers (they may become Neo4j property names); values
    must be JSON (no NaN, no infinities, no arbitrary objects).
    """
    if not isinstance(props, Mapping):
        raise ValidationError(f"{owner}: properties must be a mapping", field="props")
    for key in props:
        if type(key) is str and key in _GOOD_KEYS:  # the same few keys, node after node
            continue
        if not isinstance(key, str) or not PROPERTY_KEY_RE.match(key) or key in RESERVED_KEYS:
            raise ValidationError(
                f"{owner}: invalid property key {key!r}: expected a letter followed by letters, "
                "digits or '_' (and not 'id')",
                field=f"props.{key}",
            )
        if type(key) is str:
            if len(_GOOD_KEYS) >= _GOOD_KEYS_SIZE:
                _GOOD_KEYS.clear()
            _GOOD_KEYS.add(key)
    if not props:
        return "{}"
    try:
        text = _encode(props)
    except (TypeError, ValueError, RecursionError):
        # Slow path, only on failure: find the offending field to name it.
        for key, value in props.items():
            _check_json_value(value, f"props.{key}")
        raise ValidationError(f"{owner}: properties are not JSON", field="props") from None
    if _NUL_JSON in text:
        # DELETE markers, or a key with NUL in it that could pass for one: look closer.
        for key, value in props.items():
            _check_json_value(value, f"props.{key}")
    if len(text) > MAX_PROPS_BYTES:
        raise ValidationError(
            f"{owner}: properties are {len(text)} bytes as JSON; the limit is {MAX_PROPS_BYTES}",
            field="props",
        )
    return text


def merged_too_large(kind: str, ids: Sequence[str]) -> ValidationError:
    """The refusal of an upsert whose patch fits but would take what is stored past
    :data:`MAX_PROPS_BYTES` once merged (both backends say it in these words)."""
    shown = ", ".join(map(repr, ids[:5])) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    return ValidationError(
        f"{kind} {shown}: merged with what is stored, the properties would be more than "
        f"{MAX_PROPS_BYTES:,} characters of JSON; nothing of this write was stored",
        field="props",
    )


def needs_merge(patch_json: str) -> bool:
    """Whether a patch (from :func:`encode_props`) holds a DELETE marker or a null, where
    the stores' merge differs from RFC 7396 (which SQLite's ``json_patch`` implements)."""
    return _NUL_JSON in patch_json or "null" in patch_json


def merge_patch(target: Any, patch: Any) -> Any:
    """Merge a property patch into a document: mappings merge key by key (recursively);
    any other value, ``None`` and lists included, replaces; a :data:`DELETE` marker removes
    the key. Every backend applies exactly this (SQLite in SQL where it is equivalent)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if _is_delete(value):
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = merge_patch(result.get(key), value)
        else:
            result[key] = value
    return result


def strip_deletes(value: Any) -> Any:
    """A patch applied to nothing: the document a new node or edge starts with."""
    return merge_patch({}, value) if isinstance(value, dict) else value


strip_nulls = strip_deletes  # the earlier name


# --- time ---------------------------------------------------------------------------------

_ISO = "%Y-%m-%dT%H:%M:%S.%fZ"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


#: The times the hub accepts, in UTC: datetime's own range less a day at each end, so that no
#: timezone offset or day's arithmetic on an accepted time can leave it.
MIN_TIME = datetime(1, 1, 2, tzinfo=timezone.utc)
MAX_TIME = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=timezone.utc)


def check_time(value: Any, field_name: str = "time") -> datetime:
    """A timezone-aware datetime between :data:`MIN_TIME` and :data:`MAX_TIME`, in UTC.

    Everything the hub accepts as a time passes here first (the SDK, the CLI, the API), so a
    bad one is a :class:`ValidationError` naming the field where it is given, never an
    ``OverflowError`` later. A naive datetime is refused, not guessed:
    ``datetime.now()`` is local time and ``datetime.utcnow()`` UTC, and both are naive."""
    if not isinstance(value, datetime):
        raise ValidationError(
            f"{field_name}: expected a datetime, got {type(value).__name__}", field=field_name
        )
    try:
        offset = value.utcoffset()
    except (ValueError, TypeError, OverflowError):  # a tzinfo that misbehaves
        offset = None
    if offset is None:
        raise ValidationError(
            f"{field_name}: naive datetime {value.isoformat()}; give a timezone "
            "(e.g. datetime.now(timezone.utc))",
            field=field_name,
        )
    try:
        utc = value.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not MIN_TIME <= utc <= MAX_TIME:
        raise ValidationError(
            f"{field_name}: {value.isoformat()} is outside the times the hub keeps "
            f"({MIN_TIME.date().isoformat()} to {MAX_TIME.date().isoformat()} UTC)",
            field=field_name,
        )
    return utc


def to_iso(dt: datetime, field_name: str = "time") -> str:
    """Fixed-width UTC text, so that string order is time order in every backend; the time
    is checked as :func:`check_time` does."""
    # isoformat is implemented in C (strftime costs 3x more); always 4-digit years.
    return check_time(dt, field_name).isoformat(timespec="microseconds")[:-6] + "Z"


def from_iso(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.strptime(text, _ISO).replace(tzinfo=timezone.utc)


def parse_time(text: str, field_name: str) -> datetime:
    """A time a person typed: ISO 8601 (``2026-03-01``, ``2026-03-01T12:00:00Z``,
    ``...+02:00``); without a timezone it is UTC. The result is in UTC and checked as
    :func:`check_time` does. Anything else is a :class:`ValidationError` naming
    ``field_name``."""
    try:
        parsed = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            f"{field_name}: {text!r:.40} is not an ISO 8601 time (2026-03-01T12:00:00Z)",
            field=field_name,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return check_time(parsed, field_name)


# --- the data -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """A node of the lineage graph: an id, one label (its kind) and JSON properties.

    ``created_at`` and ``updated_at`` are set by the store and ignored on write.
    """

    id: str
    label: str
    props: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


def edge_id(kind: str, source: str, target: str, discriminator: str = "") -> str:
    """The deterministic id of an edge, so that re-sending the same fact is idempotent.

    ``<source>-<KIND>-><target>`` (``#<discriminator>`` after it when given): readable, and
    it starts with the source, so a node's edges sit together in the id index and bulk writes
    touch few pages (a hashed id scattered them: 2x slower at a million nodes). Too long for
    an id, it becomes ``e:`` and a hash."""
    text = f"{source}-{kind}->{target}"
    if discriminator:
        text += f"#{discriminator}"
    if len(text) <= MAX_ID_LENGTH:
        return text
    h = hashlib.blake2b(digest_size=16)
    for part in (kind, source, target, discriminator):
        h.update(part.encode())
        h.update(b"\x00")
    return "e:" + h.hexdigest()


@dataclass(frozen=True, slots=True)
class Edge:
    """A directed edge, pointing (as in W3C PROV) from the later thing to what it came from.

    ``id`` defaults to a hash of (kind, source, target), so re-sending the same fact is
    idempotent; give an explicit id (or use :func:`edge_id` with a discriminator) to keep
    several edges of one kind between the same two nodes. ``event_time`` is when it happened
    (default: when the store learned it), ``ingested_at`` when the store learned it (set by
    the store on first write), ``asserted_by`` who said so.
    """

    source: str
    target: str
    kind: str
    props: dict[str, Any] = field(default_factory=dict)
    event_time: datetime | None = None
    asserted_by: str | None = None
    id: str = ""
    ingested_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(
                self, "id", edge_id(str(self.kind), str(self.source), str(self.target))
            )


# --- metric values on the wire -------------------------------------------------------------
#
# JSON (and GraphQL's Float) cannot carry NaN or +-inf, and a diverging loss is a fact worth
# keeping: on the wire the non-finite values are these three strings (the ``MetricValue``
# scalar). The server and the remote client use this one pair of functions.

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def metric_to_wire(value: float) -> float | str:
    """A metric value as JSON can carry it: the number, or ``"NaN"``, ``"Infinity"``,
    ``"-Infinity"``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def metric_from_wire(value: object, field_name: str = "value") -> float:
    """The float a wire metric value stands for: a number (not a bool) or exactly one of
    ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; anything else is a :class:`ValidationError`
    naming ``field_name``."""
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if not isinstance(value, bool) and isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            pass  # an int beyond the float range
    raise ValidationError(
        f'a metric value is a number or "NaN", "Infinity", "-Infinity"; got {value!r:.60}',
        field=field_name,
    )


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One point of a metric series: the value of ``key`` on node ``node_id`` at ``step``.

    ``value`` may be NaN or ±inf: a diverging loss is a fact worth keeping.
    """

    node_id: str
    key: str
    step: int
    value: float
    timestamp: datetime | None = None


@dataclass(frozen=True, slots=True)
class SeriesSummary:
    key: str
    count: int
    last: float
    last_step: int
    min: float
    max: float
    first_timestamp: datetime | None
    last_timestamp: datetime | None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; pass ``next_cursor`` as ``after`` to get the next one."""

    items: list[Node]
    next_cursor: str | None


class Direction(str, enum.Enum):
    """UPSTREAM follows edges forward (towards what a thing came from); DOWNSTREAM backward."""

    UPSTREAM = "UPSTREAM"
    DOWNSTREAM = "DOWNSTREAM"
    BOTH = "BOTH"


class TruncationReason(str, enum.Enum):
    MAX_NODES = "MAX_NODES"
    MAX_DEPTH = "MAX_DEPTH"
    TIMEOUT = "TIMEOUT"


@dataclass(frozen=True, slots=True)
class Adjacent:
    """A neighbour of a node: the edge that joins them and the node at its other end."""

    edge: Edge
    node: Node
    direction: Direction


@dataclass(slots=True)
class TraversedNode:
    node: Node
    distance: int
    reached_from: str | None
    direction: Direction | None  # None for the start nodes


@dataclass(slots=True)
class Subgraph:
    """What a traversal reached: nodes in discovery order, the edges between them.

    ``truncated`` is true when a budget stopped the walk before it was complete; then
    ``truncation_reason`` says which budget. A result never silently looks complete.
    """

    nodes: dict[str, TraversedNode]
    edges: list[Edge]
    truncated: bool = False
    truncation_reason: TruncationReason | None = None

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.nodes

    @property
    def roots(self) -> list[str]:
        """The ids the traversal started from (reached from nothing), in order."""
        return [node_id for node_id, t in self.nodes.items() if t.reached_from is None]

    def __len__(self) -> int:
        return len(self.nodes)
