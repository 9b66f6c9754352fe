"""Scalars beyond GraphQL's own (mapped in the schema's config: ``SCALARS``)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, NewType

import dateutil.parser  # strawberry's own DateTime parser (python-dateutil is its dependency)
import strawberry

from lineagehub.graph import ValidationError
from lineagehub.graph.model import check_time, metric_from_wire, metric_to_wire

MetricValue = NewType("MetricValue", float)

METRIC_VALUE = strawberry.scalar(
    name="MetricValue",
    serialize=metric_to_wire,
    parse_value=metric_from_wire,
    description='A float that may also be "NaN", "Infinity" or "-Infinity": a diverging loss is '
    "a fact worth keeping, and GraphQL's Float cannot carry it.",
)


#: Times in the form the SDK writes (``to_iso``), which ``datetime.fromisoformat`` reads to the
#: same instant as dateutil's ``isoparse`` at a tenth of the cost (a 10,000-point ``logBatch``
#: carries 10,000 of them); anything else goes to ``isoparse`` as it always did.
_CANONICAL_TIME = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)?\Z", re.ASCII
)


def _parse_datetime(value: Any) -> dt.datetime:
    """An ISO 8601 time; without a timezone it is UTC; checked and normalised to UTC at entry
    (:func:`~lineagehub.graph.model.check_time`), so no resolver sees an out-of-range time."""
    if not isinstance(value, str):
        raise ValidationError(
            f"a DateTime is ISO 8601 text, got {type(value).__name__}", field="DateTime"
        )
    parsed = None
    if _CANONICAL_TIME.match(value):  # what the SDK sends: the standard library's parser
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:  # 24:00, a 61st second ...: dateutil decides, as before
            parsed = None
    try:
        if parsed is None:
            parsed = dateutil.parser.isoparse(value)
    except (ValueError, OverflowError):
        raise ValidationError(
            f"{value!r:.40} is not an ISO 8601 time (2026-03-01T12:00:00Z)", field="DateTime"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return check_time(parsed, "DateTime")


DATETIME = strawberry.scalar(
    name="DateTime",
    description="Date with time (isoformat)",
    serialize=dt.datetime.isoformat,
    parse_value=_parse_datetime,
)

SCALARS: dict[object, Any] = {MetricValue: METRIC_VALUE, dt.datetime: DATETIME}
