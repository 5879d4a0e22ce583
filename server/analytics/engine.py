"""One stream's analytics: per-track zone visits and line sides, on the inference thread after the tracker.

Time is media time throughout (dwell, loitering), so skipped frames and a slow worker do not stretch
or shrink a visit. A track the tracker still keeps while it is lost keeps its visits and line side;
its zones are left when the tracker ends it, with the dwell up to the last frame it was seen inside.

Zone membership has hysteresis too: a track enters at ``min_share`` of its area inside and leaves
below `EXIT_SHARE_RATIO` of that, so a mask whose share wobbles around the threshold makes one visit.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, replace
from types import MappingProxyType

import cv2
import numpy as np

from server.analytics.events import AnalyticsEvent, AnalyticsEventKind, Counts, DwellHistogram, FrameAnalytics
from server.analytics.shapes import Anchor, Line, Point, Zone, cross, resolve, segments_intersect
from server.frames import Frame, Track, TrackEvent, TrackEventKind

log = logging.getLogger(__name__)

EXIT_SHARE_RATIO = 0.8
#: A box this close to the frame's edge touches it: the object may be leaving the picture.
EDGE_MARGIN_PX = 2.0
DIRECTIONS = ("in", "out")


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


def crosses(p: Point, q: Point, polyline: tuple[Point, ...]) -> bool:
    return any(segments_intersect(p, q, a, b) for a, b in itertools.pairwise(polyline))


@dataclass(slots=True)
class _Visit:
    entered: float  # media time of the first frame inside
    last_inside: float
    #: The track's class when last seen inside: its exit is counted under it, whatever the class is then.
    class_id: int
    class_name: str
    loitered: bool = False


@dataclass(slots=True)
class _LineState:
    side: int  # the last side the anchor was on beyond the dead band; 0 until it first was
    last_point: Point
    #: The track's class when last seen: a crossing still pending when the track ends is counted under it.
    class_id: int
    class_name: str
    last_seen: float  # media time of the last frame the track was seen
    at_edge: bool  # whether it touched the frame's edge then (it may have left the picture)
    path_crossed: bool = False  # whether the anchor's path since then went over the line
    #: Capture and media time its current stay across (beyond the band) began, until the crossing counts.
    pending: tuple[float, float] | None = None


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
    accepted.
    """

    def __init__(self, stream_id: str, zones: tuple[Zone, ...], lines: tuple[Line, ...]) -> None:
        self.stream_id = stream_id
        self._zones = zones
        self._lines = lines
        self._resolved: _Resolved | None = None
        self._size: tuple[int, int] | None = None
        self._visits: dict[tuple[int, str], _Visit] = {}
        self._line_states: dict[tuple[int, str], _LineState] = {}
        # The classes a shape is limited to are listed at 0 from the start, as a class is after it was
        # first seen: a counter that first appears at 1 loses that crossing to Prometheus' rate() and
        # increase(), and a gauge that appears only when it is not 0 reads as "unknown" before.
        self._crossings: dict[str, dict[str, dict[str, int]]] = {
            line.name: {name: dict.fromkeys(DIRECTIONS, 0) for name in line.classes} for line in lines
        }
        self._dwell: dict[str, DwellHistogram] = {zone.name: DwellHistogram() for zone in zones}
        self._zone_classes: dict[str, set[str]] = {zone.name: set(zone.classes) for zone in zones}
        self.counts = Counts()
        self.frame_analytics: FrameAnalytics | None = None
        #: Why shapes are left out at the current frame size, one line each; empty when all fit.
        self.problems: tuple[str, ...] = ()

    def update(
        self, tracks: tuple[Track, ...], track_events: tuple[TrackEvent, ...], frame: Frame
    ) -> tuple[tuple[Track, ...], tuple[TrackEvent | AnalyticsEvent, ...]]:
        """This frame's tracks, each with the zones it is in, and its events: the tracker's and ours, in order."""
        resolved = self._resolve(frame)
        events: list[AnalyticsEvent] = []
        # Classes once seen in a zone stay at 0 when it empties: a gauge that vanishes reads as "unknown".
        inside_now = {
            zone.name: dict.fromkeys(sorted(self._zone_classes[zone.name]), 0) for zone, _, _ in resolved.zones
        }
        marked: list[Track] = []
        for track in tracks:
            zones = self._update_zones(track, resolved, frame, events)
            for name in zones:
                by_class = inside_now[name]
                by_class[track.class_name] = by_class.get(track.class_name, 0) + 1
                self._zone_classes[name].add(track.class_name)
            self._update_lines(track, resolved, frame, events)
            marked.append(replace(track, zones=zones) if zones else track)
        starts = [e for e in track_events if e.kind is TrackEventKind.START]
        ends = [e for e in track_events if e.kind is TrackEventKind.END]
        for ended in ends:
            events += self._forget(ended, frame)
        self.counts = Counts(
            MappingProxyType(inside_now),
            MappingProxyType(
                {
                    line.name: {name: dict(d) for name, d in self._crossings[line.name].items()}
                    for line, _, _ in resolved.lines
                }
            ),
            MappingProxyType(dict(self._dwell)),
        )
        self.frame_analytics = FrameAnalytics(
            self.counts,
            tuple((zone.name, _outline(points)) for zone, points, _ in resolved.zones),
            tuple((line.name, _outline(points)) for line, points, _ in resolved.lines),
        )
        return tuple(marked), (*starts, *events, *ends)

    def counts_for(self, zones: tuple[Zone, ...], lines: tuple[Line, ...]) -> Counts:
        """The newest `counts` of those of its shapes that are among ``zones`` and ``lines`` as they are.

        A stream's shapes are changed from another thread and taken up on its next frame: until then
        the counts of a zone removed or redefined are an old shape's, which no reader should get (a
        stream whose file has ended has no next frame).
        """
        kept_zones = {zone.name for zone in self._zones if zone in zones}
        kept_lines = {line.name for line in self._lines if line in lines}
        if len(kept_zones) == len(self._zones) and len(kept_lines) == len(self._lines):
            return self.counts
        return self.counts.only(kept_zones, kept_lines)

    def ended(self, track_events: tuple[TrackEvent, ...], frame: Frame) -> tuple[AnalyticsEvent, ...]:
        """What the ends among ``track_events`` make here and nothing else: the zone exits and the
        crossings those tracks were last seen making (`update` makes them too, with the rest of a frame).
        For a stream restarted with new settings, whose old tracks end in the analytics that followed them
        while its new analytics take over (`server.inference.worker`)."""
        ends = [event for event in track_events if event.kind is TrackEventKind.END]
        return tuple(event for ended in ends for event in self._forget(ended, frame))

    def reshaped(
        self, zones: tuple[Zone, ...], lines: tuple[Line, ...], frame: Frame
    ) -> tuple[StreamAnalytics, tuple[AnalyticsEvent, ...]]:
        """These analytics with new shapes, and the zone exits that the change makes.

        A zone or line whose definition did not change keeps its state: visits in progress, dwell
        histogram, crossings counted and each track's side, so that drawing a new line does not
        disturb the counts of the others. A visit to a zone that was removed or changed ends at
        ``frame`` (its dwell up to the last frame seen inside); a changed line counts from zero.
        """
        successor = StreamAnalytics(self.stream_id, zones, lines)
        kept_zones = {zone.name for zone in zones if zone in self._zones}
        kept_lines = {line.name for line in lines if line in self._lines}
        exits = tuple(
            self._exit(track_id, zone, frame) for track_id, zone in list(self._visits) if zone not in kept_zones
        )
        successor._visits = {key: visit for key, visit in self._visits.items() if key[1] in kept_zones}
        successor._line_states = {key: state for key, state in self._line_states.items() if key[1] in kept_lines}
        for name in kept_zones:
            successor._dwell[name], successor._zone_classes[name] = self._dwell[name], self._zone_classes[name]
        for name in kept_lines:
            successor._crossings[name] = self._crossings[name]
        return successor, exits

    def _resolve(self, frame: Frame) -> _Resolved:
        height, width = frame.image.shape[:2]
        if self._resolved is not None and self._size == (width, height):
            return self._resolved
        zones, lines, problems = [], [], []
        for i, zone in enumerate(self._zones):
            try:
                points = resolve(zone.points, zone.units, width, height, f"zones[{i}].points")
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
            lines.append((line, points, line.hysteresis * min(width, height)))
        for problem in problems:
            log.warning("[%s] %s", self.stream_id, problem)
        self.problems = tuple(problems)
        self._size, self._resolved = (width, height), _Resolved(tuple(zones), tuple(lines))
        return self._resolved

    def _update_zones(
        self, track: Track, resolved: _Resolved, frame: Frame, events: list[AnalyticsEvent]
    ) -> tuple[str, ...]:
        inside: list[str] = []
        area = None
        for zone, _, mask in resolved.zones:
            key = (track.track_id, zone.name)
            if zone.classes and track.class_name not in zone.classes:
                if key in self._visits:  # its class changed (the tracker's vote): it is no longer one the zone counts
                    events.append(self._exit(track.track_id, zone.name, frame))
                continue
            if area is None:
                area = track_area(track, mask.shape)
            share = share_inside(area, mask)
            visit = self._visits.get(key)
            if visit is None and share >= zone.min_share:
                visit = self._visits[key] = _Visit(frame.media_time, frame.media_time, track.class_id, track.class_name)
                events.append(self._event(AnalyticsEventKind.ZONE_ENTER, track, frame, zone=zone.name))
            elif visit is not None and share < zone.min_share * EXIT_SHARE_RATIO:
                events.append(self._exit(track.track_id, zone.name, frame))
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

    def _update_lines(self, track: Track, resolved: _Resolved, frame: Frame, events: list[AnalyticsEvent]) -> None:
        height, width = frame.image.shape[:2]
        x1, y1, x2, y2 = track.box
        at_edge = min(x1, y1) <= EDGE_MARGIN_PX or x2 >= width - EDGE_MARGIN_PX or y2 >= height - EDGE_MARGIN_PX
        for line, points, band in resolved.lines:
            key = (track.track_id, line.name)
            if line.classes and track.class_name not in line.classes:
                # Its class changed (the tracker's vote): what it did as a class the line counts is
                # dropped with a crossing it had pending, and it starts afresh if the class comes back.
                self._line_states.pop(key, None)
                continue
            point = anchor_point(track, line.anchor)
            side, distance = side_of(point, points)
            state = self._line_states.get(key)
            if state is None:
                self._line_states[key] = _LineState(
                    side if distance > band else 0, point, track.class_id, track.class_name, frame.media_time, at_edge
                )
                continue
            state.class_id, state.class_name = track.class_id, track.class_name
            state.last_seen, state.at_edge = frame.media_time, at_edge
            state.path_crossed |= crosses(state.last_point, point, points)
            state.last_point = point
            if distance <= band:
                # In the dead band the side is not decided, and a stay across that it interrupts
                # starts again: a nearer object that hides a track's lower part for a moment lifts
                # its point over the line and back into the band, which is no crossing yet.
                state.pending = None
                continue
            if not state.side or side == state.side or not state.path_crossed:
                # First sighting beyond the band, back where it was, or round the end of the line.
                state.side, state.path_crossed, state.pending = side, False, None
                continue
            if state.pending is None:
                state.pending = (frame.capture_time, frame.media_time)
            if frame.media_time - state.pending[1] >= line.confirm_s:
                events.append(self._cross(state, line.name, track.track_id))

    def _cross(self, state: _LineState, line: str, track_id: int) -> AnalyticsEvent:
        """Count the crossing ``state`` has pending, dated when its stay across began, under the track's class then."""
        assert state.pending is not None
        direction = "in" if state.side < 0 else "out"  # the side it came from: left of the line is "in"
        class_id, class_name = state.class_id, state.class_name
        by_class = self._crossings[line].setdefault(class_name, dict.fromkeys(DIRECTIONS, 0))
        by_class[direction] += 1
        capture_time, media_time = state.pending
        state.side, state.path_crossed, state.pending = -state.side, False, None
        return AnalyticsEvent(
            AnalyticsEventKind.LINE_CROSS,
            self.stream_id,
            track_id,
            class_id,
            class_name,
            capture_time,
            media_time,
            line=line,
            direction=direction,
        )

    def _forget(self, ended: TrackEvent, frame: Frame) -> list[AnalyticsEvent]:
        """Leave every zone of a track the tracker gave up on, and settle a crossing it was last seen making.

        A crossing still pending counts if it had already stayed across for half its line's
        ``confirm_s``, or if the track was last seen touching the frame's edge (it left the picture
        across the line); otherwise it is dropped: a nearer object that hides a standing track's
        lower part lifts its bottom edge over the line for a moment, and may then hide it for good.
        """
        events = [
            self._exit(ended.track_id, zone, frame)
            for track_id, zone in list(self._visits)
            if track_id == ended.track_id
        ]
        for line in self._lines:
            state = self._line_states.pop((ended.track_id, line.name), None)
            if state is None or state.pending is None:
                continue
            if state.at_edge or state.last_seen - state.pending[1] >= line.confirm_s / 2:
                events.append(self._cross(state, line.name, ended.track_id))
        return events

    def _exit(self, track_id: int, zone: str, frame: Frame) -> AnalyticsEvent:
        """End the track's visit to ``zone`` at ``frame``, counted under the class it was last seen inside as."""
        visit = self._visits.pop((track_id, zone))
        class_id, class_name = visit.class_id, visit.class_name
        dwell = visit.last_inside - visit.entered
        self._dwell[zone] = self._dwell[zone].adding(dwell)
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
