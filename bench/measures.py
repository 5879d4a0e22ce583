"""Each section's measurement: the `MEASURES` table `bench.run.main` runs, the scenes they measure, and the
fresh processes (bench/case.py) every figure comes from.

Kept apart from the command line so that what one section measures, and how its sides are ordered to
keep the ratios fair, can be read (and tested, with `_case` replaced) without the run around it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.case import RESULT_PREFIX
from bench.live import fanout_run, latency_run
from bench.report_sections import PLAIN_MASKS

if TYPE_CHECKING:
    from bench.run import Results
    from server.scene import Scene

REPO = Path(__file__).resolve().parent.parent
VIDEO_FRAMES = 600  # 40 s of the generated scene at 15 fps; sources loop, so runs may be longer
QUICK_VIDEO_FRAMES = 60
QUICK_ANALYTICS_FRAMES = 30
VIDEO_SEED = 3
SCALEOUT_PAGE = "scaleout.md"  # written beside --out; `--only scaleout` leaves --out itself alone
TRACK_SEED = 7  # the scene tests/ and tools/track_report.py score tracking on
#: Occlusion-family scenes every tracker is compared on (none of them seen in the model's training).
OCCLUSION_SEEDS = (11, 12, 13, 14)
#: The busy scene of the mask-path figures: 720p with a crowd (about 19 detections a frame at 640),
#: the kind of frame where ultralytics' whole-input masks cost as much as a fast backend's network.
BUSY_SCENE: dict[str, Any] = {"seed": 11, "width": 1280, "height": 720, "objects_per_period": 40}
BUSY_START = 150  # the scene starts empty; by this frame it holds 13 to 16 objects
#: The scene every tracker's cost is timed on: the busy scene more crowded, 17 to 23 objects a frame
#: from `BUSY_START` (20.5 on average), as many as issue 13's cost bar is stated for.
TRACKER_COST_SCENE: dict[str, Any] = {**BUSY_SCENE, "objects_per_period": 60}
BUSY_IMGSZ = 640
BUSY_VIDEO_FRAMES = 150
CASE_TIMEOUT_S = 900.0


@dataclass
class RunContext:
    """What every section of one run measures with, and the results each adds to."""

    args: argparse.Namespace
    model_path: Path
    task: str  # the model's, as ultralytics names it: "segment", "detect"
    imgsz: int
    video: Path
    results: Results
    _models: dict[str, str] | None = None

    def models(self) -> dict[str, str]:
        """Each backend's model file at the run's size, exported once for the throughput and tracking sections."""
        if self._models is None:
            asked = [section for section in ("throughput", "tracking") if section in self.args.only]
            self._models = _backend_models(self.args.backends, self.model_path, self.imgsz, self.results, asked)
        return self._models


def _measure_throughput(run: RunContext) -> None:
    for backend, model in run.models().items():
        run.results.throughput[backend] = _throughput(model, run.video, run.imgsz, run.args)
        say(f"throughput {backend}: {json.dumps(run.results.throughput[backend])}")


def _measure_tracking(run: RunContext) -> None:
    models, results = run.models(), run.results
    for backend, model in models.items():
        case = {"kind": "tracking", "model": model, "imgsz": run.imgsz, "seed": TRACK_SEED}
        results.tracking[backend] = _case(case | {"frames": run.args.track_frames}, run.video)
        say(f"tracking {backend}: {json.dumps(results.tracking[backend])}")
    if "pytorch" in models:  # the reference mask path, which the fast one must track as well as
        case = {"kind": "tracking", "model": models["pytorch"], "imgsz": run.imgsz, "seed": TRACK_SEED}
        case |= {"frames": run.args.track_frames, "fast_masks": False}
        results.tracking[PLAIN_MASKS] = _case(case, run.video)
        say(f"tracking {PLAIN_MASKS}: {json.dumps(results.tracking[PLAIN_MASKS])}")


def _measure_occlusion(run: RunContext) -> None:
    case = {"kind": "occlusion", "model": str(run.model_path), "imgsz": run.imgsz, "seeds": list(OCCLUSION_SEEDS)}
    case |= {"frames": run.args.track_frames, "cost_scene": TRACKER_COST_SCENE, "cost_start": BUSY_START}
    case |= {"cost_imgsz": BUSY_IMGSZ, "cost_frames": run.args.busy_frames}
    run.results.occlusion = _case(case, run.video)
    say(f"occlusion: {json.dumps(run.results.occlusion['cost_ms'])}")


def _measure_analytics(run: RunContext) -> None:
    from tools.analytics_report import DWELL_TOLERANCE_S, FRAMES, SEEDS

    frames = QUICK_ANALYTICS_FRAMES if run.args.quick else FRAMES
    case = {"kind": "analytics", "model": str(run.model_path), "seeds": list(SEEDS), "frames": frames}
    run.results.analytics = _case(case | {"dwell_tolerance_s": DWELL_TOLERANCE_S}, run.video)
    say(f"analytics: {json.dumps(run.results.analytics['seeds'])}")


def _measure_masks(run: RunContext) -> None:
    from server.scene import Scene

    if run.task != "segment":  # timing mask post-processing on a model that makes none would compare nothing
        for backend in run.args.backends:
            run.results.skipped.setdefault("masks", {})[backend] = f"a {run.task} model makes no masks"
        say(f"masks skipped: a {run.task} model makes no masks")
        return
    busy_frames = QUICK_VIDEO_FRAMES if run.args.quick else BUSY_VIDEO_FRAMES
    name = f"busy-{BUSY_SCENE['seed']}-{BUSY_START}-{busy_frames}.mp4"
    busy = cached_video(run.args.cache / name, Scene(**BUSY_SCENE), busy_frames, BUSY_START)
    models = _backend_models(run.args.backends, run.model_path, BUSY_IMGSZ, run.results, ["masks"])
    for backend, model in models.items():
        run.results.masks[backend] = _mask_paths(model, busy, run.args)
        say(f"masks {backend}: {json.dumps(run.results.masks[backend])}")


def _measure_multistream(run: RunContext) -> None:
    args = run.args
    backends = [backend for backend in args.backends if backend in args.multistream_backends]
    for backend, model in _backend_models(backends, run.model_path, run.imgsz, run.results, ["multistream"]).items():
        # Rounds that alternate which goes first: one pair in a fixed order differed by 2x on the same work.
        for streams, round_ in itertools.product(args.stream_counts, range(args.rounds)):
            for max_batch in (8, 1) if round_ % 2 == 0 else (1, 8):
                case = {"kind": "segcast", "model": model, "imgsz": run.imgsz, "streams": streams}
                case |= {"max_batch": max_batch, "annotated": False, "frames": args.stream_frames * streams}
                out = _case(case, run.video)
                measured = {"backend": backend, "streams": streams, "max_batch": max_batch, "round": round_}
                run.results.multistream.append(measured | out)
                say(f"multi-stream {backend} {streams} x batch {max_batch}, round {round_}: {out['fps']:.1f} fps")


def _measure_latency(run: RunContext) -> None:
    for streams, seconds in ((1, run.args.latency_s), (4, run.args.memory_s)):
        measured = latency_run(str(run.model_path), run.video, streams, run.imgsz, seconds)
        run.results.latency.append(measured)
        figures = f"p50 {measured.p50_ms:.0f} ms, p95 {measured.p95_ms:.0f} ms, flat {measured.flat}"
        say(f"latency {streams} streams: {figures}")


def _measure_fanout(run: RunContext) -> None:
    run.results.fanout = fanout_run(
        str(run.model_path), run.video, list(run.args.viewers), run.imgsz, run.args.fanout_s
    )
    for point in run.results.fanout:
        say(f"fan-out {point.viewers} viewers: {json.dumps(asdict(point))}")


def _measure_scaleout(run: RunContext) -> None:
    """The scale-out figures on their own page beside --out; none written where the section was skipped, so
    that a machine without Triton never replaces a page of figures with one saying it had none."""
    from bench.scaleout import run_scaleout, write_scaleout_report

    args = run.args
    scaleout = run_scaleout(
        run.model_path,
        run.video,
        run.imgsz,
        args.cache,
        rounds=args.rounds,
        frames=args.frames,
        seconds=args.scaleout_s,
        case=_case,
    )
    page = args.out.with_name(SCALEOUT_PAGE)
    if scaleout.skipped:
        say(f"scale-out skipped, {page} not written: {scaleout.skipped}")
        return
    print(write_scaleout_report(scaleout, page, run.results.settings["command"], run.results.machine, args.quick))
    say(f"wrote {page}")


#: Each section's measurement, run in the order of `bench.run.SECTIONS`.
MEASURES: dict[str, Callable[[RunContext], None]] = {
    "throughput": _measure_throughput,
    "tracking": _measure_tracking,
    "occlusion": _measure_occlusion,
    "analytics": _measure_analytics,
    "masks": _measure_masks,
    "multistream": _measure_multistream,
    "latency": _measure_latency,
    "fanout": _measure_fanout,
    "scaleout": _measure_scaleout,
}


def _throughput(model: str, video: Path, imgsz: int, args: argparse.Namespace) -> dict[str, Any]:
    """The seed loop both ways and segcast on the same model file and frames, back to back, ``rounds`` times.

    Each round runs all three back to back, so a ratio is taken within a round and the rounds give its spread.
    """
    from bench.seed_loop import COMPARED_TRACKER, SeedSettings

    common = {"model": model, "imgsz": imgsz, "frames": args.frames}
    sides = {
        "seed_fps": {"kind": "seed", "settings": SeedSettings.AS_WRITTEN.value, **common},
        "like_fps": {"kind": "seed", "settings": SeedSettings.LIKE_FOR_LIKE.value, **common},
        "segcast_fps": {"kind": "segcast", "forward": True, "tracker": COMPARED_TRACKER, **common},
    }
    rounds = _rounds(sides, args.rounds, video)
    # fps x forward time per round: 1.0 would be nothing but the network; a round above it timed the forward
    # pass slower than the whole pipeline ran (the machine was disturbed), so the goals take no share from it.
    shares = [r["segcast_fps"] * r["forward_ms"] / 1000 for r in rounds]
    return {
        "model": model,
        **{key: _mean([r[key] for r in rounds]) for key in ("seed_fps", "like_fps", "segcast_fps", "forward_ms")},
        **_ratios(rounds, "ratio", "segcast_fps", "seed_fps"),
        **_ratios(rounds, "like_ratio", "segcast_fps", "like_fps"),
        "share": _mean(shares),
        "share_range": [min(shares), max(shares)],
        "rounds": rounds,
    }


def _rounds(sides: dict[str, dict[str, Any]], count: int, video: Path) -> list[dict[str, float]]:
    """``count`` rounds of every side's case back to back, each in a fresh process: per round, each
    side's fps (and segcast's forward pass, where timed). Who goes first changes from round to round,
    and so does the order of any two sides: odd rounds run a rotation backwards (rotations alone keep
    neighbours in one order for as many rounds as there are sides)."""
    names = list(sides)
    rounds: list[dict[str, float]] = []
    for index in range(count):
        shift = (index + index % 2) % len(names)
        order = names[shift:] + names[:shift]
        measured: dict[str, float] = {}
        for name in reversed(order) if index % 2 else order:
            out = _case(sides[name], video)
            measured[name] = out["fps"]
            if "forward_ms" in out:
                measured["forward_ms"] = out["forward_ms"]
        rounds.append(measured)
    return rounds


def _ratios(rounds: list[dict[str, float]], key: str, over: str, under: str) -> dict[str, Any]:
    """``key``: the mean over the rounds of ``over`` / ``under`` taken within each round; ``key``_range
    its lowest and highest round."""
    ratios = [r[over] / r[under] for r in rounds]
    return {key: _mean(ratios), f"{key}_range": [min(ratios), max(ratios)]}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def cached_video(video: Path, scene: Scene, frames: int, start: int = 0) -> Path:
    """``video``, written from ``scene`` the first time (under a name of its own until complete, so that
    two runs sharing a cache may both write it: the last to finish replaces the first's identical copy)."""
    from server.scene import write_h264

    if not video.exists():
        handle, name = tempfile.mkstemp(prefix=f"{video.stem}.", suffix=".partial.mp4", dir=video.parent)
        os.close(handle)
        partial = Path(name)
        try:
            write_h264(scene, partial, frames, start=start)
            os.replace(partial, video)
        finally:
            partial.unlink(missing_ok=True)
    return video


def _mask_paths(model: str, video: Path, args: argparse.Namespace) -> dict[str, Any]:
    """On the busy scene, as the throughput section compares them: the seed loop as written and like for
    like, and segcast (`COMPARED_TRACKER`) with ultralytics' masks and with its own, ``rounds`` times."""
    from bench.seed_loop import COMPARED_TRACKER, SeedSettings

    common = {"model": model, "imgsz": BUSY_IMGSZ, "frames": args.busy_frames}
    segcast = {"kind": "segcast", "tracker": COMPARED_TRACKER, **common}
    sides = {
        "seed_fps": {"kind": "seed", "settings": SeedSettings.AS_WRITTEN.value, **common},
        "like_fps": {"kind": "seed", "settings": SeedSettings.LIKE_FOR_LIKE.value, **common},
        "plain_fps": {**segcast, "fast_masks": False},
        "fast_fps": segcast,
    }
    rounds = _rounds(sides, args.rounds, video)
    return {
        "model": model,
        "tracker": COMPARED_TRACKER,
        **{key: _mean([r[key] for r in rounds]) for key in sides},
        **_ratios(rounds, "ratio", "fast_fps", "seed_fps"),
        **_ratios(rounds, "like_ratio", "fast_fps", "like_fps"),
        **_ratios(rounds, "fast_vs_plain", "fast_fps", "plain_fps"),
        "rounds": rounds,
    }


def _backend_models(
    backends: Iterable[str], model_path: Path, imgsz: int, results: Results, sections: list[str]
) -> dict[str, str]:
    """The model file of each of ``backends``, exporting (once per model content and size) as needed; a
    backend that cannot run is recorded as skipped in each of ``sections``, and said on stderr."""
    from server.inference.export import ExportError, Progress, export_model, missing_packages, output_name

    models: dict[str, str] = {}
    for backend in backends:
        if backend == "pytorch":
            models[backend] = str(model_path)
            continue
        missing = missing_packages(backend)
        reason = f"not installed ({', '.join(missing)}): pip install '.[{backend}]'" if missing else None
        folder = model_path.parent / f"imgsz-{imgsz}"
        target = folder / output_name(model_path, backend)
        if reason is None and not target.exists():
            try:
                export_model(str(model_path), backend, folder, imgsz, Progress(3))
            except ExportError as exc:
                reason = f"export failed: {exc}"
        if reason is not None:
            for section in sections:
                results.skipped.setdefault(section, {})[backend] = reason
            say(f"{', '.join(sections)}: {backend} skipped: {reason}")
            continue
        models[backend] = str(target)
    return models


def _case(case: dict[str, Any], video: Path) -> dict[str, Any]:
    case = {**case, "video": str(video)}
    process = subprocess.run(
        [sys.executable, "-m", "bench.case", json.dumps(case)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CASE_TIMEOUT_S,
    )
    for line in process.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    raise RuntimeError(f"benchmark case {case['kind']} failed:\n{process.stderr[-3000:]}")


def say(text: str) -> None:
    """A progress line on stderr: stdout is kept for the goals tables a run prints at its end."""
    print(f"bench: {text}", file=sys.stderr, flush=True)
