"""LineageHub: a model-management metadata hub that keeps runs, data, code, models,
deployments and alerts as one lineage graph.

Training code uses the SDK (:mod:`lineagehub.ingest.client`)::

    import lineagehub as lh

    with lh.start_run(project="churn", name="gbm") as run:
        run.log_params({"max_depth": 5})
        run.log_metrics({"loss": 0.3}, step=1)

Tools use the graph store directly::

    store = lineagehub.open_store("sqlite://")     # or no argument: the configured store
"""

# Where each package's files are (pyproject's package-dir; imports are absolute, so each
# one names its file):
#   hub/                 lineagehub              settings, vocabulary, files, artifacts
#   hub/services/        lineagehub.services     tracking, registry, lineage, audit, webhooks,
#                                                headline, export
#   hub/interfaces/      lineagehub.interfaces   server (the ASGI app), cli/ (the command)
#   hub/samples/         lineagehub.samples      demo, example
#   graph/               lineagehub.graph        the graph store and its backends
#   schema/              lineagehub.schema       the GraphQL schema
#   ingest/              lineagehub.ingest       the SDK: client, remote, capture, datasets,
#                                                framework adapters

from __future__ import annotations

from typing import Any

from lineagehub.config import Settings
from lineagehub.graph import GraphStore
from lineagehub.graph import open_store as _open_store

__version__ = "0.1.0"


def open_store(uri: str | None = None, settings: Settings | None = None) -> GraphStore:
    """Open the graph store at ``uri``, or the configured one (``LINEAGEHUB_STORE``, else
    the embedded SQLite file in the per-user data directory). Neo4j credentials come from
    the settings (``LINEAGEHUB_NEO4J_USER`` / ``LINEAGEHUB_NEO4J_PASSWORD``)."""
    settings = settings or Settings()
    if uri is not None:
        settings = settings.model_copy(update={"store": uri})
    store = _open_store(settings.store_uri, **settings.store_options())
    from lineagehub.services.audit import audit_policy

    store.configure_audit(audit_policy(settings))
    return store


# The SDK is imported on first use: `import lineagehub` stays light for tools and servers.
_SDK = (
    "ActiveRun",
    "Client",
    "active_run",
    "client",
    "connect",
    "download",
    "flush",
    "load_model",
    "log_metrics",
    "log_params",
    "monitor",
    "set_tags",
    "start_run",
)


def __getattr__(name: str) -> Any:
    if name in _SDK:
        from lineagehub.ingest import client as sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'lineagehub' has no attribute {name!r}")


__all__ = ["GraphStore", "Settings", "__version__", "open_store", *_SDK]
