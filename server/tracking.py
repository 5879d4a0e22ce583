"""Per-stream tracker state: one ultralytics tracker per stream, and the metadata built from it.

ultralytics' own ``model.track`` keeps one tracker for whatever it is given, so streams would share
state. Here each stream owns a `StreamTracker`, which only ever sees that stream's detections, in
frame order. The tracker's output rows end with the index of the detection they came from, which is
what keeps each mask with its track id.
"""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from server.frames import Frame, Track

if TYPE_CHECKING:
    from ultralytics.engine.results import Results

TRACKER_CONFIG_FPS = 30.0  # ultralytics' track_buffer is counted in frames at this rate
TRAIL_LENGTH = 30
POLYGON_TOLERANCE_PX = 1.0


def tracker_names() -> list[str]:
    from ultralytics.trackers.track import TRACKER_MAP

    return sorted(TRACKER_MAP)


def _make_tracker(kind: str, fps: float) -> Any:
    from ultralytics.trackers.track import TRACKER_MAP
    from ultralytics.utils import YAML
    from ultralytics.utils.checks import check_yaml

    if kind not in TRACKER_MAP:
        raise ValueError(f"unknown tracker {kind!r}; choose one of {', '.join(sorted(TRACKER_MAP))}")
    settings = dict(YAML.load(check_yaml(f"{kind}.yaml")))
    # Keep lost tracks for the same time, not the same number of frames, whatever the stream's rate.
    settings["track_buffer"] = max(1, round(settings["track_buffer"] * fps / TRACKER_CONFIG_FPS))
    settings["device"] = "cpu"
    return TRACKER_MAP[kind](SimpleNamespace(**settings))


class StreamTracker:
    """Tracks for one stream: feed it that stream's model results in order, get `Track` values back."""

    def __init__(self, class_names: dict[int, str], fps: float, kind: str = "bytetrack") -> None:
        self._tracker = _make_tracker(kind, fps)
        self._class_names = class_names
        self._trails: dict[int, deque[tuple[int, int]]] = {}

    def update(self, result: Results, frame: Frame) -> tuple[Track, ...]:
        boxes = result.boxes.cpu().numpy() if result.boxes is not None else None
        if boxes is None:
            return ()
        rows = self._tracker.update(boxes, frame.image)
        polygons = result.masks.xy if result.masks is not None else None
        tracks = []
        for row in rows:
            x1, y1, x2, y2, track_id, score, class_id, index = row[:8]
            track_id, class_id, index = int(track_id), int(class_id), int(index)
            trail = self._trails.setdefault(track_id, deque(maxlen=TRAIL_LENGTH))
            trail.append((int((x1 + x2) / 2), int((y1 + y2) / 2)))
            tracks.append(
                Track(
                    track_id=track_id,
                    class_id=class_id,
                    class_name=self._class_names.get(class_id, str(class_id)),
                    confidence=float(score),
                    box=(float(x1), float(y1), float(x2), float(y2)),
                    polygon=None if polygons is None else simplify(polygons[index]),
                    trail=tuple(trail),
                )
            )
        self._forget_ended_trails({t.track_id for t in tracks})
        return tuple(tracks)

    def _forget_ended_trails(self, live_ids: set[int]) -> None:
        known = {t.track_id for t in self._tracker.tracked_stracks + self._tracker.lost_stracks}
        for track_id in list(self._trails):
            if track_id not in live_ids and track_id not in known:
                del self._trails[track_id]


def simplify(outline: np.ndarray) -> np.ndarray | None:
    """A mask outline with fewer points (within `POLYGON_TOLERANCE_PX`), as int32 pixel coordinates."""
    if len(outline) < 3:
        return None
    points = outline.astype(np.float32).reshape(-1, 1, 2)
    return cv2.approxPolyDP(points, POLYGON_TOLERANCE_PX, True).reshape(-1, 2).round().astype(np.int32)
