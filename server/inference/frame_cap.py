"""Which of a stream's frames go to the model under its ``process_fps``.

A stream may ask for fewer frames than it gives: `FrameCap` leaves the others out by their media time
(``frames_thinned``, by choice, unlike dropped ones), and its turn in the inference thread's batch goes
to the streams that have a frame due (`InferenceWorker._take_batch`). Whether a stream then keeps pace
is judged against its cap (`server.inference.pace`).
"""

from __future__ import annotations

from dataclasses import dataclass

from server.frames import Frame

#: A frame is due for the next tick of its stream's ``process_fps`` from half an interval before it: a
#: camera whose timestamps jitter, capped at its own rate, so keeps every frame.
EARLY_SHARE = 0.5


@dataclass(slots=True)
class FrameCap:
    """Which of one stream's frames its ``process_fps`` lets through to the model, by their media time.

    Ticks are ``1 / process_fps`` apart, each frame due from `EARLY_SHARE` of an interval before the
    next tick, so ``process_fps`` frames a second of media time pass while the input has them (each
    tick follows on from the last), one more in the first second or after a gap, as the first tick
    after a frame taken may be met half an interval early. A frame more than an interval
    late (after a gap in the input, or taken late by a busy node) lays the ticks afresh from itself.
    Media time, not the clock: a ``#rate=max`` file, read as fast as its frames are taken, is sampled
    at the cap through its video. A media's end marker (`Frame.ended`) always passes: it ends the
    stream's tracks. A new cap starts afresh from the next frame. The inference thread's alone.
    """

    fps: float | None = None  # the cap the ticks were laid for
    next_due: float | None = None  # media time of the next tick
    thinned: int = 0  # frames left out so far

    def admits(self, frame: Frame, fps: float | None) -> bool:
        """Whether ``frame`` goes to the model under a cap of ``fps`` (None: every frame); counts it if not."""
        if fps != self.fps:
            self.fps, self.next_due = fps, None
        if fps is None or frame.ended:
            return True
        interval, at, due = 1.0 / fps, frame.media_time, self.next_due
        if due is not None and at < due - EARLY_SHARE * interval:
            self.thinned += 1
            return False
        self.next_due = (due if due is not None and at - due < interval else at) + interval
        return True
