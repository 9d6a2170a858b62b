"""Label CSVs: ``filename,label`` (or ``filename,group``), with an optional ``role`` column
(``query``, ``database`` or ``both``) for evaluation protocols."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from app.config import get_settings

ROLES = {"query", "database", "both"}
MAX_LINE_CHARS = 64 * 1024  # a label file's line is a name and a label; longer lines are not labels


class LabelsError(ValueError):
    pass


@dataclass(frozen=True)
class LabelRow:
    filename: str
    label: str
    role: str = "both"


def read_bounded(path: Path, max_bytes: int) -> str:
    """The text of a labels file, read with a bound on its size and on its lines' length (so that
    an endless or huge input such as ``/dev/zero`` cannot exhaust memory)."""
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise LabelsError(f"{path}: larger than {max_bytes} bytes (IMGSIM_MAX_LABELS_BYTES)")
    text = data.decode("utf-8-sig")
    for number, line in enumerate(text.splitlines(), start=1):
        if len(line) > MAX_LINE_CHARS:
            raise LabelsError(f"{path}:{number}: line longer than {MAX_LINE_CHARS} characters")
    return text


def read_labels(path: Path, max_bytes: int | None = None) -> dict[str, LabelRow]:
    """filename (relative to the ingested folder, '/' separated) -> row."""
    try:
        text = read_bounded(path, max_bytes or get_settings().max_labels_bytes)
        with io.StringIO(text, newline="") as f:
            reader = csv.DictReader(f)
            fields = {name.strip().lower() for name in reader.fieldnames or []}
            label_col = "label" if "label" in fields else "group" if "group" in fields else None
            if "filename" not in fields or label_col is None:
                raise LabelsError(f"{path}: needs columns filename and label (or group)")
            rows: dict[str, LabelRow] = {}
            for line, raw in enumerate(reader, start=2):
                row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
                role = row.get("role") or "both"
                if role not in ROLES:
                    raise LabelsError(f"{path}:{line}: role must be one of {sorted(ROLES)}, not {role!r}")
                name = row["filename"].replace("\\", "/")
                if name:
                    rows[name] = LabelRow(name, row[label_col], role)
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelsError(f"{path}: cannot read labels: {exc}") from None


def label_for(rows: dict[str, LabelRow], relative: str) -> LabelRow | None:
    """Match by path relative to the folder, then by bare file name."""
    return rows.get(relative) or rows.get(relative.rsplit("/", 1)[-1])


def resolve_files(folder: Path, rows: dict[str, LabelRow], found: list[Path]) -> dict[str, Path]:
    """Labelled name -> file among ``found`` (files under ``folder``), by relative path, else bare name."""
    by_relative, by_name = {}, {}
    for path in found:
        try:
            relative = path.relative_to(folder).as_posix()
        except ValueError:
            relative = path.name
        by_relative[relative] = path
        by_name.setdefault(path.name, path)
    resolved = {}
    for name in rows:
        path = by_relative.get(name) or by_name.get(name.rsplit("/", 1)[-1])
        if path is not None:
            resolved[name] = path
    return resolved
