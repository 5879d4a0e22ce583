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

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server.frames import MIN_FRAME_SIDE_PX, Frame
from server.inference.backend import InferenceRefused, PendingBatch
from server.inference.detections import Detections
from server.inference.models import InferenceUnavailable
from server.inference.options import InferenceOptions
from server.inference.registration import StreamRegistration
from server.options import DEFAULT_MAX_DET
from server.tracking.filters import detection_conf

log = logging.getLogger(__name__)

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


@dataclass(eq=False)
class Batch:
    """The jobs of one cycle, and the batches submitted for them."""

    jobs: list[Job]
    waiting: list[tuple[list[Job], PendingBatch]] = field(default_factory=list)

    def answered(self) -> bool:
        """Whether `InferenceWorker._finish` would not have to wait (always, for a local model's batch)."""
        return all(pending.done() for _, pending in self.waiting)


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


def with_answers(
    group: list[Job], results: Sequence[Detections | InferenceRefused]
) -> list[tuple[Job, Detections | InferenceRefused]]:
    """Each job with its answer; ValueError if the backend answered for another number of images."""
    if len(results) != len(group):
        raise ValueError(f"{len(results)} results for a batch of {len(group)} images")
    return list(zip(group, results, strict=True))


def fail_unavailable(group: list[Job], exc: InferenceUnavailable) -> None:
    """Inference being unavailable (a remote server down or too slow) is no frame's fault: the whole
    group fails at once with the reason, and nothing is retried frame by frame. Its frames are still
    shown, unanalysed (`FrameResult.unanalysed`): the cameras are fine."""
    for job in group:
        job.error = f"inference unavailable: {exc}"
        job.unavailable = True


def fail_refused(job: Job, exc: InferenceRefused, refused_by: str) -> None:
    """A request the backend refused (say, a size the model does not take) is the fault of the streams
    whose frames it carried: they fail with its reason, once per reason in the log."""
    job.error = f"{refused_by} refused the request: {exc}"


def fail_model_error(group: list[Job], exc: Exception) -> None:
    """The model raised on ``group``: its frames fail, and the traceback is logged once per new reason, as
    `InferenceWorker._fail` logs its line (a model failing on every frame, say for a device it cannot
    use, would otherwise fill the log with one per frame)."""
    for job in group:
        job.error = f"model failed: {type(exc).__name__}: {exc}"
    if any(job.error != job.registration.told_error for job in group):
        log.warning("[%s] model failed on frame %d", group[0].registration.stream_id, group[0].frame.seq, exc_info=True)
