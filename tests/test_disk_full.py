"""A full disk: a write is refused whole with a clear error, nothing is half-stored, and the
store goes on once there is room again.

The full disk is a small tmpfs mounted for the test (mounting needs root, CAP_SYS_ADMIN); a
filler file leaves a few hundred kilobytes free, and the writes run into the end of them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lineagehub.artifacts import FileArtifactStore
from lineagehub.graph import BackendError, ValidationError, open_store
from lineagehub.ingest.client import Client

DISK = 4 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if mount is None or umount is None:
        pytest.skip("needs the mount and umount programs to make a small file system")
    folder = tmp_path / "disk"
    folder.mkdir()
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(
            "a full disk is simulated by a small tmpfs, and mounting one needs root "
            f"(CAP_SYS_ADMIN): {done.stderr.strip()}"
        )
    try:
        yield folder
    finally:
        subprocess.run([umount, "-l", str(folder)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """A file that takes all the free space of ``folder``'s file system but ``leave`` bytes."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    filler = folder / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def test_a_full_disk_refuses_a_write_whole_and_the_store_goes_on_once_there_is_room(
    small_disk: Path,
) -> None:
    uri = f"sqlite:///{small_disk}/hub.db"
    client = Client(uri, artifacts=(small_disk / "artifacts").as_uri())
    params = {f"p{k}": "v" * 200 for k in range(50)}
    filler = fill(small_disk, leave=320 * 1024)
    written = 0
    with pytest.raises(BackendError, match="the disk is full") as caught:
        for i in range(10_000):
            with client.start_run(f"r{i}", project="p", capture=False) as run:
                run.log_params(params)
            written += 1
    assert "nothing of this write was stored; free space" in caught.value.message
    assert written > 0  # the disk held some runs before it was full

    store = open_store(uri)  # read back from the file, by a store of its own
    try:
        runs = {n.props["name"]: n for n in store.find_nodes("Run", limit=1000).items}
        for i in range(written):
            assert runs[f"r{i}"].props["params"] == params
            assert runs[f"r{i}"].props["status"] == "FINISHED"
        assert set(runs) <= {f"r{i}" for i in range(written + 1)}
        refused = runs.get(f"r{written}")
        if refused is not None:  # started before the disk was full: its params all or none
            assert refused.props.get("params", {}) in ({}, params)
            assert refused.props["status"] == "RUNNING"  # its end was refused too
        assert store.verify_audit().ok
        # Room again: closing the client ends the refused run with what it still holds.
        filler.unlink()
        client.close()
        if refused is not None:
            ended = store.get_nodes([refused.id])[0]
            assert ended is not None and ended.props["status"] != "RUNNING"
            assert ended.props["params"] == params
        assert store.verify_audit().ok
    finally:
        store.close()

    client = Client(uri, artifacts=(small_disk / "artifacts").as_uri())
    with client.start_run("after", project="p", capture=False) as run:
        run.log_params({"lr": 0.1})
    assert client.get_run(run.id).params == {"lr": 0.1}
    client.close()


def test_an_artifact_put_on_a_full_disk_leaves_nothing_and_works_again_with_room(
    small_disk: Path,
) -> None:
    store = FileArtifactStore(small_disk / "artifacts")
    data = os.urandom(1024 * 1024)
    filler = fill(small_disk, leave=64 * 1024)
    with pytest.raises(BackendError, match="the disk is full") as caught:
        store.put_bytes(data)
    assert "nothing was stored" in caught.value.message
    left = [p for p in (small_disk / "artifacts").rglob("*") if p.is_file()]
    assert left == []  # no partial file under the content paths nor in tmp/
    filler.unlink()
    info = store.put_bytes(data)
    with store.open(info.digest) as f:
        assert f.read() == data


def test_a_download_to_a_full_disk_names_the_destination_and_leaves_no_part_file(
    small_disk: Path, tmp_path: Path
) -> None:
    store = FileArtifactStore(tmp_path / "artifacts")
    info = store.put_bytes(os.urandom(1024 * 1024))
    fill(small_disk, leave=64 * 1024)
    dest = small_disk / "out" / "model.bin"
    with pytest.raises(ValidationError, match="nothing was written") as caught:
        store.download(info.digest, dest)
    assert caught.value.field == "dest_path" and str(dest) in caught.value.message
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_an_upload_whose_spool_fills_the_disk_says_so(
    small_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server spools an upload in the system's temporary folder: that disk full was
    "500 INTERNAL: Unexpected error." and a traceback in the server's log."""
    import tempfile

    import httpx
    from http_server import HubServer

    from lineagehub.artifacts import open_artifact_store
    from lineagehub.graph import open_store
    from lineagehub.interfaces.server import create_app

    monkeypatch.setattr(tempfile, "tempdir", str(small_disk))
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    app = create_app(store=store, artifacts=open_artifact_store((tmp_path / "a").as_uri()))
    filler = fill(small_disk, leave=64 * 1024)
    with HubServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        body = os.urandom(1024 * 1024)
        headers = {"content-type": "application/octet-stream"}
        refused = http.put("/artifacts", content=body, headers=headers)
        (error,) = refused.json()["errors"]
        assert error["extensions"]["code"] == "BACKEND", refused.text
        assert "temporary folder is full" in error["message"]
        filler.unlink()
        assert http.put("/artifacts", content=body, headers=headers).status_code == 200
    store.close()
