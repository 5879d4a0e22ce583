"""A zone's or line's event's picture over MQTT, for a Home Assistant notification that shows who entered.

Before, the history kept a JPEG of each event, but nothing of it went over MQTT: an automation on "someone
entered the porch" could attach no picture without REST calls to segcast with a token. Now, with
``snapshots = true``, each zone or line event's snapshot is published retained, just before the event's
trigger, on the stream's and the zone's (or line's) snapshot topic, each an MQTT image entity.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
import threading
import weakref
from pathlib import Path
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np
import pytest

from server.config import StreamConfig, load_config
from server.config_values import ConfigError
from server.delivery.encode import FramePacket
from server.events import snapshot
from server.events.config import MqttSettings
from server.events.sink import SinkState
from server.persist import write_config
from server.sources.base import StreamState
from tests.support.event_packets import HEIGHT, WIDTH, with_counts, with_events
from tests.support.mosquitto import Broker
from tests.support.polling import eventually
from tests.support.ports import free_port
from tests.test_events_mqtt import listening, retained_messages, running, state_is

COUNTS = {
    "zones": {"door": {"objects": 1, "by_class": {"person": 1}}},
    "lines": {"gate": {"in": 0, "out": 0, "by_class": {}}},
}
STREAM_PICTURE = "segcast/cam/snapshot"
DOOR_PICTURE = "segcast/cam/zones/door/snapshot"
GATE_PICTURE = "segcast/cam/lines/gate/snapshot"
STREAM_IMAGE = "homeassistant/image/segcast_cam/snapshot/config"
DOOR_IMAGE = "homeassistant/image/segcast_cam/zones_door_snapshot/config"
GATE_IMAGE = "homeassistant/image/segcast_cam/lines_gate_snapshot/config"
#: mosquitto's ``max_packet_size`` where the test is a picture the broker will not take: an event fits.
MAX_PACKET_BYTES = 2048


def snapshots_on(port: int, **settings: Any) -> MqttSettings:
    return MqttSettings("127.0.0.1", port, snapshots=True, **settings)


def entry(zone: str = "door") -> dict[str, object]:
    """A zone entry of track 1 (the object at `tests.support.event_packets.BOX`) as the pipeline emits it."""
    return {"type": "zone_enter", "v": 1, "stream": "cam", "id": 1, "class_id": 0, "class": "person", "zone": zone}


def crossing() -> dict[str, object]:
    return {"type": "line_cross", "v": 1, "stream": "cam", "id": 1, "class_id": 0, "class": "person"} | {
        "line": "gate",
        "direction": "in",
    }


def frame_with(seq: int, events: list[dict[str, object]], counts: dict[str, Any], image: Any = None) -> FramePacket:
    """A frame of stream ``cam`` whose message carries ``events`` and the stream's ``counts``."""
    packet = with_events(seq, events, image=image)
    metadata = {**packet.metadata, "counts": counts}
    return FramePacket(packet.result, MappingProxyType(metadata), json.dumps(metadata))


def noise() -> np.ndarray:
    """A frame no JPEG makes small: a picture of it is tens of kB."""
    return np.random.default_rng(7).integers(0, 256, (HEIGHT, WIDTH, 3), np.uint8)


async def retained_when(port: int, *topics: str) -> dict[str, bytes]:
    """The retained messages on ``topics``, once every one of them is there."""

    async def all_there() -> dict[str, bytes] | None:
        found = await retained_messages(port, *topics)
        return found if set(topics) <= found.keys() else None

    return await eventually(all_there, what=f"retained messages on {sorted(topics)}")


