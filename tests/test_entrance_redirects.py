"""After a split, a single box's addresses of one camera lead to the node that runs it.

Dashboards saved ``/embed/cam2`` in an ``<iframe>`` and ``/api/streams/cam2/snapshot.jpg`` in an
``<img>``; the box's address is the entrance's after a split, so those got its 404. Here the entrance
`nginx_config` writes, for nodes whose cameras it is given, runs in a real nginx.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from server.cli import main
from server.config import StreamConfig
from server.deploy.entrance import Listen, nginx_config
from server.deploy.split import split_config
from server.deploy.split_writing import write_split
from tests.support.nginx import NGINX, nginx_serving
from tests.support.polling import eventually
from tests.support.ports import free_port
from tests.test_deploy import require_nginx

#: Node 1 runs cam1, node 2 runs cam2: a box of two cameras split into two nodes.
TWO_NODES = (("cam1",), ("cam2",))
JPEG_START = b"\xff\xd8"
#: Long enough for a node to show its camera's first analysed frame on a CPU.
FIRST_FRAME_S = 60.0


def write_entrance(folder: Path, port: int, node_ports: Sequence[int], streams: Sequence[Sequence[str]]) -> Path:
    """The entrance's nginx.conf for nodes at ``node_ports`` running ``streams``, its files in ``folder``."""
    folder.mkdir(exist_ok=True)
    conf = folder / "nginx.conf"
    text = nginx_config(Listen("127.0.0.1", port), node_ports, "cams.toml", folder, streams)
    conf.write_text(("user root;\n" if os.geteuid() == 0 else "") + text)  # its workers write in folder
    return conf


@asynccontextmanager
async def entrance(
    folder: Path, streams: Sequence[Sequence[str]], node_ports: Sequence[int] | None = None
) -> AsyncIterator[str]:
    """A real nginx on the entrance for nodes running ``streams`` (at ``node_ports``; by default ports
    where nothing need listen: a redirect is the entrance's own answer); its base URL, no ``/`` after."""
    require_nginx()
    port = free_port()
    ports = node_ports if node_ports is not None else [free_port() for _ in streams]
    conf = write_entrance(folder, port, ports, streams)
    async with nginx_serving(conf, f"http://127.0.0.1:{port}/") as base:
        yield base.rstrip("/")


async def location(session: aiohttp.ClientSession, url: str, method: str = "GET") -> tuple[int, str | None]:
    async with session.request(method, url, allow_redirects=False) as response:
        return response.status, response.headers.get("Location")


async def test_a_cameras_embed_page_at_the_boxs_address_leads_to_its_node(tmp_path: Path) -> None:
    async with entrance(tmp_path, TWO_NODES) as base, aiohttp.ClientSession() as session:
        assert await location(session, f"{base}/embed/cam2?image=clean&max_fps=2") == (
            307,
            "/node-2/embed/cam2?image=clean&max_fps=2",
        )
        assert await location(session, f"{base}/embed/cam1") == (307, "/node-1/embed/cam1")


async def test_a_cameras_api_at_the_boxs_address_leads_to_its_node_whatever_the_method(tmp_path: Path) -> None:
    async with entrance(tmp_path, TWO_NODES) as base, aiohttp.ClientSession() as session:
        for path in (
            "/api/streams/cam2/snapshot.jpg?image=clean&max_width=320",
            "/api/streams/cam2/mjpeg?max_fps=1",
            "/api/streams/cam2/counts",
            "/api/streams/cam2/tracks",
            "/api/streams/cam2",
        ):
            assert await location(session, f"{base}{path}") == (307, f"/node-2{path}"), path
        # 307: a client following it sends its PATCH (or DELETE) and body again, to the node.
        assert await location(session, f"{base}/api/streams/cam2?persist=1", "PATCH") == (
            307,
            "/node-2/api/streams/cam2?persist=1",
        )


