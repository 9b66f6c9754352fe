"""``python -m lineagehub.schema`` prints the SDL (committed as schema.graphql)."""

from lineagehub.schema import schema

print(schema.as_str())
