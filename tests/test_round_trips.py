"""Round trips through a real server, counted where they arrive: each SDK call of the write
path is one request (a registration does not ask for the content first: the hub checks it
when it registers), a batch is one request, and a refusal still comes back; and the one
hand-off to a worker thread a batch makes on the server. On both stores."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Held, fresh_store_uri
from http_server import HubServer

from lineagehub import Client, Settings, open_store
from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import GraphStore, Node, NotFoundError, ValidationError
from lineagehub.interfaces.server import create_app
from lineagehub.schema.context import Context, Services
from lineagehub.services.lineage import LineageService
from lineagehub.services.registry import ModelPromoted

GRAPHQL = ("POST", "/graphql")


class Counted:
    """The hub's ASGI app, noting each HTTP request's method and path as it arrives."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)

    def during(self, call: Callable[[], Any]) -> tuple[list[tuple[str, str]], Any]:
        """The requests ``call()`` made, and what it answered."""
        before = len(self.seen)
        answer = call()
        return self.seen[before:], answer


@pytest.fixture
def served(store_backend: str, tmp_path: Path) -> Iterator[tuple[Client, Counted, GraphStore]]:
    store = open_store(fresh_store_uri(store_backend, tmp_path))
    settings = Settings(user="alice", data_dir=tmp_path)
    artifacts = open_artifact_store((tmp_path / "artifacts").as_uri())
    app = Counted(create_app(settings, store=store, artifacts=artifacts))
    with HubServer(app) as server:
        client = Client(server.url, settings=settings)
        yield client, app, store
        client.close()
    store.close()


def test_each_write_of_a_registration_is_one_request(
    served: tuple[Client, Counted, GraphStore],
) -> None:
    client, app, store = served
    weights = client.backend.artifacts.put_bytes(b"weights").digest
    seen, run = app.during(lambda: client.start_run("train", project="p", capture=False))
    assert seen == [GRAPHQL]
    seen, _ = app.during(run.end)
    assert seen == [GRAPHQL]

    seen, mv = app.during(
        lambda: client.register_model_version("churn", digest=weights, run_id=run.id)
    )
    assert seen == [GRAPHQL]  # no HEAD /artifacts/... first
    assert (mv.model, mv.version, mv.artifact_digest) == ("churn", 1, weights)
    assert store.get_node(mv.node_id).props["artifact_digest"] == weights

    seen, aliased = app.during(lambda: client.set_alias(mv.node_id, "champion", reason="best"))
    assert seen == [GRAPHQL] and aliased.aliases == ["champion"]
    seen, promoted = app.during(lambda: client.promote(mv.node_id, "Staging", reason="ok"))
    assert seen == [GRAPHQL] and isinstance(promoted, ModelPromoted)
    seen, found = app.during(lambda: client.get_model_version("churn@champion"))
    assert seen == [GRAPHQL] and found.stage == "Staging"

    # content the hub does not hold is still refused, by the hub, in that one request
    missing = "sha256:" + "0" * 64
    before = len(app.seen)
    with pytest.raises(NotFoundError):
        client.register_model_version("churn", digest=missing, run_id=run.id)
    assert app.seen[before:] == [GRAPHQL]
    assert client.get_model_version("churn@latest").version == 1


def test_a_batch_is_one_request(served: tuple[Client, Counted, GraphStore]) -> None:
    client, app, store = served
    weights = client.backend.artifacts.put_bytes(b"weights").digest

    def register() -> Any:
        with client.batch() as b:
            run = b.start_run("train", project="p")
            b.log_dataset_ref(run, "s3://lake/a.parquet", "sha256:" + "a" * 64)
            b.end_run(run)
            mv = b.register_model_version("churn", digest=weights, run=run)
            b.set_alias(mv, "champion")
            b.promote(mv, "Staging", reason="ok")
        return mv

    seen, mv = app.during(register)
    assert seen == [GRAPHQL]
    version = mv.result()  # as registered, before the alias and the stage
    assert (version.model, version.version) == ("churn", 1)
    now = store.get_node(version.node_id).props
    assert now["aliases"] == ["champion"] and now["stage"] == "Staging"


