"""Network cameras and streams read with PyAV: RTSP(S), RTMP(S), and HTTP(S) MJPEG, HLS or video URLs.

rtsp://user:pass@192.168.1.10:554/stream1          TCP (the default: no lost packets, no smearing)
rtsp://192.168.1.10/stream1#transport=udp          UDP, for cameras or networks that need it
rtmp://media.local/live/cam1
http://192.168.1.11/video.mjpg                     multipart MJPEG, as many IP cameras serve it
https://example.com/live/index.m3u8                HLS
http://example.com/clip.mp4                        a finite video: played at its own rate, then ended

Options go in the fragment (see `server.sources.uri`): ``transport`` (RTSP: tcp, udp, udp_multicast,
http, https), ``timeout`` (seconds without a frame before the connection counts as stalled and is
dropped; a live HLS stream's default follows its playlist's target duration), ``open_timeout``
(seconds for connecting and reading the stream header), ``fps`` (the rate assumed until frames
arrive), ``format`` (force an FFmpeg demuxer this FFmpeg has, e.g. ``mjpeg`` for an MJPEG camera
whose parts FFmpeg's multipart demuxer cannot find).

FFmpeg is asked for low latency: low-delay decoding, slice threads rather than frame threads (which
would hold frames back), and a short probe, so the newest frame is what the camera sent last rather
than what sat in a buffer. Input buffering stays on: the packets read while probing hold the key frame
a camera sends as a client joins, and dropping them (``fflags nobuffer``) left the picture waiting
for the next one, which some cameras send only every 30 s. They are a second at most, decoded at
once, and the reader keeps only the newest frame, so they add no lasting latency.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
import time
from collections.abc import Callable, Iterator
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
    MAX_FPS,
    MAX_FRAME_SIDE_PX,
    Decoded,
    SlowRetryError,
    SourceError,
    check_frame_size,
    reading_stream,
)
from server.sources.http_answers import ask_again, playlist_target_duration, unknown_host
from server.sources.uri import has_raw_userinfo, mask_text, mask_uri, positive_float, split_options

log = logging.getLogger(__name__)

SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https"})
RTSP_TRANSPORTS = frozenset({"tcp", "udp", "udp_multicast", "http", "https"})
#: No frame for this long while connected is a stall, handled like a dropped connection.
STALL_TIMEOUT_S = 5.0
#: A live HLS stream without ``timeout`` is stalled after this many of its target durations without a
#: frame: its server must list a new segment within 1.5 of them (RFC 8216, 6.2.1), and FFmpeg asks
#: for the playlist again only a segment's time after it last did, then every half target duration.
HLS_STALL_TARGET_DURATIONS = 3.0
#: The target duration assumed for a playlist that cannot be read for its own: the longest in common use.
HLS_ASSUMED_TARGET_DURATION_S = 10.0
#: Each of the two opening steps (connect and handshake; read the stream header) gets this long.
OPEN_TIMEOUT_S = 10.0
#: The longest ``timeout`` or ``open_timeout`` taken: a reader inside a network call exits only when
#: the call times out, so this also bounds how long a stopped stream's thread may linger.
MAX_TIMEOUT_S = 600.0
#: Assumed until the stream says otherwise: trackers need a rate before the first frame.
DEFAULT_FPS = 25.0
#: How much of the stream FFmpeg may read to learn its format: enough for a key frame, no more.
PROBE_DURATION_US = 1_000_000
#: Demuxers whose timestamps are invented (MJPEG over HTTP counts frames at a nominal 25 fps): their
#: frames get the arrival time instead, which is the true time between them.
WALL_CLOCK_FORMATS = frozenset({"mpjpeg", "mjpeg", "image2pipe", "jpeg_pipe"})
#: A demuxer's flag for streams without timestamps (raw H.264, HEVC): its frames' times are made up.
_NO_TIMESTAMPS = cast(int, av.format.Flags.no_timestamps.value)
#: UDP packets may arrive out of order; waiting longer than this for a late one adds latency.
UDP_REORDER_DELAY_US = 200_000
#: The content type of MJPEG as cameras send it: one JPEG after another, each a part of a multipart answer.
MULTIPART_MJPEG = "multipart/x-mixed-replace"
#: What an HTTP server's 5XX answers mean for a camera, where they say more than "an error on its side".
SERVER_ERRORS = {502: "its gateway got no answer", 503: "busy or starting", 504: "its gateway timed out"}
#: Demuxers of still images, with every ``*_pipe`` one: what FFmpeg reads a camera's snapshot URL with.
STILL_IMAGE_FORMATS = frozenset({"image2", "mjpeg"})
#: A source's damaged pictures are told in one line at most this often, with how many since the last.
DAMAGED_PICTURES_LOG_INTERVAL_S = 60.0

_OPTIONS = {
    "transport": "tcp",
    "timeout": "",  # `STALL_TIMEOUT_S`, or for live HLS a bound from its target duration
    "open_timeout": str(OPEN_TIMEOUT_S),
    "fps": str(DEFAULT_FPS),
    "format": "",
}


class NetworkSource:
    """A camera or stream at a URL, connected afresh by each `open`.

    Reports permanent problems (a protocol this FFmpeg lacks) as `SourceError`; refused credentials
    and a stream description without video as `SlowRetryError` (retried slowly: a booting camera
    answers so too); everything else (refused, reset, timed out, stalled, closed by the camera) as
    `ConnectionError`, so the reader reconnects. Messages never contain the URL's password.
    """

    def __init__(
        self, uri: str, max_frame_side: int = MAX_FRAME_SIDE_PX, check_host: Callable[[str], None] | None = None
    ) -> None:
        if has_raw_userinfo(uri):  # checked first: the options would be read from inside the password
            raise SourceError(
                f"{mask_uri(uri)!r}: a '#' or '?' in the user name or password must be percent-encoded "
                "('#' as %23, '?' as %3F), and so must an '@' in a query straight after the host (as %40)"
            )
        url, options = split_options(uri, _OPTIONS)
        parts = urlsplit(url)
        self.scheme = parts.scheme.lower()
        if self.scheme not in SCHEMES:
            raise SourceError(f"{mask_uri(uri)!r} is not a network stream")
        if not parts.hostname:
            raise SourceError(f"{mask_uri(uri)!r} has no host")
        try:
            port = parts.port
        except ValueError:  # not a number, or above 65535: FFmpeg would fail on it at every attempt
            port = 0
        if port == 0:
            # `rtsp://admin:pa/ss@host/...`: the host part ends at the password's '/' ("pa" is read as the port)
            slash = " (a '/' in a password must be percent-encoded, as %2F)" if "@" in parts.path else ""
            raise SourceError(f"{mask_uri(uri)!r}: the port must be a number from 1 to 65535{slash}")
        transport = options["transport"].lower()
        if transport not in RTSP_TRANSPORTS:
            choices = ", ".join(sorted(RTSP_TRANSPORTS))
            raise SourceError(f"transport={transport!r} in {mask_uri(uri)!r}: use one of {choices}")
        # A scheme is case-insensitive, but FFmpeg finds its protocol only by the lower-case name.
        scheme, colon, rest = url.partition(":")
        self._url = scheme.lower() + colon + rest
        self._described = mask_uri(uri)
        self._transport = transport
        self._timeout_given = bool(options["timeout"])
        self.stall_timeout_s = (
            positive_float(options, "timeout", uri, MAX_TIMEOUT_S) if self._timeout_given else STALL_TIMEOUT_S
        )
        #: A live HLS stream's stall bound without ``timeout``, learnt from its playlist at its first connection.
        self._hls_stall_timeout_s: float | None = None
        self.open_timeout_s = positive_float(options, "open_timeout", uri, MAX_TIMEOUT_S)
        self.fps = positive_float(options, "fps", uri, MAX_FPS)
        self._format = options["format"] or None
        if self._format is not None:
            try:
                av.format.ContainerFormat(self._format, "r")  # how `av.open` finds the demuxer it names
            except ValueError:
                raise SourceError(
                    f"format={self._format!r} in {mask_uri(uri)!r}: this FFmpeg has no such demuxer "
                    "(`ffmpeg -demuxers` lists those it has)"
                ) from None
        self._max_frame_side = max_frame_side
        self._host = parts.hostname
        self._check_host = check_host
        # RTSP and RTMP are live by nature. An HTTP URL may be a finite video; `open` finds out.
        self.live = True
        #: A live HLS stream hands over whole segments: the reader paces it (`LivePacing`), never a camera.
        self.bursty = False
        #: A finite video's media time of the last frame handed on, until it has played to its end:
        #: a connection that drops mid-file resumes there instead of playing it again from the start.
        self._played_to: float | None = None
        self._damaged = DamagedPictures()

    def describe(self) -> str:
        return self._described

    @property
    def resumes(self) -> bool:
        """A finite video goes on from its last frame after a dropped connection (`_resume`)."""
        return not self.live

    def av_options(self) -> dict[str, str]:
        """FFmpeg options for this URL: low latency for every protocol, and the chosen RTSP transport."""
        options = {"fflags": "discardcorrupt", "flags": "low_delay", "analyzeduration": str(PROBE_DURATION_US)}
        if self.scheme in ("rtsp", "rtsps"):
            options["rtsp_transport"] = self._transport
            options["allowed_media_types"] = "video"
            if self._transport.startswith("udp"):
                options["max_delay"] = str(UDP_REORDER_DELAY_US)
        return options

    def open(self, stop: threading.Event) -> Iterator[Decoded]:
        container = self._connect()
        with container:
            stream = video_stream(container)
            if stream is None:
                raise SlowRetryError(
                    "the camera describes no video stream: check the URI's path; retried slowly, "
                    "as a camera that is still starting may answer so"
                )
            stream.thread_type = "SLICE"
            limit_decoder(stream, self._max_frame_side)
            if self.scheme in ("http", "https") and _is_finite(container):
                self.live = False
            self.bursty = _is_live_hls(container)
            if rate := frame_rate(container, stream):
                self.fps = float(rate)
            stall_timeout_s = self._hls_stall_timeout_s or self.stall_timeout_s
            frames = decode_frames(
                container, stream, stop, stall_timeout_s, self.live, self._url, self.fps, self._damaged
            )
            if _is_still_image(container) and container.size > 0:  # a picture of a known length
                frames = _more_than_one_picture(frames, self._described)
            if self.live:
                yield from frames
                return
            yield from self._resume(container, stream, frames)
            self._played_to = None  # played to its end: a looped video starts again from the start

    def _resume(
        self, container: av.container.InputContainer, stream: av.video.stream.VideoStream, frames: Iterator[Decoded]
    ) -> Iterator[Decoded]:
        """A finite video's ``frames`` from where the last connection stopped, remembering how far they got.

        The seek lands on the key frame before that point (FFmpeg asks the server for that byte range);
        the frames from there up to the last one handed on are decoded and skipped. Where the server
        cannot seek, or the video has no timestamps to seek by (raw H.264, whose frames' times count
        them from the start), they are all decoded and skipped. If nothing follows the last one handed
        on, it comes again, so the reader sees this attempt reach the video's end.
        """
        played_to = self._played_to
        if played_to is not None and stream.time_base and not container.format.flags & _NO_TIMESTAMPS:
            with contextlib.suppress(av.error.FFmpegError):  # read through from the start instead
                container.seek(int(played_to / stream.time_base), stream=stream, backward=True)
        last_skipped: Decoded | None = None
        for decoded in frames:
            if played_to is not None and decoded.media_time <= played_to:
                last_skipped = decoded
                continue
            played_to = self._played_to = decoded.media_time
            last_skipped = None
            yield decoded
        if last_skipped is not None:
            yield last_skipped

    def _connect(self) -> av.container.InputContainer:
        """The open container, its reads timed out at the stall bound.

        A live HLS stream (known only once FFmpeg has read it) waits between segments for longer than
        a camera between frames: without ``timeout``, its bound is learnt from its playlist at its
        first connection, which is then opened again with it (FFmpeg's read time-out is set at opening).
        """
        container = self._open()
        if self._timeout_given or self._hls_stall_timeout_s is not None or not _is_live_hls(container):
            return container
        target_s = playlist_target_duration(self._url, self.open_timeout_s, self._host)
        self._hls_stall_timeout_s = min(
            MAX_TIMEOUT_S,
            max(self.stall_timeout_s, HLS_STALL_TARGET_DURATIONS * (target_s or HLS_ASSUMED_TARGET_DURATION_S)),
        )
        container.close()
        return self._open()

    def _open(self) -> av.container.InputContainer:
        if self._check_host is not None:
            self._check_host(self._host)
        started = time.monotonic()
        try:
            return av.open(
                self._url,
                format=self._format,
                options=self.av_options(),
                timeout=(self.open_timeout_s, self._hls_stall_timeout_s or self.stall_timeout_s),
            )
        except av.error.FFmpegError as exc:
            # FFmpeg's RTSP client reports its time-out as "invalid data": the clock tells them apart.
            if isinstance(exc, av.error.ExitError) or time.monotonic() - started >= self.open_timeout_s:
                raise ConnectionError(f"no answer within {self.open_timeout_s:g} s") from None
            if exc.errno == errno.EIO and self._host and (unknown := unknown_host(self._host)):
                raise ConnectionError(unknown) from None
            left_s = self.open_timeout_s - (time.monotonic() - started)
            if self.scheme in ("http", "https") and (explained := self._explain_http(exc, left_s)) is not None:
                raise explained from None
            rtsp_transport = self._transport if self.scheme in ("rtsp", "rtsps") else None
            raise translate_error(exc, self._url, rtsp_transport) from None

    def _explain_http(self, exc: av.error.FFmpegError, timeout_s: float) -> ConnectionError | None:
        """What the server's answer tells that FFmpeg's ``exc`` does not, found by asking again
        (`ask_again`), or None where it tells nothing more.

        FFmpeg says "Invalid data found" for a web page and for MJPEG its multipart demuxer cannot split,
        and "5XX Server Error" for every server error, keeping the answer's content type and status to
        itself.
        """
        if not isinstance(exc, av.error.InvalidDataError | av.error.HTTPServerError):
            return None
        answer = ask_again(self._url, timeout_s)
        if answer is None:
            return None
        if isinstance(exc, av.error.HTTPServerError):
            if answer.status < 500:  # answered again since: its error is not known
                return None
            meaning = SERVER_ERRORS.get(answer.status, "an error on its side")
            return ConnectionError(f"the server answered {answer.status} ({meaning}): retrying")
        if answer.is_web_page:
            return SlowRetryError(
                "the server sent a web page, not video: check the URL's path (a camera's web page is "
                "not its video stream); retried slowly"
            )
        if answer.content_type == MULTIPART_MJPEG and self._format != "mjpeg":
            return SlowRetryError(
                f"the server sends MJPEG ({MULTIPART_MJPEG}) whose parts FFmpeg cannot find (some cameras "
                "write the boundary between them without its leading '--'): add #format=mjpeg to the URI, "
                "which finds each picture by its own markers; retried slowly"
            )
        return None


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
    if container.format.flags & _NO_TIMESTAMPS:
        rates = (stream.codec_context.framerate, stream.guessed_rate)
    return next((rate for rate in rates if rate), None)


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


def limit_decoder(stream: av.video.stream.VideoStream, max_side: int, fix: str = LOWER_CAMERA_RESOLUTION) -> None:
    """Refuse pictures larger than ``max_side`` a side before they are decoded, not after.

    The size the stream's header announces is checked at once (`SourceError`, saying to ``fix`` it);
    the decoder is told to refuse pictures of more than ``max_side`` squared pixels, so a camera that
    switches to a huge size mid-stream costs a decoding error (and a reconnect, whose header then
    fails the check), never the memory of the picture.
    """
    context = stream.codec_context
    if context.width and context.height:
        check_frame_size(context.width, context.height, max_side, fix)
    context.options = {**context.options, "max_pixels": str(max_side * max_side)}


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
    Used in its reader's thread only.
    """

    def __init__(self) -> None:
        self.total = 0
        self._untold = ThrottledCount(DAMAGED_PICTURES_LOG_INTERVAL_S)

    def add(self) -> None:
        self.total += 1
        if count := self._untold.add():
            log.warning(
                "[%s] skipped %d damaged picture%s (%d in all): each costs only itself, not the connection",
                reading_stream.get(),
                count,
                "" if count == 1 else "s",
                self.total,
            )


def decode_frames(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    stop: threading.Event,
    stall_timeout_s: float,
    live: bool,
    url: str,
    fps: float = DEFAULT_FPS,
    damaged: DamagedPictures | None = None,
) -> Iterator[Decoded]:
    """Decode ``stream`` of an open ``container`` until it ends, stalls or ``stop`` is set.

    A live stream that ends was closed by the other side: that is a `ConnectionError`, because a
    camera has no end. Frames without a real timestamp (MJPEG) get their arrival time instead, or, in
    a finite video (a raw H.264 file), their place at ``fps``: it comes faster than it plays.
    The stall clock stops while the caller holds a frame: a clip's reader waits for each frame's
    time to come, however long its gaps. A packet that arrives ``stall_timeout_s`` after the last
    frame is a stall, whatever it holds: FFmpeg's RTSP demuxer keeps a camera's last packet until its
    read times out and hands it over then, which made a camera that stopped sending look live for
    one more time-out. A packet the decoder finds damaged costs its picture, not
    the connection (an MJPEG camera's garbled part; a reconnect for each kept such a camera down
    most of the time), and is counted in ``damaged`` (the source's, else this call's own); one that
    sends nothing decodable stalls.
    """
    refuse_damaged_pictures(stream)
    if damaged is None:
        damaged = DamagedPictures()
    wall_clock = container.format.name in WALL_CLOCK_FORMATS
    time_base = float(stream.time_base) if stream.time_base and not wall_clock else 0.0
    started = last_frame = last_packet = time.monotonic()
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
            for frame in frames:
                if frame.pts is not None and time_base:
                    media_time = frame.pts * time_base
                else:
                    media_time = time.monotonic() - started if live else index / fps
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


def translate_error(exc: av.error.FFmpegError, url: str, rtsp_transport: str | None = None) -> Exception:
    """An FFmpeg error as this module promises it: `SourceError` if permanent, else a `ConnectionError`
    (`SlowRetryError` for a refusal). ``rtsp_transport`` is the one asked for, for an RTSP URL."""
    reason = mask_text(exc.strerror or str(exc), url)
    if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
        if mask_uri(url) == url:  # nothing in it that could be a credential
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
    if isinstance(exc, av.error.HTTPServerError):  # its status is told by `NetworkSource._explain_http`
        return ConnectionError("the server answered with a 5XX error (busy, starting or failing): retrying")
    if rtsp_transport == "tcp" and exc.errno == errno.EPROTONOSUPPORT:  # RTSP's 461 Unsupported transport
        return SlowRetryError(f"the camera refused the transport ({reason}): try #transport=udp; retried slowly")
    if isinstance(exc, av.error.ProtocolNotFoundError | av.error.DecoderNotFoundError):
        return SourceError(f"this FFmpeg build cannot read it: {reason}")
    if isinstance(exc, av.error.InvalidDataError):
        return ConnectionError(f"not a video stream, or a damaged one: {reason}")
    return ConnectionError(reason[:1].lower() + reason[1:] if reason else type(exc).__name__)


def _is_finite(container: av.container.InputContainer) -> bool:
    """Whether an HTTP URL is a video with an end (a clip, an HLS recording) rather than a live feed:
    one with a duration. A length the server gives is no sign of an end: some cameras send one, made
    up and huge, with a live feed, which as a finite video would be resumed by seeking when it hangs
    up, and never come back. So a stored video whose format tells no duration (a raw .h264) is
    played as a live feed.
    """
    return container.format.name != "mpjpeg" and container.duration is not None and container.duration > 0


def _is_live_hls(container: av.container.InputContainer) -> bool:
    """Whether ``container`` reads a live HLS playlist: one without an end, so without a duration."""
    return container.format.name == "hls" and not (container.duration and container.duration > 0)


def _is_still_image(container: av.container.InputContainer) -> bool:
    """Whether ``container`` is read by a demuxer of still images (`STILL_IMAGE_FORMATS`)."""
    name = container.format.name
    return name in STILL_IMAGE_FORMATS or name.endswith("_pipe")


def _more_than_one_picture(frames: Iterator[Decoded], described: str) -> Iterator[Decoded]:
    """``frames``, unless they end after one: a single picture (a camera's snapshot URL, one JPEG) is no
    video, and played it went live for one frame, then ended without a word.

    Raises `SourceError` before handing the picture on: the stream fails, saying what to give instead.
    """
    first = next(frames, None)
    if first is None:
        return
    try:
        second = next(frames, None)
    except ConnectionError:  # read as a live feed, which "closed" after its one picture
        second = None
    if second is None:
        raise SourceError(
            f"{described} is a single picture (a camera's snapshot URL), not a video stream: give the "
            "camera's MJPEG or RTSP URL instead (its manual or web interface names them)"
        )
    yield first
    yield second
    yield from frames
