"""Image and prompt checks: corrupt files, colour modes, downscaling, refusals."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from models.errors import InvalidInputError
from models.images import ImageLimits, check_prompt, prepare_image


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


NOISE = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize("keep_bytes", [3000, 100, 20], ids=["in-pixel-data", "after-header", "inside-header"])
def test_truncated_png_bytes_refused(keep_bytes):
    data = _png_bytes(NOISE)
    cut = data[:keep_bytes]
    assert len(cut) < len(data)
    with pytest.raises(InvalidInputError, match="corrupt or truncated"):
        prepare_image(cut, what="upload")


def test_truncated_png_file_refused(tmp_path):
    path = tmp_path / "cut.png"
    data = _png_bytes(NOISE)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match="upload: the image file is corrupt or truncated"):
        prepare_image(path, what="upload")


def test_truncated_image_opened_lazily_by_caller_refused():
    data = _png_bytes(NOISE)
    lazy = Image.open(io.BytesIO(data[: len(data) // 2]))
    with pytest.raises(InvalidInputError, match="corrupt or truncated"):
        prepare_image(lazy)


def test_not_an_image_refused():
    with pytest.raises(InvalidInputError, match="not an image format"):
        prepare_image(b"hello, this is text")


def test_missing_file_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="no file at"):
        prepare_image(tmp_path / "nope.png")


def test_png_bytes_round_trip_exact():
    out = prepare_image(_png_bytes(NOISE))
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), np.asarray(NOISE))


@pytest.mark.parametrize(
    "image, expected",
    [
        (Image.new("RGBA", (4, 4), (255, 0, 0, 0)), (255, 255, 255)),  # transparent -> white
        (Image.new("RGBA", (4, 4), (255, 0, 0, 255)), (255, 0, 0)),
        (Image.new("RGBA", (4, 4), (0, 0, 0, 128)), (127, 127, 127)),  # half black on white
        (Image.new("LA", (4, 4), (0, 0)), (255, 255, 255)),
        (Image.new("L", (4, 4), 200), (200, 200, 200)),
        (Image.new("CMYK", (4, 4), (0, 255, 255, 0)), (255, 0, 0)),
        (Image.new("CMYK", (4, 4), (0, 0, 0, 0)), (255, 255, 255)),
        (Image.new("I;16", (4, 4), 65535), (255, 255, 255)),  # a white 16-bit image stays white
        (Image.new("I;16", (4, 4), 32896), (128, 128, 128)),
        (Image.new("I", (4, 4), 100), (100, 100, 100)),
        (Image.new("F", (4, 4), 0.5), (128, 128, 128)),
        (Image.new("1", (4, 4), 1), (255, 255, 255)),
        (Image.new("PA", (4, 4), (0, 0)), (255, 255, 255)),  # palette with alpha, transparent
    ],
    ids=["rgba-clear", "rgba-opaque", "rgba-half", "la-clear", "l", "cmyk-red", "cmyk-white", "i16-white",
         "i16-mid", "i32-8bit", "float-unit", "bilevel", "pa-clear"],
)
def test_modes_become_rgb_with_sensible_pixels(image, expected):
    out = prepare_image(image)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == pytest.approx(expected, abs=1)


def test_palette_with_transparency_composited_on_white():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    image.info["transparency"] = 0
    assert prepare_image(image).getpixel((0, 0)) == (255, 255, 255)
    del image.info["transparency"]
    assert prepare_image(image).getpixel((0, 0)) == (10, 20, 30)


def test_sixteen_bit_png_gradient_keeps_its_tones():
    ramp = Image.fromarray(np.arange(16, dtype=np.uint16).reshape(4, 4) * 4369)  # I;16, 0 .. 65535
    assert ramp.mode == "I;16"
    out = np.asarray(prepare_image(_png_bytes(ramp)))[..., 0]
    assert out[0, 0] == 0 and out[3, 3] == 255 and np.all(np.diff(out.ravel().astype(int)) > 0)


def test_over_max_pixels_downscaled_keeping_aspect():
    big = Image.new("RGB", (400, 200), (0, 128, 255))
    out = prepare_image(big, ImageLimits(max_pixels=20_000))
    assert out.size[0] * out.size[1] <= 20_000
    assert out.size == (200, 100)
    assert out.getpixel((50, 50)) == (0, 128, 255)


def test_at_max_pixels_unchanged():
    image = Image.new("RGB", (100, 100))
    assert prepare_image(image, ImageLimits(max_pixels=10_000)).size == (100, 100)


def test_over_refuse_pixels_refused_with_megapixels():
    data = _png_bytes(Image.new("RGB", (3000, 2000)))
    with pytest.raises(InvalidInputError, match=r"3000x2000 \(6\.0 megapixels\); the limit is 5 megapixels"):
        prepare_image(data, ImageLimits(refuse_pixels=5_000_000))


@pytest.mark.parametrize("prompt", ["", "   \n\t"])
def test_empty_prompt_refused(prompt):
    with pytest.raises(InvalidInputError, match="prompt is empty"):
        check_prompt(prompt)


def test_over_long_prompt_refused_with_counts():
    with pytest.raises(InvalidInputError, match="has 11 characters; the limit is 10"):
        check_prompt("x" * 11, ImageLimits(max_prompt_chars=10))


def test_prompt_stripped_and_non_text_refused():
    assert check_prompt("  a cat \n") == "a cat"
    with pytest.raises(InvalidInputError, match="must be text"):
        check_prompt(None)  # type: ignore[arg-type]
