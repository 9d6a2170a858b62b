"""How well groups found agree with labelled groups (pure functions): pair precision and
recall, B-cubed precision, recall and F1, and the number of groups.

- pair precision: of the pairs of images put in one group, the share that carry one label;
  pair recall: of the pairs that carry one label, the share put in one group;
- B-cubed: for each image, the share of its group that carries its label (precision) and the
  share of its label that is in its group (recall), averaged over the labelled images; an
  image in no group is a group of its own;
- how far the evidence reaches (``evidence_reach``): the share of the pairs that carry one label
  with a match-graph edge, and the share joined by a path of edges between images of that label,
  which is the most pair recall any grouping of those edges can reach without a false pair. It
  says whether a pair missed was lost by verification (no path) or by the grouping.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from sqlalchemy import Engine

from app.collection.groups import MIN_CONFIDENCE, find_groups
from app.describe.methods import Method
from app.retrieval.duplicates import groups as connected_groups
from app.store.collections import Collection
from app.store.files import labelled_paths
from app.store.groups import confident_edges


@dataclass(frozen=True)
class GroupScores:
    pair_precision: float
    pair_recall: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f1: float
    groups: int  # groups found (two or more images)
    true_groups: int  # labels held by two or more images
    largest: int  # images in the largest group found
    edge_recall: float | None = None  # true pairs with an edge (``evidence_reach``)
    reachable_recall: float | None = None  # true pairs joined by a path of true edges

    def as_dict(self) -> dict:
        return asdict(self)


def group_scores(found: Sequence[Sequence[int]], labels: dict[int, str],
                 edges: Mapping[tuple[int, int], float] | None = None) -> GroupScores:
    """``found``: groups of image ids; ``labels``: each labelled image's label (images without
    one are left out of every count); ``edges``: the pairs the groups were formed from, for
    ``evidence_reach``."""
    group_of = {i: n for n, members in enumerate(found) for i in members if i in labels}
    for i in labels:  # an image in no group is alone
        group_of.setdefault(i, ("alone", i))
    group_size = Counter(group_of.values())
    label_size = Counter(labels.values())
    both = Counter((group_of[i], labels[i]) for i in labels)
    together = sum(n * (n - 1) // 2 for n in group_size.values())
    same = sum(n * (n - 1) // 2 for n in label_size.values())
    hits = sum(n * (n - 1) // 2 for n in both.values())
    precision = sum(both[group_of[i], labels[i]] / group_size[group_of[i]] for i in labels) / max(1, len(labels))
    recall = sum(both[group_of[i], labels[i]] / label_size[labels[i]] for i in labels) / max(1, len(labels))
    return GroupScores(
        pair_precision=hits / together if together else 1.0, pair_recall=hits / same if same else 1.0,
        bcubed_precision=precision, bcubed_recall=recall,
        bcubed_f1=2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        groups=sum(1 for members in found if len(members) > 1),
        true_groups=sum(1 for n in label_size.values() if n > 1),
        largest=max((len(m) for m in found), default=0),
        **({} if edges is None else dict(zip(("edge_recall", "reachable_recall"), evidence_reach(edges, labels)))))


def evidence_reach(edges: Mapping[tuple[int, int], float] | Sequence[tuple[int, int]],
                   labels: dict[int, str]) -> tuple[float, float]:
    """(the share of the pairs that carry one label with an edge, the share joined by a path of
    edges that each join two images of that label); 1.0 each where no two images share a label."""
    true = [(a, b, 0.0) for a, b in edges if a in labels and b in labels and labels[a] == labels[b]]
    same = sum(n * (n - 1) // 2 for n in Counter(labels.values()).values())
    joined = sum(len(c) * (len(c) - 1) // 2 for c in connected_groups(true))
    return (len(true) / same, joined / same) if same else (1.0, 1.0)


def image_labels(engine: Engine, collection: Collection) -> dict[int, str]:
    """Each labelled image's label (that of its first labelled file)."""
    with engine.connect() as conn:
        labels: dict[int, str] = {}
        for _path, image_id, label in labelled_paths(conn, collection.id):
            labels.setdefault(image_id, label)
    return labels


def evaluate_groups(engine: Engine, collection: Collection, model: str, method: Method,
                    min_confidence: float = MIN_CONFIDENCE) -> GroupScores:
    """The collection's groups (from its match graph) against its files' labels."""
    if method.local is None:
        raise ValueError(f"groups need a verifying method: {method.name} does not verify")
    found = find_groups(engine, collection, model, method.local.name, min_confidence)
    with engine.connect() as conn:
        edges = confident_edges(conn, model, method.local.name, collection.id)
    return group_scores([[m.id for m in g.members] for g in found], image_labels(engine, collection), edges)
