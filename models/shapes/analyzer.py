"""Recover a shapes-world scene from an image, with artifact measures.

``analyze(image)`` works on any RGB image (it is resampled to 64x64) and is built to survive the
flaws of generated images: blur, noise, jittered or slightly wrong colours, broken or merged
shapes and smudges.

How it reads an image:

1. The background is the median colour. Every pixel is explained as a mix of the background and
   one palette colour (or the word's ink): its *coverage* is the projection on the line from the
   background to that colour, its *residual* the distance from that line. Blur and anti-aliasing
   mix colours linearly in RGB, so a blurred edge still fits its colour with a small residual.
2. Foreground pixels (far from the background) are grouped into 4-connected components; the
   pixels of components are assigned to the grid cell they lie in, and a cell with enough mass
   holds an object. A component spread over two cells is a merge; components of ink or of no
   palette colour in the grid are smudges; an object whose solid pixels fall apart in pieces is
   broken; clusters of its solid pixels off its colour are colour bleeding.
3. An object's colour is the alpha-weighted vote of its solid pixels. Its shape and size are the
   best match, in squared error over the cell, of its coverage map against the renderer's own
   templates of every shape and size, aligned on the centroid, at five scales (generated shapes
   are rarely the exact size) and blurred at several levels (the winning level is the blur
   estimate).
4. The word is read by matching the ink in the band under the grid against glyphs rendered with
   the shipped font in the renderer's letter slots, for 1-3 letters, small shifts and blur
   levels; the best-fitting reconstruction wins, and a band with too little ink has no word.
"""

from __future__ import annotations

import logging
import string
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from models.errors import InvalidInputError
from models.images import to_rgb
from models.shapes.world import (
    COLOURS,
    GRID_HEIGHT,
    INK,
    MAX_WORD_LETTERS,
    POSITIONS,
    SHAPES,
    SIZES,
    STAR_INNER,
    Scene,
    ShapeObject,
    cell_centre,
    letter_mask,
    object_extent,
    shape_mask,
    word_slots,
)

logger = logging.getLogger(__name__)

ANALYSIS_SIZE = 64
BLUR_LEVELS: tuple[float, ...] = (0.0, 0.3, 0.6, 0.9, 1.2, 1.5, 1.8, 2.2, 2.6)
_SCALES: tuple[float, ...] = (0.88, 0.94, 1.0, 1.06, 1.12)  # generated shapes are rarely the exact size
# Stars are also matched with blunter points: a decoder (a VAE, a generator) rounds off the points
# of a small star into a pentagon-like blob with sharp edges. Only sharp: blurred, a blunt star
# looks like a blurred diamond, so the blunt templates are not blurred beyond _BLUNT_MAX_BLUR.
_STAR_INNERS: tuple[float, ...] = (STAR_INNER, 0.62)
_BLUNT_MAX_BLUR = 0.6
_WORD_BLURS: tuple[float, ...] = (0.0, 0.7, 1.3, 2.0)
_LETTERS = string.ascii_uppercase
_PALETTE_NAMES: tuple[str, ...] = tuple(COLOURS)
_INK = len(_PALETTE_NAMES)  # class index of the word's ink
_NO_COLOUR = -1
_FG_FRACTION = 0.33  # a pixel is foreground beyond this share of the nearest colour's distance
_SOLID_ALPHA = 0.55  # pixels at least this covered vote on the colour
_MAX_RESIDUAL = 55.0  # RGB distance from a colour's mixing line that still counts as that colour
_MIN_OBJECT_MASS = 9.0  # foreground pixels a cell needs to hold an object
_MIN_COMPONENT = 3  # smaller components are specks (noise)
_MIN_SMUDGE = 5  # marks of no palette colour at least this big are smudges
_PIECE_ALPHA = 0.7  # coverage of the pixels that hold a shape together
_GAP_CLOSING = 2  # pixels: gaps up to twice this wide inside a broken shape are bridged
_BLEED_RESIDUAL = 35.0  # distance of a pixel tinted by another colour from its object's colour
_LOOSE_RESIDUAL = 90.0  # a generated colour this far from every palette line is no palette colour
_WINDOW_MARGIN = 3
_CORE_INSET = 4.0
_MISSHAPEN_FIT = 0.6


