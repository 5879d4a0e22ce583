"""MQTT against brokers that end connections or refuse: a message the broker will not take, a
subscription it ends the connection for or refuses, a connection it ends at the first message."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import re
from pathlib import Path
from typing import Any, cast

import aiomqtt
import pytest

from server.events import sink as sinks
from server.events.config import MqttSettings
from server.events.mqtt import connection as mqtt_module
from server.events.mqtt.outbox import RESEND_CONNECTIONS_MAX
from server.events.mqtt.readback import READS_CUT_LIMIT
from server.events.sink import SinkState
from tests.support.event_packets import track_start, with_counts, with_events
from tests.support.fake_mqtt_broker import FakeBroker
from tests.support.mosquitto import Broker
from tests.support.polling import eventually
from tests.test_events_mqtt import running, state_is

#: mosquitto's ``max_packet_size`` in the test below: an event with a longer note is more than it takes.
MAX_PACKET_BYTES = 2048
#: The client's timeout for any answer where the test is that nothing waits for it: longer than any test.
NEVER_S = 3600.0


async def test_an_event_the_broker_ends_every_connection_for_is_given_up_and_the_next_ones_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, it was sent again first on every connection, for ever, twice a second, and no event after it
    was ever delivered (AWS IoT does the same for a topic its policy forbids)."""
    broker = Broker(tmp_path)
    broker.config.write_text(broker.config.read_text() + f"max_packet_size {MAX_PACKET_BYTES}\n")
    broker.start()
    big = {"type": "line_cross", "v": 1, "stream": "cam", "id": 1, "note": "x" * MAX_PACKET_BYTES}
    try:
        async with running(MqttSettings("127.0.0.1", broker.port, discovery=False)) as (outputs, sink):
            await state_is(sink, SinkState.OK)
            outputs.on_packet(with_events(1, [big]))
            for seq in range(2, 6):
                outputs.on_packet(track_start(seq, track_id=seq))

            async def settled() -> bool:
                health = sink.health()
                return health.delivered + health.failed == 5

            await eventually(settled, what="every event delivered or given up")
            health = sink.health()
    finally:
        broker.stop()
    assert (health.delivered, health.failed, health.queued) == (4, 1, 0)
    assert health.state is SinkState.OK, "the events after it went through"
    (given_up,) = [r.getMessage() for r in caplog.records if "gave up" in r.getMessage()]
    said = re.search(r"a line_cross event of (\d+) bytes to segcast/cam/events/line_cross", given_up)
    assert said is not None and int(said[1]) > MAX_PACKET_BYTES, given_up
    connections = (tmp_path / "mosquitto.log").read_text().count(f"as {sink.client_id}")
    # The first connection (with the events after it on their way too), then it alone until given up, then one.
    assert connections <= RESEND_CONNECTIONS_MAX + 1


async def test_a_connection_lost_before_segcast_says_online_is_noticed_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broker that ends the connection as availabilities are read back (before `_serve` watches it): the
    client waited out its whole timeout (10 s) for the SUBACK, and asyncio logged aiomqtt's error as
    never retrieved."""
    caplog.set_level(logging.WARNING)
    async with (
        FakeBroker(on_subscribe="close") as broker,
        running(MqttSettings("127.0.0.1", broker.port), timeout_s=NEVER_S) as (_, sink),
    ):
        await state_is(sink, SinkState.OK)  # after two connections cut, it no longer subscribes
        assert broker.subscriptions == READS_CUT_LIMIT
    gc.collect()  # an error no one took is logged as its future is collected
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_a_refused_subscription_is_said_once_and_not_asked_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with (
        FakeBroker(on_subscribe="refuse") as broker,
        running(MqttSettings("127.0.0.1", broker.port)) as (_, sink),
    ):
        await state_is(sink, SinkState.OK)
        broker.drop()

        async def online_again() -> bool:
            return broker.published.count("segcast/status") == 2 and sink.health().state is SinkState.OK

        await eventually(online_again, what="segcast online again on a new connection")
        assert broker.subscriptions == 1
    (refusal,) = [r.getMessage() for r in caplog.records if "not asked again" in r.getMessage()]
    assert "refused the subscription" in refusal


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The attempt number of each wait the sink takes before connecting again, each wait made none."""
    attempts: list[int] = []

    def backoff_s(attempt: int, first_s: float, max_s: float) -> float:
        attempts.append(attempt)
        return 0.0

    monkeypatch.setattr(mqtt_module, "backoff_s", backoff_s)
    return attempts


