"""Home Assistant automations on segcast's events with no YAML: an occupancy binary sensor per zone and MQTT
device triggers per zone and line; and events too old to act on, after an outage, not published.

Before, only ``sensor`` discovery configs existed: an automation on a zone entry needed an MQTT trigger
written by hand, and events queued while the broker was down were all published once it was back, so
automations fired for things long past.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from server.config import StreamConfig, load_config
from server.config_values import ConfigError
from server.events.config import MqttSettings
from server.events.mqtt.connection import MqttSink
from server.events.mqtt.outbox import EventOutbox
from server.events.mqtt.retained import RetainedStreams
from server.events.mqtt.topics import MqttTopics
from server.events.sink import OutEvent, SinkState, Tally
from server.persist import write_config
from server.sources.base import StreamState
from tests.support.event_packets import with_counts, with_events
from tests.support.mosquitto import Broker
from tests.support.polling import eventually
from tests.test_events_mqtt import Message, listening, retained_messages, running, state_is
from tests.test_events_mqtt_readback import leave_retained, retained_config

COUNTS = {
    "zones": {"door": {"objects": 2, "by_class": {"person": 2}}},
    "lines": {"gate": {"in": 4, "out": 1, "by_class": {"person": {"in": 4, "out": 1}}}},
}
OCCUPANCY = "homeassistant/binary_sensor/segcast_cam/zones_door_occupancy/config"
TRIGGERS = {
    f"homeassistant/device_automation/segcast_cam/{name}/config"
    for name in ("zones_door_enter", "zones_door_exit", "zones_door_loiter", "lines_gate_in", "lines_gate_out")
}


def event(kind: str, **where: str) -> dict[str, object]:
    """An analytics event of stream ``cam`` as the pipeline emits it."""
    return {"type": kind, "v": 1, "stream": "cam", "id": 7, "class_id": 0, "class": "person", **where}


def fired(triggers: dict[str, dict[str, object]], received: list[Message]) -> list[tuple[object, object]]:
    """The device triggers (type, subtype) ``received`` fires, matched as Home Assistant matches them: the
    topic, and the payload where the trigger names one."""
    return [
        (trigger["type"], trigger["subtype"])
        for topic, payload, _ in received
        for trigger in triggers.values()
        if topic == trigger["topic"] and trigger.get("payload", payload.decode()) == payload.decode()
    ]


async def announced(port: int, *topics: str) -> dict[str, dict[str, object]]:
    """The retained discovery configs on ``topics``, once every one of them is there."""

    async def all_there() -> dict[str, bytes] | None:
        configs = await retained_messages(port, "homeassistant/#")
        return configs if set(topics) <= configs.keys() else None

    configs = await eventually(all_there, what=f"the configs {sorted(topics)}")
    return {topic: json.loads(configs[topic]) for topic in topics}


async def test_each_zone_has_an_occupancy_binary_sensor_on_while_it_holds_objects(broker: Broker) -> None:
    jinja2 = pytest.importorskip("jinja2")  # Home Assistant's templates are Jinja's
    async with running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_packet(with_counts(1, COUNTS, tracks=3))
        (config,) = (await announced(broker.port, OCCUPANCY)).values()
    assert config["device_class"] == "occupancy"
    assert config["state_topic"] == "segcast/cam/counts", "the counts segcast publishes anyway: no topic more"
    assert config["availability"] == [{"topic": "segcast/status"}, {"topic": "segcast/cam/availability"}]
    assert config["availability_mode"] == "all"
    assert config["unique_id"] == "segcast_cam_zones_door_occupancy"
    assert config["device"] == MqttTopics(MqttSettings("b")).discovery_config("cam", "tracks")["device"]
    template = jinja2.Environment().from_string(str(config["value_template"]))
    states = [template.render(value_json={"tracks": n, "zones_door_objects": n}) for n in (2, 0, 1)]
    assert [state.strip() for state in states] == ["ON", "OFF", "ON"]  # binary_sensor.mqtt's payload_on, payload_off


async def test_zone_and_line_events_fire_home_assistant_device_triggers_once_each(broker: Broker) -> None:
    async with (
        listening(broker.port, "segcast/#") as received,
        running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)
        outputs.on_packet(with_counts(1, COUNTS, tracks=3))
        triggers = await announced(broker.port, *TRIGGERS)
        happened = [
            event("zone_enter", zone="door"),
            event("loiter", zone="door"),
            event("zone_exit", zone="door"),
            event("line_cross", line="gate", direction="in"),
            event("line_cross", line="gate", direction="out"),
        ]
        outputs.on_packet(with_events(2, happened))

        async def all_heard() -> bool:
            events = [topic for topic, _, _ in received if topic.startswith("segcast/cam/events/")]
            return len(events) == len(fired(triggers, received)) == len(happened)

        await eventually(all_heard, what="the five events and a trigger for each at the subscriber")
    assert {(t["automation_type"], t["type"], t["subtype"]) for t in triggers.values()} == {
        ("trigger", "zone_enter", "door"),
        ("trigger", "zone_exit", "door"),
        ("trigger", "loiter", "door"),
        ("trigger", "line_cross", "gate in"),
        ("trigger", "line_cross", "gate out"),
    }
    device = MqttTopics(MqttSettings("b")).discovery_config("cam", "tracks")["device"]
    assert all(trigger["device"] == device for trigger in triggers.values()), "the camera's own device"
    assert fired(triggers, received) == [
        ("zone_enter", "door"),
        ("loiter", "door"),
        ("zone_exit", "door"),
        ("line_cross", "gate in"),
        ("line_cross", "gate out"),
    ]
    trigger_topics = {str(trigger["topic"]) for trigger in triggers.values()}
    assert not any(retained for topic, _, retained in received if topic in trigger_topics), "never retained"
    assert [t for t, _, _ in received if t.startswith("segcast/cam/events/")] == [
        f"segcast/cam/events/{kind}" for kind in ("zone_enter", "loiter", "zone_exit", "line_cross", "line_cross")
    ], "the event topics as they were"


async def test_a_renamed_zone_a_deleted_line_and_a_removed_camera_take_their_triggers_with_them(
    broker: Broker,
) -> None:
    hall = {
        "homeassistant/binary_sensor/segcast_cam/zones_hall_occupancy/config",
        *(f"homeassistant/device_automation/segcast_cam/zones_hall_{what}/config" for what in ("enter", "exit")),
    }
    async with running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(with_counts(1, COUNTS, tracks=3))
        await announced(broker.port, OCCUPANCY, *TRIGGERS)
        outputs.on_packet(with_counts(2, {"zones": {"hall": {"objects": 0}}}, tracks=3))  # door renamed, gate gone
        await announced(broker.port, *hall)

        async def cleared() -> bool:
            return not ({OCCUPANCY} | TRIGGERS) & (await retained_messages(broker.port, "homeassistant/#")).keys()

        await eventually(cleared, what="the configs of the renamed zone and the deleted line cleared")
        outputs.on_stream_removed("cam")

        async def camera_gone() -> bool:
            return not any("segcast_cam" in topic for topic in await retained_messages(broker.port, "homeassistant/#"))

        await eventually(camera_gone, what="every config of the removed camera cleared")


async def test_a_trigger_a_killed_run_left_for_a_renamed_zone_is_cleared(broker: Broker) -> None:
    """Read back as the sensors are: a trigger of a zone renamed before a kill fired nothing for good."""
    ours = MqttTopics(MqttSettings("127.0.0.1", broker.port))
    left_behind = "homeassistant/device_automation/segcast_cam/zones_entry_enter/config"
    async with running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_packet(with_counts(1, {"zones": {"entry": {"objects": 0}}}))
        config = (await announced(broker.port, left_behind))[left_behind]
    await leave_retained(broker.port, {left_behind: config})  # as a kill (-9) leaves it
    async with running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(with_counts(1, {"zones": {"hall": {"objects": 0}}}))

        async def cleared() -> bool:
            configs = await retained_messages(broker.port, "homeassistant/#")
            return left_behind not in configs and ours.discovery("cam", "tracks") in configs

        await eventually(cleared, what="the killed run's trigger of the renamed zone cleared")


def hall_configs(topics: MqttTopics) -> dict[str, dict[str, object]]:
    """The occupancy and zone-entry configs of zone ``hall`` of ``cam`` as the node of ``topics`` announces them."""
    wanted = (
        "homeassistant/binary_sensor/segcast_cam/zones_hall_occupancy/config",
        "homeassistant/device_automation/segcast_cam/zones_hall_enter/config",
    )
    streams = RetainedStreams(topics, discovery=True)
    streams.offer_counts("cam", {"tracks": 1, "zones_hall_objects": 0})
    return {m.topic: json.loads(m.payload) for m in streams.next_messages() if m.topic in wanted}


def test_only_this_nodes_own_trigger_and_occupancy_configs_are_taken_for_clearing() -> None:
    ours = MqttTopics(MqttSettings("b", topic_prefix="segcast/node-1", discovery_id="segcast"))
    other = MqttTopics(MqttSettings("b", topic_prefix="segcast/node-2", discovery_id="segcast"))
    streams = RetainedStreams(ours, discovery=True)
    streams.offer_counts("cam", {"tracks": 1, "zones_entry_objects": 0})  # zone hall is renamed entry here
    streams.next_messages()
    theirs, mine = hall_configs(other), hall_configs(ours)
    assert len(theirs) == len(mine) == 2
    assert not any(streams.read_config(retained_config(topic, config)) for topic, config in theirs.items())
    assert all(streams.read_config(retained_config(topic, config)) for topic, config in mine.items())
    assert {m.topic for m in streams.next_messages() if m.payload == b""} == mine.keys()


def test_trigger_and_occupancy_ids_are_distinct_across_cameras() -> None:
    streams = RetainedStreams(MqttTopics(MqttSettings("b")), discovery=True)
    configs: dict[str, dict[str, object]] = {}
    for camera in ("cam", "yard"):
        streams.offer_counts(camera, {"tracks": 1, "zones_door_objects": 1, "lines_gate_in": 0, "lines_gate_out": 0})
        configs |= {m.topic: json.loads(m.payload) for m in streams.next_messages() if "/config" in m.topic}
    assert len(configs) == 2 * 10  # per camera: 4 sensors, 1 binary sensor, 5 triggers
    unique_ids = [c["unique_id"] for c in configs.values() if "unique_id" in c]
    assert len(unique_ids) == len(set(unique_ids)) == 2 * 5
    trigger_ids = [(t.split("/")[2], t.split("/")[3]) for t in configs if "/device_automation/" in t]
    assert len(set(trigger_ids)) == 2 * 5, "Home Assistant tells device triggers apart by node and object id"
    assert {c["subtype"] for c in configs.values() if c.get("type") == "zone_enter"} == {"door"}


class Clock:
    """Wall-clock seconds the test moves on by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def zone_enter_at(when: float) -> OutEvent:
    return OutEvent(event("zone_enter", zone="door") | {"time": when}, "cam", when)


