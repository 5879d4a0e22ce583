"""The rate a stream is processed at, measured on its frames' media time: outages are left out of it,
and a stream that goes on at a much slower pace is measured at that pace, its tracks going on."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from server.frames import Frame, TrackEventKind
from server.inference.detections import Detections
from server.options import StreamOptions
from server.scene import Scene, TrueObject
from server.tracking.rate import ProcessingRate
from server.tracking.stream import StreamTracker
from tests.support.detections import NAMES, TruthModel
from tests.support.driver import EPOCH, Driver

FPS = 15.0
OUTAGE_S = 10.0  # longer than segtrack keeps a lost track (5 s): the tracker starts over
SLOW_S = 10.0  # a frame every 10 s: process_fps 0.1
SEGTRACK_WINDOW_S = 5.0


def test_an_outage_is_left_out_of_the_measured_rate() -> None:
    """A camera away for 10 s was not processed at a frame every 10 s: the rate stays the stream's."""
    tracker = StreamTracker("cam", NAMES, StreamOptions(), FPS)
    image = np.zeros((120, 160, 3), np.uint8)
    none = Detections(np.zeros((0, 6), np.float32))
    for index in range(30):
        tracker.update(none, Frame("cam", index, 1_700_000_000.0 + index / FPS, index / FPS, image))
    before = tracker.processing_fps
    back = 29 / FPS + OUTAGE_S
    tracker.update(none, Frame("cam", 30, 1_700_000_000.0 + back, back, image))
    assert tracker.processing_fps == before


def _taken(rate: ProcessingRate, times: list[float]) -> tuple[ProcessingRate, list[bool]]:
    """``rate`` after frames at ``times``, and which of them came after an outage."""
    outages = []
    for media_time in times:
        rate, outage = rate.after(media_time)
        outages.append(outage)
    return rate, outages


def test_a_second_long_gap_of_about_the_same_length_is_the_streams_new_pace() -> None:
    """Given a stream at 15 fps, when its frames come every 10 s (give or take a source frame), then the
    first gap is an outage and the next ones are its pace, measured at once."""
    fast = [index / FPS for index in range(30)]
    slow = [fast[-1] + SLOW_S, fast[-1] + 2 * SLOW_S + 1 / FPS, fast[-1] + 3 * SLOW_S, fast[-1] + 4 * SLOW_S]
    rate, outages = _taken(ProcessingRate(1 / FPS, SEGTRACK_WINDOW_S), [*fast, *slow])
    assert outages[30:] == [True, False, False, False]
    assert rate.fps == pytest.approx(1 / SLOW_S, rel=0.02)


@pytest.mark.parametrize("second_s", [20.0, 4.0 * SLOW_S])
def test_long_gaps_of_clearly_different_lengths_are_outages_each(second_s: float) -> None:
    """A camera away for 10 s, back for a frame, then away again for longer: two outages, no new pace."""
    fast = [index / FPS for index in range(30)]
    times = [*fast, fast[-1] + SLOW_S, fast[-1] + SLOW_S + second_s]
    rate, outages = _taken(ProcessingRate(1 / FPS, SEGTRACK_WINDOW_S), times)
    assert outages[30:] == [True, True]
    assert rate.fps == pytest.approx(FPS, rel=0.02)


def test_a_slower_cap_is_the_pace_at_once_and_a_faster_one_waits_for_faster_frames() -> None:
    """A cap lowered to a frame every 10 s makes its first gap no outage; a cap raised changes nothing
    until frames come faster (a cap is a most, not a rate the worker keeps up with)."""
    fast = [index / FPS for index in range(30)]
    rate, _ = _taken(ProcessingRate(1 / FPS, SEGTRACK_WINDOW_S), fast)
    slow, outages = _taken(rate.capped(1 / SLOW_S), [fast[-1] + SLOW_S, fast[-1] + 2 * SLOW_S])
    assert outages == [False, False]
    assert slow.fps == pytest.approx(1 / SLOW_S, rel=0.01)
    assert slow.capped(FPS) == slow and rate.capped(None) == rate and rate.capped(2 * FPS) == rate


def test_a_frame_taken_in_leaves_the_rate_it_came_from_as_it_was() -> None:
    """`StreamTracker.update` keeps the new rate only once the whole frame went through."""
    rate, _ = _taken(ProcessingRate(1 / FPS, SEGTRACK_WINDOW_S), [0.0, 1 / FPS])
    before = dataclasses.replace(rate)
    rate.after(SLOW_S)
    assert rate == before


@pytest.mark.parametrize("kind", ["segtrack", "bytetrack"])
def test_a_stream_slowed_to_a_frame_every_ten_seconds_keeps_its_ids_after_the_first_gap(kind: str) -> None:
    """process_fps lowered to 0.1 on a running stream (README: "tracks, ids and counts go on"). Each
    10 s gap was taken for an outage, the pace measured never moved from 30 fps, and a parked object
    got a new id on every frame. The first gap cannot be told from an outage; the later ones are the pace."""
    tracker = StreamTracker("cam", NAMES, StreamOptions(tracker=kind), 30.0)
    image = np.zeros((240, 320, 3), np.uint8)
    parked = Detections(np.array([[100, 80, 160, 140, 0.9, 1]], np.float32))
    media_time = 0.0
    for index in range(60):  # 2 s at 30 fps
        media_time = index / 30
        tracker.update(parked, Frame("cam", index, EPOCH + media_time, media_time, image))
    slowed = []
    for index in range(60, 66):
        media_time += SLOW_S
        tracks, events = tracker.update(parked, Frame("cam", index, EPOCH + media_time, media_time, image))
        slowed.append(([t.track_id for t in tracks], [(e.kind, e.track_id) for e in events]))
    assert slowed[0] == ([2], [(TrackEventKind.START, 2), (TrackEventKind.END, 1)])
    assert slowed[1:] == [([2], [])] * 5
    assert tracker.processing_fps == pytest.approx(1 / SLOW_S, rel=0.01)


def test_a_cap_lowered_on_a_running_stream_settles_to_its_pace_with_the_same_ids() -> None:
    """Through the worker: a stream at 15 fps has its process_fps set to 0.1 while it runs
    (`InferenceWorker.change_shapes`, as PATCH does); its parked object keeps its id across the first
    10 s gap and every one after (that gap looked like an outage, and ended its track), and the rate
    the worker reports settles at 0.1 fps."""
    image = np.zeros((240, 320, 3), np.uint8)
    mask = np.zeros(image.shape[:2], bool)
    mask[80:140, 100:160] = True
    parked = [TrueObject(1, 1, (100, 80, 160, 140), mask, 0.0)]
    with Driver(TruthModel()) as driver:
        driver.add("cam", Scene(seed=1), StreamOptions(), fps=FPS)

        def processed(index: int) -> list[int]:
            frame = Frame("cam", index, EPOCH + index / FPS, index / FPS, image.copy())
            driver.model.model.register(frame.image, parked)
            driver.put(frame)
            return [t.track_id for t in driver.wait(1)["cam"].tracks]

        for index in range(30):
            processed(index)
        assert driver.worker.change_shapes("cam", StreamOptions(process_fps=1 / SLOW_S))
        ids = [processed(29 + round(SLOW_S * FPS) * step) for step in range(1, 6)]
        stats = driver.worker.stats("cam")
    assert ids == [[1]] * 5
    assert stats is not None and stats.processing_fps == pytest.approx(1 / SLOW_S, rel=0.01)
