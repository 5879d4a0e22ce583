"""HTTP requests written byte by byte, for tests of what no well-behaved client library would send.

aiohttp's client checks and encodes what it sends (header values must be text, request lines are
built for you); a hostile client sends whatever bytes it likes, and these helpers do too.
"""

from __future__ import annotations

import asyncio

READ_TIMEOUT_S = 30.0


async def raw_request(host: str, port: int, request: bytes) -> bytes:
    """Send ``request`` as it is and return everything the server answers until it closes.

    ``request`` should say ``Connection: close`` (or be refused), so that the server ends the answer.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), READ_TIMEOUT_S)
    finally:
        writer.close()


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP answer (``HTTP/1.1 401 Unauthorized`` -> 401)."""
    return int(answer.split(b" ", 2)[1])
