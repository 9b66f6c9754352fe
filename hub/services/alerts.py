"""Alerts: rules over monitoring windows, their state machine, and alerts received from a
Prometheus Alertmanager, each an ``Alert`` node ``ABOUT`` the deployment and the version it
serves.

A rule (from the rules file ``LINEAGEHUB_ALERT_RULES``, TOML or JSON)::

    [[rule]]
    name = "feature-drift"
    expr = "drift.features_drifted >= 1 or drift.*.psi > 0.25"
    for = "2h"                  # how long the condition must hold before it fires (default 0)
    keep_firing_for = "1h"      # how long it keeps firing once the condition stops holding
    severity = "warning"        # info, warning, critical
    deployment = "churn-prod"   # only this deployment (an id, name or name@environment)
    labels = { team = "ml" }
    annotations = { summary = "Input drift on {deployment}" }

``expr`` compares the window's metrics (``sample_count``, ``drift.<feature>.<psi |
p_adjusted | jensen_shannon | wasserstein | statistic>``, ``drift.features_drifted``,
``accuracy``, ``f1``, ``auc``, ``mae``, ``rmse``, ``latency.p50``..., ``rejected``) with
numbers: ``<metric> <op> <number>``, ``op`` one of ``> >= < <= == !=``, joined by ``and`` /
``or`` (``and`` binds tighter). ``*`` in a metric matches any part of a name: the term holds
when one matching metric does. A metric the window does not have never holds.

Each report of a window evaluates the rules on it, at the window's end time (so the times
are those of the traffic, not of the reports): the condition holding opens a *pending* alert
(or a *firing* one when ``for`` is 0); holding for ``for`` makes it *firing* and notifies;
not holding for ``keep_firing_for`` *resolves* it and notifies. A pending alert whose
condition stops holding is dropped (it never fired). The ``fingerprint`` (rule, deployment,
labels) de-duplicates: while an alert of a fingerprint is open no other is opened. Open alerts
can be *acknowledged* (state ``acknowledged``, still open) and *silenced* until a time (no
notifications meanwhile). Every change is in the audit log.

Notifications go through the webhooks (events ``alert.firing`` and ``alert.resolved``) with a
body an Alertmanager receiver takes (webhook version 4: ``version``, ``status``,
``groupKey``, ``alerts[]``...) plus a ``lineage`` block: the deployment, the version it serves,
its training data, run and code commit.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from lineagehub.graph import ConfigError, Direction, NotFoundError, ValidationError
from lineagehub.graph.model import to_iso
from lineagehub.services.access import projects_of
from lineagehub.services.monitoring import MonitoringService
from lineagehub.services.webhooks import AfterCommit, EventSink, WebhookEvent
from lineagehub.vocabulary import (
    Alert,
    AlertState,
    Deployment,
    EdgeKind,
    MonitoringWindow,
    NodeKind,
    Severity,
    link,
    member,
    validate,
)

OPEN = (AlertState.PENDING.value, AlertState.FIRING.value, AlertState.ACKNOWLEDGED.value)
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_TERM = re.compile(
    r"^\s*(?P<metric>[A-Za-z0-9_.*\-/]+)\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<value>[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)\s*$"
)
_DURATION = re.compile(r"^\s*(\d+(\.\d+)?)\s*(ms|s|m|h|d|w)?\s*\Z")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_ZERO_TIME = "0001-01-01T00:00:00Z"


def parse_duration(value: Any, where: str) -> timedelta:
    """``"90s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"1w"`` or a number of seconds, up to
    :data:`MAX_DURATION`."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)) is not None:
        seconds = float(m[1]) * _UNITS[m[3]]
    if seconds is None or not math.isfinite(seconds):
        raise ValidationError(
            f"{where}: {value!r} is not a duration (30s, 5m, 2h, 1d or seconds)", field=where
        )
    if seconds > MAX_DURATION.total_seconds():
        raise ValidationError(
            f"{where}: {value!r} is longer than {MAX_DURATION.days} days", field=where
        )
    return timedelta(seconds=seconds)


