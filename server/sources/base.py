"""What every source kind shares: the `Source` protocol, stream states and the latest-frame slot.

A source only knows how to open its media and yield decoded images with their media time. Pacing,
state, and dropping stale frames are the reader's (`reader.py`), so each new kind of camera is a small
module that cannot get those wrong.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from server.frames import MIN_FRAME_SIDE_PX, Frame

#: Frames larger than this on either side are refused (``[server] max_frame_side``): one picture of
#: 16000x16000 is 768 MB as BGR, before the model, the overlay and the encoder each copy it.
MAX_FRAME_SIDE_PX = 4096
#: The highest rate an ``fps`` option may name: above any camera's, below what makes a frame's interval nothing.
MAX_FPS = 1000.0
#: What to do about pictures above the limit, by where they come from (`check_frame_size`).
LOWER_CAMERA_RESOLUTION = "lower the camera's resolution"
SCALE_VIDEO_DOWN = "scale the video down (e.g. ffmpeg -i IN -vf scale=1920:-2 OUT)"

#: The id of the stream whose reader thread this is ("-" elsewhere): a source knows no stream, yet its
#: own log lines need the ``[stream-id]`` the reader's carry. Each reader thread sets it for itself.
reading_stream: ContextVar[str] = ContextVar("reading_stream", default="-")


class SourceError(Exception):
    """A source cannot be used as given (bad URI, missing or corrupt file); retrying will not help."""


class SlowRetryError(ConnectionError):
    """The source answered, but refused us or offered no video: a setting to fix, or a camera still starting.

    Neither can be told from the other, so the reader retries with a longer backoff than for a lost
    connection (a booting camera answers 401 or describes no stream for a while), and the message,
    shown as the stream's error meanwhile, says what to check.
    """


def check_frame_size(width: int, height: int, max_side: int, fix: str = LOWER_CAMERA_RESOLUTION) -> None:
    """Raise `SourceError` for a picture larger than ``max_side`` or smaller than `MIN_FRAME_SIDE_PX` a side.

    A source whose pictures do not fit fails rather than reconnecting: it sends the same size again.
    ``fix`` says what to change at the source for pictures that are too large (a camera, a video file).
    """
    if width < MIN_FRAME_SIDE_PX or height < MIN_FRAME_SIDE_PX:
        raise SourceError(
            f"frames of {width}x{height} are smaller than {MIN_FRAME_SIDE_PX} pixels a side: "
            "too small to find anything in"
        )
    if width > max_side or height > max_side:
        raise frames_too_large(max_side, fix, f"{width}x{height}")


def frames_too_large(max_side: int, fix: str = LOWER_CAMERA_RESOLUTION, size: str | None = None) -> SourceError:
    """The error for frames above ``max_side`` a side, of ``size`` where it is known. The decoder, told
    the limit as a count of pixels (`decoding.limit_decoder`), refuses a larger picture unread: its size
    is then unknown, and so is the stream's where the picture was the first, read to open it."""
    frames = f"frames of {size} are" if size else f"frames of more than {max_side}x{max_side} pixels are"
    return SourceError(
        f"{frames} larger than {max_side} pixels a side ([server] max_frame_side); {fix}, or raise the limit"
    )


@dataclass(frozen=True, slots=True)
class Decoded:
    """One image as a source yields it: BGR pixels and the media time in seconds."""

    image: np.ndarray
    media_time: float


class Source(Protocol):
    """A kind of camera or media, opened fresh for each attempt to read it."""

    #: Live sources (cameras, the generated scene) arrive at their real rate, or in bursts the reader
    #: paces (HLS); files must be paced by the reader to play at their native rate. A network source
    #: may find out only when it opens that its URL is a finite video (an MP4 over HTTP) and then
    #: turns this off; the reader reads it for every frame. A source may also carry ``batch = True``:
    #: decode as fast as the consumer takes frames, none dropped (files with ``#rate=max``); and
    #: ``resumes = True``: an attempt after a failed one goes on from the last frame yielded,
    #: yielding it again only if nothing follows (a network video, `NetworkSource`); and
    #: ``ended_early``: why its media ended before its stated end (or its start could not be decoded), or
    #: None, read when it ends and shown as the ended stream's reason (a file cut short, `FileSource`,
    #: `NetworkSource`); and ``bursty = True``: a
    #: live source that hands over its frames in bursts, paced by the reader at their timestamps' rate
    #: (live HLS, `NetworkSource`); a camera's frames are never held; and ``address``: the host and port
    #: its connections go to, or None, tried while the reader waits to reconnect (`NetworkSource`).
    live: bool
    #: Nominal frames per second, known before the first frame (trackers are sized by it).
    fps: float

    def describe(self) -> str:
        """The source for people: safe to log and show (credentials masked)."""
        ...

    def open(self, stop: threading.Event) -> Iterator[Decoded]:
        """Yield decoded frames until the media ends or ``stop`` is set.

        Raises `SourceError` for problems a retry will not fix, any other exception for ones it may.
        """
        ...


