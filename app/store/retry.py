"""The retry policy of every write: a whole transaction is retried on a dropped connection,
a server restart, a deadlock or a serialization failure; anything else is raised at once.
Each retry is logged in one line; ``IMGSIM_RETRY_SECONDS`` bounds the total wait."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from sqlalchemy.exc import DBAPIError

from app.config import get_settings
from app.store.errors import first_line

RETRY_DELAYS = (0.5, 1, 2, 4, 8, 16)  # seconds between attempts: about half a minute in all
T = TypeVar("T")
log = logging.getLogger("imgsim")


def retryable(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError):
        return False
    return exc.connection_invalidated or isinstance(exc.orig, (
        psycopg.OperationalError, psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure,
        psycopg.errors.AdminShutdown, psycopg.errors.CannotConnectNow))


def delays_within(budget: float, delays=RETRY_DELAYS) -> tuple[float, ...]:
    """The policy's delays, cut so that their sum stays within ``budget`` seconds."""
    out, total = [], 0.0
    for delay in delays:
        delay = min(delay, budget - total)
        if delay <= 0:
            break
        out.append(delay)
        total += delay
    return tuple(out)


def with_retry(fn: Callable[[], T], delays: tuple[float, ...] | None = None) -> T:
    """Run ``fn`` (a whole transaction); on a retryable error wait and run it again."""
    if delays is None:
        delays = delays_within(get_settings().retry_seconds)
    for delay in (*delays, None):
        try:
            return fn()
        except Exception as exc:
            if delay is None or not retryable(exc):
                raise
            log.warning("database unavailable (%s); retrying in %g s", first_line(exc.orig or exc), delay)
            time.sleep(delay)
    raise AssertionError("unreachable")
