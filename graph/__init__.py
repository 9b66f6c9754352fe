"""The lineage graph: storage, traversal and analysis. Knows nothing of GraphQL or ML.

>>> from lineagehub.graph import open_store, Node, Edge
>>> store = open_store("sqlite://")
>>> store.upsert_nodes([Node("d1", "DatasetVersion"), Node("r1", "Run")])
2
>>> store.upsert_edges([Edge("r1", "d1", "USED", {"role": "train"})])
1
>>> [n for n in store.traverse(["r1"], "UPSTREAM").nodes]
['r1', 'd1']
"""

from lineagehub.graph.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    ConflictError,
    HubError,
    IntegrityError,
    NotFoundError,
    PermissionDenied,
    PolicyViolation,
    ValidationError,
)
from lineagehub.graph.model import (
    DELETE,
    Adjacent,
    Direction,
    Edge,
    Node,
    Page,
    SeriesPoint,
    SeriesSummary,
    Subgraph,
    TraversedNode,
    TruncationReason,
    edge_id,
)
from lineagehub.graph.store import GraphStore
from lineagehub.graph.uri import open_store, redact, register_backend, supported_schemes

__all__ = [
    "DELETE",
    "Adjacent",
    "BackendError",
    "BackendUnavailable",
    "ConfigError",
    "ConflictError",
    "Direction",
    "Edge",
    "GraphStore",
    "HubError",
    "IntegrityError",
    "Node",
    "NotFoundError",
    "Page",
    "PermissionDenied",
    "PolicyViolation",
    "SeriesPoint",
    "SeriesSummary",
    "Subgraph",
    "TraversedNode",
    "TruncationReason",
    "ValidationError",
    "edge_id",
    "open_store",
    "redact",
    "register_backend",
    "supported_schemes",
]
