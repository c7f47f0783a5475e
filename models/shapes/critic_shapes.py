"""The shapes-world reference critic: a critic backend whose judgement rests on known truth.

``ShapesReferenceChat`` is a ``TextCompleter`` like the transformers and HTTP backends: it reads
the structured request carried by each ``ChatPrompt``, analyzes the image(s) with
``models.shapes.analyzer``, judges them with ``models.shapes.assess`` and writes the critique as
TEXT in the protocol layout (pointwise) or the pairwise layout, so that it goes through the same
parser and retry loop as any other critic. ``ShapesCritic`` wraps it in ``ProtocolCritic``.

The refined request is a hybrid (each part a setting, all on by default): when most requested
objects failed (more than half missing or drawn with a wrong shape or colour) there is little to
keep, and it is a fresh expansion of the request (``fresh_layout``: new cells and sizes wherever
the request leaves them open, drawn from the judged image), so the next round redraws every
object; otherwise it keeps the drawn layout and changes only the clause of each object drawn with
a wrong shape or colour: the next free cell (``move_failed``), or, where the request fixes the
position (or without ``move_failed``), the other size (``resize_failed``), so that with the same
seed the next round redraws that object while the objects already right stay (see
``models.shapes.assess`` and ``bench.loop_diagnostics``). ``ShapesCritic.expand_request`` writes
a request in the generator's detailed form before any image is seen (``models.shapes.expand``).

``perception_noise`` makes it an imperfect teacher: each object seen in a judged image is, with
that probability, missed (half the time) or confused with another colour, shape or size, and
the word gets a wrong letter with the same probability.

``object_verdicts`` changes the wording of a text-to-image Text Faithfulness justification, not its
judgement: it opens with every object the request names once and that object's verdict right after
its name ("the purple star is drawn; the red circle is wrong.", in lower case as ``parrot pretrain
--object-verdicts`` answers), then the findings as before, so that a student distilled from such
critiques is taught a verdict for each object right after reading its name (docs/parrot.md,
twenty-first step); the default names only what is wrong. ``object_sightings`` also writes, between
each name and its verdict, what the image shows in that object's place, with the attributes the request
gives ("the small purple triangle at the bottom left (seen: small yellow triangle at the bottom left) is
wrong"), so that the verdict compares two phrases side by side (twenty-second step).
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from typing import Sequence, Union

from PIL import Image

from models.critic.answer import format_score, pointwise_answer_text
from models.critic.chat import ChatPrompt, CompletionError
from models.critic.runner import ProtocolCritic
from models.critic.scoring import ScoringPolicy
from models.errors import ConfigError, InvalidInputError
from models.shapes.analyzer import AnalyzedScene, analyze
from models.shapes.assess import Assessment, assess_edit, assess_t2i, verdict_list
from models.shapes.expand import expand, expansion_rng
from models.shapes.world import COLOURS, SHAPES, SIZES, parse_edit, parse_prompt
from models.types import (
    PHYSICAL_QUALITY,
    TEXT_FAITHFULNESS,
    CritiqueRequest,
    DimensionVerdict,
    PairRequest,
    PairwiseJudgement,
    Winner,
    task_dimensions,
)

logger = logging.getLogger(__name__)

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: With ``fresh_layout``: above this share of requested objects failed, the refined request is a fresh expansion.
FRESH_LAYOUT_SHARE = 0.5


def _sentence(parts: list[str]) -> str:
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def perturb(seen: AnalyzedScene, probability: float, rng: random.Random) -> AnalyzedScene:
    """``seen`` as an imperfect observer would report it: each object is missed or has one
    attribute confused with ``probability``; the word gets one wrong letter with ``probability``."""
    if probability == 0:
        return seen
    objects = []
    for obj in seen.objects:
        if rng.random() >= probability:
            objects.append(obj)
            continue
        if rng.random() < 0.5:
            continue
        attribute = rng.choice(("colour", "shape", "size"))
        values = {"colour": tuple(COLOURS), "shape": SHAPES, "size": SIZES}[attribute]
        wrong = rng.choice([v for v in values if v != getattr(obj, attribute)])
        objects.append(replace(obj, **{attribute: wrong}))
    word = seen.word
    if word and rng.random() < probability:
        i = rng.randrange(len(word))
        word = word[:i] + rng.choice([c for c in _LETTERS if c != word[i]]) + word[i + 1:]
    return replace(seen, objects=tuple(objects), word=word)


class ShapesReferenceChat:
    """A ``TextCompleter`` that writes shapes-world critiques from the images' analysis.

    :param perception_noise: probability in [0, 1) that each seen object (and the word) is
        misperceived; 0 is the exact reference.
    :param seed: seeds the misperceptions, so a run is reproducible.
    :param resize_failed: the refined request asks for each wrongly drawn object at the other size.
    :param fresh_layout: when most requested objects failed, the refined request is a fresh
        expansion of the request (``FRESH_LAYOUT_SHARE``).
    :param move_failed: the refined request asks for each wrongly drawn object in another free cell
        (where the request leaves its position open) instead of at the other size.
    :param object_verdicts: a text-to-image Text Faithfulness justification opens with each
        requested object's verdict (``models.shapes.assess.verdict_list``).
    :param object_sightings: as ``object_verdicts``, with what is seen in each object's place before its verdict.
    """

    def __init__(self, *, perception_noise: float = 0.0, seed: int = 0, resize_failed: bool = True,
                 fresh_layout: bool = True, move_failed: bool = True, object_verdicts: bool = False,
                 object_sightings: bool = False) -> None:
        if not isinstance(perception_noise, (int, float)) or not 0 <= perception_noise < 1:
            raise ConfigError(f"perception_noise must be a number in [0, 1); got {perception_noise!r}.")
        for name, value in (("resize_failed", resize_failed), ("fresh_layout", fresh_layout),
                            ("move_failed", move_failed), ("object_verdicts", object_verdicts),
                            ("object_sightings", object_sightings)):
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false; got {value!r}.")
        self.perception_noise = float(perception_noise)
        self.seed = seed
        self.resize_failed = resize_failed
        self.fresh_layout = fresh_layout
        self.move_failed = move_failed
        self.object_verdicts = object_verdicts
        self.object_sightings = object_sightings
        self._rng = random.Random(seed)

    def to_config(self) -> dict[str, object]:
        """Settings that rebuild this backend."""
        return {"perception_noise": self.perception_noise, "seed": self.seed, "resize_failed": self.resize_failed,
                "fresh_layout": self.fresh_layout, "move_failed": self.move_failed,
                "object_verdicts": self.object_verdicts, "object_sightings": self.object_sightings}

    def complete(self, prompts: Sequence[ChatPrompt]) -> list[Union[str, CompletionError]]:
        """Critique text for each prompt, or a ``CompletionError`` when the request is not a
        shapes-world request (a prompt the grammar cannot read, an edit it cannot apply)."""
        results: list[Union[str, CompletionError]] = []
        for prompt in prompts:
            try:
                if prompt.kind == "pairwise":
                    results.append(self._pairwise(prompt.request))  # type: ignore[arg-type]
                else:
                    results.append(self._pointwise(prompt.request))  # type: ignore[arg-type]
            except InvalidInputError as e:
                reason = f"The shapes reference critic cannot judge this request: {e}"
                logger.info(reason)
                results.append(CompletionError(reason))
        return results

    # -- judging ------------------------------------------------------------------------------

    def _assess(self, task: str, prompt: str, image: Image.Image, source_image: Image.Image | None) -> Assessment:
        seen = perturb(analyze(image), self.perception_noise, self._rng)
        if task == "edit":  # the request checked that an edit has its source image
            source = analyze(source_image).to_scene()  # type: ignore[arg-type]
            return assess_edit(prompt, source, parse_edit(prompt, source), seen)
        return assess_t2i(parse_prompt(prompt), seen, resize_failed=self.resize_failed, move_failed=self.move_failed)

    def _pointwise(self, request: CritiqueRequest) -> str:
        judged = self._assess(request.task, request.prompt, request.image, request.source_image)
        return pointwise_answer_text(
            request.task, analysis=judged.requested, scores=judged.scores,
            justifications={dim.key: self._justify(judged, dim.key) for dim in task_dimensions(request.task)},
            summary=self._summary(judged), refinement_comments=self._comments(judged),
            refined_request=self._refined(request.prompt, judged),
        )

    def _refined(self, prompt: str, judged: Assessment) -> str:
        """The refined request: the assessment's (the layout pinned, failed objects changed), or
        with ``fresh_layout``, when most requested objects failed, a fresh expansion of ``prompt``
        drawn from what was seen (the same image gives the same expansion)."""
        if not (self.fresh_layout and judged.task == "t2i" and judged.failed_share > FRESH_LAYOUT_SHARE):
            return judged.refined_request
        try:
            return expand(prompt, random.Random(f"fresh/{self.seed}/{prompt}/{judged.refined_request}"))
        except InvalidInputError:  # a request no expansion can lay out (two objects fixed in one cell): keep the pinned one
            return judged.refined_request

    def _pairwise(self, request: PairRequest) -> str:
        a = self._assess(request.task, request.prompt, request.image_a, request.source_image)
        b = self._assess(request.task, request.prompt, request.image_b, request.source_image)
        lines = ["# User Request Analysis", a.requested, "# Detailed Judgement"]
        for number, dim in enumerate(task_dimensions(request.task), start=1):
            score_a, score_b = a.scores[dim.key], b.scores[dim.key]
            lines += [
                f"{number}. {dim.heading}:",
                f"## Justification: Image A: {self._justify(a, dim.key)} Image B: {self._justify(b, dim.key)}",
                f"## Score A: {format_score(score_a)}",
                f"## Score B: {format_score(score_b)}",
                f"## Winner: {self._winner(score_a, score_b)}",
            ]
        overall = self._overall(request.task, a, b)
        verdict = "The two images are equally good." if overall == "tie" else f"Image {overall} is better."
        lines += [
            f"# Summary: {verdict} Image A: {self._summary(a)} Image B: {self._summary(b)}",
            f"# Overall Winner: {'Tie' if overall == 'tie' else overall}",
        ]
        return "\n".join(lines)

    @staticmethod
    def _winner(score_a: float | None, score_b: float | None) -> str:
        if score_a is None or score_b is None or score_a == score_b:
            return "Tie"
        return "A" if score_a > score_b else "B"

    @staticmethod
    def _overall(task: str, a: Assessment, b: Assessment) -> Winner:
        """The overall winner exactly as the engine's default scoring policy reads the scores."""
        verdicts = {
            dim.key: DimensionVerdict(score_a=a.scores[dim.key], score_b=b.scores[dim.key], winner=None)
            for dim in task_dimensions(task)
        }
        judgement = PairwiseJudgement(task=task, dimensions=verdicts, summary=None, raw="")  # type: ignore[arg-type]
        return ScoringPolicy.default().pairwise_winner(judgement)

    # -- wording ------------------------------------------------------------------------------

    def _justify(self, judged: Assessment, key: str) -> str:
        found = judged.about(key)
        text = _sentence([f.text for f in found]) if found else judged.praise[key]
        if (self.object_verdicts or self.object_sightings) and key == TEXT_FAITHFULNESS.key and judged.verdicts:
            listed = verdict_list(judged.verdicts, sighted=self.object_sightings)
            return f"{listed}. {text}"  # lower case, as parrot pretrain --object-verdicts words it
        return text

    @staticmethod
    def _summary(judged: Assessment) -> str:
        worst = sorted(judged.findings, key=lambda f: -f.severity)[:3]
        if not worst:
            return "The image matches the request in every respect and is cleanly drawn."
        more = len(judged.findings) - len(worst)
        extra = f" ({more} smaller issue(s) besides)" if more else ""
        return f"Main problems: {'; '.join(f.text for f in worst)}{extra}."

    @staticmethod
    def _comments(judged: Assessment) -> str:
        if not judged.findings:
            return "Nothing needs fixing; the refined request pins the layout so later attempts keep it."
        if judged.task == "edit":
            return "Name the object to change by its position, state the change exactly and ask to keep everything else."
        wrong = "; ".join(f.text for f in judged.findings if f.dimension != PHYSICAL_QUALITY.key) or "only the drawing quality"
        return f"Pin every object's colour, shape, size and position in the detailed form; what went wrong: {wrong}."


