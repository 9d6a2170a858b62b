"""Ingest cost, local-feature storage and query latency of a method on this machine.

Uses ../shared/datasets/smvs_dvd_dev when present (its originals/ as new, unstored camera
photos), else a generated calendar set; ``--folder DIR``: the photos to store instead (e.g. a
folder of links to several sets, for a collection of 1,000).
Usage: scripts/bench_latency [--method verified] [--model M] [--folder DIR]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import cpu_name  # noqa: E402
from sqlalchemy import text  # noqa: E402

from app.collection.graph import build_graph  # noqa: E402
from app.collection.whitening import WhiteningError, whiten_collection  # noqa: E402
from app.describe.methods import get_method  # noqa: E402
from app.describe.registry import get_model  # noqa: E402
from app.ingestion.runner import Ingestor  # noqa: E402
from app.retrieval.query import effective_method  # noqa: E402
from app.retrieval.search import similar  # noqa: E402
from app.store import migrate  # noqa: E402
from app.store.collections import ensure_collection  # noqa: E402
from app.store.db import get_engine  # noqa: E402


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--method", default="verified")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--folder", type=Path, help="photos to store (default: the DVD set's images)")
    args = parser.parse_args()
    spec, method = get_model(args.model), get_method(args.method)
    migrate.upgrade()
    engine = get_engine()
    dvd = ROOT.parent / "shared" / "datasets" / "smvs_dvd_dev"
    tmp = tempfile.TemporaryDirectory()
    if dvd.is_dir():
        folder, new_photos = args.folder or dvd / "images", sorted((dvd / "originals").glob("*.jpg"))
    else:
        from app.evaluation.synth import make_calendar_set

        folder = args.folder or Path(tmp.name) / "calendar"
        if args.folder is None:
            make_calendar_set(folder, photos_per_page=40)
        new_photos = []
    with engine.begin() as conn:  # the benchmark's photos are a collection of their own
        collection = ensure_collection(conn, f"bench-{folder.parent.name}")
    ingestor = Ingestor(engine, collection, [spec], method)
    ingestor.embedder(spec)  # model load is not ingest cost
    report = ingestor.run(folder)
    done = report.found - report.skipped
    print(f"collection: {folder} ({report.found} images); machine: {cpu_name()}, {os.cpu_count()} cores")
    if done:
        print(f"ingest ({method.name}): {report.seconds / done * 1000:.0f} ms/image over {done} new images, "
              f"CNN {report.embed_seconds.get(spec.name, 0) / done * 1000:.0f} ms/image")
    else:
        print("ingest: everything was stored already (use a fresh IMGSIM_HOME to measure ingest cost)")
    if method.local:  # the collection-level index steps a user runs after ingest
        t0 = time.perf_counter()
        try:
            whiten_collection(engine, collection, spec, method.raw)
        except WhiteningError as exc:
            print(f"no whitening: {exc}")
        t1 = time.perf_counter()
        with engine.connect() as conn:
            resolved = effective_method(conn, collection.id, spec, method)
        graph = build_graph(engine, collection, spec, resolved, rebuild=True)
        t2 = time.perf_counter()
        print(f"index whiten: {t1 - t0:.1f} s; index graph ({resolved.canonical}): "
              f"{(t2 - t1) / max(1, graph['images']) * 1000:.0f} ms/image over {graph['images']} images, "
              f"{graph['edges']} edges")
    with engine.connect() as conn:
        n, keypoints, avg_bytes = conn.execute(text(
            "SELECT count(*), avg(n), avg(octet_length(points) + octet_length(descriptors)) FROM local_features "
            "WHERE kind = 'sift' AND image_id IN (SELECT image_id FROM files WHERE collection_id = :c)"),
            {"c": collection.id}).one()
        table = conn.execute(text("SELECT pg_total_relation_size('local_features') / greatest(count(*), 1) "
                                  "FROM local_features")).scalar()
        paths = [r[0] for r in conn.execute(text("SELECT path FROM files WHERE collection_id = :c ORDER BY path "
                                                 "LIMIT :n"), {"c": collection.id, "n": args.queries})]
    if n:
        print(f"local features (sift): {keypoints:.0f} keypoints, {avg_bytes / 1024:.1f} KiB/image of "
              f"keypoints+descriptors ({n} images); table {table / 1024:.1f} KiB/row on disk")
    with engine.connect() as conn:
        rows, edges, size = conn.execute(text(
            "SELECT count(*), coalesce(sum(cardinality(neighbours)), 0), pg_total_relation_size('match_graph') "
            "FROM match_graph")).one()
    if rows:
        print(f"match graph: {edges / rows:.1f} verified neighbours/image; table {size / rows:.0f} bytes/image on disk")
    similar(paths[0], spec.name, k=10, method=args.method, engine=engine, collection=collection.name)  # warm-up
    for label, queries in (("stored photo", paths), ("new camera photo", [str(p) for p in new_photos[:args.queries]])):
        if not queries:
            continue
        times = []
        for q in queries:
            t0 = time.perf_counter()
            similar(q, spec.name, k=10, method=args.method, engine=engine, collection=collection.name)
            times.append(time.perf_counter() - t0)
        print(f"query latency, {label} ({args.method}, k=10, {len(times)} queries): "
              f"p50 {statistics.median(times) * 1000:.0f} ms, p90 {percentile(times, 0.9) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
