"""A node short of inference says so: per stream in the API, for the node in /metrics and /healthz, and
once in the log, with what to do.

The verdict's rules are tested on counters fed one second at a time (`StreamPace` takes them with
their time), the log's throttle and the busy share on a clock of the test's own; one real server, whose
model takes a quarter of a second a batch, is judged as a user would see it.
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
from server.inference.pace import (
    BEHIND_BELOW_SHARE,
    KEEPS_UP_FROM_SHARE,
    PAUSED_AFTER_S,
    BusyShare,
    OverloadLog,
    PaceSample,
    PaceVerdict,
    StreamPace,
)
from server.inference.worker import InferenceWorker
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
ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "segcast-alerts.yml"
SCALING_DOC = ROOT / "docs" / "scaling.md"


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


# -- the log ---------------------------------------------------------------------------------------

SLOW_CAM = PaceVerdict(True, 0.155, 29.0, 4.5)


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


@pytest.fixture
def slow_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowModel]:
    """The app's model made slow, and the pace judged over `QUICK_WINDOW_S`; made fast again at the end."""
    model = SlowModel()
    monkeypatch.setattr(streams, "InferenceWorker", functools.partial(InferenceWorker, load=lambda _: model))
    monkeypatch.setattr(streams, "StreamPace", functools.partial(StreamPace, window_s=QUICK_WINDOW_S))
    monkeypatch.setattr(worker, "BusyShare", functools.partial(BusyShare, window_s=QUICK_WINDOW_S))
    yield model
    model.fast.set()  # the server's shutdown waits for no slow batch


async def metric_samples(client: TestClient) -> dict[str, float]:
    text = await (await client.get("/metrics")).text()
    lines = (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {name: float(value) for name, value in lines}


async def stream(client: TestClient, stream_id: str) -> dict[str, Any]:
    body: dict[str, Any] = await (await client.get(f"/api/streams/{stream_id}")).json()
    return body


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


# -- the alert -------------------------------------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    require_component(found is not None, "needs promtool from Debian's prometheus package (see .ci/run)")
    assert found is not None
    return subprocess.run([found, *args], capture_output=True, text=True, timeout=60)


def test_the_alert_rules_file_is_valid_and_has_the_alerts_docs_scaling_gives() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0 and "SUCCESS: 3 rules found" in result.stdout, result.stdout + result.stderr
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
