"""Prefect orchestration: stage order, overrides, streaming, the flows under a test server, a deployed run.

The flows run on the throw-away `project` copy (tiny params) and only the download and preprocess stages,
so these tests keep their speed as later stages land. Prefect state goes to a temporary PREFECT_HOME; every
server and worker started here is stopped by its fixture's finalizer.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from flows import dvc_ops
from flows.outcome import StageOutcome
from flows.overrides import apply_overrides, flatten
from flows.report import find_runs, render_report
from flows.runner import CommandTimeout, stream_command
from sisgan.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["download", "preprocess"]  # what these tests run; later stages exist too but take longer
RUN_A, RUN_B = "a" * 32, "b" * 32


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dvc_project(project):
    """The project copy as a DVC repository (no git), tracking off unless a test turns it on."""
    project.set_params({"tracking": {"enabled": False}})
    project.run(sys.executable, "-m", "dvc", "init", "--no-scm", "-q")
    return project


# Section: pieces without Prefect.


def test_stage_order_comes_from_dvc_yaml(dvc_project):
    root = dvc_project.root
    declared = list(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])
    order = dvc_ops.pipeline_stages(root)
    assert order[:3] == ["validate", *STAGES] and sorted(order) == sorted(declared)
    # The params check comes first in any selection: --single-item would skip it.
    assert dvc_ops.select_stages(root, ["preprocess", "download"]) == ["validate", *STAGES]
    assert dvc_ops.upstream_stages(root, "preprocess") == ["download", "validate"]
    assert dvc_ops.uncached_outs(root, "preprocess") == ["metrics/data.json", "metrics/summary/data.json"]
    with pytest.raises(ConfigError, match=r"\['dowload'\] are not in dvc.yaml"):
        dvc_ops.select_stages(root, ["dowload"])


def test_overrides_edit_params_yaml_round_trip(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    before = (tmp_path / "params.yaml").read_text()
    base = yaml.safe_load(before)
    size, n = base["data"]["load_size"] + 2, base["synth"]["n_images"] + 1
    changes = apply_overrides(
        tmp_path, {"data": {"load_size": size}, "synth.n_images": n, "seed": base["seed"]}
    )
    assert changes == {"data.load_size": (size - 2, size), "synth.n_images": (n - 1, n)}  # seed: unchanged
    after = (tmp_path / "params.yaml").read_text()
    comments = [line.split("#", 1)[1] for line in before.splitlines() if "#" in line]
    assert comments and all(c in after for c in comments)
    assert "archives: null" in after and len(after.splitlines()) == len(before.splitlines())
    with pytest.raises(ConfigError, match="no key 'lod_size' in data; valid keys are"):
        apply_overrides(tmp_path, {"data.lod_size": 3})
    with pytest.raises(ConfigError, match="choose one of"):
        apply_overrides(tmp_path, {"dataset": "imagenet"})
    assert (tmp_path / "params.yaml").read_text() == after  # a rejected override changes nothing
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e.f": 3}) == {"a.b": 1, "a.c.d": 2, "e.f": 3}


def test_stream_command_forwards_lines_and_throttles_progress(tmp_path):
    script = textwrap.dedent("""
        import sys
        print("first", flush=True)
        for i in range(200):
            sys.stderr.write(f"\\rprogress {i}")
            sys.stderr.flush()
        sys.stderr.write("\\n")
        print("last: ünïcode", flush=True)
        sys.exit(3)
    """)
    lines: list[str] = []
    result = stream_command([sys.executable, "-c", script], tmp_path, lines.append, progress_every_s=60)
    assert result.returncode == 3
    assert lines[0] == "first" and lines[-1] == "last: ünïcode"
    progress = [line for line in lines if line.startswith("progress")]
    assert progress[0] == "progress 0" and progress[-1] == "progress 199" and len(progress) == 2


def test_stream_command_timeout_stops_the_whole_process_group(tmp_path):
    # The command starts a grandchild (as dvc starts a stage) and both would outlive a naive timeout.
    script = textwrap.dedent(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(tmp_path / "child.pid")!r}, "w").write(str(child.pid))
        print("started", flush=True)
        time.sleep(60)
    """)
    start = time.monotonic()
    with pytest.raises(CommandTimeout, match="timeout"):
        stream_command([sys.executable, "-c", script], tmp_path, lambda _: None, timeout_s=2)
    assert time.monotonic() - start < 20
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while _pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pid_alive(child)


