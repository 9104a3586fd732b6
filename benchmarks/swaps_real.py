"""Colour-swap edit pairs on real photos: what the colour words ground to, and where flat colours break.

    python -m benchmarks.swaps_real --shards data/shards/flowers [--extracted ../shared/data/real/cub]
        [--pairs 400] [--images-out docs/images]

Runs `sisgan.train.swaps` on a dataset's training split with both colour models (`flat`, the synth-birds
default, and `shaded`, for photographs) and measures, without any ground truth:

- grounding: each colour word's pixel colour, and whether it is plausible for the word (its hue family, or
  grey/black/white; `NOMINAL` below is this benchmark's own reference, a judgement, not data);
- spread: how much of a named colour's shaded surface lies within the flat model's recolour tolerance
  (32 RGB) of its grounded colour: on flat synthetic parts all of it, on photos far less;
- pairs: the share of edit pairs whose caption changed but whose pixels barely did (< 1% of the image moved
  by more than 8 levels: the pair then teaches G to ignore the text), and the mean changed area;
- for CUB with --extracted (its bounding_boxes.txt): the share of the recolouring that lands outside the
  bird's box, i.e. on the background.

Writes benchmarks/results/swaps_real_<dataset>.json and, with --images-out, a swatch and a grid of real
training images beside their recoloured targets (small PNGs).
"""

from __future__ import annotations

import argparse
import colorsys
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from benchmarks.common import print_table, write_json
from sisgan.data.shards import load_split, read_manifest
from sisgan.train import swaps

# Hue families (HSV degrees) of the colour words, or an achromatic kind: this benchmark's reference.
NOMINAL: dict[str, tuple[float, float] | str] = {
    **dict.fromkeys(("red", "crimson", "scarlet", "maroon"), (330.0, 20.0)),
    **dict.fromkeys(("orange", "rufous"), (10.0, 45.0)),
    **dict.fromkeys(("yellow", "gold", "golden"), (30.0, 70.0)),
    "olive": (40.0, 90.0),
    "green": (70.0, 170.0),
    **dict.fromkeys(("teal", "turquoise"), (150.0, 210.0)),
    "blue": (180.0, 260.0),
    **dict.fromkeys(("purple", "violet", "lavender"), (240.0, 320.0)),
    **dict.fromkeys(("magenta", "pink"), (280.0, 355.0)),
    **dict.fromkeys(("brown", "tan", "buff", "cream"), (10.0, 60.0)),
    "black": "black",
    "white": "white",
    **dict.fromkeys(("grey", "gray"), "grey"),
}


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def plausible(word: str, rgb: tuple[float, float, float]) -> bool:
    """Whether a grounded colour is in the word's family (hue; or value/saturation for the greys)."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    kind = NOMINAL.get(word)
    if kind == "black":
        return v < 0.3
    if kind == "white":
        return v > 0.65 and s < 0.25
    if kind == "grey":
        return s < 0.2 and 0.2 < v < 0.85
    if kind is None:
        return False
    lo, hi = kind
    hue = h * 360
    in_family = lo <= hue <= hi if lo < hi else (hue >= lo or hue <= hi)
    if word in ("brown", "tan", "buff", "cream", "maroon", "olive", "lavender", "pink"):
        return in_family and s > 0.1  # muted or pale colours: any saturation above grey
    return in_family and s > 0.25


def spread(
    images: np.ndarray, captions: list[list[str]], classes: list[swaps.ColourClass]
) -> dict[str, float]:
    """Of the object pixels that belong to a named colour (soft membership >= 0.5 in CIELAB), the share
    within the flat tolerance (32 RGB) of the grounded colour, and their median RGB distance to it."""
    on_object = swaps.object_mask(images)
    lab = swaps.to_lab(images)
    within, dists = [], []
    for c in classes:
        names = set(c.words)
        which = [i for i, caps in enumerate(captions) if any(names & set(swaps.tokenize(t)) for t in caps)]
        if not which:
            continue
        rgb = np.asarray(c.rgb)
        member = swaps.membership(lab[which], swaps.to_lab(rgb)) >= 0.5
        pixels = images[which][member & on_object[which]].astype(np.float64)
        if len(pixels):
            d = np.linalg.norm(pixels - rgb, axis=1)
            within.append(float((d < 32).mean()))
            dists.append(float(np.median(d)))
    return {"within_flat_tolerance": float(np.mean(within)), "median_rgb_distance": float(np.mean(dists))}


def pair_stats(images: np.ndarray, swapped: np.ndarray, changed_caption: np.ndarray) -> dict[str, float]:
    moved = (np.abs(swapped.astype(int) - images.astype(int)).max(axis=3) > 8).mean(axis=(1, 2))  # [N]
    return {
        "changed_area": float(moved[changed_caption].mean()),
        "pairs_caption_changed_pixels_not": float((moved[changed_caption] < 0.01).mean()),
    }


def cub_boxes(extracted: Path, image_ids: list[str], size: int) -> np.ndarray:
    """[N, S, S] bool: the bird's bounding box, mapped through preprocessing's centre square crop + resize."""
    root = extracted / "CUB_200_2011"
    paths = dict(line.split(" ", 1) for line in (root / "images.txt").read_text().splitlines() if line)
    boxes = {
        k: [float(v) for v in rest.split()]
        for k, rest in (
            ln.split(" ", 1) for ln in (root / "bounding_boxes.txt").read_text().splitlines() if ln
        )
    }
    by_stem = {Path(p.strip()).stem: k for k, p in paths.items()}
    out = np.zeros((len(image_ids), size, size), bool)
    for n, stem in enumerate(image_ids):
        k = by_stem[stem]
        with Image.open(root / "images" / paths[k].strip()) as im:
            w, h = im.size
        side = min(w, h)
        left, top = (w - side) / 2, (h - side) / 2
        x, y, bw, bh = boxes[k]
        f = size / side
        x0, y0 = int(max(0, (x - left) * f)), int(max(0, (y - top) * f))
        x1, y1 = int(min(size, np.ceil((x + bw - left) * f))), int(min(size, np.ceil((y + bh - top) * f)))
        out[n, y0:y1, x0:x1] = True
    return out


def leak(images: np.ndarray, swapped: np.ndarray, box: np.ndarray) -> float:
    """Share of the recolouring (sum of |change|) outside the object's box."""
    change = np.abs(swapped.astype(float) - images.astype(float)).sum(axis=3)
    return float(change[~box].sum() / max(change.sum(), 1e-9))


