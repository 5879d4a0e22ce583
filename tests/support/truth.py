"""Comparing what segcast reports with the scene generator's ground truth.

Box overlap, matching and which objects are apart are tools/track_report.py's, so tests score exactly as
the report does.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def polygon_mask(polygon: np.ndarray | Sequence[int], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise an outline (N x 2, or flat x0 y0 x1 y1 ...) to a bool mask of ``shape``."""
    points = np.asarray(polygon, dtype=np.float32).reshape(-1, 2)
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0
