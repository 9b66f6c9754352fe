"""The GraphQL helpers are generic: a resolver's declared type is what mypy checks, with no
`type: ignore` to silence it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lineagehub.graph import Node
from lineagehub.schema.types import GenericNode, ModelVersion, NodeInterface, Run, wrap_as

SCHEMA = Path(__file__).resolve().parents[1] / "schema"


def test_no_return_value_ignores_left_in_the_schema() -> None:
    found = [
        f"{path.name}:{n}"
        for path in sorted(SCHEMA.glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"type:\s*ignore\[[^\]]*return-value", line)
    ]
    assert found == []


def test_wrap_as_checks_the_declared_type() -> None:
    mv = Node(id="mv:churn/1", label="ModelVersion", props={"model": "churn", "version": 1})
    wrapped = wrap_as(mv, ModelVersion)
    assert type(wrapped) is ModelVersion and wrapped.raw is mv
    assert isinstance(wrap_as(mv, NodeInterface), ModelVersion)
    odd = Node(id="thing:1", label="Thing", props={})
    assert type(wrap_as(odd, GenericNode)) is GenericNode
    with pytest.raises(TypeError, match=r"mv:churn/1 is a ModelVersion, not a Run"):
        wrap_as(mv, Run)
