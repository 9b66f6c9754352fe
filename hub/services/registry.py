"""The model registry: aliases, stages, their history, and governed promotions.

References: ``churn/3``, ``churn@champion``, ``model:churn/3``, ``model:churn@production``
or a version id ``mv:churn/3`` (resolved by :class:`~lineagehub.services.lineage.LineageService`).

State lives on the :class:`~lineagehub.vocabulary.ModelVersion` node (``stage``,
``aliases``). Every change is also an *activity*: a ``Run`` of kind ``promote`` that USED the
version (role ``input``) and is ASSOCIATED_WITH its requester (and approvers). Such a run's
``params`` describe the change, so the history of a stage or alias is one filtered query;
the holder of an alias at a time (:meth:`RegistryService.holder_at`) is one query too, and
the holders of a stage are its moves up to that time, replayed (one query):

- stage change: ``change="stage"``, ``model``, ``version``, ``from_stage``, ``to_stage``
  (the move alone, so a promotion costs the same however many versions a stage holds).
  Stores written before this also list, as JSON text (or comma-joined, older still),
  ``from_holders`` / ``to_holders`` (the versions in those stages after the change, oldest
  entrant first) and ``to_before`` (in ``to_stage`` before it); those lists are read as
  what the stages held then, and the moves after them replayed onto them;
- alias change: ``change="alias"``, ``model``, ``alias``, ``version``, ``from_version`` (the
  previous holder, or null) and ``to_version`` (the new holder, null when removed);
- promotion request: ``change="request"`` while pending (``RUNNING``) or rejected
  (``FAILED``); on its final approval the request run itself becomes the stage change.

Every change appends an audit entry (``store.append_audit``) in the same transaction.
A promotion (or approval) that breaks its :class:`Policy` returns a :class:`PromotionRefused`
listing every broken rule; nothing is written but its audit entry (action
``promotion.refused:<stage>:<rule ids>``, or ``approval.refused:...``, by the caller, on the
version; the payload names the requester and every rule) and the ``promotion.refused``
webhook event, whose data is that payload.

Deployments stay consistent with stages: a deployment recorded with ``require_stage`` keeps
it (:attr:`~lineagehub.vocabulary.Deployment.require_stage`), and a stage change (a
promotion, the archiving it does, a rollback) that would leave a live (pending or active)
deployment serving a version no longer in that stage is refused unless the caller says what
to do with such deployments (``on_deployments``, :class:`OnDeployments`): ``retire`` them
or ``repoint`` them at the version that holds the stage after the change (a new serving
interval, recorded as a deploy). The choice is made with the change and recorded with it.
"""

from __future__ import annotations

import enum
import json
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lineagehub.graph import DELETE, Direction, Edge, GraphStore, Node
from lineagehub.graph import errors as _errors
from lineagehub.graph.errors import ConfigError, ConflictError, NotFoundError, ValidationError
from lineagehub.graph.model import check_time, to_iso
from lineagehub.services.access import projects_of
from lineagehub.services.lineage import LineageService
from lineagehub.services.webhooks import AfterCommit, EventSink, WebhookEvent
from lineagehub.vocabulary import (
    MAX_NAME,
    MAX_TEXT,
    Agent,
    AssociationRole,
    CodeCommit,
    Deployment,
    DeploymentStatus,
    EdgeKind,
    ModelVersion,
    NodeKind,
    Run,
    RunKind,
    RunStatus,
    Stage,
    UsedRole,
    check_alias,
    link,
    make_edge,
    model_version_id,
    validate,
)

__all__ = [
    "HistoryEntry",
    "ModelPromoted",
    "OnDeployments",
    "PendingPromotion",
    "Policy",
    "PromotionPending",
    "PromotionRefused",
    "PromotionRejected",
    "RegistryService",
    "RolledBack",
    "RuleBroken",
    "Threshold",
    "load_policies",
]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


@dataclass(frozen=True)
class Threshold:
    """``metric op value`` on the version's metrics, e.g. ``Threshold("accuracy", ">=", 0.9)``."""

    metric: str
    op: str
    value: float

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise ValidationError(
                f"threshold metric must be a metric's name, not {self.metric!r}", field="metric"
            )
        if self.op not in _OPS:
            raise ValidationError(
                f"threshold op {self.op!r} is not one of {', '.join(_OPS)}", field="op"
            )
        # as a policy file's thresholds are checked: a text compared with a metric failed
        # every promotion with a TypeError, NaN refused every promotion whatever its metric
        value = self.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError(
                f"threshold value for {self.metric!r} must be a number, not {value!r}",
                field="value",
            )
        if not math.isfinite(value):
            raise ValidationError(
                f"threshold value for {self.metric!r} must be finite, not {value!r}",
                field="value",
            )
        object.__setattr__(self, "value", float(value))


@dataclass(frozen=True)
class Policy:
    """What a promotion to a stage requires.

    ``thresholds``: metric rules (``Threshold`` or ``(metric, op, value)`` tuples);
    ``require_lineage``: the training run used a dataset version (role train) and ran a code
    commit; ``forbid_dirty_commit``: that commit is not dirty; ``approvals``: how many
    approvals (0 = direct promotion allowed); ``approvers``: the agents holding the approver
    role (``None``: anyone); ``separation_of_duties``: the requester and the training run's
    author may not approve.
    """

    thresholds: Sequence[Threshold | tuple[str, str, float]] = ()
    require_lineage: bool = False
    forbid_dirty_commit: bool = False
    approvals: int = 0
    approvers: frozenset[str] | None = None
    separation_of_duties: bool = False

    def __post_init__(self) -> None:
        rules = tuple(t if isinstance(t, Threshold) else Threshold(*t) for t in self.thresholds)
        object.__setattr__(self, "thresholds", rules)
        if self.approvers is not None:
            # a name given alone is not a list of names (frozenset("carol") is its letters)
            names = self.approvers
            if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
                raise ValidationError(
                    f"approvers must be a collection of agent names, not {names!r}",
                    field="approvers",
                )
            object.__setattr__(self, "approvers", frozenset(names))
        approvals = self.approvals
        if isinstance(approvals, bool) or not isinstance(approvals, int) or approvals < 0:
            raise ValidationError("approvals must be a non-negative integer", field="approvals")

    @property
    def rules(self) -> tuple[Threshold, ...]:
        return tuple(t for t in self.thresholds if isinstance(t, Threshold))


_POLICY_KEYS = (
    "model",
    "stage",
    "approvals",
    "approvers",
    "separation_of_duties",
    "require_lineage",
    "forbid_dirty_commit",
    "thresholds",
)


def _read_policy_file(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(
            f"policies file {str(path)!r} cannot be read: {e.strerror or e}"
        ) from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ConfigError(f"policies file {str(path)!r} is not valid JSON: {e}") from None
    if sys.version_info < (3, 11):  # pragma: no cover - tomllib arrived in 3.11
        raise ConfigError(
            f"policies file {str(path)!r}: TOML needs Python 3.11 or later; use a .json file"
        )
    import tomllib

    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"policies file {str(path)!r} is not valid TOML: {e}") from None


