"""The tracking scores of tools/track_report.py, on cases small enough to work out by hand."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest

import tools.track_report as track_report
from server.frames import Track
from server.inference.detections import Detections
from server.options import StreamOptions
from server.scene import Scene, TrueObject
from tools.track_report import TrackingScore, hota, score


def test_hota_of_a_track_that_changes_id_halfway_is_one_over_root_two() -> None:
    # One object, found perfectly in both frames, under two ids: DetA 1, AssA 1/2 at every alpha.
    frames = [([1], [10], np.array([[1.0]])), ([1], [11], np.array([[1.0]]))]
    result = hota(frames)
    assert (result.deta, result.assa, result.loca) == pytest.approx((1.0, 0.5, 1.0))
    assert result.hota == pytest.approx(1 / math.sqrt(2))


def test_hota_counts_a_loose_box_only_up_to_its_iou_and_charges_a_false_track() -> None:
    # Frame 2: the right track at IoU 0.62 and a second track on nothing. For the 12 thresholds
    # 0.05 ... 0.60 both frames match: DetA 2/3, AssA 1. For the 7 from 0.65 only frame 1 does:
    # DetA 1/(2 + 3 - 1), AssA 1/(2 + 2 - 1).
    frames = [([1], [10], np.array([[1.0]])), ([1], [10, 20], np.array([[0.62, 0.0]]))]
    expected = (12 * math.sqrt(2 / 3) + 7 * math.sqrt(1 / 4 * 1 / 3)) / 19
    assert hota(frames).hota == pytest.approx(expected)


def test_hota_of_no_tracks_is_zero() -> None:
    assert hota([([1, 2], [], np.zeros((2, 0)))]).hota == 0.0


def truth_tracks(scene: Scene, indices: range, relabel_from: int | None = None) -> list[tuple[int, list[Track]]]:
    """Tracks exactly on the truth; from frame ``relabel_from`` every id is shifted (one switch each)."""
    observed = []
    for index in indices:
        shift = 500 if relabel_from is not None and index >= relabel_from else 0
        tracks = [
            Track(
                t.object_id + shift,
                t.class_id,
                t.class_name,
                0.9,
                tuple(map(float, t.box)),
                None,
                (),
                (0.0, 0.0),
                0.0,
                0.0,
            )
            for t in scene.render(index)[1]
        ]
        observed.append((index, tracks))
    return observed


def test_score_of_perfect_tracks_is_perfect_in_every_visibility_band() -> None:
    scene = Scene(seed=21, family="occlusion", period_frames=300)
    result = score(scene, truth_tracks(scene, range(60, 120)))
    assert (result.hota, result.idf1, result.mota, result.switches) == (pytest.approx(1.0), 1.0, 1.0, 0)
    assert [name for name, _, _ in result.id_recall] == ["visible", "partly hidden", "mostly hidden"]
    assert all(recall == 1.0 for _, recall, _ in result.id_recall)


def test_score_of_ids_that_all_change_halfway_shows_in_hota_idf1_and_id_recall() -> None:
    scene = Scene(seed=21, family="occlusion", period_frames=300)
    result = score(scene, truth_tracks(scene, range(60, 120), relabel_from=90))
    assert result.switches >= 3
    assert result.hota < 0.8 and result.idf1 < 0.8
    assert all(recall < 0.8 for _, recall, _ in result.id_recall)


class HandMadeScene:
    """A stand-in for `Scene`: the truth of each frame given by hand, and a blank picture."""

    width, height, fps = 640, 384, 15

    def __init__(self, truths: list[list[TrueObject]]) -> None:
        self.truths = truths

    def render(self, index: int) -> tuple[np.ndarray, list[TrueObject]]:
        return np.zeros((self.height, self.width, 3), np.uint8), self.truths[index]


BOX = (100, 100, 150, 150)


def truth(object_id: int, hidden: float = 0.0) -> TrueObject:
    return TrueObject(object_id, 0, BOX, np.zeros((1, 1), bool), hidden)


def track(track_id: int) -> Track:
    x1, y1, x2, y2 = BOX
    return Track(track_id, 0, "disc", 0.9, (float(x1), float(y1), float(x2), float(y2)), None, ())


def score_by_hand(truths: list[list[TrueObject]], track_ids: list[list[int]]) -> TrackingScore:
    tracks = [[track(k) for k in ids] for ids in track_ids]
    return score(cast(Scene, HandMadeScene(truths)), list(enumerate(tracks)))


def test_an_id_change_made_while_partly_hidden_is_no_switch_while_apart() -> None:
    # Apart with 7, then 40% hidden (7, then 9), then apart again with 9.
    truths = [[truth(1)]] * 3 + [[truth(1, hidden=0.4)]] * 3 + [[truth(1)]] * 3
    result = score_by_hand(truths, [[7]] * 4 + [[9]] * 5)
    assert (result.switches, result.switches_apart) == (1, 0)


def test_an_object_back_in_the_picture_under_a_new_id_has_no_switch_while_apart() -> None:
    truths = [[truth(1)]] * 3 + [[]] * 5 + [[truth(1)]] * 3
    result = score_by_hand(truths, [[7]] * 3 + [[]] * 5 + [[9]] * 3)
    assert (result.switches, result.switches_apart) == (1, 0)


def test_every_id_change_while_apart_is_a_switch_while_apart() -> None:
    result = score_by_hand([[truth(1)]] * 8, [[7]] * 2 + [[9]] * 2 + [[7]] * 2 + [[9]] * 2)
    assert (result.switches, result.switches_apart) == (3, 3)


@pytest.mark.parametrize(
    ("truths", "track_ids"),
    [([[]] * 3, [[7]] * 3), ([[]] * 3, [[]] * 3), ([], [])],
    ids=["false tracks only", "empty frames", "no frames"],
)
def test_scores_without_any_truth_are_trackeval_zeros_shown_as_not_applicable(
    truths: list[list[TrueObject]], track_ids: list[list[int]]
) -> None:
    result = score_by_hand(truths, track_ids)
    # TrackEval's values: motmetrics divides by the number of truth boxes (NaN, or -inf with false tracks).
    assert (result.hota, result.mota, result.idf1) == (0.0, 0.0, 0.0)
    assert "HOTA n/a  MOTA n/a  IDF1 n/a" in result.line()


def test_track_scene_leaves_the_predictors_set_up_out_of_the_time_per_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]

    def detect(model: object, images: list[np.ndarray], **kwargs: object) -> list[Detections]:
        clock[0] += 2.0 if clock[0] == 0.0 else 0.05  # the first call sets the predictor up
        return [Detections.empty()]

    monkeypatch.setattr(track_report, "detect", detect)
    monkeypatch.setattr(track_report, "time", SimpleNamespace(perf_counter=lambda: clock[0], time=time.time))
    model = SimpleNamespace(names={0: "disc"}, overrides={"imgsz": 640})
    scene = cast(Scene, HandMadeScene([[]] * 4))

    result = track_report.track_scene(model, scene, 4, StreamOptions())

    assert result.frames == 4
    assert result.mean_ms == pytest.approx(50.0)
