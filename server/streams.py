"""The stream manager: starts and stops the pipeline threads and keeps the list of streams.

Shutdown order is written once, in `stop`: readers first (no new frames), then the worker (no new
results), then the encoder (nothing left to publish). Streams from the config file, from flags and
from the API all go through `add`, so they behave the same. `add`, `remove` and `replace` block
(opening a file probes it, stopping a reader joins its thread): call them off the event loop.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from server.analytics.engine import check_fit
from server.config import ConfigError, Settings, StreamConfig
from server.delivery.encode import Encoder, FramePacket
from server.frames import FrameResult
from server.http.policy import SourceRefused
from server.inference.models import InferenceStatus
from server.inference.worker import InferenceWorker
from server.sources import Source, SourceError, StreamState, mask_uri, open_source
from server.sources.reader import ReaderStatus, StreamReader, stop_readers

log = logging.getLogger(__name__)


class StreamExistsError(ValueError):
    """A stream with this id is already running."""


class ShuttingDownError(RuntimeError):
    """The manager has stopped: no stream may be started any more."""


class StreamOptionsError(ValueError):
    """A stream's options do not fit the loaded model (a class name it does not know) or its frame.

    ``reason`` names the option (``classes: ...``); the message adds the stream it belongs to.
    """

    def __init__(self, stream_id: str, reason: str) -> None:
        super().__init__(f"{stream_id}: {reason}")
        self.reason = reason


class HandedInError(RuntimeError):
    """The stream's source was handed in (a WebRTC publisher): there is no URI to reopen it from."""


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A stream as the API and viewers see it: its settings, its reader's status and inference counts."""

    config: StreamConfig
    source: str
    status: ReaderStatus
    frames_processed: int = 0
    inference_errors: int = 0
    last_inference_error: str | None = None
    inference: InferenceStatus = field(default_factory=lambda: InferenceStatus(available=True))
    analytics_error: str | None = None  # why zones or lines are left out (pixels beyond the frame)

    @property
    def stream_id(self) -> str:
        return self.config.stream_id

    @property
    def state(self) -> StreamState:
        return self.status.state

    @property
    def error(self) -> str | None:
        return self.status.error

    @property
    def frames_read(self) -> int:
        return self.status.frames_read

    @property
    def frames_dropped(self) -> int:
        return self.status.dropped

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.stream_id,
            "source": self.source,
            "loop": self.config.loop,
            "options": self.config.options.to_json(),
            **self.status.to_json(),
            "frames_processed": self.frames_processed,
            "inference_errors": self.inference_errors,
            "last_inference_error": self.last_inference_error,
            "inference": self.inference.to_json(),
            "analytics_error": self.analytics_error,
        }


class PipelineListener(Protocol):
    """What the pipeline's threads tell the viewers' side: `server.delivery.hub.Hub` in the server,
    a counter in the benchmarks. Every method is called from a pipeline thread."""

    def publish_threadsafe(self, packet: FramePacket) -> None: ...
    def state_threadsafe(self, stream_id: str, state: StreamState, error: str | None) -> None: ...
    def inference_threadsafe(self, status: InferenceStatus) -> None: ...
    def stream_added_threadsafe(self, stream_id: str) -> None: ...
    def stream_removed_threadsafe(self, stream_id: str) -> None: ...


