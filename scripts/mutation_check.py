"""Mutation check: break rules the test suite must defend, one at a time, and show that the
tests naming each rule fail.

Each mutation replaces one exact piece of text in a copy of the tree (never this checkout), runs
the tests that name the rule against the real database and models, and expects a failure. A
mutation whose text is not found is an error of this script (the code moved: update the table).
Prints a line per mutation; a whole run (no ``--only``) also writes docs/mutation.md.

    scripts/mutation_check [--only SUBSTRING]
"""
from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"


@dataclass(frozen=True)
class Mutation:
    rule: str
    path: str
    before: str
    after: str
    tests: tuple[str, ...]


MUTATIONS = [
    Mutation("RANSAC draws the samples a verifying model needs (always the most)", "app/describe/local.py",
             "    if share >= 1.0:\n        return most", "    if True:\n        return most",
             ("tests/test_shortcuts.py::test_ransac_draws_the_samples_a_verifying_model_needs",)),
    Mutation("a candidate is verified from 10 inliers (-> 3)", "app/describe/local.py",
             "MIN_INLIERS = 10", "MIN_INLIERS = 3", ("tests/test_retrieval_rerank.py",)),
    Mutation("EXIF orientation is applied (ignored)", "app/files/images.py",
             "image = ImageOps.exif_transpose(image)", "image = image",
             ("tests/test_bad_input.py::test_exif_orientation_is_applied",)),
    Mutation("whitening shrinks by the mean eigenvalue (no shrinkage)", "app/describe/vectors.py",
             "shrunk = eigval + eigval.mean()", "shrunk = eigval", ("tests/test_describe_vectors.py",)),
    Mutation("images: ON CONFLICT DO NOTHING (dropped)", "app/store/images.py",
             "ON CONFLICT (collection_id, sha256) DO NOTHING RETURNING id", "RETURNING id",
             ("tests/test_faults.py::test_concurrent_inserts_count_each_new_image_once",)),
    Mutation("new images counted from the insert's own rows (from all rows)", "app/store/images.py",
             "inserted = len(result.all())", "inserted = len(rows)",
             ("tests/test_faults.py::test_concurrent_inserts_count_each_new_image_once",)),
    Mutation("only retryable errors are retried (all are)", "app/store/retry.py",
             "if delay is None or not retryable(exc):", "if delay is None:", ("tests/test_store_retry.py",)),
    Mutation("errors are one line (tracebacks)", "app/cli/boundary.py",
             'if DEBUG["on"]:', "if True:",
             ("tests/test_faults.py::test_database_faults_are_one_line_without_the_password",)),
    Mutation("a second collection job waits for the first (does not)", "app/store/locks.py",
             'if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():', "if False:",
             ("tests/test_faults.py::test_two_whitenings_at_once_wait_for_each_other",)),
    Mutation("a bulk load drops its index while it writes (never drops it)", "app/ingestion/writer.py",
             "embeddings.drop_index(conn, spec, method)", "pass",
             ("tests/test_faults.py::test_a_bulk_load_drops_its_index_only_while_it_writes",)),
    Mutation("a small load keeps the index (drops it for any load)", "app/ingestion/writer.py",
             "if new >= embeddings.count_images(conn, spec, self.method.raw):", "if True:",
             ("tests/test_faults.py::test_a_bulk_load_drops_its_index_only_while_it_writes",)),
    Mutation("a backslash in a name is escaped (not)", "app/files/paths.py",
             '_STORE = {0x5C: "\\\\\\\\", ', "_STORE = {",
             ("tests/test_faults.py::test_path_text_is_one_to_one_and_reversible",)),
    Mutation("label files are read with a byte bound (no bound check)", "app/files/labels.py",
             "if len(data) > max_bytes:", "if False:",
             ("tests/test_faults.py::test_labels_are_read_with_a_bound",)),
    Mutation("the stored size is the photo's (the decode's)", "app/ingestion/reader.py",
             "width, height = photo_size(data)", "width, height = image.width, image.height",
             ("tests/test_faults.py::test_stored_size_is_the_photos_not_the_reduced_decodes",)),
    Mutation("a search reads its own method's rows (every method's)", "app/store/knn.py",
             'f"WHERE {alias}.method = {method_literal(stored)} AND {where} ORDER BY {order}"',
             'f"WHERE {where} ORDER BY {order}"',
             ("tests/test_retrieval_search.py::test_rows_of_other_methods_and_regions_never_reach_a_global_search",)),
    Mutation("query expansion leaves the query itself out (adds it)", "app/retrieval/shortlist.py",
             "top = [h for h in hits if h.distance > 1e-6][:QE_TOP]", "top = hits[:QE_TOP]",
             ("tests/test_retrieval_search.py::test_query_expansion_adds_the_top_three_results_other_than_the_query_"
              "itself",)),
    Mutation("a refit rewrites every whitened row (keeps the old ones)", "app/collection/whitening.py",
             "        embeddings.delete_embeddings(conn, spec, target, collection.id)\n", "",
             ("tests/test_collection.py::test_a_refit_rewrites_every_whitened_row_with_the_new_fit",)),
    Mutation("the down-migration deletes region rows (keeps them)",
             "alembic/versions/0003_regions_local_features_whitening.py",
             '        op.execute(f"DELETE FROM {table} WHERE region <> 0")\n', "",
             ("tests/test_store_migrations.py::test_downgrades_under_data_delete_exactly_what_the_later_schema_added",)),
    Mutation("without a graph, verification expands once through the best match (does not)",
             "app/retrieval/rerank.py", "    elif score:  # no graph", "    elif False:  # no graph",
             ("tests/test_retrieval_methods.py::test_without_a_graph_a_verified_search_expands_once_through_its_best_"
              "match",)),
    Mutation("a sync forgets only the files it did not see (every file below the folder)", "app/store/files.py",
             '        sql += " AND seen_at < :since"\n', "",
             ("tests/test_library.py::test_a_move_is_recognised_without_embedding_and_found_under_its_new_path_only",)),
    Mutation("an image goes with its last file (is kept)", "app/store/files.py",
             "    if not ids:\n        return 0\n    result = conn.execute(text(\"DELETE FROM images",
             "    if True:\n        return 0\n    result = conn.execute(text(\"DELETE FROM images",
             ("tests/test_library.py::test_a_deleted_file_is_never_returned_again_and_its_rows_are_gone",)),
    Mutation("a search sees only its collection (every collection)", "app/store/scope.py",
             'si.id = {image}) = :scope_c"]', 'si.id = {image}) IS NOT NULL"]',
             ("tests/test_library.py::test_collections_keep_the_same_file_apart",)),
    Mutation("a file with its stored size and mtime is not read again (always read)", "app/ingestion/reader.py",
             "(k.size, k.mtime_ns) == (w.size, w.mtime_ns)", "False",
             ("tests/test_library.py::test_a_move_is_recognised_without_embedding_and_found_under_its_new_path_only",)),
    Mutation("filtered searches scan on until k rows pass (stop at ef_search)", "app/store/knn.py",
             "set_config('hnsw.iterative_scan', 'strict_order', true)", "set_config('hnsw.iterative_scan', 'off', true)",
             ("tests/test_library.py::test_filters_return_k_rows_through_the_hnsw_index",)),
    Mutation("an unusable IMGSIM_HOME is refused in one line (not checked)", "app/store/db.py",
             "    prepare_home(pgdata)\n", "",
             ("tests/test_faults.py::test_an_unusable_home_is_refused_in_one_line",)),
    Mutation("an edge is read from both sides (from its own row only)", "app/store/graph.py",
             "in listed_in(conn, model, kind, ids).items():", "in {}.items():",
             ("tests/test_collection.py::test_an_edge_is_read_from_both_sides_at_its_better_score",)),
    Mutation("both sides of an edge give its better score (the row's own)", "app/store/graph.py",
             "max(s, listed.get(n, s))", "s",
             ("tests/test_collection.py::test_an_edge_is_read_from_both_sides_at_its_better_score",)),
    Mutation("the unverified tail follows the query averaged with its verified images (the query alone)",
             "app/retrieval/rerank.py",
             "l2_normalize(query.vectors[0] + summed_vector(conn, spec, method.stored, list(score)))[0]",
             "query.vectors[0]",
             ("tests/test_retrieval_search.py::test_the_unverified_tail_follows_the_query_averaged_with_its_verified_"
              "images",)),
    Mutation("a stored image's neighbours include the rows that list it (its own row only)", "app/retrieval/rerank.py",
             "score = both_ways(score, {i: s for i, s in listed.items() if scope.allows(i)})", "pass",
             ("tests/test_collection.py::test_a_stored_image_finds_the_images_whose_rows_list_it",)),
    Mutation("the shortlist adds the nearest images of the query's quarter turns (does not)", "app/retrieval/rerank.py",
             "return hits[:SHORTLIST] + turned_hits(conn, spec, method, query, hits[:SHORTLIST], scope)",
             "return hits[:SHORTLIST]",
             ("tests/test_collection.py::test_a_photo_stored_turned_is_verified_through_the_turns_of_the_query",)),
    Mutation("ingest stores the turned vectors (does not)", "app/ingestion/writer.py",
             "write_turned(conn, spec.name, self.method.raw,", "(lambda *rows: None)(conn, spec.name, self.method.raw,",
             ("tests/test_collection.py::test_a_photo_stored_turned_is_verified_through_the_turns_of_the_query",)),
    Mutation("turned rows describe the image turned (upright)", "app/describe/methods.py",
             "[[np.rot90(a, k) for a in smaller] for k in QUARTER_TURNS]", "[smaller for k in QUARTER_TURNS]",
             ("tests/test_describe_backends.py::test_turned_rows_are_the_images_described_turned_by_a_quarter",)),
    Mutation("db check --repair describes turned the images without turned vectors (does not)",
             "app/collection/upkeep.py",
             "_describe_turns(engine, _collection(engine, finding.collection), spec, finding.method, progress)", "pass",
             ("tests/test_collection.py::test_db_check_describes_turned_the_images_stored_without_turned_vectors",)),
    Mutation("a stored image's turned vectors are whitened with its collection's fit (raw)", "app/retrieval/query.py",
             "return whiten_query(conn, collection, spec, method, turned)", "return turned",
             ("tests/test_collection.py::test_a_photo_stored_turned_is_verified_through_the_turns_of_the_query",)),
    Mutation("the second highest down a column counts the blocks before (this block's only)", "app/describe/matching.py",
             "np.maximum(self.second, first))", "np.maximum(-2.0, first))",
             ("tests/test_retrieval_rerank.py::test_the_product_seen_a_block_at_a_time_matches_as_the_whole_product",)),
    Mutation("candidates are verified in IMGSIM_VERIFY_THREADS threads (in the caller's)", "app/describe/local.py",
             "    if threads < 2:\n        return [work(item) for item in items]",
             "    if True:\n        return [work(item) for item in items]",
             ("tests/test_retrieval_rerank.py::test_candidates_verified_in_threads_are_verified_as_one_at_a_time",)),
    Mutation("an ingest refits when the collection doubled (on any growth)", "app/collection/whitening.py",
             "if stored >= REFIT_GROWTH * fitted:", "if stored > fitted:",
             ("tests/test_ingestion.py::test_an_ingest_fits_the_whitening_when_due_and_again_when_the_collection_"
              "doubled",)),
    Mutation("a worker's network is not pinned to the first cores (pinned)", "app/describe/backends.py",
             'config["ENABLE_CPU_PINNING"] = False', 'config["ENABLE_CPU_PINNING"] = True',
             ("tests/test_describe_backends.py::test_a_worker_network_takes_its_thread_count_unpinned",)),
    Mutation("the server requires its token (lets anyone in)", "app/web/server.py",
             "if not secrets.compare_digest(given.encode(), token.encode()):", "if False:",
             ("tests/test_web.py::test_a_token_is_required_when_one_is_set",)),
    Mutation("a server ingest stays under the allowed roots (any folder)", "app/web/jobs.py",
             "if not any(resolved.is_relative_to(root.resolve()) for root in roots):", "if False:",
             ("tests/test_web.py::test_an_ingest_of_a_server_folder_only_under_the_allowed_roots_with_progress",)),
]


