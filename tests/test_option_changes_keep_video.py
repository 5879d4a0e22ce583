"""A change of a stream's options (``conf``, ``tracker``...) through `StreamManager.replace`, as a PATCH
makes it, keeps the stream's video: the reader goes on (a file is not played from its start again, a
camera is not connected again), ``seq`` and ``media_time`` go on, and only the tracker starts afresh,
its ids going on after the old one's, whose tracks end (docs/protocol.md)."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pytest
import torch
from ultralytics.engine.results import Results

from server import streams
from server.config import Settings, StreamConfig
from server.delivery.encode import FramePacket
from server.frames import FrameResult, TrackEventKind
from server.inference.worker import InferenceWorker
from server.options import StreamOptions
from server.sources import StreamState
from server.sources.base import LatestFrame
from server.stream_info import StreamInfo
from tests.conftest import NUMBERED_FRAMES
from tests.support.detections import NAMES
from tests.support.listeners import SilentListener
from tests.support.mjpeg_server import MjpegServer

if TYPE_CHECKING:
    from ultralytics import YOLO

#: A bound on a failure's cost, never what a test waits for.
RESULT_TIMEOUT_S = 30.0
POLL_S = 0.01
BOX = [40.0, 60.0, 100.0, 120.0, 0.9, 1.0]  # inside every test source's picture (the smallest: 320x192)
CHANGED = StreamOptions(conf=0.3)


class FixedModel:
    """Stands in for a model that sees one object at the same place in every image. With ``hold_at``,
    the call for the ``hold_at``-th image waits until ``release`` is set (``holding`` says when it got there)."""

    names = NAMES

    def __init__(self, hold_at: int | None = None) -> None:
        self.overrides: dict[str, Any] = {"imgsz": 320}
        self.hold_at = hold_at
        self.seen = 0
        self.holding = threading.Event()
        self.release = threading.Event()

    def predict(self, images: list[np.ndarray], **kwargs: Any) -> list[Results]:
        self.seen += len(images)
        if self.hold_at is not None and self.seen >= self.hold_at and not self.release.is_set():
            self.holding.set()
            assert self.release.wait(RESULT_TIMEOUT_S), "the test never released the model"
        boxes = torch.tensor([BOX], dtype=torch.float32)
        return [Results(image, "", NAMES, boxes=boxes) for image in images]


class FlakyModel(FixedModel):
    """A `FixedModel` that fails on every third call: the stream counts ``inference_errors``."""

    def predict(self, images: list[np.ndarray], **kwargs: Any) -> list[Results]:
        results = super().predict(images, **kwargs)
        if self.seen % 3 == 0:
            raise RuntimeError("flaky model")
        return results


def wait_for(what: str, check: Callable[[], bool]) -> None:
    """Poll ``check`` until it holds; fail after `RESULT_TIMEOUT_S` (a bound on a failure's cost)."""
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    while not check():
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(POLL_S)


class Listener(SilentListener):
    """Every published result and every state the stream announced, in order."""

    def __init__(self) -> None:
        self.results: queue.Queue[FrameResult] = queue.Queue()
        self.states: list[StreamState] = []

    def publish_threadsafe(self, packet: FramePacket) -> None:
        self.results.put(packet.result)

    def state_threadsafe(self, stream_id: str, state: StreamState, error: str | None) -> None:
        self.states.append(state)

    def next(self) -> FrameResult:
        return self.results.get(timeout=RESULT_TIMEOUT_S)


@pytest.fixture
def start(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[streams.StreamManager, Listener]]]:
    """Start a manager with a `FixedModel` and one stream; stopped at the end."""
    made: list[streams.StreamManager] = []

    def run(config: StreamConfig, model: FixedModel | None = None) -> tuple[streams.StreamManager, Listener]:
        fixed = model or FixedModel()
        monkeypatch.setattr(
            streams, "InferenceWorker", functools.partial(InferenceWorker, load=lambda _: cast("YOLO", fixed))
        )
        listener = Listener()
        made.append(streams.StreamManager(Settings(model="fixed"), listener))
        made[-1].start()
        made[-1].add(config)
        return made[-1], listener

    yield run
    for manager in made:
        manager.stop()


