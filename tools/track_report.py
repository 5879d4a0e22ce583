"""Tracking quality on a generated scene: HOTA, IDF1, MOTA and id switches against the exact ground truth.

    python tools/track_report.py --seed 7 --frames 300
    python tools/track_report.py --family occlusion --seed 11 --tracker all
    python tools/track_report.py --seed 7 --every 3 --tracker botsort --set track_buffer=60
    python tools/track_report.py --family occlusion --seed 11 --camera shaking --set camera_motion=true

Runs the model and segcast's own per-stream tracker (`server.tracking.StreamTracker`, the code the
server runs) over ``--frames`` frames of the scene, every ``--every``-th frame as a busy worker would,
and scores the tracks with motmetrics (MOTA, IDF1, switches) and HOTA (`hota`).
``switches apart`` counts id changes from one processed frame to the next of objects that were fully
visible and clear of every other object in both, the case a tracker has no excuse for. ``id recall``
per visibility band is the share of the objects' boxes in that band covered by the track IDF1 paired
the object with: where ids get lost.

HOTA (Luiten et al., IJCV 2021) is computed as TrackEval defines it (and checked against it): per
frame, truth and tracks are matched by Hungarian assignment on each pair's IoU weighted by how well
the two ids agree over the whole sequence; the matches at each IoU threshold alpha (0.05 ... 0.95)
give detection accuracy (DetA) and association accuracy (AssA), HOTA = sqrt(DetA * AssA), averaged
over the thresholds. It is written here rather than imported because the TrackEval wheel pins the
non-headless OpenCV, which would replace the one ultralytics runs on.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python tools/track_report.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import motmetrics as mm
import numpy as np
from scipy.optimize import linear_sum_assignment

from bench.arguments import positive_int, whole_number
from server.frames import Frame, Track
from server.inference.detections import Detections, detect
from server.options import DEFAULT_TRACKER, StreamOptions, tracker_kinds
from server.scene import CAMERAS, FAMILIES, Scene, TrueObject
from server.tracking.filters import detection_conf
from server.tracking.stream import StreamTracker

WARM_UP_UPDATES = 1  # first frames left out of the time per frame: they also set the predictor and tracker up
MATCH_IOU = 0.5  # a track covers an object when their boxes overlap at least this much
APART_GAP_PX = 8
ALPHAS = np.arange(0.05, 0.99, 0.05)  # HOTA's localisation thresholds, as TrackEval's
_EPS = np.finfo(float).eps

#: One frame: the truth ids, the track ids and their IoU matrix (truths x tracks).
FrameIoU = tuple[Sequence[int], Sequence[int], np.ndarray]


@dataclass(frozen=True, slots=True)
class Hota:
    hota: float
    deta: float
    assa: float
    loca: float


def hota(frames: Sequence[FrameIoU]) -> Hota:
    """HOTA over a sequence, each frame given as truth ids, track ids and their IoU matrix."""
    truth_index = {i: n for n, i in enumerate(sorted({i for f in frames for i in f[0]}))}
    track_index = {i: n for n, i in enumerate(sorted({i for f in frames for i in f[1]}))}
    truth_count = np.zeros(len(truth_index))
    track_count = np.zeros(len(track_index))
    potential = np.zeros((len(truth_index), len(track_index)))
    for truths, tracks, iou in frames:
        rows = np.array([truth_index[i] for i in truths], np.intp)
        cols = np.array([track_index[i] for i in tracks], np.intp)
        truth_count[rows] += 1
        track_count[cols] += 1
        if len(rows) and len(cols):
            # Each pair's share of the IoU the two ids have with anything in this frame.
            denominator = iou.sum(axis=1, keepdims=True) + iou.sum(axis=0, keepdims=True) - iou
            share = np.divide(iou, denominator, out=np.zeros_like(iou), where=denominator > _EPS)
            potential[np.ix_(rows, cols)] += share
    alignment = potential / np.maximum(truth_count[:, None] + track_count[None, :] - potential, _EPS)
    true_positives = np.zeros(len(ALPHAS))
    matches = np.zeros((len(ALPHAS), len(truth_index), len(track_index)))
    localisation = np.zeros(len(ALPHAS))
    for truths, tracks, iou in frames:
        if not len(truths) or not len(tracks):
            continue
        rows = np.array([truth_index[i] for i in truths], np.intp)
        cols = np.array([track_index[i] for i in tracks], np.intp)
        match_r, match_c = linear_sum_assignment(-(alignment[np.ix_(rows, cols)] * iou))
        for a, alpha in enumerate(ALPHAS):
            kept = iou[match_r, match_c] >= alpha - _EPS
            true_positives[a] += kept.sum()
            matches[a, rows[match_r[kept]], cols[match_c[kept]]] += 1
            localisation[a] += iou[match_r[kept], match_c[kept]].sum()
    total_truth, total_tracks = truth_count.sum(), track_count.sum()
    union = truth_count[:, None] + track_count[None, :]
    assa = np.zeros(len(ALPHAS))
    for a in range(len(ALPHAS)):
        pair_accuracy = matches[a] / np.maximum(union - matches[a], 1)
        assa[a] = (matches[a] * pair_accuracy).sum() / max(true_positives[a], 1)
    deta = true_positives / np.maximum(total_truth + total_tracks - true_positives, 1)
    loca = localisation / np.maximum(true_positives, 1)
    return Hota(
        hota=float(np.mean(np.sqrt(deta * assa))),
        deta=float(np.mean(deta)),
        assa=float(np.mean(assa)),
        loca=float(np.mean(loca)),
    )


#: Visibility bands, as (name, lowest visible share); an object is in the first band it reaches.
BANDS: tuple[tuple[str, float], ...] = (("visible", 0.9), ("partly hidden", 0.5), ("mostly hidden", 0.0))


def band_of(visibility: float) -> str:
    return next(name for name, lowest in BANDS if visibility >= lowest)


def id_assignment(pairs: Sequence[tuple[int, int]]) -> dict[int, int]:
    """Each truth id's track id as IDF1 pairs them: one-to-one, most frames covered together."""
    truths = sorted({t for t, _ in pairs})
    tracks = sorted({k for _, k in pairs})
    if not truths:
        return {}
    counts = np.zeros((len(truths), len(tracks)))
    row = {t: n for n, t in enumerate(truths)}
    col = {k: n for n, k in enumerate(tracks)}
    for t, k in pairs:
        counts[row[t], col[k]] += 1
    rows, cols = linear_sum_assignment(-counts)
    return {truths[r]: tracks[c] for r, c in zip(rows, cols, strict=True) if counts[r, c] > 0}


