"""The shapes VLM base: captions scored per attribute, held-out requests never drawn, and a
pretrained folder that distill and bt start from."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText

from models.critic.critic_transformers import load_processor
from bench import parrot_lookup, parrot_object_checks, parrot_text_checks
from bench.parrot_base_flaws import fit_probe, layer_states, measured_flaws
from models.critic.tiny_qwen import build_tiny_qwen3vl
from models.shapes.analyzer import analyze
from models.shapes.assess import RIGHT, WRONG
from models.shapes.critic_shapes import ShapesCritic
from models.types import PairRequest
from models.errors import ConfigError, InvalidInputError, NotFoundError
from models.shapes.world import OBJECT_WORDS, POSITIONS, Scene, ShapeObject, describe, detailed_prompt, parse_prompt, render
from studio.jobs.context import RecordingContext
from studio.parrot import bt, distill, pretrain
from studio.parrot.captions import (
    CAPTION_REQUEST, CURRICULUM, FLAW_QUESTION, FLAWS, FULL, NOTHING, REQUEST_CHECK, REQUEST_TASK, WORD_QUESTION,
    CaptionSample, ObjectCheck, RequestCheck, caption, caption_samples, caption_scores, cell_answer, cell_question,
    fault_kind,
    flaw_kind_scores, heldout_request_list, heldout_requests, letter_share, object_check_scores, object_checks,
    object_checks_in, object_verdicts, question_scores, request_answer, request_check, request_check_scores,
    request_checks, request_texts, restated_share, verdict_answer, verdict_start,
)
from studio.parrot.pairs import HELDOUT_SEED, shapes_pairs
from studio.parrot.student_data import collate, encode
from tests.parrot_helpers import scripted_dataset


def test_captions_are_scored_per_attribute_against_the_scene():
    samples = caption_samples(random.Random(3), flaw_prob=1.0)
    truth = [next(samples) for _ in range(4)]
    assert all(s.flaw != "none" and s.caption.startswith(detailed_prompt(s.scene)) for s in truth)
    assert caption_scores([s.caption for s in truth], truth)["exact"] == 1.0
    first = truth[0].scene.objects[0]
    other = "blue" if first.colour != "blue" else "red"
    wrong_colour = truth[0].caption.replace(f"{first.colour} {first.shape}", f"{other} {first.shape}", 1)
    scores = caption_scores([wrong_colour, "gibberish", truth[2].caption, truth[3].caption], truth)
    assert (scores["exact"], scores["parsed"], scores["scene"]) == (0.5, 0.75, 0.5)
    objects = sum(len(s.scene.objects) for s in truth)
    assert scores["colour"] == round((objects - 1 - len(truth[1].scene.objects)) / objects, 4)
    assert scores["shape"] == round((objects - len(truth[1].scene.objects)) / objects, 4)
    with pytest.raises(InvalidInputError):
        caption_scores([], [])


def test_a_scene_whose_request_is_held_out_is_never_drawn():
    first = next(caption_samples(random.Random(5)))
    again = next(caption_samples(random.Random(5), exclude={detailed_prompt(first.scene)}))
    assert detailed_prompt(again.scene) != detailed_prompt(first.scene)
    held = heldout_requests(50, HELDOUT_SEED)
    assert 40 <= len(held) <= 50  # the bench's held-out requests (a few repeat)
    samples = caption_samples(random.Random(0), exclude=held)
    assert not any(detailed_prompt(next(samples).scene) in held for _ in range(200))


def test_a_bad_pretraining_setting_is_a_clear_error():
    with pytest.raises(ConfigError, match="patch_size"):
        pretrain.PretrainConfig(patch_size=10).validate()
    with pytest.raises(ConfigError, match="flaw_prob"):
        pretrain.PretrainConfig(flaw_prob=1.5).validate()
    with pytest.raises(ConfigError, match="vision_learning_rate"):
        pretrain.PretrainConfig(vision_learning_rate=-1e-3).validate()
    with pytest.raises(ConfigError, match="curriculum"):
        pretrain.PretrainConfig(curriculum=1.5).validate()
    with pytest.raises(ConfigError, match="cell_questions"):
        pretrain.PretrainConfig(cell_questions=-0.1).validate()
    with pytest.raises(ConfigError, match="request_tasks"):
        pretrain.PretrainConfig(request_tasks=1.2).validate()
    with pytest.raises(ConfigError, match="at most 1"):
        pretrain.PretrainConfig(cell_questions=0.6, request_tasks=0.6).validate()
    with pytest.raises(ConfigError, match="flaw_questions"):
        pretrain.PretrainConfig(flaw_questions=1.5).validate()
    with pytest.raises(ConfigError, match="at most 1"):
        pretrain.PretrainConfig(request_tasks=0.6, flaw_questions=0.5).validate()
    with pytest.raises(ConfigError, match="restate_requests"):  # a restated request may have been trained on
        pretrain.PretrainConfig(restate_requests=30, exclude_heldout=20).validate()
    pretrain.PretrainConfig(restate_requests=0, exclude_heldout=0).validate()
    with pytest.raises(NotFoundError, match="no config.json"):
        pretrain.PretrainConfig(init="/nonexistent/base").validate()


def _objects(record: dict) -> tuple:
    body = record["messages"][1]["content"].partition("; flaw: ")[0]
    return parse_prompt(body).objects


def _background_share(image) -> float:
    pixels = list(image.convert("RGB").getdata())
    return sum(max(abs(c - 245) for c in px) < 30 for px in pixels) / len(pixels)


def test_the_curriculum_zooms_out_on_one_centred_object_then_draws_more_and_smaller_ones():
    config = pretrain.PretrainConfig(max_steps=100, curriculum=0.6)
    stages = [pretrain.stage_at(step, config) for step in (0, 10, 19, 20, 39, 40, 59, 60, 99)]
    assert [stage for stage, _ in stages] == [CURRICULUM[0]] * 3 + [CURRICULUM[1]] * 2 + [CURRICULUM[2]] * 2 + [FULL] * 2
    assert [round(progress, 2) for _, progress in stages[:3]] == [0.0, 0.5, 0.95]
    assert pretrain.PretrainConfig().curriculum > 0  # the default: without it the base stays blind
    assert all(pretrain.stage_at(step, pretrain.PretrainConfig(max_steps=100, curriculum=0.0))[0] == FULL
               for step in (0, 50))
    held = heldout_requests(2000, HELDOUT_SEED)
    draw = pretrain.training_records(config, held)
    close, far = [draw(0) for _ in range(30)], [draw(19) for _ in range(30)]
    for record in close + far:
        assert record["messages"][0]["content"].endswith(CAPTION_REQUEST)
        assert record["messages"][1]["content"].partition("; flaw: ")[0] not in held
        assert [(o.size, o.position) for o in _objects(record)] == [("large", "centre")]
        assert record["messages"][1]["content"].endswith("; flaw: none")
    # seen 3x closer the object covers about a third of the frame; zoomed out at the stage's end, ~5%
    assert max(map(_background_share, (r["images"][0] for r in close))) < 0.85
    assert min(map(_background_share, (r["images"][0] for r in far))) > 0.9
    anywhere = [_objects(draw(25))[0] for _ in range(30)]
    assert {o.size for o in anywhere} == {"large"} and len({o.position for o in anywhere}) > 3
    assert len({o.colour + o.shape for o in anywhere}) > 5
    assert max(len(_objects(draw(45))) for _ in range(30)) == 2
    assert max(len(_objects(draw(80))) for _ in range(60)) > 2


def test_cell_questions_ask_what_one_cell_holds():
    scene = Scene((ShapeObject("circle", "red", "large", "top left"),))
    assert cell_question("centre") == "What is in the centre?"
    assert cell_answer(scene, "top left") == "a large red circle at the top left"
    assert cell_answer(scene, "bottom") == NOTHING
    draw = pretrain.training_records(pretrain.PretrainConfig(cell_questions=1.0), set())
    records = [draw(0) for _ in range(60)]
    questions = {cell_question(p): p for p in POSITIONS}
    assert all(r["messages"][0]["content"].removeprefix("<image>") in questions for r in records)
    answers = [r["messages"][1]["content"] for r in records]
    assert NOTHING in answers and any(a != NOTHING for a in answers)
    for record, answer in zip(records, answers, strict=True):
        asked = questions[record["messages"][0]["content"].removeprefix("<image>")]
        assert answer == NOTHING or [o.position for o in parse_prompt(answer).objects] == [asked]
    assert all(r["messages"][0]["content"].endswith(CAPTION_REQUEST)
               for r in map(pretrain.training_records(pretrain.PretrainConfig(), set()), range(5)))


def test_request_tasks_put_a_fresh_request_in_the_prompt_and_restate_it_before_the_caption():
    held = heldout_requests(2000, HELDOUT_SEED)
    draw = pretrain.training_records(pretrain.PretrainConfig(request_tasks=1.0, curriculum=0.0), held)
    records = [draw(0) for _ in range(40)]
    requests = []
    for record in records:
        prompt, answer = record["messages"][0]["content"], record["messages"][1]["content"]
        request = prompt.removeprefix("<image>User Instruction: ").removesuffix("\n" + REQUEST_TASK)
        assert prompt == f"<image>User Instruction: {request}\n{REQUEST_TASK}" and request not in held
        parse_prompt(request)  # a shapes-world request the critic can judge
        restated, _, caption_text = answer.partition("\n")
        assert restated == f"User Instruction: {request}"
        assert caption_text == record["messages"][1]["content"].split("\n", 1)[1]
        assert parse_prompt(caption_text.partition("; flaw: ")[0]).objects  # then the image's caption
        requests.append(request)
    assert len(set(requests)) > 30  # fresh requests, drawn apart from the image
    shares = [pretrain.training_records(pretrain.PretrainConfig(request_tasks=p, curriculum=0.0), held)
              for p in (0.3, 0.0)]
    asked = [sum(REQUEST_TASK in draw(0)["messages"][0]["content"] for _ in range(200)) for draw in shares]
    assert 35 <= asked[0] <= 85 and asked[1] == 0


def test_a_request_check_names_what_the_image_gets_wrong_in_the_critics_words():
    request = "a large red circle at the top left and a small blue square in the centre"
    asked = parse_prompt(request)
    drawn = Scene(tuple(ShapeObject(o.shape, o.colour, o.size, o.position) for o in asked.objects), None)
    assert request_check(request, render(drawn, 64)).differences == ()
    missing = request_check(request, render(Scene(drawn.objects[:1], None), 64))
    assert missing.differences == ("the small blue square in the centre is missing",)
    recoloured = Scene((drawn.objects[0], replace(drawn.objects[1], colour="green")), None)
    check = request_check(request, render(recoloured, 64))
    assert check.differences == ("the square in the centre is green instead of blue",)
    # --check-describe: what the image shows first, then the differences, scored on the differences alone
    assert check.described_answer == ("a large red circle at the top left and a small green square in the centre\n"
                                      "Differences: the square in the centre is green instead of blue")
    empty = request_check(request, Image.new("RGB", (64, 64), "white"))
    assert len(empty.differences) == 2 and empty.described_answer == f"an empty image\nDifferences: {empty.answer}"
    assert request_check_scores([check.described_answer, "a red circle\nDifferences: nothing"],
                                [check, request_check(request, render(drawn, 64))])["exact"] == 1.0
    draw = pretrain.training_records(pretrain.PretrainConfig(request_checks=1.0, check_describe=True,
                                                             curriculum=0.0), set())
    answer = draw(0)["messages"][1]["content"]
    assert "\nDifferences: " in answer and parse_prompt(answer.partition("\n")[0]).objects


def test_request_checks_show_fresh_requests_with_faithful_and_faulty_images_and_their_answers():
    held = heldout_requests(2000, HELDOUT_SEED)
    drawn = request_checks(random.Random(3), exclude=held)
    checks = [next(drawn) for _ in range(120)]
    assert not {c.request for c in checks} & held
    faulty = sum(bool(c.differences) for c in checks)
    assert 20 <= faulty <= 80  # both kinds, in about the pairs' proportion
    assert all(c.answer == ("; ".join(c.differences) if c.differences else NOTHING) for c in checks)
    draw = pretrain.training_records(pretrain.PretrainConfig(request_checks=1.0, curriculum=0.0), held)
    record = draw(0)
    prompt, answer = record["messages"][0]["content"], record["messages"][1]["content"]
    request = prompt.removeprefix("<image>User Instruction: ").removesuffix("\n" + REQUEST_CHECK)
    assert prompt == f"<image>User Instruction: {request}\n{REQUEST_CHECK}" and request not in held
    truth = request_check(request, record["images"][0]).differences
    assert answer == ("; ".join(truth) if truth else NOTHING)
    mixed = pretrain.training_records(pretrain.PretrainConfig(request_checks=0.4, flaw_questions=0.3,
                                                              curriculum=0.0), held)
    prompts = [mixed(0)["messages"][0]["content"] for _ in range(200)]
    assert 50 <= sum(REQUEST_CHECK in p for p in prompts) <= 110
    assert 35 <= sum(FLAW_QUESTION in p or WORD_QUESTION in p for p in prompts) <= 85
    with pytest.raises(ConfigError, match="request_checks"):
        pretrain.PretrainConfig(request_checks=0.5, request_tasks=0.6).validate()
    # --check-faithful draws faults more often than pairs do, still never a held-out request
    faults = pretrain.training_records(pretrain.PretrainConfig(request_checks=1.0, check_faithful=0.2,
                                                               curriculum=0.0), held)
    answers = [faults(0)["messages"][1]["content"] for _ in range(100)]
    assert 8 <= answers.count(NOTHING) <= 35  # 20% faithful, not the pairs' ~64%
    only_faithful = request_checks(random.Random(5), exclude=held, faithful=1.0)
    assert not any(next(only_faithful).differences for _ in range(30))
    with pytest.raises(ConfigError, match="check_faithful"):
        pretrain.PretrainConfig(check_faithful=1.5).validate()


def test_an_object_check_asks_about_one_requested_object_and_answers_in_the_critics_words():
    request = "a large red circle at the top left and a small blue square in the centre"
    asked = parse_prompt(request)
    drawn = Scene(tuple(ShapeObject(o.shape, o.colour, o.size, o.position) for o in asked.objects), None)
    right = object_checks_in(request, render(drawn, 64))
    assert [(c.asked, c.answer) for c in right] == [("large red circle at the top left", "yes"),
                                                    ("small blue square in the centre", "yes")]
    assert right[1].question == f"User Instruction: {request}\nIs the small blue square in the centre drawn as asked?"
    recoloured = Scene((drawn.objects[0], replace(drawn.objects[1], colour="green")), None)
    assert [c.answer for c in object_checks_in(request, render(recoloured, 64))] == [
        "yes", "no: the square in the centre is green instead of blue"]
    assert [c.answer for c in object_checks_in(request, render(Scene(drawn.objects[1:], None), 64))] == [
        "no: the large red circle at the top left is missing", "yes"]
    # an object the request names twice is not one thing to check
    assert [c.asked for c in object_checks_in("two red circles and a blue square", render(drawn, 64))] == ["blue square"]


def test_object_checks_are_fresh_held_out_free_and_faulty_at_the_asked_share():
    held = heldout_requests(2000, HELDOUT_SEED)
    drawn = object_checks(random.Random(3), exclude=held)
    checks = [next(drawn) for _ in range(100)]
    assert not {c.request for c in checks} & held
    assert 3 <= sum(bool(c.problems) for c in checks) <= 30  # as pairs draw them: most objects right
    assert all(c.asked in c.request and c.answer == object_checks_in(c.request, c.image)[
        [o.asked for o in object_checks_in(c.request, c.image)].index(c.asked)].answer for c in checks[:20])
    draw = pretrain.training_records(pretrain.PretrainConfig(object_checks=1.0, check_faithful=0.4,
                                                             curriculum=0.0), held)
    records = [draw(0) for _ in range(60)]
    answers = [r["messages"][1]["content"] for r in records]
    assert 12 <= answers.count("yes") <= 38 and all(a == "yes" or a.startswith("no: the ") for a in answers)
    assert all(r["messages"][0]["content"].startswith("<image>User Instruction: ") for r in records)
    mixed = pretrain.training_records(pretrain.PretrainConfig(object_checks=0.4, request_checks=0.3,
                                                              curriculum=0.0), held)
    prompts = [mixed(0)["messages"][0]["content"] for _ in range(200)]
    assert 50 <= sum("drawn as asked?" in p for p in prompts) <= 110
    assert 35 <= sum(REQUEST_CHECK in p for p in prompts) <= 85
    with pytest.raises(ConfigError, match="object_checks"):
        pretrain.PretrainConfig(object_checks=0.5, request_checks=0.6).validate()


def test_a_verdict_list_names_every_requested_object_with_its_verdict_right_after_its_name():
    request = "a large red circle at the top left and a small blue square in the centre"
    asked = parse_prompt(request)
    drawn = Scene(tuple(ShapeObject(o.shape, o.colour, o.size, o.position) for o in asked.objects), None)
    recoloured = object_checks_in(request, render(Scene((replace(drawn.objects[0], colour="green"),
                                                         drawn.objects[1]), None), 64))
    assert verdict_answer(recoloured) == ("the large red circle at the top left is wrong; "
                                          "the small blue square in the centre is drawn")
    assert [c.verdict_prefix() for c in recoloured] == [
        "the large red circle at the top left",
        "the large red circle at the top left is wrong; the small blue square in the centre"]
    assert recoloured[1].verdict_question == f"User Instruction: {request}\nWhich requested objects are drawn as asked?"
    # described: what the image shows on a line of its own first, so the verdicts compare words with words
    shown = "a large green circle at the top left and a small blue square in the centre"
    assert verdict_answer(recoloured, described=True) == f"{shown}\n{verdict_answer(recoloured)}"
    assert verdict_start(recoloured[1], described=True) == f"{shown}\n{recoloured[1].verdict_prefix()}"
    held = heldout_requests(2000, HELDOUT_SEED)
    lists = object_verdicts(random.Random(4), exclude=held)
    drawn_lists = [next(lists) for _ in range(40)]
    assert not {group[0].request for group in drawn_lists} & held
    verdicts = [not c.problems for group in drawn_lists for c in group]
    assert 0.6 <= sum(verdicts) / len(verdicts) < 1  # as pairs draw them: most objects right, some wrong
    faulty_lists = object_verdicts(random.Random(4), exclude=held, faithful=0.2)
    all_right = [all(not c.problems for c in next(faulty_lists)) for _ in range(60)]
    assert 3 <= sum(all_right) <= 24  # a fifth of the lists wholly right, the rest with some object wrong
    draw = pretrain.training_records(pretrain.PretrainConfig(object_verdicts=0.5, request_tasks=0.3, curriculum=0.0,
                                                             request_first=True), held)
    records = [draw(0) for _ in range(100)]
    listed = [r for r in records if r["messages"][0]["content"].endswith("Which requested objects are drawn as asked?")]
    assert 30 <= len(listed) <= 70
    for record in listed:  # the request, the image, the question; then one verdict per object the request names once
        instruction, rest = record["messages"][0]["content"].split("\n", 1)
        groups = object_checks_in(instruction.removeprefix("User Instruction: "), record["images"][0])
        assert rest.startswith("<image>") and record["messages"][1]["content"] == verdict_answer(groups)
    with pytest.raises(ConfigError, match="object_verdicts"):
        pretrain.PretrainConfig(object_verdicts=0.5, object_checks=0.6).validate()


def _recoloured_checks() -> list:
    request = "a large red circle at the top left and a small blue square in the centre"
    asked = parse_prompt(request)
    drawn = [ShapeObject(o.shape, o.colour, o.size, o.position) for o in asked.objects]
    return object_checks_in(request, render(Scene((replace(drawn[0], colour="green"), drawn[1]), None), 64))


def test_a_sighted_verdict_list_says_what_is_in_each_objects_place_between_its_name_and_its_verdict():
    recoloured = _recoloured_checks()
    assert [c.seen for c in recoloured] == ["large green circle at the top left", "small blue square in the centre"]
    assert verdict_answer(recoloured, sighted=True) == (
        "the large red circle at the top left (seen: large green circle at the top left) is wrong; "
        "the small blue square in the centre (seen: small blue square in the centre) is drawn")
    assert recoloured[1].verdict_prefix(sighted=True) == (
        "the large red circle at the top left (seen: large green circle at the top left) is wrong; "
        "the small blue square in the centre (seen: small blue square in the centre)")
    # a short request's sighting has only the attributes it asks for; a missing object is seen as "nothing"
    (short,) = object_checks_in("a yellow star", render(Scene((ShapeObject("star", "red", "large", "top left"),), None), 64))
    gone, kept = object_checks_in("a yellow star and a red circle",
                                  render(Scene((ShapeObject("circle", "red", "large", "top left"),), None), 64))
    assert (short.seen, gone.seen, kept.seen) == ("red star", "nothing", "red circle")
    assert short.problems and gone.problems and not kept.problems
    draw = pretrain.training_records(pretrain.PretrainConfig(object_verdicts=1.0, verdict_sightings=True,
                                                             curriculum=0.0, request_first=True), set())
    record = draw(0)
    instruction = record["messages"][0]["content"].split("\n", 1)[0]
    groups = object_checks_in(instruction.removeprefix("User Instruction: "), record["images"][0])
    assert record["messages"][1]["content"] == verdict_answer(groups, sighted=True) and " (seen: " in verdict_answer(
        groups, sighted=True)


def test_a_pair_sighting_example_shows_both_images_as_the_critic_does_and_reads_each_on_its_own():
    draw = pretrain.training_records(pretrain.PretrainConfig(pair_sightings=1.0, curriculum=0.0, request_first=True),
                                     set())
    record = draw(0)
    prompt, answer = (m["content"] for m in record["messages"])
    request = prompt.split("\n", 1)[0].removeprefix("User Instruction: ")
    image_a, image_b = record["images"]
    assert prompt == (f"User Instruction: {request}\nYou are given two images made for this instruction:\n"
                      "1. Generated Image A <image>\n2. Generated Image B <image>\n"
                      "Which requested objects are drawn as asked in each image?")
    assert answer == (f"Image A: {verdict_answer(object_checks_in(request, image_a), sighted=True)}. "
                      f"Image B: {verdict_answer(object_checks_in(request, image_b), sighted=True)}.")
    critic = ShapesCritic(object_sightings=True).judge([PairRequest("t2i", request, image_a, image_b)])[0]
    said = critic.dimensions["text_faithfulness"].justification
    for part in answer.removeprefix("Image A: ").split(" Image B: "):
        assert part.removesuffix(".") in said  # as the sighting teacher opens each image's justification
    mixed = pretrain.training_records(pretrain.PretrainConfig(pair_sightings=0.5, request_tasks=0.5, curriculum=0.0,
                                                              request_first=True), set())
    assert 25 <= sum(len(mixed(0)["images"]) == 2 for _ in range(80)) <= 55
    with pytest.raises(ConfigError, match="pair_sightings"):
        pretrain.PretrainConfig(pair_sightings=0.6, object_verdicts=0.6).validate()


class _CharTokenizer:
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return "".join(chr(int(i)) for i in ids)


class _ScriptedWriter:
    """``generate`` writes ``script`` after whatever it is given."""

    def __init__(self, script: str) -> None:
        self.script = script

    def generate(self, input_ids, **_):
        return torch.cat([input_ids, torch.tensor([[ord(c) for c in self.script]])], 1)


def test_an_own_sighting_is_the_models_words_after_the_truths_start_up_to_the_close(monkeypatch):
    monkeypatch.setattr(pretrain, "question_inputs", lambda *_, **__: {"input_ids": torch.tensor([[1, 2]]),
                                                                       "attention_mask": torch.ones(1, 2)})
    processor = type("Processor", (), {"tokenizer": _CharTokenizer()})()
    check = _recoloured_checks()[1]
    ((start, seen),) = pretrain.own_sightings(_ScriptedWriter("small blue star in the centre) is drawn"), processor,
                                              [check])
    assert seen == "small blue star in the centre"  # its own words, not the truth's "square"
    assert start == ("the large red circle at the top left (seen: large green circle at the top left) is wrong; "
                     "the small blue square in the centre (seen: small blue star in the centre)")
    ((_, never),) = pretrain.own_sightings(_ScriptedWriter("small blue square in the"), processor, [check])
    assert never == ""  # a sighting it never closes is not read as one


class _WordTokenizer:
    """Splits on spaces, each word its own id, "is" sharing one id with the space before it."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [self.ids.setdefault(word, len(self.ids)) for word in text.replace(" is ", " is_ ").split(" ") if word]


