"""Model cards, compliance reports, the inventory and the audit proofs a report carries: through
the SDK in both modes (embedded, and a real server over the same data) on both stores, with
real scikit-learn training (per-slice evaluation) and a signed audit log."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import fresh_store_uri
from http_server import HubServer

from lineagehub import Settings, open_store
from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import GraphStore, Node, NotFoundError, ValidationError
from lineagehub.graph.audit import Frontier, TreeHead, leaf_hash
from lineagehub.graph.merkle import MerkleTree, verify_consistency, verify_inclusion
from lineagehub.graph.model import to_iso
from lineagehub.ingest.client import Client
from lineagehub.interfaces.cli.dossier import verify_report
from lineagehub.services.cards import CardService
from lineagehub.services.dossier import report_json, sealed_digest
from lineagehub.services.proofs import check_consistency, check_inclusion, consistency, prove

pytest.importorskip("sklearn", reason="per-slice evaluation trains scikit-learn models")

KEY = "dossier-test-key"


class Hub:
    """A hub (SQLite or the test Neo4j) with a signed audit log; ``client(user)`` acts as
    ``user``: embedded, a client with that user; remote, a client of a server whose actor is
    ``user``."""

    def __init__(self, mode: str, folder: Path, stack: contextlib.ExitStack, backend: str) -> None:
        self.mode, self.folder, self._stack = mode, folder, stack
        folder.mkdir(parents=True, exist_ok=True)
        self.uri = fresh_store_uri(backend, folder)
        self._servers: dict[str, str] = {}

    def settings(self, user: str) -> Settings:
        return Settings(user=user, artifacts=str(self.folder / "artifacts"), audit_key=KEY)

    def store(self) -> GraphStore:
        store = open_store(self.uri, self.settings("admin"))
        self._stack.callback(store.close)
        return store

    def client(self, user: str = "ann") -> Client:
        if self.mode == "embedded":
            c = Client(self.uri, settings=self.settings(user))
        else:
            if user not in self._servers:
                from lineagehub.interfaces.server import create_app

                app = create_app(
                    self.settings(user),
                    store=self.store(),
                    artifacts=open_artifact_store(str(self.folder / "artifacts")),
                )
                self._servers[user] = self._stack.enter_context(HubServer(app)).url
            c = Client(self._servers[user], settings=Settings(user=user))
        self._stack.callback(c.close)
        return c


@pytest.fixture(params=["embedded", "remote"])
def hub(request: pytest.FixtureRequest, store_backend: str, tmp_path: Path) -> Iterator[Hub]:
    with contextlib.ExitStack() as stack:
        yield Hub(request.param, tmp_path / "hub", stack, store_backend)


def train(client: Client, c: float) -> Any:
    """A real logistic regression on 120 rows of scikit-learn's breast-cancer data, evaluated
    per region (a column that is not a feature)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    from lineagehub.ingest import sklearn as lhsk

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X, y = X.iloc[:120, :4], y.iloc[:120]
    region = ["north" if i % 3 else "south" for i in range(len(X))]
    with client.start_run("train", project="onco", capture=False) as run:
        run.log_params({"C": c})
        run.log_dataset(X.assign(target=y), name="cancer", role="train")
        model = LogisticRegression(C=c, max_iter=500).fit(X, y)
        lhsk.evaluate(model, X, y, run=run, slice_by=region, slice_name="region")
        return run.log_model(model, name="onco")


CARD = {
    "intended_use": "Research triage of biopsy results",
    "out_of_scope_uses": ["diagnosis without a clinician"],
    "limitations": "four features only",
    "ethical_considerations": ["errors fall unevenly across regions"],
    "owners": ["ann", "risk-team"],
    "risk_tier": "high",
    "validation_status": "in-validation",
    "next_review_date": "2020-01-01",
}


