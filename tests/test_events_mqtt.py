"""MQTT against a real mosquitto: events, counts, Home Assistant discovery, reconnecting, credentials, TLS."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.events import sink as sinks
from server.events.config import EventsSettings, MqttSettings
from server.events.mqtt.connection import MqttSink
from server.events.mqtt.readback import READS_CUT_LIMIT
from server.events.mqtt.window import WINDOW
from server.events.outputs import EventOutputs
from server.events.sink import SinkState
from server.sources.base import StreamState
from tests.support.certificates import self_signed
from tests.support.event_packets import frames_kept_after_offering, track_start, with_counts, with_events
from tests.support.mosquitto import Broker
from tests.support.mqtt_proxy import HoldingProxy
from tests.support.polling import eventually
from tests.support.ports import free_port

Message = tuple[str, bytes, bool]  # topic, payload, retained
EVERY_RETAINED = ("homeassistant/#", "segcast/+/counts", "segcast/+/availability")  # but the status


@asynccontextmanager
async def running(settings: MqttSettings, timeout_s: float = 2.0) -> AsyncIterator[tuple[EventOutputs, MqttSink]]:
    """Event outputs with ``settings``' MQTT alone, started; ``timeout_s``: the client's for any answer."""
    outputs = EventOutputs(EventsSettings(mqtt=settings))
    sink = outputs.sinks[0]
    assert isinstance(sink, MqttSink)
    sink.backoff_first_s = 0.1
    sink.connect_timeout_s = timeout_s  # a TLS port answering plain MQTT says nothing until this runs out
    await outputs.start()
    try:
        yield outputs, sink
    finally:
        await outputs.stop()


@asynccontextmanager
async def listening(port: int, topic: str = "#") -> AsyncIterator[list[Message]]:
    """A subscriber collecting every message on ``topic`` into the list it yields."""
    received: list[Message] = []
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(topic, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                received.append((str(message.topic), payload, bool(message.retain)))

        task = asyncio.create_task(collect())
        try:
            yield received
        finally:
            task.cancel()


async def state_is(sink: MqttSink, state: SinkState) -> None:
    async def reached() -> bool:
        return sink.health().state is state

    await eventually(reached, what=f"the MQTT output to be {state.value}")


def on(received: list[Message], topic: str) -> list[dict[str, object]]:
    return [json.loads(payload) for t, payload, _ in received if t == topic]


async def test_events_are_published_per_stream_and_type(broker: Broker) -> None:
    async with (
        listening(broker.port, "segcast/+/events/#") as received,
        running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)
        outputs.on_packet(track_start(1, track_id=5))
        cross = {"type": "line_cross", "v": 1, "stream": "yard", "id": 2, "line": "gate", "direction": "in"}
        outputs.on_packet(with_events(2, [cross], stream_id="yard"))

        async def both() -> bool:
            return len(received) == 2

        await eventually(both, what="two events at the subscriber")
    (start,) = on(received, "segcast/cam/events/track")
    assert start["event"] == "start" and start["id"] == 5
    (crossing,) = on(received, "segcast/yard/events/line_cross")
    assert crossing == {**cross, "event_id": crossing["event_id"]}  # the event JSON, and its id in the outputs
    assert not any(retained for _, _, retained in received)


async def test_counts_appear_as_home_assistant_sensors(broker: Broker) -> None:
    expected = {
        "segcast/status",
        "segcast/server",
        "segcast/cam/counts",
        "homeassistant/sensor/segcast_cam/tracks/config",
        "homeassistant/sensor/segcast_cam/zones_door_objects/config",
        "homeassistant/sensor/segcast_cam/lines_gate_in/config",
        "homeassistant/sensor/segcast_cam/lines_gate_out/config",
        # The zone's occupancy, and its and the line's device triggers: tests/test_events_mqtt_triggers.py.
        "homeassistant/binary_sensor/segcast_cam/zones_door_occupancy/config",
        *(
            f"homeassistant/device_automation/segcast_cam/zones_door_{what}/config"
            for what in ("enter", "exit", "loiter")
        ),
        *(f"homeassistant/device_automation/segcast_cam/lines_gate_{way}/config" for way in ("in", "out")),
    }
    counts = {
        "zones": {"door": {"objects": 2, "by_class": {"person": 2}}},
        "lines": {"gate": {"in": 4, "out": 1, "by_class": {"person": {"in": 4, "out": 1}}}},
    }
    async with running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        async with listening(broker.port) as live:
            outputs.on_packet(with_counts(1, counts, tracks=3))

            async def published() -> bool:
                return any(topic == "segcast/cam/counts" for topic, _, _ in live)

            await eventually(published, what="the counts")
        # Retained: a Home Assistant that connects later still finds the sensors and their state.
        async with listening(broker.port) as received:

            async def all_there() -> bool:
                return {topic for topic, _, _ in received} >= expected

            await eventually(all_there, what="the retained counts and discovery configs")
    assert on(received, "segcast/cam/counts") == [
        {"tracks": 3, "zones_door_objects": 2, "lines_gate_in": 4, "lines_gate_out": 1}
    ]
    (config,) = on(received, "homeassistant/sensor/segcast_cam/zones_door_objects/config")
    assert config["state_topic"] == "segcast/cam/counts"
    assert config["value_template"] == '{{ value_json["zones_door_objects"] }}'
    assert config["availability"] == [{"topic": "segcast/status"}, {"topic": "segcast/cam/availability"}]
    assert config["availability_mode"] == "all"
    assert config["unique_id"] == "segcast_cam_zones_door_objects"
    names = {
        name: on(received, f"homeassistant/sensor/segcast_cam/{name}/config")[0]["name"]
        for name in ("tracks", "zones_door_objects", "lines_gate_in")
    }
    assert names == {"tracks": "tracks", "zones_door_objects": "door objects", "lines_gate_in": "gate in"}
    # Counts now are measurements; a line's crossings, totals since the start, which Home Assistant
    # sums per hour or day and which start again at 0 when segcast restarts.
    state_classes = {
        name: on(received, f"homeassistant/sensor/segcast_cam/{name}/config")[0]["state_class"]
        for name in ("tracks", "zones_door_objects", "lines_gate_in", "lines_gate_out")
    }
    assert state_classes == {
        "tracks": "measurement",
        "zones_door_objects": "measurement",
        "lines_gate_in": "total_increasing",
        "lines_gate_out": "total_increasing",
    }
    assert [p for t, p, _ in received if t == "segcast/status"] == [b"online"]
    assert all(retained for _, _, retained in received)
    assert {topic for topic, _, _ in received} == expected


async def retained_messages(port: int, *topics: str) -> dict[str, bytes]:
    """The retained messages at the broker now on the topics matching ``topics``, by topic.

    The broker sends a subscription's retained messages in the order the subscriptions were made, so
    once the retained status (subscribed to last) arrives, every one matching ``topics`` has.
    """
    found: dict[str, bytes] = {}
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for topic in topics:
            await client.subscribe(topic, qos=1)
        await client.subscribe("segcast/status", qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                if str(message.topic) == "segcast/status":
                    return found
                assert isinstance(message.payload, bytes)
                found[str(message.topic)] = message.payload
    raise AssertionError("unreachable")


async def retained(port: int, *topics: str) -> set[str]:
    """The topics matching ``topics`` with a retained message at the broker now."""
    return set(await retained_messages(port, *topics))


async def availability_is(port: int, stream_id: str, payload: bytes) -> None:
    topic = f"segcast/{stream_id}/availability"

    async def reached() -> bool:
        return (await retained_messages(port, topic)).get(topic) == payload

    await eventually(reached, what=f"{topic} to be {payload.decode()}")


async def test_a_streams_sensors_are_available_only_while_it_is_live(broker: Broker) -> None:
    counts = {"zones": {"door": {"objects": 2}}}
    async with running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.STARTING)
        await availability_is(broker.port, "cam", b"offline")
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(with_counts(1, counts, tracks=2))
        await availability_is(broker.port, "cam", b"online")
        # The camera drops: its last counts (2 in the zone) stay retained, but no longer pass for now;
        # back, it is online once the counts of a frame read since are out (the same here: still 2).
        for seq, state in enumerate((StreamState.RECONNECTING, StreamState.LIVE, StreamState.FAILED, StreamState.LIVE)):
            outputs.on_stream_state("cam", state)
            if state is StreamState.LIVE:
                outputs.on_packet(with_counts(2 + seq, counts, tracks=2))
            await availability_is(broker.port, "cam", b"online" if state is StreamState.LIVE else b"offline")
        outputs.on_stream_state("cam", StreamState.ENDED)
        await availability_is(broker.port, "cam", b"offline")
        left = await retained_messages(broker.port, *EVERY_RETAINED)
    assert json.loads(left["segcast/cam/counts"]) == {"tracks": 2, "zones_door_objects": 2}
    config = json.loads(left["homeassistant/sensor/segcast_cam/zones_door_objects/config"])
    assert config["availability"] == [{"topic": "segcast/status"}, {"topic": "segcast/cam/availability"}]
    assert config["availability_mode"] == "all"  # the stream offline, or segcast: unavailable


async def test_a_camera_back_from_reconnecting_is_online_only_after_counts_read_since(broker: Broker) -> None:
    """Before, it was online at once, and its sensors showed the counts of before it dropped as now
    (the same counts after it were not even sent again: unchanged counts are not)."""
    counts = {"zones": {"door": {"objects": 2}}}
    async with (
        listening(broker.port, "segcast/cam/#") as received,
        running(MqttSettings("127.0.0.1", broker.port, discovery=False)) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(with_counts(1, counts, tracks=2))
        await availability_is(broker.port, "cam", b"online")
        outputs.on_stream_state("cam", StreamState.RECONNECTING)
        await availability_is(broker.port, "cam", b"offline")
        dropped = len(received)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(with_counts(2, counts, tracks=2))
        await availability_is(broker.port, "cam", b"online")

        async def online_heard() -> bool:
            return ("segcast/cam/availability", b"online", False) in received[dropped:]

        await eventually(online_heard, what="online heard by the subscriber")
    since = [(topic, payload) for topic, payload, _ in received[dropped:]]
    online = since.index(("segcast/cam/availability", b"online"))
    assert [topic for topic, _ in since[:online]] == ["segcast/cam/counts"], "the counts, sent again, before online"


async def test_sensors_of_a_deleted_zone_and_of_a_removed_stream_are_removed_from_home_assistant(
    broker: Broker,
) -> None:
    door = "homeassistant/sensor/segcast_cam/zones_door_objects/config"
    tracks = "homeassistant/sensor/segcast_cam/tracks/config"
    zones = {"zones": {"door": {"objects": 2}, "bay": {"objects": 0}}}
    async with running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_stream_state("yard", StreamState.LIVE)
        outputs.on_packet(with_counts(1, zones, tracks=3))
        outputs.on_packet(with_counts(1, zones, tracks=2, stream_id="yard"))

        async def announced() -> bool:
            return door in await retained(broker.port, "homeassistant/#")

        await eventually(announced, what="the door zone's sensor")
        await availability_is(broker.port, "cam", b"online")
        async with listening(broker.port, door) as cleared:
            outputs.on_packet(with_counts(2, {"zones": {"bay": {"objects": 1}}}, tracks=3))  # door deleted

            async def door_cleared() -> bool:
                return (door, b"", False) in cleared

            await eventually(door_cleared, what="an empty config for the deleted zone's sensor")
        assert {tracks, door.replace("door", "bay")} <= await retained(broker.port, "homeassistant/#")
        assert door not in await retained(broker.port, "homeassistant/#")

        outputs.on_stream_removed("cam")

        async def cam_gone() -> bool:
            return not any(
                "segcast_cam" in t or t.startswith("segcast/cam/") for t in await retained(broker.port, *EVERY_RETAINED)
            )

        await eventually(cam_gone, what="no retained sensor config, counts or availability of the removed stream")
        left = await retained(broker.port, *EVERY_RETAINED)
        assert {
            "segcast/yard/counts",
            "segcast/yard/availability",
            "homeassistant/sensor/segcast_yard/tracks/config",
        } <= left


async def test_status_and_every_stream_say_offline_after_segcast_stops(broker: Broker) -> None:
    async with running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(track_start(1))  # its first counts: until they are out, it is not online
        await availability_is(broker.port, "cam", b"online")
    async with listening(broker.port, "segcast/status") as received:

        async def retained() -> bool:
            return bool(received)

        await eventually(retained, what="the retained status")
    assert received == [("segcast/status", b"offline", True)]
    # When segcast starts again, the stream's sensors stay unavailable until it is live again.
    assert await retained_messages(broker.port, "segcast/cam/availability") == {"segcast/cam/availability": b"offline"}


async def test_events_queued_at_shutdown_are_published_before_it(broker: Broker) -> None:
    async with listening(broker.port, "segcast/cam/events/#") as received:
        async with running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink):
            await state_is(sink, SinkState.OK)
            for seq in range(20):
                outputs.on_packet(track_start(seq, track_id=seq))
        # `running` has stopped the outputs: with every event published to the broker first.
        assert sink.health().delivered == 20 and sink.health().dropped == 0

        async def all_there() -> bool:
            return len(received) == 20

        await eventually(all_there, what="the 20 events at the subscriber")


async def test_the_event_being_published_at_shutdown_is_counted_dropped(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sinks, "DRAIN_TIMEOUT_S", 0.1)  # the broker never confirms: no need to wait long
    publish = aiomqtt.Client.publish
    on_its_way = asyncio.Event()

    async def unconfirmed_events(client: aiomqtt.Client, topic: str, *args: Any, **kwargs: Any) -> None:
        """A broker that takes events but never confirms them (it hangs, or the link is that slow)."""
        if "/events/" in topic:
            on_its_way.set()
            await asyncio.Event().wait()
        await publish(client, topic, *args, **kwargs)

    monkeypatch.setattr(aiomqtt.Client, "publish", unconfirmed_events)
    async with running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        for seq in range(3):
            outputs.on_packet(track_start(seq, track_id=seq))
        await on_its_way.wait()
    health = sink.health()
    assert health.delivered == 0 and health.failed == 0
    assert health.dropped == 3  # two queued, and the one the broker never confirmed


async def test_a_lost_broker_is_a_failing_state_and_events_follow_the_reconnection(broker: Broker) -> None:
    async with running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        broker.stop()
        await state_is(sink, SinkState.FAILING)  # noticed while idle, before anything is published
        # Not aiomqtt's "Disconnected during message iteration", which names its own code, not what happened.
        last_error = sink.health().last_error
        assert last_error == f"broker 127.0.0.1:{broker.port} closed the connection, or the network lost it"
        outputs.on_packet(track_start(1, track_id=1))  # waits in the queue while the broker is away

        await asyncio.get_running_loop().run_in_executor(None, broker.start)
        await state_is(sink, SinkState.OK)

        async def delivered() -> bool:
            return sink.health().delivered == 1

        await eventually(delivered, what="the queued event after the reconnection")
        async with listening(broker.port, "segcast/cam/events/#") as received:
            outputs.on_packet(track_start(2, track_id=2))

            async def arrived() -> bool:
                return len(received) == 1

            await eventually(arrived, what="an event after the reconnection")


async def test_an_unreachable_broker_fails_clearly_and_its_queue_drops() -> None:
    async with running(MqttSettings("127.0.0.1", free_port(), queue=2)) as (outputs, sink):
        await state_is(sink, SinkState.FAILING)
        for seq in range(5):
            outputs.on_packet(track_start(seq, track_id=seq))
        health = sink.health()
    assert health.dropped == 3 and health.delivered == 0
    assert health.name == f"mqtt 127.0.0.1:{sink.settings.effective_port}"


async def test_username_and_password(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broker = Broker(tmp_path, users={"segcast": "right"})
    broker.start()
    try:
        async with running(MqttSettings("127.0.0.1", broker.port, username="segcast", password="wrong")) as (_, sink):
            await state_is(sink, SinkState.FAILING)
            last_error = sink.health().last_error or ""
            assert "wrong" not in last_error
            # What to check first, the broker's own words after it (before, only "[code:135] Not authorized").
            assert last_error == (
                f"broker 127.0.0.1:{broker.port} refused the login (check username and password in [events.mqtt], "
                "and the broker's ACL): [code:135] Not authorized"
            )
            assert last_error in caplog.text
        async with running(MqttSettings("127.0.0.1", broker.port, username="segcast", password="right")) as (_, sink):
            await state_is(sink, SinkState.OK)
    finally:
        broker.stop()


async def test_tls_with_the_brokers_ca(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    broker = Broker(tmp_path, tls=(cert, key))
    broker.start()
    try:
        async with running(MqttSettings("127.0.0.1", broker.port)) as (_, sink):  # plain MQTT to a TLS port
            await state_is(sink, SinkState.FAILING)
        async with running(MqttSettings("127.0.0.1", broker.port, tls=True, ca_file=cert)) as (_, sink):
            await state_is(sink, SinkState.OK)
    finally:
        broker.stop()


async def test_deleting_a_stream_through_the_api_removes_its_home_assistant_sensors(
    broker: Broker, start_server: Callable[..., Awaitable[TestClient]]
) -> None:
    events = EventsSettings(mqtt=MqttSettings("127.0.0.1", broker.port))
    client = await start_server(StreamConfig("cam", "scene:?seed=1"), events=events)
    sensor = "homeassistant/sensor/segcast_cam/tracks/config"

    async def announced() -> bool:
        return sensor in await retained(broker.port, *EVERY_RETAINED)

    await eventually(announced, timeout_s=60, what="the stream's sensors")
    await availability_is(broker.port, "cam", b"online")  # the stream is live
    assert (await client.delete("/api/streams/cam")).status == 204

    async def gone() -> bool:
        return not await retained(broker.port, *EVERY_RETAINED)

    await eventually(gone, what="no retained sensor, counts or availability of the deleted stream")


async def test_queued_events_do_not_keep_their_frames() -> None:
    async with running(MqttSettings("127.0.0.1", free_port())) as (outputs, sink):
        assert frames_kept_after_offering(outputs.on_packet) == 0
        assert sink.health().delivered == sink.health().dropped == 0  # all five wait for the broker


async def test_an_event_that_cannot_be_published_costs_only_itself(broker: Broker) -> None:
    async with (
        listening(broker.port, "segcast/+/events/#") as received,
        running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)
        # A wildcard in a topic is refused by the MQTT client before anything is sent.
        outputs.on_packet(with_counts(1, {"zones": {"door": {"objects": 1}}}, stream_id="cam+1"))
        outputs.on_packet(track_start(1, stream_id="cam+1", track_id=1))
        outputs.on_packet(track_start(2, stream_id="door", track_id=2))

        async def arrived() -> bool:
            return len(received) == 1

        await eventually(arrived, what="the next stream's event at the subscriber")
        health = sink.health()
    assert on(received, "segcast/door/events/track")[0]["id"] == 2
    assert health.delivered == 1 and health.failed == 1
    assert sink.health().dropped == 0  # and stopping did not raise


async def test_a_stream_removed_while_its_sensors_are_announced_announces_them_again_when_added_back(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    sensor = "homeassistant/sensor/segcast_yard/tracks/config"
    async with running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        publish = aiomqtt.Client.publish
        removed = False

        async def removing_first(client: aiomqtt.Client, topic: str, *args: Any, **kwargs: Any) -> None:
            """The stream is removed (DELETE /api/streams/yard) while its first sensor config is on its way."""
            nonlocal removed
            if topic == sensor and not removed:
                removed = True
                outputs.on_stream_removed("yard")
            await publish(client, topic, *args, **kwargs)

        monkeypatch.setattr(aiomqtt.Client, "publish", removing_first)
        async with listening(broker.port, "segcast/yard/counts") as counts:
            outputs.on_packet(with_counts(1, {}, stream_id="yard", tracks=1))

            async def cleared() -> bool:
                return ("segcast/yard/counts", b"", False) in counts

            await eventually(cleared, what="the removed stream's counts to be cleared")
            outputs.on_packet(with_counts(2, {}, stream_id="yard", tracks=2))  # added back

            async def counted_again() -> bool:  # published after the stream's sensor configs
                return any(payload == b'{"tracks": 2}' for _, payload, _ in counts)

            await eventually(counted_again, what="the counts of the stream added back")
        assert removed
        assert sensor in await retained(broker.port, "homeassistant/#")


#: Long enough that no publish times out while a test holds the broker's answers back.
HELD_ANSWERS_TIMEOUT_S = 60.0


async def test_events_go_out_without_waiting_for_each_ones_confirmation(broker: Broker) -> None:
    async with (
        HoldingProxy(broker.port) as proxy,
        running(MqttSettings("127.0.0.1", proxy.port, discovery=False), HELD_ANSWERS_TIMEOUT_S) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)
        proxy.hold()  # the broker's PUBACKs wait at the proxy: no event is confirmed
        for seq in range(10):
            outputs.on_packet(track_start(seq, track_id=seq))

        async def all_on_their_way() -> bool:
            return proxy.published.count("segcast/cam/events/track") == 10

        # A broker 50 ms away gave one event per round trip: 18 a second.
        await eventually(all_on_their_way, what="ten events sent before the first is confirmed")
        assert sink.health().delivered == 0
        proxy.release()

        async def delivered() -> bool:
            return sink.health().delivered == 10

        await eventually(delivered, what="the ten events confirmed")


async def test_a_streams_state_goes_out_between_queued_events(broker: Broker) -> None:
    flood = 50  # more than are on their way at once
    async with (
        HoldingProxy(broker.port) as proxy,
        running(MqttSettings("127.0.0.1", proxy.port, discovery=False), HELD_ANSWERS_TIMEOUT_S) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)
        proxy.hold()
        for seq in range(flood):
            outputs.on_packet(track_start(seq, track_id=seq))
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(with_counts(flood, {"zones": {"door": {"objects": 1}}}))

        async def state_sent() -> bool:
            return {"segcast/cam/availability", "segcast/cam/counts"} <= set(proxy.published)

        # Not after the flood: a camera going offline, or a new zone's sensor, waited for every event queued.
        await eventually(state_sent, what="the stream's availability and counts")
        assert proxy.published.count("segcast/cam/events/track") < flood
        proxy.release()

        async def delivered() -> bool:
            return sink.health().delivered == flood

        await eventually(delivered, what="the flood's events")
        assert sink.health().dropped == 0


async def test_events_on_their_way_when_the_connection_drops_are_published_again_in_order(broker: Broker) -> None:
    async with (
        listening(broker.port, "segcast/cam/events/#") as received,
        HoldingProxy(broker.port) as proxy,
        running(MqttSettings("127.0.0.1", proxy.port, discovery=False), HELD_ANSWERS_TIMEOUT_S) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)
        proxy.hold()
        for seq in range(5):
            outputs.on_packet(track_start(seq, track_id=seq))

        async def all_on_their_way() -> bool:
            return proxy.published.count("segcast/cam/events/track") == 5

        await eventually(all_on_their_way, what="five events sent")
        await proxy.drop()  # the broker took them, but its PUBACKs are lost with the connection
        proxy.release()

        async def ten_published() -> list[object] | None:
            ids = [event["id"] for event in on(received, "segcast/cam/events/track")]
            return ids if len(ids) >= 10 else None

        # As many as it takes under load (reconnecting waits out a backoff); then what came, in its order.
        ids = await eventually(ten_published, HELD_ANSWERS_TIMEOUT_S, "the five events and the five again")
        assert ids == [0, 1, 2, 3, 4] * 2, "published again after reconnecting, in order, each once more"

        async def delivered() -> bool:
            return sink.health().delivered == 5

        await eventually(delivered, what="the five events confirmed")


async def test_the_sensors_of_a_streams_last_zone_and_line_go_when_they_are_deleted(broker: Broker) -> None:
    """Frames without counts are a stream's with no zones or lines left (a frame whose analytics failed
    carries the counts as they stand: `server.inference.analysis`)."""
    zones = {"zones": {"door": {"objects": 1}}, "lines": {"gate": {"in": 2, "out": 0}}}
    async with (
        listening(broker.port) as received,
        running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)

        async def published(tracks: int) -> None:
            """Wait for the counts of the frame with ``tracks``: they follow any sensor config it made."""

            async def arrived() -> bool:
                return any(count["tracks"] == tracks for count in on(received, "segcast/cam/counts"))

            await eventually(arrived, what=f"the counts with {tracks} tracks")

        # One frame at a time: a stream's newest counts replace any not yet published.
        outputs.on_packet(with_counts(1, zones, tracks=1))
        await published(1)
        outputs.on_packet(with_events(2, [], tracks=2))  # the zone and the line deleted
        await published(2)
    configs = [(topic, payload) for topic, payload, _ in received if topic.startswith("homeassistant/")]
    removed = sorted("/".join(topic.split("/")[1:4:2]) for topic, payload in configs if not payload)
    assert removed == [
        "binary_sensor/zones_door_occupancy",
        *(f"device_automation/{name}" for name in ("lines_gate_in", "lines_gate_out")),
        *(f"device_automation/zones_door_{what}" for what in ("enter", "exit", "loiter")),
        *(f"sensor/{name}" for name in ("lines_gate_in", "lines_gate_out", "zones_door_objects")),
    ]


async def test_status_says_offline_after_a_stop_the_client_swallowed(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish = aiomqtt.Client.publish
    saying_online = asyncio.Event()

    async def swallowing(client: aiomqtt.Client, topic: str, *args: Any, **kwargs: Any) -> None:
        """Python 3.11's asyncio.wait_for, in aiomqtt, loses a cancellation that comes as the broker answers."""
        if topic == "segcast/status" and args[:1] == ("online",):
            saying_online.set()
            with suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
        await publish(client, topic, *args, **kwargs)

    monkeypatch.setattr(aiomqtt.Client, "publish", swallowing)
    async with running(MqttSettings("127.0.0.1", broker.port)):
        await saying_online.wait()
    async with listening(broker.port, "segcast/status") as received:

        async def retained() -> bool:
            return bool(received)

        await eventually(retained, what="the retained status")
    assert received == [("segcast/status", b"offline", True)]


