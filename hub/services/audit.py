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

import abc
import hmac
import io
import json
import logging
import os
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timezone
from hashlib import sha256
from pathlib import Path
from typing import IO, Any

from lineagehub.files import write_atomic
from lineagehub.graph import ConfigError, GraphStore, NotFoundError, ValidationError
from lineagehub.graph.audit import (
    EMPTY_ROOT,
    AuditEntry,
    CheckpointPolicy,
    Frontier,
    TreeHead,
    canonical_json,
    changed_fields,
    parse_records,
    record_digest,
    verify_chain,
)
from lineagehub.graph.model import Edge, Node, to_iso

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
    with open(p, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:  # an edited byte: the file is not what was written
                return _malformed(number, len(entries))("not UTF-8 text")
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
            if not set(ENTRY_FIELDS) - {"records"} <= set(obj) <= set(ENTRY_FIELDS):
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


# --- tree heads: the policy, copies kept elsewhere, and verifying the store against them -----
#
# The store writes a signed Merkle tree head (:class:`~lineagehub.graph.audit.TreeHead`) every
# ``audit_checkpoint_every`` entries or ``audit_checkpoint_seconds`` of activity. A head says
# "the log had n entries whose Merkle root was r" under a key the store's attacker does not
# have, so deleting the newest entries (the log is shorter than a head), editing one and
# recomputing the chain (the root differs) or forging a head (its MAC fails) shows. A head
# kept only in the store can be deleted with the log; a copy elsewhere (``audit_heads``: a
# file, a git repository, an S3 bucket with object lock) or one exported by ``audit head -o``
# cannot be, by the same person.

log = logging.getLogger("lineagehub.audit")

#: Exit codes of ``audit verify`` by what it found (7 is also the chain's).
EXIT_BY_KIND = {
    "altered": 7,
    "deleted": 7,
    "inserted": 7,
    "record": 7,
    "truncated": 9,
    "rewritten": 10,
    "head": 11,
}
GIT_HEADS_FILE = "heads.jsonl"


class HeadCopy(abc.ABC):
    """Tree heads kept outside the store, in size order; written only by appending."""

    uri: str

    @abc.abstractmethod
    def read(self) -> list[TreeHead]:
        """Every head in the copy, in the order written; :class:`ValidationError` when a
        line is not a head."""

    @abc.abstractmethod
    def append(self, heads: Sequence[TreeHead]) -> None:
        """Add heads (larger than every head already there)."""

    def last_size(self) -> int:
        heads = self.read()
        return heads[-1].tree_size if heads else -1


def _parse_lines(text: str, where: str) -> list[TreeHead]:
    heads = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            heads.append(TreeHead.from_dict(json.loads(line)))
        except (ValueError, ValidationError) as e:
            raise ValidationError(
                f"{where} line {number}: not an audit tree head", field="head"
            ) from e
    return heads


def _lines(heads: Sequence[TreeHead]) -> str:
    return "".join(json.dumps(h.to_dict(), sort_keys=True) + "\n" for h in heads)


class FileHeads(HeadCopy):
    """JSON lines, one head each, appended (``O_APPEND``) and synced."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.uri = f"file://{self.path}"

    def read(self) -> list[TreeHead]:
        if not self.path.exists():
            return []
        return _parse_lines(self.path.read_text(encoding="utf-8"), str(self.path))

    def append(self, heads: Sequence[TreeHead]) -> None:
        if not heads:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, _lines(heads).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)


class GitHeads(HeadCopy):
    """A git repository (created when absent) whose ``heads.jsonl`` gains one commit per
    head; read from the committed tree (``HEAD``), not the working copy. Push it, or let
    others pull it, to keep it away from the store."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.uri = f"git://{self.path}"

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        import shutil

        if shutil.which("git") is None:
            raise ConfigError("audit_heads is a git repository but git is not installed")
        return subprocess.run(
            ["git", "-C", str(self.path), *args],
            capture_output=True,
            text=True,
            check=check,
        )

    def read(self) -> list[TreeHead]:
        if not (self.path / ".git").exists():
            return []
        done = self._git("show", f"HEAD:{GIT_HEADS_FILE}", check=False)
        if done.returncode != 0:
            return []
        return _parse_lines(done.stdout, f"{self.uri} {GIT_HEADS_FILE}")

    def append(self, heads: Sequence[TreeHead]) -> None:
        if not heads:
            return
        if not (self.path / ".git").exists():
            self.path.mkdir(parents=True, exist_ok=True)
            self._git("init", "-q")
        ident = ["-c", "user.name=lineagehub", "-c", "user.email=audit@lineagehub.invalid"]
        for h in heads:
            with open(self.path / GIT_HEADS_FILE, "a", encoding="utf-8") as f:
                f.write(_lines([h]))
            self._git("add", GIT_HEADS_FILE)
            self._git(
                *ident, "commit", "-q", "-m", f"audit tree head {h.tree_size}\n\n{h.root_hash}"
            )


class S3Heads(HeadCopy):
    """An object per head, ``<prefix>/heads/<tree_size, 20 digits>.json``. Meant for a bucket
    with S3 Object Lock (a default retention in compliance mode): a head once written can
    then be neither replaced nor deleted, even by the bucket's owner."""

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket, self.prefix, self.client = bucket, prefix.strip("/"), client
        self.uri = f"s3://{bucket}/{self.prefix}"

    def _key(self, size: int | None = None) -> str:
        base = f"{self.prefix}/heads/" if self.prefix else "heads/"
        return base if size is None else f"{base}{size:020d}.json"

    def read(self) -> list[TreeHead]:
        heads = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key()):
            for obj in page.get("Contents", []):
                body = self.client.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
                heads += _parse_lines(body.decode("utf-8"), f"{self.uri} {obj['Key']}")
        return sorted(heads, key=lambda h: h.tree_size)

    def last_size(self) -> int:
        """From the keys alone (one listing, no object read)."""
        last = -1
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key()):
            for obj in page.get("Contents", []):
                stem = obj["Key"].rsplit("/", 1)[-1].removesuffix(".json")
                if stem.isdigit():
                    last = max(last, int(stem))
        return last

    def append(self, heads: Sequence[TreeHead]) -> None:
        for h in heads:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(h.tree_size),
                Body=_lines([h]).encode("utf-8"),
                ContentType="application/json",
            )


