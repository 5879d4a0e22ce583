"""The benchmarks give no figure for work that was not done: frames shown unanalysed while a remote model
is unavailable are neither counted nor timed, a share of the limit above 1 is no measurement, and the
pages say what machine and model they measured."""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

import bench.live as live
import bench.pipeline as pipeline
import bench.scaleout as scaleout
from bench.measures import cached_video
from bench.report_goals import goal_rows
from bench.run import LAST_RUN, Results, main
from bench.scaleout import ScaleoutResults, write_scaleout_report
from bench.server_process import ServerProcess, StreamCounts, Viewer
from server import streams
from server.delivery.encode import FramePacket, Variant
from server.frames import Frame, FrameResult
from server.inference.detections import Detections
from server.inference.models import InferenceStatus, InferenceUnavailable
from server.inference.worker import InferenceWorker
from server.scene import Scene, write_h264
from tests.support.detections import NAMES

GONE = "Triton at 127.0.0.1:1 unreachable: connection refused"
BARRIER_S = 60.0  # how long a writer waits for the other one to be writing too, before the test gives up


def _packet(analysed: bool) -> FramePacket:
    frame = Frame("cam", 1, 1000.0, 0.1, np.zeros((8, 8, 3), np.uint8))
    result = FrameResult(frame, (), 5.0) if analysed else FrameResult.unanalysed(frame)
    return FramePacket(result, {}, "{}", MappingProxyType({Variant(): b"\xff\xd8"}))


@pytest.mark.parametrize("need_jpeg", [True, False], ids=["annotated (throughput)", "metadata only (multi-stream)"])
def test_a_frame_shown_unanalysed_is_not_counted(need_jpeg: bool) -> None:
    hub = pipeline.CountingHub(need_jpeg)

    hub.publish_threadsafe(_packet(analysed=False))
    assert hub.count == 0

    hub.publish_threadsafe(_packet(analysed=True))
    assert hub.count == 1


class _Answered:
    """A batch answered at once, with nothing found."""

    seconds = 0.0

    def __init__(self, images: int) -> None:
        self._images = images

    def done(self) -> bool:
        return True

    def result(self) -> list[Detections]:
        return [Detections.empty()] * self._images