@dataclass(frozen=True)
class AnalyzedObject:
    """An object found in the image.

    ``confidence`` (0-1) is how clearly the best shape/size template beats the runner-up;
    ``fit`` is the soft IoU (0-1) of the image with that template; ``area`` the covered pixels
    at 64x64; ``fragments`` the separate pieces it is made of (1 when whole); ``impurity`` the
    share of its solid pixels in another colour (colour bleeding).
    """

    shape: str
    colour: str
    size: str
    position: str
    confidence: float
    fit: float
    area: float
    fragments: int
    impurity: float

    def as_object(self) -> ShapeObject:
        """The plain scene object."""
        return ShapeObject(self.shape, self.colour, self.size, self.position)


@dataclass(frozen=True)
class Artifacts:
    """Measured flaws of an image (all 0 for a clean render).

    ``blur``: estimated Gaussian blur in pixels at 64x64; ``noise``: estimated per-channel noise
    (0-255 levels); ``broken``: objects in several pieces; ``merged``: blobs spread over
    neighbouring cells; ``smudges``: marks of no palette colour (or of ink) in the grid;
    ``specks``: tiny spots; ``colour_bleed``: the largest share of an object's pixels in a
    foreign colour; ``misshapen``: objects that fit no shape well.
    """

    blur: float
    noise: float
    broken: int
    merged: int
    smudges: int
    specks: int
    colour_bleed: float
    misshapen: int


@dataclass(frozen=True)
class AnalyzedScene:
    """What ``analyze`` read from an image: objects in grid order, the word and the artifacts."""

    objects: tuple[AnalyzedObject, ...]
    word: str | None
    word_confidence: float
    artifacts: Artifacts

    def to_scene(self) -> Scene:
        """The plain ``Scene``. Raises ``InvalidInputError`` when no object was found."""
        if not self.objects:
            raise InvalidInputError("No shapes-world object was found in the image, so it has no scene.")
        return Scene(tuple(o.as_object() for o in self.objects), self.word)


# -- colour model -----------------------------------------------------------------------------


@dataclass
class _ColourFit:
    """Every pixel explained as a mix of the background and each colour (palette, then ink)."""

    pixels: np.ndarray  # (H, W, 3) the image
    background: np.ndarray  # (3,) its background colour
    alpha: np.ndarray  # (K+1, H, W) coverage per colour (palette..., ink)
    residual: np.ndarray  # (K+1, H, W)
    best: np.ndarray  # (H, W) class index of the nearest mixing line, _NO_COLOUR when none is near
    foreground: np.ndarray  # (H, W) bool
    strength: np.ndarray  # (H, W) distance of each pixel from the background
    reach: np.ndarray  # (K+1,) distance of each colour from the background


def _fit_colours(pixels: np.ndarray, background: np.ndarray) -> _ColourFit:
    targets = np.asarray([*COLOURS.values(), INK], dtype=np.float32) - background  # (K+1, 3)
    diff = pixels - background  # (H, W, 3)
    norms = (targets**2).sum(axis=1)
    proj = np.einsum("hwc,kc->khw", diff, targets) / norms[:, None, None]
    alpha = np.clip(proj, 0.0, 1.0)
    residual = np.linalg.norm(diff[None] - alpha[..., None] * targets[:, None, None, :], axis=-1)
    distance = np.linalg.norm(diff, axis=-1)
    foreground = distance > _FG_FRACTION * np.sqrt(norms.min())
    best = residual.argmin(axis=0)
    near = np.take_along_axis(residual, best[None], 0)[0] <= _LOOSE_RESIDUAL
    best = np.where(near, best, _NO_COLOUR)
    return _ColourFit(pixels, background, alpha, residual, best, foreground, distance, np.sqrt(norms))


