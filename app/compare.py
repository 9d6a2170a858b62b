"""Compare models on one labelled folder: metrics per model, the ranked list for one query, reports."""
from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Engine

from app.evaluate import evaluate
from app.images import load_image
from app.ingest import Ingestor
from app.methods import Method
from app.registry import ModelSpec
from app.report import Comparison, ModelResult
from app.search import effective_method, rank, stored_query
from app.weights import WeightsUnavailable


def embed_ms_per_image(ingestor: Ingestor, spec: ModelSpec, method: Method, paths: list[Path], n: int = 8) -> float:
    """Inference time per image on a batch of ``n`` decoded images (after one warm-up call)."""
    prepared = [method.prepare(load_image(p, min_side=method.min_side(spec), longest=method.longest_side()), spec)
                for p in paths[:n]]
    embedder = ingestor.embedder(spec)
    embedder.describe(prepared)  # warm-up
    started = time.perf_counter()
    embedder.describe(prepared)
    return 1000 * (time.perf_counter() - started) / len(prepared)


def compare(engine: Engine, folder: Path, labels_csv: Path, specs: list[ModelSpec], methods: list[Method],
            query: str | None = None, k: int = 10, top: int = 20, on_model=None) -> Comparison:
    """Every (model, method) pair on one labelled folder; weights that cannot load are skipped."""
    from app.labels import read_labels

    rows = read_labels(labels_csv)
    query_name = query or next(n for n, r in rows.items() if r.role in ("query", "both"))
    if query_name not in rows:
        raise ValueError(f"{query_name} is not in {labels_csv}")
    results, skipped, query_id = [], {}, None
    for spec, method in [(s, m) for s in specs for m in methods]:
        ingestor = Ingestor(engine, [spec], method)
        try:
            evaluation = evaluate(engine, folder, labels_csv, spec, method, k=k, ingestor=ingestor)
            sample = [Path(h.path) for h in next(iter(evaluation.rankings.values()))[:8]]
            embed_ms = embed_ms_per_image(ingestor, spec, method, sample)
        except WeightsUnavailable as exc:
            skipped[f"{spec.name} / {method.name}"] = str(exc)
            continue
        query_id = next(i for i, n in evaluation.names.items() if n == query_name)
        with engine.begin() as conn:
            database = sorted({h.image_id for hits in evaluation.rankings.values() for h in hits} | {query_id})
            resolved = effective_method(conn, spec, method)
            hits = rank(conn, spec, resolved, stored_query(conn, query_id, spec, resolved), top + 1, among=database)
        query_path = next((h.path for h in hits if h.image_id == query_id), query_name)
        result = ModelResult(evaluation, hits, embed_ms)
        results.append(result)
        if on_model:
            on_model(result)
    return Comparison(str(folder), query_id or -1, query_name, query_path if results else query_name,
                      results, skipped)
