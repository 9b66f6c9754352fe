"""What the tracking SDK records on its own when a run starts: code, environment, context.

Three functions, each fast (a few milliseconds to tens of milliseconds) and none of them
ever failing the run: a capture problem becomes ``None`` (or a reduced result) and a log
record on the ``lineagehub.ingest.capture`` logger, never an exception::

    code = capture_code()            # CodeState | None: the git state of the code
    env = capture_environment()      # EnvironmentState: python, platform, packages
    ctx = capture_context(code=code) # RunContext: user, host, entry point, argv, notebook

Code (:func:`capture_code`) runs the ``git`` program (no GitPython), with a deadline and
``GIT_OPTIONAL_LOCKS=0`` so that a capture never takes the index lock from a ``git`` the
user runs at the same time. Its result names the commit as a
:class:`~lineagehub.vocabulary.CodeCommit`:

- ``repo``: the URL of the remote ``origin`` (else the first remote) without credentials,
  else a ``file://`` URI of the work tree's top-level folder;
- ``sha``: ``HEAD``; ``branch``: the checked-out branch, ``None`` when detached;
- ``dirty``: tracked files differ from ``HEAD`` (staged or not) *or* there are untracked,
  non-ignored files: either can change what the run did;
- ``diff_digest``: ``sha256`` of :attr:`CodeState.diff`, the uncommitted changes as one
  patch: ``git diff HEAD --binary`` (options pinned, so a user's diff configuration does
  not change the digest), then every untracked file as a "new file" patch in ``git``'s own
  format, in path order; ``git apply`` applies it on a checkout of ``HEAD``. It is capped
  (:data:`DEFAULT_MAX_DIFF_BYTES`); what did not fit is named in ``# lineagehub:`` comment
  lines, which ``git apply`` skips.

A repository without commits yet gives ``None`` (logged at debug): there is no commit to
name, and a made-up one would claim a version that does not exist.

Environment (:func:`capture_environment`) is cached per process (packages do not change
during a run; ``refresh=True`` reads them again). Its ``platform`` is part of the
:class:`~lineagehub.vocabulary.Environment` node's identity, so it holds only what decides
which binaries run and stays put across reboots and kernel updates:
``<sys.platform>-<machine>`` plus the C library on Linux (``linux-x86_64-glibc2.36``,
``linux-aarch64-musl``), the major macOS version (``darwin-arm64-macos14``) or the Windows
release (``win32-AMD64-windows11``). ``python`` is the version, with the implementation
appended when it is not CPython (``3.10.14-pypy``) and ``+freethreading`` for
free-threaded builds.

Context (:func:`capture_context`): user, host, entry point and ``sys.argv`` with the
values of secret-looking options redacted (:func:`redact_argv`). Inside a Jupyter kernel
the notebook's path is found, best effort, from (in this order) VS Code's
``__vsc_ipynb_file__``, ipykernel's ``__session__`` (Jupyter Server 2+ / JupyterLab 4 /
Notebook 7 start kernels with ``JPY_SESSION_NAME``, which ipykernel copies there) and the
``JPY_SESSION_NAME`` variable itself; the snapshot is the ``.ipynb`` as last saved on disk.
Not supported: asking a Jupyter server's REST API (it needs the server's token), Google
Colab and Databricks notebooks (they are not files). IPython is never imported here: a
kernel is only recognised when ``IPython`` is already in ``sys.modules``.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import importlib
import importlib.metadata
import logging
import os
import platform
import re
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from lineagehub.vocabulary import (
    Agent,
    CodeCommit,
    CodeState,
    Environment,
    EnvironmentState,
    packages_digest,
)

__all__ = [
    "DEFAULT_GIT_TIMEOUT",
    "DEFAULT_MAX_DIFF_BYTES",
    "DEFAULT_MAX_NOTEBOOK_BYTES",
    "CodeState",
    "EnvironmentState",
    "RunContext",
    "capture_code",
    "capture_context",
    "capture_environment",
    "redact_argv",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_DIFF_BYTES = 10 * 1024 * 1024
"""Cap on :attr:`CodeState.diff`: a run start must not read a stray data set into memory."""
DEFAULT_MAX_NOTEBOOK_BYTES = 10 * 1024 * 1024
"""Cap on :attr:`RunContext.notebook_snapshot` (notebooks with many plots grow large)."""
DEFAULT_GIT_TIMEOUT = 3.0
"""Seconds for the whole code capture; past it the code state is ``None`` (or, while
reading untracked files, a diff marked as truncated)."""

REDACTED = "***"

# --- code ----------------------------------------------------------------------------------


class _GitMissing(Exception):
    pass


class _GitTimeout(Exception):
    pass


class _GitFailed(Exception):
    def __init__(self, returncode: int, stderr: bytes) -> None:
        # Only the first line: git's messages are short, and never contain remote URLs for
        # the commands run here.
        first = stderr.decode("utf-8", "replace").strip().splitlines()[:1]
        super().__init__(f"exit {returncode}: {first[0] if first else ''}")
        self.returncode = returncode


# Pinned so that the diff, and so the commit's id, does not depend on the user's git
# configuration (prefixes, rename detection, context size, file order, quoting...).
_GIT_CONFIG = (
    "-c",
    "core.quotePath=true",
    "-c",
    "diff.noprefix=false",
    "-c",
    "diff.mnemonicPrefix=false",
    "-c",
    "diff.suppressBlankEmpty=false",
    "-c",
    f"diff.orderFile={os.devnull}",
    "-c",
    "color.ui=false",
)
_DIFF_OPTIONS = (
    "--binary",
    # Full object names: abbreviations grow with the repository's object count, and the
    # same change must keep the same digest after a fetch.
    "--full-index",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--no-renames",
    "--no-relative",
    "--src-prefix=a/",
    "--dst-prefix=b/",
    "-U3",
    "--inter-hunk-context=0",
    "--diff-algorithm=myers",
    "--indent-heuristic",
    "--ignore-submodules=none",
    "--submodule=short",
)


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_OPTIONAL_LOCKS"] = "0"  # never take the index lock a concurrent git may need
    env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password
    env["LC_ALL"] = "C"  # stable messages in the logs
    return env


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _GitTimeout()
    return left


def _popen(args: Sequence[str], cwd: Path, stderr: int) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            ["git", *_GIT_CONFIG, *args],
            cwd=cwd,
            env=_git_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            # Its own process group, so that a timeout kills git's children too (a filter,
            # an ssh): a surviving child would keep the pipes open and the run waiting.
            start_new_session=os.name == "posix",
        )
    except FileNotFoundError as e:
        # Either git is not on PATH or cwd vanished; callers check cwd first.
        raise _GitMissing() from e


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except OSError:
        pass  # already gone


def _reap(proc: subprocess.Popen[bytes]) -> int | None:
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    try:
        return proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        return None


def _git(args: Sequence[str], cwd: Path, deadline: float, ok_codes: Iterable[int] = (0,)) -> bytes:
    """Run ``git args`` in ``cwd``; its stdout. Raises _GitMissing, _GitTimeout, _GitFailed."""
    timeout = _remaining(deadline)
    proc = _popen(args, cwd, subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as e:
        # Not communicate() again, as subprocess.run does: it would wait for the pipes.
        _kill(proc)
        _reap(proc)
        raise _GitTimeout() from e
    if proc.returncode not in ok_codes:
        raise _GitFailed(proc.returncode, err)
    return out


def _git_capped(args: Sequence[str], cwd: Path, deadline: float, cap: int) -> tuple[bytes, bool]:
    """Run ``git args`` and read at most ``cap`` bytes of its stdout: (output, truncated).
    The process is killed when the cap or the deadline is reached, so a huge diff costs
    neither the memory nor the time of producing all of it."""
    timeout = _remaining(deadline)
    # DEVNULL, not a pipe: git may warn once per file (line endings) and a full, unread
    # stderr pipe would block it.
    proc = _popen(args, cwd, subprocess.DEVNULL)
    timer = threading.Timer(timeout, _kill, (proc,))
    timer.daemon = True
    timer.start()
    try:
        assert proc.stdout is not None
        out = proc.stdout.read(cap + 1)
        truncated = len(out) > cap
        if truncated:
            _kill(proc)
    finally:
        timer.cancel()
        returncode = _reap(proc)
    if truncated:
        return out[:cap], True
    if returncode != 0:
        if time.monotonic() >= deadline:  # killed by the timer
            raise _GitTimeout()
        raise _GitFailed(-1 if returncode is None else returncode, b"")
    return out, False


@dataclass
class _Status:
    sha: str | None
    branch: str | None
    changed: bool
    untracked: list[bytes]


def _parse_status(out: bytes) -> _Status:
    """Parse ``git status --porcelain=v2 --branch -z``."""
    sha: str | None = None
    branch: str | None = None
    changed = False
    untracked: list[bytes] = []
    fields = out.split(b"\0")
    i = 0
    while i < len(fields):
        entry = fields[i]
        i += 1
        if not entry:
            continue
        if entry.startswith(b"# branch.oid "):
            oid = entry[len(b"# branch.oid ") :].decode("ascii", "replace")
            sha = None if oid == "(initial)" else oid
        elif entry.startswith(b"# branch.head "):
            head = entry[len(b"# branch.head ") :].decode("utf-8", "replace")
            branch = None if head == "(detached)" else head
        elif entry.startswith(b"#"):
            continue
        elif entry.startswith(b"? "):
            untracked.append(entry[2:])
        elif entry.startswith(b"! "):
            continue  # ignored files (only listed when asked for; not asked)
        else:
            changed = True
            if entry.startswith(b"2 "):
                i += 1  # a rename's original path follows in its own field
    return _Status(sha, branch, changed, untracked)


def _remote_url(top: Path, deadline: float) -> str | None:
    """The URL of remote ``origin``, else of the first remote in the configuration."""
    # Exit 1 means "no such key": no remote at all.
    out = _git(["config", "-z", "--get-regexp", r"^remote\..*\.url$"], top, deadline, (0, 1))
    remotes: list[tuple[str, str]] = []
    for record in out.split(b"\0"):
        key, _, value = record.decode("utf-8", "replace").partition("\n")
        if key.startswith("remote.") and key.endswith(".url") and value.strip():
            remotes.append((key[len("remote.") : -len(".url")], value.strip()))
    for name, url in remotes:
        if name == "origin":
            return url
    return remotes[0][1] if remotes else None


_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def _make_commit(
    remote: str | None, top: Path, sha: str, branch: str | None, dirty: bool, digest: str | None
) -> CodeCommit:
    """The commit node; the remote as its repo when the vocabulary accepts it, else the
    top-level folder. Validation errors are not logged with their text: it may quote the
    URL."""
    fields: dict[str, Any] = {"sha": sha, "branch": branch, "dirty": dirty, "diff_digest": digest}
    if remote is not None:
        candidate = remote
        if "://" not in remote and not re.match(r"^[^/\\]*@?[^/\\]+:", remote):
            # A remote that is a local path ("../upstream.git"): as a path, from the top level.
            candidate = str((top / remote).resolve())
        try:
            return CodeCommit(repo=candidate, **fields)
        except Exception:
            m = _SCHEME_RE.match(remote)
            logger.debug(
                "code capture: remote URL (%s) not usable as the repository id; using the "
                "top-level folder",
                f"scheme {m.group(1)}" if m else "no scheme",
            )
    try:
        return CodeCommit(repo=top.as_uri(), **fields)
    except Exception:
        # The branch name is the only free-form field left: drop it rather than the commit.
        fields["branch"] = None
        return CodeCommit(repo=top.as_uri(), **fields)


# --- untracked files as patches, byte for byte as `git add -N` + `git diff --binary` ------

_C_ESCAPES = {
    0x07: b"\\a",
    0x08: b"\\b",
    0x09: b"\\t",
    0x0A: b"\\n",
    0x0B: b"\\v",
    0x0C: b"\\f",
    0x0D: b"\\r",
    0x22: b'\\"',
    0x5C: b"\\\\",
}


def _quote_path(prefixed: bytes) -> bytes:
    """git's quote_c_style with core.quotePath on: quoted when any byte is a control
    character, a quote, a backslash or non-ASCII."""
    if not any(b < 0x20 or b >= 0x7F or b in (0x22, 0x5C) for b in prefixed):
        return prefixed
    out = bytearray(b'"')
    for b in prefixed:
        if b in _C_ESCAPES:
            out += _C_ESCAPES[b]
        elif b < 0x20 or b >= 0x7F:
            out += b"\\%03o" % b
        else:
            out.append(b)
    out += b'"'
    return bytes(out)


def _label(name: bytes) -> bytes:
    # git appends a tab to ---/+++ names that contain a space, so that patch(1) reads them.
    return name + (b"\t" if b" " in name else b"")


def _binary_hunk(data: bytes) -> bytes:
    """A ``literal`` hunk of a git binary patch: zlib (level 1, as git) in base85 lines of
    at most 52 bytes, each led by its length (A-Z = 1-26, a-z = 27-52)."""
    packed = zlib.compress(data, 1)
    lines = [b"literal %d\n" % len(data)]
    for start in range(0, len(packed), 52):
        chunk = packed[start : start + 52]
        n = len(chunk)
        length = bytes([ord("A") + n - 1]) if n <= 26 else bytes([ord("a") + n - 27])
        lines.append(length + base64.b85encode(chunk, pad=True) + b"\n")
    return b"".join(lines) + b"\n"


def _new_file_patch(path: bytes, mode: str, data: bytes, hash_name: str) -> bytes:
    """The patch git shows for a new file (``git add -N`` then ``git diff HEAD --binary``)."""
    a = _quote_path(b"a/" + path)
    b = _quote_path(b"b/" + path)
    digest = hashlib.new(hash_name, b"blob %d\0" % len(data) + data).hexdigest()
    null = "0" * len(digest)
    out = [
        b"diff --git " + a + b" " + b + b"\n",
        f"new file mode {mode}\n".encode(),
        f"index {null}..{digest}\n".encode(),
    ]
    if not data:
        return b"".join(out)
    if b"\0" in data[:8000]:  # git's test for binary content
        out.append(b"GIT binary patch\n")
        out.append(_binary_hunk(data))
        out.append(_binary_hunk(b""))
        return b"".join(out)
    lines = data.split(b"\n")
    no_eol = lines[-1] != b""
    if not no_eol:
        lines.pop()
    count = len(lines)
    out.append(b"--- /dev/null\n+++ " + _label(b) + b"\n")
    out.append(b"@@ -0,0 +1 @@\n" if count == 1 else b"@@ -0,0 +1,%d @@\n" % count)
    out.extend(b"+" + line + b"\n" for line in lines)
    if no_eol:
        out.append(b"\\ No newline at end of file\n")
    return b"".join(out)


def _untracked_patches(
    top: Path, paths: list[bytes], budget: int, deadline: float, hash_name: str
) -> tuple[list[bytes], list[bytes], bool]:
    """(patches, notes, truncated) for the untracked files: a file whose patch would not fit
    in ``budget`` bytes is left out and named in a note, and so is everything once the
    deadline passed."""
    patches: list[bytes] = []
    notes: list[bytes] = []
    truncated = False
    for rel in paths:
        shown = _quote_path(rel)
        if time.monotonic() >= deadline:
            notes.append(
                b"# lineagehub: time limit reached; untracked file not included: %s\n" % shown
            )
            truncated = True
            continue
        full = top / os.fsdecode(rel)
        try:
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                mode, data = "120000", os.fsencode(os.readlink(full))
            elif stat.S_ISREG(st.st_mode):
                if st.st_size > budget:  # checked before reading: it may be gigabytes
                    notes.append(
                        b"# lineagehub: untracked file not included (%d bytes): %s\n"
                        % (st.st_size, shown)
                    )
                    truncated = True
                    continue
                mode = "100755" if st.st_mode & stat.S_IXUSR else "100644"
                with open(full, "rb") as f:
                    data = f.read(budget + 1)
            else:
                # A nested repository ("sub/") or a socket: nothing a patch can carry.
                notes.append(b"# lineagehub: untracked, not a file: %s\n" % shown)
                continue
        except OSError as e:
            notes.append(
                b"# lineagehub: untracked file unreadable (%s): %s\n"
                % (e.__class__.__name__.encode(), shown)
            )
            truncated = True
            continue
        patch = _new_file_patch(rel.rstrip(b"/"), mode, data, hash_name)
        if len(patch) > budget:
            notes.append(
                b"# lineagehub: untracked file not included (%d bytes): %s\n" % (len(data), shown)
            )
            truncated = True
            continue
        budget -= len(patch)
        patches.append(patch)
    return patches, notes, truncated


def _default_code_dir() -> Path:
    """The entry point script's folder, else the notebook's, else the working directory."""
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if isinstance(main_file, str) and main_file:
        return Path(os.path.abspath(main_file)).parent
    notebook = _notebook_path()
    if notebook is not None:
        return notebook.parent
    return Path.cwd()


def capture_code(
    path: str | os.PathLike[str] | None = None,
    *,
    max_diff_bytes: int = DEFAULT_MAX_DIFF_BYTES,
    timeout: float = DEFAULT_GIT_TIMEOUT,
) -> CodeState | None:
    """The git state of the repository containing ``path`` (a folder or a file; default:
    the entry point script's folder, else the notebook's, else the working directory).

    ``None`` outside a git work tree, in a repository without commits, when ``git`` is not
    installed (all logged at debug), and when git takes longer than ``timeout`` seconds or
    fails otherwise (logged as a warning: the user expected their code to be recorded).
    Never raises for such problems. See the module docstring for what is recorded.
    """
    try:
        return _capture_code(path, max_diff_bytes, timeout)
    except Exception:  # a bug here must not fail the user's run
        logger.warning("code capture failed; the run records no code state", exc_info=True)
        return None


def _capture_code(
    path: str | os.PathLike[str] | None, max_diff_bytes: int, timeout: float
) -> CodeState | None:
    deadline = time.monotonic() + timeout
    start = Path(path) if path is not None else _default_code_dir()
    start = Path(os.path.abspath(start))
    if not start.exists():
        logger.debug("code capture: %s does not exist; no code state", start)
        return None
    if not start.is_dir():
        start = start.parent
    try:
        out = _git(["rev-parse", "--show-toplevel"], start, deadline)
        top_text = os.fsdecode(out.rstrip(b"\r\n"))
        if not top_text:  # inside a .git folder: no work tree
            logger.debug("code capture: %s is not inside a git work tree", start)
            return None
        top = Path(top_text)
        status = _parse_status(
            _git(
                [
                    "status",
                    "--porcelain=v2",
                    "--branch",
                    "-z",
                    "--untracked-files=all",
                    "--ignore-submodules=none",
                    "--no-renames",
                ],
                top,
                deadline,
            )
        )
        if status.sha is None:
            logger.debug("code capture: the repository at %s has no commits yet", top)
            return None
        remote = _remote_url(top, deadline)
        dirty = status.changed or bool(status.untracked)
        diff: bytes | None = None
        truncated = False
        if dirty:
            diff, truncated = _make_diff(top, status, max_diff_bytes, deadline)
    except _GitMissing:
        logger.debug("code capture: no git program on PATH; no code state")
        return None
    except _GitTimeout:
        logger.warning(
            "code capture: git took longer than %.1f s in %s; the run records no code state",
            timeout,
            start,
        )
        return None
    except _GitFailed as e:
        if e.returncode == 128:  # "not a git repository", "dubious ownership", ...
            logger.debug("code capture: %s is not usable as a git work tree (%s)", start, e)
        else:
            logger.warning("code capture: git failed in %s (%s); no code state", start, e)
        return None
    digest = "sha256:" + hashlib.sha256(diff).hexdigest() if diff is not None else None
    commit = _make_commit(remote, top, status.sha, status.branch, dirty, digest)
    return CodeState(commit=commit, diff=diff, toplevel=top, diff_truncated=truncated)


def _make_diff(top: Path, status: _Status, cap: int, deadline: float) -> tuple[bytes | None, bool]:
    """The uncommitted changes as one patch (tracked, then untracked), at most ``cap`` bytes
    plus notes; ``(None, False)`` when git could not make the diff in time."""
    hash_name = "sha256" if status.sha is not None and len(status.sha) == 64 else "sha1"
    parts: list[bytes] = []
    notes: list[bytes] = []
    truncated = False
    if status.changed:
        try:
            tracked, truncated = _git_capped(["diff", *_DIFF_OPTIONS, "HEAD"], top, deadline, cap)
        except (_GitFailed, _GitTimeout) as e:
            # The tree is dirty but what changed is unknown: the commit's id says "+dirty".
            logger.warning("code capture: git diff failed in %s (%s); diff not recorded", top, e)
            return None, False
        parts.append(tracked)
        if truncated:
            notes.append(b"\n# lineagehub: diff of tracked files truncated at %d bytes\n" % cap)
    if status.untracked:
        if truncated:
            notes.append(b"# lineagehub: %d untracked files not included\n" % len(status.untracked))
        else:
            budget = cap - sum(len(p) for p in parts)
            patches, more_notes, untracked_cut = _untracked_patches(
                top, status.untracked, budget, deadline, hash_name
            )
            parts.extend(patches)
            notes.extend(more_notes)
            truncated = truncated or untracked_cut
    return b"".join(parts + notes), truncated


# --- environment ---------------------------------------------------------------------------


_env_lock = threading.Lock()
_env_cache: EnvironmentState | None = None


def _normalize(name: str) -> str:
    # As pip (PEP 503) and vocabulary.packages_digest: Scikit_Learn == scikit-learn.
    return re.sub(r"[-_.]+", "-", name).lower()


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _usable(text: str, limit: int) -> bool:
    # The Environment model's limits for package names (256) and versions (128).
    return bool(text) and len(text) <= limit and not _CONTROL.search(text)


def _installed_packages() -> dict[str, str]:
    """Normalized name -> version of every installed distribution; for a name installed
    twice (two sys.path entries) the first wins, as it is the one imports find."""
    packages: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        try:
            name, version = dist.metadata["Name"], dist.version
        except Exception:  # a broken .dist-info must not cost the whole environment
            continue
        if not isinstance(name, str) or not isinstance(version, str):
            continue
        name, version = _normalize(name.strip()), version.strip()
        if not _usable(name, 256) or not _usable(version, 128):
            logger.debug("environment capture: skipped a package with an unusable name/version")
            continue
        packages.setdefault(name, version)
    return packages


def _platform_string() -> str:
    """``<sys.platform>-<machine>[-<libc | OS release>]``; see the module docstring for why
    no kernel release or build number is in it."""
    parts = [sys.platform, platform.machine() or "unknown"]
    try:
        if sys.platform.startswith("linux"):
            libc, version = platform.libc_ver()
            if libc == "glibc" and version:
                parts.append(f"glibc{version}")
            elif any(Path("/lib").glob("ld-musl-*")):
                parts.append("musl")
        elif sys.platform == "darwin":
            mac = platform.mac_ver()[0]
            if mac:
                parts.append("macos" + mac.split(".")[0])
        elif sys.platform == "win32":
            release = platform.release()
            if release:
                parts.append("windows" + release)
    except Exception:  # OS probing is best effort; the base string is still stable
        logger.debug("environment capture: could not probe the OS", exc_info=True)
    return re.sub(r"[^A-Za-z0-9._+\-]", "_", "-".join(parts))


def _python_string() -> str:
    version = platform.python_version()
    impl = sys.implementation.name
    if impl != "cpython":
        version += f"-{impl}"
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        version += "+freethreading"
    return version


def capture_environment(*, refresh: bool = False) -> EnvironmentState:
    """Python version, platform and installed packages (cached per process: the first call
    reads the package metadata, later calls return the same object; ``refresh=True`` reads
    it again, e.g. after a ``pip install`` in a notebook)."""
    global _env_cache
    with _env_lock:
        if _env_cache is None or refresh:
            if refresh:
                importlib.invalidate_caches()
            _env_cache = _capture_environment()
        return _env_cache


def _capture_environment() -> EnvironmentState:
    try:
        packages = _installed_packages()
    except Exception:
        logger.warning("environment capture: could not list installed packages", exc_info=True)
        packages = {}
    text = "\n".join(sorted(f"{name}=={version}" for name, version in packages.items())).encode()
    digest = packages_digest(packages)
    if digest != "sha256:" + hashlib.sha256(text).hexdigest():
        # Only if vocabulary.packages_digest changes its text: then the artifact would not
        # be found under the digest. Loud, but not fatal for the run.
        logger.error("environment capture: packages text does not hash to packages_digest")
    python, plat = _python_string(), _platform_string()
    try:
        env = Environment(python=python, platform=plat, packages_digest=digest, packages=packages)
    except Exception:
        # Our own values failed validation (an unforeseen version string): keep the identity.
        logger.warning("environment capture: packages not recorded", exc_info=True)
        env = Environment(python=python, platform=plat, packages_digest=digest)
    return EnvironmentState(environment=env, packages_text=text)


# --- context -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunContext:
    """Who ran what, where. ``entry_point``: a script path (relative to the repository's
    top level when it is inside one, else absolute), a module name (``python -m``), a
    notebook path, or one of ``<interactive>`` (a REPL or terminal IPython), ``<command>``
    (``python -c``), ``<stdin>`` (``python -``), ``<notebook>`` (a kernel whose notebook
    was not found). ``argv`` is ``sys.argv`` with secret values replaced by ``***``."""

    user: str | None
    host: str | None
    entry_point: str
    argv: tuple[str, ...]
    notebook_path: Path | None = None
    notebook_snapshot: bytes | None = None

    @property
    def agent(self) -> Agent | None:
        """The user as a PROV agent (for ``ASSOCIATED_WITH`` role launcher), if known."""
        if self.user is None:
            return None
        try:
            return Agent(name=self.user)
        except Exception:
            return None


def _user() -> str | None:
    try:
        # LOGNAME, USER, LNAME, USERNAME, then the password database.
        return getpass.getuser() or None
    except Exception:  # a container running as a uid with no passwd entry
        getuid = getattr(os, "getuid", None)
        return f"uid:{getuid()}" if getuid is not None else None


def _host() -> str | None:
    try:
        # Not getfqdn(): it asks DNS, which can take seconds.
        return socket.gethostname() or None
    except Exception:
        return None


# Option names whose values are secrets: passwords, tokens, keys (not "key-file" or "keyword").
_SECRET_NAME = re.compile(
    r"passw|pwd|secret|token|credential|auth|signature|cookie|session"
    r"|(^|[-_.])(api|access|private|secret|signing|encryption)?[-_.]?key$",
    re.I,
)
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with secret values replaced by ``***``: the value of an option whose name
    looks secret (``--password=x``, ``--api-key x``, ``-token x``), of a ``name=value``
    argument with such a name (``db.password=x``, ``HF_TOKEN=x``), and user and password in
    URLs (``https://***@host/``). Over-redacting a harmless value is the safe mistake."""
    out: list[str] = []
    redact_next = False
    for arg in argv:
        if redact_next:
            redact_next = False
            if not arg.startswith("--"):
                out.append(REDACTED)
                continue
        name, eq, _ = arg.partition("=")
        bare = name.lstrip("-")
        if eq and bare and _SECRET_NAME.search(bare):
            out.append(f"{name}={REDACTED}")
            continue
        if arg.startswith("-") and not eq and bare and _SECRET_NAME.search(bare):
            redact_next = True
        out.append(_URL_USERINFO.sub(REDACTED + "@", arg))
    return out


def _ipython_shell() -> Any:
    """The running IPython shell, if IPython is already imported (never imported here)."""
    ipython: ModuleType | None = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    if get_ipython is None:
        return None
    try:
        return get_ipython()
    except Exception:
        return None


def _notebook_path() -> Path | None:
    """The running notebook's file, best effort (see the module docstring)."""
    shell = _ipython_shell()
    if shell is None or getattr(shell, "kernel", None) is None:
        return None
    namespaces: list[dict[str, Any]] = []
    main = sys.modules.get("__main__")
    if main is not None:
        namespaces.append(vars(main))
    user_ns = getattr(shell, "user_ns", None)
    if isinstance(user_ns, dict):
        namespaces.append(user_ns)
    candidates = [ns.get(key) for key in ("__vsc_ipynb_file__", "__session__") for ns in namespaces]
    # Read directly too: ipykernels before 6.20 do not copy it into __session__. A runtime
    # fact set by Jupyter Server, not a LineageHub setting (those are in config.py).
    candidates.append(os.environ.get("JPY_SESSION_NAME"))
    for candidate in candidates:
        if not isinstance(candidate, str) or not candidate.endswith(".ipynb"):
            continue
        path = Path(candidate).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
            if not path.is_file():
                path = Path.cwd() / path.name  # old servers: relative to the server's root
        if path.is_file():
            return Path(os.path.abspath(path))
    return None


