"""The reader thread: one per stream, from a `Source` into that stream's `LatestFrame` slot.

The reader owns everything a source kind should not have to get right: pacing files and live
sources that deliver in bursts, keeping only the newest frame, the stream's state, and reconnecting.
A source's ``open`` ends in one of three ways, and each means one thing here:

- it returns: the media is over (``ENDED``, or played again for a looping file);
- it raises `SourceError`: retrying cannot help (``FAILED``);
- it raises anything else: the connection was lost or never made (``RECONNECTING``, then a new
  attempt after an exponential backoff with jitter, reset once a connection has stayed healthy;
  a camera whose address (a source's optional ``address``, host and port) accepted no connection is
  asked again as soon as it accepts one, `wait_for_return`); a `SlowRetryError` (credentials refused,
  no video described) is retried on a slower backoff.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from server.frames import Frame
from server.log_throttle import RepeatedFailureLog
from server.sources.backoff import Backoff, wait_for_return
from server.sources.base import (
    LOWER_CAMERA_RESOLUTION,
    MAX_FRAME_SIDE_PX,
    SCALE_VIDEO_DOWN,
    LatestFrame,
    SlowRetryError,
    Source,
    SourceError,
    StreamState,
    check_frame_size,
    reading_stream,
)
from server.sources.pacing import LivePacing, Pacing

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 2.0
#: A camera that refuses us, or describes no video, is asked again after 10 s, then up to every 5 minutes.
SLOW_RETRY_INITIAL_S = 10.0
SLOW_RETRY_MAX_S = 300.0
#: The measured input rate counts the frames of this last stretch of time.
FPS_WINDOW_S = 3.0
#: A step between two frames' timestamps beyond these is a discontinuity (recordings joined into one
#: file, an encoder that restarted behind the same URL), not time that passed: back by more than this
#: many frame intervals (more than a reordered frame could be), or ahead by more than
#: `JUMP_AHEAD_S` and this many intervals (a recording that paused while nothing moved is shorter).
JUMP_FRAMES = 4
JUMP_AHEAD_S = 5.0
#: A live source whose connections each brought frames, then ended the same way, this many times in a
#: row ends after every pass (a video file served as a feed): told once, then its ends logged at DEBUG.
REPEATED_ENDS_TOLD = 3
#: A connection that brought frames for longer than this before it ended breaks that pattern: a camera
#: that drops now and then is told each time.
REPEATED_ENDS_MAX_PASS_S = 120.0
#: How a connection that stalled (no frame within its time-out, `server.sources.decoding`) begins its error.
STALLED = "stalled:"
#: What the told pattern says to do, by whether its ends were stalls (a camera slower than its stall
#: time-out, which a file is not) or other ends (a file served as a feed, which ends after every pass).
SLOW_CAMERA_ADVICE = (
    "A camera that stalls after each frame it sends sends them less often than the stall time-out allows (a "
    "time-lapse camera, one on a slow mobile link): if it is one, add #timeout=N to its URI, N a few times the "
    "seconds between its frames"
)
VIDEO_FILE_ADVICE = (
    "A URL that ends after every pass is a video file rather than a camera's feed: if it is one, download it and "
    "give its path (played at its own rate, again and again with loop)"
)

StateListener = Callable[[str, StreamState, str | None], None]


@dataclass
class RepeatedEnds:
    """Connections in a row that each brought frames for a short while, then ended with the same error. A URL that ends
    after every pass (a video file whose format tells no duration, a .ts, served as a camera's feed; a camera
    that sends frames less often than its stall time-out) is reconnected each time, and logging each as news
    wrote a WARNING some 40 times a minute for good.
    The `REPEATED_ENDS_TOLD`-th is told as what it is, once; while it goes on, its reconnects and
    returns to live are logged at DEBUG (`quiet`)."""

    error: str | None = None
    count: int = 0

    def ended(self, error: str | None, brought_frames: bool) -> bool:
        """Count an attempt that failed with ``error``; whether it is the one to tell the pattern with."""
        if not brought_frames:
            self.error, self.count = None, 0
            return False
        self.count = self.count + 1 if error == self.error else 1
        self.error = error
        return self.count == REPEATED_ENDS_TOLD

    @property
    def quiet(self) -> bool:
        return self.count >= REPEATED_ENDS_TOLD


#: Which state may follow which: the one place that says so, a state following itself included. That
#: carries news only while reconnecting (a new error or a new next attempt); a change that changes
#: nothing is no transition, and is not made.
TRANSITIONS: dict[StreamState, frozenset[StreamState]] = {
    StreamState.STARTING: frozenset(
        {StreamState.LIVE, StreamState.RECONNECTING, StreamState.ENDED, StreamState.FAILED}
    ),
    StreamState.LIVE: frozenset({StreamState.RECONNECTING, StreamState.ENDED, StreamState.FAILED}),
    StreamState.RECONNECTING: frozenset(
        {StreamState.LIVE, StreamState.RECONNECTING, StreamState.ENDED, StreamState.FAILED}
    ),
    StreamState.ENDED: frozenset(),
    StreamState.FAILED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class ReaderStatus:
    """A consistent snapshot of one reader, for the API and the viewer.

    Times are wall-clock seconds (``time.time()``) so they can be shown and compared across processes.
    """

    state: StreamState
    error: str | None
    next_attempt_at: float | None  # only while reconnecting
    frames_read: int
    dropped: int  # frames replaced in the slot before inference took them
    input_fps: float  # frames per second over the last `FPS_WINDOW_S` (`_input_rate`); 0 unless live
    reconnects: int  # connections lost or refused so far, stalls included
    last_frame_at: float | None

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "error": self.error,
            "next_attempt_at": None if self.next_attempt_at is None else round(self.next_attempt_at, 3),
            "frames_read": self.frames_read,
            "frames_dropped": self.dropped,
            "input_fps": round(self.input_fps, 2),
            "reconnects": self.reconnects,
            "last_frame_at": None if self.last_frame_at is None else round(self.last_frame_at, 3),
        }


class StreamReader:
    """Runs one source in its own thread so decoding never touches the event loop.

    Files are paced to their native rate against the wall clock (a file stands in for a camera), or
    read as fast as the consumer takes frames for batch sources; live sources are read as fast as
    they deliver, those that hand over bursts (live HLS) at their timestamps' rate (`LivePacing`). ``media_time``
    in the frames it produces never goes backwards, across loops, reconnects and jumps in the
    source's own timestamps too, so a tracker always sees the true time between frames.

    State changes go to ``on_state`` from the reader thread: the listener must hand them over to the
    loop itself. After `request_stop` the reader publishes neither frames nor states.
    """

    def __init__(
        self,
        stream_id: str,
        source: Source,
        slot: LatestFrame,
        on_state: StateListener,
        loop_file: bool = False,
        backoff: Backoff | None = None,
        max_frame_side: int = MAX_FRAME_SIDE_PX,
        slow_backoff: Backoff | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.max_frame_side = max_frame_side
        self.source = source
        self.slot = slot
        self.loop_file = loop_file
        self.backoff = backoff or Backoff()
        self.slow_backoff = slow_backoff or Backoff(initial_s=SLOW_RETRY_INITIAL_S, max_s=SLOW_RETRY_MAX_S)
        self._on_state = on_state
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader-{stream_id}", daemon=True)
        self._lock = threading.Lock()
        self._state = StreamState.STARTING
        self._error: str | None = None
        self._next_attempt_at: float | None = None
        self._frames_read = 0
        self._reconnects = 0
        self._arrivals: deque[_Arrival] = deque(maxlen=1024)  # recent frames, oldest first
        self._last_frame_at: float | None = None
        self._last_media_time: float | None = None
        self._last_frame_mono = 0.0
        self._restarts = 0  # times a file started over from its beginning (see `Frame.restarts`)
        self._position: _Position | None = None  # the source's media time of the last frame, and its offset
        self._last_frame: Frame | None = None
        self._rng = random.Random()
        self._announced: tuple[StreamState, str | None] | None = None
        self._failures_logged = RepeatedFailureLog()
        self._attempt_live_since: float | None = None  # when this attempt's first frame came
        self._attempt_media_from = 0.0  # the media time of this attempt's first frame published
        self._repeated_ends = RepeatedEnds()

    # -- for the rest of the server ----------------------------------------------------------------

    @property
    def state(self) -> StreamState:
        return self._state

    @property
    def error(self) -> str | None:
        return self._error

    @property
    def frames_read(self) -> int:
        return self._frames_read

    def status(self) -> ReaderStatus:
        now = time.monotonic()
        with self._lock:
            recent = [arrival for arrival in self._arrivals if now - arrival.at <= FPS_WINDOW_S]
            live = self._state is StreamState.LIVE
            return ReaderStatus(
                state=self._state,
                error=self._error,
                next_attempt_at=self._next_attempt_at,
                frames_read=self._frames_read,
                dropped=self.slot.dropped,
                input_fps=_input_rate(recent, self.source.live) if live else 0.0,
                reconnects=self._reconnects,
                last_frame_at=self._last_frame_at,
            )

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the reader to stop without waiting, so many readers can wind down together."""
        self._stop.set()

    def stop(self, timeout_s: float = JOIN_TIMEOUT_S) -> None:
        """Ask the reader to stop and wait for it, at most ``timeout_s`` (to stop many, `stop_readers`).

        A reader inside one blocking FFmpeg call cannot be interrupted sooner than that call's own
        time-out (FFmpeg offers no safe way to abort a read from another thread: closing the
        container under it crashes). Such a reader is already silent, publishing nothing more, and
        its thread ends by itself when the call times out. segcast's own look-ups at a camera's
        server (`server.sources.http_get`) end as soon as they see the stop, within a tenth of a second.
        """
        self.request_stop()
        self._thread.join(max(0.0, timeout_s))
        if self._thread.is_alive():
            log.info("[%s] reader is inside a blocked network call; it exits at that call's time-out", self.stream_id)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- in the reader thread ----------------------------------------------------------------------

    def _set_state(self, state: StreamState, error: str | None = None, next_attempt_at: float | None = None) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            if state is self._state and error == self._error and next_attempt_at == self._next_attempt_at:
                return
            if state not in TRANSITIONS[self._state]:  # a state following itself too: only where the table says
                raise RuntimeError(f"stream state cannot go from {self._state.value} to {state.value}")
            self._state, self._error, self._next_attempt_at = state, error, next_attempt_at
        if state is StreamState.RECONNECTING and next_attempt_at is not None:
            wait_s = max(0.0, next_attempt_at - time.time())
            level, repeats = self._failures_logged.failed(error, time.monotonic())
            if self._repeated_ends.quiet:
                level = logging.DEBUG
            log.log(level, "[%s] reconnecting in %.1f s: %s%s", self.stream_id, wait_s, error, repeats)
        elif state is StreamState.FAILED:  # retrying cannot fix it (a missing file): someone has to
            log.warning("[%s] failed: %s", self.stream_id, error)
        else:
            self._failures_logged = RepeatedFailureLog()  # live again (or done): the next failure is news
            level = logging.DEBUG if state is StreamState.LIVE and self._repeated_ends.quiet else logging.INFO
            log.log(level, "[%s] %s%s", self.stream_id, state.value, f": {error}" if error else "")
        if (state, error) != self._announced:  # a dead camera is one event for viewers, not one per retry
            self._announced = (state, error)
            self._on_state(self.stream_id, state, error)

    def _run(self) -> None:
        # Failures in a row, counted per schedule: a camera that was down for minutes, then refuses
        # the credentials while it boots, is asked again after the slow schedule's first wait.
        failures = {False: 0, True: 0}  # by whether the failure was one for the slow schedule
        reading_stream.set(self.stream_id)  # this thread's own context: no other reader sees it
        try:
            while not self._stop.is_set():
                attempt_started = time.monotonic()
                self._attempt_live_since = None
                try:
                    over_at = self._play_once()
                except SourceError:
                    raise
                except Exception as exc:
                    error = _reason(exc)
                    slow = isinstance(exc, SlowRetryError)
                    backoff = self.slow_backoff if slow else self.backoff
                else:
                    if self._stop.is_set():
                        return
                    if self.loop_file and not self.source.live and self._attempt_live_since is not None:
                        # Its last frame is shown for its time, as every other frame: a file of one
                        # frame plays at its rate, and a loop loses no time that media times count.
                        if over_at is not None and self._stop.wait(max(0.0, over_at - time.monotonic())):
                            return
                        continue
                    if self._attempt_live_since is None and not self.source.live:
                        raise SourceError(f"{self.source.describe()} has no frames to play")
                    # Its last frame is shown for its time, and taken by then, before the end is said.
                    if over_at is not None and self._stop.wait(max(0.0, over_at - time.monotonic())):
                        return
                    self._publish_end()
                    self._set_state(StreamState.ENDED, getattr(self.source, "ended_early", None))
                    return
                if self._stop.is_set():
                    return
                delay = self._next_delay(failures, slow, backoff)
                with self._lock:
                    self._reconnects += 1
                if self._repeated_ends.ended(error, self._ended_after_a_short_pass()):
                    self._tell_repeated_ends(error)
                log.debug("[%s] attempt lasted %.1f s", self.stream_id, time.monotonic() - attempt_started)
                self._set_state(StreamState.RECONNECTING, error, time.time() + delay)
                came_back = wait_for_return(
                    getattr(self.source, "address", None), delay, self._stop, getattr(self.source, "may_probe", None)
                )
                if self._stop.is_set():
                    return
                if came_back:
                    log.info("[%s] the camera accepts connections again: reconnecting now", self.stream_id)
        except SourceError as exc:
            self._set_state(StreamState.FAILED, str(exc))
        except Exception as exc:  # a reader must report, never die silently
            log.exception("[%s] reader crashed", self.stream_id)
            self._set_state(StreamState.FAILED, f"{type(exc).__name__}: {exc}")

    def _ended_after_a_short_pass(self) -> bool:
        """Whether this attempt of a live source brought frames for less than `REPEATED_ENDS_MAX_PASS_S`:
        a camera that drops its connection now and then after a longer while is a fault worth a WARNING
        each time, not a file played as a feed."""
        live_since = self._attempt_live_since
        return self.source.live and live_since is not None and time.monotonic() - live_since < REPEATED_ENDS_MAX_PASS_S

    def _tell_repeated_ends(self, error: str) -> None:
        """Say once that the source ends after every pass (`RepeatedEnds`), with how long its last one was and
        what it may be: a camera too slow for its stall time-out where the ends were stalls, else a video file."""
        played_s = (self._last_media_time or 0.0) - self._attempt_media_from + self._frame_interval()
        log.warning(
            "[%s] %s: its last %d connections each brought frames, then ended the same way (%s), the last after "
            "%.1f s of video; it is reconnected each time as before, and these ends are logged at DEBUG from now "
            "on. %s",
            self.stream_id,
            self.source.describe(),
            REPEATED_ENDS_TOLD,
            error,
            played_s,
            SLOW_CAMERA_ADVICE if error.startswith(STALLED) else VIDEO_FILE_ADVICE,
        )

    def _next_delay(self, failures: dict[bool, int], slow: bool, backoff: Backoff) -> float:
        """The wait before the next attempt, after this one failed; ``failures`` (on the ``slow``
        schedule or not) counts it where it counts as a failure.

        A connection that stayed up `Backoff.healthy_s` starts the count over. One whose frames flowed
        for less, but for at least the first wait (`Backoff.initial_s`), did not fail to open: it adds
        nothing to the count and brings it down to where the wait is no longer than the time its frames
        flowed, so such a camera is down about half the time at most. Counted as failures, an MJPEG
        camera whose connections each delivered a second of frames waited 30 s after each, down over
        90% of the time. A connection whose frames flowed for less than the first wait (one frame, then
        the camera hung up or stalled) still counts as a failure: the wait doubles as for a camera that
        is not up, so a camera that gives a frame and dies is not asked again and again, its server
        hammered with connections that each cost it a stream's start.
        """
        live_since = self._attempt_live_since
        within = None
        if live_since is not None:
            if time.monotonic() - live_since >= backoff.healthy_s:
                failures[False] = failures[True] = 0
            else:
                within = backoff.failures_within(self._last_frame_mono - live_since)
        if within is not None:
            failures[slow] = min(failures[slow], within)
            return backoff.delay(failures[slow], self._rng)
        delay = backoff.delay(failures[slow], self._rng)
        failures[slow] += 1
        return delay

    def _play_once(self) -> float | None:
        """One attempt: open the source and publish its frames until it ends, fails or we stop.

        Returns when a paced file's media is over (monotonic): its last frame's time plus one frame;
        None for sources that are not paced, or when nothing was played.
        """
        batch = bool(getattr(self.source, "batch", False))
        pacing, live_pacing = Pacing(), LivePacing()
        offset: float | None = None
        previous: float | None = None
        for decoded in self.source.open(self._stop):
            if self._stop.is_set():
                return None
            height, width = decoded.image.shape[:2]
            fix = LOWER_CAMERA_RESOLUTION if self.source.live else SCALE_VIDEO_DOWN
            check_frame_size(width, height, self.max_frame_side, fix)  # every kind of source, WebRTC's too
            if offset is None and (position := self._resumed_from(decoded.media_time)) is not None:
                offset = position.offset  # the same media clock: nothing started over
                if decoded.media_time == position.media_time:  # the last frame again: the video is over
                    self._attempt_live_since = time.monotonic()
                    continue
            jumped = previous is not None and self._is_jump(decoded.media_time - previous)
            previous = decoded.media_time
            if not self.source.live and not batch:
                due = pacing.due(decoded.media_time, jumped, self._frame_interval())
            elif self.source.live and getattr(self.source, "bursty", False):
                due = live_pacing.due(decoded.media_time, jumped, time.monotonic())
            else:
                due = 0.0
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return None
            if batch and not self.slot.wait_empty(self._stop):
                return None
            if offset is None and self._last_media_time is not None and not self.source.live:
                self._restarts += 1  # a file plays from its start again: a new scene for trackers
            if offset is None or jumped:
                offset = self._media_offset(decoded.media_time)
            self._position = _Position(decoded.media_time, offset)
            media_time = decoded.media_time + offset
            if self._last_media_time is not None and media_time < self._last_media_time:
                media_time = self._last_media_time  # a frame reordered, or a clock stepped back a little: hold
            self._publish(media_time, decoded.image)
        return None if pacing.last_due is None else pacing.last_due + self._frame_interval()

    def _resumed_from(self, first_media: float) -> _Position | None:
        """Where the last attempt stopped, if this one goes on from there rather than starting over.

        A source that ``resumes`` (a finite network video whose connection dropped) starts its next
        attempt at the last frame it yielded, or after it; played again from its start (a loop),
        it starts earlier.
        """
        position = self._position
        if not getattr(self.source, "resumes", False) or position is None or first_media < position.media_time:
            return None
        return position

    def _is_jump(self, step_s: float) -> bool:
        """Whether ``step_s`` from one frame's timestamp to the next is a discontinuity (`JUMP_FRAMES`).

        Taken as time that passed, a jump back froze the media time (and played a file's frames after
        it at once); a jump ahead froze the picture for as long as the jump.
        """
        interval = self._frame_interval()
        return step_s < -JUMP_FRAMES * interval or step_s > max(JUMP_AHEAD_S, JUMP_FRAMES * interval)

    def _frame_interval(self) -> float:
        """One frame's time at the source's nominal rate: what a file's last frame lasts."""
        return 1.0 / self.source.fps if self.source.fps > 0 else 0.0

    def _media_offset(self, first_media: float) -> float:
        """Shift for media times from ``first_media`` on so they continue where the last frame stopped.

        A new connection, a looped file or a timestamp jump starts the media clock again; the gap we
        add is the wall time that really passed (live) or one frame (a file).
        """
        if self._last_media_time is None:
            return -first_media
        gap = time.monotonic() - self._last_frame_mono if self.source.live else self._frame_interval()
        return self._last_media_time + gap - first_media

    def _publish_end(self) -> None:
        """Tell the pipeline the media is over with its last image again (see `Frame.ended`)."""
        with self._lock:
            last = self._last_frame
            if last is None or self._stop.is_set():
                return
            ended = Frame(
                self.stream_id, last.seq + 1, time.time(), last.media_time, last.image, last.restarts + 1, ended=True
            )
        if getattr(self.source, "batch", False) and not self.slot.wait_empty(self._stop):
            return  # a batch source's consumer takes every frame: its last one first
        self.slot.put(ended)

    def _publish(self, media_time: float, image: np.ndarray) -> None:
        now = time.monotonic()
        with self._lock:
            if self._stop.is_set():
                return
            seq = self._frames_read
            self._frames_read += 1
            self._arrivals.append(_Arrival(now, media_time))
            self._last_frame_at = time.time()
            frame = Frame(self.stream_id, seq, self._last_frame_at, media_time, image, self._restarts)
            self._last_frame = frame
        self._last_media_time, self._last_frame_mono = media_time, now
        self.slot.put(frame)
        if self._attempt_live_since is None:
            self._attempt_live_since, self._attempt_media_from = now, media_time
        if self._state is not StreamState.LIVE:
            self._set_state(StreamState.LIVE)


