"""A viewer of live streams as the hub sees it: what it subscribed to, what it has not been given yet,
and the limits on what viewers may cost the server.

Everything here runs on the event loop. The hub (`server.delivery.hub`) offers each viewer every frame
and event; the viewer's own sender task takes them (`Viewer.take`), so what a viewer holds is only
ever one frame per stream and the events it is owed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from server.delivery.encode import ALL_STREAMS, FramePacket, Variant

FULL_ANNOTATED = Variant()
MAX_PENDING_EVENTS = 1000  # events queued for one viewer before it counts as gone
#: Defaults of ``[server] max_viewers``, ``max_viewers_per_address`` and ``max_scaled_images``.
MAX_VIEWERS = 500
MAX_VIEWERS_PER_ADDRESS = 32
MAX_SCALED_IMAGES = 4


class ViewerLimitError(RuntimeError):
    """One more viewer would exceed a limit; ``setting`` names it, the message says what to do."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True, slots=True)
class ViewerLimits:
    """What viewers may cost the server, whoever they are.

    Every scaled image size of a stream is one more encoding of each of its frames, so a stream's
    viewers share at most ``max_scaled_images`` sizes (as do the viewers of every stream, ``"*"``);
    a viewer asking for another gets the full-size image, which is always made. WebSocket and MJPEG
    viewers are limited in number, in all and per client address; loopback addresses are not
    counted per address, since behind a reverse proxy every viewer comes from one.
    """

    max_viewers: int = MAX_VIEWERS
    max_viewers_per_address: int = MAX_VIEWERS_PER_ADDRESS
    max_scaled_images: int = MAX_SCALED_IMAGES


@dataclass(frozen=True, slots=True)
class Subscription:
    """What one viewer wants of one stream: which image (None: metadata only), and how often."""

    image: Variant | None = FULL_ANNOTATED
    max_fps: float | None = None

    @property
    def min_interval_s(self) -> float:
        return 0.0 if not self.max_fps else 1.0 / self.max_fps


@dataclass(frozen=True, slots=True)
class Event:
    """A protocol event (docs/protocol.md) on its way to viewers, serialised once for all of them."""

    data: Mapping[str, Any]
    text: str

    @classmethod
    def of(cls, data: dict[str, Any]) -> Event:
        return cls(data, json.dumps(data))

    def removes(self, stream_id: str) -> bool:
        """Whether this is the event that says ``stream_id`` was removed."""
        return self.data.get("type") == "removed" and self.data.get("stream") == stream_id


@dataclass(frozen=True, slots=True)
class Delivery:
    """A frame handed to one viewer, with the variant it subscribed to (None: metadata only)."""

    packet: FramePacket
    variant: Variant | None

    @property
    def jpeg(self) -> bytes | None:
        return None if self.variant is None else self.packet.jpegs.get(self.variant)


