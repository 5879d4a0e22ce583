"""tools/train_model.py: the bundled model's quoted mAP is measured on seeds nothing in training saw."""

from __future__ import annotations

from tools.train_model import TEST_SEEDS, TRAIN_SEEDS, VAL_SEEDS


def test_the_test_split_is_held_out_from_training_and_from_choosing_the_weights() -> None:
    """val picks each stage's best weights (and chose the schedule): only test is held out."""
    assert not set(TEST_SEEDS) & (set(TRAIN_SEEDS) | set(VAL_SEEDS))
    assert not set(TRAIN_SEEDS) & set(VAL_SEEDS)
