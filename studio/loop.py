"""Generate-Critique-Refine: rounds of best-of-N generation, critique and prompt refinement.

``refine`` starts a session and ``resume`` continues one; both are generators of typed events
that a UI streams, a CLI prints and tests assert on. Every step is written to the session store
before its event is yielded, so a crash loses at most the model call in flight, and the session
shows as interrupted and can be resumed.

Rules:

- Each round generates ``candidates`` images (seeds ``seed``, ``seed + 1``, ...), critiques them
  in one batched call and keeps the best: a candidate that meets every threshold beats one that
  does not, then the higher [0, 1] score under the session's ``ScoringPolicy`` wins.
- A ``CritiqueFailure`` is shown (``CritiqueReady`` with ``critique.ok == False``), counted in the
  round's ``failures`` and never scored. A round in which no candidate could be scored ends the
  session with reason "critic_failed" (status "failed"): repeating the same prompt would not
  help, and the user should see the critic problem at once. ``resume`` retries that round.
- The best image of the whole session is kept: a later round that scores lower never replaces it.
- Stop rules, checked after each round in this order: every threshold met ("thresholds_met"),
  the round's best dropped by more than ``min_gain`` below the previous round's
  ("regression", only with ``stop_on_regression``), ``plateau_rounds`` rounds in a row without a
  gain of ``min_gain`` over the best so far ("plateau"), ``max_rounds`` done ("max_rounds"),
  nothing new left to try ("exhausted": the next prompt was already generated in
  ``max_tries_per_prompt`` rounds, or with its seed under ``on_repeat="stop"``).
- A round whose prompt was already generated with its seed would give the same image again, so
  (``on_repeat``) it draws from a seed not yet used with that prompt ("vary_seed"), or the
  critic's proposal is first re-stated with what failed first ("restate", ``studio.restate``).
  ``should_stop()`` is checked between model calls (and handed to a generator that accepts a
  ``should_stop`` keyword): "cancelled". A human rewriter pauses the loop: "awaiting_prompt".
- Round 1 generates from the request, or (``first_prompt="expanded"``, the default) from the
  critic's expansion of it into the generator's detailed form (``expand_request``), written before
  any image is seen; without an expanding critic, from the loaded world's own wording of the
  request when it uses words its generator was not trained on (``studio.grammar.generator_prompt``:
  shapes-world relations become detailed positions that satisfy them). The session keeps the
  request as written.
- Candidates are judged against the round's prompt, or (``judge_against="request"``) against the
  prompt the session started from, so that every round's images are scored against one request.
- The next prompt is written from the critique of the round's best candidate: its refined
  request ("critic"; the prompt is kept when the critic wrote none), the configured LLM
  rewriter ("llm"), or a person ("human": the critic's refined request is proposed, the session
  waits with status "awaiting", and ``resume(..., prompt=edited)`` continues).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator as EventGen, Iterator, Literal, Union

from PIL import Image

from models.base import Critic, Expanding, Generator, accepts_should_stop
from models.critic.scoring import ScoringPolicy
from models.rewriter import CriticRewriter
from models.errors import CancellationError, InvalidInputError
from models.images import check_prompt, prepare_image
from models.types import Critique, CritiqueRequest, CritiqueResult, GenerationRequest, Task
from studio.config import SEED_STRIDE, LoopSettings
from studio.grammar import generator_prompt
from studio.restate import failure_text, restate
from studio.services import Services
from studio.store import SessionStore

logger = logging.getLogger(__name__)

StopReason = Literal[
    "thresholds_met", "max_rounds", "plateau", "regression", "cancelled", "awaiting_prompt", "critic_failed",
    "exhausted",
]
PromptSource = Literal["critic", "llm", "human", "unchanged"]
ShouldStop = Callable[[], bool]

_STATUS_FOR_REASON: dict[str, str] = {
    "thresholds_met": "finished", "max_rounds": "finished", "plateau": "finished",
    "regression": "finished", "cancelled": "cancelled", "awaiting_prompt": "awaiting",
    "critic_failed": "failed", "exhausted": "finished",
}


@dataclass
class RefineRequest:
    """What the session should make: the task, the user's prompt, and the source image (edit);
    ``visitor``: who asks, in a shared deployment (recorded with the session)."""

    task: Task
    prompt: str
    source_image: Image.Image | None = None
    visitor: str | None = None


# -- events ------------------------------------------------------------------------------------


@dataclass
class SessionStarted:
    """A session began (``resumed`` False) or continued (True) at round ``first_round``."""

    session_id: str
    task: Task
    prompt: str
    settings: LoopSettings
    resumed: bool
    first_round: int


@dataclass
class RoundStarted:
    """Round ``round`` (1-based) is generating from ``prompt`` with first seed ``seed``."""

    session_id: str
    round: int
    prompt: str
    seed: int


@dataclass
class ImageReady:
    """Candidate ``candidate`` (0-based) of a round, stored as ``image_id``."""

    session_id: str
    round: int
    candidate: int
    image: Image.Image
    image_id: int
    seed: int


@dataclass
class CritiqueReady:
    """The critique of one candidate. ``critique.ok`` is False for a failure, whose ``score`` is
    ``None``; ``meets_thresholds`` says whether every threshold of the settings is reached."""

    session_id: str
    round: int
    candidate: int
    critique: CritiqueResult
    critique_id: int
    score: float | None
    meets_thresholds: bool


@dataclass
class RoundFinished:
    """A round is done: its best candidate (``None`` if none could be scored) and the session's
    best so far. ``improved``: this round's best became the session's best."""

    session_id: str
    round: int
    best_candidate: int | None
    best_score: float | None
    failures: int
    improved: bool
    session_best_score: float | None
    session_best_round: int | None
    generate_s: float
    critique_s: float


@dataclass
class PromptProposed:
    """The prompt for round ``round + 1``, where it came from, and the rewriter's remark
    (e.g. that the critic wrote no refined request and the prompt is kept)."""

    session_id: str
    round: int
    prompt: str
    source: PromptSource
    note: str | None = None


@dataclass
class AwaitingPrompt:
    """The loop paused for a person to edit or approve ``proposed_prompt``; continue with
    ``resume(session_id, services, prompt=...)``."""

    session_id: str
    round: int
    proposed_prompt: str


@dataclass
class BestResult:
    """The best image of a session so far and its critique."""

    image: Image.Image
    image_id: int
    critique: Critique
    critique_id: int
    score: float
    round: int
    candidate: int
    prompt: str


@dataclass
class Stopped:
    """The session stopped (or paused): ``reason``, a plain-language ``message``, the best result
    (``None`` when no round was scored), completed rounds and critique failures counted."""

    session_id: str
    reason: StopReason
    message: str
    best: BestResult | None
    rounds_done: int
    failures: int


LoopEvent = Union[
    SessionStarted, RoundStarted, ImageReady, CritiqueReady, RoundFinished, PromptProposed,
    AwaitingPrompt, Stopped,
]


# -- entry points ------------------------------------------------------------------------------


def refine(
    request: RefineRequest,
    services: Services,
    settings: LoopSettings,
    *,
    should_stop: ShouldStop | None = None,
    session_id: str | None = None,
) -> Iterator[LoopEvent]:
    """Run a Generate-Critique-Refine session, yielding events as they happen.

    Example::

        for event in refine(RefineRequest("t2i", "a red cube"), services, LoopSettings()):
            if isinstance(event, Stopped):
                print(event.reason, event.best.score)

    :param should_stop: called between model calls; returning True cancels the session.
    :param session_id: continue this existing session instead (same as ``resume``).
    Raises, when called (before the first event), ``InvalidInputError`` for an empty prompt or an
    edit without a source image and ``ConfigError`` when the task has no generator. The session
    is recorded when the first event is taken.
    """
    if session_id is not None:
        return resume(session_id, services, should_stop=should_stop)
    prompt = check_prompt(request.prompt)
    source = _checked_source(request)
    generator = services.get_generator(request.task)
    critic = services.get_critic()
    _check_supports(generator, request.task)
    first = _first_prompt(services, critic, request.task, prompt, settings)
    return _start(request, prompt, first, source, services, settings, generator, critic, should_stop)


def _first_prompt(services: Services, critic: Critic, task: Task, prompt: str, settings: LoopSettings) -> str:
    """Round 1's prompt: the critic's expansion of the request (``first_prompt="expanded"``), else
    the world's wording of it that its generator can follow (``studio.grammar.generator_prompt``),
    else the request. Raises ``InvalidInputError`` when the critic cannot read the request it
    should expand."""
    if settings.first_prompt == "expanded" and isinstance(critic, Expanding):
        return check_prompt(critic.expand_request(task, prompt, settings.seed), where="the expanded request")
    return generator_prompt(services, task, prompt) or prompt


def _start(
    request: RefineRequest,
    prompt: str,
    first: str,
    source: Image.Image | None,
    services: Services,
    settings: LoopSettings,
    generator: Generator,
    critic: Critic,
    should_stop: ShouldStop | None,
) -> Iterator[LoopEvent]:
    """Record the new session (its request ``prompt``), then run it, round 1 from ``first``."""
    store = services.store
    source_id = store.save_image(source, role="source").id if source is not None else None
    backends = {"generator": generator.to_config(), "critic": critic.to_config()}
    names = {"generator": generator.name, "critic": critic.name}
    if settings.rewriter == "llm":
        rewriter = services.get_rewriter()
        backends["rewriter"], names["rewriter"] = rewriter.to_config(), rewriter.name
    sid = store.create_session(
        task=request.task, prompt=prompt, settings=settings.to_dict(), source_image_id=source_id,
        backends=backends, names=names, visitor=request.visitor,
    )
    state = _State(session_id=sid, task=request.task, source=source, settings=settings, prompt=first, request=prompt)
    yield SessionStarted(sid, request.task, prompt, settings, resumed=False, first_round=1)
    yield from _run(state, services, generator, critic, should_stop)


def resume(
    session_id: str,
    services: Services,
    *,
    prompt: str | None = None,
    settings: LoopSettings | None = None,
    should_stop: ShouldStop | None = None,
) -> Iterator[LoopEvent]:
    """Continue a session from its last completed round (after a crash, a cancel, a failed
    critic, or a pause for a person).

    :param prompt: the prompt of the next round (an edited or approved proposal); by default the
        proposal waiting for approval, else the prompt the last round proposed (re-proposed from
        its stored critique when the crash came before that).
    :param settings: replace the session's settings (e.g. more ``max_rounds``, other thresholds).
    Raises, when called, ``NotFoundError`` for an unknown id and ``InvalidInputError`` when the
    session is still running in a live process or the prompt is empty.
    """
    store = services.store
    row = store.get_session(session_id)
    if row["status"] == "running" and store.session_is_live(session_id):
        raise InvalidInputError(
            f"Session {session_id} is still running; stop it (or wait for it to finish) before resuming."
        )
    settings = settings or LoopSettings.from_dict(row["settings"])
    generator = services.get_generator(row["task"])
    critic = services.get_critic()
    _check_supports(generator, row["task"])
    if prompt is not None:
        prompt = check_prompt(prompt)
    return _continue(row, services, settings, generator, critic, prompt, should_stop)


def _continue(
    row: dict[str, Any],
    services: Services,
    settings: LoopSettings,
    generator: Generator,
    critic: Critic,
    prompt: str | None,
    should_stop: ShouldStop | None,
) -> Iterator[LoopEvent]:
    """Restore a session's state from the store, then run it."""
    store, session_id, task = services.store, row["id"], row["task"]
    store.interrupt_running_rounds(session_id)
    store.claim_session(session_id)
    store.update_session(session_id, settings=settings.to_dict())
    done = store.rounds(session_id, status="done")
    state = _State(
        session_id=session_id, task=task, settings=settings, request=row["prompt"],
        source=store.load_image(row["source_image_id"]) if row["source_image_id"] is not None else None,
        prompt=_first_prompt(services, critic, task, row["prompt"], settings) if not done else None,
        round_scores=[r["best_score"] for r in done],
        tried=[(r["prompt"], r["seed"]) for r in done],
        failures=sum(r["failures"] or 0 for r in store.rounds(session_id)),
        best=_Best.from_session(row),
    )
    if state.best is not None:  # the thresholds may have changed with the settings
        best_critique = store.get_critique(state.best.critique_id)
        state.best.meets = isinstance(best_critique, Critique) and meets_thresholds(best_critique, settings.thresholds)
    if done:
        state.last_critique = store.get_critique(done[-1]["best_critique_id"])  # type: ignore[assignment]
        state.prompt = row["pending_prompt"] if row["pending_prompt"] else done[-1]["next_prompt"]
    if prompt is not None:
        state.prompt = prompt
    if done and (prompt is not None or row["pending_prompt"]):  # a person edited or approved it
        store.update_round(done[-1]["id"], next_prompt=state.prompt, prompt_source="human")
    store.update_session(session_id, pending_prompt=None)
    yield SessionStarted(session_id, task, state.prompt or row["prompt"], settings, resumed=True,
                         first_round=len(done) + 1)
    yield from _run(state, services, generator, critic, should_stop)