def test_inline_work_runs_on_the_transactions_thread_all_or_nothing(backend_uri: str) -> None:
    """What writeBatch runs on: the calls of inline work run on the thread holding the
    transaction, at once, seeing the request's context; an error rolls all of it back."""
    store = open_store(backend_uri)
    marker: contextvars.ContextVar[str | None] = contextvars.ContextVar("marker", default=None)
    nodes = [Node(id=f"dataset:n{i}", label="Dataset", props={"name": f"n{i}"}) for i in (1, 2)]

    async def main() -> tuple[int, list[int], str | None, int]:
        ctx = Context(Services(store, None, LineageService(store), None))
        marker.set("the request's")
        with pytest.raises(RuntimeError, match="inside a transaction"):
            await ctx.inline(lambda: asyncio.sleep(0))
        async with ctx.transaction():
            holder = await ctx.call(threading.get_ident)

            async def work() -> tuple[list[int], str | None, int]:
                seen = [await ctx.call(threading.get_ident) for _ in range(3)]
                await ctx.call(store.upsert_nodes, nodes[:1])
                return seen, marker.get(), threading.get_ident()

            seen, mark, ran_on = await ctx.inline(work)

        async def fails() -> None:
            await ctx.call(store.upsert_nodes, nodes[1:])
            raise ValidationError("the second write is refused")

        with pytest.raises(ValidationError):
            async with ctx.transaction():
                await ctx.inline(fails)
        return holder, seen, mark, ran_on

    try:
        holder, seen, mark, ran_on = asyncio.run(main())
        assert seen == [holder] * 3 and ran_on == holder
        assert mark == "the request's"
        first, second = store.get_nodes([n.id for n in nodes])
        assert first is not None and second is None  # committed; rolled back
    finally:
        store.close()


def test_short_reads_are_answered_on_the_event_loop_where_the_store_can(backend_uri: str) -> None:
    """``Context.read``: on a SQLite file the read runs at once on the event loop's thread
    (no hand-off to a worker and back); on Neo4j (the network) in a worker thread; inside
    the request's transaction on the thread holding it, seeing its writes."""
    store = open_store(backend_uri)
    store.upsert_nodes([Node("dataset:a", "Dataset", {"name": "a"})])

    def where(ids: list[str]) -> tuple[int, list[Node | None]]:
        return threading.get_ident(), store.get_nodes(ids)

    async def main() -> tuple[int, int, list[Node | None], int, list[Node | None], int]:
        ctx = Context(Services(store, None, LineageService(store), None))
        loop_thread = threading.get_ident()
        ran_on, found = await ctx.read(where, ["dataset:a"])
        async with ctx.transaction():
            holder = await ctx.call(threading.get_ident)
            await ctx.call(store.upsert_nodes, [Node("dataset:b", "Dataset", {"name": "b"})])
            in_tx_on, in_tx = await ctx.read(where, ["dataset:b"])
        return loop_thread, ran_on, found, in_tx_on, in_tx, holder

    try:
        loop_thread, ran_on, found, in_tx_on, in_tx, holder = asyncio.run(main())
        assert [n.id for n in found if n] == ["dataset:a"]
        if backend_uri.startswith("sqlite:///"):
            assert ran_on == loop_thread
        else:
            assert ran_on != loop_thread
        assert in_tx_on == holder and [n.id for n in in_tx if n] == ["dataset:b"]
    finally:
        store.close()


