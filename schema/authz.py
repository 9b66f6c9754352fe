"""Who may call what: the role every root field needs, and where its project is found.

:data:`RULES` maps every ``Query`` and ``Mutation`` field to a :class:`Rule`: the role it
needs and how the project that role is checked in is found from its arguments. A test
generates the field list from the schema and fails for a field without a rule, so a new
operation cannot ship unguarded; at run time a field without a rule needs the global admin
role (which passes every rule anyway).

How a project is found (:func:`lineagehub.services.access.projects_of`): runs and
experiments carry ``project``; model versions, artifacts and output dataset versions belong
to the project of the run that generated them; a model to the project of its first
version; a deployment to that of the version it serves; alerts and monitoring windows to
that of what they observe. Nodes of no project (shared data, commits, environments, agents)
are readable with the viewer role anywhere; changing something of no project (a run started
without a project) needs the role globally.

:class:`Authorization` (a schema extension) checks each root field before its resolver runs.
A mutation's root fields are all checked before the first one runs, so a refused field
leaves nothing of the operation half-written. An open hub's principal is a global admin and
skips every check (no look-ups).

Results that mix projects are filtered field by field: listings, lineage, impact and paths
omit the nodes the caller may not view (and say how many with ``withheld``), edges touching
a withheld node are omitted too, and relationship fields (a run's inputs, a version's run)
skip such neighbours (:meth:`lineagehub.schema.context.Context.neighbours`).
"""

from __future__ import annotations

import base64
import hmac
import inspect
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, OperationType
from graphql.execution.values import VariableValues, get_argument_values
from strawberry.extensions import SchemaExtension

from lineagehub.artifacts import absent_artifact
from lineagehub.graph import Edge, HubError, Node, NotFoundError, Subgraph
from lineagehub.graph.errors import PermissionDenied, ValidationError
from lineagehub.graph.model import TraversedNode
from lineagehub.services.access import (
    RECORDED,
    Principal,
    Role,
    may_view,
    projects_of,
    require_in,
)

if TYPE_CHECKING:
    from lineagehub.schema.context import Context, Services


class _Anywhere:
    """A scope meaning: the role held in some project (the result is filtered)."""

    def __repr__(self) -> str:
        return "ANYWHERE"


ANYWHERE = _Anywhere()
Scope = str | None | _Anywhere
#: (services, the field's arguments by their GraphQL names) -> the scopes the role is needed in
Where = Callable[["Services", dict[str, Any]], list[Scope]]


@dataclass(frozen=True)
class Rule:
    """``role`` is needed in every scope ``where`` finds; ``needs`` may raise it (a
    promotion request that promotes at once needs what a promotion needs)."""

    role: Role
    where: Where
    action: str
    needs: Callable[[Services, dict[str, Any]], Role] | None = None
    #: Records the operation reads besides (a dataset version's sources): viewer needed there.
    reads: Where | None = None
    #: Bytes the operation names by digest: the caller must be able to read them (a holder
    #: it may view, or no holder yet), as a download would need, before it holds them too.
    digest: str | None = None


# --- where a field's project is found --------------------------------------------------------


def anywhere(services: Services, args: dict[str, Any]) -> list[Scope]:
    """The role in some project: results are filtered to what the caller may view."""
    return [ANYWHERE]


def globally(services: Services, args: dict[str, Any]) -> list[Scope]:
    """The role globally (for every project)."""
    return [None]


def _arg(args: dict[str, Any], path: str) -> Any:
    value: Any = args
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _values(args: dict[str, Any], paths: Sequence[str]) -> list[str]:
    out: list[str] = []
    for path in paths:
        value = _arg(args, path)
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out += [v for v in value if isinstance(v, str)]
    return out


def _scopes(services: Services, ids: Iterable[str | None]) -> list[Scope]:
    """The projects of the nodes ``ids`` (one batched look-up); ANYWHERE for an id that names
    nothing, so the resolver answers NOT_FOUND (or null) as it would for anyone."""
    given = list(ids)
    wanted = [i for i in given if i is not None]
    scopes: list[Scope] = [ANYWHERE] if len(wanted) < len(given) else []
    nodes = services.store.get_nodes(list(dict.fromkeys(wanted))) if wanted else []
    present = [n for n in nodes if n is not None]
    if len(present) < len(nodes):
        scopes.append(ANYWHERE)
    scopes += list(dict.fromkeys(projects_of(services.store, present).values()))
    return scopes


