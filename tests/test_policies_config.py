"""Promotion policies from a file (``LINEAGEHUB_POLICIES``): loading, errors, a served hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_server import HubServer

from lineagehub.config import Settings
from lineagehub.graph.errors import ConfigError, ValidationError
from lineagehub.interfaces.server import create_app
from lineagehub.samples.example import build_example
from lineagehub.services.registry import Policy, RegistryService, Threshold, load_policies

GOOD = """
[[policy]]
model = "churn"
stage = "Production"
approvals = 2
approvers = ["alice", "bob"]
separation_of_duties = true
require_lineage = true
forbid_dirty_commit = true
thresholds = [["auc", ">=", 0.85]]

[[policy]]
model = "churn"
thresholds = [["auc", ">", 0.5], ["loss", "<", 1]]

[[policy]]
model = "*"
approvals = 1
"""


def write(tmp_path: Path, text: str, name: str = "policies.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_toml_file_loads_into_policies(tmp_path: Path) -> None:
    policies = load_policies(write(tmp_path, GOOD))
    assert policies == {
        ("churn", "Production"): Policy(
            thresholds=[Threshold("auc", ">=", 0.85)],
            require_lineage=True,
            forbid_dirty_commit=True,
            approvals=2,
            approvers=frozenset({"alice", "bob"}),
            separation_of_duties=True,
        ),
        "churn": Policy(thresholds=[("auc", ">", 0.5), ("loss", "<", 1.0)]),
        "*": Policy(approvals=1),
    }
    registry = RegistryService.__new__(RegistryService)
    registry.policies = policies
    assert registry.policy_for("churn", "Production").approvals == 2
    assert registry.policy_for("churn", "Staging").approvals == 0
    assert registry.policy_for("fraud", "Staging").approvals == 1


def test_a_json_file_and_an_empty_file_load(tmp_path: Path) -> None:
    doc = {"policy": [{"model": "churn", "stage": "staging", "thresholds": [["auc", ">=", 1]]}]}
    path = write(tmp_path, json.dumps(doc), "policies.json")
    assert load_policies(path) == {
        ("churn", "Staging"): Policy(thresholds=[Threshold("auc", ">=", 1.0)])
    }
    assert load_policies(write(tmp_path, "")) == {}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("[[policy]\nmodel = ", "not valid TOML"),
        ("[[rule]]\nmodel = 'churn'", "'rule'"),
        ("policy = 3", "'policy'"),
        ("[[policy]]\nmodel = 'churn'\ncolour = 'red'", "'colour'"),
        ("[[policy]]\nstage = 'Production'", "'model'"),
        ("[[policy]]\nmodel = 'churn'\nstage = 'Prod'", "'stage'"),
        ("[[policy]]\nmodel = 'churn'\napprovals = '2'", "'approvals'"),
        ("[[policy]]\nmodel = 'churn'\napprovals = -1", "'approvals'"),
        ("[[policy]]\nmodel = 'churn'\napprovers = 'alice'", "'approvers'"),
        ("[[policy]]\nmodel = 'churn'\nrequire_lineage = 'yes'", "'require_lineage'"),
        ("[[policy]]\nmodel = 'churn'\nforbid_dirty_commit = 1", "'forbid_dirty_commit'"),
        ("[[policy]]\nmodel = 'churn'\nseparation_of_duties = 0", "'separation_of_duties'"),
        ("[[policy]]\nmodel = 'churn'\nthresholds = [['auc', '=>', 0.9]]", "'=>'"),
        ("[[policy]]\nmodel = 'churn'\nthresholds = [['auc', '>=', 'high']]", "'thresholds'"),
        ("[[policy]]\nmodel = 'churn'\nthresholds = [['auc', '>=']]", "'thresholds'"),
        ("[[policy]]\nmodel = 'churn'\nthresholds = 'auc >= 0.9'", "'thresholds'"),
        ("[[policy]]\nmodel = 'churn'\n[[policy]]\nmodel = 'churn'", "duplicate"),
    ],
)
def test_a_bad_file_is_a_config_error_naming_the_field(
    tmp_path: Path, body: str, named: str
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_policies(path)
    message = str(info.value)
    assert str(path) in message
    assert named in message
    if body.count("[[policy]]") == 1 and "policy = " not in body:
        assert "policy #1" in message


def test_a_missing_file_or_bad_json_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_policies(missing)
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_policies(write(tmp_path, "{", "p.json"))


def test_create_app_refuses_a_bad_policies_file(tmp_path: Path) -> None:
    settings = Settings(
        policies=tmp_path / "missing.toml",
        store=f"sqlite:///{tmp_path / 'hub.db'}",
        artifacts=(tmp_path / "artifacts").as_uri(),
    )
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        create_app(settings=settings)


def test_a_policies_setting_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, GOOD)
    monkeypatch.setenv("LINEAGEHUB_POLICIES", str(path))
    assert Settings().policies == path


PROMOTE = """mutation($ref: String!, $to: String!) {
  promoteModelVersion(ref: $ref, to: $to, reason: "test") {
    __typename
    ... on ModelPromoted { version { id stage } }
    ... on PolicyViolation { version { id } stage rules { rule message expected actual } }
  }
}"""


def promote(http: httpx.Client, ref: str, to: str) -> dict[str, Any]:
    response = http.post("/graphql", json={"query": PROMOTE, "variables": {"ref": ref, "to": to}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]["promoteModelVersion"]
    return result


def test_a_served_hub_enforces_the_configured_policies(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[policy]]\nmodel = "churn"\nstage = "Staging"\nthresholds = [["auc", ">=", 0.9]]\n',
    )
    settings = Settings(
        policies=path,
        store=f"sqlite:///{tmp_path / 'hub.db'}",
        artifacts=(tmp_path / "artifacts").as_uri(),
        user="alice",
    )
    app = create_app(settings=settings)
    store = app.state.services.store
    build_example(store)
    try:
        with HubServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            refused = promote(http, "churn/2", "Staging")
            assert refused["__typename"] == "PolicyViolation"
            assert refused["version"] == {"id": "mv:churn/2"}
            assert [r["rule"] for r in refused["rules"]] == ["metric.auc"]
            rule = refused["rules"][0]
            assert rule["expected"] == ">= 0.9"
            assert "0.871" in str(rule["actual"]) and "0.871" in rule["message"]

            # Other stages are not governed by it.
            done = promote(http, "churn/2", "Production")
            assert done["__typename"] == "ModelPromoted"
            assert done["version"] == {"id": "mv:churn/2", "stage": "Production"}
    finally:
        store.close()


def test_every_model_at_one_stage(tmp_path: Path) -> None:
    from lineagehub.graph import open_store
    from lineagehub.services.registry import RegistryService

    doc = "[[policy]]\nmodel = '*'\nstage = 'Production'\napprovals = 2\n"
    policies = load_policies(write(tmp_path, doc))
    assert policies == {("*", "Production"): Policy(approvals=2)}
    service = RegistryService(open_store("sqlite://"), policies=policies)
    assert service.policy_for("churn", "Production").approvals == 2
    assert service.policy_for("churn", "Staging").approvals == 0


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Policy(approvals=1, approvers="carol"), "approvers"),  # not {'c', 'a', ...}
        (lambda: Policy(approvers=["carol", ""]), "approvers"),
        (lambda: Policy(approvals=True), "approvals"),
        (lambda: Threshold("auc", ">=", float("nan")), "value"),  # refused every promotion
        (lambda: Threshold("auc", "<", float("inf")), "value"),
        (lambda: Threshold("auc", ">=", "0.9"), "value"),  # a TypeError at every promotion
        (lambda: Policy(thresholds=[("auc", ">=", None)]), "value"),
        (lambda: Threshold("", ">=", 0.9), "metric"),
    ],
)
def test_policies_given_in_code_are_checked_as_a_file_is(make: Any, field: str) -> None:
    # What the policies file refuses (a bad value, a name where a list belongs), a Policy
    # made in code (Client(registry_policies=...), create_app) took, to misbehave later.
    with pytest.raises(ValidationError) as caught:
        make()
    assert caught.value.field == field
    assert Threshold("auc", ">=", 1).value == 1.0
    assert Policy(approvers=("carol",)).approvers == frozenset({"carol"})
