"""The runner: reader -> embed -> writer over a folder, then the collection's upkeep, in one
place, so that every stored image has the rows its collection's steps expect:

- ``+w`` rows where the model's descriptor has a whitening fit (written with each batch);
- ``+dba`` rows where the collection has been augmented (``augment_missing`` after the load);
- match-graph rows of the new images, with a verifying method and ``graph=True``.

Content hashes make it idempotent: only the (image, model) pairs and local features not stored
yet are computed; every file seen gets its file row. With ``sync``, files of the collection
below the folder that the run did not see are removed afterwards, with the images no file holds
any more (``app.store.files``). The CLI, the Python API and ``evaluate`` all ingest through
``Ingestor``.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import Engine

from app.collection.dba import augment_missing
from app.collection.graph import update_graph
from app.config import get_settings
from app.describe.embedder import Embedder
from app.describe.methods import Method, whitened_name
from app.describe.registry import ModelSpec
from app.files.labels import LabelRow
from app.ingestion.embed import Embed
from app.ingestion.reader import Decoded, Reader
from app.ingestion.report import Failure, IngestReport
from app.ingestion.writer import Writer
from app.files.paths import path_text
from app.store.collections import Collection
from app.store.db import database_clock
from app.store.files import remove_files, under_range
from app.store.images import clear_failures_under
from app.store.retry import with_retry

Progress = Callable[[int, int], None]  # (done, to do)


class Ingestor:
    """Ingest folders into ``collection`` for ``models`` with ``method``; ``graph`` also computes
    the new images' match-graph rows (verifying methods only). ``embedders`` shares loaded
    backbones between runs; ``rehash`` reads files whose size and mtime are unchanged too."""

    def __init__(self, engine: Engine, collection: Collection, models: list[ModelSpec], method: Method,
                 embedders: dict[str, Embedder] | None = None, pretrained: bool = True, graph: bool = False,
                 rehash: bool = False):
        self.engine, self.collection, self.models, self.method = engine, collection, models, method
        self.graph, self.rehash = graph, rehash
        self.settings = get_settings()
        self.embed = Embed(method, embedders, pretrained)
        self.writer = Writer(engine, collection, models, method)

    def embedder(self, spec: ModelSpec) -> Embedder:
        return self.embed.embedder(spec)

    def run(self, root: Path, labels: dict[str, LabelRow] | None = None,
            on_failure: Callable[[Failure], None] | None = None, progress: Progress | None = None,
            graph_progress: Progress | None = None, sync: bool = False) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport(collection=self.collection.name)
        with self.engine.connect() as conn:
            since = database_clock(conn)  # files seen by this run are stamped later than this
        with ThreadPoolExecutor(self.settings.decode_workers) as pool:
            reader = Reader(self.engine, self.collection.id, self.models, self.method, self.settings, pool,
                            self.rehash)
            works = reader.scan(Path(root))
            report.found = len(works)
            todo, stored = reader.plan(works, report)
            self.writer.fail(report, [Failure(w.candidate.path, w.error) for w in works if w.error], on_failure)
            if progress:
                progress(0, len(todo))
            try:
                self._embed_and_write(reader, todo, labels, report, on_failure, progress)
            except BaseException:
                self.writer.build_indexes(stopped_early=True)
                raise
            self.writer.build_indexes()
            self.writer.link(stored, labels, report, on_failure)
        if sync and Path(root).is_dir():
            report.removed, report.removed_images = with_retry(lambda: self._forget_unseen(Path(root), since))
        self._augment_new()
        report.seconds = time.perf_counter() - started
        if self.graph and self.method.local:
            report.graph = [r for spec in self.models
                            if (r := update_graph(self.engine, self.collection, spec, self.method,
                                                  progress=graph_progress))]
        return report

    def _embed_and_write(self, reader: Reader, todo, labels, report: IngestReport, on_failure, progress) -> None:
        """Embed batch after batch while a thread of its own writes the one before (one batch in
        flight, committed in order): the database's share of the time hides behind inference."""
        done = 0

        def write(batch, images, vectors):
            if images:
                self.writer.write(images, vectors, labels, todo, report)
            self.writer.fail(report, [d for d in batch if isinstance(d, Failure)], on_failure)
            return len(batch)

        def finished(pending) -> None:  # wait for the batch in flight, then report it
            nonlocal done
            if pending is not None:
                done += pending.result()
                if progress:
                    progress(done, len(todo))

        with ThreadPoolExecutor(1) as writing:
            pending = None
            for batch in reader.batches(todo):
                images = [d for d in batch if isinstance(d, Decoded)]
                vectors = self.embed(self.models, images, report) if images else {}
                finished(pending)
                pending = writing.submit(write, batch, images, vectors)
            finished(pending)

    def _forget_unseen(self, root: Path, since) -> tuple[list[str], int]:
        """One transaction: the collection's files below ``root`` that this run did not see are
        removed, with the images no file holds any more; failures recorded there before the run
        are forgotten (the files are gone, or this run recorded them again)."""
        folder = path_text(root.resolve())
        with self.engine.begin() as conn:
            removed = remove_files(conn, self.collection.id, under=[folder], unseen_since=since)
            clear_failures_under(conn, self.collection.id, *under_range(folder), since)
        return removed

    def _augment_new(self) -> None:
        """Keep augmented (``+dba``) rows complete where the collection has them."""
        for spec in self.models:
            for source in (self.method.raw, whitened_name(self.method.raw)):
                with_retry(lambda: augment_missing(self.engine, self.collection.id, spec, source))
