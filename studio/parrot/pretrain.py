"""A pretrained shapes-world VLM base for PARROT students and the Bradley-Terry baseline.

The paper's students start from a VLM that already perceives; no such weights exist for the
shapes world, and a tiny Qwen3-VL trained from random weights on ~1,000 preference pairs never
learns to see. This job builds the miniature analogue: a tiny Qwen3-VL with a protocol tokenizer
(learnt from the prompt templates, the critic protocol's prompts and answers on fresh world pairs,
and the caption vocabulary), trained to **caption** fresh shapes-world renders
(``studio.parrot.captions``: objects, sizes, colours, positions, the word, an image flaw; held-out
requests of the PARROT bench excluded by text). From random weights the captions alone never
make it look at the image; a curriculum does (``--curriculum``, on by default: one object seen
close up, zooming out, then more and smaller objects). It ends by captioning held-out renders and
printing per-attribute accuracy and how much its caption loss depends on the image. With
``--request-tasks P`` a share P of the examples carry a shapes-world request in the prompt and
restate it word for word before the caption, so the base learns to read its prompt; it reports the
held-out requests it restates word for word (``restated``). With ``--flaw-questions P`` a share P
asks "What flaw does the image have?" or "What word is written?" with a one-token answer, so the
flaw and the word carry a whole example's loss; it reports those answers' accuracy (``questions``).
With ``--request-checks P`` a share P carries a request and an image drawn for it (sometimes
faithful, sometimes with a missing, extra or wrongly drawn object) and asks what in the image
differs from it, answered in the reference critic's words or "nothing", so the base learns to
compare its prompt with the image; it reports those answers on the bench's held-out pairs
(``request_checks``). ``--check-faithful S`` makes a share S of those images faithful (pairs
draw about two in three), so faults are seen more often; ``--check-describe`` makes each check's
answer describe the image first, then name the differences. With ``--object-checks P`` a share P
asks about one object the request names ("Is the small blue square in the centre drawn as asked?"
-> "yes" / "no: the square in the centre is green instead of blue"), a lookup instead of a whole
comparison; ``--check-faithful`` sets the share of those answered "yes"; it reports them on the
bench's held-out pairs (``object_checks``). With ``--object-verdicts P`` a share P asks which requested
objects are drawn as asked and is answered with every one's verdict right after its name ("the purple
star is drawn; the red circle is wrong"); it reports how the verdicts separate faulty from right objects
on the bench's held-out pairs (``object_verdicts``). ``--verdict-sightings`` writes, between each name and
its verdict, what the image shows in that object's place ("the red circle (seen: red square) is wrong"),
read given the true sighting and after the model's own (``sighted_verdicts``); ``--pair-sightings P`` asks
the same of both images of a pair in the critic's two-image layout; ``--verdict-weight W`` counts the
verdict's deciding token W times in the loss.
``--flaw-warmup N`` first asks only the flaw question for N steps, about objects seen close up;
``--flaw-every K`` makes every K-th step ask only the flaw question.
``--init DIR`` continues from an
existing base folder instead of building one. The result,
``model/``, is a ``save_pretrained`` folder that ``parrot distill --base`` and ``parrot bt --base`` start from.

    python -m studio parrot pretrain --max-minutes 20 --max-steps 1000 --run-dir runs/shapes-vlm
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, get_scheduler

from models.critic.critic_transformers import load_processor
from models.critic.protocol_tokenizer import sharegpt_texts, template_texts, train_protocol_tokenizer
from models.critic.scoring import ScoringPolicy
from models.critic.tiny_qwen import build_tiny_qwen3vl
from models.errors import ConfigError, InvalidInputError, NotFoundError
from models.shapes.assess import RIGHT, SEEN_CLOSE, SEEN_NOTHING, SEEN_OPEN, WRONG, sighting_prefix
from models.shapes.critic_shapes import ShapesCritic
from models.shapes.world import CONTENT_WORDS, OBJECT_WORDS, POSITIONS, detailed_prompt, random_scene
from models.types import Critique, CritiqueRequest
from studio.config import _check_float, _check_int
from studio.jobs.context import JobContext
from studio.jobs.entry import run_kind
from studio.parrot.captions import (
    CAPTION_REQUEST, CURRICULUM, FLAW_CLOSE_UP, FLAW_QUESTION, FLAWS, FULL, NO_FLAW, NO_PREFIX, NOTHING, OBJECT_CHECK,
    PAIR_VERDICT_QUESTION, QUESTION_SCENES, REQUEST_CHECK, REQUEST_TASK, VERDICT_QUESTION, WORD_QUESTION, YES, CaptionSample, ObjectCheck,
    PairVerdicts, RequestCheck, SceneStage, ask_cell, ask_flaw_or_word, caption, caption_samples, caption_scores, cell_question,
    fault_kind, heldout_request_list, heldout_requests, object_check_scores, object_checks, object_checks_in,
    object_verdicts, pair_verdicts, question_scores, request_answer, request_check, request_check_question, request_check_scores,
    request_checks, request_question, request_texts, restated_share, verdict_answer, verdict_start, zoom_in,
)
from studio.parrot.examples import IMAGE_TOKEN, pairwise_answer, pairwise_prompt, sharegpt_to_messages, to_sharegpt
from studio.parrot.pairs import HELDOUT_SEED, shapes_pairs
from studio.parrot.student_data import IGNORE, collate, encode

logger = logging.getLogger(__name__)

REPORT_FILE = "pretrain.json"


@dataclass
class BaseSizes:
    """The sizes of a new shapes VLM base and of its protocol tokenizer, its renders' flaw share,
    the held-out requests never drawn and the seed (shared by ``parrot pretrain`` and ``parrot vision``)."""

    hidden_size: int = field(default=256, metadata={"help": "text width (and the vision tower's output)"})
    layers: int = field(default=4, metadata={"help": "language model layers"})
    vision_hidden_size: int = field(default=128, metadata={"help": "vision tower width"})
    vision_depth: int = field(default=3, metadata={"help": "vision tower blocks"})
    patch_size: int = field(default=8, metadata={"help": "image patch side in pixels: 4, 8 or 16 (merged 2x2, so "
                                                         "a 64-px render is 64, 16 or 4 visual tokens)"})
    image_size: int = field(default=64, metadata={"help": "render side in pixels (the PARROT pairs' size)"})
    vocab_size: int = field(default=2048, metadata={"help": "protocol tokenizer vocabulary"})
    tokenizer_pairs: int = field(default=300, metadata={"help": "world pairs critiqued for the tokenizer's corpus"})
    atomic_words: bool = field(default=False, metadata={
        "help": "make each of the world's colours, shapes, sizes and places one token wherever it appears, so a "
                "request and a description name a thing with the same ids (docs/parrot.md, nineteenth step)"})
    object_words: bool = field(default=False, metadata={
        "help": "make each colour-shape pair (\"purple star\") one token too, so that which colour "
                "goes with which shape is in the token (docs/parrot.md, twentieth step)"})
    flaw_prob: float = field(default=0.5, metadata={"help": "share of renders with an image flaw"})
    exclude_heldout: int = field(default=2000,
                                 metadata={"help": "requests of the bench's held-out pairs never drawn as scenes"})
    seed: int = field(default=0, metadata={"help": "seed of the weights, the scenes and the tokenizer corpus"})


@dataclass
class PretrainConfig(BaseSizes):
    """Pretrain a tiny Qwen3-VL to caption shapes-world renders (the base of PARROT students)."""

    batch_size: int = field(default=32, metadata={"help": "captions per step"})
    learning_rate: float = field(default=2e-3, metadata={"help": "peak learning rate (cosine decay)"})
    vision_learning_rate: float = field(
        default=3e-4, metadata={"help": "peak learning rate of the vision tower and its mergers (at 1e-3 or more "
                                        "from random weights it loses a small object's colour within 25 steps)"})
    warmup_steps: int = field(default=50, metadata={"help": "linear warm-up steps"})
    curriculum: float = field(
        default=0.45, metadata={"help": "share of the steps spent on easier scenes first, in three equal parts: one "
                                         "large object in the centre seen from 3x closer zooming out to its true "
                                         "size, one large object anywhere, up to two objects; then every scene "
                                         "(0: every scene from the start, which stays blind)"})
    cell_questions: float = field(
        default=0.0, metadata={"help": "share of the examples that ask what one grid cell holds "
                                        "(\"What is at the top left?\") instead of asking for the caption"})
    request_tasks: float = field(
        default=0.0, metadata={"help": "share of the examples whose prompt carries a shapes-world request (held-out "
                                        "requests excluded) and whose answer restates it word for word, then "
                                        "captions the image: teaches the base to read its prompt"})
    flaw_questions: float = field(
        default=0.0, metadata={"help": "share of the examples that ask the image's flaw (\"What flaw does the image "
                                        "have?\" -> \"blur\" / \"none\") or its word (\"What word is written?\" "
                                        "-> \"AB\" / \"none\") at even odds, about scenes with a word 60% of the "
                                        "time: teaches the base what a caption says in its last tokens"})
    request_checks: float = field(
        default=0.0, metadata={"help": "share of the examples whose prompt carries a text-to-image request and whose "
                                        "image is drawn for it as a preference pair's (sometimes faithful, "
                                        "sometimes with a missing, extra or wrongly drawn object), asking what in "
                                        "the image differs from the request; the answer is the reference "
                                        "critic's Text Faithfulness findings or \"nothing\": teaches the base to "
                                        "compare its prompt with the image"})
    check_faithful: float = field(
        default=-1.0, metadata={"help": "share of the request checks (--request-checks) whose image is faithful to "
                                         "its request, of the object checks (--object-checks) whose object is "
                                         "drawn as asked, and of the verdict lists (--object-verdicts) whose every "
                                         "object is, so faults can be drawn more often (negative: as preference "
                                         "pairs draw them, about two in three images and 85% of objects right)"})
    object_checks: float = field(
        default=0.0, metadata={"help": "share of the examples whose prompt carries a text-to-image request and asks "
                                        "about one object it names (\"Is the small blue square in the centre drawn "
                                        "as asked?\"), with an image drawn for the request as a preference pair's; "
                                        "the answer is \"yes\" or \"no: \" and the reference critic's findings "
                                        "about that object: the comparison one lookup at a time"})
    object_verdicts: float = field(
        default=0.0, metadata={"help": "share of the examples whose prompt carries a text-to-image request and asks "
                                        "which requested objects are drawn as asked, with an image drawn for the "
                                        "request as a preference pair's; the answer names every object the request "
                                        "names once with its verdict right after it (\"the purple star is drawn; "
                                        "the red circle is wrong\"): the comparison as a verdict list, which a "
                                        "tiny language model learns over written descriptions far sooner than a "
                                        "yes / no lookup, though not yet over images (docs/parrot.md, twentieth "
                                        "and twenty-first steps)"})
    request_first: bool = field(default=False, metadata={
        "help": "examples that carry a request (request tasks, request checks, object checks, verdict lists) show "
                "its instruction line before the image and the question after it, as the critic protocol lays out "
                "its prompt, so the visual tokens can attend to the request (default: the image first, then all "
                "the text)"})
    check_describe: bool = field(default=False, metadata={
        "help": "a request check's answer first describes the image (the detailed prompt of the scene the analyzer "
                "reads in it), then names the differences after \"Differences: \", and a verdict list "
                "(--object-verdicts) opens with that description on a line of its own, so the comparison is "
                "between the request and the model's own words"})
    verdict_weight: float = field(
        default=1.0, metadata={"help": "how many times a verdict's deciding token (where \"is drawn\" and \"is "
                                        "wrong\" part) counts in the loss against any other answer token (1: the "
                                        "same); with --loss-per-example it must stay 1"})
    pair_sightings: float = field(
        default=0.0, metadata={"help": "share of the examples that show both images of a known-truth pair as the "
                                        "critic's pairwise prompt shows them (request, Image A, Image B) and ask "
                                        "which requested objects are drawn as asked in each; the answer is "
                                        "\"Image A: \" and A's sighted verdict list (--verdict-sightings), then "
                                        "\"Image B: \" and B's, as a sighting teacher's Text Faithfulness opens: "
                                        "each image read on its own in the student's two-image layout"})
    verdict_sightings: bool = field(default=False, metadata={
        "help": "each item of a verdict list (--object-verdicts) writes, between the object's name and its verdict, "
                "what the image shows in its place with the attributes the request gives (\"the small purple "
                "triangle at the bottom left (seen: small yellow triangle at the bottom left) is wrong\"; \"(seen: "
                "nothing)\" when it is missing): a caption of one place, then two phrases compared side by side"})
    flaw_zoom: float = field(
        default=0.0, metadata={"help": "share of the steps whose flaw questions (--flaw-questions) ask about one "
                                        "large centred object, flawed at --flaw-prob (blur, noise, colour bleed or "
                                        "a cut) or clean, seen 3x closer, zooming out to its true size by the "
                                        "share's end"})
    flaw_warmup: int = field(
        default=0, metadata={"help": "first steps that ask only the flaw question, about one large centred object "
                                      "(flawed at --flaw-prob: blur, noise, colour bleed or a cut) seen 3x closer "
                                      "and zooming out to its true size by their end; then the usual examples (0: "
                                      "none). The "
                                      "flaw questions of --flaw-questions alone never make the answer depend on "
                                      "the image (docs/parrot.md, tenth step)"})
    flaw_every: int = field(
        default=0, metadata={"help": "every this many steps, a step whose examples all ask the flaw question, as "
                                      "the mix would ask it then (a close-up within --flaw-zoom's share, else a "
                                      "render of every scene), so the flaw keeps a whole step's gradient "
                                      "through the run (0: none; at least 2)"})
    freeze_vision: bool = field(default=False, metadata={
        "help": "never train the vision tower and its mergers: for an --init base whose tower `parrot vision` "
                "trained, so the captions teach the language model to read the visual tokens as they are"})
    freeze_vision_after_warmup: bool = field(default=False, metadata={
        "help": "with --flaw-warmup: stop training the vision tower once the warm-up is over (the word questions "
                "and captions otherwise retrain it within ~25 steps into features that no longer carry the flaw)"})
    loss_per_example: bool = field(default=False, metadata={
        "help": "average the loss over each example's answer tokens, then over the batch, so a one-word answer "
                "weighs as much as a caption (default: over all answer tokens of the batch, where a flaw "
                "question's answer is ~1% of the loss)"})
    restate_requests: int = field(default=40, metadata={
        "help": "held-out requests restated (greedy) at the end, among the exclude_heldout ones; 0: not measured"})
    init: str = field(default="", metadata={"help": "a base folder (parrot pretrain's model/) to continue from, "
                                                    "with its tokenizer; the size settings are then unused. "
                                                    "Empty: build a new base"})
    max_steps: int = field(default=3000, metadata={"help": "optimizer steps (the schedule's length)"})
    max_minutes: float = field(default=0.0, metadata={"help": "end training after this long; 0: no limit"})
    eval_images: int = field(default=200, metadata={"help": "held-out renders captioned at the end"})

    def validate(self) -> None:
        """Raise ``ConfigError`` for a value out of range."""
        if self.patch_size not in (4, 8, 16):
            raise ConfigError(f"patch_size must be 4, 8 or 16; got {self.patch_size}.")
        _check_float("flaw_prob", self.flaw_prob, low=0, high=1)
        _check_float("curriculum", self.curriculum, low=0, high=1)
        _check_float("cell_questions", self.cell_questions, low=0, high=1)
        _check_float("request_tasks", self.request_tasks, low=0, high=1)
        _check_float("flaw_questions", self.flaw_questions, low=0, high=1)
        _check_float("request_checks", self.request_checks, low=0, high=1)
        _check_float("object_checks", self.object_checks, low=0, high=1)
        _check_float("object_verdicts", self.object_verdicts, low=0, high=1)
        _check_float("pair_sightings", self.pair_sightings, low=0, high=1)
        _check_float("verdict_weight", self.verdict_weight, low=0)
        if self.verdict_weight != 1 and self.loss_per_example:
            raise ConfigError("verdict_weight needs the token-mean loss; drop loss_per_example or keep the weight at 1.")
        if self.check_faithful >= 0:
            _check_float("check_faithful", self.check_faithful, low=0, high=1)
        _check_float("flaw_zoom", self.flaw_zoom, low=0, high=1)
        _check_int("flaw_warmup", self.flaw_warmup, low=0)
        if self.flaw_every == 1 or self.flaw_every < 0:
            raise ConfigError(f"flaw_every must be 0 (off) or at least 2; got {self.flaw_every} (1 would ask "
                              "nothing but the flaw).")
        if self.flaw_warmup >= self.max_steps:
            raise ConfigError(f"flaw_warmup ({self.flaw_warmup}) must be below max_steps ({self.max_steps}): the "
                              "warm-up steps are part of the schedule.")
        if self.freeze_vision_after_warmup and not self.flaw_warmup:
            raise ConfigError("freeze_vision_after_warmup needs flaw_warmup (the steps after which the tower stops).")
        shares = (self.cell_questions, self.request_tasks, self.flaw_questions, self.request_checks,
                  self.object_checks, self.object_verdicts, self.pair_sightings)
        if sum(shares) > 1:
            raise ConfigError("cell_questions + request_tasks + flaw_questions + request_checks + object_checks + "
                              f"object_verdicts + pair_sightings must be at most 1; got {' + '.join(map(str, shares))}.")
        if self.init and not (Path(self.init) / "config.json").is_file():
            raise NotFoundError(f"init {self.init!r} is not a model folder (no config.json); give parrot pretrain's "
                                "model/ folder.")
        if self.restate_requests > self.exclude_heldout:
            raise ConfigError(f"restate_requests ({self.restate_requests}) must be at most exclude_heldout "
                              f"({self.exclude_heldout}): only requests never drawn in training measure reading "
                              "(set restate_requests 0 to skip the measure).")
        _check_float("learning_rate", self.learning_rate, low=0)
        _check_float("vision_learning_rate", self.vision_learning_rate, low=0)
        _check_float("max_minutes", self.max_minutes, low=0)
        for name, low in (("hidden_size", 16), ("layers", 1), ("vision_hidden_size", 16), ("vision_depth", 1),
                          ("image_size", 32), ("vocab_size", 512), ("tokenizer_pairs", 0), ("batch_size", 1),
                          ("warmup_steps", 0), ("max_steps", 1), ("eval_images", 1), ("restate_requests", 0),
                          ("exclude_heldout", 0),
                          ("seed", 0)):
            _check_int(name, getattr(self, name), low=low)


def pair_record(pair: PairVerdicts) -> dict[str, Any]:
    """The sharegpt example of ``pair`` (``--pair-sightings``): the critic's pairwise prompt up to its second
    image (``pairwise_prompt``), then ``PAIR_VERDICT_QUESTION``; the answer is ``pair.answer``."""
    parts = pairwise_prompt("t2i", pair.request, pair.image_a, pair.image_b, None).messages[0]["content"]
    images = [i for i, part in enumerate(parts) if part["type"] == "image"]
    if len(images) != 2:
        raise InvalidInputError(f"The pairwise prompt has {len(images)} image parts; a pair example needs 2.")
    head = "".join(IMAGE_TOKEN if part["type"] == "image" else part["text"] for part in parts[:images[1] + 1])
    return {"messages": [{"role": "user", "content": f"{head}\n{PAIR_VERDICT_QUESTION}"},
                         {"role": "assistant", "content": pair.answer}],
            "images": [pair.image_a, pair.image_b]}


def image_record(image: Image.Image, question: str, answer: str, *, request_first: bool = False) -> dict[str, Any]:
    """One question about ``image`` and its answer, in the sharegpt form the distillation encodes:
    the image first, or with ``request_first`` after the question's first line (its instruction
    line), as the critic protocol places images after the request."""
    if request_first:
        instruction, newline, rest = question.partition("\n")
        if not newline:
            raise InvalidInputError(f"request_first needs an instruction line before the question; got {question!r}.")
        content = f"{instruction}\n{IMAGE_TOKEN}{rest}"
    else:
        content = IMAGE_TOKEN + question
    return {"messages": [{"role": "user", "content": content},
                         {"role": "assistant", "content": answer}],
            "images": [image]}


def caption_record(sample: CaptionSample, request: str = CAPTION_REQUEST, answer: str | None = None, *,
                   request_first: bool = False) -> dict[str, Any]:
    """An example about ``sample``'s image: by default the captioning request and its caption
    (``request_first`` as ``image_record``)."""
    return image_record(sample.image, request, sample.caption if answer is None else answer,
                        request_first=request_first)


def stage_at(step: int, config: PretrainConfig) -> tuple[SceneStage, float]:
    """The scenes drawn at ``step`` and how far through their stage it is (0 to 1): the
    curriculum's stages share its first ``curriculum`` of ``max_steps`` evenly, then the full
    distribution."""
    easy = config.curriculum * config.max_steps
    if step >= easy:
        return FULL, 0.0
    position = step * len(CURRICULUM) / easy
    index = min(int(position), len(CURRICULUM) - 1)
    return CURRICULUM[index], position - index


def training_records(config: PretrainConfig, exclude: set[str]) -> Callable[[int], dict[str, Any]]:
    """The source of training examples: ``draw(step)`` is a fresh scene of the stage at ``step``
    (seen as close as the stage's zoom is at that point) with its caption or, with probability
    ``cell_questions``, a cell question and its answer, or with probability ``request_tasks`` a
    request task about a fresh request not in ``exclude``, or with probability ``flaw_questions``
    a flaw or word question (after the curriculum about ``QUESTION_SCENES``, rich in words; in the
    first ``flaw_zoom`` of the steps a flaw question is about ``FLAW_CLOSE_UP``, zooming out), or
    with probability ``request_checks`` a request check (``request_checks``, not in ``exclude``), or
    with probability ``object_checks`` a one-object check (``object_checks``, not in ``exclude``), or with
    probability ``object_verdicts`` the verdict list of an image (``object_verdicts``, not in ``exclude``). The
    first ``flaw_warmup`` steps draw only flaw questions about ``FLAW_CLOSE_UP``, zooming out over them,
    and with ``flaw_every`` K every K-th step draws only flaw questions, as the mix asks them then."""
    rng = random.Random(config.seed + 1)
    requests = request_texts(random.Random(config.seed + 3), exclude)
    samplers = {stage: caption_samples(rng, size=config.image_size, flaw_prob=config.flaw_prob, exclude=exclude,
                                       stage=stage) for stage in (*CURRICULUM, FULL, QUESTION_SCENES, FLAW_CLOSE_UP)}
    faithful = config.check_faithful if config.check_faithful >= 0 else None
    checks = request_checks(random.Random(config.seed + 4), size=config.image_size, exclude=exclude,
                            faithful=faithful)
    one_object = object_checks(random.Random(config.seed + 5), size=config.image_size, exclude=exclude,
                               faithful=faithful)
    verdicts = object_verdicts(random.Random(config.seed + 6), size=config.image_size, exclude=exclude,
                               faithful=faithful)
    pairs = pair_verdicts(random.Random(config.seed + 7), size=config.image_size, exclude=exclude)
    shares = (config.cell_questions, config.request_tasks, config.flaw_questions, config.request_checks,
              config.object_checks, config.object_verdicts, config.pair_sightings)

    def close_up(step: int, steps: float) -> dict[str, Any]:
        seen = next(samplers[FLAW_CLOSE_UP])
        zoom = FLAW_CLOSE_UP.zoom + (1 - FLAW_CLOSE_UP.zoom) * step / steps
        return caption_record(zoom_in(seen, zoom), FLAW_QUESTION, seen.flaw)

    def draw(step: int) -> dict[str, Any]:
        if step < config.flaw_warmup:
            return close_up(step, config.flaw_warmup)
        only_flaw = flaw_step(step, config)
        task = rng.random() if any(shares) and not only_flaw else 1.0
        if sum(shares[:6]) <= task < sum(shares):
            return pair_record(next(pairs))
        if sum(shares[:5]) <= task < sum(shares[:6]):
            listed = next(verdicts)
            return image_record(listed[0].image, listed[0].verdict_question,
                                verdict_answer(listed, described=config.check_describe,
                                               sighted=config.verdict_sightings),
                                request_first=config.request_first)
        if sum(shares[:4]) <= task < sum(shares[:5]):
            asked = next(one_object)
            return image_record(asked.image, asked.question, asked.answer, request_first=config.request_first)
        if sum(shares[:3]) <= task < sum(shares[:4]):
            check = next(checks)
            answer = check.described_answer if config.check_describe else check.answer
            return image_record(check.image, request_check_question(check.request), answer,
                                request_first=config.request_first)
        stage, progress = stage_at(step, config)
        sample = next(samplers[stage])
        asks_flaw = only_flaw or sum(shares[:2]) <= task < sum(shares[:3])
        if asks_flaw and stage == FULL:
            sample = next(samplers[QUESTION_SCENES])
        if stage.zoom > 1:
            sample = zoom_in(sample, stage.zoom + (1 - stage.zoom) * progress)
        if task < config.cell_questions:
            return caption_record(sample, *ask_cell(sample.scene, rng))
        if task < sum(shares[:2]):
            request = next(requests)
            return caption_record(sample, request_question(request), request_answer(request, sample.caption),
                                  request_first=config.request_first)
        if asks_flaw:
            question, answer = (FLAW_QUESTION, sample.flaw) if only_flaw else ask_flaw_or_word(sample, rng)
            close = config.flaw_zoom * config.max_steps
            if question == FLAW_QUESTION and step < close:
                return close_up(step, close)
            return caption_record(sample, question, answer)
        return caption_record(sample)

    return draw


def flaw_step(step: int, config: PretrainConfig) -> bool:
    """Whether ``step`` is one of ``flaw_every``'s flaw-only steps: the last of each ``flaw_every`` steps."""
    return bool(config.flaw_every) and (step + 1) % config.flaw_every == 0


def parameter_groups(model: torch.nn.Module, lr: float, vision_lr: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: the vision tower (patch embedding, blocks, mergers) at ``vision_lr``,
    the rest of the model at ``lr``. A tiny Qwen3-VL from random weights needs the slower vision
    tower: at 1e-3 its first updates wash a small object out of the image features before the
    language model has learnt to read them (``bench.parrot_perception``, docs/parrot.md)."""
    vision, rest = [], []
    for name, param in model.named_parameters():
        (vision if ".visual." in f".{name}" else rest).append(param)
    if not vision:
        raise ConfigError(f"{type(model).__name__} has no vision tower (no parameter named *.visual.*).")
    return [{"params": vision, "lr": vision_lr}, {"params": rest, "lr": lr}]


def freeze_vision(model: torch.nn.Module) -> None:
    """Stop training the vision tower (the parameters ``parameter_groups`` trains at the vision rate):
    no gradient reaches it from here on, so the optimiser leaves it as it is."""
    for param in parameter_groups(model, 0.0, 0.0)[0]["params"]:
        param.requires_grad_(False)


def tokenizer_corpus(config: PretrainConfig, exclude: set[str]) -> list[str]:
    """The texts the base's tokenizer learns from: the prompt templates, pairwise prompts and
    answers of the reference critic on fresh world pairs (another seed than the bench's; held-out
    requests left out), and captions of random scenes with every flaw word."""
    texts = template_texts()
    critic, policy = ShapesCritic(perception_noise=0.2, seed=config.seed), ScoringPolicy()
    for pair in shapes_pairs(config.tokenizer_pairs, seed=HELDOUT_SEED + 1 + config.seed, flip_rate=0.0):
        if pair.prompt in exclude:
            continue
        a, b = critic.critique([CritiqueRequest(pair.task, pair.prompt, pair.image_a, pair.source_image),
                                CritiqueRequest(pair.task, pair.prompt, pair.image_b, pair.source_image)])
        if isinstance(a, Critique) and isinstance(b, Critique):
            prompt = pairwise_prompt(pair.task, pair.prompt, pair.image_a, pair.image_b, pair.source_image)
            record = to_sharegpt(prompt, pairwise_answer(a, b, policy), ["a", "b"])
            texts += [*sharegpt_texts([record]), a.raw]
    rng = random.Random(config.seed)
    texts += [CAPTION_REQUEST, NOTHING, *map(cell_question, POSITIONS)]
    texts += [caption(random_scene(rng), rng.choice((*FLAWS, NO_FLAW))) for _ in range(5000)]
    if config.request_tasks:
        texts.append(REQUEST_TASK)
    if config.flaw_questions or config.flaw_warmup or config.flaw_every:
        texts += [FLAW_QUESTION, WORD_QUESTION]
    if config.request_checks:
        texts.append(REQUEST_CHECK)
    if config.object_checks:
        texts += [OBJECT_CHECK, YES, NO_PREFIX]
    if config.object_verdicts:
        texts += [VERDICT_QUESTION, RIGHT, WRONG]
    if (config.object_verdicts and config.verdict_sightings) or config.pair_sightings:
        texts.append(f"{SEEN_OPEN}{SEEN_NOTHING}{SEEN_CLOSE}")
    if config.pair_sightings:
        texts.append(PAIR_VERDICT_QUESTION)
    return texts


def tokenizer_words(config: PretrainConfig) -> tuple[str, ...]:
    """The words and phrases the base's tokenizer keeps one token each (``atomic_words``, ``object_words``)."""
    return (*(CONTENT_WORDS if config.atomic_words else ()), *(OBJECT_WORDS if config.object_words else ()))


def build_base(config: PretrainConfig, folder: Path, exclude: set[str]) -> tuple[Any, Any]:
    """The base to train: ``config.init``'s model and processor, or, without it, an untrained one
    in ``folder``: a protocol tokenizer learnt from ``tokenizer_corpus`` and a tiny Qwen3-VL of
    ``config``'s sizes; returns ``(model, processor)``."""
    if config.init:
        if Path(config.init).resolve() == folder.resolve():
            raise ConfigError(f"init {config.init!r} is this run's own output folder; copy it elsewhere first.")
        return (AutoModelForImageTextToText.from_pretrained(config.init, dtype=torch.float32),
                load_processor(config.init))
    tokenizer = train_protocol_tokenizer(tokenizer_corpus(config, exclude), vocab_size=config.vocab_size,
                                         atomic_words=tokenizer_words(config))
    build_tiny_qwen3vl(folder, seed=config.seed, hidden_size=config.hidden_size, num_layers=config.layers,
                       vision_hidden_size=config.vision_hidden_size, vision_depth=config.vision_depth,
                       patch_size=config.patch_size, tokenizer=tokenizer)
    return AutoModelForImageTextToText.from_pretrained(str(folder), dtype=torch.float32), load_processor(str(folder))


def optimisation(model: torch.nn.Module, config: PretrainConfig) -> tuple[Any, Any]:
    """AdamW over ``parameter_groups`` and its warm-up + cosine schedule over ``max_steps``."""
    optimizer = torch.optim.AdamW(parameter_groups(model, config.learning_rate, config.vision_learning_rate),
                                  weight_decay=0.01)
    return optimizer, get_scheduler("cosine", optimizer, num_warmup_steps=config.warmup_steps,
                                    num_training_steps=config.max_steps)


def example_mean_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The next-token cross-entropy averaged over each example's answer tokens (``labels`` not
    ``IGNORE``), then over the examples that have any: every example weighs the same, whatever the
    length of its answer."""
    targets = labels[:, 1:]
    per_token = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                                                  ignore_index=IGNORE, reduction="none").view(targets.shape)
    counts = (targets != IGNORE).sum(1)
    return (per_token.sum(1)[counts > 0] / counts[counts > 0]).mean()


def prompt_token_loss(logits: torch.Tensor, batch: dict[str, Any], skip_ids: Iterable[int] = ()) -> torch.Tensor:
    """The next-token cross-entropy over the prompt's own tokens (attended, not answer tokens,
    none of ``skip_ids`` such as the visual placeholders): plain language-model pretraining on the
    request, description and question text, as a real LLM had before it was asked anything."""
    targets = batch["input_ids"][:, 1:]
    keep = (batch["attention_mask"][:, 1:] > 0) & (batch["labels"][:, 1:] == IGNORE)
    for token in skip_ids:
        keep &= targets != token
    per_token = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                                                  reduction="none").view(targets.shape)
    return (per_token * keep).sum() / keep.sum().clamp(min=1)


def weighted_token_loss(logits: torch.Tensor, labels: torch.Tensor, heavy: Sequence[int],
                        weight: float) -> torch.Tensor:
    """The next-token cross-entropy over the answer tokens (``labels`` not ``IGNORE``), each answer
    token whose id is in ``heavy`` counting ``weight`` times as much as the others."""
    targets = labels[:, 1:]
    per_token = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                                                  ignore_index=IGNORE, reduction="none").view(targets.shape)
    weights = torch.where(torch.isin(targets, torch.tensor(list(heavy), dtype=targets.dtype)), weight, 1.0)
    weights = weights * (targets != IGNORE)
    return (per_token * weights).sum() / weights.sum()


def verdict_fork_ids(tokenizer: Any, *, sighted: bool = False) -> tuple[int, int]:
    """The two token ids where a verdict list's "is drawn" and "is wrong" part (as ``fork_leaning``
    reads them), after an item in the form training writes (``sighted``: with its sighting). The loss
    weights these ids wherever an answer has them (with atomic words one of them is " is")."""
    prefix = sighting_prefix("red star", "red star" if sighted else "")
    one, two = (tokenizer.encode(prefix + answer, add_special_tokens=False) for answer in (RIGHT, WRONG))
    fork = next(i for i, (x, y) in enumerate(zip(one, two)) if x != y)
    return one[fork], two[fork]


def train_step(model: Any, batch: dict[str, Any], optimizer: Any, scheduler: Any, *,
               per_example: bool = False, prompt_weight: float = 0.0,
               heavy: tuple[Sequence[int], float] | None = None) -> float:
    """One optimiser step on ``batch`` (gradients clipped at norm 1); returns its answer loss,
    averaged over all answer tokens or, ``per_example``, per example first (``example_mean_loss``),
    or with ``heavy`` (token ids, weight) those tokens weighted so (``weighted_token_loss``).
    With ``prompt_weight`` the prompt's tokens are predicted too (``prompt_token_loss``), weighted so."""
    if per_example and heavy:
        raise ConfigError("A per-example loss and weighted tokens do not combine; choose one.")
    if per_example or prompt_weight or heavy:
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        loss = example_mean_loss(logits, batch["labels"]) if per_example else \
            weighted_token_loss(logits, batch["labels"], *heavy) if heavy else \
            torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch["labels"][:, 1:].flatten(),
                                              ignore_index=IGNORE)
        total = loss + prompt_weight * prompt_token_loss(logits, batch) if prompt_weight else loss
    else:
        loss = total = model(**batch).loss
    total.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    return loss.item()


