"""The token policy: what a presented token proves, how signed tokens are made and checked, and
when nobody need present one.

Apart from the middleware that applies it (`server.http.access.auth`): it is the part that holds
secrets and decides, and it is built and checked without a web application too (at start-up,
`server.deploy.split`), so it can be read and tested on its own. What it reads of a request (its
bearer token, whether a host is loopback) is `server.http.access.requests`'s.

Configured tokens are never compared directly: their SHA-256 digests are compared in constant time
against the digest of what was presented, and every configured token is checked, so neither the
timing nor the order of the checks tells which one nearly matched.

A signed token may be *scoped* (`Scope`): limited to some streams, for a dashboard's link, or to stored
event snapshots, for the history page's ``<img>``. Its scope is written in it and signed with the rest
(``s2.<role>.<expiry>.<scope>.<signature>``), so it can be read in a URL and changed by no one; an
unscoped one keeps the shape ``s1.<role>.<expiry>.<signature>``. Which routes a scope opens is the
middleware's (`server.http.access.auth`).

The policy is *open* (nobody is asked for anything) only where the user chose that: bound to a
loopback address with no tokens configured, or ``auth = "off"`` said explicitly. Binding anywhere
else with no tokens refuses to start, naming the settings that fix it; so does ``auth = "off"`` with
tokens given (in the environment, say), which would otherwise be dropped without a word.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

from server.config import STREAM_ID_PATTERN
from server.http.access.requests import bearer_token, is_loopback

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
#: and the token was minted by a clock running fast (see `AccessPolicy.check_signed`).
SIGNED_TOKEN_CLOCK_SKEW_S = 300
SIGNED_TOKEN_DEFAULT_TTL_S = 3600
SIGNED_TOKEN_PREFIX = "s1"
#: The prefix of a scoped signed token, whose scope is written between its expiry and its signature.
SCOPED_TOKEN_PREFIX = "s2"
#: The most streams one scoped token may name: a dashboard's link is for a camera or a few, and every id
#: (64 characters at most) lengthens each URL the token is in; this many keeps a token near 1 KiB at most.
MAX_SCOPE_STREAMS = 16
#: Between a scope's kind and its stream ids: unreserved in a URL, and in no stream id nor a token's fields.
SCOPE_SEPARATOR = "~"
#: The root of a signed token minted on no configured token's behalf: under an open policy, or by a
#: program holding the policy. It holds as long as the signing key; a configured token's root (the
#: SHA-256 of the token, 32 bytes) can never be empty.
SERVER_ROOT = b""


class AuthConfigError(ValueError):
    """The access settings cannot be used as given; the message names the setting."""


class Role(enum.IntEnum):
    """Ordered so that a higher role includes every right of a lower one."""

    VIEWER = 1
    ADMIN = 2


class ScopeKind(enum.Enum):
    """What a scoped token is for, as its scope is written in it (`Scope.text`)."""

    #: A dashboard's link: its streams' pictures, readings, details, embed, live view and WebRTC play.
    STREAMS = "streams"
    #: The history page's ``<img>``: stored events' snapshots, of every stream, and nothing else.
    EVENT_SNAPSHOTS = "snapshots"


@dataclass(frozen=True, slots=True)
class Scope:
    """What of a viewer's rights a scoped signed token keeps: those its kind names, of ``streams`` alone
    for `ScopeKind.STREAMS` (sorted, distinct; ids no stream has yet are fine: a camera may come later).

    Build one with `of_streams` or `EVENT_SNAPSHOTS`; `read` takes one back from a token's text.
    """

    kind: ScopeKind
    streams: tuple[str, ...] = ()

    @classmethod
    def of_streams(cls, streams: Iterable[str]) -> Scope:
        """The scope of ``streams``: ids as `server.config.check_stream_id` takes them, 1 to `MAX_SCOPE_STREAMS`
        once duplicates go (ValueError otherwise: the minting route checks each first, to name it)."""
        ids = tuple(sorted(set(streams)))
        if not 1 <= len(ids) <= MAX_SCOPE_STREAMS or not all(STREAM_ID_PATTERN.match(i) for i in ids):
            raise ValueError(f"a scope names 1 to {MAX_SCOPE_STREAMS} stream ids")
        return cls(ScopeKind.STREAMS, ids)

    @classmethod
    def read(cls, text: str) -> Scope | None:
        """The scope a token's scope field ``text`` writes (`text`), or None if it writes none."""
        kind_name, *streams = text.split(SCOPE_SEPARATOR)
        kind = next((kind for kind in ScopeKind if kind.value == kind_name), None)
        if kind is ScopeKind.EVENT_SNAPSHOTS and not streams:
            return EVENT_SNAPSHOTS
        if kind is not ScopeKind.STREAMS or streams != sorted(set(streams)):
            return None
        try:
            return cls.of_streams(streams)
        except ValueError:
            return None

    @property
    def text(self) -> str:
        """The scope as a token writes it: ``streams~front~gate``, or ``snapshots``."""
        return SCOPE_SEPARATOR.join((self.kind.value, *self.streams))

    def to_json(self) -> dict[str, object]:
        """The scope as ``POST /api/tokens`` is asked for it and answers it."""
        if self.kind is ScopeKind.EVENT_SNAPSHOTS:
            return {"event_snapshots": True}
        return {"streams": list(self.streams)}

    def describe(self) -> str:
        """The scope in the words of a refusal: ``stream front``, ``streams front, gate``, ``event snapshots``."""
        if self.kind is ScopeKind.EVENT_SNAPSHOTS:
            return "event snapshots"
        return f"stream{'s' if len(self.streams) > 1 else ''} {', '.join(self.streams)}"