class StreamManager:
    def __init__(self, settings: Settings, hub: PipelineListener) -> None:
        self._settings = settings
        self._hub = hub
        self._encoder = Encoder(hub.publish_threadsafe, settings.jpeg_quality)
        self._worker = InferenceWorker(
            settings.model, self._on_result, settings.inference, on_status=hub.inference_threadsafe
        )
        self._lock = threading.Lock()
        #: Held through each whole change (add, remove, stop), so that a stream removed while it is
        #: being added, or added while the server stops, can never leave a reader running unowned.
        self._changing = threading.RLock()
        self._stopped = False
        self._configs: dict[str, StreamConfig] = {}  # every stream, running or failed, in the order added
        self._readers: dict[str, StreamReader] = {}
        self._failed: dict[str, str] = {}  # id -> reason, for sources that never opened
        self._processed: dict[str, int] = {}
        self._handed_in: set[str] = set()  # streams from `add_source`, which have no URI to reopen
        self._checked: set[str] = set()  # streams from the API, held to the source policy (see `add`)
        #: Ids being removed or restarted: not free until that is done (see `_claim`).
        self._claimed: set[str] = set()
        self._policy = settings.source_policy()

    @property
    def encoder(self) -> Encoder:
        return self._encoder

    @property
    def worker(self) -> InferenceWorker:
        return self._worker

    def start(self) -> None:
        """Load the model (blocking; raises `ModelError`) and start every configured stream.

        Raises `ConfigError` if the stream defaults or a configured stream ask for what the model
        cannot do, before any stream starts.
        """
        self._encoder.start()
        try:
            self._worker.start()
            defaults = StreamConfig("stream_defaults", "", options=self._settings.stream_defaults)
            for config in (defaults, *self._settings.streams):
                self._check_options(config)
        except StreamOptionsError as exc:
            self._worker.stop()
            self._encoder.stop()
            raise ConfigError(f"{exc} (with --model {self._settings.model})") from None
        except Exception:
            self._encoder.stop()
            raise
        for config in self._settings.streams:
            self.add(config)

    def stop(self) -> None:
        with self._changing:
            with self._lock:
                self._stopped = True
            self._stop_all()

    def _stop_all(self) -> None:
        with self._lock:
            readers = list(self._readers.values())
            self._readers.clear()
        stop_readers(readers)  # N streams stop within one timeout, not N
        self._worker.stop()
        self._encoder.stop()

    def add(self, config: StreamConfig, checked: bool = False) -> StreamInfo:
        """Start a stream. A source that cannot be opened is kept as a failed stream, with the reason.

        ``checked``: the stream comes from the API, so its camera's address is checked against
        ``[server] deny_networks`` again before every connection (the name may resolve differently
        by then); the API checked the rest of the URI before calling this.

        Raises `StreamExistsError` if the id is taken, `StreamOptionsError` if its options do not fit the
        model, `ShuttingDownError` once `stop` has begun.
        """
        with self._changing:
            return self._add(config, checked)

    def _check_options(self, config: StreamConfig) -> None:
        try:
            self._worker.check_options(config.options)
        except ValueError as exc:
            raise StreamOptionsError(config.stream_id, str(exc)) from None

    def _check_fit(self, config: StreamConfig, current: StreamConfig) -> None:
        """Refuse zones or lines in pixels beyond the frame of the stream running now (same source, same size).

        Only those new or changed against ``current`` are checked: one the stream already leaves out
        for not fitting stays, left out, and does not block a change that leaves it as it is.
        """
        stats = self._worker.stats(config.stream_id)
        if stats is None or stats.frame_size is None:
            return  # no frame yet: a shape that does not fit is left out, and said so, when one comes
        options, old = config.options, current.options
        try:
            check_fit(options.zones, options.lines, *stats.frame_size, old.zones, old.lines)
        except ValueError as exc:
            raise StreamOptionsError(config.stream_id, str(exc)) from None

    @contextmanager
    def _claim(self, stream_id: str) -> Iterator[None]:
        """Keep ``stream_id`` taken while a removal or restart of it is under way.

        The id leaves the stream list first, but its reader, its worker registration and the hub's
        "removed" follow: a stream `add_source` started under the id in between (a browser page
        publishing again at once) would lose its registration to the old one's removal, and the hub
        would forget it. `add_source` does not wait for changes (it runs on the loop), so it is
        refused instead, as for a taken id.
        """
        with self._lock:
            self._claimed.add(stream_id)
        try:
            yield
        finally:
            with self._lock:
                self._claimed.discard(stream_id)

    def _register(self, config: StreamConfig, handed_in: bool = False, claimed: bool = False) -> None:
        """Claim ``config``'s id and announce the stream: the first step of `_add` and `add_source`.

        ``claimed``: the caller holds the id (`_claim`), restarting the stream under it.
        """
        self._check_options(config)
        with self._lock:
            if self._stopped:
                raise ShuttingDownError("the server is shutting down")
            if config.stream_id in self._configs:
                raise StreamExistsError(f"stream {config.stream_id!r} already exists")
            if config.stream_id in self._claimed and not claimed:
                raise StreamExistsError(f"stream {config.stream_id!r} already exists (it is being stopped)")
            self._configs[config.stream_id] = config
            if handed_in:
                self._handed_in.add(config.stream_id)
        self._hub.stream_added_threadsafe(config.stream_id)

    def _add(self, config: StreamConfig, checked: bool, claimed: bool = False) -> StreamInfo:
        self._register(config, claimed=claimed)
        if checked:
            with self._lock:
                self._checked.add(config.stream_id)
        try:
            check_host = self._check_host if checked else None
            source = open_source(config.uri, self._settings.max_frame_side, check_host)
        except SourceError as exc:
            log.warning("[%s] cannot open source: %s", config.stream_id, exc)
            with self._lock:
                self._failed[config.stream_id] = str(exc)
            self._hub.state_threadsafe(config.stream_id, StreamState.FAILED, str(exc))
            return self.info(config.stream_id)
        return self._start(config, source)

    def add_source(self, config: StreamConfig, source: Source) -> StreamInfo:
        """Start a stream from a source built elsewhere (a WebRTC peer's track) instead of from its URI.

        ``config.uri`` only names the source. Raises `StreamExistsError` if the id is taken.
        Called on the event loop, so it never waits for a change in progress (which may be joining a
        reader): it only takes the short lock, and checks for a shutdown under it.
        """
        self._register(config, handed_in=True)
        return self._start(config, source)

    def _start(self, config: StreamConfig, source: Source) -> StreamInfo:
        """Feed ``source`` to the worker through a new reader: the last step of `_add` and `add_source`.

        If `stop` began meanwhile (possible for `add_source`, which does not hold the change lock),
        the registration is undone and the reader never starts.
        """
        slot = self._worker.add_stream(config.stream_id, source.fps, config.options)
        reader = StreamReader(
            config.stream_id,
            source,
            slot,
            self._hub.state_threadsafe,
            loop_file=config.loop,
            max_frame_side=self._settings.max_frame_side,
        )
        with self._lock:
            stopped = self._stopped
            if stopped:
                self._configs.pop(config.stream_id, None)
                self._handed_in.discard(config.stream_id)
            else:
                self._readers[config.stream_id] = reader
                self._processed[config.stream_id] = 0
        if stopped:
            self._worker.remove_stream(config.stream_id)
            raise ShuttingDownError("the server is shutting down")
        self._hub.state_threadsafe(config.stream_id, StreamState.STARTING, None)
        reader.start()
        log.info("[%s] added: %s", config.stream_id, source.describe())
        return self.info(config.stream_id)

    def remove(self, stream_id: str, final_state: tuple[StreamState, str | None] | None = None) -> StreamConfig:
        """Stop and forget a stream, and tell viewers; raises KeyError if there is none by that id.

        ``final_state`` is announced first, once the reader has stopped (a WebRTC publisher that left
        says why). Both go to the hub in order with the stream's "added", so a stream added again
        with the same id at once is never mistaken for the removed one.
        """
        with self._changing, self._claim(stream_id):
            config = self._remove(stream_id)
            if final_state is not None:
                self._hub.state_threadsafe(stream_id, *final_state)
            self._hub.stream_removed_threadsafe(stream_id)
            return config

    def _remove(self, stream_id: str, restarting: bool = False) -> StreamConfig:
        """``restarting``: `replace` adds it again, so the worker keeps its tracks to end and its ids to go on from."""
        with self._lock:
            config = self._configs.pop(stream_id)
            reader = self._readers.pop(stream_id, None)
            self._failed.pop(stream_id, None)
            self._processed.pop(stream_id, None)
            self._handed_in.discard(stream_id)
            self._checked.discard(stream_id)
        if reader is not None:
            reader.stop()
        self._worker.remove_stream(stream_id, restarting)  # also for a failed stream: it may restart a running one
        if not restarting:  # a restart's last frames still carry its tracks' starts and ends (`Hub`)
            self._encoder.forget(stream_id)
        log.info("[%s] removed", stream_id)
        return config

    def replace(self, config: StreamConfig, checked: bool = False) -> StreamInfo:
        """Give a stream new settings; KeyError if it does not exist.

        A change of zones and lines only is made in place: the video, the tracker's ids and the
        counts of unchanged shapes carry on. Any other change restarts the stream: a fresh tracker,
        whose ids go on after the old one's, and the old one's tracks and zone visits end on the
        restarted stream's first frame (`InferenceWorker.remove_stream`). ``checked`` as for `add`; a
        stream added through the API stays checked.
        Raises `HandedInError` for restarting a stream whose source was handed in, which cannot be
        reopened, and `StreamOptionsError` for options that do not fit the model or, from the same
        source, the frame size it has been giving (zones or lines in pixels beyond it).
        """
        with self._changing:
            current = self.config(config.stream_id)
            self._check_options(config)  # before the running stream is stopped for it
            if config.uri == current.uri:
                self._check_fit(config, current)
            if _only_shapes_differ(current, config) and self._worker.change_shapes(config.stream_id, config.options):
                with self._lock:
                    self._configs[config.stream_id] = config
                log.info("[%s] zones and lines changed", config.stream_id)
                return self.info(config.stream_id)
            with self._lock:
                if config.stream_id in self._handed_in:
                    raise HandedInError(f"stream {config.stream_id!r} is published by a peer and cannot be restarted")
                checked = checked or config.stream_id in self._checked
            with self._claim(config.stream_id):
                self._remove(config.stream_id, restarting=True)
                return self._add(config, checked, claimed=True)

    def _check_host(self, host: str) -> None:
        """Refuse a connection from a checked stream to a host in ``[server] deny_networks`` (see `add`)."""
        try:
            self._policy.check_host(host)
        except SourceRefused as exc:
            raise SourceError(str(exc)) from None

    def config(self, stream_id: str) -> StreamConfig:
        with self._lock:
            return self._configs[stream_id]

    def handed_in(self, stream_id: str) -> bool:
        """Whether the stream's source was handed in (a WebRTC publisher): no config file can describe it."""
        with self._lock:
            return stream_id in self._handed_in

    def configs(self) -> list[StreamConfig]:
        """The streams a config file can describe: not those whose source was handed in (WebRTC)."""
        with self._lock:
            return [c for i, c in self._configs.items() if i not in self._handed_in]

    def info(self, stream_id: str) -> StreamInfo:
        """The stream's state and counters now; KeyError if there is none by that id."""
        with self._lock:
            config = self._configs[stream_id]
            reader = self._readers.get(stream_id)
            failed = self._failed.get(stream_id)
            processed = self._processed.get(stream_id, 0)
        if reader is None:
            status = ReaderStatus(StreamState.FAILED, failed, None, 0, 0, 0.0, 0, None)
            return StreamInfo(config, mask_uri(config.uri), status)
        stats = self._worker.stats(stream_id)
        return StreamInfo(
            config,
            reader.source.describe(),
            reader.status(),
            processed,
            stats.errors if stats else 0,
            stats.last_error if stats else None,
            self._worker.inference_status,
            stats.analytics_error if stats else None,
        )

    def streams(self) -> list[StreamInfo]:
        with self._lock:
            ids = sorted(self._configs)
        infos = []
        for stream_id in ids:
            try:
                infos.append(self.info(stream_id))
            except KeyError:  # removed meanwhile
                continue
        return infos

    def _on_result(self, result: FrameResult) -> None:
        stream_id = result.frame.stream_id
        with self._lock:
            if stream_id in self._processed:
                self._processed[stream_id] += 1
        self._encoder.submit(result)


def _only_shapes_differ(current: StreamConfig, wanted: StreamConfig) -> bool:
    """Whether ``wanted`` changes ``current``'s zones or lines and nothing else (a change made in place)."""
    same_source = (wanted.uri, wanted.loop) == (current.uri, current.loop)
    return (
        same_source
        and dataclasses.replace(current.options, zones=wanted.options.zones, lines=wanted.options.lines)
        == wanted.options
    )
