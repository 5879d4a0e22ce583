"""/metrics for a stream that has never had a frame: its lines' crossing counters exist from its start."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp.test_utils import TestClient

from server.analytics.shapes import Line
from server.config import StreamConfig
from server.options import StreamOptions
from tests.support.polling import eventually
from tests.support.ports import held_closed_port

Start = Callable[..., Awaitable[TestClient]]


async def test_a_line_of_a_stream_that_never_went_live_has_its_crossing_series_at_zero(start_server: Start) -> None:
    """Before, its counter had no series until the camera's first frame: the first crossing then started
    the series at 1, and Prometheus' increase() and rate() left it out."""
    gate = Line("gate", ((0.0, 0.5), (1.0, 0.5)), classes=("disc",))
    door = Line("door", ((0.5, 0.0), (0.5, 1.0)))  # watches every class
    with held_closed_port() as port:
        options = StreamOptions(lines=(gate, door))
        client = await start_server(StreamConfig("cam", f"rtsp://127.0.0.1:{port}/s1", options=options))

        async def refused() -> bool:
            response = await client.get("/api/streams/cam")
            return (await response.json())["state"] in ("reconnecting", "failed")

        await eventually(refused, what="the camera refusing connections")
        text = await (await client.get("/metrics")).text()
    rows = {row.rsplit(" ", 1)[0]: row.rsplit(" ", 1)[1] for row in text.splitlines()}
    crossings = {row: n for row, n in rows.items() if row.startswith("segcast_line_crossings_total{")}
    gate_rows = {row for row in crossings if 'line="gate"' in row}
    assert gate_rows == {
        f'segcast_line_crossings_total{{stream="cam",line="gate",direction="{direction}",class="disc"}}'
        for direction in ("in", "out")
    }, "the class it is limited to, both ways"
    door_classes = {row.split('class="')[1].removesuffix('"}') for row in crossings if 'line="door"' in row}
    assert door_classes == {"disc", "square", "triangle"}, "every class the model knows"
    assert set(crossings.values()) == {"0"}