#: The longest duration a rule may name (a year): beyond it, a window would never close.
MAX_DURATION = timedelta(days=366)


@dataclass(frozen=True)
class Term:
    metric: str
    op: str
    value: float

    def matches(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """The metrics matching the name for which the comparison holds."""
        if "*" in self.metric:
            pattern = re.compile(
                "^" + ".*".join(re.escape(p) for p in self.metric.split("*")) + "$"
            )
            names = [k for k in metrics if pattern.match(k)]
        else:
            names = [self.metric] if self.metric in metrics else []
        return {k: metrics[k] for k in names if _OPS[self.op](metrics[k], self.value)}


def parse_expr(text: Any, where: str = "expr") -> list[list[Term]]:
    """An expression as a disjunction of conjunctions of terms."""
    if not isinstance(text, str) or not text.strip() or len(text) > 2000:
        raise ValidationError(f"{where} must be a non-empty expression", field=where)
    ors = []
    for part in re.split(r"\s+or\s+", text.strip()):
        ands = []
        for term in re.split(r"\s+and\s+", part):
            m = _TERM.match(term)
            if m is None:
                raise ValidationError(
                    f"{where}: {term.strip()!r} is not '<metric> <op> <number>' (op: > >= < "
                    "<= == !=; terms joined by 'and' / 'or')",
                    field=where,
                )
            ands.append(Term(m["metric"], m["op"], float(m["value"])))
        ors.append(ands)
    return ors


def evaluate(expr: list[list[Term]], metrics: Mapping[str, float]) -> dict[str, float] | None:
    """The metric values that make ``expr`` hold, or ``None`` when it does not."""
    for ands in expr:
        found: dict[str, float] = {}
        for term in ands:
            hit = term.matches(metrics)
            if not hit:
                break
            found.update(hit)
        else:
            return found
    return None


@dataclass(frozen=True)
class AlertRule:
    """One alert rule (see the module docstring)."""

    name: str
    expr: str
    for_: timedelta = timedelta(0)
    keep_firing_for: timedelta = timedelta(0)
    severity: Severity = Severity.WARNING
    deployment: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    terms: list[list[Term]] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.match(r"^[A-Za-z0-9_.:\-]{1,128}\Z", self.name):
            raise ValidationError(
                f"rule name {self.name!r}: 1-128 letters, digits, '_', '.', ':' or '-'",
                field="name",
            )
        object.__setattr__(self, "terms", parse_expr(self.expr))
        for what, mapping in (("labels", self.labels), ("annotations", self.annotations)):
            if not isinstance(mapping, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
            ):
                raise ValidationError(f"{what} must map names to texts", field=what)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expr": self.expr,
            "for": self.for_.total_seconds(),
            "keep_firing_for": self.keep_firing_for.total_seconds(),
            "severity": self.severity.value,
            "deployment": self.deployment,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
        }


_RULE_KEYS = {
    "name",
    "expr",
    "for",
    "keep_firing_for",
    "severity",
    "deployment",
    "labels",
    "annotations",
}


