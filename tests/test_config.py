"""Settings from the environment and .env, and the embedded server's URI from its pid file."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import Settings, SettingsError
from app.store.db import running_uri

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_and_values_from_the_environment(tmp_path):
    defaults = Settings.read({"HOME": str(tmp_path)})
    assert (defaults.batch_size, defaults.retry_seconds, defaults.backend, defaults.database_url) == (16, 31.5, "auto",
                                                                                                     None)
    given = Settings.read({"IMGSIM_BATCH_SIZE": " 8 ", "IMGSIM_RETRY_SECONDS": "0.5", "KERAS_HOME": "/k",
                           "IMGSIM_HOME": "/h", "DATABASE_URL": ""})
    assert (given.batch_size, given.retry_seconds, given.weights_dir, given.pgdata) == (8, 0.5, Path("/k"),
                                                                                         Path("/h/pgdata"))
    assert given.database_url is None  # empty counts as unset
    both = Settings.read({"KERAS_HOME": "/k", "IMGSIM_WEIGHTS_DIR": "/w"})
    assert both.weights_dir == Path("/w")  # the project's own name wins


@pytest.mark.parametrize("name, value, expected", [
    ("IMGSIM_BATCH_SIZE", "abc", "IMGSIM_BATCH_SIZE='abc': expected an integer from 1 to 1024"),
    ("IMGSIM_BATCH_SIZE", "0", "IMGSIM_BATCH_SIZE='0': expected an integer from 1 to 1024"),
    ("IMGSIM_BATCH_SIZE", "2.5", "IMGSIM_BATCH_SIZE='2.5': expected an integer from 1 to 1024"),
    ("IMGSIM_RETRY_SECONDS", "-1", "IMGSIM_RETRY_SECONDS='-1': expected a number from 0 to 3600"),
    ("IMGSIM_MAX_PIXELS", "many", "IMGSIM_MAX_PIXELS='many': expected an integer of at least 1"),
    ("IMGSIM_INFERENCE_PRECISION", "fp8", "IMGSIM_INFERENCE_PRECISION='fp8': expected one of auto, f32, bf16"),
])
def test_a_bad_value_is_one_line_naming_the_variable(name, value, expected):
    with pytest.raises(SettingsError) as caught:
        Settings.read({name: value})
    assert str(caught.value) == expected


def test_the_command_line_reads_dotenv_and_the_environment_wins(tmp_path):
    (tmp_path / ".env").write_text("IMGSIM_BATCH_SIZE=nope\nIMGSIM_DECODE_WORKERS=3\n")
    env = {k: v for k, v in os.environ.items() if k not in ("IMGSIM_BATCH_SIZE", "IMGSIM_DECODE_WORKERS")}
    code = "from app.config import get_settings; print(get_settings().decode_workers)"
    bad = subprocess.run([sys.executable, "-m", "app.cli", "models"], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: IMGSIM_BATCH_SIZE='nope': expected an integer from 1 to 1024"
    good = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**env, "PYTHONPATH": str(ROOT), "IMGSIM_BATCH_SIZE": "4"})
    assert good.stdout.strip() == "3", good.stderr


def _pid_file(folder: Path, pid: int, status: str, sockets: str = "/run/sockets", host: str = "") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "postmaster.pid").write_text(
        f"{pid}\n{folder}\n1796064665\n5432\n{sockets}\n{host}\n  1490946    491552\n{status}\n")
    return folder


def test_the_running_server_is_read_from_its_pid_file(tmp_path):
    alive = os.getpid()
    assert running_uri(_pid_file(tmp_path / "a", alive, "ready")) == "postgresql://postgres:@/postgres?host=/run/sockets"
    assert running_uri(_pid_file(tmp_path / "b", alive, "ready", sockets="", host="localhost")) == \
        "postgresql://postgres:@localhost:5432/postgres"
    assert running_uri(_pid_file(tmp_path / "c", alive, "starting")) is None
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert running_uri(_pid_file(tmp_path / "d", dead.pid, "ready")) is None
    assert running_uri(tmp_path / "none") is None
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "postmaster.pid").write_text("garbage\n")
    assert running_uri(tmp_path / "e") is None


def test_the_settings_handed_to_workers_are_those_this_process_reads(tmp_path, monkeypatch):
    from app.config import settings_environment

    (tmp_path / ".env").write_text("IMGSIM_DECODE_WORKERS=3\nIMGSIM_BATCH_SIZE=2\nNOT_A_SETTING=1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMGSIM_BATCH_SIZE", "4")
    monkeypatch.setenv("KERAS_HOME", "/k")
    monkeypatch.setenv("IMGSIM_MODEL", "")  # empty is unset: not handed on
    handed = settings_environment()
    assert (handed["IMGSIM_DECODE_WORKERS"], handed["IMGSIM_BATCH_SIZE"], handed["KERAS_HOME"]) == ("3", "4", "/k")
    assert "NOT_A_SETTING" not in handed and "IMGSIM_MODEL" not in handed
    assert Settings.read(handed).batch_size == 4
