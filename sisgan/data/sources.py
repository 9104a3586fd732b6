"""Dataset sources: how each dataset's raw data is obtained and turned into shards.

`download` writes `data/raw/<dataset>/` (atomically: a temporary folder renamed when complete);
`source_items` reads it back as `SourceItem`s for the shard writer; `preprocess` is the whole preprocess
stage (items -> shards + manifest + metrics), shared by the DVC stage and the Dask flow.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from sisgan.config import DATASETS, DataConfig, SynthConfig, check_dataset
from sisgan.data import real, synth
from sisgan.data.raw import SOURCE_INFO, read_info, write_info
from sisgan.data.shards import ShardResult, ShardTask, SourceItem, build_shards
from sisgan.io import atomic_dir

SYNTH_RECORDS = "records.jsonl"


def download_synth(cfg: SynthConfig, seed: int, raw_dir: Path) -> dict[str, Any]:
    """Generate synth-birds' scene records and captions (images are rendered by preprocess)."""
    records = synth.generate(cfg, seed)
    info = {"dataset": "synth-birds", "seed": seed, "config": cfg.to_dict(), "images": len(records)}
    with atomic_dir(raw_dir) as tmp:
        with open(tmp / SYNTH_RECORDS, "w") as fh:
            for rec in records:
                fh.write(json.dumps(rec.to_json(), separators=(",", ":")) + "\n")
        write_info(tmp, info)
    return info


def download(dataset: str, data: DataConfig, synth_cfg: SynthConfig, seed: int, raw_dir: Path) -> dict[str, Any]:
    """Fetch or generate a dataset's raw data into raw_dir. Returns a summary for the stage's log."""
    dataset = check_dataset(dataset)
    if dataset == "synth-birds":
        return download_synth(synth_cfg, seed, raw_dir)
    return real.download(dataset, data, raw_dir)


def source_items(dataset: str, raw_dir: Path, data: DataConfig) -> tuple[list[SourceItem], dict[str, Any]]:
    """The preprocessing items of a downloaded dataset, plus facts for the manifest."""
    dataset = check_dataset(dataset)
    info = read_info(raw_dir, dataset)
    if dataset == "synth-birds":
        return _synth_items(raw_dir), {"source": info}
    return real.source_items(dataset, raw_dir, data)


def data_metrics(dataset: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """metrics/data.json: image counts per split and the number of rejected inputs."""
    counts = {split: s["rows"] for split, s in manifest["splits"].items()}
    return {
        "dataset": dataset,
        **{f"{k}_images": v for k, v in counts.items()},
        "rejected": len(manifest["rejected"]),
    }


def preprocess(
    dataset: str,
    raw_dir: Path,
    data: DataConfig,
    out_dir: Path,
    *,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    runner: Callable[[Sequence[ShardTask]], Sequence[ShardResult]] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The preprocess stage: a downloaded dataset -> shards + manifest in out_dir; returns (manifest, metrics).

    runner: how the planned shards are written (default: `workers` local processes; the Dask flow maps them
    over a cluster). Either way the shards, the manifest and the metrics are the same bytes.
    """
    items, extra = source_items(dataset, raw_dir, data)
    manifest = build_shards(
        items,
        out_dir,
        dataset=dataset,
        load_size=data.load_size,
        image_format=data.image_format,
        max_pixels=data.max_pixels,
        shard_rows=data.shard_rows,
        workers=workers,
        extra_manifest=extra,
        progress=progress,
        runner=runner,
    )
    return manifest, data_metrics(dataset, manifest)


def synth_items(records: Iterable[synth.SynthRecord]) -> list[SourceItem]:
    """synth-birds records as preprocessing items (the scene is rendered by the shard writer)."""
    return [
        SourceItem(
            image_id=rec.image_id,
            class_id=rec.class_id,
            class_name=rec.class_name,
            split=rec.split,
            captions=rec.captions,
            scene=rec.scene.to_record(),
            caption_attrs=rec.caption_attrs,
        )
        for rec in records
    ]


def _synth_items(raw_dir: Path) -> list[SourceItem]:
    with open(raw_dir / SYNTH_RECORDS) as fh:
        return synth_items(synth.SynthRecord.from_json(json.loads(line)) for line in fh)


__all__ = ["DATASETS", "SOURCE_INFO", "data_metrics", "download", "preprocess", "source_items"]
