"""Class filters: a class's own ``conf``, ``min_area`` and ``max_area`` over the stream's (Frigate's filters).

A person needs a surer detection than a car before it raises an alarm, and a car is never as small as a
far person. Each test gives one class a value of its own and checks that it holds for that class and
the stream's for the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from server import streams
from server.config import StreamConfig, load_config
from server.config_values import ConfigError
from server.options import ClassFilter, StreamOptions
from server.persist import write_config
from server.sources import StreamState
from server.tracking.filters import detection_conf
from server.tracking.object_filter import ObjectFilter
from server.tracking.stream import StreamTracker
from tests.support.detections import NAMES
from tests.test_object_filter import FPS, frame, kept_rows, masked
from tests.test_option_changes_keep_video import FixedModel, Listener
from tests.test_option_changes_keep_video import start as start  # a fixture, for the test below that uses it

DISC, SQUARE, TRIANGLE = NAMES[0], NAMES[1], NAMES[2]


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
    exact = StreamOptions.from_mapping({"class_filters": {DISC: {"conf": 0.7}}})
    assert reported_classes(exact, 0.7) == {0, 1}, "compared as the model's float32, a detection at it reaches it"


def test_a_class_filters_conf_under_the_streams_reports_that_class_from_there() -> None:
    """A faint class needs the model run that low and its tracks started that low: both follow it down."""
    strict = StreamOptions.from_mapping({"conf": 0.6})
    assert reported_classes(strict, 0.2) == set()
    lenient = StreamOptions.from_mapping({"conf": 0.6, "class_filters": {SQUARE: {"conf": 0.15}}})
    assert reported_classes(lenient, 0.2) == {1}
    assert detection_conf(lenient) == pytest.approx(0.1), "down to the tracker's track_low_thresh"
    assert lenient.tracker_config()["new_track_thresh"] == pytest.approx(0.15)


def test_a_weak_detection_inside_a_confident_ones_box_is_weak_by_its_own_classs_conf() -> None:
    """A square at 0.3 inside a disc's box is a partly hidden square where squares are reported from 0.15,
    not a part of the disc (the duplicate rule for detections under the stream's conf, 0.6 here)."""
    image = np.zeros((200, 300, 3), np.uint8)
    ys, xs = np.mgrid[:200, :300]
    disc = (xs - 100) ** 2 + (ys - 100) ** 2 <= 60**2
    square = (xs >= 110) & (xs < 150) & (ys >= 110) & (ys < 150) & ~disc
    image[disc], image[square] = (40, 200, 90), (200, 60, 30)
    detections = masked(image, [[40, 40, 160, 160, 0.9, 0], [110, 110, 150, 150, 0.3, 1]], [disc, square])
    options = StreamOptions.from_mapping({"conf": 0.6, "class_filters": {SQUARE: {"conf": 0.15}}})
    tracker = StreamTracker("cam", NAMES, options, FPS)
    assert {track.class_id for i in range(3) for track in tracker.update(detections, frame(i, image))[0]} == {0, 1}


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
        ({"class_filters": {DISC: {}}}, "class_filters.disc: expected a table with conf or min_area or max_area (null"),
        ({"class_filters": {DISC: 0.5}}, "class_filters.disc: expected a table with conf or min_area or max_area"),
        (
            {"class_filters": {DISC: {"min_score": 0.5}}},
            "class_filters.disc.min_score: unknown key; a class filter takes conf, min_area, max_area; Frigate's "
            "threshold and min_score are segcast's conf",
        ),
        ({"threshold": 0.7}, "threshold: unknown stream option; known options are agnostic_nms, class_filters, "),
        (
            {"class_filters": {DISC: {"mask": []}}},
            "class_filters.disc.mask: unknown key; a class filter takes conf, min_area, max_area; Frigate's object "
            "masks are segcast's ignore_zones (with the classes each ignores)",
        ),
        ({"class_filters": {DISC: {"cnof": 0.5}}}, "class_filters.disc.cnof: unknown key; a class filter takes conf"),
        ({"class_filters": {DISC: {"conf": 0.001}}}, "class_filters.disc.conf: expected a number from 0.01 to 1"),
        (
            {"class_filters": {DISC: {"min_area": 5000}}},
            "class_filters.disc.min_area: expected a share of the frame from 0 to 1, got 5000 (for an area in "
            "pixels, divide it by the width times the height of the picture it was measured on, Frigate's detect "
            "size: 5000 px of 1280x720 is 0.00543)",
        ),
        (
            {"max_area": 0.4, "class_filters": {DISC: {"min_area": 0.5}}},
            "class_filters.disc.min_area: disc's min_area (0.5) must be below the stream's max_area (0.4), or no disc",
        ),
    ],
)
def test_a_class_filter_that_cannot_work_is_refused_naming_its_key(values: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError) as refused:
        StreamOptions.from_mapping(values)
    assert str(refused.value).startswith(error), str(refused.value)


