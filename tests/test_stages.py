"""The download and preprocess stages as a user runs them, and `dvc repro` on the real dvc.yaml."""

from __future__ import annotations

import json
import sys
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

    for stage in ("download", "preprocess", "pretrain_text", "train_gan"):
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
