"""bench/soak.py stops its server whatever happens: a run that fails still sends it SIGTERM and waits
for it to exit, rather than leaving it killed and unreaped."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import bench.soak as soak


def test_a_soak_that_fails_stops_its_server_and_waits_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    servers: list[subprocess.Popen[bytes]] = []

    class Recorded(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            servers.append(self)

    async def broken_viewer(*args: object) -> None:
        raise RuntimeError("a viewer broke")

    monkeypatch.setattr(subprocess, "Popen", Recorded)
    monkeypatch.setattr(soak, "viewer", broken_viewer)
    monkeypatch.setattr(soak, "WARMUP_S", 0.0)
    monkeypatch.setattr("sys.argv", ["soak.py", "load", "--viewers", "1", "--streams", "1", "--seconds", "1"])

    with pytest.raises(RuntimeError, match="a viewer broke"):
        soak.main()

    [server] = servers
    assert server.returncode == 0, "stopped by SIGTERM, which segcast exits cleanly on, and waited for"
    assert Path(f"/proc/{server.pid}").exists() is False or server.returncode is not None
