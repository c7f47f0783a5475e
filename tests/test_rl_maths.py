"""RL reward maths on hand-made numbers: groups, normalisation, clipping, the [0, 1] mapping,
failure exclusion, retirement, the old-policy schedule, the reward-hacking monitor, the config."""

from __future__ import annotations

import json
import math
import threading
import time

import pytest
import torch
from PIL import Image

from models.critic.scoring import ScoringPolicy
from models.errors import ConfigError, JobError
from models.types import Critique, CritiqueFailure, CritiqueRequest
from studio.jobs.config import config_to_flags, parse_config
from studio.rl.advantages import EPS, compute_advantages, solved_groups
from studio.rl.anchor import best_of_groups
from studio.rl.config import RLConfig
from studio.rl.data import PromptItem
from studio.rl.evaluate import HackingMonitor, check_flags
from studio.rl.flow import Cond, FlowModel
from studio.rl.nft import nft_loss
from studio.rl.reward import RewardQueue, Scored, score_results
from studio.rl.weights import blend, old_policy_decay


def test_group_advantage_on_hand_made_numbers():
    keys = [("p", None)] * 3 + [("q", None)] * 2
    result = compute_advantages(keys, [1.0, 2.0, 3.0, 0.5, 0.5], clip=5.0)
    std = math.sqrt(2 / 3)  # population std of 1, 2, 3
    assert result.advantage[0] == pytest.approx(-1 / (std + EPS))
    assert result.advantage[1] == pytest.approx(0.0)
    assert result.weight[0] == pytest.approx(-1 / (std + EPS) / 10 + 0.5)
    assert result.weight[2] == pytest.approx(1 / (std + EPS) / 10 + 0.5)
    # a group whose images all scored the same: advantage 0, weight 0.5
    assert result.advantage[3:] == [0.0, 0.0] and result.weight[3:] == [0.5, 0.5]


def test_global_std_divides_by_the_std_of_the_whole_step():
    keys = [("p", None)] * 2 + [("q", None)] * 2
    rewards = [0.0, 1.0, 2.0, 4.0]
    result = compute_advantages(keys, rewards, std_scope="global")
    mean = sum(rewards) / 4
    global_std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / 4)
    assert result.advantage == pytest.approx([-0.5 / (global_std + EPS), 0.5 / (global_std + EPS),
                                              -1 / (global_std + EPS), 1 / (global_std + EPS)])


def test_advantages_are_clipped_before_the_mapping():
    keys = [("p", None)] * 31
    result = compute_advantages(keys, [0.0] * 30 + [1.0], clip=5.0)  # the outlier is 5.47 std above the mean
    assert result.advantage[-1] == 5.0 and result.weight[-1] == 1.0
    assert result.weight[0] == pytest.approx(-(1 / 31) / (math.sqrt(30) / 31 + EPS) / 10 + 0.5)


def test_groups_are_keyed_by_prompt_and_source_image():
    same_instruction = [PromptItem("make it blue", source_id="a.png"), PromptItem("make it blue", source_id="b.png")]
    keys = [same_instruction[0].key] * 2 + [same_instruction[1].key] * 2
    result = compute_advantages(keys, [0.0, 1.0, 10.0, 11.0])
    assert len(result.groups) == 2
    # merged by prompt text alone, the 10 and 11 would be far above a mean of 5.5; per source they are -1, +1
    assert result.advantage == pytest.approx([-0.5 / (0.5 + EPS), 0.5 / (0.5 + EPS)] * 2)


def test_a_failed_critique_is_excluded_from_its_group_and_counted_never_zero():
    keys = [("p", None)] * 4
    result = compute_advantages(keys, [0.2, None, 0.4, 0.6])
    assert result.failed == 1
    assert result.advantage[1] is None and result.weight[1] is None
    stats = result.groups[("p", None)]
    assert (stats.n, stats.failed) == (3, 1)
    assert stats.mean == pytest.approx(0.4)  # a 0 for the failure would have given 0.3
    assert result.advantage[2] == pytest.approx(0.0)


