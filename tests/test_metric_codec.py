"""The one MetricValue codec (lineagehub.graph.model): what the server and the remote client
put on the wire for a metric value, and what they accept back."""

from __future__ import annotations

import json
import math

import pytest

from lineagehub.graph import ValidationError
from lineagehub.graph.model import metric_from_wire, metric_to_wire
from lineagehub.schema.scalars import METRIC_VALUE


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (0.0, 0.0),
        (-1.5, -1.5),
        (1e308, 1e308),
        (5e-324, 5e-324),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
    ],
)
def test_round_trip(value: float, wire: float | str) -> None:
    assert metric_to_wire(value) == wire
    # through JSON, as it travels
    back = metric_from_wire(json.loads(json.dumps(metric_to_wire(value))))
    assert back == value and type(back) is float


def test_nan_round_trips() -> None:
    assert metric_to_wire(math.nan) == "NaN"
    assert math.isnan(metric_from_wire("NaN"))


def test_integers_are_read_as_floats() -> None:
    assert metric_from_wire(3) == 3.0 and type(metric_from_wire(3)) is float


@pytest.mark.parametrize(
    "bad",
    [
        True,
        False,
        None,
        "nan",
        "inf",
        "Inf",
        "+Infinity",
        "1.5",
        "",
        " NaN",
        [1.0],
        {"value": 1.0},
        b"NaN",
        10**400,  # beyond the float range
    ],
)
def test_bad_input_is_a_validation_error_naming_the_field(bad: object) -> None:
    with pytest.raises(ValidationError, match="metric value") as caught:
        metric_from_wire(bad)
    assert caught.value.field == "value"
    with pytest.raises(ValidationError) as caught:
        metric_from_wire(bad, "metrics.loss")
    assert caught.value.field == "metrics.loss"


def test_the_graphql_scalar_is_this_codec() -> None:
    assert METRIC_VALUE.serialize is metric_to_wire
    assert METRIC_VALUE.parse_value is metric_from_wire
