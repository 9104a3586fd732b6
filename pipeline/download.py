"""Stage `download`: fetch (or generate) the dataset named by `dataset` into data/raw/<dataset>/."""

from __future__ import annotations

from pipeline.common import cli, load_params, raw_dir, section
from sisgan.config import DataConfig, SynthConfig
from sisgan.data.sources import download


@cli
def main() -> None:
    params = load_params()
    data = section(params, DataConfig)
    out = raw_dir(data.root, params["dataset"])
    summary = download(params["dataset"], data, section(params, SynthConfig), params.get("seed", 0), out)
    print(f"download: {params['dataset']} -> {out} ({summary.get('images', '?')} images)")


if __name__ == "__main__":
    main()
