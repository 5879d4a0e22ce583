"""What a save writes into the config file: the keys its user set or changed, in the numbers they wrote them.

A save that spelled out every default froze them in the file (a later release's better default never
reached it) and made it unlike what its user wrote: integers as floats, every zone and line with
every key. Each test reads the file back too, to the same settings: that is the contract of a save.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings, StreamConfig, load_config
from server.options import StreamOptions
from server.persist import write_config
from tests.support.ports import held_closed_port

ClientFactory = Callable[[web.Application], Awaitable[TestClient]]

#: A file as a user writes one, setting up a zone and a line: a few keys, whole numbers where they are whole.
USER_FILE = """\
[server]
port = 9000

[model]
name = "bundled"

[[streams]]
id = "door"
uri = "scene:?seed=1"
zones = [
  { name = "porch", points = [[40, 30], [200, 30], [200, 150], [40, 150]], loiter_s = 2 },
]
lines = [
  { name = "gate", points = [[0, 100], [300, 100]] },
]

[[streams]]
id = "yard"
uri = "scene:?seed=2"
conf = 0.4

[events.history]
max_age_days = 7
"""

#: `USER_FILE` as a save writes it back: host, port, the model and a shape's units always, nothing else it did not say.
USER_FILE_SAVED: dict[str, Any] = {
    "server": {"host": "127.0.0.1", "port": 9000},
    "model": {"name": "bundled"},
    "streams": [
        {
            "id": "door",
            "uri": "scene:?seed=1",
            "zones": [
                {"name": "porch", "points": [[40, 30], [200, 30], [200, 150], [40, 150]], "units": "px", "loiter_s": 2}
            ],
            "lines": [{"name": "gate", "points": [[0, 100], [300, 100]], "units": "px"}],
        },
        {"id": "yard", "uri": "scene:?seed=2", "conf": 0.4},
    ],
    "events": {"history": {"max_age_days": 7}},
}


def write(folder: Path, text: str) -> Path:
    path = folder / "segcast.toml"
    path.write_text(text)
    return path


def floats(value: object) -> Iterator[float]:
    """Every float in what `tomllib` read: ``1 == 1.0`` in Python, so a comparison of the data alone hides them."""
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from floats(item)
    elif isinstance(value, list):
        for item in value:
            yield from floats(item)


def as_read(settings: Settings, streams: list[StreamConfig] | None = None) -> Settings:
    """``settings`` without what says how the file was written (its digest, and where it set which key)."""
    if streams is not None:
        settings = replace(settings, streams=tuple(streams))
    return replace(settings, config_digest=None, written_as={}, stream_keys={})


async def test_a_saved_change_writes_what_the_user_wrote_and_the_change_only(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """The reviewer's PATCH of one zone's loiter_s added some twenty default keys and made 160 into 160.0."""
    path = write(tmp_path, USER_FILE)
    client = await aiohttp_client(create_app(load_config(path)))
    porch = {"name": "porch", "points": [[40, 30], [200, 30], [200, 150], [40, 150]], "loiter_s": 5}
    response = await client.patch("/api/streams/door?persist=1", json={"zones": [porch]})
    assert response.status == 200, await response.text()
    text = path.read_text()
    saved = tomllib.loads(text)
    expected = copy.deepcopy(USER_FILE_SAVED)
    expected["streams"][0]["zones"][0]["loiter_s"] = 5
    assert saved == expected, text
    assert list(floats(saved)) == [0.4], f"whole numbers are written whole:\n{text}"
    again = load_config(path)
    shown = await (await client.get("/api/streams/door")).json()
    assert again.streams[0].options.to_json() == shown["options"], "the file reads back as the stream runs"


#: README's ``[events.*]`` example as a user copies it: most keys spelled out at their defaults. The broker
#: and the receiver are closed ports here (`held_closed_port`), so the outputs fail at once, offline.
README_EVENTS = """\
[model]
name = "bundled"

[[streams]]
id = "door"
uri = "scene:?seed=1"

[events.history]
path = "segcast-events.db"
max_age_days = 30
max_mb = 1024

[[events.webhooks]]
url = "http://127.0.0.1:{port}/hooks/segcast"
secret = "a long random string"
timeout_s = 5
retries = 3