def head_copy(uri: str, s3_endpoint_url: str | None = None) -> HeadCopy:
    """The copy at ``file:///path``, ``git:///path`` or ``s3://bucket/prefix``."""
    scheme, sep, rest = uri.partition("://")
    if not sep or not rest:
        raise ConfigError(
            f"LINEAGEHUB_AUDIT_HEADS {uri!r}: give file:///path, git:///path or s3://bucket/prefix"
        )
    if scheme == "file":
        return FileHeads(rest)
    if scheme == "git":
        return GitHeads(rest)
    if scheme == "s3":
        try:
            import boto3
        except ImportError as e:
            raise ConfigError("s3:// audit heads need boto3: pip install 'lineagehub[s3]'") from e
        bucket, _, prefix = rest.partition("/")
        return S3Heads(bucket, prefix, boto3.client("s3", endpoint_url=s3_endpoint_url))
    raise ConfigError(
        f"LINEAGEHUB_AUDIT_HEADS {uri!r}: unknown scheme {scheme!r} (file, git or s3)"
    )


def copy_heads(store: GraphStore, copy: HeadCopy) -> int:
    """Append to ``copy`` every stored head larger than its last one; how many."""
    last = copy.last_size()
    new = [h for h in store.iter_checkpoints() if h.tree_size > last]
    copy.append(new)
    return len(new)


