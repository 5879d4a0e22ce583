"""A real ``segcast serve`` process, read from outside as its users read it: started on a free port of
127.0.0.1, its resident memory, its stream counts, its WebSocket viewers, and its stop.

One module for every benchmark that runs the server as a process of its own (bench/live.py,
bench/soak.py, bench/scaleout.py), so that all of them start it, wait for it and stop it the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
import psutil

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120.0
POLL_S = 0.25
STOP_TIMEOUT_S = 10.0
STDERR_TAIL_LINES = 20  # of a server that failed to start, in the error raised


@dataclass
class ServerProcess:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @functools.cached_property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.process.pid)

    def rss_mb(self) -> float:
        """Its resident memory now, MiB."""
        return float(self.ps.memory_info().rss) / 2**20


@contextlib.contextmanager
def started(arguments: list[str]) -> Iterator[ServerProcess]:
    """``segcast serve`` with ``arguments`` (its sources, model, options) on a free port, once it answers
    /healthz; stopped (and waited for) on the way out, whatever happened.

    Its stderr goes to a temporary file, not a pipe (which a server logging for minutes would fill and
    block on): a server that exits or never comes up raises with the last lines it wrote, its own reason.
    """
    port = free_port()
    command = [sys.executable, "-m", "server", "serve", *arguments, "--port", str(port)]
    # The repository first, so that a checkout that is not installed runs its own server.
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, "PYTHONPATH": path}
        )
        server = ServerProcess(port, process)
        try:
            try:
                asyncio.run(_wait_ready(server))
            except (RuntimeError, TimeoutError) as exc:
                raise type(exc)(f"{exc}; it said:\n{_tail(stderr)}") from None
            yield server
        finally:
            stop_process(process, STOP_TIMEOUT_S)


def _tail(log: IO[bytes], lines: int = STDERR_TAIL_LINES) -> str:
    """The last ``lines`` lines written to ``log`` (or a note that there were none)."""
    log.seek(0)
    text = log.read().decode(errors="replace").strip()
    return "\n".join(text.splitlines()[-lines:]) or "(nothing on stderr)"


def stop_process(process: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``; returns once it is gone, with its
    exit status where SIGTERM stopped it (None where it had to be killed). A process already gone is left be."""
    process.terminate()
    try:
        return process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_ready(server: ServerProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"segcast serve exited with status {server.process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{server.url}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(POLL_S)
    raise TimeoutError("segcast serve did not come up")


@dataclass
class Viewer:
    """One WebSocket viewer: counts the JPEGs it got, and records each one's latency if asked.

    Only frames that went through the model have a latency: one shown unanalysed while inference is
    unavailable (``"analysed": false``, docs/protocol.md) skips the model, and would time the outage as fast.
    """

    record: bool = False
    received: int = 0
    samples: list[tuple[float, float]] = field(default_factory=list)  # (arrival monotonic s, latency s)
    _capture: float | None = None

    def on_text(self, data: str) -> None:
        message = json.loads(data)
        if message.get("type") == "frame" and message.get("image"):
            self._capture = message["capture_time"] if message.get("analysed", True) else None

    def on_jpeg(self) -> None:
        self.received += 1
        if self.record and self._capture is not None:
            self.samples.append((time.monotonic(), time.time() - self._capture))
        self._capture = None


@contextlib.asynccontextmanager
async def viewers(server: ServerProcess, count: int, record: bool = False) -> AsyncIterator[list[Viewer]]:
    """``count`` viewers of every stream's annotated frames, each reading its socket in its own task."""
    async with aiohttp.ClientSession() as session:
        # compress=15 offers permessage-deflate, as browsers do; the server decides whether to use it.
        sockets = [await session.ws_connect(f"{server.url}/ws", max_msg_size=0, compress=15) for _ in range(count)]
        watchers = [Viewer(record) for _ in sockets]
        for ws in sockets:
            await ws.send_str(json.dumps({"type": "subscribe", "streams": ["*"]}))
        tasks = [asyncio.create_task(_read(ws, viewer)) for ws, viewer in zip(sockets, watchers, strict=True)]
        try:
            yield watchers
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


async def _read(ws: aiohttp.ClientWebSocketResponse, viewer: Viewer) -> None:
    async for message in ws:
        if message.type is aiohttp.WSMsgType.TEXT:
            viewer.on_text(message.data)
        elif message.type is aiohttp.WSMsgType.BINARY:
            viewer.on_jpeg()


@dataclass(frozen=True, slots=True)
class StreamCounts:
    """Frames of all a server's streams so far, from /api/streams: read from the sources (what the
    cameras offered), dropped by the pipeline (replaced before inference took them), and processed."""

    read: int
    dropped: int
    processed: int

    def __sub__(self, other: StreamCounts) -> StreamCounts:
        return StreamCounts(self.read - other.read, self.dropped - other.dropped, self.processed - other.processed)


async def stream_counts(session: aiohttp.ClientSession, server: ServerProcess) -> StreamCounts:
    async with session.get(f"{server.url}/api/streams") as response:
        body = await response.json()
    streams = body["streams"]
    return StreamCounts(
        *(sum(int(s[key]) for s in streams) for key in ("frames_read", "frames_dropped", "frames_processed"))
    )


async def processed_count(session: aiohttp.ClientSession, server: ServerProcess) -> int:
    return (await stream_counts(session, server)).processed


def check_processed(processed: int, what: str, wall_s: float) -> None:
    """Raise where no frame went through the model in a measured window (a remote model unavailable
    throughout, say): its latency and rates would measure the outage, not the pipeline."""
    if processed <= 0:
        raise RuntimeError(f"{what}: no frame was processed in {wall_s:.1f} s (inference unavailable?)")
