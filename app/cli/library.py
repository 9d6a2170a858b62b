"""Commands about what the library holds: ``collections`` (list, drop), ``remove``, ``watch``."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from app import api
from app.cli.common import (DEFAULT_COLLECTION, DEFAULT_METHOD, CollectionOpt, JsonOpt, MethodOpt, QuietOpt, err, fail,
                            fail_with, method, out)
from app.cli.render import print_failure, print_json, print_table
from app.files.paths import one_line
from app.ingestion.watch import Watch, follow
from app.store.collections import CollectionError

collections_app = typer.Typer(help="Collections: named sets of photos, searched apart.", invoke_without_command=True)


@collections_app.callback()
def collections_list(ctx: typer.Context, as_json: JsonOpt = False):
    """List the collections with their numbers of files, images (distinct contents) and failures."""
    if ctx.invoked_subcommand:
        return
    rows = api.collections()
    if as_json:
        return print_json(rows)
    print_table(["name", "files", "images", "failures", "created"],
                [[one_line(r["name"]), str(r["files"]), str(r["images"]), str(r["failures"]),
                  r["created_at"].strftime("%Y-%m-%d %H:%M")] for r in rows])


@collections_app.command("drop")
def collections_drop(name: str, as_json: JsonOpt = False):
    """Delete collection NAME with its files, images, vectors, fits and match graph."""
    try:
        result = api.drop_collection(name)
    except CollectionError as exc:
        fail_with(exc)
    if as_json:
        return print_json(result)
    out.print(f"dropped {escape(one_line(result['name']))}: {result['files']} files, {result['images']} images",
              highlight=False)


def remove(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (every stored file below a folder).")],
    collection: CollectionOpt = DEFAULT_COLLECTION,
    as_json: JsonOpt = False,
):
    """Forget files of the collection (they need not exist any more); images no file holds are
    deleted with everything stored for them. Exit 1 when an argument matched nothing."""
    try:
        result = api.remove(paths, collection)
    except CollectionError as exc:
        fail_with(exc)
    if as_json:
        print_json(result)
    else:
        out.print(f"removed {len(result['removed'])} files and {result['removed_images']} images from "
                  f"{escape(one_line(result['collection']))}", highlight=False)
    for given in result["unmatched"]:
        err.print(f"[yellow]not stored:[/yellow] {escape(one_line(given))}", highlight=False, soft_wrap=True)
    if result["unmatched"]:
        raise typer.Exit(1)


def watch(
    folder: Path,
    collection: CollectionOpt = DEFAULT_COLLECTION,
    method_name: MethodOpt = DEFAULT_METHOD,
    every: Annotated[float, typer.Option("--every", min=5.0, help="Seconds between full syncs, for mounts that "
                                                                   "send no file events (network shares).")] = 300.0,
    quiet: QuietOpt = False,
):
    """Ingest FOLDER as `ingest --sync` does, then follow it: new, changed, moved and deleted
    photos are synced within seconds of the last change (a burst of files is one sync). Ctrl-C stops."""
    if not folder.is_dir():
        fail(f"{folder}: not a folder")
    meth = method(method_name)
    root = folder.resolve()
    state = Watch(str(root), collection)

    def sync(path: Path):
        return api.ingest(path, None, meth, collection=collection, sync=True, on_failure=print_failure)

    def show(done: Watch) -> None:
        if quiet:
            return
        if done.error:
            err.print(f"[red]sync failed:[/red] {escape(one_line(done.error))}", highlight=False, soft_wrap=True)
            return
        last = done.last
        out.print(f"{time.strftime('%H:%M:%S')} {escape(one_line(collection))}: {last['found']} files, "
                  f"{last['new']} new, {last['removed']} removed, {last['failed']} failed "
                  f"({last['seconds']:.1f} s); watching {escape(one_line(str(root)))}", highlight=False)

    try:
        follow(root, sync, state, threading.Event(), every, on_sync=show)
    except CollectionError as exc:
        fail_with(exc)
