"""Groups of the photos of one item from pairwise same-item confidences: average linkage
(pure functions; ``app.collection.groups`` reads and stores them).

Two groups merge only while the confidences between all their members average at least the
threshold, a pair with no edge counting 0: a photo joins a group when it is confidently the
same item as enough of it, and one bridge (a photo that matches one member of each of two
groups, a look-alike sharing a background) cannot chain them, as connected components do. A
person's decisions bind: a pair said to be the same is joined first, a pair said not to be
never ends in one group.
"""
from __future__ import annotations

import heapq
from collections.abc import Iterable

Pair = tuple[int, int]


def average_linkage(ids: Iterable[int], confidence: dict[Pair, float], threshold: float,
                    same: Iterable[Pair] = (), apart: Iterable[Pair] = (), unknown: float = 0.0) -> list[list[int]]:
    """The groups (two or more images each), largest first, members in id order; a pair with
    no edge counts ``unknown``."""
    same, apart = blocked_pairs(same), blocked_pairs(apart)
    confidence = {**{(min(a, b), max(a, b)): c for (a, b), c in confidence.items()},
                  **{p: 1.0 for p in same}, **{p: 0.0 for p in apart}}
    ids = sorted({int(i) for i in ids} | {i for p in confidence for i in p})
    members = {i: [i] for i in ids}
    owner = {i: i for i in ids}
    sums: dict[int, dict[int, float]] = {i: {} for i in ids}  # confidence - unknown, summed between groups
    blocked: dict[int, set[int]] = {i: set() for i in ids}
    for a, b in apart:
        if a in owner and b in owner:
            blocked[a].add(b)
            blocked[b].add(a)
    for (a, b), c in confidence.items():
        if (a, b) not in same:
            sums[a][b] = sums[b][a] = c - unknown
    for a, b in sorted(same):  # a person's "same" first, unless it would join a "not the same"
        if owner[a] != owner[b] and owner[b] not in blocked[owner[a]]:
            _merge(owner[a], owner[b], members, owner, sums, blocked)

    def mean(a: int, b: int) -> float:
        return unknown + sums[a].get(b, 0.0) / (len(members[a]) * len(members[b]))

    heap = [(-mean(a, b), a, b) for a in sums for b in sums[a] if a < b]
    heapq.heapify(heap)
    while heap:
        negative, a, b = heapq.heappop(heap)
        if a not in members or b not in members or b in blocked[a]:
            continue
        average = mean(a, b)
        if abs(average + negative) > 1e-12:  # stale: the groups changed since
            continue
        if average < threshold:
            break
        kept = _merge(a, b, members, owner, sums, blocked)
        for other in sums[kept]:
            heapq.heappush(heap, (-mean(kept, other), min(kept, other), max(kept, other)))
    found = settle([sorted(m) for m in members.values()], confidence, threshold, unknown, apart,
                   {i for p in same for i in p})
    return sorted((m for m in found if len(m) > 1), key=lambda m: (-len(m), m[0]))


def _merge(a: int, b: int, members: dict[int, list[int]], owner: dict[int, int],
           sums: dict[int, dict[int, float]], blocked: dict[int, set[int]]) -> int:
    """Merge group ``b`` into ``a`` (the sums of confidences to every other group add up)."""
    for i in members[b]:
        owner[i] = a
    members[a] += members.pop(b)
    for other, s in sums.pop(b).items():
        sums[other].pop(b, None)
        if other != a:
            sums[a][other] = sums[other][a] = sums[a].get(other, 0.0) + s
    sums[a].pop(b, None)
    for other in blocked.pop(b):
        blocked[other].discard(b)
        if other != a:
            blocked[other].add(a)
            blocked[a].add(other)
    return a


def member_confidence(image_id: int, group: list[int], confidence: dict[Pair, float], unknown: float = 0.0) -> float:
    """How confidently ``image_id`` shows the item of its ``group``: its average confidence with
    the other members (a pair with no edge: ``unknown``)."""
    others = [o for o in group if o != image_id]
    return sum(confidence.get((min(image_id, o), max(image_id, o)), unknown) for o in others) / max(1, len(others))


def blocked_pairs(apart: Iterable[Pair]) -> set[Pair]:
    return {(min(a, b), max(a, b)) for a, b in apart}


def settle(groups: list[list[int]], confidence: dict[Pair, float], threshold: float, unknown: float,
           apart: set[Pair], placed: set[int] = frozenset(), rounds: int = 10) -> list[list[int]]:
    """Every member checked against its group as it finally stands: a photo that joined early
    (a look-alike paired with one member before that member met its own group) and whose
    average with the group is now under ``threshold`` leaves it, for the group it is most
    confidently the same item as at ``threshold`` or more, or alone. Photos a person said are
    the same as another (``placed``) stay."""
    owner = {i: n for n, g in enumerate(groups) for i in g}
    members = {n: set(g) for n, g in enumerate(groups)}
    linked: dict[int, set[int]] = {}  # each photo's images with an edge, read once (not per photo that moves)
    for a, b in confidence:
        linked.setdefault(a, set()).add(b)
        linked.setdefault(b, set()).add(a)
    for _ in range(rounds):
        moved = False
        for i in sorted(owner):
            here = members[owner[i]]
            if i in placed or len(here) < 2 or member_confidence(i, sorted(here), confidence, unknown) >= threshold:
                continue
            near = {owner[o] for o in linked.get(i, ())}
            choices = [(member_confidence(i, sorted(members[n] | {i}), confidence, unknown), n) for n in near
                       if n != owner[i] and not any((min(i, o), max(i, o)) in apart for o in members[n])]
            best, n = max(choices, default=(0.0, None))
            here.discard(i)
            if best < threshold:
                n = max(members) + 1
                members[n] = set()
            members[n].add(i)
            owner[i] = n
            moved = True
        if not moved:
            break
    return [sorted(g) for g in members.values() if g]

