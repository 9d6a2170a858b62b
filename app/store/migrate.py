"""Run the Alembic migrations from code (the CLI's ``db`` commands and the test fixtures)."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from app.store.db import database_url, dispose_engines

ROOT = Path(__file__).resolve().parents[2]


def alembic_config(url: str | None = None) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
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
