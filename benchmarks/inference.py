"""Inference speed of `Manipulator.manipulate` (one image) and `manipulate_batch` (a batch).

Two profiles: the embedded default (params.yaml gan: width 0.25, 32 px from 37) and the paper's
(width 1.0, 64 px from 74). The networks are randomly initialised (speed does not depend on the weights);
the input is a 500x375 JPEG, the typical CUB photo, so the timings include decoding and resizing.

    python -m benchmarks.inference                       # CPU, and CUDA when visible
    python -m benchmarks.inference --devices cpu --runs 50 --batch 64 --threads 1
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmarks.common import print_table, write_json
from sisgan.config import GANConfig, TextConfig
from sisgan.inference import Manipulator
from sisgan.models import generator_from_config
from sisgan.text.model import TextModel
from sisgan.text.tokenizer import Vocabulary

CAPTIONS = [
    "this bird has a red head, a white belly and short black wings",
    "a small yellow bird with a grey beak and blue wing bars",
    "the bird is brown with a long pointed beak and a spotted chest",
]


@dataclass(frozen=True)
class Profile:
    name: str
    image_size: int
    width: float
    load_size: int
    output: str = "direct"
    conditioning: str = "concat"


PROFILES = {
    # The embedded default's generator (params.yaml gan: mask output, FiLM) and the paper's.
    "default": Profile("default", 32, 0.25, 37, output="mask", conditioning="film"),
    "paper": Profile("paper", 64, 1.0, 74),
}


def build(profile: Profile, device: str) -> Manipulator:
    text_cfg = TextConfig(image_size=profile.image_size)  # embed/hidden 300 as in params.yaml and the paper
    text = TextModel.create(text_cfg, Vocabulary.build(CAPTIONS))
    gan_cfg = GANConfig(
        image_size=profile.image_size,
        width=profile.width,
        output=profile.output,  # type: ignore[arg-type]
        conditioning=profile.conditioning,  # type: ignore[arg-type]
    )
    return Manipulator(generator_from_config(gan_cfg, text_cfg.hidden_dim), text, profile.load_size, device)


def jpeg(width: int = 500, height: int = 375, seed: int = 0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def timed(fn: Callable[[], Any], runs: int, warmup: int, device: str) -> list[float]:
    """Wall seconds of each run after `warmup` untimed ones (CUDA work is waited for)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return out


def measure(profile: Profile, device: str, runs: int, batch: int) -> dict[str, Any]:
    m = build(profile, device)
    image = jpeg()
    texts = [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]
    single = timed(lambda: m.manipulate(image, CAPTIONS[0]), runs, 3, device)
    batched = timed(lambda: m.manipulate_batch([image] * batch, texts), max(3, runs // 5), 1, device)
    # The generator alone on a preprocessed batch: how much of the batch time is the network.
    tensors = torch.stack([m.preprocess(image)] * batch)
    net = timed(lambda: m.manipulate_tensors(tensors, texts), max(3, runs // 5), 1, device)
    return {
        "profile": profile.name,
        "device": device,
        "image_size": profile.image_size,
        "width": profile.width,
        "generator_params_M": sum(p.numel() for p in m.generator.parameters()) / 1e6,
        "latency_ms_median": statistics.median(single) * 1e3,
        "latency_ms_p90": float(np.percentile(single, 90)) * 1e3,
        "batch": batch,
        "batch_images_per_s": batch / statistics.median(batched),
        "network_images_per_s": batch / statistics.median(net),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=list(PROFILES))
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when visible")
    parser.add_argument("--runs", type=int, default=30, help="single-image runs (batch runs: runs / 5)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: benchmarks/results/)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    torch.manual_seed(0)
    rows = [measure(PROFILES[p], d, args.runs, args.batch) for d in devices for p in args.profiles]
    columns = ["profile", "device", "image_size", "width", "generator_params_M", "latency_ms_median",
               "latency_ms_p90", "batch", "batch_images_per_s", "network_images_per_s"]  # fmt: skip
    print_table([{**r, "width": f"{r['width']:g}"} for r in rows], columns)
    # The load average says whether other work shared the CPU (OpenMP threads suffer badly when it does).
    meta = {"threads": torch.get_num_threads(), "runs": args.runs, "load_average_1m": os.getloadavg()[0]}
    path = write_json("inference", {**meta, "rows": rows}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