@dataclass(frozen=True, slots=True)
class _Arrival:
    """A frame published: when (monotonic) and its media time, for the input rate (`_input_rate`)."""

    at: float
    media_time: float


def _input_rate(frames: Sequence[_Arrival], live: bool) -> float:
    """Frames per second over ``frames`` (oldest first): their count over the time they cover, which for a
    ``live`` source is the longer of the time they arrived over and the time between the first's and the
    last's media time (the camera's clock). 0 for fewer than two.

    A new connection hands over at once the frames FFmpeg buffered while it read the stream's header (a
    second or two of them): counted over their arrival, a 15 fps camera read 54 fps for a second after
    each connect, then 24. Their media times cover the time they were sent in. Taking the longer of the
    two, the rate is never above what either clock counts: frames stamped with their arrival (MJPEG) are
    counted as before, and a stream whose made-up timestamps run fast is not believed. A file's frames
    are counted over their arrival alone: read as fast as they are taken (``#rate=max``), their media
    time is not the rate they come at. The backlog still counts in ``frames_dropped``: its frames are
    stale, replaced by the newest as live video should be.
    """
    if len(frames) < 2:
        return 0.0
    first, last = frames[0], frames[-1]
    covered = last.at - first.at
    if live:
        covered = max(covered, last.media_time - first.media_time)
    return (len(frames) - 1) / covered if covered > 0 else 0.0


@dataclass(frozen=True, slots=True)
class _Position:
    """How far a source's media got: its own time of the last frame published, and the shift added to it."""

    media_time: float
    offset: float


def stop_readers(readers: Sequence[StreamReader], timeout_s: float = JOIN_TIMEOUT_S) -> None:
    """Stop all ``readers`` within one ``timeout_s`` in all, however many are blocked.

    Each is asked first, so all wind down together; then each is waited for until one shared
    deadline, so readers stuck in network calls cost one timeout, not one each.
    """
    for reader in readers:
        reader.request_stop()
    deadline = time.monotonic() + timeout_s
    for reader in readers:
        reader.stop(deadline - time.monotonic())


def _reason(exc: BaseException) -> str:
    """A lost connection's reason for people. Sources raise `OSError`s with readable, masked messages."""
    text = str(exc)
    if isinstance(exc, OSError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
