"""``segtrack``: a tracker that uses what a segmentation model gives beyond boxes.

Box trackers lose an id where boxes stop meaning much: two objects crossing have overlapping boxes,
a partly hidden object's box shrinks and jumps, and a track lost for longer than its motion model can
guess is never found again. segtrack associates on mask overlap as well as box overlap (the masks of
two crossing objects barely overlap even when their boxes do), and keeps a colour histogram of each
object's own masked pixels, with which a lost track is re-identified when it reappears within
``track_buffer`` (a time, as for ultralytics' trackers: frames at 30 fps).

Association runs in three rounds, ByteTrack's shape with masks and appearance added:
1. tracks (kept and lost) against confident detections, on box and mask overlap with each track
   moved by its own velocity, vetoed where the colours clearly disagree (for a lost track: unless
   they agree as closely as a re-identification needs);
2. tracks still unmatched and kept in the last frame against weak detections (down to
   ``track_low_thresh``), on box overlap: a partly hidden object scores low;
3. lost tracks against the confident detections left, on appearance, within a distance that grows
   with the time lost. Of any class: a partly hidden object is often taken for another class, and
   the track's reported class is a vote over its life anyway (`server.tracking.stream`).
A detection left over starts a track when confident enough, unless its outlined mask is largely
one a continuing track has just been given (two objects merged into one box as one passes behind the
other, or part of one seen again); a track is reported from its second detection, so a single false
detection leaves no id behind. Except on the tracker's first frame, where every confident detection
is reported at once: a stream's first, and the first after its tracker is made afresh (a file that
loops, a camera back after an outage, a new frame size, new settings: `server.tracking.stream`), so the
objects in view go on being shown, under new ids, without a frame's gap. A false detection on that
one frame does get an id, a start and an end.

With ``camera_motion`` on, the step of the whole picture between frames (`server.tracking.camera`)
moves every track before it is matched, and is taken out of what a track's own velocity learns: on
a shaking camera an object's own motion is what stays predictable. Off by default, as it costs more
than the rest of an update; a still camera does not need it.

Outlines, masks and colours are what cost: a detection's outline is traced, its mask filled and its
colours counted only when a decision needs them (see `_Seen`), and a track's colours are refreshed
from every `APPEARANCE_EVERY`-th detection. docs/benchmarks.md gives the cost on its crowded scene
(20 objects, 38 detections a frame) beside every other tracker's.

It exposes what `server.tracking.stream.StreamTracker` reads from ultralytics' trackers: ``update`` rows
``x1, y1, x2, y2, id, score, class, detection index``, ``tracked_stracks`` and ``lost_stracks``
holding objects with a ``track_id``, and ``max_frames_lost``. Its rows are float64, unlike
ultralytics' float32: a float32 holds whole numbers exactly only up to 2**24, and a busy stream's
ids get there in weeks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from server.inference.detections import Detections
from server.tracking.boxes import box_areas, box_intersections
from server.tracking.camera import PictureShift
from server.tracking.segtrack_settings import SEGTRACK_DEFAULTS

HUE_BINS, SATURATION_BINS = 16, 4
#: Colours of a clearly visible detection replace this share of its track's histogram.
APPEARANCE_RATE = 0.2
#: A track's colours are refreshed from every this many of its detections (they change slowly).
APPEARANCE_EVERY = 2
#: A detection smaller than this share of its track's usual area is taken to be partly hidden (and
#: one larger by the inverse, merged with another): it still continues the track, but says nothing
#: reliable about its velocity, size or colours.
OCCLUDED_AREA_SHARE = 0.7
VELOCITY_RATE = 0.5  # weight of the newest displacement in a track's velocity
AREA_RATE = 0.3  # weight of the newest detection in a track's usual area
#: Colour similarity under which a motion match is refused (clearly another object).
APPEARANCE_VETO = 0.4
#: A kept track whose moved mask overlaps a detection's at least this much is that object: the
#: colour veto is not asked (it costs a histogram).
SURE_MASK_IOU = 0.5
#: A kept track's box overlapping a detection's this many times more than either overlaps anything
#: else is that object: no mask or colours are asked of the pair.
CLEAR_MARGIN = 2.0
LOW_MATCH_IOU = 0.3  # least box IoU for round 2, as ByteTrack's second association uses 0.5 on boxes
#: A detection left over that shares at least this share of the smaller of its mask and the mask of
#: a detection continuing a track shows that track's object again, merged with a neighbour (its box
#: over both as one passes behind the other) or in part, and starts no track: in one frame each pixel
#: shows one object, so two objects' masks meet only at their edges. Such a track had taken the
#: hidden neighbour's id when it came out (docs/benchmarks.md: wander seed 11). Masks traced from an
#: outline only: a box is no such mask, and neighbours' boxes overlap.
SHOWN_AGAIN_SHARE = 0.5

#: A box as x1, y1, x2, y2 and a point or step as x, y, in frame pixels: Python floats, not numpy
#: arrays, as a track's arithmetic on a few numbers costs several times less on them (the same sums,
#: to the bit: both are IEEE doubles).
Box = tuple[float, float, float, float]
Point = tuple[float, float]


@dataclass(slots=True)
class _Mask:
    """A detection's mask, cropped to its box: ``origin`` is the crop's top-left corner in the frame."""

    origin: tuple[int, int]
    pixels: np.ndarray  # bool
    count: int  # pixels set

    def overlap(self, other: _Mask, shift: tuple[int, int] = (0, 0)) -> float:
        """IoU with ``other``, this mask moved by ``shift`` pixels (x, y)."""
        both = self.shared(other, shift)
        union = self.count + other.count - both
        return both / union if union else 0.0

    def shared(self, other: _Mask, shift: tuple[int, int] = (0, 0)) -> int:
        """Pixels set in both this mask, moved by ``shift`` pixels (x, y), and ``other``."""
        ax, ay = self.origin[0] + shift[0], self.origin[1] + shift[1]
        bx, by = other.origin
        x1, y1 = max(ax, bx), max(ay, by)
        x2 = min(ax + self.pixels.shape[1], bx + other.pixels.shape[1])
        y2 = min(ay + self.pixels.shape[0], by + other.pixels.shape[0])
        if x2 <= x1 or y2 <= y1:
            return 0
        return int(
            np.count_nonzero(
                self.pixels[y1 - ay : y2 - ay, x1 - ax : x2 - ax] & other.pixels[y1 - by : y2 - by, x1 - bx : x2 - bx]
            )
        )


@dataclass(slots=True)
class _Seen:
    """One detection as segtrack uses it; its outline, mask and colours are made on first use.

    Most detections need neither mask nor colours: a kept track whose box clearly meets one
    detection's is matched on boxes, and a weak detection only ever is. The colours (a colour
    conversion and a histogram) were the largest part of an update when every detection had them
    made. The outline is traced for a detection that continues or starts a track (its area is
    needed); a weak one that matches nothing is never traced, as no other tracker would trace it.
    """

    index: int  # in ``source``
    box: Box
    score: float
    class_id: int
    frame_size: tuple[int, int]  # width, height
    image: np.ndarray | None  # the frame, until `release`
    source: Detections | None  # the frame's detections, for the outline, until `release`
    _outline: np.ndarray | None = None
    _outline_made: bool = False
    _area: float | None = None
    _mask: _Mask | None = None
    _mask_made: bool = False
    _colours: np.ndarray | None = None
    _colours_made: bool = False

    def outline(self) -> np.ndarray | None:
        """The mask's outline in frame pixels; None for a detection-only model or a degenerate outline."""
        if not self._outline_made:
            self._outline_made = True
            outline = self.source.outline(self.index) if self.source is not None else None
            self._outline = outline if outline is not None and len(outline) >= 3 else None
        return self._outline

    def area(self) -> float:
        """The outline's area, or the box's where there is no outline (or it encloses nothing)."""
        if self._area is None:
            outline = self.outline()
            area = float(cv2.contourArea(np.asarray(outline, np.float32))) if outline is not None else 0.0
            if area <= 0:
                x1, y1, x2, y2 = self.box
                area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
            self._area = area
        return self._area

    def mask(self) -> _Mask | None:
        """The outline filled, cropped to the box (None where either is empty)."""
        if not self._mask_made:
            self._mask_made = True
            width, height = self.frame_size
            x1, y1 = max(int(self.box[0]), 0), max(int(self.box[1]), 0)
            x2, y2 = min(math.ceil(self.box[2]), width), min(math.ceil(self.box[3]), height)
            if x2 > x1 and y2 > y1:
                pixels = np.zeros((y2 - y1, x2 - x1), np.uint8)
                if (outline := self.outline()) is not None:
                    cv2.fillPoly(pixels, [(outline - (x1, y1)).round().astype(np.int32)], 1)
                else:
                    pixels[:] = 1  # a detection-only model: the box is all there is
                if count := cv2.countNonZero(pixels):
                    self._mask = _Mask((x1, y1), pixels.view(bool), count)
        return self._mask

    def colours(self) -> np.ndarray | None:
        """Normalised hue-saturation histogram of the masked pixels, at half resolution."""
        if not self._colours_made:
            self._colours_made = True
            mask = self.mask()
            if mask is not None and self.image is not None:
                (x1, y1), pixels = mask.origin, mask.pixels
                height, width = pixels.shape
                half = (max(width // 2, 1), max(height // 2, 1))
                crop = cv2.resize(self.image[y1 : y1 + height, x1 : x1 + width], half, interpolation=cv2.INTER_NEAREST)
                within = cv2.resize(pixels.view(np.uint8), half, interpolation=cv2.INTER_NEAREST)
                hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
                histogram = cv2.calcHist([hsv], [0, 1], within, [HUE_BINS, SATURATION_BINS], [0, 180, 0, 256])
                total = float(histogram.sum())
                self._colours = histogram.ravel() / total if total else None
        return self._colours

    def release(self) -> None:
        """Let go of the frame and its detections once the update is over: a track keeps its last
        detection (for the mask, whose outline its area has traced) while it is lost, seconds of
        frames if each kept its picture."""
        self.image = None
        self.source = None


@dataclass(slots=True, eq=False)
class SegTrack:
    track_id: int
    box: Box
    class_id: int
    score: float
    last: _Seen  # the detection it was last seen as (its mask, when a decision needs it)
    colours: np.ndarray | None
    area: float
    velocity: Point = (0.0, 0.0)  # px per processed frame
    #: How far the picture has moved since the track was last seen (camera motion, when followed).
    drift: Point = (0.0, 0.0)
    hits: int = 1
    confirmed: bool = False
    lost_for: int = 0  # processed frames since the last detection

    def travel(self) -> Point:
        """How far the object itself is expected to have moved since it was last seen."""
        (vx, vy), frames = self.velocity, self.lost_for + 1
        return vx * frames, vy * frames

    def size(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(x2 - x1, y2 - y1, 1.0)


class SegTracker:
    """The per-stream segtrack state; `server.tracking.stream.StreamTracker` owns one per stream."""

    def __init__(self, settings: Mapping[str, object]) -> None:
        config = {**SEGTRACK_DEFAULTS, **settings}
        self.high = _number(config, "track_high_thresh")
        self.low = _number(config, "track_low_thresh")
        self.new = _number(config, "new_track_thresh")
        self.min_overlap = _number(config, "min_overlap")
        self.mask_weight = _number(config, "mask_weight")
        self.appearance = _number(config, "appearance_thresh")
        self.reid_distance = _number(config, "reid_distance")
        self.max_frames_lost = round(_number(config, "track_buffer"))
        camera_motion = config["camera_motion"]
        if not isinstance(camera_motion, bool):
            raise ValueError(f"tracker_settings.camera_motion: expected true or false, got {camera_motion!r}")
        self._picture = PictureShift() if camera_motion else None
        self.tracked_stracks: list[SegTrack] = []
        self.lost_stracks: list[SegTrack] = []
        self._next_id = 1
        self._frames = 0

    def update(self, detections: Detections, image: np.ndarray) -> np.ndarray:
        """Advance one processed frame; rows of the reported tracks matched in it (see the module doc)."""
        self._frames += 1
        if self._picture is not None:
            dx, dy = self._picture.step(image, detections.boxes[:, :4])
            for track in self.tracked_stracks + self.lost_stracks:
                track.drift = (track.drift[0] + dx, track.drift[1] + dy)
        seen = _seen(detections, image)
        strong = [d for d in seen if d.score >= self.high]
        weak = [d for d in seen if self.low <= d.score < self.high]
        everyone = self.tracked_stracks + self.lost_stracks
        tracks = [t for t in everyone if t.confirmed]
        matched: list[tuple[SegTrack, _Seen]] = []

        pairs, tracks, strong = self._assign(tracks, strong, self._motion_similarity, self.min_overlap)
        matched += pairs
        kept = [t for t in tracks if t.lost_for == 0]
        pairs, _, _ = self._assign(kept, weak, _box_similarity, LOW_MATCH_IOU)
        matched += pairs
        continued = {id(t) for t, _ in pairs}
        lost = [t for t in tracks if id(t) not in continued]
        pairs, _, strong = self._assign(lost, strong, self._appearance_similarity, self.appearance)
        matched += pairs
        # Last pick for tracks started in the previous frame: a duplicate detection that started
        # one must not take its object from the track that has followed it all along.
        tentative = [t for t in everyone if not t.confirmed]
        pairs, _, strong = self._assign(tentative, strong, self._motion_similarity, self.min_overlap)
        matched += pairs

        rows = []
        for track, detection in matched:
            self._continue(track, detection)
            if track.confirmed:
                rows.append(_row(track, detection))
        seen_again = {id(t) for t, _ in matched}
        for track in self.tracked_stracks + self.lost_stracks:
            if id(track) not in seen_again:
                track.lost_for += 1
        continuing = [d for _, d in matched]
        for detection in strong:
            if detection.score >= self.new and not _shows_again(detection, continuing):
                track = self._start(detection)
                if track.confirmed:
                    rows.append(_row(track, detection))
        everyone = self.tracked_stracks + self.lost_stracks
        self.tracked_stracks = [t for t in everyone if t.lost_for == 0]
        # An unconfirmed track gets one frame to be seen again; a confirmed one, the whole buffer.
        self.lost_stracks = [t for t in everyone if 0 < t.lost_for <= (self.max_frames_lost if t.confirmed else 0)]
        for detection in seen:
            detection.release()
        return np.array(rows, np.float64).reshape(-1, 8)

    # -- association ----------------------------------------------------------------------------

    def _assign(
        self,
        tracks: list[SegTrack],
        detections: list[_Seen],
        similarity: Callable[[list[SegTrack], list[_Seen]], np.ndarray],
        least: float,
    ) -> tuple[list[tuple[SegTrack, _Seen]], list[SegTrack], list[_Seen]]:
        """Best one-to-one pairs with similarity at least ``least`` and above 0, and the tracks and
        detections left. The Hungarian method pairs every row it can, and a similarity of 0 is no match
        (boxes apart, out of reach, vetoed), which ``min_overlap`` or ``appearance_thresh`` set to 0
        would otherwise keep: a new object anywhere would take a lost track's id."""
        if not tracks or not detections:
            return [], tracks, detections
        scores = similarity(tracks, detections)
        rows, cols = linear_sum_assignment(-scores)
        pairs = [
            (tracks[r], detections[c])
            for r, c in zip(rows, cols, strict=True)
            if scores[r, c] >= least and scores[r, c] > 0
        ]
        used_tracks = {id(t) for t, _ in pairs}
        used_detections = {id(d) for _, d in pairs}
        return (
            pairs,
            [t for t in tracks if id(t) not in used_tracks],
            [d for d in detections if id(d) not in used_detections],
        )

    def _motion_similarity(self, tracks: list[SegTrack], detections: list[_Seen]) -> np.ndarray:
        """Box IoU of each track moved by its velocity, averaged with its moved mask's IoU where boxes meet.

        Masks and colours only matter where there is a choice to make. A kept track and a detection
        whose boxes overlap at least twice ``min_overlap`` (so the average cannot fall below it) and
        `CLEAR_MARGIN` times more than either overlaps anything else are a clear pair: matched on
        boxes, their row and column emptied, as most objects are in most frames. A lost track always
        has its colours checked: whatever now stands where it was expected may be someone else.
        Pairs under ``min_overlap``, boxes or the average with masks, are no match; only a pair
        that could match has its colours asked.
        """
        shifts = _predicted_shifts(tracks)
        scores = _box_similarity(tracks, detections, shifts)
        scores[scores < self.min_overlap] = 0.0
        clear = _clear_pairs(scores, CLEAR_MARGIN) & (scores >= 2 * self.min_overlap)
        clear &= np.array([t.lost_for == 0 for t in tracks])[:, None]
        clear_rows, clear_columns = clear.any(axis=1), clear.any(axis=0)
        contested = scores > 0
        contested[clear_rows, :] = False
        contested[:, clear_columns] = False
        scores = np.where(clear | contested, scores, 0.0)
        steps = shifts.tolist()
        for r, c in zip(*np.nonzero(contested), strict=True):
            track, detection = tracks[r], detections[c]
            score, moved = float(scores[r, c]), None
            if self.mask_weight > 0 and (mask := track.last.mask()) is not None and (other := detection.mask()):
                moved = mask.overlap(other, (round(steps[r][0]), round(steps[r][1])))
                score = (1 - self.mask_weight) * score + self.mask_weight * moved
            sure = track.lost_for == 0 and moved is not None and moved >= SURE_MASK_IOU
            least = APPEARANCE_VETO if track.lost_for == 0 else self.appearance
            if score < self.min_overlap or (not sure and _similarity(track.colours, detection.colours()) < least):
                score = 0.0
            scores[r, c] = score
        return scores

    def _appearance_similarity(self, tracks: list[SegTrack], detections: list[_Seen]) -> np.ndarray:
        """Colour similarity, for detections within reach of where the track was lost."""
        travel = np.array([t.travel() for t in tracks]).reshape(-1, 2)
        reach = self.reid_distance * np.array([t.size() for t in tracks]) + np.hypot(travel[:, 0], travel[:, 1])
        lost_at = np.array([_centre(t.box) for t in tracks]) + np.array([t.drift for t in tracks])
        found_at = np.array([_centre(d.box) for d in detections])
        distance = np.hypot(*(found_at[None, :, :] - lost_at[:, None, :]).transpose(2, 0, 1))
        scores = np.zeros(distance.shape)
        for r, c in zip(*np.nonzero(distance <= reach[:, None]), strict=True):
            scores[r, c] = _similarity(tracks[r].colours, detections[c].colours())
        return scores

    # -- track life -----------------------------------------------------------------------------

    def _continue(self, track: SegTrack, detection: _Seen) -> None:
        # A partly hidden object's box shrinks and two merged objects' grows: neither says how the
        # track moved or looks. An object coming out from behind another only grows, so the usual
        # area follows any growth (one merged frame moves it by only `AREA_RATE`).
        whole = detection.area() >= OCCLUDED_AREA_SHARE * track.area
        if whole:
            if detection.area() <= track.area / OCCLUDED_AREA_SHARE or track.hits == 1:
                (x, y), (was_x, was_y), (drift_x, drift_y) = _centre(detection.box), _centre(track.box), track.drift
                frames = track.lost_for + 1
                moved_x, moved_y = (x - was_x - drift_x) / frames, (y - was_y - drift_y) / frames
                vx, vy = track.velocity
                track.velocity = vx + VELOCITY_RATE * (moved_x - vx), vy + VELOCITY_RATE * (moved_y - vy)
                if track.colours is None or track.hits % APPEARANCE_EVERY == 0:
                    colours = detection.colours()
                    if colours is not None and track.colours is not None:
                        colours = (1 - APPEARANCE_RATE) * track.colours + APPEARANCE_RATE * colours
                    track.colours = colours if colours is not None else track.colours
            track.area += AREA_RATE * (detection.area() - track.area)
        track.box, track.last, track.score = detection.box, detection, detection.score
        track.class_id = detection.class_id
        track.hits += 1
        track.lost_for = 0
        track.drift = (0.0, 0.0)
        track.confirmed = True

    def _start(self, detection: _Seen) -> SegTrack:
        track = SegTrack(
            self._next_id,
            detection.box,
            detection.class_id,
            detection.score,
            detection,
            detection.colours(),
            detection.area(),
            confirmed=self._frames == 1,
        )
        self._next_id += 1
        self.tracked_stracks.append(track)
        return track


def _seen(detections: Detections, image: np.ndarray) -> list[_Seen]:
    """Each of the frame's detections as segtrack uses it, converted for all of them at once."""
    height, width = image.shape[:2]
    return [
        _Seen(i, (x1, y1, x2, y2), score, int(class_id), (width, height), image, detections)
        for i, (x1, y1, x2, y2, score, class_id) in enumerate(detections.boxes.tolist())
    ]


def _number(config: Mapping[str, object], key: str) -> float:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"tracker_settings.{key}: expected a number, got {value!r}")
    return float(value)


def _row(track: SegTrack, detection: _Seen) -> list[float]:
    return [*detection.box, track.track_id, detection.score, track.class_id, detection.index]


def _centre(box: Box) -> Point:
    x1, y1, x2, y2 = box
    return (x1 + x2) / 2, (y1 + y2) / 2


def _predicted_shifts(tracks: list[SegTrack]) -> np.ndarray:
    """How far each track's box is expected to have moved in the picture since it was last seen (x, y
    rows): its own `SegTrack.travel` and the camera's drift, summed for all the tracks at once."""
    velocity = np.array([t.velocity for t in tracks]).reshape(-1, 2)
    frames = np.array([t.lost_for + 1 for t in tracks], np.float64)
    return velocity * frames[:, None] + np.array([t.drift for t in tracks]).reshape(-1, 2)


def _box_similarity(tracks: list[SegTrack], detections: list[_Seen], shifts: np.ndarray | None = None) -> np.ndarray:
    """Box IoU of each track, moved by its velocity (``shifts``, when already known), with each detection."""
    shifts = _predicted_shifts(tracks) if shifts is None else shifts
    a = np.array([t.box for t in tracks]) + np.hstack([shifts, shifts])
    b = np.array([d.box for d in detections])
    inter = box_intersections(a, b)
    union = box_areas(a)[:, None] + box_areas(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _clear_pairs(scores: np.ndarray, margin: float) -> np.ndarray:
    """Where a pair's score is at least ``margin`` times every other score in its row and its column."""
    if scores.size == 0:
        return np.zeros(scores.shape, bool)
    top_two_rows = -np.sort(-scores, axis=1)[:, :2]
    top_two_columns = -np.sort(-scores, axis=0)[:2, :]
    second_in_row = top_two_rows[:, 1:2] if scores.shape[1] > 1 else np.zeros((scores.shape[0], 1))
    second_in_column = top_two_columns[1:2, :] if scores.shape[0] > 1 else np.zeros((1, scores.shape[1]))
    best = (scores == top_two_rows[:, :1]) & (scores == top_two_columns[:1, :]) & (scores > 0)
    return best & (scores >= margin * np.maximum(second_in_row, second_in_column))


def _shows_again(detection: _Seen, continuing: list[_Seen]) -> bool:
    """Whether ``detection`` shows an object one of ``continuing`` already shows (see `SHOWN_AGAIN_SHARE`).

    Only outlined masks are compared: a detection without an outline (a detection-only model) has
    its whole box as its mask, and boxes of objects side by side overlap much more than their pixels
    do (a person beside a car would never get an id)."""
    if detection.outline() is None or (mask := detection.mask()) is None:
        return False
    for other in continuing:
        a, b = detection.box, other.box
        if a[0] >= b[2] or b[0] >= a[2] or a[1] >= b[3] or b[1] >= a[3]:
            continue  # boxes apart: spare filling a mask a clear box match never needed
        if other.outline() is None or (theirs := other.mask()) is None:
            continue
        if mask.shared(theirs) >= SHOWN_AGAIN_SHARE * min(mask.count, theirs.count):
            return True
    return False


def _similarity(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Bhattacharyya coefficient of two colour histograms (1 where either is unknown)."""
    return 1.0 if a is None or b is None else float(np.sqrt(a) @ np.sqrt(b))
