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

"Soon" holds for everything a signed token reaches: a token minted with one expires no later than
it, and a WebSocket or MJPEG stream opened with one ends when it expires (a WebRTC peer too: see
`server.webrtc.peers`). Taking a token out of the settings revokes, at the restart, every signed token
minted with it (or with one minted with it, and so on): a leaked viewer token's links die with it.

Configured tokens are never compared directly: their SHA-256 digests are compared in constant time
against the digest of what was presented, and every configured token is checked, so neither the
timing nor the order of the checks tells which one nearly matched.

The policy is *open* (nobody is asked for anything) only where the user chose that: bound to a
loopback address with no tokens configured, or ``auth = "off"`` said explicitly. Binding anywhere
else with no tokens refuses to start, naming the settings that fix it; so does ``auth = "off"`` with
tokens given (in the environment, say), which would otherwise be dropped without a word.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web
from yarl import URL

from server.http.errors import error
from server.http.network.bodies import read_body
from server.http.viewers import websocket_closer_key
from server.log_throttle import ThrottledCount

log = logging.getLogger(__name__)

VIEWER_TOKENS_ENV = "SEGCAST_VIEWER_TOKENS"
ADMIN_TOKENS_ENV = "SEGCAST_ADMIN_TOKENS"
MIN_TOKEN_LENGTH = 16
#: 366 days: a dashboard's URL (Grafana, Home Assistant's camera) is pasted once a year, not weekly.
#: Safe to be long because a signed token dies with the configured token it was minted with (`Credential`).
SIGNED_TOKEN_MAX_TTL_S = 366 * 24 * 3600
#: An admin's signed token changes streams and the config file: in a URL it lasts a week at most,
#: the year being for dashboards' viewer links.
SIGNED_ADMIN_TOKEN_MAX_TTL_S = 7 * 24 * 3600
#: How far beyond its role's longest life a signed token's expiry may lie when it is checked: the
#: clocks of two nodes sharing admin tokens (one mints, the other checks) disagree by a little. More,
#: and the token was minted by a clock running fast (see `AccessPolicy.signed_credential`).
SIGNED_TOKEN_CLOCK_SKEW_S = 300
SIGNED_TOKEN_DEFAULT_TTL_S = 3600
SIGNED_TOKEN_PREFIX = "s1"
#: The root of a signed token minted on no configured token's behalf: under an open policy, or by a
#: program holding the policy. It holds as long as the signing key; a configured token's root (the
#: SHA-256 of the token, 32 bytes) can never be empty.
SERVER_ROOT = b""
#: The close code of a WebSocket whose signed token expired, after HTTP's 401 (4000-4999 are the
#: application's own): get a new token and connect again.
TOKEN_EXPIRED_CLOSE_CODE = 4401
#: The longest a stream opened with a signed token waits before it reads the wall clock again. Its
#: timer runs on the loop's monotonic clock, which neither follows a step of the wall clock (NTP
#: setting a wrong clock right) nor counts a suspend: one sleep until the expiry would keep the
#: stream open past it by that much. So the expiry is late by this much at most.
TOKEN_EXPIRY_CHECK_S = 30.0

#: Paths anyone may load: the health check and the viewer's own files, which carry no camera data
#: (every frame, track and stream detail they show comes from a route below that checks the role).
PUBLIC_PATHS = frozenset({"/", "/healthz"})
PUBLIC_PREFIXES = ("/static/", "/embed/")
#: Methods that only read; anything else changes the server and needs an admin.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Minting a signed token changes nothing: a viewer may mint viewer tokens for its own <img> tags.
TOKENS_PATH = "/api/tokens"
#: Playing a stream over WebRTC is watching it, though the offer has to be POSTed.
WATCH_BY_POST_PREFIXES = ("/api/webrtc/play/",)
#: The least time between two log lines about refused cross-site requests: one tells the operator
#: (a proxy that drops the Host header refuses every viewer), a page retrying every second must not
#: fill the log.
CROSS_SITE_LOG_INTERVAL_S = 60.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AuthConfigError(ValueError):
    """The access settings cannot be used as given; the message names the setting."""


class Role(enum.IntEnum):
    """Ordered so that a higher role includes every right of a lower one."""

    VIEWER = 1
    ADMIN = 2


