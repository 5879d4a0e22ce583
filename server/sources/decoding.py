"""Decoding a video stream PyAV has opened, as every FFmpeg source kind does: network, file and webcam.

Choosing the stream to play and the rate to trust, refusing pictures above the size limit before they
are decoded, refusing damaged pictures of codecs whose pictures stand alone, turning pictures upright,
the decoding loop of a live or finite stream with its stall bounds, and FFmpeg's errors as the
sources promise them. What a network source adds (connecting, resuming, asking a camera's server
again) is `server.sources.network`'s; a file's own loop and damage handling `server.sources.file`'s.
"""

from __future__ import annotations

import errno
import logging
import math
import re
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import cast
from urllib.parse import urlsplit

import av
import av.container
import av.format
import numpy as np
from av.video.reformatter import VideoReformatter

from server.log_throttle import ThrottledCount
from server.sources.base import (
    LOWER_CAMERA_RESOLUTION,
    Decoded,
    SlowRetryError,
    SourceError,
    check_frame_size,
    frames_too_large,
    reading_stream,
)
from server.sources.uri import mask_text, mask_uri

log = logging.getLogger(__name__)

#: A duration tag's hours, minutes and seconds: ASCII digits, the seconds with a fraction or not.
_CLOCK_PARTS = re.compile(r"[0-9]+:[0-9]+:[0-9]+(?:\.[0-9]*)?")

#: Demuxers whose timestamps are invented (MJPEG over HTTP counts frames at a nominal 25 fps): their
#: frames get the arrival time instead, which is the true time between them.
WALL_CLOCK_FORMATS = frozenset({"mpjpeg", "mjpeg", "image2pipe", "jpeg_pipe"})
#: A demuxer's flag for streams without timestamps (raw H.264, HEVC): its frames' times are made up.
NO_TIMESTAMPS = cast(int, av.format.Flags.no_timestamps.value)
#: A source's damaged pictures are told in one line at most this often, with how many since the last.
DAMAGED_PICTURES_LOG_INTERVAL_S = 60.0
#: A video whose frames end more than this before the end its header states was cut short.
EARLY_END_TOLERANCE_S = 1.0
#: A video whose first picture decoded comes more than this after the start its timestamps state lost its start.
LATE_START_TOLERANCE_S = 1.0
#: A live stream is given at least this many of the frame intervals it declares before it counts as stalled.
STALL_FRAME_INTERVALS = 3.0


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The container's first video stream that is a video, not a still attached to other media.

    An audio file with cover art has its picture as a video stream marked ``attached_pic``: played,
    it would be a one-frame video instead of a file with no video to show.
    """
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def frame_rate(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Fraction | None:
    """``stream``'s frame rate as the most trustworthy of its rates states it; None where none does.

    A stream in a container with timestamps: FFmpeg's guess from them, else their average. A raw
    stream (H.264, HEVC: no container, no timestamps) has its average made up by FFmpeg (25 fps) and
    its guess read from it (24 for a 12 fps stream): the rate its encoder wrote into the stream itself,
    which the decoder reads, comes first.
    """
    rates: tuple[Fraction | None, ...] = (stream.guessed_rate, stream.average_rate)
    if container.format.flags & NO_TIMESTAMPS:
        rates = (stream.codec_context.framerate, stream.guessed_rate)
    return next((rate for rate in rates if rate), None)


def paced_stall_timeout(rate: Fraction | None, stall_timeout_s: float, max_s: float) -> float | None:
    """The stall bound a live stream declaring ``rate`` needs where ``stall_timeout_s`` is too short for its
    pace: `STALL_FRAME_INTERVALS` of its frame intervals, at most ``max_s``; None where ``stall_timeout_s``
    spans that many already, or the stream declares no rate. For the default bound only: one the user
    gave is theirs to keep.

    A camera sending a frame every 7 s (time-lapse, 4G, solar power) was stalled after 5 s without one,
    every time, and reconnected for ever. Three intervals, not one: FFmpeg's H.264 parser hands a frame on
    only once the next begins, so frames buffered while the stream was probed come at once, and the next
    two intervals later; the third leaves room for a frame that is late.
    """
    if not rate:
        return None
    paced_s = min(max_s, STALL_FRAME_INTERVALS / float(rate))
    return paced_s if paced_s > stall_timeout_s else None


class UprightImages:
    """Decoded frames as BGR pixels, turned the way they are meant to be seen: one per decoding loop.

    Phones store a video sideways and mark how to turn it for display (the display matrix), so
    without the turn people and cars lie on their side, and the model finds little in them.

    The conversion keeps one reformatter for all the frames it is given: ``frame.to_ndarray(format=...)``
    sets up a new FFmpeg scaler for every frame, with its threads, which cost three to four times the
    conversion itself at camera sizes (0.34 against 0.11 ms a 640x384 frame, measured here), in every
    reader for every frame it decodes, most of which the pipeline then drops as stale. The scaler is
    set up again only when a frame's size or format changes. Each array is a frame of its own.
    """

    def __init__(self) -> None:
        self._reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        image = self._reformatter.reformat(frame, format="bgr24").to_ndarray()
        quarter_turns = round(frame.rotation / 90) % 4  # counter-clockwise, as np.rot90 counts them
        return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image


def open_limit(max_side: int) -> dict[str, str]:
    """`av.open`'s options that refuse pictures larger than ``max_side`` a side while it reads the
    stream's header: FFmpeg decodes its first picture to learn its size, and a PNG of 16000x16000 (790
    KB) cost 741 MB there, before `limit_decoder` could look at it. Refused, the stream's size is 0."""
    return {"max_pixels": str(max_side * max_side)}


