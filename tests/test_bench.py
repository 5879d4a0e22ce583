"""The benchmark entry point runs end to end and writes its page; its flags, sections and live figures
on hand-made input."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest

from bench.run import Results, main
from bench.server_process import ServerProcess, StreamCounts, Viewer


def test_quick_throughput_run_writes_the_page_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "benchmarks.md"
    argv = ["--quick", "--only", "throughput", "--backends", "pytorch", "--out", str(out), "--cache", str(tmp_path)]

    assert main(argv) == 0

    page = out.read_text()
    assert "segcast vs seed loop as users write it, PyTorch" in page
    assert "segcast vs seed loop like for like, PyTorch" in page
    assert "| seed loop, like for like | `model.track(frame, persist=True, tracker='bytetrack.yaml'" in page
    assert "| PyTorch |" in page
    assert out.with_suffix(".png").stat().st_size > 0
    assert "share of the limit" in capsys.readouterr().out


def test_the_page_can_be_rewritten_from_the_saved_run(tmp_path: Path) -> None:
    from bench.live import FanoutPoint, LatencyRun
    from bench.run import LAST_RUN

    samples = [(float(t), 100.0) for t in range(10)]
    results = Results(
        latency=[LatencyRun(4, 10.0, 100.0, 120.0, 100.0, 100.0, samples, samples, 15.0)],
        # 1.2 times the CPU for 1.5 times the frames processed: each frame cost less.
        fanout=[FanoutPoint(1, 0.5, 10.0, 10.0, 1.0), FanoutPoint(100, 0.6, 15.0, 15.0, 0.95)],
    )
    (tmp_path / LAST_RUN).write_text(json.dumps(asdict(results)))
    out = tmp_path / "benchmarks.md"

    assert main(["--report-only", "--cache", str(tmp_path), "--out", str(out)]) == 0

    page = out.read_text()
    assert "| memory flat, 4 streams (0.2 min) | < 5% growth after warm-up | +0.0% | yes |" in page
    assert "| server CPU per processed frame, 100 viewers vs 1 | <= 1.15x | 0.80x | yes |" in page


def test_a_run_writes_its_page_to_the_cache_and_the_docs_only_when_asked(tmp_path: Path) -> None:
    from bench.run import DOCS_PAGE, LAST_RUN, parse_args

    assert parse_args(["--update-docs"]).out == DOCS_PAGE
    assert parse_args(["--cache", str(tmp_path)]).out == tmp_path / "benchmarks.md"
    tracked = DOCS_PAGE.read_bytes()
    (tmp_path / LAST_RUN).write_text(json.dumps(asdict(Results())))

    assert main(["--report-only", "--cache", str(tmp_path)]) == 0

    assert (tmp_path / "benchmarks.md").read_text().startswith("# Benchmarks")
    assert DOCS_PAGE.read_bytes() == tracked, "the tracked page is left alone"


def page_of(tmp_path: Path, results: Results) -> str:
    """The page `--report-only` writes for ``results``, saved as a run would have saved them."""
    from bench.run import LAST_RUN

    (tmp_path / LAST_RUN).write_text(json.dumps(asdict(results)))
    out = tmp_path / "benchmarks.md"
    assert main(["--report-only", "--cache", str(tmp_path), "--out", str(out)]) == 0
    return out.read_text()


def test_the_occlusion_goals_compare_the_default_with_the_best_of_ultralytics_trackers(tmp_path: Path) -> None:
    def seeds(*idf1: float, switches: int) -> list[dict[str, object]]:
        bands = {"visible": 0.9, "partly hidden": 0.5, "mostly hidden": 0.1}
        return [{"idf1": v, "hota": v, "mota": v, "switches": switches, "bands": bands} for v in idf1]

    trackers = {"bytetrack": seeds(0.70, 0.72, switches=5), "tracktrack": seeds(0.74, 0.76, switches=3)}
    trackers["segtrack"] = seeds(0.95, 0.97, switches=1)  # segcast's own: not one of ultralytics'
    occlusion = {"seeds": [11, 12], "default": "bytetrack", "own": ["segtrack"], "trackers": trackers}
    occlusion |= {"cost_ms": {"bytetrack": 0.9, "tracktrack": 4.0, "segtrack": 1.5}, "cost_objects": 19.2}
    page = page_of(tmp_path, Results(occlusion=occlusion))
    assert "| occlusion family: default tracker (bytetrack) mean IDF1 | >= 0.9 | 0.710 | **no** |" in page
    assert "over the best of ultralytics' trackers (tracktrack) | >= +0.08 | -0.040 | **no** |" in page
    assert "| occlusion family: bytetrack id switches, fewest of ultralytics' trackers | no more | 10 vs 6 |" in page
    # The absolute bar shows the machine; the baseline tracker's time in the same run puts it in scale.
    assert "| segtrack cost per frame, 19 objects | <= 2 ms | 1.50 ms (1.67x bytetrack's) | yes |" in page
    # segcast's own tracker is held to the same bar, as the candidate for the default.
    assert "| occlusion family: segtrack (segcast's own, not the default) mean IDF1 | >= 0.9 | 0.960 | yes |" in page
    assert "segtrack IDF1 over the best of ultralytics' trackers (tracktrack) | >= +0.08 | +0.210 | yes |" in page
    assert (
        "| occlusion family: segtrack id switches, fewest of ultralytics' trackers | no more | 2 vs 6 | yes |" in page
    )
    assert "| segtrack | 0.950 / 0.970 | 0.960 |" in page.split("## Tracking through occlusion")[1]


def test_the_analytics_goals_add_up_every_seed(tmp_path: Path) -> None:
    def seed(number: int, true: int, found: int, extra: int, visits: int, within: int) -> dict[str, int]:
        keys = ("seed", "true_crossings", "found_crossings", "extra_crossings", "scored_visits", "visits_within")
        return dict(zip(keys, (number, true, found, extra, visits, within), strict=True))

    analytics = {"seeds": [seed(7, 34, 34, 0, 20, 20), seed(11, 66, 64, 1, 20, 18)], "dwell_tolerance_s": 0.5}
    page = page_of(tmp_path, Results(analytics=analytics))
    assert "| line crossings counted, right direction | >= 98% | 98.0% (98 of 100) | yes |" in page
    assert "| crossings counted wrong or twice | none | 1 | **no** |" in page
    assert "| zone visits with dwell within 0.5 s of the truth | >= 95% | 95.0% (38 of 40) | yes |" in page
    assert "| all | 100 | 98 (98.0%) | 1 | 40 | 38 (95.0%) |" in page


def test_the_like_for_like_seed_loop_draws_tracks_as_segcast_reports_them() -> None:
    """From the first frame a track reaches the reporting conf, then at any confidence (server.tracking)."""
    from types import SimpleNamespace

    from bench.seed_loop import _drawn

    drawn_ids: set[int] = set()
    first = SimpleNamespace(id=np.array([1.0, 2.0]), conf=np.array([0.9, 0.2]))
    second = SimpleNamespace(id=np.array([1.0, 2.0]), conf=np.array([0.15, 0.3]))
    third = SimpleNamespace(id=np.array([1.0, 2.0]), conf=np.array([0.12, 0.2]))
    assert _drawn(first, 0.25, drawn_ids).tolist() == [True, False]
    assert _drawn(second, 0.25, drawn_ids).tolist() == [True, True]
    assert _drawn(third, 0.25, drawn_ids).tolist() == [True, True]


def test_occlusion_id_recall_per_band_averages_only_the_seeds_with_boxes_in_it(tmp_path: Path) -> None:
    # A short run: seed 11 reached the visible and partly hidden bands, seed 12 all three, seeds 13
    # and 14 only the visible one (a seed's first band need not be every band, nor come first).
    reached = [["visible", "partly hidden"], ["mostly hidden", "visible", "partly hidden"], ["visible"], ["visible"]]
    recall = {"visible": 0.9, "partly hidden": 0.6, "mostly hidden": 0.2}

    def seeds(reached: list[list[str]]) -> list[dict[str, object]]:
        scores = {"idf1": 0.9, "hota": 0.8, "mota": 0.8, "switches": 1}
        return [{**scores, "bands": {band: recall[band] for band in bands}} for bands in reached]

    occlusion = {"seeds": [11, 12, 13, 14], "default": "bytetrack", "own": ["segtrack"], "cost_objects": 20}
    occlusion |= {"cost_ms": {"segtrack": 1.0, "bytetrack": 0.5}}
    occlusion["trackers"] = {"segtrack": seeds(reached), "bytetrack": seeds([["visible"]] * 4)}

    page = page_of(tmp_path, Results(occlusion=occlusion))

    assert "| 1 / 1 / 1 / 1 | 0.90 / 0.60 / 0.20 | 1.00 |" in page
    assert "| 1 / 1 / 1 / 1 | 0.90 / - / - | 0.50 |" in page


def test_the_masks_section_is_skipped_on_a_model_that_makes_none(tmp_path: Path) -> None:
    """It timed a detection model's frames as "mask post-processing": fast and plain masks did the same
    work, and the page compared them as if they differed."""
    from bench.measures import RunContext, _measure_masks

    args = SimpleNamespace(backends=["pytorch", "onnx"], quick=True, cache=tmp_path, rounds=1, busy_frames=4)
    results = Results()
    _measure_masks(RunContext(args, tmp_path / "yolov8n.pt", "detect", 320, tmp_path / "scene.mp4", results))

    assert results.masks == {}
    assert results.skipped["masks"] == {backend: "a detect model makes no masks" for backend in args.backends}
    page = page_of(tmp_path, results).partition("## Mask post-processing")[2]
    assert "- PyTorch skipped: a detect model makes no masks" in page


def test_the_busy_scene_is_compared_as_the_throughput_section_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both seed loops against segcast running the tracker both sides run, in rotating order, and each
    ratio taken within a round: its mean and spread, not the ratio of the mean fps."""
    import bench.measures as measures
    import bench.run as run
    from bench.seed_loop import COMPARED_TRACKER

    fps = {"as_written": [4.0, 8.0], "like_for_like": [5.0, 8.0], "plain": [10.0, 12.0], "fast": [12.0, 16.0]}
    calls: list[dict[str, object]] = []
    sides: list[str] = []

    def case(case: dict[str, object], video: Path) -> dict[str, float]:
        calls.append(case)
        side = case.get("settings") if case["kind"] == "seed" else ("fast" if case.get("fast_masks", True) else "plain")
        sides.append(str(side))
        return {"fps": fps[str(side)][(len(calls) - 1) // 4]}

    monkeypatch.setattr(measures, "_case", case)
    masks = measures._mask_paths("model.xml", tmp_path / "busy.mp4", SimpleNamespace(rounds=2, busy_frames=10))

    # Who goes first changes, and so does the order of any two sides (plain and fast masks too).
    assert sides[:4] == ["as_written", "like_for_like", "plain", "fast"]
    assert sides[4:] == ["like_for_like", "as_written", "fast", "plain"]
    assert all(c["tracker"] == COMPARED_TRACKER for c in calls if c["kind"] == "segcast")
    assert masks["ratio"] == pytest.approx(2.5) and masks["ratio_range"] == [2.0, 3.0]  # 12 / 4 and 16 / 8
    assert masks["like_ratio"] == pytest.approx((12 / 5 + 2) / 2)
    page = page_of(tmp_path, Results(masks={"openvino": masks}, settings={"compared": run._compared_settings()}))
    # The throughput section's table of each side's settings is not on a page without it: this one has it.
    assert "| seed loop, like for like |" in page.partition("## Mask post-processing")[2]
    goal = "busy 720p scene at 640: segcast vs seed loop"
    assert f"| {goal} as users write it, best CPU backend | >= 2x | 2.50x (rounds 2.00-3.00) (OpenVINO) | yes |" in page
    assert f"| {goal} like for like, best CPU backend | >= 2x | 2.20x (rounds 2.00-2.40) (OpenVINO) | yes |" in page
    assert f"segcast running `{COMPARED_TRACKER}` with ultralytics" in page


def test_the_seed_loop_on_the_pt_file_is_a_ratio_of_means_from_other_rounds_and_says_so(tmp_path: Path) -> None:
    def backend(seed: float, segcast: float) -> dict[str, object]:
        return {"seed_fps": seed, "segcast_fps": segcast, "forward_ms": 10.0, "ratio": segcast / seed, "share": 0.7}

    page = page_of(tmp_path, Results(throughput={"pytorch": backend(20.0, 25.0), "openvino": backend(30.0, 60.0)}))

    label = "segcast on OpenVINO vs the seed loop users run today (.pt): ratio of mean fps from different rounds"
    assert f"| {label} | >= 2x | 3.00x | yes |" in page


def test_goals_with_nothing_to_score_are_not_applicable(tmp_path: Path) -> None:
    """A short run may see no object: a score of nothing is neither met nor missed."""
    empty = {"idf1": 0.0, "mota": 0.0, "switches": 0, "ms_per_frame": 50.0, "truth_boxes": 0}
    seed = {"idf1": 0.0, "hota": 0.0, "mota": 0.0, "switches": 0, "bands": {}, "truth_boxes": 0}
    occlusion = {"seeds": [11], "default": "segtrack", "own": ["segtrack"], "cost_objects": 17.0}
    occlusion |= {"trackers": {"segtrack": [seed], "bytetrack": [seed]}, "cost_ms": {"segtrack": 1.0, "bytetrack": 1.0}}
    counts = ("true_crossings", "found_crossings", "extra_crossings", "scored_visits", "visits_within")
    analytics = {"seeds": [{"seed": 7, **dict.fromkeys(counts, 0)}], "dwell_tolerance_s": 0.5}
    results = Results(tracking={"pytorch": empty, "onnx": empty}, occlusion=occlusion, analytics=analytics)

    page = page_of(tmp_path, results)

    for goal in (
        "IDF1 on ONNX Runtime vs PyTorch | within 0.01",
        "occlusion family: default tracker (segtrack) mean IDF1 | >= 0.9",
        "occlusion family: segtrack IDF1 over the best of ultralytics' trackers (bytetrack) | >= +0.08",
        "occlusion family: segtrack id switches, fewest of ultralytics' trackers | no more",
        "line crossings counted, right direction | >= 98%",
        "crossings counted wrong or twice | none",
        "zone visits with dwell within 0.5 s of the truth | >= 95%",
    ):
        assert f"| {goal} | nothing to score | n/a |" in page
    assert "| segtrack cost per frame, 17 objects | <= 2 ms | 1.00 ms (1.00x bytetrack's) | yes |" in page
    assert "| ONNX Runtime | n/a | n/a | 0 | 50 |" in page
    assert "| **segtrack** (default) | - | - | - | - |" in page


def test_a_page_rewritten_from_a_quick_run_says_it_is_one(tmp_path: Path) -> None:
    page = page_of(tmp_path, Results(settings={"quick": True}))

    assert "**This is a `--quick` smoke run: the figures are too short to mean anything.**" in page


def test_the_seed_loop_warms_up_as_segcast_does_and_loops_the_file_as_segcast_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both sides leave as many frames untimed, and a run longer than the file goes round it, as
    segcast's looping source does, rather than stopping short."""
    import inspect

    import ultralytics

    from bench.pipeline import run_pipeline
    from bench.seed_loop import run_seed_loop
    from server.scene import Scene, write_h264

    tracked: list[np.ndarray] = []

    class Model:
        def __init__(self, path: str, task: str) -> None:
            pass

        def track(self, image: np.ndarray, **options: object) -> list[SimpleNamespace]:
            tracked.append(image)
            return [SimpleNamespace(boxes=None, plot=lambda: image)]

    monkeypatch.setattr(ultralytics, "YOLO", Model)
    video = write_h264(Scene(seed=7), tmp_path / "three.mp4", 3)

    loop = run_seed_loop("model.pt", video, 7)

    assert loop.frames == 7
    assert len(tracked) - loop.frames == inspect.signature(run_pipeline).parameters["warmup"].default


def test_the_scaleout_overhead_rounds_change_who_goes_first() -> None:
    from bench.scaleout import overhead_rounds

    order: list[str] = []

    def case(case: dict[str, object], video: Path) -> dict[str, float]:
        order.append(str(case["model"]))
        return {"fps": 10.0 if case["model"] == "local.onnx" else 9.0}

    rounds = overhead_rounds(case, Path("scene.mp4"), {"kind": "segcast"}, "local.onnx", "grpc://triton/m", 3)

    assert order == ["local.onnx", "grpc://triton/m", "grpc://triton/m", "local.onnx", "local.onnx", "grpc://triton/m"]
    assert rounds == [{"local_fps": 10.0, "remote_fps": 9.0}] * 3


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--backends", "pytorch,onxx"], "argument --backends: unknown backend 'onxx'; choose from pytorch, onnx"),
        (["--backends", "triton"], "unknown backend 'triton'; choose from pytorch, onnx, openvino; Triton is"),
        (["--multistream-backends", "openvno"], "argument --multistream-backends: unknown backend 'openvno'"),
        (["--only", "throughput,tracknig"], "argument --only: unknown section 'tracknig'"),
        (["--rounds", "0"], "argument --rounds: '0': must be 1 or more"),
        (["--busy-frames", "0"], "argument --busy-frames: '0': must be 1 or more"),
        (["--viewers", "1,0"], "argument --viewers: '0': must be 1 or more"),
        (["--latency-s", "0"], "argument --latency-s: '0': must be more than 0"),
    ],
)
def test_bad_flags_are_refused_before_anything_is_measured(
    argv: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.run import parse_args

    with pytest.raises(SystemExit) as exited:
        parse_args([*argv, "--cache", str(tmp_path)])

    assert exited.value.code == 2
    assert says in capsys.readouterr().err.splitlines()[-1]


def test_report_only_without_a_saved_run_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--report-only", "--cache", str(tmp_path / "empty")])

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "error: --report-only: no saved run in" in err.splitlines()[-1]


def test_a_model_that_cannot_be_opened_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", str(tmp_path / "no-such.pt"), "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith("python -m bench: error: --model ") and "no-such.pt" in err


@pytest.mark.parametrize(
    ("rounds", "shown"),
    [([], "Mean ratio - (rounds: none)"), ([{"local_fps": 0.0, "remote_fps": 5.0}], "Mean ratio - (rounds: -)")],
    ids=["no rounds", "local run processed nothing"],
)
def test_the_scaleout_page_shows_a_ratio_it_could_not_take_as_a_dash(
    rounds: list[dict[str, float]], shown: str, tmp_path: Path
) -> None:
    from bench.scaleout import ScaleoutResults, write_scaleout_report

    page = write_scaleout_report(
        ScaleoutResults(overhead_rounds=rounds), tmp_path / "scaleout.md", "python -m bench", {}
    )

    assert f"{shown}; goal >= 0.85: **missed**." in page


PROCESSED_FPS = 200.0  # the stand-in server's rate
OFFERED_FPS = 300.0  # what its cameras offer it: it drops the other 100 frames a second


@pytest.fixture
def stand_in_server(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], ServerProcess]:
    """`bench.live._latency`'s server: its cameras offer `OFFERED_FPS` frames a second, it processes
    `PROCESSED_FPS` and drops the rest, and its one viewer gets a frame every 10 ms, or, ``starved``, none
    until the run's closing count: after the measured time, so in its last third and never its first,
    however late the loop runs (a feed starting at a fixed real time fell into the first third when a
    stall of the loop lengthened the run); RSS sampled every 0.2 s, no warm-up."""
    import bench.live as live

    started = time.monotonic()
    viewer = Viewer(record=True)
    counts_read: list[float] = []

    def stand_in(starved: bool) -> ServerProcess:
        async def stream_counts(session: object, server: object) -> StreamCounts:
            if starved and counts_read:
                viewer.samples.extend([(time.monotonic(), 0.04)] * 3)
            elapsed = time.monotonic() - started
            counts_read.append(elapsed)
            read, processed = int(elapsed * OFFERED_FPS), int(elapsed * PROCESSED_FPS)
            return StreamCounts(read, read - processed, processed)

        @contextlib.asynccontextmanager
        async def viewers(server: object, count: int, record: bool = False) -> AsyncIterator[list[Viewer]]:
            async def feed() -> None:
                while not starved:
                    viewer.samples.append((time.monotonic(), 0.04))
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(feed())
            try:
                yield [viewer]
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        monkeypatch.setattr(live, "stream_counts", stream_counts)
        monkeypatch.setattr(live, "viewers", viewers)
        return cast(ServerProcess, SimpleNamespace(rss_mb=lambda: 1.0))

    monkeypatch.setattr(live, "WARMUP_S", 0.0)
    monkeypatch.setattr(live, "RSS_SAMPLE_S", 0.2)
    return stand_in


