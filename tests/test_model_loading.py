"""Models load back, artifacts download, directories travel, custom objects go with the model:
on both stores, embedded and through a real server."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import tarfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from model_hub import Hub
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

import lineagehub as lh
from lineagehub.graph import HubError, IntegrityError, ValidationError
from lineagehub.ingest.flavors import (
    EnvironmentMismatchWarning,
    Flavor,
    capture_custom_objects,
    extract_archive,
    register_flavor,
    unregister_flavor,
)
from lineagehub.ingest.run import DIRECTORY_MEDIA_TYPE


@pytest.fixture
def hub(store_backend: str, tmp_path: Path) -> Iterator[Hub]:
    with contextlib.ExitStack() as stack:
        yield Hub(tmp_path / "hub", stack, store_backend)


@pytest.fixture(params=["embedded", "remote"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Doubler(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """A user-defined transformer: its source must travel with the model."""

    def fit(self, X: Any, y: Any = None) -> Doubler:
        return self

    def transform(self, X: Any) -> Any:
        return X * 2


def clip_features(X: Any) -> Any:
    return np.clip(X, 0, 1)


def _data() -> tuple[Any, Any]:
    rng = np.random.default_rng(7)
    X = rng.random((60, 3))
    return X, (X[:, 0] + X[:, 1] > 1).astype(int)


def _pipeline() -> Pipeline:
    X, y = _data()
    steps = [("clip", FunctionTransformer(clip_features)), ("double", Doubler())]
    return Pipeline([*steps, ("lr", LogisticRegression())]).fit(X, y)


def _graphql(hub: Hub, query: str) -> dict[str, Any]:
    answer = httpx.post(hub.serve().url + "/graphql", json={"query": query}, timeout=30).json()
    assert "errors" not in answer, answer
    data: dict[str, Any] = answer["data"]
    return data


def test_a_model_loads_back_by_alias_with_its_custom_objects(hub: Hub, mode: str) -> None:
    client = hub.client(mode)
    model = _pipeline()
    with client.start_run("train", capture=False) as run:
        version = run.log_model(model, name="churn")
    client.set_alias("churn/1", "champion")
    assert version.flavor == "sklearn"
    meta = version.metadata or {}
    assert meta["layout"] == "file" and meta["data"]["class"] == "sklearn.pipeline.Pipeline"
    assert meta["environment"]["packages"]["scikit-learn"]
    # stored as before flavors: the pickle itself
    assert isinstance(pickle.loads(client.artifacts.get_bytes(version.artifact_digest)), Pipeline)

    X, _ = _data()
    for ref in ("churn@champion", "churn/1", "mv:churn/1", version):
        loaded = client.load_model(ref)
        assert isinstance(loaded, Pipeline)
        assert (loaded.predict(X) == model.predict(X)).all()

    names = sorted((c["module"], c["qualname"]) for c in meta["custom_objects"])
    assert names == [(__name__, "Doubler"), (__name__, "clip_features")]
    # each is an Artifact holding the source, that the version is DERIVED_FROM
    sub = client.lineage(["mv:churn/1"], upstream_depth=1, edge_kinds=["DERIVED_FROM"])
    found = [t.node for t in sub.nodes.values() if t.node.label == "Artifact"]
    sources = {n.props["data"]["qualname"]: n for n in found}
    assert set(sources) == {"Doubler", "clip_features"}
    assert "def transform(self, X: Any) -> Any:" in sources["Doubler"].props["data"]["source"]
    assert sources["Doubler"].props["kind"] == "source-code"
    text = client.artifacts.get_bytes(sources["clip_features"].props["digest"]).decode()
    assert text.startswith("def clip_features(X: Any) -> Any:")
    if mode == "remote":
        data = _graphql(
            hub,
            '{ node(ref: "churn@champion") { ... on ModelVersion { flavor metadata '
            "customObjects { name module qualname kind digest source } } } }",
        )
        node = data["node"]
        assert node["flavor"] == "sklearn" and node["metadata"]["flavor"] == "sklearn"
        objs = node["customObjects"]
        assert [o["qualname"] for o in objs] == ["Doubler", "clip_features"]
        assert objs[0]["kind"] == "class" and objs[1]["kind"] == "function"
        assert objs[0]["source"].startswith("class Doubler(")
        assert objs[0]["digest"] == sources["Doubler"].props["digest"]


def test_module_level_load_model_and_download(hub: Hub, mode: str, tmp_path: Path) -> None:
    target = hub.uri if mode == "embedded" else hub.serve().url
    settings = lh.Settings(user="ann", artifacts=str(hub.artifacts))
    client = lh.connect(target, settings=settings if mode == "embedded" else lh.Settings())
    try:
        with lh.start_run("train", capture=False) as run:
            run.log_model({"weights": [1, 2, 3]}, name="plain")
        assert lh.load_model("plain@latest") == {"weights": [1, 2, 3]}
        path = lh.download("plain/1", tmp_path / "plain.pkl")
        assert pickle.loads(path.read_bytes()) == {"weights": [1, 2, 3]}
    finally:
        client.close()


def test_a_corrupt_model_is_refused_never_loaded(hub: Hub, mode: str) -> None:
    client = hub.client(mode)
    with client.start_run("train", capture=False) as run:
        version = run.log_model({"weights": [0.5] * 100}, name="churn")
    stored = hub.stored_file(version.artifact_digest)
    raw = bytearray(stored.read_bytes())
    raw[-3] ^= 0x01  # the same size, one bit off
    os.chmod(stored, 0o644)
    stored.write_bytes(bytes(raw))
    with pytest.raises(HubError) as caught:
        client.load_model("churn/1")
    assert caught.value.code in ("INTEGRITY", "BACKEND_UNAVAILABLE", "BACKEND")
    if mode == "embedded":
        assert isinstance(caught.value, IntegrityError)


def test_an_environment_change_is_warned_about(hub: Hub, mode: str) -> None:
    client = hub.client(mode)
    with client.start_run("train", capture=False) as run:
        version = run.log_model(_pipeline(), name="churn")
    info = client.artifacts.stored(version.artifact_digest)
    meta = dict(version.metadata or {})
    meta["environment"] = {**meta["environment"], "packages": {"scikit-learn": "0.0.1"}}
    older = client.backend.tracking.register_model_version("churn", info, metadata=meta)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EnvironmentMismatchWarning)
        client.load_model("churn/1")  # the same environment: no warning
    with pytest.warns(EnvironmentMismatchWarning, match=r"scikit-learn 0\.0\.1 -> "):
        loaded = client.load_model(older)
    assert isinstance(loaded, Pipeline)


def test_versions_without_a_flavor_download_but_do_not_load(
    hub: Hub, mode: str, tmp_path: Path
) -> None:
    client = hub.client(mode)
    folder = tmp_path / "weights"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "w.bin").write_bytes(b"\x00\x01")
    with client.start_run("train", capture=False) as run:
        run.log_model(folder, name="onnx", flavor="onnx")
    with pytest.raises(ValidationError, match="records no flavor"):
        client.load_model("onnx/1")
    out = client.download("onnx/1", tmp_path / "out")
    assert (out / "sub" / "w.bin").read_bytes() == b"\x00\x01"


def test_a_registered_flavor_saves_a_directory_and_loads_it(
    hub: Hub, mode: str, tmp_path: Path
) -> None:
    class Weights:
        def __init__(self, values: list[float]) -> None:
            self.values = values

    class WeightsFlavor(Flavor):
        name = "weights-text"
        packages = ("numpy",)

        def detect(self, model: Any) -> bool:
            return isinstance(model, Weights)

        def save(self, model: Any, directory: Path, **options: Any) -> dict[str, Any]:
            (directory / "nested").mkdir()
            (directory / "nested" / "w.txt").write_text(" ".join(map(str, model.values)))
            return {"count": len(model.values), "scale": options.get("scale", 1)}

        def load(self, directory: Path, metadata: Any) -> Any:
            text = (directory / "nested" / "w.txt").read_text()
            return Weights([float(v) * metadata["scale"] for v in text.split()])

    register_flavor(WeightsFlavor())
    try:
        client = hub.client(mode)
        with client.start_run("train", capture=False) as run:
            v1 = run.log_model(Weights([1.0, 2.0]), name="w")
            v2 = run.log_model(Weights([1.0, 2.0]), name="w", flavor_options={"scale": 3})
        assert v1.flavor == "weights-text" and (v1.metadata or {})["layout"] == "directory"
        assert (v1.metadata or {})["data"] == {"count": 2, "scale": 1}
        assert client.load_model("w/1").values == [1.0, 2.0]
        assert client.load_model("w/2").values == [3.0, 6.0]
        # a directory model downloads as a directory
        out = client.download("w/1", tmp_path / "w1")
        assert (out / "nested" / "w.txt").read_text() == "1.0 2.0"
        assert v1.artifact_digest != v2.artifact_digest or v1.metadata != v2.metadata
    finally:
        unregister_flavor("weights-text")


def test_unknown_flavors_and_refs_are_coded_errors(hub: Hub, mode: str, tmp_path: Path) -> None:
    client = hub.client(mode)
    with client.start_run("train", capture=False) as run:
        # a flavor name nothing saves: a label on the pickled object, as before flavors
        labelled = run.log_model(b"weights", name="raw", flavor="bytes")
    assert labelled.flavor == "bytes" and (labelled.metadata or {})["flavor"] == "pickle"
    assert client.load_model("raw/1") == b"weights"
    with pytest.raises(HubError) as caught:
        client.load_model("nothing/1")
    assert caught.value.code == "NOT_FOUND"
    with pytest.raises(ValidationError):
        client.download(42, tmp_path / "x")  # type: ignore[arg-type]


# --- directory artifacts ------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes | None]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def test_bytes_their_flavor_cannot_load_are_a_validation_error(hub: Hub, tmp_path: Path) -> None:
    """A README registered with flavor sklearn was pickle's raw UnpicklingError."""
    client = hub.client("embedded")
    digest = client.artifacts.put_bytes(b"this is a README, not a model").digest
    client.register_model_version("junk", digest=digest, flavor="sklearn")
    with pytest.raises(ValidationError, match="could not be loaded by its flavor 'sklearn'"):
        client.load_model("junk/1")


