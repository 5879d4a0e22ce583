"""A stand-in for the server model weights are downloaded from, on 127.0.0.1, in a thread of the test.

It serves ``files`` (name -> bytes) with their length, counts the requests it gets, and can
misbehave the ways a real download does: answer with an error status, or send only part of a file.
With ``hold`` it answers nothing until `release`, so a test can look at a segcast still loading.
"""

from __future__ import annotations

import threading
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from tests.support.http_stand_in import serving


class WeightsServer:
    def __init__(
        self, files: dict[str, bytes], status: int = 200, cut_after: int | None = None, hold: bool = False
    ) -> None:
        self.files = files
        self.status = status
        self.cut_after = cut_after  # send this many bytes of a file, then close the connection
        self.requests: list[str] = []
        self.requested = threading.Event()
        self.released = threading.Event()
        if not hold:
            self.released.set()
        self._serving = ExitStack()
        self._httpd: ThreadingHTTPServer  # set when it starts serving

    @property
    def url(self) -> str:
        """Valid once the server is entered."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def __enter__(self) -> WeightsServer:
        self._httpd = self._serving.enter_context(serving(_handler_for(self), "weights-server"))
        return self

    def release(self) -> None:
        self.released.set()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.released.set()
        self._serving.close()


def _handler_for(server: WeightsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.requests.append(self.path)
            server.requested.set()
            server.released.wait(30)
            body = server.files.get(self.path.lstrip("/"))
            if body is None or server.status != 200:
                self.send_error(404 if body is None else server.status)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body if server.cut_after is None else body[: server.cut_after])

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler
