"""The audit log of tracking writes, over a real SQLite file: what is appended, by whom, that
failed writes leave nothing, and that tampering with the file or an export is found."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lineagehub import Settings, open_store
from lineagehub.artifacts import FileArtifactStore
from lineagehub.graph import ConflictError, GraphStore
from lineagehub.graph.audit import payload_digest
from lineagehub.graph.errors import ValidationError
from lineagehub.ingest.client import Client
from lineagehub.ingest.datasets import fingerprint
from lineagehub.interfaces.cli import main
from lineagehub.services.audit import export_jsonl, verify_export
from lineagehub.services.tracking import Metric, TrackingService
from lineagehub.vocabulary import Run

KEY = "s3cret-audit-key"


@pytest.fixture
def db(backend_uri: str) -> str:
    """The hub's store URI, on each backend."""
    return backend_uri


@pytest.fixture
def store(db: str) -> Iterator[GraphStore]:
    s = open_store(db)
    yield s
    s.close()


@pytest.fixture
def tracking(store: GraphStore, tmp_path: Path) -> TrackingService:
    return TrackingService(store, FileArtifactStore(tmp_path / "artifacts"), actor="bob")


def actions(store: GraphStore) -> list[tuple[str, str, str]]:
    return [(e.actor, e.action, e.target) for e in store.iter_audit()]


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def now() -> datetime:
    return datetime.now(timezone.utc)


def write_history(tracking: TrackingService) -> str:
    """A run with every kind of write; returns its id."""
    run = tracking.start_run(Run(name="fit", project="churn", user="bob"))
    tracking.log_batch(
        run.id,
        params={"depth": 3},
        metrics=[Metric("loss", 0.9, 0, now()), Metric("loss", 0.4, 1, now())],
        tags={"team": "growth"},
    )
    tracking.log_dataset(run.id, fingerprint([{"x": 1}]), name="toy")
    info = tracking.artifacts.put_bytes(b"weights")
    tracking.log_artifact(run.id, info, name="weights")
    tracking.log_model(run.id, info, name="toy-model")
    tracking.end_run(run.id)
    return run.id


def test_every_tracking_write_appends_one_entry_in_order(
    tracking: TrackingService, store: GraphStore
) -> None:
    run_id = write_history(tracking)
    assert actions(store) == [
        ("bob", "run.start", run_id),
        ("bob", "run.log", run_id),
        ("bob", "dataset.log", run_id),
        ("bob", "artifact.log", run_id),
        ("bob", "model_version.create", "mv:toy-model/1"),
        ("bob", "run.end", run_id),
    ]
    # the payload is digested: whoever holds it can show what was logged
    logged = store.read_audit(1, 1)[0]
    expected = {
        "counts": {"params": 1, "metrics": 2, "tags": 1},
        "params": {"depth": 3},
        "tags": {"team": "growth"},
        "metrics": {"loss": {"points": 2, "last": 0.4}},
    }
    assert logged.payload_digest == payload_digest(expected)
    assert store.verify_audit().ok and store.verify_audit().checked == 6


