"""The stream manager: starts and stops the pipeline threads and keeps the list of streams.

Shutdown order is written once, in `stop`: readers first (no new frames), then the worker (no new
results), then the encoder (nothing left to publish).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from server.config import Settings, StreamConfig
from server.encode import Encoder
from server.frames import FrameResult
from server.hub import Hub
from server.sources import SourceError, StreamState, open_source
from server.sources.reader import StreamReader
from server.worker import InferenceWorker

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A stream as the API and viewers see it."""

    stream_id: str
    source: str
    state: StreamState
    error: str | None
    frames_read: int
    frames_processed: int
    frames_dropped: int

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.stream_id,
            "source": self.source,
            "state": self.state.value,
            "error": self.error,
            "frames_read": self.frames_read,
            "frames_processed": self.frames_processed,
            "frames_dropped": self.frames_dropped,
        }


class StreamManager:
    def __init__(self, settings: Settings, hub: Hub) -> None:
        self._settings = settings
        self._hub = hub
        self._encoder = Encoder(hub.publish_threadsafe, settings.jpeg_quality)
        self._worker = InferenceWorker(settings.model, self._on_result, settings.inference)
        self._lock = threading.Lock()
        self._readers: dict[str, StreamReader] = {}
        self._failed: dict[str, tuple[str, str]] = {}  # id -> (uri, reason) for sources that never opened
        self._processed: dict[str, int] = {}

    def start(self) -> None:
        """Load the model (blocking; raises `ModelError`) and start every configured stream."""
        self._encoder.start()
        try:
            self._worker.start()
        except Exception:
            self._encoder.stop()
            raise
        for config in self._settings.streams:
            self.add(config)

    def stop(self) -> None:
        with self._lock:
            readers = list(self._readers.values())
            self._readers.clear()
        for reader in readers:
            reader.request_stop()  # ask all at once, then wait: N streams stop within one timeout, not N
        for reader in readers:
            reader.stop()
        self._worker.stop()
        self._encoder.stop()

    def add(self, config: StreamConfig) -> None:
        """Start a stream. A source that cannot be opened is kept as a failed stream, with the reason."""
        with self._lock:
            if config.stream_id in self._readers or config.stream_id in self._failed:
                raise ValueError(f"stream {config.stream_id!r} already exists")
        try:
            source = open_source(config.uri)
        except SourceError as exc:
            log.warning("[%s] cannot open source: %s", config.stream_id, exc)
            with self._lock:
                self._failed[config.stream_id] = (config.uri, str(exc))
            self._hub.state_threadsafe(config.stream_id, StreamState.FAILED, str(exc))
            return
        slot = self._worker.add_stream(config.stream_id, source.fps, config.tracker)
        reader = StreamReader(config.stream_id, source, slot, self._hub.state_threadsafe, loop_file=config.loop)
        with self._lock:
            self._readers[config.stream_id] = reader
            self._processed[config.stream_id] = 0
        reader.start()

    def remove(self, stream_id: str) -> None:
        with self._lock:
            reader = self._readers.pop(stream_id, None)
            failed = self._failed.pop(stream_id, None)
        if reader is None and failed is None:
            raise KeyError(stream_id)
        if reader is not None:
            reader.stop()
            self._worker.remove_stream(stream_id)

    def streams(self) -> list[StreamInfo]:
        with self._lock:
            readers = list(self._readers.values())
            failed = dict(self._failed)
        infos = [
            StreamInfo(
                r.stream_id,
                r.source.describe(),
                r.state,
                r.error,
                r.frames_read,
                self._processed.get(r.stream_id, 0),
                r.slot.dropped,
            )
            for r in readers
        ]
        infos += [StreamInfo(i, uri, StreamState.FAILED, reason, 0, 0, 0) for i, (uri, reason) in failed.items()]
        return sorted(infos, key=lambda info: info.stream_id)

    def _on_result(self, result: FrameResult) -> None:
        stream_id = result.frame.stream_id
        if stream_id in self._processed:
            self._processed[stream_id] += 1
        self._encoder.submit(result)