def load_policies(path: str | Path) -> dict[Any, Policy]:
    """Read promotion policies from a TOML file (or, with a ``.json`` suffix, JSON) into the
    mapping :class:`RegistryService` takes: ``(model, stage)``, ``model`` or ``"*"`` keys.

    The file holds a ``policy`` array of tables, each with ``model`` (a name or ``"*"``),
    optional ``stage`` (all stages when absent), ``approvals``,
    ``approvers`` (a list of agent names), ``separation_of_duties``, ``require_lineage``,
    ``forbid_dirty_commit`` and ``thresholds`` (``[metric, op, value]`` lists). Any problem
    raises :class:`~lineagehub.graph.errors.ConfigError` naming the file, the entry and the
    field."""
    path = Path(path).expanduser()
    data = _read_policy_file(path)
    where = f"policies file {str(path)!r}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table with a 'policy' array")
    unknown = sorted(set(data) - {"policy"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected 'policy')")
    entries = data.get("policy", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: 'policy' must be an array of tables ([[policy]])")
    policies: dict[Any, Policy] = {}
    for index, entry in enumerate(entries):
        key, policy = _parse_policy(entry, f"{where}, policy #{index + 1}")
        if key in policies:
            raise ConfigError(f"{where}, policy #{index + 1}: duplicate policy for {key!r}")
        policies[key] = policy
    return policies


def _parse_policy(entry: Any, where: str) -> tuple[Any, Policy]:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a table")
    unknown = sorted(set(entry) - set(_POLICY_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {unknown[0]!r} (known: {', '.join(_POLICY_KEYS)})"
        )
    model = entry.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"{where}: field 'model' must be a model name or \"*\"")
    model = model.strip()
    where = f"{where} (model {model!r})"
    key: Any = model
    if "stage" in entry:
        try:
            key = (model, _stage(entry["stage"], "stage").value)
        except ValidationError as e:
            raise ConfigError(f"{where}: field 'stage': {e.message}") from None

    def flag(name: str) -> bool:
        value = entry.get(name, False)
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: field {name!r} must be true or false, not {value!r}")
        return value

    approvals = entry.get("approvals", 0)
    if isinstance(approvals, bool) or not isinstance(approvals, int) or approvals < 0:
        raise ConfigError(
            f"{where}: field 'approvals' must be a non-negative integer, not {approvals!r}"
        )
    approvers: frozenset[str] | None = None
    if "approvers" in entry:
        names = entry["approvers"]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"{where}: field 'approvers' must be a list of agent names")
        approvers = frozenset(names)
    thresholds = entry.get("thresholds", [])
    if not isinstance(thresholds, list):
        raise ConfigError(f"{where}: field 'thresholds' must be a list of [metric, op, value]")
    rules: list[Threshold] = []
    for i, rule in enumerate(thresholds):
        at = f"{where}: field 'thresholds' entry #{i + 1}"
        if not isinstance(rule, list) or len(rule) != 3:
            raise ConfigError(f"{at} must be [metric, op, value], not {rule!r}")
        metric, op, value = rule
        if not isinstance(metric, str) or not metric:
            raise ConfigError(f"{at}: metric must be a non-empty string, not {metric!r}")
        if op not in _OPS:
            raise ConfigError(f"{at}: operator {op!r} is not one of {', '.join(_OPS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{at}: value must be a number, not {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{at}: value must be finite, not {value!r}")
        rules.append(Threshold(metric, op, float(value)))
    policy = Policy(
        thresholds=tuple(rules),
        require_lineage=flag("require_lineage"),
        forbid_dirty_commit=flag("forbid_dirty_commit"),
        approvals=approvals,
        approvers=approvers,
        separation_of_duties=flag("separation_of_duties"),
    )
    return key, policy


@dataclass(frozen=True)
class RuleBroken:
    rule: str
    message: str
    expected: Any = None
    actual: Any = None


@dataclass(frozen=True)
class PromotionRefused:
    """A refused promotion or approval: every rule it broke. Nothing was written.

    A result, not an error: :meth:`to_error` makes the
    :class:`~lineagehub.graph.errors.PolicyViolation` to raise where a refusal must be one.
    """

    version_id: str
    to_stage: str
    rules: tuple[RuleBroken, ...]

    @property
    def rule_ids(self) -> list[str]:
        return [r.rule for r in self.rules]

    def to_error(self) -> _errors.PolicyViolation:
        text = "; ".join(r.message for r in self.rules)
        return _errors.PolicyViolation(
            f"promotion of {self.version_id} to {self.to_stage} refused: {text}",
            rules=list(self.rules),
        )


@dataclass(frozen=True)
class PromotionPending:
    request_id: str
    version_id: str
    to_stage: str
    approvals: tuple[str, ...]
    needed: int


@dataclass(frozen=True)
class ModelPromoted:
    run_id: str
    version_id: str
    from_stage: str
    to_stage: str
    archived: tuple[str, ...] = ()
    approvals: tuple[str, ...] = ()
    #: The deployments it retired or re-pointed (``on_deployments``).
    deployments: tuple[str, ...] = ()


@dataclass(frozen=True)
class PendingPromotion:
    """A promotion request waiting for approvals (:meth:`RegistryService.pending_promotions`).
    ``needed``: approvals its policy wants now (the larger of the request's and the current
    policy's)."""

    request_id: str
    version_id: str
    to_stage: str
    requested_by: str
    reason: str | None
    approvals: tuple[str, ...]
    needed: int
    requested_at: datetime


@dataclass(frozen=True)
class RolledBack:
    """What :meth:`RegistryService.roll_back` did: the runs recording it and the deployments
    it retired or re-pointed."""

    run_ids: tuple[str, ...]
    deployments: tuple[str, ...] = ()


class OnDeployments(str, enum.Enum):
    """What a stage change does with live deployments whose ``require_stage`` it would break:
    ``refuse`` the change (the default), ``retire`` them, or ``repoint`` them at the version
    holding that stage after the change."""

    REFUSE = "refuse"
    RETIRE = "retire"
    REPOINT = "repoint"


def _on_deployments(value: Any) -> OnDeployments:
    if isinstance(value, OnDeployments):
        return value
    if isinstance(value, str):
        for choice in OnDeployments:
            if choice.value == value.strip().lower():
                return choice
    raise ValidationError(
        f"on_deployments: {value!r} is not one of {', '.join(c.value for c in OnDeployments)}",
        field="on_deployments",
    )


def _json_safe(value: Any) -> Any:
    """``value`` as the audit log's JSON takes it (no NaN or infinity, lists for tuples)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


@dataclass(frozen=True)
class PromotionRejected:
    request_id: str
    version_id: str
    to_stage: str
    by: str
    reason: str


@dataclass(frozen=True)
class HistoryEntry:
    """One change of a stage or alias. For a stage: ``from_``/``to`` are stages; for an
    alias: the previous and new holder's version numbers (``None`` for none)."""

    version: int
    from_: str | int | None
    to: str | int | None
    actor: str
    reason: str | None
    at: datetime
    run_id: str
    change: str
    alias: str | None = None
    approvals: tuple[str, ...] = field(default=())


def _stage(value: Any, name: str = "to_stage") -> Stage:
    if isinstance(value, Stage):
        return value
    if isinstance(value, str):
        for s in Stage:
            if s.value.lower() == value.strip().lower():
                return s
    raise ValidationError(
        f"{name}: {value!r} is not a stage ({', '.join(s.value for s in Stage)})", field=name
    )


def _slot(value: Any) -> Stage | None:
    """A stage if ``value`` is a stage's exact name (``Production``), else ``None`` (an alias:
    aliases are lower case, so the alias ``production`` is not the stage)."""
    if isinstance(value, Stage):
        return value
    if not isinstance(value, str) or not value:
        raise ValidationError("expected a stage or an alias name", field="alias_or_stage")
    for s in Stage:
        if s.value == value:
            return s
    return None


def _list_param(values: Sequence[str] | Sequence[int]) -> str:
    """A list as a run param (params are scalars): JSON text, so a name holding a comma is
    still one name."""
    return json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))


def _read_list(value: Any) -> list[str]:
    """A list param as written by :func:`_list_param`; stores written before it hold the
    comma-joined form (``"alice,bob"``, ``""``), which still reads."""
    if not isinstance(value, str) or not value:
        return []
    if value.startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None  # an old comma-joined name that starts with "["
        if isinstance(parsed, list):
            return [str(v) for v in parsed]
    return [v for v in value.split(",") if v]


def _in(model: str, stage: Stage) -> dict[str, Any]:
    """The filter of the versions of ``model`` in ``stage``."""
    if stage is Stage.NONE:  # a version written without the property is in None
        return {"model": model, "$or": [{"stage": stage.value}, {"stage": None}]}
    return {"model": model, "stage": stage.value}


def _holders(value: Any) -> list[int]:
    """A holders list param as version numbers (what is not one is left out)."""
    return [v for v in map(_version_number, _read_list(value)) if v is not None]


def _is_record(node: Node) -> bool:
    """Whether a promote run states a change of one version (see :func:`_version_number`)
    at a time it can be placed at."""
    return _states_a_version(node) and _moment(node.props.get("ended_at")) is not None


def _states_a_version(node: Node) -> bool:
    params = node.props.get("params")
    return isinstance(params, dict) and _version_number(params.get("version")) is not None


def _version_number(value: Any) -> int | None:
    """A version number as a record states it (an int, or its digits as text), else ``None``:
    a run that only looks like a registry record (tracking calls refuse the registry's kinds
    now, but a store written before, or a raw store write, may hold one) is passed over
    rather than stopping every read of the history."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def _moment(value: Any) -> datetime | None:
    """A stored time (ISO 8601 text, as runs keep ``ended_at``) as an aware datetime, or
    ``None`` when it is not one."""
    if isinstance(value, datetime):
        return value
    try:
        return check_time(datetime.fromisoformat(str(value)), "ended_at")
    except (ValueError, ValidationError):
        return None


def _replay(stage: Stage, timeline: Sequence[tuple[Any, Node]]) -> list[int]:
    """The versions in ``stage`` after ``timeline`` (``_stage_timeline``'s), oldest entrant
    first. A version moved in goes
    last; a record that lists the holders (``to_holders`` / ``from_holders``, written by
    stores before moves alone were recorded) is taken as what the stage held then."""
    holders: dict[int, None] = {}
    for _, node in timeline:
        if node.label == NodeKind.MODEL_VERSION.value:  # a registration (stage None only)
            number = _version_number(node.props.get("version"))
            if number is not None:
                holders.setdefault(number, None)
            continue
        p = node.props["params"]  # a move: _stage_timeline keeps only records
        version = int(p["version"])
        entered = p.get("to_stage") == stage.value
        listed = p.get("to_holders" if entered else "from_holders")
        if listed is not None:
            holders = dict.fromkeys(_holders(listed))
            continue
        holders.pop(version, None)
        if entered:
            holders[version] = None
    return list(holders)


def _moves(mv: ModelVersion, stage: Stage, archived: Sequence[ModelVersion]) -> dict[str, Stage]:
    """The stage changes a promotion makes: the version, and the Production versions it
    archives (version id: its new stage)."""
    return {mv.node_id: stage, **{v.node_id: Stage.ARCHIVED for v in archived}}


def _done_run(
    name: str,
    kind: RunKind,
    now: datetime,
    actor: str,
    reason: str | None,
    params: dict[str, Any],
    parent: str | None = None,
) -> Run:
    """A registry change as a run that started and finished at ``now``, by ``actor``."""
    return Run(
        name=_run_name(name),
        kind=kind,
        status=RunStatus.FINISHED,
        started_at=now,
        ended_at=now,
        user=actor,
        description=reason,
        parent=parent,
        params=params,
    )


def _run_name(text: str) -> str:
    """A registry run's name from a model's (up to 256 characters itself): what it did, cut
    to the 256 a run's name may hold (the params keep the model and version whole)."""
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 1] + "…"


