"""Inclusion and consistency proofs of audit entries, and checking them offline.

A proof (:func:`prove`) says: entry ``seq`` (its fields given in full) is leaf ``seq - 1`` of
the Merkle tree whose root a stored tree head (:class:`~lineagehub.graph.audit.TreeHead`,
HMAC-signed with ``LINEAGEHUB_AUDIT_KEY`` and/or Ed25519-signed) states. Whoever holds the
proof and the head checks it without the store (:func:`check_inclusion`): the entry's hash
from its fields, the audit path up to the root, and the head's signature with the key or the
public key. A changed entry, a wrong path and a forged head each fail with their own message.

The proofs are over the stored heads: the smallest head that covers the entry, or one made
now (:meth:`~lineagehub.graph.store.GraphStore.checkpoint_audit`) when none does yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lineagehub.graph import GraphStore, NotFoundError, ValidationError
from lineagehub.graph.audit import AuditEntry, TreeHead, leaf_hash, payload_digest
from lineagehub.graph.merkle import (
    MerkleTree,
    from_hex,
    root_bytes,
    to_hex,
    verify_consistency,
    verify_inclusion,
)
from lineagehub.services.audit import signature_ok

ENTRY_FIELDS = tuple(AuditEntry.__dataclass_fields__)


@dataclass(frozen=True)
class ProofCheck:
    """What :func:`check_inclusion` / :func:`check_consistency` found: ``ok``, the
    ``problem`` when not, and ``notes`` on what could not be checked (no key given)."""

    ok: bool
    problem: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tree(store: GraphStore, size: int) -> MerkleTree:
    hashes: list[str] = []
    after = 0
    while after < size:
        page = store.read_audit(after, min(1000, size - after))
        if not page:
            break
        hashes += [e.hash for e in page if e.seq <= size]
        after = page[-1].seq
    if len(hashes) != size:
        raise NotFoundError(f"the audit log holds {len(hashes)} entries, not {size}", ids=[])
    return MerkleTree.of_entries(hashes)


def head_for(store: GraphStore, seq: int) -> TreeHead:
    """The newest stored tree head (one made now if none covers ``seq``)."""
    heads = list(store.iter_checkpoints())
    if heads and heads[-1].tree_size >= seq:
        return heads[-1]
    return store.checkpoint_audit()


def _check_seq(seq: Any) -> int:
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ValidationError("seq must be a positive integer", field="seq")
    return seq


def prove_many(
    store: GraphStore, seqs: Iterable[int], head: TreeHead | None = None
) -> dict[str, Any]:
    """``{"head": …, "proofs": [{"entry": {…}, "leaf_index": …, "path": […]}, …]}``: the
    inclusion proofs of entries ``seqs`` against one head (default: the newest, made now if
    it does not cover them), built over one read of the log."""
    wanted = sorted({_check_seq(s) for s in seqs})
    top = max(wanted, default=0)
    if head is None:
        head = head_for(store, top)
    if top > head.tree_size:
        raise ValidationError(
            f"entry {top} is after the tree head at size {head.tree_size}", field="seq"
        )
    tree = _tree(store, head.tree_size) if wanted else None
    proofs = []
    for s in wanted:
        assert tree is not None
        entry = store.read_audit(s - 1, 1)
        if not entry or entry[0].seq != s:
            raise NotFoundError(f"no audit entry {s}", ids=[str(s)])
        proofs.append(
            {
                "entry": asdict(entry[0]),
                "leaf_index": s - 1,
                "path": to_hex(tree.inclusion_proof(s - 1, head.tree_size)),
            }
        )
    return {"head": head.to_dict(), "proofs": proofs}


def prove(store: GraphStore, seq: int) -> dict[str, Any]:
    """The inclusion proof of entry ``seq``: ``{"head": …, "entry": …, "leaf_index": …,
    "path": […]}`` (hex hashes)."""
    seq = _check_seq(seq)
    head = store.audit_head()
    if head is None or seq > head.seq:
        raise NotFoundError(f"no audit entry {seq}", ids=[str(seq)])
    out = prove_many(store, [seq])
    return {"head": out["head"], **out["proofs"][0]}


def consistency(store: GraphStore, first: int, second: int | None = None) -> dict[str, Any]:
    """The consistency proof between the stored heads at sizes ``first`` and ``second``
    (default: the newest head): ``{"first": head, "second": head, "path": […]}``."""
    heads = {h.tree_size: h for h in store.iter_checkpoints()}
    if first not in heads:
        raise NotFoundError(f"no stored tree head at size {first}", ids=[str(first)])
    if second is None:
        second = max(heads)
    if second not in heads:
        raise NotFoundError(f"no stored tree head at size {second}", ids=[str(second)])
    tree = _tree(store, second)
    path = tree.consistency_proof(first, second) if first > 0 else []
    return {
        "first": heads[first].to_dict(),
        "second": heads[second].to_dict(),
        "path": to_hex(path),
    }


def _head_checks(
    head: TreeHead, key: bytes | None, public_key: Any | None, what: str
) -> tuple[str | None, list[str]]:
    notes: list[str] = []
    if key is not None and not head.mac_ok(key):
        kind = "is not signed" if head.mac is None else "has a signature that does not match"
        return (
            f"{what} at size {head.tree_size} {kind} with the audit key (forged or altered)",
            notes,
        )
    if public_key is not None and not signature_ok(head, public_key):
        return (
            f"{what} at size {head.tree_size} has no valid Ed25519 signature for this public "
            "key (forged or altered)",
            notes,
        )
    if key is None and public_key is None:
        notes.append(
            "the tree head's signature was not checked: give the audit key or a public key"
        )
    return None, notes


def check_inclusion(
    proof: Mapping[str, Any],
    head: TreeHead,
    *,
    key: bytes | None = None,
    public_key: Any | None = None,
    payload: Mapping[str, Any] | None = None,
) -> ProofCheck:
    """Check an inclusion proof (an item of :func:`prove_many`'s ``proofs``) against
    ``head``, offline: the head's signature (HMAC with ``key``, Ed25519 with
    ``public_key``), the entry's hash from its fields, the path to the head's root, and, when
    given, that ``payload`` is the one the entry logged."""
    problem, notes = _head_checks(head, key, public_key, "the tree head")
    if problem:
        return ProofCheck(False, problem, notes)
    raw = proof.get("entry")
    if not isinstance(raw, Mapping) or not set(ENTRY_FIELDS) - {"records"} <= set(raw):
        return ProofCheck(False, "the proof holds no audit entry", notes)
    try:
        entry = AuditEntry(**{k: raw[k] for k in ENTRY_FIELDS if k in raw})
        computed = entry.computed_hash()
    except (TypeError, ValueError):
        return ProofCheck(False, "the proof's audit entry has fields of the wrong types", notes)
    if computed != entry.hash:
        return ProofCheck(
            False, f"audit entry {entry.seq} was altered: its fields do not give its hash", notes
        )
    if payload is not None and payload_digest(payload) != entry.payload_digest:
        return ProofCheck(
            False,
            f"the payload cited for audit entry {entry.seq} is not the one it logged "
            "(payload digest mismatch)",
            notes,
        )
    index = proof.get("leaf_index")
    if index != entry.seq - 1:
        return ProofCheck(False, f"the proof's leaf index {index!r} is not entry {entry.seq}'s")
    try:
        path = from_hex(proof.get("path"), "path")
        root = root_bytes(head.root_hash)
    except ValidationError as e:
        return ProofCheck(False, f"malformed proof: {e.message}", notes)
    wrong = verify_inclusion(leaf_hash(entry.hash), entry.seq - 1, head.tree_size, path, root)
    if wrong:
        return ProofCheck(
            False, f"audit entry {entry.seq} is not proven in the tree head: {wrong}", notes
        )
    return ProofCheck(True, None, notes)


def check_consistency(
    proof: Mapping[str, Any], *, key: bytes | None = None, public_key: Any | None = None
) -> ProofCheck:
    """Check a consistency proof (:func:`consistency`) offline: both heads' signatures and
    that the first tree is a prefix of the second."""
    try:
        first = TreeHead.from_dict(proof.get("first"))
        second = TreeHead.from_dict(proof.get("second"))
        path = from_hex(proof.get("path"), "path")
        r1, r2 = root_bytes(first.root_hash), root_bytes(second.root_hash)
    except ValidationError as e:
        return ProofCheck(False, f"malformed proof: {e.message}")
    notes: list[str] = []
    for head, what in ((first, "the first tree head"), (second, "the second tree head")):
        problem, more = _head_checks(head, key, public_key, what)
        if problem:
            return ProofCheck(False, problem)
        notes = more
    if first.tree_size == 0:
        return ProofCheck(True, None, notes)
    wrong = verify_consistency(first.tree_size, second.tree_size, r1, r2, path)
    if wrong:
        return ProofCheck(False, f"the heads are not consistent: {wrong}", notes)
    return ProofCheck(True, None, notes)


def check_all(
    proofs: Sequence[Mapping[str, Any]],
    head: TreeHead,
    *,
    key: bytes | None = None,
    public_key: Any | None = None,
    payloads: Mapping[int, Mapping[str, Any]] | None = None,
) -> list[tuple[int | None, ProofCheck]]:
    """:func:`check_inclusion` of each proof: ``(seq, result)`` pairs."""
    out = []
    for p in proofs:
        entry = p.get("entry") if isinstance(p, Mapping) else None
        seq = entry.get("seq") if isinstance(entry, Mapping) else None
        payload = (payloads or {}).get(seq) if isinstance(seq, int) else None
        out.append((seq, check_inclusion(p, head, key=key, public_key=public_key, payload=payload)))
    return out


__all__ = [
    "ProofCheck",
    "check_all",
    "check_consistency",
    "check_inclusion",
    "consistency",
    "head_for",
    "prove",
    "prove_many",
]
