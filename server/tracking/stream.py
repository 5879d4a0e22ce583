"""Per-stream tracker state: one tracker per stream (ultralytics' or `segtrack`), and the metadata built from it.

ultralytics' own ``model.track`` keeps one tracker for whatever it is given, so streams would share
state. Here each stream owns a `StreamTracker`, which only ever sees that stream's detections, in
frame order. The tracker's output rows end with the index of the detection they came from, which is
what keeps each mask with its track id.

ultralytics counts a tracker's patience in frames (``track_buffer`` and friends assume 30 fps). A live
stream is processed at whatever rate the worker manages, which drops when more streams share it, so
those counts are re-derived from the rate this stream is really processed at (measured on the
frames' media time, `server.tracking.rate`): a lost track is kept for the same *time* however many
frames were skipped.

A file that plays again from its start (``--loop``) is a new scene, though its media time runs on:
every track ends there and the tracker starts afresh, so no object keeps an id (and an age) across
the jump because it happens to stand where another stood at the end of the last pass. So does a
stream whose media time jumps further than its tracker keeps a lost track (a camera back after an
outage): the tracker counts the gap as one frame and would carry every track, its age and its zone
visits across it. So does a stream whose frame size changes (a camera reconfigured, a WebRTC sender
adapting its resolution to the link): boxes, trails and velocities, and the tracker's own state
(BoT-SORT's camera-motion reference frame) would mix two scales. A stream restarted with new settings
goes on from its old tracker (``follows``).
Ids are never reused within a stream across any of these.

A ``process_fps`` lowered while the stream runs is its pace from its next frame (`follow`), so
even a cap of a frame every 10 s keeps its tracks; a source that slows down that much by itself has
its first long gap taken for an outage, and the next of about the same length is its new pace
(`server.tracking.rate`).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from server.frames import Frame, Track, TrackEvent, TrackEventKind
from server.inference.detections import Detections
from server.options import SEGTRACK, StreamOptions
from server.tracking.duplicates import seen_twice
from server.tracking.filters import class_filters_by_id, class_ids, detection_conf
from server.tracking.object_filter import ObjectFilter
from server.tracking.rate import ProcessingRate
from server.tracking.segtrack import SegTracker

log = logging.getLogger(__name__)

#: ultralytics' tracker yamls count frames at this rate (its trackers used to scale by frame_rate / 30).
TRACKER_CONFIG_FPS = 30.0
#: Tracker attributes that count frames, and the config key each comes from.
_FRAME_COUNTS = {
    "max_frames_lost": "track_buffer",
    "max_time_lost": "track_buffer",  # tracktrack's name for the same
    "occ_reappear_window": "occ_reappear_window",
    "active_occ_to_lost_thresh": "active_occ_to_lost_thresh",
}
TRAIL_LENGTH = 30  # centroids kept per track
VELOCITY_WINDOW_S = 0.5  # velocity is the mean over about this much recent media time
POLYGON_TOLERANCE_PX = 1.0
#: float32 holds every whole number below this exactly, and not every one above (ultralytics' rows).
FLOAT32_WHOLE_NUMBERS = 2**24
#: Per processed frame, older class votes count this much less: a model that flickers between two
#: classes for a frame or two does not relabel a track, while a lasting change wins in a few frames.
CLASS_VOTE_DECAY = 0.9


def make_tracker(options: StreamOptions) -> Any:
    """A fresh tracker of ``options.tracker`` (segcast's `SegTracker` or ultralytics') with the stream's settings."""
    from ultralytics.trackers.track import TRACKER_MAP
    from ultralytics.utils import IterableSimpleNamespace

    config = options.tracker_config()
    if options.tracker == SEGTRACK:
        return SegTracker(config)
    # ReID needs ultralytics' predictor hooks (or a download); segcast feeds trackers directly.
    config.update(with_reid=False, model="auto", device="cpu")
    return TRACKER_MAP[options.tracker](IterableSimpleNamespace(**config))


