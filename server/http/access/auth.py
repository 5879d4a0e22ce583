"""Access control: who may watch and who may change streams.

Two roles. A *viewer* may watch, embed and read the API; an *admin* may also add, change and remove
streams. Requests prove a role in one of two ways:

- ``Authorization: Bearer <token>`` with a token from the config file or the environment;
- ``?token=<signed>`` for the places a header cannot be set (``<img>``, ``<iframe>``, a browser's
  WebSocket): an expiring token minted by ``POST /api/tokens`` (an hour unless asked otherwise),
  signed with HMAC-SHA256 and bound to a role and an expiry, so a URL that leaks into a log or a
  screenshot stops working soon; a dashboard's viewer link, asked for up to a year, is revoked with
  the token that minted it (below), and an admin's lasts a week at most. A signed token is good as a
  bearer too (pasted where a token is asked for, it is what it says).

A signed token may be scoped (`Scope`): a dashboard's link to its streams alone, the history page's
``<img>`` to stored event snapshots alone. Such a token opens only the routes its scope's kind lists
(`SCOPED_ROUTES`), for its own streams; anything else, a route added later too, is a 403 naming its scope
and what was asked. It mints no token at all: a link's holder cannot make links its owner never saw.

"Soon" holds for everything a signed token reaches: a token minted with one expires no later than
it, and a WebSocket or MJPEG stream opened with one ends when it expires (a WebRTC peer too: see
`server.webrtc.peers`). Taking a token out of the settings revokes, at the restart, every signed token
minted with it (or with one minted with it, and so on): a leaked viewer token's links die with it.

This module applies the policy to aiohttp's requests: the middleware, the role each route needs,
the end of a stream whose token expires, and the route that mints tokens. What a token proves, and
when the policy may be open, is `server.http.access.tokens`'s; what a request says of where it comes
from, `server.http.access.requests`'s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress

from aiohttp import web

from server.analytics.shapes import refuse_unknown_keys
from server.config import check_stream_id
from server.http.access.refusals import Refusals
from server.http.access.requests import bearer_token, is_cross_site, is_local_name, is_websocket
from server.http.access.tokens import (
    EVENT_SNAPSHOTS,
    MAX_SCOPE_STREAMS,
    SIGNED_ADMIN_TOKEN_MAX_TTL_S,
    SIGNED_TOKEN_DEFAULT_TTL_S,
    SIGNED_TOKEN_MAX_TTL_S,
    AccessPolicy,
    Credential,
    Role,
    Scope,
    ScopeKind,
    SignedRefusal,
)
from server.http.errors import error
from server.http.network.bodies import read_body
from server.http.viewers import websocket_closer_key
from server.log_throttle import ThrottledCount

log = logging.getLogger(__name__)

#: The close code of a WebSocket whose signed token expired, after HTTP's 401 (4000-4999 are the
#: application's own): get a new token and connect again.
TOKEN_EXPIRED_CLOSE_CODE = 4401
#: The longest a stream opened with a signed token waits before it reads the wall clock again. Its
#: timer runs on the loop's monotonic clock, which neither follows a step of the wall clock (NTP
#: setting a wrong clock right) nor counts a suspend: one sleep until the expiry would keep the
#: stream open past it by that much. So the expiry is late by this much at most.
TOKEN_EXPIRY_CHECK_S = 30.0

#: Paths anyone may load: the health check (its details to a token's holder alone: `reads_node_details`) and
#: the viewer's own files, which carry no camera data (every frame, track and stream detail they show comes
#: from a route below that checks the role).
PUBLIC_PATHS = frozenset({"/", "/healthz"})
PUBLIC_PREFIXES = ("/static/", "/embed/")
#: Methods that only read; anything else changes the server and needs an admin.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Minting a signed token changes nothing: a viewer may mint viewer tokens for its own <img> tags.
TOKENS_PATH = "/api/tokens"
#: The keys a body asking `TOKENS_PATH` for a token may have.
TOKEN_REQUEST_KEYS = ("role", "ttl_s", "scope")
#: The keys of its ``scope``: one of them.
SCOPE_KEYS = ("streams", "event_snapshots")
#: What a scoped token opens, by its scope's kind: (method, route) as the router names them, HEAD being GET.
#: A route naming ``{stream}`` opens only for the scope's streams. The stream list lists them alone
#: (`server.http.api`), and the WebSocket holds its subscriptions to them itself, its ``"*"`` too
#: (`server.http.ws`): a grid or wall opened with a link shows its cameras. ``/embed/<stream>`` is public,
#: the page, and its live view comes by the WebSocket and the stream's GET; WebRTC's config is its play's
#: ICE servers.
SCOPED_ROUTES: dict[ScopeKind, frozenset[tuple[str, str]]] = {
    ScopeKind.STREAMS: frozenset(
        {
            ("GET", "/api/streams"),
            ("GET", "/api/streams/{stream}"),
            ("GET", "/api/streams/{stream}/snapshot.jpg"),
            ("GET", "/api/streams/{stream}/mjpeg"),
            ("GET", "/api/streams/{stream}/counts"),
            ("GET", "/api/streams/{stream}/tracks"),
            ("GET", "/ws"),
            ("GET", "/api/webrtc/config"),
            ("POST", "/api/webrtc/play/{stream}"),
        }
    ),
    ScopeKind.EVENT_SNAPSHOTS: frozenset({("GET", "/api/events/{event}/snapshot.jpg")}),
}
#: Playing a stream over WebRTC is watching it, though the offer has to be POSTed.
WATCH_BY_POST_PREFIXES = ("/api/webrtc/play/",)
#: The least time between two log lines about refused cross-site requests: one tells the operator
#: (a proxy that drops the Host header refuses every viewer), a page retrying every second must not
#: fill the log.
CROSS_SITE_LOG_INTERVAL_S = 60.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def required_role(request: web.Request) -> Role | None:
    """The role a request needs: none for the public files, viewer to read, admin to change."""
    path = request.path
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return None
    if path == TOKENS_PATH or path.startswith(WATCH_BY_POST_PREFIXES):
        return Role.VIEWER
    return Role.VIEWER if request.method in READ_METHODS else Role.ADMIN


def setup_auth(app: web.Application, policy: AccessPolicy) -> None:
    """Guard every route of ``app`` with ``policy`` and add ``POST /api/tokens`` to mint signed tokens."""
    app[policy_key] = policy
    app[_cross_site_log_key] = ThrottledCount(CROSS_SITE_LOG_INTERVAL_S)
    app[refusals_key] = Refusals()
    app.middlewares.append(_check_access)
    app.on_response_prepare.append(_note_stream)
    app.router.add_post(TOKENS_PATH, _mint_token)


policy_key = web.AppKey("access_policy", AccessPolicy)


@web.middleware
async def _check_access(request: web.Request, handler: Handler) -> web.StreamResponse:
    policy = request.app[policy_key]
    needed = required_role(request)
    host = request.headers.get("Host")  # browsers always send it; without it there is nothing to rebind
    if policy.local_names_only and host is not None and not is_local_name(host):
        raise error(
            web.HTTPForbidden,
            f"this server answers only to this machine's own names (localhost, 127.0.0.1), not "
            f"{host!r}, which could be a web page's domain rebound to it (DNS rebinding); open it "
            "as http://127.0.0.1:<port>/, or set access tokens to serve it under other names",
        )
    if policy.open and is_cross_site(request) and (request.method not in READ_METHODS or is_websocket(request)):
        # Open means "anyone on this machine", not "any web page this machine's browser visits":
        # with no token to prove intent, a page on another site could otherwise add streams, rewrite
        # the config file or watch the cameras over a WebSocket (neither is stopped by CORS).
        raise _cross_site_refusal(request)
    if policy.open or needed is None:
        return await handler(request)
    credential = policy.credential_of(request)
    if credential is None:
        request.app[refusals_key].add(request.remote, _refusal_reason(policy, request))
        raise _unauthorized(policy, request)
    if credential.role < needed:
        request.app[refusals_key].add(request.remote, "role_too_low")
        raise error(
            web.HTTPForbidden,
            f"this needs the {needed.name.lower()} role; the token given is a {credential.role.name.lower()}",
        )
    if credential.scope is not None and not within_scope(request, credential.scope):
        request.app[refusals_key].add(request.remote, "out_of_scope")
        raise error(
            web.HTTPForbidden,
            f"this token is limited to {credential.scope.describe()}; it does not open {request.method} "
            f"{request.path}: ask whoever gave it for a token that does",
        )
    request[credential_key] = credential
    if credential.expires is None:
        return await handler(request)
    request[expires_key] = credential.expires
    return await _within_token_life(request, handler, credential.expires)


_cross_site_log_key = web.AppKey("cross_site_log", ThrottledCount)


def reads_node_details(request: web.Request) -> bool:
    """Whether ``request`` may read more of the node than whether it is healthy (``/healthz``'s version,
    stream count, inference): anyone where the policy is open, else a credential that holds and is not scoped.

    The version tells an attacker which known flaws to try, the count how many cameras there are: a
    probe needs neither, only the status. A scoped token opens its own cameras alone, not the node's
    figures. A token that does not hold is no refusal here, only a probe told no more: a probe sending a
    stale token must not fail (its prober would restart a healthy node), nor be counted as refused.
    """
    policy = request.app[policy_key]
    if policy.open:
        return True
    credential = policy.credential_of(request)
    return credential is not None and credential.scope is None


def within_scope(request: web.Request, scope: Scope) -> bool:
    """Whether a token of ``scope`` opens ``request``: its route is one `SCOPED_ROUTES` lists for the scope's
    kind, and the stream it names, if it names one, is the scope's. Read from the route the router matched,
    never from the path's text, so no spelling of a path reaches another route."""
    resource = request.match_info.route.resource
    method = "GET" if request.method == "HEAD" else request.method
    if resource is None or (method, resource.canonical) not in SCOPED_ROUTES[scope.kind]:
        return False
    stream = request.match_info.get("stream")
    return stream is None or stream in scope.streams


