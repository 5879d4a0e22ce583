"""Pacing: when each frame a source yields is due on the monotonic clock, for the reader to publish it.

A file stands in for a camera, so it is played at its native rate (`Pacing`); a live source that hands
over bursts (live HLS) is let out one frame at a time at its timestamps' rate (`LivePacing`). Both only
say when a frame is due: the reader waits, and the slot still keeps only the newest frame.
"""

from __future__ import annotations

import time

#: A bursty source (live HLS) whose frames come this far ahead of their timestamps in one run has handed
#: over a backlog: under the shortest segment FFmpeg's HLS demuxer hands over whole (half a second).
BURST_S = 0.3
#: A paced frame that comes more than this after its time moves the pace on to it: the source made the
#: reader wait (a segment written late). One less late goes at once and the pace stays: fetching each
#: burst's start (a playlist, then a segment: a round trip or two) would otherwise push the pace, and
#: so the latency, later with every burst.
PACE_SLACK_S = 0.5


class Pacing:
    """When each frame of a file is due on the monotonic clock, to play it at its native rate.

    Due times follow the frames' media times from the first frame's arrival; after a timestamp jump
    they follow on from one frame after the frame before, as if the file had no jump.
    """

    def __init__(self) -> None:
        self._anchor: tuple[float, float] | None = None  # (monotonic, media time) due times count from
        self.last_due: float | None = None

    def due(self, media_time: float, jumped: bool, interval_s: float) -> float:
        if self._anchor is None or jumped:
            start = time.monotonic() if self.last_due is None else self.last_due + interval_s
            self._anchor = (start, media_time)
        self.last_due = self._anchor[0] + media_time - self._anchor[1]
        return self.last_due


class LivePacing:
    """When each frame of a live source is due on the monotonic clock, so frames that come in bursts
    still come one by one, at their timestamps' rate.

    Only for a source that says it is ``bursty`` (live HLS, which hands over whole segments): a camera
    sends each frame as it happens, and pacing it would add every stall and jitter of its network, and
    its clock's drift, to the frames after them. A frame is released as it comes while no run of frames
    comes more than `BURST_S` ahead of their timestamps; once one does, the backlog is read through,
    the slot keeping the newest frame: what came first is stale, and so the reader reaches the
    newest frames the source has. From the first frame after it that the source made the reader wait
    for, frames are due at their timestamps' pace and held till then; a frame that comes late is
    released at once, and the ones after it paced from it if it came more than `PACE_SLACK_S` late.

    So pacing starts only where the source had nothing more to give, and holds back at most the
    burst that came since (HLS: about a segment); what the source has beyond it stays in the
    source's own buffer, never in a queue here, and inference still takes only the newest frame.
    """

    def __init__(self) -> None:
        self._previous: tuple[float, float] | None = None  # (monotonic, media time) of the last frame
        self._run_lead_s = 0.0  # how far the frames that each came sooner than their step got ahead
        self._catching_up = False  # reading through a backlog
        self._anchor: tuple[float, float] | None = None  # (monotonic, media time) paced from, once it bursts

    def due(self, media_time: float, jumped: bool, now: float) -> float:
        previous, self._previous = self._previous, (now, media_time)
        if previous is None or jumped:
            self._run_lead_s = 0.0
            if self._anchor is not None:
                self._anchor = (now, media_time)
            return now
        if self._anchor is not None:
            due = self._anchor[0] + media_time - self._anchor[1]
            if now - due > PACE_SLACK_S:
                self._anchor = (now, media_time)
            return max(due, now)
        lead = (media_time - previous[1]) - (now - previous[0])
        if lead <= 0:  # the source made the reader wait a frame's time for it: it has nothing more
            self._run_lead_s = 0.0
            if self._catching_up:
                self._catching_up, self._anchor = False, (now, media_time)
            return now
        self._run_lead_s += lead
        self._catching_up = self._catching_up or self._run_lead_s > BURST_S
        return now
