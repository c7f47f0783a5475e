"""A scalar Bradley-Terry reward model on a Qwen-VL backbone: the baseline PARROT is measured against.

The backbone is a Qwen-VL model (its vision tower and language model); it reads the request and
the image (after the source image, for an edit) and a linear head on the last token's hidden
state gives one unbounded reward ``r``. Trained on preference labels alone with the
Bradley-Terry loss ``-log sigmoid(r_winner - r_loser)`` (``studio.parrot.bt``), it gives no
rationale and no per-dimension judgement.

A saved folder is the backbone's ``save_pretrained`` checkpoint and processor, plus
``reward_head.safetensors`` and ``reward_model.json`` (which marks the folder as a reward model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import load_file, save_file
from PIL import Image
from transformers import AutoModelForImageTextToText

from models.critic.critic_transformers import load_processor
from models.errors import NotFoundError

HEAD_FILE, INFO_FILE = "reward_head.safetensors", "reward_model.json"
KIND = "bradley-terry"


class BTRewardModel(torch.nn.Module):
    """A Qwen-VL ``...ForConditionalGeneration`` model's backbone plus a scalar head."""

    def __init__(self, vlm: Any) -> None:
        super().__init__()
        self.vlm = vlm
        text = vlm.config.get_text_config()
        self.head = torch.nn.Linear(text.hidden_size, 1)
        # small random weights, as a sequence-classification head starts: a zero head is a saddle
        # (no gradient reaches the backbone, and the Bradley-Terry loss can sit at ln 2 for good)
        torch.nn.init.normal_(self.head.weight, std=getattr(text, "initializer_range", 0.02))
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """One reward per sequence of a right-padded batch (``reward_inputs``), shape ``(batch,)``."""
        hidden = self.vlm.model(**inputs).last_hidden_state
        last = inputs["attention_mask"].sum(dim=1) - 1
        return self.head(hidden[torch.arange(hidden.shape[0], device=hidden.device), last]).squeeze(-1)


def reward_messages(prompt: str, has_source: bool) -> list[dict[str, Any]]:
    """The chat the reward model reads: the request, then the source image (edits), then the image."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": f"User Instruction: {prompt}\n"}]
    if has_source:
        parts += [{"type": "text", "text": "Source Image: "}, {"type": "image"}, {"type": "text", "text": "\n"}]
    parts += [{"type": "text", "text": "Image: "}, {"type": "image"}]
    return [{"role": "user", "content": parts}]


def reward_inputs(
    processor: Any, items: Sequence[tuple[str, Image.Image, Image.Image | None]], device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """A right-padded batch of ``(prompt, image, source image or None)`` items, on ``device``."""
    texts, images = [], []
    for prompt, image, source in items:
        texts.append(processor.apply_chat_template(reward_messages(prompt, source is not None), tokenize=False))
        images += ([source] if source is not None else []) + [image]
    processor.tokenizer.padding_side = "right"
    batch = processor(text=texts, images=images, padding=True, return_tensors="pt")
    return {key: value.to(device) for key, value in batch.items()}


def save_reward_model(model: BTRewardModel, processor: Any, folder: Path) -> Path:
    """Write the reward model to ``folder`` (see the module docstring); returns ``folder``."""
    folder = Path(folder)
    model.vlm.save_pretrained(folder)
    processor.save_pretrained(folder)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}, str(folder / HEAD_FILE))
    (folder / INFO_FILE).write_text(json.dumps({"kind": KIND, "hidden_size": model.head.in_features}), encoding="utf-8")
    return folder


def is_reward_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a reward model saved by ``save_reward_model``."""
    return (Path(folder) / INFO_FILE).is_file()


def load_reward_model(folder: str | Path, device: torch.device | str = "cpu") -> tuple[BTRewardModel, Any]:
    """``(model in eval mode on device, processor)`` from ``folder``; ``NotFoundError`` when the
    folder is not a reward model written by ``save_reward_model``."""
    folder = Path(folder)
    if not is_reward_folder(folder):
        raise NotFoundError(f"{folder} is not a Bradley-Terry reward model folder (no {INFO_FILE}); "
                            "train one with `python -m studio parrot bt`.")
    model = BTRewardModel(AutoModelForImageTextToText.from_pretrained(str(folder), dtype=torch.float32))
    model.head.load_state_dict(load_file(str(folder / HEAD_FILE)))
    return model.to(device).eval(), load_processor(str(folder))
