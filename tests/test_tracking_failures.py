"""A frame the tracker fails on costs that frame only: `StreamTracker.update` is all or nothing.

The worker survives a failed update and sends nothing for the frame (nor runs its analytics), so a
start or an end made before the failure would be lost for good: a track reported without its start,
or tracks that never end, their zone visits open for ever.
"""

from __future__ import annotations

import logging
import sys
import threading

import cv2
import numpy as np
import pytest

from server.analytics.engine import StreamAnalytics
from server.analytics.shapes import parse_zones
from server.frames import Frame, TrackEventKind
from server.inference.detections import Detections
from server.options import StreamOptions
from server.scene import Scene
from server.tracking.segtrack import SegTracker
from server.tracking.stream import StreamTracker
from tests.support.detections import NAMES, TruthModel, truth_detections
from tests.support.driver import RESULT_TIMEOUT_S, Driver

WHOLE_FRAME = [[0, 0], [1, 0], [1, 1], [0, 1]]


def _frame(index: int, image: np.ndarray, fps: float) -> Frame:
    return Frame("cam", index, 1_700_000_000.0 + index / fps, index / fps, image)


def test_a_start_over_whose_frame_fails_still_ends_every_track_and_zone_visit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The frame size changes (a tracker starts over, ending every track) and the tracker raises on that
    frame: the ends come with the next frame that goes through, and so do the zone exits."""
    scene = Scene(seed=7)
    tracker = StreamTracker("cam", NAMES, StreamOptions(), scene.fps)
    zone = parse_zones([{"name": "all", "points": WHOLE_FRAME, "units": "fraction"}])[0]
    analytics = StreamAnalytics("cam", (zone,), ())
    started: list[int] = []
    ended: list[int] = []

    def feed(index: int, image: np.ndarray, detections: Detections) -> None:
        tracks, events = tracker.update(detections, _frame(index, image, scene.fps))
        _, events = analytics.update(tracks, events, _frame(index, image, scene.fps))
        started.extend(e.track_id for e in events if e.kind is TrackEventKind.START)
        ended.extend(e.track_id for e in events if e.kind is TrackEventKind.END)

    for index in range(60, 65):
        image, truths = scene.render(index)
        feed(index, image, truth_detections(image, truths))
    assert started and analytics.counts.zones["all"], "the scene has tracks in the zone to end"

    image, _ = scene.render(65)
    small = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2))
    update = SegTracker.update

    def failing(self: SegTracker, detections: Detections, image: np.ndarray) -> np.ndarray:
        raise RuntimeError("tracker bug")

    monkeypatch.setattr(SegTracker, "update", failing)
    with pytest.raises(RuntimeError, match="tracker bug"):
        tracker.update(truth_detections(small, []), _frame(65, small, scene.fps))
    monkeypatch.setattr(SegTracker, "update", update)

    image, _ = scene.render(66)
    small = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2))
    feed(66, small, truth_detections(small, []))
    assert sorted(ended) == sorted(started)
    assert analytics.counts.zones["all"] == dict.fromkeys(analytics.counts.zones["all"], 0)
    assert analytics.counts.dwell["all"].count == len(started), "every visit ended, with its dwell counted"


def test_a_track_reported_after_a_failed_frame_had_its_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outlining the second of two new tracks fails: the first was already taken in, so its start was
    lost, and it was reported (and ended) later without one."""
    tracker = StreamTracker("cam", NAMES, StreamOptions(), 15.0)
    module = sys.modules[StreamTracker.__module__]  # where the tracker looks `simplify` up
    simplify, calls = module.simplify, []

    def failing_on_the_second_outline(outline: np.ndarray) -> np.ndarray | None:
        calls.append(outline)
        if len(calls) == 2:
            raise ValueError("approxPolyDP choked")
        return simplify(outline)

    monkeypatch.setattr(module, "simplify", failing_on_the_second_outline)
    image = np.zeros((400, 400, 3), np.uint8)

    def square(x: float) -> np.ndarray:
        return np.array([[x, 10], [x + 40, 10], [x + 40, 50], [x, 50]], np.float32)

    two = np.array([[10, 10, 50, 50, 0.9, 0], [200, 10, 240, 50, 0.9, 1]], np.float32)
    started: set[int] = set()
    reported: set[int] = set()
    ended: set[int] = set()
    for index in range(100):  # segtrack keeps a lost track 5 s
        detections = Detections(two, lambda i: square(10 if i == 0 else 200)) if index < 4 else Detections(two[:0])
        try:
            tracks, events = tracker.update(detections, _frame(index, image, 15.0))
        except ValueError:
            assert index == 0
            continue
        started |= {e.track_id for e in events if e.kind is TrackEventKind.START}
        ended |= {e.track_id for e in events if e.kind is TrackEventKind.END}
        reported |= {t.track_id for t in tracks}
        assert {t.track_id for t in tracks} <= started, f"frame {index}: a track reported before its start"
    assert reported == started == ended == {1, 2}


