"""The inference thread: the only owner of the model, feeding each stream's own tracker.

Each cycle takes the newest unprocessed frame of every stream (older ones were already overwritten
in their `LatestFrame` slot and counted), runs them through the model as one batch, and updates each
stream's tracker with that stream's result only. Streams can be added and removed at any time from
other threads; the trackers themselves are touched by this thread alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from server.frames import Frame, FrameResult
from server.models import ModelError, load_model
from server.sources.base import LatestFrame
from server.tracking import StreamTracker

if TYPE_CHECKING:
    from ultralytics import YOLO
    from ultralytics.engine.results import Results

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.1
JOIN_TIMEOUT_S = 5.0
MODEL_LOAD_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class InferenceOptions:
    imgsz: int | None = None  # None: the size the model was trained or exported at
    conf: float = 0.25
    iou: float = 0.7
    max_batch: int = 8
    device: str = "cpu"


@dataclass(eq=False)
class _Registration:
    """One stream as the worker sees it; a re-added stream id gets a new one, hence a fresh tracker."""

    stream_id: str
    fps: float
    tracker_kind: str
    slot: LatestFrame
    errors: int = field(default=0)


class InferenceWorker:
    """Owns the model thread. `start` blocks until the model is loaded and raises `ModelError` if not."""

    def __init__(self, model_spec: str, on_result: Callable[[FrameResult], None], options: InferenceOptions) -> None:
        self._model_spec = model_spec
        self._on_result = on_result
        self._options = options
        self._lock = threading.Lock()
        self._streams: dict[str, _Registration] = {}
        self._frames_ready = threading.Event()
        self._stop = threading.Event()
        self._loaded = threading.Event()
        self._load_error: ModelError | None = None
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self.class_names: dict[int, str] = {}
        self.cycles = 0

    def start(self) -> None:
        self._thread.start()
        self._loaded.wait(MODEL_LOAD_TIMEOUT_S)
        if self._load_error is not None:
            self._thread.join(JOIN_TIMEOUT_S)
            raise self._load_error
        if not self._loaded.is_set():
            raise ModelError(f"--model {self._model_spec}: not loaded after {MODEL_LOAD_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        self._stop.set()
        self._frames_ready.set()
        self._thread.join(JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("inference thread did not stop within %.1f s", JOIN_TIMEOUT_S)

    def add_stream(self, stream_id: str, fps: float, tracker_kind: str = "bytetrack") -> LatestFrame:
        """Register a stream and return the slot its reader should fill."""
        slot = LatestFrame(self._frames_ready)
        with self._lock:
            self._streams[stream_id] = _Registration(stream_id, fps, tracker_kind, slot)
        return slot

    def remove_stream(self, stream_id: str) -> None:
        with self._lock:
            self._streams.pop(stream_id, None)

    def errors(self, stream_id: str) -> int:
        with self._lock:
            registration = self._streams.get(stream_id)
        return registration.errors if registration else 0

    def _run(self) -> None:
        try:
            model = load_model(self._model_spec)
        except ModelError as exc:
            self._load_error = exc
            self._loaded.set()
            return
        self.class_names = dict(model.names)
        self._loaded.set()
        trackers: dict[_Registration, StreamTracker] = {}
        while not self._stop.is_set():
            self._frames_ready.wait(IDLE_POLL_S)
            self._frames_ready.clear()
            with self._lock:
                registrations = list(self._streams.values())
            for gone in set(trackers) - set(registrations):
                del trackers[gone]
            batch = [(r, f) for r in registrations if (f := r.slot.take()) is not None]
            for start in range(0, len(batch), self._options.max_batch):
                self._process(model, batch[start : start + self._options.max_batch], trackers)

    def _process(
        self,
        model: YOLO,
        batch: list[tuple[_Registration, Frame]],
        trackers: dict[_Registration, StreamTracker],
    ) -> None:
        options = self._options
        started = time.perf_counter()
        try:
            results = model.predict(
                [frame.image for _, frame in batch],
                imgsz=options.imgsz or model.overrides.get("imgsz", 640),
                conf=options.conf,
                iou=options.iou,
                device=options.device,
                verbose=False,
            )
        except Exception:
            log.exception("model failed on a batch of %d frames", len(batch))
            for registration, _ in batch:
                registration.errors += 1
            return
        elapsed_ms = (time.perf_counter() - started) * 1000 / len(batch)
        self.cycles += 1
        for (registration, frame), result in zip(batch, cast("list[Results]", results), strict=True):
            tracker = trackers.get(registration)
            if tracker is None:
                tracker = StreamTracker(self.class_names, registration.fps, registration.tracker_kind)
                trackers[registration] = tracker
            try:
                tracks = tracker.update(result, frame)
            except Exception:
                log.exception("[%s] tracker failed on frame %d", registration.stream_id, frame.seq)
                registration.errors += 1
                continue
            self._on_result(FrameResult(frame, tracks, elapsed_ms))
