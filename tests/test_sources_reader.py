"""The reader's state machine and backoff, driven by scripted sources (no network, no video)."""

from __future__ import annotations

import itertools
import logging
import random
import re
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from server.log_throttle import REPEATED_FAILURE_LOG_INTERVAL_S, RepeatedFailureLog
from server.sources import Decoded, SourceError, StreamState, mask_uri, open_source
from server.sources.backoff import RECONNECT_INITIAL_S, RECONNECT_MAX_S, Backoff
from server.sources.base import SlowRetryError
from server.sources.network import NetworkSource
from server.sources.pacing import LivePacing
from server.sources.reader import (
    SLOW_RETRY_INITIAL_S,
    TRANSITIONS,
    ReaderStatus,
    StreamReader,
    stop_readers,
)
from server.sources.uri import mask_text
from server.sources.webcam import WebcamSource
from tests.support.reader_probe import ReaderProbe

IMAGE = np.zeros((16, 16, 3), np.uint8)


class ScriptedSource:
    """Plays attempts from a script: each is a number of frames, then how the attempt ends."""

    live = True
    fps = 50.0

    def __init__(self, *attempts: tuple[int, BaseException | None]) -> None:
        self.attempts = list(attempts)
        self.opened = 0
        self.image = IMAGE

    def describe(self) -> str:
        return "scripted"

    def open(self, stop: threading.Event) -> Iterator[Decoded]:
        frames, ending = self.attempts[min(self.opened, len(self.attempts) - 1)]
        self.opened += 1
        for index in range(frames):
            if stop.wait(1 / self.fps):
                return
            yield Decoded(self.image, index / self.fps)
        if ending is not None:
            raise ending


