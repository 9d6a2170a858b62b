"""Groups of the same item, measured as a user gets them: each labelled set ingested by the
default command (efficientnet-lite0, `verified`) into a fresh collection, then `imgsim groups`;
pair precision, pair recall, B-cubed F1 and the number of groups against the labels.

The sets: the calendar demo, the three of ../shared/datasets, edited copies of 30 Holidays
photos (resized, recompressed, cropped, turned, grey, brightened, captioned), and two sets
without a single true pair (one photo per Holidays scene; the 30 DVD photos taken on one
textbook page), where every pair grouped is a false one.

Run by `scripts/bench_quality --groups`; writes docs/groups.md.
"""
from __future__ import annotations

import csv
import platform
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"


def group_sets(tmp: Path) -> list[tuple[str, Path, Path]]:
    """(name, folder, labels csv) of every set whose data is present."""
    from app.evaluation.edits import make_edited_set
    from app.evaluation.synth import make_calendar_set

    sets = [("calendar", tmp / "calendar", make_calendar_set(tmp / "calendar"))]
    for name in ("ukbench_mini", "smvs_dvd_dev", "holidays805"):
        if (DATASETS / name).is_dir():
            sets.append((name, DATASETS / name / "images", DATASETS / name / "groundtruth.csv"))
    holidays = DATASETS / "holidays805"
    if holidays.is_dir():
        firsts = _first_of_each(holidays / "groundtruth.csv")
        sources = [holidays / "images" / name for name in firsts[::8][:30]]
        sets.append(("holidays edited copies", tmp / "edited", make_edited_set(sources, tmp / "edited")))
        sets.append(("holidays, one photo a scene", *_subset(tmp / "one-a-scene", holidays, firsts)))
    dvd = DATASETS / "smvs_dvd_dev"
    if dvd.is_dir():
        droid = sorted(p.name for p in (dvd / "images").glob("*_droid.jpg"))
        sets.append(("dvd, one textbook page", *_subset(tmp / "one-page", dvd, droid)))
    return sets


def _first_of_each(labels: Path) -> list[str]:
    seen, first = set(), []
    for row in csv.DictReader(open(labels)):
        if row["group"] not in seen:
            seen.add(row["group"])
            first.append(row["filename"])
    return first


def _subset(folder: Path, dataset: Path, names: list[str]) -> tuple[Path, Path]:
    """Copies of ``names`` of a dataset, each labelled apart (no two show one item)."""
    folder.mkdir(parents=True, exist_ok=True)
    groups = {r["filename"]: r["group"] for r in csv.DictReader(open(dataset / "groundtruth.csv"))}
    labels = folder.parent / f"{folder.name}.csv"
    with open(labels, "w") as f:
        f.write("filename,group\n")
        for name in names:
            shutil.copy(dataset / "images" / name, folder / name)
            f.write(f"{name},{groups[name]}\n")
    return folder, labels