[events.mqtt]
host = "127.0.0.1"
port = {port}
username = "segcast"
password = "..."
topic_prefix = "segcast"
discovery = true
discovery_prefix = "homeassistant"
"""


async def test_a_save_keeps_every_events_key_the_file_spelled_out_even_at_its_default(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """A save from the viewer wrote ``[events.history]`` back empty and ``[events.mqtt]`` without its
    ``topic_prefix`` and ``discovery``: what its user copied from README was gone, with no .bak (no
    comment was lost). Kept, as a ``[stream_defaults]`` key the file set is."""
    with held_closed_port() as port:
        path = write(tmp_path, README_EVENTS.format(port=port))
        settings = load_config(path)
        client = await aiohttp_client(create_app(settings))
        response = await client.patch("/api/streams/door?persist=1", json={"conf": 0.4})
        assert response.status == 200, await response.text()
    text = path.read_text()
    saved = tomllib.loads(text)
    assert saved["events"] == tomllib.loads(README_EVENTS.format(port=port))["events"], text
    assert saved["streams"] == [{"id": "door", "uri": "scene:?seed=1", "conf": 0.4}], text
    assert load_config(path).events == settings.events


def test_a_file_saved_without_a_change_says_what_it_said_and_reads_back_the_same(tmp_path: Path) -> None:
    path = write(tmp_path, USER_FILE)
    settings = load_config(path)
    write_config(settings, list(settings.streams))
    text = path.read_text()
    assert tomllib.loads(text) == USER_FILE_SAVED, text
    assert as_read(load_config(path)) == as_read(settings)


def test_an_api_change_adds_its_key_alone_and_the_file_reads_back_to_it(tmp_path: Path) -> None:
    path = write(tmp_path, USER_FILE)
    settings = load_config(path)
    door, yard = settings.streams
    changed = replace(yard, options=StreamOptions.from_mapping({"iou": 0.5}, yard.options))
    write_config(settings, [door, changed])
    saved = tomllib.loads(path.read_text())
    assert saved["streams"][1] == {"id": "yard", "uri": "scene:?seed=2", "conf": 0.4, "iou": 0.5}
    assert saved["streams"][0] == USER_FILE_SAVED["streams"][0]
    assert as_read(load_config(path)) == as_read(settings, [door, changed])


def test_defaults_of_server_model_events_and_stream_defaults_are_not_written(tmp_path: Path) -> None:
    """Spelled out, a default is frozen in the file: a later release's better one would never reach it."""
    path = write(
        tmp_path,
        '[events.history]\n\n[events.mqtt]\nhost = "broker.lan"\n\n[[events.webhooks]]\nurl = "https://hooks.example/x"\n',
    )
    settings = load_config(path)
    write_config(settings, [StreamConfig("cam", "scene:?seed=1")])
    text = path.read_text()
    assert tomllib.loads(text) == {
        "server": {"host": "127.0.0.1", "port": 8080},
        "model": {"name": settings.model},
        "streams": [{"id": "cam", "uri": "scene:?seed=1"}],
        "events": {"history": {}, "mqtt": {"host": "broker.lan"}, "webhooks": [{"url": "https://hooks.example/x"}]},
    }, text
    assert "[stream_defaults]" not in text, "an empty table says nothing"
    assert as_read(load_config(path)) == as_read(settings, [StreamConfig("cam", "scene:?seed=1")])


def test_settings_other_than_the_defaults_are_written_and_read_back(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[server]\njpeg_quality = 70\nsave_config = true\n\n"
        '[model]\nname = "bundled"\ndevice = "cpu"\nmax_batch = 2\nhalf = true\nfast_masks = false\n\n'
        '[stream_defaults]\nconf = 0.5\nclasses = ["disc"]\n\n'
        "[events.history]\nmax_mb = 2048\nsnapshots = false\nqueue = 10\n",
    )
    settings = load_config(path)
    write_config(settings, [])
    text = path.read_text()
    saved = tomllib.loads(text)
    assert saved["server"] == {"host": "127.0.0.1", "port": 8080, "jpeg_quality": 70, "save_config": True}
    assert saved["model"] == {"name": "bundled", "device": "cpu", "max_batch": 2, "half": True, "fast_masks": False}
    assert saved["stream_defaults"] == {"conf": 0.5, "classes": ["disc"]}
    assert saved["events"] == {"history": {"max_mb": 2048, "snapshots": False, "queue": 10}}
    assert "max_mb = 2048\n" in text, "a whole number of megabytes is written whole"
    assert as_read(load_config(path)) == as_read(settings)


