"""A local Ray cluster goes with the process that started it, even one killed by SIGKILL.

Ray ends its raylet and GCS server with the driver, but the agents the raylet started (the
dashboard's, the runtime environments') are orphaned and linger until their own health checks
notice, a minute or two later. ``guard`` starts a small process of its own session that waits
on a pipe only the driver holds; when the driver is gone the pipe closes, and the watchdog ends
every process that has a file of the cluster's session folder open or names it. (Linux: it reads
``/proc``; elsewhere it does nothing.)
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

_HELD: list[int] = []  # the write end of each watchdog's pipe: open while this process lives


def guard(session_dir: str) -> None:
    """Start the watchdog of the cluster whose session folder is ``session_dir``."""
    if not Path("/proc/self/fd").is_dir():
        return
    read, write = os.pipe()  # not inherited by later children: only this process holds ``write``
    subprocess.Popen([sys.executable, "-m", "app.ingestion.raywatch", session_dir], stdin=read,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(read)
    _HELD.append(write)


def processes_of(session_dir: str) -> list[int]:
    """The processes that name ``session_dir`` on their command line or hold a file below it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if session_dir in (entry / "cmdline").read_bytes().decode(errors="replace") or any(
                    os.readlink(fd).startswith(session_dir) for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def end(session_dir: str, grace: float = 3.0) -> None:
    """SIGTERM to the session's processes, SIGKILL to those still there after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_of(session_dir):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while sig == signal.SIGTERM and processes_of(session_dir) and time.monotonic() < deadline:
            time.sleep(0.1)


if __name__ == "__main__":
    sys.stdin.buffer.read()  # end of file: the driver is gone (or ended, its cluster shut down)
    end(sys.argv[1])
