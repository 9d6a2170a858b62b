"""Compare models and methods on one labelled folder: metrics per (model, method), the ranked
list of one query, and inference time per image."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from app.describe.embedder import Embedder
from app.describe.methods import Method
from app.describe.registry import ModelSpec
from app.describe.weights import WeightsUnavailable
from app.evaluation.evaluate import Evaluation, evaluate
from app.files.images import load_image
from app.files.labels import read_labels
from app.retrieval.hits import Hit
from app.retrieval.query import effective_method, stored_query
from app.retrieval.search import rank
from app.store.collections import Collection
from app.store.scope import Scope

# (model, method) -> the loaded embedder, once the folder is stored for that pair (ingest and upkeep)
Prepare = Callable[[ModelSpec, Method], Embedder]


@dataclass
class ModelResult:
    evaluation: Evaluation
    query_hits: list[Hit]  # the ranked table for the report's query (query itself first when stored)
    relevant: set[int] = field(default_factory=set)  # images relevant to the report's query
    embed_ms: float | None = None


@dataclass
class Comparison:
    dataset: str
    query_id: int
    query_name: str
    query_path: str
    results: list[ModelResult]
    skipped: dict[str, str] = field(default_factory=dict)  # model -> reason

    def ranked(self) -> list[ModelResult]:
        return sorted(self.results, key=lambda r: -r.evaluation.summary.map)


def embed_ms_per_image(embedder: Embedder, spec: ModelSpec, method: Method, paths: list[Path]) -> float:
    """Inference time per image on a batch of the given images (after one warm-up call)."""
    prepared = [method.prepare(load_image(p, min_side=method.min_side(spec), longest=method.longest_side()), spec)
                for p in paths]
    embedder.describe(prepared)  # warm-up
    started = time.perf_counter()
    embedder.describe(prepared)
    return 1000 * (time.perf_counter() - started) / len(prepared)


def compare(engine: Engine, collection: Collection, folder: Path, labels_csv: Path, specs: list[ModelSpec],
            methods: list[Method], prepare: Prepare, query: str | None = None, k: int = 10, top: int = 20,
            on_model: Callable[[ModelResult], None] | None = None) -> Comparison:
    """Every (model, method) pair on one labelled folder stored in ``collection``; pairs whose
    weights cannot load are skipped."""
    rows = read_labels(labels_csv)
    query_name = query or next(n for n, r in rows.items() if r.role in ("query", "both"))
    if query_name not in rows:
        raise ValueError(f"{query_name} is not in {labels_csv}")
    results, skipped, query_id, query_path = [], {}, None, query_name
    for spec, method in [(s, m) for s in specs for m in methods]:
        try:
            embedder = prepare(spec, method)
            evaluation = evaluate(engine, collection, folder, labels_csv, spec, method, k=k)
            sample = [Path(h.path) for h in next(iter(evaluation.rankings.values()))[:8]]
            embed_ms = embed_ms_per_image(embedder, spec, method, sample)
        except WeightsUnavailable as exc:
            skipped[f"{spec.name} / {method.name}"] = str(exc)
            continue
        if query_name not in evaluation.files:
            raise ValueError(f"{query_name} is not stored (see imgsim failures)")
        query_id = evaluation.files[query_name].image_id
        with engine.begin() as conn:
            database = sorted({h.image_id for hits in evaluation.rankings.values() for h in hits} | {query_id})
            resolved = effective_method(conn, collection.id, spec, method)
            hits = rank(conn, spec, resolved, stored_query(conn, query_id, spec, resolved), top + 1,
                        Scope.of(collection.id, database))
        query_path = evaluation.files[query_name].path
        result = ModelResult(evaluation, hits, evaluation.relevant_images(query_name) - {query_id}, embed_ms)
        results.append(result)
        if on_model:
            on_model(result)
    return Comparison(str(folder), query_id or -1, query_name, query_path, results, skipped)
