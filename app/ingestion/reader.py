"""The reader: find image files, hash them, plan what each still needs, and decode them in a
thread pool with bounded prefetch, yielding batches for the embed step."""
from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from app.config import Settings
from app.describe.local import LocalFeatures, extract
from app.describe.methods import Method
from app.describe.registry import ModelSpec
from app.files.images import Candidate, ImageError, decode, find_images, photo_size, read_bytes, sha256
from app.files.paths import path_text
from app.files.labels import LabelRow, label_for
from app.ingestion.report import Failure, IngestReport
from app.store.embeddings import embedded_ids
from app.store.images import image_ids_by_sha, set_labels
from app.store.local import local_ids


@dataclass
class Work:
    """One file on its way through the reader."""
    candidate: Candidate
    relative: str  # path relative to the ingested folder, as labels name it
    sha: str | None = None
    models: list[ModelSpec] = field(default_factory=list)  # models whose vectors it still needs
    need_local: bool = False
    error: str | None = None


@dataclass
class Decoded:
    path: Path
    relative: str
    sha: str
    width: int
    height: int
    arrays: dict[str, list[np.ndarray]]  # model name -> prepared uint8 inputs (one per scale)
    local: LocalFeatures | None = None  # when the method verifies


def relative_name(path: Path, root: Path) -> str:
    try:
        return path_text(path.relative_to(root).as_posix())
    except ValueError:
        return path_text(path.name)


def hash_work(work: Work, max_bytes: int) -> Work:
    if work.candidate.error:
        work.error = work.candidate.error
        return work
    try:
        work.sha = sha256(read_bytes(work.candidate.path, max_bytes))
    except ImageError as exc:
        work.error = str(exc)
    return work


def decode_work(work: Work, method: Method, max_pixels: int, max_bytes: int) -> Decoded | Failure:
    try:
        data = read_bytes(work.candidate.path, max_bytes)
        min_side = max([method.min_side(s) for s in work.models] or [1])
        image = decode(data, max_pixels, min_side=min_side, longest=method.longest_side())
        arrays = {spec.name: method.prepare(image, spec) for spec in work.models}
        local = extract(image, method.local) if work.need_local else None
        width, height = photo_size(data)  # the stored size is the photo's, not the reduced decode's
        return Decoded(work.candidate.path, work.relative, sha256(data), width, height, arrays, local)
    except ImageError as exc:
        return Failure(work.candidate.path, str(exc))
    except MemoryError:
        return Failure(work.candidate.path, "out of memory while decoding")


def bounded_map(pool: ThreadPoolExecutor, fn, items: Iterable, ahead: int) -> Iterator:
    """Like ``pool.map`` in order, but with at most ``ahead`` results pending (bounded memory)."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def batched(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


class Reader:
    """Files under a folder -> planned work -> batches of ``Decoded`` or ``Failure``."""

    def __init__(self, engine: Engine, models: list[ModelSpec], method: Method, settings: Settings,
                 pool: ThreadPoolExecutor):
        self.engine, self.models, self.method, self.settings, self.pool = engine, models, method, settings, pool

    def scan(self, root: Path) -> list[Work]:
        """Every image file under ``root``, hashed (unreadable ones carry their error). Paths are
        absolute, under the resolved ``root`` (so a stored path opens from any folder); links
        below it are recorded where they are, not where they point."""
        root = Path(root).resolve()
        works = [Work(c, relative_name(c.path, root)) for c in find_images(root)]
        return list(self.pool.map(lambda w: hash_work(w, self.settings.max_file_bytes), works))

    def plan(self, works: list[Work], labels: dict[str, LabelRow] | None, report: IngestReport) -> list[Work]:
        """Decide which files need which models (and local features); count the rest as skipped.
        Labels of files already stored are brought up to date here."""
        valid = [w for w in works if not w.error]
        kind = self.method.local
        with self.engine.begin() as conn:
            ids = image_ids_by_sha(conn, [w.sha for w in valid])
            done = {spec.name: embedded_ids(conn, spec, self.method.raw, ids.values()) for spec in self.models}
            local_done = local_ids(conn, kind.name, ids.values()) if kind else set()
            if labels:
                set_labels(conn, {w.sha: row.label for w in valid
                                  if w.sha in ids and (row := label_for(labels, w.relative))})
        todo, seen = [], set()
        for w in valid:
            image_id = ids.get(w.sha)
            w.models = [spec for spec in self.models if image_id is None or image_id not in done[spec.name]]
            w.need_local = kind is not None and (image_id is None or image_id not in local_done)
            if (not w.models and not w.need_local) or w.sha in seen:
                report.skipped += 1
            else:
                todo.append(w)
            seen.add(w.sha)
        return todo

    def batches(self, todo: list[Work]) -> Iterator[list[Decoded | Failure]]:
        s = self.settings
        decoded = bounded_map(self.pool, lambda w: decode_work(w, self.method, s.max_pixels, s.max_file_bytes),
                              todo, ahead=2 * s.batch_size)
        return batched(decoded, s.batch_size)
