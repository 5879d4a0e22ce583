"""Each stream's processed frame rate and end-to-end latency, as the API and /metrics report them.

Kept apart from the hub, which only adds each frame it publishes and reads a snapshot: when a slow
stream still has a rate and when a stopped one reads 0 fps (stalled) is judged here on the monotonic
clock alone, with no viewer or loop state, and tested so on a clock the tests move.
"""

from __future__ import annotations

import time
from collections import deque

from server.delivery.encode import FramePacket, encodings

STATS_WINDOW_S = 5.0  # rates and latency are averaged over the frames of the last few seconds
STATS_MAX_SAMPLES = 256
#: A stream processed slower than a frame a `STATS_WINDOW_S` has its rate taken from its last two frames,
#: and reads 0 fps (stalled) once it has had none for twice their interval, or for this long whatever it
#: was: longer than a Triton batch may take (10 s), a few times over for a node whose streams take turns.
STALLED_AFTER_S = 30.0


class StreamStats:
    """Processed frame rate and end-to-end latency of one stream, over `STATS_WINDOW_S` (the rate of a
    stream slower than that from its last frames, `_processed_fps`).

    Latency runs from decoding a frame to handing its result to viewers, on the monotonic clock
    (`Frame.capture_monotonic`): the wall clock stepped in between read as the size of the step. A
    frame shown unanalysed (inference unavailable) is published but was not processed: it is in neither.
    """

    def __init__(self) -> None:
        self.samples: deque[tuple[float, float]] = deque(maxlen=STATS_MAX_SAMPLES)  # (monotonic arrival, latency s)
        self.published = 0
        self.images = 0
        #: The newest frame published was shown unanalysed: inference is unavailable, the stream not slow.
        self.unanalysed = False

    def add(self, packet: FramePacket) -> None:
        if packet.result.analysed:
            now = time.monotonic()
            self.samples.append((now, now - packet.result.frame.capture_monotonic))
        self.unanalysed = not packet.result.analysed
        self.published += 1
        self.images += encodings(packet.jpegs)

    def snapshot(self) -> dict[str, float | None]:
        now = time.monotonic()
        recent = [s for s in self.samples if now - s[0] <= STATS_WINDOW_S]
        latency_ms = round(1000 * sum(s[1] for s in recent) / len(recent), 1) if recent else None
        return {"processed_fps": round(self._processed_fps(recent, now), 2), "latency_ms": latency_ms}

    def _processed_fps(self, recent: list[tuple[float, float]], now: float) -> float:
        """Over the window; for a stream slower than a frame a window (a Triton overloaded), from its last
        two frames, or from its last frame to ``now`` once that is longer (the next interval is at least
        as long). A slow stream must not read 0 fps, which alerts take for stalled; one that stopped
        does, as soon as it is clearly late (`STALLED_AFTER_S`), and at once when shown unanalysed."""
        if len(recent) >= 2:
            span = recent[-1][0] - recent[0][0]
            return (len(recent) - 1) / span if span > 0 else 0.0
        if len(self.samples) < 2 or self.unanalysed:
            return 0.0
        before, last = self.samples[-2][0], self.samples[-1][0]
        silent = now - last
        if silent > min(STALLED_AFTER_S, max(STATS_WINDOW_S, 2 * (last - before))):
            return 0.0
        interval = max(last - before, silent)
        return 1 / interval if interval > 0 else 0.0
