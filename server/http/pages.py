"""The viewer's pages and files, and who may show them in a frame.

Pages carry a ``Content-Security-Policy: frame-ancestors`` header built from `Settings.embed_origins`,
so a dashboard on an allowed origin can put ``/embed/<stream>`` (or the whole viewer) in an
``<iframe>`` and any other site cannot. Images (snapshot, MJPEG) need no such permission: an
``<img>`` may show them from anywhere the request is allowed by the access policy.

Every URL in the pages and scripts is relative (to the page, or in scripts to segcast's root found
from the script's own address), so the viewer works unchanged behind a reverse proxy that serves
segcast under a path prefix.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from server.config import STREAM_ID_PATTERN, Settings
from server.frames import PROTOCOL_VERSION
from server.http.errors import error
from server.http.keys import manager_key, settings_key
from server.log_throttle import ThrottledCount
from server.persist import config_file_writable

log = logging.getLogger(__name__)

VIEWER_SUFFIXES = frozenset({".html", ".js", ".css"})
#: A viewer folder gone from under the running server is logged at most this often.
FILES_GONE_LOG_INTERVAL_S = 60.0


def web_root() -> Path:
    """The viewer's files: packaged beside the code when installed, ``web/`` in a source checkout.

    Looked for once, when the app is made: `ViewerFolder` says why."""
    package = Path(__file__).parent.parent
    installed = package / "web"
    return installed if installed.is_dir() else package.parent / "web"


@dataclass
class ViewerFolder:
    """The folder the viewer is served from, chosen once when the app is made (`setup_pages`).

    Its files are read on each request, so an upgrade in place, which rewrites the same folder, is
    served as it is now (the pages are ``no-cache``): a browser's next load runs the new viewer. The
    folder itself is not looked for again: an install removed or moved under the running server (a
    ``pip install -e .`` over a ``pip install .``) then says that its files are gone and to restart,
    instead of falling back to whatever ``web/`` sits beside the old package's path by then, which
    in site-packages may be another distribution's.
    """

    path: Path
    #: Requests answered while the folder is gone, logged once a minute.
    gone_answers: ThrottledCount = field(default_factory=lambda: ThrottledCount(FILES_GONE_LOG_INTERVAL_S))

    def files(self) -> frozenset[str] | None:
        """The names ``/static/`` serves, or None while the folder cannot be read.

        Only names the folder lists are served, never a path built from a request: no traversal to
        judge, and no ``OSError`` (a name too long, say) to turn into a 500.
        """
        try:
            with os.scandir(self.path) as entries:
                return frozenset(e.name for e in entries if e.is_file() and Path(e.name).suffix in VIEWER_SUFFIXES)
        except OSError:
            return None

    def gone(self) -> web.HTTPException:
        """The 503 for a viewer whose files are missing, logged at ERROR at most once a minute: the
        person at the browser sees it, and so does the operator, who sees nothing else go wrong.

        Only the log names the folder: the pages are public, and like `viewer_settings` the answer
        tells no one without a token where segcast keeps its files.
        """
        cause = "(was segcast reinstalled or upgraded while it runs?): restart segcast"
        if answered := self.gone_answers.add():
            log.error(
                "the viewer's files are gone from %s %s; this is logged at most once a minute (%d requests "
                "answered 503 since the last such line)",
                self.path,
                cause,
                answered,
            )
        return error(web.HTTPServiceUnavailable, f"the viewer's files are gone {cause}; its log names the folder")


_viewer_folder_key = web.AppKey("viewer_folder", ViewerFolder)


def setup_pages(app: web.Application) -> None:
    app[_viewer_folder_key] = ViewerFolder(web_root())
    app.router.add_get("/", _index)
    app.router.add_get("/embed/{stream}", _embed)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/api/viewer", _viewer_settings)


def frame_ancestors(origins: tuple[str, ...]) -> str:
    """The CSP directive allowing this server itself and ``origins`` to frame its pages.

    ``"*"`` matches every page of a network scheme (this server's own too), not a file: a ``"file:"``
    listed beside it is kept, so ``["*", "file:"]`` lets any page and files frame them."""
    if "*" in origins:
        return " ".join(["frame-ancestors", *origins])
    return " ".join(["frame-ancestors 'self'", *origins])


def _viewer_file(request: web.Request, name: str, *, page: bool = False) -> Path:
    """The path of the viewer's file ``name``: a 404 for a name its folder lacks, a 503 when the
    folder is gone or lacks a ``page`` the server serves itself (``index.html``, ``embed.html``).

    Never a path aiohttp's ``FileResponse`` finds missing: that answers an empty 404 as
    ``application/octet-stream``, which a browser downloads as a file instead of showing a page.
    """
    folder = request.app[_viewer_folder_key]
    files = folder.files()
    if files is None or (page and name not in files):
        raise folder.gone()
    if name not in files:
        raise error(web.HTTPNotFound, "no such file in the viewer")
    return folder.path / name


def _page(request: web.Request, path: Path) -> web.FileResponse:
    response = web.FileResponse(path)
    response.headers["Content-Security-Policy"] = frame_ancestors(request.app[settings_key].embed_origins)
    response.headers["Cache-Control"] = "no-cache"
    return response


async def _static(request: web.Request) -> web.FileResponse:
    """A viewer file, ``no-cache`` like the pages: a browser asks again each time (a cheap 304 by its
    ETag while unchanged), so after an upgrade no new page runs with the old scripts it had cached."""
    name = request.match_info["name"]
    path = _viewer_file(request, name)
    if name.endswith(".html"):  # a page, like publish.html: framed only where the others may be
        return _page(request, path)
    response = web.FileResponse(path)
    response.headers["Cache-Control"] = "no-cache"
    return response


async def _index(request: web.Request) -> web.FileResponse:
    return _page(request, _viewer_file(request, "index.html", page=True))


async def _embed(request: web.Request) -> web.FileResponse:
    """One stream, no chrome; the page itself reads the stream id from its URL."""
    if not STREAM_ID_PATTERN.match(request.match_info["stream"]):
        raise error(web.HTTPNotFound, "no such stream")
    return _page(request, _viewer_file(request, "embed.html", page=True))


def viewer_settings(settings: Settings, class_names: dict[int, str]) -> dict[str, object]:
    """What the viewer's forms may offer: only sources the API accepts, saving only to a file there is
    that segcast may write now (asked at each request: a file made read-only is no longer offered),
    and as a zone's or line's ``classes`` only the model's class names (``class_names``), in class-id order.

    Which folders ``media_dirs`` names stays on the server: the viewer only learns that files are allowed.
    The class names are empty while they are unknown (a remote model whose server has not described it
    yet): the viewer then asks again rather than offer names the API would refuse.
    """
    writable = settings.config_path is not None and config_file_writable(settings.config_path)
    return {
        "v": PROTOCOL_VERSION,
        "classes": [class_names[class_id] for class_id in sorted(class_names)],
        "config_file": writable,
        "save_config": settings.save_config and writable,  # else each change's answer says it was not saved
        "sources": {
            "schemes": list(settings.source_schemes),
            "files": bool(settings.media_dirs),
            "devices": settings.allow_devices,
        },
    }


async def _viewer_settings(request: web.Request) -> web.Response:
    app = request.app
    return web.json_response(viewer_settings(app[settings_key], app[manager_key].worker.class_names))
