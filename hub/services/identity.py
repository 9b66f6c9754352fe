"""Users and API tokens: who may call a hub server, and as whom.

Both are kept in the graph store (any backend) as nodes whose labels are outside the lineage
vocabulary, so no GraphQL query, listing, lineage walk or export can reach them
(:data:`IDENTITY_LABELS`; the lineage service and the schema's loaders treat them as absent):

===========  ===================  ==========================================================
label        id                   properties
===========  ===================  ==========================================================
HubUser      ``user:<name>``      name, grants (``[{project, role}]``; project null: global),
                                  disabled
ApiToken     ``token:<id>``       name, user, hash (sha256 of the secret), created_at,
                                  expires_at, revoked_at
ApiTokenUse  ``tokenuse:<id>``    token, last_used_at
===========  ===================  ==========================================================

A user is the lineage's Agent of the same name (``agent:<name>``): runs it launches and
changes it makes are recorded under that name.

A token's secret is ``lh_`` + 32 random bytes (URL-safe base64), shown once when created and
never stored: the store keeps its sha256. The public id is the first 16 hex digits of that
hash, so a secret finds its token with one read by id (the full hash is then compared in
constant time) and an id may be shown, logged and audited without giving anything away.
``last_used_at`` is written at most once a minute per token, so requests do not each write,
and on a record of its own (``ApiTokenUse``), which no audit entry covers: written on the
token's record, with no entry, it made ``audit verify`` report every token used since its last
change as a record changed outside the hub. Stores written before keep a ``last_used_at`` on
the token's record too; the later of the two counts.

Every change (users, grants, tokens) appends an audit entry in the same transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from lineagehub.graph import (
    ConflictError,
    GraphStore,
    HubError,
    Node,
    NotFoundError,
    ValidationError,
)
from lineagehub.graph.model import parse_time, to_iso
from lineagehub.services.access import Principal, Role

USER_LABEL = "HubUser"
TOKEN_LABEL = "ApiToken"
TOKEN_USE_LABEL = "ApiTokenUse"
#: Labels of identity records: never served by the API.
IDENTITY_LABELS = frozenset({USER_LABEL, TOKEN_LABEL, TOKEN_USE_LABEL})
TOKEN_PREFIX = "lh_"
#: ``last_used_at`` is refreshed at most this often per token.
LAST_USED_EVERY = timedelta(minutes=1)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}\Z")
_TOKEN_ID_RE = re.compile(r"^[0-9a-f]{16}\Z")
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class AuthenticationError(HubError):
    """Credentials missing, malformed, unknown, expired or revoked (code UNAUTHENTICATED).

    ``reason`` is a short word for the audit log (``unknown``, ``expired``, ``revoked``,
    ``disabled``, ``invalid``); ``token_id`` the public id of the token presented, when one
    was found. Neither carries a secret."""

    code = "UNAUTHENTICATED"

    def __init__(self, message: str, reason: str = "invalid", token_id: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.token_id = token_id


#: The longest lifetime a token may be given (longer: leave the expiry out, "never")
MAX_LIFETIME = timedelta(days=100 * 366)


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` as a timedelta (ValidationError otherwise)."""
    m = _DURATION_RE.match(text) if isinstance(text, str) else None
    if m is None or int(m[1]) <= 0:
        raise ValidationError(
            f"expected a duration such as 30d, 12h, 90m or 2w, got {text!r:.40}", field="expires"
        )
    try:
        duration = timedelta(**{_UNITS[m[2]]: int(m[1])})
    except OverflowError:
        duration = timedelta.max
    if duration > MAX_LIFETIME:
        raise ValidationError(
            f"a token lives at most {MAX_LIFETIME.days} days, not {text!r:.40} (leave --expires "
            "out for one that never expires)",
            field="expires",
        )
    return duration


def _project(project: Any) -> str | None:
    """A grant's project: ``None`` (global) or a name a project can have (not "", nor
    control characters a terminal would act on)."""
    if project is None:
        return None
    from lineagehub.vocabulary import Project

    try:
        return Project(name=project).name
    except ValidationError as e:
        raise ValidationError(f"project: {e.message}", field="project") from None


