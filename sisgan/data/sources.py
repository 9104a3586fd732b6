"""Dataset sources: how each dataset's raw data is obtained and turned into preprocessing items.

`download` writes `data/raw/<dataset>/` (atomically: a temporary folder renamed when complete);
`source_items` reads it back as `SourceItem`s for the shard writer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sisgan.config import DATASETS, DataConfig, SynthConfig, check_dataset
from sisgan.data import synth
from sisgan.data.shards import SourceItem
from sisgan.errors import DataError
from sisgan.io import atomic_dir

SYNTH_RECORDS = "records.jsonl"
SOURCE_INFO = "source.json"


def download_synth(cfg: SynthConfig, seed: int, raw_dir: Path) -> dict[str, Any]:
    """Generate synth-birds' scene records and captions (images are rendered by preprocess)."""
    records = synth.generate(cfg, seed)
    info = {"dataset": "synth-birds", "seed": seed, "config": cfg.to_dict(), "images": len(records)}
    with atomic_dir(raw_dir) as tmp:
        with open(tmp / SYNTH_RECORDS, "w") as fh:
            for rec in records:
                fh.write(json.dumps(rec.to_json(), separators=(",", ":")) + "\n")
        (tmp / SOURCE_INFO).write_text(json.dumps(info, indent=2) + "\n")
    return info


def download(dataset: str, data: DataConfig, synth_cfg: SynthConfig, seed: int, raw_dir: Path) -> dict[str, Any]:
    """Fetch or generate a dataset's raw data into raw_dir. Returns a summary for the stage's log."""
    dataset = check_dataset(dataset)
    if dataset == "synth-birds":
        return download_synth(synth_cfg, seed, raw_dir)
    from sisgan.data import real

    return real.download(dataset, data, raw_dir)


def source_items(dataset: str, raw_dir: Path, data: DataConfig) -> tuple[list[SourceItem], dict[str, Any]]:
    """The preprocessing items of a downloaded dataset, plus facts for the manifest."""
    dataset = check_dataset(dataset)
    if not (raw_dir / SOURCE_INFO).is_file():
        raise DataError(f"{raw_dir} holds no downloaded {dataset}; run `dvc repro download` first.")
    info = json.loads((raw_dir / SOURCE_INFO).read_text())
    if info.get("dataset") != dataset:
        raise DataError(f"{raw_dir} holds {info.get('dataset')!r}, not {dataset!r}; rerun `dvc repro download`.")
    if dataset == "synth-birds":
        return _synth_items(raw_dir), {"source": info}
    from sisgan.data import real

    return real.source_items(dataset, raw_dir, data)


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


__all__ = ["DATASETS", "download", "source_items"]
