"""The app on a real socket with the options the CLI runs it with: time limits, and logs a client cannot abuse."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.config import Settings
from server.http.access.auth import policy_key
from server.http.access.tokens import Role
from server.http.network.serving import server_options
from server.inference.models import BUNDLED_MODEL
from tests.support.raw_http import raw_request, status_of
from tests.support.segcast_process import SHUTDOWN_BOUND_S

ADMIN = "admin-token-0123456789abcdef"
#: Short, so that the test of it is short; the product's own is `server.http.network.serving.HEADER_TIMEOUT_S`.
TEST_HEADER_TIMEOUT_S = 1.0

ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def served(aiohttp_client: ClientFactory) -> AsyncIterator[TestClient]:
    """The real app (with an admin token) on 127.0.0.1, run with `server_options`."""
    server = TestServer(create_app(Settings(model=str(BUNDLED_MODEL), admin_tokens=(ADMIN,))))
    await server.start_server(**server_options(header_timeout_s=TEST_HEADER_TIMEOUT_S))
    yield await aiohttp_client(server)


def _address(client: TestClient) -> tuple[str, int]:
    return str(client.host), int(client.port or 0)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"b" * 9000 + b"\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\nConnection: close\r\n\r\n",
    ],
    ids=["long-request-line", "long-header", "bad-content-length"],
)
async def test_requests_that_cannot_be_parsed_are_400s_and_leave_no_error_in_the_log(
    served: TestClient, caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    """Anyone may send these without a token; each used to log an ERROR with aiohttp's traceback."""
    caplog.set_level(logging.INFO)
    for _ in range(10):
        assert status_of(await raw_request(*_address(served), request_bytes)) == 400
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "Traceback" not in caplog.text


async def test_token_values_are_redacted_from_the_access_log(
    served: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    assert served.app is not None
    signed = served.app[policy_key].sign(Role.VIEWER, 60)
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    # A long-lived token passed by mistake where a signed one goes: refused, but it was in the URL.
    refused = await served.get(f"/api/streams?token={ADMIN}")
    assert refused.status == 401
    watched = await served.get(
        f"/api/streams?x=1&token={signed}", headers={"Referer": f"http://127.0.0.1/embed/a?token={signed}"}
    )
    assert watched.status == 200
    # The server reads parameter names percent-decoded: so must the redaction of a Referer, which is
    # logged as the browser sent it (the request line comes normalised, "%74" as "t").
    encoded = await served.get(
        f"/api/streams?%74oken={signed}", headers={"Referer": f"http://127.0.0.1/embed/a?%74oken={signed}"}
    )
    assert encoded.status == 200
    # A Referer is a header anyone may write: a raw quote before the token must not end the query.
    quoted = await served.get("/healthz", headers={"Referer": f'http://127.0.0.1/embed/a?x="&token={signed}'})
    assert quoted.status == 200
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(access) == 4, access
    assert all("oken=***" in line for line in access), access
    assert ADMIN not in caplog.text and signed not in caplog.text


async def test_a_connection_that_never_finishes_its_headers_is_closed(served: TestClient) -> None:
    reader, writer = await asyncio.open_connection(*_address(served))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 30) == b"", "closed without an answer"
    finally:
        writer.close()


async def test_shutdown_does_not_wait_for_a_body_that_trickles_in(served: TestClient) -> None:
    reader, writer = await asyncio.open_connection(*_address(served))
    writer.write(
        b"POST /api/streams HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + ADMIN.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n"
    )
    await writer.drain()
    # aiohttp answers 100 Continue when the request is routed to its handler: from here it is in progress.
    assert (await asyncio.wait_for(reader.readline(), 30)).startswith(b"HTTP/1.1 100")
    writer.write(b'{"id": "slow", ')
    await writer.drain()
    started = time.monotonic()
    await served.server.close()
    took_s = time.monotonic() - started
    writer.close()
    assert took_s < SHUTDOWN_BOUND_S, f"shutdown waited {took_s:.0f} s for the trickling body"
