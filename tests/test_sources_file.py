"""Local files: looping at the native rate, batch reading, and files that are not video."""

from __future__ import annotations

import errno
import itertools
import logging
import os
import subprocess
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from server.sources import SourceError, StreamState, open_source
from server.sources.base import Decoded
from server.sources.decoding import UprightImages
from server.sources.file import MAX_LATE_FRAMES, FileSource, InOrder
from tests.support.reader_probe import ReaderProbe
from tests.support.rtsp_camera import write_camera_video
from tests.test_sources_http import write_faststart

CLIP_FPS = 10
CLIP_FRAMES = 10
SLOW_CLIP_FPS = 1
SLOW_CLIP_FRAMES = 12


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_camera_video(tmp_path_factory.mktemp("clips") / "clip.mp4", CLIP_FRAMES / CLIP_FPS, CLIP_FPS)


@pytest.fixture(scope="module")
def slow_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Few frames that would take long to play: whether they are paced shows whatever the machine's load."""
    folder = tmp_path_factory.mktemp("slow-clips")
    return write_camera_video(folder / "slow.mp4", SLOW_CLIP_FRAMES / SLOW_CLIP_FPS, SLOW_CLIP_FPS)


def test_looping_file_plays_again_and_again_with_time_running_on(clip: Path) -> None:
    with ReaderProbe(str(clip), loop_file=True) as probe:
        frames = [probe.next_frame(5)]
        while frames[-1].seq < 2.5 * CLIP_FRAMES:
            frames.append(probe.next_frame(5))
            status = probe.status()

    assert status.state is StreamState.LIVE and status.reconnects == 0
    # Per frame read, since a busy test may take only every other one from the slot.
    steps = [(b.media_time - a.media_time) / (b.seq - a.seq) for a, b in itertools.pairwise(frames)]
    assert steps == pytest.approx([1 / CLIP_FPS] * len(steps), abs=0.01), "one frame apart, across loops too"
    restarts = [frame.restarts for frame in frames]
    assert restarts == sorted(restarts) and restarts[0] == 0 and restarts[-1] >= 2, "each pass is counted"
    assert [state for state, _ in probe.announced] == [StreamState.LIVE]


@pytest.mark.parametrize("frames", [1, 3])
def test_a_looped_file_shows_its_last_frame_for_its_time_too(tmp_path: Path, frames: int) -> None:
    """A looped still image ran at ~1750 fps, and each loop of a clip lost one frame's time: the first
    frame of a pass came at once after the last of the one before."""
    short = write_camera_video(tmp_path / "short.mp4", frames / CLIP_FPS, CLIP_FPS)
    with ReaderProbe(str(short), loop_file=True) as probe:
        first = last = probe.next_frame(5)
        while last.restarts < 3:
            last = probe.next_frame(5)

    played = last.media_time - first.media_time
    assert played >= 3 * frames / CLIP_FPS - 1e-6, "each pass adds its frames' time to the media clock"
    # Never faster than its media time; half a frame's slack for the first frame's own hand-over.
    assert last.capture_time - first.capture_time >= played - 0.5 / CLIP_FPS


def test_file_without_loop_plays_at_its_native_rate_then_ends(clip: Path) -> None:
    started = time.monotonic()
    with ReaderProbe(str(clip)) as probe:
        ended = probe.wait_state(StreamState.ENDED, 10)
    took = time.monotonic() - started

    assert ended.frames_read == CLIP_FRAMES and ended.error is None, "played to the end its header states"
    assert took >= (CLIP_FRAMES - 1) / CLIP_FPS * 0.9, "paced like a camera, not decoded in a burst"


def test_rate_max_hands_over_every_frame_as_fast_as_they_are_taken(slow_clip: Path) -> None:
    source = open_source(f"{slow_clip}#rate=max")
    assert isinstance(source, FileSource) and source.batch
    started = time.monotonic()
    with ReaderProbe(source) as probe:
        seqs = [probe.next_frame(5).seq for _ in range(SLOW_CLIP_FRAMES)]
        ended = probe.wait_state(StreamState.ENDED, 5)

    assert seqs == list(range(SLOW_CLIP_FRAMES)), "batch mode drops nothing"
    assert ended.dropped == 0
    native_s = SLOW_CLIP_FRAMES / SLOW_CLIP_FPS
    assert time.monotonic() - started < native_s / 2, f"not paced: its native {native_s:.0f} s"


