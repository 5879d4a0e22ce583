"""The events on their way to the broker: queued, sent at least once and in order, and given up on
only when the broker keeps ending the connection for one.

Kept apart from the connection (`server.events.mqtt.connection`), which takes the next event from here and says
which the broker confirmed and which a connection ended without: those go first on the next
connection, in order (at least once, as QoS 1 promises). One that `RESEND_CONNECTIONS_MAX`
connections ended without confirming is given up and counted failed, logged with its size and topic.
Events arriving meanwhile wait in the bounded queue, and once it is full they are dropped and counted.
An event older than ``max_event_age_s`` (from its frame's capture) by the time it could be sent, its
broker down until then, is dropped and counted too: a Home Assistant automation would act on it as
on what happens now. The counts and availabilities are state, always sent as they are now
(`server.events.mqtt.retained`).

An event a zone's or line's device trigger fires on goes out twice: on its trigger's topic, then on
its own (`server.events.mqtt.topics`). The event's own is the one confirmed and sent again; its
trigger goes with it each time (at least once, as the event). With ``snapshots``, its pictures go just
before them, and it waits for them to be encoded (`server.events.mqtt.snapshots`); a queued event holds
no pixels.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from server.events.config import MqttSettings
from server.events.mqtt.topics import MqttTopics, trigger_of
from server.events.mqtt.window import OutMessage
from server.events.sink import OutEvent, Tally

if TYPE_CHECKING:
    from server.events.mqtt.snapshots import EventSnapshots


#: Connections an event may be on that end without the broker confirming it before it is given up as
#: failed: a broker ends the connection, every time, for a message over its maximum packet size
#: (mosquitto's ``max_packet_size``) or on a topic its policy forbids (AWS IoT). Once could be the network.
RESEND_CONNECTIONS_MAX = 3


class EventOutbox:
    """The events of one MQTT output not yet confirmed by the broker, counted in its ``tally``."""

    def __init__(
        self,
        settings: MqttSettings,
        topics: MqttTopics,
        tally: Tally,
        clock: Callable[[], float],
        snapshots: EventSnapshots | None = None,
    ) -> None:
        """``clock``: wall-clock seconds, as an event's `OutEvent.capture_time` is; ``snapshots``: the events'
        pictures, None where none is published (``snapshots`` off)."""
        self.topics = topics
        self._snapshots = snapshots
        self._tally = tally
        self._clock = clock
        self._max_age_s = settings.max_event_age_s
        self._triggers = settings.discovery  # a trigger's topic is for Home Assistant's device triggers alone
        self.queue: asyncio.Queue[OutEvent] = asyncio.Queue(settings.queue)
        #: Taken from the queue but not confirmed when the last connection ended: sent first, in order.
        self._resend: deque[OutEvent] = deque()
        #: Taken from the queue, waiting for its picture to be encoded: it goes next, after those of `_resend`.
        self._due: OutEvent | None = None
        #: Per event that was on its way when a connection ended (by ``event_id``), how many connections
        #: ended so: see `RESEND_CONNECTIONS_MAX`.
        self._cut_on: dict[str, int] = {}

    def offer(self, event: OutEvent) -> bool:
        """Queue ``event`` (without its pixels: its picture is encoded now, where snapshots are published); False
        if the queue is full (it is dropped, counted)."""
        self._tally.offer()
        picture, event = event.picture, replace(event, picture=None)
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self._tally.drop(event)
            return False
        if self._snapshots is not None and picture is not None:
            self._snapshots.offer(event, picture)
        return True

    @property
    def resending(self) -> bool:
        """Whether events a connection ended without are to go first."""
        return bool(self._resend)

    @property
    def unsent(self) -> int:
        """Events queued, or on their way unconfirmed when the last connection ended."""
        return self.queue.qsize() + len(self._resend) + int(self._due is not None)

    def next_messages(self) -> list[OutMessage]:
        """The next event to publish (after its pictures and its trigger's message, where it has them), one a
        connection ended without first, but those too old to (`_outlived`); [] if none waits, or the next waits
        for its picture (the sink is woken once it is encoded)."""
        while (event := self._next_event()) is not None:
            if self._snapshots is not None and self._snapshots.encoding(event):
                return []
            self._take()
            if not self._outlived(event):
                return self._messages(event)
        return []

    def _next_event(self) -> OutEvent | None:
        """The event to go next, left where it is until `_take`."""
        if self._resend:
            return self._resend[0]
        if self._due is None and not self.queue.empty():
            self._due = self.queue.get_nowait()
        return self._due

    def _take(self) -> None:
        """The event `_next_event` gave goes now."""
        if self._resend:
            self._resend.popleft()
        else:
            self._due = None

    def _messages(self, event: OutEvent) -> list[OutMessage]:
        kind = event.data.get("type")
        messages = [] if self._snapshots is None else self._snapshots.messages(event)
        data = event.message if not messages else {**event.message, "snapshot_topic": messages[-1].topic}
        if self._triggers and (trigger := trigger_of(event.data)) is not None:
            topic = self.topics.trigger(event.stream_id, trigger)
            messages.append(OutMessage(topic, trigger.payload, False, event.stream_id, f"a {kind} trigger"))
        payload = json.dumps(data)
        messages.append(OutMessage(self._topic(event), payload, False, event.stream_id, f"a {kind} event", event=event))
        return messages

    def _outlived(self, event: OutEvent) -> bool:
        """Whether ``event`` is older than ``max_event_age_s`` (unless 0): then it is dropped, counted and told
        by the tally (`Tally.too_old`), as a webhook's are."""
        if not self._tally.too_old(event, self._clock(), self._max_age_s):
            return False
        self._settled(event)
        self.queue.task_done()
        return True

    def confirmed(self, event: OutEvent) -> None:
        self._settled(event)
        self._tally.ok()
        self.queue.task_done()

    def give_up(self, message: OutMessage, why: str) -> None:
        """Count ``message`` failed (if an event) and log ``why``, with its stream."""
        event = message.event
        self._tally.fail(f"stream {message.stream_id!r}: {why}", lost=event is not None)
        if event is not None:
            self._settled(event)
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
        `RESEND_CONNECTIONS_MAX`-th, give the event up, naming its size and topic, and say so. Pictures sent
        with it take the blame first (`EventSnapshots.blame`): they are the likelier cause."""
        assert message.event is not None
        if self._snapshots is not None and self._snapshots.blame(message.event):
            return False
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

    def _settled(self, event: OutEvent) -> None:
        """``event`` is confirmed, given up or dropped."""
        self._cut_on.pop(event.event_id, None)
        if self._snapshots is not None:
            self._snapshots.settled(event)

    def _topic(self, event: OutEvent) -> str:
        return self.topics.event(event.stream_id, str(event.data.get("type", "event")))
