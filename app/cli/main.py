"""The ``imgsim`` command line: the commands a user runs day to day (the administrative ones
are in ``app.cli.admin``). Commands parse options, call ``app.api`` and print."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.columns import Columns
from rich.markup import escape

from app import api
from app.cli import admin, boundary, groups, library
from app.cli.groups import print_groups
from app.cli.common import (DEFAULT_COLLECTION, DEFAULT_METHOD, EXIT_FAILURES, AddressOpt, BenchCollectionOpt,
                            CollectionOpt, EngineOpt, JsonOpt, MethodOpt, ModelOpt, OneModelOpt, QuietOpt, WorkersOpt,
                            distributor, err, fail, fail_with, method, one_spec, out, specs)
from app.cli.render import (hit_dict, print_group_scores, print_failure, print_fit, print_graph, print_ingest, print_json, print_metrics,
                            print_ranking, progress)
from app.config import get_settings
from app.collection.groups import GroupingError
from app.describe.backends import BackendError, choose
from app.describe.registry import UnknownModel, resolve_models
from app.describe.weights import WeightsUnavailable
from app.evaluation.evaluate import EvaluationError
from app.evaluation.report import write_contact_sheet, write_html
from app.evaluation.synth import make_calendar_set
from app.files.images import ImageError
from app.files.paths import one_line
from app.files.labels import LabelsError
from app.retrieval.query import QueryError
from app.store.collections import CollectionError

app = typer.Typer(help="Image similarity search on PostgreSQL + pgvector.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.add_typer(admin.db_app, name="db")
app.add_typer(admin.models_app, name="models")
app.add_typer(admin.index_app, name="index")
app.add_typer(library.collections_app, name="collections")
app.command()(admin.methods)
app.command()(admin.failures)
app.command()(library.remove)
app.command()(library.watch)
app.command()(groups.groups)
app.command()(groups.decide)
app.command()(groups.duplicates)


@app.command()
def ingest(
    folder: Path,
    model: ModelOpt = None,
    labels: Annotated[Optional[Path], typer.Option(help="CSV with filename,label (or group).")] = None,
    method_name: MethodOpt = DEFAULT_METHOD,
    graph: Annotated[bool, typer.Option(help="With a verifying method, store the new images' verified "
                                             "neighbours (imgsim index graph) after embedding.")] = True,
    collection: CollectionOpt = DEFAULT_COLLECTION,
    sync: Annotated[bool, typer.Option(help="Also forget the collection's files below FOLDER that are gone "
                                            "(and images no file holds any more).")] = False,
    rehash: Annotated[bool, typer.Option(help="Read every file, also those whose size and modification time "
                                              "are unchanged.")] = False,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
):
    """Record every image file under FOLDER and embed the new content (idempotent: copies and
    moved files are recognised by their content and not embedded again)."""
    chosen, meth = specs(model), method(method_name)
    if not folder.is_dir():
        fail(f"{folder}: not a folder")
    placement = distributor(engine, address, workers)
    try:
        with progress(quiet or as_json) as embedding, progress(quiet or as_json, "verifying") as verifying:
            report = api.ingest(folder, [s.name for s in chosen], meth, labels, graph,
                                on_failure=None if as_json else print_failure, progress=embedding,
                                graph_progress=verifying, collection=collection, sync=sync, rehash=rehash,
                                distributor=placement)
    except (LabelsError, WeightsUnavailable, CollectionError) as exc:
        fail_with(exc)
    if as_json:
        print_json(report.as_dict())
    elif not quiet:
        print_ingest(report)
        for fit in report.fits:
            print_fit(fit)
        for result in report.graph:
            print_graph(result)
    if report.failed:
        raise typer.Exit(EXIT_FAILURES)


@app.command()
def search(
    query: str = typer.Argument(..., help="An image file or a stored image id."),
    model: OneModelOpt = None,
    k: Annotated[int, typer.Option("-k", min=1, max=10000)] = 10,
    method_name: MethodOpt = DEFAULT_METHOD,
    max_distance: Annotated[Optional[float], typer.Option(min=0.0, max=2.0, help="Only results within this "
                                                                               "cosine distance.")] = None,
    collection: CollectionOpt = DEFAULT_COLLECTION,
    label: Annotated[Optional[str], typer.Option(help="Only images with a file of this label.")] = None,
    under: Annotated[Optional[Path], typer.Option(help="Only images with a file below this folder.")] = None,
    min_confidence: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="Only verified results at "
                                                            "least this confident to show the query's item.")] = None,
    as_json: JsonOpt = False,
):
    """Rank the collection's images by cosine distance to QUERY."""
    spec, meth = one_spec(model), method(method_name)
    try:
        answer = api.search(query, spec.name, k, meth.name, collection, label, under, max_distance,
                            min_confidence=min_confidence)
    except (QueryError, ImageError, WeightsUnavailable, CollectionError) as exc:
        fail_with(exc)
    if as_json:
        return print_json({"model": answer.model, "method": answer.method, "resolved": answer.resolved,
                           "collection": answer.collection, "hits": [hit_dict(h) for h in answer.hits]})
    print_ranking(answer.hits, f"{spec.name} / {method_name} in {answer.collection}")


