"""GAN training throughput: a reference-equivalent loop vs the project's real training step, same card.

    python -m benchmarks.train_throughput                       # paper profile: width 1.0, 64x64, batch 64
    python -m benchmarks.train_throughput --width 0.125 --size 16 --batch 8 --iters 3 --warmup 1 --images 64

(a) `reference`: the costs of woozzu/dong_iccv_2017 patched for PyTorch 2 — fp32, a CPU DataLoader over
    JPEG files with 4 workers (resize 74, random crop, flip), the text GRU run on every batch, mismatching
    texts built on the host, three separate D passes with a backward each, G run twice (the D-step pass
    with autograd), and a host sync for every logged loss.
(b) `real`: `sisgan.train.gan.Trainer.train_step` exactly as the `train_gan` stage runs it (device-resident
    data and augmentation, cached caption features, one G pass shared by both steps, bf16 autocast and
    channels_last on CUDA, fused Adam, no host sync, the whole step replayed as one CUDA graph), with the
    speed switches read from `params.yaml`'s gan section and overridable with --set.
--ladder adds the rungs between them, one change at a time, so that each is measured on its own: the
    reference loop with cached φ(t), then also with device-resident data; then the project's step with all
    speed switches off and a host sync per step, and each switch turned on in turn;
--check-steps N trains N steps eagerly and N through the CUDA graph from one state and compares them.

For each: images/s (median over --iters steps after --warmup), FLOPs per image counted by
torch.utils.flop_counter, achieved TFLOP/s, and the fraction of a bf16 matmul peak measured in the same run.
Prints a table and writes JSON (benchmarks/results/train_throughput.json).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from benchmarks.common import print_table, write_json
from sisgan.config import GANConfig, SynthConfig
from sisgan.data import synth
from sisgan.data.loader import DeviceLoader
from sisgan.losses import kl_divergence
from sisgan.text.encoder import TextEncoder
from sisgan.text.tokenizer import Vocabulary
from sisgan.train.gan import GanData, Trainer, build_models

TEXT_DIM = 300


# Section: a dataset with the reference's costs.


def make_dataset(folder: Path, n: int, load: int) -> tuple[list[Path], list[str], np.ndarray]:
    """n synth-birds images as JPEG files (the reference reads files) + one caption each + uint8 array."""
    records = synth.generate(SynthConfig(n_images=n, n_classes=max(2, min(200, n // 4)), test_classes=1), 0)
    paths, captions, arrays = [], [], []
    from PIL import Image

    for r in records:
        image, _ = synth.render(r.scene, load)
        path = folder / f"{r.image_id}.jpg"
        Image.fromarray(image).save(path, quality=90)
        paths.append(path)
        captions.append(r.captions[0])
        arrays.append(image)
    return paths, captions, np.stack(arrays)


class JpegCaptions(torch.utils.data.Dataset):
    """The reference's data path: decode a JPEG, Resize(74) -> RandomCrop(size) -> flip, token ids."""

    def __init__(
        self, paths: list[Path], captions: list[str], vocab: Vocabulary, load: int, size: int
    ) -> None:
        from torchvision import transforms

        self.paths, self.captions, self.vocab = paths, captions, vocab
        self.transform = transforms.Compose(
            [
                transforms.Resize(load),
                transforms.RandomCrop(size),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            image = self.transform(im.convert("RGB"))
        ids = self.vocab.encode(self.captions[i])
        padded = torch.zeros(self.vocab.max_words, dtype=torch.long)
        padded[: len(ids)] = torch.tensor(ids)
        return image, padded, len(ids), i


def reference_step_fn(
    cfg: GANConfig, device: torch.device, vocab: Vocabulary, cached: torch.Tensor | None = None
) -> tuple[Callable, dict]:
    """One iteration of the reference loop on a batch (returns the losses as Python floats).

    batch: (images [B, 3, S, S] in [0, 1], token ids [B, W], lengths [B], dataset indices [B]). With
    `cached` ([N, T] φ(t) per dataset row, on the device) the GRU is replaced by a lookup.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False  # PyTorch's default; the reference does not change it
    g, d = build_models(cfg, TEXT_DIM)
    g.to(device), d.to(device)
    text = TextEncoder(len(vocab), TEXT_DIM, TEXT_DIM).to(device).eval().requires_grad_(False)
    opt_g = torch.optim.Adam([p for p in g.parameters() if p.requires_grad], cfg.lr, (cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(d.parameters(), cfg.lr, (cfg.beta1, cfg.beta2))
    bce = F.binary_cross_entropy_with_logits

    def step(batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        img, desc, lengths, index = batch
        img = img.to(device)
        if cached is None:
            with torch.no_grad():
                phi = text(desc.to(device), lengths)  # the GRU on every batch
        else:
            phi = cached[index.to(device)]
        # Mismatching/relevant texts built on the host, as the reference does (a device->host copy).
        phi_np = phi.cpu().numpy()
        half = len(phi_np) // 2
        mis = torch.from_numpy(np.roll(phi_np, 1, axis=0)).to(device)
        rel = torch.from_numpy(np.concatenate([np.roll(phi_np[:half], -1, axis=0), phi_np[half:]])).to(device)
        real = img * 2 - 1
        ones, zeros = torch.ones(len(img), device=device), torch.zeros(len(img), device=device)
        d.zero_grad()
        loss_real = bce(d(real, phi), ones)
        loss_real.backward()
        loss_mis = 0.5 * bce(d(real, mis), zeros)
        loss_mis.backward()
        fake, _, _ = g(real, rel, torch.randn(len(img), g.cond_dim, device=device))  # with autograd
        loss_fake = 0.5 * bce(d(fake.detach(), rel), zeros)
        loss_fake.backward()
        opt_d.step()
        g.zero_grad()
        fake, mu, log_sigma = g(real, rel, torch.randn(len(img), g.cond_dim, device=device))  # G again
        kl = kl_divergence(mu, log_sigma)
        loss_g = bce(d(fake, rel), ones)
        (loss_g + cfg.kl_weight * kl).backward()
        opt_g.step()
        # The reference accumulates .data[0] of every loss: one host sync each.
        return {
            k: v.detach().item()
            for k, v in {"real": loss_real, "mis": loss_mis, "fake": loss_fake, "g": loss_g, "kl": kl}.items()
        }

    return step, {"generator": g, "discriminator": d}


# Section: timing.


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], Any], iters: int, warmup: int, device: torch.device) -> list[float]:
    """Seconds per call of `step`, after `warmup` calls.

    On CUDA, events recorded between consecutive calls: the host never waits inside the loop, so a step
    that runs asynchronously is timed as training runs it, and a step that synchronises (the reference's
    per-loss .item()) pays for its own waits. On the CPU, the host clock around each call.
    """
    for _ in range(warmup):
        step()
    sync(device)
    if device.type == "cuda":
        events = [torch.cuda.Event(enable_timing=True) for _ in range(iters + 1)]
        events[0].record()
        for e in events[1:]:
            step()
            e.record()
        torch.cuda.synchronize(device)
        return [a.elapsed_time(b) / 1000 for a, b in zip(events, events[1:], strict=False)]
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def count_flops(step: Callable[[], Any]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def matmul_peak(device: torch.device) -> dict[str, float]:
    """Measured dense matmul rate: bf16 on CUDA (the tensor-core ceiling), fp32 on CPU."""
    n = 8192 if device.type == "cuda" else 1024
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = time_steps(lambda: a @ b, iters=20 if device.type == "cuda" else 5, warmup=3, device=device)
    return {"dtype": str(dtype).removeprefix("torch."), "tflops": 2 * n**3 / statistics.median(times) / 1e12}


# Section: the optimisation ladder. Each rung turns one more switch on, so each switch is measured alone;
# the last rung is the train_gan stage's own configuration (params.yaml's gan speed switches).
OFF = dict.fromkeys(("fused_adam", "bf16", "channels_last", "cuda_graph"), False)
ON = {"fused_adam": True, "bf16": True, "channels_last": True}
LADDER: list[tuple[str, dict[str, Any], bool]] = [  # (name, gan overrides, host sync after every step)
    ("project step (texts built on the device, one D backward, one G forward)", OFF, True),
    ("+ no host sync", OFF, False),
    ("+ fused Adam", OFF | {"fused_adam": True}, False),
    ("+ bf16 autocast", OFF | {"fused_adam": True, "bf16": True}, False),
    ("+ channels_last", OFF | ON, False),
]
SPEED_KEYS = ("fused_adam", "bf16", "channels_last", "cuda_graph", "compile")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--workers", type=int, default=4, help="reference loader workers (the reference used 4)")
    ap.add_argument(
        "--ladder", action="store_true", help="also time each speed switch on its own, one rung at a time"
    )
    ap.add_argument(
        "--compile-rung",
        action="store_true",
        help="also time the stage's step with torch.compile inside the graph (compiles for minutes)",
    )
    ap.add_argument(
        "--check-steps",
        type=int,
        default=0,
        help="train this many steps eagerly and through the CUDA graph from one state; compare (CUDA)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="gan option for the real step, e.g. --set compile=true --set bf16=false",
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=None)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    load = args.size + args.size // 8 + (2 if args.size >= 64 else 1)  # 64 -> 74 as in the paper
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    base = {"width": args.width, "image_size": args.size, "batch_size": args.batch}
    stage_cfg = GANConfig.from_dict(_stage_speed_switches() | base | overrides)
    peak = matmul_peak(device)
    rows: list[dict[str, Any]] = []
    check: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        paths, captions, arrays = make_dataset(Path(tmp), args.images, load)
        vocab = Vocabulary.build(captions)
        ref = (stage_cfg, device, vocab, paths, captions, arrays, load, args)
        rows.append(bench_reference("reference", *ref))
        if args.ladder:
            rows.append(bench_reference("ref. + cached φ(t)", *ref, cached=True))
            rows.append(
                bench_reference("ref. + cached φ(t) + device data", *ref, cached=True, device_data=True)
            )
        rungs = LADDER if args.ladder else []
        for name, switches, host_sync in rungs:
            cfg = GANConfig.from_dict(stage_cfg.to_dict() | switches)
            rows.append(bench_real(name, cfg, device, arrays, args, host_sync))
        rows.append(bench_real("real", stage_cfg, device, arrays, args, False))
        if args.compile_rung:
            compiled = GANConfig.from_dict(stage_cfg.to_dict() | {"compile": True})
            rows.append(bench_real("real + torch.compile", compiled, device, arrays, args, False))
        if args.check_steps and device.type == "cuda":
            check = graph_check(stage_cfg, device, arrays, args.check_steps)
    for r in rows:
        r["peak_fraction"] = r["tflops"] / peak["tflops"]
        r["speedup"] = r["images_per_s"] / rows[0]["images_per_s"]
    print(
        f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}; "
        f"{peak['dtype']} matmul peak {peak['tflops']:.1f} TFLOP/s"
    )
    if check:
        print(f"{check['steps']} steps from one state (eager twice, graphed once): {check}")
    columns = ["mode", "images_per_s", "median_step_ms", "gflop_per_image", "tflops", "peak_fraction"]
    print_table(rows, [*columns, "speedup"])
    path = write_json(
        "train_throughput",
        {
            "args": vars(args),
            "gan": stage_cfg.to_dict(),
            "peak": peak,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,  # the fp32 reference's convolutions
            "rows": rows,
            "graph_check": check,
        },
        args.out,
    )
    print(f"wrote {path}")


def _stage_speed_switches() -> dict[str, Any]:
    """The speed switches as the train_gan stage runs them: params.yaml's gan section (defaults if absent)."""
    params = Path("params.yaml")
    gan = (yaml.safe_load(params.read_text()) or {}).get("gan", {}) if params.is_file() else {}
    return {k: gan[k] for k in SPEED_KEYS if k in gan}


def bench_reference(
    name,
    cfg,
    device,
    vocab,
    paths,
    captions,
    arrays,
    load,
    args,
    cached=False,
    device_data=False,  # noqa: ANN001
) -> dict[str, Any]:
    """The reference loop; `cached` swaps the GRU for a φ(t) lookup, `device_data` the JPEG loader for the
    device-resident one (the two data-side changes, measured one at a time)."""
    feats = None
    if cached:
        rng = np.random.default_rng(0)
        feats = torch.from_numpy(rng.normal(size=(len(paths), TEXT_DIM)).astype(np.float32)).to(device)
    step, _ = reference_step_fn(cfg, device, vocab, feats)
    if device_data:
        loader = DeviceLoader(arrays, args.batch, args.size, device=device)

        def epoch_batches() -> Iterator:
            for idx, images in loader:  # images in [-1, 1]; the reference step expects [0, 1]
                yield (images + 1) / 2, None, None, idx

    else:
        jpeg = torch.utils.data.DataLoader(
            JpegCaptions(paths, captions, vocab, load, args.size),
            batch_size=args.batch,
            shuffle=True,
            num_workers=args.workers,
            drop_last=True,
            persistent_workers=args.workers > 0,
        )

        def epoch_batches() -> Iterator:
            return iter(jpeg)

    batches: Iterator = iter(())

    def one() -> None:
        nonlocal batches
        try:
            batch = next(batches)
        except StopIteration:
            batches = epoch_batches()
            batch = next(batches)
        step(batch)

    flops = count_flops(one)
    times = time_steps(one, args.iters, args.warmup, device)
    row = _row(name, times, flops, args.batch)
    row["switches"] = {"cached_text": cached, "device_data": device_data}
    return row


def _trainer(cfg: GANConfig, device: torch.device, arrays: np.ndarray, seed: int = 0) -> Trainer:
    feats = np.random.default_rng(seed).normal(size=(len(arrays), 1, TEXT_DIM)).astype(np.float32)
    data = GanData(arrays, feats, np.ones(len(arrays), np.int64), arrays[:1], feats[:1, 0], ["-"])
    if cfg.reads_words:  # a generator that reads words: 20 random tokens a caption
        data.vocab_size = 200
        data.tokens = np.random.default_rng(seed).integers(2, 200, (len(arrays), 1, 20))
        data.sample_tokens = data.tokens[:1, 0]
    return Trainer(cfg, data, device=str(device), seed=seed)  # cached φ(t): the GRU never runs here


def _stepper(trainer: Trainer, host_sync: bool = False) -> Callable[[], dict[str, torch.Tensor]]:
    """One training step per call, over the trainer's own epochs of device-resident batches."""
    batches: Iterator = iter(())
    epoch = 0

    def one() -> dict[str, torch.Tensor]:
        nonlocal batches, epoch
        try:
            _, idx, real = next(batches)
        except StopIteration:
            batches, epoch = trainer.batches(epoch), epoch + 1
            _, idx, real = next(batches)
        stats = trainer.train_step(real, idx)
        if host_sync:  # what a loop that logs every loss as a Python float pays
            stats = {k: v.item() for k, v in stats.items()}
        return stats

    return one


def bench_real(name, cfg, device, arrays, args, host_sync) -> dict[str, Any]:  # noqa: ANN001
    trainer = _trainer(cfg, device, arrays)
    one = _stepper(trainer, host_sync)
    graphed, trainer.graphed = trainer.graphed, False
    flops = count_flops(one)  # eagerly: a graph replay dispatches no operators to count (same maths)
    trainer.graphed = graphed
    times = time_steps(one, args.iters, args.warmup, device)
    row = _row(name, times, flops, args.batch)
    row["switches"] = {k: getattr(cfg, k) for k in SPEED_KEYS} | {"host_sync": host_sync}
    del trainer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def graph_check(cfg: GANConfig, device: torch.device, arrays: np.ndarray, steps: int) -> dict[str, Any]:
    """The same steps from the same state: eager twice (the control: how far two eager runs drift on this
    card) and through the CUDA graph. A graph that changed the maths would differ from the first eager run
    already at step 1, and by more than the eager runs differ from each other."""
    runs = []
    for graph in (False, False, True):
        trainer = _trainer(GANConfig.from_dict(cfg.to_dict() | {"cuda_graph": graph}), device, arrays, seed=1)
        one = _stepper(trainer)
        losses = torch.stack([torch.stack(list(one().values())) for _ in range(steps)]).float().cpu()
        weights = torch.cat([p.detach().float().flatten() for p in trainer.g.parameters()]).cpu()
        runs.append((losses, weights))
        if graph:
            assert trainer.graphed, "the graphed run did not use the CUDA graph"

    def diff(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        return {
            "step1_loss_max_abs_diff": float((a[0][0] - b[0][0]).abs().max()),
            "last_step_loss_rel_diff": float((a[0][-1] - b[0][-1]).norm() / b[0][-1].norm()),
            "g_weights_rel_diff": float((a[1] - b[1]).norm() / b[1].norm()),
        }

    return {
        "steps": steps,
        "finite": bool(torch.isfinite(runs[2][0]).all()),
        "eager_vs_eager": diff(runs[1], runs[0]),
        "graph_vs_eager": diff(runs[2], runs[0]),
    }


def _row(mode: str, times: list[float], flops: float, batch: int) -> dict[str, Any]:
    ips = batch / statistics.median(times)
    per_image = flops / batch
    return {
        "mode": mode,
        "images_per_s": ips,
        "gflop_per_image": per_image / 1e9,
        "tflops": per_image * ips / 1e12,
        "median_step_ms": 1000 * statistics.median(times),
    }


if __name__ == "__main__":
    main()
