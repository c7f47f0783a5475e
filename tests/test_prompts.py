"""Critic prompts: markers in exact form and order, image placeholders, data URIs, round trip."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import orjson
import pytest
from PIL import Image

from models.critic import build_pairwise_prompt, build_pointwise_prompt, parse_critique, parse_pairwise
from models.critic.chat import openai_request_body, to_openai_messages
from models.errors import InvalidInputError
from models.types import CritiqueRequest, PairRequest, task_dimensions


def _image(seed: int, size: tuple[int, int] = (12, 9)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


SOURCE, EDITED, IMG_A, IMG_B = (_image(i) for i in range(4))


def _pointwise(task: str):
    source = SOURCE if task == "edit" else None
    return build_pointwise_prompt(CritiqueRequest(task=task, prompt="a red fox", image=EDITED, source_image=source))


def _pairwise(task: str):
    source = SOURCE if task == "edit" else None
    return build_pairwise_prompt(
        PairRequest(task=task, prompt="a red fox", image_a=IMG_A, image_b=IMG_B, source_image=source)
    )


def _user_text(prompt) -> str:
    """The user message with each image placeholder written as <IMAGE>."""
    user = prompt.messages[-1]
    return "".join(p["text"] if p["type"] == "text" else "<IMAGE>" for p in user["content"])


def _layout(prompt) -> str:
    text = _user_text(prompt)
    return text[text.index("# User Request Analysis"):]


def _expected_pointwise_markers(task: str) -> list[str]:
    markers = ["# User Request Analysis", "# Detailed Judgement"]
    for n, dim in enumerate(task_dimensions(task), start=1):
        markers += [f"{n}. {dim.heading}:", "## Justification:", "## Score:"]
    return markers + ["# Summary:", "# User Request Refinement:", "## Refinement Comments:", "## Refined Request:"]


def _expected_pairwise_markers(task: str) -> list[str]:
    markers = ["# User Request Analysis", "# Detailed Judgement"]
    for n, dim in enumerate(task_dimensions(task), start=1):
        markers += [f"{n}. {dim.heading}:", "## Justification:", "## Score A:", "## Score B:", "## Winner:"]
    return markers + ["# Summary:"]


def _marker_lines(layout: str) -> list[str]:
    """The marker that starts each line of the layout (text up to and including its colon)."""
    found = []
    for line in layout.splitlines():
        match = re.match(r"^(#+ [A-Za-z ]+:?|\d\. [A-Za-z ]+:)", line)
        if match:
            found.append(match.group(1))
    return found


@pytest.mark.parametrize("task", ["t2i", "edit"])
def test_pointwise_markers_exact_and_in_order(task):
    assert _marker_lines(_layout(_pointwise(task))) == _expected_pointwise_markers(task)


@pytest.mark.parametrize("task", ["t2i", "edit"])
def test_pairwise_markers_exact_and_in_order_without_overall_winner(task):
    assert _marker_lines(_layout(_pairwise(task))) == _expected_pairwise_markers(task)


@pytest.mark.parametrize("task", ["t2i", "edit"])
def test_score_placeholders_invite_floats_and_na_only_for_text_rendering(task):
    pointwise = [line for line in _layout(_pointwise(task)).splitlines() if line.startswith("## Score")]
    expected = ["## Score: [ float score ]"] * (len(task_dimensions(task)) - 1) + ["## Score: [ float score or N/A ]"]
    assert pointwise == expected
    pairwise = [line for line in _layout(_pairwise(task)).splitlines() if line.startswith(("## Score", "## Winner"))]
    judged = ["## Score A: [ float score ]", "## Score B: [ float score ]", "## Winner: [ Image A or Image B or It's a tie ]"]
    na = ["## Score A: [ float score or N/A ]", "## Score B: [ float score or N/A ]",
          "## Winner: [ Image A or Image B or It's a tie or N/A ]"]
    assert pairwise == judged * (len(task_dimensions(task)) - 1) + na


@pytest.mark.parametrize("task", ["t2i", "edit"])
def test_pointwise_has_system_message_pairwise_has_none(task):
    pointwise, pairwise = _pointwise(task), _pairwise(task)
    assert [m["role"] for m in pointwise.messages] == ["system", "user"]
    assert "expert judge" in pointwise.messages[0]["content"][0]["text"]
    assert [m["role"] for m in pairwise.messages] == ["user"]
    for prompt, kind in ((pointwise, "pointwise"), (pairwise, "pairwise")):
        assert _user_text(prompt).startswith("User Instruction: a red fox\n")
        assert prompt.kind == kind


@pytest.mark.parametrize("builder", [_pointwise, _pairwise])
@pytest.mark.parametrize("task", ["t2i", "edit"])
def test_rubric_defines_each_dimension_and_every_level_in_a_sentence(builder, task):
    text = _user_text(builder(task))
    for n, dim in enumerate(task_dimensions(task), start=1):
        assert re.search(rf"\*\*{n}\. {dim.heading}\*\* \(.+\?\)", text), dim.heading  # a definition
        for level, label in zip((4, 3, 2, 1), dim.levels):
            sentence = re.search(rf"- \*\*{level} \({label}\):\*\* (.+)", text)
            assert sentence and len(sentence.group(1).split()) >= 5, (dim.heading, level)
    assert "N/A" in text and "no text" in text


@pytest.mark.parametrize("task", ["t2i", "edit"])
def test_scoring_method_anchors_on_a_level_then_deducts_from_4_with_an_example(task):
    text = _user_text(_pointwise(task))
    assert "integer level" in text and "start from 4.0" in text
    assert re.search(r"4\.0 - 0\.\d+( - 0\.\d+)? = \d\.\d+", text)  # the worked example


def test_edit_prompt_asks_to_follow_the_system_message_guidelines():
    prompt = _pointwise("edit")
    assert "guidelines of the system message" in _user_text(prompt)
    assert "Guidelines" in prompt.messages[0]["content"][0]["text"]


@pytest.mark.parametrize(
    "builder, task, labels, images",
    [
        (_pointwise, "t2i", ["1. Generated Image"], [EDITED]),
        (_pointwise, "edit", ["1. Source Image", "2. Edited Image"], [SOURCE, EDITED]),
        (_pairwise, "t2i", ["1. Generated Image A", "2. Generated Image B"], [IMG_A, IMG_B]),
        (_pairwise, "edit", ["1. Source Image", "2. Edited Image A", "3. Edited Image B"], [SOURCE, IMG_A, IMG_B]),
    ],
)
def test_images_are_numbered_and_follow_the_text_naming_them(builder, task, labels, images):
    prompt = builder(task)
    parts = prompt.messages[-1]["content"]
    slots = [i for i, p in enumerate(parts) if p["type"] == "image"]
    assert [parts[i - 1]["text"].splitlines()[-1].strip() for i in slots] == labels
    assert all(a is b for a, b in zip(prompt.images, images)) and len(prompt.images) == len(images)
    assert not any(p["type"] == "image" for m in prompt.messages[:-1] for p in m["content"])


def test_request_text_is_inserted_as_written_braces_included():
    prompt = build_pointwise_prompt(CritiqueRequest(task="t2i", prompt="a sign reading {OPEN} {{x}}", image=EDITED))
    assert _user_text(prompt).startswith("User Instruction: a sign reading {OPEN} {{x}}\n")


def test_pointwise_edit_without_source_refused():
    with pytest.raises(InvalidInputError, match="source image"):
        build_pointwise_prompt(CritiqueRequest(task="edit", prompt="x", image=EDITED))


@pytest.mark.parametrize("builder", [_pointwise, _pairwise])
def test_openai_messages_carry_the_same_png_pixels(builder):
    prompt = builder("edit")
    messages = to_openai_messages(prompt)
    urls = [p["image_url"]["url"] for m in messages for p in m["content"] if p["type"] == "image_url"]
    assert len(urls) == len(prompt.images)
    for url, original in zip(urls, prompt.images):
        assert url.startswith("data:image/png;base64,")
        decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert decoded.format == "PNG"
        assert np.array_equal(np.asarray(decoded.convert("RGB")), np.asarray(original))
    texts = [p for m in messages for p in m["content"] if p["type"] == "text"]
    assert len(texts) == sum(p["type"] == "text" for m in prompt.messages for p in m["content"])
    assert not any(p["type"] == "image" for m in messages for p in m["content"])


def test_openai_messages_refuse_mismatched_images():
    prompt = _pointwise("edit")
    prompt.images = prompt.images[:1]
    with pytest.raises(InvalidInputError, match="2 image"):
        to_openai_messages(prompt)


@pytest.mark.parametrize("builder", [_pointwise, _pairwise])
def test_request_body_is_the_messages_json_with_the_images_spliced_in(builder):
    prompt = builder("edit")
    # a request that looks like a splice mark, quotes and escapes must come through as written
    prompt.messages[-1]["content"][0]["text"] += ' studio-image-0 "quoted" \\ back\nslash'
    fields = {"model": "m", "temperature": 0.1, "max_tokens": 2048}
    body = orjson.loads(openai_request_body(prompt, fields))
    assert body == {**fields, "messages": to_openai_messages(prompt)}


def test_request_body_refuses_mismatched_images():
    prompt = _pointwise("edit")
    prompt.images = prompt.images[:1]
    with pytest.raises(InvalidInputError, match="2 image"):
        openai_request_body(prompt, {"model": "m"})


def _fill_pointwise(layout: str) -> str:
    """A well-formed critique written in the prompt's own layout."""
    scores = iter(["3.5", "2.25", "3", "N/A"])
    out = []
    for line in layout.splitlines():
        if line.startswith("## Score:"):
            line = f"## Score: {next(scores)}"
        out.append(re.sub(r"\[ [^\]]+ \]", "filled in", line))
    return "\n".join(out)


