"""Retrieval metrics from ranked lists.

Each query contributes a ranked list of booleans (relevant or not, the query itself
already removed) and the number of relevant items in the database.

- AP: mean of precision at each relevant item's rank, over all relevant items
  (items never returned count as 0); mAP is its mean over queries.
- P@k: fraction of the top k that is relevant. P@R uses k = R, the query's relevant count.
- recall@k: fraction of the query's relevant items found in the top k.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def average_precision(relevant: Sequence[bool], n_relevant: int) -> float:
    if n_relevant <= 0:
        return 0.0
    hits = np.asarray(relevant, dtype=bool)
    ranks = np.flatnonzero(hits) + 1
    return float(np.sum(np.arange(1, len(ranks) + 1) / ranks) / n_relevant)


def precision_at(relevant: Sequence[bool], k: int) -> float:
    return float(np.sum(np.asarray(relevant[:k], dtype=bool)) / k) if k > 0 else 0.0


def recall_at(relevant: Sequence[bool], n_relevant: int, k: int) -> float:
    return float(np.sum(np.asarray(relevant[:k], dtype=bool)) / n_relevant) if n_relevant > 0 else 0.0


@dataclass(frozen=True)
class Summary:
    map: float
    p_at_1: float
    p_at_r: float
    recall_at_1: float
    recall_at_k: float
    k: int
    n_queries: int

    def as_dict(self) -> dict:
        return {"map": self.map, "p_at_1": self.p_at_1, "p_at_r": self.p_at_r,
                "recall_at_1": self.recall_at_1, "recall_at_k": self.recall_at_k, "k": self.k,
                "n_queries": self.n_queries}


def summarize(lists: Sequence[tuple[Sequence[bool], int]], k: int = 10) -> Summary:
    """``lists``: (ranked relevance, number relevant) per query; queries with none relevant are skipped."""
    used = [(rel, n) for rel, n in lists if n > 0]
    if not used:
        return Summary(0.0, 0.0, 0.0, 0.0, 0.0, k, 0)

    def mean(values):
        return float(np.mean(list(values)))

    return Summary(
        map=mean(average_precision(r, n) for r, n in used),
        p_at_1=mean(precision_at(r, 1) for r, n in used),
        p_at_r=mean(precision_at(r, n) for r, n in used),
        recall_at_1=mean(recall_at(r, n, 1) for r, n in used),
        recall_at_k=mean(recall_at(r, n, k) for r, n in used),
        k=k,
        n_queries=len(used),
    )
