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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.arguments import positive_int
from bench.case import COST_ROUNDS
from bench.measures import BUSY_IMGSZ, BUSY_START, TRACKER_COST_SCENE

BASELINE = "bytetrack"


@dataclass(frozen=True, slots=True)
class TrackerCosts:
    ms_per_frame: dict[str, float]  # each tracker's fastest round
    objects: float  # true objects a timed frame, on average


def tracker_costs(
    model: Any, kinds: Iterable[str], scene: dict[str, Any], start: int, frames: int, imgsz: int
) -> TrackerCosts:
    """Each of ``kinds``' own time a frame on ``frames`` frames of the scene of ``scene`` (`Scene`'s
    arguments) from frame ``start``, at ``imgsz``: `COST_ROUNDS` alternating rounds, each tracker's fastest."""
    from server.options import StreamOptions
    from server.scene import Scene
    from tools.track_report import compare_trackers

    options = {k: StreamOptions.from_mapping({"imgsz": imgsz, "tracker": k}) for k in kinds}
    timed_scene = Scene(**scene)
    scores = compare_trackers(model, timed_scene, frames, options, start=start, rounds=COST_ROUNDS)
    timed = range(start, start + frames)
    objects = sum(len(timed_scene.render(i)[1]) for i in timed) / len(timed)
    return TrackerCosts({k: s.mean_ms for k, s in scores.items()}, objects)


def main() -> None:
    from server.inference.models import load_model
    from server.options import tracker_kinds

    parser = argparse.ArgumentParser(prog="python -m bench.tracker_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--trackers", default=",".join(tracker_kinds()), help="comma-separated; bytetrack is added")
    parser.add_argument("--frames", type=positive_int, default=100, help="frames timed per round (1 or more)")
    args = parser.parse_args()
    kinds = dict.fromkeys([*args.trackers.split(","), BASELINE])
    model = load_model(args.model)
    costs = tracker_costs(model, kinds, TRACKER_COST_SCENE, BUSY_START, args.frames, BUSY_IMGSZ)
    cost, objects = costs.ms_per_frame, costs.objects
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
