"""The MQTT publishes on their way over one connection: at most `WINDOW` at once, in order.

Waiting for each PUBACK before the next publish would cost a broker far away a round trip per
message; with a window of them on their way it costs one per `WINDOW` messages. They still reach
the broker in the order sent, over the one connection. What the broker had not confirmed when the
connection dropped comes back from `PublishWindow.close`, for `server.events.mqtt.connection.MqttSink` to send
again on the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt

from server.events.sink import OutEvent

QOS = 1
#: Publishes awaiting the broker's PUBACK at once. Paho's own limit is off (0): a publish it held in
#: its queue would wait there with aiomqtt's timeout for its PUBACK running, and at shutdown the
#: ``offline`` after a full window would never be written (the cancelled ones still count in paho).
WINDOW = 20


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


class PublishWindow:
    """The publishes on their way over one connection, each awaiting its PUBACK in its own task.

    Each task's first step hands its message to paho, and tasks take their first step in the order
    they were made, so messages reach the broker in the order sent, however many are on their way.
    A message confirmed, or refused for itself (a topic paho will not take), is settled through the
    callbacks; one whose publish failed for the connection's sake is left for `close`.
    """

    def __init__(
        self,
        client: aiomqtt.Client,
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
        return len(self._flight) >= WINDOW

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
            self._settle(self._flight.pop(task), error)
        self._wake.set()

    def _settle(self, message: OutMessage, error: BaseException | None) -> None:
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
                self._settle(message, task.exception())
            else:
                task.cancel()
                self._cancelled.append(task)
                unconfirmed.append(message)
        self._flight.clear()
        return unconfirmed

    async def wait_closed(self) -> None:
        """Wait for the publishes `close` cancelled to end."""
        await asyncio.gather(*self._cancelled, return_exceptions=True)
