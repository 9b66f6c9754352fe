"""``open_store(uri)``: pick a graph backend by URI scheme.

========================================  =============================================
``sqlite:///relative/path.db``            SQLite file, path relative to the working dir
``sqlite:////absolute/path.db``           SQLite file, absolute path
``sqlite://``                             SQLite in memory (gone when closed)
``neo4j://``, ``neo4j+s://``, ``neo4j+ssc://``  Neo4j 5 (routing: cluster, Aura)
``bolt://``, ``bolt+s://``, ``bolt+ssc://``     Neo4j 5 (a single server)
========================================  =============================================

Other backends plug in with :func:`register_backend` or the ``lineagehub.graph_stores``
entry-point group (a name that is the scheme, a value that is a factory
``factory(uri: str, **options) -> GraphStore``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import unquote, urlsplit

from lineagehub.graph.errors import ConfigError
from lineagehub.graph.store import GraphStore

Factory = Callable[..., GraphStore]
NEO4J_SCHEMES = ("neo4j", "neo4j+s", "neo4j+ssc", "bolt", "bolt+s", "bolt+ssc")


def sqlite_path(uri: str) -> str | None:
    """The file of a ``sqlite:`` store URI; ``None`` for the in-memory store."""
    rest = uri[len("sqlite:") :]
    if rest in ("", "//", "///:memory:", "//:memory:"):
        return None
    if not rest.startswith("///") or len(rest) == 3:
        raise ConfigError(
            f"bad SQLite URI {uri!r}: use sqlite:///relative.db, sqlite:////absolute.db "
            "or sqlite:// (memory)"
        )
    return unquote(rest[3:].split("?", 1)[0])


def _open_sqlite(uri: str, **options: Any) -> GraphStore:
    from lineagehub.graph.sqlite import SqliteStore

    if options:
        raise ConfigError(f"sqlite stores take no options, got {sorted(options)}")
    path = sqlite_path(uri)
    if path is None:
        return SqliteStore(":memory:", uri="sqlite://")
    return SqliteStore(path, uri=uri)


def _open_neo4j(uri: str, **options: Any) -> GraphStore:
    from lineagehub.graph.neo4j import Neo4jStore

    return Neo4jStore(uri, **options)


_BACKENDS: dict[str, Factory] = {"sqlite": _open_sqlite}
_BACKENDS.update(dict.fromkeys(NEO4J_SCHEMES, _open_neo4j))


def register_backend(scheme: str, factory: Factory) -> None:
    """Make ``open_store`` open ``scheme://...`` URIs with ``factory(uri, **options)``."""
    _BACKENDS[scheme.lower()] = factory


def supported_schemes() -> list[str]:
    _load_plugins()
    return sorted(_BACKENDS)


def _load_plugins() -> None:
    for ep in entry_points(group="lineagehub.graph_stores"):
        if ep.name not in _BACKENDS:
            _BACKENDS[ep.name] = ep.load()


def redact(uri: str) -> str:
    """The URI without a password, fit for logs and error messages."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}"
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*):[^/@\s]*@")


def scrub_credentials(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (for messages from
    libraries that quote URLs as given)."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def open_store(uri: str, **options: Any) -> GraphStore:
    """Open the graph store at ``uri``; the scheme picks the backend.

    ``options`` go to the backend (for Neo4j: ``user``, ``password``, ``database``, driver
    settings). An unknown scheme raises :class:`ConfigError` listing the supported ones.
    """
    if not isinstance(uri, str) or ":" not in uri:
        raise ConfigError(
            f"not a store URI: {uri!r}; expected one of the schemes {supported_schemes()}"
        )
    scheme = uri.split(":", 1)[0].lower()
    if scheme not in _BACKENDS:
        _load_plugins()
    factory = _BACKENDS.get(scheme)
    if factory is None:
        raise ConfigError(
            f"unsupported store URI scheme {scheme!r} in {redact(uri)!r}; supported schemes: "
            + ", ".join(supported_schemes())
        )
    return factory(uri, **options)
