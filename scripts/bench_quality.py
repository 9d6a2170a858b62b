"""Retrieval quality of every offline backbone x method x protocol on ../shared/datasets.

Writes docs/quality.md (and prints the table). Usage: scripts/bench_quality [--models a,b] [--methods m,n] [--datasets d,e]
With --groups: the groups of the same item instead (scripts/bench_groups.py; writes docs/groups.md).
"""
from __future__ import annotations

import argparse
import csv
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
sys.path.insert(0, str(ROOT))

from app.collection.dba import augment_collection  # noqa: E402
from app.collection.graph import build_graph  # noqa: E402
from app.collection.whitening import WhiteningError, whiten_collection  # noqa: E402
from app.describe.methods import WHITENED_ALIASES, get_method  # noqa: E402
from app.describe.registry import resolve_models  # noqa: E402
from app.evaluation.evaluate import evaluate  # noqa: E402
from app.files.labels import read_labels  # noqa: E402
from app.ingestion.runner import Ingestor  # noqa: E402
from app.retrieval.query import effective_method  # noqa: E402
from app.store import migrate  # noqa: E402
from app.store.collections import ensure_collection  # noqa: E402
from app.store.db import get_engine  # noqa: E402
from app.store.whitening import delete_whitening  # noqa: E402


def clear_whitening(engine, collection, spec, descriptor: str) -> None:
    """Forget an earlier fit, so that a collection too small to whiten is measured unwhitened."""
    with engine.begin() as conn:
        delete_whitening(conn, collection.id, spec.name, descriptor)


DATASET_NAMES = ("ukbench_mini", "holidays805", "smvs_dvd_dev")


def protocols(tmp: Path, names=DATASET_NAMES) -> list[tuple[str, str, Path, Path]]:
    """(dataset, protocol, folder, labels csv) for each protocol whose data is present."""
    out = []
    for name in names:
        folder = DATASETS / name
        if folder.is_dir():
            out.append((name, "all-vs-all", folder, folder / "groundtruth.csv"))
    dvd = DATASETS / "smvs_dvd_dev"
    if dvd.is_dir() and "smvs_dvd_dev" in names:
        meta = list(csv.DictReader(open(dvd / "meta.csv")))
        p2r, p2p = tmp / "dvd_photo_to_reference.csv", tmp / "dvd_photo_to_photo.csv"
        with open(p2r, "w") as a, open(p2p, "w") as b:
            a.write("filename,group,role\n")
            b.write("filename,group,role\n")
            for r in meta:
                photo = r["role"] == "query_photo"
                a.write(f"{r['filename']},{r['group']},{'query' if photo else 'database'}\n")
                if photo:
                    b.write(f"{r['filename']},{r['group']},both\n")
        out += [("smvs_dvd_dev", "photo->reference", dvd, p2r), ("smvs_dvd_dev", "photo->photo", dvd, p2p)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="mobilenetv2-tv,efficientnet-lite0,efficientnet-lite1,efficientnet-lite2")
    parser.add_argument("--methods", default="global,gem,gem+w,gem+sift,verified")
    parser.add_argument("--datasets", default=",".join(DATASET_NAMES), help="comma-separated subset")
    parser.add_argument("--out", default=str(ROOT / "docs" / "quality.md"))
    parser.add_argument("--groups", action="store_true", help="measure the groups of the same item (docs/groups.md)")
    args = parser.parse_args()
    migrate.upgrade()
    engine = get_engine()
    if args.groups:
        import bench_groups

        with tempfile.TemporaryDirectory() as tmp:
            bench_groups.write(bench_groups.measure(engine, Path(tmp)), ROOT / "docs" / "groups.md",
                               bench_groups.measure_scale(engine))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        protos = protocols(Path(tmp), args.datasets.split(","))
        if not protos:
            sys.exit(f"{DATASETS} is absent: nothing to measure")
        for spec in resolve_models(args.models):
            for method_name in args.methods.split(","):
                method = get_method(method_name)
                for dataset, protocol, folder, labels in protos:
                    with engine.begin() as conn:  # each dataset is a collection: index steps see it alone
                        collection = ensure_collection(conn, dataset)
                    Ingestor(engine, collection, [spec], method).run(folder, read_labels(labels))
                    if method.whiten or method.name in WHITENED_ALIASES:
                        try:
                            whiten_collection(engine, collection, spec, method.raw)
                        except WhiteningError as exc:
                            if method.whiten:
                                print(f"skip {spec.name} {method.name} {dataset}: {exc}", flush=True)
                                continue
                            clear_whitening(engine, collection, spec, method.raw)  # `verified` is then gem+sift
                    if method.dba:
                        augment_collection(engine, collection, spec, method)
                    with engine.connect() as conn:
                        resolved = effective_method(conn, collection.id, spec, method)
                    if resolved.local:
                        build_graph(engine, collection, spec, resolved, rebuild=True)
                    started = time.perf_counter()
                    result = evaluate(engine, collection, folder, labels, spec, method)
                    s = result.summary
                    row = (dataset, protocol, spec.name, method.name, s.map, s.p_at_1, s.recall_at_1,
                           1000 * result.search_seconds / max(1, s.n_queries), s.n_queries, time.perf_counter() - started)
                    rows.append(row)
                    print(" | ".join(str(round(v, 3)) if isinstance(v, float) else str(v) for v in row), flush=True)
    write(rows, Path(args.out), " ".join(sys.argv[1:]))