def test_user_errors_are_not_retried():

    from flows.outcome import StageFailed, StageUserError, retry_unless_user_error
    from flows.runner import CommandResult

    result = CommandResult(255, ("error: params.yaml: data.load_size = 4", "exited with 2"), 0.1)
    user, crash = StageUserError("stage 'x'", result), StageFailed("stage 'x'", result)
    assert not retry_unless_user_error(None, None, SimpleNamespace(data=user))  # a Failed state's data
    assert retry_unless_user_error(None, None, SimpleNamespace(data=crash))
    assert "data.load_size = 4" in str(user)
    assert str(pickle.loads(pickle.dumps(user))) == str(user)


def test_lock_entries_merge_and_status_rule(tmp_path):
    entry = {"cmd": "python -m pipeline.download", "outs": [{"path": "data/raw/x", "md5": "1.dir"}]}
    assert dvc_ops.merge_lock_entries(tmp_path, {"download": entry}) == ["download"]
    assert dvc_ops.merge_lock_entries(tmp_path, {"download": entry}) == []
    assert dvc_ops.lock_entry(tmp_path, "download") == entry
    assert yaml.safe_load((tmp_path / "dvc.lock").read_text())["schema"] == "2.0"
    only_outs = {"s": [{"changed outs": {"data/x": "deleted"}}]}
    deps_too = {
        "s": [{"changed deps": {"params.yaml": {"a": "modified"}}}, {"changed outs": {"x": "deleted"}}]
    }
    assert dvc_ops.status_needs_only_outputs(only_outs, "s")
    assert not dvc_ops.status_needs_only_outputs(deps_too, "s")
    assert not dvc_ops.status_needs_only_outputs({}, "s")
    with pytest.raises(ValueError, match="outside the checkout"):
        dvc_ops.write_small_files(tmp_path, {"../escape.txt": "x"})


def test_report_shows_metrics_runs_and_models():
    record = {
        "stage": "train_gan",
        "run_id": RUN_A,
        "experiment_id": "3",
        "tracking_uri": "sqlite:////x/mlflow.db",
    }
    metrics = {"fid": 12.345678, "model": {"registered_model": {"name": "sisgan-synth-birds", "version": 4}}}
    outcomes = {
        "train_gan": StageOutcome(
            stage="train_gan",
            status="ran",
            seconds=61.0,
            where="sisgan-stage/train-gan",
            flow_run_id="f-1",
            files={"runs/train_gan.json": json.dumps(record)},
        ),
        "evaluate": StageOutcome(
            stage="evaluate", status="up to date", files={"metrics/evaluate.json": json.dumps(metrics)}
        ),
    }
    local = {"metrics/evaluate_run.json": {"mlflow_run_id": RUN_B}, "metrics/data.json": {"train_images": 36}}
    docs = {**local, **{p: json.loads(t) for o in outcomes.values() for p, t in o.files.items()}}
    assert {s: r["run_id"] for s, r in find_runs(docs).items()} == {"train_gan": RUN_A, "evaluate": RUN_B}
    md = render_report("t", outcomes, docs, {"gan.epochs": 2}, None, "http://127.0.0.1:5000", "http://ui")
    assert "| train_gan | ran | [sisgan-stage/train-gan](http://ui/runs/flow-run/f-1) | 61.0 s |" in md
    view = "?workflowType=machine_learning"  # MLflow's training view
    assert f"(http://127.0.0.1:5000/#/experiments/3/runs/{RUN_A}{view})" in md and f"`runs:/{RUN_B}`" in md
    ui = "http://127.0.0.1:5000"
    assert f"[sisgan-synth-birds v4]({ui}/#/models/sisgan-synth-birds/versions/4{view})" in md
    assert "| fid | 12.35 |" in md and "| train_images | 36 |" in md and "`gan.epochs` = `2`" in md


