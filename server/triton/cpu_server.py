"""``segcast triton setup`` and ``segcast triton serve``: a real Triton Inference Server on a plain CPU.

NVIDIA ships tritonserver as a container image for GPU hosts. For a machine without Docker or a GPU
(a laptop, CI, a small edge box shared by a few segcast nodes) the ``nvidia-pytriton`` wheel carries
the same ``tritonserver`` binary with only its Python backend. ``setup`` installs that wheel, ONNX
Runtime and numpy 1.x into a virtual environment of its own (segcast's own environment has numpy 2,
which the wheel refuses); ``serve`` turns a repository written for Triton's ONNX Runtime backend
(``segcast export --format triton``) into the same models on the Python backend, each running
``python_model.py`` - ONNX Runtime on the CPU - and runs the binary on it.

This module is the command line and the launcher: it runs tritonserver, passes signals on to it,
watches its backend stubs and cleans up after it. The venv is `server.triton.cpu_install`'s, the
converted repository `server.triton.python_repository`'s.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import errno
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import IO

from server.triton.cpu_install import TritonCpuError, TritonInstall, default_venv, own_python_environment, setup
from server.triton.python_repository import write_python_repository
from server.triton.stubs import StubWatch

EXIT_STARTUP_ERROR = 2
EXIT_STUB_DIED = 1
DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT, DEFAULT_METRICS_PORT = 8000, 8001, 8002
START_TIMEOUT_S = 120.0  # loading every model; each starts an interpreter and an ONNX Runtime session
READY_POLL_S = 0.2
STUB_POLL_S = 1.0  # how often the launcher looks for a backend stub that died
EXIT_TIMEOUT_S = 10  # how long tritonserver lets running requests finish after SIGINT or SIGTERM
#: The Python backend's shared memory per model instance, and its growth step. Its own 64 MiB would
#: not fit Docker's default /dev/shm for more than one instance; a batch of 8 at 640x640 is ~40 MiB.
SHM_START_BYTES = 16 * 1024 * 1024
SHM_GROWTH_BYTES = 16 * 1024 * 1024
#: Where POSIX shared memory regions (the Python backend's) appear as files on Linux.
SHM_DIR = Path("/dev/shm")
#: Lines tritonserver logs on every start without CUDA; they mean nothing on a CPU server.
CPU_ONLY_NOISE = ("CudaDriverHelper has not been initialized",)
#: An error in tritonserver's log: ``E1201 14:47:06.415112 27296 file.cc:642] "message"``, newlines escaped.
_ERROR_LINE = re.compile(r'^E\d{4} [^\]]*\] "(.*)"$')


def add_arguments(commands: argparse._SubParsersAction) -> None:
    """Add ``triton setup`` and ``triton serve`` to the ``segcast`` command line."""
    triton = commands.add_parser(
        "triton",
        help="install and run a Triton Inference Server on this CPU",
        description="Install (triton setup, once) and run (triton serve) a Triton Inference Server on this CPU, "
        "serving a model repository that segcast export --format triton wrote, for segcast --model grpc://HOST:8001/NAME.",
    )
    actions = triton.add_subparsers(dest="triton_command", required=True)
    venv_help = f"the Triton virtual environment (default {default_venv()})"

    setup = actions.add_parser("setup", help="install tritonserver and ONNX Runtime into their own venv (once)")
    setup.add_argument("--venv", type=Path, default=None, metavar="PATH", help=venv_help)

    serve = actions.add_parser("serve", help="serve a Triton model repository of ONNX models on this CPU")
    serve.add_argument(
        "repository", type=Path, metavar="DIR", help="a model repository (segcast export --format triton)"
    )
    serve.add_argument("--venv", type=Path, default=None, metavar="PATH", help=venv_help)
    serve.add_argument("--host", default="127.0.0.1", help="IPv4 address or name to listen on (default 127.0.0.1)")
    serve.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT, help="HTTP/REST port (default 8000)")
    serve.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT, help="gRPC port (default 8001)")
    serve.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT, help="/metrics port (default 8002)")
    serve.add_argument(
        "--instances",
        type=int,
        default=None,
        help="model instances running at once, each (default: each model's config count, else 1)",
    )
    actions.metavar = "{" + ",".join(actions.choices) + "}"  # named in the "required" error, not triton_command


def run(args: argparse.Namespace) -> int:
    """Run ``triton setup`` or ``triton serve``; start-up errors are one line on stderr and exit status 2."""
    # Absolute: the venv's programs run from the venv's folder, where a relative path leads nowhere.
    venv = (args.venv if args.venv is not None else default_venv()).absolute()
    try:
        if args.triton_command == "setup":
            setup(venv)
            return 0
        _check_flags(args)
        return serve(TritonInstall.find(venv), args)
    except TritonCpuError as exc:
        print(f"segcast: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR


def serve(install: TritonInstall, args: argparse.Namespace) -> int:
    """Run tritonserver on ``args.repository`` until it exits or this process is told to stop; ``args``
    as `_check_flags` passed them."""
    ports = _ports(args)
    address = _ipv4_address(args.host)
    shm_prefix = shm_region_prefix(os.getpid())
    _check_ports_free(address, ports)  # before the repository is read: that starts ONNX in a subprocess per model
    with tempfile.TemporaryDirectory(prefix="segcast-triton-") as work:
        names = write_python_repository(
            args.repository, Path(work) / "models", args.instances, install.venv / "bin" / "python3"
        )
        backends = _backend_directory(install, Path(work) / "backends")
        command = [
            str(install.server),
            f"--model-repository={Path(work) / 'models'}",
            f"--backend-directory={backends}",
            f"--http-address={address}",
            f"--grpc-address={address}",
            f"--metrics-address={address}",
            *(f"{flag}={port}" for flag, port in ports.items()),
            "--exit-on-error=true",
            "--disable-auto-complete-config",  # the config is complete; asking the stub costs a start per model
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
            "--log-info=false",
            "--allow-gpu-metrics=false",
            "--pinned-memory-pool-byte-size=0",
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
            f"--backend-config=python,shm-default-byte-size={SHM_START_BYTES}",
            f"--backend-config=python,shm-growth-byte-size={SHM_GROWTH_BYTES}",
        ]
        host = _client_host(address)
        try:
            with _running(command, _server_environment(install)) as (process, log):
                _wait_until_ready(process, log, f"http://{host}:{args.http_port}/v2/health/ready")
                stubs = StubWatch(process.pid, install.stub.name)  # its first look comes before any client
                shown = names[0] if len(names) == 1 else "<name>"
                resolved = f" (--host {args.host} is {address})" if address != args.host else ""
                print(
                    f"triton: serving {', '.join(names)} at grpc://{host}:{args.grpc_port}/{shown}"
                    f" and http://{host}:{args.http_port}/{shown}{resolved}",
                    flush=True,
                )
                stub_died = _wait_for_exit(process, log, stubs)
        finally:  # tritonserver has exited: `_running` waits for it
            _remove_shared_memory(shm_prefix)
        if stub_died is not None:
            print(f"segcast: {stub_died}; stopped tritonserver for a supervisor to restart", file=sys.stderr)
            return EXIT_STUB_DIED
        status = process.returncode
        if status != 0 and not log.stopping:
            print(f"segcast: {exit_message(status, bool(log.tail))}", file=sys.stderr)
        elif log.stopping:
            _say("segcast: stopped")
        return status if status >= 0 else 128 - status


def _say(line: str) -> None:
    """``line`` on stdout in one write, flushed: tritonserver's output goes to stderr meanwhile. A
    stdout that is gone (a closed terminal) loses the line and nothing else."""
    if sys.stdout is None:
        return
    with contextlib.suppress(OSError):
        sys.stdout.write(f"{line}\n")
        sys.stdout.flush()


def exit_message(status: int, logged: bool) -> str:
    """Why tritonserver ended while serving, when nothing here stopped it: its exit status or the
    signal that killed it, whether it logged anything first, and who restarts it (not segcast)."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = "an unknown signal"
        ended = f"tritonserver was killed by signal {-status} ({name})"
        if -status == signal.SIGKILL:
            ended += ", from outside segcast (the kernel's OOM killer, or kill -9)"
    else:
        ended = f"tritonserver exited with status {status}"
    told = "its last lines are above" if logged else "it logged nothing first"
    return (
        f"{ended}; {told}. segcast does not restart it: run triton serve under a service manager "
        f"(systemd Restart=on-failure, a container restart policy) for that"
    )


