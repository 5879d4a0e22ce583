"""Stream changes under faults, in the manager (`server.streams.StreamManager`) and through the API: a
source that hangs, fails oddly or stops slowly belongs to its own stream; every other change, the
snapshots and shutdown go on."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
from aiohttp.test_utils import TestClient

from server import streams
from server.config import Settings, StreamConfig, stream_options
from server.delivery import encode
from server.delivery.encode import FramePacket, Variant
from server.frames import FrameResult
from server.inference.worker import InferenceWorker
from server.options import StreamOptions
from server.sources import Source, StreamState
from server.sources.reader import JOIN_TIMEOUT_S, StreamReader
from server.stream_info import StreamInfo
from tests.support.detections import NoDetections
from tests.support.listeners import SilentListener
from tests.support.polling import eventually

if TYPE_CHECKING:
    from ultralytics import YOLO

Start = Callable[..., Awaitable[TestClient]]

#: How long a test thread may take to finish once what held it up is released: a bound on a failure's
#: cost, never what the test waits for.
FINISH_TIMEOUT_S = 30.0
ZONE = {"name": "z", "points": [[0, 0], [0.5, 0], [0.5, 0.5]], "units": "fraction"}


@pytest.fixture
def new_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., streams.StreamManager]]:
    """Make a manager with a stand-in model (not started) that tells ``listener`` (a `SilentListener` if not
    given) what a hub would hear; every one made is stopped at the end."""
    model = NoDetections()
    monkeypatch.setattr(
        streams, "InferenceWorker", functools.partial(InferenceWorker, load=lambda _: cast("YOLO", model))
    )
    made: list[streams.StreamManager] = []

    def make(*configs: StreamConfig, listener: streams.PipelineListener | None = None) -> streams.StreamManager:
        settings = Settings(model="none", streams=configs)
        made.append(streams.StreamManager(settings, SilentListener() if listener is None else listener))
        return made[-1]

    yield make
    for manager in made:
        manager.stop()


@pytest.fixture
def manager(new_manager: Callable[..., streams.StreamManager]) -> streams.StreamManager:
    started = new_manager()
    started.start()
    return started


class Gate:
    """Holds up a call until released, and tells when one has got there."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()

    def hold(self) -> None:
        self.entered.set()
        assert self.released.wait(FINISH_TIMEOUT_S), "the test never released the gate"

    def wait_entered(self) -> None:
        assert self.entered.wait(FINISH_TIMEOUT_S), "nothing got to the gate"


class Background:
    """A call in a thread of its own, whose result or exception the test takes once it is done."""

    def __init__(self, call: Callable[[], object]) -> None:
        self._call = call
        self.result: object = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-change", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._call()
        except BaseException as exc:
            self.error = exc

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def finish(self) -> object:
        self._thread.join(FINISH_TIMEOUT_S)
        assert not self._thread.is_alive(), "the call did not finish once released"
        if self.error is not None:
            raise self.error
        return self.result


def stop_held_for(monkeypatch: pytest.MonkeyPatch, stream_id: str, gate: Gate) -> None:
    """Make ``stream_id``'s reader slow to stop, as a stalled camera's is (inside a network call):
    the first `StreamReader.stop` of it waits at ``gate`` before stopping it."""
    stop = StreamReader.stop
    held: set[StreamReader] = set()

    def slow_stop(reader: StreamReader, timeout_s: float = JOIN_TIMEOUT_S) -> None:
        if reader.stream_id == stream_id and reader not in held:
            held.add(reader)
            reader.request_stop()
            gate.hold()
        stop(reader, timeout_s)

    monkeypatch.setattr(StreamReader, "stop", slow_stop)


def open_held(monkeypatch: pytest.MonkeyPatch, gate: Gate) -> None:
    """Make opening a source wait at ``gate`` first, as reading a file on a hung network mount would."""
    open_source = streams.open_source

    def slow_open(*args: Any, **kwargs: Any) -> Source:
        gate.hold()
        return open_source(*args, **kwargs)

    monkeypatch.setattr(streams, "open_source", slow_open)


