"""What a consumer of the event outputs relies on: polling the history forward without missing an event,
one id per event across MQTT, webhooks and the history, Home Assistant never shown the last run's counts
as current, and the outputs' errors told as past once they are."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings
from server.events.api import event_outputs_key
from server.events.config import EventsSettings, HistorySettings, MqttSettings, WebhookSettings
from server.events.history.query import EventQuery
from server.events.history.writer import HistorySink
from server.events.outputs import EventOutputs
from server.events.sink import SinkState
from server.events.webhook import WebhookSink
from server.http.keys import hub_key
from server.inference.models import BUNDLED_MODEL
from server.sources.base import StreamState
from tests.support.event_packets import with_counts, with_events
from tests.support.mosquitto import Broker
from tests.support.polling import eventually
from tests.support.webhook_receiver import Receiver, serving
from tests.test_events_mqtt import listening, on, retained_messages, running, state_is

ClientFactory = Callable[..., Awaitable[TestClient]]

#: The history's schema as the release before event ids made it: a file it wrote must keep working.
PREVIOUS_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    stream TEXT NOT NULL,
    type TEXT NOT NULL,
    class TEXT,
    zone TEXT,
    line TEXT,
    data TEXT NOT NULL,
    snapshot BLOB
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE INDEX IF NOT EXISTS events_stream_time ON events (stream, time);
CREATE INDEX IF NOT EXISTS events_stream_id ON events (stream, id);
CREATE INDEX IF NOT EXISTS events_stream_type_id ON events (stream, type, id);
"""


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving() as receiver:
        yield receiver


def zone_enter(track_id: int, when: float) -> dict[str, Any]:
    return {"type": "zone_enter", "v": 1, "stream": "cam", "id": track_id, "zone": "door", "time": when}


def line_cross(track_id: int, when: float) -> dict[str, Any]:
    return {
        "type": "line_cross",
        "v": 1,
        "stream": "cam",
        "id": track_id,
        "line": "gate",
        "direction": "in",
        "time": when,
    }


async def history_app(aiohttp_client: ClientFactory, path: Path) -> TestClient:
    events = EventsSettings(history=HistorySettings(path))
    return await aiohttp_client(create_app(Settings(model=str(BUNDLED_MODEL), events=events)))


async def poll_after(client: TestClient, cursor: int) -> tuple[list[dict[str, Any]], int]:
    """One poll as a client makes it: every page from ``cursor`` on, following ``next``; the events, the new cursor."""
    url: str | None = f"/api/events?after={cursor}&limit=1"
    events: list[dict[str, Any]] = []
    while url is not None:
        response = await client.get(url)
        assert response.status == 200, await response.text()
        page = await response.json()
        events += page["events"]
        url = page["next"]
    return events, events[-1]["id"] if events else cursor


# -- polling the history -------------------------------------------------------------------------------


