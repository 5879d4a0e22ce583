"""Per-stream tracking, fed by a perfect detector (the scene's truth), so every failure is the tracker's."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
import torch
from ultralytics.engine.results import Results

from server.frames import Frame, FrameResult, Track, TrackEvent, TrackEventKind
from server.inference.detections import Detections
from server.options import SEGTRACK, StreamOptions, tracker_kinds
from server.scene import Scene, TrueObject
from server.tracking.stream import TRAIL_LENGTH, VELOCITY_WINDOW_S, StreamTracker, simplify
from tests.conftest import SCENE_FRAMES, SCENE_SEED
from tests.support.detections import NAMES, truth_detections
from tests.support.truth import mask_iou, polygon_mask
from tools.track_report import is_apart, match_boxes, score

FPS = 15.0
SLIVER_PX = 3  # an object showing less than this across has no outline to compare


def frame_at(scene: Scene, index: int, image: np.ndarray) -> Frame:
    return Frame("cam", index, 1_700_000_000.0 + index / scene.fps, index / scene.fps, image)


def run_truth(scene: Scene, tracker: StreamTracker, indices: range) -> list[tuple[int, tuple[Track, ...]]]:
    observed = []
    for index in indices:
        image, truths = scene.render(index)
        tracks, _ = tracker.update(truth_detections(image, truths), frame_at(scene, index, image))
        observed.append((index, tracks))
    return observed


def box_result(image: np.ndarray, rows: list[list[float]]) -> Detections:
    """Detections with rectangular masks filling their boxes: ``rows`` are x1, y1, x2, y2, conf, cls."""
    masks = torch.zeros((len(rows), *image.shape[:2]))
    for i, (x1, y1, x2, y2, _, _) in enumerate(rows):
        masks[i, int(y1) : int(y2), int(x1) : int(x2)] = 1
    boxes = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    return Detections.from_results(Results(image, "", NAMES, boxes=boxes, masks=masks))


def test_ids_follow_every_object_of_the_scene_one_to_one() -> None:
    scene = Scene(seed=SCENE_SEED)
    tracker = StreamTracker("cam", NAMES, StreamOptions(), FPS)
    result = score(scene, run_truth(scene, tracker, range(SCENE_FRAMES)))
    assert result.idf1 >= 0.97, result.line()
    assert result.switches_apart == 0, result.line()


@pytest.mark.parametrize("every", [2, 3])
def test_skipped_frames_do_not_break_tracking(every: int) -> None:
    """A worker that only gets to every 2nd or 3rd frame still keeps each object's id while it is apart."""
    scene = Scene(seed=SCENE_SEED)
    tracker = StreamTracker("cam", NAMES, StreamOptions(tracker="botsort"), FPS)
    result = score(scene, run_truth(scene, tracker, range(0, SCENE_FRAMES, every)))
    assert result.idf1 >= 0.9, result.line()
    assert result.switches_apart == 0, result.line()


def test_lost_track_buffer_follows_the_measured_processing_rate() -> None:
    """segtrack's track_buffer=150 (frames at 30 fps, as ultralytics counts) is 5 s: 25 updates at 5 processed fps."""
    scene = Scene(seed=SCENE_SEED)
    tracker = StreamTracker("cam", NAMES, StreamOptions(), FPS)
    assert tracker._tracker.max_frames_lost == 75  # the nominal rate, until frames are measured
    run_truth(scene, tracker, range(0, 60, 3))
    assert tracker.processing_fps == pytest.approx(5.0, rel=0.05)
    assert tracker._tracker.max_frames_lost == 25


def _moving_box(tracker: StreamTracker, times: list[float]) -> None:
    image = np.zeros((240, 320, 3), np.uint8)
    for index, media_time in enumerate(times):
        x = 20 + index % 200
        rows = [[x, 50, x + 40, 120, 0.9, 0]]
        tracker.update(box_result(image, rows), Frame("cam", index, 1_700_000_000.0 + media_time, media_time, image))


def test_a_stall_of_seconds_is_not_taken_for_the_streams_pace() -> None:
    """One 4 s stall counted whole made the rate 1.2 fps, and ByteTrack then kept a lost track for one
    frame: the object hidden for a moment just after came back with a new id."""
    tracker = StreamTracker("cam", NAMES, StreamOptions(tracker="bytetrack"), 30.0)
    steady = [index / 30 for index in range(60)]
    _moving_box(tracker, [*steady, steady[-1] + 4.0])
    assert tracker.processing_fps > 20
    assert tracker._tracker.max_frames_lost >= 20  # of 30: a second at 30 fps


def test_a_stream_processed_slower_than_a_frame_every_five_seconds_is_measured() -> None:
    """Gaps over 5 s were left out: such a stream kept its nominal 30 fps, and its tracker's windows,
    counted in frames, lasted minutes (segtrack kept a departed object's track for 15)."""
    tracker = StreamTracker("cam", NAMES, StreamOptions(), 30.0)
    _moving_box(tracker, [6.0 * index for index in range(60)])
    assert tracker.processing_fps == pytest.approx(1 / 6, rel=0.05)
    assert tracker._tracker.max_frames_lost == 1  # segtrack's 5 s, at least one frame


