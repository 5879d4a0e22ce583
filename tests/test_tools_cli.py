"""tools/track_report.py and tools/analytics_report.py: they run as the README has them, and bad input
ends with one line naming the flag, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tools import analytics_report, track_report

Main = Callable[[Sequence[str] | None], None]


@pytest.mark.parametrize(
    ("main", "argv", "says"),
    [
        (track_report.main, ["--model", "/nonexistent.pt"], "--model /nonexistent.pt: no such file"),
        (track_report.main, ["--every", "0"], "argument --every: '0': must be 1 or more"),
        (track_report.main, ["--frames", "0"], "argument --frames: '0': must be 1 or more"),
        (track_report.main, ["--tracker", "nosuch"], "tracker: unknown tracker 'nosuch'"),
        (track_report.main, ["--set", "nosuchkey=1"], "tracker_settings.nosuchkey: not a setting of"),
        (analytics_report.main, ["--model", "/nonexistent.pt"], "--model /nonexistent.pt: no such file"),
        (analytics_report.main, ["--tracker", "nosuch"], "tracker: unknown tracker 'nosuch'"),
        (analytics_report.main, ["--frames", "0"], "argument --frames: '0': must be 1 or more"),
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


@pytest.mark.parametrize("tool", ["track_report", "analytics_report"])
def test_a_tool_runs_as_a_script_from_a_checkout_that_is_not_installed(tool: str, tmp_path: Path) -> None:
    """`python tools/<tool>.py` (README): the script's folder is on the path, not the repository's."""
    script = Path(__file__).resolve().parent.parent / "tools" / f"{tool}.py"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {tool}.py")