def test_removing_a_stream_whose_reader_is_slow_to_stop_holds_up_no_other_change(
    manager: streams.StreamManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Removing 8 stalled cameras took 16 s, one join after another under the manager-wide lock, and
    every other change waited behind them all."""
    manager.add(StreamConfig("stalled", "scene:?seed=1"))
    manager.add(StreamConfig("other", "scene:?seed=2"))
    gate = Gate()
    stop_held_for(monkeypatch, "stalled", gate)
    removal = Background(lambda: manager.remove("stalled"))
    try:
        gate.wait_entered()
        # given the removal waiting for the stalled reader, when other streams change, then they do
        assert manager.add(StreamConfig("new", "scene:?seed=3")).state is not StreamState.FAILED
        changed = manager.replace(StreamConfig("other", "scene:?seed=2", options=StreamOptions(conf=0.4)))
        assert changed.config.options.conf == 0.4
        manager.remove("new")
        with pytest.raises(streams.StreamExistsError, match="being stopped"):
            manager.add(StreamConfig("stalled", "scene:?seed=1"))  # its old reader may still speak
        assert removal.running, "all of that while the stalled reader was still being stopped"
    finally:
        gate.released.set()
    removal.finish()
    assert manager.add(StreamConfig("stalled", "scene:?seed=1")).stream_id == "stalled", "free once stopped"


def test_restarting_a_stream_whose_reader_is_slow_to_stop_shows_its_new_settings_and_holds_up_nothing(
    manager: streams.StreamManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager.add(StreamConfig("stalled", "scene:?seed=1"))
    gate = Gate()
    stop_held_for(monkeypatch, "stalled", gate)
    new_settings = StreamConfig("stalled", "scene:?seed=5")
    restart = Background(lambda: manager.replace(new_settings))
    try:
        gate.wait_entered()
        meanwhile = manager.info("stalled")
        assert (meanwhile.config, meanwhile.state, meanwhile.error) == (new_settings, StreamState.STARTING, None)
        assert manager.add(StreamConfig("new", "scene:?seed=3")).state is not StreamState.FAILED
        assert restart.running
    finally:
        gate.released.set()
    restarted = cast(StreamInfo, restart.finish())
    assert restarted.config == new_settings and restarted.source == "scene:?seed=5"


def test_a_removal_while_a_stream_restarts_wins(
    manager: streams.StreamManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager.add(StreamConfig("cam", "scene:?seed=1"))
    gate = Gate()
    stop_held_for(monkeypatch, "cam", gate)
    restart = Background(lambda: manager.replace(StreamConfig("cam", "scene:?seed=5")))
    try:
        gate.wait_entered()
        manager.remove("cam")
    finally:
        gate.released.set()
    with pytest.raises(KeyError):
        restart.finish()
    assert [info.stream_id for info in manager.streams()] == []
    assert manager.worker.stats("cam") is None, "nothing of it is left running"
    manager.add(StreamConfig("cam", "scene:?seed=2"))  # and its id is free


def test_stop_waits_for_no_change_and_joins_the_readers_being_removed(
    manager: streams.StreamManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while stalled cameras were being removed took one 2 s join per camera, behind the lock."""
    manager.add(StreamConfig("stalled", "scene:?seed=1"))
    gate = Gate()
    stop_held_for(monkeypatch, "stalled", gate)
    removal = Background(lambda: manager.remove("stalled"))
    try:
        gate.wait_entered()
        manager.stop()
        assert removal.running, "stop went ahead of the removal"
        assert not [t for t in threading.enumerate() if t.name == "reader-stalled"], "and joined its reader"
    finally:
        gate.released.set()
    removal.finish()


def test_a_stream_whose_source_is_still_being_opened_is_starting_and_stop_does_not_wait_for_it(
    manager: streams.StreamManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It showed as failed with no reason, and a server whose file hung in opening ignored SIGTERM."""
    gate = Gate()
    open_held(monkeypatch, gate)
    adding = Background(lambda: manager.add(StreamConfig("slow", "scene:?seed=1")))
    try:
        gate.wait_entered()
        opening = manager.info("slow")
        assert (opening.state, opening.error) == (StreamState.STARTING, None)
        manager.stop()
        assert adding.running
    finally:
        gate.released.set()
    with pytest.raises(streams.ShuttingDownError):
        adding.finish()
    assert not [t for t in threading.enumerate() if t.name == "reader-slow"], "no reader started after stop"


def test_a_source_that_fails_to_open_in_a_way_nobody_foresaw_is_a_failed_stream_with_the_reason(
    manager: streams.StreamManager, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Anything but a `SourceError` left a stream with no reader and no reason: a ghost the API could
    neither show nor replace (409), from a 500."""

    def broken(*args: object, **kwargs: object) -> Source:
        raise OSError(36, "File name too long")

    monkeypatch.setattr(streams, "open_source", broken)
    added = manager.add(StreamConfig("cam", "/videos/cam.mp4"))
    assert (added.state, added.error) == (
        StreamState.FAILED,
        "cannot open the source: OSError: [Errno 36] File name too long",
    )
    told = [r for r in caplog.records if r.name == "server.streams" and r.levelno >= logging.WARNING]
    assert [(r.levelname, r.exc_info is not None) for r in told] == [("ERROR", True)], "its traceback, once"
    restarted = manager.replace(StreamConfig("cam", "/videos/other.mp4"))
    assert restarted.state is StreamState.FAILED and restarted.error is not None
    monkeypatch.undo()
    manager.remove("cam")
    assert manager.add(StreamConfig("cam", "scene:?seed=1")).state is not StreamState.FAILED


def unfit(manager: streams.StreamManager, stream_id: str) -> StreamReader:
    """Fail ``stream_id`` as the inference thread does once a remote model, first described, cannot take its
    options (`StreamManager._on_unfit`); the reader it stopped."""
    reader = manager._table.snapshot(stream_id).reader
    assert reader is not None
    manager._on_unfit(stream_id, manager.config(stream_id).options, "classes: the model knows no 'cat'")
    assert manager.info(stream_id).state is StreamState.FAILED
    return reader


def test_a_reader_stopped_for_options_the_model_cannot_take_is_joined_by_the_next_change_or_removal(
    manager: streams.StreamManager,
) -> None:
    """Only asked to stop on the inference thread, each such reader was kept until shutdown: one more
    for each change that failed so."""
    manager.add(StreamConfig("cam", "scene:?seed=1"))
    for conf in (0.3, 0.4):
        stopped = unfit(manager, "cam")
        restarted = manager.replace(StreamConfig("cam", "scene:?seed=1", options=StreamOptions(conf=conf)))
        assert restarted.state is not StreamState.FAILED
        assert not stopped.alive and not manager._table.stopping(), "the change joined it"
    stopped = unfit(manager, "cam")
    manager.remove("cam")
    assert not stopped.alive and not manager._table.stopping(), "the removal joined it"


def test_a_change_of_zones_opens_again_a_stream_failed_for_options_the_model_cannot_take(
    manager: streams.StreamManager,
) -> None:
    """Zones change in place, and the stream stayed failed with no reader, though the new zones may be what
    makes it fit (a zone's class the model lacks)."""
    manager.add(StreamConfig("cam", "scene:?seed=1"))
    stopped = unfit(manager, "cam")
    zones = stream_options({"zones": [ZONE]}, StreamOptions(), "test")
    opened = manager.replace(StreamConfig("cam", "scene:?seed=1", options=zones))
    assert opened.state is not StreamState.FAILED and opened.error is None
    assert not stopped.alive and not manager._table.stopping()


@pytest.mark.parametrize(
    "wanted_source", [{"uri": "scene:?seed=2"}, {"uri": "scene:?seed=1", "loop": True}], ids=["uri", "loop"]
)
def test_a_change_of_zones_with_a_new_uri_or_loop_is_not_made_in_place(wanted_source: dict[str, Any]) -> None:
    """Made in place, the reader would go on with the old source: only the same uri and loop keep it."""
    zones = stream_options({"zones": [ZONE]}, StreamOptions(), "test")
    wanted = StreamConfig("cam", options=zones, **wanted_source)
    assert streams._changed_in_place(StreamConfig("cam", "scene:?seed=1"), wanted) == ()


def test_a_change_of_zones_with_a_new_uri_reads_the_new_source(manager: streams.StreamManager) -> None:
    """The stream restarts on the new uri, with the new zones: its reader's source is the new one."""
    manager.add(StreamConfig("cam", "scene:?seed=1"))
    zones = stream_options({"zones": [ZONE]}, StreamOptions(), "test")
    changed = manager.replace(StreamConfig("cam", "scene:?seed=2", options=zones))
    assert changed.source == "scene:?seed=2"
    assert changed.config.options.zones == zones.zones


class ToldInOrder(SilentListener):
    """Notes each frame published and each removal, in the order the pipeline's threads told them."""

    def __init__(self) -> None:
        self.told: list[tuple[str, str, int | None]] = []

    def publish_threadsafe(self, packet: FramePacket) -> None:
        self.told.append(("frame", packet.stream_id, packet.seq))

    def stream_removed_threadsafe(self, stream_id: str) -> None:
        self.told.append(("removed", stream_id, None))


def test_a_removed_streams_result_waiting_for_the_encoder_is_not_published_after_its_removal(
    new_manager: Callable[..., streams.StreamManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The result waiting in the encoder's slot goes with the stream (`Encoder.forget`); only the one being
    encoded at the removal still follows it, which the hub drops as a removed stream's late frame."""
    encoding, waiting = Gate(), threading.Event()
    in_flight: list[int] = []
    encode_variants = encode.encode_variants

    def held(result: FrameResult, variants: frozenset[Variant], jpeg_quality: int) -> dict[Variant, bytes]:
        if not in_flight:
            in_flight.append(result.frame.seq)
            encoding.hold()
        return encode_variants(result, variants, jpeg_quality)

    monkeypatch.setattr(encode, "encode_variants", held)
    listener = ToldInOrder()
    manager = new_manager(StreamConfig("cam", "scene:?seed=1"), listener=listener)
    submit = manager._encoder.submit

    def noted(result: FrameResult) -> None:
        submit(result)
        if encoding.entered.is_set():  # the encoder is held: this one waits in the slot
            waiting.set()

    monkeypatch.setattr(manager._encoder, "submit", noted)
    manager.start()
    assert waiting.wait(FINISH_TIMEOUT_S), "no result came to wait while the encoder was held"
    manager.remove("cam")
    encoding.released.set()
    manager.stop()  # the encoder publishes what it holds before it stops
    removal = listener.told.index(("removed", "cam", None))
    assert listener.told[removal + 1 :] == [("frame", "cam", in_flight[0])]


def test_a_start_that_fails_while_adding_the_configured_streams_leaves_no_thread_behind(
    new_manager: Callable[..., streams.StreamManager],
) -> None:
    """A --source that made `add` raise left the readers, the worker and the encoder running: the
    process aborted at exit ("terminate called without an active exception")."""
    before = set(threading.enumerate())
    manager = new_manager(StreamConfig("cam", "scene:?seed=1"), StreamConfig("cam", "scene:?seed=2"))
    with pytest.raises(streams.StreamExistsError):
        manager.start()
    assert set(threading.enumerate()) - before == set()


def test_a_configured_file_that_cannot_be_looked_at_fails_its_stream_not_the_start(
    new_manager: Callable[..., streams.StreamManager], tmp_path: Path
) -> None:
    """A --source whose name was too long for the file system aborted the server at start (SIGABRT)."""
    long = tmp_path / ("a" * 300 + ".mp4")
    manager = new_manager(StreamConfig("long", str(long)), StreamConfig("cam", "scene:?seed=1"))
    manager.start()
    for reader in [t for t in threading.enumerate() if t.name == "reader-long"]:
        reader.join(FINISH_TIMEOUT_S)  # it looks at the file, fails and exits
    failed = manager.info("long")
    assert failed.state is StreamState.FAILED and failed.error == f"cannot read {long}: File name too long"
    assert manager.info("cam").state is not StreamState.FAILED


# -- through the API --------------------------------------------------------------------------------


class HungFile:
    """A video whose opening blocks, as one on a hung network mount (NFS, SMB) does: an HLS playlist
    whose one segment is a FIFO. Opening it waits for a writer, then reading waits for data."""

    def __init__(self, folder: Path) -> None:
        self.segment = folder / "segment.ts"
        os.mkfifo(self.segment)
        self.playlist = folder / "hung.m3u8"
        self.playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nsegment.ts\n#EXT-X-ENDLIST\n")
        self._writer: int | None = None

    async def opened(self) -> bool:
        """Whether something is opening the segment now; it then stays blocked, reading, until `release`."""
        if self._writer is None:
            try:
                self._writer = os.open(self.segment, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO while no one reads
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
        return self._writer is not None

    def release(self) -> None:
        """End the segment (its reader gets end-of-file), whatever is blocked on it."""
        if self._writer is None:
            with contextlib.suppress(OSError):  # nobody at the FIFO yet
                self._writer = os.open(self.segment, os.O_WRONLY | os.O_NONBLOCK)
        if self._writer is not None:
            os.close(self._writer)
            self._writer = None


async def stream_state(client: TestClient, stream_id: str, state: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        body: dict[str, Any] = await (await client.get(f"/api/streams/{stream_id}")).json()
        return body if body["state"] == state else None

    return await eventually(reached, what=f"{stream_id} {state}")


async def test_a_file_whose_opening_hangs_holds_up_no_other_change(start_server: Start, tmp_path: Path) -> None:
    """Its opening held the manager's lock for good: every later POST, PATCH and DELETE waited, and so
    did SIGTERM; meanwhile it showed as failed, with no reason."""
    hung = HungFile(tmp_path)
    client = await start_server(StreamConfig("other", "scene:?seed=2"), media_dirs=(tmp_path,))
    try:
        adding = asyncio.create_task(client.post("/api/streams", json={"id": "hung", "uri": str(hung.playlist)}))
        await eventually(hung.opened, what="the file being opened")
        # given the file's opening blocked, when another stream changes, then it does
        changed = await client.patch("/api/streams/other", json={"conf": 0.4})
        assert changed.status == 200, await changed.text()
        added = await adding
        assert added.status == 201 and (await added.json())["state"] == "starting"
        still = await (await client.get("/api/streams/hung")).json()
        assert (still["state"], still["error"]) == ("starting", None), "its opening is still under way"
    finally:
        hung.release()
    failed = await stream_state(client, "hung", "failed")
    assert failed["error"].startswith("cannot open hung.m3u8 as video")
    assert (await client.delete("/api/streams/hung")).status == 204


async def test_a_file_name_too_long_is_a_failed_stream_with_the_reason_not_a_500(
    start_server: Start, tmp_path: Path
) -> None:
    """POST answered a plain-text 500 and left a stream no POST could replace (409); PATCH answered 500
    and left the healthy stream stopped, failed with no reason."""
    long = tmp_path / ("a" * 300 + ".mp4")
    reason = f"cannot read {long}: File name too long"
    client = await start_server(StreamConfig("cam", "scene:?seed=1"), media_dirs=(tmp_path,))
    added = await client.post("/api/streams", json={"id": "long", "uri": str(long)})
    assert added.status == 201, await added.text()
    assert (await stream_state(client, "long", "failed"))["error"] == reason
    assert (await client.delete("/api/streams/long")).status == 204
    assert (await client.post("/api/streams", json={"id": "long", "uri": "scene:?seed=3"})).status == 201

    changed = await client.patch("/api/streams/cam", json={"uri": str(long)})
    assert changed.status == 200, await changed.text()
    assert (await stream_state(client, "cam", "failed"))["error"] == reason
    assert (await client.patch("/api/streams/cam", json={"uri": "scene:?seed=1"})).status == 200
    await stream_state(client, "cam", "live")


async def test_a_file_url_with_a_nul_character_is_a_bad_request(start_server: Start, tmp_path: Path) -> None:
    client = await start_server(media_dirs=(tmp_path,))
    response = await client.post("/api/streams", json={"id": "nul", "uri": f"file://{tmp_path}/a%00.mp4"})
    assert response.status == 400, await response.text()
    assert "NUL character" in (await response.json())["error"]
    assert (await (await client.get("/api/streams")).json())["streams"] == []


async def test_snapshots_do_not_queue_behind_stream_changes(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changes ran in the loop's default executor, which also encodes snapshots: removing stalled cameras
    (up to 2 s each) slowed a snapshot from 0.05 to 5.7 s. One thread stands for all of them taken."""
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(1))
    client = await start_server(StreamConfig("live", "scene:?seed=1"), StreamConfig("stalled", "scene:?seed=2"))
    await stream_state(client, "live", "live")
    await eventually(lambda: _snapshot_ready(client), what="a first snapshot")
    gate = Gate()
    stop_held_for(monkeypatch, "stalled", gate)
    try:
        removing = asyncio.create_task(client.delete("/api/streams/stalled"))

        async def entered() -> bool:
            return gate.entered.is_set()

        await eventually(entered, what="the removal waiting for the stalled reader")
        snapshot = await client.get("/api/streams/live/snapshot.jpg?max_width=123")  # a new encoding
        assert snapshot.status == 200 and (await snapshot.read()).startswith(b"\xff\xd8")
        assert not removing.done(), "the snapshot came while the removal was still waiting"
    finally:
        gate.released.set()
    assert (await removing).status == 204


async def _snapshot_ready(client: TestClient) -> bool:
    return (await client.get("/api/streams/live/snapshot.jpg")).status == 200


def test_a_change_is_logged_with_its_old_and_new_values_where_they_read_in_a_line() -> None:
    """The log said "[drive] options changed" or "process_fps changed", not to what: a PATCH left no trace."""
    before = StreamConfig("drive", "scene:", options=StreamOptions(conf=0.25))
    after = StreamConfig("drive", "scene:", options=StreamOptions(conf=0.4, process_fps=5.0))
    said = streams._changes_said(before, after, ["conf", "process_fps", "zones"])
    assert said == "conf 0.25 -> 0.4, process_fps None -> 5.0, zones"
