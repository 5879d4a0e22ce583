"""Load and soak a real ``segcast serve`` on 127.0.0.1: many viewers, streams coming and going, for minutes.

    python bench/soak.py load --viewers 200 --streams 4 --seconds 120
    python bench/soak.py soak --seconds 600

``load``: ``--viewers`` WebSocket viewers spread over ``--streams`` generated scenes, all connected for
the whole run. ``soak``: the same streams plus one added and removed through the API every few
seconds, and viewers that each stay a random few seconds, leave (some without a goodbye) and come back.

Both report, as JSON on stdout: errors (failed connects, unexpected closes, API calls that were not
2xx), frames delivered per second per viewer and in total, and the server's resident memory at the
start (after warm-up), at the end and at its highest, sampled every `MEMORY_SAMPLE_S` with its open
files and threads. The server is
a separate process, so its memory is its own; client and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

if __package__ in (None, ""):  # run as `python bench/soak.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.server_process import ServerProcess, started, stop_process

WARMUP_S = 10.0
MEMORY_SAMPLE_S = 5.0
SCENE = "scene:?seed={seed}&fps=15&width=320&height=192"
#: Soak: a stream is added (and the oldest extra one removed) this often.
STREAM_CHURN_S = 5.0
MAX_EXTRA_STREAMS = 2
#: Soak: each viewer stays this long (uniformly at random), then leaves and reconnects.
VIEWER_STAY_S = (1.0, 10.0)
#: Soak: this share of leaving viewers just drop the connection instead of closing it.
ABRUPT_SHARE = 0.3
SHUTDOWN_LIMIT_S = 10.0


@dataclass
class Figures:
    mode: str
    seconds: float
    viewers: int
    streams: int
    frames: int = 0
    connects: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    api_calls: int = 0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_max_mb: float = 0.0
    rss_samples_mb: list[float] = field(default_factory=list)
    #: Open file descriptors and threads, sampled with the memory: sockets, readers or workers that
    #: are never let go show here before they show in memory.
    fd_samples: list[int] = field(default_factory=list)
    thread_samples: list[int] = field(default_factory=list)
    fps_per_viewer: float = 0.0
    fps_total: float = 0.0
    processed_fps: dict[str, float] = field(default_factory=dict)
    shutdown_s: float = 0.0
    exit_code: int | None = None

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


async def viewer(
    session: aiohttp.ClientSession, url: str, stream: str, figures: Figures, until: float, stay_s: tuple[float, float]
) -> None:
    """One viewer: connect, watch ``stream`` for a while (or until ``until``), leave, repeat."""
    rng = random.Random()
    while time.monotonic() < until:
        leave_at = min(until, time.monotonic() + rng.uniform(*stay_s)) if stay_s[1] > 0 else until
        try:
            ws = await session.ws_connect(url, heartbeat=None)
        except (aiohttp.ClientError, OSError) as exc:
            figures.error(f"connect: {type(exc).__name__}")
            await asyncio.sleep(0.5)
            continue
        figures.connects += 1
        try:
            await ws.send_json({"type": "subscribe", "streams": [stream], "image": "annotated", "max_width": 320})
            while (left := leave_at - time.monotonic()) > 0:
                try:
                    message = await ws.receive(timeout=left)
                except TimeoutError:
                    break
                if message.type is aiohttp.WSMsgType.BINARY:
                    figures.frames += 1
                elif message.type is aiohttp.WSMsgType.TEXT:
                    if json.loads(message.data).get("type") == "error":
                        figures.error("error message")
                else:
                    figures.error(f"closed by server: {message.type.name}")
                    break
        finally:
            sock = ws.get_extra_info("socket")
            if stay_s[1] > 0 and rng.random() < ABRUPT_SHARE and sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # gone without a goodbye, likely mid-frame
            with contextlib.suppress(aiohttp.ClientError, OSError):
                await ws.close()


async def churn_streams(session: aiohttp.ClientSession, base: str, figures: Figures, until: float) -> None:
    extra: list[str] = []
    n = 0
    while time.monotonic() < until:
        n += 1
        stream_id = f"extra-{n}"
        async with session.post(f"{base}/api/streams", json={"id": stream_id, "uri": SCENE.format(seed=100 + n)}) as r:
            figures.api_calls += 1
            if r.status != 201:
                figures.error(f"add stream: {r.status}")
            else:
                extra.append(stream_id)
        if len(extra) > MAX_EXTRA_STREAMS:
            async with session.delete(f"{base}/api/streams/{extra.pop(0)}") as r:
                figures.api_calls += 1
                if r.status != 204:
                    figures.error(f"remove stream: {r.status}")
        await asyncio.sleep(STREAM_CHURN_S)


async def sample_process(server: ServerProcess, figures: Figures, until: float) -> None:
    while time.monotonic() < until:
        figures.rss_samples_mb.append(round(server.rss_mb(), 1))
        figures.fd_samples.append(server.ps.num_fds())
        figures.thread_samples.append(server.ps.num_threads())
        await asyncio.sleep(MEMORY_SAMPLE_S)


def serve_arguments(ids: list[str]) -> list[str]:
    """`bench.server_process.started`'s arguments: the bundled model, a generated scene per stream id."""
    arguments = ["--model", "bundled", "--log-level", "ERROR"]
    for i, stream_id in enumerate(ids):
        arguments += ["--source", f"{stream_id}={SCENE.format(seed=i + 1)}"]
    return arguments