def run(config: PretrainConfig, ctx: JobContext) -> dict[str, Any]:
    """Build the base, train it to caption, score captions of held-out renders, save ``model/``."""
    run_dir = Path(ctx.run_dir)
    folder = run_dir / "model"
    torch.manual_seed(config.seed)
    requests, truth, exclude = heldout_split(config)
    model, processor = build_base(config, folder, requests)
    optimizer, scheduler = optimisation(model, config)
    draw = training_records(config, exclude)
    pad_id = processor.tokenizer.pad_token_id
    summary: dict[str, Any] = {"stage": "pretrain", "parameters": sum(p.numel() for p in model.parameters()),
                               "excluded_requests": len(requests), "excluded_heldout_scenes": len(exclude - requests)}
    model.train()
    if config.freeze_vision:
        freeze_vision(model)
    started, step, loss = time.perf_counter(), 0, math.nan
    heavy = ((verdict_fork_ids(processor.tokenizer, sighted=config.verdict_sightings), config.verdict_weight)
             if config.verdict_weight != 1 else None)
    while step < config.max_steps:
        if config.freeze_vision_after_warmup and step == config.flaw_warmup:
            freeze_vision(model)
        batch = collate([encode(draw(step), processor, 512) for _ in range(config.batch_size)], pad_id)
        loss = train_step(model, batch, optimizer, scheduler, per_example=config.loss_per_example, heavy=heavy)
        step += 1
        ctx.metric(step, "loss", loss)
        ctx.progress(step, config.max_steps, f"loss {loss:.4f}")
        if ctx.should_stop():
            summary["status"] = "stopped"
            break
        if config.max_minutes and time.perf_counter() - started > 60 * config.max_minutes:
            summary["time_limit_reached"] = True
            break
    summary.update(step=step, last_loss=loss, train_seconds=round(time.perf_counter() - started, 1))
    model.eval()
    summary.update(evaluate(model, processor, truth, config.batch_size,
                            questions=bool(config.flaw_questions or config.flaw_warmup or config.flaw_every)))
    first = config.request_first
    if config.request_checks:
        summary.update(check_requests(model, processor, heldout_checks(config.eval_images, config.image_size),
                                      described=config.check_describe, request_first=first))
    if config.object_checks:
        summary.update(check_objects(model, processor, heldout_object_checks(config.eval_images, config.image_size),
                                     request_first=first))
    if config.object_verdicts:
        summary.update(check_object_verdicts(model, processor,
                                             heldout_object_checks(config.eval_images, config.image_size),
                                             request_first=first, described=config.check_describe,
                                             sighted=config.verdict_sightings))
    if config.restate_requests:
        summary.update(restatement(model, processor, config.restate_requests, truth, request_first=first))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / REPORT_FILE).write_text(json.dumps({"config": asdict(config), **summary}, indent=2), encoding="utf-8")
    ctx.artifact("shapes VLM base", folder, "model")
    summary.setdefault("status", "done")
    summary["model"] = str(folder)
    ctx.result(summary)
    return summary


