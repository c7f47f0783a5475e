"""Critic prompt templates as data: the shipped files pass their own check, a user's folder
replaces some of them, and a template missing anything the parser needs is refused by name."""

from __future__ import annotations

import argparse

import pytest
from PIL import Image

from models.critic import ProtocolCritic
from models.critic.templates import SHIPPED_DIR, file_name, load_templates, missing_markers, shipped_templates
from models.errors import ConfigError
from models.types import CritiqueRequest, PairRequest
from studio.options import add_backend_options, config_from_args

IMAGE = Image.new("RGB", (8, 8), (200, 30, 30))
SHIPPED_T2I = (SHIPPED_DIR / "pointwise_t2i.txt").read_text()


def _folder(tmp_path, **files: str):
    for name, text in files.items():
        (tmp_path / f"{name}.txt").write_text(text)
    return tmp_path


@pytest.mark.parametrize("kind", ["pointwise", "pairwise"])
@pytest.mark.parametrize("task", ["t2i", "edit"])
def test_every_shipped_template_has_every_protocol_marker(kind, task):
    template = shipped_templates().get(kind, task)
    assert missing_markers(kind, task, template.user) == []
    assert template.origin == file_name(kind, task)


def test_user_template_replaces_only_its_own_file(tmp_path):
    mine = "[user]\nUser Instruction: {request}\n1. Generated Image {image}\nMY OWN WORDS\n" + SHIPPED_T2I.split(
        "Answer in exactly this format:")[1]
    templates = load_templates(_folder(tmp_path, pointwise_t2i=mine))
    assert templates.get("pointwise", "t2i").system is None and "MY OWN WORDS" in templates.get("pointwise", "t2i").user
    assert templates.get("pointwise", "edit") is shipped_templates().get("pointwise", "edit")
    assert templates.folder == str(tmp_path)


def test_critic_sends_the_users_template(tmp_path):
    mine = SHIPPED_T2I.replace("You are given one image:", "Here is the picture:")
    seen = []

    class Recorder:
        def complete(self, prompts):
            seen.extend(prompts)
            return ["no critique" for _ in prompts]

    critic = ProtocolCritic(Recorder(), parse_retries=0, prompts=_folder(tmp_path, pointwise_t2i=mine))
    critic.critique([CritiqueRequest("t2i", "a red square", IMAGE)])
    critic.judge([PairRequest("t2i", "a red square", IMAGE, IMAGE)])
    texts = ["".join(p.get("text", "") for p in prompt.messages[-1]["content"]) for prompt in seen]
    assert "Here is the picture:" in texts[0] and "Generated Image A" in texts[1]
    assert critic.to_config()["prompts"] == str(tmp_path)


@pytest.mark.parametrize(
    "broken, named",
    [
        (SHIPPED_T2I.replace("## Refined Request:", "## New Request:"), "'## Refined Request:' is missing"),
        (SHIPPED_T2I.replace("2. Physical and Visual Quality:", "2. Quality:"), "'2. Physical and Visual Quality:'"),
        (SHIPPED_T2I.replace("## Score: [ float score or N/A ]", "## Rating: 3"), "'## Score:' under '3. Text Rendering:'"),
        (SHIPPED_T2I.replace("# Detailed Judgement", "# Judgement"), "'# Detailed Judgement' is missing"),
        (SHIPPED_T2I.replace("# Summary:", "# Conclusion:"), "'# Summary:' is missing"),
        (SHIPPED_T2I.replace("{image}", "<image>"), "the slot {image} is missing"),
        (SHIPPED_T2I.replace("{request}", "{prompt}"), "unknown slot(s) ['prompt']"),
        (SHIPPED_T2I.replace("{image}", "{image} {image}"), "the slot {image} appears 2 times"),
        (SHIPPED_T2I.replace("User Instruction:", "User {Instruction:"), "for literal braces"),
        (SHIPPED_T2I.replace("{request}", "{request!r}"), "format spec or conversion"),
        (SHIPPED_T2I.replace("[system]\n", "[user]\n", 1), "'[system]' line"),
    ],
    ids=["refined", "heading", "score", "judgement", "summary", "image-slot", "unknown-slot", "twice", "brace",
         "conversion", "roles"],
)
def test_broken_template_is_refused_naming_what_is_missing(tmp_path, broken, named):
    with pytest.raises(ConfigError) as error:
        load_templates(_folder(tmp_path, pointwise_t2i=broken))
    assert named in str(error.value) and "pointwise_t2i.txt" in str(error.value)


def test_pairwise_template_without_winner_lines_is_refused(tmp_path):
    shipped = (SHIPPED_DIR / "pairwise_edit.txt").read_text()
    broken = shipped.replace("## Winner: [ Image A or Image B or It's a tie ]\n3.", "3.")
    with pytest.raises(ConfigError, match="'## Winner:' under '2. Image Faithfulness:'"):
        load_templates(_folder(tmp_path, pairwise_edit=broken))


def test_folder_problems_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        load_templates(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="holds none of the template files"):
        load_templates(tmp_path)
    with pytest.raises(ConfigError, match=r"\['pointwise-t2i.txt'\]"):
        load_templates(_folder(tmp_path, **{"pointwise-t2i": SHIPPED_T2I}))


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_backend_options(parser)
    return parser.parse_args(list(argv))


def test_critic_prompts_flag_is_checked_at_start_and_reaches_the_critic_spec(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    _folder(good, pointwise_t2i=SHIPPED_T2I)
    spec = config_from_args(_args("--critic-url", "http://localhost:8000/v1", "--critic-prompts", str(good))).critic
    assert spec["prompts"] == str(good)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "pointwise_t2i.txt").write_text(SHIPPED_T2I.replace("# Summary:", "# Verdict:"))
    with pytest.raises(ConfigError, match="'# Summary:' is missing"):
        config_from_args(_args("--critic", "some/model", "--critic-prompts", str(bad)))
    with pytest.raises(ConfigError, match="applies to a model critic"):
        config_from_args(_args("--critic-prompts", str(good)))
