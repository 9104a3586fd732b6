"""Inference speed of `Manipulator.manipulate` (one image) and `manipulate_batch` (a batch).

Two profiles, read from their one definition each: the embedded default (params.yaml) and the paper's
(sisgan.config.PAPER_RECIPE on top of it). The networks are randomly initialised (speed does not depend on
the weights); the input is a 500x375 JPEG, the typical CUB photo, so the timings include decoding and
resizing.

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
from pipeline.common import load_params, section
from sisgan.config import PROFILES as CONFIG_PROFILES
from sisgan.config import DataConfig, GANConfig, TextConfig, apply_profile
from sisgan.inference import Manipulator
from sisgan.models import generator_from_config
from sisgan.text.model import TextModel
from sisgan.text.tokenizer import Vocabulary

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
CAPTIONS = [
    "this bird has a red head, a white belly and short black wings",
    "a small yellow bird with a grey beak and blue wing bars",
    "the bird is brown with a long pointed beak and a spotted chest",
]


@dataclass(frozen=True)
class Profile:
    name: str
    data: DataConfig
    text: TextConfig
    gan: GANConfig


def profile(name: str, params_file: str | Path = PARAMS) -> Profile:
    """ "default": params.yaml as it is (the embedded default); "paper": with the paper profile applied
    (sisgan.config.PAPER_RECIPE). Read, not restated, so the benchmark follows both definitions."""
    params = load_params(params_file)
    if name != "default":
        params = apply_profile(params, name)
    return Profile(name, section(params, DataConfig), section(params, TextConfig), section(params, GANConfig))


PROFILES = ("default", *CONFIG_PROFILES)


def build(p: Profile, device: str) -> Manipulator:
    vocab = Vocabulary.build(CAPTIONS)
    text = TextModel.create(p.text, vocab)
    generator = generator_from_config(p.gan, p.text.hidden_dim, load_vgg=False, vocab_size=len(vocab))
    return Manipulator(generator, text, p.data.load_size, device)


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


def measure(p: Profile, device: str, runs: int, batch: int) -> dict[str, Any]:
    m = build(p, device)
    image = jpeg()
    texts = [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]
    single = timed(lambda: m.manipulate(image, CAPTIONS[0]), runs, 3, device)
    batched = timed(lambda: m.manipulate_batch([image] * batch, texts), max(3, runs // 5), 1, device)
    # The generator alone on a preprocessed batch: how much of the batch time is the network.
    sources = np.stack([m.source(image)] * batch)
    net = timed(lambda: m.manipulate_arrays(sources, texts), max(3, runs // 5), 1, device)
    return {
        "profile": p.name,
        "device": device,
        "image_size": p.gan.image_size,
        "width": p.gan.width,
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
    parser.add_argument("--params", default=str(PARAMS), help="the embedded default (default: the project's)")
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
    rows = [
        measure(profile(p, args.params), d, args.runs, args.batch) for d in devices for p in args.profiles
    ]
    columns = ["profile", "device", "image_size", "width", "generator_params_M", "latency_ms_median",
               "latency_ms_p90", "batch", "batch_images_per_s", "network_images_per_s"]  # fmt: skip
    print_table([{**r, "width": f"{r['width']:g}"} for r in rows], columns)
    # The load average says whether other work shared the CPU (OpenMP threads suffer badly when it does).
    meta = {"threads": torch.get_num_threads(), "runs": args.runs, "load_average_1m": os.getloadavg()[0]}
    path = write_json("inference", {**meta, "rows": rows}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
