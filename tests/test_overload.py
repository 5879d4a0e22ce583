"""A node short of inference says so: per stream in the API, for the node in /metrics and /healthz, and
once in the log, with what to do.

The verdict's rules are tested on counters fed one second at a time (`StreamPace` takes them with
their time), each stream's last verdict through the gaps it is not judged in (`LastVerdicts`), the
log's throttle and the busy share on a clock of the test's own; real servers, whose model (local, or a
Triton's that goes out of reach) takes a quarter of a second a batch, are judged as a user would see
them: falling behind, restarted while behind, and with inference unavailable.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from aiohttp.test_utils import TestClient
from ultralytics.engine.results import Results

from server import streams
from server.config import StreamConfig
from server.inference import worker
from server.inference.detections import Detections
from server.inference.models import InferenceStatus, InferenceUnavailable
from server.inference.pace import (
    BEHIND_BELOW_SHARE,
    KEEPS_UP_FROM_SHARE,
    PAUSED_AFTER_INTERVALS,
    PAUSED_AFTER_S,
    BusyShare,
    LastVerdicts,
    OverloadLog,
    PaceSample,
    PaceVerdict,
    StreamPace,
)
from server.inference.worker import InferenceWorker
from server.triton.model import PendingDetections, RequestTiming, TritonModel
from server.triton.served_model import ServedModel
from server.triton.transport import TritonEndpoint
from tests.support.components import require_component
from tests.support.detections import NAMES
from tests.support.polling import eventually

Start = Callable[..., Awaitable[TestClient]]

WINDOW_S = 10
#: The real server's windows, shorter than a node's so the test judges within seconds.
QUICK_WINDOW_S = 2.0
#: A slow model's time a batch: about 4 batches a second, against a scene's 30 frames.
SLOW_PREDICT_S = 0.25
BUSY_SCENE = "scene:?seed=3&fps=30&width=320&height=192"
PACE_LOGGER = "server.inference.pace"
READINGS_LOGGER = "server.http.readings"
#: A verdict of behind held for the metric while a stream is not judged, in the real servers: all the test.
HELD_FOR_THE_TEST_S = 3600.0
TRITON_DOWN = "Triton at 127.0.0.1:1 unreachable: failed to connect to all addresses"
ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "segcast-alerts.yml"
SCALING_DOC = ROOT / "docs" / "scaling.md"
PROTOCOL_DOC = ROOT / "docs" / "protocol.md"
OPENAPI_DOC = ROOT / "docs" / "openapi.yaml"


class Counters:
    """One stream's counters, fed to ``pace`` once a (made-up) second at the rates given."""

    def __init__(self, pace: StreamPace) -> None:
        self.pace = pace
        self.at = 0.0
        self.read = self.dropped = self.processed = 0

    def run(self, seconds: int, input_fps: int, processed_fps: int, judged: bool = True) -> list[PaceVerdict]:
        verdicts = []
        for _ in range(seconds):
            self.at += 1.0
            self.read += input_fps
            self.dropped += input_fps - processed_fps
            self.processed += processed_fps
            sample = PaceSample(self.at, judged, self.read, self.dropped, self.processed)
            verdicts.append(self.pace.update(sample))
        return verdicts


@pytest.fixture
def counters() -> Counters:
    return Counters(StreamPace(window_s=WINDOW_S))


# -- the verdict's rules ---------------------------------------------------------------------------


def test_a_stream_skipping_most_of_its_frames_is_behind_once_a_whole_window_was_seen(counters: Counters) -> None:
    # Given a camera of 30 fps whose inference takes 5 of its frames a second from the start
    first = counters.run(WINDOW_S, input_fps=30, processed_fps=5)
    # Then nothing is said of it before a whole window (a node starting, a camera just up)
    assert first == [PaceVerdict()] * WINDOW_S
    # And then it is behind, with the share of its frames inferred and the window's rates
    [verdict] = counters.run(1, input_fps=30, processed_fps=5)
    assert verdict.behind and verdict.processed_share == pytest.approx(5 / 30)
    assert (verdict.input_fps, verdict.processed_fps) == (pytest.approx(30.0), pytest.approx(5.0))
    assert verdict.to_json() == {"behind": True, "processed_share": 0.167}


