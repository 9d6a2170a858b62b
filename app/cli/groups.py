"""Commands that decide: ``groups`` (the photos of one item), ``decide`` (a person's word on
pairs) and ``duplicates`` (exact copies, and the groups)."""
from __future__ import annotations

import csv
import enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from app import api
from app.cli.common import (DEFAULT_COLLECTION, DEFAULT_METHOD, CollectionOpt, JsonOpt, OneModelOpt, fail_with,
                            method, one_spec, out)
from app.cli.render import print_json, print_table
from app.collection.groups import MIN_CONFIDENCE, Group, GroupingError
from app.files.paths import one_line
from app.store.collections import CollectionError

ConfidenceOpt = Annotated[float, typer.Option(
    "--min-confidence", min=0.0, max=1.0, help="Join a photo to a group only at this average confidence with its "
                                               "members (0.5: more likely the same item than not).")]
GROUP_ERRORS = (CollectionError, GroupingError, LookupError, ValueError)


def groups(
    model: OneModelOpt = None,
    collection: CollectionOpt = DEFAULT_COLLECTION,
    min_confidence: ConfidenceOpt = MIN_CONFIDENCE,
    export: Annotated[Optional[Path], typer.Option(help="Also write a CSV: group, path, decision, confidence, "
                                                        "keep.")] = None,
    as_json: JsonOpt = False,
):
    """Groups of the photos that show the same item, from the match graph (nothing is verified
    again), with each member's confidence and files; a person's decisions (`imgsim decide`) hold."""
    found = _groups(model, collection, min_confidence)
    if export:
        write_export(found, export)
    if as_json:
        return print_json({"collection": collection, "min_confidence": min_confidence,
                           "groups": [g.as_dict() for g in found]})
    print_groups(found, f"{len(found)} groups of the same item in {collection} (confidence >= {min_confidence})")
    if export:
        out.print(f"exported: {export.resolve()}")


def _groups(model: str | None, collection: str, min_confidence: float) -> list[Group]:
    try:
        return api.groups(one_spec(model).name, DEFAULT_METHOD, collection, min_confidence)
    except GROUP_ERRORS as exc:
        fail_with(exc)


def print_groups(found: list[Group], title: str) -> None:
    print_table(["group", "id", "confidence", "decision", "keep", "label"],
                [[str(g.number), str(m.id), f"{m.confidence:.2f}", m.decision or "", "keep" if m.keep else "",
                  one_line(m.label or ""), copies_note(m.path, m.paths)] for g in found for m in g.members],
                title, fold="path")


def copies_note(path: str, paths: list[str]) -> str:
    more = len(paths) - 1
    return one_line(path) + (f" (and {more} exact {'copy' if more == 1 else 'copies'})" if more else "")


def write_export(found: list[Group], path: Path) -> None:
    """One row per file of every member: group, path, decision, confidence, keep."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["group", "path", "decision", "confidence", "keep"])
        for g in found:
            for m in g.members:
                for p in m.paths:
                    writer.writerow([g.number, p, m.decision or "", f"{m.confidence:.4f}", int(m.keep and p == m.path)])


class Verdict(str, enum.Enum):
    same = "same"
    not_same = "not-same"
    forget = "forget"


def decide(
    verdict: Annotated[Verdict, typer.Argument(help="same, not-same, or forget (what was said before).")],
    image: Annotated[int, typer.Argument(help="A stored image id.", min=1)],
    others: Annotated[list[int], typer.Argument(help="The image ids it is (or is not) the same item as.", min=1)],
    collection: CollectionOpt = DEFAULT_COLLECTION,
    as_json: JsonOpt = False,
):
    """Say that IMAGE shows the same item as each of OTHERS, or not: later grouping (`imgsim
    groups`, the web page, `item_groups` in SQL) keeps to it, across regroups and ingests."""
    same = {Verdict.same: True, Verdict.not_same: False, Verdict.forget: None}[verdict]
    try:
        count = api.decide(image, others, same, collection)
    except GROUP_ERRORS as exc:
        fail_with(exc)
    if as_json:
        return print_json({"collection": collection, "verdict": verdict.value, "pairs": count})
    out.print(f"{verdict.value}: {count} {'pair' if count == 1 else 'pairs'} recorded in {collection}")


def duplicates(
    model: OneModelOpt = None,
    method_name: Annotated[str, typer.Option("--method", help="verified (default): the same-item groups; a method "
                                                              "that does not verify: pairs within --threshold.")]
    = DEFAULT_METHOD,
    threshold: Annotated[float, typer.Option(help="Largest cosine distance of a pair (methods that do not verify).",
                                             min=0.0, max=2.0)] = 0.1,
    min_confidence: ConfidenceOpt = MIN_CONFIDENCE,
    collection: CollectionOpt = DEFAULT_COLLECTION,
    as_json: JsonOpt = False,
):
    """Exact copies (one content in several files) and the groups of photos of the same item."""
    spec, meth = one_spec(model), method(method_name)
    try:
        copies = api.exact_copies(collection=collection)
        found = api.groups(spec.name, meth.name, collection, min_confidence) if meth.local \
            else api.duplicates(spec.name, meth.name, threshold, collection=collection)
    except GROUP_ERRORS as exc:
        fail_with(exc)
    if as_json:  # each group a list of its photos, as api.duplicates gives them
        return print_json({"collection": collection, "exact_copies": copies,
                           "groups": [g.as_dict()["members"] if isinstance(g, Group) else g for g in found]})
    print_table(["copy", "id", "label"], [[str(n), str(item["id"]), one_line(item["label"] or ""), one_line(item["path"])]
                                          for n, same in enumerate(copies, 1) for item in same],
                f"{len(copies)} contents held by several files in {collection}", fold="path")
    if meth.local:
        return print_groups(found, f"{len(found)} groups of the same item ({spec.name}, confidence >= {min_confidence})")
    print_table(["group", "id", "label"], [[str(n), str(item["id"]), one_line(item["label"] or ""),
                                            copies_note(item["path"], item["paths"])]
                                           for n, group in enumerate(found, 1) for item in group],
                f"{len(found)} groups ({spec.name} / {meth.name}, distance <= {threshold})", fold="path")
