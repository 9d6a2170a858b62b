"""The Python API: what scripts and the CLI call. Each function takes names (model, method),
migrates the database when it writes, and returns plain results.

    import app
    app.ingest("photos/", sync=True)            # record files, embed new content, forget deleted files
    for hit in app.similar("photos/a.jpg"):     # rank stored images against a file or an id
        print(hit.distance, hit.paths)
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from app.collection import upkeep
from app.collection.dba import augment_collection
from app.collection import groups as grouping
from app.collection.graph import require_verifying, update_graph
from app.collection.whitening import whiten_collection
from app.config import get_settings
from app.describe.embedder import Embedder
from app.describe.methods import DEFAULT_METHOD, Method, get_method
from app.describe.registry import ModelSpec, get_model, resolve_models
from app.evaluation import compare as comparing
from app.evaluation import evaluate as evaluating
from app.evaluation.compare import Comparison, ModelResult
from app.evaluation.evaluate import Evaluation, evaluation_collection
from app.evaluation.grouping import GroupScores, evaluate_groups
from app.files.labels import read_labels
from app.files.paths import path_text
from app.ingestion import engines
from app.ingestion.report import Failure, IngestReport
from app.ingestion.runner import Ingestor, Progress
from app.retrieval import duplicates as dup
from app.retrieval import search as search_module
from app.retrieval.hits import Hit
from app.store import embeddings, migrate
from app.store.db import get_engine
from app.store.collections import DEFAULT_COLLECTION, Collection, collection_rows, ensure_collection, get_collection
from app.store.collections import drop_collection as drop_store_collection
from app.store.files import remove_files
from app.store.images import list_failures


distributor = engines.distributor  # where an ingest runs: app.api.distributor("ray")


def _model(name: str | None) -> ModelSpec:
    return get_model(name or get_settings().default_model)


def _ready(engine: Engine | None) -> Engine:
    """The engine to use, its database migrated to head (checked once per process), so that no
    command meets a database without its tables."""
    engine = engine or get_engine()
    migrate.ensure_head(engine.url.render_as_string(hide_password=False))
    return engine


def _collection(engine: Engine, name: str, create: bool = False) -> Collection:
    """The named collection (created when ``create``; otherwise an unknown name is an error)."""
    with engine.begin() as conn:
        return ensure_collection(conn, name) if create else get_collection(conn, name)


def _under(folder: Path | str | None) -> str | None:
    return None if folder is None else path_text(Path(folder).resolve())


def search(query, model: str | None = None, k: int = 10, method: str = DEFAULT_METHOD,
           collection: str = DEFAULT_COLLECTION, label: str | None = None, under: Path | str | None = None,
           max_distance: float | None = None, engine: Engine | None = None, embedder: Embedder | None = None,
           min_confidence: float | None = None) -> search_module.Answer:
    """The ``k`` images of ``collection`` nearest to ``query`` (an image id or a file path), with
    the model, method and collection the search used. Only images with a file labelled ``label``,
    below the folder ``under``, within ``max_distance``, or verified at ``min_confidence`` when given."""
    return search_module.similar(query, _model(model).name, k, method, _ready(engine), embedder, max_distance,
                                 collection, label, _under(under), min_confidence)


def similar(query, model: str | None = None, k: int = 10, method: str = DEFAULT_METHOD,
            engine: Engine | None = None, embedder: Embedder | None = None,
            max_distance: float | None = None, collection: str = DEFAULT_COLLECTION,
            label: str | None = None, under: Path | str | None = None) -> list[Hit]:
    """The hits of ``search``."""
    return search(query, model, k, method, collection, label, under, max_distance, engine, embedder).hits


def ingest(folder: Path | str, models: str | list[str] | None = None, method: str | Method = DEFAULT_METHOD,
           labels: Path | str | None = None, graph: bool = True, engine: Engine | None = None,
           on_failure: Callable[[Failure], None] | None = None, progress: Progress | None = None,
           graph_progress: Progress | None = None, collection: str = DEFAULT_COLLECTION, sync: bool = False,
           rehash: bool = False, distributor=None, within: tuple[Path, ...] | None = None) -> IngestReport:
    """Record every image file under ``folder`` in ``collection`` (created if new), embed the
    contents not stored yet, and keep the collection's rows complete. ``sync`` also removes the
    collection's files below ``folder`` that are gone; ``rehash`` reads files whose size and
    modification time did not change; ``distributor`` (``api.distributor("ray")``) runs the
    describing and match-graph work on a Ray cluster; ``within``: only files that lie under
    these folders once their links are resolved are read."""
    specs = resolve_models(models) if models else [_model(None)]
    meth = method if isinstance(method, Method) else get_method(method)
    rows = read_labels(Path(labels)) if labels else None
    engine = _ready(engine)
    ingestor = Ingestor(engine, _collection(engine, collection, create=True), specs, meth, graph=graph, rehash=rehash,
                        distributor=distributor, within=within)
    return ingestor.run(Path(folder), rows, on_failure, progress, graph_progress, sync=sync)


def remove(paths: list[Path | str], collection: str = DEFAULT_COLLECTION, engine: Engine | None = None) -> dict:
    """Forget files (a folder: every file below it) in ``collection``; images no file holds any
    more are deleted with their vectors, local features and graph rows. Returns the removed
    paths, the images deleted and the arguments that matched nothing."""
    engine = _ready(engine)
    found = _collection(engine, collection)
    removed, images, unmatched = [], 0, []
    with engine.begin() as conn:
        for given in paths:
            texts = {path_text(os.path.abspath(given)), path_text(Path(given).resolve())}
            gone, pruned = remove_files(conn, found.id, paths=sorted(texts), under=sorted(texts))
            removed += gone
            images += pruned
            if not gone:
                unmatched.append(str(given))
    return {"collection": found.name, "removed": removed, "removed_images": images, "unmatched": unmatched}


def collections(engine: Engine | None = None) -> list[dict]:
    """Every collection: name, files, images, failures, created_at."""
    with _ready(engine).connect() as conn:
        return [{k: v for k, v in row.items() if k != "id"} for row in collection_rows(conn)]


def drop_collection(name: str, engine: Engine | None = None) -> dict:
    """Delete a collection and everything stored for it (not ``default``)."""
    with _ready(engine).begin() as conn:
        return drop_store_collection(conn, name)


def evaluate(folder: Path | str, labels: Path | str, model: str | None = None, method: str | Method = DEFAULT_METHOD,
             k: int = 10, engine: Engine | None = None, ingest: bool = True,
             collection: str | None = None) -> Evaluation:
    """Ingest ``folder`` (unless ``ingest=False``) into its collection (named after the folder
    unless given), then search with every labelled query file."""
    spec = _model(model)
    meth = method if isinstance(method, Method) else get_method(method)
    engine = _ready(engine)
    found = _collection(engine, evaluation_collection(folder, collection), create=ingest)
    report = None
    if ingest:
        report = Ingestor(engine, found, [spec], meth, graph=True).run(Path(folder), read_labels(Path(labels)))
    result = evaluating.evaluate(engine, found, Path(folder), Path(labels), spec, meth, k)
    result.ingest = report
    return result


def evaluate_collection(collection: str = DEFAULT_COLLECTION, model: str | None = None,
                        method: str | Method = DEFAULT_METHOD, k: int = 10, engine: Engine | None = None) -> Evaluation:
    """Every labelled file of ``collection`` (labels stored at ingest) as a query among the others."""
    engine = _ready(engine)
    meth = method if isinstance(method, Method) else get_method(method)
    return evaluating.evaluate_stored(engine, _collection(engine, collection), _model(model), meth, k)


def compare(folder: Path | str, labels: Path | str, models: str | list[str] = "all",
            methods: list[str | Method] | None = None, query: str | None = None, k: int = 10, top: int = 20,
            engine: Engine | None = None, on_model: Callable[[ModelResult], None] | None = None,
            embedders: dict[str, Embedder] | None = None, collection: str | None = None) -> Comparison:
    """Every (model, method) pair on one labelled folder, each ingested first into the folder's
    collection (see ``evaluation.compare``)."""
    engine = _ready(engine)
    meths = [m if isinstance(m, Method) else get_method(m) for m in (methods or [DEFAULT_METHOD])]
    rows = read_labels(Path(labels))
    found = _collection(engine, evaluation_collection(folder, collection), create=True)

    def prepare(spec: ModelSpec, meth: Method) -> Embedder:
        ingestor = Ingestor(engine, found, [spec], meth, embedders=embedders, graph=True)
        ingestor.run(Path(folder), rows)
        return ingestor.embedder(spec)

    return comparing.compare(engine, found, Path(folder), Path(labels), resolve_models(models), meths, prepare,
                             query, k, top, on_model)


def duplicates(model: str | None = None, method: str = DEFAULT_METHOD, threshold: float = 0.1,
               engine: Engine | None = None, collection: str = DEFAULT_COLLECTION,
               min_confidence: float = grouping.MIN_CONFIDENCE) -> list[list[dict]]:
    """Groups of the photos of one item of ``collection``, largest first, each photo a dict
    (``id``, ``path``, ``paths``, ``label``, ...): with a verifying method, ``groups``; with
    another, the images within cosine distance ``threshold`` of each other."""
    meth = get_method(method)
    if meth.local:
        return [[m.as_dict() for m in g.members] for g in groups(model, method, collection, min_confidence, engine)]
    engine = _ready(engine)
    return dup.find_duplicates(engine, _collection(engine, collection).id, _model(model), meth, threshold)


def groups(model: str | None = None, method: str = DEFAULT_METHOD, collection: str = DEFAULT_COLLECTION,
           min_confidence: float = grouping.MIN_CONFIDENCE, engine: Engine | None = None) -> list[grouping.Group]:
    """Groups of the photos of ``collection`` that show the same item, largest first (``app.collection.groups``)."""
    meth = get_method(method)
    require_verifying(meth)
    engine = _ready(engine)
    return grouping.find_groups(engine, _collection(engine, collection), _model(model).name, meth.local.name,
                                min_confidence)


def decide(image_id: int, others: list[int], same: bool | None, collection: str = DEFAULT_COLLECTION,
           engine: Engine | None = None) -> int:
    """Record that ``image_id`` shows the same item as each of ``others`` (``same=True``), or
    not (False), or forget what was said (None); later grouping respects it."""
    engine = _ready(engine)
    return grouping.record_decision(engine, _collection(engine, collection), image_id, others, same)


def split_group(ids: list[int], collection: str = DEFAULT_COLLECTION, engine: Engine | None = None) -> int:
    """"Not the same" for a whole group: no two of ``ids`` end in one group again."""
    engine = _ready(engine)
    return grouping.split_group(engine, _collection(engine, collection), ids)


def exact_copies(engine: Engine | None = None, collection: str = DEFAULT_COLLECTION) -> list[list[dict]]:
    """Files of ``collection`` that hold the same content: ``[{id, path, label}]`` per image."""
    engine = _ready(engine)
    return dup.find_exact_copies(engine, _collection(engine, collection).id)


def group_scores(collection: str, model: str | None = None, method: str | Method = DEFAULT_METHOD,
                 min_confidence: float = grouping.MIN_CONFIDENCE, engine: Engine | None = None) -> GroupScores:
    """The collection's same-item groups against its labels: pair precision and recall, B-cubed F1."""
    engine = _ready(engine)
    meth = method if isinstance(method, Method) else get_method(method)
    return evaluate_groups(engine, _collection(engine, collection), _model(model).name, meth, min_confidence)