def _label(mask: np.ndarray) -> np.ndarray:
    """4-connected component labels (0 = not in ``mask``, components numbered from 1)."""
    h, w = mask.shape
    big = h * w + 1
    labels = np.where(mask, np.arange(1, h * w + 1).reshape(h, w), big)
    while True:
        padded = np.pad(labels, 1, constant_values=big)
        neighbours = np.minimum.reduce(
            [padded[1:-1, 1:-1], padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
        )
        updated = np.where(mask, neighbours, big)
        if np.array_equal(updated, labels):
            break
        labels = updated
    _, dense = np.unique(np.where(mask, labels, 0), return_inverse=True)
    return dense.reshape(h, w) if mask.any() and not mask.all() else np.where(mask, 1, 0)


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` grown by ``steps`` pixels (8-connected)."""
    grown = mask
    for _ in range(steps):
        padded = np.pad(grown, 1)
        grown = np.logical_or.reduce([padded[1 + dy: padded.shape[0] - 1 + dy, 1 + dx: padded.shape[1] - 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    return grown


# -- blur by matrices (separable Gaussian on small windows) -----------------------------------


@lru_cache(maxsize=1024)
def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    if sigma == 0:
        return np.eye(n, dtype=np.float32)
    idx = np.arange(n)
    kernel = np.exp(-((idx[:, None] - idx[None, :]) ** 2) / (2 * sigma**2))
    return (kernel / kernel.sum(axis=1, keepdims=True)).astype(np.float32)


def _blurred(stack: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of the last two axes (edges renormalised)."""
    h, w = stack.shape[-2:]
    return _blur_matrix(h, sigma) @ stack @ _blur_matrix(w, sigma).T


# -- objects ----------------------------------------------------------------------------------


def _variants(shape: str) -> tuple[float, ...]:
    """The star inner radii a shape's templates are drawn with (one, unused, for other shapes)."""
    return _STAR_INNERS if shape == "star" else (STAR_INNER,)


@lru_cache(maxsize=64)
def _template_offset(shape: str, size_name: str, star_inner: float) -> tuple[float, float]:
    """Centroid minus nominal centre of a template (triangles and stars are off-centre)."""
    centre = cell_centre("centre", ANALYSIS_SIZE)
    mask = shape_mask(shape, centre, object_extent(size_name, ANALYSIS_SIZE), ANALYSIS_SIZE, star_inner=star_inner)
    ys, xs = np.mgrid[0:ANALYSIS_SIZE, 0:ANALYSIS_SIZE]
    return (float((xs * mask).sum() / mask.sum()) - centre[0], float((ys * mask).sum() / mask.sum()) - centre[1])


def _cell_box(position: str) -> tuple[slice, slice]:
    row, col = divmod(POSITIONS.index(position), 3)
    cell_w, cell_h = ANALYSIS_SIZE / 3, GRID_HEIGHT * ANALYSIS_SIZE / 3
    y0 = max(0, int(row * cell_h) - _WINDOW_MARGIN)
    y1 = min(ANALYSIS_SIZE, int(np.ceil((row + 1) * cell_h)) + _WINDOW_MARGIN)
    x0 = max(0, int(col * cell_w) - _WINDOW_MARGIN)
    x1 = min(ANALYSIS_SIZE, int(np.ceil((col + 1) * cell_w)) + _WINDOW_MARGIN)
    return slice(y0, y1), slice(x0, x1)


def _cell_index(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    cols = np.clip((3 * xs / ANALYSIS_SIZE).astype(int), 0, 2)
    rows = np.clip((3 * ys / (GRID_HEIGHT * ANALYSIS_SIZE)).astype(int), 0, 2)
    return 3 * rows + cols


def _in_cell_core(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Whether points lie in the core of their cell (``_CORE_INSET`` pixels in from its border),
    where spill from a neighbouring object does not reach."""
    cell_w, cell_h = ANALYSIS_SIZE / 3, GRID_HEIGHT * ANALYSIS_SIZE / 3
    fx, fy = np.mod(xs, cell_w), np.mod(ys, cell_h)
    return (np.minimum(fx, cell_w - fx) >= _CORE_INSET) & (np.minimum(fy, cell_h - fy) >= _CORE_INSET) & (ys < 3 * cell_h)


@dataclass
class _Match:
    shape: str
    size: str
    error: float
    blur: float
    fit: float


def _match_shape(coverage: np.ndarray, weight: np.ndarray, box: tuple[slice, slice]) -> tuple[_Match, float]:
    """Best (shape, size, blur) template for ``coverage`` inside ``box``, and its confidence
    (how much better it fits than the best template of another shape or size)."""
    h, w = coverage.shape
    ys, xs = np.mgrid[0:h, 0:w]
    mass = float(coverage.sum())
    cx, cy = float((xs * coverage).sum() / mass), float((ys * coverage).sum() / mass)
    candidates = [(shape, size_name) for shape in SHAPES for size_name in SIZES]
    templates, owner, blunt = [], [], []  # every template, the candidate it belongs to, whether blunt
    for index, (shape, size_name) in enumerate(candidates):
        extent = object_extent(size_name, ANALYSIS_SIZE)
        for inner in _variants(shape):
            ox, oy = _template_offset(shape, size_name, inner)
            for scale in _SCALES:
                centre = (cx - ox * scale, cy - oy * scale)
                templates.append(shape_mask(shape, centre, extent * scale, max(h, w), star_inner=inner)[:h, :w])
                owner.append(index)
                blunt.append(inner != STAR_INNER)
    stack = np.stack(templates)  # (templates, h, w)
    blurred = np.stack([_blurred(stack, sigma) for sigma in BLUR_LEVELS])  # (blurs, templates, h, w)
    errors = (weight * (blurred - coverage) ** 2).sum(axis=(2, 3))  # (blurs, templates)
    errors[np.asarray(BLUR_LEVELS) > _BLUNT_MAX_BLUR] += np.where(blunt, np.inf, 0.0)
    owners = np.asarray(owner)
    per_candidate = np.array([errors[:, owners == index].min() for index in range(len(candidates))])
    order = np.argsort(per_candidate)
    best = int(order[0])
    masked = np.where(owners[None, :] == best, errors, np.inf)
    blur_index, template_index = np.unravel_index(masked.argmin(), masked.shape)
    template = blurred[blur_index, template_index]
    fit = float(np.minimum(template, coverage).sum() / max(np.maximum(template, coverage).sum(), 1e-6))
    shape, size_name = candidates[best]
    match = _Match(shape, size_name, float(per_candidate[best]), BLUR_LEVELS[blur_index], fit)
    return match, 1.0 - float(per_candidate[best]) / max(float(per_candidate[order[1]]), 1e-6)


def _analyze_objects(fit: _ColourFit, noise: float) -> tuple[list[AnalyzedObject], list[float], dict[str, int]]:
    grid_rows = int(np.ceil(GRID_HEIGHT * ANALYSIS_SIZE))
    grid = np.zeros_like(fit.foreground)
    grid[:grid_rows] = fit.foreground[:grid_rows]
    labels = _label(grid)
    counts = {"merged": 0, "smudges": 0, "specks": 0}
    cells: dict[int, list[tuple[int, bool]]] = {}
    ys, xs = np.nonzero(labels)
    pixel_cells = _cell_index(ys + 0.5, xs + 0.5)
    pixel_core = _in_cell_core(ys + 0.5, xs + 0.5)
    for comp in range(1, int(labels.max()) + 1):
        in_comp = labels[ys, xs] == comp
        size = int(in_comp.sum())
        if size < _MIN_COMPONENT:
            counts["specks"] += 1
            continue
        classes = fit.best[ys[in_comp], xs[in_comp]]
        palette_share = float(((classes >= 0) & (classes < _INK)).mean())
        if palette_share < 0.5:
            counts["smudges" if size >= _MIN_SMUDGE else "specks"] += 1
            continue
        spread = np.bincount(pixel_cells[in_comp], minlength=9)
        core = np.bincount(pixel_cells[in_comp & pixel_core], minlength=9)
        held = [c for c in range(9) if spread[c] >= _MIN_OBJECT_MASS and core[c] >= _MIN_COMPONENT]
        counts["merged"] += int(len(held) > 1)
        for c in held or [int(spread.argmax())]:
            cells.setdefault(c, []).append((comp, len(held) <= 1))
    objects: list[AnalyzedObject] = []
    blurs: list[float] = []
    for c in sorted(cells):
        found = _analyze_cell(POSITIONS[c], cells[c], labels, fit, noise)
        if found is not None:
            objects.append(found[0])
            blurs.append(found[1])
    return objects, blurs, counts


def _impurity(window: np.ndarray, core: np.ndarray, noise: float) -> float:
    """Share of an object's solid pixels (``core`` in ``window``, background already subtracted)
    that lie off the mixing line of their median colour in clusters: another colour bleeding in.
    A uniformly wrong colour is pure, and scattered noisy pixels do not count."""
    if not core.any():
        return 0.0
    line = np.median(window[core], axis=0)
    share = np.clip(window @ line / max(float(line @ line), 1e-6), 0.0, None)
    off = core & (np.linalg.norm(window - share[..., None] * line, axis=-1) > max(_BLEED_RESIDUAL, 3.5 * noise))
    padded = np.pad(off, 1).astype(np.int8)
    neighbours = sum(
        padded[1 + dy: padded.shape[0] - 1 + dy, 1 + dx: padded.shape[1] - 1 + dx]
        for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)
    )
    return float((off & (neighbours > 0)).sum() / core.sum())


def _analyze_cell(
    position: str, comps: list[tuple[int, bool]], labels: np.ndarray, fit: _ColourFit, noise: float
) -> tuple[AnalyzedObject, float] | None:
    """The object of one cell from the components that feed it (``exclusive`` components lie
    in this cell only and may overflow its border; shared ones count inside it only).

    Its pieces are counted on its solid pixels (whatever their colour), so that a gap that blur
    has half filled in still shows."""
    box = _cell_box(position)
    ys, xs = np.mgrid[box[0], box[1]]
    in_cell = _cell_index(ys + 0.5, xs + 0.5) == POSITIONS.index(position)
    window_labels = labels[box]
    exclusive = np.isin(window_labels, [c for c, alone in comps if alone])
    mine = exclusive | (np.isin(window_labels, [c for c, alone in comps if not alone]) & in_cell)
    if float((mine & in_cell).sum()) < _MIN_OBJECT_MASS:
        return None
    classes = fit.best[box]
    alpha_best = np.take_along_axis(fit.alpha[:, box[0], box[1]], np.clip(classes, 0, None)[None], 0)[0]
    solid = mine & in_cell & (classes >= 0) & (classes < _INK) & (alpha_best >= _SOLID_ALPHA)
    if not solid.any():
        return None
    votes = np.bincount(classes[solid], weights=alpha_best[solid], minlength=_INK)
    colour = int(votes.argmax())
    off_line = fit.residual[colour][box] > max(_BLEED_RESIDUAL, 3.5 * noise)
    body = mine & (in_cell | exclusive)
    core = body & (fit.strength[box] >= _PIECE_ALPHA * fit.reach[colour])
    impurity = _impurity(fit.pixels[box] - fit.background, core, noise)
    pieces = _label(core)
    fragments = int((np.bincount(pieces.ravel())[1:] >= _MIN_COMPONENT).sum())
    coverage = fit.alpha[colour][box].copy()
    tinted = off_line & body  # bled into by another colour: still part of the shape
    coverage[tinted] = np.clip(fit.strength[box][tinted] / fit.reach[colour], 0.0, 1.0)
    foreign = (fit.residual[colour][box] > _MAX_RESIDUAL) & ~tinted
    others = (window_labels > 0) & ~mine
    coverage[foreign | others | ~_dilate(mine, _WINDOW_MARGIN)] = 0.0
    weight = np.where(others, 0.0, 1.0)
    if fragments > 1:  # a broken shape: the gap between its pieces says nothing about its shape
        solid = pieces > 0
        closed = ~_dilate(~_dilate(solid, _GAP_CLOSING), _GAP_CLOSING)
        weight[closed & ~solid] = 0.0
    match, confidence = _match_shape(coverage, weight, box)
    found = AnalyzedObject(
        shape=match.shape,
        colour=_PALETTE_NAMES[colour],
        size=match.size,
        position=position,
        confidence=round(max(0.0, confidence), 3),
        fit=round(match.fit, 3),
        area=round(float(coverage.sum()), 1),
        fragments=max(1, fragments),
        impurity=round(impurity, 3),
    )
    return found, match.blur


# -- the word ---------------------------------------------------------------------------------


def _band_rows() -> slice:
    return slice(int(GRID_HEIGHT * ANALYSIS_SIZE) - 1, ANALYSIS_SIZE)


@lru_cache(maxsize=64)
def _glyphs(length: int, slot: int, blur: float) -> tuple[np.ndarray, slice]:
    """Blurred glyph templates (26, band_h, slot_w) of one slot, and the slot's column range."""
    centre = word_slots(length, ANALYSIS_SIZE)[slot]
    half = 0.6 * (word_slots(2, ANALYSIS_SIZE)[1] - word_slots(2, ANALYSIS_SIZE)[0])
    cols = slice(max(0, int(centre - half)), min(ANALYSIS_SIZE, int(np.ceil(centre + half))))
    stack = np.stack([letter_mask(letter, slot, length, ANALYSIS_SIZE)[_band_rows(), cols] for letter in _LETTERS])
    return _blurred(stack, blur), cols


def _read_word(ink: np.ndarray) -> tuple[str | None, float]:
    """The word in the band's ink coverage ``ink`` and the confidence of its weakest letter."""
    empty_error = float((ink**2).sum())
    if ink.sum() < 4.0:
        return None, round(min(1.0, 1.0 - ink.sum() / 4.0), 3)
    best: tuple[float, str, float] = (empty_error, "", 1.0)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            shifted = np.roll(ink, (-dy, -dx), axis=(0, 1))
            for blur in _WORD_BLURS:
                for length in range(1, MAX_WORD_LETTERS + 1):
                    recon = np.zeros_like(ink)
                    letters, margins = [], []
                    for slot in range(length):
                        glyphs, cols = _glyphs(length, slot, blur)
                        errors = ((glyphs - shifted[:, cols]) ** 2).sum(axis=(1, 2))
                        order = np.argsort(errors)
                        letters.append(_LETTERS[order[0]])
                        margins.append(1.0 - errors[order[0]] / max(errors[order[1]], 1e-6))
                        recon[:, cols] = np.maximum(recon[:, cols], glyphs[order[0]])
                    error = float(((recon - shifted) ** 2).sum())
                    if error < best[0]:
                        best = (error, "".join(letters), float(min(margins)))
    if not best[1] or best[0] > 0.6 * empty_error:
        return None, round(1.0 - best[0] / max(empty_error, 1e-6), 3)
    return best[1], round(max(0.0, best[2]), 3)


# -- entry point ------------------------------------------------------------------------------


def _noise_level(pixels: np.ndarray, fit: _ColourFit, background: np.ndarray) -> float:
    near = _dilate(fit.foreground, 2)
    quiet = pixels[~near]
    if len(quiet) < 50:
        return 0.0
    # The lower quartile of the deviations: a light background clips the upper half of the noise.
    return float(max(0.0, -np.percentile(quiet - background, 25, axis=0).mean() / 0.6745))


def analyze(image: Image.Image) -> AnalyzedScene:
    """Recover the scene in ``image`` (objects with confidence, the word, artifact measures).

    Any size is accepted; the image is resampled to 64x64. Raises ``InvalidInputError`` for
    something that is not a PIL image.
    """
    if not isinstance(image, Image.Image):
        raise InvalidInputError(f"analyze() needs a PIL image; got {type(image).__name__}.")
    rgb = to_rgb(image)
    if rgb.size != (ANALYSIS_SIZE, ANALYSIS_SIZE):
        rgb = rgb.resize((ANALYSIS_SIZE, ANALYSIS_SIZE), Image.Resampling.BOX if rgb.width > ANALYSIS_SIZE else Image.Resampling.BICUBIC)
    pixels = np.asarray(rgb, dtype=np.float32)
    background = np.median(pixels.reshape(-1, 3), axis=0)
    fit = _fit_colours(pixels, background)
    noise = _noise_level(pixels, fit, background)
    objects, blurs, counts = _analyze_objects(fit, noise)
    band = _band_rows()
    ink = np.where(fit.residual[_INK][band] <= _MAX_RESIDUAL, fit.alpha[_INK][band], 0.0).astype(np.float32)
    word, word_confidence = _read_word(ink)
    artifacts = Artifacts(
        blur=float(np.median(blurs)) if blurs else 0.0,
        noise=round(noise, 2),
        broken=sum(1 for o in objects if o.fragments > 1),
        merged=counts["merged"],
        smudges=counts["smudges"],
        specks=counts["specks"],
        colour_bleed=max((o.impurity for o in objects), default=0.0),
        misshapen=sum(1 for o in objects if o.fit < _MISSHAPEN_FIT),
    )
    logger.debug("analyzed %d objects, word %r, artifacts %s", len(objects), word, artifacts)
    return AnalyzedScene(tuple(objects), word, word_confidence, artifacts)
