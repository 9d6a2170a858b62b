"""Database faults in one line: what failed and what to do.

Commands meet these faults at any statement: a wrong ``DATABASE_URL``, a server that is down,
a wrong password, a missing database, a server stopped in the middle of a job. ``describe``
turns the driver's exception into a ``DatabaseFault`` that a command line or a web server can
show as it is; the password of the URL never appears in it.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg
from sqlalchemy import exc as sa

# Messages of a connection that could not be made or was lost (psycopg / libpq wording).
_LOST = ("terminating connection", "server closed the connection", "connection to server", "connection failed",
         "the database system is shutting down", "the database system is starting up", "consuming input failed",
         "connection is closed", "connection is lost")


class DatabaseError(Exception):
    """A database fault raised by imgsim itself; ``str()`` is one line that says what to do."""

    unreachable = False


class DatabaseConfigError(DatabaseError):
    """``DATABASE_URL`` or ``IMGSIM_HOME`` cannot be used."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached (the embedded server did not start, say)."""

    unreachable = True


@dataclass(frozen=True)
class DatabaseFault:
    message: str
    unreachable: bool  # the database could not be reached or went away: worth trying again later


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _scrub(message: str, url: str | None) -> str:
    """Take the URL's password out of a message, should a driver ever quote it."""
    try:
        password = urlsplit(url).password if url and "://" in url else None
    except ValueError:  # a URL that does not parse (a bad IPv6 host) has no password to find
        password = None
    return message.replace(password, "***") if password else message


def describe(exc: BaseException, url: str | None = None) -> DatabaseFault | None:
    """The one-line fault for a database exception, or None when ``exc`` is not one."""
    if isinstance(exc, DatabaseError):
        return DatabaseFault(_scrub(str(exc), url), exc.unreachable)
    if isinstance(exc, (sa.ArgumentError, sa.NoSuchModuleError)):
        return DatabaseFault("DATABASE_URL cannot be used: " + _scrub(first_line(exc), url), False)
    if type(exc).__name__ == "CommandError" and type(exc).__module__.startswith("alembic"):  # not imported: slow
        return DatabaseFault(f"migration failed: {_scrub(first_line(exc), url)}", False)
    if not isinstance(exc, sa.DBAPIError):
        return None
    orig = exc.orig if exc.orig is not None else exc
    detail = _scrub(first_line(orig), url)
    if isinstance(orig, psycopg.errors.UndefinedTable):
        return DatabaseFault(f"the database is not migrated ({detail}); run `imgsim db upgrade`", False)
    if isinstance(orig, psycopg.OperationalError) and ("authentication" in detail or "does not exist" in detail):
        return DatabaseFault(f"cannot connect to the database: {detail}; check the user, password and database "
                             f"name in DATABASE_URL", True)
    lost = exc.connection_invalidated or isinstance(orig, (psycopg.errors.AdminShutdown,
                                                           psycopg.errors.CannotConnectNow))
    if lost or (isinstance(orig, psycopg.OperationalError) and any(s in detail.lower() for s in _LOST)):
        return DatabaseFault(f"cannot reach the database: {detail}; check that the server is running and "
                             f"that DATABASE_URL (or IMGSIM_HOME) is right, then run the command again", True)
    return DatabaseFault(f"database error: {detail}", False)
