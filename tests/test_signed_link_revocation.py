"""A signed link dies with the configured token it was minted with.

The owner of a leaked viewer token takes it out of the settings and restarts: the token itself was
refused, yet a long-lived ``?token=`` link minted with it still let its holder watch, and mint more, until
it expired. Each test builds the app twice, before and after the settings change, as a restart does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient

from server.http.access.auth import setup_auth
from server.http.access.tokens import SIGNED_TOKEN_MAX_TTL_S, AccessPolicy

ADMIN = "admin-token-0123456789abcdef"
LEAKED = "leaked-viewer-token-0123456789"
KEPT = "kept-viewer-token-0123456789"
ADDED = "added-viewer-token-0123456789"
LONGEST = {"role": "viewer", "ttl_s": SIGNED_TOKEN_MAX_TTL_S}

ClientFactory = Callable[[web.Application], Awaitable[TestClient]]


async def _streams(request: web.Request) -> web.Response:
    return web.json_response({"streams": []})


async def _started(aiohttp_client: ClientFactory, viewers: list[str], admins: list[str]) -> TestClient:
    """The app as a (re)start with these tokens in its settings builds it."""
    policy = AccessPolicy.configure("0.0.0.0", viewer_tokens=viewers, admin_tokens=admins, environ={})
    app = web.Application()
    setup_auth(app, policy)
    app.router.add_get("/api/streams", _streams)
    return await aiohttp_client(app)


async def _mint(client: TestClient, bearer: str, body: dict[str, object] = LONGEST) -> str:
    response = await client.post("/api/tokens", json=body, headers={"Authorization": f"Bearer {bearer}"})
    assert response.status == 200, await response.text()
    token: str = (await response.json())["token"]
    return token


async def _status(client: TestClient, link_token: str) -> int:
    return (await client.get("/api/streams", params={"token": link_token})).status


async def test_removing_a_token_revokes_the_links_minted_with_it_and_theirs(aiohttp_client: ClientFactory) -> None:
    before = await _started(aiohttp_client, [LEAKED, KEPT], [ADMIN])
    leaked_link = await _mint(before, LEAKED)
    chained_link = await _mint(before, leaked_link)  # minted with the link, which goes back to LEAKED
    kept_link = await _mint(before, KEPT)
    admins_link = await _mint(before, ADMIN)
    for token in (leaked_link, chained_link, kept_link, admins_link):
        assert await _status(before, token) == 200

    after = await _started(aiohttp_client, [KEPT], [ADMIN])  # the owner took LEAKED out and restarted
    assert (await after.get("/api/streams", headers={"Authorization": f"Bearer {LEAKED}"})).status == 401
    assert await _status(after, leaked_link) == 401
    assert await _status(after, chained_link) == 401
    for revoked in (leaked_link, chained_link):  # nor can it mint a fresh one, as a bearer
        response = await after.post("/api/tokens", json=LONGEST, headers={"Authorization": f"Bearer {revoked}"})
        assert response.status == 401
    assert await _status(after, kept_link) == 200  # the tokens still configured keep their links
    assert await _status(after, admins_link) == 200


async def test_adding_a_token_revokes_no_link(aiohttp_client: ClientFactory) -> None:
    before = await _started(aiohttp_client, [KEPT], [ADMIN])
    links = [await _mint(before, KEPT), await _mint(before, ADMIN), await _mint(before, await _mint(before, KEPT))]

    after = await _started(aiohttp_client, [KEPT, ADDED], [ADMIN])
    for token in links:
        assert await _status(after, token) == 200
    assert await _status(after, await _mint(after, ADDED)) == 200


async def test_changing_the_admin_tokens_still_revokes_every_link(aiohttp_client: ClientFactory) -> None:
    before = await _started(aiohttp_client, [KEPT], [ADMIN])
    links = [await _mint(before, KEPT), await _mint(before, ADMIN)]

    after = await _started(aiohttp_client, [KEPT], [ADMIN + "-rotated"])
    for token in links:
        assert await _status(after, token) == 401


async def test_a_link_signed_before_links_had_a_minter_is_refused(aiohttp_client: ClientFactory) -> None:
    """Such a link (signed with the key itself) cannot say which token minted it, nor so whether that
    token is still configured: it is refused, as the README says, rather than honoured for up to 7 days."""
    client = await _started(aiohttp_client, [KEPT], [ADMIN])
    policy = AccessPolicy.configure("0.0.0.0", viewer_tokens=[KEPT], admin_tokens=[ADMIN], environ={})
    body = f"s1.viewer.{int(time.time()) + 3600}"
    mac = hmac.new(policy.signing_key, body.encode(), hashlib.sha256).digest()
    old_link = f"{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert await _status(client, old_link) == 401
    assert await _status(client, await _mint(client, KEPT)) == 200
