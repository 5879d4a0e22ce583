"""The benchmark entry point runs end to end and writes its page (a smoke test: no figure is checked)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.run import main


def test_quick_throughput_run_writes_the_page_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "benchmarks.md"
    argv = ["--quick", "--only", "throughput", "--backends", "pytorch", "--out", str(out), "--cache", str(tmp_path)]

    assert main(argv) == 0

    page = out.read_text()
    assert "segcast vs seed loop, PyTorch" in page
    assert "| PyTorch |" in page
    assert out.with_suffix(".png").stat().st_size > 0
    assert "share of the limit" in capsys.readouterr().out
