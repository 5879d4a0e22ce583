"""The line-crossing rule's geometry, and what it remembers of each track on each line.

A line watches one point of each track (its `Anchor`): which side of the line that point is on,
beyond the line's dead band, and whether its path went over the line between two frames (going
round an end crosses nothing). A stay on the other side counts once it has lasted ``confirm_s``;
`StreamAnalytics` in `server.analytics.engine` applies the rule and counts, this module holds the
geometry it judges by and the per-track `LineState`. The frame's edges matter twice: a track that
ends while it was leaving the picture across a line still counts (`LineState.left_the_picture`), and
a line drawn within its band of an edge can never count, which the stream's problems say
(`sides_without_room`, `never_counts`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from server.analytics.shapes import Anchor, Point, cross, segments_intersect
from server.frames import Track

#: A box this close to the frame's edge touches it: the object may be leaving the picture.
EDGE_MARGIN_PX = 2.0
#: The least travel towards that edge that says it was leaving, on a line without a dead band.
MIN_TRAVEL_PX = 1.0
#: Each edge of the frame and the way out of the picture across it (image axes, y down).
EDGE_OUTWARDS: dict[str, tuple[int, int]] = {"left": (-1, 0), "top": (0, -1), "right": (1, 0), "bottom": (0, 1)}
#: How room across a line is sought (`sides_without_room`): from this many parts of each segment, a
#: point straight across at the band's distance (plus a hair) and at three times it (for a bent line,
#: whose other segments may come nearer than the one it is tried from).
ROOM_PARTS = 8
ROOM_MARGIN_PX = 1e-3
ROOM_REACHES = (1.0, 3.0)
#: cos(67.5 degrees): a line's side faces the one edge its normal is nearest, or two at a corner (`_facing_edges`).
FACING_COS = 0.38


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


def side_of(point: Point, polyline: tuple[Point, ...]) -> tuple[int, float]:
    """Which side of ``polyline`` ``point`` is on (+1 right, -1 left, walking first to last point) and how far.

    The side is that of the nearest segment, so it is right for a bent line too. Where the nearest
    point is a corner two segments share, it is the side of the corner's bisector (the sum of the two
    segments' normals, the pseudo-normal of signed distance to a polyline): either segment's own side
    is wrong somewhere beyond the tip of a bend sharper than a right angle.
    """
    px, py = point
    segments = list(itertools.pairwise(polyline))
    best_distance, best_index, best_u = float("inf"), 0, 0.0
    for index, (a, b) in enumerate(segments):
        dx, dy = b[0] - a[0], b[1] - a[1]
        u = max(0.0, min(1.0, ((px - a[0]) * dx + (py - a[1]) * dy) / (dx * dx + dy * dy)))
        distance = float(np.hypot(px - a[0] - u * dx, py - a[1] - u * dy))
        if distance < best_distance:
            best_distance, best_index, best_u = distance, index, u
    corner = best_index + 1 if best_u == 1.0 else best_index if best_u == 0.0 else None
    if corner is None or not 0 < corner < len(polyline) - 1:
        a, b = segments[best_index]
        value = cross(a, b, point)
    else:
        vx, vy = polyline[corner]
        nx, ny = _normal(polyline[corner - 1], polyline[corner])
        mx, my = _normal(polyline[corner], polyline[corner + 1])
        value = (px - vx) * (nx + mx) + (py - vy) * (ny + my)
    return (value > 0) - (value < 0), best_distance


def _normal(a: Point, b: Point) -> Point:
    """The unit normal of the way a -> b that points to its right (image axes, y down)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = float(np.hypot(dx, dy))
    return -dy / length, dx / length


def sides_without_room(polyline: tuple[Point, ...], band: float, width: int, height: int) -> frozenset[int]:
    """The sides of ``polyline`` (+1 right, -1 left, as `side_of` tells them) with no point of a
    ``width`` x ``height`` frame straight across from it beyond ``band``.

    A crossing, in or out, needs a track's anchor beyond the band on one side, then over the line
    itself and beyond the band on the other, and the anchor is always in the frame: a line drawn
    within its band of an edge can never count. Room round its ends does not help (a track that goes
    round an end crosses nothing), so only points across the line are tried: off each segment along
    its normal, from its ends and `ROOM_PARTS` places between, each judged by `side_of` itself.
    """
    missing = {1, -1}
    for a, b in itertools.pairwise(polyline):
        nx, ny = _normal(a, b)
        for k in range(ROOM_PARTS + 1):
            x, y = a[0] + (b[0] - a[0]) * k / ROOM_PARTS, a[1] + (b[1] - a[1]) * k / ROOM_PARTS
            for reach, sign in itertools.product(ROOM_REACHES, (1, -1)):
                distance = sign * (band * reach + ROOM_MARGIN_PX)
                point = (x + distance * nx, y + distance * ny)
                if 0 <= point[0] <= width and 0 <= point[1] <= height:
                    side, away = side_of(point, polyline)
                    if away > band:
                        missing.discard(side)
            if not missing:
                return frozenset()
    return frozenset(missing)


def _facing_edges(polyline: tuple[Point, ...], side: int) -> tuple[str, ...]:
    """The edges of the frame that ``side`` of ``polyline`` faces, to name in a warning: those whose way
    out (`EDGE_OUTWARDS`) is within 67.5 degrees of the normal, on that side, of its first-to-last chord
    (the sum of its segments' normals, each as long as its segment); none for a line that ends where it began."""
    (x0, y0), (x1, y1) = polyline[0], polyline[-1]
    nx, ny = side * (y0 - y1), side * (x1 - x0)
    length = math.hypot(nx, ny)
    return tuple(
        edge for edge, (ox, oy) in EDGE_OUTWARDS.items() if length and (ox * nx + oy * ny) / length >= FACING_COS
    )


def never_counts(
    where: str, name: str, polyline: tuple[Point, ...], band: float, missing: frozenset[int], width: int, height: int
) -> str:
    """Why a line with no room beyond its band on the ``missing`` sides never counts, and what to do."""
    edges = [edge for edge in EDGE_OUTWARDS if any(edge in _facing_edges(polyline, side) for side in missing)]
    named = f"{' and '.join(edges)} edge{'s' * (len(edges) > 1)}" if edges else "edges"
    return (
        f"{where}: line {name!r} lies within its dead band ({band:.3g} px) of the {width}x{height} frame's {named}:"
        " nothing gets beyond the band on that side, so it can never count a crossing, in or out (each needs both"
        " sides); move it further in or lower its hysteresis"
    )


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
