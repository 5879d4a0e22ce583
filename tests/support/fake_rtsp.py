"""A camera that speaks just enough RTSP to describe a stream, badly: for what FFmpeg makes of that.

Every ``DESCRIBE`` is answered with ``sdp`` (garbage, by default), every other request with
``200 OK``. Runs on 127.0.0.1 in a thread of the test process; `close` stops it and its connections.
"""

from __future__ import annotations

import socket
import threading

GARBAGE_SDP = b"garbage \x00\xff not a session description\r\nzzz\r\n"


class FakeRtspCamera:
    def __init__(self, sdp: bytes = GARBAGE_SDP) -> None:
        self.sdp = sdp
        self.described = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._accept, name="fake-rtsp", daemon=True)

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/stream1"

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._answer, args=(connection,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _answer(self, connection: socket.socket) -> None:
        connection.settimeout(0.1)
        buffer = b""
        with connection:
            while not self._closing.is_set():
                try:
                    data = connection.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                while b"\r\n\r\n" in buffer:
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    try:
                        connection.sendall(self._reply(head.decode("latin-1").split("\r\n")))
                    except OSError:
                        return

    def _reply(self, lines: list[str]) -> bytes:
        cseq = next((line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("cseq")), "0")
        if not lines[0].startswith("DESCRIBE"):
            return f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nSession: 1\r\nPublic: DESCRIBE, SETUP, PLAY\r\n\r\n".encode()
        self.described += 1
        head = f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Type: application/sdp\r\nContent-Length: {len(self.sdp)}"
        return f"{head}\r\n\r\n".encode() + self.sdp

    def __enter__(self) -> FakeRtspCamera:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._thread.join(5)
        for thread in self._threads:
            thread.join(5)
        self._listener.close()
