"""The topics segcast publishes MQTT under, and the Home Assistant discovery configs that point at them.

The layout is written down in `server.events.mqtt.connection` and docs/protocol.md; here is where it is made,
so the sink deals in messages and this module in names. ``topic_prefix`` makes the topics of one
node, ``discovery_id`` the ids Home Assistant knows a camera by, shared by a fleet's nodes.
"""

from __future__ import annotations

import json
import re
from importlib import metadata

from server.events.config import MqttSettings
from server.events.counts import count_label, is_running_total

#: What a stream id or a count's name may keep of itself in a topic level or an id; the rest becomes ``_``.
UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
#: Home Assistant's device model of a stream (a device is one camera, not one segcast).
DEVICE_MODEL = "video stream"


def _segcast_version() -> str | None:
    """segcast's version as installed, for the device page; None for a checkout never installed."""
    try:
        return metadata.version("segcast")
    except metadata.PackageNotFoundError:
        return None


SEGCAST_VERSION = _segcast_version()


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
        if SEGCAST_VERSION is not None:
            device["sw_version"] = SEGCAST_VERSION
        return device
