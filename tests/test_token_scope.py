"""Scoped signed tokens: a dashboard's link opens its own camera and nothing else, and the history page's
pictures carry a token that opens stored event snapshots and nothing else.

A link minted for a dashboard ends up in browser history and in a shared board; an all-access token there
let whoever saw it watch every camera, page through every event and mint fresh tokens. Each test runs the
real app with tokens on; the cameras are files that do not exist (listed, sending nothing) unless a test
needs pictures, where ``front`` is a generated scene.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.events.api import event_outputs_key
from server.events.config import EventsSettings, HistorySettings
from server.frames import PROTOCOL_VERSION
from server.http.access.auth import policy_key
from server.http.access.tokens import (
    MAX_SCOPE_STREAMS,
    SIGNED_TOKEN_MAX_TTL_S,
    AccessPolicy,
    Role,
    Scope,
    SignedRefusal,
)
from tests.support.event_packets import with_events
from tests.support.polling import eventually

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(90)

ADMIN = "scope-admin-token-0123456789abcdef"
VIEWER = "scope-viewer-token-0123456789abcdef"
YEAR = SIGNED_TOKEN_MAX_TTL_S
RECEIVE_TIMEOUT_S = 30.0
README = Path(__file__).resolve().parents[1] / "README.md"
TOKENS = {"admin_tokens": (ADMIN,), "viewer_tokens": (VIEWER,)}
LISTED = (StreamConfig("front", "/no/such/front.mp4"), StreamConfig("back", "/no/such/back.mp4"))
#: Routes outside a stream link's scope for ``front``: (method, path) as a dashboard's visitor could ask them.
OUTSIDE_FRONT = [
    ("GET", "/api/streams/back"),
    ("GET", "/api/streams/back/mjpeg"),
    ("GET", "/api/streams/back/snapshot.jpg"),
    ("GET", "/api/streams/back/counts"),
    ("GET", "/api/streams/back/tracks"),
    ("GET", "/api/events"),
    ("GET", "/api/events/outputs"),
    ("GET", "/api/events/1/snapshot.jpg"),
    ("GET", "/metrics"),
    ("GET", "/api/viewer"),
    ("POST", "/api/webrtc/play/back"),
    ("POST", "/api/tokens"),
]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _mint(client: TestClient, body: dict[str, Any], bearer: str = VIEWER) -> str:
    response = await client.post("/api/tokens", json=body, headers=_bearer(bearer))
    assert response.status == 200, await response.text()
    token: str = (await response.json())["token"]
    return token


def _readme_dashboard_body() -> dict[str, Any]:
    """The body README's dashboard example mints a link's token with (section Security)."""
    [body] = re.findall(r"DASHBOARD_TOKEN\" \\\n\s*-d '([^']*)'", README.read_text())
    parsed: dict[str, Any] = json.loads(body)
    return parsed


async def _front_link(client: TestClient) -> str:
    """A dashboard's year-long link for ``front``, as README mints it."""
    return await _mint(client, {"role": "viewer", "ttl_s": YEAR, "scope": {"streams": ["front"]}})


async def _error(client: TestClient, method: str, path: str, token: str) -> tuple[int, str]:
    response = await client.request(method, path, params={"token": token})
    body = await response.json()
    return response.status, str(body.get("error", ""))


def _history(tmp_path: Path) -> EventsSettings:
    return EventsSettings(HistorySettings(tmp_path / "events.db", snapshots=True))


async def _store_event(client: TestClient, stream: str) -> int:
    """A zone entry of ``stream`` with its snapshot, stored in the history; its id there."""
    event = {
        **{"type": "zone_enter", "v": PROTOCOL_VERSION, "stream": stream, "id": 1, "class_id": 0},
        **{"class": "person", "time": time.time(), "media_time": 1.0, "zone": "yard"},
    }
    outputs = client.app[event_outputs_key]
    history = outputs.history
    assert history is not None
    stored_before = history.health().delivered
    outputs.on_packet(with_events(1, [event], stream))

    async def stored() -> bool:
        return history.health().delivered > stored_before

    await eventually(stored, what="the event stored")
    return stored_before + 1


async def _next_of(ws: Any, *types: str) -> dict[str, Any]:
    """The next message of one of ``types``, past the others."""
    while (message := await ws.receive_json(timeout=RECEIVE_TIMEOUT_S))["type"] not in types:
        pass
    return dict(message)