class _LastTokenModel(torch.nn.Module):
    """Logits that favour the id after the last input id, and record the inputs they saw."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict] = []

    def forward(self, **inputs):
        self.seen.append(inputs)
        logits = torch.zeros(1, inputs["input_ids"].shape[1], 50)
        logits[0, -1, int(inputs["input_ids"][0, -1]) + 1] = 3.0
        return type("Out", (), {"logits": logits})()


def test_a_verdict_is_read_where_its_two_wordings_part_with_every_token_before_them_given():
    tokenizer, model = _WordTokenizer(), _LastTokenModel()
    processor = type("Processor", (), {"tokenizer": tokenizer})()
    for word in ("the", "red", "circle", "is_", "wrong", "drawn"):  # "wrong" follows "is_"
        tokenizer.encode(word)
    prompt = {"input_ids": torch.tensor([[40, 41]]), "attention_mask": torch.ones(1, 2, dtype=torch.long),
              "mm_token_type_ids": torch.tensor([[1, 1]]), "pixel_values": torch.zeros(4, 3)}
    (lean,) = pretrain.fork_leaning(model, processor, [(prompt, "the red circle")], (WRONG, RIGHT))
    # both verdicts start with " is": read after it, where "wrong" and "drawn" part, not at " is" (a lean of 0)
    assert lean == 3.0
    given = model.seen[-1]
    assert given["input_ids"].tolist() == [[40, 41, 0, 1, 2, 3]] and given["attention_mask"].tolist() == [[1] * 6]
    assert given["mm_token_type_ids"].tolist() == [[1, 1, 0, 0, 0, 0]] and given["pixel_values"] is prompt["pixel_values"]
    with pytest.raises(InvalidInputError, match="tokenize alike"):
        pretrain.fork_leaning(model, processor, [(prompt, "")], (RIGHT, RIGHT))


def test_the_no_leaning_separates_faulty_objects_by_kind_even_when_every_greedy_answer_is_yes():
    request = "a large red circle at the top left and a small blue square in the centre"
    asked = parse_prompt(request)
    drawn = Scene(tuple(ShapeObject(o.shape, o.colour, o.size, o.position) for o in asked.objects), None)
    right = object_checks_in(request, render(drawn, 64))
    recoloured = object_checks_in(request, render(Scene((drawn.objects[0], replace(drawn.objects[1], colour="green")),
                                                        None), 64))[1]
    missing = object_checks_in(request, render(Scene(drawn.objects[1:], None), 64))[0]
    moved = object_checks_in(request, render(Scene((drawn.objects[0], replace(drawn.objects[1], position="top")),
                                                   None), 64))[1]
    assert [fault_kind(c) for c in (right[0], recoloured, missing, moved)] == ["none", "colour", "missing", "position"]
    checks = [right[0], right[1], recoloured, missing]
    # a model that always says "yes" but leans less so on the recoloured square than on any right object
    report = pretrain.separation([-3.0, -2.0, -1.0, -2.5], checks)
    assert report["auc"] == 0.75  # the recoloured square above both right objects, the missing one above one of two
    assert report["above_right_median"] == {"colour": {"faulty": 1, "share": 1.0}, "missing": {"faulty": 1, "share": 0.0}}
    assert report["mean_leaning"] == {"faulty": -1.75, "right": -2.5}  # both below 0: every greedy answer "yes"
    assert pretrain.separation([1.0, 2.0], right) == {}  # nothing faulty: nothing to separate


def test_request_first_shows_the_instruction_line_before_the_image_as_the_critic_protocol_does():
    held = heldout_requests(2000, HELDOUT_SEED)
    config = pretrain.PretrainConfig(object_checks=0.4, request_checks=0.3, request_tasks=0.2, curriculum=0.0,
                                     request_first=True)
    draw = pretrain.training_records(config, held)
    prompts = [draw(0)["messages"][0]["content"] for _ in range(200)]
    with_request = [p for p in prompts if p.startswith("User Instruction: ")]
    assert 150 <= len(with_request) <= 200 and all(p.count("<image>") == 1 for p in prompts)
    for prompt in with_request:  # the request, then the image, then the question
        instruction, image_and_question = prompt.split("\n", 1)
        assert "<image>" not in instruction and image_and_question.startswith("<image>")
        assert image_and_question.removeprefix("<image>") in (REQUEST_CHECK, REQUEST_TASK) or \
            image_and_question.endswith("drawn as asked?")
    assert all(p == "<image>" + CAPTION_REQUEST for p in prompts if p not in with_request)  # captions as before
    with pytest.raises(InvalidInputError, match="instruction line"):
        pretrain.image_record(Image.new("RGB", (64, 64)), CAPTION_REQUEST, "a red circle", request_first=True)


def test_held_out_object_checks_are_balanced_and_scored_so_a_constant_answer_gets_half():
    checks = pretrain.heldout_object_checks(120, 64)
    faulty = [c for c in checks if c.problems]
    assert len(faulty) >= 8 and len(checks) == 2 * len(faulty)
    held = heldout_requests(2000, HELDOUT_SEED)
    assert {c.request for c in checks} <= held
    always_yes = object_check_scores(["yes"] * len(checks), checks)
    assert (always_yes["flags"], always_yes["balanced"], always_yes["faults_found"]) == (0.5, 0.5, 0.0)
    image = Image.new("RGB", (8, 8))
    truth = [ObjectCheck("r", image, "red circle", ()), ObjectCheck("r", image, "blue star", ("the blue star is missing",)),
             ObjectCheck("r", image, "green square", ("x",)), ObjectCheck("r", image, "red star", ())]
    scores = object_check_scores(["yes", "no: the blue star is missing", "no: y", "no: z"], truth)
    assert scores == {"checks": 4, "faulty": 2, "unreadable": 0, "flags": 0.75, "flag_prior": 0.5,
                      "balanced": 0.75, "faults_found": 1.0, "exact": 0.5}
    # an answer that is neither yes nor no is wrong whatever the truth, never read as "yes"
    garbled = object_check_scores(["circle", "no: the blue star is missing", "", "yes"], truth)
    assert (garbled["unreadable"], garbled["flags"], garbled["faults_found"]) == (2, 0.5, 0.5)
    with pytest.raises(InvalidInputError, match="one answer per check"):
        object_check_scores(["yes"], truth)


def test_request_check_answers_are_scored_by_exact_answer_flags_and_named_differences():
    image = Image.new("RGB", (8, 8))
    truth = [RequestCheck("a red circle", image, ()), RequestCheck("a blue square", image, ("x is missing",)),
             RequestCheck("a red star", image, ("y is green instead of red", "z is missing"))]
    scores = request_check_scores(["nothing", "x is missing", "z is missing; w is missing"], truth)
    assert scores == {"checks": 3, "exact": round(2 / 3, 4), "flags": 1.0, "flag_prior": round(2 / 3, 4),
                      "recall": round(2 / 3, 4), "precision": round(2 / 3, 4)}
    assert request_check_scores(["nothing"] * 3, truth)["flags"] == round(1 / 3, 4)
    with pytest.raises(InvalidInputError, match="one answer per check"):
        request_check_scores(["nothing"], truth)


def test_requests_are_drawn_like_the_pairs_short_and_detailed_never_held_out():
    held = heldout_requests(2000, HELDOUT_SEED)
    drawn = request_texts(random.Random(1), held)
    requests = [next(drawn) for _ in range(300)]
    assert not set(requests) & held
    specs = [parse_prompt(r) for r in requests]
    detailed = sum(all(o.position for o in spec.objects) for spec in specs)
    assert 90 <= detailed <= 210  # about half name every object's position (detailed prompts)
    listed = heldout_request_list(60, HELDOUT_SEED)
    assert len(listed) == len(set(listed)) and set(listed) <= heldout_requests(60, HELDOUT_SEED)
    assert listed[:2] == heldout_request_list(2, HELDOUT_SEED)


def test_the_restatement_rate_counts_first_lines_that_copy_the_request_word_for_word():
    requests = ['a red circle', 'a blue star with the word "AB"', 'a green square', 'a red circle']
    answers = [
        request_answer("a red circle", "a large red circle in the centre; flaw: none"),  # restated
        'User Instruction: a blue star with the word "AC"\na small blue star at the top; flaw: none',  # a letter off
        "a large green square at the top; flaw: none",  # captioned, never restated
        "  User Instruction: a red circle  ",  # restated, caption cut off
    ]
    assert restated_share(answers, requests) == 0.5
    assert restated_share([answers[0]], ["a red circle and a blue star"]) == 0.0  # a prefix is not a restatement
    with pytest.raises(InvalidInputError, match="one answer per request"):
        restated_share(answers[:2], requests)


def test_flaw_questions_ask_the_flaw_or_the_word_with_a_one_word_answer():
    held = heldout_requests(2000, HELDOUT_SEED)
    draw = pretrain.training_records(pretrain.PretrainConfig(flaw_questions=1.0, curriculum=0.0), held)
    records = [draw(0) for _ in range(200)]
    asked = {FLAW_QUESTION: [], WORD_QUESTION: []}
    for record in records:
        asked[record["messages"][0]["content"].removeprefix("<image>")].append(record["messages"][1]["content"])
    assert 70 <= len(asked[FLAW_QUESTION]) <= 130  # flaw or word at even odds
    assert set(asked[FLAW_QUESTION]) == {"none", *FLAWS}
    words = asked[WORD_QUESTION]
    assert all(w == "none" or (w.isalpha() and w.isupper() and len(w) <= 3) for w in words)
    assert 0.45 <= sum(w != "none" for w in words) / len(words) <= 0.75  # scenes rich in words (0.6, not 0.3)
    for record in records[:40]:  # the answer is what the reference analyzer reads in the record's own image
        seen = analyze(record["images"][0])
        answer = record["messages"][1]["content"]
        if record["messages"][0]["content"].endswith(FLAW_QUESTION):
            assert measured_flaws(seen) == [] if answer == "none" else answer in measured_flaws(seen)
        else:
            assert (seen.word or "none") == answer
    shares = [pretrain.training_records(pretrain.PretrainConfig(flaw_questions=p, curriculum=0.0), held)
              for p in (0.3, 0.0)]
    counts = [sum(not draw(0)["messages"][0]["content"].endswith(CAPTION_REQUEST) for _ in range(200))
              for draw in shares]
    assert 35 <= counts[0] <= 85 and counts[1] == 0
    # during the curriculum the questions ask about the stage's own scenes (no flaw in stage one)
    early = pretrain.training_records(pretrain.PretrainConfig(flaw_questions=1.0, max_steps=100), held)
    assert {r["messages"][1]["content"] for r in (early(0) for _ in range(30))} <= {"none"}


def test_flaw_zoom_asks_about_one_object_seen_close_up_then_zooms_out():
    config = pretrain.PretrainConfig(flaw_questions=1.0, flaw_zoom=0.5, curriculum=0.0, max_steps=100)
    draw = pretrain.training_records(config, set())
    flaw_records = {step: [r for r in (draw(step) for _ in range(60))
                           if r["messages"][0]["content"].endswith(FLAW_QUESTION)] for step in (0, 49, 50)}
    assert all(len(records) > 15 for records in flaw_records.values())  # word questions still half
    close, late = flaw_records[0], flaw_records[50]
    assert {r["messages"][1]["content"] for r in close} == {"none", "blur", "noise", "colour_bleed", "broken"}
    assert max(map(_background_share, (r["images"][0] for r in close))) < 0.85  # one object fills the frame
    assert min(map(_background_share, (r["images"][0] for r in flaw_records[49]))) > 0.8  # zoomed out by the end
    assert "none" in {r["messages"][1]["content"] for r in late}  # then every scene, clean ones too
    with pytest.raises(ConfigError, match="flaw_zoom"):
        pretrain.PretrainConfig(flaw_zoom=2.0).validate()


def test_flaw_warmup_asks_only_the_flaw_of_a_close_up_zooming_out_then_the_usual_mix():
    config = pretrain.PretrainConfig(flaw_questions=0.5, flaw_warmup=20, curriculum=0.0, max_steps=100)
    draw = pretrain.training_records(config, set())
    first, last, after = ([draw(step) for _ in range(40)] for step in (0, 19, 20))
    for records in (first, last):  # only flaw questions, about a flawed object or a clean one
        assert {r["messages"][0]["content"].removeprefix("<image>") for r in records} == {FLAW_QUESTION}
        assert {r["messages"][1]["content"] for r in records} <= {"none", "blur", "noise", "colour_bleed", "broken"}
    assert max(map(_background_share, (r["images"][0] for r in first))) < 0.88  # one object fills the frame (~0.8)
    assert min(map(_background_share, (r["images"][0] for r in last))) > 0.8  # at its true size by the end
    asked = {r["messages"][0]["content"].removeprefix("<image>") for r in after}
    assert {CAPTION_REQUEST, WORD_QUESTION} <= asked  # then captions and word questions again
    with pytest.raises(ConfigError, match="flaw_warmup"):
        pretrain.PretrainConfig(flaw_warmup=100, max_steps=100).validate()


@pytest.mark.parametrize("flaw_prob", [0.5, 0.2])
def test_close_up_flaw_questions_show_clean_objects_too_as_often_as_the_renders_are_clean(flaw_prob):
    """Close-ups that are always flawed never train the answer "none": a base trained on them
    called clean images "broken" (docs/parrot.md, tenth and eleventh steps)."""
    for config in (pretrain.PretrainConfig(flaw_questions=1.0, flaw_zoom=1.0, curriculum=0.0, flaw_prob=flaw_prob),
                   pretrain.PretrainConfig(flaw_warmup=50, curriculum=0.0, flaw_prob=flaw_prob)):
        draw = pretrain.training_records(config, set())
        answers = [r["messages"][1]["content"] for r in (draw(0) for _ in range(300))
                   if r["messages"][0]["content"].endswith(FLAW_QUESTION)]
        clean = answers.count("none") / len(answers)
        assert abs(clean - (1 - flaw_prob)) < 0.1, (config, clean)
        assert set(answers) - {"none"} == {"blur", "noise", "colour_bleed", "broken"}


def test_flaw_every_makes_every_kth_step_ask_only_the_flaw_as_the_mix_asks_it():
    config = pretrain.PretrainConfig(flaw_questions=0.5, flaw_every=4, flaw_zoom=0.5, curriculum=0.0, max_steps=100)
    draw = pretrain.training_records(config, set())
    asked = {step: [r["messages"][0]["content"].removeprefix("<image>") for r in (draw(step) for _ in range(40))]
             for step in (2, 3, 7, 51, 99)}
    for step in (3, 7, 51, 99):  # the last of every four steps: the flaw question alone
        assert set(asked[step]) == {FLAW_QUESTION}, step
    assert {CAPTION_REQUEST, WORD_QUESTION, FLAW_QUESTION} <= set(asked[2])  # the other steps: the usual mix
    close, late = ([draw(step) for _ in range(40)] for step in (3, 51))
    assert max(map(_background_share, (r["images"][0] for r in close))) < 0.85  # within --flaw-zoom: close-ups
    assert min(map(_background_share, (r["images"][0] for r in late))) > 0.5  # then every scene at true size
    kinds = {r["messages"][1]["content"] for r in late}
    assert "none" in kinds and len(kinds) >= 4
    off = pretrain.training_records(pretrain.PretrainConfig(flaw_questions=0.5, curriculum=0.0), set())
    assert len({r["messages"][0]["content"] for r in (off(3) for _ in range(40))}) == 3  # off by default
    with pytest.raises(ConfigError, match="flaw_every"):
        pretrain.PretrainConfig(flaw_every=1).validate()


@pytest.mark.parametrize(("patch_size", "tokens"), [(4, 64), (8, 16), (16, 4)])
def test_a_finer_patch_gives_a_render_more_visual_tokens(tmp_path, patch_size, tokens):
    pretrain.PretrainConfig(patch_size=patch_size).validate()
    folder = build_tiny_qwen3vl(tmp_path / "tiny", hidden_size=32, num_layers=1, vision_hidden_size=32,
                                vision_depth=1, patch_size=patch_size)
    model = AutoModelForImageTextToText.from_pretrained(str(folder))
    processor = load_processor(str(folder))
    render = next(caption_samples(random.Random(0), size=64))
    batch = collate([encode(pretrain.caption_record(render, FLAW_QUESTION, render.flaw), processor, 512)],
                    processor.tokenizer.pad_token_id)
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == tokens
    assert torch.isfinite(model(**batch).loss)


def test_after_the_flaw_warmup_the_vision_tower_can_stay_as_the_warmup_left_it(tmp_path):
    folder = build_tiny_qwen3vl(tmp_path / "tiny", hidden_size=32, num_layers=1, vision_hidden_size=32,
                                vision_depth=1, patch_size=8)
    model = AutoModelForImageTextToText.from_pretrained(str(folder))
    processor = load_processor(str(folder))
    config = pretrain.PretrainConfig(learning_rate=1e-2, vision_learning_rate=1e-2, warmup_steps=0, max_steps=4)
    optimizer, scheduler = pretrain.optimisation(model, config)
    drawn = caption_samples(random.Random(0))
    batch = collate([encode(pretrain.caption_record(next(drawn)), processor, 512) for _ in range(2)],
                    processor.tokenizer.pad_token_id)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    pretrain.train_step(model, batch, optimizer, scheduler)  # a warm-up step moves the tower
    warmed = {name: p.detach().clone() for name, p in model.named_parameters()}
    pretrain.freeze_vision(model)
    pretrain.train_step(model, batch, optimizer, scheduler)
    vision = [name for name in before if ".visual." in f".{name}"]
    assert any(not torch.equal(warmed[name], before[name]) for name in vision)
    assert all(torch.equal(dict(model.named_parameters())[name], warmed[name]) for name in vision)
    assert any(not torch.equal(p, warmed[name]) for name, p in model.named_parameters() if name not in vision)
    with pytest.raises(ConfigError, match="needs flaw_warmup"):
        pretrain.PretrainConfig(freeze_vision_after_warmup=True).validate()


def test_the_layer_probe_reads_the_flaw_where_the_states_hold_it(tmp_path):
    """The answer position's state after the embedding is the question's last token, the same
    for every image (a probe there can only guess the commonest kind); after a layer it has read
    the image. A probe on features that carry the kind reads every kind."""
    folder = build_tiny_qwen3vl(tmp_path / "tiny", hidden_size=32, num_layers=2, vision_hidden_size=32,
                                vision_depth=1, patch_size=8)
    model = AutoModelForImageTextToText.from_pretrained(str(folder)).eval()
    drawn = caption_samples(random.Random(0))
    samples = [next(drawn) for _ in range(6)]
    states = layer_states(model, load_processor(str(folder)), samples)
    assert list(states) == ["visual_0", "visual_1", "visual_2", "answer_0", "answer_1", "answer_2"]
    assert states["answer_0"].shape == (6, 32) and states["visual_2"].shape == (6, 64)
    assert torch.allclose(states["answer_0"], states["answer_0"][:1].expand(6, -1))
    assert not torch.allclose(states["answer_2"], states["answer_2"][:1].expand(6, -1))
    kinds = ["none", *FLAWS]
    truth = [_sample(Scene((ShapeObject("circle", "red", "large", "top left"),)), kinds[i % 7]) for i in range(28)]
    features = torch.nn.functional.one_hot(torch.tensor([i % 7 for i in range(28)]), 7).float()
    features += 0.1 * torch.randn(28, 7, generator=torch.Generator().manual_seed(0))
    read = fit_probe(features, truth, features, truth)
    assert read["flaw"] == 1.0 and set(read["flaw_kinds"]) == set(kinds)


def _sample(scene: Scene, flaw: str) -> CaptionSample:
    return CaptionSample(Image.new("RGB", (64, 64)), caption(scene, flaw), scene, flaw)


def test_flaws_are_scored_per_kind_and_words_per_letter():
    circle = ShapeObject("circle", "red", "large", "top left")
    truth = [_sample(Scene((circle,), "AB"), "blur"), _sample(Scene((circle,), "XYZ"), "blur"),
             _sample(Scene((circle,)), "none"), _sample(Scene((circle,), "Q"), "smudge")]
    captions = [truth[0].caption,  # all right
                truth[1].caption.replace('"XYZ"', '"XQZ"').replace("blur", "noise"),  # a letter and the flaw wrong
                truth[2].caption,
                "gibberish; flaw: none"]  # unparsed: no letter right; the flaw still read
    scores = caption_scores(captions, truth)
    assert scores["flaw_kinds"] == {"none": 1.0, "blur": 0.5, "smudge": 0.0}
    assert scores["flaw"] == 0.5
    assert scores["letters"] == round(4 / 6, 4)  # A, B, X, Z of A B X Y Z Q
    assert letter_share(["AB", None], truth[:2]) == 0.4  # a missing word has no letter right
    assert letter_share([None], truth[2:3]) is None  # no true word, no letters to read
    assert flaw_kind_scores(["none", "blur"], [truth[2], truth[0]]) == {"none": 1.0, "blur": 1.0}
    answers = question_scores(["blur", "noise", "none", "none"], ["AB", "XYZ", "none", "O"], truth)
    assert answers == {"images": 4, "flaw": 0.5, "flaw_kinds": {"none": 1.0, "blur": 0.5, "smudge": 0.0},
                       "word": 0.75, "letters": round(5 / 6, 4)}
    with pytest.raises(InvalidInputError, match="one flaw per image"):
        flaw_kind_scores(["blur"], truth)
    with pytest.raises(InvalidInputError, match="one word answer per image"):
        question_scores(["blur"] * 4, ["AB"], truth)


def test_the_per_example_loss_weighs_a_one_word_answer_like_a_caption():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.tensor([[-100, -100, 3, 4, 5, 6], [-100, -100, -100, -100, 7, -100]])  # 4 answer tokens, then 1
    token = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1),
                                              ignore_index=-100, reduction="none").view(2, 5)
    caption_loss, word_loss = token[0, 1:].mean(), token[1, 3]
    per_example = pretrain.example_mean_loss(logits, labels)
    assert torch.isclose(per_example, (caption_loss + word_loss) / 2)
    assert not torch.isclose(per_example, token[labels[:, 1:] != -100].mean())  # the token mean: 1/5 for the word
    same = labels.clone()
    same[1] = same[0]
    assert torch.isclose(pretrain.example_mean_loss(logits, same), token[0, 1:].mean() / 2
                         + torch.nn.functional.cross_entropy(logits[1, 1:5], same[1, 2:6]) / 2)
    assert not pretrain.PretrainConfig().loss_per_example  # off by default


def test_the_vision_tower_trains_at_its_own_learning_rate(tmp_path):
    """Pretraining with vision_learning_rate 0 moves the language model but leaves every weight of
    the vision tower (patch embedding, blocks, mergers) as built."""
    ctx = RecordingContext(tmp_path / "run")
    config = pretrain.PretrainConfig(hidden_size=32, layers=1, vision_hidden_size=32, vision_depth=1, vocab_size=600,
                                     tokenizer_pairs=2, batch_size=4, learning_rate=5e-3, vision_learning_rate=0.0,
                                     warmup_steps=0, max_steps=2, eval_images=1, restate_requests=2, exclude_heldout=20)
    folder = Path(pretrain.run(config, ctx)["model"])
    built = build_tiny_qwen3vl(tmp_path / "built", seed=config.seed, hidden_size=32, num_layers=1,
                               vision_hidden_size=32, vision_depth=1, patch_size=config.patch_size,
                               tokenizer=load_processor(str(folder)).tokenizer)
    trained, initial = load_file(folder / "model.safetensors"), load_file(built / "model.safetensors")
    vision = [name for name in trained if ".visual." in f".{name}"]
    assert any("merger" in name for name in vision) and any("patch_embed" in name for name in vision)
    assert all(torch.equal(trained[name], initial[name]) for name in vision)
    assert any(not torch.equal(trained[name], initial[name]) for name in trained if name not in vision)


def _vocabulary(folder: Path) -> dict[str, int]:
    return json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny base pretrained for 12 captioning steps."""
    ctx = RecordingContext(tmp_path_factory.mktemp("pretrain"))
    config = pretrain.PretrainConfig(hidden_size=32, layers=1, vision_hidden_size=32, vision_depth=1, vocab_size=600,
                                     tokenizer_pairs=4, batch_size=8, learning_rate=5e-3, warmup_steps=0,
                                     max_steps=12, eval_images=2, restate_requests=2, exclude_heldout=20)
    return pretrain.run(config, ctx), ctx


