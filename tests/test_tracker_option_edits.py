"""Tracking options as a review found them: a ``conf`` of 0 that started a track from every faint guess
of the model, a tracker setting the API could not put back to its default, and a frame count refused
as ``60.0`` where ``imgsz`` and ``max_det`` take whole floats."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig, load_config
from server.config_values import ConfigError
from server.options import MIN_CONF, START_THRESHOLDS, StreamOptions, tracker_defaults
from tests.test_api import assert_error

Start = Callable[..., Awaitable[TestClient]]
#: segtrack's own ``track_buffer``: what a setting given null goes back to.
TRACK_BUFFER_DEFAULT = tracker_defaults("segtrack")["track_buffer"]


async def stream_of(client: TestClient, stream_id: str = "cam") -> tuple[dict[str, object], str]:
    """The stream's options and its ETag, as a GET answers them."""
    response = await client.get(f"/api/streams/{stream_id}")
    assert response.status == 200, await response.text()
    return (await response.json())["options"], response.headers["ETag"]


@pytest.mark.parametrize("conf", [0, 0.0, 0.009])
def test_a_conf_under_the_floor_is_refused_naming_conf(conf: float) -> None:
    with pytest.raises(ValueError) as refused:
        StreamOptions.from_mapping({"conf": conf})
    assert str(refused.value).startswith(f"conf: expected a number from 0.01 to 1, got {conf}")
    assert "every faint guess is a detection" in str(refused.value)


@pytest.mark.parametrize("conf", [1.5, -0.1, "high"])
def test_a_conf_out_of_range_otherwise_is_refused_without_the_floors_reason(conf: object) -> None:
    with pytest.raises(ValueError) as refused:
        StreamOptions.from_mapping({"conf": conf})
    assert str(refused.value).startswith("conf: expected a number from 0.01 to 1, got ")
    assert "faint guess" not in str(refused.value)


def test_the_lowest_conf_is_taken_and_the_start_thresholds_follow_it_no_lower() -> None:
    options = StreamOptions.from_mapping({"conf": MIN_CONF})
    config = options.tracker_config()
    assert [config[key] for key in START_THRESHOLDS] == [MIN_CONF, MIN_CONF]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[[streams]]\nid = "gate"\nuri = "scene:"\nconf = 0\n', "cams.toml: streams[0] (id 'gate').conf: "),
        ("[stream_defaults]\nconf = 0.0\n", "cams.toml: stream_defaults.conf: "),
    ],
)
def test_a_config_file_with_conf_0_stops_the_start_naming_the_key(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "cams.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value).startswith(f"{where}expected a number from 0.01 to 1, got 0")


async def test_a_patch_of_conf_0_is_a_400_that_changes_nothing(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    before = await stream_of(client)
    for conf in (0, 0.0, 0.001):
        response = await client.patch("/api/streams/cam", json={"conf": conf})
        await assert_error(response, 400, "body.conf: expected a number from 0.01 to 1")
    assert await stream_of(client) == before


def test_a_tracker_setting_given_none_is_taken_out() -> None:
    base = StreamOptions(tracker_settings=(("min_overlap", 0.2), ("track_buffer", 10)))
    options = StreamOptions.from_mapping({"tracker_settings": {"track_buffer": None}}, base, keep_settings=True)
    assert options.tracker_settings == (("min_overlap", 0.2),)
    assert options.tracker_config()["track_buffer"] == TRACK_BUFFER_DEFAULT


@pytest.mark.parametrize(
    ("before", "after", "kept"),
    [
        ("bytetrack", "botsort", (("track_buffer", 90),)),
        ("segtrack", "bytetrack", ()),
        ("bytetrack", "segtrack", ()),
    ],
)
def test_a_new_tracker_keeps_the_settings_it_also_takes_but_none_to_or_from_segtrack(
    before: str, after: str, kept: tuple[tuple[str, int], ...]
) -> None:
    """A PATCH of the tracker alone: segtrack's settings share names with ultralytics' trackers', not their meaning."""
    own = StreamOptions.from_mapping({"tracker": before, "tracker_settings": {"track_buffer": 90}})
    assert StreamOptions.from_mapping({"tracker": after}, own, keep_settings=True).tracker_settings == kept


async def test_a_tracker_setting_patched_null_goes_back_to_the_trackers_own_default(start_server: Start) -> None:
    """Not to the value the stream started with: a stream's options hold the defaults' settings as their own."""
    started = StreamOptions(tracker_settings=(("track_buffer", 60),))
    client = await start_server(StreamConfig("cam", "scene:?seed=1", options=started))
    response = await client.patch("/api/streams/cam", json={"tracker_settings": {"track_buffer": 10}})
    assert response.status == 200, await response.text()
    changed = await stream_of(client)
    assert changed[0]["tracker_settings"] == {"track_buffer": 10}

    response = await client.patch("/api/streams/cam", json={"tracker_settings": {}})
    assert response.status == 200, await response.text()
    assert await stream_of(client) == changed, "an empty table changes nothing"

    response = await client.patch("/api/streams/cam", json={"tracker_settings": {"track_buffer": None}})
    assert response.status == 200, await response.text()
    options, etag = await stream_of(client)
    assert options["tracker_settings"] == {}
    assert etag != changed[1]


async def test_a_null_for_a_key_the_tracker_lacks_is_refused_naming_it(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    before = await stream_of(client)
    response = await client.patch("/api/streams/cam", json={"tracker_settings": {"track_bufer": None}})
    await assert_error(response, 400, "body.tracker_settings.track_bufer: not a setting of segtrack")
    assert await stream_of(client) == before


def test_a_whole_float_is_taken_for_a_frame_count_as_an_int() -> None:
    options = StreamOptions.from_mapping({"tracker": "bytetrack", "tracker_settings": {"track_buffer": 60.0}})
    [(key, value)] = options.tracker_settings
    assert (key, value, type(value)) == ("track_buffer", 60, int)


async def test_a_frame_count_sent_as_a_whole_float_is_taken_and_answered_whole(start_server: Start) -> None:
    """JSON Schema counts 60.0 an integer, as for imgsz and max_det; 60.5 is still no number of frames."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    response = await client.patch("/api/streams/cam", json={"tracker_settings": {"track_buffer": 60.0}})
    assert response.status == 200, await response.text()
    answered = (await response.json())["options"]["tracker_settings"]["track_buffer"]
    assert (answered, type(answered)) == (60, int), "answered as an integer"
    response = await client.patch("/api/streams/cam", json={"tracker_settings": {"track_buffer": 60.5}})
    expected = f"expected a whole number like {TRACK_BUFFER_DEFAULT}, got 60.5"
    await assert_error(response, 400, f"body.tracker_settings.track_buffer: {expected}")
