"""One benchmark case in a fresh process: ``python -m bench.case '<json>'`` prints one JSON line.

A fresh process per case keeps each measurement honest: no model, thread pool or allocator state is
shared between the seed loop and segcast, or between one configuration and the next.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCH-RESULT "
#: Times every tracker's cost is measured on the crowded scene, alternating their order; each keeps its
#: fastest (a tracker's time depends on what ran before it in the process, and a shared machine's
#: speed drifts over minutes: with 3 rounds, one run put segtrack at 1.60 times ByteTrack's time and
#: a run of those two alone minutes later at 1.08, same code and machine; a round costs seconds).
COST_ROUNDS = 5


def run(case: dict[str, Any]) -> dict[str, Any]:
    kind, video = case["kind"], Path(case["video"])
    if kind == "seed":
        from bench.seed_loop import SeedSettings, run_seed_loop

        settings = SeedSettings(case.get("settings", SeedSettings.AS_WRITTEN.value))
        loop = run_seed_loop(case["model"], video, case["frames"], case["imgsz"], settings)
        return {"frames": loop.frames, "seconds": loop.seconds, "fps": loop.fps}
    if kind == "segcast":
        from bench.pipeline import ForwardTimer, run_pipeline

        timer = ForwardTimer(case["model"], _first_frame(video), case["imgsz"]) if case.get("forward") else None
        before = timer.median_ms() if timer else None
        result = run_pipeline(
            case["model"],
            video,
            frames=case["frames"],
            imgsz=case["imgsz"],
            streams=case.get("streams", 1),
            max_batch=case.get("max_batch", 8),
            annotated=case.get("annotated", True),
            fast_masks=case.get("fast_masks", True),
            tracker=case.get("tracker"),
        )
        out: dict[str, Any] = {
            "frames": result.frames,
            "seconds": result.seconds,
            "fps": result.fps,
            "dropped_by_encoder": result.dropped_by_encoder,
        }
        if timer is not None and before is not None:
            out["forward_ms"] = (before + timer.median_ms()) / 2
        return out
    if kind == "tracking":
        from server.inference.models import load_model
        from server.options import StreamOptions
        from server.scene import Scene
        from tools.track_report import track_scene

        options = StreamOptions.from_mapping({"imgsz": case["imgsz"]})
        model, scene = load_model(case["model"]), Scene(seed=case["seed"])
        score = track_scene(model, scene, case["frames"], options, fast_masks=case.get("fast_masks", True))
        scored = {"idf1": score.idf1, "mota": score.mota, "switches": score.switches, "ms_per_frame": score.mean_ms}
        return scored | {"truth_boxes": score.truth_boxes}  # with none, IDF1 and MOTA are 0 by convention: no score
    if kind == "occlusion":
        return _occlusion(case)
    if kind == "analytics":
        return _analytics(case)
    raise ValueError(f"unknown case kind {kind!r}")


def _occlusion(case: dict[str, Any]) -> dict[str, Any]:
    """Every tracker on the occlusion family's seeds, and each one's own cost per frame on a crowded scene."""
    from bench.tracker_cost import tracker_costs
    from server.inference.models import load_model
    from server.options import SEGTRACK, StreamOptions, tracker_kinds
    from server.scene import Scene
    from tools.track_report import compare_trackers

    model = load_model(case["model"])
    kinds = tracker_kinds()
    options = {k: StreamOptions.from_mapping({"imgsz": case["imgsz"], "tracker": k}) for k in kinds}
    per_seed: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for seed in case["seeds"]:
        scores = compare_trackers(model, Scene(seed=seed, family="occlusion"), case["frames"], options)
        for k, s in scores.items():
            bands = {name: recall for name, recall, _ in s.id_recall}
            scored = {"idf1": s.idf1, "hota": s.hota, "mota": s.mota, "switches": s.switches, "bands": bands}
            per_seed[k].append(scored | {"truth_boxes": s.truth_boxes})
    costs = tracker_costs(model, kinds, case["cost_scene"], case["cost_start"], case["cost_frames"], case["cost_imgsz"])
    return {
        "seeds": case["seeds"],
        "default": StreamOptions().tracker,
        "own": [SEGTRACK],
        "trackers": per_seed,
        "cost_ms": costs.ms_per_frame,
        "cost_objects": costs.objects,
        "cost_rounds": COST_ROUNDS,
    }


def _first_frame(video: Path) -> Any:
    import av

    with av.open(str(video)) as container:
        return next(container.decode(video=0)).to_ndarray(format="bgr24")


def _analytics(case: dict[str, Any]) -> dict[str, Any]:
    """Zone and line accuracy on each seed, with the standard layout of tools/analytics_report.py."""
    from server.inference.models import load_model
    from server.scene import Scene
    from tools.analytics_report import layout, run_scene

    model = load_model(case["model"])
    per_seed = []
    for seed in case["seeds"]:
        score = run_scene(model, Scene(seed=seed), case["frames"], layout()).score(case["dwell_tolerance_s"])
        per_seed.append({"seed": seed, **{k: v for k, v in asdict(score).items() if k != "dwell_errors_s"}})
    return {"seeds": per_seed, "dwell_tolerance_s": case["dwell_tolerance_s"]}


def main() -> int:
    result = run(json.loads(sys.argv[1]))
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