def _find_toplevel(start: Path) -> Path | None:
    """The nearest folder holding ``.git`` (a folder, or a file for worktrees and
    submodules): the repository's top level without running git."""
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return None


def _relative_to_top(path: Path, top: Path | None) -> str:
    real = Path(os.path.realpath(path))
    if top is None:
        top = _find_toplevel(real.parent)
    if top is not None:
        try:
            return real.relative_to(os.path.realpath(top)).as_posix()
        except ValueError:
            pass
    return str(real)


def _entry_point(notebook: Path | None, in_kernel: bool, top: Path | None) -> str:
    if notebook is not None:
        return _relative_to_top(notebook, top)
    if in_kernel:
        return "<notebook>"
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    spec_name = getattr(spec, "name", None)
    if isinstance(spec_name, str) and spec_name and spec_name != "__main__":
        # python -m pkg.mod; for python -m pkg the spec is pkg.__main__.
        return spec_name.removesuffix(".__main__")
    main_file = getattr(main, "__file__", None)
    if isinstance(main_file, str) and main_file:
        return _relative_to_top(Path(os.path.abspath(main_file)), top)
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 == "-c":
        return "<command>"
    if argv0 == "-":
        return "<stdin>"
    return "<interactive>"


def _read_capped(path: Path, cap: int) -> bytes | None:
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except OSError as e:
        logger.warning("context capture: notebook %s unreadable (%s)", path, e)
        return None
    if len(data) > cap:
        logger.warning("context capture: notebook %s is over %d bytes; no snapshot", path, cap)
        return None
    return data


