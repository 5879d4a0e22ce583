"""What a recorded file's stream says of the file itself: a copy cut short in any container whose header
states its length, and a start that could not be decoded, so that numbers from a part of the file are not
taken for the whole's; and the times in the video its track events happened at."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from server.frames import Frame
from server.options import StreamOptions
from server.sources import StreamState, open_source
from server.sources.decoding import _tag_seconds
from server.sources.file import FileSource
from server.tracking.stream import StreamTracker
from tests.support.detections import NAMES
from tests.support.reader_probe import ReaderProbe
from tests.support.rtsp_camera import write_camera_video
from tests.test_tracking import box_result

CLIP_FPS = 10
CLIP_S = 4.0
#: A key frame this often in the clip whose first pictures are damaged: all of them up to the next are lost.
KEY_FRAME_S = 2.0


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_camera_video(tmp_path_factory.mktemp("recordings") / "whole.mp4", CLIP_S, CLIP_FPS)


def ffmpeg(*args: str) -> bytes:
    """What FFmpeg run with ``args`` writes to its standard output."""
    command = ["ffmpeg", "-nostdin", "-v", "error", "-y", *args]
    return subprocess.run(command, check=True, capture_output=True, timeout=60).stdout


def remux(video: Path, path: Path, *options: str) -> Path:
    """``video``'s pictures as they are, in the container ``path``'s suffix names, with FFmpeg's ``options``."""
    ffmpeg("-i", str(video), "-c", "copy", *options, str(path))
    return path


def played_through(path: Path) -> FileSource:
    """``path``'s source, its frames all decoded, as its reader leaves it when the file ends."""
    source = open_source(str(path))
    assert isinstance(source, FileSource)
    for _ in source.open(threading.Event()):
        pass
    return source


def whole_in(kind: str, recording: Path, folder: Path) -> Path:
    """``recording`` whole, in the container ``kind`` names: those whose header states a length, with
    the ways that length is read wrong (timestamps that start later, a sound track that lasts longer).
    A Matroska file written to a pipe states its segment's length alone, where it is known ahead (``-t``):
    its muxer writes each track's by going back to the start, which a pipe cannot."""
    vp8 = ("-c:v", "libvpx", "-deadline", "realtime", "-b:v", "300k")
    if kind == "webm":
        path = folder / "whole.webm"
        ffmpeg("-i", str(recording), *vp8, str(path))
        return path
    if kind == "webm written to a pipe":
        path = folder / "piped.webm"
        path.write_bytes(ffmpeg("-i", str(recording), *vp8, "-t", str(CLIP_S), "-f", "webm", "pipe:1"))
        return path
    if kind == "mkv with a longer sound track":
        path = folder / "sound.mkv"
        sound = ("-f", "lavfi", "-i", f"sine=d={CLIP_S + 3}")
        ffmpeg("-i", str(recording), *sound, "-map", "0", "-map", "1", "-c:v", "copy", "-c:a", "libopus", str(path))
        return path
    offset = ("-output_ts_offset", "10") if "starting at 10 s" in kind else ()
    return remux(recording, folder / f"whole.{kind.split()[0]}", *offset)


@pytest.mark.parametrize("kind", ["mkv", "webm written to a pipe"])
def test_a_matroska_recording_cut_short_ends_saying_where_of_its_stated_length(
    kind: str, recording: Path, tmp_path: Path
) -> None:
    """Matroska states no length for a stream, only where it ends: a cut copy ended as if it were over,
    172 of 300 frames played and no word of it, where a cut MP4 said where it ended."""
    whole = whole_in(kind, recording, tmp_path)
    data = whole.read_bytes()
    cut = tmp_path / f"cut{whole.suffix}"
    cut.write_bytes(data[: round(len(data) * 0.4)])
    with ReaderProbe(str(cut)) as probe:
        ended = probe.wait_state(StreamState.ENDED, 10)

    assert 0 < ended.frames_read < 0.7 * CLIP_S * CLIP_FPS
    assert ended.error is not None
    assert ended.error.startswith("the video ended early, at "), ended.error
    assert f"of the {CLIP_S:.1f} s its header states" in ended.error