async def measure(args: argparse.Namespace, server: ServerProcess, ids: list[str], figures: Figures) -> None:
    """The run's figures into ``figures``, from the warm-up on; the server is the caller's to stop."""
    base = server.url
    await asyncio.sleep(WARMUP_S)
    figures.rss_start_mb = round(server.rss_mb(), 1)
    started_at = time.monotonic()
    until = started_at + args.seconds
    stay = VIEWER_STAY_S if args.mode == "soak" else (0.0, 0.0)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [viewer(session, f"{base}/ws", ids[i % len(ids)], figures, until, stay) for i in range(args.viewers)]
        tasks.append(sample_process(server, figures, until))
        if args.mode == "soak":
            tasks.append(churn_streams(session, base, figures, until))
        await asyncio.gather(*tasks)
        async with session.get(f"{base}/api/streams") as response:
            streams = (await response.json())["streams"]
        figures.processed_fps = {s["id"]: s["processed_fps"] for s in streams}
    elapsed = time.monotonic() - started_at
    figures.rss_end_mb = round(server.rss_mb(), 1)
    figures.rss_max_mb = max([*figures.rss_samples_mb, figures.rss_end_mb])
    figures.fps_total = round(figures.frames / elapsed, 1)
    figures.fps_per_viewer = round(figures.frames / elapsed / max(1, args.viewers), 2)


def stop_server(server: ServerProcess, figures: Figures) -> None:
    """SIGTERM, as a service manager would; the time to exit and the exit status (None: it had to be
    killed after `SHUTDOWN_LIMIT_S`) are figures."""
    stopped = time.monotonic()
    figures.exit_code = stop_process(server.process, SHUTDOWN_LIMIT_S)
    figures.shutdown_s = round(time.monotonic() - stopped, 2)


def main(argv: list[str] | None = None) -> None:
    """Measure, then stop the server and print the figures; a run that fails still stops its server
    (and waits for it) before the error goes on."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["load", "soak"])
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    ids = [f"s{i + 1}" for i in range(args.streams)]
    figures = Figures(args.mode, args.seconds, args.viewers, args.streams)
    with started(serve_arguments(ids)) as server:
        try:
            asyncio.run(measure(args, server, ids, figures))
        finally:
            stop_server(server, figures)
    print(json.dumps(asdict(figures), indent=2))


if __name__ == "__main__":
    main()
