"""segcast's process sends no usage events, where a plain ultralytics program in the same place does.

Both run as real processes in a place where ultralytics would report: its settings fresh (``sync`` on,
the default), not under pytest, and online as far as it can tell (a ``sitecustomize`` answers its DNS
probes). The same ``sitecustomize`` catches what would go to Google Analytics and writes it to a file
instead of sending it, so nothing leaves the machine either way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from server.inference.models import BUNDLED_MODEL
from tests.support.segcast_process import SegcastProcess

REPO = Path(__file__).resolve().parent.parent

SITECUSTOMIZE = """
import io, os, socket, urllib.request

_getaddrinfo = socket.getaddrinfo

def _online(host, *args, **kwargs):  # ultralytics decides it is online if these names resolve
    if host in ("one.one.one.one", "dns.google"):
        return _getaddrinfo("127.0.0.1", *args, **kwargs)
    return _getaddrinfo(host, *args, **kwargs)

socket.getaddrinfo = _online
_urlopen = urllib.request.urlopen

def _caught(request, *args, **kwargs):
    url = request.full_url if isinstance(request, urllib.request.Request) else str(request)
    if "google-analytics.com" in url:
        with open(os.environ["CAUGHT_EVENTS"], "a") as log:
            log.write(request.data.decode() + "\\n")
        return io.BytesIO()
    return _urlopen(request, *args, **kwargs)

urllib.request.urlopen = _caught
"""

PLAIN_ULTRALYTICS = f"""
import numpy as np, threading
from ultralytics import YOLO
YOLO({str(BUNDLED_MODEL)!r}).predict(np.zeros((320, 320, 3), np.uint8), verbose=False)
for thread in threading.enumerate():  # the event goes out from a thread of its own
    if thread is not threading.current_thread():
        thread.join(10)
"""


ULTRALYTICS_IMPORTED_FIRST = f"""
import numpy as np, threading
from ultralytics import YOLO
from ultralytics.utils.events import events
from server.inference.telemetry import switch_off_ultralytics_telemetry
print("enabled on import:", events.enabled)
switch_off_ultralytics_telemetry()
YOLO({str(BUNDLED_MODEL)!r}).predict(np.zeros((320, 320, 3), np.uint8), verbose=False)
for thread in threading.enumerate():
    if thread is not threading.current_thread():
        thread.join(10)
"""


def _environment(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "YOLO_OFFLINE")}
    env.update(
        PYTHONPATH=f"{site}{os.pathsep}{REPO}",
        YOLO_CONFIG_DIR=str(tmp_path / "ultralytics"),
        CAUGHT_EVENTS=str(tmp_path / "events.jsonl"),
    )
    return env


def _caught(tmp_path: Path) -> list[dict[str, object]]:
    log = tmp_path / "events.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_ultralytics_would_report_here_but_a_segcast_server_sends_no_usage_event(tmp_path: Path) -> None:
    env = _environment(tmp_path)
    plain = subprocess.run([sys.executable, "-c", PLAIN_ULTRALYTICS], env=env, capture_output=True, timeout=120)
    assert plain.returncode == 0, plain.stderr
    caught = _caught(tmp_path)
    assert caught and caught[0]["events"][0]["name"] == "predict", "the harness sees ultralytics' events"  # type: ignore[index]
    (tmp_path / "events.jsonl").unlink()
    settings_file = tmp_path / "ultralytics" / "Ultralytics" / "settings.json"
    settings = settings_file.read_text()
    assert json.loads(settings)["sync"] is True

    server = SegcastProcess("--model", "bundled", "--source", "scene:", env=env, cwd=tmp_path)
    server.start()
    try:
        server.wait_for_processed_frames(5)  # predictions happened: ultralytics would have reported them
    finally:
        server.terminate()
    assert _caught(tmp_path) == []
    assert settings_file.read_text() == settings, "the user's ultralytics settings are untouched"


def test_usage_events_stay_off_when_ultralytics_was_imported_before_segcast_switched_them_off(tmp_path: Path) -> None:
    """The model loader switches events off again for an ultralytics other code imported first, which
    decided at import (online, ``sync`` on) to send them."""
    run = subprocess.run(
        [sys.executable, "-c", ULTRALYTICS_IMPORTED_FIRST],
        env=_environment(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert run.returncode == 0, run.stderr
    assert "enabled on import: True" in run.stdout, "ultralytics meant to report here"
    assert _caught(tmp_path) == []
