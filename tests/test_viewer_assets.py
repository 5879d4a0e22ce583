"""The viewer's scripts and stylesheet under a tag that changes with its files (server/http/pages.py).

segcast before 2026-12-04 served its scripts with no ``Cache-Control``: a browser kept them by
heuristic freshness, and after an upgrade the new page ran the old ``app.js`` without asking for it.
A page now loads them from ``/static/<tag>/``: a URL no older segcast served, cached for good while
the tag is current. A real headless Chromium where the behaviour is about a browser's cache.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings
from server.http import pages
from server.inference.models import BUNDLED_MODEL
from tests.conftest import CHROMIUM
from tests.support.browser import WAIT_MS, Console, open_url, require_browser
from tests.support.prefix_proxy import PrefixProxy

require_browser()

Start = Callable[..., Awaitable[TestClient]]
ClientFactory = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent
#: The pages segcast serves, by the address each is served at.
PAGES = ("/", "/embed/cam", "/static/publish.html", "/static/fleet.html", "/static/history.html")
#: A page's scripts and stylesheets, as its HTML names them.
ASSET_REFERENCE = re.compile(r'(?:src|href)="([^"]+\.(?:js|css))"')
#: A file under a tag, and the tag.
TAGGED = re.compile(r"/static/(?P<tag>[0-9a-f]{12})/[^/]+$")
CACHED_FOR_GOOD = "public, max-age=31536000, immutable"

#: The older segcast's page: its scripts at static/<name>, as every version before the tag's had them.
OLDER_INDEX = """<!doctype html>
<link rel="stylesheet" href="static/style.css">
<script type="module" src="static/app.js"></script>
<span id="connection">connecting…</span>
"""
#: What the older segcast's app.js leaves behind when it runs.
OLDER_RAN = "document.documentElement.dataset.viewer === 'older segcast'"
#: As those versions served a script: validators, no Cache-Control, last changed long ago.
OLDER_SCRIPT_HEADERS = {"Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT", "ETag": '"older"'}
CONNECTED = "document.querySelector('#connection')?.textContent === 'connected'"


def older_segcast() -> web.Application:
    """A stand-in for segcast before 2026-12-04: its page ``no-cache``, its scripts cacheable by heuristics."""

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=OLDER_INDEX, content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def script(_: web.Request) -> web.Response:
        ran = "document.documentElement.dataset.viewer = 'older segcast';\n"
        return web.Response(text=ran, content_type="text/javascript", headers=OLDER_SCRIPT_HEADERS)

    async def stylesheet(_: web.Request) -> web.Response:
        return web.Response(text="body { color: red; }\n", content_type="text/css", headers=OLDER_SCRIPT_HEADERS)

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/static/app.js", script)
    app.router.add_get("/static/style.css", stylesheet)
    return app


async def assets_of(client: TestClient, path: str) -> list[str]:
    """The paths of the scripts and stylesheets the page at ``path`` loads."""
    page = await client.get(path)
    assert page.status == 200, path
    return [urljoin(path, reference) for reference in ASSET_REFERENCE.findall(await page.text())]


async def current_tag(client: TestClient) -> str:
    """The tag the viewer's page loads its scripts under."""
    [script] = [path for path in await assets_of(client, "/") if path.endswith("/app.js")]
    tagged = TAGGED.search(script)
    assert tagged, f"the page loads {script}, under no tag"
    return tagged["tag"]


