"""The Python API: what scripts and the CLI call. Each function takes names (model, method),
migrates the database when it writes, and returns plain results.

    import app
    app.ingest("photos/")                       # embed, keep the collection's rows complete
    for hit in app.similar("photos/a.jpg"):     # rank stored images against a file or an id
        print(hit.distance, hit.path)
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from app.collection import upkeep
from app.collection.dba import augment_collection
from app.collection.graph import require_verifying, update_graph
from app.collection.whitening import whiten_collection
from app.config import get_settings
from app.describe.embedder import Embedder
from app.describe.methods import DEFAULT_METHOD, Method, get_method
from app.describe.registry import ModelSpec, get_model, resolve_models
from app.evaluation import compare as comparing
from app.evaluation import evaluate as evaluating
from app.evaluation.compare import Comparison, ModelResult
from app.evaluation.evaluate import Evaluation
from app.files.labels import read_labels
from app.ingestion.report import Failure, IngestReport
from app.ingestion.runner import Ingestor, Progress
from app.retrieval import duplicates as dup
from app.retrieval import search
from app.retrieval.hits import Hit
from app.store import migrate
from app.store.db import get_engine
from app.store.images import list_failures


def _model(name: str | None) -> ModelSpec:
    return get_model(name or get_settings().default_model)


def _ready(engine: Engine | None) -> Engine:
    """The engine to use, its database migrated to head (checked once per process), so that no
    command meets a database without its tables."""
    engine = engine or get_engine()
    migrate.ensure_head(engine.url.render_as_string(hide_password=False))
    return engine


def similar(query, model: str | None = None, k: int = 10, method: str = DEFAULT_METHOD,
            engine: Engine | None = None, embedder: Embedder | None = None,
            max_distance: float | None = None) -> list[Hit]:
    """The ``k`` stored images nearest to ``query`` (an image id or a file path), within
    ``max_distance`` when given."""
    return search.similar(query, _model(model).name, k, method, _ready(engine), embedder, max_distance)


def ingest(folder: Path | str, models: str | list[str] | None = None, method: str | Method = DEFAULT_METHOD,
           labels: Path | str | None = None, graph: bool = True, engine: Engine | None = None,
           on_failure: Callable[[Failure], None] | None = None, progress: Progress | None = None,
           graph_progress: Progress | None = None) -> IngestReport:
    """Embed every image under ``folder`` not stored yet, and keep the collection's rows complete."""
    specs = resolve_models(models) if models else [_model(None)]
    meth = method if isinstance(method, Method) else get_method(method)
    rows = read_labels(Path(labels)) if labels else None
    ingestor = Ingestor(_ready(engine), specs, meth, graph=graph)
    return ingestor.run(Path(folder), rows, on_failure, progress, graph_progress)


def evaluate(folder: Path | str, labels: Path | str, model: str | None = None, method: str | Method = DEFAULT_METHOD,
             k: int = 10, engine: Engine | None = None, ingest: bool = True) -> Evaluation:
    """Ingest ``folder`` (unless ``ingest=False``), then search with every labelled query."""
    spec = _model(model)
    meth = method if isinstance(method, Method) else get_method(method)
    engine = _ready(engine)
    report = None
    if ingest:
        report = Ingestor(engine, [spec], meth, graph=True).run(Path(folder), read_labels(Path(labels)))
    result = evaluating.evaluate(engine, Path(folder), Path(labels), spec, meth, k)
    result.ingest = report
    return result


def compare(folder: Path | str, labels: Path | str, models: str | list[str] = "all",
            methods: list[str | Method] | None = None, query: str | None = None, k: int = 10, top: int = 20,
            engine: Engine | None = None, on_model: Callable[[ModelResult], None] | None = None,
            embedders: dict[str, Embedder] | None = None) -> Comparison:
    """Every (model, method) pair on one labelled folder, each ingested first (see ``evaluation.compare``)."""
    engine = _ready(engine)
    meths = [m if isinstance(m, Method) else get_method(m) for m in (methods or [DEFAULT_METHOD])]
    rows = read_labels(Path(labels))

    def prepare(spec: ModelSpec, meth: Method) -> Embedder:
        ingestor = Ingestor(engine, [spec], meth, embedders=embedders, graph=True)
        ingestor.run(Path(folder), rows)
        return ingestor.embedder(spec)

    return comparing.compare(engine, Path(folder), Path(labels), resolve_models(models), meths, prepare,
                             query, k, top, on_model)


def duplicates(model: str | None = None, method: str = DEFAULT_METHOD, threshold: float = 0.1,
               engine: Engine | None = None) -> list[list[dict]]:
    """Groups of near-duplicate stored images (``{id, path, label}`` each), largest first."""
    return dup.find_duplicates(_ready(engine), _model(model), get_method(method), threshold)


def whiten(model: str | None = None, descriptor: str = "gem", engine: Engine | None = None) -> dict:
    """Fit PCA-whitening on the stored ``descriptor`` vectors and (re)write the ``+w`` rows."""
    return whiten_collection(_ready(engine), _model(model), get_method(descriptor).raw)


def augment(model: str | None = None, method: str = "gem+w+dba", engine: Engine | None = None) -> dict:
    """Database-side augmentation: (re)write the ``+dba`` rows of ``method``."""
    return augment_collection(_ready(engine), _model(model), get_method(method))


def build_graph(model: str | None = None, method: str = DEFAULT_METHOD, rebuild: bool = False,
                progress: Progress | None = None, engine: Engine | None = None) -> dict:
    """Match-graph rows of the images without one (all with ``rebuild``), for a verifying method."""
    meth = get_method(method)
    require_verifying(meth)
    return update_graph(_ready(engine), _model(model), meth, rebuild, progress)


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


def failures(engine: Engine | None = None) -> list[dict]:
    """The files that could not be ingested: path, reason, failed_at (oldest first)."""
    with _ready(engine).connect() as conn:
        return list_failures(conn)
