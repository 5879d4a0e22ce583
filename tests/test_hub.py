"""Fan-out: every viewer gets its own latest-only slot, so a stalled viewer never holds up the others."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from server.frames import EncodedFrame, Frame, FrameResult
from server.hub import Hub, Viewer
from server.sources.base import StreamState


class RecordingSocket:
    """Stands in for a WebSocket; ``stalled`` ones never finish sending, like a client that stopped reading."""

    def __init__(self, stalled: bool = False) -> None:
        self.stalled = stalled
        self.frames: list[int] = []
        self.events: list[dict[str, Any]] = []
        self._never = asyncio.Event()

    async def send_json(self, data: dict[str, Any]) -> None:
        if self.stalled:
            await self._never.wait()
        if data["type"] == "frame":
            self.frames.append(data["seq"])
        else:
            self.events.append(data)

    async def send_bytes(self, data: bytes) -> None:
        if self.stalled:
            await self._never.wait()


def encoded(seq: int, stream_id: str = "cam") -> EncodedFrame:
    frame = Frame(stream_id, seq, time.time(), seq / 15, np.zeros((4, 4, 3), np.uint8))
    return EncodedFrame(FrameResult(frame, (), 1.0), b"\xff\xd8jpeg")


async def connect(hub: Hub, socket: RecordingSocket, streams: list[str]) -> tuple[Viewer, asyncio.Task[None]]:
    viewer = Viewer(socket)  # type: ignore[arg-type]
    hub.add_viewer(viewer)
    hub.subscribe(viewer, streams)
    return viewer, asyncio.create_task(viewer.send_forever())


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_stalled_viewer_does_not_delay_others() -> None:
    hub = Hub(asyncio.get_running_loop())
    stalled_socket, live_socket = RecordingSocket(stalled=True), RecordingSocket()
    stalled, stalled_task = await connect(hub, stalled_socket, ["cam"])
    _, live_task = await connect(hub, live_socket, ["cam"])
    for seq in range(50):
        hub.publish_threadsafe(encoded(seq))
        await settle()
    assert live_socket.frames == list(range(50))
    assert stalled_socket.frames == []
    assert stalled.dropped_frames == 48  # one stuck in send, one waiting in its slot, the rest replaced
    for task in (stalled_task, live_task):
        task.cancel()


async def test_viewer_gets_only_the_streams_it_subscribed_to() -> None:
    hub = Hub(asyncio.get_running_loop())
    socket = RecordingSocket()
    _, task = await connect(hub, socket, ["a"])
    hub.publish_threadsafe(encoded(1, "a"))
    hub.publish_threadsafe(encoded(2, "b"))
    await settle()
    assert socket.frames == [1]
    task.cancel()


async def test_new_subscriber_gets_the_newest_frame_at_once() -> None:
    hub = Hub(asyncio.get_running_loop())
    hub.publish_threadsafe(encoded(5))
    await settle()
    socket = RecordingSocket()
    _, task = await connect(hub, socket, ["*"])
    await settle()
    assert socket.frames == [5]
    task.cancel()


async def test_state_changes_reach_every_viewer_in_order() -> None:
    hub = Hub(asyncio.get_running_loop())
    socket = RecordingSocket()
    _, task = await connect(hub, socket, [])
    hub.state_threadsafe("cam", StreamState.LIVE, None)
    hub.state_threadsafe("cam", StreamState.FAILED, "cannot decode")
    await settle()
    assert [(e["state"], e["error"]) for e in socket.events] == [("live", None), ("failed", "cannot decode")]
    task.cancel()
