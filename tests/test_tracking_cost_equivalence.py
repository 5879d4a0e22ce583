"""The rules the tracking stage's cheaper code paths must keep exactly (issue 13's cost bar).

The duplicate filter counts two masks' shared pixels by filling one over the other instead of
intersecting two masks, and orders two detections by comparing tuples instead of whole matrices:
each must decide as the plain rule would, pixel for pixel and tie for tie.
"""

from __future__ import annotations

import cv2
import numpy as np

from server.inference.detections import Detections
from server.tracking.duplicates import _mask_share_inside, seen_twice

FRAME_SHAPE = (240, 320)  # height, width


def star(rng: np.random.Generator, centre: tuple[float, float], radius: float) -> np.ndarray:
    """A random star-shaped outline around ``centre``, in float frame pixels (half pixels included)."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(5, 40)))
    radii = rng.uniform(0.3, 1.0, len(angles)) * radius
    points = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], axis=1)
    return (np.round(points * 2) / 2).astype(np.float32)


def detections_of(outlines: list[np.ndarray], scores: list[float]) -> Detections:
    """One class, each box the bounding box of its outline (a mask lies in its box)."""
    boxes = [[*o.min(axis=0), *o.max(axis=0), score, 0] for o, score in zip(outlines, scores, strict=True)]
    return Detections(np.array(boxes, np.float32), lambda index: outlines[index])


def filled(outline: np.ndarray) -> np.ndarray:
    mask = np.zeros(FRAME_SHAPE, np.uint8)
    cv2.fillPoly(mask, [outline.astype(np.int32)], 1)
    return mask.astype(bool)


def test_the_share_of_a_mask_inside_another_counts_the_pixels_both_masks_fill() -> None:
    rng = np.random.default_rng(13)
    for case in range(300):
        whole = star(rng, (rng.uniform(80, 240), rng.uniform(70, 170)), rng.uniform(10, 60))
        offset = rng.uniform(-40, 40, 2)
        part = star(rng, (float(whole[:, 0].mean() + offset[0]), float(whole[:, 1].mean() + offset[1])), 30)
        part_mask, whole_mask = filled(part), filled(whole)
        expected = np.count_nonzero(part_mask & whole_mask) / np.count_nonzero(part_mask)
        share = _mask_share_inside(detections_of([part, whole], [0.5, 0.9]), 0, 1)
        assert share == expected, case


def test_of_two_equal_detections_the_more_confident_then_the_larger_then_the_first_is_kept() -> None:
    """Half precision rounds confidences, so ties happen; whichever way round they come, one survives."""
    rng = np.random.default_rng(7)
    outline = star(rng, (160.0, 120.0), 50)
    smaller = ((outline - (160, 120)) * 0.9 + (160, 120)).astype(np.float32)  # the same object, a smaller box
    for scores, outlines, kept in [
        ([0.8, 0.8], [outline, outline], [True, False]),  # a full tie: the first
        ([0.8, 0.9], [outline, outline], [False, True]),  # the more confident
        ([0.8, 0.8], [smaller, outline], [False, True]),  # a tie on confidence: the larger
        ([0.8, 0.8], [outline, smaller], [True, False]),
    ]:
        found = seen_twice(detections_of(outlines, scores), conf=0.25)
        assert (~found).tolist() == kept, (scores, kept)