def test_track_buffer_override_is_a_time_at_thirty_fps() -> None:
    options = StreamOptions.from_mapping({"tracker_settings": {"track_buffer": 60}})
    tracker = StreamTracker("cam", NAMES, options, 10.0)
    assert tracker._tracker.max_frames_lost == 20  # 2 s at 10 fps


@pytest.mark.parametrize(("buffer", "kept"), [(None, True), (90, False)])
def test_an_object_hidden_for_four_seconds_keeps_its_id(buffer: int | None, kept: bool) -> None:
    """segtrack's default keeps a lost track 5 s: an object that goes behind something for 4 s and
    comes out where it was heading gets its id back (occlusion seed 11 has one hidden 3.07 s). With
    the old 3 s buffer its track is gone by then and it starts a new one."""
    settings = {"tracker_settings": {"track_buffer": buffer}} if buffer else {}
    tracker = StreamTracker("cam", NAMES, StreamOptions.from_mapping(settings), 10.0)
    image = np.zeros((240, 480, 3), np.uint8)
    image[:, :, 2] = 200  # a red scene: the object's colours are the same when it comes out
    ids = []
    for index in range(70):
        hidden = 20 <= index < 60  # 4 s at 10 fps
        rows = [] if hidden else [[10 + 4 * index, 50, 50 + 4 * index, 90, 0.9, 1]]
        tracks, _ = tracker.update(box_result(image, rows), Frame("cam", index, 1000.0 + index / 10, index / 10, image))
        ids.append({t.track_id for t in tracks})
    before, after = ids[19], ids[69]
    assert len(before) == len(after) == 1
    assert (before == after) is kept


def test_masks_stay_with_their_tracks_whatever_the_detection_order() -> None:
    scene = Scene(seed=SCENE_SEED)
    tracker = StreamTracker("cam", NAMES, StreamOptions(), FPS)
    rng = np.random.default_rng(0)
    owner: dict[int, int] = {}
    checked = 0
    for index in range(120, 220):
        image, truths = scene.render(index)
        shuffled = [truths[i] for i in rng.permutation(len(truths))]
        tracks, _ = tracker.update(truth_detections(image, shuffled), frame_at(scene, index, image))
        for i, j in match_boxes(truths, [t.box for t in tracks]):
            truth, track = truths[i], tracks[j]
            assert owner.setdefault(track.track_id, truth.object_id) == truth.object_id
            if min(truth.box[2] - truth.box[0], truth.box[3] - truth.box[1]) < SLIVER_PX:
                continue  # leaving the picture: too thin a mask for an outline (segtrack keeps its track)
            assert track.polygon is not None
            assert mask_iou(polygon_mask(track.polygon, image.shape[:2]), truth.mask) >= 0.9
            checked += 1
    assert checked >= 100


def test_a_track_starts_once_and_ends_after_its_object_leaves() -> None:
    image = np.zeros((240, 320, 3), np.uint8)
    tracker = StreamTracker("cam", NAMES, StreamOptions(), 10.0)
    events = []
    for index in range(80):
        rows = [[10 + 4 * index, 50, 60 + 4 * index, 100, 0.9, 1]] if index < 20 else []
        frame = Frame("cam", index, 1000.0 + index / 10, index / 10, image)
        _, new = tracker.update(box_result(image, rows), frame)
        events += [(index, event) for event in new]
    kinds = [(index, event.kind) for index, event in events]
    assert kinds[0] == (0, TrackEventKind.START)
    assert [k for _, k in kinds] == [TrackEventKind.START, TrackEventKind.END]
    end_index, end = events[1]
    # Last seen at frame 19 and kept as lost for segtrack's 5 s (50 updates at 10 fps).
    assert 19 + 50 <= end_index <= 19 + 52
    assert end.stream_id == "cam" and end.class_name == "square"
    assert end.age_s == pytest.approx(1.9)
    assert end.first_seen == pytest.approx(1000.0)
    assert end.box == pytest.approx((86.0, 50.0, 136.0, 100.0))


def test_a_file_played_again_starts_its_tracks_afresh() -> None:
    """A looped file's media time runs on across the jump back to its start, but its scene starts over:
    an object parked in the same place at the end and at the start must not keep its id and its age."""
    image = np.zeros((240, 320, 3), np.uint8)
    parked = [[100, 80, 160, 140, 0.9, 1]]
    tracker = StreamTracker("cam", NAMES, StreamOptions(), 10.0)
    passes: list[list[tuple[tuple[Track, ...], tuple[TrackEvent, ...]]]] = [[], []]
    for index in range(40):
        played = index // 20
        frame = Frame("cam", index, 1000.0 + index / 10, index / 10, image, restarts=played)
        passes[played].append(tracker.update(box_result(image, parked), frame))

    first, second = passes
    assert {t.track_id for tracks, _ in first for t in tracks} == {1}
    # As docs/protocol.md orders a frame's events: starts first, then ends.
    assert [(e.kind, e.track_id) for e in second[0][1]] == [(TrackEventKind.START, 2), (TrackEventKind.END, 1)]
    assert {t.track_id for tracks, _ in second for t in tracks} == {2}, "a new id, none used before"
    assert max(t.age_s for tracks, _ in second for t in tracks) == pytest.approx(1.9), "its age starts again"


