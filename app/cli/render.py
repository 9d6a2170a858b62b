"""What the commands print: tables, progress bars and JSON."""
from __future__ import annotations

import json
import time

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.cli.common import err, out
from app.files.paths import one_line, path_text
from app.retrieval.hits import Hit


def print_json(value) -> None:
    print(json.dumps(value, default=str, ensure_ascii=False, indent=2))


def print_table(columns: list[str], rows: list[list[str]], title: str | None = None,
                fold: str | None = None) -> None:
    """A table; ``fold`` names a last column (a path) that wraps instead of being cut."""
    table = Table(*columns, title=escape(title) if title else None, title_justify="left")
    if fold:
        table.add_column(fold, overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))  # names are text, never markup
    out.print(table)


class progress:
    """A Rich progress bar with images/s, fed by a job's (done, to do) callback. It appears on
    the first report and closes when done reaches the total, so bars of a job's stages follow
    one another (Rich shows one live display at a time)."""

    def __init__(self, quiet: bool, label: str = "embedding"):
        self.quiet, self.label, self.bar = quiet, label, None

    def __enter__(self):
        return self.update

    def update(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            self.bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=err)
            self.task = self.bar.add_task(self.label, total=None, rate="")
            self.started = time.perf_counter()
            self.bar.start()
        rate = done / max(time.perf_counter() - self.started, 1e-9)
        self.bar.update(self.task, completed=done, total=total, rate=f"{rate:.1f} img/s")
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None and self.bar.live.is_started:
            self.bar.stop()

    def __exit__(self, *exc):
        self.close()


def hit_dict(h: Hit) -> dict:
    return {"path": h.path, "paths": list(h.paths), "distance": h.distance, "label": h.label, "id": h.image_id,
            "inliers": h.inliers, "score": h.score, "confidence": h.confidence}


def print_ranking(hits: list[Hit], title: str, relevant: set[int] | None = None) -> None:
    verified = any(h.inliers is not None for h in hits)
    rows = []
    for rank, h in enumerate(hits, 1):
        mark = " ✓" if relevant and h.image_id in relevant else ""
        inliers = (["" if h.inliers is None else str(h.inliers), "" if h.score is None else f"{h.score:.1f}",
                    "" if h.confidence is None else f"{h.confidence:.2f}"] if verified else [])
        more = f" (+{len(h.paths) - 1} copies)" if len(h.paths) > 1 else ""
        rows.append([str(rank), f"{h.distance:.6f}", *inliers, one_line(h.label or "") + mark, one_line(h.path) + more])
    print_table(["rank", "distance", *(["inliers", "score", "confidence"] if verified else []), "label"], rows, title,
                "path")


def print_metrics(rows: list[dict], title: str = "metrics") -> None:
    print_table(["model", "method", "mAP", "P@1", "P@R", "recall@1", "recall@k", "queries", "embed ms/img"], [
        [r["model"], r["method"], f"{r['map']:.3f}", f"{r['p_at_1']:.3f}", f"{r['p_at_r']:.3f}",
         f"{r['recall_at_1']:.3f}", f"{r['recall_at_k']:.3f} (k={r['k']})", str(r["n_queries"]),
         "" if r.get("embed_ms") is None else f"{r['embed_ms']:.1f}"] for r in rows], title)


def print_group_scores(scores, title: str) -> None:
    reach = [] if scores.edge_recall is None else [f"{scores.edge_recall:.3f}", f"{scores.reachable_recall:.3f}"]
    print_table(["pair precision", "pair recall", "B-cubed F1", "groups found", "true groups", "largest",
                 *(["true pairs with an edge", "reachable through edges"] if reach else [])],
                [[f"{scores.pair_precision:.3f}", f"{scores.pair_recall:.3f}", f"{scores.bcubed_f1:.3f}",
                  str(scores.groups), str(scores.true_groups), str(scores.largest), *reach]], title)


def print_ingest(report) -> None:
    per_model = ", ".join(f"{k} {v}" for k, v in report.embedded.items()) or "none"
    removed = f", removed {len(report.removed)} (images deleted: {report.removed_images})" if report.removed else ""
    out.print(f"{escape(one_line(report.collection))}: found {report.found}: new {report.new_images}, skipped "
              f"{report.skipped} (unchanged {report.unchanged}), failed {len(report.failed)}{removed}; embeddings "
              f"written: {per_model}; {report.seconds:.1f} s ({report.images_per_second:.1f} images/s)",
              soft_wrap=True, highlight=False)


def print_fit(result: dict) -> None:
    out.print(f"whitening {result['model']}/{result['method']} in {escape(one_line(result['collection']))}: version "
              f"{result['version']} fitted on {result['n_images']} images ({result['reason']})", highlight=False)


def print_graph(result: dict) -> None:
    out.print(f"match graph {result['model']}/{result['method']} in {escape(one_line(result['collection']))}: rows "
              f"for {result['images']} images, {result['edges']} verified edges", highlight=False)


def print_failure(f) -> None:
    """One line per failed file, whatever its name holds."""
    err.print(f"[yellow]failed[/yellow] {escape(one_line(path_text(f.path)))}: {escape(one_line(f.reason))}",
              highlight=False, soft_wrap=True)
