"""The rate a stream's frames are processed at, measured on their media time, and which gaps are outages.

ultralytics' trackers count their patience in frames; `server.tracking.stream.StreamTracker` turns
those counts into times with the rate measured here, so a lost track is kept for the same time
however many frames the worker skipped. A gap longer than the tracker keeps a lost track is an
outage (a camera away and back), after which the tracker starts afresh: it would count the gap as
one frame and carry every track across it.

But a stream may be processed that slowly from then on. A ``process_fps`` lowered live to 0.1 (which
PATCH applies to a running stream, its tracks going on) says so itself (`ProcessingRate.capped`). A
source that now sends a frame every ten seconds does not: its first such gap cannot be told from an
outage; a second of about the same length right after it is the stream's new pace, measured at once,
and its tracks go on from there. Had it been taken for another outage, every frame would have ended
and restarted every track for ever.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

RATE_SMOOTHING = 0.2  # weight of the newest interval in the measured processing rate
#: A gap between two frames shorter than this is never an outage (see `ProcessingRate.after`).
MAX_RATE_GAP_S = 5.0
#: One interval counts in the measured rate for at most this many times the interval measured so far:
#: a stall of seconds is not the stream's pace (counted whole, one made ByteTrack keep a lost track
#: for one frame), while a stream that really slows down gets there over a few frames.
MAX_RATE_STEP = 2.0
#: A gap that would be an outage, right after an outage no more than this many times longer or shorter,
#: is the stream's new pace: a worker capped at 0.1 fps leaves gaps of 10 s give or take a source
#: frame, a camera that drops out and comes back rarely does so twice in a row for as long.
SAME_PACE_RATIO = 1.25


@dataclass(frozen=True, slots=True)
class ProcessingRate:
    """One stream's processing rate after the frames taken in so far.

    Frozen: `after` gives the rate once one more frame is taken in, and the caller keeps it only when
    the whole frame went through, so a frame that fails is measured again when it is retried.
    """

    interval_s: float  # smoothed media time between processed frames
    #: The longest the stream's tracker keeps a lost track (s); None: a tracker that never drops one.
    longest_window_s: float | None
    last_media_time: float | None = None
    #: Media time between the last two frames, however long; after an outage, the interval instead:
    #: a camera back for a frame may be away again at once.
    last_gap_s: float | None = None
    outage_s: float | None = None  # the gap before the last frame, where that gap was an outage

    @property
    def fps(self) -> float:
        """Frames processed per second of media time (smoothed)."""
        return 1.0 / self.interval_s

    def after(self, media_time: float) -> tuple[ProcessingRate, bool]:
        """The rate once a frame at ``media_time`` is taken in, and whether that frame comes after an outage.

        A gap is an outage when it is longer than the tracker's longest window, or than twice the gap
        before, where the stream is processed so slowly that one frame's interval is longer (the tracker
        keeps a lost track at least one frame), and never under `MAX_RATE_GAP_S`: a shorter gap is a
        network or a worker that stalled for a moment while the objects stayed in view, which a
        tracker rides out (ByteTrack's window is 1 s). The first gap says nothing yet. An outage leaves
        the measured rate as it was; a second one of about its length (`SAME_PACE_RATIO`) is no outage
        but the rate itself, taken whole.

        Each other gap counts for at most `MAX_RATE_STEP` intervals, however long: a stall moves the
        rate a step, and a stream processed slower than a frame every `MAX_RATE_GAP_S` without ever
        jumping there (left out, it kept its nominal rate, and its tracker's windows in frames lasted
        minutes) is measured too.
        """
        if self.last_media_time is None:
            return replace(self, last_media_time=media_time), False
        gap = media_time - self.last_media_time
        if self._is_outage(gap):
            if self.outage_s is not None and _same_pace(gap, self.outage_s):
                return replace(self, interval_s=gap, last_media_time=media_time, last_gap_s=gap, outage_s=None), False
            return replace(self, last_media_time=media_time, last_gap_s=self.interval_s, outage_s=gap), True
        interval_s = self.interval_s
        if gap > 0:
            interval_s += RATE_SMOOTHING * (min(gap, MAX_RATE_STEP * interval_s) - interval_s)
        return replace(self, interval_s=interval_s, last_media_time=media_time, last_gap_s=gap, outage_s=None), False

    def capped(self, fps: float | None) -> ProcessingRate:
        """This rate under a cap of ``fps`` set on the running stream: a cap slower than the rate measured
        is the stream's pace at once, so the gap up to its next frame is no outage and its tracks go on;
        a faster cap, or none, changes nothing until frames come faster, measured as they come."""
        if fps is None or 1.0 / fps <= self.interval_s:
            return self
        return replace(self, interval_s=1.0 / fps, outage_s=None)

    def _is_outage(self, gap: float) -> bool:
        if self.last_gap_s is None or self.longest_window_s is None:
            return False
        return gap > max(self.longest_window_s, 2 * self.interval_s, 2 * self.last_gap_s, MAX_RATE_GAP_S)


def _same_pace(gap: float, other: float) -> bool:
    return max(gap, other) <= SAME_PACE_RATIO * min(gap, other)