async def test_processed_fps_of_a_latency_run_is_over_the_time_measured(
    stand_in_server: Callable[[bool], ServerProcess],
) -> None:
    from bench.live import _latency

    # 0.25 s asked for: RSS samples at 0, 0.2 and 0.4 s make it 0.4 s.
    run = await _latency(stand_in_server(False), 1, 0.25)

    assert run.processed_fps == pytest.approx(PROCESSED_FPS, rel=0.1)


async def test_a_latency_run_whose_first_third_got_no_frame_is_not_flat(
    stand_in_server: Callable[[bool], ServerProcess], tmp_path: Path
) -> None:
    from bench.live import _latency

    run = await _latency(stand_in_server(True), 1, 0.25)

    assert run.first_p50_ms is None and run.last_p50_ms == pytest.approx(40.0)
    assert not run.flat
    page = page_of(tmp_path, Results(latency=[run]))
    reached = f"- -> 40 ms ({run.dropped_share:.0%} of {run.offered_fps:.1f} fps offered dropped unprocessed)"
    goal = "last third's p50 within 20% (or 10 ms) of the first's"
    assert f"| latency stays flat, 1 stream (0 s) | {goal} | {reached} | **no** |" in page


async def test_a_latency_run_records_what_was_offered_and_dropped_and_the_page_shows_it(
    stand_in_server: Callable[[bool], ServerProcess], tmp_path: Path
) -> None:
    """Latency is of the frames processed only: the frames the pipeline dropped are said beside it."""
    from bench.live import _latency

    run = await _latency(stand_in_server(False), 4, 0.25)

    assert run.offered_fps == pytest.approx(OFFERED_FPS, rel=0.1)
    assert run.dropped_share == pytest.approx(1 / 3, abs=0.05)
    page = page_of(tmp_path, Results(latency=[run]))
    dropped = f"{run.dropped_share:.0%} of {run.offered_fps:.1f} fps offered dropped unprocessed"
    flat = "| latency stays flat, 4 streams (0 s) | last third's p50 within 20% (or 10 ms) of the first's |"
    assert f"{flat} 40 -> 40 ms ({dropped}) |" in page
    assert f"| memory flat, 4 streams (0.0 min) | < 5% growth after warm-up | +0.0% ({dropped}) |" in page
    row = (
        f"| 4 | 0 | {run.offered_fps:.1f} | {run.processed_fps:.1f} | {run.frames_dropped} ({run.dropped_share:.0%}) |"
    )
    assert row in page