@pytest.mark.slow
def test_pretraining_lowers_the_caption_loss_and_reports_caption_accuracy(base):
    summary, ctx = base
    losses = [value for _, name, value in ctx.metrics if name == "loss"]
    assert summary["step"] == 12 and min(losses[-3:]) < losses[0]
    report = json.loads((ctx.run_dir / "model" / pretrain.REPORT_FILE).read_text())
    assert report["captions"]["images"] == 2 and 0 <= report["captions"]["colour"] <= 1
    assert report["excluded_requests"] > 0


@pytest.mark.slow
def test_distill_and_bt_start_from_the_pretrained_base_and_keep_its_tokenizer(base, tmp_path):
    folder = Path(base[0]["model"])
    weights = load_file(str(folder / "model.safetensors"))
    vocabulary = _vocabulary(folder)
    rationales, dataset = scripted_dataset(tmp_path, ["pairwise"], eval_fraction=0.0)
    # learning rates 0: one step leaves the weights where they started, so the saved models show where that was
    student = distill.run(distill.DistillConfig(dataset=str(dataset), base=str(folder), learning_rate=0.0,
                                                max_steps=1, device="cpu"), RecordingContext(tmp_path / "student"))
    reward = bt.run(bt.BTConfig(rationales=str(rationales), base=str(folder), learning_rate=0.0,
                                vision_learning_rate=0.0, warmup_steps=0, max_steps=1), RecordingContext(tmp_path / "bt"))
    for saved in (Path(student["critic"]), Path(reward["model"])):
        started = load_file(str(saved / "model.safetensors"))
        assert all(torch.equal(started[name], value) for name, value in weights.items())
        assert _vocabulary(saved) == vocabulary
    assert not (tmp_path / "student" / "base").exists() and not (tmp_path / "bt" / "base").exists()


