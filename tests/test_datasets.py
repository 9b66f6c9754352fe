"""Dataset fingerprints: digests (content, stability across processes and hash seeds,
sensitivity), schemas of files and in-memory data, profiles, errors and bounded memory."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lineagehub.graph.errors import NotFoundError, ValidationError
from lineagehub.ingest.datasets import (
    DatasetFingerprint,
    DatasetWarning,
    _string_digests_arrow,
    _string_digests_python,
    fingerprint,
)
from lineagehub.vocabulary import DatasetVersion


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def strict_json(profile: dict[str, Any] | None) -> str:
    assert profile is not None
    return json.dumps(profile, allow_nan=False)


def column(fp: DatasetFingerprint, name: str) -> dict[str, Any]:
    assert fp.profile is not None
    (col,) = [c for c in fp.profile["columns"] if c["name"] == name]
    return col


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [31, 45, 27, 60],
            "income": [52_000.5, 61_000.0, np.nan, 98_500.25],
            "city": ["Oslo", "Lima", None, "Oslo"],
            "joined": pd.to_datetime(["2020-01-01", "2021-06-15", None, "2019-03-02"]),
            "plan": pd.Categorical(["free", "pro", "free", "team"]),
        }
    )


# --------------------------------------------------------------------------------------------
# Files


def test_file_digest_is_the_sha256_of_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(bytes(range(256)) * 1000)
    fp = fingerprint(path)
    assert fp.digest == "sha256:" + sha256_file(path)
    assert (fp.source, fp.size_bytes, fp.format) == ("file", 256_000, None)
    assert fp.uri == path.absolute().as_uri() and fp.uri.startswith("file:///")
    assert fp.columns is None and fp.row_count is None and fp.profile is None
    # The same file named by str, Path and file:// URI is one dataset.
    assert fingerprint(str(path)) == fp == fingerprint(path.absolute().as_uri())


def test_a_large_file_is_hashed_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(64):
            f.write(block[i:] + block[:i])  # 64 MiB, not one block repeated
    tracemalloc.start()
    try:
        fp = fingerprint(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fp.size_bytes == 64 << 20
    assert fp.digest == "sha256:" + sha256_file(path)
    assert peak < 4 << 20, f"peak {peak} bytes while hashing a 64 MiB file"


def test_csv_schema_row_count_and_profile(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "customers.csv"
    frame.to_csv(path, index=False)
    fp = fingerprint(path)
    assert fp.digest == "sha256:" + sha256_file(path)
    assert (fp.format, fp.row_count) == ("csv", 4)
    assert [c["name"] for c in fp.columns or []] == ["age", "income", "city", "joined", "plan"]
    dtypes = {c["name"]: c["dtype"] for c in fp.columns or []}
    assert dtypes["age"] == "int64" and dtypes["income"] == "float64"
    age = column(fp, "age")
    assert (age["kind"], age["min"], age["max"], age["mean"]) == ("numeric", 27, 60, 40.75)
    city = column(fp, "city")
    assert city["null_count"] == 1
    assert city["top"] == [{"value": "Oslo", "count": 2}, {"value": "Lima", "count": 1}]
    strict_json(fp.profile)


def test_tsv_and_gzip_compressed_csv(tmp_path: Path) -> None:
    tsv = tmp_path / "a.tsv"
    tsv.write_text("x\ty\n1\ta\n2\tb\n")
    fp = fingerprint(tsv)
    assert (fp.format, fp.row_count, [c["name"] for c in fp.columns or []]) == (
        "tsv",
        2,
        ["x", "y"],
    )
    gz = tmp_path / "a.csv.gz"
    with gzip.open(gz, "wt") as f:
        f.write("x,y\n1,a\n2,b\n3,c\n")
    fp = fingerprint(gz)
    assert (fp.format, fp.row_count) == ("csv.gz", 3)
    assert fp.digest == "sha256:" + sha256_file(gz)  # the bytes on disk, compressed


def test_a_csv_above_the_size_limit_gets_a_schema_but_no_profile(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    pd.DataFrame({"a": range(300_000), "b": ["x", "y", "z"] * 100_000}).to_csv(path, index=False)
    fp = fingerprint(path, max_profile_bytes=1024)
    assert fp.profile is None
    assert fp.row_count == 300_000
    assert fp.columns == [{"name": "a", "dtype": "int64"}, {"name": "b", "dtype": "str"}]


def test_parquet_schema_comes_from_the_footer(
    tmp_path: Path, frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "customers.parquet"
    frame.to_parquet(path, index=False)
    fp = fingerprint(path)
    assert (fp.format, fp.row_count) == ("parquet", 4)
    assert fp.digest == "sha256:" + sha256_file(path)
    # Pandas dtype names: the same schema the DataFrame itself has.
    assert fp.columns == fingerprint(frame).columns
    assert column(fp, "plan")["top"][0] == {"value": "free", "count": 2}

    def no_reading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the data was read")

    monkeypatch.setattr(pq, "read_table", no_reading)
    big = fingerprint(path, max_profile_bytes=10)
    assert (big.row_count, big.columns, big.profile) == (4, fp.columns, None)


def test_json_lines_schema_from_json_types(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    rows = [
        {"id": 1, "score": 0.5, "tag": "a", "ok": True, "meta": {"k": 1}},
        {"id": 2, "score": 1, "tag": None, "ok": False, "meta": [1, 2]},
        {"id": 3, "score": 2.5, "tag": "a", "ok": True, "extra": "only here"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    fp = fingerprint(path)
    assert (fp.format, fp.row_count) == ("jsonl", 3)
    assert fp.columns == [
        {"name": "id", "dtype": "int64"},
        {"name": "score", "dtype": "float64"},
        {"name": "tag", "dtype": "str"},
        {"name": "ok", "dtype": "bool"},
        {"name": "meta", "dtype": "object"},
        {"name": "extra", "dtype": "str"},
    ]
    assert column(fp, "tag")["top"] == [{"value": "a", "count": 2}]
    assert column(fp, "extra")["null_count"] == 2
    strict_json(fp.profile)


def test_npy_schema_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.arange(12, dtype="int16").reshape(4, 3))
    fp = fingerprint(path)
    assert (fp.format, fp.row_count) == ("npy", 4)
    assert fp.columns == [{"name": f"col_{j}", "dtype": "int16"} for j in range(3)]
    assert column(fp, "col_1")["min"] == 1
    assert fp.digest == "sha256:" + sha256_file(path)


def test_a_file_that_does_not_parse_keeps_its_digest(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.warns(DatasetWarning, match="broken.parquet"):
        fp = fingerprint(path)
    assert fp.digest == "sha256:" + sha256_file(path)
    assert (fp.format, fp.columns, fp.size_bytes) == ("parquet", None, 18)


# --------------------------------------------------------------------------------------------
# Directories


def manifest_digest(root: Path, rels: list[str]) -> str:
    h = hashlib.sha256(b"lineagehub.directory.v1\n")
    for rel in sorted(rels, key=lambda r: r.encode()):
        h.update(rel.encode() + b"\0" + sha256_file(root / rel).encode() + b"\n")
    return "sha256:" + h.hexdigest()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    (root / "train" / "cats").mkdir(parents=True)
    (root / "train" / "cats" / "1.png").write_bytes(b"\x89PNG one")
    (root / "train" / "cats" / "2.png").write_bytes(b"\x89PNG two")
    (root / "train.txt").write_text("cats/1.png\n")  # sorts before "train/..." by bytes
    (root / ".hidden").write_text("counts too")
    (root / "empty").mkdir()
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return root


def test_directory_digest_is_the_documented_manifest(tree: Path) -> None:
    fp = fingerprint(tree)
    rels = ["train/cats/1.png", "train/cats/2.png", "train.txt", ".hidden"]
    assert fp.digest == manifest_digest(tree, rels)
    assert (fp.source, fp.file_count, fp.uri) == ("directory", 4, tree.absolute().as_uri())
    assert fp.size_bytes == sum((tree / r).stat().st_size for r in rels)
    assert fp.format is None  # mixed formats


def test_directory_digest_sensitivity(tree: Path) -> None:
    before = fingerprint(tree).digest
    os.utime(tree / "train.txt", (1_000_000, 1_000_000))  # timestamps are not content
    (tree / ".git" / "HEAD").write_text("ref: refs/heads/other\n")  # VCS state is not data
    (tree / "empty" / "still-empty").mkdir()
    assert fingerprint(tree).digest == before
    (tree / "train" / "cats" / "2.png").rename(tree / "train" / "cats" / "3.png")
    renamed = fingerprint(tree).digest
    assert renamed != before
    (tree / "train" / "cats" / "3.png").write_bytes(b"\x89PNG TWO")
    assert fingerprint(tree).digest not in (before, renamed)
    # Without the default ignore list, .git counts like anything else.
    assert fingerprint(tree, ignore=()).file_count == 5


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks on this platform")
def test_directory_symlinks_are_followed_and_broken_ones_refused(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (blobs / "abc").write_bytes(b"weights")
    snap = tmp_path / "snapshot"
    snap.mkdir()
    try:
        os.symlink(blobs / "abc", snap / "model.bin")
    except OSError:
        pytest.skip("creating symlinks is not permitted here")
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "model.bin").write_bytes(b"weights")
    assert fingerprint(snap).digest == fingerprint(copy).digest  # content, not link text

    os.symlink(snap, snap / "loop")
    with pytest.raises(ValidationError, match="cycle") as e:
        fingerprint(snap)
    assert e.value.field == "data"
    (snap / "loop").unlink()
    os.symlink(tmp_path / "gone", snap / "dangling")
    with pytest.raises(NotFoundError) as nf:
        fingerprint(snap)
    assert nf.value.ids == [str(snap / "dangling")]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_special_files_are_refused_not_read(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a\n1\n")
    os.mkfifo(tmp_path / "pipe")  # reading it would block forever
    with pytest.raises(ValidationError, match="pipe") as e:
        fingerprint(tmp_path)
    assert e.value.field == "data"
    with pytest.raises(ValidationError, match="regular file"):
        fingerprint(tmp_path / "pipe")


def test_a_partitioned_parquet_directory_has_a_schema(tmp_path: Path) -> None:
    root = tmp_path / "events"
    for part in ("day=1", "day=2"):
        (root / part).mkdir(parents=True)
        pd.DataFrame({"user": ["a", "b", "c"], "n": [1, 2, 3]}).to_parquet(
            root / part / "part-0.parquet", index=False
        )
    (root / "_SUCCESS").write_bytes(b"")
    fp = fingerprint(root)
    assert (fp.format, fp.row_count, fp.file_count) == ("parquet", 6, 3)
    assert fp.columns == [{"name": "user", "dtype": "str"}, {"name": "n", "dtype": "int64"}]


# --------------------------------------------------------------------------------------------
# DataFrames and arrays


def test_dataframe_digest_depends_on_content_only(frame: pd.DataFrame) -> None:
    fp = fingerprint(frame)
    assert fp.source == "dataframe" and fp.uri is None and fp.row_count == 4
    assert fp.digest.startswith("sha256:") and len(fp.digest) == 71
    rebuilt = pd.DataFrame({c: list(frame[c]) for c in frame.columns})
    rebuilt = rebuilt.astype(frame.dtypes.to_dict())
    assert fingerprint(rebuilt).digest == fp.digest
    assert fingerprint(frame.copy()).digest == fp.digest
    # A numeric block in Fortran order or as a strided view is the same content.
    arr = np.arange(20.0).reshape(5, 4)
    assert (
        fingerprint(pd.DataFrame(np.asfortranarray(arr))).digest
        == fingerprint(pd.DataFrame(arr.copy())).digest
    )


@pytest.mark.parametrize(
    "change",
    [
        "cell",
        "string cell",
        "null",
        "rename",
        "reorder",
        "dtype",
        "index",
        "category order",
        "drop row",
    ],
)
def test_dataframe_digest_sensitivity(frame: pd.DataFrame, change: str) -> None:
    other = frame.copy()
    if change == "cell":
        other.loc[2, "age"] = 28
    elif change == "string cell":
        other.loc[0, "city"] = "Oslo "
    elif change == "null":
        other.loc[0, "income"] = np.nan
    elif change == "rename":
        other = other.rename(columns={"age": "Age"})
    elif change == "reorder":
        other = other[["income", "age", "city", "joined", "plan"]]
    elif change == "dtype":
        other["age"] = other["age"].astype("int32")
    elif change == "index":
        other.index = [10, 11, 12, 13]
    elif change == "category order":
        other["plan"] = other["plan"].cat.reorder_categories(["team", "pro", "free"])
    elif change == "drop row":
        other = other.iloc[:3]
    assert fingerprint(other).digest != fingerprint(frame).digest


def test_dataframe_dtype_and_value_kinds_are_told_apart() -> None:
    ints = pd.DataFrame({"a": [1, 2, 3]})
    distinct = {
        fingerprint(ints).digest,
        fingerprint(ints.astype("float64")).digest,
        fingerprint(ints.astype("Int64")).digest,
        fingerprint(ints.astype(str)).digest,
        fingerprint(ints.astype(object)).digest,
        fingerprint(ints.astype("category")).digest,
        fingerprint(ints["a"]).digest,  # a Series is not a one-column frame
        fingerprint(ints["a"].rename(None)).digest,  # ...and its name counts
    }
    assert len(distinct) == 8
    # Equal floats hash equal: NaN payloads and the sign of zero are not content.
    weird_nan = np.array([0x7FF8000000000001], dtype="<u8").view("<f8")
    assert np.isnan(weird_nan[0])
    assert (
        fingerprint(pd.DataFrame({"x": [weird_nan[0], -0.0]})).digest
        == fingerprint(pd.DataFrame({"x": [np.nan, 0.0]})).digest
    )


def test_string_columns_hash_the_same_from_arrow_and_from_python() -> None:
    cases = [
        pd.Series(["a", None, "bé", "", "日本"]),
        pd.Series(["a", None, "bé", float("nan")], dtype=object),
        pd.Series(["x", None], dtype="string"),
        pd.Series(["x", "y", "z", "w"]).iloc[1:3],  # a slice: Arrow offsets do not start at 0
        pd.Series([], dtype="str"),
    ]
    for s in cases:
        arrow = _string_digests_arrow(s)
        assert arrow is not None
        assert arrow == _string_digests_python(s)
    # Lone surrogates cannot go into Arrow; the Python path still hashes them.
    surrogate = pd.Series(["\udc80x"], dtype=object)
    assert fingerprint(surrogate).digest != fingerprint(pd.Series(["x"], dtype=object)).digest


def test_object_columns_with_nested_values(frame: pd.DataFrame) -> None:
    df = pd.DataFrame({"v": [{"b": 1, "a": [1, 2]}, {"x", "y"}, None, (1, "a"), b"raw"]})
    same = pd.DataFrame({"v": [{"a": [1, 2], "b": 1}, {"y", "x"}, None, (1, "a"), b"raw"]})
    assert fingerprint(df).digest == fingerprint(same).digest  # dict and set order are not
    listy = pd.DataFrame({"v": [{"b": 1, "a": [1, 2]}, {"x", "y"}, None, [1, "a"], b"raw"]})
    assert fingerprint(listy).digest != fingerprint(df).digest  # a list is not a tuple
    strict_json(fingerprint(df).profile)

    class Opaque:
        pass

    with pytest.raises(ValidationError, match="Opaque") as e:
        fingerprint(pd.DataFrame({"o": [Opaque()]}))
    assert e.value.field == "data"


def test_ndarray_digest_schema_and_layout_independence() -> None:
    arr = np.arange(24, dtype="float64").reshape(6, 4)
    fp = fingerprint(arr)
    assert (fp.source, fp.row_count) == ("ndarray", 6)
    assert fp.columns == [{"name": f"col_{j}", "dtype": "float64"} for j in range(4)]
    same = [np.asfortranarray(arr), arr.astype(">f8"), arr[:, ::-1][:, ::-1], arr.copy()]
    assert {fingerprint(a).digest for a in same} == {fp.digest}
    different = [
        arr.reshape(4, 6),
        arr.astype("float32"),
        arr.T,
        np.where(arr == 5, 5.5, arr),
        np.ma.masked_equal(arr, 5.0),
    ]
    assert len({fingerprint(a).digest for a in different} | {fp.digest}) == 6
    assert fingerprint(np.array([1, 2, 3])).columns == [{"name": "value", "dtype": "int64"}]
    rec = np.array([(1, 2.0, "a")], dtype=[("id", "<i4"), ("w", ">f8"), ("s", "U2")])
    assert fingerprint(rec).columns == [
        {"name": "id", "dtype": "int32"},
        {"name": "w", "dtype": ">f8"},
        {"name": "s", "dtype": "<U2"},
    ]
    objs = np.array([{"a", "b"}, None, 1.5], dtype=object)
    assert (
        fingerprint(objs).digest
        == fingerprint(np.array([{"b", "a"}, None, 1.5], dtype=object)).digest
    )


def test_array_shapes_and_element_kinds() -> None:
    scalar = fingerprint(np.array(5.0))
    assert (scalar.row_count, scalar.columns) == (1, [{"name": "value", "dtype": "float64"}])
    images = fingerprint(np.zeros((4, 8, 8, 3), dtype="uint8"))
    assert (images.row_count, images.columns) == (4, [{"name": "value", "dtype": "uint8"}])
    assert column(images, "value")["count"] == 4 * 8 * 8 * 3
    when = column(fingerprint(np.array(["2020-01-01", "NaT"], dtype="M8[s]")), "value")
    assert (when["kind"], when["min"], when["null_count"]) == ("datetime", "2020-01-01T00:00:00", 1)
    strings = np.array(["x", None, "x"], dtype=np.dtypes.StringDType(na_object=None))
    text = column(fingerprint(strings), "value")
    assert (text["null_count"], text["top"]) == (1, [{"value": "x", "count": 2}])
    masked = np.ma.masked_array([1.0, 99.0, 3.0], mask=[False, True, False])
    m = column(fingerprint(masked), "value")
    assert (m["null_count"], m["max"]) == (1, 3.0)
    assert fingerprint([{"b": np.bool_(True), "i": np.int64(3)}]).columns == [
        {"name": "b", "dtype": "bool"},
        {"name": "i", "dtype": "int64"},
    ]


def test_a_big_array_is_hashed_in_chunks() -> None:
    arr = np.zeros((2048, 2048), dtype="float64")  # 32 MiB
    view = arr.T  # non-contiguous: hashed by pieces, never copied whole
    tracemalloc.start()
    try:
        fingerprint(view, profile=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_records() -> None:
    rows = [{"a": 1, "b": "x"}, {"b": "y", "a": 2}]
    fp = fingerprint(rows)
    assert (fp.source, fp.row_count) == ("records", 2)
    assert fp.columns == [{"name": "a", "dtype": "int64"}, {"name": "b", "dtype": "str"}]
    assert fingerprint([{"b": "x", "a": 1}, {"a": 2, "b": "y"}]).digest == fp.digest
    assert fingerprint(rows[::-1]).digest != fp.digest
    assert column(fp, "a")["mean"] == 1.5


# --------------------------------------------------------------------------------------------
# Stability across processes and hash seeds

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np, pandas as pd
    from lineagehub.ingest.datasets import fingerprint

    def digests(tmp):
        df = pd.DataFrame({
            "s": ["alpha", "beta", None, "gamma"],
            "o": [{"x", "y", "zeta"}, {"k": "v", "a": "b"}, frozenset({"p", "q"}), "plain"],
            "c": pd.Categorical(["u", "v", "u", None]),
            "f": [0.1, np.nan, 2.5, -1.0],
            "t": pd.to_datetime(["2024-01-01", None, "2024-02-01", "2024-03-01"]).tz_localize("UTC"),
        }).set_index(pd.Index(["r1", "r2", "r3", "r4"], name="rid"))
        out = {
            "df": fingerprint(df).digest,
            "profile": json.dumps(fingerprint(df, sample_rows=3).profile, sort_keys=True),
            "arr": fingerprint(np.array([{"a", "b", "c"}, "x", 3], dtype=object)).digest,
            "records": fingerprint([{"k": {"m", "n", "o"}, "v": 1}]).digest,
            "dir": fingerprint(Path(tmp)).digest,
        }
        return out

    if __name__ == "__main__":
        print(json.dumps(digests(sys.argv[1])))
    """
)