async def test_an_event_too_old_when_the_broker_is_back_is_dropped_and_counted_and_a_fresh_one_sent(
    broker: Broker,
) -> None:
    clock = Clock()
    sink = MqttSink(MqttSettings("127.0.0.1", broker.port, max_event_age_s=5), backoff_first_s=0.1, clock=clock)
    await sink.start()
    try:
        await state_is(sink, SinkState.OK)
        broker.stop()
        await state_is(sink, SinkState.FAILING)
        sink.offer(zone_enter_at(clock.now))  # a zone entry while the broker is down
        clock.now += 6  # the broker is back only after max_event_age_s
        await asyncio.get_running_loop().run_in_executor(None, broker.start)
        await state_is(sink, SinkState.OK)

        async def settled() -> bool:
            health = sink.health()
            return health.delivered + health.dropped == 1

        await eventually(settled, what="the old event settled")
        assert (sink.health().delivered, sink.health().dropped) == (0, 1)
        async with listening(broker.port, "segcast/cam/events/#") as received:
            fresh = zone_enter_at(clock.now)
            sink.offer(fresh)

            async def arrived() -> bool:
                return bool(received)

            await eventually(arrived, what="a fresh event")
        assert [json.loads(payload)["event_id"] for _, payload, _ in received] == [fresh.event_id]
        assert (sink.health().delivered, sink.health().dropped, sink.health().queued) == (1, 1, 0)
    finally:
        await sink.stop()


