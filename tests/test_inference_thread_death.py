"""An inference thread that ends on its own ends the server, for a service manager to start it anew.

Such a thread never infers a frame again (`InferenceWorker.ended`); a server left running so showed
video without analytics for months, its ``/healthz`` ``ok`` and its process up, so neither systemd's
``Restart=on-failure`` nor Docker's health check ever acted. Now ``/healthz`` fails, and ``segcast serve``
stops the usual clean way and exits with `EXIT_INFERENCE_ENDED`. A remote model's outage heals by
itself and stops nothing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode

from server.app import create_app
from server.config import Settings, StreamConfig
from server.http.keys import hub_key
from server.inference.models import BUNDLED_MODEL, InferenceStatus
from server.inference.worker import InferenceWorker
from server.serve import EXIT_INFERENCE_ENDED
from tests.support.polling import eventually
from tests.support.ports import held_closed_port
from tests.support.segcast_process import REPO, START_TIMEOUT_S, STOP_TIMEOUT_S, SegcastProcess

#: Far longer than a clean stop takes, for the viewer's close and again for the exit: only a server that
#: never stops (the bug) waits it out.
STOP_BOUND_S = STOP_TIMEOUT_S
#: What the test puts first on segcast's ``PYTHONPATH``, which Python imports at start: it ends the
#: inference thread as a library calling ``sys.exit`` there would, once the file ``$DIE_WHEN`` exists.
SITECUSTOMIZE = """\
import os

import server.inference.worker as worker

_track_and_deliver = worker.InferenceWorker._track_and_deliver


def _dies_when_told(self, job):
    if os.path.exists(os.environ["DIE_WHEN"]):
        raise SystemExit("a library gave up")
    return _track_and_deliver(self, job)


worker.InferenceWorker._track_and_deliver = _dies_when_told
"""
#: For `sitecustomize.py` instead: the inference thread ends as it starts serving (the model loaded), and
#: `InferenceWorker.start` returns only once it has: it died during the start, before the server listens.
#: The pipeline says when its stop (readers, threads, encoder) is over, which only a clean stop makes.
DIES_DURING_THE_START = """\
import server.inference.worker as worker
import server.streams as streams

_start = worker.InferenceWorker.start
_stop_pipeline = streams.StreamManager.stop


def _stop_and_say(self):
    _stop_pipeline(self)
    print("test: the pipeline stopped", flush=True)


def _gives_up(self, backend, in_flight):
    raise SystemExit("a library gave up")


def _started_and_ended(self):
    _start(self)
    self._thread.join()


worker.InferenceWorker._cycles = _gives_up
worker.InferenceWorker.start = _started_and_ended
streams.StreamManager.stop = _stop_and_say
"""
#: For `sitecustomize.py` instead: the inference thread ends while the stop runs, as it is asked to stop
#: (`InferenceWorker.stop`, after the readers stopped), and the stop goes on only once it has.
DIES_DURING_THE_STOP = """\
import threading

import server.inference.worker as worker

_stop = worker.InferenceWorker.stop
_take_batch = worker.InferenceWorker._take_batch
_dying = threading.Event()


def _takes_or_gives_up(self):
    if _dying.is_set():
        raise SystemExit("a library gave up")
    return _take_batch(self)


def _dies_then_stops(self):
    _dying.set()
    self._work_ready.set()
    self._thread.join()
    _stop(self)