@dataclass(frozen=True, slots=True)
class TrackingScore:
    frames: int
    mota: float
    idf1: float
    switches: int
    switches_apart: int  # id changes between two processed frames in both of which the object was apart
    mean_ms: float  # model and tracker time per frame
    hota: float = 0.0
    id_recall: tuple[tuple[str, float, int], ...] = ()  # per visibility band: name, id recall, boxes
    truth_boxes: int = 0  # truth boxes scored; with none, HOTA, MOTA and IDF1 are TrackEval's 0 and shown n/a

    def line(self) -> str:
        bands = "  ".join(f"{name} {recall:.2f} ({n})" for name, recall, n in self.id_recall)
        hota, mota, idf1 = (f"{v:.3f}" if self.truth_boxes else "n/a" for v in (self.hota, self.mota, self.idf1))
        return (
            f"frames {self.frames}  HOTA {hota}  MOTA {mota}  IDF1 {idf1}  "
            f"ID switches {self.switches} (while apart {self.switches_apart})  {self.mean_ms:.1f} ms/frame"
            + (f"  id recall: {bands}" if bands else "")
        )


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(
    truths: Sequence[TrueObject], boxes: Sequence[Sequence[float]], min_iou: float = MATCH_IOU
) -> list[tuple[int, int]]:
    """Pairs (truth index, box index) of the best one-to-one assignment with IoU >= ``min_iou``."""
    if not truths or not boxes:
        return []
    cost = np.array([[1.0 - box_iou(t.box, b) for b in boxes] for t in truths])
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if 1.0 - cost[r, c] >= min_iou]


