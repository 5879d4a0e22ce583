"""A webhook endpoint on 127.0.0.1 for tests: answers as told and keeps every attempt it was sent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from server.events.webhook import DELIVERY_HEADER, SIGNATURE_HEADER


@dataclass
class Receiver:
    """Answers with ``statuses`` in turn (then 200), or never, while ``hang``; a status other than 200
    comes with ``Retry-After: <retry_after>`` when that is set.

    ``requests`` has every attempt's delivery id and body, ``attempted_at`` its `time.monotonic`;
    ``bodies`` and ``signatures`` are those of the attempts answered 200, as sent.
    """

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    retry_after: str | None = None
    hang: bool = False
    requests: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    attempted_at: list[float] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    signatures: list[str | None] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        return len(self.requests)

    @property
    def deliveries(self) -> list[tuple[str | None, int]]:
        """Of each attempt: its delivery id and the id of the track it was about."""
        return [(delivery, body["id"]) for delivery, body in self.requests]

    async def handle(self, request: web.Request) -> web.Response:
        self.attempted_at.append(time.monotonic())
        self.requests.append((request.headers.get(DELIVERY_HEADER), json.loads(await request.read())))
        if self.hang:
            await asyncio.Event().wait()
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.bodies.append(await request.read())
            self.signatures.append(request.headers.get(SIGNATURE_HEADER))
            return web.Response()
        asking = {} if self.retry_after is None else {"Retry-After": self.retry_after}
        return web.Response(status=status, headers=asking)


@asynccontextmanager
async def serving() -> AsyncIterator[Receiver]:
    """A `Receiver` listening at its ``url`` (``/hook`` on a free port) until the block ends."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        yield receiver
    finally:
        await runner.cleanup()
