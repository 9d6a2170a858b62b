"""The reader: find image files, hash those the collection does not know unchanged, plan what
each still needs, and decode them in a thread pool with bounded prefetch, yielding batches for
the embed step.

A file whose path, size and modification time match its stored file row is not read again
(``rehash`` reads every file); its content is taken to be the stored one.
"""
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
from app.describe.keypoints import LocalFeatures, extract
from app.describe.methods import Method
from app.describe.registry import ModelSpec
from app.files.images import (OUTSIDE, Candidate, ImageError, decode, find_images, inside, photo_size, read_bytes,
                              sha256)
from app.files.paths import path_text
from app.files.labels import LabelRow, label_for
from app.ingestion.report import Failure, IngestReport
from app.store.embeddings import embedded_ids
from app.store.files import FileRow, known_files
from app.store.images import image_ids_by_sha
from app.store.local import local_ids


MAX_PATH_BYTES = 2000  # stored path text; a longer one cannot be a key of the database's index


@dataclass
class Work:
    """One file on its way through the reader."""
    candidate: Candidate
    relative: str  # path relative to the ingested folder, as labels name it
    text: str = ""  # the stored form of the path
    size: int | None = None
    mtime_ns: int | None = None
    sha: str | None = None
    unchanged: bool = False  # known with this size and mtime: not read again
    models: list[ModelSpec] = field(default_factory=list)  # models whose vectors it still needs
    need_local: bool = False
    error: str | None = None

    def file_row(self, labels: dict[str, LabelRow] | None) -> FileRow:
        row = label_for(labels, self.relative) if labels else None
        return FileRow(self.text, self.sha, self.size, self.mtime_ns, row.label if row else None)


@dataclass
class Decoded:
    work: Work
    width: int
    height: int
    arrays: dict[str, list[np.ndarray]]  # model name -> prepared uint8 inputs (one per scale)
    local: LocalFeatures | None = None  # when the method verifies

    @property
    def path(self) -> Path:
        return self.work.candidate.path

    @property
    def sha(self) -> str:
        return self.work.sha


def relative_name(path: Path, root: Path) -> str:
    try:
        return path_text(path.relative_to(root).as_posix())
    except ValueError:
        return path_text(path.name)


def stat_work(work: Work) -> Work:
    """Size and modification time, or the reason the file cannot be used."""
    work.text = path_text(work.candidate.path)
    if work.candidate.error:
        work.error = work.candidate.error
    elif len(work.text.encode()) > MAX_PATH_BYTES:
        work.error = f"path too long to store ({len(work.text.encode())} bytes; the limit is {MAX_PATH_BYTES})"
    else:
        try:
            st = work.candidate.path.stat()
            work.size, work.mtime_ns = st.st_size, st.st_mtime_ns
        except OSError as exc:
            work.error = f"cannot read: {exc.strerror or exc}"
    return work


def hash_work(work: Work, max_bytes: int, within: tuple[Path, ...] | None = None) -> Work:
    if work.error:
        return work
    if within is not None and not inside(work.candidate.path, within):
        work.error = OUTSIDE
        return work
    if work.unchanged:
        return work
    try:
        work.sha = sha256(read_bytes(work.candidate.path, max_bytes, within))
    except ImageError as exc:
        work.error = str(exc)
    return work


def decode_work(work: Work, method: Method, max_pixels: int, max_bytes: int,
                within: tuple[Path, ...] | None = None) -> Decoded | Failure:
    try:
        data = read_bytes(work.candidate.path, max_bytes, within)
        min_side = max([method.min_side(s) for s in work.models] or [1])
        image = decode(data, max_pixels, min_side=min_side, longest=method.longest_side())
        arrays = {spec.name: method.prepare(image, spec) for spec in work.models}
        width, height = photo_size(data)  # the stored size is the photo's, not the reduced decode's
        local = extract(image, method.local, (width, height)) if work.need_local else None
        work.sha = sha256(data)  # the content read now (the file may have changed since it was hashed)
        return Decoded(work, width, height, arrays, local)
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

    def __init__(self, engine: Engine, collection: int, models: list[ModelSpec], method: Method,
                 settings: Settings, pool: ThreadPoolExecutor, rehash: bool = False,
                 within: tuple[Path, ...] | None = None):
        self.engine, self.collection, self.models, self.method = engine, collection, models, method
        self.settings, self.pool, self.rehash = settings, pool, rehash
        # every file read must lie under one of these folders, its links resolved (the server's jobs)
        self.within = None if within is None else tuple(Path(root).resolve() for root in within)

    def scan(self, root: Path) -> list[Work]:
        """Every image file under ``root``, hashed unless known unchanged (unreadable ones carry
        their error). Paths are absolute, under the resolved ``root`` (so a stored path opens
        from any folder); links below it are recorded where they are, not where they point."""
        root = Path(root).resolve()
        works = list(self.pool.map(stat_work, [Work(c, relative_name(c.path, root)) for c in find_images(root)]))
        if not self.rehash:
            with self.engine.connect() as conn:
                known = known_files(conn, self.collection, [w.text for w in works if not w.error])
            for w in works:
                k = known.get(w.text)
                if k is not None and (k.size, k.mtime_ns) == (w.size, w.mtime_ns):
                    w.sha, w.unchanged = k.sha, True
        return list(self.pool.map(lambda w: hash_work(w, self.settings.max_file_bytes, self.within), works))

    def plan(self, works: list[Work], report: IngestReport) -> tuple[list[Work], list[Work]]:
        """Decide which files need which models (and local features): (to embed, the rest, whose
        content is stored already: only their file rows are written). One file per new content
        is embedded; the others follow it."""
        valid = [w for w in works if not w.error]
        kind = self.method.local
        with self.engine.begin() as conn:
            ids = image_ids_by_sha(conn, self.collection, [w.sha for w in valid])
            done = {spec.name: embedded_ids(conn, spec, self.method.raw, ids.values()) for spec in self.models}
            local_done = local_ids(conn, kind.name, ids.values()) if kind else set()
        todo, stored, seen = [], [], set()
        for w in valid:
            image_id = ids.get(w.sha)
            w.models = [spec for spec in self.models if image_id is None or image_id not in done[spec.name]]
            w.need_local = kind is not None and (image_id is None or image_id not in local_done)
            if (not w.models and not w.need_local) or w.sha in seen:
                report.skipped += 1
                stored.append(w)
            else:
                todo.append(w)
            seen.add(w.sha)
        report.unchanged = sum(w.unchanged for w in valid)
        return todo, stored

    def batches(self, todo: list[Work]) -> Iterator[list[Decoded | Failure]]:
        s = self.settings
        decoded = bounded_map(self.pool, lambda w: decode_work(w, self.method, s.max_pixels, s.max_file_bytes,
                                                               self.within), todo, ahead=2 * s.batch_size)
        return batched(decoded, s.batch_size)
