"""The commands that run no model start without PyTorch, ultralytics or the trackers' scipy.

Importing PyTorch takes seconds on an idle machine and tens of seconds on a loaded one: a review measured
``segcast split`` at 46-93 s of wall time for 2.8 s of work. Each command here runs for real in its own
Python, which reports the modules it imported on the way out; ``serve``, ``demo``, ``export`` and
``triton`` load a model, so they are not among them.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from server.events.history.writer import SCHEMA
from tests.support.ports import consecutive_free_ports

REPO = Path(__file__).resolve().parents[1]
#: Imported only to run a model and track what it finds (scipy's assignment, for segtrack): a command that runs
#: none must not pay for them.
MODEL_MODULES = frozenset({"torch", "ultralytics", "scipy.optimize"})
#: Runs segcast's command line with the arguments after the first, then writes the names of the modules it
#: imported as JSON to the file the first names, however the command ended (argparse's --help exits).
RECORDING_RUN = """\
import json, sys
from server.cli import main
try:
    status = main(sys.argv[2:])
except SystemExit as exc:
    status = exc.code
with open(sys.argv[1], "w") as out:
    json.dump(sorted(sys.modules), out)
sys.exit(status)
"""
#: Commands that run no model, given a config file of two generated scenes with an event history as ``{config}``
#: and its folder as ``{folder}``; each does its work and exits with status 0.
LIGHT_COMMANDS = {
    "--version": ["--version"],
    "export --help": ["export", "--help"],
    "split --dry-run": ["split", "{config}", "--nodes", "2", "--dry-run"],
    "split": ["split", "{config}", "--nodes", "2"],
    "history backup": ["history", "backup", "{folder}/backup.db", "--config", "{config}"],
    "history export": ["history", "export", "{folder}/events.csv", "--config", "{config}"],
}


def imported_by(args: list[str], folder: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``segcast *args`` in a new Python; what it did, and the modules it imported."""
    modules_file = folder / "modules.json"
    result = subprocess.run(
        [sys.executable, "-c", RECORDING_RUN, str(modules_file), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
    )
    return result, set(json.loads(modules_file.read_text()))


def cameras_file(folder: Path) -> Path:
    """A box's config file of two generated scenes, on ports no test listens on, with an empty event history."""
    port = consecutive_free_ports(3)
    config = folder / "cams.toml"
    config.write_text(
        f'[server]\nport = {port}\n\n[events.history]\npath = "events.db"\n\n'
        '[[streams]]\nid = "front"\nuri = "scene:?seed=1"\n\n[[streams]]\nid = "back"\nuri = "scene:?seed=2"\n'
    )
    with closing(sqlite3.connect(folder / "events.db")) as db:
        db.executescript(SCHEMA)
    return config


@pytest.mark.parametrize("command", LIGHT_COMMANDS)
def test_a_command_that_runs_no_model_imports_no_model_or_tracker_library(command: str, tmp_path: Path) -> None:
    # Given a config file of two cameras with an event history
    config = cameras_file(tmp_path)
    args = [arg.format(config=config, folder=tmp_path) for arg in LIGHT_COMMANDS[command]]

    # When the command runs
    result, modules = imported_by(args, tmp_path)

    # Then it did its work without importing what only a model and its trackers need
    assert result.returncode == 0, result.stderr
    assert not modules & MODEL_MODULES, f"segcast {command} imported {sorted(modules & MODEL_MODULES)}"
