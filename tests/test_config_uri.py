"""open_store by URI, and the settings that choose the default store."""

from __future__ import annotations

from pathlib import Path

import pytest

import lineagehub
from lineagehub import Settings
from lineagehub.graph import ConfigError, GraphStore, Node, open_store, redact, register_backend
from lineagehub.graph.sqlite import SqliteStore
from lineagehub.graph.uri import NEO4J_SCHEMES, supported_schemes


@pytest.mark.parametrize("uri", ["postgres://db/hub", "mysql://x", "http://localhost:8000"])
def test_unknown_scheme_lists_the_supported_ones(uri: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_store(uri)
    message = str(info.value)
    assert info.value.code == "CONFIG"
    for scheme in ("sqlite", *NEO4J_SCHEMES):
        assert scheme in message


@pytest.mark.parametrize("uri", ["", "no-scheme", None, 42])
def test_not_a_uri(uri: object) -> None:
    with pytest.raises(ConfigError, match="not a store URI"):
        open_store(uri)  # type: ignore[arg-type]


def test_password_never_appears_in_errors() -> None:
    with pytest.raises(ConfigError) as info:
        open_store("postgres://ann:s3cret@db:5432/hub")
    assert "s3cret" not in str(info.value)
    assert redact("neo4j://ann:s3cret@db:7687") == "neo4j://ann:***@db:7687"
    assert redact("bolt://db:7687") == "bolt://db:7687"


def test_backends_plug_in_by_scheme(tmp_path: Path) -> None:
    opened: list[str] = []

    def factory(uri: str, **options: object) -> GraphStore:
        opened.append(uri)
        return SqliteStore(tmp_path / "plugged.db")

    register_backend("plugged", factory)
    with open_store("plugged://anything") as store:
        store.upsert_nodes([Node("a", "Run")])
    assert opened == ["plugged://anything"]
    assert "plugged" in supported_schemes()


def test_default_store_is_a_file_in_the_per_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LINEAGEHUB_STORE", raising=False)
    monkeypatch.setenv("LINEAGEHUB_DATA_DIR", str(tmp_path / "data"))
    settings = Settings()
    assert settings.store_uri == f"sqlite:///{tmp_path / 'data' / 'hub.db'}"
    with lineagehub.open_store() as store:
        store.upsert_nodes([Node("a", "Run")])
    assert (tmp_path / "data" / "hub.db").exists()


def test_without_overrides_the_data_dir_is_per_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINEAGEHUB_DATA_DIR", raising=False)
    monkeypatch.delenv("LINEAGEHUB_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", "/xdg/data")
    assert Settings().store_uri == "sqlite:////xdg/data/lineagehub/hub.db"


def test_precedence_arguments_then_environment_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINEAGEHUB_STORE", f"sqlite:///{tmp_path / 'env.db'}")
    assert Settings().store_uri.endswith("env.db")
    assert Settings(store="sqlite://").store_uri == "sqlite://"
    with lineagehub.open_store() as store:
        assert store.uri.endswith("env.db")
    with lineagehub.open_store("sqlite://") as store:
        assert store.uri == "sqlite://"


def test_neo4j_credentials_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINEAGEHUB_STORE", "neo4j://db:7687")
    monkeypatch.setenv("LINEAGEHUB_NEO4J_PASSWORD", "s3cret")
    monkeypatch.setenv("LINEAGEHUB_NEO4J_DATABASE", "lineage")
    settings = Settings()
    assert settings.store_options() == {
        "user": "neo4j",
        "password": "s3cret",
        "database": "lineage",
    }
    assert "s3cret" not in repr(settings)
    assert Settings(store="sqlite://").store_options() == {}


@pytest.mark.parametrize(
    ("variable", "value"),
    [("LINEAGEHUB_STALE_AFTER", "abc"), ("LINEAGEHUB_STALE_AFTER", "-5"),
     ("LINEAGEHUB_HEARTBEAT_INTERVAL", "0"), ("LINEAGEHUB_AUDIT_CHECKPOINT_EVERY", "0")],
)  # fmt: skip
def test_a_bad_setting_is_a_config_error_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pydantic traceback naming a field (``stale_after``) came from every command and
    every client; it is a ConfigError naming the variable, exit 4 from the CLI."""
    from lineagehub.interfaces.cli import main

    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        Settings()
    assert main(["doctor"]) == 4
    assert variable in capsys.readouterr().err
