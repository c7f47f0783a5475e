"""A training-only probe that teaches the T5 text encoder which attributes belong to which cell.

``bench.prompt_reliance`` showed that the shapes-world T5 encoder, trained only through the
diffusion loss, leaves every token to itself: the state of "red" in "a large red circle at the
top left" does not know it is at the top left, so no image token can find its colour there, and
the transformer takes colours from the pooled CLIP vector, which cannot say where. Neither side
gets a gradient to change that while the other ignores it.

The probe breaks the deadlock: one learned query per grid cell attends over the T5 token states
(no positional information of its own, so it can only succeed if the states themselves carry
"this colour is at that cell") and predicts the cell's shape, colour and size, or that it is
empty. Its cross-entropy is added to the flow-matching loss for detailed prompts. The probe is
not part of the exported pipelines.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.shapes import world

_EMPTY = "none"
_SHAPES = (_EMPTY, *world.SHAPES)
_COLOURS = (_EMPTY, *world.COLOURS)
_SIZES = (_EMPTY, *world.SIZES)


def cell_targets(prompt: str) -> torch.Tensor | None:
    """(cells, 3) class indices of shape, colour and size per grid cell for a detailed prompt, or
    ``None`` when the prompt leaves a size or a position open (short form, empty prompt)."""
    if not prompt:
        return None
    spec = world.parse_prompt(prompt)
    if not spec.objects or any(o.size is None or o.position is None for o in spec.objects):
        return None
    by_cell = {o.position: o for o in spec.objects}
    rows = []
    for cell in world.POSITIONS:
        obj = by_cell.get(cell)
        rows.append((0, 0, 0) if obj is None else (
            _SHAPES.index(obj.shape), _COLOURS.index(obj.colour), _SIZES.index(obj.size)))
    return torch.tensor(rows)


class BindingProbe(nn.Module):
    """Cell queries attending over T5 token states, predicting each cell's object."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(len(world.POSITIONS), width) * width**-0.5)
        self.keys = nn.Linear(width, width)
        self.values = nn.Linear(width, width)
        self.heads = nn.ModuleList(nn.Linear(width, len(classes)) for classes in (_SHAPES, _COLOURS, _SIZES))

    def forward(self, states: torch.Tensor) -> list[torch.Tensor]:
        """Logits (N, cells, classes) for shape, colour and size from T5 states (N, tokens, width)."""
        weights = torch.softmax(self.queries @ self.keys(states).transpose(1, 2) / states.shape[-1] ** 0.5, dim=-1)
        read = weights @ self.values(states)
        return [head(read) for head in self.heads]

    def loss(self, states: torch.Tensor, prompts: list[str]) -> torch.Tensor | None:
        """Mean cross-entropy over the detailed prompts among ``prompts`` (``None`` if there are none)."""
        targets = [(i, t) for i, p in enumerate(prompts) if (t := cell_targets(p)) is not None]
        if not targets:
            return None
        rows = torch.tensor([i for i, _ in targets], device=states.device)
        truth = torch.stack([t for _, t in targets]).to(states.device)
        logits = self(states[rows])
        return sum(F.cross_entropy(lg.flatten(0, 1), truth[..., k].flatten()) for k, lg in enumerate(logits)) / 3
