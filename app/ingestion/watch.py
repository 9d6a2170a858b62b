"""A folder that follows itself (``imgsim watch``, ``imgsim serve --watch``): the folder is synced
once (an ingest with ``sync``), then again whenever the file system reports changes under it.

- Changes come from the operating system's file events (``watchfiles``), gathered: a sync runs
  once ``QUIET_MS`` pass without a new event (at the latest ``GATHER_MS`` after the first), so a
  burst of a thousand new files is one sync, and a file still being copied (it keeps changing)
  is read once the copy is done. A file caught half-written fails and is read again when its
  copy completes (its size and time changed).
- A sync is the ingest of the whole folder with ``sync``: new and changed files are embedded,
  deleted ones forgotten, moved ones recognised by their content (unchanged files are not
  read again: their size and modification time are stored).
- Mounts without file events (network shares) are synced every ``every`` seconds all the same.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.ingestion.report import IngestReport

QUIET_MS = 1000  # a sync starts once the folder has been quiet this long
GATHER_MS = 10_000  # ... or this long after the first change of a burst
Sync = Callable[[Path], IngestReport]  # one sync of the folder


@dataclass
class Watch:
    """What a watched folder did: for whoever shows it (the log, the collections page)."""
    folder: str
    collection: str
    state: str = "starting"  # starting | syncing | watching | stopped | failed
    syncs: int = 0
    last: dict | None = None  # the last sync's counts
    last_at: float | None = None
    error: str | None = None
    history: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "history"}


def follow(folder: Path, sync: Sync, watch: Watch, stop: threading.Event, every: float = 300.0,
           on_sync: Callable[[Watch], None] | None = None, force_polling: bool | None = None) -> None:
    """Sync ``folder``, then again on every gathered burst of changes and every ``every`` seconds,
    until ``stop`` is set. A failed sync is recorded and the next one tries again."""
    from watchfiles import watch as file_events

    def run() -> None:
        watch.state = "syncing"
        started = time.time()
        try:
            report = sync(folder)
            watch.last = {"found": report.found, "new": report.new_images, "removed": len(report.removed),
                          "failed": len(report.failed), "seconds": round(time.time() - started, 2)}
            watch.error = None
        except Exception as exc:  # the folder goes on being watched; the error is shown
            watch.error = " ".join(f"{type(exc).__name__}: {exc}".split())
        watch.syncs += 1
        watch.last_at = time.time()
        watch.history.append({**(watch.last or {}), "error": watch.error, "at": watch.last_at})
        del watch.history[:-20]
        watch.state = "watching"
        if on_sync:
            on_sync(watch)

    # The first sync runs once the events are being watched (the first wake-up): a change made
    # while it runs is seen after it, none falls between the two.
    due = time.monotonic()
    for changes in file_events(folder, debounce=GATHER_MS, step=QUIET_MS, stop_event=stop, rust_timeout=1000,
                               yield_on_timeout=True, raise_interrupt=False, force_polling=force_polling):
        if stop.is_set():
            break
        if changes or time.monotonic() >= due:
            run()
            due = time.monotonic() + every
    watch.state = "stopped"