def limit_decoder(stream: av.video.stream.VideoStream, max_side: int, fix: str = LOWER_CAMERA_RESOLUTION) -> None:
    """Refuse pictures larger than ``max_side`` a side before they are decoded, not after.

    The size the stream's header announces is checked at once (`SourceError`, saying to ``fix`` it);
    the decoder is told to refuse pictures of more than ``max_side`` squared pixels, so a camera that
    switches to a huge size mid-stream costs a decoding error (and a reconnect), never the memory of
    the picture. A picture `open_limit` refused while the header was read leaves the size unknown (0):
    the decoder refuses it again, and `refused_as_too_large` tells that refusal from damage.
    """
    context = stream.codec_context
    if context.width and context.height:
        check_frame_size(context.width, context.height, max_side, fix)
    context.options = {**context.options, **open_limit(max_side)}


def refused_as_too_large(exc: av.error.FFmpegError, stream: av.video.stream.VideoStream) -> bool:
    """Whether ``exc``, from decoding ``stream`` limited by `limit_decoder`, is the decoder refusing a
    picture above the limit: FFmpeg's "invalid argument", the picture's size left unset (0), as it
    leaves it then."""
    context = stream.codec_context
    return exc.errno == errno.EINVAL and not (context.width and context.height)


def decoder_side_limit(stream: av.video.stream.VideoStream) -> int | None:
    """The side `limit_decoder` told ``stream``'s decoder to keep pictures to; None where it told none.
    Read before the first decode: opening the decoder takes its options."""
    max_pixels = stream.codec_context.options.get("max_pixels")
    return math.isqrt(int(max_pixels)) if max_pixels else None


def refuse_damaged_pictures(stream: av.video.stream.VideoStream) -> None:
    """Have the decoder refuse a damaged picture of a codec whose every picture stands alone (MJPEG).

    FFmpeg otherwise conceals the damage and hands the picture on as sound (``frame.is_corrupt`` not
    set): what it could not decode is whatever its buffer held, an older picture under the new one's
    top, and objects jumped back for a frame, their trails jittering. Refused, the damaged picture
    raises `av.error.InvalidDataError` for its packet alone, and the next one decodes as before. Codecs
    whose pictures refer to others (H.264, HEVC) keep their concealment, which does better than
    dropping a picture that the ones after it, up to the next key frame, are made from. Call before
    the first decode.
    """
    context = stream.codec_context
    if context.codec.intra_only:
        context.options = {**context.options, "err_detect": "explode"}


