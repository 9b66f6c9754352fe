"""The README documents every setting and every CLI command and option."""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import pytest

from lineagehub import Settings
from lineagehub.interfaces.cli import build_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    for name in Settings.model_fields:
        assert f"`LINEAGEHUB_{name.upper()}`" in README, name


def test_every_cli_command_and_option_is_documented() -> None:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        assert f"lineagehub {name}" in README, name
        for action in command._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert option in README, f"{name} {option}"


def test_the_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LINEAGEHUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LINEAGEHUB_STORE", raising=False)
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert len(blocks) >= 2
    unrun = 0  # blocks that render SVG, where Graphviz's dot is missing
    for block in blocks:
        if '"svg"' in block and shutil.which("dot") is None:
            unrun += 1
            continue
        namespace: dict[str, object] = {}
        exec(compile(block, "README.md", "exec"), namespace)
        store = namespace.get("store")
        if store is not None:
            store.close()  # type: ignore[attr-defined]
    from lineagehub.ingest import client as sdk

    if sdk._default is not None:  # the SDK example connected the module-level client
        sdk._default.close()
        sdk._default = None
    assert (tmp_path / "data" / "hub.db").exists()
    assert (tmp_path / "runs" / "hub.db").exists()
    if unrun:
        pytest.skip(f"the rest ran; {unrun} example(s) rendering SVG need Graphviz's `dot`")