def test_a_model_file_that_is_a_tar_downloads_as_the_file(
    hub: Hub, mode: str, tmp_path: Path
) -> None:
    """A model logged from one file that happens to be a tar (NeMo's .nemo) downloaded as a
    folder of its members: a version logged from a path says how it was given."""
    client = hub.client(mode)
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "weights.bin").write_bytes(b"w" * 100)
    packed = tmp_path / "model.nemo"
    with tarfile.open(packed, "w") as tar:
        tar.add(inner / "weights.bin", arcname="weights.bin")
    with client.start_run("asr", capture=False) as run:
        run.log_model(packed, name="asr")
        run.log_model(inner, name="asr-folder")
    copy = client.download("asr/1", tmp_path / "copy.nemo")
    assert copy.is_file() and copy.read_bytes() == packed.read_bytes()
    folder = client.download("asr-folder/1", tmp_path / "copy-folder")
    assert (folder / "weights.bin").read_bytes() == b"w" * 100


def test_a_directory_artifact_round_trips(hub: Hub, mode: str, tmp_path: Path) -> None:
    client = hub.client(mode)
    stats = tmp_path / "stats"
    (stats / "per-class").mkdir(parents=True)
    (stats / "summary.json").write_text('{"rows": 3}')
    (stats / "per-class" / "a.csv").write_text("x,y\n1,2\n")
    (stats / "empty").mkdir()
    os.symlink("summary.json", stats / "latest.json")
    with client.start_run("eval", capture=False) as run:
        first = run.log_artifact(stats)
        again = run.log_artifact(f"{stats}/", name="stats-again")
    assert first.digest == again.digest  # deterministic: the same content, the same archive
    assert first.media_type == DIRECTORY_MEDIA_TYPE
    assert first.digest in {a.digest for _, a in run.evaluations()}
    out = client.download(first.digest, tmp_path / "back")
    assert _tree(out) == _tree(stats)
    assert os.readlink(out / "latest.json") == "summary.json"
    again_out = client.download(f"artifact:{first.digest}", tmp_path / "empty-dir")
    assert _tree(again_out) == _tree(stats)
    # an existing, non-empty folder is not written into
    with pytest.raises(ValidationError, match="not an empty folder"):
        client.download(first.digest, out)
    # a plain file artifact downloads as a file
    with client.start_run("eval-2", capture=False) as run:
        single = run.log_artifact(stats / "summary.json")
    assert client.download(single.digest, tmp_path / "s.json").read_text() == '{"rows": 3}'


