"""The MQTT publishes on their way over one connection: at most `WINDOW` at once, in order.

Waiting for each PUBACK before the next publish would cost a broker far away a round trip per
message; with a window of them on their way it costs one per `WINDOW` messages. They still reach
the broker in the order sent, over the one connection. What the broker had not confirmed when the
connection dropped comes back from `PublishWindow.close`, for `server.events.mqtt.connection.MqttSink` to send
again on the next one.

Over MQTT 5 the broker says which publishes it refused (`PublishRefused`: a topic its ACL forbids) and how
many may await their PUBACK at once (its Receive Maximum), both of which aiomqtt drops (`AckedClient`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import aiomqtt
from paho.mqtt.client import MQTT_ERR_SUCCESS, MQTTMessageInfo
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from server.events.sink import OutEvent

QOS = 1
#: Publishes awaiting the broker's PUBACK at once. Paho's own limit is off (0): a publish it held in
#: its queue would wait there with aiomqtt's timeout for its PUBACK running, and at shutdown the
#: ``offline`` after a full window would never be written (the cancelled ones still count in paho).
WINDOW = 20
#: MQTT 5's Receive Maximum where the broker's CONNACK gives none (and for MQTT 3.1.1, which has none).
RECEIVE_MAXIMUM_UNSET = 65535
#: What to do about a publish refused with these PUBACK reason codes (MQTT 5).
REFUSAL_HINTS = {
    0x87: "check its ACL",  # not authorized
    0x90: "check topic_prefix",  # topic name invalid
    0x97: "check the broker's quota for this client",  # quota exceeded
}


@dataclass(frozen=True, slots=True)
class OutMessage:
    """One publish, and what it is for: an event not confirmed when its connection ended is sent
    again first on the next one, a removal is done again; other state is published anew from the
    newest on every connection anyway."""

    topic: str
    payload: str | bytes
    retain: bool
    stream_id: str
    what: str  # for the log line if it cannot be published: "a track event", "its counts"
    event: OutEvent | None = None
    removal: bool = False
    #: The clearing of a sensor's config: it stays known as retained at the broker until confirmed.
    clears_sensor: bool = False
    #: An event's picture, or its clearing: its topic stays known as retained at the broker until a clear of it
    #: is confirmed (`server.events.mqtt.retained`).
    picture: bool = False


class PublishRefused(Exception):
    """The broker answered a publish with a refusal, a PUBACK reason code of 0x80 or over (MQTT 5): it did not
    take the message, and would not take it again."""

    def __init__(self, topic: str, reason: ReasonCode, properties: Properties | None = None) -> None:
        said = str(reason).lower()
        if (reason_string := getattr(properties, "ReasonString", None)) is not None:
            said += f" ({reason_string})"
        if (hint := REFUSAL_HINTS.get(reason.value)) is not None:
            said += f": {hint}"
        super().__init__(f"the broker refused to publish on {topic}: {said}")
        self.topic = topic
        self.reason = reason


class AckedClient(aiomqtt.Client):
    """aiomqtt's client, keeping what it drops of the broker's answers that `PublishWindow` needs: its Receive
    Maximum (CONNACK) and each publish it refused (PUBACK), by the task that published it.

    paho hands a PUBACK's reason code to aiomqtt's ``_on_publish`` with the message id alone, and aiomqtt's
    publish returns alike after a refusal and a success, without the id: so the id is taken from paho's
    ``publish`` as aiomqtt calls it, in the publishing task. Over MQTT 3.1.1 every PUBACK is a success.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: How many QoS 1 publishes may await their PUBACK at once: a broker may end the connection for more.
        self.receive_maximum = RECEIVE_MAXIMUM_UNSET
        self._sent: dict[int, asyncio.Task[Any]] = {}  # by message id, awaiting its PUBACK
        #: By task, until it asks (`refusal`): held weakly, so one that never asks (cancelled as its PUBACK came,
        #: or timed out waiting for it) leaves nothing behind.
        self._refused: WeakKeyDictionary[asyncio.Task[Any], tuple[ReasonCode, Properties | None]] = WeakKeyDictionary()
        publish = self._client.publish

        def publish_noting_its_id(*args: Any, **kwargs: Any) -> MQTTMessageInfo:
            info = publish(*args, **kwargs)
            task = asyncio.current_task()
            if task is not None and info.rc == MQTT_ERR_SUCCESS:
                self._sent[info.mid] = task
            return info

        self._client.publish = publish_noting_its_id  # type: ignore[method-assign]

    @property
    def in_flight_limit(self) -> int:
        """How many publishes may await their PUBACK at once: our `WINDOW`, or fewer where the broker says."""
        return min(WINDOW, self.receive_maximum)

    async def publish_in_order(self, messages: Sequence[tuple[str, str | bytes]]) -> list[PublishRefused]:
        """Publish ``messages`` (topic, payload), retained, in this order over the connection, no more
        awaiting their PUBACK at once than `in_flight_limit`: a stream's availability per message at
        start or shutdown may be more than a broker with a small Receive Maximum lets be on their way.

        Returns the refusals the broker answered, in the order sent, for the caller to say: the status a
        broker's ACL forbids makes every sensor unavailable in Home Assistant, a failure to show, not drop."""
        refused: list[PublishRefused] = []
        for start in range(0, len(messages), self.in_flight_limit):
            batch = messages[start : start + self.in_flight_limit]
            answers = await asyncio.gather(*(self._publish_retained(topic, payload) for topic, payload in batch))
            refused += (answer for answer in answers if answer is not None)
        return refused

    def refusal(self, task: asyncio.Task[Any], topic: str) -> PublishRefused | None:
        """The refusal the publish ``task`` (on ``topic``) got, once; None if it got none."""
        refused = self._refused.pop(task, None)
        return None if refused is None else PublishRefused(topic, *refused)

    async def _publish_retained(self, topic: str, payload: str | bytes) -> PublishRefused | None:
        """Publish in a task of its own (`publish_in_order` gathers them), whose refusal is asked for once answered."""
        await self.publish(topic, payload, qos=QOS, retain=True)
        task = asyncio.current_task()
        return None if task is None else self.refusal(task, topic)

    def _on_connect(
        self,
        client: Any,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        self.receive_maximum = getattr(properties, "ReceiveMaximum", RECEIVE_MAXIMUM_UNSET)
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason_code: ReasonCode, properties: Properties
    ) -> None:
        task = self._sent.pop(mid, None)
        if task is not None and reason_code.is_failure:
            self._refused[task] = (reason_code, properties)
        super()._on_publish(client, userdata, mid, reason_code, properties)


