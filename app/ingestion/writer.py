"""The writer: each batch is one transaction (image rows, vectors by binary COPY, whitened rows
where the collection has a fit, local features, the file rows, cleared failures), retried whole
on a dropped connection or a deadlock; so a file row never exists without its image's rows.
Files whose content is stored already only get their file rows (``link``).

Locks come in one order: the batch first takes its embedding tables (``ROW EXCLUSIVE``, in table
order), so it waits for a collection job that rewrites a table and then reads the fit that job
committed; its ``+w`` rows always follow the current whitening. A bulk load of a (model,
method), one that brings at least as many new images as the table holds of that method (a
first load, or a big batch added to a big table), drops that HNSW index (and its whitened
one) just before its first batch is written and builds it after the load, in memory sized to
the table (``app.store.embeddings.size_index_build``): one build is far cheaper than as many
graph insertions. When the load stops early the index is rebuilt if the database can still be
reached, and otherwise by the next command that finds it missing (see ``app.store.health``).
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from sqlalchemy import Connection, Engine

from app.describe.embedder import split_turned
from app.describe.methods import Method, whitened_name
from app.describe.registry import ModelSpec
from app.describe.vectors import apply_whitening
from app.files.labels import LabelRow
from app.files.paths import path_text
from app.ingestion.embed import Vectors
from app.ingestion.reader import Decoded, Work
from app.ingestion.report import Failure, IngestReport
from app.store import embeddings
from app.store.collections import Collection
from app.store.files import upsert_files
from app.store.images import clear_failures, image_ids_by_sha, insert_images, record_failure
from app.store.local import write_local
from app.store.locks import lock_table_for_rewrite, lock_tables_for_write
from app.store.retry import with_retry
from app.store.turned import write_turned
from app.store.whitening import current_whitening, whitening_version

log = logging.getLogger("imgsim")


LINK_BATCH = 1000  # file rows per transaction when no content is written


class Writer:
    def __init__(self, engine: Engine, collection: Collection, models: list[ModelSpec], method: Method):
        self.engine, self.collection, self.models, self.method = engine, collection, models, method
        self.indexes_prepared = False  # a bulk load's indexes are dropped before its first write

    def write(self, images: list[Decoded], vectors: Vectors,
              labels: dict[str, LabelRow] | None, todo: list[Work], report: IngestReport) -> None:
        """One atomic batch, retried whole (``todo``: the whole load, to decide on bulk loads)."""
        if not images:
            return
        if not self.indexes_prepared:
            self._drop_indexes_for_bulk_load(todo)
            self.indexes_prepared = True
        rows = [{"sha256": d.sha, "width": d.width, "height": d.height} for d in images]
        files = [d.work.file_row(labels) for d in images]
        specs = [spec for spec in self.models if spec.name in vectors]
        collection = self.collection.id

        def transaction() -> IngestReport:
            counts = IngestReport()
            with self.engine.begin() as conn:
                lock_tables_for_write(conn, [spec.table for spec in specs])
                ids, counts.new_images = insert_images(conn, collection, rows)
                for spec in specs:
                    self._write_vectors(conn, spec, ids, *vectors[spec.name], counts)
                if self.method.local:
                    local = [(ids[d.sha], d.local) for d in images if d.local is not None]
                    counts.local_features = write_local(conn, self.method.local.name, local)
                upsert_files(conn, collection, files, ids)
                clear_failures(conn, collection, [f.path for f in files])
            return counts

        report.add(with_retry(transaction))

    def link(self, works: list[Work], labels: dict[str, LabelRow] | None, report: IngestReport,
             on_failure: Callable[[Failure], None] | None) -> None:
        """File rows for files whose content is stored (unchanged, copies, moves), in batches. A
        file whose content has no image (its first copy failed, or a concurrent sync removed it)
        is a failure, reported with the reason."""
        collection, missing = self.collection.id, []
        for start in range(0, len(works), LINK_BATCH):
            chunk = works[start:start + LINK_BATCH]

            def transaction() -> list[Work]:
                with self.engine.begin() as conn:
                    ids = image_ids_by_sha(conn, collection, [w.sha for w in chunk], lock=True)
                    upsert_files(conn, collection, [w.file_row(labels) for w in chunk], ids)
                    clear_failures(conn, collection, [w.text for w in chunk if w.sha in ids])
                return [w for w in chunk if w.sha not in ids]

            missing += with_retry(transaction)
        self.fail(report, [Failure(w.candidate.path, "same content as a file that could not be stored")
                           for w in missing], on_failure)

    def _write_vectors(self, conn: Connection, spec: ModelSpec, ids: dict[str, int], batch: list[Decoded],
                       described: list[np.ndarray], counts: IngestReport) -> None:
        """An image's descriptor rows (and their whitened rows, with the fit committed now) and
        its turned vectors where the method has them (``app.describe.embedder.split_turned``)."""
        split = [split_turned(matrix, self.method) for matrix in described]
        rows = [(ids[d.sha], region, v) for d, (matrix, _) in zip(batch, split) for region, v in enumerate(matrix)]
        n = embeddings.write_embeddings(conn, spec, self.method.raw, rows)
        counts.embedded[spec.name] = counts.embedded.get(spec.name, 0) + n
        write_turned(conn, spec.name, self.method.raw,
                     [(ids[d.sha], turned) for d, (_, turned) in zip(batch, split) if turned is not None])
        fit = current_whitening(conn, self.collection.id, spec.name, self.method.raw)
        if fit is not None:
            whitened = apply_whitening(np.stack([v for _, _, v in rows]), fit[1], fit[2])
            embeddings.write_embeddings(conn, spec, whitened_name(self.method.raw),
                                        [(i, r, w) for (i, r, _), w in zip(rows, whitened)])

    def fail(self, report: IngestReport, failures: list[Failure],
             on_failure: Callable[[Failure], None] | None) -> None:
        """Record failures (one row per path, the latest reason) and report each."""
        if not failures:
            return
        report.failed.extend(failures)

        def transaction():
            with self.engine.begin() as conn:
                for f in failures:
                    record_failure(conn, self.collection.id, path_text(f.path), f.reason)

        with_retry(transaction)
        if on_failure:
            for f in failures:
                on_failure(f)

    def _drop_indexes_for_bulk_load(self, todo: list[Work]) -> None:
        """Drop the HNSW indexes (this method's and its whitened rows') of each model about to
        get at least as many new images of this method as it holds (built again by
        ``build_indexes``)."""
        for spec in self.models:
            new = sum(spec in w.models for w in todo)
            if new:
                with_retry(lambda: self._drop_if_outgrown(spec, new))

    def _drop_if_outgrown(self, spec: ModelSpec, new: int) -> None:
        with self.engine.begin() as conn:
            # the table first: two jobs that both counted and then dropped would each wait for
            # the other's read to end (a deadlock)
            lock_table_for_rewrite(conn, spec.table)
            if new >= embeddings.count_images(conn, spec, self.method.raw):
                for method in (self.method.raw, whitened_name(self.method.raw)):
                    embeddings.drop_index(conn, spec, method)

    def build_indexes(self, stopped_early: bool = False) -> None:
        """Make sure every model's index of this method (and of its whitened rows) exists. After
        a load that stopped early, a failure here is only logged (the next ingest or
        ``imgsim db check --repair`` builds the index), so that the error that stopped the load
        is the one reported."""
        for spec in self.models:
            for method in (self.method.raw, whitened_name(self.method.raw)):
                if not stopped_early:
                    with_retry(lambda: self._ensure(spec, method))
                    continue
                try:
                    self._ensure(spec, method)
                except Exception as exc:
                    log.warning("the HNSW index of %s/%s is not built (%s); the next ingest or "
                                "`imgsim db check --repair` builds it", spec.name, method, type(exc).__name__)
                    return
        self.indexes_prepared = False

    def _ensure(self, spec: ModelSpec, method: str) -> None:
        with self.engine.begin() as conn:
            if method == self.method.raw or whitening_version(conn, self.collection.id, spec.name,
                                                                     self.method.raw) is not None:
                embeddings.ensure_index(conn, spec, method)