class StreamState(enum.Enum):
    """Where a stream stands. Which state may follow which is written once, in `reader.TRANSITIONS`."""

    STARTING = "starting"  # first connection attempt, no frame yet
    LIVE = "live"  # frames arriving
    RECONNECTING = "reconnecting"  # lost or never reached; the next attempt is scheduled
    ENDED = "ended"  # a finite video played to its end (files without loop)
    FAILED = "failed"  # a problem retrying cannot fix: bad URI, missing file, credentials refused


class LatestFrame:
    """A one-frame slot: the producer overwrites, the consumer takes the newest, nothing queues.

    Frames overwritten before anyone took them are counted in `dropped`, so the cost of a slow
    consumer shows up as a number instead of as growing latency. ``ready`` is shared by all slots of
    one consumer, so it can sleep until any stream has something new.

    A media's end marker (`Frame.ended`) is no newer picture: put while the last frame is still
    waiting, it waits behind that frame and comes with the next `take`, so a busy consumer still gets
    a video's last frame (a video of one frame had none processed).

    A slot `hand_over` gave its producer to another passes everything on to that one from then on.
    """

    def __init__(self, ready: threading.Event) -> None:
        self._lock = threading.Condition()
        self._frame: Frame | None = None
        self._end: Frame | None = None  # an end marker put while ``_frame`` waited to be taken
        self._ready = ready
        self._successor: LatestFrame | None = None  # the slot this one handed its producer over to
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._lock:
            successor = self._successor
            if successor is None:
                if frame.ended and self._frame is not None and not self._frame.ended:
                    self._end = frame
                else:
                    if self._frame is not None:
                        self.dropped += 1
                    self._frame = frame
        if successor is not None:  # a producer that read its slot before `hand_over`
            successor.put(frame)
            return
        self._ready.set()

    def hand_over(self, successor: LatestFrame) -> None:
        """Give this slot's producer to ``successor``, a new consumer's slot for the same stream (its options
        changed while its reader goes on, `StreamManager.replace`): the frame waiting here, and an end marker
        behind it, move there, to be taken by the new consumer; the count of dropped frames goes on there;
        a frame put here from now on goes there; and a producer waiting here for the consumer (a batch
        file's, `wait_empty`) waits for the successor's instead, so it neither stays blocked on a slot no
        one takes from nor loses a frame. The old consumer takes nothing more from here.
        """
        with self._lock:
            waiting = [frame for frame in (self._frame, self._end) if frame is not None]
            self._frame = self._end = None
            self._successor = successor
            with successor._lock:
                successor.dropped += self.dropped
            for frame in waiting:  # in order: one lock after the other, never the other way round
                successor.put(frame)
            self._lock.notify_all()

    def take(self) -> Frame | None:
        with self._lock:
            frame, self._frame, self._end = self._frame, self._end, None
            end_waits = self._frame is not None
            self._lock.notify_all()
        if end_waits:
            self._ready.set()
        return frame

    def wait_empty(self, stop: threading.Event, poll_s: float = 0.1) -> bool:
        """Block until the consumer took the frame in the slot; False if ``stop`` was set first.

        Only for batch sources, which must not drop frames: live ones never wait for a consumer.
        """
        with self._lock:
            while self._frame is not None:
                if stop.is_set():
                    return False
                self._lock.wait(poll_s)
            successor = self._successor
        if successor is not None:  # handed over while waiting, or before: its frame waits there now
            return successor.wait_empty(stop, poll_s)
        return not stop.is_set()
