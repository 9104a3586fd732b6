"""Ablation on synth-birds: the paper's recipe vs the embedded default and variants of either, scored
against the ground truth.

    python -m benchmarks.ablation --epochs 10 --variant paper --variant default --variant default,swap=0

A variant is a base, `paper` (the paper profile: sisgan.config.PAPER_RECIPE) or `default` (params.yaml's
gan section), then comma-separated changes: recon, swap (loss weights), sv (colour-swap sets), sc (flat |
shaded: the pairs' colour model), lr, kl,
batch, out (direct | mask | paint), cond (concat | film), att (word attention: 0 | 1),
ep (epochs), size (image size).

Trains each variant from the same initialisation on the current shards, cached caption features and edit
pairs (run `dvc repro edit_pairs` first; pairs for another `sv` are built here), evaluates it with the
`evaluate` stage's metrics and prints a table (JSON in benchmarks/results/ablation.json).
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import print_table, write_json
from pipeline.common import load_params, section
from sisgan.config import DataConfig, EvalConfig, GANConfig, apply_profile
from sisgan.data.shards import load_split
from sisgan.errors import DataError
from sisgan.eval.evaluate import build_context, evaluate_rows, run_generator
from sisgan.text.model import TextModel
from sisgan.train.gan import Trainer, fit
from sisgan.train.pairs import EditPairs, build_pairs, load_pairs
from sisgan.train.run import GanFiles, load_gan_data

KEYS = {
    "recon": "recon_weight",
    "swap": "swap_weight",
    "sv": "swap_variants",
    "sc": "swap_colours",
    "lr": "lr",
    "kl": "kl_weight",
    "batch": "batch_size",
    "out": "output",
    "cond": "conditioning",
    "att": "attention",
    "ep": "epochs",
    "size": "image_size",
}
# How a variant value is read; every other key is a float weight or rate.
PARSE = {"batch": int, "ep": int, "size": int, "sv": int, "sc": str, "out": str, "cond": str}
PARSE["att"] = lambda v: v == "1"


def parse_variant(text: str, bases: dict[str, dict]) -> dict:
    """'default,swap=0,lr=2e-4' -> the gan section of the base with those changes."""
    base, *changes = text.split(",")
    if base not in bases:
        raise SystemExit(f"variant {text!r}: start with one of {sorted(bases)}, e.g. 'default,swap=0'.")
    out = dict(bases[base])
    for part in changes:
        k, v = part.split("=")
        out[KEYS[k]] = PARSE.get(k, float)(v)
    return out


def pairs_for(files: GanFiles, text: TextModel, cfg: GANConfig, seed: int) -> EditPairs:
    """The edit_pairs stage's pairs when they were built with cfg's settings, else built here."""
    train = load_split(files.shards, "train")
    try:
        return load_pairs(files.pairs, train.image_ids, cfg.swap_variants, cfg.swap_colours)
    except DataError:
        args = (train.image_ids, train.images, train.captions, text, cfg.swap_variants, seed)
        return build_pairs(*args, cfg.swap_colours)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--max-images", type=int, default=0, help="test images to evaluate on (0 = all)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    params = load_params()
    dataset, seed = params["dataset"], params.get("seed", 0)
    bases = {"default": params["gan"], "paper": apply_profile(params, "paper")["gan"]}
    files = GanFiles(dataset, root=section(params, DataConfig).root)
    text = TextModel.load(files.text_model)
    test = load_split(files.shards, "test")
    rows, pairs = [], {}
    for name in args.variant or ["paper"]:
        runs = {k: v | {"epochs": args.epochs} for k, v in bases.items()}  # `ep=` may change it
        cfg = GANConfig.from_dict(parse_variant(name, runs))
        key = (cfg.swap_variants, cfg.swap_colours)
        if cfg.swap_weight and key not in pairs:
            pairs[key] = pairs_for(files, text, cfg, seed)
        data = load_gan_data(files, cfg, pairs.get(key) if cfg.swap_weight else None)
        t0 = time.perf_counter()
        trainer = Trainer(cfg, data, seed=seed)
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
                "epochs": cfg.epochs,
                "train_s": seconds,
                "attr_acc": cf["attribute_accuracy"],
                "keep_acc": cf["keep_accuracy"],
                "edit_score": cf["edit_score"],
                "bg_psnr": cf["background_psnr"],
                "cf_psnr": cf["cf_psnr"],
                "mp": res["model"]["manipulative_precision"]["mp"],
                **{k.rsplit("_", 1)[1]: v for k, v in cf.items() if k.startswith("attribute_accuracy_")},
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
    write_json("ablation", {"dataset": dataset, "bases": bases, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
