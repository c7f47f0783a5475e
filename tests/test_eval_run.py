"""The preference benchmark runner end to end: hand-computed accuracies on fixtures in every
layout, failures counted and listed (unreadable image, unparseable answer, server error), resume,
the stored and exported rows, the JSON-last-line contract of both entry points."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.errors import BackendUnavailableError, ConfigError
from studio.cli import main as cli_main
from studio.evaluation.results import EvalRows
from studio.evaluation.run import EvalConfig, execute, main, run_id_of
from studio.jobs.config import parse_config, save_config
from studio.jobs.context import RecordingContext
from studio.jobs.runner import JobLimits, Runner
from studio.store import SessionStore
from tests.eval_fixtures import WRITERS, ColourCritic, genai_t2i, struct, write_parquet
from tests.openai_stub import OpenAIStub, Scripted
from tests.studio_fakes import ScriptedCritic

ROOT = Path(__file__).resolve().parent.parent
HIGH = {"text_faithfulness": 4.0, "physical_quality": 3.0}
LOW = {"text_faithfulness": 2.0, "physical_quality": 3.0}
CONTRACT = {"n", "answered", "failed", "ties", "accuracy", "accuracy_answered", "critic", "benchmark", "mode",
            "accuracy_ci", "position_consistency"}


@pytest.fixture
def store(tmp_path):
    opened = SessionStore(tmp_path / "store" / "studio.db")
    yield opened
    opened.close()


def evaluate(store, data, run_dir, critic, *, resume=False, **settings):
    config = EvalConfig(data=str(data), store=str(store.path), **settings)
    config.validate()
    ctx = RecordingContext(run_dir, resuming=resume)
    return execute(config, ctx, store, critic=critic), ctx


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_each_layout_gives_the_hand_computed_accuracy(tmp_path, store, layout):
    critic = ColourCritic()
    summary, _ = evaluate(store, WRITERS[layout](tmp_path), tmp_path / "run", critic)
    if layout.startswith("mmrb2"):
        # three decisive pairs, judged A/B and B/A (MMRB2's protocol): right on 2; no ties
        assert (summary["n"], summary["ties"], summary["answered"], summary["failed"]) == (3, 0, 3, 0)
        assert summary["accuracy"] == pytest.approx(2 / 3)
        assert summary["position_consistency"] == 1.0 and summary["both_orders"] is True
        assert critic.pairs_judged == 6 and "accuracy_with_ties" not in summary
    else:
        # predictions A, B, tie, B, tie against labels A, A, tie, B, both-bad
        assert (summary["n"], summary["ties"], summary["answered"], summary["failed"]) == (5, 2, 5, 0)
        assert summary["accuracy"] == summary["accuracy_answered"] == pytest.approx(2 / 3)
        assert summary["accuracy_with_ties"] == pytest.approx(4 / 5)
        assert summary["position_consistency"] is None and critic.pairs_judged == 5
    assert summary["benchmark"] == ("studio-votes" if layout == "studio-votes-parquet" else layout)
    assert summary["critic"] == "colour-critic" and summary["mode"] == "pairwise"


def test_summary_breakdowns_and_interval_by_hand(tmp_path, store):
    summary, _ = evaluate(store, genai_t2i(tmp_path), tmp_path / "run", ColourCritic())
    # Wilson 95% interval of 2 right out of 3
    assert summary["accuracy_ci"] == pytest.approx([0.2077, 0.9385], abs=1e-4)
    # decisive pairs: 0 (m1, m2) right, 1 (m1, m3) wrong, 3 (m2, m3) right
    assert summary["per_model"] == {"m1": {"n": 2, "accuracy": 0.5}, "m2": {"n": 2, "accuracy": 1.0},
                                    "m3": {"n": 2, "accuracy": 0.5}}
    # text faithfulness alone picks the same winners; physical quality is always level (a tie)
    assert summary["per_dimension"]["text_faithfulness"]["accuracy"] == pytest.approx(2 / 3)
    assert summary["per_dimension"]["physical_quality"] == {"n": 3, "accuracy": 0.0}
    assert summary["published_accuracy_percent"]["RationalRewards-8B"] == 69.8


def test_pointwise_gives_the_same_numbers_and_reuses_stored_critiques(tmp_path, store):
    data = genai_t2i(tmp_path)
    first_critic, second_critic = ColourCritic(), ColourCritic()
    first, _ = evaluate(store, data, tmp_path / "one", first_critic, mode="pointwise")
    second, _ = evaluate(store, data, tmp_path / "two", second_critic, mode="pointwise")
    assert first_critic.images_critiqued == 10 and first_critic.calls == [10]  # one batched call
    assert second_critic.images_critiqued == 0
    for summary in (first, second):
        assert summary["accuracy"] == pytest.approx(2 / 3) and summary["accuracy_with_ties"] == pytest.approx(4 / 5)
    rows = [EvalRows(store, f"run:{(tmp_path / name).resolve()}").recorded() for name in ("one", "two")]
    first_ids = {i for r in rows[0].values() for i in (r.critique_a_id, r.critique_b_id)}
    assert len(first_ids) == 10
    assert {i for r in rows[1].values() for i in (r.critique_a_id, r.critique_b_id)} <= first_ids
    assert store.get_critique(rows[0][0].critique_a_id).scores["text_faithfulness"] == 4.0


@pytest.mark.parametrize("settings, accuracy, with_ties", [
    ({"tie_tolerance": 0.4}, 0.0, 2 / 5),  # 0.83 vs 0.5 is within 0.4: every pair a tie
    ({"weights": {"physical_quality": 1.0}}, 0.0, 2 / 5),  # only the level dimension counts
    ({"weights": {"text_faithfulness": 1.0}}, 2 / 3, 4 / 5),
])
def test_tie_tolerance_and_policy_weights_decide_the_winner(tmp_path, store, settings, accuracy, with_ties):
    summary, _ = evaluate(store, genai_t2i(tmp_path), tmp_path / "run", ColourCritic(), **settings)
    assert summary["accuracy"] == pytest.approx(accuracy)
    assert summary["accuracy_with_ties"] == pytest.approx(with_ties)


def test_mmrb2_counts_a_pair_right_only_when_both_orders_agree(tmp_path, store):
    # per row: the A/B answer, then the B/A answer (images swapped)
    critic = ScriptedCritic([], pair_script=[
        (HIGH, LOW), (LOW, HIGH),  # row 0 (label A): A both times
        (HIGH, LOW), (HIGH, LOW),  # row 1 (label A): whatever comes first wins: position bias, a tie
        (LOW, HIGH), "server error",  # row 2 (label B): the B/A order failed, so the row failed
    ])
    summary, ctx = evaluate(store, WRITERS["mmrb2-t2i"](tmp_path), tmp_path / "run", critic)
    assert (summary["answered"], summary["failed"]) == (2, 1)
    assert summary["accuracy"] == pytest.approx(1 / 3) and summary["accuracy_answered"] == 0.5
    assert summary["position_consistency"] == 0.5
    recorded = EvalRows(store, run_id_of(ctx)).recorded()
    assert [(r.winner, r.consistent) for r in recorded.values()] == [("A", True), ("tie", False), (None, None)]
    assert recorded[2].failure == "B/A: server error"


def bad_image_benchmark(tmp_path: Path) -> Path:
    """Seven GenAI-Bench rows; the last one's image A is not an image."""
    labels = ["leftvote", "rightvote", "leftvote", "tievote", "bothbad_vote", "rightvote", "leftvote"]
    rows = [{"prompt": f"prompt {i}", "left_image": struct("red"), "right_image": struct("blue"), "vote_type": v}
            for i, v in enumerate(labels)]
    rows[6]["left_image"] = {"bytes": b"\x89PNG broken", "path": None}
    return write_parquet(rows, tmp_path / "seven.parquet")


