"""The batched worker with the bundled model: batching never changes what a stream gets."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from ultralytics import YOLO
from ultralytics.engine.predictor import BasePredictor

from server.frames import Frame, FrameResult
from server.inference.models import load_model
from server.scene import Scene
from tests.support.driver import EPOCH, Driver

# The model runs 4 x len(FRAMES) times here: give a busy 2-core machine room beyond the usual limit.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FRAMES = range(30, 100)
SEEDS = {"a": 7, "b": 11}
BOX_TOLERANCE_PX = 0.5  # float noise between batch sizes; a real difference is pixels


@pytest.fixture(scope="module")
def model() -> YOLO:
    return load_model("bundled")


def assert_same(batched: FrameResult, alone: FrameResult) -> None:
    assert [(t.track_id, t.class_name) for t in batched.tracks] == [(t.track_id, t.class_name) for t in alone.tracks]
    for mine, theirs in zip(batched.tracks, alone.tracks, strict=True):
        assert mine.box == pytest.approx(theirs.box, abs=BOX_TOLERANCE_PX)


def test_two_streams_batched_get_exactly_the_tracks_each_gets_alone(model: YOLO) -> None:
    alone: dict[str, list[FrameResult]] = {}
    for stream_id, seed in SEEDS.items():
        with Driver(model) as driver:
            driver.add(stream_id, Scene(seed=seed))
            alone[stream_id] = [driver.step({stream_id: i})[stream_id] for i in FRAMES]
    with Driver(model) as driver:
        for stream_id, seed in SEEDS.items():
            driver.add(stream_id, Scene(seed=seed))
        for n, index in enumerate(FRAMES):
            results = driver.together([driver.frame(stream_id, index) for stream_id in SEEDS])
            assert driver.model.calls[-1][0] == len(SEEDS), "both frames went through one model call"
            for stream_id in SEEDS:
                assert_same(results[stream_id], alone[stream_id][n])
    assert all(sum(len(r.tracks) for r in results) > 50 for results in alone.values())


def test_the_model_is_given_the_colours_the_camera_sent(model: YOLO, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model cannot show a BGR/RGB swap (it is colour-blind on its scenes): look at what it is given.

    Frames are BGR from the decoder on; ultralytics turns a BGR array into the RGB tensor the network
    wants. A red frame must reach the network with its red channel (0) full and its blue one (2) empty.
    """
    tensors: list[torch.Tensor] = []
    preprocess = BasePredictor.preprocess

    def recording(self: BasePredictor, images: Any) -> torch.Tensor:
        tensor = preprocess(self, images)
        tensors.append(tensor.detach().float().cpu())
        return tensor

    monkeypatch.setattr(BasePredictor, "preprocess", recording)
    red = np.zeros((192, 320, 3), np.uint8)
    red[..., 2] = 255  # BGR
    with Driver(model) as driver:
        driver.add("cam", Scene(seed=1))
        driver.put(Frame("cam", 0, EPOCH, 0.0, red))
        driver.wait(1)
    [tensor] = tensors
    red_channel, blue_channel = tensor[0, 0].mean().item(), tensor[0, 2].mean().item()
    assert red_channel > 0.9 and blue_channel < 0.1, (red_channel, blue_channel)
