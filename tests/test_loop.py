"""The Generate-Critique-Refine engine with fake models: stop rules, best-of-N, keep-best,
failures, cancellation, the human rewriter and resuming after a crash."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from models.errors import BackendUnavailableError, CancellationError, InvalidInputError
from models.types import GenerationRequest
from studio.config import LoopSettings
from studio.loop import (
    AwaitingPrompt,
    CritiqueReady,
    ImageReady,
    PromptProposed,
    RefineRequest,
    RoundFinished,
    RoundStarted,
    SessionStarted,
    Stopped,
    refine,
    resume,
)
from studio.services import Services
from studio.store import SessionStore
from tests.studio_fakes import (
    EchoRewriter,
    ScriptedCritic,
    ShapesRenderer,
    SquaresGenerator,
    StoppableGenerator,
    good,
    make_services,
    poor,
)

T2I = RefineRequest("t2i", "a red square")


def run(services: Services, settings: LoopSettings, request: RefineRequest = T2I, **kwargs) -> list:
    return list(refine(request, services, settings, **kwargs))


def stopped(events: list) -> Stopped:
    assert isinstance(events[-1], Stopped)
    return events[-1]


def of(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


# -- stop rules --------------------------------------------------------------------------------


def test_refine_stops_when_thresholds_met(tmp_path):
    services = make_services(tmp_path, ScriptedCritic([poor(), good()]))
    events = run(services, LoopSettings(max_rounds=5, plateau_rounds=0))
    stop = stopped(events)
    assert (stop.reason, stop.rounds_done) == ("thresholds_met", 2)
    assert services.store.get_session(stop.session_id)["status"] == "finished"


def test_refine_counts_na_as_met(tmp_path):
    # text_rendering has a 3.5 threshold by default; the critic marks it N/A
    critic = ScriptedCritic([{"text_faithfulness": 3.6, "physical_quality": 3.7, "text_rendering": None}])
    stop = stopped(run(make_services(tmp_path, critic), LoopSettings()))
    assert (stop.reason, stop.rounds_done) == ("thresholds_met", 1)


def test_refine_threshold_below_keeps_going(tmp_path):
    critic = ScriptedCritic([{"text_faithfulness": 3.9, "physical_quality": 3.9, "text_rendering": 2.0}, good()])
    stop = stopped(run(make_services(tmp_path, critic), LoopSettings(plateau_rounds=0)))
    assert (stop.reason, stop.rounds_done) == ("thresholds_met", 2)


def test_refine_stops_at_max_rounds(tmp_path):
    critic = ScriptedCritic([poor(1.5), poor(2.0), poor(2.5), poor(3.0)])
    events = run(make_services(tmp_path, critic), LoopSettings(max_rounds=3))
    stop = stopped(events)
    assert (stop.reason, stop.rounds_done) == ("max_rounds", 3)
    assert [e.round for e in of(events, RoundStarted)] == [1, 2, 3]


def test_refine_stops_on_plateau(tmp_path):
    critic = ScriptedCritic([poor(2.0), poor(2.0), poor(3.0)])
    stop = stopped(run(make_services(tmp_path, critic), LoopSettings(max_rounds=5, plateau_rounds=1)))
    assert (stop.reason, stop.rounds_done) == ("plateau", 2)


def test_refine_plateau_waits_for_k_rounds_without_gain(tmp_path):
    critic = ScriptedCritic([poor(2.0), poor(2.0), poor(2.02), poor(3.0)])
    stop = stopped(run(make_services(tmp_path, critic), LoopSettings(max_rounds=5, plateau_rounds=2, min_gain=0.05)))
    assert (stop.reason, stop.rounds_done) == ("plateau", 3)


def test_refine_stops_on_regression_when_enabled(tmp_path):
    critic = ScriptedCritic([poor(3.0), poor(2.0), poor(3.4)])
    settings = LoopSettings(max_rounds=5, plateau_rounds=0, stop_on_regression=True)
    stop = stopped(run(make_services(tmp_path, critic), settings))
    assert (stop.reason, stop.rounds_done) == ("regression", 2)


def test_refine_ignores_regression_when_disabled(tmp_path):
    critic = ScriptedCritic([poor(3.0), poor(2.0), poor(2.5)])
    stop = stopped(run(make_services(tmp_path, critic), LoopSettings(max_rounds=3, plateau_rounds=0)))
    assert (stop.reason, stop.rounds_done) == ("max_rounds", 3)


# -- best-of-N and keep-best ---------------------------------------------------------------------


def test_refine_best_of_n_picks_the_best_candidate(tmp_path):
    critic = ScriptedCritic([poor(2.0), poor(3.0), poor(2.5)])
    generator = SquaresGenerator()
    services = make_services(tmp_path, critic, generator)
    events = run(services, LoopSettings(max_rounds=1, candidates=3))
    assert len(generator.requests) == 1 and generator.requests[0].num_images == 3
    assert critic.calls == [3]  # one batched critic call per round
    finished = of(events, RoundFinished)[0]
    images = {e.candidate: e.image_id for e in of(events, ImageReady)}
    assert finished.best_candidate == 1
    assert stopped(events).best.image_id == images[1]


def test_refine_best_of_n_prefers_a_candidate_meeting_thresholds(tmp_path):
    higher_but_short = {"text_faithfulness": 4.0, "physical_quality": 3.4}  # score 0.9, misses one threshold
    meets = {"text_faithfulness": 3.5, "physical_quality": 3.5}  # score 0.83, meets every threshold
    critic = ScriptedCritic([higher_but_short, meets])
    stop = stopped(run(make_services(tmp_path, critic), LoopSettings(candidates=2)))
    assert (stop.reason, stop.best.candidate) == ("thresholds_met", 1)


def test_refine_keeps_best_when_a_later_round_regresses(tmp_path):
    critic = ScriptedCritic([poor(3.0), poor(2.0), poor(2.5)])
    services = make_services(tmp_path, critic)
    events = run(services, LoopSettings(max_rounds=3, plateau_rounds=0))
    stop = stopped(events)
    first_image = of(events, ImageReady)[0].image_id
    assert (stop.best.round, stop.best.image_id) == (1, first_image)
    assert stop.best.score == pytest.approx((3.0 - 1) / 3)
    assert stop.best.prompt == "a red square"
    assert [e.improved for e in of(events, RoundFinished)] == [True, False, False]
    assert services.store.get_session(stop.session_id)["best_image_id"] == first_image


def test_refine_seed_policy_fixed_and_vary(tmp_path):
    for policy, expected in (("fixed", [7, 7, 7]), ("vary", [7, 1007, 2007])):
        generator = SquaresGenerator()
        services = make_services(tmp_path / policy, ScriptedCritic([poor(1.5), poor(2.0), poor(2.5)]), generator)
        run(services, LoopSettings(max_rounds=3, plateau_rounds=0, seed=7, seed_policy=policy))
        assert [r.seed for r in generator.requests] == expected


# -- prompts --------------------------------------------------------------------------------------


def test_refine_next_prompt_is_the_critics_refined_request(tmp_path):
    events = run(make_services(tmp_path, ScriptedCritic([poor(1.5), poor(2.5)])), LoopSettings(max_rounds=2, plateau_rounds=0))
    proposed = of(events, PromptProposed)[0]
    assert (proposed.prompt, proposed.source) == ("a red square v1", "critic")
    assert of(events, RoundStarted)[1].prompt == "a red square v1"


def test_refine_keeps_prompt_when_critic_wrote_no_refinement(tmp_path):
    critic = ScriptedCritic([poor(1.5), poor(2.5)], refine=False)
    events = run(make_services(tmp_path, critic), LoopSettings(max_rounds=2, plateau_rounds=0))
    proposed = of(events, PromptProposed)[0]
    assert (proposed.prompt, proposed.source) == ("a red square", "unchanged")
    assert "no refined request" in proposed.note


def test_refine_llm_rewriter_writes_the_next_prompt(tmp_path):
    rewriter = EchoRewriter()
    services = make_services(tmp_path, ScriptedCritic([poor(1.5), poor(2.5)]), rewriter=rewriter)
    events = run(services, LoopSettings(max_rounds=2, plateau_rounds=0, rewriter="llm"))
    assert rewriter.calls == ["a red square"]
    assert of(events, RoundStarted)[1].prompt == "a red square, fixed: ok"
    assert of(events, PromptProposed)[0].source == "llm"


def test_refine_human_rewriter_pauses_then_resumes_with_edited_prompt(tmp_path):
    services = make_services(tmp_path, ScriptedCritic([poor(1.5), poor(2.5)]))
    settings = LoopSettings(max_rounds=3, plateau_rounds=0, rewriter="human")
    events = run(services, settings)
    waiting = of(events, AwaitingPrompt)[0]
    stop = stopped(events)
    assert (stop.reason, waiting.proposed_prompt) == ("awaiting_prompt", "a red square v1")
    row = services.store.get_session(stop.session_id)
    assert (row["status"], row["pending_prompt"]) == ("awaiting", "a red square v1")

    more = list(resume(stop.session_id, services, prompt="a bright red square"))
    assert isinstance(more[0], SessionStarted) and more[0].resumed and more[0].first_round == 2
    assert of(more, RoundStarted)[0].prompt == "a bright red square"
    assert stopped(more).reason == "awaiting_prompt"
    assert services.store.rounds(stop.session_id, status="done")[0]["prompt_source"] == "human"


def test_resume_without_prompt_approves_the_proposal(tmp_path):
    services = make_services(tmp_path, ScriptedCritic([poor(1.5), poor(2.5)]))
    first = run(services, LoopSettings(max_rounds=2, plateau_rounds=0, rewriter="human"))
    more = list(resume(stopped(first).session_id, services))
    assert of(more, RoundStarted)[0].prompt == "a red square v1"
    assert stopped(more).reason == "max_rounds"


# -- failures -------------------------------------------------------------------------------------


def test_refine_shows_critique_failure_and_never_scores_it(tmp_path):
    critic = ScriptedCritic(["the critic wrote garbage", poor(2.0)])
    services = make_services(tmp_path, critic)
    events = run(services, LoopSettings(max_rounds=1, candidates=2))
    failed, scored = of(events, CritiqueReady)
    assert (failed.critique.ok, failed.score, failed.critique.reason) == (False, None, "the critic wrote garbage")
    assert scored.score == pytest.approx(1 / 3)
    stop = stopped(events)
    assert (stop.failures, stop.best.candidate) == (1, 1)
    row = services.store.critiques(stop.session_id)[0]
    assert (row["ok"], row["score"], row["raw"]) == (0, None, "garbled output")


def test_refine_round_with_only_failures_ends_session_and_resume_retries(tmp_path):
    critic = ScriptedCritic(["endpoint down", poor(2.0)])
    services = make_services(tmp_path, critic)
    stop = stopped(run(services, LoopSettings(max_rounds=1)))
    assert (stop.reason, stop.best, stop.failures) == ("critic_failed", None, 1)
    assert services.store.get_session(stop.session_id)["status"] == "failed"
    again = list(resume(stop.session_id, services))
    assert of(again, RoundStarted)[0].round == 1
    assert stopped(again).reason == "max_rounds"
    assert [r["status"] for r in services.store.rounds(stop.session_id)] == ["failed", "done"]


def test_refine_generator_error_marks_session_failed(tmp_path):
    class Broken(SquaresGenerator):
        def generate(self, request: GenerationRequest):
            raise BackendUnavailableError("the generator endpoint is down")

    services = make_services(tmp_path, ScriptedCritic([good()]), Broken())
    events = []
    with pytest.raises(BackendUnavailableError):
        for event in refine(T2I, services, LoopSettings()):
            events.append(event)
    row = services.store.get_session(events[0].session_id)
    assert row["status"] == "failed" and "endpoint is down" in row["message"]


def test_refine_rejects_edit_without_source_before_any_model_call(tmp_path):
    generator = SquaresGenerator()
    services = make_services(tmp_path, ScriptedCritic([good()]), generator)
    with pytest.raises(InvalidInputError, match="source image"):
        refine(RefineRequest("edit", "make it blue"), services, LoopSettings())  # raises when called
    assert generator.requests == [] and services.store.search_sessions() == []


def test_refine_edit_hands_source_to_generator_and_critic(tmp_path):
    critic = ScriptedCritic([good()])
    generator = SquaresGenerator()
    services = make_services(tmp_path, critic, generator)
    source = Image.new("RGB", (24, 24), (0, 0, 255))
    stop = stopped(run(services, LoopSettings(), RefineRequest("edit", "make it red", source)))
    assert generator.requests[0].source_image.size == (24, 24)
    assert critic.seen[0].source_image.getpixel((0, 0)) == (0, 0, 255)
    assert services.store.get_session(stop.session_id)["source_image_id"] is not None


# -- cancellation ---------------------------------------------------------------------------------


def test_refine_cancel_between_generation_and_critique(tmp_path):
    critic = ScriptedCritic([good()])
    generator = SquaresGenerator()
    services = make_services(tmp_path, critic, generator)
    stop = stopped(run(services, LoopSettings(), should_stop=lambda: len(generator.requests) > 0))
    assert (stop.reason, critic.calls) == ("cancelled", [])
    sid = stop.session_id
    assert services.store.get_session(sid)["status"] == "cancelled"
    assert [r["status"] for r in services.store.rounds(sid)] == ["cancelled"]


def test_refine_cancel_after_a_round_keeps_its_best(tmp_path):
    critic = ScriptedCritic([poor(2.0), poor(3.0)])
    services = make_services(tmp_path, critic)
    stop = stopped(run(services, LoopSettings(max_rounds=3), should_stop=lambda: len(critic.calls) >= 1))
    assert (stop.reason, stop.rounds_done, stop.best.round) == ("cancelled", 1, 1)


def test_refine_hands_should_stop_to_a_generator_that_takes_it(tmp_path):
    generator = StoppableGenerator()
    run(make_services(tmp_path, ScriptedCritic([good()]), generator), LoopSettings(), should_stop=lambda: False)
    assert generator.saw_should_stop == [True]


def test_refine_generator_cancellation_stops_the_session(tmp_path):
    class Cancelling(SquaresGenerator):
        def generate(self, request: GenerationRequest):
            raise CancellationError("Generation was stopped.")

    stop = stopped(run(make_services(tmp_path, ScriptedCritic([good()]), Cancelling()), LoopSettings()))
    assert stop.reason == "cancelled"


def test_refine_closed_stream_marks_session_interrupted(tmp_path):
    services = make_services(tmp_path, ScriptedCritic([good()]))
    stream = refine(T2I, services, LoopSettings())
    started = next(stream)
    next(stream)  # RoundStarted
    stream.close()  # the browser went away
    assert services.store.get_session(started.session_id)["status"] == "interrupted"


# -- persistence and resume ----------------------------------------------------------------------


def test_refine_persists_each_step_before_its_event(tmp_path):
    services = make_services(tmp_path, ScriptedCritic([poor(2.0), good()]))
    store = services.store
    for event in refine(T2I, services, LoopSettings(max_rounds=2, plateau_rounds=0)):
        if isinstance(event, ImageReady):
            assert store.image_path(event.image_id).is_file()
        elif isinstance(event, CritiqueReady):
            assert store.get_critique(event.critique_id).ok
        elif isinstance(event, RoundFinished):
            assert store.rounds(event.session_id)[-1]["status"] == "done"
        elif isinstance(event, PromptProposed):
            assert store.rounds(event.session_id)[-1]["next_prompt"] == event.prompt
        elif isinstance(event, Stopped):
            assert store.get_session(event.session_id)["stop_reason"] == event.reason


def test_resume_after_crash_continues_from_last_completed_round(tmp_path):
    critic = ScriptedCritic([poor(2.0), poor(2.5), poor(3.0)])
    services = make_services(tmp_path, critic, SquaresGenerator(crash_on_call=2, crash=KeyboardInterrupt))
    events = []
    with pytest.raises(KeyboardInterrupt):
        for event in refine(T2I, services, LoopSettings(max_rounds=3, plateau_rounds=0)):
            events.append(event)
    sid = events[0].session_id
    services.store.close()  # the process is gone

    store = SessionStore(tmp_path / "studio.db")
    assert store.get_session(sid)["status"] == "interrupted"
    fresh = Services(store=store, critic=critic, t2i_generator=SquaresGenerator())
    more = list(resume(sid, fresh))
    assert [e.round for e in of(more, RoundStarted)] == [2, 3]
    assert of(more, RoundStarted)[0].prompt == "a red square v1"
    assert stopped(more).reason == "max_rounds" and stopped(more).rounds_done == 3
    assert [r["status"] for r in store.rounds(sid)] == ["done", "interrupted", "done", "done"]


def test_resume_after_killed_process(tmp_path):
    # a real crash: the child process dies (os._exit) while generating round 2
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from pathlib import Path
        from studio.config import LoopSettings
        from studio.loop import RefineRequest, refine
        from tests.studio_fakes import ScriptedCritic, SquaresGenerator, make_services, poor

        class Dying(SquaresGenerator):
            def generate(self, request):
                if self.requests:
                    print(request.prompt, flush=True)
                    os._exit(3)
                return super().generate(request)

        services = make_services(Path({str(tmp_path)!r}), ScriptedCritic([poor(2.0)]), Dying())
        for event in refine(RefineRequest("t2i", "a blue square"), services, LoopSettings(max_rounds=2, plateau_rounds=0)):
            pass
    """)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert child.returncode == 3, child.stderr
    store = SessionStore(tmp_path / "studio.db")
    (session,) = store.search_sessions()
    assert session["status"] == "interrupted"
    services = Services(store=store, critic=ScriptedCritic([poor(2.5)]), t2i_generator=SquaresGenerator())
    more = list(resume(session["id"], services))
    assert of(more, RoundStarted)[0].prompt == child.stdout.strip() == "a blue square v1"
    assert stopped(more).rounds_done == 2


