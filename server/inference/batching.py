"""Which of a cycle's frames share one model call, and at what settings: batching that never changes a stream's results.

Frames share one ``predict`` call only when that cannot change their results: same inference size,
NMS IoU and kind, and image shape (ultralytics letterboxes a batch of mixed shapes differently from a single
image). Confidence, class filter and max detections are applied per stream after the call, which is
run at the lowest confidence any stream's tracker takes (`detection_conf`: below the reporting
``conf``, down to the tracker's low threshold) and at no fewer than ultralytics' 300 detections
(more if a stream of the group asks for more): NMS caps its boxes before a stream's class filter,
so a stream's own lower ``max_det`` there would cost it its classes' boxes to higher-scoring ones of
other classes. Greedy NMS keeps exactly the same higher-scoring boxes either way. So a stream gets
the same tracks batched or alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from server.frames import MIN_FRAME_SIDE_PX, Frame
from server.inference.detections import Detections
from server.inference.options import InferenceOptions
from server.inference.registration import StreamRegistration
from server.options import DEFAULT_MAX_DET
from server.tracking import detection_conf

#: What the frames of one call share: inference size, NMS IoU, class-agnostic NMS and image shape.
CallKey = tuple[int | None, float, bool, tuple[int, ...]]


@dataclass(eq=False)
class Job:
    """One stream's frame in a cycle, and what became of it: its detections, or why it has none."""

    registration: StreamRegistration
    frame: Frame
    detections: Detections | None = None
    inference_ms: float = 0.0
    error: str | None = None
    #: The model could not be asked (`InferenceUnavailable`): the frame is still shown, unanalysed.
    unavailable: bool = False


def group_jobs(jobs: list[Job], default_imgsz: int | None) -> dict[CallKey, list[Job]]:
    """``jobs`` in groups that may each be one call, ``default_imgsz`` for a stream that sets no size.

    A frame of an ended file gets its (empty) detections and one the model cannot take its error
    here, and neither is in a group."""
    groups: dict[CallKey, list[Job]] = {}
    for job in jobs:
        if job.frame.ended:  # nothing new to see: its tracker ends every track (`Frame.ended`)
            job.detections = Detections.empty()
            continue
        job.error = bad_image(job.frame.image)
        if job.error is None:
            options = job.registration.options
            key = (options.imgsz or default_imgsz, options.iou, options.agnostic_nms, tuple(job.frame.image.shape))
            groups.setdefault(key, []).append(job)
    return groups


def predict_options(
    group: list[Job], imgsz: int | None, iou: float, agnostic: bool, options: InferenceOptions
) -> dict[str, Any]:
    """One call for several streams: at the lowest confidence among them, and at least ultralytics'
    default max detections, each stream's own cap being applied after its class filter (`StreamTracker`)."""
    return {
        "imgsz": imgsz,
        "iou": iou,
        "agnostic_nms": agnostic,
        "conf": min(detection_conf(job.registration.options) for job in group),
        "max_det": max(DEFAULT_MAX_DET, *(job.registration.options.max_det for job in group)),
        "device": options.device,
        "quantize": 16 if options.use_half else None,  # ultralytics' successor of half=True
        "verbose": False,
    }


def bad_image(image: object) -> str | None:
    """Why ``image`` cannot go to the model, or None if it can (a BGR uint8 picture of a sensible size)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        return f"bad frame: expected a BGR uint8 image, got {dtype} {shape}"
    if min(image.shape[:2]) < MIN_FRAME_SIDE_PX:
        return f"bad frame: {image.shape[1]}x{image.shape[0]} is smaller than {MIN_FRAME_SIDE_PX}x{MIN_FRAME_SIDE_PX}"
    return None