@pytest.mark.parametrize("kind", tracker_kinds())
def test_every_tracker_keeps_a_lost_track_for_its_buffer_in_media_time(kind: str) -> None:
    """Processed at 5 fps, a track lost is kept for ``track_buffer`` / 30 s as at any other rate
    (tracktrack keeps its buffer under another name: it kept 6 s).

    segtrack, ours, ends it on the frame after its buffer, exactly. Ultralytics' trackers drop it then
    too but keep it in ``lost_stracks`` for one more update (``merge_track_pools`` takes out only the
    tracks dropped before): their end is held to a window of two frames, as their internals may change.
    """
    fps = 5.0
    options = StreamOptions(tracker=kind)
    tracker = StreamTracker("cam", NAMES, options, fps)
    buffer_frames = round(float(options.tracker_config()["track_buffer"]) / 30 * fps)
    image = np.full((192, 320, 3), 90, np.uint8)
    ended = None
    for index in range(100):
        rows = [[50 + index, 50, 110 + index, 110, 0.9, 0]] if index < 20 else []
        _, events = tracker.update(
            box_result(image, rows), Frame("cam", index, 1000.0 + index / fps, index / fps, image)
        )
        if any(e.kind is TrackEventKind.END for e in events):
            ended = index
            break
    assert ended is not None, "the track never ended"
    if kind == SEGTRACK:
        assert ended - 19 == buffer_frames + 1, (buffer_frames, ended - 19)
    else:
        assert buffer_frames <= ended - 19 <= buffer_frames + 2, (kind, buffer_frames, ended - 19)


@pytest.mark.parametrize(
    ("kind", "gap_s", "kept"),
    [("segtrack", 4.0, True), ("segtrack", 600.0, False), ("bytetrack", 3.0, True), ("bytetrack", 8.0, False)],
)
def test_tracks_end_when_the_video_stops_for_longer_than_the_lost_track_buffer(
    kind: str, gap_s: float, kept: bool
) -> None:
    """A camera back after an outage longer than the tracker keeps a lost track (segtrack 5 s,
    ByteTrack 1 s, but at least 5 s: a shorter stall is ridden out) shows a new scene: its tracks end
    there and start anew, with new ids and ages. The tracker itself counts the gap as one frame and
    would carry them across it."""
    image = np.zeros((240, 320, 3), np.uint8)
    tracker = StreamTracker("cam", NAMES, StreamOptions(tracker=kind), 10.0)
    parked = [[100, 80, 160, 140, 0.9, 1]]
    for index in range(20):
        tracker.update(box_result(image, parked), Frame("cam", index, 1000.0 + index / 10, index / 10, image))
    back = 1.9 + gap_s
    tracks, events = tracker.update(box_result(image, parked), Frame("cam", 20, 1000.0 + back, back, image))
    (track,) = tracks
    if kept:
        assert (track.track_id, events) == (1, ())
        assert track.age_s == pytest.approx(back)
    else:
        assert [(e.kind, e.track_id) for e in events] == [(TrackEventKind.START, 2), (TrackEventKind.END, 1)]
        assert (track.track_id, track.age_s) == (2, 0.0)
        assert events[1].age_s == pytest.approx(1.9), "its age does not count the outage"


@pytest.mark.parametrize("kind", ["segtrack", "bytetrack"])
def test_a_box_that_is_not_a_number_is_no_detection(kind: str) -> None:
    """A model gone wrong gives NaN or infinite boxes: the object beside them is still tracked, and what
    goes to viewers is JSON a browser parses (no NaN in it)."""
    image = np.zeros((240, 320, 3), np.uint8)
    tracker = StreamTracker("cam", NAMES, StreamOptions(tracker=kind), 10.0)
    rows = [[np.nan, 80, 160, 140, 0.9, 1], [10, 10, np.inf, 50, 0.8, 0], [200, 100, 260, 180, 0.9, 0]]
    for index in range(3):
        tracks, events = tracker.update(
            Detections(np.array(rows, np.float32)), Frame("cam", index, 1000.0 + index / 10, 0.1 * index, image)
        )
        assert [track.box for track in tracks] == [(200.0, 100.0, 260.0, 180.0)]
        json.dumps([track.to_json() for track in tracks] + [event.to_json() for event in events], allow_nan=False)


