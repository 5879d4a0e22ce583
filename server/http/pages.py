"""The viewer's pages and files, and who may show them in a frame.

Pages carry a ``Content-Security-Policy: frame-ancestors`` header built from `Settings.embed_origins`,
so a dashboard on an allowed origin can put ``/embed/<stream>`` (or the whole viewer) in an
``<iframe>`` and any other site cannot. Images (snapshot, MJPEG) need no such permission: an
``<img>`` may show them from anywhere the request is allowed by the access policy.

Every URL in the pages and scripts is relative (to the page, or in scripts to segcast's root found
from the script's own address), so the viewer works unchanged behind a reverse proxy that serves
segcast under a path prefix.

A page loads its scripts and stylesheet from ``/static/<tag>/``, the tag naming the viewer's files as
they are now (`ViewerListing`): a page of this version never runs a script a browser cached from
another, however that one was cached (segcast before 2026-12-04 sent no ``Cache-Control``, so browsers
kept its scripts for hours by heuristic freshness), and the scripts of the current tag may be cached
for good, so a page's next load asks for none of them again. Every answer is made of the bytes the
tag was made of (`ViewerFile`), never of the file read again later, which may have changed since.
The folder is looked at in a thread of its own (`ViewerFolder.look`), never on the event loop: on a
file system that stopped answering, that look would have stopped the whole server.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from server.config import Settings, check_stream_id
from server.frames import PROTOCOL_VERSION
from server.http.errors import error
from server.http.keys import manager_key, settings_key
from server.http.saving import save_refusal_key
from server.log_throttle import ThrottledCount

log = logging.getLogger(__name__)

#: What a page loads, so what ``/static/<tag>/`` serves, by suffix, with its content type (the
#: viewer's files are UTF-8). A page is served at its own address only, where its relative links lead
#: where they mean.
ASSET_TYPES = {".js": "text/javascript", ".css": "text/css"}
ASSET_SUFFIXES = frozenset(ASSET_TYPES)
VIEWER_SUFFIXES = ASSET_SUFFIXES | {".html"}
#: Hex digits of the tag (48 bits): short in every URL, and two versions of the viewer sharing one is
#: out of reach.
TAG_DIGITS = 12
#: A file asked for under the current tag: what that URL answers never changes, since the tag changes
#: with any of the viewer's files.
CACHED_FOR_GOOD = "public, max-age=31536000, immutable"
#: A page's own references to the viewer's scripts and stylesheet, relative as a page writes them
#: from where it is served: ``static/app.js`` (``/``), ``../static/style.css`` (``/embed/<stream>``),
#: ``style.css`` (``/static/``). The tag goes in front of the file's name.
_ASSET_REFERENCE = re.compile(
    r'(?P<attribute>(?<![\w-])(?:src|href)=")(?P<folder>(?:\.\./)*(?:static/)?)(?P<name>[^"/]+)"'
)
#: A viewer folder gone from under the running server, or not answering, is logged at most this often.
FILES_GONE_LOG_INTERVAL_S = 60.0
#: How long a look at the viewer's folder may take before the page asking is answered 503: a local disk
#: answers in far less, a network share that stopped answering never.
LOOK_TIMEOUT_S = 5.0
#: What ``If-None-Match`` holds to match any version of a file.
ANY_ETAG = "*"


def web_root() -> Path:
    """The viewer's files: packaged beside the code when installed, ``web/`` in a source checkout.

    Looked for once, when the app is made: `ViewerFolder` says why."""
    package = Path(__file__).parent.parent
    installed = package / "web"
    return installed if installed.is_dir() else package.parent / "web"


@dataclass(frozen=True, slots=True)
class ViewerFile:
    """One of the viewer's files as it was read, with the SHA-256 of exactly these bytes (hex).

    Served as it is, never read again for the answer: a file replaced on disk after its tag was made
    is not sent under that tag, where a browser would keep it for good.
    """

    body: bytes
    digest: str

    @property
    def etag(self) -> str:
        """The ``ETag`` of its answers: its contents, not its size and time, which a change may keep."""
        return f'"{self.digest}"'


@dataclass(frozen=True, slots=True)
class ViewerListing:
    """The viewer's files at one request, by name, and the tag that changes with any of them.

    ``tag`` is the same for the same files, across restarts and nodes too, so a browser keeps what it
    cached while the viewer stays the same.
    """

    files: Mapping[str, ViewerFile]
    tag: str

    def with_tag(self, page: str) -> str:
        """``page`` with its references to the viewer's scripts and stylesheet under this tag."""

        def tagged(reference: re.Match[str]) -> str:
            name = reference["name"]
            if Path(name).suffix not in ASSET_SUFFIXES or name not in self.files:
                return reference[0]
            return f'{reference["attribute"]}{reference["folder"]}{self.tag}/{name}"'

        return _ASSET_REFERENCE.sub(tagged, page)


