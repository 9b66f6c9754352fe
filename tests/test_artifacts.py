"""Content-addressed artifact stores: one suite over ``file://`` and ``s3://``.

The S3 cases run against a real S3 API server (moto's, in a subprocess on 127.0.0.1, on a
port the OS picks), reached over HTTP by an unpatched boto3 with dummy credentials: what is
tested is the wire protocol, multipart uploads and copies included, not a mock.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import multiprocessing
import os
import queue
import socket
import stat
import subprocess
import sys
import threading
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx
import pytest

from lineagehub import artifacts
from lineagehub.artifacts import (
    ArtifactInfo,
    ArtifactStore,
    FileArtifactStore,
    S3ArtifactStore,
    digest_bytes,
    digest_file,
    hash_file,
    open_artifact_store,
    register_artifact_store,
    supported_artifact_schemes,
)
from lineagehub.graph.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    HubError,
    IntegrityError,
    NotFoundError,
    ValidationError,
)

MiB = 1024 * 1024
#: Dummy credentials; the secret must never show up in an error message.
ACCESS_KEY = "lineagehub-test-key"
SECRET_KEY = "lineagehub-test-secret-never-shown"
#: Small parts (S3's 5 MiB minimum) so multipart uploads and copies happen on modest data.
S3_OPTIONS: dict[str, Any] = {
    "multipart_threshold": 5 * MiB,
    "multipart_chunksize": 5 * MiB,
    "max_concurrency": 2,
    "copy_threshold": 5 * MiB,
}
MOTO_SERVER = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # serve until the test session closes our stdin (or dies)
server.stop()
"""


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An S3 API server for the whole session: moto's, in its own process (its memory is
    not ours, so the tracemalloc checks below see only the client side)."""
    if importlib.util.find_spec("moto") is None:
        pytest.skip("the S3 tests need moto's server: pip install -e '.[dev]'")
    log_path = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", MOTO_SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    stdout, stdin = proc.stdout, proc.stdin
    assert stdout is not None and stdin is not None
    lines: queue.Queue[str] = queue.Queue()
    # A thread, because pipes cannot be read with a timeout portably.
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        port = int(lines.get(timeout=30))
    except (queue.Empty, ValueError):
        proc.kill()
        pytest.fail(f"moto server did not start: {log_path.read_text()[-2000:]}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials through boto3's normal chain, isolated from the developer's own."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def s3_admin(s3_endpoint: str) -> Iterator[Any]:
    """A client for test set-up only (creating buckets), made once: clients are slow to make."""
    import boto3

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    yield client
    client.close()


@pytest.fixture
def s3_bucket(s3_admin: Any, aws_env: None) -> str:
    """A fresh, empty bucket per test."""
    name = f"lineagehub-test-{uuid.uuid4().hex[:12]}"
    s3_admin.create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["file", "s3"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """How to open the store under test: a URI and options (picklable, for subprocesses)."""
    if request.param == "file":
        return (tmp_path / "artifacts").as_uri(), {}
    bucket = request.getfixturevalue("s3_bucket")
    endpoint = request.getfixturevalue("s3_endpoint")
    return f"s3://{bucket}/team/artifacts", {"endpoint_url": endpoint, **S3_OPTIONS}


@pytest.fixture
def artifact_store(store_spec: tuple[str, dict[str, Any]]) -> Iterator[ArtifactStore]:
    """Every artifact store the shared tests hold to the same behaviour."""
    uri, options = store_spec
    with open_artifact_store(uri, **options) as store:
        yield store


# --------------------------------------------------------------------------- helpers


def content_key(digest: str) -> str:
    hex_digest = digest.removeprefix("sha256:")
    return f"sha256/{hex_digest[:2]}/{hex_digest[2:4]}/{hex_digest}"


def stored_objects(store: ArtifactStore) -> list[str]:
    """Every object in the store's folder or prefix (temporary ones included), relative."""
    if isinstance(store, FileArtifactStore):
        return sorted(
            p.relative_to(store.root).as_posix() for p in store.root.rglob("*") if p.is_file()
        )
    assert isinstance(store, S3ArtifactStore)
    keys = []
    pages = store.client.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=store.prefix + "/"
    )
    for page in pages:
        keys += [obj["Key"][len(store.prefix) + 1 :] for obj in page.get("Contents", [])]
    return sorted(keys)