async def test_a_browser_that_ran_an_older_segcast_runs_this_versions_scripts_after_the_upgrade(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """The reported bug: with a profile that ran an older segcast, the upgraded server's page ran the
    old app.js from the cache (the server's log showed no /static/ request), a broken mix."""
    from playwright import async_api as playwright

    older = web.AppRunner(older_segcast(), access_log=None)
    await older.setup()
    site = web.TCPSite(older, "127.0.0.1", 0)
    await site.start()
    port = older.addresses[0][1]
    url = f"http://127.0.0.1:{port}/"

    async with playwright.async_playwright() as driver:
        context = await driver.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM)
        try:
            page = await context.new_page()
            await page.goto(url)
            await page.wait_for_function(f"() => {OLDER_RAN}", timeout=WAIT_MS)
            await older.cleanup()

            asked: list[str] = []

            @web.middleware
            async def note(
                request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
            ) -> web.StreamResponse:
                asked.append(request.path)
                return await handler(request)

            upgraded = create_app(Settings(model=str(BUNDLED_MODEL)))
            upgraded.middlewares.append(note)
            client = await aiohttp_client(upgraded, server_kwargs={"port": port})  # the same address
            console = Console(page)
            await page.goto(url)
            await page.wait_for_function(f"() => {OLDER_RAN} || {CONNECTED}", timeout=WAIT_MS)
            assert not await page.evaluate(f"() => {OLDER_RAN}"), "the older segcast's app.js ran from the cache"
            assert await page.evaluate(f"() => {CONNECTED}"), "this version's viewer runs"
            assert f"/static/{await current_tag(client)}/app.js" in asked, "the upgraded server was asked for it"
            assert console.errors == []
        finally:
            await context.close()


async def test_every_page_loads_its_scripts_and_stylesheet_under_the_current_tag(start_server: Start) -> None:
    client = await start_server()
    tag = await current_tag(client)
    for page in PAGES:
        assets = await assets_of(client, page)
        assert any(path.endswith(".js") for path in assets) and any(path.endswith(".css") for path in assets), page
        for path in assets:
            tagged = TAGGED.search(path)
            assert tagged and tagged["tag"] == tag, f"{page} loads {path}"
            response = await client.get(path)
            assert response.status == 200, path
            assert response.headers["Cache-Control"] == CACHED_FOR_GOOD, path


async def test_a_file_under_another_tag_is_the_current_one_and_asked_for_again(start_server: Start) -> None:
    """A page loaded just before an upgrade in place, or one of a node of another version behind the
    entrance's ``/all/static/``, asks under a tag that is not current: it gets the file as it is now,
    which must not be kept under that tag for good. At its own name a file is ``no-cache``, as it was."""
    client = await start_server()
    current = await client.get(f"/static/{await current_tag(client)}/app.js")
    for path in ("/static/0123456789ab/app.js", "/static/app.js"):
        response = await client.get(path)
        assert response.status == 200, path
        assert response.headers["Cache-Control"] == "no-cache", path
        assert await response.read() == await current.read(), path


async def test_only_the_viewers_scripts_and_stylesheet_are_served_under_a_tag(start_server: Start) -> None:
    """A page under a tag would have its relative links one folder off: pages are served at their own address."""
    client = await start_server()
    tag = await current_tag(client)
    for path in (f"/static/{tag}/publish.html", f"/static/{tag}/nope.js", f"/static/{tag}/..%2Fpyproject.toml"):
        assert (await client.get(path)).status == 404, path


async def test_a_changed_file_changes_the_tag_of_every_page(start_server: Start, viewer_folder: Path) -> None:
    """An upgrade in place that changed a script alone: every page names its scripts under a new tag,
    and a page revalidated by its old ETag is sent again rather than a 304 that would keep the old tag."""
    client = await start_server()
    before = await current_tag(client)
    etags = {}
    for path in PAGES:
        page = await client.get(path)
        await page.read()
        etags[path] = page.headers["ETag"]
    (viewer_folder / "app.js").write_text("// the new viewer\n")
    after = await current_tag(client)
    assert after != before
    for path, etag in etags.items():
        again = await client.get(path, headers={"If-None-Match": etag})
        assert again.status == 200, path
        assets = [urljoin(path, reference) for reference in ASSET_REFERENCE.findall(await again.text())]
        tags = {tagged["tag"] if (tagged := TAGGED.search(asset)) else None for asset in assets}
        assert tags == {after}, f"{path} loads {assets}"
        unchanged = await client.get(path, headers={"If-None-Match": again.headers["ETag"]})
        assert unchanged.status == 304 and unchanged.headers["Cache-Control"] == "no-cache", path
    old = await client.get(f"/static/{before}/app.js")
    assert await old.text() == "// the new viewer\n" and old.headers["Cache-Control"] == "no-cache"
    new = await client.get(f"/static/{after}/app.js")
    assert await new.text() == "// the new viewer\n" and new.headers["Cache-Control"] == CACHED_FOR_GOOD


