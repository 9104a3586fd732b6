"""Checkpoints: state_dicts + optimizer states + RNG states + position + config + package version.

Written to a temporary file and renamed (a crash never leaves a half checkpoint), loaded with
`weights_only=True` (no pickled code runs on load). `load_weights` is the one reader of every torch file
the project loads (checkpoints, generator.pt, text weights, VGG/Inception weights): whatever is wrong with
the file, the user gets one sentence naming it, and never the advice to turn the safety check off.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from sisgan.errors import DataError
from sisgan.io import atomic_write

RESUME_REMEDY = "delete it to train from scratch, or restore it from a backup"


def save(path: str | Path, state: dict[str, Any]) -> None:
    from sisgan import __version__

    atomic_write(path, lambda tmp: torch.save({**state, "sisgan_version": __version__}, tmp))


def load_weights(
    path: str | Path, remedy: str, map_location: str | torch.device = "cpu", what: str = "weights file"
) -> Any:
    """torch.load(path, weights_only=True), with every failure as one DataError that ends in `remedy`."""
    path = Path(path)
    if not path.is_file():
        kind = "is a folder, not a file" if path.is_dir() else "not found"
        raise DataError(f"{what} {path} {kind}; {remedy}.")
    if path.stat().st_size == 0:
        raise DataError(f"{what} {path} is empty (0 bytes), so it is not a valid weights file; {remedy}.")
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head not in (b"PK", b"\x80\x02"):  # torch writes a zip archive (older versions: a raw pickle)
        raise DataError(f"{what} {path} is not a weights file (torch did not write it); {remedy}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before refusing
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # torch's own text suggests weights_only=False, which would run whatever the file holds.
        raise DataError(
            f"{what} {path} is not a safe weights file: it holds pickled objects other than tensors, "
            f"which sisgan refuses to load (they could run code); {remedy}."
        ) from None
    except MemoryError:
        raise
    except Exception:  # torch raises RuntimeError, EOFError, KeyError, ... for a damaged file
        raise DataError(
            f"{what} {path} is not a valid weights file (truncated, corrupt or not written by torch); "
            f"{remedy}."
        ) from None


def load(
    path: str | Path, map_location: str | torch.device = "cpu", remedy: str = RESUME_REMEDY
) -> dict[str, Any]:
    """A training checkpoint (a dict of states); see load_weights for the errors."""
    if not Path(path).exists():
        raise DataError(f"checkpoint {path} not found; train first (`dvc repro train_gan`).")
    state = load_weights(path, remedy, map_location, what="checkpoint")
    if not isinstance(state, dict):
        raise DataError(
            f"checkpoint {path} holds a {type(state).__name__}, not a sisgan checkpoint; {remedy}."
        )
    return state