@dataclass(slots=True)
class _TrackHistory:
    """What the tracker does not keep for us: where a track has been and when it was first seen."""

    class_id: int
    class_name: str
    first_seen: float  # capture time (Unix s)
    first_media_time: float
    last_media_time: float
    last_box: tuple[float, float, float, float]
    points: deque[tuple[int, int]]  # recent centroids x, y: the trail, as each frame's track gives it
    times: deque[float]  # the media time of each of ``points``
    class_votes: dict[int, float]  # class id -> decayed sum of detection confidences
    #: The confidence gates (`StreamTracker._gate`) a detection of the track has reached: only the classes
    #: of those get its votes, so no class is reported on detections under its own ``conf``.
    passed: set[int] = field(default_factory=set)

    def vote(self, class_id: int, confidence: float) -> int:
        """The track's class: the one with the most (recent) confidence over its life, not this frame's."""
        for known in self.class_votes:
            self.class_votes[known] *= CLASS_VOTE_DECAY
        self.class_votes[class_id] = self.class_votes.get(class_id, 0.0) + confidence
        return max(self.class_votes, key=self.class_votes.__getitem__)


#: What `StreamTracker` reads of a row of its tracker's: track id, class id, confidence, box, outline, and
#: whether the confidence reached the class's ``conf``.
_Reported = tuple[int, int, float, tuple[float, float, float, float], np.ndarray | None, bool]
#: The gate of the classes without a ``conf`` of their own: the stream's.
_STREAM_GATE = -1