class ShapesCritic(ProtocolCritic):
    """The shapes-world reference critic behind the usual ``critique`` / ``judge`` interface.

    :param perception_noise: probability that each seen object (and the word) is misperceived.
    :param seed: seeds the misperceptions (and the fresh layouts).
    :param resize_failed: the refined request asks for each wrongly drawn object at the other size.
    :param fresh_layout: when most requested objects failed, the refined request is a fresh expansion.
    :param move_failed: the refined request moves each wrongly drawn object to another free cell.
    :param object_verdicts: Text Faithfulness opens with each requested object's verdict.
    :param object_sightings: ... with what is seen in each object's place before its verdict.
    """

    def __init__(
        self, *, perception_noise: float = 0.0, seed: int = 0, resize_failed: bool = True, fresh_layout: bool = True,
        move_failed: bool = True, object_verdicts: bool = False, object_sightings: bool = False,
        parse_retries: int = 1, name: str = "shapes",
    ) -> None:
        super().__init__(
            ShapesReferenceChat(perception_noise=perception_noise, seed=seed, resize_failed=resize_failed,
                                fresh_layout=fresh_layout, move_failed=move_failed, object_verdicts=object_verdicts,
                                object_sightings=object_sightings),
            parse_retries=parse_retries, name=name,
        )

    @staticmethod
    def expand_request(task: str, prompt: str, seed: int) -> str:
        """A text-to-image request in the generator's detailed form, written before any image is
        seen (sizes and cells the request leaves open drawn with ``seed``); an edit instruction
        is returned as it is. Raises ``InvalidInputError`` when the grammar cannot read it."""
        return expand(prompt, expansion_rng(seed)) if task == "t2i" else prompt
