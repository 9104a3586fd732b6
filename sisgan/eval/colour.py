"""Colour-following on photos: which basic colour each pixel shows, and how much of an object is a colour.

The measure (docs/evaluation.md, "Colour-following"):

- Every colour word of the captions (`sisgan.train.swaps.COLOUR_WORDS`) names one of eleven basic colours
  (Berlin & Kay's basic colour terms): "crimson" and "scarlet" are red, "gold" is yellow, "teal" is blue, ...
  (`WORD_COLOUR`).
- A pixel's colour, from its CIELAB lightness L, chroma C and hue h: black where L < 15 (a deep shadow
  shows no colour); where C < 12 (about the chroma of a shaded white petal) black, grey or white by
  lightness (L < 30, 30-70, > 70); otherwise the nearest of the eight chromatic prototypes (`PROTOTYPES`,
  sRGB) by ΔE² = (0.5 ΔL)² + (0.3 ΔC)² + ΔH² (CIE 1976 ΔE with its hue difference ΔH kept whole and the
  lightness and chroma differences discounted): shading and haze scale a surface's lightness and chroma far
  more than its hue, so a petal in shadow, or a pale lavender one, stays its colour.
- An image's share of a colour is the object-weighted fraction of its pixels of that colour (the weights:
  `sisgan.train.swaps.photo_mask` of the source on photos, the ground-truth bird on synth-birds).

Nothing here is learnt from data: the prototypes are fixed, so the measure is the same for every model and
every dataset, and unrelated to the colours the training pairs were grounded to.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sisgan.text.tokenizer import tokenize
from sisgan.train.swaps import from_lab, to_lab

# The basic colours and a prototype sRGB colour of each.
PROTOTYPES: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 45),
    "orange": (240, 130, 30),
    "yellow": (245, 215, 50),
    "green": (70, 140, 50),
    "blue": (45, 85, 195),
    "purple": (125, 55, 155),
    "pink": (235, 135, 175),
    "brown": (125, 80, 45),
    "black": (25, 25, 25),
    "white": (242, 242, 238),
    "grey": (128, 128, 128),
}
COLOURS: tuple[str, ...] = tuple(PROTOTYPES)
WORD_COLOUR: dict[str, str] = {
    **dict.fromkeys(("red", "crimson", "scarlet", "maroon"), "red"),
    "orange": "orange",
    **dict.fromkeys(("yellow", "gold", "golden"), "yellow"),
    **dict.fromkeys(("green", "olive"), "green"),
    **dict.fromkeys(("blue", "teal", "turquoise"), "blue"),
    **dict.fromkeys(("purple", "violet", "lavender"), "purple"),
    **dict.fromkeys(("pink", "magenta"), "pink"),
    **dict.fromkeys(("brown", "tan", "buff", "rufous"), "brown"),
    "black": "black",
    **dict.fromkeys(("white", "cream"), "white"),
    **dict.fromkeys(("grey", "gray"), "grey"),
}
# The pixel rule's constants (module docstring); set on the training split of Oxford-102, where the source's
# dominant object colour is one its caption names for 64% of the captions that name one (docs/evaluation.md).
DARK_L, GREY_CHROMA, BLACK_L, WHITE_L = 15.0, 12.0, 30.0, 70.0
LIGHTNESS_WEIGHT, CHROMA_WEIGHT = 0.5, 0.3
_ACHROMATIC = ("black", "white", "grey")
_CHROMATIC = tuple(c for c in PROTOTYPES if c not in _ACHROMATIC)
_PROTO_LAB = to_lab(np.array(list(PROTOTYPES.values()), np.float32))  # [K, 3]
_CHROMA_LAB = to_lab(np.array([PROTOTYPES[c] for c in _CHROMATIC], np.float32))  # [8, 3]


def named_colours(caption: str) -> list[int]:
    """The basic colours a caption names (indices into COLOURS), in the order it first names them."""
    found: list[int] = []
    for word in tokenize(caption):
        colour = WORD_COLOUR.get(word)
        if colour is not None and COLOURS.index(colour) not in found:
            found.append(COLOURS.index(colour))
    return found


def pixel_colours(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3] -> int [N, H, W]: each pixel's basic colour (index into COLOURS)."""
    lab = to_lab(images)
    light, chroma, hue = lab[..., 0], np.hypot(lab[..., 1], lab[..., 2]), np.arctan2(lab[..., 2], lab[..., 1])
    p_light, p_chroma = _CHROMA_LAB[:, 0], np.hypot(_CHROMA_LAB[:, 1], _CHROMA_LAB[:, 2])
    p_hue = np.arctan2(_CHROMA_LAB[:, 2], _CHROMA_LAB[:, 1])
    d_hue = 2 * np.sqrt(chroma[..., None] * p_chroma) * np.sin((hue[..., None] - p_hue) / 2)  # [..., 8]
    d = (
        (LIGHTNESS_WEIGHT * (light[..., None] - p_light)) ** 2
        + (CHROMA_WEIGHT * (chroma[..., None] - p_chroma)) ** 2
        + d_hue**2
    )
    index = np.array([COLOURS.index(c) for c in _CHROMATIC])
    black, white, grey = (COLOURS.index(c) for c in _ACHROMATIC)
    achromatic = np.where(light < BLACK_L, black, np.where(light > WHITE_L, white, grey))
    out = np.where(chroma < GREY_CHROMA, achromatic, index[d.argmin(axis=-1)])
    return np.where(light < DARK_L, black, out)


def colour_shares(colours: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-pixel colours [N, H, W] and weights [N, H, W] -> [N, K]: each colour's weighted share (rows sum to
    1; 0 for an image whose weights are all 0)."""
    n, k = len(colours), len(COLOURS)
    w = weights.reshape(n, -1).astype(np.float64)
    idx = colours.reshape(n, -1) + k * np.arange(n)[:, None]
    sums = np.bincount(idx.ravel(), weights=w.ravel(), minlength=n * k).reshape(n, k)
    total = w.sum(axis=1, keepdims=True)
    return np.divide(sums, total, out=np.zeros_like(sums), where=total > 0)


def tint(images: np.ndarray, colours: Sequence[int | None], strength: float) -> np.ndarray:
    """Each image globally tinted toward a basic colour (None: left as it is): in CIELAB, every pixel's
    chroma plane (a, b) moves `strength` of the way to the colour's prototype, its lightness unchanged, so a
    grey-level view of the image (and its structure) stays the same. uint8 [N, H, W, 3] -> same."""
    out = images.copy()
    for i, c in enumerate(colours):
        if c is None:
            continue
        lab = to_lab(images[i])
        lab[..., 1:] += strength * (_PROTO_LAB[c, 1:] - lab[..., 1:])
        out[i] = np.clip(np.rint(from_lab(lab)), 0, 255).astype(np.uint8)
    return out