def refs(*paths: str) -> Where:
    """The projects of the nodes named by these arguments (ids or references)."""

    def where(services: Services, args: dict[str, Any]) -> list[Scope]:
        ids: list[str | None] = []
        for ref in _values(args, paths):
            try:
                ids.append(services.lineage.resolve(ref))
            except (NotFoundError, HubError):
                ids.append(None)
        return _scopes(services, ids) if ids else [ANYWHERE]

    return where


def refs_at(path: str, time: str) -> Where:
    """:func:`refs`, the references resolved as the field resolves them: at the time the
    argument ``time`` gives when it gives one (a lineage as of March starts from March's
    ``churn@champion``, which may be a version of another project than today's)."""
    now = refs(path)

    def where(services: Services, args: dict[str, Any]) -> list[Scope]:
        when = _arg(args, time)
        if when is None:
            return now(services, args)
        ids: list[str | None] = []
        for ref in _values(args, (path,)):
            try:
                ids += services.lineage.resolve_at([ref], when)
            except HubError:
                ids.append(None)
        return _scopes(services, ids) if ids else [ANYWHERE]

    return where


def versions(*paths: str) -> Where:
    """The projects of the models of the versions named (``churn@3``,
    ``model:churn@production``): the registry works per model, so a version's promotion,
    aliases and deployments are governed in its model's project."""

    def where(services: Services, args: dict[str, Any]) -> list[Scope]:
        ids: list[str | None] = []
        for ref in _values(args, paths):
            ids.append(_version_id(services, ref))
        return _scopes(services, ids) if ids else [ANYWHERE]

    return where


def _version_id(services: Services, ref: str) -> str | None:
    if services.registry is None:
        return None
    try:
        return str(services.registry.resolve(ref).model_id)
    except HubError:
        return None


def models(*paths: str) -> Where:
    """The projects of the registered models named (a model's project: its first version's)."""

    def where(services: Services, args: dict[str, Any]) -> list[Scope]:
        return _scopes(services, [f"model:{m}" for m in _values(args, paths)])

    return where


def model_or_anywhere(path: str) -> Where:
    """The project of the model named, or (none named) some project: the result is then
    filtered to what the caller may view."""
    named = models(path)

    def where(services: Services, args: dict[str, Any]) -> list[Scope]:
        return named(services, args) if _arg(args, path) is not None else [ANYWHERE]

    return where


def existing_models(*paths: str) -> Where:
    """As :func:`models`, but a model not registered yet adds no scope."""

    def where(services: Services, args: dict[str, Any]) -> list[Scope]:
        ids = [f"model:{m}" for m in _values(args, paths)]
        nodes = [n for n in services.store.get_nodes(ids) if n is not None] if ids else []
        return list(dict.fromkeys(projects_of(services.store, nodes).values()))

    return where


def requests(path: str) -> Where:
    """The project of the model a promotion request is about."""

    def where(services: Services, args: dict[str, Any]) -> list[Scope]:
        request = _arg(args, path)
        node = services.store.get_nodes([str(request)])[0] if request is not None else None
        params = node.props.get("params") or {} if node is not None else {}
        model, version = params.get("model"), params.get("version")
        if node is None or node.label != "Run" or model is None or version is None:
            return [ANYWHERE]  # the resolver says NOT_FOUND
        return _scopes(services, [f"model:{model}"])

    return where


def project_arg(path: str) -> Where:
    """The project an argument names (none: the role is needed globally)."""

    def where(services: Services, args: dict[str, Any]) -> list[Scope]:
        value = _arg(args, path)
        return [value if isinstance(value, str) and value else None]

    return where


def run_or_globally(path: str) -> Where:
    """The project of the run named; none named, globally (what no run generated belongs
    to no project)."""
    named = refs(path)

    def where(services: Services, args: dict[str, Any]) -> list[Scope]:
        return named(services, args) if _arg(args, path) is not None else [None]

    return where


def all_of(*wheres: Where) -> Where:
    def where(services: Services, args: dict[str, Any]) -> list[Scope]:
        return [s for w in wheres for s in w(services, args)]

    return where


def _promotes_at_once(services: Services, args: dict[str, Any]) -> Role:
    """A request whose policy needs no approvals promotes at once: that needs an approver."""
    registry = services.registry
    if registry is None or not isinstance(args.get("ref"), str):
        return Role.EDITOR
    try:
        version = registry.resolve(args["ref"])
        policy = registry.policy_for(version.model, str(args.get("to")))
    except HubError:
        return Role.EDITOR  # the resolver refuses it with the service's error
    return Role.APPROVER if policy.approvals == 0 else Role.EDITOR


