"""Rows of ``collections``: named sets of photos. Everything a search sees, and every fit
(whitening, augmentation, match graph), belongs to one collection; ``default`` always exists."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

DEFAULT_COLLECTION = "default"
MAX_NAME_CHARS = 200


class CollectionError(ValueError):
    pass


@dataclass(frozen=True)
class Collection:
    id: int
    name: str


def check_name(name: str) -> str:
    """A collection name: 1-200 printable characters (it is always a bind parameter; the rule
    keeps names readable in tables and logs)."""
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable() or name != name.strip():
        raise CollectionError(f"collection name {name!r}: use 1-{MAX_NAME_CHARS} printable characters, "
                              f"without leading or trailing spaces")
    return name


def ensure_collection(conn: Connection, name: str) -> Collection:
    """The collection called ``name``, created if it does not exist."""
    conn.execute(text("INSERT INTO collections (name) VALUES (:name) ON CONFLICT (name) DO NOTHING"),
                 {"name": check_name(name)})
    return get_collection(conn, name)


def get_collection(conn: Connection, name: str) -> Collection:
    row = conn.execute(text("SELECT id, name FROM collections WHERE name = :name"), {"name": name}).first()
    if row is None:
        names = collection_names(conn)
        raise CollectionError(f"no collection named {name!r} (collections: {', '.join(names) or 'none'})")
    return Collection(row.id, row.name)


def collection_by_id(conn: Connection, collection_id: int) -> Collection:
    row = conn.execute(text("SELECT id, name FROM collections WHERE id = :id"), {"id": collection_id}).one()
    return Collection(row.id, row.name)


def collection_names(conn: Connection) -> list[str]:
    return [r[0] for r in conn.execute(text("SELECT name FROM collections ORDER BY name"))]


def collection_rows(conn: Connection) -> list[dict]:
    """name, files, images, failures and created_at of every collection, by name."""
    rows = conn.execute(text(
        "SELECT c.id, c.name, c.created_at, "
        "(SELECT count(*) FROM files f WHERE f.collection_id = c.id) AS files, "
        "(SELECT count(*) FROM images i WHERE i.collection_id = c.id) AS images, "
        "(SELECT count(*) FROM failures x WHERE x.collection_id = c.id) AS failures "
        "FROM collections c ORDER BY c.name"))
    return [dict(r._mapping) for r in rows]


def drop_collection(conn: Connection, name: str) -> dict:
    """Delete a collection with its files, images, vectors, local features, fits and graph rows."""
    found = get_collection(conn, name)
    if found.name == DEFAULT_COLLECTION:
        raise CollectionError("the default collection cannot be dropped (remove its files instead)")
    counts = next(r for r in collection_rows(conn) if r["id"] == found.id)
    conn.execute(text("DELETE FROM collections WHERE id = :id"), {"id": found.id})
    return {"name": found.name, "files": counts["files"], "images": counts["images"]}
