"""Shard-parallel preprocessing: one Prefect task per Parquet shard, mapped over a Dask cluster.

For datasets larger than one machine comfortably preprocesses. It calls the function the `preprocess`
stage calls (`sisgan.data.sources.preprocess`) with a shard runner that maps the shards over Dask, so it
writes exactly what the stage writes and the DVC hash of the output is the same; the pipeline flow then
records it with `dvc commit`.
Dask workers must see the checkout at the same path (one machine, or a shared filesystem).

Needs the `dask` extra (prefect-dask). Standalone: `python -m flows.shards_dask [address]`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from pipeline.common import load_params, raw_dir, section, shard_dir
from pipeline.summary import write_metrics
from sisgan.config import DataConfig
from sisgan.data.shards import ShardResult, ShardTask, write_shard
from sisgan.data.sources import preprocess


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


# Inputs are whole shards of items: hashing them for a cache key would cost more than writing them.
@task(name="write-shard", cache_policy=NO_CACHE, persist_result=False, retries=1)
def write_one(shard: ShardTask) -> ShardResult:
    return write_shard(shard)


def map_shards(tasks: Sequence[ShardTask]) -> list[ShardResult]:
    """`sisgan.data.sources.preprocess`'s shard runner: one mapped task per shard, on the flow's runner."""
    return list(write_one.map(list(tasks)).result())


@flow(name="sisgan-shards")
def write_shards(root: str) -> dict[str, int]:
    """The preprocess stage's own function, with each shard written as a mapped task (on the task runner
    the caller chose); then metrics/data.json, as the stage writes it."""
    params = load_params(Path(root) / "params.yaml")
    data, dataset = section(params, DataConfig), params["dataset"]
    raw = Path(root) / raw_dir(data.root, dataset)
    out = (Path(root) / shard_dir(data.root, dataset)).resolve()  # workers may run elsewhere: absolute
    manifest, metrics = preprocess(dataset, raw, data, out, runner=map_shards)
    write_metrics("data", metrics, root)
    return {split: s["rows"] for split, s in manifest["splits"].items()}


def preprocess_on_dask(root: str | Path, options: DaskOptions | None = None) -> dict[str, int]:
    """Run the shard flow on a Dask task runner; returns rows per split."""
    options = options or DaskOptions()
    return write_shards.with_options(task_runner=dask_runner(options))(str(Path(root).resolve()))


if __name__ == "__main__":
    print(preprocess_on_dask(".", DaskOptions(address=sys.argv[1] if len(sys.argv) > 1 else None)))
