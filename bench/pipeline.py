"""Measurements of segcast's own pipeline, in this process: throughput, multi-stream, forward pass.

These drive the real `StreamManager` (file readers, the inference thread, the encoder thread) with a
hub stand-in that only counts what would go to viewers, so they measure the pipeline without sockets.
Each case runs in its own subprocess (bench/case.py), so thread settings and memory of one case never
leak into the next.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.seed_loop import WARMUP_FRAMES
from server.config import Settings, StreamConfig
from server.delivery.encode import FramePacket, Variant
from server.inference.models import InferenceStatus
from server.inference.options import InferenceOptions
from server.options import StreamOptions
from server.sources import StreamState
from server.streams import StreamManager

POLL_S = 0.02
FORWARD_REPEATS = 20


class NotInferred(RuntimeError):
    """A timed frame did not go through the model: no figure is taken from such a run."""


class CountingHub:
    """A `PipelineListener` that counts the analysed packets carrying a JPEG (or every analysed packet, if
    no image is wanted). A frame shown unanalysed while a remote model is unavailable is cheap to pass on,
    and counting it would turn an outage into a speed-up: those are counted apart, in ``unanalysed``."""

    def __init__(self, need_jpeg: bool) -> None:
        self._need_jpeg = need_jpeg
        self._lock = threading.Lock()
        self.count = 0
        self.unanalysed = 0

    def publish_threadsafe(self, packet: FramePacket) -> None:
        if not packet.result.analysed:
            with self._lock:
                self.unanalysed += 1
        elif packet.jpegs or not self._need_jpeg:
            with self._lock:
                self.count += 1

    def state_threadsafe(self, stream_id: str, state: StreamState, error: str | None) -> None:
        pass

    def inference_threadsafe(self, status: InferenceStatus) -> None:
        pass

    def stream_added_threadsafe(self, stream_id: str) -> None:
        pass

    def stream_removed_threadsafe(self, stream_id: str) -> None:
        pass


@dataclass(frozen=True, slots=True)
class PipelineRun:
    frames: int
    seconds: float
    dropped_by_encoder: int

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def run_pipeline(
    model: str,
    video: Path,
    *,
    frames: int,
    imgsz: int,
    streams: int = 1,
    max_batch: int = 8,
    annotated: bool = True,
    fast_masks: bool = True,
    tracker: str | None = None,
    warmup: int = WARMUP_FRAMES,
    timeout_s: float = 600.0,
) -> PipelineRun:
    """Process ``video`` as ``streams`` as-fast-as-possible file streams until ``frames`` frames came out.

    ``frames`` counts all streams together, after ``warmup`` frames per stream (model warm-up, first
    allocations; as many as the seed loop leaves untimed) that are not timed. With ``annotated`` every
    frame is drawn and JPEG-encoded, as for a viewer of the annotated stream; without, only metadata is
    made. ``fast_masks`` as in `InferenceOptions`; ``tracker`` replaces the default one (as a comparison
    with ``model.track`` needs).
    """
    options = StreamOptions.from_mapping({"imgsz": imgsz} | ({"tracker": tracker} if tracker else {}))
    inference = InferenceOptions(imgsz=imgsz, max_batch=max_batch, fast_masks=fast_masks)
    settings = Settings(model=model, inference=inference, stream_defaults=options)
    hub = CountingHub(need_jpeg=annotated)
    manager = StreamManager(settings, hub)
    manager.encoder.set_wanted({"*": frozenset({Variant()})} if annotated else {})
    manager.start()
    try:
        for index in range(streams):
            manager.add(StreamConfig(f"s{index}", f"{video}#rate=max", loop=True, options=options))
        deadline = time.monotonic() + timeout_s
        _wait_for(hub, warmup * streams, deadline)
        stream_ids = [f"s{index}" for index in range(streams)]
        errors = _errors(manager, stream_ids)
        start_count, started, dropped = hub.count, time.perf_counter(), manager.encoder.dropped
        _wait_for(hub, start_count + frames, deadline, lambda: _not_inferred(manager, errors))
        seconds = time.perf_counter() - started
        if (reason := _not_inferred(manager, errors)) is not None:  # failed while the last frames came out
            raise NotInferred(reason)
        return PipelineRun(hub.count - start_count, seconds, manager.encoder.dropped - dropped)
    finally:
        manager.stop()


def _errors(manager: StreamManager, stream_ids: list[str]) -> dict[str, int]:
    """Each stream's frames not inferred so far (shown unanalysed or not shown at all), by the worker's count."""
    return {stream_id: stats.errors if (stats := manager.worker.stats(stream_id)) else 0 for stream_id in stream_ids}


def _not_inferred(manager: StreamManager, before: dict[str, int]) -> str | None:
    """Why a frame was not inferred since ``before`` (`_errors`), in the worker's words; None if none was."""
    for stream_id, errors in before.items():
        stats = manager.worker.stats(stream_id)
        if stats is not None and stats.errors > errors:
            failed = stats.errors - errors
            return f"[{stream_id}] {failed} timed frame(s) not inferred ({stats.last_error}): no figure from this run"
    return None


def _wait_for(hub: CountingHub, count: int, deadline: float, failed: Callable[[], str | None] = lambda: None) -> None:
    while hub.count < count:
        if (reason := failed()) is not None:
            raise NotInferred(reason)
        if time.monotonic() > deadline:
            unanalysed = f" ({hub.unanalysed} more shown unanalysed: inference unavailable)" if hub.unanalysed else ""
            raise TimeoutError(f"only {hub.count} of {count} frames came out in time{unanalysed}")
        time.sleep(POLL_S)


class ForwardTimer:
    """Times the network alone on one preprocessed frame: the floor of what a frame can cost.

    It goes through ultralytics' own backend (PyTorch, ONNX Runtime or OpenVINO) after a predict call
    has set it up, so the input is exactly what `predict` feeds it. Other processes share the cores,
    so callers time it right before and right after the run it is compared with.
    """

    def __init__(self, model_spec: str, image: Any, imgsz: int) -> None:
        from server.inference.models import load_model

        model = load_model(model_spec)
        model.predict(image, imgsz=imgsz, verbose=False)
        assert model.predictor is not None  # predict has just made it
        self._predictor: Any = model.predictor
        self._tensor: Any = self._predictor.preprocess([image])

    def median_ms(self) -> float:
        return median_forward_ms(self._predictor, self._tensor)


def median_forward_ms(predictor: Any, tensor: Any, repeats: int = FORWARD_REPEATS) -> float:
    """The median of ``repeats`` forward passes of ``predictor`` (ultralytics') on ``tensor``, after two untimed.

    On a CUDA device the network runs asynchronously to the call: the clock starts and stops only once
    the device has finished its work (as bench/gpu_capacity.py does), or it would time the launch alone.
    """
    device = getattr(predictor, "device", None)
    synchronise = _cuda_synchronise(device) if getattr(device, "type", None) == "cuda" else _nothing
    times = []
    for _ in range(repeats + 2):
        synchronise()
        started = time.perf_counter()
        predictor.inference(tensor)
        synchronise()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[2:])


def _cuda_synchronise(device: Any) -> Callable[[], None]:
    import torch

    return lambda: torch.cuda.synchronize(device)


def _nothing() -> None:
    """Nothing to wait for: off CUDA, a forward pass returns when it is done."""