def _wait_for_exit(process: subprocess.Popen[str], log: _Log, stubs: StubWatch) -> str | None:
    """Wait until tritonserver exits (None), or one of its backend stubs dies while it is not
    stopping: then why, at once, and tritonserver still runs (leaving `_running` stops it)."""
    while True:
        try:
            process.wait(STUB_POLL_S)
            return None
        except subprocess.TimeoutExpired:
            pass
        if not log.stopping and (died := stubs.died()) is not None:
            return died


def shm_region_prefix(launcher_pid: int) -> str:
    """The name prefix of the Python backend's shared memory regions of the server a launcher runs."""
    return f"segcast{launcher_pid}_"


def _remove_shared_memory(prefix: str) -> None:
    """Remove the shared memory regions named ``prefix`` left after tritonserver exited.

    tritonserver removes its own on a clean exit, but a backend stub that was killed (by the OOM
    killer, say) leaves its region, 16 MiB or more of /dev/shm, behind for good. The prefix holds
    this launcher's process id, so no other server's regions match it.
    """
    for region in SHM_DIR.glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            region.unlink()


def _backend_directory(install: TritonInstall, path: Path) -> Path:
    """A backend folder holding the Python backend with the stub for the venv's Python version.

    The wheel keeps one stub per Python version elsewhere; the backend runs the one beside it.
    """
    python = path / "python"
    python.mkdir(parents=True)
    for source in (install.backend / "libtriton_python.so", install.backend / "triton_python_backend_utils.py"):
        (python / source.name).symlink_to(source)
    (python / install.stub.name).symlink_to(install.stub)
    return path


