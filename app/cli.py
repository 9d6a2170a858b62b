"""The ``imgsim`` command line."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.config import get_settings
from app.methods import DEFAULT_METHOD

app = typer.Typer(help="Image similarity search on PostgreSQL + pgvector.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="The database: migrations, URL, embedded server.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry and its weights.", invoke_without_command=True)
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")
# Piped output is not cut to 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

EXIT_FAILURES = 3  # the job finished, but some inputs failed

ModelOpt = Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Model name (repeatable).")]
MethodOpt = Annotated[str, typer.Option(
    "--method", help="DESCRIPTOR[@SIDE][+w][+dba][+qe][+sift|+orb], descriptor global|gem|gem-ms|rmac; "
                     "'verified' (default) = gem+sift. See `imgsim methods`.")]


def fail(message: str, code: int = 1):
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _specs(models: list[str] | None):
    from app.registry import UnknownModel, resolve_models

    try:
        return resolve_models(models or [get_settings().default_model])
    except UnknownModel as exc:
        fail(str(exc))


def _method(name: str):
    from app.methods import UnknownMethod, get_method

    try:
        return get_method(name)
    except UnknownMethod as exc:
        fail(str(exc))


# ---- db ---------------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")):
    """Apply migrations up to REVISION (default: head)."""
    from app import migrate

    migrate.upgrade(revision)
    out.print(f"database at revision {migrate.current()}")


@db_app.command("downgrade")
def db_downgrade(revision: str):
    """Revert migrations down to REVISION (``base`` empties the schema)."""
    from app import migrate

    migrate.downgrade(revision)
    out.print(f"database at revision {migrate.current() or 'base'}")


@db_app.command("url")
def db_url():
    """Print the connection URL (``psql "$(imgsim db url)"``)."""
    from app.db import libpq_url

    print(libpq_url())


@db_app.command("stop")
def db_stop():
    """Stop the embedded PostgreSQL server."""
    from app.db import stop_embedded

    if get_settings().database_url:
        fail("DATABASE_URL is set: there is no embedded server to stop")
    print("stopped" if stop_embedded(get_settings().pgdata) else "not running")


# ---- models -----------------------------------------------------------------------------------
@models_app.callback()
def models_list(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False):
    """List the registered backbones, their dimensions and whether their weights are present."""
    if ctx.invoked_subcommand:
        return
    from app.registry import MODELS
    from app.weights import weights_present, weights_source

    rows = [{"name": s.name, "dim": s.dim, "input_size": s.input_size, "offline": s.offline,
             "weights": weights_source(s), "weights_present": weights_present(s)} for s in MODELS.values()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "dim", "input", "weights", "present")
    for r in rows:
        table.add_row(r["name"], str(r["dim"]), str(r["input_size"]), r["weights"],
                      "yes" if r["weights_present"] else "no")
    out.print(table)


@models_app.command("fetch")
def models_fetch(name: str = typer.Argument(..., help="Model name or 'all'.")):
    """Load weights into the cache (needs internet for keras.applications models)."""
    from app.backbones import build_backbone
    from app.registry import UnknownModel, resolve_models
    from app.weights import WeightsUnavailable, weights_dir

    try:
        specs = resolve_models(name)
    except UnknownModel as exc:
        fail(str(exc))
    failed = 0
    for spec in specs:
        try:
            build_backbone(spec)
            out.print(f"{spec.name}: ok")
        except WeightsUnavailable as exc:
            failed += 1
            err.print(f"{spec.name}: {exc}", highlight=False, soft_wrap=True)
    out.print(f"weights cache: {weights_dir()}")
    if failed:
        raise typer.Exit(1)


# ---- ingest / search --------------------------------------------------------------------------
@app.command()
def ingest(
    folder: Path,
    model: ModelOpt = None,
    labels: Annotated[Optional[Path], typer.Option(help="CSV with filename,label (or group).")] = None,
    method: MethodOpt = DEFAULT_METHOD,
    graph: Annotated[bool, typer.Option(help="With a verifying method, store the new images' verified "
                                             "neighbours (imgsim index graph) after embedding.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
):
    """Embed every image under FOLDER (idempotent: only what is not stored yet)."""
    report = run_ingest(folder, model, labels, method, quiet, graph)
    if report.failed:
        raise typer.Exit(EXIT_FAILURES)


def run_ingest(folder: Path, model, labels, method, quiet=False, graph=True):
    from app import migrate
    from app.db import get_engine
    from app.ingest import Ingestor
    from app.labels import LabelsError, read_labels
    from app.weights import WeightsUnavailable

    specs, meth = _specs(model), _method(method)
    if not folder.is_dir():
        fail(f"{folder}: not a folder")
    try:
        label_rows = read_labels(labels) if labels else None
    except LabelsError as exc:
        fail(str(exc))
    migrate.upgrade()
    ingestor = Ingestor(get_engine(), specs, meth)
    try:
        with _progress(quiet) as update:
            report = ingestor.run(folder, label_rows, on_failure=lambda f: err.print(
                f"[yellow]failed[/yellow] {f.path}: {f.reason}", highlight=False, soft_wrap=True), progress=update)
    except WeightsUnavailable as exc:
        fail(str(exc))
    if not quiet:
        per_model = ", ".join(f"{k} {v}" for k, v in report.embedded.items()) or "none"
        out.print(f"found {report.found}: new {report.new_images}, skipped {report.skipped}, "
                  f"failed {len(report.failed)}; embeddings written: {per_model}; "
                  f"{report.seconds:.1f} s ({report.images_per_second:.1f} images/s)", soft_wrap=True)
    if graph and meth.local:
        for spec in specs:
            _graph_rows(get_engine(), spec, meth, rebuild=False, quiet=quiet)
    return report


class _progress:
    """A Rich progress bar with images/s, fed by the ingestor's (done, total) callback."""

    def __init__(self, quiet: bool, label: str = "embedding"):
        self.quiet, self.label = quiet, label

    def __enter__(self):
        if self.quiet:
            return lambda done, total: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=err)
        self.task = self.bar.add_task("ingest", total=None, rate="")
        self.bar.start()

        import time

        started = time.perf_counter()

        def update(done, total):
            rate = done / max(time.perf_counter() - started, 1e-9)
            self.bar.update(self.task, completed=done, total=total, rate=f"{rate:.1f} img/s")

        return update

    def __exit__(self, *exc):
        if not self.quiet:
            self.bar.stop()


