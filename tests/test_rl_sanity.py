"""The stub rewards of ``bench.rl_sanity`` (the check that DiffusionNFT learns at all)."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from bench.rl_sanity import ColourMatchCritic, TopShareCritic, colour_match, redness, top_share
from models.errors import InvalidInputError
from models.critic.scoring import ScoringPolicy
from models.types import CritiqueRequest
from studio.rl.reward import score_results


def _canvas() -> Image.Image:
    return Image.new("RGB", (64, 64), (245, 245, 245))


def test_top_share_is_the_share_of_ink_in_the_top_half():
    top, both, blank = _canvas(), _canvas(), _canvas()
    ImageDraw.Draw(top).rectangle((10, 4, 30, 20), fill=(200, 30, 30))
    ImageDraw.Draw(both).rectangle((10, 4, 30, 20), fill=(30, 30, 200))
    ImageDraw.Draw(both).rectangle((10, 40, 30, 56), fill=(30, 30, 200))
    assert top_share(top) == 1.0
    assert abs(top_share(both) - 0.5) < 1e-6
    assert top_share(blank) == 0.5
    assert redness(top) > 0.05 and redness(both) == 0.0


def test_the_stub_critic_is_read_as_a_scalar_reward():
    image = _canvas()
    ImageDraw.Draw(image).ellipse((20, 2, 40, 22), fill=(30, 160, 30))
    critiques = TopShareCritic().critique([CritiqueRequest("t2i", "a green circle", image)])
    [scored] = score_results(critiques, ScoringPolicy.rl_reward())
    assert scored.reward == 1.0 and scored.dimensions == {}


def test_colour_match_is_the_share_of_coloured_ink_in_the_colours_the_prompt_names():
    image = _canvas()
    ImageDraw.Draw(image).rectangle((4, 4, 23, 23), fill=(215, 40, 40))  # red, 400 px
    ImageDraw.Draw(image).rectangle((40, 40, 49, 49), fill=(40, 90, 220))  # blue, 100 px
    ImageDraw.Draw(image).rectangle((4, 50, 60, 60), fill=(30, 30, 30))  # the word's ink: not a colour
    assert colour_match(image, "a red square") == 0.8
    assert colour_match(image, "two blue circles") == 0.2
    assert colour_match(image, "a red circle and a blue star") == 1.0
    assert colour_match(image, "a green star") == 0.0
    assert colour_match(_canvas(), "a red square") == 0.0
    with pytest.raises(InvalidInputError):
        colour_match(image, "a cat on a sofa")


def test_the_colour_match_critic_scores_each_image_for_its_own_prompt():
    image = _canvas()
    ImageDraw.Draw(image).ellipse((20, 2, 40, 22), fill=(40, 160, 70))
    requests = [CritiqueRequest("t2i", "a green circle", image), CritiqueRequest("t2i", "a red circle", image)]
    rewards = [s.reward for s in score_results(ColourMatchCritic().critique(requests), ScoringPolicy.rl_reward())]
    assert rewards[0] > 0.9 and rewards[1] < 0.1
