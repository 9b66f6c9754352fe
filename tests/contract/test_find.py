"""find_nodes: property filters, ordering (nulls last), keyset cursors; count_nodes."""

from __future__ import annotations

import time

import pytest

from lineagehub.graph import GraphStore, Node, ValidationError

RUNS = [
    Node("r1", "Run", {"status": "FINISHED", "metrics": {"auc": 0.91}, "params": {"lr": 0.1}}),
    Node("r2", "Run", {"status": "FINISHED", "metrics": {"auc": 0.85}, "params": {"lr": 0.01}}),
    Node("r3", "Run", {"status": "FAILED", "metrics": {"auc": 0.95}, "tags": {"team": "growth"}}),
    Node("r4", "Run", {"status": "RUNNING", "params": {"lr": 0.1}, "flag": True}),
    Node("r5", "Run", {"status": "FINISHED", "metrics": {"auc": 0.91}, "flag": False}),
    Node("d1", "Dataset", {"status": "FINISHED", "metrics": {"auc": 0.99}}),
]


@pytest.fixture
def runs(store: GraphStore) -> GraphStore:
    store.upsert_nodes(RUNS)
    return store


def ids(store: GraphStore, where: dict | None = None, order_by: object = None) -> list[str]:
    return [n.id for n in store.find_nodes("Run", where, order_by, limit=100).items]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (None, ["r1", "r2", "r3", "r4", "r5"]),
        ({"status": "FINISHED"}, ["r1", "r2", "r5"]),
        ({"metrics.auc": {"$gte": 0.91}}, ["r1", "r3", "r5"]),
        ({"metrics.auc": {"$gt": 0.85, "$lt": 0.95}}, ["r1", "r5"]),
        ({"metrics.auc": {"$lte": 0.85}}, ["r2"]),
        ({"status": {"$in": ["FAILED", "RUNNING"]}}, ["r3", "r4"]),
        ({"status": {"$nin": ["FAILED", "RUNNING"]}}, ["r1", "r2", "r5"]),
        ({"status": {"$ne": "FINISHED"}}, ["r3", "r4"]),
        ({"params.lr": 0.1, "status": "FINISHED"}, ["r1"]),
        ({"$or": [{"params.lr": 0.01}, {"tags.team": "growth"}]}, ["r2", "r3"]),
        (
            {"$and": [{"metrics.auc": {"$exists": True}}, {"status": "FINISHED"}]},
            ["r1", "r2", "r5"],
        ),
        ({"metrics.auc": {"$exists": False}}, ["r4"]),
        ({"metrics.auc": None}, ["r4"]),
        ({"metrics.auc": {"$ne": None}}, ["r1", "r2", "r3", "r5"]),
        ({"$not": {"status": "FINISHED"}}, ["r3", "r4"]),
        # a comparison with a missing property matches neither it nor its negation
        ({"$not": {"metrics.auc": {"$gt": 0.9}}}, ["r2"]),
        ({"flag": True}, ["r4"]),
        ({"flag": False}, ["r5"]),
        ({"id": {"$in": ["r2", "r4", "zz"]}}, ["r2", "r4"]),
        ({"_label": "Run", "status": "FAILED"}, ["r3"]),
        ({"status": "NOPE"}, []),
        ({"$or": []}, []),
        ({"$and": []}, ["r1", "r2", "r3", "r4", "r5"]),
    ],
)
def test_filters(runs: GraphStore, where: dict | None, expected: list[str]) -> None:
    assert ids(runs, where) == expected
    assert runs.count_nodes("Run", where) == len(expected)


def test_no_label_searches_all_labels(runs: GraphStore) -> None:
    page = runs.find_nodes(None, {"metrics.auc": {"$gte": 0.95}})
    assert sorted(n.id for n in page.items) == ["d1", "r3"]
    assert runs.count_nodes() == 6