def _cross_site_refusal(request: web.Request) -> web.HTTPException:
    """The 403 for a change or a stream a page of another origin asked an open server for.

    Besides an attack, the likeliest cause is a reverse proxy that does not pass the ``Host`` header
    on: segcast is then asked for as its own address (``127.0.0.1:8080``) by a page that has the
    proxy's, and every viewer's WebSocket is refused while the pages themselves load. So the answer
    names what was compared and that fix, and the same goes to the log as a WARNING, at most once a
    minute (`CROSS_SITE_LOG_INTERVAL_S`), for the operator who only sees pages that never play.
    The comparison itself is `is_cross_site`'s: nothing here lets a mismatch through.
    """
    origin = request.headers.get("Origin", "")
    page = "an opaque origin (null: a sandboxed frame, or a file)" if origin == "null" else origin
    asked = request.headers.get("Host", request.host)
    if refused := request.app[_cross_site_log_key].add():
        log.warning(
            "refused a cross-site %s %r without a token: the page is %r, this server was asked for as %r; "
            "if a reverse proxy is in between, have it pass the Host header on (nginx: proxy_set_header "
            "Host $http_host); this is logged at most once a minute (%d refused since the last such line)",
            "WebSocket" if is_websocket(request) else request.method,
            request.path,
            page,
            asked,
            refused,
        )
    return error(
        web.HTTPForbidden,
        f"cross-site requests that change or stream are refused without a token (the page is {page}, "
        f"this server was asked for as {asked}: behind a reverse proxy? have it pass the Host header "
        "on, e.g. nginx's proxy_set_header Host $http_host)",
    )


