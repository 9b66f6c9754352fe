"""The headline metric: the one number that stands for a run or a model version.

Pictures label nodes with it, the CLI puts it first in its tables, and the GraphQL field
``headlineMetric`` returns it; all of them call :func:`headline_metric`, so they agree. The
rule, first match wins:

1. the metric the model's registration named: ``log_model(..., primary_metric="auc")``,
   kept as the version's ``primary_metric`` tag;
2. a metric the promotion policy names (its thresholds, most specific policy first), when
   the caller knows the policies (the server and embedded clients do);
3. the evaluation metric the run's adapter marked as primary: the run's ``primary_metric``
   tag (``lineagehub.ingest.sklearn`` sets it, e.g. ``test_roc_auc`` after ``evaluate()``;
   you may set it too), which a model version records as ``run_primary_metric`` when it is
   registered;
4. the best-ranked of :data:`RANKED_METRICS` the node has, measured on held-out data
   before unprefixed before training: names with the prefixes ``test_``, ``val_``,
   ``valid_``, ``validation_``, ``eval_``, ``holdout_`` (also numbered, ``valid_0_``) first,
   then bare names, then ``train_`` / ``training_`` (a name also matches as the last part of a
   path, ``eval/auc``);
5. else the first metric by name.

A named metric the node does not have is skipped, never shown as missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "PRIMARY_METRIC_TAG",
    "RANKED_METRICS",
    "RUN_PRIMARY_METRIC_TAG",
    "headline_metric",
    "policy_metrics",
]

PRIMARY_METRIC_TAG = "primary_metric"
"""The tag naming a node's primary metric (a version: the registration's; a run: the
adapter's or yours)."""
RUN_PRIMARY_METRIC_TAG = "run_primary_metric"
"""On a model version: the ``primary_metric`` its training run had when it was registered."""

RANKED_METRICS = (
    "roc_auc", "auc", "average_precision", "pr_auc", "f1", "f1_score", "accuracy", "acc",
    "balanced_accuracy", "precision", "recall", "r2", "rmse", "mae", "mse", "map", "ndcg",
    "bleu", "rouge", "perplexity", "logloss", "binary_logloss", "multi_logloss", "log_loss",
    "loss",
)  # fmt: skip
"""Common metric names, best first."""

# Where a metric was measured, from its name's prefix: held-out data first, then unprefixed,
# then training data. LightGBM and XGBoost name evaluation sets ``valid_0``, ``eval_1``...
_SPLIT = re.compile(
    r"^(?:(?P<held>test|val|valid|validation|eval|holdout)|(?P<train>train|training))"
    r"(?:_[0-9]+)?[_/.\-](?P<rest>.+)$"
)
_PATH = re.compile(r"[/.]")
_RANK = {name: i for i, name in enumerate(RANKED_METRICS)}


def _rank(key: str) -> tuple[int, int] | None:
    """(where it was measured, rank of its name) for a ranked metric name, else None."""
    lower = key.lower()
    m = _SPLIT.match(lower)
    if m is not None:
        group, base = (0 if m["held"] else 2), m["rest"]
    else:
        group, base = 1, lower
    rank = _RANK.get(base)
    if rank is None:
        rank = _RANK.get(_PATH.split(base)[-1])  # "eval/auc", "val.accuracy"
    return None if rank is None else (group, rank)


def _numeric(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        return {}
    return {
        str(k): float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
    }


def _tag(props: Mapping[str, Any], key: str) -> str | None:
    tags = props.get("tags")
    value = tags.get(key) if isinstance(tags, Mapping) else None
    return value if isinstance(value, str) and value else None


def headline_metric(
    props: Mapping[str, Any], policy: Iterable[str] = ()
) -> tuple[str, float] | None:
    """The headline metric of a node (its properties: ``metrics`` and ``tags``) as
    ``(name, value)``, or ``None`` when it has no numeric metric. ``policy``: the metric
    names the applicable promotion policies use (see :func:`policy_metrics`)."""
    numeric = _numeric(props.get("metrics"))
    if not numeric:
        return None
    named = [
        _tag(props, PRIMARY_METRIC_TAG),
        *policy,
        _tag(props, RUN_PRIMARY_METRIC_TAG),
    ]
    for name in named:
        if name is not None and name in numeric:
            return name, numeric[name]
    ranked = [(r, key) for key in sorted(numeric) if (r := _rank(key)) is not None]
    key = min(ranked)[1] if ranked else min(numeric)
    return key, numeric[key]


def policy_metrics(policies: Mapping[Any, Any], model: str | None) -> list[str]:
    """The metric names the promotion policies for ``model`` name in their thresholds: this
    model's policies (a stage's before the model-wide one, Production first), then every
    model's (``"*"``)."""
    if not policies or not model:
        return []
    stages = ("Production", "Staging", "Archived", "None")
    keys: list[Any] = []
    for who in (model, "*"):
        keys += [(who, s) for s in stages] + [who]
    names: list[str] = []
    for key in keys:
        policy = policies.get(key)
        for rule in getattr(policy, "thresholds", ()) or ():
            metric = getattr(rule, "metric", None)
            if isinstance(metric, str) and metric not in names:
                names.append(metric)
    return names
