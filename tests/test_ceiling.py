"""The supervised-ceiling benchmark's pieces: exact edit targets and the trainer that learns them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import synth_shards

from benchmarks.ceiling import counterfactual_targets, supervised_data
from sisgan.config import GANConfig, SynthConfig
from sisgan.data import synth
from sisgan.data.shards import load_split
from sisgan.errors import ConfigError
from sisgan.train.gan import GanData, Trainer


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    cfg = SynthConfig(n_images=24, n_classes=6, test_classes=2, captions_per_image=3)
    return load_split(synth_shards(tmp_path_factory.mktemp("shards"), cfg, load_size=20), "train")


def test_targets_are_other_images_captions_rendered_on_the_source(split):
    counts = np.array([len(c) for c in split.captions])
    target, caption, edits = counterfactual_targets(split, counts, seed=0)
    n = len(split)
    assert edits.shape == (n, 20, 20, 3) and edits.dtype == np.uint8
    assert (target != np.arange(n)).all() and (caption < counts[target]).all()
    for i in (0, n - 1):
        attrs = split.caption_attrs[target[i]][caption[i]]
        scene = synth.Scene.from_record(split.scenes[i])
        expected = synth.render(scene.with_attributes(attrs), 20)[0]
        np.testing.assert_array_equal(edits[i], expected)
    # Seeded: the same pairs again, other pairs for another seed.
    assert (counterfactual_targets(split, counts, seed=0)[0] == target).all()
    assert (counterfactual_targets(split, counts, seed=1)[0] != target).any()


def test_targets_need_ground_truth(split):
    import dataclasses

    real = dataclasses.replace(split, scenes=None)
    with pytest.raises(ConfigError, match="synth-birds"):
        counterfactual_targets(real, np.ones(len(split), dtype=np.int64))


def test_supervised_training_learns_the_edits(split):
    counts = np.array([len(c) for c in split.captions])
    n, rng = len(split), np.random.default_rng(0)
    feats = rng.normal(size=(n, 3, 8)).astype(np.float32)
    target, caption, edits = counterfactual_targets(split, counts, seed=0)
    cfg = GANConfig.from_dict(
        {"image_size": 16, "width": 0.125, "batch_size": 8, "epochs": 1, "output": "mask", "flip": False}
        | {"swap_weight": 100.0}
    )
    plain = GanData(split.images, feats, counts, split.images[:1], feats[:1, 0], ["-"])
    data = supervised_data(plain, split, seed=0)
    np.testing.assert_array_equal(data.swap_images[0], edits)
    np.testing.assert_array_equal(data.swap_features[0], feats[target, caption])
    trainer = Trainer(cfg, data)
    _, idx, both = next(trainer.batches(0))
    assert both.shape == (8, 6, 16, 16)
    # Source and edit share the crop: they agree wherever the edit leaves the image alone (the background).
    same = (both[:, :3] == both[:, 3:]).all(1).float().mean()
    assert 0.5 < same < 1.0
    first = trainer.train_step(both, idx)["swap"]
    for _ in range(15):
        last = trainer.train_step(both, idx)["swap"]
    assert torch.isfinite(first) and last < 0.8 * first