async def test_a_stream_link_opens_its_streams_pictures_readings_details_and_embed(start_server: Start) -> None:
    client = await start_server(StreamConfig("front", "scene:?seed=1"), LISTED[1], **TOKENS)
    link = await _front_link(client)

    opened = ("/api/streams/front", "/api/streams/front/counts", "/api/streams/front/tracks", "/embed/front")
    for path in (*opened, "/api/webrtc/config"):
        response = await client.get(path, params={"token": link})
        assert response.status == 200, (path, await response.text())

    async def snapshot() -> bool:
        return (await client.get("/api/streams/front/snapshot.jpg", params={"token": link})).status == 200

    await eventually(snapshot, what="a snapshot of front")
    async with client.get("/api/streams/front/mjpeg", params={"token": link}) as mjpeg:
        assert mjpeg.status == 200
        assert mjpeg.content_type.startswith("multipart/x-mixed-replace")


async def test_readmes_dashboard_link_opens_its_camera_alone(start_server: Start) -> None:
    client = await start_server(*LISTED, **TOKENS)
    link = await _mint(client, _readme_dashboard_body())
    assert (await client.get("/api/streams/front", params={"token": link})).status == 200
    assert (await client.get("/api/streams/back", params={"token": link})).status == 403


@pytest.mark.parametrize(("method", "path"), OUTSIDE_FRONT)
async def test_a_stream_link_is_refused_everywhere_else_naming_its_streams_and_the_path(
    start_server: Start, method: str, path: str
) -> None:
    client = await start_server(*LISTED, **TOKENS)
    link = await _front_link(client)

    status, message = await _error(client, method, path, link)

    assert status == 403
    assert "limited to stream front" in message, message
    assert f"{method} {path}" in message, message


async def test_a_stream_link_is_held_to_its_scope_as_a_bearer_too(start_server: Start) -> None:
    client = await start_server(*LISTED, **TOKENS)
    link = await _front_link(client)
    assert (await client.get("/api/streams/front", headers=_bearer(link))).status == 200
    assert (await client.get("/api/events", headers=_bearer(link))).status == 403


async def test_a_stream_link_plays_its_stream_over_webrtc_and_no_other(start_server: Start) -> None:
    """The play route takes the link for its stream (then reads the offer: an empty one is a 400)."""
    client = await start_server(*LISTED, **TOKENS)
    link = await _front_link(client)
    assert (await client.post("/api/webrtc/play/front", params={"token": link}, data=b"")).status == 400
    assert (await client.post("/api/webrtc/play/back", params={"token": link}, data=b"")).status == 403


async def test_a_scoped_token_mints_no_token_at_all(start_server: Start) -> None:
    """Not even one of its own scope: a link's holder cannot make links its owner never saw."""
    client = await start_server(*LISTED, **TOKENS)
    link = await _front_link(client)
    for body in ({"role": "viewer", "ttl_s": 60}, {"ttl_s": 60, "scope": {"streams": ["front"]}}):
        response = await client.post("/api/tokens", params={"token": link}, json=body)
        assert response.status == 403, body


async def test_a_stream_links_websocket_watches_its_stream_and_is_refused_others(start_server: Start) -> None:
    client = await start_server(StreamConfig("front", "scene:?seed=1"), LISTED[1], **TOKENS)
    link = await _front_link(client)
    ws = await client.ws_connect("/ws", params={"token": link})
    hello = await _next_of(ws, "hello")
    assert [stream["id"] for stream in hello["streams"]] == ["front"], "the hello lists its streams alone"

    for refused in (["back"], ["front", "back"]):
        await ws.send_json({"type": "subscribe", "streams": refused, "image": "none"})
        error = await _next_of(ws, "error", "subscribed")
        assert error["type"] == "error", refused
        assert error["message"] == "this link opens camera front only, not back: ask whoever gave it for a link to back"

    await ws.send_json({"type": "subscribe", "streams": ["front"], "image": "none"})
    assert (await _next_of(ws, "subscribed", "error"))["streams"] == ["front"]
    assert (await _next_of(ws, "frame"))["stream"] == "front"
    await ws.close()


async def test_a_stream_links_subscription_to_every_stream_watches_its_streams_alone(start_server: Start) -> None:
    """``"*"`` is every stream the link may see: a wall opened with it shows its camera. ``back``'s newest frame,
    which a subscription that took it in would be sent at once, never comes among ``front``'s."""
    client = await start_server(StreamConfig("front", "scene:?seed=1"), StreamConfig("back", "scene:?seed=2"), **TOKENS)
    everyone = await client.ws_connect("/ws", params={"token": await _mint(client, {"ttl_s": 60})})
    await everyone.send_json({"type": "subscribe", "streams": ["back"], "image": "none"})
    assert (await _next_of(everyone, "frame"))["stream"] == "back", "back publishes frames"
    scoped = await client.ws_connect("/ws", params={"token": await _front_link(client)})
    await _next_of(scoped, "hello")

    await scoped.send_json({"type": "subscribe", "streams": ["*"], "image": "none"})

    assert (await _next_of(scoped, "subscribed", "error"))["streams"] == ["front"]
    heard = [(await _next_of(scoped, "frame"))["stream"] for _ in range(3)]
    assert heard == ["front"] * 3
    await scoped.close()
    await everyone.close()


