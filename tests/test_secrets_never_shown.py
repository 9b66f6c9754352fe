"""Secrets never reach a log line, an error or ``/health``: a real ``lineagehub serve`` with
every kind configured (the store URI's password, the Neo4j password, S3 keys, the audit key,
a webhook's secret and URL credentials, a bearer token on every request) answers failing and
succeeding requests; every line it logs (its own loggers at DEBUG, uvicorn's access log) and
every answer is searched for each secret."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_server import HubServer

pytest.importorskip("moto", reason="the secrets test needs moto's S3 server (the dev extras)")

SECRETS = {
    "store password": "St0rePassw0rd-x1",
    "neo4j password": "Ne04jPassw0rd-x2",
    "S3 access key id": "AKIASECRETKEYID0X3",
    "S3 secret key": "S3cretAccessKey/x4+abcdef",
    "audit key": "AuditKey-x5-0123456789",
    "webhook secret": "WebhookSigningSecret-x6",
    "webhook URL password": "HookUrlPassw0rd-x7",
    "token": "lh_ApiTokenSecret-x8-abcdefghijkl",
}

# The server under test: our loggers and every other at INFO go to stderr, one line each
# (uvicorn adds its own handlers for its loggers, the access log included). Third-party
# libraries stay at INFO: their DEBUG is wire tracing an operator turns on by hand.
SERVE = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                    format="LOG %(name)s %(levelname)s %(message)s")
logging.getLogger("lineagehub").setLevel(logging.DEBUG)
from lineagehub.interfaces.cli import main
sys.exit(main(sys.argv[1:]))
"""