@pytest.mark.slow
def test_pretraining_continues_from_a_base_folder_and_reports_the_restatement_rate(base, tmp_path):
    folder = Path(base[0]["model"])
    weights = load_file(str(folder / "model.safetensors"))
    config = pretrain.PretrainConfig(init=str(folder), request_tasks=0.5, curriculum=0.0, batch_size=4,
                                     learning_rate=0.0, vision_learning_rate=0.0, warmup_steps=0, max_steps=1,
                                     eval_images=2, restate_requests=3, exclude_heldout=20)
    config.validate()
    summary = pretrain.run(config, RecordingContext(tmp_path / "more"))
    continued = load_file(str(Path(summary["model"]) / "model.safetensors"))
    assert all(torch.equal(continued[name], value) for name, value in weights.items())  # started from the base
    assert _vocabulary(Path(summary["model"])) == _vocabulary(folder)
    report = json.loads((Path(summary["model"]) / pretrain.REPORT_FILE).read_text())
    restated = report["restated"]
    assert restated["requests"] == 3 and 0 <= restated["word_for_word"] <= 1
    assert restated["gap"] == round(restated["loss_other_request"] - restated["loss_own_request"], 4)
    assert [e["request"] for e in report["restatement_examples"]] == heldout_request_list(3, HELDOUT_SEED)
    with pytest.raises(ConfigError, match="own output folder"):
        pretrain.run(replace(config, init=str(tmp_path / "more" / "model")), RecordingContext(tmp_path / "more"))