def test_a_folder_of_cache_links_hard_links_and_any_umask_logs_and_downloads(
    hub: Hub, tmp_path: Path
) -> None:
    """A Hugging Face cache snapshot (links to blobs outside the folder) was logged as bare
    links no download could unpack; hard links (a DVC cache) were a tar hard link every
    download refused; the same content under another umask had another digest."""
    client = hub.client("embedded")
    blobs = tmp_path / "cache" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / "b1").write_text('{"hidden": 8}')
    snapshot = tmp_path / "cache" / "snapshot"
    snapshot.mkdir()
    os.symlink("../blobs/b1", snapshot / "config.json")
    (snapshot / "train.csv").write_text("x\n1\n")
    os.link(snapshot / "train.csv", snapshot / "copy.csv")
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "config.json").write_text('{"hidden": 8}')
    (twin / "train.csv").write_text("x\n1\n")
    (twin / "copy.csv").write_text("x\n1\n")
    for path in twin.iterdir():
        path.chmod(0o664)  # as a umask of 002 leaves them
    with client.start_run("cache", capture=False) as run:
        logged = run.log_artifact(snapshot)
        same = run.log_artifact(twin)
    assert logged.digest == same.digest  # the content, whatever links and modes it came in
    out = client.download(logged.digest, tmp_path / "out")
    assert _tree(out) == {
        "config.json": b'{"hidden": 8}',
        "copy.csv": b"x\n1\n",
        "train.csv": b"x\n1\n",
    }
    os.symlink(str(tmp_path / "cache"), snapshot / "elsewhere")
    with (
        pytest.raises(ValidationError, match="outside the folder and not a file"),
        client.start_run("refused", capture=False) as run,
    ):
        run.log_artifact(snapshot)


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


