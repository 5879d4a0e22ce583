"""The WebSocket protocol with real clients: pairing, variants, rate limits, events, and stalled peers."""

from __future__ import annotations

import asyncio
import fcntl
import json
import math
import re
import socket
import sys
import termios
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from aiohttp import ClientWebSocketResponse, WSCloseCode, WSMsgType, WSServerHandshakeError
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.delivery.encode import encodings
from server.delivery.viewer import MAX_SCALED_IMAGES, ViewerLimits
from server.http.access.auth import TOKEN_EXPIRED_CLOSE_CODE, policy_key
from server.http.access.tokens import Role
from server.http.keys import hub_key, websockets_key
from server.http.network.serving import UNSENT_LIMIT_BYTES
from server.http.viewers import MAX_FPS, MIN_FPS
from server.http.ws import (
    CLIENT_MESSAGE_BURST,
    MAX_SUBSCRIBED_ENTRIES_PER_S,
    MAX_SUBSCRIBED_STREAMS,
    MAX_UNKNOWN_STREAMS,
    SUBSCRIBED_ENTRIES_BURST,
    RateLimit,
    parse_subscriptions,
    subscribed_message,
    too_many_unknown_message,
)
from tests.conftest import NUMBERED_FRAMES
from tests.support.numbered import colour_errors, number_of
from tests.support.polling import eventually
from tests.support.raw_websocket import raw_websocket

Start = Callable[..., Awaitable[TestClient]]
RECEIVE_TIMEOUT_S = 30.0
PROTOCOL_DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


async def connect(client: TestClient, subscribe: dict[str, Any]) -> ClientWebSocketResponse:
    ws = await client.ws_connect("/ws")
    hello = await ws.receive_json(timeout=RECEIVE_TIMEOUT_S)
    assert hello["type"] == "hello" and hello["v"] == 1
    await ws.send_json({"type": "subscribe", **subscribe})
    return ws


async def next_message(ws: ClientWebSocketResponse) -> tuple[str, Any]:
    message = await ws.receive(timeout=RECEIVE_TIMEOUT_S)
    if message.type is WSMsgType.TEXT:
        return "text", json.loads(message.data)
    assert message.type is WSMsgType.BINARY, message
    return "binary", message.data


async def frames(ws: ClientWebSocketResponse, count: int) -> list[tuple[dict[str, Any], bytes | None]]:
    """The next ``count`` frames as (metadata, JPEG or None), checking the pairing rule on the way."""
    received: list[tuple[dict[str, Any], bytes | None]] = []
    while len(received) < count:
        kind, data = await next_message(ws)
        assert kind == "text", "a binary message only ever follows its frame message"
        if data["type"] != "frame":
            continue
        if data["image"] is None:
            received.append((data, None))
            continue
        kind, jpeg = await next_message(ws)
        assert kind == "binary", "the JPEG comes right after the metadata of its frame"
        assert len(jpeg) == data["image"]["bytes"]
        received.append((data, jpeg))
    return received


def image_size(jpeg: bytes) -> tuple[int, int]:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return image.shape[1], image.shape[0]


async def test_each_jpeg_follows_the_metadata_of_exactly_its_frame(start_server: Start, numbered_video: Path) -> None:
    """The picture says which frame it is: metadata one frame out of step with its JPEG fails here."""
    client = await start_server(StreamConfig("cam", str(numbered_video), loop=True))
    annotated = await connect(client, {"streams": ["cam"]})
    clean = await connect(client, {"streams": ["cam"], "image": "clean"})
    received = await frames(annotated, 4)
    seqs = [meta["seq"] for meta, _ in received]
    assert seqs == sorted(set(seqs)), "newer frames only, never a repeat"
    for meta, jpeg in received:
        assert meta["stream"] == "cam" and meta["image"]["kind"] == "annotated"
        assert jpeg is not None and jpeg[:2] == b"\xff\xd8"
        assert image_size(jpeg) == (meta["width"], meta["height"]) == (meta["image"]["width"], meta["image"]["height"])
    for meta, jpeg in await frames(clean, 8):
        assert jpeg is not None
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        # A file's frames are read in order, every one: the reader's seq is the index in the file.
        assert number_of(image) == meta["seq"] % NUMBERED_FRAMES, f"the JPEG of another frame than {meta['seq']}"
        assert colour_errors(image) == [], "decoding and encoding keep BGR order"
    await annotated.close()
    await clean.close()


