"""Who is asking, and what they may do: principals, roles and grants.

A :class:`Principal` is the caller of one request (or of one embedded client): a name (the
audit log's actor), the roles granted to it globally and per project, and how it was
authenticated. Roles are ordered, each including the ones below it:

========  ==================================================================================
viewer    read everything it is granted (runs, models, lineage, artifacts)
editor    + write: runs, params, metrics, datasets, artifacts, model versions, aliases,
          deployments, promotion requests
approver  + approve or reject promotion requests, promote, roll back
admin     + users, tokens and grants; the audit log
========  ==================================================================================

A grant is global (project ``None``) or for one project; the role a principal holds in a
project is the higher of its global grant and that project's.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lineagehub.graph import Direction, GraphStore, Node
from lineagehub.graph.errors import PermissionDenied, ValidationError
from lineagehub.graph.model import to_iso
from lineagehub.vocabulary import REGISTRY_RUN_KINDS


class Role(enum.IntEnum):
    VIEWER = 1
    EDITOR = 2
    APPROVER = 3
    ADMIN = 4

    @classmethod
    def parse(cls, value: Role | str) -> Role:
        if isinstance(value, Role):
            return value
        if isinstance(value, str) and value.strip().upper() in cls.__members__:
            return cls[value.strip().upper()]
        known = ", ".join(r.name.lower() for r in cls)
        raise ValidationError(f"role must be one of {known}, got {value!r:.40}", field="role")


@dataclass(frozen=True)
class Principal:
    """The caller: ``name`` (recorded as the actor), ``grants`` (project, or ``None`` for
    every project, to role) and ``via``: ``"token"``, ``"oidc"``, or ``"open"`` for a hub
    that does not authenticate (a loopback server or an embedded client)."""

    name: str
    grants: Mapping[str | None, Role] = field(default_factory=dict)
    via: str = "open"

    def role(self, project: str | None = None) -> Role | None:
        """The role held in ``project`` (``None``: the global grant only)."""
        held = [
            r for p, r in self.grants.items() if p is None or (project is not None and p == project)
        ]
        return max(held) if held else None

    def can(self, needed: Role, project: str | None = None) -> bool:
        held = self.role(project)
        return held is not None and held >= needed

    def can_anywhere(self, needed: Role) -> bool:
        """Whether some grant (global or for any project) is at least ``needed``."""
        return any(r >= needed for r in self.grants.values())

    @property
    def sees_everything(self) -> bool:
        """A global viewer (or more): nothing needs to be withheld from it."""
        return self.can(Role.VIEWER, None)

    def require(self, needed: Role, project: str | None = None, *, action: str) -> None:
        """:class:`PermissionDenied` (code FORBIDDEN) unless the principal holds ``needed``."""
        if not self.can(needed, project):
            where = f" in project {project!r}" if project is not None else ""
            raise PermissionDenied(
                f"{self.name!r} may not {action}{where}: it needs the {needed.name.lower()} role"
            )


def open_principal(name: str) -> Principal:
    """The principal of a hub that does not authenticate: ``name`` with every right."""
    return Principal(name=name, grants={None: Role.ADMIN}, via="open")


# --- projects: which project a node belongs to ---------------------------------------------

#: How a node's project is found, by label: runs and experiments carry ``project``, a project
#: is its own; the others are reached over one edge (the first neighbour, in the store's stable
#: order), then found the same way. A node with no way to a project (shared data: datasets,
#: dataset versions nothing generated, commits, environments, agents) has project ``None``.
_HOPS: dict[str, tuple[Direction, str]] = {
    "ModelVersion": (Direction.UPSTREAM, "GENERATED_BY"),  # the run that trained it
    "Artifact": (Direction.UPSTREAM, "GENERATED_BY"),
    "DatasetVersion": (Direction.UPSTREAM, "GENERATED_BY"),  # an output of a run
    "Model": (Direction.DOWNSTREAM, "VERSION_OF"),  # its first version
    "Deployment": (Direction.UPSTREAM, "SERVES"),
    "MonitoringWindow": (Direction.UPSTREAM, "OBSERVED"),
    "Alert": (Direction.UPSTREAM, "ABOUT"),
}
_MAX_HOPS = 5  # Alert -> Deployment -> ModelVersion -> Run is the longest chain
#: A model card's revision (:mod:`lineagehub.services.cards`): a record of its own, in its
#: version's project, id ``card-revision:<version id>/<revision>``.
CARD_REVISION, CARD_REVISION_PREFIX = "CardRevision", "card-revision:"


def _hop(node: Node) -> tuple[Direction, str] | None:
    if node.label == "Run" and not node.props.get("project"):
        # the registry's own runs (a promotion, a deployment) carry no project: they belong
        # to the project of the model version they used
        if node.props.get("kind") in REGISTRY_RUN_KINDS:
            return (Direction.UPSTREAM, "USED")
        return None
    return _HOPS.get(node.label)


def _own_project(node: Node) -> str | None:
    if node.label == "Project":
        name = node.props.get("name")
    elif node.label in ("Run", "Experiment"):
        name = node.props.get("project")
    else:
        return None
    return name if isinstance(name, str) and name else None


def _recorded(adjacent: Any) -> tuple[str, str]:
    """When an edge was recorded, then its far end's id: the order of a node's owners."""
    at = adjacent.edge.ingested_at
    return (to_iso(at) if at is not None else "", adjacent.node.id)


def projects_of(store: GraphStore, nodes: Iterable[Node]) -> dict[str, str | None]:
    """The project of each node (``None``: it belongs to none), by id.

    Batched: one neighbours query per hop kind and level (at most a handful for any number
    of nodes), never one per node."""
    found: dict[str, str | None] = {}
    frontier: dict[str, Node] = {}
    waiting: dict[str, list[str]] = defaultdict(list)  # node reached -> the ids asking
    owned: dict[str, str] = {}  # a record outside the vocabulary -> the node it belongs to
    for node in nodes:
        if node.label == CARD_REVISION:  # a model card's revision: its version's
            owned[node.id] = node.id.removeprefix(CARD_REVISION_PREFIX).rpartition("/")[0]
            continue
        frontier[node.id] = node
        waiting[node.id].append(node.id)
    if owned:
        owners = {n.id: n for n in store.get_nodes(sorted(set(owned.values()))) if n is not None}
        for asking, owner in owned.items():
            if owner in owners:
                frontier[owner] = owners[owner]
                waiting[owner].append(asking)
            else:
                found[asking] = None
    for _ in range(_MAX_HOPS):
        if not frontier:
            break
        hops: dict[tuple[Direction, str], list[str]] = defaultdict(list)
        for node_id, node in frontier.items():
            hop = _hop(node)
            if hop is None:
                for asking in waiting[node_id]:
                    found[asking] = _own_project(node)
            else:
                hops[hop].append(node_id)
        next_frontier: dict[str, Node] = {}
        next_waiting: dict[str, list[str]] = defaultdict(list)
        for (direction, kind), ids in hops.items():
            adjacent = store.neighbors(ids, direction, [kind])
            for node_id in ids:
                reached = adjacent.get(node_id) or []
                if not reached:
                    for asking in waiting[node_id]:
                        found[asking] = None
                    continue
                # the first recorded (the store's own time: no caller chooses it, as a
                # caller may choose a run's id): a later writer naming the same bytes or
                # data does not take them into its project
                first = min(reached, key=_recorded).node
                next_frontier[first.id] = first
                next_waiting[first.id].extend(waiting[node_id])
        frontier, waiting = next_frontier, next_waiting
    for asking_ids in waiting.values():
        for asking in asking_ids:
            found.setdefault(asking, None)
    return found


#: Labels that keep a copy of their project in their own ``project`` property (a run's is
#: its own): written when the node is created (a dataset version: when a run first generates
#: it), so that a listing for a caller who may view some projects only asks the store for those (:func:`lineagehub.schema.authz.visible_filter`)
#: and neither its length, its ``withheld`` count nor its cursors answer a filter on other
#: projects' records. :func:`projects_of` stays the authority: a listing checks each row too.
RECORDED = ("Model", "ModelVersion", "Deployment", "Alert", "DatasetVersion")
_RECORD_PAGE = 500


def _project_patches(store: GraphStore, nodes: Iterable[Node]) -> list[Node]:
    """The ``project`` to write on each node of a :data:`RECORDED` label that has none."""
    todo = [n for n in nodes if n.label in RECORDED and "project" not in n.props]
    found = projects_of(store, todo) if todo else {}
    return [Node(n.id, n.label, {"project": p}) for n in todo if (p := found[n.id]) is not None]


def record_projects(store: GraphStore, nodes: Iterable[Node]) -> int:
    """Write the project of each node of a :data:`RECORDED` label that has none recorded
    (inside the caller's transaction, after the edges its project is found over); the
    number written. A node of no project is left without the property."""
    patch = _project_patches(store, nodes)
    if patch:
        store.upsert_nodes(patch)
    return len(patch)


#: Written once the nodes of older releases have their projects recorded: later starts skip
#: the look (it reads every dataset version of no project: shared data is most of them).
RECORDED_MARK = "hub:projects-recorded"


def record_missing_projects(store: GraphStore) -> int:
    """Record the project of every node written before projects were recorded (at a server's
    start, until it has been done once), each page of changes one transaction with an audit
    entry (``project.record``, by ``system``) covering the nodes it changed; the number
    written."""
    if store.get_nodes([RECORDED_MARK])[0] is not None:
        return 0
    written = 0
    for label in RECORDED:
        after: str | None = None
        while True:
            page = store.find_nodes(
                label, {"project": {"$exists": False}}, ["id"], after, _RECORD_PAGE
            )
            patch = _project_patches(store, page.items)
            if patch:
                with store.transaction():
                    store.upsert_nodes(patch)
                    store.append_audit(
                        "system",
                        "project.record",
                        f"label:{label}",
                        {"label": label, "count": len(patch)},
                    )
            written += len(patch)
            if page.next_cursor is None:
                break
            after = page.next_cursor
    store.upsert_nodes([Node(RECORDED_MARK, "HubState", {"projects_recorded": True})])
    return written


def may_view(principal: Principal, project: str | None) -> bool:
    """Whether ``principal`` may see a node of ``project``: the viewer role there, or, for a
    node of no project (shared data), the viewer role anywhere."""
    if project is None:
        return principal.can_anywhere(Role.VIEWER)
    return principal.can(Role.VIEWER, project)


def require_in(principal: Principal, needed: Role, project: str | None, *, action: str) -> None:
    """:meth:`Principal.require` for a node of ``project``. Reading a node of no project
    needs the role anywhere; changing it needs the role globally."""
    if project is None and needed is Role.VIEWER:
        if not principal.can_anywhere(needed):
            raise PermissionDenied(
                f"{principal.name!r} may not {action}: it needs the viewer role in some project"
            )
        return
    if project is None and not principal.can(needed, None):
        raise PermissionDenied(
            f"{principal.name!r} may not {action}: it belongs to no project, which needs the "
            f"{needed.name.lower()} role granted globally"
        )
    principal.require(needed, project, action=action)


__all__ = [
    "CARD_REVISION",
    "CARD_REVISION_PREFIX",
    "RECORDED",
    "RECORDED_MARK",
    "Principal",
    "Role",
    "may_view",
    "open_principal",
    "projects_of",
    "record_missing_projects",
    "record_projects",
    "require_in",
]
