"""The colour-swap edit pairs as a file: what the `edit_pairs` stage writes and `train_gan` reads.

Building the pairs (sisgan.train.swaps) takes tens of seconds, and they depend only on the training split,
the frozen text encoder, the seed and two params (gan.swap_weight, gan.swap_variants); as a DVC output they
are built once, not on every training run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from sisgan.errors import DataError
from sisgan.io import atomic_write

PAIRS_FILE = "pairs.npz"


@dataclasses.dataclass
class EditPairs:
    """K edit pairs per training image, aligned with the shards' train split by image_ids.

    images [K, N, S, S, 3] uint8 (recoloured sources), features [K, N, T] float32 (φ of the swapped
    captions), captions [K][N]. K = 0 when gan.swap_weight is 0 (no pairs are built).
    """

    image_ids: list[str]
    images: np.ndarray
    features: np.ndarray
    captions: list[list[str]]
    colours: list[dict]  # the grounded colour classes: {"words": [...], "rgb": [r, g, b]}
    colour_model: str = "flat"  # gan.swap_colours they were built with

    @property
    def variants(self) -> int:
        return len(self.images)


def build_pairs(
    image_ids: Sequence[str],
    images: np.ndarray,
    captions: Sequence[Sequence[str]],
    text_model,  # noqa: ANN001  (sisgan.text.model.TextModel; imported lazily: torch-heavy)
    variants: int,
    seed: int,
    colours: str = "flat",
    log: Callable[[str], None] = print,
) -> EditPairs:
    """`variants` colour-swap pairs per image (variants = 0: an empty set); colours: gan.swap_colours."""
    from sisgan.train.swaps import build_swaps

    if variants == 0:
        s = images.shape[1]
        empty = np.zeros((0, len(images), s, s, 3), np.uint8)
        return EditPairs(list(image_ids), empty, np.zeros((0, len(images), 0), np.float32), [], [], colours)
    swaps, features, found = build_swaps(images, captions, text_model, variants, seed, log, colours)
    classes = [{"words": list(c.words), "rgb": list(c.rgb)} for c in found]
    return EditPairs(list(image_ids), swaps.images, features, swaps.captions, classes, colours)


def save_pairs(path: str | Path, pairs: EditPairs) -> None:
    import json

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would add ".npz" to a temporary name
            np.savez(
                fh,
                image_ids=np.asarray(pairs.image_ids),
                images=pairs.images,
                features=pairs.features,
                captions=np.asarray(pairs.captions, dtype=str).reshape(pairs.variants, len(pairs.image_ids)),
                colours=np.asarray(json.dumps(pairs.colours)),
                colour_model=np.asarray(pairs.colour_model),
            )

    atomic_write(path, write)


def load_pairs(
    path: str | Path, image_ids: Sequence[str], variants: int, colour_model: str = "flat"
) -> EditPairs:
    """The pairs file, checked against the train split and the settings asked for."""
    import json

    path = Path(path)
    if not path.is_file():
        raise DataError(f"edit pairs {path} not found; run `dvc repro edit_pairs` first.")
    with np.load(path) as z:
        ids = z["image_ids"].tolist()
        classes, model = json.loads(str(z["colours"])), str(z["colour_model"])
        pairs = EditPairs(ids, z["images"], z["features"], z["captions"].tolist(), classes, model)
    if ids != list(image_ids):
        raise DataError(f"{path} is not aligned with the current shards; rerun `dvc repro edit_pairs`.")
    if pairs.variants != variants:
        raise DataError(
            f"{path} holds {pairs.variants} pair sets, gan.swap_variants asks for {variants}; "
            "rerun `dvc repro edit_pairs`."
        )
    if pairs.variants and pairs.colour_model != colour_model:
        raise DataError(
            f"{path} was built with gan.swap_colours = {pairs.colour_model}, not {colour_model}; "
            "rerun `dvc repro edit_pairs`."
        )
    return pairs


def pairs_grid(images: np.ndarray, pairs: EditPairs, path: str | Path, rows: int = 8) -> None:
    """Training images beside their first pair set's targets, with the swapped captions, as a PNG."""
    from sisgan.eval.grids import caption_rows
    from sisgan.io import save_image

    pick = np.linspace(0, len(images) - 1, min(rows, len(images))).round().astype(int)
    if pairs.variants:
        targets, captions = pairs.images[0][pick], [pairs.captions[0][i] for i in pick]
    else:
        targets, captions = images[pick], ["(no edit pairs: gan.swap_weight is 0)"] * len(pick)
    save_image(path, caption_rows(images[pick], captions, targets))
