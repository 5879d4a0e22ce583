"""Run every segcast benchmark side by side and write the page of results and its plot.

    python -m bench                     # a few minutes: the defaults below; the page goes to --cache
    python -m bench --update-docs       # the same, rewriting the tracked docs/benchmarks.md and its plot
    python -m bench --memory-s 600      # the 10-minute memory run the issue asks for
    python bench/run.py --quick         # seconds: a smoke test of the whole chain (the figures mean nothing)

Every figure that a goal is judged on is a ratio of two measurements taken in this one run, on this
one machine, one right after the other, so a machine that is busy with other work slows both sides
alike (the one exception, segcast on the best backend against the seed loop on the ``.pt`` file,
divides means from different rounds, and its goal says so). Each measurement runs in a fresh process
(bench/case.py, or a ``segcast serve`` process).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as `python bench/run.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.case import RESULT_PREFIX
from bench.live import FanoutPoint, LatencyRun, fanout_run, latency_run
from bench.report import PLAIN_MASKS, write_report

if TYPE_CHECKING:
    from server.scene import Scene

REPO = Path(__file__).resolve().parent.parent
VIDEO_FRAMES = 600  # 40 s of the generated scene at 15 fps; sources loop, so runs may be longer
QUICK_VIDEO_FRAMES = 60
QUICK_ANALYTICS_FRAMES = 30
VIDEO_SEED = 3
BACKENDS = ("pytorch", "onnx", "openvino")
SECTIONS = ("throughput", "tracking", "occlusion", "analytics", "masks", "multistream", "latency", "fanout", "scaleout")
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
LAST_RUN = "last-run.json"  # every figure of the latest run, kept in --cache to re-render the page
DOCS_PAGE = REPO / "docs" / "benchmarks.md"


@dataclass
class Results:
    """Everything one run measured; bench/report.py turns it into the page and the plot."""

    machine: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, dict[str, Any]] = field(default_factory=dict)  # backend -> seed/segcast/forward
    skipped_backends: dict[str, str] = field(default_factory=dict)
    tracking: dict[str, dict[str, Any]] = field(default_factory=dict)  # backend -> IDF1, MOTA, ...
    occlusion: dict[str, Any] = field(default_factory=dict)  # per tracker and seed; tracker cost on the busy scene
    analytics: dict[str, Any] = field(default_factory=dict)  # zone and line accuracy per seed
    masks: dict[str, dict[str, Any]] = field(default_factory=dict)  # backend -> busy-scene fps per mask path
    multistream: list[dict[str, Any]] = field(default_factory=list)
    latency: list[LatencyRun] = field(default_factory=list)
    fanout: list[FanoutPoint] = field(default_factory=list)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bundled", help="a .pt model to measure (default: the bundled one)")
    parser.add_argument("--imgsz", type=int, default=None, help="inference size (default: the model's own)")
    backends = _names(BACKENDS, "backend", "; Triton is measured by --only scaleout")
    parser.add_argument(
        "--backends", type=backends, default=",".join(BACKENDS), help="comma-separated: pytorch,onnx,openvino"
    )
    parser.add_argument("--frames", type=_count, default=150, help="frames per throughput measurement")
    parser.add_argument(
        "--rounds", type=_count, default=3, help="rounds of seed loop and segcast per backend, and of multi-stream pair"
    )
    parser.add_argument("--stream-counts", type=_counts, default="1,2,4,8", help="streams for the multi-stream figure")
    parser.add_argument("--stream-frames", type=_count, default=30, help="frames per stream, multi-stream figure")
    parser.add_argument(
        "--multistream-backends", type=backends, default="pytorch,openvino", help="backends of the multi-stream figure"
    )
    parser.add_argument("--latency-s", type=_seconds, default=40.0, help="seconds of the 1-stream latency run")
    parser.add_argument("--memory-s", type=_seconds, default=90.0, help="seconds of the 4-stream latency + memory run")
    parser.add_argument("--viewers", type=_counts, default="1,10,50,100", help="viewer counts for the fan-out figure")
    parser.add_argument("--fanout-s", type=_seconds, default=15.0, help="seconds measured per viewer count")
    parser.add_argument("--track-frames", type=_count, default=300, help="scene frames scored for IDF1 per backend")
    parser.add_argument("--busy-frames", type=_count, default=100, help="frames per measurement on the busy scene")
    parser.add_argument("--scaleout-s", type=_seconds, default=30.0, help="seconds measured per scale-out set-up")
    parser.add_argument(
        "--only", type=_names(SECTIONS, "section"), default=",".join(SECTIONS), help="comma-separated sections to run"
    )
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "segcast-bench")
    parser.add_argument(
        "--out", type=Path, default=None, help="the page to write, its plot beside it (default: --cache/benchmarks.md)"
    )
    parser.add_argument(
        "--update-docs", action="store_true", help=f"write {DOCS_PAGE.relative_to(REPO)}, the page in the repository"
    )
    parser.add_argument("--quick", action="store_true", help="tiny runs to check the chain works")
    parser.add_argument(
        "--report-only", action="store_true", help=f"measure nothing: rewrite the page from --cache's {LAST_RUN}"
    )
    args = parser.parse_args(argv)
    if args.out is not None and args.update_docs:
        parser.error("--out and --update-docs name the same thing: give one")
    if args.report_only and not (args.cache / LAST_RUN).exists():
        parser.error(f"--report-only: no saved run in {args.cache} (no {LAST_RUN}); run python -m bench first")
    if args.out is None:  # a run on a developer's machine must not rewrite the tracked page by accident
        args.out = DOCS_PAGE if args.update_docs else args.cache / "benchmarks.md"
    if args.quick:
        args.frames, args.rounds, args.stream_counts, args.stream_frames = 8, 1, (1, 2), 4
        args.latency_s, args.memory_s, args.viewers, args.fanout_s = 4.0, 4.0, (1, 3), 3.0
        args.track_frames, args.busy_frames, args.scaleout_s = 10, 4, 4.0
    return args


def _count(text: str) -> int:
    """An argparse type for counts of frames, rounds, streams or viewers: 1 or more, checked at parse time."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 1 or more")
    return value