def test_a_camera_away_again_right_after_an_outage_ends_its_tracks_again() -> None:
    """A flapping camera gives a frame between outages: the long gap before it is no measure of the
    stream's pace, so the next outage is one too."""
    image = np.zeros((240, 320, 3), np.uint8)
    tracker = StreamTracker("cam", NAMES, StreamOptions(), 10.0)
    parked = [[100, 80, 160, 140, 0.9, 1]]
    ended: list[int] = []
    for index, seconds in enumerate([0.0, 0.1, 0.2, 30.0, 80.0, 80.1]):
        _, events = tracker.update(box_result(image, parked), Frame("cam", index, 1000.0 + seconds, seconds, image))
        ended += [index for e in events if e.kind is TrackEventKind.END]
    assert ended == [3, 4]


@pytest.mark.parametrize(("kind", "every_s"), [("bytetrack", 2.0), ("bytetrack", 6.0), ("segtrack", 6.0)])
def test_a_stream_processed_slower_than_its_lost_track_buffer_keeps_its_ids(kind: str, every_s: float) -> None:
    """ByteTrack keeps a lost track 1 s and segtrack 5 s, but a 30 fps camera processed every 2 or 6 s
    (an overloaded machine) is no outage on every frame: at any rate a lost track is kept one frame."""
    image = np.zeros((240, 320, 3), np.uint8)
    tracker = StreamTracker("cam", NAMES, StreamOptions(tracker=kind), 30.0)
    ids: set[int] = set()
    for index in range(10):
        rows = [[100 + 2 * index, 80, 160 + 2 * index, 140, 0.9, 1]]
        seconds = every_s * index + 0.1 * (index % 2)  # with some jitter
        tracks, _ = tracker.update(box_result(image, rows), Frame("cam", index, 1000.0 + seconds, seconds, image))
        ids |= {t.track_id for t in tracks}
    assert ids == {1}


def test_a_tracker_that_follows_another_ends_its_tracks_and_goes_on_with_its_ids() -> None:
    """A stream restarted with new settings: the old tracker's tracks end on the new one's first frame
    (after its starts, as on any frame), and the new ids come after the old ones."""
    image = np.zeros((240, 320, 3), np.uint8)
    old = StreamTracker("cam", NAMES, StreamOptions(), 10.0)
    two = [[20, 20, 80, 80, 0.9, 0], [200, 20, 260, 80, 0.9, 1]]
    for index in range(5):
        old.update(box_result(image, two), Frame("cam", index, 1000.0 + index / 10, index / 10, image))
    new = StreamTracker("cam", NAMES, StreamOptions(tracker="bytetrack", conf=0.5), 10.0, follows=old)
    tracks, events = new.update(box_result(image, two), Frame("cam", 0, 2000.0, 0.0, image))
    assert sorted(t.track_id for t in tracks) == [3, 4]
    assert [(e.kind, e.track_id) for e in events] == [
        (TrackEventKind.START, 3),
        (TrackEventKind.START, 4),
        (TrackEventKind.END, 1),
        (TrackEventKind.END, 2),
    ]
    assert events[2].age_s == pytest.approx(0.4) and events[2].box == (20.0, 20.0, 80.0, 80.0)
    _, later = new.update(box_result(image, two), Frame("cam", 1, 2000.1, 0.1, image))
    assert later == ()


