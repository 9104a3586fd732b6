"""Stage `pretrain_text`: the visual-semantic text encoder φ(t) and the cached caption features.

Writes models/text/ (encoders + vocabulary + config), data/features/<dataset>/{train,test}.npz (φ(t) of
every caption, aligned with the shards), metrics/text.json, plots/pretrain_text.csv (+ .png).
"""

from __future__ import annotations

import json

from tqdm import tqdm

from pipeline.common import cli, section, shard_dir, stage_params
from pipeline.summary import write_metrics
from sisgan.config import DataConfig, TextConfig, TrackingConfig, resolve_device
from sisgan.data.shards import load_split
from sisgan.eval.plots import line_png, write_csv
from sisgan.text.model import save_features
from sisgan.tracking import stage_run
from sisgan.train.vse import pretrain

MODEL_DIR = "models/text"
FEATURES_DIR = "data/features"


@cli
def main() -> None:
    params = stage_params(__doc__.splitlines()[0])
    dataset, seed = params["dataset"], params.get("seed", 0)
    data, cfg, tracking = (
        section(params, DataConfig),
        section(params, TextConfig),
        section(params, TrackingConfig),
    )
    device = resolve_device(cfg.device)
    shards = shard_dir(data.root, dataset)
    train, test = load_split(shards, "train"), load_split(shards, "test")

    with stage_run("pretrain_text", tracking.experiment or f"sisgan-{dataset}", tracking.enabled) as run:
        run.log_params({"dataset": dataset, "seed": seed, "text": cfg.to_dict()})
        bar = tqdm(total=cfg.epochs, desc="pretrain_text", unit="epoch")

        def on_epoch(row: dict) -> None:
            run.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
            bar.set_postfix(
                loss=f"{row['loss']:.3f}", t2i_r1=f"{row['t2i_r1']:.3f}", i2t_r1=f"{row['i2t_r1']:.3f}"
            )
            bar.update()

        model, history = pretrain(cfg, train, test, seed=seed, device=device, on_epoch=on_epoch)
        bar.close()

        model.save(MODEL_DIR)
        for name, split in (("train", train), ("test", test)):
            feats, counts = model.caption_features(split.captions)
            save_features(f"{FEATURES_DIR}/{dataset}/{name}.npz", split.image_ids, feats, counts)

        final = history[-1]
        metrics = {
            "vocab_size": len(model.vocab),
            "test_images": len(test),
            **{k: v for k, v in final.items() if k not in ("epoch", "seconds")},
            "t2i_r1_over_chance": final["t2i_r1"] / final["chance_r1"],
            "t2i_r10_over_chance": final["t2i_r10"] / final["chance_r10"],
            "train_seconds": sum(r["seconds"] for r in history),
        }
        write_metrics("text", metrics)
        write_csv("plots/pretrain_text.csv", history)
        panels = {
            "ranking loss": ["loss"],
            "test recall (text->image), R-precision": ["t2i_r1", "t2i_r5", "t2i_r10", "r_precision"],
        }
        line_png("plots/pretrain_text.png", history, "epoch", panels, title=f"pretrain_text on {dataset}")
        # Per-epoch values are already logged with their step; add only what is new.
        totals = ("vocab_size", "t2i_r1_over_chance", "t2i_r10_over_chance", "train_seconds")
        run.log_metrics({k: metrics[k] for k in totals})
        run.log_artifacts(MODEL_DIR, "text_encoder")
        run.log_artifact("plots/pretrain_text.png")
    print(f"pretrain_text: {json.dumps({k: round(v, 4) for k, v in metrics.items()})}")


if __name__ == "__main__":
    main()