def test_a_stream_bound_under_a_class_filter_it_already_has_names_the_streams_bound() -> None:
    """A PATCH of the stream's bounds, or a stream under [stream_defaults]' class filters: the stream's bound that
    collides is the key, whichever of the two the PATCH gave."""
    own = StreamOptions.from_mapping({"class_filters": {DISC: {"min_area": 0.3}}})
    with pytest.raises(
        ValueError, match=r"^max_area: disc's min_area \(0\.3\) must be below the stream's max_area \(0\.2"
    ):
        StreamOptions.from_mapping({"max_area": 0.2}, own, keep_settings=True)
    assert StreamOptions.from_mapping({"max_area": 0.2, "class_filters": {DISC: None}}, own).class_filters == ()
    capped = StreamOptions.from_mapping({"class_filters": {DISC: {"max_area": 0.3}}})
    with pytest.raises(ValueError, match=r"^min_area: the stream's min_area \(0\.4\) must be below disc's max_area"):
        StreamOptions.from_mapping({"min_area": 0.4, "max_area": 0.9}, capped)


def test_class_filters_merge_over_the_defaults_and_a_change_over_the_streams_own() -> None:
    """As Frigate merges a camera's filters over its global ones: class by class, key by key; null takes a
    class or a key out, {} changes nothing."""
    defaults = StreamOptions.from_mapping({"class_filters": {DISC: {"conf": 0.9}, SQUARE: {"max_area": 0.5}}})
    stream = StreamOptions.from_mapping(
        {"class_filters": {DISC: {"min_area": 0.01}, TRIANGLE: {"conf": 0.3}}}, defaults
    )
    assert stream.to_json()["class_filters"] == {
        DISC: {"conf": 0.9, "min_area": 0.01},
        SQUARE: {"max_area": 0.5},
        TRIANGLE: {"conf": 0.3},
    }
    change = {"class_filters": {DISC: {"conf": None}, SQUARE: None, TRIANGLE: {"conf": 0.4}}}
    changed = StreamOptions.from_mapping(change, stream, keep_settings=True)
    assert changed.to_json()["class_filters"] == {DISC: {"min_area": 0.01}, TRIANGLE: {"conf": 0.4}}
    assert StreamOptions.from_mapping({"class_filters": {}}, changed, keep_settings=True) == changed
    emptied = StreamOptions.from_mapping({"class_filters": {DISC: {"min_area": None}}}, changed, keep_settings=True)
    assert dict(emptied.class_filters) == {TRIANGLE: ClassFilter(conf=0.4)}, "a class left with no key goes"


def test_a_config_files_stream_keeps_the_defaults_class_filters_it_does_not_set_and_a_save_keeps_what_it_ran(
    tmp_path: Path,
) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text(
        "[stream_defaults.class_filters]\ndisc = { conf = 0.9 }\n\n"
        '[[streams]]\nid = "drive"\nuri = "scene:"\nclass_filters = { square = { min_area = 0.01 } }\n'
    )
    settings = load_config(path)
    [drive] = settings.streams
    assert dict(drive.options.class_filters) == {DISC: ClassFilter(conf=0.9), SQUARE: ClassFilter(min_area=0.01)}
    # Another option changed and saved: only its own class filter is written, the defaults' not copied in,
    # so that a later edit of [stream_defaults] still reaches it.
    capped = StreamOptions.from_mapping({"process_fps": 5}, drive.options, keep_settings=True)
    write_config(settings, [dataclasses.replace(drive, options=capped)])
    assert "class_filters = { square = { min_area = 0.01 } }\n" in path.read_text(), path.read_text()
    settings = load_config(path)
    [drive] = settings.streams
    # Its disc filter taken out through the API: saved, it must not come back from the defaults when read.
    without = StreamOptions.from_mapping({"class_filters": {DISC: None}}, drive.options, keep_settings=True)
    write_config(settings, [dataclasses.replace(drive, options=without)])
    [saved] = load_config(path).streams
    assert dict(saved.options.class_filters) == {DISC: ClassFilter(conf=0.25), SQUARE: ClassFilter(min_area=0.01)}