def meets_thresholds(critique: Critique, thresholds: dict[str, float]) -> bool:
    """Whether every threshold on a dimension of the critique's task is reached
    (``Critique.meets``: N/A counts as reached, a missing dimension never does)."""
    return critique.meets(thresholds)


# -- the engine --------------------------------------------------------------------------------


@dataclass
class _Best:
    score: float
    meets: bool
    round: int
    candidate: int
    image_id: int
    critique_id: int

    @classmethod
    def from_session(cls, row: dict[str, Any]) -> "_Best | None":
        if row["best_critique_id"] is None:
            return None
        return cls(row["best_score"], bool(row["best_meets"]), row["best_round"], row["best_candidate"],
                   row["best_image_id"], row["best_critique_id"])

    def key(self) -> tuple[bool, float]:
        return (self.meets, self.score)


@dataclass
class _State:
    session_id: str
    task: Task
    source: Image.Image | None
    settings: LoopSettings
    prompt: str | None
    request: str  # the prompt the session started from
    round_scores: list[float] = field(default_factory=list)
    failures: int = 0
    best: _Best | None = None
    last_critique: Critique | None = None
    tried: list[tuple[str, int]] = field(default_factory=list)  # (prompt, first seed) of each done round

    def seeds_tried(self, prompt: str) -> list[int]:
        """The first seeds of the done rounds that generated from ``prompt``."""
        return [seed for tried, seed in self.tried if tried == prompt]


