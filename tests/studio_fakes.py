"""Small deterministic stand-ins for the engine tests: a generator that draws coloured squares
from the prompt, a critic that returns scripted critiques, and an LLM rewriter."""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, Union

from PIL import Image, ImageDraw

from models.errors import BackendUnavailableError
from models.critic.scoring import ScoringPolicy
from models.types import (
    Critique,
    CritiqueFailure,
    CritiqueRequest,
    CritiqueResult,
    DimensionVerdict,
    GenerationRequest,
    GenerationResult,
    PairRequest,
    PairResult,
    PairwiseJudgement,
    Task,
    task_dimensions,
)
from studio.services import Services
from studio.store import SessionStore

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}


def colour_of(prompt: str) -> tuple[int, int, int]:
    """The first colour word of ``prompt``, else a colour from its hash."""
    for word, rgb in COLOURS.items():
        if word in prompt.lower():
            return rgb
    digest = hashlib.sha256(prompt.encode()).digest()
    return digest[0], digest[1], digest[2]


class SquaresGenerator:
    """Draws a square of the prompt's colour, placed by the seed, on a grey 32x32 canvas.

    ``crash_on_call`` (1-based) raises ``crash`` on that call, e.g. ``SystemExit`` to stand in for
    a killed process. ``delay_s`` sleeps to stand in for a model.
    """

    name = "squares"
    tasks: tuple[Task, ...] = ("t2i", "edit")

    def __init__(self, *, size: int = 32, delay_s: float = 0.0, crash_on_call: int | None = None,
                 crash: type[BaseException] = SystemExit) -> None:
        self.size = size
        self.delay_s = delay_s
        self.crash_on_call = crash_on_call
        self.crash = crash
        self.requests: list[GenerationRequest] = []

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """One image per seed ``request.seed + i``."""
        self.requests.append(request)
        if self.crash_on_call == len(self.requests):
            raise self.crash("simulated crash")
        if self.delay_s:
            time.sleep(self.delay_s)
        seeds = [request.seed + i for i in range(request.num_images)]
        images = [self.draw(request.prompt, seed) for seed in seeds]
        return GenerationResult(images=images, seeds=seeds, settings={"model": self.name, "size": self.size})

    def draw(self, prompt: str, seed: int) -> Image.Image:
        """The image for ``prompt`` and ``seed``."""
        image = Image.new("RGB", (self.size, self.size), (128, 128, 128))
        side = self.size // 2
        x = seed * 7 % (self.size - side)
        y = seed * 13 % (self.size - side)
        ImageDraw.Draw(image).rectangle([x, y, x + side, y + side], fill=colour_of(prompt))
        return image

    def to_config(self) -> dict[str, Any]:
        """Settings that rebuild this generator."""
        return {"size": self.size}


