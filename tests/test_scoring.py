"""Scoring policy: weights, normalisation, ties, pairwise winners, position consistency."""

from __future__ import annotations

import pytest

from models.critic import PairwiseJudgement, ScoringPolicy, position_consistency
from models.errors import ConfigError, InvalidInputError
from models.types import Critique, DimensionVerdict


def _critique(**scores) -> Critique:
    task = "edit" if "image_faithfulness" in scores else "t2i"
    return Critique(
        task=task, scores=scores, justifications={k: None for k in scores}, analysis=None, summary=None,
        refinement_comments=None, refined_request=None, overall=None, raw="",
    )


def _judgement(**dims: tuple) -> PairwiseJudgement:
    return PairwiseJudgement(
        task="t2i", dimensions={k: DimensionVerdict(*v) for k, v in dims.items()}, summary=None, raw=""
    )


def test_score_default_is_normalised_mean_of_present_dimensions():
    c = _critique(text_faithfulness=4.0, physical_quality=2.5, text_rendering=None)
    assert ScoringPolicy.default().score(c) == pytest.approx(((4 + 2.5) / 2 - 1) / 3)


@pytest.mark.parametrize("value, expected", [(1.0, 0.0), (4.0, 1.0), (2.5, 0.5)])
def test_score_bounds(value, expected):
    assert ScoringPolicy.default().score(_critique(text_faithfulness=value)) == pytest.approx(expected)


def test_score_none_when_nothing_counts():
    assert ScoringPolicy.default().score(_critique(text_faithfulness=None, text_rendering=None)) is None
    only_if = _critique(image_faithfulness=3.0, text_faithfulness=None)
    assert ScoringPolicy.rl_reward().score(only_if) is None


def test_rl_reward_leaves_image_faithfulness_out():
    c = _critique(text_faithfulness=4.0, image_faithfulness=1.0, physical_quality=4.0, text_rendering=None)
    assert ScoringPolicy.rl_reward().score(c) == pytest.approx(1.0)
    assert ScoringPolicy.default().score(c) == pytest.approx(((4 + 1 + 4) / 3 - 1) / 3)


def test_weights_are_applied():
    policy = ScoringPolicy(weights={"text_faithfulness": 3.0, "physical_quality": 1.0})
    c = _critique(text_faithfulness=4.0, physical_quality=1.0, text_rendering=1.0)
    assert policy.score(c) == pytest.approx(((3 * 4 + 1) / 4 - 1) / 3)


@pytest.mark.parametrize(
    "a, b, expected",
    [(3.0, 2.0, "A"), (2.0, 3.5, "B"), (3.0, 3.05, "tie"), (3.0, 3.0, "tie")],
)
def test_prefer_with_tie_tolerance(a, b, expected):
    policy = ScoringPolicy.default()  # 0.02 on [0, 1] = 0.06 on the 1-4 scale
    assert policy.prefer(_critique(text_faithfulness=a), _critique(text_faithfulness=b)) == expected


def test_prefer_refuses_a_critique_without_score():
    with pytest.raises(InvalidInputError, match="Critique B has no score"):
        ScoringPolicy.default().prefer(_critique(text_faithfulness=3.0), _critique(text_faithfulness=None))


def test_pairwise_winner_sums_scores_of_counted_dimensions():
    j = _judgement(
        text_faithfulness=(4.0, 2.0, "A"), physical_quality=(2.0, 3.5, "B"), text_rendering=(None, None, "tie")
    )
    assert ScoringPolicy.default().pairwise_winner(j) == "A"  # 6.0 vs 5.5
    only_quality = ScoringPolicy(weights={"physical_quality": 1.0})
    assert only_quality.pairwise_winner(j) == "B"


def test_pairwise_winner_tie_within_tolerance():
    j = _judgement(text_faithfulness=(3.0, 3.05, "B"))
    assert ScoringPolicy.default().pairwise_winner(j) == "tie"
    assert ScoringPolicy(tie_tolerance=0.0).pairwise_winner(j) == "B"


def test_pairwise_winner_falls_back_to_votes_without_scores():
    j = _judgement(
        text_faithfulness=(None, None, "B"), physical_quality=(None, 3.0, "B"), text_rendering=(None, None, "A")
    )
    assert ScoringPolicy.default().pairwise_winner(j) == "B"


def test_pairwise_winner_refuses_an_empty_judgement():
    with pytest.raises(InvalidInputError, match="cannot name a winner"):
        ScoringPolicy.default().pairwise_winner(_judgement(text_faithfulness=(None, None, None)))


def test_position_consistency_agreeing_orders():
    ab = _judgement(text_faithfulness=(4.0, 2.0, "A"))
    ba = _judgement(text_faithfulness=(2.0, 4.0, "B"))  # the same image wins from position B
    check = position_consistency(ab, ba)
    assert (check.winner_ab, check.winner_ba_mapped, check.consistent, check.final) == ("A", "A", True, "A")


def test_position_consistency_position_bias_becomes_tie():
    ab = _judgement(text_faithfulness=(4.0, 2.0, "A"))
    ba = _judgement(text_faithfulness=(4.0, 2.0, "A"))  # always prefers whatever comes first
    check = position_consistency(ab, ba)
    assert (check.winner_ab, check.winner_ba_mapped, check.consistent, check.final) == ("A", "B", False, "tie")
    assert position_consistency(ab, ba, on_inconsistent="ab").final == "A"


def test_position_consistency_ties_map_to_ties():
    tie = _judgement(text_faithfulness=(3.0, 3.0, "tie"))
    assert position_consistency(tie, tie).final == "tie" and position_consistency(tie, tie).consistent


def test_dict_round_trip():
    for policy in (ScoringPolicy.default(), ScoringPolicy.rl_reward(), ScoringPolicy(tie_tolerance=0.1, name="x")):
        assert ScoringPolicy.from_dict(policy.to_dict()) == policy


@pytest.mark.parametrize(
    "data, message",
    [
        ({"wieghts": None}, "Unknown scoring setting"),
        ({"weights": {"aesthetics": 1.0}}, "Unknown dimension"),
        ({"weights": {"text_faithfulness": -1.0}}, "finite number >= 0"),
        ({"weights": {"text_faithfulness": "high"}}, "finite number >= 0"),
        ({"weights": {"text_faithfulness": float("nan")}}, "finite number >= 0"),
        ({"tie_tolerance": -0.1}, "tie_tolerance"),
        ({"weights": [1, 2]}, "mapping"),
        ({"name": 3}, "name"),
    ],
)
def test_from_dict_rejects_bad_settings(data, message):
    with pytest.raises(ConfigError, match=message):
        ScoringPolicy.from_dict(data)
