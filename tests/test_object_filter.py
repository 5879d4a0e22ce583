"""A stream's object filter (`server.tracking.object_filter`): ``min_area``, ``max_area`` and ignore zones keep
detections from its tracker, so what a camera keeps mistaking for an object is never tracked, drawn, counted
nor sent, while a real object that passes through an ignore zone keeps its id."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from aiohttp.test_utils import TestClient
from ultralytics.engine.results import Results

from server import streams
from server.analytics.zone_membership import ZoneMask, object_area, share_inside
from server.config import StreamConfig, load_config
from server.frames import Frame, Track
from server.inference.detections import Detections
from server.options import StreamOptions
from server.persist import write_config
from server.scene import Scene
from server.sources import StreamState
from server.tracking.object_filter import ObjectFilter
from server.tracking.stream import StreamTracker
from tests.support.detections import NAMES, truth_detections
from tests.support.polling import eventually
from tests.test_option_changes_keep_video import BOX, FixedModel, Listener
from tests.test_option_changes_keep_video import start as start  # a fixture, for the test below that uses it

FPS = 15.0
#: A vertical band through the middle of the picture: the generated scene's objects wander through it.
BAND = {"name": "pillar", "points": [[0.4, 0], [0.6, 0], [0.6, 1], [0.4, 1]], "units": "fraction"}


def frame(index: int, image: np.ndarray) -> Frame:
    return Frame("cam", index, 1_700_000_000.0 + index / FPS, index / FPS, image)


def masked(image: np.ndarray, rows: list[list[float]], masks: list[np.ndarray]) -> Detections:
    """Detections with the given boxes (x1, y1, x2, y2, conf, class) and masks (bool, the image's size)."""
    boxes = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    stacked = torch.tensor(np.array(masks), dtype=torch.float32)
    return Detections.from_results(Results(image, "", NAMES, boxes=boxes, masks=stacked))


def kept_rows(options: StreamOptions, detections: Detections, shape: tuple[int, ...]) -> list[int]:
    return np.flatnonzero(ObjectFilter("cam", options, NAMES).keep(detections, shape)).tolist()


def share_in_band(track: Track, shape: tuple[int, ...]) -> float:
    height, width = shape[:2]
    corners = np.array([[0.4 * width, 0], [0.6 * width, 0], [0.6 * width, height], [0.4 * width, height]])
    return share_inside(
        object_area(track.box, track.polygon, shape), ZoneMask.filled(corners.astype(np.int32), width, height)
    )


def test_objects_in_an_ignore_zone_are_never_reported_and_keep_their_ids_through_it() -> None:
    """The scene's truth as detections: without the zone, objects are seen in the band (so the scene tests
    it); with it, none is reported there, and each object keeps one id although the band hides it on its way."""
    scene = Scene(seed=7)
    seen: dict[str, tuple[int, set[int]]] = {}
    for name, options in (("open", StreamOptions()), ("band", StreamOptions.from_mapping({"ignore_zones": [BAND]}))):
        tracker = StreamTracker("cam", NAMES, options, FPS)
        inside, ids = 0, set()
        for index in range(300):
            image, truths = scene.render(index)
            tracks, _ = tracker.update(truth_detections(image, truths), frame(index, image))
            inside += sum(share_in_band(track, image.shape) >= 0.5 for track in tracks)
            ids |= {track.track_id for track in tracks}
        seen[name] = inside, ids
    assert seen["open"][0] > 50, "the scene's objects pass through the band"
    assert seen["band"][0] == 0, "no track is reported with half of itself in the ignore zone"
    assert seen["band"][1] == seen["open"][1], "an object that passed behind the band kept its id"


def test_the_mask_not_the_box_decides_and_min_share_sets_how_much() -> None:
    """An object reaching out of the zone (its box 56 % in, its mask not at all) is seen at any share; a disc
    four fifths in is ignored at the default half, and seen where a zone asks for nine tenths."""
    image = np.zeros((200, 300, 3), np.uint8)
    ys, xs = np.mgrid[:200, :300]
    reaching = (xs >= 60) & (xs < 90) & (ys >= 60) & (ys < 140)  # the left part of its box, 60..140
    disc = (xs - 110) ** 2 + (ys - 100) ** 2 <= 30**2
    detections = masked(image, [[60, 60, 140, 140, 0.9, 0], [80, 70, 140, 130, 0.9, 0]], [reaching, disc])
    zone = {"name": "wall", "points": [[95, 0], [300, 0], [300, 200], [95, 200]]}

    def kept(**settings: float) -> list[int]:
        return kept_rows(StreamOptions.from_mapping({"ignore_zones": [{**zone, **settings}]}), detections, image.shape)

    assert kept() == [0]
    assert kept(min_share=0.9) == [0, 1]
    assert kept(min_share=0.01) == [0]


def test_an_ignore_zone_with_classes_ignores_only_those() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    rows = [[10, 10, 60, 60, 0.9, 0], [100, 10, 150, 60, 0.9, 1], [200, 10, 250, 60, 0.9, 2]]
    detections = masked(image, rows, [_box_mask(image, row) for row in rows])
    whole = {"name": "all", "points": [[0, 0], [300, 0], [300, 200], [0, 200]]}
    assert kept_rows(StreamOptions.from_mapping({"ignore_zones": [whole]}), detections, image.shape) == []
    squares = {**whole, "classes": [NAMES[1]]}
    assert kept_rows(StreamOptions.from_mapping({"ignore_zones": [squares]}), detections, image.shape) == [0, 2]


def test_a_detection_only_model_is_judged_by_its_box() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    boxes = torch.tensor([[10, 10, 60, 60, 0.9, 0], [200, 10, 250, 60, 0.9, 0]], dtype=torch.float32)
    detections = Detections.from_results(Results(image, "", NAMES, boxes=boxes))
    left = {"name": "left", "points": [[0, 0], [150, 0], [150, 200], [0, 200]]}
    assert kept_rows(StreamOptions.from_mapping({"ignore_zones": [left]}), detections, image.shape) == [1]


def test_an_ignore_zone_beyond_the_frame_is_left_out_and_said_once(caplog: pytest.LogCaptureFixture) -> None:
    """Drawn in pixels of another resolution, it would hide the wrong part of the picture: it is left out,
    the stream's problems say why, the log tells it once, and the other ignore zones go on hiding."""
    image = np.zeros((200, 300, 3), np.uint8)
    rows = [[10, 150, 60, 195, 0.9, 0], [10, 10, 60, 60, 0.9, 0]]
    detections = masked(image, rows, [_box_mask(image, row) for row in rows])
    wide = {"name": "street", "points": [[0, 140], [1900, 140], [1900, 200], [0, 200]]}
    top = {"name": "sky", "points": [[0, 0], [300, 0], [300, 100], [0, 100]]}
    found = ObjectFilter("cam", StreamOptions.from_mapping({"ignore_zones": [wide, top]}), NAMES)
    assert np.flatnonzero(found.keep(detections, image.shape)).tolist() == [0]
    assert found.problems == (
        "ignore_zones[0].points: point (1900, 140) is outside the 300x200 frame; ignore zone 'street' is left out",
    )
    found.keep(detections, image.shape)
    told = [r.getMessage() for r in caplog.records if r.name == "server.tracking.object_filter"]
    assert told == [f"[cam] {found.problems[0]}"]
    assert ObjectFilter("cam", StreamOptions.from_mapping({"ignore_zones": [wide]}), NAMES).keep(
        detections, (1080, 1920, 3)
    ).tolist() == [False, True], "in a frame it fits, it hides"


def test_one_filter_places_its_zones_anew_for_each_frame_size() -> None:
    """A camera that changes resolution: a zone in fractions covers the same part of each picture, one in
    pixels is left out of the small picture it does not fit and hides again in the large one."""
    half = {"name": "left", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "units": "fraction"}
    corner = {"name": "corner", "points": [[500, 0], [640, 0], [640, 100], [500, 100]]}
    found = ObjectFilter("cam", StreamOptions.from_mapping({"ignore_zones": [half, corner]}), NAMES)
    for width, height in ((640, 384), (320, 192), (640, 384)):
        image = np.zeros((height, width, 3), np.uint8)
        rows = [[0.1 * width, 10, 0.2 * width, 40, 0.9, 0], [0.8 * width, 10, 0.9 * width, 40, 0.9, 0]]
        kept = found.keep(masked(image, rows, [_box_mask(image, row) for row in rows]), image.shape)
        assert kept.tolist() == [False, width != 640], (width, height)
        assert bool(found.problems) == (width != 640), found.problems


def test_ignored_detections_are_counted_once_a_frame_is_taken_in_and_go_on_through_a_restart() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    rows = [[10, 10, 60, 60, 0.9, 0], [200, 10, 250, 60, 0.9, 0]]
    detections = masked(image, rows, [_box_mask(image, row) for row in rows])
    left = {"name": "left", "points": [[0, 0], [150, 0], [150, 200], [0, 200]]}
    options = StreamOptions.from_mapping({"ignore_zones": [left]})
    tracker = StreamTracker("cam", NAMES, options, FPS)
    tracker.update(detections, frame(0, image))
    assert tracker.ignored == 1

    def broken(*args: object) -> None:
        raise RuntimeError("a tracker's bug")

    inner = tracker._tracker
    inner.update = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        tracker.update(detections, frame(1, image))
    assert tracker.ignored == 1, "a frame that failed counts nothing"
    restarted = StreamTracker(
        "cam", NAMES, StreamOptions.from_mapping({"conf": 0.3, "ignore_zones": [left]}), FPS, tracker
    )
    assert restarted.ignored == 1
    restarted.update(detections, frame(2, image))
    assert restarted.ignored == 2


def test_a_change_in_place_does_not_tell_a_misfit_zones_problem_again(caplog: pytest.LogCaptureFixture) -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    misfit = {"name": "far", "points": [[0, 0], [1900, 0], [1900, 100]]}
    tracker = StreamTracker("cam", NAMES, StreamOptions.from_mapping({"ignore_zones": [misfit]}), FPS)
    tracker.update(Detections.empty(), frame(0, image))
    tracker.follow(StreamOptions.from_mapping({"ignore_zones": [misfit], "min_area": 0.001}))
    tracker.update(Detections.empty(), frame(1, image))
    told = [r.getMessage() for r in caplog.records if r.name == "server.tracking.object_filter"]
    assert len(told) == 1 and "'far' is left out" in told[0], told
    assert tracker.problems and "'far' is left out" in tracker.problems[0]


@pytest.mark.parametrize(
    ("bounds", "kept"),
    [
        ({}, [0, 1, 2]),
        ({"min_area": 0.01}, [1, 2]),  # the 5x5 box is 0.04 % of the frame
        ({"max_area": 0.5}, [0, 1]),  # the 250x180 box is 75 % of it
        ({"min_area": 0.01, "max_area": 0.5}, [1]),
    ],
)
def test_min_and_max_area_are_shares_of_the_frame(bounds: dict[str, float], kept: list[int]) -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    rows = [[10, 10, 15, 15, 0.9, 0], [50, 50, 100, 100, 0.9, 0], [20, 10, 270, 190, 0.9, 0]]
    detections = masked(image, rows, [_box_mask(image, row) for row in rows])
    assert kept_rows(StreamOptions.from_mapping(bounds), detections, image.shape) == kept


def test_the_area_bounds_hold_their_own_value_and_count_only_the_part_within_the_frame() -> None:
    """A box of exactly min_area or max_area is seen; one reaching past the frame's edge (a model may give
    such boxes) is measured by what of it lies within."""
    image = np.zeros((200, 300, 3), np.uint8)
    rows = [[0, 0, 60, 100, 0.9, 0], [-300, -200, 60, 100, 0.9, 0]]  # 10 % of the frame, both (within it)
    detections = Detections.from_results(Results(image, "", NAMES, boxes=torch.tensor(rows, dtype=torch.float32)))
    assert kept_rows(StreamOptions.from_mapping({"min_area": 0.1}), detections, image.shape) == [0, 1]
    assert kept_rows(StreamOptions.from_mapping({"max_area": 0.1}), detections, image.shape) == [0, 1]
    assert kept_rows(StreamOptions.from_mapping({"max_area": 0.099}), detections, image.shape) == []


def test_a_filter_changed_in_place_takes_effect_on_the_next_frame_and_the_ids_go_on() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    ys, xs = np.mgrid[:200, :300]
    image[(xs - 100) ** 2 + (ys - 100) ** 2 <= 30**2] = (40, 200, 90)  # colours for segtrack to know it by
    row = [70, 70, 130, 130, 0.9, 0]
    detections = masked(image, [row], [(xs - 100) ** 2 + (ys - 100) ** 2 <= 30**2])
    options = StreamOptions()
    tracker = StreamTracker("cam", NAMES, options, FPS)
    ids = [[t.track_id for t in tracker.update(detections, frame(i, image))[0]] for i in range(3)]
    hidden = StreamOptions.from_mapping(
        {"ignore_zones": [{"name": "all", "points": [[0, 0], [1, 0], [1, 1], [0, 1]], "units": "fraction"}]}
    )
    tracker.follow(hidden)
    ids += [[t.track_id for t in tracker.update(detections, frame(i, image))[0]] for i in range(3, 5)]
    tracker.follow(options)
    ids += [[t.track_id for t in tracker.update(detections, frame(i, image))[0]] for i in range(5, 7)]
    assert ids == [[1], [1], [1], [], [], [1], [1]]


def test_an_unknown_class_or_bounds_that_see_nothing_are_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"^ignore_zones\[0\]\.classes: the model has no class 'cat'"):
        ObjectFilter("cam", StreamOptions.from_mapping({"ignore_zones": [{**BAND, "classes": ["cat"]}]}), NAMES)
    with pytest.raises(ValueError, match=r"^max_area: min_area \(0\.5\) must be below max_area \(0\.5\)"):
        StreamOptions.from_mapping({"min_area": 0.5, "max_area": 0.5})
    with pytest.raises(ValueError, match=r"^min_area: min_area \(0\.6\) must be below max_area \(0\.5\)"):
        StreamOptions.from_mapping({"min_area": 0.6}, StreamOptions(max_area=0.5))
    with pytest.raises(ValueError, match=r"^min_area: expected a number from 0 to 1, got 1.5"):
        StreamOptions.from_mapping({"min_area": 1.5})
    with pytest.raises(ValueError, match=r"^ignore_zones\[0\]\.loiter_s: unknown key"):
        StreamOptions.from_mapping({"ignore_zones": [{**BAND, "loiter_s": 3}]})
    with pytest.raises(ValueError, match=r"^ignore_zones\[1\]\.name: 'pillar' is used twice"):
        StreamOptions.from_mapping({"ignore_zones": [BAND, BAND]})
    with pytest.raises(ValueError, match=r"^min_area: expected a share of the frame from 0 to 1, got 5000 \(for an"):
        StreamOptions.from_mapping({"min_area": 5000})  # Frigate's pixels


