"""``lineagehub user ...`` and ``lineagehub token ...``: users, grants and API tokens.

They work on the configured store directly (run on the server host by an admin: the first
admin is made this way), never through a server; each change is in the audit log under
``LINEAGEHUB_USER`` (else the OS user). A token's secret is printed once, when created.
"""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from lineagehub.graph import GraphStore
from lineagehub.interfaces.cli.common import _emit, _print_json
from lineagehub.services.access import Role
from lineagehub.services.identity import IdentityService, User, parse_duration

ROLES = [r.name.lower() for r in Role]


def _identity(store: GraphStore) -> IdentityService:
    from lineagehub.config import Settings

    actor = Settings().user
    if not actor:
        try:
            actor = getpass.getuser()
        except Exception:  # no login name (some containers)
            actor = "unknown"
    return IdentityService(store, actor=actor or "unknown")


def _grants_text(user: User) -> str:
    parts = [
        f"{r.name.lower()}" + (f"@{p}" if p is not None else "")
        for p, r in sorted(user.grants.items(), key=lambda i: (i[0] is not None, i[0] or ""))
    ]
    return ", ".join(parts) or "(no role)"


def _user_line(user: User) -> str:
    state = "  DISABLED" if user.disabled else ""
    return f"{user.name}  {_grants_text(user)}{state}"


def cmd_user_add(args: argparse.Namespace, store: GraphStore) -> int:
    user = _identity(store).add_user(args.name, args.role, args.project)
    _emit(args, user.to_dict(), f"added user {_user_line(user)}")
    return 0


def cmd_user_list(args: argparse.Namespace, store: GraphStore) -> int:
    users = _identity(store).list_users()
    _emit(
        args,
        [u.to_dict() for u in users],
        "\n".join(_user_line(u) for u in users) or "no users",
    )
    return 0


def cmd_user_grant(args: argparse.Namespace, store: GraphStore) -> int:
    user = _identity(store).grant(args.name, args.role, args.project)
    _emit(args, user.to_dict(), f"granted: {_user_line(user)}")
    return 0


def cmd_user_revoke(args: argparse.Namespace, store: GraphStore) -> int:
    user = _identity(store).revoke(args.name, args.project)
    _emit(args, user.to_dict(), f"revoked: {_user_line(user)}")
    return 0


def cmd_user_disable(args: argparse.Namespace, store: GraphStore) -> int:
    user = _identity(store).disable(args.name)
    _emit(args, user.to_dict(), f"disabled: {_user_line(user)}")
    return 0


def cmd_token_create(args: argparse.Namespace, store: GraphStore) -> int:
    expires = parse_duration(args.expires) if args.expires is not None else None  # "" refused
    new = _identity(store).create_token(args.user, args.name, expires)
    info = new.token.to_dict()
    if args.json:
        _print_json({**info, "secret": new.secret})
    else:
        until = info["expires_at"] or "never"
        print(
            f"token {new.token.id} for {new.token.user} (expires {until})\n"
            f"{new.secret}\n"
            "This secret is shown once: store it now (LINEAGEHUB_TOKEN, or a 0600 file named "
            "by LINEAGEHUB_TOKEN_FILE)."
        )
    return 0


def cmd_token_list(args: argparse.Namespace, store: GraphStore) -> int:
    tokens = _identity(store).list_tokens(args.user)
    lines = []
    for t in tokens:
        d = t.to_dict()
        lines.append(
            f"{t.id}  {t.user}  {d['state']}  name={t.name or '-'}  created={d['created_at']}  "
            f"expires={d['expires_at'] or 'never'}  last_used={d['last_used_at'] or 'never'}"
        )
    _emit(args, [t.to_dict() for t in tokens], "\n".join(lines) or "no tokens")
    return 0


def cmd_token_revoke(args: argparse.Namespace, store: GraphStore) -> int:
    token = _identity(store).revoke_token(args.id)
    _emit(args, token.to_dict(), f"revoked token {token.id} of {token.user}")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``user`` and ``token`` command groups (``common``: --store and --json)."""
    p = sub.add_parser("user", help="users of a hub server and their roles (on the store)")
    users = p.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    a = users.add_parser("add", parents=[common], help="add a user, with a role if given")
    a.add_argument("name", metavar="NAME")
    a.add_argument("--role", choices=ROLES, help="grant this role (globally, or --project)")
    a.add_argument("--project", metavar="P", help="with --role: in this project only")
    a.set_defaults(func=cmd_user_add, creates_store=True)  # the first admin of a new hub
    a = users.add_parser("list", parents=[common], help="users, their roles and state")
    a.set_defaults(func=cmd_user_list)
    a = users.add_parser("grant", parents=[common], help="give a user a role")
    a.add_argument("name", metavar="NAME")
    a.add_argument("role", metavar="ROLE", choices=ROLES)
    a.add_argument("--project", metavar="P", help="in this project only (default: globally)")
    a.set_defaults(func=cmd_user_grant)
    a = users.add_parser("revoke", parents=[common], help="take a user's role away")
    a.add_argument("name", metavar="NAME")
    a.add_argument("--project", metavar="P", help="the grant in this project (default: global)")
    a.set_defaults(func=cmd_user_revoke)
    a = users.add_parser("disable", parents=[common], help="a user that can no longer log in")
    a.add_argument("name", metavar="NAME")
    a.set_defaults(func=cmd_user_disable)

    p = sub.add_parser("token", help="API tokens (on the store)")
    tokens = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    a = tokens.add_parser("create", parents=[common], help="a new token; its secret shown once")
    a.add_argument("--user", required=True, metavar="U", help="the user it acts as")
    a.add_argument("--name", metavar="N", help="what it is for (e.g. ci)")
    a.add_argument("--expires", metavar="DURATION", help="lifetime: 30d, 12h, 2w (default never)")
    a.set_defaults(func=cmd_token_create)
    a = tokens.add_parser("list", parents=[common], help="tokens (never their secrets)")
    a.add_argument("--user", metavar="U", help="of this user only")
    a.set_defaults(func=cmd_token_list)
    a = tokens.add_parser("revoke", parents=[common], help="revoke a token by its id")
    a.add_argument("id", metavar="ID", help="the token's id, as `token list` shows it")
    a.set_defaults(func=cmd_token_revoke)