def heldout_renders(config: PretrainConfig, exclude: set[str]) -> list[CaptionSample]:
    """The ``eval_images`` held-out renders a run is scored on (fixed by ``seed``; no scene of a
    request in ``exclude``)."""
    heldout = caption_samples(random.Random(config.seed + 2), size=config.image_size, flaw_prob=config.flaw_prob,
                              exclude=exclude)
    return [next(heldout) for _ in range(config.eval_images)]


def heldout_split(config: PretrainConfig) -> tuple[set[str], list[CaptionSample], set[str]]:
    """The bench's held-out requests, the held-out renders a run is scored on (``heldout_renders``)
    and what its training must never draw: those requests and the held-out renders' own scenes
    (their detailed prompts), so a scored scene is never a trained one, by identity."""
    requests = heldout_requests(config.exclude_heldout, HELDOUT_SEED)
    truth = heldout_renders(config, requests)
    return requests, truth, requests | {detailed_prompt(s.scene) for s in truth}


def evaluate(model: Any, processor: Any, truth: list[CaptionSample], batch_size: int, *,
             questions: bool) -> dict[str, Any]:
    """How the base reads ``truth``'s renders: ``image_reliance``, greedy ``captions`` scored per
    attribute (with ``caption_examples``), and with ``questions`` the answers to the flaw and the
    word question (``question_scores``)."""
    report: dict[str, Any] = {"image_reliance": image_reliance(model, processor, truth, batch_size)}
    predicted = [generate_caption(model, processor, s.image) for s in truth]
    report["captions"] = caption_scores(predicted, truth)
    report["caption_examples"] = [{"truth": s.caption, "predicted": p} for s, p in zip(truth[:5], predicted)]
    if questions:
        report["questions"] = question_scores(
            [generate_caption(model, processor, s.image, FLAW_QUESTION, 8) for s in truth],
            [generate_caption(model, processor, s.image, WORD_QUESTION, 8) for s in truth], truth)
    return report


