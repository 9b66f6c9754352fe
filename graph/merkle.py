"""Merkle inclusion and consistency proofs over the audit log (RFC 9162 section 2.1).

The tree is the one :mod:`lineagehub.graph.audit` checkpoints: the leaves are the audit
entries' hashes in seq order (the UTF-8 text ``sha256:<hex>``), leaf hash
``SHA-256(0x00 || leaf)``, interior ``SHA-256(0x01 || left || right)``, a tree of n leaves
split at the largest power of two below n. So a proof made here checks against the root of a
stored (signed) :class:`~lineagehub.graph.audit.TreeHead`.

- :class:`MerkleTree` holds every level of a tree once built (``32 * 2n`` bytes), so each
  proof afterwards costs ``O(log n)`` look-ups, not a pass over the leaves;
- :func:`verify_inclusion` and :func:`verify_consistency` are the RFC's verification
  algorithms (2.1.3.2 and 2.1.4.2): they need only the proof, the leaf and the roots.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from lineagehub.graph.audit import HASH_PREFIX, interior_hash, leaf_hash
from lineagehub.graph.errors import ValidationError

_H = 32


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """The Merkle tree over leaf hashes (32 bytes each, :func:`leaf_hash` of an entry's
    hash), with the hash of every perfect aligned subtree kept per level."""

    __slots__ = ("_levels", "size")

    def __init__(self, leaf_hashes: Iterable[bytes]) -> None:
        level0 = bytearray()
        for h in leaf_hashes:
            level0 += h
        self.size = len(level0) // _H
        levels = [bytes(level0)]
        while len(levels[-1]) >= 2 * _H:
            prev = levels[-1]
            pairs = len(prev) // (2 * _H)
            nxt = bytearray()
            sha = hashlib.sha256
            for i in range(pairs):
                o = 2 * _H * i
                nxt += sha(b"\x01" + prev[o : o + 2 * _H]).digest()
            levels.append(bytes(nxt))
        self._levels = levels

    @classmethod
    def of_entries(cls, entry_hashes: Iterable[str]) -> MerkleTree:
        """The tree over audit entries' hashes (``sha256:<hex>`` text), in seq order."""
        return cls(leaf_hash(h) for h in entry_hashes)

    def _perfect(self, start: int, height: int) -> bytes:
        o = (start >> height) * _H
        return self._levels[height][o : o + _H]

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for the ranges the RFC's recursion visits (``start`` aligned to
        a power of two at least ``end - start``'s largest part)."""
        n = end - start
        if n == 1:
            return self._perfect(start, 0)
        if n & (n - 1) == 0 and start % n == 0:
            return self._perfect(start, n.bit_length() - 1)
        k = _split(n)
        return interior_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        """The root of the first ``size`` leaves (default: all)."""
        n = self.size if size is None else size
        self._check_size(n)
        if n == 0:
            return hashlib.sha256(b"").digest()
        return self.subtree(0, n)

    def _check_size(self, n: int) -> None:
        if not 0 <= n <= self.size:
            raise ValidationError(
                f"tree size {n} is outside this tree (0..{self.size})", field="tree_size"
            )

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]): the audit path of leaf ``index`` (0-based)."""
        n = self.size if size is None else size
        self._check_size(n)
        if not 0 <= index < n:
            raise ValidationError(f"leaf {index} is not in a tree of {n} leaves", field="seq")
        path: list[bytes] = []
        start, end, m = 0, n, index
        while end - start > 1:
            k = _split(end - start)
            if m < k:
                path.append(self.subtree(start + k, end))
                end = start + k
            else:
                path.append(self.subtree(start, start + k))
                start, m = start + k, m - k
        path.reverse()
        return path

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """PROOF(first, D[0:second]): what shows the tree of ``first`` leaves is a prefix of
        the tree of ``second`` (``0 < first <= second``)."""
        n = self.size if second is None else second
        self._check_size(n)
        if not 0 < first <= n:
            raise ValidationError(
                f"a consistency proof needs 0 < first <= second, got {first} and {n}",
                field="first",
            )
        proof: list[bytes] = []
        start, end, m, whole = 0, n, first, True
        while m != end - start:
            k = _split(end - start)
            if m <= k:
                proof.append(self.subtree(start + k, end))
                end = start + k
            else:
                proof.append(self.subtree(start, start + k))
                start, m, whole = start + k, m - k, False
        if not whole:
            proof.append(self.subtree(start, end))
        proof.reverse()
        return proof


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> str | None:
    """``None`` when ``path`` proves leaf hash ``leaf`` is leaf ``index`` of the tree of
    ``size`` leaves whose root is ``root``; else what is wrong."""
    if not 0 <= index < size:
        return f"leaf index {index} is outside a tree of {size} leaves"
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return "the proof is longer than the tree is deep"
        if fn & 1 or fn == sn:
            r = interior_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = interior_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return "the proof is shorter than the tree is deep"
    if r != root:
        return "the proof does not lead to the tree head's root hash"
    return None


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> str | None:
    """``None`` when ``proof`` shows the tree of ``first`` leaves (root ``first_root``) is a
    prefix of the tree of ``second`` leaves (root ``second_root``); else what is wrong."""
    if not 0 < first <= second:
        return f"sizes must satisfy 0 < first <= second, got {first} and {second}"
    if first == second:
        if proof:
            return "a proof between equal sizes must be empty"
        return None if first_root == second_root else "equal sizes but different roots"
    if not proof:
        return "the proof is empty"
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return "the proof is longer than the trees are deep"
        if fn & 1 or fn == sn:
            fr = interior_hash(c, fr)
            sr = interior_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = interior_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return "the proof is shorter than the trees are deep"
    if fr != first_root:
        return "the proof does not lead to the first tree head's root hash"
    if sr != second_root:
        return "the proof does not lead to the second tree head's root hash"
    return None


def to_hex(hashes: Sequence[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def from_hex(values: object, field: str) -> list[bytes]:
    """Hashes from hex text; :class:`ValidationError` naming ``field`` if they are not."""
    if not isinstance(values, list):
        raise ValidationError(f"{field} must be a list of hex hashes", field=field)
    out = []
    for v in values:
        try:
            b = bytes.fromhex(v) if isinstance(v, str) else b""
        except ValueError:
            b = b""
        if len(b) != _H:
            raise ValidationError(f"{field}: {str(v)[:20]!r} is not a SHA-256 hash", field=field)
        out.append(b)
    return out


def root_bytes(root_hash: str, field: str = "root_hash") -> bytes:
    """The 32 bytes of a ``sha256:<hex>`` root."""
    if not isinstance(root_hash, str) or not root_hash.startswith(HASH_PREFIX):
        raise ValidationError(f"{field} must be sha256:<hex>", field=field)
    return from_hex([root_hash[len(HASH_PREFIX) :]], field)[0]


__all__ = [
    "MerkleTree",
    "from_hex",
    "root_bytes",
    "to_hex",
    "verify_consistency",
    "verify_inclusion",
]
