"""The Ray engine against the local one on the same photos: `global` ingest of Holidays (811
photos, ``--copies`` times: each copy under distinct bytes, so a new content to embed) with 1
and 2 Ray workers, and `verified` (ingest + match-graph rows) on the DVD photos. Prints one
JSON object and writes docs/ray.md. Its own embedded server (``--home``); every run goes to a
fresh collection. Ratios are measured in this one run, on this machine.

Usage: scripts/bench_ray [--copies 3] [--workers 1,2] [--skip-verified] [--json]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
sys.path.insert(0, str(ROOT))

from machine import bench_parser, cpu_name, own_server  # noqa: E402


class Clock:
    """Progress callback that notes when the first batch was stored and when the last was."""

    def __init__(self):
        self.first = self.last = None
        self.first_done = 0

    def __call__(self, done: int, total: int) -> None:
        if done and self.first is None:
            self.first, self.first_done = time.perf_counter(), done
        self.last = time.perf_counter()


def copies(source: Path, folder: Path, n: int) -> Path:
    """``n`` copies of every JPEG of ``source``, copy k with k bytes appended after the image's
    end marker (decoders ignore them): the same decoding work under a new content hash."""
    for k in range(n):
        for path in sorted(source.glob("*.jpg")):
            target = folder / f"copy{k}" / path.name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes() + b"\0" * k)
    return folder


def run(engine, folder: Path, method: str, name: str, distributor=None, embedders=None) -> dict:
    """One ingest into a fresh collection (with the match-graph rows for a verifying method)."""
    from app.describe.methods import get_method
    from app.describe.registry import get_model
    from app.ingestion.runner import Ingestor
    from app.store.collections import drop_collection, ensure_collection

    with engine.begin() as conn:
        if name in [r[0] for r in conn.exec_driver_sql("SELECT name FROM collections")]:
            drop_collection(conn, name)
        collection = ensure_collection(conn, name)
    spec, meth = get_model("efficientnet-lite0"), get_method(method)
    clock = Clock()
    started = time.perf_counter()
    report = Ingestor(engine, collection, [spec], meth, embedders=embedders, graph=meth.local is not None,
                      distributor=distributor).run(folder, progress=clock)
    seconds = time.perf_counter() - started
    embedded = report.embedded.get(spec.name, 0)
    row = {"engine": "ray" if distributor else "local", "method": method, "images": report.found,
           "embedded": embedded, "failed": len(report.failed), "seconds": round(seconds, 2),
           "images_per_s": round(report.found / seconds, 1)}
    if clock.first is not None and clock.last > clock.first:  # after the first batch: workers up, models loaded
        row["steady_images_per_s"] = round((embedded - clock.first_done) / (clock.last - clock.first), 1)
        row["first_batch_s"] = round(clock.first - started, 2)
    if report.graph:
        row["graph_edges"] = report.graph[0]["edges"]
    return row


def main() -> None:
    parser = bench_parser(__doc__, "imgsim-bench-ray")
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--skip-verified", action="store_true")
    args = parser.parse_args()
    say = own_server(args)

    from app.describe.embedder import Embedder
    from app.describe.methods import get_method
    from app.describe.registry import get_model
    from app.ingestion import distributed
    from app.store import migrate
    from app.store.db import get_engine

    source = DATASETS / "holidays805" / "images"
    if not source.is_dir():
        sys.exit(f"{source} is absent: the benchmark needs ../shared/datasets beside the checkout")
    holidays = copies(source, args.home / "holidays-copies", args.copies)
    migrate.upgrade("head")
    engine, spec = get_engine(), get_model("efficientnet-lite0")
    result = {"machine": f"{cpu_name()}, {os.cpu_count()} cores, no GPU", "copies": args.copies,
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "global": [], "verified": []}

    started = time.perf_counter()
    embedders = {f"{spec.name}/global": Embedder(spec, get_method("global"))}  # converts and compiles once
    result["local_model_load_s"] = round(time.perf_counter() - started, 2)
    say("local engine, global ...")
    result["global"].append(run(engine, holidays, "global", "bench-ray-local", embedders=embedders))
    say(json.dumps(result["global"][-1]))

    started = time.perf_counter()
    distributed.start(cpus=os.cpu_count())
    result["ray_start_s"] = round(time.perf_counter() - started, 2)
    for workers in [int(w) for w in args.workers.split(",")]:
        say(f"ray engine, {workers} worker(s), global ...")
        row = run(engine, holidays, "global", f"bench-ray-{workers}", distributed.RayDistributor(workers=workers))
        row["workers"] = workers
        result["global"].append(row)
        say(json.dumps(row))

    dvd = DATASETS / "smvs_dvd_dev" / "images"
    if not args.skip_verified and dvd.is_dir():
        say("local engine, verified ...")
        result["verified"].append(run(engine, dvd, "verified", "bench-ray-verified-local"))
        say(json.dumps(result["verified"][-1]))
        say("ray engine, verified ...")
        distributor = distributed.RayDistributor()
        row = run(engine, dvd, "verified", "bench-ray-verified", distributor)
        row["workers"] = distributor.workers
        result["verified"].append(row)
        say(json.dumps(row))

    local = result["global"][0]["images_per_s"]
    for row in result["global"][1:]:
        row["vs_local"] = round(row["images_per_s"] / local, 2)
    if len(result["verified"]) == 2:
        result["verified"][1]["vs_local"] = round(result["verified"][1]["images_per_s"]
                                                  / result["verified"][0]["images_per_s"], 2)
    print(json.dumps(result, indent=None if args.json else 2))
    write(result, " ".join(sys.argv[1:]))


def write(result: dict, argv: str) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    lines = ["# The Ray engine (measured)", "",
             f"`scripts/bench_ray {argv}`".replace(" `", "`") + f" on {result['date']}, commit {commit}; "
             f"{result['machine']}. A local Ray cluster on this one machine (started in "
             f"{result['ray_start_s']} s, not counted below), efficientnet-lite0 on the default backend. Each row "
             "is one ingest into a fresh collection of the same database; seconds count from the call to the "
             "last row stored, so a Ray row includes starting its actors and loading the network in each "
             f"(the local engine's network was loaded before, in {result['local_model_load_s']} s). "
             "*Steady* is the rate after the first batch was stored.", "",
             f"## `global`, Holidays x {result['copies']} (each copy under distinct bytes)", "",
             "| engine | workers | images | seconds | images/s | vs local | steady images/s | first batch stored, s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["global"]:
        lines.append(f"| {r['engine']} | {r.get('workers', '')} | {r['images']} | {r['seconds']} | "
                     f"{r['images_per_s']} | {r.get('vs_local', '')} | {r.get('steady_images_per_s', '')} | "
                     f"{r.get('first_batch_s', '')} |")
    if result["verified"]:
        lines += ["", "## `verified` (ingest, then the match-graph rows), DVD photos", "",
                  "| engine | workers | images | seconds | images/s | vs local | graph edges |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['engine']} | {r.get('workers', '')} | {r['images']} | {r['seconds']} | {r['images_per_s']} | "
                  f"{r.get('vs_local', '')} | {r.get('graph_edges', '')} |" for r in result["verified"]]
    lines += ["", "What a run on one machine shows is the engine's overhead (moving work items and results "
              "between processes, starting actors); a cluster adds machines. See *Ingest on a Ray "
              "cluster* in [large-collections.md](large-collections.md) for running one.", ""]
    (ROOT / "docs" / "ray.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
