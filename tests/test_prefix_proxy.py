"""The tests' path-prefix proxy (`tests.support.prefix_proxy`) itself: closing it ends a body it is still
streaming, as a test's teardown needs, rather than leaving the handler to aiohttp's 60 s shutdown limit."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from yarl import URL

from tests.support.prefix_proxy import PrefixProxy

#: Far below the runner's 60 s shutdown limit, far above a close that does not wait on a handler.
CLOSE_LIMIT_S = 30


async def test_closing_the_proxy_ends_a_body_waiting_for_its_upstream() -> None:
    first_part_sent = asyncio.Event()
    upstream_done = asyncio.Event()

    async def never_ending(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"part 1")
        first_part_sent.set()
        await upstream_done.wait()  # then nothing more, as an MJPEG stream of a camera gone quiet
        return response

    app = web.Application()
    app.router.add_get("/stream", never_ending)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    proxy = PrefixProxy(URL.build(scheme="http", host=host, port=port))
    entrance = await proxy.start()
    try:
        async with aiohttp.ClientSession() as session, session.get(entrance / "stream") as response:
            assert await response.content.readexactly(6) == b"part 1"
            await first_part_sent.wait()
            # The proxy's handler now waits on its upstream's body, which sends nothing more.
            async with asyncio.timeout(CLOSE_LIMIT_S):
                await proxy.close()
            # Ended by the proxy (the body's end written), not cut off by the runner at its limit.
            assert await response.content.read() == b""
            assert response.content.is_eof()
    finally:
        upstream_done.set()
        await runner.cleanup()