def test_a_read_that_writes_or_would_wait_is_made_in_a_thread() -> None:
    """A stale run read through ``run(id:)`` is recorded as KILLED first: the write is
    refused on the event loop and the whole call is made again in a worker thread (once:
    one audit entry). An in-memory store held by another thread's transaction is not
    waited for on the loop: the read waits in a thread while the loop serves on."""
    from datetime import datetime, timedelta, timezone

    from lineagehub.graph.model import to_iso
    from lineagehub.services.tracking import TrackingService
    from lineagehub.vocabulary import Run

    store = open_store("sqlite://")
    tracking = TrackingService(store, None, stale_after=timedelta(seconds=60))
    run = tracking.start_run(Run(name="stale"))
    old = datetime.now(timezone.utc) - timedelta(hours=1)
    beat = {"started_at": to_iso(old), "heartbeat_at": to_iso(old)}  # an hour ago
    store.upsert_nodes([Node(run.id, "Run", beat)])

    async def main() -> tuple[str, list[int], bool]:
        services = Services(store, tracking, LineageService(store), None)
        ctx = Context(services)
        attempts: list[int] = []

        def stale_run() -> Node:
            attempts.append(threading.get_ident())
            return tracking.run_node(run.id)

        killed = await ctx.read(stale_run)
        loop_thread = threading.get_ident()
        assert attempts[0] == loop_thread and attempts[1:] != [loop_thread]
        assert len(attempts) == 2  # refused on the loop, made once in a thread
        held = Held(store, Node("dataset:held", "Dataset", {"name": "held"}))
        ran_on: list[int] = []

        def read() -> list[Node | None]:
            ran_on.append(threading.get_ident())
            return store.get_nodes(["dataset:held"])

        waiting = asyncio.ensure_future(ctx.read(read))
        await asyncio.sleep(0)  # the read is in a thread now: the loop runs this
        served = not waiting.done()
        held.release()
        found = await waiting
        assert found[0] is not None  # committed by the holder, then read
        return killed.props["status"], [t == loop_thread for t in ran_on], served

    try:
        status, on_loop, served = asyncio.run(main())
        assert status == "KILLED"
        assert on_loop == [False] and served
        kills = [e for e in store.read_audit() if e.action == "run.killed"]
        assert len(kills) == 1
    finally:
        store.close()


def test_short_writes_are_made_on_the_event_loop_where_the_store_can(backend_uri: str) -> None:
    """``Context.write``: where the services allow it, a SQLite file's write runs at once on
    the event loop's thread, in one transaction; on Neo4j (the network), when not allowed,
    or when larger than ``INLINE_WRITE_SIZE``, in a worker thread."""
    from lineagehub.schema.context import INLINE_WRITE_SIZE

    store = open_store(backend_uri)

    def upsert(name: str) -> int:
        store.upsert_nodes([Node(f"dataset:{name}", "Dataset", {"name": name})])
        store.upsert_nodes([Node(f"dataset:{name}", "Dataset", {"seen": True})])
        return threading.get_ident()

    async def main() -> tuple[int, list[int]]:
        services = Services(store, None, LineageService(store), None, writes_on_loop=True)
        ctx = Context(services)
        ran = [await ctx.write(upsert, "a")]
        ran.append(await ctx.write(upsert, "b", size=INLINE_WRITE_SIZE + 1))
        long = Context(services, short_request=False)  # a large request: never on the loop
        ran.append(await long.write(upsert, "d"))
        services.writes_on_loop = False
        ran.append(await ctx.write(upsert, "c"))
        return threading.get_ident(), ran

    try:
        loop_thread, ran = asyncio.run(main())
        on_loop = [t == loop_thread for t in ran]
        assert on_loop == [backend_uri.startswith("sqlite:///"), False, False, False]
        found = store.get_nodes(["dataset:a", "dataset:b", "dataset:c", "dataset:d"])
        assert [n.props for n in found if n] == [{"name": k, "seen": True} for k in "abcd"]
    finally:
        store.close()