def parse_rule(entry: Any, where: str = "rule") -> AlertRule:
    """A rule from a mapping (a rules file's table, an API call's input)."""
    if not isinstance(entry, Mapping):
        raise ValidationError(f"{where}: expected a table", field=where)
    unknown = sorted(set(entry) - _RULE_KEYS)
    if unknown:
        raise ValidationError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_RULE_KEYS))})",
            field=unknown[0],
        )
    for key in ("name", "expr"):
        if key not in entry:
            raise ValidationError(f"{where}: '{key}' is required", field=key)
    for key in ("labels", "annotations"):
        value = entry.get(key)
        if value is not None and (
            not isinstance(value, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        ):
            raise ValidationError(
                f"{where}: {key} must map names to strings, got {value!r:.80}", field=key
            )
    try:
        return AlertRule(
            name=entry["name"],
            expr=entry["expr"],
            for_=parse_duration(entry.get("for", 0), "for"),
            keep_firing_for=parse_duration(entry.get("keep_firing_for", 0), "keep_firing_for"),
            severity=member(Severity, entry.get("severity", "warning"), "severity"),
            deployment=entry.get("deployment"),
            labels=dict(entry.get("labels") or {}),
            annotations=dict(entry.get("annotations") or {}),
        )
    except ValidationError as e:
        raise ValidationError(f"{where}: {e.message}", field=e.field) from None


def load_alert_rules(path: str | Path) -> list[AlertRule]:
    """The rules of a TOML (or ``.json``) file with a ``rule`` array of tables; any problem
    is a :class:`ConfigError` naming the file, the rule and the field."""
    path = Path(path).expanduser()
    where = f"alert rules file {str(path)!r}"
    try:
        raw = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where} cannot be read: {e}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            if sys.version_info < (3, 11):  # pragma: no cover
                raise ConfigError(f"{where}: TOML needs Python 3.11 or later; use a .json file")
            import tomllib

            data = tomllib.loads(raw)
    except ValueError as e:
        raise ConfigError(f"{where} does not parse: {e}") from None
    if not isinstance(data, dict) or set(data) - {"rule"}:
        raise ConfigError(f"{where}: expected a 'rule' array of tables ([[rule]])")
    rules: list[AlertRule] = []
    for i, entry in enumerate(data.get("rule") or []):
        try:
            rule = parse_rule(entry, f"rule #{i + 1}")
        except ValidationError as e:
            raise ConfigError(f"{where}, {e.message}") from None
        if any(r.name == rule.name for r in rules):
            raise ConfigError(f"{where}, rule #{i + 1}: a second rule named {rule.name!r}")
        rules.append(rule)
    return rules


def fingerprint(rule: str, deployment: str, labels: Mapping[str, str]) -> str:
    facts = json.dumps([rule, deployment, sorted(labels.items())])
    return hashlib.sha256(facts.encode()).hexdigest()[:16]


