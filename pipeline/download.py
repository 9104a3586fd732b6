"""Stage `download`: fetch (or generate) the dataset named by `dataset` into data/raw/<dataset>/."""

from __future__ import annotations

from pipeline.common import cli, raw_dir, section, stage_params
from sisgan.config import DataConfig, SynthConfig
from sisgan.data.sources import download


@cli
def main() -> None:
    params = stage_params(__doc__.splitlines()[0])
    data = section(params, DataConfig)
    out = raw_dir(data.root, params["dataset"])
    summary = download(params["dataset"], data, section(params, SynthConfig), params.get("seed", 0), out)
    print(f"download: {params['dataset']} -> {out} ({summary.get('images', '?')} images)")
    if "extracted" in summary:
        absent = summary["extracted"]["absent"]
        print(
            f"  indexed in place from {summary['extracted']['path']} (no image copied)"
            + (f"; {absent:,} images listed by its index files are absent" if absent else "")
        )
        print(f"  split sizes {summary['split_check']}")


if __name__ == "__main__":
    main()
