"""Sharegpt examples as model inputs for supervised fine-tuning of a Qwen-VL critic.

The prompt part is rendered by the processor's chat template from the same messages the
transformers critic renders at inference (``sharegpt_to_messages``), with the generation prompt;
the answer and the end-of-turn token follow. Only the answer tokens (and the end of turn, so the
student learns to stop) carry labels; the prompt, the images and the padding are masked out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.errors import InvalidInputError, NotFoundError
from models.images import prepare_image
from studio.parrot.examples import sharegpt_to_messages

IGNORE = -100
END_OF_TURN = "<|im_end|>"


@dataclass
class Encoded:
    """One example as tensors: ``input_ids`` and ``labels`` (1-D), per-token type ids (Qwen3-VL's
    ``mm_token_type_ids``: which tokens are image tokens) and the image inputs."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    token_types: dict[str, torch.Tensor]
    image_inputs: dict[str, torch.Tensor]


def dataset_entries(dataset_dir: Path) -> dict[str, Any]:
    """The entries of ``dataset_dir/dataset_info.json``; ``NotFoundError`` when it is missing."""
    info_path = Path(dataset_dir) / "dataset_info.json"
    if not info_path.is_file():
        raise NotFoundError(f"No dataset_info.json in {dataset_dir}; run `python -m studio parrot export` first.")
    return json.loads(info_path.read_text(encoding="utf-8"))


def load_split(dataset_dir: Path, entry: str) -> list[dict[str, Any]]:
    """The examples of ``entry`` in ``dataset_dir/dataset_info.json``, image paths made absolute.

    Raises ``NotFoundError`` when the folder, the info file or the entry is missing.
    """
    info = dataset_entries(dataset_dir)
    if entry not in info:
        raise NotFoundError(f"{dataset_dir}/dataset_info.json has no dataset {entry!r}; it has {sorted(info)}.")
    records = json.loads((Path(dataset_dir) / info[entry]["file_name"]).read_text(encoding="utf-8"))
    for record in records:
        record["images"] = [str(Path(dataset_dir) / path) for path in record.get("images") or []]
    return records


def encode(record: dict[str, Any], processor: Any, max_length: int) -> Encoded:
    """Tokenize one sharegpt example with its images; raises ``InvalidInputError`` when it is
    longer than ``max_length`` tokens (it would lose its answer if cut)."""
    messages, answer = sharegpt_to_messages(record)
    images = [prepare_image(path, what=f"training image {path}") for path in record["images"]]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    batch = processor(text=[prompt], images=images or None, return_tensors="pt")
    answer_ids = processor.tokenizer(answer + END_OF_TURN, add_special_tokens=False, return_tensors="pt")
    answer_ids = answer_ids["input_ids"][0]
    prompt_ids = batch["input_ids"][0]
    if len(prompt_ids) + len(answer_ids) > max_length:
        raise InvalidInputError(
            f"An example has {len(prompt_ids) + len(answer_ids)} tokens, over max_length {max_length}; "
            "raise max_length (the answer must not be cut)."
        )
    labels = torch.cat([torch.full_like(prompt_ids, IGNORE), answer_ids])
    token_types = {
        key: torch.cat([value[0], torch.zeros_like(answer_ids)]) for key, value in batch.items() if _per_token(key)
    }
    image_inputs = {
        key: value for key, value in batch.items() if key not in ("input_ids", "attention_mask") and not _per_token(key)
    }
    return Encoded(torch.cat([prompt_ids, answer_ids]), labels, token_types, image_inputs)


def _per_token(key: str) -> bool:
    return key.endswith("token_type_ids")


def collate(examples: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: ``input_ids``, ``attention_mask``, ``labels`` and the images of all
    examples concatenated in order (Qwen-VL's flattened patches and their grid sizes)."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n], labels[row, :n], mask[row, :n] = example.input_ids, example.labels, 1
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    for key in {key for e in examples for key in e.token_types}:
        types = torch.zeros((len(examples), width), dtype=torch.long)
        for row, example in enumerate(examples):
            types[row, : len(example.input_ids)] = example.token_types[key]
        batch[key] = types
    for key in {key for e in examples for key in e.image_inputs}:
        batch[key] = torch.cat([e.image_inputs[key] for e in examples if key in e.image_inputs])
    return batch