def overwrite_stored(store: ArtifactStore, digest: str, data: bytes) -> None:
    """Damage the stored copy behind the store's back, as a disk error or a tamperer would."""
    if isinstance(store, FileArtifactStore):
        path = Path(url2pathname(urlsplit(store.uri_for(digest)).path))
        path.chmod(0o644)
        path.write_bytes(data)
    else:
        assert isinstance(store, S3ArtifactStore)
        key = f"{store.prefix}/{content_key(digest)}"
        store.client.put_object(Bucket=store.bucket, Key=key, Body=data)


def count_s3_calls(store: ArtifactStore) -> dict[str, int]:
    """Counts the S3 API calls the store makes from now on (botocore's event hooks)."""
    calls: dict[str, int] = {}
    if isinstance(store, S3ArtifactStore):

        def count(model: Any, **_: Any) -> None:
            calls[model.name] = calls.get(model.name, 0) + 1

        store.client.meta.events.register("before-call.s3", count)
    return calls


def write_random_file(path: Path, size: int) -> str:
    """Writes ``size`` random bytes in 1 MiB chunks; returns their digest."""
    hasher = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            chunk = os.urandom(MiB)
            hasher.update(chunk)
            f.write(chunk)
    return "sha256:" + hasher.hexdigest()


def peak_memory(fn: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


class Trickle(io.RawIOBase):
    """A stream that returns at most 64 KiB per read, as pipes and sockets do."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(64 * 1024 if size < 0 else min(size, 64 * 1024))


def put_in_process(
    uri: str, options: dict[str, Any], path: str, barrier: Any, results: Any
) -> None:
    """One of several processes putting the same file at the same moment."""
    with open_artifact_store(uri, **options) as store:
        barrier.wait(timeout=60)
        info = store.put_file(path)
    results.put((info.digest, info.created))


# --------------------------------------------------------------------------- shared behaviour


def test_round_trip_bytes_file_and_stream(artifact_store: ArtifactStore, tmp_path: Path) -> None:
    data = b"".join(b'{"step": %d, "loss": 0.5}\n' % i for i in range(20_000))
    digest = digest_bytes(data)

    info = artifact_store.put_bytes(data)
    assert info == ArtifactInfo(
        digest=digest, size=len(data), uri=artifact_store.uri_for(digest), created=True
    )
    assert artifact_store.exists(digest)
    assert artifact_store.size(digest) == len(data)
    assert artifact_store.get_bytes(digest) == data
    with artifact_store.open(digest) as reader:
        assert reader.readline() == b'{"step": 0, "loss": 0.5}\n'
        assert reader.read(10) == data[25:35]
        assert reader.read() == data[35:]

    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(200_000))
    from_file = artifact_store.put_file(source)
    assert from_file.digest == digest_file(source) and from_file.created
    with open(source, "rb") as f:
        assert artifact_store.put_stream(f).digest == from_file.digest

    dest = artifact_store.download(from_file.digest, tmp_path / "out" / "weights.bin")
    assert dest == tmp_path / "out" / "weights.bin"
    assert dest.read_bytes() == source.read_bytes()
    assert list(dest.parent.iterdir()) == [dest]  # no temporary file left beside it


def test_empty_artifact(artifact_store: ArtifactStore) -> None:
    info = artifact_store.put_bytes(b"")
    assert info.digest == digest_bytes(b"") and info.size == 0
    assert artifact_store.get_bytes(info.digest) == b""


def test_same_bytes_are_stored_once_under_their_digest(
    artifact_store: ArtifactStore, tmp_path: Path
) -> None:
    data = os.urandom(100_000)
    source = tmp_path / "data.bin"
    source.write_bytes(data)

    first = artifact_store.put_bytes(data)
    again = [
        artifact_store.put_file(source),
        artifact_store.put_stream(io.BytesIO(data)),
        artifact_store.put_bytes(bytearray(data)),
    ]
    assert first.created
    assert all(not info.created and info.digest == first.digest for info in again)
    assert {info.uri for info in again} == {first.uri}
    # One object, at the fanned-out content key, and no temporary leftovers.
    assert stored_objects(artifact_store) == [content_key(first.digest)]
    assert first.uri == f"{artifact_store.uri}/{content_key(first.digest)}"


def test_large_content_is_streamed_in_bounded_memory(
    artifact_store: ArtifactStore, tmp_path: Path
) -> None:
    size = 40 * MiB
    source = tmp_path / "big.bin"
    expected = write_random_file(source, size)
    calls = count_s3_calls(artifact_store)

    info, put_peak = peak_memory(lambda: artifact_store.put_file(source))
    assert (info.digest, info.size, info.created) == (expected, size, True)
    dest, download_peak = peak_memory(
        lambda: artifact_store.download(expected, tmp_path / "copy.bin")
    )
    assert digest_file(dest) == expected

    # The file store holds a chunk or two; S3 uploads hold the parts in flight, about
    # (max_concurrency + 1) x 5 MiB here: both well below the 40 MiB of content.
    put_limit = 24 * MiB if isinstance(artifact_store, S3ArtifactStore) else 8 * MiB
    assert put_peak < put_limit, f"put_file peaked at {put_peak / MiB:.1f} MiB"
    assert download_peak < 8 * MiB, f"download peaked at {download_peak / MiB:.1f} MiB"
    if isinstance(artifact_store, S3ArtifactStore):
        assert calls.get("UploadPart", 0) == 8  # 40 MiB in 5 MiB parts
        assert calls.get("UploadPartCopy", 0) == 8  # above copy_threshold: multipart copy
        assert "PutObject" not in calls
    assert stored_objects(artifact_store) == [content_key(expected)]


def test_short_reads_from_a_stream_still_make_valid_parts(artifact_store: ArtifactStore) -> None:
    data = os.urandom(6 * MiB)  # above the multipart threshold of the S3 case
    info = artifact_store.put_stream(cast(BinaryIO, Trickle(data)))
    assert info.digest == digest_bytes(data)
    assert artifact_store.get_bytes(info.digest) == data


@pytest.mark.parametrize("damage", ["flip a byte", "truncate"])
def test_reads_detect_corruption(
    artifact_store: ArtifactStore, tmp_path: Path, damage: str
) -> None:
    data = os.urandom(300_000)
    info = artifact_store.put_bytes(data)
    bad = (
        data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]
        if damage == "flip a byte"
        else data[:-7]
    )
    overwrite_stored(artifact_store, info.digest, bad)

    with pytest.raises(IntegrityError, match=info.digest):
        artifact_store.get_bytes(info.digest)
    with artifact_store.open(info.digest) as reader, pytest.raises(IntegrityError):
        while reader.read(4096):
            pass
    # A caller that reads exactly the stored size and never asks past it is told too.
    with artifact_store.open(info.digest) as reader, pytest.raises(IntegrityError):
        reader.read(artifact_store.size(info.digest))

    dest = tmp_path / "out" / "model.bin"
    with pytest.raises(IntegrityError):
        artifact_store.download(info.digest, dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # the temporary file is gone too

    if damage == "truncate":
        # A stored copy of the wrong size cannot be the content: a new put repairs it.
        assert artifact_store.put_bytes(data).created
        assert artifact_store.get_bytes(info.digest) == data


def test_unknown_digest_is_not_found(artifact_store: ArtifactStore, tmp_path: Path) -> None:
    digest = digest_bytes(b"never stored")
    assert not artifact_store.exists(digest)
    dest = tmp_path / "never.bin"
    calls: list[Callable[[str], object]] = [
        artifact_store.open,
        artifact_store.get_bytes,
        artifact_store.size,
        artifact_store.delete,
        lambda d: artifact_store.download(d, dest),
    ]
    for call in calls:
        with pytest.raises(NotFoundError) as caught:
            call(digest)
        assert caught.value.ids == [digest]
    artifact_store.delete(digest, missing_ok=True)
    assert not dest.exists()


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "abc",
        "sha256:" + "0" * 63,
        "sha256:" + "g" * 64,
        "sha256:" + "A" * 64,
        "SHA256:" + "a" * 64,
        "md5:" + "a" * 32,
        "a" * 64,
        None,
        42,
    ],
)
def test_malformed_digest_is_a_validation_error(artifact_store: ArtifactStore, digest: Any) -> None:
    for method in ("exists", "open", "get_bytes", "size", "delete", "uri_for"):
        with pytest.raises(ValidationError) as caught:
            getattr(artifact_store, method)(digest)
        assert caught.value.field == "digest", method


def test_local_file_errors_name_the_path(artifact_store: ArtifactStore, tmp_path: Path) -> None:
    # A local path is the caller's input, not a hub object: ValidationError, not NotFound.
    missing = tmp_path / "no-such-file.bin"
    with pytest.raises(ValidationError, match=r"no-such-file\.bin") as caught:
        artifact_store.put_file(missing)
    assert caught.value.field == "path"
    with pytest.raises(ValidationError) as caught:
        artifact_store.put_file(tmp_path)
    assert caught.value.field == "path"
    with pytest.raises(ValidationError):
        digest_file(missing)


def test_hash_file_is_the_one_file_digest(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4099  # not a multiple of any chunk size below
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    for chunk_size in (1, 7, 4096, artifacts.CHUNK_SIZE, 10 * len(data)):
        assert hash_file(path, chunk_size) == (digest_bytes(data), len(data))
    assert hash_file(str(path)) == (digest_file(path), len(data))
    (tmp_path / "empty").write_bytes(b"")
    assert hash_file(tmp_path / "empty") == (digest_bytes(b""), 0)
    # Dataset fingerprints hash files with the same function (without the prefix).
    from lineagehub.ingest.datasets import fingerprint

    assert fingerprint(path).digest == digest_bytes(data)
    with pytest.raises(ValidationError, match=r"no-such-file") as caught:
        hash_file(tmp_path / "no-such-file")
    assert caught.value.field == "path"
    with pytest.raises(ValidationError) as caught:
        hash_file(tmp_path, field="data")
    assert caught.value.field == "data"


def test_text_is_refused(artifact_store: ArtifactStore) -> None:
    with pytest.raises(ValidationError) as caught:
        artifact_store.put_bytes(cast(Any, "text"))
    assert caught.value.field == "data"
    with pytest.raises(ValidationError) as caught:
        artifact_store.put_stream(cast(Any, io.StringIO("text")))
    assert caught.value.field == "stream"
    assert stored_objects(artifact_store) == []


def test_delete(artifact_store: ArtifactStore) -> None:
    info = artifact_store.put_bytes(b"obsolete checkpoint")
    artifact_store.delete(info.digest)
    assert not artifact_store.exists(info.digest)
    assert stored_objects(artifact_store) == []
    assert artifact_store.put_bytes(b"obsolete checkpoint").created


def test_concurrent_puts_from_threads(artifact_store: ArtifactStore) -> None:
    data = os.urandom(6 * MiB)
    barrier = threading.Barrier(4)

    def put(_: int) -> ArtifactInfo:
        barrier.wait(timeout=30)
        return artifact_store.put_stream(io.BytesIO(data))

    with ThreadPoolExecutor(4) as pool:
        infos = list(pool.map(put, range(4)))
    assert {info.digest for info in infos} == {digest_bytes(data)}
    assert stored_objects(artifact_store) == [content_key(digest_bytes(data))]
    assert artifact_store.get_bytes(infos[0].digest) == data
    created = sum(info.created for info in infos)
    # The file store knows exactly who won (hard links refuse to overwrite); S3 racers may
    # each copy the same bytes into place, so more than one may say it created them.
    assert created == 1 if isinstance(artifact_store, FileArtifactStore) else created >= 1


# --------------------------------------------------------------------------- file://


def test_file_store_content_is_read_only(tmp_path: Path) -> None:
    store = open_artifact_store(tmp_path / "store")
    info = store.put_bytes(b"frozen")
    path = tmp_path / "store" / content_key(info.digest)
    assert path.read_bytes() == b"frozen"
    assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0


def test_file_store_concurrent_puts_from_processes(tmp_path: Path) -> None:
    # Processes matter for the file store (its atomicity is the file system's); for S3 the
    # server arbitrates and the thread test above already races real requests.
    source = tmp_path / "shared.bin"
    digest = write_random_file(source, 6 * MiB)
    uri = (tmp_path / "artifacts").as_uri()
    context = multiprocessing.get_context("spawn")  # no fork of a threaded test process
    barrier = context.Barrier(4)
    results = context.Queue()
    workers = [
        context.Process(target=put_in_process, args=(uri, {}, str(source), barrier, results))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0

    assert {d for d, _ in outcomes} == {digest}
    assert sum(c for _, c in outcomes) == 1  # the hard link lets exactly one win
    with open_artifact_store(uri) as store:
        assert stored_objects(store) == [content_key(digest)]
        assert store.get_bytes(digest) == source.read_bytes()


def test_file_store_uris_and_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "store"
    for spec in (root.as_uri(), f"file://localhost{root.as_posix()}", str(root), root):
        store = open_artifact_store(spec)
        assert isinstance(store, FileArtifactStore) and store.root == root
        assert store.uri == root.as_uri()
    monkeypatch.chdir(tmp_path)
    relative = open_artifact_store("relative/store")
    assert (
        isinstance(relative, FileArtifactStore) and relative.root == tmp_path / "relative" / "store"
    )
    for bad in ("file://fileserver/share", "file:relative/store"):
        with pytest.raises(ConfigError, match="file:///absolute"):
            open_artifact_store(bad)


def test_file_store_on_an_unusable_folder_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    with pytest.raises(ConfigError, match="a-file"):
        open_artifact_store(blocker / "store")


# --------------------------------------------------------------------------- s3://


def test_s3_uris_and_keys(aws_env: None) -> None:
    digest = digest_bytes(b"x")
    with open_artifact_store("s3://models") as whole:  # opening sends nothing
        assert isinstance(whole, S3ArtifactStore) and whole.uri == "s3://models"
        assert whole.uri_for(digest) == f"s3://models/{content_key(digest)}"
    with open_artifact_store("s3://models/team/a/", region_name="eu-west-1") as nested:
        assert nested.uri == "s3://models/team/a"
        assert nested.uri_for(digest) == f"s3://models/team/a/{content_key(digest)}"
    for bad in ("s3://", "s3:///prefix", "s3://bucket/p?endpoint=http://x", "s3://k:s@bucket"):
        with pytest.raises(ConfigError) as caught:
            open_artifact_store(bad)
        assert "k:s@" not in str(caught.value)


def test_s3_put_file_uploads_nothing_when_stored(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    source = tmp_path / "dataset.parquet"
    source.write_bytes(os.urandom(50_000))
    uri = f"s3://{s3_bucket}/p"
    with open_artifact_store(uri, endpoint_url=s3_endpoint, **S3_OPTIONS) as store:
        assert store.put_file(source).created
        calls = count_s3_calls(store)
        assert not store.put_file(source).created
    assert calls == {"HeadObject": 1}  # hashed locally, looked up, nothing sent


def test_s3_missing_bucket_is_a_config_error(s3_endpoint: str, aws_env: None) -> None:
    digest = digest_bytes(b"x")
    with open_artifact_store("s3://no-such-bucket-here/p", endpoint_url=s3_endpoint) as store:
        for call in (
            lambda: store.put_bytes(b"x"),
            lambda: store.exists(digest),
            lambda: store.get_bytes(digest),
            lambda: store.size(digest),
        ):
            with pytest.raises(ConfigError, match="no-such-bucket-here") as caught:
                call()
            assert SECRET_KEY not in str(caught.value) and ACCESS_KEY not in str(caught.value)


def test_s3_unreachable_endpoint_is_retryable(aws_env: None) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        open_artifact_store(
            "s3://bucket",
            endpoint_url=f"http://127.0.0.1:{port}",
            client_config={"retries": {"max_attempts": 1}, "connect_timeout": 2},
        ) as store,
        pytest.raises(BackendUnavailable) as caught,
    ):
        store.exists(digest_bytes(b"x"))
    assert caught.value.retryable


def test_s3_settings_that_cannot_work_are_config_errors_at_open(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An endpoint without a scheme (a password in it never shown), a bucket name S3 refuses,
    client options botocore does not know, an empty region: a ConfigError when the store is
    opened. They were Python tracebacks (ValueError, TypeError) or, for the bucket, a
    BackendError at the first call quoting botocore's pattern."""
    for endpoint in ("minio:SECRET@127.0.0.1:9000", "127.0.0.1:9000", "http://", "http//h:9000"):
        with pytest.raises(ConfigError, match="LINEAGEHUB_S3_ENDPOINT_URL") as caught:
            open_artifact_store("s3://bucket/p", endpoint_url=endpoint)
        assert "SECRET" not in str(caught.value), caught.value
    for bucket in ("bad:bucket", "bad%20bucket", "a" * 300):
        with pytest.raises(ConfigError, match="not a valid S3 bucket name"):
            S3ArtifactStore(bucket, endpoint_url="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="client_config"):
        open_artifact_store(
            "s3://bucket", endpoint_url="http://127.0.0.1:9", client_config={"bogus": 1}
        )
    monkeypatch.setenv("AWS_DEFAULT_REGION", "")  # set, but empty
    with pytest.raises(ConfigError, match="region"):
        open_artifact_store("s3://bucket")


def test_s3_calls_to_an_endpoint_that_never_answers_end(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An endpoint that accepts connections and never answers held one call for six minutes
    (botocore's 60 s timeouts over five attempts): calls are bounded by the store's own
    attempts and timeouts (here made short), and end BackendUnavailable."""
    import lineagehub.artifacts as artifacts_module

    with open_artifact_store("s3://bucket", endpoint_url="http://127.0.0.1:9") as store:
        config = store.client.meta.config  # the defaults, not botocore's 60 s
        assert config.read_timeout == artifacts_module.S3_READ_TIMEOUT_S == 30.0
        assert config.connect_timeout == artifacts_module.S3_CONNECT_TIMEOUT_S == 10.0
    monkeypatch.setattr(artifacts_module, "S3_READ_TIMEOUT_S", 0.2)
    monkeypatch.setattr(artifacts_module, "S3_CONNECT_TIMEOUT_S", 0.2)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # accepts (the kernel does), never reads nor answers
        port = silent.getsockname()[1]
        with open_artifact_store("s3://bucket", endpoint_url=f"http://127.0.0.1:{port}") as store:
            config = store.client.meta.config
            assert (config.read_timeout, config.connect_timeout) == (0.2, 0.2)
            assert config.retries["total_max_attempts"] == artifacts_module.S3_ATTEMPTS == 3
            with pytest.raises(BackendUnavailable):
                store.exists(digest_bytes(b"x"))


def test_s3_error_translation(aws_env: None) -> None:
    # The codes a real S3 answers that the test server cannot be made to: the table only.
    from botocore.exceptions import ClientError

    store = open_artifact_store("s3://models/p")
    assert isinstance(store, S3ArtifactStore)
    digest = digest_bytes(b"x")
    table: list[tuple[str, int, type[Exception]]] = [
        ("NoSuchKey", 404, NotFoundError),
        ("NoSuchBucket", 404, ConfigError),
        ("AccessDenied", 403, ConfigError),
        ("InvalidAccessKeyId", 403, ConfigError),
        ("SlowDown", 503, BackendUnavailable),
        ("InternalError", 500, BackendUnavailable),
        ("TooManyRequests", 429, BackendUnavailable),
        ("InvalidObjectState", 403, BackendError),
        ("EntityTooSmall", 400, BackendError),
    ]
    for code, status, expected in table:
        error = ClientError(
            {
                "Error": {"Code": code, "Message": "..."},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            "GetObject",
        )
        mapped = store._translate(error, op="get", digest=digest)
        assert type(mapped) is expected, code
        assert isinstance(mapped, HubError)
        assert "s3://models/p" in str(mapped) and SECRET_KEY not in str(mapped)
        assert mapped.retryable is (expected is BackendUnavailable)
    # a HEAD's 403 has no code: it cannot tell a bad key from a missing permission, and
    # says both (a GET on the same bad key said "rejected the credentials")
    head = ClientError(
        {"Error": {"Code": "403"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "HeadObject"
    )
    said = str(store._translate(head, op="head", digest=digest))
    assert "permissions" in said and "credentials are not valid" in said, said
    store.close()


# --------------------------------------------------------------------------- by URI


def test_unknown_scheme_and_options_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        open_artifact_store("ftp://user:pw@host/artifacts")
    assert "file" in str(caught.value) and "s3" in str(caught.value)
    assert "pw" not in str(caught.value)
    with pytest.raises(ConfigError, match="fsync"):
        open_artifact_store(tmp_path, compression="zstd")
    with pytest.raises(ConfigError, match="endpoint_url"):
        open_artifact_store("s3://bucket", endpoint="http://x")
    with pytest.raises(ConfigError):
        open_artifact_store("")


def test_register_artifact_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(artifacts, "_FACTORIES", dict(artifacts._FACTORIES))
    seen: list[tuple[str, dict[str, Any]]] = []

    def factory(uri: str, **options: Any) -> ArtifactStore:
        seen.append((uri, options))
        return FileArtifactStore(tmp_path / "plugged")

    register_artifact_store("Vault", factory)
    assert "vault" in supported_artifact_schemes()
    store = open_artifact_store("vault://x/y", tier="cold")
    assert isinstance(store, FileArtifactStore)
    assert seen == [("vault://x/y", {"tier": "cold"})]


def test_leftovers_of_killed_puts_and_uploads_expire_after_a_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A put or an upload killed midway left its temporary file for ever (the module said
    they expire after a day): the next put removes its store's old ones, a server starting
    the old upload spools. Younger ones (another process's, in flight) stay."""
    import tempfile
    import time

    from lineagehub.interfaces.server import _sweep_upload_spools

    store = FileArtifactStore(tmp_path / "store")
    store.put_bytes(b"first")  # makes tmp/
    day_ago = time.time() - 25 * 3600
    old, young = store.root / "tmp" / "put-old.part", store.root / "tmp" / "put-young.part"
    for left in (old, young):
        left.write_bytes(b"x" * 100)
    os.utime(old, (day_ago, day_ago))
    fresh = FileArtifactStore(tmp_path / "store")  # another process's store object
    fresh.put_bytes(b"second")
    assert not old.exists() and young.exists()

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-tmp"))
    (tmp_path / "system-tmp").mkdir()
    spools = [tmp_path / "system-tmp" / f"lineagehub-upload-{n}" for n in ("old", "young")]
    for spool in spools:
        spool.mkdir()
        (spool / "body").write_bytes(b"y" * 100)
    os.utime(spools[0], (day_ago, day_ago))
    _sweep_upload_spools()
    assert not spools[0].exists() and spools[1].exists()


def test_a_model_logged_again_repairs_a_damaged_stored_copy(tmp_path: Path) -> None:
    """A stored copy damaged in place (the same size: a disk error, a hand) stayed damaged
    whatever was put again, and a model logged from the good file was registered on the bad
    copy: a model logged again now loads (each kind of put: the test below)."""
    from lineagehub.ingest.client import Client

    store = FileArtifactStore(tmp_path / "artifacts")
    good = os.urandom(4096)
    source = tmp_path / "weights.bin"
    source.write_bytes(good)
    digest = store.put_bytes(good).digest
    with Client(f"sqlite:///{tmp_path / 'hub.db'}", artifacts=store.uri) as client:
        with client.start_run("train", capture=False) as run:
            version = run.log_model(source, name="m", flavor="path")
        overwrite_stored(store, digest, bytes(reversed(good)))
        with client.start_run("again", capture=False) as run:
            again = run.log_model(source, name="m", flavor="path")
        assert again.artifact_digest == version.artifact_digest == digest
        loaded = client.download(f"m/{again.version}", tmp_path / "loaded.bin")
        assert loaded.read_bytes() == good


def test_every_put_repairs_a_same_size_damaged_copy_in_every_store(
    artifact_store: ArtifactStore, tmp_path: Path
) -> None:
    """A copy overwritten with other bytes of the same size stayed damaged: puts of the
    right bytes answered "already stored" by its size, in a folder and on S3. Each kind of
    put leaves the right bytes in place, and a put of an intact copy writes nothing."""
    good = os.urandom(4096)
    source = tmp_path / "weights.bin"
    source.write_bytes(good)
    digest = artifact_store.put_bytes(good).digest
    puts = {
        "put_bytes": lambda: artifact_store.put_bytes(good),
        "put_file": lambda: artifact_store.put_file(source),
        "put_stream": lambda: artifact_store.put_stream(io.BytesIO(good)),
    }
    for name, put in puts.items():
        overwrite_stored(artifact_store, digest, bytes(reversed(good)))
        with pytest.raises(IntegrityError):
            artifact_store.get_bytes(digest)
        info = put()
        assert info.digest == digest, name
        if isinstance(artifact_store, FileArtifactStore):
            assert info.created is False, name  # the folder store repairs in place
        assert artifact_store.get_bytes(digest) == good, name  # repaired
        calls = count_s3_calls(artifact_store)
        assert artifact_store.put_file(source).created is False  # found intact
        assert artifact_store.put_bytes(good).created is False
        assert "CopyObject" not in calls and "PutObject" not in calls, calls


def test_a_damaged_artifact_too_large_to_check_first_downloads_as_an_integrity_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the size a server checks before answering (64 MiB; 1 MiB here), a damaged
    artifact was cut off at its last chunk: the SDK said BackendUnavailable (retryable, for
    ever) and the server logged two tracebacks. It is sent whole now: the client's own check
    fails, an IntegrityError, no file left; the server logs one line."""
    from http_server import HubServer

    import lineagehub.interfaces.server as server_module
    from lineagehub.graph import open_store
    from lineagehub.ingest.client import Client

    monkeypatch.setattr(server_module, "VERIFY_FIRST_BYTES", 1024 * 1024)
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    artifacts = FileArtifactStore(tmp_path / "artifacts")
    data = os.urandom(3 * 1024 * 1024)
    info = artifacts.put_bytes(data)
    damaged = bytearray(data)
    damaged[-10] ^= 0xFF  # in the last chunk
    overwrite_stored(artifacts, info.digest, bytes(damaged))
    with HubServer(server_module.create_app(store=store, artifacts=artifacts)) as server:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            got = http.get(f"/artifacts/{info.digest}")
            assert got.status_code == 200 and got.content == bytes(damaged)  # whole
        with Client(server.url) as client, pytest.raises(IntegrityError):
            client.download(info.digest, tmp_path / "copy.bin")
        assert not (tmp_path / "copy.bin").exists()
        with Client(server.url) as client:  # intact bytes still stream as before
            good = client.backend.artifacts.put_bytes(os.urandom(2 * 1024 * 1024))
            client.download(good.digest, tmp_path / "good.bin")
            assert digest_file(tmp_path / "good.bin") == good.digest
    store.close()


def test_a_damaged_artifact_of_some_megabytes_downloads_as_an_integrity_error(
    tmp_path: Path,
) -> None:
    """Over the first chunk (1 MiB), a damaged artifact was answered 200 and cut off midway:
    the SDK said BackendUnavailable (retryable, though no retry can succeed). Verified before
    answering now (up to 64 MiB): a 500 INTEGRITY the SDK raises as IntegrityError."""
    from http_server import HubServer

    from lineagehub.graph import open_store
    from lineagehub.ingest.client import Client
    from lineagehub.interfaces.server import create_app

    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    artifacts = FileArtifactStore(tmp_path / "artifacts")
    data = os.urandom(3 * 1024 * 1024)
    info = artifacts.put_bytes(data)
    damaged = bytearray(data)
    damaged[-10] ^= 0xFF  # past the first chunk
    overwrite_stored(artifacts, info.digest, bytes(damaged))
    with HubServer(create_app(store=store, artifacts=artifacts)) as server:
        with Client(server.url) as client, pytest.raises(IntegrityError):
            client.download(info.digest, tmp_path / "copy.bin")
        assert not (tmp_path / "copy.bin").exists()
    store.close()
