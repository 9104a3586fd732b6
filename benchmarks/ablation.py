"""Ablation: the paper's recipe vs the embedded default and variants of either, scored against the ground
truth on synth-birds and with the real-photo metrics on flowers/CUB.

    python -m benchmarks.ablation --epochs 10 --variant paper --variant default --variant default,swap=0

A variant is a base, `paper` (the paper profile: sisgan.config.PAPER_RECIPE) or `default` (params.yaml's
gan section), then comma-separated changes: recon, swap, ground, part (loss weights), sv (colour-swap sets),
sc (flat | shaded: the pairs' colour model), lr, lrd (lr decay every N epochs), lrg (its factor), kl,
batch, out (direct | mask | paint), cond (concat | film), att (word attention: 0 | 1),
ep (epochs), size (image size). `--eval-at 10,14,20` also scores each variant after those epochs (a curve from
one run: the lr schedule does not depend on the number of epochs).

Trains each variant from the same initialisation on the current shards, cached caption features and edit
pairs (run `dvc repro edit_pairs` first; pairs for another `sv` are built here), evaluates it with the
`evaluate` stage's metrics and prints a table (JSON in benchmarks/results/ablation.json). On a real dataset
(params.yaml's `dataset`) the columns are the target caption's mean rank among 100 and R-precision, the named
colours' rise and dominance, SSIM and background L1 against the source, and MP, with the reference rows
identity, real (the source with its own caption) and tint.
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
from sisgan.train.gan import Trainer
from sisgan.train.pairs import EditPairs, build_pairs, load_pairs
from sisgan.train.run import GanFiles, load_gan_data

KEYS = {
    "recon": "recon_weight",
    "swap": "swap_weight",
    "ground": "ground_weight",
    "part": "part_weight",
    "sv": "swap_variants",
    "sc": "swap_colours",
    "lr": "lr",
    "lrd": "lr_decay_every",
    "lrg": "lr_decay",
    "kl": "kl_weight",
    "batch": "batch_size",
    "out": "output",
    "cond": "conditioning",
    "att": "attention",
    "ep": "epochs",
    "size": "image_size",
}
# How a variant value is read; every other key is a float weight or rate.
PARSE = {"batch": int, "lrd": int, "ep": int, "size": int, "sv": int, "sc": str, "out": str, "cond": str}
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


SYNTH_METRICS = ("counterfactual", "manipulative_precision")
REAL_METRICS = ("text_following", "colour_following", "keep", "manipulative_precision")


def synth_columns(row: dict) -> dict:
    """A synth-birds row's table columns (the counterfactual metrics and MP)."""
    cf = row["counterfactual"]
    out = {
        "attr_acc": cf["attribute_accuracy"],
        "keep_acc": cf["keep_accuracy"],
        "edit_score": cf["edit_score"],
        "bg_psnr": cf["background_psnr"],
        "cf_psnr": cf["cf_psnr"],
        "mp": row["manipulative_precision"]["mp"],
    }
    parts = {k.rsplit("_", 1)[1]: v for k, v in cf.items() if k.startswith("attribute_accuracy_")}
    return out | parts | {f"keep_{p}": cf[f"keep_accuracy_{p}"] for p in parts if f"keep_accuracy_{p}" in cf}


def real_columns(row: dict) -> dict:
    """A real-photo row's table columns (left out where a reference row has no such value)."""
    tf, colour, kept = row.get("text_following", {}), row.get("colour_following", {}), row.get("keep", {})
    columns = {
        "mean_rank": tf.get("mean_rank"),
        "r_prec": tf.get("r_precision"),
        "colour_rise": colour.get("colour_rise"),
        "colour_dom": colour.get("colour_dominant"),
        "ssim": kept.get("ssim"),
        "bg_l1": kept.get("background_l1"),
        "mp": row.get("manipulative_precision", {}).get("mp"),
    }
    return {k: v for k, v in columns.items() if v is not None}


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
    ap.add_argument("--eval-at", default="", help="comma-separated epochs to score besides the last")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    eval_at = {int(e) for e in args.eval_at.split(",") if e}
    params = load_params()
    dataset, seed = params["dataset"], params.get("seed", 0)
    bases = {"default": params["gan"], "paper": apply_profile(params, "paper")["gan"]}
    files = GanFiles(dataset, root=section(params, DataConfig).root)
    text = TextModel.load(files.text_model)
    test = load_split(files.shards, "test")
    rows, pairs, histories = [], {}, {}
    for name in args.variant or ["paper"]:
        runs = {k: v | {"epochs": args.epochs} for k, v in bases.items()}  # `ep=` may change it
        cfg = GANConfig.from_dict(parse_variant(name, runs))
        key = (cfg.swap_variants, cfg.swap_colours)
        if cfg.swap_weight and key not in pairs:
            pairs[key] = pairs_for(files, text, cfg, seed)
        data = load_gan_data(files, cfg, pairs.get(key) if cfg.swap_weight else None)
        trainer = Trainer(cfg, data, seed=seed)
        ctx = build_context(
            test, text, EvalConfig(max_images=args.max_images), cfg.image_size, 0, torch.device("cpu")
        )
        metrics, columns = (SYNTH_METRICS, synth_columns) if ctx.synthetic else (REAL_METRICS, real_columns)
        seconds = 0.0
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            trainer.run_epoch(epoch)
            seconds += time.perf_counter() - t0
            if epoch in eval_at or epoch == cfg.epochs:
                res = evaluate_rows(ctx, run_generator(ctx, trainer.g), metrics)
                rows.append({"variant": name, "epochs": epoch, "train_s": seconds, **columns(res["model"])})
                print_table(rows, list(rows[0]))
        histories[name] = trainer.history
    references = ("identity",) if ctx.synthetic else ("identity", "real", "tint", "described")
    rows += [{"variant": f"{r} (reference)", **columns(res[r])} for r in references]
    print_table(rows, list(rows[0]))
    write_json(
        "ablation", {"dataset": dataset, "bases": bases, "rows": rows, "histories": histories}, args.out
    )


if __name__ == "__main__":
    main()
