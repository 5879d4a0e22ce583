"""One stream as the inference thread sees it: its options, slot, tracker, analytics and counters.

`InferenceWorker` makes one per `add_stream`; a re-added id gets a new one, hence a fresh tracker.
A stream removed to come back with new settings is kept as the one its successor ``restarts``, so
the successor's tracker and analytics can carry on from it (`StreamTracker` ``follows``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from server.analytics.engine import StreamAnalytics
from server.inference.frame_cap import FrameCap
from server.options import StreamOptions
from server.sources.base import LatestFrame
from server.tracking.stream import StreamTracker


@dataclass(eq=False)
class StreamRegistration:
    """A stream's state on the inference thread.

    Counters and state are written by the inference thread only; other threads just read them, and
    replace ``options`` (`InferenceWorker.change_shapes`) under the worker's lock. ``restarts`` is the
    registration of the same id this one restarts: its tracker and analytics, or those of the one it
    restarted in turn if it never had a frame, are taken over on this one's first frame.
    """

    stream_id: str
    fps: float | Callable[[], float]  # the source's nominal rate, or what reads it (`InferenceWorker.add_stream`)
    options: StreamOptions
    slot: LatestFrame
    restarts: StreamRegistration | None = None
    removed: bool = False  # by `remove_stream`, not restarting: nothing of it may be delivered any more
    tracker: StreamTracker | None = None
    analytics: StreamAnalytics | None = None
    analytics_options: StreamOptions | None = None  # the options ``analytics`` was made for
    processed: int = 0
    errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None  # Unix seconds of its latest occurrence
    #: The failure last told in the log; None once a frame went through, so a failure that comes back
    #: later is told again, and one on every frame only once.
    told_error: str | None = None
    processing_fps: float | None = None
    analytics_error: str | None = None
    frame_size: tuple[int, int] | None = None
    #: Whether its class filter was checked against the model's classes (`InferenceWorker._unfit`), and
    #: why it can never fit them (a class the model lacks): then none of its frames goes to the model.
    classes_checked: bool = False
    options_error: str | None = None
    #: Which frames its ``process_fps`` lets through, and how many it left out (``frames_thinned``).
    cap: FrameCap = field(default_factory=FrameCap)

    def failed(self, reason: str) -> bool:
        """Count a frame that failed for ``reason``; whether to tell it in the log (it is new since the
        last one told or since a frame went through)."""
        self.errors += 1
        self.last_error = reason
        self.last_error_at = time.time()
        new, self.told_error = reason != self.told_error, reason
        return new

    def carry_counts(self, previous: StreamRegistration) -> None:
        """Go on with ``previous``'s counts and frame size: it read the same source through the same reader
        (`InferenceWorker.add_stream` ``same_reader``). What it counts after this is not carried."""
        self.errors, self.last_error, self.last_error_at = previous.errors, previous.last_error, previous.last_error_at
        self.cap.thinned = previous.cap.thinned
        self.frame_size = previous.frame_size

    def mark_removed(self) -> None:
        """Mark this registration and those it restarts removed: no frame of any of them may be delivered."""
        registration: StreamRegistration | None = self
        while registration is not None:
            registration.removed = True
            registration = registration.restarts

    def ignored(self) -> int:
        """The detections the stream's object filter kept from its tracker: its own tracker's count, or, before
        a restarted stream's first frame, that of the tracker it goes on from (the count never goes back)."""
        registration: StreamRegistration | None = self
        while registration is not None:
            if registration.tracker is not None:
                return registration.tracker.ignored
            registration = registration.restarts
        return 0

    def restarted(self) -> StreamRegistration | None:
        """What this registration restarts and carries on from: the last of its id to have had a tracker."""
        previous = self.restarts
        while previous is not None and previous.tracker is None:  # restarted again before it had a frame
            previous = previous.restarts
        self.restarts = previous
        return previous


@dataclass(frozen=True, slots=True)
class StreamStats:
    """What the worker knows about one stream, for its state in the API and UI."""

    processed: int
    errors: int
    last_error: str | None
    last_error_at: float | None  # Unix seconds: the error may be past (`last_error` stays)
    processing_fps: float | None  # None until the stream's second processed frame
    #: Why ignore zones, zones or lines are left out or can never count (`StreamTracker.problems`,
    #: `StreamAnalytics.problems`, one per line), and why the analytics failed on its latest frame if they
    #: did; None when none are.
    analytics_error: str | None = None
    frame_size: tuple[int, int] | None = None  # width, height of its latest processed frame
    #: Zones and lines given to it (added or moved) since its last frame: they count from its next one.
    pending_shapes: tuple[str, ...] = ()
    #: Why the stream's options can never work with the model (a class it lacks, found once a remote
    #: model was first described): none of its frames is inferred until its options change.
    options_error: str | None = None
    #: Frames its ``process_fps`` left out, never sent to the model (`FrameCap`).
    thinned: int = 0
    #: Detections its object filter kept from its tracker (`StreamTracker.ignored`).
    ignored: int = 0
