"""The stream manager's records of its streams, and the one lock every read and change of them takes.

A stream's config, its reader, the readers being stopped, why it failed, its count of processed frames,
whether its source was handed in, the ids a change in progress holds, each reader's pace and whether
`server.streams.StreamManager.stop` has begun: several threads read and change them (the API's changes,
the loop's `add_source` and pace checks, the inference thread's results and `_on_unfit`, `stop`), and
a check is only worth anything in the same step as what it allows (an id free, then taken; no shutdown
begun, then a reader started). So the lock lives here with the records, and each such step is one
method: no caller takes the lock, so none can forget it or hold it too long. Under it the table never
waits (for a thread, media or the file system) and never logs: the manager tells the log what happened,
in the order it chooses, around these steps; `starting` is the one step it acts within (it starts the
reader under the lock `shut` takes the readers under). `NodePace`'s lock, where both are held, is taken
first (`StreamManager.check_pace`).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from server.config import StreamConfig
from server.inference.pace import StreamPace
from server.options import StreamOptions
from server.sources import Source
from server.sources.reader import StreamReader


class StreamExistsError(ValueError):
    """A stream with this id is already running."""


class ShuttingDownError(RuntimeError):
    """The manager has stopped: no stream may be started any more."""


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One stream's records, read together in one step (`StreamTable.snapshot`)."""

    config: StreamConfig
    reader: StreamReader | None  # None: its source failed to open, or it is still being added or restarted
    failed: str | None  # why it failed, where it did
    processed: int  # frames of its reader's that went through the model
    pace: StreamPace | None  # whether its inference keeps up; one per reader


@dataclass(frozen=True, slots=True)
class RunningStream:
    """A stream with a reader, as `StreamManager.check_pace` samples it (`StreamTable.running`)."""

    stream_id: str
    reader: StreamReader
    pace: StreamPace
    processed: int
    process_fps: float | None


