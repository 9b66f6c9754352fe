"""The tamper-evident audit log: entries chained by hashes, and their verification.

Every state change appends an :class:`AuditEntry` in the same transaction as the change
(:meth:`~lineagehub.graph.store.GraphStore.append_audit`). Each entry carries the hash of the
one before it (``prev_hash``; the first carries :data:`GENESIS`) and its own hash over all its
fields (:func:`entry_hash`), so editing, deleting or inserting a past entry breaks the chain
and :func:`verify_chain` names the first entry where it breaks.

The payload itself is not stored, only its digest: ``sha256:<hex>`` of its canonical JSON
(:func:`canonical_json`: sorted keys, no whitespace, UTF-8), so whoever holds the payload can
show it is the one that was logged.

What a hash chain cannot show on its own: the *newest* entries being cut off (the chain that
remains is valid), or a complete rewrite by someone who recomputes every hash. Publishing the
head hash elsewhere (:meth:`~lineagehub.graph.store.GraphStore.audit_head`) covers both.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson

from lineagehub.graph.errors import ValidationError
from lineagehub.graph.model import Edge, Node, only_of

HASH_PREFIX = "sha256:"
GENESIS = HASH_PREFIX + "0" * 64
MAX_NAME = 512
MAX_PAYLOAD_DEPTH = 64

Problem = Literal["altered", "deleted", "inserted"]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One link of the audit chain. ``time`` is ISO text as :func:`~lineagehub.graph.model.to_iso`
    writes it; ``payload_digest``, ``prev_hash`` and ``hash`` are ``sha256:<hex>``."""

    seq: int
    time: str
    actor: str
    action: str
    target: str
    payload_digest: str
    prev_hash: str
    hash: str
    records: str = ""

    def computed_hash(self) -> str:
        """The hash this entry's fields give (equal to ``hash`` unless it was tampered with)."""
        return entry_hash(
            self.seq,
            self.time,
            self.actor,
            self.action,
            self.target,
            self.payload_digest,
            self.prev_hash,
            self.records,
        )


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """What :func:`verify_chain` found: ``ok``, how many entries it ``checked``, and at the
    first break, the entry's ``first_bad_seq``, the ``kind`` of break and a ``problem`` text."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    kind: Problem | None = None


# One encoder for every call (json.dumps with these options builds a new one each time), and
# the text encoder of json.dumps(ensure_ascii=False) for strings, which are most values.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode
_STRING: Callable[[str], str] = json.encoder.encode_basestring


# orjson writes the same bytes as the standard encoder for text, integers, booleans and null
# in dicts and lists, keys sorted (by code point both); not for floats (1e-05 is 0.00001
# there), nor does it refuse what the standard encoder refuses (it takes an Enum, a UUID).
_NO_FLOAT: frozenset[type] = frozenset((str, int, bool, type(None)))
_SHORT_CONTAINERS = 200  # more nested containers than this: the standard encoder (orjson
# refuses what nests deeper than 255)


def canonical_json(obj: Any) -> bytes:
    """The one byte string of a JSON value: sorted keys, no whitespace, UTF-8 (not ASCII
    escapes). NaN and infinities are refused (``ValueError``), as are non-JSON types
    (``TypeError``). Scalars of the exact built-in types take a short path, and dicts and
    lists of them without floats orjson, each giving the bytes ``json.dumps`` gives
    (``tests/test_audit_log.py`` compares them); anything else is ``json.dumps``'s."""
    kind = type(obj)
    if kind is str:
        return _STRING(obj).encode("utf-8")
    if kind is int:
        return int.__repr__(obj).encode("ascii")
    if obj is None:
        return b"null"
    if obj is True:
        return b"true"
    if obj is False:
        return b"false"
    if kind is dict or kind is list:
        if not obj:
            return b"{}" if kind is dict else b"[]"
        if only_of(obj, _NO_FLOAT, _SHORT_CONTAINERS):
            try:
                return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
            except orjson.JSONEncodeError:
                pass  # an integer beyond 64 bits, a key not text, a lone surrogate
    return _CANONICAL(obj).encode("utf-8")