def test_a_stream_that_keeps_up_is_never_behind(counters: Counters) -> None:
    verdicts = counters.run(3 * WINDOW_S, input_fps=30, processed_fps=30)
    assert not any(v.behind for v in verdicts)
    assert verdicts[-1].processed_share == 1.0


def test_the_verdict_holds_between_its_two_thresholds_so_it_does_not_flicker(counters: Counters) -> None:
    between = round(30 * (BEHIND_BELOW_SHARE + KEEPS_UP_FROM_SHARE) / 2)  # 19 of 30: neither side's line
    assert BEHIND_BELOW_SHARE < between / 30 < KEEPS_UP_FROM_SHARE
    counters.run(WINDOW_S + 1, input_fps=30, processed_fps=5)
    # Behind, it stays behind while the share is between the lines...
    assert all(v.behind for v in counters.run(2 * WINDOW_S, input_fps=30, processed_fps=between))
    # ...keeps up again once it passes the upper one, and goes behind again only below the lower one
    assert not counters.run(WINDOW_S, input_fps=30, processed_fps=25)[-1].behind
    assert not any(v.behind for v in counters.run(2 * WINDOW_S, input_fps=30, processed_fps=between))
    assert counters.run(WINDOW_S, input_fps=30, processed_fps=10)[-1].behind


def test_a_paused_input_is_not_behind_and_is_judged_afresh_when_frames_come_again(counters: Counters) -> None:
    assert counters.run(WINDOW_S + 1, input_fps=30, processed_fps=5)[-1].behind
    # When the camera stops sending (stalled, not yet given up on), it is not behind once paused
    paused = counters.run(int(PAUSED_AFTER_S), input_fps=0, processed_fps=0)
    assert paused[-1] == PaceVerdict()
    # And once its frames come again, it has a whole window before it is judged again
    assert counters.run(WINDOW_S, input_fps=30, processed_fps=5) == [PaceVerdict()] * WINDOW_S
    assert counters.run(1, input_fps=30, processed_fps=5)[-1].behind


def test_a_stream_not_judged_is_never_behind_and_has_no_share(counters: Counters) -> None:
    """Not live (ended, reconnecting), inference unavailable, or a #rate=max file: `PaceSample.judged`
    false, as `StreamManager.check_pace` makes it (the real server below has a #rate=max file)."""
    assert counters.run(WINDOW_S + 1, input_fps=30, processed_fps=5)[-1].behind
    assert counters.run(3 * WINDOW_S, input_fps=30, processed_fps=0, judged=False) == [PaceVerdict()] * 3 * WINDOW_S
    assert counters.run(WINDOW_S, input_fps=30, processed_fps=5) == [PaceVerdict()] * WINDOW_S  # judged afresh


def feed_one_frame_every(pace: StreamPace, interval_s: int, seconds: int) -> list[PaceVerdict]:
    """A slow source (a snapshot-like camera) sampled once a second: one frame every ``interval_s``
    seconds, each processed; the verdict of each second."""
    verdicts = []
    for at in range(1, seconds + 1):
        frames = at // interval_s + 1
        verdicts.append(pace.update(PaceSample(float(at), True, frames, 0, frames)))
    return verdicts


def test_a_source_of_one_frame_every_five_seconds_is_judged_like_any_other(counters: Counters) -> None:
    # Given a camera that sends a frame every 5 s (0.2 fps), each processed
    verdicts = feed_one_frame_every(counters.pace, interval_s=5, seconds=4 * WINDOW_S)
    # Then it is not paused between its frames: once a whole window was seen, it is judged, and keeps up
    assert verdicts[-1].processed_share == 1.0 and not verdicts[-1].behind
    assert all(v.judged for v in verdicts[-WINDOW_S:])


