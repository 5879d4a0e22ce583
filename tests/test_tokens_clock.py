"""Signed tokens when the wall clock is wrong, or is set right.

A token minted while the clock ran two years fast held for two years once it was set right, however
short its role's longest life; and a WebSocket or WebRTC peer opened with a token was closed by a
timer on the monotonic clock, which a step of the wall clock (or a suspend) does not move: it stayed
open long after new requests with the same token were refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import cast

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from server.delivery.hub import Hub
from server.http.access.auth import TOKEN_EXPIRED_CLOSE_CODE, policy_key, setup_auth
from server.http.access.tokens import SIGNED_ADMIN_TOKEN_MAX_TTL_S, SIGNED_TOKEN_MAX_TTL_S, AccessPolicy, Role
from server.options import StreamOptions
from server.streams import StreamManager
from server.webrtc import WebRTCConfig
from server.webrtc.peers import PeerRegistry
from tests.support.polling import eventually

ClientFactory = Callable[[web.Application], Awaitable[TestClient]]
Start = Callable[..., Awaitable[TestClient]]

ADMIN = "admin-token-0123456789abcdef"
YEAR_S = 365 * 24 * 3600
DAY_S = 24 * 3600
#: The step between the expiry timers' looks at the wall clock, in these tests: short, so that a clock
#: step is noticed at once rather than after the real one.
CHECK_S = 0.05
#: Only against a hang: the close comes within `CHECK_S` of the clock step.
RECEIVE_TIMEOUT_S = 30.0

pytestmark = pytest.mark.timeout(90)


def _policy() -> AccessPolicy:
    return AccessPolicy.configure("0.0.0.0", admin_tokens=[ADMIN], environ={})


def _step_the_clock(monkeypatch: pytest.MonkeyPatch, by_s: float) -> None:
    """Step the wall clock ``by_s`` ahead, as NTP setting a slow clock right does; the monotonic clock
    (the loop's timers) does not move."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + by_s)


def test_a_token_minted_while_the_clock_ran_fast_is_refused_once_it_is_right() -> None:
    policy = _policy()
    now = time.time()
    fast = policy.sign_until(Role.ADMIN, int(now + 2 * YEAR_S + 3600))  # an hour's token, clock two years fast
    assert policy.signed_credential(fast, now=now) is None
    assert policy.role_of_signed(policy.sign_until(Role.VIEWER, int(now + 2 * YEAR_S)), now=now) is None


def test_a_token_within_its_roles_longest_life_still_holds() -> None:
    policy = _policy()
    now = time.time()
    admin = policy.sign_until(Role.ADMIN, int(now + SIGNED_ADMIN_TOKEN_MAX_TTL_S))
    viewer = policy.sign_until(Role.VIEWER, int(now + SIGNED_TOKEN_MAX_TTL_S))
    assert policy.role_of_signed(admin, now=now) is Role.ADMIN
    assert policy.role_of_signed(viewer, now=now) is Role.VIEWER
    # Minted by a node whose clock is a little ahead of this one's: not a clock that is wrong.
    assert policy.role_of_signed(admin, now=now - 60) is Role.ADMIN


def test_an_admin_token_is_not_signed_for_longer_than_it_may_last() -> None:
    """`sign` would otherwise make a token that `signed_credential` refuses."""
    with pytest.raises(ValueError, match="admin"):
        _policy().sign(Role.ADMIN, ttl_s=SIGNED_ADMIN_TOKEN_MAX_TTL_S + 1)


async def test_a_token_from_the_future_is_told_why_it_is_refused(aiohttp_client: ClientFactory) -> None:
    app = web.Application()
    setup_auth(app, _policy())
    client = await aiohttp_client(app)
    token = _policy().sign_until(Role.ADMIN, int(time.time() + 2 * YEAR_S))
    response = await client.get("/api/streams", params={"token": token})
    assert response.status == 401
    message = (await response.json())["error"]
    assert "later than admin tokens may last (7 days)" in message
    assert "clock was running fast" in message
    assert message.endswith("mint a new one with POST /api/tokens")


async def test_a_websocket_is_closed_once_the_wall_clock_steps_past_its_token(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shown on a server: a 20 s token and the clock stepped a day ahead 2 s in; new requests were
    refused at once, the WebSocket stayed open until its timer's 20 s on the monotonic clock ran out
    (with a suspend, or a longer token, for as long as that)."""
    monkeypatch.setattr("server.http.access.auth.TOKEN_EXPIRY_CHECK_S", CHECK_S)
    client = await start_server(admin_tokens=(ADMIN,))
    assert client.app is not None
    token = client.app[policy_key].sign(Role.VIEWER, ttl_s=3600)
    ws = await client.ws_connect("/ws", params={"token": token})
    try:
        assert (await ws.receive_json(timeout=RECEIVE_TIMEOUT_S))["type"] == "hello"
        _step_the_clock(monkeypatch, DAY_S)
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            while (message := await ws.receive()).type is WSMsgType.TEXT:
                pass
        assert (message.type, message.data, message.extra) == (
            WSMsgType.CLOSE,
            TOKEN_EXPIRED_CLOSE_CODE,
            "the access token expired",
        )
    finally:
        await ws.close()


async def test_a_webrtc_peer_is_closed_once_the_wall_clock_steps_past_its_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("server.webrtc.peers.TOKEN_EXPIRY_CHECK_S", CHECK_S)
    registry = PeerRegistry(WebRTCConfig(), Hub(asyncio.get_running_loop()), cast(StreamManager, None), StreamOptions())
    try:
        peer = registry._new_peer("play", "live", "127.0.0.1", time.time() + 3600)
        first = peer.expiry

        async def looked_again() -> bool:
            return peer.expiry is not first

        async def closing() -> bool:
            return peer.closing is not None

        # The clock steps while the peer's timer waits out a step, not before its first look.
        await eventually(looked_again, what="the peer's expiry timer to look at the wall clock again")
        assert peer.closing is None, "closed before its token expired: the test proves nothing"
        _step_the_clock(monkeypatch, DAY_S)
        await eventually(closing, what="the peer closed for its expired token")
        assert peer.close_reason == "its access token expired"
    finally:
        await registry.close()
