"""The compliance report of one model version: everything a reviewer signs, as data.

:func:`compliance_report` gathers, for a model version (now, or as the hub knew it at a past
time ``as_of``), one JSON document:

- ``identity`` and ``card`` (:mod:`lineagehub.services.cards`);
- ``data``: the training data's datasheet: each dataset version used, its sources through
  lineage, schema, profile, digest;
- ``training``: the run, its code commit(s) (with the dirty diff's digest) and environment;
  ``parameters``; ``evaluation``: the version's metrics and the per-slice results logged with
  the run (:func:`lineagehub.ingest.evaluation.log_slices`);
- ``comparison`` with the version it replaced (the previous holder of Production, else the
  previous version number): :meth:`LineageService.compare_model_versions`;
- ``governance``: promotions, aliases, approvals, refusals, with the actors the audit log
  recorded and their reasons; ``deployments`` (when each served it); ``monitoring``
  windows and ``alerts``; ``open_issues``;
- ``lineage``: the upstream picture (Graphviz SVG, when ``dot`` is installed);
- ``checklist``: per section, the items EU AI Act Annex IV, SR 11-7 and the Model Card
  paper ask for, and which are missing;
- ``audit``: the audit entries the report cites, each with its Merkle inclusion proof
  against one signed tree head (:mod:`lineagehub.services.proofs`), so ``lineagehub report
  verify`` checks them offline.

``as_of``: the card revision, stage, deployments, windows, alerts, lineage and audit
entries as they were then. What the hub does not keep history of is listed in
``reconstruction.not_reconstructed`` (alert acknowledgements, descriptions and tags are
their current values).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timezone
from typing import Any

from lineagehub.graph import (
    ConfigError,
    Direction,
    GraphStore,
    HubError,
    Node,
    NotFoundError,
    Subgraph,
    ValidationError,
)
from lineagehub.graph.audit import canonical_json
from lineagehub.graph.model import TruncationReason, check_time, to_iso
from lineagehub.services.cards import CARD_FIELDS, CardService
from lineagehub.services.lineage import LineageService
from lineagehub.services.proofs import prove_many
from lineagehub.services.registry import RegistryService
from lineagehub.vocabulary import EdgeKind, ModelVersion, NodeKind, Stage

FORMAT = "lineagehub.compliance-report/1"
UPSTREAM_DEPTH = 8
MAX_NODES = 5000
MAX_WINDOWS = 200
MAX_ALERTS = 500
#: The lineage picture draws at most this many nodes (the nearest ones).
PICTURE_MAX_NODES = 150

#: Each section of the report, and what the three frameworks ask of it (the items are the
#: report's fields that answer them: ``section.path``; a list: any one of them).
CHECKLIST: list[dict[str, Any]] = [
    {
        "section": "identity",
        "title": "Model identity and version",
        "items": ["identity.version_id", "identity.artifact_digest", "identity.flavor"],
        "annex_iv": "1(a) general description: name, version, provider",
        "sr_11_7": "model inventory: identification of the model",
        "model_card": "Model details: name, version, type",
    },
    {
        "section": "card",
        "title": "Intended use and limitations",
        "items": [
            "card.intended_use",
            "card.out_of_scope_uses",
            "card.limitations",
            "card.ethical_considerations",
        ],
        "annex_iv": "1(a) intended purpose; 3 limitations, foreseeable unintended outcomes, risks",
        "sr_11_7": "model purpose and use; limitations and assumptions",
        "model_card": "Intended use; Ethical considerations; Caveats and recommendations",
    },
    {
        "section": "card",
        "title": "Ownership, risk tier and review",
        "items": ["card.owners", "card.risk_tier", "card.next_review_date"],
        "annex_iv": "5 risk management system",
        "sr_11_7": "roles and responsibilities; risk rating; periodic review",
        "model_card": "Model details: owners, contact",
    },
    {
        "section": "card",
        "title": "Independent validation",
        "items": ["card.validation_status"],
        "annex_iv": "2(g) validation and testing procedures",
        "sr_11_7": "independent model validation",
        "model_card": "Quantitative analyses",
    },
    {
        "section": "data",
        "title": "Training data (datasheet)",
        "items": ["data.datasets", "data.digests", "data.schemas", "data.profiles"],
        "annex_iv": "2(d) data requirements: datasheets, provenance, characteristics",
        "sr_11_7": "data quality and relevance; data sources",
        "model_card": "Training data",
    },
    {
        "section": "training",
        "title": "Development: code and environment",
        "items": ["training.run", "training.code", "training.environment"],
        "annex_iv": "2(a)-(b) methods, design choices, computational resources",
        "sr_11_7": "model development and implementation documentation",
        "model_card": "Model details: training algorithm",
    },
    {
        "section": "parameters",
        "title": "Parameters",
        "items": ["parameters"],
        "annex_iv": "2(b) design specifications, key choices",
        "sr_11_7": "model specification and assumptions",
        "model_card": "Model details: parameters",
    },
    {
        "section": "evaluation",
        "title": "Evaluation and per-slice results",
        "items": ["evaluation.metrics", "evaluation.slices"],
        "annex_iv": "2(g) metrics for accuracy, robustness; 3 performance for specific groups",
        "sr_11_7": "outcomes analysis; testing",
        "model_card": "Metrics; Evaluation data; Quantitative analyses (unitary and intersectional)",
    },
    {
        "section": "comparison",
        "title": "Change from the replaced version",
        "items": ["comparison.previous"],
        "annex_iv": "6 relevant changes made through the lifecycle",
        "sr_11_7": "change management; benchmarking",
        "model_card": "",
    },
    {
        "section": "governance",
        "title": "Approvals and promotion history",
        "items": ["governance.history"],
        "annex_iv": "2(e) human oversight measures",
        "sr_11_7": "governance, policies and controls; approvals",
        "model_card": "",
    },
    {
        "section": "deployments",
        "title": "Deployments",
        "items": ["deployments"],
        "annex_iv": "1(d)-(e) forms placed on the market; hardware it runs on",
        "sr_11_7": "implementation and use",
        "model_card": "",
    },
    {
        "section": "monitoring",
        "title": "Post-market monitoring and alerts",
        "items": ["monitoring.windows"],
        "annex_iv": "9 post-market monitoring plan",
        "sr_11_7": "ongoing monitoring",
        "model_card": "",
    },
    {
        "section": "audit",
        "title": "Record-keeping and proofs",
        "items": ["audit.entries", "audit.head"],
        "annex_iv": "Art. 12 record-keeping (logs)",
        "sr_11_7": "documentation and audit trail",
        "model_card": "",
    },
]


def _iso(value: datetime | None) -> str | None:
    return to_iso(value) if value is not None else None


def _props(node: Node, *keys: str) -> dict[str, Any]:
    return {k: node.props.get(k) for k in keys}


def _has(report: Mapping[str, Any], path: str) -> bool:
    value: Any = report
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, (list, dict, str)):
        return bool(value)
    return value is not None


def card_section(card: Any) -> dict[str, Any]:
    """The card as the report shows it: every card field (``None`` when not set) and the
    revision's ``revision``, ``updated_at``, ``updated_by``, ``reason``."""
    return {
        **{k: card.fields.get(k) for k in CARD_FIELDS},
        "revision": card.revision,
        "updated_at": card.updated_at,
        "updated_by": card.updated_by,
        "reason": card.reason,
    }


