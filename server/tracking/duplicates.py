"""Detections that are one object seen twice, dropped before any tracker sees them.

Non-maximum suppression removes a second box only where the two overlap by IoU 0.7. A segmentation
model also sees part of an object as an object of its own: a partly hidden object is often detected
whole and once more as its upper part, a box inside the other's that overlaps it by less than that.
Each tracker then keeps a track on each, and the two swap the object between them while it stays
partly hidden (scene seed 7 and the occlusion family: tools/track_report.py, docs/benchmarks.md).

Two rules, one for weak detections and one for confident ones, among the detections a stream keeps
(its classes, down to its tracker's least confidence):
- a weak detection (under the stream's ``conf``, or its class filter's) mostly inside a confident one's
  *box* is a part of that object, not the partly hidden object it is passed on for (which sticks out of
  what hides it);
- a confident detection whose *mask* lies mostly inside a more confident one's of the same class is
  a part of that object. Masks, not boxes: in one frame each pixel shows one object, so the masks of
  two objects barely overlap even where one's box lies inside the other's (a small object seen in the
  corner of a big one's box).
"""

from __future__ import annotations

import cv2
import numpy as np

from server.inference.detections import Detections
from server.tracking.boxes import box_areas, box_intersections

#: A detection under the stream's conf lying this much inside a confident one's box is a duplicate.
WEAK_DUPLICATE_SHARE = 0.7
#: Confident detections are compared by mask only where this much of one's box lies inside the other's.
NESTED_BOX_SHARE = 0.5
#: A confident detection with this much of its mask inside a more confident one's of its class is a duplicate.
NESTED_MASK_SHARE = 0.8


def seen_twice(detections: Detections, conf: float | np.ndarray) -> np.ndarray:
    """Which of ``detections`` are another of them seen again, by the two rules above (``conf``: the stream's,
    or each detection's own, its class's)."""
    boxes = detections.boxes
    found = np.zeros(len(boxes), bool)
    if len(boxes) < 2:
        return found
    inside = _box_share_inside(boxes[:, :4])
    np.fill_diagonal(inside, 0.0)
    confident = boxes[:, 4] >= conf
    found |= ~confident & (inside[:, confident] >= WEAK_DUPLICATE_SHARE).any(axis=1)
    same_class = boxes[:, None, 5] == boxes[None, :, 5]
    nested = (inside >= NESTED_BOX_SHARE) & same_class & confident[:, None] & confident[None, :]
    # The more confident of two is the whole; on a tie (half precision rounds confidences), the larger,
    # then the first. Compared as Python tuples of the float32 numbers: a few pairs a frame are nested.
    area = box_areas(boxes)
    strength = list(zip(boxes[:, 4].tolist(), area.tolist(), range(0, -len(boxes), -1), strict=True))
    for part, whole in zip(*np.nonzero(nested), strict=True):
        if (
            strength[whole] > strength[part]
            and not found[part]
            and _mask_share_inside(detections, int(part), int(whole)) >= NESTED_MASK_SHARE
        ):
            found[part] = True
    return found


def _box_share_inside(boxes: np.ndarray) -> np.ndarray:
    """``[i, j]``: the share of box i's area that lies inside box j."""
    area = np.maximum(box_areas(boxes), 1e-6)[:, None]
    return np.asarray(box_intersections(boxes, boxes) / area, np.float64)


def _mask_share_inside(detections: Detections, part: int, whole: int) -> float:
    """The share of detection ``part``'s mask inside detection ``whole``'s (0 without masks).

    Both are filled in the two boxes' union (a mask lies in its box): ``part``'s, then ``whole``'s
    over it in 0, so what is left of ``part``'s is what lies outside ``whole``'s. Called for a few
    pairs a frame, so it is written for fixed costs: each call on arrays this small costs
    microseconds, and one mask filled twice needs fewer than two masks and their intersection.
    """
    polygons = []
    for index in (part, whole):
        outline = detections.outline(index)
        if outline is None or len(outline) < 3:
            return 0.0
        polygons.append(outline.astype(np.int32))
    a, b = detections.boxes[part], detections.boxes[whole]
    left, top = int(min(a[0], b[0])) - 1, int(min(a[1], b[1])) - 1
    width, height = int(max(a[2], b[2])) + 2 - left, int(max(a[3], b[3])) + 2 - top
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [polygons[0]], 1, offset=(-left, -top))
    area = cv2.countNonZero(mask)
    if not area:
        return 0.0
    cv2.fillPoly(mask, [polygons[1]], 0, offset=(-left, -top))
    return (area - cv2.countNonZero(mask)) / area
