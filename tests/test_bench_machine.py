"""The pages say which GPU the run had, as its machine record has it, and the forward-pass timer waits
for a CUDA device to finish instead of timing the launch."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

import bench.pipeline as pipeline
from bench.run import LAST_RUN, Results, _machine, main
from bench.scaleout import ScaleoutResults, write_scaleout_report

H100 = "NVIDIA H100 80GB HBM3"


def machine_line(tmp_path: Path, machine: dict[str, Any]) -> str:
    (tmp_path / LAST_RUN).write_text(json.dumps(asdict(Results(machine=machine))))
    out = tmp_path / "benchmarks.md"
    assert main(["--report-only", "--cache", str(tmp_path), "--out", str(out)]) == 0
    return next(line for line in out.read_text().splitlines() if "CPU cores" in line)


def test_the_machine_record_has_the_gpu_pytorch_sees() -> None:
    expected = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    assert _machine()["gpu"] == expected


@pytest.mark.parametrize(
    ("gpu", "says"),
    [
        ({"gpu": H100}, f"2 CPU cores (EPYC), GPU {H100} (PyTorch models ran on it: segcast's device `auto`"),
        ({"gpu": None}, "2 CPU cores (EPYC), no GPU; Python"),
        ({}, "2 CPU cores (EPYC), GPU not recorded; Python"),
    ],
    ids=["gpu", "none", "saved before it was recorded"],
)
def test_the_page_says_the_gpu_of_the_machine_record(gpu: dict[str, Any], says: str, tmp_path: Path) -> None:
    line = machine_line(tmp_path, {"cores": 2, "cpu": "EPYC", **gpu})

    assert says in line
    assert ("no GPU" in line) == (gpu == {"gpu": None})


def test_the_scaleout_page_says_the_gpu_of_the_machine_record(tmp_path: Path) -> None:
    results = ScaleoutResults(overhead_rounds=[{"local_fps": 10.0, "remote_fps": 9.0}])

    with_gpu = write_scaleout_report(results, tmp_path / "a.md", "python -m bench", {"gpu": H100})
    without = write_scaleout_report(results, tmp_path / "b.md", "python -m bench", {"gpu": None})

    assert f"This run's machine: GPU {H100}. Triton ran on its CPU" in with_gpu and "no GPU" not in with_gpu
    assert "This run's machine: no GPU." in without


class Predictor:
    """ultralytics' predictor as `median_forward_ms` uses it: its device, and a forward pass that says so."""

    def __init__(self, device: str, events: list[str]) -> None:
        self.device = torch.device(device)
        self._events = events

    def inference(self, tensor: Any) -> None:
        self._events.append("forward")


def test_the_forward_timer_waits_for_a_cuda_device_around_every_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device: events.append(f"synchronise {device}"))

    pipeline.median_forward_ms(Predictor("cuda:0", events), tensor=None, repeats=3)

    assert events == ["synchronise cuda:0", "forward", "synchronise cuda:0"] * 5  # 2 untimed, 3 timed


def test_the_forward_timer_on_the_cpu_times_the_network_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_cuda(device: object) -> None:
        raise AssertionError("torch.cuda.synchronize called for a model on the CPU")

    monkeypatch.setattr(torch.cuda, "synchronize", no_cuda)
    image = np.zeros((96, 160, 3), np.uint8)

    assert pipeline.ForwardTimer("bundled", image, 64).median_ms() > 0
    events: list[str] = []
    pipeline.median_forward_ms(Predictor("cpu", events), tensor=SimpleNamespace(), repeats=1)
    assert events == ["forward"] * 3
