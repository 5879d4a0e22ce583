"""A real nginx for tests of the entrances and README's proxy examples, stopped however the test ends."""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from tests.support.polling import eventually

NGINX = Path(shutil.which("nginx") or "/usr/sbin/nginx")  # /usr/sbin is not on every user's PATH
NGINX_STOP_S = 10.0


@asynccontextmanager
async def nginx_serving(config: Path, base: str) -> AsyncIterator[str]:
    """nginx running ``config`` (its files in the config's folder) until the block ends; yields
    ``base`` once its ``healthz`` answers 200 (any certificate taken: tests' own are self-signed)."""
    folder = config.parent
    log = folder / "error.log"
    process = await asyncio.create_subprocess_exec(
        str(NGINX), "-e", str(log), "-p", str(folder), "-c", str(config), "-g", "daemon off;"
    )
    try:
        async with aiohttp.ClientSession() as session:

            async def answers() -> bool:
                if process.returncode is not None:
                    raise AssertionError(f"nginx exited with {process.returncode}: {log.read_text()}")
                try:
                    async with session.get(f"{base}healthz", ssl=False) as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await eventually(answers, what="nginx to answer")
        yield base
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), NGINX_STOP_S)
            except TimeoutError:
                process.kill()
                await process.wait()
