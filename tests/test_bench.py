"""The benchmark entry point runs end to end and writes its page (a smoke test: no figure is checked)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from bench.run import Results, main


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
        fanout=[FanoutPoint(1, 0.5, 15.0, 15.0, 1.0), FanoutPoint(100, 0.55, 15.0, 15.0, 0.95)],
    )
    (tmp_path / LAST_RUN).write_text(json.dumps(asdict(results)))
    out = tmp_path / "benchmarks.md"

    assert main(["--report-only", "--cache", str(tmp_path), "--out", str(out)]) == 0

    page = out.read_text()
    assert "| memory flat, 4 streams (0.2 min) | < 5% growth after warm-up | +0.0% | yes |" in page
    assert "server CPU, 100 viewers vs 1" in page


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
