"""Process-group set-up for `torchrun`: same code path for one process and for N."""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device: str) -> tuple[DistInfo, str]:
    """Join the process group torchrun describes (RANK/WORLD_SIZE/LOCAL_RANK); returns (info, device).

    CUDA: NCCL and one GPU per local rank; CPU: gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(rank, world, local), device


def all_reduce_mean(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        tensor /= info.world_size
    return tensor


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
