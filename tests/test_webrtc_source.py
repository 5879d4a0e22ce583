"""A published WebRTC track as a stream's source: the frames its reader hands on."""

from __future__ import annotations

import threading
from fractions import Fraction

import av
import numpy as np
import pytest

from server.webrtc.source import RAMP_UP_S, WebRTCSource, steady_size


def _frame(width: int, height: int, pts: int) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 90, np.uint8), format="bgr24")
    frame.pts = pts
    return frame


def test_a_sender_that_lowers_its_resolution_is_scaled_back_to_its_steady_size() -> None:
    """A browser sending less under load must not end every track (each new size does): a smaller
    frame of the same shape is scaled up; a larger one, or one turned on its side, is taken as it is."""
    source = WebRTCSource("127.0.0.1")
    frames = source.open(threading.Event())
    sent = [(640, 480), (320, 240), (480, 360), (640, 480), (1280, 960), (640, 480), (480, 640), (240, 320)]
    handed_on = []
    for pts, (width, height) in enumerate(sent):
        source.handover.put(_frame(width, height, pts * 3000))
        decoded = next(frames)
        handed_on.append((decoded.image.shape[1], decoded.image.shape[0]))
    assert handed_on == [
        (640, 480),
        (640, 480),
        (640, 480),
        (640, 480),
        (1280, 960),
        (1280, 960),
        (480, 640),
        (480, 640),
    ]
    frames.close()


def test_a_smaller_frame_of_another_shape_is_taken_as_it_is_and_one_a_little_off_the_shape_is_scaled() -> None:
    """16:9 to 16:10 is another picture (cropped or letterboxed): scaled up to 16:9 it would be
    stretched. A size rounded a little off the steady one's shape (an encoder's even or block sizes) is
    the same picture scaled (`SAME_ASPECT`)."""
    hd = (1280, 720)
    assert steady_size(hd, (640, 400)) == (640, 400)
    assert steady_size(hd, (640, 362)) == hd


def test_a_sender_ramping_up_to_its_cameras_size_keeps_that_size_from_its_first_frame() -> None:
    """A browser starts sending small (its first bandwidth estimate) and steps up: each step would end
    every track. Told the camera's size, the source scales the small start up to it instead."""
    source = WebRTCSource("127.0.0.1", capture_size=(1280, 720))
    frames = source.open(threading.Event())
    handed_on = []
    for pts, (width, height) in enumerate([(320, 180), (640, 360), (960, 540), (1280, 720)]):
        source.handover.put(_frame(width, height, pts * 3000))
        decoded = next(frames)
        handed_on.append((decoded.image.shape[1], decoded.image.shape[0]))
    assert handed_on == [(1280, 720)] * 4
    frames.close()


def _sizes_handed_on(source: WebRTCSource, sent: list[tuple[float, int, int]]) -> list[tuple[int, int]]:
    """What ``source`` hands on for frames of those sizes sent at those seconds (on the RTP video clock)."""
    frames = source.open(threading.Event())
    handed_on = []
    for seconds, width, height in sent:
        frame = _frame(width, height, round(seconds * 90_000))
        frame.time_base = Fraction(1, 90_000)
        source.handover.put(frame)
        decoded = next(frames)
        handed_on.append((decoded.image.shape[1], decoded.image.shape[0]))
    frames.close()
    return handed_on


def test_a_sender_that_settles_below_its_cameras_size_is_taken_at_the_most_it_sent() -> None:
    """Scaled up for good, a sender stuck small (a slow link) would cost every frame and every viewer's
    JPEG the camera size's work and bytes. One still stepping up keeps the camera size; one that
    settled is taken at the most it sent, even when the frame that shows it settled is a dip; one that
    reached the camera size keeps it through later dips."""
    camera = (1280, 720)
    late = RAMP_UP_S + 0.5
    stuck = _sizes_handed_on(
        WebRTCSource("127.0.0.1", capture_size=camera), [(0, 320, 180), (5, 320, 180), (late, 320, 180)]
    )
    assert stuck == [camera, camera, (320, 180)]
    step = RAMP_UP_S * 0.8
    slow = [(0, 320, 180), (step, 640, 360), (2 * step, 960, 540), (3 * step, 1280, 720), (4 * step, 640, 360)]
    assert _sizes_handed_on(WebRTCSource("127.0.0.1", capture_size=camera), slow) == [camera] * 5
    dipped = [(0, 960, 540), (late, 320, 180), (late + 1, 960, 540)]
    assert _sizes_handed_on(WebRTCSource("127.0.0.1", capture_size=camera), dipped) == [camera, (960, 540), (960, 540)]
    reached = [(0, 320, 180), (5, 1280, 720), (late, 320, 180)]
    assert _sizes_handed_on(WebRTCSource("127.0.0.1", capture_size=camera), reached) == [camera] * 3


def test_a_sender_without_timestamps_is_timed_on_this_machines_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames with no time base have no media time to time the ramp-up on: it would never end."""
    now = [100.0]
    monkeypatch.setattr("server.webrtc.source.time.monotonic", lambda: now[0])
    source = WebRTCSource("127.0.0.1", capture_size=(1280, 720))
    frames = source.open(threading.Event())
    handed_on = []
    for seconds in (0.0, 5.0, RAMP_UP_S + 0.5):
        now[0] = 100.0 + seconds
        source.handover.put(_frame(320, 180, 0))  # no time base: media time 0 for every frame
        decoded = next(frames)
        handed_on.append((decoded.image.shape[1], decoded.image.shape[0]))
    frames.close()
    assert handed_on == [(1280, 720), (1280, 720), (320, 180)]
