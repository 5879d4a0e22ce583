"""The entrances' time-outs: a node that accepts connections and never answers (its event loop
blocked, overloaded) gets the 502 that names it, and All cameras skips it, while a healthy stream
that is quiet for a while is never cut.

Every entrance (Compose's, Kubernetes', a split's) in a real nginx, as tests/test_deploy.py runs
them, in front of stand-in nodes on 127.0.0.1. A node's API time-out is a minute: the copy run
here has it shortened (`nginx_copy`), after the files are checked to say the durations meant.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from server.deploy.entrance import ALL_NODES_WAIT_S, NODE_ANSWER_S, NODE_PAGE_S, STREAM_PATHS, STREAM_QUIET_S
from server.http.access.source_checks import CHECK_TIMEOUT_S
from server.http.viewers import MIN_FPS
from server.http.ws import HEARTBEAT_S
from tests.test_deploy import (
    CLIENT_ADDRESSES,
    ENTRANCE_CONFS,
    ENTRANCE_IDS,
    WEB,
    StandInNode,
    client_at,
    entrance_conf,
    nested_locations,
    nginx_effective,
    nginx_routes,
    require_nginx,
    running_nginx,
)

#: What a node's API time-out runs with here, in place of `NODE_ANSWER_S`.
ANSWER_HERE = "1s"
#: How long the stand-in's stream stays quiet between its parts: longer than `ANSWER_HERE`.
QUIET_S = 2.0
PART = b"--frame\r\nContent-Type: image/jpeg\r\n\r\nnot a jpeg\r\n"

every_entrance = pytest.mark.parametrize("conf", ENTRANCE_CONFS, ids=ENTRANCE_IDS)


class HungNode:
    """A node whose event loop is blocked, as nginx sees it: it accepts connections, reads what it is
    sent, and never answers. Counts the connections it accepted."""

    def __init__(self) -> None:
        self.accepted = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        while await reader.read(65536):  # until nginx gives up and closes
            pass
        writer.close()

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Listening on 127.0.0.1 until the block ends; yields its ``host:port``."""
        server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        try:
            yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        finally:
            server.close()
            for writer in self._writers:
                writer.close()
            await server.wait_closed()


def quiet_streams() -> web.Application:
    """A stand-in node whose MJPEG and WebSocket are healthy and quiet for `QUIET_S` at a time."""

    async def mjpeg(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"})
        await response.prepare(request)
        await response.write(PART)
        await asyncio.sleep(QUIET_S)  # a stream at a low max_fps: nothing to send until its next part
        await response.write(PART)
        await response.write_eof(b"--frame--\r\n")
        return response

    async def ws(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            await socket.send_str(f"again: {message.data}")
        return socket

    app = web.Application()
    app.router.add_get("/api/streams/{stream}/mjpeg", mjpeg)
    app.router.add_get("/ws", ws)
    return app


@every_entrance
def test_every_entrance_bounds_a_nodes_answers_and_leaves_its_streams_long(conf: Path | str, tmp_path: Path) -> None:
    """An hour for every path held a client that long on a node that never answers; a minute for its
    streams would cut a healthy MJPEG at a low max_fps."""
    conf = entrance_conf(conf, tmp_path)
    assert NODE_ANSWER_S > 2 * CHECK_TIMEOUT_S, "adding a camera checks its source: that answer must get through"
    quietest_healthy_s = max(1 / MIN_FPS, HEARTBEAT_S)  # an MJPEG at the lowest max_fps; a WebSocket's pings
    assert quietest_healthy_s * 10 < STREAM_QUIET_S, "a healthy stream is never cut for being quiet"
    assert NODE_PAGE_S < ALL_NODES_WAIT_S < NODE_ANSWER_S
    for prefix in nginx_routes(conf):
        for directive in ("proxy_read_timeout", "proxy_send_timeout"):
            assert nginx_effective(conf, prefix, directive) == [[f"{NODE_ANSWER_S}s"]], (prefix, directive)
        (streams,) = nested_locations(conf, prefix)
        assert streams == f"^{prefix}{STREAM_PATHS}$"
        for directive in ("proxy_read_timeout", "proxy_send_timeout"):
            assert nginx_effective(conf, prefix, directive, streams) == [[f"{STREAM_QUIET_S}s"]], (prefix, directive)
    assert nginx_effective(conf, "/all/static/", "proxy_read_timeout") == [[f"{NODE_PAGE_S}s"]]
    assert nginx_effective(conf, "/all/static/", "proxy_next_upstream_timeout") == [[f"{ALL_NODES_WAIT_S}s"]]


@every_entrance
async def test_a_node_that_accepts_and_never_answers_gets_a_502_and_all_cameras_skips_it(
    conf: Path | str, tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    require_nginx()
    conf = entrance_conf(conf, tmp_path / "split")
    (hung, hung_at), (up, up_at) = nginx_routes(conf).items()
    node = StandInNode(up.strip("/"))
    up_port = (await aiohttp_server(node.app())).port
    hung_node = HungNode()
    async with hung_node.serving() as hung_address:
        targets = {hung_at: hung_address, up_at: f"127.0.0.1:{up_port}"}
        async with running_nginx(conf, tmp_path, targets, {f"{NODE_ANSWER_S}s": ANSWER_HERE}) as base:
            async with aiohttp.ClientSession() as session:
                for path in ("api/streams", "healthz"):
                    async with session.get(f"{base}{hung.lstrip('/')}{path}") as response:
                        assert response.status == 502, path
                        assert await response.json() == {
                            "error": f"the node at {hung} is not answering: it is stopped, starting or overloaded",
                            "node": hung,
                        }
            asked_before = hung_node.accepted
            fleet = (WEB / "fleet.html").read_text()
            for address in CLIENT_ADDRESSES:  # some are sent to the node that does not answer first
                async with client_at(address) as session, session.get(f"{base}all/static/fleet.html") as response:
                    assert response.status == 200, address
                    assert await response.text() == fleet
            assert hung_node.accepted > asked_before, "no client was sent to the node that does not answer"
    assert node.asked.count("/static/fleet.html") == len(CLIENT_ADDRESSES)


@every_entrance
async def test_a_healthy_stream_quiet_longer_than_an_answer_may_take_is_not_cut(
    conf: Path | str, tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    require_nginx()
    conf = entrance_conf(conf, tmp_path / "split")
    routes = nginx_routes(conf)
    server = await aiohttp_server(quiet_streams())
    targets = {target: f"127.0.0.1:{server.port}" for target in routes.values()}
    prefix = next(iter(routes))
    async with (
        running_nginx(conf, tmp_path, targets, {f"{NODE_ANSWER_S}s": ANSWER_HERE}) as base,
        aiohttp.ClientSession() as session,
    ):
        url = f"{base}{prefix.lstrip('/')}api/streams/cam-1/mjpeg?max_fps=0.01&token=s1.v"
        async with session.get(url) as response:
            assert response.status == 200
            assert await response.read() == PART * 2 + b"--frame--\r\n"
        async with session.ws_connect(f"{base}{prefix.lstrip('/')}ws") as socket:
            await socket.send_str("hello")
            assert (await socket.receive(timeout=QUIET_S * 5)).data == "again: hello"
            await asyncio.sleep(QUIET_S)  # a viewer with nothing to say, and a node with nothing to send
            await socket.send_str("still there")
            assert (await socket.receive(timeout=QUIET_S * 5)).data == "again: still there"
