"""Training-only probes that teach the T5 text encoder what each word of a prompt is about.

``bench.prompt_reliance`` showed that the shapes-world T5 encoder, trained only through the
diffusion loss, leaves every token to itself: the state of "red" in "a large red circle at the
top left" does not know it is at the top left, so no image token can find its colour there, and
the transformer takes colours from the pooled CLIP vector, which cannot say where. Neither side
gets a gradient to change that while the other ignores it.

A probe breaks the deadlock: learned queries attend over the T5 token states (with no positional
information of their own, so they can only succeed if the states themselves carry "this colour is
at that cell") and predict what the prompt asks for. Their cross-entropy is added to the
flow-matching loss; the probes are not part of the exported pipelines.

- ``BindingProbe`` (text-to-image): one query per grid cell predicts the cell's shape, colour and
  size, or that it is empty, for detailed prompts.
- ``EditProbe`` (editing): queries for the object an instruction names and for the change predict
  their shape, colour, size and cell, plus the new word's letters and the kind of edit, so that
  "blue" in "make the red circle blue" is told apart from "red".
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
_POSITIONS = (_EMPTY, *world.POSITIONS)
_LETTERS = (_EMPTY, *"ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _object_classes(obj: world.ObjectSpec | world.ShapeObject | None) -> list[int]:
    """Class indices of shape, colour, size and cell (``none`` for what is unsaid)."""
    if obj is None:
        return [0, 0, 0, 0]
    return [_SHAPES.index(obj.shape), _COLOURS.index(obj.colour), _SIZES.index(obj.size or _EMPTY),
            _POSITIONS.index(obj.position or _EMPTY)]


def cell_targets(prompt: str) -> torch.Tensor | None:
    """(cells, 3) class indices of shape, colour and size per grid cell for a detailed prompt, or
    ``None`` when the prompt leaves a size or a position open (short form, empty prompt)."""
    if not prompt:
        return None
    spec = world.parse_prompt(prompt)
    if not spec.objects or any(o.size is None or o.position is None for o in spec.objects):
        return None
    by_cell = {o.position: o for o in spec.objects}
    return torch.tensor([_object_classes(by_cell.get(cell))[:3] for cell in world.POSITIONS])


def edit_targets(instruction: str) -> torch.Tensor | None:
    """Class indices (12,) of what an edit instruction says: the named object's shape, colour, size
    and cell; the change's (the added object, or only the new colour, size or cell); the new word's
    three letters; the kind of edit. ``None`` for an empty instruction ("keep the source"); an
    unreadable one raises ``InvalidInputError`` (training instructions come from ``random_edit``)."""
    if not instruction:
        return None
    request = world.read_edit(instruction)
    change = _object_classes(request.added) if request.added else [
        0, _COLOURS.index(request.colour or _EMPTY), _SIZES.index(request.size or _EMPTY),
        _POSITIONS.index(request.position or _EMPTY)]
    letters = [_LETTERS.index(c) for c in (request.word or "")]
    letters += [0] * (world.MAX_WORD_LETTERS - len(letters))
    return torch.tensor(_object_classes(request.ref) + change + letters
                        + [world.EDIT_KINDS.index(request.kind)])


class _TokenProbe(nn.Module):
    """Learned queries attending over T5 token states; subclasses say what the read-outs predict."""

    def __init__(self, width: int, queries: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(queries, width) * width**-0.5)
        self.keys = nn.Linear(width, width)
        self.values = nn.Linear(width, width)

    def read(self, states: torch.Tensor) -> torch.Tensor:
        """What each query reads (N, queries, width) from T5 states (N, tokens, width)."""
        weights = torch.softmax(self.queries @ self.keys(states).transpose(1, 2) / states.shape[-1] ** 0.5, dim=-1)
        return weights @ self.values(states)

    def predictions(self, states: torch.Tensor) -> list[torch.Tensor]:
        """Logits (N, classes), one tensor per column of ``targets``."""
        raise NotImplementedError

    @staticmethod
    def targets(prompt: str) -> torch.Tensor | None:
        """The class index of each predicted column for ``prompt``, or ``None`` when it has none."""
        raise NotImplementedError

    def loss(self, states: torch.Tensor, prompts: list[str]) -> torch.Tensor | None:
        """Mean cross-entropy over the columns and the prompts that have targets (``None`` if none do)."""
        targets = [(i, t) for i, p in enumerate(prompts) if (t := self.targets(p)) is not None]
        if not targets:
            return None
        rows = torch.tensor([i for i, _ in targets], device=states.device)
        truth = torch.stack([t for _, t in targets]).to(states.device)
        logits = self.predictions(states[rows])
        return sum(F.cross_entropy(lg, truth[:, k]) for k, lg in enumerate(logits)) / len(logits)


class BindingProbe(_TokenProbe):
    """One query per grid cell, predicting the cell's object from a detailed prompt."""

    def __init__(self, width: int) -> None:
        super().__init__(width, len(world.POSITIONS))
        self.heads = nn.ModuleList(nn.Linear(width, len(classes)) for classes in (_SHAPES, _COLOURS, _SIZES))

    def predictions(self, states: torch.Tensor) -> list[torch.Tensor]:
        """Cell by cell: shape, colour and size logits."""
        read = self.read(states)
        per_head = [head(read) for head in self.heads]
        return [logits[:, cell] for cell in range(len(world.POSITIONS)) for logits in per_head]

    @staticmethod
    def targets(prompt: str) -> torch.Tensor | None:
        """``cell_targets`` flattened cell by cell."""
        cells = cell_targets(prompt)
        return None if cells is None else cells.flatten()


class EditProbe(_TokenProbe):
    """Queries for the named object, the change, three letters and the kind of an edit instruction."""

    def __init__(self, width: int) -> None:
        super().__init__(width, 2 + world.MAX_WORD_LETTERS + 1)
        self.object_heads = nn.ModuleList(
            nn.Linear(width, len(classes)) for classes in (_SHAPES, _COLOURS, _SIZES, _POSITIONS))
        self.letter_head = nn.Linear(width, len(_LETTERS))
        self.kind_head = nn.Linear(width, len(world.EDIT_KINDS))

    def predictions(self, states: torch.Tensor) -> list[torch.Tensor]:
        """The columns of ``edit_targets``."""
        read = self.read(states)
        objects = [head(read[:, slot]) for slot in (0, 1) for head in self.object_heads]
        letters = [self.letter_head(read[:, 2 + i]) for i in range(world.MAX_WORD_LETTERS)]
        return objects + letters + [self.kind_head(read[:, -1])]

    @staticmethod
    def targets(prompt: str) -> torch.Tensor | None:
        """``edit_targets``."""
        return edit_targets(prompt)
