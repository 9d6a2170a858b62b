"""The runner: reader -> embed -> writer over a folder, then the collection's upkeep, in one
place, so that every stored image has the rows its collection's steps expect:

- ``+w`` rows where the model's descriptor has a whitening fit (written with each batch);
- ``+dba`` rows where the collection has been augmented (``augment_missing`` after the load);
- match-graph rows of the new images, with a verifying method and ``graph=True``.

Content hashes make it idempotent: only the (image, model) pairs and local features not stored
yet are computed. The CLI, the Python API and ``evaluate`` all ingest through ``Ingestor``.
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
from app.store.retry import with_retry

Progress = Callable[[int, int], None]  # (done, to do)


class Ingestor:
    """Ingest folders for ``models`` with ``method``; ``graph`` also computes the new images'
    match-graph rows (verifying methods only). ``embedders`` shares loaded backbones between runs."""

    def __init__(self, engine: Engine, models: list[ModelSpec], method: Method,
                 embedders: dict[str, Embedder] | None = None, pretrained: bool = True, graph: bool = False):
        self.engine, self.models, self.method, self.graph = engine, models, method, graph
        self.settings = get_settings()
        self.embed = Embed(method, embedders, pretrained)
        self.writer = Writer(engine, models, method)

    def embedder(self, spec: ModelSpec) -> Embedder:
        return self.embed.embedder(spec)

    def run(self, root: Path, labels: dict[str, LabelRow] | None = None,
            on_failure: Callable[[Failure], None] | None = None, progress: Progress | None = None,
            graph_progress: Progress | None = None) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport()
        with ThreadPoolExecutor(self.settings.decode_workers) as pool:
            reader = Reader(self.engine, self.models, self.method, self.settings, pool)
            works = reader.scan(Path(root))
            report.found = len(works)
            todo = reader.plan(works, labels, report)
            self.writer.fail(report, [Failure(w.candidate.path, w.error) for w in works if w.error], on_failure)
            if progress:
                progress(0, len(todo))
            try:
                done = 0
                for batch in reader.batches(todo):
                    images = [d for d in batch if isinstance(d, Decoded)]
                    if images:
                        vectors = self.embed(self.models, images, report)
                        self.writer.write(images, vectors, labels, todo, report)
                    self.writer.fail(report, [d for d in batch if isinstance(d, Failure)], on_failure)
                    done += len(batch)
                    if progress:
                        progress(done, len(todo))
            except BaseException:
                self.writer.build_indexes(stopped_early=True)
                raise
            self.writer.build_indexes()
        self._augment_new()
        report.seconds = time.perf_counter() - started
        if self.graph and self.method.local:
            report.graph = [r for spec in self.models
                            if (r := update_graph(self.engine, spec, self.method, progress=graph_progress))]
        return report

    def _augment_new(self) -> None:
        """Keep augmented (``+dba``) rows complete where the collection has them."""
        for spec in self.models:
            for source in (self.method.raw, whitened_name(self.method.raw)):
                with_retry(lambda: augment_missing(self.engine, spec, source))
