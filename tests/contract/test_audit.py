"""The audit log: a hash chain appended in the writer's transaction, verified end to end."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import pytest

from lineagehub.graph import GraphStore, Node, ValidationError, open_store
from lineagehub.graph.audit import (
    GENESIS,
    AuditEntry,
    CheckpointPolicy,
    canonical_json,
    entry_hash,
    payload_digest,
    verify_chain,
)
from lineagehub.graph.sqlite import SqliteStore


class Boom(Exception):
    pass


def _append(store: GraphStore, n: int, target: str = "r1") -> list[AuditEntry]:
    return [store.append_audit("user:ann", "node.upsert", target, {"i": i}) for i in range(n)]


def test_append_read_and_head(store: GraphStore) -> None:
    assert store.audit_head() is None
    assert store.read_audit() == []
    first = store.append_audit("user:ann", "node.upsert", "r1", {"label": "Run", "ü": 1})
    assert first.seq == 1
    assert first.prev_hash == GENESIS
    assert first.payload_digest == payload_digest({"ü": 1, "label": "Run"})
    assert first.time.endswith("Z")
    second = store.append_audit("svc:ci", "edge.upsert", "e:1", {})
    assert second.seq == 2
    assert second.prev_hash == first.hash
    assert store.audit_head() == second
    assert store.read_audit() == [first, second]
    assert store.read_audit(after_seq=1) == [second]
    assert store.read_audit(limit=1) == [first]
    assert store.read_audit(target="e:1") == [second]
    assert store.read_audit(target="nothing") == []


def test_the_chain_verifies(store: GraphStore) -> None:
    assert store.verify_audit().ok
    entries = _append(store, 5)
    result = store.verify_audit()
    assert result.ok and result.checked == 5 and result.first_bad_seq is None
    assert verify_chain(store.read_audit(after_seq=2), after=entries[1]).ok
    assert list(store.iter_audit(page_size=2)) == entries


def test_hash_and_digest_are_over_canonical_json() -> None:
    assert canonical_json({"b": [1, 2.5], "a": "é"}) == '{"a":"é","b":[1,2.5]}'.encode()
    h = entry_hash(1, "2024-01-01T00:00:00.000000Z", "a", "b", "c", "sha256:x", GENESIS)
    assert h.startswith("sha256:") and len(h) == len("sha256:") + 64


def test_entries_roll_back_with_their_transaction(store: GraphStore) -> None:
    _append(store, 1)
    with pytest.raises(Boom), store.transaction():
        store.upsert_nodes([Node("r", "Run")])
        store.append_audit("user:ann", "node.upsert", "r", {"label": "Run"})
        raise Boom
    assert store.get_nodes(["r"]) == [None]
    assert [e.seq for e in store.read_audit()] == [1]
    with store.transaction():
        store.upsert_nodes([Node("r", "Run")])
        entry = store.append_audit("user:ann", "node.upsert", "r", {"label": "Run"})
        assert store.audit_head() == entry  # visible inside its transaction
    assert entry.seq == 2  # no gap left by the rolled-back entry
    assert store.verify_audit().ok


def test_appends_in_one_transaction_chain_onto_each_other_with_heads_due_among_them(
    store: GraphStore,
) -> None:
    """Inside a transaction the head is the entry it appended last (not read again): the
    chain and the tree heads come out as appended one at a time; a rolled-back transaction's
    entries are forgotten, so the next transaction chains onto what was committed."""
    store.configure_audit(CheckpointPolicy(every=3, key=b"k"))
    with store.transaction():
        store.upsert_nodes([Node("r", "Run")])
        inside = _append(store, 5, "r")
        assert store.audit_head() == inside[-1]
    assert [e.seq for e in inside] == [1, 2, 3, 4, 5]
    assert [e.prev_hash for e in inside[1:]] == [e.hash for e in inside[:-1]]
    with pytest.raises(Boom), store.transaction():
        _append(store, 2, "r")
        raise Boom
    with store.transaction():
        after = _append(store, 2, "r")
    assert [e.seq for e in after] == [6, 7]
    assert after[0].prev_hash == inside[-1].hash
    assert store.read_audit() == [*inside, *after]
    assert [h.tree_size for h in store.iter_checkpoints()] == [3, 6]
    assert store.verify_audit().ok


def test_a_transaction_chains_onto_entries_another_store_appended_before_it(
    backend_uri: str,
) -> None:
    first, second = open_store(backend_uri), open_store(backend_uri)
    try:
        with first.transaction():
            _append(store=first, n=2, target="a")
        second.append_audit("user:bob", "node.upsert", "b", {})
        with first.transaction():
            entry = first.append_audit("user:ann", "node.upsert", "a", {})
            again = first.append_audit("user:ann", "node.upsert", "a", {})
        assert (entry.seq, again.seq) == (4, 5)
        assert second.verify_audit().ok
    finally:
        first.close()
        second.close()


def test_concurrent_appends_make_a_gap_free_chain(store: GraphStore) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(10):
                store.append_audit(f"worker:{t}", "metric.log", f"r{t}", {"i": i})
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    entries = store.read_audit()
    assert [e.seq for e in entries] == list(range(1, 41))
    assert store.verify_audit().ok
    assert len(store.read_audit(target="r2")) == 10


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", "a", "t", {}), "actor"),
        ((None, "a", "t", {}), "actor"),
        (("u", "x" * 513, "t", {}), "action"),
        (("u", 3, "t", {}), "action"),
        (("u", "a", "", {}), "target"),
        (("u", "a", "t", []), "payload"),
        (("u", "a", "t", {"x": float("nan")}), "payload"),
        (("u", "a", "t", {"x": {1, 2}}), "payload"),
        (("u", "a", "t", {"x": {3: "int key"}}), "payload"),
    ],
)
def test_bad_input_names_the_field(store: GraphStore, args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        store.append_audit(*args)
    assert info.value.field == field
    assert store.audit_head() is None


def test_bad_read_arguments(store: GraphStore) -> None:
    with pytest.raises(ValidationError) as info:
        store.read_audit(after_seq=-1)
    assert info.value.field == "after_seq"
    with pytest.raises(ValidationError) as info:
        store.read_audit(limit=0)
    assert info.value.field == "limit"


# --- tampering: reaching under the store, as someone with access to the database would --------

FIELDS = ("seq", "time", "actor", "action", "target", "payload_digest", "prev_hash", "hash")


class Tamper:
    """Edits the audit log behind the store's back: sqlite3 on the file, Cypher on Neo4j."""

    def __init__(self, store: GraphStore) -> None:
        self.store = store
        if isinstance(store, SqliteStore) and store.memory:
            pytest.skip("an in-memory SQLite database cannot be reached from outside the store")

    def _sql(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        assert isinstance(self.store, SqliteStore)
        conn = sqlite3.connect(self.store.path)
        with conn:
            conn.execute(sql, params)
        conn.close()

    def _cypher(self, text: str, **params: Any) -> None:
        with self.store._driver.session() as session:  # type: ignore[attr-defined]
            session.run(text, params).consume()

    def set_actor(self, seq: int, actor: str) -> None:
        if isinstance(self.store, SqliteStore):
            self._sql("UPDATE audit SET actor = ? WHERE seq = ?", (actor, seq))
        else:
            self._cypher(
                "MATCH (a:AuditEntry {seq: $seq}) SET a.actor = $actor", seq=seq, actor=actor
            )

    def delete(self, seq: int) -> None:
        if isinstance(self.store, SqliteStore):
            self._sql("DELETE FROM audit WHERE seq = ?", (seq,))
        else:
            self._cypher("MATCH (a:AuditEntry {seq: $seq}) DELETE a", seq=seq)

    def insert(self, *values: Any) -> None:
        if isinstance(self.store, SqliteStore):
            self._sql(
                "INSERT INTO audit (seq, time, actor, action, target, payload_digest, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
        else:
            self._cypher("CREATE (a:AuditEntry) SET a = $props", props=dict(zip(FIELDS, values)))


def test_an_edited_entry_is_reported_as_altered(store: GraphStore) -> None:
    tamper = Tamper(store)
    _append(store, 5)
    tamper.set_actor(3, "user:mallory")
    result = store.verify_audit()
    assert not result.ok
    assert (result.first_bad_seq, result.kind, result.checked) == (3, "altered", 2)
    assert result.problem is not None and "3" in result.problem


def test_a_deleted_entry_is_reported(store: GraphStore) -> None:
    tamper = Tamper(store)
    _append(store, 5)
    tamper.delete(3)
    result = store.verify_audit()
    assert not result.ok
    assert (result.first_bad_seq, result.kind) == (3, "deleted")


def test_a_forged_entry_is_reported(store: GraphStore) -> None:
    tamper = Tamper(store)
    entries = _append(store, 4)
    # A well-formed entry (its own hash is right) that links to entry 2, not to entry 4.
    seq, time, digest = 5, entries[-1].time, payload_digest({"forged": True})
    forged = entry_hash(seq, time, "user:mallory", "approve", "m1", digest, entries[1].hash)
    tamper.insert(seq, time, "user:mallory", "approve", "m1", digest, entries[1].hash, forged)
    result = store.verify_audit()
    assert not result.ok
    assert (result.first_bad_seq, result.kind) == (5, "inserted")


def test_a_forged_entry_put_in_a_deleted_ones_place_is_reported(store: GraphStore) -> None:
    tamper = Tamper(store)
    entries = _append(store, 4)
    tamper.delete(2)
    time, digest = entries[1].time, payload_digest({"forged": True})
    own = entry_hash(2, time, "user:mallory", "approve", "m1", digest, entries[0].hash)
    tamper.insert(2, time, "user:mallory", "approve", "m1", digest, entries[0].hash, own)
    result = store.verify_audit()
    assert not result.ok
    assert (result.first_bad_seq, result.kind) == (3, "inserted")  # 3 no longer links to 2
