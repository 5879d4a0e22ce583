"""Webhooks as an integrator's flows (n8n, Zapier, Node-RED) use them: each gets only the events its filters let
through, one event its receiver keeps failing costs only its own retries, events too old are dropped, a receiver
with a private CA is reached over HTTPS, a webhook keeps the name it was given, and a receiver refusing every
event costs a line a window."""

from __future__ import annotations

import logging
import ssl
import time
import tomllib
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from server.config import StreamConfig, load_config
from server.events.api import event_outputs_key, setup_events_api
from server.events.config import EventsSettings, WebhookSettings, events_settings
from server.events.outputs import EventOutputs
from server.events.sink import DROP_LOG_INTERVAL_S, OutEvent
from server.events.webhook import WebhookSink
from server.persist import write_config
from tests.conftest import ClientFactory
from tests.support.certificates import self_signed
from tests.support.event_packets import with_events
from tests.support.polling import eventually
from tests.support.webhook_receiver import Receiver, serving

NAME = "webhook under test"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving() as receiver:
        yield receiver


class Clock:
    """Monotonic seconds for a webhook's backoff and quiet windows in the log, moved only by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def hooks(*tables: Mapping[str, Any], folder: Path = Path()) -> tuple[WebhookSettings, ...]:
    """``[[events.webhooks]]`` tables as a config file gives them, read as segcast reads them."""
    return events_settings({"webhooks": list(tables)}, folder).webhooks


def track(stream: str = "door", track_id: int = 1) -> dict[str, Any]:
    return {"type": "track", "v": 1, "stream": stream, "event": "start", "id": track_id, "time": time.time()}


def zone(kind: str, name: str, stream: str = "door", track_id: int = 1) -> dict[str, Any]:
    return {"type": kind, "v": 1, "stream": stream, "id": track_id, "zone": name, "time": time.time()}


def line(name: str, stream: str = "door") -> dict[str, Any]:
    return {
        "type": "line_cross",
        "v": 1,
        "stream": stream,
        "id": 1,
        "line": name,
        "direction": "in",
        "time": time.time(),
    }


def said(caplog: pytest.LogCaptureFixture, words: str = "") -> list[str]:
    messages = (record.getMessage() for record in caplog.records if record.name.startswith("server.events"))
    return [message for message in messages if words in message]


async def settled(webhook: WebhookSink, events: int) -> None:
    """Wait until ``events`` are delivered, given up on or dropped."""

    async def all_settled() -> bool:
        health = webhook.health()
        return health.delivered + health.failed + health.dropped == events

    await eventually(all_settled, what=f"{events} events to be settled")


async def test_a_webhook_gets_only_the_events_its_filters_let_through() -> None:
    """Every webhook got every event: on Zapier, Make or n8n's cloud each POST is a billed task, where a flow
    wants one type of one zone."""
    async with AsyncExitStack() as stack:
        # Given a webhook for the porch zone's entries and loitering, one for the yard camera, one for a line
        porch, yard, threshold = [await stack.enter_async_context(serving()) for _ in range(3)]
        outputs = EventOutputs(
            EventsSettings(
                webhooks=hooks(
                    {"url": porch.url, "types": ["zone_enter", "loiter"], "zones": ["porch"]},
                    {"url": yard.url, "streams": ["yard"]},
                    {"url": threshold.url, "lines": ["threshold"], "zones": ["gate"]},
                )
            )
        )
        await outputs.start()
        try:
            # When the door camera and the yard camera have events of every kind
            door = [
                track(),
                zone("zone_enter", "porch"),
                zone("zone_exit", "porch"),
                zone("zone_enter", "garden"),
                zone("loiter", "porch"),
                line("threshold"),
                line("side"),
            ]
            outputs.on_packet(with_events(1, door, "door"))
            outputs.on_packet(with_events(2, [zone("zone_enter", "porch", "yard"), track("yard")], "yard"))

            async def delivered() -> bool:
                return [health.delivered for health in outputs.health()] == [3, 2, 1]

            await eventually(delivered, what="each webhook's events")
        finally:
            await outputs.stop()
    # Then each got what its filters let through, a track event no zone's or line's
    received = [
        [(body["stream"], body["type"], body.get("zone", body.get("line"))) for _, body in hook.requests]
        for hook in (porch, yard, threshold)
    ]
    assert received == [
        [("door", "zone_enter", "porch"), ("door", "loiter", "porch"), ("yard", "zone_enter", "porch")],
        [("yard", "zone_enter", "porch"), ("yard", "track", None)],
        [("door", "line_cross", "threshold")],
    ]
    # And what a filter kept out is counted nowhere: not queued, not dropped
    assert [(health.queued, health.dropped, health.failed) for health in outputs.health()] == [(0, 0, 0)] * 3


def test_an_unknown_event_type_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError) as refused:
        hooks({"url": "https://n8n.local/webhook/porch", "types": ["zone_entry"]})
    assert str(refused.value) == (
        'events.webhooks[0].types: unknown event type "zone_entry"; known: track, zone_enter, zone_exit, loiter, '
        "line_cross; did you mean 'zone_enter'?"
    )


def test_streams_zones_and_lines_are_names_of_their_own_not_checked_against_what_runs_now() -> None:
    """A camera, zone or line may be added after the webhook: only the name's spelling is checked."""
    (hook,) = hooks({"url": "https://n8n.local/webhook/x", "streams": ["cam-to-come"], "zones": ["z"], "lines": ["l"]})
    assert (hook.streams, hook.zones, hook.lines) == (("cam-to-come",), ("z",), ("l",))


