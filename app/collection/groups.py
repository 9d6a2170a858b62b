"""Groups of the photos that show the same item (``imgsim groups``), from the match graph's
stored edges and their confidences, without verifying anything again.

An edge's confidence (``app.retrieval.confidence``) is read from both sides at the better of
the two; a person's decisions override it ("same": joined first, "not the same": never in one
group). Groups are formed by average linkage (``app.collection.linkage``) at
``min_confidence`` (default ``MIN_CONFIDENCE``: more likely the same item than not, on
average over the group; a pair with no edge counts ``UNKNOWN``), and stored in
``item_groups`` for SQL; a decision regroups.
Each member comes with all its files, its confidence (its average over the group), its
strongest evidence in the group, the person's decision, and whether it is the suggested one to
keep (most pixels, then most bytes): only a suggestion, imgsim never deletes or moves a file.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sqlalchemy import Engine

from app.collection.linkage import average_linkage, member_confidence
from app.store.collections import Collection
from app.store.groups import (confident_edges, decide, decisions, graphs_of, members, pair, rows_without_confidences,
                              write_groups)

MIN_CONFIDENCE = 0.5
# What a pair with no edge counts: verification misses some views of one item (a third of the
# pairs of one Holidays scene have no edge), so no edge is weak evidence against, not proof.
# (0 split chains of views; 0.3 began to join look-alikes: docs/quality.md.)
UNKNOWN = 0.2


class GroupingError(ValueError):
    pass


@dataclass
class Member:
    id: int
    path: str
    paths: list[str]
    label: str | None
    width: int
    height: int
    size: int  # bytes of its largest file
    confidence: float  # its average confidence with the group's other members
    evidence: list[dict] = field(default_factory=list)  # its strongest edges in the group: {other, confidence}
    decision: str | None = None  # "same" / "not the same" where a person said so of it in this group
    keep: bool = False  # the suggested one to keep

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Group:
    number: int
    members: list[Member]

    def as_dict(self) -> dict:
        return {"group": self.number, "size": len(self.members), "members": [m.as_dict() for m in self.members]}


def find_groups(engine: Engine, collection: Collection, model: str, kind: str,
                min_confidence: float = MIN_CONFIDENCE) -> list[Group]:
    """The collection's groups, largest first (stored for SQL at the default confidence)."""
    with engine.connect() as conn:
        edges = confident_edges(conn, model, kind, collection.id)
        said = decisions(conn, collection.id)
        if not edges and rows_without_confidences(conn, model, kind, collection.id):
            raise GroupingError(f"the match graph of {model}/{kind} in {collection.name} was built before "
                                f"confidences were stored: run `imgsim index graph --collection {collection.name}`")
    found = average_linkage((), edges, min_confidence, same=[p for p, same in said.items() if same],
                            apart=[p for p, same in said.items() if not same], unknown=UNKNOWN)
    confidence = {**edges, **{p: 1.0 if same else 0.0 for p, same in said.items()}}  # as the linkage read them
    with engine.begin() as conn:
        info = members(conn, [i for g in found for i in g])
        found = [[i for i in g if i in info] for g in found]  # an image deleted meanwhile drops out
        groups = [Group(n, [_member(i, g, confidence, said, info[i]) for i in g])
                  for n, g in enumerate((g for g in found if len(g) > 1), 1)]
        for group in groups:
            _suggest_keep(group)
        if min_confidence == MIN_CONFIDENCE:
            write_groups(conn, collection.id, model, [[(m.id, m.confidence) for m in g.members] for g in groups])
    return groups


def _member(image_id: int, group: list[int], confidence: dict, said: dict, info: dict) -> Member:
    others = [o for o in group if o != image_id]
    edges = sorted(((o, confidence.get(pair(image_id, o), 0.0)) for o in others), key=lambda e: -e[1])
    verdicts = {said[pair(image_id, o)] for o in others if pair(image_id, o) in said}
    files = info["files"]
    return Member(id=image_id, path=files[0]["path"], paths=[f["path"] for f in files],
                  label=next((f["label"] for f in files if f["label"]), None), width=info["width"],
                  height=info["height"], size=max(f["size"] or 0 for f in files),
                  confidence=round(member_confidence(image_id, group, confidence, UNKNOWN), 4),
                  evidence=[{"other": o, "confidence": round(c, 4)} for o, c in edges[:3] if c > 0],
                  decision=None if not verdicts else ("same" if verdicts == {True} else "not the same"))


def _suggest_keep(group: Group) -> None:
    best = max(group.members, key=lambda m: (m.width * m.height, m.size, -m.id))
    best.keep = True


def regroup(engine: Engine, collection: Collection) -> None:
    """Store the collection's groups anew for each of its match graphs (after its edges or its
    decisions changed)."""
    with engine.connect() as conn:
        graphs = graphs_of(conn, collection.id)
    for model, kind in graphs:
        try:
            find_groups(engine, collection, model, kind)
        except GroupingError:  # rows from before confidences: the next graph job computes them
            pass


def record_decision(engine: Engine, collection: Collection, image_id: int, others: list[int],
                    same: bool | None) -> int:
    """A person's word on ``image_id`` against each of ``others`` ("same", "not the same", or
    None: forget it); the pairs recorded. The stored groups follow."""
    with engine.begin() as conn:
        count = decide(conn, collection.id, [(image_id, o) for o in others], same)
    regroup(engine, collection)
    return count


def split_group(engine: Engine, collection: Collection, ids: list[int]) -> int:
    """"Not the same" for a whole group: every pair of ``ids`` is marked so."""
    with engine.begin() as conn:
        count = decide(conn, collection.id, [(a, b) for n, a in enumerate(ids) for b in ids[n + 1:]], False)
    regroup(engine, collection)
    return count
