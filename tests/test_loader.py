"""Torch readers: the map-style Dataset and the device-resident loader with on-device augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sisgan.data.loader import DeviceLoader, ShardDataset, center_crop, random_crop_flip
from sisgan.data.shards import build_shards
from sisgan.errors import ConfigError


def test_shard_dataset_items(synth_items, tmp_path):
    build_shards(synth_items, tmp_path, dataset="synth-birds", load_size=20)
    ds = ShardDataset(tmp_path, "train")
    train = [i for i in synth_items if i.split == "train"]
    assert len(ds) == len(train)
    item = ds[3]
    assert item["image"].shape == (3, 20, 20) and item["image"].dtype == torch.uint8
    assert item["image_id"] == train[3].image_id and item["captions"] == list(train[3].captions)
    assert np.array_equal(item["image"].permute(1, 2, 0).numpy(), ds.data.images[3])


def _numbered(n: int, s: int) -> np.ndarray:
    """Images whose pixel values encode (image index, row, col) so crops can be traced back."""
    img = np.zeros((n, s, s, 3), np.uint8)
    img[..., 0] = np.arange(n)[:, None, None]
    img[..., 1] = np.arange(s)[None, :, None]
    img[..., 2] = np.arange(s)[None, None, :]
    return img


def test_crop_and_flip_are_real_crops_of_the_right_image():
    images = torch.from_numpy(_numbered(8, 12)).permute(0, 3, 1, 2)
    gen = torch.Generator().manual_seed(0)
    out = random_crop_flip(images, 9, flip=True, generator=gen).long()
    assert out.shape == (8, 3, 9, 9)
    flipped = 0
    for b in range(8):
        assert (out[b, 0] == b).all()
        rows = out[b, 1, :, 0]
        assert torch.equal(rows, rows[0] + torch.arange(9))  # contiguous rows
        cols = out[b, 2, 0, :]
        step = cols[1] - cols[0]
        assert abs(int(step)) == 1 and torch.equal(cols, cols[0] + step * torch.arange(9))
        flipped += int(step) == -1
    assert 0 < flipped < 8
    assert torch.equal(center_crop(images, 10)[:, 1, :, 0], torch.arange(1, 11).expand(8, 10))


def test_device_loader_batches_cover_the_epoch_in_range():
    loader = DeviceLoader(_numbered(20, 10), batch_size=6, crop=8, seed=1)
    batches = list(loader)
    assert len(batches) == len(loader) == 3
    seen = torch.cat([idx for idx, _ in batches])
    assert len(set(seen.tolist())) == 18
    for idx, x in batches:
        assert x.shape == (6, 3, 8, 8) and x.dtype == torch.float32
        assert x.min() >= -1 and x.max() <= 1
        assert torch.allclose((x[:, 0, 0, 0] + 1) * 127.5, idx.float())
    first_epoch = seen.tolist()
    second = torch.cat([idx for idx, _ in loader]).tolist()
    assert first_epoch != second, "each epoch has its own order"


def test_device_loader_ranks_take_disjoint_slices():
    ranks = [DeviceLoader(_numbered(16, 8), 4, 8, seed=3, rank=r, world_size=2) for r in range(2)]
    seen = [torch.cat([i for i, _ in ld]).tolist() for ld in ranks]
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(16))


def test_device_loader_is_deterministic_for_a_seed():
    a = [x for _, x in DeviceLoader(_numbered(10, 10), 5, 8, seed=7)]
    b = [x for _, x in DeviceLoader(_numbered(10, 10), 5, 8, seed=7)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_device_loader_bad_sizes():
    with pytest.raises(ConfigError, match="batch size"):
        DeviceLoader(_numbered(4, 8), 0, 8)
    with pytest.raises(ConfigError, match="larger than the 4 training images"):
        DeviceLoader(_numbered(4, 8), 8, 8)
    with pytest.raises(ConfigError, match="crop 12 is larger"):
        DeviceLoader(_numbered(4, 8), 2, 12)


@pytest.mark.gpu
def test_device_loader_on_cuda():
    loader = DeviceLoader(_numbered(32, 16), 8, 12, device="cuda")
    idx, x = next(iter(loader))
    assert x.is_cuda and idx.is_cuda and x.shape == (8, 3, 12, 12)