@app.command()
def search(
    query: str = typer.Argument(..., help="An image file or a stored image id."),
    model: Annotated[Optional[str], typer.Option("--model", "-m")] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=10000)] = 10,
    method: MethodOpt = DEFAULT_METHOD,
    as_json: Annotated[bool, typer.Option("--json")] = False,
):
    """Rank stored images by cosine distance to QUERY."""
    from app.search import QueryError, similar
    from app.images import ImageError
    from app.weights import WeightsUnavailable

    spec = _specs([model] if model else None)[0]
    _method(method)
    try:
        hits = similar(query, spec.name, k, method)
    except (QueryError, ImageError, WeightsUnavailable) as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps([{"path": h.path, "distance": h.distance, "label": h.label, "id": h.image_id,
                           "inliers": h.inliers, "score": h.score} for h in hits], ensure_ascii=False, indent=2))
        return
    print_ranking(hits, f"{spec.name} / {method}")


@app.command()
def methods(as_json: Annotated[bool, typer.Option("--json")] = False):
    """List the descriptors, steps and named methods."""
    from app.methods import ALIASES, DESCRIPTORS, SHORTLIST

    rows = [{"name": d.name, "kind": "descriptor", "description": d.description} for d in DESCRIPTORS.values()]
    rows += [{"name": "@SIDE", "kind": "size", "description": "after gem, gem-ms or rmac: longest side in px "
                                                               "(64-2048), e.g. gem@768"},
             {"name": "+w", "kind": "step", "description": "PCA-whitening learned on the collection (imgsim index whiten)"},
             {"name": "+dba", "kind": "step", "description": "database-side augmentation, top 3, alpha 3 (imgsim index dba)"},
             {"name": "+qe", "kind": "step", "description": "alpha query expansion (top 3, alpha 3)"},
             {"name": "+sift", "kind": "step", "description": f"SIFT + RANSAC verification of the top {SHORTLIST}, "
                                                                      "graph-expanded (imgsim index graph)"},
             {"name": "+orb", "kind": "step", "description": f"ORB + RANSAC verification of the top {SHORTLIST}, "
                                                                     "graph-expanded"}]
    rows += [{"name": a, "kind": "alias", "description": f"= {m}" + (" (default)" if a == DEFAULT_METHOD else "")}
             for a, m in ALIASES.items()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "kind", "description")
    for r in rows:
        table.add_row(r["name"], r["kind"], r["description"])
    out.print(table)