async def test_offered_compression_is_declined_so_jpegs_are_not_deflated_per_viewer(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    ws = await client.ws_connect("/ws", compress=15)  # offers permessage-deflate, as every browser does
    assert ws.compress == 0
    hello = await ws.receive_json(timeout=RECEIVE_TIMEOUT_S)
    assert hello["type"] == "hello"
    await ws.close()


async def test_metadata_only_subscription_gets_no_images(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    ws = await connect(client, {"streams": ["cam"], "image": "none"})
    for meta, jpeg in await frames(ws, 3):
        assert meta["image"] is None and jpeg is None
        assert isinstance(meta["tracks"], list)
    await ws.close()


async def test_clean_scaled_frames_per_stream(start_server: Start) -> None:
    client = await start_server(StreamConfig("a", "scene:?seed=1"), StreamConfig("b", "scene:?seed=2"))
    ws = await connect(client, {"streams": [{"id": "a", "image": "clean", "max_width": 320}, "b"], "image": "none"})
    seen: dict[str, dict[str, Any]] = {}
    while len(seen) < 2:
        for meta, jpeg in await frames(ws, 1):
            seen[meta["stream"]] = meta
            if meta["stream"] == "a":
                assert meta["image"] == {"kind": "clean", "width": 320, "height": 192, "bytes": len(jpeg or b"")}
                assert jpeg is not None and image_size(jpeg) == (320, 192)
                assert (meta["width"], meta["height"]) == (640, 384), "metadata stays in full-frame pixels"
            else:
                assert meta["image"] is None
    await ws.close()


async def test_frame_rate_limit_spaces_frames(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    max_fps = 2.0
    ws = await connect(client, {"streams": ["cam"], "image": "none", "max_fps": max_fps})
    arrivals = []
    for _ in range(6):
        await frames(ws, 1)
        arrivals.append(time.monotonic())
    # The mean, not each gap: one frame delivered late (a busy machine) makes the next gap short.
    # Unlimited, the 15 fps scene would arrive at the rate inference runs, several times faster.
    mean_gap = (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1)
    assert mean_gap >= 0.5 / max_fps, np.diff(arrivals)
    await ws.close()


async def test_a_variant_is_encoded_once_per_frame_for_any_number_of_viewers(start_server: Start) -> None:
    """Counted on the loop, frame by frame: the encoder thread's own counter runs ahead of what is published."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    assert client.app is not None
    hub = client.app[hub_key]
    sockets = [await connect(client, {"streams": ["cam"], "image": "clean"}) for _ in range(3)]
    for ws in sockets:
        await frames(ws, 1)
    images, published = hub.images("cam"), hub.published("cam")
    await asyncio.gather(*(frames(ws, 3) for ws in sockets))
    assert hub.published("cam") - published >= 3
    assert hub.images("cam") - images == hub.published("cam") - published
    for ws in sockets:
        await ws.close()


async def test_distinct_widths_cannot_multiply_the_encoders_work(start_server: Start) -> None:
    """60 viewers each asking for a width of its own cost a few encodings per frame, not 60 (issue 14)."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1&width=640&height=384"))
    assert client.app is not None
    hub = client.app[hub_key]
    asked = [100 + 10 * n for n in range(60)]
    sockets = [await connect(client, {"streams": ["cam"], "max_width": width}) for width in asked]
    normal = await connect(client, {"streams": ["cam"]})

    async def all_subscribed() -> bool:
        return hub.viewer_count("cam") == len(asked) + 1

    await eventually(all_subscribed, what="every viewer to subscribe")
    first = (await frames(normal, 1))[0][0]["seq"]
    while (await frames(normal, 1))[0][0]["seq"] <= first + 1:  # encoded after every subscription
        pass
    limit = 1 + MAX_SCALED_IMAGES  # the full size, and the scaled sizes a stream may have
    assert hub.variants_wanted("cam") <= limit
    assert encodings(hub.latest["cam"].jpegs) <= limit
    for width, ws in zip(asked, sockets, strict=True):
        [(meta, jpeg)] = await frames(ws, 1)
        assert jpeg is not None and image_size(jpeg) == (meta["image"]["width"], meta["image"]["height"])
        assert meta["image"]["width"] <= width or meta["image"]["width"] == 640, "scaled down, or the full size"
    for ws in (*sockets, normal):
        await ws.close()


async def test_viewers_beyond_max_viewers_are_refused_and_counted(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"), viewer_limits=ViewerLimits(max_viewers=2))
    sockets = [await connect(client, {"streams": ["cam"]}) for _ in range(2)]
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/ws")
    assert refused.value.status == 503
    mjpeg = await client.get("/api/streams/cam/mjpeg")
    assert mjpeg.status == 503 and "max_viewers" in (await mjpeg.json())["error"]
    metrics = await (await client.get("/metrics")).text()
    assert 'segcast_viewers_refused_total{limit="max_viewers"} 2' in metrics
    await sockets[0].close()
    assert client.app is not None
    hub = client.app[hub_key]

    async def room() -> bool:
        return len(hub.viewers) < 2

    await eventually(room, what="the closed viewer to be gone")
    again = await connect(client, {"streams": ["cam"]})
    for ws in (sockets[1], again):
        await ws.close()


async def test_bad_subscriptions_get_an_error_naming_the_field(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    ws = await client.ws_connect("/ws")
    await ws.receive_json()
    cases = {
        '{"type": "subscribe", "streams": ["cam"], "image": "sepia"}': "image",
        '{"type": "subscribe", "streams": ["cam"], "max_width": 3}': "max_width",
        '{"type": "subscribe", "streams": ["cam"], "max_fps": 0}': "max_fps",
        # One frame and then nothing for ever, the viewer held open for nothing.
        '{"type": "subscribe", "streams": ["cam"], "max_fps": 1e-300}': "max_fps",
        '{"type": "subscribe", "streams": ["cam"], "colour": 1}': "colour",
        '{"type": "subscribe", "streams": [{"id": "cam", "image": "x"}]}': "streams[0].image",
        '{"type": "subscribe", "streams": [7]}': "streams[0]",
    }
    for text, field in cases.items():
        await ws.send_str(text)
        reply = await ws.receive_json(timeout=RECEIVE_TIMEOUT_S)
        while reply["type"] in ("status", "added"):  # the stream's own news may come first
            reply = await ws.receive_json(timeout=RECEIVE_TIMEOUT_S)
        assert reply["type"] == "error" and field in reply["message"], (text, reply)
    await ws.close()


async def test_subscribing_to_an_unknown_stream_is_acknowledged_naming_it_and_its_frames_follow_once_it_exists(
    start_server: Start,
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    ws = await connect(client, {"streams": ["cam", "camm"], "image": "none"})
    reply = await ws.receive_json(timeout=RECEIVE_TIMEOUT_S)
    while reply["type"] != "subscribed":
        assert reply["type"] == "status"
        reply = await ws.receive_json(timeout=RECEIVE_TIMEOUT_S)
    assert reply == subscribed_message(["cam", "camm"], ["camm"])
    assert (await client.post("/api/streams", json={"id": "camm", "uri": "scene:?seed=2"})).status == 201
    while not (reply["type"] == "frame" and reply["stream"] == "camm"):
        reply = await ws.receive_json(timeout=RECEIVE_TIMEOUT_S)
    await ws.close()


async def next_error(ws: ClientWebSocketResponse) -> str:
    """The message of the next ``error`` the server sends, past the frames and news that come first."""
    return str((await next_reply(ws, "error"))["message"])


async def next_reply(ws: ClientWebSocketResponse, *types: str) -> dict[str, Any]:
    """The next message of one of ``types``, past the frames and news that come first."""
    while (reply := await ws.receive_json(timeout=RECEIVE_TIMEOUT_S))["type"] not in types:
        pass
    return dict(reply)


async def test_subscribing_to_every_stream_names_no_unknown_id(start_server: Start) -> None:
    """``"*"`` is no stream's id, and the grid subscribes to it on every connect: it must not be told that
    no stream '*' exists. The next subscription, of an id that is unknown, names that id alone."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    ws = await connect(client, {"streams": ["*"], "image": "none"})
    assert await next_reply(ws, "subscribed", "error") == subscribed_message(["*"], [])
    await ws.send_json({"type": "subscribe", "streams": ["camm"], "image": "none"})
    assert await next_reply(ws, "subscribed", "error") == subscribed_message(["camm"], ["camm"])
    await ws.close()


@pytest.mark.parametrize("max_fps", [MIN_FPS, MAX_FPS])
def test_a_max_fps_at_either_end_of_its_range_is_accepted(max_fps: float) -> None:
    parsed = parse_subscriptions({"type": "subscribe", "streams": ["cam"], "max_fps": max_fps})
    assert not isinstance(parsed, str), parsed
    assert parsed["cam"].max_fps == max_fps


@pytest.mark.parametrize("max_fps", [math.nextafter(MIN_FPS, 0.0), math.nextafter(MAX_FPS, math.inf)])
def test_a_max_fps_just_outside_its_range_is_refused(max_fps: float) -> None:
    parsed = parse_subscriptions({"type": "subscribe", "streams": ["cam"], "max_fps": max_fps})
    assert isinstance(parsed, str) and parsed.startswith("subscribe.max_fps:"), parsed


def test_a_full_rate_limit_allows_its_whole_burst_at_one_instant_and_no_more() -> None:
    limit = RateLimit()
    now = time.monotonic()  # not before the bucket was filled: it stays full, and nothing refills it
    allowed = [limit.allow(now=now) for _ in range(CLIENT_MESSAGE_BURST + 1)]
    assert allowed == [True] * CLIENT_MESSAGE_BURST + [False]


def test_a_cost_of_the_whole_burst_is_allowed_on_a_full_bucket() -> None:
    """The entries' burst is two full lists of streams: a client may send both at once."""
    lists = RateLimit(MAX_SUBSCRIBED_ENTRIES_PER_S, SUBSCRIBED_ENTRIES_BURST, "stream entries")
    now = time.monotonic()
    assert [lists.allow(MAX_SUBSCRIBED_STREAMS, now=now) for _ in range(3)] == [True, True, False]
    whole = RateLimit(MAX_SUBSCRIBED_ENTRIES_PER_S, SUBSCRIBED_ENTRIES_BURST, "stream entries")
    assert whole.allow(SUBSCRIBED_ENTRIES_BURST, now=time.monotonic())


async def test_a_few_ids_of_streams_not_added_yet_may_wait_but_no_more(start_server: Start) -> None:
    """Each waiting id costs the server for as long as it waits: a subscription is held to a few."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    assert client.app is not None
    hub = client.app[hub_key]
    ws = await connect(client, {"streams": ["cam"], "image": "none"})
    too_many = [f"later-{n:02}" for n in range(MAX_UNKNOWN_STREAMS + 1)]
    await ws.send_json({"type": "subscribe", "streams": ["cam", *too_many]})
    assert await next_error(ws) == too_many_unknown_message(too_many)
    assert [set(v.subscriptions) for v in hub.viewers] == [{"cam"}], "the previous subscription holds"
    await ws.send_json({"type": "subscribe", "streams": ["cam", *too_many[1:]]})
    assert await next_reply(ws, "subscribed", "error") == subscribed_message(["cam", *too_many[1:]], too_many[1:])
    assert [set(v.subscriptions) for v in hub.viewers] == [{"cam", *too_many[1:]}]
    await ws.close()


def long_list(n: int, last: object = None) -> str:
    """A subscription to `MAX_SUBSCRIBED_STREAMS` ids no stream has; ``last`` in place of the last one."""
    ids = [f"x{n}-{k}" for k in range(MAX_SUBSCRIBED_STREAMS - 1)]
    return json.dumps({"type": "subscribe", "streams": [*ids, last or f"x{n}-last"]})


LONG_TEXT = json.dumps({"type": "subscribe", "streams": [], "pad": "x" * 60000})


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        pytest.param([long_list(n) for n in range(4)], "stream entries", id="long-lists"),
        pytest.param([long_list(n, last=7) for n in range(4)], "stream entries", id="long-lists-each-refused"),
        pytest.param([LONG_TEXT] * 3, "characters of text", id="long-texts"),
    ],
)
async def test_a_client_sending_much_is_disconnected_though_under_the_message_rate(
    start_server: Start, messages: list[str], reason: str
) -> None:
    """Each entry and each character read costs loop time: a few clients resending 256 entries ten times
    a second froze the server. The entries of a list refused for a bad one were read all the same."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    ws = await connect(client, {"streams": ["cam"], "image": "none"})
    for text in messages:  # a few, far under the message rate
        await ws.send_str(text)
    errors = 0  # each message read is answered: ids of no stream, or a bad field
    while errors < len(messages):
        message = await ws.receive(timeout=RECEIVE_TIMEOUT_S)
        if message.type is not WSMsgType.TEXT:
            break
        if json.loads(message.data)["type"] == "error":
            errors += 1
    assert message.type is WSMsgType.CLOSE, f"not disconnected; {errors} of {len(messages)} messages answered"
    assert message.data == WSCloseCode.POLICY_VIOLATION and reason in message.extra


async def test_the_answer_examples_in_the_protocol_doc_are_what_the_server_sends(start_server: Start) -> None:
    text = PROTOCOL_DOC.read_text()
    examples = re.findall(r"`(\{\"type\": \"subscribe\"[^`]*)` gets:\s*```json\n(.*?)\n```", text, re.DOTALL)
    assert len(examples) == 2, "the doc shows the answer to an unknown stream and the error for a bad field"
    client = await start_server(StreamConfig("front", "scene:?seed=1"))
    ws = await client.ws_connect("/ws")
    await ws.receive_json(timeout=RECEIVE_TIMEOUT_S)
    for sent, documented in examples:
        await ws.send_str(sent)
        assert await next_reply(ws, "subscribed", "error") == json.loads(documented)
    await ws.close()


def field_paths(value: Any, at: str = "") -> set[str]:
    """Every key of a JSON value, nested ones as dotted paths; a list's objects each as ``[]``."""
    if isinstance(value, dict):
        return {f"{at}{key}" for key in value} | {
            path for key, item in value.items() for path in field_paths(item, f"{at}{key}.")
        }
    if isinstance(value, list):
        return {path for item in value for path in field_paths(item, f"{at}[].")}
    return set()


async def test_the_hello_example_in_the_protocol_doc_has_every_field_the_server_sends(start_server: Start) -> None:
    [documented] = re.findall(r"```json\n(\{\"type\": \"hello\".*?)\n```", PROTOCOL_DOC.read_text(), re.DOTALL)
    client = await start_server(StreamConfig("front", "scene:?seed=1"))
    ws = await client.ws_connect("/ws")
    hello = await ws.receive_json(timeout=RECEIVE_TIMEOUT_S)
    await ws.close()
    assert field_paths(json.loads(documented)) == field_paths(hello)


async def test_added_status_and_removed_events_reach_every_client(start_server: Start) -> None:
    client = await start_server()
    ws = await connect(client, {"streams": []})
    assert await next_reply(ws, "subscribed") == subscribed_message([], [])
    assert (await client.post("/api/streams", json={"id": "new", "uri": "scene:?seed=4"})).status == 201
    events = []
    while not any(e.get("state") == "live" for e in events):
        kind, data = await next_message(ws)
        assert kind == "text"
        events.append(data)
    assert events[0] == {"type": "added", "v": 1, "stream": "new"}
    assert (await client.delete("/api/streams/new")).status == 204
    while (event := (await next_message(ws))[1])["type"] != "removed":
        pass
    assert event == {"type": "removed", "v": 1, "stream": "new"}
    await ws.close()


async def _fallen_behind_client(client: TestClient) -> socket.socket:
    """A subscribed WebSocket client that never reads, once the server has started dropping its frames."""
    assert client.app is not None
    hub = client.app[hub_key]
    stalled = await asyncio.to_thread(
        raw_websocket, client.server.host, client.server.port, {"streams": ["cam"], "image": "clean"}, 4096
    )

    async def stalled_is_dropping() -> bool:
        return any(v.name == "ws" and v.dropped_frames >= 3 for v in hub.viewers)

    try:
        await eventually(stalled_is_dropping, timeout_s=60, what="the stalled client to fall behind")
    except BaseException:
        stalled.close()
        raise
    return stalled


async def test_stalled_client_that_never_reads_does_not_slow_another(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1&width=1280&height=720"))
    assert client.app is not None
    hub = client.app[hub_key]
    stalled = await _fallen_behind_client(client)
    order: list[int] = []  # frames as published, on the loop: a viewer cannot have them earlier
    hub.add_packet_listener(lambda packet: order.append(packet.result.frame.seq))
    try:
        live = await connect(client, {"streams": ["cam"], "image": "clean"})
        await frames(live, 1)
        for _ in range(5):
            [(meta, _jpeg)] = await frames(live, 1)
            # The live client is never queued behind the stalled one: each frame it gets is one of the
            # newest published (a loaded loop may publish one or two more before this test runs).
            assert order.index(meta["seq"]) >= len(order) - 3, (meta["seq"], order[-5:])
        await live.close()
    finally:
        stalled.close()


def _unsent_bytes(transport: asyncio.BaseTransport) -> int:
    """What the kernel holds for a connection not yet sent or acknowledged (Linux's TIOCOUTQ)."""
    queued = fcntl.ioctl(transport.get_extra_info("socket").fileno(), termios.TIOCOUTQ, bytes(4))
    return int.from_bytes(queued, sys.byteorder)


async def test_a_viewer_that_falls_behind_has_little_queued_for_it_in_the_kernel(start_server: Start) -> None:
    """Linux grew a stalled viewer's send buffer to megabytes of old frames (2.8 MB measured), all
    sent before any newer one: on a slow link its picture fell seconds further behind every second."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1&width=1280&height=720"))
    stalled = await _fallen_behind_client(client)
    try:
        [connection] = client.app[websockets_key].values()
        assert connection.transport is not None
        assert _unsent_bytes(connection.transport) <= UNSENT_LIMIT_BYTES + 16 * 1024, "a few packets, not frames"
    finally:
        stalled.close()


async def test_an_mjpeg_viewer_that_falls_behind_gets_the_newest_frames_when_it_reads_again(
    start_server: Start,
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1&width=1280&height=720"))
    assert client.app is not None
    hub = client.app[hub_key]
    published: list[int] = []
    hub.add_packet_listener(lambda packet: published.append(packet.result.frame.seq))
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect((client.server.host, client.server.port))
    try:
        reader.sendall(f"GET /api/streams/cam/mjpeg HTTP/1.1\r\nHost: {client.server.host}\r\n\r\n".encode())

        async def dropping() -> bool:
            return any(v.name == "mjpeg-cam" and v.dropped_frames >= 5 for v in hub.viewers)

        await eventually(dropping, timeout_s=60, what="the MJPEG viewer that does not read to fall behind")
        newest = published[-1]
        stale = await asyncio.to_thread(_parts_before, reader, newest)
    finally:
        reader.close()
    # Held back: a part the kernel had taken when the writes began to wait, and the one waiting.
    assert stale <= 2, f"{stale} frames older than the newest when it read again"


def _parts_before(reader: socket.socket, seq: int) -> int:
    """How many MJPEG parts ``reader`` receives before one of frame ``seq`` or newer."""
    reader.settimeout(30)
    data, older = b"", 0
    while True:
        data += reader.recv(65536)
        while (found := re.search(rb"X-Segcast-Seq: (\d+)\r\n", data)) is not None:
            if int(found[1]) >= seq:
                return older
            older += 1
            data = data[found.end() :]


async def test_shutdown_does_not_hang_on_stalled_or_streaming_clients(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1&width=1280&height=720"))
    stalled = await _fallen_behind_client(client)
    try:
        mjpeg = await client.get("/api/streams/cam/mjpeg")
        await mjpeg.content.readany()
        started = time.monotonic()
        await asyncio.wait_for(client.close(), timeout=30)
        assert time.monotonic() - started < 15
    finally:
        stalled.close()


async def test_a_websocket_opened_with_a_signed_token_is_closed_when_the_token_expires(start_server: Start) -> None:
    """A URL token that leaked stops showing the cameras soon; the close code says to get a new token."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"), admin_tokens=("admin-token-0123456789abcdef",))
    assert client.app is not None
    expires = int(time.time()) + 2  # 1 to 2 s from now
    token = client.app[policy_key].sign_until(Role.VIEWER, expires)
    ws = await client.ws_connect("/ws", params={"token": token})
    assert (await ws.receive_json(timeout=RECEIVE_TIMEOUT_S))["type"] == "hello"
    await ws.send_json({"type": "subscribe", "streams": ["cam"], "image": "none"})
    async with asyncio.timeout(RECEIVE_TIMEOUT_S):
        while (message := await ws.receive()).type is WSMsgType.TEXT:
            pass  # frames, until the token expires
    assert message.type is WSMsgType.CLOSE, message
    assert (message.data, message.extra) == (TOKEN_EXPIRED_CLOSE_CODE, "the access token expired")
    assert time.time() >= expires


def _read_to_the_end(sock: socket.socket) -> int:
    """Read a socket until the server closes it; how many bytes came. A reset raises ConnectionResetError."""
    sock.settimeout(RECEIVE_TIMEOUT_S)
    total = 0
    while chunk := sock.recv(1 << 16):
        total += len(chunk)
    return total


async def test_a_viewer_that_stops_reading_is_cut_off_when_it_misses_its_pings(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp ends a viewer that answers no ping with a polite close, which first sends what is queued
    for it: to a client that stopped reading, never, and its socket and connection slot stayed taken
    for as long as it stayed connected. Cut off, the client meets a reset, not the queue and a close."""
    monkeypatch.setattr("server.http.ws.HEARTBEAT_S", 2.0)
    client = await start_server(StreamConfig("cam", "scene:?seed=1&width=1280&height=720"))
    assert client.app is not None
    hub = client.app[hub_key]
    live = await connect(client, {"streams": ["cam"], "image": "clean"})
    await frames(live, 1)  # pictures flow: the stalled client's queue fills before its first ping is missed
    await live.close()
    stalled = await asyncio.to_thread(
        raw_websocket, client.server.host, client.server.port, {"streams": ["cam"], "image": "clean"}, 4096
    )
    try:

        async def stalled_viewer_ended() -> bool:
            return not any(viewer.name == "ws" for viewer in hub.viewers)

        await eventually(stalled_viewer_ended, timeout_s=60, what="the stalled viewer to miss its pings")
        with pytest.raises(ConnectionResetError):
            await asyncio.to_thread(_read_to_the_end, stalled)
    finally:
        stalled.close()


async def test_a_viewer_that_left_is_forgotten_with_its_connection(start_server: Start) -> None:
    """Each WebSocket's connection, kept for shutdown, held the request, which holds the socket: every
    viewer ever connected stayed in memory (about 10 KiB each) for the server's lifetime."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    assert client.app is not None
    for _ in range(3):
        ws = await connect(client, {"streams": ["cam"]})
        await ws.close()

    async def all_forgotten() -> bool:
        return len(client.app[websockets_key]) == 0

    await eventually(all_forgotten, timeout_s=30, what="the viewers that left to be forgotten")


async def test_hello_names_the_run_the_same_on_every_socket_and_another_after_a_restart(start_server: Start) -> None:
    """A client reconnecting must tell a dropped link (same run: its tracks go on) from a restarted segcast
    (another run: the old tracks ended unsaid, ids start over at 1)."""

    async def run_of(client: TestClient) -> str:
        async with client.ws_connect("/ws") as ws:
            hello = await ws.receive_json(timeout=RECEIVE_TIMEOUT_S)
        run: str = hello["run"]
        return run

    first = await start_server()
    run = await run_of(first)
    assert re.fullmatch(r"[A-Za-z0-9_-]{12}", run), run
    assert await run_of(first) == run, "a second socket to the same server: the same run"
    assert await run_of(await start_server()) != run, "another server: another run"
