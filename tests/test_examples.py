"""The runnable examples under scripts/examples work as their docstrings say (real database,
real offline weights)."""
import subprocess
import sys
from pathlib import Path

from tests.helpers import LITE0, make_images

EXAMPLES = Path(__file__).resolve().parent.parent / "scripts" / "examples"


def run(name: str, *args) -> list[str]:
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], capture_output=True, text=True,
                            timeout=600, cwd=EXAMPLES.parent.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def test_search_by_file_then_by_id_then_in_plain_sql(database, tmp_path):
    make_images(tmp_path, ["a.jpg", "b.png", "c.jpg", "d.jpg"])
    by_file = run("search_by_file.py", tmp_path, tmp_path / "b.png", "--model", LITE0.name, "--method", "global")
    assert by_file[0] == "stored: 4 new, 0 already there, 0 failed"
    assert len(by_file) == 5 and by_file[1].endswith("/b.png") and abs(float(by_file[1].split()[0])) < 1e-4
    by_id = run("search_by_id.py", "1", "--model", LITE0.name, "--method", "global")
    first_id = by_id[0].split()[0]
    assert first_id == "1" and len(by_id) == 4
    in_sql = run("plain_sql.py", "1")
    assert [line.split()[0] for line in in_sql] == [line.split()[0] for line in by_id]
    assert [line.split()[2] for line in in_sql] == [line.split()[-1] for line in by_id]
