"""The writer: each batch is one transaction (image rows, vectors by binary COPY, whitened rows
where the collection has a fit, local features, cleared failures), retried whole on a dropped
connection or a deadlock. A first load of a (model, method) drops its HNSW index and builds it
after the bulk COPY."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sqlalchemy import Engine

from app.describe.methods import Method, whitened_name
from app.describe.registry import ModelSpec
from app.describe.vectors import apply_whitening
from app.files.images import path_text
from app.files.labels import LabelRow, label_for
from app.ingestion.reader import Decoded, Work
from app.ingestion.report import Failure, IngestReport
from app.store import embeddings
from app.store.images import clear_failures, image_ids_by_sha, insert_images, record_failure
from app.store.local import write_local
from app.store.retry import with_retry

Whitening = tuple[np.ndarray, np.ndarray]  # mean, projection


class Writer:
    def __init__(self, engine: Engine, models: list[ModelSpec], method: Method):
        self.engine, self.models, self.method = engine, models, method

    def write(self, images: list[Decoded], vectors: dict[str, tuple[list[Decoded], list[np.ndarray]]],
              labels: dict[str, LabelRow] | None, whitenings: dict[str, Whitening], report: IngestReport) -> None:
        """One atomic batch, retried whole; ``whitenings`` (model name -> fit) adds ``+w`` rows."""
        if not images:
            return
        rows = []
        for d in images:
            row = label_for(labels, d.relative) if labels else None
            rows.append({"sha256": d.sha, "path": path_text(d.path), "width": d.width, "height": d.height,
                         "label": row.label if row else None})

        def transaction() -> IngestReport:
            counts = IngestReport()
            with self.engine.begin() as conn:
                before = image_ids_by_sha(conn, [r["sha256"] for r in rows])
                ids = insert_images(conn, rows)
                counts.new_images = len(ids) - len(before)
                for spec in self.models:
                    if spec.name in vectors:
                        self._write_vectors(conn, spec, ids, *vectors[spec.name], whitenings.get(spec.name), counts)
                if self.method.local:
                    local = [(ids[d.sha], d.local) for d in images if d.local is not None]
                    counts.local_features = write_local(conn, self.method.local.name, local)
                clear_failures(conn, [path_text(d.path) for d in images])
            return counts

        report.add(with_retry(transaction))

    def _write_vectors(self, conn, spec: ModelSpec, ids: dict[str, int], batch: list[Decoded],
                       described: list[np.ndarray], whitening: Whitening | None, counts: IngestReport) -> None:
        rows = [(ids[d.sha], region, v) for d, matrix in zip(batch, described) for region, v in enumerate(matrix)]
        n = embeddings.write_embeddings(conn, spec, self.method.raw, rows)
        counts.embedded[spec.name] = counts.embedded.get(spec.name, 0) + n
        if whitening is not None:
            whitened = apply_whitening(np.stack([v for _, _, v in rows]), *whitening)
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
                    record_failure(conn, path_text(f.path), f.reason)

        with_retry(transaction)
        if on_failure:
            for f in failures:
                on_failure(f)

    def drop_indexes_for_first_load(self, todo: list[Work]) -> list[ModelSpec]:
        """Drop the HNSW index of each model about to get its first rows of this method (built
        again by ``build_indexes``); make sure the others have theirs (e.g. after a killed first load)."""
        dropped = []
        for spec in self.models:
            with self.engine.begin() as conn:
                first = embeddings.count_embeddings(conn, spec, self.method.raw) == 0
                if first and any(spec in w.models for w in todo):
                    embeddings.drop_index(conn, spec, self.method.raw)
                    dropped.append(spec)
                else:
                    embeddings.ensure_index(conn, spec, self.method.raw)
        return dropped

    def build_indexes(self, specs: list[ModelSpec]) -> None:
        for spec in specs:
            with self.engine.begin() as conn:
                embeddings.ensure_index(conn, spec, self.method.raw)
