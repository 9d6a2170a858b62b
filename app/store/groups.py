"""Same-item edges with their confidences, a person's decisions on pairs, and the stored groups
(tables ``match_graph``, ``same_item_decisions``, ``item_groups``)."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, text

Pair = tuple[int, int]  # (smaller id, larger id)


def pair(a: int, b: int) -> Pair:
    return (int(a), int(b)) if a < b else (int(b), int(a))


def confident_edges(conn: Connection, model: str, kind: str, collection: int) -> dict[Pair, float]:
    """Every edge of the collection's match graph once, read from both sides at its better
    confidence (rows built before confidences were stored are left out; edges to images since
    deleted too)."""
    rows = conn.execute(text(
        "SELECT least(g.image_id, u.other_id) AS a, greatest(g.image_id, u.other_id) AS b, max(u.confidence) "
        "FROM match_graph g JOIN images i ON i.id = g.image_id AND i.collection_id = :c "
        "CROSS JOIN LATERAL unnest(g.neighbours, g.confidences) AS u(other_id, confidence) "
        "JOIN images o ON o.id = u.other_id "
        "WHERE g.model = :model AND g.kind = :kind AND g.confidences IS NOT NULL GROUP BY 1, 2"),
        {"model": model, "kind": kind, "c": collection})
    return {(a, b): float(c) for a, b, c in rows}


def pair_confidences(conn: Connection, model: str, kind: str, image_id: int,
                     others: Sequence[int]) -> dict[int, float]:
    """The stored confidence of each of ``others`` with ``image_id`` (the better of both rows;
    those with no edge are absent)."""
    rows = conn.execute(text(
        "SELECT CASE WHEN g.image_id = :id THEN u.other_id ELSE g.image_id END, max(u.confidence) "
        "FROM match_graph g CROSS JOIN LATERAL unnest(g.neighbours, g.confidences) AS u(other_id, confidence) "
        "WHERE g.model = :model AND g.kind = :kind AND g.confidences IS NOT NULL AND ("
        "(g.image_id = :id AND u.other_id = ANY(:others)) OR "
        "(g.image_id = ANY(:others) AND g.neighbours && ARRAY[CAST(:id AS bigint)] AND u.other_id = :id)) "
        "GROUP BY 1"), {"model": model, "kind": kind, "id": int(image_id), "others": [int(o) for o in others]})
    return {r[0]: float(r[1]) for r in rows}


def rows_without_confidences(conn: Connection, model: str, kind: str, collection: int) -> int:
    """The collection's graph rows built before confidences were stored (schema 0011)."""
    return conn.execute(text(
        "SELECT count(*) FROM match_graph g JOIN images i ON i.id = g.image_id "
        "WHERE g.model = :model AND g.kind = :kind AND i.collection_id = :c AND g.confidences IS NULL"),
        {"model": model, "kind": kind, "c": collection}).scalar()


def decisions(conn: Connection, collection: int) -> dict[Pair, bool]:
    """What a person said of the collection's pairs: True "same", False "not the same"."""
    rows = conn.execute(text("SELECT image_id, other_id, same FROM same_item_decisions WHERE collection_id = :c"),
                        {"c": collection})
    return {(a, b): same for a, b, same in rows}


def decide(conn: Connection, collection: int, pairs: Sequence[Pair], same: bool | None) -> int:
    """Record "same" (True) or "not the same" (False) for ``pairs`` of the collection's images,
    replacing what was said before; None forgets it. Returns the pairs recorded or forgotten."""
    pairs = sorted({pair(a, b) for a, b in pairs if a != b})
    if not pairs:
        return 0
    known = conn.execute(text("SELECT id FROM images WHERE collection_id = :c AND id = ANY(:ids)"),
                         {"c": collection, "ids": sorted({i for p in pairs for i in p})}).scalars().all()
    missing = sorted({i for p in pairs for i in p} - set(known))
    if missing:
        raise LookupError(f"no image {missing[0]} in this collection")
    if same is None:
        return conn.execute(text("DELETE FROM same_item_decisions WHERE (image_id, other_id) IN "
                                 "(SELECT * FROM unnest(CAST(:a AS bigint[]), CAST(:b AS bigint[])))"),
                            {"a": [a for a, _ in pairs], "b": [b for _, b in pairs]}).rowcount
    conn.execute(text("INSERT INTO same_item_decisions (collection_id, image_id, other_id, same) "
                      "VALUES (:c, :a, :b, :same) ON CONFLICT (image_id, other_id) "
                      "DO UPDATE SET same = EXCLUDED.same, decided_at = now()"),
                 [{"c": collection, "a": a, "b": b, "same": same} for a, b in pairs])
    return len(pairs)


def write_groups(conn: Connection, collection: int, model: str,
                 groups: Sequence[Sequence[tuple[int, float]]]) -> None:
    """Replace the collection's stored groups of ``model``: each a list of (image id, confidence)."""
    conn.execute(text("DELETE FROM item_groups WHERE collection_id = :c AND model = :model"),
                 {"c": collection, "model": model})
    rows = [{"c": collection, "model": model, "g": n, "id": int(i), "conf": float(c)}
            for n, members in enumerate(groups, 1) for i, c in members]
    if rows:
        conn.execute(text("INSERT INTO item_groups (collection_id, model, group_id, image_id, confidence) "
                          "VALUES (:c, :model, :g, :id, :conf)"), rows)


def members(conn: Connection, ids: Sequence[int]) -> dict[int, dict]:
    """Each image's pixel size and files: {id, width, height, files: [{path, size, label}]}."""
    rows = conn.execute(text(
        "SELECT i.id, i.width, i.height, array_agg(f.path ORDER BY f.path) AS paths, "
        "array_agg(f.size ORDER BY f.path) AS sizes, array_agg(f.label ORDER BY f.path) AS labels "
        "FROM images i JOIN files f ON f.image_id = i.id WHERE i.id = ANY(:ids) GROUP BY i.id"),
        {"ids": [int(i) for i in ids]})
    return {r.id: {"id": r.id, "width": r.width, "height": r.height,
                   "files": [{"path": p, "size": s, "label": lab} for p, s, lab in zip(r.paths, r.sizes, r.labels)]}
            for r in rows}


def graphs_of(conn: Connection, collection: int) -> list[tuple[str, str]]:
    """(model, kind) of every match graph the collection has rows in."""
    rows = conn.execute(text("SELECT DISTINCT g.model, g.kind FROM match_graph g JOIN images i ON i.id = g.image_id "
                             "WHERE i.collection_id = :c ORDER BY 1, 2"), {"c": collection})
    return [(r[0], r[1]) for r in rows]
