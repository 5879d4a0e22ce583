"""The hub under a wall clock that steps (NTP, a person setting it): which frames it shows and the
latency it reports must not follow the step. And its rates on a monotonic clock the tests move."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from server.delivery.encode import FramePacket, Variant, make_packet
from server.delivery.hub import Hub
from server.delivery.stream_stats import STALLED_AFTER_S, STATS_WINDOW_S, StreamStats
from server.frames import Frame, FrameResult

DAY_S = 24 * 3600.0
HOUR_S = 3600.0
TRUE_TIME = time.time


def set_clock(monkeypatch: pytest.MonkeyPatch, ahead_s: float) -> None:
    """Make the wall clock read ``ahead_s`` seconds from the true time (0: set right again)."""
    monkeypatch.setattr(time, "time", lambda: TRUE_TIME() + ahead_s)


def captured(seq: int, stream_id: str = "cam") -> FramePacket:
    """Frame ``seq`` as a reader captures it now, stamped by whatever the wall clock says, and encoded."""
    frame = Frame(stream_id, seq, time.time(), seq / 15, np.zeros((4, 4, 3), np.uint8))
    return make_packet(FrameResult(frame, (), 1.0), {Variant(): b"\xff\xd8jpeg"})


async def settle() -> None:
    """Let the loop run what the ``*_threadsafe`` calls scheduled."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_stream_added_while_the_clock_was_ahead_shows_its_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """Added with the clock a day ahead, then the clock set right: its frames were all taken for a
    late frame of an older source until real time caught up, so it stayed blank while ``live``."""
    hub = Hub(asyncio.get_running_loop())
    set_clock(monkeypatch, DAY_S)
    hub.stream_added_threadsafe("cam4")
    set_clock(monkeypatch, 0.0)

    first = captured(1, "cam4")
    hub.publish_threadsafe(first)
    await settle()

    assert hub.latest["cam4"] is first
    assert hub.published("cam4") == 1


async def test_a_late_frame_of_the_old_source_stays_hidden_when_the_clock_was_set_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other way round: the old camera's frame, stamped while the clock was ahead and still in the
    encoder as the clock is set right and the stream restarted, must not show as the new camera's."""
    hub = Hub(asyncio.get_running_loop())
    hub.stream_added_threadsafe("cam")
    set_clock(monkeypatch, DAY_S)
    old_camera = captured(2)
    set_clock(monkeypatch, 0.0)
    hub.stream_added_threadsafe("cam")  # restarted on a new source

    hub.publish_threadsafe(old_camera)
    await settle()

    assert "cam" not in hub.latest
    new_camera = captured(1)
    hub.publish_threadsafe(new_camera)
    await settle()
    assert hub.latest["cam"] is new_camera


@pytest.mark.parametrize("step_s", [HOUR_S, -HOUR_S])
async def test_latency_does_not_follow_a_clock_step_between_capture_and_publish(
    monkeypatch: pytest.MonkeyPatch, step_s: float
) -> None:
    """A step of an hour read as an hour's latency (a spike that fired latency alerts) or a negative
    one; the frame took no longer to come through than it did without the step."""
    hub = Hub(asyncio.get_running_loop())
    hub.stream_added_threadsafe("cam")
    packet = captured(1)
    set_clock(monkeypatch, step_s)

    hub.publish_threadsafe(packet)
    await settle()

    latency_ms = hub.stats("cam")["latency_ms"]
    assert latency_ms is not None
    assert 0.0 <= latency_ms < 1000.0, f"{latency_ms} ms for a frame published as soon as it was captured"


def processed_at(stats: StreamStats, monotonic: list[float], at_s: float) -> None:
    """A frame processed and published at ``at_s`` on the monotonic clock the test moves."""
    monotonic[0] = at_s
    frame = Frame("cam", 1, 0.0, 0.0, np.zeros((4, 4, 3), np.uint8), capture_monotonic=at_s)
    stats.add(make_packet(FrameResult(frame, (), 1.0), {Variant(): b"\xff\xd8jpeg"}))


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """``time.monotonic`` reads ``monotonic[0]``."""
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    return clock


def test_a_stream_processed_slower_than_a_frame_a_window_reads_its_rate_not_zero(monotonic: list[float]) -> None:
    """Triton overloaded: a frame every 8 s, one at most in the window. It read 0 fps, in the API, /metrics
    and the viewer, and the alert on ``segcast_processed_fps == 0`` took the slow stream for stalled."""
    stats = StreamStats()
    processed_at(stats, monotonic, 0.0)
    processed_at(stats, monotonic, 8.0)

    assert stats.snapshot()["processed_fps"] == pytest.approx(1 / 8, abs=0.01)
    monotonic[0] = 8.0 + STATS_WINDOW_S + 1  # no frame in the window now, the next one not yet late
    assert stats.snapshot()["processed_fps"] == pytest.approx(1 / 8, abs=0.01)


def test_a_slow_stream_that_stops_reads_zero_once_it_is_clearly_late(monotonic: list[float]) -> None:
    """Twice its own interval without a frame (a frame every 8 s: 16 s), or `STALLED_AFTER_S` for one
    slower still: then it is stalled, with no latency to report."""
    stats = StreamStats()
    processed_at(stats, monotonic, 0.0)
    processed_at(stats, monotonic, 8.0)
    monotonic[0] = 8.0 + 2 * 8.0 + 1
    assert stats.snapshot() == {"processed_fps": 0.0, "latency_ms": None}

    slower = StreamStats()
    processed_at(slower, monotonic, 0.0)
    processed_at(slower, monotonic, 20.0)
    monotonic[0] = 20.0 + STALLED_AFTER_S - 1
    assert slower.snapshot()["processed_fps"] == pytest.approx(1 / (STALLED_AFTER_S - 1), abs=0.01)
    monotonic[0] = 20.0 + STALLED_AFTER_S + 1
    assert slower.snapshot()["processed_fps"] == 0.0


def test_a_stream_processed_at_full_rate_that_stops_reads_zero_after_one_window(monotonic: list[float]) -> None:
    """Its frames a fifteenth of a second apart: not a slow stream, so no later than before."""
    stats = StreamStats()
    for seq in range(30):
        processed_at(stats, monotonic, seq / 15)
    monotonic[0] += STATS_WINDOW_S + 0.5
    assert stats.snapshot() == {"processed_fps": 0.0, "latency_ms": None}


def test_a_slow_stream_shown_unanalysed_reads_zero_at_once(monotonic: list[float]) -> None:
    """Inference unavailable: its frames are not processed, however recently the last one was."""
    stats = StreamStats()
    processed_at(stats, monotonic, 0.0)
    processed_at(stats, monotonic, 8.0)
    monotonic[0] = 9.0
    frame = Frame("cam", 2, 0.0, 0.0, np.zeros((4, 4, 3), np.uint8), capture_monotonic=9.0)
    stats.add(make_packet(FrameResult.unanalysed(frame), {Variant(): b"\xff\xd8jpeg"}))
    assert stats.snapshot()["processed_fps"] == 0.0
