"""``bench.paired``: paired per-item differences, their interval and the sign test."""

from __future__ import annotations

import pytest

from bench.paired import paired_difference
from studio.evaluation.summary import sign_test_p, wilson_interval


def test_sign_test_on_hand_made_counts() -> None:
    assert sign_test_p(8, 0) == pytest.approx(2 / 256)  # every changed item went one way
    assert sign_test_p(5, 5) == 1.0 and sign_test_p(0, 0) == 1.0
    assert sign_test_p(3, 1) == pytest.approx(2 * (1 + 4) / 16)  # P(X <= 1) of Bin(4, 1/2), both tails
    assert sign_test_p(1, 3) == sign_test_p(3, 1)


def test_a_change_the_unpaired_intervals_miss_is_clear_when_paired() -> None:
    """200 scenes, 100 right before; after, 12 more right and none lost: the two Wilson intervals
    overlap, but item by item the gain is certain."""
    before = [True] * 100 + [False] * 100
    after = [True] * 112 + [False] * 88
    low_after, high_before = wilson_interval(112, 200)[0], wilson_interval(100, 200)[1]
    assert low_after < high_before
    result = paired_difference(after, before)
    assert result["difference_points"] == 6.0 and result["gained"] == 12 and result["lost"] == 0
    assert result["ci95_points"][0] > 0 and result["sign_test_p"] < 0.001


def test_equal_gains_and_losses_give_an_interval_around_zero() -> None:
    before = [True] * 20 + [False] * 20 + [True] * 60
    after = [False] * 20 + [True] * 20 + [True] * 60
    result = paired_difference(after, before)
    assert result["difference_points"] == 0.0 and result["gained"] == result["lost"] == 20
    low, high = result["ci95_points"]
    assert low < 0 < high and result["sign_test_p"] == 1.0


def test_per_item_shares_of_several_runs_are_paired_too() -> None:
    """Two runs' per-scene outcomes averaged (0, 0.5 or 1) against one before."""
    result = paired_difference([1.0, 0.5, 0.5, 0.0], [0, 0, 1, 0])
    assert result["difference_points"] == 25.0 and (result["gained"], result["lost"]) == (2, 1)


def test_arms_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="same, non-zero number"):
        paired_difference([1, 0], [1])
    with pytest.raises(ValueError):
        paired_difference([], [])
