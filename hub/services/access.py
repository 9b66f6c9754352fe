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
from collections.abc import Mapping
from dataclasses import dataclass, field

from lineagehub.graph.errors import PermissionDenied, ValidationError


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


__all__ = ["Principal", "Role", "open_principal"]
