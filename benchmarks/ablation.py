"""Ablation on synth-birds: the paper's losses vs the improvements, scored against the ground truth.

    python -m benchmarks.ablation --epochs 10 --variant paper --variant recon=10,vse=1,out=mask

Variant keys: recon, vse, cyc, swap (loss weights), sv (colour-swap sets), lr, kl, batch,
out (direct | residual | mask | layers | regions), rc (recolour: 1), cond (concat | film).

Trains each variant from the same initialisation on the current shards and cached caption features
(run `dvc repro pretrain_text` first), evaluates it with the `evaluate` stage's metrics and prints a
table (JSON in benchmarks/results/ablation.json). Other gan.* settings come from params.yaml.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import print_table, write_json
from pipeline.common import load_params, section, shard_dir
from sisgan.config import DataConfig, EvalConfig, GANConfig
from sisgan.data.shards import load_split
from sisgan.eval.evaluate import build_context, evaluate_rows, run_generator
from sisgan.text.model import TextModel, load_features
from sisgan.train.gan import GanData, Trainer, fit
from sisgan.train.swaps import build_swaps

KEYS = {
    "recon": "recon_weight",
    "vse": "vse_weight",
    "lr": "lr",
    "kl": "kl_weight",
    "batch": "batch_size",
    "out": "output",
    "cyc": "cycle_weight",
    "rc": "recolour",
    "cond": "conditioning",
    "swap": "swap_weight",
    "sv": "swap_variants",
}
# How a variant value is read; every other key is a float weight or rate.
PARSE = {"batch": int, "sv": int, "out": str, "cond": str, "rc": lambda v: v == "1"}


def parse_variant(text: str) -> dict:
    if text == "paper":
        return {}
    out = {}
    for part in text.split(","):
        k, v = part.split("=")
        out[KEYS[k]] = PARSE.get(k, float)(v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--max-images", type=int, default=0, help="test images to evaluate on (0 = all)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    params = load_params()
    dataset = params["dataset"]
    base = section(params, GANConfig).to_dict() | {
        "epochs": args.epochs,
        "recon_weight": 0.0,
        "vse_weight": 0.0,
        "cycle_weight": 0.0,
        "swap_weight": 0.0,
        "output": "direct",
    }
    shards = shard_dir(section(params, DataConfig).root, dataset)
    train, test = load_split(shards, "train"), load_split(shards, "test")
    feats, counts = load_features(f"data/features/{dataset}/train.npz", train.image_ids)
    text = TextModel.load("models/text")
    rows, swaps = [], {}
    for name in args.variant or ["paper"]:
        cfg = GANConfig.from_dict(base | parse_variant(name))
        key = (cfg.swap_variants, cfg.swap_colours)
        if cfg.swap_weight and key not in swaps:
            swaps[key] = build_swaps(
                train.images,
                train.captions,
                text,
                cfg.swap_variants,
                params.get("seed", 0),
                colours=cfg.swap_colours,
            )
        swap_images, swap_features = swaps[key] if cfg.swap_weight else (None, None)
        data = GanData(
            train.images,
            feats,
            counts,
            test.images[:1],
            feats[:1, 0],
            ["-"],
            vse_encoder=text.image_encoder,
            vse_size=text.config.image_size,
            swap_images=swap_images,
            swap_features=swap_features,
        )
        t0 = time.perf_counter()
        trainer = Trainer(cfg, data, seed=params.get("seed", 0))
        fit(trainer, "/tmp/sisgan-ablation.pt")
        seconds = time.perf_counter() - t0
        ctx = build_context(
            test, text, EvalConfig(max_images=args.max_images), cfg.image_size, 0, torch.device("cpu")
        )
        res = evaluate_rows(ctx, run_generator(ctx, trainer.g), ("counterfactual", "manipulative_precision"))
        cf = res["model"]["counterfactual"]
        rows.append(
            {
                "variant": name,
                "epochs": args.epochs,
                "train_s": seconds,
                "attr_acc": cf["attribute_accuracy"],
                "keep_acc": cf["keep_accuracy"],
                "edit_score": cf["edit_score"],
                "bg_psnr": cf["background_psnr"],
                "cf_psnr": cf["cf_psnr"],
                "mp": res["model"]["manipulative_precision"]["mp"],
            }
        )
        print_table(rows, list(rows[0]))
    ident = res["identity"]["counterfactual"]
    rows.append(
        {
            "variant": "identity (reference)",
            "attr_acc": ident["attribute_accuracy"],
            "keep_acc": ident["keep_accuracy"],
            "edit_score": ident["edit_score"],
            "bg_psnr": ident["background_psnr"],
            "cf_psnr": ident["cf_psnr"],
        }
    )
    print_table(rows, list(rows[0]))
    write_json("ablation", {"dataset": dataset, "gan": base, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
