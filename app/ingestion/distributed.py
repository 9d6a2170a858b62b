"""The Ray engine: the same ingest with its heavy steps placed on a Ray cluster.

The driver (the process that runs ``imgsim ingest --engine ray``) scans, hashes and plans as
the local engine does, since that needs the database's view of what is stored. Ray Data then
reads, decodes and embeds the files to do in ``map_batches`` on a pool of actors, each holding
the loaded networks; the described batches come back to the driver, whose writer stores each
one through the project's COPY writer in its own transaction, exactly as a local run does. So
the rows are the same, the run is idempotent by content hash and bad files are recorded. The
match-graph rows are computed by actors too (each reads the stored vectors and local features
from the one database and keeps the work its slice of images shares) and written by the driver.

Workers run with this process's imgsim settings (``app.config.settings_environment``), and the
photos must be readable at the same paths on every node (shared storage). Ray is imported
with this module, which only an ``--engine ray`` run imports.
"""
from __future__ import annotations

import logging
import math
import os
import pickle
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import ray
import ray.data
from sqlalchemy import Engine
from threadpoolctl import threadpool_limits

from app.collection.rows import BATCH, Row, graph_rows, slices
from app.ingestion.raywatch import guard
from app.config import get_settings, settings_environment
from app.describe.methods import Method
from app.describe.registry import ModelSpec
from app.ingestion.embed import Embed, Vectors
from app.ingestion.reader import Decoded, Work, batched, decode_work
from app.ingestion.report import Failure, IngestReport
from app.retrieval.shared import SharedWork
from app.store.db import engine_for
from app.store.retry import with_retry



@dataclass
class Described:
    """One file as a worker hands it back: decoded (without its network inputs) or failed."""
    item: Decoded | Failure
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # model name -> (R, dim) rows
    seconds: dict[str, float] = field(default_factory=dict)  # its share of the batch's network time


def start(address: str | None = None, cpus: int | None = None) -> None:
    """Join the Ray cluster at ``address`` (``auto``: the one started on this machine by ``ray
    start``; None: RAY_ADDRESS, or a cluster of this process's own with ``cpus`` CPUs). Once
    per process: a cluster already joined is kept."""
    if ray.is_initialized():
        return
    ray.init(address=address, num_cpus=None if address else cpus, include_dashboard=False,
             log_to_driver=False, logging_level=logging.ERROR)
    node = getattr(ray._private.worker, "_global_node", None)
    if node is not None and getattr(node, "head", False):  # a cluster of this process's own: it goes with it
        guard(node.get_session_dir_path())
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # set when ray.data is imported: after it
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the CLI shows its own progress
    context.print_on_execution_start = False