class PublishWindow:
    """The publishes on their way over one connection, each awaiting its PUBACK in its own task.

    Each task's first step hands its message to paho, and tasks take their first step in the order
    they were made, so messages reach the broker in the order sent, however many are on their way.
    A message confirmed, or refused for itself (a topic paho will not take, or the broker refused,
    `PublishRefused`), is settled through the callbacks; one whose publish failed for the connection's sake
    is left for `close`. No more are on their way than the broker's Receive Maximum lets be.
    """

    def __init__(
        self,
        client: AckedClient,
        confirmed: Callable[[OutMessage], None],
        failed: Callable[[OutMessage, BaseException], None],
        wake: asyncio.Event,
    ) -> None:
        self._client = client
        self._confirmed = confirmed
        self._failed = failed
        self._wake = wake
        self._flight: dict[asyncio.Task[None], OutMessage] = {}  # in the order sent
        self._cancelled: list[asyncio.Task[None]] = []
        self._closed = False
        #: The error a publish ended with that says the connection is lost (or the broker stopped answering).
        self.broken: aiomqtt.MqttError | None = None

    @property
    def full(self) -> bool:
        return len(self._flight) >= self._client.in_flight_limit

    @property
    def empty(self) -> bool:
        """Whether every message sent is settled (or handed back by `close`)."""
        return not self._flight

    def send(self, message: OutMessage) -> None:
        publishing = self._client.publish(message.topic, message.payload, qos=QOS, retain=message.retain)
        task = asyncio.get_running_loop().create_task(publishing)
        self._flight[task] = message
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if self._closed:
            return  # `close` has settled it, or handed it back
        if isinstance(error, aiomqtt.MqttError):
            self.broken = self.broken or error  # it stays on its way: `close` hands it back
        else:
            self._settle(task, self._flight.pop(task))
        self._wake.set()

    def _settle(self, task: asyncio.Task[None], message: OutMessage) -> None:
        """A publish done but not for the connection's sake: confirmed, or refused for itself."""
        error = task.exception() or self._client.refusal(task, message.topic)
        if error is None:
            self._confirmed(message)
        else:
            self._failed(message, error)

    def close(self) -> list[OutMessage]:
        """Stop waiting for PUBACKs: the messages the broker has not confirmed, in the order they were sent.

        At once, with no wait that a second cancellation could cut short: a publish done whose
        callback has yet to run is settled here.
        """
        self._closed = True
        unconfirmed: list[OutMessage] = []
        for task, message in self._flight.items():
            if task.done() and not task.cancelled() and not isinstance(task.exception(), aiomqtt.MqttError):
                self._settle(task, message)
            else:
                task.cancel()
                self._cancelled.append(task)
                unconfirmed.append(message)
        self._flight.clear()
        return unconfirmed

    async def wait_closed(self) -> None:
        """Wait for the publishes `close` cancelled to end."""
        await asyncio.gather(*self._cancelled, return_exceptions=True)
