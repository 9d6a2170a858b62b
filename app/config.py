"""Settings read from the environment (and a .env file): one place for every knob."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import platformdirs
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    # The embedded server runs as an unprivileged user when we are root, so its
    # data must live outside root's (private) home directory.
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/imgsim")
    return Path(platformdirs.user_data_dir("imgsim"))


def _default_weights_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    home: Path = Field(default_factory=_default_home, validation_alias="IMGSIM_HOME")
    weights_dir: Path = Field(
        default_factory=_default_weights_dir,
        validation_alias=AliasChoices("IMGSIM_WEIGHTS_DIR", "KERAS_HOME"),
    )
    migrations_dir: Path | None = Field(default=None, validation_alias="IMGSIM_MIGRATIONS")
    default_model: str = Field(default="efficientnet-lite0", validation_alias="IMGSIM_MODEL")
    batch_size: int = Field(default=16, ge=1, le=1024, validation_alias="IMGSIM_BATCH_SIZE")
    max_pixels: int = Field(default=120_000_000, ge=1, validation_alias="IMGSIM_MAX_PIXELS")
    max_file_bytes: int = Field(default=200 * 1024**2, ge=1, validation_alias="IMGSIM_MAX_FILE_BYTES")
    max_labels_bytes: int = Field(default=64 * 1024**2, ge=1, validation_alias="IMGSIM_MAX_LABELS_BYTES")
    retry_seconds: float = Field(default=31.5, ge=0, le=3600, validation_alias="IMGSIM_RETRY_SECONDS")
    decode_workers: int = Field(default=2, ge=1, le=64, validation_alias="IMGSIM_DECODE_WORKERS")
    backend: str = Field(default="auto", validation_alias="IMGSIM_BACKEND")

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
