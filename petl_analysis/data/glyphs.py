"""Procedural glyph images: 0-9, A-Z, a-z drawn with the TrueType fonts matplotlib ships, randomly distorted.

Two stages, so that a dataset of any size costs one cheap batched warp:

1. :func:`glyph_bank` renders each (font, character) once with PIL into a ``uint8 [F, 62, 64, 64]`` bank (white ink
   on black, MNIST-like), cached for the process.
2. :func:`render_glyphs` samples (font, class, stroke) triples and distorts them in batches with torch: a random
   affine warp (``affine_grid`` / ``grid_sample``: rotation, shear, scale, translation), contrast and Gaussian noise.
   Stroke thickness (max-pool dilation / min-pool erosion) and the antialiased resize to the output size are applied
   once per output size to the whole bank (:func:`_stroke_bank`), so sampling runs at ~100k images/s at 28 px on
   2 cores.

Everything random comes from one ``torch.Generator`` seeded by ``seed``, so the same arguments give the same tensor.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PetlError

CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Candidate fonts (file stems under matplotlib/mpl-data/fonts/ttf). Excluded on purpose: DejaVu*Display, STIXNonUni*,
# STIXSiz* (no Latin glyphs), LastResortHE (one box for everything), cmex10 / cmsy10 (symbols in the ASCII slots);
# a cmap check cannot catch the last two, hence a list rather than a scan.
CANDIDATE_FONTS: tuple[str, ...] = (
    "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSans-BoldOblique",
    "DejaVuSansMono", "DejaVuSansMono-Bold", "DejaVuSansMono-Oblique", "DejaVuSansMono-BoldOblique",
    "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSerif-Italic", "DejaVuSerif-BoldItalic",
    "STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "STIXGeneralBolIta",
    "cmr10", "cmb10", "cmss10", "cmtt10", "cmti10", "cmmi10",
)  # fmt: skip

BANK_SIZE = 64
# Height (px) of the font's tallest ascender-to-deepest-descender span in the bank; the rest is margin for warps.
_SPAN = 50
_REF_PT = 100
# A code point no font here covers: renders as the font's .notdef box (or nothing).
_NOTDEF_PROBE = "\U000f0000"


def fonts_dir() -> Path:
    """matplotlib's bundled TrueType folder, found without importing matplotlib (its import is slow)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise PetlError("glyphs: matplotlib is not installed; expected its bundled fonts in mpl-data/fonts/ttf")
    return Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"


def _render_font(path: Path) -> np.ndarray | None:
    """All 62 glyphs of one font as ``uint8 (62, 64, 64)``, or None if any glyph is missing, empty or a duplicate.

    Vertical placement is shared by the whole font (a common baseline and scale) so case and x-height differences
    survive (``o`` stays smaller than ``O``); each glyph is centred horizontally.
    """
    from PIL import Image, ImageDraw, ImageFont

    ref = ImageFont.truetype(str(path), _REF_PT)
    boxes = np.array([ref.getbbox(c, anchor="ls") for c in CHARS], dtype=np.float64)  # (62, 4): x0, y0, x1, y1
    span_h = boxes[:, 3].max() - boxes[:, 1].min()
    max_w = (boxes[:, 2] - boxes[:, 0]).max()
    if span_h <= 0 or max_w <= 0:
        return None
    pt = max(8, int(_REF_PT * min(_SPAN / span_h, (BANK_SIZE - 6) / max_w)))
    font = ImageFont.truetype(str(path), pt)
    boxes = np.array([font.getbbox(c, anchor="ls") for c in CHARS], dtype=np.float64)
    top, bottom = boxes[:, 1].min(), boxes[:, 3].max()
    baseline = round((BANK_SIZE - (bottom - top)) / 2 - top)

    def draw(ch: str, x0: float, x1: float) -> np.ndarray:
        img = Image.new("L", (BANK_SIZE, BANK_SIZE), 0)
        ImageDraw.Draw(img).text(
            (round((BANK_SIZE - (x1 - x0)) / 2 - x0), baseline), ch, font=font, fill=255, anchor="ls"
        )
        return np.asarray(img)

    glyphs = np.stack([draw(c, b[0], b[2]) for c, b in zip(CHARS, boxes)])
    notdef = draw(_NOTDEF_PROBE, *np.array(font.getbbox(_NOTDEF_PROBE, anchor="ls"))[[0, 2]])
    empty = glyphs.reshape(len(CHARS), -1).max(axis=1) == 0
    is_notdef = (glyphs == notdef[None]).all(axis=(1, 2))
    distinct = len({g.tobytes() for g in glyphs}) == len(CHARS)
    if empty.any() or is_notdef.any() or not distinct:
        return None
    return glyphs


