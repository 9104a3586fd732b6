"""The contract of a downloaded dataset folder, `data/raw/<dataset>/`, shared by every source.

`download` (sisgan.data.sources for synth-birds, sisgan.data.real for CUB and Oxford-102) writes the folder
with a `source.json` saying what it holds and where it came from; `preprocess` reads it back. Both sides
import this module, never each other's private names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sisgan.errors import DataError
from sisgan.io import write_json

SOURCE_INFO = "source.json"


def write_info(folder: str | Path, info: dict[str, Any]) -> None:
    write_json(Path(folder) / SOURCE_INFO, info)


def read_info(raw_dir: str | Path, dataset: str) -> dict[str, Any]:
    """source.json of a downloaded dataset; a missing or foreign folder is a one-line error."""
    raw_dir = Path(raw_dir)
    path = raw_dir / SOURCE_INFO
    if not path.is_file():
        raise DataError(f"{raw_dir} holds no downloaded {dataset}; run `dvc repro download` first.")
    info = json.loads(path.read_text())
    if info.get("dataset") != dataset:
        raise DataError(f"{raw_dir} holds {info.get('dataset')!r}, not {dataset!r}; rerun `dvc repro download`.")
    return info
