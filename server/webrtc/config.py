"""WebRTC settings: which ICE servers peers are told about, and how much a peer may ask of us.

On a LAN both ends reach each other by their host addresses, so the default is no STUN or TURN at
all: nothing leaves the network and no answer waits on an unreachable server. Other networks need a
STUN server (to learn the public address) or a TURN relay, given as URLs with optional credentials
in `ICE_SERVERS_ENV`, like the access tokens (they are secrets, which do not belong in a flag).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcicetransport import parse_stun_turn_uri

from server.config_values import ConfigError

#: Peers at once, publishers and players together: each costs a decoder or encoder thread.
MAX_PEERS = 16
#: Players of those: the other slots are kept for publishers, which have no WebSocket to fall back to,
#: so that however many players there are, a camera can still be published.
MAX_PLAYERS = 12
#: Players of those that have not connected yet: a client sending offers it never completes holds these
#: (for `PLAY_CONNECT_TIMEOUT_S` each) and no more, and players that did connect keep the rest. A
#: browser connects within a second or two on a LAN, so a few are plenty for clients offering together.
MAX_CONNECTING_PLAYERS = 6
#: Players from one client address (loopback not counted: behind a reverse proxy every peer comes
#: from it), so that one client cannot take every slot; a viewer refused falls back to the WebSocket.
MAX_PEERS_PER_ADDRESS = 8
#: A browser's offer is a few KiB; anything much bigger is not an offer we want to parse.
MAX_OFFER_BYTES = 64 * 1024
#: A publisher from which no video packet came for this long is gone (aiortc's own consent checks take
#: ~30 s). Packets, not decoded frames: after an outage frames lag the packets by a keyframe (`pump`).
PUBLISH_IDLE_TIMEOUT_S = 5.0
#: A player not connected by then has gone. aiortc fails ICE on its own only for offers that say
#: ``a=end-of-candidates``, which Chrome never writes; the bundled viewer gives up after 3 s.
PLAY_CONNECT_TIMEOUT_S = 15.0
ICE_SCHEMES = ("stun", "stuns", "turn", "turns")
#: Space- or comma-separated ICE server URLs, e.g. ``stun:stun.example.org turn:me:secret@turn.example.org``;
#: a space or comma in a user name or password is written ``%20`` or ``%2C`` (they are percent-decoded).
ICE_SERVERS_ENV = "SEGCAST_ICE_SERVERS"
#: A host name or IPv4 address: aiortc's URL parser reads neither IPv6 nor anything after a ``/``.
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
#: The transports aiortc uses a TURN server over; it silently skips a server with any other.
_TURN_TRANSPORTS = {"turn": ("udp", "tcp"), "turns": ("tcp",)}


class IceServerError(ConfigError):
    """An ICE server URL cannot be used; the message says what form is expected."""


@dataclass(frozen=True, slots=True)
class IceServer:
    """One STUN or TURN server. ``username``/``credential`` are for TURN and are never logged."""

    url: str
    username: str | None = None
    credential: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, value: str) -> IceServer:
        """``stun:host:port`` or ``turn:user:password@host:port?transport=udp`` (RFC 7064/7065 URLs).

        Credentials written into the URL are split off, because ICE URLs carry none of their own. The
        rest is checked here with aiortc's own parser, which every offer runs it through: a URL it
        refuses would otherwise fail each offer with a 400 that blames the client.
        """
        expected = "expected stun:HOST[:PORT] or turn:USER:PASS@HOST[:PORT]"
        scheme, sep, rest = value.partition(":")
        scheme = scheme.lower()  # case-insensitive (RFC 3986), but aiortc only reads it in lower case
        if not sep or scheme not in ICE_SCHEMES or not rest:
            raise IceServerError(f"ICE server {_masked(value)!r}: {expected}")
        userinfo, at, address = rest.rpartition("@")
        if scheme in _TURN_TRANSPORTS and not at:
            raise IceServerError(
                f"ICE server {_masked(value)!r}: a TURN server needs USER:PASS@ "
                "(write a space or comma in them as %20 or %2C: the list is split on both)"
            )
        server = cls(f"{scheme}:{rest}")
        if at:
            username, colon, credential = userinfo.partition(":")
            if not username or not colon:
                raise IceServerError(f"ICE server {_masked(value)!r}: credentials must be USER:PASS@")
            server = cls(f"{scheme}:{address}", unquote(username), unquote(credential))
        try:
            parsed = parse_stun_turn_uri(server.url)
        except ValueError as exc:
            raise IceServerError(f"ICE server {_masked(value)!r}: {exc}; {expected}") from None
        if not _HOST.fullmatch(parsed["host"]) or not 0 < parsed["port"] < 65536:
            raise IceServerError(f"ICE server {_masked(value)!r}: not a host name or IPv4 address and port; {expected}")
        if scheme in _TURN_TRANSPORTS and parsed["transport"] not in _TURN_TRANSPORTS[scheme]:
            transports = " or ".join(_TURN_TRANSPORTS[scheme])
            raise IceServerError(f"ICE server {_masked(value)!r}: {scheme} works over {transports} only")
        return server

    def describe(self) -> str:
        return f"{self.url} (as {self.username})" if self.username else self.url

    def to_aiortc(self) -> RTCIceServer:
        return RTCIceServer(urls=self.url, username=self.username, credential=self.credential)

    def to_json(self) -> dict[str, object]:
        """The browser's RTCIceServer: a TURN relay is only usable by a client that has the credential."""
        entry: dict[str, object] = {"urls": [self.url]}
        if self.username is not None:
            entry["username"] = self.username
            entry["credential"] = self.credential
        return entry


