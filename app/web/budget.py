"""The memory the server's decodes of uploaded photos may take at once.

An upload is a few hundred kilobytes on the wire and can be a hundred megapixels once decoded
(a 10900 x 10900 PNG took 1.1 GB of the server: its pixels, the RGB copy, the network's and
SIFT's inputs, about ``BYTES_PER_PIXEL`` each). Each search of an upload reserves what its
photo's header says it will take before it decodes; while the budget is taken, a request waits
up to ``WAIT_SECONDS``, then is answered 503 with Retry-After, and the server stays up. When a
decode is done its memory goes back to the system (``malloc_trim``): the decoder's blocks are
small enough for glibc to keep them in the arena of the thread that decoded, so decodes one
after the other on the server's threads kept a photo's worth each (measured: 4 in a row took
the server from 0.45 to 0.98 GB; trimmed, to 0.52).
"""
from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

BYTES_PER_PIXEL = 10
WAIT_SECONDS = 10.0


class Full(Exception):
    """The decode budget stayed taken for ``WAIT_SECONDS``."""


class MemoryBudget:
    def __init__(self, total_bytes: int, wait: float = WAIT_SECONDS):
        self.total, self.wait = max(1, total_bytes), wait
        self.taken = 0
        self.free = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int):
        """Hold ``nbytes`` of the budget (all of it at most, so one large photo always fits alone)."""
        nbytes = min(max(0, nbytes), self.total)
        with self.free:
            if not self.free.wait_for(lambda: self.taken + nbytes <= self.total, timeout=self.wait):
                raise Full("the server is decoding as much as its memory allows; try again in a few seconds")
            self.taken += nbytes
        try:
            yield
        finally:
            _trim()
            with self.free:
                self.taken -= nbytes
                self.free.notify_all()


def _trim() -> None:
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")  # glibc: elsewhere the allocator returns memory itself or not at all
    except OSError:
        return None


_LIBC = _libc()


def decode_cost(path: Path) -> int:
    """What decoding the photo at ``path`` takes, from its header (0 when it has none: the
    decode then fails at once)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception:  # not an image: refused by the decode itself, in one line
        return 0
    return width * height * BYTES_PER_PIXEL
