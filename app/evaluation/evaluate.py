"""Evaluate retrieval on a labelled folder whose images are stored: every query image is
searched in the database. Ingesting the folder is the caller's job (``app.api.evaluate``).

The labels CSV (``filename,group[,role]``) defines the protocol: ``role`` ``query``,
``database`` or ``both`` (default). Relevant = same group; the query itself is excluded.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, Engine

from app.config import get_settings
from app.describe.methods import Method
from app.describe.registry import ModelSpec
from app.evaluation.metrics import Summary, summarize
from app.files.images import ImageError, find_images, read_bytes, sha256
from app.files.labels import LabelRow, read_labels, resolve_files
from app.retrieval.hits import Hit
from app.retrieval.query import effective_method, stored_query
from app.retrieval.search import rank
from app.store.embeddings import embedded_ids
from app.store.images import image_ids_by_sha
from app.store.local import local_ids

# (connection, query image id, database image ids, n) -> the query's ranked hits
Ranker = Callable[[Connection, int, list[int], int], list[Hit]]


class EvaluationError(ValueError):
    """Nothing to evaluate; ``missing_step`` names the index step (``whiten``, ``dba``) whose rows are absent."""

    def __init__(self, message: str, missing_step: str | None = None):
        super().__init__(message)
        self.missing_step = missing_step


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
    ingest: object | None = None  # the IngestReport of the run that stored the folder, when there was one
    search_seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"model": self.model, "method": self.method, "resolved": self.resolved, **self.summary.as_dict(),
                "n_database": self.n_database, "missing": self.missing,
                "search_ms_per_query": 1000 * self.search_seconds / max(1, len(self.queries))}

    def perfect_queries(self) -> int:
        """Queries whose first R results (R = their relevant count) are all relevant."""
        return sum(1 for q, hits in self.rankings.items()
                   if all(h.image_id in self.relevant[q] for h in hits[:len(self.relevant[q])]))


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
        ids = image_ids_by_sha(conn, list(set(shas.values())))
    return {name: ids[sha] for name, sha in shas.items() if sha in ids}


def stored_ranker(spec: ModelSpec, method: Method) -> Ranker:
    """Rank with the stored image as the query, among the database images (the default)."""
    def ranker(conn: Connection, query_id: int, database: list[int], n: int) -> list[Hit]:
        return rank(conn, spec, method, stored_query(conn, query_id, spec, method), n, among=database)

    return ranker


def evaluate(engine: Engine, folder: Path, labels_csv: Path, spec: ModelSpec, method: Method,
             k: int = 10, ranker: Ranker | None = None) -> Evaluation:
    """Metrics of ``ranker`` (default: ``stored_ranker`` of the method as the collection resolves it)."""
    folder = Path(folder)
    rows = read_labels(labels_csv)
    with engine.connect() as conn:
        method = effective_method(conn, spec, method)
    ids = image_ids(engine, folder, rows, get_settings().max_file_bytes)
    missing = sorted(set(rows) - set(ids))
    with engine.connect() as conn:
        embedded = embedded_ids(conn, spec, method.stored, ids.values())
        if method.local:
            embedded &= local_ids(conn, method.local.name, ids.values())
    ids = {name: i for name, i in ids.items() if i in embedded}
    group = {ids[n]: rows[n].label for n in ids}
    database = sorted({ids[n] for n in ids if rows[n].role in ("database", "both")})
    queries = sorted({ids[n] for n in ids if rows[n].role in ("query", "both")})
    if not queries or not database:
        step = "dba" if method.dba else "whiten" if method.whiten else None
        raise EvaluationError(f"{labels_csv}: no stored query or database images for {spec.name}/{method.name}",
                              step)
    per_group = Counter(group[d] for d in database)
    in_database = set(database)
    if not any(per_group[group[q]] > (q in in_database) for q in queries):
        raise EvaluationError(f"{labels_csv}: no stored query has another image of its group among the stored "
                              f"database images, so there is nothing to measure")
    ranker = ranker or stored_ranker(spec, method)
    rankings, relevant, lists = {}, {}, []
    started = time.perf_counter()
    with engine.begin() as conn:
        for q in queries:
            hits = [h for h in ranker(conn, q, database, len(database) + 1) if h.image_id != q]
            rel = {d for d in database if d != q and group[d] == group[q]}
            rankings[q], relevant[q] = hits, rel
            lists.append(([h.image_id in rel for h in hits], len(rel)))
    elapsed = time.perf_counter() - started
    return Evaluation(spec.name, method.name, method.canonical, summarize(lists, k), queries, rankings, relevant,
                      {i: n for n, i in ids.items()}, len(database), missing, None, elapsed)
