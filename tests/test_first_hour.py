"""What a new user meets in the first hour: a camera's port that refuses, a mistyped flag, an early
Ctrl-C, a .pt that is no model, and ``segcast`` with nothing after it. Each said what to do, at once."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import torch

from server.cli import EXIT_INTERRUPTED, EXIT_STARTUP_ERROR
from server.sources import StreamState
from tests.support.cli_in_process import run_cli
from tests.support.http_stand_in import serving
from tests.support.ports import free_port, held_closed_port
from tests.support.reader_probe import ReaderProbe
from tests.support.segcast_process import REPO, STOP_TIMEOUT_S, as_at_a_terminal

#: A refused connection is answered at once; this only bounds a broken reader's wait.
REFUSED_S = 10.0


@pytest.mark.parametrize(
    ("uri", "service"),
    [("rtsp://admin:S3cret-pw@127.0.0.1:{port}/x", "RTSP"), ("http://127.0.0.1:{port}/x.mjpg", "HTTP")],
    ids=["rtsp", "http-mjpeg"],
)
def test_a_camera_port_that_refuses_names_the_address_and_what_to_check(uri: str, service: str) -> None:
    """FFmpeg's "connection refused" alone named neither the address nor what to check, where an
    unknown host and a wrong path say both."""
    with held_closed_port() as port, ReaderProbe(uri.format(port=port)) as probe:
        refused = probe.wait_state(StreamState.RECONNECTING, REFUSED_S)

    assert refused.error == (
        f"nothing answers at 127.0.0.1:{port} (connection refused): check the port in the URI and that the "
        f"camera's {service} service is on"
    )


@contextmanager
def redirecting_to(target: str) -> Iterator[int]:
    """An HTTP server on 127.0.0.1 that answers every GET with a 302 to ``target``; its port."""

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:  # not on the test's output
            pass

    with serving(Redirect, "redirecting-server") as server:
        yield server.server_address[1]


def test_an_http_camera_that_redirects_to_a_port_that_refuses_is_not_said_to_refuse() -> None:
    """FFmpeg follows the redirect: the refusal was the other address's, and the camera's own port,
    which answered, was named as the one to check."""
    with (
        held_closed_port() as closed,
        redirecting_to(f"http://127.0.0.1:{closed}/x.mjpg") as port,
        ReaderProbe(f"http://127.0.0.1:{port}/cam.mjpg") as probe,
    ):
        refused = probe.wait_state(StreamState.RECONNECTING, REFUSED_S)

    assert refused.error == (
        f"127.0.0.1:{port} answers, but the address it redirects to refuses the connection (connection refused): "
        "check the URL's path and where the camera sends it"
    )


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--source", "Front.Door=x.mp4"], "segcast: --source: 'Front.Door' before the '=' is not a valid stream id"),
        (["--source", "cam=foo://camera/x"], "segcast: --source cam=foo://camera/x: "),
        (["--source", "scene:", "--conf", "5"], "segcast: --conf: "),
        (["--source", "scene:", "--imgsz", "33"], "segcast: --imgsz: "),
    ],
    ids=["source-id", "source-scheme", "conf", "imgsz"],
)
def test_a_mistaken_flag_is_refused_before_pytorch_is_imported(flags: list[str], said: str) -> None:
    """The flags were checked only after PyTorch had loaded: 20 to 40 s on a busy machine, for a typo.
    Here importing torch fails, so a refusal that gets to it is a traceback instead of the line."""
    no_torch = "import sys; sys.modules['torch'] = None; from server.cli import main; sys.exit(main())"
    finished = subprocess.run(
        [sys.executable, "-c", no_torch, "serve", "--port", str(free_port()), *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT_S,
    )
    assert finished.returncode == EXIT_STARTUP_ERROR, finished.stderr
    assert finished.stderr.startswith(said) and len(finished.stderr.splitlines()) == 1, finished.stderr


def test_a_mistaken_source_beside_a_config_file_is_refused_before_pytorch_is_imported(tmp_path: Path) -> None:
    """With --config, the --source flags were checked only after the file, whose stream options
    import ultralytics: a typo in a flag waited for PyTorch as it did without one."""
    config = tmp_path / "segcast.toml"
    config.write_text('[[streams]]\nid = "door"\nuri = "scene:?seed=1"\n')
    no_torch = "import sys; sys.modules['torch'] = None; from server.cli import main; sys.exit(main())"
    finished = subprocess.run(
        [sys.executable, "-c", no_torch, "serve", "--config", str(config), "--source", "cam=foo://camera/x"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT_S,
    )
    assert finished.returncode == EXIT_STARTUP_ERROR, finished.stderr
    assert finished.stderr.startswith("segcast: --source cam=foo://camera/x: "), finished.stderr
    assert len(finished.stderr.splitlines()) == 1, finished.stderr


#: ``python -m server ARGS``, Ctrl-C'd (a real SIGINT, to itself) as the module named by its first
#: argument begins to be imported: as early as a person can press it, at a point the test chooses.
INTERRUPTED_AT_IMPORT = """\
import os, runpy, signal, sys