def test_a_write_that_fails_or_would_wait_on_the_loop_is_made_in_a_thread(tmp_path: Path) -> None:
    """A write that raises on the event loop is rolled back whole there and made again in a
    worker thread, where it behaves exactly as it did before (here: its first transaction
    commits, the error comes back); a write while another connection holds the file's write
    lock is not waited for on the loop: it waits in a thread while the loop serves on. A
    batch (``atomically``) that suspends is made again on a transaction's thread."""
    from lineagehub.graph.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "hub.db")

    async def main() -> tuple[list[int], list[int], bool, list[int], list[int]]:
        ctx = Context(Services(store, None, LineageService(store), None, writes_on_loop=True))
        loop_thread = threading.get_ident()
        failed: list[int] = []

        def half_then_refused() -> None:
            failed.append(threading.get_ident())
            store.upsert_nodes([Node("dataset:half", "Dataset", {"name": "half"})])
            raise ValidationError("refused after a first write")

        with pytest.raises(ValidationError, match="refused after"):
            await ctx.write(half_then_refused)
        held = Held(store, Node("dataset:held", "Dataset", {"name": "held"}))
        waited: list[int] = []

        def write() -> None:
            waited.append(threading.get_ident())
            store.upsert_nodes([Node("dataset:late", "Dataset", {"name": "late"})])

        pending = asyncio.ensure_future(ctx.write(write))
        await asyncio.sleep(0)  # the write waits in a thread: the loop runs this
        served = not pending.done()
        held.release()
        await pending
        suspended: list[int] = []

        async def batch() -> None:
            suspended.append(threading.get_ident())
            await ctx.call(store.upsert_nodes, [Node("dataset:x", "Dataset", {"n": 1})])
            await asyncio.sleep(0)  # not meant to run at once: rolled back, made again
            await ctx.call(store.upsert_nodes, [Node("dataset:y", "Dataset", {"n": 1})])

        await ctx.atomically(batch, short=True)
        atomic: list[int] = []

        async def short() -> None:
            atomic.append(threading.get_ident())
            await ctx.call(store.upsert_nodes, [Node("dataset:z", "Dataset", {"n": 1})])

        await ctx.atomically(short, short=True)
        await ctx.atomically(short, short=False)  # a long batch: in a thread
        return (
            [t == loop_thread for t in failed],
            [t == loop_thread for t in waited],
            served,
            [t == loop_thread for t in suspended],
            [t == loop_thread for t in atomic],
        )

    try:
        failed, waited, served, suspended, atomic = asyncio.run(main())
        assert failed == [True, False]  # on the loop, rolled back; again in a thread
        assert waited == [False] and served
        assert suspended == [True, False] and atomic == [True, False]
        ids = ["dataset:half", "dataset:late", "dataset:x", "dataset:y", "dataset:z"]
        assert all(store.get_nodes(ids))
        assert len(store.find_nodes("Dataset").items) == 6  # each once, and the held one
    finally:
        store.close()


def test_writes_go_on_the_event_loop_only_where_nothing_else_waits(tmp_path: Path) -> None:
    """The server allows writes on its event loop for artifacts in a local folder and tree
    heads copied nowhere or to a file; not for another artifact store, nor a head copy it
    does not know to be local."""
    from lineagehub.artifacts import S3ArtifactStore
    from lineagehub.graph.audit import CheckpointPolicy
    from lineagehub.interfaces.server import _writes_on_loop

    store = open_store("sqlite://")
    folder = open_artifact_store((tmp_path / "artifacts").as_uri())
    settings = Settings(data_dir=tmp_path)
    remote = S3ArtifactStore("bucket", endpoint_url="http://127.0.0.1:9")  # never sent to
    try:
        assert _writes_on_loop(store, folder, settings)
        assert not _writes_on_loop(store, remote, settings)
        store.audit_policy = CheckpointPolicy(every=2, on_checkpoint=lambda head: None)
        assert not _writes_on_loop(store, folder, settings)
        heads = Settings(data_dir=tmp_path, audit_heads=(tmp_path / "heads").as_uri())
        assert _writes_on_loop(store, folder, heads)
        app = create_app(settings, store=open_store("sqlite://"), artifacts=folder)
        assert app.state.services.writes_on_loop
    finally:
        store.close()


def test_a_large_batch_of_nodes_is_read_in_a_thread(tmp_path: Path) -> None:
    """The request's node loader reads a few nodes on the event loop, but a lineage
    answer's worth (more than ``INLINE_READ_IDS``) in a worker thread: SQLite's own work
    on it would otherwise hold every other request."""
    from lineagehub.graph.sqlite import SqliteStore
    from lineagehub.schema.context import INLINE_READ_IDS

    store = SqliteStore(tmp_path / "hub.db")
    many = [Node(f"dataset:n{i}", "Dataset", {"name": f"n{i}"}) for i in range(INLINE_READ_IDS + 1)]
    store.upsert_nodes(many)

    async def load(ids: list[str]) -> tuple[list[Node | None], bool]:
        ctx = Context(Services(store, None, LineageService(store), None))
        found = await ctx.nodes.load_many(ids)
        return found, store._local.nowait_conn is not None  # opened by a read on the loop

    try:
        found, on_loop = asyncio.run(load([n.id for n in many]))
        assert [n.id for n in found if n] == [n.id for n in many] and not on_loop
        found, on_loop = asyncio.run(load([n.id for n in many[:INLINE_READ_IDS]]))
        assert len([n for n in found if n]) == INLINE_READ_IDS and on_loop
    finally:
        store.close()


