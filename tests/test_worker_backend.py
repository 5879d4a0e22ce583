"""The inference thread runs its model through `InferenceBackend` alone, whatever runs the model.

The backend here is neither an ultralytics model nor `TritonModel`: what the worker does with it is
what the protocol promises, and nothing a concrete backend's class could have told it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest

from server.frames import Frame, FrameResult
from server.inference import worker as worker_module
from server.inference.backend import InferenceRefused, RequestStats
from server.inference.detections import Detections
from server.inference.models import InferenceStatus, InferenceUnavailable
from server.inference.options import InferenceOptions
from server.inference.worker import InferenceWorker
from tests.support.detections import NAMES

WAIT_S = 30.0
REFUSAL = "frames of 64x64 are not taken"


class _Pending:
    """A batch out at the backend, until the test answers it."""

    def __init__(self) -> None:
        self.answer: Future[Sequence[Detections | InferenceRefused]] = Future()
        self.seconds = 0.0

    def done(self) -> bool:
        return self.answer.done()

    def result(self) -> Sequence[Detections | InferenceRefused]:
        return self.answer.result(timeout=WAIT_S)


class _ElsewhereBackend:
    """A backend of a kind the worker has never heard of, pipelined as a server is."""

    kind = "Elsewhere"
    runs_on = "elsewhere://gpu-7"
    pipelined = True
    names = NAMES
    default_imgsz = 320
    fixed_shape = None
    request_stats = RequestStats(3, 1, 0.5)

    def __init__(self, status: InferenceStatus) -> None:
        self.status = status
        self.submitted: queue.Queue[_Pending] = queue.Queue()
        self.probed = threading.Event()
        self.closed = threading.Event()

    def submit(self, images: list[np.ndarray], *, on_answer: Callable[[], None], **options: Any) -> _Pending:
        pending = _Pending()
        pending.answer.add_done_callback(lambda _: on_answer())
        self.submitted.put(pending)
        return pending

    def probe(self, on_answer: Callable[[], None]) -> None:
        self.probed.set()

    def close(self) -> None:
        self.closed.set()


def _frame(seq: int) -> Frame:
    return Frame("cam", seq, 1000.0 + seq, seq / 15, np.zeros((64, 64, 3), np.uint8))


class _PipelinedBackend(_ElsewhereBackend):
    """Notes, at each submit, how many batches were out unanswered; a frame is put in ``cam`` as the first
    goes out, so a worker that sends behind one out takes it at once."""

    def __init__(self, status: InferenceStatus) -> None:
        super().__init__(status)
        self.out: list[_Pending] = []
        self.unanswered_at_submit: list[int] = []
        self.cam: Any = None

    def submit(self, images: list[np.ndarray], *, on_answer: Callable[[], None], **options: Any) -> _Pending:
        self.unanswered_at_submit.append(sum(not pending.done() for pending in self.out))
        if not self.out:
            self.cam.put(_frame(1))
        pending = super().submit(images, on_answer=on_answer, **options)
        self.out.append(pending)
        return pending


def test_a_backend_of_any_kind_gets_the_next_batch_once_the_one_out_is_answered_and_its_refusals_are_its_streams(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Given a backend that may have two batches submitted and not finished, the next goes out once the one
    out is answered, with the newest frames, while the thread finishes that one: sent behind it, its frames
    waited its whole request (twice the latency, on a Triton slower than the cameras, for no more frames).
    The first's refusal is charged to its frame with the backend's own words; the log names where the
    backend runs, /metrics gets its request counts, and a stop closes it."""
    backend = _PipelinedBackend(InferenceStatus(available=True))
    results: queue.Queue[FrameResult] = queue.Queue()
    worker = InferenceWorker("m", results.put, InferenceOptions(), load=lambda _: backend)
    with caplog.at_level(logging.INFO, logger="server.inference.worker"):
        worker.start()
    try:
        cam = backend.cam = worker.add_stream("cam", 15.0)
        cam.put(_frame(0))
        first = backend.submitted.get(timeout=WAIT_S)
        cam.put(_frame(2))  # the newest, in place of frame 1 in the slot
        first.answer.set_result([InferenceRefused(REFUSAL)])
        second = backend.submitted.get(timeout=WAIT_S)
        second.answer.set_result([Detections.empty()])
        delivered = results.get(timeout=WAIT_S)
        stats = worker.stats("cam")
        assert worker.remote_stats == RequestStats(3, 1, 0.5)
    finally:
        worker.stop()
    assert backend.unanswered_at_submit == [0, 0], "a batch went out behind one still out"
    assert delivered.frame.seq == 2
    assert stats is not None and (stats.processed, stats.errors) == (1, 1)
    assert stats.last_error == f"Elsewhere refused the request: {REFUSAL}"
    assert any(r.getMessage().startswith("inference thread ready on elsewhere://gpu-7") for r in caplog.records)
    assert backend.closed.is_set()


