"""The topics segcast publishes MQTT under, and the Home Assistant discovery configs that point at them.

The layout is written down in `server.events.mqtt.connection` and docs/protocol.md; here is where it is made,
so the sink deals in messages and this module in names. ``topic_prefix`` makes the topics of one
node, ``discovery_id`` the ids Home Assistant knows a camera by, shared by a fleet's nodes.

A stream's counts name its zones and lines (``zones_<zone>_objects``, ``lines_<line>_in``), and each
gives Home Assistant more than its count's sensor: a zone an occupancy binary sensor read from the
same counts, and device triggers for its entries, exits and loitering; a line device triggers for its
crossings each way. A device trigger fires on a message on its own topic (and, where its config names
one, with that payload) and nothing else, so each event of those kinds is published once more, on its
trigger's topic (`trigger_of`), never retained. With ``snapshots``, the stream and each zone and line also
have an image entity, reading the picture of their latest event from their snapshot topic
(`server.events.mqtt.snapshots`).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from server.events.config import MqttSettings
from server.events.counts import TRACKS, count_label, is_running_total
from server.version import INSTALLED_VERSION

#: What a stream id or a count's name may keep of itself in a topic level or an id; the rest becomes ``_``.
UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
#: Home Assistant's device model of a stream (a device is one camera, not one segcast).
DEVICE_MODEL = "video stream"
#: The counts that name a zone (its objects now) and a line (its crossings each way); `server.events.counts`.
ZONE_COUNT = re.compile(r"^zones_(.+)_objects\Z")
LINE_COUNT = re.compile(r"^lines_(.+)_(in|out)\Z")
#: The event types a zone's device triggers fire on, each with the last word of its trigger's object id.
ZONE_TRIGGERS = {"zone_enter": "enter", "zone_exit": "exit", "loiter": "loiter"}
LINE_CROSS = "line_cross"
#: The Home Assistant platforms segcast announces for a stream's device, each under its discovery topics.
COMPONENTS = ("sensor", "binary_sensor", "device_automation", "image")
#: What Home Assistant's image entities are told the snapshots are.
SNAPSHOT_CONTENT_TYPE = "image/jpeg"

#: Discovery config topics, each with what makes its payload when it is announced.
Configs = dict[str, Callable[[], dict[str, object]]]


@dataclass(frozen=True, slots=True)
class DeviceTrigger:
    """One Home Assistant device trigger of a zone or line: the event type it fires on, and where.

    Home Assistant tells a device's triggers apart by ``type`` and ``subtype`` (the event type, and the
    zone, or the line with the direction) and shows an unknown pair as "<subtype> <type>".
    """

    kind: str  # the event's type: ``zone_enter``, ``zone_exit``, ``loiter``, ``line_cross``
    shape: str  # the zone's or the line's name
    direction: str | None = None  # a crossing's: ``in`` or ``out``

    @property
    def object_id(self) -> str:
        """Its discovery topic's last level but one: ``zones_door_enter``, ``lines_gate_in``."""
        if self.direction is not None:
            return UNSAFE.sub("_", f"lines_{self.shape}_{self.direction}")
        return UNSAFE.sub("_", f"zones_{self.shape}_{ZONE_TRIGGERS[self.kind]}")

    @property
    def shapes(self) -> str:
        """The topic level of its kind of shape: ``zones`` or ``lines``."""
        return "zones" if self.direction is None else "lines"

    @property
    def subtype(self) -> str:
        return self.shape if self.direction is None else f"{self.shape} {self.direction}"

    @property
    def payload(self) -> str:
        """What its topic carries when it fires: a line's two triggers share one topic, told apart by it."""
        return self.direction or self.kind


def trigger_of(event: Mapping[str, object]) -> DeviceTrigger | None:
    """The device trigger ``event`` (an event's JSON) fires; None for an event no trigger is for (a track's)."""
    kind = event.get("type")
    if isinstance(kind, str) and kind in ZONE_TRIGGERS and isinstance(zone := event.get("zone"), str):
        return DeviceTrigger(kind, zone)
    direction = event.get("direction")
    if kind == LINE_CROSS and isinstance(line := event.get("line"), str) and direction in ("in", "out"):
        return DeviceTrigger(LINE_CROSS, line, str(direction))
    return None


