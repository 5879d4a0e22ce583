"""The viewer's files while the install under a running server changes: a reinstall that removed
them says so (it was an empty octet-stream 404 a browser downloaded as a file), an upgrade in place
is served as it now is."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

REPO = Path(__file__).resolve().parent.parent
Start = Callable[..., Awaitable[TestClient]]


async def test_viewer_files_removed_under_the_server_say_to_restart_it(
    start_server: Start, viewer_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``pip install -e .`` over a running ``pip install .`` removed the folder: Chromium downloaded ``/``."""
    client = await start_server()
    assert (await client.get("/")).status == 200
    shutil.rmtree(viewer_folder)
    caplog.set_level(logging.ERROR, logger="server.http.pages")
    for path in ("/", "/static/app.js", "/embed/cam", "/static/nope.js"):
        response = await client.get(path)
        assert response.status == 503, path
        assert response.content_type == "application/json", path
        said = (await response.json())["error"]
        assert "viewer's files are gone" in said and "restart segcast" in said, said
        assert str(viewer_folder) not in said, "the public pages do not tell where segcast is installed"
    [logged] = [r for r in caplog.records if r.name == "server.http.pages"]  # once a minute, not per request
    assert logged.levelno == logging.ERROR
    assert str(viewer_folder) in logged.getMessage() and "restart segcast" in logged.getMessage()


async def test_a_page_missing_from_the_viewer_folder_says_to_restart(start_server: Start, viewer_folder: Path) -> None:
    client = await start_server()
    (viewer_folder / "index.html").unlink()
    response = await client.get("/")
    assert response.status == 503 and response.content_type == "application/json"


async def test_a_name_the_viewer_folder_lacks_is_a_json_404(start_server: Start, viewer_folder: Path) -> None:
    client = await start_server()
    response = await client.get("/static/nope.js")
    assert response.status == 404
    assert response.content_type == "application/json" and "error" in await response.json()


async def test_an_upgrade_in_place_is_served_as_it_now_is(start_server: Start, viewer_folder: Path) -> None:
    """The folder stays: its changed and added files are what the next page load gets (no-cache)."""
    client = await start_server()
    assert (await client.get("/static/app.js")).status == 200
    (viewer_folder / "app.js").write_text("// the new viewer\n")
    (viewer_folder / "added.js").write_text("// a module the new viewer brought\n")
    assert await (await client.get("/static/app.js")).text() == "// the new viewer\n"
    added = await client.get("/static/added.js")
    assert added.status == 200 and "javascript" in added.headers["Content-Type"]