@pytest.mark.parametrize(
    "kind",
    [
        "mp4",
        "mkv",
        "webm",
        "webm written to a pipe",
        "mkv starting at 10 s",
        "ts starting at 10 s",
        "mkv with a longer sound track",
    ],
)
def test_a_whole_recording_ends_without_a_word_against_it(kind: str, recording: Path, tmp_path: Path) -> None:
    played = played_through(whole_in(kind, recording, tmp_path))
    assert played.ended_early is None


def damage_first_key_frame(video: Path, path: Path) -> Path:
    """``video`` with its first key frame's picture zeroed: nothing up to the next key frame decodes."""
    with av.open(str(video)) as container:
        first = next(packet for packet in container.demux(container.streams.video[0]) if packet.is_keyframe)
        assert first.pos is not None
        start, size = first.pos, first.size
    data = bytearray(video.read_bytes())
    data[start + 4 : start + size] = bytes(size - 4)  # its length field kept: the damage is in the picture
    path.write_bytes(data)
    return path


def test_a_file_whose_start_cannot_be_decoded_ends_saying_how_much_of_it_was_lost(tmp_path: Path) -> None:
    """A file whose first 83% could not be decoded played its last 17% and ended as if that were all
    of it, with only a line in the log about damaged packets."""
    video = write_camera_video(tmp_path / "whole.mp4", CLIP_S, CLIP_FPS, key_frame_s=KEY_FRAME_S)
    damaged = damage_first_key_frame(video, tmp_path / "damaged.mp4")
    with ReaderProbe(str(damaged)) as probe:
        ended = probe.wait_state(StreamState.ENDED, 10)

    assert ended.frames_read == (CLIP_S - KEY_FRAME_S) * CLIP_FPS
    assert ended.error is not None
    assert ended.error.startswith(f"its first {KEY_FRAME_S:.1f} s could not be decoded"), ended.error


def test_track_events_carry_the_video_time_of_their_frame_and_an_end_its_tracks_first() -> None:
    """A file's start and end events said only the wall clock of the machine that processed them: at
    ``#rate=max`` that is no time in the video, where its zone and line events say theirs."""
    image = np.zeros((240, 320, 3), np.uint8)
    tracker = StreamTracker("cam", NAMES, StreamOptions(), CLIP_FPS)
    seen_from, last_seen = 3, 22
    events = []
    for index in range(100):
        rows = [[10 + 4 * index, 50, 60 + 4 * index, 100, 0.9, 1]] if seen_from <= index <= last_seen else []
        media_time = 100 + index / CLIP_FPS  # far from the index and the wall clock: no other number passes for it
        frame = Frame("cam", index, 1_700_000_000.0, media_time, image)
        events += [(media_time, event.to_json()) for event in tracker.update(box_result(image, rows), frame)[1]]

    (started_at, start), (ended_at, end) = events
    assert (start["event"], start["media_time"], start["time"]) == ("start", started_at, 1_700_000_000.0)
    assert "first_media_time" not in start, "a start's is its own media_time"
    assert (end["event"], end["media_time"], end["first_media_time"]) == ("end", ended_at, started_at)
    assert end["first_media_time"] + end["age"] == pytest.approx(100 + last_seen / CLIP_FPS), "where it was last seen"


@pytest.mark.parametrize("tag", ["00:00:inf", "00:00:nan", "00:00:1e400", "\u0660\u0661:00:00.0", "00:00: 5", "N/A"])
def test_a_duration_tag_that_is_no_length_is_not_read_as_one(tag: str) -> None:
    """A Matroska duration tag is the muxer's text: ``float`` reads inf and nan (whose seconds cannot be
    said, which ended a whole file in a traceback and had it replayed as a lost connection) and digits of
    other scripts; none is a length."""
    assert _tag_seconds(tag) is None


def test_a_duration_tag_is_read_in_seconds() -> None:
    assert _tag_seconds("00:01:20.040000000") == pytest.approx(80.04)
    assert _tag_seconds("01:00:00") == 3600