def check_name(name: Any) -> str:
    """A user name: letters, digits and ``._@+-``, up to 128 characters."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValidationError(
            f"invalid user name {name!r:.60}: letters, digits and ._@+- (up to 128), starting "
            "with a letter or digit",
            field="name",
        )
    return name


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class User:
    name: str
    grants: Mapping[str | None, Role] = field(default_factory=dict)
    disabled: bool = False
    created_at: datetime | None = None

    @property
    def agent(self) -> str:
        """The lineage Agent this user acts as."""
        return f"agent:{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "grants": [
                {"project": p, "role": r.name.lower()}
                for p, r in sorted(self.grants.items(), key=lambda i: (i[0] is not None, i[0]))
            ],
            "disabled": self.disabled,
            "created_at": to_iso(self.created_at) if self.created_at else None,
            "agent": self.agent,
        }

    @classmethod
    def from_node(cls, node: Node) -> User:
        grants = {g.get("project"): Role.parse(g["role"]) for g in node.props.get("grants", [])}
        return cls(
            name=node.props["name"],
            grants=grants,
            disabled=bool(node.props.get("disabled")),
            created_at=node.created_at,
        )

    def to_node(self) -> Node:
        return Node(
            id=f"user:{self.name}",
            label=USER_LABEL,
            props={"name": self.name, "disabled": self.disabled, **self.to_dict_grants()},
        )

    def to_dict_grants(self) -> dict[str, Any]:
        return {"grants": self.to_dict()["grants"]}


@dataclass(frozen=True)
class ApiToken:
    """A token's record (never its secret)."""

    id: str
    name: str
    user: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    def state(self, now: datetime | None = None) -> str:
        """``active``, ``expired`` or ``revoked``."""
        now = now or datetime.now(timezone.utc)
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return to_iso(t) if t is not None else None

        return {
            "id": self.id,
            "name": self.name,
            "user": self.user,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
            "last_used_at": iso(self.last_used_at),
            "state": self.state(),
        }

    @classmethod
    def from_node(cls, node: Node, use: Node | None = None) -> ApiToken:
        """The token of its record and, when given, its ``ApiTokenUse`` record."""
        p = node.props

        def t(key: str) -> datetime | None:
            return parse_time(p[key], key) if p.get(key) else None

        used = [x for x in (t("last_used_at"), _used_at(use)) if x is not None]
        created = t("created_at")
        assert created is not None  # always written
        return cls(
            id=node.id.removeprefix("token:"),
            name=p.get("name", ""),
            user=p["user"],
            created_at=created,
            expires_at=t("expires_at"),
            revoked_at=t("revoked_at"),
            last_used_at=max(used) if used else None,
        )


def _use_id(token_id: str) -> str:
    return f"tokenuse:{token_id}"


def _used_at(use: Node | None) -> datetime | None:
    if use is None or use.label != TOKEN_USE_LABEL or not use.props.get("last_used_at"):
        return None
    return parse_time(use.props["last_used_at"], "last_used_at")


@dataclass(frozen=True)
class NewToken:
    """A token just created: its record and, this once, its secret."""

    token: ApiToken
    secret: str = field(repr=False)