def test_ordering_with_nulls_last_both_ways(runs: GraphStore) -> None:
    assert ids(runs, order_by=["-metrics.auc"]) == ["r3", "r1", "r5", "r2", "r4"]
    assert ids(runs, order_by="metrics.auc") == ["r2", "r1", "r5", "r3", "r4"]
    assert ids(runs, order_by=["status", "-id"]) == ["r3", "r5", "r2", "r1", "r4"]


@pytest.mark.parametrize(
    "order_by", [None, ["-metrics.auc"], ["metrics.auc"], ["status", "-metrics.auc"], ["-id"]]
)
def test_cursor_pages_cover_everything_once(runs: GraphStore, order_by: object) -> None:
    everything = ids(runs, order_by=order_by)
    seen: list[str] = []
    after = None
    for _ in range(10):
        page = runs.find_nodes("Run", None, order_by, after=after, limit=2)  # type: ignore[arg-type]
        seen += [n.id for n in page.items]
        assert len(page.items) <= 2
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert seen == everything


def test_cursor_is_stable_while_nodes_are_added(runs: GraphStore) -> None:
    page = runs.find_nodes("Run", order_by="-metrics.auc", limit=2)
    assert [n.id for n in page.items] == ["r3", "r1"]
    # a node inserted before the cursor position does not shift the next page
    runs.upsert_nodes([Node("r0", "Run", {"metrics": {"auc": 0.99}})])
    nxt = runs.find_nodes("Run", order_by="-metrics.auc", after=page.next_cursor, limit=2)
    assert [n.id for n in nxt.items] == ["r5", "r2"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"where": {"metrics.auc": {"$regex": "x"}}}, "where.metrics.auc.$regex"),
        ({"where": {"$xor": []}}, "where"),
        ({"where": {"x}) DETACH DELETE n //": 1}}, "where.x}) DETACH DELETE n //"),
        ({"where": {"a.`b": 1}}, "where.a.`b"),
        ({"where": {"a": {"$gt": float("nan")}}}, "where.a.$gt"),
        ({"where": {"a": {"$in": "abc"}}}, "where.a.$in"),
        ({"where": {"a": {"$gt": [1]}}}, "where.a.$gt"),
        ({"where": {"a": {"$exists": 1}}}, "where.a.$exists"),
        ({"where": "status = 'x'"}, "where"),
        ({"order_by": ["metrics.auc; DROP TABLE nodes"]}, "order_by"),
        ({"after": "not-a-cursor!!"}, "after"),
        ({"limit": 0}, "limit"),
        ({"limit": 100_000}, "limit"),
        ({"label": "Run) DETACH DELETE n"}, "label"),
    ],
)
def test_bad_queries_are_rejected(runs: GraphStore, kwargs: dict, field: str) -> None:
    args = {"label": "Run", **kwargs}
    with pytest.raises(ValidationError) as info:
        runs.find_nodes(**args)
    assert info.value.field == field
    assert runs.count_nodes() == 6


def test_cursor_from_another_ordering_is_rejected(runs: GraphStore) -> None:
    page = runs.find_nodes("Run", order_by=["-metrics.auc"], limit=1)
    assert page.next_cursor
    with pytest.raises(ValidationError, match="another ordering"):
        runs.find_nodes("Run", order_by=None, after=page.next_cursor)


def test_iter_nodes_walks_all_pages(runs: GraphStore) -> None:
    got = [n.id for n in runs.iter_nodes("Run", order_by="-id", page_size=2)]
    assert got == ["r5", "r4", "r3", "r2", "r1"]


def test_order_by_created_at(store: GraphStore) -> None:
    for i in range(3):
        store.upsert_nodes([Node(f"n{2 - i}", "Run")])
        time.sleep(0.002)
    got = [n.id for n in store.find_nodes("Run", order_by="_created_at").items]
    assert got == ["n2", "n1", "n0"]


