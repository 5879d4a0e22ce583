"""A real MQTT broker for tests: Debian's mosquitto on 127.0.0.1, its own config file, stopped after.

Without mosquitto the tests skip, except under ``SEGCAST_REQUIRE_COMPONENTS=1`` (CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.ports import free_port

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto")
PASSWD_CANDIDATES = ("mosquitto_passwd", "/usr/bin/mosquitto_passwd")


def require(candidates: tuple[str, ...]) -> str:
    for name in candidates:
        found = shutil.which(name)
        if found:
            return found
    missing = f"needs Debian's mosquitto ({candidates[0]}; see .ci/run)"
    if os.environ.get("SEGCAST_REQUIRE_COMPONENTS") == "1":
        pytest.fail(missing)
    pytest.skip(missing)


class Broker:
    """One mosquitto process; `start` and `stop` may be called again (same port) to test reconnecting."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None, tls: tuple[Path, Path] | None = None) -> None:
        self.binary = require(CANDIDATES)
        self.port = free_port()
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stderr"]
        if os.geteuid() == 0:
            lines.append("user root")  # mosquitto would switch to its own user, who cannot read the test's files
        if users:
            passwords = folder / "passwords"
            passwords.touch(mode=0o600)
            tool = require(PASSWD_CANDIDATES)
            for user, password in users.items():
                subprocess.run([tool, "-b", str(passwords), user, password], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if tls is not None:
            cert, key = tls
            lines += [f"certfile {cert}", f"keyfile {key}"]
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Start mosquitto and return once it accepts connections; a start that fails leaves no process."""
        log = (self.folder / "mosquitto.log").open("ab")
        self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log, stderr=log)
        log.close()
        try:
            self._wait_until_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_until_listening(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.folder / 'mosquitto.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen on {self.port} within {START_TIMEOUT_S} s") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