def is_apart(
    truth: TrueObject, others: Sequence[TrueObject], width: int, height: int, gap_px: int = APART_GAP_PX
) -> bool:
    """Fully visible, inside the frame, and clear of every other object by ``gap_px``."""
    x1, y1, x2, y2 = truth.box
    if truth.occluded_fraction > 0 or x1 <= 0 or y1 <= 0 or x2 >= width or y2 >= height:
        return False
    grown = (x1 - gap_px, y1 - gap_px, x2 + gap_px, y2 + gap_px)
    return all(o is truth or box_iou(grown, o.box) == 0 for o in others)


def score(scene: Scene, observed: Iterable[tuple[int, Sequence[Track]]], mean_ms: float = 0.0) -> TrackingScore:
    """Score tracks against the truth; ``observed`` is (scene frame index, tracks) per processed frame.

    With no truth box in any scored frame, MOTA and IDF1 are 0 as TrackEval gives them (motmetrics
    divides by the number of truth boxes: NaN, or -inf with false tracks), so they stay plain numbers
    in JSON and in the bench page. The IoU distance matrix is built here rather than with
    ``motmetrics.distances.iou_matrix``, which calls ``np.asfarray`` (gone in NumPy 2).
    """
    accumulator = mm.MOTAccumulator(auto_id=True)
    apart_ids: dict[int, int] = {}  # object id -> its track id, for the objects apart in the last processed frame
    switches_apart = 0
    frames = truth_boxes = 0
    hota_frames = []
    covered: list[tuple[int, int]] = []  # (object id, track id) per frame their boxes overlap enough
    seen: list[tuple[TrueObject, set[int]]] = []  # each truth and the tracks covering it
    for index, tracks in observed:
        frames += 1
        truths = scene.render(index)[1]
        truth_boxes += len(truths)
        ious = np.array([[box_iou(t.box, k.box) for k in tracks] for t in truths]).reshape(len(truths), len(tracks))
        distances = np.where(ious >= MATCH_IOU, 1.0 - ious, np.nan)
        truth_ids, track_ids = [t.object_id for t in truths], [t.track_id for t in tracks]
        accumulator.update(truth_ids, track_ids, distances)
        hota_frames.append((truth_ids, track_ids, ious))
        for i, truth in enumerate(truths):
            near = {tracks[int(j)].track_id for j in np.flatnonzero(ious[i] >= MATCH_IOU)}
            covered += [(truth.object_id, k) for k in near]
            seen.append((truth, near))
        now = _apart_ids(scene, truths, tracks, distances)
        switches_apart += sum(apart_ids.get(object_id, track_id) != track_id for object_id, track_id in now.items())
        apart_ids = now
    summary = mm.metrics.create().compute(accumulator, metrics=["mota", "idf1", "num_switches"], name="scene")
    paired = id_assignment(covered)
    hits: dict[str, list[bool]] = {name: [] for name, _ in BANDS}
    for truth, near in seen:
        hits[band_of(truth.visibility)].append(paired.get(truth.object_id) in near)
    return TrackingScore(
        frames=frames,
        mota=float(summary["mota"].iloc[0]) if truth_boxes else 0.0,
        idf1=float(summary["idf1"].iloc[0]) if truth_boxes else 0.0,
        switches=int(summary["num_switches"].iloc[0]),
        switches_apart=switches_apart,
        mean_ms=mean_ms,
        hota=hota(hota_frames).hota,
        id_recall=tuple((name, float(np.mean(h)), len(h)) for name, h in hits.items() if h),
        truth_boxes=truth_boxes,
    )


