"""Plane geometry of points and polylines in a frame's pixels, image axes (y down): which side of a line a
point is on, whether segments meet, and whether a line leaves a track room to cross it in a frame.

Shared by the shapes' checks (`server.analytics.shapes`, which refuses a line with no room at once where
the frame size is known) and the crossing rule (`server.analytics.line_crossing`); it imports neither.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

Point = tuple[float, float]

#: Each edge of the frame and the way out of the picture across it (image axes, y down).
EDGE_OUTWARDS: dict[str, tuple[int, int]] = {"left": (-1, 0), "top": (0, -1), "right": (1, 0), "bottom": (0, 1)}
#: How room across a line is sought (`sides_without_room`): from this many parts of each segment, a
#: point straight across at the band's distance (plus a hair) and at three times it (for a bent line,
#: whose other segments may come nearer than the one it is tried from).
ROOM_PARTS = 8
ROOM_MARGIN_PX = 1e-3
ROOM_REACHES = (1.0, 3.0)
#: cos(67.5 degrees): a line's side faces the one edge its normal is nearest, or two at a corner (`facing_edges`).
FACING_COS = 0.38


def cross(o: Point, a: Point, b: Point) -> float:
    """Twice the signed area of o-a-b; in image axes (y down) positive when b lies right of the way o->a."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def segments_intersect(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """Whether closed segments p1-p2 and q1-q2 share a point."""
    d1, d2 = cross(q1, q2, p1), cross(q1, q2, p2)
    d3, d4 = cross(p1, p2, q1), cross(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and d1 and d2 and d3 and d4:
        return True
    return (
        (d1 == 0 and _on_segment(q1, q2, p1))
        or (d2 == 0 and _on_segment(q1, q2, p2))
        or (d3 == 0 and _on_segment(p1, p2, q1))
        or (d4 == 0 and _on_segment(p1, p2, q2))
    )


def _on_segment(a: Point, b: Point, p: Point) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


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


def facing_edges(polyline: tuple[Point, ...], side: int) -> tuple[str, ...]:
    """The edges of the frame that ``side`` of ``polyline`` faces, to name in a warning: those whose way
    out (`EDGE_OUTWARDS`) is within 67.5 degrees of the normal, on that side, of its first-to-last chord
    (the sum of its segments' normals, each as long as its segment); none for a line that ends where it began."""
    (x0, y0), (x1, y1) = polyline[0], polyline[-1]
    nx, ny = side * (y0 - y1), side * (x1 - x0)
    length = math.hypot(nx, ny)
    return tuple(
        edge for edge, (ox, oy) in EDGE_OUTWARDS.items() if length and (ox * nx + oy * ny) / length >= FACING_COS
    )
