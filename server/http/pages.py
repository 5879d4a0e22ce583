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

import functools
from pathlib import Path

from aiohttp import web

from server.config import STREAM_ID_PATTERN, Settings
from server.frames import PROTOCOL_VERSION
from server.http.keys import manager_key, settings_key


def web_root() -> Path:
    """The viewer's files: packaged beside the code when installed, ``web/`` in a source checkout."""
    package = Path(__file__).parent.parent
    installed = package / "web"
    return installed if installed.is_dir() else package.parent / "web"


def setup_pages(app: web.Application) -> None:
    app.router.add_get("/", _index)
    app.router.add_get("/embed/{stream}", _embed)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/api/viewer", _viewer_settings)


@functools.cache
def viewer_files() -> frozenset[str]:
    """The names ``/static/`` serves: the viewer's own flat folder of pages, scripts and styles.

    Serving a fixed set instead of a directory means no request path ever reaches the file system:
    no traversal to judge, and no ``OSError`` (a name too long, say) to turn into a 500.
    """
    return frozenset(p.name for p in web_root().iterdir() if p.is_file() and p.suffix in VIEWER_SUFFIXES)


VIEWER_SUFFIXES = frozenset({".html", ".js", ".css"})


def frame_ancestors(origins: tuple[str, ...]) -> str:
    """The CSP directive allowing this server itself and ``origins`` to frame its pages.

    ``"*"`` matches every page of a network scheme (this server's own too), not a file: a ``"file:"``
    listed beside it is kept, so ``["*", "file:"]`` lets any page and files frame them."""
    if "*" in origins:
        return " ".join(["frame-ancestors", *origins])
    return " ".join(["frame-ancestors 'self'", *origins])


def _page(request: web.Request, name: str) -> web.FileResponse:
    response = web.FileResponse(web_root() / name)
    response.headers["Content-Security-Policy"] = frame_ancestors(request.app[settings_key].embed_origins)
    response.headers["Cache-Control"] = "no-cache"
    return response


async def _static(request: web.Request) -> web.FileResponse:
    """A viewer file, ``no-cache`` like the pages: a browser asks again each time (a cheap 304 by its
    ETag while unchanged), so after an upgrade no new page runs with the old scripts it had cached."""
    name = request.match_info["name"]
    if name not in viewer_files():
        raise web.HTTPNotFound(text="no such file")
    if name.endswith(".html"):  # a page, like publish.html: framed only where the others may be
        return _page(request, name)
    response = web.FileResponse(web_root() / name)
    response.headers["Cache-Control"] = "no-cache"
    return response


async def _index(request: web.Request) -> web.FileResponse:
    return _page(request, "index.html")


async def _embed(request: web.Request) -> web.FileResponse:
    """One stream, no chrome; the page itself reads the stream id from its URL."""
    if not STREAM_ID_PATTERN.match(request.match_info["stream"]):
        raise web.HTTPNotFound(text="no such stream")
    return _page(request, "embed.html")


def viewer_settings(settings: Settings, class_names: dict[int, str]) -> dict[str, object]:
    """What the viewer's forms may offer: only sources the API accepts, saving only to a file there is,
    and as a zone's or line's ``classes`` only the model's class names (``class_names``), in class-id order.

    Which folders ``media_dirs`` names stays on the server: the viewer only learns that files are allowed.
    The class names are empty while they are unknown (a remote model whose server has not described it
    yet): the viewer then asks again rather than offer names the API would refuse.
    """
    return {
        "v": PROTOCOL_VERSION,
        "classes": [class_names[class_id] for class_id in sorted(class_names)],
        "config_file": settings.config_path is not None,
        "save_config": settings.save_config and settings.config_path is not None,
        "sources": {
            "schemes": list(settings.source_schemes),
            "files": bool(settings.media_dirs),
            "devices": settings.allow_devices,
        },
    }


async def _viewer_settings(request: web.Request) -> web.Response:
    app = request.app
    return web.json_response(viewer_settings(app[settings_key], app[manager_key].worker.class_names))