def _run(
    state: _State, services: Services, generator: Generator, critic: Critic, should_stop: ShouldStop | None
) -> Iterator[LoopEvent]:
    """Rounds until a stop rule fires; marks the session failed (error) or interrupted (the
    consumer closed the stream) before re-raising."""
    store = services.store
    cancelled = should_stop or (lambda: False)
    policy = state.settings.scoring_policy()
    try:
        while True:
            reason = _stop_reason(state)
            if reason is None and cancelled():
                reason = "cancelled"
            if reason is not None:
                yield _stop(store, state, reason)
                return
            if state.prompt is None:
                yield from _propose(state, services)
                if state.prompt is None:  # a person has to approve or edit the proposal
                    yield _stop(store, state, "awaiting_prompt")
                    return
                continue  # check for a cancel again before generating
            outcome = yield from _round(state, store, generator, critic, policy, cancelled)
            if outcome is not None:
                yield _stop(store, state, outcome)
                return
    except GeneratorExit:
        store.interrupt_running_rounds(state.session_id)
        store.update_session(state.session_id, status="interrupted", message="The viewer stopped the stream.")
        raise
    except Exception as e:
        store.interrupt_running_rounds(state.session_id)
        store.update_session(state.session_id, status="failed", message=f"{type(e).__name__}: {e}")
        raise


