"""The analyzer reads back what the renderer drew, and measures what the defects did."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image

from models.errors import InvalidInputError
from models.shapes.analyzer import analyze
from models.shapes.defects import Defect, degrade, render_with_defects
from models.shapes.world import Scene, ShapeObject, random_scene, render

PAIR = Scene(
    (ShapeObject("star", "purple", "large", "top"), ShapeObject("triangle", "orange", "small", "top right")),
    word="QRS",
)
NEIGHBOURS = Scene(
    (
        ShapeObject("square", "blue", "large", "left"),
        ShapeObject("circle", "yellow", "large", "centre"),
        ShapeObject("diamond", "green", "small", "bottom right"),
    )
)


def _read(image: Image.Image) -> Scene:
    return analyze(image).to_scene()


@pytest.mark.parametrize("size", [64, 128])
def test_analyze_recovers_clean_renders_exactly(size):
    rng = random.Random(21)
    for _ in range(25):
        scene = random_scene(rng, word_prob=0.5)
        assert _read(render(scene, size)) == scene


def test_analyze_recovers_degraded_renders():
    rng = random.Random(22)
    scenes = [random_scene(rng, word_prob=0.5) for _ in range(40)]
    recovered = sum(_read(degrade(scene, rng)) == scene for scene in scenes)
    assert recovered >= 39


def test_analyze_reports_no_artifacts_on_a_clean_render():
    artifacts = analyze(render(NEIGHBOURS)).artifacts
    assert artifacts.blur <= 0.3 and artifacts.noise < 1
    assert (artifacts.broken, artifacts.merged, artifacts.smudges, artifacts.misshapen) == (0, 0, 0, 0)
    assert artifacts.colour_bleed < 0.05


def test_analyze_reads_objects_with_confidence():
    seen = analyze(render(PAIR))
    assert [o.shape for o in seen.objects] == ["star", "triangle"]
    assert all(o.confidence > 0.5 and o.fit > 0.9 and o.fragments == 1 for o in seen.objects)
    assert seen.word == "QRS" and seen.word_confidence > 0.2


def test_analyze_reads_an_upscaled_generator_image():
    small = render(PAIR, 32)
    assert _read(small.resize((256, 256), Image.Resampling.BICUBIC)).objects == PAIR.objects


@pytest.mark.parametrize(
    "kind, measure",
    [
        ("blur", lambda a: a.blur > 0.5),
        ("noise", lambda a: a.noise > 5),
        ("broken", lambda a: a.broken >= 1),
        ("merged", lambda a: a.merged >= 1),
        ("smudge", lambda a: a.smudges >= 1),
        ("colour_bleed", lambda a: a.colour_bleed > 0.12),
    ],
)
def test_analyze_measures_each_defect(kind, measure):
    image = render_with_defects(NEIGHBOURS, [Defect(kind, 1.0)], random.Random(5))
    seen = analyze(image)
    assert measure(seen.artifacts), seen.artifacts
    assert seen.to_scene().objects == NEIGHBOURS.objects


def test_analyze_of_a_blank_image_has_no_scene():
    seen = analyze(Image.new("RGB", (64, 64), (245, 245, 245)))
    assert seen.objects == () and seen.word is None
    with pytest.raises(InvalidInputError, match="No shapes-world object"):
        seen.to_scene()


def test_analyze_rejects_non_images():
    with pytest.raises(InvalidInputError, match="PIL image"):
        analyze("picture.png")  # type: ignore[arg-type]


def test_analyze_reads_small_stars_that_the_shipped_vae_rounded_off():
    """The text-to-image VAE turns a small star into a pentagon-like blob; it is still a star
    (the analyzer used to read these as diamonds, which capped every generator at 94%)."""
    torch = pytest.importorskip("torch")
    from diffusers import AutoencoderKL

    from bench.vae_ceiling import round_trip

    torch.set_num_threads(1)
    vae = AutoencoderKL.from_pretrained(str(Path(__file__).resolve().parents[1] / "assets" / "shapes-t2i" / "vae")).eval()
    scenes = [
        Scene((ShapeObject("star", colour, "small", position), ShapeObject("diamond", colour, "small", "top right")))
        for colour in ("yellow", "orange", "green") for position in ("left", "bottom", "top left", "centre")
    ]
    read = [_read(image) for image in round_trip(vae, scenes)]
    assert [r.objects for r in read] == [s.objects for s in scenes]