class DamagedPictures:
    """Pictures a source's decoder refused as damaged, told in its log: the first at once, then at most
    one line every `DAMAGED_PICTURES_LOG_INTERVAL_S` with how many since the last (`ThrottledCount`).

    One per source, across its connections, so a camera that reconnects does not repeat the first line.
    Used in its reader's thread only. Told to the source's own ``logger``: the network source's lines
    are found under its module's name.
    """

    def __init__(self, logger: logging.Logger = log) -> None:
        self.total = 0
        self._logger = logger
        self._untold = ThrottledCount(DAMAGED_PICTURES_LOG_INTERVAL_S)

    def add(self) -> None:
        self.total += 1
        if count := self._untold.add():
            self._logger.warning(
                "[%s] skipped %d damaged picture%s (%d in all): each costs only itself, not the connection",
                reading_stream.get(),
                count,
                "" if count == 1 else "s",
                self.total,
            )


class MediaClock:
    """Each decoded frame's media time, in seconds: its timestamp, else an estimate on the same clock.

    Frames of a format without timestamps (MJPEG, a raw H.264 stream) get their arrival time since the
    clock was made, or, in a finite video (a raw H.264 file), their place at ``fps``: it comes faster
    than it plays. A format with timestamps (``stamped``) can still hand over a frame without one:
    FFmpeg's RTSP demuxer does, for a camera's first picture and now and then one later. Such a frame
    follows the frame before by the interval its stamped frames showed (one at ``fps`` until two came),
    the first starting at 0, where the camera's clock starts. Taken from the wall clock, it mixed two
    clocks: a camera's frames buffered while a loaded machine opened the stream came at once, so a
    picture 4 s into the camera's clock arrived 1 s into ours, behind the 2 s one before it, and the
    reader held it at that one's time; and a first picture timed by its arrival lay behind the stamped
    one after it. At the declared rate alone, a 30 fps camera declaring 10 had its next frames held.
    """

    def __init__(self, time_base: float, live: bool, fps: float, stamped: bool) -> None:
        self._time_base, self._live, self._fps, self._stamped = time_base, live, fps, stamped
        self._started = time.monotonic()
        self._count = 0
        self._last = 0.0
        self._step = 1 / fps if fps > 0 else 0.0
        self._last_stamp: tuple[int, float] | None = None  # the last stamped frame: its count, its time

    def time_of(self, pts: int | None) -> float:
        """The media time of the next frame, whose timestamp is ``pts`` (None where it came without)."""
        if pts is not None and self._time_base:
            media_time = pts * self._time_base
            if self._last_stamp is not None and media_time > self._last_stamp[1]:
                count, stamp = self._last_stamp
                self._step = (media_time - stamp) / (self._count - count)
            self._last_stamp = (self._count, media_time)
        elif self._stamped:
            media_time = self._last + self._step if self._count else 0.0
        elif self._live:
            media_time = time.monotonic() - self._started
        else:
            media_time = self._count / self._fps
        self._last, self._count = media_time, self._count + 1
        return media_time


