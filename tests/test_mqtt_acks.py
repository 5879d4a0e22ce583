"""What the broker answers, against a real mosquitto: a publish its ACL refuses (MQTT 5's PUBACK says so), a
broker that speaks only MQTT 3.1.1, how many publishes it lets await their PUBACK, and the hints of a broker
that stopped answering and of a certificate this machine does not trust."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from server.events.config import MqttSettings
from server.events.mqtt.window import AckedClient
from server.events.sink import SinkState
from server.sources.base import StreamState
from tests.support.certificates import self_signed
from tests.support.event_packets import track_start, with_events
from tests.support.fake_mqtt_broker import FakeBroker
from tests.support.mosquitto import Broker
from tests.support.mqtt_proxy import HoldingProxy
from tests.support.polling import eventually
from tests.test_events_mqtt import HELD_ANSWERS_TIMEOUT_S, availability_is, running, state_is

USER, PASSWORD = "segcast", "secret"
#: What the integrator's ACL let segcast publish: its status and state, and track events alone.
ACL = f"""user {USER}
topic readwrite segcast/status
topic readwrite segcast/server
topic readwrite segcast/+/counts
topic readwrite segcast/+/availability
topic readwrite segcast/+/events/track
"""
CROSSING = {"type": "line_cross", "v": 1, "stream": "door", "id": 2, "line": "gate", "direction": "in"}
#: Publishes mosquitto lets a client have awaiting their PUBACK in the test below (its Receive Maximum).
RECEIVE_MAXIMUM = 5
#: The client's timeout for any answer where the test is about a broker that gives none.
SHORT_TIMEOUT_S = 0.5


def broker_with_acl(folder: Path, acl: str = ACL) -> Broker:
    """mosquitto with a password, ``acl`` (the one above unless given) and its every log line (its PUBACKs'
    reason codes)."""
    broker = Broker(folder, users={USER: PASSWORD})
    (folder / "acl").write_text(acl)
    broker.config.write_text(broker.config.read_text() + f"acl_file {folder / 'acl'}\nlog_type all\n")
    return broker


def broker_with_receive_maximum(folder: Path) -> Broker:
    """mosquitto letting a client have `RECEIVE_MAXIMUM` publishes await their PUBACK (its CONNACK says so)."""
    broker = Broker(folder)
    broker.config.write_text(broker.config.read_text() + f"max_inflight_messages {RECEIVE_MAXIMUM}\n")
    return broker


async def test_an_event_the_brokers_acl_refuses_is_given_up_counted_failed_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, MQTT 3.1.1's PUBACK could not say "not authorized": mosquitto dropped the event, and segcast
    said it delivered, with no line in the log."""
    broker = broker_with_acl(tmp_path)
    broker.start()
    settings = MqttSettings("127.0.0.1", broker.port, username=USER, password=PASSWORD, discovery=False)
    try:
        async with running(settings) as (outputs, sink):
            await state_is(sink, SinkState.OK)
            outputs.on_packet(with_events(1, [CROSSING], stream_id="door"))
            outputs.on_packet(track_start(2, stream_id="door", track_id=3))

            async def settled() -> bool:
                health = sink.health()
                return health.delivered + health.failed == 2

            await eventually(settled, what="both events delivered or given up")
            health = sink.health()
    finally:
        broker.stop()
    assert (health.delivered, health.failed) == (1, 1)
    said = "the broker refused to publish on segcast/door/events/line_cross: not authorized: check its ACL"
    assert said in (health.last_error or "")
    (line,) = [r for r in caplog.records if said in r.getMessage()]
    assert line.levelno == logging.ERROR and "stream 'door'" in line.getMessage()
    log = (tmp_path / "mosquitto.log").read_text()
    assert "Denied PUBLISH" in log and "rc135)" in log  # MQTT 5's 0x87, "not authorized", in its PUBACK


