"""Dataset fingerprints: what ``run.log_dataset(data, ...)`` records about the data it is given.

A fingerprint is computed where the data is, and nothing is copied anywhere: files are read in
1 MiB chunks, DataFrames and arrays are hashed from memory (never written to disk).

    fp = fingerprint("data/train.parquet")            # or a directory, a DataFrame, an ndarray
    fp.digest        # "sha256:<64 hex>": the content identity (a DatasetVersion's id uses it)
    fp.columns       # [{"name": "age", "dtype": "int64"}, ...]: the schema
    fp.profile       # per-column statistics: the drift reference monitoring compares against
    DatasetVersion(namespace="file", name="train", **fp.version_fields())

Supported data (``source``): a path (``str``, ``os.PathLike`` or a ``file://`` URI) to a
regular file (``"file"``) or a directory (``"directory"``); a pandas ``DataFrame``
(``"dataframe"``) or ``Series`` (``"series"``); a numpy ``ndarray`` (``"ndarray"``); a list of
mappings (``"records"``). numpy, pandas and pyarrow are the optional ``lineagehub[data]`` extra:
they are imported only when the data is of their type or a file format needs them, and a plain
file is fingerprinted without them (digest and size always; schema and profile as far as the
installed libraries can read the format).

Digests (all sha256; the algorithms are versioned by the magic line where one is used, so a
future change of definition cannot silently collide with an old digest):

- file: the sha256 of its bytes, exactly ``sha256sum``'s (and the artifact store's), so the same
  file logged as a dataset and stored as an artifact has one digest.
- directory: sha256 of the manifest ``b"lineagehub.directory.v1\\n"`` followed by, for every
  file in ascending order of its relative POSIX path's bytes, ``<path bytes> NUL <file sha256
  hex> LF``. Renaming, adding, removing or changing a file changes it; timestamps and
  permissions do not. Empty directories add nothing (a directory holds no data, as in git).
  Symlinks are followed: a dataset is its content, and data caches (Hugging Face snapshots,
  DVC) are trees of links into blob stores; a link cycle or a dangling link is an error, never
  skipped. Entries named in ``ignore`` (default :data:`VCS_DIRS`: ``.git``, ``.hg``, ``.svn``:
  version-control state, not data; a directory, or the file a git submodule has) are left out,
  at any depth; everything else counts, hidden files included. Special files (FIFOs, sockets,
  devices) are refused: reading a FIFO would block.
- ndarray: sha256 of ``"lineagehub.ndarray.v1"``, the dtype (byte order normalized to little
  endian: the same values in a big-endian array hash the same) and the shape, then the values in
  C order (a Fortran-ordered copy hashes like the original): fixed-width values as little-endian
  bytes, floats with NaN payloads and ``-0.0`` canonicalized (equal values, one digest);
  structured arrays field by field (padding bytes are never hashed); object arrays one canonical
  encoding per element (below). ``np.ma`` masked arrays hash their mask and their filled data.
- DataFrame / Series: sha256 of ``"lineagehub.dataframe.v1"`` (or ``series``), the row count,
  then every index level followed by every column, in order, each as its name, its dtype name
  and its values. The index is content: it is what ``.loc`` and joins see, and pandas' own
  ``equals`` and ``hash_pandas_object`` count it too; ``reset_index(drop=True)`` first when the
  row labels are not data (a filtered frame keeps its old labels). A default ``RangeIndex`` is
  hashed like any integer index. Values: numpy-typed columns as fixed-width bytes (as for
  arrays); nullable columns (``Int64``, ``boolean``, ...) as a null mask and the values with
  nulls zeroed; categoricals as their categories, order flag and codes; string columns (``str``
  / ``string`` dtypes, or object columns holding only strings) as null mask, UTF-8 lengths and
  UTF-8 bytes (computed from Arrow buffers when the column is Arrow-backed, else in Python:
  identical bytes); any other column one canonical encoding per element. Column order, names and
  dtypes are part of the digest.
- records: sha256 of ``"lineagehub.records.v1"``, the row count and every record as a mapping
  (keys sorted by their encoding: key order within a record does not matter, row order does).

The canonical element encoding is type-tagged and length-prefixed, so it never depends on
Python's hash seed (sets and dict keys are sorted by their encoding, never iterated in hash
order) and never on object addresses: ``None``/``pd.NA``, bools, ints, floats, strings, bytes,
dates, times, datetimes (ISO text), timedeltas, decimals, UUIDs, complex numbers, numpy scalars
and arrays, pandas ``Period``/``Interval``/``NaT`` and nested lists, tuples, dicts and sets. A
value of any other type is refused (``ValidationError``) rather than hashed by ``repr``, which
may hold a memory address and would give every process another digest.

Schema: DataFrames have pandas dtype names; arrays numpy's (a structured array one column per
field, a 2-D array ``col_0``, ``col_1``..., any other array one ``value`` column); records and
JSON lines the JSON type seen (``int64``, ``float64``, ``bool``, ``str``, ``object`` when mixed
or nested); Parquet the pandas dtypes of its Arrow schema (Arrow type names without pandas),
read from the footer without reading the data; CSV pandas' inferred dtypes (read in pieces
above ``max_profile_bytes``), or ``"unknown"`` when pandas is missing (the header and the row
count then come from the stdlib ``csv``); ``.npy`` its header. A directory whose data files
(names not starting with ``_`` or ``.``) are all Parquet gets the summed row count and, when
the files agree, their schema (a partitioned dataset); other directories digest and size only.
Column names that are not strings are shown with ``str()``. Other formats: digest and size.

Profile (JSON-ready: no NaN or infinities anywhere; ``json.dumps(allow_nan=False)`` works)::

    {"version": 1, "row_count": n, "profiled_rows": k, "sample_seed": 0 | None,
     "columns": [{"name", "kind", "count", "null_count", ...}, ...]}

- ``kind="numeric"`` (ints, floats): ``nan_count``, ``inf_count``, and over the finite values
  ``mean``, ``std`` (``ddof=1``, as pandas' ``describe``), ``min``, ``max`` (exact for
  integers), ``quantiles`` ``p01``..``p99`` (linear interpolation) and ``histogram``
  ``{"edges": [21 floats], "counts": [20 ints]}``: equal-width bins between min and max (one
  bin when min == max); the counts sum to the finite values.
- ``kind="categorical"`` (strings, bools, categoricals, objects): ``distinct_count`` and
  ``top``: the 20 most frequent values ``[{"value", "count"}]``, ties broken by value, values
  longer than 256 characters cut.
- ``kind="datetime"``: ``min``, ``max`` as ISO 8601 text. ``kind="timedelta"``: the numeric
  statistics in seconds. ``kind="other"`` (complex, raw bytes...): the counts only.

``count`` is the number of profiled values, nulls included; ``null_count`` the missing ones as
pandas sees them (``None``, ``NaN`` in float columns, ``NA``, ``NaT``). ``sample_rows`` bounds the
work: the profile then covers that many rows drawn without replacement with a fixed seed
(:data:`SAMPLE_SEED`), so the same data gives the same profile; the digest always covers all
data. Files are profiled only when pandas (and pyarrow for Parquet) can read them and they are
at most ``max_profile_bytes`` on disk (the compressed size for ``.gz``); above it the schema
comes from metadata only (Parquet footer, CSV header and row count, ``.npy`` header) and the
profile is ``None``. A file whose content does not parse as its extension says keeps its digest
and size; a :class:`DatasetWarning` says why its schema is missing.

Errors: a path that does not exist (or a dangling link inside a directory) is a
:class:`~lineagehub.graph.errors.NotFoundError` whose ``ids`` hold the path: the caller named a
thing that is not there, as with any other id. Anything else the caller got wrong (an
unsupported type, a remote URI, an unreadable file, a value that cannot be hashed
deterministically) is a :class:`~lineagehub.graph.errors.ValidationError` with
``field="data"`` naming what was given and what is supported. Empty data is fine.
"""

from __future__ import annotations

import bisect
import csv
import datetime as _dt
import decimal
import gzip
import hashlib
import heapq
import importlib
import importlib.util
import json
import math
import numbers
import os
import re
import stat
import struct
import sys
import uuid
import warnings
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import unquote, urlsplit

from lineagehub.artifacts import hash_file
from lineagehub.graph.errors import NotFoundError, ValidationError
from lineagehub.vocabulary import DatasetFingerprint

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULT_MAX_PROFILE_BYTES",
    "SAMPLE_SEED",
    "VCS_DIRS",
    "DatasetFingerprint",
    "DatasetWarning",
    "fingerprint",
    "reference_fingerprint",
]

