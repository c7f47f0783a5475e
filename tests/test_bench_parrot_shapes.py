"""bench.parrot_shapes: held-out accuracy against the truth, with the verdicts behind it."""

from __future__ import annotations

import argparse

from bench.parrot_shapes import accuracy, teacher_spec
from models.critic.scoring import ScoringPolicy
from models.shapes.critic_shapes import ShapesCritic
from models.types import CritiqueFailure
from studio.parrot.pairs import shapes_pairs
from studio.parrot.teacher import build_critic


def test_accuracy_counts_the_verdicts_on_decisive_pairs_and_a_failed_parse_as_wrong():
    pairs = list(shapes_pairs(20, seed=5, flip_rate=0.0))
    decisive = [p for p in pairs if p.truth in ("A", "B")]
    results = ShapesCritic(perception_noise=0.0).judge([p.to_request() for p in pairs])
    exact = accuracy(results, pairs, ScoringPolicy())
    assert exact["n"] == len(decisive) > 5 and exact["accuracy"] == 1.0
    assert exact["verdicts"] == {"tie": 0, "A": sum(p.truth == "A" for p in decisive),
                                 "B": sum(p.truth == "B" for p in decisive), "failed": 0}
    first = next(i for i, p in enumerate(pairs) if p.truth in ("A", "B"))
    results[first] = CritiqueFailure(reason="unparseable")
    broken = accuracy(results, pairs, ScoringPolicy())
    assert broken["correct"] == exact["correct"] - 1 and broken["answered"] == exact["n"] - 1
    assert broken["verdicts"]["failed"] == 1


def test_the_teacher_words_per_object_verdicts_only_when_asked_and_judges_alike():
    plain = teacher_spec(argparse.Namespace(noise=0.2, teacher_verdicts=False))
    assert plain == {"backend": "shapes", "perception_noise": 0.2, "seed": 1}  # earlier runs' teacher, unchanged
    listed = teacher_spec(argparse.Namespace(noise=0.2, teacher_verdicts=True))
    requests = [p.to_request() for p in shapes_pairs(6, seed=2, flip_rate=0.0)]
    with_verdicts, without = build_critic(listed, "teacher").judge(requests), build_critic(plain, "teacher").judge(requests)
    assert [j.overall_winner for j in with_verdicts] == [j.overall_winner for j in without]
    assert all(" is drawn" in j.dimensions["text_faithfulness"].justification
               or " is wrong" in j.dimensions["text_faithfulness"].justification for j in with_verdicts)
