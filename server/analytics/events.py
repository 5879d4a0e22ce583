"""What analytics hands on: events in the frame's ``events`` and a per-stream counts snapshot.

Events travel beside track events (same ordering and never-dropped guarantees, docs/protocol.md);
the snapshot is a frozen value replaced whole on every frame, so the API and /metrics can read the
newest one from any thread without a lock.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from server.frames import PROTOCOL_VERSION

#: Upper bounds (s) of the dwell histogram buckets /metrics exposes. Prometheus' quantiles interpolate
#: within a bucket, so a wide one reads visits longer than any there was (a 95th percentile of 29 s for
#: visits of 8 to 24 s, with a bucket from 10 to 30): from 5 s to 5 min no bound is more than a third
#: above the one before, so a quantile there reads at most a third high, and mostly within a tenth.
#: Every bound of segcast 0.2.0's nine stays, for the queries that name one.
DWELL_BUCKETS_S = (
    *(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0),
    *(60.0, 80.0, 100.0, 120.0, 150.0, 180.0, 240.0, 300.0, 400.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0),
)


class AnalyticsEventKind(enum.Enum):
    ZONE_ENTER = "zone_enter"
    ZONE_EXIT = "zone_exit"
    LOITER = "loiter"
    LINE_CROSS = "line_cross"


@dataclass(frozen=True, slots=True)
class AnalyticsEvent:
    """A track entered, left or loitered in a zone, or crossed a line, on one frame of one stream.

    ``time`` is the capture time (Unix s) of that frame and ``media_time`` its media position.
    ``dwell_s`` (exit and loiter) is media time from the first to the latest frame the track was
    seen inside; ``direction`` (crossings) is "in" or "out" as the line defines them.
    """

    kind: AnalyticsEventKind
    stream_id: str
    track_id: int
    class_id: int
    class_name: str
    time: float
    media_time: float
    zone: str | None = None
    line: str | None = None
    direction: str | None = None
    dwell_s: float | None = None

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "type": self.kind.value,
            "v": PROTOCOL_VERSION,
            "stream": self.stream_id,
            "id": self.track_id,
            "class_id": self.class_id,
            "class": self.class_name,
            "time": round(self.time, 4),
            "media_time": round(self.media_time, 4),
        }
        if self.zone is not None:
            data["zone"] = self.zone
        if self.line is not None:
            data["line"] = self.line
            data["direction"] = self.direction
        if self.dwell_s is not None:
            data["dwell"] = round(self.dwell_s, 3)
        return data


@dataclass(frozen=True, slots=True)
class DwellHistogram:
    """Finished zone visits of one zone: cumulative counts per `DWELL_BUCKETS_S` bound, sum and count."""

    buckets: tuple[int, ...] = (0,) * len(DWELL_BUCKETS_S)
    total_s: float = 0.0
    count: int = 0

    def adding(self, dwell_s: float) -> DwellHistogram:
        buckets = tuple(n + (dwell_s <= bound) for n, bound in zip(self.buckets, DWELL_BUCKETS_S, strict=True))
        return DwellHistogram(buckets, self.total_s + dwell_s, self.count + 1)


@dataclass(frozen=True, slots=True)
class Counts:
    """One stream's counts after a frame: objects per zone and class now, crossings per line since start.

    ``zones`` maps zone -> class -> tracks inside now; ``lines`` maps line -> class -> direction ->
    crossings since the stream (re)started; ``dwell`` maps zone -> histogram of finished visits.
    """

    zones: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: MappingProxyType({}))
    lines: Mapping[str, Mapping[str, Mapping[str, int]]] = field(default_factory=lambda: MappingProxyType({}))
    dwell: Mapping[str, DwellHistogram] = field(default_factory=lambda: MappingProxyType({}))

    def only(self, zones: set[str], lines: set[str]) -> Counts:
        """These counts of the named zones and lines alone."""
        return Counts(
            MappingProxyType({name: by_class for name, by_class in self.zones.items() if name in zones}),
            MappingProxyType({name: by_class for name, by_class in self.lines.items() if name in lines}),
            MappingProxyType({name: histogram for name, histogram in self.dwell.items() if name in zones}),
        )

    def to_json(self) -> dict[str, dict[str, dict[str, object]]]:
        return {
            "zones": {
                zone: {"objects": sum(by_class.values()), "by_class": dict(by_class)}
                for zone, by_class in self.zones.items()
            },
            "lines": {
                line: {
                    "in": sum(d["in"] for d in by_class.values()),
                    "out": sum(d["out"] for d in by_class.values()),
                    "by_class": {name: dict(d) for name, d in by_class.items()},
                }
                for line, by_class in self.lines.items()
            },
        }


@dataclass(frozen=True, slots=True)
class FrameAnalytics:
    """What a frame's result carries of analytics: the counts after it, and the shapes in its pixels.

    The shapes are there for drawing (the annotated JPEG); ``zones`` and ``lines`` pair each name
    with its (N, 2) int32 outline in the frame.
    """

    counts: Counts
    zones: tuple[tuple[str, np.ndarray], ...]
    lines: tuple[tuple[str, np.ndarray], ...]
