"""The README's grid of real test-class photos: source | target caption | output, for flowers and birds.

    python docs/real_grid.py --model flowers=models:/sisgan-flowers@champion \
        --shards flowers=data/shards/flowers --model cub=... --shards cub=... --out docs/images/real_grid.png

For each dataset, `--rows` test images (unseen classes) chosen by a seeded draw, each with the first caption
of another test image (of another class) that gives a part a colour ("pink petals", "a red crown") and names
no colour that already dominates the source's object: an edit the model has to make, as the `evaluate`
stage's colour measures count them. The model edits the stored view of the photo (the stage's input); no
output is chosen by how it looks.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from sisgan.data.images import center_crop
from sisgan.data.shards import load_split
from sisgan.eval import colour as col
from sisgan.eval.grids import caption_rows
from sisgan.inference import Manipulator
from sisgan.text.tokenizer import tokenize
from sisgan.train.swaps import COLOUR_WORDS, colour_parts, photo_mask


def named(caption: str, word_class: dict[str, int]) -> bool:
    """Whether the caption gives a colour to a part (sisgan.train.swaps.colour_parts)."""
    return any(p is not None for ps in colour_parts(tokenize(caption), word_class).values() for p in ps)


def pick(shards: str, m: Manipulator, rows: int, seed: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(sources [K, S, S, 3], target captions, outputs [K, S, S, 3]) for K test images."""
    test = load_split(shards, "test")
    word_class = {w: i for i, w in enumerate(COLOUR_WORDS)}
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(test))
    sources, captions = [], []
    for i, j in zip(order, np.roll(order, 1), strict=True):
        if test.class_ids[i] == test.class_ids[j]:
            continue  # a caption of the image's own class would ask for (almost) no change
        source = center_crop(test.images[i], m.image_size)
        dominant = col.colour_shares(col.pixel_colours(source[None]), photo_mask(source[None]))[0].argmax()
        caps = [c for c in test.captions[j] if named(c, word_class) and dominant not in col.named_colours(c)]
        if caps:
            sources.append(source)
            captions.append(caps[0].strip())
        if len(sources) == rows:
            break
    arr = np.stack(sources)
    return arr, captions, m.manipulate_arrays(arr, captions)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, metavar="NAME=URI")
    ap.add_argument("--shards", action="append", required=True, metavar="NAME=FOLDER")
    ap.add_argument("--rows", type=int, default=4, help="test images per dataset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/images/real_grid.png")
    args = ap.parse_args()
    models = dict(item.split("=", 1) for item in args.model)
    shards = dict(item.split("=", 1) for item in args.shards)
    parts = []
    for name, uri in models.items():
        sources, captions, outputs = pick(shards[name], Manipulator.load(uri), args.rows, args.seed)
        parts.append(caption_rows(sources, captions, outputs))
    grid = Image.new("RGB", (max(p.width for p in parts), sum(p.height for p in parts)), (255, 255, 255))
    y = 0
    for p in parts:
        grid.paste(p, (0, y))
        y += p.height
    grid.quantize(colors=256).save(args.out, optimize=True)
    print(f"wrote {args.out} ({grid.width}x{grid.height})")


if __name__ == "__main__":
    main()
