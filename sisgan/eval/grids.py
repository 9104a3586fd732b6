"""Image grids: rows of (source | outputs ...) with captions above the columns, as one PIL image."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def compose(
    rows: Sequence[Sequence[np.ndarray]],
    header: Sequence[str] | None = None,
    scale: int = 2,
    pad: int = 4,
    header_lines: int = 5,
) -> Image.Image:
    """rows[r][c]: [H, W, 3] uint8 tiles of equal size (square at the model's size; a photo's shape at full
    size) -> one RGB image (tiles upscaled by `scale`).

    header[c] is written above column c (wrapped), e.g. "source" then one target caption per column.
    """
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    th, s = rows[0][0].shape[0] * scale, rows[0][0].shape[1] * scale
    font_size = max(9, s // 9)
    head = 0
    if header:
        head = header_lines * (font_size + 2) + pad
    width = n_cols * (s + pad) + pad
    height = head + n_rows * (th + pad) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if header:
        font = _font(font_size)
        chars = max(8, int(s / (font_size * 0.55)))
        for c, text in enumerate(header):
            lines = textwrap.wrap(text, chars)[:header_lines]
            for i, line in enumerate(lines):
                draw.text((pad + c * (s + pad), pad + i * (font_size + 2)), line, fill=(0, 0, 0), font=font)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            img = Image.fromarray(np.asarray(tile, np.uint8)).resize((s, th), Image.Resampling.NEAREST)
            canvas.paste(img, (pad + c * (s + pad), head + pad + r * (th + pad)))
    return canvas


def manipulation_grid(sources: np.ndarray, outputs: np.ndarray, captions: Sequence[str]) -> Image.Image:
    """sources [K, S, S, 3], outputs [K, M, S, S, 3], M captions -> grid with one row per source.

    Tiles are upscaled to about 100 pixels so the captions above them stay readable.
    """
    rows = [[sources[k], *outputs[k]] for k in range(len(sources))]
    scale = max(1, round(100 / sources.shape[1]))
    return compose(rows, ["source", *captions], scale=scale, header_lines=6)


def caption_rows(
    sources: np.ndarray,
    captions: Sequence[str],
    outputs: np.ndarray,
    counterfactuals: np.ndarray | None = None,
    tile: int = 96,
) -> Image.Image:
    """Evaluation grid, one row per pair: source | target caption | output (| counterfactual)."""
    pad, text_w = 6, 3 * tile
    columns = ["source", "target caption", "output"] + (
        ["counterfactual"] if counterfactuals is not None else []
    )
    widths = [tile, text_w, tile] + ([tile] if counterfactuals is not None else [])
    font = _font(max(10, tile // 8))
    head = tile // 5
    width = sum(widths) + pad * (len(widths) + 1)
    canvas = Image.new("RGB", (width, head + len(sources) * (tile + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    xs = np.cumsum([pad] + [w + pad for w in widths[:-1]])
    for x, name in zip(xs, columns, strict=True):
        draw.text((int(x), 2), name, fill=(90, 90, 90), font=font)
    for r in range(len(sources)):
        y = head + pad + r * (tile + pad)
        tiles = [sources[r], None, outputs[r]] + ([counterfactuals[r]] if counterfactuals is not None else [])
        for x, t in zip(xs, tiles, strict=True):
            if t is None:
                lines = textwrap.wrap(captions[r], max(10, int(text_w / (font.size * 0.55))))[:6]
                for i, line in enumerate(lines):
                    draw.text((int(x), y + i * (font.size + 3)), line, fill=(0, 0, 0), font=font)
            else:
                img = Image.fromarray(np.asarray(t, np.uint8)).resize((tile, tile), Image.Resampling.NEAREST)
                canvas.paste(img, (int(x), y))
    return canvas
