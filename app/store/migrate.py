"""Run the Alembic migrations from code (the CLI's ``db`` commands and the test fixtures).

Alembic is imported only when a migration runs: a command on a database already at head
checks ``alembic_version`` against the newest revision file in plain SQL (Alembic's import is
a noticeable part of a cold command's start-up).
"""
from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import DBAPIError

from app.config import get_settings
from app.store.db import database_url, dispose_engines, engine_for
from app.store.errors import DatabaseConfigError

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout, when the package runs from one


def migrations_root() -> Path:
    """The folder that holds ``alembic.ini`` and ``alembic/``: ``IMGSIM_MIGRATIONS``, else the
    checkout this package runs from, else the current folder (an installed wheel carries only
    ``app``; the Docker image sets ``IMGSIM_MIGRATIONS``)."""
    configured = get_settings().migrations_dir
    for folder in ([configured] if configured else [SOURCE_ROOT, Path.cwd()]):
        if (folder / "alembic.ini").is_file() and (folder / "alembic" / "env.py").is_file():
            return folder
    where = f"IMGSIM_MIGRATIONS={configured} has" if configured else "neither the package's folder nor this one has"
    raise DatabaseConfigError(f"cannot find the migrations: {where} alembic.ini and alembic/; set "
                              f"IMGSIM_MIGRATIONS to the folder of the imgsim checkout that holds them")


def alembic_config(url: str | None = None):
    from alembic.config import Config

    root = migrations_root()
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "alembic"))
    config.attributes["configure_logger"] = False
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


_AT_HEAD: set[str] = set()  # URLs this process has brought to head


def upgrade(revision: str = "head", url: str | None = None) -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)
    dispose_engines()  # pooled connections opened before the vector extension existed


def ensure_head(url: str) -> None:
    """Migrate the database at ``url`` to head, once per process (no Alembic when it is there)."""
    if url in _AT_HEAD:
        return
    newest = newest_revision()
    if newest is None or _stored_revision(url) != newest:
        upgrade(url=url)
    _AT_HEAD.add(url)


def _stored_revision(url: str) -> str | None:
    try:
        with engine_for(url).connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        return None  # no table yet: Alembic creates it


_REVISION = re.compile(r'^(down_revision|revision) = (?:"(\w+)"|None)', re.M)


def newest_revision() -> str | None:
    """The one revision no other revision file names as its parent (None when that is not one
    file: then Alembic decides)."""
    revisions, parents = set(), set()
    for path in (migrations_root() / "alembic" / "versions").glob("*.py"):
        for key, value in _REVISION.findall(path.read_text()):
            (revisions if key == "revision" else parents).add(value)
    newest = revisions - parents - {""}
    return newest.pop() if len(newest) == 1 else None


def downgrade(revision: str, url: str | None = None) -> None:
    from alembic import command

    _AT_HEAD.clear()
    command.downgrade(alembic_config(url), revision)
    dispose_engines()


def current(url: str | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(url or database_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def heads() -> list[str]:
    from alembic.script import ScriptDirectory

    return list(ScriptDirectory.from_config(alembic_config()).get_heads())