#: The history page's scope: stored events' snapshots, every stream's.
EVENT_SNAPSHOTS = Scope(ScopeKind.EVENT_SNAPSHOTS)


class SignedRefusal(enum.Enum):
    """Why a presented token proves nothing as a signed token (`AccessPolicy.check_signed`)."""

    #: Not shaped ``s1.<viewer|admin>.<digits>.<signature>`` nor ``s2.<viewer|admin>.<digits>.<scope>.<signature>``:
    #: no signed token at all (a configured one, a typo).
    MALFORMED = "malformed"
    #: This server's signature for none of the roots it holds: forged, minted by another server, or with a
    #: configured token since taken out of the settings. The signature cannot tell which: no root is written in it.
    BAD_SIGNATURE = "bad_signature"
    #: Signed with the signing key itself, bound to no root, as segcast signed from 2026-12-03 to 12-05
    #: (`AccessPolicy._signed_unbound`): a key this server no longer signs with.
    UNBOUND = "unbound"
    #: This server's, and its expiry has passed.
    EXPIRED = "expired"
    #: This server's, expiring later than its role's longest life (`max_ttl_s`, give or take
    #: `SIGNED_TOKEN_CLOCK_SKEW_S`): minted while a clock ran fast.
    EXPIRES_TOO_LATE = "expires_too_late"

    @property
    def minted_here(self) -> bool:
        """Whether the token is this server's, refused for its expiry alone: a new one is the cure."""
        return self in (SignedRefusal.EXPIRED, SignedRefusal.EXPIRES_TOO_LATE)