def _round(
    state: _State,
    store: SessionStore,
    generator: Generator,
    critic: Critic,
    policy: ScoringPolicy,
    cancelled: ShouldStop,
) -> EventGen[LoopEvent, None, StopReason | None]:
    """One round. Returns a stop reason when the round itself ends the session."""
    settings, sid = state.settings, state.session_id
    index = len(state.round_scores) + 1
    prompt = state.prompt
    assert prompt is not None
    seed = _fresh_seed(settings, index, state.seeds_tried(prompt))
    round_id = store.start_round(sid, index, prompt, seed)
    yield RoundStarted(sid, index, prompt, seed)

    started = time.perf_counter()
    try:
        result = _generate(generator, GenerationRequest(
            task=state.task, prompt=prompt, source_image=state.source, seed=seed, num_images=settings.candidates,
            steps=settings.steps, guidance=settings.guidance, width=settings.width, height=settings.height,
        ), cancelled)
    except CancellationError:
        store.update_round(round_id, status="cancelled", generate_s=time.perf_counter() - started)
        return "cancelled"
    generate_s = time.perf_counter() - started
    if cancelled():
        store.update_round(round_id, status="cancelled", generate_s=generate_s)
        return "cancelled"
    stored = []
    for i, (image, image_seed) in enumerate(zip(result.images, result.seeds, strict=True)):
        saved = store.save_image(image, role="candidate", session_id=sid, round_id=round_id, candidate=i,
                                 seed=image_seed, settings=result.settings)
        stored.append(saved.id)
        yield ImageReady(sid, index, i, image, saved.id, image_seed)
    if cancelled():
        store.update_round(round_id, status="cancelled", generate_s=generate_s)
        return "cancelled"

    started = time.perf_counter()
    judged = state.request if settings.judge_against == "request" else prompt
    critiques = critic.critique([
        CritiqueRequest(task=state.task, prompt=judged, image=image, source_image=state.source)
        for image in result.images
    ])
    critique_s = time.perf_counter() - started
    failures = 0
    ranked: list[tuple[tuple[bool, float], int, int, Critique]] = []
    for i, (image_id, critique) in enumerate(zip(stored, critiques, strict=True)):
        score = policy.score(critique) if isinstance(critique, Critique) else None
        meets = isinstance(critique, Critique) and meets_thresholds(critique, settings.thresholds)
        critique_id = store.save_critique(
            critique, task=state.task, prompt=judged, image_id=image_id, critic_name=critic.name,
            score=score, session_id=sid, round_id=round_id, candidate=i,
        )
        if not critique.ok:
            failures += 1
        elif score is not None:
            ranked.append(((meets, score), i, critique_id, critique))  # type: ignore[arg-type]
        yield CritiqueReady(sid, index, i, critique, critique_id, score, meets)
    state.failures += failures

    if not ranked:
        store.update_round(round_id, status="failed", failures=failures, generate_s=generate_s, critique_s=critique_s)
        return "critic_failed"
    (meets, score), candidate, critique_id, critique = max(ranked, key=lambda r: r[0])
    round_best = _Best(score, meets, index, candidate, stored[candidate], critique_id)
    improved = state.best is None or round_best.key() > state.best.key()
    if improved:
        state.best = round_best
        store.update_session(sid, best_image_id=round_best.image_id, best_critique_id=critique_id,
                             best_score=score, best_round=index, best_candidate=candidate, best_meets=int(meets))
    store.flush()  # a done round has every image file on disk
    store.update_round(round_id, status="done", best_image_id=stored[candidate], best_critique_id=critique_id,
                       best_score=score, failures=failures, generate_s=generate_s, critique_s=critique_s)
    state.round_scores.append(score)
    state.tried.append((prompt, seed))
    state.last_critique = critique
    state.prompt = None
    assert state.best is not None
    yield RoundFinished(sid, index, candidate, score, failures, improved, state.best.score, state.best.round,
                        generate_s, critique_s)
    return None


