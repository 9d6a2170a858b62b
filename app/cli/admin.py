"""Administrative commands: ``db``, ``models``, ``index`` (collection steps), ``methods``, ``failures``."""
from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape

from app import api
from app.cli.common import (DEFAULT_COLLECTION, DEFAULT_METHOD, AddressOpt, CollectionOpt, EngineOpt, JsonOpt,
                            OneModelOpt, QuietOpt, WorkersOpt, distributor, err, explain, fail, fail_with, method,
                            one_spec, out)
from app.cli.render import print_graph, print_json, print_table, progress
from app.collection.dba import AugmentError
from app.collection.graph import GraphError
from app.collection.whitening import WhiteningError
from app.config import get_settings
from app.describe.backbones import build_backbone
from app.describe.methods import ALIASES, DESCRIPTORS, SHORTLIST
from app.describe.registry import MODELS, UnknownModel, resolve_models
from app.describe.weights import WeightsUnavailable, weights_dir, weights_present, weights_source
from app.files.paths import one_line
from app.store import migrate
from app.store.collections import CollectionError
from app.store.db import libpq_url, stop_embedded
from app.store.embeddings import IndexKindError

db_app = typer.Typer(help="The database: migrations, URL, embedded server.", no_args_is_help=True)
models_app = typer.Typer(help="The model registry and its weights.", invoke_without_command=True)
index_app = typer.Typer(help="Collection-level index steps.", no_args_is_help=True)


# ---- db ---------------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")):
    """Apply migrations up to REVISION (default: head)."""
    migrate.upgrade(revision)
    out.print(f"database at revision {migrate.current()}")


@db_app.command("downgrade")
def db_downgrade(revision: str):
    """Revert migrations down to REVISION (``base`` empties the schema)."""
    migrate.downgrade(revision)
    out.print(f"database at revision {migrate.current() or 'base'}")


