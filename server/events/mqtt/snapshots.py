"""Events' pictures over MQTT (``snapshots``): each zone's or line's event's snapshot, the picture the history
keeps (`server.events.snapshot`), published retained as raw JPEG bytes, QoS 1, on the stream's snapshot
topic and on its zone's or line's (`server.events.mqtt.topics`), just before the event's trigger and its JSON,
which names it (``snapshot_topic``): an automation a trigger fires finds this event's picture there, not the
one before.

Encoding takes milliseconds, so it runs in a thread of its own, and the event waits for its picture at the
head of the outbox (`server.events.mqtt.outbox`): events still go out in order. What waits is bounded: at
most `ENCODING_MAX` pictures to encode (each a copy of the object's box, never the frame), and
`KEPT_MAX_BYTES` of JPEGs of events the broker has not confirmed yet (it is down); past either, an event goes
without its picture, counted in a warning at most every `DROP_LOG_INTERVAL_S`.

Each JPEG is at most ``max_snapshot_kb``: a bigger picture is halved each way until it fits
(`server.events.snapshot.snapshot_jpeg_within`). A broker that takes less (mosquitto's ``max_packet_size``)
ends the connection for it, and the event goes again on the next one with its pictures, as any event does;
they take the blame first: after `RESEND_CONNECTIONS_MAX` connections that ended so, they are given up, said
with their size and ``max_snapshot_kb``, and the event goes on without them.

Which pictures the broker retains, and their clearing with their zone, line or stream, is decided in
`server.events.mqtt.retained`, asked as each event's pictures are about to be sent: a stream, zone or line
removed while its event waited (a zone's exits its deletion ends) gets no picture after its pictures were
cleared.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from server.events.config import MqttSettings
from server.events.mqtt.outbox import RESEND_CONNECTIONS_MAX
from server.events.mqtt.topics import MqttTopics, trigger_of
from server.events.mqtt.window import OutMessage
from server.events.sink import DROP_LOG_INTERVAL_S, OutEvent, Tally
from server.events.snapshot import Picture, snapshot_jpeg_within
from server.log_throttle import ThrottledCount

log = logging.getLogger(__name__)

#: Pictures waiting for the encoder thread or in it: a camera whose zones see a crowd at once waits for no more.
ENCODING_MAX = 8
#: What the JPEGs of events not yet confirmed by the broker may hold together: some 300 pictures at the
#: default ``max_snapshot_kb``. Past it the oldest go: a picture that waits that long is overwritten anyway.
KEPT_MAX_BYTES = 32 * 1024 * 1024

#: Asks, as an event's pictures are about to be sent, whether they may go on these topics of this stream.
Sending = Callable[[str, Sequence[str]], bool]


@dataclass(frozen=True, slots=True)
class _Jpeg:
    stream_id: str
    data: bytes


class EventSnapshots:
    """The pictures of one MQTT output's events, from their encoding to the broker's confirming the event."""

    def __init__(
        self, settings: MqttSettings, topics: MqttTopics, tally: Tally, wake: Callable[[], None], sending: Sending
    ) -> None:
        """``wake``: called on the loop once a picture is encoded (its event may go); ``sending``: whether an
        event's pictures may go now (`server.events.mqtt.retained.RetainedStreams.pictures_sent`)."""
        self.topics = topics
        self._tally = tally
        self._wake = wake
        self._sending = sending
        self._max_bytes = round(settings.max_snapshot_kb * 1024)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="mqtt-snapshots")
        self._encoding: dict[str, asyncio.Future[bytes | None]] = {}  # by event id
        self._jpegs: dict[str, _Jpeg] = {}  # by event id, the oldest first
        self._bytes = 0
        self._cut_on: dict[str, int] = {}  # by event id: connections that ended with its pictures unconfirmed
        self._dropped = ThrottledCount(DROP_LOG_INTERVAL_S)
        self._stopped = False  # an event offered after `stop` is never sent: its picture is not encoded

    def offer(self, event: OutEvent, picture: Picture) -> None:
        """``event`` is queued: its ``picture`` is encoded in the thread if it is a zone's or line's. On the loop."""
        if self._stopped or trigger_of(event.data) is None:
            return
        if len(self._encoding) >= ENCODING_MAX:
            self._drop(event.stream_id, "the encoder is behind")
            return
        loop = asyncio.get_running_loop()
        encoding = loop.run_in_executor(self._executor, snapshot_jpeg_within, picture, self._max_bytes)
        self._encoding[event.event_id] = encoding
        encoding.add_done_callback(functools.partial(self._encoded, event.event_id, event.stream_id))

    def encoding(self, event: OutEvent) -> bool:
        """Whether ``event``'s picture is still being encoded: then it waits."""
        return event.event_id in self._encoding

    def messages(self, event: OutEvent) -> list[OutMessage]:
        """``event``'s pictures, to publish just before it: on its stream's snapshot topic and its zone's or
        line's; [] if it has none (or its stream, zone or line is no longer this process's)."""
        jpeg, trigger = self._jpegs.get(event.event_id), trigger_of(event.data)
        if jpeg is None or trigger is None:
            return []
        topics = (self.topics.snapshot(event.stream_id), self.topics.shape_snapshot(event.stream_id, trigger))
        if not self._sending(event.stream_id, topics):
            self.settled(event)
            return []
        what = f"the snapshot of a {event.data.get('type')} event"
        return [OutMessage(topic, jpeg.data, True, event.stream_id, what, picture=True) for topic in topics]

    def settled(self, event: OutEvent) -> None:
        """``event`` is confirmed, given up or dropped: its picture is of no more use."""
        self._cut_on.pop(event.event_id, None)
        if (jpeg := self._jpegs.pop(event.event_id, None)) is not None:
            self._bytes -= len(jpeg.data)

    def blame(self, event: OutEvent) -> bool:
        """A connection ended with ``event`` unconfirmed: True if its pictures went with it, which take the
        blame (a message over the broker's size limit is the likelier cause), and it is to go again.

        At the `RESEND_CONNECTIONS_MAX`-th such connection they are given up and said, naming their size and
        ``max_snapshot_kb``; the event goes on without them.
        """
        jpeg = self._jpegs.get(event.event_id)
        if jpeg is None:
            return False
        self._cut_on[event.event_id] = cuts = self._cut_on.get(event.event_id, 0) + 1
        if cuts >= RESEND_CONNECTIONS_MAX:
            self.settled(event)
            self._tally.fail(
                f"stream {event.stream_id!r}: gave up the snapshot of {len(jpeg.data)} bytes to "
                f"{self.topics.snapshot(event.stream_id)}: the broker ended the connection each of the {cuts} times "
                f"it was sent (a message larger than the broker takes: lower max_snapshot_kb, now "
                f"{self._max_bytes / 1024:g}); its {event.data.get('type')} event goes without it"
            )
        return True

    async def stop(self) -> None:
        """End the thread once the picture in hand is encoded: it is never cut off inside OpenCV."""
        self._stopped = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        await asyncio.gather(*self._encoding.values(), return_exceptions=True)

    def _encoded(self, event_id: str, stream_id: str, encoding: asyncio.Future[bytes | None]) -> None:
        """On the loop: keep the JPEG, or say why the event goes without, and wake the sink: its event may go."""
        self._encoding.pop(event_id, None)
        if encoding.cancelled():
            return
        if (error := encoding.exception()) is not None:
            self._drop(stream_id, f"it could not be encoded: {error}")
        elif (data := encoding.result()) is None:
            self._drop(stream_id, f"it would have to be tiny to fit max_snapshot_kb = {self._max_bytes / 1024:g}")
        else:
            self._keep(event_id, _Jpeg(stream_id, data))
        self._wake()

    def _keep(self, event_id: str, jpeg: _Jpeg) -> None:
        """Keep ``jpeg`` until its event is settled; past `KEPT_MAX_BYTES`, the oldest kept go."""
        self._jpegs[event_id] = jpeg
        self._bytes += len(jpeg.data)
        while self._bytes > KEPT_MAX_BYTES:
            oldest = next(iter(self._jpegs))
            dropped = self._jpegs.pop(oldest)
            self._bytes -= len(dropped.data)
            self._drop(dropped.stream_id, f"the pictures waiting for the broker hold {KEPT_MAX_BYTES} bytes")

    def _drop(self, stream_id: str, why: str) -> None:
        """An event goes without its picture: say so, at most once per `DROP_LOG_INTERVAL_S`, with how many since."""
        if count := self._dropped.add():
            name = self._tally.name
            log.warning("[%s] %s: %d event(s) published without their snapshot: %s", stream_id, name, count, why)
