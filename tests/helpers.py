"""Generated test images (no downloaded data)."""
from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from app.describe.registry import get_model

LITE0 = get_model("efficientnet-lite0")


def pattern(seed: int, size=(160, 120)) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rng.integers(0, size[0]), rng.integers(0, size[1])
        x1, y1 = x0 + rng.integers(5, 60), y0 + rng.integers(5, 60)
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x1, y1], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return image


def wait_for(condition, timeout: float = 120, what: str = "condition"):
    """Poll ``condition`` until it holds (a state of the database, never a guessed delay); its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def count(url: str, sql: str) -> int:
    """The first column of the first row of ``sql``, on a connection of its own."""
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]


@contextlib.contextmanager
def fresh_database(server_uri: str, monkeypatch):
    """A new, empty database on the server at ``server_uri``, with DATABASE_URL pointing at it
    while the block runs; dropped afterwards (when the server still runs). Yields its libpq URL."""
    import psycopg

    from app.store.db import reset

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_uri, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = server_uri.replace("/postgres?", f"/{name}?")
    monkeypatch.setenv("DATABASE_URL", url)
    reset()
    try:
        yield url
    finally:
        reset()
        with contextlib.suppress(Exception), psycopg.connect(server_uri, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        monkeypatch.delenv("DATABASE_URL")
        reset()


def store_images(conn, rows: list[dict], collection: int = 1) -> dict[str, int]:
    """Image rows with one file each (``sha256``, ``path``, ``label``, ``width``, ``height``),
    written through the store; sha -> image id."""
    from app.store.files import FileRow, upsert_files
    from app.store.images import insert_images

    ids, _ = insert_images(conn, collection, [{k: r[k] for k in ("sha256", "width", "height")} for r in rows])
    upsert_files(conn, collection, [FileRow(r["path"], r["sha256"], None, None, r.get("label")) for r in rows], ids)
    return ids


def store_random_vectors(spec, method: str, n: int, seed: int = 5, spread: float | None = None):
    """``n`` images (``/img/{i}.jpg``, label ``g{i % 3}``) with random unit vectors of ``method``,
    written through the store (no model needed); with ``spread``, scattered around one direction so
    that they are near each other. Returns (ids in order, vectors)."""
    from app.store.db import get_engine
    from app.store.embeddings import write_embeddings

    rng = np.random.default_rng(seed)
    rows = [{"sha256": f"{seed:04d}{i:060x}", "path": f"/img/{i}.jpg", "width": 10, "height": 10,
             "label": f"g{i % 3}"} for i in range(n)]
    vectors = rng.normal(size=(n, spec.dim)).astype(np.float32)
    if spread is not None:
        vectors = rng.normal(size=spec.dim).astype(np.float32) + spread * vectors
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with get_engine().begin() as conn:
        ids = store_images(conn, rows)
        ordered = [ids[r["sha256"]] for r in rows]
        write_embeddings(conn, spec, method, [(i, 0, v) for i, v in zip(ordered, vectors)])
    return ordered, vectors


def make_images(folder: Path, names: list[str], seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = pattern(seed * 1000 + i)
        fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
               ".tif": "TIFF", ".tiff": "TIFF", ".gif": "GIF"}[path.suffix.lower()]
        image.save(path, fmt)
        paths.append(path)
    return paths


def collection(engine, name: str = "default"):
    """The named collection (created if new)."""
    from app.store.collections import ensure_collection

    with engine.begin() as conn:
        return ensure_collection(conn, name)


def ingestor(engine, models, method, name: str = "default", **options):
    """An ``Ingestor`` into the named collection (``method``: a name or a Method)."""
    from app.describe.methods import Method, get_method
    from app.ingestion.runner import Ingestor

    method = method if isinstance(method, Method) else get_method(method)
    return Ingestor(engine, collection(engine, name), list(models), method, **options)


def ingest_lite0(engine, embedders: dict, folder: Path, labels: Path, method: str, name: str = "default"):
    """Ingest a labelled folder with efficientnet-lite0 (real offline weights) and ``method``."""
    from app.files.labels import read_labels

    return ingestor(engine, [LITE0], method, name, embedders=embedders).run(folder, read_labels(labels))


DATASETS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"


def datasets_or_skip(name: str) -> Path:
    """The dataset's folder; skip when it is absent, or fail where it must be there (CI sets
    IMGSIM_REQUIRE_DATASETS=1, so a missing set cannot pass as a skip)."""
    folder = DATASETS / name
    if not folder.is_dir():
        message = f"{folder} is absent: the real evaluation sets live in ../shared/datasets beside the checkout"
        if os.environ.get("IMGSIM_REQUIRE_DATASETS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return folder
