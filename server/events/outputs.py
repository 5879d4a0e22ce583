"""The event outputs of one server: builds the configured sinks, feeds them, starts and stops them.

Events cross from the pipeline threads to the loop once, where they already do for viewers: the hub
calls `EventOutputs.on_packet` on the loop for every published frame, in order, and a frame that
was dropped on the way hands its events on to the next one (`FrameResult.replacing`), so no event
is lost before this point. From here each sink has its own bounded queue and its own task or thread.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from server.delivery.encode import FramePacket
from server.events.config import EventsSettings
from server.events.counts import counts_of
from server.events.history import HistorySink
from server.events.sink import OutEvent, Sink, SinkHealth
from server.events.webhook import WebhookSink
from server.inference.models import install_hint

log = logging.getLogger(__name__)


class MqttUnavailableError(RuntimeError):
    """``[events.mqtt]`` is configured but aiomqtt is not installed."""


class EventOutputs:
    def __init__(self, settings: EventsSettings) -> None:
        """Raises `MqttUnavailableError` when MQTT is configured without the ``mqtt`` extra installed."""
        self.history = HistorySink(settings.history) if settings.history is not None else None
        sinks: list[Sink] = [] if self.history is None else [self.history]
        sinks += [WebhookSink(hook) for hook in settings.webhooks]
        if settings.mqtt is not None:
            try:
                from server.events.mqtt import MqttSink
            except ImportError:
                raise MqttUnavailableError(f"events.mqtt: needs the aiomqtt package: {install_hint('mqtt')}") from None
            sinks.append(MqttSink(settings.mqtt))
        self.sinks: tuple[Sink, ...] = tuple(sinks)
        self._counts: dict[str, dict[str, float]] = {}

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def stop(self) -> None:
        """Stop every sink (the history first writes what it has queued)."""
        for sink in self.sinks:
            await sink.stop()

    def health(self) -> list[SinkHealth]:
        return [sink.health() for sink in self.sinks]

    def on_packet(self, packet: FramePacket) -> None:
        """A frame was published (on the loop): hand its events, and its counts if they changed, to every sink."""
        if not self.sinks:
            return
        events = packet.metadata.get("events")
        for event in events if isinstance(events, list) else ():
            if isinstance(event, Mapping):
                out = OutEvent(event, packet)
                for sink in self.sinks:
                    sink.offer(out)
        counts = counts_of(packet.metadata)
        if counts != self._counts.get(packet.stream_id):
            self._counts[packet.stream_id] = counts
            for sink in self.sinks:
                sink.offer_counts(packet.stream_id, counts)

    def on_stream_removed(self, stream_id: str) -> None:
        """A stream was removed (on the loop): sinks that keep something of it (MQTT's sensors) let it go."""
        self._counts.pop(stream_id, None)
        for sink in self.sinks:
            sink.forget_stream(stream_id)
