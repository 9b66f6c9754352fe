"""Content-addressed artifact stores: ``open_artifact_store(uri)`` picks one by URI scheme.

===========================================  ==========================================
``file:///absolute/folder``                  a local (or mounted) folder
``/absolute/folder``, ``relative/folder``    the same, as a plain path (or a ``Path``)
``s3://bucket/prefix``                       AWS S3 or an S3 API (MinIO, Ceph): ``endpoint_url=``
===========================================  ==========================================

Layout: an artifact's bytes live under a key derived from their SHA-256 only, fanned out
over two directory levels so no folder (or S3 listing page) grows unbounded::

    <root or prefix>/sha256/<ab>/<cd>/<abcd...64 hex>    content, written once, never modified
    <root or prefix>/tmp/...                             puts in flight (leftovers of crashed
                                                         puts: expire after a day)

Guarantees, for every store:

- **Addressed by content.** An artifact is named by its digest, ``"sha256:<64 hex>"``;
  putting the same bytes twice stores them once (:attr:`ArtifactInfo.created` is ``False``
  the second time).
- **Streamed.** Nothing reads a whole artifact into memory (except :meth:`get_bytes`, which
  is asked to): puts hash while they copy in chunks, reads hash while they are consumed.
- **Verified on read.** :meth:`ArtifactStore.open` returns a reader that raises
  :class:`~lineagehub.graph.errors.IntegrityError` when the last byte is read if the bytes do
  not hash to the digest; :meth:`get_bytes` and :meth:`download` read everything, so they
  always verify, and a failed :meth:`download` leaves no file behind.
- **Atomic.** Content appears under its key complete or not at all: a file store writes a
  temporary file and links it into place; S3 uploads to a temporary key and copies it
  server-side. Concurrent puts of the same bytes, from threads or processes, are safe.

Errors are LineageHub's (:mod:`lineagehub.graph.errors`): a malformed digest is a
``ValidationError`` naming the field ``"digest"``; an unknown one a ``NotFoundError`` whose
``ids`` hold it; a local file that cannot be read a ``ValidationError`` naming ``"path"`` (a
local path is the caller's input, not a hub object, so it is not a ``NotFoundError``); S3
errors are translated at this boundary (see :class:`S3ArtifactStore`).

Plugins: :func:`register_artifact_store` or the ``lineagehub.artifact_stores`` entry-point
group (a name that is the scheme, a value that is a factory
``factory(uri: str, **options) -> ArtifactStore``).
"""

from __future__ import annotations

import abc
import contextlib
import errno
import hashlib
import io
import os
import re
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, ClassVar, Protocol, cast
from urllib.parse import urlsplit
from urllib.request import url2pathname

from lineagehub.graph.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    HubError,
    IntegrityError,
    NotFoundError,
    ValidationError,
)
from lineagehub.graph.uri import redact, scrub_credentials

MiB = 1024 * 1024
#: Read and hash in chunks of this size: large enough that hashing dominates the per-call
#: overhead, small enough that memory stays flat whatever the artifact size.
CHUNK_SIZE = 1 * MiB
#: boto3's own defaults for when (and in what parts) to upload in several parts.
DEFAULT_MULTIPART_THRESHOLD = 8 * MiB
DEFAULT_MULTIPART_CHUNKSIZE = 8 * MiB
#: Parallel part uploads. Upload memory is about ``(max_concurrency + 1) * chunksize``.
DEFAULT_MAX_CONCURRENCY = 4
#: Each S3 request: attempts in all (botocore's standard retry mode), seconds to connect,
#: and seconds without a byte once connected (not a bound on a whole transfer); a call on an
#: endpoint that stalls ends within about
#: ``S3_ATTEMPTS * (S3_CONNECT_TIMEOUT_S + S3_READ_TIMEOUT_S)``. ``client_config`` overrides
#: them.
S3_ATTEMPTS = 3
S3_CONNECT_TIMEOUT_S = 10.0
S3_READ_TIMEOUT_S = 30.0
#: The largest object S3's single CopyObject call accepts; beyond it, a multipart copy.
COPY_OBJECT_LIMIT = 5 * 1024 * MiB

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_BUCKET = re.compile(r"[A-Za-z0-9._-]{1,255}")


@dataclass(frozen=True)
class ArtifactInfo:
    """What a put stored.

    ``digest`` is ``"sha256:<64 hex>"``, ``size`` the byte count, ``uri`` where the content
    lives (:meth:`ArtifactStore.uri_for`). ``created`` is ``False`` when the content was
    already there (deduplicated). On S3, two puts of the same new bytes racing each other may
    both report ``True``; the content is still stored once.
    """

    digest: str
    size: int
    uri: str
    created: bool
    #: A hub server's proof that this caller uploaded the bytes (see ``PUT /artifacts``)
    receipt: str | None = None


# --------------------------------------------------------------------------- digests


def validate_digest(digest: object) -> str:
    """Return the 64 hex digits of ``digest`` (``"sha256:<64 lowercase hex>"``), or raise
    :class:`ValidationError` naming the field ``"digest"``."""
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise ValidationError(
            f"bad artifact digest {digest!r}: expected 'sha256:' and 64 lowercase hex digits",
            field="digest",
        )
    return match.group(1)


def absent_artifact(digest: str) -> NotFoundError:
    """The answer to a hub's caller for bytes the hub does not have (the store itself names
    where it looked; a caller is not told that); a server gives it too for bytes only
    projects the caller may not view hold, so that the one does not tell the other."""
    return NotFoundError(f"artifact {digest} is not in the artifact store", ids=[digest])