worker.InferenceWorker._take_batch = _takes_or_gives_up
worker.InferenceWorker.stop = _dies_then_stops
"""
CAMERA = StreamConfig("cam", "scene:?seed=1")
#: What the log says as the thread dies, and segcast's last two lines after it stopped for that.
DIED = "CRITICAL server.inference.worker: inference thread stopped: SystemExit: a library gave up"
STOPPED_FOR_INFERENCE = [
    "segcast: stopping, as no frame can be inferred any more (inference thread stopped: SystemExit: a library "
    "gave up); it exits with status 3 for a service manager to start it again",
    "segcast: stopped",
]


def segcast_said(output: str) -> list[str]:
    """segcast's own lines (not the log's) in ``output``."""
    return [line for line in output.splitlines() if line.startswith("segcast: ")]


def dying_server(tmp_path: Path, sitecustomize: str) -> SegcastProcess:
    """A segcast whose inference thread ends as ``sitecustomize`` makes it, started."""
    (tmp_path / "sitecustomize.py").write_text(sitecustomize)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(tmp_path), str(REPO)))}
    server = SegcastProcess("--model", "bundled", "--source", "cam=scene:?seed=1", env=env)
    server.start()
    return server


@pytest.mark.timeout(START_TIMEOUT_S + 2 * STOP_BOUND_S + 30)
async def test_a_server_whose_inference_thread_dies_stops_cleanly_and_exits_for_a_restart(tmp_path: Path) -> None:
    """Given a running server with a viewer, when its inference thread dies, then the viewer is closed as on
    any stop, and the process exits with `EXIT_INFERENCE_ENDED` (not 0), its last lines saying why."""
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    die_when = tmp_path / "die"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(tmp_path), str(REPO))), "DIE_WHEN": str(die_when)}
    server = SegcastProcess("--model", "bundled", "--source", "cam=scene:?seed=1", env=env)
    server.start()
    assert server.process is not None
    try:
        await asyncio.to_thread(server.wait_for_processed_frames, 2)
        async with aiohttp.ClientSession() as session, session.ws_connect(f"{server.base_url}/ws") as viewer:
            assert (await viewer.receive_json())["type"] == "hello"
            die_when.touch()
            try:
                async with asyncio.timeout(STOP_BOUND_S):
                    async for _ in viewer:  # inference messages, until the server closes it
                        pass
            except TimeoutError:
                raise AssertionError(f"the viewer still open {STOP_BOUND_S:.0f} s after inference died") from None
            assert viewer.close_code == WSCloseCode.GOING_AWAY
        try:
            output, _ = await asyncio.to_thread(server.process.communicate, timeout=STOP_BOUND_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"segcast still runs {STOP_BOUND_S:.0f} s after closing its viewers") from None
    finally:
        server.kill()
    assert server.process.returncode == EXIT_INFERENCE_ENDED == 3, output
    assert DIED in output
    said = segcast_said(output)
    assert said[-2:] == STOPPED_FOR_INFERENCE, output


@pytest.mark.timeout(START_TIMEOUT_S + STOP_BOUND_S + 30)
async def test_an_inference_thread_that_dies_during_the_start_stops_the_server_with_status_3(tmp_path: Path) -> None:
    """Given a server whose inference thread ends during the start, before the server listens, then it stops
    the clean way and exits with `EXIT_INFERENCE_ENDED`, as one that died later does: a service manager
    starts it again (``Restart=on-failure``), where 2, a start refused for its settings, would say to fix them."""
    server = dying_server(tmp_path, DIES_DURING_THE_START)
    assert server.process is not None
    try:
        output, _ = await asyncio.to_thread(server.process.communicate, timeout=START_TIMEOUT_S + STOP_BOUND_S)
    except subprocess.TimeoutExpired:
        raise AssertionError("segcast still runs after its inference thread died at its start") from None
    finally:
        server.kill()
    assert server.process.returncode == EXIT_INFERENCE_ENDED, output
    assert DIED in output
    said = segcast_said(output)
    assert said[-2:] == STOPPED_FOR_INFERENCE, output
    assert not [line for line in said if "listening on" in line], "it said it listened, before it stopped"
    lines = output.splitlines()
    assert "test: the pipeline stopped" in lines, "the stop was not the clean one: the pipeline was never stopped"
    assert lines.index("test: the pipeline stopped") < lines.index("segcast: stopped"), output


@pytest.mark.timeout(START_TIMEOUT_S + STOP_BOUND_S + 30)
async def test_an_inference_thread_that_dies_while_a_sigterm_stops_the_server_leaves_the_stop_and_status_0(
    tmp_path: Path,
) -> None:
    """Given a running server stopped by SIGTERM (``systemctl stop``), when its inference thread ends on its
    own while the stop runs, then the stop goes on as asked: ``stopped`` and status 0, so a service manager
    leaves it stopped, not a second stop begun from inside the first (status 1, no ``stopped``) nor status 3."""
    server = dying_server(tmp_path, DIES_DURING_THE_STOP)
    try:
        await asyncio.to_thread(server.wait_for_processed_frames, 2)
        code, _, output = await asyncio.to_thread(server.terminate, STOP_BOUND_S)
    finally:
        server.kill()
    assert DIED in output
    said = segcast_said(output)
    assert said[-2:] == ["segcast: stopping", "segcast: stopped"], output
    assert "no frame can be inferred" not in output
    assert code == 0, output


def _exits(self: InferenceWorker) -> Any:
    raise SystemExit("a library gave up")


async def test_health_fails_once_the_inference_thread_has_ended(
    aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given an app whose inference thread ends on its own, then ``/healthz`` answers 503 ``failing`` with
    why: a probe that restarts an unhealthy server (Docker's, Kubernetes') restarts it."""
    monkeypatch.setattr(InferenceWorker, "_take_batch", _exits)
    client = await aiohttp_client(create_app(Settings(model=str(BUNDLED_MODEL), streams=(CAMERA,))))

    async def failing() -> aiohttp.ClientResponse | None:
        health = await client.get("/healthz")
        return health if health.status != 200 else None

    health = await eventually(failing, what="/healthz to fail")
    body = await health.json()
    assert health.status == 503 and body["status"] == "failing", body
    assert body["inference"]["error"] == "inference thread stopped: SystemExit: a library gave up"


