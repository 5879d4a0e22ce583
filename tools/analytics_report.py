"""Zone and line accuracy on a generated scene: counts and dwell times against the exact ground truth.

    python tools/analytics_report.py --seed 7
    python tools/analytics_report.py --seed 11 --frames 450 --tracker segtrack --imgsz 384

Puts a standard layout on the scene (`LINES`: five rows, three columns, a bent line and a
centroid-anchored one; `ZONES`: six zones of several shapes), runs the scene through the real
`InferenceWorker` (model, tracker and analytics, the code the server runs), and compares the events
with the truth computed by the same rules from the objects' true masks.

Truth follows the rules docs/analytics.md states, applied to what the scene generator knows exactly.
An object is in a zone from the frame at least ``min_share`` of its visible mask is inside until it
drops below `EXIT_SHARE_RATIO` of that (or is last seen). Its reference point crosses a line when it
moves over the line from beyond the dead band on one side to beyond it on the other and stays there
``confirm_s``; for lines the point comes from the object's whole outline, hidden parts included: an
object whose lower part a nearer one hides has not moved, and a count caused by that is wrong.
Reported tracks are tied to scene objects frame by frame (box IoU), so a count by the wrong track
does not pass for a right one; a crossing is judged by its track's object in the frame it is dated
(where its box matches none there, the object the track followed most within `CROSSING_SLACK_FRAMES`
of it) and may have happened while its track was unseen (`_match_crossings`), a visit is judged by
the object its track followed in most frames of it.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import queue
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python tools/analytics_report.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2
import numpy as np

from server.analytics.events import AnalyticsEvent, AnalyticsEventKind
from server.analytics.shapes import Anchor, Line, Point, Zone, resolve
from server.analytics.zone_membership import EXIT_SHARE_RATIO
from server.frames import Frame, FrameResult
from server.inference.options import InferenceOptions
from server.inference.worker import InferenceWorker
from server.options import StreamOptions
from server.scene import CLASS_NAMES, Scene, TrueObject, pixels_of
from tools.track_report import match_boxes, positive_int, scene_seed

#: Lines across the middle of the picture, straight and bent, and zones away from its edges.
LINES = [
    *(
        {"name": f"row{i}", "points": [[0.05, y], [0.95, y]], "units": "fraction"}
        for i, y in enumerate((0.25, 0.4, 0.55, 0.7, 0.82))
    ),
    *(
        {"name": f"column{i}", "points": [[x, 0.05], [x, 0.95]], "units": "fraction"}
        for i, x in enumerate((0.25, 0.5, 0.75))
    ),
    {"name": "bent", "points": [[0.1, 0.5], [0.3, 0.2], [0.7, 0.8], [0.9, 0.5]], "units": "fraction"},
    {"name": "centre", "points": [[0.05, 0.5], [0.95, 0.5]], "units": "fraction", "anchor": "centre"},
]
ZONES = [
    {"name": "bay", "points": [[0.3, 0.3], [0.7, 0.3], [0.7, 0.7], [0.3, 0.7]], "units": "fraction", "loiter_s": 2},
    {"name": "corner", "points": [[40, 40], [260, 60], [120, 180]]},
    {"name": "strip", "points": [[0.55, 0.1], [0.95, 0.1], [0.95, 0.45], [0.55, 0.45]], "units": "fraction"},
    {"name": "left", "points": [[0.05, 0.2], [0.3, 0.2], [0.3, 0.9], [0.05, 0.9]], "units": "fraction"},
    {"name": "floor", "points": [[0.2, 0.75], [0.8, 0.75], [0.9, 0.95], [0.1, 0.95]], "units": "fraction"},
    {"name": "wedge", "points": [[0.6, 0.5], [0.95, 0.55], [0.7, 0.9]], "units": "fraction"},
]
SEEDS = (7, 11, 23)  # none of them among the bundled model's training or validation seeds
FRAMES = 450  # 30 s of the scene
DWELL_TOLERANCE_S = 0.5  # issue 12's bar: dwell within this of the truth
RESULT_TIMEOUT_S = 120.0  # one frame through the worker on a loaded machine

#: A reported crossing counts for a true one this many frames apart (the visible mask crosses a
#: little before or after the whole outline does).
CROSSING_SLACK_FRAMES = 8


@dataclass(frozen=True, slots=True)
class TrueCrossing:
    object_id: int
    line: str
    direction: str
    frame: int  # when its stay across began: the date segcast gives a crossing
    counted: int  # when the rule counts it (``confirm_s`` later, or as the object left the picture)


@dataclass(slots=True)
class TrueVisit:
    object_id: int
    zone: str
    first: int  # frame index of the first frame inside
    last: int  # ... and of the latest
    closed: bool = False

    def dwell_s(self, fps: float) -> float:
        return (self.last - self.first) / fps


@dataclass(slots=True)
class Truth:
    crossings: list[TrueCrossing] = field(default_factory=list)
    visits: list[TrueVisit] = field(default_factory=list)
    #: (frame, object id) -> zones the object is in by the mask rule, and by a box-centre rule.
    inside: dict[tuple[int, int], tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict)


def zone_masks(zones: Sequence[Zone], width: int, height: int) -> dict[str, np.ndarray]:
    masks = {}
    for zone in zones:
        points = resolve(zone.points, zone.units, width, height, zone.name)
        mask = np.zeros((height, width), dtype=np.uint8)
        cv2.fillPoly(mask, [np.round(np.array(points)).astype(np.int32)], 1)
        masks[zone.name] = mask.astype(bool)
    return masks


def true_point(mask: np.ndarray, anchor: Anchor) -> Point:
    """The line point of an object's whole mask (frame-sized, bool, not empty)."""
    ys, xs = pixels_of(mask)
    return (float(xs.mean()), float(ys.max())) if anchor is Anchor.BOTTOM else (float(xs.mean()), float(ys.mean()))