def test_paging_by_a_path_holding_lists_and_objects(store: GraphStore) -> None:
    store.upsert_nodes(
        [Node(f"n{i}", "Run", {"v": [i, "x"] if i % 2 else {"k": i}}) for i in range(5)]
        + [Node("n9", "Run")]
    )
    seen, after = [], None
    while True:
        page = store.find_nodes("Run", order_by="-v", after=after, limit=2)
        seen += [n.id for n in page.items]
        if not page.next_cursor:
            break
        after = page.next_cursor
    assert sorted(seen) == ["n0", "n1", "n2", "n3", "n4", "n9"] and seen[-1] == "n9"


@pytest.mark.parametrize("order_by", ["v", "-v", ["v", "-id"], ["-v", "id"]])
def test_paging_by_a_path_holding_texts_numbers_and_booleans(
    store: GraphStore, order_by: object
) -> None:
    """A param that is "sqrt" in some runs and 0.5 in others: on Neo4j a page ending on a
    text dropped every number and boolean after it (a text and a number do not compare in
    Cypher), 11 of 19 rows ascending, 8 descending; on SQLite a page ending on an integer
    beyond 64 bits was an OverflowError. Every row comes once, in the order of one query for
    all of them, on every backend."""
    values: list[object] = ["sqrt", "log2", 0.5, 3, -1, True, False, "", 2**40, 0, "0"]
    values += [2**64, -(2**70)]  # beyond 64 bits: a cursor on them was an OverflowError
    values += [0.5, "sqrt", True]  # ties, broken by id
    store.upsert_nodes(
        [Node(f"n{i:02d}", "Run", {"v": v}) for i, v in enumerate(values)] + [Node("n99", "Run")]
    )
    everything = [n.id for n in store.find_nodes("Run", order_by=order_by, limit=100).items]
    assert sorted(everything) == sorted([f"n{i:02d}" for i in range(len(values))] + ["n99"])
    for size in (1, 2, 3):
        seen, after = [], None
        while True:
            page = store.find_nodes("Run", order_by=order_by, after=after, limit=size)  # type: ignore[arg-type]
            seen += [n.id for n in page.items]
            if not page.next_cursor:
                break
            after = page.next_cursor
        assert seen == everything, (size, seen)


@pytest.mark.parametrize("order_by", ["name", "-name"])
def test_texts_page_and_compare_in_code_point_order(store: GraphStore, order_by: str) -> None:
    """Names beyond the basic plane (emoji) and from U+E000 on (fullwidth letters, halfwidth
    katakana): Neo4j sorts them by code point but compared a parameter by UTF-16 code unit, so
    a page ending on a fullwidth 'A' skipped every emoji after it, and "$gt" it missed them. One
    order, the code points', for sorting, paging and filters on every backend; a quote, a
    backslash and a backslash-u in a name are names like any other."""
    names = ["a", "\uff21", "\uff76\u30ca", "\uffff", "😀", "🚀 x", "z", "é", "\ue000", "it's"]
    names += ["a\\u0027b", "\\", ""]  # a backslash-u in a name is no escape of the statement
    store.upsert_nodes([Node(f"n{i:02d}", "Run", {"name": v}) for i, v in enumerate(names)])
    ids = {v: f"n{i:02d}" for i, v in enumerate(names)}
    ordered = sorted(names, reverse=order_by.startswith("-"))
    everything = [n.id for n in store.find_nodes("Run", order_by=order_by, limit=100).items]
    assert everything == [ids[v] for v in ordered]
    for size in (1, 2, 5):
        seen, after = [], None
        while True:
            page = store.find_nodes("Run", order_by=order_by, after=after, limit=size)
            seen += [n.id for n in page.items]
            if not page.next_cursor:
                break
            after = page.next_cursor
        assert seen == everything, (size, seen)
    for v in names:
        for op, holds in (("$gt", str.__gt__), ("$lte", str.__le__)):
            got = {n.id for n in store.find_nodes("Run", {"name": {op: v}}, limit=100).items}
            assert got == {ids[x] for x in names if holds(x, v)}, (op, v)


