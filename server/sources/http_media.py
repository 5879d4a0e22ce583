"""What an HTTP URL turns out to serve besides a live camera feed, told from the container FFmpeg opened,
and what each such kind needs.

An HTTP URL names no kind: a camera's MJPEG feed, a live HLS playlist, a finite video (a clip, an HLS
recording) and a camera's snapshot (one picture) look alike until FFmpeg has opened them. A finite
video is played across connections that drop mid-file (`FinitePlayback`); a live HLS stream hands over
whole segments, paced by the reader and given a longer stall bound (`is_live_hls`); a single picture is
refused, as no video (`more_than_one_picture`).

Kept apart from `server.sources.network`, which connects to every URL alike (an RTSP or RTMP one is a
live feed, whatever its container) and asks these questions of what it opened.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator

import av
import av.container

from server.sources.base import Decoded, SourceError
from server.sources.decoding import NO_TIMESTAMPS, ended_early_at

#: Demuxers of still images, with every ``*_pipe`` one: what FFmpeg reads a camera's snapshot URL with.
STILL_IMAGE_FORMATS = frozenset({"image2", "mjpeg"})


class FinitePlayback:
    """A finite video at a URL, played across the connections that read it: one that drops mid-file is
    followed by one that goes on from the last frame handed on, instead of playing it again from the start.
    """

    def __init__(self, described: str) -> None:
        self._described = described
        #: The media time of the last frame handed on, until the video has played to its end.
        self._played_to: float | None = None

    def play(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        frames: Iterator[Decoded],
        fps: float,
    ) -> Generator[Decoded, None, str | None]:
        """``frames`` of ``container``, an open connection to the video, from where the last one stopped; once
        they have played to the end, returns where they ended before the end the header states (a file cut
        short, `ended_early_at`: the reason its ended stream shows), or None.

        Raises `SourceError` where an MP4 gave no frame because its index is out of reach (`_index_out_of_reach`).
        """
        came = False
        for decoded in self._resume(container, stream, frames):
            came = True
            yield decoded
        if not came and _index_out_of_reach(container):
            raise SourceError(
                f"{self._described}: the MP4's index (its moov box) is at its end, and the server does not "
                "allow seeking back to the pictures before it: rewrite it with the index first "
                "(`ffmpeg -i IN -c copy -movflags +faststart OUT`, which copies the video as it is), or serve "
                "it from a server that answers Range requests"
            )
        played_to, self._played_to = self._played_to, None  # played to its end: a loop starts it again
        return None if played_to is None else ended_early_at(stream, played_to + 1 / fps)

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
        if played_to is not None and stream.time_base and not container.format.flags & NO_TIMESTAMPS:
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


def is_finite(container: av.container.InputContainer) -> bool:
    """Whether an HTTP URL is a video with an end (a clip, an HLS recording) rather than a live feed:
    one with a duration. A length the server gives is no sign of an end: some cameras send one, made
    up and huge, with a live feed, which as a finite video would be resumed by seeking when it hangs
    up, and never come back. So a stored video whose format tells no duration (a raw .h264) is
    played as a live feed.
    """
    return container.format.name != "mpjpeg" and container.duration is not None and container.duration > 0


def _index_out_of_reach(container: av.container.InputContainer) -> bool:
    """Whether ``container``, a finite video that gave no frame, is an MP4 or QuickTime file sent with no
    length (chunked, no Range support): FFmpeg reads on to the index at its end, then cannot seek back
    to the pictures before it, and the video played nothing, saying only "partial file" to its log.
    """
    return "mp4" in container.format.name.split(",") and known_length(container) is None


def known_length(container: av.container.InputContainer) -> int | None:
    """The length in bytes of what ``container`` reads, or None where the server gave none (chunked) or
    it cannot be told (a pipe): PyAV before 18 says so with a negative number, 18 and later with None."""
    size = container.size
    return size if size is not None and size >= 0 else None


def is_live_hls(container: av.container.InputContainer) -> bool:
    """Whether ``container`` reads a live HLS playlist: one without an end, so without a duration."""
    return container.format.name == "hls" and not (container.duration and container.duration > 0)


def is_still_image(container: av.container.InputContainer) -> bool:
    """Whether ``container`` is read by a demuxer of still images (`STILL_IMAGE_FORMATS`)."""
    name = container.format.name
    return name in STILL_IMAGE_FORMATS or name.endswith("_pipe")


def more_than_one_picture(frames: Iterator[Decoded], described: str) -> Iterator[Decoded]:
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
