"""Pairwise judging with A/B and B/A, and recording votes."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from models.errors import InvalidInputError, NotFoundError
from models.types import PairRequest
from studio.judge import judge_pair, record_vote
from tests.studio_fakes import ScriptedCritic, make_services

RED = Image.new("RGB", (16, 16), (255, 0, 0))
BLUE = Image.new("RGB", (16, 16), (0, 0, 255))
PAIR = PairRequest("t2i", "a red square", RED, BLUE)
HIGH = {"text_faithfulness": 4.0, "physical_quality": 3.0}
LOW = {"text_faithfulness": 2.0, "physical_quality": 3.0}


def services_with(tmp_path, pair_script):
    return make_services(tmp_path, ScriptedCritic([], pair_script=pair_script))


def test_judge_pair_consistent_winner(tmp_path):
    services = services_with(tmp_path, [(HIGH, LOW), (LOW, HIGH)])  # B/A: the red image is now B
    verdict = judge_pair(PAIR, services)
    assert (verdict.winner, verdict.consistent, verdict.winner_ab, verdict.winner_ba) == ("A", True, "A", "A")
    assert verdict.dimensions["text_faithfulness"].score_a == 4.0
    assert verdict.dimensions["text_faithfulness"].winner == "A"
    assert verdict.failures == [] and verdict.ok


def test_judge_pair_asks_both_orders_in_one_batch(tmp_path):
    services = services_with(tmp_path, [(HIGH, LOW), (LOW, HIGH)])
    judge_pair(PAIR, services)
    first, second = services.critic.pairs_seen
    assert (first.image_a, first.image_b) == (RED, BLUE)
    assert (second.image_a, second.image_b) == (BLUE, RED)


def test_judge_pair_position_bias_is_a_tie(tmp_path):
    # the critic prefers whatever comes first
    services = services_with(tmp_path, [(HIGH, LOW), (HIGH, LOW)])
    verdict = judge_pair(PAIR, services)
    assert (verdict.winner, verdict.consistent, verdict.winner_ab, verdict.winner_ba) == ("tie", False, "A", "B")
    assert verdict.dimensions["text_faithfulness"].score_a == verdict.dimensions["text_faithfulness"].score_b == 3.0


def test_judge_pair_one_order_failing_is_reported(tmp_path):
    services = services_with(tmp_path, [(HIGH, LOW), "B/A output unreadable"])
    verdict = judge_pair(PAIR, services)
    assert (verdict.winner, verdict.consistent) == ("A", None)
    assert verdict.failures == ["B/A: B/A output unreadable"]
    assert verdict.raw_ba == "garbled pair output"


def test_judge_pair_both_orders_failing_has_no_winner(tmp_path):
    services = services_with(tmp_path, ["down"])
    verdict = judge_pair(PAIR, services)
    assert (verdict.winner, verdict.ok, len(verdict.failures)) == (None, False, 2)
    row = services.store.get_judgement(verdict.judgement_id)
    assert row["winner"] is None and len(json.loads(row["failures"])) == 2


def test_judge_pair_single_order(tmp_path):
    services = services_with(tmp_path, [(LOW, HIGH)])
    verdict = judge_pair(PAIR, services, both_orders=False)
    assert (verdict.winner, verdict.consistent, verdict.winner_ba) == ("B", None, None)
    assert len(services.critic.pairs_seen) == 1


def test_judge_pair_is_persisted(tmp_path):
    services = services_with(tmp_path, [(HIGH, LOW), (LOW, HIGH)])
    verdict = judge_pair(PAIR, services)
    row = services.store.get_judgement(verdict.judgement_id)
    assert (row["winner"], row["consistent"], row["raw_ab"]) == ("A", 1, "raw pair 1")
    assert services.store.load_image(row["image_a_id"]).getpixel((0, 0)) == (255, 0, 0)


def test_judge_pair_edit_needs_source(tmp_path):
    services = services_with(tmp_path, [(HIGH, LOW)])
    with pytest.raises(InvalidInputError, match="source image"):
        judge_pair(PairRequest("edit", "make it blue", RED, BLUE), services)
    assert services.critic.pairs_seen == []


def test_record_vote_on_a_judgement(tmp_path):
    services = services_with(tmp_path, [(HIGH, LOW), (LOW, HIGH)])
    verdict = judge_pair(PAIR, services)
    vote_id = record_vote(services.store, verdict.judgement_id, "both_bad", model_a="m1", model_b="m2")
    (vote,) = services.store.votes()
    assert (vote["id"], vote["vote"], vote["judgement_id"]) == (vote_id, "both_bad", verdict.judgement_id)
    assert vote["prompt"] == "a red square"
    assert (vote["image_a_id"], vote["model_b"]) == (verdict.image_a_id, "m2")


def test_record_vote_on_images(tmp_path):
    services = services_with(tmp_path, [])
    record_vote(services.store, PairRequest("edit", "make it blue", RED, BLUE, source_image=RED), "B")
    (vote,) = services.store.votes()
    assert (vote["vote"], vote["task"]) == ("B", "edit") and vote["source_image_id"] is not None


def test_record_vote_rejects_unknown_vote_and_judgement(tmp_path):
    services = services_with(tmp_path, [])
    with pytest.raises(InvalidInputError, match="Unknown vote"):
        record_vote(services.store, PAIR, "left")
    with pytest.raises(NotFoundError):
        record_vote(services.store, 999, "A")
