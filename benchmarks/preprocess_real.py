"""Preprocess throughput on the real-dataset path: a CUB-layout raw folder -> Parquet shards, images/s.

    python -m benchmarks.preprocess_real [--images 2000] [--workers 0] [--load-size 74]

Unlike `preprocess_throughput` (items built by hand), this times what the `preprocess` stage does for
`dataset: cub`: `sources.source_items` (images.txt index, caption files, class splits) and then
`build_shards`, on CUB-sized (500x375) photo-like JPEGs laid out as CUB_200_2011/ + cvpr2016_cub/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import print_table, write_json
from benchmarks.preprocess_throughput import make_jpegs
from sisgan.config import DataConfig
from sisgan.data import sources
from sisgan.data.shards import build_shards

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=0, help="0 = one per core")
    ap.add_argument("--load-size", type=int, default=74)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--shard-rows", type=int, default=512)
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/preprocess_real.json)")
    args = ap.parse_args()
    workers = args.workers or os.cpu_count() or 1

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw" / "cub"
        print(f"writing a CUB-layout folder with {args.images} JPEGs ...")
        make_cub_tree(raw, args.images)
        data = DataConfig(root=tmp, load_size=args.load_size, workers=workers)
        rows = []
        for w in sorted({1, workers}):
            times = []
            for r in range(args.repeats):
                t0 = time.perf_counter()
                items, extra = sources.source_items("cub", raw, data)
                m = build_shards(
                    items,
                    Path(tmp) / f"s{w}{r}",
                    dataset="cub",
                    load_size=args.load_size,
                    workers=w,
                    shard_rows=args.shard_rows,
                    extra_manifest=extra,
                )
                times.append(time.perf_counter() - t0)
                assert sum(s["rows"] for s in m["splits"].values()) == args.images
            best = min(times)
            rows.append(
                {"workers": w, "images": args.images, "seconds": best, "images_per_s": args.images / best}
            )
    print_table(rows, ["workers", "images", "seconds", "images_per_s"])
    path = write_json("preprocess_real", {"load_size": args.load_size, "rows": rows}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