def digest(data: bytes) -> str:
    return HASH_PREFIX + hashlib.sha256(data).hexdigest()


def payload_digest(payload: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the payload's canonical JSON; :class:`ValidationError` (field
    ``payload``) if it is not a JSON object of JSON values."""
    if not isinstance(payload, Mapping):
        raise ValidationError(
            f"payload must be a mapping, got {type(payload).__name__}", field="payload"
        )
    if not _is_json(payload, 0):
        _check_json(payload, "payload", 0)  # names what is wrong
    return digest(canonical_json(dict(payload)))


def entry_hash(
    seq: int,
    time: str,
    actor: str,
    action: str,
    target: str,
    payload_digest: str,
    prev_hash: str,
    records: str = "",
) -> str:
    """``sha256:<hex>`` over the canonical JSON of an entry's fields (all but its hash).
    ``records`` (the record digests, :func:`records_field`) is hashed only when there are
    some, so entries written before records were digested keep their hashes."""
    fields: dict[str, Any] = {
        "seq": seq,
        "time": time,
        "actor": actor,
        "action": action,
        "target": target,
        "payload_digest": payload_digest,
        "prev_hash": prev_hash,
    }
    if records:
        fields["records"] = records
    return digest(canonical_json(fields))


def validate_name(value: Any, field: str) -> str:
    """``actor``, ``action`` and ``target``: non-empty text of at most 512 characters."""
    if not isinstance(value, str) or not value or len(value) > MAX_NAME or "\x00" in value:
        shown = value if not isinstance(value, str) else value[:40]
        raise ValidationError(
            f"{field} must be a non-empty string of at most {MAX_NAME} characters, got {shown!r}",
            field=field,
        )
    return value


def prepare(actor: Any, action: Any, target: Any, payload: Any) -> tuple[str, str, str, str]:
    """Validated ``(actor, action, target, payload_digest)``, before any write."""
    return (
        validate_name(actor, "actor"),
        validate_name(action, "action"),
        validate_name(target, "target"),
        payload_digest(payload),
    )


def make_entry(
    prev: AuditEntry | None,
    time: str,
    actor: str,
    action: str,
    target: str,
    payload_digest: str,
    records: str = "",
) -> AuditEntry:
    """The entry that follows ``prev`` (``None``: the first entry)."""
    seq = 1 if prev is None else prev.seq + 1
    prev_hash = GENESIS if prev is None else prev.hash
    own = entry_hash(seq, time, actor, action, target, payload_digest, prev_hash, records)
    return AuditEntry(seq, time, actor, action, target, payload_digest, prev_hash, own, records)


def verify_chain(
    entries: Iterable[AuditEntry], after: AuditEntry | None = None
) -> AuditVerification:
    """Check entries (in seq order) form an unbroken chain from the start, or from ``after``
    (a trusted entry, e.g. a head published earlier). Stops at the first break:

    - ``altered``: an entry's hash does not match its fields;
    - ``deleted``: a sequence number is missing (``first_bad_seq`` is the missing one);
    - ``inserted``: a sequence number repeats or goes back, or an entry does not link to the
      one before it (a forged entry, or one put in place of a deleted one).
    """
    expected_seq = 1 if after is None else after.seq + 1
    prev_hash = GENESIS if after is None else after.hash
    checked = 0
    for e in entries:
        if e.computed_hash() != e.hash:
            return _bad(checked, e.seq, "altered", f"entry {e.seq} was altered: hash mismatch")
        if e.seq > expected_seq:
            missing = (
                f"entry {expected_seq}"
                if e.seq == expected_seq + 1
                else f"entries {expected_seq}..{e.seq - 1}"
            )
            return _bad(checked, expected_seq, "deleted", f"{missing} deleted: sequence gap")
        if e.seq < expected_seq:
            return _bad(
                checked,
                e.seq,
                "inserted",
                f"entry {e.seq} inserted: sequence number repeats or goes back "
                f"(expected {expected_seq})",
            )
        if e.prev_hash != prev_hash:
            return _bad(
                checked,
                e.seq,
                "inserted",
                f"entry {e.seq} inserted or replaced: it does not link to the entry before it "
                "(prev_hash mismatch)",
            )
        checked += 1
        expected_seq, prev_hash = e.seq + 1, e.hash
    return AuditVerification(ok=True, checked=checked)


# --- record digests ----------------------------------------------------------------------------
#
# An entry carries the state of the records (nodes and edges) its change produced, as
# ``records``: the canonical JSON of ``{"node:<id>" | "edge:<id>": {"digest": "sha256:…",
# "fields": {field: <16 hex>}, "ends": [source, target] (edges)} | null}`` (``null``: the record was deleted). ``digest`` covers
# the record's identity and properties (:func:`record_state`), not its timestamps, so SQLite
# and Neo4j give the same digest; ``fields`` holds a short digest per property, so a
# verification can name the field that changed.

FIELD_DIGEST_HEX = 16


def record_key(kind: Literal["node", "edge"], record_id: str) -> str:
    return f"{kind}:{record_id}"


def record_state(record: Node | Edge) -> dict[str, Any]:
    """What a record's digest covers: ``id``, ``label`` (a node) or ``kind``, ``source`` and
    ``target`` (an edge), and ``props``."""
    if isinstance(record, Node):
        return {"id": record.id, "label": record.label, "props": record.props}
    return {
        "id": record.id,
        "kind": record.kind,
        "source": record.source,
        "target": record.target,
        "props": record.props,
    }


def record_digest(record: Node | Edge) -> dict[str, Any]:
    """``{"digest": …, "fields": {…}}`` of a record's current state."""
    return state_digest(record_state(record))