async def test_following_a_snapshots_redirect_gives_the_nodes_snapshot(
    tmp_path: Path, start_server: Callable[..., Awaitable[TestClient]]
) -> None:
    nodes = [await start_server(StreamConfig(ids[0], f"scene:?seed={i}")) for i, ids in enumerate(TWO_NODES, 1)]
    ports = [port for node in nodes if (port := node.server.port) is not None]
    async with entrance(tmp_path, TWO_NODES, ports) as base, aiohttp.ClientSession() as session:

        async def snapshot() -> tuple[str, bytes] | None:
            async with session.get(f"{base}/api/streams/cam2/snapshot.jpg?image=clean") as response:
                if response.status == 503:  # no frame of the scene yet
                    return None
                assert response.status == 200, await response.text()
                return str(response.url.path), await response.read()

        path, body = await eventually(snapshot, FIRST_FRAME_S, "node 2's first frame through the entrance")
        assert path == "/node-2/api/streams/cam2/snapshot.jpg"
        assert body.startswith(JPEG_START)
        async with session.get(f"{base}/api/streams/cam2") as response:
            assert response.status == 200
            assert (await response.json())["id"] == "cam2"


async def test_a_kiosks_wall_at_the_boxs_address_leads_to_every_nodes_wall(tmp_path: Path) -> None:
    """``/?wall=1&token=...`` on a kiosk screen was the box's wall; after a split it got the entrance's list
    of nodes. Now All cameras' wall, the query kept; ``/`` alone is still that list."""
    async with entrance(tmp_path, TWO_NODES) as base, aiohttp.ClientSession() as session:
        assert await location(session, f"{base}/?wall=1&token=s2.viewer.x") == (
            307,
            "all/static/fleet.html?nodes=node-1,node-2&wall=1&token=s2.viewer.x",
        )
        async with session.get(f"{base}/?wall=1") as response:  # relative: behind another proxy's prefix too
            assert str(response.url).startswith(f"{base}/all/static/fleet.html?nodes=node-1,node-2&wall=1")
        for asked in ("wall&token=abc", "wall=", "x=1&wall=true"):  # as the viewer reads it (web/wall.js)
            status, where = await location(session, f"{base}/?{asked}")
            assert (status, where) == (307, f"all/static/fleet.html?nodes=node-1,node-2&{asked}"), asked
        for page in ("/", "/?wall=0", "/?wallpaper=1", "/?nowall=1"):
            async with session.get(f"{base}{page}", allow_redirects=False) as response:
                assert response.status == 200, page
                assert "All cameras" in await response.text()


async def test_a_cameras_history_page_at_the_boxs_address_leads_to_its_node(tmp_path: Path) -> None:
    """``/static/history.html?stream=cam2`` (a bookmark of the box's history page) got the entrance's 404:
    now cam2's node, its filters kept; any other (every camera, one no node runs) node 1, which goes on in
    the box's history file and so holds every event from before the split."""
    async with entrance(tmp_path, TWO_NODES) as base, aiohttp.ClientSession() as session:
        page = "/static/history.html"
        assert await location(session, f"{base}{page}?stream=cam2&type=line_cross") == (
            307,
            f"/node-2{page}?stream=cam2&type=line_cross",
        )
        assert await location(session, f"{base}{page}?stream=cam1") == (307, f"/node-1{page}?stream=cam1")
        assert await location(session, f"{base}{page}?stream=cam22") == (307, f"/node-1{page}?stream=cam22")
        assert await location(session, f"{base}{page}") == (307, f"/node-1{page}")


