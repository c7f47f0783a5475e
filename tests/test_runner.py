"""ProtocolCritic with a scripted fake backend: retries, failures, order, input checks."""

from __future__ import annotations

from typing import Union
from collections.abc import Sequence

import pytest
from PIL import Image

from models.critic import CritiqueFailure, ProtocolCritic
from models.critic.chat import ChatPrompt, CompletionError
from models.errors import ConfigError, InvalidInputError
from models.types import Critique, CritiqueRequest, PairRequest, PairwiseJudgement

GARBAGE = "I cannot judge this image."


def _critique_text(score: float) -> str:
    return (
        "# User Request Analysis\nA cat.\n# Detailed Judgement\n"
        f"1. Text Faithfulness:\n## Justification: ok\n## Score: {score}\n"
        f"2. Physical and Visual Quality:\n## Justification: ok\n## Score: {score}\n"
        "3. Text Rendering:\n## Justification: none\n## Score: N/A\n"
        "# Summary: fine\n# User Request Refinement:\n## Refinement Comments: none\n"
        f"## Refined Request: a cat scored {score}"
    )


PAIR_TEXT = (
    "# Detailed Judgement\n1. Text Faithfulness:\n## Justification: A is closer\n## Score A: 4\n## Score B: 2\n"
    "## Winner: A\n2. Physical and Visual Quality:\n## Justification: same\n## Score A: 3\n## Score B: 3\n"
    "## Winner: Tie\n3. Text Rendering:\n## Justification: none\n## Score A: N/A\n## Score B: N/A\n## Winner: Tie\n"
    "# Summary: A wins"
)


class ScriptedCompleter:
    """Answers each call with the next scripted batch; records the prompts it saw."""

    def __init__(self, *batches: list[Union[str, CompletionError]]) -> None:
        self.batches = list(batches)
        self.calls: list[list[ChatPrompt]] = []

    def complete(self, prompts: Sequence[ChatPrompt]) -> list[Union[str, CompletionError]]:
        self.calls.append(list(prompts))
        return self.batches.pop(0)


def _image(color: str = "red") -> Image.Image:
    return Image.new("RGB", (16, 16), color)


def _request(prompt: str = "a cat") -> CritiqueRequest:
    return CritiqueRequest(task="t2i", prompt=prompt, image=_image())


def test_garbage_then_good_is_retried_once_and_parsed():
    completer = ScriptedCompleter([GARBAGE], [_critique_text(3.0)])
    critic = ProtocolCritic(completer)
    [result] = critic.critique([_request()])
    assert isinstance(result, Critique) and result.scores["text_faithfulness"] == 3.0
    assert len(completer.calls) == 2
    assert (critic.stats.parse_retries, critic.stats.parse_failures, critic.stats.requests) == (1, 0, 1)


def test_garbage_twice_is_a_failure_with_raw_kept():
    completer = ScriptedCompleter([GARBAGE], ["still nothing"])
    critic = ProtocolCritic(completer)
    [result] = critic.critique([_request()])
    assert isinstance(result, CritiqueFailure) and not result.ok
    assert result.raw == "still nothing" and result.attempts == 2
    assert "did not parse" in result.reason
    assert critic.stats.parse_failures == 1
    assert critic.stats.failure_reasons == [result.reason]


def test_completion_error_is_a_failure_without_retry():
    completer = ScriptedCompleter([CompletionError("endpoint http://x:8000 refused the connection")])
    critic = ProtocolCritic(completer)
    [result] = critic.critique([_request()])
    assert isinstance(result, CritiqueFailure) and "refused" in result.reason and result.raw is None
    assert critic.stats.transport_failures == 1 and len(completer.calls) == 1


def test_completion_error_on_retry_keeps_the_first_raw():
    completer = ScriptedCompleter([GARBAGE], [CompletionError("timed out")])
    [result] = ProtocolCritic(completer).critique([_request()])
    assert isinstance(result, CritiqueFailure) and result.raw == GARBAGE and result.attempts == 2