@app.command()
def evaluate(
    folder: Path,
    labels: Annotated[Path, typer.Option(help="CSV: filename,group[,role] (role: query, database, both).")],
    model: OneModelOpt = None,
    method_name: MethodOpt = DEFAULT_METHOD,
    k: Annotated[int, typer.Option("-k", min=1, help="k of recall@k.")] = 10,
    collection: BenchCollectionOpt = None,
    with_groups: Annotated[bool, typer.Option("--groups", help="Also group the photos of one item and score the "
                                                               "groups against the labels.")] = False,
    as_json: JsonOpt = False,
):
    """Ingest FOLDER into its own collection if needed, search with every labelled query file,
    report mAP, P@1, P@R, recall@1/@k (and with --groups: pair precision and recall, B-cubed F1, and
    how far the stored edges reach: the true pairs with an edge, and those joined through edges)."""
    spec, meth = one_spec(model), method(method_name)
    try:
        result = api.evaluate(folder, labels, spec.name, meth, k, collection=collection)
        scores = api.group_scores(result.collection, spec.name, meth) if with_groups else None
    except (LabelsError, EvaluationError, WeightsUnavailable, CollectionError, GroupingError) as exc:
        fail_with(exc)
    row = {**result.as_dict(), "dataset": str(folder), **({"groups": scores.as_dict()} if scores else {})}
    if as_json:
        return print_json(row)
    print_metrics([row], f"{folder} (collection {result.collection})")
    if scores:
        print_group_scores(scores, f"{folder}: groups of the same item")
    if result.missing:
        err.print(f"{len(result.missing)} labelled files are not stored (see imgsim failures)")
    for names in result.conflicts:
        err.print(f"[yellow]labels:[/yellow] {escape(one_line(', '.join(names)))} hold the same content but are "
                  f"labelled with different groups", highlight=False, soft_wrap=True)


@app.command()
def compare(
    folder: Path,
    labels: Annotated[Path, typer.Option(help="CSV: filename,group[,role].")],
    models: Annotated[str, typer.Option(help="'all' or a comma-separated list.")] = "all",
    query: Annotated[Optional[str], typer.Option(help="File (as named in the CSV) for the ranked tables.")] = None,
    method_names: Annotated[str, typer.Option("--method", "--methods", help="One method or a comma-separated "
                                                                            "list.")] = DEFAULT_METHOD,
    k: Annotated[int, typer.Option("-k", min=1)] = 10,
    top: Annotated[int, typer.Option(help="Rows of each ranked table.")] = 20,
    out_dir: Annotated[Path, typer.Option("--out", help="Where the HTML report and PNG go.")] = Path("out/compare"),
    collection: BenchCollectionOpt = None,
):
    """Compare models (and methods) on FOLDER: ranked tables, a metrics table, an HTML report, a PNG sheet."""
    try:
        names = [s.name for s in resolve_models(models)]
    except UnknownModel as exc:
        fail(str(exc))
    run_compare(folder, labels, names, [method(m.strip()) for m in method_names.split(",")], query, k, top, out_dir,
                collection)


