"""The `lineagehub` command against a real SQLite file: output, --json, exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lineagehub.interfaces.cli import main


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hub.db'}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_example_writes_a_graph_and_traces_it(capsys: pytest.CaptureFixture[str], uri: str) -> None:
    code, out, _ = run(capsys, "example", "--store", uri)
    assert code == 0
    assert "Deployment deployment:example-prod" in out
    assert "SERVES → ModelVersion mv:churn/2" in out
    assert "← USED(train): Run run:example-train-1" in out
    # idempotent: a second run adds nothing
    code, out, _ = run(capsys, "doctor", "--store", uri, "--json")
    first = json.loads(out)
    run(capsys, "example", "--store", uri)
    _, out, _ = run(capsys, "doctor", "--store", uri, "--json")
    assert json.loads(out) == first
    assert first["nodes"]["ModelVersion"] == 3 and first["totalNodes"] == 21


def test_example_never_writes_over_a_users_own_records(
    capsys: pytest.CaptureFixture[str], uri: str, tmp_path: Path
) -> None:
    """The example writes fixed ids (model churn, mv:churn/2): run on a hub whose own model is
    called churn it replaced the user's version 2 (its artifact, alias and metrics). Refused,
    naming what it would write over; nothing is written."""
    from lineagehub.ingest.client import Client

    with Client(uri, artifacts=(tmp_path / "artifacts").as_uri()) as client:
        for auc in (0.8, 0.9):
            with client.start_run("train", capture=False) as r:
                r.log_metrics({"auc": auc})
                r.log_model({"w": auc}, name="churn")
        client.set_alias("churn/2", "champion", "best")
        before = client.get_model_version("churn/2")
    code, _, err = run(capsys, "example", "--store", uri)
    assert code == 6 and "mv:churn/" in err and "store of its own" in err, err  # CONFLICT
    with Client(uri, artifacts=(tmp_path / "artifacts").as_uri()) as client:
        assert client.get_model_version("churn/2") == before
        runs, _ = client.search_runs({"name": "gbm-depth5"})
        assert runs == []  # nothing of the example was written


def test_example_json(capsys: pytest.CaptureFixture[str], uri: str) -> None:
    code, out, _ = run(capsys, "example", "--store", uri, "--json")
    data = json.loads(out)
    assert code == 0
    up = {n["id"]: n for n in data["upstream"]["nodes"]}
    assert up["mv:churn/2"]["distance"] == 1
    assert up["mv:churn/2"]["reachedFrom"] == "deployment:example-prod"
    assert data["ids"]["raw"] in up  # the deployment's data goes back to the raw version
    assert not any(n["label"] == "Project" for n in up.values())  # grouping is not lineage
    down = {n["id"] for n in data["downstream"]["nodes"]}
    assert {"mv:churn/1", "mv:churn/3", "deployment:example-prod"} <= down


def test_lineage_command(capsys: pytest.CaptureFixture[str], uri: str) -> None:
    run(capsys, "example", "--store", uri)
    code, out, _ = run(capsys, "lineage", "--store", uri, "mv:churn/1", "--depth", "1", "--json")
    data = json.loads(out)
    assert code == 0
    assert {n["id"] for n in data["nodes"]} == {"mv:churn/1", "run:example-train-1", "model:churn"}
    assert data["truncated"] is True and data["truncationReason"] == "MAX_DEPTH"
    edge = next(e for e in data["edges"] if e["kind"] == "GENERATED_BY")
    assert edge["source"] == "mv:churn/1" and edge["ingestedAt"]
    code, out, _ = run(capsys, "lineage", "--store", uri, "run:example-prep", "--downstream",
                       "--edge-kind", "GENERATED_BY")  # fmt: skip
    assert code == 0 and "customers_clean" in out and "train" not in out
    code, out, _ = run(capsys, "lineage", "--store", uri, "run:example-train-1", "--all-edges",
                       "--depth", "1")  # fmt: skip
    assert "Experiment experiment:churn/baseline" in out


@pytest.mark.parametrize(
    ("argv", "code", "code_name"),
    [
        (["lineage", "run:ghost"], 3, "NOT_FOUND"),
        (["lineage", "ghost"], 2, "VALIDATION"),
        (["lineage", "mv:churn/1", "--depth", "-1"], 2, "VALIDATION"),
        (["lineage", "mv:churn/1", "--edge-kind", "USED]->() DETACH DELETE n"], 2, "VALIDATION"),
    ],
)
def test_errors_have_exit_codes_and_one_line(
    capsys: pytest.CaptureFixture[str], uri: str, argv: list[str], code: int, code_name: str
) -> None:
    run(capsys, "example", "--store", uri)
    got, out, err = run(capsys, *argv, "--store", uri)
    assert got == code and out == ""
    assert err.startswith(f"lineagehub: error [{code_name}]") and err.count("\n") == 1
    got, _, err = run(capsys, *argv, "--store", uri, "--json")
    assert got == code and json.loads(err)["error"]["code"] == code_name


def test_bad_store_uri_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "doctor", "--store", "postgres://db/hub")
    assert code == 4 and "supported schemes" in err


def test_installed_entry_point(uri: str) -> None:
    exe = Path(sys.executable).parent / "lineagehub"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("lineagehub ")
    for argv in (["example"], ["doctor"]):
        done = subprocess.run(
            [sys.executable, "-m", "lineagehub", *argv, "--store", uri],
            capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout


def test_serve_starts_answers_and_shuts_down_gracefully(tmp_path: Path) -> None:
    import signal
    import socket
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "lineagehub"
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port), "--store", f"sqlite:///{tmp_path / 'hub.db'}",
         "--artifacts", (tmp_path / "artifacts").as_uri(), "--log-level", "info"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        # until it answers or exits (the deadline only guards against a hang, on a busy machine)
        deadline = time.monotonic() + 300
        health = None
        while health is None and proc.poll() is None and time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
            except httpx.TransportError:
                time.sleep(0.1)
        assert health is not None, f"the server did not answer: {proc.poll()=}"
        assert health["status"] == "ok"
        answer = httpx.post(
            f"http://127.0.0.1:{port}/graphql", json={"query": "{ runs { edges { cursor } } }"}
        ).json()
        assert answer == {"data": {"runs": {"edges": []}}}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells it
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete" in err
    assert f"http://127.0.0.1:{port}/graphql" in err


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_serve_workers_stop_when_their_parent_is_killed(tmp_path: Path) -> None:
    """A parent of `serve --workers 2` killed with kill -9 left both workers serving on its
    port for ever: the next `serve` on that port failed with "address already in use". The
    workers now shut down once their parent is gone, and the port is free again."""
    import signal
    import socket
    import time

    import httpx

    proc, port = _serve_two_workers(tmp_path, stderr=subprocess.DEVNULL, start_new_session=True)
    workers: list[int] = []
    try:
        # the deadlines only guard against a hang, on a busy machine
        deadline = time.monotonic() + 300
        while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                children = [int(p) for p in f.read().split()]
            workers = [p for p in children if "spawn_main" in _cmdline(p)]
            try:
                if len(workers) == 2:
                    httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).raise_for_status()
                else:
                    time.sleep(0.1)
            except httpx.TransportError:
                workers = []
                time.sleep(0.1)
        assert len(workers) == 2, f"no two workers serving: {proc.poll()=}"
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 120
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers), "workers still serving without their parent"
        with socket.socket() as s:  # as uvicorn binds
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()
    finally:
        for pid in [proc.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def test_serve_workers_scrapes_count_every_worker_s_requests(tmp_path: Path) -> None:
    """With `serve --workers 2` each worker counted its own requests and a scrape showed
    the counts of whichever worker answered it: successive scrapes went up and down (which
    Prometheus takes for counter resets). Every scrape now shows every worker's requests."""
    import re
    import time

    import httpx

    proc, port = _serve_two_workers(tmp_path, "--log-level", "info", stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        # until both workers have started (the deadline only guards against a hang)
        deadline = time.monotonic() + 300
        started = 0
        assert proc.stderr is not None
        while started < 2 and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line, f"the server exited: {proc.poll()=}"
            started += "Application startup complete" in line
        for _ in range(40):  # new connections: the workers share them
            with httpx.Client() as c:
                c.post(f"{url}/graphql", json={"query": "{ __typename }"}).raise_for_status()
        for _ in range(8):
            with httpx.Client() as c:
                text = c.get(f"{url}/metrics").text
            counted = re.findall(
                r'lineagehub_http_requests_total\{[^}]*route="/graphql"[^}]*\} (\S+)', text
            )
            assert sum(float(n) for n in counted) == 40
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


def _serve_two_workers(
    tmp_path: Path, *options: str, **popen: Any
) -> tuple[subprocess.Popen[str], int]:
    """`lineagehub serve --workers 2` on a port free a moment ago (uvicorn's workers need
    a port number, not a socket), and that port."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, "-m", "lineagehub", "serve", "--port", str(port), "--workers", "2",
            "--store", f"sqlite:///{tmp_path / 'hub.db'}", "--artifacts",
            (tmp_path / "artifacts").as_uri(), *options]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, text=True, **popen), port


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return ""


def test_serve_with_a_bad_store_fails_fast(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "lineagehub"
    done = subprocess.run(
        [str(exe), "serve", "--store", "postgres://nowhere/db"], capture_output=True, text=True
    )
    assert done.returncode == 4 and "supported schemes" in done.stderr


def test_doctor_says_when_sqlite_finds_the_file_damaged(
    capsys: pytest.CaptureFixture[str], uri: str, tmp_path: Path
) -> None:
    """doctor counted nodes and said "ok" on a file SQLite calls malformed (a later export
    then failed): it runs SQLite's own check, and says what it found (exit 5)."""
    import sqlite3

    assert run(capsys, "example", "--store", uri)[0] == 0
    with contextlib.closing(sqlite3.connect(tmp_path / "hub.db")) as conn, conn:
        for i in range(300):  # pages enough that most hold neither the header nor the schema
            conn.execute("INSERT INTO store_meta VALUES (?, ?)", (f"pad{i}", "x" * 2000))
    with contextlib.closing(sqlite3.connect(tmp_path / "hub.db")) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file itself
    code, out, _ = run(capsys, "doctor", "--store", uri, "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    data = (tmp_path / "hub.db").read_bytes()
    damaged = bytearray(data)
    page = 4096
    for at in range(len(data) // page // 2 * page, len(data) - page, page * 7):
        damaged[at : at + 8] = b"\xff" * 8  # a page's header, or its overflow chain's link
    (tmp_path / "hub.db").write_bytes(bytes(damaged))
    for extra in (tmp_path / "hub.db-wal", tmp_path / "hub.db-shm"):
        extra.unlink(missing_ok=True)
    code, out, err = run(capsys, "doctor", "--store", uri, "--json")
    assert code == 5, (out, err)
    report = json.loads(out)
    assert report["ok"] is False and report["problems"]


def test_numbers_out_of_range_and_a_port_in_use_are_clear_errors(
    capsys: pytest.CaptureFixture[str], uri: str, tmp_path: Path
) -> None:
    """--port 99999 served on port 34463 (modulo 65536), --workers 0 and --metrics -3 were
    taken, a port in use was exit 3 ("not found"), demo --out naming a file a traceback."""
    import socket

    for argv in (
        ["serve", "--port", "99999"],
        ["serve", "--port", "-1"],
        ["serve", "--workers", "0"],
        ["runs", "list", "--metrics", "-3", "--store", uri],
    ):
        with pytest.raises(SystemExit) as usage:
            main(argv)
        assert usage.value.code == 2, argv
        assert "is not from" in capsys.readouterr().err
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "lineagehub", "serve", "--port", str(taken.getsockname()[1]),
             "--store", uri],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        taken.close()
    assert done.returncode == 4 and "could not start" in done.stderr, done.stderr[-500:]
    (tmp_path / "a-file").write_text("x")
    code, _, err = run(capsys, "demo", "--out", str(tmp_path / "a-file"), "--store", uri)
    assert code == 2 and "not a folder" in err and "Traceback" not in err


def test_output_that_cannot_be_written_is_one_line_not_a_traceback(uri: str) -> None:
    """stdout closed (`>&-`) was an AttributeError, /dev/full an OSError traceback, and a
    table piped into `head` exit 1 (rich's answer to a closed pipe), a failure under pipefail."""
    import shlex

    from lineagehub.ingest.client import Client

    with Client(uri) as client, client.batch() as batch:
        for i in range(600):  # a table well over a pipe's 64 KiB buffer
            batch.end_run(batch.start_run(f"run-{i:04d}-" + "x" * 120))
    cli = f"{shlex.quote(sys.executable)} -m lineagehub runs list --store {shlex.quote(uri)}"
    cli += " --limit 500"
    for redirect, code, said in (
        (">&-", 4, "standard output is closed"),
        ("> /dev/full", 1, "No space left on device"),
        ("--json > /dev/full", 1, "No space left on device"),
    ):
        done = subprocess.run(
            ["bash", "-c", f"{cli} {redirect}"], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == code and said in done.stderr, (redirect, done.stderr[-600:])
        assert "Traceback" not in done.stderr
    piped = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {cli} --metrics 8 | head -c 10 > /dev/null"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr[-600:]


def test_usage_errors_asked_for_json_are_json(capsys: pytest.CaptureFixture[str], uri: str) -> None:
    """The README: errors with --json are {"error": {...}} on stderr; argparse's usage errors
    were its multi-line usage text."""
    for argv in (["runs", "list", "--limit", "abc", "--json"], ["bogus", "--json"]):
        with pytest.raises(SystemExit) as usage:
            main(argv)
        assert usage.value.code == 2
        error = json.loads(capsys.readouterr().err)["error"]
        assert error["code"] == "USAGE" and error["message"], argv
    with pytest.raises(SystemExit):
        main(["runs", "list", "--limit", "abc"])
    assert capsys.readouterr().err.startswith("usage:")  # without --json, argparse's own