def write_ts_part(path: Path, start_s: float, frames: int) -> bytes:
    """``frames`` of MPEG-TS at `CLIP_FPS` whose timestamps start at ``start_s``: one recording of a DVR."""
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=CLIP_FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"tune": "zerolatency"}
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * index, np.uint8), format="bgr24")
            frame.pts = round(start_s * CLIP_FPS) + index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


@pytest.mark.parametrize(("first_s", "second_s"), [(30.0, 0.0), (0.0, 60.0)], ids=["back", "ahead"])
def test_recordings_joined_into_one_file_play_on_at_their_rate_across_the_jump(
    tmp_path: Path, first_s: float, second_s: float
) -> None:
    """Two .ts recordings joined end to end (``cat a.ts b.ts``) jump in time where they meet: one
    jumping back played its second part at once with its media time frozen, one jumping 60 s ahead
    showed its last picture for 60 s. Across the jump the file goes on one frame later, as across a loop."""
    frames = 8
    joined = tmp_path / "joined.ts"
    joined.write_bytes(
        write_ts_part(tmp_path / "first.ts", first_s, frames) + write_ts_part(tmp_path / "second.ts", second_s, frames)
    )
    with ReaderProbe(str(joined), record=True) as probe:
        ended = probe.wait_state(StreamState.ENDED, 10)
    played = probe.published[: 2 * frames]

    assert ended.frames_read == 2 * frames and ended.reconnects == 0
    steps = [b.media_time - a.media_time for a, b in itertools.pairwise(played)]
    assert steps == pytest.approx([1 / CLIP_FPS] * (2 * frames - 1)), "one frame apart, across the jump too"
    took = played[-1].capture_time - played[0].capture_time
    assert took >= (2 * frames - 1) / CLIP_FPS * 0.9, "paced like a camera on both sides of the jump"
    assert {frame.restarts for frame in played} == {0}, "the same pass through the file"


def test_a_raw_h264_file_plays_at_the_rate_its_encoder_wrote(tmp_path: Path) -> None:
    """Raw H.264 has no timestamps and no container: it played at FFmpeg's made-up 25 fps, not its 10."""
    raw = tmp_path / "camera.h264"
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size=64x48:rate={CLIP_FPS}", "-frames:v", "5", "-c:v", "libx264", str(raw))
    with ReaderProbe(str(raw), record=True) as probe:
        probe.wait_state(StreamState.ENDED, 10)
    played = probe.published[:5]

    assert probe.source.fps == CLIP_FPS
    steps = [b.media_time - a.media_time for a, b in itertools.pairwise(played)]
    assert steps == pytest.approx([1 / CLIP_FPS] * 4)


@pytest.mark.parametrize("fps", [5, 6, 8, 10, 12, 15, 20, 24, 25, 30])
def test_a_raw_h264_file_has_the_rate_its_encoder_wrote_whatever_it_is(tmp_path: Path, fps: int) -> None:
    """At 12 fps FFmpeg's guess was 24 (its made-up average, 25, came close to the stream's tick rate,
    24): the file played at double speed. The rate the encoder wrote into the stream comes first."""
    raw = tmp_path / "camera.h264"
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size=64x48:rate={fps}", "-frames:v", "4", "-c:v", "libx264", str(raw))
    source = open_source(str(raw))
    media_times = [decoded.media_time for decoded in source.open(threading.Event())]

    assert source.fps == fps
    assert media_times == pytest.approx([index / fps for index in range(4)])