class CtrlC:
    def __init__(self, module):
        self.module = module

    def find_spec(self, name, path=None, target=None):
        if name == self.module:
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlC(sys.argv[1]))
sys.argv = ["segcast", *sys.argv[2:]]
runpy.run_module("server", run_name="__main__", alter_sys=True)
"""
#: The same through the installed ``segcast`` command, as the script pip writes for its entry point runs it.
INTERRUPTED_AT_IMPORT_OF_THE_COMMAND = INTERRUPTED_AT_IMPORT.replace(
    'runpy.run_module("server", run_name="__main__", alter_sys=True)',
    "from server.__main__ import run\nsys.exit(run())",
)


@pytest.mark.parametrize(
    "importing",
    ["server.cli", "server.inference.export", "server.triton.cpu_server"],
    ids=["the-cli", "a-command-module", "the-triton-command"],
)
@pytest.mark.parametrize(
    "entry", [INTERRUPTED_AT_IMPORT, INTERRUPTED_AT_IMPORT_OF_THE_COMMAND], ids=["python-m-server", "segcast"]
)
def test_ctrl_c_while_the_cli_is_imported_says_interrupted_without_a_traceback(importing: str, entry: str) -> None:
    """Ctrl-C in the first half second of ``segcast demo`` printed a KeyboardInterrupt traceback from the
    CLI's module-level imports; a moment later it said ``segcast: interrupted`` (README: status 130)."""
    process = subprocess.run(
        [sys.executable, "-c", entry, importing, "demo", "--port", str(free_port())],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT_S,
        preexec_fn=as_at_a_terminal,
    )
    assert "Traceback" not in process.stderr and "KeyboardInterrupt" not in process.stderr, process.stderr
    assert process.stderr == "segcast: interrupted\n"
    assert process.returncode == EXIT_INTERRUPTED


def test_the_segcast_command_is_the_entry_that_says_a_ctrl_c_while_importing() -> None:
    """The installed command ran ``server.cli:main``, past ``run``'s guard: a traceback there still."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["segcast"] == "server.__main__:run"


def test_a_pt_file_that_is_a_saved_dict_says_what_to_give_instead(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """ultralytics' own advice came through: "Use an official Ultralytics model, i.e. 'yolo predict
    model=yolo26n.pt'", a command of its CLI and a model name segcast's help never mentions."""
    saved = tmp_path / "dict.pt"
    torch.save({"weights": torch.zeros(3)}, saved)
    exited = run_cli(capfd, "serve", "--source", "scene:", "--model", str(saved), "--port", str(free_port()))
    assert exited.code == EXIT_STARTUP_ERROR
    line = exited.one_error_line
    assert line.startswith(f"segcast: --model {saved}: cannot load it ("), line
    assert "yolo predict" not in line and "official Ultralytics" not in line, line
    assert "not an ultralytics YOLO checkpoint: give --model bundled" in line, line


def test_segcast_without_a_command_prints_the_full_help(capfd: pytest.CaptureFixture[str]) -> None:
    """argparse's "the following arguments are required" alone told someone trying ``segcast`` nothing
    of what the commands are."""
    exited = run_cli(capfd)
    assert exited.code == EXIT_STARTUP_ERROR
    assert exited.err.startswith("Live video segmentation and tracking server."), exited.err
    usage, _, error = exited.err.rstrip("\n").rpartition("\n")
    assert usage.rpartition("\n\n")[2].startswith("usage: segcast "), exited.err  # over one line or two
    commands = ("serve", "demo", "export", "triton", "split", "history", "import-frigate")
    assert error == f"segcast: error: the following arguments are required: {{{','.join(commands)}}}"
    for command in commands:
        assert re.search(rf"\n    {command}[ \n]", exited.err), (command, exited.err)  # a long name's help: below
    assert exited.out == ""
