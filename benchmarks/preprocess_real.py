"""Preprocess throughput on the real-dataset path: a CUB-layout raw folder -> Parquet shards, images/s.

    python -m benchmarks.preprocess_real [--images 2000] [--workers 0] [--load-size 74 [146 ...]]
    python -m benchmarks.preprocess_real --extracted ../shared/data/real/flowers --dataset flowers \
        --load-size 74 146

Unlike `preprocess_throughput` (items built by hand), this times what the `preprocess` stage does
(`sisgan.data.sources.preprocess`: the index, caption files and class splits, then the shards).
Without --extracted it runs on CUB-sized (500x375) photo-like JPEGs laid out as CUB_200_2011/ +
cvpr2016_cub/. With --extracted it first indexes that folder as the `download` stage does for
`data.extracted` (timed apart), then times preprocess on the real JPEGs, read in place and md5-checked.
The 1-minute load average is recorded before and after each row: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import print_table, write_json
from benchmarks.preprocess_throughput import make_jpegs
from sisgan.config import DataConfig, SynthConfig
from sisgan.data import sources

N_CLASSES = 20  # 15 train + 5 test, as CUB's 150/50 split in miniature


def make_cub_tree(raw: Path, n: int) -> None:
    """A raw/cub folder in the layout `download` leaves: images, index files, Reed captions, source.json."""
    root, caps = raw / "CUB_200_2011", raw / "cvpr2016_cub"
    classes = [f"{c + 1:03d}.Bird_{c + 1}" for c in range(N_CLASSES)]
    (raw / "jpg-src").mkdir(parents=True)
    images, labels = [], []
    for i, path in enumerate(make_jpegs(raw / "jpg-src", n), 1):
        cls = classes[i % N_CLASSES]
        dest = root / "images" / cls / f"Bird_{i:05d}.jpg"
        dest.parent.mkdir(parents=True, exist_ok=True)
        path.rename(dest)
        images.append(f"{i} {cls}/{dest.name}\n")
        labels.append(f"{i} {i % N_CLASSES + 1}\n")
        cap = caps / "text_c10" / cls / f"{dest.stem}.txt"
        cap.parent.mkdir(parents=True, exist_ok=True)
        cap.write_text("".join(f"this bird has a red crown and grey wings, number {j}.\n" for j in range(10)))
    shutil.rmtree(raw / "jpg-src")
    (root / "images.txt").write_text("".join(images))
    (root / "image_class_labels.txt").write_text("".join(labels))
    (root / "classes.txt").write_text("".join(f"{k} {c}\n" for k, c in enumerate(classes, 1)))
    (caps / "trainvalclasses.txt").write_text("".join(f"{c}\n" for c in classes[:15]))
    (caps / "testclasses.txt").write_text("".join(f"{c}\n" for c in classes[15:]))
    info = {"dataset": "cub", "images": n, "archives": [], "published": False, "expected": {}}
    (raw / sources.SOURCE_INFO).write_text(json.dumps(info))


def _time_preprocess(
    dataset: str, raw: Path, root: Path, load_size: int, workers: int, repeats: int, shard_rows: int
) -> dict[str, Any]:
    data = DataConfig(
        root=str(root), load_size=load_size, workers=workers, shard_rows=shard_rows, verify_counts=False
    )
    times, rows = [], 0
    load_before = os.getloadavg()[0]
    for r in range(repeats):
        t0 = time.perf_counter()
        manifest, _ = sources.preprocess(
            dataset, raw, data, root / f"shards-{load_size}-{workers}-{r}", workers=workers
        )
        times.append(time.perf_counter() - t0)
        rows = sum(s["rows"] for s in manifest["splits"].values())
    best = min(times)
    return {
        "load_size": load_size,
        "workers": workers,
        "images": rows,
        "seconds": best,
        "images_per_s": rows / best,
        "load_1min": f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000, help="generated images (without --extracted)")
    ap.add_argument("--extracted", default=None, help="a real dataset folder in the official layout")
    ap.add_argument("--dataset", default="cub", choices=["cub", "flowers"])
    ap.add_argument("--workers", type=int, default=0, help="0 = one per core")
    ap.add_argument("--load-size", type=int, nargs="+", default=[74])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--shard-rows", type=int, default=512)
    ap.add_argument(
        "--out", default=None, help="JSON path (default benchmarks/results/preprocess_real[_<dataset>].json)"
    )
    args = ap.parse_args()
    workers = args.workers or os.cpu_count() or 1
    dataset = args.dataset if args.extracted else "cub"

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw" / dataset
        payload: dict[str, Any] = {"dataset": dataset}
        if args.extracted:
            data = DataConfig(root=tmp, extracted=args.extracted, verify_counts=False)
            t0 = time.perf_counter()
            info = sources.download(dataset, data, SynthConfig(), 0, raw)
            payload["extracted"] = {
                "folder": args.extracted,
                "images": info["images"],
                "index_seconds": time.perf_counter() - t0,
            }
            print(
                f"indexed {info['images']} images of {args.extracted} "
                f"in {payload['extracted']['index_seconds']:.1f} s"
            )
        else:
            print(f"writing a CUB-layout folder with {args.images} JPEGs ...")
            make_cub_tree(raw, args.images)
        rows = [
            _time_preprocess(dataset, raw, Path(tmp), size, w, args.repeats, args.shard_rows)
            for size in args.load_size
            for w in sorted({1, workers})
        ]
    print_table(rows, ["load_size", "workers", "images", "seconds", "images_per_s", "load_1min"])
    name = f"preprocess_real_{dataset}" if args.extracted else "preprocess_real"
    path = write_json(name, {**payload, "rows": rows}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
