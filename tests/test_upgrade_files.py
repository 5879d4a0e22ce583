"""What a segcast upgraded in place meets from the versions before it: the config files their saves
wrote, and the signed links they minted (docs/upgrading.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import load_config
from server.http.access.auth import setup_auth
from server.http.access.tokens import AccessPolicy

ClientFactory = Callable[[web.Application], Awaitable[TestClient]]

ADMIN = "admin-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"

#: A file whose user pinned today's default tracker, so that a release changing the default leaves it be.
PINNED_FILE = """\
[model]
name = "bundled"

[stream_defaults]
tracker = "segtrack"  # pinned on purpose

[[streams]]
id = "door"
uri = "scene:?seed=1"
"""


async def test_a_save_keeps_a_stream_default_the_file_spelled_out_at_todays_default(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """A save of 2026-12-01 dropped ``tracker = "bytetrack"`` (the default then); 12-02 made segtrack the
    default, and the streams of every file so saved moved to it without a word."""
    path = tmp_path / "segcast.toml"
    path.write_text(PINNED_FILE)
    client = await aiohttp_client(create_app(load_config(path)))
    response = await client.patch("/api/streams/door?persist=1", json={"conf": 0.5})
    assert response.status == 200, await response.text()
    saved = tomllib.loads(text := path.read_text())
    assert saved["stream_defaults"] == {"tracker": "segtrack"}, text  # and no key the file never had
    assert saved["streams"] == [{"id": "door", "uri": "scene:?seed=1", "conf": 0.5}], text


def _signed_with(key: bytes, role: str = "viewer") -> str:
    """A signed token as segcast minted them before they were bound to the token that minted them: the
    HMAC-SHA256 of ``s1.<role>.<expiry>`` with ``key`` itself."""
    body = f"s1.{role}.{int(time.time()) + 86400}"
    mac = base64.urlsafe_b64encode(hmac.new(key, body.encode(), hashlib.sha256).digest()).rstrip(b"=")
    return f"{body}.{mac.decode()}"


#: The key segcast signed with from fe89fd6 (2026-12-03 08:57) to 7c7b0e3 (2026-12-05 02:51).
SCRYPT_KEY = hashlib.scrypt(ADMIN.encode(), salt=b"segcast signed-token key v1", n=2**14, r=8, p=1, dklen=32)
#: The key 10ac628 (2026-12-03 08:03) signed with, derived fast from the admin tokens.
FIRST_KEY = hmac.new(b"segcast signed-token key v1", ADMIN.encode(), hashlib.sha256).digest()


async def _auth_client(aiohttp_client: ClientFactory) -> TestClient:
    app = web.Application()
    setup_auth(app, AccessPolicy.configure("0.0.0.0", viewer_tokens=[VIEWER], admin_tokens=[ADMIN], environ={}))

    async def streams(request: web.Request) -> web.Response:
        return web.json_response({"streams": []})

    app.router.add_get("/api/streams", streams)
    return await aiohttp_client(app)


async def _refusal(client: TestClient, token: str, as_bearer: bool = False) -> str:
    if as_bearer:
        response = await client.get("/api/streams", headers={"Authorization": f"Bearer {token}"})
    else:
        response = await client.get("/api/streams", params={"token": token})
    assert response.status == 401, await response.text()
    message: str = (await response.json())["error"]
    return message


async def test_a_link_an_earlier_segcast_signed_is_refused_saying_to_mint_it_again(
    aiohttp_client: ClientFactory,
) -> None:
    """Such links outlived restarts; after the upgrade they got the plain "a valid token is needed"."""
    client = await _auth_client(aiohttp_client)
    for role in ("viewer", "admin"):
        for as_bearer in (False, True):
            message = await _refusal(client, _signed_with(SCRYPT_KEY, role), as_bearer)
            assert "minted by an earlier segcast" in message, message
            assert message.endswith("mint a new one with POST /api/tokens"), message


async def test_a_well_formed_link_this_server_did_not_sign_says_to_mint_it_again(
    aiohttp_client: ClientFactory,
) -> None:
    """10ac628's links cannot be told (its key came from the admin tokens in clear), nor another server's."""
    client = await _auth_client(aiohttp_client)
    other = hashlib.scrypt(
        b"another-admin-token-0123456789", salt=b"segcast signed-token key v1", n=2**14, r=8, p=1, dklen=32
    )
    for key in (FIRST_KEY, other):
        message = await _refusal(client, _signed_with(key))
        assert "not valid for this server" in message and "earlier segcast" in message, message
        assert message.endswith("mint a new one with POST /api/tokens"), message
    assert "a valid token is needed" in await _refusal(client, "not-a-token-at-all-0123456789", as_bearer=True)