async def test_a_stream_links_stream_list_lists_its_streams_alone(start_server: Start) -> None:
    client = await start_server(*LISTED, StreamConfig("gate", "/no/such/gate.mp4"), **TOKENS)
    link = await _mint(client, {"ttl_s": 60, "scope": {"streams": ["front", "gate"]}})

    response = await client.get("/api/streams", params={"token": link})

    assert response.status == 200, await response.text()
    assert [stream["id"] for stream in (await response.json())["streams"]] == ["front", "gate"]


async def test_a_stream_links_websocket_hears_nothing_of_other_streams(start_server: Start) -> None:
    """Another stream removed is told to an all-access socket, never to the link's: by the time the link's
    socket answers a later subscription, whatever it was told before that has come."""
    client = await start_server(*LISTED, **TOKENS)
    link = await _front_link(client)
    scoped = await client.ws_connect("/ws", params={"token": link})
    everyone = await client.ws_connect("/ws", params={"token": await _mint(client, {"ttl_s": 60})})
    await _next_of(scoped, "hello")
    await _next_of(everyone, "hello")

    assert (await client.delete("/api/streams/back", headers=_bearer(ADMIN))).status in (200, 204)
    assert (await _next_of(everyone, "removed"))["stream"] == "back"
    await scoped.send_json({"type": "subscribe", "streams": ["front"], "image": "none"})
    told: list[dict[str, Any]] = []
    while (message := await scoped.receive_json(timeout=RECEIVE_TIMEOUT_S))["type"] != "subscribed":
        told.append(message)
    assert [m for m in told if m.get("stream") == "back"] == []
    await scoped.close()
    await everyone.close()


async def test_an_event_snapshot_token_opens_stored_snapshots_and_nothing_else(
    start_server: Start, tmp_path: Path
) -> None:
    client = await start_server(*LISTED, events=_history(tmp_path), **TOKENS)
    event_id = await _store_event(client, "back")
    token = await _mint(client, {"ttl_s": 300, "scope": {"event_snapshots": True}})

    picture = await client.get(f"/api/events/{event_id}/snapshot.jpg", params={"token": token})
    assert picture.status == 200 and picture.content_type == "image/jpeg"
    outside = (
        "/api/events",
        "/api/events/outputs",
        "/api/streams",
        "/api/streams/back",
        "/api/streams/back/snapshot.jpg",
    )
    for path in (*outside, "/ws"):
        status, message = await _error(client, "GET", path, token)
        assert status == 403, path
        assert "limited to event snapshots" in message and f"GET {path}" in message, message


async def test_the_mint_answer_says_the_scope_and_unscoped_answers_are_unchanged(start_server: Start) -> None:
    client = await start_server(*LISTED, **TOKENS)
    scoped = await client.post(
        "/api/tokens", json={"ttl_s": 60, "scope": {"streams": ["front", "back", "front"]}}, headers=_bearer(VIEWER)
    )
    answer = await scoped.json()
    assert answer["scope"] == {"streams": ["back", "front"]}
    assert answer["token"].startswith("s2.viewer.") and ".streams~back~front." in answer["token"]
    plain = await (await client.post("/api/tokens", json={"ttl_s": 60}, headers=_bearer(VIEWER))).json()
    assert set(plain) == {"token", "role", "ttl_s"}


async def test_a_link_may_name_a_camera_added_later(start_server: Start) -> None:
    client = await start_server(*LISTED, **TOKENS)
    link = await _mint(client, {"ttl_s": 60, "scope": {"streams": ["garage"]}})
    assert (await client.get("/api/streams/garage", params={"token": link})).status == 404
    assert (await client.get("/api/streams/front", params={"token": link})).status == 403


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"scope": "front"}, "'scope' must be an object"),
        ({"scope": {}}, "'scope' must name"),
        ({"scope": {"cameras": ["front"]}}, "cameras"),
        ({"scope": {"streams": []}}, "scope.streams: at least one"),
        ({"scope": {"streams": "front"}}, "scope.streams: a list"),
        ({"scope": {"streams": ["cám"]}}, "scope.streams[0]"),
        ({"scope": {"streams": ["front", 7]}}, "scope.streams[1]"),
        ({"scope": {"streams": [f"s{n}" for n in range(MAX_SCOPE_STREAMS + 1)]}}, f"at most {MAX_SCOPE_STREAMS}"),
        ({"scope": {"event_snapshots": 1}}, "scope.event_snapshots: true"),
        ({"scope": {"event_snapshots": False}}, "scope.event_snapshots: true"),
        ({"scope": {"streams": ["front"], "event_snapshots": True}}, "not both"),
        ({"role": "admin", "scope": {"streams": ["front"]}}, "viewer"),
    ],
)
async def test_a_bad_scope_is_a_400_naming_what_is_wrong(start_server: Start, body: dict[str, Any], named: str) -> None:
    client = await start_server(*LISTED, **TOKENS)
    response = await client.post("/api/tokens", json=body, headers=_bearer(ADMIN))
    assert response.status == 400
    assert named in (await response.json())["error"]