def _tag(digests: dict[str, str]) -> str:
    """A short hash of the files' names and contents (``digests``, each file's SHA-256): the same on
    every node that has the same viewer, and a new one for any change, even one that keeps a file's
    size and times (a package built with fixed timestamps)."""
    return hashlib.sha256(repr(sorted(digests.items())).encode()).hexdigest()[:TAG_DIGITS]


@dataclass
class ViewerFolder:
    """The folder the viewer is served from, chosen once when the app is made (`setup_pages`).

    Its files are listed for each request (`look`), so an upgrade in place, which rewrites the same
    folder, is served as it is now (the pages are ``no-cache``): a browser's next load runs the new viewer. The
    folder itself is not looked for again: an install removed or moved under the running server (a
    ``pip install -e .`` over a ``pip install .``) then says that its files are gone and to restart,
    instead of falling back to whatever ``web/`` sits beside the old package's path by then, which
    in site-packages may be another distribution's.
    """

    path: Path
    #: Requests answered while the folder is gone, logged once a minute.
    gone_answers: ThrottledCount = field(default_factory=lambda: ThrottledCount(FILES_GONE_LOG_INTERVAL_S))
    #: Requests answered while the folder does not answer (`LOOK_TIMEOUT_S`), logged once a minute.
    unanswered_answers: ThrottledCount = field(default_factory=lambda: ThrottledCount(FILES_GONE_LOG_INTERVAL_S))
    #: Each file as it was read, by what ``stat`` said of it then: a file is read again only once that
    #: changes (an upgrade), not at each page load. The whole viewer is a few hundred kB.
    _read: dict[str, tuple[tuple[int, int, int, int], ViewerFile]] = field(default_factory=dict)
    #: Where `listing` runs: one thread, so one look at a time, and only `listing` changes ``_read``.
    _looker: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="viewer-files-look"), repr=False
    )
    #: The look under way, on the loop; None when none is.
    _look: asyncio.Future[ViewerListing | None] | None = field(default=None, repr=False)

    async def look(self) -> ViewerListing | None:
        """`listing` as the folder is now, looked at off the event loop; `TimeoutError` where a look this
        waits for has not answered within `LOOK_TIMEOUT_S` (it goes on, and the next requests wait for it).

        A look under way when this is called began before it, and may have missed an upgrade made just
        before it: it is waited for, then a new one is, each for `LOOK_TIMEOUT_S` at most, so a folder
        whose looks answer within that is served however long the two take together. Requests that
        arrive meanwhile share that one, so a page loading many files costs two looks, and a folder that
        hangs holds one thread, not one per request. Use it on the event loop only.
        """
        if self._look is not None:
            async with asyncio.timeout(LOOK_TIMEOUT_S):
                await asyncio.wait([self._look])  # its answer, or its failure, is not this request's
        if self._look is None or self._look.done():
            self._look = asyncio.wrap_future(self._looker.submit(self.listing))
            self._look.add_done_callback(self._looked)
        async with asyncio.timeout(LOOK_TIMEOUT_S):
            return await asyncio.shield(self._look)  # a request that gives up leaves it to the others

    def _looked(self, look: asyncio.Future[ViewerListing | None]) -> None:
        if look is self._look:
            self._look = None

    def close(self) -> None:
        """Start no more looks; one waiting for a folder that does not answer is left to end when it does."""
        self._looker.shutdown(wait=False, cancel_futures=True)

    def listing(self) -> ViewerListing | None:
        """The files ``/static/`` serves and their tag, or None while the folder cannot be read.

        Only names the folder lists are served, never a path built from a request: no traversal to
        judge, and no ``OSError`` (a name too long, say) to turn into a 500. Listed at each request
        (a few dozen ``stat`` calls): an upgrade in place changes the tag of the next page served.
        Blocks on the file system: the server calls it in `look`'s thread, which alone changes ``_read``.
        """
        read: dict[str, tuple[tuple[int, int, int, int], ViewerFile]] = {}
        try:
            with os.scandir(self.path) as entries:
                for entry in entries:
                    with suppress(OSError):  # removed since the folder was listed, or unreadable: not served
                        if Path(entry.name).suffix in VIEWER_SUFFIXES and entry.is_file():
                            read[entry.name] = self._read_again_if_changed(entry)
        except OSError:
            return None
        self._read = read  # a file removed is not kept
        files = {name: file for name, (_, file) in read.items()}
        return ViewerListing(files, _tag({name: file.digest for name, file in files.items()}))

    def _read_again_if_changed(self, entry: os.DirEntry[str]) -> tuple[tuple[int, int, int, int], ViewerFile]:
        """The file ``entry`` as kept, read again only where its size, times or inode changed."""
        status = entry.stat()
        seen = (status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino)
        kept = self._read.get(entry.name)
        if kept is None or kept[0] != seen:
            body = Path(entry.path).read_bytes()
            kept = (seen, ViewerFile(body, hashlib.sha256(body).hexdigest()))
        return kept

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

    def unanswered(self) -> web.HTTPException:
        """The 503 for a viewer whose folder did not answer in time, logged like `gone`."""
        if answered := self.unanswered_answers.add():
            log.error(
                "the viewer's files in %s have not answered within %g s (a network share that stopped "
                "answering?); this is logged at most once a minute (%d requests answered 503 since the last such line)",
                self.path,
                LOOK_TIMEOUT_S,
                answered,
            )
        return error(web.HTTPServiceUnavailable, "the viewer's files do not answer now; try again later")


