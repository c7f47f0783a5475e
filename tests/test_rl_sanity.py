"""The stub rewards of ``bench.rl_sanity`` (the check that DiffusionNFT learns at all)."""

from __future__ import annotations

from PIL import Image, ImageDraw

from bench.rl_sanity import TopShareCritic, redness, top_share
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
