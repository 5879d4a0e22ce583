"""The batched worker with the bundled model: batching never changes what a stream gets."""

from __future__ import annotations

import pytest
from ultralytics import YOLO

from server.frames import FrameResult
from server.models import load_model
from server.scene import Scene
from tests.support.driver import Driver

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
