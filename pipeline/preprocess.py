"""Stage `preprocess`: raw data -> Parquet shards + manifest.json in data/shards/<dataset>/."""

from __future__ import annotations

import os

from tqdm import tqdm

from pipeline.common import cli, raw_dir, section, shard_dir, stage_params
from pipeline.summary import write_metrics
from sisgan.config import DataConfig
from sisgan.data.shards import build_shards
from sisgan.data.sources import source_items


def data_metrics(dataset: str, manifest: dict) -> dict:
    """metrics/data.json: image counts per split and the number of rejected inputs."""
    counts = {split: s["rows"] for split, s in manifest["splits"].items()}
    return {
        "dataset": dataset,
        **{f"{k}_images": v for k, v in counts.items()},
        "rejected": len(manifest["rejected"]),
    }


@cli
def main() -> None:
    params = stage_params(__doc__.splitlines()[0])
    data = section(params, DataConfig)
    dataset = params["dataset"]
    items, extra = source_items(dataset, raw_dir(data.root, dataset), data)
    if "split_check" in extra:
        print(f"{dataset}: split sizes {extra['split_check']}")
    workers = data.workers or os.cpu_count() or 1
    out = shard_dir(data.root, dataset)
    with tqdm(total=len(items), desc=f"preprocess {dataset}", unit="img") as bar:
        manifest = build_shards(
            items,
            out,
            dataset=dataset,
            load_size=data.load_size,
            image_format=data.image_format,
            max_pixels=data.max_pixels,
            shard_rows=data.shard_rows,
            workers=workers,
            extra_manifest=extra,
            progress=bar.update,
        )
    counts = {split: s["rows"] for split, s in manifest["splits"].items()}
    write_metrics("data", data_metrics(dataset, manifest))
    print(f"preprocess: {counts} rows, {len(manifest['rejected'])} rejected -> {out}")
    for rej in manifest["rejected"][:10]:
        print(f"  rejected {rej['image_id']}: {rej['reason']}")


if __name__ == "__main__":
    main()