def _unauthorized(policy: AccessPolicy, request: web.Request) -> web.HTTPException:
    """The 401 for a request without a credential that holds: a signed token refused where a new one
    would do (`AccessPolicy.signed_problem`) is told why, and how to get another; a configured token
    given as ``?token=`` is told that an address takes only signed tokens, for its holder (who pasted it
    into an ``<img>`` or a dashboard's URL) would otherwise take it for a wrong token."""
    if (signed_problem := policy.signed_problem(request)) is not None:
        message = f"{signed_problem}; mint a new one with POST {TOKENS_PATH}"
    elif _configured_token_in_address(policy, request):
        message = (
            "configured tokens are not accepted in an address (they would end up in logs and browser "
            f"history): send it as Authorization: Bearer, or mint a signed link with POST {TOKENS_PATH} "
            "and put its token in ?token="
        )
    else:
        message = "a valid token is needed: send Authorization: Bearer <token>, or ?token=<signed token>"
    return error(web.HTTPUnauthorized, message, **{"WWW-Authenticate": 'Bearer realm="segcast"'})


def _configured_token_in_address(policy: AccessPolicy, request: web.Request) -> bool:
    """Whether the request's ``?token=`` is one of the configured tokens, where no bearer was sent
    (a bearer is what `AccessPolicy.credential_of` reads then). Checked in constant time, as a bearer is
    (`AccessPolicy.token_credential`): the answer tells no more than sending it as a bearer would."""
    in_address = request.query.get("token", "")
    return bearer_token(request) is None and policy.token_credential(in_address) is not None


