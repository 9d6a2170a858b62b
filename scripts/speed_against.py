"""The default verified ingest of a folder (`imgsim ingest FOLDER`: embedding, SIFT and the
match-graph rows) timed on this tree and on an older commit, run alternately in one run on this
machine, so that the ratio reads the code and not the machine's drift (``scripts/bench_speed
--against REV``).

Each tree runs as its own command-line process (start-up included, as a user waits for it),
with this checkout's virtual environment, an embedded server of its own (started and migrated
before the clock starts) and a new collection each round.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def export_tree(rev: str, into: Path) -> str:
    """The files of ``rev`` written under ``into``; its short commit id."""
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return commit


def _env(tree: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONPATH")}
    return {**env, "IMGSIM_HOME": str(home), "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "3"}


def _cli(tree: Path, home: Path, *args: str, cores: int | None = None) -> float:
    """Seconds that ``imgsim ARGS`` of ``tree`` took (its own module, run from its folder), on
    the first ``cores`` cores of this machine (default: all)."""
    pin = None if cores is None else (lambda: os.sched_setaffinity(0, range(cores)))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=tree, env=_env(tree, home),
                          capture_output=True, text=True, preexec_fn=pin)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"imgsim {' '.join(args)} in {tree} failed: {done.stderr.strip()[-500:]}")
    return seconds


def measure_against(rev: str, folder: Path, rounds: int = 2, cores: int | None = None) -> dict:
    """images/s of ``imgsim ingest FOLDER`` (default method, graph included) on ``rev`` and on
    this tree, ``rounds`` times each, alternately (``rev`` first), on ``cores`` cores (the
    processes pinned to them; default: every core)."""
    images = sum(1 for p in folder.rglob("*") if p.is_file())
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        old.mkdir()
        commit = export_tree(rev, old)
        trees = {commit: old, "this tree": ROOT}
        homes = {name: Path(tmp) / f"home-{k}" for k, name in enumerate(trees)}
        for name, tree in trees.items():  # the server started and migrated before any clock
            _cli(tree, homes[name], "db", "upgrade")
        seconds: dict[str, list[float]] = {name: [] for name in trees}
        try:
            for k in range(rounds):
                for name, tree in trees.items():
                    took = _cli(tree, homes[name], "ingest", str(folder), "--collection", f"speed-{k}", "-q",
                                cores=cores)
                    seconds[name].append(took)
                    print(f"{name}: {images / took:.2f} images/s", file=sys.stderr, flush=True)
        finally:
            for name, tree in trees.items():
                subprocess.run([sys.executable, "-m", "app.cli", "db", "stop"], cwd=tree, env=_env(tree, homes[name]),
                               capture_output=True)
    rate = {name: round(images / statistics.median(s), 2) for name, s in seconds.items()}
    return {"rev": commit, "images": images, "rounds": rounds, "cores": cores or len(os.sched_getaffinity(0)),
            "seconds": {name: [round(x, 1) for x in s] for name, s in seconds.items()},
            "images_per_s": rate, "ratio": round(rate["this tree"] / rate[commit], 2)}
