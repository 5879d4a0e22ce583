"""MQTT: events and per-stream counts published to a broker, and Home Assistant discovery for the counts.

Topics (``P`` is ``topic_prefix``, default ``segcast``; ``D`` is ``discovery_prefix``, default
``homeassistant``; ``I`` is ``discovery_id``, default ``P`` with ``/`` as ``_``):

- ``P/status``: ``online`` while connected, ``offline`` after (the broker sends it as our will if the
  connection dies), retained;
- ``P/<stream>/events/<type>``: every event's JSON, QoS 1, not retained (``type`` is ``track``,
  ``zone_enter``, ``line_cross``...);
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
  connecting, so counts added later (zones, lines) appear in Home Assistant by themselves. A count
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
``offline``, so its counts are not shown as current. Its sensors and counts are kept, unavailable:
this node cannot tell a stream gone for good from one that comes back, or that another node of the
fleet now publishes the same sensors for. Discovery configs are not read back (a broker with
thousands of retained configs drops some), so a zone or stream deleted while segcast was stopped
keeps its sensor until it is deleted in Home Assistant. An account that may not read
``P/+/availability`` gets no correction: mosquitto grants the subscription and sends nothing; a
broker that refuses it, or ends the connection for it twice in a row (as AWS IoT does for what a
policy forbids), is not asked again, which is logged once. At start this includes the streams of the
config file, not registered yet while the model loads: they are offline until their first counts.

Nodes of one fleet share ``I`` and each has its own ``P``: a camera keeps its device wherever it
runs, and its config says which node's topics Home Assistant listens to. A node clears only configs
it published, but it cannot tell whether another node has published the same one since (nothing is
read back), so a camera moves in this order: removed from the old node first (done once its retained
counts are gone from the broker), then added to the new one. Home Assistant then takes its sensors
away and back under the same ids, and the new node's config is the one left retained; added first,
the old node's removal would clear the new node's config, and the device would be gone until the
new node connects again.

One task owns the connection: it connects, publishes, and on any broker error waits (doubling up to
`BACKOFF_MAX_S`, from the start again once the broker has confirmed a publish on a connection) and
connects again; a connection lost at any point, its first messages included, is noticed at once.
Up to `WINDOW` publishes are on their way at once, in order
over the one connection (`server.events.mqtt_window`). Events and state take turns: between two
events goes one stream's pending removal, availability or counts (at most one of each per stream is
pending, the newest), so a flood of events does not hold back a camera going offline or a new zone's
sensor. Events the broker had not confirmed when the connection dropped are published again first,
in order, after it (at least once, as QoS 1 promises), the first of them alone until confirmed; one
that `RESEND_CONNECTIONS_MAX` connections ended without confirming is given up and counted failed,
logged with its size and topic (a broker ends the connection for a message larger than it takes, or
on a topic its policy forbids, every time it is sent). Events arriving meanwhile wait in the bounded
queue, and once it is full they are dropped and counted. Any other error publishing one message
costs that message (an event is counted failed), logged with its stream; the task carries on with
the rest. At shutdown segcast and its streams say offline, and an event still queued, or on its way
unconfirmed, is counted dropped.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets
import ssl
import sys
from collections import deque
from collections.abc import Awaitable, Iterable
from contextlib import suppress
from typing import Any, TypeVar, cast

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from server.events.config import MqttSettings
from server.events.counts import Counts
from server.events.mqtt_topics import MqttTopics
from server.events.mqtt_window import QOS, OutMessage, PublishWindow
from server.events.sink import BACKOFF_MAX_S, DeliveryTask, OutEvent, SinkHealth, Tally, backoff_s

log = logging.getLogger(__name__)
_T = TypeVar("_T")

CONNECT_TIMEOUT_S = 10.0
OFFLINE_TIMEOUT_S = 1.0
#: Random hex digits of the client id drawn at start when ``client_id`` is not set: with ``segcast``,
#: the 23 characters every MQTT 3.1.1 broker must take.
CLIENT_ID_HEX = 16
#: What aiomqtt's error says when the broker's answer did not come within the client's timeout.
AIOMQTT_TIMED_OUT = "Operation timed out"
#: The port MQTT over TLS is registered on; plain MQTT's is 1883.
MQTT_TLS_PORT = 8883
#: Connections ended by the broker in a row as it was asked for the availabilities before they are
#: not asked for any more: once could be the network.
READS_CUT_LIMIT = 2
#: Connections an event may be on that end without the broker confirming it before it is given up as
#: failed: a broker ends the connection, every time, for a message over its maximum packet size
#: (mosquitto's ``max_packet_size``) or on a topic its policy forbids (AWS IoT). Once could be the network.
RESEND_CONNECTIONS_MAX = 3


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
    #: MQTT sends the event's JSON only.
    snapshots = False

    def __init__(self, settings: MqttSettings, backoff_first_s: float = 0.5) -> None:
        self.settings = settings
        self.name = f"mqtt {settings.host}:{settings.effective_port}"
        self.backoff_first_s = backoff_first_s
        self.connect_timeout_s = CONNECT_TIMEOUT_S
        self._tally = Tally(self.name, log)
        self._events: asyncio.Queue[OutEvent] = asyncio.Queue(settings.queue)
        #: Taken from the queue but not confirmed when the last connection ended: sent first, in order.
        self._resend: deque[OutEvent] = deque()
        self._state_turn = False  # whether the next message is state rather than an event, when both wait
        #: Per stream, its newest counts since this process started or inference last came back.
        self._latest: dict[str, Counts] = {}
        self._unsent_counts: dict[str, Counts] = {}
        self._live: dict[str, bool] = {}  # per stream heard of, whether it is live
        self._inference = True  # whether frames are inferred now: a local model's always are
        self._unsent_availability: dict[str, bool] = {}
        self._online: set[str] = set()  # streams whose availability at the broker is (or is on its way to be) "online"
        #: Per stream, the discovery config topics sent on this connection.
        self._announced: dict[str, set[str]] = {}
        #: Per stream, the discovery config topics this process published and has not (knowingly) cleared.
        self._sensors: dict[str, set[str]] = {}
        self._forgotten: set[str] = set()  # removed streams whose retained messages are still to clear
        #: Every stream heard of (its state or its counts) and not removed since: the streams this process has.
        self._streams: set[str] = set()
        #: Streams this process does not have that the broker retains as ``online``: to say offline.
        self._stale: set[str] = set()
        #: Connections in a row that ended while availabilities were read back (`_read_stale`).
        self._reads_cut = 0
        self._reading_refused = False  # by the broker: availabilities are not read back any more
        #: Per event that was on its way when a connection ended (by ``event_id``), how many connections
        #: ended so: see `RESEND_CONNECTIONS_MAX`.
        self._cut_on: dict[str, int] = {}
        #: Connections in a row the broker confirmed no publish on: the backoff before the next one.
        self._failures = 0
        #: Whether the broker confirmed a message sent after ``online`` on this connection (`_working`).
        self._proven = False
        self._wake = asyncio.Event()
        self._closing = False  # set by `stop`
        self._delivery = DeliveryTask(self._run, self.name)
        self.topics = MqttTopics(settings)
        #: The same on every connection, so the broker ends the one before when the next is made.
        self.client_id = settings.client_id or f"segcast{secrets.token_hex(CLIENT_ID_HEX // 2)}"

    # -- on the loop, from the outputs ----------------------------------------------------------

    def offer(self, event: OutEvent) -> None:
        self._tally.offer()
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            self._tally.drop(event)
            return
        self._wake.set()

    def offer_counts(self, stream_id: str, counts: Counts) -> None:
        self._has(stream_id)
        self._latest[stream_id] = counts
        self._unsent_counts[stream_id] = counts
        self._wake.set()

    def stream_live(self, stream_id: str, live: bool) -> None:
        """Whether ``stream_id`` is live now: its sensors are available only while it is.

        A stream that stops being live (its camera reconnecting) has its counts forgotten as the
        newest, as for an inference outage: once live again it says ``online`` only after counts of a
        frame read since, not on the strength of those from before its camera went.
        """
        self._has(stream_id)
        if self._live.get(stream_id) is live:
            return
        self._live[stream_id] = live
        if not live:
            self._latest.pop(stream_id, None)
        self._unsent_availability[stream_id] = live and self._inference
        self._wake.set()

    def inference_available(self, available: bool) -> None:
        """Whether frames are inferred now: while they are not, no stream's sensors are available.

        The counts had before a change are forgotten as the newest (they stay retained at the
        broker), so a live stream says ``online`` again only after counts of a frame that came
        after it, as after a restart (`_counts_published`).
        """
        if available is self._inference:
            return
        self._inference = available
        self._latest.clear()
        for stream_id, live in self._live.items():
            if live:
                self._unsent_availability[stream_id] = available
        self._wake.set()

    def forget_stream(self, stream_id: str) -> None:
        self._streams.discard(stream_id)
        self._latest.pop(stream_id, None)
        self._unsent_counts.pop(stream_id, None)
        self._live.pop(stream_id, None)
        self._unsent_availability.pop(stream_id, None)
        self._forgotten.add(stream_id)
        self._wake.set()

    def _has(self, stream_id: str) -> None:
        """``stream_id`` is this process's: it says its own availability from now on, so no
        ``online`` the broker retains from a run before is corrected for it any more."""
        self._streams.add(stream_id)
        self._stale.discard(stream_id)

    async def start(self) -> None:
        self._delivery.start()

    async def stop(self) -> None:
        await self._delivery.drain(self._events, self._tally)
        # Python 3.11's asyncio.wait_for, which aiomqtt awaits a broker's answer with, can swallow a
        # cancellation that comes as the answer does: the flag ends the connection task anyway.
        self._closing = True
        self._wake.set()
        await self._delivery.stop()
        self._tally.lose_at_shutdown(self._events.qsize() + len(self._resend))

    def health(self) -> SinkHealth:
        return self._tally.health()

    # -- the connection task --------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        settings = self.settings
        context = None
        if settings.tls:
            cafile = str(settings.ca_file) if settings.ca_file is not None else None
            context = ssl.create_default_context(cafile=cafile)
        client = aiomqtt.Client(
            settings.host,
            settings.effective_port,
            username=settings.username,
            password=settings.password,
            identifier=self.client_id,
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
                    connected = True
                    try:
                        await self._connected(client)
                    except asyncio.CancelledError:
                        await self._say_offline(client)
                        raise
                    # `_connected` returns only once closing: after a cancellation aiomqtt swallowed.
                    await self._say_offline(client)
            except (aiomqtt.MqttError, OSError) as exc:  # OSError: a CA file that cannot be read or used
                self._tally.fail(self._connection_error(exc, connected))
            except Exception as exc:  # a bug: connect again rather than end the task for good
                log.exception("%s: connection ended by an internal error", self.name)
                self._tally.fail(f"internal error: {exc!r}")
            await asyncio.sleep(backoff_s(self._failures, self.backoff_first_s, BACKOFF_MAX_S))
            self._failures += 1

    def _working(self) -> None:
        """The broker confirmed a message sent after ``online`` on this connection, or every one sent with
        none left to send: it works, and the next connection, after this one ends, is made without a wait.

        Not at CONNACK: a broker that takes the connection and ends it at the first message (a policy
        that forbids it, a message it will not take) would be connected to twice a second for ever,
        with a "working" and an error in the log each time. Nor at the ``online`` confirmed: the broker
        may end every connection for what goes after it, the event the connection before ended on
        (`RESEND_CONNECTIONS_MAX`) or a stream's counts, availability or sensor config, sent again on
        every connection (a topic outside the account's policy).
        """
        self._proven = True
        self._failures = 0
        self._tally.ok(0)

    def _connection_error(self, exc: BaseException, connected: bool) -> str:
        """The failure of a connection, for ``last_error`` and the log: the broker's address, the error,
        and a hint where the symptoms are those of plain MQTT sent to a TLS port.

        A TLS listener takes the TCP connection and then drops plain MQTT's CONNECT, or waits for a
        TLS hello that never comes: either way no CONNACK arrives and the client times out. That
        alone does not prove a TLS port (a broker too busy to answer looks the same), so the hint is
        a question; on the TLS port itself any failure of plain MQTT gets it.
        """
        settings = self.settings
        where = f"broker {settings.host}:{settings.effective_port}"
        if settings.tls or connected:
            return f"{where}: {exc}"
        if str(exc) == AIOMQTT_TIMED_OUT:
            timeout = f"{self.connect_timeout_s:g}"
            return f"{where}: connected, but no MQTT answer within {timeout} s (is it a TLS port? set tls = true)"
        if settings.effective_port == MQTT_TLS_PORT:
            return f"{where}: {exc} (port {MQTT_TLS_PORT} is MQTT over TLS: set tls = true)"
        return f"{where}: {exc}"

    async def _connected(self, client: aiomqtt.Client) -> None:
        """Say the streams a run before left ``online`` offline, then segcast online, and publish
        until the connection drops or closing."""
        await _unless_lost(client, self._say_online(client))
        self._announced.clear()
        self._unsent_counts = dict(self._latest)  # the broker may have lost the retained ones
        self._unsent_availability = {stream_id: live and self._inference for stream_id, live in self._live.items()}
        await self._serve(client)

    async def _say_online(self, client: aiomqtt.Client) -> None:
        """The connection's preamble: the corrections of `_read_stale`, then ``online``.

        The corrections go before ``online``, over the one connection, so no subscriber sees segcast
        online while the broker still says a stream of a run that crashed is: its sensors would show
        the counts that run left as the scene now.
        """
        stale = await self._read_stale(client) if not self._reading_refused else []
        corrections = (client.publish(self.topics.availability(s), "offline", qos=QOS, retain=True) for s in stale)
        # Handed to paho in this order, as `PublishWindow` sends: no stream of ours can say online before them.
        await asyncio.gather(*corrections, client.publish(self.topics.status, "online", qos=QOS, retain=True))

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """At shutdown: segcast, then every stream it said was online, offline (within `OFFLINE_TIMEOUT_S`).

        The status alone makes every sensor unavailable now; the streams' own ``offline`` keeps
        them so when segcast starts again, until each stream is live again.
        """
        streams = sorted(self._online - self._forgotten)  # a removed one's is cleared, not kept
        messages = [(self.topics.status, "offline"), *((self.topics.availability(s), "offline") for s in streams)]
        with suppress(aiomqtt.MqttError, TimeoutError):
            # Sent in this order over the one connection, as `PublishWindow` sends.
            publishing = (client.publish(topic, payload, qos=QOS, retain=True) for topic, payload in messages)
            await _unless_lost(client, asyncio.wait_for(asyncio.gather(*publishing), OFFLINE_TIMEOUT_S))

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Publish until the connection drops (raises `aiomqtt.MqttError`), noticed even while idle.

        Iterating ``client.messages`` ends with an error as soon as the connection is lost, so a broker
        that goes away while nothing is being published still turns the state to failing at once.
        """
        publisher = asyncio.ensure_future(self._publish_forever(client))
        watcher = asyncio.ensure_future(self._watch(client))
        try:
            done, _ = await asyncio.wait((publisher, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (publisher, watcher):
                task.cancel()
            await asyncio.gather(publisher, watcher, return_exceptions=True)
        for task in done:
            task.result()

    async def _read_stale(self, client: aiomqtt.Client) -> list[str]:
        """The streams this process does not have whose availability the broker retains as ``online``.

        Subscribed to ``P/+/availability`` and unsubscribed at once: the broker sends the retained
        messages as it takes the subscription, before it answers the unsubscription (mosquitto does,
        and MQTT gives no other end-of-retained mark), so by then they have arrived; one already on
        its way after that is taken by `_watch`. Each is checked as it is read, against the streams
        this process has at that moment: a stream it has says its own availability, after this.
        """
        learning = self.topics.availability("+")
        self._reads_cut += 1  # undone below, unless the connection ends here
        if self._reads_cut > READS_CUT_LIMIT:
            self._refuse_reading(learning, "ended the connection for it twice in a row")
            return []
        granted = await client.subscribe(learning, qos=0)  # QoS 0: sent at once, not held by the broker's window
        self._reads_cut = 0
        if any(isinstance(code, ReasonCode) and code.is_failure for code in granted):
            self._refuse_reading(learning, "refused the subscription")
            return []
        await client.unsubscribe(learning)
        retained = [await anext(client.messages) for _ in range(len(client.messages))]
        self._stale.clear()
        return sorted(self._stale_among(retained))

    def _refuse_reading(self, topic: str, how: str) -> None:
        """Stop reading back availabilities, which the broker does not let this account do, and say so once."""
        self._reading_refused = True
        log.warning(
            "%s: the broker %s to read %s: not asked again; a stream of a run that ended without saying "
            "offline (a crash) stays online in Home Assistant until it is live again",
            self.name,
            how,
            topic,
        )

    def _stale_among(self, messages: Iterable[aiomqtt.Message]) -> set[str]:
        """The streams not this process's that ``messages`` (retained availabilities) say are online."""
        stale = set()
        for message in messages:
            stream_id = self.topics.stream_of_availability(str(message.topic))
            ours = stream_id in self._streams or stream_id in self._forgotten
            if stream_id is not None and not ours and message.retain and message.payload == b"online":
                stale.add(stream_id)
        return stale

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Wait for a disconnection; a retained availability that comes after `_read_stale` is taken here."""
        async for message in client.messages:
            if stale := self._stale_among([message]):
                self._stale |= stale
                self._wake.set()

    async def _publish_forever(self, client: aiomqtt.Client) -> None:
        """Publish, `WINDOW` at a time, until closing; what the broker has not confirmed by then is kept.

        An event the connection before ended on goes first, alone, until the broker has confirmed
        it: if the broker ends this connection too, that event is the one to blame
        (`RESEND_CONNECTIONS_MAX`), not the events that would have gone after it.
        """
        self._proven = False
        window = PublishWindow(client, self._confirmed, self._failed, self._wake)
        outbox: deque[OutMessage] = deque()  # taken, not yet sent: a stream's counts are a few messages
        try:
            if self._resend:
                window.send(self._next_event()[0])
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
            messages = self._next_state() if state else self._next_event()
            if messages:
                self._state_turn = not state
                return messages
        return []

    def _next_event(self) -> list[OutMessage]:
        if self._resend:
            event = self._resend.popleft()
        elif not self._events.empty():
            event = self._events.get_nowait()
        else:
            return []
        what = f"a {event.data.get('type')} event"
        return [
            OutMessage(self._event_topic(event), json.dumps(event.message), False, event.stream_id, what, event=event)
        ]

    def _next_state(self) -> list[OutMessage]:
        """One stream's pending removal, else the correction of one a run before left online (`_read_stale`),
        else one's availability, else one's counts (with their sensors)."""
        if self._forgotten:
            stream_id = next(iter(self._forgotten))
            self._forgotten.discard(stream_id)
            return self._removal(stream_id)
        if self._stale:
            stream_id = self._stale.pop()
            return [OutMessage(self.topics.availability(stream_id), "offline", True, stream_id, "its availability")]
        for stream_id, live in self._unsent_availability.items():
            if not live or self._counts_published(stream_id):
                return [self._availability(stream_id, self._unsent_availability.pop(stream_id))]
        if self._unsent_counts:
            stream_id = next(iter(self._unsent_counts))
            return self._counts(stream_id, self._unsent_counts.pop(stream_id))
        return []

    def _counts_published(self, stream_id: str) -> bool:
        """Whether this process has counts of ``stream_id`` (since inference last came back) and none
        waiting: its ``online`` may go.

        Until then the broker may retain the counts of the run before, or of the last frame before an
        outage, which ``online`` would pass off as the scene now; sent over the one connection in
        order, the counts reach every subscriber before the ``online`` after them.
        """
        return stream_id in self._latest and stream_id not in self._unsent_counts

    def _confirmed(self, message: OutMessage) -> None:
        if not self._proven:
            self._working()
        if message.event is not None:
            self._cut_on.pop(message.event.event_id, None)
            self._tally.ok()
            self._events.task_done()

    def _failed(self, message: OutMessage, exc: BaseException) -> None:
        """Give up on ``message`` after an error that is not the connection's: publishing it again would fail again."""
        self._give_up(message, f"cannot publish {message.what}: {exc}")

    def _give_up(self, message: OutMessage, why: str) -> None:
        """Count ``message`` failed (if an event) and log ``why``, with its stream."""
        event = message.event
        self._tally.fail(f"stream {message.stream_id!r}: {why}", lost=event is not None)
        if event is not None:
            self._cut_on.pop(event.event_id, None)
            self._events.task_done()

    def _keep_unconfirmed(self, messages: list[OutMessage]) -> None:
        """What a connection ended without: its events go first on the next one, in order, but one it
        was the `RESEND_CONNECTIONS_MAX`-th connection of (`_cut_too_often`); its clears again.

        A sensor whose clear is unconfirmed is known as retained again: the stream's removal, done
        again, clears it, and so do its counts, published anew on every connection.
        """
        kept = []
        for message in messages:
            if message.event is not None and (self._closing or not self._cut_too_often(message)):
                kept.append(message.event)
        self._resend.extendleft(reversed(kept))
        for message in messages:
            if message.clears_sensor:
                self._sensors.setdefault(message.stream_id, set()).add(message.topic)
            if message.removal:
                self._forgotten.add(message.stream_id)

    def _cut_too_often(self, message: OutMessage) -> bool:
        """Count the connection that ended with ``message`` (an event) unconfirmed; at the
        `RESEND_CONNECTIONS_MAX`-th, give the event up, naming its size and topic, and say so."""
        assert message.event is not None
        event_id = message.event.event_id
        self._cut_on[event_id] = cuts = self._cut_on.get(event_id, 0) + 1
        if cuts < RESEND_CONNECTIONS_MAX:
            return False
        size = len(message.payload.encode() if isinstance(message.payload, str) else message.payload)
        self._give_up(
            message,
            f"gave up {message.what} of {size} bytes to {message.topic}: the broker ended the connection each of "
            f"the {cuts} times it was sent (a message larger than the broker takes, or a topic it does not let "
            "this account publish to)",
        )
        return True

    def _event_topic(self, event: OutEvent) -> str:
        return self.topics.event(event.stream_id, str(event.data.get("type", "event")))

    def _availability(self, stream_id: str, live: bool) -> OutMessage:
        if live:
            self._online.add(stream_id)
        else:
            self._online.discard(stream_id)
        payload = "online" if live else "offline"
        return OutMessage(self.topics.availability(stream_id), payload, True, stream_id, "its availability")

    def _counts(self, stream_id: str, counts: Counts) -> list[OutMessage]:
        """The stream's counts, after the configs of its sensors not yet announced and the clearing of stale ones."""
        messages: list[OutMessage] = []
        if self.settings.discovery:
            configs = {self.topics.discovery(stream_id, name): name for name in counts}
            retained = self._sensors.setdefault(stream_id, set())
            announced = self._announced.setdefault(stream_id, set())
            stale = retained - configs.keys()
            for topic in sorted(stale):
                messages.append(OutMessage(topic, b"", True, stream_id, "the removal of a sensor", clears_sensor=True))
                retained.discard(topic)
                announced.discard(topic)
            for topic, name in configs.items():
                if topic not in announced:
                    config = json.dumps(self.topics.discovery_config(stream_id, name))
                    messages.append(OutMessage(topic, config, True, stream_id, "a sensor's config"))
                    announced.add(topic)
                    retained.add(topic)
        messages.append(
            OutMessage(self.topics.counts(stream_id), json.dumps(dict(counts)), True, stream_id, "its counts")
        )
        return messages

    def _removal(self, stream_id: str) -> list[OutMessage]:
        """Remove a removed stream's sensors from Home Assistant and its retained counts and availability.

        What it announced is forgotten here rather than in `forget_stream`: a config on its way when
        the stream was removed is marked announced after that, and a stream added again under the
        same id must announce its sensors again.
        """
        self._announced.pop(stream_id, None)
        self._online.discard(stream_id)
        sensors = sorted(self._sensors.pop(stream_id, ()))
        what = "the removal of its sensors"
        # An empty retained message: the broker drops the retained one, Home Assistant the sensor it described.
        return [
            *(OutMessage(topic, b"", True, stream_id, what, removal=True, clears_sensor=True) for topic in sensors),
            OutMessage(self.topics.counts(stream_id), b"", True, stream_id, what, removal=True),
            OutMessage(self.topics.availability(stream_id), b"", True, stream_id, what, removal=True),
        ]


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
    raise aiomqtt.MqttError("Disconnected while saying segcast online or offline") from error


@functools.cache
def _no_sign_of_loss() -> None:
    """Say, once a process, that this aiomqtt has not the private future `_unless_lost` races."""
    log.warning(
        "aiomqtt %s has no Client._disconnected: a connection lost while segcast says online or offline is "
        "noticed only after the client's timeout",
        getattr(aiomqtt, "__version__", "(version unknown)"),
    )