def test_a_tracking_failure_logs_its_traceback_once_per_reason(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A tracker bug is as much news as a model's: its traceback at WARNING, once until frames go through."""
    update = StreamTracker.update
    failing = [True, True, True, False, True]

    def failing_on(self: StreamTracker, detections: Detections, frame: Frame) -> object:
        if failing[frame.seq]:
            raise RuntimeError("tracker bug")
        return update(self, detections, frame)

    monkeypatch.setattr(StreamTracker, "update", failing_on)
    with caplog.at_level(logging.WARNING, logger="server.inference.worker"), Driver(TruthModel()) as driver:
        driver.add("cam", Scene(seed=1))
        for index, fail in enumerate(failing):
            if fail:
                driver.put(driver.frame("cam", index))
                driver.wait_taken("cam")
            else:
                driver.step({"cam": index})
        failing.append(False)
        driver.step({"cam": len(failing) - 1})  # processed after the others: they are all counted by now
        stats = driver.worker.stats("cam")
        assert stats is not None and stats.errors == 4
    tracebacks = [r for r in caplog.records if r.exc_info and "tracking failed on frame" in r.getMessage()]
    assert [r.getMessage() for r in tracebacks] == [
        "[cam] tracking failed on frame 0",
        "[cam] tracking failed on frame 4",
    ]


def test_a_value_error_inside_tracking_is_a_tracking_failure_with_its_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Only the stream's options not fitting the model (an unknown class) is told as a bare reason. A
    ValueError from numpy or OpenCV inside an update was told the same way, as if the options were
    wrong: no "tracking failed", no traceback to find the bug by."""
    module = sys.modules[StreamTracker.__module__]  # where the tracker looks `simplify` up
    simplify, choked = module.simplify, threading.Event()

    def choking_once(outline: np.ndarray) -> np.ndarray | None:
        if not choked.is_set():
            choked.set()
            raise ValueError("approxPolyDP choked")
        return simplify(outline)

    monkeypatch.setattr(module, "simplify", choking_once)
    with caplog.at_level(logging.WARNING, logger="server.inference.worker"), Driver(TruthModel()) as driver:
        driver.add("cam", Scene(seed=1))
        driver.put(driver.frame("cam", 60))  # objects in view: their outlines are simplified
        assert choked.wait(RESULT_TIMEOUT_S), "the tracker never simplified an outline"
        driver.step({"cam": 61})  # processed after the failed one: its failure is counted by now
        stats = driver.worker.stats("cam")
    assert stats is not None and stats.errors == 1
    assert stats.last_error == "tracking failed: ValueError: approxPolyDP choked"
    tracebacks = [r for r in caplog.records if r.exc_info and "tracking failed on frame" in r.getMessage()]
    assert [r.getMessage() for r in tracebacks] == ["[cam] tracking failed on frame 60"]