@dataclass(frozen=True, slots=True)
class Credential:
    """What a presented token proves: a role, and until when (Unix seconds) if it is a signed token.

    ``expires`` is None for a configured token, which holds until it is taken out of the settings.
    ``scope`` is a scoped signed token's (`Scope`), None for any other: those have all their role's rights.
    ``root`` is the digest of the configured token it goes back to: the token itself, or the one the
    signed token was minted with, through any chain of signed tokens (`SERVER_ROOT` for none). A
    token minted with this credential has the same root, and holds only while that root is configured.
    """

    role: Role
    expires: int | None = None
    root: bytes = field(default=SERVER_ROOT, repr=False)
    scope: Scope | None = None


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
        scope: Scope | None = None,
    ) -> str:
        """A URL-safe token granting ``role`` until ``ttl_s`` seconds from now (see `sign_until`)."""
        if not 1 <= ttl_s <= max_ttl_s(role):
            raise ValueError(f"ttl_s of a {role.name.lower()} token must be between 1 and {max_ttl_s(role)}")
        return self.sign_until(role, int((time.time() if now is None else now) + ttl_s), minted_by, scope)

    def sign_until(
        self, role: Role, expires: int, minted_by: Credential | None = None, scope: Scope | None = None
    ) -> str:
        """A URL-safe token granting ``role``, within ``scope`` if one is given, until ``expires`` (Unix
        seconds), while ``minted_by``'s root is configured (with None, while the signing key holds: see
        `SERVER_ROOT`).

        The root is not written in the token but signed into it (see `_mac`): a token has the shape
        ``s1.<role>.<expiry>.<signature>`` (``s2.<role>.<expiry>.<scope>.<signature>`` scoped), and a URL
        never tells which configured token it came from.
        """
        if scope is None:
            body = f"{SIGNED_TOKEN_PREFIX}.{role.name.lower()}.{expires}"
        else:
            body = f"{SCOPED_TOKEN_PREFIX}.{role.name.lower()}.{expires}.{scope.text}"
        root = SERVER_ROOT if minted_by is None else minted_by.root
        return f"{body}.{self._mac(body, root).decode()}"

    def role_of_signed(self, token: str, now: float | None = None) -> Role | None:
        """The role a signed token grants, or None if it is forged, malformed or expired."""
        credential = self.signed_credential(token, now)
        return None if credential is None else credential.role

    def signed_credential(self, token: str, now: float | None = None) -> Credential | None:
        """What a signed token proves, or None if it is refused for any reason (`check_signed`)."""
        checked = self.check_signed(token, now)
        return None if isinstance(checked, SignedRefusal) else checked

    def check_signed(self, token: str, now: float | None = None) -> Credential | SignedRefusal:
        """What a signed token proves, or why it proves nothing: one reading for both the refusal's wording
        and the reason it is counted under (`server.http.access.auth`).

        Its signature is checked before its expiry is read, so a forged token learns nothing of it. A token
        expiring further ahead than its role's longest life is refused (`SignedRefusal.EXPIRES_TOO_LATE`):
        no correct clock mints one, and a one-hour admin token minted while the clock was two years ahead
        would otherwise hold for two years once the clock is set right.
        """
        written = _SignedText.read(token)
        if written is None:
            return SignedRefusal.MALFORMED
        root = self._root_of(written)
        if root is None:
            return SignedRefusal.UNBOUND if self._signed_unbound(token) else SignedRefusal.BAD_SIGNATURE
        refusal = _expiry_refusal(written.role, written.expires, time.time() if now is None else now)
        return Credential(written.role, written.expires, root, written.scope) if refusal is None else refusal

    def credential_of(self, request: web.Request) -> Credential | None:
        """What a request proves, from its bearer header or its signed ``token`` parameter.

        A bearer may be a configured token or a signed one: a person handed a signed token pastes it
        where the viewer asks for a token, and the viewer sends that as a bearer.
        """
        bearer = bearer_token(request)
        if bearer is not None:
            return self.token_credential(bearer) or self.signed_credential(bearer)
        signed = request.query.get("token")
        if signed:
            return self.signed_credential(signed)
        return None

    def signed_problem(self, request: web.Request) -> str | None:
        """Why the signed token ``request`` presents is refused, where minting a new one is the fix: any
        `SignedRefusal` of `check_signed` but `SignedRefusal.MALFORMED`, in words (`_refusal_text`).

        For the refusal to tell its holder to mint a new one rather than that it is no token at all.
        Only a token this server signed has its expiry read: a forged one learns nothing of it. One
        signed the way segcast signed from 2026-12-03 to 12-05 (`_signed_unbound`) is named so: such
        links outlived restarts, and their holders are told why they stopped. Either is still refused.
        """
        bearer = bearer_token(request)
        token = request.query.get("token") if bearer is None else bearer
        if token is None:
            return None
        checked = self.check_signed(token)
        return _refusal_text(checked, token) if isinstance(checked, SignedRefusal) else None

    def _root_of(self, written: _SignedText) -> bytes | None:
        """The root ``written`` is signed for, or None if this server did not sign it or the configured
        token it was minted with is gone.

        Its signature is checked against every root still configured, each one, so the time taken
        does not tell which matched. A token signed by an older segcast (with the signing key itself,
        before tokens had roots) matches none: it is refused, since nothing in it tells whether the
        token it was minted with is still configured.
        """
        presented = _bytes(written.mac)
        found: bytes | None = None
        for root in self._roots():
            if hmac.compare_digest(presented, self._mac(written.body, root)):
                found = root
        return found

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


