"""WebRTC settings: which ICE servers peers are told about, and how much a peer may ask of us.

On a LAN both ends reach each other by their host addresses, so the default is no STUN or TURN at
all: nothing leaves the network and no answer waits on an unreachable server. Other networks need a
STUN server (to learn the public address) or a TURN relay, given as URLs with optional credentials
in `ICE_SERVERS_ENV`, like the access tokens (they are secrets, which do not belong in a flag).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from aiortc import RTCConfiguration, RTCIceServer

from server.config import ConfigError

#: Peers at once, publishers and players together: each costs a decoder or encoder thread.
MAX_PEERS = 16
#: A browser's offer is a few KiB; anything much bigger is not an offer we want to parse.
MAX_OFFER_BYTES = 64 * 1024
#: A publisher that sends no frame for this long is gone (aiortc's own consent checks take ~30 s).
PUBLISH_IDLE_TIMEOUT_S = 5.0
ICE_SCHEMES = ("stun", "stuns", "turn", "turns")
#: Space- or comma-separated ICE server URLs, e.g. ``stun:stun.example.org turn:me:secret@turn.example.org``.
ICE_SERVERS_ENV = "SEGCAST_ICE_SERVERS"


class IceServerError(ConfigError):
    """An ICE server URL cannot be used; the message says what form is expected."""


@dataclass(frozen=True, slots=True)
class IceServer:
    """One STUN or TURN server. ``username``/``credential`` are for TURN and are never logged."""

    url: str
    username: str | None = None
    credential: str | None = None

    @classmethod
    def parse(cls, value: str) -> IceServer:
        """``stun:host:port`` or ``turn:user:password@host:port?transport=udp`` (RFC 7064/7065 URLs).

        Credentials written into the URL are split off, because ICE URLs carry none of their own.
        """
        scheme, sep, rest = value.partition(":")
        if not sep or scheme.lower() not in ICE_SCHEMES or not rest:
            raise IceServerError(
                f"ICE server {_masked(value)!r}: expected stun:HOST[:PORT] or turn:USER:PASS@HOST[:PORT]"
            )
        userinfo, at, address = rest.rpartition("@")
        if not at:
            return cls(value)
        username, colon, credential = userinfo.partition(":")
        if not username or not colon:
            raise IceServerError(f"ICE server {_masked(value)!r}: credentials must be USER:PASS@")
        return cls(f"{scheme}:{address}", unquote(username), unquote(credential))

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
    """The URL without its credentials, for error messages and logs."""
    _, at, address = value.rpartition("@")
    return f"{value.partition(':')[0]}:***@{address}" if at else value


@dataclass(frozen=True, slots=True)
class WebRTCConfig:
    ice_servers: tuple[IceServer, ...] = ()
    max_peers: int = MAX_PEERS
    max_offer_bytes: int = MAX_OFFER_BYTES
    publish_idle_timeout_s: float = PUBLISH_IDLE_TIMEOUT_S

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