def test_cards_reports_and_inventory(hub: Hub) -> None:
    ann, bob = hub.client("ann"), hub.client("bob")
    train(ann, 1.0)
    train(ann, 0.5)

    # bad cards are refused whole, naming the field
    for bad, field in (
        ({"risk_tier": "extreme"}, "risk_tier"),
        ({"next_review_date": "soon"}, "next_review_date"),
        ({"colour": "red"}, "colour"),
        ({"owners": [""]}, "owners"),
        # the most a text of the store holds: named as the field, not a revision's path
        ({"intended_use": "x" * 10_001}, "intended_use"),
    ):
        with pytest.raises(ValidationError) as refused:
            ann.set_model_card("onco/2", bad)
        assert refused.value.field == field
    with pytest.raises(NotFoundError):
        ann.set_model_card("onco/9", {"risk_tier": "high"})
    assert ann.model_card("onco/2").revision == 0

    first = ann.set_model_card("onco/2", CARD, reason="first card")
    assert (first.revision, first.updated_by) == (1, "ann")
    assert first.fields["limitations"] == ["four features only"]
    between = datetime.now(timezone.utc)
    second = bob.set_model_card(
        "onco/2", {"validation_status": "validated", "ethical_considerations": None}
    )
    assert (second.revision, second.updated_by) == (2, "bob")
    assert second.fields["validation_status"] == "validated"
    assert "ethical_considerations" not in second.fields
    assert second.fields["owners"] == ["ann", "risk-team"]  # merged, not replaced
    assert ann.model_card("onco/2", as_of=between).fields["validation_status"] == "in-validation"
    assert ann.model_card("onco/2", as_of=between - timedelta(days=1)).revision == 0

    ann.promote("onco/1", "Production", "first")
    ann.promote("onco/2", "Production", "better on the south")
    deployment = ann.deploy("onco/2", "production", endpoint="https://m.example/onco")

    report = ann.compliance_report("onco/2")
    assert report["identity"]["version_id"] == "mv:onco/2"
    assert report["identity"]["stage"] == "Production"
    assert (report["card"]["revision"], report["card"]["validation_status"]) == (2, "validated")
    roles = {d["role"]: d for d in report["data"]["datasets"]}
    assert set(roles) == {"train", "test"}  # the evaluation data too
    data = roles["train"]
    assert data["digest"].startswith("sha256:") and data["schema"] and data["profile"]
    assert report["parameters"]["C"] == 0.5
    [slices] = report["evaluation"]["slices"]
    assert slices["slice_column"] == "region"
    assert set(slices["slices"]) == {"north", "south"}
    assert slices["slices"]["north"]["rows"] == 80
    assert 0 <= slices["slices"]["south"]["metrics"]["accuracy"] <= 1
    assert report["comparison"]["previous"] == "mv:onco/1"
    assert [p["key"] for p in report["comparison"]["params_changed"]] == ["C"]
    [promotion] = report["governance"]["history"]
    assert (promotion["actor"], promotion["to"], promotion["reason"]) == (
        "ann",
        "Production",
        "better on the south",
    )
    [dep] = report["deployments"]
    assert dep["id"] == deployment.id and dep["live"]
    assert {i["kind"] for i in report["open_issues"]} == {"review"}  # 2020-01-01 is past
    assert report["lineage"]["runs_upstream"] == 1
    by_title = {c["title"]: c for c in report["checklist"]}
    assert by_title["Intended use and limitations"]["missing"] == ["card.ethical_considerations"]
    assert by_title["Evaluation and per-slice results"]["complete"]
    assert by_title["Post-market monitoring and alerts"]["missing"] == ["monitoring.windows"]
    actions = [(e["action"], e["actor"]) for e in report["audit"]["entries"]]
    assert ("card.set", "ann") in actions and ("card.set", "bob") in actions
    assert report["audit"]["head"]["mac"]  # signed with the audit key
    assert len(report["audit"]["proofs"]) == len(report["audit"]["entries"])

    # proven offline, with the key
    ok = verify_report(json.loads(json.dumps(report)), KEY.encode())
    assert ok["ok"], ok
    assert ok["checked"] == len(report["audit"]["entries"])

    # an audit section or a card that is not this report's own: each caught, none a crash
    other = ann.compliance_report("onco/1")

    def tampered(change: Any) -> dict[str, Any]:
        copy = json.loads(json.dumps(report))
        change(copy)
        return verify_report(copy, KEY.encode())

    def without_cards(r: dict[str, Any]) -> None:
        kept = [e for e in r["audit"]["entries"] if e["action"] != "card.set"]
        seqs = {e["seq"] for e in kept}
        r["audit"]["entries"] = kept
        r["audit"]["proofs"] = [p for p in r["audit"]["proofs"] if p["entry"]["seq"] in seqs]
        r["card"]["validation_status"] = "validated"

    approved = next(i for i, e in enumerate(report["audit"]["entries"]) if "payload" not in e)
    for change in (
        lambda r: r.update(audit=json.loads(json.dumps(other["audit"]))),  # another version's
        without_cards,  # the card's record dropped with its proofs, the card rewritten
        lambda r: r["card"].update(revision=None, validation_status="validated"),
        lambda r: r["audit"]["entries"][approved].update(payload="approved by the board"),
        lambda r: r["audit"]["entries"].insert(0, dict(r["audit"]["entries"][0])),  # twice
        lambda r: r["audit"]["proofs"].append(1),
        lambda r: r.update(card=[1]),
        lambda r: r["audit"]["entries"].append({"payload": {}}),
    ):
        result = tampered(change)
        assert not result["ok"] and result["problems"], result

    # the report as it was before the second revision and the promotions
    past = ann.compliance_report("onco/2", as_of=between)
    assert past["as_of"] is not None
    assert (past["card"]["revision"], past["card"]["validation_status"]) == (1, "in-validation")
    assert past["identity"]["stage"] == "None"
    assert past["deployments"] == [] and past["governance"]["history"] == []
    assert past["reconstruction"]["not_reconstructed"]
    assert all(e["time"] <= past["as_of"] for e in past["audit"]["entries"])
    assert verify_report(past, KEY.encode())["ok"]
    # a time that has not come: no report of what the hub "knew" then (a review it would
    # call overdue, alerts it cannot have seen)
    with pytest.raises(ValidationError) as future:
        ann.compliance_report("onco/2", as_of=datetime.now(timezone.utc) + timedelta(days=400))
    assert future.value.field == "as_of"

    [row] = ann.model_inventory()
    assert (row.version_id, row.owners, row.risk_tier) == (
        "mv:onco/2",
        ["ann", "risk-team"],
        "high",
    )
    assert row.validation_status == "validated" and row.review_overdue
    assert row.deployments == [deployment.id] and row.open_alerts == 0


