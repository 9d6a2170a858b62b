"""What an ingest run did: counts, failures and timings."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.files.paths import path_text


@dataclass
class Failure:
    path: Path
    reason: str


@dataclass
class IngestReport:
    collection: str = ""
    found: int = 0
    new_images: int = 0
    skipped: int = 0  # files whose content was stored already (unchanged, copies, moves)
    unchanged: int = 0  # of those, files not read again (same path, size and mtime)
    removed: list[str] = field(default_factory=list)  # file rows a sync removed (stored path text)
    removed_images: int = 0  # images deleted with their last file
    failed: list[Failure] = field(default_factory=list)
    embedded: dict[str, int] = field(default_factory=dict)
    local_features: int = 0
    seconds: float = 0.0
    embed_seconds: dict[str, float] = field(default_factory=dict)
    graph: list[dict] = field(default_factory=list)  # match-graph rows computed after the load
    fits: list[dict] = field(default_factory=list)  # whitening fitted after the load, with the reason

    @property
    def images_per_second(self) -> float:
        done = self.found - self.skipped - len(self.failed)
        return done / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        """Plain values for JSON (paths as stored text)."""
        return {"collection": self.collection, "found": self.found, "new": self.new_images, "skipped": self.skipped,
                "unchanged": self.unchanged, "removed": len(self.removed), "removed_paths": self.removed,
                "removed_images": self.removed_images,
                "failed": [{"path": path_text(f.path), "reason": f.reason} for f in self.failed],
                "embedded": dict(self.embedded), "local_features": self.local_features,
                "seconds": round(self.seconds, 3), "graph": self.graph, "fits": self.fits}

    def add(self, counts: "IngestReport") -> None:
        """Add a batch's counts."""
        self.new_images += counts.new_images
        self.local_features += counts.local_features
        for name, n in counts.embedded.items():
            self.embedded[name] = self.embedded.get(name, 0) + n
