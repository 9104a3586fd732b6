"""Parquet shards: one row per image, written atomically, described by manifest.json.

Layout of `data/shards/<dataset>/`:
    train-00000.parquet ...   rows of the train split
    test-00000.parquet ...    rows of the test split
    manifest.json             written last: the shard list, row counts, sources and rejected inputs

The folder is built under a temporary name beside it (`.<dataset>.tmp`) and renamed when the manifest is
written, and readers only accept the shards the manifest lists with the row counts it states, so a crash
or a kill never leaves a half shard that looks whole. Worker processes end with the process that started
them, even when it is killed with SIGKILL, so none of them goes on writing after it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sisgan.data.images import RejectedImage, decode_png, encode_png, load_image
from sisgan.data.synth import PARTS, Scene, render
from sisgan.errors import DataError
from sisgan.io import atomic_dir, atomic_write, write_json

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "test")

_SCENE_TYPE = pa.struct(
    [
        ("sky_top", pa.list_(pa.int16())),
        ("sky_bottom", pa.list_(pa.int16())),
        ("branch_rgb", pa.list_(pa.int16())),
        ("branch_angle", pa.float64()),
        ("branch_width", pa.float64()),
        ("x", pa.float64()),
        ("y", pa.float64()),
        ("scale", pa.float64()),
        ("tilt", pa.float64()),
        ("facing", pa.int8()),
    ]
    + [(p, pa.string()) for p in PARTS]
)
_ATTRS_TYPE = pa.list_(pa.struct([(p, pa.string()) for p in PARTS]))


def shard_schema(load_size: int, image_format: str, synthetic: bool) -> pa.Schema:
    image_type = pa.binary(load_size * load_size * 3) if image_format == "raw" else pa.binary()
    fields = [
        ("image_id", pa.string()),
        ("image", image_type),
        ("captions", pa.list_(pa.string())),
        ("class_id", pa.int32()),
        ("class_name", pa.string()),
        ("split", pa.string()),
    ]
    if synthetic:
        fields += [("scene", _SCENE_TYPE), ("caption_attrs", _ATTRS_TYPE)]
    return pa.schema(fields, metadata={"sisgan.schema_version": str(SCHEMA_VERSION)})


@dataclasses.dataclass(frozen=True)
class SourceItem:
    """One input image before preprocessing: a file to decode, or a synthetic scene to render."""

    image_id: str
    class_id: int
    class_name: str
    split: str
    captions: tuple[str, ...]
    path: str | None = None
    scene: Mapping[str, Any] | None = None
    caption_attrs: tuple[Mapping[str, str], ...] | None = None
    # md5 of the file's bytes when it was indexed: set for files read in place from a folder the pipeline
    # does not own (data.extracted), so that a file changed since then is an error, not a silent difference.
    md5: str | None = None


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """Everything one worker needs to write one shard (picklable: also a Prefect/Dask task input)."""

    out_dir: str
    name: str
    items: tuple[SourceItem, ...]
    load_size: int
    image_format: str
    max_pixels: int
    synthetic: bool


@dataclasses.dataclass(frozen=True)
class ShardResult:
    name: str
    split: str
    rows: int
    rejected: tuple[dict[str, str], ...]


# Section: writing.


def _image_of(item: SourceItem, task: ShardTask) -> np.ndarray:
    """[S, S, 3] uint8 for an item; raises RejectedImage with the reason."""
    if not item.captions or not any(c.strip() for c in item.captions):
        raise RejectedImage("no captions for this image")
    if item.scene is not None:
        image, _ = render(Scene.from_record(item.scene), task.load_size)
        return image
    if item.path is None:
        raise RejectedImage("item has neither an image file nor a scene")
    if item.md5 is None:
        return load_image(item.path, task.load_size, task.max_pixels)
    return load_image(_verified_bytes(item), task.load_size, task.max_pixels)


def _verified_bytes(item: SourceItem) -> bytes:
    """The file's bytes, which must be those `download` indexed (one read: hashed, then decoded)."""
    assert item.path is not None
    try:
        data = Path(item.path).read_bytes()
    except OSError as e:
        got = f"cannot be read ({e.strerror or e})"
    else:
        if hashlib.md5(data, usedforsecurity=False).hexdigest() == item.md5:
            return data
        got = "has changed"
    raise DataError(
        f"{item.path} {got} since `download` indexed it (md5 {item.md5}); "
        "rerun `dvc repro -f download` to index the folder again."
    )


def _atomic_write_table(table: pa.Table, path: Path) -> None:
    compression = "zstd" if table.num_rows else None
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression=compression), fsync=True)


