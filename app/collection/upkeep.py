"""``imgsim db check``: find what a stopped job or a concurrent one left undone, and repair it.

Findings, per model table: methods stored without their HNSW index (a first load stopped before
its build), indexes left invalid; per collection: ``+w`` rows missing where the descriptor has a
whitening fit, ``+dba`` rows missing where the collection was augmented, images of a verifying
method without turned vectors (stored before schema revision 0010), images without match-graph
rows where a graph exists; and for the database: a schema behind the code's
migrations, images no file holds, recorded failures.
``repair`` fixes each with the step that would have written it, under that step's locks.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from sqlalchemy import Engine

from app.collection.dba import augment_missing
from app.collection.graph import update_graph
from app.collection.turns import describe_turns
from app.collection.whitening import whiten_missing
from app.describe.methods import AUGMENTED, UnknownMethod, get_method, whitened_name
from app.describe.registry import MODELS, ModelSpec
from app.store import embeddings, health, migrate
from app.store.collections import Collection, collection_by_id, get_collection
from app.store.files import prune_images
from app.store.retry import with_retry


@dataclass
class Finding:
    kind: str  # revision | orphans | index | invalid-index | rows | turns | graph | failures
    model: str | None
    method: str | None
    count: int
    message: str
    repairable: bool = True
    repaired: bool = False
    index: str | None = None  # the catalog name of an invalid index
    collection: str | None = None  # rows and graph findings belong to a collection

    def as_dict(self) -> dict:
        return asdict(self)


def check(engine: Engine, url: str) -> list[Finding]:
    """Everything that needs attention (an empty list when the database is whole)."""
    current, heads = migrate.current(url), migrate.heads()
    if current not in heads:
        return [Finding("revision", None, None, 0, f"schema at revision {current or 'base'}, the code needs "
                                                   f"{', '.join(heads)}: run `imgsim db upgrade`")]
    findings: list[Finding] = []
    with engine.connect() as conn:
        for spec in MODELS.values():
            findings += _table_findings(conn, spec)
        failures = health.count_failures(conn)
        orphans = len(health.images_without_files(conn))
    if orphans:
        findings.append(Finding("orphans", None, None, orphans, f"{orphans} images have no file left; "
                                                                "--repair deletes them with their rows"))
    if failures:
        findings.append(Finding("failures", None, None, failures, f"{failures} files could not be ingested "
                                                                  f"(see `imgsim failures`)", repairable=False))
    return findings


def _table_findings(conn, spec: ModelSpec) -> list[Finding]:
    found = []
    stored = health.stored_methods(conn, spec)
    for name in health.invalid_indexes(conn, spec):
        found.append(Finding("invalid-index", spec.name, None, 0, f"{name} was left invalid by a stopped build",
                             index=name))
    for method, n in stored.items():  # indexes are per table: every collection shares them
        try:
            indexed = embeddings.has_index(conn, spec, method)
            get_method(method)
        except UnknownMethod:
            found.append(Finding("index", spec.name, method, n, f"rows of an unknown method {method!r}",
                                 repairable=False))
            continue
        if not indexed:
            found.append(Finding("index", spec.name, method, n, f"{n} images without an HNSW index"))
    by_collection = health.methods_by_collection(conn, spec) if stored else {}
    owed = [(c, d, whitened_name(d)) for c, d in health.whitened_descriptors(conn, spec.name) if (c, d) in by_collection]
    owed += [(c, m.removesuffix(f"+{AUGMENTED}"), m) for c, m in by_collection if m.endswith(f"+{AUGMENTED}")]
    for collection, source, target in owed:
        missing = len(embeddings.ids_without(conn, spec, source, target, collection))
        if missing:
            found.append(Finding("rows", spec.name, target, missing, f"{missing} images have {source} rows but "
                                 f"no {target} rows", collection=collection_by_id(conn, collection).name))
    for (collection, descriptor), ids in health.turns_owed(conn, spec).items():
        found.append(Finding("turns", spec.name, descriptor, len(ids),
                             f"{len(ids)} images have no turned vectors (stored before they were described "
                             f"turned); after --repair, `imgsim index graph --rebuild` lets their rows use them",
                             collection=collection_by_id(conn, collection).name))
    for collection, kind in health.graph_kinds(conn, spec.name):
        missing = health.graph_owed(conn, spec, kind, collection)
        if missing:
            found.append(Finding("graph", spec.name, f"gem+{kind}", missing,
                                 f"{missing} images have no match-graph rows with same-item confidences ({kind})",
                                 collection=collection_by_id(conn, collection).name))
    return found


def repair(engine: Engine, url: str, findings: list[Finding],
           progress: Callable[[int, int], None] | None = None) -> list[Finding]:
    """Fix what can be fixed, in dependency order (schema, indexes, rows, graph); marks each."""
    order = ["revision", "orphans", "invalid-index", "index", "rows", "turns", "graph"]
    for finding in sorted((f for f in findings if f.repairable), key=lambda f: order.index(f.kind)):
        spec = MODELS.get(finding.model) if finding.model else None
        if finding.kind == "revision":
            migrate.upgrade(url=url)
        elif finding.kind == "orphans":
            with_retry(lambda: _prune_orphans(engine))
        elif finding.kind == "invalid-index":
            with_retry(lambda: _drop_invalid(engine, spec, finding.index))
        elif finding.kind == "index":
            with_retry(lambda: _build_index(engine, spec, finding.method))
        elif finding.kind == "rows":
            _fill_rows(engine, _collection(engine, finding.collection), spec, finding.method)
        elif finding.kind == "turns":
            _describe_turns(engine, _collection(engine, finding.collection), spec, finding.method, progress)
        elif finding.kind == "graph":
            update_graph(engine, _collection(engine, finding.collection), spec, get_method(finding.method),
                         progress=progress)
        finding.repaired = True
    return findings


def _describe_turns(engine: Engine, collection: Collection, spec: ModelSpec, descriptor: str,
                    progress: Callable[[int, int], None] | None) -> None:
    with engine.connect() as conn:
        ids = health.turns_owed(conn, spec).get((collection.id, descriptor), [])
    describe_turns(engine, spec, descriptor, ids, progress)


def _prune_orphans(engine: Engine) -> None:
    with engine.begin() as conn:
        prune_images(conn, health.images_without_files(conn))


def _drop_invalid(engine: Engine, spec: ModelSpec, name: str) -> None:
    with engine.begin() as conn:
        health.drop_invalid_index(conn, spec, name)


def _build_index(engine: Engine, spec: ModelSpec, method: str) -> None:
    with engine.begin() as conn:
        embeddings.ensure_index(conn, spec, method)


def _collection(engine: Engine, name: str) -> Collection:
    with engine.connect() as conn:
        return get_collection(conn, name)


def _fill_rows(engine: Engine, collection: Collection, spec: ModelSpec, target: str) -> None:
    if target.endswith(f"+{AUGMENTED}"):
        with_retry(lambda: augment_missing(engine, collection.id, spec, target.removesuffix(f"+{AUGMENTED}")))
    else:
        whiten_missing(engine, collection, spec, get_method(target).raw)