def _check_reason(value: Any, name: str = "reason") -> str | None:
    """A reason or comment as the registry keeps it (a run's description holds up to
    ``MAX_TEXT`` characters), checked first: a long one was refused naming the run's field
    (``description``, ``error``), which the caller never gave, or (a comment) kept whole."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be text", field=name)
    if len(value) > MAX_TEXT:
        raise ValidationError(
            f"{name} is {len(value)} characters long; the limit is {MAX_TEXT}", field=name
        )
    return value


def _check_actor(actor: Any) -> str:
    if not isinstance(actor, str) or not actor.strip():
        raise ValidationError("actor must be a non-empty name", field="actor")
    return actor.strip()


class RegistryService:
    """Aliases, stages and promotions over a graph store (see the module docstring)."""

    def __init__(
        self,
        store: GraphStore,
        *,
        policies: Mapping[Any, Policy] | None = None,
        clock: Callable[[], datetime] | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        self.store = store
        #: ``on_event(event, payload)`` once a change has committed (webhooks); see
        #: :class:`~lineagehub.services.webhooks.WebhookEvent` for the events.
        self._events = AfterCommit(store, on_event)
        self._agents: set[str] = set()  # Agent nodes known to be written (committed)
        self.policies: dict[Any, Policy] = dict(policies or {})
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.lineage = LineageService(store)

    # --- look-ups ---------------------------------------------------------------------------

    def policy_for(self, model: str, stage: Stage | str) -> Policy:
        stage_value = _stage(stage).value
        # most specific first: this model at this stage, this model, every model at this
        # stage, every model
        for key in ((model, stage_value), model, ("*", stage_value), "*"):
            if key in self.policies:
                return self.policies[key]
        return Policy()

    def resolve(self, ref: str) -> ModelVersion:
        """The model version a reference names (``NotFoundError`` if none)."""
        if not isinstance(ref, str) or not ref:
            raise ValidationError("ref must be a model version reference", field="ref")
        key = ref if ":" in ref else f"model:{ref}"
        node = self.lineage.resolve_node(key)
        if node.label != NodeKind.MODEL_VERSION.value:
            raise NotFoundError(f"{ref!r} does not name a model version", ids=[ref])
        return ModelVersion.from_node(node)

    def resolve_at(self, ref: str, as_of: datetime | None) -> ModelVersion:
        """:meth:`resolve` as the hub knew the names at ``as_of`` (now when ``None``):
        ``churn@champion`` as of March is the version that held the alias in March, and so
        for a stage's name and ``@latest`` (:meth:`LineageService.resolve_at`)."""
        if as_of is None:
            return self.resolve(ref)
        if not isinstance(ref, str) or not ref:
            raise ValidationError("ref must be a model version reference", field="ref")
        key = ref if ":" in ref else f"model:{ref}"
        return self.resolve(self.lineage.resolve_at([key], as_of)[0])

    def _stage_nodes(self, model: str, stage: Stage) -> Iterator[Node]:
        """The nodes of the versions of ``model`` in ``stage``, by version: one filtered
        query (the store indexes ``model``), not a read of every version."""
        return self.store.iter_nodes(NodeKind.MODEL_VERSION.value, _in(model, stage), "version")

    def _in_stage(self, model: str, stage: Stage) -> list[ModelVersion]:
        return [ModelVersion.from_node(n) for n in self._stage_nodes(model, stage)]

    def _with_alias(self, model: str, alias: str) -> list[ModelVersion]:
        """The versions of ``model`` holding ``alias``, by version. The query returns only
        the versions holding some alias (a list property compares as its compact JSON
        text on both backends, so ``[]`` is no alias); the alias is picked here."""
        where = {"model": model, "aliases": {"$ne": "[]"}}
        nodes = self.store.iter_nodes(NodeKind.MODEL_VERSION.value, where, "version")
        holders = [n for n in nodes if alias in (n.props.get("aliases") or ())]
        return [ModelVersion.from_node(n) for n in holders]

    def _check_model(self, model: str) -> None:
        if self.store.get_nodes([f"model:{model}"])[0] is None:
            raise NotFoundError(f"no registered model {model!r}", ids=[f"model:{model}"])

    def _now(self) -> datetime:
        return self.clock()

    # --- aliases ----------------------------------------------------------------------------

    def set_alias(self, ref: str, alias: str, actor: str, reason: str | None = None) -> str:
        """Point ``alias`` at the version; the previous holder loses it. Returns the id."""
        actor = _check_actor(actor)
        reason = _check_reason(reason)
        alias = check_alias(alias)  # one spelling: 'Champion' is 'champion'
        with self._events.transaction():  # read and written in one: the version read once
            mv = self.resolve(ref)
            already = alias in mv.aliases
            if not already:
                mv.aliases = [*mv.aliases, alias]  # validates the alias
            previous = [v for v in self._with_alias(mv.model, alias) if v.version != mv.version]
            if already and not previous:
                return mv.node_id
            for old in previous:
                old.aliases = [a for a in old.aliases if a != alias]
            self.store.upsert_nodes([*(old.to_node() for old in previous), mv.to_node()])
            prev_version = previous[-1].version if previous else None
            run_id = self._record_alias(mv, alias, prev_version, mv.version, actor, reason)
            self._alias_moved(mv.model, alias, prev_version, mv.version, actor, reason, run_id)
        return mv.node_id

    def remove_alias(self, model: str, alias: str, actor: str, reason: str | None = None) -> None:
        actor = _check_actor(actor)
        reason = _check_reason(reason)
        alias = check_alias(alias)
        self._check_model(model)
        with self._events.transaction():
            holders = self._with_alias(model, alias)
            if not holders:
                raise NotFoundError(f"model {model!r} has no alias {alias!r}", ids=[alias])
            for mv in holders:
                mv.aliases = [a for a in mv.aliases if a != alias]
                self.store.upsert_nodes([mv.to_node()])
            version = holders[-1].version
            run_id = self._record_alias(holders[-1], alias, version, None, actor, reason)
            self._alias_moved(model, alias, version, None, actor, reason, run_id)

    def _alias_moved(
        self,
        model: str,
        alias: str,
        from_version: int | None,
        to_version: int | None,
        actor: str,
        reason: str | None,
        run_id: str,
    ) -> None:
        self._events.emit(
            WebhookEvent.ALIAS_MOVED,
            {
                "model": model,
                "alias": alias,
                "version": to_version,
                "from_version": from_version,
                "to_version": to_version,
                "version_id": model_version_id(model, to_version)
                if to_version is not None
                else None,
                "actor": actor,
                "reason": reason,
                "run_id": run_id,
            },
        )

    def _record_alias(
        self,
        mv: ModelVersion,
        alias: str,
        from_version: int | None,
        to_version: int | None,
        actor: str,
        reason: str | None,
    ) -> str:
        now = self._now()
        action = "alias.set" if to_version is not None else "alias.removed"
        run = _done_run(
            f"{action} {mv.model}@{alias}",
            RunKind.PROMOTE,
            now,
            actor,
            reason,
            {
                "change": "alias",
                "model": mv.model,
                "alias": alias,
                "version": mv.version,
                "from_version": from_version,
                "to_version": to_version,
            },
        )
        self._write_run(run, mv, actor, AssociationRole.REQUESTER)
        self.store.append_audit(
            actor,
            action,
            mv.node_id,
            {
                "model": mv.model,
                "alias": alias,
                "from_version": from_version,
                "to_version": to_version,
                "reason": reason,
                "run": run.node_id,
            },
        )
        return run.node_id

    # --- history ----------------------------------------------------------------------------

    def history(
        self, model: str, alias: str | None = None, stage: Stage | str | None = None
    ) -> list[HistoryEntry]:
        """Every stage or alias change of a model, oldest first (one alias, one stage or
        all of them)."""
        self._check_model(model)
        where: dict[str, Any] = {"kind": RunKind.PROMOTE.value, "params.model": model}
        if alias is not None:
            where.update({"params.change": "alias", "params.alias": check_alias(alias)})
        elif stage is not None:
            s = _stage(stage, "stage").value
            where.update(
                {
                    "params.change": "stage",
                    "$or": [{"params.from_stage": s}, {"params.to_stage": s}],
                }
            )
        else:
            where["params.change"] = {"$in": ["stage", "alias"]}
        where["status"] = RunStatus.FINISHED.value
        nodes = self.store.iter_nodes(NodeKind.RUN.value, where, ["ended_at"])
        return [self._entry(n) for n in nodes if _is_record(n)]

    @staticmethod
    def _entry(node: Node) -> HistoryEntry:
        run = Run.from_node(node)
        p = run.params
        is_alias = p.get("change") == "alias"
        approvals = tuple(_read_list(p.get("approvals")))
        assert run.ended_at is not None
        return HistoryEntry(
            version=int(p["version"]),  # type: ignore[arg-type]  # checked by _is_record
            from_=p.get("from_version" if is_alias else "from_stage"),  # type: ignore[arg-type]
            to=p.get("to_version" if is_alias else "to_stage"),  # type: ignore[arg-type]
            actor=run.user or "",
            reason=run.description,
            at=run.ended_at,
            run_id=run.node_id,
            change=str(p.get("change")),
            alias=str(p["alias"]) if is_alias else None,
            approvals=approvals,
        )

    def _last_event(self, where: dict[str, Any], at: datetime | None) -> Node | None:
        where = {"kind": RunKind.PROMOTE.value, "status": RunStatus.FINISHED.value, **where}
        if at is not None:
            where["ended_at"] = {"$lte": to_iso(at, "time")}
        nodes = self.store.iter_nodes(NodeKind.RUN.value, where, ["-ended_at", "-id"], page_size=4)
        return next((n for n in nodes if _is_record(n)), None)

    def holders_at(self, model: str, alias_or_stage: str, time: datetime) -> list[int]:
        """The versions holding an alias or stage at ``time`` (oldest entrant first). An
        alias: one query (its last change). A stage: its moves up to ``time`` replayed (one
        query; for ``None`` a second, the model's versions, registered in ``None``)."""
        time = check_time(time, "time")
        self._check_model(model)
        stage = _slot(alias_or_stage)
        if stage is None:
            alias = check_alias(alias_or_stage, "alias_or_stage")
            event = self._last_event(
                {"params.change": "alias", "params.model": model, "params.alias": alias}, time
            )
            if event is None or event.props["params"].get("to_version") is None:
                return []
            return [int(event.props["params"]["to_version"])]
        return _replay(stage, self._stage_timeline(model, stage, time))

    def _stage_timeline(
        self, model: str, stage: Stage, until: datetime | None
    ) -> list[tuple[tuple[datetime, int, str], Node]]:
        """What changed what ``stage`` of ``model`` held, up to ``until``, in order: its
        moves in and out (finished promote runs), and for ``None`` the registrations too (a
        version is in ``None`` from its registration). Each item is (its sort key, its
        node); a move's key is when it ended, then its run id, as :meth:`_last_event`
        orders them."""
        where: dict[str, Any] = {
            "kind": RunKind.PROMOTE.value,
            "status": RunStatus.FINISHED.value,
            "params.change": "stage",
            "params.model": model,
            "$or": [{"params.from_stage": stage.value}, {"params.to_stage": stage.value}],
        }
        if until is not None:
            where["ended_at"] = {"$lte": to_iso(until, "time")}
        items = [
            ((at, 1, n.id), n)
            for n in self.store.iter_nodes(
                NodeKind.RUN.value, where, ["ended_at", "id"], page_size=1000
            )
            if (at := _moment(n.props.get("ended_at"))) is not None and _states_a_version(n)
        ]
        if stage is Stage.NONE:
            versions = self.store.iter_nodes(
                NodeKind.MODEL_VERSION.value, {"model": model}, "version", page_size=1000
            )
            items += [
                ((n.created_at, 0, n.id), n)
                for n in versions
                if n.created_at is not None and (until is None or n.created_at <= until)
            ]
        items.sort(key=lambda item: item[0])
        return items

    def holder_at(self, model: str, alias_or_stage: str, time: datetime) -> int | None:
        """The version holding an alias or stage at ``time`` (for a stage several versions
        may: the most recent entrant), or ``None``."""
        holders = self.holders_at(model, alias_or_stage, time)
        return holders[-1] if holders else None

    # --- policy -----------------------------------------------------------------------------

    def _training(self, mv: ModelVersion) -> tuple[list[Node], list[str]]:
        """The runs that generated the version and their authors."""
        adj = self.store.neighbors([mv.node_id], Direction.UPSTREAM, [EdgeKind.GENERATED_BY.value])
        runs = [a.node for a in adj[mv.node_id] if a.node.label == NodeKind.RUN.value]
        authors = {str(r.props["user"]) for r in runs if r.props.get("user")}
        if runs:
            agents = self.store.neighbors(
                [r.id for r in runs], Direction.UPSTREAM, [EdgeKind.ASSOCIATED_WITH.value]
            )
            for items in agents.values():
                for a in items:
                    if a.edge.props.get("role") == AssociationRole.LAUNCHER.value:
                        authors.add(str(a.node.props.get("name")))
        return runs, sorted(authors)

    def _check_rules(self, mv: ModelVersion, to_stage: Stage, policy: Policy) -> list[RuleBroken]:
        broken: list[RuleBroken] = []
        for t in policy.rules:
            value = mv.metrics.get(t.metric)
            if value is None:
                broken.append(
                    RuleBroken(
                        f"metric.{t.metric}",
                        f"metric {t.metric!r} is missing (needs {t.op} {t.value})",
                        f"{t.op} {t.value}",
                        None,
                    )
                )
            elif not _OPS[t.op](value, t.value):
                broken.append(
                    RuleBroken(
                        f"metric.{t.metric}",
                        f"metric {t.metric!r} is {value}, needs {t.op} {t.value}",
                        f"{t.op} {t.value}",
                        value,
                    )
                )
        dirty_check = policy.forbid_dirty_commit and to_stage is Stage.PRODUCTION
        if policy.require_lineage or dirty_check:
            runs, _ = self._training(mv)
            datasets: list[str] = []
            commits: list[CodeCommit] = []
            if runs:
                up = self.store.neighbors(
                    [r.id for r in runs],
                    Direction.UPSTREAM,
                    [EdgeKind.USED.value, EdgeKind.RAN_CODE.value],
                )
                for items in up.values():
                    for a in items:
                        if (
                            a.edge.kind == EdgeKind.USED.value
                            and a.node.label == NodeKind.DATASET_VERSION.value
                            and a.edge.props.get("role") == UsedRole.TRAIN.value
                        ):
                            datasets.append(a.node.id)
                        elif a.node.label == NodeKind.CODE_COMMIT.value:
                            commits.append(CodeCommit.from_node(a.node))
            if policy.require_lineage:
                if not runs:
                    broken.append(
                        RuleBroken(
                            "lineage.training_run",
                            f"{mv.node_id} has no training run (GENERATED_BY)",
                            "a training run",
                            None,
                        )
                    )
                if not datasets:
                    broken.append(
                        RuleBroken(
                            "lineage.dataset",
                            f"{mv.node_id}'s training run used no dataset version (role train)",
                            "a training dataset version",
                            None,
                        )
                    )
                if not commits:
                    broken.append(
                        RuleBroken(
                            "lineage.commit",
                            f"{mv.node_id}'s training run has no code commit",
                            "a code commit",
                            None,
                        )
                    )
            if dirty_check:
                dirty = [c.node_id for c in commits if c.dirty]
                if dirty:
                    broken.append(
                        RuleBroken(
                            "lineage.dirty_commit",
                            f"{mv.node_id} was trained from a dirty working tree "
                            f"({', '.join(dirty)}), not allowed for Production",
                            "a clean commit",
                            dirty,
                        )
                    )
        return broken

    def _approval_rules(
        self, mv: ModelVersion, policy: Policy, actor: str, requester: str
    ) -> list[RuleBroken]:
        broken: list[RuleBroken] = []
        if policy.approvers is not None and actor not in policy.approvers:
            broken.append(
                RuleBroken(
                    "approver.role",
                    f"{actor!r} does not hold the approver role",
                    sorted(policy.approvers),
                    actor,
                )
            )
        if policy.separation_of_duties:
            if actor == requester:
                broken.append(
                    RuleBroken(
                        "separation_of_duties.requester",
                        f"{actor!r} requested this promotion and may not approve it",
                        f"an approver other than {requester!r}",
                        actor,
                    )
                )
            _, authors = self._training(mv)
            if actor in authors:
                broken.append(
                    RuleBroken(
                        "separation_of_duties.author",
                        f"{actor!r} authored the training run of {mv.node_id} and may not "
                        "approve its promotion",
                        f"an approver other than {', '.join(authors)}",
                        actor,
                    )
                )
        return broken

    # --- refusals ---------------------------------------------------------------------------

    def _refused(
        self,
        mv: ModelVersion,
        stage: Stage,
        broken: Sequence[RuleBroken],
        actor: str,
        reason: str | None,
        *,
        requester: str | None = None,
        request_id: str | None = None,
    ) -> PromotionRefused:
        """A refusal, recorded: one audit entry (by ``actor``, on the version) and the
        ``promotion.refused`` event, whose data is the entry's payload (its digest is the
        entry's ``payload_digest``). Nothing else is written."""
        refused = PromotionRefused(mv.node_id, stage.value, tuple(broken))
        kind = "approval" if request_id is not None else "promotion"
        payload: dict[str, Any] = {
            "refused": kind,
            "actor": actor,
            "requested_by": requester or actor,
            "request_id": request_id,
            "version_id": mv.node_id,
            "model": mv.model,
            "version": mv.version,
            "from_stage": mv.stage.value,
            "to_stage": stage.value,
            "reason": reason,
            "rules": [
                {
                    "rule": r.rule,
                    "message": r.message,
                    "expected": _json_safe(r.expected),
                    "actual": _json_safe(r.actual),
                }
                for r in broken
            ],
        }
        # The entry's readable fields say what was refused; the payload (kept by the event's
        # receivers) says everything, and the entry holds its digest.
        action = f"{kind}.refused:{stage.value}:{','.join(refused.rule_ids)}"
        if len(action) > 512:
            action = action[:511] + "…"
        with self._events.transaction():
            self.store.append_audit(actor, action, mv.node_id, payload)
            self._events.emit(WebhookEvent.PROMOTION_REFUSED, payload)
        return refused

    # --- pending requests -------------------------------------------------------------------

    def pending_promotions(
        self, model: str | None = None, stage: Stage | str | None = None
    ) -> list[PendingPromotion]:
        """The promotion requests waiting for approvals, oldest first (of one model, to one
        stage)."""
        where: dict[str, Any] = {
            "kind": RunKind.PROMOTE.value,
            "status": RunStatus.RUNNING.value,
            "params.change": "request",
        }
        if model is not None:
            if not isinstance(model, str) or not model:
                raise ValidationError("model must be a model name", field="model")
            self._check_model(model)
            where["params.model"] = model
        if stage is not None:
            where["params.to_stage"] = _stage(stage, "stage").value
        found: list[PendingPromotion] = []
        for node in self.store.iter_nodes(NodeKind.RUN.value, where, ["started_at", "id"]):
            run = Run.from_node(node)
            p = run.params
            to_stage = str(p["to_stage"])
            policy = self.policy_for(str(p["model"]), to_stage)
            found.append(
                PendingPromotion(
                    request_id=run.node_id,
                    version_id=model_version_id(str(p["model"]), str(p["version"])),
                    to_stage=to_stage,
                    requested_by=run.user or "",
                    reason=run.description,
                    approvals=tuple(_read_list(p.get("approvals"))),
                    needed=max(int(p.get("needed") or 0), policy.approvals),
                    requested_at=run.started_at,
                )
            )
        return found

    # --- deployments kept consistent with stages --------------------------------------------

    def _stranded(self, moves: Mapping[str, Stage]) -> list[tuple[Deployment, str, Stage, Stage]]:
        """The live deployments that ``moves`` (version id: its new stage) would leave
        serving a version outside the stage they require: (deployment, version id, required
        stage, the version's new stage)."""
        if not moves:
            return []
        served = self.store.neighbors(list(moves), Direction.DOWNSTREAM, [EdgeKind.SERVES.value])
        found: list[tuple[Deployment, str, Stage, Stage]] = []
        for version_id, new_stage in moves.items():
            for a in served.get(version_id, []):
                if a.node.label != NodeKind.DEPLOYMENT.value:
                    continue
                if a.edge.props.get("valid_to") is not None:
                    continue
                deployment = Deployment.from_node(a.node)
                live = deployment.status in (DeploymentStatus.ACTIVE, DeploymentStatus.PENDING)
                required = deployment.require_stage
                if live and required is not None and required is not new_stage:
                    found.append((deployment, version_id, required, new_stage))
        return sorted(found, key=lambda x: (x[0].id, x[1]))

    @staticmethod
    def _stranded_rules(
        stranded: Sequence[tuple[Deployment, str, Stage, Stage]],
    ) -> list[RuleBroken]:
        return [
            RuleBroken(
                "deployment.stage",
                f"{d.id} ({d.name} in {d.environment}) serves {version_id} and requires "
                f"{required.value}, which it would leave for {new.value}; retire or re-point "
                "it (on_deployments=, or --deployments in the CLI: retire or repoint)",
                required.value,
                new.value,
            )
            for d, version_id, required, new in stranded
        ]

    def _settle(
        self,
        stranded: Sequence[tuple[Deployment, str, Stage, Stage]],
        choice: OnDeployments,
        actor: str,
        why: str,
    ) -> list[str]:
        """Retire or re-point the stranded deployments (after the stage change, in its
        transaction); returns their ids."""
        changed: list[str] = []
        verb = "retired" if choice is OnDeployments.RETIRE else "re-pointed"
        why = f"{verb} by {why}"
        for deployment, version_id, required, new in stranded:
            if deployment.id in changed:
                continue
            if choice is OnDeployments.RETIRE:
                self._retire(deployment, actor, why)
            else:
                model = ModelVersion.from_node(self.store.get_node(version_id)).model
                holder = self.holder_at(model, required.value, self._now())
                if holder is None:
                    raise _errors.PolicyViolation(
                        f"{deployment.id} cannot be re-pointed: no version of {model!r} is in "
                        f"{required.value} after this change; retire it instead",
                        rules=self._stranded_rules([(deployment, version_id, required, new)]),
                    )
                self.deploy(
                    model_version_id(model, holder),
                    deployment.environment,
                    actor,
                    name=deployment.name,
                    status=deployment.status,
                    require_stage=required,
                    reason=why,
                )
            changed.append(deployment.id)
        return changed

    # --- promotions -------------------------------------------------------------------------

    def request_promotion(
        self,
        ref: str,
        to_stage: Stage | str,
        actor: str,
        reason: str | None = None,
        *,
        on_deployments: OnDeployments | str = OnDeployments.REFUSE,
    ) -> PromotionPending | ModelPromoted | PromotionRefused:
        """Ask to move a version to a stage: refused (every broken rule, recorded in the
        audit log), pending (the policy wants approvals) or done at once (it wants none).
        ``on_deployments`` is kept with a pending request and applies at its last approval."""
        actor = _check_actor(actor)
        reason = _check_reason(reason)
        stage = _stage(to_stage)
        choice = _on_deployments(on_deployments)
        mv = self.resolve(ref)
        if mv.stage is stage:
            raise ConflictError(f"{mv.node_id} is already in {stage.value}")
        policy = self.policy_for(mv.model, stage)
        broken = self._check_rules(mv, stage, policy)
        if policy.approvals == 0:
            archived = self._archived(mv, stage, archive_previous=True)
            stranded = self._stranded(_moves(mv, stage, archived))
            if choice is OnDeployments.REFUSE:
                broken += self._stranded_rules(stranded)
        if broken:
            return self._refused(mv, stage, broken, actor, reason)
        if policy.approvals == 0:
            with self._events.transaction():
                # the request is audited as its event says, then done at once (no approvals)
                self.store.append_audit(
                    actor,
                    "promotion.requested",
                    mv.node_id,
                    {"to_stage": stage.value, "reason": reason, "run": None},
                )
                self._promotion_event(
                    WebhookEvent.PROMOTION_REQUESTED, mv, stage, actor, reason, None, needed=0
                )
                return self._promote(
                    mv, stage, actor, reason, archive_previous=True, on_deployments=choice
                )
        now = self._now()
        run = Run(
            name=_run_name(f"promote {mv.model}/{mv.version} to {stage.value}"),
            kind=RunKind.PROMOTE,
            status=RunStatus.RUNNING,
            started_at=now,
            user=actor,
            description=reason,
            params={
                "change": "request",
                "model": mv.model,
                "version": mv.version,
                "from_stage": mv.stage.value,  # what its approvers look at (see approve)
                "to_stage": stage.value,
                "needed": policy.approvals,
                "approvals": _list_param([]),
                "on_deployments": choice.value,
            },
        )
        with self._events.transaction():
            waiting = self.store.find_nodes(
                NodeKind.RUN.value,
                {
                    "kind": RunKind.PROMOTE.value,
                    "status": RunStatus.RUNNING.value,
                    "params.change": "request",
                    "params.model": mv.model,
                    "params.version": mv.version,
                    "params.to_stage": stage.value,
                },
                limit=1,
            ).items
            if waiting:  # a second would wait for ever once the first is approved
                raise ConflictError(
                    f"a request to move {mv.node_id} to {stage.value} is already pending"
                    f" ({waiting[0].id}): approve or reject it"
                )
            self._write_run(run, mv, actor, AssociationRole.REQUESTER)
            self.store.append_audit(
                actor,
                "promotion.requested",
                mv.node_id,
                {"to_stage": stage.value, "reason": reason, "run": run.node_id},
            )
            self._promotion_event(
                WebhookEvent.PROMOTION_REQUESTED,
                mv,
                stage,
                actor,
                reason,
                run.node_id,
                needed=policy.approvals,
            )
        return PromotionPending(run.node_id, mv.node_id, stage.value, (), policy.approvals)

    def _pending(self, request_id: str) -> tuple[Run, ModelVersion]:
        node = self.store.get_nodes([request_id])[0]
        if node is None or node.label != NodeKind.RUN.value:
            raise NotFoundError(f"no promotion request {request_id!r}", ids=[request_id])
        run = Run.from_node(node)
        if run.kind is RunKind.PROMOTE and "needed" in run.params:  # a request (once decided,
            if run.params.get("change") != "request":  # approved: the record of its move)
                raise ConflictError(
                    f"promotion request {request_id} was approved and carried out"
                    f" ({run.params.get('model')}/{run.params.get('version')} to"
                    f" {run.params.get('to_stage')}), not pending"
                )
        elif run.kind is not RunKind.PROMOTE or run.params.get("change") != "request":
            raise NotFoundError(f"{request_id!r} is not a promotion request", ids=[request_id])
        if run.status is not RunStatus.RUNNING:
            raise ConflictError(
                f"promotion request {request_id} is {run.status.value}, not pending"
            )
        mv = ModelVersion.from_node(
            self.store.get_node(
                model_version_id(str(run.params["model"]), str(run.params["version"]))
            )
        )
        return run, mv

    def approve(
        self, request_id: str, actor: str, comment: str | None = None
    ) -> PromotionPending | ModelPromoted | PromotionRefused:
        """Approve a pending request; the last approval needed performs the promotion."""
        actor = _check_actor(actor)
        comment = _check_reason(comment, "comment")
        with self._events.transaction():
            run, mv = self._pending(request_id)
            stage = _stage(run.params["to_stage"])
            policy = self.policy_for(mv.model, stage)
            approvals = _read_list(run.params.get("approvals"))
            if actor in approvals:
                raise ConflictError(f"{actor!r} already approved {request_id}")
            asked_from = run.params.get("from_stage")  # (requests made before: not kept)
            if asked_from is not None and asked_from != mv.stage.value:
                # approved, it would move the version from where it is now, not from where it
                # was asked to move (out of Production, when it got there since)
                raise ConflictError(
                    f"promotion request {request_id} asked to move {mv.node_id} from"
                    f" {asked_from} to {stage.value}, but it is in {mv.stage.value} now:"
                    " reject it and ask again"
                )
            choice = _on_deployments(run.params.get("on_deployments") or "refuse")
            broken = self._approval_rules(mv, policy, actor, run.user or "")
            if broken:
                return self._refused(
                    mv, stage, broken, actor, comment, requester=run.user, request_id=run.node_id
                )
            approvals.append(actor)
            needed = int(run.params.get("needed") or 0)
            done = len(approvals) >= max(needed, policy.approvals)
            if done:
                broken = self._check_rules(mv, stage, policy)
                if choice is OnDeployments.REFUSE:
                    archived = self._archived(mv, stage, archive_previous=True)
                    broken += self._stranded_rules(self._stranded(_moves(mv, stage, archived)))
                if broken:
                    return self._refused(
                        mv,
                        stage,
                        broken,
                        actor,
                        comment,
                        requester=run.user,
                        request_id=run.node_id,
                    )
            self._associate(run.node_id, actor, AssociationRole.APPROVER)
            run.params = {**run.params, "approvals": _list_param(approvals)}
            self.store.upsert_nodes([run.to_node()])
            self.store.append_audit(
                actor,
                "promotion.approved",
                mv.node_id,
                {"request": run.node_id, "comment": comment, "approvals": approvals},
            )
            self._promotion_event(
                WebhookEvent.PROMOTION_APPROVED,
                mv,
                stage,
                actor,
                comment,
                run.node_id,
                approvals=list(approvals),
                needed=max(needed, policy.approvals),
                requested_by=run.user,
            )
            if not done:
                return PromotionPending(
                    run.node_id,
                    mv.node_id,
                    stage.value,
                    tuple(approvals),
                    max(needed, policy.approvals),
                )
            return self._promote(
                mv,
                stage,
                run.user or actor,
                run.description,
                archive_previous=True,
                run=run,
                approvals=tuple(approvals),
                on_deployments=choice,
            )

    def reject(self, request_id: str, actor: str, reason: str) -> PromotionRejected:
        actor = _check_actor(actor)
        if not isinstance(reason, str) or not reason.strip():
            raise ValidationError(
                "a rejection needs a reason (it is kept in the history)", field="reason"
            )
        _check_reason(reason)
        with self._events.transaction():
            run, mv = self._pending(request_id)
            stage = _stage(run.params["to_stage"])
            approvers = self.policy_for(mv.model, stage).approvers
            # a rejection decides a request as an approval does: only an approver (or the
            # requester, withdrawing it) may; anyone else could stop every promotion
            if approvers is not None and actor not in approvers and actor != run.user:
                rule = RuleBroken(
                    "approver.role",
                    f"{actor!r} does not hold the approver role and did not request"
                    f" {request_id}, so may not reject it",
                    sorted(approvers),
                    actor,
                )
                raise _errors.PolicyViolation(
                    f"rejection of {request_id} refused: {rule.message}", rules=[rule]
                )
            now = self._now()
            run.status = RunStatus.FAILED
            run.ended_at = now
            error = f"rejected by {actor}: {reason}"  # whole in the audit entry and event
            run.error = error if len(error) <= MAX_TEXT else error[: MAX_TEXT - 1] + "…"
            self.store.upsert_nodes([run.to_node()])
            self._associate(run.node_id, actor, AssociationRole.APPROVER)
            self.store.append_audit(
                actor, "promotion.rejected", mv.node_id, {"request": run.node_id, "reason": reason}
            )
            self._promotion_event(
                WebhookEvent.PROMOTION_REJECTED,
                mv,
                stage,
                actor,
                reason,
                run.node_id,
                requested_by=run.user,
            )
        return PromotionRejected(
            run.node_id, mv.node_id, str(run.params["to_stage"]), actor, reason
        )

    def promote(
        self,
        ref: str,
        to_stage: Stage | str,
        actor: str,
        reason: str | None = None,
        *,
        archive_previous: bool = True,
        on_deployments: OnDeployments | str = OnDeployments.REFUSE,
    ) -> ModelPromoted | PromotionRefused:
        """Move a version to a stage at once, where its policy needs no approvals (a refusal
        is recorded in the audit log)."""
        actor = _check_actor(actor)
        reason = _check_reason(reason)
        stage = _stage(to_stage)
        choice = _on_deployments(on_deployments)
        # One transaction from the first read: what is checked is what is changed (the
        # version, the versions it archives, the deployments they serve are read once).
        with self._events.transaction():
            mv = self.resolve(ref)
            if mv.stage is stage:
                raise ConflictError(f"{mv.node_id} is already in {stage.value}")
            policy = self.policy_for(mv.model, stage)
            broken = self._check_rules(mv, stage, policy)
            if policy.approvals:
                broken.append(
                    RuleBroken(
                        "approvals",
                        f"promotion to {stage.value} needs {policy.approvals} approval(s): "
                        "use request_promotion",
                        policy.approvals,
                        0,
                    )
                )
            previous = self._archived(mv, stage, archive_previous=archive_previous)
            stranded = self._stranded(_moves(mv, stage, previous))
            if choice is OnDeployments.REFUSE:
                broken += self._stranded_rules(stranded)
            if broken:
                return self._refused(mv, stage, broken, actor, reason)
            return self._promote(
                mv,
                stage,
                actor,
                reason,
                archive_previous=archive_previous,
                on_deployments=choice,
                checked=(previous, stranded),
            )

    def _archived(
        self, mv: ModelVersion, stage: Stage, *, archive_previous: bool
    ) -> list[ModelVersion]:
        """The Production versions a promotion of ``mv`` to ``stage`` archives."""
        if stage is not Stage.PRODUCTION or not archive_previous:
            return []
        return [v for v in self._in_stage(mv.model, Stage.PRODUCTION) if v.version != mv.version]

    def _promote(
        self,
        mv: ModelVersion,
        stage: Stage,
        actor: str,
        reason: str | None,
        *,
        archive_previous: bool,
        run: Run | None = None,
        approvals: tuple[str, ...] = (),
        on_deployments: OnDeployments = OnDeployments.REFUSE,
        checked: tuple[list[ModelVersion], list[Any]] | None = None,
    ) -> ModelPromoted:
        """The promotion, in a transaction. ``checked``: the versions it archives and the
        deployments it strands, read by the caller inside the same transaction (else read
        and checked again here: the state may have moved since the caller's checks)."""
        with self._events.transaction():
            if checked is not None:
                previous, stranded = checked
            else:
                mv = ModelVersion.from_node(self.store.get_node(mv.node_id))
                if mv.stage is stage:
                    raise ConflictError(f"{mv.node_id} is already in {stage.value}")
                previous = self._archived(mv, stage, archive_previous=archive_previous)
                stranded = self._stranded(_moves(mv, stage, previous))
                if stranded and on_deployments is OnDeployments.REFUSE:
                    # checked by the callers before; here the state moved under them
                    raise PromotionRefused(
                        mv.node_id, stage.value, tuple(self._stranded_rules(stranded))
                    ).to_error()
            from_stage = mv.stage
            main = self._move(mv, stage, actor, reason, "promotion", run=run, approvals=approvals)
            archived: list[str] = []
            if stage is Stage.PRODUCTION and archive_previous:
                for old in previous:
                    self._move(
                        old,
                        Stage.ARCHIVED,
                        actor,
                        f"archived by the promotion of {mv.node_id} ({main})",
                        "archive",
                        parent=main,
                    )
                    archived.append(old.node_id)
            changed = self._settle(
                stranded, on_deployments, actor, f"the promotion of {mv.node_id} ({main})"
            )
            self._promotion_event(
                WebhookEvent.PROMOTION_DONE,
                mv,
                stage,
                actor,
                reason,
                run.node_id if run is not None else main,
                from_stage=from_stage.value,
                run_id=main,
                archived=archived,
                approvals=list(approvals),
                deployments=changed,
            )
        return ModelPromoted(
            main,
            mv.node_id,
            from_stage.value,
            stage.value,
            tuple(archived),
            approvals,
            tuple(changed),
        )

    def _move(
        self,
        mv: ModelVersion,
        stage: Stage,
        actor: str,
        reason: str | None,
        action: str,
        *,
        run: Run | None = None,
        parent: str | None = None,
        approvals: tuple[str, ...] = (),
    ) -> str:
        """Put one version in a stage, recorded as a promote run; returns the run id. The
        record is the move itself (the version, the stage it left and the one it entered):
        what a stage held at a time is replayed from the moves (:meth:`holders_at`), so a
        move costs the same however many versions the stages hold."""
        from_stage = mv.stage
        mv.stage = stage
        self.store.upsert_nodes([mv.to_node()])
        now = self._now()
        params: dict[str, Any] = {
            "change": "stage",
            "model": mv.model,
            "version": mv.version,
            "from_stage": from_stage.value,
            "to_stage": stage.value,
            "action": action,
        }
        if run is None:
            run = _done_run(
                f"{action} {mv.model}/{mv.version} to {stage.value}",
                RunKind.PROMOTE,
                now,
                actor,
                reason,
                params,
                parent=parent,
            )
            self._write_run(run, mv, actor, AssociationRole.REQUESTER)
        else:
            run.params = {**run.params, **params, "approvals": _list_param(approvals)}
            run.status = RunStatus.FINISHED
            run.ended_at = now
            self.store.upsert_nodes([run.to_node()])
        self.store.append_audit(
            actor,
            f"stage.{action}",
            mv.node_id,
            {
                "from_stage": from_stage.value,
                "to_stage": stage.value,
                "reason": reason,
                "run": run.node_id,
                "approvals": list(approvals),
            },
        )
        return run.node_id

    def _promotion_event(
        self,
        event: WebhookEvent,
        mv: ModelVersion,
        stage: Stage,
        actor: str,
        reason: str | None,
        request_id: str | None,
        **extra: Any,
    ) -> None:
        self._events.emit(
            event,
            {
                "version_id": mv.node_id,
                "model": mv.model,
                "version": mv.version,
                "to_stage": stage.value,
                "request_id": request_id,
                "actor": actor,
                "reason": reason,
                **extra,
            },
        )

    # --- rollback ---------------------------------------------------------------------------

    def rollback(
        self,
        model: str,
        stage_or_alias: str,
        actor: str,
        reason: str | None = None,
        *,
        on_deployments: OnDeployments | str = OnDeployments.REFUSE,
    ) -> list[str]:
        """Put back the previous holder of a stage or alias (undoing its last change).
        Returns the ids of the run(s) recording the rollback (see :meth:`roll_back`)."""
        done = self.roll_back(model, stage_or_alias, actor, reason, on_deployments=on_deployments)
        return list(done.run_ids)

    def roll_back(
        self,
        model: str,
        stage_or_alias: str,
        actor: str,
        reason: str | None = None,
        *,
        on_deployments: OnDeployments | str = OnDeployments.REFUSE,
    ) -> RolledBack:
        """Put back the previous holder of a stage or alias (undoing its last change). A stage
        rollback that would leave a live deployment serving a version outside the stage it
        requires is refused (``PolicyViolation`` naming the deployments, nothing written)
        unless ``on_deployments`` is ``retire`` or ``repoint``."""
        actor = _check_actor(actor)
        reason = _check_reason(reason)
        choice = _on_deployments(on_deployments)
        self._check_model(model)
        stage = _slot(stage_or_alias)
        with self._events.transaction():
            if stage is None:
                alias = check_alias(stage_or_alias, "stage_or_alias")
                event = self._last_event(
                    {"params.change": "alias", "params.model": model, "params.alias": alias},
                    None,
                )
                if event is None:
                    raise NotFoundError(f"alias {alias!r} of {model!r} has no history", ids=[model])
                prev = event.props["params"].get("from_version")
                if prev is None:
                    self.remove_alias(model, alias, actor, reason or "rollback")
                else:
                    self.set_alias(
                        model_version_id(model, prev), alias, actor, reason or "rollback"
                    )
                last = self._last_event({"params.change": "alias", "params.model": model}, None)
                return RolledBack((last.id,) if last is not None else ())
            event = self._last_event(
                {"params.change": "stage", "params.model": model, "params.to_stage": stage.value},
                None,
            )
            if event is None:
                raise NotFoundError(f"stage {stage.value} of {model!r} has no history", ids=[model])
            # The change to undo is the whole of the one that made this move: a promotion
            # with the archiving it did, or a rollback with every move it made. Undoing only
            # its last move (a rollback's last restored version) would leave the stage as it
            # never was between changes (a rollback of a rollback emptied Production).
            change = self._change_of(model, event)
            root = change[0]
            why = reason or f"rollback of {root.id}"
            came_from: dict[int, Stage] = {}
            for node in change:
                p = node.props["params"]
                came_from.setdefault(int(p["version"]), _stage(p["from_stage"], "from_stage"))
            params = root.props["params"]
            if "to_before" in params and params.get("to_stage") == stage.value:
                before = _holders(params["to_before"])  # an old store's record: its list
            else:
                # what the stage held before the change's first move (which need not be a
                # move of this stage: a promotion to Production, for Archived)
                began = Run.from_node(root).ended_at
                assert began is not None  # a record (_change_of)
                first = (began, 1, root.id)
                timeline = self._stage_timeline(model, stage, Run.from_node(event).ended_at)
                before = _replay(stage, [item for item in timeline if item[0] < first])
            moves: list[tuple[ModelVersion, Stage]] = []
            for v, stage_before in came_from.items():
                mv = ModelVersion.from_node(self.store.get_node(model_version_id(model, v)))
                if mv.stage is stage and v not in before:
                    moves.append((mv, stage_before))
            for v in before:
                mv = ModelVersion.from_node(self.store.get_node(model_version_id(model, v)))
                if mv.stage is not stage:
                    moves.append((mv, stage))
            if not moves:  # undone already: saying it was done would hide that
                raise ConflictError(
                    f"{stage.value} of {model!r} holds what it held before its last change"
                    f" ({event.id}): nothing to roll back"
                )
            stranded = self._stranded({mv.node_id: to for mv, to in moves})
            if stranded and choice is OnDeployments.REFUSE:
                rules = self._stranded_rules(stranded)
                names = ", ".join(dict.fromkeys(d.id for d, *_ in stranded))
                raise _errors.PolicyViolation(
                    f"rollback of {model} {stage.value} refused: it would leave {names} serving "
                    "a version outside the stage it requires; retire or re-point them "
                    "(on_deployments=, or --deployments in the CLI: retire or repoint)",
                    rules=rules,
                )
            moved = [(mv.node_id, mv.version, mv.stage.value, to.value) for mv, to in moves]
            # one change: its first move is the parent of the others (as a promotion is of
            # the versions it archives), so a rollback of it undoes all of it
            runs = [self._move(moves[0][0], moves[0][1], actor, why, "rollback")]
            runs += [
                self._move(mv, to, actor, why, "rollback", parent=runs[0]) for mv, to in moves[1:]
            ]
            changed = self._settle(
                stranded, choice, actor, f"the rollback of {model} {stage.value}"
            )
            self._events.emit(
                WebhookEvent.STAGE_ROLLED_BACK,
                {
                    "model": model,
                    "stage": stage.value,
                    "undone": root.id,
                    "moves": [
                        {
                            "version_id": version_id,
                            "version": version,
                            "from_stage": from_stage,
                            "to_stage": to_stage,
                            "run_id": run_id,
                        }
                        for (version_id, version, from_stage, to_stage), run_id in zip(
                            moved, runs, strict=True
                        )
                    ],
                    "deployments": changed,
                    "actor": actor,
                    "reason": why,
                    "run_ids": runs,
                },
            )
            return RolledBack(tuple(runs), tuple(changed))

    def _change_of(self, model: str, event: Node) -> list[Node]:
        """The moves of the change a stage move was part of, first move first: its first
        move (a promotion, a rollback's first move: the move itself or its parent) and that
        move's children (the versions a promotion archived, a rollback's other moves)."""
        parent_id = event.props.get("parent")
        parent = self.store.get_nodes([parent_id])[0] if isinstance(parent_id, str) else None
        if (
            parent is None
            or parent.label != NodeKind.RUN.value
            or parent.props.get("kind") != RunKind.PROMOTE.value
            or not _is_record(parent)
            or parent.props["params"].get("change") != "stage"
            or parent.props["params"].get("model") != model
        ):
            parent = event
        where = {
            "kind": RunKind.PROMOTE.value,
            "status": RunStatus.FINISHED.value,
            "params.change": "stage",
            "params.model": model,
            "parent": parent.id,
        }
        children = self.store.iter_nodes(NodeKind.RUN.value, where, ["ended_at", "id"])
        return [parent, *(n for n in children if _is_record(n))]

    # --- deployments ------------------------------------------------------------------------

    def deploy(
        self,
        ref: str,
        environment: str,
        actor: str,
        *,
        name: str | None = None,
        endpoint: str | None = None,
        status: DeploymentStatus | str = DeploymentStatus.ACTIVE,
        require_stage: Stage | str | None = None,
        reason: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Deployment:
        """Record that a model version is served in ``environment`` (``name`` defaults to
        the model's name). A deployment is identified by its name and environment: deploying
        again under the same ones ends the current serving interval (its ``SERVES`` edge gets
        ``valid_to``) and starts a new one, so the hub can say what was served when.
        ``require_stage`` refuses (``POLICY``) a version that is not in that stage, and is kept
        on the deployment (a later deploy under the same name states its own): stage changes
        that would break it are refused, or retire or re-point the deployment (see
        :class:`OnDeployments`).
        Each record is a ``deploy`` run that USED the version, associated with ``actor``, and
        an audit entry."""
        actor = _check_actor(actor)
        reason = _check_reason(reason)
        if status == DeploymentStatus.RETIRED:  # a str enum: "retired" too
            # recorded as retired, it served on (an open interval) and could not be retired
            raise ValidationError(
                "a deployment is recorded serving (active, pending or failed); retire it "
                "with retire_deployment (retireDeployment), which ends its serving interval",
                field="status",
            )
        mv = self.resolve(ref)
        stage: Stage | None = None
        if require_stage is not None:
            stage = _stage(require_stage, "require_stage")
            if mv.stage is not stage:
                broken = RuleBroken(
                    "stage",
                    f"{mv.node_id} is in {mv.stage.value}, not {stage.value}",
                    stage.value,
                    mv.stage.value,
                )
                raise PromotionRefused(mv.node_id, stage.value, (broken,)).to_error()
        name = name or mv.model
        with self._events.transaction():
            # read once the transaction holds the store (as the alias and stage records
            # are): read before, a deploy that waited for another one to commit ended that
            # one's serving interval before it began ("valid_to must be after valid_from")
            now = self._now()
            found = self.store.find_nodes(
                NodeKind.DEPLOYMENT.value, {"name": name, "environment": environment}, limit=1
            ).items
            fields: dict[str, Any] = {
                "name": name,
                "environment": environment,
                "endpoint": endpoint,
                "status": status,
                "require_stage": stage,
                "tags": dict(tags or {}),
            }
            if found:
                current = Deployment.from_node(found[0])
                fields["id"] = current.id
                if endpoint is None:
                    fields["endpoint"] = current.endpoint
                fields["tags"] = {**current.tags, **fields["tags"]}
            else:  # a deployment is in the project of the version it first served
                fields["project"] = projects_of(self.store, [mv.to_node()])[mv.node_id]
            deployment = validate(Deployment, fields)
            ended = self._end_serving(deployment.id, now) if found else []
            node = deployment.to_node()
            if found and stage is None and "require_stage" in found[0].props:
                # a deploy states its own requirement: none removes the one before (a merge
                # kept it, and refused stage changes this deploy said nothing against)
                node.props["require_stage"] = DELETE
            self.store.upsert_nodes([node])
            self.store.upsert_edges([make_edge(EdgeKind.SERVES, deployment, mv, valid_from=now)])
            run = _done_run(
                f"deploy {mv.model}/{mv.version} to {deployment.environment}",
                RunKind.DEPLOY,
                now,
                actor,
                reason,
                {
                    "deployment": deployment.id,
                    "environment": deployment.environment,
                    "model": mv.model,
                    "version": mv.version,
                    "endpoint": deployment.endpoint,
                    "status": deployment.status.value,
                    "require_stage": stage.value if stage is not None else None,
                    "replaced": _list_param(ended),
                },
            )
            self._write_run(run, mv, actor, AssociationRole.LAUNCHER)
            self.store.append_audit(
                actor,
                "deployment.record",
                deployment.id,
                {
                    "model_version": mv.node_id,
                    "environment": deployment.environment,
                    "endpoint": deployment.endpoint,
                    "status": deployment.status.value,
                    "require_stage": stage.value if stage is not None else None,
                    "replaced": ended,
                    "reason": reason,
                    "run": run.node_id,
                },
            )
            self._events.emit(
                WebhookEvent.DEPLOYMENT_RECORDED,
                {
                    "deployment_id": deployment.id,
                    "name": deployment.name,
                    "environment": deployment.environment,
                    "version_id": mv.node_id,
                    "model": mv.model,
                    "version": mv.version,
                    "actor": actor,
                    "reason": reason,
                },
            )
        return deployment

    def retire_deployment(
        self, deployment_id: str, actor: str, reason: str | None = None
    ) -> Deployment:
        """Mark a deployment RETIRED and end its serving interval."""
        actor = _check_actor(actor)
        reason = _check_reason(reason)
        if not isinstance(deployment_id, str) or not deployment_id.startswith("deployment:"):
            raise ValidationError("give a deployment id (deployment:...)", field="deployment_id")
        with self._events.transaction():
            deployment = Deployment.from_node(self.store.get_node(deployment_id))
            if deployment.status is DeploymentStatus.RETIRED:
                raise ConflictError(f"{deployment_id} is already retired")
            return self._retire(deployment, actor, reason)

    def _retire(self, deployment: Deployment, actor: str, reason: str | None) -> Deployment:
        ended = self._end_serving(deployment.id, self._now())
        deployment.status = DeploymentStatus.RETIRED
        self.store.upsert_nodes([deployment.to_node()])
        self.store.append_audit(
            actor,
            "deployment.retire",
            deployment.id,
            {"ended": ended, "reason": reason},
        )
        self._events.emit(
            WebhookEvent.DEPLOYMENT_RETIRED,
            {
                "deployment_id": deployment.id,
                "name": deployment.name,
                "environment": deployment.environment,
                "ended": ended,
                "actor": actor,
                "reason": reason,
            },
        )
        return deployment

    def _end_serving(self, deployment_id: str, now: datetime) -> list[str]:
        """Close every open ``SERVES`` interval of a deployment; returns the versions' ids."""
        adjacent = self.store.neighbors(
            [deployment_id], Direction.UPSTREAM, [EdgeKind.SERVES.value]
        )[deployment_id]
        closing = [a for a in adjacent if a.edge.props.get("valid_to") is None]
        if closing:  # the same edges (their id is kept by valid_from), now with an end
            self.store.upsert_edges(
                [
                    link(
                        EdgeKind.SERVES,
                        deployment_id,
                        NodeKind.DEPLOYMENT,
                        a.node.id,
                        NodeKind.MODEL_VERSION,
                        valid_from=a.edge.props["valid_from"],
                        valid_to=now,
                    )
                    for a in closing
                ]
            )
        return [a.node.id for a in closing]

    # --- writing ----------------------------------------------------------------------------

    def _associate(self, run_id: str, actor: str, role: AssociationRole) -> None:
        agent, edge = self._association(run_id, actor, role)
        if agent is not None:
            self.store.upsert_nodes([agent])
        self.store.upsert_edges([edge])

    def _association(
        self, run_id: str, actor: str, role: AssociationRole
    ) -> tuple[Node | None, Edge]:
        """The ``ASSOCIATED_WITH`` edge of a run to its actor, and the actor's Agent node when
        the store does not hold it yet (looked up once per service and actor)."""
        agent = Agent(name=actor)
        node = None
        if agent.node_id not in self._agents:
            if self.store.get_nodes([agent.node_id])[0] is None:
                node = agent.to_node()
            self.store.after_commit(lambda: self._agents.add(agent.node_id))
        edge = link(
            EdgeKind.ASSOCIATED_WITH, run_id, NodeKind.RUN, agent.node_id, NodeKind.AGENT, role=role
        )
        return node, edge

    def _write_run(self, run: Run, mv: ModelVersion, actor: str, role: AssociationRole) -> None:
        """A promote run, its edges and its actor: one write of nodes, one of edges."""
        agent, associated = self._association(run.node_id, actor, role)
        self.store.upsert_nodes([run.to_node()] if agent is None else [run.to_node(), agent])
        edges = [make_edge(EdgeKind.USED, run, mv, role=UsedRole.INPUT)]
        if run.parent:
            edges.append(link(EdgeKind.CHILD_OF, run.node_id, NodeKind.RUN, run.parent, "Run"))
        self.store.upsert_edges([*edges, associated])