def digest_bytes(data: bytes | bytearray | memoryview) -> str:
    """The digest (``"sha256:<hex>"``) an artifact of these bytes is stored under."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_file(path: str | os.PathLike[str], chunk_size: int = CHUNK_SIZE) -> str:
    """The digest of a local file, read in chunks (never whole into memory)."""
    return hash_file(_local_file(path), chunk_size)[0]


def hash_file(
    path: str | os.PathLike[str], chunk_size: int = CHUNK_SIZE, *, field: str = "path"
) -> tuple[str, int]:
    """The digest (``"sha256:<hex>"``) and byte count of a local file.

    Read in ``chunk_size`` pieces into one reused buffer, so memory stays bounded whatever the
    file's size. The file is the caller's: an I/O error is a :class:`ValidationError` naming
    ``field`` (``"path"`` unless the caller names its own argument).
    """
    p = Path(path)
    hasher = hashlib.sha256()
    buf = bytearray(max(1, chunk_size))
    view = memoryview(buf)
    size = 0
    try:
        with open(p, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                hasher.update(view[:n])
                size += n
    except OSError as e:
        raise ValidationError(f"cannot read {str(p)!r}: {e.strerror or e}", field=field) from e
    return "sha256:" + hasher.hexdigest(), size


def _local_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise ValidationError(f"no such file: {str(p)!r}", field="path")
    if not p.is_file():
        raise ValidationError(f"not a regular file: {str(p)!r}", field="path")
    return p


def _open_local(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as e:
        raise ValidationError(f"cannot read {str(path)!r}: {e.strerror}", field="path") from e


class _LocalFileReader:
    """The caller's local file: its I/O errors are about that path (a ValidationError naming
    ``"path"``), not about the store."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        self._file = file
        self._path = path

    def read(self, size: int = -1) -> bytes:
        try:
            return self._file.read(size)
        except OSError as e:
            raise ValidationError(
                f"cannot read {str(self._path)!r}: {e.strerror}", field="path"
            ) from e


def _content_key(prefix: str, hex_digest: str) -> str:
    return f"{prefix}sha256/{hex_digest[:2]}/{hex_digest[2:4]}/{hex_digest}"


# --------------------------------------------------------------------------- streams


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class _HashingReader:
    """Wraps a caller's binary stream: hashes and counts what passes through.

    Deliberately has no ``seek``/``tell``: boto3 then treats it as a one-pass stream and reads
    it strictly in order, which the running hash depends on.
    """

    def __init__(self, source: _Readable) -> None:
        self._source = source
        self._hasher = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while chunk := self._read_some(CHUNK_SIZE):
                parts.append(chunk)
            return b"".join(parts)
        # Fill the request unless the stream ends: S3 rejects multipart parts under 5 MiB but
        # the last, and pipes or sockets happily return short reads.
        parts = []
        wanted = size
        while wanted > 0 and (chunk := self._read_some(wanted)):
            parts.append(chunk)
            wanted -= len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read_some(self, size: int) -> bytes:
        chunk = self._source.read(size)
        if chunk is None:
            raise ValidationError(
                "the stream is non-blocking and has no data ready; pass a blocking binary stream",
                field="stream",
            )
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise ValidationError(
                f"expected a binary stream (open files with 'rb'), got {type(chunk).__name__} "
                "chunks",
                field="stream",
            )
        if chunk:
            chunk = bytes(chunk)
            self._hasher.update(chunk)
            self.size += len(chunk)
        return chunk

    @property
    def hex_digest(self) -> str:
        return self._hasher.hexdigest()