def test_an_ignore_zone_may_name_classes_the_stream_does_not_detect() -> None:
    """Unlike a zone, which would count 0 for ever: one of [stream_defaults] may ignore classes some streams
    do not detect, and a stream narrowing its classes under it is not refused."""
    defaults = StreamOptions.from_mapping({"ignore_zones": [{**BAND, "classes": [NAMES[1]]}]})
    assert StreamOptions.from_mapping({"classes": [NAMES[0]]}, defaults).ignore_zones == defaults.ignore_zones


def test_the_filter_round_trips_through_json_and_a_saved_config_file(tmp_path: Path) -> None:
    options = StreamOptions.from_mapping({"min_area": 0.002, "max_area": 0.8, "ignore_zones": [BAND]})
    assert StreamOptions.from_mapping(options.to_json()) == options
    path = tmp_path / "segcast.toml"
    path.write_text('[[streams]]\nid = "door"\nuri = "scene:"\n')
    write_config(load_config(path), [StreamConfig("door", "scene:", options=options)])
    text = path.read_text()
    zone = '{ name = "pillar", points = [[0.4, 0], [0.6, 0], [0.6, 1], [0.4, 1]], units = "fraction" }'
    assert f"ignore_zones = [\n  {zone},\n]" in text, text
    assert load_config(path).streams[0].options == options


