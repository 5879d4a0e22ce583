"""Tracking quality on a generated scene: MOTA, IDF1 and id switches against the exact ground truth.

    python tools/track_report.py --seed 7 --frames 300
    python tools/track_report.py --seed 7 --every 3 --tracker botsort --set track_buffer=60

Runs the model and segcast's own per-stream tracker (`server.tracking.StreamTracker`, the code the
server runs) over ``--frames`` frames of the scene, every ``--every``-th frame as a busy worker would,
and scores the tracks with motmetrics. ``switches apart`` counts id changes of objects that were
fully visible and clear of every other object, the case a tracker has no excuse for.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import motmetrics as mm
import numpy as np
from scipy.optimize import linear_sum_assignment

from server.detections import detect
from server.frames import Frame, Track
from server.options import StreamOptions
from server.scene import Scene, TrueObject
from server.tracking import StreamTracker

MATCH_IOU = 0.5  # a track covers an object when their boxes overlap at least this much
APART_GAP_PX = 8


@dataclass(frozen=True, slots=True)
class TrackingScore:
    frames: int
    mota: float
    idf1: float
    switches: int
    switches_apart: int  # extra ids given to objects while they were apart from all others
    mean_ms: float  # model and tracker time per frame

    def line(self) -> str:
        return (
            f"frames {self.frames}  MOTA {self.mota:.3f}  IDF1 {self.idf1:.3f}  "
            f"ID switches {self.switches} (while apart {self.switches_apart})  {self.mean_ms:.1f} ms/frame"
        )


def _box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _apart(truth: TrueObject, others: Sequence[TrueObject], width: int, height: int) -> bool:
    x1, y1, x2, y2 = truth.box
    if truth.occluded_fraction > 0 or x1 <= 0 or y1 <= 0 or x2 >= width or y2 >= height:
        return False
    grown = (x1 - APART_GAP_PX, y1 - APART_GAP_PX, x2 + APART_GAP_PX, y2 + APART_GAP_PX)
    return all(o is truth or _box_iou(grown, o.box) == 0 for o in others)


def score(scene: Scene, observed: Iterable[tuple[int, Sequence[Track]]], mean_ms: float = 0.0) -> TrackingScore:
    """Score tracks against the truth; ``observed`` is (scene frame index, tracks) per processed frame.

    The IoU distance matrix is built here rather than with ``motmetrics.distances.iou_matrix``, which
    calls ``np.asfarray`` (gone in NumPy 2).
    """
    accumulator = mm.MOTAccumulator(auto_id=True)
    ids_apart: dict[int, set[int]] = defaultdict(set)
    frames = 0
    for index, tracks in observed:
        frames += 1
        truths = scene.render(index)[1]
        distances = np.full((len(truths), len(tracks)), np.nan)
        for i, truth in enumerate(truths):
            for j, track in enumerate(tracks):
                iou = _box_iou(truth.box, track.box)
                if iou >= MATCH_IOU:
                    distances[i, j] = 1.0 - iou
        accumulator.update([t.object_id for t in truths], [t.track_id for t in tracks], distances)
        if truths and tracks:
            rows, cols = linear_sum_assignment(np.nan_to_num(distances, nan=2.0))
            for i, j in zip(rows, cols, strict=True):
                if not np.isnan(distances[i, j]) and _apart(truths[i], truths, scene.width, scene.height):
                    ids_apart[truths[i].object_id].add(tracks[j].track_id)
    summary = mm.metrics.create().compute(accumulator, metrics=["mota", "idf1", "num_switches"], name="scene")
    return TrackingScore(
        frames=frames,
        mota=float(summary["mota"].iloc[0]),
        idf1=float(summary["idf1"].iloc[0]),
        switches=int(summary["num_switches"].iloc[0]),
        switches_apart=sum(len(ids) - 1 for ids in ids_apart.values()),
        mean_ms=mean_ms,
    )


def track_scene(
    model: Any, scene: Scene, frames: int, options: StreamOptions, every: int = 1, fast_masks: bool = True
) -> TrackingScore:
    """Run the model and a fresh `StreamTracker` over every ``every``-th frame of ``scene``, and score it.

    ``fast_masks`` picks the outline path as `server.worker.InferenceOptions.fast_masks` does.
    """
    tracker = StreamTracker("report", dict(model.names), options, float(scene.fps))
    observed: list[tuple[int, Sequence[Track]]] = []
    imgsz = options.imgsz or int(model.overrides.get("imgsz", 640))
    spent = 0.0
    for index in range(0, frames, every):
        image = scene.render(index)[0]
        started = time.perf_counter()
        [detections] = detect(
            model,
            [image],
            fast_masks=fast_masks,
            imgsz=imgsz,
            conf=options.conf,
            iou=options.iou,
            agnostic_nms=options.agnostic_nms,
            verbose=False,
        )
        frame = Frame("report", index, time.time(), index / scene.fps, image)
        tracks, _ = tracker.update(detections, frame)
        spent += time.perf_counter() - started
        observed.append((index, tracks))
    return score(scene, observed, 1000 * spent / max(len(observed), 1))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--every", type=int, default=1, help="process every N-th frame (simulates a busy worker)")
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--imgsz", type=int, default=None)
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--tracker", default="bytetrack")
    parser.add_argument("--set", type=_setting, action="append", default=[], help="tracker setting KEY=VALUE")
    parser.add_argument(
        "--plain-masks", action="store_true", help="outlines from ultralytics' whole-input masks (the reference path)"
    )
    args = parser.parse_args()

    from server.models import load_model

    options = StreamOptions.from_mapping(
        {"imgsz": args.imgsz, "conf": args.conf, "tracker": args.tracker, "tracker_settings": dict(args.set)}
    )
    model, scene = load_model(args.model), Scene(seed=args.seed)
    result = track_scene(model, scene, args.frames, options, args.every, fast_masks=not args.plain_masks)
    masks = "plain" if args.plain_masks else "fast"
    print(f"seed {args.seed}  tracker {args.tracker}  every {args.every}  {masks} masks  {result.line()}")


if __name__ == "__main__":
    main()