@functools.lru_cache(maxsize=1)
def _bank() -> tuple[tuple[str, ...], torch.Tensor]:
    folder = fonts_dir()
    names, banks = [], []
    for name in CANDIDATE_FONTS:
        path = folder / f"{name}.ttf"
        glyphs = _render_font(path) if path.is_file() else None
        if glyphs is not None:  # a font that fails the check is left out, never half-used
            names.append(name)
            banks.append(glyphs)
    if not banks:
        raise PetlError(f"glyphs: none of the expected fonts render 0-9A-Za-z in {folder}")
    return tuple(names), torch.from_numpy(np.stack(banks))


def glyph_fonts() -> list[str]:
    """Names of the fonts that passed the rendering check, in bank order (22 with matplotlib 3.x)."""
    return list(_bank()[0])


def glyph_bank() -> torch.Tensor:
    """``uint8 [F, 62, 64, 64]`` bank; ``[f, c]`` is ``CHARS[c]`` in font ``glyph_fonts()[f]``.

    Shared by every caller of this process: treat as read-only (``.clone()`` before editing).
    """
    return _bank()[1]


def _max3x3(x: torch.Tensor) -> torch.Tensor:
    """``max_pool2d(x, 3, stride=1, padding=1)`` as two separable 1-D maxima: same result, faster on CPU.

    Zero padding is exact here: inputs are ``[0, 1]`` ink or its negation, and the bank's border is black (0).
    """
    h, w = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1))
    r = torch.maximum(torch.maximum(p[..., :, :w], p[..., :, 1 : w + 1]), p[..., :, 2 : w + 2])
    return torch.maximum(torch.maximum(r[..., :h, :], r[..., 1 : h + 1, :]), r[..., 2 : h + 2, :])