def measure(engine, tmp: Path, model: str = "efficientnet-lite0") -> list[dict]:
    from app import api

    rows = []
    for name, folder, labels in group_sets(tmp):
        collection = f"groups: {name}"
        started = time.perf_counter()
        report = api.ingest(folder, model, "verified", labels, engine=engine, collection=collection)
        ingest_s = time.perf_counter() - started
        times = []
        for _ in range(3):  # the median of three: one call may meet the server's own upkeep after the ingest
            started = time.perf_counter()
            found = api.groups(model, "verified", collection, engine=engine)
            times.append(time.perf_counter() - started)
        group_s = sorted(times)[1]
        scores = api.group_scores(collection, model, "verified", engine=engine)
        false_pairs = sum(len(g.members) * (len(g.members) - 1) // 2 for g in found) if not scores.true_groups else None
        rows.append({"set": name, "images": report.found, **scores.as_dict(), "false_pairs": false_pairs,
                     "ingest_s": ingest_s, "group_s": group_s})
        print(rows[-1], flush=True)
    return rows


SCALE = 100_000  # images of the synthetic collection grouping is timed on


def synthetic_edges(n: int, seed: int = 0) -> list[tuple[int, int, float]]:
    """Edges of ``n`` images (by index) in items of 1-7 photos: 70% of an item's pairs verified
    at confidence 0.3-1.0, and as many look-alike edges at 0.0-0.9 between random images."""
    rng = np.random.default_rng(seed)
    edges, start = [], 0
    while start < n:
        item = range(start, min(n, start + int(rng.integers(1, 8))))
        start = item.stop
        edges += [(a, b, float(rng.uniform(0.3, 1.0))) for a in item for b in item if a < b and rng.random() < 0.7]
    pairs = rng.integers(0, n, (n, 2))
    return edges + [(int(a), int(b), float(rng.uniform(0.0, 0.9))) for a, b in pairs if a != b]


def measure_scale(engine, n: int = SCALE, model: str = "efficientnet-lite0") -> dict:
    """`imgsim groups` on a collection of ``n`` synthetic images (rows written straight into the
    tables: images, a file each, match-graph rows holding ``synthetic_edges``): the stored edges
    read, grouped, and the groups stored, as a real collection of that size would be."""
    from sqlalchemy import text

    from app import api
    from app.store.collections import drop_collection, ensure_collection

    name = f"groups: synthetic {n}"
    with engine.begin() as conn:
        if name in [r[0] for r in conn.execute(text("SELECT name FROM collections"))]:
            drop_collection(conn, name)
        collection = ensure_collection(conn, name)
        ids = conn.execute(text(
            "INSERT INTO images (collection_id, sha256, width, height) SELECT :c, "
            "md5('synthetic' || k) || md5('image' || k), 1000, 750 FROM generate_series(1, :n) k RETURNING id"),
            {"c": collection.id, "n": n}).scalars().all()
        ids = sorted(ids)
        conn.execute(text("INSERT INTO files (collection_id, path, image_id, size) "
                          "SELECT :c, '/synthetic/' || id || '.jpg', id, 100000 FROM unnest(CAST(:ids AS bigint[])) id"),
                     {"c": collection.id, "ids": ids})
        rows: dict[int, tuple[list[int], list[float]]] = {i: ([], []) for i in ids}
        for a, b, confidence in synthetic_edges(n):
            rows[ids[a]][0].append(ids[b])
            rows[ids[a]][1].append(confidence)
        conn.execute(text("INSERT INTO match_graph (model, kind, image_id, neighbours, scores, confidences) "
                          "VALUES (:model, 'sift', :id, :others, :scores, :confidences)"),
                     [{"model": model, "id": i, "others": o, "scores": [10.0 * c for c in cs], "confidences": cs}
                      for i, (o, cs) in rows.items()])
    started = time.perf_counter()
    found = api.groups(model, "verified", name, engine=engine)
    seconds = time.perf_counter() - started
    with engine.begin() as conn:
        drop_collection(conn, name)
    return {"images": n, "edges": sum(len(o) for o, _ in rows.values()), "groups": len(found),
            "seconds": seconds}


def write(rows: list[dict], path: Path, scale: dict | None = None) -> None:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").is_file() else platform.processor()
    lines = [
        "# Groups of the same item (measured)",
        "",
        f"`scripts/bench_quality --groups` on {when}, commit {commit}, {cpu}. Each set ingested by the default "
        "command into a fresh collection (efficientnet-lite0, `verified`), then `imgsim groups` (average linkage "
        "at confidence 0.5). Pair precision: of the pairs put in one group, the share that show one item; pair "
        "recall: of the pairs that show one item, the share put in one group. In the sets without a true pair, "
        "every pair grouped is false. How far the evidence reaches: of the true pairs, the share with a "
        "match-graph edge, and the share joined by a path of edges between photos of one item (the most pair "
        "recall any grouping of these edges reaches without a false pair; what is missing there, verification "
        "did not find).",
        "",
        "| set | images | pair precision | pair recall | B-cubed F1 | groups found / true | largest | false pairs "
        "| true pairs with an edge | reachable through edges | grouping s (median of 3) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        false_pairs = "" if r["false_pairs"] is None else str(r["false_pairs"])
        precision = "-" if r["false_pairs"] is not None else f"{r['pair_precision']:.3f}"
        recall = "-" if r["false_pairs"] is not None else f"{r['pair_recall']:.3f}"
        reach = ["-", "-"] if r["false_pairs"] is not None else [f"{r['edge_recall']:.3f}", f"{r['reachable_recall']:.3f}"]
        lines.append(f"| {r['set']} | {r['images']} | {precision} | {recall} | {r['bcubed_f1']:.3f} | "
                     f"{r['groups']} / {r['true_groups']} | {r['largest']} | {false_pairs} | {' | '.join(reach)} | "
                     f"{r['group_s']:.2f} |")
    if scale:
        lines += ["", f"At scale: `imgsim groups` on a synthetic collection of {scale['images']:,} images and "
                  f"{scale['edges']:,} stored edges (items of 1-7 photos, 70% of their pairs verified, as many "
                  f"look-alike edges between random images): {scale['groups']:,} groups in {scale['seconds']:.1f} s "
                  f"({scale['seconds'] / scale['images'] * 1000:.2f} s per 1,000 images; target <= 1), the edges "
                  "read, grouped and the groups stored."]
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")
