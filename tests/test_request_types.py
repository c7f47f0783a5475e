"""Request types validate themselves once, where they are built; optional backend capabilities are
Protocols that callers test with ``isinstance``."""

from __future__ import annotations

import pytest
from PIL import Image

from models.base import Closable, HealthChecked, Loadable, PromptLimited, accepts_should_stop
from models.critic.critic_openai import OpenAICritic
from models.errors import InvalidInputError
from models.generator_diffusers import DiffusersGenerator
from models.shapes.critic_shapes import ShapesCritic
from models.types import CritiqueRequest, GenerationRequest, PairRequest
from tests.studio_fakes import SquaresGenerator

IMAGE = Image.new("RGB", (16, 16), "red")


@pytest.mark.parametrize("build", [
    lambda **kw: CritiqueRequest(prompt="make it blue", image=IMAGE, **kw),
    lambda **kw: PairRequest(prompt="make it blue", image_a=IMAGE, image_b=IMAGE, **kw),
    lambda **kw: GenerationRequest(prompt="make it blue", **kw),
])
def test_every_request_type_refuses_an_edit_without_its_source_and_an_unknown_task(build):
    with pytest.raises(InvalidInputError, match="The edit task needs a source image; none was given"):
        build(task="edit")
    with pytest.raises(InvalidInputError, match="Unknown task 'inpaint'"):
        build(task="inpaint", source_image=IMAGE)
    assert build(task="edit", source_image=IMAGE).source_image is IMAGE
    assert build(task="t2i").task == "t2i"


def test_optional_capabilities_are_protocols():
    generator = DiffusersGenerator(model="assets/shapes-t2i", task="t2i")  # nothing loads until used
    assert isinstance(generator, Loadable) and isinstance(generator, Closable) and isinstance(generator, PromptLimited)
    assert accepts_should_stop(generator) and not accepts_should_stop(SquaresGenerator())
    critic = OpenAICritic(base_url="http://127.0.0.1:9/v1", model="m")
    try:
        assert isinstance(critic, HealthChecked) and isinstance(critic, Closable) and not isinstance(critic, Loadable)
    finally:
        critic.close()
    assert not isinstance(ShapesCritic(), HealthChecked)
