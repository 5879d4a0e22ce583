"""A small HTTP camera for tests: multipart MJPEG at a chosen (slow) rate, plus plain files.

``/video.mjpg`` streams the generated scene as JPEGs the way many IP cameras do; `MjpegServer.stall`
keeps connections open but stops sending, like a camera whose encoder hung; `MjpegServer.stated_length`
has parts state a wrong Content-Length; ``password`` makes it answer 401 to everyone else. Any other
path is served from ``files`` (a video, an HLS playlist); `MjpegServer.cut_file_at` ends one such
answer early, as a connection that drops mid-file.
Runs on 127.0.0.1 in a thread of the test process and stops with `close`.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable
from contextlib import ExitStack
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2

from server.scene import Scene
from tests.support.http_stand_in import serving

BOUNDARY = "segcastframe"
MJPEG_PATH = "/video.mjpg"


class MjpegServer:
    def __init__(
        self, fps: float = 4.0, files: Path | None = None, user: str = "", password: str = "", width: int = 320
    ) -> None:
        self.fps = fps
        self.files = files
        self.expected_auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() if password else None
        self.stall = threading.Event()  # set: send nothing more, keep the connection open
        self.closing = threading.Event()
        self.connections = 0
        #: Set to a byte offset: the next file answer that would pass it stops there and hangs up.
        self.cut_file_at: int | None = None
        #: Every file request's first byte (0 without a Range), in order.
        self.file_requests: list[int] = []
        #: Set: the Content-Length each part states, given its number (from 1) and its true length, as a
        #: camera that now and then states a wrong one.
        self.stated_length: Callable[[int, int], int] | None = None
        scene = Scene(seed=3, width=width, height=width * 3 // 5, fps=max(1, round(fps)))
        self.jpegs = [cv2.imencode(".jpg", image)[1].tobytes() for image in scene.frames(8)]
        self._serving = ExitStack()
        self._httpd: ThreadingHTTPServer  # set when it starts serving

    @property
    def port(self) -> int:
        """Valid once the server has started."""
        return int(self._httpd.server_address[1])

    def url(self, path: str = MJPEG_PATH, credentials: str = "") -> str:
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}{path}"

    def start(self) -> MjpegServer:
        self._httpd = self._serving.enter_context(serving(_handler_for(self), "mjpeg-server"))
        return self

    def close(self) -> None:
        self.closing.set()
        self._serving.close()

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler_for(camera: MjpegServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the tests' output is about segcast, not about this server."""

        def do_GET(self) -> None:
            if camera.expected_auth is not None and self.headers.get("Authorization") != camera.expected_auth:
                self.send_response(HTTPStatus.UNAUTHORIZED)
                self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path == MJPEG_PATH:
                self._stream()
            else:
                self._file()

        def _stream(self) -> None:
            camera.connections += 1
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            index = 0
            try:
                while not camera.closing.is_set():
                    if not camera.stall.is_set():
                        jpeg = camera.jpegs[index % len(camera.jpegs)]
                        index += 1
                        length = len(jpeg) if camera.stated_length is None else camera.stated_length(index, len(jpeg))
                        head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {length}\r\n\r\n"
                        self.wfile.write(head.encode() + jpeg + b"\r\n")
                        self.wfile.flush()
                    camera.closing.wait(1.0 / camera.fps)
            except (BrokenPipeError, ConnectionResetError):
                return

        def _file(self) -> None:
            path = (camera.files / self.path.lstrip("/")).resolve() if camera.files else None
            if path is None or camera.files is None or not path.is_file() or camera.files.resolve() not in path.parents:
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            body = path.read_bytes()
            first, last = 0, len(body) - 1
            wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if wanted:  # FFmpeg seeks in MP4s (the index is at the end) with range requests
                first, last = int(wanted[1]), min(last, int(wanted[2] or last))
                self.send_response(HTTPStatus.PARTIAL_CONTENT)
                self.send_header("Content-Range", f"bytes {first}-{last}/{len(body)}")
            else:
                self.send_response(HTTPStatus.OK)
            types = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t"}
            self.send_header("Content-Type", types.get(path.suffix, "video/mp4"))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(last - first + 1))
            self.end_headers()
            camera.file_requests.append(first)
            cut, end = camera.cut_file_at, last + 1
            if cut is not None and first < cut < end:
                camera.cut_file_at, end = None, cut
                self.close_connection = True
            try:
                self.wfile.write(body[first:end])
            except (BrokenPipeError, ConnectionResetError):
                return

    return Handler
