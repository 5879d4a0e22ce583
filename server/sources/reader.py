"""The reader thread: one per stream, from a `Source` into that stream's `LatestFrame` slot."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from server.frames import Frame
from server.sources.base import LatestFrame, Source, SourceError, StreamState

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 2.0

StateListener = Callable[[str, StreamState, str | None], None]


class StreamReader:
    """Runs one source in its own thread so decoding never touches the event loop.

    Files are paced to their native rate against the wall clock (a file stands in for a camera);
    live sources are read as fast as they deliver. State changes go to ``on_state`` from the reader
    thread: the listener must hand them over to the loop itself.
    """

    def __init__(
        self,
        stream_id: str,
        source: Source,
        slot: LatestFrame,
        on_state: StateListener,
        loop_file: bool = False,
    ) -> None:
        self.stream_id = stream_id
        self.source = source
        self.slot = slot
        self.loop_file = loop_file
        self.state = StreamState.STARTING
        self.error: str | None = None
        self.frames_read = 0
        self._on_state = on_state
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader-{stream_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the reader to stop without waiting, so many readers can wind down together."""
        self._stop.set()

    def stop(self) -> None:
        """Ask the reader to stop and wait for it, at most `JOIN_TIMEOUT_S`."""
        self.request_stop()
        self._thread.join(JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("[%s] reader did not stop within %.1f s", self.stream_id, JOIN_TIMEOUT_S)

    def _set_state(self, state: StreamState, error: str | None = None) -> None:
        if state is self.state and error == self.error:
            return
        self.state, self.error = state, error
        log.info("[%s] %s%s", self.stream_id, state.value, f": {error}" if error else "")
        self._on_state(self.stream_id, state, error)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._play_once()
                if not self.loop_file or self.source.live:
                    break
            if not self._stop.is_set():
                self._set_state(StreamState.ENDED)
        except SourceError as exc:
            self._set_state(StreamState.FAILED, str(exc))
        except Exception as exc:  # a reader must report, never die silently
            log.exception("[%s] reader crashed", self.stream_id)
            self._set_state(StreamState.FAILED, f"{type(exc).__name__}: {exc}")

    def _play_once(self) -> None:
        started_wall: float | None = None
        first_media = 0.0
        for decoded in self.source.open(self._stop):
            if self._stop.is_set():
                return
            if not self.source.live:
                if started_wall is None:
                    started_wall, first_media = time.monotonic(), decoded.media_time
                due = started_wall + (decoded.media_time - first_media)
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
            frame = Frame(self.stream_id, self.frames_read, time.time(), decoded.media_time, decoded.image)
            self.frames_read += 1
            self.slot.put(frame)
            if self.state is not StreamState.LIVE:
                self._set_state(StreamState.LIVE)
