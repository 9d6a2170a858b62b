"""The retry policy of every write: a whole transaction is retried on a dropped connection,
a server restart, a deadlock or a serialization failure; anything else is raised at once."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from sqlalchemy.exc import DBAPIError

RETRY_DELAYS = (0.5, 1, 2, 4, 8, 16)  # seconds between attempts: about half a minute in all
T = TypeVar("T")


def retryable(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError):
        return False
    return exc.connection_invalidated or isinstance(exc.orig, (
        psycopg.OperationalError, psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure,
        psycopg.errors.AdminShutdown, psycopg.errors.CannotConnectNow))


def with_retry(fn: Callable[[], T], delays=RETRY_DELAYS) -> T:
    """Run ``fn`` (a whole transaction); on a retryable error wait and run it again."""
    for delay in (*delays, None):
        try:
            return fn()
        except Exception as exc:
            if delay is None or not retryable(exc):
                raise
            time.sleep(delay)
    raise AssertionError("unreachable")
