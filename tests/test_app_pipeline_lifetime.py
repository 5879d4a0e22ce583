"""The pipeline's lifetime in the app (`server.app._pipeline`): what a start cancelled while the model
loads, a failing part of the start or the stop, and the stop's order leave behind.

Each drives the app's own start and stop with aiohttp's `web.AppRunner`, as ``web.run_app`` does: a
stop signal during ``loading model`` cancels ``runner.setup()``, then ``runner.cleanup()`` runs.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

import server.app
import server.streams
from server.app import create_app
from server.config import Settings, StreamConfig
from server.events.config import EventsSettings, HistorySettings
from server.events.outputs import EventOutputs
from server.http.keys import hub_key
from server.inference.backend import InferenceBackend
from server.inference.models import BUNDLED_MODEL, open_model
from server.inference.worker import InferenceWorker
from server.streams import StreamManager
from tests.support.event_packets import track_start
from tests.support.polling import eventually

if TYPE_CHECKING:
    from ultralytics import YOLO

PIPELINE_THREADS = ("reader-", "inference", "encoder")
#: How long the held model load waits to be let go at most: a test that fails must not hang.
LOAD_HELD_S = 30.0


def pipeline_threads() -> list[str]:
    return sorted(thread.name for thread in threading.enumerate() if thread.name.startswith(PIPELINE_THREADS))


def app_with(*streams: StreamConfig, history: Path | None = None) -> web.Application:
    """The real app with the bundled model, and an event history in the file ``history`` where given."""
    events = EventsSettings(history=HistorySettings(history)) if history is not None else EventsSettings()
    return create_app(Settings(model=str(BUNDLED_MODEL), streams=streams, events=events))


def outputs_stops_counted(monkeypatch: pytest.MonkeyPatch) -> list[EventOutputs]:
    """The event outputs stopped from now on, each as it was stopped (really: the history writes its queue)."""
    stopped: list[EventOutputs] = []
    stop = EventOutputs.stop

    async def counted(outputs: EventOutputs) -> None:
        stopped.append(outputs)
        await stop(outputs)

    monkeypatch.setattr(EventOutputs, "stop", counted)
    return stopped


class HeldLoad:
    """The model's load held until `let_go`, as a real one takes seconds, and the start's end seen."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loading, self.let_go, self.started = threading.Event(), threading.Event(), threading.Event()

        def held(model: str) -> YOLO | InferenceBackend:
            self.loading.set()
            self.let_go.wait(LOAD_HELD_S)
            return open_model(model)

        def loading_held(*args: Any, **kwargs: Any) -> InferenceWorker:
            return InferenceWorker(*args, load=held, **kwargs)

        start = StreamManager.start

        def seen_to_end(manager: StreamManager) -> None:
            try:
                start(manager)
            finally:
                self.started.set()

        monkeypatch.setattr(server.streams, "InferenceWorker", loading_held)
        monkeypatch.setattr(StreamManager, "start", seen_to_end)

    async def under_way(self) -> None:
        async def model_loading() -> bool:
            return self.loading.is_set()

        await eventually(model_loading, what="the model's load to begin")


async def test_a_start_cancelled_while_the_model_loads_leaves_no_pipeline_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The start's thread cannot be cancelled: it loaded the model after all and started the streams,
    and nothing stopped them, for as long as the process lived."""
    load = HeldLoad(monkeypatch)
    runner = web.AppRunner(app_with(StreamConfig("a", "scene:?seed=1")))
    setup = asyncio.create_task(runner.setup())
    await load.under_way()
    setup.cancel()
    load.let_go.set()  # the load ends on its own, as a real one does after the stop signal
    with pytest.raises(asyncio.CancelledError):
        await setup
    await runner.cleanup()
    assert pipeline_threads() == []


async def test_a_start_cancelled_again_while_the_model_loads_returns_once_its_threads_are_gone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A second stop signal, or ``web.run_app`` cancelling every task left as it ends, cancelled the wait
    for the start's undoing: the setup returned while the model still loaded, and the undoing, cancelled
    with the rest, never stopped the streams the start went on to start."""
    load = HeldLoad(monkeypatch)
    runner = web.AppRunner(app_with(StreamConfig("a", "scene:?seed=1")))
    setup = asyncio.create_task(runner.setup())
    await load.under_way()
    setup.cancel()
    await asyncio.sleep(0)  # one turn of the loop: the setup takes its first cancellation
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        task.cancel()  # as run_app ends: the setup again, and anything it left running
    load.let_go.set()
    try:
        with pytest.raises(asyncio.CancelledError):
            await setup
        assert load.started.is_set(), "the setup returned while the start went on"
        assert pipeline_threads() == []
    finally:
        await runner.cleanup()
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []


async def test_outputs_are_stopped_when_the_manager_cannot_be_made(monkeypatch: pytest.MonkeyPatch) -> None:
    stopped = outputs_stops_counted(monkeypatch)

    def unmakeable(settings: Settings, hub: object) -> StreamManager:
        raise RuntimeError("no manager")

    monkeypatch.setattr(server.app, "StreamManager", unmakeable)
    runner = web.AppRunner(app_with())
    with pytest.raises(RuntimeError, match="no manager"):
        await runner.setup()
    await runner.cleanup()
    assert len(stopped) == 1


async def test_outputs_are_stopped_when_the_pipelines_stop_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    stopped = outputs_stops_counted(monkeypatch)
    stop = StreamManager.stop

    def failing(manager: StreamManager) -> None:
        stop(manager)  # its threads end all the same
        raise RuntimeError("stop failed")

    monkeypatch.setattr(StreamManager, "stop", failing)
    runner = web.AppRunner(app_with(StreamConfig("a", "scene:?seed=1")))
    await runner.setup()
    with pytest.raises(RuntimeError, match="stop failed"):
        await runner.cleanup()
    assert len(stopped) == 1
    assert pipeline_threads() == []


async def test_events_of_the_frames_the_pipeline_hands_over_as_it_stops_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inference thread delivers what it has in flight as it stops, events included: the outputs
    must still be taking them then, so they are stopped after the pipeline."""
    app = app_with(history=tmp_path / "events.db")
    stop = StreamManager.stop

    def stop_with_a_last_frame(manager: StreamManager) -> None:
        stop(manager)
        app[hub_key].publish_threadsafe(track_start(1, stream_id="last"))  # as from a pipeline thread

    monkeypatch.setattr(StreamManager, "stop", stop_with_a_last_frame)
    runner = web.AppRunner(app)
    await runner.setup()
    await runner.cleanup()
    with sqlite3.connect(tmp_path / "events.db") as history:
        kept = history.execute("SELECT type FROM events WHERE stream = 'last'").fetchall()
    assert kept == [("track",)]
