"""Zones and lines through the real app: PATCH-able stream options, counts, the frame message, /metrics."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig, load_config
from server.config_values import ConfigError
from server.events.config import EventsSettings, HistorySettings
from server.options import StreamOptions
from tests.support.dashboard import EVENT_OUTPUT_METRICS, REMOTE_MODEL_METRICS, dashboard_metrics, exported
from tests.support.polling import eventually

Start = Callable[..., Awaitable[TestClient]]
COUNT_TIMEOUT_S = 90.0  # the bundled model on a busy 2-core machine: a few frames per second

WHOLE_FRAME = {"name": "all", "points": [[0, 0], [1, 0], [1, 1], [0, 1]], "units": "fraction"}
MIDDLE = {"name": "middle", "points": [[0.5, 0], [0.5, 1]], "units": "fraction", "anchor": "centre"}
#: A scene whose objects cross `MIDDLE` early and again soon after, past the seconds the model takes
#: to load (the truth: frames 78, 139 and 154 at 15 fps; the bundled model counts each 8 or 9 frames
#: later). Seed 7's first crossing of it is at frame 296: 20 s of waiting.
CROSSING_SCENE = "scene:?seed=67"
CAM_TABLE = '[[streams]]\nid = "cam"\nuri = "scene:"\n'


def _toml_table(shape: dict[str, Any]) -> str:
    """``shape`` as the inside of a TOML inline table (its values are also JSON)."""
    return ", ".join(f"{key} = {json.dumps(value)}" for key, value in shape.items())


async def _counts(client: TestClient, stream_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/streams/{stream_id}/counts")
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_zones_and_lines_are_patched_counted_and_shown_in_frames_and_metrics(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", CROSSING_SCENE))
    response = await client.patch("/api/streams/cam", json={"zones": [WHOLE_FRAME], "lines": [MIDDLE]})
    assert response.status == 200, await response.text()
    shown = (await response.json())["options"]
    assert shown["zones"][0]["name"] == "all" and shown["lines"][0]["anchor"] == "centre"
    empty = await _counts(client, "cam")
    assert empty["lines"]["middle"]["in"] + empty["lines"]["middle"]["out"] == 0

    async def occupied() -> dict[str, Any] | None:
        counts = await _counts(client, "cam")
        return counts if counts["zones"]["all"]["objects"] > 0 else None

    counts = await eventually(occupied, COUNT_TIMEOUT_S, "an object in the zone")
    assert sum(counts["zones"]["all"]["by_class"].values()) == counts["zones"]["all"]["objects"]

    async def track_in_zone() -> dict[str, Any] | None:
        # A later read than the counts: the object seen there may be gone by now, so wait for one again.
        tracks = (await (await client.get("/api/streams/cam/tracks")).json())["tracks"]
        return next((track for track in tracks if "all" in track["zones"]), None)

    await eventually(track_in_zone, COUNT_TIMEOUT_S, "a track that says it is in the zone")

    async def crossed() -> dict[str, Any] | None:
        line = (await _counts(client, "cam"))["lines"]["middle"]
        return line if line["in"] + line["out"] > 0 else None

    line = await eventually(crossed, COUNT_TIMEOUT_S, "a crossing of the middle line")
    text = await (await client.get("/metrics")).text()
    assert 'segcast_zone_objects{stream="cam",zone="all",class="' in text
    assert 'segcast_line_crossings_total{stream="cam",line="middle",direction="' in text
    assert "# TYPE segcast_zone_dwell_seconds histogram" in text
    assert 'segcast_zone_dwell_seconds_bucket{stream="cam",zone="all",le="+Inf"}' in text
    total = sum(
        float(row.rsplit(" ", 1)[1]) for row in text.splitlines() if row.startswith("segcast_line_crossings_total{")
    )
    assert total >= line["in"] + line["out"]
    # This server has no event outputs: tests/test_events_pipeline.py checks their metrics.
    used = {name for name in dashboard_metrics() if not name.startswith((EVENT_OUTPUT_METRICS, REMOTE_MODEL_METRICS))}
    assert used and all(exported(name, text) for name in used), "the Grafana dashboard shows metrics segcast exports"


async def test_every_line_and_the_classes_it_is_limited_to_are_in_metrics_before_their_first_crossing(
    start_server: Start,
) -> None:
    """Prometheus' ``increase()`` takes a series' first sample as its start: a series that appeared
    with its first crossing, at 1, had that crossing left out of the dashboard's counts."""
    client = await start_server(StreamConfig("cam", "scene:?seed=7"))
    every = {"name": "every", "points": [[0.5, 0], [0.5, 1]], "units": "fraction"}
    discs = {"name": "discs", "points": [[0, 0.5], [1, 0.5]], "units": "fraction", "classes": ["disc"]}
    response = await client.patch("/api/streams/cam", json={"lines": [every, discs]})
    assert response.status == 200, await response.text()

    async def listed() -> dict[str, float] | None:
        text = await (await client.get("/metrics")).text()
        rows = {
            row.rsplit(" ", 1)[0]: float(row.rsplit(" ", 1)[1])
            for row in text.splitlines()
            if row.startswith(("segcast_line_crossings_total{", "segcast_line_crossings_any_class_total{"))
        }
        return rows or None

    rows = await eventually(listed, COUNT_TIMEOUT_S, "the lines' counts in /metrics")
    assert {row for row in rows if row.startswith("segcast_line_crossings_any_class_total{")} == {
        f'segcast_line_crossings_any_class_total{{stream="cam",line="{line}",direction="{direction}"}}'
        for line in ("every", "discs")
        for direction in ("in", "out")
    }
    discs_rows = {row for row in rows if 'line="discs"' in row and row.startswith("segcast_line_crossings_total{")}
    assert discs_rows == {
        f'segcast_line_crossings_total{{stream="cam",line="discs",direction="{direction}",class="disc"}}'
        for direction in ("in", "out")
    }
    every_by_class: dict[str, float] = {}
    for row, n in rows.items():
        if 'line="every"' in row and row.startswith("segcast_line_crossings_total{"):
            name = row.split('class="')[1].removesuffix('"}')
            every_by_class[name] = every_by_class.get(name, 0) + n
    assert all(n > 0 for n in every_by_class.values()), "a class of a line watching every class once it crossed"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"zones": [{"name": "z", "points": [[0, 0], [9, 9], [9, 0], [0, 9]]}]}, ("body.zones[0].points", "itself")),
        ({"zones": [WHOLE_FRAME, WHOLE_FRAME]}, ("body.zones[1].name", "twice")),
        ({"lines": [{"name": "l", "points": [[0, 0], [2, 0.5]], "units": "fraction"}]}, ("body.lines[0].points",)),
        ({"zones": [{**WHOLE_FRAME, "classes": ["unicorn"]}]}, ("zones[0].classes", "unicorn")),
        ({"zones": "everywhere"}, ("body.zones",)),
    ],
)
async def test_bad_zones_and_lines_are_a_400_and_the_stream_keeps_running(
    start_server: Start, body: dict[str, Any], words: tuple[str, ...]
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=7"))
    response = await client.patch("/api/streams/cam", json=body)
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    for word in words:
        assert word in error
    stream = await (await client.get("/api/streams/cam")).json()
    assert stream["options"]["zones"] == [] and stream["state"] != "error"


async def test_a_line_in_fractions_without_units_is_told_of_units_first_as_a_zone_is(start_server: Start) -> None:
    """It led with "two consecutive points are the same or less than a pixel apart; a line needs length",
    true only of the pixels it was never meant to be in."""
    client = await start_server(StreamConfig("cam", "scene:?seed=7"))
    across = {"name": "door", "points": [[0.05, 0.7], [0.95, 0.7]]}
    response = await client.patch("/api/streams/cam", json={"lines": [across]})
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error.startswith("body.lines[0].points: the line lies within a pixel of the frame's top-left corner"), error
    assert 'did you mean units "fraction"?' in error and "needs length" not in error


async def test_a_pixel_zone_beyond_the_frame_is_left_out_then_refused_once_the_frame_size_is_known(
    start_server: Start,
) -> None:
    """A config file can give pixels for another camera; only frames tell the size, so the stream runs on."""
    beyond = {"name": "far", "points": [[0, 0], [5000, 0], [0, 100]]}
    options = StreamOptions.from_mapping({"zones": [beyond, WHOLE_FRAME]})
    client = await start_server(StreamConfig("cam", "scene:?seed=7", options=options))

    async def processed_with_a_reason() -> dict[str, Any] | None:
        stream: dict[str, Any] = await (await client.get("/api/streams/cam")).json()
        return stream if stream["frames_processed"] >= 2 and stream["analytics_error"] else None

    stream = await eventually(processed_with_a_reason, COUNT_TIMEOUT_S, "frames processed and the zone left out")
    assert stream["analytics_error"] == (
        "zones[0].points: point (5000, 0) is outside the 640x384 frame; zone 'far' is left out"
    )
    assert stream["inference_errors"] == 0 and stream["state"] == "live"

    async def occupied() -> dict[str, Any] | None:
        counts = await _counts(client, "cam")
        return counts if counts["zones"]["all"]["objects"] > 0 else None

    counts = await eventually(occupied, COUNT_TIMEOUT_S, "an object in the zone that fits")
    # Listed, as every configured zone is, but not as an empty zone: it is not watched at all.
    assert counts["zones"]["far"] == {"objects": 0, "by_class": {}, "left_out": True}
    assert counts["zones"]["all"].get("left_out") is None
    assert counts["analytics_error"] == stream["analytics_error"]
    # The size is known now: a new zone beyond it through the API is a 400, and the stream keeps its options.
    wide = {"name": "wide", "points": [[0, 0], [700, 0], [0, 100]]}
    response = await client.patch("/api/streams/cam", json={"zones": [wide]})
    assert response.status == 400, await response.text()
    assert "zones[0].points: point (700, 0) is outside the 640x384 frame" in (await response.json())["error"]
    stream = await (await client.get("/api/streams/cam")).json()
    assert [zone["name"] for zone in stream["options"]["zones"]] == ["far", "all"]
    inside = {"name": "near", "points": [[0, 0], [640, 0], [640, 384]]}
    response = await client.patch("/api/streams/cam", json={"zones": [inside]})
    assert response.status == 200, await response.text()

    async def all_fit() -> dict[str, Any] | None:
        stream: dict[str, Any] = await (await client.get("/api/streams/cam")).json()
        return stream if stream["analytics_error"] is None else None

    await eventually(all_fit, COUNT_TIMEOUT_S, "the reason gone with the zone")  # from the stream's next frame


async def test_a_zone_left_out_for_not_fitting_does_not_block_a_change_that_keeps_it(start_server: Start) -> None:
    """Only shapes new or changed in a PATCH are checked against the frame: one already left out stays so."""
    beyond = {"name": "far", "points": [[0, 0], [5000, 0], [0, 100]]}
    options = StreamOptions.from_mapping({"zones": [beyond, WHOLE_FRAME]})
    client = await start_server(StreamConfig("cam", "scene:?seed=7", options=options))

    async def sized() -> dict[str, Any] | None:
        stream: dict[str, Any] = await (await client.get("/api/streams/cam")).json()
        return stream if stream["frames_processed"] >= 1 and stream["analytics_error"] else None

    await eventually(sized, COUNT_TIMEOUT_S, "a frame processed and the zone left out")
    response = await client.patch("/api/streams/cam", json={"lines": [MIDDLE]})
    assert response.status == 200, await response.text()
    moved = {"name": "far", "points": [[0, 0], [5001, 0], [0, 100]]}  # changed, so checked against the frame
    response = await client.patch("/api/streams/cam", json={"zones": [moved, WHOLE_FRAME]})
    assert response.status == 400, await response.text()
    assert "zones[0].points: point (5001, 0) is outside the 640x384 frame" in (await response.json())["error"]
    response = await client.patch("/api/streams/cam", json={"conf": 0.3})  # a restart, the zones kept
    assert response.status == 200, await response.text()
    stream = await response.json()
    assert [zone["points"][1] for zone in stream["options"]["zones"]] == [[5000, 0], [1, 0]]
    assert stream["options"]["lines"][0]["name"] == "middle" and stream["options"]["conf"] == 0.3


async def test_a_line_within_its_dead_band_of_the_edge_is_refused_once_the_frame_size_is_known(
    start_server: Start,
) -> None:
    """It was accepted (``analytics_error: null``), and only the stream's next frame said it could never
    count: refused at once instead, like a point beyond the frame, and the stream keeps its lines."""
    client = await start_server(StreamConfig("cam", "scene:?seed=7"))

    async def sized() -> dict[str, Any] | None:
        stream: dict[str, Any] = await (await client.get("/api/streams/cam")).json()
        return stream if stream["frames_processed"] >= 1 else None

    await eventually(sized, COUNT_TIMEOUT_S, "a frame processed")
    response = await client.patch("/api/streams/cam", json={"lines": [MIDDLE]})
    assert response.status == 200, await response.text()
    edge = {"name": "edge", "points": [[0.1, 0.005], [0.9, 0.005]], "units": "fraction"}
    response = await client.patch("/api/streams/cam", json={"lines": [MIDDLE, edge]})
    assert response.status == 400, await response.text()
    assert (await response.json())["error"] == (
        "body.lines[1]: line 'edge' lies within its dead band (7.68 px) of the 640x384 frame's top edge: nothing"
        " gets beyond the band on that side, so it can never count a crossing, in or out (each needs both sides);"
        " move it further in or lower its hysteresis"
    )
    stream = await (await client.get("/api/streams/cam")).json()
    assert [line["name"] for line in stream["options"]["lines"]] == ["middle"]
    response = await client.patch("/api/streams/cam", json={"lines": [MIDDLE, {**edge, "hysteresis": 0.001}]})
    assert response.status == 200, "the fix it names is taken"


async def test_new_zones_and_lines_keep_the_stream_running_and_the_counts_of_unchanged_ones(
    start_server: Start,
) -> None:
    """Drawing a zone in the viewer must not cost the camera's connection, the ids or the other counts."""
    client = await start_server(
        StreamConfig("cam", CROSSING_SCENE, options=StreamOptions.from_mapping({"lines": [MIDDLE]}))
    )

    async def crossed() -> dict[str, Any] | None:
        line = (await _counts(client, "cam"))["lines"]["middle"]
        return line if line["in"] + line["out"] > 0 else None

    line = await eventually(crossed, COUNT_TIMEOUT_S, "a crossing of the middle line")
    before = await (await client.get("/api/streams/cam")).json()
    response = await client.patch("/api/streams/cam", json={"zones": [WHOLE_FRAME]})
    assert response.status == 200, await response.text()
    after = await response.json()
    assert [zone["name"] for zone in after["options"]["zones"]] == ["all"] and after["options"]["lines"]
    # The same reader and worker state: a restarted stream counts its frames and crossings from zero.
    assert after["frames_read"] >= before["frames_read"] > 0
    assert after["frames_processed"] >= before["frames_processed"] > 0
    middle = (await _counts(client, "cam"))["lines"]["middle"]
    assert middle["in"] + middle["out"] >= line["in"] + line["out"]

    async def occupied() -> dict[str, Any] | None:
        counts = await _counts(client, "cam")
        return counts if counts["zones"]["all"]["objects"] > 0 else None

    await eventually(occupied, COUNT_TIMEOUT_S, "an object in the new zone")
    response = await client.patch("/api/streams/cam", json={"zones": [], "lines": []})
    assert response.status == 200, await response.text()

    async def emptied() -> dict[str, Any] | None:
        counts = await _counts(client, "cam")
        return counts if counts["zones"] == {} and counts["lines"] == {} else None

    await eventually(emptied, COUNT_TIMEOUT_S, "no zones or lines left to count")


async def test_zones_and_lines_are_saved_and_read_back(start_server: Start, tmp_path: Path) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text('[[streams]]\nid = "cam"\nuri = "scene:?seed=7"\n')
    client = await start_server(StreamConfig("cam", "scene:?seed=7"), config_path=path)
    body = {"zones": [{**WHOLE_FRAME, "loiter_s": 5}], "lines": [MIDDLE]}
    assert (await client.patch("/api/streams/cam?persist=1", json=body)).status == 200
    saved = load_config(path).streams[0].options
    assert [z.to_json() for z in saved.zones] == [{**WHOLE_FRAME, "loiter_s": 5.0, "classes": [], "min_share": 0.25}]
    assert saved.lines[0].name == "middle" and saved.lines[0].anchor.value == "centre"


def test_a_bad_zone_in_the_config_file_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text('[[streams]]\nid = "cam"\nuri = "scene:"\nzones = [{ name = "z", points = [[0, 0], [1, 1]] }]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        "segcast.toml: streams[0] (id 'cam').zones[0].points: expected 3 to 64 [x, y] pairs, got [[0, 0], [1, 1]]"
    )


SQUARES = {"name": "door", "points": [[0, 0], [1, 0], [1, 1], [0, 1]], "units": "fraction", "classes": ["square"]}
NARROWED = (
    "classes: zone 'door' counts 'square', which the stream would not detect with these classes; "
    "add 'square' to them or take it out of zones[0].classes"
)


async def test_narrowing_the_streams_classes_under_its_zone_is_a_400_naming_classes(start_server: Start) -> None:
    """The body held only ``classes``, and the 400 named ``body.zones[0].classes``, which it did not hold."""
    options = StreamOptions.from_mapping({"zones": [SQUARES]})
    client = await start_server(StreamConfig("cam", "scene:?seed=7", options=options))
    response = await client.patch("/api/streams/cam", json={"classes": ["disc"]})
    assert response.status == 400, await response.text()
    assert (await response.json())["error"] == f"body.{NARROWED}"
    response = await client.patch("/api/streams/cam", json={"classes": ["disc"], "zones": [SQUARES]})
    assert response.status == 400, await response.text()
    assert (await response.json())["error"] == (
        "body.zones[0].classes: the stream only detects disc, not 'square'; "
        "add it to the stream's classes or leave it out of the shape's"
    ), "the zones given beside classes: the zone's classes are the key"
    assert (await (await client.get("/api/streams/cam")).json())["options"]["classes"] == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            f'[stream_defaults]\nzones = [{{ {_toml_table(SQUARES)} }}]\n\n{CAM_TABLE}classes = ["disc"]\n',
            f"streams[0] (id 'cam').{NARROWED}",
        ),
        (
            f'[stream_defaults]\nclasses = ["disc"]\n\n{CAM_TABLE}zones = [{{ {_toml_table(SQUARES)} }}]\n',
            "streams[0] (id 'cam').zones[0].classes: the stream only detects disc, not 'square'; "
            "add it to the stream's classes or leave it out of the shape's",
        ),
    ],
    ids=["the stream's classes under the defaults' zone", "the stream's zone under the defaults' classes"],
)
def test_a_zone_class_the_streams_classes_leave_out_names_the_files_key_that_did(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"segcast.toml: {message}"


async def test_zone_events_reach_the_event_history_with_their_zone(start_server: Start, tmp_path: Path) -> None:
    events = EventsSettings(history=HistorySettings(tmp_path / "events.db"))
    config = StreamConfig("cam", "scene:?seed=7", options=StreamOptions.from_mapping({"zones": [WHOLE_FRAME]}))
    client = await start_server(config, events=events)

    async def entered() -> dict[str, Any] | None:
        body = await (await client.get("/api/events?stream=cam&type=zone_enter&zone=all")).json()
        return body["events"][0] if body["events"] else None

    stored = await eventually(entered, COUNT_TIMEOUT_S, "a zone_enter in the history")
    assert stored["event"]["zone"] == "all" and stored["event"]["type"] == "zone_enter"
    assert stored["event"]["class"] in {"disc", "square", "triangle"}


async def test_two_editors_saving_at_once_both_keep_their_shapes(start_server: Start) -> None:
    """A PATCH merges over the stream's options as they are when it is made, not as they were when it came in."""
    import asyncio
    import threading

    from server.http.keys import manager_key, stream_changes_key

    client = await start_server(StreamConfig("cam", "scene:?seed=7"))
    app = client.server.app
    manager = app[manager_key]
    replace, entered, release = manager.replace, threading.Event(), threading.Event()
    second_waits = asyncio.Event()

    class ObservedLock(asyncio.Lock):
        async def acquire(self) -> bool:
            if self.locked():
                second_waits.set()
            return await super().acquire()

    def held_replace(config: StreamConfig) -> object:
        if not entered.is_set():
            entered.set()
            assert release.wait(COUNT_TIMEOUT_S)
        return replace(config)

    lock = ObservedLock()  # held here: the app keeps its locks weakly
    app[stream_changes_key]["cam"] = lock
    manager.replace = held_replace  # type: ignore[method-assign]
    zone = asyncio.create_task(client.patch("/api/streams/cam", json={"zones": [WHOLE_FRAME]}))
    assert await asyncio.get_running_loop().run_in_executor(None, entered.wait, COUNT_TIMEOUT_S)
    line = asyncio.create_task(client.patch("/api/streams/cam", json={"lines": [MIDDLE]}))
    await asyncio.wait_for(second_waits.wait(), COUNT_TIMEOUT_S)
    release.set()
    for response in await asyncio.gather(zone, line):
        assert response.status == 200, await response.text()
    options = (await (await client.get("/api/streams/cam")).json())["options"]
    assert [z["name"] for z in options["zones"]] == ["all"] and [x["name"] for x in options["lines"]] == ["middle"]


async def test_a_number_too_large_for_a_float_is_a_400_not_infinity_in_every_stream_list(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=7"))
    zone = '{"name": "z", "points": [[0, 0], [1, 0], [1, 1]], "units": "fraction", "loiter_s": 1e400}'
    response = await client.patch("/api/streams/cam", data=f'{{"zones": [{zone}]}}')
    assert response.status == 400, await response.text()
    assert "finite numbers" in (await response.json())["error"]
    listing = await (await client.get("/api/streams")).text()
    json.loads(listing, parse_constant=lambda name: pytest.fail(f"{name} in the stream list"))


async def test_a_file_that_ends_ends_its_tracks_and_zone_visits(start_server: Start, tmp_path: Path) -> None:
    """An object on screen at a file's end stayed in its zone for good: no exit, a gauge stuck at 1."""
    from server.scene import Scene, write_h264

    clip = write_h264(Scene(seed=7), tmp_path / "clip.mp4", 45, start=45)  # an object in every frame
    options = StreamOptions.from_mapping({"zones": [WHOLE_FRAME]})
    client = await start_server(StreamConfig("clip", str(clip), options=options))
    async with client.ws_connect("/ws") as ws:
        await ws.receive_json()  # hello
        await ws.send_json({"type": "subscribe", "streams": ["clip"], "image": "none"})
        seen_inside = exited = ended_tracks = False
        while not (exited and ended_tracks):
            message = await ws.receive_json(timeout=COUNT_TIMEOUT_S)
            if message["type"] == "frame":
                seen_inside = seen_inside or any(track.get("zones") for track in message["tracks"])
            exited = exited or (message["type"] == "zone_exit" and message["zone"] == "all")
            ended = message["type"] == "track" and message["event"] == "end"
            ended_tracks = ended_tracks or (ended and seen_inside)
    assert seen_inside
    counts = await _counts(client, "clip")
    assert counts["zones"]["all"]["objects"] == 0
    tracks = await (await client.get("/api/streams/clip/tracks")).json()
    assert tracks["tracks"] == []


async def test_a_stream_that_never_had_a_frame_lists_its_zones_and_lines_at_zero_neither_left_out_nor_pending(
    start_server: Start,
) -> None:
    """No frame has told whether its shapes fit: they are counted from its first, not marked as not fitting."""
    options = StreamOptions.from_mapping({"zones": [WHOLE_FRAME], "lines": [MIDDLE]})
    client = await start_server(StreamConfig("gone", "/no/such/file.mp4", options=options))

    async def failed() -> dict[str, Any] | None:
        stream: dict[str, Any] = await (await client.get("/api/streams/gone")).json()
        return stream if stream["state"] == "failed" else None

    stream = await eventually(failed, COUNT_TIMEOUT_S, "the stream on a missing file to fail")
    assert stream["frames_processed"] == 0
    counts = await _counts(client, "gone")
    assert counts["zones"] == {"all": {"objects": 0, "by_class": {}}}
    assert counts["lines"] == {"middle": {"in": 0, "out": 0, "by_class": {}}}
    assert counts["analytics_error"] is None


async def test_a_zone_added_to_a_stream_that_had_none_is_pending_until_its_next_frame(
    start_server: Start, tmp_path: Path
) -> None:
    """A file that has ended has no next frame: its first zone stays pending, not an empty zone."""
    from server.scene import Scene, write_h264

    clip = write_h264(Scene(seed=7), tmp_path / "clip.mp4", 10, start=45)
    client = await start_server(StreamConfig("clip", str(clip)))

    async def ended() -> dict[str, Any] | None:
        stream: dict[str, Any] = await (await client.get("/api/streams/clip")).json()
        return stream if stream["state"] == "ended" and stream["frames_processed"] > 0 else None

    await eventually(ended, COUNT_TIMEOUT_S, "the file processed to its end")
    response = await client.patch("/api/streams/clip", json={"zones": [WHOLE_FRAME], "lines": [MIDDLE]})
    assert response.status == 200, await response.text()
    counts = await _counts(client, "clip")
    assert counts["zones"]["all"] == {"objects": 0, "by_class": {}, "pending": True}
    assert counts["lines"]["middle"] == {"in": 0, "out": 0, "by_class": {}, "pending": True}
