"""Tampering ``audit verify`` must catch, on a real store file (and on Neo4j where marked):
entries cut off the end or all deleted, an entry edited and the chain recomputed without the
key, a tree head replaced, and a record's property edited behind the hub's back. Each has
its own exit code and names the first bad sequence number; an untouched log verifies."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

# The S3 API server of the artifact tests (moto's, on 127.0.0.1) and its credentials.
from test_artifacts import aws_env, s3_admin, s3_endpoint  # noqa: F401

from lineagehub import open_store
from lineagehub.artifacts import FileArtifactStore
from lineagehub.graph import GraphStore
from lineagehub.graph.audit import (
    EMPTY_ROOT,
    Frontier,
    TreeHead,
    entry_hash,
    next_head,
)
from lineagehub.graph.sqlite import SqliteStore
from lineagehub.ingest.datasets import fingerprint
from lineagehub.interfaces.cli import main
from lineagehub.services.audit import FileHeads, GitHeads, copy_heads, verify_log
from lineagehub.services.tracking import Metric, TrackingService
from lineagehub.vocabulary import Run

KEY = "s3cret-audit-key-never-shown"


@pytest.fixture
def db(backend_uri: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store URI on each backend, with signed heads every 4 entries."""
    monkeypatch.setenv("LINEAGEHUB_AUDIT_KEY", KEY)
    monkeypatch.setenv("LINEAGEHUB_AUDIT_CHECKPOINT_EVERY", "4")
    monkeypatch.delenv("LINEAGEHUB_AUDIT_HEADS", raising=False)
    return backend_uri


@pytest.fixture
def store(db: str) -> Iterator[GraphStore]:
    s = open_store(db)
    yield s
    s.close()


def now() -> datetime:
    return datetime.now(timezone.utc)


def write_history(store: GraphStore, tmp_path: Path, runs: int = 2) -> list[str]:
    """Runs with every kind of tracking write (6 entries each); their ids."""
    tracking = TrackingService(store, FileArtifactStore(tmp_path / "artifacts"), actor="bob")
    ids = []
    for i in range(runs):
        run = tracking.start_run(Run(name=f"fit-{i}", project="churn", user="bob"))
        tracking.log_batch(
            run.id,
            params={"depth": 3},
            metrics=[Metric("loss", 0.9, 0, now())],
            tags={"team": "growth"},
        )
        tracking.log_dataset(run.id, fingerprint([{"x": i}]), name="toy")
        info = tracking.artifacts.put_bytes(b"weights %d" % i)
        tracking.log_artifact(run.id, info, name="weights")
        tracking.log_model(run.id, info, name="toy-model")
        tracking.end_run(run.id)
        ids.append(run.id)
    return ids


def verify(capsys: pytest.CaptureFixture[str], db: str, *extra: str) -> tuple[int, Any, str]:
    """``audit verify`` twice: the --json answer and the text one."""
    code = main(["audit", "verify", "--store", db, "--json", *extra])
    out, err = capsys.readouterr()
    assert KEY not in out + err
    data = json.loads(out)
    code2 = main(["audit", "verify", "--store", db, *extra])
    text, err = capsys.readouterr()
    assert KEY not in text + err
    assert code == code2
    return code, data, text


def export_head(capsys: pytest.CaptureFixture[str], db: str, path: Path) -> dict[str, Any]:
    assert main(["audit", "head", "--store", db, "-o", str(path)]) == 0
    out, err = capsys.readouterr()
    assert KEY not in out + err and "signed" in out
    return json.loads(path.read_text())


def run_sql(db: str, *statements: str) -> None:
    conn = sqlite3.connect(db.removeprefix("sqlite:///"))
    with conn:
        for s in statements:
            conn.execute(s)
    conn.close()


def run_cypher(db: str, cypher: str, **params: Any) -> None:
    with open_store(db) as s, s._driver.session() as session:  # type: ignore[attr-defined]
        session.run(cypher, params).consume()


def tamper(db: str, sql: str, cypher: str) -> None:
    if db.startswith("sqlite:///"):
        run_sql(db, sql)
    else:
        run_cypher(db, cypher)


