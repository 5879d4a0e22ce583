"""MQTT: events and per-stream counts published to a broker, and Home Assistant discovery for the counts.

Topics (``P`` is ``topic_prefix``, default ``segcast``; ``D`` is ``discovery_prefix``, default
``homeassistant``; ``I`` is ``discovery_id``, default ``P`` with ``/`` as ``_``):

- ``P/status``: ``online`` while connected, ``offline`` after (the broker sends it as our will if the
  connection dies), retained;
- ``P/server``: which segcast says ``P/status`` (its client id and host, JSON), retained, published just
  before ``online`` (`server.events.mqtt.claim`);
- ``P/<stream>/events/<type>``: every event's JSON, QoS 1, not retained (``type`` is ``track``,
  ``zone_enter``, ``line_cross``...); one older than ``max_event_age_s`` by the time it could be
  sent (the broker was down) is dropped, counted (`server.events.mqtt.outbox`);
- ``P/<stream>/triggers/<zone>/<type>`` (``zone_enter``, ``zone_exit``, ``loiter``: the payload is the
  type) and ``P/<stream>/triggers/<line>/line_cross`` (``in`` or ``out``): once per such event, just
  before it, QoS 1, not retained, with discovery on: what the zone's or line's device triggers fire on;
- ``P/<stream>/snapshot`` and ``P/<stream>/zones/<zone>/snapshot``, ``P/<stream>/lines/<line>/snapshot``, with
  ``snapshots`` on: the picture of the stream's, the zone's or the line's latest event (an entry, exit or
  loitering in a zone, a crossing of a line) as raw JPEG bytes, retained, QoS 1, just before the event's
  trigger and its JSON, which names it (``snapshot_topic``); cleared with its zone, line or stream
  (`server.events.mqtt.snapshots`);
- ``P/<stream>/counts``: the stream's counts as one flat JSON object (``{"tracks": 3, ...}``),
  retained, published when they change;
- ``P/<stream>/availability``: ``online`` while the stream is live and its frames are inferred,
  ``offline`` while it is starting, reconnecting, failed or ended, while inference is unavailable (a
  remote model's server down: the stream stays live, but no frame is inferred) and after segcast
  stops, retained: its counts are the last ones seen, not the scene now, while it is offline.
  ``online`` waits for the stream's first counts of this process, or since inference came back, and
  goes out after any counts pending, so counts retained from the previous run or from before an
  outage never show as current. Each sensor needs both this and ``P/status`` online
  to be available (``availability_mode: all``), so Home Assistant does not show a camera that is
  down as an empty or still occupied zone;
- ``D/sensor/I_<stream>/<count>/config``: retained discovery config of one sensor per count, its
  device ``I_<stream>`` and its id ``I_<stream>_<count>``, pointing at ``P/<stream>/counts`` and
  ``P/<stream>/availability``; published the first time a count is seen after
  connecting, so counts added later (zones, lines) appear in Home Assistant by themselves, and
  ``tracks``, the count every stream has, as soon as a stream is known: its device is there from its
  start, unavailable, whether or not its camera ever works. A zone's count brings
  ``D/binary_sensor/I_<stream>/zones_<zone>_occupancy/config`` (occupancy: on while the count is over
  0, read from the same counts) and ``D/device_automation/I_<stream>/zones_<zone>_<what>/config``
  (``enter``, ``exit``, ``loiter``: device triggers), a line's
  ``D/device_automation/I_<stream>/lines_<line>_<in|out>/config``; they come and go with it. With
  ``snapshots``, ``D/image/I_<stream>/snapshot/config`` (with ``tracks``),
  ``D/image/I_<stream>/zones_<zone>_snapshot/config`` and ``D/image/I_<stream>/lines_<line>_snapshot/config``
  are image entities of those pictures. A count
  that goes away (its zone or line deleted) has its config cleared (an empty retained message, which
  Home Assistant takes as "remove this sensor"); a removed stream has all of them, its counts and its
  availability cleared. A frame whose analytics failed carries the counts as they stand
  (`server.inference.analysis`), so it removes no sensor. A clear the broker had not confirmed when
  the connection dropped is sent again on the next one. Every connection has the same client id
  (``client_id``, or one drawn at start), so the broker ends the one before as the next is made:
  what was still on its way over it (a config a later clear replaced, its will saying offline)
  never reaches the broker after the new connection's messages.

The availabilities are read back on every connection, before ``P/status`` says online
(`_read_stale`): a stream the broker retains as ``online`` that this process does not have (a run
before crashed, and the stream is gone from its config, or was added without being saved) is said
``offline``, so its counts are not shown as current; unless ``P/status`` and ``P/server``, read with
them, say another segcast is live on this prefix, whose streams those are (`server.events.mqtt.claim`).
Its sensors and counts are kept, unavailable:
this node cannot tell a stream gone for good from one that comes back, or that another node of the
fleet now publishes the same sensors for. The discovery configs of each stream this process has are
read back too, once a connection as the stream is known (`_read_configs`: its device's
``D/<component>/I_<stream>/+/config`` alone, not every config under ``D``, of which a broker with
thousands retained drops some): one this node published (a run before was killed after a zone was
renamed) for a count the stream no longer has is cleared with its counts; another node's, pointing at
its own topics, is left alone (`server.events.mqtt.retained`). Its pictures under ``P`` are read back
on their own, once a process, and only where no image entity's config read back leads to them
(``snapshots`` or discovery off): a picture of a zone deleted since, or any with ``snapshots`` off now, is
cleared. A stream deleted while segcast was stopped is no longer this node's to read, and keeps its
sensors until they are deleted in Home Assistant. An account that may not read them gets no correction:
mosquitto grants the subscription and sends nothing; a broker that refuses one kind (availabilities,
configs, pictures), or ends the connection for it twice in a row (as AWS IoT does for what a policy
forbids), is not asked for that kind again, which is logged once (`server.events.mqtt.readback`). At
start the availabilities read include the streams of the config file, not registered yet while the
model loads: they are offline until their first counts.

One task owns the connection: it connects, publishes, and on any broker error waits (doubling up to
`BACKOFF_MAX_S`, from the start again once the broker has confirmed a publish on a connection) and
connects again; a connection lost at any point, its first messages included, is noticed at once.
Up to `WINDOW` publishes are on their way at once, in order
over the one connection (`server.events.mqtt.window`). Events and state take turns: between two
events goes one stream's pending removal, availability or counts (at most one of each per stream is
pending, the newest), so a flood of events does not hold back a camera going offline or a new zone's
sensor. Events the broker had not confirmed when the connection dropped are published again first,
in order, after it, the first of them alone until confirmed (`server.events.mqtt.outbox`). What is
retained of each stream, and its clearing, is decided in `server.events.mqtt.retained`; a fleet's
nodes sharing ``I`` is written down there. Any other error publishing one message
costs that message (an event is counted failed), logged with its stream; the task carries on with
the rest. A message the broker refused is one: the connection speaks MQTT 5, whose PUBACK says so (a
topic the account's ACL forbids: `server.events.mqtt.window.PublishRefused`), where MQTT 3.1.1's says
nothing and the broker drops it; a broker that refuses MQTT 5 is spoken to in 3.1.1 (`MqttSink._fall_back`).
At shutdown segcast and its streams say offline, and an event still queued, or on its way unconfirmed, is
counted dropped.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import ssl
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, TypeVar, cast

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from server.events.config import MqttSettings
from server.events.counts import Counts
from server.events.mqtt.claim import ServerClaim, another_server
from server.events.mqtt.connection_errors import CONNECTION_CLOSED, connection_error, reason_number
from server.events.mqtt.outbox import EventOutbox
from server.events.mqtt.readback import ReadBack
from server.events.mqtt.retained import RetainedStreams
from server.events.mqtt.snapshots import EventSnapshots
from server.events.mqtt.topics import MqttTopics
from server.events.mqtt.window import QOS, AckedClient, OutMessage, PublishRefused, PublishWindow
from server.events.sink import BACKOFF_MAX_S, DeliveryTask, OutEvent, SinkHealth, Tally, backoff_s

log = logging.getLogger(__name__)
_T = TypeVar("_T")

CONNECT_TIMEOUT_S = 10.0
OFFLINE_TIMEOUT_S = 1.0
#: Random hex digits of the client id drawn at start when ``client_id`` is not set: with ``segcast``,
#: the 23 characters every MQTT 3.1.1 broker must take.
CLIENT_ID_HEX = 16
#: CONNACK's "unsupported protocol version", as paho reports a broker's refusal of MQTT 5 (a 3.1.1 broker's
#: return code 1 included).
UNSUPPORTED_PROTOCOL_VERSION = 0x84


class _ClientLog(logging.LoggerAdapter[logging.Logger]):
    """paho's and aiomqtt's own lines, at DEBUG under this module's logger.

    paho logs every failed attempt at ERROR (``failed to receive on socket: ...``), with no name of the
    output and no limit; the sink's own line says the same once, throttled (`Tally.fail`), with the
    broker's address and a hint where it has one.
    """

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(logging.DEBUG, msg, *args, **kwargs)


#: Handed to aiomqtt as its logger, which it passes to paho: an adapter is all either calls.
CLIENT_LOG = cast(logging.Logger, _ClientLog(log.getChild("client")))


class MqttSink:
    def __init__(
        self, settings: MqttSettings, backoff_first_s: float = 0.5, clock: Callable[[], float] = time.time
    ) -> None:
        """``clock``: wall-clock seconds, which events' ages are judged by (`EventOutbox`)."""
        self.settings = settings
        self.name = f"mqtt {settings.host}:{settings.effective_port}"
        self.backoff_first_s = backoff_first_s
        self.connect_timeout_s = CONNECT_TIMEOUT_S
        self._tally = Tally(self.name, log)
        self.topics = MqttTopics(settings)
        self._streams = RetainedStreams(self.topics, settings.discovery, settings.snapshots)
        self._wake = asyncio.Event()
        #: Whether `offer` wants each event's picture: with ``snapshots``, a zone's or line's is published.
        self.snapshots = settings.snapshots
        self._snapshots = (
            EventSnapshots(settings, self.topics, self._tally, self._wake.set, self._streams.pictures_sent)
            if settings.snapshots
            else None
        )
        self._events = EventOutbox(settings, self.topics, self._tally, clock, self._snapshots)
        self._state_turn = False  # whether the next message is state rather than an event, when both wait
        self._availabilities = ReadBack(
            self.name,
            "a stream of a run that ended without saying offline (a crash) stays online in Home Assistant "
            "until it is live again",
        )
        self._configs = ReadBack(
            self.name,
            "a sensor of a zone or line deleted while segcast was stopped stays in Home Assistant until deleted there"
            if settings.discovery
            else "the discovery configs a run with discovery on left stay retained at the broker (and their entities "
            "in Home Assistant, if any) until cleared there",
        )
        #: Apart from the configs: an account may be let read one and not the other (`server.events.mqtt.readback`).
        self._pictures = ReadBack(
            self.name,
            "an event picture a run before left (of a zone or line deleted while segcast was stopped, or any with "
            "snapshots off now) stays retained at the broker until cleared there",
        )
        self._configs_wanted = asyncio.Event()  # set: a stream's configs may be due to be read back
        #: Connections in a row the broker confirmed no publish on: the backoff before the next one.
        self._failures = 0
        #: Whether the broker confirmed a message sent after ``online`` on this connection (`_working`).
        self._proven = False
        self._closing = False  # set by `stop`
        self._delivery = DeliveryTask(self._run, self.name)
        #: The same on every connection, so the broker ends the one before when the next is made.
        self.client_id = settings.client_id or f"segcast{secrets.token_hex(CLIENT_ID_HEX // 2)}"
        self._claim = ServerClaim.of_this_host(self.client_id)
        self._sharing_with: ServerClaim | None = None  # another segcast live on this prefix, once warned of
        #: MQTT 5, whose PUBACK says a publish was refused, until the broker refuses it (`_fall_back`).
        self._protocol = aiomqtt.ProtocolVersion.V5
        #: Whether a connection with these settings was made: a failure after is no sign of the wrong port.
        self._answered = False

    # -- on the loop, from the outputs ----------------------------------------------------------

    def offer(self, event: OutEvent) -> None:
        if self._events.offer(event):
            self._wake.set()

    def offer_counts(self, stream_id: str, counts: Counts) -> None:
        self._streams.offer_counts(stream_id, counts)
        self._wake.set()
        self._want_configs()

    def stream_live(self, stream_id: str, live: bool) -> None:
        """Whether ``stream_id`` is live now: its sensors are available only while it is
        (`RetainedStreams.stream_live`)."""
        if self._streams.stream_live(stream_id, live):
            self._wake.set()
        self._want_configs()

    def inference_available(self, available: bool) -> None:
        """Whether frames are inferred now: while they are not, no stream's sensors are available
        (`RetainedStreams.inference_available`)."""
        if self._streams.inference_available(available):
            self._wake.set()

    def forget_stream(self, stream_id: str) -> None:
        self._streams.forget_stream(stream_id)
        self._wake.set()

    async def start(self) -> None:
        self._delivery.start()

    async def stop(self) -> None:
        await self._delivery.drain(self._events.queue, self._tally)
        # Python 3.11's asyncio.wait_for, which aiomqtt awaits a broker's answer with, can swallow a
        # cancellation that comes as the answer does: the flag ends the connection task anyway.
        self._closing = True
        self._wake.set()
        await self._delivery.stop()
        if self._snapshots is not None:
            await self._snapshots.stop()
        self._tally.lose_at_shutdown(self._events.unsent)

    def health(self) -> SinkHealth:
        return self._tally.health()

    # -- the connection task --------------------------------------------------------------------

    def _client(self) -> AckedClient:
        """A client for one connection: a new one each, so each starts a clean session (MQTT 3.1.1's clean
        session; MQTT 5's clean start, with no session expiry: the session ends with the connection), and
        what a connection ended without is sent again by this sink (`server.events.mqtt.outbox`), not paho."""
        settings = self.settings
        context = None
        if settings.tls:
            cafile = str(settings.ca_file) if settings.ca_file is not None else None
            context = ssl.create_default_context(cafile=cafile)
        client = AckedClient(
            settings.host,
            settings.effective_port,
            username=settings.username,
            password=settings.password,
            identifier=self.client_id,
            protocol=self._protocol,
            will=aiomqtt.Will(self.topics.status, "offline", qos=QOS, retain=True),
            tls_context=context,
            timeout=self.connect_timeout_s,
            max_inflight_messages=0,  # none: `WINDOW` bounds what is on its way
            logger=CLIENT_LOG,
        )
        # `WINDOW` bounds what is on its way; aiomqtt's warning from 11 pending calls on would fire
        # every busy second (and at shutdown, for each stream said offline).
        client.pending_calls_threshold = sys.maxsize
        return client

    async def _run(self) -> None:
        """Connect, publish, and after any broker error connect again, backing off (`_working` resets it)."""
        while not self._closing:
            connected = False
            try:
                async with self._client() as client:
                    connected = self._answered = True
                    try:
                        await self._connected(client)
                    except asyncio.CancelledError:
                        await self._say_offline(client)
                        raise
                    # `_connected` returns only once closing: after a cancellation aiomqtt swallowed.
                    await self._say_offline(client)
            except (aiomqtt.MqttError, OSError) as exc:  # OSError: a CA file that cannot be read or used
                if self._fall_back(exc):
                    continue
                said = connection_error(
                    self.settings,
                    exc,
                    connected=connected,
                    answered=self._answered,
                    timeout_s=self.connect_timeout_s,
                )
                self._tally.fail(said)
            except Exception as exc:  # a bug: connect again rather than end the task for good
                log.exception("%s: connection ended by an internal error", self.name)
                self._tally.fail(f"internal error: {exc!r}")
            await asyncio.sleep(backoff_s(self._failures, self.backoff_first_s, BACKOFF_MAX_S))
            self._failures += 1

    def _fall_back(self, exc: BaseException) -> bool:
        """Whether the broker refused MQTT 5 (an MQTT 3.1.1 broker does, as its protocol bids): then connect
        again at once with 3.1.1, for the rest of this run, and say what is lost with it, once."""
        if not isinstance(exc, MqttConnectError) or reason_number(exc.rc) != UNSUPPORTED_PROTOCOL_VERSION:
            return False
        if self._protocol is not aiomqtt.ProtocolVersion.V5:
            return False
        self._protocol = aiomqtt.ProtocolVersion.V311
        log.warning(
            "%s: the broker does not speak MQTT 5: connecting with MQTT 3.1.1, whose PUBACK cannot say a publish "
            "was refused: an event the broker's ACL forbids is lost, counted delivered",
            self.name,
        )
        return True

    def _working(self) -> None:
        """The broker confirmed a message sent after ``online`` on this connection, or every one sent with
        none left to send: it works, and the next connection, after this one ends, is made without a wait.

        Not at CONNACK: a broker that takes the connection and ends it at the first message (a policy
        that forbids it, a message it will not take) would be connected to twice a second for ever,
        with a "working" and an error in the log each time. Nor at the ``online`` confirmed: the broker
        may end every connection for what goes after it, the event the connection before ended on
        (`server.events.mqtt.outbox.RESEND_CONNECTIONS_MAX`) or a stream's counts, availability or
        sensor config, sent again on every connection (a topic outside the account's policy).
        """
        self._proven = True
        self._failures = 0
        self._tally.ok(0)

    async def _connected(self, client: AckedClient) -> None:
        """Say the streams a run before left ``online`` offline, then segcast online, and publish
        until the connection drops or closing."""
        await _unless_lost(client, self._say_online(client))
        self._streams.connected()
        self._want_configs()
        await self._serve(client)

    async def _say_online(self, client: AckedClient) -> None:
        """The connection's preamble: the corrections of `_read_stale`, then ``online``.

        The corrections go before ``online``, over the one connection, so no subscriber sees segcast
        online while the broker still says a stream of a run that crashed is: its sensors would show
        the counts that run left as the scene now.
        """
        stale = await self._read_stale(client)
        corrections = [(self.topics.availability(stream_id), "offline") for stream_id in stale]
        # In this order, as `PublishWindow` sends: no stream of ours can say online before them.
        refused = await client.publish_in_order(
            [*corrections, (self.topics.server, self._claim.payload), (self.topics.status, "online")]
        )
        self._give_up(refused, "as it connected")

    async def _say_offline(self, client: AckedClient) -> None:
        """At shutdown: segcast, then every stream it said was online, offline (within `OFFLINE_TIMEOUT_S`).

        The status alone makes every sensor unavailable now; the streams' own ``offline`` keeps
        them so when segcast starts again, until each stream is live again.
        """
        streams = self._streams.offline_at_shutdown()
        messages = [(self.topics.status, "offline"), *((self.topics.availability(s), "offline") for s in streams)]
        with suppress(aiomqtt.MqttError, TimeoutError):
            # Sent in this order over the one connection, as `PublishWindow` sends.
            sending = asyncio.wait_for(client.publish_in_order(messages), OFFLINE_TIMEOUT_S)
            self._give_up(await _unless_lost(client, sending), "as it stopped")

    def _give_up(self, refused: list[PublishRefused], when: str) -> None:
        """Say each of segcast's own retained messages the broker refused (its status, its server claim, a stream's
        availability) as the failure it is, through the tally as an event given up is (logged once a window): a
        status its ACL forbids leaves every sensor unavailable in Home Assistant."""
        for refusal in refused:
            self._tally.fail(f"gave up what segcast says {when}: {refusal}")

    async def _serve(self, client: AckedClient) -> None:
        """Publish until the connection drops (raises `aiomqtt.MqttError`), noticed even while idle.

        Iterating ``client.messages`` ends with an error as soon as the connection is lost, so a broker
        that goes away while nothing is being published still turns the state to failing at once.
        """
        tasks = (
            asyncio.ensure_future(self._publish_forever(client)),
            asyncio.ensure_future(self._watch(client)),
            asyncio.ensure_future(self._read_configs(client)),
        )
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()

    async def _read_stale(self, client: aiomqtt.Client) -> list[str]:
        """The streams this process does not have whose availability the broker retains as ``online``;
        none while another segcast is live on this prefix (`server.events.mqtt.claim`), which is warned of.

        Subscribed to ``P/status``, ``P/server`` and ``P/+/availability`` and unsubscribed at once: the
        broker sends the retained messages as it takes the subscription, before it answers the
        unsubscription (mosquitto does, and MQTT gives no other end-of-retained mark), so by then they
        have arrived; one already on its way after that is taken by `_watch`. Each is checked as it is
        read, against the streams this process has at that moment: a stream it has says its own
        availability, after this.
        """
        learning = [self.topics.status, self.topics.server, self.topics.availability("+")]
        if not await self._availabilities.subscribe(client, *learning):
            return []
        await client.unsubscribe(learning)
        retained = [await anext(client.messages) for _ in range(len(client.messages))]
        other = another_server(retained, self.topics, self._claim)
        if other is not None and other != self._sharing_with:
            log.warning(
                "%s: another segcast (%s) is online under topic_prefix %r on this broker: give each segcast its "
                "own topic_prefix. Until then this one says none of the streams the broker retains as online "
                "offline (they may be the other's), and either one stopping makes both's sensors unavailable",
                self.name,
                other,
                self.settings.topic_prefix,
            )
        self._sharing_with = other
        return self._streams.read_back(retained, prefix_ours=other is None)

    async def _read_configs(self, client: aiomqtt.Client) -> None:
        """Read back the retained discovery configs of each stream's device, once a connection, as the
        stream is known (`RetainedStreams.next_configs_to_read`), and its pictures where they are to be
        (`RetainedStreams.picture_filters_to_read`), each kind given up on its own (`ReadBack`); never returns.

        Not every config under the discovery prefix: a broker that retains thousands sends them all,
        and drops some. Each stream's come into `_watch`, which judges them (`RetainedStreams.read_config`);
        subscribing and unsubscribing at once, as `_read_stale` does, leaves the subscription open for as
        long as the broker takes to send them.

        Ends once cancelled even where Python 3.11's asyncio.wait_for, which aiomqtt awaits the broker's
        answer with, swallowed the cancellation (it came as the answer did): waiting for the next stream
        after it, `_serve`, and with it the stop or the next connection, waited for good.
        """
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            stream_id = self._streams.next_configs_to_read()
            if stream_id is None:
                self._configs_wanted.clear()
                await self._configs_wanted.wait()
                continue
            configs = self._streams.config_filters(stream_id)
            if configs and await self._configs.subscribe(client, *configs):
                await client.unsubscribe(list(configs))
            pictures = self._streams.picture_filters_to_read(stream_id)
            if pictures and await self._pictures.subscribe(client, *pictures):
                await client.unsubscribe(list(pictures))
                self._streams.pictures_read(stream_id)

    def _want_configs(self) -> None:
        if self._streams.configs_to_read:
            self._configs_wanted.set()

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Wait for a disconnection; the retained messages read back are taken here: an availability that
        comes after `_read_stale`, and the configs `_read_configs` asks for."""
        async for message in client.messages:
            if self._streams.read_retained(message):
                self._wake.set()

    async def _publish_forever(self, client: AckedClient) -> None:
        """Publish, `WINDOW` at a time, until closing; what the broker has not confirmed by then is kept.

        An event the connection before ended on goes first, alone, until the broker has confirmed
        it: if the broker ends this connection too, that event is the one to blame
        (`server.events.mqtt.outbox.RESEND_CONNECTIONS_MAX`), not the events that would have gone
        after it.
        """
        self._proven = False
        window = PublishWindow(client, self._confirmed, self._failed, self._wake)
        outbox: deque[OutMessage] = deque()  # taken, not yet sent: a stream's counts are a few messages
        try:
            if self._events.resending:
                for message in self._events.next_messages():  # the event, with its trigger's message
                    window.send(message)
                while not window.empty and not self._closing:
                    if window.broken is not None:
                        raise window.broken
                    self._wake.clear()
                    await self._wake.wait()
            while not self._closing:
                if window.broken is not None:
                    raise window.broken
                if not outbox:
                    outbox.extend(self._next_messages())
                if not outbox and window.empty and not self._proven:
                    self._working()  # all sent is confirmed: as much as an idle connection can prove
                if outbox and not window.full:
                    window.send(outbox.popleft())
                    continue
                self._wake.clear()
                await self._wake.wait()
        finally:
            self._keep_unconfirmed([*window.close(), *outbox])
            await window.wait_closed()

    def _next_messages(self) -> list[OutMessage]:
        """The next event, or the next stream's pending state, taking turns while both wait; [] if neither."""
        for state in (self._state_turn, not self._state_turn):
            messages = self._streams.next_messages() if state else self._events.next_messages()
            if messages:
                self._state_turn = not state
                return messages
        return []

    def _confirmed(self, message: OutMessage) -> None:
        if not self._proven:
            self._working()
        if message.event is not None:
            self._events.confirmed(message.event)

    def _failed(self, message: OutMessage, exc: BaseException) -> None:
        """Give up on ``message`` after an error that is not the connection's: publishing it again would fail again."""
        if isinstance(exc, PublishRefused):
            self._events.give_up(message, f"gave up {message.what}: {exc}")
        else:
            self._events.give_up(message, f"cannot publish {message.what}: {exc}")

    def _keep_unconfirmed(self, messages: list[OutMessage]) -> None:
        """What a connection ended without: its events go first on the next one (but those given up),
        its clears are sent again."""
        self._events.keep_unconfirmed(messages, self._closing)
        self._streams.keep_unconfirmed(messages)


