"""One segcast node inferring on its own GPU: how many cameras it carries, and at what latency.

``python -m bench.gpu_node [--streams 16,32,64] [--seconds 40] [--max-batch 32] [--device cuda:0]``

Each run is the latency section's (bench/live.py): ``segcast serve`` with N looping copies of the
benchmark's video (the generated scene, 640x384 at 15 fps) as cameras, here with the model on the
GPU (the config file's ``[model] device`` and ``max_batch``), and one WebSocket viewer of every
stream's annotated frames. Reported per N: the frames processed against those the cameras offered
(the rest dropped as stale, never queued) and capture-to-viewer latency p50 and p95. The offered
rate is the baseline, measured in the same run: a node that keeps up processes all of it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from bench.live import latency_run
from server.scene import Scene, write_h264

VIDEO_FRAMES = 600  # 40 s of the scene, looped: as bench/run.py's video
VIDEO_SEED = 3


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_node", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--imgsz", type=int, default=320, help="the bundled model's own size")
    parser.add_argument("--streams", default="16,32,64")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--device", default="cuda:0")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        video = write_h264(Scene(seed=VIDEO_SEED), Path(folder) / "scene.mp4", VIDEO_FRAMES)
        config = Path(folder) / "segcast.toml"
        config.write_text(f'[model]\ndevice = "{args.device}"\nmax_batch = {args.max_batch}\n')
        rows: list[dict[str, Any]] = []
        for streams in (int(n) for n in args.streams.split(",")):
            run = latency_run(args.model, video, streams, args.imgsz, args.seconds, config)
            row: dict[str, Any] = {"streams": streams, "offered_fps": run.offered_fps or 0.0}
            row |= {"processed_fps": run.processed_fps}
            row |= {"p50_ms": run.p50_ms, "p95_ms": run.p95_ms, "dropped": run.frames_dropped}
            row |= {"rss_mb": run.rss_mb[-1][1] if run.rss_mb else None}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{args.device}, max_batch {args.max_batch}, imgsz {args.imgsz}, {args.seconds:g} s a run:")
    print("| cameras | offered fps | processed fps | processed / offered | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        share = r["processed_fps"] / r["offered_fps"] if r["offered_fps"] else 0.0
        print(
            f"| {r['streams']} | {r['offered_fps']:.0f} | {r['processed_fps']:.0f} | {share:.0%} | "
            f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} |"
        )


if __name__ == "__main__":
    main()
