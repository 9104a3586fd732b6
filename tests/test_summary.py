"""`dvc metrics show` prints the headline per stage (metrics/summary/*.json) in a 160-column table."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from pipeline.summary import SUMMARIES, eval_summary, headline_value, write_metrics

WIDTH = 160


def test_write_metrics_keeps_everything_and_writes_the_headline(tmp_path):
    full = {"dataset": "synth-birds", "train_images": 3000, "test_images": 1000, "rejected": 2, "extra": 1.5}
    summary = write_metrics("data", full, tmp_path)
    assert json.loads((tmp_path / "metrics/data.json").read_text()) == full
    assert json.loads((tmp_path / "metrics/summary/data.json").read_text()) == summary
    assert summary == {"n_train": 3000, "n_test": 1000, "rejected": 2}


def test_eval_headline_is_the_model_row_and_skips_what_was_not_computed():
    report = {
        "primary": {"name": "edit_score", "value": 0.46475693, "higher_is_better": True},
        "model": {
            "counterfactual": {
                "edit_score": 0.46475693,
                "attribute_accuracy": 0.58572913,
                "keep_accuracy": 0.8,
                "background_psnr": 47.2032,
                "attribute_accuracy_beak": 0.11,
            },  # fmt: skip
            "manipulative_precision": {"mp": -0.0102097, "mp_diff": 0.0},
            "fid": {"skipped": "no Inception weights"},
        },
        "identity": {"counterfactual": {"edit_score": 0.1169}},
    }
    assert eval_summary(report) == {
        "edit_score": 0.4648,
        "attr_acc": 0.5857,
        "keep_acc": 0.8,
        "bg_psnr": 47.2,
        "mp": -0.01021,
    }
    # A real dataset: no ground truth, FID computed.
    real = {"model": {"counterfactual": {"skipped": "synth only"}, "manipulative_precision": {"mp": 0.3},
                      "fid": {"fid": 123.456789}}}  # fmt: skip
    assert eval_summary(real) == {"mp": 0.3, "fid": 123.5}
    assert headline_value(3000) == 3000 and isinstance(headline_value(3000), int)  # counts stay counts


def render(summaries: dict[str, dict]) -> str:
    """The table `dvc metrics show` prints for these files, made by DVC's own code."""
    from dvc.compare import metrics_table
    from dvc.ui.table import plain_table

    class Capture:
        text = ""

        def write(self, text: str, force: bool = True) -> None:
            self.text += text

    metrics = {"": {"data": {path: {"data": data} for path, data in summaries.items()}}}
    td = metrics_table(metrics)
    ui = Capture()
    plain_table(ui, list(td), headers=td.keys())
    return ui.text


def test_the_widest_headline_fits_160_columns():
    """Every headline number at once (a synth-birds run with FID), with long values: counts of CUB's size
    and more, a negative MP, a GPU's images/s."""
    everything = {
        **{"train_images": 88550, "test_images": 29330, "rejected": 12345},
        **{"t2i_r1": 0.03712345, "t2i_r10": 0.2781234, "images_per_s": 45120.345},
        "model": {
            "counterfactual": {
                "edit_score": 0.46481,
                "attribute_accuracy": 0.58572,
                "keep_accuracy": 0.79347,
                "background_psnr": 47.2032,
            },  # fmt: skip
            "manipulative_precision": {"mp": -0.0102098},
            "fid": {"fid": 123.456789},
        },
    }
    worst = {f"metrics/summary/{name}.json": fn(everything) for name, fn in SUMMARIES.items()}
    assert [len(v) for v in worst.values()] == [3, 2, 1, 6]
    table = render(worst)
    assert max(len(line) for line in table.splitlines()) <= WIDTH, table


def test_the_widest_photo_headline_fits_160_columns():
    """Flowers/CUB: no ground truth, so the text, colour and keep metrics and the rank's target instead."""
    photos = {
        **{"train_images": 88550, "test_images": 29330, "rejected": 12345},
        **{"t2i_r1": 0.03712345, "t2i_r10": 0.2781234, "images_per_s": 45120.345},
        "model": {
            "counterfactual": {"skipped": "needs ground truth (synth-birds only)"},
            "manipulative_precision": {"mp": -0.0102098},
            "text_following": {"r_precision": 0.0123456, "mean_rank": 33.333333},
            "colour_following": {"colour_rise": 0.1234567, "colour_dominant": 0.1234567},
            "keep": {"ssim": 0.8123456, "l1": 0.0512345, "background_l1": 0.0312345},
            "fid": {"fid": 123.456789},
        },
        "identity": {"text_following": {"mean_rank": 51.333333}},
        "real": {"text_following": {"mean_rank": 14.244444}},
    }
    assert eval_summary(photos) == {
        "mp": -0.01021,
        "rank": 33.33,
        "rank_goal": 32.79,
        "rise": 0.1235,
        "ssim": 0.8123,
        "bg_l1": 0.03123,
        "fid": 123.5,
    }
    worst = {f"metrics/summary/{name}.json": fn(photos) for name, fn in SUMMARIES.items()}
    table = render(worst)
    assert max(len(line) for line in table.splitlines()) <= WIDTH, table
    # Without the reference rows there is no target to show.
    assert "rank_goal" not in eval_summary({"model": photos["model"]})


def test_dvc_yaml_declares_summaries_as_metrics_and_keeps_details_as_outs():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage, name in (("preprocess", "data"), ("pretrain_text", "text"), ("train_gan", "train"),
                        ("evaluate", "eval")):  # fmt: skip
        metrics = [next(iter(m)) if isinstance(m, dict) else m for m in stages[stage]["metrics"]]
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in stages[stage].get("outs", [])]
        assert metrics == [f"metrics/summary/{name}.json"], stage
        assert f"metrics/{name}.json" in outs, stage
        assert "pipeline/summary.py" in stages[stage]["deps"], stage


@pytest.mark.parametrize("name", sorted(SUMMARIES))
def test_committed_summaries_match_the_committed_details(name):
    full = json.loads((ROOT / f"metrics/{name}.json").read_text())
    assert json.loads((ROOT / f"metrics/summary/{name}.json").read_text()) == SUMMARIES[name](full)


def test_dvc_metrics_show_in_the_project_fits_160_columns():
    cmd = [sys.executable, "-m", "dvc", "metrics", "show"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split()[0] == "Path" and len(lines) == 1 + len(SUMMARIES)
    assert {line.split()[0] for line in lines[1:]} == {f"metrics/summary/{n}.json" for n in SUMMARIES}
    assert max(len(line) for line in lines) <= WIDTH, proc.stdout
    for key in ("edit_score", "attr_acc", "keep_acc", "bg_psnr", "mp", "t2i_r1", "img_per_s", "n_train"):
        assert key in lines[0].split(), key
