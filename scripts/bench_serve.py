"""The web service under load: a labelled set ingested with the default method into the
bench's own embedded server, ``imgsim serve`` started as a separate process, then
- a stored-photo search through the API against the same search as a Python call (p50 ratio);
- the upload of a new photo (p50);
- N concurrent clients for a while (stored searches, one in four an upload): p50/p90, errors.
Prints one JSON object and writes docs/serve.md. Ratios are measured in this one run.

Usage: scripts/bench_serve [--dataset ukbench_mini] [--clients 8] [--seconds 60] [--json]
"""
from __future__ import annotations

import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
sys.path.insert(0, str(ROOT))

from machine import bench_parser, cpu_name, own_server, write_section  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100)[q - 1] * 1000, 1) if len(values) > 1 else 0.0


def new_photo(path: Path, seed: int) -> bytes:
    """A photo not stored: a stored one cropped a little and re-encoded."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    rng = random.Random(seed)
    box = (rng.randint(0, 12), rng.randint(0, 12), image.width - rng.randint(0, 12), image.height - rng.randint(0, 12))
    out = io.BytesIO()
    image.crop(box).save(out, "JPEG", quality=85)
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = bench_parser(__doc__, "imgsim-bench-serve")
    parser.add_argument("--dataset", default="ukbench_mini")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    say = own_server(args)
    os.environ.pop("IMGSIM_API_TOKEN", None)

    import httpx

    from app import api

    folder = DATASETS / args.dataset / "images"
    if not folder.is_dir():
        sys.exit(f"{folder} is absent: the benchmark needs ../shared/datasets beside the checkout")
    say(f"ingesting {folder} ...")
    report = api.ingest(folder, collection="bench-serve")
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    from sqlalchemy import text

    from app.store.db import get_engine

    with get_engine().connect() as conn:  # migrated by the ingest

        ids = [r[0] for r in conn.execute(text("SELECT f.image_id FROM files f JOIN collections c ON c.id = "
                                               "f.collection_id WHERE c.name = 'bench-serve' ORDER BY f.path"))]
    queries = ids[: args.queries]

    def python_call(image_id: int) -> float:
        started = time.perf_counter()
        api.search(image_id, collection="bench-serve", k=10)
        return time.perf_counter() - started

    python_call(queries[0])  # warm
    python_s = [python_call(i) for i in queries]

    port = free_port()
    server = subprocess.Popen([str(ROOT / ".venv" / "bin" / "imgsim"), "serve", "--port", str(port)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        client = httpx.Client(base_url=base, timeout=60)
        deadline = time.monotonic() + 120
        while True:
            try:
                client.get("/api/health")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit(f"the server did not start: {server.stderr.read().decode()[-500:]}")
                time.sleep(0.2)

        def api_call(image_id: int) -> float:
            started = time.perf_counter()
            client.get("/api/search", params={"id": image_id, "collection": "bench-serve", "k": 10}).raise_for_status()
            return time.perf_counter() - started

        def upload(c: httpx.Client, seed: int) -> float:
            body = new_photo(photos[seed % len(photos)], seed)
            started = time.perf_counter()
            c.post("/api/search", files={"file": ("new.jpg", body, "image/jpeg")},
                   data={"collection": "bench-serve", "k": "10"}).raise_for_status()
            return time.perf_counter() - started

        api_call(queries[0])
        upload(client, 0)  # the server loads its network on the first new photo
        api_s = [api_call(i) for i in queries]
        upload_s = [upload(client, s) for s in range(1, 21)]

        say(f"{args.clients} clients for {args.seconds:.0f} s ...")
        times, errors, lock = [], [], threading.Lock()
        stop = time.monotonic() + args.seconds

        def client_loop(n: int) -> None:
            rng = random.Random(n)
            with httpx.Client(base_url=base, timeout=120) as own:
                k = 0
                while time.monotonic() < stop:
                    k += 1
                    try:
                        if k % 4 == 0:
                            took = upload(own, 1000 * n + k)
                        else:
                            started = time.perf_counter()
                            own.get("/api/search", params={"id": rng.choice(ids), "collection": "bench-serve"}
                                    ).raise_for_status()
                            took = time.perf_counter() - started
                        with lock:
                            times.append(took)
                    except Exception as exc:
                        with lock:
                            errors.append(f"{type(exc).__name__}: {exc}"[:200])

        threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(args.clients)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {"machine": f"{cpu_name()}, {os.cpu_count()} cores, no GPU",
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "dataset": args.dataset,
              "images": report.found, "method": "verified",
              "stored_search_python_p50_ms": percentile(python_s, 50),
              "stored_search_api_p50_ms": percentile(api_s, 50),
              "api_vs_python_p50": round(statistics.median(api_s) / statistics.median(python_s), 2),
              "upload_p50_ms": percentile(upload_s, 50), "upload_p90_ms": percentile(upload_s, 90),
              "load": {"clients": args.clients, "seconds": round(elapsed, 1), "requests": len(times),
                       "requests_per_s": round(len(times) / elapsed, 2), "p50_ms": percentile(times, 50),
                       "p90_ms": percentile(times, 90), "errors": len(errors), "first_errors": errors[:3]}}
    print(json.dumps(result, indent=None if args.json else 2))
    write(result, " ".join(sys.argv[1:]))


def write(r: dict, argv: str) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    load = r["load"]
    lines = ["# The web service under load (measured)", "",
             f"`scripts/bench_serve {argv}`".replace(" `", "`") + f" on {r['date']}, commit {commit}; {r['machine']}. "
             f"{r['dataset']} ({r['images']} images) ingested with `{r['method']}`; `imgsim serve` in a process of its "
             "own; clients on the same machine (they share its 2 cores with the server).", "",
             "| what | measured |", "|---|---|",
             f"| stored-photo search, Python call, p50 | {r['stored_search_python_p50_ms']} ms |",
             f"| the same through the API, p50 | {r['stored_search_api_p50_ms']} ms ({r['api_vs_python_p50']}x) |",
             f"| upload of a new photo, p50 / p90 | {r['upload_p50_ms']} / {r['upload_p90_ms']} ms |",
             f"| {load['clients']} concurrent clients for {load['seconds']} s (1 in 4 an upload) | {load['requests']} "
             f"requests, {load['requests_per_s']}/s, p50 {load['p50_ms']} ms, p90 {load['p90_ms']} ms, "
             f"{load['errors']} errors |", ""]
    (ROOT / "docs" / "serve.md").write_text("\n".join(lines))
    write_section(ROOT / "docs" / "performance.md", "bench_serve",
                  "\n".join(["## The web service under load", ""] + lines[2:]))


if __name__ == "__main__":
    main()