class Viewer:
    """One client: what it subscribed to and what it has not been given yet.

    Frames go into a one-frame slot per stream (a newer frame replaces an unsent one, counted in
    `dropped_frames`); events are rare and each matters, so they are kept in order. A closed viewer
    takes nothing more: what it holds is handed over once, and then `take` returns empty lists.

    A viewer of ``pictures_only`` (an MJPEG response) sends no events, so it keeps none: it would
    otherwise be closed as too slow for events that it never sends, piled up while its client read
    slowly. It is closed instead when a stream it watches is removed, which is all it needs to know.
    """

    def __init__(self, name: str = "viewer", address: str | None = None, *, pictures_only: bool = False) -> None:
        self.name = name
        #: The client's address, for `ViewerLimits.max_viewers_per_address`.
        self.address = address
        self.pictures_only = pictures_only
        self.subscriptions: dict[str, Subscription] = {}
        #: Frames replaced in a slot before they were taken (`Hub.frames_skipped`, for /metrics).
        self.dropped_frames = 0
        self._frames: dict[str, Delivery] = {}
        self._events: list[Event] = []
        self._next_due: dict[str, float] = {}
        #: The frame last taken of each stream (seq, capture time): however many paths offer a frame
        #: (its publication, a late encoding for a new image size), it is sent once.
        self._taken: dict[str, tuple[int, float]] = {}
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self.closed = False
        self.too_slow = False

    def subscription(self, stream_id: str) -> Subscription | None:
        return self.subscriptions.get(stream_id) or self.subscriptions.get(ALL_STREAMS)

    def wants(self, stream_id: str) -> bool:
        return self.subscription(stream_id) is not None

    def offer_packet(self, packet: FramePacket, now: float | None = None, *, catch_up: bool = False) -> None:
        """Take ``packet`` into this viewer's slot, unless its frame-rate limit says to skip it.

        ``catch_up``: the frame is the stream's newest as this viewer subscribed, sent so that a picture
        shows at once. It goes without its events: they were told as it was published, to whoever watched
        the stream then, and a client reading events from frames would be told them twice (once more per
        subscription), or told of tracks ending that it never saw start. The slot keeping that very frame
        unsent, as it was published to this viewer, keeps it as it was: those events are this viewer's news.
        """
        subscription = self.subscription(packet.stream_id)
        if subscription is None or self.closed:
            return
        variant = subscription.image
        if variant is not None and variant not in packet.jpegs:
            return  # encoded before this viewer asked for the variant; the hub sends it a late copy
        frame = (packet.seq, packet.result.frame.capture_time)
        if self._taken.get(packet.stream_id) == frame:
            return
        if catch_up and not self._holds_news_of(packet):
            packet = without_events(packet)
        now = time.monotonic() if now is None else now
        interval = subscription.min_interval_s
        if interval:
            due = self._next_due.get(packet.stream_id)
            if due is None:  # the stream's first frame: the next is a whole interval away
                self._next_due[packet.stream_id] = now + interval
            elif now < due:
                return
            else:  # keep the cadence even when a frame arrives a little early or late
                self._next_due[packet.stream_id] = max(due + interval, now + interval / 2)
        if packet.stream_id in self._frames:
            self.dropped_frames += 1
        self._frames[packet.stream_id] = Delivery(packet, variant)
        self._taken[packet.stream_id] = frame
        self._wake.set()

    def _holds_news_of(self, packet: FramePacket) -> bool:
        """Whether the slot holds ``packet``'s frame, unsent, with the events it was published with."""
        held = self._frames.get(packet.stream_id)
        return held is not None and held.packet.result is packet.result and bool(held.packet.metadata.get("events"))

    @property
    def pending(self) -> bool:
        """Whether `take` would return at once."""
        return bool(self._events or self._frames or self.closed)

    def offer_event(self, event: Event) -> None:
        """Queue ``event``; a viewer so far behind that `MAX_PENDING_EVENTS` pile up is closed instead,
        keeping those it has (it is owed them, in order, before it is told it was too slow).

        Events may not be dropped the way frames are, so the only bound that keeps them all is to
        give up on a client that has stopped taking them.
        """
        if self.closed:
            return
        if self.pictures_only:
            if any(event.removes(stream_id) for stream_id in self.subscriptions):
                self.close()
            return
        if len(self._events) >= MAX_PENDING_EVENTS:
            self.too_slow = True
            self.close()
            return
        self._events.append(event)
        self._wake.set()

    def greet(self, hello: Event) -> None:
        """Queue the first message of a connection, before anything announced while it was opened.

        A viewer joins before its WebSocket is upgraded (so that a full server refuses it with a plain
        HTTP error), and a stream's ``status`` or ``added`` announced meanwhile would reach the client
        before the ``hello`` it cannot yet place. Those are already in ``hello``'s list, so they go.
        """
        self._events = [hello]
        self._wake.set()

    def resubscribe(self, subscriptions: Mapping[str, Subscription]) -> None:
        """Replace what this viewer watches. A viewer in a hub goes through `Hub.subscribe` instead,
        which counts the change (the hub never recounts every viewer's subscriptions)."""
        self.subscriptions = dict(subscriptions)
        self._next_due.clear()
        self._taken.clear()  # a frame may be wanted again, as another image
        self._frames = {k: v for k, v in self._frames.items() if self.wants(k)}

    def forget(self, stream_id: str) -> None:
        """Drop the unsent frame of ``stream_id``: the stream was removed or restarted on another source,
        and a frame of what it was must not follow the ``removed`` or ``added`` the viewer is told."""
        self._frames.pop(stream_id, None)
        self._next_due.pop(stream_id, None)
        self._taken.pop(stream_id, None)

    def close(self) -> None:
        """End this viewer (too slow, its stream removed, server shutdown): `take` hands over what it
        holds at once, then returns empty lists; `wait_closed` returns."""
        self.closed = True
        self._closed.set()
        self._wake.set()

    async def wait_closed(self) -> None:
        """Return once this viewer is closed: a sender blocked on its client races this, to leave at once."""
        await self._closed.wait()

    async def take(self) -> tuple[list[Event], list[Delivery]]:
        """Wait until there is something to send, then take all of it: events first, then frames.

        Returns empty lists once the viewer is closed and what it held has been taken.
        """
        while not self.pending:
            self._wake.clear()
            await self._wake.wait()
        events, self._events = self._events, []
        frames, self._frames = self._frames, {}
        return events, list(frames.values())


def without_events(packet: FramePacket) -> FramePacket:
    """``packet`` with ``"events": []`` in its ``frame`` message (`Viewer.offer_packet`): serialised again,
    for the rare frame that has events, in its own copy, so the hub's and other viewers' stay whole."""
    if not packet.metadata.get("events"):
        return packet
    metadata = {**packet.metadata, "events": []}
    text = json.dumps(metadata, separators=(",", ":"))
    return FramePacket(packet.result, MappingProxyType(metadata), text, packet.jpegs)


def is_local_client(address: str) -> bool:
    """Whether a client at ``address`` is on this machine (a reverse proxy, say), so not limited per address."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a Unix socket's path, say: not a network client
        return True
