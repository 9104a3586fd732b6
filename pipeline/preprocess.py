"""Stage `preprocess`: raw data -> Parquet shards + manifest.json in data/shards/<dataset>/."""

from __future__ import annotations

import os

from tqdm import tqdm

from pipeline.common import cli, raw_dir, section, shard_dir, stage_params
from pipeline.summary import write_metrics
from sisgan.config import DataConfig
from sisgan.data.sources import preprocess


@cli
def main() -> None:
    params = stage_params(__doc__.splitlines()[0])
    data = section(params, DataConfig)
    dataset = params["dataset"]
    workers = data.workers or os.cpu_count() or 1
    out = shard_dir(data.root, dataset)
    with tqdm(desc=f"preprocess {dataset}", unit="img") as bar:
        manifest, metrics = preprocess(
            dataset, raw_dir(data.root, dataset), data, out, workers=workers, progress=bar.update
        )
    if "split_check" in manifest:
        print(f"{dataset}: split sizes {manifest['split_check']}")
    write_metrics("data", metrics)
    counts = {split: s["rows"] for split, s in manifest["splits"].items()}
    print(f"preprocess: {counts} rows, {len(manifest['rejected'])} rejected -> {out}")
    for rej in manifest["rejected"][:10]:
        print(f"  rejected {rej['image_id']}: {rej['reason']}")


if __name__ == "__main__":
    main()
