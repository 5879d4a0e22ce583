"""segcast's log lines under systemd: each with its syslog priority and without a time of its own, only where
stderr is the journal stream systemd names; unchanged everywhere else."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: ``segcast export`` through `server.cli.main`, its logging set up as in any start, with the export itself
#: replaced by a warning and an error with its traceback: a command that logs without loading a model.
LOGGING_RUN = """
import logging, sys
from server import cli

def logs(args):
    log = logging.getLogger("segcast.test")
    log.warning("the camera is slow")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("it failed")
    return 0

cli._export = logs
sys.exit(cli.main(["export", "--format", "onnx"]))
"""
PLAIN_TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "


def logged(tmp_path: Path, journal_stream: str | None) -> list[str]:
    """The lines the run writes to its stderr, a file; ``journal_stream`` is JOURNAL_STREAM ("{}": the file's own)."""
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("w") as stderr:
        file = os.fstat(stderr.fileno())
        env = {key: value for key, value in os.environ.items() if key != "JOURNAL_STREAM"}
        if journal_stream is not None:
            env["JOURNAL_STREAM"] = journal_stream.format(f"{file.st_dev}:{file.st_ino}")
        subprocess.run([sys.executable, "-c", LOGGING_RUN], stderr=stderr, env=env, cwd=REPO, check=True, timeout=60)
    return stderr_path.read_text().splitlines()


def test_under_systemd_each_line_has_its_priority_and_no_time(tmp_path: Path) -> None:
    lines = logged(tmp_path, "{}")

    assert lines[0] == "<4>WARNING segcast.test: the camera is slow"
    assert lines[1] == "<3>ERROR segcast.test: it failed"
    assert lines[2] == "<3>Traceback (most recent call last):"
    assert lines[-1] == "<3>RuntimeError: boom"
    assert all(line.startswith("<3>") for line in lines[1:])  # no line of the traceback at the default, info


@pytest.mark.parametrize("journal_stream", [None, "1:1", "{}0", "not-numbers", ""])
def test_elsewhere_the_lines_are_unchanged(tmp_path: Path, journal_stream: str | None) -> None:
    lines = logged(tmp_path, journal_stream)

    assert re.fullmatch(PLAIN_TIME + "WARNING segcast.test: the camera is slow", lines[0])
    assert re.fullmatch(PLAIN_TIME + "ERROR segcast.test: it failed", lines[1])
    assert lines[2] == "Traceback (most recent call last):"
