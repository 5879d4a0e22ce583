"""Request bodies a client can get wrong on the wire, and credentials it can get wrong in time.

A body that does not decode as its ``Content-Encoding`` says, or one cut short by a client that hangs
up, was a 500 with an ERROR traceback in the log; an expired signed token was told the same as a
forged one; a ``scene:`` URI's ``password=`` came back in its error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.http.access.auth import setup_auth
from server.http.access.tokens import AccessPolicy, Role
from server.sources.base import SourceError
from server.sources.scene import SceneSettings
from tests.support.polling import eventually
from tests.support.raw_http import raw_request, status_of

ClientFactory = Callable[[web.Application], Awaitable[TestClient]]
Start = Callable[..., Awaitable[TestClient]]

ADMIN = "admin-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"
SECRET = "SECRETQ6"

pytestmark = pytest.mark.timeout(60)


def _auth_app() -> web.Application:
    """Only the access policy and its ``POST /api/tokens``, which reads its body with `read_body`."""
    app = web.Application()
    setup_auth(app, _policy())
    app.router.add_get("/api/streams", _ok)
    return app


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def _policy() -> AccessPolicy:
    return AccessPolicy.configure("0.0.0.0", viewer_tokens=[VIEWER], admin_tokens=[ADMIN], environ={})


def _post(path: str, headers: dict[str, str], body: bytes, length: int | None = None) -> bytes:
    """A raw ``POST`` that asks the server to close once it has answered: its answer ends with the
    server's whole handling of the connection, log lines included."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", f"Content-Length: {length or len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def _json_error(answer: bytes) -> str:
    """The ``error`` of a raw answer, which must be JSON."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head, answer
    return str(json.loads(body)["error"])


@pytest.mark.parametrize("encoding", ["br", "gzip"])
async def test_a_token_request_that_cannot_be_decoded_is_a_json_400_without_a_traceback(
    aiohttp_client: ClientFactory, caplog: pytest.LogCaptureFixture, encoding: str
) -> None:
    caplog.set_level(logging.WARNING)
    client = await aiohttp_client(_auth_app())
    headers = {"Authorization": f"Bearer {VIEWER}", "Content-Encoding": encoding}
    host, port = str(client.server.host), int(client.server.port or 0)
    answer = await raw_request(host, port, _post("/api/tokens", headers, b"{}"))
    assert status_of(answer) == 400, answer
    assert _json_error(answer).startswith("the body could not be decoded: ")
    assert not _errors(caplog)


async def test_every_route_that_reads_a_body_answers_one_that_cannot_be_decoded_with_a_json_400(
    start_server: Start, caplog: pytest.LogCaptureFixture
) -> None:
    """The stream API's and WebRTC's own reading of a body too (the offer's, with its own limit)."""
    caplog.set_level(logging.WARNING)
    client = await start_server()
    host, port = str(client.server.host), int(client.server.port or 0)
    for path in ("/api/streams", "/api/webrtc/publish"):
        for encoding in ("br", "gzip"):
            answer = await raw_request(host, port, _post(path, {"Content-Encoding": encoding}, b"{}"))
            assert status_of(answer) == 400, (path, encoding, answer)
            assert _json_error(answer).startswith("the body could not be decoded: "), (path, encoding)
    assert not _errors(caplog)


async def test_a_client_that_hangs_up_mid_body_ends_its_request_quietly(
    aiohttp_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """It announced 100 bytes and sent 10: no ERROR, no 500 in the access log, a DEBUG line saying so."""
    caplog.set_level(logging.DEBUG)
    client = await aiohttp_client(_auth_app())
    _, writer = await asyncio.open_connection(str(client.server.host), int(client.server.port or 0))
    writer.write(_post("/api/tokens", {"Authorization": f"Bearer {VIEWER}"}, b'{"ttl_s":1', length=100))
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    async def logged_access() -> bool:  # written once the request is done with, however it ended
        return any(record.name == "aiohttp.access" for record in caplog.records)

    await eventually(logged_access, 20, what="the cut request to be logged as done")
    assert not _errors(caplog), caplog.text
    [access] = [record.getMessage() for record in caplog.records if record.name == "aiohttp.access"]
    assert '" 500 ' not in access, access
    assert any("hung up" in record.getMessage() for record in caplog.records if record.levelno == logging.DEBUG)


@pytest.mark.parametrize("how", ["bearer", "query"])
async def test_an_expired_signed_token_is_told_when_it_expired_and_how_to_get_another(
    aiohttp_client: ClientFactory, how: str
) -> None:
    expires = int(time.time()) - 60
    token = _policy().sign_until(Role.VIEWER, expires)
    client = await aiohttp_client(_auth_app())
    if how == "bearer":
        response = await client.get("/api/streams", headers={"Authorization": f"Bearer {token}"})
    else:
        response = await client.get("/api/streams", params={"token": token})
    assert response.status == 401
    when = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert (await response.json())["error"] == (
        f"the signed token expired at {when}; mint a new one with POST /api/tokens"
    )


async def test_a_forged_or_malformed_signed_token_learns_nothing_of_its_expiry(aiohttp_client: ClientFactory) -> None:
    """Its signature is checked first: a token with a past expiry but a wrong signature is just invalid."""
    expired = _policy().sign_until(Role.VIEWER, int(time.time()) - 60)
    forged = expired[:-4] + ("AAAA" if not expired.endswith("AAAA") else "BBBB")
    client = await aiohttp_client(_auth_app())
    messages = set()
    for token in (forged, "s1.admin.1.x"):
        response = await client.get("/api/streams", params={"token": token})
        assert response.status == 401
        messages.add((await response.json())["error"])
    [message] = messages
    assert "expired" not in message and "not valid for this server" in message
    response = await client.get("/api/streams", params={"token": "garbage"})
    assert response.status == 401 and "a valid token is needed" in (await response.json())["error"]


@pytest.mark.parametrize(
    "uri", [f"scene:?seed=1&password={SECRET}", f"scene://admin:{SECRET}@camera/", f"scene:?token={SECRET}&x=1"]
)
def test_a_scene_uri_error_masks_its_secrets(uri: str) -> None:
    with pytest.raises(SourceError) as raised:
        SceneSettings.of_uri(uri)
    message = str(raised.value)
    assert SECRET not in message, message
    assert "***" in message, message
