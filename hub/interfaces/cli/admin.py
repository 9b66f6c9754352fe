"""The store and the server: ``doctor``, ``example``, ``serve`` and ``audit``
(``verify``, ``head``, ``export``, ``verify-export``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from lineagehub import __version__, open_store
from lineagehub.graph import ConfigError, Direction, GraphStore, redact
from lineagehub.interfaces.cli.common import (
    EXIT_CODES,
    EXIT_TAMPERED,
    _emit,
    lineage_edge_kinds,
    output_path,
    progress_bar,
    render_tree,
    subgraph_json,
)


def cmd_doctor(args: argparse.Namespace, store: GraphStore) -> int:
    from lineagehub.vocabulary import NodeKind

    problems = store.integrity_problems()  # first: a damaged file may fail the counts
    counts = {} if problems else {k.value: n for k in NodeKind if (n := store.count_nodes(k.value))}
    data: dict[str, Any] = {
        "version": __version__,
        "store": redact(store.uri),
        "backend": type(store).__name__,
        "schemaVersion": getattr(store, "schema_version", None),
        "nodes": counts,
        "totalNodes": None if problems else store.count_nodes(),
        "problems": problems,
        "ok": not problems,
    }
    text = "\n".join(
        [
            f"lineagehub {__version__}",
            f"store    {data['store']} ({data['backend']}, schema {data['schemaVersion']})",
            f"nodes    {data['totalNodes']}",
            *(f"  {k:<18} {v}" for k, v in counts.items()),
            *(f"PROBLEM  {p}" for p in problems),
            "ok" if not problems else "the store is damaged: restore it from a backup",
        ]
    )
    _emit(args, data, text)
    return 0 if not problems else EXIT_CODES["BACKEND"]


def cmd_example(args: argparse.Namespace, store: GraphStore) -> int:
    from lineagehub.samples.example import build_example

    ids = build_example(store)
    kinds = lineage_edge_kinds()
    up = store.traverse([ids["deployment"]], Direction.UPSTREAM, 8, edge_kinds=kinds)
    down = store.traverse([ids["raw"]], Direction.DOWNSTREAM, 8, edge_kinds=kinds)
    data = {
        "store": redact(store.uri),
        "ids": ids,
        "upstream": subgraph_json(up),
        "downstream": subgraph_json(down),
    }
    text = "\n".join(
        [
            f"Example lineage written to {redact(store.uri)}",
            "",
            f"Where did the deployed model come from?  (lineagehub lineage {ids['deployment']})",
            render_tree(up),
            "",
            f"Which runs, models and deployments does the raw data affect?  "
            f"(lineagehub lineage --downstream {ids['raw']})",
            render_tree(down),
        ]
    )
    _emit(args, data, text)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the API server (uvicorn) until interrupted; SIGINT/SIGTERM shut it down gracefully."""
    import uvicorn

    from lineagehub.config import Settings

    # Workers are separate processes: they read their settings from the environment.
    if args.store:
        os.environ["LINEAGEHUB_STORE"] = args.store
    if args.artifacts:
        os.environ["LINEAGEHUB_ARTIFACTS"] = args.artifacts
    settings = Settings()
    from lineagehub.interfaces.auth import check_serve

    notice = check_serve(args.host, settings)  # ConfigError: open on a non-loopback address
    tls = _tls_options(getattr(args, "tls_cert", None), getattr(args, "tls_key", None))
    with open_store(settings=settings) as store:  # fail fast, with a clear error
        uri = redact(store.uri)
    scheme = "https" if tls else "http"
    # --port 0: the OS chooses when uvicorn binds, and uvicorn's "running on" line names it
    port = "PORT" if args.port == 0 else str(args.port)
    print(
        f"lineagehub {__version__}: GraphQL and GraphiQL at {scheme}://{args.host}:{port}"
        f"/graphql (store {uri}, artifacts {redact(settings.artifact_uri)})",
        file=sys.stderr,
    )
    if settings.explorer:
        print(
            f"lineagehub: the lineage explorer at {scheme}://{args.host}:{port}/", file=sys.stderr
        )
    if args.port == 0:
        print(
            "lineagehub: PORT is the one the system chooses: see 'Uvicorn running on' below",
            file=sys.stderr,
        )
    if notice:
        print(f"lineagehub: {notice}", file=sys.stderr)
    args.max_connections = settings.max_connections
    metrics_dir = _shared_metrics(args.workers)
    try:
        _serve(uvicorn, args, tls)
    except SystemExit as e:  # uvicorn's own exit: 3 when it could not start
        if e.code in (None, 0):
            return 0
        raise ConfigError(
            "the server could not start (uvicorn says why above: the port in use, an address "
            "this machine does not have)"
        ) from None
    finally:
        if metrics_dir is not None:
            import shutil

            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _shared_metrics(workers: int) -> str | None:
    """With several workers, a folder where each counts its requests for ``/metrics``
    (prometheus_client's multiprocess mode, switched on by the environment the workers
    inherit); ``None`` with one, or when the environment names a folder already.

    A scrape is answered by whichever worker takes it: each counting its own, successive
    scrapes went up and down, and Prometheus took every fall for a counter reset."""
    if workers < 2 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    import tempfile

    folder = tempfile.mkdtemp(prefix="lineagehub-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    return folder


def _serve(uvicorn: Any, args: argparse.Namespace, tls: dict[str, Any]) -> None:
    uvicorn.run(
        "lineagehub.interfaces.server:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        timeout_graceful_shutdown=10,
        limit_concurrency=args.max_connections,
        **tls,
    )


def _tls_options(cert: str | None, key: str | None) -> dict[str, Any]:
    """uvicorn's TLS options for ``--tls-cert``/``--tls-key``, checked before the server starts
    (a ConfigError names the file; no key material in it)."""
    import ssl

    if cert is None and key is None:
        return {}
    if cert is None or key is None:
        raise ConfigError("give both --tls-cert and --tls-key (or neither, for plain HTTP)")
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not Path(path).is_file():
            raise ConfigError(f"{flag}: no such file: {path}")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError, ValueError) as e:
        # the reason (not the file's contents): a key that does not match, a password, ...
        reason = getattr(e, "reason", None) or type(e).__name__
        raise ConfigError(
            f"--tls-cert/--tls-key: cannot load the certificate and key ({reason})"
        ) from None
    return {"ssl_certfile": cert, "ssl_keyfile": key}


