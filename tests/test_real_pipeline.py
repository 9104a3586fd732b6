"""The real-data path end to end: a slice of the real Oxford-102 photos through every stage and the CLI.

A few flower classes of ../shared/data/real/flowers (tens of JPEGs, their Reed captions, the official label
file) are copied into a temporary folder in the official layout and used as `data.extracted`; the stages then
run on tiny settings in a throw-away project copy. Skips with one line where the real data is absent.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import real_data

# The pipeline as one list of stage commands, in order (the one place to change when a stage is added).
STAGES = ("download", "preprocess", "pretrain_text", "edit_pairs", "train_gan", "evaluate")
TRAIN_CLASSES, TEST_CLASSES, PER_CLASS = (51, 77, 88), (1, 2), 12


def flower_slice(src: Path, dest: Path) -> dict[str, list[str]]:
    """PER_CLASS images of a few train and test classes, in the official layout. Returns {class: stems}."""
    import scipy.io

    labels = scipy.io.loadmat(src / "imagelabels.mat")["labels"].ravel()
    (dest / "jpg").mkdir(parents=True)
    shutil.copy(src / "imagelabels.mat", dest / "imagelabels.mat")
    captions = dest / "cvpr2016_flowers"
    for name in ("trainvalclasses.txt", "testclasses.txt"):
        (captions / "text_c10").mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "cvpr2016_flowers" / name, captions / name)
    chosen: dict[str, list[str]] = {}
    for label in (*TRAIN_CLASSES, *TEST_CLASSES):
        cls = f"class_{label:05d}"
        stems = [f"image_{n:05d}" for n in (np.flatnonzero(labels == label) + 1)[:PER_CLASS]]
        (captions / "text_c10" / cls).mkdir()
        for stem in stems:
            shutil.copy(src / "jpg" / f"{stem}.jpg", dest / "jpg" / f"{stem}.jpg")
            shutil.copy(src / "cvpr2016_flowers/text_c10" / cls / f"{stem}.txt", captions / "text_c10" / cls)
        chosen[cls] = stems
    return chosen


@pytest.mark.slow
def test_real_flowers_through_every_stage_and_the_cli(project, tmp_path):
    chosen = flower_slice(real_data("flowers"), tmp_path / "flowers")
    n_train = PER_CLASS * len(TRAIN_CLASSES)
    n_test = PER_CLASS * len(TEST_CLASSES)
    project.set_params(
        {
            "dataset": "flowers",
            # A slice is a partial copy: the stage refuses it unless told (checked below).
            "data": {"extracted": str(tmp_path / "flowers"), "verify_counts": False, "load_size": 20},
            "gan": {"swap_colours": "shaded", "swap_variants": 1},
            "evaluate": {
                "metrics": [
                    "manipulative_precision",
                    "text_following",
                    "colour_following",
                    "keep",
                    "retrieval",
                ]
            },
            "tracking": {"enabled": False},
        }
    )
    outputs = {stage: project.stage(stage).stdout for stage in STAGES}
    root = project.root

    assert "indexed in place from" in outputs["download"]
    assert "not checked (data.verify_counts is false): a partial copy" in outputs["download"]
    assert f"{n_train:,} train / {n_test:,} test images in 3 / 2 classes" in outputs["download"]
    assert not list((root / "data/raw/flowers").rglob("*.jpg")), (
        "the images must be read in place, not copied"
    )
    metrics = json.loads((root / "metrics/data.json").read_text())
    assert (metrics["train_images"], metrics["test_images"], metrics["rejected"]) == (n_train, n_test, 0)
    text = json.loads((root / "metrics/text.json").read_text())
    assert text["test_images"] == n_test and text["chance_r_precision"] == pytest.approx(1 / n_test)
    assert "colour swaps (shaded)" in outputs["edit_pairs"]
    report = json.loads((root / "metrics/eval.json").read_text())
    assert report["dataset"] == "flowers" and report["primary"]["name"] == "mp"
    assert np.isfinite(report["model"]["manipulative_precision"]["mp"])
    assert set(report) >= {"model", "identity", "real", "tint", "described", "targets"}
    assert set(report["targets"]["model"]) == {"mean_rank", "colour_rise", "background_l1", "ssim"}
    assert report["real"]["text_following"]["candidates"] == 100  # 1 + 99 captions of 22 other test images
    assert report["identity"]["keep"]["background_l1"] == 0.0 and report["identity"]["keep"]["ssim"] == 1.0
    summary = json.loads((root / "metrics/summary/eval.json").read_text())
    assert {"mp", "rank", "rank_goal", "rise", "ssim", "bg_l1"} <= set(summary)
    assert (root / "plots/eval_grid.png").stat().st_size > 1000

    # `sisgan manipulate` with the project's trained model on a real photo of a test class.
    photo = tmp_path / "flowers/jpg" / f"{chosen['class_00001'][0]}.jpg"
    out = project.run(
        sys.executable, "-m", "sisgan.cli", "manipulate", "--model", "models", "--image", str(photo),
        "--text", "this flower has bright yellow petals", "--text", "a white flower", "--out", "edit.png",
    )  # fmt: skip
    from PIL import Image

    for name in ("edit-1.png", "edit-2.png"):
        assert name in out.stdout
        with Image.open(root / name) as im:
            assert im.size == (16, 16)  # the tiny profile's gan.image_size

    # --full-size: the photo back at its own size, edited inside the model's view only.
    out = project.run(
        sys.executable, "-m", "sisgan.cli", "manipulate", "--model", "models", "--image", str(photo),
        "--text", "this flower has bright yellow petals", "--full-size", "--out", "full.png",
    )  # fmt: skip
    from sisgan.compositing import view_box

    with Image.open(photo) as im:
        original = np.asarray(im.convert("RGB"))
    with Image.open(root / "full.png") as im:
        full = np.asarray(im)
    assert full.shape == original.shape
    h, w, _ = original.shape
    box = view_box(w, h, 20, 16)  # the tiny profile's data.load_size and gan.image_size
    changed = np.argwhere((full != original).any(axis=-1))
    assert len(changed) and changed[:, 0].min() >= box.top - 0.5 and changed[:, 0].max() < box.top + box.side
    assert changed[:, 1].min() >= box.left - 0.5 and changed[:, 1].max() < box.left + box.side


def test_a_partial_slice_is_refused_by_default(project, tmp_path):
    flower_slice(real_data("flowers"), tmp_path / "flowers")
    project.set_params({"dataset": "flowers", "data": {"extracted": str(tmp_path / "flowers")}})
    proc = project.stage("download", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "is a partial copy" in proc.stderr and "set data.verify_counts: false" in proc.stderr
