"""Which segcast a topic prefix's status speaks for, so that a second one on the same prefix does not take
the first's live streams for a crashed run's leftovers.

Every connection says, retained on ``P/server`` just before ``P/status`` says online, which segcast it
is: its client id (`ServerClaim`). Reading back the availabilities a run before left online
(`server.events.mqtt.connection`'s ``_read_stale``), a segcast reads these two as well: ``P/status``
online under another client id, or under none (a release before this one), is another segcast live
on this prefix now. Its streams the broker says online are its own and current, so none is said
offline, and a warning names ``topic_prefix``: two segcasts on one prefix also share ``P/status``, so
either one stopping makes the other's sensors unavailable too.

A dead segcast holds its prefix no more: its will says ``P/status`` offline, at once where it was
killed, within the broker's keepalive (90 s) where its power was cut. Started before that, a
segcast corrects nothing of that run (it cannot tell the two apart), which leaves its streams as
they were, rather than saying a live one offline.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import aiomqtt

from server.events.mqtt.topics import MqttTopics


@dataclass(frozen=True, slots=True)
class ServerClaim:
    """The segcast a prefix's status is of: its client id (the same on all its connections), and its host
    for a person reading the log; both empty for one that does not say (a release before this one)."""

    client_id: str
    host: str

    @classmethod
    def of_this_host(cls, client_id: str) -> ServerClaim:
        return cls(client_id, socket.gethostname())

    @property
    def payload(self) -> str:
        return json.dumps({"client_id": self.client_id, "host": self.host})

    def __str__(self) -> str:
        return f"client id {self.client_id} on {self.host}" if self.client_id else "an earlier release"


def another_server(retained: Iterable[aiomqtt.Message], topics: MqttTopics, ours: ServerClaim) -> ServerClaim | None:
    """The other segcast live under ``topics``' prefix, from the retained ``P/status`` and ``P/server`` among
    ``retained``; None where the status is not online (no segcast is live on it) or is ``ours``."""
    status: bytes | None = None
    claim = ServerClaim("", "")
    for message in retained:
        if str(message.topic) == topics.status and isinstance(message.payload, bytes):
            status = message.payload
        elif str(message.topic) == topics.server and isinstance(message.payload, bytes):
            claim = _claim(message.payload) or claim
    if status != b"online" or claim.client_id == ours.client_id:
        return None
    return claim


def _claim(payload: bytes) -> ServerClaim | None:
    try:
        said = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(said, dict) or not isinstance(client_id := said.get("client_id"), str):
        return None
    return ServerClaim(client_id, str(said.get("host", "")))