def test_a_group_with_one_scored_image_is_not_trained_on():
    result = compute_advantages([("p", None), ("p", None)], [0.7, None])
    assert result.weight == [None, None] and result.undetermined == 1 and result.failed == 1


def test_uniformly_solved_groups_are_retired():
    keys = [("solved", None)] * 3 + [("high_but_mixed", None)] * 3 + [("low", None)] * 3 + [("one", None)]
    rewards = [0.95, 0.96, 0.97, 0.99, 0.99, 0.80, 0.1, 0.1, 0.1, 0.99]
    stats = compute_advantages(keys, rewards).groups
    assert solved_groups(stats, mean_above=0.9, std_below=0.05) == [("solved", None)]


def test_the_anchor_keeps_each_groups_best_scored_image_and_drops_a_group_with_none():
    keys = [("a", None)] * 3 + [("b", None)] * 2 + [("c", None)] * 2
    scored = [Scored(0.4), Scored(None, failure="garbage"), Scored(0.7), Scored(None, failure="x"),
              Scored(None, failure="y"), Scored(0.9), Scored(0.2)]
    assert best_of_groups(keys, scored) == [2, 5]  # a failed critique is not a candidate, however it would score


def test_old_policy_decay_grows_to_its_maximum():
    assert old_policy_decay(0, 0.001, 0.5) == 0.0
    assert old_policy_decay(100, 0.001, 0.5) == pytest.approx(0.1)
    assert old_policy_decay(10_000, 0.001, 0.5) == 0.5
    target = {"w": torch.tensor([0.0, 4.0])}
    blend(target, {"w": torch.tensor([2.0, 0.0])}, decay=0.25)
    assert target["w"].tolist() == [1.5, 1.0]


def _critique(text: float, quality: float | None = 3.0, image: float | None = 1.0) -> Critique:
    scores = {"text_faithfulness": text, "physical_quality": quality, "image_faithfulness": image}
    return Critique("t2i", scores, {}, None, None, None, None, None, "")


def test_rewards_use_the_rl_policy_and_report_failures():
    scored = score_results([_critique(4.0), CritiqueFailure("unparseable"), _critique(None, None, 4.0)],
                           ScoringPolicy.rl_reward())
    assert scored[0].reward == pytest.approx(((4.0 + 3.0) / 2 - 1) / 3)  # image faithfulness left out
    assert scored[1].reward is None and scored[1].failure == "unparseable"
    assert scored[2].reward is None and "no dimension" in scored[2].failure


def _scalar(overall: float | None) -> Critique:
    return Critique("t2i", {}, {}, None, None, None, None, overall, "")


def test_a_scalar_critic_is_rewarded_by_its_overall_score_and_its_failures_are_counted():
    scored = score_results([_scalar(0.8), _scalar(None), _scalar(math.nan), _critique(4.0)],
                           ScoringPolicy.rl_reward())
    assert (scored[0].reward, scored[0].dimensions, scored[0].failure) == (0.8, {}, None)
    assert scored[1].reward is None and "no overall score" in scored[1].failure
    assert scored[2].reward is None and "not a finite number" in scored[2].failure
    assert scored[3].reward == pytest.approx(2.5 / 3) and scored[3].dimensions["text_faithfulness"] == 4.0


class SlowCritic:
    """Answers after ``latency`` seconds; records which thread called it."""

    name = "slow"

    def __init__(self, latency: float, fail: bool = False) -> None:
        self.latency, self.fail, self.threads = latency, fail, []

    def critique(self, requests):
        self.threads.append(threading.current_thread().name)
        time.sleep(self.latency)
        if self.fail:
            raise ConnectionError("server down")
        return [_critique(2.0 + i % 2) for i, _ in enumerate(requests)]


def _requests(n: int) -> list[CritiqueRequest]:
    return [CritiqueRequest("t2i", "a red circle", Image.new("RGB", (8, 8))) for _ in range(n)]