def test_backoff_doubles_from_half_a_second_to_thirty_with_jitter() -> None:
    backoff, rng = Backoff(), random.Random(1)
    delays = [backoff.delay(failures, rng) for failures in range(10)]
    nominal = [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    for delay, expected in zip(delays, nominal, strict=True):
        assert expected * 0.8 <= delay <= expected
    assert RECONNECT_MAX_S == 30
    assert len({round(backoff.delay(3, rng), 6) for _ in range(5)}) == 5, "jittered, not in lockstep"


def test_jitter_never_makes_a_wait_longer_than_the_thirty_seconds_promised() -> None:
    backoff, rng = Backoff(), random.Random(2)
    capped = [backoff.delay(failures, rng) for failures in range(6, 1006)]
    assert max(capped) <= RECONNECT_MAX_S
    assert min(capped) < RECONNECT_MAX_S * 0.85, "still spread out below the cap"


def test_only_allowed_transitions_exist_and_ended_and_failed_are_final() -> None:
    assert TRANSITIONS[StreamState.ENDED] == TRANSITIONS[StreamState.FAILED] == frozenset()
    assert StreamState.STARTING not in set().union(*TRANSITIONS.values())
    assert set(TRANSITIONS) == set(StreamState)


def test_a_live_source_that_errors_is_reconnecting_then_live() -> None:
    source = ScriptedSource((3, ConnectionError("connection reset by peer")), (1000, None))
    with ReaderProbe(source, backoff=Backoff(initial_s=0.05)) as probe:
        probe.wait_until("live again", lambda s: s.state is StreamState.LIVE and s.reconnects == 1, 5)
    assert [state for state, _ in probe.announced] == [StreamState.LIVE, StreamState.RECONNECTING, StreamState.LIVE]
    assert probe.announced[1][1] == "connection reset by peer"


def test_retries_of_the_same_error_are_announced_once_but_counted() -> None:
    source = ScriptedSource((0, ConnectionError("connection refused")))
    with ReaderProbe(source, backoff=Backoff(initial_s=0.01, max_s=0.02)) as probe:
        probe.wait_until("retried", lambda s: s.reconnects >= 5, 5)
    assert probe.announced == [(StreamState.RECONNECTING, "connection refused")]


def test_a_camera_failing_the_same_way_is_warned_about_once_then_rarely(caplog: pytest.LogCaptureFixture) -> None:
    """Each retry of a dead camera was a WARNING line: every 30 s, some 2,900 lines a day per camera."""
    source = ScriptedSource((0, ConnectionError("connection refused")))
    backoff = Backoff(initial_s=0.01, max_s=0.02)
    with caplog.at_level(logging.DEBUG, logger="server.sources.reader"), ReaderProbe(source, backoff=backoff) as probe:
        probe.wait_until("retried", lambda s: s.reconnects >= 5, 5)
    retries = [r for r in caplog.records if "reconnecting in" in r.getMessage()]
    assert len(retries) >= 5
    assert [r.levelno for r in retries].count(logging.WARNING) == 1
    assert retries[0].levelno == logging.WARNING  # the first is news


def test_a_repeated_failure_is_warned_again_after_a_while_with_its_count_and_a_new_one_at_once() -> None:
    failures = RepeatedFailureLog()
    assert failures.failed("refused", 0.0) == (logging.WARNING, "")
    assert failures.failed("refused", 30.0) == (logging.DEBUG, "")
    assert failures.failed("refused", 60.0) == (logging.DEBUG, "")
    level, repeats = failures.failed("refused", REPEATED_FAILURE_LOG_INTERVAL_S + 1)
    assert level == logging.WARNING and "2 more times" in repeats
    assert failures.failed("timed out", REPEATED_FAILURE_LOG_INTERVAL_S + 2) == (logging.WARNING, "")
    assert failures.failed("refused", REPEATED_FAILURE_LOG_INTERVAL_S + 3) == (logging.WARNING, "")


def test_a_failure_repeated_after_the_interval_with_none_between_is_warned_with_no_count() -> None:
    """Nothing failed meanwhile: "failed so 0 more times" would tell the reader nothing."""
    failures = RepeatedFailureLog()
    failures.failed("refused", 0.0)
    assert failures.failed("refused", 2 * REPEATED_FAILURE_LOG_INTERVAL_S) == (logging.WARNING, "")


def test_a_failure_repeated_at_exactly_the_interval_is_warned_again() -> None:
    """The interval is the most a repeated failure waits for its next WARNING line, not one it must exceed."""
    failures = RepeatedFailureLog()
    failures.failed("refused", 0.0)
    failures.failed("refused", 30.0)
    level, repeats = failures.failed("refused", REPEATED_FAILURE_LOG_INTERVAL_S)
    assert level == logging.WARNING and "1 more times" in repeats


class RecordedBackoff:
    """A `Backoff` that notes each delay the reader asks it for, so tests need not time the waits."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.healthy_s = backoff.healthy_s
        self.delays: list[float] = []

    def delay(self, failures: int, rng: random.Random) -> float:
        delay = self.backoff.delay(failures, rng)
        self.delays.append(delay)
        return delay

    def failures_within(self, wait_s: float) -> int | None:
        return self.backoff.failures_within(wait_s)


def test_a_camera_that_recovers_then_fails_the_same_way_is_warned_about_again(caplog: pytest.LogCaptureFixture) -> None:
    """Live again in between, the same failure is news: it is not one of the retries of a dead camera."""
    refused = ConnectionError("connection refused")
    source = ScriptedSource((0, refused), (3, refused), (1000, None))
    backoff = Backoff(initial_s=0.01, max_s=0.02)
    with caplog.at_level(logging.DEBUG, logger="server.sources.reader"), ReaderProbe(source, backoff=backoff) as probe:
        probe.wait_until("live after two failures", lambda s: s.reconnects == 2 and s.state is StreamState.LIVE, 5)
    retries = [r for r in caplog.records if "reconnecting in" in r.getMessage()]
    assert [r.levelno for r in retries] == [logging.WARNING, logging.WARNING]


def test_backoff_is_reset_after_a_healthy_connection() -> None:
    # Unhealthy drops grow the delay; after a connection that lasted `healthy_s` it starts over.
    # The healthy one lasts 50 frames at 50 fps: 1 s, at least, however busy the machine.
    source = ScriptedSource(
        (1, ConnectionError("drop")), (1, ConnectionError("drop")), (50, ConnectionError("drop")), (1000, None)
    )
    backoff = RecordedBackoff(Backoff(initial_s=0.2, jitter=0.0, healthy_s=0.6))
    with ReaderProbe(source, backoff=backoff) as probe:  # type: ignore[arg-type]
        probe.wait_until("three drops", partial(_has_reconnected, times=3), 10)
    assert backoff.delays[:3] == [0.2, 0.4, 0.2], "the healthy connection reset the backoff"


def test_the_refusal_backoff_is_reset_after_a_healthy_connection_too() -> None:
    """A camera that refused twice while it booted, then played for a while, is asked again soon after
    its next refusal: the wait does not go on doubling from where the boot left it."""
    refused = SlowRetryError("the camera refused the credentials")
    # The healthy one lasts 50 frames at 50 fps: 1 s, at least, however busy the machine.
    source = ScriptedSource((0, refused), (0, refused), (50, ConnectionError("drop")), (0, refused), (1000, None))
    probe = ReaderProbe(source, backoff=Backoff(initial_s=0.01, jitter=0.0, healthy_s=0.6))
    slow = RecordedBackoff(Backoff(initial_s=0.1, max_s=100.0, jitter=0.0, healthy_s=0.6))
    probe.reader.slow_backoff = slow  # type: ignore[assignment]
    with probe:
        probe.wait_until("four ends", partial(_has_reconnected, times=4), 20)
    assert slow.delays == [0.1, 0.2, 0.1], "the healthy connection reset the refusal backoff"


def test_a_connection_whose_frames_flowed_is_not_counted_as_a_failure_to_open() -> None:
    """An MJPEG camera whose connections each gave a second of frames waited up to 30 s after each, as if
    it were not up: down 92% of the time. A connection whose frames flowed for a while now brings the
    wait down to no longer than that while; one frame and a drop still doubles it."""
    drop = ConnectionError("drop")
    # Three failures to open, then 15 frames at 50 fps (0.28 s at least), then a frame and a drop twice.
    source = ScriptedSource((0, drop), (0, drop), (0, drop), (15, drop), (1, drop), (1, drop), (1000, None))
    backoff = RecordedBackoff(Backoff(initial_s=0.1, max_s=10.0, jitter=0.0))
    with ReaderProbe(source, backoff=backoff) as probe:  # type: ignore[arg-type]
        probe.wait_until("six drops", partial(_has_reconnected, times=6), 20)

    held = backoff.delays[3]
    assert backoff.delays[:3] == [0.1, 0.2, 0.4]
    assert held <= 0.4, "the connection whose frames flowed did not double the wait"
    assert backoff.delays[4:6] == [held, 2 * held], "a frame then a drop counts as a failure again"


def test_the_failures_a_wait_allows_are_those_whose_wait_is_no_longer() -> None:
    backoff = Backoff(initial_s=0.5, max_s=30.0)
    assert [backoff.failures_within(wait_s) for wait_s in (0.1, 0.5, 0.99, 1.0, 9.0, 600.0)] == [None, 0, 0, 1, 4, 5]


def _has_reconnected(status: ReaderStatus, times: int) -> bool:
    return status.reconnects >= times


def test_permanent_error_fails_without_retrying() -> None:
    source = ScriptedSource((2, SourceError("the camera refused the credentials")))
    with ReaderProbe(source) as probe:
        failed = probe.wait_state(StreamState.FAILED, 5)
    assert failed.error == "the camera refused the credentials" and source.opened == 1


def test_a_refusal_is_retried_on_the_slow_backoff_and_a_lost_connection_on_the_fast_one() -> None:
    """A camera that is still booting answers 401 or describes no video; it must not be failed for good."""
    for ending, nominal_s in (
        (SlowRetryError("the camera refused the credentials"), SLOW_RETRY_INITIAL_S),
        (ConnectionError("connection refused"), RECONNECT_INITIAL_S),
    ):
        probe = ReaderProbe(ScriptedSource((0, ending)), backoff=Backoff())
        fast, slow = RecordedBackoff(probe.reader.backoff), RecordedBackoff(probe.reader.slow_backoff)
        probe.reader.backoff, probe.reader.slow_backoff = fast, slow  # type: ignore[assignment]
        with probe:
            status = probe.wait_state(StreamState.RECONNECTING, 5)
        assert status.error == str(ending)
        [delay] = (slow if isinstance(ending, SlowRetryError) else fast).delays[:1]
        assert 0.8 * nominal_s <= delay <= 1.2 * nominal_s, ending
        assert not (fast if isinstance(ending, SlowRetryError) else slow).delays


def test_frames_too_small_to_find_anything_in_fail_the_stream() -> None:
    """A 1x1 video stayed live with every frame an inference error."""
    tiny = ScriptedSource((1000, None))
    tiny.image = np.zeros((1, 1, 3), np.uint8)
    with ReaderProbe(tiny) as probe:
        failed = probe.wait_state(StreamState.FAILED, 5)
    assert failed.error is not None and "1x1 are smaller than 16 pixels" in failed.error
    assert probe.slot.take() is None, "the frame never reached the slot"


def released(frames: list[tuple[float, float]]) -> list[float]:
    """When `LivePacing` lets each frame go, given as (media time, when the source has it ready), read as
    the reader reads a source: the next frame asked for once the one before is let go."""
    pacing, releases = LivePacing(), [0.0]
    for media_time, ready_at in frames:
        now = max(ready_at, releases[-1])
        releases.append(max(now, pacing.due(media_time, False, now)))
    return releases[1:]


class BurstyScriptedSource(ScriptedSource):
    """A live source that says it hands over its frames in bursts, as live HLS does."""

    bursty = True


@pytest.mark.parametrize(("source_class", "paced"), [(ScriptedSource, False), (BurstyScriptedSource, True)])
def test_only_a_source_that_says_it_is_bursty_is_paced(
    monkeypatch: pytest.MonkeyPatch, source_class: type[ScriptedSource], paced: bool
) -> None:
    """A camera was paced once a network stall had bunched its frames: every later stall, jitter and
    drift of its clock then added to its latency for good (a 3 s stall left RTSP 1.1 s behind)."""
    asked: list[float] = []
    pacing_due = LivePacing.due

    def due(self: LivePacing, media_time: float, jumped: bool, now: float) -> float:
        asked.append(media_time)
        return pacing_due(self, media_time, jumped, now)

    monkeypatch.setattr(LivePacing, "due", due)
    with ReaderProbe(source_class((5, None))) as probe:
        ended = probe.wait_state(StreamState.ENDED, 5)
    assert ended.frames_read == 5
    assert bool(asked) is paced


def test_a_source_that_delivers_in_bursts_has_its_backlog_read_through_then_each_burst_paced() -> None:
    """HLS: FFmpeg starts 3 segments from the live end and hands each over whole; unpaced, a viewer saw
    one frame a segment. Here 1 s segments at 15 fps, the next one ready each second."""
    backlog = [(index / 15, 0.0) for index in range(3 * 15)]
    live = [(segment + index / 15, segment - 2 + 0.01) for segment in range(3, 8) for index in range(15)]
    releases = released(backlog + live)

    assert releases[: len(backlog)] == [0.0] * len(backlog), "stale at once: only the newest matters"
    assert np.allclose(np.diff(releases[len(backlog) :]), 1 / 15), "then each frame at its time"
    assert releases[len(backlog)] == live[0][1], "from the first frame the source made the reader wait for"


def hls_segments_late_from_the_third(delay_s: float) -> tuple[list[tuple[float, float]], int]:
    """Live HLS at 15 fps in 1 s segments as `released` takes them: a backlog of 3 segments, 2 segments on
    time, then every segment written ``delay_s`` late; with the index of the first late frame."""
    backlog = [(index / 15, 0.0) for index in range(3 * 15)]
    live = [
        (segment + index / 15, segment - 2 + 0.01 + (delay_s if segment >= 5 else 0.0))
        for segment in range(3, 9)
        for index in range(15)
    ]
    return backlog + live, len(backlog) + 2 * 15


def test_a_segment_written_more_than_the_slack_late_moves_the_pace_on_to_it() -> None:
    """Kept on the old pace, every frame after a segment 2 s late was overdue: each segment came out in one
    burst, one frame a segment on screen, as before HLS was paced."""
    frames, first_late = hls_segments_late_from_the_third(delay_s=2.0)
    releases = released(frames)

    assert releases[first_late] == frames[first_late][1], "the first late frame goes as it comes"
    assert np.allclose(np.diff(releases[first_late:]), 1 / 15), "and the ones after it at their pace from it"


def test_a_segment_written_less_than_the_slack_late_keeps_the_pace() -> None:
    """Fetching each segment costs a round trip or two: moving the pace to every such delay would make the
    latency grow with each segment. The frames caught up on go at once, the rest at their old times."""
    frames, first_late = hls_segments_late_from_the_third(delay_s=0.3)
    releases = released(frames)

    first_live_media_time, first_live_release = frames[first_late - 30][0], releases[first_late - 30]
    old_pace = [first_live_release + media_time - first_live_media_time for media_time, _ in frames[first_late:]]
    ready = [ready_at for _, ready_at in frames[first_late:]]
    assert np.allclose(releases[first_late:], np.maximum(old_pace, ready))
    assert np.allclose(releases[first_late + 14 :: 15], old_pace[14::15]), "each segment ends on the old pace"


def test_a_live_source_that_returns_has_ended() -> None:
    # A browser's WebRTC track returns when the peer leaves: ended, not a camera to call back.
    with ReaderProbe(ScriptedSource((3, None))) as probe:
        ended = probe.wait_state(StreamState.ENDED, 5)
    assert ended.frames_read == 3


class TimedSource(ScriptedSource):
    """A live source that yields one frame for each of ``media_times``, then ends."""

    def __init__(self, *media_times: float) -> None:
        super().__init__()
        self.media_times = media_times

    def open(self, stop: threading.Event) -> Iterator[Decoded]:
        for media_time in self.media_times:
            yield Decoded(self.image, media_time)


def test_a_small_step_back_in_a_sources_timestamps_holds_its_media_time() -> None:
    """A frame reordered, or a camera's clock set back a little (less than a jump): trackers must never
    see time go backwards."""
    with ReaderProbe(TimedSource(0.0, 0.02, 0.04, 0.03, 0.06), record=True) as probe:
        probe.wait_state(StreamState.ENDED, 5)
    assert [frame.media_time for frame in probe.published[:5]] == [0.0, 0.02, 0.04, 0.04, 0.06]


def test_the_transitions_table_decides_whether_a_state_may_follow_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """`TRANSITIONS` says it is the one place that decides, but a state following itself was never
    looked up in it."""
    monkeypatch.setitem(
        TRANSITIONS, StreamState.RECONNECTING, TRANSITIONS[StreamState.RECONNECTING] - {StreamState.RECONNECTING}
    )
    source = ScriptedSource((0, ConnectionError("connection refused")))
    with ReaderProbe(source, backoff=Backoff(initial_s=0.01, max_s=0.02)) as probe:
        failed = probe.wait_state(StreamState.FAILED, 5)
    assert failed.error == "RuntimeError: stream state cannot go from reconnecting to reconnecting"


class FailingWhenStopped(ScriptedSource):
    """A source whose `open` waits for ``stop``, then raises a `SourceError` (a file unreadable by then)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()

    def open(self, stop: threading.Event) -> Iterator[Decoded]:
        self.entered.set()
        stop.wait()
        yield from ()
        raise SourceError("cannot read the file")


def test_a_stopped_reader_publishes_no_state() -> None:
    """After `request_stop` the reader is silent: a stream removed must not turn up again as failed."""
    source = FailingWhenStopped()
    probe = ReaderProbe(source)
    probe.reader.start()
    assert source.entered.wait(5)
    probe.reader.stop()
    assert not probe.reader.alive
    assert probe.announced == [] and probe.status().state is StreamState.STARTING


class CutShortFile(ScriptedSource):
    """A file whose frames stop before the end its header states, as `FileSource` finds it."""

    live = False
    ended_early = "the video ended early, at 0.1 s of the 9.0 s its header states"


def test_a_source_that_ended_early_says_why_in_its_ended_state() -> None:
    """An ended stream said nothing more than that, however short of its length it stopped."""
    with ReaderProbe(CutShortFile((3, None))) as probe:
        ended = probe.wait_state(StreamState.ENDED, 5)
    assert ended.error == CutShortFile.ended_early
    assert probe.announced == [(StreamState.LIVE, None), (StreamState.ENDED, CutShortFile.ended_early)]


class RestartingEncoder(ScriptedSource):
    """A live camera whose timestamps jump by ``jump_s`` half-way, as when its encoder restarts
    behind the same URL: a new clock, from anywhere."""

    def __init__(self, jump_s: float) -> None:
        super().__init__()
        self.jump_s = jump_s

    def open(self, stop: threading.Event) -> Iterator[Decoded]:
        for index in range(10):
            if stop.wait(1 / self.fps):
                return
            yield Decoded(self.image, index / self.fps + (self.jump_s if index >= 5 else 0.0))


@pytest.mark.parametrize("jump_s", [-30.0, 60.0], ids=["back", "ahead"])
def test_a_live_source_whose_timestamps_jump_goes_on_with_the_time_that_passed(jump_s: float) -> None:
    """Taken as time that passed, a jump back froze the media time for as long as the jump, and one
    ahead told trackers a minute had passed; across it, as across a reconnect, the wall clock counts."""
    with ReaderProbe(RestartingEncoder(jump_s), record=True) as probe:
        probe.wait_state(StreamState.ENDED, 5)
    frames = probe.published[:10]

    steps = [b.media_time - a.media_time for a, b in itertools.pairwise(frames)]
    assert steps[:4] + steps[5:] == pytest.approx([1 / ScriptedSource.fps] * 8), "its own clock on either side"
    waited = frames[5].capture_time - frames[4].capture_time
    assert 0 < steps[4] <= waited + 0.01, f"the jump's step is the wall time between the frames: {steps[4]}"


def test_a_refusal_after_many_lost_connections_is_asked_again_after_the_slow_first_wait() -> None:
    """A camera down for a while that then refuses the credentials as it boots waited 5 minutes, not 10 s."""
    source = ScriptedSource(*[(0, ConnectionError("connection refused"))] * 6, (0, SlowRetryError("refused (401)")))
    probe = ReaderProbe(source, backoff=Backoff(initial_s=0.001, max_s=0.001))
    fast, slow = RecordedBackoff(probe.reader.backoff), RecordedBackoff(Backoff(initial_s=60, max_s=600, jitter=0.0))
    probe.reader.backoff, probe.reader.slow_backoff = fast, slow  # type: ignore[assignment]
    with probe:
        probe.wait_until("refused", lambda s: s.error == "refused (401)", 5)
    assert len(fast.delays) == 6 and slow.delays == [60], "the slow schedule starts at its first wait"


class BlockedSource(ScriptedSource):
    """A camera whose connection hangs inside FFmpeg: `open` ignores ``stop`` until the test lets it go."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release
        self.entered = threading.Event()

    def open(self, stop: threading.Event) -> Iterator[Decoded]:
        self.entered.set()
        self.release.wait()
        yield from ()


def test_readers_stopped_together_share_one_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """4 cameras stuck connecting made shutdown wait one timeout per camera, one after another."""
    release, timeouts = threading.Event(), []
    stop_one = StreamReader.stop

    def recorded_stop(reader: StreamReader, timeout_s: float) -> None:
        timeouts.append(timeout_s)
        stop_one(reader, timeout_s)

    monkeypatch.setattr(StreamReader, "stop", recorded_stop)
    sources = [BlockedSource(release) for _ in range(4)]
    readers = [ReaderProbe(source, f"cam{n}").reader for n, source in enumerate(sources)]
    try:
        for reader, source in zip(readers, sources, strict=True):
            reader.start()
            assert source.entered.wait(5)
        stop_readers(readers, timeout_s=0.5)
        assert all(reader.alive for reader in readers), "each was blocked throughout"
    finally:
        release.set()
    waited = sum(max(0.0, timeout) for timeout in timeouts)
    assert len(timeouts) == 4 and waited <= 0.5, "one deadline: the later waits get what is left of it"
    for reader in readers:
        stop_one(reader)
    assert not any(reader.alive for reader in readers)


def test_stop_during_backoff_is_immediate() -> None:
    source = ScriptedSource((0, ConnectionError("connection refused")))
    probe = ReaderProbe(source, backoff=Backoff(initial_s=60))
    with probe:
        probe.wait_state(StreamState.RECONNECTING, 5)
    assert not probe.reader.alive


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("rtsp://admin:s3cret@10.0.0.5:554/Streaming/101", "rtsp://admin:***@10.0.0.5:554/Streaming/101"),
        ("rtsps://u:p%40ss@cam/live#transport=tcp", "rtsps://u:***@cam/live#transport=tcp"),
        ("http://cam/video.cgi?user=admin&password=x&res=hd", "http://cam/video.cgi?user=admin&password=***&res=hd"),
        ("https://cdn/live.m3u8?token=abc", "https://cdn/live.m3u8?token=***"),
        ("rtsp://cam/live?channel=1&subtype=0#transport=udp", "rtsp://cam/live?channel=1&subtype=0#transport=udp"),
        ("/videos/yard.mp4", "/videos/yard.mp4"),
        # FFmpeg splits the user info at its last '@', so a raw '@' in a password still reaches the camera.
        ("rtsp://admin:p@ss@cam/live", "rtsp://admin:***@cam/live"),
        ("rtsp://admin:p@ss@w0rd@10.0.0.5:554/s?x=1", "rtsp://admin:***@10.0.0.5:554/s?x=1"),
        ("rtsp://admin:pa/ss@cam/live", "rtsp://admin:***@cam/live"),
        # A user name alone may be a token (rtsp://TOKEN@host): the whole user info goes.
        ("rtsp://a1b2c3d4e5f6a7b8c9d0@cam/live", "rtsp://***@cam/live"),
        ("rtsp://admin@cam/live", "rtsp://***@cam/live"),
        ("http://cam/v.cgi?user=admin&pw=x1&res=hd", "http://cam/v.cgi?user=admin&pw=***&res=hd"),
        ("http://cam/v.cgi?u=admin&p=x1", "http://cam/v.cgi?u=admin&p=***"),
        ("http://cam/v.cgi?cred=x1&sp=2", "http://cam/v.cgi?cred=***&sp=2"),
        # VStarcam and kin: a name ending as a password's does.
        (
            "http://cam/videostream.cgi?loginuse=admin&loginpas=x1&resolution=32",
            "http://cam/videostream.cgi?loginuse=admin&loginpas=***&resolution=32",
        ),
        ("http://cam/v.cgi?user=admin&psw=x1&userpw=y2", "http://cam/v.cgi?user=admin&psw=***&userpw=***"),
        ("http://cam/v.cgi?user=admin;password=x1;res=hd", "http://cam/v.cgi?user=admin;password=***;res=hd"),
        ("rtsp://cam/live;password=x1", "rtsp://cam/live;password=***"),
        ("http://cam/v.cgi?access_token=x1&api_key=y2", "http://cam/v.cgi?access_token=***&api_key=***"),
        # Dahua-style paths carry the credentials in the path itself.
        ("rtsp://cam/user=admin_password=x1_channel=1", "rtsp://cam/user=admin_password=***"),
        # A raw '#' or '?' in a password ends the host for every URL reader, yet it is a password.
        ("rtsp://admin:Secr3t#2024@cam/live", "rtsp://admin:***@cam/live"),
        ("rtsp://admin:Secr?t@cam/live?channel=1", "rtsp://admin:***@cam/live?channel=1"),
        ("rtsp://cam/live#note=a@b", "rtsp://cam/live#note=a@b"),
        ("http://cam.local?mail=a@b.com", "http://cam.local?mail=a@b.com"),  # a query straight after the host
    ],
)
def test_credentials_are_masked(uri: str, masked: str) -> None:
    assert mask_uri(uri) == masked


@pytest.mark.parametrize(
    ("uri", "secret"),
    [
        ("rtsp://admin:p@ss-w0rd@cam/live", "p@ss-w0rd"),
        ("rtsp://admin:pa/ss-w0rd@cam/live", "pa/ss-w0rd"),
        ("rtsp://a1b2c3d4e5f6a7b8c9d0@cam/live", "a1b2c3d4e5f6a7b8c9d0"),
        ("http://cam/v.cgi?pw=secret-x1", "secret-x1"),
        ("http://cam/videostream.cgi?loginuse=admin&loginpas=secret-x1", "secret-x1"),
        ("rtsp://admin:s3cret#2024@cam/live", "s3cret#2024"),
    ],
)
def test_an_error_quoting_the_uri_or_its_secret_is_masked(uri: str, secret: str) -> None:
    """FFmpeg's messages quote the URL, or parts of it, in its own way."""
    text = f"{uri}: 401 Unauthorized (authorization failed for {secret})"
    assert secret not in mask_text(text, uri)


def test_network_source_describes_itself_masked_and_asks_for_low_latency() -> None:
    source = open_source("rtsp://admin:s3cret@cam/live?channel=1#transport=udp&timeout=3")
    assert isinstance(source, NetworkSource)
    assert source.describe() == "rtsp://admin:***@cam/live?channel=1#transport=udp&timeout=3"
    assert source.stall_timeout_s == 3
    options = source.av_options()
    assert options["rtsp_transport"] == "udp"
    assert options["flags"] == "low_delay"
    assert "nobuffer" not in options["fflags"], "it drops the key frame read while probing (test_sources_rtsp.py)"
    assert open_source("rtsp://cam/live").av_options()["rtsp_transport"] == "tcp"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("ftp://admin:s3cret@cam/x.mp4", "unsupported source 'ftp://admin:***@cam/x.mp4'"),
        ("rtsp://admin:s3cret@cam/live#transprt=udp", "unknown option 'transprt' in 'rtsp://admin:***@cam/live"),
        ("rtsp://cam/live#transport=carrier-pigeon", "transport='carrier-pigeon'"),
        ("rtsp://cam/live#timeout=0", "timeout='0'"),
        ("webcam:front", "a webcam is chosen by its index"),
        ("webcam:0#width=640", "give both width and height"),
        # What a command-line argument of bytes that are not UTF-8 becomes; FFmpeg would be retried forever.
        ("rtsp://admin:s3cret@cam/\udcff", "not text"),
        # Raised ValueError from urlsplit, which stopped the whole server at start.
        ("http://[::1/live", "'http://[::1/live' is not a valid URI"),
        ("rtsp://admin:s3cret[@cam/live", "'rtsp://admin:***@cam/live' is not a valid URI"),
        (
            "rtsp://admin:s3cret#2024@cam/live",
            "'rtsp://admin:***@cam/live': a '#' or '?' in the user name or password must be percent-encoded",
        ),
        ("rtsp://admin:s3cret?2024@cam/live", "must be percent-encoded ('#' as %23, '?' as %3F)"),
        # Infinite rates made every frame a ZeroDivisionError; infinite time-outs a reader that never exits.
        ("rtsp://cam/live#fps=inf", "fps='inf' in 'rtsp://cam/live#fps=inf' must be a number above 0 and at most 1000"),
        ("rtsp://cam/live#open_timeout=inf", "open_timeout='inf'"),
        ("rtsp://cam/live#timeout=1e9", "timeout='1e9'"),
        ("rtsp://cam/live#fps=nan", "fps='nan'"),
        # Accepted, then `reconnecting` for ever with "ValueError: no container format 'nosuchformat'".
        ("http://admin:s3cret@cam/video.mjpg#format=nosuchformat", "format='nosuchformat' in 'http://admin:***@cam/"),
        ("webcam:0#fps=inf", "fps='inf'"),
        ("webcam:0#width=inf&height=480", "width='inf'"),
        # Asked the camera for a mode of 0x0.
        ("webcam:0#width=0.5&height=0.9", "a webcam's width and height are whole pixels, at least 1"),
        # A port FFmpeg can never use was `reconnecting` for ever with "invalid argument".
        ("rtsp://admin:s3cret@cam:99999/live", "'rtsp://admin:***@cam:99999/live': the port must be a number from 1"),
        ("rtsp://cam:abc/live", "the port must be a number from 1 to 65535"),
        ("http://cam:0/video.mjpg", "the port must be a number from 1 to 65535"),
        # A raw '/' in a password ends the host there: the error said only that the port was wrong.
        ("rtsp://admin:s3c/ret@cam/live", "the port must be a number from 1 to 65535 (a '/' in a password must"),
        # Listed as the other options' choices are, not as a Python list.
        (
            "rtsp://cam/live#transport=foo",
            "transport='foo' in 'rtsp://cam/live#transport=foo': use one of http, https, tcp, udp, udp_multicast",
        ),
    ],
)
def test_bad_uris_fail_with_a_reason_and_no_password(uri: str, message: str) -> None:
    with pytest.raises(SourceError) as failure:
        open_source(uri)
    assert message in str(failure.value)
    assert "s3cret" not in str(failure.value)


