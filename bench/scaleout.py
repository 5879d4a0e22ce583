"""``python -m bench --only scaleout``: segcast nodes inferring on a shared NVIDIA Triton server.

Two figures, each from one run on one machine (docs/scaling.md quotes them):

- **Overhead of remote inference**: the same network, the same frames, one stream as fast as it can
  go, in rounds (who goes first alternates): in-process ONNX Runtime on the plain ONNX export against
  ``--model grpc://`` to a Triton serving the Triton export with ONNX Runtime (the same network, but
  taking uint8 pixels and scaling them in its graph, where ultralytics' backend feeds floats). Both
  run the network on this machine's cores, so the ratio is what the protocol, the copies and
  Triton's scheduling cost, not a difference of hardware.
- **Two nodes sharing one Triton against one node inferring locally**, four cameras in all (looping
  copies of the scene at its native 15 fps): aggregate processed fps, capture-to-viewer latency, and
  the mean batch Triton executed (images per execution, from its own statistics) and the requests it
  joined into each execution: more than one only where it ran requests of several nodes together (a
  node has one request out at a time), which the images alone cannot tell (each request carries a
  node's two cameras).

Triton here is ``segcast triton serve`` (the real tritonserver, ONNX Runtime on the CPU through its
Python backend); without ``segcast triton setup`` the section is skipped and says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.live import WARMUP_S, percentile, serve
from bench.report import gpu_text, machine_lines
from bench.server_process import ServerProcess, check_processed, free_port, processed_count, stop_process, viewers

REPO = Path(__file__).resolve().parent.parent
TRITON_START_S = 180.0


@dataclass
class NodesRun:
    """Cameras spread over ``nodes`` segcast processes, measured together for ``seconds``."""

    model: str
    nodes: int
    cameras: int
    seconds: float
    processed_fps: float
    p50_ms: float
    p95_ms: float
    mean_batch: float | None = None  # images per Triton execution; None for local inference or none executed
    requests_per_execution: float | None = None  # likewise; above 1 only where Triton joined requests

    @property
    def remote(self) -> bool:
        """Whether its nodes inferred on Triton (the model is a gRPC address), whatever Triton then executed."""
        return self.model.startswith("grpc://")


@dataclass
class ScaleoutResults:
    skipped: str | None = None
    overhead_rounds: list[dict[str, float]] = field(default_factory=list)  # local_fps, remote_fps
    runs: list[NodesRun] = field(default_factory=list)

    @property
    def overhead_ratio(self) -> float | None:
        """The mean of the rounds' ratios; None where no round gave one."""
        ratios = [ratio for r in self.overhead_rounds if (ratio := round_ratio(r)) is not None]
        return statistics.mean(ratios) if ratios else None


def round_ratio(overhead_round: dict[str, float]) -> float | None:
    """Remote over local fps of one round; None where the local run processed nothing (no ratio to take)."""
    local = overhead_round["local_fps"]
    return overhead_round["remote_fps"] / local if local else None


def run_scaleout(
    model_path: Path,
    video: Path,
    imgsz: int,
    cache: Path,
    *,
    rounds: int,
    frames: int,
    seconds: float,
    case: Callable[[dict[str, Any], Path], dict[str, Any]],
) -> ScaleoutResults:
    from server.inference.export import Progress, export_model, output_name
    from server.triton.cpu_install import TritonCpuError, TritonInstall, default_venv

    try:
        TritonInstall.find(default_venv())
    except TritonCpuError as exc:
        # `segcast triton` takes --venv for an install elsewhere; the benchmark has no such flag.
        reason = str(exc).removesuffix(" (or give --venv)")
        where = "python -m bench uses only the default install, under $XDG_CACHE_HOME or ~/.cache"
        return ScaleoutResults(skipped=f"{reason} ({where})")
    repository = model_path.parent / f"triton-{imgsz}"
    name = model_path.stem
    # Exported anew each run (seconds): the repository's config is segcast's, and may have changed.
    export_model(str(model_path), "triton", repository, imgsz, Progress(3))
    # The same network for in-process ONNX Runtime: the plain export (the served copy takes uint8 pixels
    # and scales them in its graph; ultralytics' ONNX backend feeds floats).
    folder = model_path.parent / f"imgsz-{imgsz}"
    onnx = str(folder / output_name(model_path, "onnx"))
    if not Path(onnx).exists():
        export_model(str(model_path), "onnx", folder, imgsz, Progress(3))
    results = ScaleoutResults()
    with _triton(repository) as (grpc_address, http_base):
        remote = f"grpc://{grpc_address}/{name}"
        common = {"kind": "segcast", "imgsz": imgsz, "frames": frames}
        results.overhead_rounds = overhead_rounds(case, video, common, onnx, remote, rounds)
        results.runs.append(_nodes_run(onnx, video, imgsz, [4], seconds))
        before = _triton_counts(http_base, name)
        run = _nodes_run(remote, video, imgsz, [2, 2], seconds)
        record_batching(run, before, _triton_counts(http_base, name))
        results.runs.append(run)
    for run in results.runs:
        _say(f"{run.nodes} node(s), {run.cameras} cameras: {json.dumps(asdict(run))}")
    return results


