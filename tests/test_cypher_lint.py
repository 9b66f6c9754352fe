"""Every Cypher statement the Neo4j backend can send, checked by Neo4j's own Cypher front end.

The statements go through ``lintCypherQuery`` of the npm package
``@neo4j-cypher/language-support`` (syntax, semantic analysis, function signatures, parameters,
deprecations) via ``tests/cypher/lint.mjs``. This checks shapes that the suites may not reach
with every variant. Two sets are linted:

- the catalog (:func:`lineagehub.graph.neo4j.statement_catalog`): every statement shape with
  example parameters;
- the statements the store *actually sent* to the real test server (``make test`` starts it)
  while running a workload, recorded at the driver, with the parameters it actually passed.

And the two are tied together: every shape the store sent is in the catalog, and every shape in
the catalog was sent, so the catalog is neither missing a shape nor listing a dead one.

Needs ``node`` and ``npm`` (Node.js >= 20); ``npm ci`` runs here if ``tests/cypher/node_modules``
is missing. Without them the lint is skipped, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import NEO4J_URI, neo4j_test_store

from lineagehub.graph import DELETE, Edge, Node, SeriesPoint
from lineagehub.graph import cypher as cy
from lineagehub.graph.neo4j import Neo4jStore, statement_catalog

HERE = Path(__file__).parent / "cypher"
TAG_RE = re.compile(r"// lineagehub:([a-z_.]+)\s*$")

PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
# Keys of parameter maps (``row.source``) that the analyzer cannot tell from stored property
# keys; listing them keeps "property not in the database" warnings meaningful for the rest.
PARAMETER_MAP_KEYS = ("source", "target", "props", "stats")
MIN_NODE_MAJOR = 20


def _shape(name: str) -> str:
    return name.split("[", 1)[0]


CATALOG = list(statement_catalog())


# --- pure checks: no Node.js needed -----------------------------------------------------------


def test_catalog_names_are_unique_and_tagged() -> None:
    names = [name for name, _, _ in CATALOG]
    assert len(names) == len(set(names))
    for name, text, _ in CATALOG:
        assert shape_of(text) == _shape(name)


@pytest.mark.parametrize(("name", "text", "params"), CATALOG, ids=[c[0] for c in CATALOG])
def test_catalog_parameters_are_exactly_those_used(
    name: str, text: str, params: dict[str, Any]
) -> None:
    used = set(PARAM_RE.findall(text))
    assert used == set(params), f"{name}: text uses {sorted(used)}, builder passes {sorted(params)}"
    json.dumps(params, allow_nan=False)  # the examples travel to the linter as JSON


def test_catalog_covers_every_operator_direction_and_option() -> None:
    texts = "\n".join(text for _, text, _ in CATALOG)
    for needle in (
        " = $",
        " <> $",
        " < $",
        " <= $",
        " > $",
        " >= $",
        " IN $",
        "NOT (n.",
        "IS NULL",
        "IS NOT NULL",
        " AND ",
        " OR ",
        "NOT coalesce(",
        "WHERE false",
        "AND false",
        " DESC",
        "-[e]->(b:Node)",
        "<-[e]-(b:Node)",
        "-[e:`USED`]->",
        "<-[e:`USED`|`GENERATED_BY`|`DERIVED_FROM`]-",
        "endNode(e)._label IN $labels",
        "startNode(e)._label IN $labels",
        "endNode(e)._created_at <= $as_of",
        "e._ingested_at <= $as_of",
        "LIMIT $limit",
        "UNION ALL",
        "CREATE CONSTRAINT",
        "DETACH DELETE",
    ):
        assert needle in texts, needle


# --- the workload: every store method against the real server, recorded at the driver -------

Sent = list[tuple[str, str, dict[str, Any]]]


def shape_of(text: str) -> str:
    match = TAG_RE.search(text)
    assert match, f"statement without a lineagehub tag:\n{text}"
    return match.group(1)


class _Recording:
    """Passes every call to the real driver object it wraps, noting each statement run."""

    def __init__(self, inner: Any, sent: Sent) -> None:
        self._inner, self._sent = inner, sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __enter__(self) -> _Recording:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._inner.__exit__(*exc)

    def run(self, query: Any, parameters: dict[str, Any] | None = None, **kw: Any) -> Any:
        text = getattr(query, "text", query)
        self._sent.append((shape_of(text), text, dict(parameters or {})))
        return self._inner.run(query, parameters, **kw)

    def session(self, **kw: Any) -> _Recording:
        return _Recording(self._inner.session(**kw), self._sent)

    def begin_transaction(self, **kw: Any) -> _Recording:
        return _Recording(self._inner.begin_transaction(**kw), self._sent)

    def _managed(self, method: str, work: Callable[[Any], Any]) -> Any:
        return getattr(self._inner, method)(lambda tx: work(_Recording(tx, self._sent)))

    def execute_read(self, work: Callable[[Any], Any]) -> Any:
        return self._managed("execute_read", work)

    def execute_write(self, work: Callable[[Any], Any]) -> Any:
        return self._managed("execute_write", work)


def _workload() -> Sent:
    """Run every store method, through every branch that sends a different statement."""
    sent: Sent = []
    real = neo4j_test_store()
    assert isinstance(real, Neo4jStore)
    with real._driver.session() as session:  # so the relationship constraints are made again
        for r in session.run("SHOW CONSTRAINTS YIELD name WHERE name STARTS WITH 'lh_rel_'"):
            session.run(f"DROP CONSTRAINT {r['name']}").consume()
    store = Neo4jStore.from_driver(_Recording(real._driver, sent), uri=real.uri)
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    store.upsert_nodes(
        [
            Node(
                f"r{i}",
                "Run",
                {"status": "FINISHED", "metrics": {"auc": i / 10}, "params": {"lr": 0.1}},
            )
            for i in range(6)
        ]
        + [Node(f"d{i}", "DatasetVersion", {"row_count": i}) for i in range(3)]
        + [Node("m1", "ModelVersion")]
    )
    store.upsert_nodes([Node("r1", "Run", {"owner": "ann", "status": DELETE})])
    store.upsert_edges(
        [Edge(f"r{i}", f"d{i % 3}", "USED", {"role": "train"}) for i in range(6)]
        + [Edge("d1", "r1", "GENERATED_BY"), Edge("m1", "r2", "GENERATED_BY")]
    )
    store.upsert_edges([Edge("d1", "d0", "DERIVED_FROM"), Edge("r0", "d0", "USED", {"w": 1})])
    with store.transaction():
        store.upsert_nodes([Node("tx", "Run")])
        store.upsert_edges([Edge("tx", "d0", "USED")])
        store.append_audit("user:ann", "node.upsert", "tx", {"label": "Run"})
    store.append_audit("user:ann", "node.upsert", "r1", {"owner": "ann"})
    store.read_audit()
    store.read_audit(0, 1000, "r1")
    store.audit_head()
    store.checkpoint_audit()
    store.audit_checkpoints()
    store.append_series([SeriesPoint("r0", "loss", i, 1 / (i + 1), t0) for i in range(600)])
    store.append_series(
        [SeriesPoint("r0", "loss", 600, math.nan), SeriesPoint("r0", "loss", 3, 9.0)]
    )
    # Arguments as in the catalog where they can be (the linter then sees each text once),
    # plus paging to the end under each ordering, which sends cursors of real values.
    for where in cy.EXAMPLE_FILTERS.values():
        store.count_nodes(None, where)
        store.find_nodes("Run", where, limit=100)
    store.node_values("Run", "metrics.auc", {"status": "FINISHED"}, "-metrics.auc")
    for order in cy.EXAMPLE_ORDERS.values():
        list(store.iter_nodes(None, None, order, page_size=2))
        list(store.iter_nodes("Run", {"status": "FINISHED"}, order, page_size=3))
    for direction in ("UPSTREAM", "DOWNSTREAM", "BOTH"):
        for kinds in (None, ["USED"], ["USED", "GENERATED_BY", "DERIVED_FROM"]):
            for labels in (None, ["DatasetVersion", "Run"]):
                store.traverse(
                    ["m1", "d0"], direction, 2, edge_kinds=kinds, labels=labels, as_of=None
                )
                store.traverse(
                    ["d0"], direction, 1, edge_kinds=kinds, as_of=datetime.now(timezone.utc)
                )
    store.neighbors(["r1", "d1"])
    store.get_edges([Edge("r0", "d0", "USED").id, "nope"])
    store.read_series("r0", "loss", max_points=20)
    store.series_summary(["r0", "r1"])
    store.series_summary(["r0"], ["loss"])
    store.count_edges()
    store.secret("cursor")
    store.delete_edges([Edge("d1", "d0", "DERIVED_FROM").id])
    store.delete_nodes(["r5"])
    store._wipe()
    store.close()
    real.close()
    return sent


@pytest.fixture(scope="module")
def recorded() -> Sent:
    """What the store sent to the real server; nothing where no server is running (the
    catalog is linted all the same)."""
    return _workload() if NEO4J_URI else []


@pytest.fixture(scope="module")
def sent(recorded: Sent) -> Sent:
    if not recorded:
        from conftest import neo4j_uri

        neo4j_uri()  # skips, naming what is missing (fails under CI)
    return recorded


def test_store_sends_only_catalog_shapes_and_every_shape_is_sent(
    sent: list[tuple[str, str, dict[str, Any]]],
) -> None:
    catalog_shapes = {_shape(name) for name, _, _ in CATALOG}
    sent_shapes = {shape for shape, _, _ in sent}
    assert sent_shapes <= catalog_shapes, f"not in the catalog: {sent_shapes - catalog_shapes}"
    assert catalog_shapes <= sent_shapes, f"never sent: {catalog_shapes - sent_shapes}"
    for shape, text, params in sent:
        used = set(PARAM_RE.findall(text))
        assert used == set(params), f"{shape}: uses {sorted(used)}, passed {sorted(params)}"


# --- Neo4j's Cypher front end -----------------------------------------------------------------


def _need(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (required when CI=true)")
    pytest.skip(what)


def _node_tools() -> str:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        _need(f"Cypher lint needs {' and '.join(missing)} (Node.js >= {MIN_NODE_MAJOR}) on PATH")
    node = shutil.which("node")
    assert node is not None
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    major = int(re.sub(r"^v(\d+).*", r"\1", version.stdout.strip() or "v0"))
    if major < MIN_NODE_MAJOR:
        _need(f"Cypher lint needs Node.js >= {MIN_NODE_MAJOR}, found {version.stdout.strip()}")
    if not (HERE / "node_modules" / "@neo4j-cypher" / "language-support").is_dir():
        npm = shutil.which("npm")
        assert npm is not None
        done = subprocess.run(
            [npm, "ci", "--prefix", str(HERE), "--no-audit", "--no-fund", "--loglevel=error"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            _need(f"`npm ci --prefix tests/cypher` failed:\n{done.stdout}\n{done.stderr}")
    return node


def _jsonable(value: Any) -> Any:
    """Parameters as JSON for the linter, which only needs their names: NaN becomes 0."""
    if isinstance(value, float) and not math.isfinite(value):
        return 0.0
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _statements(
    sent: list[tuple[str, str, dict[str, Any]]],
) -> Iterator[dict[str, Any]]:
    """The catalog, then each statement sent that differs from all before it in text or in
    parameter names (values do not change what the front end says)."""
    seen: set[tuple[str, tuple[str, ...]]] = set()
    named = [(n, t, p) for n, t, p in CATALOG]
    named += [(f"sent:{shape}#{i}", t, p) for i, (shape, t, p) in enumerate(sent)]
    for name, text, params in named:
        key = (text, tuple(sorted(params)))
        if key in seen:
            continue
        seen.add(key)
        yield {"name": name, "query": text, "parameters": _jsonable(params)}


@pytest.fixture(scope="module")
def lint_report(recorded: Sent) -> dict[str, Any]:
    node = _node_tools()
    statements = list(_statements(recorded))
    schema = {
        "labels": [
            cy.NODE_LABEL,
            cy.CHUNK_LABEL,
            cy.AUDIT_LABEL,
            cy.AUDIT_HEAD_LABEL,
            cy.CHECKPOINT_LABEL,
            *cy.EXAMPLE_LABELS,
            "ModelVersion",
        ],
        "relationshipTypes": list(cy.EXAMPLE_KINDS),
        "propertyKeys": sorted(
            {
                *cy.PROPERTY_KEYS,
                *cy.EXAMPLE_PROPERTY_KEYS,
                *PARAMETER_MAP_KEYS,
            }
        ),
    }
    done = subprocess.run(
        [node, str(HERE / "lint.mjs")],
        input=json.dumps({"schema": schema, "statements": statements}),
        capture_output=True,
        text=True,
        # a guard against a hang, not a speed check: on a loaded 2-core machine the front
        # end's start and the whole lint took over two minutes
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, f"lint.mjs failed:\n{done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    assert len(report["results"]) == len(statements)
    report["statements"] = {s["name"]: s["query"] for s in statements}
    return report


def _diagnostics(report: dict[str, Any], severity: int) -> list[str]:
    return [
        f"{r['name']} {d['line']}:{d['column']}: {d['message']}\n{report['statements'][r['name']]}"
        for r in report["results"]
        for d in r["diagnostics"]
        if d["severity"] == severity
    ]


def test_cypher_front_end_reports_no_errors(lint_report: dict[str, Any]) -> None:
    errors = _diagnostics(lint_report, 1)
    tool = lint_report["tool"]
    header = (
        f"{tool['package']} {tool['version']} on node {tool['node']}: "
        f"{len(lint_report['results'])} statements, {len(errors)} errors"
    )
    assert not errors, header + "\n\n" + "\n\n".join(errors)


def test_cypher_front_end_reports_no_warnings(lint_report: dict[str, Any]) -> None:
    """Warnings cover deprecations and names the schema does not know (a typo in a property
    or label): none is expected."""
    warnings = _diagnostics(lint_report, 2)
    assert not warnings, f"{len(warnings)} warnings:\n\n" + "\n\n".join(warnings)


def test_the_linter_is_pinned() -> None:
    package = json.loads((HERE / "package.json").read_text())
    version = package["dependencies"]["@neo4j-cypher/language-support"]
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?", version), version
    lock = json.loads((HERE / "package-lock.json").read_text())
    locked = lock["packages"]["node_modules/@neo4j-cypher/language-support"]["version"]
    assert locked == version
