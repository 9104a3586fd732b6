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


# DESIGN §4, the paper's recipe, written out once more here on purpose: this is what the profile is checked
# against, not a second definition of it.
PAPER = {
    "data": {"load_size": 74},
    "text": {"embed_dim": 300, "hidden_dim": 300, "margin": 0.2, "lr": 2e-4, "batch_size": 64},
    "gan": {
        "image_size": 64,
        "width": 1.0,
        "batch_size": 64,
        "epochs": 600,
        "lr": 2e-4,
        "beta1": 0.5,
        "beta2": 0.999,
        "lr_decay": 0.5,
        "lr_decay_every": 100,
        "kl_weight": 1.0,
        "flip": True,
        "recon_weight": 0.0,
        "swap_weight": 0.0,
        "output": "direct",
        "conditioning": "concat",
    },
}


def _assert_paper(params: dict) -> None:
    from sisgan.config import GANConfig, TextConfig

    configs = {"data": section(params, DataConfig), "text": section(params, TextConfig)}
    configs["gan"] = section(params, GANConfig)
    for name, expected in PAPER.items():
        assert {k: getattr(configs[name], k) for k in expected} == expected, name


def test_paper_profile_is_the_papers_recipe():
    """--profile paper (every stage, the GPU script, the benchmarks) on top of the embedded default."""
    from pipeline.common import stage_params

    root = Path(__file__).resolve().parents[1]
    default = load_params(root / "params.yaml")
    assert default["gan"]["swap_weight"] > 0, "the embedded default is not the paper"
    _assert_paper(stage_params("t", ["--params", str(root / "params.yaml"), "--profile", "paper"]))
    # Keys outside the recipe stay as params.yaml has them; --set still applies on top.
    params = stage_params(
        "t", ["--params", str(root / "params.yaml"), "--profile", "paper", "--set", "gan.epochs=3"]
    )
    assert params["gan"]["epochs"] == 3 and params["gan"]["samples"] == default["gan"]["samples"]
    with pytest.raises(SystemExit):
        stage_params("t", ["--profile", "cvpr"])


def test_make_repro_paper_gives_the_paper_recipe():
    """`make repro-paper` passes `python -m pipeline.profile paper` to `dvc exp run -S`."""
    import yaml

    from pipeline.common import set_path, validate_params
    from pipeline.profile import overrides

    root = Path(__file__).resolve().parents[1]
    assert "$(PY) -m pipeline.profile paper" in (root / "Makefile").read_text()
    params = load_params(root / "params.yaml")
    sets = overrides(params, "paper")
    assert "gan.swap_weight=0.0" in sets and "gan.lr=0.0002" in sets
    for item in sets:
        key, value = item.split("=", 1)
        set_path(params, key, yaml.safe_load(value))
    _assert_paper(validate_params(params))
    assert overrides(params, "paper") == [], "nothing left to change"
