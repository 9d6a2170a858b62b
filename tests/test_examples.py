"""The runnable examples under scripts/examples work as their docstrings say (real database,
real offline weights)."""
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.helpers import LITE0, make_images

EXAMPLES = Path(__file__).resolve().parent.parent / "scripts" / "examples"


def run(name: str, *args) -> list[str]:
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], capture_output=True, text=True,
                            timeout=600, cwd=EXAMPLES.parent.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def test_search_by_file_then_by_id_then_in_plain_sql(database, tmp_path):
    make_images(tmp_path, ["a.jpg", "b.png", "c.jpg", "d.jpg"])
    with Image.open(tmp_path / "b.png") as b:  # the same item as b: smaller and recompressed
        b.convert("RGB").resize((b.width * 3 // 4, b.height * 3 // 4)).save(tmp_path / "e.jpg", quality=80)
    by_file = run("search_by_file.py", tmp_path, tmp_path / "b.png", "--model", LITE0.name)  # the default: verified
    assert by_file[0] == "stored: 5 new, 0 already there, 0 failed"
    assert len(by_file) == 6 and by_file[1].endswith("/b.png") and abs(float(by_file[1].split()[0])) < 1e-4
    assert by_file[2].endswith("/e.jpg")
    by_id = run("search_by_id.py", "1", "--model", LITE0.name, "--method", "gem")
    first_id = by_id[0].split()[0]
    assert first_id == "1" and len(by_id) == 5
    in_sql = run("plain_sql.py", "1")
    nearest = in_sql[:-2]
    assert [line.split()[0] for line in nearest] == [line.split()[0] for line in by_id]
    assert [line.split()[2] for line in nearest] == [line.split()[-1] for line in by_id]
    assert in_sql[-2:] == ["same item: none", "group: none"]  # a is alone
    b, e = (int(next(line.split()[0] for line in by_id if line.endswith(name))) for name in ("/b.png", "/e.jpg"))
    same = run("plain_sql.py", b)
    assert same[-2].startswith(f"same item: {e}:") and float(same[-2].split(":")[-1]) >= 0.5
    assert same[-1] == f"group: {min(b, e)} {max(b, e)}"
