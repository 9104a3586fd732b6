"""Flow `sisgan-pipeline`: every stage of dvc.yaml in order, as `dvc repro --single-item` tasks.

DVC's cache decides what reruns; Prefect adds retries, timeouts, logs in the UI, GPU dispatch and a report.
A stage named in `dispatch` runs as a flow run of that deployment (its work pool) when the deployment
exists, and here otherwise, so the same flow works on a laptop and across machines.

Run it here (no server needed): `python -m flows.pipeline_flow`; deployed: see docs/orchestration.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows import dvc_ops
from flows.outcome import StageOutcome
from flows.overrides import flatten
from flows.report import DEFAULT_MLFLOW_UI
from flows.shards_dask import DaskOptions
from flows.stage_flow import StageRun, run_stage_here
from flows.tasks import (
    apply_params_overrides,
    close_pipeline_run,
    deployment_exists,
    dispatch_stage,
    open_pipeline_run,
    publish_report,
    read_params,
    remote_parent_run,
    stage_env,
)

# Stage -> deployment that runs it elsewhere. The GAN trains on the gpu pool when that deployment exists.
DEFAULT_DISPATCH = {"train_gan": "sisgan-stage/train-gan"}
DISPATCH_SLACK_S = 3600.0  # a dispatched stage may wait this long for a free worker on top of its timeout


def _dispatched(
    deployment: str, stage: str, run: StageRun, overrides: dict[str, Any], outcomes: dict[str, StageOutcome],
    parent: dict[str, Any] | None,
) -> StageOutcome:  # fmt: skip
    parameters = {
        "stage": stage,
        "overrides": overrides,
        "remote": run.remote,
        "outcomes": {name: o.model_dump(mode="json") for name, o in outcomes.items()},
        "retries": run.retries,
        "retry_delay_seconds": run.retry_delay_seconds,
        "timeout_minutes": run.timeout_minutes,
        "dask": run.dask.model_dump() if run.dask else None,
        "mlflow_parent_run_id": remote_parent_run(parent),
    }
    return dispatch_stage(deployment, parameters, run.timeout_s(stage) + DISPATCH_SLACK_S)


@flow(name="sisgan-pipeline")
def sisgan_pipeline(
    dataset: str | None = None,
    overrides: dict[str, Any] | None = None,
    stages: list[str] | None = None,
    remote: str | None = None,
    dispatch: dict[str, str] | None = None,
    dask: DaskOptions | None = None,
    retries: int = 2,
    retry_delay_seconds: float = 30.0,
    timeout_minutes: float | None = None,
    mlflow_ui: str | None = DEFAULT_MLFLOW_UI,
    workdir: str = ".",
) -> dict[str, str]:
    """Reproduce the pipeline; returns the MLflow run ids (stage -> run id, and 'pipeline').

    Args:
        dataset: shorthand for the `dataset` override (synth-birds | cub | flowers).
        overrides: params.yaml values for this run, nested or dotted: {"data.load_size": 64}. They are
            written into the checkout's params.yaml, so params.yaml, dvc.lock and outputs stay consistent.
        stages: which stages of dvc.yaml to run (any order; default all). Their inputs must exist or be
            pullable from `remote`.
        remote: DVC remote (a configured name, a path or a URL): each stage pulls its inputs before and
            pushes its outputs after, so stages on different machines meet there. None = one checkout.
        dispatch: stage -> deployment to run it on (default {"train_gan": "sisgan-stage/train-gan"}, used
            only if that deployment exists); {} runs everything here.
        dask: run preprocessing shard-parallel on Dask (a scheduler address, or a local cluster).
        retries, retry_delay_seconds: per stage command (a stage's input errors are not retried).
        timeout_minutes: per stage (default: 6 h, pretrain_text 12 h, train_gan 48 h).
        mlflow_ui: MLflow UI address for the report's links when tracking is local (`make mlflow-ui`).
        workdir: the checkout (a deployment's pull step already made it the working directory).
    """
    log = get_run_logger()
    root = str(Path(workdir).resolve())
    order = dvc_ops.select_stages(root, stages)
    wanted = {**({"dataset": dataset} if dataset else {}), **flatten(overrides or {})}
    if wanted:
        apply_params_overrides(root, wanted)
    params = read_params(root)
    parent = open_pipeline_run(root, params, str(flow_run.id) if flow_run.id else None)
    run = StageRun(remote, retries, retry_delay_seconds, timeout_minutes, dask, stage_env(parent))
    targets = DEFAULT_DISPATCH if dispatch is None else dispatch
    outcomes: dict[str, StageOutcome] = {}
    try:
        for stage in order:
            deployment = targets.get(stage)
            if deployment and deployment_exists(deployment):
                outcomes[stage] = _dispatched(deployment, stage, run, wanted, outcomes, parent)
                continue
            if deployment:
                log.info(f"deployment {deployment!r} not found: running stage {stage!r} here")
            outcomes[stage] = run_stage_here(root, stage, run, outcomes)
    except BaseException:
        if parent:
            close_pipeline_run(parent, failed=True)
        raise
    if parent:
        close_pipeline_run(parent, failed=False)
    title = f"sisgan pipeline: {params['dataset']}"
    return publish_report(root, title, outcomes, wanted, parent, mlflow_ui)


if __name__ == "__main__":
    print(sisgan_pipeline())