def test_the_sdk_records_its_user_and_the_default_is_the_configured_user(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client(db, artifacts=str(tmp_path / "a"), settings=Settings(user="ann"))
    try:
        with client.start_run("sdk", params={"lr": 0.1}) as run:
            run.log_metrics({"auc": 0.8}, step=0)
            run.log_metrics({"auc": 0.9}, step=1)
        assert client.store is not None
        got = actions(client.store)
    finally:
        client.close()
    assert got[0] == ("ann", "run.start", run.id) and got[-1] == ("ann", "run.end", run.id)
    assert {a for a, _, _ in got} == {"ann"} and {t for _, _, t in got} == {run.id}
    assert len(got) <= 4  # one entry per call, not one per metric point

    monkeypatch.setenv("LINEAGEHUB_USER", "carol")
    with open_store(db) as store:
        assert TrackingService(store, FileArtifactStore(tmp_path / "a")).actor == "carol"


def test_a_failed_write_leaves_no_entry(tracking: TrackingService, store: GraphStore) -> None:
    run = tracking.start_run(Run(name="p"))
    tracking.log_batch(run.id, params={"lr": 0.1})
    head = store.audit_head()
    with pytest.raises(ConflictError):
        tracking.log_batch(run.id, params={"epochs": 3, "lr": 0.5})
    with pytest.raises(ConflictError):
        tracking.start_run(Run(id=run.id, name="again"))
    assert store.audit_head() == head
    tracking.end_run(run.id)
    head = store.audit_head()
    with pytest.raises(ConflictError, match="finished"):
        tracking.end_run(run.id)
    assert store.audit_head() == head and store.verify_audit().ok


def test_stale_kills_are_audited(store: GraphStore, tmp_path: Path) -> None:
    tracking = TrackingService(
        store, FileArtifactStore(tmp_path / "a"), stale_after=timedelta(0), actor="reaper"
    )
    run = tracking.start_run(Run(name="dies"))
    time.sleep(0.01)
    assert tracking.mark_stale_runs() == [run.id]
    assert actions(store)[-1] == ("reaper", "run.killed", run.id)


# --- tampering -------------------------------------------------------------------------------


def tamper(db: str, sql: str, cypher: str) -> None:
    """Edit the audit log behind the hub's back: SQL on the SQLite file, Cypher on Neo4j."""
    if db.startswith("sqlite:///"):
        conn = sqlite3.connect(db.removeprefix("sqlite:///"))
        with conn:
            conn.execute(sql)
        conn.close()
        return
    with open_store(db) as store, store._driver.session() as session:  # type: ignore[attr-defined]
        session.run(cypher).consume()


def test_verify_finds_an_edited_and_a_deleted_entry(
    tracking: TrackingService, store: GraphStore, db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write_history(tracking)
    uri = db
    code, out, _ = cli(capsys, "audit", "verify", "--store", uri)
    assert code == 0 and "intact: 6 entries" in out

    tamper(
        db,
        "UPDATE audit SET actor = 'mallory' WHERE seq = 4",
        "MATCH (a:AuditEntry {seq: 4}) SET a.actor = 'mallory'",
    )
    code, out, _ = cli(capsys, "audit", "verify", "--store", uri)
    assert code == 7
    assert "seq 4" in out and "altered" in out and "mallory" in out
    code, out, _ = cli(capsys, "audit", "verify", "--store", uri, "--json")
    data = json.loads(out)
    assert code == 7 and data["ok"] is False
    assert (data["firstBadSeq"], data["kind"], data["checked"]) == (4, "altered", 3)
    assert data["entry"]["actor"] == "mallory"

    tamper(  # put back
        db,
        "UPDATE audit SET actor = 'bob' WHERE seq = 4",
        "MATCH (a:AuditEntry {seq: 4}) SET a.actor = 'bob'",
    )
    tamper(db, "DELETE FROM audit WHERE seq = 2", "MATCH (a:AuditEntry {seq: 2}) DELETE a")
    code, out, _ = cli(capsys, "audit", "verify", "--store", uri, "--json")
    data = json.loads(out)
    assert code == 7 and (data["firstBadSeq"], data["kind"]) == (2, "deleted")
    code, out, _ = cli(capsys, "audit", "verify", "--store", uri)
    assert code == 7 and "seq 2" in out


def test_export_and_verify_the_copy(
    tracking: TrackingService,
    store: GraphStore,
    db: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_history(tracking)
    monkeypatch.setenv("LINEAGEHUB_AUDIT_KEY", KEY)
    out_file = tmp_path / "audit.jsonl"
    code, out, _ = cli(capsys, "audit", "export", "--store", db, "-o", str(out_file), "--json")
    data = json.loads(out)
    assert code == 0 and data["count"] == 6 and data["signed"] is True
    lines = out_file.read_text().splitlines()
    assert len(lines) == 7
    trailer = json.loads(lines[-1])
    assert trailer["checkpoint"]["seq"] == 6 and len(trailer["signature"]) == 64
    assert trailer["checkpoint"]["hash"] == store.audit_head().hash  # type: ignore[union-attr]

    code, out, _ = cli(capsys, "audit", "verify-export", str(out_file))
    assert code == 0 and "signature verified" in out
    assert verify_export(out_file, KEY.encode()).ok

    # the wrong key
    bad = verify_export(out_file, b"another key")
    assert not bad.ok and bad.kind == "signature"

    # an edited copy
    copy = tmp_path / "edited.jsonl"
    entry = json.loads(lines[2])
    entry["actor"] = "mallory"
    copy.write_text("\n".join([*lines[:2], json.dumps(entry), *lines[3:]]) + "\n")
    code, out, _ = cli(capsys, "audit", "verify-export", str(copy), "--json")
    data = json.loads(out)
    assert code == 7 and (data["first_bad_seq"], data["kind"]) == (3, "altered")

    # the newest entry cut off (the chain alone would still hold), checkpoint kept
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join([*lines[:5], lines[6]]) + "\n")
    result = verify_export(cut, KEY.encode())
    assert not result.ok and result.kind == "checkpoint"

    # ... and the checkpoint rewritten to match: the signature no longer does
    forged = dict(trailer)
    last = json.loads(lines[4])
    forged["checkpoint"] = {**trailer["checkpoint"], "seq": 5, "count": 5, "hash": last["hash"]}
    cut.write_text("\n".join([*lines[:5], json.dumps(forged)]) + "\n")
    result = verify_export(cut, KEY.encode())
    assert not result.ok and result.kind == "signature"
    code, _, _ = cli(capsys, "audit", "verify-export", str(cut))
    assert code == 7

    # one byte that is not UTF-8: tampering found (exit 7), not a traceback
    raw = bytearray(out_file.read_bytes())
    raw[raw.index(b'"actor"') + 10] = 0xFF
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(bytes(raw))
    result = verify_export(broken, KEY.encode())
    assert not result.ok and "UTF-8" in (result.problem or "")
    code, _, err = cli(capsys, "audit", "verify-export", str(broken))
    assert code == 7 and "Traceback" not in err
    head = tmp_path / "head.json"
    head.write_bytes(b"\xff")
    code, _, err = cli(capsys, "audit", "verify", "--store", db, "--against", str(head))
    assert code == 2 and "not UTF-8" in err


def test_unsigned_export(store: GraphStore, tracking: TrackingService, tmp_path: Path) -> None:
    write_history(tracking)
    path = tmp_path / "plain.jsonl"
    reported: list[int] = []
    result = export_jsonl(store, path, None, reported.append)
    assert (result.count, result.signed) == (6, False)
    assert sum(reported) == 6  # the progress callback saw every entry
    plain = verify_export(path, None)
    assert plain.ok and not plain.signature_verified
    keyed = verify_export(path, KEY.encode())  # a key demands a signature
    assert not keyed.ok and keyed.kind == "signature"
    empty = tmp_path / "empty.db"
    with open_store(f"sqlite:///{empty}") as fresh:
        assert export_jsonl(fresh, tmp_path / "none.jsonl", KEY.encode()).count == 0
    assert verify_export(tmp_path / "none.jsonl", KEY.encode()).ok


def test_every_actor_is_an_agent_node(tmp_path: Path) -> None:
    from lineagehub.artifacts import open_artifact_store
    from lineagehub.graph import open_store
    from lineagehub.services.tracking import TrackingService
    from lineagehub.vocabulary import Run

    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    tracking = TrackingService(
        store, open_artifact_store((tmp_path / "a").as_uri()), actor="ci-bot"
    )
    run = tracking.start_run(Run(name="r"))
    tracking.end_run(run.id)
    agent = store.get_node("agent:ci-bot")
    assert agent.label == "Agent" and agent.props["name"] == "ci-bot"
    assert {e.actor for e in store.read_audit()} == {"ci-bot"}
    store.close()


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    props=st.dictionaries(st.text(), _JSON, max_size=6),
    edge=st.booleans(),
    text=st.text(min_size=1),
)
def test_a_records_digest_is_that_of_its_canonical_json(
    props: dict[str, object], edge: bool, text: str
) -> None:
    """A record's digest covers the canonical JSON of its whole state, and each field's short
    digest that field's canonical JSON, whatever the properties (the digest is assembled
    from the fields' encodings, so both must agree byte for byte)."""
    import hashlib

    from lineagehub.graph.audit import FIELD_DIGEST_HEX, canonical_json, digest, state_digest

    state: dict[str, object] = (
        {"id": text, "kind": "USED", "source": "a", "target": text, "props": props}
        if edge
        else {"id": text, "label": "Run", "props": props}
    )
    got = state_digest(state)
    assert got["digest"] == digest(canonical_json(state))
    fields = {k: v for k, v in state.items() if k != "props"}
    fields.update({f"props.{k}": v for k, v in props.items()})
    assert got["fields"] == {
        k: hashlib.sha256(canonical_json(v)).hexdigest()[:FIELD_DIGEST_HEX]
        for k, v in fields.items()
    }
    assert ("ends" in got) == edge


@settings(max_examples=500, deadline=None)
@given(value=_JSON | st.text() | st.integers(min_value=-(2**80), max_value=2**80))
def test_canonical_json_is_json_dumps_with_sorted_keys_byte_for_byte(value: object) -> None:
    """Digests already written were taken over ``json.dumps``'s bytes: the short paths for
    scalars must give the same bytes (strings with quotes, escapes, control characters and
    non-ASCII text included)."""
    import json

    from lineagehub.graph.audit import canonical_json

    expected = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    assert canonical_json(value) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), [1.0, float("nan")]])
