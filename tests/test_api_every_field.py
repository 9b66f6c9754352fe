"""Every field of every node type answers for a node that holds only what the vocabulary
requires: an optional property the hub never recorded is null (or empty), never an
INTERNAL error that nulls the whole answer. The query is built from the live schema, so a
field added later is covered without touching this test."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import BACKENDS, fresh_store_uri
from graphql import (
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLUnionType,
    get_named_type,
    is_leaf_type,
    is_required_argument,
)
from http_server import HubServer

from lineagehub import vocabulary as v
from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import Node, open_store
from lineagehub.interfaces.server import create_app
from lineagehub.schema import schema

DIGEST = "sha256:" + "d" * 64
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

# Each node kind with its required fields only.
MINIMAL: list[v.NodeModel] = [
    v.Project(name="p"),
    v.Experiment(name="e", project="p"),
    v.Run(name="r"),
    v.Dataset(namespace="s3://lake", name="d"),
    v.DatasetVersion(namespace="s3://lake", name="d", digest=DIGEST),
    v.CodeCommit(repo="https://example.org/repo.git", sha="abcdef1"),
    v.Environment(python="3.11.7", platform="linux", packages_digest=DIGEST),
    v.Artifact(digest=DIGEST, size=1),
    v.Model(name="m"),
    v.ModelVersion(model="m", version=1, artifact_digest=DIGEST),
    v.Deployment(environment="prod"),
    v.MonitoringWindow(start=T0, end=T0.replace(hour=1)),
    v.Alert(rule="r"),
    v.Agent(name="a"),
]


def _selection(graphql_type: Any) -> str:
    """Every field that needs no argument: leaves by name, the rest by ``__typename``."""
    parts = []
    for name, field in graphql_type.fields.items():
        if any(is_required_argument(arg) for arg in field.args.values()):
            continue
        inner = get_named_type(field.type)
        parts.append(name if is_leaf_type(inner) else f"{name} {{ __typename }}")
    return " ".join(parts)


def _node_types() -> dict[str, GraphQLObjectType]:
    gql = schema._schema
    node = gql.type_map["Node"]
    assert isinstance(node, GraphQLInterfaceType)
    return {t.name: t for t in gql.get_possible_types(node) if isinstance(t, GraphQLObjectType)}


@pytest.fixture(params=BACKENDS)
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    store = open_store(fresh_store_uri(request.param, tmp_path))
    nodes = [m.to_node() for m in MINIMAL]
    store.upsert_nodes(nodes)
    artifacts = open_artifact_store((tmp_path / "artifacts").as_uri())
    try:
        with HubServer(create_app(store=store, artifacts=artifacts)) as server:
            yield server.url, {n.label: n.id for n in nodes}
    finally:
        store.close()


def test_every_kind_of_node_is_covered() -> None:
    labels = {m.to_node().label for m in MINIMAL}
    # GenericNode answers for a label the vocabulary does not know
    assert set(_node_types()) - {"GenericNode"} == labels


def test_every_field_of_a_minimal_node_answers(served: tuple[str, dict[str, str]]) -> None:
    url, ids = served
    types = _node_types()
    assert not any(isinstance(t, GraphQLUnionType) for t in types.values())
    with httpx.Client(base_url=url, timeout=60) as http:
        for label, node_id in ids.items():
            query = f"query($id: ID!) {{ nodes(ids: [$id]) {{ __typename ... on {label} {{ "
            query += _selection(types[label]) + " } } }"
            body = http.post("/graphql", json={"query": query, "variables": {"id": node_id}})
            answer = body.json()
            assert "errors" not in answer, (label, answer.get("errors"))
            assert answer["data"]["nodes"][0]["__typename"] == label


def test_a_node_written_around_the_vocabulary_is_an_integrity_error_not_internal(
    tmp_path: Path,
) -> None:
    """A run without the name the vocabulary requires (written straight into the store): the
    field's error names the node and the property, coded INTEGRITY; the rest still answers."""
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    store.upsert_nodes([Node("run:raw", "Run", {"status": "FINISHED"})])
    artifacts = open_artifact_store((tmp_path / "artifacts").as_uri())
    try:
        with HubServer(create_app(store=store, artifacts=artifacts)) as server:
            body = httpx.post(
                f"{server.url}/graphql",
                json={
                    "query": '{ a: node(ref: "run:raw") { id ... on Run { status } } '
                    'b: node(ref: "run:raw") { ... on Run { name } } }'
                },
                timeout=60,
            ).json()
    finally:
        store.close()
    assert body["data"]["a"] == {"id": "run:raw", "status": "FINISHED"}
    [error] = body["errors"]
    assert error["extensions"]["code"] == "INTEGRITY"
    assert "run:raw" in error["message"] and "'name'" in error["message"]
