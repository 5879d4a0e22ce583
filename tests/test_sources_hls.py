"""Live HLS against a packager played by the test: segments of a recording listed one more each
segment's time, in a sliding window, as an encoder writing them would list them."""

from __future__ import annotations

import itertools
import math
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from server.sources import StreamState, network
from server.sources.http_answers import first_variant_uri, playlist_target_duration
from tests.support.mjpeg_server import MjpegServer
from tests.support.reader_probe import ReaderProbe
from tests.support.rtsp_camera import write_camera_video

FPS = 15
#: How many segments are listed when the reader first asks: FFmpeg starts a live playlist 3 from its end.
LISTED_AT_START = 3
#: Apple's recommended segment length, longer than a camera's default stall time-out (5 s).
APPLE_SEGMENT_S = 6.0

Recording = list[tuple[Path, float]]


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """8 HLS segments of 1 s."""
    return write_recording(tmp_path_factory.mktemp("hls-recording"), 8, 1.0)


@pytest.fixture(scope="module")
def apple_recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """2 HLS segments of `APPLE_SEGMENT_S`."""
    return write_recording(tmp_path_factory.mktemp("hls-apple-recording"), 2, APPLE_SEGMENT_S)


def write_recording(folder: Path, segments: int, segment_s: float) -> Recording:
    """The scene as ``segments`` HLS segments of ``segment_s`` (a key frame each second), with their durations."""
    video = write_camera_video(folder / "camera.mp4", segments * segment_s, FPS)
    with av.open(str(video)) as source, av.open(str(folder / "vod.m3u8"), "w", format="hls") as hls:
        hls.options.update({"hls_time": str(segment_s), "hls_playlist_type": "vod"})
        template = source.streams.video[0]
        output = hls.add_stream_from_template(template)
        for packet in source.demux(template):
            if packet.dts is not None:
                packet.stream = output
                hls.mux(packet)
    lines = (folder / "vod.m3u8").read_text().splitlines()
    return [
        (folder / name, float(info.partition(":")[2].rstrip(",")))
        for info, name in itertools.pairwise(lines)
        if info.startswith("#EXTINF:")
    ]


class LivePlaylist:
    """``live.m3u8`` in ``folder``: ``listed`` segments of the recording, then one more each time the
    last one listed has lasted its duration, the oldest leaving a window of ``window``; the playlist
    is replaced whole, as packagers do, so a reader never sees half of one."""

    def __init__(self, folder: Path, segments: Recording, listed: int = LISTED_AT_START, window: int = 5) -> None:
        self.folder = folder
        for path, _ in segments:
            shutil.copy(path, folder / path.name)
        self.segments = segments
        self.listed_at_start = listed
        self.window = window
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish, name="live-playlist", daemon=True)
        self._write(listed)

    def _write(self, listed: int) -> None:
        first = max(0, listed - self.window)
        shown = self.segments[first:listed]
        target = math.ceil(max(duration for _, duration in shown))
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        for path, duration in shown:
            lines += [f"#EXTINF:{duration:.6f},", path.name]
        partial = self.folder / "live.m3u8.partial"
        partial.write_text("\n".join(lines) + "\n")
        os.replace(partial, self.folder / "live.m3u8")

    def _publish(self) -> None:
        for listed in range(self.listed_at_start, len(self.segments)):
            if self._stop.wait(self.segments[listed][1]):  # the next segment is written meanwhile
                return
            self._write(listed + 1)

    def __enter__(self) -> LivePlaylist:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def live_hls(recording: Recording, tmp_path: Path) -> Iterator[str]:
    """The URL of a live HLS stream of 1 s segments, served over HTTP on 127.0.0.1."""
    with LivePlaylist(tmp_path, recording), MjpegServer(files=tmp_path) as server:
        yield server.url("/live.m3u8")


def played_past(probe: ReaderProbe, media_s: float) -> bool:
    return any(frame.media_time >= media_s for frame in probe.published)