def _propose(state: _State, services: Services) -> Iterator[LoopEvent]:
    """Write the next prompt from the last round's best critique (or ask a person for it)."""
    store, sid, index = services.store, state.session_id, len(state.round_scores)
    critique = state.last_critique
    assert critique is not None
    previous = store.rounds(sid, status="done")[-1]
    kind = state.settings.rewriter
    rewriter = services.get_rewriter() if kind == "llm" else CriticRewriter()
    text = check_prompt(rewriter.rewrite(previous["prompt"], critique, state.task), where="the next prompt")
    note = getattr(rewriter, "last_note", None)
    source: PromptSource = "llm" if kind == "llm" else ("unchanged" if note else "critic")
    if state.settings.on_repeat == "restate" and state.seeds_tried(text):
        restated = restate(text, failure_text(critique, state.settings.thresholds))
        if restated is not None and not state.seeds_tried(restated):
            text = check_prompt(restated, where="the next prompt")
            note = "The proposed prompt was already tried; it is re-stated with what failed first."
    if kind == "human":
        store.update_session(sid, pending_prompt=text)
        yield PromptProposed(sid, index, text, source, note)
        yield AwaitingPrompt(sid, index, text)
        return
    store.update_round(previous["id"], next_prompt=text, prompt_source=source)
    state.prompt = text
    yield PromptProposed(sid, index, text, source, note)


