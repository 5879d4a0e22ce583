"""One stream-id rule, told in one wording after each entry point's own prefix: the config file, the
API, a WebRTC publisher, a WebSocket subscription and ``--source`` refuse the same ids alike."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from server.config import StreamConfig, load_config
from server.config_values import ConfigError
from server.source_flags import streams_from_flags
from tests.test_ws import Start, connect, next_error

#: The rule as every entry point states it, after its prefix and before the refused value.
RULE = "expected 1 to 64 ASCII letters (a-z, A-Z), digits, '-' or '_' (ids go into URLs and MQTT topics), got "
BAD_IDS = ["a.b", "x" * 65, "", "cam\n"]
#: An offer that passes every check made before the stream id's.
OFFER = {"type": "offer", "sdp": "v=0\r\nm=video 9"}


@pytest.mark.parametrize("bad", BAD_IDS)
def test_the_config_file_refuses_a_bad_id_with_the_rule(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "segcast.toml"
    path.write_text(f'[[streams]]\nid = {json.dumps(bad)}\nuri = "scene:?seed=1"\n')
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == f"segcast.toml: streams[0].id: {RULE}{bad!r}"


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_the_api_refuses_a_bad_id_with_the_rule(start_server: Start, bad: str) -> None:
    client = await start_server()
    response = await client.post("/api/streams", json={"id": bad, "uri": "scene:?seed=1"})
    assert response.status == 400
    assert (await response.json())["error"] == f"body.id: {RULE}{bad!r}"


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_a_webrtc_publisher_is_refused_a_bad_id_with_the_rule(start_server: Start, bad: str) -> None:
    """It alone said "'stream' must be 1-64 letters, digits, '_' or '-'", naming no value."""
    client = await start_server()
    response = await client.post("/api/webrtc/publish", json={**OFFER, "stream": bad})
    assert response.status == 400
    assert (await response.json())["error"] == f"'stream': {RULE}{bad!r}"
    assert (await (await client.get("/api/streams")).json())["streams"] == [], "nothing was started"


async def test_a_webrtc_publisher_giving_a_number_is_told_to_quote_it(start_server: Start) -> None:
    client = await start_server()
    response = await client.post("/api/webrtc/publish", json={**OFFER, "stream": 7})
    assert response.status == 400
    assert (await response.json())["error"] == """'stream': expected text, got the number 7: quote it ("7")"""


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_a_websocket_subscription_is_refused_a_bad_id_with_the_rule(start_server: Start, bad: str) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    ws = await connect(client, {"streams": ["cam", bad], "image": "none"})
    assert await next_error(ws) == f'streams[1]: {RULE}{bad!r} (or "*" for all)'
    await ws.close()


@pytest.mark.parametrize("bad", ["a.b", "x" * 65, ""])
def test_source_flag_refuses_a_bad_id_with_the_rule(bad: str) -> None:
    """``cam\\n`` is not here: the flag strips the space around an id (``cam = rtsp://...``), so it is ``cam``."""
    with pytest.raises(ConfigError) as refused:
        streams_from_flags([f"{bad}=scene:?seed=1"])
    assert str(refused.value) == (
        f"--source: {bad!r} before the '=' is not a valid stream id: {RULE}{bad!r} "
        "(a file whose name holds '=' can be given as ./NAME)"
    )


@pytest.mark.parametrize("bad", ["a.b", "x" * 65, "cam\n"])
async def test_the_embed_page_of_an_id_no_stream_could_have_is_not_found(start_server: Start, bad: str) -> None:
    client = await start_server()
    assert (await client.get("/embed/cam")).status == 200, "a valid id gets the page, its stream or not"
    assert (await client.get(f"/embed/{quote(bad)}")).status == 404
