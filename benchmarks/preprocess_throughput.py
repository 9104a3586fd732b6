"""Preprocess throughput: CUB-sized JPEGs (500x375) -> square Parquet shards, images/s.

    python -m benchmarks.preprocess_throughput [--images 2000] [--workers 0] [--load-size 74]

Runs the same code path as the `preprocess` stage for real datasets (decode with DCT-domain draft,
centre crop, bicubic resize, raw uint8 shards) on generated photo-like JPEGs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import print_table, write_json
from sisgan.data.shards import SourceItem, build_shards


def make_jpegs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """Photo-like 500x375 JPEGs (smooth colour fields, texture, a blob), quality 85."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:375, 0:500].astype(np.float32)
    paths = []
    for i in range(n):
        a, b, c = rng.uniform(0.005, 0.03, 3)
        base = np.stack([np.sin(xx * a + i), np.cos(yy * b), np.sin((xx + yy) * c)], -1) * 60 + 128
        cx, cy, r = rng.uniform(100, 400), rng.uniform(80, 300), rng.uniform(40, 120)
        blob = ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r)[..., None] * rng.uniform(-80, 80, 3)
        noise = rng.normal(0, 12, base.shape)
        arr = np.clip(base + blob + noise, 0, 255).astype(np.uint8)
        path = folder / f"img_{i:05d}.jpg"
        Image.fromarray(arr).save(path, quality=85)
        paths.append(path)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=0, help="0 = one per core")
    ap.add_argument("--load-size", type=int, default=74)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shard-rows", type=int, default=512)
    ap.add_argument(
        "--out", default=None, help="JSON path (default benchmarks/results/preprocess_throughput.json)"
    )
    args = ap.parse_args()
    workers = args.workers or os.cpu_count() or 1

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "jpg").mkdir()
        print(f"writing {args.images} test JPEGs ...")
        paths = make_jpegs(tmp / "jpg", args.images)
        items = [SourceItem(p.stem, 0, "c", "train", ("a bird.",), path=str(p)) for p in paths]
        rows = []
        for w in sorted({1, workers}):
            times = []
            for r in range(args.repeats):
                t0 = time.perf_counter()
                m = build_shards(
                    items,
                    tmp / f"s{w}{r}",
                    dataset="bench",
                    load_size=args.load_size,
                    workers=w,
                    shard_rows=args.shard_rows,
                )
                times.append(time.perf_counter() - t0)
                assert m["splits"]["train"]["rows"] == args.images
            best = min(times)
            rows.append(
                {"workers": w, "images": args.images, "seconds": best, "images_per_s": args.images / best}
            )
    print_table(rows, ["workers", "images", "seconds", "images_per_s"])
    path = write_json("preprocess_throughput", {"load_size": args.load_size, "rows": rows}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