V, E, A, ADMIN = Role.VIEWER, Role.EDITOR, Role.APPROVER, Role.ADMIN


def deployments(*paths: str) -> Where:
    """The projects of the deployments named (an id, a name or name@environment)."""

    def where(services: Services, args: dict[str, Any]) -> list[Scope]:
        ids: list[str | None] = []
        for ref in _values(args, paths):
            try:
                ids.append(services.monitor.deployment(ref).id)
            except HubError:
                ids.append(None)
        return _scopes(services, ids) if ids else [ANYWHERE]

    return where


#: Every root field: the role it needs and where. Listings and graph results need the
#: viewer role anywhere and are filtered; look-ups of named nodes need it in their project.
RULES: dict[str, Rule] = {
    # --- reads
    "Query.node": Rule(V, refs("ref"), "read this node"),
    "Query.nodes": Rule(V, refs("ids"), "read these nodes"),
    "Query.run": Rule(V, refs("id"), "read this run"),
    "Query.runs": Rule(V, anywhere, "list runs"),
    "Query.datasets": Rule(V, anywhere, "list datasets"),
    "Query.datasetVersions": Rule(V, anywhere, "list dataset versions"),
    "Query.models": Rule(V, anywhere, "list models"),
    "Query.modelVersions": Rule(V, anywhere, "list model versions"),
    "Query.deployments": Rule(V, anywhere, "list deployments"),
    "Query.alerts": Rule(V, anywhere, "list alerts"),
    "Query.lineage": Rule(
        V, refs_at("input.roots", "input.asOf"), "read the lineage of these roots"
    ),
    "Query.impact": Rule(V, refs_at("ref", "asOf"), "read the impact of this node"),
    "Query.path": Rule(
        V,
        all_of(refs_at("from", "asOf"), refs_at("to", "asOf")),
        "read paths between these nodes",
    ),
    "Query.columnLineage": Rule(V, refs("dataset"), "read the column lineage of this dataset"),
    "Query.compareRuns": Rule(V, refs("ids"), "compare these runs"),
    "Query.compareModelVersions": Rule(V, refs("a", "b"), "compare these model versions"),
    "Query.modelHistory": Rule(V, models("model"), "read this model's history"),
    "Query.holderAt": Rule(V, models("model"), "read this model's history"),
    "Query.pendingPromotions": Rule(V, model_or_anywhere("model"), "list pending promotions"),
    # --- the audit log and the hub's own configuration: admins
    "Query.auditTrail": Rule(ADMIN, globally, "read the audit log"),
    "Query.verifyAuditLog": Rule(ADMIN, globally, "verify the audit log"),
    "Query.webhookDeliveries": Rule(ADMIN, globally, "read webhook deliveries"),
    # --- tracking: editors of the run's project
    "Mutation.startRun": Rule(
        E, all_of(project_arg("input.project"), refs("input.parent")), "start a run"
    ),
    "Mutation.logBatch": Rule(E, refs("runId"), "log to this run"),
    "Mutation.endRun": Rule(E, refs("runId"), "end this run"),
    "Mutation.logDataset": Rule(
        E, refs("runId"), "log a dataset to this run", reads=refs("input.derivedFrom")
    ),
    "Mutation.logArtifact": Rule(E, refs("runId"), "log an artifact to this run", digest="digest"),
    "Mutation.logInputModel": Rule(
        E, refs("runId"), "log a model version this run used", reads=refs("ref")
    ),
    "Mutation.logModel": Rule(
        E,
        all_of(refs("runId"), existing_models("name")),
        "register a model version",
        digest="digest",
    ),
    "Mutation.registerModelVersion": Rule(
        E,
        all_of(run_or_globally("runId"), existing_models("name")),
        "register a model version",
        digest="digest",
    ),
    "Mutation.markStaleRuns": Rule(E, globally, "mark every project's stale runs"),
    # each operation is checked by its own mutation's rule when it runs (schema/batch.py)
    "Mutation.writeBatch": Rule(E, anywhere, "write a batch"),
    # --- the registry
    "Mutation.requestPromotion": Rule(
        E, versions("ref"), "request a promotion of this version", needs=_promotes_at_once
    ),
    "Mutation.approvePromotion": Rule(A, requests("requestId"), "approve this promotion"),
    "Mutation.rejectPromotion": Rule(A, requests("requestId"), "reject this promotion"),
    "Mutation.promoteModelVersion": Rule(A, versions("ref"), "promote this version"),
    "Mutation.setAlias": Rule(E, versions("ref"), "set an alias on this version"),
    "Mutation.removeAlias": Rule(E, models("model"), "remove an alias of this model"),
    "Mutation.rollback": Rule(A, models("model"), "roll back this model"),
    "Mutation.recordDeployment": Rule(E, versions("ref"), "deploy this version"),
    "Mutation.retireDeployment": Rule(E, refs("id"), "retire this deployment"),
    # --- model cards, compliance reports, the inventory
    "Query.modelCard": Rule(V, versions("ref"), "read this version's model card"),
    "Query.complianceReport": Rule(V, versions("ref"), "read this version's compliance report"),
    "Query.modelInventory": Rule(V, anywhere, "read the inventory of production models"),
    "Mutation.setModelCard": Rule(E, versions("ref"), "set this version's model card"),
    # --- monitoring: serving processes report into their deployment's project
    "Query.monitoringReference": Rule(
        V, deployments("deployment"), "read this deployment's monitoring reference"
    ),
    "Mutation.reportMonitoringWindow": Rule(
        E, deployments("input.deployment"), "report a monitoring window of this deployment"
    ),
    "Query.alertRules": Rule(V, anywhere, "list alert rules"),
    "Mutation.acknowledgeAlert": Rule(E, refs("id"), "acknowledge this alert"),
    "Mutation.silenceAlert": Rule(E, refs("id"), "silence this alert"),
    "Mutation.setAlertRule": Rule(ADMIN, globally, "set an alert rule"),
    "Mutation.deleteAlertRule": Rule(ADMIN, globally, "delete an alert rule"),
}


