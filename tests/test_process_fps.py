"""A stream's ``process_fps``: at most that many of its frames a second (of media time) reach the model, the
rest are left out by choice and counted as thinned, never as dropped, and the inference they leave goes to
the other streams; a stream processed at its cap keeps up.

Which frames pass is tested on made-up media times (`FrameCap`), the verdict on counters fed one second at
a time (`StreamPace`); real servers, on models of a known speed that find nothing, count the frames each
stream delivers against their media time, and compare the streams' shares within one run.
"""

from __future__ import annotations

import functools
import threading
import tomllib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from aiohttp.test_utils import TestClient
from ultralytics.engine.results import Results

from server import streams
from server.app import create_app
from server.config import StreamConfig, load_config
from server.config_values import ConfigError
from server.frames import Frame, FrameResult
from server.inference.frame_cap import EARLY_SHARE, FrameCap
from server.inference.models import BUNDLED_MODEL
from server.inference.pace import (
    BEHIND_BELOW_SHARE,
    KEEPS_UP_FROM_SHARE,
    OverloadLog,
    PaceSample,
    PaceVerdict,
    StreamPace,
)
from server.inference.worker import InferenceWorker
from server.options import StreamOptions
from server.scene import Scene
from tests.support.detections import NAMES, TruthModel
from tests.support.driver import Driver
from tests.support.polling import eventually

Start = Callable[..., Awaitable[TestClient]]
ClientFactory = Callable[..., Awaitable[TestClient]]

IMAGE = np.zeros((32, 32, 3), np.uint8)
WINDOW_S = 10
#: The real servers' pace windows, shorter than a node's so the tests are judged within seconds.
QUICK_WINDOW_S = 2.0
INPUT_FPS = 20
SCENE = f"scene:?seed=3&fps={INPUT_FPS}&width=320&height=192"
#: Media seconds of frames counted for a rate: long enough that one frame more or less is a quarter of a
#: frame a second.
COUNTED_S = 4.0


def frame(media_time: float, seq: int = 0, ended: bool = False) -> Frame:
    return Frame("cam", seq, 0.0, media_time, IMAGE, ended=ended)


def admitted(cap: FrameCap, times: list[float], fps: float | None) -> list[float]:
    return [t for i, t in enumerate(times) if cap.admits(frame(t, i), fps)]


# -- which frames pass ------------------------------------------------------------------------------


@pytest.mark.parametrize(("input_fps", "process_fps"), [(20, 5), (30, 5), (30, 7), (25, 0.5), (10, 7)])
def test_a_cap_lets_through_that_many_frames_a_second_of_media_time(input_fps: int, process_fps: float) -> None:
    # Given 10 s of a camera's frames and a cap under its rate
    times = [i / input_fps for i in range(10 * input_fps)]
    cap = FrameCap()
    # Then the cap's number of frames a second pass, never two nearer than the tick they are due for
    passed = admitted(cap, times, process_fps)
    assert abs(len(passed) - 10 * process_fps) <= 1
    assert min(np.diff(passed)) >= (1 - EARLY_SHARE) / process_fps - 1e-9
    # And the others are counted as thinned
    assert cap.thinned == len(times) - len(passed)


def test_a_cap_at_the_cameras_own_rate_keeps_every_frame_however_its_timestamps_jitter() -> None:
    # A camera whose frames come a fifth of an interval early or late (a webcam stamped by the clock)
    times = [i / 20 + (0.01 if i % 3 else -0.01) for i in range(200)]
    cap = FrameCap()
    assert admitted(cap, times, 20) == times
    assert cap.thinned == 0


def test_without_a_cap_every_frame_passes() -> None:
    times = [i / 30 for i in range(90)]
    cap = FrameCap()
    assert admitted(cap, times, None) == times
    assert cap.thinned == 0


def test_after_a_gap_in_the_input_the_cap_starts_from_the_first_frame_back() -> None:
    cap = FrameCap()
    admitted(cap, [i / 20 for i in range(40)], 5)
    # When the camera is back after 3 s away, its first frame passes and the cap holds from it
    back = [5.0 + i / 20 for i in range(40)]
    passed = admitted(cap, back, 5)
    assert passed[0] == back[0]
    assert abs(len(passed) - 2 * 5) <= 1


def test_a_medias_end_marker_always_passes() -> None:
    """It ends every track and zone visit (`Frame.ended`): thinned, a file's last objects stayed in their zones."""
    cap = FrameCap()
    assert cap.admits(frame(1.0), 1)
    assert cap.admits(frame(1.05, ended=True), 1)
    assert cap.thinned == 0