async def test_a_file_replaced_after_its_tag_was_made_is_not_sent_under_that_tag(
    start_server: Start, viewer_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The viewer's files were hashed for the tag, then the file asked for opened again to be sent:
    replaced in between (an upgrade in place), its new bytes went out under the old tag, cached for
    good by every browser that asked then. What goes out is what the tag was made of."""
    client = await start_server()
    tag = await current_tag(client)
    script = viewer_folder / "app.js"
    hashed = script.read_bytes()
    listing = pages.ViewerFolder.listing

    def listed_then_replaced(folder: pages.ViewerFolder) -> pages.ViewerListing | None:
        listed = listing(folder)
        script.write_text("// the new viewer\n")
        return listed

    monkeypatch.setattr(pages.ViewerFolder, "listing", listed_then_replaced)
    response = await client.get(f"/static/{tag}/app.js")
    assert response.status == 200
    assert response.headers["Cache-Control"] == CACHED_FOR_GOOD
    assert await response.read() == hashed


async def test_a_script_is_revalidated_by_its_contents_not_its_size_and_time(
    start_server: Start, viewer_folder: Path
) -> None:
    """aiohttp's FileResponse made its ETag of a file's size and time, and honoured If-Modified-Since:
    a script changed in place keeping both (a package built with fixed timestamps) was answered 304,
    and the browser ran the one it had. The ETag of a file's ``no-cache`` answers is its SHA-256."""
    client = await start_server()
    script = viewer_folder / "app.js"
    paths = ("/static/app.js", "/static/0123456789ab/app.js")  # at its own name, under another tag
    validators = {}
    for path in paths:
        first = await client.get(path)
        assert first.status == 200, path
        assert first.headers["ETag"] == f'"{hashlib.sha256(await first.read()).hexdigest()}"', path
        validators[path] = {name: first.headers[name] for name in ("ETag", "Last-Modified") if name in first.headers}
        same = await client.get(path, headers={"If-None-Match": first.headers["ETag"]})
        assert same.status == 304, path
        assert same.headers["ETag"] == first.headers["ETag"] and same.headers["Cache-Control"] == "no-cache", path

    times = script.stat()
    text = script.read_text()
    script.write_text(text.replace("const", "let  ", 1))  # the same size
    os.utime(script, ns=(times.st_atime_ns, times.st_mtime_ns))  # and the same time
    for path, sent in validators.items():
        asked = {"If-None-Match": sent["ETag"]}
        if "Last-Modified" in sent:
            asked["If-Modified-Since"] = sent["Last-Modified"]
        again = await client.get(path, headers=asked)
        assert again.status == 200, path
        assert await again.read() == script.read_bytes(), path


async def test_scripts_and_stylesheets_say_their_type_and_charset(start_server: Start) -> None:
    client = await start_server()
    tag = await current_tag(client)
    for name, content_type in (("app.js", "text/javascript"), ("style.css", "text/css")):
        for path in (f"/static/{name}", f"/static/{tag}/{name}"):
            response = await client.get(path)
            assert (response.content_type, response.charset) == (content_type, "utf-8"), path


def test_the_same_viewer_has_the_same_tag_wherever_and_whenever_its_files_were_written(tmp_path: Path) -> None:
    """A tag made of the files' sizes and times would differ on each node installed from the same
    package (a page of the entrance's all/static/ would then get no script cached for good), and stay
    the same for a change that kept a file's size in a package built with fixed timestamps."""
    first, second = tmp_path / "node-1", tmp_path / "node-2"
    shutil.copytree(pages.web_root(), first)
    shutil.copytree(pages.web_root(), second, copy_function=shutil.copyfile)  # other times
    tag = pages.ViewerFolder(first).listing()
    assert tag is not None and tag == pages.ViewerFolder(second).listing()

    folder = pages.ViewerFolder(second)
    assert folder.listing() == tag
    script = second / "app.js"
    times = script.stat()
    text = script.read_text()
    script.write_text(text.replace("const", "let  ", 1))  # the same size
    os.utime(script, ns=(times.st_atime_ns, times.st_mtime_ns))  # and the same time
    changed = folder.listing()
    assert changed is not None and changed.tag != tag.tag


#: The page's module script, and segcast's root as connection.js finds it when loaded beside that
#: script (under the tag) and at its own name (as a page of another version loads it).
ROOTS = """async () => {
  const script = document.querySelector("script[type=module]").src;
  const tagged = await import(new URL("connection.js", script));
  const untagged = await import(new URL("static/connection.js", document.baseURI));
  return [script, tagged.APP_ROOT.href, untagged.APP_ROOT.href];
}"""


@pytest.mark.parametrize("prefix", ["/node-1", "/static"])
async def test_the_scripts_find_segcasts_root_above_the_tag_behind_a_path_prefix(
    start_server: Start, browser: Any, prefix: str
) -> None:
    """A prefix named like segcast's own static/ folder must not be taken for it."""
    client = await start_server()
    proxy = PrefixProxy(client.make_url("/"), prefix)
    entrance = str(await proxy.start())
    try:
        page, console = await open_url(browser, entrance)
        await page.wait_for_function(f"() => {CONNECTED}", timeout=WAIT_MS)
        script, tagged_root, untagged_root = await page.evaluate(ROOTS)
        assert re.fullmatch(rf"{re.escape(entrance)}static/[0-9a-f]{{12}}/app\.js", script), script
        assert tagged_root == untagged_root == entrance
        assert proxy.strays == [] and console.errors == []
    finally:
        await proxy.close()


async def test_all_cameras_finds_the_nodes_beside_its_folder_of_the_entrance(start_server: Start, browser: Any) -> None:
    """At the entrance's ``/all/static/fleet.html``, its scripts under ``/all/static/<tag>/``: the
    listed nodes are the entrance's folders beside ``/all/``, not beside ``/all/static/``."""
    client = await start_server()
    proxy = PrefixProxy(client.make_url("/"), "/all")
    entrance = await proxy.start()
    try:
        page = await browser.new_page()
        await page.goto(f"{entrance}static/fleet.html?nodes=node-1,node-2")
        await page.wait_for_selector('#fleet-nodes a[data-node="node-2"]', timeout=WAIT_MS)
        links = await page.eval_on_selector_all("#fleet-nodes a", "(links) => links.map((a) => a.href)")
        root = str(entrance.with_path("/"))
        assert links == [f"{root}node-1/", f"{root}node-2/"]
        assert any(TAGGED.search(path) and path.endswith("/fleet.js") for path in proxy.forwarded), proxy.forwarded
    finally:
        await proxy.close()


async def test_the_viewers_page_at_its_file_name_sends_the_browser_to_the_viewer_with_its_token(
    start_server: Start,
) -> None:
    """At ``/static/index.html`` the page's relative links named ``/static/static/<tag>/app.js``: a
    viewer that never ran. It sends the browser where they work, keeping the address's token."""
    client = await start_server()
    for query, location in (("", "../"), ("?token=abc", "../?token=abc")):
        response = await client.get(f"/static/index.html{query}", allow_redirects=False)
        assert response.status == 302
        assert response.headers["Location"] == location
        assert urljoin(f"/static/index.html{query}", location) == f"/{query}"
    embed = await client.get("/static/embed.html")
    assert embed.status == 404
    assert "/embed/<stream>" in (await embed.json())["error"]


async def test_a_script_asked_for_if_none_match_any_is_not_sent_again(start_server: Start) -> None:
    """RFC 9110 13.1.2: ``If-None-Match: *`` is false while the file has any current representation, so
    it is answered 304 as the file's own ETag is."""
    client = await start_server()
    etag = (await client.get("/static/app.js")).headers["ETag"]
    for asked in ("*", etag):
        response = await client.get("/static/app.js", headers={"If-None-Match": asked})
        assert response.status == 304, asked
