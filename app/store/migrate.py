"""Run the Alembic migrations from code (the CLI's ``db`` commands and the test fixtures)."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from app.config import get_settings
from app.store.db import database_url, dispose_engines
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


def alembic_config(url: str | None = None) -> Config:
    root = migrations_root()
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "alembic"))
    config.attributes["configure_logger"] = False
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


_AT_HEAD: set[str] = set()  # URLs this process has brought to head


def upgrade(revision: str = "head", url: str | None = None) -> None:
    command.upgrade(alembic_config(url), revision)
    dispose_engines()  # pooled connections opened before the vector extension existed


def ensure_head(url: str) -> None:
    """Migrate the database at ``url`` to head, once per process."""
    if url not in _AT_HEAD:
        upgrade(url=url)
        _AT_HEAD.add(url)


def downgrade(revision: str, url: str | None = None) -> None:
    _AT_HEAD.clear()
    command.downgrade(alembic_config(url), revision)
    dispose_engines()


def current(url: str | None = None) -> str | None:
    engine = create_engine(url or database_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def heads() -> list[str]:
    return list(ScriptDirectory.from_config(alembic_config()).get_heads())
