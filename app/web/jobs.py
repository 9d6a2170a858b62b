"""Ingest jobs started through the server: one at a time, on a thread of their own, with
progress to poll. Only folders under the configured roots (``IMGSIM_ALLOWED_ROOTS``) can be
ingested; a folder is checked after resolving links, so none leads outside them."""
from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from app import api
from app.describe.methods import DEFAULT_METHOD
from app.ingestion.watch import Watch, follow
from app.store.collections import DEFAULT_COLLECTION, check_name
from app.store.errors import describe
from app.store.retry import with_retry

log = logging.getLogger("imgsim")


class Forbidden(PermissionError):
    pass


class Busy(RuntimeError):
    pass


@dataclass
class Job:
    id: int
    folder: str
    collection: str
    method: str
    state: str = "running"  # running | done | failed
    done: int = 0
    total: int | None = None
    verified: int = 0
    report: dict | None = None
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def allowed_folder(folder: str, roots: tuple[Path, ...]) -> Path:
    """``folder`` resolved, if it is a folder under one of ``roots`` (else a one-line refusal)."""
    if not roots:
        raise Forbidden("ingest through the server is off: set IMGSIM_ALLOWED_ROOTS to the folders it may read")
    resolved = Path(folder).resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        raise Forbidden(f"{folder}: not under an allowed root (IMGSIM_ALLOWED_ROOTS)")
    if not resolved.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    return resolved


class Jobs:
    def __init__(self, engine_of, roots: tuple[Path, ...]):
        self.engine_of, self.roots = engine_of, roots
        self.jobs: dict[int, Job] = {}
        self.ids = itertools.count(1)
        self.lock = threading.Lock()

    def start(self, folder: str, collection: str = DEFAULT_COLLECTION, method: str = DEFAULT_METHOD) -> Job:
        resolved = allowed_folder(folder, self.roots)
        check_name(collection)
        with self.lock:
            if any(j.state == "running" for j in self.jobs.values()):
                raise Busy("an ingest is running: poll it, then start the next one")
            job = Job(next(self.ids), str(resolved), collection, method)
            self.jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, self.engine_of()), daemon=True, name=f"ingest-{job.id}").start()
        return job

    def _run(self, job: Job, engine: Engine) -> None:
        def embedded(done: int, total: int) -> None:
            job.done, job.total = done, total

        def verified(done: int, _total: int) -> None:
            job.verified = done

        try:  # a database that blinks is waited for (an ingest is idempotent: a rerun goes on)
            report = with_retry(lambda: api.ingest(job.folder, method=job.method, engine=engine, progress=embedded,
                                                   graph_progress=verified, collection=job.collection,
                                                   within=self.roots))
            job.report, job.state = report.as_dict(), "done"
        except Exception as exc:  # reported to whoever polls; the server goes on
            fault = describe(exc)
            if fault is not None:  # the detail (a socket path, host and port) goes to the log only
                log.error("ingest job %d: %s", job.id, fault.message)
            job.error = ("the database cannot be reached" if fault.unreachable else "a database error; see the "
                         "server's log") if fault else " ".join(f"{type(exc).__name__}: {exc}".split())
            job.state = "failed"
        job.finished = time.time()

    def get(self, job_id: int) -> Job:
        if job_id not in self.jobs:
            raise LookupError(f"no ingest job {job_id}")
        return self.jobs[job_id]


class Watchers:
    """Folders the service follows (``imgsim serve --watch DIR[=COLLECTION]``), each on a thread of
    its own from the service's start to its stop (``app.ingestion.watch``); every file read must
    lie under the watched folder once its links are resolved."""

    def __init__(self, engine_of, folders: list[tuple[Path, str]]):
        self.engine_of, self.folders = engine_of, [(Path(f).resolve(), c) for f, c in folders]
        self.watches = [Watch(str(f), c) for f, c in self.folders]
        self.stopping = threading.Event()

    def start(self) -> None:
        for (root, collection), state in zip(self.folders, self.watches):
            def sync(path: Path, root=root, collection=collection):
                return with_retry(lambda: api.ingest(path, collection=collection, sync=True, engine=self.engine_of(),
                                                     within=(root,)))

            threading.Thread(target=follow, args=(root, sync, state, self.stopping), daemon=True,
                             name=f"watch-{collection}").start()

    def stop(self) -> None:
        self.stopping.set()