def _audit_key() -> bytes | None:
    from lineagehub.config import Settings

    key = Settings().audit_key
    if key is not None and not key.get_secret_value().strip():
        raise ConfigError(
            "LINEAGEHUB_AUDIT_KEY is set but empty: set a key to sign and verify exports, "
            "or unset it for unsigned ones"
        )
    return key.get_secret_value().encode("utf-8") if key is not None else None


def _entry_text(e: Any) -> str:
    return (
        f"  seq {e.seq}  {e.time}  actor={e.actor}  action={e.action}  target={e.target}\n"
        f"  payload {e.payload_digest}\n  prev    {e.prev_hash}\n  hash    {e.hash}"
    )


def cmd_audit_verify(args: argparse.Namespace, store: GraphStore) -> int:
    """The chain, every tree head (the store's, ``--against`` files, the configured copy and
    ``--heads`` copies) and, unless ``--no-records``, every record against its last entry."""
    from dataclasses import asdict

    from lineagehub.config import Settings
    from lineagehub.services.audit import (
        head_copy,
        load_public_key,
        read_head_file,
        verify_log,
    )

    settings = Settings()
    heads = [(f"head file {f}", h) for f in args.against or () for h in read_head_file(f)]
    copies = [*([settings.audit_heads] if settings.audit_heads else []), *(args.heads or ())]
    stored = bool(store.audit_checkpoints(-1, 1))
    empty: list[str] = []
    for uri in copies:
        copy = head_copy(uri, settings.s3_endpoint_url)
        held = copy.read()
        if not held and stored:
            # a mistyped --heads read as "no head there" and verified nothing against it
            if uri in (args.heads or ()):
                raise ConfigError(
                    f"--heads {uri}: the copy holds no tree head (is it there?), while the "
                    "store holds some: nothing could be checked against it"
                )
            empty.append(copy.uri)
        heads += [(f"copy {copy.uri}", h) for h in held]
    public = args.public_key or settings.audit_signing_key
    result = verify_log(
        store,
        _audit_key(),
        heads,
        check_records=not args.no_records,
        public_key=load_public_key(public) if public else None,
    )
    head = store.audit_head()
    data: dict[str, Any] = {
        **result.to_dict(),
        "head": asdict(head) if head is not None else None,
        "firstBadSeq": result.first_bad_seq,
        "entry": None,
    }
    notes = [f"note: {n}" for n in result.notes]
    notes += [
        f"note: the copy {uri} (LINEAGEHUB_AUDIT_HEADS) holds no tree head: nothing was "
        "checked against it"
        for uri in empty
    ]
    if result.ok:
        where = f"head seq {head.seq} {head.hash}" if head is not None else "empty log"
        records = (
            f"; {result.records_checked} records match their last entry"
            f" ({result.unaudited_nodes} nodes have none)"
            if not args.no_records
            else ""
        )
        text = (
            f"audit log intact: {result.checked} entries ({where}), "
            f"{result.heads_checked} tree heads{records}"
        )
        _emit(args, data, "\n".join([text, *notes]))
        return 0
    bad = result.first_bad_seq or 1
    found = store.read_audit(bad - 1, 1) if result.kind not in ("truncated", "record") else []
    entry = found[0] if found else None
    data["entry"] = asdict(entry) if entry is not None else None
    lines = [
        f"audit log TAMPERED at seq {result.first_bad_seq} ({result.kind}): {result.problem}",
        f"{result.checked} entries verified in the chain",
    ]
    for r in result.records[:20]:
        lines.append(f"  {r.record}: {', '.join(r.fields) or 'whole record'} (entry {r.seq})")
    if len(result.records) > 20:
        lines.append(f"  ... and {len(result.records) - 20} more (--json lists all)")
    if entry is not None:
        label = "first bad entry" if entry.seq == bad else "next entry after the gap"
        lines += [f"{label}:", _entry_text(entry)]
    _emit(args, data, "\n".join([*lines, *notes]))
    return result.exit_code