async def test_a_stop_the_client_swallowed_while_reading_back_sensor_configs_still_ends(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the config reading carried on after the cancellation and waited for the next stream for
    good: the stop, and a reconnection, waited with it (a suite hung 120 s on a loaded machine)."""
    subscribe = aiomqtt.Client.subscribe
    reading_configs = asyncio.Event()

    async def swallowing(client: aiomqtt.Client, topic: str | list[tuple[str, int]], *args: Any, **kwargs: Any) -> Any:
        """Python 3.11's asyncio.wait_for, in aiomqtt, loses a cancellation that comes as the broker answers."""
        granted = await subscribe(client, topic, *args, **kwargs)
        filters = [name for name, _ in topic] if isinstance(topic, list) else [topic]  # segcast's is a list
        if "homeassistant/sensor/segcast_cam/+/config" in filters:
            reading_configs.set()
            with suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
        return granted

    monkeypatch.setattr(aiomqtt.Client, "subscribe", swallowing)
    outputs = EventOutputs(EventsSettings(mqtt=MqttSettings("127.0.0.1", broker.port)))
    await outputs.start()
    outputs.on_packet(with_counts(1, {}, tracks=1))

    async def reading() -> bool:
        return reading_configs.is_set()

    await eventually(reading, what="the stream's sensor configs being read back")
    stopping = asyncio.ensure_future(outputs.stop())

    async def stopped() -> bool:
        return stopping.done()

    await eventually(stopped, what="the MQTT output to stop")
    async with listening(broker.port, "segcast/status") as received:

        async def retained() -> bool:
            return bool(received)

        await eventually(retained, what="the retained status")
    assert received == [("segcast/status", b"offline", True)]


async def test_status_says_offline_at_shutdown_behind_a_full_window_of_unconfirmed_events(broker: Broker) -> None:
    async with HoldingProxy(broker.port) as proxy:
        settings = MqttSettings("127.0.0.1", proxy.port, discovery=False)
        async with running(settings, HELD_ANSWERS_TIMEOUT_S) as (outputs, sink):
            await state_is(sink, SinkState.OK)
            proxy.hold()  # no PUBACK comes: the window stays full until the stop
            sent_before = len(proxy.published)
            for seq in range(WINDOW + 5):
                outputs.on_packet(track_start(seq, track_id=seq))

            async def window_full() -> bool:  # events and the stream's counts
                return len(proxy.published) - sent_before == WINDOW

            await eventually(window_full, what="a full window of messages on their way")
        # Paho, limited to as many in flight, kept the offline in its queue, and the clean disconnect
        # dropped the will: Home Assistant showed every sensor available after segcast stopped.
        assert proxy.published[-1] == "segcast/status"
    async with listening(broker.port, "segcast/status") as received:

        async def retained() -> bool:
            return bool(received)

        await eventually(retained, what="the retained status")
    assert received == [("segcast/status", b"offline", True)]


async def test_sensors_whose_clearing_was_lost_with_the_connection_are_cleared_after_it(broker: Broker) -> None:
    def config(stream_id: str, name: str, component: str = "sensor") -> str:
        return f"homeassistant/{component}/segcast_{stream_id}/{name}/config"

    kept = {config("cam", "tracks"), config("cam", "zones_door_objects")}
    kept.add(config("cam", "zones_door_occupancy", "binary_sensor"))
    kept |= {config("cam", f"zones_door_{what}", "device_automation") for what in ("enter", "exit", "loiter")}
    lost = {config("cam", "zones_bay_objects"), config("yard", "tracks")}
    async with (
        HoldingProxy(broker.port) as proxy,
        running(MqttSettings("127.0.0.1", proxy.port), HELD_ANSWERS_TIMEOUT_S) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)
        outputs.on_packet(with_counts(1, {"zones": {"door": {"objects": 1}, "bay": {"objects": 0}}}))
        outputs.on_packet(with_counts(1, {}, stream_id="yard", tracks=1))

        async def announced() -> bool:
            return kept | lost <= await retained(broker.port, "homeassistant/#")

        await eventually(announced, what="the sensors of both streams")
        sent_before = len(proxy.published)
        proxy.swallow()  # the link dies one way: the clears below never reach the broker
        outputs.on_packet(with_counts(2, {"zones": {"door": {"objects": 1}}}))  # zone bay deleted
        outputs.on_stream_removed("yard")

        async def clears_sent() -> bool:
            return lost <= set(proxy.published[sent_before:])

        await eventually(clears_sent, what="the clears sent into the dead link")
        proxy.release()
        await proxy.drop()

        async def cleared() -> bool:
            return await retained(broker.port, "homeassistant/#") == kept

        await eventually(cleared, what="the lost clears done again after reconnecting")


Link = tuple[asyncio.StreamWriter, asyncio.StreamWriter, bytearray]  # to segcast, to the broker, held up


class LaggingProxy:
    """A TCP proxy to the broker whose links can lag: what segcast sent on a lagging link is held up on
    the way, and reaches the broker only at `deliver_late`, after segcast has given that connection up
    and made another (a client's kernel still sends what a closed socket had buffered, once the path
    is back, and a broker that had not noticed the old connection's loss takes it)."""

    def __init__(self, broker_port: int) -> None:
        self._broker_port = broker_port
        self._server: asyncio.Server | None = None
        self._links: list[Link] = []
        self._lagging: list[Link] = []
        self._pumps: set[asyncio.Task[None]] = set()
        #: Set when the broker ends a connection that lags: it no longer takes what comes late on it.
        self.lagging_ended_by_broker = asyncio.Event()
        self.port = 0

    async def __aenter__(self) -> LaggingProxy:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        for client, broker, _ in self._links:
            client.close()
            broker.close()
        await self._server.wait_closed()

    def lag(self) -> None:
        """Hold up what segcast sends on the connections open now."""
        self._lagging = list(self._links)

    def held(self) -> int:
        """How many bytes segcast sent on the lagging connections are held up."""
        return sum(len(held) for _, _, held in self._lagging)

    def cut(self) -> None:
        """Close segcast's end of the lagging connections; the broker's stays open, as it has not noticed."""
        for client, _, _ in self._lagging:
            client.close()

    async def deliver_late(self, then: bytes) -> None:
        """Hand the broker what was held up on the lagging connections, followed by ``then``, and end them."""
        for _, broker, held in self._lagging:
            with suppress(ConnectionError):
                broker.write(bytes(held) + then)
                await broker.drain()
            broker.close()

    async def _connected(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", self._broker_port)
        link = (client_writer, broker_writer, bytearray())
        self._links.append(link)
        for pump in (self._to_broker(client_reader, link), self._to_client(broker_reader, link)):
            task = asyncio.create_task(pump)
            self._pumps.add(task)

    async def _to_broker(self, reader: asyncio.StreamReader, link: Link) -> None:
        _, broker, held = link
        with suppress(ConnectionError):
            while data := await reader.read(65536):
                if link in self._lagging:
                    held += data
                else:
                    broker.write(data)
                    await broker.drain()

    async def _to_client(self, reader: asyncio.StreamReader, link: Link) -> None:
        client = link[0]
        with suppress(ConnectionError):
            while data := await reader.read(65536):
                if not client.is_closing():
                    client.write(data)
        if link in self._lagging:
            self.lagging_ended_by_broker.set()


def mqtt_publish_packet(topic: str, payload: bytes) -> bytes:
    """A QoS 0 PUBLISH, as a client sends it (short enough for a one-byte remaining length)."""
    body = len(topic).to_bytes(2, "big") + topic.encode() + payload
    assert len(body) < 128
    return bytes([0x30, len(body)]) + body


async def test_a_sensor_config_held_up_on_a_lost_connection_does_not_come_back_after_its_clearing(
    broker: Broker,
) -> None:
    bay = "homeassistant/sensor/segcast_cam/zones_bay_objects/config"
    late = "segcast-test/late"  # sent after the held-up config, on its connection
    async with (
        listening(broker.port) as received,
        LaggingProxy(broker.port) as proxy,
        running(MqttSettings("127.0.0.1", proxy.port), HELD_ANSWERS_TIMEOUT_S) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)
        outputs.on_packet(with_counts(1, {}))

        async def counted() -> bool:
            return any(topic == "segcast/cam/counts" for topic, _, _ in received)

        await eventually(counted, what="the stream's first counts")
        proxy.lag()
        outputs.on_packet(with_counts(2, {"zones": {"bay": {"objects": 0}}}))  # zone bay added: its config goes out

        async def config_sent() -> bool:
            return proxy.held() > 0

        await eventually(config_sent, what="the new zone's config held up on the way")
        proxy.cut()  # segcast gives the connection up (its pings unanswered) and makes another
        outputs.on_packet(with_counts(3, {}))  # zone bay deleted meanwhile: its sensor is cleared

        async def cleared() -> bool:
            return (bay, b"", False) in received

        await eventually(cleared, what="the deleted zone's sensor cleared over the new connection")
        await proxy.deliver_late(mqtt_publish_packet(late, b"1"))

        async def old_connection_done() -> bool:  # what came late was taken, or refused with its connection
            return proxy.lagging_ended_by_broker.is_set() or any(topic == late for topic, _, _ in received)

        await eventually(old_connection_done, what="the late messages taken or refused")
        left = await retained_messages(broker.port, "homeassistant/#")
        async with listening(broker.port, "segcast/status") as status:

            async def status_retained() -> bool:
                return bool(status)

            await eventually(status_retained, what="the retained status")
    assert bay not in left  # Home Assistant kept a sensor for a zone that no longer exists
    # Nor did the old connection's will, once the broker noticed its end, say segcast offline.
    assert status == [("segcast/status", b"online", True)]


async def leave_as_a_crashed_run_would(port: int, stream_id: str) -> None:
    """What a run killed (-9) leaves retained of a stream a restart does not know (added without being saved)."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.publish(f"homeassistant/sensor/segcast_{stream_id}/tracks/config", "{}", qos=1, retain=True)
        await client.publish(f"segcast/{stream_id}/counts", '{"tracks": 4}', qos=1, retain=True)
        await client.publish(f"segcast/{stream_id}/availability", "online", qos=1, retain=True)
        await client.publish("segcast/status", "offline", qos=1, retain=True)  # the will


async def test_a_stream_a_crashed_run_left_online_is_said_offline_before_segcast_is_online(broker: Broker) -> None:
    """Before, its stale count showed as current in Home Assistant for good once segcast was back online."""
    await leave_as_a_crashed_run_would(broker.port, "ghost")
    async with (
        listening(broker.port, "segcast/#") as received,
        running(MqttSettings("127.0.0.1", broker.port)) as (_, sink),
    ):
        await state_is(sink, SinkState.OK)
        await availability_is(broker.port, "ghost", b"offline")

        async def online_heard() -> bool:
            return ("segcast/status", b"online", False) in received

        await eventually(online_heard, what="segcast online at the subscriber")
        left = await retained_messages(broker.port, *EVERY_RETAINED)
    live = [(topic, payload) for topic, payload, retained in received if not retained]
    assert live.index(("segcast/ghost/availability", b"offline")) < live.index(("segcast/status", b"online"))
    # Kept, unavailable: the stream may be back when its config is (or on another node of the fleet).
    assert left["segcast/ghost/counts"] == b'{"tracks": 4}'
    assert "homeassistant/sensor/segcast_ghost/tracks/config" in left


async def test_a_stream_of_this_run_is_not_said_offline_by_what_the_broker_retains_of_it(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered while the retained availabilities are read (a stream the API adds then), and on a
    reconnection, a stream this process has says its own availability."""
    await leave_as_a_crashed_run_would(broker.port, "cam")
    unsubscribe = aiomqtt.Client.unsubscribe
    async with (
        HoldingProxy(broker.port) as proxy,
        running(MqttSettings("127.0.0.1", proxy.port)) as (outputs, sink),
    ):

        async def registering_meanwhile(client: aiomqtt.Client, *args: Any, **kwargs: Any) -> None:
            outputs.on_stream_state("cam", StreamState.LIVE)  # after the retained "online" came
            outputs.on_packet(with_counts(1, {}, tracks=1))
            await unsubscribe(client, *args, **kwargs)

        monkeypatch.setattr(aiomqtt.Client, "unsubscribe", registering_meanwhile)
        async with listening(broker.port, "segcast/cam/availability") as received:
            await state_is(sink, SinkState.OK)
            await availability_is(broker.port, "cam", b"online")
            monkeypatch.setattr(aiomqtt.Client, "unsubscribe", unsubscribe)
            said_online = proxy.published.count("segcast/status")
            await proxy.drop()  # the broker keeps the stream's "online": read back on the next connection

            async def reconnected() -> bool:
                return proxy.published.count("segcast/status") > said_online and sink.health().state is SinkState.OK

            await eventually(reconnected, what="a new connection")
            await availability_is(broker.port, "cam", b"online")
        assert (b"offline", False) not in [(payload, retained) for _, payload, retained in received]


async def test_plain_mqtt_to_a_tls_port_says_so_and_paho_does_not_log_each_attempt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = self_signed(tmp_path)
    broker = Broker(tmp_path, tls=(cert, key))
    broker.start()
    caplog.set_level(logging.INFO)
    try:
        async with running(MqttSettings("127.0.0.1", broker.port), timeout_s=0.5) as (_, sink):
            await state_is(sink, SinkState.FAILING)  # paho has seen the connection reset by then
    finally:
        broker.stop()
    assert "is it a TLS port? set tls = true" in (sink.health().last_error or "")
    others = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.INFO and r.name != "server.events.mqtt.connection"
    ]
    assert others == []  # paho's "failed to receive on socket" on every attempt, unnamed and unthrottled


# paho's Client._ssl_wrap_socket leaves a socket whose handshake failed to the garbage collector (both tests).
@pytest.mark.filterwarnings("ignore:Exception ignored in. <ssl.SSLSocket:pytest.PytestUnraisableExceptionWarning")
async def test_tls_to_a_plain_mqtt_port_says_so(broker: Broker) -> None:
    """The other way round (Home Assistant's Mosquitto add-on kept at 1883 with tls = true): the broker
    drops the TLS hello, and the error was a bare "Connection reset by peer"."""
    async with running(MqttSettings("127.0.0.1", broker.port, tls=True), timeout_s=0.5) as (_, sink):
        await state_is(sink, SinkState.FAILING)
    assert "does the broker speak MQTT over TLS on this port?" in (sink.health().last_error or "")


@pytest.mark.filterwarnings("ignore:Exception ignored in. <ssl.SSLSocket:pytest.PytestUnraisableExceptionWarning")
async def test_a_tls_brokers_certificate_this_machine_does_not_trust_is_not_taken_for_plain_mqtt(
    tmp_path: Path,
) -> None:
    """A self-signed broker and no ``ca_file``: the TLS hint told the user to set tls = false, sending
    the password in clear, where the cure is the broker's CA."""
    cert, key = self_signed(tmp_path)
    broker = Broker(tmp_path, tls=(cert, key))
    broker.start()
    try:
        async with running(MqttSettings("127.0.0.1", broker.port, tls=True), timeout_s=0.5) as (_, sink):
            await state_is(sink, SinkState.FAILING)
    finally:
        broker.stop()
    said = sink.health().last_error or ""
    assert "CERTIFICATE_VERIFY_FAILED" in said and "tls = false" not in said, said


async def test_a_broker_that_ends_the_connection_for_reading_back_is_not_asked_again(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """As AWS IoT ends the connection of an account asking for what its policy forbids: before, every
    connection ended there, and no count or event ever reached the broker. Availabilities, a stream's
    discovery configs and its pictures are given up each on their own: an account may be let read one and not
    another."""
    async with HoldingProxy(broker.port) as proxy:
        proxy.cut_subscribers()
        async with running(MqttSettings("127.0.0.1", proxy.port)) as (outputs, sink):
            outputs.on_stream_state("cam", StreamState.LIVE)
            outputs.on_packet(with_counts(1, {}, tracks=2))

            async def all_given_up() -> bool:
                return len([r for r in caplog.records if "not asked again" in r.getMessage()]) == 3

            await eventually(all_given_up, what="every kind of reading back given up")
            await state_is(sink, SinkState.OK)
            await availability_is(broker.port, "cam", b"online")
            assert proxy.subscriptions_cut == 3 * READS_CUT_LIMIT, "each tried twice (once could be the network)"
            said_online = proxy.published.count("segcast/status")
            await proxy.drop()

            async def reconnected() -> bool:
                return proxy.published.count("segcast/status") > said_online and sink.health().state is SinkState.OK

            await eventually(reconnected, what="a new connection")
            await availability_is(broker.port, "cam", b"online")
            assert proxy.subscriptions_cut == 3 * READS_CUT_LIMIT, "then not again"
    refusals = sorted(r.getMessage() for r in caplog.records if "not asked again" in r.getMessage())
    configs = ", ".join(
        f"homeassistant/{c}/segcast_cam/+/config" for c in ("sensor", "binary_sensor", "device_automation", "image")
    )
    assert f"ended the connection for it twice in a row to read {configs}" in refusals[0]
    assert "twice in a row to read segcast/cam/snapshot, segcast/cam/zones/+/snapshot" in refusals[1]
    assert "twice in a row to read segcast/status, segcast/server, segcast/+/availability" in refusals[2]
