"""The ``imgsim`` command line: ``main`` (commands), ``admin`` (db, models, index steps),
``common`` (option resolvers and hints), ``boundary`` (one-line errors, exit statuses),
``render`` (tables, progress, JSON)."""
import sys


def main() -> None:
    """The console script: imports inside, so that Ctrl-C while starting up is one line too."""
    try:
        from app.cli.main import main as run
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    try:
        run()
    except SystemExit as exc:
        leave(exc.code)
    leave(0)


def leave(code) -> None:
    """Exit with ``code`` (as ``sys.exit`` takes it), skipping the interpreter's module-by-module
    teardown when nothing else runs: after a search it took 0.15-0.2 s (the inference runtime's
    and the database driver's libraries unloading one by one). The exit handlers run and the
    streams are flushed first; with a non-daemon thread still alive the normal exit joins it."""
    import atexit
    import os
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    if code is not None and not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


__all__ = ["main"]
