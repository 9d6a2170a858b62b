"""The work a match-graph job's rows share (``SharedWork``), so that a pair verified from both
of its sides takes one descriptor product."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np
from sqlalchemy import Connection

from app.describe.keypoints import LocalKind
from app.describe.matching import Prepared
from app.store.local import load_local


class SharedWork:
    """What the verifications of one job (the match graph's rows) share: the local features of
    the last ``FEATURES_KEPT`` candidates loaded, ready for matching (``Prepared``: the codes as
    float32 with their norms, which cost a tenth of a row's time when made for each row anew),
    and tentative matches for queries still to come. Verifying (a, b) takes one product of their descriptors, which gives the ratio test
    both ways; when b's row is still to be computed its matches against a are kept (at most
    ``MATCHES_KEPT``), so (b, a) later needs only its homography. A row's candidates are
    verified in threads (``app.describe.local.in_threads``): the kept matches are taken and
    kept under a lock."""

    FEATURES_KEPT = 512  # about 260 KiB each (float32 codes)
    MATCHES_KEPT = 200_000

    def __init__(self, pending: Iterable[int]):
        self.pending = set(pending)
        self.features: OrderedDict[int, Prepared] = OrderedDict()
        self.later: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {}  # query -> candidate -> matches
        self.kept = 0
        self.lock = threading.Lock()

    def load(self, conn: Connection, kind: LocalKind, ids: list[int]) -> dict[int, Prepared]:
        """The candidates' features ready for matching (those with none stored are left out)."""
        loaded = load_local(conn, kind.name, [i for i in ids if i not in self.features])
        self.features.update({i: Prepared(features, kind) for i, features in loaded.items()})
        found = {i: self.features[i] for i in ids if i in self.features}
        for i in found:
            self.features.move_to_end(i)
        while len(self.features) > max(self.FEATURES_KEPT, len(found)):
            self.features.popitem(last=False)
        return found

    def take(self, query: int, candidate: int) -> tuple[np.ndarray, np.ndarray] | None:
        with self.lock:
            found = self.later.get(query, {}).pop(candidate, None)
            self.kept -= found is not None
            return found

    def wants(self, query: int) -> bool:
        return query in self.pending and self.kept < self.MATCHES_KEPT

    def keep(self, query: int, candidate: int, matches: tuple[np.ndarray, np.ndarray]) -> None:
        with self.lock:
            self.later.setdefault(query, {})[candidate] = matches
            self.kept += 1

    def done(self, query: int) -> None:
        with self.lock:
            self.pending.discard(query)
            self.kept -= len(self.later.pop(query, {}))