def swatch(dataset: str, grounded: dict[str, list[swaps.ColourClass]], path: Path) -> None:
    """One row per colour word: its patch under each colour model, with the word and the RGB."""
    words = [w for w in swaps.COLOUR_WORDS if any(w in c.words for cs in grounded.values() for c in cs)]
    font = _font(12)
    row, patch, label = 18, 40, 70
    width = label + len(grounded) * (patch + 130) + 10
    canvas = Image.new("RGB", (width, 22 + row * len(words)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for m, model in enumerate(grounded):
        draw.text((label + m * (patch + 130), 3), model, fill=(0, 0, 0), font=font)
    for r, w in enumerate(words):
        y = 20 + r * row
        draw.text((4, y + 2), w, fill=(0, 0, 0), font=font)
        for m, classes in enumerate(grounded.values()):
            x = label + m * (patch + 130)
            c = next((c for c in classes if w in c.words), None)
            if c is None:
                draw.text((x, y + 2), "-", fill=(120, 120, 120), font=font)
                continue
            rgb = tuple(int(round(v)) for v in c.rgb)
            draw.rectangle((x, y, x + patch, y + row - 3), fill=rgb, outline=(0, 0, 0))
            mark = "" if plausible(w, c.rgb) else " (no)"
            draw.text(
                (x + patch + 4, y + 2), f"{rgb[0]},{rgb[1]},{rgb[2]}{mark}", fill=(60, 60, 60), font=font
            )
    canvas.save(path, optimize=True)


def grid(rows: list[tuple[np.ndarray, str, np.ndarray, str, np.ndarray]], path: Path, tile: int = 74) -> None:
    """source | flat target | shaded target | both swapped captions, one row per training image."""
    import textwrap

    font = _font(11)
    pad, head, text_w = 4, 16, 330
    xs = [pad + k * (tile + pad) for k in range(3)]
    canvas = Image.new(
        "RGB", (xs[-1] + tile + pad + text_w, head + len(rows) * (tile + pad)), (255, 255, 255)
    )
    draw = ImageDraw.Draw(canvas)
    for x, name in zip(
        [*xs, xs[-1] + tile + pad], ("source", "flat", "shaded", "swapped captions"), strict=True
    ):
        draw.text((x, 2), name, fill=(90, 90, 90), font=font)
    for r, (src, flat_caption, flat, shaded_caption, shaded) in enumerate(rows):
        y = head + r * (tile + pad)
        for x, t in zip(xs, (src, flat, shaded), strict=True):
            canvas.paste(Image.fromarray(t).resize((tile, tile), Image.Resampling.NEAREST), (x, y))
        lines = (
            textwrap.wrap(f"flat: {flat_caption}", 56)[:3]
            + textwrap.wrap(f"shaded: {shaded_caption}", 56)[:3]
        )
        for i, line in enumerate(lines):
            draw.text((xs[-1] + tile + 2 * pad, y + i * 12), line, fill=(0, 0, 0), font=font)
    canvas.quantize(256).save(path, optimize=True)  # a small PNG for docs/images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", required=True, help="a preprocessed real dataset (data/shards/<dataset>)")
    ap.add_argument("--extracted", default=None, help="CUB's extracted folder, for the bounding-box leak")
    ap.add_argument("--pairs", type=int, default=400, help="training images whose edit pairs are measured")
    ap.add_argument("--grid-rows", type=int, default=6)
    ap.add_argument("--images-out", default=None, help="folder for the swatch and grid PNGs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    dataset = read_manifest(args.shards)["dataset"]
    train = load_split(args.shards, "train")
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(len(train), min(args.pairs, len(train)), replace=False))
    images, captions = train.images[pick], [train.captions[i] for i in pick]
    box = (
        cub_boxes(Path(args.extracted), [train.image_ids[i] for i in pick], images.shape[1])
        if args.extracted
        else None
    )

    rows, grounded, results, swapped = [], {}, {}, {}
    for model in ("flat", "shaded"):
        t0 = time.perf_counter()
        classes = swaps.ground_colours(train.images, train.captions, colours=model)
        ground_s = time.perf_counter() - t0
        grounded[model] = classes
        t0 = time.perf_counter()
        pairs = swaps.make_swaps(images, captions, classes, variants=1, seed=args.seed, colours=model)
        pairs_s = time.perf_counter() - t0
        swapped[model] = pairs
        changed = np.array([c not in caps for c, caps in zip(pairs.captions[0], captions, strict=True)])
        words = {w: [round(v) for v in c.rgb] for c in classes for w in c.words}
        ok = sorted(w for c in classes for w in c.words if plausible(w, c.rgb))
        row: dict[str, Any] = {
            "model": model,
            "words": len(words),
            "classes": len(classes),
            "plausible": len(ok),
            **spread(images, captions, classes),
            **pair_stats(images, pairs.images[0], changed),
            "ground_s": ground_s,
            "pairs_per_s": len(images) / pairs_s,
        }
        if box is not None:
            row["outside_box"] = leak(images, pairs.images[0], box)
        rows.append(row)
        results[model] = {
            **row,
            "grounded": words,
            "classes_words": [list(c.words) for c in classes],
            "implausible": sorted(set(words) - set(ok)),
        }
    columns = ["model", "words", "classes", "plausible", "within_flat_tolerance", "median_rgb_distance"]
    columns += ["changed_area", "pairs_caption_changed_pixels_not", "ground_s", "pairs_per_s"]
    print_table(rows, columns + (["outside_box"] if box is not None else []))
    payload: dict[str, Any] = {
        "dataset": dataset,
        "train_images": len(train),
        "pairs": len(images),
        **results,
    }
    if box is not None:
        for name, mask in (("object_mask", swaps.object_mask), ("photo_mask", swaps.photo_mask)):
            on = np.asarray(mask(images)) > 0.5
            payload[f"{name}_vs_box"] = {
                "precision": float((on & box).sum() / max(on.sum(), 1)),
                "recall": float((on & box).sum() / max(box.sum(), 1)),
                "mask_share": float(on.mean()),
                "box_share": float(box.mean()),
            }
            print(f"{name} vs the bounding box:", json.dumps(payload[f"{name}_vs_box"]))
    path = write_json(f"swaps_real_{dataset}", payload, args.out)
    print(f"wrote {path}")
    if args.images_out:
        out = Path(args.images_out)
        out.mkdir(parents=True, exist_ok=True)
        swatch(dataset, grounded, out / f"swaps_{dataset}_swatch.png")
        flat, shaded = swapped["flat"], swapped["shaded"]
        edited = [i for i, c in enumerate(shaded.captions[0]) if c not in captions[i]]
        shown = [
            edited[k] for k in np.linspace(0, len(edited) - 1, args.grid_rows).round().astype(int)
        ]  # spread
        cells = [
            (images[i], flat.captions[0][i], flat.images[0][i], shaded.captions[0][i], shaded.images[0][i])
            for i in shown
        ]
        grid(cells, out / f"swaps_{dataset}_grid.png")
        print(f"wrote {out}/swaps_{dataset}_swatch.png, {out}/swaps_{dataset}_grid.png")


if __name__ == "__main__":
    main()