def whiten(model: str | None = None, descriptor: str = "gem", engine: Engine | None = None,
           collection: str = DEFAULT_COLLECTION) -> dict:
    """Fit PCA-whitening on the collection's ``descriptor`` vectors and (re)write its ``+w`` rows."""
    engine = _ready(engine)
    return whiten_collection(engine, _collection(engine, collection), _model(model), get_method(descriptor).raw)


def augment(model: str | None = None, method: str = "gem+w+dba", engine: Engine | None = None,
            collection: str = DEFAULT_COLLECTION) -> dict:
    """Database-side augmentation: (re)write the collection's ``+dba`` rows of ``method``."""
    engine = _ready(engine)
    return augment_collection(engine, _collection(engine, collection), _model(model), get_method(method))


def set_index_kind(kind: str, model: str | None = None, method: str = "gem", engine: Engine | None = None) -> dict:
    """Keep the HNSW index of (model, method) in ``kind`` (``vector``, ``halfvec``, ``binary``),
    rebuilding it now when it exists (every collection shares it)."""
    spec, stored = _model(model), get_method(method).stored
    engine = _ready(engine)
    with engine.begin() as conn:
        rebuilt = embeddings.set_index_kind(conn, spec, stored, kind)
    return {"model": spec.name, "method": stored, "kind": kind, "rebuilt": rebuilt}


