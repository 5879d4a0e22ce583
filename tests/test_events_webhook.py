"""Webhooks against a real aiohttp receiver on 127.0.0.1: signed bodies, retries, time-outs, dead URLs."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from server.events import sink
from server.events.api import event_outputs_key, setup_events_api
from server.events.config import EventsSettings, WebhookSettings
from server.events.outputs import EventOutputs
from server.events.sink import DROP_LOG_INTERVAL_S, Backoff, OutEvent, SinkState
from server.events.webhook import SHOWN_SEGMENT_MAX_CHARS, WebhookSink, retry_after_s, shown_url, webhook_names
from tests.conftest import ClientFactory
from tests.support.event_packets import frames_kept_after_offering, track_start, with_events
from tests.support.polling import eventually
from tests.support.ports import held_closed_port
from tests.support.webhook_receiver import Receiver, serving

SECRET = "hook-secret"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving() as receiver:
        yield receiver


async def running(settings: WebhookSettings) -> EventOutputs:
    outputs = EventOutputs(EventsSettings(webhooks=(settings,)))
    hook(outputs).backoff.first_s = 0.01
    await outputs.start()
    return outputs


def hook(outputs: EventOutputs) -> WebhookSink:
    webhook = outputs.sinks[0]
    assert isinstance(webhook, WebhookSink)
    return webhook


class Clock:
    """Monotonic seconds for a webhook's quiet windows in the log, moved only by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def started(settings: WebhookSettings, clock: Clock) -> WebhookSink:
    """A webhook on its own, its log's windows on ``clock``, retrying at once (0.01 s)."""
    webhook = WebhookSink(settings, webhook_names([settings])[0], backoff_first_s=0.01, clock=clock)
    webhook.backoff.max_s = 0.01
    await webhook.start()
    return webhook


def track_event(track_id: int) -> OutEvent:
    return OutEvent({"type": "track", "v": 1, "stream": "cam", "event": "start", "id": track_id}, "cam", time.time())


async def offered(webhook: WebhookSink, track_ids: range) -> None:
    """Offer an event for each of ``track_ids`` and wait until each is delivered or given up on."""
    for track_id in track_ids:
        webhook.offer(track_event(track_id))

    async def settled() -> bool:
        health = webhook.health()
        return health.delivered + health.failed == track_ids.stop

    await eventually(settled, what=f"the events up to {track_ids.stop} to be settled")


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name.startswith("server.events")]


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port nobody listens on, held for the whole test (`held_closed_port`)."""
    with held_closed_port() as port:
        yield port


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
    assert second == {**zone, "event_id": second["event_id"]}  # the event JSON, and its id in the outputs
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
    receiver.statuses = [503]
    outputs = await running(WebhookSettings(receiver.url, retries=0))
    outputs.on_packet(track_start(0, track_id=0))

    async def failing() -> bool:
        return hook(outputs).health().state is SinkState.FAILING

    await eventually(failing, what="the first delivery to fail")
    receiver.hang = True  # from now on it takes the POSTs and never answers
    for seq in range(1, 4):
        outputs.on_packet(track_start(seq, track_id=seq))

    async def next_on_its_way() -> bool:
        return receiver.attempts == 2

    await eventually(next_on_its_way, what="the next event to be on its way")
    await outputs.stop()  # not waited for: a failing receiver would only hold the shutdown up
    health = hook(outputs).health()
    assert health.delivered == 0 and health.failed == 1
    assert health.dropped == 3  # two queued, and the one on its way: every event accounted for


async def test_a_failing_output_does_not_hold_up_the_shutdown(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A working output is given time to deliver what it holds; a failing one would only retry into it."""
    monkeypatch.setattr(sink, "DRAIN_TIMEOUT_S", 3600.0)  # waiting for it would outlast the test
    receiver.statuses = [503]
    outputs = await running(WebhookSettings(receiver.url, retries=0))
    outputs.on_packet(track_start(0, track_id=0))

    async def failing() -> bool:
        return hook(outputs).health().state is SinkState.FAILING

    await eventually(failing, what="the first delivery to fail")
    receiver.hang = True
    outputs.on_packet(track_start(1, track_id=1))
    stopping = asyncio.create_task(outputs.stop())

    async def stopped() -> bool:
        return stopping.done()

    await eventually(stopped, what="the shutdown, without waiting for the failing output")
    await stopping
    assert hook(outputs).health().dropped == 1