def test_order_preserved_and_only_failures_re_asked():
    completer = ScriptedCompleter(
        [_critique_text(1.0), GARBAGE, _critique_text(3.0), GARBAGE],
        [_critique_text(2.0), _critique_text(4.0)],
    )
    critic = ProtocolCritic(completer)
    results = critic.critique([_request(f"cat {i}") for i in range(4)])
    assert [r.scores["text_faithfulness"] for r in results] == [1.0, 2.0, 3.0, 4.0]
    assert [p.request.prompt for p in completer.calls[1]] == ["cat 1", "cat 3"]


def test_no_retry_when_parse_retries_is_zero():
    completer = ScriptedCompleter([GARBAGE])
    [result] = ProtocolCritic(completer, parse_retries=0).critique([_request()])
    assert isinstance(result, CritiqueFailure) and result.attempts == 1


def test_negative_parse_retries_refused():
    with pytest.raises(ConfigError):
        ProtocolCritic(ScriptedCompleter(), parse_retries=-1)


def test_edit_without_source_refused_before_any_call():
    completer = ScriptedCompleter()
    with pytest.raises(InvalidInputError, match="source image"):
        edit_without_source = CritiqueRequest(task="edit", prompt="make it blue", image=_image())
        ProtocolCritic(completer).critique([_request(), edit_without_source])
    assert completer.calls == []


def test_empty_prompt_refused_before_any_call():
    completer = ScriptedCompleter()
    with pytest.raises(InvalidInputError, match="request 2: the prompt is empty"):
        ProtocolCritic(completer).critique([_request(), _request("   ")])
    assert completer.calls == []


def test_warnings_are_counted_as_repaired():
    text = _critique_text(3.0).replace("# Summary: fine\n", "")
    critic = ProtocolCritic(ScriptedCompleter([text]))
    [result] = critic.critique([_request()])
    assert result.warnings == ["No summary was written."] and critic.stats.repaired == 1


def test_judge_pairwise_with_source_image_order():
    completer = ScriptedCompleter([PAIR_TEXT])
    pair = PairRequest(task="edit", prompt="make it blue", image_a=_image("blue"), image_b=_image("green"),
                       source_image=_image("red"))
    [result] = ProtocolCritic(completer).judge([pair])
    assert isinstance(result, PairwiseJudgement)
    assert result.dimensions["text_faithfulness"].winner == "A"
    sent = completer.calls[0][0]
    assert sent.kind == "pairwise"
    assert [im.getpixel((0, 0)) for im in sent.images] == [(255, 0, 0), (0, 0, 255), (0, 128, 0)]


def test_wrong_number_of_completions_is_an_error():
    with pytest.raises(RuntimeError, match="returned 2 completions for 1 prompts"):
        ProtocolCritic(ScriptedCompleter(["a", "b"])).critique([_request()])


def test_an_image_shared_by_requests_is_prepared_once_per_call():
    from PIL import Image

    from models.critic import ProtocolCritic
    from models.types import PairRequest

    class Recorder:
        prompts: list = []

        def complete(self, prompts):
            Recorder.prompts = list(prompts)
            return ["no critique" for _ in prompts]

    big_a = Image.new("RGBA", (1500, 1000), (200, 0, 0, 255))  # converted and downscaled for the critic
    big_b = Image.new("RGB", (1500, 1000), (0, 0, 200))
    critic = ProtocolCritic(Recorder(), parse_retries=0)
    critic.judge([PairRequest("t2i", "a red square", big_a, big_b), PairRequest("t2i", "a red square", big_b, big_a)])
    ab, ba = Recorder.prompts
    assert ab.images[0] is ba.images[1] and ab.images[1] is ba.images[0]
    assert ab.images[0].mode == "RGB" and ab.images[0].size[0] * ab.images[0].size[1] <= 1024 * 1024