def _server_environment(install: TritonInstall) -> dict[str, str]:
    """The environment tritonserver and its stubs run in.

    The stub's embedded Python finds its prefix by looking up ``python3`` on PATH, so the venv's
    ``bin`` goes first and the stub imports numpy and onnxruntime from the venv.
    """
    env = own_python_environment()
    env["PATH"] = os.pathsep.join([str(install.venv / "bin"), env.get("PATH", os.defpath)])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(install.libs), env.get("LD_LIBRARY_PATH")]))
    return env


class _Log:
    """tritonserver's output, passed on to stderr by a thread that keeps the last lines.

    ``stopping`` is set once this process has been told to stop, so its exit is not reported as a crash.
    """

    TAIL_LINES = 20

    def __init__(self, stream: IO[str]) -> None:
        self.tail: collections.deque[str] = collections.deque(maxlen=self.TAIL_LINES)
        self.stopping = False
        self._stream = stream
        self._thread = threading.Thread(target=self._pump, name="tritonserver-log", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        for line in self._stream:
            if any(noise in line for noise in CPU_ONLY_NOISE):
                continue
            self.tail.append(line.rstrip("\n"))
            sys.stderr.write(line)
            sys.stderr.flush()

    def reason(self) -> str:
        """The first line of the last error tritonserver logged: which model failed, and why."""
        for line in reversed(self.tail):
            if error := _ERROR_LINE.match(line):
                return error.group(1).split("\\n")[0]
        return next((line for line in reversed(self.tail) if line.strip()), "no output")

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)