@pytest.fixture
def signed(store_backend: str, tmp_path: Path) -> Iterator[tuple[Client, GraphStore]]:
    uri = fresh_store_uri(store_backend, tmp_path)
    settings = Settings(user="ann", artifacts=str(tmp_path / "artifacts"), audit_key=KEY)
    with Client(uri, settings=settings) as client, open_store(uri, settings) as store:
        yield client, store


def test_a_report_as_of_a_card_change_shows_the_card_its_audit_section_backs(
    signed: tuple[Client, GraphStore],
) -> None:
    """A card revision's ``at`` is read before its audit entry is appended: a report as of an
    instant between the two showed the revision without the entry, and failed verification.
    The card as of a time is the one the audit log had recorded by then."""
    client, store = signed
    train(client, 1.0)
    registered = store.get_node("mv:onco/1").created_at
    assert registered is not None
    CardService(store, clock=lambda: registered).set_card("onco/1", CARD, "ann")
    [entry] = [e for e in store.read_audit(0, 1000, "mv:onco/1") if e.action == "card.set"]
    assert entry.time > to_iso(registered)  # the instant in between: at < as_of < entry
    report = client.compliance_report("onco/1", as_of=registered)
    assert report["card"]["revision"] == 0
    assert "card.set" not in [e["action"] for e in report["audit"]["entries"]]
    assert verify_report(report, KEY.encode())["ok"]
    later = client.compliance_report("onco/1", as_of=datetime.now(timezone.utc))
    assert later["card"]["revision"] == 1 and verify_report(later, KEY.encode())["ok"]