def test_a_max_event_age_of_0_sends_events_of_any_age() -> None:
    settings = MqttSettings("b", max_event_age_s=0)
    outbox = EventOutbox(settings, MqttTopics(settings), Tally("mqtt", logging.getLogger(__name__)), time.time)
    outbox.offer(zone_enter_at(time.time() - 86400))
    assert [m.topic for m in outbox.next_messages()][-1] == "segcast/cam/events/zone_enter"


def test_max_event_age_is_read_checked_and_kept_when_the_api_saves_the_file(tmp_path: Path) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text('[events.mqtt]\nhost = "b"\n')
    settings = load_config(path).events.mqtt
    assert settings is not None and settings.max_event_age_s == 60
    path.write_text('[events.mqtt]\nhost = "b"\nmax_event_age_s = 0\n')
    settings = load_config(path)
    assert settings.events.mqtt is not None and settings.events.mqtt.max_event_age_s == 0
    write_config(settings, [StreamConfig("cam", "scene:?seed=1")])
    assert "max_event_age_s = 0" in path.read_text()
    path.write_text('[events.mqtt]\nhost = "b"\nmax_event_age_s = -1\n')
    with pytest.raises(ConfigError, match=r"events\.mqtt\.max_event_age_s: expected a number from 0"):
        load_config(path)
