"""A byte-level BPE tokenizer learnt from the critic protocol's own text, for small students.

The byte-level tokenizer of ``tiny_qwen`` spends one token per character, so one pairwise
example of the protocol (prompt and answer) is ~4,300 tokens and a CPU budget sees a few
hundred. This tokenizer learns its merges from the protocol text (the shipped prompt templates,
the rendered prompts and the teacher's answers): like SentencePiece with
``split_by_whitespace=False``, merges may cross spaces, so the fixed wording of the rubric and of
the answer layout becomes phrase tokens of up to ``max_token_length`` characters. Every byte
stays in the vocabulary, so any text still round-trips; only its length changes.

Phrase tokens have a cost for a student that must *compare* texts: "purple star " in a question
and "a large purple " + "star at the top" in a description are unrelated ids, so a small model
must learn what every phrase token means before it can match two mentions of one thing
(``docs/parrot.md``, nineteenth step). ``atomic_words`` names the words that carry the content
(in the shapes world its colours, shapes, sizes and places): each, with the space before it, is
always its own token, so one word is one id wherever it appears, as in a real LLM's tokenizer,
while the rubric's fixed wording between them still merges into phrases.

It is a plain ``PreTrainedTokenizerFast`` with the Qwen-VL special tokens, saved with the
student (``save_pretrained``), so ``AutoProcessor`` and ``--critic FOLDER`` load it unchanged.
Training is deterministic for a given corpus in a given order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from tokenizers.pre_tokenizers import ByteLevel, Split
from transformers import PreTrainedTokenizerFast

from models.errors import InvalidInputError

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
PAD, END_OF_TURN = "<|endoftext|>", "<|im_end|>"
QWEN_VL_SPECIAL_TOKENS = (
    PAD, "<|im_start|>", END_OF_TURN, "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
)


def template_texts() -> list[str]:
    """The shipped prompt templates' text (``models/critic/templates/*.txt``), in name order."""
    return [path.read_text(encoding="utf-8") for path in sorted(TEMPLATES_DIR.glob("*.txt"))]


def sharegpt_texts(records: Iterable[dict], image_marker: str = "<image>") -> Iterator[str]:
    """The message texts of sharegpt records (prompts and answers), split at the image markers,
    which are not text the model ever reads."""
    for record in records:
        for message in record.get("messages") or []:
            yield from (piece for piece in str(message.get("content", "")).split(image_marker) if piece)


def train_protocol_tokenizer(
    texts: Iterable[str], *, vocab_size: int = 2048, max_token_length: int = 24,
    special_tokens: tuple[str, ...] = QWEN_VL_SPECIAL_TOKENS, atomic_words: Sequence[str] = (),
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with merges learnt from ``texts`` (see the module docstring).

    ``vocab_size`` counts the 256 byte symbols and ``special_tokens``; ``max_token_length`` caps
    a merged token's length in characters (so that whole answers are never memorised as one
    token); every whole-word occurrence of one of ``atomic_words`` (with the space before it, if
    any) is a piece of its own that no merge crosses. Raises ``InvalidInputError`` for an empty
    corpus, a vocabulary too small to hold the bytes and the special tokens, or an atomic word
    that is not words with single spaces between them (a phrase such as "purple star" is one piece too).
    """
    corpus = [text for text in texts if text]
    if not corpus:
        raise InvalidInputError("The tokenizer corpus is empty: give the protocol's prompts and answers.")
    floor = len(ByteLevel.alphabet()) + len(special_tokens)
    if vocab_size <= floor:
        raise InvalidInputError(f"vocab_size must exceed {floor} (the byte symbols and special tokens), "
                                f"got {vocab_size}.")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = _pre_tokenizer(atomic_words)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(special_tokens), initial_alphabet=ByteLevel.alphabet(),
        max_token_length=max_token_length, show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=END_OF_TURN, pad_token=PAD,
        extra_special_tokens=[token for token in special_tokens if token not in (PAD, END_OF_TURN)],
    )


def _pre_tokenizer(atomic_words: Sequence[str]) -> pre_tokenizers.PreTokenizer:
    """Byte-level symbols over the whole text, after isolating each of ``atomic_words``."""
    byte_level = ByteLevel(add_prefix_space=False, use_regex=False)
    if not atomic_words:
        return byte_level
    bad = [word for word in atomic_words if not re.fullmatch(r"\w+( \w+)*", word)]
    if bad:
        raise InvalidInputError(f"Atomic words must be words (letters, digits, _) with single spaces between "
                                f"them; got {bad}.")
    words = "|".join(sorted(set(atomic_words), key=len, reverse=True))
    return pre_tokenizers.Sequence([Split(Regex(rf" ?\b(?:{words})\b"), behavior="isolated"), byte_level])