def test_the_only_frame_of_a_video_is_still_there_for_a_busy_consumer_after_its_end(tmp_path: Path) -> None:
    """Under load (24 streams starting at once) inference took nothing within the frame's time, and
    the end marker, which repeats the last picture but never goes through the model, replaced it in
    the slot: `read 1 proc 0 drop 1`. No newer frame came, so none was stale."""
    video = write_camera_video(tmp_path / "one.mp4", 1 / CLIP_FPS, CLIP_FPS)
    with ReaderProbe(str(video)) as probe:
        ended = probe.wait_state(StreamState.ENDED, 10)
        last, marker, nothing = probe.slot.take(), probe.slot.take(), probe.slot.take()

    assert ended.frames_read == 1 and ended.dropped == 0
    assert last is not None and not last.ended and last.seq == 0
    assert marker is not None and marker.ended and nothing is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"this is a shopping list, not a video\n" * 20, "invalid data found"),
        (bytes(range(256)) * 64, "invalid data found"),
    ],
    ids=["text", "noise"],
)
def test_non_video_file_fails_with_a_readable_reason(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "camera.mp4"
    path.write_bytes(content)
    with pytest.raises(SourceError) as failure:
        first_frame(str(path))
    assert str(failure.value) == f"cannot open camera.mp4 as video: {reason} when processing input"


@pytest.mark.parametrize("where", ["in-pictures", "before-index", "in-index"])
def test_a_recording_cut_off_before_its_index_is_said_to_be_incomplete(clip: Path, tmp_path: Path, where: str) -> None:
    """A recorder writes an MP4's index (moov) last: one cut off leaves none, or only its start. FFmpeg
    said "invalid data found", as for a file that is no video at all, or the reader crashed on a
    stream without a decoder."""
    data = clip.read_bytes()
    index = data.rindex(b"moov") - 4  # where the index starts: after the pictures
    cut_at = {"in-pictures": index // 2, "before-index": index, "in-index": (index + len(data)) // 2}[where]
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:cut_at])
    with pytest.raises(SourceError) as failure:
        first_frame(str(cut))
    assert str(failure.value) == (
        "cannot open cut.mp4 as video: it looks incomplete, with no index (the MP4's moov box), "
        "as a recording is when its recorder was cut off before it finished"
    )


def test_an_empty_file_is_said_to_be_empty(tmp_path: Path) -> None:
    """It was "cannot open empty.mp4 as video: invalid data found when processing input"."""
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with ReaderProbe(str(empty)) as probe:
        failed = probe.wait_state(StreamState.FAILED, 5)
    assert failed.error == f"{empty} is empty (0 bytes): there is no video in it"