class StreamTracker:
    """Tracks for one stream: feed it that stream's model results in frame order, get tracks and events.

    It also applies the stream's own detection filter (classes, max detections, and confidence down
    to `detection_conf`), so that streams with different thresholds can share one batched model call
    run at the lowest of them. The tracker sees detections under the stream's ``conf``. A track is
    reported from the first frame its detection reaches ``conf`` (its class filter's, where it has one:
    `StreamOptions.class_filters`; a track reported as a square is reported as a disc only once a detection of
    it as a disc reaches the disc's), and from then on in every frame the
    tracker continues it, on weaker detections too: a partly hidden object scores low, and its box
    would blink out while it is still followed (ByteTrack's second association exists to keep those
    tracks, and ultralytics' ``track`` reports them). Not thread-safe: the inference thread is its
    only user.
    """

    def __init__(
        self,
        stream_id: str,
        class_names: dict[int, str],
        options: StreamOptions,
        nominal_fps: float,
        follows: StreamTracker | None = None,
    ) -> None:
        """``follows``: the tracker of the stream this one restarts (new settings, same stream id). Its
        ids go on from that one's, and that one's tracks, which no tracker of this one keeps, end on the
        first frame this one is given."""
        self.stream_id = stream_id
        self._class_names = class_names
        self._options = options
        self._class_ids = class_ids(class_names, options.classes)
        self._tracker_conf = detection_conf(options)
        self._filter = ObjectFilter(stream_id, options, class_names)
        self._class_conf = _class_conf(class_names, options)
        #: Detections its object filter kept from the tracker, since the stream's first tracker (`follows`).
        self.ignored: int = 0 if follows is None else follows.ignored
        self._tracker = make_tracker(options)
        config = options.tracker_config()
        self._windows_s = {
            attribute: float(config[key]) / TRACKER_CONFIG_FPS
            for attribute, key in _FRAME_COUNTS.items()
            if key in config and hasattr(self._tracker, attribute)
        }
        self._rate = ProcessingRate(
            1.0 / nominal_fps if nominal_fps > 0 else 1.0 / TRACKER_CONFIG_FPS,
            max(self._windows_s.values()) if self._windows_s else None,
        )
        self._history: dict[int, _TrackHistory] = {} if follows is None else dict(follows._history)
        self._restarts = 0  # the `Frame.restarts` of the frames this tracker has seen
        self._frame_shape: tuple[int, ...] | None = None  # height, width of the last frame it was given
        #: Added to the tracker's own ids: a fresh tracker counts from 1 again, a stream's ids never repeat.
        self._id_base: int = 0 if follows is None else follows._last_id
        self._last_id: int = self._id_base
        self._cap_fps = options.process_fps  # the worker's `nominal_fps` already takes it in
        _apply_rate(self._tracker, self._windows_s, self._rate.interval_s)

    @property
    def processing_fps(self) -> float:
        """Frames of this stream processed per second of its media time (smoothed)."""
        return self._rate.fps

    def follow(self, options: StreamOptions) -> None:
        """Take the options a running stream changed in place (`InferenceWorker.change_shapes`) from its next
        frame: ``process_fps`` as its pace, ``min_area``, ``max_area``, ``ignore_zones`` and ``class_filters`` as
        its object filter and its classes' reporting gates (a change of these keeps the stream's lowest
        ``conf``, which the model's call and the tracker's start thresholds follow: `IN_PLACE_OPTIONS`).

        A cap lowered to a frame every 10 s would otherwise make the first gap look like an outage,
        ending every track there (`ProcessingRate.capped`). Called with the stream's options before each
        update; options it already follows change nothing. Raises ValueError for an ignore zone's or a class
        filter's class the model does not know (a change checks them first: `InferenceWorker.check_options`).
        """
        if options.process_fps != self._cap_fps:
            self._cap_fps = options.process_fps
            self._rate = self._rate.capped(options.process_fps)
        if not self._filter.same_as(options):
            self._filter = ObjectFilter(self.stream_id, options, self._class_names, self._filter.told)
            class_conf = _class_conf(self._class_names, options)
            # A class whose conf changed is reported again only from a detection at its new one.
            moved = {
                i for i in self._class_conf.keys() | class_conf.keys() if self._class_conf.get(i) != class_conf.get(i)
            }
            self._class_conf = class_conf
            for known in self._history.values():
                known.passed -= moved
        self._options = options

    @property
    def problems(self) -> tuple[str, ...]:
        """Why ignore zones are left out at the latest frame's size (`ObjectFilter.problems`), one line each."""
        return self._filter.problems

    def update(self, detections: Detections, frame: Frame) -> tuple[tuple[Track, ...], tuple[TrackEvent, ...]]:
        """Advance the tracker by one frame; returns the tracks in it and the tracks that started or ended.

        No event is lost to a frame that raises: everything that may fail (the tracker itself, reading
        the detections' outlines) runs before any of this object's own state changes (the tracks it
        reported, their trails, ids, the measured rate, a tracker started over), and a later frame
        makes the starts and ends that one would have. The tracker it goes on with is not undone: it
        may have taken that frame in, as if it were a frame in which some objects were missed.
        Otherwise a track could be reported without its start, or the ends of a start over be lost
        with tracks' zone visits open for ever.
        """
        from ultralytics.engine.results import Boxes

        shape = frame.image.shape[:2]
        resized = self._frame_shape is not None and shape != self._frame_shape
        rate, outage = self._rate.after(frame.media_time)
        starts_over = frame.restarts != self._restarts or outage or resized
        # A tracker started over is only kept, and the old tracks ended, once the whole frame is done.
        tracker = make_tracker(self._options) if starts_over else self._tracker
        id_base = self._last_id if starts_over else self._id_base
        history = {} if starts_over else self._history
        _apply_rate(tracker, self._windows_s, rate.interval_s)
        detections, ignored = self._select(detections, shape)
        if isinstance(tracker, SegTracker):  # it reads masks, not just boxes
            rows = tracker.update(detections, frame.image)
        else:
            rows = tracker.update(Boxes(detections.boxes, frame.image.shape[:2]), frame.image)
            rows = _with_exact_ids(rows, tracker.tracked_stracks)
        seen = self._read_rows(rows, detections, id_base, history)
        # Nothing from here on fails: the frame is taken in whole.
        ended = [self._event(TrackEventKind.END, i, old, frame) for i, old in self._history.items() if starts_over]
        self._tracker, self._id_base, self._history = tracker, id_base, history
        self._restarts, self._frame_shape = frame.restarts, shape
        self._rate = rate
        self.ignored += ignored
        tracks: list[Track] = []
        started: list[TrackEvent] = []
        for track_id, class_id, confidence, box, polygon, sure in seen:
            track, start = self._observe(track_id, class_id, confidence, box, polygon, sure, frame)
            tracks.append(track)
            if start is not None:
                started.append(start)
        return tuple(tracks), (*started, *ended, *self._ended(frame))  # starts first, as docs/protocol.md says

    def _read_rows(
        self, rows: np.ndarray, detections: Detections, id_base: int, history: dict[int, _TrackHistory]
    ) -> list[_Reported]:
        """What the tracker's ``rows`` report, with boxes and outlines; ``history``: the tracks reported so far."""
        seen: list[_Reported] = []
        # Compared as the model's own numbers (float32), converted to Python's once for all rows.
        below = (rows[:, 5].astype(np.float32) < self._report_conf(rows[:, 6])).tolist() if len(rows) else []
        boxes = detections.boxes[:, :4].tolist()
        for row, weak in zip(rows.tolist(), below, strict=True):
            track_id, class_id, index = int(row[4]) + id_base, int(row[6]), int(row[7])
            known = history.get(track_id)
            if weak and (known is None or self._gate(known.class_id) not in known.passed):
                # Not reported yet: a track is first reported on a detection at its class's conf (the
                # stream's, or its class filter's, which a change in place may have raised since).
                continue
            found = 0 <= index < len(detections)
            # The detection's own box agrees with its mask; tracktrack may report boxes it recovered.
            box = _box(boxes[index] if found else row)
            outline = detections.outline(index) if found else None
            polygon = simplify(outline) if outline is not None else None
            seen.append((track_id, class_id, float(row[5]), box, polygon, not weak))
        return seen

    def _select(self, detections: Detections, shape: tuple[int, ...]) -> tuple[Detections, int]:
        """This stream's detections for its tracker, in a frame of ``shape``: down to `detection_conf`, of its
        classes, through its object filter (`server.tracking.object_filter`), at most ``max_det``; and how many
        the object filter dropped (counted in `ignored` once the whole frame is taken in).

        A box that is not a number (a half-precision model overflowing, a remote model gone wrong) is
        no detection: it would reach the viewers' JSON as ``NaN``, which browsers refuse to parse. Nor
        is one of no area (or inside out), which segtrack, unlike ultralytics' trackers, would report.
        Duplicates (`seen_twice`) are looked for among the detections the stream keeps only: on a
        stream of squares, a weak square inside a confident disc's box is a square partly hidden by
        the disc, not a part of anything the stream tracks (dropped, its track was lost).
        """
        boxes = detections.boxes
        usable = np.isfinite(boxes[:, :4]).all(axis=1)
        usable[usable] &= (boxes[usable, 2] > boxes[usable, 0]) & (boxes[usable, 3] > boxes[usable, 1])
        if not usable.all():
            detections = detections.select(np.flatnonzero(usable))
        conf = detections.confidence
        keep = conf >= self._tracker_conf
        if self._class_ids is not None:
            keep &= np.isin(detections.class_ids, list(self._class_ids))
        ignored = 0
        if self._filter.active:
            candidates = np.flatnonzero(keep)
            seen = self._filter.keep(detections.select(candidates), shape)
            keep[candidates] = seen
            ignored = len(seen) - int(seen.sum())
        indices = np.flatnonzero(keep)
        kept = detections if len(indices) == len(conf) else detections.select(indices)
        indices = indices[~seen_twice(kept, self._report_conf(kept.class_ids))]
        if len(indices) > self._options.max_det:
            indices = indices[np.argsort(-conf[indices], kind="stable")[: self._options.max_det]]
            indices.sort()
        if len(indices) == len(conf):
            return detections, ignored
        return detections.select(indices), ignored

    def _gate(self, class_id: int) -> int:
        """The confidence gate of ``class_id``: its own, where a class filter sets its conf, else the stream's."""
        return class_id if class_id in self._class_conf else _STREAM_GATE

    def _report_conf(self, class_ids: np.ndarray) -> np.ndarray:
        """The confidence a detection of each of ``class_ids`` needs to be reported, as the model's float32."""
        conf = np.full(len(class_ids), self._options.conf, dtype=np.float32)
        for class_id, own in self._class_conf.items():
            conf[class_ids == class_id] = own
        return conf

    def _observe(
        self,
        track_id: int,
        class_id: int,
        confidence: float,
        box: tuple[float, float, float, float],
        polygon: np.ndarray | None,
        sure: bool,
        frame: Frame,
    ) -> tuple[Track, TrackEvent | None]:
        """The track of one reported row; ``sure``: its confidence reached its class's ``conf``."""
        history = self._history.get(track_id)
        started = None
        if history is None:
            history = _TrackHistory(
                class_id,
                self._class_names.get(class_id, str(class_id)),
                frame.capture_time,
                frame.media_time,
                frame.media_time,
                box,
                deque(maxlen=TRAIL_LENGTH),
                deque(maxlen=TRAIL_LENGTH),
                {},
            )
            self._history[track_id] = history
            self._last_id = max(self._last_id, track_id)
            started = self._event(TrackEventKind.START, track_id, history, frame)
        gate = self._gate(class_id)
        if sure:
            history.passed.add(gate)
        class_id = history.vote(class_id, confidence) if gate in history.passed else history.class_id
        class_name = self._class_names.get(class_id, str(class_id))
        history.class_id, history.class_name = class_id, class_name
        history.last_media_time, history.last_box = frame.media_time, box
        x1, y1, x2, y2 = box
        history.points.append((round((x1 + x2) / 2), round((y1 + y2) / 2)))
        history.times.append(frame.media_time)
        track = Track(
            track_id=track_id,
            class_id=class_id,
            class_name=class_name,
            confidence=confidence,
            box=box,
            polygon=polygon,
            trail=tuple(history.points),
            velocity=_velocity(history.points, history.times),
            first_seen=history.first_seen,
            age_s=frame.media_time - history.first_media_time,
        )
        return track, started

    def _ended(self, frame: Frame) -> list[TrackEvent]:
        """End events for reported tracks the tracker no longer keeps, even as lost."""
        lost_or_tracked = (*self._tracker.tracked_stracks, *self._tracker.lost_stracks)
        kept = {int(t.track_id) + self._id_base for t in lost_or_tracked}
        events = []
        for track_id in [i for i in self._history if i not in kept]:
            events.append(self._event(TrackEventKind.END, track_id, self._history.pop(track_id), frame))
        return events

    def _event(self, kind: TrackEventKind, track_id: int, history: _TrackHistory, frame: Frame) -> TrackEvent:
        log.debug("[%s] track %d %s", self.stream_id, track_id, kind.value)
        return TrackEvent(
            kind=kind,
            stream_id=self.stream_id,
            track_id=track_id,
            class_id=history.class_id,
            class_name=history.class_name,
            time=frame.capture_time,
            first_seen=history.first_seen,
            age_s=history.last_media_time - history.first_media_time,
            box=history.last_box,
            media_time=frame.media_time,
            first_media_time=history.first_media_time if kind is TrackEventKind.END else None,
        )


