"""Settings that are accepted but cannot apply where they are given are said to be unused, once, at
start: ``half`` on a CPU, ``loop`` on a live source. Silently ignored, they read as working."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

import pytest

from server import streams
from server.config import Settings, StreamConfig
from server.inference.options import InferenceOptions
from server.inference.worker import InferenceWorker
from tests.support.detections import NoDetections, TruthModel
from tests.support.listeners import SilentListener

if TYPE_CHECKING:
    from ultralytics import YOLO


@pytest.mark.parametrize(
    ("half", "said"), [(True, ["half is not used: it needs a CUDA GPU, and the model runs on cpu"]), (False, [])]
)
def test_half_on_a_model_run_on_the_cpu_is_said_to_be_unused(
    half: bool, said: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """As a Triton model's half is: on the CPU it was dropped without a word."""
    caplog.set_level(logging.WARNING, logger="server.inference.worker")
    worker = InferenceWorker(
        "m", lambda _: None, InferenceOptions(device="cpu", half=half), load=lambda _: TruthModel()
    )
    worker.start()
    worker.stop()
    assert [r.getMessage() for r in caplog.records if r.name == "server.inference.worker"] == said


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[streams.StreamManager]:
    model = NoDetections()
    monkeypatch.setattr(
        streams, "InferenceWorker", functools.partial(InferenceWorker, load=lambda _: cast("YOLO", model))
    )
    started = streams.StreamManager(Settings(model="none"), SilentListener())
    started.start()
    yield started
    started.stop()


def test_loop_on_a_live_source_is_said_to_be_unused_once_at_its_start(
    manager: streams.StreamManager, caplog: pytest.LogCaptureFixture
) -> None:
    """``--loop`` with a camera was stored and reported, and nothing looped. A file, and an HTTP URL
    (which may be a video, known only once it opens), are not told."""
    caplog.set_level(logging.WARNING, logger="server.streams")
    manager.add(StreamConfig("cam", "rtsp://admin:hunter2@127.0.0.1:1/live", loop=True))
    manager.add(StreamConfig("demo", "scene:?seed=1", loop=True))
    manager.add(StreamConfig("clip", "/no/such/clip.mp4", loop=True))
    manager.add(StreamConfig("web", "http://127.0.0.1:1/clip.mp4", loop=True))
    manager.add(StreamConfig("still", "scene:?seed=2"))
    assert [r.getMessage() for r in caplog.records if r.name == "server.streams"] == [
        "[cam] loop is not used: rtsp://admin:***@127.0.0.1:1/live is a live source",
        "[demo] loop is not used: scene:?seed=1 is a live source",
    ]
