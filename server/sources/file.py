"""Local video files, decoded with PyAV.

/videos/yard.mp4, file:///videos/yard.mp4     played at the file's own frame rate, like a camera
/videos/yard.mp4#rate=max                     as fast as inference takes frames, none dropped (batch)
/videos/take#2.mp4, /videos/a#b=c.mp4         a '#' not followed by file options is part of the name
file:///videos/take%23rate=max.mp4            a name holding '#rate' needs a file:// URL, '#' as %23
"""

from __future__ import annotations

import ipaddress
import logging
import re
import stat
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import av

from server.sources.base import (
    MAX_FRAME_SIDE_PX,
    SCALE_VIDEO_DOWN,
    Decoded,
    SourceError,
    frames_too_large,
    reading_stream,
)
from server.sources.decoding import (
    UprightImages,
    ended_early_at,
    frame_rate,
    limit_decoder,
    open_limit,
    refuse_damaged_pictures,
    refused_as_too_large,
    undecoded_start,
    video_stream,
)
from server.sources.network import SCHEMES
from server.sources.uri import mask_uri, split_options

log = logging.getLogger(__name__)

DEFAULT_FPS = 25.0  # for files whose header gives no rate
#: A file that has only damaged packets this far into it is not a video at all.
MAX_DAMAGED_PACKETS = 100
#: More frames than this in a row earlier than the last one shown are the file's own timeline going
#: back (recordings joined into one file), not frames a decoder handed out late (one at a time, measured).
MAX_LATE_FRAMES = 4
#: The MP4 boxes read for a file FFmpeg could not open: enough for any file's top level, which a
#: recording keeps to a handful (ftyp, free, mdat, moov).
MAX_TOP_LEVEL_BOXES = 1000
RATES = ("native", "max")
#: A file's options and their defaults. In a plain path they also tell options from a '#' in a name.
_OPTIONS = {"rate": "native"}
#: A URI's scheme, and the '//' a camera's address typed as a path lacks.
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):(?P<slashes>//)?")
#: The schemes segcast reads: text that starts with one is a URI of that kind, even a broken one.
_KNOWN_SCHEMES = frozenset({*SCHEMES, "file", "scene", "webcam"})
#: A host name or IPv4 address, and a port: how a camera's address typed without its scheme may start.
_HOST = re.compile(r"[A-Za-z0-9.-]+(?P<port>:[0-9]{1,5})?")


class FileSource:
    """A video file played from the start each time it is opened; the reader paces and loops it.

    Made without touching the file system, so that what is wrong with the URI's text (a bad
    ``rate``) is named at once, while a file on a network mount that hangs (NFS, SMB) holds up only
    its own stream, which stays ``starting``: whether the file is there, and is a file, is found out
    by `open`, in the reader's thread, with its header.
    """

    live = False

    def __init__(
        self,
        path: Path,
        rate: str = "native",
        max_frame_side: int = MAX_FRAME_SIDE_PX,
        check_path: Callable[[Path], None] | None = None,
    ) -> None:
        if "\x00" in str(path):  # percent-encoded (file:///a%00.mp4): no file name can hold one
            raise SourceError(f"no such file: {str(path)!r} (a file name cannot hold a NUL character)")
        if rate not in RATES:
            raise SourceError(f"rate={rate!r} for {path}: use one of {', '.join(RATES)}")
        self.path = path
        #: With ``rate=max`` the reader hands over every frame as soon as the previous one was taken.
        self.batch = rate == "max"
        self._max_frame_side = max_frame_side
        #: Called with the file's real path each time it is opened, before anything reads it; may refuse
        #: it with `SourceError` (see `open`).
        self._check_path = check_path
        #: The file's own rate once `open` has read its header; until then a first guess, as a camera's.
        self.fps = DEFAULT_FPS
        #: What of the file its header states did not play (a start that could not be decoded, a recording
        #: cut short), or None: the reason its ended stream shows (`Source`'s ``ended_early``).
        self.ended_early: str | None = None

    def _unplayable(self, reason: str, path: Path) -> SourceError:
        """The error for a file that cannot be played: ``reason``, FFmpeg's words, unless the file is a
        recording cut off before its index (FFmpeg finds no data, no video stream or no decoder). ``path``:
        the one opened (see `open`)."""
        if lacks_mp4_index(path):
            reason = (
                f"cannot open {self.path.name} as video: it looks incomplete, with no index (the MP4's "
                "moov box), as a recording is when its recorder was cut off before it finished"
            )
        return SourceError(reason)

    def describe(self) -> str:
        shown = _shown(self.path)
        return f"{shown}#rate=max" if self.batch else shown

    @classmethod
    def of_uri(
        cls,
        uri: str,
        is_url: bool,
        max_frame_side: int = MAX_FRAME_SIDE_PX,
        check_path: Callable[[Path], None] | None = None,
    ) -> FileSource:
        """The source for a ``file://`` URL (``is_url``) or a plain path, read as `split_file_uri` says."""
        if is_url:
            check_file_url_host(uri)
        path, fragment = split_file_uri(uri, is_url)
        if fragment is None:
            return cls(path, max_frame_side=max_frame_side, check_path=check_path)
        try:
            rate = split_options(uri if is_url else f"#{fragment}", _OPTIONS)[1]["rate"]
            return cls(path, rate, max_frame_side, check_path)
        except SourceError as exc:
            if is_url:
                raise
            # The name may really hold '#rate': say how to give such a file.
            raise SourceError(f"{exc} (a file named with '#rate' is given as a file:// URL, '#' as %23)") from None

    def open(self, stop: threading.Event) -> Iterator[Decoded]:
        path = self.path
        if self._check_path is not None:
            # At every opening, each pass of a loop included: a link may point elsewhere by now. The real
            # path is the one opened, so a link changed after the check is not followed.
            path = real_path(self.path)
            self._check_path(path)
        check_video_file(path)
        try:
            container = av.open(str(path), options=open_limit(self._max_frame_side))
        except av.error.FFmpegError as exc:
            raise self._unplayable(f"cannot open {self.path.name} as video: {_reason(exc)}", path) from None
        with container:
            stream = video_stream(container)
            if stream is None:
                raise self._unplayable(f"{self.path.name} has no video stream", path)
            if stream.codec_context is None:  # a codec FFmpeg lacks, or one an index cut short never named
                raise self._unplayable(
                    f"cannot decode {self.path.name}: this FFmpeg has no decoder for its video", path
                )
            stream.thread_type = "AUTO"
            limit_decoder(stream, self._max_frame_side, SCALE_VIDEO_DOWN)
            refuse_damaged_pictures(stream)
            time_base = float(stream.time_base) if stream.time_base else 0.0
            rate = self.fps = float(frame_rate(container, stream) or DEFAULT_FPS)
            upright_image = UprightImages()
            in_order = InOrder()
            index = damaged = 0
            media_time = 0.0
            first_decoded: float | None = None
            try:
                for packet in container.demux(stream):
                    try:
                        frames = packet.decode()
                    except av.error.InvalidDataError:
                        # A damaged stretch of the file: skip its packets, as a player would; the decoder
                        # picks up again at the next key frame. Replaying from the start would only come
                        # back to the same damage, so this is not a reason to reopen.
                        damaged += 1
                        if damaged > MAX_DAMAGED_PACKETS and index == 0:
                            raise
                        continue
                    for frame in frames:
                        if stop.is_set():
                            return
                        media_time = frame.pts * time_base if frame.pts is not None and time_base else index / rate
                        if first_decoded is None:
                            first_decoded = media_time
                        yield from in_order.admit(Decoded(upright_image(frame), media_time))
                        index += 1
                yield from in_order.rest()
            except av.error.FFmpegError as exc:
                if refused_as_too_large(exc, stream):  # played again, the file has the same picture there
                    raise frames_too_large(self._max_frame_side, SCALE_VIDEO_DOWN) from None
                if index == 0:
                    raise self._unplayable(f"cannot decode {self.path.name}: {_reason(exc)}", path) from None
                raise
            if damaged or in_order.dropped:
                late = f" and {in_order.dropped} frames its decoder handed out late" if in_order.dropped else ""
                name = self.path.name
                log.warning("[%s] %s: skipped %d damaged packets%s", reading_stream.get(), name, damaged, late)
            self._tell_what_did_not_play(stream, first_decoded, media_time + 1 / rate)

    def _tell_what_did_not_play(
        self, stream: av.video.stream.VideoStream, first_decoded_s: float | None, played_to_s: float
    ) -> None:
        """Keep as `ended_early` what of the file did not play, its frames having run from ``first_decoded_s``
        (None: there were none) to ``played_to_s`` (their media times), and log it once, not at every pass
        of a loop."""
        not_played = None
        if first_decoded_s is not None:
            missed = (undecoded_start(stream, first_decoded_s), ended_early_at(stream, played_to_s))
            not_played = "; ".join(reason for reason in missed if reason) or None
        if not_played and not_played != self.ended_early:
            log.warning("[%s] %s: %s", reading_stream.get(), self.path.name, not_played)
        self.ended_early = not_played


class InOrder:
    """Drops the odd frame a damaged file's decoder hands out after frames that follow it.

    After a damaged packet, FFmpeg's H.264 decoder may let out a frame it held for reordering once
    later ones are out (measured: one frame, 0.04 to 0.5 s behind, then the timeline goes on). Shown,
    the picture stepped back for a frame and the tracker saw every object jump back and forth; paced,
    each such frame restarted the file's clock, so a damaged file played for longer than it lasts.
    Recordings joined into one file go back in time too, but stay back: frames earlier than the last
    one passed on are held, and passed on once more than `MAX_LATE_FRAMES` of them come in a row; when
    the timeline comes back first, they were late and are dropped.
    """

    def __init__(self) -> None:
        self.dropped = 0
        self._last: float | None = None
        self._held: list[Decoded] = []

    def admit(self, decoded: Decoded) -> list[Decoded]:
        """The frames to pass on now that ``decoded`` came: none, it, or the held ones with it."""
        if self._last is not None and decoded.media_time < self._last:
            self._held.append(decoded)
            if len(self._held) <= MAX_LATE_FRAMES:
                return []
            passed, self._held = self._held, []
        else:
            self.dropped += len(self._held)
            self._held = []
            passed = [decoded]
        self._last = passed[-1].media_time
        return passed

    def rest(self) -> list[Decoded]:
        """The frames still held when the file ends: too few to tell, so passed on as they came."""
        passed, self._held = self._held, []
        return passed


def file_path(uri: str, is_url: bool) -> Path:
    """The file a ``file://`` URL (``is_url``) or a plain path names, read from its text alone (see
    `split_file_uri`)."""
    return split_file_uri(uri, is_url)[0]


def split_file_uri(uri: str, is_url: bool) -> tuple[Path, str | None]:
    """The file a ``file://`` URL (``is_url``) or a plain path names, and the text of its options
    (what follows the '#' that starts them; None where there are none).

    A URL's options are all that follows its first '#' (a '#' in the name is written %23). In a
    plain path only its last '#' can start them, and only where what follows it holds no '/' and
    starts with one of the file's options, ``rate`` (``/videos/clip #1.mp4#rate=max``); it is then read as
    options, and a typo in them is an error (``#rate``, ``#rate=max&loop``). Anything else after
    a '#' is part of the name (``take#2.mp4``, ``a#b=c.mp4``, a folder ``set#x=1/``); a name that
    holds '#rate' is given as a file:// URL. No file is looked at: what a URI means never depends on
    which files exist, so a typo in its options is named when the source is made, and a share that
    does not answer holds up only the stream that reads from it.
    """
    if is_url:
        head, sep, fragment = uri.partition("#")
        return Path(unquote(urlsplit(head).path)), fragment if sep else None
    head, sep, fragment = uri.rpartition("#")
    first_key = fragment.partition("&")[0].partition("=")[0]
    if sep and "/" not in fragment and (not fragment or first_key in _OPTIONS):
        return Path(head), fragment
    return Path(uri), None


def check_file_url_host(uri: str) -> None:
    """Raise `SourceError` where the ``file:`` URL ``uri`` names a host other than this machine.

    ``file://tmp/a.mp4`` names the host ``tmp`` and the file /a.mp4: one slash short, not a share, and
    reading its path alone played another file (or none) without a word. `split_file_uri` still reads
    the path alone, so what names a stream after its file never fails on it.
    """
    parts = urlsplit(uri.partition("#")[0])
    if parts.netloc not in ("", "localhost"):
        host = mask_uri(parts.netloc)
        raise SourceError(f"{mask_uri(uri)!r} names host {host!r}; write file:///{host}{parts.path}")


def lacks_mp4_index(path: Path) -> bool:
    """Whether ``path`` is an MP4 or QuickTime file (its first box is ``ftyp``) whose index is missing
    or cut off: no ``moov`` box at its top level, or one that runs past the file's end.

    A recorder writes the index last, when it stops: one cut off (a camera's power lost, a process
    killed) leaves the pictures without it, and FFmpeg says only "Invalid data found". Reads the
    boxes' headers only; any trouble reading says no, and FFmpeg's words stand.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            for number in range(MAX_TOP_LEVEL_BOXES):
                start = file.tell()
                header = file.read(8)
                if len(header) < 8:
                    return number > 0  # an ftyp and no moov
                length, kind = struct.unpack(">I4s", header)
                if number == 0 and kind != b"ftyp":
                    return False
                if length == 1:  # a 64-bit length follows
                    length = struct.unpack(">Q", file.read(8))[0]
                end = size if length == 0 else start + length  # 0: the box runs to the file's end
                if kind == b"moov":
                    return end > size
                if end <= start:
                    return False
                file.seek(end)
    except (OSError, struct.error):
        return False
    return False


def real_path(path: Path) -> Path:
    """``path`` with its symbolic links and ``..`` followed, or `SourceError` where they cannot be.

    Blocks on the file system: call it in the reader's thread.
    """
    try:
        return path.resolve()
    except RuntimeError:  # links that lead back to themselves (Python 3.13 raises OSError)
        raise SourceError(f"cannot read {_shown(path)}: its symbolic links form a loop") from None
    except OSError as exc:
        raise SourceError(f"cannot read {_shown(path)}: {exc.strerror or type(exc).__name__}") from None


def check_video_file(path: Path) -> None:
    """Raise `SourceError` unless ``path`` names a regular file this process can reach.

    Reads its metadata only, and blocks for as long as the file system takes to answer: call it in
    the reader's thread. ``Path.is_file`` would raise past its caller for a folder it may not enter
    or a name longer than the file system allows, and call a folder "no such file".
    """
    shown = _shown(path)
    try:
        status = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        hint = camera_address_hint(str(path)) or _home_hint(path)
        raise SourceError(f"no such file: {shown}{f' ({hint})' if hint else ''}") from None
    except OSError as exc:  # EACCES on a folder on the way, ENAMETOOLONG, ELOOP, EIO
        raise SourceError(f"cannot read {shown}: {exc.strerror or type(exc).__name__}") from None
    mode = status.st_mode
    if stat.S_ISDIR(mode):
        raise SourceError(f"{shown} is a folder: give the path of a video file in it")
    if stat.S_ISCHR(mode):  # a camera under a name of its own (a udev link): read as a file, it never plays
        raise SourceError(
            f"{shown} is a device, not a video file (a camera is given as /dev/videoN, /dev/v4l/by-id/... or webcam:N)"
        )
    if not stat.S_ISREG(mode):
        raise SourceError(f"{shown} is not a regular file (a pipe, socket or device): give a video file")
    if status.st_size == 0:  # FFmpeg's word for it is "invalid data found"
        raise SourceError(f"{shown} is empty (0 bytes): there is no video in it")


def camera_address_hint(text: str) -> str | None:
    """What a camera's address typed without its scheme, or its '://', should read, or None where
    ``text`` does not look like one.

    ``rtsp//cam/live`` reads as a path (a folder ``rtsp``); ``192.168.1.10:554/stream1`` and
    ``cam.local:554/live`` as a path or a URI of scheme ``cam.local``; ``admin:S3cret@cam/live`` as
    a URI of scheme ``admin``. Each names a file that is not there or a scheme nobody knows, which
    sent people looking for the wrong mistake. The address shown has its password masked.
    """
    if text.startswith(("/", "~", ".")):
        return None
    scheme = _SCHEME.match(text)
    if scheme and (scheme["slashes"] or scheme["scheme"].lower() in _KNOWN_SCHEMES):
        return None
    first, slash, rest = text.partition("/")
    if first.lower() in SCHEMES and rest.lstrip("/"):
        return f"a camera's address? It needs '://': {first.lower()}://{mask_uri(rest.lstrip('/'))}"
    userinfo, _, host = first.rpartition("@")
    named = _HOST.fullmatch(host)  # a name alone is a camera's only with a user or a port, and a path
    if _is_address(host) or (slash and named and (userinfo or named["port"])):
        return f"a camera's address? Give its scheme: rtsp://{mask_uri(text)}"
    return None


def _shown(path: Path) -> str:
    """``path`` for messages and logs: a camera's address typed as a path may hold its password, after
    a scheme that lost its colon too (``rtsp//admin:S3cret@cam/live`` reads as ``rtsp/admin:...``)."""
    first, slash, rest = str(path).partition("/")
    if slash and first.lower() in SCHEMES:
        return f"{first}/{mask_uri(rest)}"
    return mask_uri(str(path))


def _is_address(text: str) -> bool:
    """Whether ``text`` is an IPv4 address, with or without a port (``192.168.1.10:554``)."""
    address, colon, port = text.partition(":")
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return not colon or port.isdigit()


def _home_hint(path: Path) -> str | None:
    """The path a ``~`` at the start of ``path`` stands for, which a shell expands and a source does not
    (a quoted ``--source 'u=~/a.mp4'``)."""
    if not path.parts or not path.parts[0].startswith("~"):
        return None
    try:
        expanded = path.expanduser()
    except RuntimeError:  # ~name of nobody on this machine
        return None
    return f"'~' is not expanded here: write {expanded}"


def _reason(exc: av.error.FFmpegError) -> str:
    """FFmpeg's words for what is wrong, without the error number and path it repeats."""
    reason = exc.strerror or str(exc)
    return reason[:1].lower() + reason[1:]
