"""The registry finds the holders of an alias or a stage by a filtered query, not by reading
every version: these check its answers against a read of every version, with many versions,
aliases moved back and forth, names that contain one another, another model with the same
alias names, and several versions in Production at once."""

from __future__ import annotations

import threading

import pytest

from lineagehub.graph import GraphStore
from lineagehub.services.registry import ModelPromoted, RegistryService
from lineagehub.vocabulary import ModelVersion, NodeKind, Stage
from tests.test_registry import Clock, add_version


def every_version(store: GraphStore, model: str) -> list[ModelVersion]:
    nodes = store.iter_nodes(NodeKind.MODEL_VERSION.value, {"model": model}, "version")
    return [ModelVersion.from_node(n) for n in nodes]


def alias_holders(store: GraphStore, model: str, alias: str) -> list[int]:
    return [v.version for v in every_version(store, model) if alias in v.aliases]


def stage_holders(store: GraphStore, model: str, stage: Stage) -> list[int]:
    return [v.version for v in every_version(store, model) if v.stage is stage]


@pytest.fixture
def reg(store: GraphStore) -> RegistryService:
    for v in range(1, 31):
        add_version(store, v, lineage=False)
    for v in range(1, 6):
        add_version(store, v, lineage=False, model="other")
    return RegistryService(store, clock=Clock())


def test_aliases_moved_back_and_forth(store: GraphStore, reg: RegistryService) -> None:
    reg.set_alias("other/2", "champion", "ann")
    reg.set_alias("other/3", "champ", "ann")
    moves = [5, 17, 5, 30, 1, 17, 17, 2, 30]
    for i, v in enumerate(moves):
        reg.set_alias(f"churn/{v}", "champion", "ann")
        # a name that contains the other, moved the other way
        reg.set_alias(f"churn/{moves[-1 - i]}", "champ", "bob")
        assert alias_holders(store, "churn", "champion") == [v]
        assert alias_holders(store, "churn", "champ") == [moves[-1 - i]]
        assert reg.holder_at("churn", "champion", reg.clock()) == v
    # the other model's aliases of the same names never moved
    assert alias_holders(store, "other", "champion") == [2]
    assert alias_holders(store, "other", "champ") == [3]
    hist = reg.history("churn", alias="champion")
    # setting the holder again records nothing
    assert [h.to for h in hist] == [5, 17, 5, 30, 1, 17, 2, 30]
    assert [h.from_ for h in hist] == [None, 5, 17, 5, 30, 1, 17, 2]
    # one version with both aliases: removing one keeps the other
    reg.set_alias("churn/30", "champ", "bob")
    reg.remove_alias("churn", "champ", "bob")
    assert alias_holders(store, "churn", "champ") == []
    assert alias_holders(store, "churn", "champion") == [30]
    assert alias_holders(store, "other", "champ") == [3]
    # each change of "champ" names the version that held it, not a holder of "champion"
    champ = [(h.from_, h.to) for h in reg.history("churn", alias="champ")]
    assert champ == [
        (None, 30),
        (30, 2),
        (2, 17),
        (17, 1),
        (1, 30),
        (30, 5),
        (5, 17),
        (17, 5),
        (5, 30),
        (30, None),
    ]


def test_several_production_holders_then_one_archives_them(
    store: GraphStore, reg: RegistryService
) -> None:
    for v in (3, 9, 4, 21):
        got = reg.promote(f"churn/{v}", "Production", "ann", archive_previous=False)
        assert isinstance(got, ModelPromoted) and got.archived == ()
    reg.promote("other/1", "Production", "ann")
    assert stage_holders(store, "churn", Stage.PRODUCTION) == [3, 4, 9, 21]
    # oldest entrant first
    assert reg.holders_at("churn", "Production", reg.clock()) == [3, 9, 4, 21]
    reg.promote("churn/12", "Staging", "ann")
    got = reg.promote("churn/12", "Production", "ann")
    assert isinstance(got, ModelPromoted)
    assert got.archived == tuple(f"mv:churn/{v}" for v in (3, 4, 9, 21))
    assert stage_holders(store, "churn", Stage.PRODUCTION) == [12]
    assert stage_holders(store, "churn", Stage.ARCHIVED) == [3, 4, 9, 21]
    assert stage_holders(store, "churn", Stage.STAGING) == []
    assert reg.holders_at("churn", "Production", reg.clock()) == [12]
    # archived in version order, so they entered Archived in that order
    assert reg.holders_at("churn", "Archived", reg.clock()) == [3, 4, 9, 21]
    # the versions never promoted are all still in None, the other model untouched
    assert stage_holders(store, "churn", Stage.NONE) == [
        v for v in range(1, 31) if v not in (3, 4, 9, 12, 21)
    ]
    assert stage_holders(store, "other", Stage.PRODUCTION) == [1]
    # the records list the holders a read of every version gives
    last = reg.history("churn", stage="Production")[-1]
    assert (last.version, last.from_, last.to) == (21, "Production", "Archived")
    # a rollback puts the four back
    reg.roll_back("churn", "Production", "ann")
    assert stage_holders(store, "churn", Stage.PRODUCTION) == [3, 4, 9, 21]
    assert stage_holders(store, "churn", Stage.STAGING) == [12]
    assert store.verify_audit().ok


@pytest.mark.parametrize("change", ["alias", "stage", "both"])
def test_writers_racing_for_one_alias_or_stage_leave_one_holder(
    store: GraphStore, reg: RegistryService, change: str
) -> None:
    """Three writers at once, round after round: each points ``champion`` at its own
    version, or promotes its own version to Production, or (both) one sets an alias on a
    version while another moves that version's stage. On Neo4j each read the holders before
    any lock and wrote its stale copy of the versions whole: three holders of the alias,
    three versions in Production, one of the two changes lost, every round (the audit log
    recording them all). On SQLite the write lock comes first; on Neo4j now too."""
    writers, rounds = 3, 8
    start = threading.Barrier(writers)
    failures: list[BaseException] = []

    def write(k: int) -> None:
        try:
            for r in range(rounds):
                start.wait(60)
                version = f"churn/{r * writers + k + 1}"
                if change == "alias":
                    reg.set_alias(version, "champion", f"w{k}")
                elif change == "stage":
                    reg.promote(version, Stage.PRODUCTION, f"w{k}", reason="race")
                elif k == 0:
                    reg.set_alias(f"churn/{r + 1}", f"a{r}", "w0")
                elif k == 1:
                    reg.promote(f"churn/{r + 1}", Stage.STAGING, "w1", reason="race")
                start.wait(60)  # every writer of the round is done
                if k == 0 and change == "alias":
                    assert len(alias_holders(store, "churn", "champion")) == 1, r
                elif k == 0 and change == "stage":
                    assert len(stage_holders(store, "churn", Stage.PRODUCTION)) == 1, r
                elif k == 0:
                    assert alias_holders(store, "churn", f"a{r}") == [r + 1], r
                    assert r + 1 in stage_holders(store, "churn", Stage.STAGING), r
        except BaseException as e:  # reported below, with the others'
            failures.append(e)
            start.abort()

    threads = [threading.Thread(target=write, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    real = [e for e in failures if not isinstance(e, threading.BrokenBarrierError)]
    assert not real, real
    assert store.verify_audit().ok