def test_the_gpu_capacity_measure_counts_images_and_cameras_per_batch() -> None:
    """Run on a CPU at a tiny size: the figures docs/scaling.md quotes are these rows' arithmetic."""
    from bench.gpu_capacity import CAMERA_FPS, measure

    rows = measure("bundled", "cpu", 64, 64, [1, 3], half=False, warmup=1, timed=3)
    assert [row["batch"] for row in rows] == [1, 3]
    for row in rows:
        assert row["images_per_s"] == pytest.approx(row["batch"] * 1000 / row["ms"])
        assert row["cameras"] == pytest.approx(row["images_per_s"] / CAMERA_FPS)


def test_a_quick_scaleout_page_says_it_is_a_smoke_run(tmp_path: Path) -> None:
    from bench.scaleout import ScaleoutResults, write_scaleout_report

    rounds = [{"local_fps": 10.0, "remote_fps": 8.0}]
    results = ScaleoutResults(overhead_rounds=rounds)
    quick = write_scaleout_report(results, tmp_path / "q.md", "python -m bench", {}, quick=True)
    real = write_scaleout_report(results, tmp_path / "r.md", "python -m bench", {})
    assert "smoke run" in quick and "smoke run" not in real


def triton_stats(images: int, requests: int, executions: int) -> dict[str, object]:
    """An entry of Triton's ``/v2/models/<m>/stats`` ``model_stats``, with the counts the benchmark reads."""
    success = {"count": requests, "ns": 1_000_000 * requests}
    return {
        "name": "segcast-scene-seg",
        "inference_count": images,
        "execution_count": executions,
        "inference_stats": {"success": success, "fail": {"count": 0, "ns": 0}},
    }


