"""The ``imgsim`` command line: ``main`` (commands), ``admin`` (db, models, index steps),
``common`` (option resolvers, the error boundary and its hints), ``render`` (tables, progress, JSON)."""
from app.cli.main import main

__all__ = ["main"]
