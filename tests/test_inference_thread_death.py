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
from server.inference.models import BUNDLED_MODEL
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
CAMERA = StreamConfig("cam", "scene:?seed=1")


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
    assert "CRITICAL server.inference.worker: inference thread stopped: SystemExit: a library gave up" in output
    said = [line for line in output.splitlines() if line.startswith("segcast: ")]
    assert said[-2:] == [
        "segcast: stopping, as no frame can be inferred any more (inference thread stopped: SystemExit: a library "
        "gave up); it exits with status 3 for a service manager to start it again",
        "segcast: stopped",
    ], output


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
    once, though the thread's end is also announced as a change of the inference status."""
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
