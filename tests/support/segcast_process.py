"""A real ``segcast serve`` in its own process, for what only a process shows: signals, exit codes, TLS.

Every process a test starts is stopped by `stop_process`, which kills and reaps it when it does not
exit in time: a segcast that ignores its signal (the bug a test may be looking for) ends with -9 for
the test to assert on, and is never left running after pytest, as one at half a core once was.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from server.http.network.serving import SHUTDOWN_GRACE_S
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0  # importing torch and loading the model (an export's runtime too), on a busy 2-core machine
#: How long a stop signal may take to end a process before `stop_process` kills it: far over a clean stop.
STOP_TIMEOUT_S = 60.0
#: A bound on segcast's stop for tests to assert: a request in flight is given `SHUTDOWN_GRACE_S` (3.1-3.2 s
#: measured on a loaded 2-core machine), and the margin is more than scheduling delays there add. It does not
#: time the stop; it catches one that never ends or that waits out aiohttp's default 60 s grace.
SHUTDOWN_BOUND_S = SHUTDOWN_GRACE_S + 15.0
_POLL_INTERVAL_S = 0.2


class SegcastProcess:
    """``python -m server serve --port <free> --log-level WARNING ARGS`` (a later ``--log-level`` in ARGS wins).

    `start` only starts it; `wait_until_healthy` and `wait_for_processed_frames` wait for what a test needs
    (each fails at once if segcast exits). ``env`` replaces the environment (default: this one, with the
    repository on ``PYTHONPATH``); ``cwd`` is where it runs.
    """

    def __init__(
        self,
        *args: str,
        port: int | None = None,
        scheme: str = "http",
        env: Mapping[str, str] | None = None,
        cwd: Path = REPO,
    ) -> None:
        self.port = port or free_port()
        self.scheme = scheme
        self.args = [sys.executable, "-m", "server", "serve", "--port", str(self.port), "--log-level", "WARNING", *args]
        self.env = dict(env) if env is not None else {**os.environ, "PYTHONPATH": str(REPO)}
        self.cwd = cwd
        self.process: subprocess.Popen[str] | None = None

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.args, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def wait_until_healthy(self, context: ssl.SSLContext | None = None) -> None:
        """Return once ``/healthz`` answers 200 (over TLS trusting ``context``, for an https server)."""

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=5, context=context) as response:
                return bool(response.status == 200)

        self._wait(healthy, "an answer from /healthz")

    def wait_for_processed_frames(self, count: int = 1) -> None:
        """Return once every stream has been through the model ``count`` times: predictions happened."""

        def processed() -> bool:
            with urllib.request.urlopen(f"{self.base_url}/api/streams", timeout=5) as response:
                streams = json.load(response)["streams"]
            return bool(streams) and all(stream["frames_processed"] >= count for stream in streams)

        self._wait(processed, f"{count} processed frames in every stream")

    def _wait(self, check: Callable[[], bool], what: str) -> None:
        """Poll ``check`` until true; fail if segcast exits, or after `START_TIMEOUT_S`."""
        assert self.process is not None, "not started"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                output, _ = self.process.communicate()
                raise AssertionError(f"segcast exited ({self.process.returncode}) waiting for {what}: {output[-2000:]}")
            try:
                if check():
                    return
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, f"no {what} within {START_TIMEOUT_S:.0f} s"
            time.sleep(_POLL_INTERVAL_S)

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> tuple[int, float, str]:
        """`stop_process` with SIGTERM: (exit code, seconds it took, its output)."""
        assert self.process is not None
        return stop_process(self.process, timeout_s=timeout_s)

    def kill(self) -> None:
        """Kill it if it still runs; either way reap it and close its output pipe, unless that was done."""
        if self.process is None or self.process.stdout is None or self.process.stdout.closed:
            return
        self.process.kill()  # nothing is sent to a process that has exited
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


def stop_process(
    process: subprocess.Popen[str], stop: signal.Signals = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S
) -> tuple[int, float, str]:
    """Send ``stop``, wait up to ``timeout_s`` for the exit, and kill and reap the process if it overran:
    (exit code, -9 where it was killed; seconds it took; the rest of its output, "" without a pipe).

    A test asserts on the code where the stop is what it tests; either way nothing outlives the test.
    Nothing is sent to a process that has already exited.
    """
    started = time.monotonic()
    process.send_signal(stop)
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return process.returncode, time.monotonic() - started, output or ""


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
