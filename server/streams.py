"""The stream manager: starts and stops the pipeline threads and keeps the list of streams.

Shutdown order is written once, in `stop`: readers first (no new frames), then the worker (no new
results), then the encoder (nothing left to publish). Streams from the config file, from flags and
from the API all go through `add`, so they behave the same. `remove` and `replace` block while the
stream's reader stops (up to `JOIN_TIMEOUT_S`), `add` while a generated scene is drawn, and each
waits for a change in progress: call them off the event loop. None of them waits for media, nor for
the file system: whether a file is there, and its content, are each reader's to find out, in its own
thread (`open_source`). The records of the streams, and the lock that guards them, are the
`StreamTable`'s (`server.stream_table`); this module orders the steps across threads and tells the log.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterable
from typing import Protocol

from server.analytics.shapes import check_fit
from server.config import Settings, StreamConfig
from server.config_values import ConfigError
from server.delivery.encode import Encoder, FramePacket
from server.frames import FrameResult
from server.http.access.policy import SourcePolicy
from server.inference.models import InferenceStatus
from server.inference.pace import NodePace, PaceRound, PaceSample, PaceVerdict, StreamPace
from server.inference.worker import IN_PLACE_OPTIONS, InferenceWorker
from server.options import StreamOptions
from server.sources import Source, SourceError, StreamState, mask_uri, open_source
from server.sources.reader import ReaderStatus, StreamReader, stop_readers
from server.stream_info import StreamInfo, stream_order
from server.stream_table import ShuttingDownError, StreamTable
from server.stream_table import StreamExistsError as StreamExistsError  # raised by `add`: caught from here

log = logging.getLogger(__name__)


class StreamOptionsError(ValueError):
    """A stream's options do not fit the loaded model (a class name it does not know) or its frame.

    ``reason`` names the option (``classes: ...``); the message adds the stream it belongs to.
    """

    def __init__(self, stream_id: str, reason: str) -> None:
        super().__init__(f"{stream_id}: {reason}")
        self.stream_id = stream_id
        self.reason = reason


class HandedInError(RuntimeError):
    """A change needs the stream's source reopened (its uri or loop), but it was handed in (a WebRTC
    publisher): there is no URI to reopen it from. Its options can change (`StreamManager.replace`)."""


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
            settings.model,
            self._on_result,
            settings.inference,
            on_status=hub.inference_threadsafe,
            on_unfit=self._on_unfit,
        )
        self._table = StreamTable()
        #: Held while a change (add, remove, replace) updates the list of streams, so that a stream
        #: removed while it is being added can never leave a reader running unowned. Never held while
        #: waiting for media or a thread (a source is opened by its reader; a stopped reader is joined
        #: after it is released, `_join`), so one hung file or stalled camera holds up no other change.
        #: Nor while waiting for the file system: `open_source` reads only the URI, so a network share
        #: that does not answer whether a file is there holds up that stream's reader alone.
        #: `stop` does not take it: once `StreamTable.shut`, the table lets no change under way start a reader.
        self._changing = threading.RLock()
        self._policy = settings.source_policy()
        #: The node's last verdicts on whether its streams keep up, and its word on it in the log (each
        #: stream's own pace is the table's; `check_pace` takes `NodePace`'s lock before the table's).
        self._node_pace = NodePace()

    @property
    def policy(self) -> SourcePolicy:
        """What sources the API may open, made once at start (its ``media_dirs`` resolved then)."""
        return self._policy

    @property
    def encoder(self) -> Encoder:
        return self._encoder

    @property
    def worker(self) -> InferenceWorker:
        return self._worker

    def is_current(self, info: StreamInfo) -> bool:
        """Whether the stream's newest processed frame is of the scene now: it is live and its frames
        are inferred (not while its camera reconnects, nor while a remote model's server is down)."""
        return info.state is StreamState.LIVE and self._worker.inference_status.available

    def start(self) -> None:
        """Load the model (blocking; raises `ModelError`) and start every configured stream.

        Raises `ConfigError` if the stream defaults or a configured stream ask for what the model
        cannot do, before any stream starts. Whatever it raises, it leaves no thread running.
        """
        self._encoder.start()
        try:
            self._worker.start()
        except BaseException:
            self._encoder.stop()
            raise
        try:
            defaults = StreamConfig("stream_defaults", "", options=self._settings.stream_defaults)
            for config in (defaults, *self._settings.streams):
                self._check_options(config)
            for config in self._settings.streams:
                self.add(config)
        except StreamOptionsError as exc:
            self.stop()
            # The cause stays: the command line tells from it where a config file gave the options.
            raise ConfigError(f"{exc} (with --model {self._settings.model})") from exc
        except BaseException:
            self.stop()  # readers of the streams added so far too
            raise

    def stop(self) -> None:
        """Stop every reader, then the worker, then the encoder; from now on every change is refused.

        Does not wait for a change under way: none can start a reader once the table is shut
        (`StreamTable.starting`), and readers being removed are joined here too, so this takes one
        `JOIN_TIMEOUT_S` at most for the readers, however many there are and whatever the changes under
        way wait for.
        """
        readers = self._table.shut()
        stop_readers(readers)  # N streams stop within one timeout, not N
        self._worker.stop()
        self._encoder.stop()

    def add(self, config: StreamConfig) -> StreamInfo:
        """Start a stream. A source that cannot be opened is kept as a failed stream, with the reason.

        A stream `StreamConfig.from_api` (the API's, or one it saved to the config file) has its
        camera's address checked against ``[server] deny_networks`` again before every connection (the
        name may resolve differently by then, or after a restart), and its file's real path against
        ``[server] media_dirs`` each time it is opened (a link may be pointed elsewhere, the folders
        changed in the config file); the API checked the rest of the URI before it first gave it.

        Raises `StreamExistsError` if the id is taken, `StreamOptionsError` if its options do not fit the
        model, `ShuttingDownError` once `stop` has begun.
        """
        with self._changing:
            self._register(config)
            return self._open(config)

    def _check_options(self, config: StreamConfig) -> None:
        try:
            self._worker.check_options(config.options)
        except ValueError as exc:
            raise StreamOptionsError(config.stream_id, str(exc)) from None

    def _check_fit(self, config: StreamConfig, current: StreamConfig) -> None:
        """Refuse zones, lines or ignore zones in pixels beyond the frame of the stream running now (same source,
        same size).

        Only those new or changed against ``current`` are checked: one the stream already leaves out
        for not fitting stays, left out, and does not block a change that leaves it as it is.
        """
        stats = self._worker.stats(config.stream_id)
        if stats is None or stats.frame_size is None:
            return  # no frame yet: a shape that does not fit is left out, and said so, when one comes
        options, old = config.options, current.options
        try:
            check_fit(
                options.zones,
                options.lines,
                *stats.frame_size,
                old.zones,
                old.lines,
                ignore_zones=options.ignore_zones,
                old_ignore_zones=old.ignore_zones,
            )
        except ValueError as exc:
            raise StreamOptionsError(config.stream_id, str(exc)) from None

    def _release(self, stream_id: str) -> None:
        """Free an id `_remove` or `_restart` claimed, once the change that claimed it is done."""
        self._table.release(stream_id)

    def _join(self, readers: list[StreamReader]) -> None:
        """Wait for the readers a removal or restart asked to stop (at most `JOIN_TIMEOUT_S` for all).

        Called without `_changing`: a stalled camera's reader, which may take the whole time, holds up
        only the change that stops it.
        """
        stop_readers(readers)
        self._table.joined(readers)

    def _register(self, config: StreamConfig, handed_in: bool = False) -> None:
        """Claim ``config``'s id and announce the stream: the first step of `add` and `add_source`."""
        self._check_options(config)
        self._table.register(config, handed_in)
        self._hub.stream_added_threadsafe(config.stream_id)

    def _open(self, config: StreamConfig, started: str = "added") -> StreamInfo:
        """Open the registered stream's source and start its reader; one that cannot be used stays, failed.

        Whatever goes wrong, the stream is left with a reason a person can read, never as a stream
        with neither a reader nor a reason (which no retry would ever change). ``started`` is how the
        log tells it began: ``added``, or ``restarted`` with new settings.
        """
        check_host, check_path = (
            (self._policy.check_stream_host, self._policy.check_stream_file) if config.from_api else (None, None)
        )
        try:
            if config.from_api:
                self._policy.check_stream_uri(config.uri)
            source = open_source(config.uri, self._settings.max_frame_side, check_host, check_path)
        except SourceError as exc:
            log.warning("[%s] cannot open source: %s", config.stream_id, exc)
            return self._fail(config.stream_id, str(exc))
        except Exception as exc:  # a fault of ours, or one a source kind failed to name: this stream's alone
            log.exception("[%s] cannot open source", config.stream_id)
            return self._fail(config.stream_id, f"cannot open the source: {type(exc).__name__}: {exc}")
        return self._start(config, source, started)

    def _fail(self, stream_id: str, reason: str) -> StreamInfo:
        self._table.fail(stream_id, reason)
        self._hub.state_threadsafe(stream_id, StreamState.FAILED, reason)
        return self.info(stream_id)

    def add_source(self, config: StreamConfig, source: Source) -> StreamInfo:
        """Start a stream from a source built elsewhere (a WebRTC peer's track) instead of from its URI.

        ``config.uri`` only names the source. Raises `StreamExistsError` if the id is taken.
        Called on the event loop, so it never waits for a change in progress (which may be joining a
        reader): it only takes the short lock, and checks for a shutdown under it.
        """
        self._register(config, handed_in=True)
        return self._start(config, source)

    def _start(self, config: StreamConfig, source: Source, started: str = "added") -> StreamInfo:
        """Feed ``source`` to the worker through a new reader: the last step of `add` and `add_source`.

        If `stop` began meanwhile (`stop` does not wait for changes), the registration is undone and
        the reader never starts. The reader starts within `StreamTable.starting`, under the lock `stop`
        takes its readers under: each reader `stop` finds has started, and none starts after it.
        """
        slot = self._worker.add_stream(config.stream_id, lambda: source.fps, config.options)
        reader = StreamReader(
            config.stream_id,
            source,
            slot,
            self._hub.state_threadsafe,
            loop_file=config.loop,
            max_frame_side=self._settings.max_frame_side,
        )
        self._hub.state_threadsafe(config.stream_id, StreamState.STARTING, None)  # before the reader's own
        with self._table.starting(config.stream_id, reader) as admitted:
            if admitted:
                log.info("[%s] %s: %s", config.stream_id, started, source.describe())  # before the reader's "live"
                if config.loop and source.live and config.uri.partition(":")[0].lower() not in ("http", "https"):
                    # Once here, not per reconnect. An HTTP URL is not told: it may be a video, known when it opens.
                    log.warning("[%s] loop is not used: %s is a live source", config.stream_id, source.describe())
                reader.start()
        if not admitted:
            self._worker.remove_stream(config.stream_id)
            raise ShuttingDownError("the server is shutting down")
        return self.info(config.stream_id)

    def remove(
        self,
        stream_id: str,
        final_state: tuple[StreamState, str | None] | None = None,
        source: Source | None = None,
    ) -> StreamConfig:
        """Stop and forget a stream, and tell viewers; raises KeyError if there is none by that id.

        ``final_state`` is announced first, once the reader has stopped (a WebRTC publisher that left
        says why). Both go to the hub in order with the stream's "added", so a stream added again
        with the same id at once is never mistaken for the removed one: the id is not free until then.
        ``source``: remove the stream only while that source is the one it reads (KeyError otherwise).
        A publisher that left ends its own stream this way: the API may have removed it meanwhile and
        another stream taken its id, which is not the publisher's to end.
        """
        with self._changing:
            config, readers = self._remove(stream_id, source)
        try:
            self._join(readers)
            if final_state is not None:
                self._hub.state_threadsafe(stream_id, *final_state)
            self._hub.stream_removed_threadsafe(stream_id)
        finally:
            self._release(stream_id)
        return config

    def _remove(self, stream_id: str, source: Source | None = None) -> tuple[StreamConfig, list[StreamReader]]:
        """Forget the stream and ask its readers to stop (`StreamTable.withdraw`); the caller joins them (`_join`)
        without `_changing`.

        The id stays claimed until the caller's `_release`. It leaves the stream list now, but its
        reader may still be winding down and the hub's "removed" follows: a stream `add_source` started
        under the id in between (a browser page publishing again at once) would hear the old one's
        last state and removal as its own. `add_source` does not wait for changes (it runs on the
        loop), so it is refused instead, as for a taken id.
        """
        config, readers = self._table.withdraw(stream_id, source)
        for reader in readers:
            reader.request_stop()  # it publishes nothing from now on
        self._node_pace.forget(stream_id)
        self._worker.remove_stream(stream_id)
        self._encoder.forget(stream_id)
        log.info("[%s] removed", stream_id)
        return config, readers

    def replace(self, config: StreamConfig) -> StreamInfo:
        """Give a stream new settings; KeyError if it does not exist.

        A change of zones, lines and ``process_fps`` only is made in place: the video, the tracker's
        ids and the counts of unchanged shapes carry on; but a new ``process_fps`` plays a stream that
        ended or failed again (a ``#rate=max`` file sampled anew at the new rate). The same settings
        again change nothing, except for a stream that failed or ended: that is the way to retry it (a
        missing file copied in since). Any other change of options starts the stream's inference afresh
        while its reader goes on (`_retrack`): the video, its ``seq`` and ``media_time`` go on where they
        were (a file is not played from its start again, a camera is not connected again), and a fresh
        tracker, whose ids go on after the old one's, takes over; the old one's tracks and zone visits
        end on its first frame (`InferenceWorker.remove_stream`). A change of the uri or loop, and one
        of a stream with no reader to go on with (failed, ended, or being restarted by another change),
        restarts the stream: its source is opened again. ``config.from_api`` as for `add`: the caller
        keeps it for a stream that had it. A stream whose source was handed in (a WebRTC publisher)
        cannot be reopened, so only its options can change, always so.
        Raises `HandedInError` for a change of such a stream's uri or loop, or for retrying one, and
        `StreamOptionsError` for options that do not fit the model or, from the same source, the frame
        size it has been giving (zones or lines in pixels beyond it).

        While the old reader of a restart stops, the stream shows its new settings, ``starting``; a removal
        meanwhile wins (KeyError here), as does a later change (its settings are the ones started).
        """
        stream_id = config.stream_id
        with self._changing:
            current = self.config(stream_id)
            self._check_options(config)  # before the running stream is stopped for it
            if config.uri == current.uri:
                self._check_fit(config, current)
            over = self.info(stream_id).state in (StreamState.FAILED, StreamState.ENDED)
            if config == current and not over:
                return self.info(stream_id)  # nothing to change; a failed or ended stream is opened again
            if (
                config != current
                and (changed := _changed_in_place(current, config))
                and not (over and "process_fps" in changed)  # an ended file sampled anew at the new rate
                and self._table.reading(stream_id)  # one `_on_unfit` failed opens again with options that may fit
                and self._worker.change_shapes(stream_id, config.options)
            ):
                self._table.change(config)
                log.info("[%s] changed: %s", stream_id, _changes_said(current, config, changed))
                return self.info(stream_id)
            same_source = (config.uri, config.loop) == (current.uri, current.loop)
            if self.handed_in(stream_id) or (same_source and not over):
                retracked = self._retrack(current, config)
                if retracked is not None:
                    return retracked
            readers = self._restart(config)
        try:
            self._join(readers)
            with self._changing:
                if self._table.latest(stream_id) is not config:  # KeyError: removed meanwhile
                    return self.info(stream_id)  # changed again meanwhile: that change starts it
                self._hub.stream_added_threadsafe(stream_id)
                return self._open(config, started="restarted")
        finally:
            self._release(stream_id)

    def _retrack(self, current: StreamConfig, config: StreamConfig) -> StreamInfo | None:
        """Give a stream new options, its reader going on: call under `_changing`; None where it has no reader.

        The worker starts the stream afresh as for a restart (`_restart`: its ids go on, its tracks end
        on the first frame under the new options), and the reader fills the new slot (`LatestFrame.hand_over`):
        the frame waiting in the old one moves there, so a batch file (``#rate=max``), whose reader waits
        for each frame to be taken, goes on from where it was and loses none but the one in the model at
        the change, whose old tracker is gone. Its counts of frames read, dropped, processed, thinned and
        failed go on (`InferenceWorker.add_stream` ``same_reader``), as does its frame size, so zones beyond
        it are refused at once (`_check_fit`); its pace is judged afresh (`check_pace`).
        A stream whose source was handed in (WebRTC) cannot be reopened: a change of its uri or loop, a
        retry, or one that failed as unfit for the model (no reader left) raises `HandedInError`. Any
        other stream with no reader (failed, or being restarted by another change) is restarted instead.
        """
        stream_id = config.stream_id
        handed_in = self.handed_in(stream_id)
        if handed_in and ((config.uri, config.loop) != (current.uri, current.loop) or config == current):
            raise HandedInError(
                f"stream {stream_id!r} can change its options, but not its uri or loop, nor be retried (publish "
                "again): its source is a camera a WebRTC peer publishes, which the server cannot reopen"
            )
        reader, failed = self._table.retrack(config)
        if reader is None and not handed_in:
            return None  # failed as unfit for the model (`_on_unfit`), or being restarted: opened again
        if reader is None:  # failed as unfit for the model (`_on_unfit`): its publisher was let go
            raise HandedInError(
                f"stream {stream_id!r} failed ({failed}) and its source, a camera a "
                "WebRTC peer published, cannot be reopened: remove it and publish again with options that fit"
            )
        self._worker.remove_stream(stream_id, restarting=True)
        slot = self._worker.add_stream(stream_id, lambda: reader.source.fps, config.options, same_reader=True)
        reader.slot.hand_over(slot)  # before the reader reads the new slot: the waiting frame goes first
        reader.slot = slot
        changed = [
            f.name
            for f in dataclasses.fields(config.options)
            if getattr(current.options, f.name) != getattr(config.options, f.name)
        ]
        log.info(
            "[%s] options changed, tracking afresh: %s", stream_id, _changes_said(current, config, changed) or "none"
        )
        return self.info(stream_id)

    def _restart(self, config: StreamConfig) -> list[StreamReader]:
        """Put ``config`` in its stream's place, claim the id and ask the old readers to stop (see `_remove`).

        The worker keeps the old stream's tracks to end and its ids to go on from (``restarting``).
        """
        stream_id = config.stream_id
        readers = self._table.restart(config)
        for reader in readers:
            reader.request_stop()
        # Also for a failed stream: it may be restarting a running one whose new source did not open.
        # A restart's last frames still carry its tracks' starts and ends, so the encoder keeps them (`Hub`).
        self._worker.remove_stream(stream_id, restarting=True)
        log.info("[%s] restarting with new settings", stream_id)
        return readers

    def config(self, stream_id: str) -> StreamConfig:
        return self._table.config(stream_id)

    def handed_in(self, stream_id: str) -> bool:
        """Whether the stream's source was handed in (a WebRTC publisher): no config file can describe it."""
        return self._table.handed_in(stream_id)

    def info(self, stream_id: str) -> StreamInfo:
        """The stream's state and counters now; KeyError if there is none by that id."""
        record = self._table.snapshot(stream_id)
        config, reader, pace = record.config, record.reader, record.pace
        if reader is None:  # it failed to open, or is still being added or restarted
            state = StreamState.STARTING if record.failed is None else StreamState.FAILED
            status = ReaderStatus(state, record.failed, None, 0, 0, 0.0, 0, None)
            return StreamInfo(config, mask_uri(config.uri), status)
        stats = self._worker.stats(stream_id)
        return StreamInfo(
            config,
            reader.source.describe(),
            reader.status(),
            record.processed,
            stats.errors if stats else 0,
            stats.last_error if stats else None,
            stats.last_error_at if stats else None,
            self._worker.inference_status,
            stats.analytics_error if stats else None,
            pace.verdict if pace is not None else PaceVerdict(),
            stats.thinned if stats else 0,
            stats.ignored if stats else 0,
        )

    def streams(self) -> list[StreamInfo]:
        """Every stream, in `stream_order`."""
        infos = []
        for stream_id in sorted(self._table.ids(), key=stream_order):
            try:
                infos.append(self.info(stream_id))
            except KeyError:  # removed meanwhile
                continue
        return infos

    def check_pace(self) -> None:
        """Judge whether each stream's inference keeps up with its input (`StreamInfo.pace`), and tell the
        log when the node starts falling behind and when it keeps up again (`NodePace.judge`).

        Call it about every `server.inference.pace.PACE_CHECK_INTERVAL_S` (the app does, on its loop):
        it only reads counters. A stream is judged only while it is live, inference is available (a
        remote model's server down is said otherwise) and it is no batch file (``#rate=max`` never skips).
        A stream with a ``process_fps`` is judged against it where it is below its input's rate. One not
        judged, or with no reader (restarting), keeps its last verdict for the log (`LastVerdicts`) until
        it is judged again or removed.
        """
        self._node_pace.judge(self._pace_round, self._worker.busy.share)

    def _pace_round(self) -> PaceRound:
        """Each running stream's counters now, with its pace, for `check_pace`."""
        running = self._table.running()
        available = self._worker.inference_status.available
        now = time.monotonic()
        samples: list[tuple[str, StreamPace, PaceSample]] = []
        for stream in running:
            status = stream.reader.status()
            batch = bool(getattr(stream.reader.source, "batch", False))
            judged = status.state is StreamState.LIVE and available and not batch
            stats = self._worker.stats(stream.stream_id)
            thinned = stats.thinned if stats is not None else 0
            sample = PaceSample(
                now, judged, status.frames_read, status.dropped, stream.processed, thinned, stream.process_fps
            )
            samples.append((stream.stream_id, stream.pace, sample))
        return now, samples

    def behind_held(self) -> frozenset[str]:
        """`NodePace.behind_held`: the streams ``segcast_stream_behind`` counts behind."""
        return self._node_pace.behind_held()

    def _on_result(self, result: FrameResult) -> None:
        # A file's end marker repeats its last image and never goes through the model (`Frame.ended`);
        # a frame shown while inference is unavailable did not either (`FrameResult.unanalysed`).
        if result.analysed and not result.frame.ended:
            self._table.count_processed(result.frame.stream_id)
        self._encoder.submit(result)

    def _on_unfit(self, stream_id: str, options: StreamOptions, reason: str) -> None:
        """Fail a stream whose ``options`` can never fit the model, found once a remote model was first
        described (its server was down when the stream was added, so `_check_options` could not ask).

        Its reader is stopped (nothing it reads could be tracked) and it shows ``failed`` with the
        reason until its options change (a ``PATCH`` opens it again, as for a source that failed to
        open; a published stream's publisher is let go, so it must be published again: `_retrack`).
        Called on the inference thread: the reader is only asked to stop, and `stop`, or the stream's
        next change or removal, joins it (`StreamTable.fail_unfit`). A stream changed since the worker checked
        it is left alone.
        """
        reader = self._table.fail_unfit(stream_id, options, reason)
        if reader is None:
            return
        reader.request_stop()
        self._hub.state_threadsafe(stream_id, StreamState.FAILED, reason)


def _changes_said(current: StreamConfig, wanted: StreamConfig, names: Iterable[str]) -> str:
    """The options ``names`` as a log line says their change: ``conf 0.25 -> 0.4``, where a value reads in a
    few characters, else the name alone (``zones``), so the log says what a PATCH did."""
    said = []
    for name in names:
        before, after = getattr(current.options, name), getattr(wanted.options, name)
        plain = all(value is None or isinstance(value, bool | int | float | str) for value in (before, after))
        said.append(f"{name} {before} -> {after}" if plain else name)
    return ", ".join(said)


def _changed_in_place(current: StreamConfig, wanted: StreamConfig) -> tuple[str, ...]:
    """The options of `IN_PLACE_OPTIONS` ``wanted`` changes, where it changes nothing else (a change made
    in place); none where it changes anything else too, or nothing. (``from_api`` changes only with the
    ``uri``: the API keeps it for a stream that had it.) A class filter's ``conf`` that moves the stream's
    lowest one changes the model's call and the tracker's start thresholds: not in place."""
    if (wanted.uri, wanted.loop) != (current.uri, current.loop):
        return ()
    if wanted.options.lowest_conf != current.options.lowest_conf:
        return ()
    kept = {name: getattr(wanted.options, name) for name in IN_PLACE_OPTIONS}
    if dataclasses.replace(current.options, **kept) != wanted.options:
        return ()
    return tuple(name for name in IN_PLACE_OPTIONS if getattr(current.options, name) != kept[name])
