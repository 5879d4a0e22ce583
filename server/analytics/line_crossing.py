"""The line-crossing rule's track geometry, and what it remembers of each track on each line.

A line watches one point of each track (its `Anchor`): which side of the line that point is on,
beyond the line's dead band (`server.analytics.geometry.side_of`), and whether its path went over the
line between two frames (going round an end crosses nothing). A stay on the other side counts once it
has lasted ``confirm_s``; `StreamAnalytics` in `server.analytics.engine` applies the rule and counts,
this module holds the track's side of it and the per-track `LineState`. The frame's edges matter twice:
a track that ends while it was leaving the picture across a line still counts
(`LineState.left_the_picture`), and a line drawn within its band of an edge can never count, which
`server.analytics.shapes.never_counts` says.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np

from server.analytics.geometry import EDGE_OUTWARDS, Point, segments_intersect
from server.analytics.shapes import Anchor
from server.frames import Track

#: A box this close to the frame's edge touches it: the object may be leaving the picture.
EDGE_MARGIN_PX = 2.0
#: The least travel towards that edge that says it was leaving, on a line without a dead band.
MIN_TRAVEL_PX = 1.0


def anchor_point(track: Track, anchor: Anchor) -> Point:
    """The track's reference point: from its mask outline when it has one, else from its box."""
    polygon = track.polygon
    if polygon is not None and len(polygon) >= 3:
        moments = cv2.moments(polygon.astype(np.float32))
        if moments["m00"] > 0:
            cx, cy = moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]
            return (cx, float(polygon[:, 1].max())) if anchor is Anchor.BOTTOM else (cx, cy)
    x1, y1, x2, y2 = track.box
    return ((x1 + x2) / 2, y2) if anchor is Anchor.BOTTOM else ((x1 + x2) / 2, (y1 + y2) / 2)


def crosses(p: Point, q: Point, polyline: tuple[Point, ...]) -> bool:
    return any(segments_intersect(p, q, a, b) for a, b in itertools.pairwise(polyline))


def edges_touched(box: tuple[float, float, float, float], width: int, height: int) -> frozenset[str]:
    """The edges of a ``width`` x ``height`` frame that ``box`` reaches (within `EDGE_MARGIN_PX`)."""
    x1, y1, x2, y2 = box
    near = {
        "left": x1 <= EDGE_MARGIN_PX,
        "top": y1 <= EDGE_MARGIN_PX,
        "right": x2 >= width - EDGE_MARGIN_PX,
        "bottom": y2 >= height - EDGE_MARGIN_PX,
    }
    return frozenset(edge for edge, touches in near.items() if touches)


@dataclass(frozen=True, slots=True)
class PendingCrossing:
    """A stay across a line (beyond its band) that has not yet lasted ``confirm_s``: where it began."""

    capture_time: float
    media_time: float
    point: Point  # the anchor then
    band: float  # the line's dead band then, in pixels (it follows the frame's size)


@dataclass(slots=True)
class LineState:
    side: int  # the last side the anchor was on beyond the dead band; 0 until it first was
    last_point: Point
    #: The track's class when last seen: a crossing still pending when the track ends is counted under it.
    class_id: int
    class_name: str
    last_seen: float  # media time of the last frame the track was seen
    edges: frozenset[str]  # the frame's edges its box touched then (it may have left the picture)
    path_crossed: bool = False  # whether the anchor's path since then went over the line
    pending: PendingCrossing | None = None  # its current stay across, until the crossing counts

    def copy(self) -> LineState:
        """A copy to change (the engine's draft state, `server.analytics.engine._State.line_state`)."""
        return LineState(
            self.side,
            self.last_point,
            self.class_id,
            self.class_name,
            self.last_seen,
            self.edges,
            self.path_crossed,
            self.pending,
        )

    def left_the_picture(self) -> bool:
        """Whether it was last seen leaving the picture across the line: seen across on two frames or
        more, its box then touching an edge of the frame (`edges_touched`), and its point moved towards
        that edge since its pending stay began by at least the line's dead band (and a pixel, for a
        line without one).

        A one-frame dip (a nearer object hiding its lower part for a frame) never counts, and neither
        does jitter; an object leaving the picture across a line near the edge does, whether its box
        touched that edge before (a tall person whose head the top edge cuts off) or not. Boxes alone
        cannot tell that from a lower part hidden for two frames or more, of an object already at the
        edge it moves towards, whose track is then lost: that counts too.
        """
        pending = self.pending
        assert pending is not None
        (x0, y0), (x, y) = pending.point, self.last_point
        # Seen after the frame its stay began on: every frame since was across (the band or the old side ends it).
        return self.last_seen > pending.media_time and any(
            EDGE_OUTWARDS[edge][0] * (x - x0) + EDGE_OUTWARDS[edge][1] * (y - y0) >= max(pending.band, MIN_TRAVEL_PX)
            for edge in self.edges
        )