def cut_faststart(tmp_path: Path, seconds: float, kept: float) -> Path:
    """A recording of ``seconds`` at `CLIP_FPS` with its index first, cut after ``kept`` of its bytes: it
    opens, and its frames stop at the cut."""
    video = write_camera_video(tmp_path / "whole.mp4", seconds, CLIP_FPS)
    data = write_faststart(video, tmp_path / "faststart.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: round(len(data) * kept)])
    return cut


def test_a_recording_cut_short_ends_saying_where_of_its_stated_length(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One cut off after its index played a third of its frames and said only `ended`."""
    cut = cut_faststart(tmp_path, 4.0, 0.35)
    caplog.set_level(logging.WARNING, logger="server.sources.file")
    with ReaderProbe(str(cut), stream_id="yard") as probe:
        ended = probe.wait_state(StreamState.ENDED, 10)

    played_s = ended.frames_read / CLIP_FPS
    assert 0 < ended.frames_read < 0.6 * 4.0 * CLIP_FPS
    reason = (
        f"the video ended early, at {played_s:.1f} s of the 4.0 s its header states: the file is cut short "
        "(a recording cut off, or a copy that did not finish)"
    )
    assert ended.error == reason and probe.announced[-1] == (StreamState.ENDED, reason)
    told = [r.getMessage() for r in caplog.records if r.name == "server.sources.file" and "early" in r.getMessage()]
    assert told == [f"[yard] cut.mp4: {reason}"]


def test_a_looped_recording_cut_short_is_told_once_not_at_every_pass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cut = cut_faststart(tmp_path, 4.0, 0.3)
    caplog.set_level(logging.WARNING, logger="server.sources.file")
    with ReaderProbe(str(cut), loop_file=True) as probe:
        frame = probe.next_frame(10)
        while frame.restarts < 2:
            frame = probe.next_frame(10)

    told = [r.getMessage() for r in caplog.records if r.name == "server.sources.file" and "early" in r.getMessage()]
    assert len(told) == 1 and probe.status().state is StreamState.LIVE


def first_frame(uri: str) -> np.ndarray:
    """The first picture of ``uri``: the file is opened by `open`, in the reader's thread, not by `open_source`."""
    return next(open_source(uri).open(threading.Event())).image


def test_file_that_disappears_before_playing_fails(clip: Path, tmp_path: Path) -> None:
    copy = tmp_path / "gone.mp4"
    copy.write_bytes(clip.read_bytes())
    source = open_source(str(copy))
    copy.unlink()
    with ReaderProbe(source) as probe:
        failed = probe.wait_state(StreamState.FAILED, 5)
    assert failed.error == f"no such file: {copy}"


def test_a_missing_file_is_a_warning_when_its_stream_fails(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Said at INFO by its reader: with ``--log-level WARNING`` a typo in a --source path was silent."""
    caplog.set_level(logging.WARNING)
    with ReaderProbe(str(tmp_path / "typo.mp4")) as probe:
        probe.wait_state(StreamState.FAILED, 5)
    told = [r.getMessage() for r in caplog.records if r.name == "server.sources.reader"]
    assert told == [f"[cam] failed: no such file: {tmp_path}/typo.mp4"]


def test_a_hash_in_a_files_name_is_part_of_it_unless_the_files_options_follow_the_last_one(
    clip: Path, tmp_path: Path
) -> None:
    """Any ``key=value`` after a '#' was taken for options: ``a#b=c.mp4`` and a folder ``set#x=1`` were
    an unknown option, and ``clip #1.mp4#rate=max`` was looked for whole."""
    for name in (
        "a#b=c.mp4",
        "set#x=1/clip.mp4",
        "clip #1.mp4",
        "Tom#1&x=2.mp4",
        "Tom#1&rate=2.mp4",
        "take#rate=max.mp4",
    ):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(clip.read_bytes())
    cases = {
        f"{tmp_path}/a#b=c.mp4": ("a#b=c.mp4", False),
        f"{tmp_path}/set#x=1/clip.mp4": ("set#x=1/clip.mp4", False),
        f"{tmp_path}/Tom#1&x=2.mp4": ("Tom#1&x=2.mp4", False),
        f"{tmp_path}/Tom#1&rate=2.mp4": ("Tom#1&rate=2.mp4", False),  # options start with 'rate', as README says
        f"{tmp_path}/clip #1.mp4#rate=max": ("clip #1.mp4", True),
        f"file://{tmp_path}/take%23rate=max.mp4": ("take#rate=max.mp4", False),
    }
    for uri, (name, batch) in cases.items():
        source = open_source(uri)
        assert isinstance(source, FileSource)
        assert (source.path, source.batch) == (tmp_path / name, batch), uri
        assert first_frame(uri).size, uri
    # A file's option after the last '#' is read as options: a name that holds one is given as a URL.
    with pytest.raises(SourceError, match=r"rate='max\.mp4' .*given as a file:// URL, '#' as %23"):
        open_source(f"{tmp_path}/take#rate=max.mp4")


def test_an_unknown_rate_is_refused_by_name(clip: Path) -> None:
    """On a file that exists: the check of a missing file would otherwise answer first."""
    for uri in (f"{clip}#rate=ludicrous", f"file://{clip}#rate=ludicrous"):
        with pytest.raises(SourceError, match=r"rate='ludicrous' for .*clip\.mp4: use one of native, max"):
            open_source(uri)


def test_missing_file_is_named() -> None:
    with pytest.raises(SourceError, match=r"no such file: /nowhere/cam\.mp4"):
        first_frame("file:///nowhere/cam.mp4")


def test_a_cameras_address_without_its_colon_is_told_it_needs_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``rtsp//cam/live`` reads as a relative path (its ``//`` one slash): "no such file: rtsp/cam/live"
    sent people looking for a file."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        SourceError, match=r"^no such file: rtsp/cam/live \(a camera's address\? It needs '://': rtsp://cam/live\)$"
    ):
        first_frame("rtsp//cam/live")
    with pytest.raises(SourceError, match=r"^no such file: videos/cam\.mp4$"):
        first_frame("videos/cam.mp4")


def test_a_folder_or_a_pipe_is_named_for_what_it_is(tmp_path: Path) -> None:
    """A folder was "no such file", which sent people looking for a typo in a path that exists."""
    for uri in (str(tmp_path), f"file://{tmp_path}", f"{tmp_path}#rate=max"):
        with pytest.raises(SourceError, match=rf"^{tmp_path} is a folder: give the path of a video file in it$"):
            first_frame(uri)
    pipe = tmp_path / "feed.ts"
    os.mkfifo(pipe)
    with pytest.raises(SourceError, match=r"feed\.ts is not a regular file \(a pipe, socket or device\)"):
        first_frame(str(pipe))


def test_a_path_that_cannot_be_looked_at_is_a_source_error_that_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Path.is_file` let ENAMETOOLONG and EACCES out of `open_source`: a --source aborted the server at
    start (SIGABRT), and a POST or PATCH of the API answered 500 and left a stream with no reason."""
    long = tmp_path / ("a" * 300 + ".mp4")
    for uri in (str(long), f"file://{long}", f"{long}#rate=max"):
        with pytest.raises(SourceError, match=r"^cannot read /.*a\.mp4: File name too long$"):
            first_frame(uri)
    # A folder on the way it may not enter (not testable for real as root, who enters every folder).
    locked = tmp_path / "locked" / "cam.mp4"

    def refuse(path: Path, **_: object) -> os.stat_result:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(Path, "stat", refuse)
    with pytest.raises(SourceError, match=rf"^cannot read {locked}: Permission denied$"):
        first_frame(str(locked))


def test_a_file_of_frames_above_the_limit_is_refused_before_decoding(clip: Path) -> None:
    """The size in the file's header is enough: no picture is decoded to find out (320x192 > 256)."""
    source = open_source(str(clip), max_frame_side=256)
    with pytest.raises(SourceError, match=r"frames of 320x192 are larger than 256 pixels a side") as refused:
        next(source.open(threading.Event()))
    assert "scale the video down" in str(refused.value) and "camera" not in str(refused.value), "a file's own fix"


def test_a_video_of_frames_too_small_to_find_anything_in_fails(tmp_path: Path) -> None:
    """A 1x1 video stayed live for ever, every one of its frames an inference error."""
    path = tmp_path / "tiny.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 1, 1, "bgr0"
        for _ in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((1, 1, 3), np.uint8), format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with ReaderProbe(str(path), loop_file=True) as probe:
        failed = probe.wait_state(StreamState.FAILED, 10)
    assert failed.error is not None and "1x1 are smaller than 16 pixels" in failed.error
    assert failed.frames_read == 0


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, capture_output=True, timeout=60)


def write_picture(path: Path, image: np.ndarray) -> Path:
    """A video of one frame, ``image``, as H.264."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.height, stream.width = image.shape[:2]
        stream.pix_fmt = "yuv420p"
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def mark_rotation(video: Path, path: Path, degrees: int) -> Path:
    """``video`` marked to be turned ``degrees`` counter-clockwise for display, as phones mark theirs."""
    try:  # FFmpeg 6.1 and later
        ffmpeg("-display_rotation", str(degrees), "-i", str(video), "-c", "copy", str(path))
    except subprocess.CalledProcessError:  # earlier ones set the display matrix from the rotate tag
        ffmpeg("-i", str(video), "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", str(path))
    return path


def test_a_phone_video_stored_sideways_plays_upright(tmp_path: Path) -> None:
    """Phones store the picture as the sensor sees it and mark the turn to show it upright (the
    display matrix); played without it, people lay on their side and the model found little."""
    upright = np.full((32, 64, 3), (200, 0, 0), np.uint8)  # wide and blue, with a red top-left corner
    upright[:8, :16] = (0, 0, 255)
    sideways = write_picture(tmp_path / "sideways.mp4", np.ascontiguousarray(np.rot90(upright, -1)))
    phone = mark_rotation(sideways, tmp_path / "phone.mp4", 90)

    image = first_frame(str(phone))
    assert image.shape == upright.shape
    red = image[..., 2] > 150
    assert red[:8, :16].mean() > 0.9 and red[16:, :].mean() < 0.1, "the red corner is back at the top left"


def test_an_audio_file_with_cover_art_has_no_video_to_play(tmp_path: Path) -> None:
    """Its picture is a video stream marked as attached: it played as a one-frame video."""
    cover = tmp_path / "cover.png"
    cv2.imwrite(str(cover), np.full((32, 32, 3), 90, np.uint8))
    song = tmp_path / "song.m4a"
    ffmpeg(
        "-f", "lavfi", "-i", "sine=duration=1", "-i", str(cover), "-map", "0", "-map", "1",
        "-c:a", "aac", "-c:v", "mjpeg", "-disposition:v:0", "attached_pic", str(song),
    )  # fmt: skip
    with pytest.raises(SourceError, match=r"^song\.m4a has no video stream$"):
        first_frame(str(song))


def test_one_converter_for_a_decoding_loop_gives_each_frame_its_own_pixels_across_size_changes() -> None:
    """`UprightImages` keeps its scaler from frame to frame: each array must still be its own frame's
    (not a buffer the next conversion writes over), and a new size or pixel format must be converted as such."""
    rng = np.random.default_rng(3)
    frames = []
    sizes = [(64, 48, "yuv420p"), (64, 48, "yuv420p"), (96, 40, "yuv420p"), (64, 48, "yuvj422p")]
    for width, height, pixel_format in sizes:
        bgr = rng.integers(0, 256, (height, width, 3), np.uint8)
        frames.append(av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format=pixel_format))
    convert = UprightImages()
    images = [convert(frame) for frame in frames]
    for frame, image in zip(frames, images, strict=True):
        assert image.shape == (frame.height, frame.width, 3)
        assert np.array_equal(image, frame.to_ndarray(format="bgr24"))
    assert not np.array_equal(images[0], images[1])  # two different pictures of one size stayed two


def test_a_damaged_picture_of_an_mjpeg_file_is_skipped_not_shown_over_an_older_one(tmp_path: Path) -> None:
    """FFmpeg conceals a damaged JPEG with an older picture under its top; each picture stands alone,
    so it is skipped, as a damaged packet of any other file is."""
    video = tmp_path / "cam.avi"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mjpeg", rate=CLIP_FPS)
        stream.width, stream.height, stream.pix_fmt = 320, 192, "yuvj420p"
        for index in range(8):
            image = np.full((192, 320, 3), 20 + 25 * index, np.uint8)
            image[::8] = 235 - 25 * index  # the same stripes everywhere: top and bottom alike
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = bytearray(video.read_bytes())
    with av.open(str(video)) as container:
        position, size = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size][5]
    data[position + size // 3 : position + size] = bytes(size - size // 3)
    video.write_bytes(bytes(data))

    images = [decoded.image for decoded in FileSource(video, "max").open(threading.Event())]
    halves = [(float(image[:48].mean()), float(image[-48:].mean())) for image in images]
    assert len(images) == 7
    assert all(abs(top - bottom) < 5 for top, bottom in halves), halves


def test_damaged_packets_skipped_are_logged_with_the_streams_id(
    clip: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every other line a stream's reader writes starts with ``[stream-id]``; this one named the file only."""
    data = bytearray(clip.read_bytes())
    with av.open(str(clip)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size and p.pos]
    for position, size in packets[4:6]:  # past the first frames, which must decode for the file to count as video
        data[position + 4 : position + size] = b"\xff" * (size - 4)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, logger="server.sources.file")
    with ReaderProbe(str(damaged), stream_id="yard") as probe:
        probe.wait_state(StreamState.ENDED, 10)
    told = [r.getMessage() for r in caplog.records if r.name == "server.sources.file"]
    assert told == ["[yard] damaged.mp4: skipped 2 damaged packets"]


def write_moving_video(path: Path, frames: int) -> None:
    """A small H.264 MP4 with B-frames (libx264's defaults) of a bar moving across a brightening picture."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for index in range(frames):
            image = np.full((96, 128, 3), index * 3 % 256, np.uint8)
            image[30:60, index * 4 % 100 : index * 4 % 100 + 20] = 255
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_frames_a_damaged_files_decoder_hands_out_late_are_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After damage, FFmpeg's H.264 decoder let out the odd frame behind later ones (0.04 to 1 s): the
    picture stepped back for a frame, and each such frame restarted the file's pacing, so a damaged
    file played for longer than it lasts. Bytes flipped at random (seeds that make it happen here)."""
    clean = tmp_path / "clean.mp4"
    write_moving_video(clean, 100)
    caplog.set_level(logging.WARNING, logger="server.sources.file")
    for seed in (3, 8, 17):
        data = bytearray(clean.read_bytes())
        flips = np.random.default_rng(seed)
        for position in flips.integers(len(data) // 5, 4 * len(data) // 5, 20):
            data[position] = int(flips.integers(256))
        damaged = tmp_path / f"damaged-{seed}.mp4"
        damaged.write_bytes(bytes(data))
        times = [decoded.media_time for decoded in FileSource(damaged, "max").open(threading.Event())]
        assert times == sorted(times), f"seed {seed}: a frame behind one already handed out"
    late = [r.getMessage() for r in caplog.records if "handed out late" in r.getMessage()]
    assert late, "none of the seeds made a frame come late any more: pick others (tests/test_sources_file.py)"


@pytest.mark.parametrize(
    ("times", "passed"),
    [
        ([0.0, 0.1, 0.3, 0.2, 0.4], [0.0, 0.1, 0.3, 0.4]),  # one late frame: dropped
        ([0.0, 0.5, 0.1, 0.2, 0.6], [0.0, 0.5, 0.6]),  # a few, then the timeline goes on
        ([5.0, 5.1, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5], [5.0, 5.1, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5]),  # joined recordings
        ([5.0, 5.1, 0.0, 0.1], [5.0, 5.1, 0.0, 0.1]),  # the file ends before it can tell: as they came
        ([0.0, 0.1, 0.1, 0.2], [0.0, 0.1, 0.1, 0.2]),  # the same time twice is not late
    ],
    ids=["one-late", "a-few-late", "joined", "ends-early", "repeated"],
)
def test_in_order_drops_late_frames_and_keeps_a_timeline_that_goes_back(
    times: list[float], passed: list[float]
) -> None:
    in_order = InOrder()
    image = np.zeros((2, 2, 3), np.uint8)
    out = [d.media_time for t in times for d in in_order.admit(Decoded(image, t))] + [
        d.media_time for d in in_order.rest()
    ]
    assert out == passed
    assert in_order.dropped == len(times) - len(passed)


def test_as_many_late_frames_in_a_row_as_may_be_late_are_dropped_when_the_timeline_comes_back() -> None:
    in_order = InOrder()
    image = np.zeros((2, 2, 3), np.uint8)
    late = [0.1 * index for index in range(MAX_LATE_FRAMES)]
    passed = [[d.media_time for d in in_order.admit(Decoded(image, t))] for t in [5.0, *late, 6.0]]
    assert passed == [[5.0]] + [[]] * MAX_LATE_FRAMES + [[6.0]]
    assert in_order.dropped == MAX_LATE_FRAMES


def test_more_frames_back_in_time_in_a_row_than_may_be_late_are_passed_on_together() -> None:
    """That many in a row are a timeline that went back (recordings joined into one file), not late frames."""
    in_order = InOrder()
    image = np.zeros((2, 2, 3), np.uint8)
    back = [0.1 * index for index in range(MAX_LATE_FRAMES + 1)]
    passed = [[d.media_time for d in in_order.admit(Decoded(image, t))] for t in [5.0, *back, 6.0]]
    assert passed == [[5.0]] + [[]] * MAX_LATE_FRAMES + [back, [6.0]]
    assert in_order.dropped == 0
