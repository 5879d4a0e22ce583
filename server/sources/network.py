"""Network cameras and streams read with PyAV: RTSP(S), RTMP(S), and HTTP(S) MJPEG, HLS or video URLs.

rtsp://user:pass@192.168.1.10:554/stream1          TCP (the default: no lost packets, no smearing)
rtsp://192.168.1.10/stream1#transport=udp          UDP, for cameras or networks that need it
rtmp://media.local/live/cam1
http://192.168.1.11/video.mjpg                     multipart MJPEG, as many IP cameras serve it
https://example.com/live/index.m3u8                HLS
http://example.com/clip.mp4                        a finite video: played at its own rate, then ended

Options go in the fragment (see `server.sources.uri`): ``transport`` (RTSP: tcp, udp, udp_multicast,
http, https; not http for rtsps, whose tunnel FFmpeg opens over plain HTTP all the same), ``timeout``
(seconds without a frame before the connection counts as stalled and is dropped; the default, 5, is
raised for a live HLS stream to follow its playlist's target duration, and for a stream declaring a frame
rate too slow for it, a time-lapse camera's, to three of its frame intervals), ``open_timeout`` (seconds
for connecting and reading the stream header), ``fps`` (the rate assumed until frames arrive), ``format``
(force an FFmpeg demuxer this FFmpeg has, e.g. ``mjpeg`` for an MJPEG camera whose parts FFmpeg's
multipart demuxer cannot find),
``tls_verify=1`` (https, rtsps, rtmps: check the server's certificate and name against the system's CAs)
and ``ca_file`` (check them against the CA certificates in this PEM file instead; implies
``tls_verify=1``).

A TLS camera's certificate is not checked unless one of those two is given, as FFmpeg's default: most
IP cameras serve a certificate they signed themselves, which no CA vouches for, and checking by
default would cut them off. Unchecked, anyone on the way can pose as the camera and be sent its
password. Checked, a refused certificate ends the connection before anything is sent, and the
stream's error says so (`certificate_refusal`). FFmpeg checks the certificate of an HLS playlist's
first request only, never its segments', so an HLS stream with either option fails once it is open
(FFmpeg has read its first segments unchecked by then: nothing tells it apart sooner). Nor does a
checked https camera's redirect to http:// stop the stream: it is followed in plain text (sending no
password), by FFmpeg, or by segcast for a stream held to ``[server] deny_networks``, whose redirects
FFmpeg is told not to follow (``max_redirects=0``) so that each target is checked first
(`server.sources.redirects`).

FFmpeg is asked for low latency: low-delay decoding, slice threads rather than frame threads (which
would hold frames back), and a short probe, so the newest frame is what the camera sent last rather
than what sat in a buffer. Input buffering stays on: the packets read while probing hold the key frame
a camera sends as a client joins, and dropping them (``fflags nobuffer``) left the picture waiting
for the next one, which some cameras send only every 30 s. They are a second at most, decoded at
once, and the reader keeps only the newest frame, so they add no lasting latency.

What an HTTP URL turns out to serve (a finite video, resumed after a drop; live HLS; a single picture) is
told by `server.sources.http_media`, and why an opening failed, in words, by `server.sources.opening_failures`.
"""

from __future__ import annotations

import errno
import logging
import os.path
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import av
import av.container
import av.format

from server.sources.base import MAX_FPS, MAX_FRAME_SIDE_PX, Decoded, SlowRetryError, SourceError, reading_stream
from server.sources.decoding import (
    DamagedPictures,
    DamagedStreamError,
    decode_frames,
    frame_rate,
    limit_decoder,
    open_limit,
    paced_stall_timeout,
    video_stream,
)
from server.sources.http_answers import playlist_target_duration
from server.sources.http_get import Deadline, trusting
from server.sources.http_media import (
    FinitePlayback,
    is_finite,
    is_live_hls,
    is_still_image,
    known_length,
    more_than_one_picture,
)
from server.sources.opening_failures import Opening, opening_failure
from server.sources.redirects import MAX_REDIRECTS, followed_redirect
from server.sources.uri import (
    certificate_options,
    has_masked_secret,
    has_raw_userinfo,
    mask_uri,
    positive_float,
    split_options,
)

log = logging.getLogger(__name__)

SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https"})
#: The schemes spoken over TLS, with the port FFmpeg connects to where the URL names none.
TLS_PORTS = {"https": 443, "rtsps": 322, "rtmps": 443}
#: The port FFmpeg connects to where the URL names none, for every scheme: the one a refusal names.
DEFAULT_PORTS = {"rtsp": 554, "rtmp": 1935, "http": 80, **TLS_PORTS}
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
#: UDP packets may arrive out of order; waiting longer than this for a late one adds latency.
UDP_REORDER_DELAY_US = 200_000

_OPTIONS = {
    "transport": "tcp",
    "timeout": "",  # `STALL_TIMEOUT_S`, or a bound from a live HLS stream's target duration or a slow frame rate
    "open_timeout": str(OPEN_TIMEOUT_S),
    "fps": str(DEFAULT_FPS),
    "format": "",
    # Known here so that `split_options` takes them; read by `certificate_options`, as `unmask_uri` reads them.
    "tls_verify": "",  # not checked, unless ``ca_file`` is given
    "ca_file": "",
}


class NetworkSource:
    """A camera or stream at a URL, connected afresh by each `open`.

    Reports permanent problems (a protocol this FFmpeg lacks, a video URL with no video stream) as
    `SourceError`; refused credentials and a live stream's description without video as
    `SlowRetryError` (retried slowly: a booting camera answers so too); everything else (refused,
    reset, timed out, stalled, closed by the camera) as `ConnectionError`, so the reader reconnects.
    Messages never contain the URL's password.
    """

    def __init__(
        self, uri: str, max_frame_side: int = MAX_FRAME_SIDE_PX, check_host: Callable[[str], None] | None = None
    ) -> None:
        if has_raw_userinfo(uri):  # checked first: the options would be read from inside the password
            raise SourceError(
                f"{mask_uri(uri)!r}: a '#' or '?' in the user name or password must be percent-encoded "
                "('#' as %23, '?' as %3F), and so must an '@' in a query straight after the host (as %40)"
            )
        if has_masked_secret(uri):  # sent on, "***" would be tried as the camera's password at every attempt
            raise SourceError(
                f"{mask_uri(uri)!r}: its password or token is '***', which is how segcast shows one it hides (in "
                "its API, viewer and logs): give the real one"
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
        if self.scheme == "rtsps" and transport == "http":
            # FFmpeg's tunnel opens http:// whatever the scheme: it sent the password in plain text.
            raise SourceError(
                f"transport='http' in {mask_uri(uri)!r}: FFmpeg tunnels RTSP over plain HTTP, so the camera's "
                "password and video would go unencrypted: use transport=https to tunnel over TLS"
            )
        # A scheme is case-insensitive, but FFmpeg finds its protocol only by the lower-case name.
        scheme, colon, rest = url.partition(":")
        self._url = scheme.lower() + colon + rest
        self._described = mask_uri(uri)
        self._transport = transport
        self._timeout_given = bool(options["timeout"])
        self.stall_timeout_s = (
            positive_float(options, "timeout", uri, MAX_TIMEOUT_S) if self._timeout_given else STALL_TIMEOUT_S
        )
        #: The stall bound without ``timeout`` of a stream whose pace needs a longer one than `STALL_TIMEOUT_S`, as
        #: learnt at a connection (`_paced_stall_timeout`): a live HLS stream's, a slow camera's.
        self._learnt_stall_timeout_s: float | None = None
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
        self._checks_certificate, self._ca_file = _tls_options(uri, self.scheme)
        self._port = port or TLS_PORTS.get(self.scheme, 0)
        self._max_frame_side = max_frame_side
        self._host = parts.hostname
        self._check_host = check_host
        # RTSP and RTMP are live by nature. An HTTP URL may be a finite video; `open` finds out.
        self.live = True
        #: A live HLS stream hands over whole segments: the reader paces it (`LivePacing`), never a camera.
        self.bursty = False
        #: A finite video's place across connections: one that drops mid-file resumes where it stopped.
        self._finite = FinitePlayback(self._described)
        #: Where a finite video's frames ended before the end its header states (a file cut short): the
        #: reason its ended stream shows (see `Source`), as a file's.
        self.ended_early: str | None = None
        self._damaged = DamagedPictures(log)
        #: Whether a connection to this URI ever opened: its port and path are the stream's (`Opening`).
        self._opened_before = False

    def describe(self) -> str:
        return self._described

    @property
    def address(self) -> tuple[str, int] | None:
        """Where each connection goes (host, port): after one that was refused or never answered, the reader
        reconnects as soon as it accepts one (`server.sources.backoff.wait_for_return`)."""
        if self._host is None:
            return None
        return self._host, self._connected_port

    @property
    def _connected_port(self) -> int:
        """The port each connection goes to: the URI's, else its scheme's (`DEFAULT_PORTS`)."""
        return self._port or DEFAULT_PORTS[self.scheme]

    def may_probe(self, ip: str) -> bool:
        """Whether the reader may try a connection to ``ip``, an address `address`'s host resolved to, while it
        waits to reconnect (`server.sources.backoff.wait_for_return`): only where this stream's ``check_host``
        (``[server] deny_networks``) allows it, as it must allow each of the stream's own connections."""
        if self._check_host is None:
            return True
        try:
            self._check_host(ip)
        except Exception:  # its reason is for a connection to say: a probe just does not go there
            return False
        return True

    @property
    def resumes(self) -> bool:
        """A finite video goes on from its last frame after a dropped connection (`FinitePlayback`)."""
        return not self.live

    def av_options(self) -> dict[str, str]:
        """FFmpeg options for this URL: low latency and the size limit (`open_limit`) for every protocol,
        the chosen RTSP transport, the certificate check where one is asked for, and no redirect followed
        where segcast follows them, checked (`_open`).

        ``tls_verify=1`` alone is given the system's CA file as Python's `ssl` finds it: the GnuTLS
        that PyAV's wheels bundle looks for the system's CAs at /etc/pki/tls/cert.pem, which Debian
        lacks, so it refused every certificate there.
        """
        options = {"fflags": "discardcorrupt", "flags": "low_delay", "analyzeduration": str(PROBE_DURATION_US)}
        options.update(open_limit(self._max_frame_side))
        if not self._ffmpeg_follows_redirects:
            options["max_redirects"] = "0"  # each is followed, and checked, by `_open`
        if self._checks_certificate:
            options["tls_verify"] = "1"
            if ca_file := self._ca_file or ssl.get_default_verify_paths().cafile:
                options["ca_file"] = ca_file
        if self.scheme in ("rtsp", "rtsps"):
            options["rtsp_transport"] = self._transport
            options["allowed_media_types"] = "video"
            if self._transport.startswith("udp"):
                options["max_delay"] = str(UDP_REORDER_DELAY_US)
        return options

    def open(self, stop: threading.Event) -> Iterator[Decoded]:
        container = self._connect(stop)
        with container:
            if self._checks_certificate and container.format.name == "hls":
                raise SourceError(
                    "FFmpeg checks the TLS certificate of an HLS stream's first playlist only, not of its "
                    "segments: #tls_verify and #ca_file cannot be kept for it, leave them out"
                )
            stream = video_stream(container)
            if stream is None:
                if self.scheme in ("http", "https") and is_finite(container):  # a file has no start-up to wait for
                    audio_only = " (audio only)" if container.streams.audio else ""
                    raise SourceError(f"{self._described} has no video stream{audio_only}")
                raise SlowRetryError(
                    "the camera describes no video stream: check the URI's path; retried slowly, "
                    "as a camera that is still starting may answer so"
                )
            stream.thread_type = "SLICE"
            limit_decoder(stream, self._max_frame_side)
            if self.scheme in ("http", "https") and is_finite(container):
                self.live = False
            self.bursty = is_live_hls(container)
            if rate := frame_rate(container, stream):
                self.fps = float(rate)
            stall_timeout_s = self._learnt_stall_timeout_s or self.stall_timeout_s
            frames = decode_frames(
                container, stream, stop, stall_timeout_s, self.live, self._url, self.fps, self._damaged
            )
            if is_still_image(container) and known_length(container):  # a picture of a known length
                frames = more_than_one_picture(frames, self._described)
            if self.live:
                yield from self._mjpeg_fallback(container, frames)
                return
            ended_early = yield from self._finite.play(container, stream, frames, self.fps)
            if ended_early and ended_early != self.ended_early:  # once, not at every pass of a loop
                log.warning("[%s] %s: %s", reading_stream.get(), self._described, ended_early)
            self.ended_early = ended_early

    def _mjpeg_fallback(self, container: av.container.InputContainer, frames: Iterator[Decoded]) -> Iterator[Decoded]:
        """A live stream's ``frames``; where FFmpeg's multipart demuxer (``mpjpeg``) loses its place in an
        MJPEG camera's answer after pictures came, this and every later attempt read it with the
        ``mjpeg`` demuxer instead, as ``#format=mjpeg`` would, and the log says so once.

        Some cameras state a wrong Content-Length for a part now and then (too long, or half): the
        multipart demuxer takes that many bytes, finds no boundary after them and gives up ("Invalid
        data found"). Each connection lasted a second or so, and the camera was down most of the time.
        The ``mjpeg`` demuxer finds each picture by its own markers and reads through the part headers
        between them, so it reads such a camera without a reconnect. Only after pictures came: data
        the multipart demuxer cannot read from the start is told apart by `opening_failure`.
        """
        came = False
        try:
            for decoded in frames:
                came = True
                yield decoded
        except DamagedStreamError:
            if not came or container.format.name != "mpjpeg" or self._format is not None:
                raise
            self._format = "mjpeg"
            log.warning(
                "[%s] %s: FFmpeg's multipart MJPEG demuxer lost its place between the camera's pictures (a "
                "part whose Content-Length is wrong): read with the mjpeg demuxer from now on, which finds each "
                "picture by its own markers; #format=mjpeg in the URI chooses it from the start",
                reading_stream.get(),
                self._described,
            )
            raise DamagedStreamError(
                "the multipart MJPEG demuxer lost its place between pictures (a part's Content-Length is wrong): "
                "reading it again with format=mjpeg"
            ) from None

    def _connect(self, stop: threading.Event) -> av.container.InputContainer:
        """The open container, its reads timed out at the stall bound.

        A live HLS stream waits between segments for longer than a camera between frames, and a slow
        camera between its frames too: without ``timeout``, such a stream's bound is learnt at a
        connection (`_paced_stall_timeout`: only once FFmpeg has read the stream is it known), which is
        then opened again with it (FFmpeg's read time-out is set at opening), and later ones open with it.
        The container is closed whatever goes wrong before it is handed on: each attempt that left
        one open kept its connection and FFmpeg's buffers for good. segcast's own look-ups at the
        server check its certificate as FFmpeg does (``trust``).
        """
        trust = self._trust()
        container = self._open(stop, trust)
        try:
            if self._timeout_given or self._learnt_stall_timeout_s is not None:
                return container
            paced_s = self._paced_stall_timeout(container, stop, trust)
            if paced_s is None:
                return container
            self._learnt_stall_timeout_s = paced_s
        except BaseException:
            container.close()
            raise
        container.close()
        return self._open(stop, trust)

    def _paced_stall_timeout(
        self, container: av.container.InputContainer, stop: threading.Event, trust: ssl.SSLContext | None
    ) -> float | None:
        """The stall bound the open ``container``'s pace needs, where it is longer than `STALL_TIMEOUT_S`;
        None where that will do.

        A live HLS stream's follows its playlist's target duration (`HLS_STALL_TARGET_DURATIONS`), read
        once. A live stream's other than that follows the frame rate it declares (`paced_stall_timeout`),
        read at each connection until one needs it: a camera set to a slower rate later is not missed.
        A finite video's own pauses between frames never count as a stall, so it needs none.
        """
        if is_live_hls(container):
            target_s = playlist_target_duration(
                self._url, self.open_timeout_s, self._host, stop, self._check_host, trust
            )
            return min(
                MAX_TIMEOUT_S,
                max(self.stall_timeout_s, HLS_STALL_TARGET_DURATIONS * (target_s or HLS_ASSUMED_TARGET_DURATION_S)),
            )
        stream = video_stream(container)
        if stream is None or (self.scheme in ("http", "https") and is_finite(container)):
            return None
        return paced_stall_timeout(frame_rate(container, stream), self.stall_timeout_s, MAX_TIMEOUT_S)

    def _trust(self) -> ssl.SSLContext | None:
        """The context segcast checks the server's certificate with, None where it is not checked; read
        afresh at each connection (a CA file may be replaced), in the reader's thread, as a video file is."""
        if not self._checks_certificate:
            return None
        try:
            return trusting(self._ca_file)
        except OSError as exc:  # `ssl.SSLError` too: a file that holds no certificate
            reason = (exc.reason if isinstance(exc, ssl.SSLError) else exc.strerror) or type(exc).__name__
            raise SourceError(
                f"ca_file={self._ca_file!r}: no CA certificates can be read from it ({reason}): give the path of "
                "a PEM file holding the certificate of the CA that signed the camera's"
            ) from None

    def _open(self, stop: threading.Event, trust: ssl.SSLContext | None) -> av.container.InputContainer:
        """The container FFmpeg opens at the URI, or where its redirects lead.

        A stream held to ``[server] deny_networks`` has FFmpeg follow no redirect (`av_options`): each one
        is followed here instead, its target checked as the URI's host is (`followed_redirect`), and
        opened in turn, up to `MAX_REDIRECTS` of them, from the URI again at every attempt.
        """
        if self._check_host is not None:
            self._check_host(self._host)
        url = self._url
        for _ in range(MAX_REDIRECTS + 1):
            started = time.monotonic()
            try:
                container = av.open(
                    url,
                    format=self._format,
                    options=self.av_options(),
                    timeout=(self.open_timeout_s, self._learnt_stall_timeout_s or self.stall_timeout_s),
                )
            except av.error.FFmpegError as exc:
                target = self._redirect(url, exc, started, stop, trust)
                if target is None:
                    raise opening_failure(exc, self._opening(), started, stop, trust) from None
                url = target
            else:
                self._opened_before = True
                return container
        raise SlowRetryError(
            f"more than {MAX_REDIRECTS} redirects from the camera (segcast follows at most {MAX_REDIRECTS} for a "
            "camera the API added): check the URL; retried slowly"
        )

    @property
    def _ffmpeg_follows_redirects(self) -> bool:
        """Whether FFmpeg follows redirects itself, unchecked: for the streams held to no ``deny_networks``
        (the config file's, ``--source``), and for the schemes other than HTTP's. RTSP's are followed so too
        (a ``3xx`` answer to ``DESCRIBE``): FFmpeg's RTSP client has no option against them, which the
        README's ``deny_networks`` says among what it does not cover."""
        return self._check_host is None or self.scheme not in ("http", "https")

    def _redirect(
        self,
        url: str,
        exc: av.error.FFmpegError,
        started: float,
        stop: threading.Event,
        trust: ssl.SSLContext | None,
    ) -> str | None:
        """Where FFmpeg's ``exc`` at ``url`` may be a redirect it was told not to follow, the URL that redirect
        leads to, checked (`followed_redirect`); None where ``url`` does not redirect.

        FFmpeg's word for a redirect beyond ``max_redirects`` is "Input/output error", as for much else:
        ``url`` is asked again to tell.
        """
        left_s = self.open_timeout_s - (time.monotonic() - started)
        if self._check_host is None or self._ffmpeg_follows_redirects or exc.errno != errno.EIO or left_s <= 0:
            return None
        return followed_redirect(url, self._url, Deadline.after(left_s, stop), self._check_host, trust)

    def _opening(self) -> Opening:
        """What an opening of this stream tries, for `opening_failure` to explain its failure by."""
        return Opening(
            url=self._url,
            scheme=self.scheme,
            host=self._host,
            port=self._connected_port,
            transport=self._transport,
            format=self._format,
            ca_file=self._ca_file,
            timeout_s=self.open_timeout_s,
            opened_before=self._opened_before,
            check_host=self._check_host,
        )


def _tls_options(uri: str, scheme: str) -> tuple[bool, str | None]:
    """Whether the server's certificate is checked, and against which CA file (None: the system's CAs),
    read from the options' text alone: the file is read at each connection (`NetworkSource._trust`).

    Read by `certificate_options`, as `unmask_uri` reads them: a secret given back to a URI as strictly
    checked is sent over a connection checked so."""
    given = certificate_options(uri)
    verify, ca_file = given.tls_verify, given.ca_file or None
    if verify not in ("", "0", "1"):
        raise SourceError(
            f"option tls_verify={verify!r} in {mask_uri(uri)!r}: use 1 (check the camera's TLS certificate) or 0"
        )
    if ca_file is not None and verify == "0":
        raise SourceError(f"{mask_uri(uri)!r}: ca_file checks the certificate, tls_verify=0 says not to: give one")
    if ca_file is not None and not os.path.isabs(ca_file):
        raise SourceError(f"option ca_file={ca_file!r} in {mask_uri(uri)!r}: give the CA file's absolute path")
    if given.checked and scheme not in TLS_PORTS:
        raise SourceError(
            f"{mask_uri(uri)!r}: tls_verify and ca_file are for https, rtsps and rtmps URLs; {scheme}:// is not "
            "encrypted, there is no certificate to check"
        )
    return given.checked, ca_file
