"""Each tracker's own time a frame on the crowded scene, alone: issue 13's cost bar on another machine.

``taskset -c 2 python -m bench.tracker_cost [--trackers segtrack,bytetrack] [--frames 100]``

The measurement of ``python -m bench --only occlusion``'s cost table (`compare_trackers` on
`TRACKER_COST_SCENE` from `BUSY_START`, at `BUSY_IMGSZ`, `COST_ROUNDS` alternating rounds, each
tracker's fastest), without that section's scoring of the occlusion family, so that it can be run
where the rest of the benchmark cannot (a GPU machine with no video stack): pin it to one core with
``taskset``, as the bar is stated for one. The baseline is ByteTrack in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from bench.case import COST_ROUNDS
from bench.measures import BUSY_IMGSZ, BUSY_START, TRACKER_COST_SCENE
from bench.run import positive_int

BASELINE = "bytetrack"


def main() -> None:
    from server.inference.models import load_model
    from server.options import StreamOptions, tracker_kinds
    from server.scene import Scene
    from tools.track_report import compare_trackers

    parser = argparse.ArgumentParser(prog="python -m bench.tracker_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--trackers", default=",".join(tracker_kinds()), help="comma-separated; bytetrack is added")
    parser.add_argument("--frames", type=positive_int, default=100, help="frames timed per round (1 or more)")
    args = parser.parse_args()
    kinds = dict.fromkeys([*args.trackers.split(","), BASELINE])
    options = {k: StreamOptions.from_mapping({"imgsz": BUSY_IMGSZ, "tracker": k}) for k in kinds}
    scene = Scene(**TRACKER_COST_SCENE)
    model = load_model(args.model)
    scores = compare_trackers(model, scene, args.frames, options, start=BUSY_START, rounds=COST_ROUNDS)
    frames = range(BUSY_START, BUSY_START + args.frames)
    objects = sum(len(scene.render(i)[1]) for i in frames) / len(frames)
    cost = {k: s.mean_ms for k, s in scores.items()}
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "?")
    result = {"cpu": cpu, "python": platform.python_version(), "objects": objects, "ms_per_frame": cost}
    print(json.dumps(result, indent=1))
    print(f"\n{cpu}, {objects:.1f} objects a frame, fastest of {COST_ROUNDS} rounds:")
    print(f"| tracker | ms per frame | vs {BASELINE} |\n|---|---|---|")
    for kind, ms in sorted(cost.items(), key=lambda item: item[1]):
        print(f"| {kind} | {ms:.2f} | {ms / cost[BASELINE]:.2f}x |")


def _cpuinfo() -> list[str]:
    path = Path("/proc/cpuinfo")
    return path.read_text().splitlines() if path.exists() else []


if __name__ == "__main__":
    main()
