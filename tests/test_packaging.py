"""The package as users install it: one import package, typed, lint-clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # Built from a clean copy: setuptools builds in the tree, and a build/ folder left by an
    # earlier build would put modules that no longer exist into the wheel.
    source = tmp_path_factory.mktemp("source") / "lineagehub"
    skip = ("build", "dist", ".venv", ".git", "*.egg-info", "node_modules", "target", "__pycache__")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*skip))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(source)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (path,) = out.glob("lineagehub-*.whl")
    yield path


@pytest.fixture(scope="session")
def unpacked(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(dest)
    return dest


def test_wheel_installs_one_import_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"lineagehub"}
    for sub in ("graph", "schema", "ingest"):
        assert f"lineagehub/{sub}/__init__.py" in names
    assert "lineagehub/graph/sqlite.py" in names
    assert "lineagehub/py.typed" in names
    assert "lineagehub/schema/schema.graphql" in names  # the SDK derives its calls from it
    # GraphiQL's page and builds are served from the package (no CDN), with their licences
    for name in (
        "index.html",
        "app.js",
        "graphiql.min.js",
        "react.production.min.js",
        "react-dom.production.min.js",
        "LICENSE.graphiql.txt",
        "LICENSE.react.txt",
    ):
        assert f"lineagehub/interfaces/static/graphiql/{name}" in names, name
    # and the lineage explorer's build (web/), so a pip install serves it with no Node.js
    for name in ("index.html", "explorer.js", "explorer.css", "LICENSES.txt", "build.json"):
        assert f"lineagehub/interfaces/static/explorer/{name}" in names, name
    # every module of the wheel is one of the source tree (see package-dir in pyproject.toml)
    folders = {
        "lineagehub": ROOT / "hub",
        "lineagehub/graph": ROOT / "graph",
        "lineagehub/schema": ROOT / "schema",
        "lineagehub/ingest": ROOT / "ingest",
    }
    for name in (n for n in names if n.endswith(".py")):
        prefix = max((p for p in folders if name.startswith(p + "/")), key=len)
        assert (folders[prefix] / name[len(prefix) + 1 :]).is_file(), name
    assert not any(n.startswith("lineagehub/tests") for n in names)
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(meta).decode()
    assert "Requires-Python: >=3.10" in metadata
    for dep in ("strawberry-graphql", "neo4j", "uvicorn", "boto3", "pydantic", "networkx",
                "graphviz"):  # fmt: skip
        assert f"Requires-Dist: {dep}" in metadata


def test_installed_module_names_do_not_shadow_popular_packages(unpacked: Path) -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import importlib.util as u; "
        "print([m for m in ('hub', 'graph', 'schema', 'ingest') "
        "if u.find_spec(m) and str(u.find_spec(m).origin or '').startswith(sys.argv[1])])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(unpacked)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_mypy_on_the_package_as_installed(unpacked: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--no-incremental", "-p", "lineagehub"],
        cwd=unpacked,
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_lint_and_format() -> None:
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