def _counts(text: str) -> tuple[int, ...]:
    """Comma-separated `_count`s."""
    return tuple(_count(part) for part in text.split(","))


def _seconds(text: str) -> float:
    """An argparse type for a duration: more than 0 s (a latency run of 0 s has no frame to measure)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0")
    return value


def _names(choices: tuple[str, ...], what: str, hint: str = "") -> Callable[[str], tuple[str, ...]]:
    """An argparse type for comma-separated names among ``choices``: a typo is an error at parse time,
    before minutes of set-up, rather than a KeyError after it or a section silently left out."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(text.split(","))
        unknown = [name for name in names if name not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {unknown[0]!r}; choose from {', '.join(choices)}{hint}")
        return names

    return parse


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        results = load_results(args.cache / LAST_RUN)
        print(write_report(results, args.out, quick=args.quick or results.settings.get("quick", False)))
        _say(f"wrote {args.out} and its plot")
        return 0
    from server.inference.models import ModelError, load_model, resolve_model_path
    from server.scene import Scene

    args.cache.mkdir(parents=True, exist_ok=True)
    try:
        model_path = _snapshot(Path(resolve_model_path(args.model)), args.cache)
        imgsz = args.imgsz or int(load_model(str(model_path)).overrides.get("imgsz", 640))
    except ModelError as exc:  # the model the flag names, said in one line as segcast's own start says it
        print(f"python -m bench: error: {exc}", file=sys.stderr)
        return 2
    frames = QUICK_VIDEO_FRAMES if args.quick else VIDEO_FRAMES
    video = _cached_video(args.cache / f"scene-{VIDEO_SEED}-{frames}.mp4", Scene(seed=VIDEO_SEED), frames)
    sections = set(args.only)
    results = Results(machine=_machine(), settings=_settings(args, model_path, imgsz))
    started = time.monotonic()
    models = _backend_models(args, model_path, imgsz, results) if sections & {"throughput", "tracking"} else {}
    if "throughput" in sections:
        for backend, model in models.items():
            results.throughput[backend] = _throughput(model, video, imgsz, args)
            _say(f"throughput {backend}: {json.dumps(results.throughput[backend])}")
    if "tracking" in sections:
        for backend, model in models.items():
            case = {"kind": "tracking", "model": model, "imgsz": imgsz, "seed": TRACK_SEED, "frames": args.track_frames}
            results.tracking[backend] = _case(case, video)
            _say(f"tracking {backend}: {json.dumps(results.tracking[backend])}")
        if "pytorch" in models:  # the reference mask path, which the fast one must track as well as
            case = {"kind": "tracking", "model": models["pytorch"], "imgsz": imgsz, "seed": TRACK_SEED}
            case |= {"frames": args.track_frames, "fast_masks": False}
            results.tracking[PLAIN_MASKS] = _case(case, video)
            _say(f"tracking {PLAIN_MASKS}: {json.dumps(results.tracking[PLAIN_MASKS])}")
    if "occlusion" in sections:
        case = {"kind": "occlusion", "model": str(model_path), "imgsz": imgsz, "seeds": list(OCCLUSION_SEEDS)}
        case |= {"frames": args.track_frames, "cost_scene": TRACKER_COST_SCENE, "cost_start": BUSY_START}
        case |= {"cost_imgsz": BUSY_IMGSZ, "cost_frames": args.busy_frames}
        results.occlusion = _case(case, video)
        _say(f"occlusion: {json.dumps(results.occlusion['cost_ms'])}")
    if "analytics" in sections:
        from tools.analytics_report import DWELL_TOLERANCE_S, FRAMES, SEEDS

        frames = QUICK_ANALYTICS_FRAMES if args.quick else FRAMES
        case = {"kind": "analytics", "model": str(model_path), "seeds": list(SEEDS), "frames": frames}
        results.analytics = _case(case | {"dwell_tolerance_s": DWELL_TOLERANCE_S}, video)
        _say(f"analytics: {json.dumps(results.analytics['seeds'])}")
    if "masks" in sections:
        busy_frames = QUICK_VIDEO_FRAMES if args.quick else BUSY_VIDEO_FRAMES
        name = f"busy-{BUSY_SCENE['seed']}-{BUSY_START}-{busy_frames}.mp4"
        busy = _cached_video(args.cache / name, Scene(**BUSY_SCENE), busy_frames, BUSY_START)
        for backend, model in _backend_models(args, model_path, BUSY_IMGSZ, results).items():
            results.masks[backend] = _mask_paths(model, busy, args)
            _say(f"masks {backend}: {json.dumps(results.masks[backend])}")
    if "multistream" in sections:
        for backend, model in _backend_models(args, model_path, imgsz, results).items():
            if backend not in args.multistream_backends:
                continue
            # Rounds that alternate which goes first: one pair in a fixed order differed by 2x on the same work.
            for streams, round_ in itertools.product(args.stream_counts, range(args.rounds)):
                for max_batch in (8, 1) if round_ % 2 == 0 else (1, 8):
                    case = {"kind": "segcast", "model": model, "imgsz": imgsz, "streams": streams}
                    case |= {"max_batch": max_batch, "annotated": False, "frames": args.stream_frames * streams}
                    out = _case(case, video)
                    measured = {"backend": backend, "streams": streams, "max_batch": max_batch, "round": round_}
                    results.multistream.append(measured | out)
                    _say(f"multi-stream {backend} {streams} x batch {max_batch}, round {round_}: {out['fps']:.1f} fps")
    if "latency" in sections:
        for streams, seconds in ((1, args.latency_s), (4, args.memory_s)):
            run = latency_run(str(model_path), video, streams, imgsz, seconds)
            results.latency.append(run)
            _say(f"latency {streams} streams: p50 {run.p50_ms:.0f} ms, p95 {run.p95_ms:.0f} ms, flat {run.flat}")
    if "fanout" in sections:
        results.fanout = fanout_run(str(model_path), video, list(args.viewers), imgsz, args.fanout_s)
        for point in results.fanout:
            _say(f"fan-out {point.viewers} viewers: {json.dumps(asdict(point))}")
    if "scaleout" in sections:
        from bench.scaleout import run_scaleout, write_scaleout_report

        scaleout = run_scaleout(
            model_path,
            video,
            imgsz,
            args.cache,
            rounds=args.rounds,
            frames=args.frames,
            seconds=args.scaleout_s,
            case=_case,
        )
        page = args.out.with_name(SCALEOUT_PAGE)
        print(write_scaleout_report(scaleout, page, _settings(args, model_path, imgsz)["command"], args.quick))
        if sections == {"scaleout"}:
            return 0
    results.machine["load_after"] = _load()
    results.machine["minutes"] = round((time.monotonic() - started) / 60, 1)
    (args.cache / LAST_RUN).write_text(json.dumps(asdict(results)))
    table = write_report(results, args.out, quick=args.quick)
    print(table)
    _say(f"wrote {args.out} and its plot" + ("" if args.update_docs else "; --update-docs rewrites the docs' page"))
    return 0


def load_results(path: Path) -> Results:
    """The figures of a run saved by `main`, to render its page again without measuring."""
    data = json.loads(path.read_text())
    series = ("rss_mb", "latency")
    data["latency"] = [
        LatencyRun(**{**run, **{key: [tuple(p) for p in run[key]] for key in series}}) for run in data["latency"]
    ]
    data["fanout"] = [FanoutPoint(**point) for point in data["fanout"]]
    return Results(**data)


def _snapshot(model_path: Path, cache: Path) -> Path:
    """A private copy of the model that every case of the run, and every export, is made from.

    The file may be replaced while the run goes on (a model being retrained); the run must not mix weights.
    """
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()[:12]
    copy = cache / digest / model_path.name
    if not copy.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_path, copy)
    return copy


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
    return {
        "model": model,
        **{key: _mean([r[key] for r in rounds]) for key in ("seed_fps", "like_fps", "segcast_fps", "forward_ms")},
        **_ratios(rounds, "ratio", "segcast_fps", "seed_fps"),
        **_ratios(rounds, "like_ratio", "segcast_fps", "like_fps"),
        "share": _mean([r["segcast_fps"] * r["forward_ms"] / 1000 for r in rounds]),
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


def _cached_video(video: Path, scene: Scene, frames: int, start: int = 0) -> Path:
    """``video``, written from ``scene`` the first time (under another name until complete)."""
    from server.scene import write_h264

    if not video.exists():
        partial = video.with_suffix(".partial.mp4")
        write_h264(scene, partial, frames, start=start)
        partial.rename(video)
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


def _backend_models(args: argparse.Namespace, model_path: Path, imgsz: int, results: Results) -> dict[str, str]:
    """The model file of each backend asked for, exporting (once per model content and size) as needed."""
    from server.inference.export import ExportError, Progress, export_model, missing_packages, output_name

    models: dict[str, str] = {}
    for backend in args.backends:
        if backend == "pytorch":
            models[backend] = str(model_path)
            continue
        missing = missing_packages(backend)
        if missing:
            results.skipped_backends[backend] = f"not installed ({', '.join(missing)}): pip install '.[{backend}]'"
            continue
        folder = model_path.parent / f"imgsz-{imgsz}"
        target = folder / output_name(model_path, backend)
        if not target.exists():
            try:
                export_model(str(model_path), backend, folder, imgsz, Progress(3))
            except ExportError as exc:
                results.skipped_backends[backend] = f"export failed: {exc}"
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


def _machine() -> dict[str, Any]:
    import torch
    import ultralytics

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
        "runtimes": _runtime_versions(),
        "load_before": _load(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _runtime_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("onnxruntime", "openvino"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _settings(args: argparse.Namespace, model_path: Path, imgsz: int) -> dict[str, Any]:
    from bench.seed_loop import WARMUP_FRAMES

    return {
        "quick": args.quick,
        "model": model_path.name,
        "imgsz": imgsz,
        "frames": args.frames,
        "rounds": args.rounds,
        "stream_frames": args.stream_frames,
        "latency_s": args.latency_s,
        "memory_s": args.memory_s,
        "fanout_s": args.fanout_s,
        "track_frames": args.track_frames,
        "track_seed": TRACK_SEED,
        "busy_frames": args.busy_frames,
        "busy_imgsz": BUSY_IMGSZ,
        "warmup_frames": WARMUP_FRAMES,
        "busy_video": f"generated scene, seed {BUSY_SCENE['seed']}, {BUSY_SCENE['width']}x{BUSY_SCENE['height']} "
        f"H.264 at 15 fps, {BUSY_SCENE['objects_per_period']} objects per 30 s",
        "video": f"generated scene, seed {VIDEO_SEED}, 640x384 H.264 at 15 fps",
        "command": " ".join(["python -m bench", *_without_out(sys.argv[1:])]),
        "compared": _compared_settings(),
    }


def _compared_settings() -> dict[str, dict[str, str]]:
    """Each side's tracking and detection settings in the throughput figure, as the page states them."""
    from bench.seed_loop import COMPARED_TRACKER, SeedSettings, effective_settings
    from server.options import StreamOptions
    from server.tracking import detection_conf

    options = StreamOptions(tracker=COMPARED_TRACKER)
    segcast = {
        "call": f"StreamOptions(tracker={COMPARED_TRACKER!r})",
        "tracker": options.tracker,
        "camera motion": str(options.tracker_config().get("gmc_method", "none")),
        "model conf": f"{detection_conf(options):g}",
        "NMS": f"{'class-agnostic' if options.agnostic_nms else 'per class'}, IoU {options.iou:g}",
        "drawn": f"tracks once at conf >= {options.conf:g}",
    }
    return {
        "seed loop, as written": effective_settings(SeedSettings.AS_WRITTEN),
        "seed loop, like for like": effective_settings(SeedSettings.LIKE_FOR_LIKE),
        "segcast": segcast,
    }


def _without_out(argv: list[str]) -> list[str]:
    """The arguments that change what is measured: not where the page goes."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            kept.append(arg)
    return kept


def _say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
