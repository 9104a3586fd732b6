"""Configs and params.yaml: unknown keys, wrong types and bad values are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.common import load_params, section
from sisgan.config import DataConfig, SynthConfig
from sisgan.errors import ConfigError


def test_defaults_and_round_trip():
    cfg = DataConfig.from_dict({"load_size": 40, "image_format": "png"})
    assert cfg.load_size == 40 and cfg.image_format == "png" and cfg.shard_rows == 1024
    assert DataConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"load_sise": 64}, r"unknown key\(s\) \['load_sise'\] in section 'data'"),
        ({"load_size": "big"}, r"data.load_size must be an integer"),
        ({"load_size": 8}, r"data.load_size = 8: must be at least 16"),
        ({"image_format": "jpeg"}, r"data.image_format = 'jpeg'; choose one of \['raw', 'png'\]"),
        ({"workers": -1}, r"data.workers"),
        ({"verify_counts": "yes"}, r"must be true or false"),
    ],
)
def test_bad_data_values(values, match):
    with pytest.raises(ConfigError, match=match):
        DataConfig.from_dict(values)


def test_bad_synth_values():
    with pytest.raises(ConfigError, match="test_classes"):
        SynthConfig.from_dict({"n_classes": 5, "test_classes": 5})
    with pytest.raises(ConfigError, match="max_named"):
        SynthConfig.from_dict({"min_named": 3, "max_named": 2})


def _write(tmp_path, text):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


def test_params_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="dataset = 'imagenet' is unknown; choose one of"):
        load_params(_write(tmp_path, "dataset: imagenet\n"))
    with pytest.raises(ConfigError, match=r"unknown top-level key\(s\) \['dta'\]"):
        load_params(_write(tmp_path, "dataset: cub\ndta: {}\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(_write(tmp_path, "dataset: [unclosed\n"))
    with pytest.raises(ConfigError, match="seed"):
        load_params(_write(tmp_path, "seed: one\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "absent.yaml")


def test_project_params_file_is_valid():
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    assert params["dataset"] == "synth-birds"
    section(params, DataConfig)
    section(params, SynthConfig)


def test_make_repro_paper_gives_the_paper_recipe():
    """`make repro-paper` applies PAPER_PROFILE to params.yaml: the result is GANConfig's paper defaults."""
    import re

    import yaml

    from pipeline.common import set_path, validate_params
    from sisgan.config import GANConfig, TextConfig

    root = Path(__file__).resolve().parents[1]
    makefile = (root / "Makefile").read_text()
    body = re.search(r"^PAPER_PROFILE := (.*?)(?<!\\)\n", makefile, re.S | re.M).group(1)
    params = load_params(root / "params.yaml")
    for item in body.replace("\\\n", " ").split():
        key, value = item.split("=", 1)
        set_path(params, key, yaml.safe_load(value))
    params = validate_params(params)
    gan, paper = section(params, GANConfig), GANConfig()
    recipe = (
        "image_size width batch_size epochs lr beta1 lr_decay lr_decay_every kl_weight recon_weight "
        "vse_weight cycle_weight output encoder"
    ).split()
    assert {k: getattr(gan, k) for k in recipe} == {k: getattr(paper, k) for k in recipe}
    assert section(params, TextConfig).lr == 2e-4 and params["data"]["load_size"] == 74