def _apply_rate(tracker: Any, windows_s: dict[str, float], interval_s: float) -> None:
    """Set ``tracker``'s frame counts to its windows (``windows_s``) at one frame every ``interval_s``."""
    for attribute, window_s in windows_s.items():
        setattr(tracker, attribute, max(1, round(window_s * (1.0 / interval_s))))  # as `processing_fps`


def _with_exact_ids(rows: np.ndarray, tracks: list[Any]) -> np.ndarray:
    """An ultralytics tracker's ``rows`` as float64, each with the exact id of the track it comes from.

    ultralytics makes its rows float32, which holds whole numbers exactly only up to 2**24: past that
    (weeks of a busy stream), ids read back wrong and two apart read as one (16777219 as 16777220),
    and tracks would start and end on every frame. Its rows are the ``result`` of some of its
    ``tracked_stracks`` (which ones differs between its trackers), in their order: each row is the
    next of those tracks whose result it is, compared as float32, as it was made. Asked only once ids
    reach that far: it costs a tenth of a ByteTrack update.
    """
    if not len(rows) or rows[:, 4].max() < FLOAT32_WHOLE_NUMBERS:
        return rows
    exact = rows.astype(np.float64)
    remaining = iter(tracks)
    for row, made in zip(exact, rows, strict=True):
        track = next(
            (t for t in remaining if np.array_equal(np.asarray(t.result, np.float32), made, equal_nan=True)), None
        )
        if track is None:
            raise LookupError(f"a tracker's row matches none of its tracks: {made.tolist()}")
        row[4] = track.track_id
    return exact