def worker_environment(threads: int) -> dict[str, str]:
    """What a worker process runs with: this process's imgsim settings and a thread count per
    network and for verification that fits the CPUs the worker asked for (the workers share
    each machine)."""
    threads = str(max(1, threads))
    return {**settings_environment(), "IMGSIM_INFERENCE_THREADS": threads, "IMGSIM_VERIFY_THREADS": threads,
            "TF_NUM_INTRAOP_THREADS": threads,
            "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}


def use_environment(environment: dict[str, str]) -> None:
    """Take the driver's settings in this worker process (before anything reads them). Handed
    to the actor rather than as a Ray runtime environment, which would start new processes
    (a second more per run) instead of taking the cluster's idle ones."""
    os.environ.update(environment)
    get_settings.cache_clear()


def describe_worker(environment: dict[str, str], models: list[ModelSpec], method: Method, pretrained: bool) -> type:
    """The actor class with its arguments bound (travelling with the class, so that a restarted
    actor does not depend on arguments kept in the object store)."""
    class Worker(DescribeWorker):
        def __init__(self):
            super().__init__(environment, models, method, pretrained)

    return Worker


class DescribeWorker:
    """A Ray Data actor: reads, decodes and embeds a batch of planned files."""

    def __init__(self, environment: dict[str, str], models: list[ModelSpec], method: Method, pretrained: bool):
        use_environment(environment)
        self.models, self.method = models, method
        self.embed = Embed(method, None, pretrained)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        settings = get_settings()
        decoded = [decode_work(pickle.loads(w), self.method, settings.max_pixels, settings.max_file_bytes)
                   for w in batch["work"]]
        images = [d for d in decoded if isinstance(d, Decoded)]
        timing = IngestReport()
        vectors = self.embed(self.models, images, timing) if images else {}
        out = {id(d): Described(replace(d, arrays={name: [] for name in d.arrays}) if isinstance(d, Decoded) else d)
               for d in decoded}
        for name, (members, rows) in vectors.items():
            share = timing.embed_seconds[name] / len(members)
            for d, matrix in zip(members, rows):
                out[id(d)].vectors[name] = matrix
                out[id(d)].seconds[name] = share
        return {"described": np.array(list(out.values()), dtype=object)}


def regroup(described: list[Described], report: IngestReport) -> tuple[list[Decoded | Failure], Vectors]:
    """Workers' results -> the local engine's form: (the batch, model name -> (images, rows))."""
    vectors: Vectors = {}
    for d in described:
        for name, matrix in d.vectors.items():
            members, rows = vectors.setdefault(name, ([], []))
            members.append(d.item)
            rows.append(matrix)
            report.embed_seconds[name] = report.embed_seconds.get(name, 0.0) + d.seconds[name]
    return [d.item for d in described], vectors


class GraphWorker:
    """A Ray actor that computes match-graph rows for its slice of the images (in order, so
    the slice's pairs share their work), reading from the one database."""

    def __init__(self, environment: dict[str, str], url: str, collection: int, spec: ModelSpec, method: Method,
                 ids: list[int]):
        use_environment(environment)
        # the matrix library's threads fit the CPUs the actor asked for (its default: every core)
        self.threads = threadpool_limits(get_settings().inference_threads or None)
        self.engine, self.collection, self.spec, self.method = engine_for(url), collection, spec, method
        self.shared = SharedWork(ids)

    def rows(self, ids: list[int]) -> list[Row]:
        return with_retry(lambda: graph_rows(self.engine, self.collection, self.spec, self.method, ids,
                                             self.shared))


class RayDistributor:
    """Places an ingest's describing and match-graph work on a Ray cluster: ``workers`` actors
    of ``cpus_per_worker`` CPUs each (default: as many as the cluster's CPUs allow), with
    ``gpus_per_worker`` GPUs each where the backend uses one."""

    def __init__(self, address: str | None = None, workers: int | None = None, cpus_per_worker: float = 1,
                 gpus_per_worker: float = 0):
        start(address, cpus=workers)
        cpus = ray.cluster_resources().get("CPU", 1)
        self.workers = workers or max(1, int(cpus // cpus_per_worker))
        self.cpus, self.gpus = cpus_per_worker, gpus_per_worker
        self.environment = worker_environment(math.ceil(cpus_per_worker))

    def describe(self, todo: list[Work], models: list[ModelSpec], method: Method, pretrained: bool,
                 report: IngestReport) -> Iterator[tuple[list[Decoded | Failure], Vectors]]:
        """The planned files, read, decoded and embedded by the actors, in batches of the
        writer's size (in the order they finish)."""
        if not todo:
            return
        size = get_settings().batch_size
        blocks = math.ceil(len(todo) / size)
        # Work items travel pickled (Arrow has no type for them), in blocks of at most the batch
        # size, each block one batch and one task: a batch size on map_batches would make Ray
        # bundle blocks until it is reached (two blocks of 15 for 16), and a task's rows come
        # back only when the task ends, so results would arrive in bursts.
        dataset = ray.data.from_items([{"work": pickle.dumps(w)} for w in todo], override_num_blocks=blocks)
        with warnings.catch_warnings():  # Ray 2.60 (pinned) takes max_restarts only as a deprecated remote arg
            warnings.simplefilter("ignore", DeprecationWarning)
            described = dataset.map_batches(
                describe_worker(self.environment, models, method, pretrained), batch_size=None,
                batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=min(self.workers, blocks)),
                num_cpus=self.cpus, num_gpus=self.gpus,
                # no restarts: an actor that died fails the job (a rerun goes on: ingest is idempotent),
                # and Ray does not warn on stderr, in a C++ log line, that restarting it might not work
                max_restarts=0)
        rows = (row["described"] for row in described.iter_rows())
        for chunk in batched(rows, size):
            yield regroup(chunk, report)

    def graph_rows(self, engine: Engine, collection: int, spec: ModelSpec, method: Method,
                   ids: list[int]) -> Iterator[list[Row]]:
        """Match-graph rows computed by actors, each on a contiguous slice of ``ids`` (a
        ``RowPlacement`` for ``app.collection.graph``), yielded as each batch is done."""
        if not ids:
            return
        url = engine.url.render_as_string(hide_password=False)
        count = min(self.workers, math.ceil(len(ids) / BATCH))
        parts = slices(ids, count)
        actor = ray.remote(GraphWorker).options(num_cpus=self.cpus)
        actors = [actor.remote(self.environment, url, collection, spec, method, part) for part in parts]
        try:
            pending = [a.rows.remote(chunk) for a, part in zip(actors, parts) for chunk in batched(part, BATCH)]
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                yield ray.get(ready[0])
        finally:
            for a in actors:
                ray.kill(a)
