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
    run()


__all__ = ["main"]
