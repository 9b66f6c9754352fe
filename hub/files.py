"""Writing files whole or not at all."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from lineagehub.graph import ValidationError


def write_atomic(
    path: str | os.PathLike[str], write: Callable[[IO[bytes]], object], field: str = "path"
) -> None:
    """Write a file whole or not at all: ``write(f)`` fills a temporary file beside ``path``,
    which is synced and renamed over it, so a failure (or Ctrl-C) never leaves half a file.
    A folder that cannot be written is a :class:`ValidationError` naming ``field``, as is a
    path that names a folder. A symbolic link is written through (the file it names is
    replaced; the link stays); what is not a regular file (``/dev/stdout``, a named pipe, a
    device) is written to as it is, never replaced by a file."""
    try:
        mode = os.stat(path).st_mode  # through every link, /proc's too (/dev/stdout: a pipe)
    except FileNotFoundError:
        mode = None
    except OSError as e:
        raise ValidationError(f"cannot write {path}: {e.strerror or e}", field=field) from None
    if mode is not None and stat.S_ISDIR(mode):
        raise ValidationError(f"cannot write {path}: it is a folder", field=field)
    if mode is not None and (not stat.S_ISREG(mode) or _descriptor(path)):
        # a pipe, a device, or an open descriptor (/dev/stdout redirected to a file): written
        # into where the shell left it (appended: `>>` keeps what was there), never replaced
        with open(path, "ab") as stream:
            write(stream)
        return
    target = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as e:
        raise ValidationError(f"cannot write {path}: {e.strerror or e}", field=field) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; these are ordinary files
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _descriptor(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an open file descriptor (``/dev/stdout``, ``/dev/fd/3``,
    ``/proc/self/fd/1``) rather than a file of its own."""
    system = ("/dev/", "/proc/")  # a file kept there (/dev/shm) resolves to itself
    given = os.path.abspath(path)
    return given.startswith(system) and not os.path.realpath(given).startswith(system)


def writable(path: str | os.PathLike[str], field: str = "path") -> None:
    """What :func:`write_atomic` would refuse, told before the work that fills the file: a
    folder, or a folder to write in that is not there. (A folder that cannot be written is
    found when writing.)"""
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise ValidationError(f"cannot write {path}: it is a folder", field=field)
    if not target.parent.is_dir():
        raise ValidationError(
            f"cannot write {path}: there is no folder {target.parent}", field=field
        )