@torch.no_grad()
def image_reliance(model: Any, processor: Any, samples: list[CaptionSample], batch_size: int) -> dict[str, float]:
    """Mean caption loss of ``samples`` with their own images and with each caption shown the
    next sample's image: a model that reads the image does worse with the wrong one (``gap`` > 0),
    a blind one equally well. More sensitive than greedy captions early in training."""
    if len(samples) < 2:
        return {}
    others = samples[1:] + samples[:1]
    return _loss_gap(model, processor, "image", [caption_record(s) for s in samples],
                     [caption_record(replace(s, image=o.image)) for s, o in zip(samples, others)], batch_size)


def heldout_check_images(count: int, size: int) -> list[tuple[str, Image.Image]]:
    """The requests of the bench's first ``count`` held-out pairs (never drawn in training), each
    with one of its images: image A of the first pair, image B of the second, and so on."""
    pairs = shapes_pairs(count, seed=HELDOUT_SEED, flip_rate=0.0, size=size)
    return [(p.prompt, p.image_a if i % 2 == 0 else p.image_b) for i, p in enumerate(pairs)]


def heldout_checks(count: int, size: int) -> list[RequestCheck]:
    """``count`` request checks on ``heldout_check_images``."""
    return [request_check(prompt, image) for prompt, image in heldout_check_images(count, size)]


