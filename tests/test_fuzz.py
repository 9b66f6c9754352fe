"""Fuzzing: queries and mutations generated from the committed schema (hypothesis-graphql),
sent over real HTTP, and random sequences of SDK calls.

Deterministic (``derandomize``: the examples follow from the test, not from a clock) and
bounded (a few hundred requests per run), so the suite stays fast and a failure repeats.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_server import HubServer, example_hub
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, nodes, queries

from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import ValidationError, open_store
from lineagehub.ingest.client import Client
from lineagehub.interfaces.server import create_app

ROOT = Path(__file__).resolve().parent.parent
SDL = (ROOT / "schema" / "schema.graphql").read_text()

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=100,
    suppress_health_check=list(HealthCheck),
)

_offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
_times = st.one_of(
    st.datetimes(timezones=_offsets).map(lambda d: d.isoformat()),
    st.datetimes(min_value=datetime(9999, 12, 31), timezones=_offsets).map(lambda d: d.isoformat()),
    st.sampled_from(["0001-01-01T00:30:00+01:00", "2026-03-01", "not a time", ""]),
)
SCALARS = {
    "DateTime": _times.map(nodes.String),
    "JSON": st.one_of(
        st.integers(-(2**31), 2**31 - 1).map(nodes.Int),
        st.text(max_size=20).map(nodes.String),
        st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
    ),
    "MetricValue": st.one_of(
        st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "x"]).map(nodes.String),
    ),
}


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with example_hub(tmp_path_factory.mktemp("fuzz"), timeout=60) as client:
        yield client


def check(response: httpx.Response) -> None:
    """No server fault, and every error coded."""
    assert response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    body: dict[str, Any] = response.json()
    for error in body.get("errors") or ():
        code = error["extensions"]["code"]
        assert code != "INTERNAL", (error, response.request.content[:2000])
        assert isinstance(code, str) and code


@FUZZ
@given(query=queries(SDL, custom_scalars=SCALARS))
def test_generated_queries(http: httpx.Client, query: str) -> None:
    check(http.post("/graphql", json={"query": query}))


@FUZZ
@given(query=mutations(SDL, custom_scalars=SCALARS))
def test_generated_mutations(http: httpx.Client, query: str) -> None:
    check(http.post("/graphql", json={"query": query}))


@settings(FUZZ, max_examples=60)
@given(query=queries(SDL, custom_scalars=SCALARS, mode=Mode.NEGATIVE))
def test_generated_invalid_queries(http: httpx.Client, query: str) -> None:
    check(http.post("/graphql", json={"query": query}))


# --- the SDK's buffer: any sequence of valid and invalid calls stores exactly the valid ones


_good_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(-(2**53), 2**53),
)
_bad_values = st.one_of(
    st.just(10**400), st.text(max_size=3), st.booleans(), st.none(), st.just([1.0])
)
_good_times = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=_offsets
)
_bad_times = st.one_of(
    st.just(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14)))),
    st.just(datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))),
    st.datetimes(max_value=datetime(2200, 1, 1)),  # naive
)
_calls = st.lists(
    st.tuples(
        st.sampled_from(["loss", "acc", "bad key!", ""]),
        st.one_of(_good_values, _bad_values),
        st.one_of(st.none(), _good_times, _bad_times),
    ),
    max_size=12,
)


def _valid(key: str, value: Any, when: datetime | None) -> bool:
    if key not in ("loss", "acc"):
        return False
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, int) and abs(value) > 2**1000:  # beyond a float
        return False
    if when is not None and when.tzinfo is None:
        return False
    return when is None or datetime(1, 1, 2, tzinfo=timezone.utc) <= when <= datetime(
        9999, 12, 30, tzinfo=timezone.utc
    )


@pytest.fixture(scope="module", params=["embedded", "remote"])
def sdk(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Client]:
    folder = tmp_path_factory.mktemp("buffer")
    uri = f"sqlite:///{folder / 'hub.db'}"
    if request.param == "embedded":
        client = Client(uri)
        yield client
        client.close()
        return
    store = open_store(uri)
    artifacts = open_artifact_store((folder / "artifacts").as_uri())
    with HubServer(create_app(store=store, artifacts=artifacts)) as server:
        client = Client(server.url)
        yield client
        client.close()
    store.close()


@settings(FUZZ, max_examples=30)
@given(calls=_calls)
def test_the_buffer_stores_exactly_the_valid_calls(
    sdk: Client, calls: list[tuple[str, Any, datetime | None]]
) -> None:
    run = sdk.start_run("buffer")
    expected: dict[str, list[tuple[int, float]]] = {}
    for step, (key, value, when) in enumerate(calls):
        if _valid(key, value, when):
            run.log_metrics({key: value}, step=step, timestamp=when)
            expected.setdefault(key, []).append((step, float(value)))
        else:
            with pytest.raises(ValidationError):
                run.log_metrics({key: value}, step=step, timestamp=when)
    run.end()
    for key in ("loss", "acc"):
        stored = [(p.step, p.value) for p in sdk.metric_history(run.id, key)]
        assert stored == expected.get(key, [])


# --- filters: the JSON a client may send as `where`, through variables (where "$gt" and the
# other operators can be written, unlike in GraphQL literals)

_filter_keys = st.sampled_from(
    ["$and", "$or", "$not", "$gt", "$lte", "$in", "$nin", "$exists", "$eq", "$regex",
     "name", "status", "metrics.auc", "params.max_depth", "tags.team", "_created_at", "id",
     "a..b", "", "\x00"]
)  # fmt: skip
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
)
_filters = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_filter_keys, inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(FUZZ, max_examples=150)
@given(where=st.dictionaries(_filter_keys, _filters, max_size=4))
def test_generated_filters(http: httpx.Client, where: dict[str, Any]) -> None:
    query = "query($w: JSON) { runs(where: $w, first: 5) { edges { cursor } } }"
    check(http.post("/graphql", json={"query": query, "variables": {"w": where}}))
