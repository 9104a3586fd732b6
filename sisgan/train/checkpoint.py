"""Checkpoints: state_dicts + optimizer states + RNG states + position + config + package version.

Written to a temporary file and renamed (a crash never leaves a half checkpoint), loaded with
`weights_only=True` (no pickled code runs on load).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sisgan.errors import DataError
from sisgan.io import atomic_write


def save(path: str | Path, state: dict[str, Any]) -> None:
    from sisgan import __version__

    atomic_write(path, lambda tmp: torch.save({**state, "sisgan_version": __version__}, tmp))


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise DataError(f"checkpoint {path} not found; train first (`dvc repro train_gan`).") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise DataError(f"checkpoint {path} is unreadable ({e}); delete it to start over.") from None