def heldout_object_checks(count: int, size: int) -> list[ObjectCheck]:
    """One-object checks on ``count`` of ``heldout_check_images``, balanced: every faulty object
    (about one in nine) and as many of the right ones, the first in order, so a constant answer
    scores 0.5."""
    checks = [check for prompt, image in heldout_check_images(count, size) for check in object_checks_in(prompt, image)]
    faulty = [c for c in checks if c.problems]
    return faulty + [c for c in checks if not c.problems][:len(faulty)]


def check_objects(model: Any, processor: Any, checks: list[ObjectCheck], *,
                  request_first: bool = False) -> dict[str, Any]:
    """How the model checks ``heldout_object_checks`` (laid out as ``image_record`` with
    ``request_first``): greedy answers scored by ``object_check_scores``, with three faulty and two
    right examples."""
    if not checks:
        return {"object_checks": {"checks": 0, "note": "no faulty object among the held-out images; more "
                                                      "--eval-images draw more of them (about one in nine)"}}
    answers = [generate_caption(model, processor, c.image, c.question, 48, request_first=request_first)
               for c in checks]
    answered = list(zip(checks, answers))
    shown = answered[:3] + answered[3:][-2:]
    leaning = no_leaning(model, processor, checks, request_first=request_first)
    return {"object_checks": {**object_check_scores(answers, checks), **separation(leaning, checks)},
            "object_check_examples": [{"question": c.question, "truth": c.answer, "answer": a} for c, a in shown]}