def _refusal_reason(policy: AccessPolicy, request: web.Request) -> str:
    """Which of `REFUSAL_REASONS` a request without a credential that holds is refused for: it presents,
    as `AccessPolicy.credential_of` reads, a bearer if it has one, else its ``?token=``. A token is expired
    where the token policy finds it this server's and refused for its expiry alone (`SignedRefusal.minted_here`),
    the reading the 401's wording comes from (`AccessPolicy.signed_problem`); any other is wrong."""
    bearer = bearer_token(request)
    presented = request.query.get("token", "") if bearer is None else bearer
    if not presented:
        return "missing"
    if _configured_token_in_address(policy, request):
        return "in_address"
    checked = policy.check_signed(presented)
    return "expired" if isinstance(checked, SignedRefusal) and checked.minted_here else "wrong"


refusals_key = web.AppKey("auth_refusals", Refusals)


#: What the request was let in with; absent under an open policy.
credential_key = web.RequestKey("credential", Credential)
#: When the signed token a request was let in with expires (Unix seconds); absent for other tokens.
expires_key = web.RequestKey("token_expires", int)
#: The response a request streams (prepared by its handler, as a WebSocket or MJPEG is).
_stream_key = web.RequestKey("token_stream", web.StreamResponse)
#: Ends the request's stream, saying why, when its signed token expires: set by a handler whose stream can
#: end cleanly with a word to its client (an MJPEG response: a notice, then its closing boundary).
token_expiry_ender_key: web.RequestKey[Callable[[], None]] = web.RequestKey("token_expiry_ender")


async def _within_token_life(request: web.Request, handler: Handler, expires: int) -> web.StreamResponse:
    """Run ``handler``; a stream it serves (WebSocket, MJPEG) ends when the signed token it came with expires.

    A token is checked when a request arrives, but a stream may go on for days: a leaked URL token
    must stop showing the cameras soon, not only stop opening new streams.
    """
    ender = asyncio.create_task(_end_stream_at(request, expires), name="token-expiry")
    try:
        return await handler(request)
    finally:
        ender.cancel()
        with suppress(asyncio.CancelledError):
            await ender


async def _note_stream(request: web.Request, response: web.StreamResponse) -> None:
    if expires_key in request:
        request[_stream_key] = response


async def _end_stream_at(request: web.Request, expires: int) -> None:
    """At ``expires``, close the request's WebSocket with `TOKEN_EXPIRED_CLOSE_CODE`, or end its stream.

    A response that is not streamed yet is left alone: its request was allowed when it arrived. An open
    WebSocket is closed by its handler's `WebSocketCloser`, which cuts off a client that does not take
    the close frame. A stream whose handler set a `token_expiry_ender_key` is ended by it, saying why (an
    MJPEG ``<img>`` shows a notice: cut off mid-body, a browser shows a broken image instead). Any other
    stream, or a WebSocket still in its handshake, cannot say why: its connection is closed.
    """
    # The wall clock is read again each step (`TOKEN_EXPIRY_CHECK_S`): no event tells when it passes `expires`.
    while (left_s := expires - time.time()) > 0:  # noqa: ASYNC110
        await asyncio.sleep(min(left_s, TOKEN_EXPIRY_CHECK_S))
    response = request.get(_stream_key)
    if response is None or request.transport is None:
        return
    closer = request.get(websocket_closer_key)
    if closer is not None:
        closer.close(TOKEN_EXPIRED_CLOSE_CODE, "the access token expired")
        return
    ender = request.get(token_expiry_ender_key)
    if ender is not None:
        ender()
        return
    request.transport.close()


