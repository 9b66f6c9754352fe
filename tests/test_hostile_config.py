"""Hostile or careless configuration: no credential leaks into an answer, a repr or a log
line, and /health tells the truth about every store."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
import pytest
from http_server import HubServer

from lineagehub import Settings
from lineagehub.artifacts import open_artifact_store
from lineagehub.graph import open_store
from lineagehub.graph.uri import scrub_credentials
from lineagehub.interfaces.server import create_app

PASSWORD = "S3cretPASS"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))


def test_scrub_credentials() -> None:
    text = 'Could not connect to the endpoint URL: "http://user:PASS@host:9000/b/k" or s3://a:b@c'
    assert scrub_credentials(text) == (
        'Could not connect to the endpoint URL: "http://user:***@host:9000/b/k" or s3://a:***@c'
    )


def test_settings_never_show_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINEAGEHUB_S3_ENDPOINT_URL", f"http://user:{PASSWORD}@host")
    monkeypatch.setenv("LINEAGEHUB_URL", f"https://ann:{PASSWORD}@hub.example")
    settings = Settings()
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)
    assert "user:***@host" in repr(settings)
    assert settings.s3_endpoint_url == f"http://user:{PASSWORD}@host"  # the value is intact


def test_an_unreachable_s3_store_neither_leaks_nor_passes_for_healthy(
    aws_env: None, tmp_path: Path
) -> None:
    endpoint = f"http://user:{PASSWORD}@127.0.0.1:{closed_port()}"
    artifacts = open_artifact_store(
        "s3://bucket/prefix",
        endpoint_url=endpoint,
        client_config={"retries": {"max_attempts": 1}, "connect_timeout": 2},
    )
    store = open_store("sqlite://")
    with (
        HubServer(create_app(store=store, artifacts=artifacts)) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        put = http.put(
            "/artifacts",
            content=b"bytes",
            headers={"content-type": "application/octet-stream"},
        )
        assert put.status_code == 503, put.text
        assert PASSWORD not in put.text
        assert put.json()["errors"][0]["extensions"]["code"] == "BACKEND_UNAVAILABLE"
        assert "user:***@127.0.0.1" in put.text
        health = http.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        assert health.json()["errors"][0]["extensions"]["code"] == "BACKEND_UNAVAILABLE"
        assert PASSWORD not in health.text
    store.close()
