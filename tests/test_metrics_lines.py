"""/metrics of lines' crossings: each line's total exists from its stream's start, never a series per class unused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp.test_utils import TestClient

from server.analytics.events import Counts
from server.analytics.shapes import Line
from server.config import StreamConfig
from server.http.metrics import line_crossing_samples, line_total_samples
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
    totals = {row: n for row, n in rows.items() if row.startswith("segcast_line_crossings_any_class_total{")}
    assert totals == {
        f'segcast_line_crossings_any_class_total{{stream="cam",line="{line}",direction="{direction}"}}': "0"
        for line in ("gate", "door")
        for direction in ("in", "out")
    }, "every line, both ways, at 0"
    crossings = {row: n for row, n in rows.items() if row.startswith("segcast_line_crossings_total{")}
    assert crossings == {
        f'segcast_line_crossings_total{{stream="cam",line="gate",direction="{direction}",class="disc"}}': "0"
        for direction in ("in", "out")
    }, "the class a line is limited to; none yet of a line that watches every class"


def test_a_line_watching_every_class_of_a_big_model_lists_its_total_and_only_the_classes_that_crossed() -> None:
    """Every class of an 80-class model at 0 made 160 series of each line drawn with *Add line*."""
    config = StreamConfig("cam", "scene:", options=StreamOptions(lines=(Line("door", ((0.5, 0.0), (0.5, 1.0))),)))
    counts = Counts(lines={"door": {"person": {"in": 2}, "car": {"out": 1}}})

    totals = dict((tuple(labels.values()), n) for labels, n in line_total_samples({"cam": counts}, {"cam": config}))
    by_class = dict(
        (tuple(labels.values()), n) for labels, n in line_crossing_samples({"cam": counts}, {"cam": config})
    )

    assert totals == {("cam", "door", "in"): 2, ("cam", "door", "out"): 1}
    assert by_class == {
        ("cam", "door", "in", "person"): 2,
        ("cam", "door", "out", "person"): 0,
        ("cam", "door", "in", "car"): 0,
        ("cam", "door", "out", "car"): 1,
    }
