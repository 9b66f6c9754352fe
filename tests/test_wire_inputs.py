"""What the server makes of the values a request carries: times (the DateTime scalar) and
metric points (MetricInput), read fast on the paths the SDK uses and exactly as before."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dateutil.parser
import httpx
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    Undefined,
    coerce_input_value,
)
from http_server import HubServer
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strawberry.types.arguments import convert_argument, convert_arguments

from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import GraphStore, ValidationError, open_store
from lineagehub.graph.model import check_time
from lineagehub.interfaces.server import create_app
from lineagehub.schema.scalars import _parse_datetime


def _as_before(text: str) -> datetime:
    """The DateTime scalar's reading before the fast path: dateutil, naive meaning UTC."""
    parsed = dateutil.parser.isoparse(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return check_time(parsed, "DateTime")


_times = st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(2200, 12, 30))
_offsets = st.one_of(
    st.none(),
    st.just(timezone.utc),
    st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
        lambda m: timezone(timedelta(minutes=m))
    ),
)


@settings(max_examples=400, deadline=None)
@given(_times, _offsets, st.integers(min_value=0, max_value=6), st.booleans())
def test_a_time_reads_as_dateutil_read_it(
    when: datetime, tz: timezone | None, digits: int, zulu: bool
) -> None:
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:  # 1 to 6 fractional digits, as clients write them
        text += "." + f"{when.microsecond:06d}"[:digits]
    if tz is not None:
        minutes = int(tz.utcoffset(None).total_seconds()) // 60
        if zulu and minutes == 0:
            text += "Z"
        else:
            sign = "-" if minutes < 0 else "+"
            text += f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    got = _parse_datetime(text)
    assert got == _as_before(text)
    assert got.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-01T12:00:00Z",
        "2026-03-01T12:00:00",  # naive: UTC
        "2026-03-01T12:00:00.5+05:30",
        "2026-03-01T24:00:00Z",  # dateutil's midnight of the next day, as before
        "2026-03-01 12:00:00Z",  # not the canonical form: dateutil decides
        "20260301T120000Z",
        "2026-03-01T12:00Z",
    ],
)
def test_other_forms_keep_their_reading(text: str) -> None:
    try:
        expected: datetime | type[ValidationError] = _as_before(text)
    except (ValueError, OverflowError, ValidationError):
        expected = ValidationError
    if expected is ValidationError:
        with pytest.raises(ValidationError):
            _parse_datetime(text)
    else:
        assert _parse_datetime(text) == expected