# Section: the flows under a Prefect test server (one per pytest run).


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory):
    """A temporary PREFECT_HOME for this pytest run, set before the first `import prefect` reads it."""
    home = tmp_path_factory.mktemp("prefect-home")
    keys = ("PREFECT_HOME", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["PREFECT_HOME"] = str(home)
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    from prefect.settings import PREFECT_HOME, temporary_settings

    with temporary_settings({PREFECT_HOME: home}):  # in case prefect was imported earlier
        yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def prefect_api(prefect_home):
    """One Prefect test server for the whole pytest run (it costs ~10-20 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _flow_logs(flow_run_id: Any) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # send queued logs before reading them back
    found, offset = [], 0
    with get_client(sync_client=True) as client:
        while batch := client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200, offset=offset
        ):
            found += [log.message for log in batch]
            offset += len(batch)
    return "\n".join(found)


def _task_runs(flow_run_id: Any, prefix: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return [r for r in runs if r.name.startswith(prefix)]


def _report() -> str:
    from prefect.artifacts import Artifact

    artifact = Artifact.get("sisgan-pipeline-report")
    assert artifact is not None
    return str(artifact.data)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")  # inside mlflow 3.17
def test_pipeline_flow_runs_the_stages_and_reports(prefect_api, dvc_project, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from flows.pipeline_flow import sisgan_pipeline

    dvc_project.set_params({"tracking": {"enabled": True}})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    root = str(dvc_project.root)
    run = dict(stages=STAGES, overrides={"data.load_size": 24}, retries=0, workdir=root, return_state=True)
    state = sisgan_pipeline(**run)
    assert state.is_completed(), state.message
    ids = state.result()
    manifest = json.loads((dvc_project.root / "data/shards/synth-birds/manifest.json").read_text())
    assert manifest["load_size"] == 24 and "load_size: 24" in (dvc_project.root / "params.yaml").read_text()
    assert set(dvc_ops.read_lock(root)["stages"]) == {"validate", *STAGES}
    logs = _flow_logs(state.state_details.flow_run_id)  # the stages' own output, streamed
    assert "download: synth-birds -> data/raw/synth-birds (48 images)" in logs
    assert "preprocess: {'train': 36, 'test': 12} rows, 0 rejected" in logs
    report = _report()
    assert "| download | ran |" in report and "| preprocess | ran |" in report
    assert "| train_images | 36 |" in report and "`data.load_size` = `24`" in report
    parent = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(ids["pipeline"])
    assert parent.info.status == "FINISHED" and parent.data.tags["sisgan.stage"] == "pipeline"
    # Nothing changed: DVC skips both stages.
    assert sisgan_pipeline(**run).is_completed()
    report = _report()
    assert "| download | up to date |" in report and "| preprocess | up to date |" in report


@pytest.mark.slow
def test_failing_stage_fails_the_flow_after_its_retries(prefect_api, dvc_project):
    from flows.pipeline_flow import sisgan_pipeline

    attempts = dvc_project.root / "attempts.txt"
    (dvc_project.root / "pipeline/preprocess.py").write_text(
        f"open({str(attempts)!r}, 'a').write('x')\nraise OSError('disk on fire: /dev/sdz1 is gone')\n"
    )
    state = sisgan_pipeline(
        stages=STAGES, retries=2, retry_delay_seconds=0, workdir=str(dvc_project.root), return_state=True
    )
    assert state.is_failed()
    assert attempts.read_text() == "xxx"  # the first try and two retries
    logs = _flow_logs(state.state_details.flow_run_id)
    assert "OSError: disk on fire: /dev/sdz1 is gone" in logs
    assert "stage 'preprocess' failed" in logs and "Running stage 'download'" in logs


@pytest.mark.slow
def test_stage_input_error_is_not_retried(prefect_api, dvc_project):
    from flows.pipeline_flow import sisgan_pipeline

    dvc_project.set_params({"data": {"load_size": 4}, "tracking": {"enabled": False}})
    state = sisgan_pipeline(
        stages=["download"],
        retries=2,
        retry_delay_seconds=0,
        workdir=str(dvc_project.root),
        return_state=True,
    )
    assert state.is_failed()
    flow_run_id = state.state_details.flow_run_id
    (repro,) = _task_runs(flow_run_id, "dvc-repro")
    assert repro.run_count == 1
    assert "error: params.yaml: data.load_size = 4: must be at least 16 pixels." in _flow_logs(flow_run_id)


@pytest.mark.slow
def test_stages_on_two_checkouts_meet_through_a_local_remote(prefect_api, dvc_project, tmp_path):
    from flows.stage_flow import sisgan_stage

    a = dvc_project.root
    b = tmp_path / "checkout-b"
    skip = {str(a): {"data"}, str(a / ".dvc"): {"cache", "tmp"}}  # code and config only, no data
    shutil.copytree(a, b, ignore=lambda folder, names: skip.get(folder, set()) & set(names))
    remote = str(tmp_path / "dvc-remote")

    out_a = sisgan_stage(stage="download", remote=remote, retries=0, workdir=str(a))
    assert out_a.status == "ran" and out_a.lock["outs"][0]["path"] == "data/raw/synth-birds"
    assert any((tmp_path / "dvc-remote").rglob("*")), "download's outputs were not pushed"

    # Checkout B reads download's outputs from the remote and runs only preprocess.
    state = sisgan_stage(
        stage="preprocess",
        remote=remote,
        outcomes={"download": out_a},
        retries=0,
        workdir=str(b),
        return_state=True,
    )
    out_b = state.result()
    logs = _flow_logs(state.state_details.flow_run_id)
    assert out_b.status == "ran" and "Running stage 'download'" not in logs and "fetched" in logs
    raw = "data/raw/synth-birds/records.jsonl"
    assert (b / raw).read_bytes() == (a / raw).read_bytes()
    assert json.loads(out_b.files["metrics/data.json"])["train_images"] == 36

    # Back on A, preprocess already ran elsewhere: its outputs come from the remote, nothing reruns.
    out = sisgan_stage(
        stage="preprocess", remote=remote, outcomes={"download": out_a, "preprocess": out_b}, workdir=str(a)
    )
    assert out.status == "up to date"
    shards = "data/shards/synth-birds"
    assert sorted(p.name for p in (a / shards).iterdir()) == sorted(p.name for p in (b / shards).iterdir())
    assert (a / shards / "manifest.json").read_bytes() == (b / shards / "manifest.json").read_bytes()
    assert (a / "metrics/data.json").read_text() == out_b.files["metrics/data.json"]


@pytest.mark.slow
def test_dask_preprocessing_writes_what_the_stage_writes(prefect_api, dvc_project):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    from flows.pipeline_flow import sisgan_pipeline
    from flows.shards_dask import DaskOptions

    root = dvc_project.root
    dvc_project.run(sys.executable, "-m", "dvc", "repro", "preprocess")  # the single-process stage
    shards = root / "data/shards/synth-birds"
    single = {p.name: p.read_bytes() for p in shards.iterdir()}
    lock_before = dvc_ops.lock_entry(root, "preprocess")
    metrics_before = (root / "metrics/data.json").read_bytes()
    shutil.rmtree(shards)

    state = sisgan_pipeline(
        stages=["preprocess"], dask=DaskOptions(n_workers=2), retries=0, workdir=str(root), return_state=True
    )
    assert state.is_completed(), state.message
    assert {p.name: p.read_bytes() for p in shards.iterdir()} == single
    assert (root / "metrics/data.json").read_bytes() == metrics_before
    assert dvc_ops.lock_entry(root, "preprocess")["outs"] == lock_before["outs"]  # same DVC hashes
    assert "| preprocess | ran |" in _report()
    manifest = json.loads(single["manifest.json"])
    n_shards = sum(len(s["shards"]) for s in manifest["splits"].values())
    # The shard tasks run in the `sisgan-shards` subflow, on the Dask runner.
    with get_client(sync_client=True) as client:
        mapped = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="write-shard"))
        )
    assert n_shards >= 3 and len(mapped) == n_shards and all(r.state.is_completed() for r in mapped)


# Section: a real server and workers, deployments from prefect.yaml.


@pytest.fixture(scope="module")
def local_stack(prefect_home, tmp_path_factory):
    """`make prefect-up`'s code on a free loopback port with a temporary PREFECT_HOME; stopped at the end."""
    from flows import local_stack as stack

    run_dir = tmp_path_factory.mktemp("prefect-run")
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-server-home")),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # pick runs up quickly
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    try:
        url = stack.up(run_dir, _free_port(), env=env)
        yield url, env
    finally:
        stack.down(run_dir)
        for pid_log in run_dir.glob("*.log"):
            print(f"--- {pid_log.name}\n{pid_log.read_text()[-3000:]}")


@pytest.mark.slow
def test_deployed_pipeline_completes_on_a_real_server(local_stack, dvc_project):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url, env = local_stack
    root = dvc_project.root
    shutil.copy(ROOT / "prefect.yaml", root / "prefect.yaml")
    deploy = subprocess.run(
        [str(Path(sys.executable).parent / "prefect"), "--no-prompt", "deploy", "--all"],
        cwd=root,
        env={**env, "PREFECT_API_URL": url, "PWD": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr

    with temporary_settings({PREFECT_API_URL: url}):
        with get_client(sync_client=True) as client:
            pipeline = client.read_deployment_by_name("sisgan-pipeline/sisgan-pipeline")
            assert client.read_deployment_by_name("sisgan-stage/evaluate").work_pool_name == "cpu"
            assert client.read_deployment_by_name("sisgan-stage/train-gan").work_pool_name == "gpu"
        assert pipeline.schedules and not pipeline.schedules[0].active  # nightly, off by default
        # preprocess stands in for train_gan (not in every dvc.yaml yet) to exercise the gpu-pool dispatch.
        parameters = {"stages": STAGES, "dispatch": {"preprocess": "sisgan-stage/train-gan"}, "retries": 0}
        run = run_deployment(pipeline.id, parameters=parameters, timeout=300, poll_interval=1)
        assert run.state is not None and run.state.is_completed(), (run.state, _flow_logs(run.id)[-3000:])
        with get_client(sync_client=True) as client:
            child = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["train-gan"]))
            )
    assert len(child) == 1 and child[0].state.is_completed() and child[0].parameters["stage"] == "preprocess"
    assert (root / "data/shards/synth-birds/manifest.json").is_file()
    assert set(dvc_ops.read_lock(root)["stages"]) == {"validate", *STAGES}