def test_canonical_json_refuses_what_json_cannot_carry(value: object) -> None:
    from lineagehub.graph.audit import canonical_json

    with pytest.raises(ValueError):
        canonical_json(value)
    with pytest.raises(TypeError):
        canonical_json({"x": object()})
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate has no UTF-8
        canonical_json("\ud800")


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"a": [1, {"b": float("nan")}]}, "payload.a[1].b"),
        ({"a": {1: "x"}}, "payload.a"),
        ({"a": object()}, "payload.a"),
        ({"a": [1, 2, (3, {"b": float("-inf")})]}, "payload.a[2][1].b"),
    ],
)
def test_a_payload_that_is_not_json_is_refused_naming_the_place(payload: dict, where: str) -> None:
    from lineagehub.graph.audit import payload_digest

    with pytest.raises(ValidationError) as e:
        payload_digest(payload)
    assert e.value.field == "payload" and str(e.value).startswith(where + ":")


def test_a_payload_nested_too_deeply_is_refused_and_one_within_the_limit_is_not() -> None:
    import enum

    from lineagehub.graph.audit import MAX_PAYLOAD_DEPTH, payload_digest

    def nest(levels: int) -> dict:
        value: object = "leaf"
        for _ in range(levels):
            value = [value]
        return {"a": value}

    class Color(str, enum.Enum):
        RED = "red"

    assert payload_digest(nest(MAX_PAYLOAD_DEPTH - 1)).startswith("sha256:")
    with pytest.raises(ValidationError, match="nested too deeply"):
        payload_digest(nest(MAX_PAYLOAD_DEPTH))
    # values of subclasses of the JSON types are JSON (checked the long way)
    assert payload_digest({"c": Color.RED}) == payload_digest({"c": "red"})