def _apart_ids(
    scene: Scene, truths: Sequence[TrueObject], tracks: Sequence[Track], distances: np.ndarray
) -> dict[int, int]:
    """Object id -> matched track id, for the objects of one frame that are apart (`is_apart`).

    An id change counts as a switch while apart only between two processed frames in both of which
    the object was apart and matched: one made while it was hidden, or out of the picture, is not.
    """
    if not truths or not tracks:
        return {}
    rows, cols = linear_sum_assignment(np.nan_to_num(distances, nan=2.0))
    return {
        truths[i].object_id: tracks[j].track_id
        for i, j in zip(rows, cols, strict=True)
        if not np.isnan(distances[i, j]) and is_apart(truths[i], truths, scene.width, scene.height)
    }


def track_scene(
    model: Any, scene: Scene, frames: int, options: StreamOptions, every: int = 1, fast_masks: bool = True
) -> TrackingScore:
    """Run the model and a fresh `StreamTracker` over every ``every``-th frame of ``scene``, and score it.

    ``fast_masks`` picks the outline path as `server.inference.options.InferenceOptions.fast_masks` does.
    The time per frame leaves out the first `WARM_UP_UPDATES` frames, as `compare_trackers` does: the
    first ``detect`` sets ultralytics' predictor up (measured on seed 7: 1.75 s, then about 35 ms a
    frame), which no frame of a running stream pays.
    """
    tracker = StreamTracker("report", dict(model.names), options, float(scene.fps))
    observed: list[tuple[int, Sequence[Track]]] = []
    imgsz = options.imgsz or int(model.overrides.get("imgsz", 640))
    times = []
    for index in range(0, frames, every):
        image = scene.render(index)[0]
        started = time.perf_counter()
        [detections] = detect(
            model,
            [image],
            fast_masks=fast_masks,
            imgsz=imgsz,
            conf=detection_conf(options),
            iou=options.iou,
            agnostic_nms=options.agnostic_nms,
            verbose=False,
        )
        frame = Frame("report", index, time.time(), index / scene.fps, image)
        tracks, _ = tracker.update(detections, frame)
        times.append(time.perf_counter() - started)
        observed.append((index, tracks))
    return score(scene, observed, _mean_ms(times))


def _mean_ms(times: Sequence[float]) -> float:
    """Mean of ``times`` (seconds) in ms, past the first `WARM_UP_UPDATES` unless that leaves none."""
    steady = times[WARM_UP_UPDATES:] or times
    return 1000 * sum(steady) / max(len(steady), 1)


def compare_trackers(
    model: Any,
    scene: Scene,
    frames: int,
    options: dict[str, StreamOptions],
    fast_masks: bool = True,
    start: int = 0,
    rounds: int = 1,
) -> dict[str, TrackingScore]:
    """Every tracker in ``options`` (name -> the stream's options) over the same detections of ``scene``.

    Frames ``start`` to ``start + frames``. The model runs once per frame, at the lowest confidence
    any of them takes, as the worker does for streams that share a batch; each tracker then filters
    for itself. The outlines of detections a stream may report (at its ``conf``) are traced before
    any tracker runs, as every tracker's reported tracks need them; a tracker that asks for more
    (segtrack traces the weaker detections it matches) traces those in its own time, afresh in
    every run. So each one's time per frame (``mean_ms``, from the second frame on) is its own work.

    A tracker's time depends on what ran before it in the process (measured: ByteTrack took 1.5 ms
    a frame first and 3.2 after another tracker's run had been scored), so every tracker is timed
    before any is scored, and with ``rounds`` > 1 the trackers run that many times, each round in
    the reverse order of the last, and each keeps its fastest round. The tracks are the same every
    round (a fresh tracker over the same detections); the first round's are scored.
    """
    first = next(iter(options.values()))
    imgsz = first.imgsz or int(model.overrides.get("imgsz", 640))
    conf = min(detection_conf(o) for o in options.values())
    reported = min(o.conf for o in options.values())
    found: list[tuple[Frame, Detections]] = []
    for index in range(start, start + frames):
        image = scene.render(index)[0]
        [detections] = detect(
            model,
            [image],
            fast_masks=fast_masks,
            imgsz=imgsz,
            conf=conf,
            iou=first.iou,
            agnostic_nms=first.agnostic_nms,
            verbose=False,
        )
        for i in np.flatnonzero(detections.confidence >= reported):
            detections.outline(int(i))
        found.append(
            (Frame("report", index, 1_700_000_000.0 + index / scene.fps, index / scene.fps, image), detections)
        )
    observed: dict[str, list[tuple[int, Sequence[Track]]]] = {}
    fastest_ms: dict[str, float] = {}
    order = list(options)
    for _ in range(max(rounds, 1)):
        for name in order:
            tracker = StreamTracker("report", dict(model.names), options[name], float(scene.fps))
            run: list[tuple[int, Sequence[Track]]] = []
            times = []
            for frame, traced in found:
                detections = traced.with_own_outlines()
                started = time.perf_counter()
                tracks, _ = tracker.update(detections, frame)
                times.append(time.perf_counter() - started)
                run.append((frame.seq, tracks))
            observed.setdefault(name, run)
            fastest_ms[name] = min(fastest_ms.get(name, float("inf")), _mean_ms(times))
        order.reverse()
    return {name: score(scene, observed[name], fastest_ms[name]) for name in options}