@contextmanager
def _running(command: list[str], env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], _Log]]:
    """tritonserver, stopped with SIGTERM on the way out; SIGINT and SIGTERM here are passed on to it,
    and so is SIGHUP, as SIGTERM: a closed terminal must stop it cleanly too, not kill this process
    where it stands (which left its work folder, the converted repository, behind).

    It runs in a session of its own, so a Ctrl-C on the terminal reaches it once, through this
    process, and the kernel ends it should this process die without a chance to. Its backend stubs
    share that session's process group: whatever of it outlives tritonserver is killed on the way out.
    """
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    assert process.stdout is not None
    log = _Log(process.stdout)

    def forward(signum: int, _frame: FrameType | None) -> None:
        if not log.stopping:  # said once, as `segcast serve` says it: tritonserver's own line names a signal only
            _say("segcast: stopping Triton")
        log.stopping = True
        process.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, forward) for signum in forwarded}
    try:
        yield process, log
    finally:
        if process.poll() is None:
            log.stopping = True
            process.terminate()
            try:
                process.wait(EXIT_TIMEOUT_S + 5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # A stub busy when tritonserver was killed outlives it for good, ignoring SIGTERM; the stubs
        # share its process group (its own session, this process is not in it).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        log.join(5.0)


def _die_with_parent() -> None:
    """In the child before exec: have the kernel send SIGTERM when the launcher dies (Linux prctl)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _wait_until_ready(process: subprocess.Popen[str], log: _Log, url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            if log.stopping:
                raise TritonCpuError("stopped before tritonserver was ready")
            log.join(5.0)
            raise TritonCpuError(
                f"tritonserver exited with status {process.returncode} before it was ready: {log.reason()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=READY_POLL_S * 5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(READY_POLL_S)
    raise TritonCpuError(f"tritonserver was not ready after {START_TIMEOUT_S:.0f} s; its log is above")


def _ipv4_address(host: str) -> str:
    """``--host`` as the numeric IPv4 address tritonserver needs; `TritonCpuError` for another.

    Its HTTP and metrics listeners take only a dotted IPv4 address (a name binds 255.255.255.255,
    where nothing ever answers) and its gRPC one cannot listen on an IPv6 address.
    """
    if ":" in host:
        raise TritonCpuError(f"--host {host}: tritonserver listens on IPv4 only; give an IPv4 address or name")
    try:
        return str(socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise TritonCpuError(f"--host {host}: no IPv4 address ({reason}); give an IPv4 address or name") from None


def _check_flags(args: argparse.Namespace) -> None:
    """Refuse what the flags of ``triton serve`` decide alone, naming the flag, before the install is looked
    for and the repository read: on a machine still without the install, a wrong flag is said at once."""
    if args.instances is not None and args.instances < 1:
        raise TritonCpuError(f"--instances {args.instances}: must be at least 1")
    ports = _ports(args)
    for flag, port in ports.items():
        if not 1 <= port <= 65535:
            raise TritonCpuError(f"{flag} {port}: must be between 1 and 65535")
    if len(set(ports.values())) < len(ports):
        raise TritonCpuError(f"{', '.join(ports)} must all differ")


def _ports(args: argparse.Namespace) -> dict[str, int]:
    """The ports ``args`` give, by the flag that gives each."""
    return {"--http-port": args.http_port, "--grpc-port": args.grpc_port, "--metrics-port": args.metrics_port}


def _check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Refuse a port already in use on the IPv4 ``host``, naming its flag."""
    for flag, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no conflict
            try:
                probe.bind((host, port))
            except OSError as exc:
                reason = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
                raise TritonCpuError(
                    f"cannot listen on {host}:{port} ({reason}); choose another {flag} or --host"
                ) from None


def _client_host(address: str) -> str:
    """Where a client on this machine reaches a server listening on the IPv4 ``address``."""
    return "127.0.0.1" if address == "0.0.0.0" else address


def main(argv: list[str] | None = None) -> int:
    """``python -m server.triton.cpu_server setup|serve ...``: the same commands without segcast's CLI."""
    parser = argparse.ArgumentParser(prog="segcast")
    add_arguments(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["triton", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
