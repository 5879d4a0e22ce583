"""Named models (``--model yolov8n-seg.pt``): downloaded once, with progress, into a per-user cache.

Left to itself, ultralytics downloads a bare model name into the folder the program was started from,
says nothing useful while it waits, and offline spends tens of seconds on DNS look-ups and retries
before failing with a multi-line error. segcast fetches the names ultralytics publishes itself:
one look-up with a time limit, one attempt, a line with the size and a progress display, the file in
`cache_dir` (where it is found again on the next start, whatever the working folder), and a one-line
reason when it cannot.

``SEGCAST_WEIGHTS_URL`` points the download at a mirror (a folder URL the file name is appended to),
for machines that may reach an internal server but not GitHub.
"""

from __future__ import annotations

import http.client
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO, TextIO, cast
from urllib.parse import urlsplit

#: Where ultralytics 8.4 itself downloads its models from (``attempt_download_asset``'s release).
DEFAULT_WEIGHTS_URL = "https://github.com/ultralytics/assets/releases/download/v8.4.0/"
WEIGHTS_URL_ENV = "SEGCAST_WEIGHTS_URL"
#: Name look-up, connecting, and each read: a machine without internet fails within these, once.
RESOLVE_TIMEOUT_S = 5.0
NETWORK_TIMEOUT_S = 10.0
CHUNK_BYTES = 64 * 1024
PROGRESS_INTERVAL_S = 0.25  # redraws of the progress line on a terminal
LOG_STEP_PERCENT = 25  # progress lines elsewhere (a service log): one per quarter
#: Every PyTorch checkpoint is a zip archive; an HTML error page from a proxy or portal is not.
CHECKPOINT_MAGIC = b"PK\x03\x04"


class DownloadError(Exception):
    """A named model could not be fetched; the message says why, without naming the flag."""


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/segcast/models``, by default ``~/.cache/segcast/models``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "segcast" / "models"


def is_published_name(name: str) -> bool:
    """Whether ``name`` is a model file ultralytics publishes (``yolov8n-seg.pt``, ``yolo11s.pt``, ...)."""
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

    return name in GITHUB_ASSETS_NAMES


def weights_url() -> str:
    base = os.environ.get(WEIGHTS_URL_ENV) or DEFAULT_WEIGHTS_URL
    return base if base.endswith("/") else f"{base}/"


def fetch(name: str, *, folder: Path | None = None, base_url: str | None = None, out: TextIO | None = None) -> Path:
    """The local path of model ``name``: from the cache, or downloaded into it first.

    The file appears in the cache only once it is complete and looks like a checkpoint, so an
    interrupted download is never mistaken for a model on the next start. Raises `DownloadError`.
    """
    folder = folder or cache_dir()
    path = folder / name
    if path.is_file():
        return path
    url = (base_url or weights_url()) + name
    out = out or sys.stderr
    response = _open(url)
    with response:
        size = int(response.headers.get("Content-Length") or 0)
        shown = f" ({size / 1e6:.1f} MB)" if size else ""
        print(f"segcast: downloading {name}{shown} from {urlsplit(url).hostname} into {folder}", file=out, flush=True)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DownloadError(f"cannot create the model cache {folder} ({exc.strerror or exc})") from None
        partial = folder / f".{name}.{os.getpid()}.partial"
        try:
            with partial.open("wb") as file:
                _copy(response, file, size, _Meter(size, out))
            _check_checkpoint(partial)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
    return path


