"""Whether inference keeps pace with the cameras: per stream, for the node's log, and how busy its thread is.

A node short of inference never queues: each stream's newest frame replaces the one inference had not
taken yet (counted in ``frames_dropped``), and the inference thread takes at most one frame per stream
a cycle (`InferenceWorker._take_batch`): a stream with fewer frames than the node has cycles a second
has them all processed, and the streams with more share the rest, each processed at the same rate
whatever its input rate above it. Latency stays bounded, and nothing looks wrong: every stream stays
``live``. What says so is here: `StreamPace` judges one stream from its counters (the share of its
input frames that reached the model), `LastVerdicts` keeps each stream's last verdict through the
gaps in which it is not judged, `OverloadLog` tells the log once when the node starts falling behind
and once when it keeps up again, `NodePace` holds those two for a node, and
`BusyShare` measures how much of its time the inference thread spends on batches.

A stream that asks for fewer frames than it gives (``process_fps``, `server.inference.frame_cap`) is
judged against its cap, not its input, and only where its input gave frames: a stretch with fewer than
its cap (a damaged stretch of a file) wants only those.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise

from server.log_throttle import ThrottledCount

log = logging.getLogger(__name__)

#: A stream's share is of its input frames over this last stretch: long enough that a burst (a slow
#: keyframe, viewers joining at once) is no verdict, short enough to tell within seconds of a camera added.
PACE_WINDOW_S = 10.0
#: How often the server judges every stream (`StreamManager.check_pace`).
PACE_CHECK_INTERVAL_S = 1.0
#: Behind once fewer than this share of a stream's input frames reach the model over the window...
BEHIND_BELOW_SHARE = 0.5
#: ...and keeping up again only from this share: between the two the verdict stays as it was, so a
#: stream near the line does not flicker between the two.
KEEPS_UP_FROM_SHARE = 0.75
#: A stream with no new input frame for this long is paused (a stalled camera not yet given up on):
#: not judged, and judged afresh, after a whole window, once frames come again...
PAUSED_AFTER_S = 2.0
#: ...or for this many of its own frame intervals, if that is longer: a camera of one frame every 5 s
#: is judged like any other, not paused between its frames.
PAUSED_AFTER_INTERVALS = 3
#: A stream's last verdict of behind holds in ``segcast_stream_behind`` for this long while it is not
#: judged (`LastVerdicts.held_behind`): longer than a restart takes to be judged again (opening its
#: source and a whole window), so a restart, a stall or a reconnect does not reset an alert's ``for:``;
#: short enough that a stream that ended or failed reads 0 within a minute.
BEHIND_HELD_S = 60.0
#: The inference thread's busy share is of this last stretch of time.
BUSY_WINDOW_S = 10.0
#: The node's falling behind is logged at WARNING at most this often; episodes in between are counted
#: into the next line, so a node on the edge cannot flood the log.
OVERLOAD_LOG_INTERVAL_S = 600.0
#: An episode that lasts this long is told then, inside the quiet window too (the first such in a window):
#: the window is for a node on the edge that flaps, not for one that fell behind again for good after saying
#: it kept up.
LASTING_EPISODE_S = 60.0
#: What to do about a node whose inference cannot keep up, as the log says it (web/grid.js's behindAdvice
#: says the same in the viewer).
OVERLOAD_ADVICE = (
    'give the cameras that need fewer frames a process_fps, or a lower one (PATCH /api/streams/<id> {"process_fps": '
    "5}: the inference they leave goes to the others; it loses less than a smaller imgsz), on a CPU run a model "
    "exported for it rather than a .pt (segcast export --format openvino), lower the streams' imgsz (PATCH "
    '/api/streams/<id> {"imgsz": 160}: small and distant objects are missed first), run fewer cameras on this node, '
    'or infer on a GPU or on another node (README, "A node with more cameras than it can infer")'
)


@dataclass(frozen=True, slots=True)
class PaceSample:
    """One stream's counters at one moment (monotonic seconds), as `StreamPace.update` takes them.

    ``judged``: whether the stream can be behind at all now: live, with inference available, and not
    a batch file (``#rate=max`` hands over every frame once the last was taken, so it never skips one).
    ``frames_thinned`` are those its ``process_fps`` left out (`FrameCap`), which it never wanted.
    """

    at: float
    judged: bool
    frames_read: int
    frames_dropped: int
    frames_processed: int
    frames_thinned: int = 0
    process_fps: float | None = None


@dataclass(frozen=True, slots=True)
class PaceVerdict:
    """Whether a stream's inference keeps up with its input, over the last `PACE_WINDOW_S`.

    ``processed_share`` is the share of its input frames that reached the model (the rest were
    replaced by a newer frame first), of those its ``process_fps`` wants for a capped stream (its cap's
    worth of each stretch between samples, or what its input gave in it): a stream processed at its cap
    keeps up. None until a whole window was seen live, while its input is paused or it is not judged
    (`PaceSample.judged`), and then it is never ``behind``. ``input_fps`` and ``processed_fps`` are the
    window's, for the log, as is the cap judged by.
    """

    behind: bool = False
    processed_share: float | None = None
    input_fps: float = 0.0
    processed_fps: float = 0.0
    process_fps: float | None = None

    @property
    def wanted_fps(self) -> float:
        """The rate the stream asks to be processed at: its input's, or its cap if lower."""
        return self.input_fps if self.process_fps is None else min(self.input_fps, self.process_fps)

    @property
    def judged(self) -> bool:
        """Whether the verdict says anything of the stream's pace: false in its first window, while it is
        paused and while it is not judged (`PaceSample.judged`)."""
        return self.processed_share is not None

    def to_json(self) -> dict[str, object]:
        share = None if self.processed_share is None else round(self.processed_share, 3)
        return {"behind": self.behind, "processed_share": share}


class StreamPace:
    """Judges one stream, from its counters sampled about once a second (`update`).

    A new one per reader (a restart starts afresh; `LastVerdicts` keeps the old one's last word meanwhile):
    the first `PACE_WINDOW_S` of frames are never behind, so a camera that just came up, or a node that
    just started, is judged on what it does once it runs; so is a stream whose ``process_fps`` changed,
    as it runs. Not thread-safe: one caller at a time (`StreamManager.check_pace`).
    """

    def __init__(self, window_s: float = PACE_WINDOW_S) -> None:
        self._window_s = window_s
        self._samples: deque[PaceSample] = deque()  # of the window, judged ones in a row
        self._last_read: int | None = None
        self._last_input_at = 0.0  # when ``frames_read`` last changed
        self._input_interval_s = 0.0  # between its input frames, as of that change; 0 until two were seen
        self._process_fps: float | None = None  # the cap of the samples of the window
        self.verdict = PaceVerdict()

    def update(self, sample: PaceSample) -> PaceVerdict:
        """Judge the stream with ``sample`` added; the verdict is kept in `verdict` too."""
        if sample.frames_read != self._last_read:
            if self._last_read is not None and sample.frames_read > self._last_read:
                frames = sample.frames_read - self._last_read
                self._input_interval_s = (sample.at - self._last_input_at) / frames
            self._last_read, self._last_input_at = sample.frames_read, sample.at
        if sample.process_fps != self._process_fps:
            self._samples.clear()  # judged by the new cap alone
            self._process_fps = sample.process_fps
        paused_after = max(PAUSED_AFTER_S, PAUSED_AFTER_INTERVALS * self._input_interval_s)
        if not sample.judged or sample.at - self._last_input_at >= paused_after:
            self._samples.clear()  # judged afresh, after a whole window, once it can be again
            self.verdict = PaceVerdict()
            return self.verdict
        self._samples.append(sample)
        start = sample.at - self._window_s
        while len(self._samples) > 1 and self._samples[1].at <= start:
            self._samples.popleft()
        first = self._samples[0]
        if first.at > start:  # not a whole window yet
            self.verdict = PaceVerdict()
            return self.verdict
        span = sample.at - first.at
        read = sample.frames_read - first.frames_read
        thinned = sample.frames_thinned - first.frames_thinned
        taken = read - (sample.frames_dropped - first.frames_dropped) - thinned
        wanted = read if sample.process_fps is None else _capped_wanted(self._samples, sample.process_fps)
        share = min(1.0, max(0.0, taken / wanted)) if wanted > 0 else 1.0
        behind = share < KEEPS_UP_FROM_SHARE if self.verdict.behind else share < BEHIND_BELOW_SHARE
        processed = sample.frames_processed - first.frames_processed
        self.verdict = PaceVerdict(behind, share, read / span, max(0, processed) / span, sample.process_fps)
        return self.verdict


class LastVerdicts:
    """Each stream's last verdict from a window it was judged on, by stream id, through the gaps in which
    it is not judged (`PaceVerdict.judged`: its first window, paused, not live, inference unavailable).

    Such a gap says nothing of whether inference keeps up, so a stream behind stays behind for the
    node's log (`OverloadLog`) until it is seen keeping up, or is removed (`forget`): a restart keeps
    its id, and so its last verdict, while its new `StreamPace` judges it afresh. A stream never judged
    behind is in no episode. For ``segcast_stream_behind``, a verdict of behind holds `BEHIND_HELD_S`
    after the stream was last judged (`held_behind`): a restart is bridged, but a stream that ended or
    failed is not counted behind for good. Not thread-safe: one caller at a time.
    """

    def __init__(self, held_s: float = BEHIND_HELD_S) -> None:
        self._held_s = held_s
        self._behind: dict[str, tuple[PaceVerdict, float]] = {}  # id -> last verdict (behind), when judged

    def update(self, verdicts: Mapping[str, PaceVerdict], now: float) -> list[tuple[str, PaceVerdict]]:
        """Take each stream's verdict at monotonic time ``now``; the streams whose last verdict is behind,
        with that verdict (a stream not in ``verdicts`` keeps its last one)."""
        for stream_id, verdict in verdicts.items():
            if verdict.behind:
                self._behind[stream_id] = (verdict, now)
            elif verdict.judged:
                self._behind.pop(stream_id, None)
        return [(stream_id, verdict) for stream_id, (verdict, _) in self._behind.items()]

    def held_behind(self, now: float) -> frozenset[str]:
        """The streams judged behind at most `BEHIND_HELD_S` before ``now`` and not seen keeping up since."""
        return frozenset(i for i, (_, at) in self._behind.items() if now - at <= self._held_s)

    def forget(self, stream_id: str) -> None:
        """The stream was removed: it ends its part in an episode (an id added again is a new stream)."""
        self._behind.pop(stream_id, None)


class OverloadLog:
    """Tells the log when the node starts falling behind its cameras, and when it keeps up again.

    One WARNING as the first stream falls behind (naming every stream behind, its processed and
    input rates, and what to do), one INFO once none is. The caller says which streams are behind by
    their last verdicts (`LastVerdicts`), so a stream that stops being judged (a restart, a stall, a
    file that ended, inference unavailable) neither ends an episode nor starts one. Episodes that start within
    `OVERLOAD_LOG_INTERVAL_S` of the last WARNING are counted, not told: into the next WARNING, or,
    if they are over by the end of that interval, into a line of their own then, which says how long the
    longest lasted. But the first in an interval that lasts `LASTING_EPISODE_S` is told then (the log's
    last word should not be "keeps up" for minutes while it does not): at most one more WARNING per
    interval, so a node on the edge of its capacity writes a few lines an hour, and no episode is in no line.
    Not thread-safe: one caller at a time (`StreamManager.check_pace`).
    """

    def __init__(self, interval_s: float = OVERLOAD_LOG_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._episodes = ThrottledCount(interval_s)
        self._behind = False  # as of the last update
        self._told_behind = False  # the log's last word on it is that the node is behind
        self._began = 0.0  # when the node last fell behind (monotonic)
        self._lasting_told_until = -float("inf")  # no lasting episode is told out of turn before this
        self._longest_untold_s = 0.0  # of the episodes counted and not told since the last line

    def update(self, behind: Sequence[tuple[str, PaceVerdict]], busy_share: float, now: float) -> None:
        """The streams behind by their last verdicts (`LastVerdicts.update`; none: the node keeps up), the
        inference thread's busy share, and the monotonic time."""
        started = bool(behind) and not self._behind
        ended = self._behind and not behind
        self._behind = bool(behind)
        if started:
            self._began = now
        if ended and not self._told_behind:
            self._longest_untold_s = max(self._longest_untold_s, now - self._began)
        count = self._episodes.add(1, now) if started else self._episodes.due(now)
        lasting = behind and not self._told_behind and now - self._began >= LASTING_EPISODE_S
        if not count and lasting and now >= self._lasting_told_until:
            count = self._episodes.take()  # this one and those counted before it, told now
            self._episodes.told(now)
            self._lasting_told_until = now + self._interval_s
        if count:
            longest, self._longest_untold_s = self._longest_untold_s, 0.0
        if count and behind:
            rates = ", ".join(f"[{i}] {v.processed_fps:.1f} of {v.wanted_fps:.1f} fps" for i, v in behind)
            again = f"; it fell behind {_times(count - 1)} more since this was last logged" if count > 1 else ""
            log.warning(
                "inference is falling behind the cameras: %s processed, the inference thread busy %.0f%% of the "
                "time (each stream gets one frame per cycle; the frames in between are skipped)%s. To keep up, %s",
                rates,
                100 * busy_share,
                again,
                OVERLOAD_ADVICE,
            )
            self._told_behind = True
        elif count:
            log.warning(
                "inference fell behind the cameras %s in the last %.0f s, the longest for %.0f s; it keeps up now. "
                "If it goes on, %s",
                _times(count),
                self._interval_s,
                longest,
                OVERLOAD_ADVICE,
            )
        elif not behind and self._told_behind:
            log.info("inference keeps up with the cameras again")
            self._told_behind = False


#: One round of `NodePace.judge`: its monotonic time, and each running stream's id, pace and counters.
PaceRound = tuple[float, list[tuple[str, StreamPace, PaceSample]]]


class NodePace:
    """Whether a node's streams keep up, as a whole: each stream's last verdict through the gaps it is
    not judged in (`LastVerdicts`, by id: kept over a restart, forgotten on removal), and the node's word
    on it in the log (`OverloadLog`). Updated by `judge` alone, under a lock of its own (`forget` takes it
    too), held over the whole round: a stream removed meanwhile is forgotten after the round, not before.
    """

    def __init__(self) -> None:
        self._last_verdicts = LastVerdicts()
        self._overload = OverloadLog()
        self._lock = threading.Lock()

    def judge(self, sample: Callable[[], PaceRound], busy_share: Callable[[], float]) -> None:
        """Judge each stream ``sample`` gives with its pace, keep its last verdict, and tell the log when the
        node starts falling behind and when it keeps up again (with the inference thread's ``busy_share``)."""
        with self._lock:
            now, running = sample()
            verdicts = {stream_id: pace.update(counters) for stream_id, pace, counters in running}
            behind = self._last_verdicts.update(verdicts, now)
            self._overload.update(behind, busy_share(), now)

    def forget(self, stream_id: str) -> None:
        """The stream was removed: its last verdict goes (`LastVerdicts.forget`)."""
        with self._lock:
            self._last_verdicts.forget(stream_id)

    def behind_held(self) -> frozenset[str]:
        """The streams ``segcast_stream_behind`` counts behind: judged behind now, or last judged behind
        at most `BEHIND_HELD_S` ago and not judged since (a restart, a stall)."""
        with self._lock:
            return self._last_verdicts.held_behind(time.monotonic())


class BusyShare:
    """How much of the last `BUSY_WINDOW_S` a thread spent working rather than waiting for work.

    The thread marks its waits (`waiting`); the time since its first wait that is in none counts as
    work. A wait or work under way counts up to now: a batch that takes 5 s reads as busy while it
    runs, not only once it ends. 0 before the first wait (a model still loading). Marked by one
    thread, read by any.
    """

    def __init__(self, window_s: float = BUSY_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None
        self._waits: deque[tuple[float, float]] = deque()  # (began, ended), monotonic
        self._waiting_since: float | None = None

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around the thread's wait for work."""
        began = self._clock()
        with self._lock:
            self._since = began if self._since is None else self._since
            self._waiting_since = began
        try:
            yield
        finally:
            ended = self._clock()
            with self._lock:
                self._waiting_since = None
                self._waits.append((began, ended))
                while self._waits[0][1] <= ended - self._window_s:
                    self._waits.popleft()

    def share(self) -> float:
        """The share of the window (or of the time since the first wait, if shorter) spent working."""
        now = self._clock()
        with self._lock:
            if self._since is None:
                return 0.0
            start = max(self._since, now - self._window_s)
            waits = [*self._waits, *(() if self._waiting_since is None else [(self._waiting_since, now)])]
        span = now - start
        if span <= 0:
            return 0.0
        waited = sum(min(ended, now) - max(began, start) for began, ended in waits if ended > start)
        return min(1.0, max(0.0, 1.0 - waited / span))


def _capped_wanted(samples: Iterable[PaceSample], process_fps: float) -> float:
    """How many of the window's input frames a stream capped at ``process_fps`` wants: its cap's worth of
    each stretch between two samples, or as many frames as its input gave in it, if fewer.

    Stretch by stretch, not over the window at once: an input that gave few frames for a while (a damaged
    stretch of a file skipped by the decoder, a camera that stuttered without pausing) and then its full
    rate could have had only those few processed then, not its cap's worth.
    """
    return sum(min(b.frames_read - a.frames_read, process_fps * (b.at - a.at)) for a, b in pairwise(samples))


def _times(count: int) -> str:
    return "1 time" if count == 1 else f"{count} times"