_viewer_folder_key = web.AppKey("viewer_folder", ViewerFolder)


def setup_pages(app: web.Application) -> None:
    app[_viewer_folder_key] = ViewerFolder(web_root())
    app.cleanup_ctx.append(_viewer_folder_looks)
    app.router.add_get("/", _index)
    app.router.add_get("/embed/{stream}", _embed)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/static/{tag}/{name}", _tagged)
    app.router.add_get("/api/viewer", _viewer_settings)


async def _viewer_folder_looks(app: web.Application) -> AsyncIterator[None]:
    """The viewer folder's looks end with the app."""
    yield
    app[_viewer_folder_key].close()


def frame_ancestors(origins: tuple[str, ...]) -> str:
    """The CSP directive allowing this server itself and ``origins`` to frame its pages.

    ``"*"`` matches every page of a network scheme (this server's own too), not a file: a ``"file:"``
    listed beside it is kept, so ``["*", "file:"]`` lets any page and files frame them."""
    if "*" in origins:
        return " ".join(["frame-ancestors", *origins])
    return " ".join(["frame-ancestors 'self'", *origins])


async def _listing(request: web.Request, name: str, *, page: bool = False) -> ViewerListing:
    """The viewer's files, ``name`` among them: a 404 for a name its folder lacks, a 503 when the
    folder is gone, does not answer, or lacks a ``page`` the server serves itself (``index.html``,
    ``embed.html``)."""
    folder = request.app[_viewer_folder_key]
    try:
        listing = await folder.look()
    except TimeoutError:
        raise folder.unanswered() from None
    if listing is None or (page and name not in listing.files):
        raise folder.gone()
    if name not in listing.files:
        raise error(web.HTTPNotFound, "no such file in the viewer")
    return listing


def _browser_has(request: web.Request, version: str) -> bool:
    """Whether ``If-None-Match`` names ``version`` (an ETag's value): compared weakly, as RFC 9110 has
    it, so an ETag a compressing proxy marked weak still matches."""
    return any(etag.value in (version, ANY_ETAG) for etag in request.if_none_match or ())


