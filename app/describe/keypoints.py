"""Local features and their stored form: SIFT (default) or ORB keypoints of a photo.

Rules (fixed, documented defaults):
- SIFT: up to 1000 keypoints detected on the image resized so its longest side is at most 768 px
  (``DETECT_SIDE``), stored in the frame of the image at 1024 px (``LONGEST_SIDE``), where every
  distance of verification is set. SIFT doubles its input first, so 768 px are analysed from
  1536: at 1024 the finest octave (2048 px) gave the budget to keypoints 2-3 px across (paper
  grain, noise, JPEG blocks) that a second photo does not repeat. Measured on the DVD photos
  (docs/quality.md): mAP 0.960 -> 0.976 all-vs-all, 0.937 -> 0.958 photo -> photo, in 0.56x
  the time (68 against 121 ms a photo). Descriptors
  are kept compact (``compact_sift``): SIFT's eight orientation bins per cell merged pairwise into
  four (45-degree bins into 90-degree ones, 64 values), taken as RootSIFT and quantized to
  4 bits, so a keypoint takes 32 bytes and its products half the work. ORB: up to 1500
  keypoints, Hamming distance. Keypoints are stored as uint16 in 1/32 px. A photo that gives
  fewer than half the keypoints allowed (small, blurred or flat) is detected again at half
  SIFT's contrast threshold.

Matching is ``app.describe.matching``'s, verification ``app.describe.local``'s.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

LONGEST_SIDE = 1024


@dataclass(frozen=True)
class LocalKind:
    name: str
    max_keypoints: int
    binary: bool  # Hamming (ORB) or L2 (SIFT)
    detect_side: int  # px: the longest side keypoints are detected at (stored in the LONGEST_SIDE frame)


DETECT_SIDE = 768
KINDS = {"sift": LocalKind("sift", 1000, False, DETECT_SIDE), "orb": LocalKind("orb", 1500, True, LONGEST_SIDE)}
SIFT_CONTRAST = 0.04  # OpenCV's (and Lowe's) contrast threshold
FEW_KEYPOINTS = 0.5  # of ``max_keypoints``: below it, SIFT runs again at half the contrast threshold
SIFT_BINS = 4  # orientation bins per cell kept of SIFT's 8
SIFT_WIDTH = 16 * SIFT_BINS  # codes a SIFT keypoint keeps (16 cells)
ORB_WIDTH = 32  # bytes of an ORB descriptor
CODE_BITS = 4
CODE_TOP = 0.4  # RootSIFT value of the highest code (above 99.9% of merged values on photos)
POINT_STEP = 32  # stored keypoints: 1/32 px in uint16 (the longest side is at most 1024 px)
FORMAT = 1  # how rows are written (0: float32 keypoints and 128 uint8 SIFT values, read as 1)


@dataclass
class LocalFeatures:
    points: np.ndarray  # (n, 2) float32, pixel coordinates in the resized image
    descriptors: np.ndarray  # (n, d) uint8: SIFT 4-bit codes (d = 64), ORB bits (d = 32 bytes)

    def __len__(self) -> int:
        return len(self.points)

    def to_row(self) -> dict:
        points = np.clip(np.rint(self.points * POINT_STEP), 0, 2**16 - 1).astype("<u2")
        desc = self.descriptors.astype(np.uint8)
        if desc.shape[1] == SIFT_WIDTH:  # SIFT codes: two to a byte
            desc = (desc[:, 0::2] << 4) | desc[:, 1::2]
        return {"n": len(self), "format": FORMAT, "points": points.tobytes(), "descriptors": desc.tobytes()}

    @classmethod
    def from_row(cls, n: int, points: bytes, descriptors: bytes, format: int, kind: "LocalKind") -> "LocalFeatures":
        if n == 0:
            return cls.empty(kind)
        stored = np.frombuffer(descriptors, np.uint8).reshape(n, -1)
        if format == 0:
            pts = np.frombuffer(points, np.float32).reshape(n, 2)
            return cls(pts, stored if kind.binary else compact_sift(stored))
        pts = np.frombuffer(points, "<u2").reshape(n, 2).astype(np.float32) / POINT_STEP
        if kind.binary:
            return cls(pts, stored)
        codes = np.empty((n, SIFT_WIDTH), np.uint8)
        codes[:, 0::2], codes[:, 1::2] = stored >> 4, stored & 0x0F
        return cls(pts, codes)

    @classmethod
    def empty(cls, kind: "LocalKind") -> "LocalFeatures":
        return cls(np.zeros((0, 2), np.float32), np.zeros((0, ORB_WIDTH if kind.binary else SIFT_WIDTH), np.uint8))


def compact_sift(descriptors: np.ndarray) -> np.ndarray:
    """SIFT descriptors (n, 128; OpenCV's layout: 16 cells x 8 orientation bins) as 4-bit codes
    (n, 64): neighbouring bins summed, RootSIFT, quantized evenly up to ``CODE_TOP``."""
    n = len(descriptors)
    merged = descriptors.astype(np.float32).reshape(n, 16, SIFT_BINS, 8 // SIFT_BINS).sum(axis=-1).reshape(n, -1)
    top = 2**CODE_BITS - 1
    return np.clip(np.rint(root_sift(merged) * (top / CODE_TOP)), 0, top).astype(np.uint8)


def _detector(kind: LocalKind, contrast: float = SIFT_CONTRAST):
    if kind.name == "sift":
        return cv2.SIFT_create(nfeatures=kind.max_keypoints, contrastThreshold=contrast)
    return cv2.ORB_create(nfeatures=kind.max_keypoints, fastThreshold=10)


def extract(image: Image.Image, kind: LocalKind, shown: tuple[int, int] | None = None) -> LocalFeatures:
    """The local features of ``image``, their points in the frame of the photo as it is shown
    (``shown``: its full size, when ``image`` is a reduced decode or a camera's smaller preview;
    default: the image's own size). A smaller picture is never enlarged for detection."""
    gray = image.convert("L")
    frame = frame_size(*(shown or gray.size))[0] / gray.width  # the stored frame, per pixel of the image
    scale = min(1.0, kind.detect_side / max(gray.size))  # the detection's
    if scale < 1:
        gray = gray.resize((max(1, round(gray.width * scale)), max(1, round(gray.height * scale))), Image.BILINEAR)
    pixels = np.asarray(gray)
    keypoints, descriptors = _detector(kind).detectAndCompute(pixels, None)
    if not kind.binary and len(keypoints) < FEW_KEYPOINTS * kind.max_keypoints:
        # a small, blurred or flat photo: its weaker extrema are still the best evidence it has
        keypoints, descriptors = _detector(kind, SIFT_CONTRAST / 2).detectAndCompute(pixels, None)
    if descriptors is None or not keypoints:
        return LocalFeatures.empty(kind)
    points = np.float32([k.pt for k in keypoints]) * np.float32(frame / scale)
    if kind.binary:
        return LocalFeatures(points, descriptors)
    return LocalFeatures(points, compact_sift(descriptors))


def root_sift(descriptors: np.ndarray) -> np.ndarray:
    d = descriptors.astype(np.float32)
    d /= np.maximum(d.sum(axis=1, keepdims=True), 1e-7)
    return np.sqrt(d)


def frame_size(width: int, height: int) -> tuple[float, float]:
    """The size of the image local features are extracted from (keypoint coordinates are in it)."""
    scale = min(1.0, LONGEST_SIDE / max(width, height))
    return width * scale, height * scale