def check_object_verdicts(model: Any, processor: Any, checks: list[ObjectCheck], *, request_first: bool = False,
                          described: bool = False, sighted: bool = False) -> dict[str, Any]:
    """How the model's verdict lists (``described``: after its description of the image) tell faulty
    objects from right ones in ``heldout_object_checks``: ``separation`` of ``verdict_leaning``, and
    the greedy verdict list of three of the images. ``sighted`` (``--verdict-sightings``): that
    reading is given the true sighting of each object, so it measures the comparison alone;
    ``sighted_verdicts`` reads the verdict after the model's own greedy sighting instead (``own_sightings``),
    with the share of sightings it writes exactly right."""
    if not checks:
        return {"object_verdicts": {"checks": 0, "note": "no faulty object among the held-out images"}}
    shown = list({id(c.image): c for c in checks}.values())[:3]
    ask = {"request_first": request_first, "described": described, "sighted": sighted}
    report = {"object_verdicts": {"checks": len(checks), "faulty": sum(bool(c.problems) for c in checks),
                                  **separation(verdict_leaning(model, processor, checks, **ask), checks)},
              "object_verdict_examples": [
                  {"request": c.request,
                   "truth": verdict_answer(object_checks_in(c.request, c.image), described=described, sighted=sighted),
                   "answer": generate_caption(model, processor, c.image, c.verdict_question,
                                              (160 if described else 64) * (2 if sighted else 1),
                                              request_first=request_first)} for c in shown]}
    if sighted:
        own = own_sightings(model, processor, checks, request_first=request_first, described=described)
        starts = [start for start, _ in own]
        right = [seen == c.seen for (_, seen), c in zip(own, checks)]
        report["sighted_verdicts"] = {
            "sightings_exact": _share(right),
            "sightings_unclosed": sum(not seen for _, seen in own),
            "sightings_exact_faulty": _share([r for r, c in zip(right, checks) if c.problems]),
            "sightings_exact_right": _share([r for r, c in zip(right, checks) if not c.problems]),
            "examples": [{"asked": c.asked, "seen": c.seen, "own": seen} for (_, seen), c in list(zip(own, checks))[:4]],
            **separation(fork_leaning(model, processor, (
                (question_inputs(processor, c.image, c.verdict_question, request_first=request_first), start)
                for c, start in zip(checks, starts)), (WRONG, RIGHT)), checks)}
    return report


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