async def test_whoever_runs_the_app_is_told_once_that_its_inference_thread_ended(
    aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given an app whose inference thread ends on its own, then ``on_inference_ended`` is called with why,
    once, though the thread's end is also announced as a change of the inference status, and any change
    after it finds the thread still ended."""
    monkeypatch.setattr(InferenceWorker, "_take_batch", _exits)
    told: list[str] = []
    settings = Settings(model=str(BUNDLED_MODEL), streams=(CAMERA,))
    client = await aiohttp_client(create_app(settings, on_inference_ended=told.append))

    async def announced() -> bool:  # the hub has it, and has called its inference listeners with it
        async with client.ws_connect("/ws") as viewer:
            hello = await viewer.receive_json()
        return bool(told) and hello["inference"]["state"] == "unavailable"

    await eventually(announced, what="the thread's end told and announced")
    assert told == ["inference thread stopped: SystemExit: a library gave up"]
    client.app[hub_key].announce_inference(InferenceStatus(available=False, error="another change"))
    assert told == ["inference thread stopped: SystemExit: a library gave up"], "told once, not at each change"


async def test_a_remote_models_outage_keeps_the_server_running_and_healthy(aiohttp_client: Any) -> None:
    """Given a Triton model whose server refuses connections, then inference is unavailable, ``/healthz``
    still answers 200 ``ok`` and nothing is told to stop: the outage ends when Triton is back."""
    told: list[str] = []
    with held_closed_port() as port:
        settings = Settings(model=f"grpc://127.0.0.1:{port}/segcast", streams=(CAMERA,))
        client = await aiohttp_client(create_app(settings, on_inference_ended=told.append))

        async def frames_failing() -> bool:  # the thread has been through the outage with frames
            stream = await (await client.get("/api/streams/cam")).json()
            return str(stream["last_inference_error"]).startswith("inference unavailable")

        await eventually(frames_failing, what="frames failing with 'inference unavailable'")
        health = await client.get("/healthz")
        body = await health.json()
    assert health.status == 200 and body["status"] == "ok", body
    assert body["inference"]["state"] == "unavailable"
    assert told == []
