"""The ``lineagehub`` command.

Commands that read or write the hub work on an embedded store (``--store URI``, default the
configured one) or on a hub server (``--url URL``, default ``LINEAGEHUB_URL``) through the SDK's
:class:`~lineagehub.ingest.client.Client`, so both answer the same. Human output is rich tables
(no colour when not a terminal or with ``NO_COLOR``; never cut ids short when piped);
``--json`` prints machine-readable JSON on stdout instead.

Exit codes scripts can rely on: 0 success, 1 unexpected error, 2 bad usage or invalid input,
3 not found, 4 configuration error, 5 store or server unavailable or failing, 6 conflict,
7 tampering found (``audit verify``, ``audit verify-export``: the audit log or an export of
it fails verification; for ``audit verify`` also a record changed outside the hub),
8 refused by a promotion policy (``promote``, ``approve``); ``audit verify`` also: 9 entries
cut off the end of the log, 10 entries changed and the chain recomputed, 11 a tree head not
signed with the key (forged or replaced).
Errors are one line on stderr (``--json``: a JSON object with ``code`` and ``message``).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from lineagehub import __version__, open_store
from lineagehub.graph import HubError
from lineagehub.interfaces.cli.access import register as register_access
from lineagehub.interfaces.cli.admin import (
    cmd_audit_export,
    cmd_audit_head,
    cmd_audit_verify,
    cmd_audit_verify_export,
    cmd_doctor,
    cmd_example,
    cmd_serve,
)
from lineagehub.interfaces.cli.alerts import register as register_alerts
from lineagehub.interfaces.cli.common import EXIT_CODES, existing_store, hub_client
from lineagehub.interfaces.cli.demo import cmd_demo
from lineagehub.interfaces.cli.dossier import register as register_dossier
from lineagehub.interfaces.cli.dossier import register_audit_prove, register_cards
from lineagehub.interfaces.cli.imports import register as register_imports
from lineagehub.interfaces.cli.lineage import _lineage_options, cmd_export, cmd_lineage
from lineagehub.interfaces.cli.models import cmd_download, cmd_models_list, cmd_models_show
from lineagehub.interfaces.cli.monitor import register as register_monitor
from lineagehub.interfaces.cli.registry import (
    cmd_approvals_list,
    cmd_approve,
    cmd_deploy,
    cmd_promote,
    cmd_reject,
    cmd_retire,
    cmd_rollback,
)
from lineagehub.interfaces.cli.runs import cmd_compare, cmd_runs_list, cmd_runs_show


class _Parser(argparse.ArgumentParser):
    """argparse's parser (subcommands' too: they are made of the parent's class) whose usage
    errors, asked for ``--json``, are the one JSON error every other error is."""

    wants_json = False

    def error(self, message: str) -> NoReturn:
        if _Parser.wants_json:
            error = {"code": "USAGE", "message": f"{self.prog}: {message}", "retryable": False}
            print(json.dumps({"error": error}), file=sys.stderr)
            sys.exit(2)
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    json_opt = _Parser(add_help=False)
    json_opt.add_argument("--json", action="store_true", help="machine-readable output")
    common = _Parser(add_help=False, parents=[json_opt])
    common.add_argument(
        "--store", metavar="URI", help="graph store URI (default: LINEAGEHUB_STORE or embedded)"
    )
    # Commands that go through the SDK: an embedded store or a hub server.
    hub = _Parser(add_help=False, parents=[json_opt])
    where = hub.add_mutually_exclusive_group()
    where.add_argument(
        "--store", metavar="URI", help="graph store URI (default: LINEAGEHUB_STORE or embedded)"
    )
    where.add_argument(
        "--url",
        metavar="URL",
        help="a hub server, http(s)://host:port (default: LINEAGEHUB_URL when --store is absent)",
    )

    parser = _Parser(
        prog="lineagehub", description="LineageHub: model-management metadata as lineage."
    )
    parser.add_argument("--version", action="version", version=f"lineagehub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("doctor", parents=[common], help="check the store and show what it holds")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser(
        "example", parents=[common], help="write a small example lineage graph and trace it"
    )
    p.set_defaults(func=cmd_example, creates_store=True)

    p = sub.add_parser(
        "demo",
        help="train three scikit-learn models on bundled data, promote one through approval, "
        "deploy it, draw its lineage",
    )
    p.add_argument("--store", metavar="URI", help="graph store URI (default: configured)")
    p.add_argument("--artifacts", metavar="URI", help="artifact store URI (default: configured)")
    p.add_argument(
        "--out", metavar="DIR", help="where the raw CSV and lineage.svg go (default: DATA_DIR/demo)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary")
    p.add_argument(
        "--serve", action="store_true", help="then serve the API, with the demo's policies"
    )
    p.add_argument("--host", default="127.0.0.1", help="with --serve: address (127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="with --serve: port (default 8000)")
    p.set_defaults(func=cmd_demo, needs_store=False)

    p = sub.add_parser("runs", help="list runs or show one")
    runs = p.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    r = runs.add_parser("list", parents=[hub], help="runs, filtered and ordered, newest first")
    r.add_argument("--project", help="only runs of this project")
    r.add_argument("--experiment", help="only runs of this experiment")
    r.add_argument(
        "--kind",
        help="train, evaluate, transform, promote, deploy, monitor or all "
        "(default: all but promote and deploy)",
    )
    r.add_argument("--status", help="RUNNING, FINISHED, FAILED or KILLED")
    r.add_argument("--where", metavar="JSON", help='a filter: \'{"metrics.auc": {"$gte": 0.9}}\'')
    r.add_argument(
        "--order-by", action="append", metavar="KEY",
        help='property path, "-" for descending (repeat; default -started_at)',
    )  # fmt: skip
    r.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    r.add_argument(
        "--metrics", type=_bounded(0, 1000), default=4, help="metric columns shown (default 4)"
    )
    r.set_defaults(func=cmd_runs_list, needs_client=True)
    r = runs.add_parser("show", parents=[hub], help="one run: params, metrics, inputs, outputs")
    r.add_argument("run", metavar="RUN", help="the run id")
    r.set_defaults(func=cmd_runs_show, needs_client=True)

    p = sub.add_parser("models", help="list registered models or show one")
    models = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    m = models.add_parser("list", parents=[hub], help="models with latest version, stages, aliases")
    m.add_argument("--where", metavar="JSON", help='a filter: \'{"owner": "ann"}\'')
    m.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    m.set_defaults(func=cmd_models_list, needs_client=True)
    m = models.add_parser(
        "show", parents=[hub], help="a model's versions, or one version with its history"
    )
    m.add_argument(
        "ref", metavar="MODEL_OR_VERSION",
        help="churn or model:churn (a model); churn/3, churn@champion, mv:churn/3 (a version)",
    )  # fmt: skip
    m.add_argument(
        "--metrics", type=_bounded(0, 1000), default=4, help="metric columns shown (default 4)"
    )
    m.set_defaults(func=cmd_models_show, needs_client=True)
    register_cards(models, hub)  # models card set|show

    p = sub.add_parser(
        "lineage", parents=[hub], help="trace lineage from one or more nodes (or export it)"
    )
    p.add_argument("refs", nargs="+", metavar="REF", help="node ids or references to start from")
    _lineage_options(p)
    p.add_argument(
        "-o", "--output", metavar="FILE",
        help="write the trace as a file (format from --format or the suffix; - for stdout)",
    )  # fmt: skip
    p.set_defaults(func=cmd_lineage, needs_client=True)

    p = sub.add_parser(
        "export", parents=[hub], help="write a lineage trace, or the whole store, to a file"
    )
    p.add_argument("refs", nargs="*", metavar="REF", help="node ids or references to trace")
    _lineage_options(p)
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="file to write (- for stdout)"
    )
    p.add_argument(
        "--all", action="store_true",
        help="every node and edge of the store as JSON lines (embedded store only)",
    )  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_export, needs_client=True)

    p = sub.add_parser(
        "download", parents=[hub], help="an artifact or a model version's files, verified"
    )
    p.add_argument(
        "ref", metavar="REF_OR_DIGEST",
        help="a digest (sha256:...), an artifact id, or a model version (churn@champion)",
    )  # fmt: skip
    p.add_argument(
        "path", metavar="PATH",
        help="where to write it (a directory artifact: a new or empty folder)",
    )  # fmt: skip
    p.set_defaults(func=cmd_download, needs_client=True)

    p = sub.add_parser("compare", parents=[hub], help="compare runs, or two model versions")
    p.add_argument(
        "refs", nargs="+", metavar="REF",
        help="two or more run ids, or two model versions (churn/2 churn/3)",
    )  # fmt: skip
    p.set_defaults(func=cmd_compare, needs_client=True)

    p = sub.add_parser(
        "promote", parents=[hub], help="request a stage for a model version, or move an alias"
    )
    p.add_argument("ref", metavar="REF", help="the model version: churn/3, churn@champion")
    to = p.add_mutually_exclusive_group(required=True)
    to.add_argument("--stage", help="Staging, Production, Archived or None (policies apply)")
    to.add_argument("--alias", metavar="NAME", help="point this alias at the version")
    p.add_argument("--reason", help="why (kept in the history and the audit log)")
    p.add_argument(
        "--deployments", choices=["refuse", "retire", "repoint"], default="refuse",
        help="live deployments requiring the stage a version leaves (the archived Production "
        "versions): refuse the promotion (exit 8, the default), retire them, or repoint them "
        "at the promoted version",
    )  # fmt: skip
    p.set_defaults(func=cmd_promote, needs_client=True)

    p = sub.add_parser("approve", parents=[hub], help="approve a pending promotion request")
    p.add_argument("request_id", metavar="REQUEST_ID")
    p.add_argument("--comment", help="a note kept with the approval")
    p.set_defaults(func=cmd_approve, needs_client=True)

    p = sub.add_parser("reject", parents=[hub], help="reject a pending promotion request")
    p.add_argument("request_id", metavar="REQUEST_ID")
    p.add_argument("--reason", required=True, type=_text, help="why")
    p.set_defaults(func=cmd_reject, needs_client=True)

    p = sub.add_parser("approvals", help="promotion requests waiting for approvals")
    approvals = p.add_subparsers(dest="approvals_command", required=True, metavar="ACTION")
    a = approvals.add_parser(
        "list", parents=[hub], help="pending requests, oldest first: who asked, approvals so far"
    )
    a.add_argument("--model", help="only requests for this model")
    a.add_argument("--stage", help="only requests to this stage, e.g. Production")
    a.set_defaults(func=cmd_approvals_list, needs_client=True)

    p = sub.add_parser(
        "rollback", parents=[hub], help="put back the previous holder of a stage or alias"
    )
    p.add_argument("model", metavar="MODEL", help="the registered model, e.g. churn")
    p.add_argument(
        "stage_or_alias", metavar="STAGE_OR_ALIAS",
        help="a stage by its exact name (Production, Staging) or an alias (champion)",
    )  # fmt: skip
    p.add_argument(
        "--reason", required=True, type=_text, help="why (kept in the history and the audit log)"
    )
    p.add_argument(
        "--deployments", choices=["refuse", "retire", "repoint"], default="refuse",
        help="live deployments requiring the stage a version leaves: refuse the rollback "
        "(exit 8, the default), retire them, or repoint them at the version restored",
    )  # fmt: skip
    p.set_defaults(func=cmd_rollback, needs_client=True)

    p = sub.add_parser(
        "deploy", parents=[hub], help="record that a model version is served in an environment"
    )
    p.add_argument("ref", metavar="REF", help="the model version: churn/3, churn@champion")
    p.add_argument(
        "--environment", "--env", required=True, metavar="ENV", help="e.g. production, staging"
    )
    p.add_argument("--name", help="the deployment's name (default: the model's name)")
    p.add_argument("--endpoint", metavar="URL", help="where it answers")
    p.add_argument(
        "--require-stage",
        metavar="STAGE",
        help="refuse (exit 8) unless the version is in this stage, e.g. Production",
    )
    p.add_argument("--reason", help="why (kept in the audit log)")
    p.set_defaults(func=cmd_deploy, needs_client=True)

    p = sub.add_parser("retire", parents=[hub], help="mark a deployment retired")
    p.add_argument("deployment", metavar="DEPLOYMENT_ID", help="deployment:...")
    p.add_argument("--reason", help="why (kept in the audit log)")
    p.set_defaults(func=cmd_retire, needs_client=True)

    p = sub.add_parser("audit", help="verify or export the tamper-evident audit log")
    audit = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    a = audit.add_parser(
        "verify",
        parents=[common],
        help="check the audit chain, its tree heads and the records (exit 7, 9, 10, 11)",
    )
    a.add_argument(
        "--against",
        action="append",
        metavar="HEAD_FILE",
        help="a head exported earlier (audit head -o) or a JSON-lines copy; repeatable",
    )
    a.add_argument(
        "--heads",
        action="append",
        metavar="URI",
        help="a copy of the heads (file:///, git:///, s3://) besides LINEAGEHUB_AUDIT_HEADS",
    )
    a.add_argument("--no-records", action="store_true", help="check the log only, not the records")
    a.add_argument(
        "--public-key",
        metavar="PEM_FILE",
        help="check every head's Ed25519 signature with this public key (default: the one of "
        "LINEAGEHUB_AUDIT_SIGNING_KEY, when set)",
    )
    a.set_defaults(func=cmd_audit_verify)
    a = audit.add_parser(
        "head",
        parents=[common],
        help="write a signed tree head of the log now; -o exports it for verify --against",
    )
    a.add_argument("-o", "--output", metavar="FILE", help="file to write the head to")
    a.set_defaults(func=cmd_audit_head)
    a = audit.add_parser(
        "export", parents=[common], help="write the audit log as JSON lines, with a checkpoint"
    )
    a.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="file to write (replaced whole)"
    )
    a.set_defaults(func=cmd_audit_export)
    a = audit.add_parser(
        "verify-export",
        help="check an exported copy without the store (chain, checkpoint, signature)",
    )
    a.add_argument("file", metavar="FILE", help="the exported JSON lines file")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a.set_defaults(func=cmd_audit_verify_export, needs_store=False)
    register_audit_prove(audit, common)  # audit prove

    register_access(sub, common)  # user ..., token ...
    register_imports(sub, common)  # import mlflow
    register_monitor(sub, hub)  # monitor status
    register_alerts(sub, hub)  # alerts list, alerts ack
    register_dossier(sub, hub)  # report, report verify, inventory

    p = sub.add_parser("serve", help="serve the GraphQL API (GraphiQL at /graphql)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0: any free one)")
    p.add_argument("--store", metavar="URI", help="graph store URI (default: configured)")
    p.add_argument("--artifacts", metavar="URI", help="artifact store URI (default: configured)")
    p.add_argument(
        "--workers", type=_bounded(1, 256), default=1, help="worker processes (default 1)"
    )
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS: the certificate (PEM chain)")
    p.add_argument("--tls-key", metavar="FILE", help="with --tls-cert: its private key (PEM)")
    p.set_defaults(func=cmd_serve, json=False, needs_store=False)
    return parser


def _report(args: argparse.Namespace, code: str, message: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"error": {"code": code, "message": message}}), file=sys.stderr)
    else:
        print(f"lineagehub: error [{code}]: {message}", file=sys.stderr)


# Options whose values may start with "-" (a descending ordering): argparse would take
# ``--order-by -metrics.auc`` for two options, so such a value is joined to its option.
_DASH_VALUE_OPTIONS = frozenset({"--order-by"})


def _join_dash_values(argv: Sequence[str]) -> list[str]:
    """``--order-by -metrics.auc`` as ``--order-by=-metrics.auc``, so the spelling people
    type works; short options (``-o``, ``-q``) and ``--long`` ones are left alone."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) else None
        if (
            token in _DASH_VALUE_OPTIONS
            and value is not None
            and value.startswith("-")
            and not value.startswith("--")
            and len(value) > 2
        ):
            out.append(f"{token}={value}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def _bounded(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high`` (a usage error otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not from {low} to {high}")
        return value

    return parse


def _text(value: str) -> str:
    """An argparse type: text that is not empty (a required reason given as "")."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


_port = _bounded(0, 65535)  # 99999 bound port 34463 (taken modulo 65536)


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "needs_client", False):
        with hub_client(args) as client:
            return int(args.func(args, client))
    if not getattr(args, "needs_store", True):
        return int(args.func(args))
    creates = getattr(args, "creates_store", False) and bool((args.store or "").strip())
    if args.store is not None and not creates:
        # a command reading (or changing) a hub never makes a new, empty one at a mistyped
        # path ("audit log intact: 0 entries")
        existing_store(args.store)
    with open_store(args.store) as store:
        return int(args.func(args, store))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _Parser.wants_json = "--json" in argv
    args = build_parser().parse_args(_join_dash_values(argv))
    try:
        code = _run(args)
        if sys.stdout is not None:
            sys.stdout.flush()  # a write error (a full disk) is reported here, not at exit
        return code
    except HubError as e:
        if args.json:
            print(json.dumps({"error": e.to_dict()}, default=str), file=sys.stderr)
        else:
            message = " ".join(str(e.message).split())  # one line, whatever the message holds
            print(f"lineagehub: error [{e.code}]: {message}", file=sys.stderr)
        return EXIT_CODES.get(e.code, 1)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `lineagehub ... | head`: the reader left; that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # the output itself cannot be written (/dev/full, a closed pipe end)
        if e.errno not in (errno.ENOSPC, errno.EBADF, errno.EIO, errno.EDQUOT):
            raise
        print(f"lineagehub: error: cannot write the output: {e.strerror}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
