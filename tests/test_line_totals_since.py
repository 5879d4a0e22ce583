"""A line's totals say since when they count: ``since`` in GET /api/streams/<id>/counts (docs/analytics.md).

A line's ``in`` and ``out`` are totals from the first frame it was judged on: a restart of segcast or
of the stream, or a move of the line, starts them again at 0, and without a time a watcher reads "12
in" fallen to "0 in". Each test runs the real app with the bundled model on a small generated scene.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.events.counts import counts_of
from server.http.keys import hub_key
from server.options import StreamOptions
from server.scene import Scene, write_h264
from tests.support.polling import eventually

Start = Callable[..., Awaitable[TestClient]]
COUNT_TIMEOUT_S = 90.0  # the bundled model on a busy 2-core machine: a few frames per second
SCENE = "scene:?seed=1&fps=10&width=320&height=192"
GATE = {"name": "gate", "points": [[0.5, 0], [0.5, 1]], "units": "fraction"}
YARD = {"name": "yard", "points": [[0, 0], [1, 0], [1, 1], [0, 1]], "units": "fraction"}


async def _counts(client: TestClient, stream_id: str = "cam") -> dict[str, Any]:
    response = await client.get(f"/api/streams/{stream_id}/counts")
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def _since(client: TestClient, line: str, other_than: float | None = None) -> float:
    """Line ``line``'s ``since`` once it has one other than ``other_than``: a frame judged it."""

    async def told() -> float | None:
        since = (await _counts(client))["lines"][line].get("since")
        return since if since is not None and since != other_than else None

    return await eventually(told, COUNT_TIMEOUT_S, f"line {line!r} counted since a frame other than {other_than}")


async def _newest_capture_time(client: TestClient) -> float:
    """The capture time of the newest frame processed (GET /tracks)."""
    capture_time: float = (await (await client.get("/api/streams/cam/tracks")).json())["capture_time"]
    return capture_time


async def _patch(client: TestClient, body: dict[str, Any]) -> None:
    response = await client.patch("/api/streams/cam", json=body)
    assert response.status == 200, await response.text()


async def test_a_line_counts_since_its_first_frame_and_keeps_it_through_a_change_that_keeps_the_line(
    start_server: Start,
) -> None:
    """New zones and a tuned ``confirm_s`` keep the line's totals, so its ``since``; a line added with
    them counts from a frame of its own, a later one."""
    started = time.time()
    client = await start_server(StreamConfig("cam", SCENE, options=StreamOptions.from_mapping({"lines": [GATE]})))
    since = await _since(client, "gate")
    assert started <= since <= await _newest_capture_time(client), "the wall-clock time of a frame it was judged on"

    await _patch(client, {"zones": [YARD], "lines": [{**GATE, "confirm_s": 0.3}, {**GATE, "name": "late"}]})
    late = await _since(client, "late")
    assert late > since, "a line added later counts from a frame of its own"
    assert (await _counts(client))["lines"]["gate"]["since"] == since, "the line and its totals were kept"


async def test_a_moved_line_counts_afresh_from_a_new_since(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", SCENE, options=StreamOptions.from_mapping({"lines": [GATE]})))
    since = await _since(client, "gate")
    await _patch(client, {"lines": [{**GATE, "points": [[0.4, 0], [0.4, 1]]}]})
    assert await _since(client, "gate", other_than=since) > since


async def test_a_restarted_stream_counts_its_lines_from_a_new_since(start_server: Start) -> None:
    """A new ``conf`` restarts the stream's inference with a fresh tracker and analytics, its reader going on."""
    client = await start_server(StreamConfig("cam", SCENE, options=StreamOptions.from_mapping({"lines": [GATE]})))
    since = await _since(client, "gate")
    await _patch(client, {"conf": 0.3})
    assert await _since(client, "gate", other_than=since) > since


async def test_a_file_streams_line_counts_since_a_wall_clock_time_and_one_added_after_its_end_since_none(
    start_server: Start, tmp_path: Path
) -> None:
    """A file's line counts since the wall-clock time its first frame was judged, not a media time; a line
    added once the file has ended has no next frame to count from: pending, with no ``since``."""
    clip = write_h264(Scene(seed=1, width=320, height=192), tmp_path / "clip.mp4", 10)
    started = time.time()
    options = StreamOptions.from_mapping({"lines": [GATE]})
    client = await start_server(StreamConfig("cam", str(clip), options=options))

    async def ended() -> bool:
        stream: dict[str, Any] = await (await client.get("/api/streams/cam")).json()
        return stream["state"] == "ended" and stream["frames_processed"] > 0

    await eventually(ended, COUNT_TIMEOUT_S, "the file processed to its end")
    since = (await _counts(client))["lines"]["gate"]["since"]
    assert started <= since <= await _newest_capture_time(client)
    await _patch(client, {"lines": [GATE, {**GATE, "name": "late"}]})
    lines = (await _counts(client))["lines"]
    assert lines["late"].get("pending") is True and lines["late"].get("since") is None
    assert lines["gate"]["since"] == since


async def test_since_is_told_by_the_counts_answer_never_as_a_count_an_mqtt_sensor_would_be_made_of(
    start_server: Start,
) -> None:
    """The frame message's ``counts`` become MQTT's and Home Assistant's sensors (`counts_of`): a time
    there would be a sensor reading 1.7e9 "gate since"."""
    client = await start_server(StreamConfig("cam", SCENE, options=StreamOptions.from_mapping({"lines": [GATE]})))
    await _since(client, "gate")
    assert client.app is not None
    hub = client.app[hub_key]

    async def frame_message() -> Mapping[str, Any] | None:
        """The newest frame message with counts, as the event outputs are handed it."""
        metadata = hub.latest_analysed.get("cam")
        return metadata if metadata is not None and "counts" in metadata else None

    names = counts_of(await eventually(frame_message, COUNT_TIMEOUT_S, "a frame message with counts"))
    assert set(names) == {"tracks", "lines_gate_in", "lines_gate_out"}
