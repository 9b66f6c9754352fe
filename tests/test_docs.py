"""The README documents every setting and every CLI command and option."""

from __future__ import annotations

import argparse
from pathlib import Path

from lineagehub import Settings
from lineagehub.cli import build_parser

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
