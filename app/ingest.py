"""The ingestion job: reader (find + hash) -> mapper (decode, local features, embed) -> writer (COPY).

Content hashes make it idempotent: only the (image, model) pairs and local features not
stored yet are computed. Each batch commits atomically. A first load drops the HNSW index
and builds it after the bulk COPY.
"""
from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from app import store
from app.config import get_settings
from app.images import Candidate, ImageError, decode, find_images, path_text, read_bytes, sha256
from app.labels import LabelRow, label_for
from app.local import extract
from app.methods import Method
from app.registry import ModelSpec


@dataclass
class Decoded:
    path: Path
    sha: str
    width: int
    height: int
    arrays: dict[str, list[np.ndarray]]  # model name -> prepared uint8 inputs (one per scale)
    local: object | None = None  # LocalFeatures when the method verifies


@dataclass
class Failure:
    path: Path
    reason: str


@dataclass
class IngestReport:
    found: int = 0
    new_images: int = 0
    skipped: int = 0
    failed: list[Failure] = field(default_factory=list)
    embedded: dict[str, int] = field(default_factory=dict)
    local_features: int = 0
    seconds: float = 0.0
    embed_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        done = self.found - self.skipped - len(self.failed)
        return done / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Work:
    candidate: Candidate
    relative: str
    sha: str | None = None
    models: list[ModelSpec] = field(default_factory=list)
    need_local: bool = False
    error: str | None = None


def _hash(work: _Work, max_bytes: int) -> _Work:
    if work.candidate.error:
        work.error = work.candidate.error
        return work
    try:
        work.sha = sha256(read_bytes(work.candidate.path, max_bytes))
    except ImageError as exc:
        work.error = str(exc)
    return work


def _decode(work: _Work, method: Method, max_pixels: int, max_bytes: int) -> Decoded | Failure:
    try:
        data = read_bytes(work.candidate.path, max_bytes)
        min_side = max([method.min_side(s) for s in work.models] or [1])
        image = decode(data, max_pixels, min_side=min_side, longest=method.longest_side())
        arrays = {spec.name: method.prepare(image, spec) for spec in work.models}
        local = extract(image, method.local) if work.need_local else None
        return Decoded(work.candidate.path, sha256(data), image.width, image.height, arrays, local)
    except ImageError as exc:
        return Failure(work.candidate.path, str(exc))
    except MemoryError:
        return Failure(work.candidate.path, "out of memory while decoding")