def test_tampered_reports_fail_verification(signed: tuple[Client, GraphStore]) -> None:
    client, _ = signed
    train(client, 1.0)
    client.set_model_card("onco/1", CARD)
    report = client.compliance_report("onco/1")
    assert verify_report(report, KEY.encode())["ok"]

    def problems(changed: dict[str, Any], key: bytes | None = KEY.encode()) -> str:
        result = verify_report(changed, key)
        assert not result["ok"]
        return " ".join(result["problems"])

    # a changed entry: its fields no longer give its hash
    r = copy.deepcopy(report)
    r["audit"]["proofs"][0]["entry"]["actor"] = "mallory"
    assert "was altered" in problems(r)
    # the entry as shown differs from the one proven
    r = copy.deepcopy(report)
    r["audit"]["entries"][0]["actor"] = "mallory"
    assert "differs from its proven entry: actor" in problems(r)
    # a wrong proof
    r = copy.deepcopy(report)
    path = r["audit"]["proofs"][-1]["path"]
    path[0] = "00" * 32
    assert "is not proven in the tree head" in problems(r)
    # a forged head: another root, the old MAC
    r = copy.deepcopy(report)
    r["audit"]["head"]["root_hash"] = "sha256:" + "ab" * 32
    assert "does not match with the audit key" in problems(r)
    # ... and without the key the proofs still do not lead to it
    assert "is not proven in the tree head" in problems(r, None)
    # the card shown is not the one the log recorded
    r = copy.deepcopy(report)
    r["card"]["risk_tier"] = "minimal"
    assert "not the last revision the audit log recorded" in problems(r)
    # a payload changed under its entry
    r = copy.deepcopy(report)
    [cited] = [e for e in r["audit"]["entries"] if e["action"] == "card.set"]
    cited["payload"]["fields"]["risk_tier"] = "minimal"
    assert "payload digest mismatch" in problems(r)


def test_a_report_edited_anywhere_fails_verification(
    signed: tuple[Client, GraphStore], tmp_path: Path
) -> None:
    """Only the audit section and the card were checked: a report whose metrics, stage,
    parameters, checklist or picture were edited passed ``report verify``. The report is
    sealed whole (a digest of all of it, with the audit key's MAC): any edit fails, and a
    seal made with another key too."""
    client, _ = signed
    train(client, 1.0)
    client.set_model_card("onco/1", CARD)
    report = client.compliance_report("onco/1")
    # as the CLI writes it and reads it back
    path = tmp_path / "report.json"
    path.write_text(report_json(report))
    report = json.loads(path.read_text())
    assert report["seal"]["digest"].startswith("sha256:") and report["seal"]["mac"]
    assert verify_report(report, KEY.encode())["ok"]
    assert not all(c["complete"] for c in report["checklist"])  # monitoring: no windows
    edits = {
        "a metric": lambda r: r["evaluation"]["metrics"].update(accuracy=0.999),
        "the stage": lambda r: r["identity"].update(stage="Production"),
        "a parameter": lambda r: r["parameters"].update(C=9),
        "the checklist": lambda r: [c.update(complete=True, missing=[]) for c in r["checklist"]],
        "the picture": lambda r: r["lineage"].update(svg="<svg/>"),
        "an added field": lambda r: r.update(approved_by="the board"),
    }
    for what, edit in edits.items():
        changed = copy.deepcopy(report)
        edit(changed)
        result = verify_report(changed, KEY.encode())
        assert not result["ok"], what
        assert any("changed after it was made" in p for p in result["problems"]), what
    # resealed by whoever edited it, without the hub's key: the MAC gives it away
    forged = copy.deepcopy(report)
    forged["evaluation"]["metrics"]["accuracy"] = 0.999
    forged["seal"] = {"digest": sealed_digest(forged), "mac": "00" * 32}
    problems = " ".join(verify_report(forged, KEY.encode())["problems"])
    assert "not made with this audit key" in problems
    # a report of an older release, with no seal: checked as before, and told so
    unsealed = {k: v for k, v in report.items() if k != "seal"}
    result = verify_report(unsealed, KEY.encode())
    assert result["ok"] and any("has no seal" in n for n in result["notes"])
    # a hub that signs its heads signs the seal: checked with the public key alone
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from lineagehub.services.dossier import compliance_report

    private, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    store = signed[1]
    store.configure_audit(
        dataclasses.replace(store.audit_policy, signer=lambda b: private.sign(b).hex())
    )
    CardService(store).set_card("onco/1", {"risk_tier": "high"}, "ann")  # a signed head next
    signed_report = json.loads(report_json(compliance_report(store, "onco/1")))
    verified = verify_report(signed_report, None, private.public_key())
    assert verified["ok"], verified["problems"]
    problems = " ".join(verify_report(signed_report, None, other.public_key())["problems"])
    assert "not signed with this public key" in problems


