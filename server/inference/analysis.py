"""The analytics stage of the inference thread: a tracked frame's zones, lines and their events.

It runs right after the stream's tracker, on the inference thread, the only writer of a stream's
analytics. The tracker has then moved past the frame, so analytics that fail on it cost the frame
only its analytics: its tracks and track events still go out (a start or end not sent now never
would be), the zone exits of tracks ending there are still made where the stream counts, and the
failure is the stream's ``analytics_error`` until a frame's analytics succeed.
"""

from __future__ import annotations

import logging

from server.analytics.engine import StreamAnalytics
from server.analytics.events import AnalyticsEvent, FrameAnalytics
from server.analytics.shapes import check_classes
from server.frames import Frame, Track, TrackEvent, TrackEventKind
from server.inference.registration import StreamRegistration
from server.options import StreamOptions

log = logging.getLogger(__name__)

#: A frame's tracks with their zones, its events with the analytics' own, and the analytics it shows.
Analysed = tuple[tuple[Track, ...], tuple[TrackEvent | AnalyticsEvent, ...], FrameAnalytics | None]


def analyse(
    registration: StreamRegistration,
    tracks: tuple[Track, ...],
    track_events: tuple[TrackEvent, ...],
    frame: Frame,
    class_names: dict[int, str],
) -> Analysed:
    """Run the stream's analytics on a tracked frame; ``class_names``: the model's, to check new shapes' filters.

    Shapes the frame was to apply are tried again on the next one if it fails. `StreamAnalytics.update`
    is all or nothing, so a failure partway through the frame leaves no count or visit without its event.
    """
    exits: tuple[AnalyticsEvent, ...] = ()
    try:
        # First: the old tracks' visits end in the analytics that saw them even if the new ones fail
        # (a remote model, described only now, may lack a class the new shapes are limited to).
        restarted = registration.restarted()  # `restart_exits` lets it go
        exits = restart_exits(registration, track_events, frame)
        options = registration.options  # read once: `change_shapes` may replace it meanwhile
        analytics, reshaping_exits = _analytics_for(registration, options, frame, class_names)
        if exits and analytics is not None and restarted is not None and restarted.analytics is not None:
            analytics.count_settled(exits, restarted.analytics)  # sent on this frame, so counted on it
        exits = (*exits, *reshaping_exits)
        events: tuple[TrackEvent | AnalyticsEvent, ...] = (*exits, *track_events)
        if analytics is not None:
            tracks, events = analytics.update(tracks, track_events, frame)
            events = (*exits, *events)
    except Exception as exc:
        events = _failed(registration, exits, track_events, frame, exc)
        return tracks, events, _standing(registration, frame)
    # Both after its update: `counts` never reads empty, and shapes that failed to apply
    # are tried again on the next frame rather than taken for applied.
    registration.analytics, registration.analytics_options = analytics, options
    registration.told_error = None  # the frame went through: a failure from now on is told again
    problems = analytics.problems if analytics is not None else ()
    ignoring = registration.tracker.problems if registration.tracker is not None else ()
    registration.analytics_error = "\n".join((*ignoring, *problems)) or None
    return tracks, events, None if analytics is None else analytics.frame_analytics


def _standing(registration: StreamRegistration, frame: Frame) -> FrameAnalytics | None:
    """What a frame whose analytics failed shows of them: the counts as they stand (the tracks that
    ended on it settled), as `InferenceWorker.counts` gives them, with the last frame's shapes where
    that frame was the same size (drawn on another, they would be out of place).

    Without them the frame would read as one of a stream with no zones or lines: the viewer's counts
    and shapes would blink out, and MQTT would take its zones for deleted and remove their sensors.
    Counts that cannot be read either (the analytics' fault reached again) are those of its last frame.
    """
    kept, options = registration.analytics, registration.options
    if kept is None or kept.frame_analytics is None:
        return None
    try:
        counts = kept.counts_for(options.zones, options.lines)
    except Exception:  # the same fault as the update's, most likely: the frame still goes out
        log.debug("[%s] counts not read on frame %d", registration.stream_id, frame.seq, exc_info=True)
        counts = kept.frame_analytics.counts  # as its last frame left them
    height, width = frame.image.shape[:2]
    if kept.size != (width, height):
        return FrameAnalytics(counts, (), ())
    shown = kept.frame_analytics
    return FrameAnalytics(
        counts,
        tuple(zone for zone in shown.zones if zone[0] in counts.zones),
        tuple(line for line in shown.lines if line[0] in counts.lines),
    )