def test_a_new_cap_counts_from_the_next_frame() -> None:
    cap = FrameCap()
    assert cap.admits(frame(0.0), 0.5)
    assert not cap.admits(frame(0.1), 0.5), "due again at 2 s"
    # When the cap is raised, the next frame is not held to the old cap's tick
    assert cap.admits(frame(0.2), 10)
    assert not cap.admits(frame(0.22), 10)
    assert cap.admits(frame(0.3), 10)


def test_a_stream_capped_under_its_sources_rate_is_tracked_at_its_cap_from_its_first_frame() -> None:
    """The tracker's first guess of the rate is the cap, not the camera's 30 fps: with the camera's, a
    lost track would be kept for a sixth of its time until the rate measured caught up."""
    with Driver(TruthModel()) as driver:
        driver.add("cam", Scene(seed=1, fps=30), StreamOptions(process_fps=5.0))
        driver.step({"cam": 0})
        driver.step({"cam": 6})  # a fifth of a second later, as the cap lets frames through
        stats = driver.worker.stats("cam")
    assert stats is not None and stats.processing_fps == pytest.approx(5.0)


# -- the verdict ------------------------------------------------------------------------------------


class Counters:
    """One stream's counters, fed to ``pace`` once a (made-up) second at the rates given."""

    def __init__(self, pace: StreamPace) -> None:
        self.pace = pace
        self.at = 0.0
        self.read = self.dropped = self.thinned = self.processed = 0

    def run(self, seconds: int, input_fps: int, dropped: int, thinned: int, cap: float | None) -> list[PaceVerdict]:
        """``seconds`` of ``input_fps`` frames, ``dropped`` and ``thinned`` of them a second, the rest processed."""
        verdicts = []
        for _ in range(seconds):
            self.at += 1.0
            self.read += input_fps
            self.dropped += dropped
            self.thinned += thinned
            self.processed += input_fps - dropped - thinned
            sample = PaceSample(self.at, True, self.read, self.dropped, self.processed, self.thinned, cap)
            verdicts.append(self.pace.update(sample))
        return verdicts


@pytest.fixture
def counters() -> Counters:
    return Counters(StreamPace(window_s=WINDOW_S))


def test_a_stream_processed_at_its_cap_is_not_behind_though_most_of_its_frames_never_reach_the_model(
    counters: Counters,
) -> None:
    # Given a camera of 20 fps capped at 5, on a node busy enough that 10 of its frames a second are
    # replaced before inference takes them, and 5 of those taken are not due
    verdicts = counters.run(3 * WINDOW_S, input_fps=20, dropped=10, thinned=5, cap=5.0)
    # Then it is never behind: it gets the 5 frames a second it asks for
    assert not any(v.behind for v in verdicts)
    assert verdicts[-1].processed_share == 1.0
    assert (verdicts[-1].processed_fps, verdicts[-1].wanted_fps) == (pytest.approx(5.0), 5.0)


def test_a_capped_stream_given_under_half_its_cap_is_behind(counters: Counters) -> None:
    # Given a camera of 20 fps capped at 10, of which the node processes 3 a second
    [*_, verdict] = counters.run(WINDOW_S + 1, input_fps=20, dropped=17, thinned=0, cap=10.0)
    assert verdict.behind and verdict.processed_share == pytest.approx(0.3)
    assert verdict.wanted_fps == 10.0


def test_the_log_names_a_capped_streams_rate_against_its_cap(caplog: pytest.LogCaptureFixture) -> None:
    log = OverloadLog(interval_s=600.0)
    log.update([("drive", PaceVerdict(True, 0.3, 20.0, 3.0, 10.0))], 1.0, now=0.0)
    assert "[drive] 3.0 of 10.0 fps" in caplog.text


def test_a_stream_whose_cap_changes_is_judged_afresh_by_the_new_one(counters: Counters) -> None:
    assert counters.run(WINDOW_S + 1, input_fps=20, dropped=17, thinned=0, cap=None)[-1].behind
    # When it is capped under what the node gives it, it is not judged by the window before
    afresh = counters.run(WINDOW_S, input_fps=20, dropped=12, thinned=5, cap=3.0)
    assert afresh == [PaceVerdict()] * WINDOW_S
    [verdict] = counters.run(1, input_fps=20, dropped=12, thinned=5, cap=3.0)
    assert not verdict.behind and verdict.processed_share == 1.0


# -- the option -------------------------------------------------------------------------------------