def print_ranking(hits, title: str, relevant: set[int] | None = None):
    verified = any(h.inliers is not None for h in hits)
    table = Table("rank", "distance", *(["inliers", "score"] if verified else []), "label", title=title,
                  title_justify="left")
    table.add_column("path", overflow="fold")
    for rank, h in enumerate(hits, 1):
        mark = " ✓" if relevant and h.image_id in relevant else ""
        inliers = (["" if h.inliers is None else str(h.inliers), "" if h.score is None else f"{h.score:.1f}"]
                   if verified else [])
        table.add_row(str(rank), f"{h.distance:.6f}", *inliers, (h.label or "") + mark, h.path)
    out.print(table)


index_app = typer.Typer(help="Collection-level index steps.", no_args_is_help=True)
app.add_typer(index_app, name="index")


@index_app.command("whiten")
def index_whiten(
    model: Annotated[Optional[str], typer.Option("--model", "-m")] = None,
    method: Annotated[str, typer.Option("--method", help="Descriptor to whiten (gem, gem-ms, rmac).")] = "gem",
):
    """Fit PCA-whitening on the stored vectors and write the whitened rows (method DESCRIPTOR+w)."""
    from app import migrate
    from app.db import get_engine
    from app.whiten import WhiteningError, whiten_collection

    spec, meth = _specs([model] if model else None)[0], _method(method)
    migrate.upgrade()
    try:
        result = whiten_collection(get_engine(), spec, meth.raw)
    except WhiteningError as exc:
        fail(str(exc))
    out.print(f"{result['model']}/{result['method']}: version {result['version']} fitted on "
              f"{result['n_images']} images")


@index_app.command("dba")
def index_dba(
    model: Annotated[Optional[str], typer.Option("--model", "-m")] = None,
    method: Annotated[str, typer.Option("--method", help="A method with +dba (gem+dba, gem+w+dba, ...).")]
    = "gem+w+dba",
):
    """Database-side augmentation: write each image's vector averaged with its nearest neighbours."""
    from app import migrate
    from app.db import get_engine
    from app.dba import AugmentError, augment_collection

    spec, meth = _specs([model] if model else None)[0], _method(method)
    migrate.upgrade()
    try:
        result = augment_collection(get_engine(), spec, meth)
    except AugmentError as exc:
        fail(str(exc))
    out.print(f"{result['model']}/{result['method']}: {result['n_images']} images augmented")


