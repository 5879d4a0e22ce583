"""/metrics has the process figures Prometheus' client libraries export, and the tasks on segcast's loop.

A real ``segcast serve`` process is scraped, so that its figures can be told from the test's: its
start time falls after the test started it, its file descriptors and its loop's tasks grow with the
connections the test opens to it. The text must pass ``promtool check metrics``, Prometheus' own
parser and linter, since an exposition Prometheus cannot parse loses every series of the scrape.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from server.http.process_metrics import process_figures
from tests.support.components import require_component
from tests.support.polling import eventually
from tests.support.segcast_process import START_TIMEOUT_S, SegcastProcess

pytestmark = pytest.mark.timeout(120)

#: Each family, with the type the official client libraries give it.
PROCESS_FAMILIES = {
    "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "process_cpu_seconds_total": "counter",
    "process_start_time_seconds": "gauge",
    "process_threads": "gauge",
    "segcast_event_loop_tasks": "gauge",
}
#: Connections the test holds open to see the server's descriptors and tasks follow them.
EXTRA_CONNECTIONS = 8
#: /proc/stat's boot time is whole seconds, truncated: a start time computed from it may read up to 1 s early.
BOOT_TIME_RESOLUTION_S = 1.0


@dataclass(frozen=True)
class Server:
    process: SegcastProcess
    started_after_s: float  # time.time() just before the process was started


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    before = time.time()
    process = SegcastProcess("--model", "bundled", "--source", "cam=scene:?seed=1")
    process.start()
    try:
        yield Server(process, before)
    finally:
        process.kill()


@pytest.fixture
async def http(server: Server) -> AsyncIterator[aiohttp.ClientSession]:
    """One kept-alive connection for every scrape, so the scrapes add nothing of their own to count."""
    async with aiohttp.ClientSession(
        server.process.base_url, connector=aiohttp.TCPConnector(limit=1, force_close=False)
    ) as session:
        await eventually(lambda: _processing(session), START_TIMEOUT_S, "segcast to process its first frame")
        yield session


async def _processing(session: aiohttp.ClientSession) -> bool:
    try:
        async with session.get("/api/streams") as response:
            streams = (await response.json())["streams"]
    except aiohttp.ClientConnectionError:
        return False  # not listening yet
    return bool(streams) and streams[0]["frames_processed"] >= 1


async def scrape(session: aiohttp.ClientSession) -> str:
    async with session.get("/metrics") as response:
        assert response.status == 200
        return await response.text()


def unlabelled_samples(text: str) -> dict[str, float]:
    """The value of each sample without labels, by name."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.split(" ")
            samples[name] = float(value)
    return samples


def promtool_check_metrics(text: str) -> None:
    promtool = shutil.which("promtool")
    require_component(promtool is not None, "needs promtool from Debian's prometheus package (see .ci/run)")
    assert promtool is not None
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


async def test_metrics_have_the_process_figures_of_the_server_and_pass_promtool(
    server: Server, http: aiohttp.ClientSession
) -> None:
    text = await scrape(http)
    scraped_by_s = time.time()
    promtool_check_metrics(text)
    for name, kind in PROCESS_FAMILIES.items():
        assert f"\n# TYPE {name} {kind}\n" in text, name
    samples = unlabelled_samples(text)
    started_s = samples["process_start_time_seconds"]
    assert server.started_after_s - BOOT_TIME_RESOLUTION_S <= started_s <= scraped_by_s, "the server's, not the test's"
    assert samples["process_resident_memory_bytes"] > 10e6, "a model and torch are loaded"
    assert samples["process_virtual_memory_bytes"] >= samples["process_resident_memory_bytes"]
    assert samples["process_cpu_seconds_total"] > 0
    assert samples["process_threads"] >= 2, "a reader and the inference thread besides the loop's"
    assert samples["process_open_fds"] > 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert samples["process_max_fds"] in (soft, hard), "segcast serve raises its soft limit to the hard one"
    assert samples["segcast_event_loop_tasks"] >= 1


async def test_open_fds_and_event_loop_tasks_follow_the_connections_open(
    server: Server, http: aiohttp.ClientSession
) -> None:
    before = unlabelled_samples(await scrape(http))
    opened = [await asyncio.open_connection("127.0.0.1", server.process.port) for _ in range(EXTRA_CONNECTIONS)]

    async def grown() -> dict[str, float] | None:
        now = unlabelled_samples(await scrape(http))
        if now["process_open_fds"] >= before["process_open_fds"] + EXTRA_CONNECTIONS and (
            now["segcast_event_loop_tasks"] >= before["segcast_event_loop_tasks"] + EXTRA_CONNECTIONS
        ):
            return now
        return None

    try:
        await eventually(grown, 20, f"{EXTRA_CONNECTIONS} more descriptors and tasks")
    finally:
        for _, writer in opened:
            writer.close()
            await writer.wait_closed()

    async def back() -> bool:
        now = unlabelled_samples(await scrape(http))
        return now["segcast_event_loop_tasks"] <= before["segcast_event_loop_tasks"] and (
            now["process_open_fds"] <= before["process_open_fds"]
        )

    await eventually(back, 20, "the closed connections' descriptors and tasks to go")


def test_without_proc_the_figures_read_from_it_are_left_out(tmp_path: Path) -> None:
    """macOS has no /proc: the figures it gives are absent rather than made up (or the scrape failing)."""
    assert [name for name, *_ in process_figures(proc=tmp_path)] == ["process_max_fds"]


def proc_with_stat_line(proc: Path, fields: dict[int, int], btime_s: int) -> None:
    """A /proc at ``proc`` whose ``self/stat`` has ``fields`` (proc(5)'s numbers, from 1; the rest 0),
    under a command with spaces and parentheses, beside a ``stat`` with the boot time ``btime_s``."""
    after_command = ["S", *(str(fields.get(n, 0)) for n in range(4, 53))]
    (proc / "self" / "fd").mkdir(parents=True)
    (proc / "self" / "stat").write_text(f"4242 (py (worker) 1) {' '.join(after_command)}\n")
    (proc / "stat").write_text(f"cpu  1 2 3\nbtime {btime_s}\nprocesses 9\n")


def test_the_figures_are_read_from_their_fields_of_proc_self_stat(tmp_path: Path) -> None:
    """CPU time is user and system time (fields 14 and 15): a server busy in system calls counted as idle."""
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    proc_with_stat_line(
        tmp_path, {14: 100, 15: 50, 20: 7, 22: 3 * ticks_per_s, 23: 123_456_789, 24: 1000}, btime_s=1_700_000_000
    )
    figures = {name: value for name, _, _, value in process_figures(proc=tmp_path)}
    assert figures.pop("process_max_fds") == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert figures == {
        "process_virtual_memory_bytes": 123_456_789,
        "process_resident_memory_bytes": 1000 * os.sysconf("SC_PAGE_SIZE"),
        "process_start_time_seconds": 1_700_000_003,
        "process_cpu_seconds_total": 150 / ticks_per_s,
        "process_threads": 7,
        "process_open_fds": 0,
    }


def test_an_unlimited_open_files_limit_leaves_max_fds_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RLIM_INFINITY reads as -1 on Linux: no limit is no number of descriptors, so none is exported."""
    monkeypatch.setattr(resource, "getrlimit", lambda _: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert process_figures(proc=tmp_path) == []
