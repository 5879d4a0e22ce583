"""Which sources a remote caller may ask for, so that the API cannot be turned against the host.

A source URI is an instruction to open something on this machine's behalf. The owner writes the
config file and the command line, so those open anything (but a stream the API saved there, whose
camera stays held to ``deny_networks`` and file to ``media_dirs``: `server.config.StreamConfig.from_api`);
a request to the API (adding a stream, changing its URI) comes from the network and is held to a
`SourcePolicy`:

- network sources only with an allowed scheme (``[server] source_schemes``);
- local files only when ``[server] media_dirs`` names folders, and only inside them, judged on the
  real path after symbolic links and ``..`` are resolved, so neither can step outside: when the stream
  is added and again each time its file is opened (`SourcePolicy.check_file`), a loop's every pass too;
- local devices (``/dev/video0``, ``/dev/v4l/by-id/...``, ``webcam:0``) only with ``[server] allow_devices
  = true``; a device under another name reads as a file, held to ``media_dirs`` and never played as one;
- no ``#ca_file=`` (the CA file a TLS camera's certificate is checked against): it names a file on this
  machine, and whether the stream could read it would tell the caller whether it exists;
- no forced FFmpeg demuxer beyond those a camera needs (``#format=``), since some demuxers (concat,
  playlists) would read further URLs or files named inside what the camera sends; one FFmpeg does not
  have at all is no refusal but a mistake (`UnusableSource`);
- no network source whose host is, or resolves to, an address in ``[server] deny_networks``
  (link-local and cloud metadata addresses by default, where a cloud machine's credentials are
  served): checked when the stream is added and again before each connection, since a name may
  resolve differently later, and for each HTTP redirect the camera answers with, which segcast follows
  itself, checked, in FFmpeg's stead (`server.sources.redirects`). FFmpeg resolves the name once more
  itself, and follows the URLs inside an HLS playlist, and their redirects, unchecked: the list narrows
  what the API reaches, it is not a firewall.

A refusal never says whether a file exists, and never repeats a password from the URI.

Most of a check reads the URI alone (`SourcePolicy.check_text`). What is left waits for the file
system (a file's real path) or the name server (a camera's host name), which on a hung network share
is for ever: `server.http.access.source_checks` runs that part in threads of its own, within a time limit.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import av.format

from server.sources.base import SourceError
from server.sources.file import camera_address_hint, check_file_url_host, file_path
from server.sources.network import SCHEMES as NETWORK_SCHEMES
from server.sources.uri import certificate_options, mask_uri
from server.sources.webcam import is_webcam

#: Schemes the API accepts unless the config file says otherwise: cameras and streams, and the
#: generated test scene (which reads nothing).
DEFAULT_SOURCE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "scene")
#: Every scheme a config file may allow. Local files are not a scheme: ``media_dirs`` allows them.
KNOWN_SOURCE_SCHEMES = frozenset({*NETWORK_SCHEMES, "scene"})
#: FFmpeg demuxers a camera's ``#format=`` may force from the API: single live streams only.
SAFE_FORMATS = frozenset({"mpjpeg", "mjpeg", "h264", "hevc", "mpegts", "flv", "rtsp", "matroska", "webm"})
#: Longer URIs are refused outright: no camera needs them, and FFmpeg would receive them whole.
MAX_URI_CHARS = 2048
#: Where the API may not send a camera connection unless the config file says otherwise: link-local
#: addresses (169.254.169.254 serves the instance credentials of AWS, GCP, Azure and others), AWS's
#: IPv6 metadata address and Alibaba Cloud's. Cameras on the LAN and on this machine stay reachable.
DEFAULT_DENY_NETWORKS = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32")

#: Why a file is refused while ``media_dirs`` names no folder, after the file's name.
NO_MEDIA_DIRS = (
    "local files cannot be opened through the API; put the folders that may be played in [server] media_dirs "
    "of a config file and start segcast serve --config FILE (or give the file with --source at start)"
)
#: IPv6 prefixes whose last 32 bits are an IPv4 address a connection reaches: IPv4-compatible (``::a.b.c.d``,
#: deprecated, still routed by some stacks) and NAT64's well-known prefix (RFC 6052, ``64:ff9b::a.b.c.d``).
#: 6to4 (``2002:AABB:CCDD::``) carries its IPv4 address higher up: `ipaddress` reads it (``sixtofour``).
EMBEDDED_IPV4_NETWORKS = (ipaddress.IPv6Network("::/96"), ipaddress.IPv6Network("64:ff9b::/96"))
#: Characters that end a line or move the cursor in a terminal or log viewer: C0 controls, DEL, C1 controls
#: (CSI 0x9B starts an escape sequence, NEL 0x85 ends a line), the line and paragraph separators, and the
#: bidirectional controls, which show text in another order than it is stored.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Networks from CIDR text (``10.0.0.0/8``, ``fe80::/10``, a bare address); ValueError names a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError(f"expected addresses or networks such as 169.254.0.0/16, got {value!r}") from None
    return tuple(networks)


class SourceRefused(ValueError):
    """The caller may not open this source; the message says which setting would allow it. It starts
    with ``body.uri``, as a 400 for the URI does, but for an address in ``deny_networks``: that one
    names the host, and is also a stream's error when it connects (`StreamManager`)."""


