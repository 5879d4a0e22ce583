"""The topics segcast publishes MQTT under, and the Home Assistant discovery configs that point at them.

The layout is written down in `server.events.mqtt.connection` and docs/protocol.md; here is where it is made,
so the sink deals in messages and this module in names. ``topic_prefix`` makes the topics of one
node, ``discovery_id`` the ids Home Assistant knows a camera by, shared by a fleet's nodes.
"""

from __future__ import annotations

import json
import re

from server.events.config import MqttSettings
from server.events.counts import count_label, is_running_total
from server.version import INSTALLED_VERSION

#: What a stream id or a count's name may keep of itself in a topic level or an id; the rest becomes ``_``.
UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
#: Home Assistant's device model of a stream (a device is one camera, not one segcast).
DEVICE_MODEL = "video stream"


class MqttTopics:
    """The topic names and discovery configs of one node's settings."""

    def __init__(self, settings: MqttSettings) -> None:
        self._prefix = settings.topic_prefix
        self._discovery_prefix = settings.discovery_prefix
        self._discovery_id = settings.effective_discovery_id
        self.status = f"{self._prefix}/status"

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

    def _device_id(self, stream_id: str) -> str:
        return f"{self._discovery_id}_{stream_id}"

    def discovery(self, stream_id: str, name: str) -> str:
        """The discovery config topic of the sensor of count ``name`` of ``stream_id``."""
        return f"{self._discovery_prefix}/sensor/{self._device_id(stream_id)}/{UNSAFE.sub('_', name)}/config"

    def device_discovery(self, stream_id: str) -> str | None:
        """The filter of every discovery config topic of ``stream_id``'s device: its sensors, and no other
        device's; None for a stream id a filter cannot hold as it is (a wildcard in it: a stream's id
        from the config never has one)."""
        if UNSAFE.search(stream_id):
            return None
        return f"{self._discovery_prefix}/sensor/{self._device_id(stream_id)}/+/config"

    def stream_of_discovery(self, topic: str) -> str | None:
        """The stream whose sensor's discovery config ``topic`` is, under these ids; None for any other topic."""
        head, tail = f"{self._discovery_prefix}/sensor/{self._discovery_id}_", "/config"
        if not (topic.startswith(head) and topic.endswith(tail)):
            return None
        levels = topic.removeprefix(head).removesuffix(tail).split("/")
        return levels[0] if len(levels) == 2 and all(levels) else None

    def published_here(self, stream_id: str, topic: str, payload: bytes) -> bool:
        """Whether ``payload``, retained on ``topic`` (a sensor config of ``stream_id``'s device), is one this
        node publishes: the ids of that device and sensor, and this node's counts topic.

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
        return (
            config.get("state_topic") == self.counts(stream_id)
            and config.get("unique_id") == f"{device_id}_{topic.split('/')[-2]}"
            and device.get("identifiers") == [device_id]
        )

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
            "availability": [{"topic": self.status}, {"topic": self.availability(stream_id)}],
            "availability_mode": "all",
            "device": self._device(stream_id),
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
