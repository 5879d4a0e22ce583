"""The events on their way to the broker: queued, sent at least once and in order, and given up on
only when the broker keeps ending the connection for one.

Kept apart from the connection (`server.events.mqtt.connection`), which takes the next event from here and says
which the broker confirmed and which a connection ended without: those go first on the next
connection, in order (at least once, as QoS 1 promises). One that `RESEND_CONNECTIONS_MAX`
connections ended without confirming is given up and counted failed, logged with its size and topic.
Events arriving meanwhile wait in the bounded queue, and once it is full they are dropped and counted.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Iterable

from server.events.mqtt.topics import MqttTopics
from server.events.mqtt.window import OutMessage
from server.events.sink import OutEvent, Tally

#: Connections an event may be on that end without the broker confirming it before it is given up as
#: failed: a broker ends the connection, every time, for a message over its maximum packet size
#: (mosquitto's ``max_packet_size``) or on a topic its policy forbids (AWS IoT). Once could be the network.
RESEND_CONNECTIONS_MAX = 3


class EventOutbox:
    """The events of one MQTT output not yet confirmed by the broker, counted in its ``tally``."""

    def __init__(self, size: int, topics: MqttTopics, tally: Tally) -> None:
        self.topics = topics
        self._tally = tally
        self.queue: asyncio.Queue[OutEvent] = asyncio.Queue(size)
        #: Taken from the queue but not confirmed when the last connection ended: sent first, in order.
        self._resend: deque[OutEvent] = deque()
        #: Per event that was on its way when a connection ended (by ``event_id``), how many connections
        #: ended so: see `RESEND_CONNECTIONS_MAX`.
        self._cut_on: dict[str, int] = {}

    def offer(self, event: OutEvent) -> bool:
        """Queue ``event``; False if the queue is full (it is dropped, counted)."""
        self._tally.offer()
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self._tally.drop(event)
            return False
        return True

    @property
    def resending(self) -> bool:
        """Whether events a connection ended without are to go first."""
        return bool(self._resend)

    @property
    def unsent(self) -> int:
        """Events queued, or on their way unconfirmed when the last connection ended."""
        return self.queue.qsize() + len(self._resend)

    def next_messages(self) -> list[OutMessage]:
        """The next event to publish, one a connection ended without first; [] if none waits."""
        if self._resend:
            event = self._resend.popleft()
        elif not self.queue.empty():
            event = self.queue.get_nowait()
        else:
            return []
        what = f"a {event.data.get('type')} event"
        return [OutMessage(self._topic(event), json.dumps(event.message), False, event.stream_id, what, event=event)]

    def confirmed(self, event: OutEvent) -> None:
        self._cut_on.pop(event.event_id, None)
        self._tally.ok()
        self.queue.task_done()

    def give_up(self, message: OutMessage, why: str) -> None:
        """Count ``message`` failed (if an event) and log ``why``, with its stream."""
        event = message.event
        self._tally.fail(f"stream {message.stream_id!r}: {why}", lost=event is not None)
        if event is not None:
            self._cut_on.pop(event.event_id, None)
            self.queue.task_done()

    def keep_unconfirmed(self, messages: Iterable[OutMessage], closing: bool) -> None:
        """What a connection ended without: its events go first on the next one, in order, but one it
        was the `RESEND_CONNECTIONS_MAX`-th connection of (`_cut_too_often`), unless ``closing``."""
        kept = []
        for message in messages:
            if message.event is not None and (closing or not self._cut_too_often(message)):
                kept.append(message.event)
        self._resend.extendleft(reversed(kept))

    def _cut_too_often(self, message: OutMessage) -> bool:
        """Count the connection that ended with ``message`` (an event) unconfirmed; at the
        `RESEND_CONNECTIONS_MAX`-th, give the event up, naming its size and topic, and say so."""
        assert message.event is not None
        event_id = message.event.event_id
        self._cut_on[event_id] = cuts = self._cut_on.get(event_id, 0) + 1
        if cuts < RESEND_CONNECTIONS_MAX:
            return False
        size = len(message.payload.encode() if isinstance(message.payload, str) else message.payload)
        self.give_up(
            message,
            f"gave up {message.what} of {size} bytes to {message.topic}: the broker ended the connection each of "
            f"the {cuts} times it was sent (a message larger than the broker takes, or a topic it does not let "
            "this account publish to)",
        )
        return True

    def _topic(self, event: OutEvent) -> str:
        return self.topics.event(event.stream_id, str(event.data.get("type", "event")))
