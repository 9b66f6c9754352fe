"""Model cards as data, and the inventory of models in production.

A model version's card (Mitchell et al., "Model Cards for Model Reporting") is a list of
revisions, each a record of its own (label ``CardRevision``, id
``card-revision:<version id>/<revision, 10 digits>``)::

    {"revision": 1, "at": "…", "actor": "ann", "reason": "…",
     "fields": {"intended_use": "…", "risk_tier": "high", …}}

and the version keeps its newest (``ModelVersion.card``: ``{"latest": {...}}``), so the card
as it was at any past time is the newest revision made by then (:meth:`CardService.card`,
``as_of``) and a card takes any number of revisions (kept on the version, they stopped a
card at its node's 1 MB; versions written so that still hold theirs, ``{"revisions": [...]}``,
read as before). Every change appends an audit entry (action
``card.set``, target the version) in the same transaction, whose payload is the revision
itself: anyone holding the revision can show it is the one the log recorded (its digest is
the entry's ``payload_digest``).

:meth:`CardService.set_card` merges: the fields given replace the card's, ``None`` removes
one, the others stay.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from lineagehub.graph import DELETE, Direction, GraphStore, Node, ValidationError
from lineagehub.graph.audit import payload_digest
from lineagehub.graph.model import check_time, to_iso
from lineagehub.services.access import CARD_REVISION, CARD_REVISION_PREFIX
from lineagehub.services.registry import RegistryService
from lineagehub.vocabulary import (
    AlertState,
    Deployment,
    DeploymentStatus,
    EdgeKind,
    ModelVersion,
    NodeKind,
    Stage,
)


class RiskTier(str, enum.Enum):
    """The EU AI Act's risk categories (SR 11-7's tiering maps onto them)."""

    MINIMAL = "minimal"
    LIMITED = "limited"
    HIGH = "high"
    UNACCEPTABLE = "unacceptable"


class ValidationStatus(str, enum.Enum):
    """Where the independent validation of a version stands (SR 11-7)."""

    NOT_VALIDATED = "not-validated"
    IN_VALIDATION = "in-validation"
    VALIDATED = "validated"
    VALIDATED_WITH_FINDINGS = "validated-with-findings"
    REJECTED = "rejected"


TEXT_FIELDS = ("intended_use",)
LIST_FIELDS = ("out_of_scope_uses", "limitations", "ethical_considerations", "owners")
CARD_FIELDS = (
    "intended_use",
    "out_of_scope_uses",
    "limitations",
    "ethical_considerations",
    "owners",
    "risk_tier",
    "validation_status",
    "next_review_date",
)
MAX_TEXT = 10_000  # what a text value of a stored record may hold (vocabulary's limit)
MAX_ITEMS = 100
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")


@dataclass(frozen=True)
class ModelCard:
    """A version's card: its ``fields`` (the keys of :data:`CARD_FIELDS` that are set),
    which ``revision`` it is, when and by whom it was made (``None``s: no card)."""

    version_id: str
    fields: dict[str, Any] = field(default_factory=dict)
    revision: int = 0
    updated_at: str | None = None
    updated_by: str | None = None
    reason: str | None = None

    def get(self, name: str) -> Any:
        return self.fields.get(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version_id": self.version_id,
            "revision": self.revision,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
            "reason": self.reason,
            "card": {k: self.fields.get(k) for k in CARD_FIELDS},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        card = data.get("card") or {}
        return cls(
            version_id=str(data["version_id"]),
            fields={k: v for k, v in card.items() if v is not None},
            revision=int(data.get("revision") or 0),
            updated_at=data.get("updated_at"),
            updated_by=data.get("updated_by"),
            reason=data.get("reason"),
        )


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise ValidationError(
            f"card.{name} must be non-empty text of at most {MAX_TEXT} characters", field=name
        )
    return value.strip()


def _enum(enum_type: type[enum.Enum], value: Any, name: str) -> str:
    try:
        return str(enum_type(value).value)
    except ValueError:
        known = ", ".join(str(m.value) for m in enum_type)
        raise ValidationError(
            f"card.{name} must be one of {known}, got {value!r:.40}", field=name
        ) from None


def check_card(card: Any) -> dict[str, Any]:
    """The card's fields validated and normalised (``None`` kept: it removes a field);
    :class:`ValidationError` naming the first bad field."""
    if not isinstance(card, Mapping):
        raise ValidationError("card must be an object of card fields", field="card")
    unknown = sorted(set(card) - set(CARD_FIELDS))
    if unknown:
        raise ValidationError(
            f"card: unknown field {unknown[0]!r:.60}; the fields are {', '.join(CARD_FIELDS)}",
            field=str(unknown[0])[:60],
        )
    out: dict[str, Any] = {}
    for name, value in card.items():
        if value is None:
            out[name] = None
        elif name in TEXT_FIELDS:
            out[name] = _text(value, name)
        elif name in LIST_FIELDS:
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or len(items) > MAX_ITEMS:
                raise ValidationError(
                    f"card.{name} must be a list of at most {MAX_ITEMS} texts", field=name
                )
            out[name] = [_text(v, name) for v in items]
        elif name == "risk_tier":
            out[name] = _enum(RiskTier, value, name)
        elif name == "validation_status":
            out[name] = _enum(ValidationStatus, value, name)
        else:  # next_review_date
            text = value.isoformat() if isinstance(value, date) else value
            ok = isinstance(text, str) and _DATE.match(text)
            try:
                if ok:
                    date.fromisoformat(text)
            except ValueError:
                ok = False
            if not ok:
                raise ValidationError(
                    f"card.next_review_date must be a date YYYY-MM-DD, got {value!r:.40}",
                    field=name,
                )
            out[name] = text
    return out


#: The graph label of a card's revisions (outside the lineage vocabulary: no edges; a
#: revision belongs to its version's project, :func:`lineagehub.services.access.projects_of`).
REVISION_LABEL, REVISION_PREFIX = CARD_REVISION, CARD_REVISION_PREFIX


def revision_id(version_id: str, revision: int) -> str:
    return f"{REVISION_PREFIX}{version_id}/{revision:010d}"


def _latest(mv: ModelVersion) -> dict[str, Any] | None:
    card = mv.card or {}
    latest = card.get("latest")
    if isinstance(latest, dict):
        return latest
    kept = card.get("revisions") or []  # written before revisions were records of their own
    return dict(kept[-1]) if kept else None


def _revisions(store: GraphStore, mv: ModelVersion) -> list[dict[str, Any]]:
    """Every revision of the version's card, oldest first."""
    found = {int(r["revision"]): dict(r) for r in (mv.card or {}).get("revisions") or []}
    prefix = f"{REVISION_PREFIX}{mv.node_id}/"
    where = {"id": {"$gte": prefix, "$lt": prefix + ":"}}  # the digits sort before ":"
    for node in store.iter_nodes(REVISION_LABEL, where, ["id"]):
        found[int(node.props["revision"])] = dict(node.props)
    return [found[n] for n in sorted(found)]