def checklist(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The :data:`CHECKLIST` rows with what ``report`` has and what it is missing."""
    rows = []
    for row in CHECKLIST:
        missing = [i for i in row["items"] if not _has(report, i)]
        rows.append({**row, "missing": missing, "complete": not missing})
    return rows


def _picture_part(sub: Subgraph) -> Subgraph:
    """The nearest :data:`PICTURE_MAX_NODES` nodes of a large lineage (by distance), so the
    picture stays readable and quick to lay out; the JSON keeps every node."""
    if len(sub.nodes) <= PICTURE_MAX_NODES:
        return sub
    order = sorted(sub.nodes.items(), key=lambda kv: kv[1].distance)
    kept = dict(order[:PICTURE_MAX_NODES])
    edges = [e for e in sub.edges if e.source in kept and e.target in kept]
    return Subgraph(kept, edges, True, TruncationReason.MAX_NODES)


def _svg(sub: Subgraph, focus: str) -> tuple[str | None, str | None]:
    from lineagehub.services.export import export_lineage

    part = _picture_part(sub)
    try:
        svg = export_lineage(part, "svg", focus=[focus], cluster=False).decode("utf-8")
    except ConfigError as e:
        return None, e.message
    start = svg.find("<svg")
    note = (
        f"the picture shows the nearest {len(part.nodes)} of {len(sub.nodes)} nodes"
        if part is not sub
        else None
    )
    return (svg[start:] if start >= 0 else svg), note


def _datasheet(sub: Any, run_id: str | None) -> dict[str, Any]:
    out_edges: dict[str, list[str]] = {}
    derived: dict[str, list[str]] = {}
    used: dict[str, str] = {}
    lineage_kinds = (EdgeKind.GENERATED_BY.value, EdgeKind.USED.value, EdgeKind.DERIVED_FROM.value)
    for e in sub.edges:
        if e.kind in lineage_kinds:
            out_edges.setdefault(e.source, []).append(e.target)
        if e.kind == EdgeKind.DERIVED_FROM.value and e.target in sub.nodes:
            derived.setdefault(e.source, []).append(e.target)
        if e.kind == EdgeKind.USED.value and e.source == run_id:
            used[e.target] = str(e.props.get("role") or "input")
    datasets = []
    for vid, role in sorted(used.items()):
        t = sub.nodes.get(vid)
        if t is None or t.node.label != NodeKind.DATASET_VERSION.value:
            continue
        n = t.node
        datasets.append(
            {
                "id": vid,
                "role": role,
                **_props(n, "namespace", "name", "digest", "uri", "row_count"),
                "schema": n.props.get("columns"),
                "profile": n.props.get("profile"),
                "sources": sorted(derived.get(vid, [])),
                # everything further upstream of this version that is data
                "upstream_data": _upstream_data(sub, out_edges, vid),
            }
        )
    return {
        "datasets": datasets,
        "digests": [d["digest"] for d in datasets if d.get("digest")],
        "schemas": [d["id"] for d in datasets if d.get("schema")],
        "profiles": [d["id"] for d in datasets if d.get("profile")],
    }


def _upstream_data(sub: Any, out_edges: Mapping[str, list[str]], start: str) -> list[str]:
    seen, stack, found = {start}, [start], set()
    while stack:
        for nxt in out_edges.get(stack.pop(), []):
            if nxt in seen:
                continue
            seen.add(nxt)
            stack.append(nxt)
            t = sub.nodes.get(nxt)
            if t is not None and t.node.label == NodeKind.DATASET_VERSION.value:
                found.add(nxt)
    return sorted(found)


def _previous(
    registry: RegistryService, mv: ModelVersion, history: list[Any], as_of: datetime | None
) -> str | None:
    """The version this one replaced: the one in Production before it entered Production,
    else the version numbered just below it."""
    entered = [
        h
        for h in history
        if h.change == "stage" and h.version == mv.version and h.to == Stage.PRODUCTION.value
    ]
    if entered:
        before = entered[0].at
        holders = registry.holders_at(mv.model, Stage.PRODUCTION.value, before)
        others = [v for v in holders if v != mv.version]
        if others:
            return f"mv:{mv.model}/{others[-1]}"
    if mv.version > 1:
        node = registry.store.get_nodes([f"mv:{mv.model}/{mv.version - 1}"])[0]
        if node is not None and (
            as_of is None or node.created_at is None or node.created_at <= as_of
        ):
            return node.id
    return None


def _comparison(lineage: LineageService, previous: str | None, vid: str) -> dict[str, Any]:
    if previous is None:
        return {"previous": None, "note": "no earlier version to compare with"}
    diff = lineage.compare_model_versions(previous, vid)

    def ids(nodes: Iterable[Node]) -> list[str]:
        return [n.id for n in nodes]

    return {
        "previous": previous,
        "datasets": {"added": ids(diff.datasets.added), "removed": ids(diff.datasets.removed)},
        "commits": {"added": ids(diff.commits.added), "removed": ids(diff.commits.removed)},
        "environments": {
            "added": ids(diff.environments.added),
            "removed": ids(diff.environments.removed),
        },
        "params_changed": [
            {"key": p.key, "before": p.a, "after": p.b} for p in diff.params_changed
        ],
        "params_added": [{"key": p.key, "after": p.b} for p in diff.params_added],
        "params_removed": [{"key": p.key, "before": p.a} for p in diff.params_removed],
        "metric_deltas": [
            {"key": m.key, "before": m.a, "after": m.b, "delta": m.delta}
            for m in diff.metric_deltas
        ],
        "truncated": diff.truncated,
    }


def _deployments(store: GraphStore, vid: str, as_of: datetime | None) -> list[dict[str, Any]]:
    adjacent = store.neighbors([vid], Direction.DOWNSTREAM, [EdgeKind.SERVES.value]).get(vid, [])
    limit = _iso(as_of)
    out = []
    for a in adjacent:
        if a.node.label != NodeKind.DEPLOYMENT.value:
            continue
        start = a.edge.props.get("valid_from") or _iso(a.edge.event_time)
        end = a.edge.props.get("valid_to")
        if limit is not None and start is not None and str(start) > limit:
            continue
        if limit is not None and end is not None and str(end) > limit:
            end = None  # still serving then
        out.append(
            {
                "id": a.node.id,
                **_props(a.node, "name", "environment", "endpoint"),
                "status": a.node.props.get("status") if limit is None else None,
                "serving_from": start,
                "serving_to": end,
                "live": end is None,
            }
        )
    return sorted(out, key=lambda d: (str(d["serving_from"]), d["id"]))


def _monitoring(
    store: GraphStore, vid: str, deployments: list[str], as_of: datetime | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    limit = _iso(as_of)
    windows = []
    where: dict[str, Any] = {"model_version": vid}
    if limit is not None:
        where["end"] = {"$lte": limit}
    for n in store.iter_nodes(NodeKind.MONITORING_WINDOW.value, where, ["-end"]):
        p = n.props
        drift = p.get("drift") or {}
        windows.append(
            {
                "id": n.id,
                **_props(n, "deployment", "start", "end", "sample_count", "metrics"),
                "drifted_features": sorted(
                    k for k, v in drift.items() if isinstance(v, dict) and v.get("drifted")
                ),
            }
        )
        if len(windows) >= MAX_WINDOWS:
            break
    alerts: list[dict[str, Any]] = []
    seen: set[str] = set()
    keys = [("model_version", vid)] + [("deployment", d) for d in deployments]
    for field, value in keys:
        w: dict[str, Any] = {field: value}
        if limit is not None:
            w["fired_at"] = {"$lte": limit}
        for n in store.iter_nodes(NodeKind.ALERT.value, w, ["-fired_at"]):
            if n.id in seen or len(alerts) >= MAX_ALERTS:
                continue
            seen.add(n.id)
            p = n.props
            state = p.get("state")
            if limit is not None:
                resolved = p.get("resolved_at")
                state = "resolved" if resolved is not None and str(resolved) <= limit else "open"
            alerts.append(
                {
                    "id": n.id,
                    **_props(n, "rule", "severity", "fired_at", "resolved_at", "message"),
                    "state": state,
                    "open": state != "resolved",
                }
            )
    windows.reverse()
    alerts.sort(key=lambda a: str(a["fired_at"]))
    return windows, alerts


def _slices(store: GraphStore, run_id: str | None) -> list[dict[str, Any]]:
    """The per-slice results the run logged (evaluation artifacts it generated)."""
    if run_id is None:
        return []
    out = []
    adjacent = store.neighbors([run_id], Direction.DOWNSTREAM, [EdgeKind.GENERATED_BY.value])
    for a in adjacent.get(run_id, []):
        if a.node.label != NodeKind.ARTIFACT.value:
            continue
        data = a.node.props.get("data") or {}
        if isinstance(data, dict) and "slice_column" in data:
            out.append({"artifact": a.node.id, "digest": a.node.props.get("digest"), **data})
    return sorted(out, key=lambda s: (str(s.get("prefix")), str(s["slice_column"])))


def compliance_report(
    store: GraphStore,
    ref: str,
    as_of: datetime | None = None,
    *,
    lineage: LineageService | None = None,
    picture: bool = True,
    proofs: bool = True,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The compliance report of the model version ``ref`` (see the module docstring), as
    JSON-ready data."""
    if as_of is not None:
        as_of = check_time(as_of, "as_of")
        if as_of > (now or datetime.now(timezone.utc)):  # a report tells what the hub knew
            raise ValidationError(
                f"as_of {to_iso(as_of)} is in the future: a report reconstructs what the hub"
                " knew at a time that has come",
                field="as_of",
            )
    generated = now or datetime.now(timezone.utc)
    lineage = lineage or LineageService(store)
    registry = RegistryService(store)
    cards = CardService(store)
    mv = registry.resolve_at(ref, as_of)  # churn@production as of March: March's version
    vid = mv.node_id
    notes: list[str] = []
    node = store.get_node(vid)
    if as_of is not None and node.created_at is not None and node.created_at > as_of:
        raise NotFoundError(
            f"{vid} was registered at {to_iso(node.created_at)}, after {to_iso(as_of)}", ids=[vid]
        )
    card = cards.card(vid, as_of)

    history = [h for h in registry.history(mv.model) if as_of is None or h.at <= as_of]
    mine = [h for h in history if h.version == mv.version]
    stage = mv.stage.value
    aliases = list(mv.aliases)
    if as_of is not None:
        stage = Stage.NONE.value
        held: set[str] = set()
        for h in history:
            if h.change == "stage" and h.version == mv.version:
                stage = str(h.to)
            elif h.change == "alias" and h.alias:
                if h.to == mv.version:
                    held.add(h.alias)
                elif h.from_ == mv.version:
                    held.discard(h.alias)
        aliases = sorted(held)

    sub = store.traverse(
        [vid],
        Direction.UPSTREAM,
        UPSTREAM_DEPTH,
        max_nodes=MAX_NODES,
        timeout=lineage.timeout,
        as_of=as_of,
    )
    run_node = next(
        (
            sub.nodes[e.target].node
            for e in sub.edges
            if e.kind == EdgeKind.GENERATED_BY.value and e.source == vid and e.target in sub.nodes
        ),
        None,
    )
    run_id = run_node.id if run_node is not None else None
    code, env = [], []
    for e in sub.edges:
        if e.source != run_id or e.target not in sub.nodes:
            continue
        n = sub.nodes[e.target].node
        if e.kind == EdgeKind.RAN_CODE.value:
            code.append({"id": n.id, **_props(n, "repo", "sha", "branch", "dirty", "diff_digest")})
        elif e.kind == EdgeKind.RAN_IN.value:
            env.append(
                {
                    "id": n.id,
                    **_props(n, "python", "platform", "packages_digest"),
                    "packages": n.props.get("packages"),
                }
            )
    run = (
        {
            "id": run_id,
            **_props(
                run_node,
                "name",
                "kind",
                "status",
                "started_at",
                "ended_at",
                "user",
                "host",
                "entry_point",
                "project",
                "experiment",
                "metrics",
            ),
        }
        if run_node is not None
        else None
    )
    params = dict((run_node.props.get("params") or {}) if run_node is not None else {})

    previous = _previous(registry, mv, history, as_of)
    try:
        comparison = _comparison(lineage, previous, vid)
    except HubError as e:
        comparison = {"previous": previous, "note": f"not compared: {e.message}"}

    deployments = _deployments(store, vid, as_of)
    windows, alerts = _monitoring(store, vid, [d["id"] for d in deployments], as_of)
    runs_upstream = sum(1 for t in sub.nodes.values() if t.node.label == NodeKind.RUN.value)

    pending = [
        {
            "request_id": p.request_id,
            "to_stage": p.to_stage,
            "requested_by": p.requested_by,
            "reason": p.reason,
            "approvals": list(p.approvals),
            "needed": p.needed,
            "requested_at": _iso(p.requested_at),
        }
        for p in (registry.pending_promotions(mv.model) if as_of is None else [])
        if p.version_id == vid
    ]
    governance = {
        "history": [
            {
                "change": h.change,
                "version": h.version,
                "alias": h.alias,
                "from": h.from_,
                "to": h.to,
                "actor": h.actor,
                "reason": h.reason,
                "approvals": list(h.approvals),
                "at": _iso(h.at),
                "run_id": h.run_id,
            }
            for h in mine
        ],
        "pending": pending,
    }

    today = (as_of or generated).date()
    open_issues: list[dict[str, Any]] = [
        {"kind": "alert", "id": a["id"], "text": f"{a['rule']} ({a['severity']}) is {a['state']}"}
        for a in alerts
        if a["open"]
    ]
    review = card.get("next_review_date")
    if review and date.fromisoformat(review) < today:
        open_issues.append({"kind": "review", "text": f"the review due {review} is overdue"})
    if card.get("validation_status") in (None, "not-validated", "rejected"):
        status = card.get("validation_status") or "not recorded"
        open_issues.append({"kind": "validation", "text": f"validation status: {status}"})
    for p in pending:
        open_issues.append(
            {
                "kind": "promotion",
                "id": p["request_id"],
                "text": f"pending request to {p['to_stage']}",
            }
        )

    svg, svg_note = _svg(sub, vid) if picture else (None, "not drawn")
    report: dict[str, Any] = {
        "format": FORMAT,
        "generated_at": to_iso(generated),
        "as_of": _iso(as_of),
        "identity": {
            "version_id": vid,
            "model": mv.model,
            "version": mv.version,
            "artifact_digest": mv.artifact_digest,
            "flavor": mv.flavor,
            "signature": mv.signature,
            "stage": stage,
            "aliases": aliases,
            "description": mv.description,
            "tags": mv.tags,
            "registered_at": _iso(node.created_at),
        },
        "card": card_section(card),
        "data": _datasheet(sub, run_id),
        "training": {"run": run, "code": code, "environment": env},
        "parameters": params,
        "evaluation": {"metrics": dict(mv.metrics), "slices": _slices(store, run_id)},
        "comparison": comparison,
        "governance": governance,
        "deployments": deployments,
        "monitoring": {"windows": windows, "alerts": alerts},
        "open_issues": open_issues,
        "lineage": {
            "nodes": len(sub.nodes),
            "edges": len(sub.edges),
            "runs_upstream": runs_upstream,
            "truncated": sub.truncated,
            "truncation_reason": str(sub.truncation_reason.value)
            if sub.truncated and sub.truncation_reason is not None
            else None,
            "svg": svg,
            "note": svg_note,
        },
    }
    report["audit"] = _audit(store, report, vid, mv.model, as_of, cards, proofs)
    # refused promotions and approvals are audit entries on the version (their rules are in
    # the entry's action; the full payload went to the webhook receivers)
    governance["refusals"] = [
        {k: e[k] for k in ("seq", "time", "actor", "action")}
        for e in report["audit"]["entries"]
        if ".refused:" in e["action"] and e["target"] == vid
    ]
    report["checklist"] = checklist(report)
    if as_of is not None:
        notes += [
            "alert acknowledgements: an alert is shown open or resolved at the date, not "
            "whether it was acknowledged then",
            "description and tags: their current values (their changes are audited, their "
            "past values are not kept)",
            "pending promotion requests: only listed for a report of now",
            "deployment status: only its serving interval is reconstructed",
        ]
    report["reconstruction"] = {"as_of": _iso(as_of), "not_reconstructed": notes}
    report["seal"] = seal(store, report)
    return report


def sealed_digest(report: Mapping[str, Any]) -> str:
    """The digest a report's seal covers: of its canonical JSON as written (``default=str``,
    as :func:`report_json` writes it), without the seal."""
    body = json.loads(report_json({k: v for k, v in report.items() if k != "seal"}))
    return "sha256:" + hashlib.sha256(canonical_json(body)).hexdigest()


def seal_mac(digest: str, key: bytes) -> str:
    return hmac.new(key, digest.encode("ascii"), hashlib.sha256).hexdigest()


def seal(store: GraphStore, report: Mapping[str, Any]) -> dict[str, Any]:
    """What makes the whole report checkable: the digest of everything in it, with the MAC
    of the audit key and the hub's Ed25519 signature when it signs its tree heads (so an
    edited metric, stage or picture fails ``report verify``, not only an edited audit
    section or card)."""
    digest = sealed_digest(report)
    out: dict[str, Any] = {"digest": digest}
    policy = store.audit_policy
    if policy.key:
        out["mac"] = seal_mac(digest, policy.key)
    if policy.signer is not None:
        out["signature"] = policy.signer(digest.encode("ascii"))
    return out


def _audit(
    store: GraphStore,
    report: Mapping[str, Any],
    vid: str,
    model: str,
    as_of: datetime | None,
    cards: CardService,
    proofs: bool,
) -> dict[str, Any]:
    targets = [vid, f"model:{model}", *[d["id"] for d in report["deployments"]]]
    limit = _iso(as_of)
    cited = []
    for target in dict.fromkeys(targets):
        after = 0
        while True:
            page = store.read_audit(after, 1000, target)
            cited += [e for e in page if limit is None or e.time <= limit]
            if len(page) < 1000:
                break
            after = page[-1].seq
    cited.sort(key=lambda e: e.seq)
    revisions = {r["payload_digest"]: r for r in cards.revisions(vid)}
    entries = []
    for e in cited:
        item: dict[str, Any] = {
            "seq": e.seq,
            "time": e.time,
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "payload_digest": e.payload_digest,
        }
        revision = revisions.get(e.payload_digest)
        if e.action == "card.set" and revision is not None:
            item["payload"] = {k: v for k, v in revision.items() if k != "payload_digest"}
        entries.append(item)
    out: dict[str, Any] = {"entries": entries, "head": None, "proofs": []}
    if proofs and cited:
        proven = prove_many(store, [e.seq for e in cited])
        out["head"] = proven["head"]
        out["proofs"] = proven["proofs"]
    elif proofs:
        head = store.audit_head()
        out["note"] = "no audit entry names this version" + (
            "" if head is not None else " (the audit log is empty)"
        )
    return out


def report_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False, default=str)


__all__ = [
    "CARD_FIELDS",
    "CHECKLIST",
    "FORMAT",
    "checklist",
    "compliance_report",
    "report_json",
    "seal",
    "sealed_digest",
]
