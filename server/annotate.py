"""Drawing tracks on a frame: translucent masks, boxes, "id class conf" labels and trails.

Sizes scale with the frame, so the overlay reads the same on a 320p and a 1080p camera. Each track id
keeps one colour for its whole life (derived from the id, not from the order of detections).
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from server.frames import Track

MASK_OPACITY = 0.45
REFERENCE_HEIGHT_PX = 720.0  # line widths and fonts below are for a frame this tall
_GOLDEN_RATIO = 0.618033988749895


def track_color(track_id: int) -> tuple[int, int, int]:
    """A bright BGR colour per id; consecutive ids land far apart on the hue circle."""
    hue = (track_id * _GOLDEN_RATIO) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def annotate(image: np.ndarray, tracks: tuple[Track, ...]) -> np.ndarray:
    """A new image with ``tracks`` drawn over ``image`` (which is left untouched)."""
    scale = max(image.shape[0] / REFERENCE_HEIGHT_PX, 0.4)
    thickness = max(1, round(2 * scale))
    canvas = image.copy()
    if any(track.polygon is not None for track in tracks):
        overlay = image.copy()
        for track in tracks:
            if track.polygon is not None:
                cv2.fillPoly(overlay, [track.polygon], track_color(track.track_id))
        cv2.addWeighted(overlay, MASK_OPACITY, canvas, 1 - MASK_OPACITY, 0, dst=canvas)
    for track in tracks:
        color = track_color(track.track_id)
        if len(track.trail) > 1:
            cv2.polylines(canvas, [np.array(track.trail, dtype=np.int32)], False, color, thickness, cv2.LINE_AA)
        x1, y1, x2, y2 = (round(v) for v in track.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        _label(canvas, f"{track.track_id} {track.class_name} {track.confidence:.2f}", (x1, y1), color, scale)
    return canvas


def _label(canvas: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int], scale: float) -> None:
    font_scale = 0.7 * scale
    weight = max(1, round(1.5 * scale))
    (w, h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, weight)
    x, y = corner
    top = y - h - baseline - 4 if y - h - baseline - 4 >= 0 else y  # inside the box at the top edge
    cv2.rectangle(canvas, (x, top), (x + w + 4, top + h + baseline + 4), color, cv2.FILLED)
    luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(canvas, text, (x + 2, top + h + 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, ink, weight, cv2.LINE_AA)
