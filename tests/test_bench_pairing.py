"""The throughput comparison runs what it says it compares: each side's settings as its case actually
runs them (not as the page states them), and every side draws and JPEG-encodes every frame it counts."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest

import bench.case
import bench.measures as measures
import bench.pipeline as pipeline
from bench.seed_loop import COMPARED_TRACKER, SeedSettings
from server.delivery.encode import Variant
from server.options import StreamOptions
from server.scene import Scene, write_h264
from server.tracking.filters import detection_conf


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_h264(Scene(seed=7), tmp_path / "three.mp4", 3)


class StandInModel:
    """ultralytics' ``YOLO`` for the seed loop: records the keyword arguments of every ``track`` call."""

    calls: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, path: str, task: str) -> None:
        pass

    def track(self, image: np.ndarray, **options: Any) -> list[SimpleNamespace]:
        StandInModel.calls.append(options)
        return [SimpleNamespace(boxes=None, plot=lambda: image)]


class StandInManager:
    """`StreamManager` for `run_pipeline`: records what it was asked to run, and publishes a packet with
    an annotated JPEG every millisecond from a thread of its own until stopped."""

    made: ClassVar[list[StandInManager]] = []

    def __init__(self, settings: Any, hub: pipeline.CountingHub) -> None:
        self.settings, self.hub = settings, hub
        self.streams: list[Any] = []
        self.wanted: list[dict[str, frozenset[Variant]]] = []
        self.encoder = SimpleNamespace(dropped=0, set_wanted=self.wanted.append)
        self.worker = SimpleNamespace(stats=lambda stream_id: None)  # no stream's frame ever fails here
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish)
        StandInManager.made.append(self)

    def start(self) -> None:
        self._thread.start()

    def add(self, config: Any) -> None:
        self.streams.append(config)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _publish(self) -> None:
        while not self._stop.wait(0.001):
            if self.streams:
                analysed = SimpleNamespace(result=SimpleNamespace(analysed=True), jpegs={Variant(): b"\xff\xd8"})
                self.hub.publish_threadsafe(analysed)  # type: ignore[arg-type]


class StandInTimer:
    def __init__(self, model_spec: str, image: Any, imgsz: int) -> None:
        pass

    def median_ms(self) -> float:
        return 10.0


def test_each_throughput_side_runs_the_settings_it_is_compared_with(
    video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As written: ultralytics' defaults; like for like: segcast's own settings with the tracker segcast's
    side runs, as its streams are actually given them."""
    import ultralytics

    StandInModel.calls, StandInManager.made = [], []
    monkeypatch.setattr(ultralytics, "YOLO", StandInModel)
    monkeypatch.setattr(pipeline, "StreamManager", StandInManager)
    monkeypatch.setattr(pipeline, "ForwardTimer", StandInTimer)
    seed_calls: dict[str, list[dict[str, Any]]] = {}

    def case(case: dict[str, Any], video: Path) -> dict[str, Any]:
        before = len(StandInModel.calls)
        out = bench.case.run({**case, "video": str(video)})
        if case["kind"] == "seed":
            seed_calls[case["settings"]] = StandInModel.calls[before:]
        return out

    monkeypatch.setattr(measures, "_case", case)

    measures._throughput("model.pt", video, 320, SimpleNamespace(frames=3, rounds=1))

    [manager] = StandInManager.made
    [stream] = manager.streams
    segcast: StreamOptions = stream.options
    assert segcast.tracker == COMPARED_TRACKER
    run_by_segcast = {
        "tracker": f"{segcast.tracker}.yaml",
        "conf": detection_conf(segcast),
        "iou": segcast.iou,
        "agnostic_nms": segcast.agnostic_nms,
        "max_det": segcast.max_det,
    }
    call = {"persist": True, "verbose": False, "imgsz": 320}
    assert seed_calls[SeedSettings.LIKE_FOR_LIKE.value] == [call | run_by_segcast] * 8  # 5 untimed, 3 timed
    assert seed_calls[SeedSettings.AS_WRITTEN.value] == [call] * 8, "ultralytics' defaults: nothing but these"
    assert manager.wanted == [{"*": frozenset({Variant()})}], "segcast's side encodes the annotated image"


def test_the_seed_loop_draws_and_jpeg_encodes_every_timed_frame(video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ultralytics

    import bench.seed_loop as seed_loop

    plotted: list[np.ndarray] = []
    encoded: list[tuple[str, np.ndarray]] = []
    encode = cv2.imencode

    class Model(StandInModel):
        def track(self, image: np.ndarray, **options: Any) -> list[SimpleNamespace]:
            def plot() -> np.ndarray:
                plotted.append(image.copy())
                return plotted[-1]

            return [SimpleNamespace(boxes=None, plot=plot)]

    def imencode(ext: str, image: np.ndarray, params: list[int]) -> tuple[bool, np.ndarray]:
        encoded.append((ext, image))
        return encode(ext, image, params)

    monkeypatch.setattr(ultralytics, "YOLO", Model)
    monkeypatch.setattr(seed_loop.cv2, "imencode", imencode)

    loop = seed_loop.run_seed_loop("model.pt", video, 4)

    assert loop.frames == 4 and len(plotted) == 4
    assert [ext for ext, _ in encoded] == [".jpg"] * 4
    assert all(image is drawn for (_, image), drawn in zip(encoded, plotted, strict=True))


def test_segcast_side_draws_and_encodes_a_jpeg_for_every_frame_it_counts(
    video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real pipeline on the bundled model, a few frames: each frame counted came with its annotated JPEG."""
    packets: list[Any] = []

    class RecordingHub(pipeline.CountingHub):
        def publish_threadsafe(self, packet: Any) -> None:
            packets.append(packet)
            super().publish_threadsafe(packet)

    monkeypatch.setattr(pipeline, "CountingHub", RecordingHub)

    run = pipeline.run_pipeline("bundled", video, frames=3, imgsz=160, warmup=1, timeout_s=300.0)

    assert run.frames >= 3
    assert packets, "frames came out"
    for packet in packets:
        image = cv2.imdecode(np.frombuffer(packet.jpegs[Variant()], np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == packet.result.frame.image.shape[:2]