def _triggers_of(name: str) -> tuple[DeviceTrigger, ...]:
    """The device triggers count ``name`` stands for: a zone's three, one of a line's two; none of the rest."""
    if zone := ZONE_COUNT.match(name):
        return tuple(DeviceTrigger(kind, zone[1]) for kind in ZONE_TRIGGERS)
    if line := LINE_COUNT.match(name):
        return (DeviceTrigger(LINE_CROSS, line[1], line[2]),)
    return ()


class MqttTopics:
    """The topic names and discovery configs of one node's settings."""

    def __init__(self, settings: MqttSettings) -> None:
        self._prefix = settings.topic_prefix
        self._discovery_prefix = settings.discovery_prefix
        self._discovery_id = settings.effective_discovery_id
        self._snapshots = settings.snapshots
        self.status = f"{self._prefix}/status"
        #: Which segcast says ``status`` (`server.events.mqtt.claim`).
        self.server = f"{self._prefix}/server"

    def event(self, stream_id: str, kind: str) -> str:
        return f"{self._prefix}/{stream_id}/events/{UNSAFE.sub('_', kind) or 'event'}"

    def counts(self, stream_id: str) -> str:
        return f"{self._prefix}/{stream_id}/counts"

    def availability(self, stream_id: str) -> str:
        return f"{self._prefix}/{stream_id}/availability"

    def stream_of_availability(self, topic: str) -> str | None:
        """The stream whose availability ``topic`` is, under this node's prefix; None for any other topic."""
        head, tail = f"{self._prefix}/", "/availability"
        stream_id = topic.removeprefix(head).removesuffix(tail)
        if topic.startswith(head) and topic.endswith(tail) and stream_id and "/" not in stream_id:
            return stream_id
        return None

    def snapshot(self, stream_id: str) -> str:
        """The topic of the picture of ``stream_id``'s latest zone or line event."""
        return f"{self._prefix}/{stream_id}/snapshot"

    def shape_snapshot(self, stream_id: str, trigger: DeviceTrigger) -> str:
        """The topic of the picture of the latest event of the zone or line ``trigger`` is of."""
        return f"{self._prefix}/{stream_id}/{trigger.shapes}/{UNSAFE.sub('_', trigger.shape)}/snapshot"

    def snapshots(self, stream_id: str, names: Iterable[str]) -> set[str]:
        """The snapshot topics of ``stream_id`` with counts ``names``: the stream's and one per zone and line; none
        without ``snapshots``."""
        if not self._snapshots:
            return set()
        return {self.snapshot(stream_id), *(self.shape_snapshot(stream_id, t) for n in names for t in _triggers_of(n))}

    def trigger(self, stream_id: str, trigger: DeviceTrigger) -> str:
        """The topic ``trigger`` of ``stream_id`` fires on: one per zone and event type, one per line."""
        shape, kind = UNSAFE.sub("_", trigger.shape), UNSAFE.sub("_", trigger.kind)
        return f"{self._prefix}/{stream_id}/triggers/{shape}/{kind}"

    def _device_id(self, stream_id: str) -> str:
        return f"{self._discovery_id}_{stream_id}"

    def discovery(self, stream_id: str, name: str, component: str = "sensor") -> str:
        """The discovery config topic of ``component``'s entity (or trigger) ``name`` of ``stream_id``."""
        return f"{self._discovery_prefix}/{component}/{self._device_id(stream_id)}/{UNSAFE.sub('_', name)}/config"

    def discovery_configs(self, stream_id: str, names: Iterable[str]) -> Configs:
        """Every discovery config of counts ``names`` of ``stream_id``: a sensor each, and a zone's occupancy
        binary sensor and device triggers, a line's device triggers; with ``snapshots``, the image entity of
        the stream (with ``tracks``, the count every stream has) and of each zone and line."""
        configs: Configs = {}
        for name in names:
            configs[self.discovery(stream_id, name)] = functools.partial(self.discovery_config, stream_id, name)
            if zone := ZONE_COUNT.match(name):
                topic = self.discovery(stream_id, f"zones_{zone[1]}_occupancy", "binary_sensor")
                configs[topic] = functools.partial(self.occupancy_config, stream_id, zone[1], name)
            for trigger in _triggers_of(name):
                topic = self.discovery(stream_id, trigger.object_id, "device_automation")
                configs[topic] = functools.partial(self.trigger_config, stream_id, trigger)
            if self._snapshots:
                configs.update(self._image_configs(stream_id, name))
        return configs

    def _image_configs(self, stream_id: str, name: str) -> Configs:
        """The image entity count ``name`` brings: the stream's with ``tracks``, a zone's or line's with its counts."""
        if name == TRACKS:
            stream_image = functools.partial(self.stream_image_config, stream_id)
            return {self.discovery(stream_id, "snapshot", "image"): stream_image}
        configs: Configs = {}
        for trigger in _triggers_of(name):  # a zone's three are of one zone: one image
            topic = self.discovery(stream_id, f"{trigger.shapes}_{trigger.shape}_snapshot", "image")
            configs[topic] = functools.partial(self.shape_image_config, stream_id, trigger)
        return configs

    def device_discovery(self, stream_id: str) -> tuple[str, ...]:
        """The filters of every discovery config topic of ``stream_id``'s device, one per platform, and of no
        other device's; none for a stream id a filter cannot hold as it is (a wildcard in it: a stream's id
        from the config never has one)."""
        if UNSAFE.search(stream_id):
            return ()
        device_id = self._device_id(stream_id)
        return tuple(f"{self._discovery_prefix}/{component}/{device_id}/+/config" for component in COMPONENTS)

    def stream_of_discovery(self, topic: str) -> str | None:
        """The stream whose discovery config ``topic`` is, under these ids; None for any other topic."""
        for component in COMPONENTS:
            head, tail = f"{self._discovery_prefix}/{component}/{self._discovery_id}_", "/config"
            if topic.startswith(head) and topic.endswith(tail):
                levels = topic.removeprefix(head).removesuffix(tail).split("/")
                return levels[0] if len(levels) == 2 and all(levels) else None
        return None

    def published_here(self, stream_id: str, topic: str, payload: bytes) -> bool:
        """Whether ``payload``, retained on ``topic`` (a discovery config of ``stream_id``'s device), is one
        this node publishes: the ids of that device (and of the entity), and this node's topics.

        Another node of a fleet publishes under the same ids (`discovery_config`) but points at its own
        topics: its configs are its own to clear, and the camera may be on its way to it.
        """
        try:
            config = json.loads(payload)
        except ValueError:
            return False
        if not isinstance(config, dict) or not isinstance(device := config.get("device"), dict):
            return False
        device_id = self._device_id(stream_id)
        if device.get("identifiers") != [device_id]:
            return False
        if topic.startswith(f"{self._discovery_prefix}/device_automation/"):
            trigger_topic = config.get("topic")
            return isinstance(trigger_topic, str) and trigger_topic.startswith(f"{self._prefix}/{stream_id}/triggers/")
        if topic.startswith(f"{self._discovery_prefix}/image/"):
            return self._snapshot_of(stream_id, config) is not None
        return (
            config.get("state_topic") == self.counts(stream_id)
            and config.get("unique_id") == f"{device_id}_{topic.split('/')[-2]}"
        )

    def snapshot_of_config(self, stream_id: str, topic: str, payload: bytes) -> str | None:
        """The snapshot topic of ``stream_id`` that ``payload``, an image entity's config retained on ``topic``,
        reads; None for any other config. Its picture is cleared with the config: a picture is big."""
        if not topic.startswith(f"{self._discovery_prefix}/image/"):
            return None
        try:
            config = json.loads(payload)
        except ValueError:
            return None
        return self._snapshot_of(stream_id, config) if isinstance(config, dict) else None

    def _snapshot_of(self, stream_id: str, config: dict[str, object]) -> str | None:
        """The snapshot topic of this node's and ``stream_id``'s that image config ``config`` reads; None if it
        reads another's."""
        image_topic = config.get("image_topic")
        if isinstance(image_topic, str) and image_topic.startswith(f"{self._prefix}/{stream_id}/"):
            return image_topic if image_topic.endswith("/snapshot") else None
        return None

    def discovery_config(self, stream_id: str, name: str) -> dict[str, object]:
        """Home Assistant's MQTT discovery payload for the sensor of count ``name`` of ``stream_id``.

        Available only while both segcast and the stream are online: a count of a camera that is
        down is the last one seen, and must not pass for the scene now. The ids come from
        ``discovery_id``, shared by a fleet's nodes, the topics from this node's ``topic_prefix``: the
        node serving the camera now is the one Home Assistant listens to.
        """
        device_id = self._device_id(stream_id)
        return {
            "name": count_label(name),
            "unique_id": f"{device_id}_{UNSAFE.sub('_', name)}",
            "state_topic": self.counts(stream_id),
            "value_template": f"{{{{ value_json[{json.dumps(name)}] }}}}",
            "state_class": "total_increasing" if is_running_total(name) else "measurement",
            **self._availability(stream_id),
            "device": self._device(stream_id),
        }

    def occupancy_config(self, stream_id: str, zone: str, count: str) -> dict[str, object]:
        """Home Assistant's MQTT discovery payload for the binary sensor that is on while ``zone`` of
        ``stream_id`` holds objects: read from the zone's ``count`` in the counts, no topic of its own.

        binary_sensor.mqtt takes its state from what ``value_template`` renders: ``ON`` or ``OFF``
        (its default ``payload_on`` and ``payload_off``).
        """
        objects = f"value_json[{json.dumps(count)}]"
        return {
            "name": f"{zone} occupancy",
            "unique_id": f"{self._device_id(stream_id)}_{UNSAFE.sub('_', f'zones_{zone}_occupancy')}",
            "device_class": "occupancy",
            "state_topic": self.counts(stream_id),
            "value_template": f"{{{{ 'ON' if {objects} > 0 else 'OFF' }}}}",
            **self._availability(stream_id),
            "device": self._device(stream_id),
        }

    def trigger_config(self, stream_id: str, trigger: DeviceTrigger) -> dict[str, object]:
        """Home Assistant's MQTT discovery payload for device trigger ``trigger`` of ``stream_id``.

        device_trigger.mqtt requires ``automation_type`` (``trigger``), ``topic``, ``type``, ``subtype``
        and the device; it matches ``payload``, where given, exactly. QoS 1: a trigger the broker
        dropped on its way to Home Assistant would be an automation that never ran.
        """
        config: dict[str, object] = {
            "automation_type": "trigger",
            "topic": self.trigger(stream_id, trigger),
            "type": trigger.kind,
            "subtype": trigger.subtype,
            "qos": 1,
            "device": self._device(stream_id),
        }
        if trigger.direction is not None:
            config["payload"] = trigger.payload
        return config

    def stream_image_config(self, stream_id: str) -> dict[str, object]:
        """Home Assistant's MQTT discovery payload for the image entity of ``stream_id``'s latest zone or line event."""
        return self._image_config(stream_id, "latest event", "snapshot", self.snapshot(stream_id))

    def shape_image_config(self, stream_id: str, trigger: DeviceTrigger) -> dict[str, object]:
        """Home Assistant's MQTT discovery payload for the image entity of the latest event of the zone or line
        ``trigger`` is of: an entry, exit or loitering in the zone, a crossing of the line either way."""
        name = f"{trigger.shape} latest {'crossing' if trigger.kind == LINE_CROSS else 'event'}"
        object_id = f"{trigger.shapes}_{trigger.shape}_snapshot"
        return self._image_config(stream_id, name, object_id, self.shape_snapshot(stream_id, trigger))

    def _image_config(self, stream_id: str, name: str, object_id: str, image_topic: str) -> dict[str, object]:
        """image.mqtt takes the raw bytes on ``image_topic`` as the picture (no base64: its ``image_encoding`` is
        unset), of ``content_type``. Available as the stream's sensors are (`discovery_config`)."""
        return {
            "name": name,
            "unique_id": f"{self._device_id(stream_id)}_{UNSAFE.sub('_', object_id)}",
            "image_topic": image_topic,
            "content_type": SNAPSHOT_CONTENT_TYPE,
            **self._availability(stream_id),
            "device": self._device(stream_id),
        }

    def _availability(self, stream_id: str) -> dict[str, object]:
        """Available only while both segcast and the stream are online (`discovery_config`)."""
        return {
            "availability": [{"topic": self.status}, {"topic": self.availability(stream_id)}],
            "availability_mode": "all",
        }

    def _device(self, stream_id: str) -> dict[str, object]:
        """The device of ``stream_id``: one per camera, whichever node of a fleet runs it; the version is
        the one of the node that announced it last."""
        device: dict[str, object] = {
            "identifiers": [self._device_id(stream_id)],
            "name": f"segcast {stream_id}",
            "manufacturer": "segcast",
            "model": DEVICE_MODEL,
        }
        if INSTALLED_VERSION is not None:
            device["sw_version"] = INSTALLED_VERSION
        return device
