"""The event outputs of one server: builds the configured sinks, feeds them, starts and stops them.

Events cross from the pipeline threads to the loop once, where they already do for viewers: the hub
calls `EventOutputs.on_packet` on the loop for every published frame, in order, and a frame that
was dropped on the way hands its events on to the next one (`FrameResult.replacing`), so no event
is lost before this point. From here each sink has its own bounded queue and its own task or thread,
and gets only what it sends: the event's JSON and, for the history, the pixels of its snapshot (cut
here, see `server.events.snapshot`), never the frame, so a queue full of events holds no frames.
An event whose object is not in the frame it was decided on (a track's end, a zone exit at it) gets
the crop of where its track was last seen, which each stream's `LastSeen` keeps until it ends.
The hub also tells the outputs of each stream's state and of whether frames can be inferred, so MQTT
can say whether a stream's counts are current (it is live and its frames are inferred) or the last
ones seen before its camera, or a remote model's server, went down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from server.delivery.encode import FramePacket
from server.events.config import EventsSettings
from server.events.counts import counts_of
from server.events.history.writer import HistorySink
from server.events.sink import OutEvent, Sink, SinkHealth
from server.events.snapshot import LastSeen
from server.events.webhook import WebhookSink, webhook_names
from server.inference.models import InferenceStatus, install_hint
from server.sources.base import StreamState

if TYPE_CHECKING:
    from server.events.mqtt.connection import MqttSink

log = logging.getLogger(__name__)


class MqttUnavailableError(RuntimeError):
    """``[events.mqtt]`` is configured but aiomqtt is not installed."""


class EventOutputs:
    def __init__(self, settings: EventsSettings) -> None:
        """Raises `MqttUnavailableError` when MQTT is configured without the ``mqtt`` extra installed."""
        self.history = HistorySink(settings.history) if settings.history is not None else None
        sinks: list[Sink] = [] if self.history is None else [self.history]
        names = webhook_names(settings.webhooks)
        sinks += [WebhookSink(hook, name) for hook, name in zip(settings.webhooks, names, strict=True)]
        self._mqtt: MqttSink | None = None
        if settings.mqtt is not None:
            try:
                from server.events.mqtt.connection import MqttSink
            except ImportError:
                raise MqttUnavailableError(f"events.mqtt: needs the aiomqtt package: {install_hint('mqtt')}") from None
            self._mqtt = MqttSink(settings.mqtt)
            sinks.append(self._mqtt)
        self.sinks: tuple[Sink, ...] = tuple(sinks)
        self._pictures = any(sink.snapshots for sink in sinks)
        self._counts: dict[str, dict[str, float]] = {}
        self._last_seen: dict[str, LastSeen] = {}  # per stream, only when a sink keeps pictures
        self._inference_available = True  # as the hub starts: a local model always is

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def stop(self) -> None:
        """Stop every sink (the history first writes what it has queued), even when one of them fails to.

        All at once: each gets its time to deliver what it has queued (`DRAIN_TIMEOUT_S`) in the same
        seconds, so shutdown waits as long as the slowest output, not the sum of them all.
        """
        results = await asyncio.gather(*(sink.stop() for sink in self.sinks), return_exceptions=True)
        for sink, result in zip(self.sinks, results, strict=True):
            if isinstance(result, BaseException):
                log.error("%s: did not stop cleanly", sink.name, exc_info=result)

    def health(self) -> list[SinkHealth]:
        return [sink.health() for sink in self.sinks]

    def on_packet(self, packet: FramePacket) -> None:
        """A frame was published (on the loop): hand its events, and its counts if they changed, to every sink."""
        if not self.sinks:
            return
        events = packet.metadata.get("events")
        when = packet.result.frame.capture_time
        last_seen = self._last_seen.setdefault(packet.stream_id, LastSeen()) if self._pictures else None
        if last_seen is not None:
            last_seen.seen(packet.result)
        ended: list[int] = []
        for event in events if isinstance(events, list) else ():
            if isinstance(event, Mapping):
                plain = OutEvent(event, packet.stream_id, when)  # its event_id the one WebSocket clients got
                pictured = plain
                if last_seen is not None:
                    pictured = replace(plain, picture=last_seen.picture_of(event, packet.result))
                for sink in self.sinks:
                    sink.offer(pictured if sink.snapshots else plain)
                if event.get("type") == "track" and event.get("event") == "end" and isinstance(event.get("id"), int):
                    ended.append(event["id"])
        if last_seen is not None:
            last_seen.ended(ended)
        if not packet.result.analysed:  # shown while inference is unavailable: its counts are not the scene's
            return
        counts = counts_of(packet.metadata)
        if counts != self._counts.get(packet.stream_id):
            self._counts[packet.stream_id] = counts
            for sink in self.sinks:
                sink.offer_counts(packet.stream_id, counts)

    def on_stream_state(self, stream_id: str, state: StreamState) -> None:
        """A stream's state changed (on the loop): its MQTT sensors are available only while it is live.

        Its counts are offered again from its next frame, changed or not: they are a frame's read
        since it came back, the ones MQTT waits for to say it ``online``.
        """
        if state is not StreamState.LIVE:
            self._counts.pop(stream_id, None)
        if self._mqtt is not None:
            self._mqtt.stream_live(stream_id, state is StreamState.LIVE)

    def on_inference(self, status: InferenceStatus) -> None:
        """Inference became available or unavailable (on the loop; a remote model's server went or came back).

        While it is unavailable no frame is inferred, so no stream's counts are current: MQTT says its
        streams offline. Once it is back, the first frame's counts go out whether or not they differ
        from the last ones before the outage: MQTT says a stream online only after them.
        """
        if status.available is self._inference_available:
            return
        self._inference_available = status.available
        self._counts.clear()
        if self._mqtt is not None:
            self._mqtt.inference_available(status.available)

    def on_stream_removed(self, stream_id: str) -> None:
        """A stream was removed (on the loop): sinks that keep something of it (MQTT's sensors) let it go."""
        self._counts.pop(stream_id, None)
        self._last_seen.pop(stream_id, None)
        for sink in self.sinks:
            sink.forget_stream(stream_id)