@pytest.mark.parametrize(
    "text",
    ["2026-02-30T12:00:00Z", "2026-03-01T12:00:61Z", "2026-03-01T12:00:00+24:00", "0000-01-01"],
)
def test_impossible_times_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        _parse_datetime(text)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[httpx.Client, GraphStore]]:
    store = open_store(f"sqlite:///{tmp_path}/hub.db")
    artifacts = open_artifact_store((tmp_path / "artifacts").as_uri())
    server = HubServer(create_app(store=store, artifacts=artifacts)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            yield http, store
    finally:
        server.stop()
    store.close()


def _data(http: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    body = http.post("/graphql", json={"query": query, "variables": variables}).json()
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


def test_metric_points_arrive_as_sent(hub: tuple[httpx.Client, GraphStore]) -> None:
    """Defaults (step 0, the server's time), a given step and time, NaN: in variables and
    written in the query text alike."""
    http, store = hub
    run = _data(http, 'mutation { startRun(input: {name: "wire"}) { id } }')["startRun"]["id"]
    before = datetime.now(timezone.utc)
    _data(
        http,
        "mutation($r: ID!, $m: [MetricInput!]) { logBatch(runId: $r, metrics: $m) { params } }",
        r=run,
        m=[
            {"key": "a", "value": 1},
            {"key": "a", "value": "NaN", "step": 3, "timestamp": "2026-03-01T12:00:00.5+02:00"},
        ],
    )
    _data(
        http,
        f'mutation {{ logBatch(runId: "{run}", metrics: [{{key: "b", value: 2.5}},'
        ' {key: "b", value: "-Infinity", step: 7, timestamp: "2026-03-01T12:00:00"}]) { params } }',
    )
    a = store.read_series(run, "a")
    assert [p.step for p in a] == [0, 3]
    assert a[0].value == 1.0 and math.isnan(a[1].value)
    assert a[0].timestamp >= before.replace(microsecond=0) - timedelta(seconds=1)
    assert a[1].timestamp == datetime(2026, 3, 1, 10, 0, 0, 500000, tzinfo=timezone.utc)
    b = store.read_series(run, "b")
    assert [(p.step, p.value) for p in b] == [(0, 2.5), (7, -math.inf)]
    assert b[1].timestamp == datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_a_bad_point_is_refused_with_nothing_written(hub: tuple[httpx.Client, GraphStore]) -> None:
    http, store = hub
    run = _data(http, 'mutation { startRun(input: {name: "wire"}) { id } }')["startRun"]["id"]
    body = http.post(
        "/graphql",
        json={
            "query": "mutation($r: ID!, $m: [MetricInput!]) "
            "{ logBatch(runId: $r, metrics: $m) { params } }",
            "variables": {
                "r": run,
                "m": [{"key": "a", "value": 1}, {"key": "a", "value": 2, "timestamp": "soon"}],
            },
        },
    ).json()
    assert body["errors"] and "ISO 8601" in body["errors"][0]["message"]
    assert store.read_series(run, "a") == []


def test_a_fingerprint_of_the_wrong_shape_is_a_validation_error(
    hub: tuple[httpx.Client, GraphStore],
) -> None:
    """columns given as an object, not a list of {name, dtype}: VALIDATION naming it, not
    INTERNAL, and nothing written."""
    http, store = hub
    run = _data(http, 'mutation { startRun(input: {name: "shape"}) { id } }')["startRun"]["id"]
    fingerprint = {
        "digest": "sha256:" + "c" * 64,
        "source": "memory",
        "columns": {"a": "int64"},
    }
    body = http.post(
        "/graphql",
        json={
            "query": "mutation($r: ID!, $f: JSON!) { logDataset(runId: $r, input: "
            '{fingerprint: $f, name: "t", namespace: "n"}) { id } }',
            "variables": {"r": run, "f": fingerprint},
        },
    ).json()
    error = body["errors"][0]
    assert error["extensions"]["code"] == "VALIDATION", body
    assert "columns" in error["message"]
    assert store.find_nodes("DatasetVersion").items == []


# --- input classes and arguments built from planned fields (schema/inputs.py) -------------------


def _raw(type_: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values a client may send for the GraphQL input type ``type_`` (some of them refused by
    graphql-core's coercion, and then left out)."""
    if isinstance(type_, GraphQLNonNull):
        return _raw_of(type_.of_type, depth)
    inner = _raw_of(type_, depth)
    return st.one_of(st.none(), inner)


def _raw_of(type_: Any, depth: int) -> st.SearchStrategy[Any]:
    if isinstance(type_, GraphQLList):
        return st.lists(_raw(type_.of_type, depth + 1), max_size=3)
    if isinstance(type_, GraphQLEnumType):
        return st.sampled_from(sorted(type_.values))
    if isinstance(type_, GraphQLInputObjectType):
        if depth > 3:
            return st.nothing()
        fields = type_.fields
        required = {n: _raw(f.type, depth + 1) for n, f in fields.items() if is_required(f)}
        optional = {n: _raw(f.type, depth + 1) for n, f in fields.items() if not is_required(f)}
        return st.fixed_dictionaries(required, optional=optional)
    return _SCALARS[type_.name]


def is_required(field: Any) -> bool:
    return isinstance(field.type, GraphQLNonNull) and field.default_value is Undefined


_SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "String": st.text(max_size=6),
    "ID": st.text(max_size=6),
    "Int": st.integers(min_value=-(2**31), max_value=2**31 - 1),
    "Float": st.floats(allow_nan=False, allow_infinity=False),
    "MetricValue": st.floats(allow_nan=False, allow_infinity=False),
    "Boolean": st.booleans(),
    "JSON": st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4), max_size=3),
    "DateTime": _times.map(lambda t: t.isoformat() + "Z"),
}


@contextmanager
def _strawberrys_own_conversion() -> Iterator[None]:
    """Strawberry's general conversion for every input class the plans cover."""
    from lineagehub.schema import schema

    planned = {}
    for name in schema._schema.type_map:
        definition = schema.get_type_by_name(name)
        hook = getattr(definition, "from_input", None)
        if hook is not None and hook.__qualname__.startswith("_builder."):
            planned[definition] = hook
    assert planned, "no input class has a planned conversion"
    for definition in planned:
        definition.from_input = None
    try:
        yield
    finally:
        for definition, hook in planned.items():
            definition.from_input = hook


def _inputs() -> list[str]:
    from lineagehub.schema import schema

    return sorted(
        n for n, t in schema._schema.type_map.items() if isinstance(t, GraphQLInputObjectType)
    )


def _coerced_or_none(raw: Any, type_: Any) -> Any:
    """What graphql-core hands the resolvers for ``raw``; None where it refuses it."""
    try:
        coerced = coerce_input_value(raw, type_)
    except GraphQLError:  # graphql-core 3.2 raises, 3.3 answers Undefined
        return None
    return None if coerced is Undefined else coerced


@pytest.mark.parametrize("name", _inputs())
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_an_input_class_is_built_as_strawberry_builds_it(name: str, data: st.DataObject) -> None:
    from lineagehub.schema import schema

    graphql_type = schema._schema.type_map[name]
    raw = data.draw(_raw_of(graphql_type, 0))
    coerced = _coerced_or_none(raw, GraphQLNonNull(graphql_type))
    assume(coerced is not None)
    cls = schema.get_type_by_name(name).origin
    scalars, config = schema.schema_converter.scalar_registry, schema.config
    planned = convert_argument(coerced, cls, scalars, config)
    with _strawberrys_own_conversion():
        expected = convert_argument(coerced, cls, scalars, config)
    assert planned == expected
    assert type(planned) is type(expected)


def _mutations() -> list[str]:
    from lineagehub.schema import schema

    return sorted(schema._schema.mutation_type.fields)


@pytest.mark.parametrize("call", _mutations())
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_a_mutations_arguments_are_converted_as_strawberry_converts_them(
    call: str, data: st.DataObject
) -> None:
    from lineagehub.schema import schema
    from lineagehub.schema.inputs import converter

    definition = schema._schema.mutation_type.fields[call]
    raw = data.draw(
        st.fixed_dictionaries(
            {n: _raw(a.type) for n, a in definition.args.items() if is_required(a)},
            optional={n: _raw(a.type) for n, a in definition.args.items() if not is_required(a)},
        )
    )
    coerced = {n: _coerced_or_none(v, definition.args[n].type) for n, v in raw.items()}
    assume(all(c is not None or raw[n] is None for n, c in coerced.items()))
    field = next(
        f
        for f in schema.get_type_by_name("Mutation").fields
        if schema.config.name_converter.get_graphql_name(f) == call
    )
    scalars, config = schema.schema_converter.scalar_registry, schema.config
    planned = converter(field.arguments, schema)(coerced, None)
    with _strawberrys_own_conversion():
        expected = convert_arguments(coerced, field.arguments, scalars, config)
    assert planned == expected
    assert {k: type(v) for k, v in planned.items()} == {k: type(v) for k, v in expected.items()}