def test_node_values_are_one_property_of_the_matches_in_order(runs: GraphStore) -> None:
    """A projection answers as find_nodes would, property by property: the same filter and
    order (nulls last), ``None`` for a node without the property, nothing of other labels."""
    assert runs.node_values("Run", "metrics.auc", None, "-metrics.auc") == [
        0.95,
        0.91,
        0.91,
        0.85,
        None,
    ]
    assert runs.node_values("Run", "id", {"status": "FINISHED"}, "-id") == ["r5", "r2", "r1"]
    assert runs.node_values("Run", "params.lr", {"flag": {"$exists": True}}) == [0.1, None]
    assert runs.node_values("Run", "status", {"status": "NOPE"}) == []
    for where, expected in [({"params.lr": 0.1}, ["r1", "r4"]), (None, ["r1", "r2", "r3"])]:
        got = runs.node_values("Run", "id", where)
        assert got == ids(runs, where) and got[: len(expected)] == expected


@pytest.mark.parametrize(
    ("label", "field"),
    [("Run", "a-b"), ("Run", "x') RETURN 1 //"), ("Bad Label", "id"), ("Run", "")],
)
def test_node_values_refuse_bad_names(runs: GraphStore, label: str, field: str) -> None:
    with pytest.raises(ValidationError):
        runs.node_values(label, field)


def test_contains_is_case_insensitive_beyond_ascii(store: GraphStore) -> None:
    """A name with capitals outside ASCII is found however it is typed, exactly as written
    too (SQLite's lower() folds ASCII only, while the needle was folded in full)."""
    store.upsert_nodes(
        [
            Node("u1", "Run", {"name": "Überprüfung-Ärzte", "tags": {"Ort": "Zürich"}}),
            Node("u2", "Run", {"name": "CAFÉ crème"}),
            Node("u3", "Run", {"name": "plain"}),
        ]
    )
    for needle in ("Überprüfung-Ärzte", "ÜBERPRÜFUNG", "ärzte", "prüf", "Ärz"):
        assert ids(store, {"name": {"$contains": needle}}) == ["u1"], needle
    for needle in ("café", "CAFÉ CRÈME", "Crème"):
        assert ids(store, {"name": {"$contains": needle}}) == ["u2"], needle
    assert ids(store, {"tags": {"$contains": "ZÜRICH"}}) == ["u1"]
    assert ids(store, {"name": {"$contains": "PLAIN"}}) == ["u3"]


@pytest.mark.parametrize(
    "text",
    [
        "\U0001f680' }) DETACH DELETE n //",
        "\U0001f680\\' }) DETACH DELETE n //",
        "\U0001f680\\u0027 }) DETACH DELETE n //",
        "\U0001f680\\\\u0027 }) DETACH DELETE n //",
        "\U0001f680\\U00000027 }) DETACH DELETE n //",
        "\U0001f680\\\\\\' }) DETACH DELETE n //",
        "\U0001f680\n' RETURN 1 //\r\n",
    ],
)
def test_a_text_written_into_a_statement_is_one_value(store: GraphStore, text: str) -> None:
    """A text compared by order that a backend writes into its statement (Neo4j's literals of
    texts past U+D800) is that text and nothing else: quotes, backslashes and escapes in it
    compare as characters, and nothing of it runs."""
    names = [text, text + "x", "a", "\U0001f600"]
    store.upsert_nodes([Node(f"n{i}", "Run", {"name": v}) for i, v in enumerate(names)])
    for op, holds in (("$gt", str.__gt__), ("$lte", str.__le__), ("$lt", str.__lt__)):
        got = {n.id for n in store.find_nodes("Run", {"name": {op: text}}, limit=100).items}
        assert got == {f"n{i}" for i, v in enumerate(names) if holds(v, text)}, op
    assert store.count_nodes("Run") == len(names)