def test_a_running_stream_takes_an_ignore_zone_in_place_keeping_its_video_and_ids(
    start: Callable[..., tuple[streams.StreamManager, Listener]],
) -> None:
    """Changed as a PATCH changes it: the stream never starts again, its object disappears while the zone
    covers it, and comes back with the id it had (a restart would have given it a new one)."""
    config = StreamConfig("yard", "scene:?seed=1")
    manager, listener = start(config, FixedModel())
    result = listener.next()
    while not result.tracks:
        result = listener.next()
    [before] = [track.track_id for track in result.tracks]
    x1, y1, x2, y2 = BOX[:4]
    covering = {"name": "bush", "points": [[x1 - 5, y1 - 5], [x2 + 5, y1 - 5], [x2 + 5, y2 + 5], [x1 - 5, y2 + 5]]}
    hidden = dataclasses.replace(config, options=StreamOptions.from_mapping({"ignore_zones": [covering]}))
    states_before = len(listener.states)
    assert manager.replace(hidden).state is StreamState.LIVE
    while listener.next().tracks:
        pass
    assert manager.replace(config).state is StreamState.LIVE
    result = listener.next()
    while not result.tracks:
        result = listener.next()
    assert [track.track_id for track in result.tracks] == [before]
    assert listener.states[states_before:] == [], "the stream never started again"