CHUNK_BYTES = 1 << 20
"""Files are read, and arrays hashed, in pieces of this size: memory stays bounded."""
DEFAULT_MAX_PROFILE_BYTES = 512 << 20
"""Files larger than this on disk get a schema from metadata only and no profile."""
SAMPLE_SEED = 0
"""The seed of the row sample a profile is computed on when ``sample_rows`` is given."""
VCS_DIRS: frozenset[str] = frozenset({".git", ".hg", ".svn"})
"""Entries left out of a directory's digest by default: version-control state, not data."""
TOP_K = 20
HISTOGRAM_BINS = 20
QUANTILES = (0.01, 0.05, 0.25, 0.50, 0.75, 0.95, 0.99)
MAX_VALUE_CHARS = 256
PROFILE_VERSION = 1

_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_ROWS_PER_CHUNK = 1 << 16  # elements per piece where values are encoded one by one
_COMPRESSED = {".gz": "gz"}
_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".npy": "npy",
}
_TEXT_FORMATS = ("csv", "tsv", "jsonl")  # the ones that may come gzip-compressed
_SUPPORTED = (
    "a path (str, os.PathLike or file:// URI) to a file or directory, a pandas DataFrame or "
    "Series, a numpy ndarray, or a list of dicts (records)"
)


def fingerprint(
    data: Any,
    *,
    profile: bool = True,
    sample_rows: int | None = None,
    max_profile_bytes: int = DEFAULT_MAX_PROFILE_BYTES,
    ignore: Collection[str] = VCS_DIRS,
) -> DatasetFingerprint:
    """Fingerprint ``data`` (see the module docstring for what is supported and how each digest
    is defined).

    ``profile=False`` skips the column statistics (the schema is still recorded).
    ``sample_rows`` profiles at most that many rows, drawn deterministically; the digest always
    covers everything. ``max_profile_bytes``: files larger than this are not loaded for a profile
    (schema from metadata only). ``ignore``: entry names left out of a directory's digest.

    Raises :class:`NotFoundError` for a path that does not exist and :class:`ValidationError`
    (``field="data"``) for data that cannot be fingerprinted.
    """
    if sample_rows is not None and (
        isinstance(sample_rows, bool) or not isinstance(sample_rows, int) or sample_rows < 1
    ):
        raise ValidationError(
            f"sample_rows must be a positive integer or None, got {sample_rows!r}",
            field="sample_rows",
        )
    if isinstance(max_profile_bytes, bool) or not isinstance(max_profile_bytes, int):
        raise ValidationError(
            f"max_profile_bytes must be an integer, got {max_profile_bytes!r}",
            field="max_profile_bytes",
        )
    opts = _Options(profile, sample_rows, max_profile_bytes, frozenset(ignore))
    if isinstance(data, (str, os.PathLike)):
        return _fingerprint_path(_to_path(data), opts)
    # A DataFrame or an array can only exist if its library was imported by the caller, so
    # looking in sys.modules never imports anything.
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(data, (pd.DataFrame, pd.Series)):
        return _fingerprint_pandas(data, opts)
    np_ = sys.modules.get("numpy")
    if np_ is not None and isinstance(data, np_.ndarray):
        return _fingerprint_ndarray(data, opts)
    if isinstance(data, (list, tuple)) and all(isinstance(r, Mapping) for r in data):
        return _fingerprint_records(data, opts)
    what = type(data).__module__ + "." + type(data).__qualname__
    if isinstance(data, (list, tuple)):
        what += " whose items are not all mappings"
    raise ValidationError(f"cannot fingerprint a {what}: expected {_SUPPORTED}", field="data")


def reference_name(
    uri: str, name: str | None = None, namespace: str | None = None
) -> tuple[str | None, str | None]:
    """(namespace, name) of data logged by reference, named as OpenLineage names it:
    ``s3://lake/customers.parquet`` is namespace ``s3://lake``, name ``customers.parquet``,
    unless given; ``file://`` URIs are left to :func:`~lineagehub.services.tracking.
    dataset_name`, which names files as logging the file does."""
    if not uri.startswith("file://"):
        parts = urlsplit(uri)
        if parts.scheme and parts.netloc:
            namespace = namespace or f"{parts.scheme}://{parts.netloc}"
            name = name or unquote(parts.path).lstrip("/") or None
    return namespace, name


def reference_fingerprint(
    uri: str,
    digest: str,
    *,
    schema: Mapping[str, str] | Sequence[Mapping[str, str]] | None = None,
    row_count: int | None = None,
    size_bytes: int | None = None,
) -> DatasetFingerprint:
    """The fingerprint of data known by reference (``source="reference"``): nothing is read;
    ``digest`` is taken as given (``sha256:<64 lowercase hex>``), ``schema`` as
    ``{"column": "dtype"}`` or ``[{"name", "dtype"}]``."""
    if not isinstance(uri, str) or not uri.strip():
        raise ValidationError("uri must be a non-empty string", field="uri")
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise ValidationError(
            f"digest: {digest!r:.80} is not 'sha256:' and 64 lowercase hex digits",
            field="digest",
        )
    for value, field in ((row_count, "row_count"), (size_bytes, "size_bytes")):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ValidationError(f"{field} must be a non-negative integer", field=field)
    columns: list[dict[str, str]] | None = None
    if isinstance(schema, Mapping):
        columns = [{"name": str(k), "dtype": str(v)} for k, v in schema.items()]
    elif schema is not None:
        if isinstance(schema, str) or not all(
            isinstance(c, Mapping) and isinstance(c.get("name"), str) for c in schema
        ):
            raise ValidationError(
                "schema must be {column: dtype} or [{'name': ..., 'dtype': ...}]", field="schema"
            )
        columns = [{"name": c["name"], "dtype": str(c.get("dtype", "unknown"))} for c in schema]
    return DatasetFingerprint(
        digest=digest,
        source="reference",
        uri=uri,
        size_bytes=size_bytes,
        row_count=row_count,
        columns=columns,
    )


@dataclass(frozen=True)
class _Options:
    profile: bool
    sample_rows: int | None
    max_profile_bytes: int
    ignore: frozenset[str]


def _optional(name: str) -> Any:
    """The module, or ``None`` when the ``data`` extra is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _digest(h: Any) -> str:
    return "sha256:" + h.hexdigest()


class DatasetWarning(UserWarning):
    """A file's schema or profile could not be read (its digest and size are still recorded)."""


def _warn(message: str) -> None:
    warnings.warn(message, DatasetWarning, stacklevel=4)


def _data_error(message: str) -> ValidationError:
    return ValidationError(message, field="data")


# --------------------------------------------------------------------------------------------
# Paths: files and directories


def _to_path(data: str | os.PathLike[str]) -> Path:
    if isinstance(data, str) and not data.strip():
        raise _data_error("cannot fingerprint an empty path")  # Path("") would be the cwd
    if isinstance(data, str) and "://" in data:
        parts = urlsplit(data)
        if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
            raise _data_error(
                f"cannot fingerprint {parts.scheme}:// data from here: only local paths and "
                "file:// URIs are read; for remote data, log its URI and digest yourself"
            )
        return Path(unquote(parts.path))
    try:
        return Path(data)
    except TypeError:
        raise _data_error(f"cannot fingerprint {data!r}: expected {_SUPPORTED}") from None


def _fingerprint_path(path: Path, opts: _Options) -> DatasetFingerprint:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise NotFoundError(f"no such file or directory: {path}", ids=[str(path)]) from None
    except OSError as e:
        raise _data_error(f"cannot read {path}: {e.strerror or e}") from None
    # The URI names the path as given (made absolute), not its resolved target: a link such as
    # data/current -> data/2024-05 is what the user logged.
    uri = Path(os.path.abspath(path)).as_uri()
    if stat.S_ISDIR(st.st_mode):
        return _fingerprint_directory(path, uri, opts)
    if not stat.S_ISREG(st.st_mode):
        raise _data_error(f"{path} is not a regular file or directory")
    digest, size = _hash_file(path)
    fmt = _file_format(path)
    schema = _file_schema(path, fmt, size, opts)
    return DatasetFingerprint(
        digest="sha256:" + digest,
        source="file",
        uri=uri,
        size_bytes=size,
        row_count=schema.row_count,
        columns=schema.columns,
        profile=schema.profile,
        format=fmt,
    )


