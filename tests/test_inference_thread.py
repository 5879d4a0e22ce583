"""The inference thread keeps serving every stream whatever fails on one frame, and says so when it cannot.

Each failure here is one a bug or an odd backend makes on a single frame or cycle: it must cost that
frame (charged to its stream's errors), never the thread that every other stream's frames go through.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest
import torch
from ultralytics.engine.results import Results

from server.analytics.engine import StreamAnalytics
from server.frames import Frame, FrameResult
from server.inference import models as models_module
from server.inference import worker as worker_module
from server.inference.backend import InferenceRefused
from server.inference.detections import Detections
from server.inference.models import InferenceStatus, InferenceUnavailable, ModelError
from server.inference.options import InferenceOptions
from server.inference.worker import InferenceWorker
from server.options import StreamOptions
from server.scene import Scene
from server.sources.base import LatestFrame
from tests.support.detections import NAMES, TruthModel
from tests.support.driver import RESULT_TIMEOUT_S, Driver

WHOLE_FRAME = [[0, 0], [1, 0], [1, 1], [0, 1]]
YARD = StreamOptions.from_mapping({"zones": [{"name": "yard", "points": WHOLE_FRAME, "units": "fraction"}]})


def _blank(stream_id: str, seq: int) -> Frame:
    return Frame(stream_id, seq, 1000.0 + seq, seq / 15, np.zeros((64, 64, 3), np.uint8))


class _Pending:
    """A batch out at the backend, until the test (or `_Backend.close`) answers it."""

    def __init__(self, images: int) -> None:
        self.images = images
        self.answer: Future[Sequence[Detections | InferenceRefused]] = Future()
        self.seconds = 0.0

    def done(self) -> bool:
        return self.answer.done()

    def result(self) -> Sequence[Detections | InferenceRefused]:
        return self.answer.result(timeout=RESULT_TIMEOUT_S)


class _Backend:
    """A remote-like, pipelined backend, answered by the test; `close` fails what is out."""

    kind = "Elsewhere"
    runs_on = "elsewhere://gpu-7"
    pipelined = True
    names = NAMES
    default_imgsz = 320
    fixed_shape = None
    request_stats = None
    status = InferenceStatus(available=True)

    def __init__(self) -> None:
        self.submitted: queue.Queue[_Pending] = queue.Queue()
        self._out: list[_Pending] = []

    def submit(self, images: list[np.ndarray], *, on_answer: Callable[[], None], **options: Any) -> _Pending:
        pending = _Pending(len(images))
        pending.answer.add_done_callback(lambda _: on_answer())
        self._out.append(pending)
        self.submitted.put(pending)
        return pending

    def probe(self, on_answer: Callable[[], None]) -> None:
        pass

    def close(self) -> None:
        for pending in self._out:
            if not pending.answer.done():
                pending.answer.set_exception(InferenceUnavailable("closed"))


def test_analytics_failing_on_a_frame_and_on_its_counts_cost_that_frame_not_the_other_streams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given a stream with a zone whose analytics fail both in their update and when asked for the counts
    (one bug reached twice), when its frame is processed, then it still goes out with its tracks, a stream
    without zones goes on being processed, and the failing stream's errors say why."""
    with Driver(TruthModel()) as driver:
        driver.add("zoned", Scene(seed=7), YARD)
        driver.add("plain", Scene(seed=11))
        driver.step({"zoned": 60})

        def analytics_bug(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("analytics bug")

        monkeypatch.setattr(StreamAnalytics, "update", analytics_bug)
        monkeypatch.setattr(StreamAnalytics, "counts_for", analytics_bug)
        failed = driver.step({"zoned": 61, "plain": 61})
        later = driver.step({"plain": 62})
        zoned = driver.worker.stats("zoned")
    assert failed["zoned"].tracks, "tracked: only its analytics failed"
    assert later["plain"].frame.seq == 62
    assert zoned is not None and zoned.errors == 1
    assert zoned.last_error == "analytics failed: RuntimeError: analytics bug"


def test_a_bug_past_the_tracker_costs_its_frame_and_the_batchs_other_frames_go_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Given a frame on which what follows its tracker raises, when it is in one batch with another
    stream's, then that one is delivered, the culprit's stream counts the error with its reason (logged
    with its traceback), and its next frame goes through."""
    analyse = worker_module.analyse
    broken = {"culprit"}

    def analyse_with_a_bug(registration: Any, *args: Any) -> Any:
        if registration.stream_id in broken:
            raise KeyError("no such zone")
        return analyse(registration, *args)

    monkeypatch.setattr(worker_module, "analyse", analyse_with_a_bug)
    with Driver(TruthModel()) as driver:
        driver.add("culprit", Scene(seed=7))
        driver.add("bystander", Scene(seed=11))
        with caplog.at_level(logging.WARNING, logger="server.inference.worker"):
            together = driver.together([driver.frame("culprit", 60), driver.frame("bystander", 60)], expect=1)
        broken.clear()
        after = driver.step({"culprit": 61})
        culprit = driver.worker.stats("culprit")
    assert list(together) == ["bystander"]
    assert after["culprit"].frame.seq == 61
    assert culprit is not None and (culprit.processed, culprit.errors) == (2, 1)
    assert culprit.last_error == "processing failed: KeyError: 'no such zone'"
    assert any(record.exc_info for record in caplog.records if "processing failed" in record.getMessage())


def test_a_backend_answering_for_fewer_images_than_it_was_sent_fails_that_frame_not_the_thread() -> None:
    """Given a pipelined backend whose answer has one entry fewer than its batch, when the next batch is
    answered right, then its frame is delivered and the first frame's stream counts the short answer."""
    backend = _Backend()
    results: queue.Queue[FrameResult] = queue.Queue()
    worker = InferenceWorker("m", results.put, InferenceOptions(), load=lambda _: backend)
    worker.start()
    try:
        cam = worker.add_stream("cam", 15.0)
        cam.put(_blank("cam", 0))
        short = backend.submitted.get(timeout=RESULT_TIMEOUT_S)
        cam.put(_blank("cam", 1))
        short.answer.set_result([Detections.empty()] * (short.images - 1))
        right = backend.submitted.get(timeout=RESULT_TIMEOUT_S)  # out once the one before is answered
        right.answer.set_result([Detections.empty()] * right.images)
        delivered = results.get(timeout=RESULT_TIMEOUT_S)
        stats = worker.stats("cam")
    finally:
        worker.stop()
    assert delivered.frame.seq == 1
    assert stats is not None and (stats.processed, stats.errors) == (1, 1)
    assert stats.last_error == "model failed: ValueError: 0 results for a batch of 1 images"


def test_a_cycle_that_fails_outside_any_frame_is_logged_and_the_next_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Given a bug in a cycle's bookkeeping (here, grouping its frames), when it raises once, then it is
    logged with its traceback and the stream's next frame is processed."""
    group_jobs, failures = worker_module.group_jobs, [RuntimeError("grouping bug")]

    def group_once_broken(*args: Any) -> Any:
        if failures:
            raise failures.pop()
        return group_jobs(*args)

    monkeypatch.setattr(worker_module, "group_jobs", group_once_broken)
    with Driver(TruthModel()) as driver, caplog.at_level(logging.ERROR, logger="server.inference.worker"):
        driver.add("cam", Scene(seed=7))
        driver.put(driver.frame("cam", 60))
        driver.wait_taken("cam")
        assert driver.step({"cam": 61})["cam"].frame.seq == 61
        assert driver.worker.inference_status.available
    [said] = [record for record in caplog.records if record.getMessage().startswith("inference cycle failed")]
    assert "grouping bug" in said.getMessage() and said.exc_info


def test_a_cycle_failing_every_time_waits_before_the_next_instead_of_spinning(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure that comes back at every cycle, before its wait for work, would spin a core for as long
    as segcast runs: each failed cycle waits `IDLE_POLL_S` (on the stop, which ends the wait at once)."""
    failed = threading.Semaphore(0)

    def always_broken(self: InferenceWorker) -> Any:
        failed.release()
        raise RuntimeError("bookkeeping bug")

    monkeypatch.setattr(InferenceWorker, "_take_batch", always_broken)
    worker = InferenceWorker("m", lambda _: None, InferenceOptions(), load=lambda _: TruthModel())
    waits: list[float | None] = []
    stop_wait = worker._stop.wait

    def recorded(timeout: float | None = None) -> bool:
        waits.append(timeout)
        return stop_wait(timeout)

    monkeypatch.setattr(worker._stop, "wait", recorded)
    worker.start()
    try:
        for _ in range(3):
            assert failed.acquire(timeout=RESULT_TIMEOUT_S), "the cycle ran again"
    finally:
        worker.stop()
    assert waits.count(worker_module.IDLE_POLL_S) >= 2, waits


def test_an_inference_thread_that_ends_unexpectedly_makes_inference_unavailable_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Given something that ends the thread itself (a library calling ``sys.exit``, which a thread dies of
    without a word), then the inference status says unavailable and why, and the log has the traceback."""

    def exits(self: InferenceWorker) -> Any:
        raise SystemExit("a library gave up")

    monkeypatch.setattr(InferenceWorker, "_take_batch", exits)
    statuses: queue.Queue[InferenceStatus] = queue.Queue()
    worker = InferenceWorker(
        "m", lambda _: None, InferenceOptions(), load=lambda _: TruthModel(), on_status=statuses.put
    )
    with caplog.at_level(logging.ERROR, logger="server.inference.worker"):
        worker.start()
        try:
            assert statuses.get(timeout=RESULT_TIMEOUT_S).available
            ended = statuses.get(timeout=RESULT_TIMEOUT_S)
        finally:
            worker.stop()
    assert not ended.available and ended.error == "inference thread stopped: SystemExit: a library gave up"
    assert worker.inference_status == ended
    assert any(record.exc_info for record in caplog.records if "inference thread stopped" in record.getMessage())


def test_a_batch_answered_before_a_stop_is_delivered_and_one_still_out_is_not() -> None:
    """Given a pipelined backend with an older batch answered and the next one out, when the worker stops
    (closing the backend under the one out), then the older one's frame is tracked and delivered, and
    nothing of the one out is."""
    backend = _Backend()
    results: queue.Queue[FrameResult] = queue.Queue()
    worker = InferenceWorker("m", results.put, InferenceOptions(), load=lambda _: backend)
    worker.start()
    try:
        slots = {stream_id: worker.add_stream(stream_id, 15.0) for stream_id in ("older", "newer")}
        slots["older"].put(_blank("older", 0))
        older = backend.submitted.get(timeout=RESULT_TIMEOUT_S)
        slots["newer"].put(_blank("newer", 0))
        older.answer.set_result([Detections.empty()])
        backend.submitted.get(timeout=RESULT_TIMEOUT_S)  # the newer one, out until the stop
    finally:
        worker.stop()
    delivered = [results.get_nowait().frame.stream_id for _ in range(results.qsize())]
    older_stats = worker.stats("older")
    assert delivered == ["older"]
    assert older_stats is not None and (older_stats.processed, older_stats.errors) == (1, 0)


def test_a_failure_to_use_the_cores_stops_start_at_once_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a wait for the model's load timeout, and not the model blamed."""

    def cannot(*args: Any) -> int:
        raise RuntimeError("set_num_threads failed")

    monkeypatch.setattr(models_module, "use_cores", cannot)
    monkeypatch.setattr(worker_module, "MODEL_LOAD_TIMEOUT_S", RESULT_TIMEOUT_S)
    worker = InferenceWorker("m", lambda _: None, InferenceOptions(), load=lambda _: TruthModel())
    with pytest.raises(ModelError, match=r"cannot set its CPU threads \(RuntimeError: set_num_threads failed\)$"):
        worker.start()
    worker.stop()


class _RefillingModel:
    """A model after whose every call each stream has a new frame: the streams always want more than the
    thread can take."""

    names = NAMES

    def __init__(self) -> None:
        self.overrides: dict[str, Any] = {"imgsz": 320}
        self.slots: dict[str, LatestFrame] = {}
        self._seq = 0

    def refill(self) -> None:
        self._seq += 1
        for stream_id, slot in self.slots.items():
            slot.put(Frame(stream_id, self._seq, 1000.0 + self._seq, self._seq / 15, np.zeros((64, 64, 3), np.uint8)))

    def predict(self, images: list[np.ndarray], **kwargs: Any) -> list[Results]:
        self.refill()
        return [Results(image, "", NAMES, boxes=torch.zeros((0, 6))) for image in images]


def test_streams_beyond_max_batch_take_turns_and_each_is_processed_about_as_often() -> None:
    """Given three streams that always have a frame and room for two a call, then over many calls each
    is processed about as often as the others: the round goes on where the last one stopped."""
    model = _RefillingModel()
    processed: Counter[str] = Counter()
    enough = threading.Event()

    def count(result: FrameResult) -> None:
        if processed.total() < 90:
            processed[result.frame.stream_id] += 1
        else:
            enough.set()

    worker = InferenceWorker("m", count, InferenceOptions(max_batch=2), load=lambda _: model)
    worker.start()
    try:
        model.slots = {stream_id: worker.add_stream(stream_id, 15.0) for stream_id in "abc"}
        model.refill()
        assert enough.wait(RESULT_TIMEOUT_S), f"only {processed} processed"
    finally:
        worker.stop()
    assert min(processed[s] for s in "abc") >= 0.8 * max(processed.values()), processed


def test_a_frame_in_the_model_when_its_stream_restarts_is_not_delivered_after_the_restart() -> None:
    """Its tracker is the old stream's: delivered, its tracks would start on the restarted stream unseen."""
    with Driver(TruthModel()) as driver:
        driver.add("a", Scene(seed=7))
        for seq in range(60, 63):
            driver.step({"a": seq})
        gate = driver.model.gate = threading.Event()
        driver.model.entered.clear()
        driver.put(driver.frame("a", 63))
        assert driver.model.entered.wait(RESULT_TIMEOUT_S)
        driver.model.gate = None
        driver.worker.remove_stream("a", restarting=True)
        driver.add("a", Scene(seed=7))
        gate.set()
        first = driver.step({"a": 64})
        assert driver.results.empty()
    assert first["a"].frame.seq == 64


class _ShapeRecordingModel(TruthModel):
    """`TruthModel` that records the image shapes of each call."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[set[tuple[int, ...]]] = []

    def predict(self, images: list[np.ndarray], **kwargs: Any) -> list[Results]:
        self.shapes.append({image.shape for image in images})
        return super().predict(images, **kwargs)


def test_frames_of_different_shapes_are_never_in_one_call() -> None:
    """ultralytics letterboxes a batch of mixed shapes unlike each alone: a stream's tracks would depend
    on which others shared its call."""
    model = _ShapeRecordingModel()
    with Driver(model) as driver:
        driver.add("wide", Scene(seed=1))
        driver.add("square", Scene(seed=2, width=480, height=480))
        results = driver.together([driver.frame("wide", 40), driver.frame("square", 40)])
    assert sorted(results) == ["square", "wide"]
    assert all(len(shapes) == 1 for shapes in model.shapes), model.shapes
    assert {shape for shapes in model.shapes for shape in shapes} >= {(384, 640, 3), (480, 480, 3)}