async def test_an_all_access_signed_token_opens_everything_as_before(start_server: Start) -> None:
    """Unscoped tokens keep their s1 shape and open what they did (a guard: this held before scopes too)."""
    client = await start_server(*LISTED, **TOKENS)
    token = await _mint(client, {"role": "viewer", "ttl_s": YEAR})
    assert token.startswith("s1.viewer.") and token.count(".") == 3
    for method, path in [
        ("GET", "/api/streams"),
        ("GET", "/api/streams/back"),
        ("GET", "/metrics"),
        ("POST", "/api/tokens"),
    ]:
        assert (await client.request(method, path, params={"token": token})).status == 200, path
    ws = await client.ws_connect("/ws", params={"token": token})
    assert {stream["id"] for stream in (await _next_of(ws, "hello"))["streams"]} == {"front", "back"}
    await ws.close()


@pytest.mark.parametrize(("written", "forged"), [("streams~front", "streams~back"), ("streams~front", "snapshots")])
async def test_a_tampered_scope_fails_the_signature(start_server: Start, written: str, forged: str) -> None:
    client = await start_server(*LISTED, **TOKENS)
    link = await _front_link(client)
    tampered = link.replace(f".{written}.", f".{forged}.")
    assert tampered != link
    assert client.app[policy_key].check_signed(tampered) is SignedRefusal.BAD_SIGNATURE
    assert (await client.get("/api/streams/back", params={"token": tampered})).status == 401


def test_a_scoped_token_proves_its_scope_and_an_unscoped_one_none() -> None:
    policy = AccessPolicy.configure("0.0.0.0", viewer_tokens=[VIEWER], admin_tokens=[ADMIN], environ={})
    expires = int(time.time()) + 60
    scope = Scope.of_streams(["front"])
    scoped = policy.check_signed(policy.sign_until(Role.VIEWER, expires, scope=scope))
    plain = policy.check_signed(policy.sign_until(Role.VIEWER, expires))
    assert not isinstance(scoped, SignedRefusal) and scoped.scope == scope
    assert not isinstance(plain, SignedRefusal) and plain.scope is None


async def test_a_refused_websocket_subscription_keeps_the_one_before(start_server: Start) -> None:
    """The error is a refusal: frames of the stream it watched go on."""
    client = await start_server(StreamConfig("front", "scene:?seed=1"), LISTED[1], **TOKENS)
    ws = await client.ws_connect("/ws", params={"token": await _front_link(client)})
    await _next_of(ws, "hello")
    await ws.send_json({"type": "subscribe", "streams": ["front"], "image": "none"})
    await _next_of(ws, "subscribed")
    await ws.send_json({"type": "subscribe", "streams": ["back"], "image": "none"})
    await _next_of(ws, "error")
    assert (await _next_of(ws, "frame"))["stream"] == "front"
    await ws.close()


async def test_an_expired_stream_link_is_told_it_expired(start_server: Start) -> None:
    """The 401 reads the scoped token's expiry as it reads an unscoped one's, to say a new link is the cure."""
    client = await start_server(*LISTED, **TOKENS)
    policy = client.app[policy_key]
    expired = policy.sign_until(Role.VIEWER, int(time.time()) - 60, scope=Scope.of_streams(["front"]))
    response = await client.get("/api/streams/front", params={"token": expired})
    assert response.status == 401
    assert "the signed token expired at" in (await response.json())["error"]


@pytest.mark.parametrize("scope", ["streams", "streams~b~a", "streams~a~a", "snapshots~a", "cameras~a", "streams~cám"])
def test_a_scope_written_no_way_segcast_writes_one_is_no_signed_token(scope: str) -> None:
    policy = AccessPolicy.configure("0.0.0.0", viewer_tokens=[VIEWER], admin_tokens=[ADMIN], environ={})
    assert policy.check_signed(f"s2.viewer.{int(time.time()) + 60}.{scope}.c2ln") is SignedRefusal.MALFORMED