def test_reads_on_the_event_loop_race_writers_and_see_whole_states(
    served: tuple[Client, Counted, GraphStore],
) -> None:
    """Through a real server, four threads move an alias between versions while four fetch
    the version it names: every fetch answers (on SQLite, on the event loop, never waiting
    on the writers), and names a version that held the alias then (a whole committed state,
    never an error or a half-written one)."""
    client, _, _ = served
    weights = client.backend.artifacts.put_bytes(b"weights").digest
    versions = [client.register_model_version("race", digest=weights) for _ in range(4)]
    client.set_alias(versions[0].node_id, "champion", reason="start")
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[int] = []

    def write(k: int) -> None:
        try:
            for i in range(15):
                mv = versions[(k + i) % len(versions)]
                client.set_alias(mv.node_id, "champion", reason=f"w{k}-{i}")
        except BaseException as e:
            errors.append(e)

    def read() -> None:
        try:
            while not stop.is_set():
                found = client.get_model_version("race@champion")
                assert "champion" in found.aliases
                seen.append(found.version)
        except BaseException as e:
            errors.append(e)

    readers = [threading.Thread(target=read) for _ in range(4)]
    writers = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors[:3]
    assert seen and set(seen) <= {1, 2, 3, 4}
    assert client.get_model_version("race@champion").aliases == ["champion"]


def test_a_request_makes_its_loaders_on_first_use_and_remembers_what_it_read(
    tmp_path: Path,
) -> None:
    """A request's context makes no loader until one is used (most requests use none); a node
    the request read (``remember``, as ``node(ref:)`` does) is what its node loader answers
    later in the request, without reading the store again."""
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    node = Node("dataset:a", "Dataset", {"name": "a"})
    store.upsert_nodes([node])

    async def main() -> tuple[bool, Node | None, Node | None]:
        ctx = Context(Services(store, None, LineageService(store), None))
        made_early = any(k in ctx.__dict__ for k in ("nodes", "adjacent", "summaries"))
        ctx.remember(store.get_node("dataset:a"))
        store.delete_nodes(["dataset:a"])  # gone from the store: the request's read stands
        remembered = await ctx.nodes.load("dataset:a")
        fresh = await Context(Services(store, None, LineageService(store), None)).nodes.load(
            "dataset:a"
        )
        return made_early, remembered, fresh

    try:
        made_early, remembered, fresh = asyncio.run(main())
        assert not made_early
        assert remembered is not None and remembered.props == {"name": "a"}
        assert fresh is None
    finally:
        store.close()


def test_the_server_process_moves_what_it_holds_at_start_out_of_the_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lineagehub serve``'s app factory freezes what the process holds once the app is
    built (modules, the schema): the collector's full passes no longer walk it."""
    import gc

    from lineagehub.interfaces.server import app_from_env

    monkeypatch.setenv("LINEAGEHUB_STORE", f"sqlite:///{tmp_path / 'hub.db'}")
    monkeypatch.setenv("LINEAGEHUB_ARTIFACTS", (tmp_path / "artifacts").as_uri())
    gc.unfreeze()
    interval = sys.getswitchinterval()  # the factory sets the process's; this one's is kept
    try:
        app = app_from_env()
        assert gc.get_freeze_count() > 0
        app.state.services.store.close()
    finally:
        gc.unfreeze()
        sys.setswitchinterval(interval)


def test_only_a_short_request_may_write_on_the_event_loop(tmp_path: Path) -> None:
    """The server marks a request short when its body has a known length of at most 16 KiB;
    a longer one, or one sent in chunks, writes in a worker thread (a large profile or
    signature is never encoded on the event loop)."""
    from starlette.requests import Request

    from lineagehub.interfaces.server import _GraphQL

    store = open_store("sqlite://")
    app = create_app(Settings(data_dir=tmp_path), store=store)
    view = _GraphQL(app.state.services, 2.0)

    def context(headers: list[tuple[bytes, bytes]]) -> Context:
        scope = {"type": "http", "method": "POST", "path": "/graphql", "headers": headers}
        return asyncio.run(view.get_context(Request(scope), None))

    try:
        assert context([(b"content-length", b"2000")]).short_request
        assert not context([(b"content-length", str(16 * 1024 + 1).encode())]).short_request
        assert not context([(b"transfer-encoding", b"chunked")]).short_request
    finally:
        store.close()