@dataclass(frozen=True, slots=True)
class Credential:
    """What a presented token proves: a role, and until when (Unix seconds) if it is a signed token.

    ``expires`` is None for a configured token, which holds until it is taken out of the settings.
    ``root`` is the digest of the configured token it goes back to: the token itself, or the one the
    signed token was minted with, through any chain of signed tokens (`SERVER_ROOT` for none). A
    token minted with this credential has the same root, and holds only while that root is configured.
    """

    role: Role
    expires: int | None = None
    root: bytes = field(default=SERVER_ROOT, repr=False)


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """Who is let in. Build it with `AccessPolicy.configure`; `open` means nobody is asked.

    ``local_names_only``: the server is open because it listens on loopback, so it answers only to
    this machine's own names. A web page can rebind its own domain to 127.0.0.1 (DNS rebinding); its
    requests then reach segcast as same-origin ones, and only the ``Host`` header gives them away.
    """

    open: bool
    local_names_only: bool = False
    token_digests: tuple[tuple[bytes, Role], ...] = ()
    signing_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @classmethod
    def configure(
        cls,
        host: str,
        viewer_tokens: Iterable[str] = (),
        admin_tokens: Iterable[str] = (),
        explicitly_off: bool = False,
        environ: Mapping[str, str] | None = None,
        required: bool = False,
    ) -> AccessPolicy:
        """The policy for a server bound to ``host``, from the config file's tokens and the environment.

        Raises `AuthConfigError` for a token too short to be a secret, for a non-loopback address
        (or any address, where tokens are ``required``) with no tokens at all unless access control
        was explicitly turned off, and for tokens given
        while it was turned off (the user would believe them to guard the server). Each message names
        where the tokens came from: the config file's key or the environment variable.
        """
        environ = os.environ if environ is None else environ
        sources = {  # where tokens came from, as the messages name it
            "auth.admin_tokens": list(admin_tokens),
            "auth.viewer_tokens": list(viewer_tokens),
            f"${ADMIN_TOKENS_ENV}": _split_env(environ.get(ADMIN_TOKENS_ENV, "")),
            f"${VIEWER_TOKENS_ENV}": _split_env(environ.get(VIEWER_TOKENS_ENV, "")),
        }
        admins = [*sources["auth.admin_tokens"], *sources[f"${ADMIN_TOKENS_ENV}"]]
        viewers = [*sources["auth.viewer_tokens"], *sources[f"${VIEWER_TOKENS_ENV}"]]
        for source, tokens in sources.items():
            for token in tokens:
                if len(token) < MIN_TOKEN_LENGTH:
                    raise AuthConfigError(
                        f"{source}: tokens must be at least {MIN_TOKEN_LENGTH} characters "
                        f"(try `python -c 'import secrets; print(secrets.token_urlsafe())'`)"
                    )
        if explicitly_off:
            if given := [source for source, tokens in sources.items() if tokens]:
                # Never let anyone in while the user believes the tokens guard the server.
                named = " and ".join(given)
                raise AuthConfigError(
                    f'auth = "off" lets anyone in, yet {named} {"are" if len(given) > 1 else "is"} set: '
                    f'remove auth = "off" from the config file to require the tokens, or unset {named}'
                )
            if not is_loopback(host):
                log.warning(
                    "ACCESS CONTROL IS OFF on %s: anyone who can reach this address can watch every camera "
                    'and add or remove streams. Remove auth = "off" and set admin/viewer tokens to protect it.',
                    host,
                )
            return cls(open=True, local_names_only=is_loopback(host))
        if not viewers and not admins:
            if required:  # behind an entrance: every request comes from loopback, whoever sent it
                raise AuthConfigError(
                    f"auth.required = true: this server needs access tokens wherever it listens "
                    f"(${ADMIN_TOKENS_ENV}, or auth.admin_tokens / auth.viewer_tokens); without them anyone "
                    "reaching the entrance in front of it could change it"
                )
            if is_loopback(host):
                return cls(open=True, local_names_only=True)
            raise AuthConfigError(
                f"listening on {host}, beyond this machine, needs access tokens "
                f"(${ADMIN_TOKENS_ENV}, or auth.admin_tokens / auth.viewer_tokens in a config file); "
                f'or let anyone in with auth = "off" at the top of a config file, before its first [table]'
            )
        digests = tuple((_digest(t), Role.ADMIN) for t in admins) + tuple((_digest(t), Role.VIEWER) for t in viewers)
        if not admins:  # every input would be a viewer's: they could sign themselves admin tokens
            return cls(open=False, token_digests=digests)
        return cls(open=False, token_digests=digests, signing_key=_signing_key(admins))

    def role_of_token(self, token: str) -> Role | None:
        """The role a configured token grants, checked in constant time against all of them."""
        credential = self.token_credential(token)
        return None if credential is None else credential.role

    def token_credential(self, token: str) -> Credential | None:
        """What a configured token proves, checked in constant time against all of them."""
        presented = _digest(token)
        found: Role | None = None
        for digest, role in self.token_digests:
            if hmac.compare_digest(presented, digest) and (found is None or role > found):
                found = role
        return None if found is None else Credential(found, root=presented)

    def sign(
        self,
        role: Role,
        ttl_s: float = SIGNED_TOKEN_DEFAULT_TTL_S,
        now: float | None = None,
        minted_by: Credential | None = None,
    ) -> str:
        """A URL-safe token granting ``role`` until ``ttl_s`` seconds from now (see `sign_until`)."""
        if not 0 < ttl_s <= max_ttl_s(role):
            raise ValueError(f"ttl_s of a {role.name.lower()} token must be between 1 and {max_ttl_s(role)}")
        return self.sign_until(role, int((time.time() if now is None else now) + ttl_s), minted_by)

    def sign_until(self, role: Role, expires: int, minted_by: Credential | None = None) -> str:
        """A URL-safe token granting ``role`` until ``expires`` (Unix seconds), while ``minted_by``'s
        root is configured (with None, while the signing key holds: see `SERVER_ROOT`).

        The root is not written in the token but signed into it (see `_mac`): a token keeps the shape
        ``s1.<role>.<expiry>.<signature>``, and a URL never tells which configured token it came from.
        """
        body = f"{SIGNED_TOKEN_PREFIX}.{role.name.lower()}.{expires}"
        root = SERVER_ROOT if minted_by is None else minted_by.root
        return f"{body}.{self._mac(body, root).decode()}"

    def role_of_signed(self, token: str, now: float | None = None) -> Role | None:
        """The role a signed token grants, or None if it is forged, malformed or expired."""
        credential = self.signed_credential(token, now)
        return None if credential is None else credential.role

    def signed_credential(self, token: str, now: float | None = None) -> Credential | None:
        """What a signed token proves, or None if it is forged, malformed, expired or from the future.

        From the future: it expires further ahead than its role's longest life (`max_ttl_s`, give or
        take `SIGNED_TOKEN_CLOCK_SKEW_S`), which no correct clock mints. A clock running fast did: a
        one-hour admin token minted while the clock was two years ahead would otherwise hold for two
        years once the clock is set right.
        """
        credential = self._genuine(token)
        if credential is None or credential.expires is None:
            return None
        now = time.time() if now is None else now
        return credential if _expiry_problem(credential.role, credential.expires, now) is None else None

    def credential_of(self, request: web.Request) -> Credential | None:
        """What a request proves, from its bearer header or its signed ``token`` parameter.

        A bearer may be a configured token or a signed one: a person handed a signed token pastes it
        where the viewer asks for a token, and the viewer sends that as a bearer.
        """
        bearer = _bearer(request)
        if bearer is not None:
            return self.token_credential(bearer) or self.signed_credential(bearer)
        signed = request.query.get("token")
        if signed:
            return self.signed_credential(signed)
        return None

    def signed_problem(self, request: web.Request) -> str | None:
        """Why the signed token ``request`` presents is refused, where minting a new one is the fix: it
        is genuine and expired, or expires too far ahead (`signed_credential`); or it has a signed
        token's shape but this server's signature for none of the roots it holds (`_genuine`).

        For the refusal to tell its holder to mint a new one rather than that it is no token at all.
        Only a token this server signed has its expiry read: a forged one learns nothing of it. One
        signed the way segcast signed from 2026-12-03 to 12-05 (`_signed_unbound`) is named so: such
        links outlived restarts, and their holders are told why they stopped. Either is still refused.
        """
        bearer = _bearer(request)
        token = request.query.get("token") if bearer is None else bearer
        if token is None or not _has_signed_shape(token):
            return None
        credential = self._genuine(token)
        if credential is not None and credential.expires is not None:
            return _expiry_problem(credential.role, credential.expires, time.time())
        if credential is not None:
            return None
        if self._signed_unbound(token):
            return (
                "the signed token was minted by an earlier segcast (of 2026-12-03 to 2026-12-05), whose signed "
                "tokens this one no longer takes: they were not bound to the token they were minted with, "
                "so taking that token out of the settings could not revoke them"
            )
        return (
            "the signed token is not valid for this server (minted by another server or an earlier segcast, "
            "or with a token since taken out of its settings)"
        )

    def _genuine(self, token: str) -> Credential | None:
        """What a signed token would prove if it had not expired, or None if this server did not sign
        it or the configured token it was minted with is gone.

        Its signature is checked against every root still configured, each one, so the time taken
        does not tell which matched. A token signed by an older segcast (with the signing key itself,
        before tokens had roots) matches none: it is refused, since nothing in it tells whether the
        token it was minted with is still configured.
        """
        body, _, mac = token.rpartition(".")
        parts = body.split(".")
        if len(parts) != 3 or parts[0] != SIGNED_TOKEN_PREFIX:
            return None
        presented = _bytes(mac)
        found: bytes | None = None
        for root in self._roots():
            if hmac.compare_digest(presented, self._mac(body, root)):
                found = root
        role_name, expires = parts[1], parts[2]
        role = Role.__members__.get(role_name.upper())
        if found is None or role is None or not expires.isdigit():
            return None
        return Credential(role, int(expires), found)

    def _signed_unbound(self, token: str) -> bool:
        """Whether ``token`` is signed as segcast signed from fe89fd6 (2026-12-03 08:57) until 7c7b0e3
        (2026-12-05 02:51): with the signing key itself, bound to no root (`_mac` binds one).

        Only to name it in a refusal: it proves nothing, since nothing in it tells whether the token it
        was minted with is still configured. Telling it costs no secret: only the key's holder signs
        one. Tokens of 10ac628 itself (a key not derived by scrypt, from the admin tokens in clear,
        which the policy keeps only as digests) cannot be told from any other signature.
        """
        body, _, mac = token.rpartition(".")
        unbound = hmac.new(self.signing_key, _bytes(body), hashlib.sha256).digest()
        return hmac.compare_digest(_bytes(mac), base64.urlsafe_b64encode(unbound).rstrip(b"="))

    def _roots(self) -> list[bytes]:
        """The roots a signed token may have now: each configured token's digest, and `SERVER_ROOT`."""
        return [*dict.fromkeys(digest for digest, _ in self.token_digests), SERVER_ROOT]

    def _mac(self, body: str, root: bytes) -> bytes:
        """The signature of ``body`` for a token of ``root``, with a key of that root's own.

        The root's key is derived from the signing key, so no one who lacks that learns a thing
        about the configured token from a signed one: not even which it was.
        """
        key = hmac.new(self.signing_key, b"segcast signed-token root\n" + root, hashlib.sha256).digest()
        digest = hmac.new(key, _bytes(body), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=")


def _has_signed_shape(token: str) -> bool:
    """Whether ``token`` has a signed token's shape, ``s1.<viewer|admin>.<digits>.<signature>``, genuine or not."""
    parts = token.split(".")
    return (
        len(parts) == 4
        and parts[0] == SIGNED_TOKEN_PREFIX
        and parts[1].upper() in Role.__members__
        and parts[2].isdigit()
        and bool(parts[3])
    )


def max_ttl_s(role: Role) -> int:
    """The longest a signed token of ``role`` may be minted for (seconds)."""
    return SIGNED_ADMIN_TOKEN_MAX_TTL_S if role is Role.ADMIN else SIGNED_TOKEN_MAX_TTL_S


def _expiry_problem(role: Role, expires: int, now: float) -> str | None:
    """Why a signed token of ``role`` expiring at ``expires`` is refused at ``now``, or None if it holds
    (see `AccessPolicy.signed_credential`)."""
    if expires < now:
        return f"the signed token expired at {_utc(expires)}"
    if expires - now > max_ttl_s(role) + SIGNED_TOKEN_CLOCK_SKEW_S:
        return (
            f"the signed token expires at {_utc(expires)}, later than {role.name.lower()} tokens may last "
            f"({max_ttl_s(role) // 86400} days): it was minted while a clock was running fast"
        )
    return None


def _utc(unix_s: int) -> str:
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _signing_key(admin_tokens: Iterable[str]) -> bytes:
    """The key signed tokens are made with, from the admin tokens: no viewer knows it.

    Derived rather than random, so that a signed token in a dashboard's URL outlives a restart or an
    upgrade and is good on every node with the same admin tokens; changing them revokes every one.
    Derived slowly (scrypt, a few tens of ms once at start): anyone holding a signed token could
    otherwise test guesses of a short admin token offline at the speed of SHA-256.
    """
    material = "\n".join(sorted(set(admin_tokens)))
    return hashlib.scrypt(_bytes(material), salt=b"segcast signed-token key v1", n=2**14, r=8, p=1, dklen=32)


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
        raise _unauthorized(policy.signed_problem(request))
    if credential.role < needed:
        raise error(
            web.HTTPForbidden,
            f"this needs the {needed.name.lower()} role; the token given is a {credential.role.name.lower()}",
        )
    request[credential_key] = credential
    if credential.expires is None:
        return await handler(request)
    request[expires_key] = credential.expires
    return await _within_token_life(request, handler, credential.expires)


_cross_site_log_key = web.AppKey("cross_site_log", ThrottledCount)


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


def _unauthorized(signed_problem: str | None) -> web.HTTPException:
    """The 401 for a request without a credential that holds: a signed token refused where a new one
    would do (`AccessPolicy.signed_problem`) is told why, and how to get another."""
    if signed_problem is None:
        message = "a valid token is needed: send Authorization: Bearer <token>, or ?token=<signed token>"
    else:
        message = f"{signed_problem}; mint a new one with POST {TOKENS_PATH}"
    return error(web.HTTPUnauthorized, message, **{"WWW-Authenticate": 'Bearer realm="segcast"'})


#: What the request was let in with; absent under an open policy.
credential_key = web.RequestKey("credential", Credential)
#: When the signed token a request was let in with expires (Unix seconds); absent for other tokens.
expires_key = web.RequestKey("token_expires", int)
#: The response a request streams (prepared by its handler, as a WebSocket or MJPEG is).
_stream_key = web.RequestKey("token_stream", web.StreamResponse)


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
    the close frame. An MJPEG stream (or any other, or a WebSocket still in its handshake) cannot say
    why, so its connection is closed, which its handler notices within a second
    (`server.http.pictures`); its ``<img>`` keeps the last picture.
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
    request.transport.close()


async def _mint_token(request: web.Request) -> web.Response:
    """Mint a signed token for URLs, for the caller's own role or a lower one.

    The body is optional JSON: ``{"role": "viewer", "ttl_s": 3600}``. A caller who proves its role
    with a signed token gets one that expires no later than its own; ``ttl_s`` in the answer says
    how long the token given holds. It has the caller's root (`Credential.root`): taking the configured
    token behind the caller out of the settings revokes it too.
    """
    policy = request.app[policy_key]
    raw = await read_body(request)
    try:
        body = json.loads(raw or "{}", parse_constant=_no_constant)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, NaN, or nested beyond Python's limit
        body = None
    if not isinstance(body, dict) or set(body) - {"role", "ttl_s"}:
        raise _bad_request("the body must be a JSON object with optional 'role' and 'ttl_s'")
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
    token = policy.sign_until(role, expires, minted_by=caller)
    return web.json_response({"token": token, "role": role_name, "ttl_s": ttl_s})


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _bad_request(message: str) -> web.HTTPException:
    return error(web.HTTPBadRequest, message)


def is_cross_site(request: web.Request) -> bool:
    """Whether a browser says the request comes from a page of another origin than this server.

    Scheme is not compared: a proxy terminating TLS in front of segcast changes it, not the host.
    Clients that are not browsers send no ``Origin`` and are not cross-site.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    try:
        return origin == "null" or URL(origin).authority != URL(f"http://{request.host}").authority
    except ValueError:  # a malformed Origin or Host: nothing proves the request is this site's own
        return True


def is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def is_local_name(authority: str) -> bool:
    """Whether a ``Host`` header names this machine: a loopback address, ``localhost`` or ``*.localhost``
    (which browsers resolve to loopback themselves, so no DNS answer can redirect them)."""
    try:
        host = (URL(f"http://{authority}").host or "").rstrip(".").lower()
    except ValueError:  # not a host name at all
        return False
    return is_loopback(host) or host.endswith(".localhost")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (``localhost`` counts)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _split_env(value: str) -> list[str]:
    return [token.strip() for token in value.split(",") if token.strip()]


def _bearer(request: web.Request) -> str | None:
    """The token of the request's ``Authorization: Bearer <token>`` header, if it has one."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return presented.strip() if scheme.lower() == "bearer" and presented else None


def _digest(token: str) -> bytes:
    return hashlib.sha256(_bytes(token)).digest()


def _bytes(text: str) -> bytes:
    """``text`` as bytes, whatever it holds: a presented token is attacker's text.

    aiohttp decodes header bytes that are not UTF-8 to lone surrogates, and a query string may hold
    any character; neither may turn a refusal into an exception (``str.encode`` and
    ``hmac.compare_digest`` on non-ASCII text both raise). The same bytes come back from the same text,
    so a configured token still matches itself.
    """
    return text.encode("utf-8", "surrogatepass")
