"""What an operator running segcast as a service reads of it: which version runs, who is refused and
why, and an access log that keeps every credential out."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from importlib import metadata

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.http.access.auth import policy_key
from server.http.access.refusals import REFUSAL_LOG_INTERVAL_S, Refusals
from server.http.access.tokens import Role
from server.http.network.serving import server_options

ADMIN = "admin-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"
WRONG = "wrong-token-SECRET-0123456789"
AUTH_LOGGER = "server.http.access.refusals"

Start = Callable[..., Awaitable[TestClient]]
ClientFactory = Callable[[web.Application | TestServer], Awaitable[TestClient]]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _sample(text: str, series: str) -> float | None:
    """The value of ``series`` (a name with its labels, as written) in a /metrics text; None if absent."""
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return None


def _told(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The WARNING lines the access control wrote."""
    return [r.getMessage() for r in caplog.records if r.name == AUTH_LOGGER and r.levelno == logging.WARNING]


async def _metrics(client: TestClient) -> str:
    response = await client.get("/metrics", headers=_bearer(ADMIN))
    assert response.status == 200
    return await response.text()


async def test_metrics_name_the_installed_version_in_an_info_metric(start_server: Start) -> None:
    """Given a node, when Prometheus scrapes it, then segcast_build_info says which version runs."""
    client = await start_server(admin_tokens=(ADMIN,))
    text = await _metrics(client)
    assert "# TYPE segcast_build_info gauge" in text
    assert _sample(text, f'segcast_build_info{{version="{metadata.version("segcast")}"}}') == 1


async def test_healthz_says_the_installed_version_to_a_tokens_holder(start_server: Start) -> None:
    """Given a node with tokens, when a fleet's check asks /healthz with one, then its answer names the version
    (a probe without one is told only the status: tests/test_health_details.py)."""
    client = await start_server(admin_tokens=(ADMIN,), viewer_tokens=(VIEWER,))
    body = await (await client.get("/healthz", headers=_bearer(VIEWER))).json()
    assert body["version"] == metadata.version("segcast")


async def test_wrong_tokens_are_counted_and_told_once_per_address_without_the_token(
    start_server: Start, caplog: pytest.LogCaptureFixture
) -> None:
    """Given tokens set, when one client sends 5 wrong bearers, then /metrics counts 5 refusals as
    wrong, and the log has one WARNING naming the client's address, never the token."""
    client = await start_server(admin_tokens=(ADMIN,))
    caplog.set_level(logging.WARNING)
    for _ in range(5):
        assert (await client.get("/api/streams", headers=_bearer(WRONG))).status == 401
    assert _sample(await _metrics(client), 'segcast_auth_refused_total{reason="wrong"}') == 5
    told = _told(caplog)
    assert len(told) == 1, told
    assert "127.0.0.1" in told[0]
    assert WRONG not in caplog.text


async def test_each_refusal_is_counted_by_what_was_wrong_with_its_credential(start_server: Start) -> None:
    """Given tokens set, when requests come with no token, a wrong one, an expired signed one, a
    configured one in the address and a viewer's for an admin's change, then each reason counts one."""
    client = await start_server(admin_tokens=(ADMIN,), viewer_tokens=(VIEWER,))
    assert client.app is not None
    expired = client.app[policy_key].sign_until(Role.VIEWER, int(time.time()) - 60)
    assert (await client.get("/api/streams")).status == 401
    assert (await client.get("/api/streams", headers=_bearer(WRONG))).status == 401
    assert (await client.get(f"/api/streams?token={expired}")).status == 401
    assert (await client.get(f"/api/streams?token={VIEWER}")).status == 401
    assert (await client.delete("/api/streams/cam", headers=_bearer(VIEWER))).status == 403
    text = await _metrics(client)
    for reason in ("missing", "wrong", "expired", "in_address", "role_too_low"):
        assert _sample(text, f'segcast_auth_refused_total{{reason="{reason}"}}') == 1, reason