def bounded_map(pool: ThreadPoolExecutor, fn, items, ahead: int) -> Iterator:
    """Like ``pool.map`` in order, but with at most ``ahead`` results pending (bounded memory)."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


RETRY_DELAYS = (0.5, 1, 2, 4, 8, 16)  # seconds between attempts: about half a minute in all


def _retryable(exc: BaseException) -> bool:
    import psycopg
    from sqlalchemy.exc import DBAPIError

    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    return exc.connection_invalidated or isinstance(orig, (
        psycopg.OperationalError, psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure,
        psycopg.errors.AdminShutdown, psycopg.errors.CannotConnectNow))


def with_retry(fn, delays=RETRY_DELAYS):
    """Run ``fn`` (a whole transaction); on a dropped connection, restart or deadlock wait and retry."""
    for delay in (*delays, None):
        try:
            return fn()
        except Exception as exc:
            if delay is None or not _retryable(exc):
                raise
            time.sleep(delay)


def _batched(items, size) -> Iterator[list]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


class Ingestor:
    def __init__(self, engine: Engine, models: list[ModelSpec], method: Method,
                 embedders: dict[str, object] | None = None, pretrained: bool = True):
        self.engine, self.models, self.method = engine, models, method
        self.settings = get_settings()
        self._embedders = embedders if embedders is not None else {}
        self.pretrained = pretrained
        self._whitening: dict[str, object] = {}

    def embedder(self, spec: ModelSpec):
        key = f"{spec.name}/{self.method.raw}"
        if key not in self._embedders:
            from app.embedder import Embedder

            self._embedders[key] = Embedder(spec, self.method, pretrained=self.pretrained)
        return self._embedders[key]

    def run(self, root: Path, labels: dict[str, LabelRow] | None = None,
            on_failure: Callable[[Failure], None] | None = None,
            progress: Callable[[int, int], None] | None = None) -> IngestReport:
        started = time.perf_counter()
        root = Path(root)
        report = IngestReport()
        works = [_Work(c, _relative(c.path, root)) for c in find_images(root)]
        report.found = len(works)
        s = self.settings
        with ThreadPoolExecutor(s.decode_workers) as pool:
            works = list(pool.map(lambda w: _hash(w, s.max_file_bytes), works))
            todo = self._plan(works, labels, report)
            self._fail(report, [Failure(w.candidate.path, w.error) for w in works if w.error], on_failure)
            if progress:
                progress(0, len(todo))
            first_load = self._drop_indexes_for_first_load(todo)
            try:
                decoded = bounded_map(pool, lambda w: _decode(w, self.method, s.max_pixels, s.max_file_bytes),
                                      todo, ahead=2 * s.batch_size)
                done = 0
                for batch in _batched(decoded, s.batch_size):
                    self._write([d for d in batch if isinstance(d, Decoded)], labels, root, report)
                    self._fail(report, [d for d in batch if isinstance(d, Failure)], on_failure)
                    done += len(batch)
                    if progress:
                        progress(done, len(todo))
            finally:
                self._build_indexes(first_load)
            self._augment_new()
        report.seconds = time.perf_counter() - started
        return report

    def _plan(self, works: list[_Work], labels, report: IngestReport) -> list[_Work]:
        """Decide which files need which models (and local features); count the rest as skipped."""
        valid = [w for w in works if not w.error]
        kind = self.method.local
        with self.engine.begin() as conn:
            ids = store.image_ids_by_sha(conn, [w.sha for w in valid])
            done = {spec.name: store.embedded_ids(conn, spec, self.method.raw, ids.values()) for spec in self.models}
            local_done = store.local_ids(conn, kind.name, ids.values()) if kind else set()
            if labels:
                store.set_labels(conn, {w.sha: row.label for w in valid
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

    def _whitening_for(self, spec: ModelSpec):
        if spec.name not in self._whitening:
            with self.engine.connect() as conn:
                self._whitening[spec.name] = store.load_whitening(conn, spec.name, self.method.raw)
        return self._whitening[spec.name]

    def _write(self, images: list[Decoded], labels, root: Path, report: IngestReport) -> None:
        if not images:
            return
        vectors = {}
        for spec in self.models:
            batch = [d for d in images if spec.name in d.arrays]
            if batch:
                t0 = time.perf_counter()
                vectors[spec.name] = (batch, self.embedder(spec).describe([d.arrays[spec.name] for d in batch]))
                report.embed_seconds[spec.name] = report.embed_seconds.get(spec.name, 0.0) + time.perf_counter() - t0
        rows = []
        for d in images:
            row = label_for(labels, _relative(d.path, root)) if labels else None
            rows.append({"sha256": d.sha, "path": path_text(d.path), "width": d.width, "height": d.height,
                         "label": row.label if row else None})
        def transaction():
            counts = IngestReport()
            with self.engine.begin() as conn:
                before = store.image_ids_by_sha(conn, [r["sha256"] for r in rows])
                ids = store.insert_images(conn, rows)
                counts.new_images = len(ids) - len(before)
                for spec in self.models:
                    if spec.name in vectors:
                        self._write_vectors(conn, spec, ids, *vectors[spec.name], counts)
                if self.method.local:
                    local = [(ids[d.sha], d.local) for d in images if d.local is not None]
                    counts.local_features = store.write_local(conn, self.method.local.name, local)
                store.clear_failures(conn, [path_text(d.path) for d in images])
            return counts

        counts = with_retry(transaction)  # one atomic batch, retried whole
        report.new_images += counts.new_images
        report.local_features += counts.local_features
        for name, n in counts.embedded.items():
            report.embedded[name] = report.embedded.get(name, 0) + n

    def _write_vectors(self, conn, spec: ModelSpec, ids, batch: list[Decoded], described, report) -> None:
        rows = [(ids[d.sha], region, v) for d, matrix in zip(batch, described) for region, v in enumerate(matrix)]
        n = store.write_embeddings(conn, spec, self.method.raw, rows)
        report.embedded[spec.name] = report.embedded.get(spec.name, 0) + n
        whitening = self._whitening_for(spec)
        if whitening is not None:  # keep the collection's whitened rows complete
            from app.whiten import apply

            _, mean, projection = whitening
            whitened = apply(np.stack([v for _, _, v in rows]), mean, projection)
            store.write_embeddings(conn, spec, f"{self.method.raw}+w",
                                   [(i, r, w) for (i, r, _), w in zip(rows, whitened)])

    def _augment_new(self) -> None:
        """Keep augmented (``+dba``) rows complete where the collection has them."""
        from app.dba import augment_missing

        for spec in self.models:
            for source in (self.method.raw, f"{self.method.raw}+w"):
                with_retry(lambda: augment_missing(self.engine, spec, source))

    def _fail(self, report: IngestReport, failures: list[Failure], on_failure) -> None:
        if not failures:
            return
        report.failed.extend(failures)

        def transaction():
            with self.engine.begin() as conn:
                for f in failures:
                    store.record_failure(conn, path_text(f.path), f.reason)

        with_retry(transaction)
        if on_failure:
            for f in failures:
                on_failure(f)

    def _drop_indexes_for_first_load(self, todo: list[_Work]) -> list[ModelSpec]:
        dropped = []
        for spec in self.models:
            with self.engine.begin() as conn:
                if any(spec in w.models for w in todo) and store.count_embeddings(conn, spec, self.method.raw) == 0:
                    store.drop_index(conn, spec, self.method.raw)
                    dropped.append(spec)
                else:
                    store.ensure_index(conn, spec, self.method.raw)  # e.g. after a killed first load
        return dropped

    def _build_indexes(self, specs: list[ModelSpec]) -> None:
        for spec in specs:
            with self.engine.begin() as conn:
                store.ensure_index(conn, spec, self.method.raw)


def _relative(path: Path, root: Path) -> str:
    try:
        return path_text(path.relative_to(root).as_posix())
    except ValueError:
        return path_text(path.name)