def test_a_slow_source_is_paused_after_three_of_its_own_frame_intervals() -> None:
    pace = StreamPace(window_s=WINDOW_S)
    # Given a camera of a frame every 5 s, judged, whose last frame comes at 40 s
    feed_one_frame_every(pace, interval_s=5, seconds=40)
    read = 9
    # Then it is still judged 14 s after its last frame (under three of its intervals)...
    still = [pace.update(PaceSample(float(at), True, read, 0, read)) for at in range(41, 55)]
    assert all(v.judged for v in still)
    # ...and paused from 15 s: not judged
    assert pace.update(PaceSample(55.0, True, read, 0, read)) == PaceVerdict()


# -- each stream's last verdict, through the gaps it is not judged in -----------------------------

SLOW_CAM = PaceVerdict(True, 0.155, 29.0, 4.5)
UNJUDGED = PaceVerdict()  # its first window, paused, not live, inference unavailable
KEEPS_UP = PaceVerdict(False, 0.95, 29.0, 27.5)


def test_a_stream_not_judged_for_a_while_neither_ends_nor_starts_the_nodes_falling_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=PACE_LOGGER)
    last, log = LastVerdicts(), OverloadLog(interval_s=600.0)

    def judge(now: float, **verdicts: PaceVerdict) -> None:
        log.update(last.update(verdicts, now), 0.99, now)

    # Given a camera behind, and one that keeps up
    judge(0.0, cam=SLOW_CAM, door=KEEPS_UP)
    # When the camera is not judged for longer than the log's interval (restarting, stalled, ended)
    for second in range(1, 900):
        judge(float(second), cam=UNJUDGED, door=KEEPS_UP)
    # Then the log never said the node keeps up: nothing was seen of the camera's pace meanwhile
    [warning] = pace_lines(caplog)
    assert warning.levelno == logging.WARNING and "[cam]" in warning.getMessage()
    # And once the camera is seen keeping up, it says so, once
    judge(900.0, cam=KEEPS_UP, door=KEEPS_UP)
    judge(901.0, cam=UNJUDGED, door=UNJUDGED)
    [_, info] = pace_lines(caplog)
    assert info.levelno == logging.INFO and "keeps up" in info.getMessage()
    # And a stream not judged starts no episode either
    judge(902.0, cam=UNJUDGED, door=UNJUDGED)
    assert len(pace_lines(caplog)) == 2


def test_a_stream_removed_ends_its_part_in_the_nodes_falling_behind(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=PACE_LOGGER)
    last, log = LastVerdicts(), OverloadLog(interval_s=600.0)
    log.update(last.update({"cam": SLOW_CAM, "door": KEEPS_UP}, 0.0), 0.99, 0.0)
    last.forget("cam")
    log.update(last.update({"door": KEEPS_UP}, 1.0), 0.5, 1.0)
    assert [r.levelno for r in pace_lines(caplog)] == [logging.WARNING, logging.INFO]
    # And a stream added again under its id is a new one: behind only once judged so
    assert last.update({"cam": UNJUDGED}, 2.0) == []


def test_a_verdict_of_behind_holds_for_the_metric_a_short_while_the_stream_is_not_judged() -> None:
    last = LastVerdicts(held_s=60.0)
    last.update({"cam": SLOW_CAM, "door": KEEPS_UP}, 10.0)
    assert last.held_behind(10.0) == {"cam"}
    # Not judged (a restart, a stall), it still counts as behind for up to held_s after its last verdict...
    last.update({"cam": UNJUDGED, "door": UNJUDGED}, 69.0)
    assert last.held_behind(70.0) == {"cam"}
    # ...not after (a stream that ended or failed is not counted behind for good)
    assert last.held_behind(71.0) == frozenset()
    # And seen keeping up, at once
    last.update({"cam": SLOW_CAM}, 72.0)
    last.update({"cam": KEEPS_UP}, 73.0)
    assert last.held_behind(73.0) == frozenset()


# -- the log ---------------------------------------------------------------------------------------


def pace_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == PACE_LOGGER]