def test_reward_queue_overlaps_critic_calls_with_the_caller():
    critic = SlowCritic(0.3)
    rewards = RewardQueue(critic, ScoringPolicy.rl_reward(), overlap=True, batch_size=2)
    started = time.perf_counter()
    rewards.submit([0, 1], _requests(2))
    submitted = time.perf_counter() - started
    time.sleep(0.3)  # the caller "draws the next images" meanwhile
    scored = rewards.collect([0, 1])
    rewards.close()
    assert submitted < 0.1 and rewards.wait_seconds < 0.15
    assert critic.threads == ["rl-reward"] and [s.reward is not None for s in scored] == [True, True]


def test_a_crashing_critic_fails_the_step_with_its_reason():
    rewards = RewardQueue(SlowCritic(0.0, fail=True), ScoringPolicy.rl_reward(), overlap=True, batch_size=2)
    rewards.submit([0], _requests(1))
    with pytest.raises(JobError, match="server down"):
        rewards.collect([0])
    rewards.close()


def test_reward_hacking_alert_when_reward_rises_while_the_check_falls():
    monitor = HackingMonitor(tolerance=0.02)
    assert monitor.update({"eval/reward": 0.50, "eval/check": 0.40}) == []
    assert monitor.update({"eval/reward": 0.60, "eval/check": 0.45}) == []  # both rose: learning
    assert monitor.update({"eval/reward": 0.50, "eval/check": 0.30}) == []  # both fell: not hacking
    assert monitor.update({"eval/reward": 0.70, "eval/check": 0.30}) == ["reward"]


def test_a_counted_dimension_rising_while_the_check_falls_alerts_even_when_the_reward_is_flat():
    # last session's LoRA run: Text Rendering up, Text Faithfulness down, reward flat, accuracy down
    dims = ("text_faithfulness", "physical_quality", "text_rendering")
    monitor = HackingMonitor(tolerance=0.02, dimensions=dims)
    first = {"eval/reward": 0.630, "eval/check": 0.24, "eval/text_faithfulness": 2.72, "eval/physical_quality": 3.64,
             "eval/text_rendering": 1.13}
    assert monitor.update(first) == []
    later = {"eval/reward": 0.632, "eval/check": 0.20, "eval/text_faithfulness": 2.56, "eval/physical_quality": 3.60,
             "eval/text_rendering": 1.37}
    alerts = monitor.update(later)
    assert alerts == ["text_rendering"]
    assert monitor.metrics(alerts) == {
        "monitor/alert": 1.0, "monitor/alert_text_faithfulness": 0.0, "monitor/alert_physical_quality": 0.0,
        "monitor/alert_text_rendering": 1.0}
    # a dimension's tolerance is on its 1-4 scale: +0.05 there is less than 0.02 reward units
    assert monitor.update({**later, "eval/text_rendering": 1.18}) == []
    # the same rise with the check held is learning, not hacking
    assert monitor.update({**later, "eval/check": 0.24}) == []
    assert monitor.metrics([])["monitor/alert"] == 0.0
    scalar = HackingMonitor(tolerance=0.02, dimensions=dims)  # a scalar reward model scores no dimension
    scalar.update({"eval/reward": 0.5, "eval/check": 0.3})
    assert scalar.metrics([]) == {"monitor/alert": 0.0}


