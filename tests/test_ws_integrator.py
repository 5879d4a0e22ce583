"""The WebSocket as an integrator's program drives it: frames, events and answers it can act on without
reading English, nothing told twice, and the protocol's own rules (``v``, sizes, binary) kept as written."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import ClientWebSocketResponse, WSCloseCode, WSMsgType
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings, StreamConfig
from server.delivery.encode import FramePacket
from server.delivery.viewer import Subscription, Viewer
from server.events.config import EventsSettings, HistorySettings
from server.frames import PROTOCOL_VERSION
from server.http.keys import hub_key
from server.http.ws import MAX_CLIENT_MESSAGE_BYTES
from server.inference.models import BUNDLED_MODEL
from server.scene import Scene, write_h264
from tests.support.event_packets import track_start
from tests.support.polling import eventually

Start = Callable[..., Awaitable[TestClient]]
ClientFactory = Callable[..., Awaitable[TestClient]]
RECEIVE_TIMEOUT_S = 30.0
#: What the server tells of every stream whatever is subscribed: skipped where a test waits for an answer.
NEWS = ("status", "added", "removed", "inference", "keepalive")


async def greeted(client: TestClient) -> ClientWebSocketResponse:
    """A WebSocket past its ``hello``."""
    ws = await client.ws_connect("/ws")
    hello = await ws.receive_json(timeout=RECEIVE_TIMEOUT_S)
    assert hello["type"] == "hello"
    return ws


async def next_of(ws: ClientWebSocketResponse, *types: str) -> dict[str, Any]:
    """The next text message of one of ``types``; the others and JPEGs are skipped."""
    while True:
        message = await ws.receive(timeout=RECEIVE_TIMEOUT_S)
        assert message.type in (WSMsgType.TEXT, WSMsgType.BINARY), message
        if message.type is WSMsgType.TEXT and (data := json.loads(message.data))["type"] in types:
            return dict(data)


async def answer(ws: ClientWebSocketResponse) -> dict[str, Any]:
    """The server's next word on what the client sent: an ``error`` or a ``subscribed``, or a frame that
    shows a subscription took effect (the server's news and the JPEGs skipped)."""
    while True:
        message = await ws.receive(timeout=RECEIVE_TIMEOUT_S)
        assert message.type in (WSMsgType.TEXT, WSMsgType.BINARY), message
        if message.type is WSMsgType.TEXT and (data := json.loads(message.data))["type"] not in NEWS:
            return dict(data)


async def watching(client: TestClient, stream_id: str) -> None:
    """Return once a viewer has subscribed to ``stream_id``: the frames published from then on are its."""
    assert client.app is not None
    hub = client.app[hub_key]

    async def subscribed() -> bool:
        return any(viewer.wants(stream_id) for viewer in hub.viewers)

    await eventually(subscribed, what=f"a viewer of {stream_id!r}")


# -- A: the frame a subscription starts with is a picture, not news --------------------------------------


async def test_the_frame_sent_on_subscribing_to_an_ended_file_replays_none_of_its_events(
    start_server: Start, tmp_path: Path
) -> None:
    """An ended file's last frame ends every track: each new connection was told of 'end's of tracks it
    never saw start (19 of them, for a client that read events from frames)."""
    clip = write_h264(Scene(seed=7), tmp_path / "clip.mp4", 12, start=45)  # objects in every frame
    client = await start_server(StreamConfig("clip", f"{clip}#rate=max"))
    assert client.app is not None
    hub = client.app[hub_key]

    async def last_frame() -> FramePacket | None:  # the frame that says so: the stream's state may come first
        packet = hub.latest.get("clip")
        return packet if packet is not None and packet.result.frame.ended else None

    last = await eventually(last_frame, 60, "the file played to its end")
    assert last.metadata["events"], "the last frame ends the file's tracks: the events not to be replayed"
    for _ in range(2):
        ws = await greeted(client)
        await ws.send_json({"type": "subscribe", "streams": ["clip"]})
        frame = await next_of(ws, "frame")
        assert frame["seq"] == last.seq
        assert frame["events"] == []
        await ws.close()


async def test_each_event_reaches_a_client_once_however_often_it_resubscribes(start_server: Start) -> None:
    """Subscribing again sends the newest frame again, for its picture: its events were told already."""
    client = await start_server()
    assert client.app is not None
    hub = client.app[hub_key]
    ws = await greeted(client)
    subscription = {"type": "subscribe", "streams": ["cam"], "image": "none"}
    await ws.send_json(subscription)
    await watching(client, "cam")
    hub.publish_threadsafe(track_start(1, track_id=7))
    told = [await next_of(ws, "track", "frame") for _ in range(2)]
    for _ in range(3):
        await ws.send_json(subscription)
        told.append(await next_of(ws, "frame"))
    starts = [event for message in told for event in [message, *message.get("events", [])] if event["type"] == "track"]
    assert [message["type"] for message in told] == ["track", "frame", "frame", "frame", "frame"]
    assert len(starts) == 2, "once as a message of its own, once in its frame: never again"
    assert [frame["seq"] for frame in told[1:]] == [1, 1, 1, 1]
    await ws.close()


async def test_a_frame_still_unsent_keeps_its_events_when_its_viewer_subscribes_again() -> None:
    """The frame was published to this viewer, which has not been sent it yet: its events are news to it."""
    viewer = Viewer()
    watching_cam = {"cam": Subscription(image=None)}
    viewer.resubscribe(watching_cam)
    packet = track_start(1, track_id=7)
    viewer.offer_packet(packet)
    viewer.resubscribe(watching_cam)
    viewer.offer_packet(packet, catch_up=True)  # as `Hub.subscribe` offers the stream's newest
    _, [delivery] = await viewer.take()
    assert [event["id"] for event in json.loads(delivery.packet.message(None))["events"]] == [7]


# -- B: one event_id on the WebSocket, in the outputs and in the history ---------------------------------


async def test_a_websocket_event_carries_the_event_id_the_history_finds_it_by(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """A client of the WebSocket alone resumes from the history: its event's id finds the history's id."""
    events = EventsSettings(history=HistorySettings(tmp_path / "events.db"))
    client = await aiohttp_client(create_app(Settings(model=str(BUNDLED_MODEL), events=events)))
    ws = await greeted(client)
    await ws.send_json({"type": "subscribe", "streams": ["cam"], "image": "none"})
    await watching(client, "cam")
    client.app[hub_key].publish_threadsafe(track_start(1, track_id=7))
    event = await next_of(ws, "track")
    frame = await next_of(ws, "frame")
    assert event["event_id"] and frame["events"] == [event], "the same event, the same id, in its frame"

    async def stored() -> list[dict[str, Any]] | None:
        page = await (await client.get("/api/events", params={"event_id": event["event_id"]})).json()
        return page["events"] or None

    [row] = await eventually(stored, what="the event in the history")
    assert row["event"] == event
    after = await (await client.get("/api/events", params={"after": row["id"]})).json()
    assert after["events"] == [], "resuming after it: nothing newer yet"
    await ws.close()


# -- C: "v" --------------------------------------------------------------------------------------------


async def test_a_subscription_that_says_its_protocol_version_is_taken(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    ws = await greeted(client)
    await ws.send_json({"type": "subscribe", "v": PROTOCOL_VERSION, "streams": ["cam"], "image": "none"})
    reply = await answer(ws)
    assert reply["type"] != "error", reply
    await ws.close()


async def test_a_message_of_a_later_protocol_version_is_refused_naming_the_version_spoken(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    ws = await greeted(client)
    await ws.send_json({"type": "subscribe", "v": 2, "streams": ["cam"]})
    reply = await answer(ws)
    assert reply == {
        "type": "error",
        "v": 1,
        "message": "v: this server speaks protocol version 1 only, got 2",
    }
    await ws.close()


# -- D: accepted or refused, said without English --------------------------------------------------------


async def test_an_accepted_subscription_is_acknowledged_with_the_ids_watched_and_those_unknown(
    start_server: Start,
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    ws = await greeted(client)
    await ws.send_json({"type": "subscribe", "streams": ["cam", "camx", "*"], "image": "none"})
    reply = await answer(ws)
    assert reply == {"type": "subscribed", "v": 1, "streams": ["cam", "camx", "*"], "unknown": ["camx"]}
    reply = await answer(ws)
    assert reply["type"] == "frame", "and no error: the subscription holds, unknown ids and all"
    await ws.close()


async def test_a_refused_subscription_gets_an_error_and_no_acknowledgement(start_server: Start) -> None:
    """Ids of streams not added yet: no frame comes between the answers."""
    client = await start_server()
    assert client.app is not None
    hub = client.app[hub_key]
    ws = await greeted(client)
    await ws.send_json({"type": "subscribe", "streams": ["later"]})
    assert (await answer(ws))["type"] == "subscribed"
    await ws.send_json({"type": "subscribe", "streams": ["other"], "max_fps": 0})
    refused = await answer(ws)
    assert refused["type"] == "error" and "max_fps" in refused["message"], refused
    assert [set(viewer.subscriptions) for viewer in hub.viewers] == [{"later"}], "the previous subscription holds"
    await ws.send_json({"type": "subscribe", "streams": ["other"], "max_fps": 30})
    assert await answer(ws) == {"type": "subscribed", "v": 1, "streams": ["other"], "unknown": ["other"]}
    await ws.close()


# -- E: what a client may send, said as it is ------------------------------------------------------------


async def test_a_message_without_a_type_is_told_it_needs_one(start_server: Start) -> None:
    client = await start_server()
    ws = await greeted(client)
    await ws.send_json({"streams": ["cam"]})
    assert await answer(ws) == {"type": "error", "v": 1, "message": "a message needs a \"type\"; known: 'subscribe'"}
    await ws.close()


async def test_a_message_over_the_size_limit_closes_the_socket_with_a_reason_naming_it(start_server: Start) -> None:
    client = await start_server()
    ws = await greeted(client)
    await ws.send_str(json.dumps({"type": "subscribe", "streams": ["x" * MAX_CLIENT_MESSAGE_BYTES]}))
    while (message := await ws.receive(timeout=RECEIVE_TIMEOUT_S)).type is WSMsgType.TEXT:
        pass
    assert message.type is WSMsgType.CLOSE, message
    assert message.data == WSCloseCode.MESSAGE_TOO_BIG
    assert str(MAX_CLIENT_MESSAGE_BYTES) in message.extra, message.extra


async def test_a_binary_message_is_answered_that_only_json_text_is_read(start_server: Start) -> None:
    client = await start_server()
    ws = await greeted(client)
    await ws.send_bytes(json.dumps({"type": "subscribe", "streams": []}).encode())
    await ws.send_str("[]")  # refused too: whichever error comes first says what the binary message got
    reply = await answer(ws)
    assert reply == {
        "type": "error",
        "v": 1,
        "message": "only text messages of JSON are read; a binary message was ignored",
    }
    await ws.close()
