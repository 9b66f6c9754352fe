"""Property JSON on the store's hot paths: written and read by orjson where it gives the
standard library's answer, by the standard library everywhere else. The same documents, the
same refusals, the same numbers (an integer beyond 64 bits stays an integer)."""

from __future__ import annotations

import enum
import json
import math
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_server import HubServer
from hypothesis import given, settings
from hypothesis import strategies as st

from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import DELETE, GraphStore, Node, ValidationError, open_store
from lineagehub.graph.hydrate import stored_props
from lineagehub.graph.model import encode_props, load_json, merge_patch
from lineagehub.ingest.http import HubConnection
from lineagehub.interfaces.server import create_app


def same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1 is not 1.0; -0.0 is not 0.0; NaN is NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: beyond 64 bits too
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(_text, inner, max_size=4)
    ),
    max_leaves=25,
)
_keys = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,12}", fullmatch=True).filter(lambda k: k != "id")
_props = st.dictionaries(_keys, _values, max_size=8)


def _standard(props: dict[str, Any]) -> Any:
    return json.loads(json.dumps(props, separators=(",", ":"), ensure_ascii=False))


@settings(max_examples=400, deadline=None)
@given(_props)
def test_properties_are_written_as_the_standard_library_writes_them(props: dict) -> None:
    text = encode_props(props, "node 'x'")
    assert same(json.loads(text), _standard(props))
    assert same(load_json(text), json.loads(text))


@settings(max_examples=400, deadline=None)
@given(_values)
def test_stored_text_is_read_as_the_standard_library_reads_it(value: Any) -> None:
    for text in (
        json.dumps(value, ensure_ascii=False),
        json.dumps(value),  # \\u escapes
        json.dumps(value, indent=1),
    ):
        assert same(load_json(text), json.loads(text)), text


@pytest.mark.parametrize(
    "text",
    [
        "123456789012345678901234567890",  # beyond 64 bits: orjson would give a float
        '{"a":[1,{"b":-99999999999999999999999}]}',
        "[18446744073709551616]",
        '{"x":1e+20,"y":-1E400}',  # floats that large stay floats; 1E400 is -inf
        '{"loss":NaN,"gain":Infinity}',  # what the standard library writes by default
        '"\\ud800"',  # a lone surrogate
        '{"a":1,"a":2}',
        "9223372036854775807",
        "-9223372036854775808",
    ],
)
def test_texts_the_fast_decoder_reads_otherwise_take_the_standard_one(text: str) -> None:
    assert same(load_json(text), json.loads(text))


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=4),
        st.one_of(
            st.integers(-(2**65), 2**65),
            st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**18, 10**19]),
            st.text(alphabet="0123456789e.-", max_size=25),  # digit runs inside strings
            st.lists(st.integers(-(2**64), 2**64), max_size=3),
        ),
        max_size=4,
    )
)
def test_integers_about_64_bits_are_read_exactly_from_text_and_bytes(doc: dict) -> None:
    """The fast decoder's answer is taken only where it equals the standard one, for texts
    and bodies (bytes) alike: integers at and beyond 64 bits, and digits inside strings."""
    from lineagehub.graph.model import fast_load

    text = json.dumps(doc, ensure_ascii=False)
    for given_ in (text, text.encode()):
        ok, value = fast_load(given_)
        if ok:
            assert same(value, json.loads(text)), text
    assert same(load_json(text), json.loads(text))


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Tag(str):
    pass


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"loss": math.nan}, "props.loss"),
        ({"m": {"auc": -math.inf}}, "props.m.auc"),
        ({"run": uuid.UUID(int=7)}, "props.run"),  # orjson would write these two
        ({"colour": Colour.RED}, "props.colour"),
        ({"s": {1, 2}}, "props.s"),
        ({"when": datetime(2024, 1, 1, tzinfo=timezone.utc)}, "props.when"),
        ({"b": b"bytes"}, "props.b"),
        ({"deep": [[{"x": [object()]}]]}, "props.deep[0][0].x[0]"),
    ],
)
def test_values_the_standard_library_refuses_are_refused(props: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        encode_props(props, "node 'x'")
    assert info.value.field == field


def test_a_cycle_is_refused_not_followed() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ValidationError):
        encode_props({"loop": loop}, "node 'x'")
    deep: Any = "leaf"
    for _ in range(300):  # deeper than orjson goes: the standard encoder writes it
        deep = [deep]
    assert same(json.loads(encode_props({"deep": deep}, "x")), {"deep": deep})
    for _ in range(5000):  # deeper than Python's recursion limit: refused, not a crash
        deep = [deep]
    with pytest.raises(ValidationError, match="nested deeper"):
        encode_props({"deep": deep}, "x")


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({"level": Level.HIGH}, {"level": 3}),
        ({"tag": Tag("t")}, {"tag": "t"}),
        ({"pair": (1, "a")}, {"pair": [1, "a"]}),
        ({"huge": 2**70, "neg": -(2**64)}, {"huge": 2**70, "neg": -(2**64)}),
        ({"m": {1: "one", None: "none"}}, {"m": {"1": "one", "null": "none"}}),
        (OrderedDict(a=1.5e-05, b=1e16), {"a": 1.5e-05, "b": 1e16}),
        ({"gone": DELETE, "kept": {"x": DELETE}}, {"kept": {}}),
    ],
)
def test_values_the_standard_library_takes_are_taken_as_it_takes_them(
    props: dict, expected: dict
) -> None:
    text = encode_props(props, "node 'x'")
    assert same(merge_patch({}, load_json(text)), expected)