@pytest.mark.parametrize("task", ["t2i", "edit"])
def test_round_trip_pointwise_layout_parses(task):
    critique = parse_critique(_fill_pointwise(_layout(_pointwise(task))), task)
    expected = dict(zip([d.key for d in task_dimensions(task)], [3.5, 2.25, 3.0, None]))
    assert critique.scores == expected
    assert critique.warnings == []
    assert critique.refined_request == "filled in"
    assert critique.summary == "filled in"


@pytest.mark.parametrize("task", ["t2i", "edit"])
def test_round_trip_pairwise_layout_parses(task):
    values = iter(["3.5", "2", "Image A", "3", "3", "It's a tie", "1.5", "4", "Image B", "2", "3", "Image B"])
    lines = []
    for line in _layout(_pairwise(task)).splitlines():
        if line.startswith(("## Score A:", "## Score B:", "## Winner:")):
            line = line.split(":")[0] + ": " + next(values)
        lines.append(re.sub(r"\[ [^\]]+ \]", "A", line))
    judgement = parse_pairwise("\n".join(lines), task)
    dims = [d.key for d in task_dimensions(task)]
    assert judgement.dimensions[dims[0]].winner == "A"
    assert (judgement.dimensions[dims[1]].score_a, judgement.dimensions[dims[1]].winner) == (3.0, "tie")
    assert judgement.overall_winner is None
    assert judgement.warnings == []
