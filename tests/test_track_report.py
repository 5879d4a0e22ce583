"""The tracking scores of tools/track_report.py, on cases small enough to work out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from server.frames import Track
from server.scene import Scene
from tools.track_report import hota, score


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
