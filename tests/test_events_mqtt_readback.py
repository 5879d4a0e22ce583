"""Home Assistant's view of a node's streams after a restart and before their cameras work: the discovery
configs a killed run left retained are read back and the stale ones of this node cleared, and a
stream's device is announced from its start."""

from __future__ import annotations

import json

import aiomqtt

from server.events.config import MqttSettings
from server.events.mqtt.retained import RetainedStreams
from server.events.mqtt.topics import MqttTopics
from server.events.sink import SinkState
from server.sources.base import StreamState
from tests.support.event_packets import with_counts
from tests.support.mosquitto import Broker
from tests.support.polling import eventually
from tests.test_events_mqtt import availability_is, retained_messages, running, state_is
from tests.test_events_mqtt_devices import retained_configs


def node(port: int, number: int) -> MqttSettings:
    """A node of a fleet as `segcast split` makes it: a prefix of its own, the fleet's discovery id."""
    return MqttSettings("127.0.0.1", port, topic_prefix=f"segcast/node-{number}", discovery_id="segcast")


async def leave_retained(port: int, configs: dict[str, dict[str, object]]) -> None:
    """Configs retained at the broker as a run before left them (killed, -9: nothing cleared)."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for topic, config in configs.items():
            await client.publish(topic, json.dumps(config), qos=1, retain=True)


async def test_a_config_a_killed_run_left_for_a_renamed_zone_is_cleared_and_the_rest_kept(broker: Broker) -> None:
    """Zone ``entry`` renamed ``hall`` through the API without saving, then a kill: the restart, with
    ``entry`` again, left ``hall``'s sensor available with no value for good."""
    ours, other = MqttTopics(node(broker.port, 1)), MqttTopics(node(broker.port, 2))
    hall, entry = ours.discovery("cam", "zones_hall_objects"), ours.discovery("cam", "zones_entry_objects")
    yard = other.discovery("cam", "zones_yard_objects")  # the same device's, from the node sharing its ids
    await leave_retained(
        broker.port,
        {
            hall: ours.discovery_config("cam", "zones_hall_objects"),
            entry: ours.discovery_config("cam", "zones_entry_objects"),
            yard: other.discovery_config("cam", "zones_yard_objects"),
        },
    )
    async with running(node(broker.port, 1)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(with_counts(1, {"zones": {"entry": {"objects": 1}}}))

        async def hall_cleared() -> dict[str, bytes] | None:
            configs = await retained_configs(broker.port, "segcast/node-1/status")
            return configs if hall not in configs and entry in configs else None

        await eventually(hall_cleared, what="the config of the zone the stream no longer has cleared")
    left = await retained_configs(broker.port, "segcast/node-1/status")
    assert json.loads(left[entry]) == ours.discovery_config("cam", "zones_entry_objects")
    assert json.loads(left[yard]) == other.discovery_config("cam", "zones_yard_objects"), "another node's: kept"
    assert ours.discovery("cam", "tracks") in left


def retained_config(topic: str, config: object) -> aiomqtt.Message:
    return aiomqtt.Message(topic, json.dumps(config).encode(), qos=0, retain=True, mid=0, properties=None)


def test_only_this_nodes_own_configs_of_a_stream_it_runs_are_taken_for_clearing() -> None:
    ours, other = MqttTopics(node(1883, 1)), MqttTopics(node(1883, 2))
    streams = RetainedStreams(ours, discovery=True)
    streams.offer_counts("cam", {"tracks": 1, "zones_entry_objects": 0})
    assert [m.topic for m in streams.next_messages()][-1] == "segcast/node-1/cam/counts"
    hall, yard = ours.discovery("cam", "zones_hall_objects"), other.discovery("cam", "zones_yard_objects")
    foreign = [
        retained_config(yard, other.discovery_config("cam", "zones_yard_objects")),
        retained_config(hall, {**ours.discovery_config("cam", "zones_hall_objects"), "unique_id": "someone_else"}),
        retained_config(hall, "not a config"),
        retained_config(ours.discovery("gone", "tracks"), ours.discovery_config("gone", "tracks")),  # not run here
    ]
    assert not any(streams.read_config(message) for message in foreign)
    assert streams.next_messages() == []
    assert streams.read_config(retained_config(hall, ours.discovery_config("cam", "zones_hall_objects")))
    cleared = [m for m in streams.next_messages() if m.payload == b""]
    assert [m.topic for m in cleared] == [hall]


async def test_a_stream_whose_camera_never_works_appears_as_a_device_from_its_start(broker: Broker) -> None:
    """Before, a stream whose camera refused connections had only its availability, and no device in
    Home Assistant until the camera first worked."""
    topics = MqttTopics(MqttSettings("127.0.0.1", broker.port))
    tracks = topics.discovery("gate", "tracks")
    async with running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("gate", StreamState.STARTING)
        outputs.on_stream_state("gate", StreamState.RECONNECTING)

        async def announced() -> dict[str, bytes] | None:
            configs = await retained_messages(broker.port, "homeassistant/#")
            return configs if tracks in configs else None

        configs = await eventually(announced, what="the stream's device")
        await availability_is(broker.port, "gate", b"offline")
    assert json.loads(configs[tracks]) == topics.discovery_config("gate", "tracks")
    assert configs.keys() == {tracks}, "its zones' and lines' sensors wait for its first counts"
