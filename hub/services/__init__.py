"""The services: tracking, the model registry and its policies, lineage queries, the audit
log, webhooks and events, the headline metric, and lineage exports. They work on a
:class:`~lineagehub.graph.GraphStore` and never import the interfaces, the samples or the SDK."""