def decode_frames(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    stop: threading.Event,
    stall_timeout_s: float,
    live: bool,
    url: str,
    fps: float,
    damaged: DamagedPictures | None = None,
) -> Iterator[Decoded]:
    """Decode ``stream`` of an open ``container`` until it ends, stalls or ``stop`` is set.

    A live stream that ends was closed by the other side: that is a `ConnectionError`, because a camera has
    no end. Each frame's media time is `MediaClock`'s. The stall clock stops while the caller holds a frame:
    a clip's reader waits for each frame's time to come, however long its gaps. A packet that arrives
    ``stall_timeout_s`` after the last frame is a stall, whatever it holds: FFmpeg's RTSP demuxer keeps a
    camera's last packet until its read times out and hands it over then, which made a camera that stopped
    sending look live for one more time-out. A packet the decoder finds damaged costs its picture, not the
    connection (an MJPEG camera's garbled part; a reconnect for each kept such a camera down most of the
    time), and is counted in ``damaged`` (the source's, else this call's own); one that sends nothing
    decodable stalls. A picture above the size limit (`refused_as_too_large`) fails the source where it is
    the first, as the header's size would; after others it costs the connection.
    """
    refuse_damaged_pictures(stream)
    max_side = decoder_side_limit(stream)
    if damaged is None:
        damaged = DamagedPictures()
    wall_clock = container.format.name in WALL_CLOCK_FORMATS
    time_base = float(stream.time_base) if stream.time_base and not wall_clock else 0.0
    clock = MediaClock(time_base, live, fps, stamped=bool(time_base) and not container.format.flags & NO_TIMESTAMPS)
    last_frame = last_packet = time.monotonic()
    upright_image = UprightImages()
    index = 0
    try:
        for packet in container.demux(stream):
            arrived = time.monotonic()
            if stop.is_set():
                return
            if arrived - last_frame >= stall_timeout_s:
                what = "nothing received" if arrived - last_packet >= stall_timeout_s else "data but no picture"
                raise ConnectionError(f"stalled: {what} for {stall_timeout_s:g} s")
            last_packet = arrived
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                damaged.add()
                frames = []
            except av.error.FFmpegError as exc:
                if max_side is None or not refused_as_too_large(exc, stream):
                    raise
                too_large = frames_too_large(max_side)
                if index == 0:  # the size it opens with, as the header's would be: it sends it again
                    raise too_large from None
                raise ConnectionError(f"a picture above the limit came: {too_large}; reconnecting") from None
            for frame in frames:
                media_time = clock.time_of(frame.pts)
                index += 1
                yield Decoded(upright_image(frame), media_time)
                if stop.is_set():
                    return
                last_frame = last_packet = time.monotonic()
            if time.monotonic() - last_frame > stall_timeout_s:
                raise ConnectionError(f"stalled: data but no picture for {stall_timeout_s:g} s")
    except av.error.FFmpegError as exc:
        if isinstance(exc, av.error.ExitError) or time.monotonic() - last_packet >= stall_timeout_s:
            raise ConnectionError(f"stalled: nothing received for {stall_timeout_s:g} s") from None
        raise translate_error(exc, url) from None
    if live and not stop.is_set():
        raise ConnectionError("the camera closed the stream")


def ended_early_at(stream: av.video.stream.VideoStream, played_to_s: float) -> str | None:
    """Where a video whose frames ran to ``played_to_s`` (its media time) ended before the end its header
    states (`stated_span`), by more than `EARLY_END_TOLERANCE_S`; None where it did not, or states none. A
    file's and a video URL's alike (`file.FileSource`, `network.NetworkSource`).

    A recording whose index came first (a "faststart" MP4, a Matroska file) and whose pictures were then
    cut off plays up to the cut and ends, as if it were over: a third of it played without a word.
    """
    span = stated_span(stream)
    if span is None:
        return None
    start_s, stated_s = span
    played_s = played_to_s - start_s
    if stated_s - played_s <= EARLY_END_TOLERANCE_S:
        return None
    return (
        f"the video ended early, at {_clock(played_s)} of the {_clock(stated_s)} its header states: the file is "
        "cut short (a recording cut off, or a copy that did not finish)"
    )


def undecoded_start(stream: av.video.stream.VideoStream, first_decoded_s: float) -> str | None:
    """How much of ``stream``'s start could not be decoded, where its first picture that could
    (``first_decoded_s``, its media time) came more than `LATE_START_TOLERANCE_S` after the start its
    timestamps state; None where it did not, or they state none.

    A file whose first key frame is damaged decodes nothing up to the next, and its stream's times
    count from the first picture that decodes: one whose first 83% was lost played the rest, and
    ended with the counts of that part as if it were all of it.
    """
    if stream.start_time is None or not stream.time_base:
        return None
    lost_s = first_decoded_s - float(stream.start_time * stream.time_base)
    if lost_s <= LATE_START_TOLERANCE_S:
        return None
    return (
        f"its first {_clock(lost_s)} could not be decoded (the file is damaged there, or cut where no key frame "
        "starts it), and its times count from the first picture that could"
    )


def stated_span(stream: av.video.stream.VideoStream) -> tuple[float, float] | None:
    """Where ``stream``'s media starts and how long its container's header says it lasts, in seconds of its
    timestamps; None where the header says nothing of its length.

    Most containers state each stream's length. Matroska and WebM state none for a stream (PyAV's
    ``duration`` is None), only where it ends (`_matroska_end_s`): a cut copy of one ended as if it were
    over.
    """
    if not stream.time_base:
        return None
    start_s = float((stream.start_time or 0) * stream.time_base)
    if stream.duration:
        return start_s, float(stream.duration * stream.time_base)
    end_s = _matroska_end_s(stream)
    return None if end_s is None else (start_s, end_s - start_s)


