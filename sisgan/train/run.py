"""The `train_gan` stage as one function: files in, a trained generator, metrics and plots out.

`load_gan_data` assembles what training reads (train split, cached φ(t), edit pairs, the sample grid's
fixed sources and captions); the stage and the benchmarks share it. `train_and_export` trains (resuming a
compatible checkpoint), logs to a tracker, and writes the stage's outputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sisgan.config import GANConfig
from sisgan.data.images import center_crop
from sisgan.data.shards import SplitData, load_split
from sisgan.tracking import Tracker
from sisgan.train.distributed import DistInfo
from sisgan.train.gan import LOSS_KEYS, GanData, Hooks, Trainer, fit
from sisgan.train.pairs import PAIRS_FILE, EditPairs, load_pairs

if TYPE_CHECKING:
    from sisgan.text.model import TextModel

N_TARGETS = 4  # target captions (columns) in the sample grid


@dataclasses.dataclass(frozen=True)
class GanFiles:
    """Where the train_gan stage reads and writes, relative to the project root."""

    dataset: str
    root: str | Path = "data"  # data.root
    text_model: Path = Path("models/text")
    model_dir: Path = Path("models/gan")
    plots: Path = Path("plots")

    @property
    def shards(self) -> Path:
        return Path(self.root) / "shards" / self.dataset

    @property
    def features(self) -> Path:
        return Path("data/features") / self.dataset

    @property
    def pairs(self) -> Path:
        return Path("data/pairs") / self.dataset / PAIRS_FILE

    @property
    def checkpoint(self) -> Path:
        return Path("checkpoints") / self.dataset / "gan.pt"


def sample_set(test: SplitData, feats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Fixed grid: k source images and N_TARGETS captions of other test images, spread over the split."""
    n = len(test)
    src = np.linspace(0, n - 1, k).round().astype(int)
    tgt = (np.linspace(0, n - 1, N_TARGETS + 2)[1:-1].round().astype(int) + n // (2 * k)) % n
    return test.images[src], feats[tgt, 0], [test.captions[i][0] for i in tgt]


def load_gan_data(files: GanFiles, cfg: GANConfig, pairs: EditPairs | None = None) -> GanData:
    """The train split with its cached φ(t), the edit pairs (when gan.swap_weight > 0: `pairs`, else the
    edit_pairs stage's file) and the sample grid."""
    from sisgan.text.model import TextModel, load_features

    train, test = load_split(files.shards, "train"), load_split(files.shards, "test")
    feats, counts = load_features(files.features / "train.npz", train.image_ids)
    test_feats, _ = load_features(files.features / "test.npz", test.image_ids)
    data = GanData(train.images, feats, counts, *sample_set(test, test_feats, cfg.samples))
    if cfg.swap_weight:
        pairs = pairs or load_pairs(files.pairs, train.image_ids, cfg.swap_variants, cfg.swap_colours)
        data.swap_images, data.swap_features = pairs.images, pairs.features
    if cfg.reads_words or cfg.reads_colour_classes:
        text = TextModel.load(files.text_model)
    if cfg.reads_words:
        add_words(data, train.captions, pairs.captions if cfg.swap_weight and pairs else [], text)
    if cfg.reads_colour_classes and pairs:
        add_colour_words(data, pairs.colours, text.vocab.index)
    return data


def add_colour_words(data: GanData, classes: Sequence[dict], index: Mapping[str, int]) -> None:
    """What gan.ground_weight and gan.part_weight read: the swap pairs' colour classes ({"words", "rgb"}) as
    rgb [K, 3] and the class of each token id of the text encoder's vocabulary (`index`: word -> id; -1 for
    the rest)."""
    word_class = np.full(data.vocab_size, -1, np.int64)
    for k, c in enumerate(classes):
        for w in c["words"]:
            if w in index:
                word_class[index[w]] = k
    data.colour_rgb = np.asarray([c["rgb"] for c in classes], np.float32).reshape(-1, 3)
    data.word_class = word_class


def add_words(
    data: GanData, captions: Sequence[Sequence[str]], swapped: Sequence[Sequence[str]], text: TextModel
) -> None:
    """What a generator that reads words needs: the captions' (and the swapped captions') token ids, padded
    to one length, and the size of the vocabulary they index."""
    all_captions = [c for caps in (*captions, *swapped) for c in caps]
    length = max((len(text.vocab.encode(c)) for c in all_captions), default=1)
    data.tokens = text.caption_tokens(captions, length)
    data.sample_tokens = text.caption_tokens([[c] for c in data.sample_captions], length)[:, 0]
    if swapped:
        data.swap_tokens = text.caption_tokens(list(zip(*swapped, strict=True)), length).transpose(1, 0, 2)
    data.vocab_size = len(text.vocab)


def export_generator(trainer: Trainer, files: GanFiles) -> Path:
    """The inference artefact: generator weights + everything needed to rebuild and feed it."""
    from sisgan.train.checkpoint import save

    path = files.model_dir / "generator.pt"
    save(
        path,
        {
            "generator": trainer.g.state_dict(),
            "gan_config": trainer.cfg.to_dict(),
            "text_dim": int(trainer.data.features.shape[-1]),
            "vocab_size": trainer.g.vocab_size,
            "load_size": int(trainer.data.images.shape[1]),  # the stored size the shards hold
            "dataset": files.dataset,
            "text_model": str(files.text_model),
            "epochs_trained": trainer.epoch,
        },
    )
    return path


def train_and_export(
    cfg: GANConfig,
    files: GanFiles,
    *,
    seed: int,
    device: str,
    dist: DistInfo,
    run: Tracker,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train (resuming files.checkpoint when compatible), export the generator, write the plots.
    Returns the metrics for metrics/train.json (rank 0; other ranks return {})."""
    from tqdm import tqdm

    trainer = Trainer(cfg, load_gan_data(files, cfg), seed=seed, device=device, dist=dist)
    trainer.try_resume(files.checkpoint, log)
    run.log_params(
        {"dataset": files.dataset, "seed": seed, "gan": cfg.to_dict(), "processes": dist.world_size}
        | {"device": device, "resumed_from_epoch": trainer.epoch}
    )
    bar = tqdm(
        total=cfg.epochs, initial=trainer.epoch, desc="train_gan", unit="epoch", disable=not dist.is_main
    )
    plots = _Plots(files, trainer, run)

    def on_epoch(row: dict[str, Any], grid: np.ndarray | None) -> None:
        plots.epoch(row, grid)
        shown = {"d": row["d_loss"], "g": row["g_adv"], "swap": row["swap"], "ips": row["images_per_s"]}
        bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()})
        bar.update()

    history = fit(trainer, files.checkpoint, Hooks(on_epoch=on_epoch, log=log))
    bar.close()
    if not dist.is_main:
        return {}
    plots.final(history)
    run.log_artifact(export_generator(trainer, files), "generator")
    metrics = train_metrics(history, dist.world_size)
    # Per-epoch losses are already logged with their step; add only the run's totals.
    totals = {"epochs_total": "epochs", "train_seconds": "train_seconds"}
    run.log_metrics({n: metrics[k] for n, k in (totals | {"median_images_per_s": "images_per_s"}).items()})
    return metrics


def train_metrics(history: list[dict[str, Any]], processes: int) -> dict[str, Any]:
    """metrics/train.json: the last epoch's losses, the median speed and the total training time."""
    return {
        "epochs": history[-1]["epoch"],
        **{k: history[-1][k] for k in ("d_loss", "g_loss", *LOSS_KEYS)},
        "images_per_s": float(np.median([r["images_per_s"] for r in history])),
        "train_seconds": float(sum(r["seconds"] for r in history)),
        "processes": processes,
    }


class _Plots:
    """The stage's plot files: the loss CSV (for `dvc plots`), its PNG and the sample grid."""

    def __init__(self, files: GanFiles, trainer: Trainer, run: Tracker) -> None:
        self.csv = files.plots / "train_gan.csv"
        self.png = files.plots / "train_gan.png"
        self.samples = files.plots / "train_gan_samples.png"
        self.trainer, self.run, self.dataset = trainer, run, files.dataset
        self.sources = center_crop(trainer.data.sample_images, trainer.cfg.image_size)  # as G sees them

    def grid(self, outputs: np.ndarray) -> None:
        from sisgan.eval.grids import manipulation_grid
        from sisgan.io import save_image

        save_image(self.samples, manipulation_grid(self.sources, outputs, self.trainer.data.sample_captions))

    def epoch(self, row: dict[str, Any], grid: np.ndarray | None) -> None:
        from sisgan.eval.plots import write_csv

        self.run.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        write_csv(self.csv, self.trainer.history)
        if grid is not None:
            self.grid(grid)
            if self.run.run_id:
                self.run.log_image(self.samples, "samples", step=row["epoch"])

    def final(self, history: list[dict[str, Any]]) -> None:
        """Also when the run only resumed a finished checkpoint (no epoch ran)."""
        from sisgan.eval.plots import line_png, write_csv

        self.grid(self.trainer.sample_grid())
        cfg = self.trainer.cfg
        generator = (
            ["g_adv", "kl"] + (["recon"] if cfg.recon_weight else []) + (["swap"] if cfg.swap_weight else [])
        )
        panels = {"discriminator": ["d_real", "d_mismatch", "d_fake"], "generator": generator}
        write_csv(self.csv, history)
        line_png(self.png, history, "epoch", panels, title=f"train_gan on {self.dataset}")
        self.run.log_artifact(self.png)
        self.run.log_artifact(self.samples)  # the last grid; every epoch's: images/samples+step+N
