"""What the server makes of the values a request carries: times (the DateTime scalar) and
metric points (MetricInput), read fast on the paths the SDK uses and exactly as before."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dateutil.parser
import httpx
import pytest
from http_server import HubServer
from hypothesis import given, settings
from hypothesis import strategies as st

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
