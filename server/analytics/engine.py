"""One stream's analytics: per-track zone visits and line sides, on the inference thread after the tracker.

Time is media time throughout (dwell, loitering), so skipped frames and a slow worker do not stretch
or shrink a visit. A track the tracker still keeps while it is lost keeps its visits and line side;
its zones are left when the tracker ends it, with the dwell up to the last frame it was seen inside.

Zone membership has hysteresis too: a track enters at ``min_share`` of its area inside and leaves
below `EXIT_SHARE_RATIO` of that, so a mask whose share wobbles around the threshold makes one visit.

A frame's analytics are all or nothing (`StreamAnalytics.update`): what they remember between frames
changes only with the events that report it.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import cv2
import numpy as np

from server.analytics.events import AnalyticsEvent, AnalyticsEventKind, Counts, DwellHistogram, FrameAnalytics
from server.analytics.shapes import Anchor, Line, Point, Zone, cross, resolve, resolve_zone, segments_intersect
from server.frames import Frame, Track, TrackEvent, TrackEventKind

log = logging.getLogger(__name__)

EXIT_SHARE_RATIO = 0.8
#: A box this close to the frame's edge touches it: the object may be leaving the picture.
EDGE_MARGIN_PX = 2.0
#: The least travel towards that edge that says it was leaving, on a line without a dead band.
MIN_TRAVEL_PX = 1.0
DIRECTIONS = ("in", "out")
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


def check_classes(zones: tuple[Zone, ...], lines: tuple[Line, ...], class_names: dict[int, str]) -> None:
    """ValueError naming the first zone or line whose class filter names a class the model does not know."""
    known = set(class_names.values())
    shapes: tuple[tuple[str, tuple[Zone | Line, ...]], ...] = (("zones", zones), ("lines", lines))
    for key, group in shapes:
        for i, shape in enumerate(group):
            for name in shape.classes:
                if name not in known:
                    raise ValueError(
                        f"{key}[{i}].classes: the model has no class {name!r}; it knows {', '.join(sorted(known))}"
                    )


def check_fit(
    zones: tuple[Zone, ...],
    lines: tuple[Line, ...],
    width: int,
    height: int,
    old_zones: tuple[Zone, ...] = (),
    old_lines: tuple[Line, ...] = (),
) -> None:
    """ValueError naming the first zone or line in pixels with a point outside a ``width`` x ``height`` frame.

    Those among ``old_zones`` and ``old_lines`` (the stream's own, as they are) are not checked: one the
    stream already leaves out for not fitting stays, left out, until a frame it fits comes.
    """
    for i, zone in enumerate(zones):
        if zone not in old_zones:
            resolve(zone.points, zone.units, width, height, f"zones[{i}].points")
    for i, line in enumerate(lines):
        if line not in old_lines:
            resolve(line.points, line.units, width, height, f"lines[{i}].points")


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


def _never_counts(
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


@dataclass(slots=True)
class _Visit:
    entered: float  # media time of the first frame inside
    last_inside: float
    #: The track's class when last seen inside: its exit is counted under it, whatever the class is then.
    class_id: int
    class_name: str
    loitered: bool = False

    def copy(self) -> _Visit:
        """A copy to change (`_State.visit`)."""
        return _Visit(self.entered, self.last_inside, self.class_id, self.class_name, self.loitered)


@dataclass(frozen=True, slots=True)
class _Pending:
    """A stay across a line (beyond its band) that has not yet lasted ``confirm_s``: where it began."""

    capture_time: float
    media_time: float
    point: Point  # the anchor then
    band: float  # the line's dead band then, in pixels (it follows the frame's size)


@dataclass(slots=True)
class _LineState:
    side: int  # the last side the anchor was on beyond the dead band; 0 until it first was
    last_point: Point
    #: The track's class when last seen: a crossing still pending when the track ends is counted under it.
    class_id: int
    class_name: str
    last_seen: float  # media time of the last frame the track was seen
    edges: frozenset[str]  # the frame's edges its box touched then (it may have left the picture)
    path_crossed: bool = False  # whether the anchor's path since then went over the line
    pending: _Pending | None = None  # its current stay across, until the crossing counts

    def copy(self) -> _LineState:
        """A copy to change (`_State.line_state`)."""
        return _LineState(
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


@dataclass(slots=True)
class _State:
    """What the analytics remember from frame to frame.

    `StreamAnalytics.update` works on a `draft` and keeps it only once the whole frame is done. A
    draft shares the visits and line states of the state it was made from until it changes them: it
    changes one only through `visit` and `line_state`, which copy it the first time. Reading, adding
    and removing need no copy, as the draft's maps are its own.
    """

    visits: dict[tuple[int, str], _Visit]
    line_states: dict[tuple[int, str], _LineState]
    #: line -> class -> direction -> crossings; the classes a line is limited to are there from the start.
    crossings: dict[str, dict[str, dict[str, int]]]
    dwell: dict[str, DwellHistogram]  # zone -> finished visits
    zone_classes: dict[str, set[str]]  # zone -> the classes once seen in it (listed at 0 when it empties)
    #: The keys of the visits and line states a draft has copied: its own to change.
    copied_visits: set[tuple[int, str]] = field(default_factory=set)
    copied_line_states: set[tuple[int, str]] = field(default_factory=set)

    def draft(self) -> _State:
        """A state to change that changes nothing of this one (`DwellHistogram` is immutable). Its maps
        are copies; crossings and zone classes, which grow with the shapes and classes but not with the
        tracks, are copied whole, a visit or line state the first time it is changed: a frame changes
        most of them, but copying one by hand costs about a seventh of `dataclasses.replace`."""
        return _State(
            dict(self.visits),
            dict(self.line_states),
            {line: {name: dict(d) for name, d in by_class.items()} for line, by_class in self.crossings.items()},
            dict(self.dwell),
            {zone: set(classes) for zone, classes in self.zone_classes.items()},
        )

    def visit(self, key: tuple[int, str]) -> _Visit | None:
        """The visit at ``key``, to change."""
        visit = self.visits.get(key)
        if visit is not None and key not in self.copied_visits:
            visit = self.visits[key] = visit.copy()
            self.copied_visits.add(key)
        return visit

    def line_state(self, key: tuple[int, str]) -> _LineState | None:
        """The line state at ``key``, to change."""
        line_state = self.line_states.get(key)
        if line_state is not None and key not in self.copied_line_states:
            line_state = self.line_states[key] = line_state.copy()
            self.copied_line_states.add(key)
        return line_state

    def count_crossing(self, line: str, class_name: str, direction: str) -> None:
        """Count a crossing of ``line`` in ``direction`` by a ``class_name`` (a new class starts at 0 both ways)."""
        by_class = self.crossings[line].setdefault(class_name, dict.fromkeys(DIRECTIONS, 0))
        by_class[direction] += 1

    def count_visit(self, zone: str, dwell_s: float) -> None:
        """Count a finished visit to ``zone`` in its dwell histogram."""
        self.dwell[zone] = self.dwell[zone].adding(dwell_s)


@dataclass(frozen=True, slots=True)
class _Resolved:
    """The shapes in pixels of one frame size, and each zone's filled mask."""

    zones: tuple[tuple[Zone, tuple[Point, ...], np.ndarray], ...]  # zone, pixel points, filled mask
    lines: tuple[tuple[Line, tuple[Point, ...], float], ...]  # line, pixel points, dead band px


class StreamAnalytics:
    """Zones and lines of one stream; feed it each frame's tracks and track events in order.

    Not thread-safe: the inference thread is its only writer. `counts` is replaced whole after
    every frame, so other threads may read it; `frame_analytics` is what the frame's result carries.

    A shape in pixels that does not fit the frame (drawn for another camera, or the camera's
    resolution changed) is left out, and `problems` says why, while the other shapes, the tracks and
    the video carry on: the frame size is only known once frames come, long after the options were
    accepted. So is whether a line lies within its dead band of the frame's edge, where it can never
    count: it stays, at zero, and `problems` says so.
    """

    def __init__(self, stream_id: str, zones: tuple[Zone, ...], lines: tuple[Line, ...]) -> None:
        self.stream_id = stream_id
        self._zones = zones
        self._lines = lines
        self._resolved: _Resolved | None = None
        self._size: tuple[int, int] | None = None
        # The classes a shape is limited to are listed at 0 from the start, as a class is after it was
        # first seen: a counter that first appears at 1 loses that crossing to Prometheus' rate() and
        # increase(), and a gauge that appears only when it is not 0 reads as "unknown" before.
        self._state = _State(
            {},
            {},
            {line.name: {name: dict.fromkeys(DIRECTIONS, 0) for name in line.classes} for line in lines},
            {zone.name: DwellHistogram() for zone in zones},
            {zone.name: set(zone.classes) for zone in zones},
        )
        self.counts = Counts()
        self.frame_analytics: FrameAnalytics | None = None
        #: Why shapes are left out at the current frame size, or can never count at it, one line each;
        #: empty when all fit.
        self.problems: tuple[str, ...] = ()

    def update(
        self, tracks: tuple[Track, ...], track_events: tuple[TrackEvent, ...], frame: Frame
    ) -> tuple[tuple[Track, ...], tuple[TrackEvent | AnalyticsEvent, ...]]:
        """This frame's tracks, each with the zones it is in, and its events: the tracker's and ours, in order.

        All or nothing: the frame is judged on a draft of what the analytics remember, which takes its
        place, with new `counts`, only once the whole frame is done. If it raises, nothing has changed
        and the frame made no event, so the events a caller delivers always agree with the counts: a
        visit entered or a crossing counted partway through a frame has no event to report it, and its
        events cannot simply be handed out (the zone gauges of half a frame's tracks are no frame's). A
        caller then settles the frame's track ends with `ended`. All or nothing also keeps intact the
        analytics this one was `reshaped` from, which share its state until its first frame is done:
        shapes that fail to apply are tried again from them on the next frame.
        """
        resolved = self._resolve(frame)
        state = self._state.draft()
        events: list[AnalyticsEvent] = []
        # Classes once seen in a zone stay at 0 when it empties: a gauge that vanishes reads as "unknown".
        inside_now = {
            zone.name: dict.fromkeys(sorted(state.zone_classes[zone.name]), 0) for zone, _, _ in resolved.zones
        }
        marked: list[Track] = []
        for track in tracks:
            zones = self._update_zones(state, track, resolved, frame, events)
            for name in zones:
                by_class = inside_now[name]
                by_class[track.class_name] = by_class.get(track.class_name, 0) + 1
                state.zone_classes[name].add(track.class_name)
            self._update_lines(state, track, resolved, frame, events)
            marked.append(replace(track, zones=zones) if zones else track)
        starts = [e for e in track_events if e.kind is TrackEventKind.START]
        ends = [e for e in track_events if e.kind is TrackEventKind.END]
        for ended in ends:
            events += self._forget(state, ended, frame)
        self._state = state
        self.counts = self._counts(MappingProxyType(inside_now), tuple(line.name for line, _, _ in resolved.lines))
        self.frame_analytics = FrameAnalytics(
            self.counts,
            tuple((zone.name, _outline(points)) for zone, points, _ in resolved.zones),
            tuple((line.name, _outline(points)) for line, points, _ in resolved.lines),
        )
        return tuple(marked), (*starts, *events, *ends)

    @property
    def size(self) -> tuple[int, int] | None:
        """The (width, height) of the frame its shapes were last resolved in, None before any."""
        return self._size

    def counts_for(self, zones: tuple[Zone, ...], lines: tuple[Line, ...]) -> Counts:
        """The newest `counts` of those of its shapes that are among ``zones`` and ``lines``, in the same place.

        A stream's shapes are changed from another thread and taken up on its next frame: until then
        the counts of a zone removed or moved are an old shape's, which no reader should get (a
        stream whose file has ended has no next frame). A shape whose settings only changed keeps
        its counts (`reshaped`).
        """
        zone_places, line_places = {zone.place for zone in zones}, {line.place for line in lines}
        kept_zones = {zone.name for zone in self._zones if zone.place in zone_places}
        kept_lines = {line.name for line in self._lines if line.place in line_places}
        if len(kept_zones) == len(self._zones) and len(kept_lines) == len(self._lines):
            return self.counts
        return self.counts.only(kept_zones, kept_lines)

    def ended(self, track_events: tuple[TrackEvent, ...], frame: Frame) -> tuple[AnalyticsEvent, ...]:
        """What the ends among ``track_events`` make here and nothing else: the zone exits and the
        crossings those tracks were last seen making (`update` makes them too, with the rest of a frame).
        For a stream restarted with new settings, whose old tracks end in the analytics that followed them
        while its new analytics take over, and for a frame whose `update` failed (`server.inference.analysis`).

        All or nothing, like `update`; `counts` takes in the crossings and dwell times it adds, its zone
        gauges stay those of the last frame `update` judged."""
        ends = [event for event in track_events if event.kind is TrackEventKind.END]
        state = self._state.draft()
        events = tuple(event for ended in ends for event in self._forget(state, ended, frame))
        self._state = state
        self.counts = self._counts(self.counts.zones, tuple(self.counts.lines))
        return events

    def count_settled(self, settled: tuple[AnalyticsEvent, ...], made_in: StreamAnalytics) -> None:
        """Count here zone exits and crossings settled in ``made_in`` (`ended`, `reshaped`): those of a
        restarted stream's old tracks, which end in its old analytics on its first frame
        (`server.inference.analysis`) and go out as that frame's events, so its new counts must hold them too.

        Each counts under the zone or line here in the same `place` as the one that made it, as
        `reshaped` keeps a shape's counts; one whose shape was removed or moved is not counted. All or
        nothing, like `ended`; `counts` takes them in, its zone gauges stay those of the last frame judged.
        """
        zone_places, line_places = {zone.place for zone in made_in._zones}, {line.place for line in made_in._lines}
        zones = {zone.name for zone in self._zones if zone.place in zone_places}
        lines = {line.name for line in self._lines if line.place in line_places}
        state = self._state.draft()
        for event in settled:
            if event.kind is AnalyticsEventKind.ZONE_EXIT and event.zone in zones and event.dwell_s is not None:
                state.count_visit(event.zone, event.dwell_s)
            elif event.kind is AnalyticsEventKind.LINE_CROSS and event.line in lines and event.direction is not None:
                state.count_crossing(event.line, event.class_name, event.direction)
        self._state = state
        self.counts = self._counts(self.counts.zones, tuple(self.counts.lines))

    def reshaped(
        self, zones: tuple[Zone, ...], lines: tuple[Line, ...], frame: Frame
    ) -> tuple[StreamAnalytics, tuple[AnalyticsEvent, ...]]:
        """These analytics with new shapes, and the zone exits that the change makes.

        A zone or line in the same `place` keeps its state, so that drawing a new line does not
        disturb the counts of the others, and tuning one (its classes, ``min_share``, ``loiter_s``,
        ``hysteresis``, ``confirm_s``) does not disturb its own: visits in progress, dwell histogram,
        crossings counted and each track's side; the new settings judge the next frame (a visit by a
        class no longer counted ends there, `_update_zones`). A line's new ``anchor`` is another
        point of each track: their sides start afresh, a crossing in progress is not counted. A
        visit to a zone that was removed or moved ends at ``frame`` (its dwell up to the last frame
        seen inside); a moved line counts from zero.
        """
        successor = StreamAnalytics(self.stream_id, zones, lines)
        zone_places = {zone.place for zone in self._zones}
        kept_zones = {zone.name for zone in zones if zone.place in zone_places}
        old_lines = {line.place: line for line in self._lines}
        kept_lines = {line.name for line in lines if line.place in old_lines}
        kept_sides = {
            line.name for line in lines if line.place in old_lines and old_lines[line.place].anchor is line.anchor
        }
        ours, theirs = self._state, successor._state
        exits = tuple(
            self._exit(ours, track_id, zone, frame) for track_id, zone in list(ours.visits) if zone not in kept_zones
        )
        theirs.visits = {key: visit for key, visit in ours.visits.items() if key[1] in kept_zones}
        theirs.line_states = {key: state for key, state in ours.line_states.items() if key[1] in kept_sides}
        # The classes a tuned shape is now limited to join those it listed: they start at 0 like a new shape's.
        for name in kept_zones:
            theirs.dwell[name] = ours.dwell[name]
            theirs.zone_classes[name] = ours.zone_classes[name] | theirs.zone_classes[name]
        for name in kept_lines:
            theirs.crossings[name] = theirs.crossings[name] | ours.crossings[name]
        return successor, exits

    def _counts(self, zones: Mapping[str, Mapping[str, int]], lines: tuple[str, ...]) -> Counts:
        """`counts` with the zone gauges ``zones`` and the crossings of ``lines``, from what is remembered now."""
        crossings = self._state.crossings
        return Counts(
            zones,
            MappingProxyType({line: {name: dict(d) for name, d in crossings[line].items()} for line in lines}),
            MappingProxyType(dict(self._state.dwell)),
        )

    def _resolve(self, frame: Frame) -> _Resolved:
        height, width = frame.image.shape[:2]
        if self._resolved is not None and self._size == (width, height):
            return self._resolved
        zones, lines, problems = [], [], []
        for i, zone in enumerate(self._zones):
            try:
                points = resolve_zone(zone, width, height, f"zones[{i}].points")
            except ValueError as exc:
                problems.append(f"{exc}; zone {zone.name!r} is left out")
                continue
            mask = np.zeros((height, width), dtype=np.uint8)
            cv2.fillPoly(mask, [np.round(np.array(points)).astype(np.int32)], 1)
            zones.append((zone, points, mask.astype(bool)))
        for i, line in enumerate(self._lines):
            try:
                points = resolve(line.points, line.units, width, height, f"lines[{i}].points")
            except ValueError as exc:
                problems.append(f"{exc}; line {line.name!r} is left out")
                continue
            band = line.hysteresis * min(width, height)
            lines.append((line, points, band))
            if missing := sides_without_room(points, band, width, height):
                problems.append(_never_counts(f"lines[{i}]", line.name, points, band, missing, width, height))
        for problem in problems:
            log.warning("[%s] %s", self.stream_id, problem)
        self.problems = tuple(problems)
        self._size, self._resolved = (width, height), _Resolved(tuple(zones), tuple(lines))
        return self._resolved

    def _update_zones(
        self, state: _State, track: Track, resolved: _Resolved, frame: Frame, events: list[AnalyticsEvent]
    ) -> tuple[str, ...]:
        inside: list[str] = []
        area = None
        for zone, _, mask in resolved.zones:
            key = (track.track_id, zone.name)
            if zone.classes and track.class_name not in zone.classes:
                if key in state.visits:  # its class changed (the tracker's vote): it is no longer one the zone counts
                    events.append(self._exit(state, track.track_id, zone.name, frame))
                continue
            if area is None:
                area = track_area(track, mask.shape)
            share = share_inside(area, mask)
            visit = state.visit(key)
            if visit is None and share >= zone.min_share:
                visit = state.visits[key] = _Visit(frame.media_time, frame.media_time, track.class_id, track.class_name)
                events.append(self._event(AnalyticsEventKind.ZONE_ENTER, track, frame, zone=zone.name))
            elif visit is not None and share < zone.min_share * EXIT_SHARE_RATIO:
                events.append(self._exit(state, track.track_id, zone.name, frame))
                continue
            if visit is None:
                continue
            visit.last_inside = frame.media_time
            visit.class_id, visit.class_name = track.class_id, track.class_name
            inside.append(zone.name)
            dwell = visit.last_inside - visit.entered
            if zone.loiter_s is not None and not visit.loitered and dwell > zone.loiter_s:
                visit.loitered = True
                events.append(self._event(AnalyticsEventKind.LOITER, track, frame, zone=zone.name, dwell_s=dwell))
        return tuple(inside)

    def _update_lines(
        self, state: _State, track: Track, resolved: _Resolved, frame: Frame, events: list[AnalyticsEvent]
    ) -> None:
        height, width = frame.image.shape[:2]
        edges = edges_touched(track.box, width, height)
        for line, points, band in resolved.lines:
            key = (track.track_id, line.name)
            if line.classes and track.class_name not in line.classes:
                # Its class changed (the tracker's vote): what it did as a class the line counts is
                # dropped with a crossing it had pending, and it starts afresh if the class comes back.
                state.line_states.pop(key, None)
                continue
            point = anchor_point(track, line.anchor)
            side, distance = side_of(point, points)
            line_state = state.line_state(key)
            if line_state is None:
                state.line_states[key] = _LineState(
                    side if distance > band else 0, point, track.class_id, track.class_name, frame.media_time, edges
                )
                continue
            line_state.class_id, line_state.class_name = track.class_id, track.class_name
            line_state.last_seen, line_state.edges = frame.media_time, edges
            line_state.path_crossed |= crosses(line_state.last_point, point, points)
            line_state.last_point = point
            if distance <= band:
                # In the dead band the side is not decided, and a stay across that it interrupts
                # starts again: a nearer object that hides a track's lower part for a moment lifts
                # its point over the line and back into the band, which is no crossing yet.
                line_state.pending = None
                continue
            if not line_state.side or side == line_state.side or not line_state.path_crossed:
                # First sighting beyond the band, back where it was, or round the end of the line.
                line_state.side, line_state.path_crossed, line_state.pending = side, False, None
                continue
            if line_state.pending is None:
                line_state.pending = _Pending(frame.capture_time, frame.media_time, point, band)
            if frame.media_time - line_state.pending.media_time >= line.confirm_s:
                events.append(self._cross(state, line_state, line.name, track.track_id))
                line_state.side, line_state.path_crossed, line_state.pending = -line_state.side, False, None

    def _cross(self, state: _State, line_state: _LineState, line: str, track_id: int) -> AnalyticsEvent:
        """Count the crossing ``line_state`` has pending, dated when its stay across began, under the class then.

        Only the counts change: ``line_state`` may be shared with the state the draft was made from."""
        pending = line_state.pending
        assert pending is not None
        direction = "in" if line_state.side < 0 else "out"  # the side it came from: left of the line is "in"
        class_id, class_name = line_state.class_id, line_state.class_name
        state.count_crossing(line, class_name, direction)
        return AnalyticsEvent(
            AnalyticsEventKind.LINE_CROSS,
            self.stream_id,
            track_id,
            class_id,
            class_name,
            pending.capture_time,
            pending.media_time,
            line=line,
            direction=direction,
        )

    def _forget(self, state: _State, ended: TrackEvent, frame: Frame) -> list[AnalyticsEvent]:
        """Leave every zone of a track the tracker gave up on, and settle a crossing it was last seen making.

        A crossing still pending counts if it had already stayed across for half its line's
        ``confirm_s``, or if the track was last seen leaving the picture (`_LineState.left_the_picture`);
        otherwise it is dropped: a nearer object that hides a standing track's lower part lifts its
        bottom edge over the line for a moment, and may then hide it for good.
        """
        events = [
            self._exit(state, ended.track_id, zone, frame)
            for track_id, zone in list(state.visits)
            if track_id == ended.track_id
        ]
        for line in self._lines:
            line_state = state.line_states.pop((ended.track_id, line.name), None)
            if line_state is None or line_state.pending is None:
                continue
            held = line_state.last_seen - line_state.pending.media_time >= line.confirm_s / 2
            if held or line_state.left_the_picture():
                events.append(self._cross(state, line_state, line.name, ended.track_id))
        return events

    def _exit(self, state: _State, track_id: int, zone: str, frame: Frame) -> AnalyticsEvent:
        """End the track's visit to ``zone`` at ``frame``, counted under the class it was last seen inside as."""
        visit = state.visits.pop((track_id, zone))
        class_id, class_name = visit.class_id, visit.class_name
        dwell = visit.last_inside - visit.entered
        state.count_visit(zone, dwell)
        log.debug("[%s] track %d left zone %s after %.2f s", self.stream_id, track_id, zone, dwell)
        return AnalyticsEvent(
            AnalyticsEventKind.ZONE_EXIT,
            self.stream_id,
            track_id,
            class_id,
            class_name,
            frame.capture_time,
            frame.media_time,
            zone=zone,
            dwell_s=dwell,
        )

    def _event(
        self,
        kind: AnalyticsEventKind,
        track: Track,
        frame: Frame,
        *,
        zone: str | None = None,
        line: str | None = None,
        direction: str | None = None,
        dwell_s: float | None = None,
    ) -> AnalyticsEvent:
        return AnalyticsEvent(
            kind,
            self.stream_id,
            track.track_id,
            track.class_id,
            track.class_name,
            frame.capture_time,
            frame.media_time,
            zone,
            line,
            direction,
            dwell_s,
        )


def track_area(track: Track, shape: tuple[int, ...]) -> tuple[tuple[int, int], np.ndarray]:
    """The track's mask (or, without one, its box) as an offset and a boolean crop of the frame (empty outside it)."""
    height, width = shape[:2]
    x1, y1, x2, y2 = track.box
    left, top = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
    right, bottom = min(width, int(np.ceil(x2)) + 1), min(height, int(np.ceil(y2)) + 1)
    if track.polygon is not None and len(track.polygon) >= 3:
        polygon = track.polygon.astype(np.int32)
        left, top = max(0, min(left, int(polygon[:, 0].min()))), max(0, min(top, int(polygon[:, 1].min())))
        right = min(width, max(right, int(polygon[:, 0].max()) + 1))
        bottom = min(height, max(bottom, int(polygon[:, 1].max()) + 1))
        crop = np.zeros((max(0, bottom - top), max(0, right - left)), dtype=np.uint8)
        if crop.size:  # an outline wholly outside the frame has no area in it, and cv2 refuses an empty image
            cv2.fillPoly(crop, [polygon - np.array([left, top], dtype=np.int32)], 1)
        return (left, top), crop.astype(bool)
    return (left, top), np.ones((max(0, bottom - top), max(0, right - left)), dtype=bool)


def share_inside(area: tuple[tuple[int, int], np.ndarray], zone_mask: np.ndarray) -> float:
    """The share of the track's area that lies in the zone (0 for an empty area)."""
    (left, top), crop = area
    total = int(crop.sum())
    if total == 0:
        return 0.0
    window = zone_mask[top : top + crop.shape[0], left : left + crop.shape[1]]
    return int((crop & window).sum()) / total


def _outline(points: tuple[Point, ...]) -> np.ndarray:
    return np.round(np.array(points)).astype(np.int32)