async def test_the_events_a_dead_receiver_holds_up_are_listed_as_queued(
    aiohttp_client: ClientFactory, refused_port: int
) -> None:
    # Given a webhook whose URL refuses connections, and a wait beyond the test before a retry
    outputs = await running(WebhookSettings(f"http://127.0.0.1:{refused_port}/hook", retries=1))
    hook(outputs).backoff.first_s = 60.0
    app = web.Application()
    app[event_outputs_key] = outputs
    setup_events_api(app)
    client = await aiohttp_client(app)
    try:
        # When five events come, and the first's first attempt has failed
        for seq in range(5):
            outputs.on_packet(track_start(seq, track_id=seq))

        async def first_failing() -> bool:
            return hook(outputs).health().state is SinkState.FAILING

        await eventually(first_failing, what="the first attempt to fail")
        # Then the outputs listing says all five wait, the one to be retried too (nothing else counts them)
        (listed,) = (await (await client.get("/api/events/outputs")).json())["outputs"]
        assert (listed["delivered"], listed["failed"], listed["dropped"], listed["queued"]) == (0, 0, 0, 5)
    finally:
        await outputs.stop()
    health = hook(outputs).health()
    assert (health.dropped, health.queued) == (5, 0), "what waited is lost at shutdown: nothing is left queued"


async def test_an_event_on_its_way_when_the_shutdown_time_is_up_is_counted_dropped(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink, "DRAIN_TIMEOUT_S", 0.1)  # the receiver never answers: no need to wait long
    receiver.hang = True
    outputs = await running(WebhookSettings(receiver.url))
    for seq in range(3):
        outputs.on_packet(track_start(seq, track_id=seq))

    async def on_its_way() -> bool:
        return receiver.attempts == 1

    await eventually(on_its_way, what="the first event to be on its way")
    await outputs.stop()  # not failing yet (no answer so far): given its drain time, then cancelled
    health = hook(outputs).health()
    assert health.delivered == 0 and health.failed == 0
    assert health.dropped == 3


async def test_outputs_are_given_their_shutdown_time_together(
    monkeypatch: pytest.MonkeyPatch, refused_port: int
) -> None:
    hooks = tuple(WebhookSettings(f"http://127.0.0.1:{refused_port}/{n}") for n in range(3))
    outputs = EventOutputs(EventsSettings(webhooks=hooks))
    stopping: list[str] = []
    drained = asyncio.Event()

    async def draining(name: str) -> None:
        """A stop that takes its whole drain time: three in a row would take three times as long."""
        stopping.append(name)
        await drained.wait()

    for output in outputs.sinks:
        monkeypatch.setattr(output, "stop", functools.partial(draining, output.name))
    stop = asyncio.create_task(outputs.stop())

    async def all_draining() -> bool:
        return len(stopping) == 3

    await eventually(all_draining, what="every output to be draining at once")
    drained.set()
    await stop


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