def test_a_class_filter_of_a_class_the_stream_does_not_track_lowers_nothing() -> None:
    """One of [stream_defaults] for a class a stream leaves out would run the model low for nothing seen."""
    options = StreamOptions.from_mapping({"classes": [DISC], "class_filters": {SQUARE: {"conf": 0.05}}})
    assert options.lowest_conf == 0.25 and detection_conf(options) == pytest.approx(0.1)
    assert options.tracker_config()["new_track_thresh"] == pytest.approx(0.25)


def test_a_track_takes_a_class_only_on_a_detection_at_that_classs_conf() -> None:
    """A track reported as a square, then seen as a disc under the disc's own conf, stays a square (its box
    still shown); a disc detection at that conf makes it a disc. Without this, a class's conf was bypassed by
    any track that started as another class (a Frigate user's review)."""
    image = np.zeros((200, 300, 3), np.uint8)
    ys, xs = np.mgrid[:200, :300]
    shape = (xs >= 40) & (xs < 100) & (ys >= 70) & (ys < 130)
    image[shape] = (40, 200, 90)

    def seen_as(class_id: int, confidence: float) -> Any:
        return masked(image, [[40, 70, 100, 130, confidence, class_id]], [shape])

    options = StreamOptions.from_mapping({"class_filters": {DISC: {"conf": 0.9}}})
    tracker = StreamTracker("cam", NAMES, options, FPS)
    sequence = [seen_as(1, 0.6)] * 2 + [seen_as(0, 0.8)] * 6 + [seen_as(0, 0.95)] * 4
    tracks = [tracker.update(detections, frame(i, image))[0] for i, detections in enumerate(sequence)]
    assert all(len(found) == 1 for found in tracks), "the object is shown in every frame"
    assert len({found[0].track_id for found in tracks}) == 1
    classes = [found[0].class_name for found in tracks]
    assert classes[:8] == [SQUARE] * 8, classes
    assert classes[-1] == DISC, classes


def test_a_class_conf_raised_in_place_holds_for_tracks_already_reported() -> None:
    """A poster taken for a disc at 0.9: raising the disc's conf over that on the running stream hides its
    track from the next frame (it had passed the old conf only), as for a stream that started with it."""
    image, detections = two_objects(0.9)
    own = StreamOptions.from_mapping({"class_filters": {DISC: {"conf": 0.8}}})
    tracker = StreamTracker("cam", NAMES, own, FPS)
    before = [{t.class_id for t in tracker.update(detections, frame(i, image))[0]} for i in range(3)]
    raised = StreamOptions.from_mapping({"class_filters": {DISC: {"conf": 0.95}}})
    tracker.follow(raised)
    after = [{t.class_id for t in tracker.update(detections, frame(i, image))[0]} for i in range(3, 6)]
    assert before == [{0, 1}] * 3 and after == [{1}] * 3, (before, after)


def test_a_running_stream_takes_class_filters_in_place_unless_they_lower_its_least_conf(
    start: Callable[..., tuple[streams.StreamManager, Listener]],
) -> None:
    """Area bounds and a conf above the stream's change on the running stream (its ids go on, as for its own
    min_area); a conf under it changes the model's call and the tracks' start: the stream's tracking restarts."""
    config = StreamConfig("yard", "scene:?seed=1")
    manager, listener = start(config, FixedModel())
    [before] = next_ids(listener)
    for kept in ({SQUARE: {"min_area": 0.001, "max_area": 0.9}}, {SQUARE: {"conf": 0.5}}):
        changed = dataclasses.replace(config, options=StreamOptions.from_mapping({"class_filters": kept}))
        assert manager.replace(changed).state is StreamState.LIVE
        drain(listener)
        assert [next_ids(listener) for _ in range(5)] == [[before]] * 5, kept
    lower = StreamOptions.from_mapping({"class_filters": {SQUARE: {"conf": 0.2}}})
    assert manager.replace(dataclasses.replace(config, options=lower)).state is StreamState.LIVE
    drain(listener)
    assert any(next_ids(listener) != [before] for _ in range(30)), "restarted: a new id"


def drain(listener: Listener) -> None:
    """Forget the results published so far: those of frames before a change."""
    while not listener.results.empty():
        listener.results.get_nowait()


def next_ids(listener: Listener) -> list[int]:
    """The track ids of the next result that has tracks."""
    result = listener.next()
    while not result.tracks:
        result = listener.next()
    return [track.track_id for track in result.tracks]


def test_a_config_files_frigate_key_is_refused_with_segcasts_name_for_it(tmp_path: Path) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text('[[streams]]\nid = "drive"\nuri = "scene:"\nthreshold = 0.7\n')
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value).endswith("; Frigate's threshold and min_score are segcast's conf"), str(refused.value)


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
    assert (await refused.json())["error"].startswith(
        "body.max_area: disc's min_area (0.01) must be below the stream's"
    )
