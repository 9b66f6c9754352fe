"""Exporting the audit log, and checking an exported copy without the store.

:func:`export_jsonl` writes one JSON line per audit entry (its fields as
:class:`~lineagehub.graph.audit.AuditEntry` names them), then one checkpoint line::

    {"checkpoint": {"seq": 42, "hash": "sha256:…", "time": "…", "count": 42},
     "signature": "<hex>" | null}

``signature`` is HMAC-SHA256 with the export key (``LINEAGEHUB_AUDIT_KEY``) over the
checkpoint's canonical JSON (:func:`~lineagehub.graph.audit.canonical_json`); ``null`` when no
key is given. The chain shows an entry of the copy was edited, removed or inserted; the
signed checkpoint shows entries were not cut off the end, or the whole copy rewritten, by
someone without the key.

:func:`verify_export` re-checks a copy: the chain, the checkpoint against the last entry, and
with a key the signature.
"""

from __future__ import annotations

import hmac
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from hashlib import sha256
from pathlib import Path
from typing import IO, Any

from lineagehub.files import write_atomic
from lineagehub.graph import GraphStore, NotFoundError, ValidationError
from lineagehub.graph.audit import AuditEntry, canonical_json, verify_chain
from lineagehub.graph.model import to_iso

PAGE = 1000
ENTRY_FIELDS = tuple(AuditEntry.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What :func:`export_jsonl` wrote: ``count`` entries up to ``seq``/``hash`` (``0`` and
    ``None`` for an empty log), the checkpoint ``time``, and whether it is ``signed``."""

    count: int
    seq: int
    hash: str | None
    time: str
    signed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ExportVerification:
    """What :func:`verify_export` found. ``kind`` of a failure: ``altered``, ``deleted`` or
    ``inserted`` (the chain, with ``first_bad_seq``), ``malformed`` (a line that is not an
    entry), ``checkpoint`` (missing, or not matching the entries: cut off or extended) or
    ``signature`` (missing, or not made with this key)."""

    ok: bool
    checked: int
    signed: bool
    signature_verified: bool
    first_bad_seq: int | None = None
    problem: str | None = None
    kind: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sign(checkpoint: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 hex of the checkpoint's canonical JSON."""
    return hmac.new(key, canonical_json(checkpoint), sha256).hexdigest()


def _entries_upto(store: GraphStore, last_seq: int) -> Iterator[AuditEntry]:
    """Every entry with ``seq <= last_seq``: a consistent snapshot while writers append."""
    after = 0
    while after < last_seq:
        page = store.read_audit(after, min(PAGE, last_seq - after))
        if not page:
            return
        for e in page:
            if e.seq > last_seq:
                return
            yield e
        after = page[-1].seq


def _check_key(key: bytes | None) -> None:
    # An empty key would sign nothing on export and then fail every verification.
    if key is not None and not key.strip():
        raise ValidationError(
            "the audit key is empty: give a key to sign and verify exports, or none (None) "
            "for unsigned ones",
            field="key",
        )


def export_jsonl(
    store: GraphStore,
    path_or_file: str | os.PathLike[str] | IO[str],
    key: bytes | None,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Write the audit log as JSON lines plus a checkpoint line (signed when ``key`` is
    given) to a path or a text file object. A path is written whole or not at all.
    ``progress(n)`` is called as entries are written (``n`` more each time, up to the head's
    sequence number)."""
    _check_key(key)
    head = store.audit_head()
    last_seq = head.seq if head is not None else 0
    if isinstance(path_or_file, (str, os.PathLike)):
        results: list[ExportResult] = []

        def write(raw: IO[bytes]) -> None:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
            results.append(_write(store, text, last_seq, key, progress))
            text.flush()
            text.detach()  # the file is closed (and synced) by write_atomic

        write_atomic(path_or_file, write, field="output")
        return results[0]
    return _write(store, path_or_file, last_seq, key, progress)


def _write(
    store: GraphStore,
    f: IO[str],
    last_seq: int,
    key: bytes | None,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    count, last = 0, None
    for e in _entries_upto(store, last_seq):
        f.write(json.dumps(asdict(e), ensure_ascii=False, sort_keys=True) + "\n")
        count, last = count + 1, e
        if progress is not None and count % 1000 == 0:
            progress(1000)
    if progress is not None and count % 1000:
        progress(count % 1000)
    seq = last.seq if last is not None else 0
    head_hash = last.hash if last is not None else None
    stamp = to_iso(datetime.now(timezone.utc))
    checkpoint = {"seq": seq, "hash": head_hash, "time": stamp, "count": count}
    signature = sign(checkpoint, key) if key else None
    f.write(json.dumps({"checkpoint": checkpoint, "signature": signature}, sort_keys=True) + "\n")
    return ExportResult(
        count=count, seq=seq, hash=head_hash, time=stamp, signed=signature is not None
    )


def verify_export(path: str | os.PathLike[str], key: bytes | None) -> ExportVerification:
    """Re-check an exported copy without the store: the hash chain, the checkpoint against
    the entries, and with ``key`` the checkpoint's signature (an unsigned copy then fails).
    Without a key a signature is not checked (``signature_verified`` is false)."""
    _check_key(key)
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"no audit export at {str(p)!r}", ids=[str(p)])
    entries: list[AuditEntry] = []
    trailer: dict[str, Any] | None = None
    with open(p, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            bad = _malformed(number, len(entries))
            if trailer is not None:
                return bad("a line after the checkpoint")
            try:
                obj = json.loads(line)
            except ValueError:
                return bad("not JSON")
            if not isinstance(obj, dict):
                return bad("not a JSON object")
            if "checkpoint" in obj:
                trailer = obj
                continue
            if set(obj) != set(ENTRY_FIELDS):
                return bad("not an audit entry (wrong fields)")
            try:
                entry = AuditEntry(**obj)
                entry.computed_hash()
            except (TypeError, ValueError):
                return bad("not an audit entry (wrong field types)")
            if not isinstance(entry.seq, int) or isinstance(entry.seq, bool):
                return bad("not an audit entry (seq is not an integer)")
            entries.append(entry)
    chain = verify_chain(entries)
    signed = bool(trailer and trailer.get("signature"))
    if not chain.ok:
        return ExportVerification(
            ok=False,
            checked=chain.checked,
            signed=signed,
            signature_verified=False,
            first_bad_seq=chain.first_bad_seq,
            problem=chain.problem,
            kind=chain.kind,
        )
    n = len(entries)

    def fail(kind: str, problem: str) -> ExportVerification:
        return ExportVerification(
            ok=False, checked=n, signed=signed, signature_verified=False, problem=problem,
            kind=kind,
        )  # fmt: skip

    if trailer is None:
        return fail("checkpoint", "no checkpoint line: the export is incomplete")
    checkpoint = trailer.get("checkpoint")
    last = entries[-1] if entries else None
    expected = {
        "seq": last.seq if last else 0,
        "hash": last.hash if last else None,
        "count": n,
    }
    if not isinstance(checkpoint, dict) or set(checkpoint) != {*expected, "time"}:
        return fail("checkpoint", "the checkpoint line is malformed")
    for field, value in expected.items():
        if checkpoint[field] != value:
            return fail(
                "checkpoint",
                f"checkpoint {field} is {checkpoint[field]!r} but the entries give {value!r}: "
                "entries were cut off or added",
            )
    if key is None:
        return ExportVerification(ok=True, checked=n, signed=signed, signature_verified=False)
    signature = trailer.get("signature")
    if not isinstance(signature, str) or not signature:
        return fail("signature", "the export is not signed")
    if not hmac.compare_digest(signature, sign(checkpoint, key)):
        return fail("signature", "the checkpoint signature does not match (wrong key or altered)")
    return ExportVerification(ok=True, checked=n, signed=True, signature_verified=True)


def _malformed(number: int, checked: int) -> Any:
    def bad(what: str) -> ExportVerification:
        return ExportVerification(
            ok=False,
            checked=checked,
            signed=False,
            signature_verified=False,
            problem=f"line {number}: {what}",
            kind="malformed",
        )

    return bad


__all__ = ["ExportResult", "ExportVerification", "export_jsonl", "sign", "verify_export"]
