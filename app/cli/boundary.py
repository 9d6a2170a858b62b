"""The command line's error boundary: every exception a command does not handle becomes one
line on stderr and an exit status; the traceback only with ``--debug`` or ``IMGSIM_DEBUG=1``.

Exit statuses: 0 done; 1 error; 2 usage; 3 the job finished but some inputs failed;
4 the database could not be reached (or went away); 130 interrupted.
"""
from __future__ import annotations

import logging
import os
import sys

from rich.markup import escape

from app.cli.common import err, explain
from app.store.errors import describe, first_line

EXIT_UNREACHABLE = 4
DEBUG = {"on": os.environ.get("IMGSIM_DEBUG", "").lower() in ("1", "true", "yes")}


def one_line(exc: BaseException) -> tuple[str, int]:
    """The message and exit status for an exception a command let through."""
    fault = describe(exc, os.environ.get("DATABASE_URL"))
    if fault is not None:
        return fault.message, EXIT_UNREACHABLE if fault.unreachable else 1
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror, 1
    if isinstance(exc, MemoryError):
        return "out of memory", 1
    message = explain(exc)
    if type(exc).__module__.startswith("app.") and message:
        return message.splitlines()[0], 1
    detail = f": {first_line(exc)}" if str(exc).strip() else ""
    return f"internal error: {type(exc).__name__}{detail} (run with --debug or IMGSIM_DEBUG=1 for the traceback)", 1


class _OneLine(logging.Handler):
    """Warnings of the library (a job waiting for a lock, a missing index) as one stderr line each."""

    def emit(self, record: logging.LogRecord) -> None:
        err.print(f"[yellow]warning:[/yellow] {escape(record.getMessage())}", highlight=False, soft_wrap=True)


def show_warnings() -> None:
    logger = logging.getLogger("imgsim")
    if not any(isinstance(h, _OneLine) for h in logger.handlers):
        logger.addHandler(_OneLine(logging.WARNING))
        logger.setLevel(logging.INFO)
        logger.propagate = False


def run(app) -> None:
    """Run the Typer ``app`` inside the boundary."""
    show_warnings()
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except SystemExit as exc:
        if exc.code == 130 and isinstance(getattr(exc.__context__, "__cause__", None), KeyboardInterrupt):
            err.print("interrupted")  # Typer turns Ctrl-C into exit 130 without a word
        raise
    except Exception as exc:
        if DEBUG["on"]:
            raise
        message, status = one_line(exc)
        err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(status)
