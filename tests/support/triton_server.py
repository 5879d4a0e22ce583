"""A real NVIDIA Triton Inference Server for tests: ``segcast triton serve`` in its own process.

The server runs from the venv ``segcast triton setup`` makes (tritonserver from the nvidia-pytriton
wheel, ONNX Runtime on the CPU). Without that venv the tests that need it skip, naming the command;
with ``SEGCAST_REQUIRE_COMPONENTS=1`` (CI) they fail instead, so a broken setup cannot pass unseen.

Run as ``python -m tests.support.triton_server serve ...`` it is ``segcast triton serve`` with
Triton's explicit model control (`TritonProcess` ``explicit_model_control``): every model is loaded at
start, and a test may then unload a model or load it again with another config, as an operator
replacing a model on a running Triton does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from server.triton.cpu_install import TritonCpuError, TritonInstall, default_venv
from tests.support.components import require_component
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 150.0  # the launcher's own bound on loading the models (120 s), plus its start
STOP_TIMEOUT_S = 30.0
POLL_S = 0.1
SERVING_LINE = "triton: serving "


def require_triton_venv(venv: Path | None = None) -> Path:
    """The Triton venv, or skip (fail under ``SEGCAST_REQUIRE_COMPONENTS=1``) naming how to make it."""
    venv = venv or default_venv()
    try:
        TritonInstall.find(venv)
    except TritonCpuError as exc:
        require_component(False, f"needs a Triton CPU install ({exc})")
    return venv


def free_ports(count: int) -> list[int]:
    """``count`` different free ports of 127.0.0.1."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class TritonProcess:
    """``python -m server.triton.cpu_server serve DIR`` on free ports of 127.0.0.1.

    `start` returns once the server is ready; `restart` comes back on the same ports, as a
    server that is restarted does. Its output (the launcher's and tritonserver's) goes to a file
    that `output` reads, so a chatty server can never block on a full pipe.
    """

    def __init__(
        self, repository: Path, *args: str, venv: Path | None = None, explicit_model_control: bool = False
    ) -> None:
        self.repository = repository
        self.venv = require_triton_venv(venv)
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self.args = args
        self.explicit_model_control = explicit_model_control
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None  # made by the first start, removed on leaving the context

    def command(self) -> list[str]:
        ports = ["--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port)]
        ports += ["--metrics-port", str(self.metrics_port)]
        venv = ["--venv", str(self.venv)]
        launcher = "tests.support.triton_server" if self.explicit_model_control else "server.triton.cpu_server"
        return [
            sys.executable,
            "-m",
            launcher,
            "serve",
            str(self.repository),
            *ports,
            *venv,
            *self.args,
        ]

    def start(self) -> None:
        """Start, and return once the launcher says it serves (it has seen ``/v2/health/ready`` answer)."""
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        earlier = len(self.output())
        if self._log is None:
            self._log = Path(tempfile.mkstemp(prefix="segcast-triton-", suffix=".log")[1])
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(self.command(), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while SERVING_LINE not in self.output()[earlier:]:
            if self.process.poll() is not None:
                pytest.fail(f"segcast triton serve exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"Triton was not ready after {START_TIMEOUT_S:.0f} s:\n{self.output()}")
            time.sleep(POLL_S)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_base}/v2/health/ready", timeout=1.0) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; the exit status (-9 if it had to be killed)."""
        if self.process is None:
            return 0
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return -9

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> TritonProcess:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
        if self._log is not None:
            self._log.unlink(missing_ok=True)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def grpc_url(self, model: str) -> str:
        """The model's address as ``segcast serve --model`` takes it."""
        return f"grpc://127.0.0.1:{self.grpc_port}/{model}"

    def http_url(self, model: str) -> str:
        return f"http://127.0.0.1:{self.http_port}/{model}"

    def api(self, path: str) -> Any:
        """A JSON answer of Triton's HTTP API, e.g. ``/v2/models/NAME/config``."""
        with urllib.request.urlopen(f"{self.http_base}{path}", timeout=10.0) as response:
            return json.loads(response.read())

    def metrics(self) -> str:
        """The Prometheus text of ``/metrics``."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10.0) as response:
            return str(response.read().decode())

    def output(self) -> str:
        """What the launcher and tritonserver have printed since the first start."""
        return self._log.read_text(errors="replace") if self._log is not None else ""


def _serve_with_explicit_model_control(argv: list[str]) -> int:
    """``segcast triton serve`` whose tritonserver also takes ``--model-control-mode=explicit``."""
    from server.triton import cpu_server

    running = cpu_server._running

    def with_explicit_control(command: list[str], env: dict[str, str]) -> Any:
        return running([*command, "--model-control-mode=explicit", "--load-model=*"], env)

    cpu_server._running = with_explicit_control  # type: ignore[assignment]
    return cpu_server.main(argv)


if __name__ == "__main__":
    sys.exit(_serve_with_explicit_model_control(sys.argv[1:]))
