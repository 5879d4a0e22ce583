"""Names people give (stream ids, zone and line names, MQTT settings) refused with the fix, or read as meant."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from server.analytics.shapes import parse_lines, parse_zones
from server.config import StreamConfig, load_config, stream_config
from server.config_values import ConfigError
from server.http.keys import hub_key
from server.options import StreamOptions
from server.source_flags import streams_from_flags
from tests.test_ws import Start, connect, next_error, next_reply

SQUARE = [[0, 0], [100, 0], [100, 100], [0, 100]]


@pytest.mark.parametrize(
    ("value", "head"),
    [
        ("entrée/porte=scene:?seed=1", "entrée/porte"),
        ("cam:1=scene:?seed=2", "cam:1"),
        ("cam:1 = rtsp://host/live", "cam:1"),
    ],
)
def test_an_id_with_a_colon_or_slash_before_a_source_is_refused_as_an_id(value: str, head: str) -> None:
    """``entrée/porte=...`` became a stream ``porte-scene-seed-1`` that found "no such file", and
    ``cam:1=...`` an "unsupported source": neither said the id was what to fix."""
    with pytest.raises(
        ConfigError, match=f"^--source: {re.escape(repr(head))} before the '=' is not a valid stream id: expected 1"
    ):
        streams_from_flags([value])


def test_an_id_with_a_slash_before_a_path_that_exists_is_refused_as_an_id(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").touch()
    with pytest.raises(ConfigError, match="'cam/1' before the '=' is not a valid stream id"):
        streams_from_flags([f"cam/1={tmp_path / 'a.mp4'}"])


@pytest.mark.parametrize(
    "uri",
    [
        "rtsp://host/path?a=b",
        "rtsp://user:pa=ss@host/live",
        "http://proxy/play?src=rtsp://cam/1",
        "http://host/live.m3u8?token=https://issuer/x",
        "scene:?seed=3",
        "/v/a=b.mp4",
    ],
)
def test_sources_with_an_equals_sign_of_their_own_keep_it(uri: str) -> None:
    [stream] = streams_from_flags([uri])
    assert stream.uri == uri


def test_a_file_named_with_an_equals_sign_before_a_scheme_is_still_that_file(tmp_path: Path) -> None:
    """Its name reads as ``ID=URI`` (``scene:x.mp4`` has a scheme), but the file is there."""
    path = tmp_path / "take=scene:1.mp4"
    path.touch()
    [stream] = streams_from_flags([str(path)])
    assert (stream.stream_id, stream.uri) == ("take-scene-1", str(path))


def test_ids_made_from_file_names_fold_accents_and_fall_back_for_other_scripts() -> None:
    """``cámara`` was c-mara: the accented letter cut the word in two."""
    streams = streams_from_flags(["/v/cámara 1.mp4", "/v/Ñandú.mp4", "/v/カメラ.mp4"])
    assert [stream.stream_id for stream in streams] == ["camara-1", "Nandu", "stream"]


def test_a_numeric_stream_id_in_the_file_is_told_to_quote_it(tmp_path: Path) -> None:
    """``id = 1`` was told "expected 1 to 64 letters, digits, ... got 1", as if a digit were refused."""
    path = tmp_path / "segcast.toml"
    path.write_text('[[streams]]\nid = 1\nuri = "scene:?seed=1"\n')
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == 'segcast.toml: streams[0].id: expected text, got the number 1: quote it ("1")'


def test_a_numeric_stream_id_in_the_api_is_told_to_quote_it() -> None:
    with pytest.raises(ConfigError) as refused:
        stream_config({"id": 1, "uri": "scene:?seed=1"}, StreamOptions(), "body")
    assert str(refused.value) == 'body.id: expected text, got the number 1: quote it ("1")'


def test_numeric_zone_and_line_names_are_told_to_quote_them() -> None:
    with pytest.raises(ValueError) as zone:
        parse_zones([{"name": 1, "points": SQUARE}])
    assert str(zone.value) == 'zones[0].name: expected text, got the number 1: quote it ("1")'
    with pytest.raises(ValueError) as line:
        parse_lines([{"name": 20, "points": [[0, 0], [100, 0]]}])
    assert str(line.value) == 'lines[0].name: expected text, got the number 20: quote it ("20")'


@pytest.mark.parametrize(
    ("key", "value"),
    [("topic_prefix", "site"), ("discovery_id", "seg"), ("discovery_prefix", "homeassistant"), ("host", "broker")],
)
def test_mqtt_settings_ending_in_a_newline_are_refused(tmp_path: Path, key: str, value: str) -> None:
    """A final newline passed the patterns ('$' matches before it); the broker then refused every
    message as malformed UTF-8 and segcast blamed TLS."""
    path = tmp_path / "segcast.toml"
    path.write_text(mqtt_table({"host": "broker", key: f"{value}\n"}))
    with pytest.raises(ConfigError, match=rf"events\.mqtt\.{key}: expected"):
        load_config(path)
    path.write_text(mqtt_table({"host": "broker", key: value}))
    assert load_config(path).events.mqtt is not None, "the same settings without the newline load"


def mqtt_table(settings: dict[str, str]) -> str:
    return "[events.mqtt]\n" + "".join(f"{key} = {json.dumps(text)}\n" for key, text in settings.items())


@pytest.mark.parametrize("bad", ["cám", "", "*x", "cam\n", "front door"])
async def test_subscribing_to_an_id_no_stream_could_have_is_refused_and_not_kept(start_server: Start, bad: str) -> None:
    """It was told "its frames will follow if it is added", and held one of the places ids wait in."""
    client: TestClient = await start_server(StreamConfig("cam", "scene:?seed=1"))
    assert client.app is not None
    hub = client.app[hub_key]
    ws = await connect(client, {"streams": ["cam"], "image": "none"})
    await ws.send_json({"type": "subscribe", "streams": ["cam", bad]})
    assert await next_error(ws) == (
        f"streams[1]: expected 1 to 64 ASCII letters (a-z, A-Z), digits, '-' or '_' (ids go into URLs and MQTT topics),"
        f' got {bad!r} (or "*" for all)'
    )
    await ws.send_json({"type": "subscribe", "streams": [{"id": bad, "image": "clean"}]})
    assert await next_error(ws) == (
        f"streams[0].id: expected 1 to 64 ASCII letters (a-z, A-Z), digits, '-' or '_' (ids go into URLs and MQTT"
        f' topics), got {bad!r} (or "*" for all)'
    )
    assert [set(viewer.subscriptions) for viewer in hub.viewers] == [{"cam"}], "the previous subscription holds"
    await ws.close()


async def test_a_valid_id_of_no_stream_still_waits_for_its_stream(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    assert client.app is not None
    ws = await connect(client, {"streams": ["cam", "later-1", "*"], "image": "none"})
    assert (await next_reply(ws, "subscribed", "error"))["unknown"] == ["later-1"]
    assert [set(v.subscriptions) for v in client.app[hub_key].viewers] == [{"cam", "later-1", "*"}]
    await ws.close()
