"""Per-request context: the hub's services and fresh dataloaders.

Resolvers are async; the stores are synchronous. Every store call goes through
:meth:`Context.call`, which runs it in a worker thread, so the event loop never blocks on the
database. Dataloaders batch what the resolvers of one request ask for (nodes by id,
neighbours by id, metric summaries by run), so a page of 100 runs with their inputs, code and
metrics costs a bounded number of store queries whatever the page size.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio.to_thread
from strawberry.dataloader import DataLoader

from lineagehub.artifacts import absent_artifact
from lineagehub.graph import (
    Adjacent,
    ConfigError,
    Direction,
    GraphStore,
    Node,
    NotFoundError,
    SeriesSummary,
)
from lineagehub.graph.store import WouldWait
from lineagehub.services.access import Principal, open_principal
from lineagehub.services.identity import IDENTITY_LABELS

if TYPE_CHECKING:
    from lineagehub.artifacts import ArtifactInfo, ArtifactStore
    from lineagehub.services.lineage import LineageService
    from lineagehub.services.monitoring import MonitoringService
    from lineagehub.services.registry import RegistryService
    from lineagehub.services.tracking import TrackingService

T = TypeVar("T")

# (node id, direction, edge kinds, labels): one neighbour list
AdjKey = tuple[str, Direction, tuple[str, ...] | None, tuple[str, ...] | None]


#: Idle single-thread executors for :meth:`Context.transaction`, kept so their threads (and the
#: stores' per-thread database connections) live on from one transaction to the next: a new
#: thread a request would open, and close, a connection each time (~several ms on SQLite).
_IDLE: queue.SimpleQueue[ThreadPoolExecutor] = queue.SimpleQueue()
_KEEP_IDLE = 8


def _take_thread() -> ThreadPoolExecutor:
    try:
        return _IDLE.get_nowait()
    except queue.Empty:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="lineagehub-tx")


def _give_back(executor: ThreadPoolExecutor) -> None:
    if _IDLE.qsize() < _KEEP_IDLE:
        _IDLE.put(executor)
    else:
        executor.submit(_close_loop)
        executor.shutdown(wait=False)


def _run_through(awaitable: Awaitable[T]) -> T:
    """Run a coroutine that never suspends to its end, here and now (``RuntimeError`` if it
    does suspend: it is closed, and whatever it wrote is rolled back by the caller)."""
    coroutine = awaitable.__await__()
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    close = getattr(coroutine, "close", None)
    if close is not None:
        close()
    raise RuntimeError("work meant to run at once waited for something")


#: The event loop of a transaction thread, for :meth:`Context.inline` (made on first use).
_THREAD = threading.local()


def _thread_loop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop | None = getattr(_THREAD, "loop", None)
    if loop is None:
        loop = _THREAD.loop = asyncio.new_event_loop()
    return loop


def _close_loop() -> None:
    loop = getattr(_THREAD, "loop", None)
    if loop is not None:
        loop.close()


@dataclass
class Services:
    """What the schema needs from the hub, built once per app."""

    store: GraphStore
    tracking: TrackingService | None
    lineage: LineageService
    artifacts: ArtifactStore | None
    max_page: int = 500
    registry: RegistryService | None = None
    #: Who changes are recorded as done by on a hub that does not authenticate (the open
    #: principal's name): the server's configured user (LINEAGEHUB_USER, else the OS user).
    #: An authenticated request acts as its principal (:attr:`Context.actor`).
    registry_actor: str = "unknown"
    #: The key the audit log's tree heads are signed with (LINEAGEHUB_AUDIT_KEY), if any.
    audit_key: bytes | None = None
    #: Called with (principal, where, message) for each permission denial (FORBIDDEN), so
    #: the server can audit it.
    on_denied: Callable[[Principal | None, str, str], None] | None = None
    #: Monitoring windows, drift and performance (made over ``store`` when not given).
    monitoring: MonitoringService | None = None
    #: Whether short writes may be made on the event loop (:meth:`Context.write`): only
    #: where nothing a write does besides the store's own work can wait (the server sets it
    #: for an artifact store in a local folder and no audit-head copy to S3).
    writes_on_loop: bool = False

    def __post_init__(self) -> None:
        if self.monitoring is None and self.store is not None:
            from lineagehub.services.monitoring import MonitoringService

            self.monitoring = MonitoringService(self.store)

    @property
    def monitor(self) -> MonitoringService:
        """The monitoring service (a :class:`ConfigError` for a schema served without one)."""
        if self.monitoring is None:
            raise ConfigError("this hub serves no monitoring")
        return self.monitoring

    @property
    def stored(self) -> Callable[[str], Any]:
        """The artifact store's :meth:`~lineagehub.artifacts.ArtifactStore.stored`, bytes it
        does not have answered in the words of ``absent_artifact`` (a :class:`ConfigError`
        for a schema served without a store)."""
        if self.artifacts is None:
            raise ConfigError("this hub serves no artifact store")
        return partial(_stored, self.artifacts)

    @property
    def tracker(self) -> TrackingService:
        """The tracking service (a :class:`ConfigError` for a schema served without one)."""
        if self.tracking is None:
            raise ConfigError("this hub serves no experiment tracking")
        return self.tracking


#: Up to this many nodes by id are read on the event loop when the store allows it
#: (:meth:`Context.read`); more go to a worker thread.
INLINE_READ_IDS = 64

#: Writes of up to this many values (params, metric points, tags) may be made on the event
#: loop (:meth:`Context.write`)...
INLINE_WRITE_SIZE = 64
#: ... and batches of up to this many operations holding this many values in all (the JSON
#: values of their arguments, containers included; :meth:`Context.atomically`): a few
#: milliseconds of work at most, which the event loop does not hand over meanwhile.
INLINE_BATCH_OPERATIONS = 16
INLINE_BATCH_VALUES = 256


class CallerThreads:
    """How many worker threads each caller's requests hold at once, at most ``per_caller``
    of the process's (anyio's 40): a caller sending forty slow queries held them all, and
    every other caller waited. A caller's requests past its share wait for one of its own to
    finish, holding no thread. A caller's limiter lives as long as a request of its holds it
    (weakly kept here): callers with no request in flight cost nothing, and two requests in
    flight at once always share one."""

    def __init__(self, per_caller: int) -> None:
        self.per_caller = per_caller
        self._limiters: weakref.WeakValueDictionary[str, anyio.CapacityLimiter] = (
            weakref.WeakValueDictionary()
        )

    def of(self, caller: str) -> anyio.CapacityLimiter:
        limiter = self._limiters.get(caller)
        if limiter is None:
            limiter = self._limiters[caller] = anyio.CapacityLimiter(self.per_caller)
        return limiter

    def waiting(self) -> int:
        """Calls waiting for their caller's share now (all callers)."""
        return sum(lim.statistics().tasks_waiting for lim in list(self._limiters.values()))