def scene_seed(text: str) -> int:
    """An argparse type for a scene's seed: 0 or more, as `Scene` takes, refused before the model loads."""
    return whole_number(text, 0)


def _setting(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    value: Any = raw
    for kind in (int, float):
        try:
            value = kind(raw)
            break
        except ValueError:
            continue
    if raw.lower() in {"true", "false"}:
        value = raw.lower() == "true"
    return key, value


def _options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, StreamOptions]:
    """Each tracker's stream options from the flags, checked before the model loads (seconds): a bad
    ``--tracker``, ``--set``, ``--conf`` or ``--imgsz`` is an argparse error naming it, not a traceback."""
    kinds = tracker_kinds() if args.tracker == "all" else tuple(args.tracker.split(","))
    options = {}
    for kind in kinds:
        values = {"imgsz": args.imgsz, "conf": args.conf, "tracker": kind, "tracker_settings": dict(args.set)}
        try:
            options[kind] = StreamOptions.from_mapping(values)
        except ValueError as exc:
            parser.error(str(exc))
    return options


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=scene_seed, default=7)
    parser.add_argument("--family", choices=FAMILIES, default="wander", help="the kind of generated scene")
    parser.add_argument("--camera", choices=CAMERAS, default="still", help="how the scene's camera moves")
    parser.add_argument("--frames", type=positive_int, default=300)
    parser.add_argument(
        "--every", type=positive_int, default=1, help="process every N-th frame (simulates a busy worker)"
    )
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--imgsz", type=int, default=None)
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument(
        "--tracker",
        default=DEFAULT_TRACKER,
        help=f"a tracker (default: segcast's, {DEFAULT_TRACKER}), several separated by commas, or 'all' for a table",
    )
    parser.add_argument("--set", type=_setting, action="append", default=[], help="tracker setting KEY=VALUE")
    parser.add_argument(
        "--plain-masks", action="store_true", help="outlines from ultralytics' whole-input masks (the reference path)"
    )
    args = parser.parse_args(argv)
    options = _options(parser, args)

    from server.inference.models import ModelError, load_model

    try:
        model = load_model(args.model)
    except ModelError as exc:
        parser.error(str(exc))
    scene = Scene(seed=args.seed, family=args.family, camera=args.camera)
    masks = "plain" if args.plain_masks else "fast"
    alone = len(options) == 1 or args.every != 1
    if alone:
        results = {
            kind: track_scene(model, scene, args.frames, o, args.every, fast_masks=not args.plain_masks)
            for kind, o in options.items()
        }
    else:  # one model run shared by the trackers; ms/frame is then the tracker's own time
        results = compare_trackers(model, scene, args.frames, options, fast_masks=not args.plain_masks)
    for kind, result in results.items():
        print(
            f"{args.family} seed {args.seed}  {args.camera} camera  tracker {kind}  every {args.every}  {masks} masks  "
            f"{result.line()}",
            flush=True,
        )
    print("ms/frame: " + ("the model and the tracker" if alone else "each tracker alone, on one shared model run"))


if __name__ == "__main__":
    main()
