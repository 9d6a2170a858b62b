"""Where match-graph rows are computed: in this process, or in worker processes on this machine.

A row is one stored image run as a query of its collection (shortlist, verification,
background weighting); it depends only on the stored data, so any process that reaches the
database computes the same row. A process verifies a row's candidates in threads
(``IMGSIM_VERIFY_THREADS``, ``app.describe.local.in_threads``), and its rows share their
descriptor products (``SharedWork``: a pair's product serves both its rows), so one process
uses two cores better than two processes do, which compute the products of the pairs across
their slices twice (DVD, 150 images, 2 cores: 46 s against 49 s). Python's lock limits
what threads add beyond that, so a machine with more cores computes the rows in one worker
process per two cores (``IMGSIM_GRAPH_WORKERS``), each on a contiguous slice of the images
with its share of the threads. A failed worker fails the job (the rows written before stay).
``app.ingestion.distributed`` places the same work on Ray.
"""
from __future__ import annotations

import contextlib
import math
import os
import pickle
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from sqlalchemy import Engine

from app.config import get_settings, settings_environment
from app.describe.methods import Method
from app.describe.registry import ModelSpec
from app.retrieval.query import stored_query
from app.retrieval.rerank import direct_scores
from app.retrieval.shared import SharedWork
from app.store.db import engine_for
from app.store.retry import with_retry
from app.store.scope import Scope

BATCH = 32  # rows per transaction, and per task of a worker
# image id, its verified neighbours' scores, their same-item confidences
Row = tuple[int, dict[int, float], dict[int, float]]
# Where the rows are computed: (engine, collection id, model, method, image ids) -> batches of
# rows as they are done, in any order. Each row depends only on the stored data.
RowPlacement = Callable[[Engine, int, ModelSpec, Method, list[int]], Iterator[list[Row]]]


def graph_rows(engine: Engine, collection: int, spec: ModelSpec, method: Method, ids: Sequence[int],
               shared: SharedWork) -> list[Row]:
    """The rows of ``ids``: each image as a query of the collection, its verified neighbours."""
    rows = []
    with engine.connect() as conn:
        for image_id in ids:
            query = stored_query(conn, image_id, spec, method)
            rows.append((image_id, *(direct_scores(conn, spec, method, query, Scope(collection), shared)
                                     if query is not None else ({}, {}))))
            shared.done(image_id)
    return rows


def local_rows(engine: Engine, collection: int, spec: ModelSpec, method: Method,
               ids: list[int]) -> Iterator[list[Row]]:
    """The rows of ``ids`` on this machine: in ``IMGSIM_GRAPH_WORKERS`` processes where there is
    more than one batch of them, else here."""
    workers = min(get_settings().graph_workers, math.ceil(len(ids) / BATCH))
    if workers > 1:
        yield from process_rows(engine, collection, spec, method, ids, workers)
    else:
        yield from rows_here(engine, collection, spec, method, ids)


def rows_here(engine: Engine, collection: int, spec: ModelSpec, method: Method,
              ids: list[int]) -> Iterator[list[Row]]:
    """The rows of ``ids`` computed in this process, ``BATCH`` at a time, sharing their work."""
    shared = SharedWork(ids)
    for start in range(0, len(ids), BATCH):
        yield with_retry(lambda: graph_rows(engine, collection, spec, method, ids[start:start + BATCH], shared))


def slices(ids: list[int], count: int) -> list[list[int]]:
    """``ids`` cut into ``count`` contiguous parts of nearly equal size."""
    return [ids[k * len(ids) // count:(k + 1) * len(ids) // count] for k in range(count)]


class WorkerError(RuntimeError):
    pass


def process_rows(engine: Engine, collection: int, spec: ModelSpec, method: Method, ids: list[int],
                 workers: int) -> Iterator[list[Row]]:
    """The rows of ``ids`` computed by ``workers`` worker processes (``python -m
    app.collection.rows``), one contiguous slice each, yielded a batch at a time as they come.
    The workers are started afresh, not forked or spawned from this process: a fork would copy
    its threads and connections, and a spawn would run the caller's script again."""
    # each worker verifies in its share of the threads (the settings travel with the job)
    share = str(max(1, get_settings().verify_threads // workers))
    job = ({**settings_environment(), "IMGSIM_VERIFY_THREADS": share}, engine.url.render_as_string(hide_password=False),
           collection, spec, method)
    done: queue.Queue = queue.Queue()
    procs: list[subprocess.Popen] = []
    parts = slices(ids, workers)
    with contextlib.ExitStack() as stack:  # its files: what each worker wrote to stderr
        stack.callback(_stop, procs)
        for part in parts:
            errors = stack.enter_context(tempfile.TemporaryFile())
            proc = subprocess.Popen([sys.executable, "-m", "app.collection.rows"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=errors, env=worker_env())
            procs.append(proc)
            pickle.dump((*job, part), proc.stdin)
            proc.stdin.close()
            threading.Thread(target=_collect, args=(proc, errors, done), daemon=True).start()
        for _ in range(sum(math.ceil(len(part) / BATCH) for part in parts)):
            batch = done.get()
            if isinstance(batch, WorkerError):
                raise batch
            yield batch


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:  # the job stopped early
            proc.kill()
        proc.wait()


def worker_env() -> dict[str, str]:
    """A worker's environment: this one's, with the matrix library on one thread (the processes
    and their verification threads are the parallelism) and the project importable as it is here."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": path}


def _collect(proc: subprocess.Popen, errors, done: queue.Queue) -> None:
    """Hand each batch a worker writes to ``done``; a worker that stops early, as an error."""
    try:
        while True:
            done.put(pickle.load(proc.stdout))
    except Exception as exc:  # EOF: the worker ended; anything else: it died mid-write
        proc.wait()
        if proc.returncode != 0 or not isinstance(exc, EOFError):
            done.put(WorkerError(f"a match-graph worker stopped (exit {proc.returncode}): {_last_line(errors)}"))


def _last_line(errors) -> str:
    try:
        errors.seek(0)
        lines = errors.read().decode(errors="replace").strip().splitlines()
    except ValueError:  # the job had ended and closed the file
        return "stopped with its job"
    return lines[-1] if lines else "no message"


def work(source, sink) -> None:
    """A worker: read the job and its slice from ``source``, write the slice's rows to ``sink``
    a batch at a time (its pairs share their work)."""
    environment, url, collection, spec, method, part = pickle.load(source)
    os.environ.update(environment)
    get_settings.cache_clear()
    for rows in rows_here(engine_for(url), collection, spec, method, part):
        pickle.dump(rows, sink)
        sink.flush()


if __name__ == "__main__":
    results = os.fdopen(os.dup(1), "wb")  # the rows go here; anything a library prints, to stderr
    os.dup2(2, 1)
    try:
        work(sys.stdin.buffer, results)
    except Exception as exc:  # one line for the job's error (the first of the message)
        print((str(exc).strip().splitlines() or [type(exc).__name__])[0], file=sys.stderr)
        sys.exit(1)