@dataclass
class Context:
    services: Services
    request: Any = None
    response: Any = None
    #: Who is asking (set by the server's authentication; a hub that does not authenticate
    #: acts as its configured user, with every right).
    principal: Principal | None = None
    #: Whether the request is short (the server: a body of known length, at most 16 KiB):
    #: only a short request's writes may be made on the event loop (:meth:`write`), so a
    #: large value in one (a dataset's profile, a signature) is never encoded there.
    short_request: bool = True
    #: The worker threads this request's caller may hold at once (:class:`CallerThreads`),
    #: shared by all of its requests; ``None``: no cap.
    threads: anyio.CapacityLimiter | None = None
    #: Nodes the request has read by now, for :attr:`nodes` once it is made (:meth:`remember`).
    _known: dict[str, Node] | None = field(init=False, default=None, repr=False)
    #: The authorization's state for this request (lineagehub.schema.authz).
    authz: dict[str, Any] = field(init=False, default_factory=dict)
    #: The worker thread holding this request's transaction (:meth:`transaction`), if any.
    _pinned: ThreadPoolExecutor | None = field(init=False, default=None, repr=False)
    #: The id of that thread while it runs :meth:`inline` work (there :meth:`call` calls).
    _inline: int | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if self.principal is None:
            self.principal = open_principal(self.services.registry_actor)

    # The request's loaders are made on first use: most requests need none of them.

    @cached_property
    def nodes(self) -> DataLoader[str, Node | None]:
        """Nodes by id, batched and cached for the request."""
        loader: DataLoader[str, Node | None] = DataLoader(load_fn=self._load_nodes)
        for node_id, node in (self._known or {}).items():
            loader.prime(node_id, node)
        return loader

    @cached_property
    def adjacent(self) -> DataLoader[AdjKey, list[Adjacent]]:
        """Nodes' neighbours by (id, direction, kinds), batched and cached for the request."""
        return DataLoader(load_fn=self._load_adjacent)

    @cached_property
    def summaries(self) -> DataLoader[str, dict[str, SeriesSummary]]:
        """Runs' metric summaries by run id, batched and cached for the request."""
        return DataLoader(load_fn=self._load_summaries)

    def remember(self, node: Node) -> None:
        """Note a node the request read, as if :attr:`nodes` had loaded it: later fields of
        the request reuse it."""
        if "nodes" in self.__dict__:
            self.nodes.prime(node.id, node)
        else:
            if self._known is None:
                self._known = {}
            self._known[node.id] = node

    @property
    def store(self) -> GraphStore:
        return self.services.store

    @property
    def actor(self) -> str:
        """The name every change of this request is recorded under."""
        assert self.principal is not None  # set in __post_init__
        return self.principal.name

    @property
    def tracker(self) -> TrackingService:
        """The tracking service, recording this request's changes under :attr:`actor`."""
        return self.services.tracker.acting_as(self.actor)

    @property
    def authenticated(self) -> bool:
        """Whether the caller proved who it is (a token or OIDC), not an open hub's default."""
        assert self.principal is not None
        return self.principal.via != "open"

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a synchronous hub call in a worker thread (inside :meth:`transaction`: on the
        one thread that holds it; from :meth:`inline` work on that thread: at once)."""
        if self._inline is not None and self._inline == threading.get_ident():
            return fn(*args, **kwargs)
        if self._pinned is not None:
            return await asyncio.wrap_future(self._pinned.submit(partial(fn, *args, **kwargs)))
        if self.threads is None:
            return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))
        async with self.threads:  # the caller's share first, then one of the process's
            return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A short read (nodes by id or reference): made at once, on the event loop, when
        the store can answer it without waiting (:meth:`GraphStore.without_waiting`: a
        local SQLite file), which spares the hand-off to a worker thread and back (~0.2 ms
        a request); otherwise, or inside a transaction, as :meth:`call`. ``fn`` must only
        read, and be bounded by an index (never a scan, a walk or a page of results)."""
        if self._pinned is None and self._inline is None:
            try:
                with self.store.without_waiting():
                    return fn(*args, **kwargs)
            except WouldWait:
                pass  # made again in a thread, where waiting holds nobody up
        return await self.call(fn, *args, **kwargs)

    async def write(self, fn: Callable[..., T], *args: Any, size: int = 1, **kwargs: Any) -> T:
        """A short write (one service call, bounded: ``size`` values at most
        :data:`INLINE_WRITE_SIZE`) made at once on the event loop (:meth:`_commit_here`),
        which spares the hand-off to a worker thread and back (~0.3 ms a request); otherwise,
        or if it cannot be made there, as :meth:`call`, in a thread. ``fn`` must be
        synchronous, bounded and not wait on anything but the store (no network)."""
        if size <= INLINE_WRITE_SIZE:
            made, result = self._commit_here(partial(fn, *args, **kwargs))
            if made:
                return cast(T, result)
        return await self.call(fn, *args, **kwargs)

    async def atomically(self, make: Callable[[], Awaitable[T]], *, short: bool) -> T:
        """``await make()`` in one transaction (:meth:`transaction` and :meth:`inline`): a
        ``short`` one (at most :data:`INLINE_BATCH_OPERATIONS` operations and
        :data:`INLINE_BATCH_VALUES` values) on the event loop as :meth:`write` makes a write
        (``make`` runs to its end without suspending: the :meth:`call` s it makes run at
        once), else on a transaction's thread. ``make`` must await nothing but :meth:`call`
        and be safe to run again (on a failure it is rolled back and made again in a
        thread)."""
        if short:
            made, result = self._commit_here(partial(self._through_here, make))
            if made:
                return cast(T, result)
        async with self.transaction():
            return await self.inline(make)

    def _commit_here(self, work: Callable[[], T]) -> tuple[bool, T | None]:
        """``work()`` on the event loop in one transaction begun without waiting
        (:meth:`GraphStore.transaction_without_waiting`: a local SQLite file), where
        :attr:`Services.writes_on_loop` and a :attr:`short_request` allow it, outside any
        request transaction: ``(True, result)`` once committed. ``(False, None)`` when it
        was not tried, could not begin at once, or raised before its commit (then rolled back
        whole): the caller makes it again in a thread, where what a refusal writes (an audit
        entry of a denial) and what waits are exactly as they were."""
        if not (
            self._pinned is None
            and self._inline is None
            and self.short_request
            and self.services.writes_on_loop
        ):
            return False, None
        done = False
        try:
            with self.store.transaction_without_waiting():
                result = work()
                done = True
        except Exception:
            if done:  # committed (or failed while committing): as it would in a thread
                raise
            return False, None
        return True, result

    def _through_here(self, make: Callable[[], Awaitable[T]]) -> T:
        """``make()`` run to its end on this thread, its :meth:`call` s made at once."""
        self._inline = threading.get_ident()
        try:
            return _run_through(make())
        finally:
            self._inline = None

    async def inline(self, make: Callable[[], Awaitable[T]]) -> T:
        """Await ``make()`` on the thread holding this request's :meth:`transaction`, in one
        hand-off: the :meth:`call` s it makes run there at once. A batch of writes made two or
        three hand-offs between the event loop and that thread for each write (each a wake-up
        of both and a wait for the GIL); the event loop serves other requests meanwhile.
        ``make`` must await nothing but :meth:`call` (no dataloaders, no sleeps)."""
        if self._pinned is None:
            raise RuntimeError("inline work runs inside a transaction")
        context = contextvars.copy_context()  # the request's, as on the event loop

        def work() -> T:
            self._inline = threading.get_ident()
            try:
                return context.run(_thread_loop().run_until_complete, make())
            finally:
                self._inline = None

        return await self.call(work)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """One store transaction around every :meth:`call` made inside the block: they run on
        one worker thread of their own (the stores' transactions belong to a thread), and
        commit together when the block ends, or roll back together on an error (or when the
        request is cancelled)."""
        if self._pinned is not None:  # already inside one: join it
            yield
            return
        pinned = _take_thread()
        block = self.store.transaction()
        try:
            await asyncio.wrap_future(pinned.submit(block.__enter__))
            self._pinned = pinned
            try:
                yield
            except BaseException as e:
                self._pinned = None
                # the thread runs one thing at a time: this waits for a call still under way
                exit_ = partial(block.__exit__, type(e), e, e.__traceback__)
                await asyncio.shield(asyncio.wrap_future(pinned.submit(exit_)))
                raise
            self._pinned = None
            await asyncio.wrap_future(pinned.submit(block.__exit__, None, None, None))
        finally:
            self._pinned = None
            _give_back(pinned)

    async def _load_nodes(self, ids: Sequence[str]) -> list[Node | None]:
        # A few nodes are index seeks: read at once; a large batch (a lineage answer's
        # nodes) in a thread, where SQLite's own work does not hold the event loop.
        load = self.read if len(ids) <= INLINE_READ_IDS else self.call
        found = await load(self.store.get_nodes, list(ids))
        # users and tokens are never served (lineagehub.services.identity)
        return [n if n is None or n.label not in IDENTITY_LABELS else None for n in found]

    async def _load_adjacent(self, keys: Sequence[AdjKey]) -> list[list[Adjacent]]:
        # One neighbours query per distinct (direction, kinds, labels), for all ids at once.
        groups: dict[tuple[Any, ...], list[str]] = defaultdict(list)
        for node_id, direction, kinds, labels in keys:
            groups[(direction, kinds, labels)].append(node_id)
        found: dict[AdjKey, list[Adjacent]] = {}
        for (direction, kinds, labels), ids in groups.items():
            result = await self.call(
                self.store.neighbors,
                list(dict.fromkeys(ids)),
                direction,
                list(kinds) if kinds is not None else None,
                list(labels) if labels is not None else None,
            )
            for node_id, adjacent in result.items():
                found[(node_id, direction, kinds, labels)] = [
                    a for a in adjacent if a.node.label not in IDENTITY_LABELS
                ]
        # Neighbours in projects the caller may not view are left out (one look-up for all).
        assert self.principal is not None
        if not self.principal.sees_everything:
            from lineagehub.schema.authz import viewable

            reached = {a.node.id: a.node for adjacent in found.values() for a in adjacent}
            ok = await self.call(viewable, self.services, self.principal, reached.values())
            if ok is not None:
                found = {k: [a for a in v if a.node.id in ok] for k, v in found.items()}
        return [found.get(k, []) for k in keys]

    async def _load_summaries(self, ids: Sequence[str]) -> list[dict[str, SeriesSummary]]:
        result = await self.call(self.store.series_summary, list(dict.fromkeys(ids)))
        return [result.get(i, {}) for i in ids]

    async def neighbours(
        self,
        node_id: str,
        direction: Direction,
        kinds: Sequence[str] | None = None,
        labels: Sequence[str] | None = None,
    ) -> list[Adjacent]:
        key: AdjKey = (
            node_id,
            direction,
            tuple(kinds) if kinds is not None else None,
            tuple(labels) if labels is not None else None,
        )
        return await self.adjacent.load(key)


def _stored(artifacts: ArtifactStore, digest: str) -> ArtifactInfo:
    try:
        return artifacts.stored(digest)
    except NotFoundError:
        raise absent_artifact(digest) from None
