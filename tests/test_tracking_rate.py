"""The rate a stream is processed at, measured on its frames' media time, leaves outages out."""

from __future__ import annotations

import numpy as np

from server.frames import Frame
from server.inference.detections import Detections
from server.options import StreamOptions
from server.tracking.stream import StreamTracker
from tests.support.detections import NAMES

FPS = 15.0
OUTAGE_S = 10.0  # longer than segtrack keeps a lost track (5 s): the tracker starts over


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