def decoded(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG OpenCV can read"
    return image


async def test_a_zone_entry_leaves_its_picture_retained_on_the_streams_and_the_zones_snapshot_topics(
    broker: Broker,
) -> None:
    packet = frame_with(1, [entry()], COUNTS)
    expected = snapshot.picture_of(entry(), packet.result).pixels.shape
    async with running(snapshots_on(broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_packet(packet)
        pictures = await retained_when(broker.port, STREAM_PICTURE, DOOR_PICTURE)
    assert pictures[STREAM_PICTURE] == pictures[DOOR_PICTURE]
    jpeg = pictures[DOOR_PICTURE]
    assert jpeg[:2] == b"\xff\xd8", "raw JPEG bytes, no base64, no JSON around them"
    assert decoded(jpeg).shape == expected, "the history's snapshot: the object's box with its margin"
    assert GATE_PICTURE not in await retained_messages(broker.port, GATE_PICTURE), "no crossing of the line yet"


async def test_a_pictures_messages_go_before_its_events_trigger_and_the_event_names_its_topic(broker: Broker) -> None:
    """A notification fired by the trigger shows this event's picture, not the one before it."""
    async with (
        listening(broker.port, "segcast/cam/#") as received,
        running(snapshots_on(broker.port)) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)
        outputs.on_packet(frame_with(1, [crossing()], COUNTS))

        async def event_arrived() -> bool:
            return any(topic == "segcast/cam/events/line_cross" for topic, _, _ in received)

        await eventually(event_arrived, what="the crossing's event")
    order = [topic for topic, _, _ in received if "/counts" not in topic and "/availability" not in topic]
    assert order == [
        STREAM_PICTURE,
        GATE_PICTURE,
        "segcast/cam/triggers/gate/line_cross",
        "segcast/cam/events/line_cross",
    ]
    (event,) = [json.loads(payload) for topic, payload, _ in received if topic == "segcast/cam/events/line_cross"]
    assert event["snapshot_topic"] == GATE_PICTURE
    assert len(json.dumps(event)) < 1000, "the event carries no picture of its own"


async def test_each_stream_zone_and_line_has_an_image_entity_reading_its_snapshot_topic(broker: Broker) -> None:
    async with running(snapshots_on(broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_packet(with_counts(1, COUNTS))
        configs = await retained_when(broker.port, STREAM_IMAGE, DOOR_IMAGE, GATE_IMAGE)
    stream, door, gate = (json.loads(configs[topic]) for topic in (STREAM_IMAGE, DOOR_IMAGE, GATE_IMAGE))
    assert (stream["image_topic"], door["image_topic"], gate["image_topic"]) == (
        STREAM_PICTURE,
        DOOR_PICTURE,
        GATE_PICTURE,
    )
    assert {config["content_type"] for config in (stream, door, gate)} == {"image/jpeg"}
    assert (stream["name"], door["name"], gate["name"]) == ("latest event", "door latest event", "gate latest crossing")
    assert (stream["unique_id"], door["unique_id"]) == ("segcast_cam_snapshot", "segcast_cam_zones_door_snapshot")
    assert door["device"]["identifiers"] == ["segcast_cam"], "under the camera's device"
    assert door["availability"] == [{"topic": "segcast/status"}, {"topic": "segcast/cam/availability"}]


async def test_a_deleted_zone_takes_its_image_entity_and_its_picture_with_it(broker: Broker) -> None:
    async with running(snapshots_on(broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(frame_with(1, [entry()], COUNTS))
        await retained_when(broker.port, DOOR_PICTURE, DOOR_IMAGE, STREAM_PICTURE)
        outputs.on_packet(with_counts(2, {"lines": COUNTS["lines"]}))  # the door zone deleted

        async def door_gone() -> dict[str, bytes] | None:
            left = await retained_messages(broker.port, "segcast/cam/#", "homeassistant/image/#")
            return left if DOOR_PICTURE not in left and DOOR_IMAGE not in left else None

        left = await eventually(door_gone, what="the deleted zone's picture and image entity cleared")
    assert {STREAM_PICTURE, STREAM_IMAGE, GATE_IMAGE} <= left.keys(), "the stream's and the line's stay"


async def test_a_removed_stream_takes_its_pictures_and_image_entities_with_it(broker: Broker) -> None:
    async with running(snapshots_on(broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(frame_with(1, [entry()], COUNTS))
        await retained_when(broker.port, DOOR_PICTURE, STREAM_PICTURE, STREAM_IMAGE)
        outputs.on_stream_removed("cam")

        async def all_gone() -> bool:
            return not await retained_messages(broker.port, "segcast/cam/#", "homeassistant/image/#")

        await eventually(all_gone, what="every retained picture and image entity of the removed stream cleared")


async def test_pictures_and_image_entities_a_run_before_left_are_cleared_once_snapshots_are_turned_off(
    broker: Broker,
) -> None:
    async with running(snapshots_on(broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(frame_with(1, [entry()], COUNTS))
        await retained_when(broker.port, DOOR_PICTURE, STREAM_PICTURE, DOOR_IMAGE, STREAM_IMAGE)
    async with running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(with_counts(2, COUNTS))

        async def all_gone() -> bool:
            left = await retained_messages(broker.port, "segcast/cam/+/snapshot", "segcast/cam/+/+/snapshot")
            return not left and not await retained_messages(broker.port, "homeassistant/image/#")

        await eventually(all_gone, what="the pictures and image entities of the run before cleared")


async def test_without_snapshots_no_picture_and_no_image_entity_is_published(broker: Broker) -> None:
    """Off unless asked for: retained pictures of people are readable by every account the broker lets
    subscribe, where the history's file is its owner's alone."""
    assert MqttSettings("b").snapshots is False
    async with (
        listening(broker.port) as received,
        running(MqttSettings("127.0.0.1", broker.port)) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)
        outputs.on_packet(frame_with(1, [entry()], COUNTS))

        async def event_arrived() -> bool:
            return any(topic == "segcast/cam/events/zone_enter" for topic, _, _ in received)

        await eventually(event_arrived, what="the zone entry's event")
    assert not [topic for topic, _, _ in received if topic.endswith("/snapshot") or "/image/" in topic]
    (event,) = [json.loads(payload) for topic, payload, _ in received if topic == "segcast/cam/events/zone_enter"]
    assert "snapshot_topic" not in event


async def test_pictures_are_encoded_off_the_event_loop(broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    encoded_on: list[threading.Thread] = []
    encode = snapshot.snapshot_jpeg

    def recording(picture: snapshot.Picture) -> bytes:
        encoded_on.append(threading.current_thread())
        return encode(picture)

    monkeypatch.setattr(snapshot, "snapshot_jpeg", recording)
    async with running(snapshots_on(broker.port)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_packet(frame_with(1, [entry()], COUNTS))
        await retained_when(broker.port, DOOR_PICTURE)
    assert encoded_on, "the picture was encoded"
    assert threading.main_thread() not in encoded_on, "never on the thread the event loop runs on"


async def test_past_encoding_max_pictures_waiting_an_event_goes_without_its_picture(
    broker: Broker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The pictures waiting for the thread are bounded: a crowd entering at once costs pictures, not memory."""
    release, started = threading.Event(), threading.Event()
    encode = snapshot.snapshot_jpeg

    def held(picture: snapshot.Picture) -> bytes:
        started.set()
        release.wait(30)
        return encode(picture)

    monkeypatch.setattr(snapshot, "snapshot_jpeg", held)
    monkeypatch.setattr("server.events.mqtt.snapshots.ENCODING_MAX", 1)
    async with (
        listening(broker.port, "segcast/cam/events/#") as received,
        running(snapshots_on(broker.port)) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)
        outputs.on_packet(frame_with(1, [entry()], COUNTS))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)
        outputs.on_packet(frame_with(2, [entry()], COUNTS))  # one picture waits already
        release.set()

        async def both_arrived() -> bool:
            return len(received) == 2

        await eventually(both_arrived, what="both entries' events")
    first, second = (json.loads(payload) for _, payload, _ in received)
    assert first["snapshot_topic"] == DOOR_PICTURE and "snapshot_topic" not in second
    (said,) = [r.getMessage() for r in caplog.records if "without their snapshot" in r.getMessage()]
    assert said.startswith("[cam] ") and "the encoder is behind" in said


def test_a_limit_no_recognisable_picture_fits_in_gives_no_picture() -> None:
    picture = snapshot.Picture(noise())
    assert snapshot.snapshot_jpeg_within(picture, 100) is None
    assert snapshot.snapshot_jpeg_within(picture, 10**6) == snapshot.snapshot_jpeg(picture), "as the history's"


async def test_a_picture_over_max_snapshot_kb_is_scaled_down_until_it_fits(broker: Broker) -> None:
    packet = frame_with(1, [entry()], COUNTS, image=noise())
    full = snapshot.picture_of(entry(), packet.result)
    assert len(snapshot.snapshot_jpeg(full)) > 8 * 1024, "the test's picture is over the limit as it is"
    async with running(snapshots_on(broker.port, max_snapshot_kb=8)) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_packet(packet)
        jpeg = (await retained_when(broker.port, DOOR_PICTURE))[DOOR_PICTURE]
    assert len(jpeg) <= 8 * 1024
    height, width = decoded(jpeg).shape[:2]
    assert (height, width) < full.pixels.shape[:2] and width >= 8, "smaller, still a picture"


async def test_a_picture_the_broker_will_not_take_is_given_up_and_its_event_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """mosquitto ends the connection for a message over its ``max_packet_size``: the picture is to blame,
    not the event after it, which is delivered without it."""
    broker = Broker(tmp_path)
    broker.config.write_text(broker.config.read_text() + f"max_packet_size {MAX_PACKET_BYTES}\n")
    broker.start()
    try:
        async with (
            listening(broker.port, "segcast/cam/events/#") as received,
            running(snapshots_on(broker.port, discovery=False)) as (outputs, sink),
        ):
            await state_is(sink, SinkState.OK)
            outputs.on_packet(frame_with(1, [entry()], COUNTS, image=noise()))

            async def delivered() -> bool:
                return bool(received)

            await eventually(delivered, what="the event, without its picture")
            health = sink.health()
    finally:
        broker.stop()
    assert (health.delivered, health.failed) == (1, 0)
    (event,) = [json.loads(payload) for _, payload, _ in received]
    assert "snapshot_topic" not in event, "it names no picture it went without"
    (given_up,) = [r.getMessage() for r in caplog.records if "gave up" in r.getMessage()]
    said = re.search(r"the snapshot of (\d+) bytes to segcast/cam/", given_up)
    assert said is not None and int(said[1]) > MAX_PACKET_BYTES, given_up
    assert "max_snapshot_kb" in given_up, "it names the setting that fixes it"


async def test_queued_pictures_keep_no_frame_alive_but_the_one_the_historys_rules_keep() -> None:
    """A picture is a copy of the object's box, as the history's are: of the frames its events were on, only
    the stream's latest stays alive (`server.events.snapshot.LastSeen` keeps it until the next), whether the
    picture waits to be encoded or its JPEG for the broker."""
    packets = [frame_with(seq, [entry()], COUNTS) for seq in range(5)]
    frames = [weakref.ref(packet.result.frame.image) for packet in packets]
    async with running(snapshots_on(free_port())) as (outputs, sink):  # no broker: the events stay queued
        assert sink.snapshots, "the MQTT output asks for the events' pictures"
        for packet in packets:
            outputs.on_packet(packet)
        del packets, packet
        gc.collect()
        assert [number for number, frame in enumerate(frames) if frame() is not None] == [4]
        assert sink.health().queued == 5


def test_snapshots_and_their_size_are_read_checked_and_kept_when_the_api_saves_the_file(tmp_path: Path) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text('[events.mqtt]\nhost = "b"\n')
    settings = load_config(path).events.mqtt
    assert settings is not None and (settings.snapshots, settings.max_snapshot_kb) == (False, 100)
    path.write_text('[events.mqtt]\nhost = "b"\nsnapshots = true\nmax_snapshot_kb = 64\n')
    saved = load_config(path)
    assert saved.events.mqtt is not None and (saved.events.mqtt.snapshots, saved.events.mqtt.max_snapshot_kb) == (
        True,
        64,
    )
    write_config(saved, [StreamConfig("cam", "scene:?seed=1")])
    assert load_config(path).events == saved.events
    path.write_text('[events.mqtt]\nhost = "b"\nmax_snapshot_kb = 0\n')
    with pytest.raises(ConfigError, match=r"events\.mqtt\.max_snapshot_kb: expected a number from 1"):
        load_config(path)
    path.write_text('[events.mqtt]\nhost = "b"\nsnapshots = "yes"\n')
    with pytest.raises(ConfigError, match=r"events\.mqtt\.snapshots: expected true or false"):
        load_config(path)


@pytest.fixture(autouse=True)
def _mqtt_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="server.events.mqtt")