def test_an_idle_worker_has_a_backend_unavailable_at_start_check_by_itself(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a backend unavailable at start and no frames, the log says so in the backend's words, and
    the idle thread has it probe, so its status can come back without a frame to send."""
    monkeypatch.setattr(worker_module, "IDLE_PROBE_AFTER_S", 0.0)
    backend = _ElsewhereBackend(InferenceStatus(available=False, error="down for maintenance"))
    worker = InferenceWorker("m", lambda _: None, InferenceOptions(), load=lambda _: backend)
    with caplog.at_level(logging.INFO, logger="server.inference.worker"):
        worker.start()
    try:
        assert backend.probed.wait(WAIT_S), "the idle thread never had its backend probe"
        assert worker.inference_status == InferenceStatus(available=False, error="down for maintenance")
    finally:
        worker.stop()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("inference thread")]
    assert len(said) == 1 and said[0].startswith("inference thread started on elsewhere://gpu-7 (max batch ")
    assert said[0].endswith("; Elsewhere unavailable: retrying")


class _DownBackend(_ElsewhereBackend):
    """A remote backend whose server is down until `up` is set: requests fail at once, as `TritonModel`'s
    do while it waits for its next attempt; once up, each answers at once with no detections."""

    def __init__(self) -> None:
        super().__init__(InferenceStatus(available=False, error="down for maintenance"))
        self.up = threading.Event()

    def submit(self, images: list[np.ndarray], *, on_answer: Callable[[], None], **options: Any) -> _Pending:
        if not self.up.is_set():
            raise InferenceUnavailable("down for maintenance")
        pending = super().submit(images, on_answer=on_answer, **options)
        pending.answer.set_result([Detections.empty() for _ in images])
        return pending


def test_while_inference_is_unavailable_frames_are_shown_unanalysed() -> None:
    """Given a backend that is down, each frame of a live stream is still delivered, as it came and
    marked unanalysed, with the outage charged to the stream as before (and nothing counted as
    processed); once the backend is back, frames are analysed again."""
    backend = _DownBackend()
    results: queue.Queue[FrameResult] = queue.Queue()
    worker = InferenceWorker("m", results.put, InferenceOptions(), load=lambda _: backend)
    worker.start()
    try:
        cam = worker.add_stream("cam", 15.0)
        frames = [_frame(seq) for seq in range(4)]
        shown = []
        for frame in frames[:3]:
            cam.put(frame)
            shown.append(results.get(timeout=WAIT_S))
        stats = worker.stats("cam")
        backend.up.set()
        cam.put(frames[3])
        analysed = results.get(timeout=WAIT_S)
    finally:
        worker.stop()
    assert [result.frame for result in shown] == frames[:3]  # each frame as it was read, in order
    assert all(not result.analysed and result.tracks == () and result.events == () for result in shown)
    assert shown[0].metadata_json()["analysed"] is False
    assert stats is not None and (stats.processed, stats.errors) == (0, 3)
    assert stats.last_error == "inference unavailable: down for maintenance"
    assert analysed.frame is frames[3] and analysed.analysed and analysed.metadata_json()["analysed"] is True
