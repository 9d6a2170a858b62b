"""Turned vectors for images stored before a verifying method described its images turned
(schema revision 0010): ``imgsim db check`` counts them, ``--repair`` describes them again from
their files. Their match-graph rows were computed without turns; ``imgsim index graph
--rebuild`` recomputes them with."""
from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from PIL import Image
from sqlalchemy import Engine

from app.config import Settings, get_settings
from app.describe.embedder import Embedder
from app.describe.keypoints import LONGEST_SIDE
from app.describe.methods import QUARTER_TURNS, Method, get_method
from app.describe.registry import ModelSpec
from app.files.images import ImageError, load_image
from app.files.paths import path_from_text
from app.store.files import file_info
from app.store.retry import with_retry
from app.store.turned import write_turned

log = logging.getLogger("imgsim")
BATCH = 32  # images per network call and transaction


def describe_turns(engine: Engine, spec: ModelSpec, descriptor: str, ids: list[int],
                   progress: Callable[[int, int], None] | None = None) -> int:
    """Turned vectors of the images ``ids`` from the first of their files that still decodes
    (an image whose files are all gone or unreadable is logged and left); returns how many got them."""
    method, settings = get_method(descriptor), get_settings()
    embedder, written = Embedder(spec, method), 0
    for start in range(0, len(ids), BATCH):
        chunk = ids[start:start + BATCH]
        with engine.connect() as conn:
            paths = {i: found[0] for i, found in file_info(conn, chunk).items()}
        prepared = {}
        for image_id in chunk:
            image = _first_readable(paths.get(image_id, []), method, spec, settings)
            if image is None:
                log.warning("image %d: no file of it could be read, so it gets no turned vectors", image_id)
                continue
            prepared[image_id] = method.prepare(image, spec)
        rows = embedder.describe([turn for arrays in prepared.values() for turn in method.turned(arrays)])
        turned = np.stack([r[0] for r in rows]).reshape(len(prepared), len(QUARTER_TURNS), spec.dim) if rows else []
        with_retry(lambda: _write(engine, spec, descriptor, list(zip(prepared, turned))))
        written += len(prepared)
        if progress:
            progress(start + len(chunk), len(ids))
    return written


def _first_readable(paths: list[str], method: Method, spec: ModelSpec, settings: Settings) -> Image.Image | None:
    for path in paths:
        try:
            # decoded as a verifying ingest decodes (large enough for its local features)
            return load_image(path_from_text(path), settings.max_pixels, settings.max_file_bytes,
                              min_side=method.min_side(spec), longest=max(method.longest_side(), LONGEST_SIDE))
        except (OSError, ImageError) as exc:
            log.warning("%s: %s", path, exc)
    return None


def _write(engine: Engine, spec: ModelSpec, descriptor: str, rows: list) -> None:
    with engine.begin() as conn:
        write_turned(conn, spec.name, descriptor, rows)