def audit_policy(settings: Any) -> CheckpointPolicy:
    """The checkpoint policy of these settings (``lineagehub.config.Settings``)."""
    key = settings.audit_key
    secret = key.get_secret_value().encode("utf-8") if key is not None else None
    on_checkpoint = None
    if settings.audit_heads:
        copy = head_copy(settings.audit_heads, settings.s3_endpoint_url)
        on_checkpoint = _copier(copy)
    signer = None
    if settings.audit_signing_key is not None:
        private = load_signing_key(settings.audit_signing_key)

        def signer(data: bytes) -> str:
            return str(private.sign(data).hex())

    return CheckpointPolicy(
        signer=signer,
        every=settings.audit_checkpoint_every,
        seconds=settings.audit_checkpoint_seconds or None,
        key=secret or None,
        on_checkpoint=on_checkpoint,
    )


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError as e:  # pragma: no cover - a dependency of the dev and server installs
        raise ConfigError(
            "Ed25519 audit signatures need the cryptography package: pip install cryptography"
        ) from e
    return serialization


def load_signing_key(path: str | os.PathLike[str]) -> Any:
    """The Ed25519 private key in a PEM file (unencrypted); :class:`ConfigError` otherwise
    (never showing the file's content)."""
    serialization = _crypto()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(
            f"LINEAGEHUB_AUDIT_SIGNING_KEY {str(path)!r}: not a readable, unencrypted PEM private "
            f"key ({type(e).__name__})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"LINEAGEHUB_AUDIT_SIGNING_KEY {str(path)!r}: not an Ed25519 key")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Any:
    """An Ed25519 public key from a PEM file, or derived from a private key file."""
    serialization = _crypto()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = Path(path).read_bytes() if Path(path).is_file() else b""
    if b"PRIVATE KEY" in data:
        return load_signing_key(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise ValidationError(
            f"{str(path)!r} is not a PEM public key", field="public_key"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValidationError(f"{str(path)!r} is not an Ed25519 public key", field="public_key")
    return key


def signature_ok(head: TreeHead, public_key: Any) -> bool:
    from cryptography.exceptions import InvalidSignature

    if not head.signature:
        return False
    try:
        public_key.verify(bytes.fromhex(head.signature), canonical_json(head.signed_body()))
    except (InvalidSignature, ValueError):
        return False
    return True


def _copier(copy: HeadCopy) -> Callable[[TreeHead], None]:
    def on_checkpoint(head: TreeHead) -> None:
        # The change is committed; a copy that fails is caught up by the next head (or
        # `lineagehub audit head`), and said in the log, not raised at the writer.
        try:
            last = copy.last_size()
            if head.tree_size > last:
                copy.append([head])
        except Exception as e:  # any failure of the copy's medium
            log.warning("could not copy audit tree head %d to %s: %s", head.tree_size, copy.uri, e)

    return on_checkpoint


def read_head_file(path: str | os.PathLike[str]) -> list[TreeHead]:
    """The heads in a file written by ``audit head -o`` (one JSON object) or a JSON-lines
    copy."""
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"no audit head file at {str(p)!r}", ids=[str(p)])
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValidationError(
            f"{str(p)!r} is not a head file: byte {e.start} is not UTF-8 text", field="against"
        ) from None
    return _parse_lines(text, str(p))


@dataclass(frozen=True, slots=True)
class RecordProblem:
    """A record whose state differs from what its last audit entry recorded."""

    record: str
    seq: int
    fields: list[str]
    problem: str


@dataclass
class LogVerification:
    """What :func:`verify_log` found. ``kind``: ``None`` (intact), ``altered`` / ``deleted`` /
    ``inserted`` (the chain), ``truncated`` (entries cut off the end), ``rewritten`` (entries
    changed and the chain recomputed: a head's root differs), ``head`` (a head not signed with
    the key: forged or replaced) or ``record`` (records changed outside the hub)."""

    ok: bool
    checked: int
    heads_checked: int
    heads_signed: bool
    records_checked: int
    unaudited_nodes: int
    kind: str | None = None
    first_bad_seq: int | None = None
    problem: str | None = None
    records: list[RecordProblem] = dataclass_field(default_factory=list)
    notes: list[str] = dataclass_field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else EXIT_BY_KIND[self.kind or "altered"]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["exit_code"] = self.exit_code
        return d


def verify_log(
    store: GraphStore,
    key: bytes | None,
    heads: Sequence[tuple[str, TreeHead]] = (),
    check_records: bool = True,
    public_key: Any | None = None,
) -> LogVerification:
    """Check the audit log and the records it covers: the chain; every head (the store's
    own and ``heads``, ``(where, head)`` pairs from a head file or a copy) signed with
    ``key`` (when given) and matching the log's Merkle root at its size; then, unless
    ``check_records`` is false, every record's current state against its last entry.
    With ``public_key`` (Ed25519, :func:`load_public_key`) every head's signature is checked
    too. Reads the log once, a page at a time; memory grows with the number of records."""
    _check_key(key)
    all_heads = [("the store", h) for h in store.iter_checkpoints()] + list(heads)
    result = LogVerification(
        ok=True,
        checked=0,
        heads_checked=len(all_heads),
        heads_signed=key is not None,
        records_checked=0,
        unaudited_nodes=0,
    )

    def fail(kind: str, seq: int | None, problem: str) -> LogVerification:
        result.ok, result.kind, result.first_bad_seq, result.problem = False, kind, seq, problem
        return result

    if key is None and all_heads:
        result.notes.append("head signatures not checked: LINEAGEHUB_AUDIT_KEY is not set")
    if key is not None:
        for where, h in all_heads:
            if not h.mac_ok(key):
                what = "is not signed" if h.mac is None else "has a signature that does not match"
                return fail(
                    "head",
                    h.tree_size + 1 if h.tree_size == 0 else h.tree_size,
                    f"the tree head at size {h.tree_size} from {where} {what} (wrong key, "
                    "forged or replaced)",
                )
    if public_key is not None:
        for where, h in all_heads:
            if not signature_ok(h, public_key):
                what = "has no Ed25519 signature" if not h.signature else "has a bad signature"
                return fail(
                    "head",
                    max(h.tree_size, 1),
                    f"the tree head at size {h.tree_size} from {where} {what} (forged or "
                    "replaced, or signed with another key)",
                )
    sizes = {h.tree_size for _, h in all_heads}
    roots: dict[int, tuple[str, str | None]] = {}
    if 0 in sizes:
        roots[0] = (EMPTY_ROOT, None)
    frontier = Frontier()
    last: dict[str, tuple[int, str | None]] = {}

    def walk() -> Iterator[AuditEntry]:
        for e in store.iter_audit():
            yield e
            frontier.push(e.hash)
            if frontier.size in sizes:
                roots[frontier.size] = (frontier.root(), e.hash)
            if check_records and e.records:
                for rkey, rec in parse_records(e.records).items():
                    last[rkey] = (e.seq, rec["digest"] if rec is not None else None)

    chain = verify_chain(walk())
    result.checked = chain.checked
    if not chain.ok:
        return fail(chain.kind or "altered", chain.first_bad_seq, chain.problem or "")
    n = frontier.size
    good = 0  # the largest head size the log matches
    below = 0  # ... of those smaller than the head at hand (a head of its size may match)
    for where, h in sorted(all_heads, key=lambda wh: wh[1].tree_size):
        if h.tree_size > good:
            below = good
        if h.tree_size > n:
            missing = (
                f"entry {n + 1}" if h.tree_size == n + 1 else f"entries {n + 1}..{h.tree_size}"
            )
            return fail(
                "truncated",
                n + 1,
                f"the log ends at seq {n} but the tree head from {where} covers {h.tree_size} "
                f"entries: {missing} deleted",
            )
        root, head_hash = roots[h.tree_size]
        if root != h.root_hash or head_hash != h.head_hash:
            return fail(
                "rewritten",
                below + 1,
                f"entries {below + 1}..{h.tree_size} were changed and the chain recomputed: "
                f"their Merkle root differs from the tree head from {where} "
                f"(the first bad entry is at seq {below + 1} or later)",
            )
        good = h.tree_size
    if n > good and all_heads:
        result.notes.append(f"entries {good + 1}..{n} are after the newest tree head")
    if check_records:
        _check_records(store, last, result)
        if result.records:
            first = min(result.records, key=lambda r: r.seq)
            return fail(
                "record",
                first.seq,
                f"{len(result.records)} record(s) differ from their last audit entry; first: "
                f"{first.problem}",
            )
    return result


def _check_records(
    store: GraphStore, last: dict[str, tuple[int, str | None]], result: LogVerification
) -> None:
    keys = list(last)
    node_keys = [k for k in keys if k.startswith("node:")]
    edge_keys = [k for k in keys if k.startswith("edge:")]
    present_nodes = 0
    for chunk in _chunks(node_keys, 500):
        found = store.get_nodes([k[5:] for k in chunk])
        present_nodes += sum(1 for x in found if x is not None)
        for k, rec in zip(chunk, found, strict=True):
            _compare(store, k, rec, last[k], result)
    for chunk in _chunks(edge_keys, 500):
        edges = store.get_edges([k[5:] for k in chunk])
        for k, edge in zip(chunk, edges, strict=True):
            if edge is None and last[k][1] is not None:
                # Deleting a node deletes its edges: only an edge whose ends remain is missing.
                srcs = _edge_ends(store, k, last[k][0])
                if srcs is not None and None in store.get_nodes(srcs):
                    continue
            _compare(store, k, edge, last[k], result)
    result.records_checked = len(keys)
    result.unaudited_nodes = max(0, store.count_nodes() - present_nodes)


def _edge_ends(store: GraphStore, rkey: str, seq: int) -> list[str] | None:
    """The source and target an edge had when its last entry was written."""
    entry = store.read_audit(seq - 1, 1)
    if not entry or not entry[0].records:
        return None
    rec = parse_records(entry[0].records).get(rkey)
    ends = rec.get("ends") if rec else None
    return list(ends) if ends else None


def _compare(
    store: GraphStore,
    rkey: str,
    current: Node | Edge | None,
    recorded: tuple[int, str | None],
    result: LogVerification,
) -> None:
    seq, digest_then = recorded
    if current is None and digest_then is None:
        return
    if current is None:
        result.records.append(
            RecordProblem(rkey, seq, [], f"{rkey} was deleted outside the hub (last entry {seq})")
        )
        return
    now = record_digest(current)
    if digest_then is None:
        result.records.append(
            RecordProblem(rkey, seq, [], f"{rkey} exists but entry {seq} recorded its deletion")
        )
        return
    if now["digest"] == digest_then:
        return
    entry = store.read_audit(seq - 1, 1)[0]
    then = parse_records(entry.records)[rkey] or {}
    fields = changed_fields(then, now)
    result.records.append(
        RecordProblem(
            rkey,
            seq,
            fields,
            f"{rkey} changed outside the hub since entry {seq}: {', '.join(fields) or 'state'}",
        )
    )


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


__all__ = [
    "EXIT_BY_KIND",
    "ExportResult",
    "ExportVerification",
    "FileHeads",
    "GitHeads",
    "HeadCopy",
    "LogVerification",
    "RecordProblem",
    "S3Heads",
    "audit_policy",
    "copy_heads",
    "export_jsonl",
    "head_copy",
    "load_public_key",
    "load_signing_key",
    "read_head_file",
    "sign",
    "verify_export",
    "verify_log",
]
