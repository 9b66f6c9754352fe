"""The registered models: ``models list`` and ``models show``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from lineagehub.graph import NotFoundError
from lineagehub.interfaces.cli.common import (
    _STAGE_STYLE,
    _jsonable,
    _num,
    _print_json,
    _table,
    _text,
    make_console,
    parse_where,
)
from lineagehub.interfaces.cli.runs import _metric_columns

if TYPE_CHECKING:
    from lineagehub.ingest.client import Client
    from lineagehub.vocabulary import ModelVersion


_ALL = 1000  # one page of the largest size: a model with more versions shows the newest


def _mv_json(mv: ModelVersion) -> dict[str, Any]:
    data: dict[str, Any] = _jsonable(mv.model_dump(mode="json"))
    data["id"] = mv.node_id
    return data


def _model_summary(client: Client, model: Any) -> dict[str, Any]:
    versions, _ = client.search_model_versions({"model": model.name}, "-version", limit=_ALL)
    stages: dict[str, list[int]] = {}
    aliases: dict[str, int] = {}
    for mv in versions:
        if mv.stage.value != "None":
            stages.setdefault(mv.stage.value, []).append(mv.version)
        for alias in mv.aliases:
            aliases[alias] = mv.version
    return {
        "id": model.node_id,
        "name": model.name,
        "owner": model.owner,
        "task": model.task,
        "description": model.description,
        "versions": len(versions),
        "latest": versions[0].version if versions else None,
        "stages": {k: sorted(v) for k, v in sorted(stages.items())},
        "aliases": dict(sorted(aliases.items())),
    }


def cmd_models_list(args: argparse.Namespace, client: Client) -> int:
    models, cursor = client.list_models(parse_where(args.where), "name", limit=args.limit)
    summaries = [_model_summary(client, m) for m in models]
    if args.json:
        _print_json({"models": summaries, "next_cursor": cursor})
        return 0
    table = _table(None, "model", "latest", "versions", "stages", "aliases", "task", ids=("model",))
    for m in summaries:
        stages = ", ".join(
            f"{s}: " + ",".join(f"v{v}" for v in vs) for s, vs in m["stages"].items()
        )
        aliases = ", ".join(f"{a}→v{v}" for a, v in m["aliases"].items())
        table.add_row(
            _text(m["name"]),
            _text(f"v{m['latest']}" if m["latest"] else None),
            _text(m["versions"]),
            _text(stages),
            _text(aliases),
            _text(m["task"]),
        )
    console = make_console()
    console.print(table)
    console.print(f"{len(summaries)} model{'s' if len(summaries) != 1 else ''}")
    return 0


def _is_version_ref(ref: str) -> bool:
    # model:NAME always names a model, even one whose name looks like a version ("amb/1")
    return not ref.startswith("model:") and (ref.startswith("mv:") or "@" in ref or "/" in ref)


def _history_json(e: Any) -> dict[str, Any]:
    return {
        "change": e.change,
        "version": e.version,
        "alias": e.alias,
        "from": e.from_,
        "to": e.to,
        "actor": e.actor,
        "reason": e.reason,
        "at": e.at.isoformat() if e.at else None,
        "run_id": e.run_id,
        "approvals": list(e.approvals),
    }


def cmd_models_show(args: argparse.Namespace, client: Client) -> int:
    ref: str = args.ref
    console = make_console()
    mv = None
    if _is_version_ref(ref):
        try:
            mv = client.get_model_version(ref)
        except NotFoundError:
            # "amb/1": version 1 of amb, else the model named amb/1
            if ref.startswith("mv:") or "@" in ref or not client.list_models({"name": ref})[0]:
                raise
    if mv is not None:
        history = [_history_json(e) for e in client.model_history(mv.model)]
        mine = [h for h in history if h["version"] == mv.version]
        if args.json:
            _print_json({"version": _mv_json(mv), "history": mine})
            return 0
        from rich.table import Table

        facts = Table.grid(padding=(0, 2))
        facts.add_column(style="bold", no_wrap=True)
        facts.add_column(no_wrap=True, overflow="ignore")
        for key, value in [
            ("id", mv.node_id),
            ("model", mv.model),
            ("version", mv.version),
            ("stage", _text(mv.stage.value, _STAGE_STYLE.get(mv.stage.value, ""))),
            ("aliases", ", ".join(mv.aliases) or None),
            ("flavor", mv.flavor),
            ("artifact", mv.artifact_digest),
            ("description", mv.description),
        ]:
            if value is not None:
                facts.add_row(key, _text(value) if not hasattr(value, "style") else value)
        console.print(facts)
        if mv.metrics:
            table = _table("metrics", "key", "value", ids=("key",))
            for k in sorted(mv.metrics):
                table.add_row(_text(k), _text(_num(mv.metrics[k])))
            console.print(table)
        table = _table("history", "at", "change", "from", "to", "actor", "reason")
        for h in mine:
            table.add_row(
                _text(h["at"][:19].replace("T", " ") if h["at"] else None),
                _text(h["change"] + (f" {h['alias']}" if h["alias"] else "")),
                _text(h["from"]),
                _text(h["to"]),
                _text(h["actor"]),
                _text(h["reason"]),
            )
        console.print(table if mine else "no stage or alias changes")
        return 0
    name = ref.removeprefix("model:")
    models, _ = client.list_models({"name": name}, limit=1)
    if not models:
        raise NotFoundError(f"no model {name!r}", ids=[ref])
    summary = _model_summary(client, models[0])
    versions, _ = client.search_model_versions({"model": name}, "-version", limit=_ALL)
    if args.json:
        _print_json({"model": summary, "versions": [_mv_json(v) for v in versions]})
        return 0
    keys = _metric_columns(
        [(v.metrics, v.tags, v.model) for v in versions], args.metrics, client.registry_policies
    )
    title = f"model {name}" + (f" ({summary['task']})" if summary["task"] else "")
    table = _table(title, "version", "id", "stage", "aliases", "flavor", *keys, ids=("id",))
    for v in versions:
        table.add_row(
            _text(v.version),
            _text(v.node_id),
            _text(v.stage.value, _STAGE_STYLE.get(v.stage.value, "")),
            _text(", ".join(v.aliases)),
            _text(v.flavor),
            *(_text(_num(v.metrics.get(k))) for k in keys),
        )
    console.print(table)
    return 0


def cmd_download(args: argparse.Namespace, client: Client) -> int:
    """``download REF_OR_DIGEST PATH``: an artifact or a model version's stored model,
    verified; a directory artifact unpacked as a directory."""
    path = client.download(args.ref, args.path)
    kind = "directory" if path.is_dir() else "file"
    if args.json:
        _print_json({"ref": args.ref, "path": str(path), "kind": kind})
        return 0
    make_console().print(f"{args.ref} → {path} ({kind})")
    return 0