def _side(point: Point, points: Sequence[Point]) -> tuple[int, float]:
    """Side (+1 right of the way first -> last point) and distance of ``point``, from its nearest segment."""
    best = (0, float("inf"))
    p = np.array(point)
    for a, b in itertools.pairwise(points):
        a_, b_ = np.array(a), np.array(b)
        u = float(np.clip(np.dot(p - a_, b_ - a_) / np.dot(b_ - a_, b_ - a_), 0, 1))
        distance = float(np.linalg.norm(p - (a_ + u * (b_ - a_))))
        if distance < best[1]:
            d = b_ - a_
            best = (int(np.sign(d[0] * (p[1] - a_[1]) - d[1] * (p[0] - a_[0]))), distance)
    return best


def _intersects(p: Point, q: Point, points: Sequence[Point]) -> bool:
    for a, b in itertools.pairwise(points):
        if _orient(a, b, p) * _orient(a, b, q) <= 0 and _orient(p, q, a) * _orient(p, q, b) <= 0:
            return True
    return False


def _orient(a: Point, b: Point, c: Point) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def scene_truth(
    scene: Scene, objects_per_frame: Sequence[Sequence[TrueObject]], zones: Sequence[Zone], lines: Sequence[Line]
) -> Truth:
    """The truth of frames 0, 1, ... of ``scene``, given what `Scene.render` says is in each."""
    width, height = scene.width, scene.height
    masks = zone_masks(zones, width, height)
    truth = Truth(crossings=true_crossings(scene, len(objects_per_frame), lines))
    open_visits: dict[tuple[int, str], TrueVisit] = {}
    for index, objects in enumerate(objects_per_frame):
        for obj in objects:
            area = int(obj.mask.sum())
            x1, y1, x2, y2 = obj.box
            centre = (min(height - 1, (y1 + y2) // 2), min(width - 1, (x1 + x2) // 2))
            by_mask, by_centre = set(), set()
            for zone in zones:
                if zone.classes and obj.class_name not in zone.classes:
                    continue
                share = int((obj.mask & masks[zone.name]).sum()) / area
                key = (obj.object_id, zone.name)
                visit = open_visits.get(key)
                if visit is None and share >= zone.min_share:
                    visit = open_visits[key] = TrueVisit(obj.object_id, zone.name, index, index)
                    truth.visits.append(visit)
                elif visit is not None and share < zone.min_share * EXIT_SHARE_RATIO:
                    visit.closed = True
                    del open_visits[key]
                    visit = None
                if visit is not None:
                    visit.last = index
                    by_mask.add(zone.name)
                if masks[zone.name][centre]:
                    by_centre.add(zone.name)
            truth.inside[(index, obj.object_id)] = (frozenset(by_mask), frozenset(by_centre))
    return truth


@dataclass(slots=True)
class _Side:
    side: int
    point: Point
    crossed: bool = False
    pending: int | None = None  # frame its stay across began


def true_crossings(scene: Scene, frames: int, lines: Sequence[Line]) -> list[TrueCrossing]:
    """Crossings of each object's whole outline (hidden parts included) in frames 0 .. ``frames`` - 1.

    An object is followed while it is anywhere in the picture, seen or hidden, so a crossing made
    behind another object counts, and a nearer object hiding its lower part never makes one.
    """
    width, height = scene.width, scene.height
    pixel_lines = [(line, resolve(line.points, line.units, width, height, line.name)) for line in lines]
    states: dict[tuple[int, str], _Side] = {}
    crossings: list[TrueCrossing] = []

    def count(object_id: int, line: str, state: _Side, index: int) -> None:
        assert state.pending is not None
        crossings.append(TrueCrossing(object_id, line, "in" if state.side < 0 else "out", state.pending, index))
        state.side, state.crossed, state.pending = -state.side, False, None

    for index in range(frames):
        present = set()
        for object_id, class_id, mask in scene.whole_masks(index):
            if not mask.any():
                continue
            present.add(object_id)
            anchored: dict[Anchor, Point] = {}  # the object's point for each anchor its lines use
            for line, points in pixel_lines:
                if line.classes and CLASS_NAMES[class_id] not in line.classes:
                    continue
                if line.anchor not in anchored:
                    anchored[line.anchor] = true_point(mask, line.anchor)
                point = anchored[line.anchor]
                side, distance = _side(point, points)
                band = line.hysteresis * min(width, height)
                key = (object_id, line.name)
                state = states.get(key)
                if state is None:
                    states[key] = _Side(side if distance > band else 0, point)
                    continue
                state.crossed = state.crossed or _intersects(state.point, point, points)
                state.point = point
                if distance <= band:
                    state.pending = None  # the stay across starts again, as segcast's rule says
                    continue
                if not state.side or side == state.side or not state.crossed:
                    state.side, state.crossed, state.pending = side, False, None
                    continue
                if state.pending is None:
                    state.pending = index
                if (index - state.pending) / scene.fps >= line.confirm_s:
                    count(object_id, line.name, state, index)
        for key in [k for k in states if k[0] not in present]:  # gone from the picture
            state = states.pop(key)
            if state.pending is not None:
                count(key[0], key[1], state, index)
    return crossings


@dataclass(slots=True)
class Score:
    true_crossings: int
    found_crossings: int  # true crossings counted once, by the right object, in the right direction
    extra_crossings: int  # reported crossings that match no true one (double counts among them), as scored
    scored_visits: int
    visits_within: int  # true visits whose reported dwell is within the tolerance
    dwell_errors_s: list[float]

    def line(self) -> str:
        errors = np.array(self.dwell_errors_s or [0.0])
        return (
            f"crossings {self.found_crossings}/{self.true_crossings} found, {self.extra_crossings} extra; "
            f"dwell within tolerance {self.visits_within}/{self.scored_visits} "
            f"(median error {np.median(errors):.3f} s, max {errors.max():.3f} s)"
        )


def track_objects(
    objects_per_frame: Sequence[Sequence[TrueObject]], results: Sequence[FrameResult]
) -> dict[tuple[int, int], int]:
    """(frame, track id) -> the scene object the track's box matches in that frame."""
    owners = {}
    for result in results:
        objects = objects_per_frame[result.frame.seq]
        for i, j in match_boxes(objects, [t.box for t in result.tracks]):
            owners[(result.frame.seq, result.tracks[j].track_id)] = objects[i].object_id
    return owners


def score(
    scene: Scene,
    objects_per_frame: Sequence[Sequence[TrueObject]],
    results: Sequence[FrameResult],
    truth: Truth,
    dwell_tolerance_s: float,
) -> Score:
    owners = track_objects(objects_per_frame, results)
    last_frame = results[-1].frame.seq
    fps = float(scene.fps)
    events = [(r.frame.seq, e) for r in results for e in r.events if isinstance(e, AnalyticsEvent)]
    # A crossing is dated when its stay across began, which may be before it was reported.
    counts = [(seq, e) for seq, e in events if e.kind is AnalyticsEventKind.LINE_CROSS]
    crossed = [(round(e.media_time * fps), e) for _, e in counts]
    unmatched, unpaired = _match_crossings(crossed, truth.crossings, owners, results)
    # A crossing in the run's last moments is scored only if a count dated as late as the slack
    # allows would have been confirmed (counted, as the truth's was) before the run ended.
    scored = [c for c in truth.crossings if c.counted + CROSSING_SLACK_FRAMES <= last_frame]
    found = sum(c not in unmatched for c in scored)
    # The same the other way: a count that matches no true crossing is extra only if a true one dated
    # as late as the slack allows would have been confirmed (taking as long as this count did) before
    # the run ended; otherwise its partner may be a crossing the truth had yet to count.
    extra = sum(counts[i][0] + CROSSING_SLACK_FRAMES <= last_frame for i in unpaired)
    # Reported visits: (track, zone) from its enter event to its exit (or the last frame it was in),
    # each credited to the object its track followed in most frames of the visit. The entry frame
    # alone would judge a visit by one box, which a detection merged with a neighbour's or cut by the
    # picture's edge can move off its object for that frame.
    inside: dict[tuple[int, str], list[tuple[float, int | None]]] = {}
    for result in results:
        for track in result.tracks:
            for zone in track.zones:
                owner = owners.get((result.frame.seq, track.track_id))
                inside.setdefault((track.track_id, zone), []).append((result.frame.media_time, owner))
    spans: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for _, event in events:
        key = (event.track_id, event.zone or "")
        if event.kind is AnalyticsEventKind.ZONE_ENTER:
            spans.setdefault(key, []).append((event.media_time, -1.0))
        elif event.kind is AnalyticsEventKind.ZONE_EXIT and key in spans:
            spans[key][-1] = (spans[key][-1][0], event.dwell_s or 0.0)
    reported: dict[tuple[int, str], list[tuple[int | None, float, float]]] = {}
    for key, visits in spans.items():
        frames = inside.get(key, [])
        for entered, dwell in visits:
            if dwell < 0:  # a visit the run ended in: up to the last frame the track was inside
                dwell = max((t for t, _ in frames if t >= entered), default=entered) - entered
            followed = Counter(o for t, o in frames if entered <= t <= entered + dwell and o is not None)
            owner = followed.most_common(1)[0][0] if followed else None
            reported.setdefault(key, []).append((owner, entered, dwell))
    within, errors, scored_visits = 0, [], 0
    for visit in truth.visits:
        if visit.last >= last_frame - 1:
            continue  # still going when the run ended
        scored_visits += 1
        candidates = [
            (entered, dwell)
            for (_, zone), visits in reported.items()
            if zone == visit.zone
            for owner, entered, dwell in visits
            if owner == visit.object_id and dwell >= 0
        ]
        if not candidates:
            continue
        entered, dwell = min(candidates, key=lambda c: abs(c[0] - visit.first / fps))
        error = abs(dwell - visit.dwell_s(fps))
        errors.append(error)
        within += error <= dwell_tolerance_s
    return Score(len(scored), found, extra, scored_visits, within, errors)


def _match_crossings(
    crossed: Sequence[tuple[int, AnalyticsEvent]],
    true_crossings: Sequence[TrueCrossing],
    owners: dict[tuple[int, int], int],
    results: Sequence[FrameResult],
) -> tuple[list[TrueCrossing], list[int]]:
    """Pair reported crossings (dated frame, event) with true ones: the true ones left, and the indices
    in ``crossed`` of the reported ones that matched none.

    A reported crossing matches a true one of its track's object, line and direction from
    `CROSSING_SLACK_FRAMES` before the last frame its track was seen before it (a crossing made while
    the track was unseen is only known, and dated, when it is seen across) to as many after its date.
    Its object is the one its track's box matches at that date, or, where the box matches none there
    (merged with a neighbour's, or cut down by a nearer one), the one the track followed most within
    the slack.
    """
    seen_in: dict[int, list[int]] = {}  # track id -> the frames it was reported in, in order
    matched_in: dict[int, list[tuple[int, int]]] = {}  # track id -> (frame, object) where its box matched one
    for result in results:
        for track in result.tracks:
            seen_in.setdefault(track.track_id, []).append(result.frame.seq)
    for (seq, track_id), object_id in owners.items():
        matched_in.setdefault(track_id, []).append((seq, object_id))
    unmatched, unpaired = list(true_crossings), []
    for index, (frame, event) in enumerate(crossed):
        owner = owners.get((frame, event.track_id))
        if owner is None:
            near = Counter(
                o for seq, o in matched_in.get(event.track_id, ()) if abs(seq - frame) <= CROSSING_SLACK_FRAMES
            )
            owner = near.most_common(1)[0][0] if near else None
        seen = seen_in.get(event.track_id, [])
        before = bisect.bisect_left(seen, frame)
        since = min(seen[before - 1], frame) if before else frame
        match = next(
            (
                c
                for c in unmatched
                if c.object_id == owner
                and c.line == event.line
                and c.direction == event.direction
                and since - CROSSING_SLACK_FRAMES <= c.frame <= frame + CROSSING_SLACK_FRAMES
            ),
            None,
        )
        if match is None:
            unpaired.append(index)
        else:
            unmatched.remove(match)
    return unmatched, unpaired


def layout(tracker: str | None = None, imgsz: int | None = None) -> StreamOptions:
    """The stream options of the standard layout (`ZONES`, `LINES`), with ``tracker`` and the
    model's input size ``imgsz`` if given."""
    values: dict[str, Any] = {"zones": ZONES, "lines": LINES}
    if tracker is not None:
        values["tracker"] = tracker
    if imgsz is not None:
        values["imgsz"] = imgsz
    return StreamOptions.from_mapping(values)


@dataclass(frozen=True, slots=True)
class Run:
    """One scene through the worker: what was in each frame, what segcast reported, and the truth."""

    scene: Scene
    objects: list[list[TrueObject]]
    results: list[FrameResult]
    truth: Truth

    def score(self, dwell_tolerance_s: float = DWELL_TOLERANCE_S) -> Score:
        return score(self.scene, self.objects, self.results, self.truth, dwell_tolerance_s)


def run_scene(
    model: Any,
    scene: Scene,
    frames: int = FRAMES,
    options: StreamOptions | None = None,
    before: Callable[[np.ndarray, list[TrueObject]], object] | None = None,
) -> Run:
    """Frames 0 .. ``frames`` - 1 of ``scene`` through a real `InferenceWorker`, one at a time.

    Each frame is rendered once, for the model and for the truth; ``before`` sees it first (a test's
    stand-in model learns the truth of the frame it is about to be asked about).
    """
    options = options or layout()
    delivered: queue.Queue[FrameResult] = queue.Queue()
    worker = InferenceWorker("report", delivered.put, InferenceOptions(), load=lambda _: model)
    worker.start()
    try:
        slot = worker.add_stream("scene", float(scene.fps), options)
        objects, results = [], []
        for index in range(frames):
            image, truths = scene.render(index)
            objects.append(truths)
            if before is not None:
                before(image, truths)
            slot.put(Frame("scene", index, 1_700_000_000.0 + index / scene.fps, index / scene.fps, image))
            results.append(delivered.get(timeout=RESULT_TIMEOUT_S))
    finally:
        worker.stop()
    return Run(scene, objects, results, scene_truth(scene, objects, options.zones, options.lines))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--seed", type=scene_seed, action="append", help=f"scene seed; repeat for several (default {SEEDS})"
    )
    parser.add_argument("--frames", type=positive_int, default=FRAMES)
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--tracker", default=None, help="the stream's tracker (default: segcast's default)")
    parser.add_argument("--imgsz", type=int, default=None, help="the model's input size (default: the model's own)")
    args = parser.parse_args(argv)
    try:
        options = layout(args.tracker, args.imgsz)
    except ValueError as exc:
        parser.error(str(exc))

    from server.inference.models import ModelError, load_model

    try:
        model = load_model(args.model)
    except ModelError as exc:
        parser.error(str(exc))
    for seed in args.seed or SEEDS:
        result = run_scene(model, Scene(seed=seed), args.frames, options).score()
        print(f"seed {seed}  {result.line()}", flush=True)


if __name__ == "__main__":
    main()
