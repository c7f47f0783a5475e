"""What the loaded world can read: requests checked before anything is generated, requests
written in its generator's prompt language, example prompts and a vocabulary note.

The shapes-world critic judges only prompts its grammar reads (``models.shapes.world``); any other
prompt would be generated and then fail as "critic_failed", blaming the critic for the prompt.
With the shapes critic loaded, ``check_request`` refuses such a prompt at once and says what the
world can read. Other critics read any text, so nothing is checked for them.
"""

from __future__ import annotations

import logging
import random

from models.errors import InvalidInputError
from models.shapes import world
from models.types import Task
from studio.services import Lazy, Services

logger = logging.getLogger(__name__)

#: Prompts for critics that read any text (real models), text to image only.
GENERAL_EXAMPLES: tuple[str, ...] = (
    "a red bicycle leaning against a blue door, morning light",
    'a bakery storefront with a sign that reads "FRESH BREAD"',
    "three green apples on a white plate, top-down photo",
)


def shapes_world(services: Services) -> bool:
    """Whether the critic is the shapes-world reference critic (without loading it)."""
    slot = services.critic
    if isinstance(slot, Lazy):
        return slot.config.get("backend") == "shapes"
    return type(slot).__name__ == "ShapesCritic"


def check_request(services: Services, task: Task, prompt: str) -> None:
    """Refuse a prompt (or edit instruction) the loaded world cannot read, before generating.

    Raises ``InvalidInputError`` saying what could not be read and what the world reads.
    """
    if not shapes_world(services) or not prompt.strip():
        return  # an empty prompt is refused by the engine's own check, in its own words
    try:
        if task == "edit":
            world.read_edit(prompt)
        else:
            world.parse_prompt(prompt)
    except InvalidInputError as e:
        kind = "edit instruction" if task == "edit" else "prompt"
        raise InvalidInputError(
            f"The shapes world cannot read this {kind}, so its critic could not judge the result. {e} "
            f"{vocabulary(task)}"
        ) from e


def generator_prompt(services: Services, task: Task, prompt: str) -> str | None:
    """``prompt`` in the words the loaded world's generator was trained on, when it uses others;
    ``None`` when it needs no translation.

    The shapes-world generators learnt the short and the detailed form, not relations: a request
    with relations ("two red circles above a blue square") comes back in the detailed form, every
    object placed so that the relations hold ("a large red circle in the centre, a large red
    circle at the top left and a large blue square at the bottom left"). Requests without
    relations, edits, other critics and prompts the grammar cannot read give ``None``.
    """
    if task != "t2i" or not shapes_world(services):
        return None
    try:
        spec = world.parse_prompt(prompt)
    except InvalidInputError:
        return None  # check_request says what is wrong; the loop leaves the prompt to the critic
    scene = world.arranged_scene(spec) if spec.relations else None
    return world.detailed_prompt(scene) if scene else None


def vocabulary(task: Task | None = None) -> str:
    """One or two sentences on what the shapes world reads (both tasks when ``task`` is None)."""
    t2i = (f"It reads up to 4 {'/'.join(world.SIZES)} shapes ({', '.join(world.SHAPES)}) in "
           f"{', '.join(world.COLOURS)}, counted (\"two red circles\"), placed on a 3x3 grid (\"a small blue "
           f"square at the top left\") or related ({', '.join(world.RELATIONS)}: \"two red circles above a blue "
           "square\"), plus an optional word of 1-3 capital letters (with the word \"AB\").")
    edit = ("Edits: \"make the red circle blue\", \"remove the red circle\", \"add a small green star at the "
            "bottom right\", \"move the red circle to the top left\", \"make the red circle bigger\", "
            "'change the word to \"AB\"'.")
    return {"t2i": t2i, "edit": edit}.get(task or "", f"{t2i} {edit}")


def example_prompts(count: int = 4, *, seed: int = 18) -> list[str]:
    """Text-to-image prompts written by the shapes world's grammar, in turn in the short form, the
    detailed form and with a relation ("two red circles above a blue square"); the last one
    carries a word."""
    rng = random.Random(seed)
    writers = (world.short_prompt, world.detailed_prompt, lambda scene: world.relation_prompt(scene, rng))
    prompts: list[str] = []
    while len(prompts) < count:
        last = len(prompts) == count - 1
        scene = world.random_scene(rng, max_objects=3, word_prob=1.0 if last else 0.0)
        text = writers[len(prompts) % len(writers)](scene)
        if text:  # a scene of one kind of object has no relation to write
            prompts.append(text)
    return prompts


def example_edits(count: int = 2, *, seed: int = 18) -> list[tuple[world.Scene, str]]:
    """(source scene, edit instruction) pairs written by the shapes world's grammar."""
    rng = random.Random(seed)
    edits = []
    for _ in range(count):
        scene = world.random_scene(rng, max_objects=3, word_prob=0.0)
        edits.append((scene, world.random_edit(scene, rng).instruction))
    return edits