class StoppableGenerator(SquaresGenerator):
    """A ``SquaresGenerator`` whose ``generate`` takes the engine's ``should_stop``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.saw_should_stop: list[bool] = []

    def generate(self, request: GenerationRequest, should_stop: Callable[[], bool] | None = None) -> GenerationResult:
        """Generate, noting whether a ``should_stop`` was handed over."""
        self.saw_should_stop.append(should_stop is not None)
        return super().generate(request)


class ShapesRenderer:
    """A shapes-world "generator" that draws exactly what the prompt asks for (unsaid sizes are
    large, unsaid positions the first free cells), except that its first ``faulty_calls`` calls
    draw the scene with one object in the wrong colour: a known mistake for the critic to find."""

    name = "shapes-renderer"
    tasks: tuple[Task, ...] = ("t2i",)

    def __init__(self, *, size: int = 64, faulty_calls: int = 1) -> None:
        self.size = size
        self.faulty_calls = faulty_calls
        self.requests: list[GenerationRequest] = []

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """``request.num_images`` renderings (identical: the world is deterministic)."""
        from models.shapes.defects import apply_fault
        from models.shapes.world import POSITIONS, Scene, ShapeObject, parse_prompt, render

        self.requests.append(request)
        spec = parse_prompt(request.prompt)
        free = [p for p in POSITIONS if p not in {o.position for o in spec.objects}]
        objects = [ShapeObject(o.shape, o.colour, o.size or "large", o.position or free.pop(0)) for o in spec.objects]
        scene = Scene(tuple(objects), spec.word)
        if len(self.requests) <= self.faulty_calls:
            scene, _ = apply_fault(scene, "wrong_colour", random.Random(request.seed))
        images = [render(scene, self.size) for _ in range(request.num_images)]
        seeds = [request.seed + i for i in range(request.num_images)]
        return GenerationResult(images=images, seeds=seeds, settings={"model": self.name, "size": self.size})

    def to_config(self) -> dict[str, Any]:
        """Settings that rebuild this generator."""
        return {"size": self.size, "faulty_calls": self.faulty_calls}


ScriptItem = Union[dict[str, float | None], str]


def make_critique(task: Task, scores: dict[str, float | None], *, refined: str | None = "refined prompt",
                  summary: str = "ok") -> Critique:
    """A ``Critique`` with ``scores`` (missing dimensions of the task are N/A) and its default score."""
    full = {d.key: scores.get(d.key) for d in task_dimensions(task)}
    critique = Critique(
        task=task, scores=full, justifications={k: f"because {k}" for k in full}, analysis="analysis",
        summary=summary, refinement_comments="comments", refined_request=refined, overall=None,
        raw=f"raw critique {full}",
    )
    critique.overall = ScoringPolicy.default().score(critique)
    return critique


@dataclass
class ScriptedCritic:
    """Returns the scripted result for each image it is asked about, in order.

    ``script`` is a list of items, one per image critiqued (across calls): a dict of dimension
    scores gives a ``Critique`` whose refined request is ``"<prompt> v<n>"``; a string gives a
    ``CritiqueFailure`` with that reason. When the script runs out, the last item repeats.
    ``judge`` answers from ``pair_script`` the same way: ``(scores_a, scores_b)`` or a reason.
    ``delay_s`` sleeps before answering, to stand in for a model.
    """

    script: list[ScriptItem]
    pair_script: list[Union[tuple[dict[str, float], dict[str, float]], str]] = field(default_factory=list)
    refine: bool = True
    delay_s: float = 0.0
    name: str = "scripted-critic"
    calls: list[int] = field(default_factory=list)
    seen: list[CritiqueRequest] = field(default_factory=list)
    pairs_seen: list[PairRequest] = field(default_factory=list)

    def critique(self, requests: Sequence[CritiqueRequest]) -> list[CritiqueResult]:
        """One scripted result per request."""
        if self.delay_s:
            time.sleep(self.delay_s)
        self.calls.append(len(requests))
        results: list[CritiqueResult] = []
        for request in requests:
            item = self.script[min(len(self.seen), len(self.script) - 1)]
            self.seen.append(request)
            if isinstance(item, str):
                results.append(CritiqueFailure(reason=item, raw="garbled output"))
            else:
                refined = f"{request.prompt.split(' v')[0]} v{len(self.seen)}" if self.refine else None
                results.append(make_critique(request.task, item, refined=refined))
        return results

    def judge(self, requests: Sequence[PairRequest]) -> list[PairResult]:
        """One scripted judgement per pair."""
        results: list[PairResult] = []
        for request in requests:
            item = self.pair_script[min(len(self.pairs_seen), len(self.pair_script) - 1)]
            self.pairs_seen.append(request)
            if isinstance(item, str):
                results.append(CritiqueFailure(reason=item, raw="garbled pair output"))
                continue
            scores_a, scores_b = item
            dims = {
                key: DimensionVerdict(scores_a[key], scores_b[key],
                                      "A" if scores_a[key] > scores_b[key] else "B" if scores_b[key] > scores_a[key] else "tie")
                for key in scores_a
            }
            results.append(PairwiseJudgement(task=request.task, dimensions=dims, summary="pair summary",
                                             raw=f"raw pair {len(self.pairs_seen)}"))
        return results

    def to_config(self) -> dict[str, Any]:
        """Nothing to rebuild from."""
        return {"scripted": True}


@dataclass
class ClosableCritic(ScriptedCritic):
    """A ``ScriptedCritic`` that can be closed, as a model critic: afterwards it refuses to work
    (``BackendUnavailableError``, like ``TransformersChat``)."""

    closed: bool = False

    def critique(self, requests: Sequence[CritiqueRequest]) -> list[CritiqueResult]:
        """Scripted results while open."""
        if self.closed:
            raise BackendUnavailableError(f"The critic {self.name} was closed.")
        return super().critique(requests)

    def close(self) -> None:
        """Free nothing, but remember it."""
        self.closed = True


class LoraSquaresGenerator(SquaresGenerator):
    """A ``SquaresGenerator`` built from a spec with a ``lora`` and a ``name``, and closable."""

    def __init__(self, *, lora: str | None = None, name: str = "squares", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lora, self.name, self.closed = lora, name, False

    def close(self) -> None:
        """Remember being closed."""
        self.closed = True


class EchoRewriter:
    """An LLM rewriter stand-in: appends the critique's summary to the prompt."""

    name = "echo-rewriter"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def rewrite(self, prompt: str, critique: Critique, task: Task) -> str:
        """``"<prompt>, fixed: <summary>"``."""
        self.calls.append(prompt)
        return f"{prompt}, fixed: {critique.summary}"

    def to_config(self) -> dict[str, Any]:
        """Nothing to rebuild from."""
        return {}


def make_services(tmp: Path, critic: ScriptedCritic, generator: SquaresGenerator | None = None,
                  rewriter: EchoRewriter | None = None) -> Services:
    """Services over a fresh store in ``tmp`` with the given fakes."""
    generator = generator or SquaresGenerator()
    return Services(store=SessionStore(tmp / "studio.db"), critic=critic, t2i_generator=generator,
                    edit_generator=generator, rewriter=rewriter)


def good(value: float = 3.8) -> dict[str, float | None]:
    """Scores that meet the default thresholds (text rendering N/A)."""
    return {"text_faithfulness": value, "physical_quality": value, "text_rendering": None}


def poor(value: float = 2.0) -> dict[str, float | None]:
    """Scores below the default thresholds."""
    return {"text_faithfulness": value, "physical_quality": value, "text_rendering": None}