def write_shard(task: ShardTask) -> ShardResult:
    """Decode/render the task's items and write one Parquet shard (temporary name, then rename)."""
    columns: dict[str, list[Any]] = {f: [] for f in shard_schema(1, "raw", task.synthetic).names}
    rejected = []
    for item in task.items:
        try:
            image = _image_of(item, task)
        except RejectedImage as e:
            rejected.append({"image_id": item.image_id, "source": item.path or "scene", "reason": str(e)})
            continue
        columns["image_id"].append(item.image_id)
        columns["image"].append(image.tobytes() if task.image_format == "raw" else encode_png(image))
        columns["captions"].append([c for c in item.captions if c.strip()])
        columns["class_id"].append(item.class_id)
        columns["class_name"].append(item.class_name)
        columns["split"].append(item.split)
        if task.synthetic:
            columns["scene"].append(dict(item.scene or {}))
            columns["caption_attrs"].append([dict(a) for a in item.caption_attrs or ()])
    schema = shard_schema(task.load_size, task.image_format, task.synthetic)
    table = pa.Table.from_pydict(columns, schema=schema)
    split = task.items[0].split if task.items else "train"
    _atomic_write_table(table, Path(task.out_dir) / task.name)
    return ShardResult(task.name, split, table.num_rows, tuple(rejected))


def plan_shards(
    items: Sequence[SourceItem],
    out_dir: str | Path,
    load_size: int,
    image_format: str,
    max_pixels: int,
    shard_rows: int,
) -> list[ShardTask]:
    """Split items into per-split shard tasks of at most `shard_rows` items, in a stable order."""
    unknown = sorted({i.split for i in items} - set(SPLITS))
    if unknown:
        raise DataError(f"items have unknown split(s) {unknown}; expected {list(SPLITS)}.")
    synthetic = any(i.scene is not None for i in items)
    tasks = []
    for split in SPLITS:
        rows = [i for i in items if i.split == split]
        for k, start in enumerate(range(0, len(rows), shard_rows)):
            chunk = tuple(rows[start : start + shard_rows])
            tasks.append(
                ShardTask(str(out_dir), f"{split}-{k:05d}.parquet", chunk, load_size, image_format, max_pixels, synthetic)
            )
    return tasks


def _set_parent_death_signal() -> None:
    """Linux: the kernel sends this process SIGKILL when the thread that started it ends."""
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def _die_with_parent(parent_pid: int) -> None:
    """Pool initializer: a worker must not outlive the process that started it (SIGKILL, OOM killer).

    Two guards: the kernel's parent-death signal (Linux), and a thread that waits on the parent's
    sentinel (a pipe the parent holds; it becomes readable when the parent is gone, on every platform).
    """
    import multiprocessing
    from multiprocessing.connection import wait

    if sys.platform.startswith("linux"):
        _set_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGKILL)  # mid-write: the temporary file is never renamed

    threading.Thread(target=watch, name="sisgan-parent-watch", daemon=True).start()


def run_tasks(
    tasks: Sequence[ShardTask], workers: int, progress: Callable[[int], None] | None = None
) -> list[ShardResult]:
    """Write shards in parallel processes (workers <= 1: in this process)."""
    if workers <= 1 or len(tasks) <= 1:
        results = []
        for t in tasks:
            results.append(write_shard(t))
            if progress:
                progress(len(t.items))
        return results
    # spawn: each worker is a child of this process (so the kernel can end it with this process) and
    # starts clean, which is safe with threads in the parent (Prefect, torch).
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )
    with pool:
        results = []
        for t, r in zip(tasks, pool.map(write_shard, tasks), strict=True):
            results.append(r)
            if progress:
                progress(len(t.items))
        return results