def test_a_live_hls_stream_is_played_frame_by_frame_at_its_rate_not_a_segment_at_once(
    live_hls: str, recording: Recording
) -> None:
    """FFmpeg hands a whole segment over at once: unpaced, its frames reached the slot within a
    millisecond or two, the slot kept the newest, and viewers saw one frame a segment (8 in 8.9 s
    from a 15 fps stream). The backlog a live playlist starts with is read through at once; from
    the first segment the reader had to wait for, each frame comes at its time."""
    with ReaderProbe(live_hls, record=True) as probe:
        probe.wait_until("two segments past the backlog", lambda _: played_past(probe, 5.5), 20)
        status = probe.status()
    backlog_s = sum(duration for _, duration in recording[:LISTED_AT_START])
    live = [frame for frame in probe.published if frame.media_time >= backlog_s]

    assert status.state is StreamState.LIVE and status.reconnects == 0, status
    assert np.allclose(np.diff([frame.media_time for frame in live]), 1 / FPS), "every frame, in order"
    gaps = np.diff([frame.capture_time for frame in live])
    assert np.median(gaps) == pytest.approx(1 / FPS, rel=0.2), "most come a frame's time after the one before"
    # A segment's last frames wait in the decoder for the next segment; while FFmpeg, reading the
    # playlist a little later each time, settles a segment behind the packager, they come late, with it.
    bunched = int(np.sum(gaps < 0.25 / FPS))
    assert bunched <= len(gaps) // 3, f"{bunched} of {len(gaps)} frames came at once with the one before"


def test_a_live_hls_stream_of_six_second_segments_is_not_stalled_while_the_next_is_written(
    apple_recording: Recording, tmp_path: Path
) -> None:
    """Apple's 6 s segments kept a stream reconnecting for ever, each time reading the playlist again:
    the reader waits for the next one longer than the default stall time-out (5 s). Without
    ``#timeout``, the bound follows the playlist's target duration."""
    with (
        LivePlaylist(tmp_path, apple_recording, listed=1),
        MjpegServer(files=tmp_path) as server,
        ReaderProbe(server.url("/live.m3u8"), record=True) as probe,
    ):
        probe.wait_until("the next segment", lambda _: played_past(probe, APPLE_SEGMENT_S), 30)
        status = probe.status()

    assert status.reconnects == 0 and status.state is StreamState.LIVE, status
    assert network.STALL_TIMEOUT_S < APPLE_SEGMENT_S


def test_a_timeout_given_for_a_live_hls_stream_is_kept(live_hls: str) -> None:
    with ReaderProbe(live_hls + "#timeout=0.5") as probe:
        stalled = probe.wait_until("stalled", lambda s: s.reconnects >= 1, 20)
    assert stalled.error is not None and stalled.error.startswith("stalled"), stalled


Timeouts = list[tuple[float, float]]


@pytest.fixture
def opened_timeouts(monkeypatch: pytest.MonkeyPatch) -> Timeouts:
    """The (open, read) time-outs of each container segcast opens, in order: FFmpeg's read time-out is
    set at opening, so these are the bounds a stream was read under."""
    timeouts: Timeouts = []
    real_open = av.open

    def spied_open(*args: object, **kwargs: object) -> av.container.InputContainer:
        timeouts.append(kwargs["timeout"])  # type: ignore[arg-type]
        return real_open(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(av, "open", spied_open)
    return timeouts


def first_frame(url: str) -> None:
    """Reads one frame of ``url`` as a stream's reader would, then lets it go (its container closed with it)."""
    next(network.NetworkSource(url).open(threading.Event()))


def test_a_live_hls_stream_without_a_timeout_is_read_under_three_target_durations(
    apple_recording: Recording, tmp_path: Path, opened_timeouts: Timeouts
) -> None:
    target_s = math.ceil(apple_recording[0][1])
    with LivePlaylist(tmp_path, apple_recording, listed=1), MjpegServer(files=tmp_path) as server:
        first_frame(server.url("/live.m3u8"))

    first_opening = (network.OPEN_TIMEOUT_S, network.STALL_TIMEOUT_S)
    assert opened_timeouts == [first_opening, (network.OPEN_TIMEOUT_S, network.HLS_STALL_TARGET_DURATIONS * target_s)]


def test_the_read_time_out_of_a_live_hls_stream_with_a_long_target_duration_is_capped(
    recording: Recording, tmp_path: Path, opened_timeouts: Timeouts
) -> None:
    """Three of a 1000 s target duration would keep a stopped stream's thread in FFmpeg for 50 minutes.

    FFmpeg opening a playlist that lists one segment waits out the opening's time-out for the next: a
    second each here (``open_timeout``), not the default 10."""
    path, duration = recording[0]
    shutil.copy(path, tmp_path / path.name)
    (tmp_path / "live.m3u8").write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:1000\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:{duration:.6f},\n{path.name}\n"
    )
    with MjpegServer(files=tmp_path) as server:
        first_frame(server.url("/live.m3u8") + "#open_timeout=1")

    assert opened_timeouts == [(1.0, network.STALL_TIMEOUT_S), (1.0, network.MAX_TIMEOUT_S)]