def state_digest(state: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`record_digest` of a :func:`record_state`. Each field is encoded once: the
    digest of the whole is taken over the canonical JSON assembled from the fields'
    encodings (the same bytes as :func:`canonical_json` of the state, keys sorted; keys are
    strings, encoded as :func:`canonical_json` encodes them)."""
    sha256, encode, n = hashlib.sha256, canonical_json, FIELD_DIGEST_HEX
    fields: dict[str, str] = {}
    parts = []
    for key in sorted(state):
        if key == "props":
            props = state["props"]
            inner = []
            for name in sorted(props):
                value = encode(props[name])
                fields["props." + name] = sha256(value).hexdigest()[:n]
                inner.append(_STRING(name).encode("utf-8") + b":" + value)
            value = b"{" + b",".join(inner) + b"}"
        else:
            value = encode(state[key])
            fields[key] = sha256(value).hexdigest()[:n]
        parts.append(_STRING(key).encode("utf-8") + b":" + value)
    out: dict[str, Any] = {"digest": digest(b"{" + b",".join(parts) + b"}"), "fields": fields}
    if "source" in state:  # an edge
        out["ends"] = [state["source"], state["target"]]  # deleting a node deletes its edges
    return out


def records_field(records: Mapping[str, dict[str, Any] | None]) -> str:
    """The ``records`` text of an entry (``""`` when it covers none)."""
    return canonical_json(dict(records)).decode("utf-8") if records else ""


def parse_records(text: str) -> dict[str, dict[str, Any] | None]:
    return json.loads(text) if text else {}


def changed_fields(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The fields whose short digests differ between a recorded and a current state (added
    and removed fields included), sorted."""
    old, new = recorded.get("fields", {}), current.get("fields", {})
    return sorted(k for k in {*old, *new} if old.get(k) != new.get(k))


# --- Merkle tree heads (RFC 9162 section 2.1) -----------------------------------------------
#
# The leaves are the entries' hashes in seq order (the UTF-8 text ``sha256:<hex>``); leaf
# hash ``SHA-256(0x00 || leaf)``, interior ``SHA-256(0x01 || left || right)``, and a tree of
# n leaves splits at the largest power of two below n. A :class:`Frontier` keeps the roots of
# the perfect subtrees the size decomposes into (at most log2 n of them), so a head at size
# n2 follows from the head at n1 and the entries n1+1..n2 alone, and a later issue can serve
# inclusion and consistency proofs over the same tree.


def leaf_hash(entry_hash: str) -> bytes:
    return hashlib.sha256(b"\x00" + entry_hash.encode("utf-8")).digest()


def interior_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = HASH_PREFIX + hashlib.sha256(b"").hexdigest()


class Frontier:
    """The perfect-subtree roots of a Merkle tree being grown leaf by leaf."""

    __slots__ = ("_stack", "size")

    def __init__(self, size: int = 0, roots: Iterable[str] = ()) -> None:
        # (height, hash) from the left; heights strictly decrease.
        self.size = size
        self._stack: list[tuple[int, bytes]] = []
        heights = [h for h in range(size.bit_length(), -1, -1) if size >> h & 1]
        hashes = [bytes.fromhex(r) for r in roots]
        if len(hashes) != len(heights):
            raise ValidationError(
                f"a frontier of size {size} has {len(heights)} roots, got {len(hashes)}",
                field="frontier",
            )
        self._stack = list(zip(heights, hashes, strict=True))

    def push(self, entry_hash: str) -> None:
        node, height = leaf_hash(entry_hash), 0
        stack = self._stack
        while stack and stack[-1][0] == height:
            node = interior_hash(stack.pop()[1], node)
            height += 1
        stack.append((height, node))
        self.size += 1

    def root(self) -> str:
        """``sha256:<hex>`` of the tree's root (of the empty string for an empty tree)."""
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = interior_hash(left, node)
        return HASH_PREFIX + node.hex()

    def roots(self) -> list[str]:
        return [h.hex() for _, h in self._stack]


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A checkpoint of the log: its ``tree_size`` (entries 1..tree_size), the Merkle
    ``root_hash`` over them, the ``head_hash`` of entry ``tree_size`` (``None`` when empty),
    the ``time`` it was made and its ``mac``: HMAC-SHA256 hex under the audit key over the
    canonical JSON of the other four (:meth:`signed_body`), ``None`` when made without a key;
    ``signature``: an Ed25519 signature (hex) of the same bytes when the hub has a signing key.
    ``frontier`` lets the next head be computed from this one (not signed: a wrong frontier
    only makes the later heads disagree with the log, which verification reports)."""

    tree_size: int
    root_hash: str
    head_hash: str | None
    time: str
    mac: str | None = None
    frontier: tuple[str, ...] = ()
    signature: str | None = None

    def signed_body(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "head_hash": self.head_hash,
            "time": self.time,
        }

    def to_dict(self) -> dict[str, Any]:
        """The exported form (a head file, a line of an external copy): no frontier."""
        out = {**self.signed_body(), "mac": self.mac}
        if self.signature is not None:
            out["signature"] = self.signature
        return out

    @classmethod
    def from_dict(cls, obj: Any) -> TreeHead:
        """A head from its exported form; :class:`ValidationError` (field ``head``) if it is
        not one."""
        keys = {"tree_size", "root_hash", "head_hash", "time", "mac"}
        if not isinstance(obj, dict) or not keys <= set(obj):
            raise ValidationError("not an audit tree head (wrong fields)", field="head")
        size, root, head, time, mac = (obj[k] for k in sorted(keys, key=_HEAD_ORDER.index))
        ok = (
            isinstance(size, int)
            and not isinstance(size, bool)
            and size >= 0
            and isinstance(root, str)
            and isinstance(time, str)
            and (head is None or isinstance(head, str))
            and (mac is None or isinstance(mac, str))
        )
        signature = obj.get("signature")
        if not ok or not (signature is None or isinstance(signature, str)):
            raise ValidationError("not an audit tree head (wrong field types)", field="head")
        return cls(size, root, head, time, mac, (), signature)

    def mac_ok(self, key: bytes) -> bool:
        return self.mac is not None and hmac.compare_digest(self.mac, head_mac(self, key))


_HEAD_ORDER = ("tree_size", "root_hash", "head_hash", "time", "mac")


def head_mac(head: TreeHead, key: bytes) -> str:
    return hmac.new(key, canonical_json(head.signed_body()), hashlib.sha256).hexdigest()


def next_head(
    prev: TreeHead | None,
    entries: Iterable[AuditEntry],
    time: str,
    key: bytes | None,
    signer: Callable[[bytes], str] | None = None,
) -> TreeHead:
    """The head after ``prev`` grown by ``entries`` (the ones following it, in seq order)."""
    frontier = Frontier() if prev is None else Frontier(prev.tree_size, prev.frontier)
    head_hash = None if prev is None else prev.head_hash
    for e in entries:
        if e.seq != frontier.size + 1:
            raise ValidationError(
                f"entry {e.seq} does not follow the checkpoint at {frontier.size}", field="seq"
            )
        frontier.push(e.hash)
        head_hash = e.hash
    head = TreeHead(frontier.size, frontier.root(), head_hash, time, None, tuple(frontier.roots()))
    if key:
        head = replace(head, mac=head_mac(head, key))
    if signer is not None:
        head = replace(head, signature=signer(canonical_json(head.signed_body())))
    return head


@dataclass(frozen=True, slots=True)
class CheckpointPolicy:
    """When the store writes a tree head as the log grows: after ``every`` entries since the
    last one (``None``: no count rule), or on the first append ``seconds`` or more after it
    (``None``: no time rule); with neither, only :meth:`GraphStore.checkpoint_audit` does;
    signed with ``key`` (``None``: unsigned). ``on_checkpoint`` is called with each head
    after the write that made it commits, outside any transaction (to copy it elsewhere).
    ``signer`` returns a signature (hex) of a head's signed bytes (Ed25519, from the hub)."""

    every: int | None = 1000
    seconds: float | None = None
    key: bytes | None = None
    on_checkpoint: Callable[[TreeHead], None] | None = None
    signer: Callable[[bytes], str] | None = None

    def due(self, size: int, last_size: int, last_time: float | None, now: float) -> bool:
        if size <= last_size:
            return False
        if self.every is not None and size - last_size >= self.every:
            return True
        return self.seconds is not None and (last_time is None or now - last_time >= self.seconds)


def _bad(checked: int, seq: int, kind: Problem, problem: str) -> AuditVerification:
    return AuditVerification(
        ok=False, checked=checked, first_bad_seq=seq, problem=problem, kind=kind
    )


def _is_json(value: Any, depth: int) -> bool:
    """:func:`_check_json` without naming the place: the common case, where nothing is."""
    if depth > MAX_PAYLOAD_DEPTH:
        return False
    if value is None or type(value) in (str, int, bool):
        return True
    if isinstance(value, Mapping):
        return all(type(k) is str and _is_json(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_is_json(v, depth + 1) for v in value)
    return isinstance(value, float) and math.isfinite(value)


def _check_json(value: Any, path: str, depth: int) -> None:
    if depth > MAX_PAYLOAD_DEPTH:
        raise ValidationError(f"{path}: nested too deeply", field="payload")
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{path}: {value} is not a JSON number", field="payload")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValidationError(
                    f"{path}: keys must be strings, got {type(k).__name__}", field="payload"
                )
            _check_json(v, f"{path}.{k}", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(v, f"{path}[{i}]", depth + 1)
        return
    raise ValidationError(f"{path}: {type(value).__name__} is not a JSON value", field="payload")


__all__ = [
    "EMPTY_ROOT",
    "GENESIS",
    "AuditEntry",
    "AuditVerification",
    "CheckpointPolicy",
    "Frontier",
    "TreeHead",
    "canonical_json",
    "changed_fields",
    "entry_hash",
    "head_mac",
    "make_entry",
    "next_head",
    "parse_records",
    "payload_digest",
    "prepare",
    "record_digest",
    "record_key",
    "records_field",
    "verify_chain",
]