def test_a_bad_key_after_good_ones_is_still_refused() -> None:
    for i in range(50):
        encode_props({"alpha": i, "beta": i}, "node 'x'")
    for bad in ("id", "bad key", "_x", "abc\n", 1):
        with pytest.raises(ValidationError):
            encode_props({"alpha": 1, bad: 2}, "node 'x'")


def test_a_sqlite_store_keeps_integers_beyond_64_bits(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'g.db'}")
    props = {"huge": 2**70, "list": [2**64, -(2**65), 1.0], "small": 1}
    store.upsert_nodes([Node("n", "Run", props)])
    store.upsert_nodes([Node("n", "Run", {"more": 2**80})])  # merged by SQLite
    got = store.get_node("n")
    assert got is not None
    assert same(got.props, {**props, "more": 2**80})
    assert same(stored_props(json.dumps(props)), props)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, GraphStore]]:
    store = open_store(f"sqlite:///{tmp_path}/hub.db")
    artifacts = open_artifact_store((tmp_path / "artifacts").as_uri())
    server = HubServer(create_app(store=store, artifacts=artifacts)).start()
    try:
        yield server.url, store
    finally:
        server.stop()
        store.close()


def test_numbers_cross_the_wire_exactly_both_ways(served: tuple[str, GraphStore]) -> None:
    """Responses are written by orjson and read by the SDK through :func:`fast_load`; an
    integer beyond 64 bits (which orjson can neither write nor read as an integer) still
    arrives whole, in a request's variables and in a response."""
    url, store = served
    huge = {"big": 2**70, "list": [2**64, -(2**65), 0.1, 1e-07], "small": 7}
    store.upsert_nodes([Node("ds1", "Dataset", {"name": "ds", **huge})])
    hub = HubConnection(url, token="")
    try:
        got = hub.graphql('{ node(ref: "ds1") { properties } }', idempotent=True)
        assert same(got["node"]["properties"], {"name": "ds", **huge})
        # a request's variables are read exactly too: the number is refused as itself
        response = httpx.post(
            f"{url}/graphql",
            content=b'{"query": "query($n: Int) { runs(first: $n) { edges { node { id } } } }",'
            b' "variables": {"n": 1180591620717411303424}}',
            headers={"content-type": "application/json"},
        )
        message = response.json()["errors"][0]["message"]
        assert "1180591620717411303424" in message, message
    finally:
        hub.close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"query": "{ __typename }"', "not JSON"),
        ('{"query": "{ __typename }"}'.encode("utf-16"), "not UTF-8"),
        (b'{"query": "\xff"}', "not UTF-8"),
        (b"[1, 2]", "batched requests"),
        (b"null", "must be a JSON object"),
    ],
)
def test_bad_request_bodies_are_refused_as_before(
    served: tuple[str, GraphStore], body: bytes, message: str
) -> None:
    url, _ = served
    response = httpx.post(
        f"{url}/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert message in response.json()["errors"][0]["message"]