class _LogLines(logging.Handler):
    """The messages of a logger that does not propagate (ultralytics')."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("kind", ["segtrack", "botsort"])
def test_a_frame_size_change_ends_every_track_and_starts_the_tracker_afresh(kind: str) -> None:
    """A sender that halves its resolution mid-stream (WebRTC adapting to the link, a camera
    reconfigured): boxes, trails and velocities on the old scale say nothing of the new frames, so
    every track ends there as on a looped file's restart, and ids go on. BoT-SORT's camera-motion
    estimate must not compare frames of two sizes either (it warns "GMC failed" on every frame)."""
    scene = Scene(seed=SCENE_SEED)
    tracker = StreamTracker("cam", NAMES, StreamOptions(tracker=kind), scene.fps)
    ultralytics_log, lines = logging.getLogger("ultralytics"), _LogLines()
    ultralytics_log.addHandler(lines)
    halved: list[tuple[tuple[Track, ...], tuple[TrackEvent, ...]]] = []
    try:
        for index in range(60, 70):
            image, truths = scene.render(index)
            if index >= 65:
                height, width = image.shape[0] // 2, image.shape[1] // 2
                image = cv2.resize(image, (width, height))
                truths = [_halved(truth, (width, height)) for truth in truths]
            tracks, events = tracker.update(truth_detections(image, truths), frame_at(scene, index, image))
            if index == 64:
                before = {t.track_id for t in tracks}
            if index >= 65:
                halved.append((tracks, events))
    finally:
        ultralytics_log.removeHandler(lines)
    assert before
    first_tracks, first_events = halved[0]
    new_ids = {t.track_id for t in first_tracks}
    assert new_ids and min(new_ids) > max(before), "new ids, going on after the old ones"
    ends = sorted(e.track_id for e in first_events if e.kind is TrackEventKind.END)
    starts = sorted(e.track_id for e in first_events if e.kind is TrackEventKind.START)
    assert (starts, ends) == (sorted(new_ids), sorted(before))
    for n, (tracks, _) in enumerate(halved):
        assert all(len(t.trail) == n + 1 for t in tracks), "no point of the old scale in a trail"
    assert all(events == () for _, events in halved[1:])
    assert not [m for m in lines.messages if "GMC failed" in m]


def _halved(truth: TrueObject, size: tuple[int, int]) -> TrueObject:
    box = (truth.box[0] // 2, truth.box[1] // 2, truth.box[2] // 2, truth.box[3] // 2)
    mask = cv2.resize(truth.mask.astype(np.uint8), size).astype(bool)
    return TrueObject(truth.object_id, truth.class_id, box, mask, truth.occluded_fraction)


def test_velocity_is_in_pixels_per_second_of_media_time() -> None:
    image = np.zeros((240, 320, 3), np.uint8)
    tracker = StreamTracker("cam", NAMES, StreamOptions(), 10.0)
    for index in range(12):  # 6 px per frame at 10 fps, moving right and up
        rows = [[20 + 6 * index, 150 - 3 * index, 70 + 6 * index, 200 - 3 * index, 0.9, 0]]
        tracks, _ = tracker.update(box_result(image, rows), Frame("cam", index, 0.0, index / 10, image))
    (track,) = tracks
    assert track.velocity == pytest.approx((60.0, -30.0), abs=2.0)
    assert track.age_s == pytest.approx(1.1)
    assert len(track.trail) == 12 and track.trail[-1] == (45 + 66, 175 - 33)


def test_a_trail_keeps_the_newest_centroids_only() -> None:
    """A track followed for 100 frames carries its last `TRAIL_LENGTH` centroids, not all of them:
    every frame's metadata sends the whole trail to every viewer."""
    image = np.zeros((240, 320, 3), np.uint8)
    tracker = StreamTracker("cam", NAMES, StreamOptions(), 10.0)
    for index in range(100):
        rows = [[20 + 2 * index, 50, 70 + 2 * index, 100, 0.9, 0]]
        tracks, _ = tracker.update(box_result(image, rows), Frame("cam", index, 0.0, index / 10, image))
    (track,) = tracks
    assert len(track.trail) == TRAIL_LENGTH
    assert track.trail[0] == (45 + 2 * (100 - TRAIL_LENGTH), 75) and track.trail[-1] == (45 + 2 * 99, 75)


@pytest.mark.parametrize("kind", ["segtrack", "bytetrack"])
def test_a_detection_exactly_at_the_streams_conf_is_reported(kind: str) -> None:
    """The model keeps a score equal to ``conf`` as its own float32 numbers hold them (0.7 is 0.69999999):
    the tracker's rows are judged the same way, or such an object would be tracked but never shown."""
    image = np.zeros((240, 320, 3), np.uint8)
    tracker = StreamTracker("cam", NAMES, StreamOptions(conf=0.7, tracker=kind), 10.0)
    shown = []
    for index in range(5):
        rows = [[40 + 2 * index, 50, 90 + 2 * index, 100, 0.7, 0]]
        tracks, _ = tracker.update(box_result(image, rows), Frame("cam", index, 0.0, index / 10, image))
        shown.append(len(tracks))
    assert shown[-1] == 1, shown


def test_velocity_follows_a_turn_within_its_window() -> None:
    """Right at 60 px/s for 1.5 s, then down at 60 px/s for 1 s: the velocity is the recent motion
    (over `VELOCITY_WINDOW_S`), straight down, not the mean over the whole trail (right and down)."""
    image = np.zeros((240, 320, 3), np.uint8)
    tracker = StreamTracker("cam", NAMES, StreamOptions(), 10.0)
    x, y = 20, 20
    for index in range(25):
        x, y = (x + 6, y) if index < 15 else (x, y + 6)
        rows = [[x, y, x + 50, y + 50, 0.9, 0]]
        tracks, _ = tracker.update(box_result(image, rows), Frame("cam", index, 0.0, index / 10, image))
    (track,) = tracks
    assert VELOCITY_WINDOW_S < 1.0, "the last second's motion fills the window"
    assert len(track.trail) == 25
    assert track.velocity == pytest.approx((0.0, 60.0), abs=2.0)


def test_class_filter_and_confidence_are_applied_per_stream() -> None:
    image = np.zeros((240, 320, 3), np.uint8)
    rows = [[10, 10, 60, 60, 0.9, 0], [100, 10, 150, 60, 0.9, 1], [200, 10, 250, 60, 0.3, 2]]
    picky = StreamTracker("a", NAMES, StreamOptions(classes=("disc", "triangle"), conf=0.5), 10.0)
    tracks, _ = picky.update(box_result(image, rows), Frame("a", 0, 0.0, 0.0, image))
    assert [t.class_name for t in tracks] == ["disc"]
    with pytest.raises(ValueError, match="classes: the model has no class 'person'"):
        StreamTracker("b", NAMES, StreamOptions(classes=("person",)), 10.0)