class UnusableSource(ValueError):
    """The URI names nothing that could be opened (too long, control characters, no URI at all, a scheme
    segcast has no source for, a file name holding a NUL character): the request is wrong whatever the
    settings, where `SourceRefused` says a setting forbids it. The message names no field: the caller
    knows where the URI came from."""


@dataclass(frozen=True, slots=True)
class SourcePolicy:
    """What the API may open. The default allows network cameras and scenes, no files, no devices."""

    schemes: frozenset[str] = frozenset(DEFAULT_SOURCE_SCHEMES)
    media_dirs: tuple[Path, ...] = ()
    allow_devices: bool = False
    deny_networks: tuple[Network, ...] = field(default_factory=lambda: parse_networks(DEFAULT_DENY_NETWORKS))

    @classmethod
    def of(
        cls,
        schemes: Iterable[str],
        media_dirs: Iterable[Path],
        allow_devices: bool,
        deny_networks: Iterable[str] = DEFAULT_DENY_NETWORKS,
    ) -> SourcePolicy:
        """A policy with ``media_dirs`` resolved now, so a later change of directory cannot widen it."""
        return cls(
            frozenset(s.lower() for s in schemes),
            tuple(p.resolve() for p in media_dirs),
            allow_devices,
            parse_networks(deny_networks),
        )

    def check(self, uri: str) -> None:
        """Raise `SourceRefused` unless a remote caller may open ``uri``, `UnusableSource` if nobody could.

        Blocks while a file's real path or a camera's host name is looked up: call it off the event loop.
        """
        lookup = self.check_text(uri)
        if lookup is not None:
            lookup()

    def check_text(self, uri: str) -> Callable[[], None] | None:
        """`check` as far as ``uri``'s text tells, and the rest of it, or None where nothing is left.

        Raises as `check` does for all it decides from the text alone: every scheme, device and option
        refused, a scene, a webcam, a camera given by its address. Never waits for anything, so it may
        run on the event loop. The rest, returned to call, waits for the file system (a file's real
        path) or the name server (a camera's host name) and raises `SourceRefused` in its turn.
        """
        if len(uri) > MAX_URI_CHARS:  # before anything reads it: its length alone refuses it
            raise UnusableSource(f"at most {MAX_URI_CHARS} characters")
        shown = mask_uri(uri)[:200]
        if CONTROL_CHARACTERS.search(uri):
            raise UnusableSource("control characters are not allowed")
        if is_webcam(uri):
            if not self.allow_devices:
                raise SourceRefused(
                    f"body.uri: {shown!r}: local devices cannot be opened through the API; "
                    "set [server] allow_devices = true in the config file to allow it"
                )
            return None
        if hint := camera_address_hint(uri):  # a relative path or an unknown scheme: refused anyway
            raise UnusableSource(f"{shown!r}: {hint}")
        try:
            parts = urlsplit(uri)
        except ValueError:
            raise UnusableSource(f"{shown!r}: not a valid URI") from None
        scheme = parts.scheme.lower()
        is_path = scheme == "" or (len(scheme) == 1 and uri[1:3] in (":\\", ":/"))
        if scheme == "file" or is_path:
            return self._check_file(uri, scheme == "file", shown)
        allowed = ", ".join(sorted(self.schemes)) or "none"
        if scheme not in KNOWN_SOURCE_SCHEMES:  # concat:, data:, ftp://: no setting lets segcast open them
            raise UnusableSource(
                f"{shown!r}: segcast has no source for the scheme {scheme!r} (the API allows: {allowed})"
            )
        if scheme not in self.schemes:
            raise SourceRefused(
                f"body.uri: {shown!r}: the scheme {scheme!r} is not allowed through the API (allowed: {allowed}; "
                "see [server] source_schemes)"
            )
        _check_format(dict(parse_qsl(uri.partition("#")[2], keep_blank_values=True)).get("format", ""), shown)
        if certificate_options(uri).ca_file:
            raise SourceRefused(
                f"body.uri: {shown!r}: ca_file names a file on the server, which the API may not choose; "
                "give #tls_verify=1 to check the camera against the system's CAs, or set ca_file for the "
                "stream in the config file"
            )
        try:
            host = parts.hostname
        except ValueError:
            raise UnusableSource(f"{shown!r}: not a valid URI") from None
        if not host or not self.deny_networks:
            return None
        if _is_address(host):  # nothing to look up
            self.check_host(host)
            return None
        return functools.partial(self.check_host, host)

    def check_host(self, host: str) -> None:
        """Raise `SourceRefused` if ``host`` is, or now resolves to, an address in `deny_networks`.

        Blocks while the name is resolved: call it off the event loop. A name that does not resolve
        passes (nothing can be reached through it now); it is checked again at each connection.
        """
        if not self.deny_networks:
            return
        for address in _addresses(host):
            if any(address in network for network in self.deny_networks):
                shown = host if host == str(address) else f"{host} ({address})"
                raise SourceRefused(
                    f"{shown} is in [server] deny_networks (link-local and cloud metadata addresses by default); "
                    "the config file may change that list"
                )

    def _check_file(self, uri: str, is_file_url: bool, shown: str) -> Callable[[], None]:
        if is_file_url:
            try:
                check_file_url_host(uri)
            except SourceError as exc:  # file://tmp/a.mp4, whatever the folders allowed
                raise UnusableSource(str(exc)) from None
        if not self.media_dirs:
            raise SourceRefused(f"body.uri: {shown!r}: {NO_MEDIA_DIRS}")
        path = file_path(uri, is_file_url)  # the file `open_source` would open, read the same way
        if "\x00" in str(path):  # percent-encoded (%00): no file name holds one, and paths cannot carry it
            raise UnusableSource(f"{shown!r}: a file name cannot hold a NUL character (%00)")
        if not path.is_absolute():
            home = " ('~' is not expanded)" if path.parts and path.parts[0].startswith("~") else ""
            raise SourceRefused(f"body.uri: {shown!r}: give the file's absolute path{home}")
        return functools.partial(self._check_real_path, path, shown)

    def check_file(self, path: Path) -> None:
        """Raise `SourceRefused` unless the API may play the file at ``path``: inside `media_dirs`, its
        symbolic links and ``..`` followed, with the API's words less the field they name.

        For a stream `StreamConfig.from_api` each time its file is opened (`check_stream_file`):
        a link inside the folders may point elsewhere since the API checked it, and the folders in the
        config file may have changed since the stream was saved there. Blocks on the file system.
        """
        shown = mask_uri(str(path))[:200]
        if not self.media_dirs:
            raise SourceRefused(f"{shown!r}: {NO_MEDIA_DIRS}")
        self._check_real_path(path, shown, field="")

    def _check_real_path(self, path: Path, shown: str, field: str = "body.uri: ") -> None:
        """Refuse ``path`` unless, its symbolic links and ``..`` followed, it is inside `media_dirs`."""
        real = path.resolve()
        if not any(real.is_relative_to(folder) for folder in self.media_dirs):
            folders = ", ".join(str(folder) for folder in self.media_dirs)
            raise SourceRefused(f"{field}{shown!r}: only files inside {folders} may be played ([server] media_dirs)")

    def check_stream_uri(self, uri: str) -> None:
        """Refuse to open a stream `StreamConfig.from_api` whose URI the API would refuse now: a scheme taken
        out of ``[server] source_schemes``, a device with ``allow_devices`` off, an option the API may not
        give, since it was saved. What its text tells only; its host and file are checked as they are
        reached (`check_stream_host`, `check_stream_file`). Raises `SourceError`: the stream fails with it."""
        try:
            self.check_text(uri)
        except (SourceRefused, UnusableSource) as exc:
            raise SourceError(
                f"{str(exc).removeprefix('body.uri: ')} (the API saved this stream: it is held to the API's rules "
                "while its [[streams]] table says from_api = true; take that line out to make it the config file's)"
            ) from None

    def check_stream_host(self, host: str) -> None:
        """Refuse a connection of a stream `StreamConfig.from_api` to a host in ``[server] deny_networks``
        (see `server.streams.StreamManager.add`)."""
        try:
            self.check_host(host)
        except SourceRefused as exc:
            raise SourceError(str(exc)) from None

    def check_stream_file(self, path: Path) -> None:
        """Refuse to open the file of a stream `StreamConfig.from_api` outside ``[server] media_dirs``
        (see `server.streams.StreamManager.add`): ``path`` is its real path, its links followed."""
        try:
            self.check_file(path)
        except SourceRefused as exc:
            raise SourceError(str(exc)) from None


