"""Local webcams through PyAV: Video4Linux on Linux, AVFoundation on macOS.

/dev/video0                                   the device itself
webcam:0                                      the same, by index
/dev/v4l/by-id/usb-Logi_C920-video-index0     a camera by a name udev keeps when /dev/videoN numbers
                                              change (/dev/v4l/by-path/...: by the USB port it is in)
webcam:0#width=1280&height=720&fps=30         ask the camera for a mode
/dev/video2#format=mjpeg                      ask for the camera's MJPEG mode (more fps over USB 2)

The requested mode is a request: the driver picks the nearest it has. A camera that is unplugged or
busy counts as a lost connection, so plugging it back in brings the stream back by itself.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import av
import av.container

from server.sources.base import MAX_FPS, MAX_FRAME_SIDE_PX, Decoded, SourceError
from server.sources.decoding import decode_frames, limit_decoder, translate_error, video_stream
from server.sources.uri import positive_float, split_options

DEFAULT_FPS = 30.0
#: A webcam answers at once or not at all; a long wait only delays the next attempt.
OPEN_TIMEOUT_S = 5.0
STALL_TIMEOUT_S = 5.0

_OPTIONS = {"width": "", "height": "", "fps": "", "format": ""}


class WebcamSource:
    live = True

    def __init__(self, uri: str, max_frame_side: int = MAX_FRAME_SIDE_PX) -> None:
        device, options = split_options(uri, _OPTIONS)
        self._max_frame_side = max_frame_side
        self._device, self._format = _device(device)
        self._uri = uri
        width, height = options["width"], options["height"]
        if bool(width) != bool(height):
            raise SourceError(f"{uri!r}: give both width and height, or neither")
        self._av_options: dict[str, str] = {}
        if width:
            asked_width, asked_height = (
                int(positive_float(options, k, uri, max_frame_side)) for k in ("width", "height")
            )
            if asked_width < 1 or asked_height < 1:  # 0.5 is above zero, but a mode of 0 pixels
                raise SourceError(f"{uri!r}: a webcam's width and height are whole pixels, at least 1")
            self._av_options["video_size"] = f"{asked_width}x{asked_height}"
        self.fps = DEFAULT_FPS
        if options["fps"]:
            self.fps = positive_float(options, "fps", uri, MAX_FPS)
            self._av_options["framerate"] = options["fps"]
        if options["format"]:
            self._av_options["input_format" if self._format == "v4l2" else "pixel_format"] = options["format"]

    def describe(self) -> str:
        return self._uri

    def av_options(self) -> dict[str, str]:
        return dict(self._av_options)

    def open(self, stop: threading.Event) -> Iterator[Decoded]:
        if self._format == "v4l2" and not Path(self._device).exists():
            raise ConnectionError(f"no camera at {self._device} (unplugged?)")
        try:
            container = av.open(
                self._device, format=self._format, options=self.av_options(), timeout=(OPEN_TIMEOUT_S, STALL_TIMEOUT_S)
            )
        except av.error.ExitError:
            raise ConnectionError(f"{self._device} did not answer within {OPEN_TIMEOUT_S:g} s") from None
        except av.error.FFmpegError as exc:
            raise translate_error(exc, self._device) from None
        with container:
            stream = video_stream(container)
            if stream is None:
                raise SourceError(f"{self._device} has no video")
            limit_decoder(stream, self._max_frame_side)
            if stream.average_rate:
                self.fps = float(stream.average_rate)
            yield from decode_frames(container, stream, stop, STALL_TIMEOUT_S, True, self._device, self.fps)


#: How a webcam's URI starts: an index, a V4L2 device, or one of the links udev makes to it under
#: /dev/v4l, which keep naming the same camera when /dev/videoN numbers change at the next boot.
WEBCAM_PREFIXES = ("webcam:", "/dev/video", "/dev/v4l/")


def is_webcam(uri: str) -> bool:
    """Whether ``uri`` names a local camera, told by its text alone, as every source kind is.

    An unplugged camera's device is not there, so whether a path is a device cannot be asked of the
    file system: a camera named by a path outside these (a udev link of one's own) is read as a file,
    which says it is a device and how to name it.
    """
    return uri.startswith(WEBCAM_PREFIXES)


def _device(spec: str) -> tuple[str, str]:
    """The device name and FFmpeg input format for ``webcam:N`` or a V4L2 device path on this platform."""
    if spec.startswith("webcam:"):
        index = urlsplit(spec).path.lstrip("/")
        if not index.isdigit():
            raise SourceError(f"{spec!r}: a webcam is chosen by its index, e.g. webcam:0")
        if sys.platform == "darwin":
            return index, "avfoundation"
        return f"/dev/video{index}", "v4l2"
    if sys.platform != "linux":
        raise SourceError(f"{spec!r}: /dev/video and /dev/v4l devices exist on Linux only; use webcam:<index>")
    return spec, "v4l2"