@pytest.mark.parametrize("expiry", ["\u00b2", "9" * 5000], ids=["a digit int() refuses", "past int()'s digit limit"])
async def test_a_token_shaped_like_a_signed_one_with_an_unreadable_expiry_is_a_401(
    start_server: Start, expiry: str
) -> None:
    """A signed token's expiry is read to tell an expired token from a wrong one: one that str.isdigit()
    takes and int() does not must be a wrong token (401), not a 500 with a traceback for anyone to cause."""
    client = await start_server(admin_tokens=(ADMIN,))
    assert (await client.get("/api/streams", headers=_bearer(f"s1.viewer.{expiry}.c2lnbmF0dXJl"))).status == 401
    assert _sample(await _metrics(client), 'segcast_auth_refused_total{reason="wrong"}') == 1


async def test_requests_without_any_token_are_counted_but_not_logged(
    start_server: Start, caplog: pytest.LogCaptureFixture
) -> None:
    """Given tokens set, when the viewer's page asks without a token (as it does before its user gives
    one), then the refusal is counted as missing, and the log is left alone."""
    client = await start_server(admin_tokens=(ADMIN,))
    caplog.set_level(logging.WARNING)
    assert (await client.get("/api/streams")).status == 401
    assert _sample(await _metrics(client), 'segcast_auth_refused_total{reason="missing"}') == 1
    assert _told(caplog) == []


def test_an_address_is_told_again_after_a_minute_with_what_it_was_refused_meanwhile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Given an address told of at 0 s, when it is refused twice more within the minute and once
    after, then the second line counts all three, by reason."""
    caplog.set_level(logging.WARNING, logger=AUTH_LOGGER)
    refusals = Refusals()
    refusals.add("192.0.2.7", "wrong", now=0.0)
    refusals.add("192.0.2.7", "wrong", now=1.0)
    refusals.add("192.0.2.7", "expired", now=2.0)
    assert len(_told(caplog)) == 1
    refusals.add("192.0.2.7", "wrong", now=REFUSAL_LOG_INTERVAL_S)
    assert len(_told(caplog)) == 2
    last = _told(caplog)[-1]
    assert "refused 3 requests from 192.0.2.7" in last
    assert "2 with a token not valid here" in last and "1 with an expired signed token" in last
    assert refusals.by_reason["wrong"] == 3 and refusals.by_reason["expired"] == 1


def test_addresses_beyond_the_tracked_ones_share_one_line(caplog: pytest.LogCaptureFixture) -> None:
    """Given a table of 4 addresses, when 10 addresses are refused within a minute, then the log has a
    line for each of the 4 and one for the other 6 together: spraying addresses cannot flood the log."""
    caplog.set_level(logging.WARNING, logger=AUTH_LOGGER)
    refusals = Refusals(max_addresses=4)
    for n in range(10):
        refusals.add(f"192.0.2.{n}", "wrong", now=float(n))
    lines = _told(caplog)
    assert len(lines) == 5, lines
    assert "other addresses" in lines[-1]
    refusals.add("192.0.2.200", "wrong", now=REFUSAL_LOG_INTERVAL_S + 10)
    assert "192.0.2.200" in _told(caplog)[-1], "quiet addresses make room"


SECRET_VALUE = "adm-SECRET-TOKEN-123456789"


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({})


@pytest.mark.parametrize(
    "name",
    ["access_token", "api_key", "apikey", "key", "password", "secret", "auth", "client_secret", "X-Amz-Signature"],
)
async def test_access_log_masks_every_secret_looking_parameter(
    aiohttp_client: ClientFactory, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """Given the server as it runs, when a URL carries a credential under a name other than ``token``,
    then the access log shows ``name=***`` and keeps the parameters that are no secret readable."""
    app = web.Application()
    app.router.add_get("/api/streams", _ok)
    server = TestServer(app)
    await server.start_server(**server_options())
    client = await aiohttp_client(server)
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    await client.get(f"/api/streams?max_width=320&{name}={SECRET_VALUE}", headers={"Referer": f"/x?{name}=a-b-c-d-e-f"})
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(access) == 1, access
    assert f"max_width=320&{name}=***" in access[0], access[0]
    assert SECRET_VALUE not in caplog.text and "a-b-c-d-e-f" not in caplog.text