def cmd_audit_head(args: argparse.Namespace, store: GraphStore) -> int:
    """Write a tree head at the end of the log now, copy it where configured, and export it
    (``-o FILE``) for ``audit verify --against FILE``."""
    import json

    from lineagehub.config import Settings
    from lineagehub.files import write_atomic
    from lineagehub.services.audit import copy_heads, head_copy

    settings = Settings()
    head = store.checkpoint_audit()
    copied = None
    if settings.audit_heads:
        copy = head_copy(settings.audit_heads, settings.s3_endpoint_url)
        copied = copy_heads(store, copy)
    body = json.dumps(head.to_dict(), sort_keys=True) + "\n"
    if args.output == "-":  # stdout: the head, as without -o
        args.output = None
    if args.output:
        write_atomic(args.output, lambda f: f.write(body.encode("utf-8")), field="output")
    data = {**head.to_dict(), "file": args.output, "copied": copied}
    signed = "signed" if head.mac else "UNSIGNED (set LINEAGEHUB_AUDIT_KEY to sign)"
    where = f" written to {args.output}" if args.output else ""
    _emit(
        args,
        data,
        f"tree head at size {head.tree_size}, root {head.root_hash}, {signed}{where}"
        + (f"\n{body.strip()}" if not args.output else ""),
    )
    return 0


def cmd_audit_export(args: argparse.Namespace, store: GraphStore) -> int:
    from lineagehub.services.audit import export_jsonl

    head = store.audit_head()
    total = head.seq if head else 0
    with (
        progress_bar("exporting the audit log", total, args.json) as advance,
        output_path(args.output) as target,
    ):
        result = export_jsonl(store, target, _audit_key(), advance)
    data = {"file": args.output, **result.to_dict()}
    signed = "signed" if result.signed else "unsigned (set LINEAGEHUB_AUDIT_KEY to sign)"
    _emit(
        args,
        data,
        f"exported {result.count} audit entries to {args.output} (head seq {result.seq}, {signed})",
    )
    return 0


def cmd_audit_verify_export(args: argparse.Namespace) -> int:
    from lineagehub.services.audit import verify_export

    result = verify_export(args.file, _audit_key())
    data = {"file": args.file, **result.to_dict()}
    if result.ok:
        sig = (
            "signature verified"
            if result.signature_verified
            else "signature not checked (no LINEAGEHUB_AUDIT_KEY)"
        )
        _emit(args, data, f"export intact: {result.checked} entries, {sig}")
        return 0
    at = f" at seq {result.first_bad_seq}" if result.first_bad_seq is not None else ""
    _emit(args, data, f"export TAMPERED{at} ({result.kind}): {result.problem}")
    return EXIT_TAMPERED