def _hash_file(path: Path) -> tuple[str, int]:
    """sha256 hex (no prefix) and size of a file; a read error names the field ``"data"``."""
    digest, size = hash_file(path, CHUNK_BYTES, field="data")
    return digest.removeprefix("sha256:"), size


def _file_format(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if not suffixes:
        return None
    if suffixes[-1] in _COMPRESSED and len(suffixes) == 2:
        inner = _FORMATS.get(suffixes[0])
        return f"{inner}.{_COMPRESSED[suffixes[-1]]}" if inner in _TEXT_FORMATS else None
    return _FORMATS.get(suffixes[-1])


def _fingerprint_directory(root: Path, uri: str, opts: _Options) -> DatasetFingerprint:
    files = sorted(_walk(root, opts.ignore), key=lambda item: item[0])
    h = hashlib.sha256(b"lineagehub.directory.v1\n")
    size = 0
    for rel, path in files:
        file_digest, file_size = _hash_file(path)
        h.update(rel + b"\0" + file_digest.encode("ascii") + b"\n")
        size += file_size
    fmt, row_count, columns = _directory_schema(files)
    return DatasetFingerprint(
        digest=_digest(h),
        source="directory",
        uri=uri,
        size_bytes=size,
        file_count=len(files),
        row_count=row_count,
        columns=columns,
        format=fmt,
    )


def _walk(root: Path, ignore: frozenset[str]) -> Iterator[tuple[bytes, Path]]:
    """Every file under ``root`` as (relative POSIX path bytes, path), links followed."""
    start = root.stat()
    # The directories on the current descent, by identity: a link back to one of them is a
    # cycle (a link to a sibling tree is not, and is followed).
    active: list[tuple[int, int]] = [(start.st_dev, start.st_ino)]

    def walk(directory: Path, prefix: str) -> Iterator[tuple[bytes, Path]]:
        try:
            entries = list(os.scandir(directory))
        except OSError as e:
            raise _data_error(f"cannot list {directory}: {e.strerror or e}") from None
        for entry in entries:
            if entry.name in ignore:
                continue
            rel = prefix + entry.name
            path = Path(entry.path)
            try:
                st = entry.stat(follow_symlinks=True)
            except FileNotFoundError:
                raise NotFoundError(
                    f"{path} is a dangling symbolic link in the dataset directory", ids=[str(path)]
                ) from None
            except OSError as e:
                raise _data_error(f"cannot read {path}: {e.strerror or e}") from None
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in active:
                    raise _data_error(f"{path} links back to a directory above it (a cycle)")
                active.append(key)
                yield from walk(path, rel + "/")
                active.pop()
            elif stat.S_ISREG(st.st_mode):
                yield os.fsencode(rel), path
            else:
                raise _data_error(f"{path} is not a regular file or directory")

    yield from walk(root, "")


def _directory_schema(
    files: list[tuple[bytes, Path]],
) -> tuple[str | None, int | None, list[dict[str, str]] | None]:
    """The common format of a directory's data files; for Parquet (a partitioned dataset as
    Spark or pyarrow writes it) the summed row count and the schema when all files share one.
    Files whose name starts with ``_`` or ``.`` are not data to those writers (``_SUCCESS``,
    ``.part-0.crc``): they count in the digest but not here."""
    data_files = [
        path for rel, path in files if os.fsdecode(rel).rsplit("/", 1)[-1][:1] not in ("_", ".")
    ]
    formats = {_file_format(p) for p in data_files}
    if len(formats) != 1:
        return None, None, None
    fmt = formats.pop()
    if fmt != "parquet":
        return fmt, None, None
    pq = _optional("pyarrow.parquet")
    if pq is None:
        return fmt, None, None
    rows = 0
    schema = None
    same = True
    try:
        for path in data_files:
            meta = pq.ParquetFile(path).metadata
            rows += meta.num_rows
            file_schema = meta.schema.to_arrow_schema()
            if schema is None:
                schema = file_schema
            elif not schema.equals(file_schema, check_metadata=False):
                same = False
    except Exception as e:  # a corrupt footer must not lose the digest
        _warn(f"could not read Parquet metadata under {files[0][1].parent}: {e}")
        return fmt, None, None
    columns = _arrow_columns(schema) if same and schema is not None else None
    return fmt, rows, columns


@dataclass
class _Schema:
    row_count: int | None = None
    columns: list[dict[str, str]] | None = None
    profile: dict[str, Any] | None = None


def _file_schema(path: Path, fmt: str | None, size: int, opts: _Options) -> _Schema:
    if fmt is None:
        return _Schema()
    if size == 0 and fmt.split(".")[0] in _TEXT_FORMATS:
        return _Schema(0, [])  # an empty CSV or JSON-lines file: no header, no rows
    load = size <= opts.max_profile_bytes  # small enough to be read whole for a profile
    base = fmt.split(".")[0]
    try:
        if base in ("csv", "tsv"):
            return _csv_schema(path, "\t" if base == "tsv" else ",", load, opts)
        if base == "jsonl":
            return _jsonl_schema(path, load, opts)
        if base == "parquet":
            return _parquet_schema(path, load, opts)
        if base == "npy":
            return _npy_schema(path, load, opts)
    except (ValidationError, NotFoundError):
        raise
    except Exception as e:
        # A file that does not parse as its extension claims still has a digest and a size;
        # losing those over a schema would lose the lineage.
        _warn(f"could not read {path} as {fmt} ({e}); recording its digest and size only")
    return _Schema()


def _open_text(path: Path) -> TextIO:
    # utf-8-sig: a byte-order mark is not part of the first column's name.
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace", newline="")
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def _csv_schema(path: Path, sep: str, load: bool, opts: _Options) -> _Schema:
    pd = _optional("pandas")
    if pd is not None and load:
        # Bad bytes become U+FFFD rather than losing the schema (as in the stdlib path below).
        df = pd.read_csv(path, sep=sep, low_memory=False, encoding_errors="replace")
        return _Schema(
            len(df), _frame_columns(df), _profile_frame(df, opts) if opts.profile else None
        )
    if pd is not None:
        # Too large to hold: read in pieces for the row count and dtypes (a column whose
        # inferred dtype differs between pieces is "object", as pandas would have it).
        rows = 0
        dtypes: dict[str, set[str]] = {}
        names: list[str] = []
        with pd.read_csv(
            path, sep=sep, chunksize=1 << 17, low_memory=False, encoding_errors="replace"
        ) as reader:
            for chunk in reader:
                rows += len(chunk)
                for name, dtype in zip(chunk.columns, chunk.dtypes):
                    key = str(name)
                    if key not in dtypes:
                        names.append(key)
                    dtypes.setdefault(key, set()).add(str(dtype))
        columns = [{"name": n, "dtype": _merge_dtypes(dtypes[n])} for n in names]
        return _Schema(rows, columns)
    with _open_text(path) as f:
        reader = csv.reader(f, delimiter=sep)
        header = next(reader, None)
        # pandas skips blank lines; count the same way, so the row count does not depend on
        # whether pandas is installed.
        rows = sum(1 for row in reader if row)
    if header is None:
        return _Schema(0, [])
    return _Schema(rows, [{"name": n, "dtype": "unknown"} for n in header])


def _merge_dtypes(seen: set[str]) -> str:
    if len(seen) == 1:
        return next(iter(seen))
    if seen <= {"int64", "float64"}:
        return "float64"
    return "object"


def _jsonl_schema(path: Path, load: bool, opts: _Options) -> _Schema:
    """JSON lines: the schema comes from the JSON types themselves (the same with or without
    pandas); pandas only builds the profile."""
    keep = load and opts.profile and _optional("pandas") is not None
    kept: list[Mapping[str, Any]] = []
    infer = _RecordSchema()
    records = True
    with _open_text(path) as f:
        for line in f:
            if not line.strip():
                continue
            value = json.loads(line)
            if not isinstance(value, Mapping):
                records = False  # one JSON value per line, but not objects: no columns
            elif records:
                infer.add(value)
                if keep:
                    kept.append(value)
            infer.rows += 1
    if not records:
        return _Schema(infer.rows)
    prof = _profile_records(kept, opts) if keep else None
    return _Schema(infer.rows, infer.columns(), prof)


def _parquet_schema(path: Path, load: bool, opts: _Options) -> _Schema:
    pq = _optional("pyarrow.parquet")
    if pq is None:
        _warn(f"{path}: install lineagehub[data] (pyarrow) to record the schema of Parquet files")
        return _Schema()
    meta = pq.ParquetFile(path).metadata  # the footer only: no data is read
    schema = _Schema(meta.num_rows, _arrow_columns(meta.schema.to_arrow_schema()))
    if load and opts.profile and _optional("pandas") is not None:
        schema.profile = _profile_frame(pq.read_table(path).to_pandas(), opts)
    return schema


def _arrow_columns(schema: Any) -> list[dict[str, str]]:
    """Columns of an Arrow schema: pandas dtype names when pandas is there (the same names a
    DataFrame has, index columns restored as the index), Arrow type names otherwise."""
    pd = _optional("pandas")
    if pd is not None:
        try:
            return _frame_columns(schema.empty_table().to_pandas())
        except Exception:  # an Arrow type pandas cannot hold: fall back to Arrow's names
            pass
    return [{"name": f.name, "dtype": str(f.type)} for f in schema]


def _npy_schema(path: Path, load: bool, opts: _Options) -> _Schema:
    np_ = _optional("numpy")
    if np_ is None:
        return _Schema()
    with open(path, "rb") as f:
        version = np_.lib.format.read_magic(f)
        reader = (
            np_.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np_.lib.format.read_array_header_2_0
        )
        shape, _fortran, dtype = reader(f)
    schema = _Schema(_array_rows(shape), _array_columns(dtype, tuple(shape)))
    # Object arrays are pickles: never unpickle a file to describe it.
    if load and opts.profile and not dtype.hasobject:
        arr = np_.load(path, mmap_mode="r", allow_pickle=False)
        schema.profile = _profile_ndarray(arr, opts)
    return schema


# --------------------------------------------------------------------------------------------
# Canonical encoding of values (hash-seed and address independent)

_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")
_CANONICAL_NAN = _F64.pack(float("nan"))
_NONE, _TRUE, _FALSE = b"N", b"T", b"F"


def _u64(n: int) -> bytes:
    return _U64.pack(n)


def _lp(tag: bytes, payload: bytes) -> bytes:
    """Tag + length-prefixed payload: self-delimiting, so sequences cannot run into each other."""
    return tag + _U64.pack(len(payload)) + payload


def _float_bytes(v: float) -> bytes:
    # Every NaN is one NaN and -0.0 == 0.0: equal values must hash equal.
    return _CANONICAL_NAN if v != v else _F64.pack(v + 0.0)


def _encode(v: Any, out: list[bytes]) -> None:
    """Append the canonical encoding of ``v`` to ``out``."""
    t = type(v)
    if t is str:
        out.append(_lp(b"S", v.encode("utf-8", "surrogatepass")))
    elif v is None:
        out.append(_NONE)
    elif t is bool:
        out.append(_TRUE if v else _FALSE)
    elif t is int:
        out.append(_lp(b"I", str(v).encode("ascii")))
    elif t is float:
        out.append(b"D" + _float_bytes(v))
    else:
        _encode_other(v, out)


def _encode_other(v: Any, out: list[bytes]) -> None:
    mod = type(v).__module__
    if mod == "numpy" or mod.startswith("numpy."):
        _encode_numpy(v, out)
    elif mod.startswith("pandas"):
        _encode_pandas(v, out)
    elif isinstance(v, bool):
        out.append(_TRUE if v else _FALSE)
    elif isinstance(v, str):
        out.append(_lp(b"S", v.encode("utf-8", "surrogatepass")))
    elif isinstance(v, int):
        out.append(_lp(b"I", str(int(v)).encode("ascii")))
    elif isinstance(v, float):
        out.append(b"D" + _float_bytes(float(v)))
    elif isinstance(v, (bytes, bytearray, memoryview)):
        out.append(_lp(b"B", bytes(v)))
    elif isinstance(v, _dt.datetime):
        out.append(_lp(b"t", v.isoformat().encode()))
    elif isinstance(v, _dt.date):
        out.append(_lp(b"d", v.isoformat().encode()))
    elif isinstance(v, _dt.time):
        out.append(_lp(b"h", v.isoformat().encode()))
    elif isinstance(v, _dt.timedelta):
        out.append(_lp(b"e", f"{v.days},{v.seconds},{v.microseconds}".encode()))
    elif isinstance(v, decimal.Decimal):
        out.append(_lp(b"Q", str(v).encode()))
    elif isinstance(v, uuid.UUID):
        out.append(_lp(b"G", v.bytes))
    elif isinstance(v, complex):
        out.append(b"C" + _float_bytes(v.real) + _float_bytes(v.imag))
    elif isinstance(v, Mapping):
        items = []
        for key, value in v.items():
            k: list[bytes] = []
            _encode(key, k)
            val: list[bytes] = []
            _encode(value, val)
            items.append((b"".join(k), b"".join(val)))
        items.sort(key=lambda kv: kv[0])  # by encoding: never by hash order
        out.append(b"M" + _u64(len(items)))
        out.extend(k + val for k, val in items)
    elif isinstance(v, (set, frozenset)):
        members = []
        for m in v:
            enc: list[bytes] = []
            _encode(m, enc)
            members.append(b"".join(enc))
        members.sort()  # a set's iteration order follows the hash seed
        out.append(b"E" + _u64(len(members)))
        out.extend(members)
    elif isinstance(v, (list, tuple)):
        out.append((b"L" if isinstance(v, list) else b"U") + _u64(len(v)))
        for item in v:
            _encode(item, out)
    else:
        raise _data_error(
            f"cannot hash a value of type {type(v).__module__}.{type(v).__qualname__} "
            "deterministically; supported values are None, bool, int, float, str, bytes, "
            "date/time/datetime/timedelta, Decimal, UUID, complex, numpy and pandas scalars, "
            "numpy arrays and lists, tuples, dicts and sets of these"
        )


def _encode_numpy(v: Any, out: list[bytes]) -> None:
    import numpy as np

    if isinstance(v, np.ndarray):
        h = hashlib.sha256()
        _hash_ndarray_into(h, v)
        out.append(b"A" + h.digest())
    elif isinstance(v, np.datetime64):
        out.append(b"n" if np.isnat(v) else _lp(b"t", np.datetime_as_string(v).encode()))
    elif isinstance(v, np.timedelta64):
        out.append(
            b"n" if np.isnat(v) else _lp(b"m", f"{v.astype('m8[ns]').astype('i8')}".encode())
        )
    elif isinstance(v, np.generic) and v.dtype.kind in "biufcSU":
        _encode(v.item(), out)
    else:
        raise _data_error(f"cannot hash a numpy {type(v).__qualname__} value deterministically")


def _encode_pandas(v: Any, out: list[bytes]) -> None:
    name = type(v).__name__
    if name == "NAType":
        out.append(_NONE)
    elif name == "NaTType":
        out.append(b"n")
    elif name == "Timestamp":
        out.append(_lp(b"t", v.isoformat().encode()))
    elif name == "Timedelta":
        out.append(_lp(b"m", str(v.value).encode()))
    elif name in ("Period", "Interval"):
        out.append(_lp(b"X", f"{name}:{v}".encode()))
    else:
        raise _data_error(f"cannot hash a pandas {name} value deterministically")


def _hash_objects(h: Any, values: Iterable[Any]) -> None:
    """Feed the canonical encodings of ``values`` into ``h``, joined in pieces (one ``update``
    per element would cost more than the encoding)."""
    out: list[bytes] = []
    for v in values:
        _encode(v, out)
        if len(out) >= _ROWS_PER_CHUNK:
            h.update(b"".join(out))
            out.clear()
    if out:
        h.update(b"".join(out))


# --------------------------------------------------------------------------------------------
# numpy arrays


def _fingerprint_ndarray(arr: np.ndarray, opts: _Options) -> DatasetFingerprint:
    h = hashlib.sha256(b"lineagehub.ndarray.v1\n")
    _hash_ndarray_into(h, arr)
    return DatasetFingerprint(
        digest=_digest(h),
        source="ndarray",
        row_count=_array_rows(arr.shape),
        columns=_array_columns(arr.dtype, arr.shape),
        profile=_profile_ndarray(arr, opts) if opts.profile else None,
    )


def _canonical_dtype(dtype: np.dtype) -> str:
    """The dtype's description with little-endian byte order: the values, not their layout."""
    if dtype.names is not None:
        fields = dtype.fields
        assert fields is not None
        parts = [f"{name!r}:{_canonical_dtype(fields[name][0])}" for name in dtype.names]
        return "{" + ",".join(parts) + "}"
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        return f"({_canonical_dtype(base)},{shape})"
    return dtype.newbyteorder("<").str if dtype.byteorder == ">" else dtype.str


def _hash_ndarray_into(h: Any, arr: np.ndarray) -> None:
    import numpy as np

    mask = None
    if isinstance(arr, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(arr)
        arr = np.ma.filled(arr)
    h.update(_lp(b"dtype", _canonical_dtype(arr.dtype).encode()))
    h.update(_lp(b"shape", ",".join(map(str, arr.shape)).encode()))
    if mask is not None:
        h.update(b"mask")
        _hash_bits(h, mask.reshape(-1))
    _hash_values(h, arr)


def _hash_values(h: Any, arr: np.ndarray) -> None:
    """Feed ``arr``'s values in C order; see the module docstring for the encoding."""
    import numpy as np

    dtype = arr.dtype
    if dtype.names is not None:
        for name in dtype.names:  # field by field: the padding between fields is never read
            h.update(_lp(b"field", name.encode("utf-8", "surrogatepass")))
            _hash_values(h, arr[name])
        return
    if dtype.hasobject or dtype.kind == "T":  # objects, or numpy 2's variable-width strings
        for chunk in _c_order_chunks(arr, _ROWS_PER_CHUNK * 8):
            _hash_objects(h, chunk.tolist() if dtype.kind == "T" else chunk)
        return
    if dtype.kind in "fc" and dtype.itemsize // (2 if dtype.kind == "c" else 1) not in (2, 4, 8):
        # long double: its storage has padding bytes with arbitrary content; hash the text.
        for chunk in _c_order_chunks(arr, CHUNK_BYTES):
            # str, not repr: the text of the number alone (numpy 2's repr adds the type).
            _hash_objects(h, (str(x + x.dtype.type(0)) for x in chunk))
        return
    little = dtype.newbyteorder("<") if dtype.byteorder == ">" else None
    for chunk in _c_order_chunks(arr, CHUNK_BYTES):
        if little is not None:
            chunk = chunk.astype(little)
        if dtype.kind in "fc":
            chunk = _canonical_floats(chunk)
        h.update(chunk.view(np.uint8))  # datetime64 exports no buffer; its bytes do


def _canonical_floats(chunk: np.ndarray) -> np.ndarray:
    import numpy as np

    flat = chunk.view(chunk.real.dtype) if chunk.dtype.kind == "c" else chunk
    nan = np.isnan(flat)
    out = flat + flat.dtype.type(0)  # a copy, with -0.0 turned into 0.0
    if nan.any():
        out[nan] = np.nan
    return out


def _c_order_chunks(arr: np.ndarray, max_bytes: int) -> Iterator[np.ndarray]:
    """C-contiguous 1-D pieces of about ``max_bytes`` covering ``arr`` in C order, copying at
    most one piece at a time (a transposed or sliced view is never copied whole)."""
    import numpy as np

    itemsize = max(arr.dtype.itemsize, 1)
    if arr.ndim == 0:
        yield np.ascontiguousarray(arr).reshape(1)
        return
    if arr.flags.c_contiguous or arr.ndim == 1:
        flat = arr.reshape(-1) if arr.flags.c_contiguous else arr
        step = max(1, max_bytes // itemsize)
        for i in range(0, flat.shape[0], step):
            yield np.ascontiguousarray(flat[i : i + step])
        return
    row_bytes = itemsize * math.prod(arr.shape[1:])
    if row_bytes > max_bytes:
        for i in range(arr.shape[0]):
            yield from _c_order_chunks(arr[i], max_bytes)
        return
    step = max(1, max_bytes // max(row_bytes, 1))
    for i in range(0, arr.shape[0], step):
        yield np.ascontiguousarray(arr[i : i + step]).reshape(-1)


def _hash_bits(h: Any, mask: np.ndarray) -> None:
    import numpy as np

    for chunk in _c_order_chunks(mask, CHUNK_BYTES):
        h.update(np.packbits(chunk.astype(bool), bitorder="little").tobytes())


def _array_rows(shape: tuple[int, ...]) -> int:
    return shape[0] if shape else 1


def _array_columns(dtype: np.dtype, shape: tuple[int, ...]) -> list[dict[str, str]]:
    """One column per field of a structured array, ``col_<j>`` per column of a 2-D array, else
    a single ``value`` column (a 1-D array, or an N-D one whose rows are sub-arrays)."""
    if dtype.names is not None:
        fields = dtype.fields
        assert fields is not None
        return [{"name": n, "dtype": str(fields[n][0])} for n in dtype.names]
    if len(shape) == 2:
        return [{"name": f"col_{j}", "dtype": str(dtype)} for j in range(shape[1])]
    return [{"name": "value", "dtype": str(dtype)}]


# --------------------------------------------------------------------------------------------
# pandas


def _fingerprint_pandas(data: Any, opts: _Options) -> DatasetFingerprint:
    import pandas as pd

    is_series = isinstance(data, pd.Series)
    if is_series:
        columns = [(data.name, data)]  # the name as it is: None is not "value"
        frame = data.to_frame(name="value" if data.name is None else data.name)
        h = hashlib.sha256(b"lineagehub.series.v1\n")
    else:
        columns = [(name, data.iloc[:, i]) for i, name in enumerate(data.columns)]
        frame = data
        h = hashlib.sha256(b"lineagehub.dataframe.v1\n")
    index = data.index
    levels = [index.get_level_values(i) for i in range(index.nlevels)]
    h.update(_u64(len(data)) + _u64(len(levels)) + _u64(len(columns)))
    for i, level in enumerate(levels):
        _hash_column(h, index.names[i], level)
    for name, values in columns:
        _hash_column(h, name, values)
    return DatasetFingerprint(
        digest=_digest(h),
        source="series" if is_series else "dataframe",
        row_count=len(frame),
        columns=_frame_columns(frame),
        profile=_profile_frame(frame, opts) if opts.profile else None,
    )


def _column_name(name: Any) -> str:
    return name if isinstance(name, str) else str(name)


def _frame_columns(df: Any) -> list[dict[str, str]]:
    return [{"name": _column_name(n), "dtype": str(t)} for n, t in zip(df.columns, df.dtypes)]


def _hash_column(h: Any, name: Any, values: Any) -> None:
    """Name, dtype name and values of one column or index level (a Series or an Index)."""
    import numpy as np
    import pandas as pd

    enc: list[bytes] = []
    _encode(name, enc)
    h.update(b"".join(enc) + _lp(b"dtype", str(values.dtype).encode()))
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biufcmMV":
        h.update(b"fixed")
        _hash_values(h, values.to_numpy())
    elif isinstance(dtype, pd.CategoricalDtype):
        cat = values.array
        h.update(b"categorical" + (_TRUE if cat.ordered else _FALSE))
        _hash_column(h, "categories", cat.categories)
        _hash_values(h, np.asarray(cat.codes))
    elif isinstance(dtype, pd.DatetimeTZDtype):
        h.update(b"fixed")  # UTC instants; the zone is in the dtype name
        _hash_values(h, np.asarray(values.array.asi8))
    elif isinstance(dtype, pd.StringDtype) or (
        getattr(dtype, "kind", None) == "O"
        and pd.api.types.infer_dtype(values, skipna=True) == "string"
    ):
        h.update(b"strings")
        _hash_strings(h, values)
    elif getattr(dtype, "numpy_dtype", None) is not None and dtype.numpy_dtype.kind in "biuf":
        # Nullable (Int64, boolean, Float64, int64[pyarrow]...): the mask, then the values
        # with the nulls zeroed (what the storage holds under a null is arbitrary).
        h.update(b"masked")
        _hash_bits(h, values.isna().to_numpy(dtype=bool))
        _hash_values(h, values.to_numpy(dtype=dtype.numpy_dtype, na_value=0))
    else:
        h.update(b"objects")
        arr = values.to_numpy(dtype=object)
        for i in range(0, len(arr), _ROWS_PER_CHUNK):
            _hash_objects(h, arr[i : i + _ROWS_PER_CHUNK])


def _hash_strings(h: Any, values: Any) -> None:
    """A string column as three digests: the null mask (packed bits), the UTF-8 lengths (u64
    little-endian, 0 for nulls) and the concatenated UTF-8 bytes. Arrow's buffers hold exactly
    this, so an Arrow-backed column is hashed without touching a Python string; the Python path
    yields the same bytes (tested)."""
    digests = _string_digests_arrow(values)
    if digests is None:
        digests = _string_digests_python(values)
    h.update(b"".join(digests))


def _string_digests_arrow(values: Any) -> tuple[bytes, bytes, bytes] | None:
    import numpy as np

    pa = _optional("pyarrow")
    if pa is None:
        return None
    try:
        arr = values.array
        if hasattr(arr, "__arrow_array__"):
            got = arr.__arrow_array__()
        else:
            got = pa.array(np.asarray(arr, dtype=object), type=pa.large_string(), from_pandas=True)
        chunked = got if isinstance(got, pa.ChunkedArray) else pa.chunked_array([got])
        if not (pa.types.is_string(chunked.type) or pa.types.is_large_string(chunked.type)):
            chunked = chunked.cast(pa.large_string())
    except (pa.ArrowException, TypeError, ValueError):
        return None  # e.g. lone surrogates, which Arrow cannot hold: the Python path can
    lengths, data = hashlib.sha256(), hashlib.sha256()
    masks: list[np.ndarray] = []
    for chunk in chunked.chunks:
        n = len(chunk)
        if n == 0:
            continue
        offset_type = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        buffers = chunk.buffers()
        offsets = np.frombuffer(buffers[1], dtype=offset_type)[chunk.offset : chunk.offset + n + 1]
        lens = np.diff(offsets).astype("<u8")
        mask = chunk.is_null().to_numpy(zero_copy_only=False).astype(bool)
        if lens[mask].any():
            return None  # Arrow lets a null slot span bytes; then its bytes are not canonical
        lengths.update(lens.tobytes())
        if buffers[2] is not None:
            data.update(memoryview(buffers[2])[int(offsets[0]) : int(offsets[-1])])
        masks.append(mask)
    return _bits_digest(masks), lengths.digest(), data.digest()


def _string_digests_python(values: Any) -> tuple[bytes, bytes, bytes]:
    import numpy as np

    lengths, data = hashlib.sha256(), hashlib.sha256()
    objs = values.to_numpy(dtype=object)
    mask = values.isna().to_numpy(dtype=bool)
    for i in range(0, len(objs), _ROWS_PER_CHUNK):
        part = objs[i : i + _ROWS_PER_CHUNK]
        part_mask = mask[i : i + _ROWS_PER_CHUNK]
        encoded = [
            b"" if null else v.encode("utf-8", "surrogatepass") for v, null in zip(part, part_mask)
        ]
        lengths.update(np.fromiter(map(len, encoded), dtype="<u8", count=len(encoded)).tobytes())
        data.update(b"".join(encoded))
    return _bits_digest([mask]), lengths.digest(), data.digest()


def _bits_digest(parts: list[np.ndarray]) -> bytes:
    import numpy as np

    mask = np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
    return hashlib.sha256(np.packbits(mask, bitorder="little").tobytes()).digest()


# --------------------------------------------------------------------------------------------
# Records (list of mappings)


class _RecordSchema:
    """Row count and columns (keys in order of first appearance, JSON-type dtypes), streamed."""

    def __init__(self) -> None:
        self.rows = 0
        self.types: dict[Any, set[str]] = {}

    def add(self, record: Mapping[Any, Any]) -> None:
        for key, value in record.items():
            seen = self.types.setdefault(key, set())
            name = _value_type(value)
            if name is not None:
                seen.add(name)

    def columns(self) -> list[dict[str, str]]:
        return [{"name": _column_name(k), "dtype": _merge_types(t)} for k, t in self.types.items()]


_NP_BOOLS = ("bool", "bool_")  # numpy 2 renamed np.bool_ to np.bool


def _value_type(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool) or (type(v).__module__ == "numpy" and type(v).__name__ in _NP_BOOLS):
        return "bool"
    if isinstance(v, numbers.Integral):
        return "int64"
    if isinstance(v, numbers.Real):
        return "float64"
    if isinstance(v, str):
        return "str"
    if isinstance(v, _dt.datetime):
        return "datetime"
    if isinstance(v, _dt.date):
        return "date"
    if isinstance(v, bytes):
        return "bytes"
    return "object"


def _merge_types(types: set[str]) -> str:
    if len(types) == 1:
        return next(iter(types))
    if types == {"int64", "float64"}:
        return "float64"
    return "object"  # mixed, or only nulls


def _fingerprint_records(
    records: Sequence[Mapping[Any, Any]], opts: _Options
) -> DatasetFingerprint:
    h = hashlib.sha256(b"lineagehub.records.v1\n")
    h.update(_u64(len(records)))
    infer = _RecordSchema()
    for i in range(0, len(records), _ROWS_PER_CHUNK):
        part = records[i : i + _ROWS_PER_CHUNK]
        _hash_objects(h, part)
        for record in part:
            infer.add(record)
    infer.rows = len(records)
    prof = None
    if opts.profile and _installed("pandas"):
        # Small tables of plain columns are profiled in Python (microseconds, no imports);
        # the profile is the one pandas gives (a test compares them).
        prof = _profile_records_small(records, opts)
        if prof is None:
            prof = _profile_records(records, opts)
    return DatasetFingerprint(
        digest=_digest(h),
        source="records",
        row_count=len(records),
        columns=infer.columns(),
        profile=prof,
    )


def _profile_records(records: Sequence[Mapping[Any, Any]], opts: _Options) -> dict[str, Any]:
    import pandas as pd

    idx = _sample_indices(len(records), opts.sample_rows)
    rows = records if idx is None else [records[int(i)] for i in idx]
    df = pd.DataFrame(list(rows))
    return _profile_columns(len(records), len(rows), idx is not None, _frame_items(df))


def _installed(name: str) -> bool:
    """Whether a module can be imported, without importing it (answered once)."""
    known = _INSTALLED.get(name)
    if known is None:
        known = name in sys.modules or importlib.util.find_spec(name) is not None
        _INSTALLED[name] = known
    return known


_INSTALLED: dict[str, bool] = {}
_ABSENT = object()
SMALL_PROFILE_VALUES = 5_000
"""Records of at most this many values (rows x columns) whose columns are plain (see
:func:`_profile_records_small`) are profiled in pure Python, without pandas or numpy."""


def _profile_records_small(
    records: Sequence[Mapping[Any, Any]], opts: _Options
) -> dict[str, Any] | None:
    """The profile :func:`_profile_records` gives, computed in Python, for small records
    whose every column is plain: only strings (and ``None``), only bools (and ``None``), only
    64-bit ints, or ints and floats with ``None`` or missing keys (as pandas builds them: a
    float64 column, ``None`` and NaN null). ``None`` for anything else (pandas decides)."""
    n = len(records)
    if opts.sample_rows is not None and opts.sample_rows < n:
        return None
    names: dict[str, None] = {}
    for record in records:
        if type(record) is not dict:
            return None
        names.update(dict.fromkeys(record))
        if n * len(names) > SMALL_PROFILE_VALUES:
            return None
    columns = []
    for name in names:
        if type(name) is not str:
            return None
        stats = _plain_column([record.get(name, _ABSENT) for record in records])
        if stats is None:
            return None
        columns.append({"name": name, **stats})
    # Plain Python values, non-finite ones already None: JSON-ready as built.
    return {
        "version": PROFILE_VERSION,
        "row_count": n,
        "profiled_rows": n,
        "sample_seed": None,
        "columns": columns,
    }


def _plain_column(values: list[Any]) -> dict[str, Any] | None:
    """One column's profile as pandas gives it, or ``None`` when the column is not plain
    (``_ABSENT``: the record has no such key, which pandas reads as NaN)."""
    present = [v for v in values if v is not None and v is not _ABSENT]
    kinds = {type(v) for v in present}
    if not kinds and _ABSENT in values:
        return None  # nulls only, some NaN: pandas' inference decides the kind
    base: dict[str, Any] = {"count": len(values), "null_count": len(values) - len(present)}
    if kinds <= {str} or kinds == {bool}:  # object (or bool) columns: counted values
        return _categorical(base, Counter(present))
    if not kinds <= {int, float} or any(
        type(v) is int and not -(2**63) <= v < 2**63 for v in present
    ):
        return None  # anything else, and ints beyond 64 bits: pandas decides
    if kinds == {int} and not base["null_count"]:  # int64
        return _numeric_py({"kind": "numeric", **base}, present, True)
    # float64: None, missing keys and NaN are the missing values
    floats = [float(v) for v in present if v == v]
    if any(v == 0.0 and math.copysign(1.0, v) < 0 for v in floats):
        return None  # which zero is the minimum is numpy's to say
    nulls = len(values) - len(floats)
    out = {"kind": "numeric", "count": len(values), "null_count": nulls, "nan_count": nulls}
    return _numeric_py(out, floats, False)


def _numeric_py(base: dict[str, Any], present: list[Any], ints: bool) -> dict[str, Any]:
    """:func:`_numeric` in Python, with numpy's arithmetic (its pairwise summation, its
    quantile interpolation and histogram edges): the same floats to the last bit."""
    out = dict(base)
    if ints:
        out["nan_count"] = 0
        out["inf_count"] = 0
        finite = [float(v) for v in present]
    else:
        out["inf_count"] = sum(1 for v in present if math.isinf(v))
        finite = [v for v in present if not math.isinf(v)]
    if not finite:
        empty = {"mean": None, "std": None, "min": None, "max": None, "quantiles": None}
        return {**out, **empty, "histogram": None}
    if ints:
        lo_exact: Any = _int_or_float(min(present))
        hi_exact: Any = _int_or_float(max(present))
    else:
        lo_exact, hi_exact = min(finite), max(finite)
    n = len(finite)
    mean = _pairwise_sum(finite, 0, n) / n
    std = None
    if n > 1:
        squares = [(v - mean) * (v - mean) for v in finite]
        std = math.sqrt(_pairwise_sum(squares, 0, n) / (n - 1))
    ordered = sorted(finite)
    quantiles = {}
    for q in QUANTILES:
        virtual = (n - 1) * q
        below = math.floor(virtual)
        if virtual >= n - 1:
            a = b = ordered[-1]
        else:
            a, b = ordered[int(below)], ordered[int(below) + 1]
        t = virtual - below
        diff = b - a
        x = b - diff * (1 - t) if t >= 0.5 else a + diff * t
        quantiles[f"p{round(q * 100):02d}"] = _finite(x)
    out.update(
        mean=_finite(mean),
        std=_finite(std),
        min=lo_exact,
        max=hi_exact,
        quantiles=quantiles,
        histogram=_histogram_py(ordered),
    )
    return out


def _pairwise_sum(values: list[float], start: int, n: int) -> float:
    """numpy's float64 ``add.reduce`` over ``values[start:start + n]``: eight accumulators
    in blocks of 128, halved above (``pairwise_sum`` in its umath loops)."""
    if n < 8:
        total = -0.0
        for i in range(start, start + n):
            total += values[i]
        return total
    if n <= 128:
        r = values[start : start + 8]
        i = 8
        while i < n - (n % 8):
            for j in range(8):
                r[j] += values[start + i + j]
            i += 8
        total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for k in range(i, n):
            total += values[start + k]
        return total
    half = n // 2
    half -= half % 8
    return _pairwise_sum(values, start, half) + _pairwise_sum(values, start + half, n - half)


def _histogram_py(ordered: list[float]) -> dict[str, list[Any]]:
    """:func:`_histogram` over sorted finite values, with numpy's ``linspace`` edges."""
    lo, hi = ordered[0], ordered[-1]
    if lo == hi:
        return {"edges": [lo, hi], "counts": [len(ordered)]}
    bins = HISTOGRAM_BINS
    if math.isfinite(hi - lo):
        delta = hi - lo
        step = delta / bins
        if step == 0:
            edges = [(i / bins) * delta + lo for i in range(bins + 1)]
        else:
            edges = [i * step + lo for i in range(bins + 1)]
    else:
        t = [i * (1.0 / bins) + 0.0 for i in range(bins + 1)]
        t[-1] = 1.0
        edges = [lo * (1.0 - x) + hi * x for x in t]
    edges[0], edges[-1] = lo, hi
    counts = [0] * bins
    for v in ordered:
        counts[min(max(bisect.bisect_right(edges, v) - 1, 0), bins - 1)] += 1
    return {"edges": edges, "counts": counts}


# --------------------------------------------------------------------------------------------
# Profiles


def _sample_indices(n: int, k: int | None) -> np.ndarray | None:
    """Sorted row positions of a deterministic sample of ``k`` of ``n`` rows, or ``None`` for
    all rows."""
    if k is None or k >= n:
        return None
    import numpy as np

    rng = np.random.default_rng(SAMPLE_SEED)
    return np.sort(rng.choice(n, size=k, replace=False))


def _profile_columns(
    row_count: int,
    profiled: int,
    sampled: bool,
    items: Iterable[tuple[str, dict[str, Any]]],
) -> dict[str, Any]:
    """The profile document around the column profiles ``items`` yields (lazily, one at a
    time, so only one column's temporaries are alive)."""
    columns = [{"name": name, **stats} for name, stats in items]
    return _json_ready(
        {
            "version": PROFILE_VERSION,
            "row_count": row_count,
            "profiled_rows": profiled,
            "sample_seed": SAMPLE_SEED if sampled else None,
            "columns": columns,
        }
    )


def _profile_frame(df: Any, opts: _Options) -> dict[str, Any]:
    idx = _sample_indices(len(df), opts.sample_rows)
    sample = df if idx is None else df.iloc[idx]
    return _profile_columns(len(df), len(sample), idx is not None, _frame_items(sample))


def _frame_items(df: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    for i, name in enumerate(df.columns):
        yield _column_name(name), _profile_series(df.iloc[:, i])


def _profile_series(s: Any) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    types = pd.api.types
    dtype = s.dtype
    mask = s.isna().to_numpy(dtype=bool)
    nulls = int(mask.sum())
    base: dict[str, Any] = {"count": len(s), "null_count": nulls}  # after "kind"
    if isinstance(dtype, pd.CategoricalDtype) or types.is_bool_dtype(dtype):
        return _categorical(base, _value_counts(s[~mask]))
    if types.is_datetime64_any_dtype(dtype):
        present = s[~mask]
        return {
            "kind": "datetime",
            **base,
            "min": present.min().isoformat() if len(present) else None,
            "max": present.max().isoformat() if len(present) else None,
        }
    if types.is_timedelta64_dtype(dtype):
        seconds = s[~mask].dt.total_seconds().to_numpy(dtype="float64")
        return _numeric({"kind": "timedelta", "unit": "seconds", **base}, seconds, 0)
    if types.is_numeric_dtype(dtype) and not types.is_complex_dtype(dtype):
        np_dtype = (
            dtype
            if isinstance(dtype, np.dtype)
            # nullable and Arrow dtypes name their numpy dtype; a sparse one its subtype
            else getattr(dtype, "numpy_dtype", None) or getattr(dtype, "subtype", None)
        )
        if np_dtype is not None and np_dtype.kind in "iuf":
            present = s[~mask].to_numpy(dtype=np_dtype)
            # In a numpy float column NaN *is* the missing value; nullable floats may hold NaN
            # beside NA, and those are still among the present values.
            nan_count = nulls if isinstance(dtype, np.dtype) and dtype.kind == "f" else 0
            return _numeric({"kind": "numeric", **base}, present, nan_count)
    if types.is_object_dtype(dtype) or types.is_string_dtype(dtype):
        return _categorical(base, _value_counts(s[~mask]))
    return {"kind": "other", **base}


def _value_counts(s: Any) -> Any:
    try:
        vc = s.value_counts(dropna=True, sort=True)
    except TypeError:  # unhashable values (lists, dicts): count their display text
        vc = s.map(_display).value_counts(dropna=True, sort=True)
    return vc[vc > 0]  # a categorical lists its unused categories with 0


def _categorical(base: dict[str, Any], counts: Any) -> dict[str, Any]:
    """``counts``: a pandas value_counts result (sorted by count, descending) or a Counter."""
    if isinstance(counts, Counter):
        distinct = len(counts)
        top = heapq.nsmallest(TOP_K, counts.items(), key=lambda vc: (-vc[1], _sort_key(vc[0])))
    else:
        distinct = len(counts)
        top = _top_from_sorted(counts)
    return {
        "kind": "categorical",
        **base,
        "distinct_count": distinct,
        "top": [{"value": _json_scalar(v), "count": int(c)} for v, c in top],
    }


_ONE_KIND = ("string", "bytes", "integer", "floating", "mixed-integer-float", "boolean")


def _top_from_sorted(vc: Any) -> list[tuple[Any, int]]:
    """The top-k of a count-sorted value_counts, ties at the cut broken by value. Only the tie
    group at the k-th count is searched, once."""
    import pandas as pd

    if len(vc) == 0:
        return []
    cut = int(vc.iloc[min(TOP_K, len(vc)) - 1])
    above = [(v, int(c)) for v, c in vc[vc > cut].items()]
    above.sort(key=lambda vc: (-vc[1], _sort_key(vc[0])))
    need = TOP_K - len(above)
    # As objects (a categorical's values, not its codes; no per-item Arrow access).
    ties = vc[vc == cut].index.to_numpy(dtype=object)
    if len(ties) > need and pd.api.types.infer_dtype(ties, skipna=False) in _ONE_KIND:
        # Values of one kind compare in C, in the order _sort_key gives: a tie group of a
        # million distinct ids costs one pass, not a keyed Python sort.
        ordered = heapq.nsmallest(need, ties)
    else:
        ordered = heapq.nsmallest(need, ties, key=_sort_key)
    return above + [(v, cut) for v in ordered]


def _sort_key(v: Any) -> tuple[Any, ...]:
    if isinstance(v, (bool, int, float)) or type(v).__module__ == "numpy":
        try:
            return (0, float(v))
        except (TypeError, ValueError):
            pass
    if isinstance(v, str):
        return (1, v)
    if isinstance(v, bytes):
        return (2, v)
    return (3, type(v).__qualname__, _display(v))


def _numeric(base: dict[str, Any], present: np.ndarray, nan_count: int) -> dict[str, Any]:
    """Statistics of the non-null values of a numeric column; infinities and NaN are counted
    and left out of every statistic."""
    import numpy as np

    out: dict[str, Any] = {**base}
    if present.dtype.kind == "f":
        nan = np.isnan(present)
        inf = np.isinf(present)
        out["nan_count"] = nan_count + int(nan.sum())
        out["inf_count"] = int(inf.sum())
        finite = present[~(nan | inf)]
    else:
        out["nan_count"] = 0
        out["inf_count"] = 0
        finite = present
    empty = {"mean": None, "std": None, "min": None, "max": None, "quantiles": None}
    if finite.size == 0:
        return {**out, **empty, "histogram": None}
    if finite.dtype.kind in "iu":
        lo_exact: Any = _int_or_float(finite.min())
        hi_exact: Any = _int_or_float(finite.max())
    else:
        lo_exact, hi_exact = float(finite.min()), float(finite.max())
    values = finite.astype("float64", copy=False)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow becomes None, not a warning
        mean = float(np.mean(values))
        std = float(np.std(values, ddof=1)) if values.size > 1 else None
        qs = np.quantile(values, QUANTILES)
    out.update(
        mean=_finite(mean),
        std=_finite(std),
        min=lo_exact,
        max=hi_exact,
        quantiles={f"p{round(q * 100):02d}": _finite(float(x)) for q, x in zip(QUANTILES, qs)},
        histogram=_histogram(values),
    )
    return out


def _histogram(values: np.ndarray) -> dict[str, list[Any]]:
    import numpy as np

    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        return {"edges": [lo, hi], "counts": [int(values.size)]}
    if math.isfinite(hi - lo):
        edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)  # round edges for round data
    else:  # hi - lo overflows (e.g. -1e308 .. 1e308); this form cannot
        t = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
        edges = lo * (1.0 - t) + hi * t
    edges[0], edges[-1] = lo, hi
    idx = np.searchsorted(edges, values, side="right") - 1
    np.clip(idx, 0, HISTOGRAM_BINS - 1, out=idx)  # the maximum belongs to the last bin
    counts = np.bincount(idx, minlength=HISTOGRAM_BINS)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def _int_or_float(x: Any) -> int | float:
    v = int(x)
    return v if -(2**63) <= v < 2**63 else float(v)  # properties hold 64-bit integers


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _profile_ndarray(arr: np.ndarray, opts: _Options) -> dict[str, Any]:
    import numpy as np

    if isinstance(arr, np.ma.MaskedArray):
        mask_all = np.ma.getmaskarray(arr)
        data = np.ma.getdata(arr)
    else:
        mask_all, data = None, np.asarray(arr)
    rows = _array_rows(data.shape)
    if data.ndim == 0:
        data = data.reshape(1)
        mask_all = None if mask_all is None else mask_all.reshape(1)
    idx = _sample_indices(rows, opts.sample_rows)
    if idx is not None:
        data = data[idx]
        mask_all = None if mask_all is None else mask_all[idx]

    def columns() -> Iterator[tuple[str, dict[str, Any]]]:
        def one(values: np.ndarray, mask: np.ndarray | None) -> dict[str, Any]:
            return _profile_array(values.reshape(-1), None if mask is None else mask.reshape(-1))

        if data.dtype.names is not None:
            for name in data.dtype.names:
                yield name, one(data[name], None if mask_all is None else mask_all[name])
        elif data.ndim == 2:
            for j in range(data.shape[1]):
                yield f"col_{j}", one(data[:, j], None if mask_all is None else mask_all[:, j])
        else:
            yield "value", one(data, mask_all)

    return _profile_columns(rows, data.shape[0], idx is not None, columns())


def _profile_array(values: np.ndarray, mask: np.ndarray | None) -> dict[str, Any]:
    """Profile a 1-D numpy column; ``mask`` marks masked-array nulls."""
    import numpy as np

    kind = values.dtype.kind
    null = np.zeros(values.shape, dtype=bool) if mask is None else mask.astype(bool)
    nan_count = 0
    if kind == "f":
        nan = np.isnan(values)
        nan_count = int((nan & ~null).sum())
        null = null | nan
    elif kind in "mM":
        null = null | np.isnat(values)
    elif kind in "OT":  # objects; numpy 2 strings with an na_object
        null = null | np.fromiter((_is_null(v) for v in values), dtype=bool, count=values.size)
    present = values[~null]
    base: dict[str, Any] = {"count": int(values.size), "null_count": int(null.sum())}
    if kind in "iuf":
        return _numeric({"kind": "numeric", **base}, present, nan_count)
    if kind == "M":
        if present.size == 0:
            return {"kind": "datetime", **base, "min": None, "max": None}
        lo, hi = present.min(), present.max()
        return {
            "kind": "datetime",
            **base,
            "min": str(np.datetime_as_string(lo)),
            "max": str(np.datetime_as_string(hi)),
        }
    if kind == "m":
        seconds = present.astype("m8[ns]").astype("int64") / 1e9
        return _numeric({"kind": "timedelta", "unit": "seconds", **base}, seconds, 0)
    if kind in "bUS":  # fixed-width: counted in C
        uniq, freq = np.unique(present, return_counts=True)
        return _categorical(base, Counter(dict(zip(uniq.tolist(), freq.tolist()))))
    if kind in "OT":
        items = present.tolist()
        try:
            counts = Counter(items)
        except TypeError:  # unhashable elements
            counts = Counter(_display(v) for v in items)
        return _categorical(base, counts)
    return {"kind": "other", **base}


def _is_null(v: Any) -> bool:
    if v is None or (isinstance(v, float) and v != v):
        return True
    return type(v).__name__ in ("NAType", "NaTType")


def _display(v: Any) -> str:
    """Canonical text for a value that is no JSON scalar (lists, dicts, sets, arrays): counted
    and shown by it. Sets are sorted: their ``str`` follows the hash seed."""
    return json.dumps(_plain(v), sort_keys=True, allow_nan=True, ensure_ascii=False)


def _plain(v: Any, depth: int = 0) -> Any:
    if depth > 16:
        return "…"
    if type(v).__module__ == "numpy" and hasattr(v, "tolist"):
        v = v.tolist()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, Mapping):
        return {
            _display(k) if not isinstance(k, str) else k: _plain(x, depth + 1) for k, x in v.items()
        }
    if isinstance(v, (set, frozenset)):
        return sorted(
            (_plain(x, depth + 1) for x in v), key=lambda x: json.dumps(x, sort_keys=True)
        )
    if isinstance(v, (list, tuple)):
        return [_plain(x, depth + 1) for x in v]
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        return v.isoformat()
    return str(v)


def _json_scalar(v: Any) -> Any:
    """A value as it may appear in a profile: a JSON scalar, text cut to 256 characters."""
    if hasattr(v, "item") and type(v).__module__ == "numpy":
        v = v.item()
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v if -(2**63) <= v < 2**63 else str(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        text = v.isoformat()
    elif isinstance(v, (Mapping, list, tuple, set, frozenset)):
        text = _display(v)
    elif isinstance(v, bytes):
        text = v.decode("utf-8", "backslashreplace")
    else:
        text = str(v)
    text = text.replace("\x00", "\\x00")  # the vocabulary refuses NUL in text
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _json_ready(value: Any) -> Any:
    """Defensive last pass: numpy scalars to Python, non-finite floats to null."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
