"""Box geometry shared by the trackers' stages: boxes as ``x1, y1, x2, y2`` rows of an array."""

from __future__ import annotations

import numpy as np


def box_intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[i, j]``: the area box ``a[i]`` and box ``b[j]`` have in common (0 where they do not overlap)."""
    a, b = a[:, None, :], b[None, :, :]
    return np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None) * np.clip(
        np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None
    )


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """The area of each box (negative for one inside out)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