@pytest.mark.parametrize("kind", ["bytetrack", "segtrack"])
def test_a_streams_max_det_keeps_its_most_confident_detections_in_any_order(kind: str) -> None:
    """`Detections` promise no order (ultralytics' NMS happens to sort them; another backend need not):
    capped at 2, a stream keeps its two most confident detections, not the first two."""
    image = np.zeros((240, 320, 3), np.uint8)
    rows = [[10, 10, 60, 60, 0.3, 0], [100, 10, 150, 60, 0.9, 0], [200, 10, 250, 60, 0.95, 0]]
    tracker = StreamTracker("a", NAMES, StreamOptions(max_det=2, tracker=kind), 10.0)
    tracks, _ = tracker.update(box_result(image, rows), Frame("a", 0, 0.0, 0.0, image))
    assert sorted(t.confidence for t in tracks) == pytest.approx([0.9, 0.95])


def test_weak_detections_carry_a_reported_track_through_a_turn() -> None:
    """Partly hidden objects score low: the tracker must still get them (down to its low threshold).

    The object runs right, turns down while it scores 0.15 (under the stream's conf 0.25), and scores
    high again. Fed only the reported detections, the tracker would predict it further right, lose it
    and give it a new id; fed the weak ones too, it follows the turn, and its track stays reported
    through the weak frames with the weak detections' confidence and boxes.
    """
    image = np.zeros((480, 640, 3), np.uint8)
    tracker = StreamTracker("cam", NAMES, StreamOptions(conf=0.25), 15.0)
    x, y, reported = 50.0, 50.0, []
    for index in range(30):
        strong = not 10 <= index < 20
        x, y = (x + 6, y) if index < 10 else (x, y + 6) if index < 20 else (x + 6, y)
        rows = [[x, y, x + 60, y + 60, 0.9 if strong else 0.15, 0]]
        tracks, _ = tracker.update(box_result(image, rows), Frame("cam", index, 0.0, index / 15.0, image))
        (track,) = tracks
        assert track.confidence == pytest.approx(0.9 if strong else 0.15), index
        assert track.box == pytest.approx((x, y, x + 60, y + 60)), index
        reported.append(track.track_id)
    assert len(set(reported)) == 1, reported


def test_a_track_is_first_reported_at_the_streams_conf() -> None:
    """conf 0.5: an object scoring 0.3 is tracked (the tracker starts tracks from 0.25) but not
    reported; from the first frame it scores 0.9 it is, and then also at 0.3 again, under the same id."""
    image = np.zeros((480, 640, 3), np.uint8)
    tracker = StreamTracker("cam", NAMES, StreamOptions(conf=0.5), 15.0)
    confidences = [0.3] * 5 + [0.9] * 3 + [0.3] * 5
    reported: list[list[int]] = []
    for index, confidence in enumerate(confidences):
        x = 50.0 + 4 * index
        rows = [[x, 50, x + 60, 110, confidence, 0]]
        tracks, _ = tracker.update(box_result(image, rows), Frame("cam", index, 0.0, index / 15.0, image))
        reported.append([t.track_id for t in tracks])
    assert reported[:5] == [[]] * 5
    assert all(len(ids) == 1 for ids in reported[5:]), reported
    assert len({ids[0] for ids in reported[5:]}) == 1, reported


def test_a_weak_detection_inside_a_confident_one_is_a_duplicate_not_a_hidden_object() -> None:
    """Weak detections reach the tracker for partly hidden objects, which stick out of what hides them;
    one inside a confident box is the model seeing part of that object again, and is dropped."""
    image = np.zeros((240, 320, 3), np.uint8)
    tracker = StreamTracker("cam", NAMES, StreamOptions(conf=0.25), 15.0)
    rows = [
        [100, 100, 200, 200, 0.9, 0],
        [110, 110, 190, 180, 0.15, 0],  # inside the first: a duplicate
        [180, 60, 240, 110, 0.15, 1],  # mostly outside it: a partly hidden object
    ]
    kept, _ = tracker._select(box_result(image, rows), image.shape)
    assert kept.confidence.tolist() == pytest.approx([0.9, 0.15])
    assert kept.boxes[1, 0] == 180