#: The most digits a signed token's expiry (Unix seconds) is read with: more is no token this server made,
#: and past 4300 of them int() refuses to read it at all.
MAX_EXPIRY_DIGITS = 12


@dataclass(frozen=True, slots=True)
class _SignedText:
    """What a token with a signed token's shape says, genuine or not: read before its signature is checked,
    and trusted only once that holds (`AccessPolicy.check_signed`)."""

    body: str
    mac: str
    role: Role
    expires: int
    scope: Scope | None

    @classmethod
    def read(cls, token: str) -> _SignedText | None:
        """``token`` read as ``s1.<viewer|admin>.<digits>.<signature>`` or
        ``s2.<viewer|admin>.<digits>.<scope>.<signature>``; None for any other shape."""
        body, _, mac = token.rpartition(".")
        prefix, *fields = body.split(".")
        scoped = prefix == SCOPED_TOKEN_PREFIX and len(fields) == 3
        if not scoped and (prefix != SIGNED_TOKEN_PREFIX or len(fields) != 2):
            return None
        scope = Scope.read(fields[2]) if scoped else None
        role, expires = Role.__members__.get(fields[0].upper()), fields[1]
        readable = expires.isascii() and expires.isdigit() and len(expires) <= MAX_EXPIRY_DIGITS
        if (scoped and scope is None) or role is None or not readable or not mac:
            return None
        return cls(body, mac, role, int(expires), scope)


def max_ttl_s(role: Role) -> int:
    """The longest a signed token of ``role`` may be minted for (seconds)."""
    return SIGNED_ADMIN_TOKEN_MAX_TTL_S if role is Role.ADMIN else SIGNED_TOKEN_MAX_TTL_S


def _expiry_refusal(role: Role, expires: int, now: float) -> SignedRefusal | None:
    """Why a genuine signed token of ``role`` expiring at ``expires`` is refused at ``now``, or None if it
    holds (see `AccessPolicy.check_signed`)."""
    if expires < now:
        return SignedRefusal.EXPIRED
    if expires - now > max_ttl_s(role) + SIGNED_TOKEN_CLOCK_SKEW_S:
        return SignedRefusal.EXPIRES_TOO_LATE
    return None


def _refusal_text(refusal: SignedRefusal, token: str) -> str | None:
    """What a 401 tells the holder of ``token``, refused for ``refusal``; None for a token with no signed
    token's shape, which is no signed token (the caller says what is). Only a token this server signed has
    its expiry told: a forged one learns nothing of it."""
    written = _SignedText.read(token)
    if refusal is SignedRefusal.MALFORMED or written is None:
        return None
    if refusal is SignedRefusal.UNBOUND:
        return (
            "the signed token was minted by an earlier segcast (of 2026-12-03 to 2026-12-05), whose signed "
            "tokens this one no longer takes: they were not bound to the token they were minted with, "
            "so taking that token out of the settings could not revoke them"
        )
    if not refusal.minted_here:
        return (
            "the signed token is not valid for this server (minted by another server or an earlier segcast, "
            "or with a token since taken out of its settings)"
        )
    expires, role = written.expires, written.role
    if refusal is SignedRefusal.EXPIRED:
        return f"the signed token expired at {_utc(expires)}"
    return (
        f"the signed token expires at {_utc(expires)}, later than {role.name.lower()} tokens may last "
        f"({max_ttl_s(role) // 86400} days): it was minted while a clock was running fast"
    )


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


def _split_env(value: str) -> list[str]:
    return [token.strip() for token in value.split(",") if token.strip()]


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
