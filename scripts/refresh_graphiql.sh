#!/usr/bin/env bash
# Refresh the GraphiQL page's browser builds (served by the hub from the package, never from a
# CDN) from the npm registry: React, ReactDOM and GraphiQL, with their licence texts.
#
#   scripts/refresh_graphiql.sh                      # the versions below
#   GRAPHIQL=3.8.3 REACT=18.2.0 scripts/refresh_graphiql.sh
#
# The versions are those strawberry's own GraphiQL template loads; GraphiQL 3 needs React 18's
# UMD builds (React 19 ships none). Needs npm. Commit the result.
set -euo pipefail
GRAPHIQL="${GRAPHIQL:-3.8.3}"
REACT="${REACT:-18.2.0}"
DEST="$(cd "$(dirname "$0")/.." && pwd)/hub/interfaces/static/graphiql"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fetch() {  # fetch PACKAGE@VERSION -> unpacked into $work/NAME
  local spec="$1" name="$2"
  (cd "$work" && npm pack --silent "$spec" >/dev/null)
  mkdir -p "$work/$name"
  tar xzf "$work"/"$(ls "$work" | grep -E "^${name}-[0-9].*\.tgz$" | head -1)" -C "$work/$name"
}
fetch "react@$REACT" react
fetch "react-dom@$REACT" react-dom
fetch "graphiql@$GRAPHIQL" graphiql

cp "$work/react/package/umd/react.production.min.js" "$DEST/react.production.min.js"
cp "$work/react-dom/package/umd/react-dom.production.min.js" "$DEST/react-dom.production.min.js"
cp "$work/graphiql/package/graphiql.min.js" "$DEST/graphiql.min.js"
cp "$work/graphiql/package/graphiql.min.css" "$DEST/graphiql.min.css"
# the builds end with a sourceMappingURL that the hub does not serve: drop it (no 404s)
sed -i -E '/^\/[\/*][#@] sourceMappingURL=.*$/d' "$DEST"/*.min.js "$DEST"/*.min.css
cp "$work/react/package/LICENSE" "$DEST/LICENSE.react.txt"
cp "$work/react-dom/package/LICENSE" "$DEST/LICENSE.react-dom.txt"
cp "$work/graphiql/package/LICENSE" "$DEST/LICENSE.graphiql.txt"
cat > "$DEST/VERSIONS.txt" <<VERSIONS
Browser builds served with the GraphiQL page, from the npm registry (scripts/refresh_graphiql.sh):
react@$REACT       umd/react.production.min.js      (MIT, LICENSE.react.txt)
react-dom@$REACT   umd/react-dom.production.min.js  (MIT, LICENSE.react-dom.txt)
graphiql@$GRAPHIQL    graphiql.min.js, graphiql.min.css (MIT, LICENSE.graphiql.txt)
VERSIONS
echo "refreshed $DEST: react $REACT, graphiql $GRAPHIQL"
