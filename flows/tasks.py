"""Prefect tasks: each wraps one DVC command, one sisgan call or one Prefect API call.

Retries live here (transfers) or are set per stage by the flow (`dvc repro`). Task results are not
cached or persisted: DVC is the cache, and what a later task needs travels as return values.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows import dvc_ops
from flows.outcome import (
    StageFailed,
    StageOutcome,
    StageUserError,
    Status,
    retry_unless_user_error,
    status_from_output,
)
from flows.overrides import apply_overrides
from flows.report import collect_documents, find_runs, render_report
from flows.runner import CommandResult, child_env, stream_command

OUTCOME_ARTIFACT = "sisgan-stage-outcome"  # artifact type a dispatched stage flow hands its outcome back in
REPORT_KEY = "sisgan-pipeline-report"
PARENT_RUN_ENV = "SISGAN_MLFLOW_PARENT_RUN_ID"  # read by sisgan.tracking.stage_run: stage runs nest under it
TRANSFER_TIMEOUT_S = 6 * 3600.0
QUIET: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


def _run_dvc(
    root: str, *args: str, env: dict[str, str] | None = None, timeout_s: float | None = None
) -> CommandResult:
    log = get_run_logger()
    result = stream_command(dvc_ops.dvc(*args), root, log.info, env=child_env(env), timeout_s=timeout_s)
    if result.returncode != 0:
        raise StageFailed(f"`dvc {' '.join(args)}`", result)
    return result


# Section: the checkout.


@task(name="apply-overrides", **QUIET)
def apply_params_overrides(root: str, overrides: dict[str, Any]) -> dict[str, list[Any]]:
    """Write the run's params overrides into the checkout's params.yaml (see flows.overrides for why)."""
    changes = apply_overrides(root, overrides)
    for key, (old, new) in changes.items():
        get_run_logger().info(f"params.yaml: {key}: {old!r} -> {new!r}")
    return {k: [old, new] for k, (old, new) in changes.items()}


@task(name="read-params", **QUIET)
def read_params(root: str) -> dict[str, Any]:
    from pipeline.common import load_params

    return load_params(Path(root) / "params.yaml")


# Section: the DVC remote.


def _remote_name(root: str, remote: str) -> str:
    register, name = dvc_ops.remote_setup(root, remote)
    if register:
        _run_dvc(root, *register)
    return name


@task(name="pull-inputs", retries=3, retry_delay_seconds=10, **QUIET)
def pull_inputs(root: str, stage: str, remote: str, outcomes: dict[str, StageOutcome]) -> list[str]:
    """Fetch the outputs of the stages `stage` reads; and its own, when only they are missing.

    Entries of stages that ran on other machines are merged into dvc.lock first: that is what tells
    `dvc pull` which hashes to fetch. Returns the stages whose outputs were pulled.
    """
    log = get_run_logger()
    name = _remote_name(root, remote)
    upstream = dvc_ops.upstream_stages(root, stage)
    known = {s: outcomes[s] for s in [*upstream, stage] if s in outcomes and outcomes[s].lock}
    if merged := dvc_ops.merge_lock_entries(root, {s: o.lock for s, o in known.items()}):
        log.info(f"dvc.lock: entries of {merged} from the machines that ran them")
    dvc_ops.write_small_files(root, {p: t for o in known.values() for p, t in o.files.items()})
    pulled = [s for s in upstream if dvc_ops.lock_entry(root, s)]
    if pulled:
        _run_dvc(root, "pull", "-r", name, *pulled, timeout_s=TRANSFER_TIMEOUT_S)
    status = json.loads(_run_dvc(root, "status", "--json", stage).tail[-1] or "{}")
    if dvc_ops.status_needs_only_outputs(status, stage):
        # Already run somewhere with these inputs: restore its outputs instead of recomputing them.
        _run_dvc(root, "pull", "-r", name, "--allow-missing", stage, timeout_s=TRANSFER_TIMEOUT_S)
        pulled.append(stage)
    return pulled


@task(name="push-outputs", retries=3, retry_delay_seconds=10, **QUIET)
def push_outputs(root: str, stage: str, remote: str) -> None:
    _run_dvc(root, "push", "-r", _remote_name(root, remote), stage, timeout_s=TRANSFER_TIMEOUT_S)


# Section: running a stage.


@task(name="dvc-repro", retry_condition_fn=retry_unless_user_error, **QUIET)
def repro(root: str, stage: str, env: dict[str, str], timeout_s: float | None) -> Status:
    """`dvc repro --single-item <stage>`: DVC decides whether it runs; its output streams to the logs."""
    log = get_run_logger()
    # DVC's own lines say what it did; kept apart because a long stage log pushes them out of the tail.
    said: list[str] = []

    def forward(line: str) -> None:
        if line.startswith(("Running stage '", "Stage '")):
            said.append(line)
        log.info(line)

    cmd = dvc_ops.dvc("repro", "--single-item", stage)
    result = stream_command(cmd, root, forward, env=child_env(env), timeout_s=timeout_s)
    if result.returncode != 0:
        # pipeline.common.cli: exit 2 = the stage rejected its params or data (one line on stderr).
        user_error = re.search(r"exited with 2\b", result.output) is not None
        raise (StageUserError if user_error else StageFailed)(f"stage {stage!r}", result)
    return status_from_output(stage, "\n".join(said))


@task(name="dvc-status", **QUIET)
def stage_changed(root: str, stage: str) -> bool:
    status = json.loads(_run_dvc(root, "status", "--json", stage).tail[-1] or "{}")
    return bool(status.get(stage))


@task(name="dvc-commit", **QUIET)
def commit_stage(root: str, stage: str) -> None:
    """Record outputs produced outside `dvc repro` (the Dask path) in dvc.lock and the DVC cache."""
    _run_dvc(root, "commit", "--force", stage)


@task(name="collect-outcome", **QUIET)
def collect_outcome(root: str, stage: str, status: Status, seconds: float) -> StageOutcome:
    paths = [*dvc_ops.uncached_outs(root, stage), dvc_ops.run_record_path(stage)]
    files = dvc_ops.read_small_files(root, paths)
    return StageOutcome(
        stage=stage, status=status, seconds=seconds, lock=dvc_ops.lock_entry(root, stage), files=files
    )


# Section: other machines (Prefect deployments).


def deployment_exists(name: str) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(name)
        except ObjectNotFound:
            return False
    return True


@task(name="publish-outcome", **QUIET)
def publish_outcome(outcome: StageOutcome) -> None:
    """Hand the outcome to the flow that dispatched this stage (it may run on another machine)."""
    from prefect.artifacts import Artifact

    Artifact(
        type=OUTCOME_ARTIFACT,
        data=outcome.model_dump(mode="json"),
        description=f"dvc.lock entry and small outputs of stage `{outcome.stage}` ({outcome.status}).",
    ).create()


def read_outcome(flow_run_id: Any) -> StageOutcome:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    wanted = ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
        type=ArtifactFilterType(any_=[OUTCOME_ARTIFACT]),
    )
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=wanted, limit=1)
    if not found:
        raise RuntimeError(f"flow run {flow_run_id} completed without publishing its stage outcome.")
    data = found[0].data
    return StageOutcome.model_validate(json.loads(data) if isinstance(data, str) else data)


def _cancel(flow_run_id: Any) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Cancelling(), force=True)


@task(name="dispatch-stage", **QUIET)
def dispatch_stage(deployment: str, parameters: dict[str, Any], timeout_s: float | None) -> StageOutcome:
    """Run the stage as a flow run of `deployment` (on its work pool) and wait for it."""
    from prefect.deployments import run_deployment

    log = get_run_logger()
    log.info(f"stage {parameters['stage']!r} -> deployment {deployment!r}; waiting for a worker of its pool")
    start = time.monotonic()
    run = run_deployment(deployment, parameters=parameters, timeout=timeout_s, poll_interval=2)
    state = run.state
    if state is not None and not state.is_final():
        _cancel(run.id)
        raise TimeoutError(f"{deployment} flow run {run.name} did not finish in {timeout_s} s; cancelled it.")
    if state is None or not state.is_completed():
        ended = state.name if state else "no state"
        raise RuntimeError(
            f"{deployment} flow run {run.name} ended {ended}: {state.message if state else ''}"
        )
    outcome = read_outcome(run.id)
    extra = {"where": deployment, "flow_run_id": str(run.id), "seconds": time.monotonic() - start}
    return outcome.model_copy(update=extra)


# Section: MLflow and the report.


@task(name="open-mlflow-run", **QUIET)
def open_pipeline_run(root: str, params: dict[str, Any], flow_run_id: str | None) -> dict[str, Any] | None:
    """The MLflow run the stage runs nest under (DESIGN §6); None when tracking is off or unavailable."""
    tracking = params.get("tracking") or {}
    if not tracking.get("enabled", False):
        return None
    try:
        import mlflow

        from sisgan.tracking import ensure_experiment, tracking_uri
    except ImportError as e:
        get_run_logger().warning(f"no pipeline MLflow run ({e}); stage runs are not nested.")
        return None
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    experiment = tracking.get("experiment") or f"sisgan-{params['dataset']}"
    exp_id = ensure_experiment(mlflow, experiment, root)
    tags = {"sisgan.stage": "pipeline", **({"prefect.flow_run_id": flow_run_id} if flow_run_id else {})}
    run = mlflow.MlflowClient(uri).create_run(exp_id, run_name="pipeline", tags=tags)
    return {"run_id": run.info.run_id, "experiment_id": exp_id, "tracking_uri": uri}


@task(name="close-mlflow-run", **QUIET)
def close_pipeline_run(run: dict[str, Any], failed: bool) -> None:
    import mlflow

    mlflow.MlflowClient(run["tracking_uri"]).set_terminated(run["run_id"], "FAILED" if failed else "FINISHED")


@task(name="publish-report", **QUIET)
def publish_report(
    root: str,
    title: str,
    outcomes: dict[str, StageOutcome],
    overrides: dict[str, Any],
    pipeline_run: dict[str, Any] | None,
    mlflow_ui: str | None,
) -> dict[str, str]:
    """Markdown artifact of the run; returns the MLflow run ids (stage -> id, plus 'pipeline')."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.settings import PREFECT_UI_URL

    local = {**dvc_ops.json_files(root, "metrics"), **dvc_ops.json_files(root, dvc_ops.RUNS_DIR)}
    docs = collect_documents(outcomes, local)
    markdown = render_report(
        title, outcomes, docs, overrides, pipeline_run, mlflow_ui, PREFECT_UI_URL.value()
    )
    create_markdown_artifact(markdown=markdown, key=REPORT_KEY, description=title)
    ids = {stage: run["run_id"] for stage, run in find_runs(docs).items() if stage in outcomes}
    return ids | ({"pipeline": pipeline_run["run_id"]} if pipeline_run else {})


def stage_env(parent_run: dict[str, Any] | None) -> dict[str, str]:
    """Extra environment of a stage process: the MLflow run to nest under, and where MLflow logs."""
    if not parent_run:
        return {}
    return {PARENT_RUN_ENV: parent_run["run_id"], "MLFLOW_TRACKING_URI": parent_run["tracking_uri"]}


def remote_parent_run(parent_run: dict[str, Any] | None) -> str | None:
    """The parent run id is only meaningful to another machine when it logs to the same tracking server."""
    if parent_run and parent_run["tracking_uri"].startswith(("http://", "https://")):
        return parent_run["run_id"]
    return None
