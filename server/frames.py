"""The values that travel between pipeline stages.

Every stage hands the next one an immutable value, so a frame can be read by the encoder while the
worker already holds the next one, without locks. JSON is produced here, beside the type it
describes, and nowhere else.
"""

from __future__ import annotations

import dataclasses
import enum
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from server.analytics.events import AnalyticsEvent, FrameAnalytics

PROTOCOL_VERSION = 1
#: Pictures smaller than this a side hold nothing the model can find: sources refuse them, and so
#: does the inference thread for frames that reach it some other way.
MIN_FRAME_SIDE_PX = 16


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded image from a source.

    ``seq`` counts frames the source produced (dropped ones included), so gaps show what was skipped;
    ``capture_time`` is wall-clock seconds (``time.time()``) when the frame was decoded, the zero point
    of end-to-end latency; ``media_time`` is the frame's time in its media in seconds, from 0 and never
    backwards across loops, reconnects and timestamp jumps (docs/protocol.md), which is what a
    tracker needs to know how much time passed between two frames. ``restarts`` counts the times the
    media started over (a looped file played again): where it changes, nothing before says where
    things are now. A count rather than a mark on one frame, so a dropped frame cannot lose it.
    ``ended``: the media is over (a file played to its end). Such a frame repeats the last image,
    with ``restarts`` counted on, so every track and zone visit ends there; the model does not run
    on it. Without it a file's last objects stayed in their zones, their visits never ended.
    ``capture_monotonic`` is ``time.monotonic()`` when the frame was made, stamped by the constructor
    (so at capture; `dataclasses.replace` keeps it): a clock that cannot step, for what compares a
    frame's age with now or with an event in this process (latency, frames of a stream's older
    source). ``capture_time`` jumps with the wall clock; a step made it an hour's latency, or hid a
    stream added while the clock was ahead until real time caught up.
    """

    stream_id: str
    seq: int
    capture_time: float
    media_time: float
    image: np.ndarray
    restarts: int = 0
    ended: bool = False
    capture_monotonic: float = field(default_factory=time.monotonic)


def new_event_id() -> str:
    """A fresh ``event_id`` for an event's JSON: a random UUID, unique without asking any output.

    Here, among the values every stage shares, because two draw it: the encoder, once per event as it packs a
    frame (`server.delivery.encode.make_packet`), and an output handed an event without one
    (`server.events.sink.OutEvent`); delivery depends on no part of the event outputs.
    """
    return str(uuid.uuid4())


class TrackEventKind(enum.Enum):
    START = "start"
    END = "end"


@dataclass(frozen=True, slots=True)
class Track:
    """One tracked object in one processed frame, in the frame's pixel coordinates.

    ``box`` and ``polygon`` are the detection's own (the mask and box the model drew this frame), so
    they always agree with each other; ``track_id`` is what the tracker matched it to. The class is
    the track's, voted over its recent detections, so a one-frame misclassification does not relabel it. ``velocity`` is
    the centroid's speed over the recent trail in pixels per second of media time, so it stays right
    when frames are skipped. ``first_seen`` is the capture time (Unix seconds) of the first frame the
    track appeared in, and ``age_s`` the media time since then.
    """

    track_id: int
    class_id: int
    class_name: str
    confidence: float
    box: tuple[float, float, float, float]
    polygon: np.ndarray | None  # (N, 2) int32 outline of the mask, None for detection-only models
    trail: tuple[tuple[int, int], ...]  # recent centroids, oldest first, ending at this frame's
    velocity: tuple[float, float] = (0.0, 0.0)  # px/s, image axes (y grows downwards)
    first_seen: float = 0.0
    age_s: float = 0.0
    zones: tuple[str, ...] = ()  # the stream's zones the track is in (server.analytics)

    def to_json(self) -> dict[str, object]:
        x1, y1, x2, y2 = self.box
        return {
            "id": self.track_id,
            "class_id": self.class_id,
            "class": self.class_name,
            "conf": round(self.confidence, 3),
            "box": [round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1)],
            "polygon": None if self.polygon is None else self.polygon.ravel().tolist(),
            "trail": [list(p) for p in self.trail],
            "velocity": [round(self.velocity[0], 1), round(self.velocity[1], 1)],
            "first_seen": round(self.first_seen, 3),
            "age": round(self.age_s, 2),
            "zones": list(self.zones),
        }


@dataclass(frozen=True, slots=True)
class TrackEvent:
    """A track started (first reported) or ended (the tracker gave up on it) on one stream.

    ``time`` is the capture time (Unix seconds) of the frame on which it happened, ``media_time`` that
    frame's time in its video: a file processed faster or slower than it plays (``#rate=max``, a busy
    machine) has its events placed by it, as its zone and line events are. An end event is raised on
    the first processed frame after the tracker dropped the track, so it comes up to the tracker's
    lost-track buffer after the object was last seen; ``box`` is where it was last seen, ``age_s`` how
    long it was tracked (media seconds from first to last sighting), and ``first_media_time`` (an end
    event's only: a start's is its ``media_time``) the media time it was first reported at.
    """

    kind: TrackEventKind
    stream_id: str
    track_id: int
    class_id: int
    class_name: str
    time: float
    first_seen: float
    age_s: float
    box: tuple[float, float, float, float]
    media_time: float = 0.0
    first_media_time: float | None = None

    def to_json(self) -> dict[str, object]:
        message: dict[str, object] = {
            "type": "track",
            "v": PROTOCOL_VERSION,
            "event": self.kind.value,
            "stream": self.stream_id,
            "id": self.track_id,
            "class_id": self.class_id,
            "class": self.class_name,
            "time": round(self.time, 4),
            "media_time": round(self.media_time, 4),
            "first_seen": round(self.first_seen, 3),
            "age": round(self.age_s, 2),
            "box": [round(v, 1) for v in self.box],
        }
        if self.first_media_time is not None:
            message["first_media_time"] = round(self.first_media_time, 4)
        return message


@dataclass(frozen=True, slots=True)
class FrameResult:
    """A frame with everything the model and tracker found in it, and the events it caused.

    ``analytics`` holds the stream's zone and line counts after this frame and those shapes in its
    pixels (None: the stream has no zones or lines).

    ``analysed`` is False for a frame shown as it came, without analysis (`unanalysed`): its empty
    ``tracks`` say nothing of what is in the picture, so nothing may count them as "no objects".
    """

    frame: Frame
    tracks: tuple[Track, ...]
    inference_ms: float
    events: tuple[TrackEvent | AnalyticsEvent, ...] = ()
    analytics: FrameAnalytics | None = None
    analysed: bool = True

    @classmethod
    def unanalysed(cls, frame: Frame) -> FrameResult:
        """``frame`` for viewers while it cannot be inferred (a remote model's server down): the cameras
        stay watchable through an outage instead of freezing on their last analysed picture."""
        return cls(frame, (), 0.0, analysed=False)

    def replacing(self, older: FrameResult) -> FrameResult:
        """This result, also carrying the events of ``older``, which it replaces in a latest-only slot.

        Frames may be dropped on the way to viewers, track events must not: a stage that overwrites a
        pending result stores ``new.replacing(pending)`` instead of ``new``.
        """
        if not older.events:
            return self
        return dataclasses.replace(self, events=older.events + self.events)

    def metadata_json(self) -> dict[str, object]:
        """The ``frame`` message of the wire protocol (docs/protocol.md) for this result."""
        frame = self.frame
        height, width = frame.image.shape[:2]
        message: dict[str, object] = {
            "type": "frame",
            "v": PROTOCOL_VERSION,
            "stream": frame.stream_id,
            "seq": frame.seq,
            "capture_time": round(frame.capture_time, 4),
            "media_time": round(frame.media_time, 4),
            "width": width,
            "height": height,
            "inference_ms": round(self.inference_ms, 1),
            "analysed": self.analysed,
            "tracks": [track.to_json() for track in self.tracks],
            "events": [event.to_json() for event in self.events],
        }
        if self.analytics is not None:
            message["counts"] = self.analytics.counts.to_json()
        return message