def test_a_trade_between_prompt_forms_alerts_for_the_form_that_lost_while_a_uniform_rise_does_not():
    # session 4's short-prompt run (held-out n = 100): short's reward rose, detailed's check fell 14 points;
    # the means over both forms both fell, so the overall rule stays silent
    dims = ("text_faithfulness",)
    first = {"eval/reward": 0.614, "eval/check": 0.135, "eval/text_faithfulness": 2.68,
             "eval/reward_short": 0.492, "eval/check_short": 0.01, "eval/reward_detailed": 0.736,
             "eval/check_detailed": 0.26}
    trade = {"eval/reward": 0.5825, "eval/check": 0.09, "eval/text_faithfulness": 2.495,
             "eval/reward_short": 0.554, "eval/check_short": 0.06, "eval/reward_detailed": 0.611,
             "eval/check_detailed": 0.12}
    monitor = HackingMonitor(tolerance=0.02, dimensions=dims)
    assert monitor.update(first) == []
    alerts = monitor.update(trade)
    assert alerts == ["form_detailed"]
    assert monitor.metrics(alerts) == {"monitor/alert": 1.0, "monitor/alert_text_faithfulness": 0.0,
                                       "monitor/alert_form_detailed": 1.0, "monitor/alert_form_short": 0.0}
    # both forms gain reward and check: learning
    rise = {**first, "eval/reward": 0.66, "eval/check": 0.19, "eval/reward_short": 0.55, "eval/check_short": 0.08,
            "eval/reward_detailed": 0.77, "eval/check_detailed": 0.30}
    assert monitor.update(rise) == []
    # both forms lose reward and check: degrading, not hacking
    assert monitor.update({**first, "eval/reward_short": 0.47, "eval/check_short": 0.00, "eval/reward_detailed": 0.70,
                           "eval/check_detailed": 0.20}) == []
    # within one form: detailed's reward rises while its own check falls (the overall rule sees it too here)
    assert monitor.update({**first, "eval/reward": 0.636, "eval/check": 0.105, "eval/reward_detailed": 0.78,
                           "eval/check_detailed": 0.20}) == ["reward", "form_detailed"]
    # a check that falls by no more than the tolerance is noise
    assert monitor.update({**trade, "eval/check_detailed": 0.245}) == []
    # an evaluation of one form (or a monitor resumed from a baseline without forms) has no form curves
    single = HackingMonitor(tolerance=0.02, dimensions=dims)
    single.update({"eval/reward": 0.5, "eval/check": 0.3, "eval/text_faithfulness": 2.5, "eval/check_short": 0.3})
    assert single.metrics([]) == {"monitor/alert": 0.0, "monitor/alert_text_faithfulness": 0.0}


def test_with_per_scene_checks_a_few_flipped_scenes_do_not_alert_but_a_significant_loss_does():
    # the word-base runs of session 17: 50 detailed scenes, 30 right; one to three flipped scenes
    # (0.02-0.06, above the 0.02 tolerance) raised form_detailed at 9 of 38 evaluations
    items = [PromptItem(f"p{i}", form="detailed" if i < 50 else "short") for i in range(100)]
    before = [i < 30 for i in range(50)] + [i < 53 for i in range(50, 100)]
    first = {"eval/reward": 0.81, "eval/check": 0.33, "eval/reward_short": 0.69, "eval/check_short": 0.06,
             "eval/reward_detailed": 0.926, "eval/check_detailed": 0.60}
    monitor = HackingMonitor(tolerance=0.02)
    assert monitor.update(first, check_flags(items, before)) == []

    def later(lost: int, gained: int) -> tuple[dict[str, float], dict[str, list[bool]]]:
        now = list(before)
        for i in range(lost):
            now[i] = False  # detailed scenes that were right
        for i in range(gained):
            now[30 + i] = True  # detailed scenes that were wrong
        metrics = {**first, "eval/reward_short": 0.80, "eval/check_short": sum(now[50:]) / 50,
                   "eval/check_detailed": sum(now[:50]) / 50, "eval/check": sum(now) / 100}
        return metrics, check_flags(items, now)

    assert monitor.update(*later(lost=2, gained=0)) == []  # 0.60 -> 0.56: p = 0.5
    assert monitor.update(*later(lost=7, gained=2)) == []  # 0.60 -> 0.50, but 7 against 2: p = 0.18
    assert monitor.update(*later(lost=6, gained=0)) == ["form_detailed"]  # p = 0.031
    # without per-scene checks (a second critic as the check) the tolerance alone decides, as does p = 1
    assert monitor.update(later(lost=2, gained=0)[0]) == ["form_detailed"]
    coarse = HackingMonitor(tolerance=0.02, p=1.0)
    coarse.update(first, check_flags(items, before))
    assert coarse.update(*later(lost=2, gained=0)) == ["form_detailed"]
    # a checkpoint keeps the baseline's scenes
    resumed = HackingMonitor(tolerance=0.02)
    resumed.restore(json.loads(json.dumps(monitor.state())))
    assert resumed.update(*later(lost=2, gained=0)) == [] and resumed.update(*later(lost=6, gained=0)) == ["form_detailed"]
    assert check_flags(items[:50], before[:50]) == {"check": before[:50]}  # one form: no form's flags
    assert check_flags(items, []) == {}


