"""Run every segcast benchmark side by side and write the page of results and its plot.

    python -m bench                     # about 25 min on 2 cores, the defaults below; the page goes to --cache
    python -m bench --update-docs       # the same, rewriting the tracked docs/benchmarks.md and its plot
    python -m bench --memory-s 600      # the 10-minute memory run the issue asks for: 33.8 min in all on 2 cores
    python bench/run.py --quick         # seconds: a smoke test of the whole chain (the figures mean nothing)

Every figure that a goal is judged on is a ratio of two measurements taken in this one run, on this
one machine, one right after the other, so a machine that is busy with other work slows both sides
alike (the one exception, segcast on the best backend against the seed loop on the ``.pt`` file,
divides means from different rounds, and its goal says so). Each measurement runs in a fresh process
(bench/case.py, or a ``segcast serve`` process).

This module is the command line and the order of a run, and keeps what it measured (`Results`,
saved to re-render the page); what each section measures is bench/measures.py's, the page bench/report.py's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as `python bench/run.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.arguments import positive_int
from bench.live import FanoutPoint, LatencyRun
from bench.measures import (
    BUSY_IMGSZ,
    BUSY_SCENE,
    MEASURES,
    QUICK_VIDEO_FRAMES,
    REPO,
    TRACK_SEED,
    VIDEO_FRAMES,
    VIDEO_SEED,
    RunContext,
    cached_video,
    say,
)
from bench.report import write_report

if TYPE_CHECKING:
    from ultralytics import YOLO

BACKENDS = ("pytorch", "onnx", "openvino")
SECTIONS = ("throughput", "tracking", "occlusion", "analytics", "masks", "multistream", "latency", "fanout", "scaleout")
LAST_RUN = "last-run.json"  # every figure of the latest run, kept in --cache to re-render the page
DOCS_PAGE = REPO / "docs" / "benchmarks.md"
#: What --quick sets, unless the same flag is given too.
QUICK_DEFAULTS: dict[str, Any] = {
    "frames": 8,
    "rounds": 1,
    "stream_counts": (1, 2),
    "stream_frames": 4,
    "latency_s": 4.0,
    "memory_s": 4.0,
    "viewers": (1, 3),
    "fanout_s": 3.0,
    "track_frames": 10,
    "busy_frames": 4,
    "scaleout_s": 4.0,
}
ERROR_LINES = 20  # of a failed section's error, kept for the page


@dataclass
class Results:
    """Everything one run measured; bench/report.py turns it into the page and the plot."""

    machine: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, dict[str, Any]] = field(default_factory=dict)  # backend -> seed/segcast/forward
    skipped: dict[str, dict[str, str]] = field(default_factory=dict)  # section -> backend it could not run -> why
    failed: dict[str, str] = field(default_factory=dict)  # section -> the error that stopped it
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
    parser.add_argument("--frames", type=positive_int, default=150, help="frames per throughput measurement")
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=3,
        help="rounds of seed loop and segcast per backend, and of multi-stream pair",
    )
    parser.add_argument("--stream-counts", type=_counts, default="1,2,4,8", help="streams for the multi-stream figure")
    parser.add_argument("--stream-frames", type=positive_int, default=30, help="frames per stream, multi-stream figure")
    parser.add_argument(
        "--multistream-backends", type=backends, default="pytorch,openvino", help="backends of the multi-stream figure"
    )
    parser.add_argument("--latency-s", type=_seconds, default=40.0, help="seconds of the 1-stream latency run")
    parser.add_argument("--memory-s", type=_seconds, default=90.0, help="seconds of the 4-stream latency + memory run")
    parser.add_argument("--viewers", type=_counts, default="1,10,50,100", help="viewer counts for the fan-out figure")
    parser.add_argument("--fanout-s", type=_seconds, default=15.0, help="seconds measured per viewer count")
    parser.add_argument(
        "--track-frames", type=positive_int, default=300, help="scene frames scored for IDF1 per backend"
    )
    parser.add_argument(
        "--busy-frames", type=positive_int, default=100, help="frames per measurement on the busy scene"
    )
    parser.add_argument("--scaleout-s", type=_seconds, default=30.0, help="seconds measured per scale-out set-up")
    parser.add_argument(
        "--only",
        type=_names(SECTIONS, "section"),
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run, among: {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "segcast-bench")
    parser.add_argument(
        "--out", type=Path, default=None, help="the page to write, its plot beside it (default: --cache/benchmarks.md)"
    )
    parser.add_argument(
        "--update-docs", action="store_true", help=f"write {DOCS_PAGE.relative_to(REPO)}, the page in the repository"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny runs to check the chain works (flags given beside it still count)"
    )
    parser.add_argument(
        "--report-only", action="store_true", help=f"measure nothing: rewrite the page from --cache's {LAST_RUN}"
    )
    if parser.parse_known_args(argv)[0].quick:  # its sizes are defaults, so the flags given beside it win
        parser.set_defaults(**QUICK_DEFAULTS)
    args = parser.parse_args(argv)
    if args.out is not None and args.update_docs:
        parser.error("--out and --update-docs name the same thing: give one")
    if args.report_only and not (args.cache / LAST_RUN).exists():
        parser.error(f"--report-only: no saved run in {args.cache} (no {LAST_RUN}); run python -m bench first")
    if args.out is None:  # a run on a developer's machine must not rewrite the tracked page by accident
        args.out = DOCS_PAGE if args.update_docs else args.cache / "benchmarks.md"
    return args


def _counts(text: str) -> tuple[int, ...]:
    """Comma-separated `positive_int`s."""
    return tuple(positive_int(part) for part in text.split(","))


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
    """Run the sections asked for; 1 where any of them failed (the others' figures are still on the page)."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.report_only:
        results = load_results(args.cache / LAST_RUN)
        print(write_report(results, args.out, quick=args.quick or results.settings.get("quick", False)))
        say(f"wrote {args.out} and its plot")
        return 0
    from server.inference.models import ModelError, load_model, resolve_model_path
    from server.scene import Scene

    args.cache.mkdir(parents=True, exist_ok=True)
    try:
        model_path = _snapshot(Path(resolve_model_path(args.model)), args.cache)
        task, own_imgsz = _task_and_size(load_model(str(model_path)))
        imgsz = args.imgsz or own_imgsz
    except ModelError as exc:  # the model the flag names, said in one line as segcast's own start says it
        print(f"python -m bench: error: {exc}", file=sys.stderr)
        return 2
    frames = QUICK_VIDEO_FRAMES if args.quick else VIDEO_FRAMES
    video = cached_video(args.cache / f"scene-{VIDEO_SEED}-{frames}.mp4", Scene(seed=VIDEO_SEED), frames)
    results = Results(machine=_machine(), settings=_settings(args, argv, model_path, imgsz))
    run = RunContext(args, model_path, task, imgsz, video, results)
    writes_page = set(args.only) != {"scaleout"}  # the scale-out section writes a page of its own
    started = time.monotonic()
    for section in (name for name in SECTIONS if name in args.only):
        try:
            MEASURES[section](run)
        except Exception as exc:  # a broad catch: one section's failure must not throw the others' figures away
            results.failed[section] = _error_text(exc)
            say(f"{section} failed (the other sections go on): {exc}")
        if writes_page:  # after every section, so that even a run stopped by hand keeps what it measured
            results.machine["load_after"] = _load()
            results.machine["minutes"] = round((time.monotonic() - started) / 60, 1)
            (args.cache / LAST_RUN).write_text(json.dumps(asdict(results)))
    if writes_page:
        print(write_report(results, args.out, quick=args.quick))
        say(f"wrote {args.out} and its plot" + ("" if args.update_docs else "; --update-docs rewrites the docs' page"))
    if results.failed:
        say(f"failed: {', '.join(results.failed)} (each error is above{' and on the page' if writes_page else ''})")
        return 1
    return 0


def _error_text(exc: Exception) -> str:
    """What the page shows of a section's error: its first line and its last (where a case's stderr ends)."""
    lines = f"{type(exc).__name__}: {exc}".splitlines()
    return "\n".join(lines if len(lines) <= ERROR_LINES else [lines[0], "...", *lines[2 - ERROR_LINES :]])


def load_results(path: Path) -> Results:
    """The figures of a run saved by `main`, to render its page again without measuring."""
    data = json.loads(path.read_text())
    series = ("rss_mb", "latency")
    data["latency"] = [
        LatencyRun(**{**run, **{key: [tuple(p) for p in run[key]] for key in series}}) for run in data["latency"]
    ]
    data["fanout"] = [FanoutPoint(**point) for point in data["fanout"]]
    if "skipped_backends" in data:  # a run saved before skips were kept per section: only throughput showed them
        data["skipped"] = {"throughput": data.pop("skipped_backends")}
    return Results(**data)


def _task_and_size(model: YOLO) -> tuple[str, int]:
    """The model's task ("segment", "detect") and own input size; the model itself is let go, as every
    case loads its own in a process of its own."""
    return str(model.task), int(model.overrides.get("imgsz", 640))


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
        # What `server.inference.models.resolve_device` gives segcast's device "auto", and what ultralytics
        # takes by default in the seed loop: the first NVIDIA GPU where PyTorch sees one.
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
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


def _settings(args: argparse.Namespace, argv: list[str], model_path: Path, imgsz: int) -> dict[str, Any]:
    """What the page says of the run; ``argv``, the arguments `main` was given, make its command."""
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
        "command": " ".join(["python -m bench", *_without_out(argv)]),
        "compared": _compared_settings(),
    }


def _compared_settings() -> dict[str, dict[str, str]]:
    """Each side's tracking and detection settings in the throughput figure, as the page states them."""
    from bench.seed_loop import COMPARED_TRACKER, SeedSettings, effective_settings
    from server.options import StreamOptions
    from server.tracking.filters import detection_conf

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


if __name__ == "__main__":
    sys.exit(main())