ZONE_DEFAULTS = {"classes": [], "min_share": 0.25}
LINE_DEFAULTS = {"classes": [], "anchor": "bottom", "hysteresis": 0.02, "confirm_s": 0.5}


def test_zones_and_lines_are_written_without_their_default_keys(tmp_path: Path) -> None:
    """name, points and units are always written: without units, points from 0 to 1 would be refused."""
    zone = {"name": "bay", "points": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]], "units": "fraction", **ZONE_DEFAULTS}
    line = {"name": "gate", "points": [[0, 100], [300, 100]], **LINE_DEFAULTS}
    own_zone = {"name": "own", "points": [[10, 10], [90, 10], [90, 90]], "classes": ["disc"], "min_share": 0.5}
    own_line = {"name": "own", "points": [[0, 50], [300, 50]], "classes": ["disc"], "anchor": "centre"}
    own_line |= {"hysteresis": 0, "confirm_s": 0}  # zero: set, and not the default
    options = StreamOptions.from_mapping({"zones": [zone, own_zone], "lines": [line, own_line]})
    stream = StreamConfig("cam", "scene:", options=options)
    path = write(tmp_path, "")
    write_config(load_config(path), [stream])
    text = path.read_text()
    [table] = tomllib.loads(text)["streams"]
    assert table["zones"] == [
        {"name": "bay", "points": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]], "units": "fraction"},
        {**own_zone, "units": "px"},
    ], text
    assert table["lines"] == [
        {"name": "gate", "points": [[0, 100], [300, 100]], "units": "px"},
        {**own_line, "units": "px"},
    ], text
    assert list(load_config(path).streams) == [stream]


def test_whole_numbers_are_written_whole_wherever_the_file_reads_them_as_numbers(tmp_path: Path) -> None:
    """160.0 for 160, and 2.0 for 2: the file read back the same, but was no longer what its user wrote."""
    zone = {"name": "z", "points": [[160.0, 120.0], [480.5, 120.0], [480.5, 360.0]], "loiter_s": 2.0}
    line = {"name": "l", "points": [[0.0, 240.0], [640.0, 240.0]], "confirm_s": 2.0}
    options = StreamOptions.from_mapping({"conf": 1.0, "zones": [zone], "lines": [line]})
    stream = StreamConfig("cam", "scene:", options=options)
    path = write(tmp_path, "")
    write_config(load_config(path), [stream])
    text = path.read_text()
    assert "[[160, 120], [480.5, 120], [480.5, 360]]" in text and "loiter_s = 2 " in text, text
    assert "[[0, 240], [640, 240]]" in text and "confirm_s = 2 " in text and "conf = 1\n" in text, text
    assert list(floats(tomllib.loads(text))) == [480.5, 480.5], text
    assert list(load_config(path).streams) == [stream]


def test_a_tracker_setting_keeps_the_number_it_was_given(tmp_path: Path) -> None:
    """Tracker settings are taken as given (1.0 and 1 alike), so a float stays one: it reads back the same type."""
    options = StreamOptions.from_mapping({"tracker_settings": {"reid_distance": 4.0, "track_buffer": 90}})
    stream = StreamConfig("cam", "scene:", options=options)
    path = write(tmp_path, "")
    write_config(load_config(path), [stream])
    [again] = load_config(path).streams
    assert again == stream
    assert dict(again.options.tracker_settings) == {"reid_distance": 4.0, "track_buffer": 90}
    assert isinstance(dict(again.options.tracker_settings)["reid_distance"], float)


def test_zones_and_lines_are_written_one_to_a_line(tmp_path: Path) -> None:
    """As a user writes a list of shapes (docs/analytics.md): all of them on one line is hard to read and edit."""
    path = write(tmp_path, USER_FILE)
    settings = load_config(path)
    write_config(settings, list(settings.streams))
    text = path.read_text()
    assert 'zones = [\n  { name = "porch", points = [[40, 30], [200, 30], [200, 150], [40, 150]]' in text, text
    assert 'lines = [\n  { name = "gate", points = [[0, 100], [300, 100]], units = "px" },\n]\n' in text, text
