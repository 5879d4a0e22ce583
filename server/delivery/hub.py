"""Fan-out to viewers, and the one place where threads hand work to the event loop.

Threads (readers, the encoder, the stream manager) call only the ``*_threadsafe`` methods, which
schedule the real work with ``call_soon_threadsafe``; everything else here runs on the loop. Each
viewer (a WebSocket, an MJPEG response) owns a latest-only slot per stream and is drained by its own
task, so a viewer on a slow link only ever misses frames: it never delays the others, and nothing
queues up behind it.

The hub also knows which image variants its viewers want, and tells the encoder, so that each
variant is encoded once per frame and only while someone wants it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from server.delivery.encode import ALL_STREAMS, FramePacket, Variant
from server.delivery.late_encoding import LateEncoder, scales
from server.delivery.stream_stats import StreamStats
from server.delivery.viewer import Event, Subscription, Viewer, ViewerLimitError, ViewerLimits, is_local_client
from server.frames import PROTOCOL_VERSION
from server.inference.models import InferenceStatus
from server.log_throttle import ThrottledCount
from server.sources.base import StreamState

log = logging.getLogger(__name__)

#: How long a removed stream's late frames and states are still recognised and dropped. They come
#: from a frame that was in the encoder at the removal, so within one encode; this is ample.
REMOVED_GRACE_S = 10.0
#: Frames a late encoding for a new viewer follows on: each newer one made before the encoder heard
#: of the viewer's image size. More only where the encoder never makes that image (it fails).
LATE_ENCODING_TURNS = 3
#: Viewers refused by one limit are logged in one line per this long, with how many since the last:
#: a client retrying in a loop would otherwise write a line per attempt.
REFUSAL_LOG_INTERVAL_S = 60.0

#: Told the images wanted per stream id whenever they change. The mapping is the hub's own, read-only
#: and kept up to date: a listener copies what it keeps (the encoder does).
WantedListener = Callable[[Mapping[str, frozenset[Variant]]], None]
PacketListener = Callable[[FramePacket], None]
StateListener = Callable[[str, StreamState], None]
RemovalListener = Callable[[str], None]
InferenceListener = Callable[[InferenceStatus], None]
_Key = TypeVar("_Key")


class Hub:
    """Keeps the newest frame per stream and passes every frame and state change on to viewers.

    The newest frame keeps the images encoded of it since it was published too (`LateEncoder`), for snapshots
    and for viewers that asked for a new image (`snapshot`, `subscribe`): each image once, and for snapshots a
    scaled size only while the stream has fewer than ``max_scaled_images`` in all (`ViewerLimits`), so
    a frame never holds more than its viewers' images and a few more.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: ViewerLimits | None = None) -> None:
        self._loop = loop
        self.limits = limits or ViewerLimits()
        #: Viewers refused by `join`, by the setting that refused them; for /metrics.
        self.refused: Counter[str] = Counter()
        self._refusals_logged: dict[str, ThrottledCount] = {}
        #: Subscriptions given another image because their stream had all its scaled sizes.
        self._subscriptions_refused = 0
        #: What the clients that left counted (`frames_skipped`, `closed_too_slow`).
        self._skipped_by_gone = 0
        self._too_slow_gone = 0
        self._viewers: set[Viewer] = set()
        #: Viewers that stand for clients limited and counted elsewhere (a stream's WebRTC players, who
        #: share one): how many watch through each now. Not clients themselves, so neither in `viewers`
        #: nor in `max_viewers`. A few at most (WebRTC peers are limited), so walked when counted.
        self._relays: dict[Viewer, Callable[[], int]] = {}
        self._stats: dict[str, StreamStats] = {}
        self._on_wanted: WantedListener | None = None
        self._packet_listeners: list[PacketListener] = []
        self._state_listeners: list[StateListener] = []
        self._removal_listeners: list[RemovalListener] = []
        self._inference_listeners: list[InferenceListener] = []
        #: Every count below changes by one viewer's subscriptions at a time, as it subscribes, joins or
        #: leaves: a subscription costs its own entries, never a walk over every viewer's (a few
        #: viewers resubscribing long lists would otherwise stall the loop for everyone).
        self._wanted: dict[str, frozenset[Variant]] = {}
        self._wanted_view: Mapping[str, frozenset[Variant]] = MappingProxyType(self._wanted)
        #: Viewers wanting each image, per stream id they name (and `ALL_STREAMS`): `_wanted` without
        #: the counts, and the scaled sizes `_within_limits` finds in use.
        self._images: dict[str, dict[Variant, int]] = {}
        #: Viewers of pictures per stream id they name, and of every stream's: counted when subscriptions
        #: change, not each time a count is read (every open viewer page polls the stream list).
        #: A metadata-only subscription is not counted: the viewer page has one beside its WebRTC
        #: player, which its relay counts, so one person would be two viewers.
        self._watching: dict[str, int] = {}
        self._watching_all = 0
        #: Of those viewers of every stream's pictures, the ones taking only the metadata of a stream id.
        self._unwatched: dict[str, int] = {}
        self.latest: dict[str, FramePacket] = {}
        #: The metadata of each stream's newest analysed frame. `latest` may be one shown unanalysed while
        #: inference is unavailable, whose empty tracks say nothing: ``/tracks`` answers with these.
        self.latest_analysed: dict[str, Mapping[str, Any]] = {}
        self.states: dict[str, tuple[StreamState, str | None]] = {}
        self.inference = InferenceStatus(available=True)
        #: Streams removed (and not added again) in the last `REMOVED_GRACE_S`: a frame of one that
        #: was still in the encoder arrives after the removal, and must not bring it back.
        self._removed: dict[str, asyncio.TimerHandle] = {}
        #: When each stream was last added (monotonic, as `Frame.capture_monotonic`: a wall clock set
        #: back after an add hid the stream's frames until it caught up), until its first frame captured
        #: since: a stream restarted on a new camera must not show a late frame of the old one.
        #: And whether it was restarted (not removed first): then those late frames' track events still go out.
        self._added_at: dict[str, tuple[float, bool]] = {}
        #: Encodes the images of `latest` that the encoder did not make, for snapshots and new viewers.
        self._late = LateEncoder(loop, self.latest, self._wanted_view, self.limits)

    # -- called from threads --------------------------------------------------------------------

    def publish_threadsafe(self, packet: FramePacket) -> None:
        self._call_soon(self._publish, packet)

    def state_threadsafe(self, stream_id: str, state: StreamState, error: str | None) -> None:
        self._call_soon(self.announce_state, stream_id, state, error)

    def inference_threadsafe(self, status: InferenceStatus) -> None:
        """Inference became available or unavailable (a remote server came or went): tell every viewer."""
        self._call_soon(self.announce_inference, status)

    def stream_added_threadsafe(self, stream_id: str) -> None:
        """A stream was added, or restarted with new settings: tell every viewer. Comes before any frame
        or state of the new stream.

        What was kept of the id's earlier source goes (its newest frame, which snapshots, ``/tracks``
        and new viewers would be given), and so does any of its frames captured before this call
        that arrives late (it was in the encoder).
        """
        self._call_soon(self._stream_added, stream_id, time.monotonic())

    def stream_removed_threadsafe(self, stream_id: str) -> None:
        """A stream was removed: drop what is kept of it, ignore its late frames, tell every viewer."""
        self._call_soon(self._stream_removed, stream_id)

    def _call_soon(self, callback: Any, *args: Any) -> None:
        with suppress(RuntimeError):  # the loop already closed during shutdown: nobody left to tell
            self._loop.call_soon_threadsafe(callback, *args)

    # -- on the loop ----------------------------------------------------------------------------

    def set_wanted_listener(self, listener: WantedListener) -> None:
        self._on_wanted = listener
        listener(self._wanted_view)

    def add_packet_listener(self, listener: PacketListener) -> None:
        """Call ``listener`` on the loop with every published frame, in order (event outputs).

        It must return at once: it runs before the frame reaches any viewer.
        """
        self._packet_listeners.append(listener)

    def add_state_listener(self, listener: StateListener) -> None:
        """Call ``listener`` on the loop with every state a stream announces, in order (event outputs)."""
        self._state_listeners.append(listener)

    def remove_state_listener(self, listener: StateListener) -> None:
        """Stop calling ``listener`` (added by `add_state_listener`), for an owner that closes before the hub."""
        self._state_listeners.remove(listener)

    def add_removal_listener(self, listener: RemovalListener) -> None:
        """Call ``listener`` on the loop with the id of every stream removed (not restarted with new options)."""
        self._removal_listeners.append(listener)

    def add_inference_listener(self, listener: InferenceListener) -> None:
        """Call ``listener`` on the loop with every change of `inference`, in order (event outputs)."""
        self._inference_listeners.append(listener)

    def _stream_added(self, stream_id: str, added_at: float) -> None:
        expiry = self._removed.pop(stream_id, None)
        if expiry is not None:
            expiry.cancel()
        self.latest.pop(stream_id, None)
        self.latest_analysed.pop(stream_id, None)
        self._late.forget(stream_id)
        self._added_at[stream_id] = (added_at, expiry is None)
        for viewer in self._viewers:
            viewer.forget(stream_id)
        self.announce({"type": "added", "v": PROTOCOL_VERSION, "stream": stream_id})

    def _stream_removed(self, stream_id: str) -> None:
        expiry = self._removed.pop(stream_id, None)
        if expiry is not None:
            expiry.cancel()
        self._removed[stream_id] = self._loop.call_later(REMOVED_GRACE_S, self._removed.pop, stream_id, None)
        self.latest.pop(stream_id, None)
        self.latest_analysed.pop(stream_id, None)
        self._late.forget(stream_id)
        self._stats.pop(stream_id, None)
        self.states.pop(stream_id, None)
        self._added_at.pop(stream_id, None)
        for viewer in self._viewers:
            viewer.forget(stream_id)
        self.announce({"type": "removed", "v": PROTOCOL_VERSION, "stream": stream_id})
        for listener in self._removal_listeners:
            try:
                listener(stream_id)
            except Exception:  # an output's bug must not stop the others hearing of it
                log.exception("[%s] a removal listener failed", stream_id)

    def _publish(self, packet: FramePacket) -> None:
        stream_id = packet.stream_id
        if stream_id in self._removed:
            return
        if stream_id in self._added_at:
            added_at, restarted = self._added_at[stream_id]
            if packet.result.frame.capture_monotonic < added_at:  # of the source the stream had before
                if restarted:  # ids go on across a restart, and its tracker ends these tracks: not a picture
                    self._pass_on_events(packet)
                return
            del self._added_at[stream_id]  # frames come in order: every later one is of the new source
        widths_before = {key: self._frame_width(key) for key in (stream_id, ALL_STREAMS)}
        self.latest[stream_id] = packet
        self._judge_widened(widths_before)
        if packet.result.analysed:
            self.latest_analysed[stream_id] = packet.metadata
        self._stats.setdefault(stream_id, StreamStats()).add(packet)
        self._pass_on_events(packet)
        now = time.monotonic()
        for viewer in self._viewers:
            viewer.offer_packet(packet, now)

    def _pass_on_events(self, packet: FramePacket) -> None:
        """Hand ``packet`` to the event outputs, and its events to the viewers that watch its stream, as its
        ``frame`` message has them: with the ``event_id`` the outputs send too (`make_packet`)."""
        for listener in self._packet_listeners:
            try:
                listener(packet)
            except Exception:  # an output's bug must not cost viewers their frames
                log.exception("[%s] a frame listener failed", packet.stream_id)
        events = [Event.of(event) for event in _events_of(packet)]
        for viewer in self._viewers if events else ():
            if viewer.wants(packet.stream_id):
                for event in events:
                    viewer.offer_event(event)

    def announce_state(self, stream_id: str, state: StreamState, error: str | None) -> None:
        if stream_id in self._removed:
            return
        self.states[stream_id] = (state, error)
        self.announce(
            {"type": "status", "v": PROTOCOL_VERSION, "stream": stream_id, "state": state.value, "error": error}
        )
        for listener in self._state_listeners:
            try:
                listener(stream_id, state)
            except Exception:  # an output's bug must not stop the others hearing of it
                log.exception("[%s] a state listener failed", stream_id)

    def announce_inference(self, status: InferenceStatus) -> None:
        self.inference = status
        self.announce({"type": "inference", "v": PROTOCOL_VERSION, **status.to_json()})
        for listener in self._inference_listeners:
            try:
                listener(status)
            except Exception:  # an output's bug must not stop the others hearing of it
                log.exception("an inference listener failed")

    def announce(self, data: dict[str, Any]) -> None:
        event = Event.of(data)
        for viewer in self._viewers:
            viewer.offer_event(event)

    def add_viewer(self, viewer: Viewer, audience: Callable[[], int] | None = None) -> None:
        """Add ``viewer`` whatever the limits: for viewers limited elsewhere (WebRTC peers).

        ``audience``: ``viewer`` relays what it takes to clients counted elsewhere (a stream's WebRTC
        players), and this says how many there are now. They count as viewers of the streams it
        watches (`viewer_count`); the relay is no client itself (`viewers`, ``max_viewers``).
        """
        if viewer in self._viewers:
            return
        self._viewers.add(viewer)
        if audience is not None:
            self._relays[viewer] = audience
        self._count(viewer.subscriptions, 1)
        self._update_wanted(viewer.subscriptions)

    def join(self, viewer: Viewer) -> None:
        """Add ``viewer`` if the `ViewerLimits` leave room for it, else raise `ViewerLimitError`."""
        limits = self.limits
        if len(self._viewers) - len(self._relays) >= limits.max_viewers:
            raise self._refuse(
                viewer,
                "max_viewers",
                f"the server has its limit of {limits.max_viewers} viewers ([server] max_viewers); try again later",
            )
        address = viewer.address
        counted = address is not None and not is_local_client(address)
        if counted and sum(1 for other in self._viewers if other.address == address) >= limits.max_viewers_per_address:
            raise self._refuse(
                viewer,
                "max_viewers_per_address",
                f"{address} has its limit of {limits.max_viewers_per_address} viewers "
                "([server] max_viewers_per_address); close one first",
            )
        self.add_viewer(viewer)

    def _refuse(self, viewer: Viewer, setting: str, message: str) -> ViewerLimitError:
        """The error refusing ``viewer`` by ``setting``: counted, and logged in one line per
        `REFUSAL_LOG_INTERVAL_S` and limit."""
        self.refused[setting] += 1
        throttle = self._refusals_logged.setdefault(setting, ThrottledCount(REFUSAL_LOG_INTERVAL_S))
        if refused := throttle.add():
            log.warning(
                "refused a viewer from %s (%d refused by %s since the last such line): %s",
                viewer.address,
                refused,
                setting,
                message,
            )
        return ViewerLimitError(setting, message)

    def remove_viewer(self, viewer: Viewer) -> None:
        if viewer not in self._viewers:
            return
        self._viewers.remove(viewer)
        if self._relays.pop(viewer, None) is None:
            self._skipped_by_gone += viewer.dropped_frames
            self._too_slow_gone += viewer.too_slow
        self._count(viewer.subscriptions, -1)
        self._update_wanted(viewer.subscriptions)

    def subscribe(self, viewer: Viewer, subscriptions: Mapping[str, Subscription]) -> None:
        """Replace what ``viewer`` watches; it gets each stream's newest frame at once, not after the next.

        A newest frame that lacks the variant the viewer asked for is encoded once more, off the loop.
        A scaled size beyond the stream's `ViewerLimits.max_scaled_images` is replaced by the full size.
        The work is that of the viewer's old and new entries, however many others watch.
        """
        joined = viewer in self._viewers
        before = viewer.subscriptions
        if joined:
            self._count(before, -1)  # its own sizes do not count against it
        viewer.resubscribe(self._within_limits(subscriptions))
        if joined:
            self._count(viewer.subscriptions, 1)
            self._update_wanted(before.keys() | viewer.subscriptions.keys())
        for stream_id, packet in list(self.latest.items()):
            subscription = viewer.subscription(stream_id)
            if subscription is None:
                continue
            variant = subscription.image
            if variant is None or variant in packet.jpegs:
                viewer.offer_packet(packet, catch_up=True)
            else:
                task = self._loop.create_task(self._offer_late(viewer, packet, variant))
                task.add_done_callback(_log_failure)

    def _within_limits(self, subscriptions: Mapping[str, Subscription]) -> dict[str, Subscription]:
        """``subscriptions`` with scaled images that would be one size too many per stream made full size,
        judged by the sizes the other viewers use (the subscribing viewer's own are not counted now)."""
        admitted: dict[str, Subscription] = {}
        for key, subscription in subscriptions.items():
            image = subscription.image
            if image is not None and image.max_width is not None and not self._has_room(key, image):
                self._subscriptions_refused += 1
                subscription = dataclasses.replace(subscription, image=image.full_size)
            admitted[key] = subscription
        return admitted

    def _has_room(self, key: str, image: Variant) -> bool:
        """Whether the viewers of ``key`` may have the scaled ``image``: in use already, or a size to spare.

        A width at or above the frames' is their full size, encoded as one image with it: never counted as
        a scaled size. Before a frame is known (`_frame_width`) every ``max_width`` counts.
        """
        in_use: Mapping[Variant, int] = self._images.get(key, {})
        width = self._frame_width(key)
        if image in in_use or not scales(image, width):
            return True
        return sum(1 for variant in in_use if scales(variant, width)) < self.limits.max_scaled_images

    def _judge_widened(self, widths_before: Mapping[str, int | None]) -> None:
        """Judge again the images of the viewers admitted as full size of frames now wider than before
        (``widths_before``: per key, `_frame_width` before the newest frame): a ``max_width`` at or above
        the old width was the full size and took none of the scaled sizes (`_has_room`); of the wider
        frames it is a scaled size, which may be one too many (`_within_limits`). Otherwise a camera that
        switched to a larger resolution had its frames encoded at every such size."""
        grew: dict[str, tuple[int, int]] = {}
        for key, before in widths_before.items():
            now = self._frame_width(key)
            if before is not None and now is not None and now > before:
                grew[key] = (before, now)
        if not grew:  # nearly always: the viewers are looked at only when a camera's resolution grew
            return
        judged: list[Viewer] = []
        for viewer in self._viewers:
            for key, subscription in viewer.subscriptions.items():
                image, widths = subscription.image, grew.get(key)
                if image is None or image.max_width is None or widths is None:
                    continue
                if widths[0] <= image.max_width < widths[1]:
                    judged.append(viewer)
                    break
        for viewer in judged:
            self._count(viewer.subscriptions, -1)  # its own sizes do not count against it
            viewer.resubscribe(self._within_limits(viewer.subscriptions))
            self._count(viewer.subscriptions, 1)
        if judged:
            self._update_wanted(widths_before.keys())

    def _frame_width(self, key: str) -> int | None:
        """The width of the newest frame of stream ``key``, or for `ALL_STREAMS` the widest newest frame of
        any stream (a width at or above it is every stream's full size); None before any frame."""
        packets = self.latest.values() if key == ALL_STREAMS else filter(None, [self.latest.get(key)])
        return max((packet.result.frame.image.shape[1] for packet in packets), default=None)

    def variants_wanted(self, stream_id: str) -> int:
        """How many images of each frame of ``stream_id`` its viewers want encoded (as the encoder counts them:
        widths at or above the frames' are one image with their full size)."""
        width = self._frame_width(stream_id)
        wanted = self._wanted.get(stream_id, frozenset()) | self._wanted.get(ALL_STREAMS, frozenset())
        return len({(image.kind, image.max_width if scales(image, width) else None) for image in wanted})

    async def _offer_late(self, viewer: Viewer, packet: FramePacket, variant: Variant) -> None:
        """Offer ``viewer`` the frame it subscribed on once ``variant`` is encoded, if that is still worth it.

        It is not when the stream was removed or restarted meanwhile (a frame of what it was must not
        follow the ``removed`` or ``added``), or when the viewer has left or asked for another image
        since. Where the stream has a newer frame by then, the viewer must never get the older one
        after it: it was offered that one if it had the variant; if not (made before the encoder
        heard of the subscription), that one is encoded for it in turn, or a stream that then goes
        quiet (a file at its end, a camera lost) would never show this viewer a picture.

        The frame it subscribed on goes as a catch-up (`Viewer.offer_packet`), without its events; a newer
        one, published while the viewer watched the stream, goes with its events: they are news to it.
        """
        catch_up = True
        for _ in range(LATE_ENCODING_TURNS):
            try:
                late = await self._late.with_variant(packet, variant)
            except Exception:
                return  # logged once for every viewer that waited on it, by `LateEncoder`
            current = self.latest.get(packet.stream_id)
            subscription = viewer.subscription(packet.stream_id)
            if current is None or viewer not in self._viewers or subscription is None or subscription.image != variant:
                return
            if current.result is packet.result:
                viewer.offer_packet(late, catch_up=catch_up)
                return
            if variant in current.jpegs:  # published so, or encoded since for a snapshot or another viewer
                viewer.offer_packet(current)  # sent once, if it was offered already (`Viewer.offer_packet`)
                return
            packet, catch_up = current, False

    async def snapshot(self, stream_id: str, asked: Variant) -> tuple[FramePacket, Variant] | None:
        """The newest frame of ``stream_id`` and the image of it a snapshot asking for ``asked`` gets
        (`LateEncoder.snapshot_image`), encoded in a worker thread if it was not made yet; None before any frame."""
        packet = self.latest.get(stream_id)
        if packet is None:
            return None
        image = self._late.snapshot_image(packet, asked)
        if image not in packet.jpegs:
            packet = await self._late.with_variant(packet, image)
        return packet, image

    def _count(self, subscriptions: Mapping[str, Subscription], step: Literal[1, -1]) -> None:
        """Count one viewer's ``subscriptions`` in (1) or out (-1) of the viewers and images per stream id."""
        watched = {key for key, subscription in subscriptions.items() if subscription.image is not None}
        if ALL_STREAMS in watched:
            self._watching_all += step
            for key in subscriptions.keys() - watched:  # metadata only of these, pictures of the rest
                _tally(self._unwatched, key, step)
        else:
            for key in watched:
                _tally(self._watching, key, step)
        for key, subscription in subscriptions.items():
            if subscription.image is not None:
                images = self._images.setdefault(key, {})
                _tally(images, subscription.image, step)
                if not images:
                    del self._images[key]

    def _update_wanted(self, keys: Iterable[str]) -> None:
        """Bring `_wanted` up to date for the stream ids of ``keys``, whose counts just changed, and tell
        the encoder if that changed what it makes."""
        changed = False
        for key in keys:
            variants = frozenset(self._images.get(key, ()))
            if variants == self._wanted.get(key, frozenset()):
                continue
            changed = True
            if variants:
                self._wanted[key] = variants
            else:
                del self._wanted[key]
        if changed and self._on_wanted is not None:
            self._on_wanted(self._wanted_view)

    def viewer_count(self, stream_id: str) -> int:
        """Who watches ``stream_id`` now: clients given its pictures (WebSocket, MJPEG) and WebRTC players.

        A metadata-only WebSocket subscription is not counted (see `_watching`); it is still a client,
        limited by ``max_viewers`` like any other.
        """
        relayed = sum(audience() for relay, audience in self._relays.items() if relay.wants(stream_id))
        watching = self._watching.get(stream_id, 0) + self._watching_all - self._unwatched.get(stream_id, 0)
        return watching + relayed

    def published(self, stream_id: str) -> int:
        """Frames of ``stream_id`` handed to viewers so far (each once, however many viewers)."""
        stats = self._stats.get(stream_id)
        return 0 if stats is None else stats.published

    def images(self, stream_id: str) -> int:
        """JPEGs the encoder made for the frames counted by `published` (counted with them, on the loop)."""
        stats = self._stats.get(stream_id)
        return 0 if stats is None else stats.images

    def stats(self, stream_id: str) -> dict[str, float | None]:
        stats = self._stats.get(stream_id)
        return StreamStats().snapshot() if stats is None else stats.snapshot()

    @property
    def scaled_images_refused(self) -> int:
        """Subscriptions and snapshots given another image because their stream had all its scaled sizes."""
        return self._subscriptions_refused + self._late.scaled_images_refused

    @property
    def jpeg_quality(self) -> int:
        """Of the JPEGs made here (snapshots, late encodings, MJPEG notices): the encoder's, set by the app."""
        return self._late.jpeg_quality

    @jpeg_quality.setter
    def jpeg_quality(self, quality: int) -> None:
        self._late.jpeg_quality = quality

    @property
    def frames_skipped(self) -> int:
        """Frames the clients (WebSocket, MJPEG) were not sent since the start, a newer one replacing each
        while they still took an older one: a slow link, or a client that stopped reading."""
        return self._skipped_by_gone + sum(viewer.dropped_frames for viewer in self.viewers)

    @property
    def closed_too_slow(self) -> int:
        """WebSocket clients closed since the start for letting events pile up (`Viewer.too_slow`)."""
        return self._too_slow_gone + sum(viewer.too_slow for viewer in self.viewers)

    @property
    def viewers(self) -> frozenset[Viewer]:
        """The clients connected now (WebSocket and MJPEG), which ``max_viewers`` limits; not the relays."""
        return frozenset(self._viewers.difference(self._relays))


def _events_of(packet: FramePacket) -> list[dict[str, Any]]:
    """The events of ``packet``'s ``frame`` message, as viewers and the event outputs are given them."""
    events = packet.metadata.get("events")
    return [dict(event) for event in events if isinstance(event, Mapping)] if isinstance(events, list) else []


def _tally(counts: dict[_Key, int], key: _Key, step: int) -> None:
    """Change ``counts[key]`` by ``step``, dropping a key counted down to nothing: ids nobody names
    any more (a viewer's typos, streams long gone) must not pile up."""
    count = counts.get(key, 0) + step
    if count > 0:
        counts[key] = count
    else:
        counts.pop(key, None)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a late frame could not be offered", exc_info=task.exception())
