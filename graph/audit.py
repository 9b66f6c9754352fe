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
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lineagehub.graph.errors import ValidationError

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


def canonical_json(obj: Any) -> bytes:
    """The one byte string of a JSON value: sorted keys, no whitespace, UTF-8 (not ASCII
    escapes). NaN and infinities are refused (``ValueError``), as are non-JSON types
    (``TypeError``)."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def digest(data: bytes) -> str:
    return HASH_PREFIX + hashlib.sha256(data).hexdigest()


def payload_digest(payload: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the payload's canonical JSON; :class:`ValidationError` (field
    ``payload``) if it is not a JSON object of JSON values."""
    if not isinstance(payload, Mapping):
        raise ValidationError(
            f"payload must be a mapping, got {type(payload).__name__}", field="payload"
        )
    _check_json(payload, "payload", 0)
    return digest(canonical_json(dict(payload)))


def entry_hash(
    seq: int,
    time: str,
    actor: str,
    action: str,
    target: str,
    payload_digest: str,
    prev_hash: str,
) -> str:
    """``sha256:<hex>`` over the canonical JSON of an entry's fields (all but its hash)."""
    return digest(
        canonical_json(
            {
                "seq": seq,
                "time": time,
                "actor": actor,
                "action": action,
                "target": target,
                "payload_digest": payload_digest,
                "prev_hash": prev_hash,
            }
        )
    )


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
) -> AuditEntry:
    """The entry that follows ``prev`` (``None``: the first entry)."""
    seq = 1 if prev is None else prev.seq + 1
    prev_hash = GENESIS if prev is None else prev.hash
    own = entry_hash(seq, time, actor, action, target, payload_digest, prev_hash)
    return AuditEntry(seq, time, actor, action, target, payload_digest, prev_hash, own)


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


def _bad(checked: int, seq: int, kind: Problem, problem: str) -> AuditVerification:
    return AuditVerification(
        ok=False, checked=checked, first_bad_seq=seq, problem=problem, kind=kind
    )


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
    "GENESIS",
    "AuditEntry",
    "AuditVerification",
    "canonical_json",
    "entry_hash",
    "make_entry",
    "payload_digest",
    "prepare",
    "verify_chain",
]