def _check_format(forced: str, shown: str) -> None:
    """Refuse a ``#format=`` (``forced``; empty where none is given) the API may not force on FFmpeg.

    One FFmpeg has no demuxer for can never work, whatever the settings: `UnusableSource`. One it has
    but that is no single live stream's (``hls``, ``concat``: they read further URLs or files named in
    what the camera sends) is the policy's to refuse: `SourceRefused`, naming the allowed ones.
    """
    if not forced or forced in SAFE_FORMATS:
        return
    allowed = ", ".join(sorted(SAFE_FORMATS))
    try:
        av.format.ContainerFormat(forced, "r")  # how `av.open` finds the demuxer ``format=`` names
    except ValueError:
        raise UnusableSource(f"{shown!r}: FFmpeg has no format={forced!r} (the API allows: {allowed})") from None
    raise SourceRefused(
        f"body.uri: {shown!r}: format={forced!r} is not allowed through the API (allowed: {allowed}; an .m3u8 "
        "playlist needs no format); a stream from the config file or --source may force any"
    )


def _is_address(host: str) -> bool:
    """Whether ``host`` is an IP address as written (an IPv6 one may carry a zone), not a name to look up."""
    try:
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    return True


def _addresses(host: str) -> set[Address]:
    """The addresses a connection to ``host`` may go to: itself if it is one, else what it resolves to.

    Resolving also reads the spellings FFmpeg's resolver accepts (``2852039166``, ``0xa9fea9fe``).
    An IPv4 address written as IPv6 (``::ffff:169.254.169.254``, and the other forms `_embedded_ipv4`
    reads) counts as the IPv4 one too, and the unspecified address (``0.0.0.0``), which connects to this
    machine, as loopback.
    """
    # An IPv6 zone (fe80::1%eth0) is no part of the address; nor is a trailing dot, the root's: a resolver
    # may take 169.254.169.254. for the address, which Python does not.
    literal = host.partition("%")[0].removesuffix(".")
    try:
        found: set[Address] = {ipaddress.ip_address(literal)}
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):  # does not resolve now, or is no host name at all
            return set()
        found = {ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos}
    found.update(*(_embedded_ipv4(a) for a in list(found) if isinstance(a, ipaddress.IPv6Address)))
    for address in list(found):
        if address.is_unspecified:
            found.add(ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1"))
    return found


def _embedded_ipv4(address: ipaddress.IPv6Address) -> set[Address]:
    """The IPv4 addresses an IPv6 ``address`` carries, which a connection to it may reach: IPv4-mapped
    (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``), NAT64 (``64:ff9b::a.b.c.d``) and 6to4
    (``2002:AABB:CCDD::``). ``::`` and ``::1`` are themselves, not 0.0.0.0 and 0.0.0.1."""
    found: set[Address] = {a for a in (address.ipv4_mapped, address.sixtofour) if a is not None}
    if int(address) > 1 and any(address in network for network in EMBEDDED_IPV4_NETWORKS):
        found.add(ipaddress.IPv4Address(address.packed[-4:]))
    return found