@index_app.command("graph")
def index_graph(
    model: Annotated[Optional[str], typer.Option("--model", "-m")] = None,
    method: Annotated[str, typer.Option("--method", help="The verifying method whose shortlist and local "
                                                         "features build the graph.")] = DEFAULT_METHOD,
    rebuild: Annotated[bool, typer.Option(help="Recompute every row, not only those of new images.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
):
    """Store each image's spatially verified neighbours; verified searches expand through them."""
    from app import migrate
    from app.db import get_engine

    spec, meth = _specs([model] if model else None)[0], _method(method)
    migrate.upgrade()
    if meth.local is None:
        fail(f"method {method} does not verify: use one with +sift or +orb (e.g. verified)")
    _graph_rows(get_engine(), spec, meth, rebuild, quiet)


def _graph_rows(engine, spec, method, rebuild: bool, quiet: bool) -> None:
    """Match-graph rows with a progress bar (images without a row, or all with ``rebuild``)."""
    from app.graph import update_graph

    with _progress(quiet, "verifying") as update:
        result = update_graph(engine, spec, method, rebuild, update)
    if not quiet or rebuild:
        out.print(f"match graph {result['model']}/{result['method']}: rows for {result['images']} images, "
                  f"{result['edges']} verified edges")


@app.command()
def duplicates(
    model: Annotated[Optional[str], typer.Option("--model", "-m")] = None,
    method: Annotated[str, typer.Option("--method", help="Vectors to compare; with +sift/+orb pairs are verified.")]
    = DEFAULT_METHOD,
    threshold: Annotated[float, typer.Option(help="Largest cosine distance of a pair.", min=0.0, max=2.0)] = 0.1,
    as_json: Annotated[bool, typer.Option("--json")] = False,
):
    """List groups of near-duplicate images (the same item) among the stored ones."""
    from app import migrate
    from app.db import get_engine
    from app.duplicates import find_duplicates

    spec, meth = _specs([model] if model else None)[0], _method(method)
    migrate.upgrade()
    found = find_duplicates(get_engine(), spec, meth, threshold)
    if as_json:
        print(json.dumps(found, ensure_ascii=False, indent=2))
        return
    table = Table("group", "id", "label", title=f"{len(found)} groups ({spec.name} / {meth.name}, "
                  f"distance <= {threshold})", title_justify="left")
    table.add_column("path", overflow="fold")
    for n, group in enumerate(found, 1):
        for item in group:
            table.add_row(str(n), str(item["id"]), item["label"] or "", item["path"])
    out.print(table)


@app.command()
def failures(as_json: Annotated[bool, typer.Option("--json")] = False):
    """List the files that could not be ingested, with the reason."""
    from app import migrate, store
    from app.db import get_engine

    migrate.upgrade()
    with get_engine().connect() as conn:
        rows = store.list_failures(conn)
    if as_json:
        print(json.dumps(rows, default=str, ensure_ascii=False, indent=2))
        return
    table = Table("when", "reason")
    table.add_column("path", overflow="fold")
    for r in rows:
        table.add_row(r["failed_at"].strftime("%Y-%m-%d %H:%M:%S"), r["reason"], r["path"])
    out.print(table)


def _print_metrics(rows, title="metrics"):
    table = Table("model", "method", "mAP", "P@1", "P@R", "recall@1", "recall@k", "queries", "embed ms/img",
                  title=title, title_justify="left")
    for r in rows:
        table.add_row(r["model"], r["method"], f"{r['map']:.3f}", f"{r['p_at_1']:.3f}", f"{r['p_at_r']:.3f}",
                      f"{r['recall_at_1']:.3f}", f"{r['recall_at_k']:.3f} (k={r['k']})", str(r["n_queries"]),
                      "" if r.get("embed_ms") is None else f"{r['embed_ms']:.1f}")
    out.print(table)


@app.command()
def evaluate(
    folder: Path,
    labels: Annotated[Path, typer.Option(help="CSV: filename,group[,role] (role: query, database, both).")],
    model: Annotated[Optional[str], typer.Option("--model", "-m")] = None,
    method: MethodOpt = DEFAULT_METHOD,
    k: Annotated[int, typer.Option("-k", min=1, help="k of recall@k.")] = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
):
    """Ingest FOLDER if needed, search with every labelled query, report mAP, P@1, P@R, recall@1/@k."""
    from app import evaluate as ev
    from app import migrate
    from app.db import get_engine
    from app.labels import LabelsError
    from app.weights import WeightsUnavailable

    spec, meth = _specs([model] if model else None)[0], _method(method)
    migrate.upgrade()
    try:
        result = ev.evaluate(get_engine(), folder, labels, spec, meth, k=k)
    except (LabelsError, ev.EvaluationError, WeightsUnavailable) as exc:
        fail(str(exc))
    row = {**result.as_dict(), "dataset": str(folder)}
    if as_json:
        print(json.dumps(row, indent=2))
        return
    _print_metrics([row], f"{folder}")
    if result.missing:
        err.print(f"{len(result.missing)} labelled files are not stored (see imgsim failures)")


@app.command()
def compare(
    folder: Path,
    labels: Annotated[Path, typer.Option(help="CSV: filename,group[,role].")],
    models: Annotated[str, typer.Option(help="'all' or a comma-separated list.")] = "all",
    query: Annotated[Optional[str], typer.Option(help="File (as named in the CSV) for the ranked tables.")] = None,
    method: Annotated[str, typer.Option("--method", "--methods", help="One method or a comma-separated list.")]
    = DEFAULT_METHOD,
    k: Annotated[int, typer.Option("-k", min=1)] = 10,
    top: Annotated[int, typer.Option(help="Rows of each ranked table.")] = 20,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the HTML report and PNG go.")] = Path("out/compare"),
):
    """Compare models (and methods) on FOLDER: ranked tables, a metrics table, an HTML report, a PNG sheet."""
    from app.registry import UnknownModel, resolve_models

    try:
        specs = resolve_models(models)
    except UnknownModel as exc:
        fail(str(exc))
    run_compare(folder, labels, specs, [_method(m.strip()) for m in method.split(",")], query, k, top, out_dir)


def run_compare(folder, labels, specs, meths, query, k, top, out_dir):
    from app import compare as cmp
    from app import migrate, report
    from app.db import get_engine
    from app.labels import LabelsError

    migrate.upgrade()

    def show(result):
        relevant = result.evaluation.relevant.get(result.query_hits[0].image_id) if result.query_hits else None
        print_ranking(result.query_hits[:top + 1], f"{result.evaluation.model} / {result.evaluation.method}: "
                      f"query {query or 'first labelled'}", relevant)

    try:
        comparison = cmp.compare(get_engine(), folder, labels, specs, meths, query, k, top, on_model=show)
    except (LabelsError, ValueError) as exc:
        fail(str(exc))
    rows = [{**r.evaluation.as_dict(), "embed_ms": r.embed_ms} for r in comparison.ranked()]
    _print_metrics(rows, f"{folder} (best first)")
    for name, reason in comparison.skipped.items():
        err.print(f"skipped {name}: {reason}", highlight=False, soft_wrap=True)
    if comparison.results:
        html_path = report.write_html(comparison, out_dir / "report.html", top=min(top, 10))
        png_path = report.write_contact_sheet(comparison, out_dir / "contact_sheet.png")
        out.print(f"report: {html_path.resolve()}\ncontact sheet: {png_path.resolve()}")
    return comparison


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Where the photo set and reports go.")] = Path("out/demo"),
    model: Annotated[Optional[str], typer.Option("--model", "-m")] = None,
):
    """The calendar photo set: the original study's method next to the recommended one."""
    from rich.columns import Columns

    from app.synth import make_calendar_set

    spec = _specs([model] if model else None)[0]
    folder = out_dir / "calendar"
    labels_csv = make_calendar_set(folder)
    out.print(f"generated {folder}: 1-9.jpg show the calendar's january page, 10-18.jpg its february page")
    baseline, best = _method("global"), _method(DEFAULT_METHOD)
    comparison = run_compare(folder, labels_csv, [spec], [baseline, best], "1.jpg", 10, 17, out_dir)
    by_method = {r.evaluation.method: r for r in comparison.results}
    tables = []
    for meth in (baseline, best):
        r = by_method[meth.name]
        failures = sum(1 for q, hits in r.evaluation.rankings.items()
                       if any(h.image_id not in r.evaluation.relevant[q] for h in hits[:len(r.evaluation.relevant[q])]))
        tables.append(f"[b]{meth.name}[/b]: {len(r.evaluation.queries) - failures}/{len(r.evaluation.queries)} "
                      f"queries rank every photo of their own page first; mAP {r.evaluation.summary.map:.3f}")
    out.print(Columns(tables, equal=True, expand=True))


def main():
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