def check(services: Services, principal: Principal, key: str, args: dict[str, Any]) -> None:
    """:class:`PermissionDenied` unless ``principal`` may call the root field ``key``
    (``"Query.runs"``) with these arguments. Synchronous: it reads the store."""
    if principal.can(Role.ADMIN, None):
        return
    rule = RULES.get(key)
    if rule is None:  # fail closed: only a global admin may use a field without a rule
        principal.require(Role.ADMIN, None, action=f"use {key.split('.')[-1]}")
        return
    needed = rule.needs(services, args) if rule.needs is not None else rule.role
    for scope in dict.fromkeys(rule.where(services, args)):
        if isinstance(scope, _Anywhere):
            if not principal.can_anywhere(needed):
                raise PermissionDenied(
                    f"{principal.name!r} may not {rule.action}: it needs the "
                    f"{needed.name.lower()} role"
                )
        else:
            require_in(principal, needed, scope, action=rule.action)
    for scope in dict.fromkeys(rule.reads(services, args) if rule.reads is not None else ()):
        if not isinstance(scope, _Anywhere):
            require_in(principal, Role.VIEWER, scope, action=f"{rule.action}: read its sources")
    digest = _arg(args, rule.digest) if rule.digest is not None else None
    if isinstance(digest, str) and digest:
        # before the write: the holders are the bytes' owners so far, not the caller's own;
        # the caller who uploaded them holds them (its upload's receipt says so)
        receipt = _arg(args, "receipt")
        if not (isinstance(receipt, str) and _receipt_ok(services, principal, digest, receipt)):
            check_download(services, principal, digest, action=f"{rule.action} from these bytes")


# --- the extension ------------------------------------------------------------------------


def _root_fields(info: Any) -> list[FieldNode]:
    """The operation's root fields (through fragments; @skip/@include not honoured, so a
    skipped field is checked too: never fewer checks than fields run)."""
    out: list[FieldNode] = []

    def walk(selections: Iterable[Any]) -> None:
        for s in selections:
            if isinstance(s, FieldNode):
                out.append(s)
            elif isinstance(s, InlineFragmentNode):
                walk(s.selection_set.selections)
            elif isinstance(s, FragmentSpreadNode):
                fragment = info.fragments.get(s.name.value)
                if fragment is not None:
                    walk(fragment.selection_set.selections)

    walk(info.operation.selection_set.selections)
    return out


