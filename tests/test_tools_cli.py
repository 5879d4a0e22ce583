"""Bad input to tools/track_report.py and tools/analytics_report.py: one line naming the flag, no traceback."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