def test_inclusion_and_consistency_proofs_from_the_store(signed: tuple[Client, GraphStore]) -> None:
    client, store = signed
    train(client, 1.0)
    first = store.checkpoint_audit()
    client.set_model_card("onco/1", {"risk_tier": "limited"})
    size = store.audit_head()
    assert size is not None
    proof = prove(store, size.seq)
    head = TreeHead.from_dict(proof["head"])
    assert head.tree_size >= size.seq
    assert check_inclusion(proof, head, key=KEY.encode()).ok
    assert not check_inclusion(proof, head, key=b"another key").ok
    with pytest.raises(NotFoundError):
        prove(store, size.seq + 100)
    with pytest.raises(ValidationError):
        prove(store, 0)
    c = consistency(store, first.tree_size)
    assert c["second"]["tree_size"] == head.tree_size
    assert check_consistency(c, key=KEY.encode()).ok
    c["path"][0] = "11" * 32
    assert "not consistent" in (check_consistency(c, key=KEY.encode()).problem or "")


def test_merkle_tree_matches_the_checkpoints_and_rfc_verification() -> None:
    for n in range(1, 34):
        hashes = [f"sha256:{i:064x}" for i in range(n)]
        tree = MerkleTree.of_entries(hashes)
        frontier = Frontier()
        for h in hashes:
            frontier.push(h)
        assert "sha256:" + tree.root().hex() == frontier.root()
        for i in range(n):
            path = tree.inclusion_proof(i)
            assert verify_inclusion(leaf_hash(hashes[i]), i, n, path, tree.root()) is None
            if path:
                wrong = [bytes(32), *path[1:]]
                assert verify_inclusion(leaf_hash(hashes[i]), i, n, wrong, tree.root())
            assert verify_inclusion(leaf_hash("sha256:x"), i, n, path, tree.root())
        for m in range(1, n + 1):
            proof = tree.consistency_proof(m, n)
            assert verify_consistency(m, n, tree.root(m), tree.root(n), proof) is None
            if m < n:
                assert verify_consistency(m, n, tree.root(m), bytes(32), proof)


def test_a_card_takes_revisions_past_a_versions_size_and_older_ones_still_read(
    signed: tuple[Client, GraphStore],
) -> None:
    """Every revision was kept on the version: a card with long texts refused its 56th
    revision (the version's properties passed 1 MB), and every change rewrote all of them.
    Each revision is a record of its own now; a card written the old way reads as before
    and takes new revisions."""
    client, store = signed
    train(client, 1.0)
    long = "x" * 9_000
    times = []
    for i in range(1, 71):
        card = client.set_model_card(
            "onco/1", {"intended_use": f"{i} {long}", "limitations": [long]}
        )
        assert card.revision == i
        times.append(datetime.now(timezone.utc))
    assert len(store.get_node("mv:onco/1").props["card"]["latest"]["fields"]["limitations"]) == 1
    assert client.model_card("onco/1").fields["intended_use"].startswith("70 ")
    assert client.model_card("onco/1", as_of=times[29]).fields["intended_use"].startswith("30 ")
    revisions = CardService(store).revisions("onco/1")
    assert [r["revision"] for r in revisions] == list(range(1, 71))
    assert store.verify_audit().ok  # each revision's record is covered by its entry
    # a version whose revisions are on it (an older release's), read and continued
    train(client, 2.0)
    old = [
        {"revision": n, "at": to_iso(datetime.now(timezone.utc)), "actor": "ann", "reason": None,
         "fields": {"intended_use": f"old {n}"}}
        for n in (1, 2)
    ]  # fmt: skip
    store.upsert_nodes([Node("mv:onco/2", "ModelVersion", {"card": {"revisions": old}})])
    assert client.model_card("onco/2").fields == {"intended_use": "old 2"}
    card = client.set_model_card("onco/2", {"risk_tier": "high"})
    assert (card.revision, card.fields) == (3, {"intended_use": "old 2", "risk_tier": "high"})
    assert [r["revision"] for r in CardService(store).revisions("onco/2")] == [1, 2, 3]
    assert client.model_card("onco/2", as_of=datetime.now(timezone.utc)).revision == 3
