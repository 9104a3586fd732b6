"""The download and preprocess stages as a user runs them, and `dvc repro` on the real dvc.yaml."""

from __future__ import annotations

import json
import sys

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
