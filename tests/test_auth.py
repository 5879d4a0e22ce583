"""Access control: roles from bearer tokens and signed URL tokens, and when the policy may be open."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.http.access.auth import setup_auth
from server.http.access.tokens import (
    ADMIN_TOKENS_ENV,
    MIN_TOKEN_LENGTH,
    SIGNED_ADMIN_TOKEN_MAX_TTL_S,
    SIGNED_TOKEN_MAX_TTL_S,
    VIEWER_TOKENS_ENV,
    AccessPolicy,
    AuthConfigError,
    Role,
)
from tests.support.raw_http import raw_request, status_of

ADMIN = "admin-token-0123456789abcdef"
VIEWER = "viewer-token-0123456789abcdef"

ClientFactory = Callable[[web.Application], Awaitable[TestClient]]


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _endless(request: web.Request) -> web.StreamResponse:
    """A response streamed until the client leaves, as MJPEG is."""
    response = web.StreamResponse()
    await response.prepare(request)
    try:
        while True:
            await response.write(b"part\r\n")
            await asyncio.sleep(0.05)
    except ConnectionResetError:
        return response


def _app(policy: AccessPolicy) -> web.Application:
    app = web.Application()
    setup_auth(app, policy)
    app.router.add_get("/healthz", _ok)
    app.router.add_get("/api/streams/x/mjpeg", _endless)
    app.router.add_get("/static/app.js", _ok)
    app.router.add_get("/api/streams", _ok)
    app.router.add_post("/api/streams", _ok)
    app.router.add_delete("/api/streams/{id}", _ok)
    app.router.add_post("/api/webrtc/play/{id}", _ok)
    app.router.add_post("/api/webrtc/publish", _ok)
    return app


def _policy() -> AccessPolicy:
    return AccessPolicy.configure("0.0.0.0", viewer_tokens=[VIEWER], admin_tokens=[ADMIN], environ={})


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_no_token_is_401_with_a_message_and_public_paths_stay_open(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(_app(_policy()))
    response = await client.get("/api/streams")
    assert response.status == 401
    assert "Bearer" in (await response.json())["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/static/app.js")).status == 200


async def test_viewer_reads_but_cannot_change_streams(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(_app(_policy()))
    assert (await client.get("/api/streams", headers=_bearer(VIEWER))).status == 200
    response = await client.post("/api/streams", headers=_bearer(VIEWER))
    assert response.status == 403
    assert "admin" in (await response.json())["error"]
    assert (await client.delete("/api/streams/x", headers=_bearer(VIEWER))).status == 403


async def test_viewer_may_play_over_webrtc_but_not_publish_a_camera(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(_app(_policy()))
    assert (await client.post("/api/webrtc/play/x", headers=_bearer(VIEWER))).status == 200
    assert (await client.post("/api/webrtc/publish", headers=_bearer(VIEWER))).status == 403
    assert (await client.post("/api/webrtc/play/x")).status == 401


async def test_admin_may_change_streams_and_a_wrong_token_may_not(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(_app(_policy()))
    assert (await client.post("/api/streams", headers=_bearer(ADMIN))).status == 200
    assert (await client.post("/api/streams", headers=_bearer(ADMIN[:-1] + "X"))).status == 401
    assert (await client.get("/api/streams", headers={"Authorization": f"Basic {ADMIN}"})).status == 401


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
async def test_the_bearer_scheme_is_taken_in_any_case(aiohttp_client: ClientFactory, scheme: str) -> None:
    """RFC 7235: an auth scheme's name is case-insensitive, and some clients send it in lower case."""
    client = await aiohttp_client(_app(_policy()))
    response = await client.get("/api/streams", headers={"Authorization": f"{scheme} {VIEWER}"})
    assert response.status == 200, scheme


