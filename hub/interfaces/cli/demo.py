"""``demo``: the demo end to end, optionally followed by the server."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lineagehub.graph import ValidationError, redact
from lineagehub.interfaces.cli.admin import cmd_serve
from lineagehub.interfaces.cli.common import _jsonable, _print_json, make_console, progress_bar


def cmd_demo(args: argparse.Namespace) -> int:
    """Real training on scikit-learn's bundled data, a governed promotion, a deployment and a
    lineage picture, all through the SDK into the (embedded) hub."""
    from lineagehub.config import Settings
    from lineagehub.samples.demo import (
        STEPS,
        clients,
        queries,
        render_hint,
        run_demo,
        write_alert_rules,
        write_policies,
    )

    out = Path(args.out) if args.out else Settings().data_dir / "demo"
    if out.exists() and not out.is_dir():
        raise ValidationError(f"--out {out}: a file, not a folder", field="out")
    silent = args.json or args.quiet
    policy_file = write_policies(out)
    rules_file = write_alert_rules(out)
    with (
        clients(args.store, args.artifacts, policy_file, rules_file) as (trainer, reviewer),
        progress_bar("demo", STEPS, silent) as advance,
    ):

        def step(message: str) -> None:
            advance(1, f"{message:<48}")
            if not silent and not sys.stderr.isatty():  # no bar: one line per step
                print(f"demo: {message}", file=sys.stderr)

        result = run_demo(trainer, reviewer, out, step=step)
        result.policies = str(policy_file)
        result.alert_rules = str(rules_file)
        assert trainer.store is not None
        store_uri = redact(trainer.store.uri)
        artifacts = redact(trainer.settings.artifact_uri)
    asked = queries(result)
    hint = render_hint(
        [p for p in (result.picture, result.impact_picture, result.alert_picture) if p]
    )
    if hint is not None and (args.json or args.quiet):
        print(f"lineagehub: {hint}", file=sys.stderr)  # a left-over step, even when quiet
    if args.serve:  # the server applies the demo's policies and alert rules too
        os.environ["LINEAGEHUB_POLICIES"] = str(policy_file)
        os.environ["LINEAGEHUB_ALERT_RULES"] = str(rules_file)
    if args.json:
        _print_json(
            _jsonable(
                {
                    "store": store_uri,
                    "artifacts": artifacts,
                    "result": result.to_dict(),
                    "queries": [{"question": q, "query": t} for q, t in asked],
                }
            )
        )
        return _serve_after_demo(args)
    if args.quiet:
        return _serve_after_demo(args)
    console = make_console()
    from lineagehub.services.headline import headline_metric

    def headline(version: str) -> str:
        found = headline_metric({"metrics": result.metrics[version]})
        return f"{found[0]}={found[1]:.4f}" if found is not None else "no metrics"

    lines = [
        f"Demo lineage written to {store_uri}",
        f"  raw extract      {result.raw}",
        f"  cleaned data     {result.clean}",
        *(f"  trained          {v}  {headline(v)}" for v in result.versions),
        f"  in Production    {result.best} (approved by the reviewer; alias champion;"
        f" {headline(result.best)})",
        f"  deployment       {result.deployment}",
        f"  monitored        {len(result.windows)} daily windows replayed; "
        + (f"alert {result.alert} fired" if result.alert else "no alert fired"),
        f"  pictures         {result.picture}, {result.impact_picture}"
        + (f", {result.alert_picture}" if result.alert_picture else ""),
        *([f"                   {hint}"] if hint is not None else []),
        f"  policies         {result.policies}  (LINEAGEHUB_POLICIES=this file: the server"
        " and the CLI apply them)",
        f"  alert rules      {result.alert_rules}  (LINEAGEHUB_ALERT_RULES=this file)",
        "",
        "Next: `lineagehub serve` and open http://127.0.0.1:8000/graphql, then try:"
        if not args.serve
        else f"Serving on http://{args.host}:{args.port}/graphql (Ctrl-C stops); try:",
    ]
    console.print("\n".join(lines), markup=False)
    for question, query in asked:
        console.print(f"\n# {question}", markup=False, style="bold")
        console.print(query, markup=False)
    console.print(
        "\nOr from the shell: lineagehub runs list --experiment breast-cancer · "
        f"lineagehub models show tumor-classifier · lineagehub lineage {result.deployment} "
        "--depth 8 -o lineage.svg · lineagehub monitor status tumor-classifier · "
        "lineagehub alerts list",
        markup=False,
    )
    return _serve_after_demo(args)


def _serve_after_demo(args: argparse.Namespace) -> int:
    if not args.serve:
        return 0
    sys.stdout.flush()
    serve = argparse.Namespace(
        host=args.host,
        port=args.port,
        store=args.store,
        artifacts=args.artifacts,
        workers=1,
        log_level="info",
    )
    return cmd_serve(serve)