def test_a_confident_part_of_an_object_is_a_duplicate_but_an_object_in_its_box_corner_is_not() -> None:
    """The model often sees a partly hidden object whole and once more as its upper part, boxes that
    NMS keeps apart (IoU under 0.7): each would keep a track of its own and the two would trade the
    object. Judged by mask: a second object in the corner of a disc's box is not inside the disc."""
    image = np.zeros((240, 320, 3), np.uint8)
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
    disc = (xs - 150) ** 2 + (ys - 150) ** 2 <= 50**2  # box 100..200
    upper = disc & (ys < 160)  # box 100..200 x 100..160: 60 % of the disc's box, IoU 0.6
    corner = (xs >= 100) & (xs < 118) & (ys >= 100) & (ys < 118)  # inside the disc's box, barely in the disc

    def kept(rows: list[list[float]], masks: list[np.ndarray]) -> list[float]:
        boxes = torch.tensor(rows, dtype=torch.float32)
        result = Results(image, "", NAMES, boxes=boxes, masks=torch.tensor(np.array(masks), dtype=torch.float32))
        tracker = StreamTracker("cam", NAMES, StreamOptions(conf=0.25), 15.0)
        return tracker._select(Detections.from_results(result), image.shape)[0].confidence.tolist()

    whole = [100, 100, 200, 200, 0.9, 0]
    assert kept([whole, [100, 100, 200, 160, 0.5, 0]], [disc, upper]) == pytest.approx([0.9])
    assert kept([whole, [100, 100, 118, 118, 0.5, 0]], [disc, corner]) == pytest.approx([0.9, 0.5])
    # Another class, or the part the more confident of the two: not judged a duplicate.
    assert kept([whole, [100, 100, 200, 160, 0.5, 1]], [disc, upper]) == pytest.approx([0.9, 0.5])
    assert kept([[*whole[:4], 0.5, 0], [100, 100, 200, 160, 0.9, 0]], [disc, upper]) == pytest.approx([0.5, 0.9])


@pytest.mark.parametrize("kind", ["segtrack", "bytetrack"])
def test_a_weak_object_inside_a_confident_one_of_a_class_the_stream_does_not_track_keeps_its_track(
    kind: str,
) -> None:
    """A stream of squares: a square partly hidden by a big disc scores low and its box lies inside the
    disc's. The disc is nothing the stream tracks, so the square is no part of it: the duplicate rule
    dropped it all the same, and the square's track was lost while it stayed in view."""
    tracker = StreamTracker("cam", NAMES, StreamOptions(tracker=kind, classes=("square",)), 10.0)

    def square(bottom: int) -> np.ndarray:
        return np.array([[200, 100], [240, 100], [240, bottom], [200, bottom]], np.float32)

    disc = cv2.ellipse2Poly((225, 130), (75, 70), 0, 0, 360, 5).astype(np.float32)
    clear = np.full((240, 320, 3), 90, np.uint8)
    clear[100:140, 200:240] = (0, 0, 255)
    hidden = np.full((240, 320, 3), 90, np.uint8)
    cv2.ellipse(hidden, (225, 130), (75, 70), 0, 0, 360, (255, 0, 0), -1)
    hidden[100:130, 200:240] = (0, 0, 255)
    reported = []
    for index in range(12):
        if index < 4:
            image, rows, outlines = clear, [[200, 100, 240, 140, 0.9, 1]], [square(140)]
        else:  # its lower part behind the disc: weak, and its box inside the disc's
            image, rows, outlines = (
                hidden,
                [[200, 100, 240, 130, 0.2, 1], [150, 60, 300, 200, 0.9, 0]],
                [square(130), disc],
            )
        detections = Detections(np.array(rows, np.float32), lambda i, outlines=outlines: outlines[i])
        tracks, _ = tracker.update(detections, Frame("cam", index, 1000.0 + index / 10, index / 10, image))
        reported.append([(t.track_id, t.class_name) for t in tracks])
    assert reported == [[(1, "square")]] * 12, reported


def test_a_part_of_an_object_as_confident_as_the_whole_is_still_a_duplicate() -> None:
    """Only a *more* confident detection could hold a part: at equal confidence (half precision rounds
    them) both were kept, and two ids traded the object while it stayed partly hidden."""
    image = np.zeros((240, 320, 3), np.uint8)
    tracker = StreamTracker("cam", NAMES, StreamOptions(), 15.0)
    whole, part = [50, 50, 150, 200, 0.8, 0], [50, 50, 150, 110, 0.8, 0]  # a person and its upper part
    for rows in ([whole, part], [part, whole]):
        assert tracker._select(box_result(image, rows), image.shape)[0].boxes[:, :4].tolist() == [whole[:4]], rows


def test_a_box_of_no_area_is_no_detection() -> None:
    """segtrack, unlike ultralytics' trackers, reported such boxes as tracks."""
    image = np.zeros((240, 320, 3), np.uint8)
    tracker = StreamTracker("cam", NAMES, StreamOptions(), 15.0)
    rows = [[50, 50, 50, 50, 0.9, 0], [60, 60, 10, 10, 0.9, 1], [100, 100, 140, 150, 0.9, 2]]
    tracks, _ = tracker.update(box_result(image, rows), Frame("cam", 0, 1_700_000_000.0, 0.0, image))
    assert [track.box for track in tracks] == [(100.0, 100.0, 140.0, 150.0)]