class AlertService:
    """Alert rules evaluated on monitoring windows, and the alerts' life (see the module
    docstring)."""

    def __init__(
        self,
        monitoring: MonitoringService,
        rules: Sequence[AlertRule] = (),
        *,
        on_event: EventSink | None = None,
        external_url: str = "",
    ) -> None:
        self.monitoring = monitoring
        self.store = monitoring.store
        self.rules: dict[str, AlertRule] = {r.name: r for r in rules}
        self._events = AfterCommit(self.store, on_event)
        self.external_url = external_url
        monitoring.alerts = self

    # --- rules ------------------------------------------------------------------------------

    def set_rule(self, rule: AlertRule, actor: str) -> AlertRule:
        """Add or replace a rule (for this process; the rules file is read at start-up)."""
        with self.store.transaction():
            self.rules[rule.name] = rule
            self.store.append_audit(actor, "alert_rule.set", f"rule:{rule.name}", rule.to_dict())
        return rule

    def delete_rule(self, name: str, actor: str) -> None:
        if name not in self.rules:
            raise NotFoundError(f"no alert rule {name!r}", ids=[name])
        with self.store.transaction():
            del self.rules[name]
            self.store.append_audit(actor, "alert_rule.delete", f"rule:{name}", {})

    # --- the state machine ------------------------------------------------------------------

    def _open(self, fp: str) -> Alert | None:
        page = self.store.find_nodes(
            NodeKind.ALERT.value,
            {"fingerprint": fp, "state": {"$in": list(OPEN)}},
            ["-fired_at"],
            limit=1,
        )
        return Alert.from_node(page.items[0]) if page.items else None

    def _resolved_since(self, fp: str, t: datetime) -> bool:
        """Whether an alert of this fingerprint was resolved at or after ``t``: a window
        ending by then is older evidence (a retry, late labels), which reopens nothing."""
        page = self.store.find_nodes(
            NodeKind.ALERT.value,
            {
                "fingerprint": fp,
                "state": AlertState.RESOLVED.value,
                "resolved_at": {"$gte": to_iso(t)},
            },
            limit=1,
        )
        return bool(page.items)

    def _applies(self, rule: AlertRule, dep: Deployment) -> bool:
        if rule.deployment is None:
            return True
        if rule.deployment == dep.id or rule.deployment == dep.name:
            return True
        return rule.deployment == f"{dep.name}@{dep.environment}"

    def evaluate(self, dep: Deployment, window: MonitoringWindow) -> list[Alert]:
        """Apply every rule to a window of ``dep`` just reported; the alerts changed."""
        changed = []
        for rule in list(self.rules.values()):
            if not self._applies(rule, dep):
                continue
            found = evaluate(rule.terms, window.metrics)
            alert = self._step(rule, dep, window, found)
            if alert is not None:
                changed.append(alert)
        return changed

    def _step(
        self,
        rule: AlertRule,
        dep: Deployment,
        window: MonitoringWindow,
        found: dict[str, float] | None,
    ) -> Alert | None:
        # One transaction from reading the open alert to writing it: windows of one deployment
        # reported at once (replicas, a server's threads or processes) each found no open
        # alert and opened one of their own, one fingerprint firing (and notified) twice.
        with self._events.transaction():
            return self._step_within(rule, dep, window, found)

    def _step_within(
        self,
        rule: AlertRule,
        dep: Deployment,
        window: MonitoringWindow,
        found: dict[str, float] | None,
    ) -> Alert | None:
        labels = {**rule.labels}
        fp = fingerprint(rule.name, dep.id, labels)
        alert = self._open(fp)
        t = window.end
        if found is None:
            if alert is None:
                return None
            if alert.state is AlertState.PENDING:  # it never fired: dropped (and audited)
                with self._events.transaction():
                    self.store.delete_nodes([alert.id])
                    self.store.append_audit(
                        "system", "alert.drop", alert.id, {"state": "pending", "rule": rule.name}
                    )
                return None
            last = alert.last_true_at or alert.fired_at
            if t - last < rule.keep_firing_for or t <= last:
                return None
            alert.state, alert.resolved_at = AlertState.RESOLVED, max(t, alert.fired_at)
            return self._save(alert, "alert.resolve", WebhookEvent.ALERT_RESOLVED, "system")
        values: dict[str, Any] = {
            k: (None if not math.isfinite(v) else v) for k, v in found.items()
        }
        if alert is None:
            if self._resolved_since(fp, t):
                return None
            held = t - window.start  # the window is the first evidence: it held throughout
            state = AlertState.FIRING if held >= rule.for_ else AlertState.PENDING
            alert = Alert(
                rule=rule.name,
                severity=rule.severity,
                state=state,
                values=values,
                message=_message(rule, dep, values),
                fired_at=t,
                fingerprint=fp,
                source="rule",
                deployment=dep.id,
                model_version=window.model_version,
                labels=labels,
                annotations=_annotations(rule, dep),
                active_since=window.start,
                last_true_at=t,
            )
            event = WebhookEvent.ALERT_FIRING if state is AlertState.FIRING else None
            return self._save(alert, "alert.open", event, "system", new=True)
        alert.values = values
        if alert.last_true_at is None or t > alert.last_true_at:
            alert.last_true_at = t
        since = alert.active_since or alert.fired_at
        if alert.state is AlertState.PENDING and t - since >= rule.for_:
            alert.state, alert.fired_at = AlertState.FIRING, max(t, alert.fired_at)
            return self._save(alert, "alert.fire", WebhookEvent.ALERT_FIRING, "system")
        # still holding: the values and the time it last held (every change audited)
        return self._save(alert, "alert.observe", None, "system")

    def _save(
        self,
        alert: Alert,
        action: str,
        event: WebhookEvent | None,
        actor: str,
        *,
        new: bool = False,
        payload: Mapping[str, Any] | None = None,
    ) -> Alert:
        with self._events.transaction():
            self.store.upsert_nodes([alert.to_node()])
            if new:
                self._link(alert)
                # an alert is in the project of what it is about (found over its new edges)
                alert.project = projects_of(self.store, [alert.to_node()])[alert.id]
                if alert.project is not None:
                    self.store.upsert_nodes([alert.to_node()])
            self.store.append_audit(
                actor,
                action,
                alert.id,
                {"state": alert.state.value, "rule": alert.rule, **(payload or {})},
            )
            if event is not None and not self._silenced(alert):
                self._events.emit(event, self.notification(alert))
        return alert

    def _link(self, alert: Alert) -> None:
        edges = []
        for target, kind in ((alert.deployment, NodeKind.DEPLOYMENT),):
            if target:
                edges.append(link(EdgeKind.ABOUT, alert.id, NodeKind.ALERT, target, kind))
        if alert.model_version:
            edges.append(
                link(
                    EdgeKind.ABOUT,
                    alert.id,
                    NodeKind.ALERT,
                    alert.model_version,
                    NodeKind.MODEL_VERSION,
                )
            )
        self.store.upsert_edges(edges)

    def _silenced(self, alert: Alert) -> bool:
        return alert.silenced_until is not None and alert.silenced_until > datetime.now(
            timezone.utc
        )

    # --- people -----------------------------------------------------------------------------

    def get(self, alert_id: str) -> Alert:
        if not isinstance(alert_id, str) or not alert_id.startswith("alert:"):
            raise ValidationError("give an alert id (alert:...)", field="alert_id")
        node = self.store.get_nodes([alert_id])[0]
        if node is None or node.label != NodeKind.ALERT.value:
            raise NotFoundError(f"no alert {alert_id!r}", ids=[alert_id])
        return Alert.from_node(node)

    def acknowledge(self, alert_id: str, actor: str, comment: str | None = None) -> Alert:
        """Someone is on it: ``acknowledged`` (still open, not notified again)."""
        alert = self.get(alert_id)
        if alert.state not in (AlertState.FIRING, AlertState.ACKNOWLEDGED):
            raise ValidationError(
                f"{alert_id} is {alert.state.value}: only a firing alert can be acknowledged",
                field="alert_id",
            )
        alert.state = AlertState.ACKNOWLEDGED
        alert.acknowledged_by, alert.acknowledged_at = actor, datetime.now(timezone.utc)
        return self._save(alert, "alert.acknowledge", None, actor, payload={"comment": comment})

    def silence(self, alert_id: str, until: datetime, actor: str) -> Alert:
        """No notifications about the alert until ``until``."""
        alert = self.get(alert_id)
        if not isinstance(until, datetime) or until.tzinfo is None:
            raise ValidationError("until must be a timezone-aware time", field="until")
        alert.silenced_until = until
        return self._save(
            alert, "alert.silence", None, actor, payload={"until": to_iso(until, "until")}
        )

    def find(
        self,
        deployment: str | None = None,
        state: str | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        """Alerts, newest first; ``state`` one of the states or ``open``."""
        where: dict[str, Any] = {}
        if deployment is not None:
            where["deployment"] = self.monitoring.deployment(deployment).id
        if state == "open":
            where["state"] = {"$in": list(OPEN)}
        elif state is not None:
            where["state"] = member(AlertState, state, "state").value
        page = self.store.find_nodes(NodeKind.ALERT.value, where, ["-fired_at"], limit=limit)
        return [Alert.from_node(n) for n in page.items]

    # --- lineage and notifications ----------------------------------------------------------

    def lineage(self, alert: Alert) -> dict[str, Any]:
        """Where the alert leads: the deployment, the version it served, the run that
        trained it, its training data and code commit (ids)."""
        about = self.store.neighbors([alert.id], Direction.UPSTREAM, [EdgeKind.ABOUT.value])[
            alert.id
        ]
        deployment = alert.deployment or next(
            (a.node.id for a in about if a.node.label == NodeKind.DEPLOYMENT.value), None
        )
        version = alert.model_version or next(
            (a.node.id for a in about if a.node.label == NodeKind.MODEL_VERSION.value), None
        )
        if version is None and deployment is not None:
            version = self.monitoring.served_version(deployment, alert.fired_at)
        runs: list[str] = []
        data: list[str] = []
        commits: list[str] = []
        if version is not None:
            gen = self.store.neighbors([version], Direction.UPSTREAM, [EdgeKind.GENERATED_BY.value])
            runs = [a.node.id for a in gen[version] if a.node.label == NodeKind.RUN.value]
            data = self.monitoring.training_data(version)
            if runs:
                code = self.store.neighbors(runs, Direction.UPSTREAM, [EdgeKind.RAN_CODE.value])
                commits = sorted({a.node.id for r in runs for a in code[r]})
        return {
            "alert": alert.id,
            "deployment": deployment,
            "model_version": version,
            "training_runs": runs,
            "training_data": data,
            "code_commits": commits,
        }

    def notification(self, alert: Alert) -> dict[str, Any]:
        """The webhook body of an alert's change: Alertmanager's webhook (version 4) and a
        ``lineage`` block."""
        status = "resolved" if alert.state is AlertState.RESOLVED else "firing"
        labels = {
            "alertname": alert.rule,
            "severity": alert.severity.value,
            **({"deployment": alert.deployment} if alert.deployment else {}),
            **({"model_version": alert.model_version} if alert.model_version else {}),
            **alert.labels,
        }
        annotations = dict(alert.annotations)
        if alert.message:
            annotations.setdefault("description", alert.message)
        entry = {
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": to_iso(alert.fired_at),
            "endsAt": to_iso(alert.resolved_at) if alert.resolved_at else _ZERO_TIME,
            "generatorURL": f"{self.external_url}/graphql" if self.external_url else "",
            "fingerprint": alert.fingerprint or alert.id,
        }
        group = {"alertname": alert.rule}
        return {
            "version": "4",
            "groupKey": "{}:" + "{" + f'alertname="{alert.rule}"' + "}",
            "truncatedAlerts": 0,
            "status": status,
            "receiver": "lineagehub",
            "groupLabels": group,
            "commonLabels": labels,
            "commonAnnotations": annotations,
            "externalURL": self.external_url,
            "alerts": [entry],
            "lineage": self.lineage(alert),
        }

    # --- alerts from a Prometheus Alertmanager ----------------------------------------------

    def receive_alertmanager(self, payload: Any, actor: str) -> list[Alert]:
        """Alerts of an Alertmanager webhook (version 4) as Alert nodes: each linked to the
        deployment its ``deployment`` label names (an id, name or name@environment) and the
        version it served; one node per firing, de-duplicated by the Alertmanager's
        fingerprint; a ``resolved`` alert resolves the open one."""
        if not isinstance(payload, Mapping) or not isinstance(payload.get("alerts"), list):
            raise ValidationError(
                "expected an Alertmanager webhook body with an 'alerts' list", field="alerts"
            )
        if len(payload["alerts"]) > 1000:
            raise ValidationError("at most 1000 alerts per request", field="alerts")
        checked = [self._am_alert(a, i) for i, a in enumerate(payload["alerts"])]
        out = []
        with self._events.transaction():
            for item in checked:
                out.append(self._receive(item, actor))
        return out

    def _am_alert(self, a: Any, i: int) -> dict[str, Any]:
        where = f"alerts[{i}]"
        if not isinstance(a, Mapping):
            raise ValidationError(f"{where} must be an object", field=where)
        labels = a.get("labels")
        if not isinstance(labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise ValidationError(f"{where}.labels must map names to texts", field=where)
        if "deployment" not in labels:
            raise ValidationError(
                f"{where}.labels needs 'deployment' (a deployment's id, name or "
                "name@environment) to link the alert",
                field=f"{where}.labels.deployment",
            )
        dep = self.monitoring.deployment(labels["deployment"])
        status = a.get("status", "firing")
        if status not in ("firing", "resolved"):
            raise ValidationError(f"{where}.status must be firing or resolved", field=where)
        starts = _am_time(a.get("startsAt"), f"{where}.startsAt") or datetime.now(timezone.utc)
        ends = _am_time(a.get("endsAt"), f"{where}.endsAt")
        annotations = a.get("annotations") or {}
        if not isinstance(annotations, Mapping):
            raise ValidationError(f"{where}.annotations must be an object", field=where)
        name = str(labels.get("alertname", "alertmanager"))
        severity = labels.get("severity", "warning")
        if severity not in {s.value for s in Severity}:
            severity = "warning"
        fp = str(a.get("fingerprint") or fingerprint(name, dep.id, dict(labels)))[:64]
        return {
            "dep": dep,
            "name": name,
            "status": status,
            "starts": starts,
            "ends": ends,
            "labels": {k: v for k, v in labels.items() if re.match(r"^[A-Za-z0-9_\-./]+\Z", k)},
            "annotations": {
                str(k): str(v)
                for k, v in annotations.items()
                if re.match(r"^[A-Za-z0-9_\-./]+\Z", str(k))
            },
            "severity": severity,
            "fingerprint": fp,
        }

    def _receive(self, item: dict[str, Any], actor: str) -> Alert:
        dep: Deployment = item["dep"]
        alert = self._open(item["fingerprint"])
        if item["status"] == "resolved":
            if alert is None:  # resolved before we heard it fire: one closed node
                alert = self._am_node(item, dep)
                alert.state = AlertState.RESOLVED
                alert.resolved_at = max(item["ends"] or item["starts"], item["starts"])
                return self._save(alert, "alert.receive", None, actor, new=True)
            alert.state = AlertState.RESOLVED
            alert.resolved_at = max(item["ends"] or datetime.now(timezone.utc), alert.fired_at)
            return self._save(alert, "alert.resolve", None, actor)
        if alert is not None:  # the same firing again (Alertmanager repeats): de-duplicated
            if alert.annotations == item["annotations"]:
                return alert
            alert.annotations = item["annotations"]
            return self._save(alert, "alert.receive", None, actor)
        return self._save(self._am_node(item, dep), "alert.receive", None, actor, new=True)

    def _am_node(self, item: dict[str, Any], dep: Deployment) -> Alert:
        return validate(
            Alert,
            {
                "rule": item["name"],
                "severity": item["severity"],
                "state": "firing",
                "fired_at": item["starts"],
                "fingerprint": item["fingerprint"],
                "source": "alertmanager",
                "deployment": dep.id,
                "model_version": self.monitoring.served_version(dep.id, item["starts"]),
                "labels": item["labels"],
                "annotations": item["annotations"],
                "message": item["annotations"].get("summary")
                or item["annotations"].get("description"),
                "active_since": item["starts"],
            },
        )


def _am_time(value: Any, where: str) -> datetime | None:
    if value in (None, "", _ZERO_TIME) or (isinstance(value, str) and value.startswith("0001-")):
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{where} must be an RFC 3339 time", field=where)
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            f"{where}: {value[:40]!r} is not an RFC 3339 time", field=where
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _message(rule: AlertRule, dep: Deployment, values: Mapping[str, Any]) -> str:
    shown = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )
    return f"{rule.name} on {dep.name or dep.id}: {rule.expr} ({shown})"[:10_000]


def _annotations(rule: AlertRule, dep: Deployment) -> dict[str, str]:
    out = {}
    for k, v in rule.annotations.items():
        out[k] = v.replace("{deployment}", dep.name or dep.id).replace("{rule}", rule.name)
    return out


__all__ = [
    "AlertRule",
    "AlertService",
    "evaluate",
    "load_alert_rules",
    "parse_duration",
    "parse_expr",
    "parse_rule",
]
