"""The embed step: a batch of decoded images -> descriptor rows per model. One loaded backbone
per (model, descriptor), built on first use and kept for the run (or handed in, to share)."""
from __future__ import annotations

import time

import numpy as np

from app.describe.embedder import Embedder
from app.describe.methods import Method
from app.describe.registry import ModelSpec
from app.ingestion.reader import Decoded
from app.ingestion.report import IngestReport

Vectors = dict[str, tuple[list[Decoded], list[np.ndarray]]]  # model name -> (images, their descriptor rows)


class Embed:
    def __init__(self, method: Method, embedders: dict[str, Embedder] | None = None, pretrained: bool = True):
        self.method, self.pretrained = method, pretrained
        self.embedders = embedders if embedders is not None else {}

    def embedder(self, spec: ModelSpec) -> Embedder:
        key = f"{spec.name}/{self.method.raw}"
        if key not in self.embedders:
            self.embedders[key] = Embedder(spec, self.method, pretrained=self.pretrained)
        return self.embedders[key]

    def __call__(self, models: list[ModelSpec], images: list[Decoded],
                 report: IngestReport) -> Vectors:
        """model name -> (the images that needed it, their (R, dim) descriptor rows, followed by
        their turned rows where the method turns); timed per model."""
        out = {}
        for spec in models:
            batch = [d for d in images if spec.name in d.arrays]
            if batch:
                started = time.perf_counter()
                out[spec.name] = (batch, self.embedder(spec).describe([d.arrays[spec.name] for d in batch],
                                                                           turns=self.method.turns))
                elapsed = time.perf_counter() - started
                report.embed_seconds[spec.name] = report.embed_seconds.get(spec.name, 0.0) + elapsed
        return out
