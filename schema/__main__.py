"""``python -m lineagehub.schema`` prints the SDL (committed as schema.graphql)."""

from . import schema

print(schema.as_str())
