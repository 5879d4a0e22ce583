"""Driving an `InferenceWorker` synchronously from a test: put frames, wait for their results.

No sleeps: `step` puts one frame per stream and waits on the result queue; `together` first parks
the worker inside ``predict`` on a frame of a pacing stream, lines up one frame per stream, then lets
it go, so that all of them are in the worker's next cycle.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from server.frames import Frame, FrameResult
from server.inference.options import InferenceOptions
from server.inference.worker import InferenceWorker
from server.options import StreamOptions
from server.scene import Scene
from tests.support.detections import Gated, TruthModel

if TYPE_CHECKING:
    from ultralytics import YOLO

RESULT_TIMEOUT_S = 30.0
PACE = "pace"  # the stream whose frame holds the worker while a test lines up a batch
EPOCH = 1_700_000_000.0


class Driver:
    def __init__(self, model: Any, **options: Any) -> None:
        self.model = Gated(model)
        self.results: queue.Queue[FrameResult] = queue.Queue()
        self.worker = InferenceWorker(
            "test-model", self.results.put, InferenceOptions(**options), load=lambda _: cast("YOLO", self.model)
        )
        self.scenes: dict[str, Scene] = {}
        self._slots: dict[str, Any] = {}

    def __enter__(self) -> Driver:
        self.worker.start()
        self.add(PACE, Scene(seed=99))
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.worker.stop()

    def add(
        self,
        stream_id: str,
        scene: Scene,
        options: StreamOptions | None = None,
        fps: float | Callable[[], float] | None = None,
    ) -> None:
        """Register ``scene`` as ``stream_id``, with the scene's rate as its nominal rate unless ``fps``."""
        self.scenes[stream_id] = scene
        self._slots[stream_id] = self.worker.add_stream(stream_id, float(scene.fps) if fps is None else fps, options)

    def remove(self, stream_id: str) -> None:
        self.worker.remove_stream(stream_id)

    def frame(self, stream_id: str, index: int, fail: bool = False) -> Frame:
        scene = self.scenes[stream_id]
        image, truths = scene.render(index)
        if isinstance(self.model.model, TruthModel):
            self.model.model.register(image, truths, fail=fail)
        return Frame(stream_id, index, EPOCH + index / scene.fps, index / scene.fps, image)

    def put(self, frame: Frame) -> None:
        self._slots[frame.stream_id].put(frame)

    def wait_taken(self, stream_id: str) -> None:
        """Until the worker took the frame in ``stream_id``'s slot (one it may not report, like a bad one)."""
        give_up = threading.Event()
        timer = threading.Timer(RESULT_TIMEOUT_S, give_up.set)
        timer.start()
        try:
            assert self._slots[stream_id].wait_empty(give_up), "the worker never took the frame"
        finally:
            timer.cancel()

    def wait(self, count: int) -> dict[str, FrameResult]:
        results: dict[str, FrameResult] = {}
        for _ in range(count):
            result = self.results.get(timeout=RESULT_TIMEOUT_S)
            assert result.frame.stream_id not in results, "one result per stream and step"
            results[result.frame.stream_id] = result
        return results

    def step(self, frames: dict[str, int]) -> dict[str, FrameResult]:
        """One frame per stream, each processed (in whatever batches) before this returns."""
        for stream_id, index in frames.items():
            self.put(self.frame(stream_id, index))
        return self.wait(len(frames))

    def together(self, frames: list[Frame], expect: int | None = None) -> dict[str, FrameResult]:
        """Put ``frames`` so the worker takes all of them in one cycle; wait for ``expect`` results of them."""
        gate = threading.Event()
        self.model.gate, self.model.entered = gate, threading.Event()
        self.put(self.frame(PACE, len(self.model.calls)))
        assert self.model.entered.wait(RESULT_TIMEOUT_S), "the worker never took the pacing frame"
        self.model.gate = None
        for frame in frames:
            self.put(frame)
        gate.set()
        results = self.wait(1 + (len(frames) if expect is None else expect))
        assert PACE in results
        del results[PACE]
        return results