@pytest.mark.slow
def test_a_base_trained_with_request_checks_reports_its_answers_on_held_out_pairs(base, tmp_path):
    assert "request_checks" not in base[0] and "object_checks" not in base[0]  # off by default
    config = pretrain.PretrainConfig(init=base[0]["model"], request_checks=0.5, object_checks=0.25, curriculum=0.0,
                                     batch_size=4,
                                     warmup_steps=0, max_steps=1, eval_images=4, restate_requests=0,
                                     exclude_heldout=20)
    report = json.loads((Path(pretrain.run(config, RecordingContext(tmp_path / "checks"))["model"])
                         / pretrain.REPORT_FILE).read_text())
    truth = pretrain.heldout_checks(4, 64)
    assert [c.request for c in truth] == [p.prompt for p in shapes_pairs(4, seed=HELDOUT_SEED, flip_rate=0.0)]
    assert report["request_checks"]["checks"] == 4 and 0 <= report["request_checks"]["flags"] <= 1
    assert [e["truth"] for e in report["request_check_examples"]] == [c.answer for c in truth]
    objects = pretrain.heldout_object_checks(4, 64)  # one faulty object and one right one
    assert report["object_checks"]["checks"] == len(objects) == 2 and report["object_checks"]["faulty"] == 1
    assert [e["truth"] for e in report["object_check_examples"]][:1] == [objects[0].answer]


