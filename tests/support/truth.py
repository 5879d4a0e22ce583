"""Comparing what segcast reports with the scene generator's ground truth.

Box overlap and matching are tools/track_report.py's, so tests score exactly as the report does.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from server.scene import TrueObject
from tools.track_report import box_iou

Box = Sequence[float]


def polygon_mask(polygon: np.ndarray | Sequence[int], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise an outline (N x 2, or flat x0 y0 x1 y1 ...) to a bool mask of ``shape``."""
    points = np.asarray(polygon, dtype=np.float32).reshape(-1, 2)
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def is_apart(truth: TrueObject, others: Sequence[TrueObject], width: int, height: int, gap_px: int = 8) -> bool:
    """Fully visible, inside the frame, and clear of every other object by ``gap_px``."""
    x1, y1, x2, y2 = truth.box
    if truth.occluded_fraction > 0 or x1 <= 0 or y1 <= 0 or x2 >= width or y2 >= height:
        return False
    grown = (x1 - gap_px, y1 - gap_px, x2 + gap_px, y2 + gap_px)
    return all(o is truth or box_iou(grown, o.box) == 0 for o in others)