def _box_mask(image: np.ndarray, row: list[float]) -> np.ndarray:
    mask = np.zeros(image.shape[:2], bool)
    x1, y1, x2, y2 = (int(v) for v in row[:4])
    mask[y1:y2, x1:x2] = True
    return mask


async def test_a_served_stream_says_what_it_ignored_and_refuses_an_ignore_zone_beyond_its_frame(
    start_server: Callable[..., Awaitable[TestClient]],
) -> None:
    """The bundled model on the generated scene, one ignore zone over the whole picture and one drawn for a
    larger picture: the detections kept out are counted in the API and /metrics, the
    misfit zone is the stream's analytics_error, and a PATCH adding another beyond the frame is a 400."""
    whole = {"name": "all", "points": [[0, 0], [1, 0], [1, 1], [0, 1]], "units": "fraction"}
    misfit = {"name": "far", "points": [[0, 0], [1900, 0], [1900, 1000]]}
    options = StreamOptions.from_mapping({"ignore_zones": [whole, misfit]})
    client = await start_server(StreamConfig("yard", "scene:?seed=7", options=options))

    async def ignoring() -> dict[str, Any] | None:
        body: dict[str, Any] = await (await client.get("/api/streams/yard")).json()
        return body if body["detections_ignored"] >= 10 and body["frames_processed"] >= 10 else None

    body = await eventually(ignoring, 60, "ten detections ignored")
    assert re.fullmatch(
        r"ignore_zones\[1\]\.points: point \(1900, 0\) is outside the \d+x\d+ frame; ignore zone 'far' is left out",
        body["analytics_error"],
    ), body["analytics_error"]
    text = await (await client.get("/metrics")).text()
    [sample] = [
        line for line in text.splitlines() if line.startswith('segcast_detections_ignored_total{stream="yard"}')
    ]
    assert float(sample.rsplit(" ", 1)[1]) >= 10
    unknown = await client.patch("/api/streams/yard", json={"ignore_zones": [{**whole, "classes": ["preson"]}]})
    assert unknown.status == 400
    assert (await unknown.json())["error"].startswith("body.ignore_zones[0].classes: the model has no class 'preson'")
    refused = await client.patch("/api/streams/yard", json={"ignore_zones": [whole, {**misfit, "name": "wider"}]})
    assert refused.status == 400
    assert "body.ignore_zones[1].points: point (1900, 0) is outside the" in (await refused.json())["error"]
    kept = await client.patch("/api/streams/yard", json={"ignore_zones": [whole]})
    assert kept.status == 200, await kept.text()

    async def fitting() -> dict[str, Any] | None:
        body: dict[str, Any] = await (await client.get("/api/streams/yard")).json()
        return body if body["analytics_error"] is None else None

    after = await eventually(fitting, 60, "the misfit zone's problem to go with it")
    assert after["detections_ignored"] >= body["detections_ignored"], "the count goes on through a change"