def capture_context(
    *, code: CodeState | None = None, max_notebook_bytes: int = DEFAULT_MAX_NOTEBOOK_BYTES
) -> RunContext:
    """User, host, entry point and command line of this process; in a Jupyter kernel also
    the notebook's path and its content as saved on disk. ``code`` (from
    :func:`capture_code`) gives the repository's top level for a relative entry point;
    without it the top level is found by looking for ``.git`` upward from the script."""
    user, host = _user(), _host()
    argv: tuple[str, ...] = ()
    entry = "<unknown>"
    notebook: Path | None = None
    snapshot: bytes | None = None
    try:
        argv = tuple(redact_argv([str(a) for a in sys.argv]))
        shell = _ipython_shell()
        in_kernel = shell is not None and getattr(shell, "kernel", None) is not None
        notebook = _notebook_path() if in_kernel else None
        entry = _entry_point(notebook, in_kernel, code.toplevel if code else None)
        if notebook is not None:
            snapshot = _read_capped(notebook, max_notebook_bytes)
    except Exception:  # never fail a run over its context
        logger.warning("context capture failed in part", exc_info=True)
    return RunContext(
        user=user,
        host=host,
        entry_point=entry,
        argv=argv,
        notebook_path=notebook,
        notebook_snapshot=snapshot,
    )
