"""Measurements of a real ``segcast serve`` process through its WebSocket: latency, fan-out, memory.

The server runs as its own process (so its CPU time and resident size are its alone) on a free port;
viewers are WebSocket clients in this process, subscribed to the annotated frames exactly as the
browser viewer is. Latency is capture-to-viewer: the frame's ``capture_time`` (the moment its reader
decoded it) to the moment its JPEG arrived here; both clocks are this machine's.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from bench.server_process import (
    POLL_S,
    START_TIMEOUT_S,
    ServerProcess,
    Viewer,
    check_processed,
    processed_count,
    started,
    stream_counts,
    viewers,
)

RSS_SAMPLE_S = 1.0
WARMUP_S = 5.0  # model warm-up and first allocations, left out of every figure


def serve(
    model: str, video: Path, streams: int, imgsz: int, config: Path | None = None
) -> contextlib.AbstractContextManager[ServerProcess]:
    """``segcast serve`` with ``streams`` looping copies of ``video`` at its native rate, like cameras
    (and the settings of ``config``, a config file, where given): `bench.server_process.started`'s."""
    arguments = [f"--source=cam{i}={video}" for i in range(streams)]
    arguments += ["--loop", "--model", model, "--imgsz", str(imgsz), "--log-level", "WARNING"]
    arguments += ["--config", str(config)] if config is not None else []
    return started(arguments)


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
    async with aiohttp.ClientSession() as session, viewers(server, 1, record=True) as (viewer,):
        if warm_from_first_frame:
            await _first_frame(viewer, streams)
        await asyncio.sleep(WARMUP_S)
        viewer.samples.clear()
        started = time.monotonic()
        before = await stream_counts(session, server)
        rss: list[tuple[float, float]] = []
        while (elapsed := time.monotonic() - started) < seconds:
            rss.append((elapsed, server.rss_mb()))
            await asyncio.sleep(RSS_SAMPLE_S)
        wall = time.monotonic() - started
        counts = await stream_counts(session, server) - before
    samples = [(t - started, latency * 1000) for t, latency in viewer.samples if t >= started]
    values = [ms for _, ms in samples]
    if not values:
        raise RuntimeError(f"latency run, {streams} stream(s): no frame reached the viewer in {wall:.1f} s")
    check_processed(counts.processed, f"latency run, {streams} stream(s)", wall)
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