def test_failed_rows_count_as_wrong_and_are_listed(tmp_path, store):
    # rows 0-5 reach the critic in order; row 5 gets an unparseable answer; row 6 never gets there
    critic = ScriptedCritic([], pair_script=[(HIGH, LOW), (HIGH, LOW), (HIGH, HIGH), (HIGH, HIGH), (HIGH, LOW),
                                             "output did not parse"])
    summary, ctx = evaluate(store, bad_image_benchmark(tmp_path), tmp_path / "run", critic)
    assert (summary["n"], summary["answered"], summary["failed"], summary["ties"]) == (7, 5, 2, 2)
    assert summary["accuracy"] == pytest.approx(1 / 5)  # decisive rows 0,1,2,5,6: only 0 is right
    assert summary["accuracy_answered"] == pytest.approx(1 / 3)  # answered decisive rows 0,1,2
    assert summary["accuracy_with_ties"] == pytest.approx(2 / 7)  # rows 0 and 3 (tie for tie)
    failed = {r["row_index"]: r["reason"] for r in summary["failed_rows"]}
    assert failed[5] == "A/B: output did not parse"
    assert "row 6 (6): image A" in failed[6] and len(critic.pairs_seen) == 6
    recorded = EvalRows(store, run_id_of(ctx)).recorded()
    assert recorded[5].winner is None and recorded[5].score_a is None and not recorded[5].correct