def test_an_unknown_scheme_is_told_every_kind_of_source_readme_lists() -> None:
    """The refusal is the list a person picks from: it left out ``rtmps://``, which README's table of
    sources (and the API's refusal) gives."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme[readme.index("| URI | what it is |") :].split("\n\n", 1)[0]
    listed = {f"{scheme}://" for scheme in re.findall(r"\b([a-z]+)://", table)}
    listed |= {f"{scheme}:" for scheme in re.findall(r"`(scene|webcam):", table)}
    assert {"rtsps://", "rtmps://", "https://", "file://", "scene:", "webcam:"} <= listed, "the table was read"
    with pytest.raises(SourceError) as refused:
        open_source("rtps://cam/live")
    assert [kind for kind in sorted(listed) if kind not in str(refused.value)] == []


def test_webcam_mode_requests_become_device_options() -> None:
    source = open_source("webcam:0#width=1280&height=720&fps=30&format=mjpeg")
    assert isinstance(source, WebcamSource)
    assert source.fps == 30
    assert source.av_options() == {"video_size": "1280x720", "framerate": "30", "input_format": "mjpeg"}


def test_missing_webcam_is_reconnecting_so_plugging_it_in_brings_it_back() -> None:
    with ReaderProbe("/dev/video97") as probe:
        status = probe.wait_state(StreamState.RECONNECTING, 5)
    assert status.error == "no camera at /dev/video97 (unplugged?)"
