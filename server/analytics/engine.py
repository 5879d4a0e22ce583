"""One stream's analytics: per-track zone visits and line sides, on the inference thread after the tracker.

Time is media time throughout (dwell, loitering), so skipped frames and a slow worker do not stretch
or shrink a visit. A track the tracker still keeps while it is lost keeps its visits and line side;
its zones are left when the tracker ends it, with the dwell up to the last frame it was seen inside.

The rules' geometry and what each remembers of a track live beside it: `zone_membership` (the share
of a track inside a zone, with hysteresis, and its `Visit`) and `line_crossing` (a track's side of a
line and its path over it, and its `LineState`); this module applies both to each frame and counts.

A frame's analytics are all or nothing (`StreamAnalytics.update`): what they remember between frames
changes only with the events that report it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np

from server.analytics.events import AnalyticsEvent, AnalyticsEventKind, Counts, DwellHistogram, FrameAnalytics
from server.analytics.geometry import Point, side_of
from server.analytics.line_crossing import LineState, PendingCrossing, anchor_point, crosses, edges_touched
from server.analytics.shapes import Line, Zone, never_counts, resolve, resolve_zone
from server.analytics.zone_membership import EXIT_SHARE_RATIO, Visit, ZoneMask, share_inside, track_area
from server.frames import Frame, Track, TrackEvent, TrackEventKind

log = logging.getLogger(__name__)

DIRECTIONS = ("in", "out")


@dataclass(slots=True)
class _State:
    """What the analytics remember from frame to frame.

    `StreamAnalytics.update` works on a `draft` and keeps it only once the whole frame is done. A
    draft shares the visits and line states of the state it was made from until it changes them: it
    changes one only through `visit` and `line_state`, which copy it the first time. Reading, adding
    and removing need no copy, as the draft's maps are its own.
    """

    visits: dict[tuple[int, str], Visit]
    line_states: dict[tuple[int, str], LineState]
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

    def visit(self, key: tuple[int, str]) -> Visit | None:
        """The visit at ``key``, to change."""
        visit = self.visits.get(key)
        if visit is not None and key not in self.copied_visits:
            visit = self.visits[key] = visit.copy()
            self.copied_visits.add(key)
        return visit

    def line_state(self, key: tuple[int, str]) -> LineState | None:
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

    zones: tuple[tuple[Zone, tuple[Point, ...], ZoneMask], ...]  # zone, pixel points, filled mask
    lines: tuple[tuple[Line, tuple[Point, ...], float], ...]  # line, pixel points, dead band px


class StreamAnalytics:
    """Zones and lines of one stream; feed it each frame's tracks and track events in order.

    Not thread-safe: the inference thread is its only writer. `counts` is replaced whole after
    every frame, so other threads may read it; `frame_analytics` is what the frame's result carries.

    A shape in pixels that does not fit the frame (drawn for another camera, or the camera's
    resolution changed) is left out, and `problems` says why, while the other shapes, the tracks and
    the video carry on: the frame size is only known once frames come, long after the options of a
    config file or a new stream were accepted (a change to a stream with frames is refused instead:
    `server.analytics.shapes.check_fit`). So is whether a line lies within its dead band of the frame's
    edge, where it can never count: it stays, at zero, and `problems` says so.
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
        #: Line -> when its totals in `counts` began: the wall-clock time (`Frame.capture_time`, Unix s) of
        #: the first frame it was judged on, here or in the analytics these were `reshaped` from. Replaced
        #: whole, before `counts`, so a thread that reads a line in `counts` then finds it here.
        self.since: Mapping[str, float] = MappingProxyType({})
        self.frame_analytics: FrameAnalytics | None = None
        #: Why shapes are left out at the current frame size, or can never count at it, one line each;
        #: empty when all fit.
        self.problems: tuple[str, ...] = ()
        #: The problems the log has told, here or in the analytics these were `reshaped` from.
        self._told: tuple[str, ...] = ()
        #: Whether the next frame is the first judged by settings `reshaped` gave (`_drop_unwatched`).
        self._reshaped = False

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
        if self._reshaped:
            events += self._drop_unwatched(state, frame)
        starts = [e for e in track_events if e.kind is TrackEventKind.START]
        ends = [e for e in track_events if e.kind is TrackEventKind.END]
        for ended in ends:
            events += self._forget(state, ended, frame)
        self._state = state
        self._reshaped = False
        self.since = self._since_after(resolved, frame)
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
        crossings counted and each track's side; the new settings judge the next frame, a track hidden
        then included (a visit by a class no longer counted ends there, and a line forgets such a track
        with a crossing it had pending: `_update_zones`, `_update_lines`, `_drop_unwatched`). A line's
        new ``anchor`` is another point of each track: their sides start afresh, a crossing in progress
        is not counted. A visit to a zone that was removed or moved ends at ``frame`` (its dwell up to
        the last frame seen inside); a moved line counts from zero, `since` the next frame, as does a new
        one. A problem the log told here (`problems`) is not told again.
        """
        successor = StreamAnalytics(self.stream_id, zones, lines)
        # An edit of one shape tells no other's problem again: the log says each once.
        successor._told, successor._reshaped = self._told, True
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
        successor.since = MappingProxyType({name: self.since[name] for name in kept_lines if name in self.since})
        return successor, exits

    def _since_after(self, resolved: _Resolved, frame: Frame) -> Mapping[str, float]:
        """`since` with the lines that ``frame`` is the first to judge: a line that did not fit the frames
        before (`problems`) counts from the first that it fits."""
        first = [line.name for line, _, _ in resolved.lines if line.name not in self.since]
        if not first:
            return self.since
        return MappingProxyType({**self.since, **dict.fromkeys(first, frame.capture_time)})

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
            zones.append((zone, points, ZoneMask.filled(_outline(points), width, height)))
        for i, line in enumerate(self._lines):
            try:
                points = resolve(line.points, line.units, width, height, f"lines[{i}].points")
            except ValueError as exc:
                problems.append(f"{exc}; line {line.name!r} is left out")
                continue
            lines.append((line, points, line.dead_band(width, height)))
            if never := never_counts(line, points, width, height, f"lines[{i}]"):
                problems.append(never)
        for problem in problems:
            if problem not in self._told:
                log.warning("[%s] %s", self.stream_id, problem)
        self.problems = self._told = tuple(problems)
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
                area = track_area(track, frame.image.shape)
            share = share_inside(area, mask)
            visit = state.visit(key)
            if visit is None and share >= zone.min_share:
                visit = state.visits[key] = Visit(frame.media_time, frame.media_time, track.class_id, track.class_name)
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
                state.line_states[key] = LineState(
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
                line_state.pending = PendingCrossing(frame.capture_time, frame.media_time, point, band)
            if frame.media_time - line_state.pending.media_time >= line.confirm_s:
                events.append(self._cross(state, line_state, line.name, track.track_id))
                line_state.side, line_state.path_crossed, line_state.pending = -line_state.side, False, None

    def _drop_unwatched(self, state: _State, frame: Frame) -> list[AnalyticsEvent]:
        """End the visits and forget the line sides (a crossing pending included) of the tracks whose
        class their zone or line no longer watches, on the first frame judged by new settings.

        `_update_zones` and `_update_lines` do so for the tracks seen on it; a hidden one would otherwise
        be judged by the old classes until the tracker ends it (`_forget`): its visit would go on, and a
        crossing it had pending would count under a class the line no longer counts.
        """
        zones, lines = {zone.name: zone for zone in self._zones}, {line.name: line for line in self._lines}
        events = [
            self._exit(state, track_id, zone, frame)
            for (track_id, zone), visit in list(state.visits.items())
            if not _watches(zones[zone], visit.class_name)
        ]
        for key, line_state in list(state.line_states.items()):
            if not _watches(lines[key[1]], line_state.class_name):
                del state.line_states[key]
        return events

    def _cross(self, state: _State, line_state: LineState, line: str, track_id: int) -> AnalyticsEvent:
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
        ``confirm_s``, or if the track was last seen leaving the picture (`LineState.left_the_picture`);
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


def _watches(shape: Zone | Line, class_name: str) -> bool:
    """Whether ``shape`` counts tracks of ``class_name`` (one without `classes` counts all)."""
    return not shape.classes or class_name in shape.classes


def _outline(points: tuple[Point, ...]) -> np.ndarray:
    """``points`` as the int32 pixel corners cv2 draws and fills."""
    return np.round(np.array(points)).astype(np.int32)