def test_resume_keeps_finished_rows_and_retries_failed_ones(tmp_path, store):
    data = genai_t2i(tmp_path)
    flaky = ScriptedCritic([], pair_script=[(HIGH, LOW), "server error", (HIGH, HIGH), "server error", (LOW, LOW)])
    first, _ = evaluate(store, data, tmp_path / "run", flaky)
    assert (first["failed"], first["answered"]) == (2, 3)
    table = EvalRows(store, f"run:{(tmp_path / 'run').resolve()}")
    before = table.recorded()
    with pytest.raises(ConfigError, match="--resume"):
        evaluate(store, data, tmp_path / "run", ColourCritic())
    critic = ColourCritic()
    second, _ = evaluate(store, data, tmp_path / "run", critic, resume=True)
    assert critic.pairs_judged == 2  # rows 1 and 3 only
    after = table.recorded()
    assert [after[i].judgement_id for i in (0, 2, 4)] == [before[i].judgement_id for i in (0, 2, 4)]
    assert (second["failed"], second["answered"], second["n"]) == (0, 5, 5)
    assert after[1].winner == "B" and after[3].winner == "B"  # judged again, by the colour critic


class CrashingCritic(ColourCritic):
    """Answers its first call, then the server goes away."""

    def judge(self, requests):
        if self.calls:
            raise BackendUnavailableError("the critic server went away")
        return super().judge(requests)


def test_resume_after_a_crash_does_not_redo_finished_rows(tmp_path, store):
    data = genai_t2i(tmp_path)
    with pytest.raises(BackendUnavailableError):
        evaluate(store, data, tmp_path / "run", CrashingCritic(), batch_size=2)
    assert sorted(EvalRows(store, f"run:{(tmp_path / 'run').resolve()}").recorded()) == [0, 1]
    critic = ColourCritic()
    summary, _ = evaluate(store, data, tmp_path / "run", critic, batch_size=2, resume=True)
    assert critic.pairs_judged == 3 and summary["answered"] == 5
    assert summary["accuracy"] == pytest.approx(2 / 3)


def test_resume_refuses_changed_data(tmp_path, store):
    evaluate(store, "shapes:t2i:3:seed0", tmp_path / "run", ColourCritic())
    with pytest.raises(ConfigError, match="rows changed"):
        evaluate(store, "shapes:t2i:3:seed1", tmp_path / "run", ColourCritic(), resume=True)
    summary, _ = evaluate(store, "shapes:t2i:3:seed0", tmp_path / "run", ColourCritic(), resume=True)
    assert summary["answered"] == 3


class StopAfterFirstBatch(RecordingContext):
    def metric(self, step, name, value):
        super().metric(step, name, value)
        self.stop_requested = True


def test_a_stop_request_ends_after_the_current_batch_and_says_so(tmp_path, store):
    config = EvalConfig(data=str(genai_t2i(tmp_path)), batch_size=2)
    ctx = StopAfterFirstBatch(tmp_path / "run")
    summary = execute(config, ctx, store, critic=ColourCritic())
    assert summary["stopped"] is True and (summary["answered"], summary["pending"]) == (2, 3)
    assert summary["accuracy"] == pytest.approx(1 / 3)  # pending rows are not right


