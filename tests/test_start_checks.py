"""Start-up refuses what no retry could fix, with one line naming the flag or key; it leaves the rest to run time.

A source URI that can never be opened (an unknown option, no host, a scheme segcast does not read) is
the API's 400; from ``--source`` or the config file it stops the start, before the model is loaded.
What may change later (a missing file, a camera that is down, an unplugged webcam) starts as a stream.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from server.cli import EXIT_STARTUP_ERROR, build_parser, settings_from_args
from server.config_values import ConfigError
from tests.support.cli_in_process import Exited, run_cli
from tests.support.ports import free_port

#: A model that cannot be loaded: had the source been checked after the model, the error would name it.
NO_MODEL = "/nonexistent/model.pt"


def run_serve(*args: str) -> Exited:
    """``segcast serve ARGS`` in a real process: the proof, once, that a refusal prints one line and exits."""
    result = subprocess.run(
        [sys.executable, "-m", "server", "serve", *args, "--port", str(free_port()), "--log-level", "ERROR"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return Exited(result.returncode, result.stdout, result.stderr)


def serve_here(capfd: pytest.CaptureFixture[str], *args: str) -> Exited:
    """``segcast serve ARGS`` in this process (tests/support/cli_in_process.py): the same line and status."""
    return run_cli(capfd, "serve", *args, "--port", str(free_port()), "--log-level", "ERROR")


def the_one_error_line(exited: Exited) -> str:
    assert exited.code == EXIT_STARTUP_ERROR, exited.out + exited.err
    assert "Traceback" not in exited.err
    return exited.one_error_line


def refused_before_the_model(exited: Exited, source: str, words: tuple[str, ...]) -> None:
    line = the_one_error_line(exited)
    assert line.startswith(f"segcast: --source {source}: "), line
    for word in words:
        assert word in line
    assert "loading model" not in exited.out and "listening" not in exited.out


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("a=scene:?sed=3", ("'sed'",)),
        ("b=scene:?family=occlusoin", ("occlusoin",)),
        ("d=rtsp://127.0.0.1/x#timout=5", ("unknown option 'timout'",)),
        ("rtps://cam/live", ("unsupported source",)),
        ("e=rtsp:/cam/live", ("no host",)),
        ("f=rtsp://cam:99999/live", ("port",)),
    ],
)
def test_a_flag_source_that_can_never_work_stops_the_start_before_the_model(
    source: str, words: tuple[str, ...], capfd: pytest.CaptureFixture[str]
) -> None:
    exited = serve_here(capfd, "--source", "ok=scene:?seed=1", "--source", source, "--model", NO_MODEL)
    refused_before_the_model(exited, source, words)


def test_a_process_refusing_a_flag_source_prints_that_one_line_alone() -> None:
    exited = run_serve("--source", "ok=scene:?seed=1", "--source", "a=scene:?sed=3", "--model", NO_MODEL)
    refused_before_the_model(exited, "a=scene:?sed=3", ("'sed'",))


def test_a_password_in_a_refused_flag_source_is_never_printed(capfd: pytest.CaptureFixture[str]) -> None:
    exited = serve_here(capfd, "--source", "cam=rtsp://admin:hunter2-secret@cam/live#timout=5", "--model", NO_MODEL)
    line = the_one_error_line(exited)
    assert "hunter2" not in exited.out + exited.err
    assert line.startswith("segcast: --source cam=rtsp://admin:***@cam/live#timout=5: unknown option 'timout'"), line


def test_a_config_file_uri_that_can_never_work_names_the_file_and_the_stream(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cams.toml"
    config.write_text(
        f'[model]\nname = "{NO_MODEL}"\n'
        '[[streams]]\nid = "fine"\nuri = "scene:?seed=1"\n'
        '[[streams]]\nid = "typo"\nuri = "rtsp://127.0.0.1/x#timout=5"\n'
    )
    exited = serve_here(capfd, "--config", str(config))
    line = the_one_error_line(exited)
    assert line.startswith("segcast: cams.toml: streams[1] (id 'typo').uri: unknown option 'timout'"), line
    assert "loading model" not in exited.out


def test_a_relative_file_with_an_impossible_option_is_refused_as_the_file_gives_it(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cams.toml"
    config.write_text('[[streams]]\nid = "clip"\nuri = "clip.mp4#rate=fast"\n')
    line = the_one_error_line(serve_here(capfd, "--config", str(config), "--model", NO_MODEL))
    assert line.startswith("segcast: cams.toml: streams[0] (id 'clip').uri: rate='fast' for "), line


def test_sources_that_may_work_later_are_streams_not_start_errors(tmp_path: Path) -> None:
    """A file not there yet, a camera name that does not resolve now, an unplugged webcam: each can
    change without a restart, so each starts as a stream whose state says what is wrong."""
    config = tmp_path / "cams.toml"
    config.write_text('[[streams]]\nid = "later"\nuri = "recordings/later.mp4"\n')
    sources = ["missing=/nonexistent/clip.mp4", "cam=rtsp://camera.invalid/live", "usb=/dev/video99", "webcam:7"]
    args = build_parser().parse_args(["serve", "--config", str(config), *(f"--source={s}" for s in sources)])
    settings = settings_from_args(args)
    assert [s.stream_id for s in settings.streams] == ["later", "missing", "cam", "usb", "webcam-7"]


def test_a_class_the_model_lacks_names_the_file_key_and_where_the_model_came_from(tmp_path: Path) -> None:
    config = tmp_path / "cams.toml"
    config.write_text(
        '[model]\nname = "bundled"\n'
        '[[streams]]\nid = "fine"\nuri = "scene:?seed=1"\n'
        '[[streams]]\nid = "a"\nuri = "scene:?seed=3"\nclasses = ["person"]\n'
    )
    line = the_one_error_line(run_serve("--config", str(config)))
    expected = "segcast: cams.toml: streams[1] (id 'a').classes: the model has no class 'person'; it knows "
    assert line.startswith(expected), line
    assert line.endswith("(with [model] name bundled; --model overrides it)"), line


def test_a_config_files_larger_frame_side_applies_to_flag_sources(tmp_path: Path) -> None:
    """A --source's size is checked from its text before the config file is read (which imports PyTorch): a
    file's ``max_frame_side`` above the default must not have it refused against the default meanwhile."""
    config = tmp_path / "cams.toml"
    config.write_text("[server]\nmax_frame_side = 8192\n")
    source = "webcam:0#width=6000&height=480"
    with_file = settings_from_args(build_parser().parse_args(["serve", "--config", str(config), "--source", source]))
    assert [stream.uri for stream in with_file.streams] == [source]
    with pytest.raises(ConfigError, match=r"at most 4096$"):
        settings_from_args(build_parser().parse_args(["serve", "--source", source]))
