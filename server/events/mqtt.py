"""MQTT: events and per-stream counts published to a broker, and Home Assistant discovery for the counts.

Topics (``P`` is ``topic_prefix``, default ``segcast``; ``D`` is ``discovery_prefix``, default
``homeassistant``):

- ``P/status``: ``online`` while connected, ``offline`` after (the broker sends it as our will if the
  connection dies), retained;
- ``P/<stream>/events/<type>``: every event's JSON, QoS 1, not retained (``type`` is ``track``,
  ``zone_enter``, ``line_cross``...);
- ``P/<stream>/counts``: the stream's counts as one flat JSON object (``{"tracks": 3, ...}``),
  retained, published when they change;
- ``P/<stream>/availability``: ``online`` while the stream is live, ``offline`` while it is starting,
  reconnecting, failed or ended (and after segcast stops), retained: its counts are the last ones
  seen, not the scene now, while it is offline. Each sensor needs both this and ``P/status`` online
  to be available (``availability_mode: all``), so Home Assistant does not show a camera that is
  down as an empty or still occupied zone;
- ``D/sensor/<node>_<stream>/<count>/config``: retained discovery config of one sensor per count
  (``node`` is the prefix with ``/`` as ``_``), published the first time a count is seen after
  connecting, so counts added later (zones, lines) appear in Home Assistant by themselves. A count
  that goes away (its zone or line deleted) has its config cleared (an empty retained message, which
  Home Assistant takes as "remove this sensor"); a removed stream has all of them, its counts and its
  availability cleared. Only what this process published is cleared: a stream deleted from the
  config file while segcast was stopped leaves its sensors behind.

One task owns the connection: it connects, publishes from its queue, and on any broker error waits
(doubling up to `BACKOFF_MAX_S`) and connects again. The event being published when the connection
dropped is published again after it (at least once, as QoS 1 promises); events arriving meanwhile
wait in the bounded queue, and once it is full they are dropped and counted. Counts are not queued:
only the newest counts of each stream are kept, so a long outage costs one message per stream. Any
other error publishing one event (or one stream's counts) costs that event (or those counts), logged
with its stream and counted failed; the task carries on with the rest. At shutdown an event still
queued, or on its way unconfirmed, is counted dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from contextlib import suppress

import aiomqtt

from server.events.config import MqttSettings
from server.events.counts import Counts, count_label, is_running_total
from server.events.sink import BACKOFF_MAX_S, DeliveryTask, OutEvent, SinkHealth, Tally, backoff_s

log = logging.getLogger(__name__)

QOS = 1
CONNECT_TIMEOUT_S = 10.0
OFFLINE_TIMEOUT_S = 1.0
UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


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
        self._retry: OutEvent | None = None  # in flight when the connection dropped: sent first after it
        self._latest: dict[str, Counts] = {}
        self._unsent_counts: dict[str, Counts] = {}
        self._live: dict[str, bool] = {}  # per stream heard of, whether it is live
        self._unsent_availability: dict[str, bool] = {}
        self._online: set[str] = set()  # streams whose retained availability at the broker is "online"
        self._announced: set[tuple[str, str]] = set()  # (stream, count) whose config went out on this connection
        #: Per stream, the counts whose discovery config is retained at the broker (across connections).
        self._sensors: dict[str, set[str]] = {}
        self._forgotten: set[str] = set()  # removed streams whose retained messages are still to clear
        self._wake = asyncio.Event()
        self._closing = False  # set by `stop`
        self._delivery = DeliveryTask(self._run, self.name)
        self.status_topic = f"{settings.topic_prefix}/status"
        self._node = settings.topic_prefix.replace("/", "_")

    # -- on the loop, from the outputs ----------------------------------------------------------

    def offer(self, event: OutEvent) -> None:
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            self._tally.drop(event)
            return
        self._wake.set()

    def offer_counts(self, stream_id: str, counts: Counts) -> None:
        self._latest[stream_id] = counts
        self._unsent_counts[stream_id] = counts
        self._wake.set()

    def stream_live(self, stream_id: str, live: bool) -> None:
        """Whether ``stream_id`` is live now: its sensors are available only while it is."""
        if self._live.get(stream_id) is live:
            return
        self._live[stream_id] = live
        self._unsent_availability[stream_id] = live
        self._wake.set()

    def forget_stream(self, stream_id: str) -> None:
        self._latest.pop(stream_id, None)
        self._unsent_counts.pop(stream_id, None)
        self._live.pop(stream_id, None)
        self._unsent_availability.pop(stream_id, None)
        self._forgotten.add(stream_id)
        self._wake.set()

    async def start(self) -> None:
        self._delivery.start()

    async def stop(self) -> None:
        await self._delivery.drain(self._events, self._tally)
        # Python 3.11's asyncio.wait_for, which aiomqtt awaits a broker's answer with, can swallow a
        # cancellation that comes as the answer does: the flag ends the connection task anyway.
        self._closing = True
        self._wake.set()
        await self._delivery.stop()
        self._tally.lose_at_shutdown(self._events.qsize() + (self._retry is not None))

    def health(self) -> SinkHealth:
        return self._tally.health()

    # -- the connection task --------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        settings = self.settings
        context = None
        if settings.tls:
            cafile = str(settings.ca_file) if settings.ca_file is not None else None
            context = ssl.create_default_context(cafile=cafile)
        return aiomqtt.Client(
            settings.host,
            settings.effective_port,
            username=settings.username,
            password=settings.password,
            identifier=settings.client_id,
            will=aiomqtt.Will(self.status_topic, "offline", qos=QOS, retain=True),
            tls_context=context,
            timeout=self.connect_timeout_s,
        )

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            try:
                async with self._client() as client:
                    failures = 0
                    await client.publish(self.status_topic, "online", qos=QOS, retain=True)
                    self._tally.ok(0)
                    self._announced.clear()
                    self._unsent_counts = dict(self._latest)  # the broker may have lost the retained ones
                    self._unsent_availability = dict(self._live)
                    try:
                        await self._serve(client)
                    except asyncio.CancelledError:
                        with suppress(aiomqtt.MqttError, TimeoutError):
                            await asyncio.wait_for(self._say_offline(client), OFFLINE_TIMEOUT_S)
                        raise
            except (aiomqtt.MqttError, OSError) as exc:  # OSError: a CA file that cannot be read or used
                self._tally.fail(f"broker {self.settings.host}:{self.settings.effective_port}: {exc}")
            except Exception as exc:  # a bug: connect again rather than end the task for good
                log.exception("%s: connection ended by an internal error", self.name)
                self._tally.fail(f"internal error: {exc!r}")
            await asyncio.sleep(backoff_s(failures, self.backoff_first_s, BACKOFF_MAX_S))
            failures += 1

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """At shutdown: segcast, then every stream it said was online, offline.

        The status alone makes every sensor unavailable now; the streams' own ``offline`` keeps
        them so when segcast starts again, until each stream is live again.
        """
        await client.publish(self.status_topic, "offline", qos=QOS, retain=True)
        for stream_id in sorted(self._online - self._forgotten):  # a removed one's is cleared, not kept
            await self._publish_availability(client, stream_id, live=False)

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

    @staticmethod
    async def _watch(client: aiomqtt.Client) -> None:
        async for _ in client.messages:  # nothing is subscribed: this only waits for a disconnection
            pass

    async def _publish_forever(self, client: aiomqtt.Client) -> None:
        while True:
            if self._retry is not None or not self._events.empty():
                event = self._retry if self._retry is not None else self._events.get_nowait()
                self._retry = event
                try:
                    await client.publish(self._event_topic(event), json.dumps(event.data), qos=QOS)
                except aiomqtt.MqttError:
                    raise
                except Exception as exc:  # not the connection: publishing it again would fail again
                    self._lose(event.stream_id, f"a {event.data.get('type')} event", exc, lost=1)
                else:
                    self._tally.ok()
                self._retry = None
                self._events.task_done()
            elif self._forgotten:
                stream_id = next(iter(self._forgotten))
                try:
                    await self._clear_stream(client, stream_id)
                except aiomqtt.MqttError:
                    raise
                except Exception as exc:
                    self._lose(stream_id, "the removal of its sensors", exc)
                self._forgotten.discard(stream_id)
            elif self._unsent_availability:
                stream_id = next(iter(self._unsent_availability))
                live = self._unsent_availability.pop(stream_id)
                try:
                    await self._publish_availability(client, stream_id, live)
                except aiomqtt.MqttError:
                    self._unsent_availability.setdefault(stream_id, live)
                    raise
                except Exception as exc:
                    self._lose(stream_id, "its availability", exc)
            elif self._unsent_counts:
                stream_id = next(iter(self._unsent_counts))
                counts = self._unsent_counts.pop(stream_id)
                try:
                    await self._publish_counts(client, stream_id, counts)
                except aiomqtt.MqttError:
                    self._unsent_counts.setdefault(stream_id, counts)
                    raise
                except Exception as exc:
                    self._lose(stream_id, "its counts", exc)
            elif self._closing:
                return
            else:
                self._wake.clear()
                await self._wake.wait()

    def _lose(self, stream_id: str, what: str, exc: Exception, lost: int = 0) -> None:
        """Give up on publishing ``what`` of ``stream_id`` after an error that is not the connection's."""
        self._tally.fail(f"stream {stream_id!r}: cannot publish {what}: {exc}", lost=lost)

    def _event_topic(self, event: OutEvent) -> str:
        kind = UNSAFE.sub("_", str(event.data.get("type", "event"))) or "event"
        return f"{self.settings.topic_prefix}/{event.stream_id}/events/{kind}"

    def counts_topic(self, stream_id: str) -> str:
        return f"{self.settings.topic_prefix}/{stream_id}/counts"

    def availability_topic(self, stream_id: str) -> str:
        return f"{self.settings.topic_prefix}/{stream_id}/availability"

    async def _publish_availability(self, client: aiomqtt.Client, stream_id: str, live: bool) -> None:
        await client.publish(self.availability_topic(stream_id), "online" if live else "offline", qos=QOS, retain=True)
        if live:
            self._online.add(stream_id)
        else:
            self._online.discard(stream_id)

    async def _publish_counts(self, client: aiomqtt.Client, stream_id: str, counts: Counts) -> None:
        if self.settings.discovery:
            sensors = self._sensors.setdefault(stream_id, set())
            for name in sorted(sensors - set(counts)):  # its zone or line was deleted
                await self._clear(client, self.discovery_topic(stream_id, name))
                sensors.discard(name)
                self._announced.discard((stream_id, name))
            for name in counts:
                if (stream_id, name) not in self._announced:
                    await client.publish(
                        self.discovery_topic(stream_id, name),
                        json.dumps(self.discovery_config(stream_id, name)),
                        qos=QOS,
                        retain=True,
                    )
                    self._announced.add((stream_id, name))
                    sensors.add(name)
        await client.publish(self.counts_topic(stream_id), json.dumps(dict(counts)), qos=QOS, retain=True)

    async def _clear_stream(self, client: aiomqtt.Client, stream_id: str) -> None:
        """Remove a removed stream's sensors from Home Assistant and its retained counts and availability.

        What it announced is forgotten here rather than in `forget_stream`: a config on its way when
        the stream was removed is marked announced after that, and a stream added again under the
        same id must announce its sensors again.
        """
        self._announced = {key for key in self._announced if key[0] != stream_id}
        for name in sorted(self._sensors.get(stream_id, ())):
            await self._clear(client, self.discovery_topic(stream_id, name))
            self._sensors[stream_id].discard(name)
        self._sensors.pop(stream_id, None)
        await self._clear(client, self.counts_topic(stream_id))
        await self._clear(client, self.availability_topic(stream_id))
        self._online.discard(stream_id)

    @staticmethod
    async def _clear(client: aiomqtt.Client, topic: str) -> None:
        """An empty retained message: the broker drops the retained one, Home Assistant the sensor it described."""
        await client.publish(topic, b"", qos=QOS, retain=True)

    def discovery_topic(self, stream_id: str, name: str) -> str:
        return f"{self.settings.discovery_prefix}/sensor/{self._node}_{stream_id}/{UNSAFE.sub('_', name)}/config"

    def discovery_config(self, stream_id: str, name: str) -> dict[str, object]:
        """Home Assistant's MQTT discovery payload for the sensor of count ``name`` of ``stream_id``.

        Available only while both segcast and the stream are online: a count of a camera that is
        down is the last one seen, and must not pass for the scene now.
        """
        device_id = f"{self._node}_{stream_id}"
        return {
            "name": count_label(name),
            "unique_id": f"{device_id}_{UNSAFE.sub('_', name)}",
            "state_topic": self.counts_topic(stream_id),
            "value_template": f"{{{{ value_json[{json.dumps(name)}] }}}}",
            "state_class": "total_increasing" if is_running_total(name) else "measurement",
            "availability": [{"topic": self.status_topic}, {"topic": self.availability_topic(stream_id)}],
            "availability_mode": "all",
            "device": {"identifiers": [device_id], "name": f"segcast {stream_id}", "manufacturer": "segcast"},
        }
