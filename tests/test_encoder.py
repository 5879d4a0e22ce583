"""The encoder's latest-only slot: a frame may be replaced before it is encoded, its track events may not."""

from __future__ import annotations

import queue
import subprocess
import sys
import time

import numpy as np

from server.delivery.encode import Encoder, FramePacket
from server.frames import Frame, FrameResult, TrackEvent, TrackEventKind

#: Bound on waiting for the encoder thread to publish; only a hang guard.
PUBLISH_TIMEOUT_S = 10.0


def result(seq: int, events: tuple[TrackEvent, ...] = ()) -> FrameResult:
    frame = Frame("cam", seq, time.time(), seq / 15, np.zeros((48, 64, 3), np.uint8))
    return FrameResult(frame, (), 1.0, events)


def test_a_frame_replaced_before_it_is_encoded_hands_its_track_events_to_the_frame_replacing_it() -> None:
    """Under load the inference thread hands over two results of a stream before the encoder takes one:
    the first is dropped as a picture, but a track's start it carried must still reach viewers and outputs."""
    published: queue.Queue[FramePacket] = queue.Queue()
    encoder = Encoder(published.put)
    start = TrackEvent(TrackEventKind.START, "cam", 7, 0, "person", time.time(), time.time(), 0.0, (0.0, 0.0, 8.0, 8.0))
    encoder.submit(result(1, (start,)))
    encoder.submit(result(2))  # the encoder thread has not run yet: frame 1 is replaced
    encoder.start()
    try:
        packet = published.get(timeout=PUBLISH_TIMEOUT_S)
    finally:
        encoder.stop()
    assert encoder.dropped == 1
    assert packet.seq == 2
    assert packet.result.events == (start,), "the replaced frame's track event was lost with its picture"
    assert published.empty(), "the replaced frame was published as well"


def test_the_encoder_draws_event_ids_without_importing_the_event_outputs() -> None:
    """Delivery hands events to the outputs through the hub; it depends on no part of them (DESIGN.md: a
    stage per package), so the id it gives each event comes from the values the stages share."""
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, server.delivery.encode; print(*sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert [name for name in imported if name.startswith("server.events")] == []
