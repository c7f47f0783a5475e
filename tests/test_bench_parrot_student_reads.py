"""bench.parrot_student_reads: a student's critiques read back against the exact reference critic's."""

from __future__ import annotations

from bench.parrot_student_reads import (
    compare, image_clauses, request_analysis, stated_sightings, stated_verdicts, verdict_measures,
)
from models.critic.scoring import ScoringPolicy
from models.shapes.critic_shapes import ShapesCritic
from models.types import PairRequest
from studio.parrot.pairs import shapes_pairs


def _measures(student_swaps: bool) -> dict:
    pairs = list(shapes_pairs(16, seed=3, flip_rate=0.0))
    requests = [p.to_request() for p in pairs]
    swapped = [PairRequest(r.task, r.prompt, r.image_b, r.image_a, r.source_image) for r in requests]
    exact = ShapesCritic(perception_noise=0.0)
    truth, flipped = exact.judge(requests), exact.judge(swapped)
    student, student_swapped = (flipped, truth) if student_swaps else (truth, flipped)
    return compare(student, truth, student_swapped, [str(p.truth) for p in pairs], [p.prompt for p in pairs],
                   ScoringPolicy())


def test_a_student_that_writes_the_exact_critique_reads_everything_and_is_right_on_every_decisive_pair():
    measures = _measures(student_swaps=False)
    faithfulness = measures["dimensions"]["text_faithfulness"]
    assert measures["decisive"] > 8 and measures["failure"] == {"right": measures["decisive"]}
    assert sum(measures["decided_by"].values()) == measures["decisive"]
    assert (faithfulness["exact"], faithfulness["recall"], faithfulness["precision"]) == (1.0, 1.0, 1.0)
    assert faithfulness["flag_right"] == 1.0 and measures["swap_same"] == 1.0 and measures["request_copied"] == 1.0
    assert all(d["order_right"] == 1.0 for d in measures["dimensions"].values() if d["truth_differs"])


def test_a_student_that_mixes_up_the_two_images_is_a_perception_failure_on_every_decisive_pair():
    measures = _measures(student_swaps=True)
    faithfulness = measures["dimensions"]["text_faithfulness"]
    assert measures["failure"] == {"perception": measures["decisive"]}
    assert faithfulness["exact_other"] == 1.0 and faithfulness["exact"] < 1.0
    assert all(d["order_right"] == 0.0 for d in measures["dimensions"].values() if d["truth_differs"])
    assert measures["request_copied"] == 1.0  # it read the request, not the images


def test_justifications_split_into_each_images_clauses():
    assert image_clauses("Image A: The red circle is missing; the edges are blurred. Image B: Clean.") == (
        frozenset({"the red circle is missing", "the edges are blurred"}), frozenset({"clean"}))
    assert image_clauses("Both images are fine.") is None
    assert request_analysis("# User Request Analysis\nThe request asks for a red circle.\n# Detailed Judgement\n1.") \
        == "The request asks for a red circle."


def test_a_verdict_students_per_object_verdicts_are_read_against_the_truths_and_the_other_images():
    pairs = list(shapes_pairs(16, seed=3, flip_rate=0.0))
    requests = [p.to_request() for p in pairs]
    swapped = [PairRequest(r.task, r.prompt, r.image_b, r.image_a, r.source_image) for r in requests]
    exact = ShapesCritic(perception_noise=0.0, object_verdicts=True)
    truth, flipped = exact.judge(requests), exact.judge(swapped)
    right = verdict_measures(truth, truth)
    assert right["objects"] > 20 and (right["stated"], right["right"], right["wrong_found"], right["drawn_kept"]) == (
        1.0, 1.0, 1.0, 1.0)
    assert right["differs"] > 0 and right["other_image"] == 0.0
    mixed = verdict_measures(flipped, truth)  # each image's verdicts given to the other one
    assert mixed["other_image"] == 1.0 and mixed["right"] < 1.0 and mixed["stated"] == 1.0
    plain = verdict_measures(ShapesCritic(perception_noise=0.0).judge(requests), truth)
    assert plain["stated"] < 0.2  # the default wording names only what is wrong, never "is drawn" / "is wrong"
    assert stated_verdicts("the red circle is drawn; the blue square on the left is wrong. The blue square on the "
                           "left is drawn as a star.") == {"red circle": "drawn", "blue square on the left": "wrong"}
    assert "sightings_right" not in right


def test_a_sighting_students_sightings_are_scored_word_for_word():
    requests = [p.to_request() for p in shapes_pairs(16, seed=3, flip_rate=0.0)]
    sighted = ShapesCritic(perception_noise=0.0, object_sightings=True)
    truth = sighted.judge(requests)
    right = verdict_measures(truth, truth)
    assert (right["stated"], right["right"], right["sightings_right"], right["sightings_right_wrong"]) == (1.0,) * 4
    plain = verdict_measures(ShapesCritic(perception_noise=0.0, object_verdicts=True).judge(requests), truth)
    assert plain["right"] == 1.0 and plain["sightings_right"] == 0.0  # verdicts alone, no sighting written
    said = "the red circle (seen: red square) is wrong; the blue star on the left (seen: blue star on the left) is drawn"
    assert stated_verdicts(said) == {"red circle": "wrong", "blue star on the left": "drawn"}
    assert stated_sightings(said) == {"red circle": "red square", "blue star on the left": "blue star on the left"}
