"""The loop a user writes today with ultralytics alone: the baseline segcast is measured against.

It follows ultralytics' own segmentation-and-tracking example: decode a frame, ``model.track(frame,
persist=True)``, draw masks, boxes and labels with ultralytics' plotting (its ``Annotator``), and
JPEG-encode the result, since sending the picture somewhere is the point of a live view.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2


@dataclass(frozen=True, slots=True)
class LoopRun:
    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def run_seed_loop(model_path: str, video: Path, max_frames: int, imgsz: int | None = None) -> LoopRun:
    """Track and annotate up to ``max_frames`` frames of ``video`` one at a time, as fast as possible."""
    from ultralytics import YOLO

    model = YOLO(model_path, task="segment")
    options: dict[str, Any] = {"imgsz": imgsz} if imgsz else {}
    frames = 0
    with av.open(str(video)) as container:
        decoded = (f.to_ndarray(format="bgr24") for f in container.decode(video=0))
        first = next(decoded)
        model.track(first, persist=True, verbose=False, **options)  # warm-up, not timed
        started = time.perf_counter()
        for image in decoded:
            [result] = model.track(image, persist=True, verbose=False, **options)
            annotated = result.plot()
            ok, _ = cv2.imencode(".jpg", annotated, [cv2.IMWRITE_JPEG_QUALITY, 80])
            assert ok
            frames += 1
            if frames >= max_frames:
                break
        seconds = time.perf_counter() - started
    return LoopRun(frames, seconds)
