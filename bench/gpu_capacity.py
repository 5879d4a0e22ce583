"""How many cameras one GPU's forward pass can serve: the network Triton runs, batched as its batcher would.

``python -m bench.gpu_capacity [--model bundled] [--width 640 --height 384] [--batches 1,2,4,...]``

A segcast node sends Triton letterboxed uint8 pixels; Triton joins the requests of every node into
one batch and runs the network on it; the node does the rest (NMS, masks, tracking, encoding). So a
GPU's share of a camera is one image's part of a batched forward pass, and this measures it: per
batch size, the time from the batch's pixels in host memory to the network's outputs on the GPU,
including the copy to the GPU and the 0-255 to 0-1 scaling that the exported model does as its
first step. It runs the network in PyTorch, not through Triton's ONNX Runtime or TensorRT backend,
and measures neither the network link nor Triton's queueing: a bound on what a GPU can take, not a
latency. The baseline is the first batch size listed (1 by default) in the same run: the ratio says what
batching buys.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

CAMERA_FPS = 15.0  # the rate docs/scaling.md's capacity goal is stated for
WARMUP_BATCHES = 10
TIMED_BATCHES = 50


def measure(
    model_spec: str,
    device_name: str,
    width: int,
    height: int,
    batches: list[int],
    half: bool,
    warmup: int = WARMUP_BATCHES,
    timed: int = TIMED_BATCHES,
) -> list[dict[str, Any]]:
    """Per batch size: ms a batch (median of ``timed`` after ``warmup``), images a second and 15 fps cameras."""
    import numpy as np
    import torch

    from server.inference.models import load_model

    device = torch.device(device_name)
    network: Any = load_model(model_spec).model  # the torch module of a .pt model
    network = network.fuse().to(device).eval()
    dtype = torch.float16 if half else torch.float32
    network = network.half() if half else network.float()
    rows = []
    for batch in batches:
        pixels = np.random.default_rng(batch).integers(0, 256, (batch, 3, height, width), dtype=np.uint8)
        times = []
        with torch.inference_mode():
            for index in range(warmup + timed):
                started = time.perf_counter()
                images = torch.from_numpy(pixels).to(device).to(dtype) / 255
                network(images)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if index >= warmup:
                    times.append(time.perf_counter() - started)
        ms = 1000 * float(np.median(times))
        per_second = batch / (ms / 1000)
        rows.append({"batch": batch, "ms": ms, "images_per_s": per_second, "cameras": per_second / CAMERA_FPS})
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_capacity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--device", default="cuda:0", help="cpu checks the script itself")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--batches", default="1,2,4,8,16,32,64")
    parser.add_argument("--precisions", default="fp32,fp16")
    args = parser.parse_args(argv)
    try:
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        parser.error(f"--batches {args.batches}: give batch sizes separated by commas, e.g. 1,2,4")
    if min(batches) < 1:
        parser.error(f"--batches {args.batches}: a batch holds at least one image")
    precisions = args.precisions.split(",")
    if unknown := set(precisions) - {"fp32", "fp16"}:
        parser.error(f"--precisions {args.precisions}: {', '.join(sorted(unknown))} is not fp32 or fp16")
    import torch

    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        parser.error(f"--device {args.device}: {exc}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: PyTorch sees no CUDA device here (--device cpu checks the script)")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else args.device
    result: dict[str, Any] = {"gpu": gpu, "torch": torch.__version__}
    result |= {"model": args.model, "input": f"{args.width}x{args.height}"}
    for precision in precisions:
        half = precision == "fp16"
        rows = measure(args.model, args.device, args.width, args.height, batches, half)
        single = rows[0]["images_per_s"]
        result[precision] = [row | {"vs_first_batch": row["images_per_s"] / single} for row in rows]
    print(json.dumps(result, indent=1))
    print(f"\n{result['gpu']}, torch {result['torch']}, {args.model} at {result['input']}:")
    print(f"| precision | batch | ms a batch | images/s | 15 fps cameras | images/s vs batch {batches[0]} |")
    print("|---|---|---|---|---|---|")
    for precision in precisions:
        for row in result[precision]:
            print(
                f"| {precision} | {row['batch']} | {row['ms']:.2f} | {row['images_per_s']:.0f} | "
                f"{row['cameras']:.0f} | {row['vs_first_batch']:.1f}x |"
            )


if __name__ == "__main__":
    main()
