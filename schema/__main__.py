"""``python -m lineagehub.schema`` prints the SDL (committed as schema/schema.graphql, which the SDK reads)."""

from lineagehub.schema import schema

print(schema.as_str())