def test_process_fps_is_a_number_of_frames_a_second_or_all() -> None:
    assert StreamOptions().process_fps is None
    assert StreamOptions.from_mapping({"process_fps": 5}).process_fps == 5.0
    assert StreamOptions.from_mapping({"process_fps": 0.5}).process_fps == 0.5
    capped = StreamOptions.from_mapping({"process_fps": 5})
    assert StreamOptions.from_mapping({"process_fps": "all"}, capped).process_fps is None
    assert StreamOptions.from_mapping({"process_fps": None}, capped).process_fps is None
    assert StreamOptions.from_mapping({"conf": 0.4}, capped).process_fps == 5.0, "kept from the base"
    assert capped.to_json()["process_fps"] == 5.0
    assert StreamOptions.from_mapping(capped.to_json()) == capped


@pytest.mark.parametrize("value", [0.1, 1000])
def test_process_fps_takes_both_ends_of_its_range(value: float) -> None:
    assert StreamOptions.from_mapping({"process_fps": value}).process_fps == value


@pytest.mark.parametrize("value", [0, -1, 0.05, 1001, True, "5", "fast", float("nan"), float("inf"), [5]])
def test_a_bad_process_fps_is_refused_naming_it(value: object) -> None:
    with pytest.raises(ValueError, match=r"^process_fps: expected frames a second from 0\.1 to 1000, or 'all'"):
        StreamOptions.from_mapping({"process_fps": value})


def test_a_config_file_caps_its_streams_and_a_stream_may_take_every_frame(tmp_path: Path) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text(
        '[stream_defaults]\nprocess_fps = 5\n\n[[streams]]\nid = "drive"\nuri = "scene:"\n\n'
        '[[streams]]\nid = "door"\nuri = "scene:?seed=2"\nprocess_fps = "all"\n'
    )
    settings = load_config(path)
    assert {s.stream_id: s.options.process_fps for s in settings.streams} == {"drive": 5.0, "door": None}
    path.write_text('[[streams]]\nid = "drive"\nuri = "scene:"\nprocess_fps = 0\n')
    with pytest.raises(
        ConfigError, match=r"^segcast\.toml: streams\[0\] \(id 'drive'\)\.process_fps: expected frames a second"
    ):
        load_config(path)


# -- real servers -----------------------------------------------------------------------------------


class TimedModel:
    """Stands in for a model that takes ``per_call_s`` a batch and ``per_image_s`` an image, and finds nothing."""

    names = NAMES

    def __init__(self) -> None:
        self.overrides: dict[str, Any] = {"imgsz": 320}
        self.per_call_s = 0.0
        self.per_image_s = 0.0
        self.released = threading.Event()

    def predict(self, images: list[np.ndarray], **kwargs: Any) -> list[Results]:
        self.released.wait(self.per_call_s + self.per_image_s * len(images))  # the model's own time
        return [Results(image, "", NAMES, boxes=torch.zeros((0, 6))) for image in images]


class Delivered:
    """The media time of every frame the pipeline delivers, by stream (recorded on the inference thread)."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}

    def record(self, result: FrameResult) -> None:
        if not result.frame.ended:  # a media's end marker repeats its last frame
            self.times.setdefault(result.frame.stream_id, []).append(result.frame.media_time)

    def latest(self, stream_id: str) -> float:
        return self.times[stream_id][-1]

    async def between(self, stream_id: str, start: float, end: float) -> list[float] | None:
        """The media times delivered in ``[start, end)``, once a frame from ``end`` on was delivered."""
        times = list(self.times.get(stream_id, ()))
        if not times or times[-1] < end:
            return None
        return [t for t in times if start <= t < end]


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> Iterator[TimedModel]:
    """The app's model, timed as each test sets it; its pace judged over `QUICK_WINDOW_S`."""
    timed = TimedModel()
    monkeypatch.setattr(streams, "StreamPace", functools.partial(StreamPace, window_s=QUICK_WINDOW_S))
    yield timed
    timed.released.set()  # the server's shutdown waits for no slow batch


@pytest.fixture
def delivered(monkeypatch: pytest.MonkeyPatch, model: TimedModel) -> Delivered:
    """What the pipeline delivers, with `model` as the app's model."""
    recorder = Delivered()

    def worker(spec: str, on_result: Callable[[FrameResult], None], *args: Any, **kwargs: Any) -> InferenceWorker:
        def recorded(result: FrameResult) -> None:
            recorder.record(result)
            on_result(result)

        return InferenceWorker(spec, recorded, *args, load=lambda _: model, **kwargs)

    monkeypatch.setattr(streams, "InferenceWorker", worker)
    return recorder


