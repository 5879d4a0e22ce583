"""Start-up errors are one line naming the flag to change, and a non-zero exit."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from server.cli import EXIT_STARTUP_ERROR


def run_segcast(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args, "--log-level", "ERROR"],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("model", ["/nonexistent/model.pt", "no-such-model-anywhere.pt"])
def test_unloadable_model_is_one_line_naming_the_flag(model: str) -> None:
    result = run_segcast("serve", "--source", "scene:", "--model", model, "--port", "1")
    assert result.returncode == EXIT_STARTUP_ERROR
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("segcast: --model ")
    assert "Traceback" not in result.stderr


def test_serve_without_sources_says_what_to_pass() -> None:
    result = run_segcast("serve")
    assert result.returncode == EXIT_STARTUP_ERROR
    assert "--source" in result.stderr


def test_port_in_use_names_the_port_flag() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_segcast("demo", "--port", str(port))
    assert result.returncode == EXIT_STARTUP_ERROR
    assert f"127.0.0.1:{port}" in result.stderr and "--port" in result.stderr


def test_source_ids_come_from_flags_or_the_source() -> None:
    from server.config import ConfigError, streams_from_flags

    streams = streams_from_flags(["cam=scene:?seed=1", "scene:?seed=4", "/videos/Front door.mp4", "x.mp4", "x.mp4"])
    assert [s.stream_id for s in streams] == ["cam", "scene-4", "Front-door", "x", "x-2"]
    with pytest.raises(ConfigError, match="used twice"):
        streams_from_flags(["a=scene:", "a=scene:?seed=2"])


def test_a_configured_class_the_model_lacks_stops_start_up_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "segcast.toml"
    config.write_text('[model]\nname = "bundled"\n\n[[streams]]\nid = "yard"\nuri = "scene:"\nclasses = ["cat"]\n')
    result = run_segcast("serve", "--config", str(config), "--port", "1")
    assert result.returncode == EXIT_STARTUP_ERROR
    assert "yard: classes: the model has no class 'cat'" in result.stderr and "--model bundled" in result.stderr
    assert "Traceback" not in result.stderr
