"""A stream as the API, the metrics and the viewers see it: one immutable reading, made by the manager.

`server.streams.StreamManager.info` gathers it from the stream's config, its reader's status and the
worker's counts; whatever reads it afterwards (a JSON answer, a scrape, a picture's state header)
reads one moment of the stream, and holds none of the pipeline's locks while it does. Streams are
listed in `stream_order`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from server.config import StreamConfig
from server.inference.models import InferenceStatus
from server.inference.pace import PaceVerdict
from server.sources import StreamState
from server.sources.reader import ReaderStatus

_DIGIT_RUNS = re.compile(r"([0-9]+)")


def stream_order(stream_id: str) -> tuple[tuple[str | int, ...], str]:
    """The key streams are listed by (`StreamManager.streams`: `GET /api/streams`, the WebSocket's
    `hello`; the viewer's grid places a new tile by the same key, `compareStreamIds` in web/grid.js).

    Natural and case-folded: ``back, cam, cam2, cam3, cam10, door, new, Yard``. It is the order a person
    reading the names expects (``cam10`` after ``cam9``, ``Yard`` among the y's), and it depends on the
    names alone, so it is the same whatever the source of a stream (the config file, flags, the API, a
    browser's camera) and whenever it was added: a camera added from the form shows where a reload, or a
    restart, will put it. The config file's ``[[streams]]`` order is not used: streams from the other
    sources have no place in it. Ids equal but for case or leading zeros (``Cam``/``cam``, ``cam01``/
    ``cam1``) fall back to their characters' codes, so the order is total.
    """
    parts = _DIGIT_RUNS.split(stream_id.casefold())  # text at even places, digits at odd: types line up
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts)), stream_id


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A stream as the API and viewers see it: its settings, its reader's status and inference counts."""

    config: StreamConfig
    source: str
    status: ReaderStatus
    frames_processed: int = 0
    inference_errors: int = 0
    last_inference_error: str | None = None
    #: Unix seconds of ``last_inference_error``'s latest occurrence: it stays once frames go through
    #: again, so this says whether it is past.
    last_inference_error_at: float | None = None
    inference: InferenceStatus = field(default_factory=lambda: InferenceStatus(available=True))
    analytics_error: str | None = None  # why ignore zones, zones or lines are left out or can never count here
    pace: PaceVerdict = field(default_factory=PaceVerdict)  # whether inference keeps up (`StreamManager.check_pace`)
    #: Frames its ``process_fps`` left out: by choice, never sent to the model (unlike ``frames_dropped``).
    frames_thinned: int = 0
    #: Detections its object filter (``min_area``, ``max_area``, ``ignore_zones``, class filters) kept from its tracker.
    detections_ignored: int = 0

    @property
    def stream_id(self) -> str:
        return self.config.stream_id

    @property
    def state(self) -> StreamState:
        return self.status.state

    @property
    def error(self) -> str | None:
        return self.status.error

    @property
    def frames_read(self) -> int:
        return self.status.frames_read

    @property
    def frames_dropped(self) -> int:
        return self.status.dropped

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.stream_id,
            "source": self.source,
            "loop": self.config.loop,
            "options": self.config.options.to_json(),
            **self.status.to_json(),
            "frames_processed": self.frames_processed,
            "frames_thinned": self.frames_thinned,
            "detections_ignored": self.detections_ignored,
            "inference_errors": self.inference_errors,
            "last_inference_error": self.last_inference_error,
            "last_inference_error_at": self.last_inference_error_at,
            "inference": self.inference.to_json(),
            "analytics_error": self.analytics_error,
            **self.pace.to_json(),
        }