HOSTILE = {
    "parent": _tar((_member("../escaped.txt"), b"x")),
    "nested-parent": _tar((_member("ok/../../escaped.txt"), b"x")),
    "absolute": _tar((_member("/tmp/escaped.txt"), b"x")),
    "symlink-out": _tar((_member("link", tarfile.SYMTYPE, "../../.."), None)),
    "symlink-absolute": _tar((_member("link", tarfile.SYMTYPE, "/etc"), None)),
    "through-a-link": _tar(
        (_member("d", tarfile.SYMTYPE, "."), None),
        (_member("d/../../escaped.txt"), b"x"),
    ),
    # each link inside when checked alone, in the order they come: together a -> the parent
    "links-that-combine": _tar(
        (_member("a", tarfile.SYMTYPE, "b/.."), None), (_member("b", tarfile.SYMTYPE, "."), None)
    ),
    "links-that-combine-reversed": _tar(
        (_member("b", tarfile.SYMTYPE, "."), None), (_member("a", tarfile.SYMTYPE, "b/.."), None)
    ),
    "a-link-beside-a-link": _tar(
        (_member("x", tarfile.SYMTYPE, "."), None),
        (_member("x/y", tarfile.SYMTYPE, "../z"), None),
    ),
    "hardlink": _tar((_member("a"), b"x"), (_member("b", tarfile.LNKTYPE, "/etc/passwd"), None)),
    "fifo": _tar((_member("pipe", tarfile.FIFOTYPE), None)),
    "twice": _tar((_member("a"), b"x"), (_member("a"), b"y")),
    "file-then-folder": _tar((_member("a"), b"x"), (_member("a/b"), b"y")),
    "device": _tar((_member("dev", tarfile.CHRTYPE), None)),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused(case: str, tmp_path: Path) -> None:
    source = tmp_path / "archive.tar"
    source.write_bytes(HOSTILE[case])
    dest = tmp_path / "work" / "out"
    with pytest.raises(ValidationError) as caught:
        extract_archive(source, dest)
    assert caught.value.field == "archive"
    assert not dest.exists()  # nothing half-extracted
    assert (
        not (tmp_path / "escaped.txt").exists()
        and not (tmp_path / "work").joinpath("escaped.txt").exists()
    )


def test_two_unpacking_into_one_folder_never_mix(tmp_path: Path) -> None:
    """Two downloads into one folder at once: the loser's clean-up removed the winner's
    files (a folder of 242 of 300 files, reported "ok"). Each unpacks beside the folder and
    renames it into place: one gets it whole, the other an error, nothing is left beside."""
    import threading

    archive = tmp_path / "archive.tar"
    archive.write_bytes(_tar(*((_member(f"f{i:03d}"), b"x" * 64) for i in range(300))))
    for round_ in range(30):
        dest = tmp_path / f"dest{round_}"
        outcomes: list[str] = []
        start = threading.Barrier(2)

        def unpack(dest: Path = dest, outcomes: list[str] = outcomes, start: Any = start) -> None:
            start.wait()
            try:
                extract_archive(archive, dest)
                outcomes.append("ok")
            except ValidationError:
                outcomes.append("refused")

        workers = [threading.Thread(target=unpack) for _ in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert "ok" in outcomes, outcomes
        assert len(list(dest.iterdir())) == 300, (round_, outcomes)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_links_inside_the_folder_are_kept(tmp_path: Path) -> None:
    source = tmp_path / "archive.tar"
    source.write_bytes(
        _tar(
            (_member("weights/model.bin"), b"w"),
            (_member("sub/config.json"), b"{}"),
            (_member("sub/model.bin", tarfile.SYMTYPE, "../weights/model.bin"), None),
            (_member("latest", tarfile.SYMTYPE, "weights"), None),
        )
    )
    out = extract_archive(source, tmp_path / "out")
    assert (out / "sub" / "model.bin").read_bytes() == b"w"
    assert (out / "latest" / "model.bin").read_bytes() == b"w"


def test_archive_size_and_member_limits(tmp_path: Path) -> None:
    big = tmp_path / "big.tar"
    big.write_bytes(_tar((_member("a"), b"x" * 600), (_member("b"), b"y" * 600)))
    with pytest.raises(ValidationError, match="bytes unpacked"):
        extract_archive(big, tmp_path / "one", max_bytes=1000)
    many = tmp_path / "many.tar"
    many.write_bytes(_tar(*((_member(f"f{i}"), b"") for i in range(5))))
    with pytest.raises(ValidationError, match="more than 3 members"):
        extract_archive(many, tmp_path / "two", max_members=3)
    not_tar = tmp_path / "junk.tar"
    not_tar.write_bytes(b"no tar here" * 100)
    with pytest.raises(ValidationError, match="not a readable tar"):
        extract_archive(not_tar, tmp_path / "three")
    assert not any((tmp_path / n).exists() for n in ("one", "two", "three"))


def test_a_hostile_directory_artifact_is_refused_on_download(
    hub: Hub, mode: str, tmp_path: Path
) -> None:
    client = hub.client(mode)
    info = client.artifacts.put_bytes(HOSTILE["parent"])
    with client.start_run("eval", capture=False) as run:
        client.tracking.log_artifact(run.id, info, name="x", media_type=DIRECTORY_MEDIA_TYPE)
    dest = tmp_path / "inner" / "out"
    with pytest.raises(ValidationError, match="unsafe member path"):
        client.download(info.digest, dest)
    assert not dest.exists() and not (tmp_path / "inner" / "escaped.txt").exists()
    assert [p.name for p in (tmp_path / "inner").iterdir()] == []  # no temporary left


def test_capture_custom_objects_keeps_only_user_code() -> None:
    import json

    found = capture_custom_objects(
        [Doubler(), Doubler, clip_features, json.dumps, LogisticRegression, lambda x: x, 3]
    )
    assert [(c["qualname"], c["kind"]) for c in found] == [
        ("Doubler", "class"),
        ("clip_features", "function"),
    ]
    assert found[1]["digest"].startswith("sha256:") and found[1]["module"] == __name__


def test_the_download_command(
    hub: Hub,
    mode: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    from lineagehub.interfaces.cli import main

    monkeypatch.setenv("LINEAGEHUB_ARTIFACTS", str(hub.artifacts))
    monkeypatch.setenv("LINEAGEHUB_USER", "ann")
    client = hub.embedded()
    stats = tmp_path / "stats"
    stats.mkdir()
    (stats / "a.txt").write_text("a")
    with client.start_run("eval", capture=False) as run:
        folder = run.log_artifact(stats)
        run.log_model({"w": 1}, name="churn")
    target = ["--store", hub.uri] if mode == "embedded" else ["--url", hub.serve().url]
    assert main(["download", folder.digest, str(tmp_path / "out"), *target, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer == {"ref": folder.digest, "path": str(tmp_path / "out"), "kind": "directory"}
    assert (tmp_path / "out" / "a.txt").read_text() == "a"
    assert main(["download", "churn@latest", str(tmp_path / "m.pkl"), *target]) == 0
    assert "m.pkl (file)" in capsys.readouterr().out
    assert pickle.loads((tmp_path / "m.pkl").read_bytes()) == {"w": 1}
    assert main(["download", "nothing/3", str(tmp_path / "x"), *target]) == 3  # not found
    assert "nothing" in capsys.readouterr().err