def changed_keeping_its_video(
    manager: streams.StreamManager, listener: Listener, config: StreamConfig
) -> tuple[list[FrameResult], int, int]:
    """Change ``config``'s options once a track shows; the results published until a new track shows,
    the old track's id and the new one's. Fails if ``seq`` or ``media_time`` ever goes back."""
    results = [listener.next()]
    while not results[-1].tracks:
        results.append(listener.next())
    [old] = [track.track_id for track in results[-1].tracks]
    changed = manager.replace(config)
    assert changed.config == config and changed.state is StreamState.LIVE, "never starting again"
    new = old
    while new == old:
        results.append(listener.next())
        new = max([track.track_id for track in results[-1].tracks], default=old)
    frames = [(result.frame.seq, result.frame.media_time) for result in results]
    for (seq, media_time), (next_seq, next_media_time) in itertools.pairwise(frames):
        assert next_seq > seq, f"seq went back: {seq} -> {next_seq}"
        assert next_media_time >= media_time, f"media_time went back: {media_time} -> {next_media_time}"
    return results, old, new


def track_events(results: list[FrameResult]) -> list[tuple[TrackEventKind, int]]:
    return [(event.kind, event.track_id) for result in results for event in result.events if hasattr(event, "kind")]


def test_a_conf_change_of_a_looping_file_goes_on_with_its_video(
    start: Callable[..., tuple[streams.StreamManager, Listener]], numbered_video: Path
) -> None:
    """The file played from its first frame again: ``media_time`` 1170 -> 0.07, ``seq`` 17551 -> 1."""
    config = StreamConfig("loopy", str(numbered_video), loop=True)
    manager, listener = start(config)
    results, old, new = changed_keeping_its_video(manager, listener, dataclasses.replace(config, options=CHANGED))
    assert new > old
    assert (TrackEventKind.END, old) in track_events(results)
    assert listener.states == [StreamState.STARTING, StreamState.LIVE]


def test_a_tracker_change_of_a_scene_goes_on_with_its_video(
    start: Callable[..., tuple[streams.StreamManager, Listener]],
) -> None:
    config = StreamConfig("scene", "scene:?seed=1")
    manager, listener = start(config)
    options = dataclasses.replace(StreamOptions(), tracker="bytetrack")
    results, old, new = changed_keeping_its_video(manager, listener, dataclasses.replace(config, options=options))
    assert new > old
    assert (TrackEventKind.END, old) in track_events(results)
    assert listener.states == [StreamState.STARTING, StreamState.LIVE]