_NO_FLOATS = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(st.characters(codec="utf-8")),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8")), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(value=st.dictionaries(st.text(), _NO_FLOATS, min_size=1) | st.lists(_NO_FLOATS, min_size=1))
def test_canonical_json_of_containers_without_floats_is_json_dumps_byte_for_byte(
    value: object,
) -> None:
    """Those take orjson: every character outside the surrogates (control characters, quotes,
    U+2028, astral planes), keys sorted by code point, integers past 64 bits (the standard
    path), as ``json.dumps`` writes them."""
    import json

    from lineagehub.graph.audit import canonical_json

    expected = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    assert canonical_json(value) == expected


def test_canonical_json_of_every_character_and_of_mixed_keys_is_json_dumps() -> None:
    import json

    from lineagehub.graph.audit import canonical_json

    every = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    cases: list[object] = [
        every,
        {c: i for i, c in enumerate(every[:5000:7] + every[-3000::11])},
        {"b": [1, None, True], "a": {"é": "\u2028", "\U0001f600": "\x00\x1f\x7f"}},
        {"x": {1: "an int key"}},  # the standard path: orjson refuses it, json.dumps writes "1"
        [{"nested": [[[[["deep"]]]]]}] * 3,
    ]
    for value in cases:
        expected = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
        assert canonical_json(value) == expected
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate has no UTF-8, whichever path
        canonical_json({"a": ["\udc80"]})
    with pytest.raises(TypeError):  # orjson would write an Enum's value
        import enum

        canonical_json({"a": enum.Enum("E", "X").X})