async def test_an_id_no_node_runs_still_gets_the_404_that_names_the_nodes(tmp_path: Path) -> None:
    """Ids are matched whole: cam2's redirect is not cam22's, nor a prefix of it."""
    async with entrance(tmp_path, TWO_NODES) as base, aiohttp.ClientSession() as session:
        for path in ("/api/streams/cam22/counts", "/api/streams/cam", "/api/streams/cam2x"):
            async with session.get(f"{base}{path}", allow_redirects=False) as response:
                assert response.status == 404, path
                assert (await response.json())["nodes"] == ["/node-1/", "/node-2/"], path
        for path in ("/embed/cam3", "/embed/cam2/x", "/embed/cam"):
            async with session.get(f"{base}{path}", allow_redirects=False) as response:
                assert response.status == 404, path
                assert response.content_type == "text/html", path


async def test_a_camera_named_like_an_entrance_route_shadows_nothing(tmp_path: Path) -> None:
    async with entrance(tmp_path, (("healthz", "all"), ("node-1",))) as base, aiohttp.ClientSession() as session:
        assert await location(session, f"{base}/embed/node-1") == (307, "/node-2/embed/node-1")
        assert await location(session, f"{base}/api/streams/healthz/counts") == (
            307,
            "/node-1/api/streams/healthz/counts",
        )
        async with session.get(f"{base}/healthz") as response:
            assert (response.status, await response.text()) == (200, "ok\n")
        async with session.get(f"{base}/node-1/api/streams") as response:  # node 1's route: not listening
            assert response.status == 502
            assert (await response.json())["node"] == "/node-1/"


async def test_after_a_camera_moves_its_redirect_follows_it(tmp_path: Path) -> None:
    """Each split writes the entrance anew, and its printed ``-s reload`` makes nginx take it."""
    require_nginx()
    port, node_ports = free_port(), [free_port(), free_port()]
    conf = write_entrance(tmp_path, port, node_ports, TWO_NODES)
    async with nginx_serving(conf, f"http://127.0.0.1:{port}/"), aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}/embed/cam2"
        assert await location(session, url) == (307, "/node-2/embed/cam2")
        write_entrance(tmp_path, port, node_ports, (("cam1", "cam2"), ()))
        log = tmp_path / "error.log"
        command = [str(NGINX), "-e", str(log), "-p", str(tmp_path), "-c", str(conf), "-s", "reload"]
        reload = await asyncio.create_subprocess_exec(*command)
        assert await reload.wait() == 0, log.read_text()

        async def moved() -> bool:
            return await location(session, url) == (307, "/node-1/embed/cam2")

        await eventually(moved, what="the reloaded entrance to send cam2 to node 1")


def test_an_id_nginx_could_misread_is_refused(tmp_path: Path) -> None:
    """segcast's ids are letters, digits, - and _; anything else could end a location or name a variable."""
    for stream_id in ("cam 2", "cam$2", "cam;2", "cam{2}"):
        with pytest.raises(ValueError, match="cannot go in nginx"):
            nginx_config(Listen("127.0.0.1", 8080), [8081], "cams.toml", tmp_path, [(stream_id,)])


async def test_a_resplit_that_moves_a_camera_moves_its_redirect(tmp_path: Path) -> None:
    """Through `segcast split` itself: the entrance it writes sends each camera to its node, and anew."""
    require_nginx()
    port = free_port()
    config = tmp_path / "cams.toml"
    config.write_text(
        f"[server]\nport = {port}\n\n"
        + "".join(f'[[streams]]\nid = "cam{i}"\nuri = "scene:?seed={i}"\n\n' for i in (1, 2))
    )
    split = split_config(config, 2)
    write_split(split, overwrite=False)
    conf = split.entrance_path
    if os.geteuid() == 0:
        conf.write_text("user root;\n" + conf.read_text())
    async with nginx_serving(conf, f"http://127.0.0.1:{port}/"), aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}/embed/cam2?max_fps=2"
        assert await location(session, url) == (307, "/node-2/embed/cam2?max_fps=2")
        assert await location(session, f"http://127.0.0.1:{port}/api/streams/cam2/snapshot.jpg") == (
            307,
            "/node-2/api/streams/cam2/snapshot.jpg",
        )
        # cam2 moved to node 1 by hand (as through the API with ?persist=1), then a split into one node
        assert main(["split", str(config), "--nodes", "1", "--force"]) == 0
        if os.geteuid() == 0:
            conf.write_text("user root;\n" + conf.read_text())
        reload = await asyncio.create_subprocess_exec(
            str(NGINX), "-e", str(split.entrance_state / "error.log"), "-c", str(conf), "-s", "reload"
        )
        assert await reload.wait() == 0

        async def moved() -> bool:
            return await location(session, url) == (307, "/node-1/embed/cam2?max_fps=2")

        await eventually(moved, what="the re-split entrance to send cam2 to node 1")