def run_compare(folder: Path, labels: Path, models: list[str], meths, query, k: int, top: int, out_dir: Path,
                collection: str | None = None):
    """Compare, printing each pair's ranked table as it finishes; then the metrics and the reports."""
    def show(result):
        relevant = result.relevant
        print_ranking(result.query_hits[:top + 1], f"{result.evaluation.model} / {result.evaluation.method}: "
                      f"query {query or 'first labelled'}", relevant)

    try:
        comparison = api.compare(folder, labels, models, meths, query, k, top, on_model=show, collection=collection)
    except (LabelsError, ValueError) as exc:
        fail_with(exc)
    print_metrics([{**r.evaluation.as_dict(), "embed_ms": r.embed_ms} for r in comparison.ranked()],
                  f"{folder} (best first)")
    for name, reason in comparison.skipped.items():
        err.print(f"skipped {name}: {reason}", highlight=False, soft_wrap=True)
    if comparison.results:
        html_path = write_html(comparison, out_dir / "report.html", top=min(top, 10))
        png_path = write_contact_sheet(comparison, out_dir / "contact_sheet.png")
        out.print(f"report: {html_path.resolve()}\ncontact sheet: {png_path.resolve()}")
    return comparison


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Where the photo set and reports go.")] = Path("out/demo"),
    model: OneModelOpt = None,
):
    """The calendar photo set: the original study's method next to the recommended one."""
    spec = one_spec(model)
    folder = out_dir / "calendar"
    labels_csv = make_calendar_set(folder)
    out.print(f"generated {folder}: 1-9.jpg show the calendar's january page, 10-18.jpg its february page")
    baseline, best = method("global"), method(DEFAULT_METHOD)
    comparison = run_compare(folder, labels_csv, [spec.name], [baseline, best], "1.jpg", 10, 17, out_dir)
    by_method = {r.evaluation.method: r.evaluation for r in comparison.results}
    lines = [f"[b]{m.name}[/b]: {by_method[m.name].perfect_queries()}/{len(by_method[m.name].queries)} "
             f"queries rank every photo of their own page first; mAP {by_method[m.name].summary.map:.3f}"
             for m in (baseline, best)]
    out.print(Columns(lines, equal=True, expand=True))
    where = by_method[best.name].collection
    found = api.groups(spec.name, best.name, where)
    print_groups(found, f"{len(found)} groups of the photos of one item (imgsim groups --collection {where})")


@app.callback()
def options(
    debug: Annotated[bool, typer.Option("--debug", envvar="IMGSIM_DEBUG",
                                        help="Show the traceback of an error.")] = False,
    backend: Annotated[Optional[str], typer.Option(
        help="Inference backend: auto (OpenVINO when installed), tensorflow or openvino "
             "[env: IMGSIM_BACKEND].")] = None,
):
    """Image similarity search on PostgreSQL + pgvector."""
    boundary.DEBUG["on"] = debug or boundary.DEBUG["on"]
    if backend is not None:
        os.environ["IMGSIM_BACKEND"] = backend
        get_settings.cache_clear()
    try:
        choose()
    except BackendError as exc:
        fail(str(exc))


def main():
    boundary.run(app)


if __name__ == "__main__":
    main()


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind (anything but localhost needs a token: "
                                           "IMGSIM_API_TOKEN, or one made and kept in IMGSIM_HOME).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    watch: Annotated[Optional[list[str]], typer.Option(
        "--watch", help="DIR or DIR=COLLECTION: ingest the folder and follow it while serving (repeatable).")] = None,
):
    """Run the HTTP API (the endpoints at /docs) and the web pages: search, match view, groups."""
    try:
        import uvicorn

        from app.web.guards import LOOPBACK_HOSTS, TOKEN_FILE, kept_token
        from app.web.server import create_app
    except ImportError:
        fail("imgsim serve needs the web extra: pip install 'imgsim[serve]'")
    settings = get_settings()
    folders = [_watched(given) for given in watch or ()]
    token = settings.api_token
    if host not in LOOPBACK and not token:  # a token of its own, kept for the next start, shown once
        token, made = kept_token(settings.home)
        if made:
            out.print(f"imgsim: open http://127.0.0.1:{port}/?token={token} (a token made for this server and kept "
                      f"in {settings.home / TOKEN_FILE}; set IMGSIM_API_TOKEN to choose your own)", highlight=False,
                      soft_wrap=True)
    hosts = settings.allowed_hosts
    if host in LOOPBACK:  # a loopback server answers only to loopback names (no DNS rebinding)
        hosts = (*LOOPBACK_HOSTS, *(hosts or ()))
    uvicorn.run(create_app(token=token or None, allowed_hosts=hosts, watch=folders), host=host, port=port,
                log_level="warning")


def _watched(given: str) -> tuple[Path, str]:
    """``DIR`` or ``DIR=COLLECTION`` -> (folder, collection)."""
    folder, _, collection = given.partition("=")
    if not Path(folder).is_dir():
        fail(f"--watch {given}: {folder} is not a folder")
    return Path(folder), collection or DEFAULT_COLLECTION
