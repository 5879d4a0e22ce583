"""Webhooks against a real aiohttp receiver on 127.0.0.1: signed bodies, retries, time-outs, dead URLs."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from server.events import sink
from server.events.config import EventsSettings, WebhookSettings
from server.events.outputs import EventOutputs
from server.events.sink import SinkState
from server.events.webhook import SIGNATURE_HEADER, WebhookSink
from tests.support.event_packets import frames_kept_after_offering, track_start, with_events
from tests.support.polling import eventually

SECRET = "hook-secret"


@dataclass
class Receiver:
    """A webhook endpoint that answers with ``statuses`` in turn (then 200), or never, while ``hang``."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    hang: bool = False
    bodies: list[bytes] = field(default_factory=list)
    signatures: list[str | None] = field(default_factory=list)
    attempts: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.hang:
            await asyncio.Event().wait()
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.bodies.append(await request.read())
            self.signatures.append(request.headers.get(SIGNATURE_HEADER))
        return web.Response(status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    yield receiver
    await runner.cleanup()


async def running(settings: WebhookSettings) -> EventOutputs:
    outputs = EventOutputs(EventsSettings(webhooks=(settings,)))
    hook(outputs).backoff_first_s = 0.01
    await outputs.start()
    return outputs


def hook(outputs: EventOutputs) -> WebhookSink:
    webhook = outputs.sinks[0]
    assert isinstance(webhook, WebhookSink)
    return webhook


def unused_port() -> int:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_each_event_is_posted_in_order_and_signed(receiver: Receiver) -> None:
    outputs = await running(WebhookSettings(receiver.url, SECRET))
    try:
        outputs.on_packet(track_start(1, track_id=1))
        zone = {"type": "zone_enter", "v": 1, "stream": "cam", "id": 2, "zone": "door", "time": 1.0}
        outputs.on_packet(with_events(2, [zone]))

        async def both() -> bool:  # counted once answered: the receiver keeps a body before it answers
            return hook(outputs).health().delivered == 2

        await eventually(both, what="two deliveries")
    finally:
        await outputs.stop()
    first, second = (json.loads(body) for body in receiver.bodies)
    assert first["type"] == "track" and first["event"] == "start" and first["id"] == 1
    assert second == zone
    for body, signature in zip(receiver.bodies, receiver.signatures, strict=True):
        expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert signature == f"sha256={expected}"
    assert hook(outputs).health().delivered == 2


async def test_events_queued_at_shutdown_are_delivered_before_it(receiver: Receiver) -> None:
    outputs = await running(WebhookSettings(receiver.url))
    outputs.on_packet(track_start(0, track_id=0))

    async def working() -> bool:
        return hook(outputs).health().state is SinkState.OK

    await eventually(working, what="the first delivery")
    for seq in range(1, 6):
        outputs.on_packet(track_start(seq, track_id=seq))
    await outputs.stop()  # at once: the five are still queued, or one of them on its way
    assert [json.loads(body)["id"] for body in receiver.bodies] == [0, 1, 2, 3, 4, 5]
    assert hook(outputs).health().dropped == 0


async def test_what_a_failing_receiver_leaves_at_shutdown_is_counted_lost(receiver: Receiver) -> None:
    receiver.hang = True
    outputs = await running(WebhookSettings(receiver.url, timeout_s=0.2, retries=0))
    outputs.on_packet(track_start(0, track_id=0))

    async def failing() -> bool:
        return hook(outputs).health().state is SinkState.FAILING

    await eventually(failing, what="the first delivery to time out")
    for seq in range(1, 4):
        outputs.on_packet(track_start(seq, track_id=seq))
    await outputs.stop()  # not waited for: a failing receiver would only hold the shutdown up
    health = hook(outputs).health()
    assert health.failed + health.dropped + health.delivered >= 3 and health.delivered == 0
    assert health.dropped >= 2  # one may have been on its way (then it times out: failed) when it stopped


async def test_server_errors_are_retried_with_backoff(receiver: Receiver) -> None:
    receiver.statuses = [503, 500]
    outputs = await running(WebhookSettings(receiver.url, SECRET, retries=3))
    try:
        outputs.on_packet(track_start(1))

        async def delivered() -> bool:
            return hook(outputs).health().delivered == 1

        await eventually(delivered, what="the delivery after two failures")
    finally:
        await outputs.stop()
    assert receiver.attempts == 3 and len(receiver.bodies) == 1
    assert hook(outputs).health().state is SinkState.OK


async def test_a_refusal_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [400]
    outputs = await running(WebhookSettings(receiver.url, retries=3))
    try:
        outputs.on_packet(track_start(1))
        outputs.on_packet(track_start(2, track_id=2))

        async def next_delivered() -> bool:
            return hook(outputs).health().delivered == 1

        await eventually(next_delivered, what="the next event to get through")
    finally:
        await outputs.stop()
    assert receiver.attempts == 2
    assert json.loads(receiver.bodies[0])["id"] == 2
    health = hook(outputs).health()
    assert health.failed == 1 and health.delivered == 1


async def test_a_hanging_receiver_times_out_and_counts_as_failed(receiver: Receiver) -> None:
    receiver.hang = True
    outputs = await running(WebhookSettings(receiver.url, timeout_s=0.2, retries=1))
    try:
        outputs.on_packet(track_start(1))

        async def given_up() -> bool:
            return hook(outputs).health().failed == 1

        await eventually(given_up, what="the delivery to be given up")
    finally:
        await outputs.stop()
    health = hook(outputs).health()
    assert receiver.attempts == 2
    assert health.state is SinkState.FAILING and "TimeoutError" in (health.last_error or "")


async def test_an_unreachable_url_is_a_clear_state_and_its_queue_drops() -> None:
    outputs = await running(WebhookSettings(f"http://user:pw@127.0.0.1:{unused_port()}/hook", retries=20, queue=3))
    try:
        for seq in range(10):
            outputs.on_packet(track_start(seq, track_id=seq))

        async def failing() -> bool:
            return hook(outputs).health().state is SinkState.FAILING

        await eventually(failing, what="the failing state")
        health = hook(outputs).health()
    finally:
        await outputs.stop()
    assert health.dropped >= 6  # one in flight, three queued
    assert "Cannot connect" in (health.last_error or "")
    assert "pw" not in health.name and "pw" not in (health.last_error or "")


async def test_events_queued_before_the_first_delivery_are_delivered_at_shutdown(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink, "DRAIN_TIMEOUT_S", 60.0)  # ends as soon as all are delivered; no race with the clock
    outputs = await running(WebhookSettings(receiver.url))
    for seq in range(5):
        outputs.on_packet(track_start(seq, track_id=seq))
    assert hook(outputs).health().state is SinkState.STARTING  # nothing delivered yet
    await outputs.stop()
    assert [json.loads(body)["id"] for body in receiver.bodies] == [0, 1, 2, 3, 4]
    assert hook(outputs).health().dropped == 0


async def test_queued_events_do_not_keep_their_frames() -> None:
    outputs = await running(WebhookSettings(f"http://127.0.0.1:{unused_port()}/hook", retries=20))
    try:
        assert frames_kept_after_offering(outputs.on_packet) == 0
        health = hook(outputs).health()
        assert health.delivered == health.dropped == health.failed == 0  # all five still queued or on their way
    finally:
        await outputs.stop()


async def test_a_redirect_is_not_followed_and_says_where_it_points() -> None:
    posted: list[bytes] = []

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("https://hooks.example:8443/new/s3cret-path?token=abc")

    async def elsewhere(request: web.Request) -> web.Response:  # would answer the GET a redirect turns a POST into
        posted.append(await request.read())
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/hook", moved)
    app.router.add_route("*", "/new/s3cret-path", elsewhere)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        outputs = await running(WebhookSettings(f"http://127.0.0.1:{runner.addresses[0][1]}/hook", retries=3))
        try:
            outputs.on_packet(track_start(1))

            async def given_up() -> bool:
                return hook(outputs).health().failed == 1

            await eventually(given_up, what="the redirected event to count as failed")
        finally:
            await outputs.stop()
    finally:
        await runner.cleanup()
    health = hook(outputs).health()
    assert health.delivered == 0 and health.state is SinkState.FAILING
    error = health.last_error or ""
    assert "HTTP 301" in error and "redirect to https://hooks.example:8443" in error and "not retried" in error
    assert "s3cret" not in error and "token" not in error
    assert posted == []


async def test_an_event_that_cannot_be_sent_costs_only_itself(receiver: Receiver) -> None:
    outputs = await running(WebhookSettings(receiver.url))
    try:
        # A header cannot carry a line break: aiohttp refuses to send this one at all.
        broken = {"type": "zone\r\nenter", "v": 1, "stream": "cam", "id": 1, "time": 1.0}
        outputs.on_packet(with_events(1, [broken]))
        outputs.on_packet(track_start(2, track_id=2))

        async def next_delivered() -> bool:
            return hook(outputs).health().delivered == 1

        await eventually(next_delivered, what="the next event to get through")
    finally:
        await outputs.stop()
    assert [json.loads(body)["id"] for body in receiver.bodies] == [2]
    health = hook(outputs).health()
    assert health.failed == 1 and "ValueError" in (health.last_error or "")


async def test_webhooks_on_one_host_have_names_of_their_own(receiver: Receiver) -> None:
    first, second = (f"{receiver.url}/{secret}" for secret in ("id-one", "id-two"))
    outputs = EventOutputs(EventsSettings(webhooks=(WebhookSettings(first), WebhookSettings(second))))
    names = [h.name for h in outputs.health()]
    origin = receiver.url.removesuffix("/hook")
    assert names == [f"webhook {origin} [0]", f"webhook {origin} [1]"]
    alone = EventOutputs(EventsSettings(webhooks=(WebhookSettings(first),)))
    assert [h.name for h in alone.health()] == [f"webhook {origin}"]
