"""Advisory locks, taken in one order: a collection job's lock (held for the whole job), then a
(table, method) index lock (held for the transaction that drops or builds the index).

A second whitening, augmentation or graph job of the same (model, method) waits for the first
instead of deadlocking with it on the index it drops, and says in one line that it waits.
"""
from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger("imgsim")


def lock_key(*parts: str) -> int:
    return zlib.crc32(":".join(parts).encode())


def index_lock(conn: Connection, table: str, method: str) -> None:
    """Serialise DDL on the (table, method) index until the transaction ends."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(table, method)})


def lock_tables_for_write(conn: Connection, tables: list[str]) -> None:
    """Take the tables a batch writes (in name order) before it reads anything of them."""
    for table in sorted(set(tables)):
        conn.exec_driver_sql(f"LOCK TABLE {table} IN ROW EXCLUSIVE MODE")


def lock_table_for_rewrite(conn: Connection, table: str) -> None:
    """Take a table that a collection job rewrites rows of (and drops an index of) before it
    reads anything of it: writers wait for the job, and no two jobs upgrade their locks on the
    same table at once (that is a deadlock)."""
    conn.exec_driver_sql(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")


@contextmanager
def job_lock(engine: Engine, table: str, job: str, description: str) -> Iterator[None]:
    """Hold the lock of ``job`` on ``table`` while the block runs (on a connection of its own,
    so the block's transactions can commit and retry freely); log once if it has to wait."""
    key = lock_key("job", table, job)
    with engine.connect() as conn:
        if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            log.warning("waiting for another %s to finish", description)
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        conn.commit()
        try:
            yield
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
            except DBAPIError:
                pass  # the connection is gone, and the server released the lock with it