async def test_a_broker_that_speaks_only_mqtt_3_1_1_is_spoken_to_in_it(caplog: pytest.LogCaptureFixture) -> None:
    """It refuses MQTT 5's CONNECT: segcast connects again at once with 3.1.1, says once what is lost with it,
    and keeps to it on the next connections."""
    async with (
        FakeBroker(on_subscribe="refuse") as broker,
        running(MqttSettings("127.0.0.1", broker.port, discovery=False)) as (outputs, sink),
    ):
        await state_is(sink, SinkState.OK)
        broker.drop()

        async def online_again() -> bool:
            return broker.published.count("segcast/status") == 2 and sink.health().state is SinkState.OK

        await eventually(online_again, what="segcast online again on a new connection")
        outputs.on_packet(track_start(1))

        async def delivered() -> bool:
            return sink.health().delivered == 1

        await eventually(delivered, what="the event delivered over MQTT 3.1.1")
    assert broker.connections == 3, "one refused, then one a connection"
    (warning,) = [r.getMessage() for r in caplog.records if "MQTT 5" in r.getMessage()]
    assert "3.1.1" in warning and "ACL" in warning
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert all("closed the connection" in e for e in errors), "the refusal of MQTT 5 is no failure: only the drop is"


async def test_no_more_publishes_await_their_puback_than_the_brokers_receive_maximum(tmp_path: Path) -> None:
    """MQTT 5 lets a broker end the connection of a client with more on their way than its CONNACK's
    Receive Maximum: segcast kept its own window (20) whatever the broker said."""
    broker = broker_with_receive_maximum(tmp_path)
    broker.start()
    try:
        async with HoldingProxy(broker.port) as proxy:
            settings = MqttSettings("127.0.0.1", proxy.port, discovery=False)
            async with running(settings, HELD_ANSWERS_TIMEOUT_S) as (outputs, sink):
                await state_is(sink, SinkState.OK)
                proxy.hold()  # no PUBACK comes: what is on its way stays so until the stop
                sent_before = len(proxy.published)
                for seq in range(RECEIVE_MAXIMUM + 5):
                    outputs.on_packet(track_start(seq, track_id=seq))

                async def on_their_way() -> bool:
                    return len(proxy.published) - sent_before >= RECEIVE_MAXIMUM

                await eventually(on_their_way, what="as many publishes on their way as the broker lets be")
            # The offline said at the stop goes after every publish sent before it, over the one connection.
            sent = proxy.published[sent_before:]
    finally:
        broker.stop()
    assert sent.index("segcast/status") == RECEIVE_MAXIMUM, sent


async def test_the_offline_said_at_shutdown_keeps_to_the_brokers_receive_maximum(tmp_path: Path) -> None:
    """Segcast's status and each live stream's availability went out at once at a stop (and a crashed
    run's streams' at a start), however few publishes the broker let be on their way."""
    streams = [f"cam{index}" for index in range(RECEIVE_MAXIMUM + 3)]
    broker = broker_with_receive_maximum(tmp_path)
    broker.start()
    try:
        async with HoldingProxy(broker.port) as proxy:
            settings = MqttSettings("127.0.0.1", proxy.port, discovery=False)
            async with running(settings, HELD_ANSWERS_TIMEOUT_S) as (outputs, sink):
                await state_is(sink, SinkState.OK)
                for seq, stream_id in enumerate(streams):
                    outputs.on_stream_state(stream_id, StreamState.LIVE)
                    outputs.on_packet(track_start(seq, stream_id=stream_id))  # its first counts: then online
                for stream_id in streams:
                    await availability_is(broker.port, stream_id, b"online")
                proxy.hold()  # no PUBACK comes: what is on its way at the stop stays so
                sent_before = len(proxy.published)
            sent = proxy.published[sent_before:]
    finally:
        broker.stop()
    assert sent == ["segcast/status", *(f"segcast/{s}/availability" for s in streams)][:RECEIVE_MAXIMUM], sent


