"""Faults a deployment meets, each survived, and after each the other streams kept delivering.

A camera that dies and comes back, a file that is damaged in the middle, a model that raises on a
frame, viewers that vanish mid-frame, hundreds of viewers coming and going, and SIGTERM to a real
``segcast serve`` in the middle of all that. Every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from ultralytics.engine.model import Model

from server.app import create_app
from server.config import Settings, StreamConfig
from server.delivery.viewer import MAX_PENDING_EVENTS, Viewer
from server.http import pictures
from server.http.keys import hub_key
from server.inference.models import BUNDLED_MODEL
from tests.support.components import require_component
from tests.support.numbered import number_of, write_numbered_video
from tests.support.polling import eventually
from tests.support.raw_websocket import raw_websocket
from tests.support.rtsp_camera import RtspCamera, system_rtsp_server_available
from tests.support.segcast_process import SHUTDOWN_BOUND_S, SegcastProcess

Start = Callable[..., Awaitable[TestClient]]
OTHER = StreamConfig("other", "scene:?seed=2&fps=10&width=320&height=192")
#: Frames the other stream must gain for "it kept delivering" (with a deadline in `keeps_delivering`).
KEEP_DELIVERING_FRAMES = 3
LOAD_TASKS = 4
LOAD_ROUNDS = 2  # each load task's completed rounds before SIGTERM
CHURN_CLIENTS = 300
CHURN_CONCURRENCY = 50
PIPELINE_THREADS = ("reader-", "inference", "encoder")
#: Bytes of receive buffer of a client that never reads: the server's writes to it back up after a frame or two.
STALLED_RECEIVE_BUFFER = 4096


async def stream(client: TestClient, stream_id: str) -> dict[str, Any]:
    body: dict[str, Any] = await (await client.get(f"/api/streams/{stream_id}")).json()
    return body


async def processed(client: TestClient, stream_id: str) -> int:
    return int((await stream(client, stream_id))["frames_processed"])


async def keeps_delivering(client: TestClient, stream_id: str = "other", timeout_s: float = 30.0) -> None:
    """``stream_id`` gains processed frames *and* a viewer receives a new one of them."""
    start = await processed(client, stream_id)

    async def gained() -> bool:
        return await processed(client, stream_id) >= start + KEEP_DELIVERING_FRAMES

    await eventually(gained, timeout_s, what=f"{stream_id} to keep processing")
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "streams": [stream_id], "image": "clean"})
        while (await ws.receive(timeout=timeout_s)).type is not aiohttp.WSMsgType.BINARY:
            pass


async def state_is(client: TestClient, stream_id: str, state: str, timeout_s: float = 30.0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        body = await stream(client, stream_id)
        return body if body["state"] == state else None

    return await eventually(check, timeout_s, what=f"{stream_id} to be {state}")


async def test_camera_dies_and_returns_while_the_other_stream_keeps_delivering(
    start_server: Start, camera_video: Path
) -> None:
    require_component(system_rtsp_server_available(), "needs GStreamer's RTSP server (see .ci/run)")
    camera = RtspCamera(camera_video)
    await asyncio.to_thread(camera.start)
    try:
        client = await start_server(StreamConfig("cam", camera.url + "#timeout=2"), OTHER)
        await state_is(client, "cam", "live")
        await asyncio.to_thread(camera.kill)
        down = await state_is(client, "cam", "reconnecting")
        assert down["error"]
        await keeps_delivering(client)
        await asyncio.to_thread(camera.start)
        before = await processed(client, "cam")
        await state_is(client, "cam", "live", timeout_s=60)

        async def cam_frames() -> bool:
            return await processed(client, "cam") > before

        await eventually(cam_frames, 30, what="the camera's frames after it returned")
        await keeps_delivering(client)
    finally:
        await asyncio.to_thread(camera.kill)


async def test_a_video_damaged_mid_stream_keeps_playing_and_the_other_stream_too(
    start_server: Start, tmp_path: Path
) -> None:
    """The frames carry their index: seeing the last ones shows the reader got past the damage.

    Counting frames read could not tell: a reader that went back to the start at the damage (looping,
    or reconnecting) reads ever more frames too, and never shows the end of the file.
    """
    path = tmp_path / "damaged.mp4"
    frames, fps = 45, 15
    # A key frame every 5: the decoder is clean again soon after the damage (it conceals until then).
    await asyncio.to_thread(write_numbered_video, path, frames, fps, 5)
    data = bytearray(path.read_bytes())
    rng = random.Random(5)
    for offset in range(len(data) * 2 // 5, len(data) * 3 // 5, 7):  # garbage through the middle fifth
        data[offset] = rng.randrange(256)
    path.write_bytes(bytes(data))
    client = await start_server(StreamConfig("damaged", str(path), loop=True), OTHER)
    last_fifth = range(frames * 4 // 5, frames)
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "streams": ["damaged"], "image": "clean"})
        async with asyncio.timeout(60):
            seen: list[int] = []
            while not any(index in last_fifth for index in seen):
                meta = await ws.receive_json()
                if meta["type"] != "frame":
                    continue
                image = cv2.imdecode(np.frombuffer(await ws.receive_bytes(), np.uint8), cv2.IMREAD_COLOR)
                # A looped file's media time runs on by its length each time: modulo that, it is the
                # frame's own time in the file, which must agree with the index the picture shows.
                if number_of(image) == round(meta["media_time"] * fps) % frames:
                    seen.append(number_of(image))
    body = await stream(client, "damaged")
    assert body["state"] == "live" and body["reconnects"] == 0, body
    await keeps_delivering(client)


async def test_the_model_raising_on_a_frame_costs_that_frame_only(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad_shape = (160, 256, 3)  # the faulty stream is told apart by its size: predict sees only images
    failures = {"left": 5}
    raised_at: list[float] = []
    lock = threading.Lock()
    real_predict = Model.predict

    def faulty_predict(self: Model, source: Any = None, *args: Any, **kwargs: Any) -> Any:
        images = source if isinstance(source, list) else [source]
        if any(isinstance(i, np.ndarray) and i.shape == bad_shape for i in images):
            with lock:
                if failures["left"] > 0:
                    failures["left"] -= 1
                    raised_at.append(time.time())
                    raise RuntimeError("injected model fault")
        return real_predict(self, source, *args, **kwargs)

    monkeypatch.setattr(Model, "predict", faulty_predict)
    client = await start_server(StreamConfig("faulty", "scene:?seed=4&fps=10&width=256&height=160"), OTHER)

    async def failed_then_recovered() -> dict[str, Any] | None:
        body = await stream(client, "faulty")
        return body if failures["left"] == 0 and body["frames_processed"] >= 3 else None

    body = await eventually(failed_then_recovered, 60, what="the faults to be used up and the stream to recover")
    assert body["inference_errors"] >= 5
    assert "injected model fault" in body["last_inference_error"]
    # The reason stays after the stream recovered; its time says it is past: the last fault's.
    assert raised_at[-1] <= body["last_inference_error_at"] <= time.time()
    assert body["state"] == "live"
    other = await stream(client, "other")
    assert (other["inference_errors"], other["last_inference_error_at"]) == (0, None)
    await keeps_delivering(client)


def _vanish_mid_frame(sock: socket.socket) -> None:
    """Read until inside a binary frame (a JPEG), then reset the connection."""
    received = b""
    while b"\xff\xd8" not in received:  # the start of a JPEG: we are inside a frame now
        received = received[-1:] + sock.recv(1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def test_viewers_vanishing_mid_frame_leave_no_trace(
    start_server: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    client = await start_server(StreamConfig("cam", "scene:?seed=1&width=1280&height=720"), OTHER)
    assert client.app is not None
    hub = client.app[hub_key]
    host, port = str(client.server.host), int(client.server.port or 0)
    for _ in range(5):
        sock = await asyncio.to_thread(raw_websocket, host, port, {"streams": ["cam"], "image": "clean"})
        await asyncio.to_thread(_vanish_mid_frame, sock)
    mjpeg = await client.get("/api/streams/cam/mjpeg")
    await mjpeg.content.read(1000)  # inside the first JPEG part
    mjpeg.connection.transport.abort()  # type: ignore[union-attr]
    mjpeg.close()

    async def all_gone() -> bool:
        return hub.viewer_count("cam") == 0 and not hub.viewers

    await eventually(all_gone, 30, what="the vanished viewers to be dropped")
    await keeps_delivering(client, "cam")
    await keeps_delivering(client)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def _stalled_mjpeg(host: str, port: int, stream_id: str) -> socket.socket:
    """An MJPEG request whose client never reads: a small receive buffer backs the server's writes up soon."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RECEIVE_BUFFER)
    sock.connect((host, port))
    sock.sendall(f"GET /api/streams/{stream_id}/mjpeg HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return sock


async def _stalled_viewers(client: TestClient, stream_id: str, mjpeg: int, websocket: int) -> list[socket.socket]:
    """MJPEG and WebSocket clients of ``stream_id`` that never read, returned once the server's writes
    to each are stuck: each has had frames replaced in its slot, which only a sender that has stopped
    taking them lets happen."""
    assert client.app is not None
    hub = client.app[hub_key]
    host, port = str(client.server.host), int(client.server.port or 0)
    subscribe = {"streams": [stream_id], "image": "clean"}
    socks = [await asyncio.to_thread(_stalled_mjpeg, host, port, stream_id) for _ in range(mjpeg)]
    for _ in range(websocket):
        socks.append(await asyncio.to_thread(raw_websocket, host, port, subscribe, STALLED_RECEIVE_BUFFER))

    async def all_stuck() -> bool:
        return len([v for v in hub.viewers if v.dropped_frames >= 3]) == mjpeg + websocket

    try:
        await eventually(all_stuck, 60, what="the server's writes to the stalled clients to back up")
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


async def test_viewers_reset_while_the_server_waits_on_them_leave_no_trace(
    start_server: Start, caplog: pytest.LogCaptureFixture
) -> None:
    """A write waiting on a client whose connection is then reset fails with aiohttp's base
    ConnectionError ("Connection lost"), not ConnectionResetError: logged as an ERROR with a
    traceback before this fix, for WebSocket and MJPEG viewers alike."""
    caplog.set_level(logging.WARNING)
    client = await start_server(StreamConfig("cam", "scene:?seed=1&width=1280&height=720"), OTHER)
    assert client.app is not None
    hub = client.app[hub_key]
    for sock in await _stalled_viewers(client, "cam", mjpeg=1, websocket=1):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset

    async def all_gone() -> bool:
        return not hub.viewers

    await eventually(all_gone, 30, what="the reset viewers to be dropped")
    await keeps_delivering(client, "cam")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_a_stalled_mjpeg_viewer_ends_at_once_when_its_stream_is_removed(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its handler, stuck writing, never saw the removal: the viewer (and its place among
    ``max_viewers``) was held for as long as the client kept the connection open."""
    monkeypatch.setattr(pictures, "MJPEG_PART_TIMEOUT_S", 3600.0)  # it is the removal that ends it here
    client = await start_server(StreamConfig("cam", "scene:?seed=1&width=1280&height=720"), OTHER)
    assert client.app is not None
    hub = client.app[hub_key]
    [stalled] = await _stalled_viewers(client, "cam", mjpeg=1, websocket=0)
    try:
        assert (await client.delete("/api/streams/cam")).status == 204

        async def gone() -> bool:
            return not hub.viewers

        await eventually(gone, 30, what="the stalled MJPEG viewer to be let go")
    finally:
        stalled.close()
    await keeps_delivering(client)


async def test_an_mjpeg_viewer_that_stops_reading_is_let_go_after_the_part_time_out(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its stream goes on: without a bound on each part's write, only the client closing the
    connection ever freed the viewer."""
    monkeypatch.setattr(pictures, "MJPEG_PART_TIMEOUT_S", 1.0)
    client = await start_server(StreamConfig("cam", "scene:?seed=1&width=1280&height=720"))
    assert client.app is not None
    hub = client.app[hub_key]
    joined: list[Viewer] = []
    join = hub.join
    monkeypatch.setattr(hub, "join", lambda viewer: (join(viewer), joined.append(viewer)))
    host, port = str(client.server.host), int(client.server.port or 0)
    stalled = await asyncio.to_thread(_stalled_mjpeg, host, port, "cam")
    try:

        async def gone() -> bool:
            return bool(joined) and not hub.viewers

        await eventually(gone, 60, what="the stalled MJPEG viewer to be let go")
    finally:
        stalled.close()
    assert (await stream(client, "cam"))["state"] == "live"


async def test_an_mjpeg_viewer_is_not_closed_for_events_it_does_not_carry(start_server: Start) -> None:
    """Other streams' announcements piled up in it while it read slowly, and closed it as too slow."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1&width=320&height=192"))
    assert client.app is not None
    hub = client.app[hub_key]
    response = await client.get("/api/streams/cam/mjpeg")
    boundary = b"--" + response.headers["Content-Type"].split("boundary=")[1].encode()
    received = await asyncio.wait_for(response.content.readany(), 30)
    for n in range(MAX_PENDING_EVENTS + 1):  # all at once: the handler takes none of them meanwhile
        hub.announce({"type": "status", "v": 1, "stream": f"gone{n}", "state": "failed", "error": "gone"})
    seen = received.count(boundary)
    async with asyncio.timeout(30):
        while received.count(boundary) < seen + 3:
            chunk = await response.content.readany()
            assert chunk, "the MJPEG response ended"
            received += chunk
    response.close()


async def _come_and_go(session: aiohttp.ClientSession, url: str, index: int, arrived: list[int]) -> None:
    async with session.ws_connect(url) as ws:
        hello = await ws.receive_json(timeout=30)
        assert hello["type"] == "hello"
        await ws.send_json({"type": "subscribe", "streams": ["*"], "image": "annotated", "max_width": 160})
        arrived.append(index)
        if index % 3 == 0:  # a third leave without a goodbye
            transport = ws.get_extra_info("socket")
            transport.shutdown(socket.SHUT_RDWR)


async def test_hundreds_of_viewers_coming_and_going(start_server: Start) -> None:
    client = await start_server(OTHER)
    assert client.app is not None
    hub = client.app[hub_key]
    url = str(client.make_url("/ws"))
    tasks_before = len(asyncio.all_tasks())
    arrived: list[int] = []
    async with aiohttp.ClientSession() as session:
        for start in range(0, CHURN_CLIENTS, CHURN_CONCURRENCY):
            results = await asyncio.gather(
                *(_come_and_go(session, url, i, arrived) for i in range(start, start + CHURN_CONCURRENCY)),
                return_exceptions=True,
            )
            # Leaving without a goodbye may end in a ClientError on the client's side; nothing else may.
            unexpected = [r for r in results if isinstance(r, BaseException) and not isinstance(r, aiohttp.ClientError)]
            assert not unexpected, unexpected[:3]
    assert sorted(arrived) == list(range(CHURN_CLIENTS)), "every viewer connected, was greeted and subscribed"

    async def all_gone() -> bool:
        return not hub.viewers and len(asyncio.all_tasks()) <= tasks_before + 2

    await eventually(all_gone, 30, what="every viewer and its tasks to be gone")
    await keeps_delivering(client)


async def test_shutdown_joins_every_pipeline_thread() -> None:
    settings = Settings(model=str(BUNDLED_MODEL), streams=(OTHER, StreamConfig("cam", "scene:?seed=3")))
    server = TestServer(create_app(settings))
    await server.start_server()
    async with aiohttp.ClientSession() as session, session.get(server.make_url("/healthz")) as response:
        assert response.status == 200
    started = time.monotonic()
    await server.close()
    assert time.monotonic() - started < SHUTDOWN_BOUND_S
    left = [t.name for t in threading.enumerate() if t.name.startswith(PIPELINE_THREADS) and t.is_alive()]
    assert not left, left


async def _http_viewers_and_api_churn(base: str, stop: asyncio.Event, rounds: list[int], task: int) -> None:
    """Everything at once until ``stop``: WebSocket viewers churning, MJPEG readers, streams added and removed.

    ``rounds[task]`` counts the rounds that completed, each checked, so a test can tell the load ran.
    """
    async with aiohttp.ClientSession() as session:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                async with session.ws_connect(f"{base}/ws") as ws:
                    await ws.send_json({"type": "subscribe", "streams": ["*"], "image": "clean"})
                    assert (await ws.receive_json(timeout=10))["type"] == "hello"
                async with session.get(f"{base}/api/streams/a/mjpeg") as mjpeg:
                    assert (await mjpeg.content.readexactly(2)) == b"--", "an MJPEG part"
                    await mjpeg.content.read(2000)
                added = await session.post(f"{base}/api/streams", json={"id": f"{task}x{n}", "uri": "scene:?seed=9"})
                assert added.status == 201, await added.text()
                if n > 1:
                    assert (await session.delete(f"{base}/api/streams/{task}x{n - 1}")).status == 204
            except (aiohttp.ClientError, TimeoutError, asyncio.IncompleteReadError):
                return  # the server is going away
            rounds[task] += 1


async def test_sigterm_during_load_exits_cleanly_within_the_shutdown_grace() -> None:
    server = SegcastProcess("--model", "bundled", "--source", "a=scene:?seed=1", "--source", "b=scene:?seed=2")
    server.start()
    try:
        await asyncio.to_thread(server.wait_for_processed_frames)
        async with aiohttp.ClientSession() as session:
            held = [await session.ws_connect(f"{server.base_url}/ws") for _ in range(20)]
            for ws in held:
                await ws.send_json({"type": "subscribe", "streams": ["*"], "image": "annotated"})
            stop = asyncio.Event()
            rounds = [0] * LOAD_TASKS
            load = [
                asyncio.create_task(_http_viewers_and_api_churn(server.base_url, stop, rounds, task))
                for task in range(LOAD_TASKS)
            ]
            # Slow clients too: a request body trickling in (which held SIGTERM for aiohttp's 60 s default
            # grace), and request headers that never end.
            trickling, half_sent = await _trickling_body(server.port), await _half_sent_headers(server.port)

            async def loaded() -> bool:
                assert not any(task.done() for task in load), "a load task ended before SIGTERM"
                return min(rounds) >= LOAD_ROUNDS

            await eventually(loaded, 60, what=f"{LOAD_ROUNDS} rounds of each load task")
            children = server.children()
            code, took_s, output = await asyncio.to_thread(server.terminate, SHUTDOWN_BOUND_S)
            stop.set()
            await asyncio.gather(*load, return_exceptions=True)
            for ws in held:
                await ws.close()
            for writer in (trickling, half_sent):
                writer.close()
    finally:
        server.kill()
    assert code == 0, output
    assert took_s < SHUTDOWN_BOUND_S, f"took {took_s:.1f} s"
    assert "Traceback" not in output, output
    assert not _still_running(children), "child processes outlived segcast"


async def _trickling_body(port: int) -> asyncio.StreamWriter:
    """A POST whose body has begun and will not end; returns once segcast is handling it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /api/streams HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n"
    )
    await writer.drain()
    assert (await asyncio.wait_for(reader.readline(), 30)).startswith(b"HTTP/1.1 100"), "routed to its handler"
    writer.write(b'{"id": "slow", ')
    await writer.drain()
    return writer


async def _half_sent_headers(port: int) -> asyncio.StreamWriter:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    await writer.drain()
    return writer


def _still_running(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]