def overhead_rounds(
    case: Callable[[dict[str, Any], Path], dict[str, Any]],
    video: Path,
    common: dict[str, Any],
    local: str,
    remote: str,
    rounds: int,
) -> list[dict[str, float]]:
    """``rounds`` rounds of ``common`` on the ``local`` model, then on the ``remote`` one, back to back;
    who goes first changes from round to round, so neither side always runs on a machine the other warmed."""
    models = {"local_fps": local, "remote_fps": remote}
    measured = []
    for index in range(rounds):
        order = list(models) if index % 2 == 0 else list(reversed(models))
        fps = {key: case({**common, "model": models[key]}, video)["fps"] for key in order}
        measured.append({key: fps[key] for key in models})
        _say(f"overhead: local {fps['local_fps']:.1f} fps, remote {fps['remote_fps']:.1f} fps ({order[0]} first)")
    return measured


def _nodes_run(model: str, video: Path, imgsz: int, cameras: list[int], seconds: float) -> NodesRun:
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(serve(model, video, count, imgsz)) for count in cameras]
        processed, samples, wall = asyncio.run(_measure(servers, seconds))
    where = f"{sum(cameras)} camera(s) on {len(cameras)} node(s)"
    if not samples:
        raise RuntimeError(f"scale-out run, {where}: no frame reached a viewer in {wall:.1f} s")
    check_processed(processed, f"scale-out run, {where}", wall)
    return NodesRun(
        model,
        len(cameras),
        sum(cameras),
        seconds,
        processed / wall,
        statistics.median(samples),
        percentile(samples, 95),
    )


async def _measure(servers: list[ServerProcess], seconds: float) -> tuple[int, list[float], float]:
    """Frames processed by all servers together, every frame's capture-to-viewer latency (ms), and the
    seconds measured."""
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        watchers = [(await stack.enter_async_context(viewers(server, 1, record=True)))[0] for server in servers]
        await asyncio.sleep(WARMUP_S)
        for viewer in watchers:
            viewer.samples.clear()
        before = [await processed_count(session, server) for server in servers]
        started = time.monotonic()
        await asyncio.sleep(seconds)
        wall = time.monotonic() - started
        after = [await processed_count(session, server) for server in servers]
    processed = sum(a - b for a, b in zip(after, before, strict=True))
    samples = [latency * 1000 for viewer in watchers for t, latency in viewer.samples if t >= started]
    return processed, samples, wall


@contextlib.contextmanager
def _triton(repository: Path) -> Iterator[tuple[str, str]]:
    """``segcast triton serve`` on free ports; yields its gRPC address and HTTP base URL."""
    http, grpc, metrics = free_port(), free_port(), free_port()
    command = [sys.executable, "-m", "server", "triton", "serve", str(repository)]
    command += ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    base = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + TRITON_START_S
        while not _ready(base):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("segcast triton serve did not become ready")
            time.sleep(0.5)
        yield f"127.0.0.1:{grpc}", base
    finally:
        stop_process(process, 30.0)


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@dataclass(frozen=True)
class TritonCounts:
    """One model's totals so far, from an entry of Triton's ``/v2/models/<m>/stats`` ``model_stats``."""

    images: int  # ``inference_count``: each image of a batched request counts
    requests: int  # ``inference_stats.success.count``: one per request answered, however many images
    executions: int  # ``execution_count``: the batches the model ran, each of one request or several joined

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any]) -> TritonCounts:
        return cls(
            int(stats["inference_count"]),
            int(stats["inference_stats"]["success"]["count"]),
            int(stats["execution_count"]),
        )