def previous_rows(path: Path) -> list[tuple]:
    """Rows of an earlier run in ``path`` (kept unless this run measured the same combination)."""
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) == 9 and cells[4].replace(".", "").isdigit():
                d, p, m, meth = cells[:4]
                rows.append((d, p, m, meth, float(cells[4]), float(cells[5]), float(cells[6]), float(cells[7]),
                             int(cells[8]), 0.0))
    return rows


def write(rows, path: Path, argv: str) -> None:
    measured = {r[:4] for r in rows}
    rows = [r for r in previous_rows(path) if r[:4] not in measured] + rows
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    lines = [
        "# Retrieval quality (measured)",
        "",
        f"Last run: `scripts/bench_quality {argv}`".rstrip() + f" on {when}, commit {commit} "
        "(rows of earlier runs with other models or methods are kept), "
        f"{platform.machine()} with {__import__('os').cpu_count()} CPU cores, no GPU. Real ImageNet weights "
        "(the offline ports). mAP, P@1 and recall@1 from the ranked lists the database search returned "
        "(`imgsim evaluate`); search time is per query, ranking the whole database.",
        "",
        "Methods: `global` = the original study's (squash 224, average pooling); `gem` = aspect kept, 512 px, "
        "GeM; `+w` = PCA-whitening with shrinkage fitted on the dataset itself (`imgsim index whiten`); "
        "`+dba` = database-side augmentation over the dataset (`imgsim index dba`); `+qe` = alpha query "
        "expansion; `+sift` = SIFT + RANSAC verification of the top 100 with background weighting, expanded "
        "through the match graph built on the dataset (`imgsim index graph`) and fused with the vector "
        "similarity; `verified` = the default, `gem+w+sift` once a whitening is fitted (50+ images).",
        "",
        "| dataset | protocol | model | method | mAP | P@1 | recall@1 | search ms/query | queries |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, protocol, model, method, m, p1, r1, ms, n, _ in sorted(rows, key=lambda r: (r[0], r[1], r[2], -r[4])):
        lines.append(f"| {dataset} | {protocol} | {model} | {method} | {m:.3f} | {p1:.3f} | {r1:.3f} | {ms:.0f} | {n} |")
    old = path.read_text() if path.is_file() else ""
    tail = old[old.index("\n## ") + 1:] if "\n## " in old else ""  # hand-written sections after the table
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + ("\n" + tail if tail else ""))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