@functools.lru_cache(maxsize=4)
def _stroke_bank(size: int) -> torch.Tensor:
    """``float32 [4, F, 62, size, size]`` in [0, 1]: stroke levels erode / keep / dilate 3x3 / dilate 5x5.

    Morphology runs once on the 64 px bank (cheap: F*62 images) instead of per sample, and the antialiased resize to
    the output size here lets the per-sample warp sample at about 1:1, where bilinear needs no antialiasing.
    """
    x = glyph_bank().reshape(-1, 1, BANK_SIZE, BANK_SIZE).to(torch.float32) / 255.0
    dil = _max3x3(x)
    # Half-strength erosion (a full 3x3 min-pool halves a 4 px stem); hairline glyphs (cmr10, cmti10) that would
    # still lose over 40% of their ink stay as they are.
    ero = 0.5 * (x - _max3x3(-x))
    kept = ero.sum(dim=(-1, -2), keepdim=True) >= 0.6 * x.sum(dim=(-1, -2), keepdim=True)
    levels = torch.stack([torch.where(kept, ero, x), x, dil, _max3x3(dil)])  # (4, F*62, 1, 64, 64)
    if size != BANK_SIZE:
        levels = F.interpolate(
            levels.flatten(0, 1), size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return levels.reshape(4, *glyph_bank().shape[:2], size, size).contiguous()


def glyph_classes(case_fold: bool = False) -> list[str]:
    """Class names: the 62 characters, or with ``case_fold`` the digits then ``"Aa"`` ... ``"Zz"`` (36)."""
    if not case_fold:
        return list(CHARS)
    return list(CHARS[:10]) + [upper + lower for upper, lower in zip(CHARS[10:36], CHARS[36:])]


def _font_indices(fonts: Sequence[str | int] | None) -> list[int]:
    names = glyph_fonts()
    if fonts is None:
        return list(range(len(names)))
    if isinstance(fonts, (str, int)):
        fonts = [fonts]
    out = []
    for f in fonts:
        if isinstance(f, int) and 0 <= f < len(names):
            out.append(f)
        elif isinstance(f, str) and f in names:
            out.append(names.index(f))
        else:
            raise PetlError(
                f"glyphs: unknown font {f!r}; expected one of: {', '.join(names)} (or an index 0-{len(names) - 1})"
            )
    if not out:
        raise PetlError("glyphs: fonts is empty; expected at least one font name")
    return sorted(set(out))


def _uniform(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def render_glyphs(
    n: int = 10000,
    seed: int = 0,
    size: int = 28,
    case_fold: bool = False,
    fonts: Sequence[str | int] | None = None,
    *,
    rotation_deg: float = 15.0,
    shear: float = 0.2,
    scale: tuple[float, float] = (0.8, 1.1),
    translate: float = 0.1,
    noise: float = 0.08,
    batch_size: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``n`` distorted glyph images.

    Labels are class-balanced (``n // K`` or one more per class, shuffled); with ``case_fold`` a letter class draws
    upper or lower case with equal chance. Fonts are drawn uniformly from ``fonts`` (names from
    :func:`glyph_fonts` or indices; default all), which allows train/test splits by font.

    Returns:
        ``images`` uint8 ``(n, 1, size, size)`` and ``labels`` int64 ``(n,)``; identical for identical arguments.
    """
    if n < 1 or size < 4:
        raise PetlError(f"glyphs: need n >= 1 and size >= 4; got n={n}, size={size}")
    font_idx = torch.tensor(_font_indices(fonts))
    k = 36 if case_fold else 62
    g = torch.Generator().manual_seed(int(seed))

    labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
    char = labels.clone()
    if case_fold:
        lower = torch.rand(n, generator=g) < 0.5
        char = torch.where((labels >= 10) & lower, labels + 26, labels)
    font = font_idx[torch.randint(len(font_idx), (n,), generator=g)]
    # Stroke level: -1 thinner, 0 as drawn, 1 / 2 dilated by 3x3 / 5x5. Thinning is rarer: it fades hairlines.
    stroke = torch.multinomial(torch.tensor([0.15, 0.4, 0.3, 0.15]), n, replacement=True, generator=g) - 1
    angle = _uniform(g, n, -rotation_deg, rotation_deg) * (math.pi / 180)
    shear_x = _uniform(g, n, -shear, shear)
    zoom = torch.exp(_uniform(g, n, math.log(scale[0]), math.log(scale[1])))
    shift = _uniform(g, 2 * n, -translate, translate).view(n, 2) * 2  # normalised coords span [-1, 1]
    contrast = _uniform(g, n, 0.7, 1.0)
    sigma = _uniform(g, n, 0.0, noise)
    eps = torch.randn((n, 1, size, size), generator=g)

    # Sampling matrix (output -> input coords) = (R @ Sh @ Z)^-1: builds the inverse directly.
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot_inv = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)  # R(-a)
    shear_inv = torch.zeros(n, 2, 2)
    shear_inv[:, 0, 0], shear_inv[:, 0, 1], shear_inv[:, 1, 1] = 1.0, -shear_x, 1.0
    lin = shear_inv @ rot_inv / zoom.view(n, 1, 1)
    theta = torch.cat([lin, -(lin @ shift.unsqueeze(-1))], dim=-1)  # (n, 2, 3)

    levels = _stroke_bank(int(size))
    out = torch.empty((n, 1, size, size), dtype=torch.uint8)
    for s in range(0, n, batch_size):
        sl = slice(s, min(n, s + batch_size))
        x = levels[stroke[sl] + 1, font[sl], char[sl]].unsqueeze(1)  # (b, 1, size, size), a copy
        grid = F.affine_grid(theta[sl], list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        x = x * contrast[sl].view(-1, 1, 1, 1) + sigma[sl].view(-1, 1, 1, 1) * eps[sl]
        out[sl] = x.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    return out, labels