@pytest.mark.slow
def test_a_request_first_base_is_trained_and_asked_with_the_request_before_the_image(base, tmp_path):
    config = pretrain.PretrainConfig(init=base[0]["model"], object_checks=0.5, request_tasks=0.25, request_first=True,
                                     curriculum=0.0, batch_size=4, warmup_steps=0, max_steps=1, eval_images=4,
                                     restate_requests=2, exclude_heldout=20)
    summary = pretrain.run(config, RecordingContext(tmp_path / "first"))
    report = json.loads((Path(summary["model"]) / pretrain.REPORT_FILE).read_text())
    assert report["config"]["request_first"] and report["object_checks"]["checks"] == 2
    assert 0 <= report["object_checks"]["auc"] <= 1
    assert report["restated"]["requests"] == 2
    processor = load_processor(summary["model"])
    check = pretrain.heldout_object_checks(4, 64)[0]
    inputs = pretrain.question_inputs(processor, check.image, check.question, request_first=True)
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    assert text.index(f"User Instruction: {check.request}") < text.index("<|vision_start|>") < text.index("Is the ")


@pytest.mark.slow
def test_a_verdict_base_reports_how_its_verdicts_separate_faulty_objects_read_right_after_each_name(base, tmp_path):
    config = pretrain.PretrainConfig(init=base[0]["model"], object_verdicts=0.5, request_first=True, curriculum=0.0,
                                     batch_size=4, warmup_steps=0, max_steps=1, eval_images=4, restate_requests=0,
                                     exclude_heldout=20)
    summary = pretrain.run(config, RecordingContext(tmp_path / "verdicts"))
    report = json.loads((Path(summary["model"]) / pretrain.REPORT_FILE).read_text())
    objects = pretrain.heldout_object_checks(4, 64)
    assert report["object_verdicts"]["checks"] == len(objects) == 2 and 0 <= report["object_verdicts"]["auc"] <= 1
    assert report["object_verdict_examples"][0]["truth"] == verdict_answer(object_checks_in(objects[0].request,
                                                                                           objects[0].image))
    assert "sighted_verdicts" not in report
    sighted = pretrain.run(replace(config, verdict_sightings=True), RecordingContext(tmp_path / "sighted"))
    report = json.loads((Path(sighted["model"]) / pretrain.REPORT_FILE).read_text())
    assert " (seen: " in report["object_verdict_examples"][0]["truth"]
    assert 0 <= report["sighted_verdicts"]["sightings_exact"] <= 1 and 0 <= report["sighted_verdicts"]["auc"] <= 1