def test_a_conf_change_of_a_batch_file_mid_file_goes_on_to_its_end_with_no_frame_twice(
    start: Callable[..., tuple[streams.StreamManager, Listener]],
    numbered_video: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The change comes while a frame is in the model and the reader waits for the next one's slot to be
    taken: that reader must go on into the new slot, from where it was."""
    processed: list[int] = []
    on_result = streams.StreamManager._on_result

    def recorded(manager: streams.StreamManager, result: FrameResult) -> None:
        processed.append(result.frame.seq)
        on_result(manager, result)

    monkeypatch.setattr(streams.StreamManager, "_on_result", recorded)
    model = FixedModel(hold_at=20)
    reader_waits = threading.Event()
    wait_empty = LatestFrame.wait_empty

    def watched(slot: LatestFrame, stop: threading.Event, poll_s: float = 0.1) -> bool:
        """`LatestFrame.wait_empty`, telling when one call asks ``stop`` twice while the model holds a frame:
        it asks once a poll while a frame waits in the slot, then once as it returns, so the first of two
        was asked with a frame waiting, one read after the held one (taken before the model was called)."""
        asked_holding = itertools.count(1)

        class Watched(threading.Event):
            def is_set(self) -> bool:
                if model.holding.is_set() and next(asked_holding) >= 2:
                    reader_waits.set()
                return stop.is_set()

        return wait_empty(slot, cast("threading.Event", Watched()), poll_s)

    monkeypatch.setattr(LatestFrame, "wait_empty", watched)
    config = StreamConfig("batch", f"{numbered_video}#rate=max")
    manager, listener = start(config, model)
    assert model.holding.wait(RESULT_TIMEOUT_S), "the file never reached its 20th frame"
    # The model holds the 20th frame: the 21st waits in the slot, and the reader for it to be taken.
    assert reader_waits.wait(RESULT_TIMEOUT_S), "the reader never waited on a frame in its slot"
    assert manager.info("batch").status.frames_read == model.seen + 1
    # given the reader waiting for its next frame to be taken, when the options change, then it goes on
    manager.replace(dataclasses.replace(config, options=CHANGED))
    model.release.set()
    last = listener.next()
    while not last.frame.ended:
        last = listener.next()
    info = manager.info("batch")
    assert info.state is StreamState.ENDED
    assert info.status.frames_read == NUMBERED_FRAMES, "every frame read once"
    assert processed == sorted(set(processed)), "no frame processed twice, none after a later one"
    assert len(processed) >= NUMBERED_FRAMES, "all of them but the one in the model at the change, and the end"
    assert StreamState.STARTING not in listener.states[1:]


def test_a_conf_change_of_a_network_camera_does_not_connect_to_it_again(
    start: Callable[..., tuple[streams.StreamManager, Listener]],
) -> None:
    with MjpegServer(fps=10) as camera:
        config = StreamConfig("cam", camera.url())
        manager, listener = start(config)
        _, old, new = changed_keeping_its_video(manager, listener, dataclasses.replace(config, options=CHANGED))
        assert new > old
        assert camera.connections == 1
        assert manager.info("cam").status.reconnects == 0
        assert listener.states == [StreamState.STARTING, StreamState.LIVE], "never starting nor reconnecting again"


def counters(info: StreamInfo) -> dict[str, int]:
    """The stream's totals, as ``/metrics`` gives them (``segcast_frames_*_total``,
    ``segcast_inference_errors_total``)."""
    return {
        "read": info.frames_read,
        "processed": info.frames_processed,
        "dropped": info.frames_dropped,
        "thinned": info.frames_thinned,
        "errors": info.inference_errors,
    }


def test_an_options_change_keeps_every_count_of_the_stream_going_on(
    start: Callable[..., tuple[streams.StreamManager, Listener]],
) -> None:
    """``frames_thinned`` went 71 -> 1 and the error count to 0 on a PATCH of ``conf`` while the reader's
    counts went on: a counter that drops alone reads as a reset to ``rate()`` and breaks sums."""
    config = StreamConfig("thin", "scene:?seed=1", options=StreamOptions(process_fps=2.0))
    manager, _ = start(config, FlakyModel())
    wait_for("thinned and failed frames", lambda: counters(manager.info("thin"))["thinned"] > 10)
    wait_for("a failed frame", lambda: counters(manager.info("thin"))["errors"] > 0)
    before = counters(manager.info("thin"))
    changed = dataclasses.replace(config, options=StreamOptions(process_fps=2.0, conf=0.4))
    after = counters(manager.replace(changed))
    assert all(after[name] >= before[name] for name in before), f"went down: {before} -> {after}"
    later = counters(manager.info("thin"))
    assert all(later[name] >= after[name] for name in after), f"went down: {after} -> {later}"


def test_a_zone_beyond_the_frame_is_refused_at_once_after_an_options_change(
    start: Callable[..., tuple[streams.StreamManager, Listener]],
) -> None:
    """The new options' registration had no frame size until its first frame: a zone beyond the frame of
    the same source went through meanwhile. The model is held, so no frame comes after the change."""
    model = FixedModel(hold_at=3)
    config = StreamConfig("fit", "scene:?seed=1")
    manager, _ = start(config, model)
    assert model.holding.wait(RESULT_TIMEOUT_S), "the stream never reached its third frame"
    wait_for("a frame size", lambda: (stats := manager.worker.stats("fit")) is not None and bool(stats.frame_size))
    beyond = {"name": "far", "points": [[0, 0], [5000, 0], [0, 100]]}
    try:
        manager.replace(dataclasses.replace(config, options=CHANGED))
        with pytest.raises(streams.StreamOptionsError, match=r"\(5000, 0\) is outside the \d+x\d+ frame"):
            options = StreamOptions.from_mapping({"conf": 0.3, "zones": [beyond]})
            manager.replace(dataclasses.replace(config, options=options))
        assert manager.config("fit").options == CHANGED
    finally:
        model.release.set()