def _page(request: web.Request, name: str, listing: ViewerListing) -> web.Response:
    """The page ``name``, loading the viewer's scripts under the current tag. ``no-cache``: a browser
    asks again at each load, which costs a 304 while the viewer is unchanged (the tag is its ETag)."""
    headers = {
        "Content-Security-Policy": frame_ancestors(request.app[settings_key].embed_origins),
        "Cache-Control": "no-cache",
        "ETag": f'"{listing.tag}"',
    }
    if _browser_has(request, listing.tag):
        return web.Response(status=web.HTTPNotModified.status_code, headers=headers)
    page = listing.files[name].body.decode("utf-8")
    return web.Response(text=listing.with_tag(page), content_type="text/html", headers=headers)


def _asset(request: web.Request, name: str, listing: ViewerListing, cache_control: str) -> web.Response:
    """The script or stylesheet ``name`` as its tag was made of, its contents' digest its ETag: a 304
    where the browser has these bytes, and never for other bytes of the same size and time."""
    file = listing.files[name]
    headers = {"Cache-Control": cache_control, "ETag": file.etag}
    if _browser_has(request, file.digest):
        return web.Response(status=web.HTTPNotModified.status_code, headers=headers)
    content_type = ASSET_TYPES[Path(name).suffix]
    return web.Response(body=file.body, content_type=content_type, charset="utf-8", headers=headers)


async def _static(request: web.Request) -> web.Response:
    """A viewer file at its own name, ``no-cache``: the pages served here (publish.html, fleet.html)
    are bookmarked at this address, and a page of another segcast (a node of another version behind
    the entrance's ``/all/static/``) loads its scripts here, untagged. The viewer's own page sends a
    browser to ``/`` (relative, so behind a path prefix too), with the token of the address."""
    name = request.match_info["name"]
    if name == "index.html":  # its relative links lead to the viewer's files from ``/`` only
        raise web.HTTPFound(f"../?{request.query_string}" if request.query_string else "../")
    if name == "embed.html":  # reads its stream from its own address
        raise error(web.HTTPNotFound, "a stream's embed page is /embed/<stream>")
    listing = await _listing(request, name)
    if name.endswith(".html"):  # a page, like publish.html: framed only where the others may be
        return _page(request, name, listing)
    return _asset(request, name, listing, "no-cache")


async def _tagged(request: web.Request) -> web.Response:
    """A script or stylesheet under a tag: cached for good under the current one. Under another (a
    page loaded just before an upgrade in place, or of a node of another version behind the
    entrance), the file as it is now, ``no-cache``: what that tag named is no longer here."""
    name = request.match_info["name"]
    if Path(name).suffix not in ASSET_SUFFIXES:
        raise error(web.HTTPNotFound, "no such file in the viewer")
    listing = await _listing(request, name)
    current = request.match_info["tag"] == listing.tag
    return _asset(request, name, listing, CACHED_FOR_GOOD if current else "no-cache")


async def _index(request: web.Request) -> web.Response:
    return _page(request, "index.html", await _listing(request, "index.html", page=True))


async def _embed(request: web.Request) -> web.Response:
    """One stream, no chrome; the page itself reads the stream id from its URL."""
    try:
        check_stream_id(request.match_info["stream"], "stream")
    except ValueError:
        raise error(web.HTTPNotFound, "no such stream") from None
    return _page(request, "embed.html", await _listing(request, "embed.html", page=True))


def viewer_settings(settings: Settings, class_names: dict[int, str], *, config_writable: bool) -> dict[str, object]:
    """What the viewer's forms may offer: only sources the API accepts, saving only to a file there is
    that segcast may write now (``config_writable``, as last looked at off the loop: a file made
    read-only is no longer offered a few seconds later), and as a zone's or line's ``classes`` only the
    model's class names (``class_names``), in class-id order.

    Which folders ``media_dirs`` names stays on the server: the viewer only learns that files are allowed.
    The class names are empty while they are unknown (a remote model whose server has not described it
    yet): the viewer then asks again rather than offer names the API would refuse.
    """
    writable = settings.config_path is not None and config_writable
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
    writable = app[save_refusal_key].known() is None
    return web.json_response(
        viewer_settings(app[settings_key], app[manager_key].worker.class_names, config_writable=writable)
    )
