"""Inference speed per backend and model, ingest against the bare backend, the verified
pipeline's parts, and the cold start of a search; prints one JSON object and writes
docs/performance.md. Every ratio is measured in this one run, on this machine.

Usage: scripts/bench_speed [--models a,b] [--backends tensorflow,openvino] [--skip-ingest] [--skip-verified]
                          [--against REV [--rounds N] [--cores N]]
--against REV: the default verified ingest of the DVD photos on this tree and on commit REV, run
alternately (``speed_against``); with it, only that is measured.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from machine import cpu_name, kept_section, write_section  # noqa: E402
from speed_against import measure_against  # noqa: E402

from app.collection.rows import BATCH as ROWS_BATCH  # noqa: E402
from app.config import get_settings  # noqa: E402
from app.describe.embedder import Embedder  # noqa: E402
from app.describe.methods import get_method  # noqa: E402
from app.describe.registry import get_model  # noqa: E402

# Published multiply-adds of one 224x224 image through the feature extractor (no classifier).
GMACS = {"efficientnet-lite0": 0.39, "mobilenetv2-tv": 0.30, "resnet50": 4.1, "efficientnetb0": 0.39}
RANDOM_WEIGHTS = {"resnet50", "efficientnetb0"}  # no offline ImageNet weights: speed only
BATCH = 16
SEE_ALSO = ("Also measured: what the verified pipeline spends and what was done to make it do less "
            "([verified-speed.md](verified-speed.md)); the web service under load (below, and [serve.md](serve.md), "
            "`scripts/bench_serve`); the Ray engine against the local one "
            "([ray.md](ray.md), `scripts/bench_ray`); the database at scale ([scale.md](scale.md)).")


def peak_gflops(seconds: float = 2.0) -> float:
    """fp32 matrix-product throughput of this machine (numpy's BLAS, every core)."""
    a = np.random.default_rng(0).random((2048, 2048), np.float32)
    a @ a
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ a
        n += 1
    return n * 2 * 2048 ** 3 / (time.perf_counter() - started) / 1e9


def bare(model: str, backend: str, batches: int, seconds: float = 3.0) -> dict:
    """images/s of the network alone on 224x224 batches of 16 (after a warm-up call): at least
    ``batches`` of them and ``seconds`` (a short run reads this machine's drift as speed)."""
    spec, method = get_model(model), get_method("global")
    started = time.perf_counter()
    embedder = Embedder(spec, method, pretrained=model not in RANDOM_WEIGHTS, backend=backend)
    load = time.perf_counter() - started
    images = np.random.default_rng(1).integers(0, 255, (BATCH, spec.input_size, spec.input_size, 3), np.uint8)
    embedder.embed(images)
    started, done = time.perf_counter(), 0
    while done < batches or time.perf_counter() - started < seconds:
        embedder.embed(images)
        done += 1
    rate = done * BATCH / (time.perf_counter() - started)
    return {"model": model, "backend": backend, "images_per_s": round(rate, 1), "load_s": round(load, 2),
            "random_weights": model in RANDOM_WEIGHTS}


def ingest(folder: Path, backend: str) -> dict:
    """``global`` ingest of ``folder`` into a fresh collection (the model loaded first, apart)."""
    from app.describe.methods import get_method as method_of
    from app.ingestion.runner import Ingestor
    from app.store import migrate
    from app.store.collections import drop_collection, ensure_collection
    from app.store.db import get_engine

    migrate.upgrade()
    engine, name = get_engine(), f"bench-speed-{backend}"
    with engine.begin() as conn:
        conn.exec_driver_sql("SELECT 1")
        if name in [r[0] for r in conn.exec_driver_sql("SELECT name FROM collections")]:
            drop_collection(conn, name)
        collection = ensure_collection(conn, name)
    spec = get_model("efficientnet-lite0")
    embedders = {f"{spec.name}/global": Embedder(spec, method_of("global"), backend=backend)}
    report = Ingestor(engine, collection, [spec], method_of("global"), embedders=embedders).run(folder)
    with engine.begin() as conn:
        drop_collection(conn, name)
    return {"backend": backend, "images": report.found, "seconds": round(report.seconds, 2),
            "images_per_s": round(report.found / report.seconds, 1),
            "embed_s": round(report.embed_seconds.get(spec.name, 0.0), 2)}


def verified(folder: Path) -> dict:
    """The default method on the DVD photos: embedding + SIFT at ingest, then the graph rows."""
    from app.collection.graph import update_graph
    from app.ingestion.runner import Ingestor
    from app.store.collections import drop_collection, ensure_collection
    from app.store.db import get_engine

    engine, spec, method = get_engine(), get_model("efficientnet-lite0"), get_method("verified")
    with engine.begin() as conn:
        if "bench-speed-verified" in [r[0] for r in conn.exec_driver_sql("SELECT name FROM collections")]:
            drop_collection(conn, "bench-speed-verified")
        collection = ensure_collection(conn, "bench-speed-verified")
    ingestor = Ingestor(engine, collection, [spec], method)
    ingestor.embedder(spec)
    report = ingestor.run(folder)
    started = time.perf_counter()
    update_graph(engine, collection, spec, method)
    graph = time.perf_counter() - started
    with engine.begin() as conn:
        drop_collection(conn, "bench-speed-verified")
    n = report.found
    settings = get_settings()
    return {"images": n, "graph_workers": min(settings.graph_workers, math.ceil(n / ROWS_BATCH)),
            "verify_threads": settings.verify_threads,
            "ingest_s": round(report.seconds, 1), "embed_s": round(report.embed_seconds[spec.name], 1),
            "graph_s": round(graph, 1), "images_per_s_with_graph": round(n / (report.seconds + graph), 2)}


def cold_search(photo: Path, stored: Path, backend: str, runs: int = 3) -> dict:
    """Wall time of ``imgsim search NEW_PHOTO`` in a new process (median of ``runs``)."""
    env = {**os.environ, "IMGSIM_BACKEND": backend}
    cmd = [sys.executable, "-m", "app.cli", "search", str(photo), "--method", "global", "-k", "5",
           "--collection", "bench-speed-cold"]
    subprocess.run([sys.executable, "-m", "app.cli", "ingest", str(stored), "--method", "global", "-q",
                    "--collection", "bench-speed-cold"], env=env, check=True)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return {"backend": backend, "seconds": round(statistics.median(times), 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(GMACS))
    parser.add_argument("--backends", default="tensorflow,openvino")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-verified", action="store_true")
    parser.add_argument("--against", metavar="REV", help="time the verified ingest against commit REV, alone")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cores", type=int, help="with --against: pin both trees to this many cores")
    parser.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    args = parser.parse_args()
    if args.against:
        against(args)
        return
    backends = args.backends.split(",")
    result = {"machine": f"{cpu_name()}, {os.cpu_count()} cores, no GPU", "peak_gflops_fp32": round(peak_gflops(), 1),
              "bare": [], "ingest": [], "cold_search": []}
    for model in args.models.split(","):
        for backend in backends:
            row = bare(model, backend, args.batches)
            row["ratio_to_peak"] = round(row["images_per_s"] * 2 * GMACS[model] / result["peak_gflops_fp32"], 3)
            result["bare"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    holidays = DATASETS / "holidays805" / "images"
    if not args.skip_ingest and holidays.is_dir():
        images = len(list(holidays.glob("*.jpg")))
        for backend in backends:
            # the network alone on as many images, just before: the ratio compares like with like
            beside = bare("efficientnet-lite0", backend, batches=-(-images // BATCH), seconds=0)["images_per_s"]
            row = {**ingest(holidays, backend), "bare_images_per_s": beside}
            row["ratio_to_bare"] = round(row["images_per_s"] / beside, 2)
            result["ingest"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            photo = Path(tmp) / "new.jpg"
            from PIL import Image

            Image.open(sorted(holidays.glob("*.jpg"))[0]).rotate(5).save(photo)
            stored = DATASETS / "ukbench_mini" / "images"
            for backend in backends:
                result["cold_search"].append(cold_search(photo, stored, backend))
    dvd = DATASETS / "smvs_dvd_dev" / "images"
    if not args.skip_verified and dvd.is_dir():
        result["verified"] = verified(dvd)
    print(json.dumps(result, indent=2))
    write(result, Path(args.out), " ".join(sys.argv[1:]))


def against(args) -> None:
    """``--against REV``: print the JSON and keep it as its own section of docs/performance.md."""
    dvd = DATASETS / "smvs_dvd_dev" / "images"
    if not dvd.is_dir():
        sys.exit(f"{dvd} is absent: nothing to measure")
    result = {"machine": cpu_name(), **measure_against(args.against, dvd, args.rounds, args.cores)}
    print(json.dumps(result, indent=2))
    path = Path(args.out)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rev, ours = result["rev"], result["images_per_s"]["this tree"]
    body = "\n".join([
        f"## The verified ingest against {rev}, {result['cores']} core(s)", "",
        f"`scripts/bench_speed --against {args.against} --rounds {args.rounds}"
        f"{f' --cores {args.cores}' if args.cores else ''}` on {when}, commit {head()}; {result['machine']}, "
        f"{result['cores']} of {os.cpu_count()} cores used. `imgsim ingest` of the {result['images']} DVD photos (default method, match-graph rows "
        "included, start-up included), each tree in its own process and embedded server, a new collection each "
        "round, the two trees alternately.", "",
        "| tree | seconds per round | images/s (median) |", "|---|---|---|",
        f"| {rev} | {result['seconds'][rev]} | {result['images_per_s'][rev]} |",
        f"| this tree | {result['seconds']['this tree']} | {ours} |", "",
        f"**{result['ratio']}x** the images per second of {rev}."])
    write_section(path, against_section(result["cores"]), body)


def against_section(cores: int) -> str:
    return f"bench_speed:against-{cores}-cores"


def head() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def write(result: dict, path: Path, argv: str) -> None:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = head()
    tf = {r["model"]: r["images_per_s"] for r in result["bare"] if r["backend"] == "tensorflow"}
    lines = ["# Speed (measured)", "",
             f"`scripts/bench_speed {argv}`".replace(" `", "`") + f" on {when}, commit {commit}; {result['machine']}; "
             f"fp32 peak {result['peak_gflops_fp32']} GFLOP/s (numpy matrix product). Ratios are measured in this "
             "one run. Models marked * have random weights (no offline ImageNet weights): speed only. The share of "
             "the peak counts 2 FLOPs per published multiply-add; the convolution kernels can beat the matrix "
             "product used as the peak, so read it as a comparison between rows.", "",
             "## The network alone (224x224, batches of 16)", "",
             "| model | backend | images/s | vs TensorFlow | share of fp32 peak | load s |", "|---|---|---|---|---|---|"]
    for r in result["bare"]:
        vs = f"{r['images_per_s'] / tf[r['model']]:.2f}x" if r["model"] in tf else ""
        lines.append(f"| {r['model']}{'*' if r['random_weights'] else ''} | {r['backend']} | {r['images_per_s']} | "
                     f"{vs} | {r['ratio_to_peak']:.1%} | {r['load_s']} |")
    if result["ingest"]:
        lines += ["", "## `imgsim ingest` with `global` (Holidays, efficientnet-lite0, model loaded before)", "",
                  "The bare network is measured again just before each ingest, on as many images.", "",
                  "| backend | images | seconds | images/s | the bare network, images/s | ingest vs bare | "
                  "of which the network, s |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['backend']} | {r['images']} | {r['seconds']} | {r['images_per_s']} | {r['bare_images_per_s']} | "
                  f"{r['ratio_to_bare']} | {r['embed_s']} |" for r in result["ingest"]]
    if result["cold_search"]:
        lines += ["", "## A search with a new photo from a cold shell (`imgsim search NEW_PHOTO --method global`)", "",
                  "| backend | seconds (median of 3) |", "|---|---|"]
        lines += [f"| {r['backend']} | {r['seconds']} |" for r in result["cold_search"]]
    if "verified" in result:
        v = result["verified"]
        lines += ["", "## `verified` on the DVD photos (auto backend)", "",
                  f"{v['images']} images: ingest {v['ingest_s']} s (network {v['embed_s']} s, the rest decoding, "
                  f"SIFT and writing), match-graph rows {v['graph_s']} s ({v['graph_workers']} process(es), "
                  f"IMGSIM_VERIFY_THREADS={v['verify_threads']}): **{v['images_per_s_with_graph']} images/s** "
                  "end to end."]
    lines += ["", SEE_ALSO]
    kept = kept_section(path, "bench_serve")  # the section scripts/bench_serve writes here stays
    lines += ["", kept] if kept else []
    for cores in range(1, (os.cpu_count() or 1) + 1):  # and those --against writes
        kept = kept_section(path, against_section(cores))
        lines += ["", kept] if kept else []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
