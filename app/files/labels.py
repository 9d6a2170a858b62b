"""Label CSVs: ``filename,label`` (or ``filename,group``), with an optional ``role`` column
(``query``, ``database`` or ``both``) for evaluation protocols."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

ROLES = {"query", "database", "both"}


class LabelsError(ValueError):
    pass


@dataclass(frozen=True)
class LabelRow:
    filename: str
    label: str
    role: str = "both"


def read_labels(path: Path) -> dict[str, LabelRow]:
    """filename (relative to the ingested folder, '/' separated) -> row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
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