def _masked(value: str) -> str:
    """``value`` as error messages show it: whatever may be a credential is ``***``.

    That is everything before an ``@`` (USER:PASS), and all of a value without one unless it is a
    STUN URL: a TURN URL or any other word without an ``@`` may be the start or the middle of a
    password with a space or comma in it, split there as `ICE_SERVERS_ENV` is (``turn:alice:se``
    of ``turn:alice:se,cret@host``).
    """
    scheme, colon, _ = value.partition(":")
    prefix = f"{scheme}:" if colon and scheme.lower() in ICE_SCHEMES else ""
    if "@" in value:
        return f"{prefix}***@{value.rpartition('@')[2]}"
    return value if prefix.lower() in ("stun:", "stuns:") else f"{prefix}***"


@dataclass(frozen=True, slots=True)
class WebRTCConfig:
    ice_servers: tuple[IceServer, ...] = ()
    max_peers: int = MAX_PEERS
    max_players: int = MAX_PLAYERS
    max_connecting_players: int = MAX_CONNECTING_PLAYERS
    max_peers_per_address: int = MAX_PEERS_PER_ADDRESS
    max_offer_bytes: int = MAX_OFFER_BYTES
    publish_idle_timeout_s: float = PUBLISH_IDLE_TIMEOUT_S
    play_connect_timeout_s: float = PLAY_CONNECT_TIMEOUT_S

    @classmethod
    def from_urls(cls, urls: Iterable[str]) -> WebRTCConfig:
        """Settings with these ICE server URLs; raises `IceServerError` naming the bad one."""
        return cls(tuple(IceServer.parse(url) for url in urls))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WebRTCConfig:
        """Settings from `ICE_SERVERS_ENV` (none when unset); the error names the variable."""
        value = environ.get(ICE_SERVERS_ENV, "").strip()
        try:
            return cls.from_urls(re.split(r"[\s,]+", value) if value else ())
        except IceServerError as exc:
            raise IceServerError(f"{ICE_SERVERS_ENV}: {exc}") from None

    def rtc_configuration(self) -> RTCConfiguration:
        """An explicit list, even when empty: left unset, aiortc falls back to a public Google STUN server."""
        return RTCConfiguration(iceServers=[server.to_aiortc() for server in self.ice_servers])
