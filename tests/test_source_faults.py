"""Sources given media built to cost memory or to mislead: huge pictures, redirect loops, cut-off videos."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from tests.support.mjpeg_server import MjpegServer

#: A PNG of this many pixels a side: 790 KB of file, 256 MB once decoded (8-bit gray).
HUGE_SIDE = 16000
#: What opening the huge picture may add to a process: a reader's own buffers, not its pixels.
HUGE_RSS_GROWTH_MB = 150

#: Opens the source given, reads it until it fails, and prints the failure and how far the process grew
#: at its peak meanwhile (Linux: writing 5 to clear_refs starts the peak, VmHWM, over from the size now).
OPEN_AND_MEASURE = """
import json, re, sys, threading
from server.sources import open_source
def status_kb(field):
    with open("/proc/self/status") as status:
        return int(re.search(field + r":\\s+(\\d+) kB", status.read())[1])
source = open_source(sys.argv[1], 4096)
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")
before = status_kb("VmRSS")
try:
    for _ in source.open(threading.Event()):
        pass
    failure = None
except Exception as exc:
    failure = [type(exc).__name__, str(exc)]
print(json.dumps({"failure": failure, "grown_mb": (status_kb("VmHWM") - before) / 1024}))
"""


def write_huge_png(path: Path) -> Path:
    """A gray PNG of `HUGE_SIDE` pixels a side, written row by row: never held whole in this process."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), bytes(HUGE_SIDE + 1)  # each row: filter type 0, then black pixels
    pixels = b"".join(packer.compress(row) for _ in range(HUGE_SIDE)) + packer.flush()
    header = struct.pack(">IIBBBBB", HUGE_SIDE, HUGE_SIDE, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def huge_png_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("huge-png")
    write_huge_png(folder / "huge.png")
    return folder


@pytest.mark.parametrize("where", ["file", "http"])
def test_a_huge_picture_is_refused_before_it_is_decoded(huge_png_folder: Path, where: str) -> None:
    """FFmpeg decoded the picture while it opened it, to learn its size, before the size limit was
    looked at: 741 MB for a 790 KB PNG of 16000x16000, each stream given it. Now it is refused unread,
    and the stream fails naming the limit."""
    with MjpegServer(files=huge_png_folder) as server:
        uri = str(huge_png_folder / "huge.png") if where == "file" else server.url("/huge.png")
        run = subprocess.run(
            [sys.executable, "-c", OPEN_AND_MEASURE, uri],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).parent.parent,
        )
    assert run.returncode == 0, run.stderr
    measured = json.loads(run.stdout)
    assert measured["grown_mb"] < HUGE_RSS_GROWTH_MB, measured
    kind, message = measured["failure"]
    assert kind == "SourceError"
    assert message.startswith("frames of more than 4096x4096 pixels are larger than 4096 pixels a side")
    assert "([server] max_frame_side)" in message and "raise the limit" in message
