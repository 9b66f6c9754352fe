"""LineageHub: a model-management metadata hub that keeps runs, data, code, models,
deployments and alerts as one lineage graph.

>>> import lineagehub
>>> store = lineagehub.open_store("sqlite://")     # or no argument: the configured store
"""

from __future__ import annotations

from lineagehub.graph import GraphStore
from lineagehub.graph import open_store as _open_store

from .config import Settings

__version__ = "0.1.0"


def open_store(uri: str | None = None, settings: Settings | None = None) -> GraphStore:
    """Open the graph store at ``uri``, or the configured one (``LINEAGEHUB_STORE``, else
    the embedded SQLite file in the per-user data directory). Neo4j credentials come from
    the settings (``LINEAGEHUB_NEO4J_USER`` / ``LINEAGEHUB_NEO4J_PASSWORD``)."""
    settings = settings or Settings()
    if uri is not None:
        settings = settings.model_copy(update={"store": uri})
    return _open_store(settings.store_uri, **settings.store_options())


__all__ = ["GraphStore", "Settings", "__version__", "open_store"]
