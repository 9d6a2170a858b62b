"""Commands about what the library holds: ``collections`` (list, drop) and ``remove``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from app import api
from app.cli.common import DEFAULT_COLLECTION, CollectionOpt, JsonOpt, err, fail_with, out
from app.cli.render import print_json, print_table
from app.files.paths import one_line
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
