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
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 90.0
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


async def wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit("segcast exited while starting")
            try:
                async with session.get(f"{base}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.5)
    raise SystemExit("segcast did not start")


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


async def sample_process(pid: int, figures: Figures, until: float) -> None:
    while time.monotonic() < until:
        figures.rss_samples_mb.append(round(rss_mb(pid), 1))
        figures.fd_samples.append(open_fds(pid))
        figures.thread_samples.append(threads(pid))
        await asyncio.sleep(MEMORY_SAMPLE_S)


def start_server(port: int, ids: list[str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "server", "serve", "--model", "bundled", "--port", str(port)]
    command += ["--log-level", "ERROR"]
    for i, stream_id in enumerate(ids):
        command += ["--source", f"{stream_id}={SCENE.format(seed=i + 1)}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL)


async def run(args: argparse.Namespace, process: subprocess.Popen[bytes], port: int, ids: list[str]) -> Figures:
    base = f"http://127.0.0.1:{port}"
    figures = Figures(args.mode, args.seconds, args.viewers, args.streams)
    try:
        await wait_ready(base, process)
        await asyncio.sleep(WARMUP_S)
        figures.rss_start_mb = round(rss_mb(process.pid), 1)
        started = time.monotonic()
        until = started + args.seconds
        stay = VIEWER_STAY_S if args.mode == "soak" else (0.0, 0.0)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            tasks = [
                viewer(session, f"{base}/ws", ids[i % len(ids)], figures, until, stay) for i in range(args.viewers)
            ]
            tasks.append(sample_process(process.pid, figures, until))
            if args.mode == "soak":
                tasks.append(churn_streams(session, base, figures, until))
            await asyncio.gather(*tasks)
            async with session.get(f"{base}/api/streams") as response:
                streams = (await response.json())["streams"]
            figures.processed_fps = {s["id"]: s["processed_fps"] for s in streams}
        elapsed = time.monotonic() - started
        figures.rss_end_mb = round(rss_mb(process.pid), 1)
        figures.rss_max_mb = max([*figures.rss_samples_mb, figures.rss_end_mb])
        figures.fps_total = round(figures.frames / elapsed, 1)
        figures.fps_per_viewer = round(figures.frames / elapsed / max(1, args.viewers), 2)
    except BaseException:
        process.kill()
        raise
    return figures


def stop_server(process: subprocess.Popen[bytes], figures: Figures) -> None:
    """SIGTERM, as a service manager would; the time to exit is one of the figures."""
    stopped = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        figures.exit_code = process.wait(SHUTDOWN_LIMIT_S)
    finally:
        figures.shutdown_s = round(time.monotonic() - stopped, 2)
        if process.poll() is None:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["load", "soak"])
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    port = free_port()
    ids = [f"s{i + 1}" for i in range(args.streams)]
    process = start_server(port, ids)
    figures = asyncio.run(run(args, process, port, ids))
    stop_server(process, figures)
    print(json.dumps(asdict(figures), indent=2))


if __name__ == "__main__":
    main()
