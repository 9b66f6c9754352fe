"""Copying an SQLite WAL back into its database off the writers' time.

In WAL mode every commit appends the pages it changed to the ``-wal`` file; a *checkpoint*
copies them back into the database file, after an ``fdatasync`` of the WAL so that nothing is
copied over that is not durable first. SQLite runs it on the committing connection once the
WAL passes ``wal_autocheckpoint`` pages, so one commit in every few hundred waited for the
flush of everything written since the last (about 40 ms for 10,000 pages on the benchmark
machine: a tenth of a registration workload's time, and a stall in a server's latency).

A :class:`Checkpointer` does that work on a thread of its own, with a connection of its own,
in ``PASSIVE`` mode (it never waits for, nor blocks, a reader or a writer). A passive
checkpoint cannot start the WAL over while writes keep arriving (a new frame always lands
behind it), so once the WAL is :data:`RESTART_PAGES` long, the next writer to commit runs
one more passive checkpoint itself: by then it copies only the few pages written since the
thread's, and the write after it starts the WAL from its first frame. ``wal_autocheckpoint``
stays on, higher, for when the thread cannot keep up. Durability is SQLite's either way: a
checkpoint is crash-safe whichever connection runs it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref

log = logging.getLogger(__name__)

# How often, at most, the thread checkpoints while commits arrive: each copy syncs the WAL
# and the database once, so copies are batched rather than run after every commit.
INTERVAL_S = 0.2
# A WAL this long is started over: the next commit finishes the copy (about 40 MB).
RESTART_PAGES = 10_000
# The writers' own checkpoint, for when the thread falls behind (SQLite's default is 1,000).
AUTOCHECKPOINT_PAGES = 4 * RESTART_PAGES
# A checkpoint runs again at once while more than this many frames landed during the previous
# one (up to PASSES in a row): the finishing copy a committer runs then flushes little.
SETTLED_PAGES = 128
PASSES = 4
# A thread with no commit to follow for this long ends; the next commit starts another.
IDLE_EXIT_S = 30.0

#: Held by a checkpoint thread while it is inside SQLite, and by a fork while it forks: a
#: child forked as a checkpoint ran inherited SQLite's own mutexes held by a thread it does
#: not have, and its first statement waited for ever (SQLite's rule: no fork with SQLite in
#: use in another thread). A checkpoint is a short passive copy: a fork waits for it.
_IN_SQLITE = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_IN_SQLITE.acquire,
        after_in_parent=_IN_SQLITE.release,
        after_in_child=_IN_SQLITE.release,
    )


class Checkpointer:
    """The background checkpoints of one database file. Writers call :meth:`committed` on
    their connection after each ``COMMIT``; :meth:`close` ends the thread (and waits for it).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._wake = threading.Event()  # a commit since the last checkpoint
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._restart_due = False  # the WAL is long: the next committer finishes the copy
        self.checkpoints = 0  # rounds of checkpoints run (tests and diagnostics)
        self._ran = threading.Condition()
        self.restarts = 0  # finishing copies writers ran
        weakref.finalize(self, _halt, self._wake, self._stop)  # dropped unclosed: thread ends

    def committed(self, conn: sqlite3.Connection) -> None:
        """After a commit on ``conn``: finish the copy if one is due, wake the thread."""
        if self._restart_due:
            self._restart_due = False
            self.restarts += 1
            try:
                _checkpoint(conn)
            except sqlite3.Error as e:  # the commit stands; the thread tries again
                log.warning("lineagehub: WAL checkpoint of %s failed: %s", self.path, e)
        if not self._wake.is_set():
            self._wake.set()
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._start()

    def run_once(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """Passive checkpoints on ``conn`` until one finds little new to copy (at most
        :data:`PASSES`): ``(frames in the WAL, frames copied back)``. A WAL of
        :data:`RESTART_PAGES` or more is then marked for the next committer to start over:
        it copies only what arrived since, and its two syncs flush little."""
        frames, copied = _checkpoint(conn)
        for _ in range(PASSES - 1):  # commits that landed during a pass are the next's
            before = frames
            frames, copied = _checkpoint(conn)
            if frames - before <= SETTLED_PAGES:
                break
        if frames >= RESTART_PAGES:
            self._restart_due = True
        with self._ran:
            self.checkpoints += 1
            self._ran.notify_all()
        return frames, copied

    def wait(self, rounds: int, timeout: float) -> bool:
        """Whether :meth:`run_once` has run ``rounds`` times within ``timeout`` seconds."""
        with self._ran:
            return self._ran.wait_for(lambda: self.checkpoints >= rounds, timeout)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    # --- the thread ---------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            thread = self._thread
            if thread is not None and thread.is_alive():
                return
            thread = threading.Thread(
                target=_follow,
                args=(weakref.ref(self), self.path, self._wake, self._stop),
                name=f"lineagehub-wal-checkpoint:{self.path}",
                daemon=True,
            )
            try:
                thread.start()
            except RuntimeError as e:  # no thread to be had: the commit stands, writers copy
                log.warning("lineagehub: no thread for WAL checkpoints of %s: %s", self.path, e)
                self._stop.set()  # asked once, not at every commit
                return
            self._thread = thread

    def _idle_exit(self) -> bool:
        """Whether the thread may end now (no commit arrived while it decided)."""
        with self._lock:
            if self._wake.is_set() and not self._stop.is_set():
                return False
            if self._thread is threading.current_thread():
                self._thread = None
            return True


def _halt(wake: threading.Event, stop: threading.Event) -> None:
    stop.set()
    wake.set()


def _checkpoint(conn: sqlite3.Connection) -> tuple[int, int]:
    _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(frames), int(copied)


def _follow(
    owner: weakref.ref[Checkpointer], path: str, wake: threading.Event, stop: threading.Event
) -> None:
    """The thread: a checkpoint after commits, at most every :data:`INTERVAL_S`. It holds
    its store's checkpointer weakly, so a store dropped without ``close`` lets it end."""
    conn: sqlite3.Connection | None = None
    try:
        with _IN_SQLITE:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        while not stop.is_set():
            if not wake.wait(IDLE_EXIT_S):
                me = owner()
                if me is None or me._idle_exit():
                    return
                continue
            if stop.is_set():
                return
            wake.clear()
            me = owner()
            if me is None:
                return
            try:
                with _IN_SQLITE:
                    me.run_once(conn)
            except sqlite3.Error as e:  # a full disk, a file gone: the writers' own remain
                log.warning("lineagehub: background WAL checkpoint of %s failed: %s", path, e)
            del me
            if stop.wait(INTERVAL_S):
                return
    except sqlite3.Error as e:
        log.warning("lineagehub: cannot open %s for WAL checkpoints: %s", path, e)
    finally:
        if conn is not None:
            with _IN_SQLITE:
                conn.close()
