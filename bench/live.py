"""Measurements of a real ``segcast serve`` process through its WebSocket: latency, fan-out, memory.

The server runs as its own process (so its CPU time and resident size are its alone) on a free port;
viewers are WebSocket clients in this process, subscribed to the annotated frames exactly as the
browser viewer is. Latency is capture-to-viewer: the frame's ``capture_time`` (the moment its reader
decoded it) to the moment its JPEG arrived here; both clocks are this machine's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import statistics
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

START_TIMEOUT_S = 120.0
POLL_S = 0.25
RSS_SAMPLE_S = 1.0
WARMUP_S = 5.0  # model warm-up and first allocations, left out of every figure
STDERR_TAIL_LINES = 20  # of a server that failed to start, in the error raised


@dataclass
class ServerProcess:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.process.pid)


@contextlib.contextmanager
def serve(model: str, video: Path, streams: int, imgsz: int, config: Path | None = None) -> Iterator[ServerProcess]:
    """``segcast serve`` with ``streams`` looping copies of ``video`` at its native rate, like cameras
    (and the settings of ``config``, a config file, where given).

    Its stderr goes to a temporary file, not a pipe (which a server logging for minutes would fill and
    block on): a server that exits or never comes up raises with the last lines it wrote, its own reason.
    """
    port = free_port()
    sources = [f"--source=cam{i}={video}" for i in range(streams)]
    command = [sys.executable, "-m", "server", "serve", *sources, "--loop", "--model", model]
    command += ["--imgsz", str(imgsz), "--port", str(port), "--log-level", "WARNING"]
    command += ["--config", str(config)] if config is not None else []
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        server = ServerProcess(port, process)
        try:
            try:
                asyncio.run(_wait_ready(server))
            except (RuntimeError, TimeoutError) as exc:
                raise type(exc)(f"{exc}; it said:\n{_tail(stderr)}") from None
            yield server
        finally:
            stop_process(process, 10.0)


def _tail(log: IO[bytes], lines: int = STDERR_TAIL_LINES) -> str:
    """The last ``lines`` lines written to ``log`` (or a note that there were none)."""
    log.seek(0)
    text = log.read().decode(errors="replace").strip()
    return "\n".join(text.splitlines()[-lines:]) or "(nothing on stderr)"


def stop_process(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``; returns once it is gone."""
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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
    """One WebSocket viewer: counts the JPEGs it got, and records each one's latency if asked."""

    record: bool = False
    received: int = 0
    samples: list[tuple[float, float]] = field(default_factory=list)  # (arrival monotonic s, latency s)
    _capture: float | None = None

    def on_text(self, data: str) -> None:
        message = json.loads(data)
        if message.get("type") == "frame" and message.get("image"):
            self._capture = message["capture_time"]

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