async def _unless_lost(client: aiomqtt.Client, step: Awaitable[_T]) -> _T:
    """``step``'s result, or `aiomqtt.MqttError` as soon as the connection is lost under it.

    aiomqtt notices a lost connection only in `aiomqtt.Client.messages`: a subscribe or a publish
    awaiting its answer waits out the client's whole timeout (`CONNECT_TIMEOUT_S`), and the error
    aiomqtt keeps for the loss is logged by asyncio as never retrieved. So the steps before
    `MqttSink._serve` watches the connection race its loss, on the future aiomqtt's own message
    iterator waits on (private: aiomqtt has no public sign of a lost connection), and take its error.
    A release without it gets the old behaviour, the client's timeout, said once (`_no_sign_of_loss`).
    """
    lost = getattr(client, "_disconnected", None)
    if not isinstance(lost, asyncio.Future):
        _no_sign_of_loss()
        return await step
    doing = asyncio.ensure_future(step)
    try:
        await asyncio.wait((doing, lost), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not doing.done():
            doing.cancel()
            await asyncio.wait((doing,))
    # Taken whatever happens next: an error left in it is logged at garbage collection.
    error = lost.exception() if lost.done() and not lost.cancelled() else None
    if not doing.cancelled():
        return doing.result()
    raise aiomqtt.MqttError(CONNECTION_CLOSED) from error


@functools.cache
def _no_sign_of_loss() -> None:
    """Say, once a process, that this aiomqtt has not the private future `_unless_lost` races."""
    log.warning(
        "aiomqtt %s has no Client._disconnected: a connection lost while segcast says online or offline is "
        "noticed only after the client's timeout",
        getattr(aiomqtt, "__version__", "(version unknown)"),
    )
