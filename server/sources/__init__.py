"""Source kinds behind one interface, chosen by URI.

scene:?seed=1          the generated scene (see `server.sources.scene`)
file:///videos/a.mp4   a local video file; a plain path works too
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from server.sources.base import Decoded, LatestFrame, Source, SourceError, StreamState
from server.sources.file import FileSource
from server.sources.scene import SceneSource

__all__ = ["Decoded", "LatestFrame", "Source", "SourceError", "StreamState", "open_source"]


def open_source(uri: str) -> Source:
    """The source for ``uri``, or `SourceError` naming what is wrong with it."""
    scheme = urlsplit(uri).scheme.lower()
    if scheme == "scene":
        return SceneSource(uri)
    if scheme == "file":
        return FileSource(Path(unquote(urlsplit(uri).path)))
    if scheme == "" or (len(scheme) == 1 and uri[1:3] in (":\\", ":/")):  # a plain path, Windows drives too
        return FileSource(Path(uri))
    raise SourceError(f"unsupported source {uri!r}: use scene:, file:// or a file path")
