"""Source kinds behind one interface, chosen by URI.

scene:?seed=1                     the generated scene (see `server.sources.scene`)
file:///videos/a.mp4              a local video file; a plain path works too; ``#rate=max`` for batch
                                  (see `server.sources.file.split_file_uri` for a '#' in a file's name)
rtsp://, rtsps://, rtmp://, ...   network cameras and streams (see `server.sources.network`)
/dev/video0, webcam:0             local webcams, /dev/v4l/by-id/... too (see `server.sources.webcam`)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from server.sources.base import MAX_FRAME_SIDE_PX, Decoded, LatestFrame, Source, SourceError, StreamState
from server.sources.file import FileSource, camera_address_hint
from server.sources.network import SCHEMES as NETWORK_SCHEMES
from server.sources.network import NetworkSource
from server.sources.scene import SceneSettings, SceneSource
from server.sources.uri import mask_text, mask_uri
from server.sources.webcam import WebcamSource, is_webcam

__all__ = ["Decoded", "LatestFrame", "Source", "SourceError", "StreamState", "check_uri", "mask_uri", "open_source"]


def open_source(
    uri: str,
    max_frame_side: int = MAX_FRAME_SIDE_PX,
    check_host: Callable[[str], None] | None = None,
    check_path: Callable[[Path], None] | None = None,
) -> Source:
    """The source for ``uri``, or `SourceError` naming what is wrong with it.

    Sources that decode with FFmpeg refuse pictures larger than ``max_frame_side`` before decoding
    them; the reader checks every frame of every source against the same limit. ``check_host`` is
    called with a network source's host before each connection, ``check_path`` with a file's real path
    (its links followed) each time it is opened, each pass of a loop too; either may refuse it with
    `SourceError`.

    Reads nothing but ``uri`` itself: no network, no file system, not even whether a file is there.
    Connecting, and looking at a file and reading its header, are the reader's job, so a camera that
    is down is a stream that reconnects, and a file on a hung network mount a stream that stays
    ``starting``, not a server that will not start or change. So a `SourceError` from here means the
    URI can never work as written, whatever the network or the files do later.
    """
    scheme = _scheme(uri)
    if scheme is None:
        return WebcamSource(uri, max_frame_side)
    if scheme == "scene":
        return SceneSource(uri, max_frame_side)
    if scheme in NETWORK_SCHEMES:
        return NetworkSource(uri, max_frame_side, check_host)
    if scheme == "file" or scheme == "" or (len(scheme) == 1 and uri[1:3] in (":\\", ":/")):  # Windows drives too
        return FileSource.of_uri(uri, scheme == "file", max_frame_side, check_path)
    if hint := camera_address_hint(uri):  # admin:S3cret@cam/live, cam.local:554/live: the scheme was left out
        raise SourceError(f"unsupported source {mask_uri(uri)!r}: {hint}")
    network = ", ".join(f"{scheme}://" for scheme in sorted(NETWORK_SCHEMES))
    kinds = f"scene:, file://, a file path, {network}, /dev/videoN or webcam:N"
    raise SourceError(f"unsupported source {mask_uri(uri)!r}: use {kinds}")


def check_uri(uri: str, max_frame_side: int = MAX_FRAME_SIDE_PX) -> None:
    """`SourceError` where `open_source` would refuse ``uri``, with the same message; building nothing.

    For a caller that must not wait (the API, on the event loop) and whose URI the stream manager opens
    again anyway. A scene's URI is only read (`SceneSettings.of_uri`): making its source draws its
    background, a second or more at 4K. Every other kind's source reads nothing but the URI when it is
    made and starts nothing, so one is made and dropped.
    """
    if _scheme(uri) == "scene":
        SceneSettings.of_uri(uri, max_frame_side)
    else:
        open_source(uri, max_frame_side)


def _scheme(uri: str) -> str | None:
    """The lower-case scheme of ``uri``, None for a webcam (known by how it starts, before it is read as a
    URI), or `SourceError` for text that is no URI at all."""
    try:
        uri.encode()
    except UnicodeEncodeError:
        # Bytes that are not UTF-8 in a command-line argument arrive as lone surrogates; FFmpeg could
        # never be given them, and retrying would fail the same way for ever.
        raise SourceError(f"{mask_uri(uri)!r} is not text: it holds bytes that are not UTF-8") from None
    if is_webcam(uri):
        return None
    try:
        return urlsplit(uri).scheme.lower()  # checks the host part too, which every kind but a webcam reads
    except ValueError as exc:  # an unclosed '[' (IPv6) or a host that is not text a host can be
        raise SourceError(f"{mask_uri(uri)!r} is not a valid URI: {mask_text(str(exc), uri)}") from None
