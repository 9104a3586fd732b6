"""Stage `train_gan`: train SISGAN on the shards with the cached caption features and the edit pairs.

Writes checkpoints/<dataset>/gan.pt (resumable; DVC persist), models/gan/generator.pt (the generator, its
config and a reference to models/text), metrics/train.json, plots/train_gan.csv + .png and the sample
grid plots/train_gan_samples.png. Runs without DVC/MLflow too (a GPU machine):

    python -m pipeline.train_gan --profile paper --set tracking.enabled=false
    torchrun --nproc_per_node=8 -m pipeline.train_gan      # several GPUs, DistributedDataParallel
"""

from __future__ import annotations

import json
import os

from pipeline.common import cli, section, stage_params
from pipeline.summary import write_metrics
from sisgan.config import DataConfig, GANConfig, TrackingConfig, resolve_device
from sisgan.tracking import stage_run
from sisgan.train.distributed import init_from_env, shutdown
from sisgan.train.run import GanFiles, train_and_export


@cli
def main() -> None:
    params = stage_params(__doc__.splitlines()[0])
    dataset, seed = params["dataset"], params.get("seed", 0)
    data, cfg, tracking = (
        section(params, DataConfig),
        section(params, GANConfig),
        section(params, TrackingConfig),
    )
    files = GanFiles(dataset, root=data.root)
    dist, device = init_from_env(resolve_device(cfg.device))
    experiment = tracking.experiment or f"sisgan-{dataset}"
    try:
        with stage_run("train_gan", experiment, tracking.enabled and dist.is_main) as run:
            log = print if dist.is_main else (lambda msg: None)
            metrics = train_and_export(cfg, files, seed=seed, device=device, dist=dist, run=run, log=log)
    finally:
        shutdown(dist)
    if metrics:
        write_metrics("train", metrics)
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
        print(f"train_gan: {json.dumps(shown)}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
