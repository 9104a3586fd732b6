"""Atomic writes: a file or folder appears whole under its final name, or not at all.

Every output of the pipeline (shards, manifests, weights, metrics) goes through these, so a crash, a
full disk or a kill never leaves a half-written file that looks complete, and a failed write never
removes what was there before.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _temporary(path: Path) -> Path:
    # Beside the target (same filesystem: os.replace is atomic), hidden, and unique per process.
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write(path: str | Path, write: Callable[[Path], Any], *, fsync: bool = False) -> Path:
    """Call write(tmp) on a temporary path beside `path`, then rename it to `path`.

    On any error (or KeyboardInterrupt) the temporary file is removed and `path` is left as it was.
    fsync: flush the file to disk before the rename (for data that must survive a power loss).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2) + "\n")


def save_image(path: str | Path, image: Any) -> Path:
    """A PIL image written atomically, in the format its final name says (.png, .jpg, ...)."""
    from PIL import Image

    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image extension {path.suffix!r}; use .png or .jpg")
    return atomic_write(path, lambda tmp: image.save(tmp, format=fmt))


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name; on success it replaces `path` (and what was there).

        with atomic_dir("data/raw/flowers") as tmp:
            (tmp / "a.txt").write_text(...)

    On an error the temporary folder is removed and `path` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)  # left by an earlier run that was killed
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
