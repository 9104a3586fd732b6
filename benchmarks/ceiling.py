"""Supervised ceiling on synth-birds: how far exact edit targets take this generator in the same budget.

    python -m benchmarks.ceiling --epochs 21 --eval-every 7 --weight 100 --lr 1e-3 --kl 0

Every training image gets one target caption (another image's) and its exact counterfactual, rendered from
the image's scene. On top of the GAN losses of params.yaml, the mismatching half of each batch is trained
towards those counterfactuals with an L2 pixel loss (the `gan.swap_weight` path with exact targets); the VSE
loss is off. No training signal that needs no ground truth can give G more than this, so the table bounds
what any of them can reach in the same number of steps.
Run `dvc repro pretrain_text` first; the table is also written as JSON (benchmarks/results/ceiling.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
import yaml

from benchmarks.common import print_table, write_json
from pipeline.common import load_params, section
from sisgan.config import DataConfig, EvalConfig, GANConfig
from sisgan.data import synth
from sisgan.data.shards import SplitData, load_split
from sisgan.errors import ConfigError
from sisgan.eval.evaluate import build_context, counterfactual_metrics, run_generator
from sisgan.text.model import TextModel
from sisgan.train.gan import GanData, Trainer
from sisgan.train.pairs import load_pairs
from sisgan.train.run import GanFiles, add_colour_words, load_gan_data


def counterfactual_targets(
    split: SplitData, counts: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each image i: (target image j != i [N], caption index c [N], the exact edit of i by caption (j, c)
    uint8 [N, L, L, 3] at the stored size)."""
    if split.scenes is None or split.caption_attrs is None:
        raise ConfigError("the ceiling needs exact edits: run it on synth-birds (dataset: synth-birds).")
    n, size = len(split), split.images.shape[1]
    rng = np.random.default_rng(seed)
    target = (np.arange(n) + rng.integers(1, n, n)) % n
    caption = (rng.random(n) * counts[target]).astype(np.int64)
    edits = np.stack(
        [
            synth.render_counterfactual(
                synth.Scene.from_record(split.scenes[i]),
                split.caption_attrs[target[i]][caption[i]],  # unnamed parts are None: kept
                size,
            )
            for i in range(n)
        ]
    )
    return target, caption, edits


def supervised_data(data: GanData, train: SplitData, seed: int) -> GanData:
    """`data` whose one "swap" set is the exact edits: the mismatching half of every batch then trains
    towards the counterfactual of its image under another image's caption, through the same code path as
    `gan.swap_weight` (sisgan.train.swaps), with exact targets in place of colour swaps."""
    target, caption, edits = counterfactual_targets(train, data.counts, seed)
    tokens = None if data.tokens is None else data.tokens[target, caption][None]  # [1, N, L]
    return dataclasses.replace(
        data,
        swap_images=edits[None],
        swap_features=data.features[target, caption][None],
        swap_tokens=tokens,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--eval-every", type=int, default=7)
    ap.add_argument("--weight", type=float, default=100.0, help="weight of the L2 pixel loss")
    ap.add_argument("--lr", type=float, default=None, help="default: gan.lr")
    ap.add_argument("--kl", type=float, default=None, help="default: gan.kl_weight")
    ap.add_argument("--max-images", type=int, default=300, help="test images to evaluate on (0 = all)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="other gan.* setting")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    params = load_params()
    dataset, seed = params["dataset"], params.get("seed", 0)
    gan = section(params, GANConfig).to_dict() | {"epochs": args.epochs, "swap_weight": args.weight}
    gan |= {k: v for k, v in (("lr", args.lr), ("kl_weight", args.kl)) if v is not None}
    gan |= {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    cfg = GANConfig.from_dict(gan)
    files = GanFiles(dataset, root=section(params, DataConfig).root)
    train, test = load_split(files.shards, "train"), load_split(files.shards, "test")
    # The targets come from the scenes; gan.ground_weight and gan.part_weight read the colour classes of the
    # edit_pairs stage.
    without_pairs = GANConfig.from_dict(gan | {"swap_weight": 0.0, "ground_weight": 0.0, "part_weight": 0.0})
    data = supervised_data(load_gan_data(files, without_pairs), train, seed)
    text = TextModel.load(files.text_model)
    if cfg.reads_colour_classes:
        pairs = load_pairs(files.pairs, train.image_ids, cfg.swap_variants, cfg.swap_colours)
        add_colour_words(data, pairs.colours, text.vocab.index)
    trainer = Trainer(cfg, data, seed=seed)
    eval_cfg = EvalConfig(max_images=args.max_images)
    ctx = build_context(test, text, eval_cfg, cfg.image_size, 0, torch.device("cpu"))
    rows, t0 = [], time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        row = trainer.run_epoch(epoch)
        if epoch % args.eval_every and epoch != args.epochs:
            continue
        cf = counterfactual_metrics(ctx, run_generator(ctx, trainer.g))
        rows.append(
            {
                "epoch": epoch,
                "train_s": time.perf_counter() - t0,
                "pixel_loss": row["swap"],
                "attr_acc": cf["attribute_accuracy"],
                "keep_acc": cf["keep_accuracy"],
                "bg_psnr": cf["background_psnr"],
                **{p: cf[f"attribute_accuracy_{p}"] for p in synth.PARTS},
            }
        )
        print_table(rows, list(rows[0]))
    setup = {"loss": "l2", "weight": args.weight, "gan": gan}
    write_json("ceiling", {"dataset": dataset, "setup": setup, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
