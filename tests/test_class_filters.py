"""Class filters: a class's own ``conf``, ``min_area`` and ``max_area`` over the stream's (Frigate's filters).

A person needs a surer detection than a car before it raises an alarm, and a car is never as small as a
far person. Each test gives one class a value of its own and checks that it holds for that class and
the stream's for the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig, load_config
from server.options import StreamOptions
from server.persist import write_config
from server.tracking.filters import detection_conf
from server.tracking.object_filter import ObjectFilter
from server.tracking.stream import StreamTracker
from tests.support.detections import NAMES
from tests.test_object_filter import FPS, frame, kept_rows, masked

DISC, SQUARE = NAMES[0], NAMES[1]


def two_objects(confidence: float) -> tuple[np.ndarray, Any]:
    """A disc and a square apart, each detected at ``confidence``, each in colours of its own (for segtrack)."""
    image = np.zeros((200, 300, 3), np.uint8)
    ys, xs = np.mgrid[:200, :300]
    disc = (xs - 70) ** 2 + (ys - 100) ** 2 <= 30**2
    square = (xs >= 180) & (xs < 240) & (ys >= 70) & (ys < 130)
    image[disc], image[square] = (40, 200, 90), (200, 60, 30)
    rows = [[40, 70, 100, 130, confidence, 0], [180, 70, 240, 130, confidence, 1]]
    return image, masked(image, rows, [disc, square])


def reported_classes(options: StreamOptions, confidence: float, frames: int = 4) -> set[int]:
    """The classes of the tracks a stream with ``options`` reports over a few frames of `two_objects`."""
    image, detections = two_objects(confidence)
    tracker = StreamTracker("cam", NAMES, options, FPS)
    return {track.class_id for i in range(frames) for track in tracker.update(detections, frame(i, image))[0]}


def test_a_class_filters_conf_holds_for_its_class_and_the_streams_for_the_others() -> None:
    assert reported_classes(StreamOptions(), 0.5) == {0, 1}
    stricter = StreamOptions.from_mapping({"class_filters": {DISC: {"conf": 0.6}}})
    assert reported_classes(stricter, 0.5) == {1}, "a disc at 0.5 is under its class's 0.6"
    assert reported_classes(stricter, 0.65) == {0, 1}


def test_a_class_filters_conf_under_the_streams_reports_that_class_from_there() -> None:
    """A faint class needs the model run that low and its tracks started that low: both follow it down."""
    strict = StreamOptions.from_mapping({"conf": 0.6})
    assert reported_classes(strict, 0.2) == set()
    lenient = StreamOptions.from_mapping({"conf": 0.6, "class_filters": {SQUARE: {"conf": 0.15}}})
    assert reported_classes(lenient, 0.2) == {1}
    assert detection_conf(lenient) == pytest.approx(0.1), "down to the tracker's track_low_thresh"
    assert lenient.tracker_config()["new_track_thresh"] == pytest.approx(0.15)


def test_a_class_filters_area_bounds_hold_for_its_class_and_the_streams_for_the_others() -> None:
    image = np.zeros((200, 300, 3), np.uint8)
    rows = [  # a 5x5 box is 0.04 % of the frame, a 250x180 one 75 %
        [10, 10, 15, 15, 0.9, 0],
        [10, 10, 15, 15, 0.9, 1],
        [20, 10, 270, 190, 0.9, 0],
        [20, 10, 270, 190, 0.9, 1],
    ]
    detections = masked(image, rows, [np.zeros(image.shape[:2], bool) for _ in rows])
    options = StreamOptions.from_mapping(
        {"min_area": 0.01, "class_filters": {SQUARE: {"min_area": 0, "max_area": 0.5}}}
    )
    assert kept_rows(options, detections, image.shape) == [1, 2]
    own_max_only = StreamOptions.from_mapping({"min_area": 0.01, "class_filters": {SQUARE: {"max_area": 0.5}}})
    assert kept_rows(own_max_only, detections, image.shape) == [2], "the stream's min_area still holds for squares"
    conf_only = StreamOptions.from_mapping({"class_filters": {SQUARE: {"conf": 0.5}}})
    assert not ObjectFilter("cam", conf_only, NAMES).active, "no area bound of its own: no filter to run"


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"class_filters": [DISC]}, "class_filters: expected a table of class names, each with its conf, min_area, "),
        ({"class_filters": {DISC: {}}}, "class_filters.disc: expected a table with conf or min_area or max_area"),
        ({"class_filters": {DISC: 0.5}}, "class_filters.disc: expected a table with conf or min_area or max_area"),
        ({"class_filters": {DISC: {"min_score": 0.5}}}, "class_filters.disc.min_score: unknown key; a class filter "),
        ({"class_filters": {DISC: {"cnof": 0.5}}}, "class_filters.disc.cnof: unknown key; a class filter takes conf"),
        ({"class_filters": {DISC: {"conf": 0.001}}}, "class_filters.disc.conf: expected a number from 0.01 to 1"),
        ({"class_filters": {DISC: {"min_area": 5000}}}, "class_filters.disc.min_area: expected a share of the frame"),
        (
            {"max_area": 0.4, "class_filters": {DISC: {"min_area": 0.5}}},
            "class_filters.disc.min_area: disc's min_area (0.5) must be below its max_area (0.4), or no disc is ever",
        ),
    ],
)
def test_a_class_filter_that_cannot_work_is_refused_naming_its_key(values: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError) as refused:
        StreamOptions.from_mapping(values)
    assert str(refused.value).startswith(error), str(refused.value)


def test_a_stream_bound_changed_under_a_class_filter_names_the_key_changed() -> None:
    """A PATCH of max_area alone, under a class filter's min_area, is refused naming max_area, with the fix."""
    own = StreamOptions.from_mapping({"class_filters": {DISC: {"min_area": 0.3}}})
    with pytest.raises(ValueError, match=r"^max_area: disc's min_area \(0\.3\) must be below its max_area \(0\.2\)"):
        StreamOptions.from_mapping({"max_area": 0.2}, own, keep_settings=True)
    assert StreamOptions.from_mapping({"max_area": 0.2, "class_filters": {}}, own).class_filters == ()


