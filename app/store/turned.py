"""Rows of ``turned_vectors``: an image's whole-image vectors turned by a quarter each way
(``app.describe.methods.QUARTER_TURNS``), unwhitened, kept as float16 (a shortlist's candidates
are found with them; nothing is ranked by their exact values)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import Connection, text


def write_turned(conn: Connection, model: str, descriptor: str, rows: Sequence[tuple[int, np.ndarray]]) -> None:
    """(image id, (turns, dim) vectors) rows; an image's row already stored is kept."""
    if not rows:
        return
    conn.execute(text("INSERT INTO turned_vectors (model, descriptor, image_id, vectors) "
                      "VALUES (:model, :descriptor, :image_id, :vectors) ON CONFLICT DO NOTHING"),
                 [{"model": model, "descriptor": descriptor, "image_id": int(image_id),
                   "vectors": np.asarray(vectors, np.float16).tobytes()} for image_id, vectors in rows])


def load_turned(conn: Connection, model: str, descriptor: str, dim: int, image_id: int) -> tuple[int, np.ndarray] | None:
    """(the image's collection id, its (turns, dim) float32 turned vectors), or None where none are stored."""
    row = conn.execute(text("SELECT i.collection_id, t.vectors FROM turned_vectors t JOIN images i ON i.id = t.image_id "
                            "WHERE t.model = :model AND t.descriptor = :descriptor AND t.image_id = :image_id"),
                       {"model": model, "descriptor": descriptor, "image_id": int(image_id)}).first()
    if row is None:
        return None
    return row[0], np.frombuffer(row[1], np.float16).astype(np.float32).reshape(-1, dim)