def _stop_reason(state: _State) -> StopReason | None:
    settings, scores = state.settings, state.round_scores
    if not scores:
        return None
    assert state.best is not None
    if state.best.meets:
        return "thresholds_met"
    if settings.stop_on_regression and len(scores) >= 2 and scores[-1] < scores[-2] - settings.min_gain:
        return "regression"
    if settings.plateau_rounds and _stale_rounds(scores, settings.min_gain) >= settings.plateau_rounds:
        return "plateau"
    if len(scores) >= settings.max_rounds:
        return "max_rounds"
    if state.prompt is not None:
        seeds = state.seeds_tried(state.prompt)
        if settings.max_tries_per_prompt and len(seeds) >= settings.max_tries_per_prompt:
            return "exhausted"
        if settings.on_repeat == "stop" and settings.seed_for_round(len(scores) + 1) in seeds:
            return "exhausted"
    return None


def _fresh_seed(settings: LoopSettings, index: int, used: list[int]) -> int:
    """The first seed of round ``index``: the seed policy's, unless ``prompt`` was already
    generated with it; then the "vary" policy's seed of this round or the next free stride."""
    seed = settings.seed_for_round(index)
    if seed not in used:
        return seed
    seed = settings.seed + (index - 1) * SEED_STRIDE
    while seed in used:
        seed += SEED_STRIDE
    return seed


def _stale_rounds(scores: list[float], min_gain: float) -> int:
    """How many of the latest rounds in a row gained less than ``min_gain`` over the best before them."""
    stale = 0
    for i in range(len(scores) - 1, 0, -1):
        if scores[i] >= max(scores[:i]) + min_gain:
            break
        stale += 1
    return stale


_MESSAGES: dict[str, str] = {
    "thresholds_met": "Every chosen dimension reached its threshold.",
    "max_rounds": "The maximum number of rounds is done.",
    "plateau": "The score stopped improving.",
    "regression": "The last round scored lower than the one before.",
    "cancelled": "Stopped on request.",
    "awaiting_prompt": "Waiting for you to edit or approve the next prompt.",
    "critic_failed": "The critic could not score any image of the last round (see the critique failures); "
                     "fix the critic and resume the session.",
    "exhausted": "Nothing new is left to try: the next prompt was already generated as often as the settings allow.",
}


def _stop(store: SessionStore, state: _State, reason: StopReason) -> Stopped:
    store.update_session(state.session_id, status=_STATUS_FOR_REASON[reason], stop_reason=reason,
                         message=_MESSAGES[reason])
    best = None
    if state.best is not None:
        b = state.best
        critique = store.get_critique(b.critique_id)
        assert isinstance(critique, Critique)
        prompt = store.rounds(state.session_id, status="done")[b.round - 1]["prompt"]
        best = BestResult(store.load_image(b.image_id), b.image_id, critique, b.critique_id, b.score,
                          b.round, b.candidate, prompt)
    logger.info("session %s stopped: %s", state.session_id, reason)
    return Stopped(state.session_id, reason, _MESSAGES[reason], best, len(state.round_scores), state.failures)


def _generate(generator: Generator, request: GenerationRequest, cancelled: ShouldStop) -> Any:
    if accepts_should_stop(generator):
        return generator.generate(request, should_stop=cancelled)  # type: ignore[call-arg]
    return generator.generate(request)


def _checked_source(request: RefineRequest) -> Image.Image | None:
    if request.task == "edit":
        if request.source_image is None:
            raise InvalidInputError(
                "The edit task needs a source image; none was given. Add one or switch the task to text-to-image."
            )
        return prepare_image(request.source_image, what="source image")
    if request.task != "t2i":
        raise InvalidInputError(f"Unknown task {request.task!r}; use 't2i' or 'edit'.")
    return None


def _check_supports(generator: Generator, task: Task) -> None:
    if task not in generator.tasks:
        raise InvalidInputError(
            f"The generator {generator.name!r} cannot do {task!r} (it does {list(generator.tasks)}); "
            "pick another generator or task."
        )