def test_a_class_filter_of_a_class_the_model_lacks_is_refused_naming_it() -> None:
    options = StreamOptions.from_mapping({"class_filters": {"preson": {"conf": 0.6}}})
    with pytest.raises(ValueError, match=r"^class_filters\.preson: the model has no class 'preson'; it knows disc"):
        StreamTracker("cam", NAMES, options, FPS)


def test_class_filters_round_trip_through_json_and_a_saved_config_file(tmp_path: Path) -> None:
    """A class name TOML cannot take as a bare key (COCO's "traffic light") is written quoted."""
    options = StreamOptions.from_mapping(
        {"conf": 0.4, "class_filters": {"traffic light": {"conf": 0.5}, "person": {"min_area": 0.002}}}
    )
    assert StreamOptions.from_mapping(options.to_json()) == options
    path = tmp_path / "segcast.toml"
    path.write_text('[[streams]]\nid = "door"\nuri = "scene:"\n')
    write_config(load_config(path), [StreamConfig("door", "scene:", options=options)])
    text = path.read_text()
    assert 'class_filters = { person = { min_area = 0.002 }, "traffic light" = { conf = 0.5 } }' in text, text
    assert load_config(path).streams[0].options == options


async def test_a_served_stream_takes_class_filters_and_refuses_a_class_the_model_lacks(
    start_server: Callable[..., Awaitable[TestClient]],
) -> None:
    client = await start_server(StreamConfig("yard", "scene:?seed=7"))
    unknown = await client.patch("/api/streams/yard", json={"class_filters": {"preson": {"conf": 0.6}}})
    assert unknown.status == 400
    assert (await unknown.json())["error"].startswith("body.class_filters.preson: the model has no class 'preson'")
    changed = await client.patch("/api/streams/yard", json={"class_filters": {DISC: {"conf": 0.6, "min_area": 0.01}}})
    assert changed.status == 200, await changed.text()
    body = await (await client.get("/api/streams/yard")).json()
    assert body["options"]["class_filters"] == {DISC: {"conf": 0.6, "min_area": 0.01}}
    refused = await client.patch("/api/streams/yard", json={"max_area": 0.005})
    assert refused.status == 400
    assert (await refused.json())["error"].startswith("body.max_area: disc's min_area (0.01) must be below its")
