"""Requests that are wrong in small ways get an error naming exactly what is wrong, or do just what they say.

WebSocket subscriptions whose entries override one option of the message, a number too long for
Python's int, a plain GET of ``/ws``, and PATCH bodies whose mistakes were reported as other ones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.test_api import assert_error
from tests.test_ws import RECEIVE_TIMEOUT_S, connect, frames, next_error

Start = Callable[..., Awaitable[TestClient]]
#: The most detections a stream may ask for: ultralytics' NMS keeps no more boxes than this.
MAX_DET_BOUND = 30_000
#: A message the server always answers with an error, sent after one that should be refused: the
#: first error to come back is then the first message's, or that one was wrongly accepted.
UNKNOWN_FIELD = '{"type": "subscribe", "streams": ["cam"], "colour": 1}'


async def test_an_entry_max_width_does_not_turn_images_on_under_image_none(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    for width in (None, 480):
        ws = await connect(client, {"image": "none", "streams": [{"id": "cam", "max_width": width}]})
        for meta, jpeg in await frames(ws, 2):
            assert meta["image"] is None and jpeg is None, f"max_width {width} sent images"
        await ws.close()


async def test_an_entry_overrides_only_the_options_it_names(start_server: Start) -> None:
    """``a`` names only ``image``: the message's width holds. ``b`` names a null width too: full size."""
    client = await start_server(StreamConfig("a", "scene:?seed=1"), StreamConfig("b", "scene:?seed=2"))
    entries = [{"id": "a", "image": "clean"}, {"id": "b", "image": "clean", "max_width": None}]
    ws = await connect(client, {"image": "none", "max_width": 320, "streams": entries})
    widths: dict[str, int] = {}
    while len(widths) < 2:
        [(meta, jpeg)] = await frames(ws, 1)
        assert meta["image"]["kind"] == "clean" and jpeg is not None
        assert meta["width"] == 640, "the scene's own width, above the message's 320"
        widths[meta["stream"]] = meta["image"]["width"]
    assert widths == {"a": 320, "b": 640}
    await ws.close()


async def test_a_bad_max_width_is_refused_beside_image_none(start_server: Start) -> None:
    """An entry may turn images on, and it would inherit the message's width: a bad one is named where it is."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    ws = await client.ws_connect("/ws")
    await ws.receive_json(timeout=RECEIVE_TIMEOUT_S)
    await ws.send_json(
        {"type": "subscribe", "streams": [{"id": "cam", "image": "clean"}], "image": "none", "max_width": 3}
    )
    await ws.send_str(UNKNOWN_FIELD)
    assert (await next_error(ws)).startswith("subscribe.max_width: expected pixels from 32 to 7680")
    await ws.close()


async def test_a_max_width_of_thousands_of_digits_is_out_of_range_not_bad_json(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    ws = await client.ws_connect("/ws")
    await ws.receive_json(timeout=RECEIVE_TIMEOUT_S)
    for where, message in [
        ("subscribe.", '{"type": "subscribe", "streams": ["cam"], "max_width": ' + "9" * 5000 + "}"),
        ("streams[0].", '{"type": "subscribe", "streams": [{"id": "cam", "max_width": -' + "9" * 30 + "}]}"),
    ]:
        await ws.send_str(message)
        assert (await next_error(ws)).startswith(f"{where}max_width: expected pixels from 32 to 7680")
    await ws.close()


async def test_a_plain_get_of_the_websocket_path_is_a_json_error(start_server: Start) -> None:
    client = await start_server()
    response = await client.get("/ws")
    assert response.content_type == "application/json"
    await assert_error(response, 400, "WebSocket client")


async def test_patch_errors_name_the_field_that_is_wrong(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    cases = [
        ({"options": {"options": {}}}, ["body.options.options"]),
        ({"id": None, "conf": 0.5}, ["body.id", "'cam'", "None"]),
        ({"id": 5, "conf": 0.5}, ["body.id", "'cam'", "5"]),
        ({"options": {"conf": 0.4}, "conf": 0.5}, ["body.conf", "twice"]),
        # The stream's own keys are no options: nested, a uri was taken as the stream's all the same.
        ({"options": {"uri": "scene:?seed=2"}}, ["body.options.uri", "not a stream option"]),
        ({"options": {"loop": True}}, ["body.options.loop", "beside options"]),
    ]
    for body, words in cases:
        await assert_error(await client.patch("/api/streams/cam", json=body), 400, *words)
    stream = await (await client.get("/api/streams/cam")).json()
    assert stream["options"]["conf"] == 0.25 and stream["options"]["max_det"] == 300, "nothing was changed"


async def test_an_option_given_twice_is_refused_when_adding_a_stream(start_server: Start) -> None:
    client = await start_server()
    body = {"id": "x", "uri": "scene:", "options": {"iou": 0.4}, "iou": 0.5}
    await assert_error(await client.post("/api/streams", json=body), 400, "body.iou", "twice")
    assert (await (await client.get("/api/streams")).json())["streams"] == []


async def test_max_det_is_bounded_where_nms_keeps_no_more(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    for too_many in (10**20, MAX_DET_BOUND + 1):
        response = await client.patch("/api/streams/cam", json={"max_det": too_many})
        await assert_error(response, 400, "body.max_det", f"from 1 to {MAX_DET_BOUND}", str(too_many))
    response = await client.patch("/api/streams/cam", json={"max_det": MAX_DET_BOUND})
    assert response.status == 200, await response.text()
    assert (await response.json())["options"]["max_det"] == MAX_DET_BOUND


async def test_a_method_an_api_route_does_not_take_is_a_json_405_naming_those_it_does(start_server: Start) -> None:
    """RFC 9110 15.5.6: a 405 names the methods the route takes (``Allow``), which the JSON error kept."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    for method, path, allowed in (
        ("PUT", "/api/streams/cam", {"GET", "PATCH", "DELETE"}),
        ("DELETE", "/api/streams", {"GET", "POST"}),
    ):
        response = await client.request(method, path)
        await assert_error(response, 405)
        named = {name.strip() for name in response.headers.get("Allow", "").split(",")}
        assert allowed <= named and method not in named, response.headers.get("Allow")