async def test_signed_url_token_grants_its_role_for_img_and_websocket_use(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(_app(_policy()))
    minted = await client.post("/api/tokens", json={"role": "viewer", "ttl_s": 60}, headers=_bearer(VIEWER))
    assert minted.status == 200
    token = (await minted.json())["token"]
    assert VIEWER not in token and ADMIN not in token
    assert (await client.get("/api/streams", params={"token": token})).status == 200
    assert (await client.post("/api/streams", params={"token": token})).status == 403
    assert (await client.get("/api/streams", params={"token": token[:-2] + "xx"})).status == 401


async def test_a_configured_token_in_an_address_is_refused_saying_why(aiohttp_client: ClientFactory) -> None:
    """Pasted into an ``<img>`` src or a Grafana URL, a configured token is refused as one, not as a wrong token."""
    client = await aiohttp_client(_app(_policy()))
    for configured in (VIEWER, ADMIN):
        response = await client.get("/api/streams", params={"token": configured})
        assert response.status == 401
        message = (await response.json())["error"]
        assert "configured tokens are not accepted in an address" in message, message
        assert "Authorization: Bearer" in message and "POST /api/tokens" in message, message
    wrong = await client.get("/api/streams", params={"token": VIEWER[:-1] + "X"})
    assert wrong.status == 401
    assert (await wrong.json())["error"] == (
        "a valid token is needed: send Authorization: Bearer <token>, or ?token=<signed token>"
    )


async def _mint(client: TestClient, body: Mapping[str, object], bearer: str) -> dict[str, Any]:
    minted = await client.post("/api/tokens", json=body, headers=_bearer(bearer))
    assert minted.status == 200, await minted.text()
    answer: dict[str, Any] = await minted.json()
    return answer


def _expiry(policy: AccessPolicy, token: str) -> int:
    credential = policy.signed_credential(token)
    assert credential is not None and credential.expires is not None
    return credential.expires


async def test_a_signed_token_never_mints_one_that_outlives_it(aiohttp_client: ClientFactory) -> None:
    """A token found in a URL stops working soon: it cannot be traded for a longer one, and so on for ever."""
    policy = _policy()
    client = await aiohttp_client(_app(policy))
    for role, configured, most_s in (
        ("viewer", VIEWER, SIGNED_TOKEN_MAX_TTL_S),
        ("admin", ADMIN, SIGNED_ADMIN_TOKEN_MAX_TTL_S),
    ):
        longest = {"ttl_s": most_s}
        short = (await _mint(client, {"role": role, "ttl_s": 60}, configured))["token"]
        from_url = await client.post("/api/tokens", json={"role": role, **longest}, params={"token": short})
        assert from_url.status == 200, await from_url.text()
        for answer in (await from_url.json(), await _mint(client, {"role": role, **longest}, short)):
            assert _expiry(policy, answer["token"]) <= _expiry(policy, short), role
            assert answer["ttl_s"] <= 60, "the answer says how long the token given holds"
    # A configured token is not a found URL: it still mints the longest life it asks for.
    long = (await _mint(client, {"ttl_s": SIGNED_TOKEN_MAX_TTL_S}, VIEWER))["token"]
    assert _expiry(policy, long) >= time.time() + SIGNED_TOKEN_MAX_TTL_S - 60


async def test_a_signed_token_is_good_as_a_bearer_too(aiohttp_client: ClientFactory) -> None:
    """Pasted into the viewer's token dialog, a signed token is sent as a bearer: it grants what it says."""
    policy = _policy()
    client = await aiohttp_client(_app(policy))
    viewer = (await _mint(client, {"role": "viewer", "ttl_s": 60}, ADMIN))["token"]
    assert (await client.get("/api/streams", headers=_bearer(viewer))).status == 200
    assert (await client.post("/api/streams", headers=_bearer(viewer))).status == 403, "no more than its role"
    expired = policy.sign_until(Role.ADMIN, int(time.time()) - 1)
    assert (await client.get("/api/streams", headers=_bearer(expired))).status == 401
    assert (await client.get("/api/streams", headers=_bearer(viewer[:-2] + "xx"))).status == 401


async def test_a_stream_opened_with_a_signed_token_ends_when_the_token_expires(aiohttp_client: ClientFactory) -> None:
    """An MJPEG <img> must not go on showing a camera for days on a URL token that expired long ago."""
    policy = _policy()
    client = await aiohttp_client(_app(policy))
    expires = int(time.time()) + 2  # 1 to 2 s from now
    token = policy.sign_until(Role.VIEWER, expires)
    streamed = await client.get("/api/streams/x/mjpeg", params={"token": token})
    assert streamed.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):  # cut off: the stream itself never ends
        await asyncio.wait_for(streamed.read(), timeout=30)
    assert time.time() >= expires
    streamed = await client.get("/api/streams/x/mjpeg", headers=_bearer(VIEWER))
    await asyncio.wait_for(streamed.content.readline(), timeout=30)
    assert not streamed.content.at_eof(), "a configured token's stream goes on"
    streamed.close()