@dataclass(frozen=True, slots=True)
class LatencyRun:
    streams: int
    seconds: float
    p50_ms: float
    p95_ms: float
    first_p50_ms: float | None  # over the first third of the measured time; None if no frame arrived in it
    last_p50_ms: float | None  # over the last third
    rss_mb: list[tuple[float, float]]  # (seconds since start, resident MiB)
    latency: list[tuple[float, float]]  # (seconds since start, ms)
    processed_fps: float
    # What the cameras offered over the same time, and how many of those frames the pipeline dropped
    # unprocessed (a stream's slot replaced before inference took it): none of them has a latency.
    # None in runs saved before they were recorded.
    offered_fps: float | None = None
    frames_offered: int | None = None
    frames_dropped: int | None = None

    @property
    def flat(self) -> bool:
        """Latency did not grow: the last third's median within 20% (or 10 ms) of the first third's.

        A third in which no frame reached the viewer is not flat: the viewer was starved for it.
        """
        if self.first_p50_ms is None or self.last_p50_ms is None:
            return False
        return self.last_p50_ms <= max(self.first_p50_ms * 1.2, self.first_p50_ms + 10.0)

    @property
    def dropped_share(self) -> float | None:
        """The share of the frames offered that the pipeline dropped; None where not recorded (or none offered)."""
        if self.frames_dropped is None or not self.frames_offered:
            return None
        return self.frames_dropped / self.frames_offered

    @property
    def rss_growth(self) -> float:
        """Growth of the resident size from the first to the last tenth of the run (after warm-up)."""
        return _growth([mb for _, mb in self.rss_mb])

    @property
    def rss_growth_second_half(self) -> float:
        """The same over the second half only: allocators warming up to every batch size are left out."""
        values = [mb for _, mb in self.rss_mb]
        return _growth(values[len(values) // 2 :])


def _growth(values: list[float]) -> float:
    tenth = max(1, len(values) // 10)
    first, last = statistics.mean(values[:tenth]), statistics.mean(values[-tenth:])
    return (last - first) / first


def latency_run(
    model: str,
    video: Path,
    streams: int,
    imgsz: int,
    seconds: float,
    config: Path | None = None,
    warm_from_first_frame: bool = False,
) -> LatencyRun:
    """Capture-to-viewer latency of one viewer of ``streams`` camera-rate streams, and the server's RSS.

    The warm-up counts from the server answering, or with ``warm_from_first_frame`` from the viewer's
    first frame: several nodes loading their models onto one GPU at once took longer than `WARMUP_S`.
    """
    with serve(model, video, streams, imgsz, config) as server:
        return asyncio.run(_latency(server, streams, seconds, warm_from_first_frame))


async def _latency(
    server: ServerProcess, streams: int, seconds: float, warm_from_first_frame: bool = False
) -> LatencyRun:
    """Processed and offered fps are over the time measured between the two counts, which runs past
    ``seconds`` by up to one `RSS_SAMPLE_S`; latency's thirds are of that time too."""
    ps = server.ps
    async with aiohttp.ClientSession() as session, viewers(server, 1, record=True) as (viewer,):
        if warm_from_first_frame:
            await _first_frame(viewer, streams)
        await asyncio.sleep(WARMUP_S)
        viewer.samples.clear()
        started = time.monotonic()
        before = await stream_counts(session, server)
        rss: list[tuple[float, float]] = []
        while (elapsed := time.monotonic() - started) < seconds:
            rss.append((elapsed, ps.memory_info().rss / 2**20))
            await asyncio.sleep(RSS_SAMPLE_S)
        wall = time.monotonic() - started
        counts = await stream_counts(session, server) - before
    samples = [(t - started, latency * 1000) for t, latency in viewer.samples if t >= started]
    values = [ms for _, ms in samples]
    if not values:
        raise RuntimeError(f"latency run, {streams} stream(s): no frame reached the viewer in {wall:.1f} s")
    third = wall / 3
    first = [ms for t, ms in samples if t < third]
    last = [ms for t, ms in samples if t >= wall - third]
    return LatencyRun(
        streams,
        seconds,
        statistics.median(values),
        percentile(values, 95),
        statistics.median(first) if first else None,
        statistics.median(last) if last else None,
        rss,
        samples,
        counts.processed / wall,
        offered_fps=counts.read / wall,
        frames_offered=counts.read,
        frames_dropped=counts.dropped,
    )


async def _first_frame(viewer: Viewer, streams: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not viewer.received:
        if time.monotonic() > deadline:
            raise RuntimeError(f"latency run, {streams} stream(s): no frame came in {START_TIMEOUT_S:g} s")
        await asyncio.sleep(POLL_S)


def percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(percent / 100 * (len(ordered) - 1)))]


@dataclass(frozen=True, slots=True)
class FanoutPoint:
    viewers: int
    server_cpu: float  # cores the server process used on average (1.0 = one core busy)
    processed_fps: float
    mean_viewer_fps: float
    min_share: float  # the worst viewer's frames received / frames processed


def fanout_run(model: str, video: Path, counts: list[int], imgsz: int, seconds: float) -> list[FanoutPoint]:
    """Server CPU and frames each viewer got, for each number of viewers of one camera-rate stream."""
    with serve(model, video, 1, imgsz) as server:
        return asyncio.run(_fanout(server, counts, seconds))


async def _fanout(server: ServerProcess, counts: list[int], seconds: float) -> list[FanoutPoint]:
    ps = server.ps
    points = []
    async with aiohttp.ClientSession() as session:
        for count in counts:
            async with viewers(server, count) as watching:
                await asyncio.sleep(WARMUP_S)
                received = [v.received for v in watching]
                processed, cpu = await processed_count(session, server), _cpu_s(ps)
                started = time.monotonic()
                await asyncio.sleep(seconds)
                wall = time.monotonic() - started
                processed = await processed_count(session, server) - processed
                cpu = _cpu_s(ps) - cpu
                got = [v.received - before for v, before in zip(watching, received, strict=True)]
            points.append(
                FanoutPoint(
                    count,
                    cpu / wall,
                    processed / wall,
                    statistics.mean(got) / wall,
                    min(got) / processed if processed else 0.0,
                )
            )
    return points


def _cpu_s(ps: psutil.Process) -> float:
    times = ps.cpu_times()
    return float(times.user + times.system)
