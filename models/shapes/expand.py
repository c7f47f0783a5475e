"""Expand a short shapes-world request into the detailed prompt form, before any image is seen.

The shipped generator follows the detailed form ("a large red circle at the top left ...") far
better than the short one ("a red circle ..."), so a refine loop can start from an expansion
instead of spending its first round on the short prompt (``LoopSettings.first_prompt``), and the
refinement bench uses the same expansion as its blind control. Every requested object keeps its
shape and colour (and any size or position the request gives) and gets a random free cell and a
random size otherwise; the word is kept. With relations ("two red circles above a blue square") the
drawn cells are moved as little as possible to a layout that satisfies them
(``world.arrange_spec``).
"""

from __future__ import annotations

import random

from models.errors import InvalidInputError
from models.shapes import world


def expansion_rng(seed: int) -> random.Random:
    """The random source of the expansions drawn for a session or bench item with ``seed``."""
    return random.Random(f"expand/{seed}")


def expand(prompt: str, rng: random.Random) -> str:
    """``prompt`` in the detailed form, sizes and cells drawn from ``rng`` where it leaves them open.

    Example: ``expand("a red circle and a blue square", expansion_rng(0))`` might give
    ``"a small blue square at the top and a large red circle in the centre"``.
    Raises ``InvalidInputError`` when the grammar cannot read ``prompt`` or two objects ask for
    the same cell.
    """
    spec = world.parse_prompt(prompt)
    taken = [o.position for o in spec.objects if o.position]
    if len(set(taken)) != len(taken):
        raise InvalidInputError(f"The prompt {prompt!r} puts two objects in one cell; give each its own position.")
    free = [p for p in world.POSITIONS if p not in taken]
    cells = iter(rng.sample(free, sum(o.position is None for o in spec.objects)))
    drawn = [o.position or next(cells) for o in spec.objects]
    if spec.relations:
        arranged = world.arrange_spec(spec, dict(enumerate(drawn)))
        if arranged is None:
            raise InvalidInputError(f"No layout of the grid satisfies every relation of {prompt!r}.")
        drawn = list(arranged)
    objects = tuple(
        world.ShapeObject(o.shape, o.colour, o.size or rng.choice(world.SIZES), cell)
        for o, cell in zip(spec.objects, drawn)
    )
    return world.detailed_prompt(world.Scene(objects, spec.word))