def test_an_untouched_log_verifies_with_its_heads_and_records(
    store: GraphStore, db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_history(store, tmp_path)
    heads = [h.tree_size for h in store.iter_checkpoints()]
    # One head on the first entry (none before it: the time rule), then every 4 entries.
    assert heads == [1, 5, 9]
    assert all(h.mac for h in store.iter_checkpoints())
    export_head(capsys, db, tmp_path / "head.json")
    code, data, text = verify(capsys, db, "--against", str(tmp_path / "head.json"))
    assert code == 0 and data["ok"] and data["checked"] == 12
    assert data["heads_checked"] == 5  # 1, 5, 9 and 12 stored, 12 in the file
    assert data["records_checked"] > 10 and data["unaudited_nodes"] == 0
    assert "audit log intact: 12 entries" in text


def test_the_last_entries_deleted_are_caught(
    store: GraphStore, db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_history(store, tmp_path)
    export_head(capsys, db, tmp_path / "head.json")  # a head at 12, kept elsewhere
    tamper(db, "DELETE FROM audit WHERE seq > 7", "MATCH (a:AuditEntry) WHERE a.seq > 7 DELETE a")
    code, data, text = verify(capsys, db)
    assert code == 9 and data["kind"] == "truncated" and data["firstBadSeq"] == 8
    assert "TAMPERED at seq 8 (truncated)" in text and "entries 8..9 deleted" in text
    # The heads in the store deleted too: only the exported head shows it.
    tamper(
        db,
        "DELETE FROM audit_checkpoints WHERE tree_size > 7",
        "MATCH (c:AuditCheckpoint) WHERE c.tree_size > 7 DELETE c",
    )
    code, data, _ = verify(capsys, db, "--no-records")
    assert code == 0  # what a log alone cannot show
    code, data, text = verify(capsys, db, "--against", str(tmp_path / "head.json"))
    assert code == 9 and data["firstBadSeq"] == 8
    assert "entries 8..12 deleted" in text and "head file" in text


def test_every_entry_deleted_is_caught(
    store: GraphStore, db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_history(store, tmp_path, runs=1)
    export_head(capsys, db, tmp_path / "head.json")
    tamper(
        db,
        "DELETE FROM audit",
        "MATCH (a:AuditEntry) DELETE a",
    )
    code, data, text = verify(capsys, db)
    assert code == 9 and data["firstBadSeq"] == 1 and "log ends at seq 0" in text
    tamper(db, "DELETE FROM audit_checkpoints", "MATCH (c:AuditCheckpoint) DELETE c")
    code, data, text = verify(capsys, db, "--against", str(tmp_path / "head.json"))
    assert code == 9 and data["firstBadSeq"] == 1 and "entries 1..6 deleted" in text


def recompute_chain(db: str, seq: int, actor: str) -> None:
    """What someone with write access but no key can do: change entry ``seq`` and recompute
    every hash after it, so the chain is whole again."""
    conn = sqlite3.connect(db.removeprefix("sqlite:///"))
    rows = conn.execute(
        "SELECT seq, time, actor, action, target, payload_digest, prev_hash, hash, records "
        "FROM audit ORDER BY seq"
    ).fetchall()
    prev = None
    with conn:
        for s, t, a, act, tgt, pd, ph, _, rec in rows:
            a = actor if s == seq else a
            ph = prev if prev is not None else ph
            h = entry_hash(s, t, a, act, tgt, pd, ph, rec)
            if s >= seq:
                conn.execute(
                    "UPDATE audit SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                    (a, ph, h, s),
                )
            prev = h
    conn.close()


def forge_heads(db: str, sizes: tuple[int, ...], key: bytes | None) -> list[Any]:
    """The store's heads of these sizes recomputed over the log as it is now (a forger's,
    signed with ``key``: not the hub's)."""
    with SqliteStore(db.removeprefix("sqlite:///")) as raw:
        entries = list(raw.iter_audit())
    forged = [next_head(None, entries[:n], "2026-01-01T00:00:00.000000Z", key) for n in sizes]
    conn = sqlite3.connect(db.removeprefix("sqlite:///"))
    with conn:
        for h in forged:
            conn.execute(
                "UPDATE audit_checkpoints SET root_hash = ?, head_hash = ?, mac = ? "
                "WHERE tree_size = ?",
                (h.root_hash, h.head_hash, h.mac, h.tree_size),
            )
    conn.close()
    return forged


@pytest.fixture
def sqlite_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LINEAGEHUB_AUDIT_KEY", KEY)
    monkeypatch.setenv("LINEAGEHUB_AUDIT_CHECKPOINT_EVERY", "4")
    monkeypatch.delenv("LINEAGEHUB_AUDIT_HEADS", raising=False)
    uri = f"sqlite:///{tmp_path / 'hub.db'}"
    open_store(uri).close()  # a hub, empty (the audit commands never make one)
    return uri


def test_an_entry_edited_and_the_chain_recomputed_is_caught(
    sqlite_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_store(sqlite_db) as store:
        write_history(store, tmp_path)
    recompute_chain(sqlite_db, 6, "mallory")
    # The chain alone is whole again: the old verification passes.
    with open_store(sqlite_db) as store:
        assert store.verify_audit().ok
    code, data, text = verify(capsys, sqlite_db)
    assert code == 10 and data["kind"] == "rewritten"
    # Heads at 1 and 5 still match; the one at 9 does not: the first bad entry is 6.
    assert data["firstBadSeq"] == 6
    assert "TAMPERED at seq 6 (rewritten)" in text and "entries 6..9" in text


def test_a_replaced_head_is_caught(
    sqlite_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_store(sqlite_db) as store:
        write_history(store, tmp_path)
    export_head(capsys, sqlite_db, tmp_path / "head.json")
    recompute_chain(sqlite_db, 6, "mallory")
    # The stored heads recomputed over the forged log, without the key (signed with another).
    forged = forge_heads(sqlite_db, (1, 5, 9), b"guess")
    code, data, text = verify(capsys, sqlite_db, "--no-records")
    assert code == 11 and data["kind"] == "head" and data["firstBadSeq"] == 1
    assert "signature that does not match" in text and "the store" in text
    # A head file replaced by one made without the key: same.
    fake = replace(forged[-1], mac=None).to_dict()
    (tmp_path / "head.json").write_text(json.dumps(fake))
    conn = sqlite3.connect(sqlite_db.removeprefix("sqlite:///"))
    with conn:
        conn.execute("DELETE FROM audit_checkpoints")
    conn.close()
    code, data, text = verify(capsys, sqlite_db, "--against", str(tmp_path / "head.json"))
    assert code == 11 and "is not signed" in text and "head file" in text
    # Without the key the forgery cannot be told (the command says signatures were unchecked).
    import os

    del os.environ["LINEAGEHUB_AUDIT_KEY"]
    code, data, text = verify(capsys, sqlite_db, "--against", str(tmp_path / "head.json"))
    assert "head signatures not checked" in text


def test_a_head_of_the_same_size_that_disagrees_names_the_entries_since_the_last_match(
    sqlite_db: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a key: the auditor keeps the head at 9; entry 6 is rewritten, the chain and the
    store's own head at 9 recomputed to match. The store's head at 9 now matches the log, the
    auditor's does not: the entries since the last head the log matches below it are named
    (it said 'entries 13..12': after the head of the same size that matched)."""
    monkeypatch.delenv("LINEAGEHUB_AUDIT_KEY")
    with open_store(sqlite_db) as store:
        write_history(store, tmp_path)
    assert main(["audit", "head", "--store", sqlite_db, "-o", str(tmp_path / "auditor.json")]) == 0
    capsys.readouterr()
    size = json.loads((tmp_path / "auditor.json").read_text())["tree_size"]
    recompute_chain(sqlite_db, 6, "mallory")
    forge_heads(sqlite_db, (9, size), None)
    _, data, text = verify(capsys, sqlite_db, "--against", str(tmp_path / "auditor.json"))
    # the store's own heads at 9 and at the end were recomputed too: the last head both
    # agree on is 9's, so the entries after it are named
    assert data["kind"] == "rewritten" and data["firstBadSeq"] == 10, text
    assert f"entries 10..{size}" in text and f"{size + 1}..{size}" not in text


def test_a_property_edited_in_the_store_is_named_with_its_field(
    store: GraphStore, db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = write_history(store, tmp_path)[0]
    if db.startswith("sqlite:///"):
        run_sql(
            db,
            f"UPDATE nodes SET props = json_set(props, '$.status', 'FAILED') WHERE id = '{run_id}'",
        )
    else:
        node = store.get_nodes([run_id])[0]
        assert node is not None
        props = json.dumps({**node.props, "status": "FAILED"})
        run_cypher(db, "MATCH (n:Node {id: $id}) SET n._props = $props", id=run_id, props=props)
    code, data, text = verify(capsys, db)
    assert code == 7 and data["kind"] == "record"
    [problem] = data["records"]
    assert problem["record"] == f"node:{run_id}" and problem["fields"] == ["props.status"]
    assert data["firstBadSeq"] == problem["seq"] == 6  # run.end, the run's last entry
    assert f"node:{run_id}: props.status (entry 6)" in text
    # --no-records checks the log alone.
    code, _, _ = verify(capsys, db, "--no-records")
    assert code == 0


def test_a_record_deleted_or_added_to_in_the_store_is_named(
    sqlite_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_store(sqlite_db) as store:
        run_id = write_history(store, tmp_path, runs=1)[0]
        model = next(n.id for n in store.find_nodes("ModelVersion").items)
    run_sql(
        sqlite_db,
        f"UPDATE nodes SET props = json_set(props, '$.injected', 1) WHERE id = '{model}'",
        f"DELETE FROM nodes WHERE id = '{run_id}'",
    )
    code, data, _ = verify(capsys, sqlite_db)
    assert code == 7
    found = {p["record"]: p for p in data["records"]}
    assert found[f"node:{model}"]["fields"] == ["props.injected"]
    assert "deleted outside the hub" in found[f"node:{run_id}"]["problem"]


def test_heads_are_copied_to_a_file_and_a_git_repository(
    sqlite_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    copies = [f"file://{tmp_path / 'copy' / 'heads.jsonl'}"]
    if shutil.which("git"):
        copies.append(f"git://{tmp_path / 'heads-repo'}")
    for uri in copies:
        monkeypatch.setenv("LINEAGEHUB_AUDIT_HEADS", uri)
        db = f"sqlite:///{tmp_path / (uri[:3] + '.db')}"
        with open_store(db) as store:
            write_history(store, tmp_path)
            stored = [h.to_dict() for h in store.iter_checkpoints()]
        copy = FileHeads(tmp_path / "copy" / "heads.jsonl") if uri.startswith("file") else (
            GitHeads(tmp_path / "heads-repo")
        )  # fmt: skip
        assert [h.to_dict() for h in copy.read()] == stored  # written as the log grew
        assert main(["audit", "head", "--store", db]) == 0  # a head at 12, copied too
        capsys.readouterr()
        assert [h.tree_size for h in copy.read()] == [1, 5, 9, 12]
        run_sql(db, "DELETE FROM audit WHERE seq > 10", "DELETE FROM audit_checkpoints")
        code, data, text = verify(capsys, db)
        assert code == 9 and data["firstBadSeq"] == 11 and f"copy {copy.uri}" in text
    if shutil.which("git"):
        import subprocess

        log = subprocess.run(
            ["git", "-C", str(tmp_path / "heads-repo"), "log", "--oneline"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        assert len(log) == 4  # a commit per head


def test_checkpoints_cost_one_write_per_head_not_per_entry(tmp_path: Path) -> None:
    """Counted, not timed: SQLite's total_changes over 100 appends."""
    from lineagehub.graph.audit import CheckpointPolicy

    store = SqliteStore(tmp_path / "c.db")
    store.configure_audit(CheckpointPolicy(every=25, key=b"k"))
    conn = store._conn()
    before = conn.total_changes
    for i in range(100):
        store.append_audit("bob", "x", f"t{i}", {})
    assert conn.total_changes - before == 100 + 4
    assert [h.tree_size for h in store.iter_checkpoints()] == [25, 50, 75, 100]
    # Each head equals the RFC 9162 root computed from scratch.
    f = Frontier()
    for e in store.iter_audit():
        f.push(e.hash)
    assert store.audit_checkpoints(75)[0].root_hash == f.root()
    assert verify_log(store, b"k").ok
    assert not verify_log(store, b"other").ok
    store.close()


def test_an_empty_log_head_and_a_log_that_grew_since(
    sqlite_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head = export_head(capsys, sqlite_db, tmp_path / "empty.json")
    assert head["tree_size"] == 0 and head["root_hash"] == EMPTY_ROOT
    with open_store(sqlite_db) as store:
        write_history(store, tmp_path, runs=1)
        copy = FileHeads(tmp_path / "c.jsonl")
        assert copy_heads(store, copy) == 2  # 0 and 4 (the time rule counts from 0)
        assert copy_heads(store, copy) == 0
    code, _, _ = verify(
        capsys, sqlite_db, "--against", str(tmp_path / "empty.json"), "--heads", copy.uri
    )
    assert code == 0
    # a mistyped --heads read as a copy holding nothing, and "intact" checked nothing against it
    typo = f"file://{tmp_path / 'c.jsonl.typo'}"
    code = main(["audit", "verify", "--store", sqlite_db, "--heads", typo])
    _, err = capsys.readouterr()
    assert code == 4 and "holds no tree head" in err, err


def test_a_head_file_that_is_not_one_is_a_clear_error(
    sqlite_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"tree_size": "many"}\n')
    code = main(["audit", "verify", "--store", sqlite_db, "--against", str(bad)])
    _, err = capsys.readouterr()
    assert code == 2 and "not an audit tree head" in err and "Traceback" not in err
    code = main(["audit", "verify", "--store", sqlite_db, "--against", str(tmp_path / "no")])
    _, err = capsys.readouterr()
    assert code == 3


def test_head_round_trip() -> None:
    h = next_head(None, [], "2026-01-01T00:00:00.000000Z", b"k")
    assert TreeHead.from_dict(h.to_dict()) == replace(h, frontier=())
    assert TreeHead.from_dict(h.to_dict()).mac_ok(b"k")


def test_every_write_path_of_tracking_and_the_registry_leaves_records_that_verify(
    store: GraphStore, db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs, datasets, artifacts, models, aliases, promotions (with approvals), rollbacks and
    deployments: every record they change is in an entry with its digest, so the untouched
    store verifies record by record, and nothing the hub wrote is left unaudited."""
    from lineagehub.services.registry import Policy, PromotionPending, RegistryService

    write_history(store, tmp_path, runs=3)
    registry = RegistryService(
        store,
        policies={
            ("toy-model", "Archived"): Policy(approvals=1, approvers=frozenset({"carol", "dave"}))
        },
    )
    registry.set_alias("toy-model/1", "champion", "ann")
    registry.set_alias("toy-model/2", "champion", "ann")
    registry.remove_alias("toy-model", "champion", "ann")
    registry.promote("toy-model/1", "Staging", "ann", "ok")
    registry.promote("toy-model/2", "Staging", "ann", "better")
    registry.rollback("toy-model", "Staging", "ann", "worse")
    registry.promote("toy-model/3", "Production", "ann", "go")
    d = registry.deploy("toy-model/3", "production", "ops", endpoint="https://m.example/toy")
    registry.deploy("toy-model/2", "production", "ops")
    registry.retire_deployment(d.id, "ops", "done")
    pending = registry.request_promotion("toy-model/1", "Archived", "ann", "old")
    assert isinstance(pending, PromotionPending)
    registry.approve(pending.request_id, "carol", "ok")
    pending = registry.request_promotion("toy-model/2", "Archived", "ann", "old")
    assert isinstance(pending, PromotionPending)
    registry.reject(pending.request_id, "dave", "still serving")
    code, data, text = verify(capsys, db)
    assert code == 0, text
    assert data["unaudited_nodes"] == 0 and data["records_checked"] > 40


@pytest.mark.usefixtures("aws_env")
def test_heads_are_copied_to_an_s3_object_lock_bucket(
    sqlite_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Against a real S3 API server (moto's, on 127.0.0.1): a head per object, which object
    lock keeps from being deleted; a log cut short is caught from the bucket alone."""
    import uuid

    import botocore.exceptions

    admin, endpoint = (
        request.getfixturevalue("s3_admin"),
        request.getfixturevalue("s3_endpoint"),
    )
    bucket = f"lineagehub-heads-{uuid.uuid4().hex[:12]}"
    admin.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    admin.put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}},
        },
    )
    monkeypatch.setenv("LINEAGEHUB_AUDIT_HEADS", f"s3://{bucket}/hub")
    monkeypatch.setenv("LINEAGEHUB_S3_ENDPOINT_URL", endpoint)
    with open_store(sqlite_db) as store:
        write_history(store, tmp_path)
    listed = admin.list_object_versions(Bucket=bucket, Prefix="hub/heads/")["Versions"]
    assert sorted(v["Key"] for v in listed) == [f"hub/heads/{n:020d}.json" for n in (1, 5, 9)]
    with pytest.raises(botocore.exceptions.ClientError):  # locked: not even the owner
        admin.delete_object(Bucket=bucket, Key=listed[0]["Key"], VersionId=listed[0]["VersionId"])
    run_sql(sqlite_db, "DELETE FROM audit WHERE seq > 6", "DELETE FROM audit_checkpoints")
    code, data, text = verify(capsys, sqlite_db)
    assert code == 9 and data["firstBadSeq"] == 7 and f"s3://{bucket}/hub" in text


def test_heads_signed_with_ed25519_are_checked_with_the_public_key(
    sqlite_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public_file = tmp_path / "public.pem"
    public_file.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    monkeypatch.setenv("LINEAGEHUB_AUDIT_SIGNING_KEY", str(key_file))
    with open_store(sqlite_db) as store:
        write_history(store, tmp_path)
        assert all(h.signature for h in store.iter_checkpoints())
    export_head(capsys, sqlite_db, tmp_path / "head.json")
    assert json.loads((tmp_path / "head.json").read_text())["signature"]
    # An auditor with the public key only (no HMAC key, no private key).
    monkeypatch.delenv("LINEAGEHUB_AUDIT_SIGNING_KEY")
    monkeypatch.delenv("LINEAGEHUB_AUDIT_KEY")
    code, data, _ = verify(capsys, sqlite_db, "--public-key", str(public_file))
    assert code == 0 and data["ok"]
    # A head re-signed with another key is caught.
    other = Ed25519PrivateKey.generate()
    with SqliteStore(sqlite_db.removeprefix("sqlite:///")) as raw:
        h = raw.audit_checkpoints(4)[0]
    forged = other.sign(json.dumps(h.signed_body(), sort_keys=True, separators=(",", ":")).encode())
    run_sql(
        sqlite_db, f"UPDATE audit_checkpoints SET signature = '{forged.hex()}' WHERE tree_size = 5"
    )
    code, data, text = verify(capsys, sqlite_db, "--public-key", str(public_file))
    assert code == 11 and data["firstBadSeq"] == 5 and "bad signature" in text


def test_an_entry_digests_the_records_as_stored_whatever_the_write(store: GraphStore) -> None:
    """The digests an entry carries are those of the records as the store holds them when it
    is appended: a new node whose patch deletes a property, a merge onto an existing node,
    one id written twice in one call, an edge created then merged onto, a deletion, and a
    write that failed and was caught inside the transaction (its record keeps its state)."""
    from lineagehub.graph.audit import parse_records, record_digest, record_key
    from lineagehub.graph.errors import HubError
    from lineagehub.graph.model import DELETE, Edge, Node

    store.upsert_nodes([Node("old", "Thing", {"a": 1, "b": [1, 2], "gone": "x"})])
    store.upsert_nodes([Node("doomed", "Thing", {})])
    with store.transaction():
        store.upsert_nodes([Node("new", "Thing", {"a": 1, "nothing": DELETE, "t": "é"})])
        store.upsert_nodes([Node("old", "Thing", {"b": {"c": 2}, "gone": DELETE})])
        store.upsert_nodes([Node("twice", "Thing", {"a": 1}), Node("twice", "Thing", {"b": 2})])
        store.upsert_edges([Edge("new", "old", "LINKS", {"w": 1}, id="e1")])
        store.upsert_edges([Edge("new", "old", "LINKS", {"x": [1, {"y": None}]}, id="e1")])
        store.delete_nodes(["doomed"])
        with pytest.raises(HubError):  # a label cannot change: nothing of the write is kept
            store.upsert_nodes([Node("half", "Thing", {}), Node("old", "Other", {"a": 99})])
        with pytest.raises(HubError):
            store.upsert_edges(
                [
                    Edge("new", "old", "LINKS", {"w": 5}, id="e1"),
                    Edge("new", "nowhere", "LINKS", id="e2"),
                ]
            )
        assert store.get_nodes(["half"]) == [None]
        entry = store.append_audit("ann", "test", "new", {})
    records = parse_records(entry.records)
    nodes = dict(zip(["new", "old", "twice"], store.get_nodes(["new", "old", "twice"])))
    assert nodes["old"] is not None and nodes["old"].props == {"a": 1, "b": {"c": 2}}
    for node_id, node in nodes.items():
        assert node is not None
        assert records[record_key("node", node_id)] == record_digest(node), node_id
    [edge] = store.get_edges(["e1"])
    assert edge is not None and edge.props == {"w": 1, "x": [1, {"y": None}]}
    assert records[record_key("edge", "e1")] == record_digest(edge)
    assert records[record_key("node", "doomed")] is None
    assert store.get_edges(["e2"]) == [None]
    assert set(records) == {
        *("node:new", "node:old", "node:twice", "edge:e1", "node:doomed"),
        *("node:half", "edge:e2"),  # noted by the failed writes: recorded as absent
    }
    assert records["node:half"] is None and records["edge:e2"] is None
