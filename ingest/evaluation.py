"""Evaluation results by slice: the metrics of a model on each value of a column.

Framework adapters call :func:`slice_metrics` with a function that computes their metrics
on a subset of rows, and :func:`log_slices` to keep the result with the run (an evaluation
artifact whose data the hub keeps in the graph, so the compliance report of the version the
run generated shows it)::

    per_slice = slice_metrics(groups, lambda rows: my_metrics(y[rows], predicted[rows]))
    log_slices(run, "region", per_slice, prefix="test")

The artifact's data: ``{"slice_column": …, "prefix": …, "slices": {value: {"rows": n,
"metrics": {name: value}}}}``; a value that cannot be a JSON key is shown as its text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lineagehub.graph import ValidationError
from lineagehub.vocabulary import ArtifactKind

if TYPE_CHECKING:
    from lineagehub.ingest.run import ActiveRun
    from lineagehub.vocabulary import Artifact

MAX_SLICES = 200


def slice_values(data: Any, column: str | Sequence[Any]) -> list[Any]:
    """The per-row slice values: ``column`` names a column of ``data`` (a DataFrame or a
    mapping of columns), or is itself the sequence of values."""
    if isinstance(column, str):
        try:
            values = data[column]
        except (KeyError, TypeError, IndexError, ValueError):
            raise ValidationError(
                f"slice_by: no column {column!r:.60} in the evaluation data", field="slice_by"
            ) from None
        return list(values)
    return list(column)


def slice_metrics(
    values: Sequence[Any],
    compute: Callable[[list[int]], Mapping[str, float]],
    *,
    min_rows: int = 1,
) -> dict[str, dict[str, Any]]:
    """``{slice: {"rows": n, "metrics": compute(row indexes)}}`` for each distinct value
    (as text), in value order; slices of fewer than ``min_rows`` rows are left out, and
    metrics that are not finite numbers are dropped. More than 200 distinct values is a
    :class:`ValidationError` (a column of ids is not a slice)."""
    groups: dict[str, list[int]] = {}
    for i, v in enumerate(values):
        key = "null" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
        groups.setdefault(key, []).append(i)
    if len(groups) > MAX_SLICES:
        raise ValidationError(
            f"slice_by: {len(groups)} distinct values; at most {MAX_SLICES} slices",
            field="slice_by",
        )
    out: dict[str, dict[str, Any]] = {}
    for key in sorted(groups):
        rows = groups[key]
        if len(rows) < min_rows:
            continue
        metrics = {
            str(k): float(m)
            for k, m in compute(rows).items()
            if isinstance(m, (int, float)) and math.isfinite(float(m))
        }
        out[key] = {"rows": len(rows), "metrics": metrics}
    return out


def log_slices(
    run: ActiveRun,
    column: str,
    slices: Mapping[str, Mapping[str, Any]],
    *,
    prefix: str = "test",
) -> Artifact:
    """Keep per-slice results with ``run`` as ``<prefix>_slices_<column>.json``."""
    if not isinstance(column, str) or not column:
        raise ValidationError("slice column must be a non-empty name", field="slice_by")
    data = {"slice_column": column, "prefix": prefix, "slices": dict(slices)}
    return run.log_evaluation(data, f"{prefix}_slices_{column}.json", kind=ArtifactKind.REPORT)


__all__ = ["log_slices", "slice_metrics", "slice_values"]
