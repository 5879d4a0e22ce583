"""The values that travel between pipeline stages.

Every stage hands the next one an immutable value, so a frame can be read by the encoder while the
worker already holds the next one, without locks. JSON is produced here, beside the type it
describes, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PROTOCOL_VERSION = 1


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded image from a source.

    ``seq`` counts frames the source produced (dropped ones included), so gaps show what was skipped;
    ``capture_time`` is wall-clock seconds (``time.time()``) when the frame was decoded, the zero point
    of end-to-end latency; ``media_time`` is the frame's position in its media in seconds, which is
    what a tracker needs to know how much time passed between two frames.
    """

    stream_id: str
    seq: int
    capture_time: float
    media_time: float
    image: np.ndarray


@dataclass(frozen=True, slots=True)
class Track:
    """One tracked object in one frame, in the frame's pixel coordinates."""

    track_id: int
    class_id: int
    class_name: str
    confidence: float
    box: tuple[float, float, float, float]
    polygon: np.ndarray | None  # (N, 2) int32 outline of the mask, None for detection-only models
    trail: tuple[tuple[int, int], ...]  # recent centroids, oldest first, ending at this frame's

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
        }


@dataclass(frozen=True, slots=True)
class FrameResult:
    """A frame with everything the model and tracker found in it."""

    frame: Frame
    tracks: tuple[Track, ...]
    inference_ms: float


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """A result ready for viewers: the annotated JPEG and the metadata of exactly that image."""

    result: FrameResult
    jpeg: bytes

    def metadata_json(self) -> dict[str, object]:
        frame = self.result.frame
        height, width = frame.image.shape[:2]
        return {
            "type": "frame",
            "v": PROTOCOL_VERSION,
            "stream": frame.stream_id,
            "seq": frame.seq,
            "capture_time": round(frame.capture_time, 4),
            "media_time": round(frame.media_time, 4),
            "width": width,
            "height": height,
            "inference_ms": round(self.result.inference_ms, 1),
            "tracks": [track.to_json() for track in self.result.tracks],
        }
