"""What a search may return: the images of one collection, optionally only those with a file
of a label, those with a file below a folder, or a given list (an evaluation protocol).

Filters are SQL conditions on the image id of an embedding row ``e`` (values are bind
parameters); the nearest-neighbour query keeps scanning its HNSW index until k rows pass
(pgvector's iterative index scans). They are written as scalar subqueries, not ``EXISTS``:
PostgreSQL turns ``EXISTS`` into a join and may then drive the search from the filter's table
and sort every row it finds; a scalar subquery stays a filter of the index scan.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.store.files import under_range


@dataclass(frozen=True)
class Scope:
    collection: int
    among: tuple[int, ...] | None = None
    label: str | None = None
    under: str | None = None  # a folder as stored text (``app.files.paths.path_text``)

    @classmethod
    def of(cls, collection: int, among: Sequence[int] | None = None, label: str | None = None,
           under: str | None = None) -> "Scope":
        return cls(collection, None if among is None else tuple(int(i) for i in among), label, under)

    def narrowed(self, among: Sequence[int]) -> "Scope":
        return Scope.of(self.collection, among, self.label, self.under)

    @property
    def filtered(self) -> bool:
        """Narrower than the whole collection."""
        return self.among is not None or self.label is not None or self.under is not None

    def allows(self, image_id: int) -> bool:
        """What can be told without the database (the list); the SQL applies the rest."""
        return self.among is None or image_id in self.among

    def sql(self, image: str = "e.image_id") -> tuple[str, dict]:
        """(conditions to AND to a WHERE clause, their parameters)."""
        parts = [f"(SELECT si.collection_id FROM images si WHERE si.id = {image}) = :scope_c"]
        params: dict = {"scope_c": self.collection}
        if self.among is not None:
            parts.append(f"{image} = ANY(:scope_among)")
            params["scope_among"] = list(self.among)
        if self.label is not None:
            parts.append(f"(SELECT true FROM files sf WHERE sf.image_id = {image} AND sf.label = :scope_label LIMIT 1)")
            params["scope_label"] = self.label
        if self.under is not None:
            params["scope_lo"], params["scope_hi"] = under_range(self.under)
            parts.append(f"(SELECT true FROM files su WHERE su.image_id = {image} "
                         f"AND su.path >= :scope_lo AND su.path < :scope_hi LIMIT 1)")
        return " AND ".join(parts), params