@pytest.mark.slow
def test_the_object_check_bench_rescores_a_saved_base_without_changing_it(base, capsys):
    folder = Path(base[0]["model"])
    weights = (folder / "model.safetensors").read_bytes()
    parrot_object_checks.main(["--base", str(folder), "--eval-images", "4"])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["base"] == str(folder) and not row["request_first"]
    assert row["object_checks"]["checks"] == 2 and 0 <= row["object_checks"]["auc"] <= 1
    assert set(row["object_checks"]["above_right_median"]) <= {"missing", "shape", "colour", "size", "position"}
    parrot_object_checks.main(["--base", str(folder), "--drawn", "8", "--exclude-heldout", "5"])
    drawn = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert drawn["checks"] == "8 drawn" and drawn["object_checks"]["checks"] == 8
    assert 0 < drawn["object_checks"]["faulty"] < 8  # drawn half faulty, as training draws them
    for described in ([], ["--described"]):
        parrot_object_checks.main(["--base", str(folder), "--eval-images", "4", "--verdicts", *described])
        verdicts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert verdicts["object_verdicts"]["checks"] == 2 and 0 <= verdicts["object_verdicts"]["auc"] <= 1
        assert ("\n" in verdicts["object_verdict_examples"][0]["truth"]) == bool(described)
    parrot_object_checks.main(["--base", str(folder), "--eval-images", "4", "--verdicts", "--sightings"])
    sighted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sighted["sighted_verdicts"]["examples"][0]["seen"] == pretrain.heldout_object_checks(4, 64)[0].seen
    assert (folder / "model.safetensors").read_bytes() == weights


def test_text_checks_give_the_description_in_words_and_a_one_line_rule_answers_them():
    checks = parrot_text_checks.text_checks(40, seed=3, exclude=set())
    faulty = [c for c in checks if c.problems]
    assert faulty and len(checks) > len(faulty)
    assert all(parrot_text_checks.rule_says_faithful(c) == (not c.problems) for c in checks)
    check = faulty[0]
    lines = check.question.splitlines()
    assert lines[0] == f"User Instruction: {check.request}" and lines[1].endswith(check.description)
    assert lines[2] == f"Is the {check.asked} drawn as asked?" and not check.record("no")["images"]
    faulty_in, right_in, held = parrot_text_checks.split(checks, 2, seed=0)
    assert sum(bool(c.problems) for c in held) == 2 == len(held) - 2  # balanced
    assert not {c.request for c in held} & {c.request for c in faulty_in + right_in}  # no held-out request trained


def test_scene_checks_need_no_image_and_the_rule_answers_them():
    drawn = parrot_text_checks.balanced(parrot_text_checks.scene_checks(random.Random(1), set()), random.Random(2), 60)
    faulty = [c for c in drawn if c.problems]
    assert 15 <= len(faulty) <= 45  # drawn at even odds
    assert all(parrot_text_checks.rule_says_faithful(c) == (not c.problems) for c in drawn)
    assert {pretrain.fault_kind(c) for c in faulty} >= {"missing", "colour", "shape"}
    first = next(parrot_text_checks.scene_checks(random.Random(1), set()))
    assert next(parrot_text_checks.scene_checks(random.Random(1), {first.request})).request != first.request
    bare = replace(faulty[0], with_request=False)
    assert bare.question.splitlines() == [f"The image shows: {bare.description}", f"Is the {bare.asked} drawn as asked?"]


