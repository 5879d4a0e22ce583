"""Frames carrying events, as the pipeline publishes them, for the event output tests."""

from __future__ import annotations

import gc
import json
import time
import weakref
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from server.delivery.encode import FramePacket, make_packet
from server.frames import Frame, FrameResult, Track, TrackEvent, TrackEventKind

WIDTH, HEIGHT = 320, 240
BOX = (100.0, 60.0, 180.0, 200.0)  # where the test object is: a white block on black


def picture() -> np.ndarray:
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    x1, y1, x2, y2 = (int(v) for v in BOX)
    image[y1:y2, x1:x2] = 255
    return image


def track_start(seq: int, stream_id: str = "cam", track_id: int = 1, when: float | None = None) -> FramePacket:
    """A frame on which track ``track_id`` (a person at `BOX`) started: a real `TrackEvent`."""
    now = time.time() if when is None else when
    frame = Frame(stream_id, seq, now, seq / 15, picture())
    track = Track(track_id, 0, "person", 0.9, BOX, None, ())
    event = TrackEvent(TrackEventKind.START, stream_id, track_id, 0, "person", now, now, 0.0, BOX)
    return make_packet(FrameResult(frame, (track,), 1.0, (event,)), {})


def with_events(
    seq: int, events: list[dict[str, Any]], stream_id: str = "cam", tracks: int = 1, image: np.ndarray | None = None
) -> FramePacket:
    """A frame whose message carries ``events`` as given: kinds the pipeline may add later (zones, lines).

    ``image`` is the frame's picture (default `picture`); its tracks are at `BOX`, numbered from 1.
    """
    frame = Frame(stream_id, seq, time.time(), seq / 15, picture() if image is None else image)
    track_list = tuple(Track(i + 1, 0, "person", 0.9, BOX, None, ()) for i in range(tracks))
    result = FrameResult(frame, track_list, 1.0)
    metadata: Mapping[str, Any] = {**result.metadata_json(), "events": events}
    return FramePacket(result, MappingProxyType(dict(metadata)), json.dumps(metadata))


def with_counts(seq: int, counts: dict[str, Any], stream_id: str = "cam", tracks: int = 1) -> FramePacket:
    """A frame whose message carries per-stream ``counts`` the way the analytics layer adds them."""
    packet = with_events(seq, [], stream_id, tracks)
    metadata = {**packet.metadata, "counts": counts}
    return FramePacket(packet.result, MappingProxyType(metadata), json.dumps(metadata))


def frames_kept_after_offering(offer: Callable[[FramePacket], None], count: int = 5) -> int:
    """Offer ``count`` track starts to ``offer`` (an output's ``on_packet``), let go of them, and say how
    many of their frames are still alive: a queued event must keep none (a frame is megabytes)."""
    return len(frames_alive_after_offering(offer, count))


def frames_alive_after_offering(offer: Callable[[FramePacket], None], count: int = 5) -> list[int]:
    """`frames_kept_after_offering`, saying which: the numbers (0 first) of the frames still alive."""
    packets = [track_start(seq, track_id=seq) for seq in range(count)]
    images = [weakref.ref(packet.result.frame.image) for packet in packets]
    for packet in packets:
        offer(packet)
    del packets, packet
    gc.collect()
    return [number for number, image in enumerate(images) if image() is not None]