def build_graph(model: str | None = None, method: str = DEFAULT_METHOD, rebuild: bool = False,
                progress: Progress | None = None, engine: Engine | None = None,
                collection: str = DEFAULT_COLLECTION, distributor=None) -> dict:
    """Match-graph rows of the collection's images without one (all with ``rebuild``), for a
    verifying method; ``distributor`` computes them on a Ray cluster."""
    meth = get_method(method)
    require_verifying(meth)
    engine = _ready(engine)
    return update_graph(engine, _collection(engine, collection), _model(model), meth, rebuild, progress,
                        distributor.graph_rows if distributor else None)


def check(repair: bool = False, engine: Engine | None = None, progress: Progress | None = None) -> list[dict]:
    """What a stopped or concurrent job left undone (see ``app.collection.upkeep``); with
    ``repair``, fixed and marked ``repaired``. Does not migrate unless repairing."""
    engine = engine or get_engine()
    url = engine.url.render_as_string(hide_password=False)
    findings = upkeep.check(engine, url)
    if repair:
        upkeep.repair(engine, url, findings, progress)
        for _ in range(3):  # a repair can reveal more: rows owed by rows just written, after a migration
            more = [f for f in upkeep.check(engine, url) if f.repairable]
            if not more:
                break
            findings += upkeep.repair(engine, url, more, progress)
    return [f.as_dict() for f in findings]


def failures(engine: Engine | None = None, collection: str | None = None) -> list[dict]:
    """The files that could not be ingested (of one collection, or all): collection, path,
    reason, failed_at (oldest first)."""
    engine = _ready(engine)
    found = _collection(engine, collection).id if collection else None
    with engine.connect() as conn:
        return list_failures(conn, found)
