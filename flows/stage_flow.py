"""Flow `sisgan-stage`: one DVC stage, with the remote pull before and push after it.

Deployed as `train-gan` (gpu pool) and `evaluate` (cpu pool); the pipeline flow dispatches to it, and it
hands its StageOutcome back as an artifact because the two may run on different machines.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from prefect import flow

from flows import dvc_ops
from flows.outcome import StageOutcome, Status
from flows.shards_dask import DaskOptions, preprocess_on_dask
from flows.tasks import (
    PARENT_RUN_ENV,
    apply_params_overrides,
    collect_outcome,
    commit_stage,
    publish_outcome,
    pull_inputs,
    push_outputs,
    repro,
    stage_changed,
)

DEFAULT_TIMEOUT_MIN = 6 * 60.0
# Long stages get longer; a timeout is there to catch a hung stage, not to cut a healthy one short.
STAGE_TIMEOUT_MIN = {"pretrain_text": 12 * 60.0, "train_gan": 48 * 60.0}
DASK_STAGES = ("preprocess",)  # stages with a shard-parallel Dask path


@dataclasses.dataclass(frozen=True)
class StageRun:
    """How to run a stage here: the remote, retry and timeout policy, Dask, extra environment."""

    remote: str | None = None
    retries: int = 2
    retry_delay_seconds: float = 30.0
    timeout_minutes: float | None = None
    dask: DaskOptions | None = None
    env: dict[str, str] = dataclasses.field(default_factory=dict)

    def timeout_s(self, stage: str) -> float:
        return 60.0 * (self.timeout_minutes or STAGE_TIMEOUT_MIN.get(stage, DEFAULT_TIMEOUT_MIN))


def _on_dask(root: str, stage: str, options: DaskOptions) -> Status:
    # DVC still decides: the Dask path runs only when `dvc status` says the stage changed.
    if not stage_changed(root, stage):
        return "up to date"
    preprocess_on_dask(root, options)
    commit_stage(root, stage)
    return "ran"


def run_stage_here(root: str, stage: str, run: StageRun, outcomes: dict[str, StageOutcome]) -> StageOutcome:
    """Pull inputs (with a remote), reproduce the stage, push its outputs; in this process's checkout."""
    start = time.monotonic()
    if run.remote:
        pull_inputs(root, stage, run.remote, outcomes)
    if run.dask and stage in DASK_STAGES:
        status = _on_dask(root, stage, run.dask)
    else:
        policy = {"retries": run.retries, "retry_delay_seconds": run.retry_delay_seconds}
        status = repro.with_options(**policy)(root, stage, run.env, run.timeout_s(stage))
    if run.remote:
        push_outputs(root, stage, run.remote)
    return collect_outcome(root, stage, status, time.monotonic() - start)


@flow(name="sisgan-stage")
def sisgan_stage(
    stage: str,
    overrides: dict[str, Any] | None = None,
    remote: str | None = None,
    outcomes: dict[str, StageOutcome] | None = None,
    retries: int = 2,
    retry_delay_seconds: float = 30.0,
    timeout_minutes: float | None = None,
    dask: DaskOptions | None = None,
    mlflow_parent_run_id: str | None = None,
    workdir: str = ".",
) -> StageOutcome:
    """Run one DVC stage in this worker's checkout.

    Args:
        stage: a stage name of dvc.yaml.
        overrides: params.yaml values to set first, e.g. {"gan.epochs": 10} (see flows.overrides).
        remote: DVC remote (a configured name, a path or a URL); None = no pull/push.
        outcomes: outcomes of stages run elsewhere in the same pipeline run (their dvc.lock entries).
        retries, retry_delay_seconds: for the stage command (a stage's input errors are not retried).
        timeout_minutes: stop the stage after this long (default per stage).
        dask: run a stage that has a shard-parallel path (preprocess) on this Dask cluster.
        mlflow_parent_run_id: the pipeline's MLflow run, for nesting (shared tracking server only).
        workdir: the checkout (the deployment's pull step already made it the working directory).
    """
    root = str(Path(workdir).resolve())
    dvc_ops.select_stages(root, [stage])  # a stage this checkout's dvc.yaml lacks: fail before touching it
    if overrides:
        apply_params_overrides(root, overrides)
    env = {PARENT_RUN_ENV: mlflow_parent_run_id} if mlflow_parent_run_id else {}
    run = StageRun(remote, retries, retry_delay_seconds, timeout_minutes, dask, env)
    outcome = run_stage_here(root, stage, run, dict(outcomes or {}))
    publish_outcome(outcome)
    return outcome


if __name__ == "__main__":
    import sys

    print(sisgan_stage(sys.argv[1]).model_dump_json(indent=2))