def test_a_timeout_given_for_a_live_hls_stream_is_its_read_time_out_from_the_first_opening(
    live_hls: str, opened_timeouts: Timeouts
) -> None:
    """The stream is opened once, under the given time-out, never again under the playlist's bound."""
    first_frame(live_hls + "#timeout=2")
    assert opened_timeouts == [(network.OPEN_TIMEOUT_S, 2.0)]


def test_the_target_duration_of_a_master_playlist_is_its_variants(tmp_path: Path) -> None:
    (tmp_path / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\n\nlow/index.m3u8\n"
    )
    (tmp_path / "low").mkdir()
    (tmp_path / "low" / "index.m3u8").write_text("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.0,\na.ts\n")
    (tmp_path / "elsewhere.m3u8").write_text("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhttp://10.9.9.9/x.m3u8\n")
    with MjpegServer(files=tmp_path) as server:
        assert playlist_target_duration(server.url("/master.m3u8"), 5, "127.0.0.1") == 6
        assert playlist_target_duration(server.url("/low/index.m3u8"), 5, "127.0.0.1") == 6
        assert playlist_target_duration(server.url("/elsewhere.m3u8"), 5, "127.0.0.1") is None, "not followed"
        assert playlist_target_duration(server.url("/none.m3u8"), 5, "127.0.0.1") is None


def test_a_master_playlist_whose_first_variant_is_no_url_has_no_target_duration(tmp_path: Path) -> None:
    """Reading its URI raised ValueError past the reader's opening, at every attempt: the stream never
    played, though FFmpeg could play the next variant."""
    (tmp_path / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhttp://[bad/x.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2\nlow.m3u8\n"
    )
    with MjpegServer(files=tmp_path) as server:
        assert playlist_target_duration(server.url("/master.m3u8"), 5, "127.0.0.1") is None


def test_a_live_master_playlist_whose_first_variant_is_no_url_plays_its_next(
    recording: Recording, tmp_path: Path
) -> None:
    (tmp_path / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhttp://[bad/x.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2\nlive.m3u8\n"
    )
    with (
        LivePlaylist(tmp_path, recording),
        MjpegServer(files=tmp_path) as server,
        ReaderProbe(server.url("/master.m3u8")) as probe,
    ):
        live = probe.wait_state(StreamState.LIVE, 20)
    assert live.reconnects == 0, live


class ClosingSpy:
    """An open container, noting whether it was closed."""

    def __init__(self, container: av.container.InputContainer) -> None:
        self.container = container
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.container.close()

    def __getattr__(self, name: str) -> object:
        return getattr(self.container, name)


def test_a_container_opened_for_an_attempt_that_fails_before_reading_it_is_closed(
    live_hls: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error between opening a live playlist and handing it on (its target duration looked up)
    left the container open, with its connection and FFmpeg's buffers, at every attempt."""
    opened: list[ClosingSpy] = []
    real_open = av.open

    def spied_open(*args: object, **kwargs: object) -> ClosingSpy:
        opened.append(ClosingSpy(real_open(*args, **kwargs)))  # type: ignore[call-overload]
        return opened[-1]

    def broken_look_up(*args: object) -> float:
        raise RuntimeError("the look-up broke")

    monkeypatch.setattr(av, "open", spied_open)
    monkeypatch.setattr(network, "playlist_target_duration", broken_look_up)
    with pytest.raises(RuntimeError, match="the look-up broke"):
        next(network.NetworkSource(live_hls).open(threading.Event()))
    assert len(opened) == 1 and opened[0].closed


def test_the_first_variant_of_a_master_playlist_is_the_first_uri_after_its_first_stream_tag() -> None:
    master = (
        "#EXTM3U\r\n#EXT-X-VERSION:3\r\nignored.m3u8\r\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=800000\r\n\r\n#a comment\r\n  \r\nlow/index.m3u8  \r\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=1600000\r\nhigh/index.m3u8\r\n"
    )
    assert first_variant_uri(master) == "low/index.m3u8"
    assert first_variant_uri("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.0,\na.ts\n") is None, "a media playlist"


def test_a_stream_tag_followed_by_thousands_of_blank_lines_and_no_uri_has_no_variant() -> None:
    """A regular expression took time doubling with each blank line here (7.7 s for 27), holding the GIL:
    the reader's thread and every other thread of the server stopped while it ran."""
    assert first_variant_uri("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n" + "\n" * 5000) is None