def _arguments(info: Any, node: FieldNode) -> tuple[str, dict[str, Any]] | None:
    name = node.name.value
    if name.startswith("__"):
        return None  # introspection: the schema is public
    field_def = info.parent_type.fields.get(name)
    if field_def is None:
        return None
    variables = info.variable_values
    if isinstance(variables, dict):  # graphql-core 3.3 wants its VariableValues
        variables = VariableValues(sources={}, coerced=variables)
    return f"{info.parent_type.name}.{name}", get_argument_values(field_def, node, variables)


class Authorization(SchemaExtension):
    """Checks every root field against :data:`RULES` before it runs."""

    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        if info.path.prev is not None or info.field_name.startswith("__"):
            return _next(root, info, *args, **kwargs)
        principal = getattr(info.context, "principal", None)
        if principal is None or principal.can(Role.ADMIN, None):
            return _next(root, info, *args, **kwargs)
        return self._checked(_next, root, info, *args, **kwargs)

    async def _checked(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        ctx: Context = info.context
        state = ctx.authz
        if info.operation.operation is OperationType.MUTATION:
            # every root field of the mutation checked before the first one writes
            if "refused" in state:
                raise PermissionDenied(str(state["refused"]))
            if "checked" not in state:
                state["checked"] = True
                wanted = [a for f in _root_fields(info) if (a := _arguments(info, f)) is not None]
                try:
                    await ctx.call(_check_all, ctx.services, ctx.principal, wanted)
                except PermissionDenied as e:
                    state["refused"] = e
                    raise
        else:
            wanted = [a for a in [_arguments(info, info.field_nodes[0])] if a is not None]
            await ctx.call(_check_all, ctx.services, ctx.principal, wanted)
        result = _next(root, info, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result


def _check_all(
    services: Services, principal: Principal, wanted: list[tuple[str, dict[str, Any]]]
) -> None:
    for key, args in wanted:
        check(services, principal, key, args)


# --- the REST routes ---------------------------------------------------------------------


def check_upload(principal: Principal) -> None:
    """Uploading bytes needs the editor role somewhere: they belong to no project until a
    run logs them (and logging checks the run's project)."""
    if not principal.can_anywhere(Role.EDITOR):
        raise PermissionDenied(
            f"{principal.name!r} may not upload artifacts: it needs the editor role"
        )


def upload_receipt(services: Services, principal: Principal, digest: str) -> str:
    """What ``PUT /artifacts`` answers the uploader: an HMAC (the store's ``upload`` secret,
    the same for every worker) of who uploaded which bytes. Naming the digest in a write with
    it shows the caller holds the bytes, whoever else does."""
    key = services.store.secret("upload")
    return hmac.new(key, f"{principal.name}\n{digest}".encode(), "sha256").hexdigest()


def _receipt_ok(services: Services, principal: Principal, digest: str, receipt: str) -> bool:
    return hmac.compare_digest(upload_receipt(services, principal, digest), receipt)


def check_download(
    services: Services, principal: Principal, digest: str, action: str = "download this artifact"
) -> None:
    """Downloading bytes needs the viewer role in the project of a node holding them (an
    artifact, a model version); bytes no such node holds (a diff, a package list) need it
    anywhere. Naming them in a write (logging or registering them) needs the same. Bytes
    only other projects hold are answered as bytes the hub does not have (``absent_artifact``)."""
    if principal.sees_everything:
        return
    # first, whatever the bytes: a caller who may read nothing anywhere learns nothing below
    require_in(principal, Role.VIEWER, None, action=action)
    holders = [n for n in services.store.get_nodes([f"artifact:{digest}"]) if n is not None]
    holders += services.store.find_nodes(
        "ModelVersion", {"artifact_digest": digest}, limit=100
    ).items
    if holders and not viewable(services, principal, holders):
        # answered as bytes the hub does not have: neither the project holding them nor
        # that they are here at all is the caller's to learn (a refusal would confirm that
        # someone holds a file whose digest the caller computed)
        raise absent_artifact(digest)


def may_download(services: Services, principal: Principal, digest: str) -> bool:
    """Whether :func:`check_download` lets ``principal`` read these bytes."""
    try:
        check_download(services, principal, digest)
    except (NotFoundError, PermissionDenied):
        return False
    return True


# --- withholding what the caller may not view ------------------------------------------------


def viewable(
    services: Services, principal: Principal | None, nodes: Iterable[Node]
) -> set[str] | None:
    """The ids among ``nodes`` the principal may view; ``None`` when it may view everything
    (a global viewer, or no principal: no look-up at all). One batched project look-up."""
    if principal is None or principal.sees_everything:
        return None
    projects = projects_of(services.store, nodes)
    return {i for i, p in projects.items() if may_view(principal, p)}


#: Listed labels whose project is a property of their own (a run's, and the copy
#: :data:`~lineagehub.services.access.RECORDED` labels keep): a listing of them by a caller
#: who may not view every project asks the store for those it may view only, so that neither
#: its ``withheld`` count nor its cursors depend on the other projects' records (a count of
#: matches would answer a filter on fields it may not see).
_OWN_PROJECT = {"Run": "project", **{label: "project" for label in RECORDED}}
_MAX_PROJECTS = 1000  # the filter language's MAX_IN: more grants than that are checked after


def visible_filter(
    principal: Principal | None, label: str, where: dict[str, Any] | None
) -> dict[str, Any] | None:
    """``where``, narrowed for ``principal`` to the projects it may view when ``label``
    carries its project itself; unchanged otherwise (the rows are checked after)."""
    key = _OWN_PROJECT.get(label)
    if key is None or principal is None or principal.sees_everything:
        return where
    projects = sorted(p for p in principal.grants if p is not None)
    if len(projects) > _MAX_PROJECTS:
        return where
    mine: dict[str, Any] = {key: {"$in": projects}}
    if principal.can_anywhere(Role.VIEWER):
        # records of no project are shared data (still checked one by one after: the
        # registry's own runs are found their project by their version, and a node written
        # before projects were recorded has none until a server's start records it)
        mine = {"$or": [mine, {key: None}]}
    return mine if where is None else {"$and": [where, mine]}


SEALED = "sealed:"
_FERNETS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _fernet(services: Services) -> Any:
    from cryptography.fernet import Fernet

    made = _FERNETS.get(services.store)
    if made is None:
        made = _FERNETS[services.store] = Fernet(
            base64.urlsafe_b64encode(services.store.secret("cursor"))
        )
    return made


def seal_cursor(services: Services, cursor: str) -> str:
    """``cursor`` encrypted under the store's cursor key: the end cursor of a page whose last
    row was withheld would otherwise carry that row's sort values and id. Every worker of a
    hub shares the key (it is kept in the store), so any of them takes the cursor back."""
    return SEALED + _fernet(services).encrypt(cursor.encode("utf-8")).decode("ascii")


def open_cursor(services: Services, after: str) -> str:
    """The keyset cursor in ``after`` (sealed by :func:`seal_cursor`, or plain)."""
    if not after.startswith(SEALED):
        return after
    from cryptography.fernet import InvalidToken

    try:
        return _fernet(services).decrypt(after[len(SEALED) :].encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError, ValueError):
        raise ValidationError(
            "after: not a cursor this hub gave (a listing's endCursor or an edge's cursor)",
            field="after",
        ) from None


def withhold_subgraph(
    services: Services, principal: Principal | None, sub: Subgraph
) -> tuple[Subgraph, int]:
    """``sub`` without the nodes the principal may not view and the edges touching them,
    with how many nodes were withheld."""
    ok = viewable(services, principal, (t.node for t in sub.nodes.values()))
    if ok is None:
        return sub, 0
    kept = Subgraph(
        nodes={k: _reached_visibly(t, sub, ok) for k, t in sub.nodes.items() if k in ok},
        edges=[e for e in sub.edges if _edge_ok(e, ok)],
        truncated=sub.truncated,
        truncation_reason=sub.truncation_reason,
    )
    return kept, len(sub.nodes) - len(kept.nodes)


def _reached_visibly(traced: TraversedNode, sub: Subgraph, ok: set[str]) -> TraversedNode:
    """``traced``, reached from the nearest node on its way that is not withheld: the id of
    a withheld node is withheld too."""
    origin = traced.reached_from
    seen: set[str] = set()
    while origin is not None and origin not in ok and origin not in seen:
        seen.add(origin)
        before = sub.nodes.get(origin)
        origin = before.reached_from if before is not None else None
    if origin is not None and origin not in ok:
        origin = None
    if origin == traced.reached_from:
        return traced
    return TraversedNode(traced.node, traced.distance, origin, traced.direction)


def _edge_ok(edge: Edge, ok: set[str]) -> bool:
    return edge.source in ok and edge.target in ok


__all__ = [
    "ANYWHERE",
    "RULES",
    "Authorization",
    "Rule",
    "check",
    "check_download",
    "check_upload",
    "may_download",
    "viewable",
    "withhold_subgraph",
]
