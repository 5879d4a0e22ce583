"""tools/track_report.py and tools/analytics_report.py (and bench.gpu_capacity): they run as the
README has them, and bad input ends with one line naming the flag, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from bench import gpu_capacity
from tools import analytics_report, track_report, train_model

Main = Callable[[Sequence[str] | None], None]
#: `python SCRIPT ARGS...` as in a checkout that is not installed: segcast's editable install, which
#: makes `server` importable from anywhere, taken off the import path first.
AS_IF_NOT_INSTALLED = (
    "import os, runpy, sys; "
    "sys.meta_path = [f for f in sys.meta_path if 'editable' not in getattr(f, '__name__', '').lower()]; "
    "sys.path = [os.path.dirname(sys.argv[1])] + [p for p in sys.path[1:] if '__editable__' not in p]; "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


@pytest.mark.parametrize(
    ("main", "argv", "says"),
    [
        (track_report.main, ["--model", "/nonexistent.pt"], "--model /nonexistent.pt: no such file"),
        (track_report.main, ["--every", "0"], "argument --every: '0': must be 1 or more"),
        (track_report.main, ["--frames", "0"], "argument --frames: '0': must be 1 or more"),
        (track_report.main, ["--tracker", "nosuch"], "tracker: unknown tracker 'nosuch'"),
        (track_report.main, ["--set", "nosuchkey=1"], "tracker_settings.nosuchkey: not a setting of"),
        (track_report.main, ["--seed", "-1"], "argument --seed: '-1': must be 0 or more"),
        (analytics_report.main, ["--model", "/nonexistent.pt"], "--model /nonexistent.pt: no such file"),
        (analytics_report.main, ["--tracker", "nosuch"], "tracker: unknown tracker 'nosuch'"),
        (analytics_report.main, ["--frames", "0"], "argument --frames: '0': must be 1 or more"),
        (analytics_report.main, ["--seed", "-1"], "argument --seed: '-1': must be 0 or more"),
        (analytics_report.main, ["--imgsz", "0"], "imgsz: expected pixels from 32 to 4096, got 0"),
        (gpu_capacity.main, ["--batches", "1,x"], "--batches 1,x: give batch sizes separated by commas"),
        (gpu_capacity.main, ["--batches", "0,8"], "--batches 0,8: a batch holds at least one image"),
        (gpu_capacity.main, ["--precisions", "fp8"], "--precisions fp8: fp8 is not fp32 or fp16"),
    ],
)
def test_bad_input_ends_with_one_error_line_and_status_2(
    main: Main, argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "error: " in err.splitlines()[-1] and says in err.splitlines()[-1], err


def test_gpu_capacity_on_a_machine_without_a_gpu_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """It ended in torch's traceback about the NVIDIA driver."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(SystemExit) as exited:
        gpu_capacity.main([])

    assert exited.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert "--device cuda:0: PyTorch sees no CUDA device here (--device cpu checks the script)" in last


@pytest.mark.parametrize("tool", ["track_report", "analytics_report", "train_model"])
def test_a_tool_runs_as_a_script_from_a_checkout_that_is_not_installed(tool: str, tmp_path: Path) -> None:
    """`python tools/<tool>.py` (README): the script's folder is on the path, not the repository's."""
    script = Path(__file__).resolve().parent.parent / "tools" / f"{tool}.py"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", AS_IF_NOT_INSTALLED, str(script), "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {tool}.py")


def stills(root: Path, split: str) -> list[str]:
    return sorted(path.stem for path in (root / "images" / split).iterdir())


def test_a_split_left_in_the_workdir_is_written_again_for_another_count(tmp_path: Path) -> None:
    """A later `--workdir` run asking for more stills gets them, not the earlier run's few."""
    train_model.write_split(tmp_path, "test", range(2000, 2002), 2)
    train_model.write_split(tmp_path, "test", range(2000, 2002), 4)

    assert len(stills(tmp_path, "test")) == 4
    assert sorted(path.stem for path in (tmp_path / "labels" / "test").iterdir()) == stills(tmp_path, "test")


def test_a_split_a_run_stopped_writing_is_written_again(tmp_path: Path) -> None:
    (tmp_path / "images" / "test").mkdir(parents=True)
    (tmp_path / "images" / "test" / "partial.jpg").write_bytes(b"")

    train_model.write_split(tmp_path, "test", range(2000, 2002), 2)

    assert len(stills(tmp_path, "test")) == 2 and "partial" not in stills(tmp_path, "test")