def write_manifest(
    out_dir: str | Path,
    dataset: str,
    load_size: int,
    image_format: str,
    results: Iterable[ShardResult],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write manifest.json last (atomically): it is what makes the shards visible to readers."""
    from sisgan import __version__

    results = sorted(results, key=lambda r: r.name)
    splits: dict[str, Any] = {}
    for split in SPLITS:
        shards = [{"file": r.name, "rows": r.rows} for r in results if r.split == split]
        splits[split] = {"rows": sum(s["rows"] for s in shards), "shards": shards}
    rejected = [rej for r in results for rej in r.rejected]
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "dataset": dataset,
        "load_size": load_size,
        "image_format": image_format,
        "image_shape": [load_size, load_size, 3],
        "splits": splits,
        "rejected": rejected,
        "sisgan_version": __version__,
        **(extra or {}),
    }
    write_json(Path(out_dir) / MANIFEST, manifest)
    return manifest


def build_shards(
    items: Sequence[SourceItem],
    out_dir: str | Path,
    *,
    dataset: str,
    load_size: int,
    image_format: str = "raw",
    max_pixels: int = 50_000_000,
    shard_rows: int = 1024,
    workers: int = 1,
    extra_manifest: Mapping[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    runner: Callable[[Sequence[ShardTask]], Sequence[ShardResult]] | None = None,
) -> dict[str, Any]:
    """Preprocess items into shards + manifest in `out_dir` (replaced as a whole). Returns the manifest.

    runner writes the planned shards (default: `run_tasks` on `workers` processes); the Dask flow passes one
    that maps them over a cluster. Fails (and leaves `out_dir` as it was) when every image was rejected.
    """
    with atomic_dir(out_dir) as tmp:  # replaces out_dir only once the manifest is written
        tasks = plan_shards(items, tmp, load_size, image_format, max_pixels, shard_rows)
        results = list(runner(tasks)) if runner is not None else run_tasks(tasks, workers, progress)
        if not any(r.rows for r in results):
            reasons = sorted({rej["reason"] for r in results for rej in r.rejected})[:3]
            raise DataError(
                f"every input image was rejected (e.g. {reasons}); check the raw data in data/raw."
            )
        return write_manifest(tmp, dataset, load_size, image_format, results, extra_manifest)


# Section: reading.


def read_manifest(shard_dir: str | Path) -> dict[str, Any]:
    path = Path(shard_dir) / MANIFEST
    if not path.is_file():
        raise DataError(f"no {MANIFEST} in {shard_dir}: the shards are missing or incomplete; run `dvc repro preprocess`.")
    manifest = json.loads(path.read_text())
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DataError(
            f"{path} has schema version {manifest.get('schema_version')}, this code reads {SCHEMA_VERSION}; "
            "rerun `dvc repro preprocess`."
        )
    return manifest


def iter_shard_tables(shard_dir: str | Path, split: str) -> Iterator[pa.Table]:
    """The split's shards as Arrow tables, each checked against the manifest's row count."""
    manifest = read_manifest(shard_dir)
    if split not in manifest["splits"]:
        raise DataError(f"split {split!r} is not in {shard_dir}; splits are {list(manifest['splits'])}.")
    for shard in manifest["splits"][split]["shards"]:
        path = Path(shard_dir) / shard["file"]
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as e:
            raise DataError(f"shard {path} is unreadable ({e}); rerun `dvc repro preprocess`.") from None
        if table.num_rows != shard["rows"]:
            raise DataError(
                f"shard {path} has {table.num_rows} rows, the manifest says {shard['rows']}; "
                "rerun `dvc repro preprocess`."
            )
        yield table


@dataclasses.dataclass
class SplitData:
    """One split in memory. images: [N, S, S, 3] uint8."""

    image_ids: list[str]
    images: np.ndarray
    captions: list[list[str]]
    class_ids: np.ndarray
    class_names: list[str]
    scenes: list[dict[str, Any]] | None = None
    caption_attrs: list[list[dict[str, str | None]]] | None = None

    def __len__(self) -> int:
        return len(self.image_ids)


def _images_from_column(column: pa.ChunkedArray, image_format: str, size: int) -> np.ndarray:
    if image_format == "raw":
        # Zero-copy view of the fixed-size binary buffer, then one copy into a contiguous array.
        chunks = [np.frombuffer(c.buffers()[1], np.uint8)[c.offset * size * size * 3 :][: len(c) * size * size * 3]
                  for c in column.chunks]
        flat = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
        return flat.reshape(-1, size, size, 3)
    return np.stack([decode_png(b) for b in column.to_pylist()]) if len(column) else np.zeros((0, size, size, 3), np.uint8)


def load_split(shard_dir: str | Path, split: str) -> SplitData:
    """Read a whole split (as listed in the manifest) into memory."""
    manifest = read_manifest(shard_dir)
    tables = list(iter_shard_tables(shard_dir, split))
    if not tables:
        raise DataError(f"split {split!r} of {shard_dir} has no rows; check the manifest's rejected list.")
    table = pa.concat_tables(tables)
    size = manifest["load_size"]
    images = _images_from_column(table.column("image"), manifest["image_format"], size)
    synthetic = "scene" in table.column_names
    return SplitData(
        image_ids=table.column("image_id").to_pylist(),
        images=images,
        captions=table.column("captions").to_pylist(),
        class_ids=table.column("class_id").to_numpy().astype(np.int64),
        class_names=table.column("class_name").to_pylist(),
        scenes=table.column("scene").to_pylist() if synthetic else None,
        caption_attrs=table.column("caption_attrs").to_pylist() if synthetic else None,
    )