def test_progress_curve_artifacts_and_exported_rows(tmp_path, store):
    summary, ctx = evaluate(store, genai_t2i(tmp_path), tmp_path / "run", ColourCritic(), batch_size=2)
    assert [m[:2] for m in ctx.metrics] == [(2, "accuracy"), (4, "accuracy"), (5, "accuracy")]
    assert [m[2] for m in ctx.metrics] == pytest.approx([0.5, 2 / 3, 2 / 3])
    assert ctx.steps[-1][:2] == (5, 5) and ctx.summary == summary
    artifacts = {name: path for name, path, _ in ctx.artifacts}
    assert set(artifacts) == {"rows.csv", "rows.jsonl", "summary.json"}
    lines = [json.loads(line) for line in artifacts["rows.jsonl"].read_text().splitlines()]
    assert [(r["label"], r["winner"], r["correct"]) for r in lines] == [
        ("A", "A", True), ("A", "B", False), ("tie", "tie", True), ("B", "B", True), ("both_bad", "tie", True)]
    assert lines[0]["score_a"] == pytest.approx(5 / 6) and lines[0]["judgement_id"] is not None
    assert artifacts["rows.csv"].read_text().count("\n") == 6  # header + 5 rows
    assert json.loads(artifacts["summary.json"].read_text()) == summary


def stub_reply(body):
    """A pairwise answer from the request's text: 'zzgarbled' gets prose, 'zzright' a B win."""
    text = json.dumps(body)
    if "zzgarbled" in text:
        return "I would rather not say which image is better."
    a, b = ("2", "4") if "zzright" in text else ("4", "2")
    winner = "B" if "zzright" in text else "A"
    return "\n".join([
        "# User Request Analysis", "A square.", "# Detailed Judgement",
        "1. Text Faithfulness:", "## Justification: colour.", f"## Score A: {a}", f"## Score B: {b}",
        f"## Winner: {winner}",
        "2. Physical and Visual Quality:", "## Justification: clean.", "## Score A: 3", "## Score B: 3", "## Winner: Tie",
        "3. Text Rendering:", "## Justification: none.", "## Score A: N/A", "## Score B: N/A", "## Winner: Tie",
        f"# Summary: Image {winner} is better.", f"# Overall Winner: {winner}",
    ])


def test_unparseable_answers_and_server_errors_through_an_openai_endpoint(tmp_path, store):
    prompts = ["zzleft square", "zzgarbled square", "zzright square", "zzright square again"]
    rows = [{"prompt": p, "left_image": struct("red"), "right_image": struct("blue"), "vote_type": v}
            for p, v in zip(prompts, ["leftvote", "leftvote", "rightvote", "rightvote"])]
    data = write_parquet(rows, tmp_path / "four.parquet")
    # one row per call, in order: row 1 is asked twice (one parse retry); row 3 meets a server error
    with OpenAIStub(reply=stub_reply, script=[Scripted(200)] * 4 + [Scripted(500, message="engine crashed")]) as stub:
        config = EvalConfig(data=str(data), batch_size=1, critic={"backend": "openai", "base_url": stub.url,
                                                                   "max_retries": 0})
        summary = execute(config, RecordingContext(tmp_path / "run"), store)
        assert stub.chat_requests == 5
    assert (summary["n"], summary["answered"], summary["failed"]) == (4, 2, 2)
    assert summary["accuracy"] == 0.5 and summary["accuracy_answered"] == 1.0
    reasons = {r["row_index"]: r["reason"] for r in summary["failed_rows"]}
    assert "did not parse after 2 attempt(s)" in reasons[1]
    assert "500" in reasons[3] and "engine crashed" in reasons[3]
    assert summary["critic"].startswith("openai(base_url=http://127.0.0.1")


def test_config_validation_errors():
    with pytest.raises(ConfigError, match="data is required"):
        EvalConfig().validate()
    with pytest.raises(ConfigError, match="pairwise mode"):
        EvalConfig(data="x", mode="pointwise", position_consistency=True).validate()
    with pytest.raises(ConfigError, match="OpenAI-compatible"):
        EvalConfig(data="x", concurrency=8).validate()
    with pytest.raises(ConfigError, match="Unknown dimension"):
        EvalConfig(data="x", weights={"beauty": 1.0}).validate()
    with pytest.raises(ConfigError, match="tie_tolerance"):
        EvalConfig(data="x", tie_tolerance=-1).validate()


