"""Model flavors: how a model object becomes files in the artifact store, and comes back.

A flavor is an object with a ``name`` and two methods (subclass :class:`Flavor`)::

    class OnnxFlavor(Flavor):
        name = "onnx"
        packages = ("onnx",)          # their versions are recorded with every model saved

        def detect(self, model):      # optional: run.log_model(obj) picks this flavor by itself
            return type(model).__name__ == "ModelProto"

        def save(self, model, directory, **options):
            (directory / "model.onnx").write_bytes(model.SerializeToString())
            return {"file": "model.onnx"}          # JSON metadata, given back to load

        def load(self, directory, metadata):
            import onnx
            return onnx.load(directory / metadata["file"])

    register_flavor(OnnxFlavor())

``run.log_model(model, name="churn")`` then (see :func:`save_model`) saves the model through
its flavor into a temporary directory, stores that directory as one deterministic archive
(sorted members, no times or owners: the same files give the same digest), and registers the
version with ``flavor`` set and ``metadata``: the flavor's own metadata, the layout, the
training environment (python, platform, the versions of the flavor's ``packages``) and the
user-defined objects the model needs (:func:`capture_custom_objects`). ``client.load_model``
(:func:`load_model`) downloads the archive (verified against its digest), unpacks it safely
(:func:`extract_archive`), warns with :class:`EnvironmentMismatchWarning` when a recorded
package version differs from the installed one, and calls the flavor's ``load``.

A flavor whose ``single_file`` is set (``pickle`` and ``sklearn``: ``"model.pkl"``) writes that
one file, which is stored as it is (not archived), so a pickled model stays loadable with
``pickle.loads(client.artifacts.get_bytes(version.artifact_digest))``.

Built-in flavors are registered lazily: the table :data:`BUILTIN_FLAVORS` names the module
holding each and the top-level packages of the types it detects, so no framework is imported
until a model of it is logged or loaded. Flavors registered with :func:`register_flavor` are
asked first (most recent first); then the built-ins whose packages appear in the model type's
method resolution order (so an ``xgboost.XGBClassifier``, a scikit-learn estimator too, is
saved by the ``xgboost`` flavor); the fallback is ``pickle``.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import importlib
import importlib.metadata
import inspect
import os
import pickle
import shutil
import stat
import sys
import sysconfig
import tarfile
import tempfile
import threading
import types
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from lineagehub.graph import ValidationError

#: The version of the ``metadata`` layout below; :func:`load_model` refuses newer ones.
METADATA_FORMAT = 1
#: Safe extraction limits (:func:`extract_archive`): total bytes and number of members.
MAX_EXTRACT_BYTES = 64 * 1024**3
MAX_EXTRACT_MEMBERS = 1_000_000
#: Source text of one custom object above this is not captured (a generated module).
MAX_SOURCE_CHARS = 256 * 1024  # as the hub keeps (tracking.MAX_CUSTOM_SOURCE)


class EnvironmentMismatchWarning(UserWarning):
    """A model is loaded where a package it was saved with has another version (or is
    missing): it may load differently, or not at all."""


class Flavor(abc.ABC):
    """How models of one kind are saved to and loaded from a directory.

    ``name``: the flavor's name (``ModelVersion.flavor``); ``packages``: the distributions
    whose installed versions are recorded when saving and compared when loading;
    ``single_file``: when set, ``save`` writes exactly that file, stored without an archive.
    """

    name: str = ""
    packages: tuple[str, ...] = ()
    single_file: str | None = None

    def detect(self, model: Any) -> bool:
        """Whether ``model`` is of this flavor (for ``run.log_model`` without ``flavor=``)."""
        return False

    @abc.abstractmethod
    def save(self, model: Any, directory: Path, **options: Any) -> dict[str, Any]:
        """Write ``model`` into the (empty, existing) ``directory``; return JSON-able
        metadata, handed back to :meth:`load`. ``options``: ``run.log_model``'s
        ``flavor_options``."""
        raise NotImplementedError

    @abc.abstractmethod
    def load(self, directory: Path, metadata: Mapping[str, Any]) -> Any:
        """The model saved in ``directory`` (what :meth:`save` wrote, with its metadata)."""
        raise NotImplementedError

    def custom_objects(self, model: Any) -> list[Any]:
        """The classes and functions the model uses that may be user-defined (a custom
        transformer in a Pipeline, an objective function): :func:`capture_custom_objects`
        keeps those that are, with their source."""
        return []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class PickleFlavor(Flavor):
    """Any picklable object, as ``model.pkl`` (the fallback flavor)."""

    name = "pickle"
    single_file = "model.pkl"

    def detect(self, model: Any) -> bool:
        return True

    def save(self, model: Any, directory: Path, **options: Any) -> dict[str, Any]:
        try:
            raw = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # pickling runs arbitrary __reduce__ code
            raise ValidationError(
                f"model: cannot pickle a {type(model).__name__}: {e}", field="model"
            ) from None
        (directory / "model.pkl").write_bytes(raw)
        return {"class": _type_name(model)}

    def load(self, directory: Path, metadata: Mapping[str, Any]) -> Any:
        with (directory / "model.pkl").open("rb") as f:
            return pickle.load(f)

    def custom_objects(self, model: Any) -> list[Any]:
        return [type(model)]


class SklearnFlavor(PickleFlavor):
    """scikit-learn estimators (pickled, as scikit-learn itself recommends), with the
    user-defined estimators, transformers and functions inside them (Pipeline steps,
    ColumnTransformer parts, FunctionTransformer functions, meta-estimators' estimators)."""

    name = "sklearn"
    packages = ("scikit-learn", "numpy", "scipy")

    def detect(self, model: Any) -> bool:
        return _has_module_root(model, "sklearn")

    def custom_objects(self, model: Any) -> list[Any]:
        return list(_walk_sklearn(model))


def _walk_sklearn(obj: Any, seen: set[int] | None = None) -> Iterator[Any]:
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if callable(obj) and isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
        yield obj
        return
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _walk_sklearn(item, seen)
        return
    if isinstance(obj, dict):
        for item in obj.values():
            yield from _walk_sklearn(item, seen)
        return
    get_params = getattr(obj, "get_params", None)
    if isinstance(obj, type) or get_params is None:
        return
    yield type(obj)
    try:
        params = get_params(deep=False)
    except Exception:
        return
    for value in params.values():
        yield from _walk_sklearn(value, seen)


# --- the registry -------------------------------------------------------------------------------

#: Built-in flavors, imported when first needed: name -> (``module:attribute`` of the flavor
#: object, top-level modules whose types it detects).
BUILTIN_FLAVORS: dict[str, tuple[str, tuple[str, ...]]] = {
    "pickle": ("lineagehub.ingest.flavors:PICKLE", ()),
    "sklearn": ("lineagehub.ingest.flavors:SKLEARN", ("sklearn",)),
    "xgboost": ("lineagehub.ingest.xgboost:FLAVOR", ("xgboost",)),
    "lightgbm": ("lineagehub.ingest.lightgbm:FLAVOR", ("lightgbm",)),
    "torch": ("lineagehub.ingest.torch:FLAVOR", ("torch",)),
    "lightning": ("lineagehub.ingest.lightning:FLAVOR", ("lightning",)),
    "keras": ("lineagehub.ingest.keras:FLAVOR", ("keras",)),
    "transformers": ("lineagehub.ingest.transformers:FLAVOR", ("transformers",)),
}

PICKLE = PickleFlavor()
SKLEARN = SklearnFlavor()

_registered: dict[str, Flavor] = {}
_lock = threading.Lock()


def register_flavor(flavor: Flavor, *, replace: bool = False) -> Flavor:
    """Make ``flavor`` known by its name (asked before the built-ins when detecting). A name
    already registered raises :class:`ValidationError` unless ``replace=True``."""
    name = getattr(flavor, "name", None)
    if not isinstance(name, str) or not name.replace("-", "_").isidentifier():
        raise ValidationError(
            "flavor.name must be an identifier (letters, digits, '_', '-')", field="flavor"
        )
    for method in ("save", "load"):
        if not callable(getattr(flavor, method, None)):
            raise ValidationError(f"flavor {name!r} has no {method}()", field="flavor")
    with _lock:
        if name in _registered and not replace:
            raise ValidationError(
                f"flavor {name!r} is already registered (replace=True to replace it)",
                field="flavor",
            )
        _registered[name] = flavor
    return flavor


def unregister_flavor(name: str) -> None:
    """Forget a flavor registered with :func:`register_flavor` (the built-ins stay)."""
    with _lock:
        _registered.pop(name, None)


def flavor_names() -> list[str]:
    """Every flavor name known: registered and built-in."""
    return sorted({*_registered, *BUILTIN_FLAVORS})


def get_flavor(name: str) -> Flavor:
    """The flavor called ``name`` (a built-in one is imported now); :class:`ValidationError`
    naming the known flavors, or the extra to install, when there is none."""
    found = _registered.get(name)
    if found is not None:
        return found
    builtin = BUILTIN_FLAVORS.get(name)
    if builtin is None:
        raise ValidationError(
            f"flavor: no flavor {name!r} (known: {', '.join(flavor_names())}); "
            "register_flavor() adds one",
            field="flavor",
        )
    target, _ = builtin
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValidationError(
            f"flavor {name!r} needs its framework: pip install 'lineagehub[{name}]' ({e})",
            field="flavor",
        ) from None
    flavor: Flavor = getattr(module, attribute)
    return flavor


def detect_flavor(model: Any) -> Flavor:
    """The flavor for ``model``: registered flavors first (most recent first), then the
    built-in one for the first class of its method resolution order that belongs to a
    framework the table knows, else ``pickle``."""
    for flavor in reversed(list(_registered.values())):
        with contextlib.suppress(Exception):  # a flavor's detect must not break logging
            if flavor.detect(model):
                return flavor
    for cls in type(model).__mro__:
        root = cls.__module__.partition(".")[0]
        for name, (_, roots) in BUILTIN_FLAVORS.items():
            if root in roots and name not in _registered:
                flavor = get_flavor(name)
                if flavor.detect(model):
                    return flavor
    return PICKLE


# --- saving -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedModel:
    """A model saved through its flavor: the file or directory to store, and the metadata."""

    flavor: Flavor
    path: Path
    metadata: dict[str, Any]
    custom_objects: list[dict[str, Any]]


@contextlib.contextmanager
def save_model(
    model: Any,
    flavor: str | Flavor | None = None,
    options: Mapping[str, Any] | None = None,
    custom_objects: Iterable[Any] = (),
) -> Iterator[SavedModel]:
    """Save ``model`` through its flavor into a temporary directory (removed when the block
    ends). The metadata: ``format``, ``flavor``, ``layout`` (``file`` or ``directory``),
    ``file`` (for ``file``), ``data`` (what the flavor's ``save`` returned), ``environment``
    and ``custom_objects`` (module, qualname, digest of each; the source is in
    :attr:`SavedModel.custom_objects`)."""
    chosen = (
        detect_flavor(model)
        if flavor is None
        else flavor
        if isinstance(flavor, Flavor)
        else get_flavor(flavor)
    )
    with tempfile.TemporaryDirectory(prefix="lineagehub-model-") as tmp:
        directory = Path(tmp) / "model"
        directory.mkdir()
        data = chosen.save(model, directory, **dict(options or {}))
        if not isinstance(data, Mapping):
            raise ValidationError(
                f"flavor {chosen.name!r}: save() must return a mapping, got {type(data).__name__}",
                field="flavor",
            )
        objects = [*_safe_custom_objects(chosen, model), *custom_objects]
        captured = capture_custom_objects(objects)
        metadata: dict[str, Any] = {
            "format": METADATA_FORMAT,
            "flavor": chosen.name,
            "layout": "directory",
            "data": dict(data),
            "environment": environment_for(chosen.packages),
            "custom_objects": [{k: v for k, v in c.items() if k != "source"} for c in captured],
        }
        path = directory
        if chosen.single_file is not None:
            path = directory / chosen.single_file
            written = sorted(p.name for p in directory.iterdir())
            if written != [chosen.single_file]:
                raise ValidationError(
                    f"flavor {chosen.name!r} must write exactly {chosen.single_file!r}, "
                    f"wrote {written}",
                    field="flavor",
                )
            metadata["layout"] = "file"
            metadata["file"] = chosen.single_file
        yield SavedModel(chosen, path, metadata, captured)


def _safe_custom_objects(flavor: Flavor, model: Any) -> list[Any]:
    try:
        return list(flavor.custom_objects(model))
    except Exception:  # finding them is best effort; the model itself is saved
        return []


def environment_for(packages: Iterable[str]) -> dict[str, Any]:
    """The environment a model is saved in: python, platform and the installed version of
    each of ``packages`` (``None`` when not installed)."""
    from lineagehub.ingest.capture import capture_environment

    env = capture_environment().environment
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": env.python, "platform": env.platform, "packages": versions}


def environment_differences(recorded: Mapping[str, Any]) -> list[str]:
    """How the current environment differs from ``recorded`` (see :func:`environment_for`):
    one line per package whose version differs, and the python version's minor release."""
    packages = recorded.get("packages") or {}
    now = environment_for(packages)
    lines = []
    for name, then in sorted(packages.items()):
        if now["packages"].get(name) != then:
            lines.append(f"{name} {then or 'absent'} -> {now['packages'].get(name) or 'absent'}")
    then_py, now_py = str(recorded.get("python") or ""), str(now["python"])
    if then_py and then_py.split(".")[:2] != now_py.split(".")[:2]:
        lines.append(f"python {then_py} -> {now_py}")
    return lines


# --- custom objects -----------------------------------------------------------------------------


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs |= {p for p in sys.path if p.endswith(("site-packages", "dist-packages"))}
    return tuple(os.path.realpath(d) + os.sep for d in dirs if d)


def is_user_defined(obj: Any) -> bool:
    """Whether ``obj`` (a class or function) is defined outside installed libraries and the
    standard library: in ``__main__``, a notebook, or the user's own source tree."""
    module_name = getattr(obj, "__module__", None)
    if not isinstance(module_name, str):
        return False
    if module_name == "__main__":
        return True
    if module_name.partition(".")[0] in ("lineagehub", "builtins"):
        return False
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if not file:
        return False  # a built-in or frozen module
    real = os.path.realpath(file)
    return not real.startswith(_library_dirs()) and "site-packages" not in real


def capture_custom_objects(objects: Iterable[Any]) -> list[dict[str, Any]]:
    """The user-defined classes and functions among ``objects`` (instances count as their
    class), each once, in order: ``{"name", "module", "qualname", "kind" ("class" |
    "function"), "source", "digest" ("sha256:" of the source, UTF-8), "file"}``. Objects of
    libraries and the standard library, lambdas and those whose source cannot be read are
    skipped. A flavor returns candidates from :meth:`Flavor.custom_objects`; ``run.log_model
    (custom_objects=[...])`` adds more."""
    found: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for obj in objects:
        target = obj
        if not isinstance(obj, (type, types.FunctionType)):
            target = type(obj)
        if isinstance(target, types.FunctionType) and target.__name__ == "<lambda>":
            continue
        if not is_user_defined(target):
            continue
        key = (target.__module__, target.__qualname__)
        if key in seen:
            continue
        try:
            source = inspect.getsource(target)
        except (OSError, TypeError):
            continue
        if len(source) > MAX_SOURCE_CHARS:
            continue
        seen.add(key)
        module = sys.modules.get(target.__module__)
        file = getattr(module, "__file__", None)
        found.append(
            {
                "name": target.__name__,
                "module": target.__module__,
                "qualname": target.__qualname__,
                "kind": "class" if isinstance(target, type) else "function",
                "source": source,
                "digest": "sha256:" + hashlib.sha256(source.encode()).hexdigest(),
                "file": os.path.basename(file) if isinstance(file, str) else None,
            }
        )
    return found


# --- archives -----------------------------------------------------------------------------------


def write_archive(folder: Path, out: BinaryIO, field: str = "path") -> None:
    """Write ``folder`` as a deterministic tar to ``out``: sorted members, no times, owners
    or umask-dependent modes (files 0644, or 0755 when executable; folders 0755), so the same
    content always gives the same bytes (and digest). Links to something in the folder are
    kept as links; a link to a file outside it (a Hugging Face cache's snapshot) is stored as
    that file, and hard links as the files they are; a link to a folder outside it, sockets,
    FIFOs and devices are refused."""
    root = os.path.realpath(folder)
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            if not (path.is_symlink() or path.is_file() or path.is_dir()):
                # a socket, FIFO or device: no content to version (tarfile skips sockets
                # silently, and would block reading a FIFO)
                raise ValidationError(
                    f"{folder / rel} is not a file, folder or link: only those can be stored",
                    field=field,
                )
            if any(p.is_symlink() for p in path.relative_to(folder).parents if p.parts):
                continue  # under a linked folder: the link is stored, not what it leads to
            link = path.is_symlink()
            resolved = os.path.realpath(path)
            inside = resolved == root or resolved.startswith(root + os.sep)
            if link and not inside:
                if not os.path.isfile(resolved):
                    raise ValidationError(
                        f"{folder / rel} links to {resolved}, outside the folder and not a "
                        "file: copy it in, or log it on its own",
                        field=field,
                    )
                link = False  # stored as the file it names
            # a file linked twice (hard links) is stored twice, whole (tarfile's own record of
            # the inodes it has written, not in the type stubs)
            tar.inodes.clear()  # type: ignore[attr-defined]
            info = tar.gettarinfo(resolved if not link else str(path), arcname=rel)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isdir():
                info.mode = 0o755
            elif info.isfile():
                info.mode = 0o755 if info.mode & 0o111 else 0o644
            if info.isfile():
                try:
                    with open(resolved, "rb") as f:
                        tar.addfile(info, f)
                except OSError as e:  # it shrank while being read ("unexpected end of data")
                    raise ValidationError(
                        f"cannot store {folder / rel}: {e.strerror or e} (did it change while "
                        "the folder was being logged?)",
                        field=field,
                    ) from None
            else:
                tar.addfile(info)


def _make_links(links: list[tuple[str, str, str]]) -> None:
    """The archive's symbolic links, after its files and folders (nothing is ever written
    through one), each refused unless it resolves inside the folder by its text alone: no
    absolute target, and no ``..`` out of the folder or after another link of the archive
    (``a -> b/..`` with ``b -> .`` reaches the folder's parent, whatever order they come in)."""
    named = {PurePosixPath(name) for name, _, _ in links}
    for name, out, link in links:
        here: list[str] = list(PurePosixPath(name).parent.parts)
        safe = bool(link) and not link.startswith(("/", "\\")) and "\\" not in link
        for part in PurePosixPath(link).parts if safe else ():
            if part == "..":
                if not here or PurePosixPath(*here) in named:
                    safe = False
                    break
                here.pop()
            elif part != ".":
                here.append(part)
        if not safe:
            raise ValidationError(
                f"archive: link {name!r} -> {link!r} points outside the folder", field="archive"
            )
        os.makedirs(os.path.dirname(out), exist_ok=True)
        os.symlink(link, out)


def extract_archive(
    source: str | os.PathLike[str] | BinaryIO,
    dest: str | os.PathLike[str],
    *,
    max_bytes: int = MAX_EXTRACT_BYTES,
    max_members: int = MAX_EXTRACT_MEMBERS,
) -> Path:
    """Unpack a directory archive into ``dest`` (created; must not exist or be empty),
    refusing anything unsafe with :class:`ValidationError` before writing it: absolute
    paths, ``..``, links pointing outside ``dest`` (or hard links), devices and FIFOs,
    more than ``max_members`` members or ``max_bytes`` bytes in all. It is unpacked into a
    folder of its own beside ``dest`` and renamed into place once whole: nothing half-extracted
    is ever at ``dest``, and two unpacking into one ``dest`` at once never mix (one gets it,
    the other an error)."""
    target = Path(dest)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValidationError(f"{str(target)!r} exists and is not empty", field="path")
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.part"
    stage.mkdir()
    root = os.path.realpath(stage)
    try:
        with _open_tar(source) as tar:
            total = 0
            links: list[tuple[str, str, str]] = []  # made last, once every one is known
            for count, member in enumerate(tar, start=1):
                if count > max_members:
                    raise ValidationError(
                        f"archive: more than {max_members} members", field="archive"
                    )
                name = member.name
                parts = PurePosixPath(name).parts
                if not name or name.startswith(("/", "\\")) or ".." in parts or "\\" in name:
                    raise ValidationError(f"archive: unsafe member path {name!r}", field="archive")
                out = os.path.realpath(os.path.join(root, *parts))
                if out != root and not out.startswith(root + os.sep):
                    raise ValidationError(
                        f"archive: member {name!r} leads outside the folder", field="archive"
                    )
                if member.isdir():
                    os.makedirs(out, exist_ok=True)
                elif member.isfile():
                    total += member.size
                    if total > max_bytes:
                        raise ValidationError(
                            f"archive: more than {max_bytes} bytes unpacked", field="archive"
                        )
                    os.makedirs(os.path.dirname(out), exist_ok=True)
                    reader = tar.extractfile(member)
                    assert reader is not None
                    with reader, open(out, "xb") as f:
                        shutil.copyfileobj(reader, f)
                    mode = member.mode & (stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO)
                    os.chmod(out, mode | stat.S_IRUSR | stat.S_IWUSR)
                elif member.issym():
                    links.append((name, out, member.linkname))
                else:
                    raise ValidationError(
                        f"archive: member {name!r} is not a file, folder or link "
                        "(hard links, devices and FIFOs are refused)",
                        field="archive",
                    )
            _make_links(links)
    except tarfile.TarError as e:
        shutil.rmtree(stage, ignore_errors=True)
        raise ValidationError(f"archive: not a readable tar: {e}", field="archive") from None
    except OSError as e:  # a member twice, a file where a folder is needed...
        shutil.rmtree(stage, ignore_errors=True)
        raise ValidationError(
            f"archive: cannot unpack into {str(target)!r}: {e}", field="archive"
        ) from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    try:
        if target.is_dir() and not target.is_symlink():
            target.rmdir()  # empty (checked above): fails if another filled it meanwhile
        os.rename(stage, target)  # fails if another put its own there meanwhile
    except OSError:
        shutil.rmtree(stage, ignore_errors=True)
        raise ValidationError(
            f"{str(target)!r} exists and is not empty (written meanwhile)", field="path"
        ) from None
    return target


@contextlib.contextmanager
def _open_tar(source: str | os.PathLike[str] | BinaryIO) -> Iterator[tarfile.TarFile]:
    if isinstance(source, (str, os.PathLike)):
        with tarfile.open(source, mode="r:") as tar:
            yield tar
    else:
        with tarfile.open(fileobj=source, mode="r|") as tar:
            yield tar


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a tar archive (a directory artifact)."""
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


# --- loading ------------------------------------------------------------------------------------


def load_from(
    path: Path, flavor_name: str | None, metadata: Mapping[str, Any] | None, where: str
) -> Any:
    """The model stored at ``path`` (a downloaded, verified artifact: the file itself, or an
    archive), loaded by its flavor. Versions registered before flavors recorded metadata
    load when their flavor is ``pickle`` or ``sklearn`` (the pickled file)."""
    if metadata is None or "flavor" not in metadata:
        if flavor_name in ("pickle", "sklearn"):
            metadata = {"flavor": flavor_name, "layout": "file", "file": "model.pkl", "data": {}}
        else:
            raise ValidationError(
                f"{where} records no flavor to load it with (flavor {flavor_name!r}); "
                "client.download() gives its files",
                field="ref",
            )
    fmt = metadata.get("format", METADATA_FORMAT)
    if not isinstance(fmt, int) or fmt > METADATA_FORMAT:
        raise ValidationError(
            f"{where} was saved by a newer lineagehub (model metadata format {fmt!r})",
            field="ref",
        )
    flavor = get_flavor(str(metadata["flavor"]))
    differences = environment_differences(metadata.get("environment") or {})
    if differences:
        warnings.warn(
            EnvironmentMismatchWarning(
                f"{where} was saved with other versions: {'; '.join(differences)}"
            ),
            stacklevel=3,
        )
    data = metadata.get("data") or {}
    if metadata.get("layout") == "file":
        name = str(metadata.get("file") or "model.pkl")
        if PurePosixPath(name).name != name or name in ("", ".", ".."):
            raise ValidationError(f"{where}: unsafe file name {name!r}", field="ref")
        folder = path.parent / "model"
        folder.mkdir()
        os.replace(path, folder / name)
    else:
        folder = extract_archive(path, path.parent / "model")
    try:
        return flavor.load(folder, data)
    except (AttributeError, ImportError, pickle.UnpicklingError, EOFError) as e:
        # a class the pickle names that this process has not (defined in the training
        # script's __main__, a module not installed) or bytes that are not the flavor's
        raise ValidationError(
            f"{where} could not be loaded by its flavor {metadata['flavor']!r}: "
            f"{type(e).__name__}: {e}. The classes it was saved with must be importable here "
            "(one defined in the training script's __main__ is not: define it in a module); "
            "client.download() gives the files as they are",
            field="ref",
        ) from e


def _type_name(model: Any) -> str:
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"


def _has_module_root(model: Any, root: str) -> bool:
    return any(c.__module__.partition(".")[0] == root for c in type(model).__mro__)


def has_module_root(model: Any, *roots: str) -> bool:
    """Whether a class in ``model``'s method resolution order comes from one of the top-level
    packages ``roots`` (a detect() that imports nothing)."""
    return any(_has_module_root(model, r) for r in roots)


__all__ = [
    "BUILTIN_FLAVORS",
    "METADATA_FORMAT",
    "EnvironmentMismatchWarning",
    "Flavor",
    "PickleFlavor",
    "SavedModel",
    "SklearnFlavor",
    "capture_custom_objects",
    "detect_flavor",
    "environment_differences",
    "environment_for",
    "extract_archive",
    "flavor_names",
    "get_flavor",
    "has_module_root",
    "is_archive",
    "is_user_defined",
    "load_from",
    "register_flavor",
    "save_model",
    "unregister_flavor",
    "write_archive",
]
