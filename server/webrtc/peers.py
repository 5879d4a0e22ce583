"""The WebRTC peers segcast holds: publishers (a browser's camera in) and players (annotated video out).

A publisher's track becomes a `WebRTCSource` stream in the `StreamManager`; when the peer closes,
its connection fails, or its video packets stop for `WebRTCConfig.publish_idle_timeout_s`, the stream is
ended, announced, and removed, and its reader and tracker are freed. The other way round, a stream
that fails (its reader refused the peer's frames, say, as larger than ``max_frame_side``) or is
removed closes its publisher, whose frames would otherwise keep coming to no one. Only the first
video a publisher offers is received, and a player only sends: every other media section is
answered ``inactive``, as nothing would read what aiortc decoded for it. An offer that could never
connect (no DTLS fingerprint, its video disabled, no codec in common) or lists more ICE candidates
than a browser would is refused before any peer is made for it, and its candidates in ``[server]
deny_networks`` are left out (`server.webrtc.offers`). A player gets an `AnnotatedTrack` fed by its
stream's shared `PlaybackFeed`.

A peer that has not connected soon after its answer is closed: a browser that gave up on ICE (the
bundled viewer falls back to the WebSocket after 3 s) or whose tab closed while its offer was on
the way says nothing, and aiortc would keep trying, and the slot, forever. A player gets
`WebRTCConfig.play_connect_timeout_s`; a publisher only `WebRTCConfig.publish_idle_timeout_s`, the
time its video may stop for: its stream exists from the answer on, holding its id (a reloaded page
publishing it again is refused as taken) and showing ``starting`` to every viewer.

A published stream's options (zones, lines, ``conf``... changed by ``PATCH``) are kept by its id when
its publisher ends it, and a publisher of that id starts with them again: a page publishes its camera
again after a lost connection, or after Stop, under the same id. Kept in memory only, for the last
`KEPT_OPTIONS_IDS` ids: a published camera is never saved to the config file.

A connected peer whose browser quit without a word is noticed by aioice alone, once ~30 s of ICE
consent checks went unanswered (`REMOTE_CLOSE`): packets from a player say nothing reliable sooner,
as a player of a stream with no frames to send may rightly send nothing either. A player whose offer
named its page's WebSocket (``socket``, the id that socket's ``hello`` gave) is closed as soon as that
socket closes (`socket_closed`), which a closed page's does at once, and as soon as a newer offer
naming that socket asks for the same stream: a page offers again only once it has let go of its
player, whose close may never have reached the server (its network went for a while, its socket
lived through it), and which would otherwise play to no one, counted as a viewer, until ICE gives up.

Everything here runs on the event loop. Each peer is closed exactly once: one whose offer was
refused by `_discard` (nothing was started for it), any other by `_close`, whichever of those
causes comes first, which frees its slot, feed and stream even where a step of it fails;
`PeerRegistry.close` does it for all of them at shutdown. Answering an offer awaits (ICE
gathering takes seconds with a STUN server that does not answer), so once it is answered the
registry checks again that the peer is still open and its stream still there before it starts
anything for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import replace
from typing import Any, Literal, NoReturn

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from server.config import StreamConfig
from server.delivery.encode import ImageKind
from server.delivery.hub import Hub
from server.delivery.viewer import is_local_client
from server.http.access.auth import TOKEN_EXPIRY_CHECK_S
from server.options import StreamOptions
from server.sources.base import StreamState
from server.streams import StreamManager, StreamOptionsError
from server.webrtc.config import WebRTCConfig
from server.webrtc.memory import Trimmer
from server.webrtc.offers import OfferError, connectable, refusal, without_denied_candidates
from server.webrtc.peer import Peer, PeerClosedError, PeerCounts, PeerLimitError, Skipped, StreamGoneError
from server.webrtc.playback import AnnotatedTrack, PlaybackFeed
from server.webrtc.source import WebRTCSource, pump

log = logging.getLogger(__name__)

#: The data channel a player opens to receive per-frame track metadata.
META_CHANNEL = "meta"
#: How long a new publisher may take to connect and send its first frame.
FIRST_FRAME_TIMEOUT_S = 20.0
#: Closing one peer (DTLS, SCTP, ICE) is quick on a LAN; never let shutdown wait longer than this.
CLOSE_TIMEOUT_S = 5.0
#: How many ended published streams' ids keep their options for a publisher of the id (`PeerRegistry.publish`).
KEPT_OPTIONS_IDS = 256
#: Why a peer closed when segcast did not close it. aiortc ends both causes alike (its DTLS transport
#: closes, then the connection, with no "failed" between): the browser closed it (a tab closed, Stop
#: pressed), or it stopped answering and aioice gave up on it.
REMOTE_CLOSE = "closed by the browser, or no answer to ICE consent checks for ~30 s (it quit, or its network went)"
#: Why a player bound to its page's WebSocket closed with it (`PeerRegistry.socket_closed`).
SOCKET_CLOSED = "its page's WebSocket closed"
#: Why a player bound to a page's WebSocket closed for a newer offer of that page (`PeerRegistry.play`).
REPLACED = "replaced by a newer player of the same page and stream"
#: What each role is called in logs.
ROLE_NAMES: dict[Literal["publish", "play"], str] = {"publish": "publisher", "play": "player"}


class PeerRegistry:
    """All WebRTC peers of one app, and the playback feeds of the streams they watch."""

    def __init__(self, config: WebRTCConfig, hub: Hub, manager: StreamManager, options: StreamOptions) -> None:
        self.config = config
        self._options = options
        self._hub = hub
        self._manager = manager
        self._peers: set[Peer] = set()
        self._feeds: dict[tuple[str, ImageKind], PlaybackFeed] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._refused = dict.fromkeys(
            ("max_peers", "max_players", "max_connecting_players", "max_peers_per_address"), 0
        )
        self._skipped_by_closed = Skipped()  # what peers no longer here skipped: the metrics are totals
        # The options of ended published streams, by id, oldest first (see the module's docstring).
        self._kept_options: OrderedDict[str, StreamOptions] = OrderedDict()
        # One thread draws overlays for every feed: rendering is cheap next to inference, and one
        # thread keeps it from competing with the model for cores.
        self._render = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webrtc-render")
        # What a closed peer freed goes back to the OS: glibc kept it (`server.webrtc.memory`).
        self._trimmer = Trimmer()
        hub.add_state_listener(self._stream_state)

    def has_stream(self, stream_id: str) -> bool:
        try:
            self._manager.config(stream_id)
        except KeyError:
            return False
        return True

    def connecting(self, stream_id: str, within_s: float) -> bool:
        """Whether the publisher of ``stream_id`` is still connecting as a live one does: answered less
        than ``within_s`` ago, its connection neither up, nor failed or closed, nor being closed."""
        now = time.monotonic()
        return any(
            peer.source is not None
            and peer.stream_id == stream_id
            and peer.closing is None
            and not peer.connected
            and peer.pc.connectionState in ("new", "connecting")
            and peer.answered_at is not None
            and now - peer.answered_at < within_s
            for peer in self._peers
        )

    def check_room(self, remote: str, role: Literal["publish", "play"] = "play") -> None:
        """Raise `PeerLimitError` if one more peer, from client address ``remote``, would pass a limit.

        Publishers may take any free slot, players only their share of them (``max_players``): a camera
        cannot be sent over the WebSocket, so however many players there are, one can still be published.
        Of the players, only ``max_connecting_players`` may be still connecting: a client that sends offers
        and never connects (loopback is every client behind a local reverse proxy, which the share per
        address does not limit) holds those until its offers time out, not every player's slot. Players
        from one address are limited to their share, so that one client cannot take every slot;
        publishers are not (each is a camera of its own). Each refusal is counted by the limit that made
        it (`counts`): an offer is checked before its body is read and again as its peer is added, and
        refused by one of the two checks at most.
        """
        config = self.config
        if len(self._peers) >= config.max_peers:
            # A camera cannot be sent over the WebSocket: a publisher can only wait for a free slot.
            remedy = (
                "stop another camera or WebRTC player" if role == "publish" else "close one or use the WebSocket viewer"
            )
            self._refuse("max_peers", f"too many WebRTC peers ({config.max_peers}); {remedy}")
        if role == "publish":
            return
        players = [peer for peer in self._peers if peer.role == "play"]
        if len(players) >= config.max_players:
            self._refuse(
                "max_players",
                f"too many WebRTC players ({config.max_players}): the other {config.max_peers - config.max_players} "
                f"of {config.max_peers} WebRTC peers are kept for published cameras; "
                "close one or use the WebSocket viewer",
            )
        if sum(not peer.connected for peer in players) >= config.max_connecting_players:
            self._refuse(
                "max_connecting_players",
                f"too many WebRTC players still connecting ({config.max_connecting_players}); "
                "offer again in a few seconds or use the WebSocket viewer",
            )
        if is_local_client(remote):
            return
        if sum(peer.remote == remote for peer in players) >= config.max_peers_per_address:
            self._refuse(
                "max_peers_per_address",
                f"{remote} has its limit of {config.max_peers_per_address} WebRTC players; "
                "close one or use the WebSocket viewer",
            )

    def _refuse(self, limit: str, message: str) -> NoReturn:
        """Count a refusal by ``limit`` and raise `PeerLimitError` with ``message``."""
        self._refused[limit] += 1
        raise PeerLimitError(message)

    def counts(self) -> PeerCounts:
        publishers = sum(peer.role == "publish" for peer in self._peers)
        skipped = replace(self._skipped_by_closed)
        for peer in self._peers:
            skipped.add(peer)
        return PeerCounts(publishers, len(self._peers) - publishers, dict(self._refused), skipped)

    async def publish(
        self,
        offer: RTCSessionDescription,
        stream_id: str,
        fps: float,
        remote: str,
        expires: float | None = None,
        capture_size: tuple[int, int] | None = None,
    ) -> RTCSessionDescription:
        """Answer a publisher's offer and start its stream; `OfferError` if the offer has no video.

        ``expires``: when the signed token the offer came with expires (Unix seconds), if it came with one.
        ``capture_size``: the publisher's camera's width and height, if it said (`WebRTCSource`).
        """
        connectable(offer.sdp)
        peer = self._new_peer("publish", stream_id, remote, expires)
        tracks: list[MediaStreamTrack] = []
        peer.pc.on("track", tracks.append)
        try:
            await self._accept(peer, offer)
            video = next((track for track in tracks if track.kind == "video"), None)
            if video is None:
                raise OfferError("the offer sends no video: add the camera's video track before creating it")
            for transceiver in peer.pc.getTransceivers():
                if transceiver.receiver.track is not video:
                    # Audio is not analysed, and a second camera would be a second stream: neither is
                    # received, so aiortc decodes nothing that no one reads.
                    transceiver.direction = "inactive"
            answer = await self._answer(peer)
            self._check_open(peer)
            peer.answered_at = time.monotonic()
            peer.source = WebRTCSource(remote, fps, capture_size)
            self._start_stream(stream_id, peer.source)
        except BaseException:
            await self._discard(peer)
            raise
        self._await_connection(peer, self.config.publish_idle_timeout_s)
        log.info("[%s] WebRTC publisher %s answered", stream_id, remote)
        peer.pump = self._spawn(self._run_publisher(peer, video, peer.source), f"webrtc-publish-{stream_id}")
        return answer

    def _start_stream(self, stream_id: str, source: WebRTCSource) -> None:
        """Start the published stream with the options its id had when it last ended here, else
        ``[stream_defaults]``. Kept options the model refuses now (a remote model described since) are
        dropped for the defaults, rather than the camera refused for options its page never sent."""
        options = self._kept_options.get(stream_id, self._options)
        try:
            self._manager.add_source(StreamConfig(stream_id, source.describe(), options=options), source)
        except StreamOptionsError as exc:
            if options is self._options:
                raise
            log.warning(
                "[%s] the options it had before are left out (%s): it starts with [stream_defaults]", stream_id, exc
            )
            self._manager.add_source(StreamConfig(stream_id, source.describe(), options=self._options), source)
        self._kept_options.pop(stream_id, None)

    async def play(
        self,
        offer: RTCSessionDescription,
        stream_id: str,
        kind: ImageKind,
        remote: str,
        expires: float | None = None,
        socket: str | None = None,
    ) -> RTCSessionDescription:
        """Answer a player's offer with the video of ``stream_id`` (which must exist), annotated or clean.

        The first video section the offer can receive on is answered ``sendonly``, every other section
        ``inactive``: a player sends nothing segcast would read. `StreamGoneError` if the stream was
        removed, `PeerClosedError` if the peer was closed, while the offer was answered.

        ``expires``: when the signed token the offer came with expires (Unix seconds), if it came with one.
        ``socket``: the id of the open WebSocket of the offer's page, whose close closes the player
        (`socket_closed`); the caller checks it is open, with no await before this call. The players
        of ``stream_id`` an earlier offer bound to it are closed (`REPLACED`), whatever becomes of this one.
        """
        description = connectable(offer.sdp)
        if socket is not None:
            # At once, not once this player is in its feed: a page offers again only after closing its
            # player, so one left where this offer fails would play to no one, holding a place (maybe the
            # one whose lack refuses this offer: it counts until closed) until ICE gives up on it. And
            # every player bound to the socket now is older than this one, with no order to keep.
            for older in list(self._peers):
                if older.socket == socket and older.stream_id == stream_id:
                    self._close_soon(older, REPLACED)
        peer = self._new_peer("play", stream_id, remote, expires)
        peer.socket = socket
        track = AnnotatedTrack(stream_id)
        peer.player = track

        def on_datachannel(channel: RTCDataChannel) -> None:
            if channel.label == META_CHANNEL:
                track.channel = channel

        peer.pc.on("datachannel", on_datachannel)
        try:
            await self._accept(peer, offer)
            video = [t for t in peer.pc.getTransceivers() if t.kind == "video"]
            if not video:
                raise OfferError("the offer has no video to receive: add a recvonly video transceiver")
            receiving = {
                media.rtp.muxId
                for media in description.media
                if media.kind == "video" and media.direction in ("sendrecv", "recvonly")
            }
            sending = next((t for t in video if t.mid in receiving), None)
            if sending is None:
                raise OfferError("the offer's video is send-only or inactive: make the video transceiver recvonly")
            for transceiver in peer.pc.getTransceivers():
                transceiver.direction = "sendonly" if transceiver is sending else "inactive"
            sending.sender.replaceTrack(track)
            answer = await self._answer(peer)
            # The stream first: its removal also closes every player of it (`_stream_removed`), and
            # a peer closed for that is refused as the stream being gone, not as a closed peer.
            if not self.has_stream(stream_id):
                raise StreamGoneError(stream_id)
            self._check_open(peer)
        except BaseException:
            await self._discard(peer)
            raise
        # Nothing awaits from the checks above until the player is in its feed: a `_close` begun
        # before them refused the offer, and one begun after them finds the feed to leave.
        self._await_connection(peer, self.config.play_connect_timeout_s)
        feed = self._feeds.get((stream_id, kind))
        if feed is None:
            feed = PlaybackFeed(stream_id, kind, self._hub, self._render, self._stream_removed)
            self._feeds[stream_id, kind] = feed
        feed.players.add(track)
        peer.feed = feed
        log.info("[%s] WebRTC player %s answered", stream_id, remote)
        return answer

    def socket_closed(self, socket_id: str) -> None:
        """Close the players bound to the WebSocket ``socket_id``, those still being answered too.

        Only the players whose own offer named it: an id binds the offerer's player and closes
        nothing else.
        """
        for peer in list(self._peers):
            if peer.socket == socket_id:
                self._close_soon(peer, SOCKET_CLOSED)

    async def close(self) -> None:
        """Close every peer and feed and stop the render thread; for app shutdown.

        Offers still being answered are refused (`PeerClosedError`), and so are new ones. The hub hears
        from the registry no more: every peer is closing, and the hub outlives the app's registry.
        """
        if not self._closed:  # closed once already: its listener is gone
            self._hub.remove_state_listener(self._stream_state)
        self._closed = True
        for peer in list(self._peers):
            self._close_soon(peer, "server shutdown")
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2 * CLOSE_TIMEOUT_S)
        for task in list(self._tasks):
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        for feed in list(self._feeds.values()):
            await feed.close()
        self._feeds.clear()
        await self._trimmer.close()
        await asyncio.to_thread(self._render.shutdown, wait=True)

    # -- internals ------------------------------------------------------------------------------

    def _new_peer(self, role: Literal["publish", "play"], stream_id: str, remote: str, expires: float | None) -> Peer:
        """A peer in the registry; `PeerLimitError` if it is full, or ``remote`` has its share of it.

        Checked and added with no await between, so offers answered in parallel cannot overfill it.
        A peer let in with a signed token is closed when the token expires: like a WebSocket opened
        with one, a connection outliving its token would keep a leaked URL showing the cameras.
        """
        if self._closed:
            raise PeerClosedError("the server is shutting down")
        self.check_room(remote, role)
        peer = Peer(RTCPeerConnection(self.config.rtc_configuration()), role, stream_id, remote)
        self._peers.add(peer)
        if expires is not None:
            peer.expiry = asyncio.get_running_loop().call_later(0.0, self._end_at, peer, expires)

        def on_state() -> None:
            state = peer.pc.connectionState
            if state == "connected" and not peer.connected:
                peer.connected = True
                if peer.connect_deadline is not None:
                    peer.connect_deadline.cancel()
                log.info("[%s] WebRTC %s %s connected", peer.stream_id, ROLE_NAMES[peer.role], peer.remote)
            if state == "failed":
                self._close_soon(peer, "connection lost" if peer.connected else "connection failed")
            if state == "closed":
                self._close_soon(peer, None)

        peer.pc.on("connectionstatechange", on_state)
        return peer

    def _end_at(self, peer: Peer, expires: float) -> None:
        """Close ``peer`` once the wall clock is past ``expires``, read again every `TOKEN_EXPIRY_CHECK_S`
        at most: the loop's timers run on the monotonic clock, which follows neither a step of the wall
        clock nor a suspend, so one timer set for the expiry could close the peer days after it."""
        left_s = expires - time.time()
        if left_s > 0:
            peer.expiry = asyncio.get_running_loop().call_later(
                min(left_s, TOKEN_EXPIRY_CHECK_S), self._end_at, peer, expires
            )
        else:
            self._close_soon(peer, "its access token expired")

    def _await_connection(self, peer: Peer, timeout_s: float) -> None:
        """Close ``peer`` unless it connects within ``timeout_s`` (see the module's docstring)."""
        if not peer.connected:
            peer.connect_deadline = asyncio.get_running_loop().call_later(
                timeout_s, self._close_soon, peer, f"not connected within {timeout_s:g} s"
            )

    async def _accept(self, peer: Peer, offer: RTCSessionDescription) -> None:
        """Apply the remote offer, less its candidates in ``[server] deny_networks``. aiortc fails with
        assorted exception types (even AttributeError) on bad input, so any failure means a bad offer."""
        sdp, dropped = without_denied_candidates(offer.sdp, self._manager.policy)
        if dropped:
            log.info(
                "[%s] WebRTC %s %s: %d ICE candidates in [server] deny_networks left out",
                peer.stream_id,
                ROLE_NAMES[peer.role],
                peer.remote,
                dropped,
            )
        try:
            await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=offer.type))
        except Exception as exc:
            self._check_open(peer)  # closed meanwhile (its page's socket, shutdown): no fault of the offer's
            raise refusal(exc, "the offer could not be used") from exc

    async def _answer(self, peer: Peer) -> RTCSessionDescription:
        # aiortc gathers its (host) candidates before this returns, so the answer needs no trickle.
        try:
            await peer.pc.setLocalDescription(await peer.pc.createAnswer())
        except Exception as exc:  # no codec or transport in common with the offer
            self._check_open(peer)  # or closed meanwhile: no fault of the offer's
            raise refusal(exc, "cannot answer the offer") from exc
        return peer.pc.localDescription

    def _check_open(self, peer: Peer) -> None:
        """`PeerClosedError` if ``peer`` began closing while its offer was answered."""
        if peer.closing is not None or peer not in self._peers:
            raise PeerClosedError(peer.close_reason or "the connection closed")

    async def _discard(self, peer: Peer) -> None:
        """Forget a peer whose offer failed; no stream or feed was started for it."""
        if peer.closing is not None:  # already being closed, by whatever closed it
            return
        self._peers.discard(peer)
        if peer.expiry is not None:
            peer.expiry.cancel()
        with suppress(Exception):
            await asyncio.wait_for(peer.pc.close(), CLOSE_TIMEOUT_S)

    async def _run_publisher(self, peer: Peer, track: MediaStreamTrack, source: WebRTCSource) -> None:
        receiver = next((t.receiver for t in peer.pc.getTransceivers() if t.receiver.track is track), None)
        reason = await pump(track, source, FIRST_FRAME_TIMEOUT_S, self.config.publish_idle_timeout_s, receiver)
        self._close_soon(peer, reason)

    def _stream_removed(self, stream_id: str) -> None:
        for peer in list(self._peers):
            if peer.role == "play" and peer.stream_id == stream_id:
                self._close_soon(peer, "the stream was removed")

    def _stream_state(self, stream_id: str, state: StreamState) -> None:
        """A published stream that failed closes its publisher: its reader takes no more frames.

        Its reader has announced that state, with the reason, so the stream is removed without another.
        ``ended`` is left alone: a WebRTC stream only ends by `_close`, whose publisher is already
        closing, and its ``ended`` comes once the id is free again; a new publisher may have taken
        that id by then, and must not be closed for the old one's end.
        """
        if state is not StreamState.FAILED:
            return
        for peer in list(self._peers):
            if peer.source is not None and peer.stream_id == stream_id:
                error = self._hub.states.get(stream_id, (state, None))[1]
                reason = f"the stream {state.value}" + (f": {error}" if error else "")
                self._close_soon(peer, reason, announce=False)

    def _close_soon(self, peer: Peer, reason: str | None, announce: bool = True) -> None:
        """Close ``peer`` once. ``announce``: a stream it publishes is announced ``ended`` with ``reason``.

        ``reason`` None: the browser closed it (or so it seems, `REMOTE_CLOSE`); its stream ends with
        no error, as a camera turned off does.
        """
        if peer.closing is None and peer in self._peers:
            peer.close_reason = reason
            peer.closing = self._spawn(self._close(peer, reason, announce), f"webrtc-close-{peer.stream_id}")

    async def _close(self, peer: Peer, reason: str | None, announce: bool) -> None:
        """End ``peer``'s stream if it publishes one, close its connection, then free what it holds here.

        What it holds is freed even where a step before failed (logged once): a peer left in the
        registry would hold a slot for good, and its feed would render for no one.
        """
        role = ROLE_NAMES[peer.role]
        for timer in (peer.connect_deadline, peer.expiry):
            if timer is not None:
                timer.cancel()
        try:
            try:
                if peer.source is not None:
                    final_state = (StreamState.ENDED, reason) if announce else None
                    await self._end_stream(peer.stream_id, peer.source, final_state)
            finally:
                await asyncio.wait_for(peer.pc.close(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning(
                "[%s] WebRTC %s %s did not close within %.0f s", peer.stream_id, role, peer.remote, CLOSE_TIMEOUT_S
            )
        except Exception:
            log.exception("[%s] WebRTC %s %s did not close cleanly", peer.stream_id, role, peer.remote)
        finally:
            await self._release(peer)
            self._trimmer.request()
        log.info("[%s] WebRTC %s %s closed: %s", peer.stream_id, role, peer.remote, reason or REMOTE_CLOSE)

    async def _release(self, peer: Peer) -> None:
        """Free what a closing ``peer`` holds here: its pump, player, feed and slot, whatever else failed.

        Its player is stopped even though closing the connection stops its sender: a close that failed
        or timed out may have left the sender waiting on the player for a frame, which no feed now gives.
        """
        if peer.pump is not None:
            # aiortc ends a closed connection's incoming track only once its transport had started: a
            # publisher closed before its video came would have its pump wait out `FIRST_FRAME_TIMEOUT_S`
            # (and shutdown wait for it).
            peer.pump.cancel()
        if peer.player is not None:
            peer.player.stop()
        try:
            if peer.feed is not None and peer.player is not None:
                await self._leave_feed(peer.feed, peer.player)
        except Exception:
            log.exception("[%s] WebRTC playback feed did not close cleanly", peer.stream_id)
        finally:
            if peer in self._peers:
                self._peers.discard(peer)
                self._skipped_by_closed.add(peer)

    async def _end_stream(
        self, stream_id: str, source: WebRTCSource, final_state: tuple[StreamState, str | None] | None
    ) -> None:
        """Free the stream (its reader, once stopped, reports nothing more), then announce ``final_state``.

        Only the stream reading ``source``: one removed through the API may have been added again
        under its id (from a URI, or by another publisher) before this publisher's pump noticed.

        The reader is stopped before the source ends, so that viewers get one ``ended`` status with
        the real reason (a lost connection) rather than the reader's reasonless one.
        """
        try:
            config = await asyncio.to_thread(self._manager.remove, stream_id, final_state, source)
        except KeyError:  # removed through the API, which told the viewers itself; its id may be taken again
            return
        finally:
            source.end()
        self._kept_options[stream_id] = config.options  # for a publisher of the id (`_start_stream`)
        self._kept_options.move_to_end(stream_id)
        if len(self._kept_options) > KEPT_OPTIONS_IDS:
            self._kept_options.popitem(last=False)

    async def _leave_feed(self, feed: PlaybackFeed, player: AnnotatedTrack) -> None:
        feed.players.discard(player)
        if not feed.players and self._feeds.get((feed.stream_id, feed.kind)) is feed:
            del self._feeds[feed.stream_id, feed.kind]
            await feed.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
