"""One segcast node inferring on its own GPU: how many cameras it carries, and at what latency; and
the same cameras split across several nodes sharing that GPU.

``python -m bench.gpu_node [--streams 16,32,64] [--nodes 1,4] [--seconds 40] [--max-batch 32] [--device cuda:0]``

Each run is the latency section's (bench/live.py): ``segcast serve`` with N looping copies of the
benchmark's video (the generated scene, 640x384 at 15 fps) as cameras, here with the model on the
GPU (the config file's ``[model] device`` and ``max_batch``), and one WebSocket viewer of every
stream's annotated frames. With ``--nodes K`` the N cameras are split across K ``segcast serve``
processes started together, each with its own model on the same GPU and its own viewer client (a
process of its own, so one client does not pace all of them). Reported per run: the frames
processed against those the cameras offered (the rest dropped as stale, never queued) and
capture-to-viewer latency p50 and p95 over every node's frames. The offered rate is the baseline,
measured in the same run: nodes that keep up process all of it. Each node's warm-up counts from its
viewer's first frame (models loading onto the GPU at once can take longer than the warm-up).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench.live import LatencyRun, latency_run, percentile
from bench.measures import VIDEO_FRAMES, VIDEO_SEED
from server.scene import Scene, write_h264


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_node", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--imgsz", type=int, default=320, help="the bundled model's own size")
    parser.add_argument("--streams", default="16,32,64")
    parser.add_argument("--nodes", default="1", help="node counts to split the cameras across, e.g. 1,4")
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
            for nodes in (int(k) for k in args.nodes.split(",")):
                if streams % nodes:
                    continue  # every node carries the same share, or the row would not say what it measured
                runs = node_runs(args.model, video, streams, nodes, args.imgsz, args.seconds, config)
                rows.append(row := _row(streams, nodes, runs))
                print(json.dumps(row), flush=True)
    print(f"\n{args.device}, max_batch {args.max_batch}, imgsz {args.imgsz}, {args.seconds:g} s a run:")
    print("| cameras | nodes | offered fps | processed fps | processed / offered | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        share = r["processed_fps"] / r["offered_fps"] if r["offered_fps"] else 0.0
        print(
            f"| {r['streams']} | {r['nodes']} | {r['offered_fps']:.0f} | {r['processed_fps']:.0f} | {share:.0%} | "
            f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} |"
        )


def node_runs(
    model: str, video: Path, streams: int, nodes: int, imgsz: int, seconds: float, config: Path
) -> list[LatencyRun]:
    """``nodes`` nodes of ``streams // nodes`` cameras each, measured at the same time (one node: here)."""
    if nodes == 1:
        return [latency_run(model, video, streams, imgsz, seconds, config, warm_from_first_frame=True)]
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter per client: no state forked with it
    with ProcessPoolExecutor(nodes, mp_context=spawn) as pool:
        share = streams // nodes
        futures = [
            pool.submit(latency_run, model, video, share, imgsz, seconds, config, warm_from_first_frame=True)
            for _ in range(nodes)
        ]
        return [future.result() for future in futures]


def _row(streams: int, nodes: int, runs: list[LatencyRun]) -> dict[str, Any]:
    """The runs of one measurement as one: rates summed, latency over every node's frames."""
    latency = [ms for run in runs for _, ms in run.latency]
    return {
        "streams": streams,
        "nodes": nodes,
        "offered_fps": sum(run.offered_fps or 0.0 for run in runs),
        "processed_fps": sum(run.processed_fps for run in runs),
        "p50_ms": statistics.median(latency),
        "p95_ms": percentile(latency, 95),
        "dropped": sum(run.frames_dropped or 0 for run in runs),
        "rss_mb": sum(run.rss_mb[-1][1] for run in runs if run.rss_mb),
    }


if __name__ == "__main__":
    main()
