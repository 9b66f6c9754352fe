"""One nesting rule for every transaction: graph.store.nested_transaction, used by both
backends' ``transaction()`` and by the services' after-commit events."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from lineagehub.graph import GraphStore, Node, open_store
from lineagehub.graph.store import nested_transaction
from lineagehub.services.webhooks import AfterCommit


class Boom(Exception):
    pass


class State(threading.local):
    depth: int = 0


class Recorder:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.state = State()

    @contextmanager
    def outermost(self) -> Iterator[None]:
        self.log.append(f"begin@{self.state.depth}")
        try:
            yield
        except BaseException:
            self.log.append(f"rollback@{self.state.depth}")
            raise
        self.log.append(f"commit@{self.state.depth}")

    def transaction(self) -> Any:
        return nested_transaction(self.state, self.outermost)


def test_only_the_outermost_block_begins_and_commits() -> None:
    r = Recorder()
    with r.transaction():
        assert r.state.depth == 1
        with r.transaction():
            assert r.state.depth == 2
            with r.transaction():
                assert r.state.depth == 3
            assert r.state.depth == 2
    # the depth is back to 0 before the commit runs
    assert r.log == ["begin@0", "commit@0"] and r.state.depth == 0


def test_an_error_rolls_back_once_from_any_depth() -> None:
    r = Recorder()
    with pytest.raises(Boom), r.transaction(), r.transaction():
        raise Boom
    assert r.log == ["begin@0", "rollback@0"] and r.state.depth == 0
    with r.transaction():
        pass
    assert r.log[-2:] == ["begin@0", "commit@0"]


def test_an_error_caught_inside_does_not_roll_back() -> None:
    r = Recorder()
    with r.transaction():
        with pytest.raises(Boom), r.transaction():
            raise Boom
        assert r.state.depth == 1
    assert r.log == ["begin@0", "commit@0"]


def test_each_thread_nests_on_its_own() -> None:
    r = Recorder()
    seen: list[int] = []

    def other() -> None:
        seen.append(r.state.depth)
        with r.transaction():
            seen.append(r.state.depth)

    with r.transaction():
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen == [0, 1] and r.log.count("begin@0") == 2


@pytest.fixture
def memory_store() -> Iterator[GraphStore]:
    with open_store("sqlite://") as s:
        yield s


def test_events_are_sent_once_the_outermost_block_commits(memory_store: GraphStore) -> None:
    sent: list[str] = []
    events = AfterCommit(memory_store, lambda name, payload: sent.append(name))
    with events.transaction():
        memory_store.upsert_nodes([Node("a", "Run")])
        with events.transaction():
            events.emit("model_version.created", {"id": "a"})
        assert sent == []
    assert sent == ["model_version.created"]
    with pytest.raises(Boom), events.transaction(), events.transaction():
        events.emit("model_version.created", {"id": "b"})
        raise Boom
    assert sent == ["model_version.created"]  # rolled back: nothing sent
    events.emit("model_version.created", {"id": "c"})  # outside any block: at once
    assert sent == ["model_version.created", "model_version.created"]