class _VerifyingReader(io.RawIOBase):
    """Reads a stored artifact, hashing as it goes; raises IntegrityError on the read that
    reaches the end if the bytes do not match the digest, so bad bytes never pass as good."""

    def __init__(
        self,
        source: _Readable,
        digest: str,
        *,
        expected_size: int | None,
        uri: str,
        translate: Callable[[Exception], HubError | None] = lambda e: None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._source = source
        self._digest = digest
        self._expected_size = expected_size
        self._uri = uri
        self._translate = translate
        self._on_close = on_close
        self._hasher = hashlib.sha256()
        self._position = 0
        self._verified = False
        self._error: IntegrityError | None = None
        #: Set by :func:`passed_on`: bytes that do not match are delivered all the same, and
        #: the mismatch kept here instead of raised.
        self.passing_on = False
        self.mismatch: IntegrityError | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._read_source(len(view))
        view[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        parts = []
        while chunk := self._read_source(CHUNK_SIZE):
            parts.append(chunk)
        return b"".join(parts)

    def _read_source(self, size: int) -> bytes:
        if self._error is not None:
            raise self._error
        if self._verified or size <= 0:
            return b""
        try:
            data = self._source.read(size)
        except Exception as e:
            mapped = self._translate(e)
            if mapped is None:
                raise
            raise mapped from e
        if data:
            self._hasher.update(data)
            self._position += len(data)
            # Verify on the read that delivers the last byte, not on a later empty read a
            # caller that knows the size may never make.
            if self._expected_size is not None and self._position >= self._expected_size:
                self._verify()
            return data
        self._verify()
        return b""

    def _verify(self) -> None:
        actual = self._hasher.hexdigest()
        size_ok = self._expected_size is None or self._position == self._expected_size
        if size_ok and "sha256:" + actual == self._digest:
            self._verified = True
            return
        error = IntegrityError(
            f"artifact {self._digest} is corrupt: its stored {self._position} bytes at "
            f"{self._uri} hash to sha256:{actual}"
        )
        if self.passing_on:
            self.mismatch = error
            self._verified = True  # nothing more to read: the source is at its end
            return
        self._error = error
        raise error

    def close(self) -> None:
        if not self.closed:
            try:
                if self._on_close is not None:
                    self._on_close()
            finally:
                super().close()


def passed_on(reader: BinaryIO) -> Callable[[], IntegrityError | None]:
    """For a server sending a stored artifact on to a client that checks the bytes itself:
    ``reader`` (from :meth:`ArtifactStore.open`) then delivers every byte, damaged or not, and
    the function returned says, once it is read to the end, whether they were. The client
    learns that the bytes are damaged (its own check fails: an ``IntegrityError``), not that
    the network cut the answer off (retryable, for ever). A reader of a store of another
    kind is left as it is: it raises on damage, the answer is cut off."""
    raw = getattr(reader, "raw", reader)
    if not isinstance(raw, _VerifyingReader):
        return lambda: None
    raw.passing_on = True
    return lambda: raw.mismatch


# --------------------------------------------------------------------------- the interface


class ArtifactStore(abc.ABC):
    """A content-addressed blob store. Implement the abstract primitives; the convenience
    methods (:meth:`put_bytes`, :meth:`put_file`, :meth:`get_bytes`, :meth:`download`) are
    written once here on top of them. Stores are safe to share between threads."""

    #: The URI scheme the store is opened with.
    scheme: ClassVar[str]

    def __init__(self, *, chunk_size: int = CHUNK_SIZE) -> None:
        if not isinstance(chunk_size, int) or chunk_size <= 0:
            raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        self.chunk_size = chunk_size

    @property
    @abc.abstractmethod
    def uri(self) -> str:
        """The store's own URI (no credentials)."""

    @abc.abstractmethod
    def put_stream(self, stream: BinaryIO) -> ArtifactInfo:
        """Store everything read from a binary stream (read in chunks until it ends)."""

    @abc.abstractmethod
    def exists(self, digest: str) -> bool:
        """Whether content with this digest is stored."""

    @abc.abstractmethod
    def open(self, digest: str) -> BinaryIO:
        """A reader over the content, streamed. It hashes what is read and raises
        :class:`IntegrityError` when the end is reached if the bytes do not match ``digest``
        (a reader closed before the end verifies nothing). Not seekable. Close it (or use it
        as a context manager). Unknown digest: :class:`NotFoundError`."""

    @abc.abstractmethod
    def size(self, digest: str) -> int:
        """The stored size in bytes. Unknown digest: :class:`NotFoundError`."""

    @abc.abstractmethod
    def delete(self, digest: str, *, missing_ok: bool = False) -> None:
        """Remove the content. Unknown digest: :class:`NotFoundError` unless ``missing_ok``.
        The caller must know nothing still refers to it: content is shared by every put of
        the same bytes."""

    @abc.abstractmethod
    def uri_for(self, digest: str) -> str:
        """Where content with this digest lives (or would live): computed, not looked up."""

    # -- convenience, built on the primitives

    def stored(self, digest: str) -> ArtifactInfo:
        """What is stored under ``digest`` (checked; its size read), to name content already
        here, as registering a version from it does. Unknown digest: :class:`NotFoundError`."""
        validate_digest(digest)
        return ArtifactInfo(
            digest=digest, size=self.size(digest), uri=self.uri_for(digest), created=False
        )

    def put_bytes(self, data: bytes | bytearray | memoryview) -> ArtifactInfo:
        """Store these bytes."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValidationError(
                f"put_bytes takes bytes, got {type(data).__name__}; encode text first",
                field="data",
            )
        # In memory already: hash first, and skip the write when the content is stored.
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.exists(digest) and self.size(digest) == len(data):
            return ArtifactInfo(
                digest=digest, size=len(data), uri=self.uri_for(digest), created=False
            )
        return self.put_stream(cast(BinaryIO, io.BytesIO(data)))

    def put_file(self, path: str | os.PathLike[str]) -> ArtifactInfo:
        """Store a local file's content, streamed. A missing or unreadable file raises
        :class:`ValidationError` naming the field ``"path"``."""
        p = _local_file(path)
        with _open_local(p) as f:
            return self.put_stream(cast(BinaryIO, _LocalFileReader(f, p)))

    def get_bytes(self, digest: str) -> bytes:
        """The whole content, verified. Holds it in memory: prefer :meth:`open` or
        :meth:`download` for large artifacts."""
        with self.open(digest) as reader:
            return reader.read()

    def download(self, digest: str, dest_path: str | os.PathLike[str]) -> Path:
        """Write the content to ``dest_path``, streamed and verified, and return the path.

        The bytes go to a temporary file in the destination folder (created if missing),
        which is renamed over ``dest_path`` only once fully written, synced and verified:
        readers of ``dest_path`` never see a partial or corrupt file, and a failure (such as
        :class:`IntegrityError`) leaves no file behind.
        """
        dest = Path(dest_path)
        if dest.is_dir():
            raise ValidationError(f"{str(dest)!r} is a directory", field="dest_path")
        reader = self.open(digest)  # before creating anything: unknown digests leave no trace
        with reader:
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp_name = tempfile.mkstemp(
                    dir=dest.parent, prefix=f".{dest.name}.", suffix=".part"
                )
            except OSError as e:
                raise ValidationError(
                    f"cannot write to {str(dest.parent)!r}: {e.strerror}", field="dest_path"
                ) from e
            try:
                with os.fdopen(fd, "wb") as out:
                    while chunk := reader.read(self.chunk_size):
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                # mkstemp makes 0600 files; a download should look like any file the user
                # writes (their umask), or like the file it replaces.
                os.chmod(tmp_name, _new_file_mode(dest))
                os.replace(tmp_name, dest)
            except BaseException as e:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp_name)
                if isinstance(e, OSError):  # the destination's file system (full, read-only)
                    raise ValidationError(
                        f"cannot write {str(dest)!r}: {e.strerror or e}; nothing was written",
                        field="dest_path",
                    ) from e
                raise
        _fsync_dir(dest.parent)
        return dest

    def close(self) -> None:  # noqa: B027 - optional hook: most stores hold nothing to release
        """Release connections. The store is unusable afterwards."""

    def __enter__(self) -> ArtifactStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


# --------------------------------------------------------------------------- file://


def _current_umask() -> int:
    # os.umask can only be read by setting it, which races with other threads creating
    # files; Linux publishes it in /proc instead.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _new_file_mode(dest: Path) -> int:
    try:
        return stat.S_IMODE(dest.stat().st_mode)
    except OSError:
        return 0o666 & ~_current_umask()


def _fsync_dir(folder: Path) -> None:
    # A rename is durable only once the directory entry is; Windows cannot open directories.
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: How old a leftover of a killed put (or upload spool) must be to be removed: a day
LEFTOVER_AGE_S = 24 * 3600


class FileArtifactStore(ArtifactStore):
    """Artifacts in a local or mounted folder.

    A put streams into a temporary file under ``<root>/tmp`` (the same file system, so the
    final step is a rename, not a copy) while hashing, syncs it, makes it read-only and
    hard-links it to its content path: the link fails if the content is already there, so
    exactly one of several concurrent puts reports ``created=True``. File systems without
    hard links fall back to an atomic ``os.replace``. ``fsync=False`` skips the syncs
    (faster, not crash-safe).
    """

    scheme = "file"

    def __init__(
        self, root: str | os.PathLike[str], *, chunk_size: int = CHUNK_SIZE, fsync: bool = True
    ) -> None:
        super().__init__(chunk_size=chunk_size)
        self.root = Path(root).expanduser().resolve()
        self._fsync = fsync
        try:
            # Not <root>/tmp yet: a read-only store (a mounted share) is still readable.
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(
                f"cannot use {str(self.root)!r} as an artifact store: {e.strerror}"
            ) from e

    @property
    def uri(self) -> str:
        return self.root.as_uri()

    def _path(self, digest: str) -> Path:
        return self.root / _content_key("", validate_digest(digest))

    def uri_for(self, digest: str) -> str:
        return self._path(digest).as_uri()

    def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def size(self, digest: str) -> int:
        path = self._path(digest)
        try:
            return path.stat().st_size
        except FileNotFoundError:
            raise NotFoundError(f"no artifact {digest} in {self.uri}", ids=[digest]) from None
        except OSError as e:
            raise BackendError(f"cannot stat {str(path)!r}: {e.strerror}") from e

    def open(self, digest: str) -> BinaryIO:
        path = self._path(digest)
        try:
            f = open(path, "rb")  # noqa: SIM115 - the returned reader owns and closes it
        except FileNotFoundError:
            raise NotFoundError(f"no artifact {digest} in {self.uri}", ids=[digest]) from None
        except OSError as e:
            raise BackendError(f"cannot open {str(path)!r}: {e.strerror}") from e
        raw = _VerifyingReader(
            f,
            digest,
            expected_size=os.fstat(f.fileno()).st_size,
            uri=path.as_uri(),
            translate=_translate_os_error,
            on_close=f.close,
        )
        return cast(BinaryIO, io.BufferedReader(raw, buffer_size=self.chunk_size))

    def delete(self, digest: str, *, missing_ok: bool = False) -> None:
        path = self._path(digest)
        try:
            if os.name == "nt":  # Windows refuses to delete read-only files
                os.chmod(path, stat.S_IWRITE | stat.S_IREAD)
            os.unlink(path)
        except FileNotFoundError:
            if not missing_ok:
                raise NotFoundError(f"no artifact {digest} in {self.uri}", ids=[digest]) from None
        except OSError as e:
            raise BackendError(f"cannot delete {str(path)!r}: {e.strerror}") from e

    def put_stream(self, stream: BinaryIO) -> ArtifactInfo:
        reader = _HashingReader(stream)
        try:
            # In the store's folder, not the system's: the final rename must not cross file
            # systems.
            (self.root / "tmp").mkdir(exist_ok=True)
            self._sweep()
            fd, tmp_name = tempfile.mkstemp(dir=self.root / "tmp", prefix="put-", suffix=".part")
        except OSError as e:
            raise BackendError(f"cannot write to {self.uri}: {e.strerror}") from e
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                # Reads from the caller's stream raise as they are; only our own file system
                # calls are translated.
                while chunk := reader.read(self.chunk_size):
                    _os_call(out.write, chunk)
                _os_call(out.flush)
                if self._fsync:
                    _os_call(os.fsync, out.fileno())
            # Stored content is never modified in place: read-only says so.
            _os_call(os.chmod, tmp, 0o444 & ~_current_umask())
            digest = "sha256:" + reader.hex_digest
            final = self._path(digest)
            created = self._publish(tmp, final, reader.size)
        finally:
            # Gone already once linked and published; failing to tidy up must not fail a put.
            with contextlib.suppress(OSError):
                tmp.unlink()
        return ArtifactInfo(digest=digest, size=reader.size, uri=final.as_uri(), created=created)

    def _sweep(self) -> None:
        """Remove puts left in ``tmp/`` by a process killed mid-put, once they are a day old
        (a put in flight is younger), at most once an hour per store object."""
        now = time.time()
        if now - getattr(self, "_swept_at", 0.0) < 3600:
            return
        self._swept_at = now
        for left in (self.root / "tmp").glob("put-*.part"):
            with contextlib.suppress(OSError):  # another process's sweep got there first
                if now - left.stat().st_mtime > LEFTOVER_AGE_S:
                    left.unlink()

    def _publish(self, tmp: Path, final: Path, size: int) -> bool:
        """Move a complete temporary file to its content path; False if already there.

        Already there, it is replaced all the same: the new file is complete, synced and
        named by its own hash, so the swap costs a rename where deleting it cost an unlink,
        and a stored copy that was damaged (on disk, or by hand) is repaired by the next put
        of its bytes. Readers holding the old file open read it to its end."""
        _os_call(final.parent.mkdir, parents=True, exist_ok=True)
        try:
            # link, unlike rename, refuses to overwrite: the one winner among concurrent puts
            # learns it created the content, the others that it was already there.
            os.link(tmp, final)
        except OSError:
            # There already; or no hard links here (some network and FUSE file systems):
            # rename atomically. A stored copy of the wrong size was damaged: created anew.
            there = self._stored_size(final) == size
            _os_call(os.replace, tmp, final)
            if there:
                return False
            if self._fsync:
                _fsync_dir(final.parent)
            return True
        if self._fsync:
            _fsync_dir(final.parent)
        return True

    @staticmethod
    def _stored_size(path: Path) -> int | None:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return None

    def put_bytes(self, data: bytes | bytearray | memoryview) -> ArtifactInfo:
        """Store these bytes; when a copy is stored already (checked whole: a read, where a
        put costs a write and a sync), nothing is written, and a damaged copy is replaced."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            return super().put_bytes(data)  # the base class's error
        digest = digest_bytes(data)
        path = self._path(digest)
        if self._intact(path, digest, len(data)):
            return ArtifactInfo(digest=digest, size=len(data), uri=path.as_uri(), created=False)
        return self.put_stream(cast(BinaryIO, io.BytesIO(data)))

    def _intact(self, path: Path, digest: str, size: int) -> bool:
        try:
            if path.stat().st_size != size:
                return False
            return hash_file(path, self.chunk_size) == (digest, size)
        except (OSError, ValidationError):
            return False


def _translate_os_error(e: Exception) -> HubError | None:
    if isinstance(e, OSError):
        return _io_error(e)
    return None


def _os_call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except OSError as e:
        raise _io_error(e) from e


def _io_error(e: OSError) -> BackendError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return BackendError(
            f"artifact store: the disk is full ({e}): nothing was stored; free space and "
            "write again"
        )
    return BackendError(f"artifact store I/O error: {e}")


# --------------------------------------------------------------------------- s3://

# Error codes S3 (and the S3 APIs of MinIO, Ceph) answer with, by what they mean to us.
_S3_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_S3_ACCESS = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "AccountProblem"})
_S3_CREDENTIALS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "RequestTimeTooSkewed",
    }
)
_S3_TRANSIENT = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequests",
        "RequestTimeout",
        "ServiceUnavailable",
        "InternalError",
        "500",
        "502",
        "503",
        "504",
    }
)