def copy_tree(target: Path) -> None:
    shutil.copytree(ROOT, target, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "out", "__pycache__", "*.egg-info", "docs"))


def run(tree: Path, mutation: Mutation) -> tuple[bool, float, str]:
    """Apply ``mutation`` in ``tree``, run its tests, restore; (caught, seconds, last line)."""
    path = tree / mutation.path
    original = path.read_text()
    if original.count(mutation.before) != 1:
        raise SystemExit(f"{mutation.path}: the text of {mutation.rule!r} is not there once; update MUTATIONS")
    path.write_text(original.replace(mutation.before, mutation.after))
    started = time.perf_counter()
    try:
        proc = subprocess.run([str(PYTHON), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutation.tests],
                              cwd=tree, capture_output=True, text=True, timeout=900)
    finally:
        path.write_text(original)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode == 1, time.perf_counter() - started, lines[-1] if lines else proc.stderr[-200:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="Run the mutations whose rule contains this text.")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or args.only in m.rule]
    rows = []
    with tempfile.TemporaryDirectory(prefix="imgsim-mutation-") as tmp:
        tree = Path(tmp) / "tree"
        copy_tree(tree)
        clean = subprocess.run([str(PYTHON), "-c", "import app, sys; print(app.__file__)"], cwd=tree,
                               capture_output=True, text=True).stdout.strip()
        assert clean.startswith(str(tree)), f"the copy imports {clean}, not its own app/"
        for mutation in chosen:
            caught, seconds, last = run(tree, mutation)
            rows.append((mutation, caught, seconds, last))
            print(f"{'caught ' if caught else 'MISSED '} {seconds:6.1f} s  {mutation.rule}: {last}", flush=True)
    if not args.only:  # the report lists every rule
        write_report(rows)
    if not all(caught for _, caught, _, _ in rows):
        raise SystemExit(1)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_report(rows) -> None:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Mutation check", "",
        f"`scripts/mutation_check` on {when}, {cpu_name()}: each rule below was "
        "broken in a copy of the tree and the tests that name it were run against the real database and models.",
        "", "| rule (mutation) | file | tests | caught | s |", "|---|---|---|---|---|",
    ]
    for m, caught, seconds, _ in rows:
        tests = ", ".join(f"`{t.split('::')[-1]}`" for t in m.tests)
        lines.append(f"| {m.rule} | `{m.path}` | {tests} | {'yes' if caught else '**no**'} | {seconds:.0f} |")
    (ROOT / "docs" / "mutation.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
