"""Which sources a remote caller may ask for, so that the API cannot be turned against the host.

A source URI is an instruction to open something on this machine's behalf. The owner writes the
config file and the command line, so those open anything; a request to the API (adding a stream,
changing its URI) comes from the network and is held to a `SourcePolicy`:

- network sources only with an allowed scheme (``[server] source_schemes``);
- local files only when ``[server] media_dirs`` names folders, and only inside them, judged on the
  real path after symbolic links and ``..`` are resolved, so neither can step outside;
- local devices (``/dev/video0``, ``webcam:0``) only with ``[server] allow_devices = true``;
- no forced FFmpeg demuxer beyond those a camera needs (``#format=``), since some demuxers (concat,
  playlists) would read further URLs or files named inside what the camera sends.

A refusal never says whether a file exists, and never repeats a password from the URI.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from server.sources.network import SCHEMES as NETWORK_SCHEMES
from server.sources.uri import mask_uri
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


class SourceRefused(ValueError):
    """The caller may not open this source; the message says which setting would allow it."""


@dataclass(frozen=True, slots=True)
class SourcePolicy:
    """What the API may open. The default allows network cameras and scenes, no files, no devices."""

    schemes: frozenset[str] = frozenset(DEFAULT_SOURCE_SCHEMES)
    media_dirs: tuple[Path, ...] = ()
    allow_devices: bool = False

    @classmethod
    def of(cls, schemes: Iterable[str], media_dirs: Iterable[Path], allow_devices: bool) -> SourcePolicy:
        """A policy with ``media_dirs`` resolved now, so a later change of directory cannot widen it."""
        return cls(frozenset(s.lower() for s in schemes), tuple(p.resolve() for p in media_dirs), allow_devices)

    def check(self, uri: str) -> None:
        """Raise `SourceRefused` unless a remote caller may open ``uri``."""
        shown = mask_uri(uri)[:200]
        if len(uri) > MAX_URI_CHARS:
            raise SourceRefused(f"uri: at most {MAX_URI_CHARS} characters")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in uri):
            raise SourceRefused("uri: control characters are not allowed")
        if is_webcam(uri):
            if not self.allow_devices:
                raise SourceRefused(
                    f"uri {shown!r}: local devices cannot be opened through the API; "
                    "set [server] allow_devices = true in the config file to allow it"
                )
            return
        try:
            parts = urlsplit(uri)
        except ValueError:
            raise SourceRefused(f"uri {shown!r}: not a valid URI") from None
        scheme = parts.scheme.lower()
        is_path = scheme == "" or (len(scheme) == 1 and uri[1:3] in (":\\", ":/"))
        if scheme == "file" or is_path:
            self._check_file(uri, scheme == "file", shown)
            return
        if scheme not in self.schemes or scheme not in KNOWN_SOURCE_SCHEMES:
            allowed = ", ".join(sorted(self.schemes)) or "none"
            raise SourceRefused(
                f"uri {shown!r}: the scheme {scheme!r} is not allowed through the API (allowed: {allowed}; "
                "see [server] source_schemes)"
            )
        fragment = uri.partition("#")[2]
        forced = dict(parse_qsl(fragment, keep_blank_values=True)).get("format", "")
        if forced and forced not in SAFE_FORMATS:
            raise SourceRefused(f"uri {shown!r}: format={forced!r} is not allowed; use one of {sorted(SAFE_FORMATS)}")

    def _check_file(self, uri: str, is_file_url: bool, shown: str) -> None:
        if not self.media_dirs:
            raise SourceRefused(
                f"uri {shown!r}: local files cannot be opened through the API; list the folders that may be "
                "played in [server] media_dirs of the config file"
            )
        # A plain path is opened whole if such a file exists, else without its '#' options: check both.
        base = uri.partition("#")[0]
        candidates = [unquote(urlsplit(base).path)] if is_file_url else [uri, base]
        for raw in candidates:
            path = Path(raw)
            if not path.is_absolute():
                raise SourceRefused(f"uri {shown!r}: give the file's absolute path")
            real = path.resolve()
            if not any(real.is_relative_to(folder) for folder in self.media_dirs):
                folders = ", ".join(str(folder) for folder in self.media_dirs)
                raise SourceRefused(f"uri {shown!r}: only files inside {folders} may be played ([server] media_dirs)")
