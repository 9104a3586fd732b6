"""Stage `edit_pairs`: the colour-swap edit pairs that `train_gan` learns the edit from (gan.swap_weight).

Writes data/pairs/<dataset>/pairs.npz (K recoloured copies of every training image and the φ(t) of their
colour-swapped captions; empty when gan.swap_weight is 0) and plots/edit_pairs.png (training images beside
their targets, with the swapped captions).
"""

from __future__ import annotations

from pipeline.common import cli, section, shard_dir, stage_params
from sisgan.config import DataConfig, GANConfig
from sisgan.data.shards import load_split
from sisgan.text.model import TextModel
from sisgan.train.pairs import PAIRS_FILE, build_pairs, pairs_grid, save_pairs

TEXT_DIR = "models/text"


@cli
def main() -> None:
    params = stage_params(__doc__.splitlines()[0])
    dataset, seed = params["dataset"], params.get("seed", 0)
    data, cfg = section(params, DataConfig), section(params, GANConfig)
    train = load_split(shard_dir(data.root, dataset), "train")
    variants = cfg.swap_variants if cfg.swap_weight else 0
    pairs = build_pairs(
        train.image_ids,
        train.images,
        train.captions,
        TextModel.load(TEXT_DIR),
        variants,
        seed,
        cfg.swap_colours,
    )
    save_pairs(f"data/pairs/{dataset}/{PAIRS_FILE}", pairs)
    pairs_grid(train.images, pairs, "plots/edit_pairs.png")
    print(f"edit_pairs: {pairs.variants} x {len(train)} pairs, colours {[c['words'] for c in pairs.colours]}")


if __name__ == "__main__":
    main()