class _ModelThatGoesAway:
    """A remote model (an `InferenceBackend`) that answers until ``gone`` is set, then is unreachable for
    good, as a Triton killed part way through a run."""

    kind = "Triton"
    runs_on = "127.0.0.1:1"
    pipelined = False
    names = NAMES
    default_imgsz = None
    fixed_shape = None
    request_stats = None

    def __init__(self, gone: threading.Event) -> None:
        self._gone = gone
        self.status = InferenceStatus(available=True)

    def submit(self, images: list[np.ndarray], *, on_answer: Callable[[], None], **options: Any) -> _Answered:
        if self._gone.is_set():
            self.status = InferenceStatus(available=False, error=GONE)
            raise InferenceUnavailable(GONE)
        return _Answered(len(images))

    def probe(self, on_answer: Callable[[], None]) -> None:
        """Never asked: the looping file keeps the worker busy."""

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("streams_", "annotated"), [(1, True), (2, False)], ids=["throughput", "multi-stream, metadata only"]
)
def test_a_run_whose_model_goes_away_after_warm_up_raises_instead_of_giving_a_rate(
    streams_: int, annotated: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a remote model that goes away once the warm-up frames came out, when the timed frames come out
    unanalysed (cheap: no model), then the run names the reason instead of giving their rate as the pipeline's."""
    warmup = 2
    warmed = threading.Event()

    class WarmingHub(pipeline.CountingHub):
        def publish_threadsafe(self, packet: FramePacket) -> None:
            super().publish_threadsafe(packet)
            if self.count >= warmup * streams_:
                warmed.set()

    model = _ModelThatGoesAway(gone=warmed)
    monkeypatch.setattr(pipeline, "CountingHub", WarmingHub)
    monkeypatch.setattr(streams, "InferenceWorker", functools.partial(InferenceWorker, load=lambda _: model))
    video = write_h264(Scene(seed=7), tmp_path / "three.mp4", 3)

    with pytest.raises(RuntimeError, match=f"timed frame\\(s\\) not inferred \\(inference unavailable: {GONE}"):
        pipeline.run_pipeline(
            "grpc://127.0.0.1:1/gone",
            video,
            frames=30,
            imgsz=64,
            streams=streams_,
            annotated=annotated,
            warmup=warmup,
            timeout_s=60.0,  # under the test's own time-out, so that a hang says where it waited
        )


def _frame_message(analysed: bool) -> str:
    image = {"variant": "annotated", "width": 8, "height": 8}
    return json.dumps({"type": "frame", "capture_time": 1000.0, "image": image, "analysed": analysed})


def test_a_viewer_records_no_latency_for_a_frame_shown_unanalysed() -> None:
    viewer = Viewer(record=True)

    viewer.on_text(_frame_message(analysed=False))
    viewer.on_jpeg()
    assert viewer.samples == [] and viewer.received == 1

    viewer.on_text(_frame_message(analysed=True))
    viewer.on_jpeg()
    assert len(viewer.samples) == 1


async def test_a_latency_run_in_which_nothing_was_processed_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames reached the viewer (one per count read, inside the measured time), but none went through the model."""
    viewer = Viewer(record=True)

    @contextlib.asynccontextmanager
    async def viewers(server: object, count: int, record: bool = False) -> AsyncIterator[list[Viewer]]:
        yield [viewer]

    async def stream_counts(session: object, server: object) -> StreamCounts:
        viewer.samples.append((time.monotonic(), 0.005))
        return StreamCounts(read=len(viewer.samples) * 10, dropped=0, processed=0)

    monkeypatch.setattr(live, "viewers", viewers)
    monkeypatch.setattr(live, "stream_counts", stream_counts)
    monkeypatch.setattr(live, "WARMUP_S", 0.0)
    monkeypatch.setattr(live, "RSS_SAMPLE_S", 0.01)
    server = cast(ServerProcess, SimpleNamespace(rss_mb=lambda: 1.0))

    with pytest.raises(RuntimeError, match=r"latency run, 1 stream\(s\): no frame was processed in"):
        await live._latency(server, 1, 0.01)


def test_a_scaleout_run_in_which_nothing_was_processed_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    watching: list[Viewer] = []

    @contextlib.contextmanager
    def serve(*args: object) -> Iterator[object]:
        yield object()

    @contextlib.asynccontextmanager
    async def viewers(server: object, count: int, record: bool = False) -> AsyncIterator[list[Viewer]]:
        watching.append(Viewer(record))
        yield watching[-1:]

    async def processed_count(session: object, server: object) -> int:
        for viewer in watching:  # a frame reached each viewer by the time the count was read
            viewer.samples.append((time.monotonic(), 0.005))
        return 0

    monkeypatch.setattr(scaleout, "serve", serve)
    monkeypatch.setattr(scaleout, "viewers", viewers)
    monkeypatch.setattr(scaleout, "processed_count", processed_count)
    monkeypatch.setattr(scaleout, "WARMUP_S", 0.0)

    with pytest.raises(RuntimeError, match=r"scale-out run, 4 camera\(s\) on 2 node\(s\): no frame was processed"):
        scaleout._nodes_run("grpc://127.0.0.1:1/m", tmp_path / "scene.mp4", 320, [2, 2], 0.01)


@pytest.mark.parametrize(
    "row",
    [
        {"share": 1.2},
        {"share": 0.9, "share_range": [0.5, 1.3]},
        # Saved before share_range was: its rounds (10 fps x 130 ms = 1.3, 10 x 50 = 0.5) say the same.
        {"share": 0.9, "rounds": [{"segcast_fps": 10.0, "forward_ms": ms} for ms in (130.0, 50.0)]},
    ],
    ids=["mean above 1", "one round above 1", "one round above 1, saved before share_range"],
)
def test_a_share_of_the_limit_above_one_is_not_met(row: dict[str, Any]) -> None:
    results = Results(throughput={"pytorch": {"segcast_fps": 10.0, **row}})

    [share] = [r for r in goal_rows(results) if r[0].startswith("share of the limit")]

    assert share[3] == "n/a"
    assert share[2].startswith("n/a (forward timing disturbed: share ") and share[2].endswith(", above 1)")


def test_a_share_of_the_limit_up_to_one_is_judged() -> None:
    results = Results(throughput={"pytorch": {"segcast_fps": 10.0, "share": 0.8, "share_range": [0.7, 0.9]}})

    [share] = [r for r in goal_rows(results) if r[0].startswith("share of the limit")]

    assert share[2:] == ["0.80", "yes"]


MACHINE = {
    "cpu": "AMD EPYC 7B13",
    "cores": 16,
    "python": "3.11.7",
    "torch": "2.3.1",
    "ultralytics": "8.2.0",
    "gpu": None,
    "runtimes": {"onnxruntime": "1.18.0"},
    "load_before": [1.5, 1.2, 1.0],
    "date": "2025-12-06 11:20 UTC",
    # Recorded after the main page's sections: not the scale-out page's to say.
    "load_after": [9.0, 9.0, 9.0],
    "minutes": 42.0,
}


def test_the_scaleout_page_says_the_machine_it_ran_on(tmp_path: Path) -> None:
    results = ScaleoutResults(overhead_rounds=[{"local_fps": 10.0, "remote_fps": 9.0}])

    page = write_scaleout_report(results, tmp_path / "scaleout.md", "python -m bench --only scaleout", MACHINE)

    assert "- 16 CPU cores (AMD EPYC 7B13), no GPU; Python 3.11.7, torch 2.3.1, ultralytics 8.2.0" in page
    assert "onnxruntime 1.18.0" in page
    assert "- Run 2025-12-06 11:20 UTC: `python -m bench --only scaleout`." in page
    assert "before the run [1.5, 1.2, 1.0]:" in page and "42.0 min" not in page


def test_a_page_for_another_model_does_not_name_the_bundled_architecture(tmp_path: Path) -> None:
    results = Results(machine=MACHINE, settings={"model": "yolov8s-seg-random.pt", "imgsz": 320})
    (tmp_path / LAST_RUN).write_text(json.dumps(asdict(results)))
    out = tmp_path / "benchmarks.md"

    assert main(["--report-only", "--cache", str(tmp_path), "--out", str(out)]) == 0

    page = out.read_text()
    assert "- Model `yolov8s-seg-random.pt` at imgsz 320;" in page
    assert "yolov8n-seg" not in page
    assert "before the run [1.5, 1.2, 1.0], after [9.0, 9.0, 9.0]:" in page and "42.0 min" in page


def test_two_runs_writing_the_same_cached_video_both_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both find no video and write it at the same time (a barrier holds each until the other is writing)."""
    import server.scene

    both_writing = threading.Barrier(2, timeout=BARRIER_S)
    write = server.scene.write_h264

    def write_together(scene: Scene, path: Path, frames: int, **options: Any) -> Path:
        both_writing.wait()
        return write(scene, path, frames, **options)

    monkeypatch.setattr(server.scene, "write_h264", write_together)
    video = tmp_path / "scene-3-2.mp4"
    outcomes: list[Path | BaseException] = []

    def run() -> None:
        try:
            outcomes.append(cached_video(video, Scene(seed=3), 2))
        except BaseException as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes == [video, video]
    assert [p.name for p in tmp_path.iterdir()] == [video.name], "no partial file is left behind"
    assert video.stat().st_size > 0