def test_the_log_warns_once_as_the_node_falls_behind_and_says_once_that_it_keeps_up_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=PACE_LOGGER)
    log = OverloadLog(interval_s=600.0)
    log.update([], 0.2, now=0.0)
    assert pace_lines(caplog) == []
    for second in range(1, 120):
        log.update([("cam", SLOW_CAM), ("door", PaceVerdict(True, 0.3, 15.0, 4.5))], 0.994, now=float(second))
    log.update([], 0.5, now=120.0)
    log.update([], 0.5, now=121.0)
    [warning, info] = pace_lines(caplog)
    assert warning.levelno == logging.WARNING
    told = warning.getMessage()
    assert "[cam] 4.5 of 29.0 fps, [door] 4.5 of 15.0 fps" in told and "busy 99%" in told
    assert "imgsz" in told and "fewer cameras" in told and "another node" in told, "it says what to do"
    assert info.levelno == logging.INFO and "keeps up" in info.getMessage()


def test_a_node_on_the_edge_writes_a_few_lines_an_hour_and_no_episode_in_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=PACE_LOGGER)
    log = OverloadLog(interval_s=600.0)
    episodes = 180  # behind for 10 s every 20 s, for an hour
    for episode in range(episodes):
        log.update([("cam", SLOW_CAM)], 1.0, now=20.0 * episode)
        log.update([], 0.5, now=20.0 * episode + 10.0)
    log.update([], 0.5, now=3600.0 + 600.0)  # the last window over

    warnings = [r.getMessage() for r in pace_lines(caplog) if r.levelno == logging.WARNING]
    assert len(warnings) <= 3600 // 600 + 2
    told = 0
    for line in warnings:
        more = re.search(r"fell behind (\d+) times? more", line)
        brief = re.search(r"fell behind the cameras (\d+) times?", line)
        told += int(brief[1]) if brief else 1 + (int(more[1]) if more else 0)
    assert told == episodes


