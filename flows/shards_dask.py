"""Shard-parallel preprocessing: one Prefect task per Parquet shard, mapped over a Dask cluster.

For datasets larger than one machine comfortably preprocesses. It writes exactly what the `preprocess`
stage writes (the same sisgan.data.shards functions, the same shard plan), so the DVC hash of the
output is the same as the single-process stage's; the pipeline flow then records it with `dvc commit`.
Dask workers must see the checkout at the same path (one machine, or a shared filesystem).

Needs the `dask` extra (prefect-dask). Standalone: `python -m flows.shards_dask [address]`.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from pipeline.common import load_params, raw_dir, section, shard_dir
from pipeline.preprocess import data_metrics
from pipeline.summary import write_metrics
from sisgan.config import DataConfig
from sisgan.data.shards import ShardResult, ShardTask, plan_shards, write_manifest, write_shard
from sisgan.data.sources import source_items
from sisgan.errors import DataError


class DaskOptions(BaseModel):
    """Where shard tasks run: an existing scheduler (`tcp://host:8786`), or a local cluster of n_workers."""

    address: str | None = None
    n_workers: int = 2
    threads_per_worker: int = 1


def dask_runner(options: DaskOptions) -> Any:
    from prefect_dask import DaskTaskRunner

    if options.address:
        return DaskTaskRunner(address=options.address)
    cluster = {
        "n_workers": options.n_workers,
        "threads_per_worker": options.threads_per_worker,
        "processes": True,  # shards are CPU-bound Python: threads would share one GIL
        "host": "127.0.0.1",
        "dashboard_address": "127.0.0.1:0",
    }
    return DaskTaskRunner(cluster_kwargs=cluster)


@task(name="plan-shards", cache_policy=NO_CACHE, persist_result=False)
def plan(root: str) -> tuple[list[ShardTask], dict[str, Any]]:
    """The stage's shard plan from the checkout's params and raw data; empties the output folder."""
    params = load_params(Path(root) / "params.yaml")
    data, dataset = section(params, DataConfig), params["dataset"]
    items, extra = source_items(dataset, Path(root) / raw_dir(data.root, dataset), data)
    out = (Path(root) / shard_dir(data.root, dataset)).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tasks = plan_shards(items, out, data.load_size, data.image_format, data.max_pixels, data.shard_rows)
    meta = {
        "dataset": dataset,
        "out": str(out),
        "load_size": data.load_size,
        "image_format": data.image_format,
    }
    return tasks, {**meta, "extra": extra}


# Inputs are whole shards of items: hashing them for a cache key would cost more than writing them.
@task(name="write-shard", cache_policy=NO_CACHE, persist_result=False, retries=1)
def write_one(shard: ShardTask) -> ShardResult:
    return write_shard(shard)


@task(name="write-manifest", cache_policy=NO_CACHE, persist_result=False)
def finish(root: str, meta: dict[str, Any], results: list[ShardResult]) -> dict[str, int]:
    """Manifest and metrics/data.json (+ its summary), as the preprocess stage writes them."""
    if not any(r.rows for r in results):
        reasons = sorted({rej["reason"] for r in results for rej in r.rejected})[:3]
        raise DataError(f"every input image was rejected (e.g. {reasons}); check the raw data in data/raw.")
    manifest = write_manifest(
        meta["out"], meta["dataset"], meta["load_size"], meta["image_format"], results, meta["extra"]
    )
    write_metrics("data", data_metrics(meta["dataset"], manifest), root)
    return {split: s["rows"] for split, s in manifest["splits"].items()}


@flow(name="sisgan-shards")
def write_shards(root: str) -> dict[str, int]:
    """Plan, write each shard as a mapped task (on the task runner the caller chose), then the manifest."""
    tasks, meta = plan(root)
    results = write_one.map(tasks).result()
    return finish(root, meta, list(results))


def preprocess_on_dask(root: str | Path, options: DaskOptions | None = None) -> dict[str, int]:
    """Run the shard flow on a Dask task runner; returns rows per split."""
    options = options or DaskOptions()
    return write_shards.with_options(task_runner=dask_runner(options))(str(Path(root).resolve()))


if __name__ == "__main__":
    print(preprocess_on_dask(".", DaskOptions(address=sys.argv[1] if len(sys.argv) > 1 else None)))