async def test_a_broker_that_stops_answering_is_not_taken_for_a_tls_port(tmp_path: Path) -> None:
    """A broker frozen (SIGSTOP) after segcast had connected to it: the kernel still takes the TCP connection,
    no CONNACK comes, and the hint asked whether the port that had just worked was a TLS port."""
    broker = Broker(tmp_path)
    broker.start()
    assert broker.process is not None
    try:
        async with running(MqttSettings("127.0.0.1", broker.port, discovery=False)) as (outputs, sink):
            await state_is(sink, SinkState.OK)
            os.kill(broker.process.pid, signal.SIGSTOP)
            outputs.on_packet(track_start(1))  # its PUBACK never comes: the connection fails, then each attempt

            async def unanswered() -> str | None:
                health = sink.health()
                said = health.last_error or ""
                return said if health.state is SinkState.FAILING and "no MQTT answer" in said else None

            said = await eventually(unanswered, what="a connection attempt unanswered")
            os.kill(broker.process.pid, signal.SIGCONT)
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
        broker.stop()
    assert "TLS" not in said and "tls" not in said, said
    assert "stalled or overloaded" in said, said


# paho's Client._ssl_wrap_socket leaves a socket whose handshake failed to the garbage collector (both tests).
@pytest.mark.filterwarnings("ignore:Exception ignored in. <ssl.SSLSocket:pytest.PytestUnraisableExceptionWarning")
async def test_a_self_signed_broker_without_ca_file_says_to_set_it(tmp_path: Path) -> None:
    """tls = true and no ``ca_file``: the error was OpenSSL's CERTIFICATE_VERIFY_FAILED alone."""
    cert, key = self_signed(tmp_path)
    broker = Broker(tmp_path, tls=(cert, key))
    broker.start()
    try:
        async with running(MqttSettings("127.0.0.1", broker.port, tls=True), SHORT_TIMEOUT_S) as (_, sink):
            await state_is(sink, SinkState.FAILING)
    finally:
        broker.stop()
    said = sink.health().last_error or ""
    assert "CERTIFICATE_VERIFY_FAILED" in said and "(set ca_file in [events.mqtt] to the broker's CA" in said, said


@pytest.mark.filterwarnings("ignore:Exception ignored in. <ssl.SSLSocket:pytest.PytestUnraisableExceptionWarning")
async def test_a_ca_file_that_did_not_sign_the_brokers_certificate_is_named(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other, _ = self_signed(tmp_path / "other")
    cert, key = self_signed(tmp_path)
    broker = Broker(tmp_path, tls=(cert, key))
    broker.start()
    try:
        settings = MqttSettings("127.0.0.1", broker.port, tls=True, ca_file=other)
        async with running(settings, SHORT_TIMEOUT_S) as (_, sink):
            await state_is(sink, SinkState.FAILING)
    finally:
        broker.stop()
    said = sink.health().last_error or ""
    assert f"ca_file ({other}) did not sign it" in said, said


async def test_a_status_the_brokers_acl_refuses_is_said_as_a_failure_and_leaves_no_refusal_behind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ACL without ``segcast/status`` leaves every sensor unavailable in Home Assistant: mosquitto said "Denied
    PUBLISH" for its ``online`` and its ``offline``, while segcast said nothing, stayed OK with no last_error, and
    its client kept both refusals, which nobody asked for (`AckedClient.publish_in_order`)."""
    clients: list[AckedClient] = []
    make = AckedClient.__init__

    def kept(client: AckedClient, *args: Any, **kwargs: Any) -> None:
        make(client, *args, **kwargs)
        clients.append(client)

    monkeypatch.setattr(AckedClient, "__init__", kept)
    broker = broker_with_acl(tmp_path, ACL.replace("topic readwrite segcast/status\n", ""))
    broker.start()
    settings = MqttSettings("127.0.0.1", broker.port, username=USER, password=PASSWORD, discovery=False)
    refused = "the broker refused to publish on segcast/status: not authorized: check its ACL"
    try:
        async with running(settings) as (_, sink):

            async def said() -> bool:
                return refused in (sink.health().last_error or "")

            await eventually(said, what="the refused online in last_error")
    finally:
        broker.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and refused in r.getMessage()]
    assert [("as it connected" in e, "as it stopped" in e) for e in errors] == [(True, False), (False, True)], errors
    assert (tmp_path / "mosquitto.log").read_text().count("Denied PUBLISH") == 2
    assert clients and all(len(client._refused) == 0 for client in clients)