def test_falling_behind_again_for_a_minute_is_told_though_the_last_warning_was_minutes_ago(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A node warned, kept up 10 s later ("keeps up with the cameras again"), then fell behind for minutes:
    inside the 10-minute quiet window the log said nothing, its last word "keeps up" while all its streams
    were behind. An episode that lasts a minute is told then; one shorter than that stays counted."""
    caplog.set_level(logging.INFO, logger=PACE_LOGGER)
    log = OverloadLog(interval_s=600.0)
    log.update([("cam", SLOW_CAM)], 1.0, now=0.0)
    log.update([], 0.5, now=10.0)
    for second in range(20, 80):  # behind again from 20 s: 59 s so far
        log.update([("cam", SLOW_CAM)], 1.0, now=float(second))
    assert [r.levelno for r in pace_lines(caplog)] == [logging.WARNING, logging.INFO]
    log.update([("cam", SLOW_CAM)], 1.0, now=80.0)
    log.update([("cam", SLOW_CAM)], 1.0, now=81.0)
    log.update([], 0.5, now=90.0)
    lines = pace_lines(caplog)
    assert [r.levelno for r in lines] == [logging.WARNING, logging.INFO, logging.WARNING, logging.INFO]
    assert "[cam] 4.5 of 29.0 fps" in lines[2].getMessage() and "more since" not in lines[2].getMessage()


def test_episodes_just_over_a_minute_still_write_a_few_lines_an_hour_and_say_how_long_they_lasted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Behind 61 s, keeping up 2 s, for an hour: each episode was told as lasting, 58 warnings an hour. At most
    one lasting episode is told out of turn per quiet window; the count line says how long the longest lasted."""
    caplog.set_level(logging.INFO, logger=PACE_LOGGER)
    log = OverloadLog(interval_s=600.0)
    now = 0.0
    while now < 3600.0:
        for second in range(62):
            log.update([("cam", SLOW_CAM)], 1.0, now=now + second)
        log.update([], 0.5, now=now + 61.0 + 1.0 / 3)
        now += 63.0
    log.update([], 0.5, now=now + 600.0)
    warnings = [r.getMessage() for r in pace_lines(caplog) if r.levelno == logging.WARNING]
    assert len(warnings) <= 2 * (3600 // 600) + 2, len(warnings)
    briefs = [line for line in warnings if "the longest for" in line]
    assert briefs and all("the longest for 61 s" in line for line in briefs), briefs


# -- the inference thread's busy share -------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_busy_share_is_the_time_spent_outside_waits_for_work() -> None:
    clock = Clock()
    busy = BusyShare(window_s=10.0, clock=clock)
    assert busy.share() == 0.0, "nothing before its first wait (a model still loading)"
    with busy.waiting():
        clock.now = 1.0
    clock.now = 4.0  # a batch of 3 s
    with busy.waiting():
        clock.now = 5.0
    assert busy.share() == pytest.approx(3 / 5)
    clock.now = 25.0  # a batch of 20 s, still running: busy all the window
    assert busy.share() == 1.0
    with busy.waiting():
        clock.now = 30.0  # waiting for 5 s of the last 10, and still
        assert busy.share() == pytest.approx(0.5)


# -- a real server ---------------------------------------------------------------------------------


class SlowModel:
    """Stands in for a model that takes `SLOW_PREDICT_S` a batch, and finds nothing, until ``fast`` is set."""

    names = NAMES

    def __init__(self) -> None:
        self.overrides: dict[str, Any] = {"imgsz": 320}
        self.fast = threading.Event()

    def predict(self, images: list[np.ndarray], **kwargs: Any) -> list[Results]:
        self.fast.wait(SLOW_PREDICT_S)  # the model's own time, not the test waiting
        return [Results(image, "", NAMES, boxes=torch.zeros((0, 6))) for image in images]


class SlowTriton(TritonModel):
    """A model on a Triton server that answers in `SLOW_PREDICT_S` a batch, finding nothing, until ``fast``
    is set; while ``down`` is set, it is out of reach (inference unavailable) and every request fails."""

    def __init__(self) -> None:
        super().__init__(TritonEndpoint("grpc", "127.0.0.1:1", "m"), "grpc://test/m")
        self._served = ServedModel(NAMES, "detect", 320, 32, "images", np.dtype(np.uint8), None, ("o0",), 8, False)
        self._described = True
        self.fast = threading.Event()
        self.down = threading.Event()

    @property
    def status(self) -> InferenceStatus:
        return InferenceStatus(available=False, error=TRITON_DOWN) if self.down.is_set() else InferenceStatus(True)

    def submit(self, images: list[np.ndarray], **options: Any) -> PendingDetections:
        if self.down.is_set():
            raise InferenceUnavailable(TRITON_DOWN)
        self.fast.wait(SLOW_PREDICT_S)  # the server's own time, not the test waiting
        answer: Future[list[Any]] = Future()
        answer.set_result([])
        options["on_answer"]()
        nothing = np.zeros((0, 6), np.float32)
        return PendingDetections(self, answer, lambda _: [Detections(nothing) for _ in images], RequestTiming())

    def probe(self, on_answer: Callable[[], None]) -> None:
        """Never asked: the scene's frames keep it busy."""


@pytest.fixture
def quick_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pace judged over `QUICK_WINDOW_S`, and a verdict of behind held for the metric (`LastVerdicts`)
    longer than any test runs, so what the metric says while a stream is not judged races no clock."""
    monkeypatch.setattr(streams, "StreamPace", functools.partial(StreamPace, window_s=QUICK_WINDOW_S))
    monkeypatch.setattr(worker, "BusyShare", functools.partial(BusyShare, window_s=QUICK_WINDOW_S))
    monkeypatch.setattr(
        "server.inference.pace.LastVerdicts", functools.partial(LastVerdicts, held_s=HELD_FOR_THE_TEST_S)
    )


@pytest.fixture
def slow_model(monkeypatch: pytest.MonkeyPatch, quick_pace: None) -> Iterator[SlowModel]:
    """The app's model made slow, its pace judged quickly (`quick_pace`); made fast again at the end."""
    model = SlowModel()
    monkeypatch.setattr(streams, "InferenceWorker", functools.partial(InferenceWorker, load=lambda _: model))
    yield model
    model.fast.set()  # the server's shutdown waits for no slow batch


@pytest.fixture
def slow_triton(monkeypatch: pytest.MonkeyPatch, quick_pace: None) -> Iterator[SlowTriton]:
    """The app's model a slow Triton's (`SlowTriton`), its pace judged quickly; made fast at the end."""
    model = SlowTriton()
    monkeypatch.setattr(streams, "InferenceWorker", functools.partial(InferenceWorker, load=lambda _: model))
    yield model
    model.fast.set()


async def metric_samples(client: TestClient) -> dict[str, float]:
    text = await (await client.get("/metrics")).text()
    lines = (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {name: float(value) for name, value in lines}


async def stream(client: TestClient, stream_id: str) -> dict[str, Any]:
    body: dict[str, Any] = await (await client.get(f"/api/streams/{stream_id}")).json()
    return body


async def judged_behind(client: TestClient, stream_id: str) -> dict[str, Any] | None:
    found = await stream(client, stream_id)
    return found if found["behind"] else None


async def judged_keeping_up(client: TestClient, stream_id: str) -> dict[str, Any] | None:
    found = await stream(client, stream_id)
    return found if not found["behind"] and found["processed_share"] is not None else None


async def test_a_node_short_of_inference_says_so_in_its_api_metrics_health_and_log(
    start_server: Start, slow_model: SlowModel, scene_video: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=PACE_LOGGER)
    # Given a camera of 30 fps and a file read as fast as inference takes it, on a model of 4 batches a second
    client = await start_server(StreamConfig("cam", BUSY_SCENE), StreamConfig("file", f"{scene_video}#rate=max"))

    async def cam_behind() -> dict[str, Any] | None:
        found = await stream(client, "cam")
        return found if found["behind"] else None

    # Then the camera is behind, live all along, with the share of its frames inferred
    cam = await eventually(cam_behind, 60, "the camera to fall behind")
    assert cam["state"] == "live" and cam["processed_share"] < BEHIND_BELOW_SHARE
    # And the file, which processes every frame by design, is not judged
    file = await stream(client, "file")
    assert file["state"] == "live" and file["frames_processed"] > 0
    assert (file["behind"], file["processed_share"]) == (False, None)
    listed = {s["id"]: s for s in (await (await client.get("/api/streams")).json())["streams"]}
    assert listed["cam"]["behind"] is True

    # And /healthz is still ok (the node is alive) and counts it; /metrics has it, and how busy inference is
    health = await (await client.get("/healthz")).json()
    assert (health["status"], health["behind"]) == ("ok", 1)
    samples = await metric_samples(client)
    assert samples['segcast_stream_behind{stream="cam"}'] == 1.0
    assert samples['segcast_stream_behind{stream="file"}'] == 0.0

    async def busy() -> float | None:
        share = (await metric_samples(client))["segcast_inference_busy"]
        return share if share >= 0.9 else None

    await eventually(busy, 30, "the inference thread to read as busy")

    # And the log said it once, naming the camera alone, and what to do
    [warning] = [r for r in caplog.records if r.name == PACE_LOGGER]
    assert warning.levelno == logging.WARNING
    assert "[cam]" in warning.getMessage() and "[file]" not in warning.getMessage()
    assert "imgsz" in warning.getMessage()

    # When inference keeps up again (the model fast), the camera is no longer behind, and the log says so
    slow_model.fast.set()

    async def cam_keeps_up() -> dict[str, Any] | None:
        found = await stream(client, "cam")
        return found if not found["behind"] and found["processed_share"] is not None else None

    cam = await eventually(cam_keeps_up, 60, "the camera to keep up again")
    assert cam["processed_share"] >= KEEPS_UP_FROM_SHARE
    assert (await (await client.get("/healthz")).json())["behind"] == 0
    [_, info] = [r for r in caplog.records if r.name == PACE_LOGGER]
    assert info.levelno == logging.INFO and "keeps up" in info.getMessage()


async def test_a_stream_restarted_while_behind_is_judged_afresh_and_never_said_to_keep_up_meanwhile(
    start_server: Start, slow_model: SlowModel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=PACE_LOGGER)
    # Given a camera behind on a slow model
    client = await start_server(StreamConfig("cam", BUSY_SCENE))
    await eventually(lambda: judged_behind(client, "cam"), 60, "the camera to fall behind")

    # When it is restarted with the fix the log advises, on a node as short of inference as before
    response = await client.patch("/api/streams/cam", json={"imgsz": 160})
    assert response.status == 200 and (await response.json())["options"]["imgsz"] == 160

    # Then it is judged afresh (behind again, a whole window on), and meanwhile the metric held it behind
    metric: list[float] = []

    async def behind_again() -> dict[str, Any] | None:
        metric.append((await metric_samples(client))['segcast_stream_behind{stream="cam"}'])
        return await judged_behind(client, "cam")

    await eventually(behind_again, 60, "the restarted camera to be judged behind again")
    assert set(metric) == {1.0}, "a restart does not reset an alert's for:"
    # And the log never said the node kept up: one warning, no other line
    [warning] = pace_lines(caplog)
    assert warning.levelno == logging.WARNING

    # When inference keeps up with the restarted camera, the log says so, and the metric drops at once
    slow_model.fast.set()
    await eventually(lambda: judged_keeping_up(client, "cam"), 60, "the camera to keep up")
    [_, info] = pace_lines(caplog)
    assert info.levelno == logging.INFO and "keeps up" in info.getMessage()
    assert (await metric_samples(client))['segcast_stream_behind{stream="cam"}'] == 0.0


async def test_a_stream_removed_while_behind_ends_its_part_and_the_log_says_the_node_keeps_up(
    start_server: Start, slow_model: SlowModel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=PACE_LOGGER)
    client = await start_server(StreamConfig("cam", BUSY_SCENE))
    await eventually(lambda: judged_behind(client, "cam"), 60, "the camera to fall behind")
    assert (await client.delete("/api/streams/cam")).status == 204

    async def said_to_keep_up() -> list[int] | None:
        levels = [r.levelno for r in pace_lines(caplog)]
        return levels if len(levels) > 1 else None

    assert await eventually(said_to_keep_up, 30, "the log to say the node keeps up") == [logging.WARNING, logging.INFO]


async def test_a_stream_whose_inference_is_unavailable_is_not_judged_and_keeps_its_verdict_for_the_log(
    start_server: Start, slow_triton: SlowTriton, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=PACE_LOGGER)
    # Given a camera behind on a slow Triton
    client = await start_server(StreamConfig("cam", BUSY_SCENE))
    await eventually(lambda: judged_behind(client, "cam"), 60, "the camera to fall behind")

    # When Triton goes out of reach: every frame is taken, and fails (none is skipped for a newer one)
    slow_triton.down.set()

    # Then the camera, still live, is not judged: no share, not behind
    async def not_judged() -> dict[str, Any] | None:
        found = await stream(client, "cam")
        return found if found["processed_share"] is None else None

    cam = await eventually(not_judged, 60, "the camera not to be judged while inference is unavailable")
    assert cam["state"] == "live" and cam["behind"] is False
    assert cam["inference"]["state"] == "unavailable"
    # And the metric holds its last verdict, and the log never says the node keeps up
    assert (await metric_samples(client))['segcast_stream_behind{stream="cam"}'] == 1.0
    assert [r.levelno for r in pace_lines(caplog)] == [logging.WARNING]

    # When Triton is back, and fast, the camera is judged keeping up, and only then the log says so
    slow_triton.down.clear()
    slow_triton.fast.set()
    await eventually(lambda: judged_keeping_up(client, "cam"), 60, "the camera to keep up")
    assert [r.levelno for r in pace_lines(caplog)] == [logging.WARNING, logging.INFO]


async def test_the_behind_metric_protocol_and_openapi_name_the_same_times_a_stream_is_not_judged(
    start_server: Start, slow_model: SlowModel
) -> None:
    client = await start_server()
    metrics = await (await client.get("/metrics")).text()
    [help_line] = [line for line in metrics.splitlines() if line.startswith("# HELP segcast_stream_behind ")]
    [protocol_row] = [line for line in PROTOCOL_DOC.read_text().splitlines() if line.startswith("| `behind`")]
    openapi = yaml.safe_load(OPENAPI_DOC.read_text())
    described = openapi["components"]["schemas"]["Stream"]["properties"]["behind"]["description"]
    for said in (help_line, protocol_row, described):
        for when in ("first 10 s", "not live", "input paused", "inference unavailable", "#rate=max"):
            assert when in said, f"{when!r} not in {said!r}"
    paused = f"no frame for {PAUSED_AFTER_S:g} s or {PAUSED_AFTER_INTERVALS} of its frame intervals"
    assert paused in help_line and paused in protocol_row


async def test_a_pace_watch_that_keeps_failing_is_logged_once_a_minute_not_every_round(
    start_server: Start, slow_model: SlowModel, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rounds = 0

    def failing(manager: streams.StreamManager) -> None:
        nonlocal rounds
        rounds += 1
        raise RuntimeError("a fault of ours")

    monkeypatch.setattr(streams.StreamManager, "check_pace", failing)
    monkeypatch.setattr("server.inference.pace.PACE_CHECK_INTERVAL_S", 0.001)  # many rounds, quickly
    caplog.set_level(logging.INFO, logger=READINGS_LOGGER)
    await start_server()

    async def many_rounds() -> int | None:
        return rounds if rounds >= 50 else None

    await eventually(many_rounds, 30, "the pace watch to run 50 rounds")
    [line] = [r for r in caplog.records if r.name == READINGS_LOGGER]
    assert line.levelno == logging.ERROR and line.exc_info is not None, "the first is told with its traceback"


# -- the alert -------------------------------------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    require_component(found is not None, "needs promtool from Debian's prometheus package (see .ci/run)")
    assert found is not None
    return subprocess.run([found, *args], capture_output=True, text=True, timeout=60)


def test_the_alert_rules_file_is_valid_and_has_the_alerts_docs_scaling_gives() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0 and "SUCCESS: 7 rules found" in result.stdout, result.stdout + result.stderr
    section = SCALING_DOC.read_text().split("\n## Monitoring a fleet\n", 1)[1].split("\n## ", 1)[0]
    [block] = [b.split("```", 1)[0] for b in section.split("```yaml\n")[1:] if b.startswith("groups:")]
    [documented] = yaml.safe_load(block)["groups"]
    [shipped] = yaml.safe_load(ALERTS.read_text())["groups"]
    assert documented["rules"] == shipped["rules"][: len(documented["rules"])], "the file and the page agree"
    assert "SegcastStreamsBehind" in SCALING_DOC.read_text()


def test_the_streams_behind_alert_fires_for_a_node_short_of_inference_after_five_minutes(tmp_path: Path) -> None:
    """Node 1 has two streams behind for ten minutes, node 2 none, node 3 one for three minutes only."""
    node = 'job="segcast",instance="{}",stream="{}"'
    series = {
        ("node-1", "a"): "1x10",
        ("node-1", "b"): "1x10",
        ("node-1", "c"): "0x10",
        ("node-2", "a"): "0x10",
        ("node-3", "a"): "1 1 1 0 0 0 0 0 0 0 0",
    }
    [group] = yaml.safe_load(ALERTS.read_text())["groups"]
    [rule] = [r for r in group["rules"] if r["alert"] == "SegcastStreamsBehind"]
    summary = rule["annotations"]["summary"].replace("{{ $labels.instance }}", "node-1").replace("{{ $value }}", "2")
    fired = {"exp_labels": {"instance": "node-1"}, "exp_annotations": {**rule["annotations"], "summary": summary}}
    tests = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f"segcast_stream_behind{{{node.format(*key)}}}", "values": values}
                    for key, values in series.items()
                ],
                "alert_rule_test": [
                    {"eval_time": "4m", "alertname": "SegcastStreamsBehind", "exp_alerts": []},
                    {"eval_time": "10m", "alertname": "SegcastStreamsBehind", "exp_alerts": [fired]},
                ],
            }
        ],
    }
    path = tmp_path / "alert-tests.yml"  # JSON is YAML
    path.write_text(json.dumps(tests, indent=1))
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