@pytest.mark.parametrize(
    ("table", "refusal"),
    [
        ({"streams": ["front door"]}, "events.webhooks[0].streams: expected a list of names of 1 to 64 ASCII letters"),
        ({"zones": "porch"}, "events.webhooks[0].zones: expected a list of names"),
        ({"zones": []}, "events.webhooks[0].zones: an empty list lets no event through"),
        ({"lines": [7]}, "events.webhooks[0].lines[0]: expected text, got the number 7: quote it"),
        (
            {"types": ["track"], "zones": ["porch"]},
            'events.webhooks[0].zones: no event of types = ["track"] has a zone',
        ),
        ({"types": ["zone_enter"], "lines": ["l"]}, 'events.webhooks[0].lines: no event of types = ["zone_enter"] has'),
        ({"name": "n8n porch"}, "events.webhooks[0].name: expected 1 to 64 ASCII letters"),
        ({"name": 7}, "events.webhooks[0].name: expected text, got the number 7"),
        ({"max_event_age_s": -1}, "events.webhooks[0].max_event_age_s: expected a number from 0 to 86400"),
        ({"ca_file": "missing.pem"}, "events.webhooks[0].ca_file: 'missing.pem' is not a file"),
    ],
    ids=[
        "stream",
        "not-a-list",
        "empty",
        "number",
        "track-in-a-zone",
        "zone-on-a-line",
        "name",
        "name-number",
        "age",
        "ca",
    ],
)
def test_a_filter_name_or_file_that_cannot_work_is_refused_naming_its_key(
    tmp_path: Path, table: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(ValueError) as refused:
        hooks({"url": "https://n8n.local/webhook/x", **table}, folder=tmp_path)
    assert str(refused.value).startswith(refusal), str(refused.value)


def test_a_ca_file_for_a_plain_http_url_is_refused(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    with pytest.raises(ValueError, match=r"events\.webhooks\[0\]\.ca_file: checks the receiver's TLS certificate"):
        hooks({"url": "http://n8n.local/webhook/x", "ca_file": cert.name}, folder=tmp_path)


def test_a_ca_file_that_holds_no_certificate_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match=r"events\.webhooks\[0\]\.ca_file: 'ca\.pem' holds no PEM certificate"):
        hooks({"url": "https://n8n.local/webhook/x", "ca_file": "ca.pem"}, folder=tmp_path)


async def test_an_event_its_receiver_keeps_failing_costs_only_its_own_retries(receiver: Receiver) -> None:
    """A receiver answering 500 to every loiter (its branch of the flow broken) made every later event late, more
    and more: the doubling wait went on from the loiter given up to the track after it, and on."""
    # Given a receiver that answers 500 to each loiter and takes each track, and a webhook whose waits are counted
    retries = 3
    receiver.statuses = ([500] * (retries + 1) + [200]) * 10
    clock = Clock()
    waits: list[tuple[int, float]] = []  # before which attempt (counted from 0) the webhook waited, and how long

    async def sleep(seconds: float) -> None:
        waits.append((receiver.attempts, seconds))
        clock.now += seconds

    (settings,) = hooks({"url": receiver.url, "retries": retries})
    webhook = WebhookSink(settings, NAME, clock=clock, sleep=sleep)
    await webhook.start()
    try:
        # When ten loiters and ten tracks come in turn
        for pair in range(10):
            webhook.offer(OutEvent(zone("loiter", "porch", track_id=pair), "door", time.time()))
            webhook.offer(OutEvent(track(track_id=pair), "door", time.time()))
        await settled(webhook, 20)
    finally:
        await webhook.stop()
    # Then each track goes right after the loiter before it was given up on, without a wait
    attempts = retries + 2  # a loiter's, then its track's
    assert [body["type"] for _, body in receiver.requests] == (["loiter"] * (retries + 1) + ["track"]) * 10
    # And each loiter's retries wait the first wait each (its receiver answers: it is up), the same for the tenth
    first_s = webhook.backoff.first_s
    assert waits == [(pair * attempts + retry, first_s) for pair in range(10) for retry in range(1, retries + 1)]
    assert (webhook.health().delivered, webhook.health().failed) == (10, 10)


async def test_an_event_older_than_max_event_age_s_is_dropped_counted_and_told(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """An event that waited an hour behind a receiver that was down still went out: a notification of who was
    at the door an hour ago, as if now."""
    (settings,) = hooks({"url": receiver.url})  # the default limit
    webhook = WebhookSink(settings, NAME)
    await webhook.start()
    try:
        with caplog.at_level(logging.WARNING, logger="server.events"):
            webhook.offer(OutEvent(track(track_id=1), "door", time.time() - 3600))
            webhook.offer(OutEvent(track(track_id=2), "door", time.time()))
            await settled(webhook, 2)
    finally:
        await webhook.stop()
    assert [body["id"] for _, body in receiver.requests] == [2]
    health = webhook.health()
    assert (health.delivered, health.dropped, health.failed, health.queued) == (1, 1, 0, 0)
    assert said(caplog) == [
        f"{NAME}: dropped 1 event(s) older than max_event_age_s = 600 s by the time they could be sent "
        "(latest a track of door, 3600 s old)"
    ]


async def test_max_event_age_s_0_sends_an_event_however_old(receiver: Receiver) -> None:
    (settings,) = hooks({"url": receiver.url, "max_event_age_s": 0})
    webhook = WebhookSink(settings, NAME)
    await webhook.start()
    try:
        webhook.offer(OutEvent(track(), "door", time.time() - 86400))
        await settled(webhook, 1)
    finally:
        await webhook.stop()
    assert webhook.health().delivered == 1


@asynccontextmanager
async def tls_serving(cert: Path, key: Path) -> AsyncIterator[Receiver]:
    """A `Receiver` at ``https://127.0.0.1:<port>/hook`` with ``cert``, which no system store trusts."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
        receiver.url = f"https://127.0.0.1:{runner.addresses[0][1]}/hook"
        yield receiver
    finally:
        await runner.cleanup()


async def test_https_to_a_receiver_of_a_private_ca_is_delivered_with_ca_file(tmp_path: Path) -> None:
    """Only a process-wide SSL_CERT_FILE could reach a Node-RED with its own certificate, in place of every CA."""
    cert, key = self_signed(tmp_path)
    async with tls_serving(cert, key) as receiver:
        # Given one webhook trusting the receiver's CA (beside the config file), one with the system's CAs
        trusting, system = hooks(
            {"url": receiver.url, "ca_file": cert.name, "retries": 0, "name": "trusting"},
            {"url": receiver.url, "retries": 0, "name": "system"},
            folder=tmp_path,
        )
        outputs = EventOutputs(EventsSettings(webhooks=(trusting, system)))
        await outputs.start()
        try:
            outputs.on_packet(with_events(1, [track()], "door"))

            async def both_settled() -> bool:
                return all(health.delivered + health.failed == 1 for health in outputs.health())

            await eventually(both_settled, what="the event delivered or given up by each")
        finally:
            await outputs.stop()
    # Then the one with ca_file delivered it; the other could not trust the receiver
    delivered, refused = outputs.health()
    assert (delivered.delivered, refused.failed) == (1, 1)
    address = urlsplit(receiver.url).netloc
    assert (refused.last_error or "").startswith(f"TLS failed: the certificate of {address} was not accepted")
    assert trusting.ca_file == cert


async def test_a_named_webhook_keeps_its_name_whatever_the_others_do(aiohttp_client: ClientFactory) -> None:
    """Named by URL, two n8n webhooks were ``webhook https://n8n.local/webhook/*** [0]`` and ``[1]``: deleting the
    first renamed the second, and with it its /metrics series."""
    porch = {"url": "https://n8n.local/webhook/4f1c", "name": "n8n-porch"}
    door = {"url": "https://n8n.local/webhook/9a2e", "name": "n8n-door"}
    both = EventOutputs(EventsSettings(webhooks=hooks(porch, door)))
    one_deleted = EventOutputs(EventsSettings(webhooks=hooks(door)))
    assert [health.name for health in both.health()] == ["webhook n8n-porch", "webhook n8n-door"]
    assert [health.name for health in one_deleted.health()] == ["webhook n8n-door"]
    app = web.Application()
    app[event_outputs_key] = both
    setup_events_api(app)
    client = await aiohttp_client(app)
    listed = (await (await client.get("/api/events/outputs")).json())["outputs"]
    assert [output["name"] for output in listed] == ["webhook n8n-porch", "webhook n8n-door"]


def test_two_webhooks_of_one_name_are_refused() -> None:
    with pytest.raises(ValueError) as refused:
        hooks({"url": "https://a.example/x", "name": "flow"}, {"url": "https://b.example/y", "name": "flow"})
    refusal = "events.webhooks[1].name: 'flow' is events.webhooks[0]'s name already: give each its own"
    assert str(refused.value) == refusal


async def test_a_receiver_that_refuses_every_event_costs_a_line_a_window_not_a_line_an_event(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """An n8n flow answering 404 (its test URL, not listening) wrote a warning for each event: 49 lines in 41 s
    from one quiet camera."""
    # Given a receiver that refuses every event
    receiver.statuses = [404] * 21
    clock = Clock()
    (settings,) = hooks({"url": receiver.url})
    webhook = WebhookSink(settings, NAME, clock=clock)
    await webhook.start()
    try:
        with caplog.at_level(logging.WARNING, logger="server.events"):
            # When twenty events come within one quiet window, and one more after it
            for track_id in range(20):
                webhook.offer(OutEvent(track(track_id=track_id), "door", time.time()))
            await settled(webhook, 20)
            within = said(caplog, "gave up")
            caplog.clear()
            clock.now += DROP_LOG_INTERVAL_S
            webhook.offer(OutEvent(track(track_id=20), "door", time.time()))
            await settled(webhook, 21)
            after = said(caplog, "gave up")
    finally:
        await webhook.stop()
    # Then the window has one line naming the first, and the next line counts the rest, naming the latest
    first, *_, latest = (delivery for delivery, _ in receiver.requests)
    assert within == [
        f"[door] {NAME}: answered HTTP 404; not retried; gave up on the track event with event_id {first}"
    ]
    assert after == [
        f"[door] {NAME}: answered HTTP 404; not retried; gave up on 20 events since this was last logged, the "
        f"latest the track event with event_id {latest}"
    ]


def test_the_new_webhook_keys_are_kept_when_the_file_is_saved(tmp_path: Path) -> None:
    self_signed(tmp_path)
    path = tmp_path / "segcast.toml"
    path.write_text(
        "[[events.webhooks]]\n"
        'url = "https://n8n.local/webhook/4f1c"\n'
        'name = "n8n-porch"\n'
        'types = ["zone_enter", "loiter"]\n'
        'streams = ["door"]\n'
        'zones = ["porch"]\n'
        'lines = ["threshold"]\n'
        'ca_file = "cert.pem"\n'
        "max_event_age_s = 120\n"
    )
    settings = load_config(path)
    write_config(settings, [StreamConfig("door", "scene:?seed=1")])
    assert load_config(path).events == settings.events
    saved = tomllib.loads(path.read_text())["events"]["webhooks"][0]
    assert saved["name"] == "n8n-porch" and saved["types"] == ["zone_enter", "loiter"]
    assert (saved["streams"], saved["zones"], saved["lines"]) == (["door"], ["porch"], ["threshold"])
    assert saved["max_event_age_s"] == 120 and Path(tmp_path, saved["ca_file"]) == tmp_path / "cert.pem"
