"""Torch readers over the shards: a map-style Dataset and a device-resident batch loader."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sisgan.data.shards import SplitData, load_split
from sisgan.errors import ConfigError
from sisgan.pixels import unit_range


class ShardDataset(Dataset):
    """Map-style dataset over one split. Item: {image: uint8 [3, S, S], captions, image_id, class_id, index}."""

    def __init__(self, shard_dir: str | Path, split: str, data: SplitData | None = None) -> None:
        self.data = data if data is not None else load_split(shard_dir, split)
        self.split = split

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = torch.from_numpy(np.ascontiguousarray(self.data.images[index])).permute(2, 0, 1)
        return {
            "image": image,
            "captions": self.data.captions[index],
            "image_id": self.data.image_ids[index],
            "class_id": int(self.data.class_ids[index]),
            "index": index,
        }


def random_crop_flip(
    images: torch.Tensor, crop: int, flip: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per-sample random crop and horizontal flip on the tensor's own device.

    images: uint8 or float [B, C, S, S] -> same dtype [B, C, crop, crop]. All randomness is drawn on the
    device, so no host synchronisation happens.
    """
    b, _, s, _ = images.shape
    dev = images.device
    oy = torch.randint(0, s - crop + 1, (b, 1), device=dev, generator=generator)
    ox = torch.randint(0, s - crop + 1, (b, 1), device=dev, generator=generator)
    base = torch.arange(crop, device=dev)
    rows = oy + base  # [B, crop]
    cols = ox + base  # [B, crop]
    if flip:
        mirror = torch.rand(b, 1, device=dev, generator=generator) < 0.5
        cols = torch.where(mirror, cols.flip(1), cols)
    bidx = torch.arange(b, device=dev)[:, None, None]
    # Advanced indices on dims 0, 2, 3 (slice on 1): result is [B, crop, crop, C].
    out = images[bidx, :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)


def center_crop(images: torch.Tensor, crop: int) -> torch.Tensor:
    """[B, C, S, S] -> [B, C, crop, crop], the evaluation-time view of a training crop."""
    s = images.shape[-1]
    o = (s - crop) // 2
    return images[..., o : o + crop, o : o + crop]


class DeviceLoader:
    """A whole split on one device as a uint8 tensor; batches are sampled and augmented there.

    Yields (indices [B] long, images float [B, 3, crop, crop] in [-1, 1]). With `rank`/`world_size`
    each process takes its own slice of the same per-epoch permutation (DistributedDataParallel).
    """

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        batch_size: int,
        crop: int,
        *,
        device: str | torch.device = "cpu",
        flip: bool = True,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}.")
        tensor = torch.as_tensor(images)
        if tensor.dtype != torch.uint8 or tensor.ndim != 4:
            raise ValueError(f"images must be uint8 [N, S, S, 3] or [N, 3, S, S], got {tuple(tensor.shape)}")
        if tensor.shape[-1] == 3:
            tensor = tensor.permute(0, 3, 1, 2)
        self.images = tensor.contiguous().to(device)  # [N, 3, S, S] uint8
        if crop > self.images.shape[-1]:
            raise ConfigError(f"crop {crop} is larger than the stored image size {self.images.shape[-1]}.")
        self.batch_size, self.crop, self.flip = batch_size, crop, flip
        self.shuffle, self.drop_last = shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.device = self.images.device
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed + 7919 * rank)  # augmentation differs per rank
        self._order_gen = torch.Generator(device="cpu")
        self._seed = seed
        self.epoch = 0
        n_local = len(self._local_indices(0))
        if drop_last and n_local < batch_size:
            raise ConfigError(
                f"batch size {batch_size} is larger than the {n_local} training images per process; lower it."
            )

    def _local_indices(self, epoch: int) -> torch.Tensor:
        n = self.images.shape[0]
        if self.shuffle:
            # Same permutation on every rank (seeded by epoch), disjoint slices per rank.
            self._order_gen.manual_seed(self._seed * 1_000_003 + epoch)
            order = torch.randperm(n, generator=self._order_gen)
        else:
            order = torch.arange(n)
        usable = n - n % self.world_size
        return order[self.rank : usable : self.world_size]

    def __len__(self) -> int:
        n = len(self._local_indices(0))
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield from self.iterate(0)
        self.epoch += 1

    def iterate(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of the current epoch from batch `start` on (a resumed epoch skips what was done:
        the skipped batches draw no randomness, so a restored generator continues exactly)."""
        order = self._local_indices(self.epoch).to(self.device)
        for b in range(start, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            batch = self.images.index_select(0, idx)
            batch = random_crop_flip(batch, self.crop, self.flip, self.generator)
            yield idx, unit_range(batch)
