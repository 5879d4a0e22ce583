"""What a node leaves retained at the broker once a setting, a zone, a line or a stream is gone: no picture of a
person and no Home Assistant config it no longer stands by (a Node-RED/plain-MQTT integrator's review).

Before, with discovery off, turning ``snapshots`` off left every picture retained for good (only Home
Assistant's image configs, read back with discovery on, led to them); a deleted zone's exits, sent after its
picture was cleared, published a new one that stayed until the stream was removed; and turning discovery
off left every config retained, so Home Assistant kept entities of topics no longer published.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from server.events import snapshot
from server.events.config import MqttSettings
from server.events.mqtt.retained import RetainedStreams
from server.events.mqtt.topics import MqttTopics
from server.events.sink import SinkState
from server.sources.base import StreamState
from tests.support.event_packets import with_counts
from tests.support.mosquitto import Broker
from tests.support.mqtt_proxy import HoldingProxy
from tests.support.polling import eventually
from tests.test_events_mqtt import Message, listening, retained_messages, running, state_is
from tests.test_events_mqtt_snapshots import (
    COUNTS,
    DOOR_PICTURE,
    GATE_PICTURE,
    STREAM_PICTURE,
    crossing,
    entry,
    frame_with,
    retained_when,
    snapshots_on,
)

PICTURES = (STREAM_PICTURE, "segcast/cam/+/+/snapshot")
ZONE_ONLY = {"zones": COUNTS["zones"]}
LINE_ONLY = {"lines": COUNTS["lines"]}


def exit_of_door() -> dict[str, object]:
    """The exit of track 1 from zone ``door``, as the pipeline emits it when the zone is deleted under it."""
    return {**entry(), "type": "zone_exit"}


async def pictures_left(port: int) -> dict[str, bytes]:
    return await retained_messages(port, *PICTURES)


async def until_cleared(port: int, *topics: str) -> dict[str, bytes]:
    """The retained pictures once none of ``topics`` is retained any more."""

    async def cleared() -> dict[str, bytes] | None:
        left = await pictures_left(port)
        return left if not set(topics) & left.keys() else None

    return await eventually(cleared, what=f"{sorted(topics)} cleared")


async def arrived(received: list[Message], message: str | tuple[str, bytes], since: int = 0) -> None:
    """Wait for ``message`` (a topic, or a topic and its payload) among ``received`` from ``since`` on: whatever the
    sink published before it has reached the broker, over its one connection."""

    async def there() -> bool:
        return any(message in (topic, (topic, payload)) for topic, payload, _ in received[since:])

    await eventually(there, what=f"{message} at the subscriber")


async def pictures_left_by_a_run(port: int) -> dict[str, bytes]:
    """A run with snapshots on and discovery off whose door entry and gate crossing left the stream's, the
    zone's and the line's pictures retained; those pictures."""
    async with running(snapshots_on(port, discovery=False)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(frame_with(1, [entry(), crossing()], COUNTS))
        return await retained_when(port, STREAM_PICTURE, DOOR_PICTURE, GATE_PICTURE)


async def test_pictures_a_run_before_left_are_cleared_once_snapshots_are_off_with_discovery_off(
    broker: Broker,
) -> None:
    await pictures_left_by_a_run(broker.port)
    async with running(MqttSettings("127.0.0.1", broker.port, discovery=False)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(with_counts(2, COUNTS))
        assert await until_cleared(broker.port, STREAM_PICTURE, DOOR_PICTURE, GATE_PICTURE) == {}


async def test_the_picture_of_a_zone_deleted_while_segcast_was_stopped_is_cleared_with_discovery_off(
    broker: Broker,
) -> None:
    kept = await pictures_left_by_a_run(broker.port)
    async with running(snapshots_on(broker.port, discovery=False)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(with_counts(2, LINE_ONLY))  # the door zone deleted from the config file
        left = await until_cleared(broker.port, DOOR_PICTURE)
    assert left == {STREAM_PICTURE: kept[STREAM_PICTURE], GATE_PICTURE: kept[GATE_PICTURE]}, "the rest are current"


@pytest.mark.parametrize("discovery", [True, False], ids=["discovery", "no-discovery"])
async def test_the_exits_a_zones_deletion_ends_publish_no_picture_of_it(broker: Broker, discovery: bool) -> None:
    async with (
        listening(broker.port, "segcast/cam/#") as received,
        running(snapshots_on(broker.port, discovery=discovery)) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(frame_with(1, [entry()], COUNTS))
        await retained_when(broker.port, STREAM_PICTURE, DOOR_PICTURE)
        outputs.on_packet(with_counts(2, LINE_ONLY))  # PATCH zones: []
        await until_cleared(broker.port, DOOR_PICTURE)
        since = len(received)
        outputs.on_packet(frame_with(3, [exit_of_door()], LINE_ONLY))
        await arrived(received, "segcast/cam/events/zone_exit", since)
        left = await pictures_left(broker.port)
    assert DOOR_PICTURE not in left
    assert [t for t, payload, _ in received[since:] if t.endswith("/snapshot") and payload] == []
    (event,) = [json.loads(p) for t, p, _ in received[since:] if t == "segcast/cam/events/zone_exit"]
    assert "snapshot_topic" not in event, "it names no picture"


@pytest.fixture
def held_encoder(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Every picture's encoding waits until the event this returns is set: its event waits with it."""
    release = threading.Event()
    encode = snapshot.snapshot_jpeg

    def held(picture: snapshot.Picture) -> bytes:
        release.wait(30)
        return encode(picture)

    monkeypatch.setattr(snapshot, "snapshot_jpeg", held)
    return release


