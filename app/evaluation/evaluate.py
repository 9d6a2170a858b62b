"""Evaluate retrieval on a labelled folder whose files are stored in a collection: every
labelled query file is searched among the database files. Ingesting the folder is the caller's
job (``app.api.evaluate``).

The labels CSV (``filename,group[,role]``) defines the protocol: ``role`` ``query``,
``database`` or ``both`` (default). Relevant = another file of the same group (a copy of the
query's content in another file counts); the query file itself is excluded. Files with one
content but different groups are reported (``conflicts``): a defect of the labels.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import Connection, Engine

from app.describe.methods import Method
from app.describe.registry import ModelSpec
from app.evaluation.metrics import Summary, summarize
from app.files.images import find_images
from app.files.labels import LabelRow, read_labels, resolve_files
from app.files.paths import path_text
from app.retrieval.hits import Hit
from app.retrieval.query import effective_method, stored_query
from app.retrieval.search import rank
from app.store.embeddings import embedded_ids
from app.store.collections import Collection
from app.store.files import files_of, labelled_paths
from app.store.scope import Scope
from app.store.local import local_ids

# (connection, query image id, database image ids, n) -> the query's ranked hits
Ranker = Callable[[Connection, int, list[int], int], list[Hit]]


def evaluation_collection(folder: Path | str, collection: str | None) -> str:
    """Benchmark sets go to a collection of their own: the given name, else the folder's name
    with its parent's (``holidays805/images``: datasets often keep their photos in ``images/``)."""
    resolved = Path(folder).resolve()
    return collection or "/".join(p for p in (resolved.parent.name, resolved.name) if p)


class EvaluationError(ValueError):
    """Nothing to evaluate; ``missing_step`` names the index step (``whiten``, ``dba``) whose rows are absent."""

    def __init__(self, message: str, missing_step: str | None = None):
        super().__init__(message)
        self.missing_step = missing_step


@dataclass(frozen=True)
class LabelledFile:
    name: str  # as the labels CSV names it
    path: str  # stored text
    image_id: int
    group: str
    role: str


@dataclass
class Evaluation:
    """Metrics over labelled files: every stored labelled file is a query; the ranking of
    images is read as a ranking of their files (copies of the query's content first)."""
    model: str
    method: str
    resolved: str  # the method's steps as run (``verified`` -> gem+sift or gem+w+sift)
    collection: str
    summary: Summary
    queries: list[str]  # query file names
    rankings: dict[str, list[Hit]]  # query name -> ranked database files (``path`` = the file; query excluded)
    relevant: dict[str, set[str]]  # query name -> paths of its relevant database files
    files: dict[str, LabelledFile]  # name -> file
    n_database: int  # database files
    missing: list[str] = field(default_factory=list)  # labelled files not stored (failed or absent)
    conflicts: list[list[str]] = field(default_factory=list)  # names of files with one content, several groups
    ingest: object | None = None  # the IngestReport of the run that stored the folder, when there was one
    search_seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"model": self.model, "method": self.method, "resolved": self.resolved, "collection": self.collection,
                **self.summary.as_dict(), "n_database": self.n_database, "missing": self.missing,
                "conflicts": self.conflicts, "search_ms_per_query": 1000 * self.search_seconds / max(1, len(self.queries))}

    def perfect_queries(self) -> int:
        """Queries whose first R results (R = their relevant count) are all relevant."""
        return sum(1 for q, hits in self.rankings.items()
                   if all(h.path in self.relevant[q] for h in hits[:len(self.relevant[q])]))

    def relevant_images(self, name: str) -> set[int]:
        """Images holding a file relevant to the query file ``name``."""
        by_path = {f.path: f.image_id for f in self.files.values()}
        return {by_path[p] for p in self.relevant.get(name, ())}


def labelled_files(engine: Engine, collection: int, folder: Path, rows: dict[str, LabelRow]) -> dict[str, LabelledFile]:
    """Labelled file name -> its stored file (files never stored are left out)."""
    folder = folder.resolve()
    paths = {name: path_text(p) for name, p in
             resolve_files(folder, rows, [c.path for c in find_images(folder) if not c.error]).items()}
    with engine.connect() as conn:
        stored = files_of(conn, collection, list(paths.values()))
    return {name: LabelledFile(name, text, stored[text][0], rows[name].label, rows[name].role)
            for name, text in paths.items() if text in stored}


def content_conflicts(files: dict[str, LabelledFile]) -> list[list[str]]:
    """Names of files that hold the same content but are labelled with different groups."""
    by_image: dict[int, list[LabelledFile]] = {}
    for f in files.values():
        by_image.setdefault(f.image_id, []).append(f)
    return sorted(sorted(f.name for f in same) for same in by_image.values() if len({f.group for f in same}) > 1)


