"""Scalars beyond GraphQL's own (mapped in the schema's config: ``SCALARS``)."""

from __future__ import annotations

import math
from typing import Any, NewType

import strawberry

from lineagehub.graph import ValidationError

_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _serialize(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _parse(value: Any) -> float:
    if isinstance(value, str) and value in _SPECIAL:
        return _SPECIAL[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(
            f'a metric value is a number or "NaN", "Infinity", "-Infinity"; got {value!r}',
            field="value",
        )
    return float(value)


MetricValue = NewType("MetricValue", float)

METRIC_VALUE = strawberry.scalar(
    name="MetricValue",
    serialize=_serialize,
    parse_value=_parse,
    description='A float that may also be "NaN", "Infinity" or "-Infinity": a diverging loss is '
    "a fact worth keeping, and GraphQL's Float cannot carry it.",
)

SCALARS: dict[object, Any] = {MetricValue: METRIC_VALUE}