@pytest.mark.parametrize("discovery", [True, False], ids=["discovery", "no-discovery"])
async def test_a_crossing_that_waited_for_its_picture_past_its_lines_deletion_publishes_no_picture_of_it(
    broker: Broker, held_encoder: threading.Event, discovery: bool
) -> None:
    async with (
        listening(broker.port, "segcast/cam/#") as received,
        running(snapshots_on(broker.port, discovery=discovery)) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        held_encoder.set()
        outputs.on_packet(frame_with(1, [crossing()], COUNTS))
        await retained_when(broker.port, STREAM_PICTURE, GATE_PICTURE)
        held_encoder.clear()
        outputs.on_packet(frame_with(2, [crossing()], COUNTS))  # its picture waits for the encoder
        outputs.on_packet(with_counts(3, ZONE_ONLY))  # then the line is deleted
        await until_cleared(broker.port, GATE_PICTURE)
        since = len(received)
        held_encoder.set()
        await arrived(received, "segcast/cam/events/line_cross", since)
        left = await pictures_left(broker.port)
    assert GATE_PICTURE not in left
    assert [t for t, payload, _ in received[since:] if t.endswith("/snapshot") and payload] == []


async def test_an_event_that_waited_for_its_picture_past_its_streams_removal_publishes_no_picture(
    broker: Broker, held_encoder: threading.Event
) -> None:
    """The stream's side of the deletions above (already so: a removed stream is not this node's)."""
    async with (
        listening(broker.port, "segcast/cam/#") as received,
        running(snapshots_on(broker.port, discovery=False)) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(frame_with(1, [entry()], COUNTS))  # its picture waits for the encoder
        outputs.on_stream_removed("cam")
        await arrived(received, ("segcast/cam/availability", b""))  # the last of the removal's clears
        held_encoder.set()
        await arrived(received, "segcast/cam/events/zone_enter")
        assert await retained_messages(broker.port, "segcast/cam/#") == {}


async def test_configs_a_run_with_discovery_left_are_cleared_once_it_is_off_and_another_nodes_kept(
    broker: Broker,
) -> None:
    """This node's own configs only: a fleet's node sharing ``discovery_id`` announces the same device, pointing
    at topics of its own (`server.events.mqtt.retained`)."""
    other = MqttTopics(MqttSettings("127.0.0.1", broker.port, topic_prefix="segcast2", discovery_id="segcast"))
    others = other.discovery("cam", "zones_yard_objects")
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.publish(others, json.dumps(other.discovery_config("cam", "zones_yard_objects")), 1, retain=True)
    async with running(snapshots_on(broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(frame_with(1, [entry()], COUNTS))
        await retained_when(broker.port, DOOR_PICTURE)
        announced = await retained_messages(broker.port, "homeassistant/#")
    kinds = {topic.split("/")[1] for topic in announced}
    assert kinds == {"sensor", "binary_sensor", "device_automation", "image"}, "every kind is to go"
    async with running(MqttSettings("127.0.0.1", broker.port, discovery=False)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(with_counts(2, COUNTS))

        async def ours_cleared() -> dict[str, bytes] | None:
            left = await retained_messages(broker.port, "homeassistant/#")
            return left if left.keys() == {others} else None

        await eventually(ours_cleared, what="this node's discovery configs cleared")
        assert await pictures_left(broker.port) == {}, "the image entities' pictures with them"


def retained(topic: str, payload: Any) -> aiomqtt.Message:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return aiomqtt.Message(topic, data, qos=0, retain=True, mid=0, properties=None)


@pytest.mark.parametrize("prefix_ours", [True, False], ids=["alone", "prefix-shared"])
def test_with_discovery_off_what_is_read_back_is_cleared_only_while_no_other_segcast_is_live_on_the_prefix(
    prefix_ours: bool,
) -> None:
    """Two segcasts on one prefix (`server.events.mqtt.claim`) publish the same names: the other's, with
    discovery or snapshots on, are not this one's to clear."""
    topics = MqttTopics(MqttSettings("b"))
    streams = RetainedStreams(topics, discovery=False)
    streams.read_back([], prefix_ours=prefix_ours)
    streams.offer_counts("cam", {"tracks": 1, "zones_door_objects": 0})
    assert [m.topic for m in streams.next_messages()] == ["segcast/cam/counts"]
    config = topics.discovery("cam", "zones_door_objects")
    read = [
        streams.read_retained(retained(config, topics.discovery_config("cam", "zones_door_objects"))),
        streams.read_retained(retained(DOOR_PICTURE, b"\xff\xd8 a picture")),
        streams.read_retained(retained("segcast/other/zones/door/snapshot", b"\xff\xd8")),  # not a stream run here
    ]
    cleared = [m.topic for m in streams.next_messages() if m.payload == b""]
    if prefix_ours:
        assert (read, cleared) == ([True, True, False], [config, DOOR_PICTURE])
    else:
        assert (read, cleared) == ([False, False, False], [])


def logging_broker(folder: Path) -> Broker:
    """mosquitto logging every packet: what it sends a client, and each filter a client subscribes to."""
    broker = Broker(folder)
    broker.config.write_text(broker.config.read_text() + "log_type all\n")
    return broker


def zone_pictures(stream_id: str) -> str:
    """The filter a node reads back ``stream_id``'s zones' pictures with."""
    return f"segcast/{stream_id}/zones/+/snapshot"


def sensor_configs(stream_id: str) -> str:
    """The filter a node reads back the configs of ``stream_id``'s sensors with."""
    return f"homeassistant/sensor/segcast_{stream_id}/+/config"


def subscriptions(folder: Path, client_id: str, topic_filter: str) -> int:
    """How many times ``client_id`` subscribed to ``topic_filter``, by mosquitto's log."""
    return (folder / "mosquitto.log").read_text().count(f"{client_id} 0 {topic_filter}\n")


async def subscribed(folder: Path, client_id: str, topic_filter: str, times: int) -> None:
    async def seen() -> bool:
        return subscriptions(folder, client_id, topic_filter) == times

    await eventually(seen, what=f"{topic_filter} subscribed to {times} times")


def pictures_sent_to(folder: Path, client_id: str) -> list[str]:
    """The retained pictures mosquitto sent ``client_id``, by its log."""
    log = (folder / "mosquitto.log").read_text()
    return re.findall(rf"Sending PUBLISH to {client_id} \(d0, q0, r1, m0, '([^']+/snapshot)'", log)


async def test_with_snapshots_and_discovery_on_no_picture_is_read_back_and_a_deleted_zones_still_goes(
    tmp_path: Path,
) -> None:
    """Every connection downloaded every retained picture of every stream (up to max_snapshot_kb each), where the
    image entities' configs read back lead to this node's pictures already."""
    broker = logging_broker(tmp_path)
    broker.start()
    try:
        async with running(snapshots_on(broker.port)) as (outputs, sink):
            await state_is(sink, SinkState.OK)
            outputs.on_stream_state("cam", StreamState.LIVE)
            outputs.on_packet(frame_with(1, [entry(), crossing()], COUNTS))
            await retained_when(broker.port, STREAM_PICTURE, DOOR_PICTURE, GATE_PICTURE)
        async with running(snapshots_on(broker.port)) as (outputs, sink):
            await state_is(sink, SinkState.OK)
            outputs.on_stream_state("cam", StreamState.LIVE)
            outputs.on_packet(with_counts(2, LINE_ONLY))  # the door zone deleted from the config file
            left = await until_cleared(broker.port, DOOR_PICTURE)
            client_id = sink.client_id
    finally:
        broker.stop()
    assert left.keys() == {STREAM_PICTURE, GATE_PICTURE}
    assert (subscriptions(tmp_path, client_id, zone_pictures("cam")), pictures_sent_to(tmp_path, client_id)) == (0, [])


async def test_pictures_are_read_back_once_a_process_not_on_every_connection(tmp_path: Path) -> None:
    """With discovery off (no image entity leads to them) each reconnection downloaded them all again: 120
    pictures of 100 kB are 12 MB a reconnection, to a broker that may be metered.

    A stream new to this process is read back after all the connection was reading of the streams before it,
    which marks the end of theirs."""
    broker = logging_broker(tmp_path)
    broker.start()
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.publish(DOOR_PICTURE, b"\xff\xd8 a run before's picture", 1, retain=True)
        async with (
            HoldingProxy(broker.port) as proxy,
            running(snapshots_on(proxy.port, discovery=False)) as (outputs, sink),
        ):
            await state_is(sink, SinkState.OK)
            outputs.on_stream_state("cam", StreamState.LIVE)
            outputs.on_packet(with_counts(1, COUNTS))  # the door zone is current: its picture stays
            await subscribed(tmp_path, sink.client_id, zone_pictures("cam"), 1)
            outputs.on_stream_state("cam2", StreamState.LIVE)
            await subscribed(tmp_path, sink.client_id, sensor_configs("cam2"), 1)  # cam's pictures read by then
            await proxy.drop()
            await subscribed(tmp_path, sink.client_id, sensor_configs("cam"), 2)  # the next connection's read-back
            outputs.on_stream_state("cam3", StreamState.LIVE)
            await subscribed(tmp_path, sink.client_id, zone_pictures("cam3"), 1)
            reads = subscriptions(tmp_path, sink.client_id, zone_pictures("cam"))
            sent = pictures_sent_to(tmp_path, sink.client_id)
    finally:
        broker.stop()
    assert (reads, sent) == (1, [DOOR_PICTURE])
