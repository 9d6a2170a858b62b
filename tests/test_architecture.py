"""The floor plan stays as documented: the import contract in pyproject.toml (layers, no cycles)
holds, modules stay small, and the CLI keeps to parsing and printing."""
import ast
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"
MAX_LINES = 300
TOP_LEVEL = {"__init__.py", "api.py", "config.py"}  # the settings and the public Python API


def test_import_contract_holds():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache"], cwd=APP.parent, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_no_module_is_over_the_line_limit():
    long = {str(p.relative_to(APP)): n for p in APP.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_only_settings_and_the_public_api_sit_at_the_top():
    assert {p.name for p in APP.glob("*.py")} == TOP_LEVEL


def test_public_api_is_importable_from_the_package():
    import app

    for name in app.__all__:
        assert callable(getattr(app, name)), name


def test_cli_main_holds_no_sql_and_no_numpy():
    source = (APP / "cli" / "main.py").read_text()
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(source))
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert not imported & {"numpy", "sqlalchemy", "psycopg"}, imported
    for keyword in ("SELECT ", "INSERT ", "UPDATE ", "DELETE ", "CREATE "):
        assert keyword not in source, keyword