def test_digests_are_stable_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    data = tmp_path / "d"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "é.txt").write_text("x")
    (data / "b.bin").write_bytes(b"y")
    script = tmp_path / "digests.py"
    script.write_text(SCRIPT)
    namespace: dict[str, Any] = {"__name__": "digests"}
    exec(compile(SCRIPT, str(script), "exec"), namespace)
    here = namespace["digests"](str(data))
    for seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, str(script), str(data)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == here, f"PYTHONHASHSEED={seed}"


def test_plain_files_need_neither_pandas_nor_pyarrow(tmp_path: Path) -> None:
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("a,b\n1,x\n\n2,y\n3,z\n")
    parquet = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), parquet)
    code = textwrap.dedent(
        f"""
        import json, sys, warnings
        for name in ("numpy", "pandas", "pyarrow"):
            sys.modules[name] = None  # importing them now fails: as if not installed
        from lineagehub.ingest.datasets import fingerprint
        warnings.simplefilter("ignore")
        out = {{}}
        for p in ({str(csv_path)!r}, {str(parquet)!r}):
            fp = fingerprint(p)
            out[p] = [fp.digest, fp.row_count, fp.columns]
        print(json.dumps(out))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    with_pandas = fingerprint(csv_path)
    assert out[str(csv_path)] == [
        with_pandas.digest,
        with_pandas.row_count,
        [{"name": "a", "dtype": "unknown"}, {"name": "b", "dtype": "unknown"}],
    ]
    assert out[str(parquet)] == [fingerprint(parquet).digest, None, None]


def test_importing_and_hashing_a_plain_file_imports_no_data_library(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"x" * 10)
    code = (
        "import sys; from lineagehub.ingest.datasets import fingerprint; "
        f"fingerprint({str(path)!r}); fingerprint({str(tmp_path)!r}); "
        "print(sorted(m for m in ('numpy', 'pandas', 'pyarrow') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------
# Profiles


def test_numeric_profile_on_known_data() -> None:
    fp = fingerprint(pd.DataFrame({"x": np.arange(101)}))  # 0..100
    x = column(fp, "x")
    assert (x["count"], x["null_count"], x["min"], x["max"], x["mean"]) == (101, 0, 0, 100, 50.0)
    assert x["std"] == pytest.approx(np.std(np.arange(101), ddof=1))
    assert x["quantiles"] == {
        "p01": 1.0,
        "p05": 5.0,
        "p25": 25.0,
        "p50": 50.0,
        "p75": 75.0,
        "p95": 95.0,
        "p99": 99.0,
    }
    hist = x["histogram"]
    assert len(hist["edges"]) == 21 and len(hist["counts"]) == 20
    assert hist["edges"][0] == 0.0 and hist["edges"][-1] == 100.0
    assert hist["counts"] == [5] * 19 + [6]  # bins [0,5) ... [95,100]: the max is in the last


def test_top_k_counts_and_ties_broken_by_value() -> None:
    values = ["b"] * 5 + ["a"] * 5 + ["c"] * 7 + [f"id{i:02d}" for i in range(30)] + [None] * 3
    fp = fingerprint(pd.DataFrame({"v": values}))
    v = column(fp, "v")
    assert (v["kind"], v["count"], v["null_count"], v["distinct_count"]) == (
        "categorical",
        50,
        3,
        33,
    )
    top = v["top"]
    assert len(top) == 20
    assert top[:3] == [
        {"value": "c", "count": 7},
        {"value": "a", "count": 5},
        {"value": "b", "count": 5},
    ]
    assert [t["value"] for t in top[3:]] == [f"id{i:02d}" for i in range(17)]
    # The same answer from a numpy array (a Counter instead of value_counts).
    assert column(fingerprint(np.array(values, dtype=object)), "value")["top"] == top


def test_profile_is_strict_json_with_nan_and_infinities() -> None:
    df = pd.DataFrame(
        {
            "f": [1.0, np.nan, np.inf, -np.inf, 3.0, np.nan],
            "huge": [-1e308, 1e308, 1e308, 0.0, 5.0, 1.0],
            "all_nan": [np.nan] * 6,
            "when": pd.to_datetime(["2024-01-01", None, None, None, "2024-05-01", None]),
            "dt": pd.to_timedelta([1, 2, None, 4, 5, 6], unit="s"),
            "z": [1 + 2j] * 6,
            "flag": pd.array([True, None, False, True, True, None], dtype="boolean"),
            "n": pd.array([1, None, 3, 2**62, None, 0], dtype="Int64"),
        }
    )
    fp = fingerprint(df)
    strict_json(fp.profile)
    f = column(fp, "f")
    assert (f["null_count"], f["nan_count"], f["inf_count"]) == (2, 2, 2)
    assert (f["min"], f["max"], f["mean"]) == (1.0, 3.0, 2.0)
    assert sum(f["histogram"]["counts"]) == 2
    huge = column(fp, "huge")
    assert huge["mean"] is not None and all(math.isfinite(e) for e in huge["histogram"]["edges"])
    assert sum(huge["histogram"]["counts"]) == 6
    assert column(fp, "all_nan")["mean"] is None and column(fp, "all_nan")["histogram"] is None
    when = column(fp, "when")
    assert (when["kind"], when["min"], when["null_count"]) == (
        "datetime",
        "2024-01-01T00:00:00",
        4,
    )
    dt = column(fp, "dt")
    assert (dt["kind"], dt["unit"], dt["max"]) == ("timedelta", "seconds", 6.0)
    assert column(fp, "z")["kind"] == "other"
    assert column(fp, "flag")["top"] == [{"value": True, "count": 3}, {"value": False, "count": 1}]
    n = column(fp, "n")
    assert (n["null_count"], n["max"]) == (2, 2**62)  # exact, not a rounded float
    # The vocabulary takes it as it is.
    dsv = DatasetVersion(namespace="mem", name="weird", **fp.version_fields())
    assert dsv.profile == fp.profile and [c.name for c in dsv.columns or []] == list(df.columns)


def test_histogram_counts_sum_to_the_non_null_values() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=5000)
    x[rng.choice(5000, 300, replace=False)] = np.nan
    col = column(fingerprint(pd.DataFrame({"x": x})), "x")
    assert sum(col["histogram"]["counts"]) == col["count"] - col["null_count"] == 4700
    finite = x[~np.isnan(x)]
    assert col["quantiles"]["p50"] == pytest.approx(float(np.quantile(finite, 0.5)))
    assert col["min"] == finite.min() and col["max"] == finite.max()


def test_sampling_bounds_the_profile_not_the_digest() -> None:
    df = pd.DataFrame({"x": np.arange(100_000), "s": np.arange(100_000).astype(str)})
    full = fingerprint(df)
    a = fingerprint(df, sample_rows=1000)
    b = fingerprint(df, sample_rows=1000)
    assert a.digest == full.digest and a.row_count == 100_000
    assert a.profile == b.profile  # deterministic
    assert a.profile is not None and full.profile is not None
    assert (a.profile["profiled_rows"], a.profile["sample_seed"]) == (1000, 0)
    assert column(a, "x")["count"] == 1000
    assert full.profile["profiled_rows"] == 100_000 and full.profile["sample_seed"] is None
    assert fingerprint(df, profile=False).profile is None
    assert fingerprint(np.arange(10), sample_rows=3).profile["profiled_rows"] == 3


# --------------------------------------------------------------------------------------------
# Errors and edge cases


def test_missing_paths_are_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(NotFoundError) as e:
        fingerprint(missing)
    assert e.value.ids == [str(missing)] and e.value.code == "NOT_FOUND"


@pytest.mark.parametrize("data", [42, b"bytes", {"a": 1}, [1, 2], object()])
def test_unsupported_data_names_the_type_and_what_is_supported(data: Any) -> None:
    with pytest.raises(ValidationError) as e:
        fingerprint(data)
    assert e.value.field == "data"
    assert type(data).__qualname__ in e.value.message
    assert "DataFrame" in e.value.message and "ndarray" in e.value.message


def test_remote_uris_empty_paths_and_bad_options_are_refused() -> None:
    with pytest.raises(ValidationError, match="s3://") as e:
        fingerprint("s3://bucket/key.csv")
    assert e.value.field == "data"
    with pytest.raises(ValidationError):
        fingerprint("")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValidationError) as e:
            fingerprint([], sample_rows=bad)
        assert e.value.field == "sample_rows"


def test_empty_data_is_fine(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "header.csv").write_text("a,b\n")
    (tmp_path / "dir").mkdir()
    cases = [
        fingerprint(pd.DataFrame({"a": pd.Series([], dtype="int64")})),
        fingerprint(pd.DataFrame()),
        fingerprint(np.array([])),
        fingerprint([]),
        fingerprint(tmp_path / "empty.csv"),
        fingerprint(tmp_path / "header.csv"),
    ]
    assert [fp.row_count for fp in cases] == [0] * 6
    for fp in cases:
        json.dumps(fp.profile, allow_nan=False)
    assert column(cases[0], "a")["mean"] is None
    d = fingerprint(tmp_path / "dir")
    assert (d.file_count, d.size_bytes) == (0, 0)


def test_version_fields_fill_a_dataset_version(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = tmp_path / "with space.parquet"
    frame.to_parquet(path)
    fp = fingerprint(path)
    dsv = DatasetVersion(namespace="file", name="customers", **fp.version_fields())
    assert dsv.digest == fp.digest and dsv.row_count == 4 and dsv.uri == fp.uri
    assert " " not in (dsv.uri or "")
    assert dsv.node_id.endswith("@" + fp.digest)


# --- small records: profiled in Python, the same profile as pandas gives ----------------------


def _plain_tables() -> list[list[dict[str, Any]]]:
    """Random small tables of every plain column kind, with the edges that matter: nulls
    (None and missing keys), NaN and infinities, ties at the top-20 cut, one value, huge and
    tiny magnitudes, int64 limits, lengths around numpy's summation blocks."""
    import random

    rng = random.Random(16)

    def column(kind: str, n: int) -> list[Any]:
        pick = {
            "int": lambda: rng.randint(-(10 ** rng.randint(0, 18)), 10 ** rng.randint(0, 18)),
            "small_int": lambda: rng.randint(0, 30),
            "float": lambda: rng.uniform(-1, 1) * 10.0 ** rng.randint(-300, 300),
            "unit": lambda: rng.random(),
            "str": lambda: rng.choice("abcdefghijklmnopqrstuvwxyz") * rng.randint(1, 3),
            "bool": lambda: rng.random() < 0.3,
        }[kind.split("+")[0]]
        values = [pick() for _ in range(n)]
        if "+odd" in kind:  # floats only
            values = [rng.choice([math.nan, math.inf, -math.inf, v]) for v in values]
        if "+mixed" in kind:
            values = [int(v * 100) if rng.random() < 0.5 else v for v in values]
        if "+null" in kind:
            values = [None if rng.random() < 0.2 else v for v in values]
        return values

    kinds = ["int", "small_int", "small_int+null", "float", "unit", "unit+null", "float+odd",
             "unit+mixed", "unit+mixed+null", "str", "str+null", "bool", "bool+null"]  # fmt: skip
    tables = []
    for n in (0, 1, 2, 3, 7, 8, 9, 17, 64, 129, 130, 257, 400):
        for _ in range(3):
            chosen = rng.sample(kinds, 4)
            cols = {f"c{i}_{k}": column(k, n) for i, k in enumerate(chosen)}
            rows = []
            for r in range(n):
                row = {name: values[r] for name, values in cols.items()}
                if rng.random() < 0.1 and row:  # a missing key (pandas: NaN)
                    del row[rng.choice(list(row))]
                rows.append(row)
            tables.append(rows)
    tables.append([{"x": 2**63 - 1, "y": -(2**63)}, {"x": 0, "y": 1}])  # int64 limits
    tables.append([{"x": 1.5, "s": None}, {"x": 1.5, "s": None}])  # constant, all null
    tables.append([{"x": 1e308, "y": 1}, {"x": -1e308, "y": 1.0}])  # max - min overflows
    tables.append([{"x": 5e-324}, {"x": 1e-323}, {"x": 0.0}])  # a step that is zero
    return tables


def test_small_records_are_profiled_in_python_as_pandas_profiles_them() -> None:
    from lineagehub.ingest.datasets import _Options, _profile_records, _profile_records_small

    opts = _Options(True, None, 0, frozenset())
    for table in _plain_tables():
        fast = _profile_records_small(table, opts)
        assert fast is not None, table
        slow = _profile_records(table, opts)
        assert json.dumps(fast, allow_nan=False) == json.dumps(slow, allow_nan=False), table


def test_records_that_are_not_plain_are_profiled_by_pandas() -> None:
    import datetime

    from lineagehub.ingest.datasets import _Options, _profile_records, _profile_records_small

    opts = _Options(True, None, 0, frozenset())
    for table in (
        [{"when": datetime.date(2026, 1, 1)}],
        [{"x": 1}, {"x": "a"}],  # mixed kinds
        [{"x": True}, {"x": 1}],
        [{"x": 2**64}],
        [{"x": -0.0}, {"x": 0.0}],
        [{"x": None}, {}],  # nulls only, one of them NaN: pandas makes it float64
        [{"x": np.float64(1.0)}],
        [{1: "non-string key"}],
        [{"x": i} for i in range(6000)],  # not small
    ):
        assert _profile_records_small(table, opts) is None, table
    sampled = _Options(True, 2, 0, frozenset())
    assert _profile_records_small([{"x": i} for i in range(5)], sampled) is None
    # they still get pandas' profile
    mixed = [{"when": datetime.datetime(2026, 1, 1), "x": 1}]
    fp = fingerprint(mixed)
    assert fp.profile == _profile_records(mixed, opts)
    assert fp.profile is not None and fp.profile["columns"][0]["kind"] == "datetime"


def test_small_records_import_neither_pandas_nor_numpy() -> None:
    """A tiny table costs microseconds: the first call imports nothing heavy."""
    code = textwrap.dedent(
        """
        import sys
        from lineagehub.ingest.datasets import fingerprint
        fp = fingerprint([{"x": 1, "y": 0.5, "s": "a"}, {"x": 2, "y": None, "s": "b"}])
        assert fp.profile["columns"][1]["null_count"] == 1, fp.profile
        print(sorted(m for m in ("pandas", "numpy") if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    skipped = fingerprint([{"x": 1}], profile=False)
    assert skipped.profile is None and skipped.columns == [{"name": "x", "dtype": "int64"}]
