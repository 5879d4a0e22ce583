"""A `StreamReader` wired the way the server wires it, with waits that always end.

Tests drive readers directly (no model): a `LatestFrame` slot the test takes frames from, and a state
listener that records every announced state. Every wait has a deadline and fails with the history
of what happened instead, so a broken reader is a readable failure and never a hung test.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from server.frames import Frame
from server.sources import LatestFrame, Source, StreamState, open_source
from server.sources.backoff import Backoff
from server.sources.base import MAX_FRAME_SIDE_PX
from server.sources.reader import ReaderStatus, StreamReader

#: Quick retries keep recovery tests short; the production schedule is tested on its own.
FAST_BACKOFF = Backoff(initial_s=0.2, max_s=1.0)
POLL_S = 0.02


class RecordingSlot(LatestFrame):
    """A slot that also keeps every frame put in it, for tests about each frame's times: a test taking
    the newest frame may miss some on a busy machine. Only for short media: it keeps their images."""

    def __init__(self, ready: threading.Event) -> None:
        super().__init__(ready)
        self.frames: list[Frame] = []

    def put(self, frame: Frame) -> None:
        self.frames.append(frame)
        super().put(frame)


class ReaderProbe:
    def __init__(
        self,
        source: str | Source,
        stream_id: str = "cam",
        loop_file: bool = False,
        backoff: Backoff = FAST_BACKOFF,
        max_frame_side: int = MAX_FRAME_SIDE_PX,
        slow_backoff: Backoff | None = None,
        record: bool = False,
    ) -> None:
        self.source = open_source(source, max_frame_side) if isinstance(source, str) else source
        self.ready = threading.Event()
        self.slot = RecordingSlot(self.ready) if record else LatestFrame(self.ready)
        self.announced: list[tuple[StreamState, str | None]] = []
        self.reader = StreamReader(
            stream_id,
            self.source,
            self.slot,
            self._on_state,
            loop_file,
            backoff,
            max_frame_side=max_frame_side,
            slow_backoff=slow_backoff,
        )

    def _on_state(self, stream_id: str, state: StreamState, error: str | None) -> None:
        assert stream_id == self.reader.stream_id
        self.announced.append((state, error))

    def status(self) -> ReaderStatus:
        return self.reader.status()

    @property
    def published(self) -> list[Frame]:
        """Every frame the reader published so far, in order (a probe made with ``record=True``)."""
        assert isinstance(self.slot, RecordingSlot), "made without record=True"
        return list(self.slot.frames)

    def wait_until(self, what: str, predicate: Callable[[ReaderStatus], bool], timeout_s: float) -> ReaderStatus:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.reader.status()
            if predicate(status):
                return status
            time.sleep(POLL_S)
        raise AssertionError(f"not {what} within {timeout_s} s: {self.reader.status()}; announced {self.announced}")

    def wait_state(self, state: StreamState, timeout_s: float) -> ReaderStatus:
        return self.wait_until(state.value, lambda status: status.state is state, timeout_s)

    def next_frame(self, timeout_s: float) -> Frame:
        """The newest frame, waiting for one to arrive if the slot is empty."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            frame = self.slot.take()
            if frame is not None:
                return frame
            self.ready.wait(POLL_S)
            self.ready.clear()
        raise AssertionError(f"no frame within {timeout_s} s: {self.reader.status()}; announced {self.announced}")

    def __enter__(self) -> ReaderProbe:
        self.reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.reader.stop()


class SilentServer:
    """A TCP port that accepts connections and never says a word: a camera that hangs mid-handshake."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self.accepted = threading.Event()
        self._closing = threading.Event()
        self._connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._connections.append(connection)
            self.accepted.set()

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._thread.join(5)
        for connection in self._connections:
            connection.close()
        self._listener.close()
