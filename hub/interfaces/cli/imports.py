"""``lineagehub import mlflow``: an MLflow history brought into the hub in one command.

Works on the configured store directly (``--store``, ``--artifacts``), never through a server:
the import is one transaction and one audit entry under ``LINEAGEHUB_USER`` (else the OS
user). See :mod:`lineagehub.services.mlflow_import`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from lineagehub.graph import BackendUnavailable, GraphStore, redact
from lineagehub.interfaces.cli.common import _emit, progress_bar

#: Where MLflow's own errors come from (its client, its database and HTTP layers, the YAML
#: of its folder store)
_MLFLOW_SIDE = frozenset({"mlflow", "sqlalchemy", "alembic", "requests", "urllib3", "yaml"})


def cmd_import_mlflow(args: argparse.Namespace, store: GraphStore) -> int:
    from lineagehub.artifacts import open_artifact_store
    from lineagehub.config import Settings
    from lineagehub.services.mlflow_import import MlflowImporter
    from lineagehub.services.tracking import default_actor

    settings = Settings(store=args.store) if args.store else Settings()
    if args.artifacts:
        settings = settings.model_copy(update={"artifacts": args.artifacts})
    artifacts = open_artifact_store(settings.artifact_uri, **settings.artifact_options())
    importer = MlflowImporter(store, artifacts, actor=settings.user or default_actor())
    # an MLflow server that does not answer: a few retries, not MLflow's minutes of them
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    with _progress(args.quiet or args.json) as progress:
        try:
            summary = importer.run(
                args.source,
                registry_uri=args.registry_uri,
                project=args.project,
                copy_artifacts=not args.reference_artifacts,
                incremental=not args.full,
                progress=progress,
            )
        except Exception as e:
            # MLflow's own failures (a server that does not answer, a database it cannot
            # read): one line, not its traceback; nothing was written (one transaction)
            if type(e).__module__.split(".")[0] not in _MLFLOW_SIDE:
                raise
            # on one line, all of it: a YAML error names the damaged file on its later lines
            reason = (" ".join(str(e).split()) or type(e).__name__)[:500]
            raise BackendUnavailable(
                f"MLflow at {redact(args.source)} could not be read: {reason}"
            ) from None
    data = summary.to_dict()
    lines = [
        f"imported from {data['source']} into {redact(store.uri)}",
        f"  {summary.experiments} experiments, {summary.runs} runs "
        f"({summary.runs_unchanged} runs unchanged), {summary.params} params, "
        f"{summary.metric_points} metric points, {summary.datasets} dataset versions",
        f"  {summary.logged_models} logged models, {summary.models} registered models, "
        f"{summary.versions} versions, {summary.aliases} aliases"
        + (f" ({summary.aliases_removed} removed)" if summary.aliases_removed else ""),
        f"  artifacts: {summary.artifacts_copied} copied, "
        f"{summary.artifacts_referenced} referenced",
    ]
    if summary.unmapped:
        lines.append(f"  not mapped ({len(summary.unmapped)}):")
        lines += [f"    {u['what']} {u['ref']}: {u['reason']}" for u in summary.unmapped]
    _emit(args, data, "\n".join(lines))
    return 0


@contextlib.contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    """``progress(what, done, total)`` drawing one bar per phase (runs, registered models)."""
    with contextlib.ExitStack() as stack:
        bars: dict[str, Any] = {}
        seen: dict[str, int] = {}

        def progress(what: str, done: int, total: int) -> None:
            if what not in bars:
                bars[what] = stack.enter_context(progress_bar(f"importing {what}", total, quiet))
                seen[what] = 0
            if done > seen[what]:
                bars[what](done - seen[what])
                seen[what] = done

        yield progress


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``import mlflow`` (``common``: --store and --json)."""
    p = sub.add_parser("import", help="bring another tool's history into the hub")
    kinds = p.add_subparsers(dest="import_command", required=True, metavar="SOURCE")
    a = kinds.add_parser(
        "mlflow",
        parents=[common],
        help="an MLflow tracking store and registry: experiments, runs, metric histories, "
        "datasets, models, versions, aliases, stages, artifacts",
    )
    a.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="URI",
        help="MLflow tracking URI: sqlite:///mlflow.db, ./mlruns, http://mlflow:5000",
    )
    a.add_argument(
        "--registry-uri", metavar="URI", help="MLflow model registry URI (default: --from)"
    )
    a.add_argument(
        "--project",
        default="mlflow",
        metavar="NAME",
        help="the project MLflow's experiments go to (default: mlflow)",
    )
    a.add_argument("--artifacts", metavar="URI", help="artifact store URI (default: configured)")
    a.add_argument(
        "--reference-artifacts",
        action="store_true",
        help="reference MLflow's artifacts (their URIs) instead of copying their bytes",
    )
    a.add_argument(
        "--full",
        action="store_true",
        help="read every run again (default: skip runs imported finished and unchanged)",
    )
    a.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=cmd_import_mlflow, creates_store=True)