def test_config_round_trips_through_a_file_with_flag_overrides(tmp_path):
    config = EvalConfig(data="shapes:t2i:10", mode="pointwise", weights={"text_faithfulness": 2.0},
                        critic={"backend": "shapes", "perception_noise": 0.2})
    path = save_config(config, tmp_path / "config.json")
    assert parse_config(EvalConfig, ["--config", str(path)]) == config
    assert parse_config(EvalConfig, ["--config", str(path), "--mode", "pairwise"]).mode == "pairwise"


def last_json_line(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_module_main_prints_the_summary_as_the_last_stdout_line(tmp_path, capsys):
    status = main(["--data", "shapes:t2i:6:seed0", "--store", str(tmp_path / "s"), "--run-dir", str(tmp_path / "r")])
    out = capsys.readouterr()
    summary = last_json_line(out.out)
    assert status == 0 and CONTRACT <= set(summary) and "accuracy_with_ties" in summary
    assert summary["benchmark"] == "shapes-t2i" and summary["critic"] == "shapes" and summary["n"] == 6
    assert summary["run_id"] == f"run:{(tmp_path / 'r').resolve()}"
    assert main(["--data", "", "--store", str(tmp_path / "s")]) == 2
    assert "data is required" in capsys.readouterr().err


def test_an_eval_job_runs_detached_records_its_curve_and_resumes_without_redoing_rows(tmp_path):
    """The job runner starts the kind as `python -m studio.evaluation.run --config FILE --job-id ID
    --job-store DB`; rows are stored under the job id, and a resumed job keeps them."""
    store = SessionStore(tmp_path / "store" / "studio.db")
    runner = Runner(store, JobLimits(max_gpu_jobs=1, max_cpu_jobs=1, grace_s=1.0), free_gpu_gb=lambda: None)
    config = EvalConfig(data="shapes:t2i:4:seed0", mode="pointwise", store=str(store.path), batch_size=2)
    job_id = runner.submit("eval", config)
    job = runner.wait(job_id, timeout_s=120)
    assert job["status"] == "done", Path(job["log_path"]).read_text()
    summary = job["result"]
    assert summary["run_id"] == job_id and summary["mode"] == "pointwise" and summary["answered"] == 4
    assert [m["step"] for m in store.job_metrics(job_id) if m["name"] == "accuracy"] == [2, 4]
    assert {a["name"] for a in store.job_artifacts(job_id)} >= {"rows.csv", "summary.json"}
    first_rows = {r.row_index: r.critique_a_id for r in EvalRows(store, job_id).recorded().values()}
    runner.resume(job_id)
    job = runner.wait(job_id, timeout_s=120)
    assert job["status"] == "done" and job["result"]["answered"] == 4
    assert {r.row_index: r.critique_a_id for r in EvalRows(store, job_id).recorded().values()} == first_rows
    store.close()


def test_studio_eval_cli_turns_the_app_critic_flags_into_the_spec(tmp_path, capsys):
    status = cli_main(["eval", "--data", "shapes:t2i:6:seed0", "--store", str(tmp_path / "s"), "--no-progress",
                       "--critic-settings", '{"perception_noise": 0.5}', "--mode", "pointwise"])
    summary = last_json_line(capsys.readouterr().out)
    assert status == 0 and summary["critic"] == "shapes(perception_noise=0.5)"
    assert (summary["n"], summary["answered"], summary["mode"]) == (6, 6, "pointwise")
    assert Path(summary["run_id"].removeprefix("run:")).parent == (tmp_path / "s" / "eval").resolve()
    with OpenAIStub(reply=stub_reply, latency_s=0.2) as stub:
        status = cli_main(["eval", "--data", str(genai_t2i(tmp_path)), "--store", str(tmp_path / "s"),
                           "--critic-url", stub.url, "--concurrency", "4", "--no-progress"])
        # the five pairs go out as one batch, four at a time (the endpoint's full concurrency)
        assert stub.chat_requests == 5 and stub.max_in_flight == 4
    summary = last_json_line(capsys.readouterr().out)
    # the stub prefers A whenever the prompt lacks 'zzright': right on decisive rows 0 and 1 of 0, 1, 3
    assert status == 0 and summary["critic"] == f"openai(base_url={stub.url})"
    assert summary["accuracy"] == pytest.approx(2 / 3) and summary["predicted_ties"] == 0
