"""Retrieval methods: how an image becomes stored vectors, and how a query is ranked.

A method name is a descriptor followed by optional steps, joined with ``+``:

    DESCRIPTOR[@SIDE][+w][+dba][+qe][+sift|+orb]

Descriptors (what is stored in the ``method`` column of each embedding table):
- ``global``: the original study's method: squash to the model's input size, global average pooling.
- ``gem``: keep the aspect ratio, longest side 512 px, GeM pooling (p=3) of the last conv map.
- ``gem-ms``: like ``gem`` at 768 px, over three scales (1, 1/sqrt 2, 1/2), summed.
- ``DESCRIPTOR@SIDE`` (e.g. ``gem@768``, ``gem-ms@1024``): the same with the longest side set to
  SIDE px (64-2048); stored under its own name.
- ``rmac``: ``gem`` plus 13 regional GeM vectors (2x2 and 3x3 overlapping grids) stored as extra
  rows; an image's score sums, over the query's regions, the best match among its regions.

Steps:
- ``w``: PCA-whitening learned on the collection (``imgsim index whiten``); stored as ``<descriptor>+w``.
- ``dba``: database-side augmentation (``imgsim index dba``): every stored whole-image vector is
  replaced by itself plus its top 3 neighbours weighted by similarity^3; stored as ``<stored>+dba``.
  Queries are searched as they are (pair it with ``qe`` for the query side).
- ``qe``: alpha query expansion: the query plus its top 3 results weighted by similarity^3, searched again.
- ``sift`` / ``orb``: spatial verification of the top 100 by RANSAC-verified local matches (``app.describe.local``),
  expanded through the match graph (``imgsim index graph``) where it has been built.

``verified`` names the recommended default: ``gem+w+sift`` where a whitening has been fitted
for the model (``imgsim index whiten``), else ``gem+sift``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from app.describe.keypoints import KINDS, LONGEST_SIDE, LocalKind
from app.describe.registry import ModelSpec


class UnknownMethod(KeyError):
    def __str__(self) -> str:
        return (f"unknown method {self.args[0]!r}; use DESCRIPTOR[@SIDE][+w][+dba][+qe][+sift|+orb] with a "
                f"descriptor from {', '.join(DESCRIPTORS)} (@SIDE: {MIN_SIDE}-{MAX_SIDE} px, not with global; "
                f"+dba: not with rmac), or one of {', '.join(ALIASES)}")


@dataclass(frozen=True)
class Descriptor:
    name: str
    description: str
    squash: bool = False  # squash to the model's input size (else keep aspect ratio)
    longest: int = 512
    scales: tuple[float, ...] = (1.0,)
    pooling: str = "gem"
    regions: bool = False

    def sizes(self, width: int, height: int) -> list[tuple[int, int]]:
        """(width, height) of each scale for an image of this size (aspect kept)."""
        out = []
        for s in self.scales:
            f = self.longest * s / max(width, height)
            out.append((max(32, round(width * f)), max(32, round(height * f))))
        return out


DESCRIPTORS: dict[str, Descriptor] = {
    "global": Descriptor("global", "squash to the model input (224 px for most), global average pooling",
                         squash=True, pooling="avg"),
    "gem": Descriptor("gem", "aspect kept, longest side 512 px, GeM p=3"),
    "gem-ms": Descriptor("gem-ms", "aspect kept, longest side 768 px at scales 1, 1/sqrt2, 1/2, GeM p=3",
                         longest=768, scales=(1.0, 1 / math.sqrt(2), 0.5)),
    "rmac": Descriptor("rmac", "gem plus 13 regional GeM vectors stored as extra rows", regions=True),
}
STEPS = ("w", "dba", "qe", "sift", "orb")
MIN_SIDE, MAX_SIDE = 64, 2048  # range of DESCRIPTOR@SIDE
ALIASES = {"verified": "gem+sift"}
WHITENED_ALIASES = {"verified": "gem+w+sift"}  # used once the collection has a whitening
DEFAULT_METHOD = "verified"
SHORTLIST = 100  # candidates verified by local features
# A verifying method also describes each image turned by a quarter both ways (a camera held
# on its side; upside-down photos are rare: the half turn nominated 2 more of Holidays' 133
# relevant images lost by the upright search) at half the descriptor's side: the turned
# vectors only nominate candidates, verification decides. At 256 px they nominated 57 of the
# 133 (64 at 384 px, 64 at 512) for 25% of the upright pass's work each (56% at 384), and
# Holidays' verified mAP stayed 0.926 (0.927 at 384; docs/quality.md, docs/performance.md).
QUARTER_TURNS = (1, 3)  # counter-clockwise quarters: 90 and 270 degrees
TURNED_SCALE = 0.5
QE_TOP, QE_ALPHA = 3, 3.0
WHITENED, AUGMENTED = "w", "dba"  # the steps whose rows are stored under their own method names


def whitened_name(stored: str) -> str:
    """The ``method`` value of the whitened rows of ``stored`` (``gem`` -> ``gem+w``)."""
    return f"{stored}+{WHITENED}"


def augmented_name(stored: str) -> str:
    """The ``method`` value of the augmented rows of ``stored`` (``gem+w`` -> ``gem+w+dba``)."""
    return f"{stored}+{AUGMENTED}"


@dataclass(frozen=True)
class Method:
    name: str
    descriptor: Descriptor
    whiten: bool = False
    dba: bool = False
    qe: bool = False
    local: LocalKind | None = None
    steps: tuple[str, ...] = field(default=())

    @property
    def canonical(self) -> str:
        return "+".join((self.descriptor.name, *self.steps))

    @property
    def stored(self) -> str:
        """The ``method`` value of the vectors this method searches."""
        return augmented_name(self.augmented_from) if self.dba else self.augmented_from

    @property
    def augmented_from(self) -> str:
        """The ``method`` value of the vectors database-side augmentation starts from."""
        return whitened_name(self.raw) if self.whiten else self.raw

    @property
    def raw(self) -> str:
        """The ``method`` value of the unwhitened vectors (what ingest computes)."""
        return self.descriptor.name

    @property
    def turns(self) -> bool:
        """Whether images are described at the other quarter turns too (``QUARTER_TURNS``): a
        verifying method adds each turn's nearest images to its shortlist, so a photo stored
        or shot turned is still verified (local features do not depend on the turn)."""
        return self.local is not None

    def turned(self, arrays: list[np.ndarray]) -> list[list[np.ndarray]]:
        """An image's prepared arrays (one per scale) -> the arrays of each of ``QUARTER_TURNS``:
        resized to ``TURNED_SCALE`` of their size, then turned."""
        smaller = [np.asarray(Image.fromarray(a).resize(
            (max(32, round(a.shape[1] * TURNED_SCALE)), max(32, round(a.shape[0] * TURNED_SCALE))),
            Image.BILINEAR, reducing_gap=3.0), dtype=np.uint8) for a in arrays]
        return [[np.rot90(a, k) for a in smaller] for k in QUARTER_TURNS]

    def min_side(self, spec: ModelSpec) -> int:
        return spec.input_size if self.descriptor.squash else 32

    def longest_side(self) -> int:
        side = 0 if self.descriptor.squash else self.descriptor.longest
        return max(side, LONGEST_SIDE if self.local else 0)

    def prepare(self, image: Image.Image, spec: ModelSpec) -> list[np.ndarray]:
        """RGB image -> the uint8 arrays the backbone takes (one per scale)."""
        if self.descriptor.squash:
            size = spec.input_size
            return [np.asarray(image.resize((size, size), Image.BILINEAR, reducing_gap=3.0), dtype=np.uint8)]
        return [np.asarray(image.resize(wh, Image.BILINEAR, reducing_gap=3.0), dtype=np.uint8)
                for wh in self.descriptor.sizes(image.width, image.height)]

    def __str__(self) -> str:
        return self.name


def get_descriptor(name: str) -> Descriptor | None:
    """``gem``, or ``gem@768``: a descriptor with its longest side set (aspect-kept ones only)."""
    base, at, size = name.partition("@")
    descriptor = DESCRIPTORS.get(base)
    if descriptor is None or not at:
        return descriptor
    if descriptor.squash or not size.isdigit() or not MIN_SIDE <= int(size) <= MAX_SIDE or size != str(int(size)):
        return None
    return replace(descriptor, name=f"{base}@{size}", longest=int(size))


def get_method(name: str) -> Method:
    canonical = ALIASES.get(name, name)
    parts = canonical.split("+")
    descriptor = get_descriptor(parts[0])
    steps = tuple(parts[1:])
    if (descriptor is None or len(set(steps)) != len(steps) or not set(steps) <= set(STEPS)
            or {"sift", "orb"} <= set(steps) or list(steps) != sorted(steps, key=STEPS.index)):
        raise UnknownMethod(name)
    if "dba" in steps and descriptor.regions:
        raise UnknownMethod(name)  # augmentation is defined on whole-image vectors
    local = next((KINDS[s] for s in steps if s in KINDS), None)
    return Method(name, descriptor, WHITENED in steps, AUGMENTED in steps, "qe" in steps, local, steps)


def uses_whitening(method: Method) -> bool:
    """Whether searches with ``method`` use the collection's whitening (always, or once fitted)."""
    return method.whiten or method.name in WHITENED_ALIASES


def with_collection(method: Method, has_whitening: bool) -> Method:
    """Resolve an alias that depends on the collection (``verified`` whitens once a fit exists)."""
    whitened = WHITENED_ALIASES.get(method.name)
    if whitened and has_whitening:
        return replace(get_method(whitened), name=method.name)
    return method

