"""What every stage shares: params.yaml loading, standard paths, one-line errors."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from sisgan.config import (
    PROFILES,
    Config,
    DataConfig,
    EvalConfig,
    GANConfig,
    RegisterConfig,
    SynthConfig,
    TextConfig,
    TrackingConfig,
    apply_profile,
    check_crops,
    check_dataset,
)
from sisgan.errors import ConfigError, SisganError
from sisgan.io import write_json as write_json  # re-exported: the stages write metrics with it

PARAMS_FILE = "params.yaml"
# Top-level keys of params.yaml; anything else is a typo.
TOP_LEVEL = ("dataset", "seed", "data", "synth", "text", "gan", "evaluate", "register", "tracking")

C = TypeVar("C", bound=Config)


def read_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found; run the stage from the project root (where params.yaml is).")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML ({str(e).splitlines()[0]}); fix the syntax.") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path} must be a mapping of sections (dataset, data, ...).")
    return params


def validate_params(params: dict[str, Any], source: str = PARAMS_FILE) -> dict[str, Any]:
    """Top-level checks; sections are checked by their Config classes when built."""
    unknown = sorted(set(params) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {unknown}; valid keys are {list(TOP_LEVEL)}.")
    params["dataset"] = check_dataset(params.get("dataset", "synth-birds"))
    seed = params.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{source}: seed = {seed!r} must be an integer.")
    return params


SECTIONS: tuple[type[Config], ...] = (
    DataConfig,
    SynthConfig,
    TextConfig,
    GANConfig,
    EvalConfig,
    RegisterConfig,
    TrackingConfig,
)


def validate_all(params: dict[str, Any]) -> dict[str, Config]:
    """Every section and the checks across sections, from params alone (no data, no files, no torch).

    Every stage runs this first (stage_params), and so does the `validate` stage, which all stages depend
    on: under `dvc repro` a bad value stops the run before DVC removes any stage's outputs.
    """
    configs = {cls.SECTION: section(params, cls) for cls in SECTIONS}
    data, text, gan = configs["data"], configs["text"], configs["gan"]
    assert isinstance(data, DataConfig) and isinstance(text, TextConfig) and isinstance(gan, GANConfig)
    check_crops(data, text, gan)
    return configs


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    return validate_params(read_params(path), str(path))


def section(params: dict[str, Any], cls: type[C]) -> C:
    return cls.from_dict(params.get(cls.SECTION))


def raw_dir(root: str | Path, dataset: str) -> Path:
    return Path(root) / "raw" / dataset


def shard_dir(root: str | Path, dataset: str) -> Path:
    return Path(root) / "shards" / dataset


def set_path(params: dict[str, Any], dotted: str, value: Any) -> None:
    """params['gan']['width'] = value for dotted = 'gan.width' (creating sections as needed)."""
    *parents, key = dotted.split(".")
    node = params
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{p}' is not a section of params.yaml.")
    node[key] = value


def stage_params(description: str, argv: list[str] | None = None) -> dict[str, Any]:
    """params.yaml (or --params FILE) with --set key=value overrides applied (values parsed as YAML).

    `python -m pipeline.train_gan --profile paper --set gan.epochs=100` runs the same stage without DVC,
    e.g. on a GPU machine; --profile applies a named recipe (sisgan.config.PAPER_RECIPE) before the --sets.
    """
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default=PARAMS_FILE, help="parameters file (default: params.yaml)")
    parser.add_argument(
        "--profile", choices=PROFILES, default=None, help="a named recipe on top of the file (paper, photos)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override, repeatable"
    )
    args = parser.parse_args(argv)
    params = read_params(args.params)
    if args.profile:
        params = apply_profile(params, args.profile)
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set gan.epochs=10.")
        key, value = item.split("=", 1)
        set_path(params, key.strip(), yaml.safe_load(value))
    params = validate_params(params, args.params)
    validate_all(params)
    return params


def cli(fn: Callable[[], Any]) -> Callable[[], None]:
    """Run a stage's main: user errors become one line on stderr and exit code 2 (130 if interrupted)."""

    @functools.wraps(fn)
    def wrapper() -> None:
        try:
            fn()
        except SisganError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(130 if type(e).__name__ == "Interrupted" else 2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