def test_config_defaults_are_the_public_settings_and_round_trip_through_flags(tmp_path):
    config = RLConfig()
    assert (config.lora_rank, config.lora_alpha, config.learning_rate, config.group_size, config.prompts_per_step,
            config.kl_weight, config.beta, config.retire_mean, config.retire_std, config.sampling_steps) == (
        32, 64, 3e-4, 8, 64, 1e-4, 1.0, 0.9, 0.05, 10)
    assert "image_faithfulness" not in config.scoring_policy().weights
    changed = parse_config(RLConfig, ["--group-size", "4", "--std-scope", "global", "--no-overlap-reward",
                                      "--critic", '{"backend": "openai", "base_url": "http://x"}'])
    assert parse_config(RLConfig, config_to_flags(changed)) == changed
    with pytest.raises(ConfigError, match="group_size must be at least 2"):
        parse_config(RLConfig, ["--group-size", "1"])
    with pytest.raises(ConfigError, match="anchor_prompts must be a whole number of 0"):
        parse_config(RLConfig, ["--anchor-prompts", "-1"])
    assert config.anchor_prompts == 0  # no anchor unless asked
    with pytest.raises(ConfigError, match="Unknown dimension"):
        parse_config(RLConfig, ["--weights", '{"beauty": 1}'])


def test_python_m_studio_rl_runs_the_rl_job_and_explains_bad_settings(capsys):
    from studio.cli import main

    assert main(["rl", "--group-size", "1"]) == 2
    assert "group_size must be at least 2" in capsys.readouterr().err


class _LinearFlow:
    """A velocity field ``v = w * e(cond)`` with true CFG 3, for the loss on hand-made numbers."""

    guidance = 3.0
    guide = FlowModel.guide

    def __init__(self) -> None:
        self.w = torch.nn.Parameter(torch.tensor(1.0))

    def velocity(self, x, t, cond, params=None):
        w = self.w if params is None else params["w"]
        return (w * cond.batched["e"]).expand_as(x)


@pytest.mark.parametrize(("r", "guided", "loss", "grad"), [
    (1.0, True, 1.0, 3.0), (0.0, True, 1.0, -3.0),  # the sampler's velocity 3w: x0 predicted at -1
    (1.0, False, 0.0, 0.0),  # the conditional branch alone sees a perfect prediction: nothing to learn
])
def test_with_cfg_the_loss_is_on_the_guided_velocity_the_sampler_used(r, guided, loss, grad):
    model = _LinearFlow()
    cond, uncond = Cond({"e": torch.ones(1, 1)}, {}), Cond({"e": torch.zeros(1, 1)}, {})
    # x0 = 0, eps = 1, t = 0.5: x_t = 0.5; guided v = v_u + 3 (v_c - v_u) = 3w; w = w_old = 1
    result = nft_loss(model, cond, torch.zeros(1, 4), torch.tensor([r]), torch.tensor([0.5]), torch.ones(1, 4),
                      old={"w": torch.tensor(1.0)}, base=None, beta=1.0, kl_weight=0.0,
                      uncond=uncond if guided else None)
    result.loss.backward()
    assert result.loss.item() == pytest.approx(loss, abs=1e-4)
    assert model.w.grad.item() == pytest.approx(grad, abs=1e-3)