@db_app.command("check")
def db_check(
    repair: Annotated[bool, typer.Option(help="Fix what can be fixed: migrate, build missing indexes, write "
                                              "owed rows, finish the match graph.")] = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """Report missing or invalid HNSW indexes, rows a stopped job still owes, failures; exit 1 if
    something that can be repaired is left."""
    with progress(quiet or as_json, "verifying") as update:
        findings = api.check(repair, progress=update)
    if as_json:
        print_json(findings)
    else:
        print_findings(findings)
    if any(f["repairable"] and not f["repaired"] for f in findings):
        if not as_json and not repair:
            err.print("run `imgsim db check --repair` to fix these")
        raise typer.Exit(1)


def print_findings(findings: list[dict]) -> None:
    if not findings:
        out.print("database is whole: every stored method has its index, no rows are owed")
    for f in findings:
        state = "repaired" if f["repaired"] else "found" if f["repairable"] else "note"
        where = "/".join(x for x in (f["model"], f["method"]) if x)
        where += f" in {f['collection']}" if f.get("collection") else ""
        out.print(f"{state}: {escape(where) + ': ' if where else ''}{escape(f['message'])}", highlight=False,
                  soft_wrap=True)


@db_app.command("url")
def db_url():
    """Print the connection URL (``psql "$(imgsim db url)"``)."""
    print(libpq_url())


@db_app.command("stop")
def db_stop():
    """Stop the embedded PostgreSQL server."""
    if get_settings().database_url:
        fail("DATABASE_URL is set: there is no embedded server to stop")
    print("stopped" if stop_embedded(get_settings().pgdata) else "not running")


# ---- models -----------------------------------------------------------------------------------
@models_app.callback()
def models_list(ctx: typer.Context, as_json: JsonOpt = False):
    """List the registered backbones, their dimensions and whether their weights are present."""
    if ctx.invoked_subcommand:
        return
    rows = [{"name": s.name, "dim": s.dim, "input_size": s.input_size, "offline": s.offline,
             "weights": weights_source(s), "weights_present": weights_present(s)} for s in MODELS.values()]
    if as_json:
        return print_json(rows)
    print_table(["name", "dim", "input", "weights", "present"],
                [[r["name"], str(r["dim"]), str(r["input_size"]), r["weights"], "yes" if r["weights_present"] else "no"]
                 for r in rows])


@models_app.command("fetch")
def models_fetch(name: str = typer.Argument(..., help="Model name or 'all'.")):
    """Load weights into the cache (needs internet for keras.applications models)."""
    try:
        chosen = resolve_models(name)
    except UnknownModel as exc:
        fail(str(exc))
    failed = 0
    for spec in chosen:
        try:
            build_backbone(spec)
            out.print(f"{spec.name}: ok")
        except WeightsUnavailable as exc:
            failed += 1
            err.print(f"{spec.name}: {explain(exc)}", highlight=False, soft_wrap=True)
    out.print(f"weights cache: {weights_dir()}")
    if failed:
        raise typer.Exit(1)


# ---- index ------------------------------------------------------------------------------------
@index_app.command("whiten")
def index_whiten(
    model: OneModelOpt = None,
    method_name: Annotated[str, typer.Option("--method", help="Descriptor to whiten (gem, gem-ms, rmac).")] = "gem",
    collection: CollectionOpt = DEFAULT_COLLECTION,
):
    """Fit PCA-whitening on the stored vectors and write the whitened rows (method DESCRIPTOR+w)."""
    spec, meth = one_spec(model), method(method_name)
    try:
        result = api.whiten(spec.name, meth.raw, collection=collection)
    except (WhiteningError, CollectionError) as exc:
        fail_with(exc)
    where = escape(one_line(result["collection"]))
    out.print(f"{result['model']}/{result['method']} in {where}: version {result['version']} "
              f"fitted on {result['n_images']} images", highlight=False)


@index_app.command("dba")
def index_dba(
    model: OneModelOpt = None,
    method_name: Annotated[str, typer.Option("--method", help="A method with +dba (gem+dba, gem+w+dba, ...).")]
    = "gem+w+dba",
    collection: CollectionOpt = DEFAULT_COLLECTION,
):
    """Database-side augmentation: write each image's vector averaged with its nearest neighbours."""
    spec, meth = one_spec(model), method(method_name)
    try:
        result = api.augment(spec.name, meth.name, collection=collection)
    except (AugmentError, CollectionError) as exc:
        fail_with(exc)
    where = escape(one_line(result["collection"]))
    out.print(f"{result['model']}/{result['method']} in {where}: {result['n_images']} images augmented",
              highlight=False)


@index_app.command("graph")
def index_graph(
    model: OneModelOpt = None,
    method_name: Annotated[str, typer.Option("--method", help="The verifying method whose shortlist and local "
                                                              "features build the graph.")] = DEFAULT_METHOD,
    rebuild: Annotated[bool, typer.Option(help="Recompute every row, not only those of new images.")] = False,
    collection: CollectionOpt = DEFAULT_COLLECTION,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    quiet: QuietOpt = False,
):
    """Store each image's spatially verified neighbours; verified searches expand through them."""
    spec, meth = one_spec(model), method(method_name)
    placement = distributor(engine, address, workers)
    try:
        with progress(quiet, "verifying") as update:
            result = api.build_graph(spec.name, meth.name, rebuild, update, collection=collection,
                                     distributor=placement)
    except (GraphError, CollectionError) as exc:
        fail_with(exc)
    if not quiet or rebuild:
        print_graph(result)


@index_app.command("kind")
def index_kind(
    kind: Annotated[str, typer.Argument(help="vector (full precision), halfvec (half the bytes) or binary "
                                             "(bits re-ranked by the full vectors; whitened methods only).")],
    model: OneModelOpt = None,
    method_name: Annotated[str, typer.Option("--method", help="The stored method whose index it is.")] = "gem",
):
    """Keep a (model, method) HNSW index in another kind, rebuilding it now (all collections share it)."""
    spec, meth = one_spec(model), method(method_name)
    try:
        result = api.set_index_kind(kind, spec.name, meth.name)
    except IndexKindError as exc:
        fail_with(exc)
    state = "rebuilt" if result["rebuilt"] else "kept for its next build"
    out.print(f"{result['model']}/{result['method']}: {result['kind']} index {state}", highlight=False)


# ---- methods, failures ------------------------------------------------------------------------
STEP_HELP = [
    ("@SIDE", "size", "after gem, gem-ms or rmac: longest side in px (64-2048), e.g. gem@768"),
    ("+w", "step", "PCA-whitening learned on the collection (imgsim index whiten)"),
    ("+dba", "step", "database-side augmentation, top 3, alpha 3 (imgsim index dba)"),
    ("+qe", "step", "alpha query expansion (top 3, alpha 3)"),
    ("+sift", "step", f"SIFT + RANSAC verification of the top {SHORTLIST}, graph-expanded (imgsim index graph)"),
    ("+orb", "step", f"ORB + RANSAC verification of the top {SHORTLIST}, graph-expanded"),
]


def methods(as_json: JsonOpt = False):
    """List the descriptors, steps and named methods."""
    rows = [{"name": d.name, "kind": "descriptor", "description": d.description} for d in DESCRIPTORS.values()]
    rows += [{"name": n, "kind": k, "description": d} for n, k, d in STEP_HELP]
    rows += [{"name": a, "kind": "alias", "description": f"= {m}" + (" (default)" if a == DEFAULT_METHOD else "")}
             for a, m in ALIASES.items()]
    if as_json:
        return print_json(rows)
    print_table(["name", "kind", "description"], [[r["name"], r["kind"], r["description"]] for r in rows])


def failures(
    collection: Annotated[Optional[str], typer.Option("--collection", "-c", help="Only this collection's.")] = None,
    as_json: JsonOpt = False,
):
    """List the files that could not be ingested, with the reason."""
    try:
        rows = api.failures(collection=collection)
    except CollectionError as exc:
        fail_with(exc)
    if as_json:
        return print_json(rows)
    print_table(["when", "collection", "reason"],
                [[r["failed_at"].strftime("%Y-%m-%d %H:%M:%S"), one_line(r["collection"]), one_line(r["reason"]),
                  one_line(r["path"])] for r in rows], fold="path")
