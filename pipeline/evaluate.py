"""Stage `evaluate`: manipulation metrics on the test split (unseen classes) and the evaluation grid.

Writes metrics/eval.json (the model row; the reference rows identity, counterfactual (synth-birds), real,
tint and described (photos); the primary metric the registry compares by; on flowers, the issue-19 targets)
and plots/eval_grid.png.
The wall time goes to MLflow and runs/evaluate.json, not to metrics/eval.json: register depends on that file,
and re-evaluating an unchanged model must leave it byte for byte the same. Runs without DVC/MLflow too:

    python -m pipeline.evaluate --set tracking.enabled=false
"""

from __future__ import annotations

import json
import time

from pipeline.common import cli, section, shard_dir, stage_params
from pipeline.summary import write_metrics
from sisgan.config import DataConfig, EvalConfig, TrackingConfig, resolve_device
from sisgan.data.shards import load_split
from sisgan.eval.evaluate import (
    build_context,
    check_metrics,
    evaluate_rows,
    ground_truth,
    primary_metric,
    real_targets,
    run_generator,
)
from sisgan.eval.grids import caption_rows
from sisgan.inference import Manipulator
from sisgan.tracking import add_to_run_record, flatten, stage_run

GRID = "plots/eval_grid.png"
# Datasets with targets for the real-data metrics (issue 19: Oxford-102; CUB's subset here is too small).
TARGET_DATASETS = ("flowers",)
TARGET_METRICS = ("text_following", "colour_following", "keep")


@cli
def main() -> None:
    params = stage_params(__doc__.splitlines()[0])
    dataset, seed = params["dataset"], params.get("seed", 0)
    data, cfg, tracking = (
        section(params, DataConfig),
        section(params, EvalConfig),
        section(params, TrackingConfig),
    )
    check_metrics(cfg.metrics)
    device = resolve_device(cfg.device)
    model = Manipulator.load("models", device=device)
    test = load_split(shard_dir(data.root, dataset), "test")

    with stage_run("evaluate", tracking.experiment or f"sisgan-{dataset}", tracking.enabled) as run:
        run.log_params({"dataset": dataset, "seed": seed, "evaluate": cfg.to_dict()})
        t0 = time.perf_counter()
        ctx = build_context(test, model.text_model, cfg, model.image_size, seed, model.device)
        outputs = run_generator(ctx, model.generator, cfg.batch_size)
        results = evaluate_rows(ctx, outputs, cfg.metrics)
        primary = primary_metric(dataset, results)
        report = {
            "dataset": dataset,
            "pairs": len(outputs),
            "test_images": len(set(ctx.source_index.tolist())),
            "primary": primary,
            **results,
        }
        if dataset in TARGET_DATASETS and all(m in cfg.metrics for m in TARGET_METRICS):
            report["targets"] = {
                row: {k: dict(zip(("value", "target", "met"), v, strict=True)) for k, v in found.items()}
                for row in ("model", "tint", "described")
                for found in [real_targets(report, row)]
            }
        write_metrics("eval", report)
        k = min(cfg.grid_rows, len(outputs))
        cfs = ground_truth(ctx)["counterfactual"][:k] if ctx.synthetic else None
        caption_rows(ctx.sources[:k], ctx.captions[:k], outputs[:k], cfs).save(GRID)
        run.log_metrics({k_: v for k_, v in flatten(results).items() if isinstance(v, int | float)})
        run.log_metrics({f"primary.{primary['name']}": primary["value"]})
        seconds = time.perf_counter() - t0
        run.log_metrics({"seconds": seconds})
        run.log_artifact("metrics/eval.json")
        run.log_artifact(GRID)
        run.log_image(GRID, "eval_grid")
    add_to_run_record("evaluate", {"seconds": seconds})
    print(f"evaluate: {primary['name']} = {primary['value']:.4f} ({seconds:.1f} s)")
    print(
        json.dumps({row: results[row].get("counterfactual", results[row]) for row in results}, indent=1)[
            :2000
        ]
    )


if __name__ == "__main__":
    main()