def _card_of(version_id: str, revision: Mapping[str, Any] | None) -> ModelCard:
    if revision is None:
        return ModelCard(version_id)
    return ModelCard(
        version_id=version_id,
        fields={k: v for k, v in (revision.get("fields") or {}).items() if v is not None},
        revision=int(revision["revision"]),
        updated_at=revision.get("at"),
        updated_by=revision.get("actor"),
        reason=revision.get("reason"),
    )


@dataclass(frozen=True)
class InventoryRow:
    """One model version in production: what an inventory of models lists."""

    model: str
    version: int
    version_id: str
    stage: str
    deployments: list[str]
    owners: list[str]
    risk_tier: str | None
    validation_status: str | None
    next_review_date: str | None
    review_overdue: bool
    open_alerts: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class CardService:
    """Model cards over a graph store (see the module docstring)."""

    def __init__(self, store: GraphStore, *, clock: Any = None) -> None:
        self.store = store
        self.registry = RegistryService(store)
        self.clock = clock or (lambda: datetime.now(timezone.utc))

    def set_card(
        self, ref: str, card: Mapping[str, Any], actor: str, reason: str | None = None
    ) -> ModelCard:
        """Merge ``card`` into the version's card as a new revision, audited
        (``card.set``); the card after it."""
        if not isinstance(actor, str) or not actor.strip():
            raise ValidationError("actor must be a non-empty name", field="actor")
        changes = check_card(card)
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_TEXT):
            raise ValidationError("reason must be text", field="reason")
        found = self.registry.resolve(ref)
        with self.store.transaction():
            mv = ModelVersion.from_node(self.store.get_node(found.node_id))
            latest = _latest(mv)
            current = dict((latest["fields"] if latest else {}) or {})
            for k, v in changes.items():
                if v is None:
                    current.pop(k, None)
                else:
                    current[k] = v
            number = (int(latest["revision"]) if latest else 0) + 1
            revision = {
                "revision": number,
                "at": to_iso(self.clock()),
                "actor": actor.strip(),
                "reason": reason,
                "fields": current,
            }
            # properties merge key by key: a field the revision removed is deleted outright
            gone = {k: DELETE for k in (latest["fields"] if latest else {}) if k not in current}
            patch = {"card": {"latest": {**revision, "fields": {**current, **gone}}}}
            record = Node(revision_id(mv.node_id, number), REVISION_LABEL, revision)
            self.store.upsert_nodes([Node(mv.node_id, mv.node_kind.value, patch), record])
            self.store.append_audit(actor.strip(), "card.set", mv.node_id, revision)
        return _card_of(mv.node_id, revision)

    def card(self, ref: str, as_of: datetime | None = None) -> ModelCard:
        """The version's card (now, or the newest revision made by ``as_of``, of the version
        ``ref`` named then); an empty card (``revision`` 0) when it has none."""
        mv = self.registry.resolve_at(ref, as_of)
        if as_of is None:
            return _card_of(mv.node_id, _latest(mv))
        revisions = _revisions(self.store, mv)
        if revisions:
            # when the audit log recorded it (a revision's ``at`` is read a moment before its
            # entry is appended): the card a report as of a time shows is one its audit
            # section holds the entry of
            limit = to_iso(check_time(as_of, "as_of"))
            recorded = self._recorded(mv.node_id)
            revisions = [
                r for r in revisions if recorded.get(payload_digest(r), str(r.get("at"))) <= limit
            ]
        return _card_of(mv.node_id, revisions[-1] if revisions else None)

    def _recorded(self, version_id: str) -> dict[str, str]:
        """The time of each ``card.set`` entry of the version, by payload digest."""
        found: dict[str, str] = {}
        after = 0
        while True:
            page = self.store.read_audit(after, 1000, version_id)
            for e in page:
                if e.action == "card.set":
                    found.setdefault(e.payload_digest, e.time)
            if len(page) < 1000:
                return found
            after = page[-1].seq

    def revisions(self, ref: str) -> list[dict[str, Any]]:
        """Every revision of the version's card, oldest first, each with the digest its
        audit entry's payload has (``payload_digest``)."""
        mv = self.registry.resolve(ref)
        return [{**r, "payload_digest": payload_digest(r)} for r in _revisions(self.store, mv)]

    # --- the inventory ------------------------------------------------------------------------

    def inventory(self, today: date | None = None) -> list[InventoryRow]:
        """Every model version in Production or served by a live deployment, with its
        card's owner, risk tier, validation status, next review date and open alerts."""
        today = today or self.clock().date()
        versions: dict[str, ModelVersion] = {}
        for node in self.store.iter_nodes(
            NodeKind.MODEL_VERSION.value, {"stage": Stage.PRODUCTION.value}, ["model", "version"]
        ):
            versions[node.id] = ModelVersion.from_node(node)
        serving: dict[str, list[str]] = {}
        live = {DeploymentStatus.ACTIVE.value, DeploymentStatus.PENDING.value}
        deployments = [
            Deployment.from_node(n)
            for n in self.store.iter_nodes(NodeKind.DEPLOYMENT.value, None, ["id"])
        ]
        live_ids = [d.id for d in deployments if d.status.value in live]
        adjacent = (
            self.store.neighbors(live_ids, Direction.UPSTREAM, [EdgeKind.SERVES.value])
            if live_ids
            else {}
        )
        for dep_id in live_ids:
            for a in adjacent.get(dep_id, []):
                if a.edge.props.get("valid_to") is None:
                    serving.setdefault(a.node.id, []).append(dep_id)
        missing = [i for i in serving if i not in versions]
        for found in self.store.get_nodes(missing):
            if found is not None:
                versions[found.id] = ModelVersion.from_node(found)
        open_alerts: dict[str, set[str]] = {}
        open_states = [s.value for s in AlertState if s.value != "resolved"]
        for node in self.store.iter_nodes(
            NodeKind.ALERT.value, {"state": {"$in": open_states}}, ["id"]
        ):
            p = node.props
            for key in {p.get("model_version"), p.get("deployment")}:
                if key:
                    open_alerts.setdefault(key, set()).add(node.id)
        rows = []
        for vid, mv in sorted(versions.items(), key=lambda kv: (kv[1].model, kv[1].version)):
            latest = _latest(mv)
            fields = (latest["fields"] if latest else {}) or {}
            review = fields.get("next_review_date")
            deps = sorted(serving.get(vid, []))
            # an alert about the version and its deployment is one alert
            alerts = len(
                set().union(open_alerts.get(vid, set()), *(open_alerts.get(d, set()) for d in deps))
            )
            rows.append(
                InventoryRow(
                    model=mv.model,
                    version=mv.version,
                    version_id=vid,
                    stage=mv.stage.value,
                    deployments=deps,
                    owners=list(fields.get("owners") or []),
                    risk_tier=fields.get("risk_tier"),
                    validation_status=fields.get("validation_status"),
                    next_review_date=review,
                    review_overdue=bool(review and date.fromisoformat(review) < today),
                    open_alerts=alerts,
                )
            )
        return rows


__all__ = [
    "CARD_FIELDS",
    "CardService",
    "InventoryRow",
    "ModelCard",
    "RiskTier",
    "ValidationStatus",
    "check_card",
]
