"""Comparing what segcast reports with the scene generator's ground truth."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from server.scene import TrueObject

Box = Sequence[float]


def box_iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def polygon_mask(polygon: np.ndarray | Sequence[int], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise an outline (N x 2, or flat x0 y0 x1 y1 ...) to a bool mask of ``shape``."""
    points = np.asarray(polygon, dtype=np.float32).reshape(-1, 2)
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def match_boxes(truths: Sequence[TrueObject], boxes: Sequence[Box], min_iou: float = 0.5) -> list[tuple[int, int]]:
    """Pairs (truth index, box index) of the best one-to-one assignment with IoU >= ``min_iou``."""
    if not truths or not boxes:
        return []
    cost = np.array([[1.0 - box_iou(t.box, b) for b in boxes] for t in truths])
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if 1.0 - cost[r, c] >= min_iou]


def is_apart(truth: TrueObject, others: Sequence[TrueObject], width: int, height: int, gap_px: int = 8) -> bool:
    """Fully visible, inside the frame, and clear of every other object by ``gap_px``."""
    x1, y1, x2, y2 = truth.box
    if truth.occluded_fraction > 0 or x1 <= 0 or y1 <= 0 or x2 >= width or y2 >= height:
        return False
    grown = (x1 - gap_px, y1 - gap_px, x2 + gap_px, y2 + gap_px)
    return all(o is truth or box_iou(grown, o.box) == 0 for o in others)
