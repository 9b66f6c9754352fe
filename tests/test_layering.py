"""The layers, checked on every module's imports (parsed with ``ast``, so imports inside
functions and under ``TYPE_CHECKING`` count as much as those at the top):

- ``lineagehub.graph`` (graph/) imports nothing of lineagehub outside itself;
- ``lineagehub.services`` never imports the interfaces, the GraphQL schema, the samples or the
  SDK (ingest/);
- ``lineagehub.ingest`` (the SDK) never imports the interfaces or the GraphQL schema (the server);
- ``lineagehub.schema`` never imports the interfaces.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# pyproject's package-dir: source folder -> package
FOLDERS = {
    "hub": "lineagehub",
    "graph": "lineagehub.graph",
    "schema": "lineagehub.schema",
    "ingest": "lineagehub.ingest",
}

# importer's package -> packages it must not import; None: everything of lineagehub outside
# the importer's package
RULES: dict[str, tuple[str, ...] | None] = {
    "lineagehub.graph": None,
    "lineagehub.services": (
        "lineagehub.interfaces",
        "lineagehub.schema",
        "lineagehub.samples",
        "lineagehub.ingest",
    ),
    "lineagehub.ingest": ("lineagehub.interfaces", "lineagehub.schema"),
    "lineagehub.schema": ("lineagehub.interfaces",),
}


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported} ({self.rule})"


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def source_modules() -> dict[str, Path]:
    """Every module of the package, by its dotted name."""
    modules: dict[str, Path] = {}
    for folder, package in FOLDERS.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            # graph/, schema/ and ingest/ are packages of their own, not hub/'s subfolders
            modules.setdefault(name, path)
    return modules


def imports_of(module: str, source: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """``(line, imported name)`` for every import anywhere in ``source``. ``from a import b``
    gives ``a.b`` (which may be a module) as well as ``a``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}" if alias.name != "*" else target


def check_source(module: str, source: str, is_package: bool = False) -> list[Violation]:
    """The layering rules ``module`` (with this ``source``) breaks. The rules are on
    package prefixes, so ``from a import b`` is judged as ``a.b`` whether ``b`` is a module or
    a name in ``a``."""
    rule = next((p for p in RULES if _within(module, p)), None)
    if rule is None:
        return []
    forbidden = RULES[rule]
    found: list[Violation] = []
    for line, name in imports_of(module, source, is_package):
        if not _within(name, "lineagehub"):
            continue
        if forbidden is None:
            bad = not _within(name, rule)
            what = f"{rule} imports nothing of lineagehub outside itself"
        else:
            bad = any(_within(name, f) for f in forbidden)
            what = f"{rule} must not import {', '.join(forbidden)}"
        if bad:
            found.append(Violation(module, line, name, what))
    return found


def test_the_checker_sees_the_whole_package() -> None:
    modules = source_modules()
    for expected in (
        "lineagehub",
        "lineagehub.graph.store",
        "lineagehub.services.tracking",
        "lineagehub.interfaces.server",
        "lineagehub.interfaces.cli",
        "lineagehub.samples.demo",
        "lineagehub.schema.types",
        "lineagehub.ingest.client",
    ):
        assert expected in modules
    assert len(modules) > 50


def test_the_layers_are_kept() -> None:
    violations = [
        str(v)
        for name, path in source_modules().items()
        for v in check_source(name, path.read_text(encoding="utf-8"), path.name == "__init__.py")
    ]
    assert violations == []


@pytest.mark.parametrize(
    ("module", "source", "imported"),
    [
        # inside a function
        (
            "lineagehub.graph.store",
            "def f():\n    from lineagehub.services.tracking import Metric\n",
            "lineagehub.services.tracking.Metric",
        ),
        ("lineagehub.graph.sqlite", "import lineagehub.vocabulary\n", "lineagehub.vocabulary"),
        # under TYPE_CHECKING
        (
            "lineagehub.services.tracking",
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from lineagehub.ingest.capture import CodeState\n",
            "lineagehub.ingest.capture.CodeState",
        ),
        (
            "lineagehub.services.registry",
            "from lineagehub.interfaces import cli\n",
            "lineagehub.interfaces.cli",
        ),
        (
            "lineagehub.services.access",
            "from lineagehub.schema.context import Context\n",
            "lineagehub.schema.context.Context",
        ),
        (
            "lineagehub.services.lineage",
            "from lineagehub.samples.example import build_example\n",
            "lineagehub.samples.example.build_example",
        ),
        (
            "lineagehub.ingest.client",
            "from lineagehub import schema\n",
            "lineagehub.schema",
        ),
        (
            "lineagehub.ingest.remote",
            "from lineagehub.interfaces.server import create_app\n",
            "lineagehub.interfaces.server.create_app",
        ),
        (
            "lineagehub.schema.query",
            "import lineagehub.interfaces.cli as cli\n",
            "lineagehub.interfaces.cli",
        ),
        # a relative import is resolved before it is judged
        ("lineagehub.graph.store", "from .. import vocabulary\n", "lineagehub.vocabulary"),
    ],
)
def test_the_checker_catches_a_violation(module: str, source: str, imported: str) -> None:
    found = check_source(module, source)
    assert [v.imported for v in found] == [imported]


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("lineagehub.graph.store", "from lineagehub.graph.model import Node\nimport json\n"),
        ("lineagehub.services.tracking", "from lineagehub.graph import GraphStore\n"),
        ("lineagehub.services.tracking", "from lineagehub.vocabulary import CodeState\n"),
        ("lineagehub.ingest.client", "from lineagehub.services.tracking import Metric\n"),
        ("lineagehub.schema.query", "from lineagehub.services.export import export_lineage\n"),
        # the interfaces join everything
        ("lineagehub.interfaces.server", "from lineagehub.schema import schema\n"),
    ],
)
def test_the_checker_lets_allowed_imports_pass(module: str, source: str) -> None:
    assert check_source(module, source) == []