async def test_the_entrances_404_for_a_snapshot_path_is_json_as_it_says(tmp_path: Path) -> None:
    """nginx typed its own answer by the path's extension: the JSON 404 of a ``.jpg`` said image/jpeg."""
    async with entrance(tmp_path, TWO_NODES) as base, aiohttp.ClientSession() as session:
        async with session.get(f"{base}/api/streams/cam9/snapshot.jpg") as response:
            assert response.status == 404
            assert response.content_type == "application/json"
            assert (await response.json())["nodes"] == ["/node-1/", "/node-2/"]
        async with session.get(f"{base}/cam9.jpg") as response:
            assert response.status == 404
            assert response.content_type == "text/html"


#: Node 1 runs cam1 and cam3, node 2 runs cam2; the entrance's map of them (as in tests/test_fleet_map.py).
PLACEMENT = (("cam1", "cam3"), ("cam2",))
MAP = {"nodes": [{"name": "node-1", "streams": ["cam1", "cam3"]}, {"name": "node-2", "streams": ["cam2"]}]}
VIEWER_TOKEN = "a-viewer-token-of-the-fleet"


async def test_the_fleet_map_is_given_only_to_a_token_the_nodes_take_while_one_node_is_down(
    tmp_path: Path, start_server: Callable[..., Awaitable[TestClient]]
) -> None:
    """/fleet.json named every camera and the node running it to anyone reaching the entrance, where each
    node's /api/streams asks a token. Node 1 never started: the entrance asks node 2 whether a token holds."""
    node_2 = await start_server(StreamConfig("cam2", "scene:?seed=2"), viewer_tokens=(VIEWER_TOKEN,))
    bearer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    async with (
        entrance(tmp_path, PLACEMENT, [free_port(), node_2.port]) as base,
        aiohttp.ClientSession() as session,
    ):
        for headers, query in (({}, ""), ({"Authorization": "Bearer not-a-token"}, ""), ({}, "?token=s1.forged")):
            async with session.get(f"{base}/fleet.json{query}", headers=headers) as response:
                assert response.status == 401, (headers, query)
                assert response.headers["WWW-Authenticate"] == 'Bearer realm="segcast"'
                assert "cam" not in await response.text()
        async with session.get(f"{base}/fleet.json", headers=bearer) as response:
            assert response.status == 200
            assert await response.json() == MAP
        minted = await node_2.post("/api/tokens", json={"role": "viewer"}, headers=bearer)
        signed = (await minted.json())["token"]  # what All cameras carries in its address
        async with session.get(f"{base}/fleet.json", params={"token": signed}) as response:
            assert response.status == 200
            assert await response.json() == MAP


async def test_the_fleet_map_stays_open_where_the_nodes_ask_no_token(
    tmp_path: Path, start_server: Callable[..., Awaitable[TestClient]]
) -> None:
    node_2 = await start_server(StreamConfig("cam2", "scene:?seed=2"))
    async with (
        entrance(tmp_path, PLACEMENT, [free_port(), node_2.port]) as base,
        aiohttp.ClientSession() as session,
        session.get(f"{base}/fleet.json") as response,
    ):
        assert response.status == 200
        assert await response.json() == MAP
