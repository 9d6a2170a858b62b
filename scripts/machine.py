"""What the benchmarks share: the machine they ran on, and the options and set-up of one that
runs an embedded server of its own."""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def bench_parser(doc: str, home: str) -> argparse.ArgumentParser:
    """The options of a benchmark with its own embedded server: ``--home`` (its folder), ``--json``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / home)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    return parser


def own_server(args: argparse.Namespace) -> Callable[..., None]:
    """Use the benchmark's own embedded server (it empties what it writes); returns the progress
    printer (silent with ``--json``, which prints only the JSON object)."""
    os.environ["IMGSIM_HOME"] = str(args.home)
    os.environ.pop("DATABASE_URL", None)
    return (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))


def section_markers(name: str) -> tuple[str, str]:
    """A section's markers: ``name`` is the script's, with what the run measured after a colon
    (``bench_speed:against-2-cores``)."""
    script = name.split(":")[0]
    return f"<!-- {name}: written by scripts/{script} -->", f"<!-- /{name} -->"


def kept_section(path: Path, name: str) -> str:
    """The section another benchmark wrote into ``path`` (markers included), or ''."""
    begin, end = section_markers(name)
    text = path.read_text() if path.is_file() else ""
    if begin in text and end in text:
        return text[text.index(begin):text.index(end) + len(end)]
    return ""


def write_section(path: Path, name: str, body: str) -> None:
    """Put ``body`` into ``path`` as the section of benchmark ``name`` (replacing its last one)."""
    begin, end = section_markers(name)
    text = path.read_text() if path.is_file() else ""
    old = kept_section(path, name)
    new = f"{begin}\n{body.strip()}\n{end}"
    path.write_text(text.replace(old, new) if old else text.rstrip("\n") + "\n\n" + new + "\n")
