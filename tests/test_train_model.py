"""tools/train_model.py: the bundled model's quoted mAP is measured on seeds nothing in training saw."""

from __future__ import annotations

from tools.train_model import (
    OCCLUSION_TEST_SEEDS,
    OCCLUSION_TRAIN_SEEDS,
    OCCLUSION_VAL_SEEDS,
    TEST_SEEDS,
    TRAIN_SEEDS,
    VAL_SEEDS,
)


def test_the_test_split_is_held_out_from_training_and_from_choosing_the_weights() -> None:
    """val picks each stage's best weights (and chose the schedule): only test is held out."""
    assert not set(TEST_SEEDS) & (set(TRAIN_SEEDS) | set(VAL_SEEDS))
    assert not set(TRAIN_SEEDS) & set(VAL_SEEDS)


def test_the_occlusion_splits_are_disjoint_from_each_other_and_from_the_wander_ones() -> None:
    """A seed gives one scene per family, but a test split is only held out if no family's training used it."""
    splits = [TRAIN_SEEDS, VAL_SEEDS, TEST_SEEDS, OCCLUSION_TRAIN_SEEDS, OCCLUSION_VAL_SEEDS, OCCLUSION_TEST_SEEDS]
    seeds = [seed for split in splits for seed in split]
    assert len(seeds) == len(set(seeds))


def test_no_split_uses_the_seeds_the_tests_and_docs_score_on() -> None:
    """Tests and docs/benchmarks.md measure tracking on seeds below 100: no split may see them."""
    assert min(min(TRAIN_SEEDS), min(VAL_SEEDS), min(OCCLUSION_TRAIN_SEEDS), min(OCCLUSION_VAL_SEEDS)) >= 100