async def _mint_token(request: web.Request) -> web.Response:
    """Mint a signed token for URLs, for the caller's own role or a lower one.

    The body is optional JSON: ``{"role": "viewer", "ttl_s": 3600}``, with ``"scope": {"streams": [ids]}``
    or ``"scope": {"event_snapshots": true}`` for a scoped viewer token (`_scope_of`), which the answer
    repeats. A caller who proves its role with a signed token gets one that expires no later than its own;
    ``ttl_s`` in the answer says how long the token given holds. It has the caller's root
    (`Credential.root`): taking the configured token behind the caller out of the settings revokes it too.
    """
    policy = request.app[policy_key]
    raw = await read_body(request)
    try:
        body = json.loads(raw or "{}", parse_constant=_no_constant)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, NaN, or nested beyond Python's limit
        body = None
    body = _object_of(
        body, TOKEN_REQUEST_KEYS, "body", "the body must be a JSON object with optional 'role', 'ttl_s' and 'scope'"
    )
    role_name = body.get("role", "viewer")
    ttl_s = body.get("ttl_s", SIGNED_TOKEN_DEFAULT_TTL_S)
    if role_name not in ("viewer", "admin"):
        raise _bad_request("'role' must be 'viewer' or 'admin'")
    if not isinstance(ttl_s, int | float) or isinstance(ttl_s, bool) or not 1 <= ttl_s <= SIGNED_TOKEN_MAX_TTL_S:
        raise _bad_request(
            f"'ttl_s' must be a number of seconds from 1 to {SIGNED_TOKEN_MAX_TTL_S} "
            f"({SIGNED_TOKEN_MAX_TTL_S // 86400} days)"
        )
    role = Role[role_name.upper()]
    if role is Role.ADMIN and ttl_s > SIGNED_ADMIN_TOKEN_MAX_TTL_S:
        raise _bad_request(
            f"'ttl_s' of an admin token must be at most {SIGNED_ADMIN_TOKEN_MAX_TTL_S} "
            f"({SIGNED_ADMIN_TOKEN_MAX_TTL_S // 86400} days); the longer life is for viewer links"
        )
    scope = _scope_of(body)
    if scope is not None and role is not Role.VIEWER:
        raise _bad_request("'scope' limits viewer tokens: an admin token has no scope (leave out 'role')")
    caller = request.get(credential_key)
    if caller is not None and role > caller.role:  # an open policy lets everyone act as admin
        raise error(web.HTTPForbidden, "a token can only grant its own role or a lower one")
    now = time.time()
    expires = int(now + ttl_s)
    presented = request.get(expires_key)
    if presented is not None and presented < expires:
        # A signed token must not mint a longer-lived one: whoever found it in a URL could otherwise
        # trade it for a year-long token, and that one for the next, for ever.
        expires, ttl_s = presented, round(max(0.0, presented - now), 3)
    token = policy.sign_until(role, expires, minted_by=caller, scope=scope)
    answer: dict[str, object] = {"token": token, "role": role_name, "ttl_s": ttl_s}
    if scope is not None:
        answer["scope"] = scope.to_json()
    return web.json_response(answer)


def _scope_of(body: dict[str, object]) -> Scope | None:
    """The scope a token request's body asks for, or None for none; a 400 naming what is wrong with it.

    Its stream ids are held to the rule of every stream id, but need not be a stream's now: a dashboard's
    link may be made before its camera is added.
    """
    if "scope" not in body:
        return None
    asked = _object_of(
        body["scope"],
        SCOPE_KEYS,
        "scope",
        '\'scope\' must be an object: {"streams": ["<id>", ...]} or {"event_snapshots": true}',
    )
    if "streams" in asked and "event_snapshots" in asked:
        raise _bad_request("scope: give 'streams' or 'event_snapshots', not both")
    if "event_snapshots" in asked:
        if asked["event_snapshots"] is not True:
            raise _bad_request("scope.event_snapshots: true is its only value (for stored events' snapshots alone)")
        return EVENT_SNAPSHOTS
    if "streams" not in asked:
        raise _bad_request('\'scope\' must name its "streams", or be {"event_snapshots": true}')
    return Scope.of_streams(_scope_streams(asked["streams"]))


def _object_of(value: object, keys: tuple[str, ...], what: str, not_an_object: str) -> dict[str, object]:
    """``value`` as a JSON object holding none but ``keys``; else a 400 saying ``not_an_object`` or the key
    that is not one of them (named as in ``what``)."""
    if not isinstance(value, dict):
        raise _bad_request(not_an_object)
    try:
        refuse_unknown_keys(value, keys, what)
    except ValueError as exc:
        raise _bad_request(str(exc)) from None
    return value


def _scope_streams(streams: object) -> set[str]:
    """A scope's ``streams`` as asked, each checked, or a 400 naming the first that is wrong."""
    if not isinstance(streams, list):
        raise _bad_request('scope.streams: a list of stream ids, such as ["front"]')
    try:
        ids = {check_stream_id(stream, f"scope.streams[{index}]") for index, stream in enumerate(streams)}
    except ValueError as exc:
        raise _bad_request(str(exc)) from None
    if not 1 <= len(ids) <= MAX_SCOPE_STREAMS:
        raise _bad_request(f"scope.streams: at least one stream id, and at most {MAX_SCOPE_STREAMS}")
    return ids


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _bad_request(message: str) -> web.HTTPException:
    return error(web.HTTPBadRequest, message)
