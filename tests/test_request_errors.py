"""Requests that are wrong in small ways get an error naming exactly what is wrong, or do just what they say.

WebSocket subscriptions whose entries override one option of the message, a number too long for
Python's int, a plain GET of ``/ws``, and PATCH bodies whose mistakes were reported as other ones.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.options import StreamOptions
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


async def test_a_page_that_is_not_there_is_a_plain_404_and_only_an_api_route_a_json_one(start_server: Start) -> None:
    """A browser shows a page's 404 as it is: JSON is the API's shape for its clients, not a person's."""
    client = await start_server()
    page = await client.get("/no/such/page")
    assert (page.status, page.content_type) == (404, "text/plain")
    api = await client.get("/api/no/such/route")
    assert api.content_type == "application/json"
    await assert_error(api, 404, "no such API route: GET /api/no/such/route")


async def test_patch_errors_name_the_field_that_is_wrong(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    cases = [
        ({"options": {"options": {}}}, ["body.options.options"]),
        ({"id": None, "conf": 0.5}, ["body.id", "'cam'", "got null"]),
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


async def test_a_patch_of_the_streams_own_id_alone_is_refused_as_naming_nothing(start_server: Start) -> None:
    """The id names the stream, not a change of it: ``{"id": "cam"}`` was a 200 that changed nothing."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    for body in ({"id": "cam"}, {"id": "cam", "options": {}}):
        await assert_error(await client.patch("/api/streams/cam", json=body), 400, "at least one thing to change")


async def test_refused_values_are_echoed_as_json_cut_short(start_server: Start) -> None:
    """As the client sent them (``true``, ``null``, double quotes), not as Python writes them."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    cases = [
        ({"conf": True}, "body.conf: expected a number from 0.01 to 1, got true"),
        ({"agnostic_nms": None}, "body.agnostic_nms: expected true or false, got null"),
        ({"classes": {"name": "z"}}, 'body.classes: expected a list of class names, got {"name": "z"}'),
        ({"loop": "yes"}, 'body.loop: expected true or false, got "yes"'),
        ({"tracker_settings": {"track_buffer": "x" * 100}}, "got " + json.dumps("x" * 100)[:59] + "…"),
        (
            {"zones": [{"name": "z", "points": [[0, 0], [9, 0], [9, 9]], "units": "cm"}]},
            'units: expected px or fraction, got "cm"',
        ),
    ]
    for body, message in cases:
        response = await client.patch("/api/streams/cam", json=body)
        assert response.status == 400, await response.text()
        assert (await response.json())["error"].endswith(message), body


async def test_a_number_too_long_to_read_is_said_so_in_segcasts_words(start_server: Start) -> None:
    """Python's own words for it named sys.set_int_max_str_digits(), which a client cannot call."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    response = await client.patch("/api/streams/cam", data='{"imgsz": ' + "9" * 5000 + "}")
    await assert_error(response, 400)
    assert (await response.json())["error"] == (
        "the body must be a JSON object of finite numbers: a whole number of 5000 digits is too long to read"
    )


async def test_whole_numbers_sent_as_floats_are_taken_for_integer_options(start_server: Start) -> None:
    """JSON Schema counts 64.0 an integer, and Python clients send one; 64.5 is refused as no whole number."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    response = await client.patch("/api/streams/cam", json={"imgsz": 64.0, "max_det": 1000.0})
    assert response.status == 200, await response.text()
    options = json.loads(await response.text())["options"]
    assert [options["imgsz"], options["max_det"]] == [64, 1000]
    assert all(type(value) is int for value in (options["imgsz"], options["max_det"])), "answered as integers"
    for body, message in [
        ({"imgsz": 64.5}, "body.imgsz: expected a whole number of pixels from 32 to 4096, got 64.5"),
        ({"max_det": 1000.5}, "body.max_det: expected a whole number from 1 to 30000, got 1000.5"),
    ]:
        response = await client.patch("/api/streams/cam", json=body)
        assert response.status == 400, await response.text()
        assert (await response.json())["error"] == message


async def test_a_new_tracker_keeps_the_settings_it_also_takes_and_drops_the_others(start_server: Start) -> None:
    """Only the keys given change: a PATCH of the tracker alone dropped its track_buffer of 60 too."""
    settings = (("gmc_method", "orb"), ("track_buffer", 60))
    client = await start_server(
        StreamConfig("cam", "scene:?seed=1", options=StreamOptions(tracker="botsort", tracker_settings=settings))
    )
    response = await client.patch("/api/streams/cam", json={"tracker": "bytetrack"})
    assert response.status == 200, await response.text()
    options = (await response.json())["options"]
    assert options["tracker"] == "bytetrack"
    assert options["tracker_settings"] == {"track_buffer": 60}, "ByteTrack has no gmc_method"
    response = await client.patch(
        "/api/streams/cam", json={"tracker": "botsort", "tracker_settings": {"match_thresh": 0.6}}
    )
    assert (await response.json())["options"]["tracker_settings"] == {"match_thresh": 0.6, "track_buffer": 60}
    # segtrack's settings share names with BoT-SORT's, not their meaning: none is carried over.
    response = await client.patch("/api/streams/cam", json={"tracker": "segtrack"})
    assert (await response.json())["options"]["tracker_settings"] == {}


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
        await assert_error(response, 405, f"{method} is not allowed on {path}", *sorted(allowed))
        named = {name.strip() for name in response.headers.get("Allow", "").split(",")}
        assert allowed <= named and method not in named, response.headers.get("Allow")