def test_resume_refuses_a_session_still_running(tmp_path):
    services = make_services(tmp_path, ScriptedCritic([good()]))
    stream = refine(T2I, services, LoopSettings())
    started = next(stream)
    with pytest.raises(InvalidInputError, match="still running"):
        resume(started.session_id, services)
    stream.close()


def test_two_tabs_resuming_one_session_at_once_only_one_runs(tmp_path):
    # Both tabs pass resume()'s early check before either starts; the claim itself must refuse one.
    services = make_services(tmp_path, ScriptedCritic([poor(1.5), poor(2.0), poor(2.5), poor(3.0)]))
    events = run(services, LoopSettings(max_rounds=1))
    session_id = events[0].session_id
    first = resume(session_id, services, settings=LoopSettings(max_rounds=3))
    second = resume(session_id, services, settings=LoopSettings(max_rounds=3))
    next(first)
    with pytest.raises(InvalidInputError, match="already running"):
        next(second)
    assert stopped(list(first)).rounds_done == 3
    assert services.store.get_session(session_id)["status"] == "finished"


def test_resume_with_more_rounds_continues_a_finished_session(tmp_path):
    services = make_services(tmp_path, ScriptedCritic([poor(1.5), poor(2.0), poor(2.5)]))
    first = stopped(run(services, LoopSettings(max_rounds=1, plateau_rounds=0)))
    more = list(resume(first.session_id, services, settings=LoopSettings(max_rounds=2, plateau_rounds=0)))
    assert [e.round for e in of(more, RoundStarted)] == [2]
    assert services.store.get_session(first.session_id)["settings"]["max_rounds"] == 2


