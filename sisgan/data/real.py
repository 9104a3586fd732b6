"""Real datasets (CUB-200-2011, Oxford-102 flowers) with the Reed et al. captions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sisgan.config import DataConfig
from sisgan.data.shards import SourceItem
from sisgan.errors import DataError


def _not_yet(dataset: str) -> DataError:
    return DataError(
        f"dataset {dataset!r} is recognised but its downloader is not implemented yet; "
        "use dataset: synth-birds for now."
    )


def download(dataset: str, data: DataConfig, raw_dir: Path) -> dict[str, Any]:
    raise _not_yet(dataset)


def source_items(dataset: str, raw_dir: Path, data: DataConfig) -> tuple[list[SourceItem], dict[str, Any]]:
    raise _not_yet(dataset)
