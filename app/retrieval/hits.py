"""A ranked result."""
from __future__ import annotations

from dataclasses import dataclass

from app.store.knn import Neighbour


@dataclass(frozen=True)
class Hit:
    image_id: int
    path: str
    distance: float  # cosine distance of the first stage (whole-image vectors)
    label: str | None
    inliers: int | None = None  # verified local matches, when the method verified this candidate
    score: float | None = None  # re-ranking score (background-weighted cells of inliers, graph-expanded)
    paths: tuple[str, ...] = ()  # every file holding the image (``path`` is the first)
    confidence: float | None = None  # that it shows the query's item (``app.retrieval.confidence``), when verified

    @classmethod
    def of(cls, row: Neighbour) -> "Hit":
        return cls(row.image_id, row.path, row.distance, row.label, paths=row.paths)
