"""The runner: reader -> embed -> writer over a folder, then the collection's upkeep, in one
place, so that every stored image has the rows its collection's steps expect:

- ``+w`` rows where the model's descriptor has a whitening fit (written with each batch), and
  the fit itself when the method whitens and the collection is large enough for a first fit
  or has doubled since the last one (``app.collection.whitening.fit_due``);
- ``+dba`` rows where the collection has been augmented (``augment_missing`` after the load);
- match-graph rows of the new images, with a verifying method and ``graph=True`` (every row
  after a fit: the shortlists they come from changed).

Where the describing and match-graph work runs is the distributor's choice: here (decoding on
the reader's threads, the network in this process) or on a Ray cluster
(``app.ingestion.distributed``); the planning and the writing stay here either way.

Content hashes make it idempotent: only the (image, model) pairs and local features not stored
yet are computed; every file seen gets its file row. With ``sync``, files of the collection
below the folder that the run did not see are removed afterwards, with the images no file holds
any more (``app.store.files``). The CLI, the Python API and ``evaluate`` all ingest through
``Ingestor``.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import Engine

from app.collection.dba import augment_missing
from app.collection.graph import update_graph
from app.collection.whitening import fit_due, whiten_collection
from app.config import get_settings
from app.describe.embedder import Embedder
from app.describe.methods import Method, uses_whitening, whitened_name
from app.describe.registry import ModelSpec
from app.files.labels import LabelRow
from app.ingestion.embed import Embed, Vectors
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
    backbones between runs; ``rehash`` reads files whose size and mtime are unchanged too;
    ``distributor`` (a ``RayDistributor``) places the describing and match-graph work on a
    cluster instead of this process; ``within``: every file read must lie under one of these
    folders once its links are resolved (a file link out of them is a failure)."""

    def __init__(self, engine: Engine, collection: Collection, models: list[ModelSpec], method: Method,
                 embedders: dict[str, Embedder] | None = None, pretrained: bool = True, graph: bool = False,
                 rehash: bool = False, distributor=None, within: tuple[Path, ...] | None = None):
        self.engine, self.collection, self.models, self.method = engine, collection, models, method
        self.graph, self.rehash, self.pretrained, self.distributor = graph, rehash, pretrained, distributor
        self.within = within  # the folders every file read must lie under, its links resolved
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
                            self.rehash, self.within)
            works = reader.scan(Path(root))
            report.found = len(works)
            todo, stored = reader.plan(works, report)
            self.writer.fail(report, [Failure(w.candidate.path, w.error) for w in works if w.error], on_failure)
            if progress:
                progress(0, len(todo))
            try:
                self._write_described(self._described(reader, todo, report), todo, labels, report, on_failure,
                                      progress)
            except BaseException:
                self.writer.build_indexes(stopped_early=True)
                raise
            self.writer.build_indexes()
            self.writer.link(stored, labels, report, on_failure)
        if sync and Path(root).is_dir():
            report.removed, report.removed_images = with_retry(lambda: self._forget_unseen(Path(root), since))
        self._augment_new()
        report.fits = self._fit_where_due()
        report.seconds = time.perf_counter() - started
        if self.graph and self.method.local:
            placement = self.distributor.graph_rows if self.distributor else None
            refitted = {fit["model"] for fit in report.fits}
            report.graph = [r for spec in self.models
                            if (r := update_graph(self.engine, self.collection, spec, self.method,
                                                  rebuild=spec.name in refitted, progress=graph_progress,
                                                  placement=placement))]
        return report

    def _described(self, reader: Reader, todo, report: IngestReport) -> Iterator[tuple[list, Vectors]]:
        """Batches of decoded files (or failures) with their descriptor rows, from wherever the
        distributor places the work."""
        if self.distributor is not None:
            yield from self.distributor.describe(todo, self.models, self.method, self.pretrained, report)
            return
        for batch in reader.batches(todo):
            images = [d for d in batch if isinstance(d, Decoded)]
            yield batch, (self.embed(self.models, images, report) if images else {})

    def _write_described(self, described: Iterator[tuple[list, Vectors]], todo, labels, report: IngestReport,
                         on_failure, progress) -> None:
        """Write batch after batch on a thread of its own while the next one is described (one
        batch in flight): the database's share of the time hides behind inference."""
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
            for batch, vectors in described:
                finished(pending)
                pending = writing.submit(write, batch, [d for d in batch if isinstance(d, Decoded)], vectors)
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

    def _fit_where_due(self) -> list[dict]:
        """Fit the whitening a whitening method searches with where it is due (its ``+w`` and
        ``+dba`` rows are rewritten with it); each fit with its reason."""
        if not uses_whitening(self.method):
            return []
        fits = []
        for spec in self.models:
            reason = fit_due(self.engine, self.collection, spec, self.method.raw)
            if reason:
                fits.append({**whiten_collection(self.engine, self.collection, spec, self.method.raw),
                             "reason": reason})
        return fits

    def _augment_new(self) -> None:
        """Keep augmented (``+dba``) rows complete where the collection has them."""
        for spec in self.models:
            for source in (self.method.raw, whitened_name(self.method.raw)):
                with_retry(lambda: augment_missing(self.engine, self.collection.id, spec, source))
