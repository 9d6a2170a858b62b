"""What ``imgsim db check`` reads: the schema's revision, the methods stored per table and their
HNSW indexes, rows a collection step still owes, and recorded failures. Read-only queries; some
scan whole tables, so they belong to an explicit check, not to every command."""
from __future__ import annotations

from sqlalchemy import Connection, text

from app.describe.registry import ModelSpec

def stored_methods(conn: Connection, spec: ModelSpec) -> dict[str, int]:
    """method -> number of images with a whole-image row, for every method stored in the table."""
    rows = conn.execute(text(f"SELECT method, count(*) FROM {spec.table} WHERE region = 0 GROUP BY method"))
    return dict(rows.all())


def invalid_indexes(conn: Connection, spec: ModelSpec) -> list[str]:
    """Indexes of the table that a build interrupted left unusable (``indisvalid`` false)."""
    rows = conn.execute(text("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                             "WHERE i.indrelid = to_regclass(:table) AND NOT i.indisvalid"), {"table": spec.table})
    return [r[0] for r in rows]


def drop_invalid_index(conn: Connection, spec: ModelSpec, name: str) -> None:
    """Drop an index that ``invalid_indexes`` reported (the name comes from the catalog, checked here)."""
    if name not in invalid_indexes(conn, spec):
        raise ValueError(f"{name} is not an invalid index of {spec.table}")
    conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{name}"')


def methods_by_collection(conn: Connection, spec: ModelSpec) -> dict[tuple[int, str], int]:
    """(collection id, method) -> number of images with a whole-image row."""
    rows = conn.execute(text(f"SELECT i.collection_id, e.method, count(*) FROM {spec.table} e "
                             f"JOIN images i ON i.id = e.image_id WHERE e.region = 0 GROUP BY 1, 2"))
    return {(c, m): n for c, m, n in rows}


def whitened_descriptors(conn: Connection, model: str) -> list[tuple[int, str]]:
    """(collection id, descriptor) of every whitening fit of the model."""
    rows = conn.execute(text("SELECT collection_id, method FROM whitening WHERE model = :model ORDER BY 1, 2"),
                        {"model": model})
    return [(r[0], r[1]) for r in rows]


def graph_kinds(conn: Connection, model: str) -> list[tuple[int, str]]:
    """(collection id, kind) of every match graph of the model."""
    rows = conn.execute(text("SELECT DISTINCT i.collection_id, g.kind FROM match_graph g "
                             "JOIN images i ON i.id = g.image_id WHERE g.model = :model ORDER BY 1, 2"),
                        {"model": model})
    return [(r[0], r[1]) for r in rows]


def graph_owed(conn: Connection, spec: ModelSpec, kind: str, collection: int) -> int:
    """The collection's images with vectors in the model's table and ``kind`` local features but no graph row
    (or one built before confidences were stored)."""
    return conn.execute(text(
        f"SELECT count(*) FROM local_features f JOIN images i ON i.id = f.image_id "
        f"WHERE f.kind = :kind AND i.collection_id = :c "
        f"AND EXISTS (SELECT 1 FROM {spec.table} e WHERE e.image_id = f.image_id) "
        f"AND NOT EXISTS (SELECT 1 FROM match_graph g WHERE g.model = :model AND g.kind = :kind "
        f"AND g.image_id = f.image_id AND g.confidences IS NOT NULL)"), {"kind": kind, "model": spec.name, "c": collection}).scalar()


def turns_owed(conn: Connection, spec: ModelSpec) -> dict[tuple[int, str], list[int]]:
    """(collection id, descriptor) -> the images that have its whole-image rows and local
    features (a verifying method stored them) but no turned vectors (stored before a verifying
    method described images turned: schema revision 0010)."""
    rows = conn.execute(text(
        f"SELECT i.collection_id, e.method, e.image_id FROM {spec.table} e JOIN images i ON i.id = e.image_id "
        f"WHERE e.region = 0 AND e.method = ANY(:descriptors) "
        f"AND EXISTS (SELECT 1 FROM local_features f WHERE f.image_id = e.image_id) "
        f"AND NOT EXISTS (SELECT 1 FROM turned_vectors t WHERE t.model = :model AND t.descriptor = e.method "
        f"AND t.image_id = e.image_id) ORDER BY 1, 2, 3"),
        {"descriptors": [m for m in stored_methods(conn, spec) if "+" not in m], "model": spec.name})
    owed: dict[tuple[int, str], list[int]] = {}
    for collection, descriptor, image_id in rows:
        owed.setdefault((collection, descriptor), []).append(image_id)
    return owed


def images_without_files(conn: Connection) -> list[int]:
    """Images no file holds (only a hand-made change leaves them: the code deletes an image with
    its last file); searches would still return them."""
    rows = conn.execute(text("SELECT i.id FROM images i WHERE NOT EXISTS "
                             "(SELECT 1 FROM files f WHERE f.image_id = i.id) ORDER BY i.id"))
    return [r[0] for r in rows]


def count_failures(conn: Connection) -> int:
    return conn.execute(text("SELECT count(*) FROM failures")).scalar()


def tables_exist(conn: Connection) -> bool:
    return conn.execute(text("SELECT to_regclass('images') IS NOT NULL AND to_regclass('whitening') IS NOT NULL "
                             "AND to_regclass('match_graph') IS NOT NULL AND to_regclass('files') IS NOT NULL")).scalar()