MOTO = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def found(text: str) -> list[str]:
    return [what for what, secret in SECRETS.items() if secret in text]


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", MOTO],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    lines: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{int(lines.get(timeout=30))}"
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Failing:
    """A webhook receiver that answers 500 to everything (and counts the calls)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"boom"})


def env(tmp_path: Path, s3: str, hook: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LINEAGEHUB_"))}
    host = hook.split("://", 1)[1]
    return {
        **keep,
        "AWS_ACCESS_KEY_ID": SECRETS["S3 access key id"],
        "AWS_SECRET_ACCESS_KEY": SECRETS["S3 secret key"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "LINEAGEHUB_DATA_DIR": str(tmp_path / "data"),
        "LINEAGEHUB_ARTIFACTS": "s3://secrets-test/artifacts",
        "LINEAGEHUB_S3_ENDPOINT_URL": s3,
        "LINEAGEHUB_NEO4J_PASSWORD": SECRETS["neo4j password"],
        "LINEAGEHUB_AUDIT_KEY": SECRETS["audit key"],
        "LINEAGEHUB_WEBHOOKS": json.dumps(
            [
                {
                    "url": f"http://hook:{SECRETS['webhook URL password']}@{host}/hook",
                    "secret": SECRETS["webhook secret"],
                    "events": "*",
                    "max_attempts": 1,
                }
            ]
        ),
    }


def test_no_secret_in_logs_errors_or_health(tmp_path: Path, s3: str) -> None:
    import boto3

    boto3.session.Session().client(
        "s3",
        endpoint_url=s3,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).create_bucket(Bucket="secrets-test")
    receiver = _Failing()
    with HubServer(receiver) as hook:
        variables = env(tmp_path, s3, hook.url)
        seen: list[str] = []
        # 1. a store whose URI carries a password, and that does not answer: serve fails fast
        port = free_port()
        refused = subprocess.run(
            [sys.executable, "-c", SERVE, "serve", "--port", str(port), "--store",
             f"neo4j://neo4j:{SECRETS['store password']}@127.0.0.1:{free_port()}"],
            env=variables, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert refused.returncode != 0 and "unavailable" in refused.stderr, refused.stderr
        seen += [refused.stdout, refused.stderr]

        # 2. a working server over S3 artifacts, with webhooks; a token on every request
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, "serve", "--port", str(port), "--log-level", "debug",
             "--store", f"sqlite:///{tmp_path / 'hub.db'}"],
            env=variables, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            seen += exercise(f"http://127.0.0.1:{port}", receiver)
        finally:
            proc.send_signal(signal.SIGTERM)
            logs, _ = proc.communicate(timeout=60)
    seen.append(logs)
    # what was captured holds what was logged: start-up, access lines, the failed delivery
    assert "LOG lineagehub.server INFO lineagehub" in logs, logs
    assert '"POST /graphql HTTP/1.1" 200' in logs and '"GET /health HTTP/1.1" 200' in logs
    assert "webhook model_version.created to http://127.0.0.1:" in logs, logs
    assert "HTTP Request: POST http://127.0.0.1:" in logs  # httpx's own line, redacted
    assert "Traceback" not in logs
    everything = "\n".join(seen)
    assert found(everything) == [], [line for line in everything.splitlines() if found(line)]


def exercise(url: str, receiver: _Failing) -> list[str]:
    """Failing and succeeding requests; every answer (headers and body) as text."""
    answers: list[str] = []
    auth = {"authorization": f"Bearer {SECRETS['token']}"}

    def keep(response: httpx.Response) -> httpx.Response:
        answers.append(f"{response.status_code} {dict(response.headers)} {response.text}")
        assert "Traceback" not in response.text
        return response

    with httpx.Client(base_url=url, headers=auth, timeout=30) as http:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = keep(http.get("/health"))
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)  # polling for the listening socket
        assert health.json()["status"] == "ok" and health.json()["artifacts"].startswith("s3://")

        def gql(query: str, **variables: Any) -> dict[str, Any]:
            body: dict[str, Any] = keep(
                http.post("/graphql", json={"query": query, "variables": variables})
            ).json()
            return body

        run = gql('mutation { startRun(input: {name: "s"}) { id } }')["data"]["startRun"]["id"]
        put = keep(
            http.put(
                "/artifacts", content=b"model", headers={"content-type": "application/octet-stream"}
            )
        )
        digest = put.json()["digest"]
        assert keep(http.get(f"/artifacts/{digest}")).content == b"model"
        logged = gql(
            'mutation($run: ID!, $d: String!) { logModel(runId: $run, digest: $d, name: "m") '
            "{ id } }",
            run=run,
            d=digest,
        )
        assert "errors" not in logged, logged
        # failing ones
        assert keep(http.get("/artifacts/sha256:" + "a" * 64)).status_code == 404
        assert keep(http.get("/artifacts/sha256:nope")).status_code == 400
        assert "errors" in gql("{ nope }") and "errors" in gql("query {")
        assert "errors" in gql('mutation { endRun(runId: "run:missing") { id } }')
        assert keep(http.post("/graphql", content=b"{", headers={"content-type": "text/plain"}))
        assert keep(http.get("/graphql", params={"query": "mutation { markStaleRuns }"}))
        assert keep(http.get("/nope")).status_code == 404
        assert keep(http.get("/health", headers={"host": "evil.example"})).status_code == 400
        assert keep(http.get("/graphql", headers={"accept": "text/html"})).status_code == 200
        # the webhook delivery fails (500) and is recorded: wait for it
        deadline = time.monotonic() + 30
        while True:
            deliveries = gql("{ webhookDeliveries { url outcome error statusCode } }")["data"]
            if deliveries["webhookDeliveries"]:
                break
            assert time.monotonic() < deadline, "no webhook delivery recorded"
            time.sleep(0.1)  # polling the dispatcher's record
        assert receiver.calls >= 1
        assert deliveries["webhookDeliveries"][0]["outcome"] == "failed"
        assert keep(http.get("/health")).json()["status"] == "ok"
    return answers


def test_settings_never_show_a_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What a log line or an error message would show of the configuration."""
    from lineagehub import Settings

    for name, value in env(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(
        "LINEAGEHUB_STORE", f"neo4j://neo4j:{SECRETS['store password']}@127.0.0.1:7687"
    )
    monkeypatch.setenv("LINEAGEHUB_URL", f"http://ann:{SECRETS['token']}@127.0.0.1:8000")
    settings = Settings()
    shown = f"{settings!r} {settings} {settings.webhook_configs()!r}"
    assert found(shown) == []