def _check_endpoint(url: str) -> None:
    """:class:`ConfigError` unless ``url`` is an http(s) URL with a host; the message shows
    no password, even of a URL without a scheme (``user:secret@host``)."""
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        ok = False
    if not ok:
        shown = redact(url) if "://" in url else url.rsplit("@", 1)[-1]
        if "@" in url and "://" not in url:
            shown = "***@" + shown
        raise ConfigError(
            f"the S3 endpoint {shown!r} is not an http:// or https:// URL with a host "
            "(LINEAGEHUB_S3_ENDPOINT_URL, e.g. http://minio.internal:9000)"
        )


#: The user metadata key an S3 object's digest is kept under (``x-amz-meta-sha256``).
_SHA256_META = "sha256"


class S3ArtifactStore(ArtifactStore):
    """Artifacts in an S3 bucket (AWS S3, or an S3 API such as MinIO via ``endpoint_url``).

    Credentials come from boto3's usual chain (environment, shared files, instance or
    container roles) and are never logged or put in messages.

    A put cannot know the digest, and so the key, before the last byte, so it streams to a
    temporary key ``<prefix>/tmp/<uuid>`` with boto3's managed transfer (a multipart upload
    in ``multipart_chunksize`` parts once the content reaches ``multipart_threshold``),
    hashing the parts as boto3 reads them; then, unless an object of the same size is
    already at the content key, copies it there server-side (CopyObject below
    ``copy_threshold``, a multipart copy above) and deletes the temporary key. ``put_file``
    hashes the local file first and uploads nothing if the content is already stored.

    Upload memory is bounded by about ``(max_concurrency + 1) * multipart_chunksize``
    (S3 sets a 5 MiB minimum part size; boto3 raises smaller values to it).

    Error translation: no such key -> ``NotFoundError``; missing bucket, access denied,
    rejected or missing credentials -> ``ConfigError`` (naming the bucket); throttling,
    5xx and connection failures (after botocore's retries) -> ``BackendUnavailable``;
    anything else -> ``BackendError``.

    Operating notes: give ``<prefix>/tmp/`` a lifecycle rule that expires objects after a
    day and aborts incomplete multipart uploads (a crashed put can leave either behind). On
    a versioned bucket :meth:`delete` leaves the previous versions. Without
    ``s3:ListBucket``, S3 answers 403 rather than 404 for missing keys, which surfaces as a
    ``ConfigError`` here: grant it.
    """

    scheme = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client_config: Any = None,
        profile_name: str | None = None,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        multipart_chunksize: int = DEFAULT_MULTIPART_CHUNKSIZE,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        copy_threshold: int = COPY_OBJECT_LIMIT,
        chunk_size: int = CHUNK_SIZE,
        client: Any = None,
    ) -> None:
        """Open ``s3://bucket/prefix``. Nothing is sent to S3 until the first call.

        ``endpoint_url``: an S3 API other than AWS (MinIO, Ceph, a test server); path-style
        addressing is then the default. ``region_name``: else boto3's configured region.
        ``client_config``: a ``botocore.config.Config`` or a dict of its arguments, merged
        over ours (standard retry mode, :data:`S3_ATTEMPTS` attempts, connect and read
        timeouts :data:`S3_CONNECT_TIMEOUT_S` and :data:`S3_READ_TIMEOUT_S`).
        ``profile_name``: a named profile of the shared AWS config. ``multipart_threshold`` / ``multipart_chunksize`` /
        ``max_concurrency``: boto3 ``TransferConfig`` for uploads. ``copy_threshold``: size
        from which the server-side copy is multipart (at most 5 GiB, S3's CopyObject limit).
        ``client``: a ready boto3 S3 client to use instead (the caller closes it).
        """
        super().__init__(chunk_size=chunk_size)
        if not isinstance(bucket, str) or not _BUCKET.fullmatch(bucket):
            # botocore's own rule (new buckets are stricter: 3-63 lowercase characters), at
            # open, not as a failure of the first call
            raise ConfigError(
                f"{bucket!r} is not a valid S3 bucket name: 3 to 63 lowercase letters, "
                "digits, dots and hyphens"
            )
        for name, value, minimum in (
            ("multipart_threshold", multipart_threshold, 1),
            ("multipart_chunksize", multipart_chunksize, 1),
            ("max_concurrency", max_concurrency, 1),
            ("copy_threshold", copy_threshold, 1),
        ):
            if not isinstance(value, int) or value < minimum:
                raise ConfigError(f"S3 option {name} must be a positive integer, got {value!r}")
        if copy_threshold > COPY_OBJECT_LIMIT:
            raise ConfigError(f"copy_threshold cannot exceed S3's limit of {COPY_OBJECT_LIMIT}")
        try:
            import boto3
            import botocore.config
            from boto3.s3.transfer import TransferConfig
        except ImportError as e:  # pragma: no cover - boto3 is a dependency today
            raise ConfigError("s3:// artifact stores need boto3: pip install boto3") from e

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # Every key is <prefix>/..., or bare when the store is the whole bucket.
        self._key_prefix = f"{self.prefix}/" if self.prefix else ""
        self._endpoint_url = endpoint_url
        self._copy_threshold = copy_threshold
        self._chunksize = multipart_chunksize
        self._bucket_checked = False
        self._bucket_lock = threading.Lock()

        self._owns_client = client is None
        if client is None:
            if endpoint_url is not None:
                _check_endpoint(endpoint_url)
            defaults: dict[str, Any] = {
                "retries": {"mode": "standard", "total_max_attempts": S3_ATTEMPTS},
                # botocore's 60 s to connect, over five attempts, held a call for six minutes
                # on an endpoint that accepted and never answered
                "connect_timeout": S3_CONNECT_TIMEOUT_S,
                "read_timeout": S3_READ_TIMEOUT_S,
            }
            if endpoint_url:
                # Virtual-hosted addressing needs wildcard DNS that S3-compatible servers
                # seldom have; every one of them speaks path-style.
                defaults["s3"] = {"addressing_style": "path"}
            config = botocore.config.Config(**defaults)
            try:
                if isinstance(client_config, dict):
                    client_config = botocore.config.Config(**client_config)
            except TypeError as e:
                raise ConfigError(f"bad S3 client_config: {e}") from None
            if client_config is not None:
                config = config.merge(client_config)
            try:
                # A session of our own: boto3's default session is not thread-safe to create
                # clients from.
                session = boto3.session.Session(profile_name=profile_name)
                client = session.client(
                    "s3", endpoint_url=endpoint_url, region_name=region_name, config=config
                )
            except Exception as e:
                mapped = self._translate(e, op="connect")
                if mapped is None:
                    # botocore's ValueError quotes the endpoint it built, as given
                    raise ConfigError(
                        f"cannot make an S3 client for {self._where()}: "
                        f"{scrub_credentials(str(e))} (check LINEAGEHUB_S3_ENDPOINT_URL and "
                        "the region: AWS_REGION, AWS_DEFAULT_REGION)"
                    ) from None
                raise mapped from e
        self._client = client

        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
            use_threads=True,
            # The classic manager reads a one-pass stream in order and bounds its memory;
            # the CRT one (when awscrt is installed) is tuned differently.
            preferred_transfer_client="classic",
        )
        # boto3 buffers up to this many parts read ahead of the uploads (default 10).
        self._transfer.max_in_memory_upload_chunks = max_concurrency
        self._max_concurrency = max_concurrency

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def client(self) -> Any:
        """The boto3 S3 client in use (for instrumentation; do not close it)."""
        return self._client

    def _key(self, digest: str) -> str:
        return _content_key(self._key_prefix, validate_digest(digest))

    def uri_for(self, digest: str) -> str:
        return f"s3://{self.bucket}/{self._key(digest)}"

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # -- errors

    def _where(self) -> str:
        where = self.uri
        if self._endpoint_url:
            where += f" at {redact(self._endpoint_url)}"
        return where

    def _translate(self, e: Exception, *, op: str, digest: str | None = None) -> HubError | None:
        """The HubError for a boto3/botocore exception, or None for anything else (such as
        an error raised by the caller's own stream, which must surface unchanged)."""
        from botocore import exceptions as bx

        if isinstance(e, HubError):
            return e
        # botocore's messages quote the endpoint URL as given, password included
        detail = scrub_credentials(str(e))
        if self._endpoint_url:
            detail = detail.replace(self._endpoint_url, redact(self._endpoint_url))
        if isinstance(e, bx.ClientError):
            error = e.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _S3_NOT_FOUND and digest is not None:
                return NotFoundError(f"no artifact {digest} in {self.uri}", ids=[digest])
            if code == "NoSuchBucket":
                return ConfigError(f"S3 bucket {self.bucket!r} does not exist ({self._where()})")
            if code in _S3_ACCESS:
                # an answer to HEAD has no body, so no code: a bad key looks the same there
                unsure = " (or the credentials are not valid at all)" if code == "403" else ""
                return ConfigError(
                    f"access denied to {self._where()} ({op}): check the credentials' "
                    f"permissions and the bucket policy{unsure} (without s3:ListBucket, S3 "
                    "also answers 'access denied' for keys that do not exist)"
                )
            if code in _S3_CREDENTIALS:
                return ConfigError(f"S3 rejected the credentials for {self._where()}: {code}")
            if code in _S3_TRANSIENT or status == 429 or status >= 500:
                return BackendUnavailable(f"S3 is unavailable ({op} on {self._where()}): {detail}")
            return BackendError(f"S3 {op} failed on {self._where()}: {detail}")
        if isinstance(
            e,
            (
                bx.NoCredentialsError,
                bx.PartialCredentialsError,
                bx.CredentialRetrievalError,
                bx.ProfileNotFound,
                bx.NoRegionError,
            ),
        ):
            return ConfigError(f"cannot use {self._where()}: {detail}")
        if isinstance(e, bx.InvalidRegionError):
            return ConfigError(f"cannot use {self._where()}: {detail}")
        if isinstance(e, bx.FlexibleChecksumError):
            return IntegrityError(
                f"S3 transfer checksum mismatch ({op} on {self._where()}): {detail}"
            )
        if isinstance(e, (bx.ConnectionError, bx.HTTPClientError, bx.IncompleteReadError)):
            return BackendUnavailable(f"cannot reach S3 ({op} on {self._where()}): {detail}")
        if isinstance(e, bx.BotoCoreError):
            return BackendError(f"S3 {op} failed on {self._where()}: {detail}")
        return None

    @contextlib.contextmanager
    def _errors(self, op: str, digest: str | None = None) -> Iterator[None]:
        try:
            yield
        except Exception as e:
            mapped = self._translate(e, op=op, digest=digest)
            if mapped is None or mapped is e:
                raise
            raise mapped from e

    def _head(self, key: str) -> int | None:
        """The size of the object at ``key``, or None if there is none."""
        response = self._head_object(key)
        return None if response is None else int(response["ContentLength"])

    def _head_object(self, key: str) -> dict[str, Any] | None:
        """The HEAD answer of the object at ``key``, or None if there is none."""
        from botocore.exceptions import ClientError

        with self._errors("head"):
            try:
                response: dict[str, Any] = self._client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") not in _S3_NOT_FOUND:
                    raise
                # HEAD answers have no body, so a missing bucket looks like a missing key.
                self._check_bucket()
                return None
        return response

    def _intact(self, key: str, digest: str, size: int) -> bool:
        """Whether the object at ``key`` is one this store put there whole: its size, and the
        digest it was copied into place with (``x-amz-meta-sha256``). An object written there
        otherwise (by hand, a tool, an older release) is put again: only a download could
        tell a damaged copy of the same size."""
        response = self._head_object(key)
        if response is None or int(response["ContentLength"]) != size:
            return False
        metadata = response.get("Metadata") or {}
        return bool(metadata.get(_SHA256_META) == digest.removeprefix("sha256:"))

    def _check_bucket(self) -> None:
        """Tell a missing bucket from a missing key, once per store."""
        if self._bucket_checked:
            return
        from botocore.exceptions import ClientError

        with self._bucket_lock:
            if self._bucket_checked:
                return
            with self._errors("head bucket"):
                try:
                    self._client.head_bucket(Bucket=self.bucket)
                except ClientError as e:
                    code = e.response.get("Error", {}).get("Code")
                    if code in ("404", "NoSuchBucket", "NotFound"):
                        raise ConfigError(
                            f"S3 bucket {self.bucket!r} does not exist ({self._where()})"
                        ) from e
                    # Without s3:ListBucket we cannot tell; object calls say if it matters.
                    if code not in _S3_ACCESS:
                        raise
            self._bucket_checked = True

    # -- primitives

    def exists(self, digest: str) -> bool:
        return self._head(self._key(digest)) is not None

    def size(self, digest: str) -> int:
        size = self._head(self._key(digest))
        if size is None:
            raise NotFoundError(f"no artifact {digest} in {self.uri}", ids=[digest])
        return size

    def open(self, digest: str) -> BinaryIO:
        key = self._key(digest)
        with self._errors("get", digest=digest):
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        body = response["Body"]
        raw = _VerifyingReader(
            body,
            digest,
            expected_size=int(response["ContentLength"]),
            uri=f"s3://{self.bucket}/{key}",
            translate=lambda e: self._translate(e, op="read", digest=digest),
            on_close=body.close,
        )
        return cast(BinaryIO, io.BufferedReader(raw, buffer_size=self.chunk_size))

    def delete(self, digest: str, *, missing_ok: bool = False) -> None:
        key = self._key(digest)
        # S3 deletes are silent about missing keys; ask first to honour missing_ok.
        if not missing_ok and self._head(key) is None:
            raise NotFoundError(f"no artifact {digest} in {self.uri}", ids=[digest])
        with self._errors("delete", digest=digest):
            self._client.delete_object(Bucket=self.bucket, Key=key)

    def put_stream(self, stream: BinaryIO) -> ArtifactInfo:
        reader = _HashingReader(stream)
        tmp_key = f"{self._key_prefix}tmp/{uuid.uuid4().hex}"
        try:
            with self._errors("upload"):
                self._client.upload_fileobj(reader, self.bucket, tmp_key, Config=self._transfer)
            digest = "sha256:" + reader.hex_digest
            key = self._key(digest)
            created = self._publish(tmp_key, key, reader.size, digest)
        finally:
            # Best effort: a leftover temporary object is garbage the lifecycle rule expires,
            # not an error for a put whose content is safely stored.
            with contextlib.suppress(Exception):
                self._client.delete_object(Bucket=self.bucket, Key=tmp_key)
        return ArtifactInfo(
            digest=digest, size=reader.size, uri=f"s3://{self.bucket}/{key}", created=created
        )

    def put_bytes(self, data: bytes | bytearray | memoryview) -> ArtifactInfo:
        """Store these bytes; nothing is uploaded when an intact copy is stored (one HEAD)."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            digest = digest_bytes(data)
            key = self._key(digest)
            if self._intact(key, digest, len(data)):
                return ArtifactInfo(
                    digest=digest, size=len(data), uri=f"s3://{self.bucket}/{key}", created=False
                )
            return self.put_stream(cast(BinaryIO, io.BytesIO(data)))
        return super().put_bytes(data)  # its refusal

    def put_file(self, path: str | os.PathLike[str]) -> ArtifactInfo:
        """Store a local file; hashes it first and uploads nothing if already stored."""
        p = _local_file(path)
        digest, size = hash_file(p, self.chunk_size)
        key = self._key(digest)
        if self._intact(key, digest, size):
            return ArtifactInfo(
                digest=digest, size=size, uri=f"s3://{self.bucket}/{key}", created=False
            )
        # Upload through the hashing path all the same: if the file changes between the two
        # passes, what is stored is still named by what was uploaded.
        return super().put_file(p)

    def _publish(self, tmp_key: str, key: str, size: int, digest: str) -> bool:
        if self._intact(key, digest, size):
            return False
        # Missing, or not known whole (a wrong size, or no digest of ours on it): copy ours
        # into place, with the digest it was checked against.
        source = {"Bucket": self.bucket, "Key": tmp_key}
        extra = {
            "Metadata": {_SHA256_META: digest.removeprefix("sha256:")},
            "MetadataDirective": "REPLACE",
        }
        with self._errors("copy"):
            if size < self._copy_threshold:
                self._client.copy_object(Bucket=self.bucket, Key=key, CopySource=source, **extra)
            else:
                self._client.copy(
                    source, self.bucket, key, ExtraArgs=extra, Config=self._copy_config(size)
                )
        return True

    def _copy_config(self, size: int) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self._copy_threshold,
            # Server-side parts cost a request each and no memory: at most ~1000 of them.
            multipart_chunksize=max(self._chunksize, -(-size // 1000)),
            max_concurrency=self._max_concurrency,
            preferred_transfer_client="classic",
        )


# --------------------------------------------------------------------------- by URI

ArtifactStoreFactory = Callable[..., ArtifactStore]


def _check_options(scheme: str, options: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown {scheme} artifact store options {unknown}; accepted: {sorted(allowed)}"
        )


_FILE_OPTIONS = frozenset({"chunk_size", "fsync"})
_S3_OPTIONS = frozenset(
    {
        "endpoint_url",
        "region_name",
        "client_config",
        "profile_name",
        "multipart_threshold",
        "multipart_chunksize",
        "max_concurrency",
        "copy_threshold",
        "chunk_size",
        "client",
    }
)


def _open_file(uri: str, **options: Any) -> ArtifactStore:
    _check_options("file", options, _FILE_OPTIONS)
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise ConfigError(
            f"bad file URI {uri!r}: use file:///absolute/folder, or a plain path for a relative one"
        )
    return FileArtifactStore(url2pathname(parts.path), **options)


def _open_s3(uri: str, **options: Any) -> ArtifactStore:
    _check_options("s3", options, _S3_OPTIONS)
    parts = urlsplit(uri)
    if not parts.netloc or parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigError(
            f"bad S3 URI {redact(uri)!r}: use s3://bucket or s3://bucket/prefix (endpoint, "
            "region and credentials are options or boto3 settings, not part of the URI)"
        )
    return S3ArtifactStore(parts.netloc, parts.path, **options)


_FACTORIES: dict[str, ArtifactStoreFactory] = {"file": _open_file, "s3": _open_s3}
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def register_artifact_store(scheme: str, factory: ArtifactStoreFactory) -> None:
    """Make :func:`open_artifact_store` open ``scheme://...`` URIs with
    ``factory(uri, **options)``."""
    _FACTORIES[scheme.lower()] = factory


def supported_artifact_schemes() -> list[str]:
    """The URI schemes :func:`open_artifact_store` knows, plugins included."""
    _load_plugins()
    return sorted(_FACTORIES)


def _load_plugins() -> None:
    for ep in entry_points(group="lineagehub.artifact_stores"):
        if ep.name not in _FACTORIES:
            _FACTORIES[ep.name] = ep.load()


def open_artifact_store(uri: str | os.PathLike[str], **options: Any) -> ArtifactStore:
    """Open the artifact store at ``uri``; the scheme picks the implementation.

    ``file:///absolute/folder`` or a plain path (absolute, or relative to the working
    directory; options ``chunk_size``, ``fsync``); ``s3://bucket/prefix`` (options
    ``endpoint_url``, ``region_name``, ``client_config``, ``profile_name``,
    ``multipart_threshold``, ``multipart_chunksize``, ``max_concurrency``,
    ``copy_threshold``, ``chunk_size``, ``client``: see :class:`S3ArtifactStore`). An
    unknown scheme or option raises :class:`ConfigError` listing the supported ones.
    """
    if isinstance(uri, os.PathLike):
        return FileArtifactStore(uri, **_file_options(options))
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigError(
            f"not an artifact store URI: {uri!r}; expected a path or one of the schemes "
            f"{supported_artifact_schemes()}"
        )
    match = _SCHEME.match(uri)
    # No scheme, or a one-letter one (a Windows drive, C:\...): a plain path.
    if match is None or len(match.group(1)) == 1:
        return FileArtifactStore(uri, **_file_options(options))
    scheme = match.group(1).lower()
    if scheme not in _FACTORIES:
        _load_plugins()
    factory = _FACTORIES.get(scheme)
    if factory is None:
        raise ConfigError(
            f"unsupported artifact store URI scheme {scheme!r} in {redact(uri)!r}; supported "
            "schemes: " + ", ".join(supported_artifact_schemes()) + " (or a plain path)"
        )
    return factory(uri, **options)


def _file_options(options: dict[str, Any]) -> dict[str, Any]:
    _check_options("file", options, _FILE_OPTIONS)
    return options


__all__ = [
    "CHUNK_SIZE",
    "ArtifactInfo",
    "ArtifactStore",
    "ArtifactStoreFactory",
    "FileArtifactStore",
    "S3ArtifactStore",
    "absent_artifact",
    "digest_bytes",
    "digest_file",
    "hash_file",
    "open_artifact_store",
    "passed_on",
    "register_artifact_store",
    "supported_artifact_schemes",
    "validate_digest",
]