def test_resume_with_stricter_thresholds_continues_a_met_session(tmp_path):
    services = make_services(tmp_path, ScriptedCritic([good(3.6), good(3.9)]))
    first = stopped(run(services, LoopSettings(max_rounds=3)))
    assert first.reason == "thresholds_met"
    stricter = LoopSettings(max_rounds=3, thresholds={"text_faithfulness": 3.8, "physical_quality": 3.8})
    more = list(resume(first.session_id, services, settings=stricter))
    assert (stopped(more).reason, stopped(more).best.round) == ("thresholds_met", 2)


def test_refine_in_the_shapes_world_fixes_a_wrong_colour(tmp_path):
    # the real reference critic (protocol text, parser, retries) against a renderer whose first
    # image has one object in the wrong colour: round 1 misses, the refined request fixes it
    from models.shapes.critic_shapes import ShapesCritic

    generator = ShapesRenderer(faulty_calls=1)
    services = Services(store=SessionStore(tmp_path / "studio.db"), critic=ShapesCritic(), t2i_generator=generator)
    settings = LoopSettings(max_rounds=3, plateau_rounds=0, thresholds={"text_faithfulness": 3.9})
    events = list(refine(RefineRequest("t2i", "a red circle and a blue square"), services, settings))
    first, second = of(events, CritiqueReady)
    assert first.critique.scores["text_faithfulness"] < 3.9 <= second.critique.scores["text_faithfulness"]
    stop = stopped(events)
    assert (stop.reason, stop.rounds_done, stop.best.round) == ("thresholds_met", 2, 2)
    assert of(events, RoundStarted)[1].prompt == first.critique.refined_request



class _FixedText:
    """A text backend whose every answer is one fixed text (as a model would write it)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def complete(self, prompts):
        return [self.text for _ in prompts]


def test_truncated_critique_missing_a_dimension_never_meets_thresholds(tmp_path):
    from models.critic import ProtocolCritic

    truncated = ("# Detailed Judgement\n1. Text Faithfulness:\n## Justification: Red cube.\n## Score: 3.75\n"
                 "2. Physical and Visual Quality:\n## Justification: The edges are")
    critic = ProtocolCritic(_FixedText(truncated), name="truncating")
    events = run(make_services(tmp_path, critic), LoopSettings(max_rounds=2, plateau_rounds=0))
    ready = of(events, CritiqueReady)
    assert ready and not any(e.meets_thresholds for e in ready)
    assert ready[0].critique.missing == ["physical_quality", "text_rendering"]
    assert stopped(events).reason == "max_rounds"