def test_verdict_checks_name_each_requested_object_in_order_with_its_verdict():
    group = next(g for g in parrot_text_checks.scene_groups(random.Random(4), set())
                 if len(g) > 2 and any(c.problems for c in g))
    listed = [replace(c, verdicts=True) for c in group]
    assert [c.asked for c in listed] == [describe(o, article=False) for o in dict.fromkeys(
        parse_prompt(group[0].request).objects)]  # the request's order
    whole = listed[-1].target
    assert whole == "; ".join(f"the {c.asked} is {'wrong' if c.problems else 'drawn'}" for c in listed)
    for check in listed:
        assert whole.startswith(check.answer_prefix) and check.answer_prefix.endswith(f"the {check.asked}")
    assert listed[0].question.endswith("Which requested objects are drawn as asked?")
    assert group[0].answer_prefix == "" and group[0].target in ("yes", "no")
    assert parrot_text_checks.last_of_each(listed[1:] + listed[:1]) == [listed[-1]]  # one whole answer each


def test_the_prompt_token_loss_counts_the_prompt_s_own_tokens_only():
    ids = torch.tensor([[5, 6, 7, 8, 9, 0]])
    batch = {"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0]]),
             "labels": torch.tensor([[-100, -100, -100, 8, 9, -100]])}
    logits = torch.randn(1, 6, 12)
    ce = torch.nn.functional.cross_entropy
    assert torch.isclose(pretrain.prompt_token_loss(logits, batch, set()), ce(logits[0, :2], ids[0, 1:3]))
    assert torch.isclose(pretrain.prompt_token_loss(logits, batch, {7}), ce(logits[0, :1], ids[0, 1:2]))


def test_verdict_tokens_weigh_as_asked_in_the_answer_loss_and_nothing_else_changes():
    labels = torch.tensor([[-100, -100, 4, 7, 5, -100]])  # answer tokens 4, 7, 5 (predicted at positions 1-3)
    logits = torch.randn(1, 6, 12)
    per_token = torch.nn.functional.cross_entropy(logits[0, 1:4], labels[0, 2:5], reduction="none")
    plain = pretrain.weighted_token_loss(logits, labels, [7], 1.0)
    assert torch.isclose(plain, per_token.mean())
    heavy = pretrain.weighted_token_loss(logits, labels, [7], 10.0)
    assert torch.isclose(heavy, (per_token[0] + 10 * per_token[1] + per_token[2]) / 12)
    tokenizer = _WordTokenizer()
    for word in ("the", "red", "star", "is_", "drawn", "wrong"):
        tokenizer.encode(word)
    drawn, wrong = pretrain.verdict_fork_ids(tokenizer)  # both verdicts start with "is_": they part after it
    assert (drawn, wrong) == (tokenizer.ids["drawn"], tokenizer.ids["wrong"])
    with pytest.raises(ConfigError, match="verdict_weight"):
        pretrain.PretrainConfig(object_verdicts=0.5, verdict_weight=5, loss_per_example=True).validate()


def test_a_lookup_is_answered_by_whether_the_asked_object_is_listed():
    rng, answers = random.Random(0), []
    for _ in range(60):
        record, [listed] = parrot_lookup.lookup(rng, 3)
        shown, question = record["messages"][0]["content"].split("\n")
        listing = [o.removeprefix("a ") for o in shown.removeprefix("The image shows: ").split(", ")]
        asked = question.removeprefix("Is the ").removesuffix(" drawn as asked?")
        assert 1 <= len(listing) <= 3 and (asked in listing) == listed
        answers.append(record["messages"][1]["content"])
        assert answers[-1] == ("yes" if listed else "no")
    assert 15 <= answers.count("yes") <= 45
    record, listed = parrot_lookup.lookup(rng, 3, queries=4)
    verdicts = record["messages"][1]["content"].split("; ")
    assert record["messages"][0]["content"].endswith("Which of the asked objects are drawn?") and len(verdicts) == 4
    assert [v.endswith(" is drawn") for v in verdicts] == listed
    listed_once = frozenset(parrot_lookup.lookup_key([o], o) for o in OBJECT_WORDS)  # every "yes" of a one-object list
    assert not any(parrot_lookup.lookup(rng, 1, avoid=listed_once)[1][0] for _ in range(40))  # all drawn again
    held, _ = parrot_lookup.lookup(rng, 3)
    key = parrot_lookup._held_key(held)
    assert key[1] in held["messages"][0]["content"] and key[0] in held["messages"][0]["content"]
    copy = parrot_lookup.repeat(rng, 3)
    assert copy["messages"][0]["content"].split("\n")[0].removeprefix("The image shows: ") == copy["messages"][1]["content"]


@pytest.mark.slow
def test_the_lookup_bench_copies_then_looks_up_and_leaves_the_base_unchanged(base, capsys):
    folder = Path(base[0]["model"])
    weights = (folder / "model.safetensors").read_bytes()
    parrot_lookup.main(["--base", str(folder), "--copy-steps", "1", "--steps", "2", "--eval-every", "1",
                        "--batch", "2", "--eval-lookups", "6"])
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [row["step"] for row in rows] == [0, 1, 2] and rows[0]["loss"] is None
    assert 0 <= rows[1]["copy_token_accuracy"] <= 1 and "copy_token_accuracy" not in rows[0]
    assert all(0 <= row["auc"] <= 1 and 0 <= row["sign_accuracy"] <= 1 for row in rows)
    assert (folder / "model.safetensors").read_bytes() == weights


@pytest.mark.slow
def test_the_text_check_bench_trains_a_base_copy_and_reports_the_separation_as_it_goes(base, capsys):
    folder = Path(base[0]["model"])
    weights = (folder / "model.safetensors").read_bytes()
    parrot_text_checks.main(["--base", str(folder), "--pairs", "60", "--heldout", "3", "--steps", "2",
                             "--eval-every", "1", "--batch", "2", "--exclude-heldout", "5"])
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert rows[0]["rule_accuracy"] == 1.0 and rows[0]["heldout"] == 6
    assert [row["step"] for row in rows[1:]] == [0, 1, 2] and rows[1]["loss"] is None and rows[-1]["loss"] > 0
    assert all(0 <= row["auc"] <= 1 and 0 <= row["sign_accuracy"] <= 1 for row in rows[1:])
    assert (folder / "model.safetensors").read_bytes() == weights
    parrot_text_checks.main(["--base", str(folder), "--pairs", "60", "--heldout", "3", "--steps", "1",
                             "--eval-every", "1", "--batch", "2", "--exclude-heldout", "5", "--scene-checks",
                             "--no-request", "--prompt-loss", "1"])
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert rows[0]["train_checks"] == "fresh from scenes" and rows[-1]["loss"] > 0
    assert all(0 <= row["scene_checks"]["auc"] <= 1 for row in rows[1:])
    assert (folder / "model.safetensors").read_bytes() == weights


def test_a_base_names_each_colour_and_shape_with_one_token_and_with_object_words_each_pair(tmp_path):
    config = pretrain.PretrainConfig(hidden_size=32, layers=1, vision_hidden_size=32, vision_depth=1, vocab_size=600,
                                     tokenizer_pairs=4, exclude_heldout=5, atomic_words=True)
    _, processor = pretrain.build_base(config, tmp_path / "atomic", set())
    pieces = processor.tokenizer.tokenize("a small purple star at the top left")
    assert [processor.tokenizer.convert_tokens_to_string([p]) for p in pieces][2:4] == [" purple", " star"]
    config.object_words = True
    _, processor = pretrain.build_base(config, tmp_path / "objects", set())
    pieces = processor.tokenizer.tokenize("a small purple star at the top left")
    assert [processor.tokenizer.convert_tokens_to_string([p]) for p in pieces][2] == " purple star"


@pytest.mark.slow
def test_a_base_trained_with_flaw_questions_reports_their_answers_per_flaw_kind(base, tmp_path):
    assert "questions" not in base[0]  # off by default
    config = pretrain.PretrainConfig(init=base[0]["model"], flaw_questions=0.5, loss_per_example=True,
                                     curriculum=0.0, batch_size=4,
                                     warmup_steps=0, max_steps=1, eval_images=3, restate_requests=0,
                                     exclude_heldout=20)
    report = json.loads((Path(pretrain.run(config, RecordingContext(tmp_path / "flaws"))["model"])
                         / pretrain.REPORT_FILE).read_text())
    truth = pretrain.heldout_renders(config, heldout_requests(20, HELDOUT_SEED))
    kinds = {s.flaw for s in truth}
    assert set(report["questions"]["flaw_kinds"]) == kinds == set(report["captions"]["flaw_kinds"])
    assert report["questions"]["images"] == 3 and 0 <= report["questions"]["flaw"] <= 1
    assert "letters" in report["captions"] and "letters" in report["questions"]