def _open(url: str) -> http.client.HTTPResponse:
    """The response for ``url``; a `DownloadError` at once where the network is not there."""
    try:  # a malformed URL (``http://[::1``, a port beyond 65535) raises ValueError here, naming nothing
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DownloadError(f"{WEIGHTS_URL_ENV}: expected an http(s) URL, got {url!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DownloadError(f"{WEIGHTS_URL_ENV}: expected an http(s) URL, got {url!r}")
    _resolve(parts.hostname, port or (443 if parts.scheme == "https" else 80))
    try:
        return cast(http.client.HTTPResponse, urllib.request.urlopen(url, timeout=NETWORK_TIMEOUT_S))
    except (ValueError, http.client.InvalidURL) as exc:  # a space or control character in it
        raise DownloadError(f"{WEIGHTS_URL_ENV}: expected an http(s) URL, got {url!r} ({exc})") from None
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{parts.hostname} answered {exc.code} {exc.reason} for {url}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"{parts.hostname} unreachable: {_reason(exc.reason)}") from None
    except OSError as exc:
        raise DownloadError(f"{parts.hostname} unreachable: {_reason(exc)}") from None


def _resolve(host: str, port: int) -> None:
    """Look ``host`` up, waiting at most `RESOLVE_TIMEOUT_S`.

    The system resolver has no time limit of its own: with no network but a configured DNS server it
    waits out its retries (often 10 s or more per name). The look-up runs in a daemon thread, so a
    slow one is abandoned rather than waited for.
    """
    outcome: list[BaseException | None] = []
    done = threading.Event()

    def look_up() -> None:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=look_up, name="resolve", daemon=True).start()
    if not done.wait(RESOLVE_TIMEOUT_S):
        raise DownloadError(f"{host} unreachable: no answer from DNS within {RESOLVE_TIMEOUT_S:.0f} s")
    if outcome[0] is not None:
        raise DownloadError(f"{host} unreachable: {_reason(outcome[0])}")


def _copy(response: BinaryIO, file: BinaryIO, size: int, meter: _Meter) -> None:
    received = 0
    try:
        while chunk := response.read(CHUNK_BYTES):
            file.write(chunk)
            received += len(chunk)
            meter.update(received)
    except (OSError, http.client.HTTPException) as exc:  # a stall beyond the read timeout, a dropped connection
        raise DownloadError(f"the download stopped after {received / 1e6:.1f} MB ({_reason(exc)})") from None
    finally:
        meter.finish(received)
    if size and received != size:
        raise DownloadError(f"the download stopped after {received / 1e6:.1f} of {size / 1e6:.1f} MB")


def _check_checkpoint(path: Path) -> None:
    with path.open("rb") as file:
        if file.read(len(CHECKPOINT_MAGIC)) != CHECKPOINT_MAGIC:
            raise DownloadError(f"the file downloaded is not a PyTorch model ({path.stat().st_size} bytes)")


def _reason(exc: object) -> str:
    if isinstance(exc, socket.gaierror):
        return "its name was not found (no internet, or no DNS)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer within {NETWORK_TIMEOUT_S:.0f} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class _Meter:
    """Progress of one download: redrawn in place on a terminal, a line per quarter elsewhere."""

    def __init__(self, size: int, out: TextIO) -> None:
        self._size = size
        self._out = out
        self._live = out.isatty()
        self._last_draw = 0.0
        self._next_percent = LOG_STEP_PERCENT

    def update(self, received: int) -> None:
        if self._live:
            now = time.monotonic()
            if now - self._last_draw >= PROGRESS_INTERVAL_S:
                self._last_draw = now
                print(f"\r  {self._text(received)}", end="", file=self._out, flush=True)
        elif self._size:
            percent = received * 100 // self._size
            if percent >= self._next_percent and received < self._size:
                self._next_percent = (percent // LOG_STEP_PERCENT + 1) * LOG_STEP_PERCENT
                print(f"  {self._text(received)}", file=self._out, flush=True)

    def finish(self, received: int) -> None:
        print(f"\r  {self._text(received)}" if self._live else f"  {self._text(received)}", file=self._out, flush=True)

    def _text(self, received: int) -> str:
        if not self._size:
            return f"{received / 1e6:.1f} MB"
        return f"{received * 100 // self._size:3d}% {received / 1e6:.1f} of {self._size / 1e6:.1f} MB"
