"""Home Assistant devices across a fleet: ``discovery_id``, not each node's ``topic_prefix``, makes the ids.

A box split into nodes gives each node its own ``topic_prefix`` (``segcast/node-1``...); a camera that
got a new device there, and another with every move between nodes, left the old one offline for good
in Home Assistant, with its history, dashboards and automations.
"""

from __future__ import annotations

import asyncio
import json
import logging
from importlib import metadata
from pathlib import Path

import aiomqtt
import pytest

from server.config import StreamConfig, load_config
from server.config_values import ConfigError
from server.events.config import MqttSettings
from server.events.mqtt.topics import MqttTopics
from server.events.sink import SinkState
from server.persist import write_config
from server.sources.base import StreamState
from tests.support.event_packets import with_counts
from tests.support.mosquitto import Broker
from tests.support.polling import eventually
from tests.test_events_mqtt import availability_is, listening, retained_messages, running, state_is
from tests.test_events_mqtt import on as payloads_on

COUNTS = {"zones": {"door": {"objects": 2}}}
TRACKS = "homeassistant/sensor/segcast_cam/tracks/config"
DOOR = "homeassistant/sensor/segcast_cam/zones_door_objects/config"


def node(port: int, number: int) -> MqttSettings:
    """A node's MQTT settings as a split of a box with the default prefix has them."""
    return MqttSettings("127.0.0.1", port, topic_prefix=f"segcast/node-{number}", discovery_id="segcast")


def ids(config: dict[str, object]) -> tuple[object, object]:
    """What Home Assistant knows a sensor and its device by."""
    device = config["device"]
    assert isinstance(device, dict)
    return config["unique_id"], device["identifiers"]