@torch.no_grad()
def own_sightings(model: Any, processor: Any, checks: list[ObjectCheck], *, request_first: bool = False,
                  described: bool = False, max_new_tokens: int = 24) -> list[tuple[str, str]]:
    """For each check, the model's own sighting of its object: the verdict list up to the object's
    sighting as the truth has it (``verdict_start``), then the model's greedy words up to the sighting's
    close. Returns (that start with the model's sighting and its close, ready for the verdict; the
    sighting alone, "" when it never closes it: such a sighting is closed for the verdict reading and
    counted as ``sightings_unclosed`` and never as exact)."""
    found = []
    for check in checks:
        truth = verdict_start(check, described=described, sighted=True)
        opening = truth[:truth.rindex(SEEN_OPEN) + len(SEEN_OPEN)]
        ids = processor.tokenizer.encode(truth, add_special_tokens=False)
        kept = max(k for k in range(len(ids) + 1) if opening.startswith(processor.tokenizer.decode(ids[:k])))
        inputs = followed_by(question_inputs(processor, check.image, check.verdict_question,
                                             request_first=request_first), ids[:kept])
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        written = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1] - kept:], skip_special_tokens=True)
        tail = written[len(opening):] if written.startswith(opening) else ""
        seen, closed, _ = tail.partition(SEEN_CLOSE)
        found.append((opening + seen + SEEN_CLOSE, seen if closed else ""))
    return found


def verdict_leaning(model: Any, processor: Any, checks: list[ObjectCheck], *, request_first: bool = False,
                    described: bool = False, sighted: bool = False) -> list[float]:
    """For each check, ``WRONG`` minus ``RIGHT`` as the object's verdict, after its ``verdict_start``
    (the description line if ``described``, and the verdicts before it, with their sightings and its
    own if ``sighted``, as the truth has them; ``fork_leaning``): how far the verdict list leans to "wrong"."""
    return fork_leaning(model, processor, (
        (question_inputs(processor, c.image, c.verdict_question, request_first=request_first),
         verdict_start(c, described=described, sighted=sighted)) for c in checks), (WRONG, RIGHT))


