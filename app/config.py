"""Settings read from the environment (and a ``.env`` file in the working directory): one place
for every knob. A variable set in the environment wins over the same one in ``.env``; an empty
value counts as unset.

Plain dataclass parsing rather than a settings library: a cold ``imgsim search`` imports only what
it needs (a settings library cost 0.13 s of it), and a bad value is one clear line naming the
variable.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path


class SettingsError(ValueError):
    pass


def _default_home() -> Path:
    # The embedded server runs as an unprivileged user when we are root, so its
    # data must live outside root's (private) home directory.
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/imgsim")
    import platformdirs

    return Path(platformdirs.user_data_dir("imgsim"))


def _default_weights_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def machine_memory_mb() -> int:
    """The memory this process may use: the machine's, or its container's limit when lower."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 4 * 2**30
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        total = min(total, int(limit)) if limit.isdigit() else total
    except OSError:
        pass
    return total // 2**20


def _half_of_memory_mb() -> int:
    return max(64, machine_memory_mb() // 2)


def _quarter_of_memory_mb() -> int:
    # PostgreSQL's own advice for shared_buffers on a machine it shares with little else
    return max(128, machine_memory_mb() // 4)


def _workers_beside_leader() -> int:
    return max(0, min((os.cpu_count() or 1) - 1, 7))


def _usable_cores() -> int:
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 64))


def _one_per_two_cores() -> int:
    # each process verifies in threads (``verify_threads``): two threads share a process's work
    return max(1, _usable_cores() // 2)


def _number(kind: type, low: float, high: float | None = None) -> Callable[[str], float]:
    def parse(value: str):
        try:
            number = kind(value)
        except ValueError:
            number = None
        if number is None or number < low or (high is not None and number > high):
            bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise ValueError(f"expected {'an integer' if kind is int else 'a number'} {bound}")
        return number
    return parse


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value.strip().lower() not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value.strip().lower()
    return parse


@dataclass(frozen=True)
class Knob:
    names: tuple[str, ...]  # environment variables, first found wins
    parse: Callable[[str], object]
    default: object = None  # a value, or a callable giving it


KNOBS: dict[str, Knob] = {
    "database_url": Knob(("DATABASE_URL",), str),
    "home": Knob(("IMGSIM_HOME",), Path, _default_home),
    "weights_dir": Knob(("IMGSIM_WEIGHTS_DIR", "KERAS_HOME"), Path, _default_weights_dir),
    "migrations_dir": Knob(("IMGSIM_MIGRATIONS",), Path),
    "default_model": Knob(("IMGSIM_MODEL",), str, "efficientnet-lite0"),
    "batch_size": Knob(("IMGSIM_BATCH_SIZE",), _number(int, 1, 1024), 16),
    "max_pixels": Knob(("IMGSIM_MAX_PIXELS",), _number(int, 1), 120_000_000),
    "max_file_bytes": Knob(("IMGSIM_MAX_FILE_BYTES",), _number(int, 1), 200 * 1024**2),
    "max_labels_bytes": Knob(("IMGSIM_MAX_LABELS_BYTES",), _number(int, 1), 64 * 1024**2),
    "retry_seconds": Knob(("IMGSIM_RETRY_SECONDS",), _number(float, 0, 3600), 31.5),
    "decode_workers": Knob(("IMGSIM_DECODE_WORKERS",), _number(int, 1, 64), 2),
    "backend": Knob(("IMGSIM_BACKEND",), str, "auto"),
    "inference_threads": Knob(("IMGSIM_INFERENCE_THREADS",), _number(int, 0, 1024), 0),
    "inference_precision": Knob(("IMGSIM_INFERENCE_PRECISION",), _choice("auto", "f32", "bf16"), "auto"),
    "index_memory_mb": Knob(("IMGSIM_INDEX_MEMORY_MB",), _number(int, 64, 2**21), _half_of_memory_mb),
    "db_memory_mb": Knob(("IMGSIM_DB_MEMORY_MB",), _number(int, 16, 2**21), _quarter_of_memory_mb),
    "index_workers": Knob(("IMGSIM_INDEX_WORKERS",), _number(int, 0, 64), _workers_beside_leader),
    "graph_workers": Knob(("IMGSIM_GRAPH_WORKERS",), _number(int, 1, 64), _one_per_two_cores),
    "verify_threads": Knob(("IMGSIM_VERIFY_THREADS",), _number(int, 1, 64), _usable_cores),
    "hnsw_ef_construction": Knob(("IMGSIM_HNSW_EF_CONSTRUCTION",), _number(int, 32, 1000), 128),
    "api_token": Knob(("IMGSIM_API_TOKEN",), str),
    "allowed_roots": Knob(("IMGSIM_ALLOWED_ROOTS",), lambda v: tuple(Path(p) for p in v.split(os.pathsep) if p), ()),
    "allowed_hosts": Knob(("IMGSIM_ALLOWED_HOSTS",), lambda v: tuple(h.strip() for h in v.split(",") if h.strip())),
    "decode_memory_mb": Knob(("IMGSIM_DECODE_MEMORY_MB",), _number(int, 64, 2**21), _quarter_of_memory_mb),
}


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    home: Path
    weights_dir: Path
    migrations_dir: Path | None
    default_model: str
    batch_size: int
    max_pixels: int
    max_file_bytes: int
    max_labels_bytes: int
    retry_seconds: float
    decode_workers: int
    backend: str
    inference_threads: int  # threads of one network (0: the backend's choice, every core)
    inference_precision: str  # OpenVINO's arithmetic: auto (bf16 where the CPU has it and it checks out), f32, bf16
    index_memory_mb: int  # the most an HNSW build may use (maintenance_work_mem)
    db_memory_mb: int  # the embedded server's shared_buffers
    index_workers: int  # parallel maintenance workers beside the building session
    graph_workers: int  # processes that compute match-graph rows on this machine (1: the job's own)
    verify_threads: int  # threads that verify one query's candidates at once (1: the caller's own)
    hnsw_ef_construction: int  # the candidate list of an HNSW build (a larger one: a better graph, slower)
    api_token: str | None  # what `imgsim serve` requires of every request (needed off localhost)
    allowed_roots: tuple[Path, ...]  # folders under which the server may ingest (none: it may not)
    allowed_hosts: tuple[str, ...] | None  # Host headers the server answers (None: any, or loopback's on loopback)
    decode_memory_mb: int  # what the server's decodes of uploads may take at once

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Settings from ``environ`` (default: the process environment over ``.env``)."""
        values = {}
        source = dict(environ) if environ is not None else _environment()
        for f in fields(cls):
            knob = KNOBS[f.name]
            name, raw = next(((n, source[n]) for n in knob.names if source.get(n, "").strip()), (None, None))
            if name is None:
                values[f.name] = knob.default() if callable(knob.default) else knob.default
                continue
            try:
                values[f.name] = knob.parse(raw.strip())
            except ValueError as exc:
                raise SettingsError(f"{name}={raw!r}: {exc}") from None
        return cls(**values)


def _environment() -> dict[str, str]:
    dotenv = Path(".env")
    if not dotenv.is_file():
        return dict(os.environ)
    from dotenv import dotenv_values

    return {**{k: v for k, v in dotenv_values(dotenv).items() if v is not None}, **os.environ}


def settings_environment() -> dict[str, str]:
    """The settings' variables as this process reads them (the environment over ``.env``), to
    hand to processes started elsewhere (a distributed engine's workers) so they read the same."""
    source = _environment()
    return {name: source[name] for knob in KNOBS.values() for name in knob.names if source.get(name, "").strip()}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.read()