async def test_a_receiver_that_keeps_failing_is_told_once_in_the_log_not_twice_an_event(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The log says a webhook fails once, then once a while with the events lost since (docs/protocol.md)."""
    receiver.statuses = [500] * 10
    outputs = await running(WebhookSettings(receiver.url, retries=1))
    hook(outputs).backoff.max_s = 0.01
    try:
        with caplog.at_level(logging.ERROR, logger="server.events"):
            for seq in range(5):
                outputs.on_packet(track_start(seq, track_id=seq))

            async def all_lost() -> bool:
                return hook(outputs).health().failed == 5

            await eventually(all_lost, what="every event given up on")
    finally:
        await outputs.stop()
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors[0] == f"{hook(outputs).name}: answered HTTP 500; an event given up after 2 attempts"
    assert len([e for e in errors if "again:" not in e]) == 1, errors
    assert receiver.attempts == 10


async def test_a_retried_attempt_is_a_warning_and_only_an_event_given_up_on_an_error(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Each retried 503 was logged as an error, though the event got through: errors with nothing failed.
    The second retry for the same reason is only counted, within the first's quiet window."""
    receiver.statuses = [503, 503, 200, 503, 503, 503]
    outputs = await running(WebhookSettings(receiver.url, retries=2))
    try:
        with caplog.at_level(logging.WARNING, logger="server.events"):
            outputs.on_packet(track_start(1, track_id=1))  # 503, 503, then delivered

            async def delivered() -> bool:
                return hook(outputs).health().delivered == 1

            await eventually(delivered, what="the event after two retries")
            retried = [(r.levelno, r.getMessage()) for r in caplog.records]
            caplog.clear()
            outputs.on_packet(track_start(2, track_id=2))  # 503, 503, 503: given up

            async def given_up() -> bool:
                return hook(outputs).health().failed == 1

            await eventually(given_up, what="the next event to be given up")
            lost = [(r.levelno, r.getMessage()) for r in caplog.records]
    finally:
        await outputs.stop()
    name = hook(outputs).name
    assert retried == [(logging.WARNING, f"[cam] {name}: answered HTTP 503 on attempt 1 of 3; retrying")]
    assert [message for level, message in lost if level >= logging.ERROR] == [
        f"{name}: answered HTTP 503; an event given up after 3 attempts"
    ]
    assert hook(outputs).health().last_error == "answered HTTP 503; an event given up after 3 attempts"


async def test_a_receiver_that_fails_now_and_then_costs_a_line_a_window_not_lines_an_event(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A soak's receiver answering 500 to one POST in seven made 93% of the log: a warning for each retry
    and "working" after each event it retried and then took, though 98% of the events got through."""
    # Given a receiver that fails the first attempt at every other event
    clock = Clock()
    receiver.statuses = [500, 200, 200] * 10
    webhook = await started(WebhookSettings(receiver.url, retries=2), clock)
    try:
        with caplog.at_level(logging.INFO, logger="server.events"):
            # When twenty events are offered within one quiet window
            await offered(webhook, range(20))
            within = said(caplog)
            # And another fails its first attempt once the window is over
            clock.now += DROP_LOG_INTERVAL_S
            receiver.statuses = [500]
            await offered(webhook, range(20, 21))
    finally:
        await webhook.stop()
    # Then the window holds one line, the first retry's; the next line tells the other nine
    assert webhook.health().delivered == 21 and webhook.health().failed == 0
    assert within == [f"[cam] {webhook.name}: answered HTTP 500 on attempt 1 of 3; retrying"]
    assert said(caplog)[1:] == [
        f"[cam] {webhook.name}: answered HTTP 500 on attempt 1 of 3; retrying "
        "(9 more attempt(s) retried for this reason since it was last logged)"
    ]


async def test_a_failure_logged_as_an_error_ends_with_one_working_line(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Each event delivered after a retry said "working", whether an error had been logged or not."""
    # Given a receiver that fails an event's every attempt, then the first attempt of the next two
    receiver.statuses = [500, 500, 500, 200, 500]
    webhook = await started(WebhookSettings(receiver.url, retries=1), Clock())
    try:
        with caplog.at_level(logging.INFO, logger="server.events"):
            # When four events are offered: the first is given up on, the next two retried and delivered
            await offered(webhook, range(4))
    finally:
        await webhook.stop()
    # Then the event given up on is named, the error logged, and "working" said once, when it ends;
    # the retries the window counted are told at shutdown
    given_up = receiver.requests[0][0]
    assert said(caplog) == [
        f"[cam] {webhook.name}: answered HTTP 500 on attempt 1 of 2; retrying",
        f"[cam] {webhook.name}: answered HTTP 500 on attempt 2 of 2; gave up on the track event "
        f"with event_id {given_up}",
        f"{webhook.name}: answered HTTP 500; an event given up after 2 attempts",
        f"{webhook.name}: working",
        f"{webhook.name}: answered HTTP 500; 2 more attempt(s) retried for this reason since it was last logged",
    ]
    assert (webhook.health().delivered, webhook.health().failed) == (3, 1)


async def test_last_error_at_is_when_last_error_happened_not_a_later_retry_for_another_reason(
    receiver: Receiver,
) -> None:
    """Before, a retry of the next event (later delivered) moved the time, not the text: the time of
    "given up" was then that of an attempt that was not given up, as docs/protocol.md says it is."""
    receiver.statuses = [500, 500, 500]  # the first event given up after 2 attempts, the next one's first attempt fails
    outputs = await running(WebhookSettings(receiver.url, retries=1))
    try:
        outputs.on_packet(track_start(1, track_id=1))

        async def given_up() -> bool:
            return hook(outputs).health().failed == 1

        await eventually(given_up, what="the first event given up")
        given_up_at = hook(outputs).health().last_error_at
        outputs.on_packet(track_start(2, track_id=2))  # 500, then delivered

        async def delivered() -> bool:
            return hook(outputs).health().delivered == 1

        await eventually(delivered, what="the second event after a retry")
    finally:
        await outputs.stop()
    health = hook(outputs).health()
    assert receiver.attempts == 4
    assert health.last_error == "answered HTTP 500; an event given up after 2 attempts"
    assert health.last_error_at == given_up_at


async def test_the_outputs_entry_says_what_fails_now_while_an_event_is_retried(
    aiohttp_client: ClientFactory, receiver: Receiver
) -> None:
    """While a receiver timed out, the outputs listing showed only an older error ("answered HTTP 500")
    as the log said "timed out ... retrying": nothing there said what was failing now."""
    # Given a webhook whose receiver answers 500 until an event is given up on
    receiver.statuses = [500] * 11
    outputs = await running(WebhookSettings(receiver.url, timeout_s=0.5, retries=10))
    hook(outputs).backoff.max_s = 0.01
    app = web.Application()
    app[event_outputs_key] = outputs
    setup_events_api(app)
    client = await aiohttp_client(app)
    try:
        outputs.on_packet(track_start(1, track_id=1))

        async def given_up() -> bool:
            return hook(outputs).health().failed == 1

        await eventually(given_up, what="the first event given up on")
        # When it then hangs, and the next event's first attempt has timed out and is retried
        receiver.hang = True
        outputs.on_packet(track_start(2, track_id=2))

        async def retried() -> bool:
            return receiver.attempts == 13

        await eventually(retried, what="the second event's first attempt to time out and be retried")
        (listed,) = (await (await client.get("/api/events/outputs")).json())["outputs"]
        # Then the entry says the time-out is what fails now, and last_error keeps the error it was logged with
        assert listed["state"] == "failing"
        assert listed["last_error"] == "answered HTTP 500; an event given up after 11 attempts"
        assert (listed["last_attempt_error"] or "").startswith("timed out: no answer within timeout_s = 0.5 s")
        # And once an attempt gets through, nothing fails now
        receiver.hang = False

        async def delivered() -> bool:
            return hook(outputs).health().delivered == 1

        await eventually(delivered, what="the second event delivered")
        (listed,) = (await (await client.get("/api/events/outputs")).json())["outputs"]
        assert (listed["state"], listed["last_attempt_error"]) == ("ok", None)
        assert listed["last_error"] == "answered HTTP 500; an event given up after 11 attempts"
    finally:
        await outputs.stop()


async def test_a_rate_limited_receiver_gets_the_quiet_it_asks_for_before_the_next_event(receiver: Receiver) -> None:
    receiver.statuses = [429]
    receiver.retry_after = "1"
    outputs = await running(WebhookSettings(receiver.url, retries=0))
    try:
        outputs.on_packet(track_start(1, track_id=1))  # given up on at once (no retries): the wait goes on
        outputs.on_packet(track_start(2, track_id=2))

        async def next_delivered() -> bool:
            return hook(outputs).health().delivered == 1

        await eventually(next_delivered, what="the next event after the asked-for wait")
    finally:
        await outputs.stop()
    assert receiver.attempted_at[1] - receiver.attempted_at[0] >= 0.95  # not 0.01 s, the backoff's first wait
    assert [json.loads(body)["id"] for body in receiver.bodies] == [2]
    health = hook(outputs).health()
    assert health.failed == 1 and "HTTP 429 with Retry-After" in (health.last_error or "")


async def test_the_retries_of_an_event_carry_its_delivery_id(receiver: Receiver) -> None:
    """A slow receiver got the same event up to 3 times with nothing to tell the copies apart."""
    receiver.statuses = [503, 500]
    outputs = await running(WebhookSettings(receiver.url, retries=3))
    try:
        outputs.on_packet(track_start(1, track_id=1))
        outputs.on_packet(track_start(2, track_id=2))

        async def delivered() -> bool:
            return hook(outputs).health().delivered == 2

        await eventually(delivered, what="both events, the first after two failures")
    finally:
        await outputs.stop()
    assert [event for _, event in receiver.deliveries] == [1, 1, 1, 2]
    first, retry, last, other = (delivery for delivery, _ in receiver.deliveries)
    assert first and first == retry == last, "one id for every attempt at one event"
    assert other and other != first, "another for the next event"


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = 1_700_000_000.0
    assert retry_after_s("120", now) == 120.0
    assert retry_after_s(formatdate(now + 30, usegmt=True), now) == 30.0
    assert retry_after_s(formatdate(now - 30, usegmt=True), now) == 0.0  # already past: no wait
    assert retry_after_s(None, now) is None
    assert retry_after_s("soon", now) is None
    assert retry_after_s("-5", now) is None


def test_backoff_doubles_while_an_event_gets_no_answer_and_starts_afresh_with_the_next() -> None:
    """The doubling went on from one event given up on to the next, so one event a receiver kept failing
    made every later one wait longer; a receiver that answers (HTTP 500) is up, and its retries stay short."""
    backoff = Backoff(first_s=0.5, max_s=30.0)
    assert backoff.wait_s(100.0) == 0.0
    backoff.failed(100.0)  # no answer: a time-out, a refused connection
    assert backoff.wait_s(100.0) == 0.5
    backoff.failed(101.0)
    assert backoff.wait_s(101.0) == 1.0
    backoff.failed(102.0, answered=True)  # it answered: the first wait again, not the doubling
    assert backoff.wait_s(102.0) == 0.5
    backoff.settled()  # given up on: the next event is tried at once
    assert backoff.wait_s(102.0) == 0.0
    backoff.failed(103.0)
    assert backoff.wait_s(103.0) == 0.5


def test_a_quiet_the_receiver_asked_for_holds_for_the_next_event_too() -> None:
    backoff = Backoff(first_s=0.5, max_s=30.0)
    backoff.failed(100.0, asked_s=5.0, answered=True)  # Retry-After asks for more than the first wait
    assert backoff.wait_s(100.0) == 5.0
    backoff.settled()
    assert backoff.wait_s(101.0) == 4.0, "the rest of what it asked for"
    backoff.failed(110.0, asked_s=3600.0, answered=True)  # but never more than max_s
    assert backoff.wait_s(110.0) == 30.0


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


async def test_a_refusal_starts_the_backoff_over(receiver: Receiver) -> None:
    """A receiver that answers is up: the next failure waits the first wait again, not the doubling of
    the failures before the refusal."""
    receiver.statuses = [503, 400]
    outputs = await running(WebhookSettings(receiver.url, retries=0))
    try:
        outputs.on_packet(track_start(1, track_id=1))
        outputs.on_packet(track_start(2, track_id=2))

        async def both_failed() -> bool:
            return hook(outputs).health().failed == 2

        await eventually(both_failed, what="a failure, then a refusal")
    finally:
        await outputs.stop()
    backoff = hook(outputs).backoff
    now = time.monotonic()
    backoff.failed(now)
    assert backoff.wait_s(now) == pytest.approx(backoff.first_s)


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
    assert health.state is SinkState.FAILING
    assert (health.last_error or "").startswith("timed out: no answer within timeout_s = 0.2 s (check"), "the setting"


async def test_an_unreachable_url_is_a_clear_state_and_its_queue_drops(refused_port: int) -> None:
    outputs = await running(WebhookSettings(f"http://user:pw@127.0.0.1:{refused_port}/hook", retries=20, queue=3))
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
    assert (health.last_error or "").startswith(f"connection refused by 127.0.0.1:{refused_port} (")
    assert "pw" not in health.name and "pw" not in (health.last_error or "")


async def given_up_on(outputs: EventOutputs) -> str:
    """The ``last_error`` of the webhook's first event given up on (offered here, a track's start)."""
    outputs.on_packet(track_start(1, track_id=1))

    async def failed() -> str | None:
        health = hook(outputs).health()
        return health.last_error if health.failed == 1 else None

    try:
        return await eventually(failed, what="the event given up on")
    finally:
        await outputs.stop()


async def test_a_refused_connection_is_said_in_words_with_what_to_check(refused_port: int) -> None:
    """It was aiohttp's "ClientConnectorError: Cannot connect to host 127.0.0.1:18473 ssl:default [Connect call
    failed ('127.0.0.1', 18473)] (an event given up after 1 attempts)": a class name, TLS of an http URL, a plural."""
    error = await given_up_on(await running(WebhookSettings(f"http://127.0.0.1:{refused_port}/hook", retries=0)))
    assert error == (
        f"connection refused by 127.0.0.1:{refused_port} (check that the receiver runs and listens on that port); "
        "an event given up after 1 attempt"
    )


async def test_https_to_a_plain_http_receiver_says_tls_failed(receiver: Receiver) -> None:
    plain = urlsplit(receiver.url)
    error = await given_up_on(await running(WebhookSettings(f"https://{plain.netloc}/hook", retries=0)))
    assert error.startswith(f"TLS failed with {plain.netloc}: "), error
    assert "(check that the receiver speaks https on that port, or use http:// in url)" in error
    assert "Client" not in error and "ssl:default" not in error


async def test_a_host_name_nobody_knows_is_no_such_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiohttp's own lookup error, from a resolver answering as getaddrinfo does for a name with no address
    (no DNS server is asked: one may be out of reach, and would answer "try again")."""

    class NoSuchHost(aiohttp.abc.AbstractResolver):
        def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None: ...

        async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[Any]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        async def close(self) -> None: ...

    monkeypatch.setattr(aiohttp.connector, "DefaultResolver", NoSuchHost)
    error = await given_up_on(await running(WebhookSettings("http://no-such-host.invalid/hook", retries=0)))
    assert error == "no such host: no-such-host.invalid (check the host name in url); an event given up after 1 attempt"


async def test_an_event_given_up_on_is_named_in_the_log_to_be_found_in_the_history(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The line said "answered HTTP 500 (an event given up after 4 attempts)": not which event, so none could
    be sent again."""
    receiver.statuses = [500, 500, 404]
    outputs = await running(WebhookSettings(receiver.url, retries=1))
    try:
        with caplog.at_level(logging.WARNING, logger="server.events"):
            outputs.on_packet(track_start(1, track_id=1))  # 500, 500: given up
            zone = {"type": "zone_enter", "v": 1, "stream": "cam", "id": 2, "zone": "door"}
            outputs.on_packet(with_events(2, [zone]))  # 404: refused

            async def both_lost() -> bool:
                return hook(outputs).health().failed == 2

            await eventually(both_lost, what="both events given up on")
    finally:
        await outputs.stop()
    (track, _), (_, _), (zone_enter, _) = receiver.requests  # each attempt's X-Segcast-Delivery: its event_id
    name = hook(outputs).name
    assert [r.getMessage() for r in caplog.records if "gave up" in r.getMessage()] == [
        f"[cam] {name}: answered HTTP 500 on attempt 2 of 2; gave up on the track event with event_id {track}",
        f"[cam] {name}: answered HTTP 404; not retried; gave up on the zone_enter event with event_id {zone_enter}",
    ]


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


async def test_every_event_dropped_is_in_a_log_line_by_shutdown(
    caplog: pytest.LogCaptureFixture, refused_port: int
) -> None:
    """After the first "queue full" line, drops within its quiet window were in no line when the drops
    stopped: 47 dropped, the log said 1."""
    outputs = await running(WebhookSettings(f"http://127.0.0.1:{refused_port}/hook", retries=20, queue=3))
    for seq in range(30):
        outputs.on_packet(track_start(seq, track_id=seq))
    dropped = hook(outputs).health().dropped
    await outputs.stop()
    said = [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()]
    assert dropped >= 26 and len(said) == 2, said  # the first drop at once; the rest at shutdown
    told = [int(match[1]) for line in said if (match := re.search(r"dropped (\d+) event", line))]
    assert told[0] == 1 and sum(told) == dropped


async def test_queued_events_do_not_keep_their_frames(refused_port: int) -> None:
    outputs = await running(WebhookSettings(f"http://127.0.0.1:{refused_port}/hook", retries=20))
    try:
        assert frames_kept_after_offering(outputs.on_packet) == 0
        health = hook(outputs).health()
        assert health.delivered == health.dropped == health.failed == 0  # all five still queued or on their way
    finally:
        await outputs.stop()


@pytest.mark.parametrize(
    ("location", "where"),
    [
        # Where it points, its path but the last segment (a webhook's id may be any words), which it said
        # only as https://elsewhere.example:8443.
        ("https://elsewhere.example:8443/new/path", "https://elsewhere.example:8443/new/***"),
        ("/moved/here", "http://127.0.0.1:{port}/moved/***"),
        ("https://hooks.example:8443/hook", "https://hooks.example:8443, the same path"),
        # What may be a secret is not shown: a segment that is no lower-case word, the query.
        (
            "https://hooks.example:8443/new/s3cret-path?token=abc",
            "https://hooks.example:8443/new/***, its query left out",
        ),
    ],
    ids=["elsewhere", "relative", "same-path", "secrets"],
)
@pytest.mark.parametrize("status", [300, 301, 307, 308])
async def test_a_redirect_is_not_followed_and_says_where_it_points(location: str, where: str, status: int) -> None:
    """Every 3xx, 300 (Multiple Choices) too: none of them is a delivery, whatever aiohttp would do with it."""
    posted: list[bytes] = []

    async def moved(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": location})

    async def elsewhere(request: web.Request) -> web.Response:  # would answer the GET a redirect turns a POST into
        posted.append(await request.read())
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/hook", moved)
    app.router.add_route("*", "/{moved:.+}", elsewhere)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        outputs = await running(WebhookSettings(f"http://127.0.0.1:{port}/hook", retries=3))
        try:
            outputs.on_packet(track_start(1))

            async def settled() -> bool:
                health = hook(outputs).health()
                return health.delivered + health.failed == 1

            await eventually(settled, what="the redirected event to count as delivered or failed")
        finally:
            await outputs.stop()
    finally:
        await runner.cleanup()
    health = hook(outputs).health()
    assert (health.delivered, health.failed, health.state) == (0, 1, SinkState.FAILING)
    shown = where.format(port=port)
    assert health.last_error == (
        f"answered HTTP {status}, a redirect to {shown} (not followed: set url to where it points); not retried"
    )
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


def names(*urls: str) -> list[str]:
    return [h.name for h in EventOutputs(EventsSettings(webhooks=tuple(map(WebhookSettings, urls)))).health()]


def test_webhooks_on_one_host_are_named_by_their_paths() -> None:
    """Both were ``webhook http://127.0.0.1:18473`` and a number: which one failed took the config file to tell."""
    assert names("http://127.0.0.1:18473/door/hook", "http://127.0.0.1:18473/yard/hook?key=abc") == [
        "webhook http://127.0.0.1:18473/door/***",
        "webhook http://127.0.0.1:18473/yard/***",
    ]
    assert names("https://h.example/") == ["webhook https://h.example"]


def test_webhooks_that_read_the_same_once_their_secrets_are_hidden_are_numbered() -> None:
    """Home Assistant's webhook id is a secret in the path, whatever words it is made of: its last segment
    is never shown, and two of them read the same but for their place."""
    assert names(
        "http://ha.local:8123/api/webhook/-Xq2Vb8nPz1KtLm0AbCdEf",
        "http://user:pw@ha.local:8123/api/webhook/correct-horse-battery-staple",
        "http://ha.local:8123/other/webhook/segcast",
    ) == [
        "webhook http://ha.local:8123/api/webhook/*** [0]",
        "webhook http://ha.local:8123/api/webhook/*** [1]",
        "webhook http://ha.local:8123/other/webhook/***",
    ]
    assert names("https://hooks.slack.com/services/T0ABCDEF1/B0ABCDEF2/abcdefghijklmnopqrstuvwx") == [
        "webhook https://hooks.slack.com/services/***/***/***"
    ]


def test_a_segment_of_lower_case_words_longer_than_a_path_name_is_hidden() -> None:
    """Words joined by dashes can be a token as well as a path's name: past `SHOWN_SEGMENT_MAX_CHARS` one is
    taken for a token, and a URL holding it in its path does not show it in the log."""
    at_limit = "abcdefghijklmnop-abcdefghijklmnop-abcdef"
    past_it = at_limit + "g"
    assert len(at_limit) == SHOWN_SEGMENT_MAX_CHARS
    assert shown_url(f"https://hooks.example/{at_limit}/hook") == f"https://hooks.example/{at_limit}/***"
    assert shown_url(f"https://hooks.example/{past_it}/hook") == "https://hooks.example/***/***"