@pytest.mark.parametrize("kind", tracker_kinds())
def test_every_ultralytics_tracker_keeps_ids_on_a_clear_object(kind: str) -> None:
    scene = Scene(seed=SCENE_SEED)
    tracker = StreamTracker("cam", NAMES, StreamOptions(tracker=kind), FPS)
    ids: dict[int, set[int]] = {}
    for index, tracks in run_truth(scene, tracker, range(40, 100)):
        truths = scene.render(index)[1]
        for i, j in match_boxes(truths, [t.box for t in tracks]):
            if is_apart(truths[i], truths, scene.width, scene.height):
                ids.setdefault(truths[i].object_id, set()).add(tracks[j].track_id)
    assert ids and all(len(found) == 1 for found in ids.values()), ids


def test_simplified_outline_stays_within_a_pixel() -> None:
    circle = np.array([[100 + 40 * np.cos(a), 100 + 40 * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 400)])
    polygon = simplify(circle.astype(np.float32))
    assert polygon is not None and 8 < len(polygon) < 100
    shape = (200, 200)
    assert mask_iou(polygon_mask(polygon, shape), polygon_mask(circle, shape)) >= 0.97


def test_a_result_that_replaces_an_undelivered_one_keeps_its_events() -> None:
    image = np.zeros((240, 320, 3), np.uint8)
    tracker = StreamTracker("cam", NAMES, StreamOptions(), 10.0)
    results = []
    for index in range(2):
        frame = Frame("cam", index, index / 10, index / 10, image)
        tracks, events = tracker.update(box_result(image, [[10, 10, 60, 60, 0.9, 0]]), frame)
        results.append(FrameResult(frame, tracks, 1.0, events))
    first, second = results
    assert [e.kind for e in first.events] == [TrackEventKind.START] and not second.events
    merged = second.replacing(first)
    assert merged.frame.seq == 1 and merged.events == first.events
    assert merged.metadata_json()["events"] == [first.events[0].to_json()]


def test_a_result_that_replaces_an_undelivered_one_tells_the_older_events_first() -> None:
    """A viewer reading the merged events in order must see a track start before it ends."""
    image = np.zeros((240, 320, 3), np.uint8)

    def result(seq: int, kind: TrackEventKind) -> FrameResult:
        event = TrackEvent(kind, "cam", 1, 0, "disc", seq / 10, 0.0, seq / 10, (10.0, 10.0, 60.0, 60.0))
        return FrameResult(Frame("cam", seq, seq / 10, seq / 10, image), (), 1.0, (event,))

    merged = result(1, TrackEventKind.END).replacing(result(0, TrackEventKind.START))
    assert [event["event"] for event in merged.metadata_json()["events"]] == ["start", "end"]


def test_a_one_frame_class_flicker_does_not_relabel_a_track_but_a_lasting_change_does() -> None:
    image = np.zeros((240, 320, 3), np.uint8)
    tracker = StreamTracker("cam", NAMES, StreamOptions(), 10.0)
    classes = [0] * 10 + [2] + [0] * 5 + [1] * 6
    names = []
    for index, class_id in enumerate(classes):
        rows = [[10 + 2 * index, 10, 60 + 2 * index, 60, 0.8, class_id]]
        tracks, _ = tracker.update(box_result(image, rows), Frame("cam", index, 0.0, index / 10, image))
        names.append(tracks[0].class_name)
    assert names[:16] == ["disc"] * 16
    assert names[-1] == "square"


@pytest.mark.parametrize(
    "settings",
    [
        {"conf": 0.15},
        {"conf": 0.05},
        # ByteTrack weighs a match by the detection's confidence too (fuse_score): a faint object's
        # best match then falls short of match_thresh, frame after frame.
        {"conf": 0.15, "tracker": "bytetrack", "tracker_settings": {"fuse_score": False}},
    ],
    ids=["segtrack-0.15", "segtrack-0.05", "bytetrack-unfused"],
)
def test_a_conf_lowered_for_faint_objects_reports_them(settings: dict[str, object]) -> None:
    """Before, tracks started only from the tracker's own 0.25: a distant object scoring 0.2 in
    every frame was never reported, whatever lower ``conf`` the stream asked for."""
    options = StreamOptions.from_mapping(settings)
    stream = StreamTracker("cam", NAMES, options, 15.0)
    reported = 0
    for index in range(30):
        image = np.full((240, 320, 3), 90, np.uint8)
        x = 20 + 3 * index
        faint = Detections(np.array([[x, 100, x + 30, 130, 0.2, 0]], np.float32))
        tracks, _ = stream.update(faint, Frame("cam", index, 0.0, index / 15, image))
        reported += len(tracks)
    assert reported >= 28, f"{reported} of 30 frames"  # from its first or second detection on


def test_start_thresholds_set_by_the_stream_are_kept_under_a_lower_conf() -> None:
    options = StreamOptions.from_mapping({"conf": 0.1, "tracker_settings": {"new_track_thresh": 0.4}})
    config = options.tracker_config()
    assert config["new_track_thresh"] == 0.4 and config["track_high_thresh"] == 0.1
    assert StreamOptions.from_mapping({"conf": 0.6}).tracker_config()["new_track_thresh"] == 0.25