def _matroska_end_s(stream: av.video.stream.VideoStream) -> float | None:
    """Where a Matroska or WebM file's header says ``stream`` ends, in seconds of its timestamps; None where it
    says nothing of it, or the file is another kind.

    The track's ``DURATION`` tag (FFmpeg's muxer writes one, where it can go back to the file's start) is
    the end of its last frame.
    Without it, the segment's duration is read, which FFmpeg's other demuxers give as a length from the
    first frame but Matroska's as the end of the longest track: a file whose timestamps start at 10 s and
    last 20 states 30. That is the video's only where the video is all the file holds: a sound track that
    runs on would make a whole video look cut short.
    """
    container = cast(av.container.InputContainer, stream.container)  # a stream being decoded is read
    if "matroska" not in container.format.name:
        return None
    if tag := stream.metadata.get("DURATION"):
        return _tag_seconds(tag)
    if len(container.streams) == 1 and container.duration:
        return container.duration / av.time_base
    return None


def _tag_seconds(tag: str) -> float | None:
    """A Matroska duration tag (``00:01:20.040000000``) in seconds; None where it is not one: a tag is the
    muxer's text, and ``float`` also reads ``inf``, ``nan`` and digits of other scripts, which no length is."""
    hours, _, rest = tag.partition(":")
    minutes, _, seconds = rest.partition(":")
    if not _CLOCK_PARTS.fullmatch(f"{hours}:{minutes}:{seconds}"):
        return None
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _clock(seconds: float) -> str:
    """A time into a video for people: ``12.4 s`` under a minute, else ``1:02:03`` or ``2:03``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class DamagedStreamError(ConnectionError):
    """FFmpeg's demuxer found what it could not read (`av.error.InvalidDataError`): no video stream, or
    one damaged where it lost its place. `network.NetworkSource` reads an MJPEG camera's that came
    after pictures with another demuxer (`NetworkSource._mjpeg_fallback`)."""


def translate_error(exc: av.error.FFmpegError, url: str, rtsp_transport: str | None = None) -> Exception:
    """An FFmpeg error as this module promises it: `SourceError` if permanent, else a `ConnectionError`
    (`SlowRetryError` for a refusal). ``rtsp_transport`` is the one asked for, for an RTSP URL."""
    reason = mask_text(exc.strerror or str(exc), url)
    if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
        if not _gives_credentials(url):
            return SlowRetryError(
                f"the camera asks for a user and password ({reason}): add user:password@ to the URI "
                "(percent-encode @ : / ? # in them); retried slowly"
            )
        return SlowRetryError(
            f"the camera refused the credentials ({reason}): check the user and password in the URI; "
            "retried slowly, as a camera that is still starting may refuse them"
        )
    if isinstance(exc, av.error.HTTPNotFoundError):
        return SlowRetryError(f"{reason[:1].lower() + reason[1:]}: check the URL's path; retried slowly")
    if isinstance(exc, av.error.HTTPServerError):  # its status is told by `opening_failures.opening_failure`
        return ConnectionError("the server answered with a 5XX error (busy, starting or failing): retrying")
    if rtsp_transport == "tcp" and exc.errno == errno.EPROTONOSUPPORT:  # RTSP's 461 Unsupported transport
        return SlowRetryError(f"the camera refused the transport ({reason}): try #transport=udp; retried slowly")
    if isinstance(exc, av.error.ProtocolNotFoundError | av.error.DecoderNotFoundError):
        return SourceError(f"this FFmpeg build cannot read it: {reason}")
    if isinstance(exc, av.error.InvalidDataError):
        return DamagedStreamError(f"not a video stream, or a damaged one: {reason}")
    return ConnectionError(reason[:1].lower() + reason[1:] if reason else type(exc).__name__)


def _gives_credentials(url: str) -> bool:
    """Whether ``url`` gives the camera credentials: a user info (``user:password@``, or a user alone), or a
    parameter whose value `mask_uri` hides (``?password=``). The user info is read as such, not by whether
    masking changes the URL: a password of ``***``, segcast's own mask copied back, masks to itself and was
    sent all the same (a network source refuses one when it is made, `network.NetworkSource`)."""
    return urlsplit(url).username is not None or mask_uri(url) != url