class StreamTable:
    """Every stream the manager knows, running or failed, in the order added; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._configs: dict[str, StreamConfig] = {}
        self._readers: dict[str, StreamReader] = {}
        #: Readers a removal or restart asked to stop and has not joined yet: `shut` hands them back too.
        self._stopping: set[StreamReader] = set()
        #: Those of them `fail_unfit` took, by stream: the inference thread cannot wait for them, so the
        #: stream's next change or removal takes them to join (`_take_readers`), or `shut`.
        self._unjoined: dict[str, StreamReader] = {}
        self._failed: dict[str, str] = {}  # id -> reason, for sources that never opened or were failed
        self._processed: dict[str, int] = {}
        self._handed_in: set[str] = set()  # streams from `add_source`, which have no URI to reopen
        #: Ids being removed or restarted, with how many changes hold each: not free until those are done
        #: (`release`; see `StreamManager._remove`).
        self._claimed: Counter[str] = Counter()
        self._paces: dict[str, StreamPace] = {}  # one per reader: a restart is judged afresh

    def register(self, config: StreamConfig, handed_in: bool) -> None:
        """Take ``config``'s id. Raises `ShuttingDownError` once `shut`, `StreamExistsError` while the id
        is another stream's or still held by a removal or restart (its reader is stopping)."""
        with self._lock:
            if self._stopped:
                raise ShuttingDownError("the server is shutting down")
            if self._claimed[config.stream_id]:
                raise StreamExistsError(f"stream {config.stream_id!r} already exists (it is being stopped)")
            if config.stream_id in self._configs:
                raise StreamExistsError(f"stream {config.stream_id!r} already exists")
            self._configs[config.stream_id] = config
            if handed_in:
                self._handed_in.add(config.stream_id)

    @contextmanager
    def starting(self, stream_id: str, reader: StreamReader) -> Iterator[bool]:
        """Hold the lock while the caller starts ``reader``, the registered stream's; yields whether it may.

        Each reader `shut` hands back has started, and none starts after it: once shut, the registration is
        undone and this yields False. Otherwise the reader is the stream's, with a fresh count and pace.
        """
        with self._lock:
            if self._stopped:
                self._configs.pop(stream_id, None)
                self._handed_in.discard(stream_id)
                yield False
                return
            self._readers[stream_id] = reader
            self._processed[stream_id] = 0
            self._paces[stream_id] = StreamPace()
            yield True

    def fail(self, stream_id: str, reason: str) -> None:
        """The stream's source could not be opened, for ``reason``."""
        with self._lock:
            self._failed[stream_id] = reason

    def fail_unfit(self, stream_id: str, options: StreamOptions, reason: str) -> StreamReader | None:
        """Fail the stream, for ``reason``, if it still has a reader and ``options``: that reader, which the
        caller asks to stop and the stream's next change or removal joins (`_unjoined`); None otherwise."""
        with self._lock:
            config = self._configs.get(stream_id)
            reader = self._readers.get(stream_id)
            if config is None or config.options != options or reader is None:
                return None
            self._take_reader(stream_id)
            self._failed[stream_id] = reason
            self._unjoined[stream_id] = reader
            return reader

    def change(self, config: StreamConfig) -> None:
        """Put ``config`` in its stream's place, everything else going on (a change made in place)."""
        with self._lock:
            self._configs[config.stream_id] = config

    def retrack(self, config: StreamConfig) -> tuple[StreamReader | None, str | None]:
        """Put ``config`` in its stream's place with a fresh pace, if it has a reader to go on with: that
        reader; else nothing changes, and None with why it failed (if it did). Raises `ShuttingDownError`
        once `shut`."""
        with self._lock:
            if self._stopped:
                raise ShuttingDownError("the server is shutting down")
            reader = self._readers.get(config.stream_id)
            if reader is None:
                return None, self._failed.get(config.stream_id)
            self._configs[config.stream_id] = config
            self._paces[config.stream_id] = StreamPace()
            return reader, None

    def restart(self, config: StreamConfig) -> list[StreamReader]:
        """Put ``config`` in its stream's place, hold its id until `release`, and take its readers for the
        caller to stop and join (then `joined`); its failure and count go."""
        with self._lock:
            self._configs[config.stream_id] = config
            self._claimed[config.stream_id] += 1
            readers = self._take_readers(config.stream_id)
            self._failed.pop(config.stream_id, None)
            self._processed.pop(config.stream_id, None)
            return readers

    def latest(self, stream_id: str) -> StreamConfig:
        """The stream's config now. Raises `ShuttingDownError` once `shut`, KeyError if it was removed."""
        with self._lock:
            if self._stopped:
                raise ShuttingDownError("the server is shutting down")
            return self._configs[stream_id]

    def withdraw(self, stream_id: str, source: Source | None) -> tuple[StreamConfig, list[StreamReader]]:
        """Forget the stream, hold its id until `release`, and take its readers for the caller to stop and
        join (then `joined`): its config and those readers.

        Raises KeyError if there is none by that id, or, given a ``source``, where that is not the one its
        reader reads (removed already: the id may be another stream's now).
        """
        with self._lock:
            running = self._readers.get(stream_id)
            if source is not None and (running is None or running.source is not source):
                raise KeyError(stream_id)
            config = self._configs.pop(stream_id)
            self._claimed[stream_id] += 1
            readers = self._take_readers(stream_id)
            self._failed.pop(stream_id, None)
            self._processed.pop(stream_id, None)
            self._handed_in.discard(stream_id)
            return config, readers

    def joined(self, readers: list[StreamReader]) -> None:
        """``readers``, taken by `restart` or `withdraw`, have been stopped and waited for."""
        with self._lock:
            self._stopping.difference_update(readers)

    def release(self, stream_id: str) -> None:
        """Free an id `withdraw` or `restart` held, once the change that held it is done."""
        with self._lock:
            self._claimed[stream_id] -= 1
            if self._claimed[stream_id] <= 0:
                del self._claimed[stream_id]

    def shut(self) -> list[StreamReader]:
        """Refuse every start from now on, and hand back every reader, running or being stopped, to stop."""
        with self._lock:
            self._stopped = True
            readers = [*self._readers.values(), *self._stopping]
            self._readers.clear()
            self._unjoined.clear()
            return readers

    def count_processed(self, stream_id: str) -> None:
        """One more of the stream's frames went through the model (none is counted for a stream with no reader)."""
        with self._lock:
            if stream_id in self._processed:
                self._processed[stream_id] += 1

    def config(self, stream_id: str) -> StreamConfig:
        """The stream's config; KeyError if there is none by that id."""
        with self._lock:
            return self._configs[stream_id]

    def reading(self, stream_id: str) -> bool:
        """Whether the stream has a reader running: not while it is failed, nor while it is being restarted."""
        with self._lock:
            return stream_id in self._readers

    def handed_in(self, stream_id: str) -> bool:
        """Whether the stream's source was handed in (`StreamManager.add_source`)."""
        with self._lock:
            return stream_id in self._handed_in

    def snapshot(self, stream_id: str) -> StreamRecord:
        """The stream's records now; KeyError if there is none by that id."""
        with self._lock:
            return StreamRecord(
                self._configs[stream_id],
                self._readers.get(stream_id),
                self._failed.get(stream_id),
                self._processed.get(stream_id, 0),
                self._paces.get(stream_id),
            )

    def ids(self) -> list[str]:
        """Every stream's id, running or failed, in the order added."""
        with self._lock:
            return list(self._configs)

    def running(self) -> list[RunningStream]:
        """Every stream with a reader, with its records now."""
        with self._lock:
            return [
                RunningStream(i, r, self._paces[i], self._processed.get(i, 0), self._configs[i].options.process_fps)
                for i, r in self._readers.items()
            ]

    def stopping(self) -> frozenset[StreamReader]:
        """The readers taken to stop and not `joined` yet."""
        with self._lock:
            return frozenset(self._stopping)

    def _take_reader(self, stream_id: str) -> StreamReader | None:
        """Move the stream's reader to those being stopped (`_stopping`), and forget its pace (the stream
        is judged afresh once it runs again); call under `_lock`."""
        reader = self._readers.pop(stream_id, None)
        self._paces.pop(stream_id, None)
        if reader is not None:
            self._stopping.add(reader)
        return reader

    def _take_readers(self, stream_id: str) -> list[StreamReader]:
        """`_take_reader`, with the reader `fail_unfit` took and left for the stream's next change to join
        (`_unjoined`): the readers the caller joins. Call under `_lock`."""
        readers = [self._take_reader(stream_id), self._unjoined.pop(stream_id, None)]
        return [reader for reader in readers if reader is not None]