def stored_ranker(spec: ModelSpec, method: Method, scope: Scope) -> Ranker:
    """Rank with the stored image as the query, among the database images (the default)."""
    def ranker(conn: Connection, query_id: int, database: list[int], n: int) -> list[Hit]:
        return rank(conn, spec, method, stored_query(conn, query_id, spec, method), n, scope.narrowed(database))

    return ranker


def as_files(hits: list[Hit], database: dict[int, list[LabelledFile]], query: LabelledFile) -> list[Hit]:
    """Ranked images -> ranked database files (each image's files in path order), the query file left out."""
    return [replace(h, path=f.path, paths=(f.path,), label=f.group)
            for h in hits for f in database.get(h.image_id, []) if f.name != query.name]


def stored_labelled_files(engine: Engine, collection: int) -> dict[str, LabelledFile]:
    """The collection's labelled files as the database holds them (each a query and a database file)."""
    with engine.connect() as conn:
        rows = labelled_paths(conn, collection)
    return {path: LabelledFile(path, path, image_id, label, "both") for path, image_id, label in rows}


def evaluate(engine: Engine, collection: Collection, folder: Path, labels_csv: Path, spec: ModelSpec,
             method: Method, k: int = 10, ranker: Ranker | None = None) -> Evaluation:
    """Metrics of ``ranker`` (default: ``stored_ranker`` of the method as the collection resolves it)."""
    rows = read_labels(labels_csv)
    files = labelled_files(engine, collection.id, Path(folder), rows)
    return evaluate_files(engine, collection, files, sorted(set(rows) - set(files)), spec, method, k, ranker,
                          str(labels_csv))


def evaluate_stored(engine: Engine, collection: Collection, spec: ModelSpec, method: Method,
                    k: int = 10) -> Evaluation:
    """Metrics over the labels stored with the collection's files (every labelled file a query)."""
    return evaluate_files(engine, collection, stored_labelled_files(engine, collection.id), [], spec, method, k,
                          source=f"the labels stored in {collection.name}")


def evaluate_files(engine: Engine, collection: Collection, files: dict[str, LabelledFile], missing: list[str],
                   spec: ModelSpec, method: Method, k: int = 10, ranker: Ranker | None = None,
                   source: str = "the labels") -> Evaluation:
    """Metrics of ``ranker`` over labelled stored ``files`` (``missing``: labelled names not stored)."""
    with engine.connect() as conn:
        method = effective_method(conn, collection.id, spec, method)
    ids = {f.image_id for f in files.values()}
    with engine.connect() as conn:
        embedded = embedded_ids(conn, spec, method.stored, ids)
        if method.local:
            embedded &= local_ids(conn, method.local.name, ids)
    files = {n: f for n, f in files.items() if f.image_id in embedded}
    database: dict[int, list[LabelledFile]] = {}
    for f in sorted(files.values(), key=lambda f: f.path):
        if f.role in ("database", "both"):
            database.setdefault(f.image_id, []).append(f)
    queries = sorted(n for n, f in files.items() if f.role in ("query", "both"))
    if not queries or not database:
        step = "dba" if method.dba else "whiten" if method.whiten else None
        raise EvaluationError(f"{source}: no stored query or database images for {spec.name}/{method.name}",
                              step)
    per_group = Counter(f.group for same in database.values() for f in same)
    if not any(per_group[files[q].group] > (files[q].role == "both") for q in queries):
        raise EvaluationError(f"{source}: no stored query has another image of its group among the stored "
                              f"database images, so there is nothing to measure")
    ranker = ranker or stored_ranker(spec, method, Scope(collection.id))
    by_group: dict[str, set[LabelledFile]] = {}
    for same in database.values():
        for f in same:
            by_group.setdefault(f.group, set()).add(f)
    rankings, relevant, lists, ranked = {}, {}, [], {}
    started = time.perf_counter()
    with engine.begin() as conn:
        for name in queries:
            q = files[name]
            if q.image_id not in ranked:  # copies of one content share their ranking
                ranked[q.image_id] = ranker(conn, q.image_id, sorted(database), len(database) + 1)
            hits = as_files(ranked[q.image_id], database, q)
            rel = {f.path for f in by_group.get(q.group, ()) if f.name != name}
            rankings[name], relevant[name] = hits, rel
            lists.append(([h.path in rel for h in hits], len(rel)))
    elapsed = time.perf_counter() - started
    n_database = sum(len(same) for same in database.values())
    return Evaluation(spec.name, method.name, method.canonical, collection.name, summarize(lists, k), queries,
                      rankings, relevant, files, n_database, missing, content_conflicts(files), None, elapsed)