async def stream(client: TestClient, stream_id: str) -> dict[str, Any]:
    body: dict[str, Any] = await (await client.get(f"/api/streams/{stream_id}")).json()
    return body


async def metric_samples(client: TestClient) -> dict[str, float]:
    text = await (await client.get("/metrics")).text()
    lines = (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {name: float(value) for name, value in lines}


def capped(stream_id: str, process_fps: float | None) -> StreamConfig:
    return StreamConfig(stream_id, SCENE, options=StreamOptions(process_fps=process_fps))


async def judged(client: TestClient, stream_id: str) -> dict[str, Any]:
    async def verdict() -> dict[str, Any] | None:
        found = await stream(client, stream_id)
        return found if found["processed_share"] is not None else None

    return await eventually(verdict, 60, f"{stream_id}'s pace to be judged")


async def test_a_capped_stream_is_processed_at_its_cap_and_counts_what_it_left_out(
    start_server: Start, delivered: Delivered
) -> None:
    # Given a camera of 20 fps capped at 5 on a model that keeps up with every frame
    client = await start_server(capped("drive", 5.0))
    assert (await stream(client, "drive"))["options"]["process_fps"] == 5.0

    # Then 5 of its frames a second of media time are processed
    counted = await eventually(lambda: delivered.between("drive", 1.0, 1.0 + COUNTED_S), 60, "4 s of frames")
    assert abs(len(counted) - 5 * COUNTED_S) <= 1, counted

    # And it keeps up, and says how many frames it left out, apart from those dropped
    drive = await judged(client, "drive")
    assert drive["behind"] is False and drive["processed_share"] >= KEEPS_UP_FROM_SHARE
    assert drive["frames_thinned"] > drive["frames_processed"] > 0
    assert (await metric_samples(client))['segcast_frames_thinned_total{stream="drive"}'] > 0


async def test_a_file_read_as_fast_as_it_is_inferred_is_sampled_at_its_cap_through_its_video(
    start_server: Start, delivered: Delivered, scene_video: Path
) -> None:
    # Given a 20 s video of 15 fps read with #rate=max, capped at 5 frames a second
    file = StreamConfig("file", f"{scene_video}#rate=max", options=StreamOptions(process_fps=5.0))
    client = await start_server(file)

    async def ended() -> dict[str, Any] | None:
        found = await stream(client, "file")
        return found if found["state"] == "ended" else None

    # Then it plays to its end, 5 of its frames processed for each second of video and the others thinned
    done = await eventually(ended, 120, "the file to end")
    times = delivered.times["file"]
    assert times == sorted(times) and times[-1] > 19.0
    assert abs(len(times) - 5 * 20) <= 1, len(times)
    assert done["frames_thinned"] == done["frames_read"] - len(times)
    assert done["frames_dropped"] == 0

    # When its cap changes once it ended, it is sampled again through its video at the new rate
    response = await client.patch("/api/streams/file", json={"process_fps": 2})
    assert response.status == 200

    async def ended_again() -> dict[str, Any] | None:
        found = await stream(client, "file")
        return found if found["state"] == "ended" and abs(found["frames_processed"] - 2 * 20) <= 1 else None

    await eventually(ended_again, 120, "the file to be played again at 2 frames a second, to its end")


async def test_the_cap_changes_live_and_a_bad_one_is_refused_naming_it(
    start_server: Start, delivered: Delivered
) -> None:
    client = await start_server(capped("drive", 5.0))
    await eventually(lambda: delivered.between("drive", 0.0, 1.0), 60, "the first second of frames")

    # When the cap is lowered to 2 through the API
    read_before = (await stream(client, "drive"))["frames_read"]
    response = await client.patch("/api/streams/drive", json={"process_fps": 2})
    assert response.status == 200, await response.text()
    assert (await response.json())["options"]["process_fps"] == 2.0
    changed_at = delivered.latest("drive")

    # Then 2 frames a second are processed from then on, the camera going on: not restarted, its media
    # time runs on (a restarted scene starts from 0 again)
    start = changed_at + 1.0
    counted = await eventually(lambda: delivered.between("drive", start, start + COUNTED_S), 60, "4 s of frames")
    assert abs(len(counted) - 2 * COUNTED_S) <= 1, counted
    assert delivered.times["drive"] == sorted(delivered.times["drive"])
    assert (await stream(client, "drive"))["frames_read"] > read_before

    # And a cap it cannot take is a 400 naming it, and changes nothing
    for bad in (0, "fast", -2):
        response = await client.patch("/api/streams/drive", json={"process_fps": bad})
        assert response.status == 400
        assert (await response.json())["error"].startswith("body.process_fps: expected frames a second")
    assert (await stream(client, "drive"))["options"]["process_fps"] == 2.0

    # And null takes every frame again
    response = await client.patch("/api/streams/drive", json={"options": {"process_fps": None}})
    assert (await response.json())["options"]["process_fps"] is None


async def test_a_stream_at_its_cap_on_a_busy_node_is_not_behind(
    start_server: Start, model: TimedModel, delivered: Delivered
) -> None:
    # Given a model of about 6 batches a second, and a camera of 20 fps capped at 5
    model.per_call_s = 0.15
    client = await start_server(capped("drive", 5.0))

    drive = await judged(client, "drive")
    # Then under half of its input frames reach the model, and the node is too busy to take each one...
    assert drive["frames_processed"] < BEHIND_BELOW_SHARE * drive["frames_read"]
    assert drive["frames_dropped"] > 0
    # ...yet it gets the frames its cap asks for, so it is not behind
    assert drive["behind"] is False
    read = drive["frames_read"]

    async def judged_later() -> dict[str, Any] | None:
        found = await stream(client, "drive")
        return found if found["frames_read"] >= read + 2 * QUICK_WINDOW_S * INPUT_FPS else None

    assert (await eventually(judged_later, 60, "a later verdict"))["behind"] is False


async def test_the_inference_a_capped_stream_leaves_goes_to_the_other_streams(
    start_server: Start, model: TimedModel, delivered: Delivered
) -> None:
    # Given two cameras of 20 fps on a model that takes 0.1 s an image: both uncapped, they share it
    model.per_image_s = 0.1
    client = await start_server(capped("drive", None), capped("door", None))

    async def door_share(frames: int) -> float:
        """The share of door's input frames processed over its next ``frames`` frames read."""
        before = await stream(client, "door")

        async def counted() -> dict[str, Any] | None:
            found = await stream(client, "door")
            return found if found["frames_read"] >= before["frames_read"] + frames else None

        after = await eventually(counted, 120, f"{frames} frames of door")
        processed = after["frames_processed"] - before["frames_processed"]
        return float(processed / (after["frames_read"] - before["frames_read"]))

    await eventually(lambda: delivered.between("door", 0.0, 1.0), 60, "the first second of frames")
    shared = await door_share(3 * INPUT_FPS)

    # When the driveway camera is capped at 1 frame a second
    response = await client.patch("/api/streams/drive", json={"process_fps": 1})
    assert response.status == 200, await response.text()
    await door_share(INPUT_FPS)  # the change settles

    # Then the door camera gets a larger share of its frames processed than while they shared alike
    alone = await door_share(3 * INPUT_FPS)
    assert alone > 1.4 * shared, (shared, alone)


async def test_the_cap_is_saved_with_persist_and_read_back(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    # Given a config file that caps every stream at 5 but one at 2
    path = tmp_path / "segcast.toml"
    path.write_text(
        "[stream_defaults]\nprocess_fps = 5\n\n"
        '[[streams]]\nid = "drive"\nuri = "scene:?fps=10&width=320&height=192"\n\n'
        '[[streams]]\nid = "door"\nuri = "scene:?seed=2&fps=10&width=320&height=192"\nprocess_fps = 2\n'
    )
    client = await aiohttp_client(create_app(replace(load_config(path), model=str(BUNDLED_MODEL))))
    assert (await stream(client, "drive"))["options"]["process_fps"] == 5.0
    assert (await stream(client, "door"))["options"]["process_fps"] == 2.0

    # When one is told to take every frame and the other half a frame a second, both saved
    response = await client.patch("/api/streams/drive?persist=1", json={"process_fps": None})
    assert response.status == 200, await response.text()
    response = await client.patch("/api/streams/door?persist=1", json={"process_fps": 0.5})
    assert response.status == 200, await response.text()

    # Then the file says so (every frame as "all", TOML having no null), and reads back as they run
    saved = tomllib.loads(path.read_text())
    assert saved["stream_defaults"]["process_fps"] == 5
    assert [s.get("process_fps") for s in saved["streams"]] == ["all", 0.5]
    again = {s.stream_id: s.options.process_fps for s in load_config(path).streams}
    assert again == {"drive": None, "door": 0.5}