def followed_by(inputs: dict[str, Any], ids: list[int]) -> dict[str, Any]:
    """``inputs`` (one example) with the token ``ids`` appended; per-token inputs beside the ids
    (Qwen3-VL's ``mm_token_type_ids``) are extended with 0, text."""
    if not ids:
        return inputs
    more = torch.tensor([ids], dtype=inputs["input_ids"].dtype)
    shape = inputs["input_ids"].shape
    extended = {key: torch.cat([value, torch.zeros_like(more, dtype=value.dtype)], 1)
                for key, value in inputs.items() if torch.is_tensor(value) and value.shape == shape}
    input_ids = torch.cat([inputs["input_ids"], more], 1)
    return {**inputs, **extended, "input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def no_leaning(model: Any, processor: Any, checks: list[ObjectCheck], *, request_first: bool = False) -> list[float]:
    """For each check, how much more the model leans to "no" than to "yes" as its answer's first
    token (the difference of their logits): a threshold-free reading of what a greedy "yes" hides."""
    return fork_leaning(model, processor, (
        (question_inputs(processor, check.image, check.question, request_first=request_first), "")
        for check in checks))


@torch.no_grad()
def fork_leaning(model: Any, processor: Any, asked: Iterable[tuple[dict[str, Any], str]],
                 answers: tuple[str, str] = (NO_PREFIX, YES)) -> list[float]:
    """For each ``(inputs, prefix)`` of ``asked`` (model inputs ready for the answer's first token,
    and the start of the answer), how much more the model leans to ``answers[0]`` than to
    ``answers[1]`` after ``prefix``: the answer is tokenized whole both ways, as ``encode`` tokenizes
    an answer, and the logits of the first tokens where the two differ are subtracted, given the
    tokens they share (so a tokenizer that merges the prefix's last word with what follows, or starts
    both verdicts with one token, is read where the verdicts actually part)."""
    leaning = []
    for inputs, prefix in asked:
        one, two = (processor.tokenizer.encode(prefix + answer, add_special_tokens=False) for answer in answers)
        fork = next((i for i, (x, y) in enumerate(zip(one, two)) if x != y), None)
        if fork is None:
            raise InvalidInputError(f"{answers[0]!r} and {answers[1]!r} after {prefix!r} tokenize alike.")
        logits = model(**followed_by(inputs, one[:fork])).logits[0, -1]
        leaning.append(float(logits[one[fork]] - logits[two[fork]]))
    return leaning


def separation(leaning: list[float], checks: list[ObjectCheck]) -> dict[str, Any]:
    """How well ``leaning`` (``no_leaning``) tells faulty objects from right ones: ``auc`` (the
    chance that a faulty object leans further to "no" than a right one; 0.5 is blind, 1 perfect)
    and, per fault kind (``fault_kind``), the share of faulty objects leaning further to "no" than
    the median right one; ``mean_leaning`` is the mean lean of faulty and of right objects (below 0
    for both: the greedy answer is "yes" whatever the object)."""
    faulty = [(lean, fault_kind(c)) for lean, c in zip(leaning, checks) if c.problems]
    right = sorted(lean for lean, c in zip(leaning, checks) if not c.problems)
    if not faulty or not right:
        return {}
    pairs = [(f > r) + 0.5 * (f == r) for f, _ in faulty for r in right]
    median = right[len(right) // 2]
    kinds: dict[str, list[bool]] = {}
    for lean, kind in faulty:
        kinds.setdefault(kind, []).append(lean > median)
    return {"auc": round(sum(pairs) / len(pairs), 4),
            "mean_leaning": {"faulty": round(sum(lean for lean, _ in faulty) / len(faulty), 3),
                             "right": round(sum(right) / len(right), 3)},
            "above_right_median": {kind: {"faulty": len(found), "share": round(sum(found) / len(found), 4)}
                                   for kind, found in sorted(kinds.items())}}


def check_requests(model: Any, processor: Any, checks: list[RequestCheck], *, described: bool = False,
                   request_first: bool = False) -> dict[str, Any]:
    """How the model checks held-out requests against their images: greedy answers (``described``:
    with room for the description first) scored by ``request_check_scores``, with a few examples."""
    room = 160 if described else 64
    answers = [generate_caption(model, processor, c.image, request_check_question(c.request), room,
                                request_first=request_first) for c in checks]
    return {"request_checks": request_check_scores(answers, checks),
            "request_check_examples": [{"request": c.request, "truth": c.answer, "answer": a}
                                       for c, a in zip(checks[:5], answers)]}


def restatement(model: Any, processor: Any, count: int, samples: list[CaptionSample], *,
                request_first: bool = False) -> dict[str, Any]:
    """How often the model restates a held-out request word for word: the requests of the bench's
    first ``count`` held-out pairs (never drawn in training), each asked as a request task about
    one of ``samples``' images, answered greedily."""
    requests = heldout_request_list(count, HELDOUT_SEED)
    shown = [samples[i % len(samples)] for i in range(len(requests))]
    answers = [generate_caption(model, processor, s.image, request_question(r), request_first=request_first)
               for r, s in zip(requests, shown)]
    return {"restated": {"requests": len(requests), "word_for_word": restated_share(answers, requests),
                         **prompt_reliance(model, processor, requests, shown, request_first=request_first)},
            "restatement_examples": [{"request": r, "answer": a} for r, a in zip(requests[:3], answers)]}


@torch.no_grad()
def prompt_reliance(model: Any, processor: Any, requests: list[str], samples: list[CaptionSample], *,
                    request_first: bool = False) -> dict[str, float]:
    """Mean loss of the request tasks' answers (restatement and caption) with their own request in
    the prompt and with the next one's: a model that copies its prompt does worse with the wrong
    request (``gap`` > 0), one that ignores it equally well. Sensitive before greedy copies are exact."""
    if len(requests) < 2:
        return {}

    def records(shift: int) -> list[dict[str, Any]]:
        return [caption_record(s, request_question(requests[(i + shift) % len(requests)]), request_answer(r, s.caption),
                               request_first=request_first) for i, (r, s) in enumerate(zip(requests, samples))]

    return _loss_gap(model, processor, "request", records(0), records(1), len(requests))


def _loss_gap(model: Any, processor: Any, what: str, own: list[dict[str, Any]], other: list[dict[str, Any]],
              batch_size: int) -> dict[str, float]:
    """Mean loss of the ``own`` examples and of the same answers shown the ``other`` input (image or
    request), ``batch_size`` examples a forward pass, and their ``gap`` (other minus own)."""
    losses = {}
    for name, records in (("own", own), ("other", other)):
        total = 0.0
        for start in range(0, len(records), batch_size):
            chunk = records[start:start + batch_size]
            batch = collate([encode(r, processor, 512) for r in chunk], processor.tokenizer.pad_token_id)
            total += model(**batch).loss.item() * len(chunk)
        losses[name] = total / len(records)
    return {f"loss_own_{what}": round(losses["own"], 4), f"loss_other_{what}": round(losses["other"], 4),
            "gap": round(losses["other"] - losses["own"], 4)}


def question_inputs(processor: Any, image: Any, question: str, *, request_first: bool = False) -> dict[str, Any]:
    """The model inputs that ask ``question`` about ``image``, laid out as ``image_record`` lays it
    out with ``request_first``, ready for the answer's first token."""
    messages, _ = sharegpt_to_messages(image_record(image, question, "", request_first=request_first))
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return processor(text=[text], images=[image], return_tensors="pt")


@torch.no_grad()
def generate_caption(model: Any, processor: Any, image: Any, question: str = CAPTION_REQUEST,
                     max_new_tokens: int = 96, *, request_first: bool = False) -> str:
    """The model's greedy answer to ``question`` about ``image`` (by default its caption), laid out
    as ``image_record`` lays it out with ``request_first``."""
    inputs = question_inputs(processor, image, question, request_first=request_first)
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def main(argv: list[str] | None = None) -> int:
    """``python -m studio.parrot.pretrain --config FILE [flags]``."""
    return run_kind(PretrainConfig, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