async def test_polling_after_the_last_id_gets_a_crossing_stored_after_newer_events(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """A crossing is stamped with its frame's time but stored once confirmed, after later events: a
    poller asking ``since=<newest time seen>`` never saw it. ``after=<newest id seen>`` does."""
    client = await history_app(aiohttp_client, tmp_path / "events.db")
    hub = client.app[hub_key]
    now = time.time()

    async def stored(count: int) -> bool:
        return len((await (await client.get("/api/events?limit=100")).json())["events"]) == count

    hub.publish_threadsafe(with_events(1, [zone_enter(1, now - 10), zone_enter(2, now - 5)]))
    await eventually(lambda: stored(2), what="the first two events")
    first, cursor = await poll_after(client, 0)
    assert [e["event"]["time"] for e in first] == [now - 10, now - 5]  # oldest first, a page each
    newest_time_seen = first[-1]["event"]["time"]

    # Track 3 crossed at now - 8, confirmed (and stored) only after track 2's entry at now - 5.
    hub.publish_threadsafe(with_events(2, [line_cross(3, now - 8), zone_enter(4, now - 4)]))
    await eventually(lambda: stored(4), what="the crossing and the entry after it")
    later, cursor = await poll_after(client, cursor)
    assert [(e["event"]["type"], e["event"]["id"]) for e in later] == [("line_cross", 3), ("zone_enter", 4)]
    by_time = await (await client.get(f"/api/events?since={newest_time_seen}")).json()
    assert "line_cross" not in [e["event"]["type"] for e in by_time["events"]], "why polling by time misses it"

    nothing, unchanged = await poll_after(client, cursor)
    assert nothing == [] and unchanged == cursor
    # Filters go with the cursor, and the next link keeps them.
    crossings = await (await client.get("/api/events?after=0&type=line_cross&limit=1")).json()
    assert [e["event"]["id"] for e in crossings["events"]] == [3] and crossings["next"] is None


@pytest.mark.parametrize("key", ["since", "until"])
async def test_milliseconds_for_since_or_until_are_refused_with_a_hint(
    aiohttp_client: ClientFactory, tmp_path: Path, key: str
) -> None:
    """Grafana's ${__from} and Date.now() are milliseconds: read as seconds they matched nothing, silently."""
    client = await history_app(aiohttp_client, tmp_path / "events.db")
    response = await client.get(f"/api/events?{key}={int(time.time() * 1000)}")
    assert response.status == 400
    message = (await response.json())["error"]
    assert message.startswith(f"{key}:") and "milliseconds? divide by 1000" in message
    next_year = await client.get(f"/api/events?{key}={time.time() + 365 * 86400}")
    assert next_year.status == 200  # a time to come is still a time


# -- one id per event --------------------------------------------------------------------------------


async def test_every_output_carries_one_id_per_event_the_same_in_each(
    broker: Broker, receiver: Receiver, tmp_path: Path
) -> None:
    """A track that enters a zone twice makes two events with the same ``id`` (the track's): MQTT's
    duplicates and the webhook's retries had nothing to tell them apart by, nor to match the history's
    rows with. The id is drawn once per event, as it enters the outputs, for all of them."""
    receiver.statuses = [503]  # the first event's first attempt: retried
    settings = EventsSettings(
        history=HistorySettings(tmp_path / "events.db"),
        webhooks=(WebhookSettings(receiver.url, retries=2),),
        mqtt=MqttSettings("127.0.0.1", broker.port),
    )
    outputs = EventOutputs(settings)
    history, webhook = outputs.history, outputs.sinks[1]
    assert history is not None and isinstance(webhook, WebhookSink)
    webhook.backoff.first_s = 0.01
    now = time.time()
    async with listening(broker.port, "segcast/+/events/#") as received:
        await outputs.start()
        try:
            outputs.on_packet(with_events(1, [zone_enter(7, now - 2)]))
            outputs.on_packet(with_events(2, [zone_enter(7, now - 1)]))

            async def everywhere() -> bool:
                delivered = [sink.health().delivered for sink in outputs.sinks]
                return delivered == [2, 2, 2] and len(received) == 2

            await eventually(everywhere, what="both events in the history, at the webhook and at the broker")
        finally:
            await outputs.stop()
    stored = [row.data["event_id"] for row in reversed(history.query(EventQuery()))]
    assert len(set(stored)) == 2 and all(stored), "one id per event, though both are track 7's"
    assert [delivery for delivery, _ in receiver.requests] == [stored[0], stored[0], stored[1]]
    assert [body["event_id"] for _, body in receiver.requests] == [stored[0], stored[0], stored[1]]
    assert [event["event_id"] for event in on(received, "segcast/cam/events/zone_enter")] == stored


async def test_a_history_file_from_before_event_ids_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    old = zone_enter(1, time.time() - 60)
    with closing(sqlite3.connect(path)) as db:
        db.executescript(PREVIOUS_SCHEMA)
        row = (old["time"], json.dumps(old))
        db.execute("INSERT INTO events (time, stream, type, data) VALUES (?, 'cam', 'zone_enter', ?)", row)
        db.commit()
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    history = outputs.history
    assert isinstance(history, HistorySink)
    await outputs.start()
    try:
        outputs.on_packet(with_events(1, [zone_enter(2, time.time())]))

        async def stored() -> bool:
            return history.health().delivered == 1

        await eventually(stored, what="a new event stored beside the old one")
    finally:
        await outputs.stop()
    new, previous = history.query(EventQuery())
    assert previous.data == old  # stored without one, read back as it was
    assert new.data["event_id"] and new.id > previous.id
    assert [e.id for e in history.query(EventQuery(after=previous.id))] == [new.id]


# -- Home Assistant after a restart --------------------------------------------------------------------


async def test_after_a_restart_a_stream_is_online_only_once_this_runs_counts_are_out(broker: Broker) -> None:
    """The stream said ``online`` as it went live, and its first counts came a few seconds later: Home
    Assistant showed the previous run's retained counts (2 people in the zone) as the scene now."""
    settings = MqttSettings("127.0.0.1", broker.port)
    before = {"zones": {"door": {"objects": 2}}}
    async with running(settings) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        outputs.on_packet(with_counts(1, before, tracks=2))

        async def counted() -> bool:
            counts = await retained_messages(broker.port, "segcast/cam/counts")
            return counts.get("segcast/cam/counts") == b'{"tracks": 2, "zones_door_objects": 2}'

        await eventually(counted, what="the first run's counts retained")

    async with listening(broker.port, "segcast/#") as received, running(settings) as (outputs, sink):
        await state_is(sink, SinkState.OK)
        outputs.on_stream_state("cam", StreamState.LIVE)
        # A state sent after cam's went live: once it is at the subscriber, cam's `online` would be too.
        outputs.on_stream_state("yard", StreamState.STARTING)

        async def yard_offline() -> bool:
            return any(topic == "segcast/yard/availability" for topic, _, _ in received)

        await eventually(yard_offline, what="yard's availability")
        cam = [payload for topic, payload, _ in received if topic == "segcast/cam/availability"]
        assert b"online" not in cam, "online before any count of this run"

        outputs.on_packet(with_counts(1, {"zones": {"door": {"objects": 0}}}, tracks=0))

        async def online() -> bool:
            return any(message[:2] == ("segcast/cam/availability", b"online") for message in received)

        await eventually(online, what="cam online once its counts are out")
    topics = [(topic, payload) for topic, payload, _ in received]
    went_online = topics.index(("segcast/cam/availability", b"online"))
    fresh = [i for i, (topic, payload) in enumerate(topics) if topic == "segcast/cam/counts" and i < went_online]
    assert fresh and json.loads(topics[fresh[-1]][1]) == {"tracks": 0, "zones_door_objects": 0}


# -- the outputs' state -----------------------------------------------------------------------------------


async def test_an_error_the_output_recovered_from_is_told_with_when_it_happened(
    aiohttp_client: ClientFactory, receiver: Receiver
) -> None:
    """After recovery the outputs said ``"state": "ok"`` beside the old ``last_error``, as if it were now."""
    receiver.statuses = [500]
    events = EventsSettings(webhooks=(WebhookSettings(receiver.url, retries=1),))
    client = await aiohttp_client(create_app(Settings(model=str(BUNDLED_MODEL), events=events)))
    webhook = client.app[event_outputs_key].sinks[0]
    assert isinstance(webhook, WebhookSink)
    webhook.backoff.first_s = 0.01
    started = time.time()
    client.app[hub_key].publish_threadsafe(with_events(1, [zone_enter(1, started)]))

    async def recovered() -> dict[str, Any] | None:
        (output,) = (await (await client.get("/api/events/outputs")).json())["outputs"]
        return output if output["delivered"] == 1 else None

    output = await eventually(recovered, what="the event delivered on its retry")
    assert output["state"] == "ok" and "HTTP 500" in output["last_error"]
    assert started <= output["last_error_at"] <= time.time()
    assert receiver.attempts == 2
