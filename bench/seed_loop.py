"""The loop a user writes today with ultralytics alone: the baseline segcast is measured against.

It follows ultralytics' own segmentation-and-tracking example: decode a frame, ``model.track(frame,
persist=True)``, draw masks, boxes and labels with ultralytics' plotting (its ``Annotator``), and
JPEG-encode the result, since sending the picture somewhere is the point of a live view.

It runs in one of two ways, so a ratio can say what it compares. *As written* passes nothing but
``persist=True``: ultralytics' defaults, which is what users run (its default tracker, TrackTrack
with optical-flow camera-motion compensation, the model at conf 0.1, per-class NMS, every track
drawn). *Like for like* passes segcast's own defaults with `COMPARED_TRACKER`, the tracker both
sides of the comparison run: the model run at the confidence that tracker takes in segcast,
class-agnostic NMS at the same IoU, and tracks drawn as segcast reports them: from the first frame
one reaches segcast's reporting ``conf``, then whatever confidence the tracker continues it on.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

#: The confidence ``model.track`` runs the model at when given none (ultralytics' ``Model.track``).
TRACK_DEFAULT_CONF = 0.1
#: The tracker both sides of a throughput comparison run. ``model.track`` runs only ultralytics'
#: trackers, so segcast's side runs this one too rather than its default, segtrack, whose extra
#: cost per frame the occlusion section's tracker-cost table gives.
COMPARED_TRACKER = "bytetrack"
#: Frames each side of a comparison processes before its clock starts (model warm-up, first
#: allocations): the seed loop here, and segcast per stream (bench/pipeline.py), the same number.
WARMUP_FRAMES = 5


class SeedSettings(Enum):
    """How the seed loop calls ``model.track``."""

    AS_WRITTEN = "as_written"
    LIKE_FOR_LIKE = "like_for_like"


@dataclass(frozen=True, slots=True)
class LoopRun:
    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def track_options(settings: SeedSettings) -> tuple[dict[str, Any], float | None]:
    """``model.track`` keyword arguments for ``settings``, and the confidence a drawn track needs (None: any).

    Like for like is taken from segcast's `StreamOptions` defaults, so the two sides cannot drift apart.
    """
    if settings is SeedSettings.AS_WRITTEN:
        return {}, None
    from server.options import StreamOptions
    from server.tracking.filters import detection_conf

    options = StreamOptions(tracker=COMPARED_TRACKER)
    track = {
        "tracker": f"{options.tracker}.yaml",
        "conf": detection_conf(options),
        "iou": options.iou,
        "agnostic_nms": options.agnostic_nms,
        "max_det": options.max_det,
    }
    return track, options.conf


def effective_settings(settings: SeedSettings) -> dict[str, str]:
    """What ``settings`` amounts to once ultralytics fills in its defaults: a row of the benchmarks page."""
    from ultralytics.cfg import get_cfg

    from server.options import tracker_defaults

    track, drawn_conf = track_options(settings)
    defaults = get_cfg()
    tracker = Path(str(track.get("tracker", defaults.tracker))).stem
    return {
        "call": "model.track(frame, persist=True" + "".join(f", {k}={v!r}" for k, v in track.items()) + ")",
        "tracker": tracker,
        "camera motion": str(tracker_defaults(tracker).get("gmc_method", "none")),
        "model conf": f"{track.get('conf', TRACK_DEFAULT_CONF):g}",
        "NMS": f"{'class-agnostic' if track.get('agnostic_nms', defaults.agnostic_nms) else 'per class'}, "
        f"IoU {track.get('iou', defaults.iou):g}",
        "drawn": "every track" if drawn_conf is None else f"tracks once at conf >= {drawn_conf:g}",
    }


def run_seed_loop(
    model_path: str,
    video: Path,
    max_frames: int,
    imgsz: int | None = None,
    settings: SeedSettings = SeedSettings.AS_WRITTEN,
    warmup: int = WARMUP_FRAMES,
) -> LoopRun:
    """Track and annotate ``max_frames`` frames of ``video`` one at a time, as fast as possible.

    The first ``warmup`` frames are processed untimed. The video starts again from its first frame
    when it ends, as segcast's looping file source does, so both sides process as many frames
    whatever ``max_frames`` is.
    """
    from ultralytics import YOLO

    from server.inference.models import model_task

    model = YOLO(model_path, task=model_task(model_path))
    options, drawn_conf = track_options(settings)
    if imgsz:
        options["imgsz"] = imgsz
    frames = 0
    drawn_ids: set[int] = set()
    decoded = looped_frames(video)
    for _ in range(warmup):  # not timed
        model.track(next(decoded), persist=True, verbose=False, **options)
    started = time.perf_counter()
    while frames < max_frames:
        [result] = model.track(next(decoded), persist=True, verbose=False, **options)
        if drawn_conf is not None and result.boxes is not None:
            result = result[_drawn(result.boxes.cpu().numpy(), drawn_conf, drawn_ids)]
        annotated = result.plot()
        ok, _ = cv2.imencode(".jpg", annotated, [cv2.IMWRITE_JPEG_QUALITY, 80])
        assert ok
        frames += 1
    seconds = time.perf_counter() - started
    decoded.close()
    return LoopRun(frames, seconds)


def looped_frames(video: Path) -> Generator[np.ndarray, None, None]:
    """``video``'s frames (BGR), from the first again each time it ends; nothing if it has none."""
    while True:
        count = 0
        with av.open(str(video)) as container:
            for frame in container.decode(video=0):
                count += 1
                yield frame.to_ndarray(format="bgr24")
        if not count:
            return


def _drawn(boxes: Any, conf: float, drawn_ids: set[int]) -> np.ndarray:
    """Which of one frame's tracked ``boxes`` segcast would report: a track's from the first frame it
    reaches ``conf``, then at any confidence. ``drawn_ids`` holds the tracks drawn so far, and grows."""
    ids = boxes.id.astype(int) if boxes.id is not None else np.full(len(boxes), -1)
    keep = (boxes.conf >= conf) | np.isin(ids, list(drawn_ids))
    drawn_ids.update(ids[keep & (ids >= 0)].tolist())
    return keep
