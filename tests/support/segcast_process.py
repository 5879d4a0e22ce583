"""A real ``segcast serve`` in its own process, for what only a process shows: signals, exit codes, TLS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0  # importing torch and loading the model, on a busy 2-core machine


class SegcastProcess:
    """``python -m server serve ARGS --port <free>``; `start` waits until it answers ``/healthz``."""

    def __init__(self, *args: str, port: int | None = None, scheme: str = "http") -> None:
        self.port = port or free_port()
        self.scheme = scheme
        self.args = [sys.executable, "-m", "server", "serve", "--port", str(self.port), "--log-level", "WARNING", *args]
        self.process: subprocess.Popen[str] | None = None

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            self.args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def terminate(self, timeout_s: float) -> tuple[int, float, str]:
        """SIGTERM, then wait: (exit code, seconds it took, its output). Killed, and -9, if it overran."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            output, _ = self.process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
            return -9, time.monotonic() - started, output
        return self.process.returncode, time.monotonic() - started, output

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.communicate()

    def children(self) -> list[int]:
        """Processes this one started that are still running (there should be none after it exits)."""
        assert self.process is not None
        found = []
        for status in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = status.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == self.process.pid:
                found.append(int(status.parent.name))
        return found


def read_until(process: subprocess.Popen[str], prefix: str) -> list[str]:
    """Lines of ``process``'s output up to and including the first that starts with ``prefix``: how a test
    waits for what segcast says (``listening on``, ``stopping``) rather than for a time."""
    assert process.stdout is not None
    lines = []
    for line in process.stdout:  # bounded by the test's timeout; ends if the process exits
        lines.append(line.rstrip("\n"))
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"no line starting {prefix!r}; output: {lines}")


def as_at_a_terminal() -> None:
    """For ``preexec_fn``: a shell's background job ignores SIGINT (and ``nohup`` SIGHUP), and a child
    inherits that; a process started at a terminal takes both as they come."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@contextmanager
def demo_at_a_terminal(port: int) -> Iterator[subprocess.Popen[str]]:
    """``segcast demo`` on ``port`` as started at a terminal (`as_at_a_terminal`), its output one text pipe,
    once it says it is listening; killed on the way out if it is still running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "demo", "--port", str(port), "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=as_at_a_terminal,
    )
    try:
        read_until(process, "segcast: listening on ")
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
