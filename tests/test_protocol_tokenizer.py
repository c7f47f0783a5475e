"""The protocol tokenizer of small students: it round-trips the critic's text in far fewer tokens,
and a student built with it loads as a critic from its saved folder."""

from __future__ import annotations

import pytest
from PIL import Image

from models.critic.critic_transformers import TransformersCritic, load_processor
from models.critic.protocol_tokenizer import sharegpt_texts, template_texts, train_protocol_tokenizer
from models.critic.tiny_qwen import build_tiny_qwen3vl
from models.errors import InvalidInputError
from models.shapes.critic_shapes import ShapesCritic
from models.types import CritiqueRequest, PairRequest
from studio.parrot.examples import pairwise_prompt, to_sharegpt

RED, BLUE = Image.new("RGB", (64, 64), (200, 40, 40)), Image.new("RGB", (64, 64), (40, 40, 200))


def _protocol_records() -> list[dict]:
    """Pairwise sharegpt records with the shapes critic's answers: the text a student learns."""
    records = []
    for prompt in ("a large red circle in the centre", "a small blue square at the top left"):
        [judgement] = ShapesCritic().judge([PairRequest("t2i", prompt, RED, BLUE)])
        records.append(to_sharegpt(pairwise_prompt("t2i", prompt, RED, BLUE, None), judgement.raw, ["a.png", "b.png"]))
    return records


def test_the_protocol_tokenizer_round_trips_the_critic_text_in_far_fewer_tokens_than_bytes():
    records = _protocol_records()
    tokenizer = train_protocol_tokenizer([*template_texts(), *sharegpt_texts(records)], vocab_size=1024)
    unseen = "User Instruction: a tiny green triangle reading 'Zoë 42' at the bottom right\n# Summary: Image B."
    for text in [*sharegpt_texts(records), unseen]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    prompt = next(sharegpt_texts(records))
    assert len(tokenizer(prompt)["input_ids"]) * 4 < len(prompt.encode())
    for special in ("<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|vision_start|>"):
        assert tokenizer(f"x{special}y", add_special_tokens=False)["input_ids"][1] == tokenizer.convert_tokens_to_ids(special)


def test_a_tokenizer_needs_a_corpus_and_room_for_the_bytes():
    with pytest.raises(InvalidInputError, match="empty"):
        train_protocol_tokenizer(["", ""])
    with pytest.raises(InvalidInputError, match="vocab_size"):
        train_protocol_tokenizer(["some text"], vocab_size=200)


def test_a_student_with_the_protocol_tokenizer_loads_from_its_folder_as_a_critic(tmp_path):
    tokenizer = train_protocol_tokenizer([*template_texts(), *sharegpt_texts(_protocol_records())], vocab_size=1024)
    folder = build_tiny_qwen3vl(tmp_path / "student", patch_size=8, tokenizer=tokenizer)
    processor = load_processor(str(folder))
    assert processor.tokenizer.get_vocab() == tokenizer.get_vocab()
    assert processor(text=["<|vision_start|><|image_pad|><|vision_end|>"], images=[RED])["input_ids"][0].count(
        tokenizer.convert_tokens_to_ids("<|image_pad|>")) == 16  # 64 px in 8 px patches, merged 2x2
    critic = TransformersCritic(model=str(folder), max_new_tokens=4, temperature=0)
    [result] = critic.critique([CritiqueRequest("t2i", "a red circle", RED)])
    assert critic.completer.stats.new_tokens > 0 and not result.ok  # it loaded and wrote (untrained: no critique)
    critic.close()


def test_atomic_words_are_one_token_wherever_they_appear_and_the_rest_still_merges():
    captions = ["a large red circle in the centre", "a small blue square at the top left and a red square"] * 20
    texts = [*template_texts(), *sharegpt_texts(_protocol_records()), *captions]
    phrases = train_protocol_tokenizer(texts, vocab_size=1024)
    atomic = train_protocol_tokenizer(texts, vocab_size=1024, atomic_words=("red", "blue", "circle", "square"))

    def pieces(tokenizer, text: str) -> list[str]:
        return [tokenizer.decode([i]) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]

    request, question = "a large red circle in the centre", "Is the red circle drawn as asked?"
    assert " red" in pieces(atomic, request) and " red" in pieces(atomic, question)
    assert " circle" in pieces(atomic, request) and " circle" in pieces(atomic, question)
    assert " red" not in pieces(phrases, request)  # phrase tokens swallow the word
    for text in (request, question, "reddish circles: red", *sharegpt_texts(_protocol_records())):
        assert atomic.decode(atomic(text, add_special_tokens=False)["input_ids"]) == text
    assert "reddish" not in pieces(atomic, "a reddish square")[1]  # only whole words are isolated
    prompt = next(sharegpt_texts(_protocol_records()))
    assert len(atomic(prompt)["input_ids"]) * 3 < len(prompt.encode())  # the rubric still merges into phrases
    with pytest.raises(InvalidInputError, match="single spaces"):
        train_protocol_tokenizer(texts, atomic_words=("top  left",))
    with pytest.raises(InvalidInputError, match="single spaces"):
        train_protocol_tokenizer(texts, atomic_words=("red!",))


def test_an_atomic_phrase_is_one_token_and_its_words_stay_atomic_elsewhere():
    captions = ["a large red circle in the centre", "a small blue square at the top left and a red square"] * 20
    texts = [*template_texts(), *captions]
    tokenizer = train_protocol_tokenizer(texts, vocab_size=600,
                                         atomic_words=("red", "blue", "circle", "square", "red circle"))

    def pieces(text: str) -> list[str]:
        return [tokenizer.decode([i]) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]

    assert " red circle" in pieces("a large red circle in the centre")  # the phrase wins over its words
    assert " red circle" in pieces("Is the red circle drawn as asked?")
    assert " red" in pieces("a red square") and " square" in pieces("a red square")
    assert tokenizer.decode(tokenizer("a red circles", add_special_tokens=False)["input_ids"]) == "a red circles"
