"""Headline figures per stage: metrics/summary/<name>.json, the files `dvc metrics show` prints.

Each stage writes its full metrics to metrics/<name>.json (every number, reference rows, per-part counts:
what the registry, benchmarks and reports read) and a few headline numbers beside it in
metrics/summary/<name>.json. dvc.yaml declares only the summaries as metrics, so `dvc metrics show` is one
table that fits a 160-column terminal and `dvc metrics diff` lists a dozen rows; the full files stay DVC
outputs (`cache: false`, committed with git). Short keys and 4 significant digits keep the table narrow;
docs/ui.md maps each key to the full file's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sisgan.io import write_json

METRICS_DIR = "metrics"
SUMMARY_DIR = "metrics/summary"


def headline_value(value: int | float) -> int | float:
    """Counts as they are, other numbers to 4 significant digits: enough to compare runs, and narrow."""
    return value if isinstance(value, int) else float(f"{value:.4g}")


def _pick(source: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """{short: source[long]} for the numbers present (a metric that was skipped is left out)."""
    return {
        short: headline_value(source[long])
        for short, long in names.items()
        if isinstance(source.get(long), int | float) and not isinstance(source.get(long), bool)
    }


def data_summary(m: Mapping[str, Any]) -> dict[str, Any]:
    return _pick(m, {"n_train": "train_images", "n_test": "test_images", "rejected": "rejected"})


def text_summary(m: Mapping[str, Any]) -> dict[str, Any]:
    return _pick(m, {"t2i_r1": "t2i_r1", "t2i_r10": "t2i_r10"})


def train_summary(m: Mapping[str, Any]) -> dict[str, Any]:
    return _pick(m, {"img_per_s": "images_per_s"})


def eval_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The model row: counterfactual scores, MP and FID on synth-birds; MP, text-following, colour-following,
    keep and FID on photos (no ground truth), with the mean rank's target beside it."""
    model = report.get("model", {})
    if "edit_score" not in model.get("counterfactual", {}):
        return real_eval_summary(report)
    return {
        **_pick(
            model.get("counterfactual", {}),
            {
                "edit_score": "edit_score",
                "attr_acc": "attribute_accuracy",
                "keep_acc": "keep_accuracy",
                "bg_psnr": "background_psnr",
            },
        ),
        **_pick(model.get("manipulative_precision", {}), {"mp": "mp"}),
        **_pick(model.get("fid", {}), {"fid": "fid"}),
    }


def real_eval_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """Photos: rank = the target caption's mean rank among 100 (rank_goal: halfway from the identity row's
    to the real row's, the issue's target), rise = colour rise, bg_l1 = background L1. R-precision and colour
    dominance stay in metrics/eval.json: with them the table would not fit 160 columns."""
    model = report.get("model", {})
    ranks = [report.get(row, {}).get("text_following", {}).get("mean_rank") for row in ("identity", "real")]
    goal = {"rank_goal": (ranks[0] + ranks[1]) / 2} if all(isinstance(r, int | float) for r in ranks) else {}
    return {
        **_pick(model.get("manipulative_precision", {}), {"mp": "mp"}),
        **_pick(model.get("text_following", {}), {"rank": "mean_rank"}),
        **_pick(goal, {"rank_goal": "rank_goal"}),
        **_pick(model.get("colour_following", {}), {"rise": "colour_rise"}),
        **_pick(model.get("keep", {}), {"ssim": "ssim", "bg_l1": "background_l1"}),
        **_pick(model.get("fid", {}), {"fid": "fid"}),
    }


SUMMARIES: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "data": data_summary,
    "text": text_summary,
    "train": train_summary,
    "eval": eval_summary,
}


def write_metrics(name: str, metrics: Mapping[str, Any], root: str | Path = ".") -> dict[str, Any]:
    """Write metrics/<name>.json (everything) and metrics/summary/<name>.json (the headline, returned)."""
    summary = SUMMARIES[name](metrics)
    write_json(Path(root) / METRICS_DIR / f"{name}.json", dict(metrics))
    write_json(Path(root) / SUMMARY_DIR / f"{name}.json", summary)
    return summary