def _triton_counts(base: str, model: str) -> TritonCounts:
    with urllib.request.urlopen(f"{base}/v2/models/{model}/stats", timeout=10) as reply:
        return TritonCounts.from_stats(json.load(reply)["model_stats"][0])


def record_batching(run: NodesRun, before: TritonCounts, after: TritonCounts) -> None:
    """What Triton executed during ``run``: images and requests per execution (None where it ran none)."""
    executions = after.executions - before.executions
    if executions:
        run.mean_batch = (after.images - before.images) / executions
        run.requests_per_execution = (after.requests - before.requests) / executions


def write_scaleout_report(
    results: ScaleoutResults, out: Path, command: str, machine: Mapping[str, Any], quick: bool = False
) -> str:
    """``out`` (markdown) with the figures of a run that was not skipped (a skipped one has none, and
    must not replace a page that has them), on the machine of ``machine`` (`bench.run.Results.machine`);
    returns its text."""
    lines = [
        "# Scale-out benchmark",
        "",
        f"Generated by `{command}` (bench/scaleout.py); docs/scaling.md explains the set-up. "
        "Triton is `segcast triton serve` on this same machine (ONNX Runtime on the CPU), so nodes and "
        "server share its cores: these figures show what remote inference costs, not what a GPU server adds.",
        "",
    ]
    if quick:
        lines += ["**This is a `--quick` smoke run: the figures are too short to mean anything.**", ""]
    ratio = results.overhead_ratio
    ratios = [_shown(round_ratio(r)) for r in results.overhead_rounds]
    lines += [
        "## Remote inference overhead (one node, one stream as fast as it goes)",
        "",
        "| round | in-process ONNX Runtime fps | Triton over gRPC fps | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for index, (r, shown) in enumerate(zip(results.overhead_rounds, ratios, strict=True), 1):
        lines.append(f"| {index} | {r['local_fps']:.1f} | {r['remote_fps']:.1f} | {shown} |")
    goal = "met" if ratio is not None and ratio >= 0.85 else "missed"
    lines += [
        "",
        f"Mean ratio {_shown(ratio)} (rounds: {', '.join(ratios) or 'none'}); goal >= 0.85: **{goal}**.",
        "",
    ]
    lines += [
        "## Four cameras: one node inferring locally against two nodes sharing Triton",
        "",
        "| set-up | cameras | processed fps (all) | p50 latency ms | p95 latency ms | mean Triton batch "
        "| Triton requests per execution |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in results.runs:
        setup = f"{run.nodes} node(s), " + ("one Triton" if run.remote else "in-process ONNX Runtime")
        batch, requests = _shown(run.mean_batch), _shown(run.requests_per_execution)
        lines.append(
            f"| {setup} | {run.cameras} | {run.processed_fps:.1f} | {run.p50_ms:.0f} | {run.p95_ms:.0f} | {batch} "
            f"| {requests} |"
        )
    joining = [
        _joining(run.nodes, run.requests_per_execution, run.mean_batch)
        for run in results.runs
        if run.requests_per_execution is not None and run.mean_batch is not None
    ]
    if joining:
        lines += ["", *joining]
    lines += [
        "",
        f"This run's machine: {gpu_text(machine)}. Triton ran on its CPU, so the GPU capacity figure is not "
        "measured here (bench/gpu_capacity.py measures it).",
        "",
        "## Machine and conditions",
        "",
        # The load after and the minutes are recorded after each section of the main page's: not this one's.
        *machine_lines({k: v for k, v in machine.items() if k not in ("load_after", "minutes")}, command),
        "",
    ]
    text = "\n".join(lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def _joining(nodes: int, requests_per_execution: float, mean_batch: float) -> str:
    """Whether Triton ran requests of several nodes together: only more than one request per execution
    says so (a node has one out at a time); images per execution above 1 may be one node's cameras."""
    figures = f"{requests_per_execution:.2f} requests per execution, {mean_batch:.2f} images"
    if requests_per_execution > 1:
        return f"Triton joined the requests of the {nodes} nodes into its executions: {figures}."
    return (
        f"Triton ran each request on its own: {figures}; its batches are each one node's request "
        "(a node's cameras together), not requests of several nodes put together."
    )


def _shown(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}"


def _say(text: str) -> None:
    print(f"bench: scaleout {text}", file=sys.stderr, flush=True)
