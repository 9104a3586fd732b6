"""The benchmark scripts run end to end at toy sizes and write their JSON (no timing is asserted)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest


def _run(module: str, *args: str, cwd) -> dict:  # noqa: ANN001
    out = cwd / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", module, *args, "--out", str(out)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


@pytest.mark.slow
def test_train_throughput_toy(tmp_path):
    result = _run(
        "benchmarks.train_throughput",
        "--width",
        "0.125",
        "--size",
        "16",
        "--batch",
        "8",
        "--iters",
        "2",
        "--warmup",
        "1",
        "--images",
        "32",
        "--workers",
        "0",
        "--ladder",
        cwd=tmp_path,
    )
    modes = {r["mode"]: r for r in result["rows"]}
    assert list(modes)[0] == "reference" and list(modes)[-1] == "real"
    # Each rung of the ladder changes exactly one thing: in the reference loop (cached φ(t), then device
    # data), and in the project's step (one speed switch, or dropping the per-step host sync).
    rungs = [r["switches"] for r in result["rows"]]
    assert rungs[0] == {"cached_text": False, "device_data": False}
    pairs = [(a, b) for a, b in zip(rungs, rungs[1:], strict=False) if a.keys() == b.keys()]
    assert len(pairs) == len(rungs) - 2  # all but the hand-over from the reference loop to the project's step
    for before, after in pairs:
        assert sum(before[k] != after[k] for k in before) == 1, (before, after)
    for r in modes.values():
        assert r["images_per_s"] > 0 and r["gflop_per_image"] > 0 and 0 < r["peak_fraction"]
    # The reference runs G twice and D's encoder on the real batch twice: more work per image.
    assert modes["reference"]["gflop_per_image"] > modes["real"]["gflop_per_image"]
    assert "speedup" in modes["real"] and result["peak"]["tflops"] > 0


@pytest.mark.slow
def test_preprocess_throughput_toy(tmp_path):
    result = _run(
        "benchmarks.preprocess_throughput", "--images", "16", "--repeats", "1", "--workers", "1", cwd=tmp_path
    )
    assert result["rows"][0]["images"] == 16 and result["rows"][0]["images_per_s"] > 0


@pytest.mark.slow
def test_gpu_paper_run_script_end_to_end_at_toy_size(tmp_path):
    # The script a GPU lease runs, on a copy of the project with MLflow/DVC/Prefect made unimportable
    # (the GPU machine has none of them): every stage it calls must work without them.
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    work = tmp_path / "project"
    work.mkdir()
    for name in ("sisgan", "pipeline", "benchmarks", "params.yaml"):
        src = root / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__", "results"))
        else:
            shutil.copy(src, work / name)
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('mlflow', 'dvc', 'prefect'):\n"
        "            raise ImportError('not on the GPU machine: ' + name)\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    env = os.environ | {
        "PYTHON": sys.executable,
        "PYTHONPATH": str(block),
        "OUT": str(tmp_path / "out"),
        "WIDTH": "0.125",
        "SIZE": "16",
        "LOAD": "20",
        "ITERS": "2",
        "WARMUP": "1",
        "IMAGES": "64",
        "TRAIN_SECONDS": "5",
        "MAX_EPOCHS": "1",
        "EXTRA_SETS": "--set text.epochs=1 --set evaluate.max_images=40 --set synth.n_images=800",
    }
    (tmp_path / "out").mkdir()
    for step in ("bench", "train"):
        proc = subprocess.run(
            ["bash", "benchmarks/gpu_paper_run.sh", step], cwd=work, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    train = json.loads((work / "metrics" / "train.json").read_text())
    evaluation = json.loads((work / "metrics" / "eval.json").read_text())
    assert train["epochs"] == 1 and 0 <= evaluation["model"]["counterfactual"]["attribute_accuracy"] <= 1
    back = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"gpu_run.tar.gz", "train_throughput.json", "eval.json", "train_gan_samples.png"} <= back


def test_inference_default_profile_is_the_embedded_default_generator(tmp_path):
    from pathlib import Path

    import yaml

    from benchmarks.inference import build, profile

    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    default, paper = profile("default"), profile("paper")
    assert default.gan.to_dict() == params["gan"] | {"vgg_weights": None}
    assert default.data.load_size == params["data"]["load_size"]
    assert (paper.gan.width, paper.gan.image_size, paper.gan.output, paper.data.load_size) == (
        1.0,
        64,
        "direct",
        74,
    )
    assert sum(p.numel() for p in build(paper, "cpu").generator.parameters()) == 26_014_851
    result = _run(
        "benchmarks.inference", "--devices", "cpu", "--profiles", "default", "--runs", "2", "--batch", "2",
        cwd=tmp_path,
    )  # fmt: skip
    (row,) = result["rows"]
    assert row["profile"] == "default" and row["batch"] == 2 and row["latency_ms_median"] > 0


@pytest.mark.slow
def test_preprocess_real_on_an_extracted_folder_toy(tmp_path):
    from conftest import real_data
    from test_real_pipeline import flower_slice

    flower_slice(real_data("flowers"), tmp_path / "flowers")
    result = _run(
        "benchmarks.preprocess_real", "--extracted", str(tmp_path / "flowers"), "--dataset", "flowers",
        "--load-size", "20", "24", "--repeats", "1", "--workers", "1", cwd=tmp_path,
    )  # fmt: skip
    assert result["extracted"]["images"] == 60
    assert [(r["load_size"], r["images"]) for r in result["rows"]] == [(20, 60), (24, 60)]


@pytest.mark.slow
def test_swaps_real_toy(tmp_path):
    from conftest import synth_shards

    from sisgan.config import SynthConfig

    cfg = SynthConfig(n_images=400, n_classes=50, test_classes=10, captions_per_image=5)
    shards = synth_shards(tmp_path / "shards", cfg, 24)
    images = str(tmp_path / "img")
    result = _run(
        "benchmarks.swaps_real",
        "--shards",
        str(shards),
        "--pairs",
        "40",
        "--images-out",
        images,
        cwd=tmp_path,
    )
    assert result["dataset"] == "synth-birds" and result["pairs"] == 40
    for model in ("flat", "shaded"):
        assert 0 <= result[model]["within_flat_tolerance"] <= 1 and result[model]["classes"] >= 2
    # On synth-birds' flat parts the flat model's colours are exact: every word is plausible.
    assert result["flat"]["plausible"] == result["flat"]["words"]
    assert {p.name for p in (tmp_path / "img").iterdir()} == {
        "swaps_synth-birds_swatch.png",
        "swaps_synth-birds_grid.png",
    }
