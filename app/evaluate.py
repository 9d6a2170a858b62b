"""Evaluate retrieval on a labelled folder: every query image is searched in the database.

The labels CSV (``filename,group[,role]``) defines the protocol: ``role`` ``query``,
``database`` or ``both`` (default). Relevant = same group; the query itself is excluded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from app import store
from app.graph import update_graph
from app.images import ImageError, find_images, read_bytes, sha256
from app.ingest import IngestReport, Ingestor
from app.labels import LabelRow, read_labels, resolve_files
from app.methods import Method
from app.metrics import Summary, summarize
from app.registry import ModelSpec
from app.search import Hit, effective_method, rank, stored_query


class EvaluationError(ValueError):
    pass


@dataclass
class Evaluation:
    model: str
    method: str
    resolved: str  # the method's steps as run (``verified`` -> gem+sift or gem+w+sift)
    summary: Summary
    queries: list[int]
    rankings: dict[int, list[Hit]]  # query id -> ranked database hits (query excluded)
    relevant: dict[int, set[int]]  # query id -> relevant database ids
    names: dict[int, str]  # image id -> file name in the labels CSV
    n_database: int
    missing: list[str] = field(default_factory=list)  # labelled files not stored (failed or absent)
    ingest: IngestReport | None = None
    search_seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"model": self.model, "method": self.method, "resolved": self.resolved, **self.summary.as_dict(),
                "n_database": self.n_database, "missing": self.missing,
                "search_ms_per_query": 1000 * self.search_seconds / max(1, len(self.queries))}


def image_ids(engine: Engine, folder: Path, rows: dict[str, LabelRow], max_bytes: int) -> dict[str, int]:
    """Labelled file name -> stored image id (by content hash)."""
    files = resolve_files(folder, rows, [c.path for c in find_images(folder) if not c.error])
    shas = {}
    for name, path in files.items():
        try:
            shas[name] = sha256(read_bytes(path, max_bytes))
        except ImageError:
            continue
    with engine.connect() as conn:
        ids = store.image_ids_by_sha(conn, list(set(shas.values())))
    return {name: ids[sha] for name, sha in shas.items() if sha in ids}


def evaluate(engine: Engine, folder: Path, labels_csv: Path, spec: ModelSpec, method: Method,
             k: int = 10, ingestor: Ingestor | None = None, ingest: bool = True) -> Evaluation:
    from app.config import get_settings

    folder = Path(folder)
    rows = read_labels(labels_csv)
    report = None
    if ingest:
        ingestor = ingestor or Ingestor(engine, [spec], method)
        report = ingestor.run(folder, rows)
        update_graph(engine, spec, method)  # verified neighbours of the new images
    with engine.connect() as conn:
        method = effective_method(conn, spec, method)
    ids = image_ids(engine, folder, rows, get_settings().max_file_bytes)
    missing = sorted(set(rows) - set(ids))
    with engine.connect() as conn:
        embedded = store.embedded_ids(conn, spec, method.stored, ids.values())
        if method.local:
            embedded &= store.local_ids(conn, method.local.name, ids.values())
    ids = {name: i for name, i in ids.items() if i in embedded}
    group = {ids[n]: rows[n].label for n in ids}
    database = sorted({ids[n] for n in ids if rows[n].role in ("database", "both")})
    queries = sorted({ids[n] for n in ids if rows[n].role in ("query", "both")})
    if not queries or not database:
        hint = (f" (run `imgsim index dba --model {spec.name} --method {method.augmented_from}+dba`)" if method.dba
                else f" (run `imgsim index whiten --model {spec.name} --method {method.raw}`)" if method.whiten else "")
        raise EvaluationError(f"{labels_csv}: no stored query or database images for {spec.name}/{method.name}"
                              + hint)
    rankings, relevant, lists = {}, {}, []
    started = time.perf_counter()
    with engine.begin() as conn:
        for q in queries:
            query = stored_query(conn, q, spec, method)
            hits = [h for h in rank(conn, spec, method, query, len(database) + 1, among=database)
                    if h.image_id != q]
            rel = {d for d in database if d != q and group[d] == group[q]}
            rankings[q], relevant[q] = hits, rel
            lists.append(([h.image_id in rel for h in hits], len(rel)))
    elapsed = time.perf_counter() - started
    return Evaluation(spec.name, method.name, method.canonical, summarize(lists, k), queries, rankings, relevant,
                      {i: n for n, i in ids.items()}, len(database), missing, report, elapsed)
