"""What one WebRTC peer is to segcast: its record, what peers skipped, and the errors an offer may get.

`PeerRegistry` (`server.webrtc.peers`) admits, answers and closes peers. These are the plain values it
keeps and hands out: the `Peer` it holds for each connection, the `PeerCounts` that ``/metrics`` reads,
and the errors the routes answer an offer with. They are a module of their own so that those readers
name them without the registry, whose module is the peers' life cycle alone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal

from aiortc import RTCPeerConnection

from server.webrtc.playback import AnnotatedTrack, PlaybackFeed
from server.webrtc.source import WebRTCSource


class PeerClosedError(RuntimeError):
    """The peer was closed while its offer was answered (its access token expired, the server is stopping)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the WebRTC peer was closed before its offer was answered: {reason}")


class StreamGoneError(LookupError):
    """The stream to play was removed while the offer was answered."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"no stream {stream_id!r} (it was removed); GET /api/streams lists them")


class PeerLimitError(RuntimeError):
    """Every WebRTC peer slot is taken, or every one a client address may have."""


@dataclass
class Skipped:
    """Frames and metadata peers let go of, newest first: a slow reader or sender skips, never queues."""

    #: A player's video frames its encoder was too slow to take (`AnnotatedTrack.dropped_frames`).
    player_frames: int = 0
    #: A player's frame metadata not sent, its data channel too far behind (`AnnotatedTrack.dropped_meta`).
    player_metadata: int = 0
    #: A publisher's frames its stream's reader had not taken before the next came (`FrameHandover.dropped`).
    publisher_frames: int = 0

    def add(self, peer: Peer) -> None:
        if peer.player is not None:
            self.player_frames += peer.player.dropped_frames
            self.player_metadata += peer.player.dropped_meta
        if peer.source is not None:
            self.publisher_frames += peer.source.handover.dropped


@dataclass(frozen=True, slots=True)
class PeerCounts:
    """What ``/metrics`` tells of the WebRTC peers: the slots each role holds now (peers being answered
    and closing included, as they count against the limits), the offers refused so far by each
    limit (`PeerRegistry.check_room`), and what peers skipped since start, closed ones included."""

    publishers: int
    players: int
    refused: dict[str, int]
    skipped: Skipped


@dataclass(eq=False)
class Peer:
    """One browser's WebRTC connection: a camera it publishes into ``stream_id`` (``source``, moved by
    ``pump``) or a stream it plays (``player``, fed by ``feed``), and the timers and task that end it.

    Kept by `PeerRegistry` from its offer until it is closed; ``remote`` is the client address it came
    from, by which players are limited to their share (`PeerRegistry.check_room`).
    """

    pc: RTCPeerConnection
    role: Literal["publish", "play"]
    stream_id: str
    remote: str
    source: WebRTCSource | None = None
    player: AnnotatedTrack | None = None
    feed: PlaybackFeed | None = None
    connect_deadline: asyncio.TimerHandle | None = field(default=None, repr=False)
    #: When the signed token the peer was let in with expires, it is closed (`PeerRegistry._end_at`).
    expiry: asyncio.TimerHandle | None = field(default=None, repr=False)
    closing: asyncio.Task[None] | None = field(default=None, repr=False)
    #: A publisher's task moving its video into its stream (`pump`), ended by `PeerRegistry._close`.
    pump: asyncio.Task[None] | None = field(default=None, repr=False)
    #: Why it is being closed, for an offer still being answered when that began.
    close_reason: str | None = None
    #: Whether it ever connected: a connection lost is not one that failed to connect.
    connected: bool = False
    #: The id of the page's WebSocket it closes with (`PeerRegistry.socket_closed`), if it named one.
    socket: str | None = None
    #: When its offer was answered (`time.monotonic`): how long it has been connecting.
    answered_at: float | None = None
