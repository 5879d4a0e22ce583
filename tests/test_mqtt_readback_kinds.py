"""A broker that refuses one kind of read-back gives up that kind alone (`server.events.mqtt.readback`).

The discovery configs and the pictures of each stream were read back in one subscription, as one kind: a broker
for a user without Home Assistant refusing the ``homeassistant/...`` filters also stopped the clearing of the
pictures a run before left (of people), and the warning told that user a sensor stays in Home Assistant.
"""

from __future__ import annotations

import logging

import pytest

from server.events.config import MqttSettings
from server.events.sink import SinkState
from server.sources.base import StreamState
from tests.support import fake_mqtt_broker
from tests.support.polling import eventually
from tests.test_events_mqtt import running, state_is

#: How each kind's filters are told apart: a stream's configs' under the discovery prefix, its pictures' by name.
KINDS = {"configs": "homeassistant/", "pictures": "/snapshot"}


def of_kind(topic_filter: str, kind: str) -> bool:
    return topic_filter.startswith(KINDS[kind]) if kind == "configs" else topic_filter.endswith(KINDS[kind])


def kind_of(topic_filter: str) -> str:
    """The kind of read-back ``topic_filter`` is of: a stream's configs, its pictures, or the availabilities."""
    return next((kind for kind in KINDS if of_kind(topic_filter, kind)), "availabilities")


class RefusingOneKind(fake_mqtt_broker.FakeBroker):
    """Refuses each filter of one kind in a SUBACK (its failure code), and takes every other; notes every
    SUBSCRIBE's filters."""

    def __init__(self, refused: str) -> None:
        super().__init__(on_subscribe="refuse")
        self.refused = refused
        self.asked: list[list[str]] = []

    def _answer(self, kind: int, flags: int, body: bytes) -> bytes | None:
        if kind != fake_mqtt_broker.SUBSCRIBE:
            return super()._answer(kind, flags, body)
        self.subscriptions += 1
        filters: list[str] = []
        at = 2  # after the packet id: each filter's length, the filter, its QoS byte
        while at < len(body):
            length = int.from_bytes(body[at : at + 2], "big")
            filters.append(body[at + 2 : at + 2 + length].decode())
            at += 3 + length
        self.asked.append(filters)
        codes = bytes(fake_mqtt_broker.SUBACK_FAILURE if of_kind(f, self.refused) else 0 for f in filters)
        return bytes([0x90, 2 + len(codes)]) + body[:2] + codes

    def asked_for(self, stream_id: str, kind: str) -> bool:
        """Whether a filter of ``kind`` of ``stream_id``'s was subscribed to."""
        return any(of_kind(f, kind) and f"{stream_id}/" in f for filters in self.asked for f in filters)


@pytest.mark.parametrize(
    ("refused", "kept", "lost"),
    [
        ("configs", "pictures", "the discovery configs a run with discovery on left stay retained"),
        ("pictures", "configs", "an event picture a run before left"),
    ],
    ids=["configs-refused", "pictures-refused"],
)
async def test_a_broker_refusing_one_kind_of_read_back_gives_up_that_kind_alone(
    refused: str, kept: str, lost: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With discovery off: no image entity's config leads to the pictures, which are read back themselves."""
    async with (
        RefusingOneKind(refused) as broker,
        running(MqttSettings("127.0.0.1", broker.port, discovery=False)) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)

        async def both_asked(stream_id: str) -> bool:
            return broker.asked_for(stream_id, refused) and broker.asked_for(stream_id, kept)

        await eventually(lambda: both_asked("cam"), what="cam's configs and pictures asked for")
        assert all(len({kind_of(f) for f in filters}) == 1 for filters in broker.asked), "a subscription a kind"
        outputs.on_stream_state("cam2", StreamState.LIVE)  # after the refusal

        async def kept_asked() -> bool:
            return broker.asked_for("cam2", kept)

        await eventually(kept_asked, what=f"cam2's {kept} asked for")
    assert not broker.asked_for("cam2", refused), "the refused kind is not asked again"
    (warning,) = [r for r in caplog.records if "not asked again" in r.getMessage()]
    said = warning.getMessage()
    assert warning.levelno == logging.WARNING and lost in said and "stays in Home Assistant" not in said, said
