"""Fan-out to viewers, and the one place where threads hand work to the event loop.

Threads (readers, the encoder) call only the ``*_threadsafe`` methods, which schedule the real work
with ``call_soon_threadsafe``; everything else here runs on the loop. Each viewer owns a latest-only
slot per stream and its own sender task, so a viewer on a slow link only ever misses frames: it
never delays the others, and nothing queues up behind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from contextlib import suppress
from typing import Any

from aiohttp import web

from server.frames import PROTOCOL_VERSION, EncodedFrame
from server.sources.base import StreamState

log = logging.getLogger(__name__)

ALL_STREAMS = "*"


class Viewer:
    """One WebSocket client: what it subscribed to and what it has not been sent yet."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.streams: set[str] = set()
        self.sent_frames = 0
        self.dropped_frames = 0
        self._frames: dict[str, EncodedFrame] = {}
        self._events: list[dict[str, Any]] = []
        self._wake = asyncio.Event()

    def wants(self, stream_id: str) -> bool:
        return stream_id in self.streams or ALL_STREAMS in self.streams

    def offer_frame(self, encoded: EncodedFrame) -> None:
        stream_id = encoded.result.frame.stream_id
        if stream_id in self._frames:
            self.dropped_frames += 1
        self._frames[stream_id] = encoded
        self._wake.set()

    def offer_event(self, event: dict[str, Any]) -> None:
        """Events (state changes) are rare and each one matters, so they are kept in order, not replaced."""
        self._events.append(event)
        self._wake.set()

    async def send_forever(self) -> None:
        """The viewer's sender task: drains its own slots, so only this viewer waits on its socket."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            events, self._events = self._events, []
            frames, self._frames = self._frames, {}
            for event in events:
                await self.ws.send_json(event)
            for encoded in frames.values():
                await self.ws.send_json(encoded.metadata_json())
                await self.ws.send_bytes(encoded.jpeg)
                self.sent_frames += 1


class Hub:
    """Keeps the newest frame per stream and passes every frame and state change on to viewers."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._viewers: set[Viewer] = set()
        self.latest: dict[str, EncodedFrame] = {}

    # -- called from threads --------------------------------------------------------------------

    def publish_threadsafe(self, encoded: EncodedFrame) -> None:
        self._call_soon(self._publish, encoded)

    def state_threadsafe(self, stream_id: str, state: StreamState, error: str | None) -> None:
        self._call_soon(self.announce_state, stream_id, state, error)

    def _call_soon(self, callback: Any, *args: Any) -> None:
        with suppress(RuntimeError):  # the loop already closed during shutdown: nobody left to tell
            self._loop.call_soon_threadsafe(callback, *args)

    # -- on the loop ----------------------------------------------------------------------------

    def _publish(self, encoded: EncodedFrame) -> None:
        stream_id = encoded.result.frame.stream_id
        self.latest[stream_id] = encoded
        for viewer in self._viewers:
            if viewer.wants(stream_id):
                viewer.offer_frame(encoded)

    def announce_state(self, stream_id: str, state: StreamState, error: str | None) -> None:
        event = {"type": "status", "v": PROTOCOL_VERSION, "stream": stream_id, "state": state.value, "error": error}
        for viewer in self._viewers:
            viewer.offer_event(event)

    def forget_stream(self, stream_id: str) -> None:
        self.latest.pop(stream_id, None)
        event = {"type": "removed", "v": PROTOCOL_VERSION, "stream": stream_id}
        for viewer in self._viewers:
            viewer.offer_event(event)

    def add_viewer(self, viewer: Viewer) -> None:
        self._viewers.add(viewer)

    def remove_viewer(self, viewer: Viewer) -> None:
        self._viewers.discard(viewer)

    def subscribe(self, viewer: Viewer, streams: Iterable[str]) -> None:
        """Replace what ``viewer`` watches; it gets each stream's newest frame at once, not after the next."""
        viewer.streams = set(streams)
        for stream_id, encoded in self.latest.items():
            if viewer.wants(stream_id):
                viewer.offer_frame(encoded)

    def viewer_count(self, stream_id: str) -> int:
        return sum(1 for viewer in self._viewers if viewer.wants(stream_id))

    @property
    def viewers(self) -> frozenset[Viewer]:
        return frozenset(self._viewers)