def _class_conf(class_names: dict[int, str], options: StreamOptions) -> dict[int, float]:
    """The confidence a track of each class id needs to be reported, where a class filter sets its own."""
    return {class_id: own.conf for class_id, own in class_filters_by_id(class_names, options).items() if own.conf}


def _box(values: list[float]) -> tuple[float, float, float, float]:
    return float(values[0]), float(values[1]), float(values[2]), float(values[3])


def _velocity(points: deque[tuple[int, int]], times: deque[float]) -> tuple[float, float]:
    """Mean centroid velocity (px/s) from the oldest point within `VELOCITY_WINDOW_S` to the newest."""
    newest = times[-1]
    oldest = next(i for i, time in enumerate(times) if newest - time <= VELOCITY_WINDOW_S)
    dt = newest - times[oldest]
    if dt <= 0:
        return 0.0, 0.0
    (x0, y0), (x1, y1) = points[oldest], points[-1]
    return (x1 - x0) / dt, (y1 - y0) / dt


def simplify(outline: np.ndarray) -> np.ndarray | None:
    """A mask outline with fewer points (within `POLYGON_TOLERANCE_PX`), as int32 pixel coordinates."""
    if len(outline) < 3:
        return None
    points = np.asarray(outline, np.float32).reshape(-1, 1, 2)  # not copied: approxPolyDP only reads it
    return cv2.approxPolyDP(points, POLYGON_TOLERANCE_PX, True).reshape(-1, 2).round().astype(np.int32)
