"""The encoder thread: annotate and JPEG-encode each result once, for every viewer at once.

It sits between the inference thread and the hub so that neither the model nor the event loop pays
for drawing and compression. Its input is a latest-only slot per stream: if encoding ever falls
behind, a stream's older result is replaced (and counted), never queued.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import cv2

from server.annotate import annotate
from server.frames import EncodedFrame, FrameResult

log = logging.getLogger(__name__)

JPEG_QUALITY = 80
IDLE_POLL_S = 0.1
JOIN_TIMEOUT_S = 2.0


class Encoder:
    def __init__(self, on_encoded: Callable[[EncodedFrame], None], jpeg_quality: int = JPEG_QUALITY) -> None:
        self._on_encoded = on_encoded
        self._params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
        self._lock = threading.Lock()
        self._pending: dict[str, FrameResult] = {}
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="encoder", daemon=True)
        self.dropped = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._ready.set()
        self._thread.join(JOIN_TIMEOUT_S)

    def submit(self, result: FrameResult) -> None:
        """Called from the inference thread; never blocks on encoding."""
        with self._lock:
            if result.frame.stream_id in self._pending:
                self.dropped += 1
            self._pending[result.frame.stream_id] = result
        self._ready.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._ready.wait(IDLE_POLL_S)
            self._ready.clear()
            with self._lock:
                pending, self._pending = self._pending, {}
            for result in pending.values():
                try:
                    self._on_encoded(EncodedFrame(result, self.encode(result)))
                except Exception:
                    log.exception("[%s] could not encode frame %d", result.frame.stream_id, result.frame.seq)

    def encode(self, result: FrameResult) -> bytes:
        image = annotate(result.frame.image, result.tracks)
        ok, buffer = cv2.imencode(".jpg", image, self._params)
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return buffer.tobytes()
