"""The download and preprocess stages as a user runs them, and `dvc repro` on the real dvc.yaml."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sisgan.data.shards import load_split


def test_download_then_preprocess_writes_shards_and_metrics(project):
    project.stage("download")
    assert (project.root / "data/raw/synth-birds/records.jsonl").is_file()
    out = project.stage("preprocess")
    assert "rejected" in out.stdout
    manifest = json.loads((project.root / "data/shards/synth-birds/manifest.json").read_text())
    assert manifest["splits"]["train"]["rows"] + manifest["splits"]["test"]["rows"] == 48
    assert load_split(project.root / "data/shards/synth-birds", "test").images.shape[1:] == (20, 20, 3)
    metrics = json.loads((project.root / "metrics/data.json").read_text())
    assert metrics["train_images"] == manifest["splits"]["train"]["rows"]
    summary = json.loads((project.root / "metrics/summary/data.json").read_text())
    assert summary == {"n_train": metrics["train_images"], "n_test": metrics["test_images"], "rejected": 0}


@pytest.mark.parametrize("dataset", ["cub", "flowers"])
def test_real_dataset_names_are_recognised(project, dataset, tmp_path):
    project.set_params({"dataset": dataset, "data": {"archives": str(tmp_path / "nothing-here")}})
    proc = project.stage("download", check=False)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error:") and dataset in line and "Traceback" not in proc.stderr


def test_unknown_dataset_lists_the_valid_ones(project):
    project.set_params({"dataset": "imagenet"})
    proc = project.stage("download", check=False)
    assert proc.returncode == 2
    assert "choose one of ['synth-birds', 'cub', 'flowers']" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_preprocess_without_download_says_what_to_run(project):
    proc = project.stage("preprocess", check=False)
    assert proc.returncode == 2 and "run `dvc repro download` first" in proc.stderr


def test_bad_params_are_one_line_errors(project):
    project.set_params({"data": {"load_size": 4}})
    proc = project.stage("download", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "data.load_size = 4" in proc.stderr


@pytest.mark.slow
def test_dvc_repro_twice_second_is_a_noop(project):
    dvc = [sys.executable, "-m", "dvc"]
    project.run(*dvc, "init", "--no-scm", "-q")
    first = project.run(*dvc, "repro")
    assert "Running stage 'download'" in first.stdout and "Running stage 'preprocess'" in first.stdout
    second = project.run(*dvc, "repro")
    assert "Running stage" not in second.stdout
    assert "up to date" in second.stdout
    # Changing a param only the preprocess stage reads reruns preprocess alone.
    project.set_params({"data": {"load_size": 24}})
    third = project.run(*dvc, "repro")
    assert "Running stage 'preprocess'" in third.stdout and "Running stage 'download'" not in third.stdout


@pytest.mark.slow
def test_pretrain_text_stage_outputs_and_mlflow_run(project):
    for stage in ("download", "preprocess", "pretrain_text"):
        project.stage(stage)
    root = project.root
    metrics = json.loads((root / "metrics/text.json").read_text())
    for key in ("t2i_r1", "i2t_r1", "t2i_r5", "t2i_r10", "chance_r1", "vocab_size", "t2i_r1_over_chance"):
        assert key in metrics, key
    assert metrics["chance_r1"] == pytest.approx(1 / metrics["test_images"])
    assert (root / "models/text/weights.pt").is_file() and (root / "models/text/vocab.json").is_file()
    assert (root / "plots/pretrain_text.png").stat().st_size > 1000
    assert (root / "plots/pretrain_text.csv").read_text().startswith("epoch,loss,")

    from sisgan.text.model import TextModel, load_features

    test = load_split(root / "data/shards/synth-birds", "test")
    feats, counts = load_features(root / "data/features/synth-birds/test.npz", test.image_ids)
    assert feats.shape[:2] == (len(test), 4) and (counts == 4).all()
    model = TextModel.load(root / "models/text")
    expected = model.encode_texts([test.captions[0][2]])[0].numpy()
    np.testing.assert_allclose(feats[0, 2], expected, rtol=1e-5, atol=1e-6)

    run = json.loads((root / "runs/pretrain_text.json").read_text())
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=run["tracking_uri"])
    logged = client.get_run(run["run_id"])
    assert logged.data.params["text.epochs"] == "1"
    assert "t2i_r1" in logged.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run["run_id"], "text_encoder")}
    assert "text_encoder/weights.pt" in artifacts
    # The experiment opens in MLflow's model-training view.
    tags = client.get_experiment(run["experiment_id"]).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert set(json.loads((root / "metrics/summary/text.json").read_text())) == {"t2i_r1", "t2i_r10"}


def logged_images(client: Any, run_id: str) -> dict[str, list[int]]:
    """key -> steps of the images a run logged with mlflow.log_image (images/<key>+step+<n>+....png)."""
    found: dict[str, list[int]] = {}
    for a in client.list_artifacts(run_id, "images"):
        name = a.path.split("/")[-1]
        if name.endswith(".png") and "+step+" in name:
            key, rest = name.split("+step+", 1)
            found.setdefault(key, []).append(int(rest.split("+", 1)[0]))
    return {k: sorted(v) for k, v in found.items()}


@pytest.mark.slow
def test_train_gan_and_evaluate_stages_resume_and_signal(project):
    """train_gan writes its outputs and an MLflow run; more epochs resume; SIGTERM checkpoints and the
    next run resumes; evaluate writes the metrics with the reference rows and the grid."""
    import signal
    import subprocess
    import time

    from conftest import stage_env

    for stage in ("download", "preprocess", "pretrain_text", "edit_pairs", "train_gan"):
        project.stage(stage)
    root = project.root
    train = json.loads((root / "metrics/train.json").read_text())
    assert train["epochs"] == 2 and np.isfinite(train["d_loss"])
    assert (root / "models/gan/generator.pt").is_file()
    assert (root / "checkpoints/synth-birds/gan.pt").is_file()
    assert (root / "plots/train_gan.csv").read_text().count("\n") == 3  # header + 2 epochs
    for png in ("plots/train_gan.png", "plots/train_gan_samples.png"):
        assert (root / png).stat().st_size > 1000

    import mlflow

    run = json.loads((root / "runs/train_gan.json").read_text())
    client = mlflow.MlflowClient(tracking_uri=run["tracking_uri"])
    assert len(client.get_metric_history(run["run_id"], "d_real")) == 2
    # The sample grid of every epoch, shown on the run page with a step slider, and the loss curves.
    assert logged_images(client, run["run_id"]) == {"samples": [1, 2]}
    assert set(json.loads((root / "metrics/summary/train.json").read_text())) == {"img_per_s"}

    # More epochs: the stage resumes from the checkpoint instead of starting over.
    project.set_params({"gan": {"epochs": 3}})
    out = project.stage("train_gan")
    assert "resuming from checkpoints/synth-birds/gan.pt: epoch 2 done" in out.stdout
    assert json.loads((root / "metrics/train.json").read_text())["epochs"] == 3

    # SIGTERM mid-training: a checkpoint is written, exit code 130, and the next run resumes.
    project.set_params({"gan": {"epochs": 40}})
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.train_gan"],
        cwd=root,
        env=stage_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ckpt = root / "checkpoints/synth-birds/gan.pt"
    before = ckpt.stat().st_mtime
    deadline = time.time() + 120
    while ckpt.stat().st_mtime == before and time.time() < deadline:  # wait for epoch 4's checkpoint
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint written" in err and "Run the stage again to resume" in err
    from sisgan.train import checkpoint

    state = checkpoint.load(ckpt)
    assert 4 <= state["epoch"] < 40

    project.set_params({"gan": {"epochs": state["epoch"] + 1}})
    out = project.stage("train_gan")
    assert f"epoch {state['epoch']} done" in out.stdout

    project.stage("evaluate")
    report = json.loads((root / "metrics/eval.json").read_text())
    assert report["primary"]["name"] == "edit_score"
    assert set(report) >= {"model", "identity", "counterfactual", "pairs"}
    assert report["counterfactual"]["counterfactual"]["edit_score"] == 1.0
    assert "skipped" in report["model"]["fid"]
    assert 0 <= report["model"]["counterfactual"]["attribute_accuracy"] <= 1
    assert (root / "plots/eval_grid.png").stat().st_size > 1000
    summary = json.loads((root / "metrics/summary/eval.json").read_text())
    assert summary["edit_score"] == pytest.approx(report["model"]["counterfactual"]["edit_score"], rel=1e-3)
    run = json.loads((root / "runs/evaluate.json").read_text())
    assert logged_images(client, run["run_id"]) == {"eval_grid": [0]}


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended while we looked
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its exit status is left


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_killing_preprocess_ends_its_workers_and_leaves_no_shard(project):
    """SIGKILL of the stage mid-run: its workers end with it (they would otherwise go on writing shards),
    no shard is visible, and the next run starts clean."""
    import signal
    import subprocess
    import time

    from conftest import stage_env

    synth = {"n_images": 2000, "n_classes": 40, "test_classes": 8}
    # Two tasks of 1000 images per worker: each takes seconds, so none can be finished at the kill.
    project.set_params({"synth": synth, "data": {"workers": 2, "shard_rows": 1000, "load_size": 37}})
    project.stage("download")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.preprocess"],
        cwd=project.root,
        env=stage_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
        workers = [p for p in _descendants(proc.pid) if "resource_tracker" not in _cmdline(p)]
        time.sleep(0.05)
    assert len(workers) >= 2, "the stage did not start its worker processes"
    time.sleep(1.0)  # the workers are rendering their first shard
    family = _descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 60  # generous: only how long a machine under load may take to reap
    while any(_alive(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in family if _alive(p)], "worker processes outlived the killed stage"
    shards = project.root / "data/shards"
    # A fast machine may finish a shard before the kill: it stays in the temporary folder, and nothing is
    # added to it once the stage is dead.
    written = sorted(shards.rglob("*.parquet"))
    time.sleep(1.5)
    assert sorted(shards.rglob("*.parquet")) == written, "a shard was written after the stage was killed"
    assert not (shards / "synth-birds").exists()  # nothing visible: the folder appears whole or not at all

    project.stage("preprocess")
    assert sorted(p.name for p in shards.iterdir()) == ["synth-birds"]  # the stale temporary folder is gone
    assert (
        len(load_split(shards / "synth-birds", "train")) + len(load_split(shards / "synth-birds", "test"))
        == 2000
    )


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# Section: `dvc repro` never loses results.


@pytest.fixture(scope="module")
def repro_project(tmp_path_factory):
    """The tiny project as a DVC repository after `dvc repro` of the whole pipeline (its own MLflow store)."""
    from conftest import Project

    project = Project(tmp_path_factory.mktemp("repro") / "proj")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project.root / 'mlflow.db'}")
        project.dvc("init", "--no-scm", "-q")
        project.dvc("repro")
        yield project


RESULTS = (
    "models/gan/generator.pt",
    "models/text/weights.pt",
    "metrics/train.json",
    "metrics/text.json",
    "metrics/eval.json",
    "plots/train_gan.csv",
    "plots/pretrain_text.csv",
    "models/registered.json",
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "bad", [{"gan": {"batch_size": 0}}, {"gan": {"image_size": 48}}, {"text": {"lr": -1}}]
)
def test_a_rejected_param_removes_no_output(repro_project, bad):
    """DVC removes a stage's outputs before running it: the params check must run (and fail) first."""
    root = repro_project.root
    before = {p: (root / p).read_bytes() for p in RESULTS}
    target = "train_gan" if "gan" in bad else "pretrain_text"
    try:
        repro_project.set_params(bad)
        proc = repro_project.dvc("repro", target, check=False)
        assert proc.returncode != 0
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "params.yaml: " in errors[0], proc.stderr
        assert f"Running stage '{target}'" not in proc.stdout
        assert {p: (root / p).read_bytes() if (root / p).exists() else None for p in RESULTS} == before
    finally:
        repro_project.set_params()
    # The good params again: nothing to run, dvc.lock still describes the workspace.
    assert "Running stage" not in repro_project.dvc("repro").stdout
    assert repro_project.dvc("status", "--json").stdout.strip() == "{}"


@pytest.mark.slow
def test_reevaluating_an_unchanged_model_changes_nothing_downstream(repro_project, monkeypatch):
    """Wall time stays out of metrics/eval.json, so a forced re-evaluation leaves register up to date."""
    root = repro_project.root
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    before = (root / "metrics/eval.json").read_bytes()
    registered = json.loads((root / "models/registered.json").read_text())
    repro_project.dvc("repro", "--force", "--single-item", "evaluate")
    assert (root / "metrics/eval.json").read_bytes() == before
    assert "seconds" in json.loads((root / "runs/evaluate.json").read_text())  # the timing is kept, apart
    out = repro_project.dvc("repro").stdout
    assert "Running stage 'register'" not in out
    assert json.loads((root / "models/registered.json").read_text()) == registered