class IdentityService:
    """Users, grants and API tokens over a graph store; changes audited as ``actor``."""

    def __init__(self, store: GraphStore, *, actor: str = "unknown") -> None:
        self.store = store
        self.actor = actor
        # tokens whose last use is being written now: a token's other requests meanwhile do
        # not write it too (forty at once, while another program held the database's write
        # lock, each waited for it in a worker thread of its own)
        self._refreshing: set[str] = set()
        self._refreshing_lock = threading.Lock()

    # --- users -----------------------------------------------------------------------------

    def find_user(self, name: str) -> User | None:
        node = self.store.get_nodes([f"user:{name}"])[0]
        return User.from_node(node) if node is not None and node.label == USER_LABEL else None

    def get_user(self, name: str) -> User:
        user = self.find_user(name)
        if user is None:
            raise NotFoundError(f"no user {name!r:.130}", ids=[f"user:{name}"])
        return user

    def list_users(self) -> list[User]:
        return [User.from_node(n) for n in self.store.iter_nodes(USER_LABEL, order_by="id")]

    def add_user(
        self, name: str, role: Role | str | None = None, project: str | None = None
    ) -> User:
        """A new user (ConflictError if the name is taken), with one grant if ``role``."""
        check_name(name)
        project = _project(project)
        grants = {project: Role.parse(role)} if role is not None else {}
        if role is None and project is not None:
            raise ValidationError("give --role with --project", field="project")
        with self.store.transaction():
            if self.find_user(name) is not None:
                raise ConflictError(f"user {name!r} already exists")
            user = User(name=name, grants=grants)
            self._save(user, "user.add", {"grants": user.to_dict()["grants"]})
        return self.get_user(name)

    def grant(self, name: str, role: Role | str, project: str | None = None) -> User:
        """Give ``name`` ``role`` globally or in ``project`` (replacing that scope's grant)."""
        parsed = Role.parse(role)
        project = _project(project)
        with self.store.transaction():
            user = self.get_user(name)
            grants = {**user.grants, project: parsed}
            self._save(
                User(user.name, grants, user.disabled),
                "user.grant",
                {"project": project, "role": parsed.name.lower()},
            )
        return self.get_user(name)

    def revoke(self, name: str, project: str | None = None) -> User:
        """Take away ``name``'s global grant (or its grant in ``project``)."""
        with self.store.transaction():
            user = self.get_user(name)
            if project not in user.grants:
                where = f"in project {project!r}" if project is not None else "globally"
                raise NotFoundError(f"user {name!r} holds no role {where}", ids=[f"user:{name}"])
            grants = {p: r for p, r in user.grants.items() if p != project}
            self._save(User(user.name, grants, user.disabled), "user.revoke", {"project": project})
        return self.get_user(name)

    def disable(self, name: str) -> User:
        """The user can no longer authenticate (tokens and OIDC alike)."""
        with self.store.transaction():
            user = self.get_user(name)
            self._save(User(user.name, user.grants, True), "user.disable", {})
        return self.get_user(name)

    def _save(self, user: User, action: str, payload: Mapping[str, Any]) -> None:
        self.store.upsert_nodes([user.to_node()])
        self.store.append_audit(self.actor, action, f"user:{user.name}", dict(payload))

    def principal(self, name: str, via: str) -> Principal:
        """The principal ``name`` authenticates as: its grants (none for a user the hub does
        not know); :class:`AuthenticationError` for a disabled user, or a name no user can
        have."""
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise AuthenticationError(f"no user can be named {name!r:.40}", reason="invalid")
        user = self.find_user(name)
        if user is not None and user.disabled:
            raise AuthenticationError(f"user {name!r:.130} is disabled", reason="disabled")
        return Principal(name=name, grants=dict(user.grants) if user else {}, via=via)

    # --- tokens ----------------------------------------------------------------------------

    def create_token(
        self, user: str, name: str | None = None, expires_in: timedelta | None = None
    ) -> NewToken:
        """A new token for ``user`` (which must exist); the secret is in the result only."""
        if expires_in is not None and not timedelta(0) < expires_in <= MAX_LIFETIME:
            raise ValidationError(
                f"a token's lifetime must be positive and at most {MAX_LIFETIME.days} days",
                field="expires",
            )
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = token_hash(secret)
        token_id = digest[:16]
        now = datetime.now(timezone.utc)
        token = ApiToken(
            id=token_id,
            name=(name or "")[:200],
            user=user,
            created_at=now,
            expires_at=now + expires_in if expires_in is not None else None,
        )
        with self.store.transaction():
            self.get_user(user)
            self.store.upsert_nodes([self._token_node(token, digest)])
            self.store.append_audit(
                self.actor,
                "token.create",
                f"token:{token_id}",
                {"user": user, "name": token.name, "expires_at": token.to_dict()["expires_at"]},
            )
        return NewToken(token=token, secret=secret)

    def list_tokens(self, user: str | None = None) -> list[ApiToken]:
        uses = {n.id: n for n in self.store.iter_nodes(TOKEN_USE_LABEL)}
        tokens = [
            ApiToken.from_node(n, uses.get(_use_id(n.id.removeprefix("token:"))))
            for n in self.store.iter_nodes(TOKEN_LABEL)
        ]
        tokens = [t for t in tokens if user is None or t.user == user]
        return sorted(tokens, key=lambda t: (t.user, t.created_at, t.id))

    def get_token(self, token_id: str) -> ApiToken:
        node = self._token(token_id)
        return ApiToken.from_node(node, self.store.get_nodes([_use_id(token_id)])[0])

    def revoke_token(self, token_id: str) -> ApiToken:
        """Revoke a token by its public id (revoking twice is a ConflictError)."""
        with self.store.transaction():
            node = self._token(token_id)
            if node.props.get("revoked_at"):
                raise ConflictError(f"token {token_id} is already revoked")
            props = {**node.props, "revoked_at": to_iso(datetime.now(timezone.utc))}
            self.store.upsert_nodes([Node(node.id, TOKEN_LABEL, props)])
            self.store.append_audit(
                self.actor, "token.revoke", node.id, {"user": node.props.get("user")}
            )
        return self.get_token(token_id)

    def authenticate(self, secret: str, now: datetime | None = None) -> tuple[Principal, ApiToken]:
        """The principal a token secret stands for; :class:`AuthenticationError` when it is
        unknown, expired or revoked, or its user disabled or gone. Refreshes
        ``last_used_at`` (at most once a minute)."""
        now = now or datetime.now(timezone.utc)
        if not isinstance(secret, str) or not secret.startswith(TOKEN_PREFIX):
            raise AuthenticationError("not an API token", reason="malformed")
        digest = token_hash(secret)
        token_id = digest[:16]
        node, use = self.store.get_nodes([f"token:{token_id}", _use_id(token_id)])
        if (
            node is None
            or node.label != TOKEN_LABEL
            or not hmac.compare_digest(str(node.props.get("hash", "")), digest)
        ):
            raise AuthenticationError("unknown API token", reason="unknown")
        token = ApiToken.from_node(node, use)
        state = token.state(now)
        if state != "active":
            raise AuthenticationError(f"the API token is {state}", reason=state, token_id=token_id)
        user = self.find_user(token.user)
        if user is None or user.disabled:
            raise AuthenticationError(
                f"the API token's user {'is disabled' if user else 'no longer exists'}",
                reason="disabled" if user else "unknown",
                token_id=token_id,
            )
        principal = Principal(name=user.name, grants=dict(user.grants), via="token")
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_EVERY:
            with self._refreshing_lock:
                mine = token_id not in self._refreshing
                self._refreshing.add(token_id)
            if mine:
                try:
                    # its own record, not the token's (see the module's docstring)
                    used = {"token": token_id, "last_used_at": to_iso(now)}
                    self.store.upsert_nodes([Node(_use_id(token_id), TOKEN_USE_LABEL, used)])
                    token = replace(token, last_used_at=now)
                finally:
                    with self._refreshing_lock:
                        self._refreshing.discard(token_id)
        return principal, token

    def _token(self, token_id: str) -> Node:
        if not isinstance(token_id, str) or not _TOKEN_ID_RE.match(token_id):
            raise ValidationError(
                f"a token id is 16 hex digits (as `token list` shows), got {token_id!r:.40}",
                field="id",
            )
        node = self.store.get_nodes([f"token:{token_id}"])[0]
        if node is None or node.label != TOKEN_LABEL:
            raise NotFoundError(f"no token {token_id}", ids=[token_id])
        return node

    @staticmethod
    def _token_node(token: ApiToken, digest: str) -> Node:
        d = token.to_dict()
        props = {k: d[k] for k in ("name", "user", "created_at", "expires_at")}
        return Node(f"token:{token.id}", TOKEN_LABEL, {**props, "hash": digest})


__all__ = [
    "IDENTITY_LABELS",
    "TOKEN_LABEL",
    "USER_LABEL",
    "ApiToken",
    "AuthenticationError",
    "IdentityService",
    "NewToken",
    "User",
    "parse_duration",
]