def test_the_scaleout_page_says_triton_joined_requests_only_where_it_ran_several_in_one_execution(
    tmp_path: Path,
) -> None:
    """Two nodes of two cameras: each request carries up to 2 images, so 1.41 images per execution was
    read as the nodes' requests joined when Triton ran every request on its own (138 requests, 138
    executions): only requests per execution tell."""
    from bench.scaleout import NodesRun, ScaleoutResults, TritonCounts, record_batching, write_scaleout_report

    def page(requests: int, executions: int) -> str:
        run = NodesRun("grpc://127.0.0.1:8001/model", 2, 4, 30.0, 58.0, 100.0, 180.0)
        before = TritonCounts.from_stats(triton_stats(1000, 500, 500))
        after = TritonCounts.from_stats(triton_stats(1000 + 195, 500 + requests, 500 + executions))
        record_batching(run, before, after)
        return write_scaleout_report(ScaleoutResults(runs=[run]), tmp_path / "s.md", "python -m bench", {})

    alone = page(requests=138, executions=138)
    assert "| 2 node(s), one Triton | 4 | 58.0 | 100 | 180 | 1.41 | 1.00 |" in alone
    assert "1.00 requests per execution" in alone
    assert "joined" not in alone

    joined = page(requests=138, executions=69)
    assert "| 2.83 | 2.00 |" in joined
    assert "Triton joined the requests of the 2 nodes into its executions: 2.00 requests per execution" in joined


def test_scaleout_rows_are_labelled_by_what_ran_not_by_what_triton_executed(tmp_path: Path) -> None:
    """A Triton run whose Triton executed nothing (no mean batch) is still the two nodes on Triton."""
    from bench.scaleout import NodesRun, ScaleoutResults, write_scaleout_report

    local = NodesRun("/cache/model.onnx", 1, 4, 30.0, 40.0, 100.0, 150.0)
    remote = NodesRun("grpc://127.0.0.1:8001/model", 2, 4, 30.0, 0.0, 300.0, 400.0, mean_batch=None)

    page = write_scaleout_report(ScaleoutResults(runs=[local, remote]), tmp_path / "s.md", "python -m bench", {})

    assert "| 2 node(s), one Triton | 4 | 0.0 | 300 | 400 | - |" in page
    assert "| 1 node(s), in-process ONNX Runtime | 4 | 40.0 | 100 | 150 | - |" in page