def restart_exits(
    registration: StreamRegistration, track_events: tuple[TrackEvent, ...], frame: Frame
) -> tuple[AnalyticsEvent, ...]:
    """On a restarted stream's first frame, what the end of its old tracks makes: zone exits, and the
    line crossings they were last seen making (awaiting ``confirm_s``). ``track_events``: the frame's,
    whose ends are those tracks' (`StreamTracker` ``follows``).

    They end in the stream's old analytics, whose shapes and counts the restart left behind; any visit
    left there (a track the new tracker did not take over) ends with them. They go out on that first
    frame, so `analyse` counts them in the new analytics too (`StreamAnalytics.count_settled`).
    """
    restarted, registration.restarts = registration.restarted(), None
    if restarted is None or restarted.analytics is None:
        return ()
    old = restarted.analytics
    return (*old.ended(track_events, frame), *old.reshaped((), (), frame)[1])


def pending_shapes(registration: StreamRegistration) -> tuple[str, ...]:
    """The names of the stream's zones and lines added or moved since its last frame: they count from its
    next one (one whose settings only changed keeps its counts, `StreamAnalytics.reshaped`)."""
    options, applied = registration.options, registration.analytics_options
    if applied is None or applied is options:
        return ()
    zone_places, line_places = {zone.place for zone in applied.zones}, {line.place for line in applied.lines}
    zones = [zone.name for zone in options.zones if zone.place not in zone_places]
    return (*zones, *(line.name for line in options.lines if line.place not in line_places))


def _analytics_for(
    registration: StreamRegistration, options: StreamOptions, frame: Frame, class_names: dict[int, str]
) -> tuple[StreamAnalytics | None, tuple[AnalyticsEvent, ...]]:
    """The stream's analytics for this frame under ``options``, and the zone exits a change of its shapes made.

    Made on the stream's first frame (its class filters checked against the model), and again
    whenever `change_shapes` has given the stream new shapes.
    """
    current, applied = registration.analytics, registration.analytics_options
    if options is applied:
        return current, ()
    if current is not None and applied is not None and (options.zones, options.lines) == (applied.zones, applied.lines):
        return current, ()  # only settings they do not read changed (process_fps): the shapes stay resolved
    check_classes(options.zones, options.lines, class_names)
    wanted = bool(options.zones or options.lines)
    if current is not None:
        successor, exits = current.reshaped(options.zones, options.lines, frame)
        return (successor if wanted else None), exits
    return (StreamAnalytics(registration.stream_id, options.zones, options.lines) if wanted else None), ()


def _failed(
    registration: StreamRegistration,
    exits: tuple[AnalyticsEvent, ...],
    track_events: tuple[TrackEvent, ...],
    frame: Frame,
    exc: Exception,
) -> tuple[TrackEvent | AnalyticsEvent, ...]:
    """Record why the frame's analytics failed (counted with the stream's errors); its events without
    them: ``exits`` (made before the failure), and the track events with the zone exits of the tracks
    that end, in their usual order."""
    # A zone's class filter the model does not know (a remote model described only now) says it all.
    reason = str(exc) if isinstance(exc, ValueError) else f"analytics failed: {type(exc).__name__}: {exc}"
    if registration.failed(reason):  # one line and its traceback per new reason, not one per frame
        stream_id = registration.stream_id
        log.warning("[%s] frame %d sent with the counts as they stood: %s", stream_id, frame.seq, reason, exc_info=exc)
    kept = registration.analytics  # what the next frame's analytics go on from
    ignoring = registration.tracker.problems if registration.tracker is not None else ()
    registration.analytics_error = "\n".join((*ignoring, *(kept.problems if kept is not None else ()), reason))
    settled: tuple[AnalyticsEvent, ...] = ()
    if kept is not None:
        try:
            settled = kept.ended(track_events, frame)
        except Exception:
            log.debug("[%s] ended tracks not settled on frame %d", registration.stream_id, frame.seq, exc_info=True)
    starts = tuple(e for e in track_events if e.kind is TrackEventKind.START)
    ends = tuple(e for e in track_events if e.kind is not TrackEventKind.START)
    return (*exits, *starts, *settled, *ends)