async def retained_configs(port: int, sentinel: str) -> dict[str, bytes]:
    """The retained discovery configs at the broker now, by topic.

    ``sentinel``, a retained topic subscribed to last, comes after every retained config: the broker
    sends a subscription's retained messages in the order the subscriptions were made.
    """
    found: dict[str, bytes] = {}
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe("homeassistant/#", qos=1)
        await client.subscribe(sentinel, qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                if str(message.topic) == sentinel:
                    return found
                assert isinstance(message.payload, bytes)
                found[str(message.topic)] = message.payload
    raise AssertionError("unreachable")


async def test_nodes_sharing_a_discovery_id_announce_one_device_each_pointing_at_its_own_topics(broker: Broker) -> None:
    box = MqttTopics(MqttSettings("127.0.0.1", broker.port))  # the box before its split
    async with (
        listening(broker.port, "homeassistant/#") as received,
        running(node(broker.port, 1)) as (first, first_sink),
        running(node(broker.port, 2)) as (second, second_sink),
    ):
        await state_is(first_sink, SinkState.OK)
        await state_is(second_sink, SinkState.OK)
        first.on_packet(with_counts(1, COUNTS, tracks=2))
        second.on_packet(with_counts(1, COUNTS, tracks=3))

        async def both_announced() -> bool:
            return len(payloads_on(received, TRACKS)) == len(payloads_on(received, DOOR)) == 2

        await eventually(both_announced, what="both nodes' configs of the camera's sensors")
    sensors = {topic for topic, _, _ in received if topic.startswith("homeassistant/sensor/")}
    assert sensors == {TRACKS, DOOR}  # the zone's occupancy and triggers: tests/test_events_mqtt_triggers.py
    assert box.discovery("cam", "tracks") == TRACKS and box.discovery("cam", "zones_door_objects") == DOOR
    for topic, name in ((TRACKS, "tracks"), (DOOR, "zones_door_objects")):
        by_node = {config["state_topic"]: config for config in payloads_on(received, topic)}
        assert by_node.keys() == {"segcast/node-1/cam/counts", "segcast/node-2/cam/counts"}
        for number in (1, 2):
            config = by_node[f"segcast/node-{number}/cam/counts"]
            assert ids(config) == ids(box.discovery_config("cam", name)), "the box's ids, on every node"
            assert config["availability"] == [
                {"topic": f"segcast/node-{number}/status"},
                {"topic": f"segcast/node-{number}/cam/availability"},
            ]


async def test_a_camera_moved_between_nodes_keeps_its_device_read_from_the_new_node(broker: Broker) -> None:
    """Removed from its old node first, then added to the new one, as docs/protocol.md says a move goes."""
    async with running(node(broker.port, 1)) as (old, old_sink):
        await state_is(old_sink, SinkState.OK)
        old.on_stream_state("cam", StreamState.LIVE)
        old.on_packet(with_counts(1, COUNTS))

        async def announced() -> dict[str, bytes] | None:
            configs = await retained_configs(broker.port, "segcast/node-1/status")
            return configs if TRACKS in configs else None

        before = json.loads((await eventually(announced, what="the old node's configs"))[TRACKS])
        old.on_stream_removed("cam")

        async def cleared() -> bool:
            return not await retained_configs(broker.port, "segcast/node-1/status")

        await eventually(cleared, what="the old node's configs of the camera cleared")
    async with running(node(broker.port, 2)) as (new, new_sink):
        await state_is(new_sink, SinkState.OK)
        new.on_stream_state("cam", StreamState.LIVE)
        new.on_packet(with_counts(1, COUNTS))

        async def read_from_the_new_node() -> dict[str, bytes] | None:
            configs = await retained_configs(broker.port, "segcast/node-2/status")
            return configs if {TRACKS, DOOR} <= configs.keys() else None

        after = json.loads((await eventually(read_from_the_new_node, what="the new node's configs"))[TRACKS])
    assert ids(after) == ids(before)
    assert (before["state_topic"], after["state_topic"]) == ("segcast/node-1/cam/counts", "segcast/node-2/cam/counts")


@pytest.mark.parametrize(
    ("prefix", "device"),
    [("segcast", "segcast_cam3"), ("site/node-1", "site_node-1_cam3"), ("a/b/c", "a_b_c_cam3")],
)
async def test_without_a_discovery_id_the_ids_are_those_of_the_topic_prefix_as_before(prefix: str, device: str) -> None:
    topics = MqttTopics(MqttSettings("broker.lan", topic_prefix=prefix))
    assert topics.discovery("cam3", "lines_gate_in") == f"homeassistant/sensor/{device}/lines_gate_in/config"
    config = topics.discovery_config("cam3", "lines_gate_in")
    assert ids(config) == (f"{device}_lines_gate_in", [device])
    assert config["state_topic"] == f"{prefix}/cam3/counts"


def test_a_discovery_id_is_read_and_kept_when_the_api_saves_the_file(tmp_path: Path) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text('[events.mqtt]\nhost = "b"\ntopic_prefix = "segcast/node-2"\ndiscovery_id = "segcast"\n')
    settings = load_config(path)
    assert settings.events.mqtt is not None and settings.events.mqtt.effective_discovery_id == "segcast"
    write_config(settings, [StreamConfig("cam", "scene:?seed=1")])
    assert load_config(path).events == settings.events


def test_an_unset_discovery_id_stays_unset_when_the_api_saves_the_file(tmp_path: Path) -> None:
    """Written out, the default would stop following a ``topic_prefix`` changed later."""
    path = tmp_path / "segcast.toml"
    path.write_text('[events.mqtt]\nhost = "b"\ntopic_prefix = "site/a"\n')
    settings = load_config(path)
    assert settings.events.mqtt is not None and settings.events.mqtt.effective_discovery_id == "site_a"
    write_config(settings, [StreamConfig("cam", "scene:?seed=1")])
    assert "discovery_id" not in path.read_text()


@pytest.mark.parametrize(
    "value",
    ['"segcast/fleet"', '"my fleet"', '""', '"cams+"', '"#"', "5", pytest.param(f'"{"a" * 129}"', id="129 letters")],
)
def test_a_discovery_id_that_is_not_one_topic_level_is_refused_naming_the_key(tmp_path: Path, value: str) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text(f'[events.mqtt]\nhost = "b"\ndiscovery_id = {value}\n')
    with pytest.raises(ConfigError, match=r"^segcast\.toml: events\.mqtt\.discovery_id: expected .*letters, digits"):
        load_config(path)


def test_a_streams_device_names_its_model_and_the_segcast_version_that_announced_it() -> None:
    device = MqttTopics(MqttSettings("broker.lan")).discovery_config("cam", "tracks")["device"]
    assert isinstance(device, dict)
    assert device["model"] == "video stream"
    assert device["sw_version"] == metadata.version("segcast")


async def test_a_second_server_on_the_same_prefix_leaves_the_first_ones_streams_online_and_says_so(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """Two boxes with README's ``topic_prefix = "segcast"``: the second took the first's live cameras for a
    crashed run's leftovers and said them offline, with no line in the log."""
    caplog.set_level(logging.WARNING, logger="server.events.mqtt")
    settings = MqttSettings("127.0.0.1", broker.port)
    async with running(settings) as (first, first_sink):
        await state_is(first_sink, SinkState.OK)
        first.on_stream_state("door", StreamState.LIVE)
        first.on_packet(with_counts(1, COUNTS, stream_id="door"))
        await availability_is(broker.port, "door", b"online")
        async with running(settings) as (second, second_sink):
            second.on_stream_state("garage", StreamState.LIVE)
            await state_is(second_sink, SinkState.OK)  # it said online: any correction went before
            left = await retained_messages(broker.port, "segcast/door/availability")
    assert left == {"segcast/door/availability": b"online"}
    (warning,) = [r for r in caplog.records if "topic_prefix" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert first_sink.client_id in warning.getMessage() and "'segcast'" in warning.getMessage()


async def test_a_dead_servers_prefix_is_taken_over_and_its_streams_said_offline(broker: Broker) -> None:
    """A server whose will said it offline (killed, or its power cut once the broker's keepalive ran out)
    holds its prefix no more: its streams the broker still says online are said offline."""
    async with running(MqttSettings("127.0.0.1", broker.port)) as (dead, dead_sink):
        await state_is(dead_sink, SinkState.OK)
        dead.on_stream_state("door", StreamState.LIVE)
        dead.on_packet(with_counts(1, COUNTS, stream_id="door"))
        await availability_is(broker.port, "door", b"online")
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:  # as a kill leaves it: only the will said
        await client.publish("segcast/door/availability", "online", qos=1, retain=True)
    async with running(MqttSettings("127.0.0.1", broker.port)) as (_, sink):
        await state_is(sink, SinkState.OK)
        left = await retained_messages(broker.port, "segcast/door/availability")
    assert left == {"segcast/door/availability": b"offline"}
