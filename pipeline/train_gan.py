"""Stage `train_gan`: train SISGAN on the shards with the cached caption features.

Writes checkpoints/<dataset>/gan.pt (resumable; DVC persist), models/gan/generator.pt (the generator, its
config and a reference to models/text), metrics/train.json, plots/train_gan.csv + .png and the sample
grid plots/train_gan_samples.png. Runs without DVC/MLflow too (a GPU machine):

    python -m pipeline.train_gan --set gan.width=1.0 --set gan.epochs=600 --set tracking.enabled=false
    torchrun --nproc_per_node=8 -m pipeline.train_gan      # several GPUs, DistributedDataParallel
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from pipeline.common import cli, section, shard_dir, stage_params, write_json
from sisgan.config import DataConfig, GANConfig, TextConfig, TrackingConfig, resolve_device
from sisgan.data.images import center_crop
from sisgan.data.shards import SplitData, load_split
from sisgan.text.model import load_features
from sisgan.train.distributed import init_from_env, shutdown

MODEL_DIR = Path("models/gan")
TEXT_DIR = "models/text"
N_TARGETS = 4  # target captions (columns) in the sample grid


def sample_set(test: SplitData, feats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Fixed grid: k source images and N_TARGETS captions of other test images, spread over the split."""
    n = len(test)
    src = np.linspace(0, n - 1, k).round().astype(int)
    tgt = (np.linspace(0, n - 1, N_TARGETS + 2)[1:-1].round().astype(int) + n // (2 * k)) % n
    return test.images[src], feats[tgt, 0], [test.captions[i][0] for i in tgt]


def export_generator(trainer, dataset: str, load_size: int) -> None:  # noqa: ANN001
    """The inference artefact: generator weights + everything needed to rebuild and feed it."""
    from sisgan.train.checkpoint import save

    save(
        MODEL_DIR / "generator.pt",
        {
            "generator": trainer.g.state_dict(),
            "gan_config": trainer.cfg.to_dict(),
            "text_dim": int(trainer.data.features.shape[-1]),
            "load_size": load_size,
            "dataset": dataset,
            "text_model": TEXT_DIR,
            "epochs_trained": trainer.epoch,
        },
    )


@cli
def main() -> None:
    params = stage_params(__doc__.splitlines()[0])
    dataset, seed = params["dataset"], params.get("seed", 0)
    data_cfg, cfg = section(params, DataConfig), section(params, GANConfig)
    section(params, TextConfig)  # validated here too: train_gan reads models/text for the VSE and swap losses
    tracking = section(params, TrackingConfig)
    dist, device = init_from_env(resolve_device(cfg.device))
    try:
        _train(params, dataset, seed, data_cfg, cfg, tracking, dist, device)
    finally:
        shutdown(dist)


def _train(params, dataset, seed, data_cfg, cfg, tracking, dist, device) -> None:  # noqa: ANN001
    from tqdm import tqdm

    from sisgan.eval.grids import manipulation_grid
    from sisgan.eval.plots import line_png, write_csv
    from sisgan.tracking import Tracker, stage_run
    from sisgan.train.gan import LOSS_KEYS, GanData, Hooks, Trainer, fit

    shards = shard_dir(data_cfg.root, dataset)
    train, test = load_split(shards, "train"), load_split(shards, "test")
    feats, counts = load_features(f"data/features/{dataset}/train.npz", train.image_ids)
    test_feats, _ = load_features(f"data/features/{dataset}/test.npz", test.image_ids)
    sources, targets, captions = sample_set(test, test_feats, cfg.samples)
    data = GanData(train.images, feats, counts, sources, targets, captions)
    grid_sources = center_crop(sources, cfg.image_size)  # what the generator sees at sampling time
    log = print if dist.is_main else (lambda msg: None)
    if cfg.vse_weight or cfg.swap_weight:
        from sisgan.text.model import TextModel

        text_model = TextModel.load(TEXT_DIR)
    if cfg.vse_weight:
        data.vse_encoder, data.vse_size = text_model.image_encoder, text_model.config.image_size
    if cfg.swap_weight:
        from sisgan.train.swaps import build_swaps

        data.swap_images, data.swap_features = build_swaps(
            train.images, train.captions, text_model, cfg.swap_variants, seed, log, colours=cfg.swap_colours
        )
    trainer = Trainer(cfg, data, seed=seed, device=device, dist=dist)
    ckpt = Path(f"checkpoints/{dataset}/gan.pt")
    trainer.try_resume(ckpt, log)

    run_ctx = stage_run(
        "train_gan", tracking.experiment or f"sisgan-{dataset}", tracking.enabled and dist.is_main
    )
    with run_ctx as run:
        run.log_params(
            {
                "dataset": dataset,
                "seed": seed,
                "gan": cfg.to_dict(),
                "processes": dist.world_size,
                "device": device,
                "resumed_from_epoch": trainer.epoch,
            }
        )
        bar = tqdm(
            total=cfg.epochs, initial=trainer.epoch, desc="train_gan", unit="epoch", disable=not dist.is_main
        )

        def on_epoch(row: dict, grid: np.ndarray | None) -> None:
            run.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
            write_csv("plots/train_gan.csv", trainer.history)
            if grid is not None:
                image = manipulation_grid(grid_sources, grid, captions)
                Path("plots").mkdir(exist_ok=True)
                image.save("plots/train_gan_samples.png")
                if isinstance(run, Tracker) and run.run_id:
                    run.log_artifact("plots/train_gan_samples.png", f"samples/epoch_{row['epoch']:04d}")
            bar.set_postfix(
                d=f"{row['d_loss']:.3f}",
                g=f"{row['g_adv']:.3f}",
                kl=f"{row['kl']:.3f}",
                **({"swap": f"{row['swap']:.4f}"} if cfg.swap_weight else {}),
                ips=f"{row['images_per_s']:.0f}",
            )
            bar.update()

        history = fit(trainer, ckpt, Hooks(on_epoch=on_epoch, log=log))
        bar.close()
        if not dist.is_main:
            return
        # The final grid, also when the run only resumed a finished checkpoint (no epoch ran).
        manipulation_grid(grid_sources, trainer.sample_grid(), captions).save("plots/train_gan_samples.png")
        export_generator(trainer, dataset, data_cfg.load_size)
        panels = {
            "discriminator": ["d_real", "d_mismatch", "d_fake"],
            "generator": ["g_adv", "kl"]
            + (["recon"] if cfg.recon_weight else [])
            + (["vse"] if cfg.vse_weight else [])
            + (["cycle"] if cfg.cycle_weight else [])
            + (["swap"] if cfg.swap_weight else []),
        }
        write_csv("plots/train_gan.csv", history)
        line_png("plots/train_gan.png", history, "epoch", panels, title=f"train_gan on {dataset}")
        last = history[-1]
        metrics = {
            "epochs": trainer.epoch,
            **{k: last[k] for k in ("d_loss", "g_loss", *LOSS_KEYS)},
            "images_per_s": float(np.median([r["images_per_s"] for r in history])),
            "train_seconds": float(sum(r["seconds"] for r in history)),
            "processes": dist.world_size,
        }
        write_json("metrics/train.json", metrics)
        # Per-epoch losses are already logged with their step; add only the run's totals.
        run.log_metrics(
            {
                "epochs_total": trainer.epoch,
                "train_seconds": metrics["train_seconds"],
                "median_images_per_s": metrics["images_per_s"],
            }
        )
        run.log_artifact("plots/train_gan.png")
        run.log_artifact(str(MODEL_DIR / "generator.pt"), "generator")
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
    print(f"train_gan: {json.dumps(shown)}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
