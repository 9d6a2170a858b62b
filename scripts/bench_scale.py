"""The database at scale: N vectors that behave like real descriptors, loaded through the
project's own store (image rows, binary COPY of the vectors, index builds sized by
``app.store.embeddings``), then every index kind (``vector``, ``halfvec``, ``binary``) built and
queried: COPY rows/s, build time, table and index bytes per image, query p50/p90 and recall@10
against exact search at several ``ef_search``. Prints one JSON object (``--json``: only that)
and writes docs/scale.md (the last result of every N and ef_construction measured is kept in
docs/scale.json).

The vectors: the whitened ``gem`` descriptors of the real photos in ../shared/datasets (the
stored form of the default method once a collection is whitened), plus draws from a mixture
around them: a real descriptor plus Gaussian noise shaped like the real descriptors' principal
components at ``--spread`` (0.5) of their spread. Isotropic noise in 1280 dimensions makes
near-ties everywhere (recall@10 0.24 at ef_search 40 in a probe: a property of such data, not
of the index).

Runs on an embedded PostgreSQL of its own (``--home``, default a folder in the temporary
directory), which it empties first; it never touches the user's database.

Usage: scripts/bench_scale [--n 100000] [--kinds vector,halfvec,binary] [--ef 100,200,400] [--json]
(the build's ef_construction: IMGSIM_HNSW_EF_CONSTRUCTION)
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from machine import bench_parser, cpu_name, own_server  # noqa: E402

K = 10
CHUNK = 10_000  # rows per generated chunk and per load transaction


def real_descriptors(model: str, cache: Path) -> np.ndarray:
    """``gem`` rows of every photo in the datasets (cached in the bench's home)."""
    path = cache / f"real-{model}-gem.npy"
    if path.is_file():
        return np.load(path)
    from app.describe.embedder import Embedder
    from app.describe.methods import get_method
    from app.describe.registry import get_model
    from app.files.images import load_image

    files = sorted(p for p in DATASETS.glob("*/images/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        sys.exit(f"bench_scale needs the real photos in {DATASETS} (absent here)")
    spec, method = get_model(model), get_method("gem")
    embedder = Embedder(spec, method)
    rows = []
    for start in range(0, len(files), 32):
        prepared = [method.prepare(load_image(p, min_side=method.min_side(spec), longest=method.longest_side()), spec)
                    for p in files[start:start + 32]]
        rows += [r[0] for r in embedder.describe(prepared)]
    vectors = np.stack(rows).astype(np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


class Mixture:
    """Draws around the (whitened) real descriptors, shaped by their principal components."""

    def __init__(self, real: np.ndarray, spread: float, seed: int):
        from app.describe.vectors import apply_whitening, fit_whitening

        mean, projection = fit_whitening(real, real.shape[1])
        self.centres = apply_whitening(real, mean, projection)
        centred = self.centres - self.centres.mean(axis=0)
        _, singular, components = np.linalg.svd(centred, full_matrices=False)
        self.scales = (spread * singular / np.sqrt(len(real))).astype(np.float32)
        self.components = components.astype(np.float32)
        self.seed = seed

    def chunk(self, index: int, n: int) -> np.ndarray:
        """Chunk ``index`` of the draws (the same rows every time it is asked for)."""
        rng = np.random.default_rng([self.seed, index])
        picks = rng.integers(0, len(self.centres), n)
        noise = (rng.standard_normal((n, len(self.scales)), dtype=np.float32) * self.scales) @ self.components
        rows = self.centres[picks] + noise
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def stored_chunks(mixture: Mixture, n: int):
    """The N stored rows in chunks: the real descriptors first, then draws."""
    yield mixture.centres[:n]
    left, index = n - min(n, len(mixture.centres)), 0
    while left > 0:
        size = min(CHUNK, left)
        yield mixture.chunk(index, size)
        left, index = left - size, index + 1


def exact_top(queries: np.ndarray, mixture: Mixture, n: int) -> np.ndarray:
    """Positions (0..n-1) of each query's K nearest stored rows, by brute force."""
    best_sim = np.full((len(queries), K), -np.inf, np.float32)
    best_pos = np.zeros((len(queries), K), np.int64)
    offset = 0
    for rows in stored_chunks(mixture, n):
        sims = queries @ rows.T
        merged_sim = np.concatenate([best_sim, sims], axis=1)
        merged_pos = np.concatenate([best_pos, offset + np.arange(len(rows))[None].repeat(len(queries), 0)], axis=1)
        top = np.argpartition(-merged_sim, K - 1, axis=1)[:, :K]
        best_sim, best_pos = np.take_along_axis(merged_sim, top, 1), np.take_along_axis(merged_pos, top, 1)
        offset += len(rows)
    return best_pos


def load(engine, collection, spec, stored: str, mixture: Mixture, n: int) -> tuple[list[int], float]:
    """Every row through the store (image rows, binary COPY); ids by position, and rows/s."""
    from app.store.embeddings import drop_index, write_embeddings
    from app.store.images import insert_images

    with engine.begin() as conn:
        drop_index(conn, spec, stored)  # a bulk load builds after loading
    ids: list[int] = []
    started = time.perf_counter()
    for rows in stored_chunks(mixture, n):
        shas = [f"{len(ids) + i:064x}" for i in range(len(rows))]
        with engine.begin() as conn:
            by_sha, _ = insert_images(conn, collection.id, [{"sha256": s, "width": 1, "height": 1} for s in shas])
            batch = [by_sha[s] for s in shas]
            write_embeddings(conn, spec, stored, [(i, 0, v) for i, v in zip(batch, rows)])
        ids += batch
    return ids, n / (time.perf_counter() - started)


def sizes(conn, spec, stored: str) -> dict:
    from sqlalchemy import text

    from app.store.ddl import index_name

    table = conn.execute(text("SELECT pg_table_size(:t)"), {"t": spec.table}).scalar()
    index = conn.execute(text("SELECT pg_relation_size(to_regclass(:i))"),
                         {"i": index_name(spec.table, stored)}).scalar()
    return {"table_bytes": table, "index_bytes": index}


def measure_kind(engine, collection, spec, stored: str, kind: str, n: int, ids: list[int], queries: np.ndarray,
                 truth: np.ndarray, efs: list[int]) -> dict:
    from app.store.embeddings import drop_index, ensure_index, set_index_kind
    from app.store.knn import nearest
    from app.store.scope import Scope

    with engine.begin() as conn:
        drop_index(conn, spec, stored)
        set_index_kind(conn, spec, stored, kind)  # recorded: no index to rebuild now
    started = time.perf_counter()
    with engine.begin() as conn:
        ensure_index(conn, spec, stored)
    build = time.perf_counter() - started
    with engine.connect() as conn:
        out = {"kind": kind, "build_s": round(build, 1), **sizes(conn, spec, stored), "queries": []}
        position = {image_id: p for p, image_id in enumerate(ids)}
        scope = Scope(collection.id)
        for i, ef in enumerate(efs):
            for q in queries[:20] if i else queries:  # warm the caches (a new index: every query's path)
                nearest(conn, spec, stored, q, K, scope, ef_search=ef)
            times, recalls = [], []
            for q, true in zip(queries, truth):
                started = time.perf_counter()
                hits = nearest(conn, spec, stored, q, K, scope, ef_search=ef)
                times.append(time.perf_counter() - started)
                recalls.append(len({position[h.image_id] for h in hits} & set(true.tolist())) / K)
            times.sort()
            out["queries"].append({"ef_search": ef, "p50_ms": round(1000 * statistics.median(times), 2),
                                   "p90_ms": round(1000 * times[int(0.9 * len(times))], 2),
                                   "recall_at_10": round(float(np.mean(recalls)), 4)})
            conn.rollback()
    out["index_bytes_per_image"] = round(out["index_bytes"] / n)
    out["table_bytes_per_image"] = round(out["table_bytes"] / n)
    return out


def main() -> None:
    parser = bench_parser(__doc__, "imgsim-bench-scale")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--kinds", default="vector,halfvec,binary")
    parser.add_argument("--ef", default="100,200,400")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--spread", type=float, default=0.5)
    args = parser.parse_args()
    say = own_server(args)

    from sqlalchemy import text

    from app.config import get_settings
    from app.describe.registry import get_model
    from app.store import migrate
    from app.store.collections import ensure_collection
    from app.store.db import get_engine

    spec, stored = get_model(args.model), "gem+w"
    engine = get_engine()
    migrate.upgrade("head")
    say(f"real descriptors of {args.model} ...")
    mixture = Mixture(real_descriptors(args.model, args.home), args.spread, seed=7)
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE images, index_kinds CASCADE")
        collection = ensure_collection(conn, "scale")
    say(f"loading {args.n} vectors ...")
    ids, rows_per_s = load(engine, collection, spec, stored, mixture, args.n)
    queries = mixture.chunk(10**6, args.queries)  # draws that are not stored
    truth = exact_top(queries, mixture, args.n)
    result = {"n": args.n, "model": spec.name, "dim": spec.dim, "stored": stored, "spread": args.spread,
              "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                          "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
              "index_memory_mb": get_settings().index_memory_mb, "index_workers": get_settings().index_workers,
              "ef_construction": get_settings().hnsw_ef_construction,
              "real_descriptors": len(mixture.centres), "copy_rows_per_s": round(rows_per_s),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "kinds": []}
    with engine.connect() as conn:
        result["shared_buffers"] = conn.execute(text("SHOW shared_buffers")).scalar()
    for kind in args.kinds.split(","):
        say(f"{kind}: building and querying ...")
        result["kinds"].append(measure_kind(engine, collection, spec, stored, kind, args.n, ids, queries, truth,
                                            [int(e) for e in args.ef.split(",")]))
        say(json.dumps(result["kinds"][-1]))
    print(json.dumps(result))
    write(result)


def write(result: dict) -> None:
    docs = ROOT / "docs"
    store = docs / "scale.json"
    runs = json.loads(store.read_text()) if store.is_file() else {}
    runs[f"{result['n']}:{result['ef_construction']}"] = result
    store.write_text(json.dumps(runs, indent=1) + "\n")
    lines = ["# The database at scale (measured)", "",
             "`scripts/bench_scale --n N` on the machine named in each section: vectors that behave like real "
             "descriptors (the whitened `gem` descriptors of the photos in ../shared/datasets, plus draws around "
             "them shaped by their principal components at half their spread), loaded through the project's store "
             "(image rows and binary COPY) into an embedded PostgreSQL of the bench's own, then each index kind "
             "built by the project's index code (memory sized to the graph) and queried with 200 draws that are not "
             "stored. Recall@10 is against exact search over the same rows; times are warm (each query run once "
             "on a new index, then 20 before each candidate list), "
             "through `app.store.knn.nearest` (one SQL statement and the files lookup).", ""]
    for key in sorted(runs, key=lambda k: (runs[k]["n"], runs[k]["date"])):
        r = runs[key]
        m = r["machine"]
        lines += [f"## {r['n']:,} x {r['dim']} ({r['model']}, `{r['stored']}`), ef_construction "
                  f"{r.get('ef_construction', 64)}", "",
                  f"{r['date']}; {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; shared_buffers "
                  f"{r['shared_buffers']}, index builds with up to {r['index_memory_mb']} MB and "
                  f"{r['index_workers']} parallel workers, HNSW m 16 and ef_construction "
                  f"{r.get('ef_construction', 64)}. COPY: **{r['copy_rows_per_s']:,} rows/s** "
                  f"(image rows and vectors, {r['real_descriptors']} real descriptors among them)."
                  + (f" {r['note']}" if r.get("note") else ""), "",
                  "| index | build s | index bytes/image | table bytes/image | ef_search | p50 ms | p90 ms | recall@10 |",
                  "|---|---|---|---|---|---|---|---|"]
        for k in r["kinds"]:
            for i, q in enumerate(k["queries"]):
                head = (f"| {k['kind']} | {k['build_s']} | {k['index_bytes_per_image']:,} | "
                        f"{k['table_bytes_per_image']:,} |" if i == 0 else "| | | | |")
                lines.append(f"{head} {q['ef_search']} | {q['p50_ms']} | {q['p90_ms']} | {q['recall_at_10']} |")
        lines.append("")
    (docs / "scale.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
