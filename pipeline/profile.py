"""Print a profile's overrides of params.yaml as `dvc exp run` arguments (used by `make repro-paper`).

    python -m pipeline.profile paper        # -S data.load_size=74 -S text.lr=0.0002 ...

Only the values that differ from params.yaml are printed; the profile itself is defined once, in
sisgan.config (PAPER_RECIPE: the paper's values are the configs' defaults).
"""

from __future__ import annotations

import argparse

import yaml

from pipeline.common import PARAMS_FILE, cli, read_params
from sisgan.config import PROFILES, profile_values


def overrides(params: dict, name: str) -> list[str]:
    """`section.key=value` for every key the profile sets to another value than params has."""
    out = []
    for dotted, value in profile_values(name).items():
        section, key = dotted.split(".")
        if (params.get(section) or {}).get(key) != value:
            text = yaml.safe_dump(list(value) if isinstance(value, tuple) else value, default_flow_style=True)
            out.append(f"{dotted}={text.strip().removesuffix('...').strip()}")
    return out


@cli
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=PROFILES)
    parser.add_argument("--params", default=PARAMS_FILE)
    args = parser.parse_args()
    print(" ".join(f"-S {o}" for o in overrides(read_params(args.params), args.name)))


if __name__ == "__main__":
    main()
