"""Start-up: what is said and when, and errors as one line naming the flag to change, with a non-zero exit."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import NoReturn

import pytest
from aiohttp import web

import server.serve
from server import cli
from server.cli import EXIT_INTERRUPTED, EXIT_STARTUP_ERROR, build_parser, main, settings_from_args
from server.http.access.tokens import ADMIN_TOKENS_ENV, VIEWER_TOKENS_ENV
from server.http.network.listen import ListenError, bind, listening_message, ready_to_listen
from server.inference import weights
from server.inference.models import BUNDLED_MODEL
from server.inference.weights import WEIGHTS_URL_ENV
from server.webrtc.config import ICE_SERVERS_ENV
from tests.support.cli_in_process import run_cli
from tests.support.ports import free_port
from tests.support.segcast_process import as_at_a_terminal, demo_at_a_terminal, read_until, stop_process
from tests.support.weights_server import WeightsServer

REPO = Path(__file__).resolve().parent.parent
LINE_TIMEOUT_S = 120.0


def run_segcast(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args, "--log-level", "ERROR"],
        capture_output=True,
        text=True,
        timeout=120,
    )


@contextmanager
def busy_port() -> Iterator[int]:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]


@pytest.mark.parametrize("model", ["/nonexistent/model.pt", "no-such-model-anywhere.pt"])
def test_unloadable_model_is_one_line_naming_the_flag(model: str, capfd: pytest.CaptureFixture[str]) -> None:
    exited = run_cli(capfd, "serve", "--source", "scene:", "--model", model, "--port", str(free_port()))
    assert exited.code == EXIT_STARTUP_ERROR
    assert exited.one_error_line.startswith(f"segcast: --model {model}: "), exited.err


def test_a_password_in_a_model_url_is_never_printed() -> None:
    """In a real process: one line and status 2 with all a start imports and tears down (the other
    refusals here run in this process, tests/support/cli_in_process.py)."""
    model = "grpc://user:hunter2-secret@127.0.0.1:1/segcast-scene-seg"
    result = run_segcast("serve", "--source", "scene:", "--model", model, "--port", str(free_port()))
    assert result.returncode == EXIT_STARTUP_ERROR
    assert "hunter2" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("segcast: --model grpc://user:***@127.0.0.1:1/segcast-scene-seg: "), lines


def test_version_flag_prints_the_installed_version() -> None:
    result = subprocess.run([sys.executable, "-m", "server", "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"segcast {metadata.version('segcast')}"


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_serve_help_names_every_environment_variable_segcast_reads(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """They were only in README: ``--help`` said nothing of the tokens a public address needs."""
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    shown = capsys.readouterr().out
    for name in (ADMIN_TOKENS_ENV, VIEWER_TOKENS_ENV, ICE_SERVERS_ENV, WEIGHTS_URL_ENV):
        assert f"\n  {name} " in shown, name


def test_export_help_says_the_model_defaults_to_the_bundled_one() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server", "export", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    model_help = re.search(r"--model MODEL\s+(.*?)\n  -", result.stdout, re.DOTALL)
    assert model_help is not None, result.stdout
    assert "default bundled" in " ".join(model_help.group(1).split())


def test_serve_without_sources_says_what_to_pass(capfd: pytest.CaptureFixture[str]) -> None:
    exited = run_cli(capfd, "serve", "--log-level", "ERROR")
    assert exited.code == EXIT_STARTUP_ERROR
    assert "--source" in exited.one_error_line


@pytest.mark.parametrize(
    ("environ", "flags", "named"),
    [({}, ("--host", "0.0.0.0"), ADMIN_TOKENS_ENV), ({ICE_SERVERS_ENV: "garbage"}, (), ICE_SERVERS_ENV)],
    ids=["public-address-without-tokens", "bad-ice-servers"],
)
def test_settings_refused_before_the_model_loads_never_say_it_is_loading(
    environ: dict[str, str],
    flags: tuple[str, ...],
    named: str,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The app refuses them as it is made, before any load: ``loading model`` then the refusal read as
    if the model had been the trouble."""
    for name in (ADMIN_TOKENS_ENV, VIEWER_TOKENS_ENV, ICE_SERVERS_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    exited = run_cli(capfd, "demo", *flags, "--port", str(free_port()), "--log-level", "ERROR")
    assert exited.code == EXIT_STARTUP_ERROR
    assert named in exited.one_error_line
    assert "loading model" not in exited.out, exited.out


def test_port_in_use_names_the_port_flag_before_the_model_is_even_loaded(capfd: pytest.CaptureFixture[str]) -> None:
    with busy_port() as port:
        exited = run_cli(capfd, "serve", "--source", "scene:", "--model", "/nonexistent/model.pt", "--port", str(port))
    assert exited.code == EXIT_STARTUP_ERROR
    line = exited.one_error_line
    assert f"127.0.0.1:{port}" in line and "--port" in line, "the port is taken first, the model loaded after"


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_a_port_out_of_range_is_refused_naming_the_flag_before_the_model_loads(
    port: int, capfd: pytest.CaptureFixture[str]
) -> None:
    """Unchecked, ``--port 70000`` was announced as 70000 and listened on 4464 (the socket layer keeps 16 bits
    of it), and ``--port 0`` on whatever port the system chose."""
    exited = run_cli(capfd, "serve", "--source", "scene:", "--port", str(port), "--log-level", "ERROR")
    assert exited.code == EXIT_STARTUP_ERROR
    assert exited.one_error_line == f"segcast: --port {port}: must be between 1 and 65535"
    assert "loading model" not in exited.out, exited.out


@pytest.mark.parametrize("port", [1, 65535])
def test_the_lowest_and_highest_ports_are_taken(port: int) -> None:
    settings = settings_from_args(build_parser().parse_args(["serve", "--source", "scene:", "--port", str(port)]))
    assert settings.port == port


def test_a_port_is_held_while_the_model_loads_even_against_a_socket_that_reuses_addresses() -> None:
    """Bound with SO_REUSEADDR and not yet listening, the port let a second segcast bind it too (Linux
    lets two such sockets share a port until one listens): both loaded their models, and one failed."""
    port = free_port()
    held = bind("127.0.0.1", port)
    try:
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port} .*in use"):
            bind("127.0.0.1", port)
        with socket.socket() as other, pytest.raises(OSError, match="in use"):
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            other.bind(("127.0.0.1", port))
    finally:
        for sock in held:
            sock.close()


