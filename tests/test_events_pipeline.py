"""Event outputs in the running server: a real stream's track events reach the history while a dead
webhook fails on its own, visible in /metrics and /api/events/outputs, and the stream keeps going."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.events.config import EventsSettings, HistorySettings, WebhookSettings
from tests.support.dashboard import EVENT_OUTPUT_METRICS, dashboard_metrics, exported
from tests.support.polling import eventually
from tests.support.ports import held_closed_port

StartServer = Callable[..., Awaitable[TestClient]]


async def test_a_streams_events_are_kept_while_a_dead_webhook_fails_alone(
    start_server: StartServer, tmp_path: Path
) -> None:
    with held_closed_port() as port:  # refuses the webhook's connections for the whole test
        dead = f"http://127.0.0.1:{port}/hook"
        events = EventsSettings(history=HistorySettings(tmp_path / "events.db"), webhooks=(WebhookSettings(dead),))
        client = await start_server(StreamConfig("cam", "scene:?seed=1"), events=events)

        async def started() -> dict[str, Any] | None:
            body = await (await client.get("/api/events?stream=cam&type=track")).json()
            starts = [e for e in body["events"] if e["event"]["event"] == "start"]
            return starts[0] if starts else None

        stored = await eventually(started, timeout_s=60, what="a track start in the history")
        assert stored["event"]["stream"] == "cam" and stored["snapshot"] is not None
        snapshot = await client.get(stored["snapshot"])
        assert snapshot.status == 200 and (await snapshot.read())[:2] == b"\xff\xd8"

        async def webhook_failing() -> dict[str, Any] | None:
            outputs = (await (await client.get("/api/events/outputs")).json())["outputs"]
            hook = next(o for o in outputs if o["name"].startswith("webhook"))
            return hook if hook["state"] == "failing" else None

        hook = await eventually(webhook_failing, what="the webhook to be failing")
        assert hook["last_error"].startswith(f"connection refused by 127.0.0.1:{port} (")
        metrics = await (await client.get("/metrics")).text()
        assert f'segcast_event_output_up{{output="webhook http://127.0.0.1:{port}/***"}} 0.0' in metrics
        assert 'segcast_event_output_up{output="history"} 1.0' in metrics
        shown = {name for name in dashboard_metrics() if name.startswith(EVENT_OUTPUT_METRICS)}
        assert shown and all(exported(name, metrics) for name in shown), (
            "the Grafana dashboard shows metrics segcast exports"
        )

        before = (await (await client.get("/api/streams/cam")).json())["frames_processed"]

        async def still_running() -> bool:
            info = await (await client.get("/api/streams/cam")).json()
            return info["state"] == "live" and info["frames_processed"] > before

        await eventually(still_running, what="the stream to keep processing")
