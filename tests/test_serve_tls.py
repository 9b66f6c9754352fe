"""``lineagehub serve --tls-cert FILE --tls-key FILE``: HTTPS without a proxy, checked with a
self-signed certificate made here and a real HTTPS request verified against it."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lineagehub.interfaces.cli import main

x509 = pytest.importorskip("cryptography.x509", reason="the TLS tests need cryptography")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

EXE = Path(sys.executable).parent / "lineagehub"
SDK = """
import sys
from lineagehub import Client
client = Client(sys.argv[1])
run = client.start_run("tls-run")
run.end()
print(client.get_run(run.id).name)
client.close()
"""


def self_signed(folder: Path, name: str = "hub") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lineagehub test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_https_verified_against_its_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [str(EXE), "serve", "--port", str(port), "--store", f"sqlite:///{tmp_path / 'hub.db'}",
         "--artifacts", (tmp_path / "artifacts").as_uri(),
         "--tls-cert", str(cert), "--tls-key", str(key)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    trusted = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"https://127.0.0.1:{port}/health", verify=trusted, timeout=2)
                break
            except httpx.ConnectError:
                time.sleep(0.1)  # polling for the listening socket
        assert health is not None and health.json()["status"] == "ok"
        with httpx.Client(base_url=f"https://localhost:{port}", verify=trusted) as client:
            answer = client.post("/graphql", json={"query": "{ __typename }"})
            assert answer.json() == {"data": {"__typename": "Query"}}
            assert answer.http_version == "HTTP/1.1" and answer.url.scheme == "https"
        # the SDK (and so the CLI) trusts a private CA through SSL_CERT_FILE
        sdk = subprocess.run(
            [sys.executable, "-c", SDK, f"https://127.0.0.1:{port}"],
            env={**os.environ, "SSL_CERT_FILE": str(cert)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sdk.returncode == 0 and sdk.stdout.strip() == "tls-run", sdk.stderr
        # a client that does not trust the certificate refuses it; plain HTTP gets no answer
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"https://127.0.0.1:{port}/health", timeout=5)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert f"https://127.0.0.1:{port}/graphql" in err


def test_bad_tls_options_are_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = self_signed(tmp_path)
    _, other_key = self_signed(tmp_path, "other")
    store = ["--store", f"sqlite:///{tmp_path / 'hub.db'}"]
    cases = {
        ("--tls-cert", str(cert)): "give both --tls-cert and --tls-key",
        ("--tls-key", str(key)): "give both --tls-cert and --tls-key",
        ("--tls-cert", str(tmp_path / "nope.crt"), "--tls-key", str(key)): "no such file",
        ("--tls-cert", str(cert), "--tls-key", str(other_key)): "cannot load",
        ("--tls-cert", str(key), "--tls-key", str(cert)): "cannot load",
    }
    secret = key.read_text().splitlines()[1]
    for flags, message in cases.items():
        assert main(["serve", *store, *flags]) == 4, flags
        _, err = capsys.readouterr()
        assert message in err, (flags, err)
        assert secret not in err and "Traceback" not in err