def test_a_restart_listens_while_the_last_runs_connections_wind_down() -> None:
    """A held port must still be listened on while connections of the last run are in TIME_WAIT: what
    SO_REUSEADDR is there for (`ready_to_listen`)."""
    port = free_port()
    [first] = bind("127.0.0.1", port)
    ready_to_listen([first])
    first.listen()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        served, _ = first.accept()
        served.close()  # the server closes first: its end waits out TIME_WAIT
        assert client.recv(1) == b""
    first.close()
    [second] = bind("127.0.0.1", port)
    try:
        ready_to_listen([second])
        second.listen()
    finally:
        second.close()


def test_a_port_taken_just_before_listening_is_one_line_and_status_2(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found once the model had loaded, it was a traceback and status 1. Taken by a socket that binds it
    the moment segcast lets the address be reused, before segcast listens."""
    port = free_port()
    taker = socket.socket()
    taker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def taken_meanwhile(sockets: list[socket.socket]) -> None:
        ready_to_listen(sockets)
        taker.bind(("127.0.0.1", port))
        taker.listen()

    monkeypatch.setattr(server.serve, "ready_to_listen", taken_meanwhile, raising=False)
    try:
        exited = run_cli(
            capfd,
            "serve",
            "--source",
            "scene:",
            "--model",
            str(BUNDLED_MODEL),
            "--port",
            str(port),
            "--log-level",
            "ERROR",
        )
    finally:
        taker.close()
    assert exited.code == EXIT_STARTUP_ERROR
    assert exited.one_error_line.startswith(f"segcast: cannot listen on 127.0.0.1:{port} ("), exited.err
    assert exited.one_error_line.endswith("; choose another --port or --host")


def test_an_os_error_once_the_server_listens_is_raised_as_it_is_not_blamed_on_the_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only an OSError between the model's load and listening is the listen's (a port taken meanwhile, the
    test above); one raised while the server runs is no reason to choose another --port, and a start
    error's one line would hide its traceback."""

    def listens_then_fails(
        app: web.Application, *, print: Callable[[str], None], loop: asyncio.AbstractEventLoop, **_: object
    ) -> None:
        """`web.run_app` as far as listening, then an OSError that is not the listen's; it closes the loop
        (its signal handlers gone) as run_app does."""
        try:
            loop.run_until_complete(app.on_startup[-1](app))  # serve's last step before listening
            print("listening")  # what run_app does once every socket accepts connections
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        finally:
            loop.close()

    def never_ends(code: int) -> NoReturn:
        raise AssertionError(f"segcast would have exited the process with {code}")

    monkeypatch.setattr(server.serve, "create_app", lambda *args, **kwargs: web.Application())
    monkeypatch.setattr(server.serve.web, "run_app", listens_then_fails)
    settings = settings_from_args(
        build_parser().parse_args(["serve", "--source", "scene:", "--port", str(free_port())])
    )
    with pytest.raises(OSError) as raised:
        server.serve.serve(settings, None, never_ends)
    assert raised.value.errno == errno.EIO, raised.value


def test_a_program_that_bound_the_port_first_cannot_take_it_while_the_model_loads(tmp_path: Path) -> None:
    """As segcast before this bound its port while its model loaded: a socket bound with SO_REUSEADDR.
    The segcast started next bound the port too, and the first to listen took it from the other, whose
    start ended in a traceback once its model had loaded."""
    port = free_port()
    command = ["-m", "server", "serve", "--source", "scene:", "--model", "yolov8n-seg.pt", "--port", str(port)]
    with (
        socket.socket() as older,
        WeightsServer({"yolov8n-seg.pt": BUNDLED_MODEL.read_bytes()}, hold=True) as weights_server,
    ):
        older.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        older.bind(("127.0.0.1", port))
        process = subprocess.Popen(
            [sys.executable, *command],
            cwd=tmp_path,
            env={
                **os.environ,
                "PYTHONPATH": str(REPO),
                "XDG_CACHE_HOME": str(tmp_path / "cache"),
                weights.WEIGHTS_URL_ENV: weights_server.url,
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert weights_server.requested.wait(LINE_TIMEOUT_S), "the model download began"
            with pytest.raises(OSError, match="in use"):
                older.listen()
            weights_server.release()
            said = read_until(process, "segcast: listening on ")
            assert said[-1] == f"segcast: listening on http://127.0.0.1:{port}/"
        finally:
            stop_process(process)


def test_the_first_line_comes_before_pytorch_and_aiohttp_are_imported() -> None:
    with busy_port() as port:  # ends the start right after the imports
        result = subprocess.run(
            [sys.executable, "-u", "-X", "importtime", "-m", "server", "demo", "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # the import log and the first line, in the order they happened
            text=True,
            timeout=120,
        )
    output = result.stdout
    first_line = output.index("segcast: starting")
    for heavy in ("torch", "aiohttp", "ultralytics", "av"):
        imported = re.search(rf"\| +{heavy}(\.|$)", output, re.MULTILINE)
        # The model's libraries may not come at all: the start ends at the busy port before a model loads.
        may_be_missing = heavy in ("torch", "ultralytics")
        assert (imported is None and may_be_missing) or (imported is not None and imported.start() > first_line), (
            f"{heavy} imported before the first line"
        )


def test_listening_is_said_when_it_accepts_connections_not_while_the_model_loads(tmp_path: Path) -> None:
    """The model's download is held, so the test looks at a segcast that is still loading."""
    port = free_port()
    with WeightsServer({"yolov8n-seg.pt": BUNDLED_MODEL.read_bytes()}, hold=True) as weights_server:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            weights.WEIGHTS_URL_ENV: weights_server.url,
        }
        command = ["-m", "server", "serve", "--source", "scene:", "--model", "yolov8n-seg.pt", "--port", str(port)]
        process = subprocess.Popen(
            [sys.executable, *command],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert weights_server.requested.wait(LINE_TIMEOUT_S), "the model download began"
            with pytest.raises(ConnectionRefusedError):  # refused at once, not left waiting for the model
                socket.create_connection(("127.0.0.1", port), timeout=10).close()
            with socket.socket() as other, pytest.raises(OSError, match="in use"):
                other.bind(("127.0.0.1", port))  # yet the port is already segcast's
            weights_server.release()
            said = read_until(process, "segcast: listening on ")
            assert said[-1] == f"segcast: listening on http://127.0.0.1:{port}/"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
                assert response.status == 200
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/streams", timeout=10) as response:
                assert response.status == 200
        finally:
            _, _, rest = stop_process(process)
    output = "\n".join(said) + rest
    assert said[0] == "segcast: starting (loading PyTorch takes a few seconds)"
    assert "segcast: downloading yolov8n-seg.pt (6.7 MB) from 127.0.0.1" in output
    assert "GET /api/streams" not in output and "aiohttp.access" not in output, "no access log by default"


def test_access_log_flag_logs_each_request() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "demo", "--port", str(port), "--log-level", "WARNING", "--access-log"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        read_until(process, "segcast: listening on ")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/streams", timeout=10) as response:
            assert response.status == 200
    finally:
        _, _, output = stop_process(process)
    assert re.search(r"INFO aiohttp\.access: .*\"GET /api/streams HTTP/1\.1\" 200", output), output


def test_source_ids_come_from_flags_or_the_source() -> None:
    from server.config_values import ConfigError
    from server.source_flags import streams_from_flags

    streams = streams_from_flags(["cam=scene:?seed=1", "scene:?seed=4", "/videos/Front door.mp4", "x.mp4", "x.mp4"])
    assert [s.stream_id for s in streams] == ["cam", "scene-4", "Front-door", "x", "x-2"]
    with pytest.raises(ConfigError, match="used twice"):
        streams_from_flags(["a=scene:", "a=scene:?seed=2"])


def test_a_configured_class_the_model_lacks_stops_start_up_naming_it(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "segcast.toml"
    config.write_text('[model]\nname = "bundled"\n\n[[streams]]\nid = "yard"\nuri = "scene:"\nclasses = ["cat"]\n')
    exited = run_cli(capfd, "serve", "--config", str(config), "--port", str(free_port()), "--log-level", "ERROR")
    assert exited.code == EXIT_STARTUP_ERROR
    line = exited.one_error_line
    assert line.startswith("segcast: segcast.toml: streams[0] (id 'yard').classes: the model has no class 'cat'"), line
    assert "[model] name bundled" in line, "where the model came from: the file, not --model"


def test_ctrl_c_during_start_up_exits_130_without_a_traceback() -> None:
    """A ~30-line KeyboardInterrupt traceback from inside PyTorch's import looked like a crash."""
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "demo", "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=as_at_a_terminal,
    )
    try:
        said = read_until(process, "segcast: starting")  # PyTorch and the model load next, for seconds
        code, _, rest = stop_process(process, signal.SIGINT)
    finally:
        if process.poll() is None:
            stop_process(process)
    assert code == 130, f"exit status {code} (-9: killed, the Ctrl-C went unanswered): {rest}"
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest
    assert said == ["segcast: starting (loading PyTorch takes a few seconds)"]


@pytest.mark.parametrize(
    "stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["ctrl-c", "service-stop", "terminal-closed"]
)
def test_a_stopped_server_says_so_last(stop: signal.Signals) -> None:
    """Ctrl-C (or a service manager's SIGTERM) ended the log without a word, as a crash would; below
    INFO, it still did. A closed terminal or ssh session (SIGHUP) killed it on the spot."""
    with demo_at_a_terminal(free_port()) as process:
        process.send_signal(stop)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    lines = rest.splitlines() or [""]
    assert lines[-1] == "segcast: stopped", f"last, once the streams are closed: {rest!r}"
    assert lines.count("segcast: stopped") == 1, rest


@pytest.fixture
def in_process() -> Iterator[None]:
    """`main` run here filters ultralytics' INFO lines out, as a start does: not for the tests after it."""
    filters = list(logging.getLogger("ultralytics").filters)
    aioice_level = logging.getLogger("aioice").level
    yield
    logging.getLogger("ultralytics").filters[:] = filters
    logging.getLogger("aioice").setLevel(aioice_level)


@pytest.mark.usefixtures("in_process")
def test_a_host_that_is_no_address_names_the_config_key_it_came_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "segcast.toml"
    config.write_text('[server]\nhost = "localhost:8080"\n\n[[streams]]\nid = "a"\nuri = "scene:"\n')
    assert main(["serve", "--config", str(config), "--log-level", "ERROR"]) == EXIT_STARTUP_ERROR
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith('segcast: [server] host = "localhost:8080": not an address of this machine (')
    assert line.endswith("give the port on its own: [server] port = 8080")
    assert main(["serve", "--config", str(config), "--host", "nohost:81", "--log-level", "ERROR"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("segcast: --host nohost:81: not an address of this machine (")
    assert line.endswith("give the port on its own: --port 81")
    with busy_port() as port:
        config.write_text(f'[server]\nport = {port}\n\n[[streams]]\nid = "a"\nuri = "scene:"\n')
        assert main(["serve", "--config", str(config), "--log-level", "ERROR"]) == EXIT_STARTUP_ERROR
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith("choose another [server] port or --host"), line


@pytest.mark.usefixtures("in_process")
def test_a_taken_port_the_config_file_spelled_at_its_default_names_the_file_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file writing ``port = 8080``, the default, was told to change ``--port``, a flag never given:
    a key set to its default value is still the line to change."""
    config = tmp_path / "segcast.toml"
    with busy_port() as port:
        monkeypatch.setattr(cli, "DEFAULT_PORT", port)  # the busy port is "the default" the file spells out
        config.write_text(f'[server]\nhost = "127.0.0.1"\nport = {port}\n\n[[streams]]\nid = "a"\nuri = "scene:"\n')
        assert main(["serve", "--config", str(config), "--log-level", "ERROR"]) == EXIT_STARTUP_ERROR
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith("choose another [server] port or [server] host"), line


@pytest.mark.usefixtures("in_process")
def test_a_model_the_config_file_named_says_where_it_was_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The model's errors say ``--model``; someone who wrote no such flag learns the line to change."""
    config = tmp_path / "segcast.toml"
    # A free port: the model is loaded after the port is taken, and another test may hold 8080 meanwhile.
    config.write_text(
        f'[server]\nport = {free_port()}\n\n[model]\nname = "nosuch-seg.pt"\n\n[[streams]]\nid = "a"\nuri = "scene:"\n'
    )
    assert main(["serve", "--config", str(config), "--log-level", "ERROR"]) == EXIT_STARTUP_ERROR
    first, second = capsys.readouterr().err.splitlines()
    assert first.startswith("segcast: --model nosuch-seg.pt: no such file or folder")
    assert second == f"segcast: ([model] name in {config}; --model overrides it)"
    # Not about models: a start below DEBUG keeps aioice's nine INFO lines per WebRTC viewer out of the log.
    assert logging.getLogger("aioice").getEffectiveLevel() == logging.WARNING
    assert main(["serve", "--config", str(config), "--model", "other-seg.pt", "--log-level", "ERROR"]) == 2
    [line] = capsys.readouterr().err.splitlines()  # the flag named it: the message is right as it is
    assert line.startswith("segcast: --model other-seg.pt: no such file or folder")


@pytest.mark.usefixtures("in_process")
def test_a_config_file_naming_the_default_model_is_told_its_own_line_not_the_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline, ``[model] name = "yolov8n-seg.pt"`` (the default's name, written out) was called "the
    default model", as if the file named none: the line that names it is the one to change."""
    from server.inference.models import DEFAULT_MODEL

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(WEIGHTS_URL_ENV, f"http://127.0.0.1:{free_port()}/")  # refused, as offline
    monkeypatch.chdir(tmp_path)
    named, unnamed = tmp_path / "named.toml", tmp_path / "unnamed.toml"
    streams = f'[server]\nport = {free_port()}\n\n[[streams]]\nid = "a"\nuri = "scene:"\n'
    named.write_text(f'[model]\nname = "{DEFAULT_MODEL}"\n\n{streams}')
    unnamed.write_text(streams)
    assert main(["serve", "--config", str(named), "--log-level", "ERROR"]) == EXIT_STARTUP_ERROR
    first, second = capsys.readouterr().err.splitlines()
    assert first.startswith(f"segcast: --model {DEFAULT_MODEL}: could not download it ("), first
    assert second == f"segcast: ([model] name in {named}; --model overrides it)"
    assert main(["serve", "--config", str(unnamed), "--log-level", "ERROR"]) == EXIT_STARTUP_ERROR
    _, second = capsys.readouterr().err.splitlines()
    assert second == f"segcast: (the default model: choose another with --model, or [model] name in {unnamed})"


@pytest.mark.usefixtures("in_process")
def test_a_class_the_model_lacks_names_the_model_line_of_a_file_that_named_the_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for a stream's classes: a file naming the default model is told of its own line."""
    from server.inference.models import DEFAULT_MODEL

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    weights.cache_dir().mkdir(parents=True)
    (weights.cache_dir() / DEFAULT_MODEL).write_bytes(BUNDLED_MODEL.read_bytes())  # as if downloaded before
    config = tmp_path / "cams.toml"
    config.write_text(
        f'[server]\nport = {free_port()}\n\n[model]\nname = "{DEFAULT_MODEL}"\n\n'
        '[[streams]]\nid = "a"\nuri = "scene:"\nclasses = ["no-such-class"]\n'
    )
    assert main(["serve", "--config", str(config), "--log-level", "ERROR"]) == EXIT_STARTUP_ERROR
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("segcast: cams.toml: streams[0] (id 'a').classes: the model has no class "), line
    assert line.endswith(f"(with [model] name {DEFAULT_MODEL}; --model overrides it)"), line


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::"])
def test_listening_on_every_interface_says_so_and_shows_an_address_a_browser_opens(host: str) -> None:
    """``listening on http://127.0.0.1:8080/`` for ``--host 0.0.0.0`` read as if only this machine could connect."""
    said = listening_message(host, 8080, tls=False)
    assert (
        said == "listening on every interface, port 8080: open http://127.0.0.1:8080/ here, or this machine's address"
    )


def test_listening_on_one_address_shows_it() -> None:
    assert listening_message("192.168.1.5", 8443, tls=True) == "listening on https://192.168.1.5:8443/"
    assert listening_message("fe80::1", 8080, tls=False) == "listening on http://[fe80::1]:8080/"


def test_a_missing_command_names_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse named the attribute the command is stored in: ``required: command``, ``triton_command``."""
    every = "{serve,demo,export,triton,split,history,import-frigate}"
    for argv, commands in (([], every), (["triton"], "{setup,serve}")):
        with pytest.raises(SystemExit):
            main(argv)
        assert (
            capsys.readouterr()
            .err.splitlines()[-1]
            .endswith(f"error: the following arguments are required: {commands}")
        )


@pytest.mark.parametrize(("command", "level"), [("serve", "INFO"), ("demo", "INFO"), ("export", "WARNING")])
def test_log_level_help_says_its_default(command: str, level: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    shown = capsys.readouterr().out
    assert re.search(rf"--log-level \{{DEBUG,INFO,WARNING,ERROR\}}\s+how much to log \(default {level}\)", shown), shown


def test_split_and_triton_help_say_what_they_write_and_run(capsys: pytest.CaptureFixture[str]) -> None:
    """split's help named its files FILE.node-1.toml and FILE.nginx.conf (it writes cams.node-1.toml for
    cams.toml), and triton's own help had no description at all."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["split", "--help"])
    split_help = " ".join(capsys.readouterr().out.split())
    assert "cams.node-1.toml" in split_help and "cams.nginx.conf" in split_help and "FILE.node-1" not in split_help
    with pytest.raises(SystemExit):
        build_parser().parse_args(["triton", "--help"])
    triton_help = " ".join(capsys.readouterr().out.split())
    assert "segcast --model grpc://HOST:8001/NAME" in triton_help, triton_help


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["serve", "--sources", "x"], "unrecognized arguments: --sources x (did you mean --source?)"),
        (["serve", "--source", "scene:", "--sou", "x"], "unrecognized arguments: --sou x (did you mean --source?)"),
        (["demo", "--mod=bundled"], "unrecognized arguments: --mod=bundled (did you mean --model?)"),
        (["serve", "--source", "scene:", "extra"], "unrecognized arguments: extra"),
        # A loose match named --config for --confidence, and --host for a flag like no other.
        (["serve", "--confidence", "0.5"], "unrecognized arguments: --confidence 0.5 (did you mean --conf?)"),
        (["serve", "--source", "scene:", "--bogus"], "unrecognized arguments: --bogus"),
        (["serve", "--source", "scene:", "--t", "x"], "unrecognized arguments: --t x"),  # --tls-cert? --tracker?
        # Another command's flag: --config was taken for a slip of --conf.
        (
            ["demo", "--config", "cams.toml"],
            "unrecognized arguments: --config cams.toml (demo takes no --config: segcast serve --config FILE)",
        ),
        (
            ["export", "--format", "onnx", "--port", "1"],
            "unrecognized arguments: --port 1 (export takes no --port: segcast serve or segcast demo --port PORT)",
        ),
    ],
    ids=[
        "typo",
        "abbreviated",
        "abbreviated-with-value",
        "not-a-flag",
        "longer",
        "like-none",
        "ambiguous",
        "another-commands",
        "several-other-commands",
    ],
)
def test_a_flag_the_command_does_not_know_is_refused_by_that_command(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The top-level parser refused it, with segcast's usage and no hint; abbreviations were taken silently."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == EXIT_STARTUP_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"usage: segcast {argv[0]} "), err
    assert err.splitlines()[-1] == f"segcast {argv[0]}: error: {said}"


def test_an_ipv6_host_may_be_written_in_brackets_and_an_empty_one_is_refused() -> None:
    from server.config_values import ConfigError

    args = build_parser().parse_args(["serve", "--source", "scene:", "--host", "[::1]"])
    assert settings_from_args(args).host == "::1"
    args = build_parser().parse_args(["serve", "--source", "scene:", "--host", ""])
    with pytest.raises(ConfigError, match=r"^--host: no address given; give 127\.0\.0\.1 for this machine only"):
        settings_from_args(args)


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--conf", "5"], "--conf: expected a number from 0.01 to 1, got 5"),
        (["--conf", "1e1"], "--conf: expected a number from 0.01 to 1, got 1e1"),
        (["--conf", "high"], "--conf: expected a number from 0.01 to 1, got high"),
        (["--imgsz", "33"], "--imgsz: expected a multiple of 32 pixels, got 33 (try 32)"),
    ],
)
def test_an_option_flag_out_of_range_is_shown_as_typed(flags: list[str], said: str) -> None:
    """``--conf 5`` said ``got 5.0``: a number the person never typed."""
    from server.config_values import ConfigError

    with pytest.raises(ConfigError) as refused:
        settings_from_args(build_parser().parse_args(["serve", "--source", "scene:", *flags]))
    assert str(refused.value) == said


@pytest.mark.usefixtures("in_process")
def test_a_device_the_flag_gave_is_blamed_on_the_flag(capfd: pytest.CaptureFixture[str]) -> None:
    """``--device cuda:99`` without a config file was said as ``model.device``, a key never written."""
    exited = run_cli(capfd, "serve", "--source", "scene:", "--model", "bundled", "--device", "cuda:99")
    assert exited.code == EXIT_STARTUP_ERROR
    line = exited.one_error_line
    assert line.startswith("segcast: --device cuda:99: not available on this machine (PyTorch sees "), line
    assert line.endswith("; use --device auto (or cpu)"), line


def test_ctrl_c_in_an_export_is_one_line_and_leaves_no_folder_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A traceback from inside ultralytics, after a few seconds of exporting, looked like a crash."""
    import server.inference.export as export

    scratch: list[Path] = []

    def interrupted(path: Path, spec: str) -> NoReturn:
        scratch.append(path.parent)
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "_load_pt", interrupted)
    out = tmp_path / "new" / "models"
    try:
        exited = run_cli(capfd, "export", "--format", "onnx", "--out", str(out))
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C came out of main: a traceback")
    assert exited.code == EXIT_INTERRUPTED
    assert exited.err.splitlines()[-1] == "segcast: interrupted", exited.err  # after the steps' progress
    assert "Traceback" not in exited.err
    assert scratch and not scratch[0].exists(), "the export's scratch folder is removed"
    assert not (tmp_path / "new").exists(), "and so are the --out folders it made"


@pytest.mark.usefixtures("in_process")
def test_serve_and_split_say_a_utf16_config_file_is_utf16(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Windows PowerShell 5's `>` and `Out-File` write UTF-16; both commands read the file the same way."""
    config = tmp_path / "cams.toml"
    config.write_bytes('[[streams]]\nid = "a"\nuri = "scene:"\n'.encode("utf-16"))
    assert main(["serve", "--config", str(config), "--log-level", "ERROR"]) == EXIT_STARTUP_ERROR
    assert capsys.readouterr().err.splitlines() == ["segcast: cams.toml is UTF-16: save it as UTF-8"]
    assert main(["split", str(config), "--nodes", "2"]) == EXIT_STARTUP_ERROR
    assert capsys.readouterr().err.splitlines() == ["segcast: cams.toml is UTF-16: save it as UTF-8"]
    assert list(tmp_path.iterdir()) == [config]


@pytest.mark.parametrize(
    ("given", "noted"),
    [
        ((), True),
        (("--model", "bundled"), True),
        (("--model", str(BUNDLED_MODEL)), True),
        (("--model", "yard.pt"), False),
    ],
)
def test_an_export_of_the_bundled_model_says_it_knows_only_the_scenes_shapes(
    given: tuple[str, ...], noted: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`segcast export --format openvino` without --model exported the bundled demo model, where serve's default
    is a real one: served to cameras, it found no one, and nothing said why."""
    import server.inference.export as export

    def exported(model: str, format: str, out: Path, imgsz: int | None) -> export.ExportResult:
        return export.ExportResult(out / "m_openvino_model", 1.0)

    monkeypatch.setattr(export, "export_model", exported)
    assert main(["export", "--format", "openvino", *given]) == 0
    note = (
        "segcast: note: that is the bundled demo model, which knows only the generated scenes' disc, square and "
        "triangle; for cameras, export a real one: --model yolov8n-seg.pt (or your own .pt)"
    )
    assert capsys.readouterr().err.splitlines() == ([note] if noted else [])
