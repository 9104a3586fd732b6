"""Edits at the photo's own resolution: the model's low-resolution edit applied to the full-size source.

The model sees a photo through `Manipulator.source`: its centre square, resized to load_size, and that
image's centre image_size crop. `view_box` maps the crop back onto the photo; `composite` upsamples the edit
bilinearly to the photo pixels inside that box and applies it there. Every pixel outside the box is the
photo's own, and an edit that changes nothing (a closed mask, a zero change) returns the photo bit for bit.

Two ways to apply an edit (`BLENDS`):
- `change` (any generator): the photo plus the upsampled change (output - source, at the model's size). The
  photo's fine detail (texture, edges finer than a model pixel) is kept under a recolour.
- `layers` (mask and paint generators): the upsampled repaint blended into the photo through the upsampled
  mask (`Generator.layers`), as the model blends at its own size; the repainted area takes the repaint's
  (model-size, so smooth) detail.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np

Blend = Literal["change", "layers"]
BLENDS: tuple[Blend, ...] = ("change", "layers")
_ROWS = 256  # photo rows upsampled at a time: a 50-megapixel photo never has a float copy in memory


@dataclasses.dataclass(frozen=True)
class ViewBox:
    """Where the model's size x size input lies on the photo: [left, left + side) x [top, top + side), in
    photo pixel units (continuous: pixel x covers [x, x + 1))."""

    left: float
    top: float
    side: float
    size: int


def view_box(width: int, height: int, load_size: int, image_size: int) -> ViewBox:
    """The box of `Manipulator.source`: centre square (as sisgan.data.images.square_resize crops it),
    resized to load_size, centre crop of image_size (as center_crop)."""
    square = min(width, height)
    left, top = (width - square) // 2, (height - square) // 2
    scale = square / load_size
    offset = (load_size - image_size) // 2
    return ViewBox(left + offset * scale, top + offset * scale, image_size * scale, image_size)


def upsample_weights(n: int, start: float, side: float, size: int) -> tuple[int, np.ndarray]:
    """(first photo pixel, weights [m, size]) for the m photo pixels of a row (or column) of n whose centres
    lie in [start, start + side): row i of the weights samples the model's size pixels bilinearly at that
    pixel's centre (model pixel centres at 0.5, 1.5, ...; the edge pixels extend to the box's edge)."""
    first = max(0, math.ceil(start - 0.5))
    stop = min(n, math.ceil(start + side - 0.5))
    centres = np.arange(first, max(first, stop)) + 0.5
    u = np.clip((centres - start) * size / side - 0.5, 0, size - 1)  # in model pixels
    lo = np.floor(u).astype(np.int64)
    hi = np.minimum(lo + 1, size - 1)
    frac = (u - lo).astype(np.float32)
    weights = np.zeros((len(u), size), np.float32)
    rows = np.arange(len(u))
    np.add.at(weights, (rows, lo), 1 - frac)
    np.add.at(weights, (rows, hi), frac)
    return first, weights


def _upsample(wy: np.ndarray, layer: np.ndarray, wx: np.ndarray) -> np.ndarray:
    """wy [Y, S] @ layer [S, S, C] @ wx [X, S]^T -> [Y, X, C] (separable bilinear)."""
    s, _, c = layer.shape
    rows = (wy @ layer.reshape(s, s * c)).reshape(len(wy), s, c)  # [Y, S, C]
    return (rows.transpose(0, 2, 1) @ wx.T).transpose(0, 2, 1)  # [Y, X, C]


def composite(
    photo: np.ndarray,
    box: ViewBox,
    *,
    change: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    repaint: np.ndarray | None = None,
) -> np.ndarray:
    """The photo (uint8 [H, W, 3]) with a model-size edit applied inside `box`: either `change` [S, S, 3]
    (output - source, in 0-255 units) added, or `repaint` [S, S, 3] (0-255) blended in through `mask`
    [S, S] (0-1). Returns a new uint8 [H, W, 3]."""
    if (change is None) == (mask is None or repaint is None):
        raise ValueError("pass either change, or mask and repaint")
    h, w, _ = photo.shape
    y0, wy = upsample_weights(h, box.top, box.side, box.size)
    x0, wx = upsample_weights(w, box.left, box.side, box.size)
    out = photo.copy()
    layers = (
        [change.astype(np.float32)]
        if change is not None
        else [mask.astype(np.float32)[..., None], repaint.astype(np.float32)]
    )
    for r in range(0, len(wy), _ROWS):
        ys = wy[r : r + _ROWS]
        region = out[y0 + r : y0 + r + len(ys), x0 : x0 + len(wx)]
        pixels = region.astype(np.float32)
        if change is not None:
            pixels += _upsample(ys, layers[0], wx)
        else:
            alpha = _upsample(ys, layers[0], wx)
            pixels += alpha * (_upsample(ys, layers[1], wx) - pixels)
        region[...] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return out