async def test_viewer_cannot_mint_an_admin_token_and_bad_requests_are_400(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(_app(_policy()))
    assert (await client.post("/api/tokens", json={"role": "admin"}, headers=_bearer(VIEWER))).status == 403
    bodies = ('{"role": "root"}', '{"ttl_s": -5}', '{"ttl_s": 0}', '{"ttl_s": 0.5}', '{"ttl_s": "soon"}')
    for body in (*bodies, '{"extra": 1}', "[1]", "{not json"):
        response = await client.post("/api/tokens", data=body, headers=_bearer(ADMIN))
        assert response.status == 400, body
        assert "error" in await response.json()
    assert (await _mint(client, {"ttl_s": 1}, ADMIN))["ttl_s"] == 1, "the shortest life a token may have"


async def test_a_dashboard_link_may_be_minted_for_366_days_and_no_longer(aiohttp_client: ClientFactory) -> None:
    """A URL pasted into Grafana or Home Assistant's camera lasts a year; removing its token revokes it."""
    policy = _policy()
    client = await aiohttp_client(_app(policy))
    day_s = 24 * 3600
    year = await _mint(client, {"role": "viewer", "ttl_s": 366 * day_s}, VIEWER)
    assert year["ttl_s"] == 366 * day_s
    assert _expiry(policy, year["token"]) >= time.time() + 366 * day_s - 60
    assert (await client.get("/api/streams", params={"token": year["token"]})).status == 200
    longer = await client.post("/api/tokens", json={"ttl_s": 367 * day_s}, headers=_bearer(VIEWER))
    assert longer.status == 400
    assert "from 1 to 31622400 (366 days)" in (await longer.json())["error"]
    # An admin's token changes streams and the config file: the year is for viewer links only.
    week = await _mint(client, {"role": "admin", "ttl_s": 7 * day_s}, ADMIN)
    assert week["ttl_s"] == 7 * day_s
    admin_year = await client.post("/api/tokens", json={"role": "admin", "ttl_s": 8 * day_s}, headers=_bearer(ADMIN))
    assert admin_year.status == 400
    assert "admin token must be at most 604800 (7 days)" in (await admin_year.json())["error"]


async def test_a_token_request_body_is_held_to_64_kib_like_every_other(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(_app(_policy()))
    padded = '{"role": "viewer"' + " " * (100 * 1024) + "}"  # valid JSON, far over the limit
    for extra in ({}, {"Transfer-Encoding": "chunked"}):
        headers = {**_bearer(VIEWER), "Content-Type": "application/json"}
        data = padded.encode() if not extra else _chunks(padded.encode())
        response = await client.post("/api/tokens", data=data, headers=headers)
        assert response.status == 413, extra
        assert "64 KiB" in (await response.json())["error"]


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    """A body without a length, as a chunked upload sends it."""
    for start in range(0, len(data), 8192):
        yield data[start : start + 8192]


def test_signed_tokens_expire_and_cannot_be_forged() -> None:
    policy = _policy()
    token = policy.sign(Role.ADMIN, ttl_s=60, now=1000.0)
    assert policy.role_of_signed(token, now=1059.0) is Role.ADMIN
    assert policy.role_of_signed(token, now=1061.0) is None
    forged = token.replace(".admin.", ".viewer.")
    assert policy.role_of_signed(forged, now=1000.0) is None
    other_admins = AccessPolicy.configure("0.0.0.0", admin_tokens=[ADMIN + "-rotated"], environ={})
    assert other_admins.role_of_signed(token, now=1000.0) is None


def test_signed_tokens_outlive_a_restart_and_hold_on_every_node_with_the_same_admin_tokens() -> None:
    """A dashboard's URL must not break at an upgrade, nor on the node a load balancer picks."""
    token = _policy().sign(Role.VIEWER, ttl_s=60, now=1000.0)
    restarted = AccessPolicy.configure("0.0.0.0", admin_tokens=[ADMIN], environ={"SEGCAST_VIEWER_TOKENS": VIEWER})
    assert restarted.role_of_signed(token, now=1000.0) is Role.VIEWER
    # Viewer tokens alone: each viewer knows every input, so the key stays random (per process).
    viewers_only = AccessPolicy.configure("0.0.0.0", viewer_tokens=[VIEWER], environ={})
    again = AccessPolicy.configure("0.0.0.0", viewer_tokens=[VIEWER], environ={})
    assert again.role_of_signed(viewers_only.sign(Role.VIEWER, ttl_s=60, now=1000.0), now=1000.0) is None


def test_open_only_on_loopback_or_when_said_explicitly(caplog: pytest.LogCaptureFixture) -> None:
    assert AccessPolicy.configure("127.0.0.1", environ={}).open
    assert AccessPolicy.configure("::1", environ={}).open
    assert AccessPolicy.configure("localhost", environ={}).open
    with pytest.raises(AuthConfigError, match=r"^listening on 0\.0\.0\.0, beyond this machine, needs access tokens"):
        AccessPolicy.configure("0.0.0.0", environ={})
    with caplog.at_level(logging.WARNING, logger="server.http.access.tokens"):
        assert AccessPolicy.configure("0.0.0.0", explicitly_off=True, environ={}).open
    assert "ACCESS CONTROL IS OFF" in caplog.text


def test_tokens_come_from_the_environment_too_and_must_be_long() -> None:
    policy = AccessPolicy.configure("0.0.0.0", environ={ADMIN_TOKENS_ENV: f" {ADMIN} , "})
    assert not policy.open
    assert policy.role_of_token(ADMIN) is Role.ADMIN
    assert policy.role_of_token(VIEWER) is None
    with pytest.raises(AuthConfigError, match="at least 16"):
        AccessPolicy.configure("0.0.0.0", admin_tokens=["short"], environ={})


def test_a_token_of_exactly_the_shortest_length_is_taken() -> None:
    shortest = "t" * MIN_TOKEN_LENGTH
    assert AccessPolicy.configure("0.0.0.0", admin_tokens=[shortest], environ={}).role_of_token(shortest) is Role.ADMIN
    with pytest.raises(AuthConfigError, match=f"at least {MIN_TOKEN_LENGTH}"):
        AccessPolicy.configure("0.0.0.0", admin_tokens=[shortest[1:]], environ={})


def test_a_token_listed_as_viewer_and_admin_grants_admin() -> None:
    """Copied into both lists by mistake, a token grants the higher role, whichever list is checked last."""
    policy = AccessPolicy.configure("0.0.0.0", viewer_tokens=[ADMIN], admin_tokens=[ADMIN], environ={})
    assert policy.role_of_token(ADMIN) is Role.ADMIN


def test_a_token_is_signed_for_a_second_at_least_as_its_refusal_says() -> None:
    """`sign` said "between 1 and ..." but signed a token for half a second, which POST /api/tokens refuses."""
    policy = AccessPolicy.configure("0.0.0.0", admin_tokens=[ADMIN], environ={})
    assert policy.sign(Role.VIEWER, 1).startswith("s1.viewer.")
    with pytest.raises(ValueError, match="between 1 and"):
        policy.sign(Role.VIEWER, 0.5)


def test_a_short_token_is_refused_naming_where_it_came_from() -> None:
    """Before, a token from the environment was blamed on the config file's auth.admin_tokens."""
    for environ, where in (
        ({ADMIN_TOKENS_ENV: "short"}, "$SEGCAST_ADMIN_TOKENS"),
        ({VIEWER_TOKENS_ENV: "short"}, "$SEGCAST_VIEWER_TOKENS"),
    ):
        with pytest.raises(AuthConfigError, match=rf"^\{where}: tokens must be at least 16 characters"):
            AccessPolicy.configure("127.0.0.1", environ=environ)
    with pytest.raises(AuthConfigError, match=r"^auth\.viewer_tokens: tokens must be at least 16"):
        AccessPolicy.configure("127.0.0.1", viewer_tokens=["short"], environ={ADMIN_TOKENS_ENV: ADMIN})


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_auth_off_with_tokens_in_the_environment_refuses_to_start_naming_both(host: str) -> None:
    """Before, ``auth = "off"`` dropped the environment's tokens without a word and let anyone in."""
    with pytest.raises(AuthConfigError) as refused:
        AccessPolicy.configure(host, explicitly_off=True, environ={ADMIN_TOKENS_ENV: ADMIN})
    message = str(refused.value)
    assert message.startswith('auth = "off" lets anyone in, yet $SEGCAST_ADMIN_TOKENS is set: '), message
    assert "\n" not in message
    both = {ADMIN_TOKENS_ENV: ADMIN, VIEWER_TOKENS_ENV: VIEWER}
    with pytest.raises(AuthConfigError, match=r"\$SEGCAST_ADMIN_TOKENS and \$SEGCAST_VIEWER_TOKENS are set"):
        AccessPolicy.configure(host, explicitly_off=True, environ=both)
    assert AccessPolicy.configure(host, explicitly_off=True, environ={VIEWER_TOKENS_ENV: " , "}).open  # none given


async def test_open_server_refuses_cross_site_changes_and_websockets(aiohttp_client: ClientFactory) -> None:
    app = _app(AccessPolicy.configure("127.0.0.1", environ={}))
    app.router.add_get("/ws", _ok)
    client = await aiohttp_client(app)
    own = f"http://{client.host}:{client.port}"
    evil = {"Origin": "https://evil.example"}
    response = await client.post("/api/streams", headers=evil)
    assert response.status == 403 and "cross-site" in (await response.json())["error"]
    assert (await client.get("/ws", headers={**evil, "Upgrade": "websocket", "Connection": "Upgrade"})).status == 403
    assert (await client.post("/api/streams", headers={"Origin": "null"})).status == 403
    assert (await client.get("/api/streams", headers=evil)).status == 200, "reads are not streams or changes"
    assert (await client.post("/api/streams", headers={"Origin": own})).status == 200, "the viewer itself"
    assert (await client.post("/api/streams")).status == 200, "programs send no Origin"


async def test_a_cross_site_refusal_names_what_it_compared_and_the_proxy_fix(
    aiohttp_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Behind a proxy that does not pass Host on, segcast is asked for as its own address by a page at the
    proxy's: every WebSocket is refused. The answer, and the log once, say what differed and what to do."""
    app = _app(AccessPolicy.configure("127.0.0.1", environ={}))
    app.router.add_get("/ws", _ok)
    client = await aiohttp_client(app)
    upstream = f"127.0.0.1:{client.port}"
    behind_proxy = {"Origin": "https://127.0.0.1:8443", "Upgrade": "websocket", "Connection": "Upgrade"}
    caplog.set_level(logging.WARNING, logger="server.http.access.auth")
    for _ in range(3):
        response = await client.get("/ws", headers=behind_proxy)
        assert response.status == 403, "a mismatching Origin is never taken for this site's own"
        message = (await response.json())["error"]
        assert message.startswith("cross-site requests that change or stream are refused without a token")
        assert "the page is https://127.0.0.1:8443" in message and f"asked for as {upstream}" in message
        assert "Host header" in message
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "logged once, not for each retry of the page"
    assert "'https://127.0.0.1:8443'" in warnings[0] and repr(upstream) in warnings[0]
    assert "Host" in warnings[0] and "(1 refused since the last such line)" in warnings[0]
    sandboxed = await client.post("/api/streams", headers={"Origin": "null"})
    assert "the page is an opaque origin (null" in (await sandboxed.json())["error"]


async def test_a_cross_site_refusal_logs_a_forged_line_in_its_path_as_one_line(
    aiohttp_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Any page the operator's browser visits can send a cross-site POST; its path, percent-decoded,
    went into the warning as it was: %0A began a log line of the page's own making."""
    client = await aiohttp_client(_app(AccessPolicy.configure("127.0.0.1", environ={})))
    caplog.set_level(logging.WARNING, logger="server.http.access.auth")
    forged = "/api/streams%0A2030-01-01 00:00:00,000 CRITICAL server: admin token leaked"
    response = await client.post(forged, headers={"Origin": "https://evil.example"})
    assert response.status == 403
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "\n" not in warning and "CRITICAL" in warning  # there, but inside the quoted path


@pytest.mark.parametrize("explicitly_off", [False, True], ids=["no-tokens", "auth-off"])
async def test_open_server_answers_only_to_local_names(aiohttp_client: ClientFactory, explicitly_off: bool) -> None:
    """DNS rebinding: a page whose domain now resolves to 127.0.0.1 would otherwise be same-origin.
    ``auth = "off"`` on loopback opens the server no wider than having no tokens does."""
    policy = AccessPolicy.configure("127.0.0.1", explicitly_off=explicitly_off, environ={})
    client = await aiohttp_client(_app(policy))
    for foreign in ("evil.example", "evillocalhost"):  # the second only ends as "localhost" does
        rebound = {"Host": f"{foreign}:{client.port}", "Origin": f"http://{foreign}:{client.port}"}
        response = await client.get("/api/streams", headers=rebound)
        assert response.status == 403 and "DNS rebinding" in (await response.json())["error"], foreign
        assert (await client.post("/api/streams", headers=rebound)).status == 403, foreign
    for host in ("127.0.0.1", "localhost", "[::1]", "cameras.localhost", "127.0.0.2"):
        response = await client.get("/api/streams", headers={"Host": f"{host}:{client.port}"})
        assert response.status == 200, host
    for malformed in ("a:x", "[::1"):  # refused like any other foreign name, not a server error
        response = await client.post("/api/streams", headers={"Host": malformed, "Origin": "http://a"})
        assert response.status == 403, malformed


async def test_a_server_with_tokens_answers_to_any_name(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(_app(_policy()))
    headers = {"Host": "cameras.example.com", **_bearer(VIEWER)}
    assert (await client.get("/api/streams", headers=headers)).status == 200


def _off_beyond_loopback() -> AccessPolicy:
    """``auth = "off"`` on every address: reached by names no one can list, so none is refused."""
    return AccessPolicy.configure("0.0.0.0", explicitly_off=True, environ={})


async def test_auth_off_beyond_loopback_answers_to_any_name(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(_app(_off_beyond_loopback()))
    assert (await client.get("/api/streams", headers={"Host": "cameras.example.com"})).status == 200


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://[evil"}, {"Origin": "http://a", "Host": "a:x"}],
    ids=["malformed-origin", "malformed-host"],
)
async def test_a_malformed_origin_or_host_is_taken_for_cross_site(
    aiohttp_client: ClientFactory, headers: dict[str, str]
) -> None:
    """Without a name check in front (auth off beyond loopback), a header that cannot be compared must not
    pass for this site's own: nothing proves the page is the viewer."""
    client = await aiohttp_client(_app(_off_beyond_loopback()))
    response = await client.post("/api/streams", headers=headers)
    assert response.status == 403 and "cross-site" in (await response.json())["error"]


@pytest.mark.parametrize(
    "token",
    ["s1.admin.9999999999.%C3%A9", "s1.admin.1.%ED%A0%80"],
)
async def test_a_crafted_url_token_is_a_401_not_a_server_error(
    aiohttp_client: ClientFactory, caplog: pytest.LogCaptureFixture, token: str
) -> None:
    """Non-ASCII text, or bytes that are not UTF-8 at all, where the signature goes."""
    client = await aiohttp_client(_app(_policy()))
    with caplog.at_level(logging.ERROR):
        response = await client.get(f"/api/streams?token={token}")
    assert response.status == 401
    assert "token" in (await response.json())["error"]
    assert not caplog.records, "a refused token is not a server error"


@pytest.mark.parametrize("credential", [b"\xff\xfe\xfd", b"\xc3\x28" * 8])
async def test_a_bearer_token_of_any_bytes_is_a_401_not_a_server_error(
    aiohttp_client: ClientFactory, caplog: pytest.LogCaptureFixture, credential: bytes
) -> None:
    client = await aiohttp_client(_app(_policy()))
    request = (
        b"GET /api/streams HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer "
        + credential
        + b"\r\n\r\n"
    )
    with caplog.at_level(logging.ERROR):
        answer = await raw_request(str(client.host), int(client.port or 0), request)
    assert status_of(answer) == 401, answer[:200]
    assert not caplog.records, "a refused token is not a server error"


def test_tokens_holding_lone_surrogates_grant_nothing() -> None:
    """What aiohttp makes of undecodable bytes, met by the policy directly."""
    policy = _policy()
    assert policy.role_of_signed("s1.admin.9999999999.\ud800") is None
    assert policy.role_of_token("\udcff" * 20) is None
    assert policy.role_of_token(ADMIN) is Role.ADMIN
