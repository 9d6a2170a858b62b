"""What the server shows of stored images: records, thumbnails made once and kept on disk, and
the verified correspondences between two images. Files are opened only at the paths the
database holds for an image id."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from typing import Literal

from PIL import Image
from pydantic import BaseModel, Field
from sqlalchemy import Engine, text

from app import api
from app.config import Settings
from app.describe.keypoints import frame_size
from app.describe.local import pair_inliers
from app.describe.matching import Prepared
from app.describe.methods import get_method
from app.evaluation.metrics import average_precision, precision_at
from app.files.images import ImageError, decode, read_bytes, sha256
from app.store.collections import DEFAULT_COLLECTION, collection_names, get_collection
from app.retrieval.hits import Hit
from app.store import migrate
from app.store.db import get_engine
from app.store.files import images_labelled
from app.store.images import image_record, list_failures
from app.store.local import load_local

MAX_LINES = 400  # correspondences drawn in a match view
VERDICTS = {"same": True, "not-same": False, "forget": None}


class Decision(BaseModel):
    """A person's word on pairs of one collection's images (``POST /api/decisions``)."""
    collection: str = Field(DEFAULT_COLLECTION, max_length=200)
    image: int | None = Field(None, ge=1)
    others: list[int] = Field(min_length=1, max_length=1000)
    verdict: Literal["same", "not-same", "forget"]


def hit_json(h: Hit) -> dict:
    return {"id": h.image_id, "path": h.path, "paths": list(h.paths), "label": h.label,
            "distance": round(h.distance, 6), "inliers": h.inliers,
            "score": None if h.score is None else round(h.score, 4), "verified": h.score is not None,
            "confidence": None if h.confidence is None else round(h.confidence, 4)}


def answer_json(answer) -> dict:
    return {"model": answer.model, "method": answer.method, "resolved": answer.resolved,
            "collection": answer.collection, "hits": [hit_json(h) for h in answer.hits]}


class NotFound(LookupError):
    pass


class Views:
    def __init__(self, engine: Engine | None, settings: Settings):
        self._engine, self.settings = engine, settings
        self.thumbnails = settings.home / "thumbnails"

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = get_engine()
            migrate.ensure_head(self._engine.url.render_as_string(hide_password=False))
        return self._engine

    def record(self, image_id: int) -> dict:
        with self.engine.connect() as conn:
            found = image_record(conn, image_id)
        if found is None:
            raise NotFound(f"image {image_id} is not stored")
        return found

    def decide(self, decision: Decision) -> int:
        if decision.image is not None:
            return api.decide(decision.image, decision.others, VERDICTS[decision.verdict], decision.collection,
                              self.engine)
        if decision.verdict != "not-same":
            raise ValueError("without image, only not-same (a whole group) can be said")
        return api.split_group(decision.others, decision.collection, self.engine)

    def database_reachable(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # any fault of the connection: the health check says so, in one word
            return False

    def collection_names(self) -> list[str]:
        with self.engine.connect() as conn:
            return collection_names(conn)

    def failures(self, collection: str | None) -> list[dict]:
        with self.engine.connect() as conn:
            where = get_collection(conn, collection).id if collection else None
            return [{**f, "failed_at": f["failed_at"].isoformat()} for f in list_failures(conn, where)]

    def thumbnail(self, image_id: int, size: int) -> Path:
        """The image's thumbnail (longest side ``size``), made once from the first of its files
        that still holds its content (a file replaced since ingest, or a link turned elsewhere,
        is never shown as this image, nor cached under its content hash)."""
        found = self.record(image_id)
        path = self.thumbnails / f"{found['sha256']}-{size}.jpg"
        if path.is_file():
            return path
        image = self._first_holding(found, size)
        image.thumbnail((size, size), Image.LANCZOS)
        self.thumbnails.mkdir(parents=True, exist_ok=True)
        # each request writes its own file and renames it: whole or absent, whatever the others do
        with tempfile.NamedTemporaryFile(dir=self.thumbnails, prefix=path.stem + ".", suffix=".part",
                                         delete=False) as partial:
            image.save(partial, "JPEG", quality=85)
        os.replace(partial.name, path)
        return path

    def _first_holding(self, found: dict, size: int) -> Image.Image:
        for f in found["files"]:
            try:
                data = read_bytes(Path(f["path"]), self.settings.max_file_bytes)
                if sha256(data) != found["sha256"]:
                    continue  # other content at the stored path now
                return decode(data, self.settings.max_pixels, min_side=size, longest=size)
            except (ImageError, OSError):
                continue
        raise NotFound(f"image {found['id']}: none of its files holds its content now")

    def matches(self, image_id: int, other_id: int, method: str) -> dict:
        """The verified correspondences of two images, as lines between points given in [0, 1]
        of each image's width and height."""
        meth = get_method(method)
        if meth.local is None:
            raise ValueError(f"method {meth.name} does not verify: use one with +sift or +orb")
        a, b = self.record(image_id), self.record(other_id)
        with self.engine.connect() as conn:
            features = load_local(conn, meth.local.name, [image_id, other_id])
        if image_id not in features or other_id not in features:
            raise NotFound(f"no {meth.local.name} features stored for image "
                           f"{image_id if image_id not in features else other_id}")
        qa, qb = Prepared(features[image_id], meth.local), Prepared(features[other_id], meth.local)
        ia, ib, _ = pair_inliers(qa, qb)
        pa = qa.points[ia] / np.float32(frame_size(a["width"], a["height"]))
        pb = qb.points[ib] / np.float32(frame_size(b["width"], b["height"]))
        lines = np.hstack([pa, pb])[:MAX_LINES].round(4).tolist()
        return {"a": image_id, "b": other_id, "kind": meth.local.name, "inliers": len(ia),
                "keypoints": [len(qa), len(qb)], "lines": lines}

    def compare(self, image_id: int, methods: list[str], collection: str, k: int) -> dict:
        """One stored query ranked by several methods side by side; where the query has a label,
        each ranking's average precision and precision at k (relevant: another image with the
        query's label)."""
        query = self.record(image_id)
        label = next((f["label"] for f in query["files"] if f["label"]), None)
        with self.engine.connect() as conn:
            relevant = images_labelled(conn, get_collection(conn, collection).id, label) - 1 if label else 0
        columns = []
        for method in methods:
            try:
                answer = answer_json(api.search(image_id, None, k + 1, method, collection, engine=self.engine))
            except (LookupError, ValueError) as exc:  # one method's error is shown in its column
                columns.append({"method": method, "error": str(exc)})
                continue
            hits = [h for h in answer["hits"] if h["id"] != image_id][:k]
            for h in hits:
                h["relevant"] = label is not None and h["label"] == label
            marks = [h["relevant"] for h in hits]
            columns.append({**answer, "hits": hits,
                            "ap": round(average_precision(marks, relevant), 3) if relevant else None,
                            "p_at_k": round(precision_at(marks, k), 3) if label else None})
        return {"query": query, "label": label, "relevant": relevant, "k": k, "columns": columns}