async def test_a_broker_that_ends_each_connection_at_its_first_message_is_backed_off_from(
    waits: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    """Connecting reset the backoff: such a broker was connected to twice a second, for ever, each time
    saying "working" and the error again in the log."""
    caplog.set_level(logging.INFO)
    async with (
        FakeBroker(on_subscribe="close", publishes_end_it=True) as broker,
        running(MqttSettings("127.0.0.1", broker.port)) as (_, sink),
    ):

        async def several() -> bool:
            return len(waits) >= READS_CUT_LIMIT + 3

        await eventually(several, what="several connections")
        health = sink.health()
    assert waits[: READS_CUT_LIMIT + 3] == list(range(READS_CUT_LIMIT + 3)), "each wait longer than the last"
    assert health.state is SinkState.FAILING and health.delivered == 0
    assert not [r for r in caplog.records if r.getMessage().endswith(": working")]


async def test_a_broker_that_ends_each_connection_for_a_streams_counts_is_backed_off_from(
    waits: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    """Confirming ``online`` reset the backoff: a broker that ends the connection for a stream's counts
    (a topic outside the account's policy), sent again on every connection, was connected to twice a
    second for ever, each time saying "working" and the error again in the log."""
    caplog.set_level(logging.INFO)
    async with (
        FakeBroker(on_subscribe="refuse", ending_topics="/counts") as broker,
        running(MqttSettings("127.0.0.1", broker.port, discovery=False)) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)
        outputs.on_packet(with_counts(1, {"zone": 1}))

        async def several() -> bool:
            return len(waits) >= 4

        await eventually(several, what="several connections")
        health = sink.health()
    assert waits[:4] == [0, 1, 2, 3], "each wait longer than the last"
    assert health.state is SinkState.FAILING
    assert broker.published.count("segcast/cam/counts") >= 4
    assert not [r for r in caplog.records if r.getMessage().endswith(": working")]


@pytest.mark.usefixtures("waits")
async def test_an_event_on_its_way_again_when_segcast_stops_is_dropped_at_shutdown_not_given_up(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Given an event the broker ended two connections for, when segcast stops while the third has it on its
    way, then it is counted among the events not delivered before shutdown, not as one the broker refuses:
    the stop ended that connection, not the broker, and no "gave up" error blames the event."""
    monkeypatch.setattr(sinks, "DRAIN_TIMEOUT_S", 0.1)  # the third time the event is never confirmed
    publish = aiomqtt.Client.publish
    sends: list[str] = []
    on_its_way_again = asyncio.Event()

    async def unconfirmed_the_last_time(client: aiomqtt.Client, topic: str, *args: Any, **kwargs: Any) -> None:
        if "/events/" in topic:
            sends.append(topic)
            if len(sends) == RESEND_CONNECTIONS_MAX:
                on_its_way_again.set()
                await asyncio.Event().wait()
        await publish(client, topic, *args, **kwargs)

    monkeypatch.setattr(aiomqtt.Client, "publish", unconfirmed_the_last_time)
    async with (
        FakeBroker(on_subscribe="refuse", ending_topics="/events/") as broker,
        running(MqttSettings("127.0.0.1", broker.port, discovery=False)) as (outputs, sink),
    ):
        outputs.on_packet(track_start(1))
        await on_its_way_again.wait()
        assert broker.published.count("segcast/cam/events/track") == RESEND_CONNECTIONS_MAX - 1
    health = sink.health()
    assert (health.delivered, health.failed, health.dropped, health.queued) == (0, 0, 1, 0)
    assert not [r for r in caplog.records if "gave up" in r.getMessage()]


async def test_an_aiomqtt_without_the_private_sign_of_a_lost_connection_is_waited_for_and_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """aiomqtt has no public sign of a lost connection, and its private one may go in any release (the pin
    has no upper bound): saying online raised AttributeError on every connection, for ever."""
    monkeypatch.setattr(mqtt_module, "_no_sign_of_loss", functools.cache(mqtt_module._no_sign_of_loss.__wrapped__))
    client = cast(aiomqtt.Client, object())  # no ``_disconnected``

    async def say_online() -> str:
        return "online"

    assert [await mqtt_module._unless_lost(client, say_online()) for _ in range(2)] == ["online", "online"]
    said = [r for r in caplog.records if "no Client._disconnected" in r.getMessage()]
    assert len(said) == 1, "said once"
