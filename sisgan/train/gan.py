"""SISGAN training loop: phases (D step, G step), epochs, checkpoints, resume, several processes.

The maths lives in `sisgan.losses.SisganLoss`; this module moves data, steps optimizers, keeps time,
and writes checkpoints. Caption features come from the cache written by `pretrain_text` (the text
encoder is frozen during GAN training, so its output per caption never changes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sisgan.config import GANConfig
from sisgan.data.images import center_crop
from sisgan.data.loader import DeviceLoader
from sisgan.errors import ConfigError, SisganError
from sisgan.losses import Batch, ColourWords, DiscriminatorStep, LossWeights, SisganLoss, mismatching_rows
from sisgan.models import Discriminator, Generator, generator_from_config
from sisgan.models.generator import edit_images
from sisgan.train import checkpoint
from sisgan.train.distributed import DistInfo, all_reduce_mean
from sisgan.train.graphs import CudaStepGraph, StepGraph, TrainingState

LOSS_KEYS = ("d_real", "d_mismatch", "d_fake", "g_adv", "kl", "recon", "swap", "ground", "part")
# Parameters that may change between a checkpoint and a resumed run (training simply continues).
RESUMABLE_CHANGES = {
    "epochs",
    "checkpoint_every",
    "sample_every",
    "samples",
    "device",
    "compile",
    "cuda_graph",
    "fused_adam",
}
GRAPH_WARMUP_STEPS = 2  # eager steps before a capture (undone afterwards; see sisgan.train.graphs)


class NonFiniteLoss(SisganError):
    """A loss became NaN/inf; training stops and the last good checkpoint is kept."""


class Interrupted(SisganError):
    """SIGTERM/SIGINT arrived; a checkpoint at the current step was written."""


@dataclasses.dataclass
class GanData:
    """What training needs, all aligned by row.

    images [N, S, S, 3] uint8 (train split), features [N, C, T] float32 cached φ(t), counts [N] captions
    per image; sample_* are the fixed grid: sources [K, S, S, 3] and target φ(t) [M, T] with captions.
    swap_images [K, N, S, S, 3] uint8 and swap_features [K, N, T]: K colour-swap edit pairs per image
    (sisgan.train.swaps), needed only when gan.swap_weight > 0.
    For a generator that reads words (gan.attention, output "paint"): tokens [N, C, L] int64, every caption's
    token ids (0 = padding), swap_tokens [K, N, L] those of the swapped captions, and vocab_size, the text
    encoder's vocabulary (G embeds the ids with its own word reader).
    """

    images: np.ndarray
    features: np.ndarray
    counts: np.ndarray
    sample_images: np.ndarray
    sample_features: np.ndarray
    sample_captions: list[str]
    swap_images: np.ndarray | None = None
    swap_features: np.ndarray | None = None
    tokens: np.ndarray | None = None
    swap_tokens: np.ndarray | None = None
    sample_tokens: np.ndarray | None = None  # [M, L]: the sample grid's captions
    vocab_size: int = 0
    # gan.ground_weight: the swap pairs' colour classes, rgb [K, 3] (0-255), and word_class [V] int64, the
    # class each token id names (-1: none).
    colour_rgb: np.ndarray | None = None
    word_class: np.ndarray | None = None

    def fingerprint(self) -> str:
        """Identifies the training data, so a checkpoint is never resumed on other images or captions."""
        import hashlib

        h = hashlib.sha1()
        swaps = () if self.swap_images is None else (self.swap_images, self.swap_features)
        tokens = tuple(t for t in (self.tokens, self.swap_tokens, self.word_class) if t is not None)
        for arr in (self.images, self.features, self.counts, *swaps, *tokens):
            h.update(str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).data)
        return h.hexdigest()


def build_models(
    cfg: GANConfig, text_dim: int, load_vgg: bool = True, vocab_size: int = 0
) -> tuple[Generator, Discriminator]:
    g = generator_from_config(cfg, text_dim, load_vgg, vocab_size)
    return g, Discriminator(cfg.image_size, text_dim, cfg.width)


def _check(cfg: GANConfig, data: GanData, info: DistInfo) -> None:
    size = data.images.shape[1]
    if cfg.image_size > size:
        raise ConfigError(
            f"params.yaml: gan.image_size = {cfg.image_size} is larger than the stored images ({size}); "
            "lower it or raise data.load_size."
        )
    if cfg.batch_size % info.world_size:
        raise ConfigError(
            f"params.yaml: gan.batch_size = {cfg.batch_size} must divide evenly among "
            f"{info.world_size} processes."
        )
    if len(data.images) != len(data.features):
        raise ConfigError("cached caption features do not match the shards; rerun `dvc repro pretrain_text`.")
    if cfg.reads_words and (data.tokens is None or data.vocab_size < 2):
        raise ConfigError("gan.attention and gan.output: paint need the captions' tokens and vocabulary.")
    if cfg.reads_words and cfg.swap_weight and data.swap_tokens is None:
        raise ConfigError("gan.attention and gan.output: paint need the swapped captions' tokens.")
    if cfg.reads_colour_classes and (data.colour_rgb is None or data.word_class is None):
        raise ConfigError(
            "gan.ground_weight and gan.part_weight need the swap pairs' colour classes; "
            "rerun `dvc repro edit_pairs`."
        )
    if cfg.swap_weight and (data.swap_images is None or data.swap_features is None):
        raise ConfigError(
            "gan.swap_weight > 0 needs the colour-swap pairs; run `dvc repro edit_pairs` first."
        )


class Trainer:
    """One process's share of SISGAN training (DistributedDataParallel when world_size > 1)."""

    def __init__(
        self,
        cfg: GANConfig,
        data: GanData,
        *,
        seed: int = 0,
        device: str = "cpu",
        dist: DistInfo | None = None,
    ) -> None:
        self.cfg, self.data, self.seed = cfg, data, seed
        self.data_fingerprint = data.fingerprint()
        self.dist = dist or DistInfo()
        _check(cfg, data, self.dist)
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        self.autocast = cfg.bf16 and (cuda or native_cpu_bf16())
        # CUDA only; one process (DDP's all-reduce is not captured). With gan.compile on as well,
        # the compiled kernels are what gets captured.
        self.graphed = cuda and cfg.cuda_graph and not self.dist.enabled
        self._graph: StepGraph | None = None
        self._graph_inputs: tuple[torch.Tensor, ...] = ()
        self._graph_lr: tuple[float, float] | None = None
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        torch.manual_seed(seed)  # identical initial weights on every rank
        self._build_networks(data.features.shape[-1], data.vocab_size)
        self._build_optimizers()
        self._build_data()
        self._build_loss()
        self.epoch = 0  # completed epochs
        self.batch = 0  # completed batches of the current epoch (non-zero only after an interrupt)
        self.history: list[dict[str, Any]] = []
        self.seen: list[torch.Tensor] = []  # image indices per step, kept only when record_indices is set
        self.record_indices = False

    def _build_networks(self, text_dim: int, vocab_size: int) -> None:
        """G and D, and the modules the loss calls (through DDP and torch.compile when those are on)."""
        cfg = self.cfg
        self.g, self.d = build_models(cfg, text_dim, vocab_size=vocab_size)
        self.g.to(self.device, memory_format=self.memory_format)
        self.d.to(self.device, memory_format=self.memory_format)
        g_forward: nn.Module = self.g
        d_step: nn.Module = DiscriminatorStep(self.d)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            g_forward, d_step = DDP(g_forward, device_ids=ids), DDP(d_step, device_ids=ids)
        if cfg.compile:
            g_forward, d_step = torch.compile(g_forward), torch.compile(d_step)
        self._g_forward, self._d_step = g_forward, d_step

    def _build_loss(self) -> None:
        cfg, data = self.cfg, self.data
        colours = None
        if cfg.reads_colour_classes:
            assert data.colour_rgb is not None and data.word_class is not None  # _check
            rgb = torch.as_tensor(data.colour_rgb, dtype=torch.float32, device=self.device) / 127.5 - 1
            colours = ColourWords(rgb, torch.as_tensor(data.word_class, device=self.device))
        weights = LossWeights(
            cfg.kl_weight, cfg.recon_weight, cfg.swap_weight, cfg.ground_weight, cfg.part_weight
        )
        self.loss = SisganLoss(self._g_forward, self._d_step, self.d, weights, colours)

    def _build_optimizers(self) -> None:
        cfg, cuda = self.cfg, self.device.type == "cuda"
        betas = (cfg.beta1, cfg.beta2)
        # fused: one kernel per parameter group; capturable: the step count lives on the device (a graph
        # cannot read a host-side count).
        fast = {"fused": cuda and cfg.fused_adam, "capturable": self.graphed}
        g_params = [p for p in self.g.parameters() if p.requires_grad]
        self.opt_g = torch.optim.Adam(g_params, cfg.lr, betas, **fast)
        self.opt_d = torch.optim.Adam(self.d.parameters(), cfg.lr, betas, **fast)
        self.sched_g = torch.optim.lr_scheduler.StepLR(self.opt_g, cfg.lr_decay_every, cfg.lr_decay)
        self.sched_d = torch.optim.lr_scheduler.StepLR(self.opt_d, cfg.lr_decay_every, cfg.lr_decay)

    def _build_data(self) -> None:
        """The split, its caption features and the swap pairs on the device, and the step's random source."""
        cfg, data = self.cfg, self.data
        self.loader = DeviceLoader(
            data.images,
            cfg.batch_size // self.dist.world_size,
            cfg.image_size,
            device=self.device,
            flip=cfg.flip,
            seed=self.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        self.features = torch.from_numpy(data.features).to(self.device)  # [N, C, T]
        self.counts = torch.from_numpy(data.counts).to(self.device)
        self.swaps = cfg.swap_weight > 0
        self._variant = 0  # which of the K colour-swap sets this epoch trains on
        if self.swaps:
            # The loader carries source and edit as one 6-channel image, so both get the same crop and flip;
            # each epoch pairs the sources with the next of the K edit sets.
            self.sources = self.loader.images  # [N, 3, S, S] uint8
            self.swap_images = torch.from_numpy(data.swap_images).permute(0, 1, 4, 2, 3).to(self.device)
            self.swap_features = torch.from_numpy(data.swap_features).to(self.device)  # [K, N, T]
        if self.g.reads_words:
            assert data.tokens is not None  # _check
            self.tokens = torch.from_numpy(data.tokens).to(self.device)  # [N, C, L]
            if self.swaps:
                self.swap_tokens = torch.from_numpy(data.swap_tokens).to(self.device)  # [K, N, L]
        self.noise_gen = torch.Generator(device=self.device)
        self.noise_gen.manual_seed(self.seed * 104_729 + 17 + self.dist.rank)

    # Section: one training step.

    def _caption(self, idx: torch.Tensor) -> torch.Tensor:
        """One random caption (its index among the image's) per image: [B]."""
        u = torch.rand(idx.shape[0], device=self.device, generator=self.noise_gen)
        return (u * self.counts[idx]).long()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.autocast:
            return contextlib.nullcontext()
        # A captured graph must not keep autocast's per-region weight casts (torch.cuda.graphs docs).
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=not self.graphed)

    def make_batch(self, real: torch.Tensor, idx: torch.Tensor) -> Batch:
        """The step's inputs from a loader batch: real [B, 3, S, S] in [-1, 1] (with gan.swap_weight on,
        [B, 6, S, S]: source and its colour-swap edit) and idx [B] the rows' image indices. One caption per
        image and G's noise are drawn here, outside the step proper, so that the graphed step
        (gan.cuda_graph) replays the same maths on fresh draws."""
        j = self._caption(idx)
        fields: dict[str, torch.Tensor] = {"text": self.features[idx, j]}
        if self.g.reads_words:
            fields["tokens"] = self.tokens[idx, j]
        if self.swaps:
            half = mismatching_rows(len(real))
            real, edit = real[:, :3], real[:, 3:]
            fields["swap_target"] = edit[:half].contiguous(memory_format=self.memory_format)
            fields["swap_text"] = self.swap_features[self._variant, idx[:half]]
            if self.g.reads_words:
                fields["swap_tokens"] = self.swap_tokens[self._variant, idx[:half]]
        real = real.contiguous(memory_format=self.memory_format)
        noise = torch.randn(len(real), self.g.cond_dim, device=self.device, generator=self.noise_gen)
        return Batch(real=real, noise=noise, **fields)

    def train_step(self, real: torch.Tensor, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """One D step and one G step on a loader batch (see make_batch). No host sync."""
        batch = self.make_batch(real, idx)
        return self._replay(batch) if self.graphed else self._step(batch)

    def _step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The step proper: the loss's phases, each followed by its optimizer's step."""
        with self._autocast():
            generated = self.loss.generate(batch)
            d_loss, d_stats = self.loss.d_phase(batch, generated)
        _update(self.opt_d, d_loss)
        with self._autocast():
            g_loss, g_stats = self.loss.g_phase(batch, generated)
        _update(self.opt_g, g_loss)
        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            **{k: v.detach() for k, v in (d_stats | g_stats).items()},
        }

    def _new_graph(self) -> StepGraph:
        return CudaStepGraph(self.device)

    def _replay(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The step through a captured graph; (re)captured on first use and whenever the lr changed
        (a captured optimizer step keeps the lr it was captured with)."""
        inputs = batch.tensors()
        lrs = (self.opt_g.param_groups[0]["lr"], self.opt_d.param_groups[0]["lr"])
        if self._graph is None or self._graph_lr != lrs or self._shapes_changed(inputs):
            self._capture(batch)
            self._graph_lr = lrs
        for static, x in zip(self._graph_inputs, inputs, strict=True):
            static.copy_(x)
        assert self._graph is not None
        out = self._graph.replay()
        return {k: v.clone() for k, v in out.items()}  # the next replay overwrites its outputs

    def _shapes_changed(self, inputs: tuple[torch.Tensor, ...]) -> bool:
        return [x.shape for x in inputs] != [x.shape for x in self._graph_inputs]

    def _capture(self, batch: Batch) -> None:
        self._graph = None  # frees the previous graph's memory pool before the new capture
        static = tuple(x.clone(memory_format=torch.preserve_format) for x in batch.tensors())
        template = batch.with_tensors(static)
        state = TrainingState([self.g, self.d], [self.opt_g, self.opt_d])
        graph = self._new_graph()
        graph.warmup(lambda: self._step(template), GRAPH_WARMUP_STEPS)
        state.restore()  # the warm-up steps must not count as training
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_d.zero_grad(set_to_none=True)
        graph.capture(lambda: self._step(template))
        self._graph, self._graph_inputs = graph, static

    # Section: epochs.

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(batch number, indices, images) of an epoch, from batch `start` (after a mid-epoch resume)."""
        self.loader.set_epoch(epoch)
        if self.swaps:
            self._variant = epoch % len(self.swap_images)
            self.loader.images = torch.cat([self.sources, self.swap_images[self._variant]], dim=1)
        for b, (idx, images) in enumerate(self.loader.iterate(start)):
            yield start + b, idx, images

    def run_epoch(
        self, epoch: int, should_stop: Callable[[], bool] = lambda: False
    ) -> dict[str, float] | None:
        """Train one epoch (1-based number). Returns its mean losses, or None if stopped by a signal."""
        self.g.train()
        self.d.train()
        sums = torch.zeros(len(LOSS_KEYS) + 2, device=self.device)
        first_bad = torch.full((), -1, device=self.device, dtype=torch.long)
        steps, t0 = 0, time.perf_counter()
        for b, idx, real in self.batches(epoch - 1, self.batch):
            stats = self.train_step(real, idx)
            if self.record_indices:
                self.seen.append(idx.cpu())
            row = torch.stack([stats["d_loss"], stats["g_loss"], *(stats[k] for k in LOSS_KEYS)]).float()
            sums += row
            finite = torch.isfinite(row).all()
            first_bad = torch.where((first_bad < 0) & ~finite, torch.full_like(first_bad, b + 1), first_bad)
            steps += 1
            self.batch = b + 1
            if (b + 1) % 50 == 0 or should_stop():
                self._raise_if_bad(first_bad, epoch)  # one sync per 50 steps, not per step
            if should_stop():
                return None
        self._raise_if_bad(first_bad, epoch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - t0
        sums = all_reduce_mean(sums, self.dist)
        means = (sums / max(steps, 1)).tolist()
        row = {"epoch": epoch, **dict(zip(["d_loss", "g_loss", *LOSS_KEYS], means, strict=True))}
        row |= {
            "lr": self.opt_g.param_groups[0]["lr"],
            "seconds": seconds,
            "images_per_s": steps * self.cfg.batch_size / max(seconds, 1e-9),
        }
        self.sched_g.step()  # after the epoch's optimizer steps (the reference stepped it before)
        self.sched_d.step()
        self.epoch, self.batch = epoch, 0
        self.history.append(row)
        return row

    def _raise_if_bad(self, first_bad: torch.Tensor, epoch: int) -> None:
        step = int(first_bad)
        if step >= 0:
            raise NonFiniteLoss(
                f"a loss became NaN/inf at epoch {epoch}, step {step}; training stopped and the last good "
                "checkpoint was kept. Lower gan.lr or turn off gan.bf16, then rerun to resume."
            )

    # Section: samples.

    def sample_grid(self) -> np.ndarray:
        """Outputs of the fixed sources × fixed target captions: [K, M, S, S, 3] uint8 (eval mode, ε = 0)."""
        sources = center_crop(self.data.sample_images, self.cfg.image_size)
        texts = torch.from_numpy(self.data.sample_features)
        k, m = len(sources), len(texts)
        per_word: tuple[torch.Tensor, ...] = ()
        if self.g.reads_words:
            assert self.data.sample_tokens is not None, "a generator that reads words needs sample_tokens"
            per_word = (torch.from_numpy(self.data.sample_tokens).repeat(k, 1),)  # [K·M, L]
        self.g.eval()
        out = edit_images(self.g, sources.repeat(m, axis=0), texts.repeat(k, 1), *per_word, batch_size=k * m)
        self.g.train()
        return out.reshape(k, m, *out.shape[1:])

    # Section: checkpoints.

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.g.state_dict(),
            "discriminator": self.d.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "rng": {
                "noise": self.noise_gen.get_state(),
                "augment": self.loader.generator.get_state(),
                "torch": torch.get_rng_state(),
            },
            "epoch": self.epoch,
            "batch": self.batch,
            "history": self.history,
            "config": self.cfg.to_dict(),
            "seed": self.seed,
            "world_size": self.dist.world_size,
            "data": self.data_fingerprint,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.g.load_state_dict(state["generator"])
        self.d.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        self.noise_gen.set_state(state["rng"]["noise"].cpu())
        self.loader.generator.set_state(state["rng"]["augment"].cpu())
        torch.set_rng_state(state["rng"]["torch"].cpu())
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        self.history = list(state["history"])
        self._graph = None  # the optimizer state tensors were replaced: capture again

    def save(self, path: str | Path) -> None:
        if self.dist.is_main:
            checkpoint.save(path, self.state_dict())

    def try_resume(self, path: str | Path, log: Callable[[str], None] = print) -> bool:
        """Resume from a checkpoint written with compatible settings; returns whether it did."""
        path = Path(path)
        if not path.is_file():
            return False
        state = checkpoint.load(path, "cpu")  # RNG states must stay on the CPU; weights move on load
        old, new = state.get("config", {}), self.cfg.to_dict()
        changed = sorted(k for k in new if old.get(k) != new[k] and k not in RESUMABLE_CHANGES)
        if state.get("seed") != self.seed:
            changed.append("seed")
        if state.get("world_size") != self.dist.world_size:
            changed.append("number of processes")
        if state.get("data") != self.data_fingerprint:
            changed.append("training data or caption features")
        if changed:
            log(f"checkpoint {path} was trained with other settings ({', '.join(changed)}); starting over.")
            return False
        self.load_state_dict(state)
        log(
            f"resuming from {path}: epoch {self.epoch} done" + (f", batch {self.batch}" if self.batch else "")
        )
        return True


@dataclasses.dataclass
class Hooks:
    """Callbacks from `fit` (rank 0 only): after each epoch, with its row and, on sample epochs, the grid."""

    on_epoch: Callable[[dict[str, Any], np.ndarray | None], None] = lambda row, grid: None
    log: Callable[[str], None] = print


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Callable[[], bool]]:
    """SIGTERM/SIGINT set a flag the loop polls between steps (so a checkpoint can be written)."""
    flag = {"stop": False}

    def handler(signum: int, frame: Any) -> None:
        flag["stop"] = True

    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread (e.g. inside a Prefect task): no handlers
        pass
    try:
        yield lambda: flag["stop"]
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def fit(trainer: Trainer, checkpoint_path: str | Path, hooks: Hooks | None = None) -> list[dict[str, Any]]:
    """Train until cfg.epochs, checkpointing every cfg.checkpoint_every epochs and on SIGTERM/SIGINT."""
    hooks = hooks or Hooks()
    cfg = trainer.cfg
    with stop_on_signals() as should_stop:
        for epoch in range(trainer.epoch + 1, cfg.epochs + 1):
            row = trainer.run_epoch(epoch, should_stop)
            if row is None:
                trainer.save(checkpoint_path)
                raise Interrupted(
                    f"stopped by a signal at epoch {epoch}, batch {trainer.batch}; checkpoint written to "
                    f"{checkpoint_path}. Run the stage again to resume."
                )
            grid = trainer.sample_grid() if (epoch % cfg.sample_every == 0 or epoch == cfg.epochs) else None
            if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
                trainer.save(checkpoint_path)
            if trainer.dist.is_main:
                hooks.on_epoch(row, grid)
    return trainer.history


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), where oneDNN's bf16 convolutions
    train the default 1.4x faster than fp32 (benchmarks/RESULTS.md); elsewhere bf16 is emulated and slower."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def _update(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def lr_at(cfg: GANConfig, epoch: int) -> float:
    """The learning rate of a 1-based epoch under the step schedule."""
    return cfg.lr * cfg.lr_decay ** math.floor((epoch - 1) / cfg.lr_decay_every)
